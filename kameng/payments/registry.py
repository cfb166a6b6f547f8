"""Which payment methods a shop offers, and gateways bound to the right credentials.

A shop offers a gateway with its own credentials (`PaymentAccount`) or, if it has none and
allows it, with the platform's (`PlatformPaymentAccount`; the platform then credits the shop's
margin to its wallet). The sandbox is offered in development and to shops in test mode; the
wallet ("balance") to logged-in buyers. Credentials are stored as a Fernet-encrypted JSON
object and only ever shown masked.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from flask import current_app, g, has_request_context
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ..errors import DomainError
from ..extensions import db
from ..rows import insert_or_ignore
from ..security.credentials import masked
from ..security.crypto import keyring
from .gateways.base import Gateway
from .gateways.sandbox import SandboxGateway
from .models import PaymentAccount, PlatformPaymentAccount

# Gateways in the order they are offered to buyers. Each module registers itself here.
GATEWAYS: dict[str, type[Gateway]] = {"sandbox": SandboxGateway}
BALANCE = "balance"


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    owner: str  # "shop" or "platform": whose account collects the money


def register(gateway: type[Gateway]) -> type[Gateway]:
    GATEWAYS[gateway.name] = gateway
    return gateway


def load_gateways() -> None:
    # Imported for their register() side effect; kept here so the registry is complete
    # wherever it is used.
    from .gateways import epay, stripe_gateway  # noqa: F401


def decrypt_credentials(token: str) -> dict:
    if not token:
        return {}
    return json.loads(keyring().decrypt_secret(token))


def encrypt_credentials(values: dict) -> str:
    return keyring().encrypt_secret(json.dumps(values, sort_keys=True))


def sandbox_allowed(tenant) -> bool:
    return (current_app.config["KAMENG_ENV"] != "production"
            or bool((tenant.settings or {}).get("test_mode")))


def shop_account(gateway: str) -> PaymentAccount | None:
    """The bound shop's account for `gateway`."""
    return db.session.scalar(select(PaymentAccount).where(PaymentAccount.gateway == gateway))


def platform_account(gateway: str) -> PlatformPaymentAccount | None:
    return db.session.scalar(
        select(PlatformPaymentAccount).where(PlatformPaymentAccount.gateway == gateway))


def _complete(gateway: type[Gateway], values: dict) -> bool:
    return all(str(values.get(f.name) or "").strip()
               for f in gateway.credential_fields if f.required)


def ensure_sandbox_account(tenant, account: PaymentAccount | None = None) -> PaymentAccount:
    """The shop's sandbox account (`account` when the caller has it already), with a random
    signing secret created on first use."""
    account = account or shop_account("sandbox")
    if account is None:  # created once even when several buyers start paying at once
        insert_or_ignore(PaymentAccount, {
            "tenant_id": tenant.id, "gateway": "sandbox", "enabled": True,
            "credentials": encrypt_credentials({"secret": secrets.token_urlsafe(32)}),
        }, ["tenant_id", "gateway"])
        account = shop_account("sandbox")
    if not decrypt_credentials(account.credentials).get("secret"):
        account.credentials = encrypt_credentials({"secret": secrets.token_urlsafe(32)})
        db.session.flush()
    return account


def configurable_gateways() -> dict[str, type[Gateway]]:
    """The gateways an account can be set up for: all but the built-in sandbox."""
    load_gateways()
    return {name: kind for name, kind in GATEWAYS.items() if name != "sandbox"}


def method_label(name: str) -> str:
    """'stripe' -> 'Stripe': the buyer-facing name of a payment method."""
    if name == BALANCE:
        return _("Wallet balance")
    load_gateways()
    kind = GATEWAYS.get(name)
    return kind.label if kind is not None else name


