"""Kameng-to-Kameng supply between two real Kameng apps (two databases) on loopback.

Shop A (the test app) sells a card product; shop B (a second app, its own database) is an
agent buyer at A. B imports A's product through A's API, B's buyer pays B, B buys the product
from A with its agent wallet there, and the code A delivers reaches B's buyer — with both
ledgers adding up and agreeing on the amounts."""

from __future__ import annotations

import re
import socket
import threading
import uuid
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, make_url, select
from werkzeug.serving import make_server

from kameng import create_app
from kameng.api import upstream
from kameng.catalog import service as catalog
from kameng.catalog.models import Product
from kameng.config import database_url
from kameng.delivery import suppliers
from kameng.delivery.service import deliver_order
from kameng.extensions import db
from kameng.ledger import service as ledger
from kameng.ledger.models import LedgerTransaction
from kameng.merchant.models import ShopNotice
from kameng.orders.models import Order
from kameng.tenants.models import Tenant
from kameng.tenants.scoping import platform_scope, tenant_scope

from .conftest import SiteClient
from .test_api import agent, make_key  # noqa: F401 - fixtures shared with the API tests

SHOP_B = "downstream-b"


@pytest.fixture
def loopback_names(monkeypatch):
    """*.localhost resolves to loopback, as browsers do (the DNS of this test)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".localhost"):
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                     ("127.0.0.1", int(port or 80)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


class Server:
    """A Kameng app served by werkzeug on a loopback port, in a thread."""

    def __init__(self, wsgi_app):
        self.server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class DropFirstOrderAnswer:
    """Middleware of shop A: while `armed`, the answer to one POST /api/v1/orders is lost on
    the way back (the order is made and paid, the caller gets an error) — a network failure."""

    def __init__(self, app):
        self.app, self.armed, self.dropped = app, False, 0

    def __call__(self, environ, start_response):
        if self.armed and environ["REQUEST_METHOD"] == "POST" \
                and environ["PATH_INFO"] == "/api/v1/orders":
            self.armed = False
            self.dropped += 1
            body = b"".join(self.app(environ, lambda *args, **kwargs: None))
            assert b'"order"' in body  # shop A did make the order
            start_response("502 Bad Gateway", [("Content-Type", "text/plain")])
            return [b"upstream connection reset"]
        return self.app(environ, start_response)


@pytest.fixture
def second_database(app, tmp_path):
    """A database of its own for shop B: a new PostgreSQL database beside the test one, or a
    SQLite file."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if not url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'shop-b.db'}"
        return
    import psycopg

    server = make_url(database_url(url))
    name = f"kameng_b_{uuid.uuid4().hex[:12]}"
    admin_dsn = server.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def app_b(app, second_database):
    """The second Kameng deployment (shop B's), allowed to call suppliers on loopback."""
    config = {key: app.config[key] for key in (
        "TESTING", "SECRET_KEY", "ARGON2_TIME_COST", "ARGON2_MEMORY_KIB", "REDIS_URL",
        "RATELIMIT_STORAGE_URI", "RATELIMIT_STORAGE_OPTIONS", "BABEL_DEFAULT_LOCALE")}
    config.update({"SQLALCHEMY_DATABASE_URI": second_database, "DELIVERY_MODE": "inline",
                   "ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
                   "UPSTREAM_ALLOW_PRIVATE": True, "UPSTREAM_ALLOW_HTTP": True,
                   "TOPUP_TIMEOUT": 10})
    other = create_app(config)
    from flask_migrate import upgrade

    with other.app_context():
        upgrade()
    yield other
    with other.app_context(), platform_scope():
        problems = ledger.check_ledger()
    with other.app_context():
        db.session.remove()
        db.engine.dispose()
    assert problems == [], f"shop B's ledger does not add up: {problems}"


