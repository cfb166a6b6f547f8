"""Shop wallet top-ups at the platform: a shop pays the PLATFORM's own payment account (the
sandbox in development and tests, Stripe, EPay) and the money lands in its wallet, which then
pays the shop's open invoices at once.

A top-up needs no table of its own. Its reference, "KMT-<shop id>-<amount>-<random>", names
the shop and the amount; the gateway signs its notification over that reference and the
amount paid; the notification is stored once (PaymentNotification, UNIQUE(gateway, event_id));
and the credit is one ledger transaction (platform_gateway → shop_wallet) whose idempotency
key is the reference — so a top-up is credited at most once, however often it is notified.
Its record is that ledger transaction: the wallet statement lists every top-up.

Where the notifications arrive:
- Stripe: at the platform's one webhook endpoint (/pay/platform/notify/stripe); the payments
  service hands verified events whose reference is a top-up's to `apply_topup_event`.
- EPay: every EPay payment names its own notify URL, and top-ups name
  /pay/platform/topup-notify/epay on the platform domain (kameng.billing.views): the EPay
  gateway finds the shop of a platform payment through its Payment row, which a top-up does
  not have, so here the shop is read from the (signed) reference instead.
- Sandbox (never in production, whatever a shop's test mode says — wallet money is real): the
  console's sandbox page signs the notification with the platform's sandbox secret and hands it
  to the payments service, exactly as a gateway would.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import IntegrityError

from ..errors import DomainError
from ..extensions import db
from ..ledger import service as ledger
from ..money import format_money
from ..payments import registry
from ..payments.gateways.base import (
    Gateway,
    IgnoredEvent,
    InvalidNotification,
    PaymentEvent,
    PaymentStart,
    ReturnUrls,
)
from ..payments.models import PaymentNotification, PlatformPaymentAccount
from ..rows import insert_or_ignore
from ..tenants.hosts import LANDING, public_url
from ..tenants.models import Tenant
from ..tenants.scoping import platform_scope
from . import service as billing

log = logging.getLogger(__name__)

PREFIX = "KMT-"
REFERENCE = re.compile(r"KMT-([1-9][0-9]{0,9})-([1-9][0-9]{0,11})-([0-9a-f]{8})")
MIN_TOPUP = 100  # 1.00


def is_topup_reference(reference: str | None) -> bool:
    return bool(reference) and reference.startswith(PREFIX)


@dataclass(frozen=True)
class TopUpLine:
    title: str
    qty: int = 1


@dataclass
class TopUp:
    """A shop's top-up as a gateway's start() sees it: both the "order" and the "payment"."""

    reference: str
    tenant_id: int
    amount: int
    currency: str
    email: str = ""
    ip: str = ""
    expires_at: datetime | None = None
    title: str = ""
    external_id: str | None = None
    kind: str = "topup"
    lines: list[TopUpLine] = field(default_factory=list)

    @property
    def number(self) -> str:
        return self.reference


def parse_reference(reference: str) -> TopUp | None:
    match = REFERENCE.fullmatch(reference or "")
    if match is None:
        return None
    return TopUp(reference=reference, tenant_id=int(match[1]), amount=int(match[2]), currency="")


def sandbox_allowed() -> bool:
    return current_app.config["KAMENG_ENV"] != "production"


def _complete(kind: type[Gateway], values: dict) -> bool:
    return all(str(values.get(f.name) or "").strip() for f in kind.credential_fields if f.required)


def topup_methods() -> list[tuple[str, str]]:
    """(gateway, label) of every way a shop can top up now: the platform's enabled accounts,
    and the sandbox outside production."""
    methods = []
    if sandbox_allowed():
        methods.append(("sandbox", _("Sandbox (simulated payment)")))
    with platform_scope():
        for name, kind in registry.configurable_gateways().items():
            account = registry.platform_account(name)
            if account is not None and account.enabled and _complete(
                    kind, registry.decrypt_credentials(account.credentials)):
                methods.append((name, kind.label))
    return methods


def ensure_platform_sandbox() -> PlatformPaymentAccount:
    """The platform's sandbox account (its signing secret), created on first use."""
    with platform_scope():
        account = registry.platform_account("sandbox")
        if account is None:
            insert_or_ignore(PlatformPaymentAccount, {
                "gateway": "sandbox", "enabled": True,
                "credentials": registry.encrypt_credentials(
                    {"secret": secrets.token_urlsafe(32)}),
            }, ["gateway"])
            account = registry.platform_account("sandbox")
    return account


