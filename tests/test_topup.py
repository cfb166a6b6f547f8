"""Direct top-up (直充) through upstream suppliers: a paid order is bought from the product's
supplier (a fake JSON supplier and a fake Kameng shop on loopback ports), pending answers are
polled, unusable answers retried up to the limit, refusals fail at once, and addresses inside
the network are never called unless the operator allows it. The ledger is checked after every
test by conftest's `clean_state`."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from kameng.catalog import service as catalog
from kameng.delivery import suppliers
from kameng.delivery.adapters import (
    JsonAdapter,
    TopupLine,
    UpstreamRetry,
    canonical_request,
    dig,
    fill,
)
from kameng.delivery.models import Supplier
from kameng.delivery.service import deliver_order, retry_delivery
from kameng.delivery.topup import poll_line, stalled_lines
from kameng.errors import DomainError
from kameng.ledger import service as ledger
from kameng.orders.models import Order, OrderEvent, OrderLine
from kameng.security.crypto import keyring
from kameng.tenants.models import Tenant

API_KEY = "sk_supplier_TOPSECRET_0123456789"
KAMENG_KEY_ID = "key_live_0001"
KAMENG_SECRET = "kameng-api-secret-abcdef0123456789"

SETTINGS = {
    "order_path": "/api/order",
    "query_path": "/api/order/{reference}",
    "body": {"sku": "{product}", "amount": "{qty}", "account": "{input.account}",
             "request_id": "{idempotency_key}", "our_order": "{order}"},
    "auth_header": "Authorization",
    "auth_value": "Bearer {api_key}",
    "status_field": "data.status",
    "success_values": "success, 1",
    "pending_values": "processing",
    "failure_values": "failed",
    "reference_field": "data.order_id",
    "message_field": "msg",
    "content_field": "data.receipt",
}


# -- a fake upstream supplier ------------------------------------------------------------------


def supplier_answer(status="success", order_id="UP-1", msg="ok", receipt=None, http=200):
    data = {"status": status, "order_id": order_id}
    if receipt is not None:
        data["receipt"] = receipt
    return http, {}, json.dumps({"code": 0, "msg": msg, "data": data}).encode()


class FakeSupplier:
    """A supplier on a loopback port. `on_place` and `on_check` return (HTTP status, headers,
    body), or ("sleep", seconds) to stall; every request is recorded in `calls`."""

    def __init__(self, protocol: str = "HTTP/1.1"):
        self.calls: list[SimpleNamespace] = []
        self.on_place = lambda call: supplier_answer()
        self.on_check = lambda call: supplier_answer()
        self.on_other = lambda call: (404, {}, b'{"msg": "not found"}')
        handler = type("Handler", (_Handler,), {"fake": self, "protocol_version": protocol})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # clients that gave up
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    def answer(self, call: SimpleNamespace):
        self.calls.append(call)
        if call.method == "POST":
            return self.on_place(call)
        if call.path.startswith(("/api/order/", "/api/v1/orders/")):
            return self.on_check(call)
        return self.on_other(call)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSupplier

    def _reply(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        call = SimpleNamespace(method=self.command, path=self.path, raw=raw, body=body,
                               headers={k.lower(): v for k, v in self.headers.items()})
        answer = self.fake.answer(call)
        if answer[0] == "sleep":
            time.sleep(answer[1])
            answer = supplier_answer()
        status, headers, payload = answer
        try:
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up waiting
            pass

    def do_GET(self):
        self._reply()

    def do_POST(self):
        self._reply()

    def log_message(self, *args):
        pass


@pytest.fixture
def upstream():
    server = FakeSupplier().start()
    yield server
    server.stop()


@pytest.fixture
def allow_loopback(app, monkeypatch):
    """The operator's allowance for suppliers on loopback over plain HTTP (restored after)."""
    monkeypatch.setitem(app.config, "UPSTREAM_ALLOW_PRIVATE", True)
    monkeypatch.setitem(app.config, "UPSTREAM_ALLOW_HTTP", True)
    monkeypatch.setitem(app.config, "TOPUP_TIMEOUT", 0.5)
    monkeypatch.setitem(app.config, "TOPUP_MAX_ATTEMPTS", 3)
    monkeypatch.setitem(app.config, "TOPUP_MAX_POLLS", 4)


