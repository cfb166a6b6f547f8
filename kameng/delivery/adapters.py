"""Protocol adapters of upstream suppliers: how a direct top-up (直充) is bought and checked.

Every adapter has one interface and calls out only through the SSRF-safe client
(`kameng.security.http.safe_request`):

    place(supplier, credentials, line, idempotency_key) -> UpstreamResult
    check(supplier, credentials, reference, idempotency_key) -> UpstreamResult
    test(supplier, credentials) -> str   (the console's "test" button)

`line` is a `TopupLine`: the order line as the supplier sees it (our order number, the
supplier's product code, the quantity and the buyer's inputs), so adapters never touch the
database. An `UpstreamResult` is "success", "pending" or "failure" with the supplier's
reference, its message, the delivered content (if it returned any) and the parsed answer.
Anything that is not a usable answer — a timeout, HTTP 5xx, a redirect (never followed), a
body that is not JSON, a status nobody mapped — raises `UpstreamRetry`: the caller tries
again later with the same idempotency key. HTTP 4xx is a definitive "failure" (except 408,
425 and 429, which mean "later"). `UnsafeURL` (an address inside the network) propagates.

Adapter "json" — a generic JSON-over-HTTPS supplier, configured by the supplier's settings
(every key optional; the defaults are shown):

    {
      "order_path": "/order",              POST {base_url}{order_path} places the order
      "query_path": "/order/{reference}",  GET it; also takes {idempotency_key}
      "body": {                            request body: any JSON; strings may hold placeholders
        "product": "{product}",            the product's upstream product code
        "qty": "{qty}",                    quantity (a number when it is the whole string)
        "order": "{order}",                our order number
        "idempotency_key": "{idempotency_key}",
        "inputs": "{inputs}"               all buyer inputs as an object; one of them:
      },                                   "{input.<name>}", e.g. "{input.account}"
      "auth_header": "Authorization",      header carrying the credential ("" for none)
      "auth_value": "Bearer {api_key}",    {api_key} is the stored (encrypted) credential;
                                           "{api_key}" may also appear in the body
      "idempotency_header": "Idempotency-Key",   "" to leave it out
      "status_field": "status",            dotted path in the answer, e.g. "data.status"
      "success_values": ["success"],       compared as text: [1] matches 1 and "1"
      "pending_values": ["pending", "processing"],
      "failure_values": ["failed", "failure"],
      "reference_field": "reference",      the supplier's order id, e.g. "data.order_id"
      "message_field": "message",
      "content_field": ""                  optional: delivered text (a code, a receipt)
    }

Adapter "kameng" — buys from another Kameng shop through its REST API (/api/v1, issue K7).
Credentials: `key_id` and `api_secret` of an API key at that shop. Every request is signed:

    X-Kameng-Key: <key id>
    X-Kameng-Timestamp: <unix seconds>
    X-Kameng-Nonce: <32 hex characters, never reused>
    X-Kameng-Signature: hex HMAC-SHA256(api_secret, canonical)
    canonical = METHOD \\n path (with ?query) \\n timestamp \\n nonce \\n hex SHA-256(body)

POST {base_url}/api/v1/orders with an `Idempotency-Key` header and the JSON body
{"product_id", "quantity", "inputs"} creates (and pays, from our wallet there) an order;
GET {base_url}/api/v1/orders/{id} reads it. An order answers
{"order": {"id", "number", "status", "delivered": [{"title", "items": ["…"]}]}} (the bare
order object is accepted too); errors answer {"error": {"code", "message"}}. Status mapping:
delivered → success; failed, refunded, cancelled, expired → failure; pending, paid,
delivering, awaiting → pending. The "test" button reads GET /api/v1/wallet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from flask import current_app
from flask_babel import lazy_gettext as _l

from ..errors import DomainError
from ..security.credentials import CredentialField
from ..security.http import Response, UpstreamError, safe_request

OUTCOMES = ("success", "pending", "failure")
RETRY_LATER = {408, 425, 429}  # 4xx answers that mean "not now" rather than "no"
MESSAGE_LIMIT = 300
PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)?)\}")
STATIC_PLACEHOLDERS = ("idempotency_key", "product", "qty", "order", "inputs", "api_key")


@dataclass(frozen=True)
class TopupLine:
    """What to buy: an order line as the supplier sees it."""

    line_id: int
    order_number: str
    product: str  # the product's code at the supplier
    qty: int
    inputs: dict[str, str]


@dataclass
class UpstreamResult:
    status: str  # "success" | "pending" | "failure"
    reference: str = ""
    message: str = ""
    raw: Any = None
    content: str = ""  # delivered text, when the supplier returned some
    http_status: int | None = None


class UpstreamRetry(Exception):
    """No usable answer (timeout, 5xx, redirect, not JSON, unknown status): try again later."""

    def __init__(self, message: str, *, http_status: int | None = None):
        super().__init__(message)
        self.message = message
        self.http_status = http_status


def _short(text: str, limit: int = MESSAGE_LIMIT) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _timeout() -> float:
    return float(current_app.config.get("TOPUP_TIMEOUT", 10))


def _join(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def dig(data: Any, path: str) -> Any:
    """The value at a dotted path ("data.order.id", "items.0.code"), or None."""
    value = data
    for part in (path or "").split("."):
        if not part:
            return None
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _as_text(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Adapter:
    """The interface every supplier protocol implements."""

    name: ClassVar[str]
    label: ClassVar[str]
    credential_fields: ClassVar[tuple[CredentialField, ...]] = ()

    @classmethod
    def check_settings(cls, settings: dict | None) -> dict:
        """The adapter's settings, validated and normalised (DomainError on a bad value)."""
        return {}

    @classmethod
    def missing_credentials(cls, credentials: dict, settings: dict) -> list[str]:
        """Labels of the credentials the adapter needs (with these settings) but lacks."""
        return [str(spec.label) for spec in cls.credential_fields
                if spec.required and not credentials.get(spec.name)]

    def place(self, supplier, credentials: dict, line: TopupLine,
              idempotency_key: str) -> UpstreamResult:
        raise NotImplementedError

    def check(self, supplier, credentials: dict, reference: str,
              idempotency_key: str) -> UpstreamResult:
        raise NotImplementedError

    def test(self, supplier, credentials: dict) -> str:
        raise NotImplementedError


