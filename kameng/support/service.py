"""After-sales: buyers open tickets on delivered orders; the shop answers and resolves them by
replacing a code (a new one from stock, the old one voided for good), refunding, or declining
with a reason. Every step is on the order's timeline, and each side is told by mail."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import case, func, select, update

from ..catalog.models import Product
from ..errors import Conflict, DomainError, NotFound
from ..extensions import db
from ..inventory.models import CardCode, SupplyCode
from ..inventory.service import claim_codes, code_stock
from ..mail.service import queue_mail, shop_language, shop_recipients
from ..members.models import Customer
from ..orders.models import Order, OrderLine
from ..orders.service import refund_order
from ..orders.states import note
from ..rows import row_by_id
from .models import TICKET_REASONS, TICKET_STATUSES, Ticket, TicketMessage

MAX_MESSAGE = 4000
OPEN_STATUSES = ("open", "answered")
ACTIVE = "active"  # the list filter for open and answered tickets together


def _text(body: str) -> str:
    body = (body or "").strip()
    if not body:
        raise DomainError(_l("Write a message."), field="message")
    if len(body) > MAX_MESSAGE:
        raise DomainError(_l("A message is at most 4000 characters."), field="message")
    return body


def get_ticket(ticket_id: int) -> Ticket:
    ticket = row_by_id(Ticket, ticket_id)
    if ticket is None:
        raise NotFound(_l("No such ticket."))
    return ticket


def ticket_of_order(order: Order, ticket_id: int) -> Ticket:
    """One of the order's tickets (NotFound for a ticket of another order)."""
    ticket = row_by_id(Ticket, ticket_id)
    if ticket is None or ticket.order_id != order.id:
        raise NotFound(_l("No such ticket."))
    return ticket


def tickets_of_order(order: Order) -> list[Ticket]:
    return list(db.session.scalars(
        select(Ticket).where(Ticket.order_id == order.id).order_by(Ticket.id.desc())))


def tickets_of_customer(customer: Customer, limit: int = 50) -> list[tuple[Ticket, Order]]:
    """A registered buyer's tickets on their own orders, newest first, with each order."""
    rows = db.session.execute(
        select(Ticket, Order).join(Order, Order.id == Ticket.order_id)
        .where(Order.customer_id == customer.id).order_by(Ticket.id.desc()).limit(limit))
    return [(ticket, order) for ticket, order in rows]


def can_open_ticket(order: Order, tickets: list[Ticket]) -> bool:
    """Whether the buyer may report a problem now: a delivered purchase with no open ticket
    (`tickets` are the order's, from tickets_of_order)."""
    return (order.kind == "purchase" and order.status == "delivered"
            and not any(t.status in OPEN_STATUSES for t in tickets))


def list_tickets(status: str = "", limit: int = 200) -> list[Ticket]:
    """The bound shop's tickets, newest first; with no status, open ones before closed ones.

    `status` is one of TICKET_STATUSES, or ACTIVE for open and answered ones."""
    query = select(Ticket).limit(limit)
    if status == ACTIVE:
        query = query.where(Ticket.status.in_(OPEN_STATUSES))
    elif status:
        query = query.where(Ticket.status == status)
    if not status:
        query = query.order_by(case((Ticket.status.in_(OPEN_STATUSES), 0), else_=1))
    return list(db.session.scalars(query.order_by(Ticket.id.desc())))


def ticket_counts() -> dict[str, int]:
    """How many tickets the bound shop has in each status (every status present, maybe 0)."""
    counts = dict.fromkeys(TICKET_STATUSES, 0)
    for status, number in db.session.execute(
            select(Ticket.status, func.count()).group_by(Ticket.status)):
        counts[status] = number
    return counts


