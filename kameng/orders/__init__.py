"""Orders: checkout, the state machine, order pages and lookups."""
