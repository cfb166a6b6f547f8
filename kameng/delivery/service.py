"""Delivering paid orders: `deliver_order(order_id)` takes an order from paid to delivered
(or awaiting fulfilment, or failed with the reason), one strategy per delivery kind.

Idempotent: it reads the order's state from the database, moves it with compare-and-set, and
does everything for one order in one transaction — running it twice, or in two workers at
once, delivers once. Workers pass ids, never objects; the job binds the order's shop itself.
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
from ..orders.states import note, transition
from ..rows import row_by_id
from ..security.crypto import keyring
from ..tenants.models import Tenant
from ..tenants.scoping import platform_scope, tenant_scope

log = logging.getLogger(__name__)


class DeliveryProblem(Exception):
    """A line cannot be delivered now; the order goes to `failed` for staff with this reason."""


def _capture_supply_cost(order: Order) -> None:
    """The codes are out: the shop pays the platform the supply cost it had on hold."""
    if not order.cost_total:
        return  # no supply cost, so no hold was placed (checkout holds only a cost_total)
    for hold in ledger.holds_of_order(order.id):
        if hold.account.kind == "shop_wallet":
            ledger.capture_hold(hold, f"order:{order.id}:supply-cost", "supply_cost",
                                ledger.get_account("platform_revenue", currency=order.currency),
                                tenant_id=order.tenant_id, order_id=order.id)


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


def deliver_order(order_id: int) -> str:
    """Deliver one paid order; returns its status afterwards. Commits."""
    with platform_scope():
        # One delivery of an order at a time (a retried job and the reconciler may overlap):
        # the order row locked, read with its shop, its lines and their products in one round
        # trip (the strategies then find the products in the session).
        found = db.session.execute(
            select(Order, Tenant, Product).join(Tenant, Tenant.id == Order.tenant_id)
            .outerjoin(OrderLine, OrderLine.order_id == Order.id)
            .outerjoin(Product, (Product.id == OrderLine.product_id)
                       & (Product.tenant_id == Order.tenant_id))
            .where(Order.id == order_id).order_by(OrderLine.id)
            .options(contains_eager(Order.lines)).with_for_update(of=Order)).unique().all()
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
            _capture_supply_cost(order)
            transition(order, "delivered", from_status="delivering")
            events.order_delivered(order)
        else:
            transition(order, "awaiting", from_status="delivering")
            if any(line.delivery_kind == "manual" for line in order.lines):
                db.session.add(ShopNotice(
                    tenant_id=order.tenant_id, kind="fulfil",
                    message=f"Order {order.number} is paid and waits for you to fulfil it."))
                events.order_awaiting(order)
        db.session.commit()
        return order.status


def fail_delivery(order_id: int, reason: str) -> str:
    """Record a failed delivery for staff, in a fresh transaction (the attempt was rolled
    back): from delivering, or from awaiting (a top-up the supplier gave up on)."""
    order = db.session.get(Order, order_id)
    if order.status == "paid":
        transition(order, "delivering", from_status="paid")
    if order.status in ("delivering", "awaiting") and transition(
            order, "failed", note=f"delivery failed: {reason}"):
        order.needs_staff = True
        order.staff_reason = f"Delivery failed: {reason}."
        db.session.add(ShopNotice(tenant_id=order.tenant_id, kind="delivery_failed",
                                  message=f"Order {order.number}: delivery failed ({reason})."))
        events.order_failed(order, reason)
    db.session.commit()
    log.warning("order %s: delivery failed: %s", order.number, reason)
    return order.status


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
