"""The Stripe gateway: Checkout Sessions, webhooks signed the way Stripe signs them, refunds.

Stripe itself is never called. localstripe (a stateful fake Stripe server, run on a loopback
port for the session) covers PaymentIntents, charges, refunds, the balance and its own signed
webhooks; it has no Checkout Sessions, so `FakeStripe` — a small HTTP server of ours — answers
/v1/checkout/sessions and passes every other /v1 call through to localstripe. The gateway is
pointed at it with STRIPE_API_BASE, exactly as it would be pointed at Stripe.
"""

from __future__ import annotations

import importlib.util
import json
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import stripe
from sqlalchemy import func, select

from kameng.audit.service import Actor
from kameng.catalog.service import create_product
from kameng.inventory.models import CardCode
from kameng.inventory.service import import_codes
from kameng.ledger.service import check_ledger
from kameng.orders.models import Order, OrderEvent
from kameng.orders.service import CheckoutRequest, checkout, order_link_token, refund_order
from kameng.payments.gateways.base import (
    GatewayError,
    IgnoredEvent,
    InvalidNotification,
    ReturnUrls,
)
from kameng.payments.gateways.stripe_gateway import (
    HANDLED_EVENTS,
    StripeGateway,
    check_currency,
    payment_method_types,
)
from kameng.payments.models import Payment, PaymentNotification, PlatformPaymentAccount
from kameng.payments.registry import (
    encrypt_credentials,
    gateway_for,
    save_credentials,
    shop_account,
)
from kameng.payments.service import start_payment
from kameng.tenants.models import Tenant
from kameng.workers.models import Outbox

SECRET_KEY = "sk_test_kameng_shop"
WEBHOOK_SECRET = "whsec_kameng_test_" + "b" * 24
OTHER_SECRET = "whsec_kameng_test_" + "c" * 24
HAS_LOCALSTRIPE = importlib.util.find_spec("localstripe") is not None
needs_localstripe = pytest.mark.skipif(
    not HAS_LOCALSTRIPE,
    reason="localstripe is not installed (it is in the `test` extra: pip install -e '.[test]')")


# -- localstripe and the fake Checkout Sessions API --------------------------------------------

