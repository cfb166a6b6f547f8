"""Shop webhooks: endpoints a shop registers, and signed deliveries of order and stock events.

How an event reaches a shop's server
------------------------------------
`emit(tenant_id, event, data)` runs inside the transaction that changed the order (or the
stock): it writes one `WebhookDelivery` per active endpoint of the shop subscribed to the
event, and an outbox row per delivery. After the commit the outbox relay hands each delivery
to the `send_webhook` job (or, in inline mode, calls `deliver_webhook` itself).

`deliver_webhook(delivery_id)` POSTs the delivery's JSON body through the SSRF-safe client.
A 2xx answer marks it `delivered`. Anything else (an error status, a timeout, a refused
connection) records the attempt, the status and up to 2 KB of the answer, and raises, so the
job is retried with the backoff of `POLICIES["send_webhook"]`; the attempt after the last
retry marks it `failed` (without raising: there is nothing left to retry), and staff can
re-send it from the console. A URL the SSRF rules refuse fails at once, without retries.
Delivery is at least once: a receiver should use X-Kameng-Delivery to ignore a repeat.

What the receiver gets
----------------------
    POST <endpoint URL>
    Content-Type: application/json
    X-Kameng-Event: order.paid
    X-Kameng-Delivery: 3f0c…                 (the delivery id: the same on every retry and
                                              re-send of this delivery; also "id" in the body)
    X-Kameng-Signature: t=1718000000,v1=5d41…

    {"id": "3f0c…", "event": "order.paid", "created": "2024-06-10T06:13:20+00:00",
     "data": {...}}

How a receiver verifies a delivery
----------------------------------
1. Split X-Kameng-Signature on "," into `t=<unix time>` and `v1=<hex>`.
2. Compute HMAC-SHA256 with the endpoint's signing secret (the whole string shown once in the
   console, "whsec_…", as UTF-8 bytes) over `<t>.<raw body>`: the timestamp, a dot, and
   the request body exactly as received (bytes, before any JSON parsing).
3. Compare its hex digest with v1 in constant time (hmac.compare_digest), and refuse a `t`
   more than a few minutes away from the receiver's clock (a replayed old delivery).

    expected = hmac.new(secret.encode(), f"{t}.".encode() + raw_body, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(expected, v1) and abs(time.time() - int(t)) < 300
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import time
import uuid
from datetime import UTC, datetime

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select

from ..errors import DomainError
from ..extensions import db
from ..security.crypto import keyring
from ..security.http import (
    UnsafeURL,
    UpstreamError,
    address_allowed,
    check_url,
    resolve,
    safe_request,
)
from ..tenants.scoping import platform_scope, tenant_scope
from ..workers import outbox
from .models import WEBHOOK_EVENTS, WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Kameng-Signature"
EVENT_HEADER = "X-Kameng-Event"
DELIVERY_HEADER = "X-Kameng-Delivery"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a label, not a secret
TEST_EVENT = "order.paid"  # what "send a test event" sends: the event most receivers handle
RESPONSE_KEPT = 2048  # bytes of the receiver's answer kept on the delivery
CONNECT_TIMEOUT = 3.0
TIMEOUT = 10.0
MAX_ENDPOINTS = 20  # per shop: each one multiplies every event


class WebhookDeliveryFailed(Exception):
    """The receiver did not take the delivery; raised so the job is retried with backoff."""


# -- signing ------------------------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of '<timestamp>.<body>' with the endpoint's secret."""
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body,
                    hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def body_of(delivery: WebhookDelivery) -> bytes:
    """The exact bytes sent (and signed) for a delivery."""
    return json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def max_attempts() -> int:
    """The first try and every retry of the send_webhook job."""
    from ..workers.queues import POLICIES

    return len(POLICIES["send_webhook"][2]) + 1


# -- endpoints -----------------------------------------------------------------------------------


def check_endpoint_url(url: str) -> str:
    """The URL, stripped, if deliveries may go there; UnsafeURL (a DomainError) otherwise.

    The form of the URL (https unless the operator allows http, no credentials), and the
    addresses its host has now: an address inside the network is refused on save, not only when
    called (where safe_request checks again, against a changed DNS answer)."""
    url = (url or "").strip()
    if len(url) > 500:
        raise UnsafeURL(_l("The URL is too long (500 characters at most)."), field="url")
    _scheme, host, port, _path = check_url(url)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if not address_allowed(str(literal)):
            raise UnsafeURL(_l("%(host)s is an address inside the network; webhooks cannot be sent "
                               "there.", host=host), field="url")
        return url
    try:
        resolve(host, port)
    except UpstreamError:
        raise UnsafeURL(_l("The host name %(host)s does not resolve.",
                           host=host), field="url") from None
    return url


