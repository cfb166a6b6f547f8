"""The shop console's order pages: the list and its filters, one order's details and timeline,
and what staff do by hand — mark paid, cancel, refund, fulfil, retry a failed delivery."""

import html
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select, update


@pytest.fixture
def make_product(shop, in_app):
    """make_product(codes=[...], **details) -> the id of an own product of the shop."""
    from kameng.audit.service import Actor
    from kameng.catalog import service as catalog
    from kameng.inventory.service import import_codes

    def factory(codes=(), name="Game card 10", price=1000, **details):
        with in_app(shop) as session:
            tenant = session.get(type(shop), shop.id)
            product = catalog.create_product(tenant, name=name, price=price, **details)
            if codes:
                import_codes(product, list(codes), actor=Actor.system())
            session.commit()
            return product.id

    return factory


@pytest.fixture
def place(shop, in_app):
    """place(product_id, qty=1, email=None, customer_id=None) -> the pending order (ids)."""
    from kameng.members.models import Customer
    from kameng.orders.service import CheckoutRequest, checkout

    emails = iter(range(1, 1000))

    def factory(product_id, qty=1, email=None, customer_id=None):
        with in_app(shop) as session:
            tenant = session.get(type(shop), shop.id)
            customer = session.get(Customer, customer_id) if customer_id else None
            placed = checkout(tenant, CheckoutRequest(
                product_id=product_id, qty=qty,
                email=customer.email if customer else email or f"buyer{next(emails)}@mail.test",
                payment_method="sandbox", customer=customer))
            session.commit()
            return SimpleNamespace(id=placed.order.id, number=placed.order.number,
                                   token=placed.token, amount=placed.order.amount_due)

    return factory


@pytest.fixture
def order_in_db(shop, in_app):
    def read(order_id):
        from kameng.orders.models import Order

        with in_app(shop) as session:
            order = session.get(Order, order_id)
            return SimpleNamespace(status=order.status, needs_staff=order.needs_staff,
                                   staff_reason=order.staff_reason,
                                   notes=[e.note for e in order.events])

    return read


def stock(in_app, shop, product_id) -> dict:
    from kameng.catalog.models import Product
    from kameng.inventory.service import stock_counts

    with in_app(shop) as session:
        return stock_counts(session.get(Product, product_id))


def audit_actions(in_app, action) -> list:
    from kameng.audit.models import AuditEvent

    with in_app() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def ledger_problems(in_app) -> list:
    from kameng.ledger.service import check_ledger

    with in_app() as session:
        problems = check_ledger()
        session.rollback()
        return problems


def body(page) -> str:
    """The page's text with HTML entities decoded (the buyer&#39;s -> the buyer's)."""
    return html.unescape(page.get_data(as_text=True))


def flashed(console, page) -> str:
    """The page a redirect leads to (which shows the flash message)."""
    assert page.status_code == 302, body(page)
    return body(console.get(page.location))


def detail(order_id) -> str:
    return f"/admin/orders/{order_id}"


def act(console, order_id, action, data=None):
    return console.submit(f"{detail(order_id)}/{action}", data or {}, form_path=detail(order_id))


def pay_by_hand(console, order_id, reason="bank transfer received"):
    return act(console, order_id, "mark-paid", {"paid-reason": reason})


# -- pages ------------------------------------------------------------------------------------


def test_order_pages_need_a_staff_login(shop, client_for):
    anonymous = client_for(shop)
    for path in ("/admin/orders", "/admin/orders/1", "/admin/orders?status=paid"):
        page = anonymous.get(path)
        assert page.status_code == 302 and "/admin/login" in page.location, path


def test_list_and_detail_render_for_the_owner(console, make_product, place):
    product = make_product(codes=["CODE-AAA-1"], name="Steam 50")
    order = place(product, email="someone@mail.test")
    page = body(console.get("/admin/orders"))
    assert order.number in page and "someone@mail.test" in page and "1 × Steam 50" in page
    assert "¥10.00" in page and "pending" in page and "Sandbox" in page
    page = body(console.get(detail(order.id)))
    assert "Order " + order.number in page and "Mark as paid" in page and "Cancel order" in page
    assert "Order placed: 1 × Steam 50" in page  # the timeline
    assert "Refund" not in page and "Retry delivery" not in page
    assert "CODE-AAA-1" not in page
    assert console.get("/admin/orders/2147483647").status_code == 404
    assert console.get("/admin/orders/99999999999999").status_code == 404