# -- shops, products, orders -----------------------------------------------------------------


@pytest.fixture
def topup_shop(create_tenant, in_app, upstream, allow_loopback):
    """topup_shop(base_url=upstream.url, adapter="json", ...) -> the shop, its supplier and a
    top-up product of its own bought from that supplier."""

    def make(base_url=None, adapter="json", settings=None, credentials=None, code="PUBG-60"):
        shop = create_tenant()
        with in_app(shop) as session:
            tenant = session.get(Tenant, shop.id)
            supplier = suppliers.save_supplier(
                shop.id, None, name="Acme Games", adapter=adapter,
                base_url=base_url or upstream.url,
                settings=SETTINGS if settings is None and adapter == "json" else settings,
                credentials=credentials or {"api_key": API_KEY})
            product = catalog.create_product(
                tenant, name="PUBG 60 UC", price=600, delivery_kind="topup",
                input_fields=[{"name": "account", "label": "Game account", "required": True,
                               "pattern": r"\d{5,12}"}],
                supplier_id=supplier.id, supplier_product=code)
            session.commit()
            return SimpleNamespace(shop=shop, supplier_id=supplier.id, product_id=product.id)

    return make


@pytest.fixture
def order_topup(client_for, buy, pay_sandbox):
    """order_topup(setup, account) -> the buyer's client and order page path, after paying
    (delivery runs in the request: inline mode)."""

    def purchase(setup, account="123456789"):
        client = client_for(setup.shop)
        page = pay_sandbox(client, buy(client, setup.product_id, input_account=account))
        assert page.status_code == 200, page.get_data(as_text=True)[:2000]
        return client, page.request.path

    return purchase


def state(in_app, shop) -> SimpleNamespace:
    """The shop's latest order, its line and its timeline."""
    with in_app(shop) as session:
        order = session.scalar(select(Order).order_by(Order.id.desc()))
        line = order.lines[0]
        timeline = list(session.scalars(
            select(OrderEvent).where(OrderEvent.order_id == order.id).order_by(OrderEvent.id)))
        return SimpleNamespace(
            id=order.id, status=order.status, needs_staff=order.needs_staff,
            staff_reason=order.staff_reason, line_id=line.id, ref=line.upstream_ref,
            upstream_status=line.upstream_status, attempts=line.upstream_attempts,
            content=keyring().decrypt(line.content) if line.content else None,
            notes=[e.note for e in timeline])


def places(upstream) -> list:
    return [c for c in upstream.calls if c.method == "POST"]


# -- success, pending, polling ---------------------------------------------------------------


def test_a_supplier_that_answers_success_delivers_the_order(topup_shop, order_topup, upstream,
                                                             in_app):
    setup = topup_shop()
    upstream.on_place = lambda call: supplier_answer("success", "UP-77", "charged",
                                                     receipt="60 UC added to 123456789")
    client, page = order_topup(setup, "123456789")
    done = state(in_app, setup.shop)
    assert done.status == "delivered"
    assert (done.ref, done.upstream_status, done.attempts) == ("UP-77", "success", 1)
    assert done.content == "60 UC added to 123456789"
    [call] = upstream.calls
    key = f"kameng-line-{done.line_id}"
    assert call.path == "/api/order"
    assert call.headers["idempotency-key"] == key
    assert call.headers["authorization"] == f"Bearer {API_KEY}"
    assert call.body == {"sku": "PUBG-60", "amount": 1, "account": "123456789",
                         "request_id": key, "our_order": call.body["our_order"]}
    assert any("Acme Games" in n and "success, reference UP-77: charged" in n
               for n in done.notes), done.notes
    assert "60 UC added to 123456789" in client.get(page).get_data(as_text=True)


def test_success_without_content_confirms_the_account(topup_shop, order_topup, upstream,
                                                      in_app):
    setup = topup_shop()
    upstream.on_place = lambda call: supplier_answer("1", "UP-5")
    order_topup(setup, "55555555")
    done = state(in_app, setup.shop)
    assert done.status == "delivered"
    assert done.content == "Topped up 55555555 (supplier reference UP-5)"


