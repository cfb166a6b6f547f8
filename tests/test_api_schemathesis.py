"""Schemathesis against /api/v1/openapi.json of a live test server (the app served on a
loopback port, requests over HTTP): generated requests for every operation, signed with real
keys as they leave the client, must never meet a 5xx, must answer what the document promises,
and must never show one shop's data to another shop's key.

Two shops, A and B, each with a product, codes, an agent with a paid order, and a webhook;
every generated request is sent three ways: with A's key to A's host (checked against the
document), with A's key to B's host and with B's key to A's host (401/403/404 only, in the
error shape). Nothing A's host answers may name B's data. The super-admin API gets the same
treatment with a super-admin key on the admin host. Runs are bounded (30 examples per
operation, derandomized) so the suite stays fast and repeatable.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kameng.delivery.adapters import sign_request
from kameng.security.http import UpstreamError

from .test_api import agent, make_key, signed  # noqa: F401 - shared fixtures and helper
from .test_api_supply import Server, loopback_names  # noqa: F401 - loopback server and names

MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
B_MARKERS = ("B-ONLY-PRODUCT", "B-SECRET-CODE", "b-only-hook", "agent-b@")


class Signed(requests.auth.AuthBase):
    """Signs each request schemathesis sends as it leaves the client (method, the path as sent,
    query, body bytes), as a client of the API would."""

    def __init__(self, key):
        self.key = key

    def __call__(self, prepared):
        body = prepared.body or b""
        body = body.encode() if isinstance(body, str) else body
        prepared.headers.update(sign_request(prepared.method, prepared.path_url, body,
                                             self.key.id, self.key.secret))
        return prepared


class Client:
    """One HTTP session per key (None: unsigned), to the live server."""

    def __init__(self):
        self.sessions = {}

    def __call__(self, key) -> requests.Session:
        if id(key) not in self.sessions:
            session = requests.Session()
            session.trust_env = False  # loopback: no proxy from the environment
            session.auth = Signed(key) if key is not None else None
            self.sessions[id(key)] = session
        return self.sessions[id(key)]


@pytest.fixture
def live(app, loopback_names):  # noqa: F811
    """The test app on a loopback port; *.localhost names resolve to it."""
    served = Server(app)
    yield served
    served.stop()


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


def test_the_shop_api_against_its_document(two_shops, live):
    a, b = two_shops.a, two_shops.b
    host_a = f"http://{a.tenant.slug}.localhost:{live.port}"
    host_b = f"http://{b.tenant.slug}.localhost:{live.port}"
    client = Client()
    served = client(None).get(f"{host_a}/api/v1/openapi.json", timeout=10)
    assert served.status_code == 200
    schema = schemathesis.openapi.from_dict(served.json())
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        tested.append(f"{operation.method.upper()} {operation.path}")

        def check(case, operation=operation):
            for key_a, key_b in zip(_keys_for(operation, a), _keys_for(operation, b),
                                    strict=True):
                response = case.call(base_url=host_a, session=client(key_a), timeout=10)
                case.validate_response(response, checks=CHECKS)
                # Its own key is always let in (the signing above works over the wire).
                assert key_a is None or response.status_code != 401, response.text[:300]
                text = response.text or ""
                leaked = [m for m in B_MARKERS if m in text]
                assert not leaked, f"shop A's answer names shop B's data: {leaked}"
                if key_a is None:
                    continue
                # A's key on B's host, then B's key on A's host.
                crossed = case.call(base_url=host_b, session=client(key_a), timeout=10)
                assert _refused(crossed), (crossed.status_code, crossed.text[:300])
                crossed = case.call(base_url=host_a, session=client(key_b), timeout=10)
                assert _refused(crossed), (crossed.status_code, crossed.text[:300])
                assert not [m for m in B_MARKERS if m in (crossed.text or "")]

        _run_operation(operation, check)
    assert {"POST /api/v1/orders", "GET /api/v1/orders/{order_id}/delivery",
            "PATCH /api/v1/webhooks/{webhook_id}", "GET /api/v1/wallet/transactions"} \
        <= set(tested)


def test_the_platform_api_against_its_document(app, create_admin, make_key,  # noqa: F811
                                              quick_and_offline, create_tenant, live):
    root = create_admin()
    platform_key = make_key(kind="platform", owner_id=root.id)
    shop = create_tenant(slug="shop-a")
    shop_key = make_key(shop, "staff")
    admin = f"http://{app.config['ADMIN_HOST']}:{live.port}"
    client = Client()
    schema = schemathesis.openapi.from_dict(
        client(None).get(f"{admin}/api/v1/openapi.json", timeout=10).json())
    for result in schema.get_all_operations():
        operation = result.ok()

        def check(case, operation=operation):
            key = platform_key if operation.path.startswith("/api/v1/platform") else None
            response = case.call(base_url=admin, session=client(key), timeout=10)
            case.validate_response(response, checks=CHECKS)
            assert key is None or response.status_code != 401, response.text[:300]
            if key is not None:  # a shop's key on the admin host
                assert _refused(case.call(base_url=admin, session=client(shop_key),
                                          timeout=10))

        _run_operation(operation, check)
