"""Fixtures: one app and one fresh database per test run, emptied after every test.

The database is PostgreSQL when DATABASE_URL points at a PostgreSQL server (a new, uniquely
named database is created on it and dropped at the end), otherwise a SQLite file in a
temporary folder. Rate limits use Redis when REDIS_URL is set, under a unique key prefix.

Test code never holds an application context while it makes requests (Flask would share
it, and with it `g` and the database session, with the request): factories open their own
short context and return detached, loaded objects.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import make_url, text

os.environ["KAMENG_ENV"] = "testing"

from kameng import create_app
from kameng.config import database_url
from kameng.extensions import db as _db
from kameng.extensions import limiter
from kameng.storefront import cache as storefront_cache
from kameng.tenants.hosts import resolver
from kameng.tenants.scoping import platform_scope, tenant_scope

CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def order_token(response) -> str:
    """The order link token behind a checkout's redirect: /order/<token>/pay (the payment
    step), or the return address of a gateway checkout went straight on to (the sandbox's
    `return`, EPay's `return_url`)."""
    assert response.status_code == 302, response.status_code
    where = urlsplit(response.location)
    if where.path.startswith("/order/"):
        return where.path.split("/")[2]
    query = parse_qs(where.query)
    for key in ("return", "return_url"):
        if key in query:
            return urlsplit(query[key][0]).path.split("/")[2]
    raise AssertionError(f"no order link in {response.location}")


def order_path(response) -> str:
    """/order/<token>: the order page behind a checkout's redirect (see order_token)."""
    return f"/order/{order_token(response)}"


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://", "postgresql+"))


@pytest.fixture(scope="session")
def database_url_for_tests(tmp_path_factory) -> Iterator[str]:
    configured = os.environ.get("DATABASE_URL", "")
    if not _is_postgres(configured):
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'kameng-test.db'}"
        return
    import psycopg

    server = make_url(database_url(configured))
    name = f"kameng_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = server.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def app(database_url_for_tests) -> Iterator[Flask]:
    redis_url = os.environ.get("REDIS_URL") or None
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url_for_tests,
            "SECRET_KEY": "test-secret-key-" + uuid.uuid4().hex,
            "ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
            "ARGON2_TIME_COST": 1,
            "ARGON2_MEMORY_KIB": 64,
            "REDIS_URL": redis_url,
            "RATELIMIT_STORAGE_URI": redis_url or "memory://",
            "RATELIMIT_STORAGE_OPTIONS": {"key_prefix": f"kameng-test-{uuid.uuid4().hex}"},
            # Paid orders are delivered in the request; queue tests switch to "queue".
            "DELIVERY_MODE": "inline",
            # Tests read English pages; the Chinese ones have tests of their own.
            "BABEL_DEFAULT_LOCALE": "en",
        }
    )
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        _db.engine.dispose()


def _empty_tables(app: Flask) -> None:
    with app.app_context():
        keep = {"platform_secrets"}  # created by the migrations, like on a real install
        tables = [t.name for t in reversed(_db.metadata.sorted_tables) if t.name not in keep]
        if _db.engine.dialect.name == "postgresql":
            _db.session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                _db.session.execute(text(f"DELETE FROM {table}"))
        _db.session.commit()


def _assert_ledger_adds_up(app: Flask) -> None:
    from kameng.ledger.service import check_ledger

    with app.app_context(), platform_scope():
        problems = check_ledger()
    assert problems == [], f"the ledger does not add up after this test: {problems}"


@pytest.fixture(autouse=True)
def clean_state(app: Flask) -> Iterator[None]:
    """Every test starts with empty tables, no cached hosts or shop pages and no rate-limit
    counters, and leaves a ledger that adds up (`kameng ledger check` after every test)."""
    yield
    try:
        _assert_ledger_adds_up(app)
    finally:
        _empty_tables(app)
    resolver(app).forget()
    storefront_cache.clear(app)
    with app.app_context():
        limiter.reset()


@pytest.fixture
def is_postgres(app: Flask) -> bool:
    return app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")


# -- factories ------------------------------------------------------------------------------

_seq = count(1)


