"""Schemathesis against /api/v1/openapi.json of the live app (in-process WSGI): generated
requests for every operation, signed with real keys, must never meet a 5xx, must answer what
the document promises, and must never show one shop's data to another shop's key.

Two shops, A and B, each with a product, codes, an agent with a paid order, and a webhook;
every generated request is sent three ways: with A's key to A's host (checked against the
document), with A's key to B's host and with B's key to A's host (401/403/404 only, in the
error shape). Nothing A's host answers may name B's data. The super-admin API gets the same
treatment with a super-admin key on the admin host. Runs are bounded (30 examples per
operation, derandomized) so the suite stays fast and repeatable.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kameng.api.auth import signed_target
from kameng.delivery.adapters import sign_request
from kameng.security.http import UpstreamError

from .test_api import agent, make_key, signed  # noqa: F401 - shared fixtures and helper

MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
B_MARKERS = ("B-ONLY-PRODUCT", "B-SECRET-CODE", "b-only-hook", "agent-b@")


class SigningHook:
    """In front of the app: signs every request schemathesis sends with `self.key`, exactly as
    it arrives (method, path as sent, query, body bytes), as a client of the API would."""

    def __init__(self, app):
        self.app, self.key = app, None

    def __call__(self, environ, start_response):
        if self.key is not None:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            headers = sign_request(environ["REQUEST_METHOD"], signed_target(environ), body,
                                   self.key.id, self.key.secret)
            for name, value in headers.items():
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        return self.app(environ, start_response)


@pytest.fixture
def quick_and_offline(app, monkeypatch):
    """No rate limit in the way; webhook host names resolve nowhere (no network here)."""
    from kameng.webhooks import service as webhooks

    def resolve(host, port):
        raise UpstreamError(f"cannot resolve {host}")

    monkeypatch.setitem(app.config, "API_RATE_LIMIT", "100000 per minute")
    monkeypatch.setattr(webhooks, "resolve", resolve)


def _stock_shop(tenant, name, code, hook, email, card_product, agent, make_key, client):  # noqa: F811
    product_id = card_product(tenant, codes=[code, f"{code}-2", f"{code}-3"], price=1000,
                              name=name)
    buyer = agent(tenant, email=email)
    shop = SimpleNamespace(tenant=tenant, product_id=product_id, client=client,
                           staff=make_key(tenant, "staff"),
                           buyer=make_key(tenant, "buyer", buyer.id))
    bought = signed(client, "POST", "/api/v1/orders", shop.buyer,
                    body={"product_id": product_id, "quantity": 1})
    assert bought.status_code == 201, bought.get_data(as_text=True)
    hooked = signed(client, "POST", "/api/v1/webhooks", shop.staff,
                    body={"url": f"https://93.184.216.34/{hook}", "events": ["order.paid"]})
    assert hooked.status_code == 201, hooked.get_data(as_text=True)
    return shop


@pytest.fixture
def two_shops(create_tenant, card_product, agent, make_key, client_for,  # noqa: F811
              quick_and_offline):
    a, b = create_tenant(slug="shop-a"), create_tenant(slug="shop-b")
    return SimpleNamespace(
        a=_stock_shop(a, "A product", "A-CODE", "a-hook", "agent-a@example.test",
                      card_product, agent, make_key, client_for(a)),
        b=_stock_shop(b, "B-ONLY-PRODUCT", "B-SECRET-CODE", "b-only-hook",
                      "agent-b@example.test", card_product, agent, make_key, client_for(b)))


def _keys_for(operation, shop) -> list:
    auth = next(o.auth for o in _declared() if o.full_path == operation.path
                and o.method == operation.method.upper())
    return {"staff": [shop.staff], "buyer": [shop.buyer], "public": [None],
            "any": [shop.staff, shop.buyer]}[auth]


def _declared():
    from kameng.api.openapi import OPERATIONS

    return OPERATIONS


def _refused(response) -> bool:
    """Another shop's key: only 401, 403 or 404, in the error shape, naming nothing of B."""
    if response.status_code not in (401, 403, 404):
        return False
    payload = response.json()
    return set(payload) == {"error"} and payload["error"]["code"] in (
        "invalid_key", "not_found", "forbidden", "insufficient_scope")


def _run_operation(operation, body):
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case):
        body(case)

    run()


def test_the_shop_api_against_its_document(app, two_shops, client_for):
    hook = SigningHook(app)
    a, b = two_shops.a, two_shops.b
    doc = a.client.get("/api/v1/openapi.json").get_json()
    schema = schemathesis.openapi.from_dict(doc)
    schema.app = hook
    host_a = f"http://{a.tenant.slug}.localhost"
    host_b = f"http://{b.tenant.slug}.localhost"
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        tested.append(f"{operation.method.upper()} {operation.path}")

        def check(case, operation=operation):
            for key_a, key_b in zip(_keys_for(operation, a), _keys_for(operation, b),
                                    strict=True):
                hook.key = key_a
                response = case.call(base_url=host_a)
                case.validate_response(response, checks=CHECKS)
                text = response.text or ""
                leaked = [m for m in B_MARKERS if m in text]
                assert not leaked, f"shop A's answer names shop B's data: {leaked}"
                if key_a is None:
                    continue
                crossed = case.call(base_url=host_b)  # A's key on B's host
                assert _refused(crossed), (crossed.status_code, crossed.text[:300])
                hook.key = key_b
                crossed = case.call(base_url=host_a)  # B's key on A's host
                assert _refused(crossed), (crossed.status_code, crossed.text[:300])
                assert not [m for m in B_MARKERS if m in (crossed.text or "")]
            hook.key = None

        _run_operation(operation, check)
    assert {"POST /api/v1/orders", "GET /api/v1/orders/{order_id}/delivery",
            "PATCH /api/v1/webhooks/{webhook_id}", "GET /api/v1/wallet/transactions"} \
        <= set(tested)


def test_the_platform_api_against_its_document(app, create_admin, make_key,  # noqa: F811
                                              admin_client, quick_and_offline, client_for,
                                              create_tenant):
    hook = SigningHook(app)
    root = create_admin()
    platform_key = make_key(kind="platform", owner_id=root.id)
    shop = create_tenant(slug="shop-a")
    shop_key = make_key(shop, "staff")
    doc = admin_client.get("/api/v1/openapi.json").get_json()
    schema = schemathesis.openapi.from_dict(doc)
    schema.app = hook
    admin = f"http://{app.config['ADMIN_HOST']}"
    for result in schema.get_all_operations():
        operation = result.ok()

        def check(case, operation=operation):
            hook.key = platform_key if operation.path.startswith("/api/v1/platform") else None
            response = case.call(base_url=admin)
            case.validate_response(response, checks=CHECKS)
            if hook.key is not None:
                hook.key = shop_key  # a shop's key on the admin host
                assert _refused(case.call(base_url=admin))
            hook.key = None

        _run_operation(operation, check)
