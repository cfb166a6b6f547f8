"""Delivering paid orders: `deliver_order(order_id)` takes an order from paid to delivered
(or awaiting fulfilment, or failed with the reason), one strategy per delivery kind.

Idempotent: it reads the order's state from the database, moves it with compare-and-set, and
does everything for one order in one transaction — running it twice, or in two workers at
once, delivers once. Workers pass ids, never objects; the job binds the order's shop itself.

A `deliver` job also delivers other paid card/fixed-content orders waiting in the queue, up to
DELIVERY_BATCH orders in its transaction (one commit for all, each order still moved by
compare-and-set); their own jobs then find them delivered with one query and stop there.
"""

from __future__ import annotations

import logging
import os
import time

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import contains_eager

from ..catalog.models import Product
from ..catalog.service import text_content
from ..errors import Conflict
from ..extensions import db
from ..inventory import service as inventory
from ..ledger import service as ledger
from ..merchant.models import ShopNotice
from ..orders import events
from ..orders.models import Order, OrderLine
from ..orders.states import (
    compare_and_set,
    compare_and_set_many,
    note,
    record_timeline,
    timeline_values,
    transition,
    transition_many,
)
from ..rows import row_by_id
from ..security.crypto import keyring
from ..tenants.models import Tenant
from ..tenants.scoping import platform_scope, tenant_scope

log = logging.getLogger(__name__)


class DeliveryProblem(Exception):
    """A line cannot be delivered now; the order goes to `failed` for staff with this reason."""


def _capture_supply_cost(order: Order) -> None:
    """The codes are out: the shop pays the platform the supply cost it had on hold."""
    _capture_supply_costs([order])


def _capture_supply_costs(orders: list[Order]) -> None:
    """`_capture_supply_cost` for every order one transaction delivered (a batch), at its end.

    Each capture moves a shop's wallet and the platform's revenue account. With several, all
    their rows are locked first, lowest id first — the order every ledger transaction locks
    accounts in — so two workers' batches, or a batch and a single delivery, never hold them
    in opposite orders (a deadlock, which PostgreSQL breaks by aborting one of them).
    """
    costly = [order for order in orders if order.cost_total]
    if not costly:
        return  # no supply cost, so no hold was placed (checkout holds only a cost_total)
    with platform_scope():
        holds = ledger.holds_of_orders([order.id for order in costly])
        revenue = {currency: ledger.get_account("platform_revenue", currency=currency)
                   for currency in {order.currency for order in costly}}
        if len(costly) > 1:  # one capture is one ledger transaction: it locks in order itself
            ledger.lock_accounts({hold.account_id for hold in holds}
                                 | {account.id for account in revenue.values()})
    for order in costly:
        with tenant_scope(order.tenant_id):
            for hold in holds:
                if hold.order_id == order.id and hold.account.kind == "shop_wallet":
                    ledger.capture_hold(hold, f"order:{order.id}:supply-cost", "supply_cost",
                                        revenue[order.currency], tenant_id=order.tenant_id,
                                        order_id=order.id)


def _deliver_card(order: Order, line: OrderLine) -> str:
    product = row_by_id(Product, line.product_id)
    if product is None:
        raise DeliveryProblem(f"'{line.title}' no longer exists")
    have = inventory.sell_codes(product, line.qty, order_id=order.id, line_id=line.id)
    if have < line.qty:
        raise DeliveryProblem(f"only {have} of {line.qty} codes of '{line.title}' are in stock")
    _fault_pause()
    return "delivered"


def _fault_pause() -> None:
    """Test hook (FAULT_PAUSE_AFTER_CODES): stop between taking the codes and the commit, so
    a test can kill the worker exactly there. Off unless the setting is given."""
    pause = current_app.config.get("FAULT_PAUSE_AFTER_CODES") or 0
    if pause:
        marker = current_app.config.get("FAULT_MARKER")
        if marker:
            with open(marker, "a") as handle:
                handle.write(f"{os.getpid()}\n")
        time.sleep(pause)


def _deliver_text(order: Order, line: OrderLine) -> str:
    product = row_by_id(Product, line.product_id)
    content = text_content(product) if product is not None else ""
    if not content:
        raise DeliveryProblem(f"'{line.title}' has no content to deliver")
    line.content = keyring().encrypt(content)
    return "delivered"


def _await_staff(order: Order, line: OrderLine) -> str:
    return "awaiting"


def _deliver_topup(order: Order, line: OrderLine) -> str:
    """Buy it from the product's upstream supplier: "delivered", or "awaiting" while the
    supplier is still working on it (a poll job follows)."""
    from .topup import deliver_topup

    return deliver_topup(order, line)


STRATEGIES = {
    "card": _deliver_card,
    "text": _deliver_text,
    "manual": _await_staff,
    "topup": _deliver_topup,
}


