"""Races on PostgreSQL (row locks): duplicate notifications, the last codes, one wallet.

Each thread makes its own requests (its own application context and database session), as
separate web processes would.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from kameng.extensions import db
from kameng.inventory.models import CardCode
from kameng.ledger import service as ledger
from kameng.ledger.service import InsufficientFunds
from kameng.members.models import Customer
from kameng.orders import service as orders
from kameng.orders.models import Order
from kameng.payments import service as payments
from kameng.payments.gateways.sandbox import SIGNATURE_HEADER, SandboxGateway
from kameng.payments.models import Payment, PaymentAccount, PaymentNotification
from kameng.payments.registry import decrypt_credentials
from kameng.tenants.models import Tenant
from kameng.tenants.scoping import tenant_scope

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _postgres_only(is_postgres):
    if not is_postgres:
        pytest.skip("row-lock races run on PostgreSQL")


@pytest.fixture
def shop(create_tenant):
    return create_tenant(slug="race")


def test_the_same_notification_100_times_20_at_once_pays_and_delivers_once(
        shop, card_product, client_for, buy, in_app):
    product_id = card_product(shop, codes=["R-1", "R-2", "R-3"])
    client = client_for(shop)
    client.get(buy(client, product_id, qty=2).location)  # start the sandbox payment
    with in_app(shop) as session:
        payment = session.scalar(select(Payment))
        account = session.scalar(select(PaymentAccount))
        secret = decrypt_credentials(account.credentials)["secret"]
        body = json.dumps({"event_id": "evt_race", "reference": payment.reference,
                           "tenant_id": shop.id, "status": "succeeded", "amount": payment.amount,
                           "currency": payment.currency}, separators=(",", ":")).encode()
    timestamp = int(time.time())
    signature = SandboxGateway({"secret": secret}, owner="shop",
                               tenant_id=None)._signature(timestamp, body)
    headers = {SIGNATURE_HEADER: f"t={timestamp},v1={signature}",
               "Content-Type": "application/json"}

    def send(_):
        return client_for(shop).post("/pay/notify/sandbox", data=body,
                                     headers=headers).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, range(100)))
    assert answers == [200] * 100
    with in_app(shop) as session:
        assert session.scalar(select(func.count()).select_from(PaymentNotification)) == 1
        order = session.scalar(select(Order))
        assert order.status == "delivered"
        assert [e.to_status for e in order.events if e.to_status].count("paid") == 1
        assert [e.to_status for e in order.events if e.to_status].count("delivered") == 1
        sold = session.scalar(select(func.count()).select_from(CardCode)
                              .where(CardCode.status == "sold"))
        assert sold == 2


def test_50_buyers_racing_for_the_last_5_codes(shop, card_product, client_for, buy, in_app,
                                               pay_sandbox):
    product_id = card_product(shop, codes=[f"LAST-{n}" for n in range(5)])

    def attempt(n):
        client = client_for(shop)
        client.environ_base = {"REMOTE_ADDR": f"10.1.{n // 200}.{n % 200}"}
        response = buy(client, product_id, email=f"buyer{n}@example.test")
        if response.status_code != 302:
            return response.status_code, response.get_data(as_text=True), None
        page = pay_sandbox(client, response)
        return 302, page.get_data(as_text=True), client

    with ThreadPoolExecutor(max_workers=25) as pool:
        results = list(pool.map(attempt, range(50)))
    winners = [html for status, html, _ in results if status == 302]
    losers = [(status, html) for status, html, _ in results if status != 302]
    assert len(winners) == 5
    assert all("Delivered" in html for html in winners)
    delivered = {code for html in winners for code in (f"LAST-{n}" for n in range(5))
                 if code in html}
    assert delivered == {f"LAST-{n}" for n in range(5)}  # each code to exactly one buyer
    assert len(losers) == 45
    assert all(status == 409 and "sold out" in html for status, html in losers)
    with in_app(shop) as session:
        statuses = dict(session.execute(select(Order.status, func.count())
                                        .group_by(Order.status)).all())
        assert statuses == {"delivered": 5}
        assert session.scalar(select(func.count()).select_from(CardCode)
                              .where(CardCode.status == "sold")) == 5


def test_30_concurrent_wallet_payments_against_a_balance_that_covers_10(
        shop, card_product, create_customer, in_app, app):
    product_id = card_product(shop, codes=[f"W-{n}" for n in range(30)], price=1000)
    buyer = create_customer(shop, email="rich@example.test")
    tokens = []
    limit = app.config["MAX_OPEN_ORDERS_PER_BUYER"]
    app.config["MAX_OPEN_ORDERS_PER_BUYER"] = 100
    try:
        with in_app(shop) as session:
            tenant = session.get(Tenant, shop.id)
            customer = session.get(Customer, buyer.id)
            ledger.transfer("gift", "wallet_topup",
                            ledger.get_account("shop_income", currency="CNY", tenant_id=shop.id),
                            ledger.buyer_wallet(customer, "CNY"), 10_000, tenant_id=shop.id)
            for n in range(30):
                placed = orders.checkout(tenant, orders.CheckoutRequest(
                    product_id=product_id, qty=1, email="rich@example.test",
                    payment_method="balance", customer=customer, ip=f"10.2.0.{n}"))
                tokens.append(placed.order.id)
            session.commit()
    finally:
        app.config["MAX_OPEN_ORDERS_PER_BUYER"] = limit

    def pay(order_id):
        with app.app_context(), tenant_scope(shop.id):
            tenant = db.session.get(Tenant, shop.id)
            order = db.session.get(Order, order_id)
            customer = db.session.get(Customer, buyer.id)
            try:
                payments.pay_with_balance(tenant, order, customer)
                db.session.commit()
                return "paid"
            except InsufficientFunds:
                db.session.rollback()
                return "short"

    with ThreadPoolExecutor(max_workers=30) as pool:
        results = list(pool.map(pay, tokens))
    assert results.count("paid") == 10 and results.count("short") == 20
    with in_app(shop) as session:
        customer = session.get(Customer, buyer.id)
        wallet = ledger.buyer_wallet(customer, "CNY")
        assert (wallet.balance, wallet.held) == (0, 0)
        assert session.scalar(select(func.count()).select_from(Order)
                              .where(Order.status == "paid")) == 10


def test_delivery_batches_of_two_shops_supply_orders_never_deadlock(
        app, create_tenant, in_app, monkeypatch):
    """Every delivery of a supply product moves its shop's wallet and the platform's revenue
    account. A batch delivering both shops' orders and a delivery of one order running beside
    it must lock those rows in one order; they once locked them in opposite orders, and
    PostgreSQL aborted one of them as a deadlock."""
    import threading

    from kameng.audit.service import Actor
    from kameng.catalog import service as catalog
    from kameng.delivery import service as delivery
    from kameng.inventory.service import import_codes
    from kameng.orders.service import CheckoutRequest, checkout, mark_paid

    monkeypatch.setitem(app.config, "PLATFORM_FEE_BP", 0)
    with in_app() as session:
        supply = catalog.create_supply_product(name="Supply card", cost=800)
        import_codes(supply, [f"S-{n}" for n in range(3)], actor=Actor.system())
        ledger.get_account("platform_revenue", currency="CNY")  # the shared row, there first
        session.commit()
        supply_id = supply.id
    shops, listings = [create_tenant(slug="dead-a"), create_tenant(slug="dead-b")], []
    for shop in shops:
        with in_app(shop) as session:
            listing = catalog.list_supply_product(session.get(Tenant, shop.id),
                                                  catalog.get_supply_product(supply_id))
            ledger.transfer(f"fund-{shop.id}", "platform_funding",
                            ledger.get_account("platform_funding", currency="CNY"),
                            ledger.shop_wallet(shop.id, "CNY"), 10_000, tenant_id=shop.id)
            session.commit()
            listings.append(listing.id)

    def paid_order(shop, listing_id, email):
        with app.app_context(), tenant_scope(shop.id):
            placed = checkout(db.session.get(Tenant, shop.id), CheckoutRequest(
                product_id=listing_id, qty=1, email=email, payment_method="sandbox"))
            assert mark_paid(placed.order, actor="test")
            db.session.commit()
            return placed.order.id

    # x: shop B's, delivered first by the batch; y: shop A's, delivered alone beside it;
    # z: shop A's, the batch's second order.
    x = paid_order(shops[1], listings[1], "x@example.test")
    y = paid_order(shops[0], listings[0], "y@example.test")
    z = paid_order(shops[0], listings[0], "z@example.test")
    lead_done = threading.Event()
    waiting = delivery._deliver_waiting

    def slow_batch(*args, **kwargs):  # the batch's lead is done; the single delivery starts
        lead_done.set()
        time.sleep(1.0)
        return waiting(*args, **kwargs)

    monkeypatch.setattr(delivery, "_deliver_waiting", slow_batch)
    errors = []

    def deliver(order_id, batch):
        try:
            with app.app_context():
                delivery.deliver_order(order_id, batch=batch)
        except Exception as error:  # a deadlock aborts one of them
            errors.append(repr(error))

    batch = threading.Thread(target=deliver, args=(x, 2))
    batch.start()
    assert lead_done.wait(10)
    deliver(y, 1)
    batch.join(30)
    assert errors == []
    with in_app() as session:
        statuses = dict(session.execute(select(Order.id, Order.status)).all())
        assert statuses == {x: "delivered", y: "delivered", z: "delivered"}
        for shop, spent in zip(shops, (2 * 800, 800), strict=True):
            wallet = ledger.shop_wallet(shop.id, "CNY")
            assert (wallet.balance, wallet.held) == (10_000 - spent, 0)
