"""The fast lane: kept shop pages answered to anonymous visitors before Flask runs, and the
version tokens every process keeps until Redis announces their change."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager

import pytest
from flask import request_started
from sqlalchemy import update

from kameng import create_app
from kameng.catalog import service as catalog
from kameng.extensions import db
from kameng.storefront import cache as storefront_cache
from kameng.tenants.models import Tenant
from kameng.tenants.scoping import tenant_scope

NONCE_RE = re.compile(r"'nonce-([^']+)'")


@contextmanager
def flask_requests(app):
    """Count the requests Flask itself handled (the fast lane answers without Flask)."""
    seen: list = []

    def started(sender, **extra):
        seen.append(1)

    request_started.connect(started, app)
    try:
        yield seen
    finally:
        request_started.disconnect(started, app)


def _product(in_app, shop, name: str) -> int:
    with in_app(shop) as session:
        product = catalog.create_product(session.get(Tenant, shop.id), name=name, price=500)
        session.commit()
        return product.id


def _rename(in_app, shop, product_id: int, name: str) -> None:
    with in_app(shop) as session:
        catalog.update_product(catalog.get_product(product_id), name=name)
        session.commit()


def test_an_anonymous_visit_is_answered_without_flask_with_its_own_nonce(
        app, create_tenant, client_for, in_app):
    shop = create_tenant(slug="fast")
    _product(in_app, shop, "Fast card")
    client = client_for(shop)
    first = client.get("/")
    with flask_requests(app) as seen:
        kept = client.get("/")
        again = client.get("/")
    assert not seen and kept.status_code == again.status_code == 200
    assert kept.get_data() != again.get_data()  # only the nonce differs
    for response in (first, kept, again):
        nonce = NONCE_RE.search(response.headers["Content-Security-Policy"]).group(1)
        body = response.get_data(as_text=True)
        assert "Fast card" in body and f'nonce="{nonce}"' in body
        assert int(response.headers["Content-Length"]) == len(response.get_data())
    assert {k: v for k, v in kept.headers if k != "Content-Security-Policy"} == {
        k: v for k, v in first.headers if k != "Content-Security-Policy"}
    head = client.head("/")
    assert head.status_code == 200 and not head.get_data()


def test_a_change_of_the_shop_shows_on_the_next_request(app, create_tenant, client_for, in_app):
    shop = create_tenant(slug="fast")
    product_id = _product(in_app, shop, "Old name")
    client = client_for(shop)
    client.get("/")
    assert "Old name" in client.get("/").get_data(as_text=True)
    _rename(in_app, shop, product_id, "New name")
    body = client.get("/").get_data(as_text=True)
    assert "New name" in body and "Old name" not in body
    with app.app_context():
        db.session.execute(update(Tenant).where(Tenant.id == shop.id).values(status="suspended"))
        db.session.commit()
    assert client.get("/").status_code == 503


def test_requests_that_may_be_personal_go_through_flask(
        app, create_tenant, create_customer, client_for, in_app):
    shop = create_tenant(slug="fast")
    _product(in_app, shop, "Fast card")
    buyer = create_customer(shop, email="me@fast.test", password="buyer-pass-1")
    anonymous = client_for(shop)
    anonymous.get("/")
    signed_in = client_for(shop)
    assert signed_in.login(buyer.email, "buyer-pass-1").status_code == 302
    with flask_requests(app) as seen:
        mine = signed_in.get("/").get_data(as_text=True)
        anonymous.get("/?utm=x")
        anonymous.get("/", headers={"Authorization": "Bearer x"})
        anonymous.post("/")
    assert len(seen) == 4
    assert "My account" in mine
    theirs = anonymous.get("/").get_data(as_text=True)
    assert "My account" not in theirs and "Log in" in theirs


def test_a_visitor_who_chose_a_language_is_answered_in_it_without_flask(
        app, create_tenant, client_for, in_app):
    """The language cookie is the only cookie of a visitor who switched language: still
    anonymous, kept per chosen language; any other cookie goes through Flask."""
    shop = create_tenant(slug="fast", locale="zh_CN")
    _product(in_app, shop, "Fast card")
    english, chinese = client_for(shop), client_for(shop)
    assert english.get("/lang/en").status_code == 302  # sets km_lang, nothing else
    assert chinese.get("/lang/zh_CN").status_code == 302
    english.get("/"), chinese.get("/")
    with flask_requests(app) as seen:
        kept_en = english.get("/").get_data(as_text=True)
        kept_zh = chinese.get("/").get_data(as_text=True)
        header_en = client_for(shop).get("/", headers={"Accept-Language": "en"})
    assert len(seen) == 1  # only the first visitor with that header (its page not yet kept)
    assert '<html lang="en"' in kept_en and "Search" in kept_en
    assert '<html lang="zh-CN"' in kept_zh and "搜索" in kept_zh
    # A browser that only prefers English gets the shop's language: never the page kept
    # for visitors who chose English.
    assert '<html lang="zh-CN"' in header_en.get_data(as_text=True)
    raw = app.test_client(use_cookies=False)  # sends the Cookie header as given
    raw.host = f"fast.{app.config['PLATFORM_DOMAIN']}"
    with flask_requests(app) as seen:
        for cookie in ("km_lang=en; other=1", "km_lang=xx", "km_lang=en; km_lang=zh_CN",
                       "km_lang=en"):
            assert raw.get("/", headers={"Cookie": cookie}).status_code == 200
    assert len(seen) == 3  # all but the last


def test_two_shops_never_share_a_kept_page(app, create_tenant, client_for, in_app):
    one, two = create_tenant(slug="one", name="Shop One"), create_tenant(slug="two",
                                                                          name="Shop Two")
    _product(in_app, one, "Card of one")
    _product(in_app, two, "Card of two")
    for _ in range(3):
        page_one = client_for(one).get("/").get_data(as_text=True)
        page_two = client_for(two).get("/").get_data(as_text=True)
        assert "Card of one" in page_one and "Card of two" not in page_one
        assert "Card of two" in page_two and "Card of one" not in page_two


@pytest.fixture
def second_process(app):
    """Another web process of the same deployment: its own app, caches and subscription."""
    if not app.config.get("REDIS_URL"):
        pytest.skip("version tokens are announced through Redis")
    config = {key: app.config[key] for key in (
        "TESTING", "SECRET_KEY", "ENCRYPTION_KEYS", "ARGON2_TIME_COST", "ARGON2_MEMORY_KIB",
        "REDIS_URL", "RATELIMIT_STORAGE_URI", "RATELIMIT_STORAGE_OPTIONS",
        "BABEL_DEFAULT_LOCALE", "SQLALCHEMY_DATABASE_URI")}
    other = create_app(config)
    yield other
    storefront_cache.clear(other)
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


def test_a_change_made_in_another_process_is_seen_at_once(
        app, second_process, create_tenant, client_for, in_app):
    shop = create_tenant(slug="fast")
    product_id = _product(in_app, shop, "Old name")
    client = client_for(shop)
    client.get("/")
    with flask_requests(app) as seen:
        assert "Old name" in client.get("/").get_data(as_text=True)
    assert not seen  # kept, with the tokens this process keeps
    with second_process.app_context(), tenant_scope(shop.id):
        catalog.update_product(catalog.get_product(product_id), name="New name")
        db.session.commit()
    assert "New name" in client.get("/").get_data(as_text=True)


def test_tokens_are_read_from_redis_while_the_subscription_is_down(
        app, second_process, create_tenant, client_for, in_app):
    shop = create_tenant(slug="fast")
    product_id = _product(in_app, shop, "Old name")
    client = client_for(shop)
    client.get("/")
    client.get("/")
    mirror = storefront_cache._cache(app).mirror
    assert mirror.connection is not None and mirror.tokens
    mirror.connection.disconnect()  # as when Redis restarts: announcements may be lost
    with second_process.app_context(), tenant_scope(shop.id):
        catalog.update_product(catalog.get_product(product_id), name="New name")
        db.session.commit()
    assert "New name" in client.get("/").get_data(as_text=True)
    assert os.getpid() == mirror.pid