def test_pending_then_success_is_delivered_by_polling(topup_shop, order_topup, upstream,
                                                      in_app, app):
    setup = topup_shop()
    upstream.on_place = lambda call: supplier_answer("processing", "UP-9", "queued")
    answers = iter([supplier_answer("processing", "UP-9"),
                    supplier_answer("success", "UP-9", "done", receipt="Receipt 9")])
    upstream.on_check = lambda call: next(answers)
    client, page = order_topup(setup)
    waiting = state(in_app, setup.shop)
    assert (waiting.status, waiting.upstream_status, waiting.ref) == ("awaiting", "pending",
                                                                      "UP-9")
    with app.app_context():
        assert poll_line(waiting.line_id) == "awaiting"
        assert poll_line(waiting.line_id) == "delivered"
        assert poll_line(waiting.line_id) == "delivered"  # idempotent: asks nobody
    checks = [c for c in upstream.calls if c.method == "GET"]
    assert [c.path for c in checks] == ["/api/order/UP-9"] * 2
    assert checks[0].headers["authorization"] == f"Bearer {API_KEY}"
    done = state(in_app, setup.shop)
    assert (done.status, done.upstream_status, done.content) == ("delivered", "success",
                                                                 "Receipt 9")
    assert "Receipt 9" in client.get(page).get_data(as_text=True)
    assert any("Checked with supplier 'Acme Games': success" in n for n in done.notes)


def test_pending_forever_fails_after_the_poll_limit(topup_shop, order_topup, upstream, in_app,
                                                   app):
    setup = topup_shop()
    upstream.on_place = lambda call: supplier_answer("processing", "UP-3")
    upstream.on_check = lambda call: supplier_answer("processing", "UP-3")
    order_topup(setup)
    line_id = state(in_app, setup.shop).line_id
    with app.app_context():
        results = [poll_line(line_id) for _ in range(5)]
    assert results == ["awaiting"] * 3 + ["failed", "failed"]
    assert len([c for c in upstream.calls if c.method == "GET"]) == 4  # TOPUP_MAX_POLLS
    done = state(in_app, setup.shop)
    assert done.status == "failed" and done.needs_staff
    assert "had not finished after 4 status checks" in done.staff_reason


def test_a_failure_while_polling_fails_the_order(topup_shop, order_topup, upstream, in_app,
                                                 app):
    setup = topup_shop()
    upstream.on_place = lambda call: supplier_answer("processing", "UP-4")
    upstream.on_check = lambda call: supplier_answer("failed", "UP-4", "account banned")
    order_topup(setup)
    with app.app_context():
        assert poll_line(state(in_app, setup.shop).line_id) == "failed"
    done = state(in_app, setup.shop)
    assert done.needs_staff and "account banned" in done.staff_reason


def test_a_pending_top_up_is_polled_by_a_job_in_queue_mode(topup_shop, order_topup, upstream,
                                                           in_app, app, monkeypatch):
    from kameng.workers import queues

    setup = topup_shop()
    upstream.on_place = lambda call: supplier_answer("processing", "UP-2")
    jobs = []
    monkeypatch.setattr(queues, "enqueue", lambda job, *args, **kw: jobs.append((job, args, kw)))
    monkeypatch.setitem(app.config, "DELIVERY_MODE", "queue")
    order_topup(setup)
    [(order_id,)] = [args for job, args, _ in jobs if job == "deliver"]
    with app.app_context():
        assert deliver_order(order_id) == "awaiting"
    line_id = state(in_app, setup.shop).line_id
    upstream.on_check = lambda call: supplier_answer("processing", "UP-2")
    with app.app_context():
        assert poll_line(line_id) == "awaiting"
    polls = [(args, kw) for job, args, kw in jobs if job == "poll_topup"]
    assert polls == [((line_id,), {"delay": 5}), ((line_id,), {"delay": 10})]  # backing off


def test_a_lost_poll_is_found_by_the_reconciler(topup_shop, order_topup, upstream, in_app,
                                                app):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    setup = topup_shop()
    upstream.on_place = lambda call: supplier_answer("processing", "UP-8")
    order_topup(setup)
    waiting = state(in_app, setup.shop)
    with app.app_context():
        assert stalled_lines() == []
    with in_app(setup.shop) as session:
        session.execute(update(OrderEvent).values(
            created_at=datetime.now(UTC) - timedelta(hours=1)))
        session.commit()
    with app.app_context():
        assert stalled_lines() == [waiting.line_id]


# -- no usable answer: retried, then failed ----------------------------------------------------


