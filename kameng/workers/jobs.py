"""Job entry points: plain functions taking ids, run by RQ workers.

Each job runs in a fresh application context (its own database session), binds the shop of
the row it works on, and checks state in the database — never in Redis — so running a job
twice, late, or in two workers at once does no harm.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app, has_app_context
from sqlalchemy import select

from ..extensions import db
from ..tenants.scoping import platform_scope

log = logging.getLogger(__name__)
_worker_app: Flask | None = None


def use_app(app: Flask) -> None:
    """The app the jobs of this process run in (set by `kameng worker`, and by tests)."""
    global _worker_app
    _worker_app = app


def _app() -> Flask:
    global _worker_app
    if _worker_app is None:
        if has_app_context():
            _worker_app = current_app._get_current_object()
        else:
            from .. import create_app

            _worker_app = create_app()
    return _worker_app


def job(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with _app().app_context():
            return fn(*args, **kwargs)

    return run


@job
def deliver(order_id: int) -> str:
    from ..delivery.service import deliver_order

    # Also delivers other waiting card orders in the same transaction (DELIVERY_BATCH).
    return deliver_order(order_id, batch=current_app.config["DELIVERY_BATCH"])


@job
def poll_topup(line_id: int) -> str:
    from ..delivery.topup import poll_line

    return poll_line(line_id)


@job
def send_mail(message_id: int) -> str:
    from ..mail.service import deliver_message

    return deliver_message(message_id)


@job
def send_webhook(delivery_id: int) -> str:
    from ..webhooks.service import deliver_webhook

    return deliver_webhook(delivery_id)


@job
def relay_outbox() -> int:
    from .outbox import relay

    return relay()


@job
def expire_orders() -> int:
    from ..orders.service import expire_due_orders

    expired = expire_due_orders()
    db.session.commit()
    return expired


@job
def reconcile() -> int:
    """Re-enqueue paid orders nobody delivered (a lost job, a killed worker, Redis down) and
    deliveries stuck half-way; deliver_order is idempotent, so a duplicate does no harm."""
    from ..orders.models import Order
    from .queues import enqueue

    config = current_app.config
    now = datetime.now(UTC)
    with platform_scope():
        ids = list(db.session.scalars(
            select(Order.id).where(
                (Order.status == "paid")
                & (Order.paid_at < now - timedelta(seconds=config["RECONCILE_GRACE"]))
                | (Order.status == "delivering")
                & (Order.paid_at < now - timedelta(seconds=config["DELIVERY_STUCK_AFTER"]))
            ).order_by(Order.id).limit(1000)))
    db.session.rollback()
    for order_id in ids:
        enqueue("deliver", order_id)
    from ..delivery.topup import stalled_lines

    stalled = stalled_lines()  # top-ups waiting on a supplier whose poll job was lost
    db.session.rollback()
    for line_id in stalled:
        enqueue("poll_topup", line_id)
    if ids or stalled:
        log.warning("reconcile: re-enqueued %d undelivered order(s), %d top-up poll(s)",
                    len(ids), len(stalled))
    return len(ids) + len(stalled)


@job
def low_stock_alerts() -> int:
    from ..inventory.alerts import send_low_stock_alerts

    return send_low_stock_alerts()


@job
def bill_shops() -> int:
    """Shop billing: new periods and their invoices, payment from wallets, reminders,
    suspension and resumption (idempotent: one monthly invoice per shop and period)."""
    from ..billing.service import run_billing

    return run_billing().invoices


@job
def flush_views() -> int:
    """Product page views counted in Redis, into product_view_counts (for the dashboards)."""
    from ..reports.product_views import flush_views as flush

    return flush()


@job
def clean_nonces() -> int:
    """Forget API nonces older than 10 minutes (a signature that old is refused anyway)."""
    from ..api.service import clean_nonces as clean

    return clean()


@job
def purge_outbox() -> int:
    """Forget outbox rows relayed more than OUTBOX_KEEP_DAYS ago."""
    from .outbox import purge

    return purge()


@job
def sync_upstream() -> int:
    """Refresh price and stock of products bought from upstream Kameng shops."""
    from ..api.upstream import sync_all

    return sync_all()