def test_list_filters_search_and_shows_older(console, make_product, place, monkeypatch):
    from kameng.orders import console as order_console

    product = make_product(codes=[f"C-{n}" for n in range(5)])
    first = place(product, email="first@mail.test")
    second = place(product, email="second@mail.test")
    third = place(product, email="third@mail.test")
    act(console, second.id, "cancel")
    page = body(console.get("/admin/orders?status=cancelled"))
    assert second.number in page and first.number not in page and third.number not in page
    page = body(console.get("/admin/orders?q=FIRST@mail"))
    assert first.number in page and second.number not in page
    page = body(console.get(f"/admin/orders?q={third.number}"))
    assert third.number in page and first.number not in page
    assert "No orders match" in body(console.get("/admin/orders?needs_staff=1"))
    for query in ("status=bogus", "shown=abc", "shown=-5", "shown=99999999999999999999",
                  "q=" + "x" * 5000, "needs_staff=yes"):
        assert console.get(f"/admin/orders?{query}").status_code == 200, query
    monkeypatch.setattr(order_console, "PAGE_SIZE", 2)
    page = body(console.get("/admin/orders"))
    assert third.number in page and second.number in page and first.number not in page
    older = re.search(r'href="([^"]*shown=4[^"]*)"', page).group(1).replace("&amp;", "&")
    page = body(console.get(older))
    assert first.number in page and "Show more orders" not in page


def test_another_shops_order_is_404_on_every_order_route(console, create_tenant, in_app):
    from kameng.audit.service import Actor
    from kameng.catalog import service as catalog
    from kameng.inventory.service import import_codes
    from kameng.orders.service import CheckoutRequest, checkout

    other = create_tenant(slug="beta")
    with in_app(other) as session:
        tenant = session.get(type(other), other.id)
        product = catalog.create_product(tenant, name="beta-secret", price=100)
        import_codes(product, ["BETA-CODE"], actor=Actor.system())
        order = checkout(tenant, CheckoutRequest(product_id=product.id, qty=1,
                                                 email="beta-buyer@mail.test",
                                                 payment_method="sandbox")).order
        session.commit()
        order_id = order.id
    assert console.get(detail(order_id)).status_code == 404
    token = console.csrf_token("/admin/orders")
    for action in ("mark-paid", "cancel", "refund", "fulfil", "retry"):
        page = console.post(f"{detail(order_id)}/{action}",
                            data={"csrf_token": token, "paid-reason": "x", "refund-to": "wallet",
                                  "refund-reason": "x"})
        assert page.status_code == 404, action
        assert "beta-" not in body(page)
    with in_app(other) as session:
        from kameng.orders.models import Order

        assert session.get(Order, order_id).status == "pending"


# -- mark paid, cancel ------------------------------------------------------------------------


def test_mark_paid_by_hand_delivers_and_is_audited(console, make_product, place, in_app,
                                                   shop, order_in_db):
    product = make_product(codes=["SECRET-CODE-1"])
    order = place(product)
    page = pay_by_hand(console, order.id, reason="")
    assert page.status_code == 422 and "This field is required" in body(page)
    assert order_in_db(order.id).status == "pending"
    page = flashed(console, pay_by_hand(console, order.id, reason="bank transfer 8812"))
    assert "marked as paid; it is now delivered" in page
    assert "1 of 1 code delivered" in page and "SECRET-CODE-1" not in page
    assert "marked paid by staff: bank transfer 8812" in page  # on the timeline
    assert "owner@alpha.test" in page
    assert order_in_db(order.id).status == "delivered"
    events = audit_actions(in_app, "order.mark_paid")
    assert len(events) == 1
    assert events[0].target == order.number and events[0].tenant_id == shop.id
    assert events[0].details["reason"] == "bank transfer 8812"
    # Once paid, it cannot be marked paid again (and nothing more is audited).
    page = flashed(console, pay_by_hand(console, order.id))
    assert "Only an unpaid or expired order can be marked as paid." in page
    assert len(audit_actions(in_app, "order.mark_paid")) == 1
    assert ledger_problems(in_app) == []


