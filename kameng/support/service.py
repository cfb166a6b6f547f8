"""After-sales: buyers open tickets on delivered orders; the shop answers and resolves them by
replacing a code (a new one from stock, the old one voided for good), refunding, or declining
with a reason. Every step is on the order's timeline, and each side is told by mail."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select, update

from ..catalog.models import Product
from ..errors import Conflict, DomainError, NotFound
from ..extensions import db
from ..inventory.models import CardCode, SupplyCode
from ..inventory.service import claim_codes, code_stock
from ..mail.service import queue_mail, shop_recipients
from ..orders.models import Order, OrderLine
from ..orders.service import refund_order
from ..orders.states import note
from ..rows import row_by_id
from .models import TICKET_REASONS, Ticket, TicketMessage

MAX_MESSAGE = 4000
OPEN_STATUSES = ("open", "answered")


def _text(body: str) -> str:
    body = (body or "").strip()
    if not body:
        raise DomainError("Write a message.", field="message")
    if len(body) > MAX_MESSAGE:
        raise DomainError(f"A message is at most {MAX_MESSAGE} characters.", field="message")
    return body


def get_ticket(ticket_id: int) -> Ticket:
    ticket = row_by_id(Ticket, ticket_id)
    if ticket is None:
        raise NotFound("No such ticket.")
    return ticket


def tickets_of_order(order: Order) -> list[Ticket]:
    return list(db.session.scalars(
        select(Ticket).where(Ticket.order_id == order.id).order_by(Ticket.id.desc())))


def list_tickets(status: str = "", limit: int = 200) -> list[Ticket]:
    """The bound shop's tickets, open ones first when no status is given."""
    query = select(Ticket).order_by(Ticket.id.desc()).limit(limit)
    if status:
        query = query.where(Ticket.status == status)
    return list(db.session.scalars(query))


def open_ticket(order: Order, *, reason: str, message: str) -> Ticket:
    """A buyer reports a problem with a delivered order (one open ticket per order)."""
    if order.status != "delivered" or order.kind != "purchase":
        raise Conflict("A ticket can be opened on a delivered order.")
    if reason not in TICKET_REASONS:
        raise DomainError("Choose what is wrong.", field="reason")
    body = _text(message)
    already = db.session.scalar(select(func.count()).select_from(Ticket).where(
        Ticket.order_id == order.id, Ticket.status.in_(OPEN_STATUSES)))
    if already:
        raise Conflict("This order already has an open ticket: add to it instead.")
    ticket = Ticket(tenant_id=order.tenant_id, order_id=order.id, email=order.email,
                    reason=reason, status="open")
    db.session.add(ticket)
    db.session.flush()
    db.session.add(TicketMessage(tenant_id=order.tenant_id, ticket_id=ticket.id,
                                 author="buyer", author_email=order.email, body=body))
    note(order, f"After-sales ticket #{ticket.id} opened: {TICKET_REASONS[reason]}",
         actor=order.email)
    _tell_shop(order, f"New after-sales ticket on order {order.number}",
               f"{order.email} writes about order {order.number} "
               f"({TICKET_REASONS[reason]}):\n\n{body}")
    db.session.flush()
    return ticket


def add_message(ticket: Ticket, *, author: str, email: str, body: str) -> TicketMessage:
    """A reply on an open ticket: from the buyer ("buyer") or the shop ("staff")."""
    if ticket.status not in OPEN_STATUSES:
        raise Conflict("This ticket is closed.")
    message = TicketMessage(tenant_id=ticket.tenant_id, ticket_id=ticket.id, author=author,
                            author_email=email, body=_text(body))
    db.session.add(message)
    order = db.session.get(Order, ticket.order_id)
    if author == "staff":
        ticket.status = "answered"
        _tell_buyer(ticket, order, f"Reply about your order {order.number}", message.body)
    else:
        ticket.status = "open"
        _tell_shop(order, f"Reply on ticket #{ticket.id} (order {order.number})", message.body)
    ticket.updated_at = datetime.now(UTC)
    db.session.flush()
    return message


def sold_codes(order: Order) -> list[tuple[OrderLine, int]]:
    """(line, code id) of every code the order holds now, for staff to pick from (ids only)."""
    rows = []
    for line in order.lines:
        if line.delivery_kind != "card":
            continue
        model = SupplyCode if line.supply_product_id else CardCode
        query = select(model.id).where(model.order_line_id == line.id, model.status == "sold")
        if model is SupplyCode:
            query = query.where(SupplyCode.tenant_id == order.tenant_id)
        rows += [(line, code_id) for code_id in db.session.scalars(query.order_by(model.id))]
    return rows