@pytest.fixture
def two_shops(app, app_b, create_tenant, card_product, agent, make_key,  # noqa: F811
              loopback_names, in_app):
    """Shop A served on loopback with a card product and B's agent account (wallet 50.00);
    shop B in app B with a Kameng supplier pointing at A with that account's key."""
    gate = DropFirstOrderAnswer(app)
    served = Server(gate)
    shop_a = create_tenant(slug="upstream-a")
    product_a = card_product(shop_a, codes=["A-CODE-1", "A-CODE-2"], price=1000,
                             name="Steam card 10",
                             input_fields=[{"name": "account", "label": "Steam id",
                                            "required": True, "pattern": r"\d{5,12}"}])
    b_at_a = agent(shop_a, funds=5000, email="shop-b@agents.test")
    key = make_key(shop_a, "buyer", b_at_a.id, name="shop B")
    with app_b.app_context():
        from kameng.tenants.service import create_tenant as create

        shop_b = create(slug=SHOP_B, name="Shop B", owner_email="owner@b.test",
                        owner_password="owner-b-pass-1", locale="en")
        db.session.commit()
        with tenant_scope(shop_b.id):
            supplier = suppliers.save_supplier(
                shop_b.id, None, name="Upstream A", adapter="kameng",
                base_url=f"http://upstream-a.localhost:{served.port}",
                credentials={"key_id": key.id, "api_secret": key.secret})
            db.session.commit()
            supplier_id, shop_b_id = supplier.id, shop_b.id
    yield SimpleNamespace(shop_a=shop_a, product_a=product_a, agent_a=b_at_a, key=key,
                          shop_b_id=shop_b_id, supplier_id=supplier_id, gate=gate,
                          port=served.port)
    served.stop()


def client_b(app_b) -> SiteClient:
    app_b.test_client_class = SiteClient
    client = app_b.test_client()
    client.host = f"{SHOP_B}.localhost"
    return client


def b_session(app_b, shop_b_id):
    """`with b_session(app_b, id) as session:` — shop B's database, B's shop bound."""
    from contextlib import contextmanager

    @contextmanager
    def context():
        with app_b.app_context(), tenant_scope(shop_b_id):
            yield db.session

    return context()


def import_through_console(app_b, setup) -> int:
    """B's owner browses A's products in B's console and imports the one on offer."""
    console = client_b(app_b)
    console.login("owner@b.test", "owner-b-pass-1", path="/admin/login")
    browse = console.get(f"/admin/upstream/{setup.supplier_id}")
    page = browse.get_data(as_text=True)
    assert browse.status_code == 200 and "Steam card 10" in page, page[:3000]
    assert "¥9.00" in page  # A's price for its agent: 10.00 less the Agent level's 10%
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    done = console.post(f"/admin/upstream/{setup.supplier_id}/import",
                        data={"csrf_token": token, "products": str(setup.product_a)})
    assert done.status_code == 302, done.get_data(as_text=True)[:2000]
    with b_session(app_b, setup.shop_b_id) as session:
        product = session.scalar(select(Product).where(Product.supplier_id == setup.supplier_id))
        assert (product.upstream_cost, product.upstream_stock, product.kind) == (900, 2, "topup")
        assert product.supplier_product == str(setup.product_a)
        assert [f["name"] for f in product.fields] == ["account"]
        return product.id


def test_shop_b_sells_shop_a_products_and_the_ledgers_agree(two_shops, app, app_b, in_app,
                                                             buy, pay_sandbox):
    setup = two_shops
    product_b = import_through_console(app_b, setup)
    buyer = client_b(app_b)
    shelf = buyer.get(f"/product/{product_b}").get_data(as_text=True)
    assert "¥10.80" in shelf  # cost 9.00 + shop B's default markup of 20%
    page = pay_sandbox(buyer, buy(buyer, product_b, input_account="123456789",
                                  email="gamer@example.test"))
    assert page.status_code == 200
    assert "A-CODE-1" in page.get_data(as_text=True)  # the code shop A delivered
    with b_session(app_b, setup.shop_b_id) as session:
        order_b = session.scalar(select(Order))
        line_b = order_b.lines[0]
        assert (order_b.status, order_b.amount_due, order_b.cost_total) == ("delivered", 1080, 0)
        assert (line_b.unit_cost, line_b.upstream_status) == (900, "success")
        shop_wallet_b = ledger.shop_wallet(setup.shop_b_id, "CNY")
        assert (shop_wallet_b.balance, shop_wallet_b.held) == (0, 0)  # no platform cost held
        upstream_ref = line_b.upstream_ref
    with in_app(setup.shop_a) as session:
        order_a = session.scalar(select(Order))
        assert str(order_a.id) == upstream_ref
        assert (order_a.status, order_a.amount_due, order_a.payment_method) == \
            ("delivered", 900, "balance")
        assert order_a.lines[0].buyer_input == {"account": "123456789"}
        paid = session.scalar(select(LedgerTransaction).where(
            LedgerTransaction.order_id == order_a.id,
            LedgerTransaction.kind == "wallet_payment"))
        assert paid is not None
        wallet = ledger.buyer_wallet(setup.agent_a, "CNY")
        assert wallet.balance == 5000 - 900
    # The two ledgers agree: B's buyer paid B's price, A's wallet of B paid A's price.
    assert order_b.amount_due - line_b.unit_cost * line_b.qty == 180  # shop B's margin
    assert line_b.unit_cost * line_b.qty == order_a.amount_due


