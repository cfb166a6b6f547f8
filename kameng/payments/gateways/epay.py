"""The EPay (易支付, "彩虹易支付") gateway: the protocol of the Chinese payment aggregators.

The buyer is sent to `<gateway>/submit.php` with signed parameters (or, in "mapi" mode, the
server asks `<gateway>/mapi.php` for a pay URL or QR code). The aggregator then calls our
notify URL with `pid, trade_no, out_trade_no, type, name, money, trade_status, sign,
sign_type` and expects the plain text `success`. `<gateway>/api.php` answers order queries
(`act=order`) and refunds (`act=refund`), authenticated by the merchant key itself.

The signature is MD5 over the non-empty parameters except `sign` and `sign_type`, sorted by
name, joined as `k=v&k2=v2`, with the merchant key appended directly; lower-case hex. MD5 and
a shared key are what the protocol offers: the notification carries no timestamp, so replays
are stopped by storing each trade once (the service's UNIQUE(gateway, event_id)), and a shop
that wants more can have every notification confirmed by a query (`verify_by_query`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from http.client import HTTPException
from urllib.parse import urlencode, urlsplit, urlunsplit

from flask import current_app, has_request_context
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ...extensions import db
from ...money import decimal_string
from ..registry import register
from .base import (
    CredentialField,
    Gateway,
    GatewayError,
    InvalidNotification,
    PaymentEvent,
    PaymentStart,
)

CURRENCY = "CNY"  # EPay amounts are yuan, always
PAID = "TRADE_SUCCESS"  # the one trade_status that means the buyer paid
UNSIGNED = ("sign", "sign_type")
NAME_BYTES = 127  # the longest order title EPay servers accept
MAX_BODY = 1_000_000  # bytes of an answer from the EPay server we are willing to read
LOOPBACK = ("127.0.0.1", "localhost", "::1")
QR_SCHEMES = re.compile(r"(https?|weixin|wxp|alipays?|mqqapi)://", re.IGNORECASE)
TRUE_WORDS = ("1", "yes", "true", "on")
PAY_TYPE = re.compile(r"[a-z0-9_]{1,32}")
MONEY = re.compile(r"[0-9]{1,12}(\.[0-9]{1,8})?")  # ASCII digits only
# How EPay servers word "wrong merchant id or key" (彩虹易支付: code -3 "KEY校验失败",
# "商户ID不存在"); "订单号不存在" (no such order) is the answer a good pid and key get.
CREDENTIALS_REFUSED = re.compile(
    r"key|pid|密钥|签名|sign|校验|商户(ID|号)?(不存在|错误|无效|已封禁)|merchant", re.IGNORECASE)


def sign(params: Mapping[str, str], key: str) -> str:
    """The EPay MD5 signature of `params` with the merchant `key`."""
    message = "&".join(f"{name}={params[name]}" for name in sorted(params)
                       if name not in UNSIGNED and params[name] != "")
    # MD5 is the protocol's choice, not ours.
    return hashlib.md5((message + key).encode()).hexdigest()  # noqa: S324


def minor_units(money: str) -> int | None:
    """'10.5' -> 1050 fen; None for anything that is not a plain, non-negative yuan amount
    with at most two significant decimals ('1.50' and '1.5' are the same amount)."""
    if not isinstance(money, str) or not MONEY.fullmatch(money.strip()):
        return None
    try:
        fen = Decimal(money.strip()).scaleb(2)
    except InvalidOperation:
        return None
    return int(fen) if fen == fen.to_integral_value() else None


def order_title(order) -> str:
    """What the buyer sees at the aggregator: the product (and quantity), ≤ 127 UTF-8 bytes."""
    lines = list(order.lines)
    if order.kind == "topup" or not lines:
        title = f"Wallet top-up {order.number}" if order.kind == "topup" \
            else f"Order {order.number}"
    else:
        first = lines[0]
        title = first.title + (f" ×{first.qty}" if first.qty > 1 else "")
        if len(lines) > 1:
            title += f" (+{len(lines) - 1})"
    title = " ".join(title.split()) or f"Order {order.number}"
    return title.encode()[:NAME_BYTES].decode(errors="ignore")


def _server_message(data: dict) -> str:
    """The server's own words (`msg`), made safe to show: one short line."""
    text = " ".join(str(data.get("msg") or "").split())
    return text[:200] or "no reason given"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect from the payment server is an error, never followed."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