def _events(events) -> list[str]:
    chosen = [e for e in WEBHOOK_EVENTS if e in set(events or ())]
    if not chosen:
        raise DomainError(_l("Choose at least one event."), field="events")
    return chosen


def list_endpoints() -> list[WebhookEndpoint]:
    """The bound shop's endpoints, oldest first."""
    return list(db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def create_endpoint(tenant_id: int, *, url: str, events) -> tuple[WebhookEndpoint, str]:
    """A new active endpoint and its signing secret (in clear: show it once, then forget it)."""
    with tenant_scope(tenant_id):
        if len(list_endpoints()) >= MAX_ENDPOINTS:
            raise DomainError(_l("A shop can have %(max_endpoints)s webhook endpoints at most.",
                                 max_endpoints=MAX_ENDPOINTS))
        secret = new_secret()
        endpoint = WebhookEndpoint(tenant_id=tenant_id, url=check_endpoint_url(url),
                                   events=_events(events), active=True,
                                   secret=keyring().encrypt_secret(secret))
        db.session.add(endpoint)
        db.session.flush()
    return endpoint, secret


def update_endpoint(endpoint: WebhookEndpoint, *, url: str, events, active: bool) -> list[str]:
    """Change an endpoint; returns the names of the fields changed (for the audit log)."""
    url = check_endpoint_url(url)
    events = _events(events)
    changed = [name for name, old, new in (("url", endpoint.url, url),
                                           ("events", endpoint.events, events),
                                           ("active", endpoint.active, active)) if old != new]
    endpoint.url, endpoint.events, endpoint.active = url, events, bool(active)
    return changed


def rotate_secret(endpoint: WebhookEndpoint) -> str:
    """A new signing secret (in clear: show it once). Deliveries sign with it from now on,
    retries of older deliveries too."""
    secret = new_secret()
    endpoint.secret = keyring().encrypt_secret(secret)
    return secret


def delete_endpoint(endpoint: WebhookEndpoint) -> None:
    """Remove an endpoint and its deliveries (waiting ones are then skipped as missing)."""
    db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    db.session.delete(endpoint)


def recent_deliveries(endpoint: WebhookEndpoint, limit: int = 50) -> list[WebhookDelivery]:
    return list(db.session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
        .order_by(WebhookDelivery.id.desc()).limit(limit)))


# -- deliveries ----------------------------------------------------------------------------------


def _new_delivery(endpoint: WebhookEndpoint, event: str, data: dict) -> WebhookDelivery:
    delivery_id = str(uuid.uuid4())
    delivery = WebhookDelivery(
        tenant_id=endpoint.tenant_id, endpoint_id=endpoint.id, delivery_id=delivery_id,
        event=event, status="pending", attempts=0, response_body="",
        payload={"id": delivery_id, "event": event,
                 "created": datetime.now(UTC).isoformat(timespec="seconds"), "data": data})
    db.session.add(delivery)
    db.session.flush()
    outbox.add("webhook.deliver", tenant_id=endpoint.tenant_id, delivery_id=delivery.id)
    return delivery


def emit(tenant_id: int, event: str, payload: dict,
         endpoints: list[WebhookEndpoint] | None = None) -> list[WebhookDelivery]:
    """Record one delivery per active endpoint subscribed to `event`, in the caller's
    transaction; they are sent after its commit (the outbox). `endpoints`: what
    `subscribed(tenant_id, event)` returned, when the caller emits several events at once."""
    if endpoints is None:
        endpoints = subscribed(tenant_id, event)
    with tenant_scope(tenant_id):
        return [_new_delivery(endpoint, event, payload) for endpoint in endpoints]


def subscribed(tenant_id: int, event: str) -> list[WebhookEndpoint]:
    """The shop's active endpoints subscribed to `event`."""
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    with tenant_scope(tenant_id):
        return [e for e in db.session.scalars(
            select(WebhookEndpoint).where(WebhookEndpoint.active).order_by(WebhookEndpoint.id))
            if event in (e.events or [])]


def send_test(endpoint: WebhookEndpoint, currency: str) -> WebhookDelivery:
    """A delivery of a made-up paid order ("test": true) to one active endpoint, whatever
    events it is subscribed to."""
    if not endpoint.active:
        raise DomainError(_l("Turn the endpoint on to send it a test event."))
    data = {"test": True, "order": "TEST-000000", "status": "paid", "kind": "purchase",
            "email": "buyer@example.com", "total": 1000, "amount_due": 1000,
            "currency": currency, "lines": [{"title": "Test product", "qty": 1,
                                             "unit_price": 1000}]}
    return _new_delivery(endpoint, TEST_EVENT, data)


