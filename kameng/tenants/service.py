"""Provisioning shops: create, list, suspend and resume tenants and their host names."""

from __future__ import annotations

import re

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ..catalog.service import stock_new_shop
from ..errors import Conflict, DomainError, NotFound
from ..extensions import db
from ..merchant.service import create_staff
from .hosts import public_url, subdomain_host
from .models import Domain, Tenant
from .scoping import tenant_scope

SLUG_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{1,30}[a-z0-9])")

# Names a shop may not take: they are, or may become, the platform's own host names.
RESERVED_SLUGS = frozenset(
    """
    admin administrator api app apps assets auth billing blog cdn console dashboard dev
    docs email files ftp help imap img images join kameng login logout mail media mx news
    ns ns1 ns2 ns3 ns4 pay payment payments platform pop pop3 root sandbox secure shop shops
    signin signup smtp sso stage staging static status store support system test webhook
    webhooks webmail www www1 www2
    """.split()
)


def check_slug(slug: str) -> str:
    """Return the normalised slug, or raise a DomainError saying what is wrong with it."""
    slug = (slug or "").strip().lower()
    if not SLUG_PATTERN.fullmatch(slug):
        raise DomainError(
            _l("The shop address must be 3 to 32 characters: lower-case letters, digits and "
               "hyphens, not starting or ending with a hyphen."),
            field="slug",
        )
    if "--" in slug:
        raise DomainError(_l("The shop address must not contain two hyphens in a row."),
                          field="slug")
    if slug in RESERVED_SLUGS:
        raise DomainError(_l("The shop address '%(slug)s' is reserved.", slug=slug), field="slug")
    return slug


def slug_available(slug: str) -> bool:
    slug = check_slug(slug)
    taken = db.session.scalar(select(func.count()).select_from(Tenant).where(Tenant.slug == slug))
    host_taken = db.session.scalar(
        select(func.count()).select_from(Domain).where(Domain.host == subdomain_host(slug))
    )
    return not taken and not host_taken


def create_tenant(
    *,
    slug: str,
    name: str,
    owner_email: str,
    owner_password: str,
    theme: str = "default",
    locale: str = "zh_CN",
    plan=None,
) -> Tenant:
    """Create a live shop on `<slug>.<PLATFORM_DOMAIN>` with its owner account.

    With a `plan` (kameng.billing Plan) the shop is subscribed to it from today and its supply
    catalog is listed at the plan's default markup; without one the platform runs the shop
    unbilled and without plan limits (the platform's own or hand-made shops)."""
    slug = check_slug(slug)
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise DomainError(_l("The shop name must be 1 to 120 characters."), field="name")
    if not slug_available(slug):
        raise Conflict(_l("The shop address '%(slug)s' is taken.", slug=slug), field="slug")
    tenant = Tenant(slug=slug, name=name, theme=theme, locale=locale, settings={},
                    currency=current_app.config["CURRENCY"])
    tenant.domains.append(Domain(host=subdomain_host(slug), kind="subdomain", verified=True))
    db.session.add(tenant)
    db.session.flush()
    with tenant_scope(tenant.id):
        create_staff(tenant, email=owner_email, password=owner_password, role="owner")
        stock_new_shop(tenant, markup_bp=plan.default_markup_bp if plan is not None else None)
    if plan is not None:
        from ..billing.service import start_subscription

        start_subscription(tenant, plan)
    db.session.flush()
    return tenant


def get_tenant(slug: str) -> Tenant:
    tenant = db.session.scalar(select(Tenant).where(Tenant.slug == (slug or "").strip().lower()))
    if tenant is None:
        raise NotFound(_l("No shop with the address '%(slug)s'.", slug=slug))
    return tenant


def list_tenants(search: str = "") -> list[Tenant]:
    query = select(Tenant).order_by(Tenant.created_at.desc(), Tenant.id.desc())
    if search:
        like = f"%{search.strip().lower()}%"
        query = query.where(func.lower(Tenant.slug).like(like) | func.lower(Tenant.name).like(like))
    return list(db.session.scalars(query))


def _set_status(tenant: Tenant, status: str, reason: str = "") -> Tenant:
    tenant.status = status
    # "manual" (the platform) or "unpaid" (billing, which resumes the shop once it has paid).
    tenant.suspension_reason = reason
    db.session.flush()
    return tenant


def suspend_tenant(tenant: Tenant) -> Tenant:
    """Close the shop to buyers (503); its data and its console stay."""
    if tenant.status == "suspended":
        raise Conflict(_l("The shop '%(slug)s' is already suspended.", slug=tenant.slug))
    return _set_status(tenant, "suspended", "manual")


def resume_tenant(tenant: Tenant) -> Tenant:
    if tenant.status == "active":
        raise Conflict(_l("The shop '%(slug)s' is already active.", slug=tenant.slug))
    return _set_status(tenant, "active")


def shop_url(tenant: Tenant, path: str = "/") -> str:
    """The public address of a shop on its platform subdomain."""
    return public_url(subdomain_host(tenant.slug), path)
