"""Queues on Redis (RQ): `delivery` (first), `default`, `mail`; and enqueueing jobs by name.

Jobs are plain functions in `kameng.workers.jobs` that take ids. Every job carries a timeout
shorter than RQ's default and a retry policy with backoff (RQ's Retry; the worker runs with
RQ's scheduler so the intervals are honoured).
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from redis import Redis
from rq import Queue, Retry

QUEUES = ("delivery", "default", "mail")

# job function -> (queue, timeout in seconds, retry intervals in seconds)
POLICIES = {
    "deliver": ("delivery", 60, [2, 10, 30, 60, 120]),
    "poll_topup": ("delivery", 60, [5, 15, 30, 60]),
    "send_mail": ("mail", 30, [10, 60, 300, 900]),
    "send_webhook": ("default", 30, [10, 60, 300, 900, 3600]),
    "relay_outbox": ("default", 60, []),
    "reconcile": ("default", 120, []),
    "expire_orders": ("default", 120, []),
    "low_stock_alerts": ("default", 120, []),
    "bill_shops": ("default", 900, []),
    "clean_nonces": ("default", 120, []),
    "sync_upstream": ("default", 600, []),
    "flush_views": ("default", 60, []),
    "purge_outbox": ("default", 600, []),
}


def redis_url() -> str | None:
    return current_app.config.get("REDIS_URL")


def connection() -> Redis:
    """The app's Redis connection (one pool per app)."""
    conn = current_app.extensions.get("kameng.redis")
    if conn is None:
        url = redis_url()
        if not url:
            raise RuntimeError("no REDIS_URL: queues need Redis (or `kameng serve` embedded)")
        conn = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2,
                              health_check_interval=30)
        current_app.extensions["kameng.redis"] = conn
    return conn


def queue(name: str) -> Queue:
    return Queue(name, connection=connection())


def enqueue(job: str, *args, delay: int = 0, job_id: str | None = None):
    """Put `kameng.workers.jobs.<job>(*args)` on its queue (after `delay` seconds)."""
    name, timeout, intervals = POLICIES[job]
    options = {"job_timeout": timeout, "result_ttl": 600, "failure_ttl": 7 * 24 * 3600}
    if intervals:
        options["retry"] = Retry(max=len(intervals), interval=intervals)
    if job_id:
        options["job_id"] = job_id
    target = queue(name)
    path = f"kameng.workers.jobs.{job}"
    if delay:
        return target.enqueue_in(timedelta(seconds=delay), path, *args, **options)
    return target.enqueue(path, *args, **options)
