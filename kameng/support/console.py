"""The shop console's after-sales pages: the tickets with a status filter and counts, and one
ticket with its order, its messages, a reply, and the three resolutions — replace codes,
refund, decline with a reason.

Registered by create_app() under /admin on shop hosts (kameng/__init__.py). Every staff role
reads and answers tickets (tickets.view, tickets.reply); a refund moves money, so it needs
orders.money like a refund on the order page. Codes are never shown here: staff pick the
reported ones by id, and only the buyer sees the new ones.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from wtforms import SelectChoice

from ..audit.service import record
from ..errors import DomainError
from ..extensions import db
from ..merchant.console import console_blueprint, guard_blueprint, staff_actor
from ..orders.console import REFUND_FROM
from ..orders.models import Order
from ..payments import registry
from . import service as support
from .forms import (
    DeclineForm,
    ReplaceForm,
    ReplyForm,
    TicketRefundForm,
    reason_label,
    resolution_label,
    status_label,
)
from .models import TICKET_STATUSES, Ticket

bp = console_blueprint("shop_support", __name__)
guard_blueprint(bp, read="tickets.view", write="tickets.reply", ticket_refund="orders.money")


@bp.context_processor
def ticket_helpers() -> dict:
    return {"ticket_reason": reason_label, "ticket_status": status_label,
            "ticket_resolution": resolution_label, "method_label": registry.method_label}


# -- the list ----------------------------------------------------------------------------------


@bp.get("/tickets")
def ticket_list():
    status = request.args.get("status", "")
    if status not in (*TICKET_STATUSES, support.ACTIVE):
        status = ""
    tickets = support.list_tickets(status=status)
    order_ids = {t.order_id for t in tickets}
    orders = {o.id: o for o in db.session.scalars(
        select(Order).where(Order.id.in_(order_ids)))} if order_ids else {}
    return render_template("shop_support/list.html", tickets=tickets, orders=orders,
                           status=status, counts=support.ticket_counts(),
                           statuses=TICKET_STATUSES)


# -- one ticket --------------------------------------------------------------------------------


def _replace_form(order: Order, **kwargs) -> ReplaceForm:
    form = ReplaceForm(prefix="replace", **kwargs)
    form.codes.choices = [
        SelectChoice(code_id, _("%(title)s — code #%(id)s", title=line.title, id=code_id))
        for line, code_id in support.sold_codes(order)]
    return form


def _detail_page(ticket: Ticket, *, reply=None, replace=None, refund=None, decline=None,
                 status: int = 200):
    order = db.session.get(Order, ticket.order_id)
    is_open = ticket.status in support.OPEN_STATUSES
    replace = replace or _replace_form(order, formdata=None)
    return render_template(
        "shop_support/detail.html", ticket=ticket, order=order, is_open=is_open,
        reply_form=reply or ReplyForm(formdata=None, prefix="reply"),
        replace_form=replace,
        refund_form=refund or TicketRefundForm(formdata=None, prefix="refund"),
        decline_form=decline or DeclineForm(formdata=None, prefix="decline"),
        can_replace=is_open and bool(replace.codes.choices),
        can_refund_order=is_open and order.status in REFUND_FROM,
        other_tickets=[t for t in support.tickets_of_order(order) if t.id != ticket.id],
    ), status


@bp.get("/tickets/<int:ticket_id>")
def ticket_detail(ticket_id: int):
    return _detail_page(support.get_ticket(ticket_id))


def _back_to(ticket_id: int):
    return redirect(url_for(".ticket_detail", ticket_id=ticket_id))


def _refused(ticket_id: int, error: DomainError, form, **forms):
    """A service said no: undo, show why on the form that was sent, and the page again."""
    db.session.rollback()
    form.fail(error)
    status = 422 if error.status_code == 400 else error.status_code
    return _detail_page(support.get_ticket(ticket_id), status=status, **forms)


def _closed(ticket_id: int):
    """The ticket was closed already (a second click, another staff member, an old page)."""
    flash(_("This ticket is closed already; nothing was changed."), "error")
    return _back_to(ticket_id)


@bp.post("/tickets/<int:ticket_id>/reply")
def ticket_reply(ticket_id: int):
    ticket = support.get_ticket(ticket_id)
    if ticket.status not in support.OPEN_STATUSES:
        return _closed(ticket_id)
    form = ReplyForm(prefix="reply")
    if not form.validate_on_submit():
        return _detail_page(ticket, reply=form, status=422)
    try:
        support.add_message(ticket, author="staff", email=current_user.email,
                            body=form.message.data)
    except DomainError as error:
        return _refused(ticket_id, error, form, reply=form)
    db.session.commit()
    flash(_("Reply sent; the buyer is told by e-mail."))
    return _back_to(ticket_id)


@bp.post("/tickets/<int:ticket_id>/replace")
def ticket_replace(ticket_id: int):
    ticket = support.get_ticket(ticket_id)
    if ticket.status not in support.OPEN_STATUSES:
        return _closed(ticket_id)
    order = db.session.get(Order, ticket.order_id)
    form = _replace_form(order)
    if not form.validate_on_submit():
        return _detail_page(ticket, replace=form, status=422)
    try:
        count = support.replace_codes(ticket, form.codes.data, actor=current_user.email,
                                      message=form.message.data or "")
        record(staff_actor(), "ticket.replace", tenant_id=order.tenant_id, target=order.number,
               ticket=ticket.id, codes=count)
    except DomainError as error:
        return _refused(ticket_id, error, form, replace=form)
    db.session.commit()
    flash(_("%(count)d code(s) replaced; the buyer sees the new one on their order page.",
            count=count))
    return _back_to(ticket_id)


@bp.post("/tickets/<int:ticket_id>/refund")
def ticket_refund(ticket_id: int):
    ticket = support.get_ticket(ticket_id)
    if ticket.status not in support.OPEN_STATUSES:
        return _closed(ticket_id)
    order = db.session.get(Order, ticket.order_id)
    form = TicketRefundForm(prefix="refund")
    if not form.validate_on_submit():
        return _detail_page(ticket, refund=form, status=422)
    try:
        support.refund_ticket(ticket, to=form.to.data, actor=current_user.email,
                              message=form.message.data or "")
        record(staff_actor(), "order.refund", tenant_id=order.tenant_id, target=order.number,
               to=form.to.data, amount=order.amount_due, currency=order.currency,
               reason=f"ticket #{ticket.id}")
    except DomainError as error:
        return _refused(ticket_id, error, form, refund=form)
    db.session.commit()
    flash(_("Order %(number)s refunded; the ticket is resolved.", number=order.number))
    return _back_to(ticket_id)


@bp.post("/tickets/<int:ticket_id>/decline")
def ticket_decline(ticket_id: int):
    ticket = support.get_ticket(ticket_id)
    if ticket.status not in support.OPEN_STATUSES:
        return _closed(ticket_id)
    form = DeclineForm(prefix="decline")
    if not form.validate_on_submit():
        return _detail_page(ticket, decline=form, status=422)
    try:
        support.decline_ticket(ticket, reason=form.reason.data, actor=current_user.email)
    except DomainError as error:
        return _refused(ticket_id, error, form, decline=form)
    db.session.commit()
    flash(_("Ticket declined; the buyer is told why by e-mail."))
    return _back_to(ticket_id)
