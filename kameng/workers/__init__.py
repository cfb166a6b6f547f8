"""Background work: the outbox relay, queues, job entry points and the worker process."""
