"""Self-service sign-up on the platform's landing page: the shop address check, creating a
live, stocked shop on a plan, and confirming the owner's e-mail address.

The shop works at once; the owner confirms their address by following a signed link (valid
CONFIRM_DAYS days) and the console shows a banner until they have.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select

from ..billing import service as billing
from ..errors import DomainError
from ..extensions import db
from ..mail.service import queue_mail
from ..merchant.models import StaffUser
from ..tenants import service as tenants
from ..tenants.hosts import LANDING, public_url, subdomain_host
from ..tenants.models import Tenant
from ..tenants.scoping import platform_scope, tenant_scope

CONFIRM_SALT = "kameng.email-confirmation"
CONFIRM_DAYS = 7


@dataclass(frozen=True)
class SlugCheck:
    available: bool
    message: str
    slug: str = ""


def check_slug_availability(raw: str) -> SlugCheck:
    """Whether a shop may take this address, with a message fit to show beside the field."""
    wanted = (raw or "").strip().lower()
    if wanted in tenants.RESERVED_SLUGS:
        return SlugCheck(False, _("The address '%(slug)s' is reserved; choose another.",
                                  slug=wanted))
    try:
        slug = tenants.check_slug(wanted)
    except DomainError:
        return SlugCheck(False, _("Use 3 to 32 lower-case letters, digits and single hyphens "
                                  "(not at the start or end)."))
    with platform_scope():
        free = tenants.slug_available(slug)
    if not free:
        return SlugCheck(False, _("The address '%(slug)s' is taken; choose another.", slug=slug),
                         slug)
    return SlugCheck(True, _("%(host)s is available.",
                             host=subdomain_host(slug)), slug)


@dataclass
class SignUp:
    shop_name: str
    slug: str
    email: str
    password: str
    plan_code: str
    locale: str = "zh_CN"


def sign_up(request: SignUp, *, now: datetime | None = None) -> Tenant:
    """Create a live shop on its plan, its owner, and mail the owner a confirmation link (in the
    caller's transaction). DomainErrors name the form field at fault."""
    billing.ensure_default_plans()
    plan = billing.plan_by_code(request.plan_code)
    check = check_slug_availability(request.slug)
    if not check.available:
        raise DomainError(check.message, field="slug")
    tenant = tenants.create_tenant(
        slug=check.slug, name=request.shop_name, owner_email=request.email,
        owner_password=request.password, locale=request.locale, plan=plan)
    send_confirmation(tenant, owner_of(tenant))
    return tenant


def owner_of(tenant: Tenant) -> StaffUser:
    with tenant_scope(tenant.id):
        return db.session.scalar(select(StaffUser).where(StaffUser.role == "owner")
                                 .order_by(StaffUser.id))


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=CONFIRM_SALT)


def confirmation_token(staff: StaffUser) -> str:
    return _serializer().dumps({"t": staff.tenant_id, "s": staff.id, "e": staff.email})


def confirmation_url(staff: StaffUser) -> str:
    """The link in the mail: on the platform domain, so it works before any login."""
    domain = current_app.config["PLATFORM_DOMAIN"]
    path = current_app.url_map.bind(domain, subdomain=LANDING).build(
        "landing.confirm_email", {"token": confirmation_token(staff)})
    return public_url(domain, path)


def send_confirmation(tenant: Tenant, staff: StaffUser) -> None:
    shop = public_url(subdomain_host(tenant.slug))
    queue_mail(
        tenant_id=tenant.id, to=staff.email, kind="account.confirm",
        subject=_("Confirm your e-mail address for %(shop)s", shop=tenant.name),
        body=_("Welcome to Kameng! Your shop %(shop)s is live at %(url)s\n\n"
               "Please confirm your e-mail address by opening this link within %(days)d days:\n"
               "%(link)s\n\nYour console: %(console)s\n",
               shop=tenant.name, url=shop, days=CONFIRM_DAYS, link=confirmation_url(staff),
               console=public_url(subdomain_host(tenant.slug), "/admin/")))


def confirm_email(token: str, *, now: datetime | None = None) -> tuple[Tenant, StaffUser]:
    """Mark the address in a confirmation link confirmed (idempotent)."""
    try:
        data = _serializer().loads(token, max_age=CONFIRM_DAYS * 86400)
    except SignatureExpired:
        raise DomainError(_l("This confirmation link has expired. Log in to your console to get "
                             "a new one.")) from None
    except BadSignature:
        raise DomainError(_l("This confirmation link is not valid.")) from None
    if not isinstance(data, dict):
        raise DomainError(_l("This confirmation link is not valid."))
    with platform_scope():
        staff = db.session.get(StaffUser, int(data.get("s") or 0))
        tenant = db.session.get(Tenant, int(data.get("t") or 0))
        if staff is None or tenant is None or staff.tenant_id != tenant.id \
                or staff.email != data.get("e"):
            raise DomainError(_l("This confirmation link is not valid."))
        if staff.email_confirmed_at is None:
            staff.email_confirmed_at = now or datetime.now(UTC)
            db.session.flush()
    return tenant, staff
