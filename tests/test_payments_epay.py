"""The EPay (易支付) gateway: signed submit URL, notifications (valid, forged, replayed, for
another merchant, shop or gateway), query, refund, mapi and connection checks against a fake
EPay server on a loopback port, and the transport's limits (HTTPS, redirects, size, timeouts).
The ledger is checked after every test by conftest's `clean_state`."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from sqlalchemy import func, select

from kameng.orders.models import Order, OrderEvent
from kameng.orders.service import order_by_token, refund_order
from kameng.payments.gateways.base import GatewayError
from kameng.payments.gateways.epay import EpayGateway, minor_units, sign
from kameng.payments.models import Payment, PaymentNotification, PlatformPaymentAccount
from kameng.payments.registry import (
    encrypt_credentials,
    gateway_for,
    save_credentials,
    shop_account,
)

from .conftest import order_token

PID = "1001"
KEY = "secretkey"


def md5_sign(params: dict, key: str = KEY) -> str:
    """The EPay signature, written out here independently of the gateway's code."""
    pairs = sorted((k, v) for k, v in params.items() if k not in ("sign", "sign_type") and v)
    message = "&".join(f"{k}={v}" for k, v in pairs) + key
    return hashlib.md5(message.encode()).hexdigest()  # noqa: S324 - the protocol's hash


def notification(reference: str, *, money="10.00", trade_no="2025010112000001",
                 status="TRADE_SUCCESS", pid=PID, key=KEY) -> dict:
    """What an EPay server posts to the notify URL once the buyer paid."""
    params = {"pid": pid, "trade_no": trade_no, "out_trade_no": reference, "type": "alipay",
              "name": "Game card", "money": money, "trade_status": status}
    return {**params, "sign": md5_sign(params, key), "sign_type": "MD5"}


# -- a fake EPay server ---------------------------------------------------------------------


