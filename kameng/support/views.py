"""The buyer's side of after-sales on the shop host: report a problem with a delivered order,
follow the ticket and reply, and (logged in) the list of one's tickets.

A ticket page hangs under its order's address — the order's link token, or its number — and
follows exactly the order page's rule (kameng/orders/views.py: order_for_token and
order_for_number): whoever may see the order may see and answer its tickets; anyone else
gets 404.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from ..errors import DomainError
from ..extensions import db, limiter
from ..extensions import login as login_manager
from ..orders.models import Order
from ..orders.views import order_for_number, order_for_token
from ..storefront.views import render_shop
from ..tenants.hosts import current_tenant
from . import service as support
from .forms import ReplyForm, ReportForm, reason_label, resolution_label, status_label

bp = Blueprint("support", __name__)
login_manager.blueprint_login_views["support"] = "members.login"

# Ticket pages can show codes and carry the order's token in their address.
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _post_key() -> str:
    return f"after-sales:{current_tenant().id}:{request.remote_addr}"


# Every message also mails the shop's staff: a visitor cannot flood their inbox.
post_limit = limiter.shared_limit("30 per hour", scope="after-sales", key_func=_post_key,
                                  methods=["POST"])


@bp.app_template_global()
def after_sales_url(page: str, order: Order, token: str | None = None, **values) -> str:
    """The address of an after-sales page ("report" or "ticket") of `order`, under its link
    token when the visitor came with it, else under its number."""
    if token:
        return url_for(f"support.{page}_by_token", token=token, **values)
    return url_for(f"support.{page}_by_number", number=order.number, **values)


@bp.app_context_processor
def ticket_labels() -> dict:
    return {"ticket_reason": reason_label, "ticket_status": status_label,
            "ticket_resolution": resolution_label}


@dataclass(frozen=True)
class OrderAccess:
    """An order the visitor may see, and how they reached it."""

    order: Order
    token: str | None = None

    def url(self, page: str, **values) -> str:
        return after_sales_url(page, self.order, self.token, **values)

    @property
    def order_url(self) -> str:
        if self.token:
            return url_for("orders.order_page", token=self.token)
        return url_for("orders.order_by_number", number=self.order.number)


def _fail(form, error: DomainError) -> int:
    """Show a service's refusal on the form, in the visitor's language; the status to answer."""
    db.session.rollback()
    form.fail(error)
    return 422 if error.status_code == 400 else error.status_code


# -- report a problem ---------------------------------------------------------------------------


@bp.route("/order/<token>/report", methods=["GET", "POST"])
@post_limit
def report_by_token(token: str):
    return _report(OrderAccess(order_for_token(token), token))


@bp.route("/orders/<number>/report", methods=["GET", "POST"])
@post_limit
def report_by_number(number: str):
    return _report(OrderAccess(order_for_number(number)))


def _report(access: OrderAccess):
    order = access.order
    tickets = support.tickets_of_order(order)
    if not support.can_open_ticket(order, tickets):
        ongoing = next((t for t in tickets if t.status in support.OPEN_STATUSES), None)
        if ongoing is not None:
            flash(_("This order already has an open request: add to it here."))
            return redirect(access.url("ticket", ticket_id=ongoing.id))
        flash(_("A problem can be reported on a delivered order."), "error")
        return redirect(access.order_url)
    form = ReportForm()
    status = 200
    if form.validate_on_submit():
        try:
            ticket = support.open_ticket(order, reason=form.reason.data,
                                         message=form.message.data)
        except DomainError as error:
            status = _fail(form, error)
        else:
            db.session.commit()
            flash(_("Your request is sent to the shop. You will get an e-mail when they answer."))
            return redirect(access.url("ticket", ticket_id=ticket.id))
    elif request.method == "POST":
        status = 422
    return render_shop("support/report.html", order=order, form=form,
                       access=access), status, PRIVATE


# -- one ticket ---------------------------------------------------------------------------------


@bp.route("/order/<token>/tickets/<int:ticket_id>", methods=["GET", "POST"])
@post_limit
def ticket_by_token(token: str, ticket_id: int):
    return _ticket(OrderAccess(order_for_token(token), token), ticket_id)


@bp.route("/orders/<number>/tickets/<int:ticket_id>", methods=["GET", "POST"])
@post_limit
def ticket_by_number(number: str, ticket_id: int):
    return _ticket(OrderAccess(order_for_number(number)), ticket_id)


def _ticket(access: OrderAccess, ticket_id: int):
    order = access.order
    ticket = support.ticket_of_order(order, ticket_id)  # another order's ticket: 404
    form = ReplyForm()
    status = 200
    if request.method == "POST":
        if ticket.status not in support.OPEN_STATUSES:
            flash(_("This request is closed. If something is still wrong, report a new "
                    "problem from the order page."), "error")
            return redirect(access.url("ticket", ticket_id=ticket.id))
        if form.validate_on_submit():
            try:
                support.add_message(ticket, author="buyer", email=order.email,
                                    body=form.message.data)
            except DomainError as error:
                status = _fail(form, error)
            else:
                db.session.commit()
                flash(_("Your reply is sent to the shop."))
                return redirect(access.url("ticket", ticket_id=ticket.id))
        else:
            status = 422
    return render_shop(
        "support/ticket.html", order=order, ticket=ticket, form=form, access=access,
        is_open=ticket.status in support.OPEN_STATUSES,
        replacements=support.replacement_items(ticket),
    ), status, PRIVATE


# -- the buyer's tickets ------------------------------------------------------------------------


@bp.get("/account/tickets")
def my_tickets():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return render_shop("support/my_tickets.html",
                       tickets=support.tickets_of_customer(current_user))