def open_ticket(order: Order, *, reason: str, message: str) -> Ticket:
    """A buyer reports a problem with a delivered order (one open ticket per order)."""
    if order.status != "delivered" or order.kind != "purchase":
        raise Conflict(_l("A ticket can be opened on a delivered order."))
    if reason not in TICKET_REASONS:
        raise DomainError(_l("Choose what is wrong."), field="reason")
    body = _text(message)
    # Lock the order's row (PostgreSQL) so that two quick submissions make one ticket.
    db.session.execute(select(Order.id).where(Order.id == order.id).with_for_update())
    already = db.session.scalar(select(func.count()).select_from(Ticket).where(
        Ticket.order_id == order.id, Ticket.status.in_(OPEN_STATUSES)))
    if already:
        raise Conflict(_l("This order already has an open ticket: add to it instead."))
    ticket = Ticket(tenant_id=order.tenant_id, order_id=order.id, email=order.email,
                    reason=reason, status="open")
    db.session.add(ticket)
    db.session.flush()
    db.session.add(TicketMessage(tenant_id=order.tenant_id, ticket_id=ticket.id,
                                 author="buyer", author_email=order.email, body=body))
    note(order, f"After-sales ticket #{ticket.id} opened: {TICKET_REASONS[reason]}",
         actor=order.email)
    _tell_shop(order, _l("New after-sales ticket on order %(number)s", number=order.number),
               _l("%(email)s writes about order %(number)s (%(reason)s):\n\n%(body)s",
                  email=order.email, number=order.number, reason=_l(TICKET_REASONS[reason]),
                  body=body))
    db.session.flush()
    return ticket