class FakeEpay:
    """The EPay server's api.php (act=order, act=refund) and mapi.php, plus misbehaviours
    under /redirecting, /big, /html and /slow."""

    def __init__(self):
        self.orders: dict[str, dict] = {}  # out_trade_no -> {trade_no, money, status}
        self.refunds: list[dict] = []
        self.refund_error = ""  # when set, refunds are refused with this message
        self.mapi_calls: list[dict] = []
        self.qrcode = "https://qr.alipay.test/fake"  # what mapi.php hands out
        handler = type("Handler", (_Handler,), {"epay": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.handle_error = lambda request, address: None  # clients that gave up
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def paid(self, reference: str, trade_no="2025010112000001", money="10.00", status=1):
        self.orders[reference] = {"trade_no": trade_no, "money": money, "status": status}

    def answer(self, path: str, query: dict, form: dict) -> tuple[int, dict, bytes]:
        if path.startswith("/redirecting"):
            return 302, {"Location": "https://elsewhere.test/"}, b""
        if path.startswith("/big"):
            return 200, {}, b"{" + b" " * 2_000_000 + b"}"
        if path.startswith("/html"):
            return 200, {"Content-Type": "text/html"}, b"<html>maintenance</html>"
        if path.startswith("/slow"):
            time.sleep(1)
            return 200, {}, b"{}"
        if path == "/mapi.php":
            return 200, {}, self._mapi(form)
        if path == "/api.php":
            return 200, {}, self._api({**query, **form})
        return 404, {}, b"not found"

    def _credentials_refused(self, params: dict) -> bytes | None:
        if params.get("pid") != PID:
            return _json({"code": -3, "msg": "商户ID不存在"})
        if params.get("key") != KEY:
            return _json({"code": -3, "msg": "KEY校验失败"})
        return None

    def _find(self, params: dict) -> tuple[str, dict] | tuple[None, None]:
        for reference, row in self.orders.items():
            if params.get("out_trade_no") == reference or params.get("trade_no") == row["trade_no"]:
                return reference, row
        return None, None

    def _api(self, params: dict) -> bytes:
        refused = self._credentials_refused(params)
        if refused:
            return refused
        reference, row = self._find(params)
        if row is None:
            return _json({"code": -1, "msg": "订单号不存在"})
        if params.get("act") == "order":
            return _json({"code": 1, "msg": "succ", "trade_no": row["trade_no"],
                          "out_trade_no": reference, "type": "alipay", "pid": int(PID),
                          "name": "Game card", "money": row["money"], "status": row["status"]})
        if params.get("act") == "refund":
            if self.refund_error:
                return _json({"code": -1, "msg": self.refund_error})
            if row["status"] != 1:
                return _json({"code": -1, "msg": "订单未支付或已退款"})
            row["status"] = 2
            self.refunds.append(params)
            return _json({"code": 1, "msg": "退款成功"})
        return _json({"code": -4, "msg": "No Act"})

    def _mapi(self, form: dict) -> bytes:
        if form.get("sign") != md5_sign(form):
            return _json({"code": -1, "msg": "签名校验失败"})
        self.mapi_calls.append(form)
        return _json({"code": 1, "msg": "succ", "trade_no": "2025010199990001",
                      "qrcode": self.qrcode, "payurl": ""})


def _json(data: dict) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


class _Handler(BaseHTTPRequestHandler):
    epay: FakeEpay

    def _reply(self, form: dict) -> None:
        parts = urlsplit(self.path)
        status, headers, body = self.epay.answer(parts.path, dict(parse_qsl(parts.query)), form)
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._reply({})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self._reply(dict(parse_qsl(self.rfile.read(length).decode())))

    def log_message(self, *args):
        pass


@pytest.fixture
def epay_server():
    server = FakeEpay()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
    server.thread.join(5)


# -- shops, products, orders ----------------------------------------------------------------


@pytest.fixture
def epay_shop(create_tenant, in_app, epay_server):
    """epay_shop(**credentials) -> a shop taking EPay with its own merchant account."""

    def make(**credentials):
        shop = create_tenant()
        values = {"gateway_url": epay_server.url, "pid": PID, "key": KEY, "type": "alipay",
                  **credentials}
        with in_app(shop) as s:
            save_credentials(shop, "epay", values, enabled=True)
            s.commit()
        return shop

    return make


def start_checkout(client, product_id: int, method: str = "epay") -> tuple[str, str]:
    """Order one unit as a guest: (the order's link token, where checkout sent the buyer —
    straight to the gateway when it only redirects, else the order's payment step)."""
    response = client.checkout(f"/product/{product_id}", {
        "qty": "1", "email": "buyer@example.test", "payment_method": method})
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return order_token(response), response.headers["Location"]


def checkout(client, product_id: int, method: str = "epay") -> str:
    """Order one unit as a guest; returns the order's link token."""
    return start_checkout(client, product_id, method)[0]


def go_pay(client, token: str) -> str:
    """Follow the order's pay step; returns where the buyer is sent."""
    response = client.get(f"/order/{token}/pay")
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return response.headers["Location"]


def pay_with_epay(client, product_id: int) -> tuple[str, dict]:
    """Check out with EPay; returns the order token and the signed submit.php parameters."""
    token, started = start_checkout(client, product_id)  # submit mode: straight to EPay
    target = urlsplit(started)
    assert target.path.endswith("/submit.php")
    return token, dict(parse_qsl(target.query))


def notify(client, params: dict):
    return client.post("/pay/notify/epay", data=params)


def order_state(in_app, shop, token: str) -> SimpleNamespace:
    with in_app(shop) as s:
        order = order_by_token(token)
        return SimpleNamespace(
            id=order.id, status=order.status,
            payments=[(p.gateway, p.status, p.external_id) for p in order.payments],
            paid_events=s.scalar(select(func.count()).select_from(OrderEvent).where(
                OrderEvent.order_id == order.id, OrderEvent.to_status == "paid")),
            notifications=s.scalar(select(func.count()).select_from(PaymentNotification)),
        )


def assert_nothing_paid(in_app, shop, token: str) -> None:
    state = order_state(in_app, shop, token)
    assert state.status == "pending"
    assert all(status == "created" for _, status, _ in state.payments)
    assert state.paid_events == 0
    assert state.notifications == 0


# -- the signature --------------------------------------------------------------------------


def test_signature_known_answer():
    params = {"pid": "1001", "type": "alipay", "out_trade_no": "K20250101-ab12",
              "notify_url": "http://shop.example/pay/notify/epay", "name": "VIP 月卡",
              "money": "1.00", "sitename": "", "sign": "whatever", "sign_type": "MD5"}
    # Sorted by name, empty values and sign/sign_type left out, the key appended directly.
    message = ("money=1.00&name=VIP 月卡&notify_url=http://shop.example/pay/notify/epay"
               "&out_trade_no=K20250101-ab12&pid=1001&type=alipay" + "secretkey")
    assert sign(params, "secretkey") == hashlib.md5(message.encode()).hexdigest()  # noqa: S324
    assert sign(params, "secretkey") != sign(params, "otherkey")


@pytest.mark.parametrize(("money", "fen"), [
    ("10", 1000), ("10.0", 1000), ("10.00", 1000), ("1.5", 150), ("1.50", 150), ("0.01", 1),
    ("10.001", None), ("-1.00", None), ("1e3", None), ("abc", None), ("", None), ("١٠", None),
    (" ", None), ("1,000.00", None), ("NaN", None),
])
def test_money_is_read_exactly(money, fen):
    assert minor_units(money) == fen


# -- paying ---------------------------------------------------------------------------------


def test_checkout_sends_the_buyer_to_a_signed_submit_url(epay_shop, card_product, client_for,
                                                         in_app, epay_server):
    shop = epay_shop()
    client = client_for(shop)
    token, params = pay_with_epay(client, card_product(shop))

    with in_app(shop) as s:
        payment = s.scalar(select(Payment))
        assert (payment.gateway, payment.owner, payment.amount) == ("epay", "shop", 1000)
    assert params["pid"] == PID
    assert params["type"] == "alipay"
    assert params["out_trade_no"] == payment.reference
    assert params["money"] == "10.00"
    assert params["name"] == "Game card"
    assert params["sitename"] == shop.name
    assert params["notify_url"] == f"http://{client.host}/pay/notify/epay"
    assert params["return_url"] == f"http://{client.host}/order/{token}"
    assert params["sign_type"] == "MD5"
    assert params["sign"] == md5_sign(params)
    assert go_pay(client, token).startswith(f"{epay_server.url}/submit.php?")


def test_shop_chooses_the_payment_type(epay_shop, card_product, client_for):
    shop = epay_shop(type="wxpay")
    _, params = pay_with_epay(client_for(shop), card_product(shop))
    assert params["type"] == "wxpay"
    assert params["sign"] == md5_sign(params)


def test_valid_notification_pays_and_delivers(epay_shop, card_product, client_for, in_app):
    shop = epay_shop()
    client = client_for(shop)
    token, params = pay_with_epay(client, card_product(shop))

    response = notify(client_for(shop), notification(params["out_trade_no"]))

    assert response.status_code == 200
    assert response.get_data(as_text=True) == "success"
    state = order_state(in_app, shop, token)
    assert state.status == "delivered"
    assert state.payments == [("epay", "succeeded", "2025010112000001")]
    page = client.get(f"/order/{token}")
    assert page.status_code == 200
    assert "C-1" in page.get_data(as_text=True)


@pytest.mark.parametrize("money", ["10", "10.0", "10.000"])
def test_the_same_amount_written_differently_pays(money, epay_shop, card_product, client_for,
                                                  in_app):
    shop = epay_shop()
    client = client_for(shop)
    token, params = pay_with_epay(client, card_product(shop))
    response = notify(client, notification(params["out_trade_no"], money=money))
    assert response.get_data(as_text=True) == "success"
    assert order_state(in_app, shop, token).status == "delivered"


def forged(params: dict) -> dict:
    return {**params, "sign": md5_sign(params, "not-the-key")}


@pytest.mark.parametrize(("case", "change"), [
    ("forged signature", lambda ref: forged(notification(ref))),
    ("signature missing", lambda ref: {k: v for k, v in notification(ref).items()
                                       if k != "sign"}),
    ("tampered money", lambda ref: {**notification(ref), "money": "0.01"}),
    ("another merchant's pid", lambda ref: notification(ref, pid="2002")),
    ("a lower amount", lambda ref: notification(ref, money="9.99")),
    ("a higher amount", lambda ref: notification(ref, money="10.01")),
    ("money that is not an amount", lambda ref: notification(ref, money="ten")),
    ("a fraction of a fen", lambda ref: notification(ref, money="10.001")),
    ("an unknown out_trade_no", lambda ref: notification(ref + "x")),
    ("no trade_no", lambda ref: notification(ref, trade_no="")),
    ("another sign_type", lambda ref: {**notification(ref), "sign_type": "RSA"}),
])
def test_refused_notifications_change_nothing(case, change, epay_shop, card_product,
                                              client_for, in_app):
    shop = epay_shop()
    client = client_for(shop)
    token, params = pay_with_epay(client, card_product(shop))

    response = notify(client, change(params["out_trade_no"]))

    assert 400 <= response.status_code < 500, case
    assert response.get_data(as_text=True) != "success"
    assert_nothing_paid(in_app, shop, token)


def test_a_notification_by_query_string_reads_the_same(in_app, create_tenant, epay_server):
    """What a GET notify route would hand over (request.args) verifies like a form."""
    from werkzeug.datastructures import MultiDict

    shop = create_tenant()
    message = notification("K1-00", money="1.5", trade_no="T42")
    query = MultiDict(parse_qsl(urlencode(message)))
    with in_app(shop):
        gateway = EpayGateway({"gateway_url": epay_server.url, "pid": PID, "key": KEY},
                              owner="shop", tenant_id=shop.id)
        event = gateway.verify_notification(b"", {}, query)
    assert (event.event_id, event.reference, event.status, event.amount, event.currency,
            event.tenant_id, event.merchant) == ("T42", "K1-00", "succeeded", 150, "CNY",
                                                 shop.id, PID)


def test_notify_urls_outside_a_request(in_app, create_tenant, hosts):
    """A worker or the console (no shop request) still names the right notify URLs."""
    shop = create_tenant()
    with in_app(shop):
        own = EpayGateway({}, owner="shop", tenant_id=shop.id)
        platform = EpayGateway({}, owner="platform", tenant_id=None)
        order = SimpleNamespace(tenant_id=shop.id)
        assert own.notify_url(order) == f"http://{shop.slug}.{hosts.landing}/pay/notify/epay"
        assert platform.notify_url(order) == f"http://{hosts.landing}/pay/platform/notify/epay"


def test_a_repeated_parameter_is_refused(epay_shop, card_product, client_for, in_app):
    shop = epay_shop()
    client = client_for(shop)
    token, params = pay_with_epay(client, card_product(shop))
    body = urlencode([*notification(params["out_trade_no"]).items(), ("money", "0.01")])
    response = client.post("/pay/notify/epay", data=body,
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert_nothing_paid(in_app, shop, token)


def test_an_empty_key_is_never_used(epay_shop, card_product, client_for, in_app, epay_server):
    shop = epay_shop()
    client = client_for(shop)
    token, params = pay_with_epay(client, card_product(shop))
    with in_app(shop) as s:  # bypassing the form, which would refuse it
        shop_account("epay").credentials = encrypt_credentials(
            {"gateway_url": epay_server.url, "pid": PID, "key": "", "type": "alipay"})
        s.commit()

    response = notify(client, notification(params["out_trade_no"], key=""))

    assert response.status_code == 400
    assert_nothing_paid(in_app, shop, token)


def test_waiting_for_the_buyer_is_acknowledged_but_pays_nothing(epay_shop, card_product,
                                                                client_for, in_app):
    shop = epay_shop()
    client = client_for(shop)
    token, params = pay_with_epay(client, card_product(shop))

    response = notify(client, notification(params["out_trade_no"], status="WAIT_BUYER_PAY"))

    assert response.get_data(as_text=True) == "success"
    state = order_state(in_app, shop, token)
    assert (state.status, state.paid_events, state.notifications) == ("pending", 0, 1)

    # The success of the same trade that follows is another event: it pays.
    response = notify(client, notification(params["out_trade_no"]))
    assert response.get_data(as_text=True) == "success"
    assert order_state(in_app, shop, token).status == "delivered"


def test_another_shops_payment_is_unknown_here(epay_shop, card_product, client_for, in_app):
    # Both shops even use the same EPay merchant account: the notify URL's shop decides.
    shop, other = epay_shop(), epay_shop()
    pay_with_epay(client_for(shop), card_product(shop))
    other_token, other_params = pay_with_epay(client_for(other), card_product(other))

    response = notify(client_for(shop), notification(other_params["out_trade_no"]))

    assert response.status_code == 400
    assert_nothing_paid(in_app, other, other_token)


@pytest.mark.parametrize("gateway", ["sandbox", "stripe"])
def test_an_epay_notification_cannot_pay_another_gateways_payment(
        gateway, epay_shop, card_product, client_for, in_app):
    shop = epay_shop()
    client = client_for(shop)
    token = checkout(client, card_product(shop), method="sandbox")  # its payment started
    with in_app(shop) as s:
        payment = s.scalar(select(Payment))
        payment.gateway = gateway  # an order being paid with the sandbox, or with Stripe
        reference = payment.reference
        s.commit()

    response = notify(client, notification(reference))

    assert response.status_code == 400
    assert_nothing_paid(in_app, shop, token)


def test_a_replayed_notification_pays_once(epay_shop, card_product, client_for, in_app):
    shop = epay_shop()
    client = client_for(shop)
    token, params = pay_with_epay(client, card_product(shop, codes=("C-1", "C-2", "C-3")))
    message = notification(params["out_trade_no"])

    for _ in range(10):
        response = notify(client, message)
        assert (response.status_code, response.get_data(as_text=True)) == (200, "success")

    state = order_state(in_app, shop, token)
    assert state.status == "delivered"
    assert state.notifications == 1
    assert state.paid_events == 1
    with in_app(shop) as s:
        order = s.get(Order, state.id)
        assert sum(line.qty for line in order.lines) == 1
    page = client.get(f"/order/{token}").get_data(as_text=True)
    assert sum(code in page for code in ("C-1", "C-2", "C-3")) == 1


# -- the server's API: query, refund, connection check --------------------------------------


def test_query_reports_what_the_server_says(epay_shop, card_product, client_for, in_app,
                                            epay_server):
    shop = epay_shop()
    _, params = pay_with_epay(client_for(shop), card_product(shop))
    reference = params["out_trade_no"]

    with in_app(shop) as s:
        payment = s.scalar(select(Payment))
        gateway = gateway_for(shop, "epay", "shop")
        with pytest.raises(GatewayError, match="订单号不存在"):
            gateway.query(payment)

        epay_server.paid(reference, status=0)
        event = gateway.query(payment)
        assert (event.status, event.amount, event.reference) == ("pending", 1000, reference)

        epay_server.paid(reference, status=1)
        event = gateway.query(payment)
        assert (event.status, event.amount, event.currency) == ("succeeded", 1000, "CNY")
        assert event.event_id == event.external_id == "2025010112000001"


def test_refund_through_the_server(epay_shop, card_product, client_for, in_app, epay_server):
    shop = epay_shop()
    client = client_for(shop)
    token, params = pay_with_epay(client, card_product(shop))
    epay_server.paid(params["out_trade_no"])
    assert notify(client, notification(params["out_trade_no"])).status_code == 200

    epay_server.refund_error = "商户余额不足"
    with in_app(shop) as s:
        with pytest.raises(GatewayError, match="商户余额不足"):
            refund_order(order_by_token(token), to="gateway", actor="staff")
        s.rollback()
    assert order_state(in_app, shop, token).status == "delivered"
    assert epay_server.refunds == []

    epay_server.refund_error = ""
    with in_app(shop) as s:
        refund_order(order_by_token(token), to="gateway", actor="staff")
        s.commit()
    state = order_state(in_app, shop, token)
    assert state.status == "refunded"
    assert state.payments == [("epay", "refunded", "2025010112000001")]
    [refund] = epay_server.refunds
    assert (refund["act"], refund["pid"], refund["trade_no"], refund["money"]) == \
        ("refund", PID, "2025010112000001", "10.00")


def test_verify_by_query_refuses_what_the_server_does_not_confirm(
        epay_shop, card_product, client_for, in_app, epay_server):
    shop = epay_shop(verify_by_query="yes")
    client = client_for(shop)
    token, params = pay_with_epay(client, card_product(shop))
    reference = params["out_trade_no"]

    # A correctly signed success (a leaked key, say) that the server knows nothing of…
    assert notify(client, notification(reference)).status_code == 400
    # …or knows as unpaid…
    epay_server.paid(reference, status=0)
    assert notify(client, notification(reference)).status_code == 400
    # …or as paid with another amount changes nothing.
    epay_server.paid(reference, money="0.01")
    assert notify(client, notification(reference)).status_code == 400
    assert_nothing_paid(in_app, shop, token)

    epay_server.paid(reference)
    response = notify(client, notification(reference))
    assert response.get_data(as_text=True) == "success"
    assert order_state(in_app, shop, token).status == "delivered"


def test_connection_check(in_app, epay_server, create_tenant):
    shop = create_tenant()
    with in_app(shop):
        good = EpayGateway({"gateway_url": epay_server.url, "pid": PID, "key": KEY},
                           owner="shop", tenant_id=shop.id)
        assert "accepted merchant 1001" in good.test_connection()
        for pid, key, reason in [(PID, "wrong", "KEY校验失败"), ("9", KEY, "商户ID不存在")]:
            bad = EpayGateway({"gateway_url": epay_server.url, "pid": pid, "key": key},
                              owner="shop", tenant_id=shop.id)
            with pytest.raises(GatewayError, match=reason):
                bad.test_connection()


def test_mapi_mode_shows_the_servers_qr_code(epay_shop, card_product, client_for, in_app,
                                             epay_server):
    shop = epay_shop(mode="mapi")
    client = client_for(shop)
    token = checkout(client, card_product(shop))

    page = client.get(f"/order/{token}/pay")

    assert page.status_code == 200
    assert "<svg" in page.get_data(as_text=True)
    with in_app(shop) as s:
        payment = s.scalar(select(Payment))
        assert payment.external_id == "2025010199990001"
    [call] = epay_server.mapi_calls
    assert call["out_trade_no"] == payment.reference
    assert call["money"] == "10.00"
    assert call["notify_url"] == f"http://{client.host}/pay/notify/epay"
    assert call["clientip"]


def test_mapi_mode_refuses_a_hostile_qr_code(epay_shop, card_product, client_for, in_app,
                                             epay_server):
    shop = epay_shop(mode="mapi")
    epay_server.qrcode = "javascript:alert(document.cookie)"
    client = client_for(shop)
    token = checkout(client, card_product(shop))

    response = client.get(f"/order/{token}/pay")

    assert response.status_code == 302  # back to the order page, with the reason flashed
    assert urlsplit(response.headers["Location"]).path == f"/order/{token}"
    assert "javascript:" not in client.get(f"/order/{token}").get_data(as_text=True)
    assert order_state(in_app, shop, token).status == "pending"


# -- the platform's EPay account ------------------------------------------------------------


def test_platform_account_collects_for_a_shop(create_tenant, card_product, client_for,
                                              in_app, hosts, epay_server):
    with in_app() as s:
        s.add(PlatformPaymentAccount(gateway="epay", enabled=True, credentials=encrypt_credentials(
            {"gateway_url": epay_server.url, "pid": PID, "key": KEY})))
        s.commit()
    shop = create_tenant()
    token, params = pay_with_epay(client_for(shop), card_product(shop))
    assert params["notify_url"] == f"http://{hosts.landing}/pay/platform/notify/epay"
    platform = client_for(hosts.landing)

    # The shop's own notify URL does not take the platform's payments.
    assert notify(client_for(shop), notification(params["out_trade_no"])).status_code == 400
    assert platform.post("/pay/platform/notify/epay",
                         data=forged(notification(params["out_trade_no"]))).status_code == 400
    assert_nothing_paid(in_app, shop, token)

    response = platform.post("/pay/platform/notify/epay",
                             data=notification(params["out_trade_no"]))
    assert response.get_data(as_text=True) == "success"
    state = order_state(in_app, shop, token)
    assert state.status == "delivered"
    assert state.payments == [("epay", "succeeded", "2025010112000001")]


def test_platform_notify_cannot_pay_a_shops_own_payment(epay_shop, card_product, client_for,
                                                       in_app, hosts, epay_server):
    with in_app() as s:
        s.add(PlatformPaymentAccount(gateway="epay", enabled=True, credentials=encrypt_credentials(
            {"gateway_url": epay_server.url, "pid": PID, "key": KEY})))
        s.commit()
    shop = epay_shop()
    token, params = pay_with_epay(client_for(shop), card_product(shop))
    response = client_for(hosts.landing).post("/pay/platform/notify/epay",
                                              data=notification(params["out_trade_no"]))
    assert response.status_code == 400
    assert_nothing_paid(in_app, shop, token)


# -- the transport ---------------------------------------------------------------------------


@pytest.fixture
def gateway_at(in_app):
    """gateway_at(url) -> (an EpayGateway for that gateway URL, a stand-in payment); use it
    inside `with in_app():`."""

    def make(url):
        gateway = EpayGateway({"gateway_url": url, "pid": PID, "key": KEY}, owner="shop",
                              tenant_id=1)
        return gateway, SimpleNamespace(reference="K1-00", external_id="T1", amount=1000)

    return make


@pytest.mark.parametrize(("url", "reason"), [
    ("http://pay.example.com", "https"),
    ("ftp://pay.example.com", "https"),
    ("https://user:pw@pay.example.com", "plain address"),
    ("https://pay.example.com/?a=1", "plain address"),
    ("https://pay.example.com:99999", "not a valid URL"),
    ("", "not configured"),
])
def test_gateway_url_must_be_https(url, reason, gateway_at, in_app):
    with in_app():
        gateway, payment = gateway_at(url)
        with pytest.raises(GatewayError, match=reason):
            gateway.query(payment)


def test_plain_http_to_loopback_only_outside_production(gateway_at, in_app, epay_server, app,
                                                        monkeypatch):
    monkeypatch.setitem(app.config, "KAMENG_ENV", "production")
    with in_app():
        gateway, payment = gateway_at(epay_server.url)
        with pytest.raises(GatewayError, match="https"):
            gateway.query(payment)


def test_a_pasted_script_url_is_trimmed(gateway_at, in_app, epay_server):
    with in_app():
        gateway, _ = gateway_at(f"{epay_server.url}/submit.php")
        assert gateway.base_url() == epay_server.url


@pytest.mark.parametrize(("path", "reason"), [
    ("/redirecting", "redirect"),
    ("/big", "larger than"),
    ("/html", "JSON"),
    ("/slow", "did not answer within 0.3 s"),
    ("/nothing-here", "HTTP 404"),
])
def test_server_misbehaviour_is_a_clear_gateway_error(path, reason, gateway_at, in_app,
                                                      epay_server, monkeypatch):
    monkeypatch.setattr(EpayGateway, "timeout", 0.3)
    with in_app():
        gateway, payment = gateway_at(epay_server.url + path)
        with pytest.raises(GatewayError, match=reason) as error:
            gateway.query(payment)
        assert KEY not in str(error.value)
        with pytest.raises(GatewayError, match=reason):
            gateway.refund(payment, 1000)


def test_an_unreachable_server_is_a_clear_gateway_error(gateway_at, in_app):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with in_app():
        gateway, payment = gateway_at(f"http://127.0.0.1:{port}")
        with pytest.raises(GatewayError, match="could not be reached"):
            gateway.query(payment)
