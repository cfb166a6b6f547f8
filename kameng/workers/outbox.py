"""The outbox relay: hands work written by a commit to the queue (or, in inline mode, does it).

Changes that need follow-up work — a paid order to deliver, a mail to send, a webhook to
call — write an outbox row in the same transaction. The relay turns each row into a job and
marks it processed only then, so a crash or a Redis outage between the commit and the queue
leaves the row for the next relay run: nothing is lost. Jobs are idempotent, so a row relayed
twice does no harm.

DELIVERY_MODE=queue (with Redis): the request that paid an order enqueues its delivery at once
and the ticker relays the rest every few seconds. DELIVERY_MODE=inline (no Redis: tests,
quick local runs): the request does the work itself right after its commit.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import delete, insert, select, update

from ..extensions import db
from ..tenants.scoping import platform_scope
from .models import Outbox

log = logging.getLogger(__name__)

# topic -> (job name, payload key holding the id it works on)
TOPICS = {
    "order.paid": ("deliver", "order_id"),
    "mail.send": ("send_mail", "message_id"),
    "webhook.deliver": ("send_webhook", "delivery_id"),
}


def add(topic: str, *, tenant_id: int | None, **payload) -> Outbox:
    """Write work to do after the commit, in the caller's transaction."""
    if topic not in TOPICS:
        raise ValueError(f"unknown outbox topic {topic!r}")
    row = Outbox(topic=topic, tenant_id=tenant_id, order_id=payload.get("order_id"),
                 payload=payload)
    db.session.add(row)
    return row


def add_many(topic: str, *, tenant_id: int | None, payloads: list[dict]) -> None:
    """`add` for several rows of one topic, with one INSERT."""
    if topic not in TOPICS:
        raise ValueError(f"unknown outbox topic {topic!r}")
    if payloads:
        db.session.execute(insert(Outbox), [
            {"topic": topic, "tenant_id": tenant_id, "order_id": payload.get("order_id"),
             "payload": payload} for payload in payloads])


def _inline(job: str, ident: int) -> None:
    """Do a job's work in this process (inline mode)."""
    if job == "deliver":
        from ..delivery.service import deliver_order

        deliver_order(ident)
    elif job == "send_mail":
        from ..mail.service import deliver_message

        deliver_message(ident)
    elif job == "send_webhook":
        from ..webhooks.service import deliver_webhook

        deliver_webhook(ident)


def _queue_mode() -> bool:
    return current_app.config["DELIVERY_MODE"] == "queue"


def _mark(row_ids: list[int], error: str = "") -> None:
    with platform_scope():
        if error:
            db.session.execute(update(Outbox).where(Outbox.id.in_(row_ids)).values(
                attempts=Outbox.attempts + 1, last_error=error[:2000]))
        else:
            db.session.execute(update(Outbox).where(Outbox.id.in_(row_ids)).values(
                processed_at=datetime.now(UTC), attempts=Outbox.attempts + 1))
        db.session.commit()


def relay(limit: int = 500) -> int:
    """Hand every waiting outbox row to its job; returns how many were handled."""
    from .queues import enqueue

    with platform_scope():
        query = (select(Outbox.id, Outbox.topic, Outbox.payload)
                 .where(Outbox.processed_at.is_(None)).order_by(Outbox.id).limit(limit))
        rows = db.session.execute(query).all()
    db.session.rollback()
    handled = 0
    for row_id, topic, payload in rows:
        job, key = TOPICS[topic]
        try:
            if _queue_mode():
                enqueue(job, payload[key])
            else:
                _inline(job, payload[key])
        except Exception as error:  # the row stays; the next relay run tries again
            db.session.rollback()
            log.warning("outbox row %s (%s) not handled: %s", row_id, topic, error)
            _mark([row_id], error=str(error) or type(error).__name__)
            if _queue_mode():
                break  # the queue is down: keep the order of the rest for the next run
            continue
        _mark([row_id])
        handled += 1
    return handled


def purge(now: datetime | None = None) -> int:
    """Delete rows processed more than OUTBOX_KEEP_DAYS ago (the outbox grows by a row per
    paid order, mail and webhook; once relayed, a row is only there to look at). Rows not yet
    processed are never touched. Returns how many went."""
    keep = timedelta(days=current_app.config.get("OUTBOX_KEEP_DAYS", 7))
    cutoff = (now or datetime.now(UTC)) - keep
    with platform_scope():
        gone = db.session.execute(delete(Outbox).where(
            Outbox.processed_at.is_not(None), Outbox.processed_at < cutoff)).rowcount
        db.session.commit()
    return gone


def after_payment(order_id: int | None) -> None:
    """Called after the commit that paid an order: start its delivery now."""
    if order_id is None:
        return
    try:
        if _queue_mode():
            from .queues import enqueue

            enqueue("deliver", order_id)
            with platform_scope():
                ids = list(db.session.scalars(select(Outbox.id).where(
                    Outbox.order_id == order_id, Outbox.topic == "order.paid",
                    Outbox.processed_at.is_(None))))
            if ids:
                _mark(ids)
        else:  # deliver, then send what delivering produced (mails, webhooks)
            for _ in range(5):
                if not relay():
                    break
    except Exception:  # Redis down, say: the outbox row stays for the relay
        db.session.rollback()
        log.exception("delivery of order %s not started; left in the outbox", order_id)