def deliver_order(order_id: int, *, batch: int = 1) -> str:
    """Deliver one paid order; returns its status afterwards. Commits.

    With `batch` > 1 (a `deliver` job passes DELIVERY_BATCH) it then delivers up to
    `batch - 1` other paid orders waiting for card codes or fixed content, in the same
    transaction (`_deliver_waiting`): their own jobs find them delivered and return at once.
    """
    status = _status_of(order_id)
    if status not in ("paid", "delivering"):
        return status or "missing"  # delivered, refunded … : nothing to do
    with platform_scope():
        # One delivery of an order at a time (a retried job and the reconciler may overlap):
        # the order row locked, read with its shop, its lines and their products in one round
        # trip (the strategies then find the products in the session).
        found = db.session.execute(
            _with_lines_and_products(select(Order, Tenant, Product))
            .where(Order.id == order_id).order_by(OrderLine.id)
            .with_for_update(of=Order)).unique().all()
    if not found:
        db.session.rollback()
        return "missing"
    order = found[0][0]
    with tenant_scope(order.tenant_id):
        if order.status == "paid":
            if not transition(order, "delivering", from_status="paid"):
                db.session.rollback()
                return order.status
        elif order.status != "delivering":
            db.session.rollback()
            return order.status  # delivered, refunded … : nothing to do
        try:
            outcomes = [STRATEGIES[line.delivery_kind](order, line) for line in order.lines]
            if order.kind == "topup":
                outcomes = ["delivered"]
        except DeliveryProblem as problem:
            db.session.rollback()
            return fail_delivery(order_id, str(problem))
        if all(outcome == "delivered" for outcome in outcomes):
            if batch <= 1:
                _capture_supply_cost(order)  # else with the batch's, after it (same commit)
            transition(order, "delivered", from_status="delivering")
            events.order_delivered(order)
        else:
            transition(order, "awaiting", from_status="delivering")
            if any(line.delivery_kind == "manual" for line in order.lines):
                db.session.add(ShopNotice(
                    tenant_id=order.tenant_id, kind="fulfil",
                    message=f"Order {order.number} is paid and waits for you to fulfil it."))
                events.order_awaiting(order)
        db.session.flush()
    if batch > 1:
        delivered = [order] if order.status == "delivered" else []
        _capture_supply_costs(delivered + _deliver_waiting(batch - 1, besides=order.id))
    db.session.commit()
    return order.status


def _status_of(order_id: int) -> str | None:
    """The order's status, before anything else: the whole cost of a job whose order a batch
    has delivered. Read by id whatever the shop (it only decides whether to go on; the
    delivery itself reads the order again, locked) on an autocommit connection — no BEGIN and
    ROLLBACK round trips — unless the session is inside a transaction whose changes it must
    see."""
    query = select(Order.__table__.c.status).where(Order.__table__.c.id == order_id)
    if db.session().in_transaction():
        with platform_scope():
            return db.session.scalar(query)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        return connection.scalar(query)


# Orders whose every line is one of these are delivered in batches: nothing leaves the
# database (no supplier call) and nobody has to act.
BATCHED_KINDS = ("card", "text")


def _with_lines_and_products(query):
    return (query.join(Tenant, Tenant.id == Order.tenant_id)
            .outerjoin(OrderLine, OrderLine.order_id == Order.id)
            .outerjoin(Product, (Product.id == OrderLine.product_id)
                       & (Product.tenant_id == Order.tenant_id))
            .options(contains_eager(Order.lines)))


def _deliver_waiting(limit: int, *, besides: int) -> list[Order]:
    """Deliver up to `limit` other paid card/fixed-content orders, oldest payment first, in the
    caller's transaction (the caller captures their supply costs, `_capture_supply_costs`,
    and commits once for all). Returns the orders delivered.

    The orders are claimed with `FOR UPDATE SKIP LOCKED` (PostgreSQL: another worker's
    delivery is skipped, not waited for; SQLite serialises writers, and this transaction has
    already written) and move paid -> delivering with the same compare-and-set as a single
    delivery. Usually they are delivered together (`_deliver_together`). If any of them
    cannot be, that is rolled back and they are delivered one by one, each in a SAVEPOINT
    (`_deliver_one_by_one`): an order that cannot be delivered is rolled back alone and failed
    for staff exactly as `fail_delivery` does. The delivered orders then move to delivered
    together: one UPDATE, one INSERT of timeline rows, one of mails.
    """
    with platform_scope():
        other_lines = select(OrderLine.id).where(OrderLine.order_id == Order.id,
                                                 OrderLine.delivery_kind.not_in(BATCHED_KINDS))
        ids = list(db.session.scalars(
            select(Order.id).where(Order.status == "paid", Order.kind == "purchase",
                                   Order.id != besides, ~other_lines.exists())
            .order_by(Order.expires_at, Order.id).limit(limit)
            .with_for_update(skip_locked=True)))
        if not ids:
            return []
        rows = db.session.execute(
            _with_lines_and_products(select(Order, Tenant, Product))
            .where(Order.id.in_(ids)).order_by(Order.expires_at, Order.id, OrderLine.id)
        ).unique().all()
        orders = list(dict.fromkeys(row[0] for row in rows))
        started, problems = _deliver_together(orders), []
        if started is None:
            started, problems = _deliver_one_by_one(orders)
        record_timeline([timeline_values(order, "paid", "delivering") for order in started])
        delivered = transition_many(started, "delivered", from_status="delivering")
        if len(delivered) != len(started):  # the rows are locked: only a bug gets here
            raise RuntimeError("orders of a delivery batch changed under their lock")
    events.orders_delivered(delivered)
    for order, reason in problems:
        with tenant_scope(order.tenant_id):
            _record_failure(order, reason)
    return delivered


