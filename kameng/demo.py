"""The demo data behind `kameng demo` and `make run`: a super-admin and two shops."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from .extensions import db
from .members.models import Customer
from .members.service import register_customer
from .merchant.models import StaffUser
from .merchant.service import create_staff
from .security.auth import Account
from .security.passwords import verify_password
from .superadmin.models import PlatformUser
from .superadmin.service import create_platform_user
from .tenants.models import Tenant
from .tenants.scoping import tenant_scope
from .tenants.service import create_tenant

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@kameng.test", "kameng-admin"
SHOPS = (
    # slug, name, owner e-mail, owner password, buyer e-mail, buyer password
    ("demo", "Demo Card Shop", "owner@demo.test", "demo-owner", "buyer@demo.test", "demo-buyer"),
    ("acme", "Acme Game Cards", "owner@acme.test", "acme-owner", "buyer@acme.test", "acme-buyer"),
)


@dataclass(frozen=True)
class DemoLogin:
    who: str
    email: str
    password: str
    slug: str | None = None


def _ensure_password(account: Account, password: str) -> None:
    if not verify_password(account.password_hash, password):
        account.set_password(password)
    account.active = True


def seed_demo() -> list[DemoLogin]:
    """Create what is missing of the demo (idempotent) and return its logins."""
    logins = [DemoLogin("super-admin", ADMIN_EMAIL, ADMIN_PASSWORD)]
    admin = db.session.scalar(select(PlatformUser).where(PlatformUser.email == ADMIN_EMAIL))
    if admin is None:
        create_platform_user(email=ADMIN_EMAIL, password=ADMIN_PASSWORD, name="Platform owner")
    else:
        _ensure_password(admin, ADMIN_PASSWORD)

    for slug, name, owner_email, owner_password, buyer_email, buyer_password in SHOPS:
        tenant = db.session.scalar(select(Tenant).where(Tenant.slug == slug))
        if tenant is None:
            tenant = create_tenant(
                slug=slug, name=name, owner_email=owner_email, owner_password=owner_password
            )
        with tenant_scope(tenant.id):
            owner = db.session.scalar(select(StaffUser).where(StaffUser.email == owner_email))
            if owner is None:
                create_staff(tenant, email=owner_email, password=owner_password, role="owner")
            else:
                _ensure_password(owner, owner_password)
            buyer = db.session.scalar(select(Customer).where(Customer.email == buyer_email))
            if buyer is None:
                register_customer(
                    tenant.id, email=buyer_email, password=buyer_password, name="Demo buyer"
                )
            else:
                _ensure_password(buyer, buyer_password)
            db.session.flush()
        logins.append(DemoLogin(f"{slug} owner", owner_email, owner_password, slug))
        logins.append(DemoLogin(f"{slug} buyer", buyer_email, buyer_password, slug))
    db.session.commit()
    return logins
