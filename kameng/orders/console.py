"""The shop console's order pages: the order list, one order with its payments and timeline,
and what staff do to an order by hand — mark it paid, cancel, refund, fulfil, retry delivery.

Registered by create_app() under /admin on shop hosts (kameng/__init__.py, _register_blueprints).
Card codes are never shown here: the detail page counts the codes each line delivered.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import func, select

from ..audit.service import record
from ..catalog.models import DELIVERY_KINDS, Product
from ..delivery.service import fulfil_order, retry_delivery
from ..errors import Conflict, DomainError
from ..extensions import db
from ..forms import EmptyForm, committing
from ..inventory.models import CardCode, SupplyCode
from ..merchant.console import console_blueprint, guard_blueprint, staff_actor
from ..payments import registry
from ..rows import row_by_id
from ..workers.outbox import after_payment
from . import service as orders
from .forms_console import MarkPaidForm, RefundForm, fulfil_form
from .labels import order_status_label
from .models import ORDER_STATUSES, Order, OrderLine

bp = console_blueprint("shop_orders", __name__)
guard_blueprint(bp, read="orders.view", write="orders.money", order_fulfil="orders.fulfil",
                order_retry="orders.fulfil", order_codes_reveal="codes.reveal")

PAGE_SIZE = 50
MOST_SHOWN = 1000  # "show more" stops here; narrow the list with the filters instead

# What staff may do in each status: the states the services accept (orders.states.TRANSITIONS).
MARK_PAID_FROM = ("pending", "expired")
CANCEL_FROM = ("pending",)
REFUND_FROM = ("paid", "awaiting", "failed", "delivered")
FULFIL_FROM = ("awaiting", "failed")
RETRY_FROM = ("failed",)
# refund_order() would credit a top-up to the wallet a second time (and a gateway refund would
# leave the credit in place): until the service reverses the top-up, staff cannot refund one.

@bp.context_processor
def order_helpers() -> dict:
    return {"method_label": registry.method_label, "order_statuses": ORDER_STATUSES,
            "delivery_kinds": DELIVERY_KINDS}


def _confirm_button() -> None:
    """A plain POST button: CSRFProtect has checked the token; this keeps the habit explicit."""
    if not EmptyForm().validate_on_submit():
        abort(400)


def _back_to(order_id: int):
    return redirect(url_for(".order_detail", order_id=order_id))


# -- the list ----------------------------------------------------------------------------------


def _products_of(order_ids: list[int]) -> dict[int, list[str]]:
    """'2 × Steam 50' per order, in one query for the whole page."""
    products: dict[int, list[str]] = defaultdict(list)
    if order_ids:
        rows = db.session.execute(
            select(OrderLine.order_id, OrderLine.qty, OrderLine.title)
            .where(OrderLine.order_id.in_(order_ids)).order_by(OrderLine.id))
        for order_id, qty, title in rows:
            products[order_id].append(f"{qty} × {title}")
    return products


@bp.get("/orders")
def order_list():
    status = request.args.get("status", "")
    if status not in ORDER_STATUSES:
        status = ""
    needs_staff = request.args.get("needs_staff") == "1"
    search = request.args.get("q", "").strip()[:100]
    shown = min(max(request.args.get("shown", PAGE_SIZE, type=int), PAGE_SIZE), MOST_SHOWN)
    found = orders.search_orders(status=status, query=search, needs_staff=needs_staff,
                                 limit=shown + 1)
    rows = found[:shown]
    more = len(found) > shown and shown < MOST_SHOWN
    return render_template(
        "shop_orders/list.html", orders=rows, products=_products_of([o.id for o in rows]),
        status=status, needs_staff=needs_staff, search=search, shown=shown, more=more,
        next_shown=min(shown + PAGE_SIZE, MOST_SHOWN),
    )


# -- one order ---------------------------------------------------------------------------------


@dataclass
class LineRow:
    line: OrderLine
    inputs: list[tuple[str, str]]  # (label, the buyer's answer)
    codes_sold: int
    codes_void: int

    @property
    def has_content(self) -> bool:
        return self.line.content is not None


def _code_counts(order: Order) -> dict[tuple[int, str], int]:
    """(line id, code status) -> how many codes: counts only, never a code."""
    counts: dict[tuple[int, str], int] = defaultdict(int)
    for model in (CardCode, SupplyCode):
        query = (select(model.order_line_id, model.status, func.count())
                 .where(model.order_id == order.id, model.order_line_id.is_not(None))
                 .group_by(model.order_line_id, model.status))
        if model is SupplyCode:  # a platform table: the order's shop is named explicitly
            query = query.where(SupplyCode.tenant_id == order.tenant_id)
        for line_id, status, number in db.session.execute(query):
            counts[(line_id, status)] += number
    return counts


def _input_labels(line: OrderLine) -> list[tuple[str, str]]:
    """The buyer's answers under the product's field labels (the names if it is gone)."""
    product = row_by_id(Product, line.product_id) if line.product_id else None
    labels = {spec["name"]: spec.get("label") or spec["name"]
              for spec in (product.fields if product is not None else [])}
    answers = line.buyer_input or {}
    return [(labels.get(name, name), str(value)) for name, value in answers.items()]


def _detail_page(order: Order, *, paid_form=None, refund_form=None, fulfil=None,
                 revealed=None, status: int = 200):
    counts = _code_counts(order)
    lines = [LineRow(line=line, inputs=_input_labels(line),
                     codes_sold=counts.get((line.id, "sold"), 0),
                     codes_void=counts.get((line.id, "void"), 0)) for line in order.lines]
    return render_template(
        "shop_orders/detail.html", order=order, lines=lines,
        paid_form=paid_form or MarkPaidForm(formdata=None, prefix="paid"),
        refund_form=refund_form or RefundForm(formdata=None, prefix="refund"),
        fulfil_form=fulfil or fulfil_form(order.lines, bind=False),
        action=EmptyForm(formdata=None),
        can_mark_paid=order.status in MARK_PAID_FROM, can_cancel=order.status in CANCEL_FROM,
        can_refund=order.status in REFUND_FROM,
        can_fulfil=order.status in FULFIL_FROM,
        can_retry=order.status in RETRY_FROM, revealed=revealed,
    ), status


@bp.get("/orders/<int:order_id>")
def order_detail(order_id: int):
    return _detail_page(orders.get_order(order_id))


@bp.post("/orders/<int:order_id>/codes/reveal")
def order_codes_reveal(order_id: int):
    """Owners and managers may look at what the buyer received (guarded: codes.reveal);
    every look is audited."""
    order = orders.get_order(order_id)
    _confirm_button()
    items = [(line, values) for line, values in orders.delivered_items(order) if values]
    record(staff_actor(), "codes.reveal", tenant_id=order.tenant_id, target=order.number,
           count=sum(len(values) for _, values in items))
    db.session.commit()
    body, status = _detail_page(order, revealed=items)
    return body, status, {"Cache-Control": "no-store"}


def _refused(order_id: int, error: DomainError, **forms):
    """A service said no: undo, say why, and show the page again with what was typed."""
    db.session.rollback()
    flash(error.message, "error")
    return _detail_page(orders.get_order(order_id), status=422, **forms)


def _not_now(order_id: int, message: str):
    """The order is not in a state for this action (someone acted first, or an old page)."""
    flash(message, "error")
    return _back_to(order_id)


@bp.post("/orders/<int:order_id>/mark-paid")
def order_mark_paid(order_id: int):
    order = orders.get_order(order_id)
    if order.status not in MARK_PAID_FROM:
        return _not_now(order_id, _("Only an unpaid or expired order can be marked as paid."))
    form = MarkPaidForm(prefix="paid")
    if not form.validate_on_submit():
        return _detail_page(order, paid_form=form, status=422)
    reason = form.reason.data.strip()
    try:
        if not orders.mark_paid(order, payment=None, actor=current_user.email,
                                note_text=f"marked paid by staff: {reason}"):
            raise Conflict(_l("Only an unpaid or expired order can be marked as paid."))
        record(staff_actor(), "order.mark_paid", tenant_id=order.tenant_id, target=order.number,
               reason=reason)
    except DomainError as error:
        return _refused(order_id, error, paid_form=form)
    db.session.commit()
    after_payment(order_id)  # delivered like any paid order
    order = orders.get_order(order_id)
    flash(_("Order %(number)s marked as paid; it is now %(status)s.",
            number=order.number, status=order_status_label(order.status).lower()))
    return _back_to(order_id)


@bp.post("/orders/<int:order_id>/cancel")
def order_cancel(order_id: int):
    order = orders.get_order(order_id)
    _confirm_button()
    with committing() as attempt:
        orders.cancel_order(order, actor=current_user.email)
        record(staff_actor(), "order.cancel", tenant_id=order.tenant_id, target=order.number)
    if attempt.failed:
        return _back_to(order_id)
    flash(_("Order %(number)s cancelled; its reserved stock is available again.",
            number=order.number))
    return _back_to(order_id)


@bp.post("/orders/<int:order_id>/refund")
def order_refund(order_id: int):
    order = orders.get_order(order_id)
    if order.status not in REFUND_FROM:
        return _not_now(order_id, _("Only a paid order can be refunded."))
    form = RefundForm(prefix="refund")
    if not form.validate_on_submit():
        return _detail_page(order, refund_form=form, status=422)
    reason = form.reason.data.strip()
    try:
        orders.refund_order(order, to=form.to.data, actor=current_user.email, reason=reason)
        record(staff_actor(), "order.refund", tenant_id=order.tenant_id, target=order.number,
               to=form.to.data, amount=order.amount_due, currency=order.currency, reason=reason)
    except DomainError as error:
        return _refused(order_id, error, refund_form=form)
    db.session.commit()
    if form.to.data == "wallet":
        flash(_("Order %(number)s refunded to the buyer's wallet.", number=order.number))
    else:
        flash(_("Order %(number)s refunded through the payment gateway.", number=order.number))
    return _back_to(order_id)


@bp.post("/orders/<int:order_id>/fulfil")
def order_fulfil(order_id: int):
    order = orders.get_order(order_id)
    if order.status not in FULFIL_FROM:
        return _not_now(order_id, "Only an order that awaits fulfilment or failed delivery can "
                                  "be fulfilled by hand.")
    form = fulfil_form(order.lines)
    if not form.validate_on_submit():
        return _detail_page(order, fulfil=form, status=422)
    try:
        fulfil_order(order, form.contents(), actor=current_user.email)
        record(staff_actor(), "order.fulfil", tenant_id=order.tenant_id, target=order.number)
    except DomainError as error:
        return _refused(order_id, error, fulfil=form)
    db.session.commit()
    flash(_("Order %(number)s delivered; the buyer sees the content on the order page.",
            number=order.number))
    return _back_to(order_id)


@bp.post("/orders/<int:order_id>/retry")
def order_retry(order_id: int):
    order = orders.get_order(order_id)
    _confirm_button()
    if order.status not in RETRY_FROM:
        return _not_now(order_id, _("Only a failed delivery can be retried."))
    record(staff_actor(), "order.retry_delivery", tenant_id=order.tenant_id,
           target=order.number)
    status = retry_delivery(order, actor=current_user.email)  # commits, with the audit event
    db.session.rollback()  # nothing left to keep if someone else moved the order first
    order = orders.get_order(order_id)
    if status == "failed":
        flash(_("Delivery failed again: %(reason)s",
                reason=order.staff_reason or _("see the timeline")), "error")
    elif status == "awaiting":
        flash(_("Order %(number)s now waits for you to fulfil it.", number=order.number))
    else:
        flash(_("Order %(number)s is %(status)s.", number=order.number,
                status=order_status_label(status).lower()))
    return _back_to(order_id)