def test_mark_paid_by_hand_of_an_expired_order(console, make_product, place, in_app, shop,
                                               order_in_db):
    from kameng.orders.models import Order
    from kameng.orders.service import expire_due_orders

    product = make_product(codes=["LATE-1"])
    order = place(product)
    with in_app(shop) as session:
        session.execute(update(Order).where(Order.id == order.id)
                        .values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
        expire_due_orders(tenant_id=shop.id)
        session.commit()
    assert order_in_db(order.id).status == "expired"
    assert "Mark as paid" in body(console.get(detail(order.id)))
    page = flashed(console, pay_by_hand(console, order.id, reason="paid late by transfer"))
    assert "it is now delivered" in page
    assert ledger_problems(in_app) == []


def test_cancel_releases_the_reserved_codes(console, make_product, place, in_app, shop,
                                            order_in_db):
    product = make_product(codes=["C-1", "C-2"])
    order = place(product)
    assert stock(in_app, shop, product) == {"available": 1, "reserved": 1, "sold": 0, "void": 0}
    page = flashed(console, act(console, order.id, "cancel"))
    assert "cancelled" in page and "Cancel order" not in page
    assert order_in_db(order.id).status == "cancelled"
    assert stock(in_app, shop, product)["available"] == 2
    page = flashed(console, act(console, order.id, "cancel"))
    assert "Only an unpaid order can be cancelled." in page
    assert len(audit_actions(in_app, "order.cancel")) == 1


# -- refunds ------------------------------------------------------------------------------------


def test_refund_to_wallet_credits_the_buyer_and_voids_the_codes(
        console, make_product, place, create_customer, in_app, shop, order_in_db):
    from kameng.ledger.service import buyer_wallet
    from kameng.members.models import Customer

    buyer = create_customer(shop)
    product = make_product(codes=["VOID-ME-1"], price=1500)
    order = place(product, customer_id=buyer.id)
    flashed(console, pay_by_hand(console, order.id))
    assert order_in_db(order.id).status == "delivered"
    page = act(console, order.id, "refund", {"refund-to": "wallet", "refund-reason": ""})
    assert page.status_code == 422 and "This field is required" in body(page)
    page = flashed(console, act(console, order.id, "refund",
                                {"refund-to": "wallet", "refund-reason": "code did not work"}))
    assert "refunded to the buyer's wallet" in page
    assert "1 voided by a refund" in page and "VOID-ME-1" not in page
    assert order_in_db(order.id).status == "refunded"
    with in_app(shop) as session:
        assert buyer_wallet(session.get(Customer, buyer.id), "CNY").balance == 1500
    assert stock(in_app, shop, product)["void"] == 1
    events = audit_actions(in_app, "order.refund")
    assert len(events) == 1 and events[0].details["to"] == "wallet"
    # A second refund is refused, not a 500.
    page = act(console, order.id, "refund", {"refund-to": "wallet", "refund-reason": "again"})
    assert "Only a paid order can be refunded." in flashed(console, page)
    assert ledger_problems(in_app) == []


def test_refund_to_a_guests_wallet_is_refused(console, make_product, place, in_app,
                                              order_in_db):
    order = place(make_product(codes=["G-1"]))
    flashed(console, pay_by_hand(console, order.id))
    page = act(console, order.id, "refund", {"refund-to": "wallet", "refund-reason": "why"})
    assert page.status_code == 422 and "A guest has no wallet" in body(page)
    page = act(console, order.id, "refund", {"refund-to": "gateway", "refund-reason": "why"})
    assert page.status_code == 422 and "no gateway payment to refund" in body(page)
    for choice in ("", "bank", "x" * 1000):
        page = act(console, order.id, "refund", {"refund-to": choice, "refund-reason": "why"})
        assert page.status_code == 422, choice
    assert order_in_db(order.id).status == "delivered"
    assert audit_actions(in_app, "order.refund") == []
    assert ledger_problems(in_app) == []


def test_refund_through_the_sandbox_gateway(console, make_product, place, in_app, shop,
                                            order_in_db):
    from kameng.orders.models import Order
    from kameng.orders.service import mark_paid
    from kameng.payments.models import Payment
    from kameng.payments.service import new_reference
    from kameng.workers.outbox import after_payment

    order = place(make_product(codes=["GW-1"]))
    with in_app(shop) as session:  # what the sandbox's signed notification ends in
        row = session.get(Order, order.id)
        payment = Payment(tenant_id=shop.id, order_id=row.id, gateway="sandbox", owner="shop",
                          reference=new_reference(row), amount=row.amount_due,
                          currency=row.currency)
        session.add(payment)
        session.flush()
        assert mark_paid(row, payment=payment, actor="sandbox")
        session.commit()
        after_payment(order.id)
        reference = payment.reference
    page = body(console.get(detail(order.id)))
    assert reference in page and "succeeded" in page and "the shop's" in page
    page = flashed(console, act(console, order.id, "refund",
                                {"refund-to": "gateway", "refund-reason": "buyer asked"}))
    assert "refunded through the payment gateway" in page
    assert order_in_db(order.id).status == "refunded"
    with in_app(shop) as session:
        payment = session.scalar(select(Payment).where(Payment.order_id == order.id))
        assert payment.status == "refunded" and payment.refunded_amount == order.amount
    assert ledger_problems(in_app) == []


# -- fulfilment and retries -------------------------------------------------------------------


def test_fulfil_a_manual_order(console, make_product, place, in_app, shop, order_in_db):
    from kameng.orders.models import Order
    from kameng.orders.service import delivered_items

    product = make_product(name="Account boost", delivery_kind="manual", input_fields=[
        {"name": "account", "label": "Game account", "type": "text", "required": True}])
    order = _place_with_input(in_app, shop, product, {"account": "player-42"})
    flashed(console, pay_by_hand(console, order))
    state = order_in_db(order)
    assert state.status == "awaiting"
    page = body(console.get(detail(order)))
    assert "Deliver by hand" in page and "Game account" in page and "player-42" in page
    assert "nothing yet" in page
    line_field = re.search(r'name="(fulfil-line_\d+)"', page).group(1)
    page = act(console, order, "fulfil", {line_field: "   "})
    assert page.status_code == 422 and "at least one line" in body(page)
    page = act(console, order, "fulfil", {line_field: "x" * 20001})
    assert page.status_code == 422
    page = flashed(console, act(console, order, "fulfil",
                                {line_field: "Boost done: level 60 unlocked"}))
    assert "delivered" in page and "content delivered" in page
    assert "level 60 unlocked" not in page
    assert order_in_db(order).status == "delivered"
    with in_app(shop) as session:
        [(_line, values)] = delivered_items(session.get(Order, order))
        assert values == ["Boost done: level 60 unlocked"]
    page = act(console, order, "fulfil", {line_field: "again"})
    assert "Only an order that awaits fulfilment" in flashed(console, page)
    assert len(audit_actions(in_app, "order.fulfil")) == 1
    assert ledger_problems(in_app) == []


def _place_with_input(in_app, shop, product_id, inputs) -> int:
    from kameng.orders.service import CheckoutRequest, checkout

    with in_app(shop) as session:
        tenant = session.get(type(shop), shop.id)
        placed = checkout(tenant, CheckoutRequest(product_id=product_id, qty=1,
                                                  email="manual@mail.test",
                                                  payment_method="sandbox", inputs=inputs))
        session.commit()
        return placed.order.id


def test_retry_a_failed_delivery_after_importing_codes(console, make_product, place, in_app,
                                                       shop, order_in_db):
    from kameng.audit.service import Actor
    from kameng.catalog.models import Product
    from kameng.inventory.models import CardCode
    from kameng.inventory.service import import_codes

    product = make_product(codes=["GONE-1"])
    order = place(product)
    with in_app(shop) as session:  # the reserved code is gone (voided by hand, say)
        session.execute(update(CardCode).where(CardCode.order_id == order.id)
                        .values(status="void"))
        session.commit()
    page = flashed(console, pay_by_hand(console, order.id))
    assert "it is now failed" in page
    state = order_in_db(order.id)
    assert state.status == "failed" and state.needs_staff
    assert "only 0 of 1 codes" in state.staff_reason
    assert order.number in body(console.get("/admin/orders?needs_staff=1"))
    page = body(console.get(detail(order.id)))
    assert "Needs staff:" in page and "Retry delivery" in page and "Deliver by hand" in page
    assert "Refund" in page
    page = flashed(console, act(console, order.id, "retry"))
    assert "Delivery failed again" in page
    with in_app(shop) as session:
        import_codes(session.get(Product, product), ["FRESH-1"], actor=Actor.system())
        session.commit()
    page = flashed(console, act(console, order.id, "retry"))
    assert f"Order {order.number} is delivered." in page
    assert "1 of 1 code delivered" in page and "FRESH-1" not in page
    state = order_in_db(order.id)
    assert state.status == "delivered" and not state.needs_staff
    page = flashed(console, act(console, order.id, "retry"))
    assert "Only a failed delivery can be retried." in page
    assert len(audit_actions(in_app, "order.retry_delivery")) == 2
    assert ledger_problems(in_app) == []


def test_a_wallet_top_up_paid_by_hand(console, create_customer, in_app, shop, order_in_db):
    from kameng.ledger.service import buyer_wallet
    from kameng.members.models import Customer
    from kameng.orders.service import create_topup

    buyer = create_customer(shop)
    with in_app(shop) as session:
        tenant = session.get(type(shop), shop.id)
        order_id = create_topup(tenant, session.get(Customer, buyer.id), 5000, "sandbox").order.id
        session.commit()
    page = body(console.get(detail(order_id)))
    assert "a top-up of the buyer's wallet of ¥50.00" in page
    assert "wallet top-up" in body(console.get("/admin/orders"))
    assert "it is now delivered" in flashed(console, pay_by_hand(console, order_id))
    page = body(console.get(detail(order_id)))
    assert "A top-up is refunded through its gateway" in page
    # paid by hand: there is no gateway payment to send the money back through
    page = act(console, order_id, "refund", {"refund-to": "gateway", "refund-reason": "oops"})
    assert page.status_code == 422 and "no gateway payment to refund" in body(page)
    assert order_in_db(order_id).status == "delivered"
    with in_app(shop) as session:
        assert buyer_wallet(session.get(Customer, buyer.id), "CNY").balance == 5000
    assert ledger_problems(in_app) == []


def test_a_wallet_top_up_is_refunded_through_its_gateway_unless_spent(
        create_customer, in_app, shop):
    from kameng.ledger.service import buyer_wallet, get_account, transfer
    from kameng.members.models import Customer
    from kameng.orders.models import Order
    from kameng.orders.service import create_topup, mark_paid, refund_order
    from kameng.payments.models import Payment

    buyer = create_customer(shop)
    ids = []
    with in_app(shop) as session:
        tenant = session.get(type(shop), shop.id)
        customer = session.get(Customer, buyer.id)
        for _ in range(2):
            order = create_topup(tenant, customer, 5000, "sandbox").order
            payment = Payment(tenant_id=shop.id, order_id=order.id, gateway="sandbox",
                              owner="shop", reference=f"{order.number}-t", amount=5000,
                              currency="CNY")
            session.add(payment)
            session.flush()
            assert mark_paid(order, payment=payment)
            ids.append(order.id)
        session.commit()
        assert buyer_wallet(customer, "CNY").balance == 10000
        refund_order(session.get(Order, ids[0]), to="gateway", actor="staff@x.test")
        session.commit()
        assert buyer_wallet(customer, "CNY").balance == 5000
        assert session.get(Payment, session.get(Order, ids[0]).payments[0].id).status \
            == "refunded"
        # the buyer spends the second top-up: it can no longer be refunded
        transfer("spend", "wallet_payment", buyer_wallet(customer, "CNY"),
                 get_account("shop_income", currency="CNY", tenant_id=shop.id), 4000,
                 tenant_id=shop.id)
        session.commit()
        with pytest.raises(Exception, match="already spent"):
            refund_order(session.get(Order, ids[1]), to="gateway", actor="staff@x.test")
        session.rollback()
    assert ledger_problems(in_app) == []