@pytest.mark.parametrize(("misbehaviour", "said"), [
    (lambda call: ("sleep", 1.0), "did not answer in time"),
    (lambda call: (500, {}, b'{"msg": "database down"}'), "HTTP 500: {\"msg\": \"database down\"}"),
    (lambda call: (200, {"Content-Type": "text/html"}, b"<html>maintenance</html>"),
     "not JSON"),
    (lambda call: supplier_answer("mystery"), "unknown status 'mystery'"),
    (lambda call: (429, {}, b"slow down"), "HTTP 429"),
], ids=["timeout", "http-500", "garbage", "unknown-status", "too-many-requests"])
def test_no_usable_answer_is_retried_then_fails_for_staff(misbehaviour, said, topup_shop,
                                                          order_topup, upstream, in_app, app):
    setup = topup_shop()
    upstream.on_place = misbehaviour
    order_topup(setup)  # attempt 1, in the paying request
    first = state(in_app, setup.shop)
    assert (first.status, first.upstream_status, first.attempts) == ("paid", "error", 1)
    assert any(said in n and "attempt 1 of 3" in n for n in first.notes), first.notes
    with app.app_context():
        with pytest.raises(UpstreamRetry):  # the delivery job's Retry tries again
            deliver_order(first.id)
        assert deliver_order(first.id) == "failed"  # attempt 3 of 3
        assert deliver_order(first.id) == "failed"  # a late duplicate job changes nothing
    done = state(in_app, setup.shop)
    assert (done.status, done.needs_staff, done.attempts) == ("failed", True, 3)
    assert said in done.staff_reason and "3 attempts" in done.staff_reason
    assert len(places(upstream)) == 3
    keys = {call.headers["idempotency-key"] for call in places(upstream)}
    assert keys == {f"kameng-line-{done.line_id}"}  # one upstream order, never two


def test_a_supplier_that_recovers_delivers_on_a_retry(topup_shop, order_topup, upstream, in_app,
                                                     app):
    setup = topup_shop()
    upstream.on_place = lambda call: (503, {}, b"busy")
    order_topup(setup)
    upstream.on_place = lambda call: supplier_answer("success", "UP-6")
    with app.app_context():
        assert deliver_order(state(in_app, setup.shop).id) == "delivered"
    done = state(in_app, setup.shop)
    assert (done.status, done.attempts, done.ref) == ("delivered", 2, "UP-6")


# -- definitive refusals ---------------------------------------------------------------------


@pytest.mark.parametrize(("refusal", "message"), [
    (lambda call: supplier_answer("failed", "UP-0", "account does not exist"),
     "account does not exist"),
    (lambda call: (400, {}, b'{"msg": "invalid sku"}'), "invalid sku"),
    (lambda call: (403, {}, b"forbidden"), "forbidden"),
], ids=["failure-status", "http-400", "http-403"])
def test_a_refusal_fails_at_once_with_the_message(refusal, message, topup_shop, order_topup,
                                                  upstream, in_app, app):
    setup = topup_shop()
    upstream.on_place = refusal
    order_topup(setup)
    done = state(in_app, setup.shop)
    assert (done.status, done.needs_staff, done.upstream_status) == ("failed", True, "failure")
    assert message in done.staff_reason
    assert any(message in n and n.startswith("Sent to") for n in done.notes)
    assert len(upstream.calls) == 1


def test_a_staff_retry_after_a_refusal_places_a_new_upstream_order(topup_shop, order_topup,
                                                                   upstream, in_app, app):
    setup = topup_shop()
    upstream.on_place = lambda call: supplier_answer("failed", "UP-0", "out of stock")
    order_topup(setup)
    upstream.on_place = lambda call: supplier_answer("success", "UP-10")
    with in_app(setup.shop) as session:
        order = session.scalar(select(Order))
        assert retry_delivery(order, actor="owner@test") == "delivered"
    first, second = (c.headers["idempotency-key"] for c in places(upstream))
    line_id = state(in_app, setup.shop).line_id
    assert (first, second) == (f"kameng-line-{line_id}", f"kameng-line-{line_id}-2")


