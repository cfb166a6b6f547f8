"""Checking a signed API request: which key sent it, whether it is fresh, unreplayed and
untampered, and whose it is (a shop's staff member, an agent buyer, or a super-admin).

Every request (but the public reference pages) carries four headers:

    X-Kameng-Key: <key id>
    X-Kameng-Timestamp: <unix seconds>
    X-Kameng-Nonce: <16-64 characters of A-Z a-z 0-9 _ ->, never reused with the same key
    X-Kameng-Signature: hex HMAC-SHA256(secret, canonical)

    canonical = METHOD "\\n" target "\\n" timestamp "\\n" nonce "\\n" hex SHA-256(raw body)

where `target` is the path exactly as sent on the request line (percent-encoded as sent) with
"?query" appended when there is a query string, and the raw body is the bytes sent (empty for
GET). This is `kameng.delivery.adapters.canonical_request`, which the "kameng" supplier
adapter signs with, so one Kameng shop buys from another with no glue.

Checks, in order (each failure is 401 with its own code): all four headers present and well
formed; the key exists, is not revoked and belongs to this host (a shop's keys work only on
that shop's hosts, super-admin keys only on the admin host); the timestamp is within 300
seconds of the server's clock; the signature matches (constant-time comparison); the nonce was
never used with this key (recorded, and committed, only after the signature checked out, so
nobody can burn another key's nonces). Then the owner must still be an active account, and a
buyer still an agent (403). The key's last-used time is written with the nonce.
"""

from __future__ import annotations

import hmac
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from flask import g, request

from ..delivery.adapters import canonical_request
from ..extensions import db
from ..members.models import Customer
from ..merchant.models import StaffUser
from ..superadmin.models import PlatformUser
from ..tenants.models import Tenant
from . import service
from .errors import ApiError
from .models import ApiKey

SIGNATURE_WINDOW = 300  # seconds either side of the server's clock
KEY_HEADER = "X-Kameng-Key"
TIMESTAMP_HEADER = "X-Kameng-Timestamp"
NONCE_HEADER = "X-Kameng-Nonce"
SIGNATURE_HEADER = "X-Kameng-Signature"
NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
TIMESTAMP = re.compile(r"[0-9]{1,12}")
SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Caller:
    """Who signed the request."""

    key: ApiKey
    kind: str  # "staff", "customer" or "platform"
    scopes: frozenset[str]
    tenant: Tenant | None = None
    staff: StaffUser | None = None
    customer: Customer | None = None

    @property
    def key_id(self) -> str:
        return self.key.key_id


def signed_target(environ: dict) -> str:
    """The path as sent on the request line, plus "?query" when there is one."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    path = raw.split("?", 1)[0]
    if path.startswith(("http://", "https://")):  # an absolute-form request target
        path = urlsplit(path).path or "/"
    if not path.startswith("/"):
        path = quote((environ.get("SCRIPT_NAME") or "") + (environ.get("PATH_INFO") or "/"),
                     safe="/;=,:@!$&'()*+~-._")
    query = environ.get("QUERY_STRING") or ""
    return path + (f"?{query}" if query else "")


def _header(name: str, pattern: re.Pattern) -> str:
    value = request.headers.get(name, "")
    if not pattern.fullmatch(value):
        raise ApiError("missing_signature", f"The {name} header is missing or malformed.")
    return value


def authenticate(tenant: Tenant | None) -> Caller:
    """The caller of this request on `tenant`'s host (None: the admin host), or ApiError."""
    key_id = request.headers.get(KEY_HEADER, "")
    if not key_id or len(key_id) > 40:
        raise ApiError("missing_signature", f"The {KEY_HEADER} header is missing.")
    stamp = _header(TIMESTAMP_HEADER, TIMESTAMP)
    nonce = _header(NONCE_HEADER, NONCE)
    signature = _header(SIGNATURE_HEADER, SIGNATURE).lower()
    key = service.key_by_id(key_id)
    expected_owner = tenant.id if tenant is not None else None
    if (key is None or key.revoked_at is not None or key.tenant_id != expected_owner
            or (tenant is None) != (key.owner_kind == "platform")):
        raise ApiError("invalid_key")
    if abs(int(stamp) - time.time()) > SIGNATURE_WINDOW:
        raise ApiError("stale_timestamp")
    body = request.get_data(cache=True)
    message = canonical_request(request.method, signed_target(request.environ), stamp, nonce,
                                body)
    expected = hmac.new(service.key_secret(key).encode(), message, "sha256").hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise ApiError("bad_signature")
    key.last_used_at = datetime.now(UTC)
    if not service.use_nonce(key.key_id, nonce):  # commits the nonce and last_used_at
        raise ApiError("replayed_nonce")
    caller = _caller(key, tenant)
    g.api_caller = caller
    return caller


def _caller(key: ApiKey, tenant: Tenant | None) -> Caller:
    scopes = frozenset(key.scopes or ())
    if key.owner_kind == "platform":
        user = db.session.get(PlatformUser, key.owner_id)
        if user is None or not user.is_active:
            raise ApiError("owner_inactive")
        return Caller(key=key, kind="platform", scopes=scopes)
    if not service.plan_allows_api(tenant.id):  # e.g. after a downgrade
        raise ApiError("forbidden", "This shop's plan does not include API access.")
    if key.owner_kind == "staff":
        staff = db.session.get(StaffUser, key.owner_id)
        if staff is None or staff.tenant_id != tenant.id or not staff.is_active:
            raise ApiError("owner_inactive")
        return Caller(key=key, kind="staff", scopes=scopes, tenant=tenant, staff=staff)
    customer = db.session.get(Customer, key.owner_id)
    if customer is None or customer.tenant_id != tenant.id or not customer.is_active:
        raise ApiError("owner_inactive")
    if not service.is_agent(customer):
        raise ApiError("not_agent")
    return Caller(key=key, kind="customer", scopes=scopes, tenant=tenant, customer=customer)


def current_caller() -> Caller | None:
    return g.get("api_caller")


def rate_limit_key() -> str:
    """Rate limits count per key (set by `authenticate` before the limit is checked)."""
    caller = current_caller()
    return f"api-key:{caller.key_id}" if caller is not None else f"api-ip:{request.remote_addr}"