def replace_codes(ticket: Ticket, code_ids: list[int], *, actor: str, message: str = "") -> int:
    """Give the buyer a new code from stock for each reported one; the old ones are voided and
    can never be sold again. All or nothing (the caller rolls back on an error)."""
    if ticket.status not in OPEN_STATUSES:
        raise Conflict("This ticket is closed.")
    order = db.session.get(Order, ticket.order_id)
    held = {code_id: line for line, code_id in sold_codes(order)}
    chosen = [code_id for code_id in dict.fromkeys(code_ids) if code_id in held]
    if not chosen or len(chosen) != len(set(code_ids)):
        raise DomainError("Choose codes of this order to replace.", field="codes")
    now = datetime.now(UTC)
    for code_id in chosen:
        line = held[code_id]
        product = row_by_id(Product, line.product_id)
        if product is None:
            raise DomainError(f"'{line.title}' no longer exists: refund instead.")
        model, product_id = code_stock(product)
        voided = db.session.execute(
            update(model).where(model.id == code_id, model.status == "sold")
            .values(status="void").execution_options(synchronize_session=False)).rowcount
        if voided != 1:
            raise Conflict("The order's codes changed meanwhile; reload and try again.")
        values = {"status": "sold", "order_id": order.id, "order_line_id": line.id,
                  "sold_at": now}
        if model is SupplyCode:
            values["tenant_id"] = order.tenant_id
        if claim_codes(model, product_id, 1, values) != 1:
            raise DomainError(f"No code of '{line.title}' is in stock to replace it: import "
                              "codes first, or refund.")
        note(order, f"Ticket #{ticket.id}: code #{code_id} voided and replaced by a new code "
                    f"of '{line.title}'", actor=actor)
    _close(ticket, "resolved", "replaced", actor=actor)
    _tell_buyer(ticket, order, f"New code for your order {order.number}",
                (message.strip() + "\n\n" if message.strip() else "")
                + "We replaced the code you reported. The new code is on your order page.")
    db.session.flush()
    return len(chosen)


def refund_ticket(ticket: Ticket, *, to: str, actor: str, message: str = "") -> None:
    if ticket.status not in OPEN_STATUSES:
        raise Conflict("This ticket is closed.")
    order = db.session.get(Order, ticket.order_id)
    refund_order(order, to=to, actor=actor, reason=f"ticket #{ticket.id}")
    _close(ticket, "resolved", "refunded", actor=actor)
    _tell_buyer(ticket, order, f"Refund for your order {order.number}",
                (message.strip() + "\n\n" if message.strip() else "")
                + ("The amount is back in your wallet at the shop." if to == "wallet"
                   else "The amount is on its way back to how you paid."))
    db.session.flush()


def decline_ticket(ticket: Ticket, *, reason: str, actor: str) -> None:
    if ticket.status not in OPEN_STATUSES:
        raise Conflict("This ticket is closed.")
    why = _text(reason)
    order = db.session.get(Order, ticket.order_id)
    db.session.add(TicketMessage(tenant_id=ticket.tenant_id, ticket_id=ticket.id,
                                 author="staff", author_email=actor, body=why))
    _close(ticket, "declined", "declined", actor=actor)
    _tell_buyer(ticket, order, f"About your order {order.number}", why)
    db.session.flush()


def _close(ticket: Ticket, status: str, resolution: str, *, actor: str) -> None:
    ticket.status, ticket.resolution = status, resolution
    ticket.updated_at = datetime.now(UTC)
    order = db.session.get(Order, ticket.order_id)
    note(order, f"Ticket #{ticket.id} {status} ({resolution})", actor=actor)


def _tell_buyer(ticket: Ticket, order: Order, subject: str, body: str) -> None:
    from ..orders.events import order_link

    link = order_link(order)
    queue_mail(tenant_id=order.tenant_id, to=ticket.email, kind="ticket.update",
               subject=subject, body=body + (f"\n\nYour order: {link}" if link else ""))


def _tell_shop(order: Order, subject: str, body: str) -> None:
    for to in shop_recipients(order.tenant_id):
        queue_mail(tenant_id=order.tenant_id, to=to, kind="ticket.new", subject=subject,
                   body=body)
