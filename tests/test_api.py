"""The REST API v1: signed requests, keys and scopes, agents buying from their wallet,
idempotent order creation, the one JSON error shape, rate limits, the super-admin API and the
key pages of both consoles."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from kameng.api import service as api_keys
from kameng.api.models import ApiKey, ApiNonce
from kameng.catalog.models import PriceLevel
from kameng.delivery.adapters import sign_request
from kameng.extensions import db
from kameng.ledger import service as ledger
from kameng.members.models import Customer
from kameng.orders.models import Order
from kameng.tenants.models import Tenant

# -- signing, as any client of the API would ---------------------------------------------------


class Key(SimpleNamespace):
    """An API key as its holder knows it: id and secret."""


def signed(client, method: str, path: str, key: Key | None, *, body=None, raw: bytes | None = None,
           headers: dict | None = None, timestamp: int | None = None, nonce: str | None = None,
           sign_path: str | None = None, sign_body: bytes | None = None):
    """Send a request signed with `key` (the target is `path`, query included)."""
    data = raw if raw is not None else (
        json.dumps(body).encode() if body is not None else b"")
    sent = dict(headers or {})
    if body is not None or raw is not None:
        sent.setdefault("Content-Type", "application/json")
    if key is not None:
        sent.update(sign_request(method, sign_path or path,
                                 data if sign_body is None else sign_body, key.id, key.secret,
                                 timestamp=timestamp, nonce=nonce))
    return client.open(path, method=method, data=data, headers=sent)


def error_of(response) -> dict:
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:500]
    payload = response.get_json()
    assert set(payload) == {"error"} and set(payload["error"]) == {"code", "message", "fields"}
    return payload["error"]


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def make_key(app):
    """make_key(tenant, kind="staff"|"buyer"|"platform", owner_id=None, scopes=...) -> Key."""

    def make(tenant=None, kind="staff", owner_id=None, scopes=None, name="test"):
        from kameng.merchant.models import StaffUser
        from kameng.tenants.scoping import platform_scope, tenant_scope

        with app.app_context():
            if kind == "platform":
                with platform_scope():
                    new = api_keys.create_platform_key(owner_id, name=name)
                    db.session.commit()
                    return Key(id=new.key.key_id, secret=new.secret, pk=new.key.id)
            with tenant_scope(tenant.id):
                if kind == "staff":
                    if owner_id is None:
                        owner_id = db.session.scalar(
                            select(StaffUser.id).where(StaffUser.role == "owner"))
                    new = api_keys.create_staff_key(
                        tenant.id, owner_id, scopes=scopes or ["catalog", "orders", "manage"],
                        name=name)
                else:
                    new = api_keys.create_buyer_key(tenant.id, owner_id,
                                                    scopes=scopes or ["catalog", "orders"],
                                                    name=name)
                db.session.commit()
                return Key(id=new.key.key_id, secret=new.secret, pk=new.key.id)

    return make


@pytest.fixture
def agent(app, create_customer, in_app):
    """agent(tenant, funds=10000, level="Agent") -> a buyer at that level with a funded wallet."""

    def make(tenant, funds=10_000, level="Agent", email=None):
        customer = create_customer(tenant, email=email)
        with in_app(tenant) as session:
            row = session.get(Customer, customer.id)
            row.level_id = session.scalar(select(PriceLevel.id).where(PriceLevel.name == level))
            if funds:
                ledger.transfer(f"fund-{customer.id}", "wallet_topup",
                                ledger.get_account("shop_income", currency="CNY",
                                                   tenant_id=tenant.id),
                                ledger.buyer_wallet(row, "CNY"), funds, tenant_id=tenant.id)
            session.commit()
        return customer

    return make


@pytest.fixture
def shop(create_tenant, card_product, agent, make_key, client_for):
    """A shop with a card product (three codes, 10.00), an agent (wallet 100.00) and keys."""
    tenant = create_tenant()
    product_id = card_product(tenant, codes=["CODE-1", "CODE-2", "CODE-3"], price=1000)
    buyer = agent(tenant)
    return SimpleNamespace(
        tenant=tenant, product_id=product_id, buyer=buyer, client=client_for(tenant),
        staff=make_key(tenant, "staff"), buyer_key=make_key(tenant, "buyer", buyer.id))


def wallet_balance(in_app, tenant, customer_id) -> int:
    with in_app(tenant) as session:
        return ledger.buyer_wallet(session.get(Customer, customer_id), "CNY").balance


# -- the document and the reference page --------------------------------------------------------


def test_the_openapi_document_and_reference_page_are_public(shop, admin_client):
    doc = shop.client.get("/api/v1/openapi.json")
    assert doc.status_code == 200 and doc.mimetype == "application/json"
    data = doc.get_json()
    assert data["openapi"] == "3.1.0"
    assert {"/api/v1/products", "/api/v1/orders", "/api/v1/orders/{order_id}/delivery",
            "/api/v1/wallet", "/api/v1/webhooks/{webhook_id}"} <= set(data["paths"])
    create = data["paths"]["/api/v1/orders"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"][
        "additionalProperties"] is False
    assert "/api/v1/platform/shops" not in data["paths"]
    page = shop.client.get("/api/v1/docs")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "X-Kameng-Signature" in text and "createOrder" in text and "<script" not in text
    assert "idempotency_key_reused" in text
    platform = admin_client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/platform/shops/{slug}/suspend" in platform["paths"]
    assert "/api/v1/orders" not in platform["paths"]


# -- signatures --------------------------------------------------------------------------------


def test_a_signed_request_is_accepted_once_and_marks_the_key_used(shop, in_app):
    first = signed(shop.client, "GET", "/api/v1/key", shop.staff, nonce="n" * 32)
    assert first.status_code == 200, first.get_data(as_text=True)
    assert first.get_json()["key"] == {"id": shop.staff.id, "kind": "staff", "name": "test",
                                       "scopes": ["catalog", "manage", "orders"],
                                       "shop": shop.tenant.slug, "level": None}
    with in_app() as session:
        assert session.scalar(select(ApiKey.last_used_at).where(
            ApiKey.key_id == shop.staff.id)) is not None
    replay = signed(shop.client, "GET", "/api/v1/key", shop.staff, nonce="n" * 32)
    assert (replay.status_code, error_of(replay)["code"]) == (401, "replayed_nonce")


@pytest.mark.parametrize(("change", "code"), [
    ("no headers", "missing_signature"),
    ("expired", "stale_timestamp"),
    ("future", "stale_timestamp"),
    ("tampered body", "bad_signature"),
    ("tampered path", "bad_signature"),
    ("tampered query", "bad_signature"),
    ("wrong secret", "bad_signature"),
    ("unknown key", "invalid_key"),
    ("short nonce", "missing_signature"),
])
def test_expired_tampered_and_unsigned_requests_are_refused(shop, change, code):
    key, kwargs = shop.buyer_key, {}
    path, body = "/api/v1/orders", {"product_id": shop.product_id, "quantity": 1}
    if change == "no headers":
        key = None
    elif change == "expired":
        kwargs["timestamp"] = int(time.time()) - 330  # window: 300 s
    elif change == "future":
        kwargs["timestamp"] = int(time.time()) + 330
    elif change == "tampered body":
        kwargs["sign_body"] = json.dumps({**body, "quantity": 2}).encode()
    elif change == "tampered path":
        kwargs["sign_path"] = "/api/v1/orders/1"
    elif change == "tampered query":
        path, kwargs["sign_path"] = "/api/v1/orders?limit=1", "/api/v1/orders?limit=2"
    elif change == "wrong secret":
        key = Key(id=key.id, secret="kks_not-the-secret")
    elif change == "unknown key":
        key = Key(id="kk_000000000000000000000000", secret=key.secret)
    elif change == "short nonce":
        kwargs["nonce"] = "abc"
    method = "GET" if change == "tampered query" else "POST"
    answer = signed(shop.client, method, path, key, body=None if method == "GET" else body,
                    **kwargs)
    assert answer.status_code == 401
    assert error_of(answer)["code"] == code


def test_a_key_works_only_on_its_own_site(shop, create_tenant, create_admin, make_key,
                                          client_for, admin_client, in_app):
    other = client_for(create_tenant())
    assert error_of(signed(other, "GET", "/api/v1/products", shop.staff))["code"] == \
        "invalid_key"
    assert error_of(signed(admin_client, "GET", "/api/v1/platform/shops",
                           shop.staff))["code"] == "invalid_key"
    root = create_admin()
    platform = make_key(kind="platform", owner_id=root.id)
    assert signed(admin_client, "GET", "/api/v1/platform/shops", platform).status_code == 200
    answer = signed(shop.client, "GET", "/api/v1/products", platform)
    assert (answer.status_code, error_of(answer)["code"]) == (401, "invalid_key")
    with in_app() as session:  # revoked: refused from the next request on
        api_keys.revoke_key(session.scalar(select(ApiKey).where(ApiKey.key_id == shop.staff.id)))
        session.commit()
    assert error_of(signed(shop.client, "GET", "/api/v1/key", shop.staff))["code"] == \
        "invalid_key"


def test_the_signature_covers_the_path_as_sent(shop):
    answer = signed(shop.client, "GET", "/api/v1/products?limit=1&after=0", shop.staff)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    answer = signed(shop.client, "GET", "/api/v1/orders/%31", shop.staff)  # "1", encoded
    assert error_of(answer)["code"] == "not_found"


# -- products -----------------------------------------------------------------------------------


def test_products_show_the_callers_price_and_stock(shop):
    staff = signed(shop.client, "GET", "/api/v1/products", shop.staff).get_json()
    buyer = signed(shop.client, "GET", "/api/v1/products", shop.buyer_key).get_json()
    [mine] = staff["products"]
    assert (mine["id"], mine["stock"], mine["available"]) == (shop.product_id, 3, True)
    assert mine["price"] == {"currency": "CNY", "unit_price": 1000, "level": "Guest"}
    assert buyer["products"][0]["price"] == {"currency": "CNY", "unit_price": 900,
                                             "level": "Agent"}  # the Agent level's 10% off
    one = signed(shop.client, "GET", f"/api/v1/products/{shop.product_id}", shop.buyer_key)
    assert one.get_json()["product"]["price"]["unit_price"] == 900
    assert staff["next_after"] is None
    missing = signed(shop.client, "GET", "/api/v1/products/999999", shop.staff)
    assert (missing.status_code, error_of(missing)["code"]) == (404, "not_found")


def test_product_pages_follow_the_cursor(shop, card_product):
    second = card_product(shop.tenant, codes=["X-1"], price=500, name="Second")
    first_page = signed(shop.client, "GET", "/api/v1/products?limit=1", shop.staff).get_json()
    assert [p["id"] for p in first_page["products"]] == [shop.product_id]
    assert first_page["next_after"] == shop.product_id
    rest = signed(shop.client, "GET", f"/api/v1/products?limit=1&after={shop.product_id}",
                  shop.staff).get_json()
    assert [p["id"] for p in rest["products"]] == [second] and rest["next_after"] is None


# -- orders ------------------------------------------------------------------------------------


def test_an_agent_buys_from_the_wallet_and_gets_the_codes(shop, in_app):
    answer = signed(shop.client, "POST", "/api/v1/orders", shop.buyer_key,
                    body={"product_id": shop.product_id, "quantity": 2})
    assert answer.status_code == 201, answer.get_data(as_text=True)
    order = answer.get_json()["order"]
    assert (order["status"], order["total"], order["amount_due"]) == ("delivered", 1800, 1800)
    assert order["lines"][0]["unit_price"] == 900 and order["lines"][0]["quantity"] == 2
    assert order["delivered"] == [{"title": "Game card", "items": ["CODE-1", "CODE-2"]}]
    assert wallet_balance(in_app, shop.tenant, shop.buyer.id) == 10_000 - 1800
    again = signed(shop.client, "GET", f"/api/v1/orders/{order['id']}", shop.buyer_key)
    assert again.get_json()["order"]["delivered"][0]["items"] == ["CODE-1", "CODE-2"]
    delivery = signed(shop.client, "GET", f"/api/v1/orders/{order['id']}/delivery",
                      shop.buyer_key).get_json()
    assert delivery == {"order_id": order["id"], "status": "delivered",
                        "delivered": [{"title": "Game card", "items": ["CODE-1", "CODE-2"]}]}
    listed = signed(shop.client, "GET", "/api/v1/orders", shop.buyer_key).get_json()
    assert [o["id"] for o in listed["orders"]] == [order["id"]]
    wallet = signed(shop.client, "GET", "/api/v1/wallet", shop.buyer_key).get_json()
    assert wallet["wallet"] == {"owner": "buyer", "currency": "CNY", "balance": 8200,
                                "held": 0, "available": 8200}
    history = signed(shop.client, "GET", "/api/v1/wallet/transactions",
                     shop.buyer_key).get_json()["transactions"]
    assert [(t["amount"], t["order_id"]) for t in history][:1] == [(-1800, order["id"])]


def test_staff_keys_see_orders_but_never_their_codes_and_cannot_buy(shop):
    order = signed(shop.client, "POST", "/api/v1/orders", shop.buyer_key,
                   body={"product_id": shop.product_id, "quantity": 1}).get_json()["order"]
    staff_view = signed(shop.client, "GET", f"/api/v1/orders/{order['id']}", shop.staff)
    assert staff_view.status_code == 200 and "delivered" not in staff_view.get_json()["order"]
    assert "CODE-1" not in staff_view.get_data(as_text=True)
    refused = signed(shop.client, "GET", f"/api/v1/orders/{order['id']}/delivery", shop.staff)
    assert (refused.status_code, error_of(refused)["code"]) == (403, "buyer_key_required")
    buy = signed(shop.client, "POST", "/api/v1/orders", shop.staff,
                 body={"product_id": shop.product_id, "quantity": 1})
    assert (buy.status_code, error_of(buy)["code"]) == (403, "buyer_key_required")


def test_another_buyers_order_is_not_found(shop, agent, make_key):
    order = signed(shop.client, "POST", "/api/v1/orders", shop.buyer_key,
                   body={"product_id": shop.product_id, "quantity": 1}).get_json()["order"]
    rival = make_key(shop.tenant, "buyer", agent(shop.tenant).id)
    for path in (f"/api/v1/orders/{order['id']}", f"/api/v1/orders/{order['id']}/delivery"):
        answer = signed(shop.client, "GET", path, rival)
        assert (answer.status_code, error_of(answer)["code"]) == (404, "not_found")
    assert signed(shop.client, "GET", "/api/v1/orders", rival).get_json()["orders"] == []


def test_an_idempotency_key_answers_the_same_order(shop, in_app):
    body = {"product_id": shop.product_id, "quantity": 1}
    headers = {"Idempotency-Key": "retry-me-1"}
    first = signed(shop.client, "POST", "/api/v1/orders", shop.buyer_key, body=body,
                   headers=headers)
    # The answer was lost on the way (a timeout): the client sends the same request again,
    # signed afresh, with the same key and body (keys in another order, other spacing).
    again = signed(shop.client, "POST", "/api/v1/orders", shop.buyer_key,
                   raw=b'{ "quantity": 1,  "product_id": %d }' % shop.product_id,
                   headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["order"]["id"] == first.get_json()["order"]["id"]
    assert again.get_json()["order"]["delivered"] == first.get_json()["order"]["delivered"]
    other = signed(shop.client, "POST", "/api/v1/orders", shop.buyer_key,
                   body={**body, "quantity": 2}, headers=headers)
    assert (other.status_code, error_of(other)["code"]) == (409, "idempotency_key_reused")
    with in_app(shop.tenant) as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 1
    assert wallet_balance(in_app, shop.tenant, shop.buyer.id) == 10_000 - 900
    bad = signed(shop.client, "POST", "/api/v1/orders", shop.buyer_key, body=body,
                 headers={"Idempotency-Key": "has spaces"})
    assert error_of(bad)["fields"] == {
        "Idempotency-Key": "1 to 100 printable ASCII characters, no spaces"}


def test_an_order_the_wallet_cannot_cover_changes_nothing(shop, agent, make_key, in_app):
    poor = agent(shop.tenant, funds=500)
    key = make_key(shop.tenant, "buyer", poor.id)
    answer = signed(shop.client, "POST", "/api/v1/orders", key,
                    body={"product_id": shop.product_id, "quantity": 1})
    assert (answer.status_code, error_of(answer)["code"]) == (409, "insufficient_funds")
    sold_out = signed(shop.client, "POST", "/api/v1/orders", shop.buyer_key,
                      body={"product_id": shop.product_id, "quantity": 4})
    assert (sold_out.status_code, error_of(sold_out)["code"]) == (409, "sold_out")
    assert error_of(sold_out)["fields"] == {"quantity": "Sorry, only 3 left in stock."}
    with in_app(shop.tenant) as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 0
    assert wallet_balance(in_app, shop.tenant, poor.id) == 500


# -- the error shape ----------------------------------------------------------------------------


def test_validation_errors_name_every_field_and_refuse_unknown_ones(shop, card_product):
    topup = card_product(shop.tenant, codes=(), price=300, name="Top-up",
                         delivery_kind="manual",
                         input_fields=[{"name": "account", "label": "Account", "required": True,
                                        "pattern": r"\d{5}"}])
    cases = [
        ({"product_id": shop.product_id, "quantity": "two", "colour": "red"},
         {"quantity": "must be integer", "colour": "is not a known field"}),
        ({"quantity": 1}, {"product_id": "is required"}),
        ({"product_id": 99999, "quantity": 1}, {"product_id": "no such product"}),
        ({"product_id": shop.product_id, "quantity": 0}, {"quantity": "must be at least 1"}),
        ({"product_id": topup, "quantity": 1, "inputs": {"acount": "12345"}},
         {"inputs.acount": "is not an input of this product"}),
        ({"product_id": topup, "quantity": 1}, {"inputs.account": "Account is required."}),
        ({"product_id": topup, "quantity": 1, "inputs": {"account": "12"}},
         {"inputs.account": "Account is not in the expected format."}),
        ({"product_id": topup, "quantity": 1, "inputs": {"account": 12345}},
         {"inputs.account": "must be string"}),
    ]
    for body, fields in cases:
        answer = signed(shop.client, "POST", "/api/v1/orders", shop.buyer_key, body=body)
        error = error_of(answer)
        assert (answer.status_code, error["code"], error["fields"]) == \
            (422, "validation_failed", fields), body
    unknown = signed(shop.client, "GET", "/api/v1/products?colour=red", shop.staff)
    assert error_of(unknown)["fields"] == {"colour": "is not a known parameter"}
    not_json = signed(shop.client, "POST", "/api/v1/orders", shop.buyer_key, raw=b"{nope")
    assert (not_json.status_code, error_of(not_json)["code"]) == (400, "invalid_json")
    form = signed(shop.client, "POST", "/api/v1/orders", shop.buyer_key, raw=b"a=1",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (form.status_code, error_of(form)["code"]) == (415, "unsupported_media_type")
    listed = signed(shop.client, "GET", "/api/v1/orders?status=lost&limit=0", shop.staff)
    assert error_of(listed)["fields"] == {"status": "must be one of pending, paid, delivering, "
                                          "awaiting, delivered, failed, expired, cancelled, "
                                          "refunded", "limit": "must be at least 1"}


def test_every_api_error_is_json_never_a_page(shop, client_for, hosts, app, monkeypatch,
                                              in_app):
    nowhere = signed(shop.client, "GET", "/api/v1/nowhere", shop.staff)
    assert (nowhere.status_code, error_of(nowhere)["code"]) == (404, "not_found")
    put = signed(shop.client, "PUT", "/api/v1/products", shop.staff, body={})
    assert (put.status_code, error_of(put)["code"]) == (405, "method_not_allowed")
    assert "GET" in put.headers["Allow"]
    stranger = client_for("nosuchshop.localhost").get("/api/v1/products")
    assert (stranger.status_code, error_of(stranger)["code"]) == (404, "unknown_shop")
    huge = signed(shop.client, "POST", "/api/v1/orders", shop.buyer_key,
                  raw=b'{"x": "' + b"a" * 70_000 + b'"}')
    assert (huge.status_code, error_of(huge)["code"]) == (413, "too_large")
    with in_app() as session:
        session.get(Tenant, shop.tenant.id).status = "suspended"
        session.commit()
    closed = signed(shop.client, "GET", "/api/v1/products", shop.staff)
    assert (closed.status_code, error_of(closed)["code"]) == (503, "shop_suspended")


def test_an_unexpected_error_is_a_json_500(shop, app, monkeypatch):
    from kameng.api import views

    monkeypatch.setitem(app.config, "RENDER_500_IN_TESTS", True)
    monkeypatch.setattr(views.present, "wallet", lambda *a: 1 / 0)
    answer = signed(shop.client, "GET", "/api/v1/wallet", shop.buyer_key)
    assert (answer.status_code, error_of(answer)["code"]) == (500, "internal_error")
    assert "ZeroDivisionError" not in answer.get_data(as_text=True)


def test_the_rate_limit_counts_per_key(shop, app, monkeypatch, make_key):
    monkeypatch.setitem(app.config, "API_RATE_LIMIT", "3 per minute")
    for _ in range(3):
        assert signed(shop.client, "GET", "/api/v1/key", shop.staff).status_code == 200
    limited = signed(shop.client, "GET", "/api/v1/products", shop.staff)
    assert (limited.status_code, error_of(limited)["code"]) == (429, "rate_limited")
    assert int(limited.headers["Retry-After"]) > 0
    other = make_key(shop.tenant, "staff", scopes=["catalog"])
    assert signed(shop.client, "GET", "/api/v1/key", other).status_code == 200


# -- scopes and agents --------------------------------------------------------------------------


def test_scopes_limit_what_a_key_may_do(shop, make_key, create_staff):
    reader = make_key(shop.tenant, "staff", scopes=["catalog"])
    assert signed(shop.client, "GET", "/api/v1/products", reader).status_code == 200
    for method, path in (("GET", "/api/v1/orders"), ("GET", "/api/v1/webhooks"),
                         ("GET", "/api/v1/wallet")):
        answer = signed(shop.client, method, path, reader)
        assert (answer.status_code, error_of(answer)["code"]) == (403, "insufficient_scope")
    buyer_catalog = make_key(shop.tenant, "buyer", shop.buyer.id, scopes=["catalog"])
    answer = signed(shop.client, "POST", "/api/v1/orders", buyer_catalog,
                    body={"product_id": shop.product_id, "quantity": 1})
    assert error_of(answer)["code"] == "insufficient_scope"
    webhooks = signed(shop.client, "GET", "/api/v1/webhooks", shop.buyer_key)
    assert error_of(webhooks)["code"] == "staff_key_required"
    support = create_staff(shop.tenant, role="support")
    from kameng.errors import DomainError

    with pytest.raises(DomainError, match="manage scope"):
        make_key(shop.tenant, "staff", support.id, scopes=["manage"])
    wallet = signed(shop.client, "GET", "/api/v1/wallet", shop.staff).get_json()["wallet"]
    assert wallet["owner"] == "shop" and wallet["balance"] == 0


def test_only_agents_hold_buyer_keys_and_a_lowered_buyer_is_refused(shop, agent, make_key,
                                                                   in_app):
    from kameng.errors import DomainError

    member = agent(shop.tenant, level="Member")
    with pytest.raises(DomainError, match="Agent level"):
        make_key(shop.tenant, "buyer", member.id)
    with in_app(shop.tenant) as session:
        row = session.get(Customer, shop.buyer.id)
        row.level_id = session.scalar(select(PriceLevel.id).where(PriceLevel.name == "VIP"))
        session.commit()
    answer = signed(shop.client, "GET", "/api/v1/products", shop.buyer_key)
    assert (answer.status_code, error_of(answer)["code"]) == (403, "not_agent")


# -- webhooks ---------------------------------------------------------------------------------


def test_webhooks_are_managed_through_the_api(shop, create_tenant, make_key, client_for):
    created = signed(shop.client, "POST", "/api/v1/webhooks", shop.staff,
                     body={"url": "https://93.184.216.34/hooks", "events": ["order.paid"]})
    assert created.status_code == 201, created.get_data(as_text=True)
    hook, secret = created.get_json()["webhook"], created.get_json()["secret"]
    assert secret.startswith("whsec_") and hook["events"] == ["order.paid"]
    changed = signed(shop.client, "PATCH", f"/api/v1/webhooks/{hook['id']}", shop.staff,
                     body={"active": False, "events": ["order.paid", "order.delivered"]})
    assert changed.get_json()["webhook"]["active"] is False
    listed = signed(shop.client, "GET", "/api/v1/webhooks", shop.staff).get_json()
    assert [h["id"] for h in listed["webhooks"]] == [hook["id"]] and "secret" not in listed
    unsafe = signed(shop.client, "POST", "/api/v1/webhooks", shop.staff,
                    body={"url": "https://10.0.0.1/x", "events": ["order.paid"]})
    assert error_of(unsafe)["fields"].keys() == {"url"}
    other = create_tenant()
    other_key = make_key(other, "staff")
    stranger = signed(client_for(other), "GET", f"/api/v1/webhooks/{hook['id']}", other_key)
    assert (stranger.status_code, error_of(stranger)["code"]) == (404, "not_found")
    gone = signed(shop.client, "DELETE", f"/api/v1/webhooks/{hook['id']}", shop.staff)
    assert gone.status_code == 204
    assert signed(shop.client, "GET", f"/api/v1/webhooks/{hook['id']}",
                  shop.staff).status_code == 404


# -- the super-admin API ------------------------------------------------------------------------


def test_the_platform_api_creates_suspends_and_resumes_shops(create_admin, make_key,
                                                             admin_client, client_for, app):
    root = create_admin()
    key = make_key(kind="platform", owner_id=root.id)
    created = signed(admin_client, "POST", "/api/v1/platform/shops", key, body={
        "slug": "robot-shop", "name": "Robot shop", "owner_email": "owner@robot.test",
        "owner_password": "robot-pass-1"})
    assert created.status_code == 201, created.get_data(as_text=True)
    shop = created.get_json()["shop"]
    assert (shop["slug"], shop["status"]) == ("robot-shop", "active")
    assert shop["hosts"] == [f"robot-shop.{app.config['PLATFORM_DOMAIN']}"]
    assert shop["billing"]["subscription"] is None and shop["billing"]["open_invoices"] == []
    taken = signed(admin_client, "POST", "/api/v1/platform/shops", key, body={
        "slug": "robot-shop", "name": "Again", "owner_email": "o@robot.test",
        "owner_password": "robot-pass-1"})
    assert (taken.status_code, error_of(taken)["fields"].keys()) == (409, {"slug"})
    suspended = signed(admin_client, "POST", "/api/v1/platform/shops/robot-shop/suspend", key)
    assert suspended.get_json()["shop"]["status"] == "suspended"
    closed = client_for("robot-shop.localhost").get("/")
    assert closed.status_code == 503
    twice = signed(admin_client, "POST", "/api/v1/platform/shops/robot-shop/suspend", key)
    assert (twice.status_code, error_of(twice)["code"]) == (409, "conflict")
    resumed = signed(admin_client, "POST", "/api/v1/platform/shops/robot-shop/resume", key)
    assert resumed.get_json()["shop"]["status"] == "active"
    billing = signed(admin_client, "GET", "/api/v1/platform/shops/robot-shop/billing", key)
    assert billing.get_json() == {"shop": "robot-shop", "billing": {
        "subscription": None, "open_invoices": [], "amount_due": 0, "currency": "CNY"}}
    listed = signed(admin_client, "GET", "/api/v1/platform/shops?q=robot", key).get_json()
    assert [s["slug"] for s in listed["shops"]] == ["robot-shop"]
    missing = signed(admin_client, "GET", "/api/v1/platform/shops/no-such", key)
    assert (missing.status_code, error_of(missing)["code"]) == (404, "not_found")


# -- the consoles ----------------------------------------------------------------------------


def test_the_shop_console_creates_shows_once_and_revokes_keys(shop, client_for, in_app,
                                                             owner_of):
    console = client_for(shop.tenant)
    console.login(f"owner@{shop.tenant.slug}.test", "owner-pass-1", path="/admin/login")
    page = console.get("/admin/api-keys")
    assert page.status_code == 200 and shop.staff.id in page.get_data(as_text=True)
    owner = owner_of(shop.tenant)
    created = console.submit("/admin/api-keys/staff", {
        "owner": owner.id, "name": "stock sync", "scopes": ["catalog"]},
        form_path="/admin/api-keys")
    text = created.get_data(as_text=True)
    assert created.status_code == 200 and created.headers["Cache-Control"] == "no-store"
    with in_app() as session:
        key = session.scalar(select(ApiKey).where(ApiKey.name == "stock sync"))
        secret = api_keys.key_secret(key)
        key_id, key_pk = key.key_id, key.id
    assert secret in text and key_id in text
    assert secret not in console.get("/admin/api-keys").get_data(as_text=True)
    assert signed(shop.client, "GET", "/api/v1/products",
                  Key(id=key_id, secret=secret)).status_code == 200
    buyer = console.submit("/admin/api-keys/buyer", {
        "owner": shop.buyer.id, "name": "agent", "scopes": ["catalog", "orders"]},
        form_path="/admin/api-keys")
    assert buyer.status_code == 200 and "kks_" in buyer.get_data(as_text=True)
    console.submit(f"/admin/api-keys/{key_pk}/revoke", {}, form_path="/admin/api-keys")
    assert signed(shop.client, "GET", "/api/v1/products",
                  Key(id=key_id, secret=secret)).status_code == 401
    assert "revoked" in console.get("/admin/api-keys").get_data(as_text=True)


def test_support_staff_cannot_manage_keys(shop, create_staff, client_for):
    support = create_staff(shop.tenant, role="support")
    console = client_for(shop.tenant)
    console.login(support.email, "staff-pass-1", path="/admin/login")
    assert console.get("/admin/api-keys").status_code == 403


def test_the_platform_console_makes_super_admin_keys(create_admin, admin_client, in_app):
    create_admin()
    admin_client.login("root@kameng.test", "admin-pass-1")
    created = admin_client.submit("/api-keys/", {"name": "provisioning"})
    assert created.status_code == 200 and "kks_" in created.get_data(as_text=True)
    with in_app() as session:
        key = session.scalar(select(ApiKey).where(ApiKey.name == "provisioning"))
        assert (key.tenant_id, key.owner_kind, key.scopes) == (None, "platform", ["platform"])
    assert "provisioning" in admin_client.get("/api-keys/").get_data(as_text=True)


# -- housekeeping --------------------------------------------------------------------------------


def test_old_nonces_are_cleaned_up(shop, app, in_app):
    from kameng.workers.jobs import clean_nonces, use_app
    from kameng.workers.periodic import SCHEDULE
    from kameng.workers.queues import POLICIES

    assert "clean_nonces" in SCHEDULE and "clean_nonces" in POLICIES
    signed(shop.client, "GET", "/api/v1/key", shop.staff, nonce="o" * 32)
    signed(shop.client, "GET", "/api/v1/key", shop.staff, nonce="f" * 32)
    with in_app() as session:
        old = session.scalar(select(ApiNonce).where(ApiNonce.nonce == "o" * 32))
        old.created_at = datetime.now(UTC) - timedelta(minutes=11)
        session.commit()
    use_app(app)
    assert clean_nonces() == 1
    with in_app() as session:
        assert [n.nonce for n in session.scalars(select(ApiNonce))] == ["f" * 32]
