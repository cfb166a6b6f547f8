"""A new shop's first steps, worked out from its data for the console dashboard: a logo,
a way for buyers to pay, the markup looked at, a first own product — and money in its wallet
at the platform, without which it cannot sell supply products (their cost is held from the
wallet at checkout)."""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ..appearance.models import ShopAsset
from ..billing import service as billing
from ..catalog.models import MarkupRule
from ..extensions import db
from ..ledger import service as ledger
from ..payments.registry import available_methods
from ..tenants.models import Tenant
from ..tenants.scoping import tenant_scope


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    hint: str
    endpoint: str  # where the step is done
    done: bool
    permission: str  # who may do it (kameng.merchant.console.PERMISSIONS)


def _markup_reviewed(tenant: Tenant) -> bool:
    """Done when the shop has changed its markup from the plan's default, added a category or
    product rule, or said it keeps the default."""
    if ((tenant.settings or {}).get("onboarding") or {}).get("markup_reviewed"):
        return True
    rules = list(db.session.scalars(select(MarkupRule)))
    if any(rule.scope != "shop" for rule in rules):
        return True
    plan = billing.plan_of(tenant.id)
    default = plan.default_markup_bp if plan is not None else None
    return any(rule.kind != "percent" or (default is not None and rule.value != default)
               or rule.rounding != "0.01" for rule in rules)


def first_steps(tenant: Tenant) -> list[Step]:
    with tenant_scope(tenant.id):
        logo = db.session.scalar(select(ShopAsset.id).where(ShopAsset.kind == "logo"))
        paying = any(method.name != "sandbox" for method in available_methods(tenant))
        markup = _markup_reviewed(tenant)
    products = billing.own_product_count(tenant.id)
    wallet = ledger.shop_wallet(tenant.id, tenant.currency)
    return [
        Step("logo", _l("Upload your logo"),
             _l("Your brand on every page of your shop."), "shop_appearance.page", bool(logo),
             "appearance.edit"),
        Step("payments", _l("Let buyers pay"),
             _l("Enter your own payment credentials, or use the platform's payment accounts."),
             "shop_payments.settings", paying, "payments.manage"),
        Step("markup", _l("Review your markup"),
             _l("The supply catalog is listed at your plan's default markup; set your own."),
             "shop_catalog.pricing", markup, "catalog.edit"),
        Step("product", _l("Add your first own product"),
             _l("Sell your own codes or downloads beside the supply catalog."),
             "shop_catalog.product_new", products > 0, "catalog.edit"),
        Step("wallet", _l("Top up your wallet at the platform"),
             _l("The cost of a supply product is paid from it when you sell one."),
             "shop_billing.page", wallet.balance > 0, "billing.manage"),
    ]


def mark_markup_reviewed(tenant: Tenant) -> None:
    settings = dict(tenant.settings or {})
    settings["onboarding"] = {**(settings.get("onboarding") or {}), "markup_reviewed": True}
    tenant.settings = settings  # a new dict: SQLAlchemy sees JSON changes on assignment
    db.session.flush()