def test_an_answer_lost_on_the_network_is_retried_into_the_same_upstream_order(
        two_shops, app, app_b, in_app, buy, pay_sandbox):
    setup = two_shops
    product_b = import_through_console(app_b, setup)
    setup.gate.armed = True
    buyer = client_b(app_b)
    pay_sandbox(buyer, buy(buyer, product_b, input_account="123456789"))
    assert setup.gate.dropped == 1
    with b_session(app_b, setup.shop_b_id) as session:
        order_b = session.scalar(select(Order))
        assert (order_b.status, order_b.lines[0].upstream_status) == ("paid", "error")
        order_b_id = order_b.id
    with in_app(setup.shop_a) as session:  # shop A did sell it: once
        assert session.scalar(select(func.count()).select_from(Order)) == 1
    with app_b.app_context():  # the delivery job's retry (or the reconciler)
        assert deliver_order(order_b_id) == "delivered"
    with in_app(setup.shop_a) as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 1
        assert ledger.buyer_wallet(setup.agent_a, "CNY").balance == 5000 - 900
    with b_session(app_b, setup.shop_b_id) as session:
        from kameng.security.crypto import keyring

        line = session.get(Order, order_b_id).lines[0]
        assert keyring().decrypt(line.content) == "A-CODE-1"


def test_price_and_stock_follow_the_upstream(two_shops, app, app_b, in_app, card_product):
    setup = two_shops
    product_b = import_through_console(app_b, setup)
    with in_app(setup.shop_a) as session:  # A raises its price; one code is sold elsewhere
        session.get(Product, setup.product_a).price = 1200
        session.commit()
    from kameng.inventory.models import CardCode

    with in_app(setup.shop_a) as session:
        code = session.scalar(select(CardCode).where(CardCode.product_id == setup.product_a))
        code.status = "void"
        session.commit()
    with app_b.app_context():
        assert upstream.sync_all() == 1
    with b_session(app_b, setup.shop_b_id) as session:
        product = session.get(Product, product_b)
        assert (product.upstream_cost, product.upstream_stock) == (1080, 1)
        assert product.upstream_synced_at is not None
        notices = [n.message for n in session.scalars(select(ShopNotice).where(
            ShopNotice.kind == "upstream_price"))]
        assert notices and "¥9.00 to ¥10.80" in notices[0]
        tenant = session.get(Tenant, setup.shop_b_id)
        # A product rule sets the markup, like on a supply product; never below cost.
        catalog.set_markup_rule(tenant, scope="product", product_id=product_b, kind="fixed",
                                value=100, rounding="0.01")
        from kameng.catalog.pricing import quote

        assert quote(tenant, product, None, 1).total == 1180
        with pytest.raises(Exception, match="below its cost"):
            catalog.set_markup_rule(tenant, scope="product", product_id=product_b,
                                    kind="fixed", value=-200, rounding="0.01")
        session.rollback()
    too_many = client_b(app_b)
    answer = too_many.checkout(f"/product/{product_b}",
                               {"qty": 2, "email": "x@example.test", "payment_method": "sandbox",
                                "input_account": "123456"})
    assert answer.status_code == 409  # only 1 left upstream
    with in_app(setup.shop_a) as session:
        session.get(Product, setup.product_a).active = False
        session.commit()
    with app_b.app_context():
        upstream.sync_all()
    with b_session(app_b, setup.shop_b_id) as session:
        assert session.get(Product, product_b).upstream_stock == 0
        assert session.scalar(select(func.count()).select_from(ShopNotice).where(
            ShopNotice.kind == "upstream_gone")) == 1