def add_message(ticket: Ticket, *, author: str, email: str, body: str) -> TicketMessage:
    """A reply on an open ticket: from the buyer ("buyer") or the shop ("staff")."""
    if ticket.status not in OPEN_STATUSES:
        raise Conflict(_l("This ticket is closed."))
    message = TicketMessage(tenant_id=ticket.tenant_id, ticket_id=ticket.id, author=author,
                            author_email=email, body=_text(body))
    db.session.add(message)
    order = db.session.get(Order, ticket.order_id)
    if author == "staff":
        ticket.status = "answered"
        _tell_buyer(ticket, order, _l("Reply about your order %(number)s", number=order.number),
                    message.body)
    else:
        ticket.status = "open"
        _tell_shop(order, _l("Reply on ticket #%(id)s (order %(number)s)", id=ticket.id,
                             number=order.number), message.body)
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
    can never be sold again. All or nothing (the caller rolls back on an error).

    Each replacement is on the order's timeline with the ids of the voided and the new code
    (event data), so the ticket page can show the buyer their new codes."""
    if ticket.status not in OPEN_STATUSES:
        raise Conflict(_l("This ticket is closed."))
    order = db.session.get(Order, ticket.order_id)
    held = {code_id: line for line, code_id in sold_codes(order)}
    chosen = [code_id for code_id in dict.fromkeys(code_ids) if code_id in held]
    if not chosen or len(chosen) != len(set(code_ids)):
        raise DomainError(_l("Choose codes of this order to replace."), field="codes")
    now = datetime.now(UTC)
    known = set(held)
    for code_id in chosen:
        line = held[code_id]
        product = row_by_id(Product, line.product_id)
        if product is None:
            raise DomainError(_l("'%(title)s' no longer exists: refund instead.", title=line.title))
        model, product_id = code_stock(product)
        voided = db.session.execute(
            update(model).where(model.id == code_id, model.status == "sold")
            .values(status="void").execution_options(synchronize_session=False)).rowcount
        if voided != 1:
            raise Conflict(_l("The order's codes changed meanwhile; reload and try again."))
        values = {"status": "sold", "order_id": order.id, "order_line_id": line.id,
                  "sold_at": now}
        if model is SupplyCode:
            values["tenant_id"] = order.tenant_id
        if claim_codes(model, product_id, 1, values) != 1:
            raise DomainError(_l("No code of '%(title)s' is in stock to replace it: import "
                                 "codes first, or refund.", title=line.title))
        new_id = _new_code_of(model, line, order.tenant_id, known)
        known.add(new_id)
        note(order, f"Ticket #{ticket.id}: code #{code_id} voided and replaced by a new code "
                    f"of '{line.title}'", actor=actor,
             data={"ticket_id": ticket.id, "line_id": line.id, "voided_code_id": code_id,
                   "new_code_id": new_id})
    _close(ticket, "resolved", "replaced", actor=actor)
    _tell_buyer(ticket, order, _l("New code for your order %(number)s", number=order.number),
                _l("We replaced the code you reported. The new code is on your order page."),
                lead=message)
    db.session.flush()
    return len(chosen)


def _new_code_of(model, line: OrderLine, tenant_id: int, known: set[int]) -> int:
    """The id of the code just sold on `line` (the one sold code of it not in `known`)."""
    query = select(model.id).where(model.order_line_id == line.id, model.status == "sold",
                                   model.id.not_in(known))
    if model is SupplyCode:
        query = query.where(SupplyCode.tenant_id == tenant_id)
    return db.session.scalar(query.order_by(model.id.desc()).limit(1))


def replacement_items(ticket: Ticket) -> list[tuple[OrderLine, list[str]]]:
    """The codes this ticket gave the buyer in place of reported ones, per line (plaintext,
    for the buyer's ticket page only); codes voided since (a later refund) are left out."""
    from ..security.crypto import keyring

    order = db.session.get(Order, ticket.order_id)
    new_ids: dict[int, list[int]] = defaultdict(list)
    for event in order.events:
        data = event.data or {}
        if data.get("ticket_id") == ticket.id and data.get("new_code_id"):
            new_ids[data["line_id"]].append(data["new_code_id"])
    items = []
    for line in order.lines:
        if line.id not in new_ids:
            continue
        model = SupplyCode if line.supply_product_id else CardCode
        query = select(model.ciphertext).where(
            model.id.in_(new_ids[line.id]), model.order_line_id == line.id,
            model.status == "sold").order_by(model.id)
        if model is SupplyCode:
            query = query.where(SupplyCode.tenant_id == order.tenant_id)
        values = [keyring().decrypt(blob) for blob in db.session.scalars(query)]
        if values:
            items.append((line, values))
    return items


def refund_ticket(ticket: Ticket, *, to: str, actor: str, message: str = "") -> None:
    if ticket.status not in OPEN_STATUSES:
        raise Conflict(_l("This ticket is closed."))
    order = db.session.get(Order, ticket.order_id)
    refund_order(order, to=to, actor=actor, reason=f"ticket #{ticket.id}")
    _close(ticket, "resolved", "refunded", actor=actor)
    _tell_buyer(ticket, order, _l("Refund for your order %(number)s", number=order.number),
                _l("The amount is back in your wallet at the shop.") if to == "wallet"
                else _l("The amount is on its way back to how you paid."), lead=message)
    db.session.flush()


def decline_ticket(ticket: Ticket, *, reason: str, actor: str) -> None:
    if ticket.status not in OPEN_STATUSES:
        raise Conflict(_l("This ticket is closed."))
    why = _text(reason)
    order = db.session.get(Order, ticket.order_id)
    db.session.add(TicketMessage(tenant_id=ticket.tenant_id, ticket_id=ticket.id,
                                 author="staff", author_email=actor, body=why))
    _close(ticket, "declined", "declined", actor=actor)
    _tell_buyer(ticket, order, _l("About your order %(number)s", number=order.number), why)
    db.session.flush()


def _close(ticket: Ticket, status: str, resolution: str, *, actor: str) -> None:
    """Close an open ticket with a compare-and-set: of two resolutions sent at once (a double
    click, two staff members) only the first applies; the other raises and is rolled back."""
    db.session.flush()
    closed = db.session.execute(
        update(Ticket).where(Ticket.id == ticket.id, Ticket.status.in_(OPEN_STATUSES))
        .values(status=status, resolution=resolution, updated_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)).rowcount
    db.session.expire(ticket, ["status", "resolution", "updated_at"])
    if closed != 1:
        raise Conflict(_l("This ticket was closed meanwhile: reload the page."))
    order = db.session.get(Order, ticket.order_id)
    note(order, f"Ticket #{ticket.id} {status} ({resolution})", actor=actor)


def _tell_buyer(ticket: Ticket, order: Order, subject, body, *, lead: str = "") -> None:
    """Mail the buyer in the shop's language: `subject` and `body` are lazy (`_l`) texts or
    what someone typed; `lead`, the staff's own words, goes first."""
    from ..orders.events import order_link

    link = order_link(order)
    with shop_language(order.tenant_id):
        text = (lead.strip() + "\n\n" if lead.strip() else "") + str(body)
        if link:
            text += "\n\n" + _("Your order: %(link)s", link=link)
        subject = str(subject)
    queue_mail(tenant_id=order.tenant_id, to=ticket.email, kind="ticket.update",
               subject=subject, body=text)


def _tell_shop(order: Order, subject, body) -> None:
    with shop_language(order.tenant_id):
        subject, body = str(subject), str(body)
    for to in shop_recipients(order.tenant_id):
        queue_mail(tenant_id=order.tenant_id, to=to, kind="ticket.new", subject=subject,
                   body=body)