def save_credentials(tenant, gateway: str, values: dict, *, enabled: bool
                     ) -> PaymentAccount | PlatformPaymentAccount:
    """Store a shop's credentials (the platform's when `tenant` is None); a field left empty
    keeps its stored value (write-only); enabling needs every required field."""
    kind = configurable_gateways().get(gateway)
    if kind is None:
        raise DomainError(_l("Unknown payment gateway."), field="gateway")
    if tenant is None:
        account = platform_account(gateway)
        if account is None:
            account = PlatformPaymentAccount(gateway=gateway, credentials="", enabled=False)
            db.session.add(account)
    else:
        account = shop_account(gateway)
        if account is None:
            account = PaymentAccount(tenant_id=tenant.id, gateway=gateway, credentials="")
            db.session.add(account)
    stored = decrypt_credentials(account.credentials)
    for spec in kind.credential_fields:
        new = (values.get(spec.name) or "").strip()
        if new or not spec.secret:  # an empty secret keeps the stored one; others clear
            stored[spec.name] = new
    if enabled and not _complete(kind, stored):
        missing = [str(f.label) for f in kind.credential_fields
                   if f.required and not str(stored.get(f.name) or "").strip()]
        raise DomainError(_l("Fill in %(missing)s before enabling %(label)s.",
                             missing=', '.join(missing), label=kind.label))
    if enabled:
        kind(stored, owner="platform" if tenant is None else "shop",
             tenant_id=tenant.id if tenant else None).check_credentials()
    account.credentials = encrypt_credentials(stored)
    account.enabled = enabled
    db.session.flush()
    return account


def masked_credentials(account: PaymentAccount | PlatformPaymentAccount | None,
                       gateway: type[Gateway]) -> dict[str, str]:
    """What a form may show of stored credentials: secrets as ••••last4, others in full."""
    values = decrypt_credentials(account.credentials) if account else {}
    return masked(values, gateway.credential_fields)


def _gateway_methods(tenant) -> list[Method]:
    """The gateways `tenant` offers (two queries: the shop's accounts, the platform's)."""
    load_gateways()
    shop_accounts = {a.gateway: a for a in db.session.scalars(select(PaymentAccount))}
    platform_accounts = {}
    if (tenant.settings or {}).get("platform_payments", True):
        platform_accounts = {a.gateway: a for a in db.session.scalars(
            select(PlatformPaymentAccount).where(PlatformPaymentAccount.enabled.is_(True)))}
    _seen_accounts()[tenant.id] = {"shop": shop_accounts, "platform": platform_accounts}
    methods = []
    for name, kind in GATEWAYS.items():
        if name == "sandbox":
            if sandbox_allowed(tenant):
                methods.append(Method(name, kind.label, "shop"))
            continue
        for owner, account in (("shop", shop_accounts.get(name)),
                               ("platform", platform_accounts.get(name))):
            if account is not None and account.enabled and _complete(
                    kind, decrypt_credentials(account.credentials)):
                methods.append(Method(name, kind.label, owner))
                break
    return methods


def _seen_accounts() -> dict:
    """Accounts this request has loaded already, per shop and owner (gateway_for reuses them:
    the same ORM objects, so a change within the request shows)."""
    return g.setdefault("_kameng_accounts", {}) if has_request_context() else {}


def available_methods(tenant, customer=None) -> list[Method]:
    """The payment methods a buyer of `tenant` can choose from, in display order (worked out
    once per request)."""
    cache = g.setdefault("_kameng_methods", {}) if has_request_context() else {}
    methods = cache.get(tenant.id)
    if methods is None:
        methods = cache[tenant.id] = _gateway_methods(tenant)
    if customer is not None and getattr(customer, "is_authenticated", False):
        return [*methods, Method(BALANCE, "Wallet balance", "shop")]
    return list(methods)


def method_available(tenant, name: str, customer=None) -> Method:
    for method in available_methods(tenant, customer):
        if method.name == name:
            return method
    if name == BALANCE:
        raise DomainError(_l("Log in to pay from your wallet."), field="payment_method")
    raise DomainError(_l("Choose one of the payment methods offered."), field="payment_method")


def gateway_for(tenant, name: str, owner: str) -> Gateway:
    """`name` bound to the shop's or the platform's credentials."""
    load_gateways()
    kind = GATEWAYS.get(name)
    if kind is None:
        raise DomainError(_l("Unknown payment gateway."))
    seen = _seen_accounts().get(tenant.id if tenant else None, {}).get(owner, {}).get(name)
    if name == "sandbox":
        if not sandbox_allowed(tenant):
            raise DomainError(_l("The sandbox is not available for this shop."))
        account = ensure_sandbox_account(tenant, seen if owner == "shop" else None)
    elif owner == "platform":
        account = seen or platform_account(name)
    else:
        account = seen or shop_account(name)
    values = decrypt_credentials(account.credentials) if account else {}
    return kind(values, owner=owner, tenant_id=tenant.id if tenant else None)