@register
class EpayGateway(Gateway):
    name = "epay"
    label = "EPay (易支付)"
    credential_fields = (
        CredentialField("gateway_url", _l("Gateway URL (https://…)"), secret=False),
        CredentialField("pid", _l("Merchant ID (pid)"), secret=False),
        CredentialField("key", _l("Merchant key")),
        CredentialField("type", _l("Payment type (alipay, wxpay, qqpay…; default alipay)"),
                        secret=False, required=False),
        CredentialField("mode", _l("Mode: redirect (submit.php, default) or mapi"), secret=False,
                        required=False),
        CredentialField("verify_by_query", _l("Confirm every notification with a query (yes/no)"),
                        secret=False, required=False),
    )
    timeout = 5.0  # seconds for each call to the EPay server (connect, and the whole answer)
    # Many EPay servers call notify_url with GET and the parameters in the query string; a
    # notify route may hand request.args to verify_notification as `form` for this gateway.
    notify_by_get = True

    # -- settings ---------------------------------------------------------------------------

    def check_credentials(self) -> None:
        self.base_url()
        self.pay_type  # noqa: B018 - raises for an unknown payment type
        if self._setting("mode").lower() not in ("", "redirect", "mapi"):
            raise GatewayError(_l("Mode is either redirect or mapi."))

    def _too_slow(self, where: str):
        seconds = format(self.timeout, "g")
        return _l("%(where)s did not answer within %(seconds)s s.", where=where, seconds=seconds)

    def _setting(self, name: str) -> str:
        return str(self.credentials.get(name) or "").strip()

    def _configured(self, *names: str) -> None:
        missing = [n for n in names if not self._setting(n)]
        if missing:
            raise GatewayError(_l("%(label)s is not configured (%(missing)s).",
                                  label=self.label, missing=', '.join(missing)))

    @property
    def pay_type(self) -> str:
        chosen = self._setting("type").lower() or "alipay"
        if not PAY_TYPE.fullmatch(chosen):
            raise GatewayError(_l("'%(chosen)s' is not an EPay payment type "
                                  "(alipay, wxpay, qqpay…).",
                                  chosen=chosen))
        return chosen

    @property
    def verify_by_query(self) -> bool:
        return self._setting("verify_by_query").lower() in TRUE_WORDS

    def base_url(self) -> str:
        """The gateway's base URL: HTTPS (plain HTTP only to loopback in development and
        tests), no credentials, query or fragment; a pasted `…/submit.php` is trimmed."""
        raw = self._setting("gateway_url")
        try:
            parts = urlsplit(raw)
            host = parts.hostname or ""
            parts.port  # noqa: B018 - a malformed port raises here
        except ValueError:
            raise GatewayError(_l("The EPay gateway URL is not a valid URL.")) from None
        local = (parts.scheme == "http" and host in LOOPBACK
                 and current_app.config["KAMENG_ENV"] in ("development", "testing"))
        if not host or not (parts.scheme == "https" or local):
            raise GatewayError(_l("The EPay gateway URL must be an https:// address."))
        if parts.username or parts.password or parts.query or parts.fragment:
            raise GatewayError(_l("The EPay gateway URL must be a plain address (no user, query "
                                  "or fragment)."))
        path = re.sub(r"/(submit|mapi|api)\.php$", "", parts.path.rstrip("/")).rstrip("/")
        return urlunsplit((parts.scheme, parts.netloc, path, "", ""))

    def signed(self, params: dict[str, str]) -> dict[str, str]:
        """`params` with their signature, ready to send."""
        self._configured("key")
        return {**params, "sign": sign(params, self._setting("key")), "sign_type": "MD5"}

    def notify_url(self, order) -> str:
        """Where the aggregator calls us: the shop's notify URL on the host the buyer uses, or
        the platform's on the bare platform domain when the platform's account collects."""
        from ...tenants.hosts import LANDING, SHOP, absolute_url_for, public_url, subdomain_host
        from ...tenants.models import Tenant

        if self.owner == "shop" and has_request_context():
            return absolute_url_for("payments.notify", gateway=self.name)
        if self.owner == "platform":
            host, site, endpoint = (current_app.config["PLATFORM_DOMAIN"], LANDING,
                                    "platform_payments.platform_notify")
        else:
            host, site, endpoint = (subdomain_host(db.session.get(Tenant, order.tenant_id).slug),
                                    SHOP, "payments.notify")
        path = current_app.url_map.bind(host, subdomain=site).build(
            endpoint, {"gateway": self.name})
        return public_url(host, path)

    # -- paying -----------------------------------------------------------------------------

    def start(self, order, payment, urls) -> PaymentStart:
        from ...tenants.models import Tenant

        self._configured("gateway_url", "pid", "key")
        if payment.currency.upper() != CURRENCY:
            raise GatewayError(_l("EPay takes payments in CNY only."))
        base = self.base_url()
        shop = db.session.get(Tenant, order.tenant_id)
        params = {
            "pid": self._setting("pid"),
            "type": self.pay_type,
            "out_trade_no": payment.reference,
            "notify_url": urls.notify or self.notify_url(order),
            "return_url": urls.success,
            "name": order_title(order),
            "money": decimal_string(payment.amount, CURRENCY),
            "sitename": (shop.name if shop else "")[:60],
        }
        if self._setting("mode").lower() == "mapi":
            return self._start_mapi(base, params, order)
        query = urlencode(self.signed(params))
        return PaymentStart(kind="redirect", url=f"{base}/submit.php?{query}")

    def redirects_at_start(self) -> bool:
        return self._setting("mode").lower() != "mapi"  # mapi may answer with a QR code

    def _start_mapi(self, base: str, params: dict, order) -> PaymentStart:
        """Ask the server for the payment itself (mapi.php): a QR code or a pay URL."""
        params = {**params, "clientip": order.ip or "127.0.0.1"}
        data = self._call(f"{base}/mapi.php", form=self.signed(params))
        if str(data.get("code")) != "1":
            raise GatewayError(_l("EPay did not create the payment: %(data)s",
                                  data=_server_message(data)))
        trade_no = str(data.get("trade_no") or "")[:128] or None
        pay_url = str(data.get("payurl") or "")
        if not pay_url.startswith(("https://", "http://")):
            pay_url = ""
        qr_code = str(data.get("qrcode") or "")
        if not QR_SCHEMES.match(qr_code):  # it becomes a link on our page: no javascript:
            qr_code = ""
        if qr_code:
            return PaymentStart(kind="qr", qr_data=qr_code, url=pay_url, external_id=trade_no)
        if pay_url:
            return PaymentStart(kind="redirect", url=pay_url, external_id=trade_no)
        raise GatewayError(_l("EPay answered without a pay URL or QR code."))

    # -- notifications ----------------------------------------------------------------------

    def verify_notification(self, body: bytes, headers, form) -> PaymentEvent:
        """Check the signature (never with an empty key), the merchant id and the amount's
        form, and read the notification. Every trade_status but TRADE_SUCCESS is "pending"."""
        self.require("key", "pid")
        params = self._notification_params(form)
        expected = sign(params, self._setting("key")).encode()
        if not hmac.compare_digest(expected, params.get("sign", "").strip().lower().encode()):
            raise InvalidNotification("bad signature")
        if params.get("sign_type", "MD5").upper() != "MD5":
            raise InvalidNotification("unsupported sign_type")
        if params.get("pid", "") != self._setting("pid"):
            raise InvalidNotification("the notification is for another merchant (pid)")
        reference = params.get("out_trade_no", "")
        trade_no = params.get("trade_no", "")
        if not 0 < len(reference) <= 64 or not 0 < len(trade_no) <= 100:
            raise InvalidNotification("missing or overlong out_trade_no / trade_no")
        amount = minor_units(params.get("money", ""))
        if amount is None:
            raise InvalidNotification("money is not an amount")
        trade_status = params.get("trade_status", "")[:24]
        paid = trade_status == PAID
        if paid and self.verify_by_query:
            self._confirm(reference, trade_no, amount)
        return PaymentEvent(
            # The trade's success is one event whatever retries or replays carry it; another
            # status of the same trade is a different event, so an early WAIT_BUYER_PAY never
            # swallows the TRADE_SUCCESS that follows.
            event_id=trade_no if paid else f"{trade_no}:{trade_status or 'unknown'}",
            reference=reference, status="succeeded" if paid else "pending", amount=amount,
            currency=CURRENCY, external_id=trade_no, merchant=params["pid"],
            tenant_id=self.tenant_id if self.owner == "shop" else self._shop_of(reference),
        )

    @staticmethod
    def _notification_params(form) -> dict[str, str]:
        if not form:
            raise InvalidNotification("empty notification")
        if hasattr(form, "getlist"):
            if any(len(form.getlist(name)) > 1 for name in form):
                raise InvalidNotification("a parameter is repeated")
            return {name: str(form.get(name)) for name in form}
        return {str(name): str(value) for name, value in dict(form).items()}

    def _shop_of(self, reference: str) -> int:
        """The shop of a payment collected with the platform's account: EPay notifications
        name no shop, but our reference is unique across shops."""
        from ...tenants.scoping import platform_scope
        from ..models import Payment

        with platform_scope():
            tenant_id = db.session.scalar(select(Payment.tenant_id).where(
                Payment.reference == reference, Payment.gateway == self.name,
                Payment.owner == "platform"))
        if tenant_id is None:
            raise InvalidNotification("unknown payment")
        return tenant_id

    def _confirm(self, reference: str, trade_no: str, amount: int) -> None:
        """Trust a success only when the server, asked directly, says the same."""
        try:
            event = self._query_reference(reference)
        except GatewayError as error:
            raise InvalidNotification(f"could not confirm the payment with EPay: {error}"
                                      ) from None
        if event.status != "succeeded" or event.amount != amount or (
                event.external_id and event.external_id != trade_no):
            raise InvalidNotification("EPay does not confirm this payment")

    def acknowledge(self) -> tuple[str, int, dict]:
        return "success", 200, {"Content-Type": "text/plain; charset=utf-8"}

    # -- the server's API (api.php) ---------------------------------------------------------

    def query(self, payment) -> PaymentEvent:
        """What the EPay server says about `payment` (GatewayError when it cannot say)."""
        return self._query_reference(payment.reference)

    def _query_reference(self, reference: str) -> PaymentEvent:
        self._configured("gateway_url", "pid", "key")
        data = self._api("order", out_trade_no=reference)
        if str(data.get("code")) != "1":
            raise GatewayError(_l("EPay did not find payment %(reference)s: %(data)s",
                                  reference=reference, data=_server_message(data)))
        if str(data.get("out_trade_no") or reference) != reference or \
                str(data.get("pid") or self._setting("pid")) != self._setting("pid"):
            raise GatewayError(_l("EPay answered about another order or merchant."))
        trade_no = str(data.get("trade_no") or "")[:100]
        if not trade_no:
            raise GatewayError(_l("EPay answered without its trade number."))
        state = str(data.get("status"))
        status = {"1": "succeeded", "2": "refunded"}.get(state, "pending")
        return PaymentEvent(
            event_id=trade_no if status == "succeeded" else f"{trade_no}:status-{state[:8]}",
            reference=reference, status=status, amount=minor_units(str(data.get("money", ""))),
            currency=CURRENCY, external_id=trade_no, merchant=self._setting("pid"),
            tenant_id=self.tenant_id,
        )

    def refund(self, payment, amount: int) -> None:
        """Refund through api.php?act=refund; GatewayError with the server's reason if it
        refuses (nothing was refunded then)."""
        self._configured("gateway_url", "pid", "key")
        if not 0 < amount <= payment.amount:
            raise GatewayError(_l("The refund must be more than 0 and at most the amount paid."))
        target = {"trade_no": payment.external_id} if payment.external_id \
            else {"out_trade_no": payment.reference}
        data = self._call(f"{self.base_url()}/api.php?act=refund", form={
            "pid": self._setting("pid"), "key": self._setting("key"), **target,
            "money": decimal_string(amount, CURRENCY),
        })
        if str(data.get("code")) != "1":
            raise GatewayError(_l("EPay refused the refund: %(data)s", data=_server_message(data)))

    def test_connection(self) -> str:
        """Query a made-up order: a server that accepts the merchant id and key answers
        "no such order" (code -1); a wrong pid or key is refused before the order is looked
        up (code -3 on 彩虹易支付, or a message naming the key or merchant)."""
        self._configured("gateway_url", "pid", "key")
        probe = f"kameng-check-{secrets.token_hex(6)}"
        data = self._api("order", out_trade_no=probe)
        code, message = str(data.get("code")), _server_message(data)
        if code == "1" or (code == "-1" and not CREDENTIALS_REFUSED.search(message)):
            return (f"Connected: the EPay server accepted merchant {self._setting('pid')} and "
                    f"its key (asked about a made-up order, it answered “{message}”).")
        raise GatewayError(_l("The EPay server refused merchant %(setting)s or its key "
                              "(code %(code)s): %(message)s",
                              setting=self._setting('pid'), code=code[:8], message=message))

    def _api(self, act: str, **params: str) -> dict:
        query = {"act": act, "pid": self._setting("pid"), "key": self._setting("key"), **params}
        return self._call(f"{self.base_url()}/api.php?{urlencode(query)}")

    def _call(self, url: str, *, form: dict | None = None) -> dict:
        """One call to the EPay server: short timeouts, no redirects, no proxies from the
        environment, a capped answer that must be a JSON object. Any failure is a
        GatewayError whose message never contains the key (it travels in the URL)."""
        where = f"the EPay server ({urlsplit(url).hostname})"
        data = urlencode(form).encode() if form is not None else None
        # The URL is always built on base_url(), which allows https (and loopback http in
        # development) only.
        call = urllib.request.Request(url, data=data, headers={  # noqa: S310
            "Accept": "application/json", "User-Agent": "Kameng-EPay/1"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects)
        deadline = time.monotonic() + self.timeout
        try:
            with opener.open(call, timeout=self.timeout) as response:
                body = b""
                while len(body) <= MAX_BODY:
                    chunk = response.read1(65536)
                    if not chunk:
                        break
                    body += chunk
                    if time.monotonic() > deadline:
                        raise GatewayError(self._too_slow(where))
        except urllib.error.HTTPError as error:
            error.close()
            if 300 <= error.code < 400:
                raise GatewayError(_l("%(where)s answered with a redirect (HTTP %(code)s); "
                                      "check the gateway URL.",
                                      where=where, code=error.code)) from None
            raise GatewayError(_l("%(where)s answered HTTP %(code)s.",
                                  where=where, code=error.code)) from None
        except (urllib.error.URLError, HTTPException, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, TimeoutError):
                raise GatewayError(self._too_slow(where)) from None
            raise GatewayError(_l("%(where)s could not be reached (%(reason)s).", where=where,
                                  reason=reason or _l("no answer"))) from None
        if len(body) > MAX_BODY:
            raise GatewayError(_l("%(where)s sent an answer larger than %(max_body)s bytes.",
                                  where=where, max_body=MAX_BODY))
        try:
            answer = json.loads(body.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            raise GatewayError(_l("%(where)s did not answer with JSON.", where=where)) from None
        if not isinstance(answer, dict):
            raise GatewayError(_l("%(where)s did not answer with a JSON object.", where=where))
        return answer