# Runs localstripe on 127.0.0.1 only (its own launcher binds every interface) on a free port,
# printed first, and keeps its store in memory (it would write /tmp/localstripe.pickle).
LOCALSTRIPE = """
import socket
from aiohttp import web
from localstripe import resources
from localstripe.server import app
resources.Store.dump_to_disk = lambda self: None
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
web.run_app(app, sock=sock, print=None, access_log=None)
"""


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str | None]:
    if not HAS_LOCALSTRIPE:
        yield None
        return
    process = subprocess.Popen([sys.executable, "-c", LOCALSTRIPE], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        port = process.stdout.readline().strip()
        if not port.isdigit():
            pytest.fail("localstripe did not start")
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                requests.get(f"{url}/v1/balance", auth=(SECRET_KEY, ""), timeout=1).close()
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


@contextmanager
def stripe_client(base: str, key: str = SECRET_KEY) -> Iterator[stripe.StripeClient]:
    http = stripe.RequestsClient()
    try:
        yield stripe.StripeClient(key, base_addresses={"api": base}, http_client=http,
                                  max_network_retries=0)
    finally:
        http.close()


@dataclass
class Call:
    method: str
    path: str
    authorization: str
    idempotency_key: str | None
    form: dict


def _error(message: str) -> dict:
    return {"error": {"type": "invalid_request_error", "message": message}}


def _prefixed(form: dict, prefix: str) -> dict:
    start = prefix + "["
    return {key[len(start):-1]: value for key, value in form.items()
            if key.startswith(start) and "][" not in key[len(start):]}


class FakeStripe:
    """Stripe's Checkout Sessions endpoints (create, retrieve), kept in memory; the rest of /v1
    goes to localstripe. It records every call, and /hooks collects localstripe's webhooks."""

    def __init__(self, localstripe: str | None):
        self.localstripe = localstripe
        self.lock = threading.Lock()
        self.reset()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.handle(self, "GET")

            def do_POST(self):
                fake.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        self.sessions: dict[str, dict] = {}
        self.intent_metadata: dict[str, dict] = {}
        self.by_key: dict[str, str] = {}
        self.calls: list[Call] = []
        self.hooks: list[tuple[bytes, dict]] = []
        self.fail_next: tuple[int, str] | None = None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    @staticmethod
    def _send(handler, status: int, payload) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def handle(self, handler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = urlsplit(handler.path).path
        if path == "/hooks":
            self.hooks.append((body, dict(handler.headers)))
            return self._send(handler, 200, {"received": True})
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        authorization = handler.headers.get("Authorization", "")
        with self.lock:
            self.calls.append(Call(method, path, authorization,
                                   handler.headers.get("Idempotency-Key"), form))
            failure, self.fail_next = self.fail_next, None
        if not authorization.startswith("Bearer sk_"):
            return self._send(handler, 401, _error("Invalid API Key provided"))
        if failure:
            return self._send(handler, failure[0], _error(failure[1]))
        if path == "/v1/checkout/sessions" and method == "POST":
            return self._send(handler, 200, self.create_session(
                form, handler.headers.get("Idempotency-Key")))
        found = re.fullmatch(r"/v1/checkout/sessions/(\w+)", path)
        if found and method == "GET":
            session = self.sessions.get(found[1])
            if session is None:
                return self._send(handler, 404, _error(f"No such checkout.session: {found[1]}"))
            return self._send(handler, 200, session)
        if self.localstripe is None:
            return self._send(handler, 404, _error(f"Unrecognized request URL ({path})"))
        headers = {"Authorization": authorization,
                   "Content-Type": handler.headers.get("Content-Type",
                                                       "application/x-www-form-urlencoded")}
        with requests.request(method, self.localstripe + handler.path, data=body or None,
                              headers=headers, timeout=10) as answer:
            return self._send(handler, answer.status_code, answer.content)

    def create_session(self, form: dict, key: str | None) -> dict:
        with self.lock:
            if key and key in self.by_key:
                return self.sessions[self.by_key[key]]
            session_id = f"cs_test_{secrets.token_hex(12)}"
            session = {
                "id": session_id, "object": "checkout.session", "livemode": False,
                "url": f"https://checkout.stripe.test/c/pay/{session_id}",
                "mode": form.get("mode"), "client_reference_id": form.get("client_reference_id"),
                "customer_email": form.get("customer_email"),
                "amount_total": int(form["line_items[0][price_data][unit_amount]"])
                * int(form["line_items[0][quantity]"]),
                "currency": form["line_items[0][price_data][currency]"],
                "metadata": _prefixed(form, "metadata"),
                "payment_method_types": [v for k, v in form.items()
                                         if k.startswith("payment_method_types[")],
                "payment_status": "unpaid", "status": "open", "payment_intent": None,
                "expires_at": int(form["expires_at"]),
                "success_url": form.get("success_url"), "cancel_url": form.get("cancel_url"),
            }
            self.sessions[session_id] = session
            self.intent_metadata[session_id] = _prefixed(form, "payment_intent_data[metadata]")
            if key:
                self.by_key[key] = session_id
            return session

    def complete(self, session_id: str, *, card: str = "4242424242424242") -> dict:
        """The buyer pays on the Checkout page: with localstripe, a real PaymentIntent is
        created and confirmed with `card` (4000000000000341 is declined)."""
        session = self.sessions[session_id]
        if self.localstripe is None:
            session.update(payment_intent=f"pi_fake_{secrets.token_hex(8)}",
                           payment_status="paid", status="complete")
            return session
        with stripe_client(self.localstripe) as client:
            method = client.v1.payment_methods.create({"type": "card", "card": {
                "number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
            intent = client.v1.payment_intents.create({
                "amount": session["amount_total"], "currency": session["currency"],
                "payment_method": method.id, "metadata": self.intent_metadata[session_id]})
            with suppress(stripe.StripeError):  # declined: the intent stays unpaid
                client.v1.payment_intents.confirm(intent.id)
            paid = client.v1.payment_intents.retrieve(intent.id).status == "succeeded"
        session.update(payment_intent=intent.id, payment_status="paid" if paid else "unpaid",
                       status="complete" if paid else "open")
        return session


@pytest.fixture(scope="session")
def fake_stripe_server(localstripe_url) -> Iterator[FakeStripe]:
    fake = FakeStripe(localstripe_url)
    yield fake
    fake.close()


@pytest.fixture
def fake_stripe(app, fake_stripe_server, monkeypatch) -> FakeStripe:
    """The fake, emptied, with the app's Stripe API base pointed at it for this test."""
    fake_stripe_server.reset()
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", fake_stripe_server.url)
    return fake_stripe_server


@pytest.fixture
def localstripe(localstripe_url) -> str:
    if localstripe_url is None:
        pytest.skip("localstripe is not installed (it is in the `test` extra)")
    return localstripe_url


# -- shops, orders and events --------------------------------------------------------------------


@pytest.fixture(autouse=True)
def ledger_adds_up(clean_state, in_app):
    """After every test the ledger balances (checked before the tables are emptied)."""
    yield
    with in_app():
        assert check_ledger() == []


@dataclass
class Shop:
    tenant: Tenant
    product_id: int
    codes: list[str]

    @property
    def host(self) -> str:
        return f"{self.tenant.slug}.localhost"


@dataclass
class Bought:
    shop: Shop
    order_id: int
    number: str
    token: str
    reference: str
    amount: int
    currency: str
    session_id: str | None
    url: str


@pytest.fixture
def stripe_shop(create_tenant, in_app):
    """stripe_shop(secret_key=…, webhook_secret=…, methods="") -> a shop selling one own card
    product (price 10.00, three codes) with Stripe enabled on its own account."""

    def make(*, secret_key=SECRET_KEY, webhook_secret=WEBHOOK_SECRET, methods="",
             price=1000) -> Shop:
        tenant = create_tenant()
        codes = [f"KM-{secrets.token_hex(5).upper()}" for _ in range(3)]
        with in_app(tenant) as session:
            if secret_key:
                save_credentials(tenant, "stripe", {
                    "secret_key": secret_key, "webhook_secret": webhook_secret,
                    "publishable_key": "pk_test_kameng", "payment_methods": methods,
                }, enabled=True)
            product = create_product(tenant, name="Game card 100", price=price,
                                     delivery_kind="card")
            import_codes(product, codes, actor=Actor.system())
            session.commit()
            return Shop(tenant, product.id, codes)

    return make


_buyers = count(1)


@pytest.fixture
def place_order(app, in_app):
    """place_order(shop, method="stripe") -> a pending order whose payment has been started."""

    def place(shop: Shop, method: str = "stripe") -> Bought:
        with in_app(shop.tenant) as session, app.test_request_context(
                "/", base_url=f"http://{shop.host}"):
            tenant = session.get(Tenant, shop.tenant.id)
            placed = checkout(tenant, CheckoutRequest(
                product_id=shop.product_id, qty=1, email=f"buyer{next(_buyers)}@buyers.test",
                payment_method=method, ip="1.2.3.4"))
            back = f"http://{shop.host}/order/{placed.token}"
            payment, start = start_payment(tenant, placed.order,
                                           ReturnUrls(success=back, cancel=back, notify=""))
            session.commit()
            return Bought(shop, placed.order.id, placed.order.number, placed.token,
                          payment.reference, payment.amount, payment.currency,
                          payment.external_id, start.url)

    return place


def session_event(bought: Bought, *, type="checkout.session.completed", payment_status="paid",
                  amount=None, currency=None, tenant_id=None, reference=None,
                  metadata=None, event_id=None) -> dict:
    """A Stripe event about `bought`'s Checkout Session, shaped like Stripe's."""
    reference = reference or bought.reference
    if metadata is None:
        metadata = {"tenant_id": str(tenant_id or bought.shop.tenant.id),
                    "order_number": bought.number, "payment_reference": reference}
    return {
        "id": event_id or f"evt_{secrets.token_hex(12)}", "object": "event", "type": type,
        "api_version": "2026-01-28.clover", "created": int(time.time()), "livemode": False,
        "data": {"object": {
            "id": bought.session_id or "cs_test_unknown", "object": "checkout.session",
            "mode": "payment", "client_reference_id": reference,
            "amount_total": bought.amount if amount is None else amount,
            "currency": (currency or bought.currency).lower(),
            "payment_status": payment_status,
            "status": "complete" if payment_status == "paid" else "open",
            "payment_intent": "pi_" + secrets.token_hex(8), "metadata": metadata,
        }},
    }


def signed(event: dict | bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
           ) -> tuple[bytes, dict]:
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp)
    return body, {"Stripe-Signature": header, "Content-Type": "application/json"}


@pytest.fixture
def notify(client_for):
    """notify(host, event, secret=…, timestamp=None, path=…) -> the response to a webhook."""

    def post(host: str, event, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None,
             path: str = "/pay/notify/stripe"):
        body, headers = signed(event, secret, timestamp)
        return client_for(host).post(path, data=body, headers=headers)

    return post


@pytest.fixture
def state(in_app):
    """state(bought) -> what the database says about the order and its payment."""

    def read(bought: Bought) -> dict:
        with in_app(bought.shop.tenant) as session:
            order = session.get(Order, bought.order_id)
            payment = session.scalar(select(Payment).where(
                Payment.reference == bought.reference))
            values = {
                "order": order.status, "payment": payment.status,
                "paid_transitions": session.scalar(select(func.count()).select_from(OrderEvent)
                                                   .where(OrderEvent.order_id == order.id,
                                                          OrderEvent.to_status == "paid")),
                "sold": session.scalar(select(func.count()).select_from(CardCode).where(
                    CardCode.order_id == order.id, CardCode.status == "sold")),
            }
        with in_app() as session:
            values["notifications"] = session.scalar(
                select(func.count()).select_from(PaymentNotification))
            values["outbox"] = session.scalar(select(func.count()).select_from(Outbox).where(
                Outbox.order_id == bought.order_id))
        return values

    return read


UNPAID = {"order": "pending", "payment": "created", "paid_transitions": 0, "sold": 0,
          "notifications": 0, "outbox": 0}


def _gateway(credentials: dict | None = None) -> StripeGateway:
    return StripeGateway(credentials or {"secret_key": SECRET_KEY,
                                         "webhook_secret": WEBHOOK_SECRET},
                         owner="shop", tenant_id=1)


# -- the method table, currencies and credentials ------------------------------------------


def test_payment_methods_follow_stripes_currency_table():
    assert payment_method_types("CNY") == ["card", "alipay", "wechat_pay"]
    assert payment_method_types("usd") == ["card", "alipay", "wechat_pay"]
    assert payment_method_types("MYR") == ["card", "alipay"]  # Alipay, not WeChat Pay
    assert payment_method_types("NZD") == ["card", "alipay"]
    assert payment_method_types("CHF") == ["card", "wechat_pay"]  # WeChat Pay, not Alipay
    assert payment_method_types("SEK") == ["card", "wechat_pay"]
    assert payment_method_types("KRW") == ["card"]
    # A shop may offer fewer; unknown names are dropped; at least cards remain.
    assert payment_method_types("CNY", "card, alipay") == ["card", "alipay"]
    assert payment_method_types("CNY", "wechat_pay") == ["wechat_pay"]
    assert payment_method_types("KRW", "alipay paypal") == ["card"]


def test_currencies_whose_stripe_unit_differs_from_ours_are_refused():
    for same in ("CNY", "USD", "EUR", "JPY", "KRW"):
        check_currency(same)  # 2 and 2 decimals, or 0 and 0 (JPY, KRW)
    for different in ("UGX", "KWD", "BHD"):  # Stripe 0 / 3 decimals, Kameng 2
        with pytest.raises(GatewayError, match=different):
            check_currency(different)


def test_credentials_and_empty_secrets(app):
    fields = {f.name: f for f in StripeGateway.credential_fields}
    assert fields["secret_key"].secret and fields["secret_key"].required
    assert fields["webhook_secret"].secret and fields["webhook_secret"].required
    assert not fields["publishable_key"].secret and not fields["publishable_key"].required
    empty = StripeGateway({"secret_key": "  ", "webhook_secret": ""}, owner="shop", tenant_id=1)
    with app.app_context():
        with pytest.raises(InvalidNotification, match="secret_key"):
            empty.test_connection()
        body, headers = signed({"id": "evt_1"}, secret="")
        with pytest.raises(InvalidNotification, match="webhook_secret"):
            empty.verify_notification(body, headers, {})


def test_enabling_stripe_needs_both_secrets(create_tenant, in_app):
    from kameng.errors import DomainError

    tenant = create_tenant()
    with in_app(tenant), pytest.raises(DomainError, match="Webhook signing secret"):
        save_credentials(tenant, "stripe", {"secret_key": SECRET_KEY}, enabled=True)


# -- starting a payment -------------------------------------------------------------------------


def test_checkout_redirects_the_buyer_to_a_stripe_checkout_session(
        stripe_shop, client_for, fake_stripe, in_app):
    shop = stripe_shop()
    client = client_for(shop.tenant)
    product = f"/product/{shop.product_id}"
    assert "Stripe" in client.get(product).get_data(as_text=True)
    placed = client.checkout(product, {"qty": "1", "email": "ann@buyers.test",
                                       "payment_method": "stripe"})
    # Straight on to Stripe: checkout starts the payment itself.
    assert placed.status_code == 302
    [call] = fake_stripe.calls_to("/v1/checkout/sessions")
    session = next(iter(fake_stripe.sessions.values()))
    assert placed.location == session["url"]

    with in_app(shop.tenant) as db_session:
        payment = db_session.scalar(select(Payment))
        order = db_session.get(Order, payment.order_id)
        assert payment.gateway == "stripe" and payment.owner == "shop"
        assert payment.external_id == session["id"]
        form = call.form
        assert form["mode"] == "payment"
        assert form["client_reference_id"] == payment.reference
        assert form["metadata[tenant_id]"] == str(shop.tenant.id)
        assert form["metadata[order_number]"] == order.number
        assert form["metadata[payment_reference]"] == payment.reference
        assert form["payment_intent_data[metadata][payment_reference]"] == payment.reference
        assert form["payment_intent_data[metadata][tenant_id]"] == str(shop.tenant.id)
        assert form["line_items[0][price_data][unit_amount]"] == "1000" == str(payment.amount)
        assert form["line_items[0][price_data][currency]"] == "cny"
        assert form["line_items[0][quantity]"] == "1"
        assert session["payment_method_types"] == ["card", "alipay", "wechat_pay"]
        assert form["payment_method_options[wechat_pay][client]"] == "web"
        assert form["customer_email"] == "ann@buyers.test"
        token = order_link_token(order)  # the buyer comes back to the order's page
        assert form["success_url"] == f"http://{shop.host}/order/{token}"
        assert form["cancel_url"] == f"http://{shop.host}/order/{token}"
        assert int(form["expires_at"]) >= time.time() + 30 * 60
        assert call.idempotency_key == f"kameng-checkout-{payment.reference}"
        assert call.authorization == f"Bearer {SECRET_KEY}"
    assert stripe.api_key is None  # the global key is never set


def test_each_shop_calls_stripe_with_its_own_key(stripe_shop, place_order, fake_stripe):
    first = place_order(stripe_shop(secret_key="sk_test_first_shop"))
    second = place_order(stripe_shop(secret_key="sk_test_second_shop"))
    calls = fake_stripe.calls_to("/v1/checkout/sessions")
    assert [c.authorization for c in calls] == ["Bearer sk_test_first_shop",
                                                "Bearer sk_test_second_shop"]
    assert [c.form["metadata[tenant_id]"] for c in calls] == [
        str(first.shop.tenant.id), str(second.shop.tenant.id)]
    assert first.session_id != second.session_id
    assert stripe.api_key is None


def test_amounts_pass_in_minor_units_and_methods_follow_the_currency(app, fake_stripe):
    """JPY is zero-decimal for Stripe and for Kameng: ¥500 is 500 on both sides."""
    order = SimpleNamespace(number="2601010001", email="b@buyers.test", lines=[
        SimpleNamespace(title="Point card", qty=2)],
        expires_at=datetime.now(UTC) + timedelta(minutes=15))
    urls = ReturnUrls(success="http://s.localhost/ok", cancel="http://s.localhost/no", notify="")
    yen = SimpleNamespace(reference="R-1", tenant_id=7, amount=500, currency="JPY")
    dollars = SimpleNamespace(reference="R-2", tenant_id=7, amount=1999, currency="USD")
    with app.app_context():
        _gateway().start(order, yen, urls)
        only_cards = {"secret_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET,
                      "payment_methods": "card"}
        start = _gateway(only_cards).start(order, dollars, urls)
        with pytest.raises(GatewayError, match="UGX"):
            _gateway().start(order, SimpleNamespace(reference="R-3", tenant_id=7,
                                                       amount=500, currency="UGX"), urls)
    first, second = fake_stripe.calls_to("/v1/checkout/sessions")
    assert first.form["line_items[0][price_data][unit_amount]"] == "500"
    assert first.form["line_items[0][price_data][currency]"] == "jpy"
    assert first.form["line_items[0][price_data][product_data][name]"] == "Point card × 2"
    assert first.form["payment_method_options[wechat_pay][client]"] == "web"
    assert second.form["line_items[0][price_data][unit_amount]"] == "1999"
    assert [v for k, v in second.form.items() if k.startswith("payment_method_types")] == [
        "card"]
    assert "payment_method_options[wechat_pay][client]" not in second.form
    assert start.kind == "redirect" and start.external_id.startswith("cs_test_")


def test_a_retried_start_reuses_the_checkout_session(app, fake_stripe):
    order = SimpleNamespace(number="2601010002", email="b@buyers.test", lines=[],
                            expires_at=datetime.now(UTC) + timedelta(minutes=15))
    payment = SimpleNamespace(reference="R-9", tenant_id=7, amount=100, currency="CNY")
    urls = ReturnUrls(success="http://s.localhost/ok", cancel="http://s.localhost/ok", notify="")
    with app.app_context():
        first = _gateway().start(order, payment, urls)
        second = _gateway().start(order, payment, urls)
    assert first.external_id == second.external_id
    assert len(fake_stripe.sessions) == 1


def test_a_stripe_error_on_start_is_shown_and_the_order_stays_payable(
        stripe_shop, client_for, fake_stripe, in_app):
    shop = stripe_shop()
    client = client_for(shop.tenant)
    product = f"/product/{shop.product_id}"
    fake_stripe.fail_next = (400, "The payment method type alipay is invalid.")
    placed = client.checkout(product, {"qty": "1", "email": "bo@buyers.test",
                                       "payment_method": "stripe"})
    # The order is placed; the buyer lands on its page with Stripe's reason, and can pay.
    assert placed.status_code == 302 and urlsplit(placed.location).path.startswith("/order/")
    order_page = urlsplit(placed.location).path
    page = client.get(order_page).get_data(as_text=True)
    assert "alipay is invalid" in page
    with in_app(shop.tenant) as session:
        assert session.scalar(select(Order.status)) == "pending"
        assert session.scalar(select(func.count()).select_from(Payment)) == 0
    paying = client.get(f"{order_page}/pay")
    assert paying.status_code == 302
    assert paying.location == next(iter(fake_stripe.sessions.values()))["url"]


def test_query_reads_the_checkout_session(stripe_shop, place_order, fake_stripe, in_app):
    bought = place_order(stripe_shop())
    with in_app(bought.shop.tenant) as session:
        payment = session.scalar(select(Payment))
        gateway = gateway_for(session.get(Tenant, bought.shop.tenant.id), "stripe", "shop")
        pending = gateway.query(payment)
        fake_stripe.complete(bought.session_id)
        paid = gateway.query(payment)
        fake_stripe.sessions[bought.session_id].update(payment_status="unpaid",
                                                       status="expired")
        expired = gateway.query(payment)
        payment.external_id = None
        assert gateway.query(payment) is None
        session.rollback()
    assert pending.status == "pending"
    assert (paid.status, paid.amount, paid.currency, paid.reference, paid.tenant_id,
            paid.external_id) == ("succeeded", 1000, "CNY", bought.reference,
                                  bought.shop.tenant.id, bought.session_id)
    assert expired.status == "failed"
    assert len({pending.event_id, paid.event_id, expired.event_id}) == 3


# -- webhooks -----------------------------------------------------------------------------------


def test_a_signed_checkout_completed_event_pays_and_delivers(
        stripe_shop, place_order, notify, state, client_for, fake_stripe):
    bought = place_order(stripe_shop())
    assert state(bought) == UNPAID
    response = notify(bought.shop.host, session_event(bought))
    assert response.status_code == 200 and response.get_data(as_text=True) == "ok"
    assert state(bought) == {"order": "delivered", "payment": "succeeded",
                             "paid_transitions": 1, "sold": 1, "notifications": 1,
                             "outbox": 1}
    page = client_for(bought.shop.tenant).get(f"/order/{bought.token}").get_data(as_text=True)
    assert sum(code in page for code in bought.shop.codes) == 1


def test_a_forged_or_tampered_event_changes_nothing(
        stripe_shop, place_order, notify, state, client_for, fake_stripe):
    bought = place_order(stripe_shop())
    assert notify(bought.shop.host, session_event(bought), secret=OTHER_SECRET).status_code \
        == 400
    body, headers = signed(session_event(bought, amount=1))
    tampered = body.replace(b'"amount_total": 1,', f'"amount_total": {bought.amount},'.encode())
    assert tampered != body
    client = client_for(bought.shop.tenant)
    assert client.post("/pay/notify/stripe", data=tampered, headers=headers).status_code == 400
    unsigned = client.post("/pay/notify/stripe", data=body,
                           headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 400
    garbage = client.post("/pay/notify/stripe", data=b"\xff\xfe",
                          headers={"Stripe-Signature": "t=1,v1=00"})
    assert garbage.status_code == 400
    assert state(bought) == UNPAID


def test_an_empty_webhook_secret_is_refused(stripe_shop, place_order, notify, state, in_app,
                                            fake_stripe):
    bought = place_order(stripe_shop())
    with in_app(bought.shop.tenant) as session:
        account = shop_account("stripe")
        account.credentials = encrypt_credentials({"secret_key": SECRET_KEY,
                                                   "webhook_secret": ""})
        session.commit()
    response = notify(bought.shop.host, session_event(bought), secret="")
    assert response.status_code == 400
    assert "webhook_secret" in response.get_data(as_text=True)
    assert state(bought) == UNPAID


def test_a_stale_or_future_signature_is_refused(app, stripe_shop, place_order, notify, state,
                                                fake_stripe):
    bought = place_order(stripe_shop())
    tolerance = app.config["NOTIFY_TOLERANCE"]
    stale = notify(bought.shop.host, session_event(bought),
                   timestamp=int(time.time()) - tolerance - 5)
    assert stale.status_code == 400 and "tolerance" in stale.get_data(as_text=True)
    future = notify(bought.shop.host, session_event(bought),
                    timestamp=int(time.time()) + tolerance + 60)
    assert future.status_code == 400
    assert state(bought) == UNPAID
    # Within the tolerance it is fine.
    assert notify(bought.shop.host, session_event(bought),
                  timestamp=int(time.time()) - tolerance + 30).status_code == 200


def test_a_wrong_amount_or_currency_is_refused(stripe_shop, place_order, notify, state,
                                               fake_stripe):
    bought = place_order(stripe_shop())
    for event in (session_event(bought, amount=bought.amount - 1),
                  session_event(bought, amount=bought.amount + 1),
                  session_event(bought, amount=float(bought.amount)),
                  session_event(bought, amount=str(bought.amount)),
                  session_event(bought, currency="usd")):
        assert notify(bought.shop.host, event).status_code == 400
    assert state(bought) == UNPAID


def test_an_event_naming_another_shop_or_its_payment_is_refused(
        stripe_shop, place_order, notify, state, fake_stripe):
    mine = place_order(stripe_shop())
    theirs = place_order(stripe_shop(webhook_secret=OTHER_SECRET))
    # My secret, my URL, but the metadata names the other shop.
    assert notify(mine.shop.host, session_event(mine, tenant_id=theirs.shop.tenant.id)
                  ).status_code == 400
    # My secret, my URL, my shop in the metadata, but the other shop's payment.
    assert notify(mine.shop.host, session_event(mine, reference=theirs.reference)
                  ).status_code == 400
    # Their genuine event sent to my URL: my secret does not verify it.
    assert notify(mine.shop.host, session_event(theirs), secret=OTHER_SECRET).status_code == 400
    # client_reference_id and metadata disagreeing.
    event = session_event(mine)
    event["data"]["object"]["metadata"]["payment_reference"] = theirs.reference
    assert notify(mine.shop.host, event).status_code == 400
    # Metadata without the shop.
    assert notify(mine.shop.host, session_event(mine, metadata={
        "payment_reference": mine.reference})).status_code == 400
    assert state(mine) == UNPAID
    assert state(theirs) == UNPAID


def test_a_stripe_event_for_a_sandbox_payment_is_refused(
        stripe_shop, place_order, notify, state, fake_stripe):
    shop = stripe_shop()
    sandbox = place_order(shop, method="sandbox")
    response = notify(shop.host, session_event(sandbox))
    assert response.status_code == 400
    assert "sandbox" in response.get_data(as_text=True)
    assert state(sandbox) == UNPAID


def test_the_same_event_five_times_pays_and_delivers_once(
        stripe_shop, place_order, notify, state, fake_stripe):
    bought = place_order(stripe_shop())
    event = session_event(bought)
    for _ in range(5):
        response = notify(bought.shop.host, event)
        assert response.status_code == 200
    assert state(bought) == {"order": "delivered", "payment": "succeeded",
                             "paid_transitions": 1, "sold": 1, "notifications": 1,
                             "outbox": 1}


def test_an_unpaid_completed_session_waits_for_the_async_payment(
        stripe_shop, place_order, notify, state, fake_stripe):
    bought = place_order(stripe_shop())
    response = notify(bought.shop.host, session_event(bought, payment_status="unpaid"))
    assert response.status_code == 200
    assert state(bought) | {"notifications": None} == UNPAID | {"notifications": None}
    notify(bought.shop.host, session_event(
        bought, type="checkout.session.async_payment_succeeded"))
    assert state(bought)["order"] == "delivered"


def test_a_failed_async_payment_fails_the_payment_only(
        stripe_shop, place_order, notify, state, fake_stripe):
    bought = place_order(stripe_shop())
    response = notify(bought.shop.host, session_event(
        bought, type="checkout.session.async_payment_failed", payment_status="unpaid"))
    assert response.status_code == 200
    assert state(bought) | {"notifications": None} == UNPAID | {
        "payment": "failed", "notifications": None}


def test_unknown_events_and_foreign_sessions_change_nothing(
        app, stripe_shop, place_order, notify, state, fake_stripe):
    bought = place_order(stripe_shop())
    unknown = session_event(bought, type="customer.created")
    foreign = session_event(bought, metadata={})
    foreign["data"]["object"]["client_reference_id"] = None
    with app.app_context():
        gateway = _gateway()
        for event in (unknown, foreign):
            with pytest.raises(IgnoredEvent):
                gateway.verify_notification(*signed(event), {})
    for event in (unknown, foreign):  # acknowledged, so that Stripe stops resending them
        response = notify(bought.shop.host, event)
        assert response.status_code == 200 and response.get_data(as_text=True) == "ok"
    assert state(bought) == UNPAID


def test_the_platform_account_collects_for_a_shop_without_its_own(
        stripe_shop, place_order, notify, state, in_app, hosts, fake_stripe):
    shop = stripe_shop(secret_key="")  # no Stripe account of its own
    with in_app() as session:
        session.add(PlatformPaymentAccount(gateway="stripe", enabled=True, credentials=(
            encrypt_credentials({"secret_key": "sk_test_platform",
                                 "webhook_secret": OTHER_SECRET}))))
        session.commit()
    bought = place_order(shop)
    [call] = fake_stripe.calls_to("/v1/checkout/sessions")
    assert call.authorization == "Bearer sk_test_platform"
    # The shop's notify URL belongs to the shop's own account: refused.
    assert notify(shop.host, session_event(bought), secret=OTHER_SECRET).status_code == 400
    response = notify(hosts.landing, session_event(bought), secret=OTHER_SECRET,
                      path="/pay/platform/notify/stripe")
    assert response.status_code == 200
    assert state(bought)["order"] == "delivered"


# -- refunds, the connection check and localstripe ------------------------------------------


@needs_localstripe
def test_refunding_an_order_refunds_its_payment_intent_in_localstripe(
        stripe_shop, place_order, notify, state, in_app, localstripe, fake_stripe):
    bought = place_order(stripe_shop())
    session = fake_stripe.complete(bought.session_id)
    assert notify(bought.shop.host, session_event(bought)).status_code == 200
    with in_app(bought.shop.tenant) as db_session:
        refund_order(db_session.get(Order, bought.order_id), to="gateway", actor="owner",
                     reason="test")
        db_session.commit()
    assert state(bought)["order"] == "refunded" and state(bought)["payment"] == "refunded"
    [call] = fake_stripe.calls_to("/v1/refunds")
    assert call.form["payment_intent"] == session["payment_intent"]
    assert call.form["amount"] == str(bought.amount)
    assert call.idempotency_key == f"kameng-refund-{bought.reference}-{bought.amount}"
    with stripe_client(localstripe) as client:
        intent = client.v1.payment_intents.retrieve(session["payment_intent"])
        charge = client.v1.charges.retrieve(intent.latest_charge["id"])
    assert charge.refunded and charge.amount_refunded == bought.amount

    # Stripe then sends charge.refunded; localstripe's charge lacks the PaymentIntent's
    # metadata, so the gateway reads it from the PaymentIntent.
    event = {"id": f"evt_{secrets.token_hex(12)}", "object": "event", "type": "charge.refunded",
             "created": int(time.time()), "data": {"object": charge.to_dict()}}
    assert not event["data"]["object"].get("metadata")
    response = notify(bought.shop.host, event)
    assert response.status_code == 200
    with in_app() as db_session:
        recorded = db_session.scalar(select(PaymentNotification).where(
            PaymentNotification.event_id == event["id"]))
        assert recorded.status == "refunded"


@needs_localstripe
def test_a_refund_stripe_refuses_raises_its_message(
        app, stripe_shop, place_order, in_app, localstripe, fake_stripe):
    declined = place_order(stripe_shop())
    fake_stripe.complete(declined.session_id, card="4000000000000341")
    unpaid = place_order(stripe_shop())
    with in_app(declined.shop.tenant) as session:
        payment = session.scalar(select(Payment))
        gateway = gateway_for(session.get(Tenant, declined.shop.tenant.id), "stripe", "shop")
        with pytest.raises(GatewayError, match="Cannot refund a failed payment"):
            gateway.refund(payment, payment.amount)
    with in_app(unpaid.shop.tenant) as session:
        payment = session.scalar(select(Payment))
        gateway = gateway_for(session.get(Tenant, unpaid.shop.tenant.id), "stripe", "shop")
        with pytest.raises(GatewayError, match="no payment"):
            gateway.refund(payment, payment.amount)


@needs_localstripe
def test_the_connection_check_uses_the_secret_key(app, monkeypatch, localstripe):
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", localstripe)
    with app.test_request_context("/", base_url="http://shop1.localhost"):
        message = _gateway().test_connection()
        assert "test mode" in message
        assert "http://shop1.localhost/pay/notify/stripe" in message
        assert all(event in message for event in HANDLED_EVENTS)
        with pytest.raises(GatewayError, match=r"Invalid API Key|Unauthorized"):
            _gateway({"secret_key": "nope", "webhook_secret": WEBHOOK_SECRET}
                     ).test_connection()
        platform = StripeGateway({"secret_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET},
                                 owner="platform", tenant_id=None)
        assert "to http://localhost/pay/platform/notify/stripe." in platform.test_connection()
        with pytest.raises(GatewayError, match="publishable key"):
            _gateway({"secret_key": "pk_test_x", "webhook_secret": WEBHOOK_SECRET}
                     ).test_connection()
        with pytest.raises(GatewayError, match="whsec_"):
            _gateway({"secret_key": SECRET_KEY, "webhook_secret": "secret"}
                     ).test_connection()


@needs_localstripe
def test_localstripes_signed_webhooks_verify(app, localstripe, fake_stripe):
    """Webhooks signed by another implementation of Stripe's scheme verify here too (the event
    type, payment_intent.succeeded, is one Kameng ignores)."""
    with stripe_client(localstripe) as client:
        requests.post(f"{localstripe}/_config/webhooks/kameng", timeout=5, data={
            "url": f"{fake_stripe.url}/hooks", "secret": WEBHOOK_SECRET,
            "events[0]": "payment_intent.succeeded"}).raise_for_status()
        method = client.v1.payment_methods.create({"type": "card", "card": {
            "number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
        client.v1.payment_intents.create({"amount": 1234, "currency": "cny",
                                          "payment_method": method.id, "confirm": True})
    deadline = time.time() + 10
    while not fake_stripe.hooks and time.time() < deadline:
        time.sleep(0.1)
    assert fake_stripe.hooks, "localstripe sent no webhook"
    body, headers = fake_stripe.hooks[0]
    with app.app_context():
        with pytest.raises(IgnoredEvent, match=r"payment_intent\.succeeded"):
            _gateway().verify_notification(body, headers, {})
        with pytest.raises(InvalidNotification) as refused:
            _gateway({"secret_key": SECRET_KEY, "webhook_secret": OTHER_SECRET}
                     ).verify_notification(body, headers, {})
        assert not isinstance(refused.value, IgnoredEvent)
