"""After-sales tickets: a reported invalid code is replaced from stock and can never be sold
again; refunds and declines close tickets; each side is told by mail."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kameng.errors import Conflict, DomainError
from kameng.inventory.models import CardCode
from kameng.mail.models import MailMessage
from kameng.orders.models import Order
from kameng.orders.service import delivered_items
from kameng.support import service as support


@pytest.fixture
def delivered(create_tenant, card_product, client_for, buy, pay_sandbox, in_app):
    shop = create_tenant(slug="aftersales")
    product_id = card_product(shop, codes=["BAD-1", "GOOD-2", "GOOD-3"])
    client = client_for(shop)
    pay_sandbox(client, buy(client, product_id, email="buyer@example.test"))
    return shop, product_id


def _order(session):
    return session.scalar(select(Order))


def test_an_invalid_code_is_replaced_and_never_sold_again(delivered, in_app):
    shop, _ = delivered
    with in_app(shop) as session:
        order = _order(session)
        assert [v for _, vs in delivered_items(order) for v in vs] == ["BAD-1"]
        ticket = support.open_ticket(order, reason="code_invalid", message="It says invalid.")
        session.commit()
        with pytest.raises(Conflict, match="already has an open ticket"):
            support.open_ticket(order, reason="other", message="again")
        session.rollback()
        (_, bad_id), = support.sold_codes(order)
        assert support.replace_codes(ticket, [bad_id], actor="staff@x.test") == 1
        session.commit()
        assert [v for _, vs in delivered_items(order) for v in vs] == ["GOOD-2"]
        statuses = dict(session.execute(select(CardCode.id, CardCode.status)).all())
        assert statuses[bad_id] == "void"
        notes = [e.note for e in order.events]
        assert any(f"code #{bad_id} voided and replaced" in n for n in notes)
        assert ticket.status == "resolved" and ticket.resolution == "replaced"
        mails = [m.kind for m in session.scalars(select(MailMessage))]
        assert "ticket.new" in mails and "ticket.update" in mails


def test_the_voided_code_is_not_sold_to_the_next_buyer(delivered, in_app, client_for, buy,
                                                       pay_sandbox):
    shop, product_id = delivered
    with in_app(shop) as session:
        order = _order(session)
        ticket = support.open_ticket(order, reason="code_used", message="Used already.")
        (_, bad_id), = support.sold_codes(order)
        support.replace_codes(ticket, [bad_id], actor="staff@x.test")
        session.commit()
    client = client_for(shop)
    page = pay_sandbox(client, buy(client, product_id, email="next@example.test"))
    html = page.get_data(as_text=True)
    assert "GOOD-3" in html and "BAD-1" not in html
    with in_app(shop) as session:  # no stock left: a further replacement is refused cleanly
        second = session.scalars(select(Order).order_by(Order.id)).all()[-1]
        ticket = support.open_ticket(second, reason="code_invalid", message="Also bad.")
        (_, code_id), = support.sold_codes(second)
        with pytest.raises(DomainError, match="No code of 'Game card' is in stock"):
            support.replace_codes(ticket, [code_id], actor="staff@x.test")
        session.rollback()


def test_refund_and_decline_close_tickets(delivered, in_app):
    shop, _ = delivered
    with in_app(shop) as session:
        order = _order(session)
        ticket = support.open_ticket(order, reason="wrong_item", message="Not what I wanted.")
        support.add_message(ticket, author="staff", email="staff@x.test", body="Sorry!")
        assert ticket.status == "answered"
        support.add_message(ticket, author="buyer", email=order.email, body="Please refund.")
        assert ticket.status == "open"
        support.refund_ticket(ticket, to="gateway", actor="staff@x.test")
        session.commit()
        assert order.status == "refunded" and ticket.resolution == "refunded"
        with pytest.raises(Conflict, match="closed"):
            support.add_message(ticket, author="buyer", email=order.email, body="thanks")
        with pytest.raises(Conflict, match="delivered order"):
            support.open_ticket(order, reason="other", message="more")


def test_a_ticket_is_declined_with_a_reason(delivered, in_app):
    shop, _ = delivered
    with in_app(shop) as session:
        order = _order(session)
        ticket = support.open_ticket(order, reason="other", message="Hmm")
        with pytest.raises(DomainError):
            support.decline_ticket(ticket, reason="  ", actor="staff@x.test")
        support.decline_ticket(ticket, reason="The code works: we checked it.",
                               actor="staff@x.test")
        session.commit()
        assert ticket.status == "declined"
        assert ticket.messages[-1].body == "The code works: we checked it."


def test_codes_of_another_order_cannot_be_replaced(delivered, in_app, client_for, buy,
                                                   pay_sandbox):
    shop, product_id = delivered
    client = client_for(shop)
    pay_sandbox(client, buy(client, product_id, email="other@example.test"))
    with in_app(shop) as session:
        first, second = session.scalars(select(Order).order_by(Order.id)).all()
        ticket = support.open_ticket(first, reason="code_invalid", message="bad")
        (_, foreign_id), = support.sold_codes(second)
        with pytest.raises(DomainError, match="Choose codes of this order"):
            support.replace_codes(ticket, [foreign_id], actor="staff@x.test")
        session.rollback()