def _detached(obj):
    _db.session.refresh(obj)
    _db.session.expunge(obj)
    return obj


@pytest.fixture
def create_tenant(app: Flask):
    """create_tenant(slug=None, name=None, owner_email=None, owner_password="owner-pass-1")."""

    def factory(slug=None, name=None, owner_email=None, owner_password="owner-pass-1", **kw):
        from kameng.tenants.service import create_tenant as create

        n = next(_seq)
        slug = slug or f"shop{n}"
        with app.app_context():
            kw.setdefault("locale", "en")
            tenant = create(
                slug=slug,
                name=name or f"Shop {slug}",
                owner_email=owner_email or f"owner@{slug}.test",
                owner_password=owner_password,
                **kw,
            )
            _db.session.commit()
            _OWNERS[tenant.id] = (owner_email or f"owner@{slug}.test", owner_password)
            return _detached(tenant)

    return factory


_OWNERS: dict[int, tuple[str, str]] = {}  # tenant id -> its owner's e-mail and password


@pytest.fixture
def shop(create_tenant):
    """The shop console tests work in, unless a test module defines its own."""
    return create_tenant(slug="alpha", owner_email="owner@alpha.test",
                         owner_password="owner-alpha-1")


@pytest.fixture
def console_for(client_for):
    """console_for(tenant) -> a client logged in to the shop's console as its owner (a tenant
    made by create_tenant: its owner's e-mail and password are known)."""

    def login(tenant) -> SiteClient:
        client = client_for(tenant)
        email, password = _OWNERS[tenant.id]
        assert client.login(email, password, path="/admin/login").status_code == 302
        return client

    return login


@pytest.fixture
def console(shop, console_for):
    """The `shop`'s console, logged in as its owner."""
    return console_for(shop)


@pytest.fixture
def create_customer(app: Flask):
    """create_customer(tenant, email=None, password="buyer-pass-1")."""

    def factory(tenant, email=None, password="buyer-pass-1", name=""):
        from kameng.members.service import register_customer

        with app.app_context(), tenant_scope(tenant.id):
            customer = register_customer(
                tenant.id,
                email=email or f"buyer{next(_seq)}@{tenant.slug}.test",
                password=password,
                name=name,
            )
            _db.session.commit()
            return _detached(customer)

    return factory


@pytest.fixture
def create_staff(app: Flask):
    """create_staff(tenant, email=None, password="staff-pass-1", role="manager")."""

    def factory(tenant, email=None, password="staff-pass-1", role="manager"):
        from kameng.merchant.service import create_staff as create

        with app.app_context(), tenant_scope(tenant.id):
            staff = create(
                tenant,
                email=email or f"staff{next(_seq)}@{tenant.slug}.test",
                password=password,
                role=role,
            )
            _db.session.commit()
            return _detached(staff)

    return factory


@pytest.fixture
def create_admin(app: Flask):
    """create_admin(email="root@kameng.test", password="admin-pass-1")."""

    def factory(email="root@kameng.test", password="admin-pass-1"):
        from kameng.superadmin.service import create_platform_user

        with app.app_context():
            user = create_platform_user(email=email, password=password)
            _db.session.commit()
            return _detached(user)

    return factory


@pytest.fixture
def admin(create_admin, admin_client):
    """The admin host's client, logged in as a super-admin (root@kameng.test)."""
    create_admin(email="root@kameng.test", password="admin-pass-1")
    assert admin_client.login("root@kameng.test", "admin-pass-1").status_code == 302
    return admin_client


@pytest.fixture
def owner_of(app: Flask):
    """owner_of(tenant) -> the shop's owner account (detached)."""

    def lookup(tenant):
        from sqlalchemy import select

        from kameng.merchant.models import StaffUser

        with app.app_context(), tenant_scope(tenant.id):
            return _detached(_db.session.scalar(select(StaffUser).where(StaffUser.role == "owner")))

    return lookup


@pytest.fixture
def in_app(app: Flask):
    """`with in_app(tenant=None):` — an app context (tenant bound, or platform-wide)."""
    from contextlib import contextmanager

    @contextmanager
    def context(tenant=None):
        with app.app_context():
            if tenant is None:
                with platform_scope():
                    yield _db.session
            else:
                with tenant_scope(tenant if isinstance(tenant, int) else tenant.id):
                    yield _db.session

    return context