def _deliver_together(orders: list[Order]) -> list[Order] | None:
    """The usual case: each order's reservation covers its codes. One UPDATE moves them to
    delivering, one per code table sells their codes. Returns the orders started (their
    timeline rows are for the caller to add), or None, having rolled back, when any of them
    needs more than that."""
    savepoint = db.session.begin_nested()
    try:
        started = compare_and_set_many(orders, "delivering", from_status="paid")
        sales = []
        for order in started:
            for line in order.lines:
                if line.delivery_kind == "text":
                    _deliver_text(order, line)
                    continue
                product = row_by_id(Product, line.product_id)
                if product is None:
                    raise DeliveryProblem(f"'{line.title}' no longer exists")
                sales.append((product, line.qty, order.id, line.id))
        if sales:
            if not inventory.sell_reservations(sales):
                raise DeliveryProblem("a reservation does not cover its line")
            _fault_pause()
        savepoint.commit()
    except Exception as error:
        savepoint.rollback()
        for order in orders:
            db.session.expire(order)  # paid again: the SAVEPOINT took back the UPDATE
        if not isinstance(error, DeliveryProblem):
            log.warning("delivery batch of %d orders: %r; delivering them one by one",
                        len(orders), error)
        return None
    return started


def _deliver_one_by_one(orders: list[Order]) -> tuple[list[Order], list[tuple[Order, str]]]:
    """Each order in its own SAVEPOINT: (the orders started, (order, reason) for the orders
    that cannot be delivered). An unexpected error leaves its order paid for its own job,
    which handles it as it always has."""
    started, problems = [], []
    for order in orders:
        with tenant_scope(order.tenant_id):
            savepoint = db.session.begin_nested()
            try:
                if not compare_and_set(order, "delivering", from_status="paid"):
                    savepoint.rollback()
                    continue  # someone else moved it first
                for line in order.lines:
                    STRATEGIES[line.delivery_kind](order, line)
                savepoint.commit()
            except DeliveryProblem as problem:
                savepoint.rollback()
                db.session.expire(order)  # paid again (the SAVEPOINT took back its CAS)
                problems.append((order, str(problem)))
                continue
            except Exception:
                savepoint.rollback()
                db.session.expire(order)
                log.exception("order %s: not delivered in a batch; left to its own job",
                              order.number)
                continue
        started.append(order)
    return started, problems


def fail_delivery(order_id: int, reason: str) -> str:
    """Record a failed delivery for staff, in a fresh transaction (the attempt was rolled
    back): from delivering, or from awaiting (a top-up the supplier gave up on)."""
    order = db.session.get(Order, order_id)
    _record_failure(order, reason)
    db.session.commit()
    return order.status


def _record_failure(order: Order, reason: str) -> None:
    """`fail_delivery` in the caller's transaction."""
    if order.status == "paid":
        transition(order, "delivering", from_status="paid")
    if order.status in ("delivering", "awaiting") and transition(
            order, "failed", note=f"delivery failed: {reason}"):
        order.needs_staff = True
        order.staff_reason = f"Delivery failed: {reason}."
        db.session.add(ShopNotice(tenant_id=order.tenant_id, kind="delivery_failed",
                                  message=f"Order {order.number}: delivery failed ({reason})."))
        events.order_failed(order, reason)
    db.session.flush()
    log.warning("order %s: delivery failed: %s", order.number, reason)


def fulfil_order(order: Order, contents: dict[int, str], *, actor: str) -> None:
    """Staff deliver an awaiting (or failed) order by hand: content per line id."""
    source = order.status
    if source not in ("awaiting", "failed"):
        raise Conflict(_l("Only an order awaiting fulfilment or a failed one is delivered "
                          "by hand."))
    if not transition(order, "delivered", from_status=source, actor=actor,
                      note="fulfilled by hand" if source == "awaiting" else "delivered by hand"):
        raise Conflict(_l("The order changed meanwhile; reload and try again."))
    ring = keyring()
    for line in order.lines:
        text = (contents.get(line.id) or "").strip()
        if text:
            line.content = ring.encrypt(text)
    _capture_supply_cost(order)
    order.needs_staff = False
    order.staff_reason = ""
    note(order, "Content entered by staff", actor=actor)
    events.order_delivered(order)
    db.session.flush()


def retry_delivery(order: Order, *, actor: str) -> str:
    """Staff retry a failed delivery (after adding stock, say)."""
    if not transition(order, "delivering", from_status="failed", actor=actor):
        return order.status
    order.needs_staff = False
    order.staff_reason = ""
    db.session.commit()
    return deliver_order(order.id)
