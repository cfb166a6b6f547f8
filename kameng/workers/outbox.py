"""The outbox relay: hands work written by a commit (a paid order) to delivery.

`mark_paid` writes an `order.paid` row in the same transaction as the payment. With
DELIVERY_MODE=inline the request that committed it delivers right away; otherwise the
relay enqueues it. A row is marked processed only after its work is done, so a crash in
between leaves the row for the next relay run: nothing is lost.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import select, update

from ..delivery.service import deliver_order
from ..extensions import db
from ..tenants.scoping import platform_scope
from .models import Outbox

log = logging.getLogger(__name__)


def _done(row_ids: list[int]) -> None:
    with platform_scope():
        db.session.execute(
            update(Outbox).where(Outbox.id.in_(row_ids))
            .values(processed_at=datetime.now(UTC))
            .execution_options(synchronize_session=False))
        db.session.commit()


def deliver_now(order_id: int) -> str:
    """Deliver a just-paid order in this process and close its outbox rows."""
    status = deliver_order(order_id)
    with platform_scope():
        ids = list(db.session.scalars(select(Outbox.id).where(
            Outbox.order_id == order_id, Outbox.topic == "order.paid",
            Outbox.processed_at.is_(None))))
    if ids:
        _done(ids)
    return status


def after_payment(order_id: int | None) -> None:
    """Called after the commit that paid an order: start its delivery."""
    if order_id is None:
        return
    if current_app.config["DELIVERY_MODE"] == "inline":
        try:
            deliver_now(order_id)
        except Exception:  # the outbox row stays: `kameng outbox relay` picks it up
            db.session.rollback()
            log.exception("inline delivery of order %s failed; left in the outbox", order_id)


def relay(limit: int = 200) -> int:
    """Process waiting outbox rows (oldest first); returns how many were handled."""
    with platform_scope():
        query = (select(Outbox).where(Outbox.processed_at.is_(None))
                 .order_by(Outbox.id).limit(limit))
        if db.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = [(row.id, row.topic, row.order_id) for row in db.session.scalars(query)]
        db.session.commit()
    handled = 0
    for row_id, topic, order_id in rows:
        try:
            if topic == "order.paid" and order_id is not None:
                deliver_order(order_id)
        except Exception as error:
            db.session.rollback()
            log.exception("outbox row %s failed", row_id)
            with platform_scope():
                db.session.execute(update(Outbox).where(Outbox.id == row_id).values(
                    attempts=Outbox.attempts + 1, last_error=str(error)[:2000]))
                db.session.commit()
            continue
        _done([row_id])
        handled += 1
    return handled