def _shop_of_reference(reference: str) -> int:
    topup = parse_reference(reference)
    if topup is None:
        raise InvalidNotification("not a wallet top-up")
    return topup.tenant_id


def platform_gateway(name: str) -> Gateway:
    """`name` bound to the platform's credentials, reading a top-up's shop from its reference."""
    registry.load_gateways()
    kind = registry.GATEWAYS.get(name)
    with platform_scope():
        account = ensure_platform_sandbox() if name == "sandbox" and sandbox_allowed() \
            else registry.platform_account(name)
    if kind is None or account is None or not account.enabled:
        raise InvalidNotification("the platform has no such payment account")
    gateway = kind(registry.decrypt_credentials(account.credentials), owner="platform",
                   tenant_id=None)
    if hasattr(gateway, "_shop_of"):
        # EPay notifications do not name the shop; for a top-up the reference does.
        gateway._shop_of = _shop_of_reference
    return gateway


def new_topup(tenant: Tenant, amount: int, *, email: str, ip: str = "",
              now: datetime | None = None) -> TopUp:
    most = current_app.config["MAX_TOPUP"]
    if not MIN_TOPUP <= amount <= most:
        raise DomainError(_l("Top up between %(least)s and %(most)s.",
                             least=format_money(MIN_TOPUP, tenant.currency),
                             most=format_money(most, tenant.currency)), field="amount")
    reference = f"{PREFIX}{tenant.id}-{amount}-{secrets.token_hex(4)}"
    now = billing.utc_now(now)
    title = _("Wallet top-up for %(shop)s", shop=tenant.name)[:120]
    return TopUp(reference=reference, tenant_id=tenant.id, amount=amount,
                 currency=tenant.currency, email=email, ip=ip[:64],
                 expires_at=now + timedelta(hours=2), title=title,
                 lines=[TopUpLine(title)])


def topup_notify_url(gateway: str) -> str:
    """Where EPay reports a top-up: the platform domain's top-up notify URL."""
    domain = current_app.config["PLATFORM_DOMAIN"]
    path = current_app.url_map.bind(domain, subdomain=LANDING).build(
        "billing_notify.topup_notify", {"gateway": gateway})
    return public_url(domain, path)


def start_topup(tenant: Tenant, amount: int, method: str, *, email: str, ip: str,
                return_url: str, sandbox_page: Callable[[str], str]) -> tuple[TopUp, PaymentStart]:
    """Start paying `amount` into the shop's wallet with the platform's `method`."""
    if method not in dict(topup_methods()):
        raise DomainError(_l("Choose one of the payment methods offered."), field="method")
    topup = new_topup(tenant, amount, email=email, ip=ip)
    if method == "sandbox":
        return topup, PaymentStart(kind="redirect", url=sandbox_page(topup.reference))
    gateway = platform_gateway(method)
    urls = ReturnUrls(success=return_url, cancel=return_url, notify=topup_notify_url(method))
    start = gateway.start(topup, topup, urls)
    log.info("top-up %s of shop %s started with %s", topup.reference, tenant.slug, method)
    return topup, start


def sandbox_notification(tenant: Tenant, reference: str, status: str) -> tuple[bytes, dict]:
    """The signed notification the platform's sandbox sends for a top-up of this shop."""
    topup = parse_reference(reference)
    if not sandbox_allowed() or topup is None or topup.tenant_id != tenant.id:
        raise DomainError(_l("No such sandbox payment."))
    topup.currency = tenant.currency
    gateway = platform_gateway("sandbox")
    return gateway.signed_notification(topup, "succeeded" if status == "pay" else "failed")