def _call(method: str, url: str, **kwargs) -> Response:
    """One request through the SSRF-safe client; transport trouble becomes UpstreamRetry."""
    try:
        return safe_request(method, url, timeout=_timeout(),
                            connect_timeout=min(3.0, _timeout()), **kwargs)
    except UpstreamError as error:
        raise UpstreamRetry(str(error)) from None


def _refuse_redirects_and_5xx(answer: Response) -> None:
    if 300 <= answer.status < 400:
        raise UpstreamRetry(f"the supplier answered with a redirect (HTTP {answer.status}); "
                            "redirects are not followed", http_status=answer.status)
    if answer.status >= 500 or answer.status in RETRY_LATER:
        raise UpstreamRetry(f"the supplier answered HTTP {answer.status}: "
                            f"{_short(answer.text, 120)}", http_status=answer.status)
    if answer.status < 200:
        raise UpstreamRetry(f"unexpected HTTP {answer.status}", http_status=answer.status)


def _json_or_retry(answer: Response) -> Any:
    try:
        return answer.json()
    except UpstreamError:
        raise UpstreamRetry(f"the supplier's answer is not JSON: {_short(answer.text, 120)!r}",
                            http_status=answer.status) from None


# -- the generic JSON adapter ------------------------------------------------------------------

JSON_DEFAULTS: dict[str, Any] = {
    "order_path": "/order",
    "query_path": "/order/{reference}",
    "body": {"product": "{product}", "qty": "{qty}", "order": "{order}",
             "idempotency_key": "{idempotency_key}", "inputs": "{inputs}"},
    "auth_header": "Authorization",
    "auth_value": "Bearer {api_key}",
    "idempotency_header": "Idempotency-Key",
    "status_field": "status",
    "success_values": ["success"],
    "pending_values": ["pending", "processing"],
    "failure_values": ["failed", "failure"],
    "reference_field": "reference",
    "message_field": "message",
    "content_field": "",
}
_TEXT_SETTINGS = ("order_path", "query_path", "auth_header", "auth_value", "idempotency_header",
                  "status_field", "reference_field", "message_field", "content_field")
_LIST_SETTINGS = ("success_values", "pending_values", "failure_values")
HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")
FIELD_PATH = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


def _placeholders(value: Any) -> set[str]:
    """Every placeholder name used in a template (strings inside any JSON structure)."""
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(_placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_placeholders(v) for v in value)) if value else set()
    return set()


def _check_placeholders(template: Any, allowed: tuple[str, ...], field_name: str,
                        inputs: bool = False) -> None:
    for name in sorted(_placeholders(template)):
        if name in allowed or (inputs and name.startswith("input.")):
            continue
        raise DomainError(_l("Unknown placeholder {%(name)s}.", name=name), field=field_name)


