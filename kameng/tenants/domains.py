"""A shop's own domains: add one, prove it through a DNS TXT record, remove it.

A custom domain routes to its shop only once verified (kameng.tenants.hosts looks up
subdomain rows and verified custom rows only); the platform subdomain keeps working beside it.
Proof is a TXT record `_kameng-challenge.<domain>` holding `kameng-verify=<token>`.

DNS is read through `txt_records(name)`: the function in `app.extensions["kameng.dns_txt"]`
when one is set (tests inject a fake one, so no test touches the network), else dnspython.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..audit.service import Actor, record
from ..errors import Conflict, DomainError, NotFound
from ..extensions import db
from ..rows import row_by_id
from .hosts import subdomain_host
from .models import Domain, Tenant

CHALLENGE_PREFIX = "_kameng-challenge"
CHALLENGE_VALUE_PREFIX = "kameng-verify="
MAX_CUSTOM_DOMAINS = 5
# An unverified claim older than this no longer blocks the domain's real owner.
STALE_CLAIM = timedelta(days=3)
DNS_TIMEOUT = 5.0

LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")

TxtResolver = Callable[[str], list[str]]


class DnsUnavailable(DomainError):
    """No way to look up DNS records here (dnspython missing), or the lookup failed."""

    status_code = 503


# -- plan -----------------------------------------------------------------------------------


def custom_domain_allowed(tenant: Tenant) -> bool:
    """Whether the shop's plan lets it use its own domains.

    With no subscription (a shop made before billing, or by hand) this is allowed in
    development and tests, refused in production.
    """
    from ..billing.models import Subscription

    subscription = db.session.scalar(
        select(Subscription).where(Subscription.tenant_id == tenant.id))
    if subscription is None:
        return current_app.config.get("KAMENG_ENV") != "production"
    if subscription.status == "cancelled":
        return False
    return bool(subscription.plan.custom_domain)


# -- names ----------------------------------------------------------------------------------


def normalize_domain(raw: str) -> str:
    """'Shop.Example.COM.' -> 'shop.example.com', or a DomainError for what is no host name."""
    host = (raw or "").strip().lower().rstrip(".")
    for scheme in ("https://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme):].split("/", 1)[0]
    message = _("Enter a domain name such as shop.example.com (no http://, no path).")
    if not host or len(host) > 253 or ":" in host or "/" in host:
        raise DomainError(message, field="host")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise DomainError(_l("Enter a domain name, not an IP address."), field="host")
    labels = host.split(".")
    if len(labels) < 2 or not all(LABEL.fullmatch(label) for label in labels):
        raise DomainError(message, field="host")
    if labels[-1].isdigit():
        raise DomainError(message, field="host")
    return host


def check_new_domain(host: str) -> str:
    """The normalised host, if a shop may claim it at all (not one of the platform's)."""
    host = normalize_domain(host)
    config = current_app.config
    platform = config["PLATFORM_DOMAIN"]
    if host == platform or host.endswith("." + platform) or host == config["ADMIN_HOST"]:
        raise DomainError(_l("Domains of the platform itself cannot be added; your shop "
                             "already has its address under %(platform)s.", platform=platform),
                          field="host")
    return host


def challenge_name(domain: Domain) -> str:
    return f"{CHALLENGE_PREFIX}.{domain.host}"


def challenge_value(domain: Domain) -> str:
    return f"{CHALLENGE_VALUE_PREFIX}{domain.verification_token}"


# -- operations ------------------------------------------------------------------------------


def custom_domains(tenant: Tenant) -> list[Domain]:
    return list(db.session.scalars(
        select(Domain).where(Domain.tenant_id == tenant.id, Domain.kind == "custom")
        .order_by(Domain.id)))


def get_custom_domain(tenant: Tenant, domain_id: int) -> Domain:
    """One of the shop's own domains (a platform table: the shop is named explicitly)."""
    domain = row_by_id(Domain, domain_id)
    if domain is None or domain.tenant_id != tenant.id or domain.kind != "custom":
        raise NotFound(_l("No such domain."))
    return domain


def add_domain(tenant: Tenant, host: str, *, actor: Actor) -> Domain:
    """Claim `host` for the shop, unverified, with a fresh verification token."""
    if not custom_domain_allowed(tenant):
        raise DomainError(_l("Your plan does not include custom domains. Upgrade to use your "
                             "own domain."), field="host")
    host = check_new_domain(host)
    existing = db.session.scalar(select(Domain).where(Domain.host == host))
    if existing is not None:
        stale = (existing.kind == "custom" and not existing.verified
                 and existing.tenant_id != tenant.id and existing.created_at is not None
                 and _aware(existing.created_at) < datetime.now(UTC) - STALE_CLAIM)
        if not stale:
            if existing.tenant_id == tenant.id:
                raise Conflict(_l("Your shop already has this domain."), field="host")
            raise Conflict(_l("This domain is already used by another shop."), field="host")
        db.session.delete(existing)  # an old unproven claim: the real owner may take it
        db.session.flush()
    count = db.session.scalar(select(func.count()).select_from(Domain).where(
        Domain.tenant_id == tenant.id, Domain.kind == "custom"))
    if count >= MAX_CUSTOM_DOMAINS:
        raise DomainError(_l("A shop may have at most %(n)d domains of its own.",
                             n=MAX_CUSTOM_DOMAINS), field="host")
    domain = Domain(host=host, tenant_id=tenant.id, kind="custom", verified=False,
                    verification_token=secrets.token_hex(16))
    db.session.add(domain)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError:
        raise Conflict(_l("This domain is already used by another shop."), field="host") from None
    record(actor, "domain.added", tenant_id=tenant.id, target=host)
    return domain


def verify_domain(domain: Domain, *, actor: Actor) -> Domain:
    """Look for the TXT record; mark the domain verified (it routes from now on) if found."""
    if domain.verified:
        return domain
    wanted = challenge_value(domain)
    values = txt_records(challenge_name(domain))
    if wanted not in (value.strip() for value in values):
        raise DomainError(_l("The TXT record %(name)s with the value %(value)s was not found. "
                             "DNS changes can take a while to show; try again later.",
                             name=challenge_name(domain), value=wanted))
    domain.verified = True
    domain.verified_at = datetime.now(UTC)
    db.session.flush()
    record(actor, "domain.verified", tenant_id=domain.tenant_id, target=domain.host)
    return domain


def remove_domain(domain: Domain, *, actor: Actor) -> None:
    """Stop serving the shop on this domain (its platform subdomain stays)."""
    if domain.kind != "custom":
        raise DomainError(_l("The shop's platform address cannot be removed."))
    host, tenant_id = domain.host, domain.tenant_id
    db.session.delete(domain)
    db.session.flush()
    record(actor, "domain.removed", tenant_id=tenant_id, target=host)


def target_host(tenant: Tenant) -> str:
    """Where a CNAME record of a custom domain points: the shop's platform subdomain."""
    return subdomain_host(tenant.slug)


# -- DNS ------------------------------------------------------------------------------------


def txt_records(name: str) -> list[str]:
    """The TXT strings of `name` ([] when it has none); DnsUnavailable when DNS cannot be asked."""
    injected = current_app.extensions.get("kameng.dns_txt")
    if injected is not None:
        return list(injected(name))
    return _dnspython_txt(name)


def _dnspython_txt(name: str) -> list[str]:
    try:
        import dns.exception
        import dns.resolver
    except ImportError:
        raise DnsUnavailable(_l("DNS lookup is unavailable on this server (dnspython is not "
                                "installed); ask the platform to verify the domain.")) from None
    try:
        answer = dns.resolver.resolve(name, "TXT", lifetime=DNS_TIMEOUT)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException:
        raise DnsUnavailable(_l("The DNS lookup failed; try again in a minute.")) from None
    values = []
    for record_ in answer:
        values.append(b"".join(record_.strings).decode("utf-8", "replace"))
    return values


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