def test_without_a_supplier_the_top_up_waits_for_staff(create_tenant, in_app, client_for, buy,
                                                       pay_sandbox):
    shop = create_tenant()
    with in_app(shop) as session:
        product = catalog.create_product(session.get(Tenant, shop.id), name="Top-up",
                                         price=500, delivery_kind="topup")
        session.commit()
    client = client_for(shop)
    pay_sandbox(client, buy(client, product.id))
    done = state(in_app, shop)
    assert done.status == "awaiting"
    assert any("waits for staff" in n and "no upstream supplier" in n for n in done.notes)


# -- SSRF --------------------------------------------------------------------------------------


@pytest.fixture
def no_connections(monkeypatch):
    """Records (and refuses) every outgoing connection of the SSRF-safe client."""
    from kameng.security import http

    attempts = []

    def refuse(address, *args, **kwargs):
        attempts.append(address)
        raise OSError("connections are off in this test")

    monkeypatch.setattr(http.socket, "create_connection", refuse)
    return attempts


def _supplier_at(setup, in_app, base_url):
    with in_app() as session:
        session.get(Supplier, setup.supplier_id).base_url = base_url
        session.commit()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.0.0.8", "169.254.169.254"])
def test_addresses_inside_the_network_are_refused_before_any_connection(
        host, topup_shop, order_topup, upstream, in_app, app, monkeypatch, no_connections):
    setup = topup_shop()
    _supplier_at(setup, in_app, f"http://{host}:{upstream.port}")
    monkeypatch.setitem(app.config, "UPSTREAM_ALLOW_PRIVATE", False)
    order_topup(setup)
    done = state(in_app, setup.shop)
    assert (done.status, done.needs_staff, done.upstream_status) == ("failed", True, "refused")
    assert "inside the network" in done.staff_reason
    assert upstream.calls == [] and no_connections == []


def test_a_redirect_into_the_network_is_not_followed(topup_shop, order_topup, upstream, in_app):
    target = FakeSupplier().start()
    try:
        setup = topup_shop()
        upstream.on_place = lambda call: (302, {"Location": f"{target.url}/api/order"}, b"")
        order_topup(setup)
    finally:
        target.stop()
    assert target.calls == []
    done = state(in_app, setup.shop)
    assert (done.status, done.upstream_status, done.attempts) == ("paid", "error", 1)
    assert any("redirect (HTTP 302)" in n for n in done.notes)


def test_plain_http_is_refused_without_the_operators_allowance(topup_shop, order_topup,
                                                               upstream, in_app, app,
                                                               monkeypatch):
    setup = topup_shop()
    monkeypatch.setitem(app.config, "UPSTREAM_ALLOW_HTTP", False)
    order_topup(setup)
    done = state(in_app, setup.shop)
    assert done.status == "failed" and "https" in done.staff_reason
    assert upstream.calls == []


# -- supply products: the platform's supplier --------------------------------------------------


def test_a_listing_is_bought_from_its_supply_products_supplier(create_tenant, in_app, upstream,
                                                               allow_loopback, client_for, buy,
                                                               pay_sandbox):
    with in_app() as session:
        supplier = suppliers.save_supplier(None, None, name="Platform Source", adapter="json",
                                           base_url=upstream.url, settings=SETTINGS,
                                           credentials={"api_key": API_KEY})
        supply = catalog.create_supply_product(
            name="Steam wallet 50", cost=400, delivery_kind="topup",
            input_fields=[{"name": "account", "label": "Steam id", "required": True}],
            supplier_id=supplier.id, supplier_product="STEAM-50")
        session.commit()
        supply_id = supply.id
    shop = create_tenant()
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        listing = catalog.list_supply_product(tenant, catalog.get_supply_product(supply_id))
        ledger.transfer("fund", "platform_funding",
                        ledger.get_account("platform_funding", currency="CNY"),
                        ledger.shop_wallet(shop.id, "CNY"), 5000, tenant_id=shop.id)
        session.commit()
        listing_id = listing.id
    client = client_for(shop)
    pay_sandbox(client, buy(client, listing_id, input_account="steam-1"))
    done = state(in_app, shop)
    assert done.status == "delivered"
    assert places(upstream)[0].body["sku"] == "STEAM-50"
    assert not any("Platform Source" in n for n in done.notes)  # shops do not see its name
    assert any("the platform's supplier" in n for n in done.notes)
    with in_app(shop):
        wallet = ledger.shop_wallet(shop.id, "CNY")
        assert (wallet.balance, wallet.held) == (4600, 0)  # the supply cost was captured