# -- clients --------------------------------------------------------------------------------


class SiteClient(FlaskClient):
    """A test client pinned to one host, with helpers for forms and logins."""

    host: str = "localhost"

    def open(self, *args, **kwargs):
        kwargs.setdefault("base_url", f"http://{self.host}")
        return super().open(*args, **kwargs)

    def csrf_token(self, path: str) -> str:
        page = self.get(path)
        match = CSRF_RE.search(page.get_data(as_text=True))
        assert match, f"no CSRF token on {self.host}{path} (status {page.status_code})"
        return match.group(1)

    def submit(self, path: str, data: dict | None = None, form_path: str | None = None, **kw):
        """POST `data` to `path` with the CSRF token of the page at `form_path` (default: path)."""
        data = dict(data or {})
        data["csrf_token"] = self.csrf_token(form_path or path)
        return self.post(path, data=data, **kw)

    def checkout(self, product_path: str, data: dict, **kw):
        """POST the product page's checkout form as a browser does: with its CSRF token when
        it has one (only for a visitor with a session: kameng/orders/forms.py)."""
        data = dict(data)
        match = CSRF_RE.search(self.get(product_path).get_data(as_text=True))
        if match:
            data["csrf_token"] = match.group(1)
        return self.post(f"{product_path}/checkout", data=data, **kw)

    def login(self, email: str, password: str, path: str = "/login"):
        return self.submit(path, {"email": email, "password": password})


@dataclass
class Hosts:
    admin: str
    landing: str


@pytest.fixture
def hosts(app: Flask) -> Hosts:
    return Hosts(admin=app.config["ADMIN_HOST"], landing=app.config["PLATFORM_DOMAIN"])


@pytest.fixture
def client_for(app: Flask):
    """client_for(tenant | host) -> a client whose requests go to that shop or host."""
    app.test_client_class = SiteClient

    def make(target) -> SiteClient:
        client = app.test_client()
        if isinstance(target, str):
            client.host = target
        else:
            client.host = f"{target.slug}.{app.config['PLATFORM_DOMAIN']}"
        return client

    return make


@pytest.fixture
def admin_client(client_for, hosts) -> SiteClient:
    return client_for(hosts.admin)


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


# -- catalog and orders -------------------------------------------------------------------------


@pytest.fixture
def card_product(app: Flask):
    """card_product(tenant, codes=["C-1"], price=1000, **details) -> product id (own, card)."""

    def factory(tenant, codes=("C-1",), price=1000, name="Game card", **details):
        from kameng.audit.service import Actor
        from kameng.catalog.service import create_product
        from kameng.inventory.service import import_codes
        from kameng.tenants.models import Tenant

        with app.app_context(), tenant_scope(tenant.id):
            shop = _db.session.get(Tenant, tenant.id)
            product = create_product(shop, name=name, price=price,
                                     delivery_kind=details.pop("delivery_kind", "card"), **details)
            if codes and product.delivery_kind == "card":
                import_codes(product, list(codes), actor=Actor.system())
            _db.session.commit()
            return product.id

    return factory


@pytest.fixture
def buy(app: Flask):
    """buy(client, product_id, **form) -> the checkout response (not followed)."""

    def purchase(client, product_id, **form):
        data = {"qty": 1, "email": "buyer@example.test", "payment_method": "sandbox", **form}
        return client.checkout(f"/product/{product_id}", data)

    return purchase


@pytest.fixture
def pay_sandbox(app: Flask):
    """pay_sandbox(client, checkout_response, outcome="pay") -> the order page response."""

    def pay(client, response, outcome="pay"):
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]
        # Checkout starts the sandbox payment itself: straight on to the sandbox's page.
        page = urlsplit(response.location)
        assert page.path.startswith("/pay/sandbox/"), response.location
        path = page.path + ("?" + page.query if page.query else "")
        token = client.csrf_token(path)
        done = client.post(path, data={"csrf_token": token, "outcome": outcome})
        assert done.status_code == 302
        return client.get(done.location)

    return pay