def _value_list(raw: Any, field_name: str) -> list[str]:
    if isinstance(raw, str):
        raw = raw.split(",")
    values = [_as_text(v).strip() for v in (raw or [])]
    values = [v for v in values if v]
    if len(values) > 20 or any(len(v) > 60 for v in values):
        raise DomainError(_l("At most 20 values of at most 60 characters each."), field=field_name)
    return values


def fill(template: Any, values: dict[str, Any]) -> Any:
    """The template with its placeholders replaced. A string that is exactly one placeholder
    takes the value as it is (a number stays a number, {inputs} an object)."""
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(value, values) for value in template]
    if not isinstance(template, str):
        return template
    whole = PLACEHOLDER.fullmatch(template)
    if whole:
        return values.get(whole.group(1), "")
    return PLACEHOLDER.sub(lambda m: _as_text(values.get(m.group(1), "")), template)


class JsonAdapter(Adapter):
    name = "json"
    label = _l("Generic JSON over HTTPS")
    credential_fields = (CredentialField("api_key", _l("API key")),)

    @classmethod
    def check_settings(cls, settings: dict | None) -> dict:
        raw = dict(settings or {})
        checked: dict[str, Any] = {}
        for key in _TEXT_SETTINGS:
            value = raw.get(key)
            value = JSON_DEFAULTS[key] if value is None else str(value).strip()
            if len(value) > 200:
                raise DomainError(_l("At most 200 characters."), field=key)
            checked[key] = value
        for key in ("order_path", "query_path"):
            if not checked[key].startswith("/") or any(c in checked[key] for c in " #\\"):
                raise DomainError(_l("A path starts with / and has no spaces."), field=key)
        _check_placeholders(checked["order_path"], (), "order_path")
        _check_placeholders(checked["query_path"], ("reference", "idempotency_key"),
                            "query_path")
        for key in ("auth_header", "idempotency_header"):
            if checked[key] and not HEADER_NAME.fullmatch(checked[key]):
                raise DomainError(_l("A header name is letters, digits and -."), field=key)
        _check_placeholders(checked["auth_value"], ("api_key",), "auth_value")
        if any(c in checked["auth_value"] for c in "\r\n"):
            raise DomainError(_l("A header value is one line."), field="auth_value")
        for key in ("status_field", "reference_field", "message_field", "content_field"):
            if checked[key] and not FIELD_PATH.fullmatch(checked[key]):
                raise DomainError(_l("A field path is names joined by dots, e.g. data.status."),
                                  field=key)
        if not checked["status_field"]:
            raise DomainError(_l("Say where the answer gives the order's status."),
                              field="status_field")
        body = raw.get("body", JSON_DEFAULTS["body"])
        if isinstance(body, str):
            try:
                body = json.loads(body) if body.strip() else JSON_DEFAULTS["body"]
            except ValueError as error:
                raise DomainError(_l("The request body is not valid JSON (%(error)s).",
                                     error=error),
                                  field="body") from None
        if not isinstance(body, dict):
            raise DomainError(_l("The request body must be a JSON object."), field="body")
        if len(json.dumps(body)) > 5000:
            raise DomainError(_l("The request body template is too long."), field="body")
        _check_placeholders(body, STATIC_PLACEHOLDERS, "body", inputs=True)
        checked["body"] = body
        for key in _LIST_SETTINGS:
            value = raw.get(key)
            checked[key] = list(JSON_DEFAULTS[key]) if value is None else _value_list(value, key)
        named = [set(checked[key]) for key in _LIST_SETTINGS]
        if not checked["success_values"]:
            raise DomainError(_l("Give at least one status value that means success."),
                              field="success_values")
        if (named[0] & named[1]) or (named[0] & named[2]) or (named[1] & named[2]):
            raise DomainError(_l("A status value can mean only one of success, pending, failure."),
                              field="success_values")
        return checked

    @classmethod
    def missing_credentials(cls, credentials: dict, settings: dict) -> list[str]:
        """The API key is needed only where the settings send it (header or body)."""
        settings = {**JSON_DEFAULTS, **settings}
        used = "api_key" in _placeholders(settings["body"]) or (
            settings["auth_header"] and "api_key" in _placeholders(settings["auth_value"]))
        return ["API key"] if used and not credentials.get("api_key") else []

    def _settings(self, supplier) -> dict:
        return {**JSON_DEFAULTS, **(supplier.settings or {})}

    def _headers(self, settings: dict, credentials: dict, idempotency_key: str) -> dict:
        headers = {}
        if settings["auth_header"]:
            headers[settings["auth_header"]] = fill(
                settings["auth_value"], {"api_key": credentials.get("api_key", "")})
        if settings["idempotency_header"] and idempotency_key:
            headers[settings["idempotency_header"]] = idempotency_key
        return headers

    def _result(self, settings: dict, answer: Response) -> UpstreamResult:
        _refuse_redirects_and_5xx(answer)
        if answer.status >= 400:  # a definitive no: the supplier's message if it gave one
            message = ""
            try:
                data = answer.json()
                message = _as_text(dig(data, settings["message_field"]))
            except UpstreamError:
                data = None
            return UpstreamResult("failure", message=_short(message or answer.text) or
                                  f"HTTP {answer.status}", raw=data, http_status=answer.status)
        data = _json_or_retry(answer)
        status = _as_text(dig(data, settings["status_field"])).strip()
        outcome = next((name for name, key in zip(OUTCOMES, _LIST_SETTINGS, strict=True)
                        if status in settings[key]), None)
        if outcome is None:
            raise UpstreamRetry(f"the supplier answered an unknown status {status!r}"
                                if status else "the supplier's answer has no status",
                                http_status=answer.status)
        return UpstreamResult(
            outcome,
            reference=_short(_as_text(dig(data, settings["reference_field"])), 128),
            message=_short(_as_text(dig(data, settings["message_field"]))),
            content=_as_text(dig(data, settings["content_field"]))
            if settings["content_field"] else "",
            raw=data, http_status=answer.status,
        )

    def place(self, supplier, credentials, line, idempotency_key):
        settings = self._settings(supplier)
        values: dict[str, Any] = {
            "idempotency_key": idempotency_key, "product": line.product, "qty": line.qty,
            "order": line.order_number, "inputs": dict(line.inputs),
            "api_key": credentials.get("api_key", ""),
        }
        values.update({f"input.{name}": value for name, value in line.inputs.items()})
        answer = _call("POST", _join(supplier.base_url, settings["order_path"]),
                       json=fill(settings["body"], values),
                       headers=self._headers(settings, credentials, idempotency_key))
        return self._result(settings, answer)

    def check(self, supplier, credentials, reference, idempotency_key):
        settings = self._settings(supplier)
        path = fill(settings["query_path"], {"reference": quote(reference or "", safe=""),
                                             "idempotency_key": quote(idempotency_key, safe="")})
        answer = _call("GET", _join(supplier.base_url, path),
                       headers=self._headers(settings, credentials, idempotency_key))
        return self._result(settings, answer)

    def test(self, supplier, credentials):
        """Ask for an order that does not exist: any answer but a transport error proves the
        address and the credential header reach the supplier."""
        settings = self._settings(supplier)
        path = fill(settings["query_path"], {"reference": "kameng-connection-test",
                                             "idempotency_key": "kameng-connection-test"})
        answer = _call("GET", _join(supplier.base_url, path),
                       headers=self._headers(settings, credentials, ""))
        host = urlsplit(supplier.base_url).hostname
        return f"{host} answered HTTP {answer.status} to a status query."