def resend(delivery: WebhookDelivery) -> None:
    """Send a delivery again: the same row and delivery id (so a receiver that did get it can
    tell it is a repeat), a fresh round of attempts with the job's backoff."""
    delivery.status = "pending"
    delivery.attempts = 0
    outbox.add("webhook.deliver", tenant_id=delivery.tenant_id, delivery_id=delivery.id)


def send_queued() -> None:
    """After the commit of a console action that queued deliveries: inline mode sends them now;
    queue mode leaves them to the outbox relay (it runs every two seconds)."""
    if current_app.config["DELIVERY_MODE"] != "queue":
        try:
            outbox.relay()
        except Exception:  # the rows stay in the outbox for the next relay
            db.session.rollback()
            log.exception("webhook deliveries not sent; left in the outbox")


def _record(delivery_pk: int, tenant_id: int, *, status: str | None, response_status,
            response_body: str) -> WebhookDelivery | None:
    """Note one attempt; `status` None: a failed attempt, "failed" once it was the last."""
    with tenant_scope(tenant_id):
        delivery = db.session.get(WebhookDelivery, delivery_pk, populate_existing=True)
        if delivery is None:  # its endpoint was deleted during the call
            db.session.rollback()
            return None
        delivery.attempts += 1
        delivery.last_attempt_at = datetime.now(UTC)
        delivery.response_status = response_status
        delivery.response_body = response_body.replace("\x00", "\ufffd")  # PostgreSQL text
        if status is None:  # a failed attempt
            status = "failed" if delivery.attempts >= max_attempts() else "pending"
        delivery.status = status
        db.session.commit()
        return delivery


def deliver_webhook(delivery_id: int) -> str:
    """Send one delivery (the send_webhook job). Idempotent: a delivered or failed delivery is
    not sent again (a re-send sets it back to pending). Returns the delivery's status, or raises
    WebhookDeliveryFailed when the attempt failed and the job should retry."""
    with platform_scope():
        tenant_id = db.session.scalar(
            select(WebhookDelivery.tenant_id).where(WebhookDelivery.id == delivery_id))
    if tenant_id is None:
        db.session.rollback()
        return "missing"
    with tenant_scope(tenant_id):
        delivery = db.session.get(WebhookDelivery, delivery_id, populate_existing=True)
        if delivery.status != "pending":
            db.session.rollback()
            return delivery.status
        endpoint = db.session.get(WebhookEndpoint, delivery.endpoint_id)
        if endpoint is None:  # deleted since: its deliveries go with it
            db.session.rollback()
            return "missing"
        if not endpoint.active:
            _record(delivery.id, tenant_id, status="failed", response_status=None,
                    response_body="Not sent: the endpoint is turned off.")
            return "failed"
        url, body, event = endpoint.url, body_of(delivery), delivery.event
        ident = delivery.delivery_id
        secret = keyring().decrypt_secret(endpoint.secret)
    db.session.rollback()  # no transaction stays open during the call
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", EVENT_HEADER: event, DELIVERY_HEADER: ident,
               SIGNATURE_HEADER: signature_header(secret, timestamp, body)}
    try:
        answer = safe_request("POST", url, data=body, headers=headers,
                              connect_timeout=CONNECT_TIMEOUT, timeout=TIMEOUT)
    except UnsafeURL as error:  # refused before any connection: retrying changes nothing
        _record(delivery_id, tenant_id, status="failed", response_status=None,
                response_body=f"Not sent: {error.message}")
        return "failed"
    except UpstreamError as error:
        done = _record(delivery_id, tenant_id, status=None, response_status=None,
                       response_body=str(error)[:RESPONSE_KEPT])
    else:
        snippet = answer.body[:RESPONSE_KEPT].decode("utf-8", errors="replace")
        if 200 <= answer.status < 300:
            _record(delivery_id, tenant_id, status="delivered", response_status=answer.status,
                    response_body=snippet)
            return "delivered"
        done = _record(delivery_id, tenant_id, status=None, response_status=answer.status,
                       response_body=snippet)
    if done is None:
        return "missing"
    if done.status == "failed":  # that was the last retry: staff can re-send it
        log.info("webhook delivery %s failed after %d attempts", ident, done.attempts)
        return "failed"
    raise WebhookDeliveryFailed(
        f"webhook delivery {ident} attempt {done.attempts}: "
        f"{done.response_status or done.response_body[:200]}")
