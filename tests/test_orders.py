"""Checkout, the paid path, expiry, late payments, coupons, points, lookup and refunds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from kameng.catalog import service as catalog
from kameng.inventory.models import CardCode
from kameng.ledger import service as ledger
from kameng.members.models import Customer
from kameng.merchant.models import ShopNotice
from kameng.orders import service as orders
from kameng.orders.models import Order
from kameng.payments.models import Payment
from kameng.tenants.models import Tenant

from .conftest import order_path as order_path_of
from .conftest import order_token


@pytest.fixture
def shop(create_tenant):
    return create_tenant(slug="demo", name="Demo Card Shop")


def _codes(in_app, shop, status=None):
    with in_app(shop) as session:
        query = select(CardCode.status, func.count()).group_by(CardCode.status)
        return dict(session.execute(query).all())


def test_a_guest_buys_a_card_with_the_sandbox_and_sees_the_code(shop, card_product, client_for,
                                                                  buy, pay_sandbox, in_app):
    product_id = card_product(shop, codes=["GAME-CODE-1", "GAME-CODE-2"], price=1000)
    client = client_for(shop)
    placed = buy(client, product_id, email="Guest@Example.test")
    assert placed.status_code == 302 and "/pay/sandbox/" in placed.location
    assert _codes(in_app, shop) == {"available": 1, "reserved": 1}
    page = pay_sandbox(client, placed)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Delivered" in html and "GAME-CODE-1" in html
    assert page.headers["Cache-Control"] == "no-store"
    assert _codes(in_app, shop) == {"available": 1, "sold": 1}
    with in_app(shop) as session:
        order = session.scalar(select(Order))
        assert (order.status, order.email, order.total) == ("delivered", "guest@example.test", 1000)
        assert [e.to_status for e in order.events if e.to_status] == \
            ["paid", "delivering", "delivered"]
    # the order link of shop A shows nothing on shop B
    assert client_for("other.localhost").get(f"/order/{order_token(placed)}").status_code == 404


def test_a_failed_sandbox_payment_leaves_the_order_pending(shop, card_product, client_for, buy,
                                                            pay_sandbox, in_app):
    product_id = card_product(shop, codes=["X-1"])
    page = pay_sandbox(client_for(shop), buy(client_for(shop), product_id), outcome="fail")
    assert "Waiting for your payment" in page.get_data(as_text=True)
    with in_app(shop) as session:
        assert session.scalar(select(Payment.status)) == "failed"
        assert session.scalar(select(Order.status)) == "pending"


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"email": "not-an-email"}, 422, "valid e-mail"),
        ({"qty": 0}, 422, "Number must be between"),
        ({"qty": 7}, 422, "quantity from 1 to 5"),
        ({"coupon": "NOPE"}, 422, "Unknown coupon"),
        ({"payment_method": "stripe"}, 422, "Not a valid choice"),
        ({"payment_method": "balance"}, 422, "Not a valid choice"),
        ({"qty": 3}, 409, "only 2 left"),
    ],
)
def test_bad_checkouts_are_refused_and_reserve_nothing(shop, card_product, client_for, buy,
                                                       in_app, form, status, message):
    product_id = card_product(shop, codes=["A", "B"], max_qty=5)
    response = buy(client_for(shop), product_id, **form)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    with in_app(shop) as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 0
    assert _codes(in_app, shop) == {"available": 2}


def test_buyer_input_fields_are_checked(shop, card_product, client_for, buy):
    fields = [{"name": "account", "label": "Game account", "type": "text", "required": True,
               "pattern": "[0-9]{5,8}"}]
    product_id = card_product(shop, delivery_kind="manual", input_fields=fields, codes=())
    client = client_for(shop)
    assert "Game account is required" in buy(client, product_id).get_data(as_text=True)
    bad = buy(client, product_id, input_account="12ab")
    assert bad.status_code == 422 and "expected format" in bad.get_data(as_text=True)
    assert buy(client, product_id, input_account="123456").status_code == 302


def test_open_orders_are_capped_per_buyer(shop, card_product, client_for, buy, app):
    product_id = card_product(shop, codes=[f"C-{n}" for n in range(10)])
    client = client_for(shop)
    for _ in range(app.config["MAX_OPEN_ORDERS_PER_BUYER"]):
        assert buy(client, product_id, email="hoarder@example.test").status_code == 302
    refused = buy(client, product_id, email="hoarder@example.test")
    assert refused.status_code == 409 and "too many unpaid orders" in refused.get_data(as_text=True)
    assert buy(client, product_id, email="someone@example.test").status_code == 302


def test_open_orders_are_capped_per_address(shop, card_product, client_for, buy, app):
    product_id = card_product(shop, codes=[f"C-{n}" for n in range(20)])
    client = client_for(shop)
    for n in range(app.config["MAX_OPEN_ORDERS_PER_IP"]):
        assert buy(client, product_id, email=f"b{n}@example.test").status_code == 302
    assert buy(client, product_id, email="last@example.test").status_code == 409


def test_expiry_releases_codes_and_the_supply_cost_hold(shop, client_for, buy, in_app, app):
    from kameng.audit.service import Actor
    from kameng.inventory.service import import_codes

    with in_app() as session:
        supply = catalog.create_supply_product(name="Supply card", cost=800)
        import_codes(supply, ["S-1"], actor=Actor.system())
        session.commit()
        supply_id = supply.id
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        listing = catalog.list_supply_product(tenant, catalog.get_supply_product(supply_id))
        ledger.transfer("fund", "platform_funding",
                        ledger.get_account("platform_funding", currency="CNY"),
                        ledger.shop_wallet(shop.id, "CNY"), 5000, tenant_id=shop.id)
        session.commit()
        listing_id = listing.id
    assert buy(client_for(shop), listing_id).status_code == 302
    with in_app(shop) as session:
        wallet = ledger.shop_wallet(shop.id, "CNY")
        assert (wallet.balance, wallet.held) == (5000, 800)
        session.execute(update(Order).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        session.commit()
        assert orders.expire_due_orders(tenant_id=shop.id) == 1
        session.commit()
        assert session.scalar(select(Order.status)) == "expired"
        wallet = ledger.shop_wallet(shop.id, "CNY")
        assert (wallet.balance, wallet.held) == (5000, 0)


def test_a_shop_whose_wallet_cannot_cover_the_supply_cost_cannot_sell_it(shop, client_for, buy,
                                                                         in_app):
    with in_app() as session:
        supply = catalog.create_supply_product(name="Supply card", cost=800,
                                               delivery_kind="manual")
        session.commit()
        supply_id = supply.id
    with in_app(shop) as session:
        listing = catalog.list_supply_product(session.get(Tenant, shop.id),
                                              catalog.get_supply_product(supply_id))
        session.commit()
        listing_id = listing.id
    refused = buy(client_for(shop), listing_id)
    assert refused.status_code == 422
    assert "temporarily unavailable" in refused.get_data(as_text=True)
    with in_app(shop) as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 0
        notice = session.scalar(select(ShopNotice))
        assert notice.kind == "wallet_short" and "Supply card" in notice.message


def test_an_overdue_reservation_gives_its_codes_to_the_next_buyer(shop, card_product,
                                                                    client_for, buy, in_app):
    """The scheduled sweep may not have run yet: a checkout short of stock expires the shop's
    overdue orders first, takes what they held, and says how many are left when still short."""
    product_id = card_product(shop, codes=["O-1", "O-2"])
    assert buy(client_for(shop), product_id, qty=2, email="slow@example.test").status_code == 302
    with in_app(shop) as session:  # overdue, not yet swept
        session.execute(update(Order).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        session.commit()
    assert buy(client_for(shop), product_id, email="next@example.test").status_code == 302
    short = buy(client_for(shop), product_id, qty=2, email="late@example.test")
    assert short.status_code == 409 and "only 1 left" in short.get_data(as_text=True)
    with in_app(shop) as session:
        by_email = {o.email: o.status for o in session.scalars(select(Order))}
        assert by_email == {"slow@example.test": "expired", "next@example.test": "pending"}
    assert _codes(in_app, shop) == {"available": 1, "reserved": 1}


def _expire_all(in_app, shop):
    with in_app(shop) as session:
        session.execute(update(Order).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        session.commit()
        orders.expire_due_orders(tenant_id=shop.id)
        session.commit()


def test_a_late_payment_is_delivered_when_stock_is_still_there(shop, card_product, client_for,
                                                               buy, pay_sandbox, in_app):
    product_id = card_product(shop, codes=["LATE-1"])
    client = client_for(shop)
    placed = buy(client, product_id)
    sandbox_page = placed.location  # checkout went straight to the sandbox's page
    _expire_all(in_app, shop)
    assert _codes(in_app, shop) == {"available": 1}
    token = client.csrf_token(sandbox_page)
    done = client.post(sandbox_page, data={"csrf_token": token, "outcome": "pay"})
    html = client.get(done.location).get_data(as_text=True)
    assert "Delivered" in html and "LATE-1" in html


def test_a_late_payment_without_stock_credits_a_buyer_or_flags_a_guest(
        shop, card_product, client_for, buy, in_app, create_customer):
    product_id = card_product(shop, codes=["ONLY-1"])
    create_customer(shop, email="member@example.test", password="member-pass-1")
    member = client_for(shop)
    member.login("member@example.test", "member-pass-1")
    guest = client_for(shop)
    late = {}
    for name, client in (("member", member), ("guest", guest)):
        placed = buy(client, product_id, email=f"{name}@example.test")
        late[name] = (client, placed.location)  # the sandbox's page
        _expire_all(in_app, shop)
    with in_app(shop) as session:  # meanwhile someone else bought the only code
        session.execute(update(CardCode).values(status="sold"))
        session.commit()
    for _name, (client, sandbox_page) in late.items():
        token = client.csrf_token(sandbox_page)
        client.post(sandbox_page, data={"csrf_token": token, "outcome": "pay"})
    with in_app(shop) as session:
        by_email = {o.email: o for o in session.scalars(select(Order))}
        member_order, guest_order = by_email["member@example.test"], by_email["guest@example.test"]
        assert member_order.status == "refunded" and member_order.needs_staff
        customer = session.scalar(select(Customer))
        assert ledger.buyer_wallet(customer, "CNY").balance == member_order.amount_due
        assert guest_order.status == "failed" and guest_order.needs_staff
        assert "Delivery failed" in guest_order.staff_reason
        notes = [e.note for e in guest_order.events]
        assert any("Refund the buyer or deliver by hand" in n for n in notes)


def test_coupons_price_the_order_and_count_their_uses(shop, card_product, client_for, buy,
                                                      pay_sandbox, in_app):
    product_id = card_product(shop, codes=["A", "B", "C"], price=2000)
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        catalog.create_coupon(tenant, "TENOFF", catalog.CouponTerms("percent", 1000, max_uses=1))
        catalog.create_coupon(tenant, "FIRST", catalog.CouponTerms("fixed", 500,
                                                                   first_order_only=True))
        session.commit()
    client = client_for(shop)
    pay_sandbox(client, buy(client, product_id, coupon="tenoff", email="a@example.test"))
    with in_app(shop) as session:
        order = session.scalar(select(Order))
        assert (order.subtotal, order.coupon_discount, order.total) == (2000, 200, 1800)
        assert catalog.find_coupon("TENOFF").used_count == 1
    used_up = buy(client, product_id, coupon="TENOFF", email="b@example.test")
    assert used_up.status_code == 422 and "used up" in used_up.get_data(as_text=True)
    again = buy(client, product_id, coupon="FIRST", email="a@example.test")
    assert again.status_code == 422 and "first order only" in again.get_data(as_text=True)
    assert buy(client, product_id, coupon="FIRST", email="new@example.test").status_code == 302


def test_points_are_earned_redeemed_and_reversed(shop, card_product, client_for, buy,
                                                 pay_sandbox, in_app, create_customer):
    product_id = card_product(shop, codes=["P-1", "P-2"], price=5000)
    create_customer(shop, email="points@example.test", password="points-pass-1")
    client = client_for(shop)
    client.login("points@example.test", "points-pass-1")
    pay_sandbox(client, buy(client, product_id, email="points@example.test"))
    with in_app(shop) as session:
        customer = session.scalar(select(Customer))
        assert ledger.buyer_points(customer).balance == 50  # 1 point per ¥1
        assert customer.lifetime_spend == 5000
    pay_sandbox(client, buy(client, product_id, email="points@example.test", use_points=40))
    with in_app(shop) as session:
        second = session.scalars(select(Order).order_by(Order.id)).all()[-1]
        assert (second.points_used, second.points_value, second.amount_due) == (40, 40, 4960)
        customer = session.scalar(select(Customer))
        assert ledger.buyer_points(customer).balance == 50 - 40 + 49
        orders.refund_order(second, to="wallet", actor="staff@example.test")
        session.commit()
        customer = session.scalar(select(Customer))
        assert ledger.buyer_points(customer).balance == 50
        assert ledger.buyer_wallet(customer, "CNY").balance == 4960
        assert session.scalar(select(CardCode.status).where(CardCode.order_id == second.id)) \
            == "void"


def test_refund_through_the_sandbox_gateway(shop, card_product, client_for, buy, pay_sandbox,
                                            in_app):
    product_id = card_product(shop, codes=["R-1"])
    pay_sandbox(client_for(shop), buy(client_for(shop), product_id))
    with in_app(shop) as session:
        order = session.scalar(select(Order))
        orders.refund_order(order, to="gateway", actor="staff@example.test", reason="test")
        session.commit()
        assert session.scalar(select(Order.status)) == "refunded"
        assert session.scalar(select(Payment.status)) == "refunded"
        with pytest.raises(Exception, match="Only a paid order"):
            orders.refund_order(session.scalar(select(Order)), to="gateway", actor="x")


def test_wallet_payment_and_insufficient_balance(shop, card_product, client_for, buy, in_app,
                                                 create_customer):
    product_id = card_product(shop, codes=["W-1", "W-2"], price=3000)
    create_customer(shop, email="wallet@example.test", password="wallet-pass-1")
    with in_app(shop) as session:
        customer = session.scalar(select(Customer))
        ledger.transfer("gift", "wallet_topup",
                        ledger.get_account("shop_income", currency="CNY", tenant_id=shop.id),
                        ledger.buyer_wallet(customer, "CNY"), 4000, tenant_id=shop.id)
        session.commit()
    client = client_for(shop)
    assert buy(client, product_id, payment_method="balance").status_code == 422  # a guest
    client.login("wallet@example.test", "wallet-pass-1")
    first = buy(client, product_id, payment_method="balance", email="wallet@example.test")
    pay_path = first.location
    paid = client.submit(pay_path, {})
    assert paid.status_code == 302 and "W-1" in client.get(paid.location).get_data(as_text=True)
    second = buy(client, product_id, payment_method="balance", email="wallet@example.test")
    short = client.submit(second.location, {})
    assert short.status_code == 409
    with in_app(shop) as session:
        customer = session.scalar(select(Customer))
        assert ledger.buyer_wallet(customer, "CNY").balance == 1000
        assert [o.status for o in session.scalars(select(Order).order_by(Order.id))] == \
            ["delivered", "pending"]


def test_order_lookup_gives_one_answer_for_unknown_and_mismatched(shop, card_product, client_for,
                                                                   buy, pay_sandbox, in_app):
    product_id = card_product(shop, codes=["L-1"])
    pay_sandbox(client_for(shop), buy(client_for(shop), product_id, email="me@example.test"))
    with in_app(shop) as session:
        number = session.scalar(select(Order.number))
    client = client_for(shop)
    found = client.submit("/orders/lookup", {"number": number, "email": "ME@example.test"})
    assert found.status_code == 302
    assert "L-1" in client.get(found.location).get_data(as_text=True)
    stranger = client_for(shop)
    wrong = stranger.submit("/orders/lookup", {"number": number, "email": "x@example.test"})
    unknown = stranger.submit("/orders/lookup", {"number": "000000000000",
                                                 "email": "me@example.test"})
    assert wrong.status_code == unknown.status_code == 404
    message = "No order matches that number and e-mail."
    assert message in wrong.get_data(as_text=True) and message in unknown.get_data(as_text=True)
    assert stranger.get(f"/orders/{number}").status_code == 404


def test_order_lookup_is_rate_limited(shop, client_for):
    client = client_for(shop)
    token = client.csrf_token("/orders/lookup")
    statuses = [client.post("/orders/lookup", data={"csrf_token": token, "number": "1",
                                                    "email": "a@example.test"}).status_code
                for _ in range(11)]
    assert statuses[:10] == [404] * 10 and statuses[10] == 429


def test_my_orders_lists_only_mine(shop, card_product, client_for, buy, pay_sandbox,
                                   create_customer):
    product_id = card_product(shop, codes=["M-1", "M-2"])
    create_customer(shop, email="mine@example.test", password="mine-pass-1")
    client = client_for(shop)
    client.login("mine@example.test", "mine-pass-1")
    pay_sandbox(client, buy(client, product_id, email="mine@example.test"))
    guest = client_for(shop)
    pay_sandbox(guest, buy(guest, product_id, email="mine@example.test"))  # same e-mail, a guest
    html = client.get("/account/orders").get_data(as_text=True)
    assert html.count("Delivered") == 1


def test_cancel_a_pending_order_releases_its_codes(shop, card_product, client_for, buy, in_app):
    product_id = card_product(shop, codes=["K-1"])
    client = client_for(shop)
    placed = buy(client, product_id)
    order_path = order_path_of(placed)
    cancelled = client.submit(order_path + "/cancel", {}, form_path=order_path)
    assert cancelled.status_code == 302
    assert "cancelled" in client.get(order_path).get_data(as_text=True)
    assert _codes(in_app, shop) == {"available": 1}


def test_a_buyer_pays_or_cancels_an_unpaid_order_from_their_account(
        shop, card_product, client_for, buy, create_customer, in_app):
    product_id = card_product(shop, codes=["U-1", "U-2"])
    create_customer(shop, email="later@example.test", password="later-pass-1")
    buyer = client_for(shop)
    buyer.login("later@example.test", "later-pass-1")
    placed = buy(buyer, product_id, email="later@example.test")
    with in_app(shop) as session:
        number = session.scalar(select(Order.number))
    listed = buyer.get("/account/orders").get_data(as_text=True)
    assert f'href="/orders/{number}"' in listed
    page = buyer.get(f"/orders/{number}").get_data(as_text=True)
    token = order_path_of(placed).rsplit("/", 1)[1]
    assert f'href="/order/{token}/pay"' in page and f'action="/order/{token}/cancel"' in page
    paying = buyer.get(f"/order/{token}/pay")
    assert paying.status_code == 302 and "/pay/sandbox/" in paying.location
    # Someone who looked the order up by its number and e-mail sees it, not its actions.
    other = client_for(shop)
    assert other.submit("/orders/lookup", {"number": number,
                                           "email": "later@example.test"}).status_code == 302
    seen = other.get(f"/orders/{number}").get_data(as_text=True)
    assert number in seen and token not in seen and "/pay" not in seen.split("<main")[-1]