# -- another Kameng shop --------------------------------------------------------------------------

KAMENG_SUCCESS = {"delivered"}
KAMENG_FAILURE = {"failed", "refunded", "cancelled", "expired"}
KAMENG_PENDING = {"pending", "paid", "delivering", "awaiting"}


def canonical_request(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """What a Kameng API request signs: method, path, timestamp, nonce and the body's hash."""
    return "\n".join([method.upper(), path, timestamp, nonce,
                      hashlib.sha256(body).hexdigest()]).encode()


def sign_request(method: str, path: str, body: bytes, key_id: str, secret: str, *,
                 timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The signature headers of one Kameng API request."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_hex(16)
    signature = hmac.new(secret.encode(), canonical_request(method, path, stamp, nonce, body),
                         hashlib.sha256).hexdigest()
    return {"X-Kameng-Key": key_id, "X-Kameng-Timestamp": stamp, "X-Kameng-Nonce": nonce,
            "X-Kameng-Signature": signature}


def _delivered_text(order: dict) -> str:
    lines = []
    for item in order.get("delivered") or []:
        if isinstance(item, dict):
            values = item.get("items") or []
            lines.extend(_as_text(v) for v in (values if isinstance(values, list) else [values]))
        else:
            lines.append(_as_text(item))
    return "\n".join(v for v in lines if v)


class KamengAdapter(Adapter):
    name = "kameng"
    label = _l("Another Kameng shop (its API)")
    credential_fields = (
        CredentialField("key_id", _l("API key id"), secret=False),
        CredentialField("api_secret", _l("API secret")),
    )

    def _request(self, supplier, credentials: dict, method: str, path: str, *,
                 payload: dict | None = None, idempotency_key: str = "") -> Response:
        url = _join(supplier.base_url, path)
        parts = urlsplit(url)
        signed_path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        body = b"" if payload is None else json.dumps(
            payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = sign_request(method, signed_path, body, credentials.get("key_id", ""),
                               credentials.get("api_secret", ""))
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return _call(method, url, data=body if payload is not None else None, headers=headers)

    @staticmethod
    def _refusal(answer: Response) -> tuple[str, Any]:
        """The reason of a 4xx answer from a Kameng API ("code message" of its error object,
        empty when it has none) and the parsed body (None when it is not JSON)."""
        try:
            data = answer.json()
        except UpstreamError:
            return "", None
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            return "", data
        return " ".join(_as_text(error.get(k)) for k in ("code", "message")), data

    def _result(self, answer: Response) -> UpstreamResult:
        _refuse_redirects_and_5xx(answer)
        if answer.status >= 400:
            message, data = self._refusal(answer)
            return UpstreamResult("failure", message=_short(message or answer.text) or
                                  f"HTTP {answer.status}", raw=data, http_status=answer.status)
        data = _json_or_retry(answer)
        order = data.get("order", data) if isinstance(data, dict) else None
        if not isinstance(order, dict):
            raise UpstreamRetry("the upstream shop's answer holds no order",
                                http_status=answer.status)
        status = _as_text(order.get("status"))
        if status in KAMENG_SUCCESS:
            outcome = "success"
        elif status in KAMENG_FAILURE:
            outcome = "failure"
        elif status in KAMENG_PENDING:
            outcome = "pending"
        else:
            raise UpstreamRetry(f"the upstream shop answered an unknown status {status!r}",
                                http_status=answer.status)
        number = _as_text(order.get("number"))
        return UpstreamResult(
            outcome, reference=_short(_as_text(order.get("id")), 128),
            message=_short(f"upstream order {number} is {status}" if number
                           else f"upstream order is {status}"),
            content=_delivered_text(order) if outcome == "success" else "",
            raw=data, http_status=answer.status,
        )

    def place(self, supplier, credentials, line, idempotency_key):
        product = int(line.product) if line.product.isdigit() else line.product
        answer = self._request(supplier, credentials, "POST", "/api/v1/orders",
                               payload={"product_id": product, "quantity": line.qty,
                                        "inputs": dict(line.inputs)},
                               idempotency_key=idempotency_key)
        return self._result(answer)

    def check(self, supplier, credentials, reference, idempotency_key):
        if not reference:
            raise UpstreamRetry("the upstream shop gave no order id to check")
        answer = self._request(supplier, credentials, "GET",
                               f"/api/v1/orders/{quote(reference, safe='')}")
        return self._result(answer)

    def fetch(self, supplier, credentials: dict, path: str) -> Any:
        """GET a JSON resource of the upstream shop's API (its products, for imports and the
        price sync): the parsed answer, UpstreamRetry (try later) or DomainError (refused)."""
        answer = self._request(supplier, credentials, "GET", path)
        _refuse_redirects_and_5xx(answer)
        if answer.status >= 400:
            message = self._refusal(answer)[0]
            host = urlsplit(supplier.base_url).hostname
            raise DomainError(_l("%(host)s refused: %(reason)s (HTTP %(status)s)", host=host,
                                 reason=_short(message or answer.text, 200) or "",
                                 status=answer.status))
        return _json_or_retry(answer)

    def test(self, supplier, credentials):
        answer = self._request(supplier, credentials, "GET", "/api/v1/wallet")
        host = urlsplit(supplier.base_url).hostname
        if answer.status == 200:
            try:
                data = answer.json()
            except UpstreamError:
                data = None
            balance = dig(data, "wallet.balance") if data is not None else None
            if balance is None and isinstance(data, dict):
                balance = data.get("balance")
            if balance is not None:
                return f"{host} accepted the API key; wallet balance {_as_text(balance)}."
            return f"{host} accepted the API key."
        raise DomainError(_l("%(host)s answered HTTP %(status)s: %(text)s",
                             host=host, status=answer.status, text=_short(answer.text, 120)))


ADAPTERS: dict[str, type[Adapter]] = {JsonAdapter.name: JsonAdapter,
                                      KamengAdapter.name: KamengAdapter}


def adapter_for(name: str) -> Adapter:
    kind = ADAPTERS.get(name)
    if kind is None:
        raise DomainError(_l("Unknown supplier protocol %(name)r.", name=name), field="adapter")
    return kind()
