"""The demo data behind `kameng demo` and `make run`: a super-admin and two shops."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from .audit.service import Actor
from .billing.service import ensure_default_plans
from .catalog.models import Product
from .catalog.service import (
    create_product,
    create_supply_category,
    create_supply_product,
    list_supply_categories,
    list_supply_products,
    stock_new_shop,
)
from .extensions import db
from .inventory.service import import_codes
from .ledger import service as ledger
from .members.models import Customer
from .members.service import register_customer
from .merchant.models import StaffUser
from .merchant.service import create_staff
from .security.auth import Account
from .security.passwords import verify_password
from .superadmin.models import PlatformUser
from .superadmin.service import create_platform_user
from .tenants.models import Tenant
from .tenants.scoping import platform_scope, tenant_scope
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


# The platform's demo supply catalog: category, name, cost (minor units), delivery kind, extras.
SUPPLY = (
    ("Game cards", "Steam Wallet Code ¥50", 4600, "card", {}),
    ("Game cards", "Genshin Impact 6480 Genesis Crystals", 61000, "card", {}),
    ("Game cards", "Honor of Kings 直充 60 点券", 580, "topup", {
        "input_fields": [{"name": "account", "label": "Game account ID", "type": "text",
                          "required": True, "pattern": "[0-9]{5,12}"}],
    }),
    ("Gift cards", "Apple Gift Card ¥100", 9500, "card", {}),
    ("Gift cards", "JD E-Card ¥200", 19200, "card", {"max_qty": 10}),
    ("Software", "Office Tools Download Pack", 900, "text", {
        "text_content": "Download: https://example.com/office-pack\nLicence: DEMO-OFFICE-2026",
    }),
    ("Software", "Netflix Premium 1 month (manual)", 3500, "manual", {}),
)
DEMO_CODES = 40
DEMO_FUNDING = 1_000_000  # ¥10,000 in each demo shop's wallet at the platform


def _demo_codes(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{secrets.token_hex(4).upper()}-{secrets.token_hex(4).upper()}"
            for _ in range(count)]


def seed_supply() -> None:
    """The demo supply catalog, with codes for its card products (only what is missing)."""
    with platform_scope():
        categories = {c.name: c for c in list_supply_categories()}
        for sort, name in enumerate(dict.fromkeys(row[0] for row in SUPPLY)):
            if name not in categories:
                categories[name] = create_supply_category(name, sort)
        existing = {p.name for p in list_supply_products()}
        for category, name, cost, kind, extras in SUPPLY:
            if name in existing:
                continue
            product = create_supply_product(
                name=name, cost=cost, category_id=categories[category].id, delivery_kind=kind,
                description_html=f"<p>{name}. Delivered automatically after payment.</p>",
                low_stock_threshold=10 if kind == "card" else 0, **extras,
            )
            if kind == "card":
                import_codes(product, _demo_codes("SUP", DEMO_CODES), actor=Actor.system())


def seed_demo() -> list[DemoLogin]:
    """Create what is missing of the demo (idempotent) and return its logins."""
    seed_supply()
    logins = [DemoLogin("super-admin", ADMIN_EMAIL, ADMIN_PASSWORD)]
    admin = db.session.scalar(select(PlatformUser).where(PlatformUser.email == ADMIN_EMAIL))
    if admin is None:
        create_platform_user(email=ADMIN_EMAIL, password=ADMIN_PASSWORD, name="Platform owner")
    else:
        _ensure_password(admin, ADMIN_PASSWORD)

    # The plans shown on the landing page; the demo shops run on Pro (in its trial).
    plans = {plan.code: plan for plan in ensure_default_plans()}
    for slug, name, owner_email, owner_password, buyer_email, buyer_password in SHOPS:
        tenant = db.session.scalar(select(Tenant).where(Tenant.slug == slug))
        if tenant is None:
            tenant = create_tenant(
                slug=slug, name=name, owner_email=owner_email, owner_password=owner_password,
                plan=plans.get("pro"),
            )
        with tenant_scope(tenant.id):
            owner = db.session.scalar(select(StaffUser).where(StaffUser.email == owner_email))
            if owner is None:
                owner = create_staff(tenant, email=owner_email, password=owner_password,
                                     role="owner")
            else:
                _ensure_password(owner, owner_password)
            if owner.email_confirmed_at is None:  # demo addresses receive no mail
                owner.email_confirmed_at = datetime.now(UTC)
            stock_new_shop(tenant)
            # Money in the shop's wallet at the platform, so it can sell supply products.
            ledger.transfer(f"demo:funding:{slug}", "platform_funding",
                            ledger.get_account("platform_funding", currency=tenant.currency),
                            ledger.shop_wallet(tenant.id, tenant.currency), DEMO_FUNDING,
                            tenant_id=tenant.id, memo="demo funding")
            own_name = f"{name} VIP Pass (30 days)"
            if db.session.scalar(select(Product).where(Product.name == own_name)) is None:
                own = create_product(
                    tenant, name=own_name, price=990, delivery_kind="card",
                    description_html="<p>The shop's own membership pass.</p>",
                )
                import_codes(own, _demo_codes(slug.upper(), 20), actor=Actor.system())
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
