"""Shop webhooks: signed deliveries of order and stock events to the shop's own endpoints only,
retries then "failed" and a re-send, SSRF refusals on save and at delivery, secrets shown once."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from kameng.mail.models import MailMessage
from kameng.webhooks import service as webhooks
from kameng.webhooks.models import WebhookDelivery, WebhookEndpoint

SECRET_RE = re.compile(r'id="signing-secret" value="(whsec_[^"]+)"')


class Receiver:
    """An HTTP server on 127.0.0.1 that records every request and answers `status`."""

    def __init__(self, protocol: str = "HTTP/1.1"):
        self.requests: list[dict] = []
        self.status = 200
        self.answer = b"ok"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = protocol  # HTTP/1.0: the server closes the connection

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": body})
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def to(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]


@pytest.fixture
def allow_local(app, monkeypatch):
    """The operator allows private addresses and plain HTTP (restored after the test)."""
    monkeypatch.setitem(app.config, "UPSTREAM_ALLOW_PRIVATE", True)
    monkeypatch.setitem(app.config, "UPSTREAM_ALLOW_HTTP", True)


@pytest.fixture
def receiver(allow_local):
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
    server.thread.join(5)


@pytest.fixture
def shop(create_tenant):
    return create_tenant(slug="hooka")


def add_endpoint(client, url, events):
    """Add an endpoint in the console; returns (page, secret shown once)."""
    page = client.submit("/admin/webhooks", {"url": url, "events": list(events)})
    match = SECRET_RE.search(page.get_data(as_text=True))
    return page, match.group(1) if match else None


def verify(secret: str, request: dict) -> bool:
    """What a receiver does (the console's and the module's instructions)."""
    parts = dict(item.split("=", 1) for item in request["headers"]["X-Kameng-Signature"].split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + request["body"],
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300


def deliveries(in_app, shop) -> list[WebhookDelivery]:
    with in_app(shop) as session:
        rows = list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        session.expunge_all()
        return rows


def endpoint_of(in_app, shop) -> WebhookEndpoint:
    with in_app(shop) as session:
        endpoint = session.scalar(select(WebhookEndpoint).order_by(WebhookEndpoint.id.desc()))
        session.expunge(endpoint)
        return endpoint


def emit_one(in_app, shop, event="order.paid") -> int:
    with in_app(shop) as session:
        made = webhooks.emit(shop.id, event, {"order": "X-1"})
        session.commit()
        assert len(made) == 1
        return made[0].id


def deliver(in_app, pk):
    with in_app():
        return webhooks.deliver_webhook(pk)


# -- a purchase ---------------------------------------------------------------------------------


def test_a_purchase_sends_signed_order_events_to_subscribed_endpoints_only(
        receiver, shop, console, create_tenant, client_for, card_product, buy, pay_sandbox,
        in_app):
    page, secret = add_endpoint(console, receiver.url("/orders"),
                                ["order.paid", "order.delivered"])
    assert page.status_code == 200 and secret
    _, stock_secret = add_endpoint(console, receiver.url("/stock"), ["stock.low"])
    other = create_tenant(slug="hookb")
    other_console = client_for(other)
    other_console.login("owner@hookb.test", "owner-pass-1", path="/admin/login")
    _, other_secret = add_endpoint(other_console, receiver.url("/other"), list(
        webhooks.WEBHOOK_EVENTS))
    assert other_secret

    buyer = client_for(shop)
    order_page = pay_sandbox(buyer, buy(buyer, card_product(shop, codes=["W-1"])))
    assert order_page.status_code == 200

    sent = receiver.to("/orders")
    assert [r["headers"]["X-Kameng-Event"] for r in sent] == ["order.paid", "order.delivered"]
    stored = {d.delivery_id: d for d in deliveries(in_app, shop)}
    for request in sent:
        assert verify(secret, request)
        assert not verify(stock_secret, request)
        body = json.loads(request["body"])
        assert request["headers"]["Content-Type"] == "application/json"
        delivery = stored[request["headers"]["X-Kameng-Delivery"]]  # the stored delivery id
        assert body["id"] == delivery.delivery_id and body["event"] == delivery.event
        assert body["data"]["email"] == "buyer@example.test" and "W-1" not in str(body)
        assert (delivery.status, delivery.attempts, delivery.response_status) == (
            "delivered", 1, 200)
    assert len(stored) == 2  # nothing for the stock endpoint
    assert receiver.to("/stock") == [] and receiver.to("/other") == []
    assert deliveries(in_app, other) == []


# -- retries, failure, re-send --------------------------------------------------------------


def test_a_failing_receiver_is_retried_then_failed_and_staff_can_resend(
        receiver, shop, console, in_app):
    add_endpoint(console, receiver.url(), ["order.paid"])
    pk = emit_one(in_app, shop)
    receiver.status, receiver.answer = 500, b"\x00" + b"x" * 5000  # NUL: not in PG text
    limit = webhooks.max_attempts()
    for attempt in range(1, limit):
        with pytest.raises(webhooks.WebhookDeliveryFailed):
            deliver(in_app, pk)  # what the job's retries do
        (delivery,) = deliveries(in_app, shop)
        assert (delivery.status, delivery.attempts) == ("pending", attempt)
    assert deliver(in_app, pk) == "failed"  # the last retry: no exception, nothing to retry
    (delivery,) = deliveries(in_app, shop)
    assert (delivery.status, delivery.attempts, delivery.response_status) == (
        "failed", limit, 500)
    assert delivery.response_body == "\ufffd" + "x" * 2047  # 2 KB of the answer
    assert deliver(in_app, pk) == "failed" and len(receiver.requests) == limit  # not sent again

    page = console.get(f"/admin/webhooks/{delivery.endpoint_id}")
    assert "failed" in page.get_data(as_text=True) and "HTTP 500" in page.get_data(as_text=True)
    receiver.status, receiver.answer = 200, b"thanks"
    done = console.submit(f"/admin/webhooks/deliveries/{pk}/resend", {},
                          form_path=f"/admin/webhooks/{delivery.endpoint_id}",
                          follow_redirects=True)
    assert "delivered (HTTP 200)" in done.get_data(as_text=True)
    (delivery,) = deliveries(in_app, shop)
    assert (delivery.status, delivery.response_status, delivery.response_body) == (
        "delivered", 200, "thanks")
    assert len(receiver.requests) == limit + 1  # the re-send, once
    ids = {r["headers"]["X-Kameng-Delivery"] for r in receiver.requests}
    assert ids == {delivery.delivery_id}  # the same delivery id: a receiver can tell a repeat


def test_an_unreachable_receiver_counts_as_a_failed_attempt(allow_local, shop, console, in_app):
    receiver = Receiver()  # bound, then closed: nothing listens on its port
    url = receiver.url()
    receiver.server.server_close()
    add_endpoint(console, url, ["order.paid"])
    pk = emit_one(in_app, shop)
    with pytest.raises(webhooks.WebhookDeliveryFailed):
        deliver(in_app, pk)
    (delivery,) = deliveries(in_app, shop)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, None)
    assert "failed" in delivery.response_body


def test_a_receiver_that_closes_the_connection_gets_its_delivery(allow_local, shop, console,
                                                                 in_app):
    receiver = Receiver(protocol="HTTP/1.0")
    receiver.thread.start()
    try:
        add_endpoint(console, receiver.url(), ["order.paid"])
        pk = emit_one(in_app, shop)
        assert deliver(in_app, pk) == "delivered"
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        receiver.thread.join(5)


# -- SSRF --------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://169.254.169.254/latest/meta-data",
    "https://localhost/hook", "https://[::1]/hook", "http://93.184.216.34/hook",
    "https://user:pw@93.184.216.34/hook", "ftp://93.184.216.34/hook",
])
def test_urls_inside_the_network_or_not_https_are_refused_on_save(console, in_app, shop, url):
    page, secret = add_endpoint(console, url, ["order.paid"])
    assert page.status_code == 422 and secret is None
    assert 'class="field-error"' in page.get_data(as_text=True)
    with in_app(shop) as session:
        assert session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0


def test_an_address_inside_the_network_is_refused_at_delivery_time(
        receiver, app, shop, console, in_app, monkeypatch):
    add_endpoint(console, receiver.url(), ["order.paid"])  # allowed when it was saved
    monkeypatch.setitem(app.config, "UPSTREAM_ALLOW_PRIVATE", False)
    pk = emit_one(in_app, shop)
    assert deliver(in_app, pk) == "failed"  # at once: no exception, so no retry
    (delivery,) = deliveries(in_app, shop)
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert "inside the network" in delivery.response_body
    assert receiver.requests == []


def test_saving_an_unsafe_url_on_an_existing_endpoint_is_refused(receiver, app, shop, console,
                                                                 in_app, monkeypatch):
    add_endpoint(console, receiver.url(), ["order.paid"])
    endpoint = endpoint_of(in_app, shop)
    monkeypatch.setitem(app.config, "UPSTREAM_ALLOW_PRIVATE", False)
    page = console.submit(f"/admin/webhooks/{endpoint.id}",
                          {"url": "https://10.0.0.1/x", "events": ["order.paid"], "active": "y"})
    assert page.status_code == 422 and "inside the network" in page.get_data(as_text=True)
    assert endpoint_of(in_app, shop).url == receiver.url()


# -- stock.low ---------------------------------------------------------------------------------


def test_low_stock_sends_one_webhook_and_one_mail_until_stock_recovers(
        receiver, shop, console, in_app, card_product):
    from kameng.inventory.alerts import send_low_stock_alerts

    add_endpoint(console, receiver.url(), ["stock.low"])
    product_id = card_product(shop, codes=["S-1", "S-2"], low_stock_threshold=5)

    def run():
        with in_app():
            return send_low_stock_alerts()

    def counts():
        with in_app(shop) as session:
            return (session.scalar(select(func.count()).select_from(WebhookDelivery)),
                    session.scalar(select(func.count()).select_from(MailMessage)
                                   .where(MailMessage.kind == "stock.low")))

    assert run() == 1
    assert counts() == (1, 1)
    (delivery,) = deliveries(in_app, shop)
    assert delivery.event == "stock.low"
    assert delivery.payload["data"] == {"product": "Game card", "available": 2, "threshold": 5}
    assert run() == 0 and counts() == (1, 1)  # not again while stock stays low

    from kameng.audit.service import Actor
    from kameng.catalog.models import Product
    from kameng.inventory.service import import_codes

    with in_app(shop) as session:
        import_codes(session.get(Product, product_id), [f"R-{i}" for i in range(5)],
                     actor=Actor.system())
        session.commit()
    assert run() == 0 and counts() == (1, 1)  # recovered: the alert re-arms
    with in_app(shop) as session:
        session.get(Product, product_id).low_stock_threshold = 50
        session.commit()
    assert run() == 1 and counts() == (2, 2)


# -- the console -------------------------------------------------------------------------------


def test_webhook_pages_need_a_staff_login(shop, client_for):
    client = client_for(shop)
    for path in ("/admin/webhooks", "/admin/webhooks/1", "/admin/webhooks/deliveries/1"):
        page = client.get(path)
        assert page.status_code == 302 and "/admin/login" in page.location, path


def test_the_secret_is_shown_once_and_rotation_signs_with_the_new_one(receiver, shop, console,
                                                                      in_app):
    page, secret = add_endpoint(console, receiver.url(), ["order.delivered"])
    assert page.headers["Cache-Control"] == "no-store"
    endpoint = endpoint_of(in_app, shop)
    assert secret not in endpoint.secret  # stored encrypted
    detail = f"/admin/webhooks/{endpoint.id}"
    for path in ("/admin/webhooks", detail):
        text = console.get(path).get_data(as_text=True)
        assert secret not in text and not SECRET_RE.search(text)

    rotated = console.submit(f"{detail}/rotate", {}, form_path=detail)
    new_secret = SECRET_RE.search(rotated.get_data(as_text=True)).group(1)
    assert new_secret != secret and rotated.headers["Cache-Control"] == "no-store"
    assert new_secret not in console.get(detail).get_data(as_text=True)

    # "Send a test event" goes to the endpoint whatever it subscribed to, signed anew
    done = console.submit(f"{detail}/test", {}, form_path=detail, follow_redirects=True)
    assert "The test event delivered (HTTP 200)" in done.get_data(as_text=True)
    (request,) = receiver.requests
    assert verify(new_secret, request) and not verify(secret, request)
    assert json.loads(request["body"])["data"]["test"] is True
    # the delivery page shows the body sent and the answer, never a secret
    (delivery,) = deliveries(in_app, shop)
    text = console.get(f"/admin/webhooks/deliveries/{delivery.id}").get_data(as_text=True)
    assert delivery.delivery_id in text and new_secret not in text and secret not in text


def test_edit_turn_off_and_delete_an_endpoint(receiver, shop, console, in_app):
    page, _ = add_endpoint(console, receiver.url(), [])
    assert page.status_code == 422 and "at least one event" in page.get_data(as_text=True)
    add_endpoint(console, receiver.url(), ["order.paid"])
    endpoint = endpoint_of(in_app, shop)
    detail = f"/admin/webhooks/{endpoint.id}"
    console.submit(detail, {"url": receiver.url("/new"), "events": ["order.paid", "stock.low"]})
    changed = endpoint_of(in_app, shop)
    assert (changed.url, changed.events, changed.active) == (
        receiver.url("/new"), ["order.paid", "stock.low"], False)
    with in_app(shop) as session:  # an endpoint turned off gets nothing
        assert webhooks.emit(shop.id, "order.paid", {}) == []
        session.rollback()
    done = console.submit(f"{detail}/test", {}, form_path=detail, follow_redirects=True)
    assert "Turn the endpoint on" in done.get_data(as_text=True)

    console.submit(detail, {"url": receiver.url("/new"), "events": ["order.paid"], "active": "y"})
    emit_one(in_app, shop)
    console.submit(f"{detail}/delete", {}, form_path=detail)
    with in_app(shop) as session:
        assert session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
    assert console.get(detail).status_code == 404
