"""The super-admin API on the admin host (/api/v1/platform): create, list, suspend and resume
shops and read their billing state, signed with a super-admin key — so platform owners can
automate provisioning. Shops are named by their slug."""

from __future__ import annotations

from sqlalchemy import select

from ..errors import DomainError
from ..extensions import db
from ..tenants import service as tenants
from ..tenants.models import Tenant
from . import openapi, present
from .errors import ApiError, from_domain_error
from .openapi import LIMIT, text
from .views import _json, api_actor, body, operation, platform_api, query

SLUG = {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{1,30}[a-z0-9]$",
        "description": "the shop's address: <slug>.<platform domain>"}
SHOP_BODY = openapi.obj({
    "slug": SLUG,
    "name": text(120, 1),
    "owner_email": {"type": "string", "format": "email", "minLength": 3, "maxLength": 254,
                    "pattern": openapi.TEXT},
    "owner_password": text(256, 8, description="the owner's first password (at least 8 "
                                               "characters, not the e-mail)"),
    "locale": {"type": "string", "enum": ["zh_CN", "en"]},
}, required=["slug", "name", "owner_email", "owner_password"])

openapi.SCHEMAS["BillingEnvelope"] = openapi.obj({"shop": {"type": "string"},
                                                  "billing": openapi.ref("Billing")})


def _shop_or_404(slug: str) -> Tenant:
    tenant = db.session.scalar(select(Tenant).where(Tenant.slug == slug.lower()))
    if tenant is None:
        raise ApiError("not_found", "No such shop.")
    return tenant


@platform_api.get("/platform/shops")
@operation("platform", "GET", "/platform/shops", "listShops", "List shops, newest first",
           tag="Shops", auth="platform", scope="platform",
           query={"q": text(100, description="part of the slug or name"), "limit": LIMIT},
           responses={200: ("The shops", "ShopList")})
def list_shops():
    rows = tenants.list_tenants(query("q", ""))[:query("limit", 50)]
    return _json({"shops": [present.shop(t) for t in rows]})


@platform_api.post("/platform/shops")
@operation("platform", "POST", "/platform/shops", "createShop", "Create a shop",
           tag="Shops", auth="platform", scope="platform", body=SHOP_BODY,
           description="A live shop on <slug>.<platform domain> with its owner account, its "
                       "buyer levels, its default markup and the supply catalog listed.",
           responses={201: ("The new shop", "ShopEnvelope")})
def create_shop():
    data = body()
    fields = {"email": "owner_email", "password": "owner_password"}
    try:
        tenant = tenants.create_tenant(
            slug=data["slug"], name=data["name"], owner_email=data["owner_email"],
            owner_password=data["owner_password"], locale=data.get("locale", "zh_CN"))
        _audit("tenant.created", tenant)
    except DomainError as error:
        db.session.rollback()
        error.field = fields.get(error.field, error.field)
        raise from_domain_error(error) from None
    db.session.commit()
    return _json({"shop": present.shop(tenant)}, 201)


def _audit(action: str, tenant: Tenant) -> None:
    from ..audit.service import record

    record(api_actor(), action, tenant_id=tenant.id, target=tenant.slug)


@platform_api.get("/platform/shops/<slug>")
@operation("platform", "GET", "/platform/shops/{slug}", "getShop", "One shop",
           tag="Shops", auth="platform", scope="platform", path_params={"slug": SLUG},
           responses={200: ("The shop", "ShopEnvelope")})
def get_shop(slug: str):
    return _json({"shop": present.shop(_shop_or_404(slug))})


def _change(slug: str, change, action: str):
    tenant = _shop_or_404(slug)
    try:
        change(tenant)
        _audit(action, tenant)
    except DomainError as error:
        db.session.rollback()
        raise from_domain_error(error) from None
    db.session.commit()
    return _json({"shop": present.shop(tenant)})


@platform_api.post("/platform/shops/<slug>/suspend")
@operation("platform", "POST", "/platform/shops/{slug}/suspend", "suspendShop",
           "Suspend a shop", tag="Shops", auth="platform", scope="platform",
           path_params={"slug": SLUG},
           description="Buyers then see it closed (its API answers 503); its console stays. "
                       "409 when it is already suspended.",
           responses={200: ("The shop", "ShopEnvelope")})
def suspend_shop(slug: str):
    return _change(slug, tenants.suspend_tenant, "tenant.suspended")


@platform_api.post("/platform/shops/<slug>/resume")
@operation("platform", "POST", "/platform/shops/{slug}/resume", "resumeShop",
           "Resume a suspended shop", tag="Shops", auth="platform", scope="platform",
           path_params={"slug": SLUG}, description="409 when it is already active.",
           responses={200: ("The shop", "ShopEnvelope")})
def resume_shop(slug: str):
    return _change(slug, tenants.resume_tenant, "tenant.resumed")


@platform_api.get("/platform/shops/<slug>/billing")
@operation("platform", "GET", "/platform/shops/{slug}/billing", "getShopBilling",
           "A shop's billing state", tag="Shops", auth="platform", scope="platform",
           path_params={"slug": SLUG},
           description="Its subscription (plan, status, period; null before it has one) and "
                       "its open invoices.",
           responses={200: ("The billing state", "BillingEnvelope")})
def shop_billing(slug: str):
    tenant = _shop_or_404(slug)
    return _json({"shop": tenant.slug, "billing": present.billing(tenant)})
