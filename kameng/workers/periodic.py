"""Periodic jobs: a ticker thread in every worker enqueues them; a Redis key with a TTL makes
sure only one worker enqueues each job per interval, however many workers run."""

from __future__ import annotations

import logging
import threading

from flask import Flask
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# job -> interval in seconds
SCHEDULE = {
    "relay_outbox": 2,  # paid orders whose delivery could not be enqueued at once
    "expire_orders": 30,  # unpaid orders past their time give their stock back
    "reconcile": 60,  # paid but undelivered: re-enqueue
    "low_stock_alerts": 300,
    "bill_shops": 3600,  # shop billing: invoices, wallet payments, reminders, suspension
    "clean_nonces": 300,  # API nonces older than 10 minutes
    "sync_upstream": 900,  # price and stock of products from upstream Kameng shops
    "flush_views": 30,  # product page views counted in Redis -> product_view_counts
    "purge_outbox": 86400,  # outbox rows relayed more than OUTBOX_KEEP_DAYS ago
}


class Ticker(threading.Thread):
    """Enqueues the periodic jobs; survives Redis outages (it just tries again)."""

    def __init__(self, app: Flask, schedule: dict[str, int] | None = None, period: float = 1.0):
        super().__init__(name="kameng-ticker", daemon=True)
        self.app = app
        self.schedule = schedule or SCHEDULE
        self.period = period
        self.stopped = threading.Event()

    def tick(self) -> list[str]:
        """Enqueue every job whose interval has passed; returns their names."""
        from .queues import connection, enqueue

        due = []
        with self.app.app_context():
            conn = connection()
            for job, interval in self.schedule.items():
                if conn.set(f"kameng:tick:{job}", "1", nx=True, ex=interval):
                    enqueue(job)
                    due.append(job)
        return due

    def run(self) -> None:
        while not self.stopped.wait(self.period):
            try:
                self.tick()
            except RedisError as error:
                log.warning("ticker: Redis unavailable (%s); retrying", error)
            except Exception:
                log.exception("ticker failed; retrying")

    def stop(self) -> None:
        self.stopped.set()
