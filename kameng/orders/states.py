"""The order state machine: one table of transitions, applied with compare-and-set.

    pending ──pay──▶ paid ──▶ delivering ──▶ delivered
       │                          │   └──▶ awaiting (manual fulfilment / top-up in progress)
     expire                     fail ──▶ failed (staff: retry / deliver by hand / refund)
       ▼                                        │
     expired ──late payment──▶ paid          refunded

A transition is `UPDATE orders SET status = :to WHERE id = :id AND status = :from`: a duplicate
webhook, a retried job or two workers can never apply one twice; the loser sees `False`.
Every transition writes an OrderEvent (the order's timeline) in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, update
from sqlalchemy.orm.attributes import set_committed_value

from ..extensions import db
from .models import Order, OrderEvent

TRANSITIONS: dict[tuple[str, str], str] = {
    ("pending", "paid"): "paid",
    ("expired", "paid"): "paid after the order had expired",
    ("pending", "expired"): "expired unpaid",
    ("pending", "cancelled"): "cancelled",
    ("paid", "delivering"): "delivery started",
    ("failed", "delivering"): "delivery retried",
    ("delivering", "delivering"): "delivery resumed",
    ("delivering", "delivered"): "delivered",
    ("delivering", "awaiting"): "awaiting fulfilment",
    ("delivering", "failed"): "delivery failed",
    ("awaiting", "delivered"): "fulfilled",
    ("awaiting", "failed"): "fulfilment failed",
    ("failed", "delivered"): "delivered by hand",
    ("paid", "refunded"): "refunded",
    ("awaiting", "refunded"): "refunded",
    ("failed", "refunded"): "refunded",
    ("delivered", "refunded"): "refunded",
}

# Statuses in which the buyer has paid; SALE_STATUSES leaves out refunded orders.
SALE_STATUSES = ("paid", "delivering", "awaiting", "delivered", "failed")
PAID_STATUSES = (*SALE_STATUSES, "refunded")
OPEN_STATUSES = ("pending",)


class IllegalTransition(RuntimeError):
    """Code asked for a transition the state machine does not have: a programming error."""


def transition(order: Order, to_status: str, *, actor: str = "system", note: str = "",
               from_status: str | None = None, data: dict | None = None, **values) -> bool:
    """Move `order` from `from_status` (default: its current status) to `to_status`.

    Returns False, changing nothing, when the order is no longer in `from_status` (someone else
    moved it first). `values` are further columns set in the same UPDATE.
    """
    source = from_status or order.status
    if not compare_and_set(order, to_status, from_status=source, **values):
        return False
    db.session.add(timeline_row(order, source, to_status, actor=actor, note=note, data=data))
    db.session.flush()
    return True


def compare_and_set(order: Order, to_status: str, *, from_status: str, **values) -> bool:
    """The UPDATE of a transition without its timeline row (the caller adds `timeline_row`
    in the same transaction — several at once, say)."""
    if (from_status, to_status) not in TRANSITIONS:
        raise IllegalTransition(f"{from_status} -> {to_status} is not a transition of an order")
    _stamp(to_status, values, datetime.now(UTC))
    changed = db.session.execute(
        update(Order).where(Order.id == order.id, Order.status == from_status)
        .values(status=to_status, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        db.session.expire(order)  # someone else moved it: read what it is now
        return False
    _record(order, to_status, values)
    return True


def transition_many(orders: list[Order], to_status: str, *, from_status: str,
                    actor: str = "system", note: str = "") -> list[Order]:
    """`transition` for several orders: one compare-and-set UPDATE and one INSERT of their
    timeline rows. Returns the orders moved; the others were moved by someone else first."""
    moved = compare_and_set_many(orders, to_status, from_status=from_status)
    record_timeline([timeline_values(order, from_status, to_status, actor=actor, note=note)
                     for order in moved])
    return moved


def compare_and_set_many(orders: list[Order], to_status: str, *, from_status: str
                         ) -> list[Order]:
    """`compare_and_set` for several orders in one UPDATE: the orders moved."""
    if (from_status, to_status) not in TRANSITIONS:
        raise IllegalTransition(f"{from_status} -> {to_status} is not a transition of an order")
    if not orders:
        return []
    values: dict = {}
    _stamp(to_status, values, datetime.now(UTC))
    moved_ids = set(db.session.scalars(
        update(Order).where(Order.id.in_([order.id for order in orders]),
                            Order.status == from_status)
        .values(status=to_status, **values).returning(Order.id)
        .execution_options(synchronize_session=False)))
    moved = []
    for order in orders:
        if order.id in moved_ids:
            _record(order, to_status, values)
            moved.append(order)
        else:
            db.session.expire(order)
    return moved


def timeline_row(order: Order, from_status: str | None, to_status: str | None, *,
                 actor: str = "system", note: str = "", data: dict | None = None) -> OrderEvent:
    """The OrderEvent of a transition (not added to the session)."""
    return OrderEvent(**timeline_values(order, from_status, to_status, actor=actor, note=note,
                                        data=data))


def timeline_values(order: Order, from_status: str | None, to_status: str | None, *,
                    actor: str = "system", note: str = "", data: dict | None = None) -> dict:
    """The columns of a transition's OrderEvent, for `record_timeline`."""
    return {"tenant_id": order.tenant_id, "order_id": order.id, "actor": actor[:254],
            "from_status": from_status, "to_status": to_status,
            "note": note or TRANSITIONS[(from_status, to_status)], "data": data or {}}


def record_timeline(rows: list[dict]) -> None:
    """Insert timeline rows (`timeline_values`) with one statement, outside the unit of work:
    many at once cost little more than one."""
    if rows:
        db.session.execute(insert(OrderEvent), rows)


def _stamp(to_status: str, values: dict, now: datetime) -> None:
    if to_status == "paid":
        values.setdefault("paid_at", now)
    if to_status == "delivered":
        values.setdefault("delivered_at", now)


def _record(order: Order, to_status: str, values: dict) -> None:
    # The row holds what the UPDATE wrote and nothing else changed (no column has an onupdate):
    # record that on the object rather than read the row back — a query less per transition.
    for key, value in {"status": to_status, **values}.items():
        set_committed_value(order, key, value)
    db.session.expire(order, ["events"])


def note(order: Order, text: str, *, actor: str = "system", data: dict | None = None) -> None:
    """Add a line to the order's timeline without changing its status."""
    db.session.add(OrderEvent(tenant_id=order.tenant_id, order_id=order.id, actor=actor[:254],
                              from_status=None, to_status=None, note=text, data=data or {}))
    db.session.flush()