# -- the Kameng adapter against a fake Kameng shop -------------------------------------------


def kameng_signature_ok(call) -> bool:
    """The upstream's check of a signed request, written out independently here."""
    headers = call.headers
    body_hash = hashlib.sha256(call.raw).hexdigest()
    message = "\n".join([call.method, call.path, headers["x-kameng-timestamp"],
                         headers["x-kameng-nonce"], body_hash]).encode()
    expected = hmac.new(KAMENG_SECRET.encode(), message, hashlib.sha256).hexdigest()
    return (headers.get("x-kameng-key") == KAMENG_KEY_ID
            and abs(int(headers["x-kameng-timestamp"]) - time.time()) < 300
            and hmac.compare_digest(expected, headers["x-kameng-signature"]))


class FakeKamengShop:
    """The upstream shop's API: orders are created once per Idempotency-Key, delivered on the
    second read."""

    def __init__(self, fake: FakeSupplier):
        self.orders: dict[str, dict] = {}
        self.reads = 0
        self.nonces: set[str] = set()
        fake.on_place, fake.on_check, fake.on_other = self.create, self.read, self.other

    def _refused(self, call):
        nonce = call.headers.get("x-kameng-nonce", "")
        if not kameng_signature_ok(call) or nonce in self.nonces:
            return 401, {}, json.dumps({"error": {"code": "bad_signature",
                                                  "message": "signature refused"}}).encode()
        self.nonces.add(nonce)
        return None

    def create(self, call):
        refused = self._refused(call)
        if refused:
            return refused
        if call.path != "/api/v1/orders":
            return 404, {}, b"{}"
        key = call.headers["idempotency-key"]
        order = self.orders.setdefault(key, {
            "id": f"ord-{len(self.orders) + 1}", "number": f"UP{len(self.orders) + 1:04d}",
            "status": "delivering", "request": call.body, "delivered": []})
        return 201, {}, json.dumps({"order": order}).encode()

    def read(self, call):
        refused = self._refused(call)
        if refused:
            return refused
        order_id = call.path.rsplit("/", 1)[1]
        order = next((o for o in self.orders.values() if o["id"] == order_id), None)
        if order is None:
            return 404, {}, json.dumps({"error": {"code": "not_found",
                                                  "message": "no such order"}}).encode()
        self.reads += 1
        if self.reads >= 2:
            order["status"] = "delivered"
            order["delivered"] = [{"title": "PUBG 60 UC", "items": ["UC-CODE-4242"]}]
        return 200, {}, json.dumps({"order": order}).encode()

    def other(self, call):
        refused = self._refused(call)
        if refused:
            return refused
        if call.path == "/api/v1/wallet":
            return 200, {}, b'{"wallet": {"balance": "88.00", "currency": "CNY"}}'
        return 404, {}, b"{}"


def test_the_kameng_adapter_buys_from_another_kameng_shop(topup_shop, order_topup, upstream,
                                                         in_app, app):
    shop_api = FakeKamengShop(upstream)
    setup = topup_shop(adapter="kameng", code="42",
                       credentials={"key_id": KAMENG_KEY_ID, "api_secret": KAMENG_SECRET})
    client, page = order_topup(setup, "987654321")
    waiting = state(in_app, setup.shop)
    assert (waiting.status, waiting.ref) == ("awaiting", "ord-1")
    [create] = places(upstream)
    assert create.headers["idempotency-key"] == f"kameng-line-{waiting.line_id}"
    assert create.body == {"product_id": 42, "quantity": 1, "inputs": {"account": "987654321"}}
    assert kameng_signature_ok(create)
    assert KAMENG_SECRET not in json.dumps(create.headers)
    with app.app_context():
        assert poll_line(waiting.line_id) == "awaiting"
        assert poll_line(waiting.line_id) == "delivered"
    reads = [c for c in upstream.calls if c.method == "GET"]
    assert [c.path for c in reads] == ["/api/v1/orders/ord-1"] * 2
    assert len(shop_api.nonces) == 3  # a fresh nonce on every request
    done = state(in_app, setup.shop)
    assert done.content == "UC-CODE-4242"
    assert "UC-CODE-4242" in client.get(page).get_data(as_text=True)