def apply_topup_event(event: PaymentEvent, gateway_name: str, *,
                      now: datetime | None = None) -> str | None:
    """Apply a verified notification about a top-up; commits. Returns the reason it was
    refused (it changed nothing then), or None when it was applied or was a replay."""
    now = billing.utc_now(now)
    topup = parse_reference(event.reference)
    if topup is None:
        return "malformed top-up reference"
    if gateway_name == "sandbox" and not sandbox_allowed():
        return "the sandbox does not top up wallets in production"
    if event.tenant_id is not None and event.tenant_id != topup.tenant_id:
        return "the event names another shop"
    with platform_scope():
        tenant = db.session.get(Tenant, topup.tenant_id)
        if tenant is None:
            return "unknown shop"
        if event.status == "succeeded":
            if event.amount != topup.amount:
                return f"amount {event.amount} does not match {topup.amount}"
            if (event.currency or "").upper() != tenant.currency.upper():
                return f"currency {event.currency} does not match {tenant.currency}"
        record = PaymentNotification(gateway=gateway_name, event_id=event.event_id,
                                     tenant_id=tenant.id, payment_id=None, status=event.status)
        db.session.add(record)
        try:
            db.session.flush()
        except IntegrityError:  # seen before: a retry or a replay changes nothing
            db.session.rollback()
            return None
        if event.status == "succeeded":
            key = f"shop-topup:{topup.reference}"
            if ledger.existing_transaction(key) is not None:
                record.outcome = "a second payment of a credited top-up: refund it by hand"
                log.warning("top-up %s was paid twice (%s)", topup.reference, event.event_id)
            else:
                ledger.transfer(
                    key, "shop_topup",
                    ledger.get_account("platform_gateway", currency=tenant.currency),
                    ledger.shop_wallet(tenant.id, tenant.currency), topup.amount,
                    tenant_id=tenant.id, memo=f"wallet top-up ({gateway_name})",
                    details={"reference": topup.reference, "gateway": gateway_name,
                             "external_id": event.external_id or ""})
                with force_locale(tenant.locale or "zh_CN"):  # its mails in its language
                    paid = billing.auto_pay(tenant, now=now)
                    billing.settle_shop(tenant.id, now=now)
                record.outcome = f"topped up the wallet; paid {len(paid)} invoice(s)"
        else:
            record.outcome = f"recorded ({event.status})"
        db.session.commit()
    return None


def receive_topup_notification(gateway_name: str, *, body: bytes, headers, form
                               ) -> tuple[str, int, dict]:
    """A notification at the top-up notify URL (EPay): verify, apply, acknowledge."""
    plain = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}
    try:
        gateway = platform_gateway(gateway_name)
        event = gateway.verify_notification(body, headers, form)
    except IgnoredEvent as ignored:
        db.session.rollback()
        log.info("top-up notification ignored (%s): %s", gateway_name, ignored)
        text, status, response_headers = gateway.acknowledge()
        return text, status, {**response_headers, "Cache-Control": "no-store"}
    except DomainError as error:
        db.session.rollback()
        log.warning("top-up notification refused (%s): %s", gateway_name, error)
        return f"refused: {error}\n", 400, plain
    problem = "not a wallet top-up" if not is_topup_reference(event.reference) else \
        apply_topup_event(event, gateway_name)
    if problem:
        db.session.rollback()
        log.warning("top-up notification refused (%s): %s", gateway_name, problem)
        return f"refused: {problem}\n", 400, plain
    text, status, response_headers = gateway.acknowledge()
    return text, status, {**response_headers, "Cache-Control": "no-store"}


def topups_of(tenant: Tenant, limit: int = 20) -> list:
    """The shop's latest credited top-ups (ledger transactions), newest first."""
    wallet = ledger.shop_wallet(tenant.id, tenant.currency)
    return [(posting, transaction) for posting, transaction in ledger.statement(wallet, limit=200)
            if transaction.kind == "shop_topup"][:limit]