def test_the_kameng_adapter_reports_a_refused_signature(topup_shop, order_topup, upstream,
                                                       in_app):
    FakeKamengShop(upstream)
    setup = topup_shop(adapter="kameng", code="42",
                       credentials={"key_id": KAMENG_KEY_ID, "api_secret": "wrong-secret"})
    order_topup(setup)
    done = state(in_app, setup.shop)
    assert done.status == "failed" and "signature refused" in done.staff_reason


def test_the_signature_covers_method_path_time_nonce_and_body():
    message = canonical_request("post", "/api/v1/orders", "1700000000", "ab" * 16, b"{}")
    assert message == ("POST\n/api/v1/orders\n1700000000\n" + "ab" * 16 + "\n"
                       + hashlib.sha256(b"{}").hexdigest()).encode()


# -- the JSON adapter's pieces -----------------------------------------------------------------


def test_templates_fill_typed_values():
    values = {"qty": 3, "product": "SKU-1", "inputs": {"account": "42"}, "input.account": "42"}
    assert fill({"n": "{qty}", "label": "x{qty}", "all": "{inputs}", "a": ["{input.account}"]},
                values) == {"n": 3, "label": "x3", "all": {"account": "42"}, "a": ["42"]}
    assert dig({"data": {"items": [{"code": "C"}]}}, "data.items.0.code") == "C"
    assert dig({"data": None}, "data.status") is None


@pytest.mark.parametrize(("settings", "field"), [
    ({"body": "{not json"}, "body"),
    ({"body": '["a list"]'}, "body"),
    ({"body": '{"x": "{password}"}'}, "body"),
    ({"query_path": "/order/{secret}"}, "query_path"),
    ({"order_path": "order"}, "order_path"),
    ({"auth_header": "Bad Header"}, "auth_header"),
    ({"status_field": ""}, "status_field"),
    ({"success_values": "ok", "failure_values": "ok"}, "success_values"),
])
def test_json_settings_are_checked(settings, field):
    with pytest.raises(DomainError) as error:
        JsonAdapter.check_settings(settings)
    assert error.value.field == field


def test_the_json_adapter_refuses_to_guess(app, upstream, allow_loopback):
    upstream.on_place = lambda call: (200, {}, b'{"data": {}}')
    supplier = SimpleNamespace(base_url=upstream.url, settings=JsonAdapter.check_settings(
        SETTINGS))
    line = TopupLine(line_id=1, order_number="K-1", product="P", qty=1, inputs={})
    with app.app_context(), pytest.raises(UpstreamRetry, match="no status"):
        JsonAdapter().place(supplier, {"api_key": "k"}, line, "kameng-line-1")


def test_a_supplier_that_closes_the_connection_is_read(app, allow_loopback):
    """Many servers answer with `Connection: close` (every HTTP/1.0 server does)."""
    closing = FakeSupplier(protocol="HTTP/1.0").start()
    try:
        supplier = SimpleNamespace(base_url=closing.url,
                                   settings=JsonAdapter.check_settings(SETTINGS))
        line = TopupLine(line_id=1, order_number="K-1", product="P", qty=1, inputs={})
        with app.app_context():
            result = JsonAdapter().place(supplier, {"api_key": "k"}, line, "kameng-line-1")
    finally:
        closing.stop()
    assert result.status == "success"


def test_an_unreachable_supplier_is_retried(app, allow_loopback):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    supplier = SimpleNamespace(base_url=f"http://127.0.0.1:{port}",
                               settings=JsonAdapter.check_settings({}))
    line = TopupLine(line_id=1, order_number="K-1", product="P", qty=1, inputs={})
    with app.app_context(), pytest.raises(UpstreamRetry):
        JsonAdapter().place(supplier, {}, line, "kameng-line-1")


def test_order_lines_keep_nothing_secret_in_the_timeline(topup_shop, order_topup, upstream,
                                                         in_app):
    setup = topup_shop()
    upstream.on_place = lambda call: supplier_answer("success", receipt="CODE-SECRET-1")
    order_topup(setup)
    with in_app(setup.shop) as session:
        events = list(session.scalars(select(OrderEvent)))
        assert not any("CODE-SECRET-1" in (e.note + json.dumps(e.data)) for e in events)
        assert not any(API_KEY in (e.note + json.dumps(e.data)) for e in events)
        assert session.scalar(select(OrderLine.upstream_ref)) == "UP-1"

