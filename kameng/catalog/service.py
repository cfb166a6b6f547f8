"""Catalog operations: the supply catalog, shop listings and own products, categories,
markup rules with the cost floor, buyer levels, level and bulk prices, coupons.

Shop functions work on the tenant bound to the session (the tenant guard narrows every query);
supply functions are platform-wide and are called from the super-admin console and the CLI.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from ..errors import Conflict, DomainError, NotFound
from ..extensions import db
from ..merchant.models import ShopNotice
from ..money import BASIS_POINTS, MAX_AMOUNT, ROUNDINGS, format_money
from ..rows import row_by_id
from ..security.crypto import keyring
from ..security.images import checked_image
from ..security.sanitize import clean_html
from ..tenants.models import Tenant
from ..tenants.scoping import platform_scope, tenant_scope
from .models import (
    COUPON_KINDS,
    COUPON_SCOPES,
    DELIVERY_KINDS,
    INPUT_TYPES,
    MARKUP_KINDS,
    BulkPrice,
    Category,
    Coupon,
    LevelPrice,
    MarkupRule,
    PriceLevel,
    Product,
    SupplyCategory,
    SupplyProduct,
)
from .pricing import base_price, marked_up, markup_rule_for, unit_cost

MAX_QTY_LIMIT = 10_000
FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
COUPON_CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]{2,39}")
COUPON_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


# -- product details shared by supply and own products ------------------------------------


def _name(value: str | None, field: str = "name", required: bool = True,
          limit: int = 200) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            raise DomainError(_l("The name is required."), field=field)
        return None
    if len(value) > limit:
        raise DomainError(_l("The name must be at most %(limit)s characters.",
                             limit=limit), field=field)
    return value


def _amount(value: int, field: str, what: str = _l("amount")) -> int:
    """A price or cost in minor units within what the columns hold."""
    if value is None or value < 0:
        raise DomainError(_l("The %(what)s must not be negative.", what=what), field=field)
    if value > MAX_AMOUNT:
        raise DomainError(_l("The %(what)s is too large.", what=what), field=field)
    return value


def _bounded(value, field: str, what: str, low: int = 0, high: int = 1_000_000) -> int:
    try:
        number = int(value or 0)
    except (TypeError, ValueError):
        raise DomainError(_l("The %(what)s must be a whole number.",
                             what=what), field=field) from None
    if not low <= number <= high:
        raise DomainError(_l("The %(what)s must be between %(low)s and %(high)s.",
                             what=what, low=low, high=high), field=field)
    return number


def check_input_fields(fields: Iterable[dict] | None) -> list[dict]:
    """Validate buyer input field definitions: name, label, type, required, pattern."""
    checked, seen = [], set()
    for raw in fields or []:
        name = (raw.get("name") or "").strip().lower()
        label = (raw.get("label") or "").strip()
        kind = (raw.get("type") or "text").strip()
        pattern = (raw.get("pattern") or "").strip()
        if not FIELD_NAME.fullmatch(name):
            raise DomainError(
                _l("Each input field needs a name of lower-case letters, digits and _ "
                   "(starting with a letter)."), field="input_fields")
        if name in seen:
            raise DomainError(_l("The input field '%(name)s' appears twice.",
                                 name=name), field="input_fields")
        if not label or len(label) > 80:
            raise DomainError(_l("The input field '%(name)s' needs a label "
                                 "(at most 80 characters).",
                                 name=name),
                              field="input_fields")
        if kind not in INPUT_TYPES:
            raise DomainError(_l("Input field type must be one of %(input_types)s.",
                                 input_types=', '.join(INPUT_TYPES)),
                              field="input_fields")
        if pattern:
            if len(pattern) > 200:
                raise DomainError(_l("An input pattern must be at most 200 characters."),
                                  field="input_fields")
            try:
                re.compile(pattern)
            except re.error:
                raise DomainError(_l("The pattern of '%(name)s' is not a valid regular expression.",
                                     name=name),
                                  field="input_fields") from None
        seen.add(name)
        checked.append({"name": name, "label": label, "type": kind,
                        "required": bool(raw.get("required")), "pattern": pattern})
    if len(checked) > 10:
        raise DomainError(_l("A product may have at most 10 input fields."), field="input_fields")
    return checked


def check_buyer_input(product: Product, values: dict) -> dict:
    """The buyer's answers to the product's input fields, validated (used at checkout)."""
    answers = {}
    for spec in product.fields:
        value = (values.get(spec["name"]) or "").strip()
        if not value:
            if spec.get("required"):
                raise DomainError(_l("%(spec)s is required.",
                                     spec=spec['label']), field=spec["name"])
            continue
        if len(value) > 200:
            raise DomainError(_l("%(spec)s is too long.", spec=spec['label']), field=spec["name"])
        if spec.get("pattern") and not re.fullmatch(spec["pattern"], value):
            raise DomainError(_l("%(spec)s is not in the expected format.",
                                 spec=spec['label']), field=spec["name"])
        answers[spec["name"]] = value
    return answers


def _apply_details(target, details: dict) -> None:
    """Set the delivery details of a supply product or an own product from `details`."""
    if "description_html" in details:
        target.description_html = clean_html(details["description_html"])
    if "delivery_kind" in details:
        if details["delivery_kind"] not in DELIVERY_KINDS:
            raise DomainError(_l("Choose a delivery kind."), field="delivery_kind")
        target.delivery_kind = details["delivery_kind"]
    if "input_fields" in details:
        target.input_fields = check_input_fields(details["input_fields"])
    low = _bounded(details.get("min_qty", target.min_qty or 1), "min_qty", _l("minimum quantity"),
                   1, MAX_QTY_LIMIT)
    high = _bounded(details.get("max_qty", target.max_qty or 100), "max_qty",
                    _l("maximum quantity"), 1, MAX_QTY_LIMIT)
    if low > high:
        raise DomainError(_l("The minimum quantity must not exceed the maximum."), field="max_qty")
    target.min_qty, target.max_qty = low, high
    if "low_stock_threshold" in details:
        target.low_stock_threshold = _bounded(details["low_stock_threshold"],
                                              "low_stock_threshold", _l("low-stock threshold"))
    if "active" in details:
        target.active = bool(details["active"])
    if "supplier_id" in details:
        target.supplier_id = _supplier_id_for(target, details["supplier_id"])
    if "supplier_product" in details:
        code = (details["supplier_product"] or "").strip()
        if len(code) > 120:
            raise DomainError(_l("The upstream product code must be at most 120 characters."),
                              field="supplier_product")
        target.supplier_product = code
    if details.get("text_content") is not None:
        content = details["text_content"].strip()
        target.text_content = keyring().encrypt(content) if content else None
    if details.get("image") is not None:
        target.image_data, target.image_type = checked_image(details["image"])
        target.image_version = (target.image_version or 0) + 1
    elif details.get("remove_image"):
        target.image_data, target.image_type = None, None
        target.image_version = (target.image_version or 0) + 1
    if (target.delivery_kind == "text" and not target.text_content
            and details.get("require_text_content", True)):
        raise DomainError(_l("A fixed-content product needs its content."), field="text_content")


def _supplier_id_for(target, supplier_id) -> int | None:
    """The upstream supplier a product may name: the platform's for a supply product, the
    shop's own for an own product; a listing is delivered by its supply product's supplier."""
    from ..delivery.suppliers import owned_supplier

    if supplier_id in (None, "", 0):
        return None
    if isinstance(target, Product) and target.supply_product_id is not None:
        raise DomainError(_l("A listing is delivered by its supply product's supplier."),
                          field="supplier_id")
    owner = None if isinstance(target, SupplyProduct) else target.tenant_id
    if isinstance(target, Product) and owner is None:
        raise DomainError(_l("Choose one of your suppliers."), field="supplier_id")
    return owned_supplier(owner, supplier_id).id


def text_content(product) -> str:
    """The decrypted fixed content of a `text` product (for delivery and its edit form)."""
    source = product.source if isinstance(product, Product) else product
    return keyring().decrypt(source.text_content) if source.text_content else ""


# -- supply catalog (platform) -----------------------------------------------------------------


def create_supply_category(name: str, sort: int = 0) -> SupplyCategory:
    name = _name(name, limit=120)
    if db.session.scalar(select(SupplyCategory.id).where(SupplyCategory.name == name)):
        raise Conflict(_l("A supply category named '%(name)s' exists.", name=name), field="name")
    category = SupplyCategory(name=name, sort=sort)
    db.session.add(category)
    db.session.flush()
    return category


def update_supply_category(category: SupplyCategory, *, name: str, sort: int, active: bool):
    name = _name(name, limit=120)
    clash = db.session.scalar(
        select(SupplyCategory.id)
        .where(SupplyCategory.name == name, SupplyCategory.id != category.id)
    )
    if clash:
        raise Conflict(_l("A supply category named '%(name)s' exists.", name=name), field="name")
    category.name, category.sort, category.active = name, sort, active
    db.session.flush()
    return category


def get_supply_category(category_id: int | None) -> SupplyCategory:
    category = row_by_id(SupplyCategory, category_id)
    if category is None:
        raise NotFound(_l("No such supply category."))
    return category


def list_supply_categories() -> list[SupplyCategory]:
    return list(db.session.scalars(
        select(SupplyCategory).order_by(SupplyCategory.sort, SupplyCategory.name)
    ))


def get_supply_product(product_id: int) -> SupplyProduct:
    product = row_by_id(SupplyProduct, product_id)
    if product is None:
        raise NotFound(_l("No such supply product."))
    return product


def list_supply_products(category_id: int | None = None, active_only=False) -> list[SupplyProduct]:
    query = select(SupplyProduct).order_by(SupplyProduct.category_id, SupplyProduct.name)
    if category_id is not None:
        query = query.where(SupplyProduct.category_id == category_id)
    if active_only:
        query = query.outerjoin(SupplyProduct.category).where(
            SupplyProduct.active.is_(True),
            (SupplyCategory.id.is_(None)) | SupplyCategory.active.is_(True),
        )
    return list(db.session.scalars(query))


def create_supply_product(*, name: str, cost: int, category_id: int | None = None,
                          **details) -> SupplyProduct:
    _amount(cost, "cost", _l("cost"))
    if category_id is not None:
        get_supply_category(category_id)
    product = SupplyProduct(
        name=_name(name), cost=cost, category_id=category_id,
        currency=current_app.config["CURRENCY"], input_fields=[], description_html="",
        delivery_kind="card", min_qty=1, max_qty=100, low_stock_threshold=0, image_version=0,
    )
    _apply_details(product, details)
    db.session.add(product)
    db.session.flush()
    return product


def update_supply_product(product: SupplyProduct, *, name: str | None = None,
                          cost: int | None = None, category_id=..., **details) -> list[str]:
    """Change a supply product; returns the notices sent to shops whose price hit the floor."""
    if name is not None:
        product.name = _name(name)
    if category_id is not ...:
        if category_id is not None:
            get_supply_category(category_id)
        product.category_id = category_id
    _apply_details(product, details)
    raised = cost is not None and cost > product.cost
    if cost is not None:
        product.cost = _amount(cost, "cost", _l("cost"))
    db.session.flush()
    return notify_cost_floor(product) if raised else []


def notify_cost_floor(supply: SupplyProduct) -> list[str]:
    """After a cost rise: tell every shop whose configured price is now below cost.

    quote() already lifts such prices to the floor; this makes sure the shop knows.
    """
    sent, notices = [], []
    with platform_scope():
        listings = list(db.session.scalars(
            select(Product).where(Product.supply_product_id == supply.id)
            .options(selectinload(Product.level_prices), selectinload(Product.bulk_prices))
        ))
        tenants = {t.id: t for t in db.session.scalars(
            select(Tenant).where(Tenant.id.in_({p.tenant_id for p in listings}))
        )}
    for listing in listings:
        with tenant_scope(listing.tenant_id):
            tenant = tenants[listing.tenant_id]
            _, base = base_price(tenant, listing)
            low = [base] + [lp.price for lp in listing.level_prices] \
                + [bp.unit_price for bp in listing.bulk_prices]
            if min(low) >= supply.cost:
                continue
            cost = format_money(supply.cost, supply.currency)
            message = (
                f"The cost of '{listing.title}' rose to {cost}. Some of your prices for it "
                f"(markup, level or bulk prices) were below that, so it now sells at no less "
                f"than {cost}. Review its prices."
            )
            notices.append(ShopNotice(tenant_id=listing.tenant_id, kind="price_floor",
                                      message=message))
            sent.append(f"{tenant.slug}: {listing.title}")
    with platform_scope():  # each notice names its own shop
        db.session.add_all(notices)
        db.session.flush()
    return sent


# -- shop categories ---------------------------------------------------------------------------


def list_categories(active_only=False) -> list[Category]:
    query = select(Category).order_by(Category.sort, Category.name)
    if active_only:
        query = query.where(Category.active.is_(True))
    return list(db.session.scalars(query))


def get_category(category_id: int) -> Category:
    category = row_by_id(Category, category_id)
    if category is None:
        raise NotFound(_l("No such category."))
    return category


def create_category(tenant: Tenant, name: str, sort: int = 0) -> Category:
    category = Category(tenant_id=tenant.id, name=_name(name, limit=120),
                        sort=_bounded(sort, "sort", _l("sort order"), -1_000_000), active=True)
    db.session.add(category)
    db.session.flush()
    return category


def update_category(category: Category, *, name: str, sort: int, active: bool) -> Category:
    category.name, category.active = _name(name, limit=120), active
    category.sort = _bounded(sort, "sort", _l("sort order"), -1_000_000)
    db.session.flush()
    return category


def delete_category(category: Category) -> None:
    """Delete a category; its products stay, without a category."""
    for product in db.session.scalars(select(Product).where(Product.category_id == category.id)):
        product.category_id = None
    db.session.delete(category)
    db.session.flush()


# -- shop products -------------------------------------------------------------------------------


def get_product(product_id: int) -> Product:
    """A product of the bound shop (another shop's product is simply not found)."""
    product = row_by_id(Product, product_id)
    if product is None:
        raise NotFound(_l("No such product."))
    return product


def list_products(*, category_id: int | None = None, search: str = "", on_sale_only=False,
                  ) -> list[Product]:
    query = (
        select(Product)
        .options(selectinload(Product.bulk_prices), selectinload(Product.level_prices))
        .order_by(Product.sort, Product.id)
    )
    if category_id is not None:
        query = query.where(Product.category_id == category_id)
    products = list(db.session.scalars(query))
    if search:
        needle = search.strip().lower()
        products = [p for p in products if needle in p.title.lower()]
    if on_sale_only:
        products = [p for p in products if p.on_sale]
    return products


def _shop_category_for(tenant: Tenant, supply_category: SupplyCategory | None) -> Category | None:
    if supply_category is None:
        return None
    category = db.session.scalar(
        select(Category).where(Category.supply_category_id == supply_category.id)
    )
    if category is None:
        category = Category(tenant_id=tenant.id, name=supply_category.name,
                            sort=supply_category.sort, supply_category_id=supply_category.id)
        db.session.add(category)
        db.session.flush()
    return category


def list_supply_product(tenant: Tenant, supply: SupplyProduct) -> Product:
    """Put a supply product on the shop's shelf (idempotent: an existing listing is returned)."""
    existing = db.session.scalar(select(Product).where(Product.supply_product_id == supply.id))
    if existing is not None:
        return existing
    if not supply.on_offer:
        raise DomainError(_l("This supply product is not available."))
    category = _shop_category_for(tenant, supply.category)
    product = Product(
        tenant_id=tenant.id, supply_product_id=supply.id, supply=supply,
        category_id=category.id if category else None, name=None, price=None,
        description_html="", delivery_kind=supply.delivery_kind, input_fields=[],
        min_qty=1, max_qty=100, low_stock_threshold=0, image_version=0, sort=0,
    )
    db.session.add(product)
    db.session.flush()
    return product


def list_supply_category(tenant: Tenant, supply_category: SupplyCategory) -> list[Product]:
    """List every active product of a supply category at once."""
    return [
        list_supply_product(tenant, supply)
        for supply in list_supply_products(supply_category.id, active_only=True)
    ]


def list_whole_supply_catalog(tenant: Tenant) -> int:
    """List every active supply product (a new shop is stocked the minute it opens)."""
    listed = set(db.session.scalars(
        select(Product.supply_product_id).where(Product.supply_product_id.is_not(None))))
    count = 0
    for supply in list_supply_products(active_only=True):
        if supply.id not in listed:
            list_supply_product(tenant, supply)
            count += 1
    return count


def unlisted_supply_products() -> list[SupplyProduct]:
    """Active supply products the bound shop has not listed yet."""
    listed = select(Product.supply_product_id).where(Product.supply_product_id.is_not(None))
    with_scope = set(db.session.scalars(listed))
    return [s for s in list_supply_products(active_only=True) if s.id not in with_scope]


def create_product(tenant: Tenant, *, name: str, price: int, category_id: int | None = None,
                   **details) -> Product:
    """Create one of the shop's own products (its own price, its own codes)."""
    from ..billing.service import check_product_limit

    _amount(price, "price", _l("price"))
    check_product_limit(tenant)  # the shop's plan may allow only so many own products
    if category_id is not None:
        get_category(category_id)
    product = Product(
        tenant_id=tenant.id, name=_name(name), price=price, category_id=category_id,
        input_fields=[], description_html="", delivery_kind="card", min_qty=1, max_qty=100,
        low_stock_threshold=0, image_version=0, sort=details.pop("sort", 0),
    )
    _apply_details(product, details)
    db.session.add(product)
    db.session.flush()
    return product


def update_product(product: Product, *, name: str | None = None, price: int | None = None,
                   category_id=..., sort: int | None = None, **details) -> Product:
    """Edit a product. A listing's delivery details belong to the supply product."""
    if category_id is not ...:
        if category_id is not None:
            get_category(category_id)
        product.category_id = category_id
    if sort is not None:
        product.sort = _bounded(sort, "sort", _l("sort order"), -1_000_000)
    if product.is_supply:
        product.name = _name(name, required=False)
        allowed = {k: v for k, v in details.items()
                   if k in ("description_html", "active", "low_stock_threshold", "image",
                            "remove_image")}
        if "description_html" in allowed:
            product.description_html = clean_html(allowed.pop("description_html"))
        allowed["require_text_content"] = False
        _apply_details(product, allowed)
    else:
        if name is not None:
            product.name = _name(name)
        if price is not None:
            product.price = _amount(price, "price", _l("price"))
        _apply_details(product, details)
    db.session.flush()
    return product


# -- markup rules ------------------------------------------------------------------------------


def _rule_target(scope: str, category_id: int | None, product_id: int | None):
    if scope == "shop":
        return select(MarkupRule).where(MarkupRule.scope == "shop")
    if scope == "category":
        get_category(category_id)
        return select(MarkupRule).where(MarkupRule.scope == "category",
                                        MarkupRule.category_id == category_id)
    if scope == "product":
        product = get_product(product_id)
        if unit_cost(product) is None:
            raise DomainError(_l("Markup applies to supply products and products bought from an "
                                 "upstream shop; an own product has its price."))
        return select(MarkupRule).where(MarkupRule.scope == "product",
                                        MarkupRule.product_id == product_id)
    raise DomainError(_l("Choose shop, category or product."), field="scope")


def set_markup_rule(tenant: Tenant, *, scope: str, kind: str, value: int, rounding: str,
                    category_id: int | None = None, product_id: int | None = None) -> MarkupRule:
    """Create or change a markup rule; refused when it would price any supply product below cost."""
    if kind not in MARKUP_KINDS:
        raise DomainError(_l("Choose percent or fixed amount."), field="kind")
    if rounding not in ROUNDINGS:
        raise DomainError(_l("Choose a rounding rule."), field="rounding")
    if kind == "percent" and not -BASIS_POINTS < value <= 100 * BASIS_POINTS:
        raise DomainError(_l("The percentage is out of range."), field="value")
    if kind == "fixed" and abs(value) > MAX_AMOUNT:
        raise DomainError(_l("The amount is too large."), field="value")
    rule = db.session.scalar(_rule_target(scope, category_id, product_id))
    if rule is None:
        rule = MarkupRule(tenant_id=tenant.id, scope=scope,
                          category_id=category_id if scope == "category" else None,
                          product_id=product_id if scope == "product" else None)
    candidate = MarkupRule(scope=rule.scope, category_id=rule.category_id,
                           product_id=rule.product_id, kind=kind, value=value, rounding=rounding)
    _refuse_below_cost(tenant, candidate, rule)
    rule.kind, rule.value, rule.rounding = kind, value, rounding
    db.session.add(rule)
    db.session.flush()
    db.session.expire(tenant, ["markup_rules"])
    return rule


def _refuse_below_cost(tenant: Tenant, candidate: MarkupRule, replacing: MarkupRule) -> None:
    rules = [r for r in tenant.markup_rules if r is not replacing and r.id != replacing.id]
    rules.append(candidate)
    for product in list_products():
        cost = unit_cost(product)
        if cost is None or markup_rule_for(rules, product) is not candidate:
            continue
        price = marked_up(cost, candidate)
        if price < cost:
            raise DomainError(
                _l("This rule would sell '%(title)s' at %(price)s"
                   ", below its cost of %(cost)s.",
                   title=product.title, price=format_money(price, tenant.currency),
                   cost=format_money(cost, tenant.currency)),
                field="value",
            )


def delete_markup_rule(tenant: Tenant, rule: MarkupRule) -> None:
    if rule.scope == "shop":
        raise DomainError(_l("The shop's default markup cannot be removed; set it to zero "
                             "instead."))
    db.session.delete(rule)
    db.session.flush()
    db.session.expire(tenant, ["markup_rules"])


def get_markup_rule(rule_id: int) -> MarkupRule:
    rule = row_by_id(MarkupRule, rule_id)
    if rule is None:
        raise NotFound(_l("No such markup rule."))
    return rule


# -- buyer levels, level prices and bulk prices ------------------------------------------------

DEFAULT_LEVELS = (
    # name, rank, discount (bp), lifetime spend threshold (minor units), guest, default
    ("Guest", 0, 0, None, True, False),
    ("Member", 1, 0, None, False, True),
    ("VIP", 2, 500, 100_000, False, False),
    ("Agent", 3, 1000, None, False, False),
)


def ensure_default_levels(tenant: Tenant) -> list[PriceLevel]:
    if not db.session.scalar(select(func.count()).select_from(PriceLevel)):
        for name, rank, discount, threshold, guest, default in DEFAULT_LEVELS:
            db.session.add(PriceLevel(tenant_id=tenant.id, name=name, rank=rank,
                                      discount_bp=discount, spend_threshold=threshold,
                                      is_guest=guest, is_default=default))
        db.session.flush()
    return list_levels()


def list_levels() -> list[PriceLevel]:
    return list(db.session.scalars(select(PriceLevel).order_by(PriceLevel.rank)))


def get_level(level_id: int) -> PriceLevel:
    level = row_by_id(PriceLevel, level_id)
    if level is None:
        raise NotFound(_l("No such buyer level."))
    return level


def save_level(tenant: Tenant, level: PriceLevel | None, *, name: str, rank: int,
               discount_bp: int, spend_threshold: int | None) -> PriceLevel:
    name = (name or "").strip()
    if not name or len(name) > 60:
        raise DomainError(_l("A level needs a name of at most 60 characters."), field="name")
    if not 0 <= discount_bp <= BASIS_POINTS:
        raise DomainError(_l("The discount must be between 0% and 100%."), field="discount")
    if spend_threshold is not None:
        _amount(spend_threshold, "spend_threshold", _l("spend threshold"))
    rank = _bounded(rank, "rank", _l("rank"), 0, 1000)
    for other in list_levels():
        if other is level:
            continue
        if other.name.lower() == name.lower():
            raise Conflict(_l("A level named '%(name)s' exists.", name=name), field="name")
        if other.rank == rank:
            raise Conflict(_l("Rank %(rank)s is taken by '%(name)s'.",
                              rank=rank, name=other.name), field="rank")
    if level is None:
        level = PriceLevel(tenant_id=tenant.id)
        db.session.add(level)
    level.name, level.rank, level.discount_bp = name, rank, discount_bp
    level.spend_threshold = None if level.is_guest else spend_threshold
    db.session.flush()
    return level


def delete_level(level: PriceLevel) -> None:
    if level.is_guest or level.is_default:
        raise DomainError(_l("The guest and the default member level cannot be deleted."))
    db.session.delete(level)
    db.session.flush()


def level_for(customer) -> PriceLevel | None:
    """The price level of a buyer (None: a guest), falling back to the shop's defaults."""
    levels = list_levels()
    if customer is None or not getattr(customer, "is_authenticated", False):
        return next((lv for lv in levels if lv.is_guest), None)
    if customer.level_id is not None:
        for level in levels:
            if level.id == customer.level_id:
                return level
    return next((lv for lv in levels if lv.is_default), None)


def upgrade_level(customer) -> PriceLevel | None:
    """Raise a buyer to the highest level their lifetime spend reaches (never lowers it)."""
    current = level_for(customer)
    best = current
    for level in list_levels():
        if level.spend_threshold is None or level.is_guest:
            continue
        if customer.lifetime_spend >= level.spend_threshold and (
            best is None or level.rank > best.rank
        ):
            best = level
    if best is not None and best is not current:
        customer.level_id = best.id
        db.session.flush()
    return best


def _floor_check(product: Product, price: int, what: str) -> None:
    _amount(price, "price", what)
    cost = unit_cost(product)
    if cost is not None and price < cost:
        shown = format_money(cost, product.supply.currency if product.is_supply
                             else current_app.config["CURRENCY"])
        raise DomainError(_l("The %(what)s must not be below the cost of %(shown)s.",
                             what=what, shown=shown), field="price")


def set_level_price(product: Product, level: PriceLevel, price: int | None) -> None:
    """Give a level an explicit price for a product (None removes it)."""
    existing = next((lp for lp in product.level_prices if lp.level_id == level.id), None)
    if price is None:
        if existing is not None:
            product.level_prices.remove(existing)
        db.session.flush()
        return
    _floor_check(product, price, _l("price for %(level)s", level=level.name))
    if existing is None:
        product.level_prices.append(
            LevelPrice(tenant_id=product.tenant_id, level_id=level.id, price=price))
    else:
        existing.price = price
    db.session.flush()


def set_bulk_prices(product: Product, breaks: Iterable[tuple[int, int]]) -> None:
    """Replace a product's bulk price breaks: [(min_qty, unit_price), ...]."""
    checked: dict[int, int] = {}
    for min_qty, unit_price in breaks:
        if min_qty < 2:
            raise DomainError(_l("A bulk price starts at a quantity of 2 or more."), field="bulk")
        if min_qty in checked:
            raise DomainError(_l("Quantity %(min_qty)s appears twice.",
                                 min_qty=min_qty), field="bulk")
        _floor_check(product, unit_price, _l("bulk price"))
        checked[min_qty] = unit_price
    product.bulk_prices.clear()
    db.session.flush()
    for min_qty, unit_price in sorted(checked.items()):
        product.bulk_prices.append(
            BulkPrice(tenant_id=product.tenant_id, min_qty=min_qty, unit_price=unit_price))
    db.session.flush()


# -- coupons -----------------------------------------------------------------------------------


@dataclass
class CouponTerms:
    kind: str
    value: int
    scope: str = "all"
    category_id: int | None = None
    product_id: int | None = None
    min_amount: int = 0
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    max_uses: int | None = None
    max_uses_per_buyer: int | None = None
    first_order_only: bool = False
    allowed_level_ids: tuple[int, ...] = ()


def _check_terms(terms: CouponTerms) -> None:
    if terms.kind not in COUPON_KINDS:
        raise DomainError(_l("Choose percent or fixed amount."), field="kind")
    if terms.value <= 0 or (terms.kind == "percent" and terms.value > BASIS_POINTS):
        raise DomainError(_l("A percent coupon takes 0.01% to 100%; a fixed one more than 0."),
                          field="value")
    if terms.scope not in COUPON_SCOPES:
        raise DomainError(_l("Choose what the coupon applies to."), field="scope")
    if terms.scope == "category":
        if terms.category_id is None:
            raise DomainError(_l("Choose the category."), field="category_id")
        get_category(terms.category_id)
    if terms.scope == "product":
        if terms.product_id is None:
            raise DomainError(_l("Choose the product."), field="product_id")
        get_product(terms.product_id)
    _amount(terms.min_amount, "min_amount", _l("minimum amount"))
    if terms.kind == "fixed":
        _amount(terms.value, "value", _l("coupon value"))
    if terms.starts_at and terms.ends_at and terms.ends_at <= terms.starts_at:
        raise DomainError(_l("The coupon must end after it starts."), field="ends_at")
    for name in ("max_uses", "max_uses_per_buyer"):
        value = getattr(terms, name)
        if value is not None and not 1 <= value <= 1_000_000_000:
            raise DomainError(_l("Use limits must be between 1 and 1,000,000,000."), field=name)
    known = {level.id for level in list_levels()}
    if any(level_id not in known for level_id in terms.allowed_level_ids):
        raise DomainError(_l("Unknown buyer level."), field="allowed_level_ids")


def _coupon(tenant: Tenant, code: str, terms: CouponTerms, batch: str | None) -> Coupon:
    return Coupon(
        tenant_id=tenant.id, code=code, kind=terms.kind, value=terms.value, scope=terms.scope,
        category_id=terms.category_id if terms.scope == "category" else None,
        product_id=terms.product_id if terms.scope == "product" else None,
        min_amount=terms.min_amount, starts_at=terms.starts_at, ends_at=terms.ends_at,
        max_uses=terms.max_uses, max_uses_per_buyer=terms.max_uses_per_buyer,
        first_order_only=terms.first_order_only,
        allowed_level_ids=sorted(set(terms.allowed_level_ids)), batch=batch, active=True,
        used_count=0,
    )


def normalize_coupon_code(code: str) -> str:
    return (code or "").strip().upper()


def create_coupon(tenant: Tenant, code: str, terms: CouponTerms) -> Coupon:
    code = normalize_coupon_code(code)
    if not COUPON_CODE.fullmatch(code):
        raise DomainError(_l("A coupon code is 3 to 40 letters, digits, - or _."), field="code")
    _check_terms(terms)
    if find_coupon(code) is not None:
        raise Conflict(_l("The coupon code %(code)s exists.", code=code), field="code")
    coupon = _coupon(tenant, code, terms, None)
    db.session.add(coupon)
    db.session.flush()
    return coupon


def generate_coupons(tenant: Tenant, count: int, prefix: str, terms: CouponTerms,
                     label: str = "") -> list[Coupon]:
    """A batch of `count` single-use-per-code random codes sharing the same terms."""
    prefix = normalize_coupon_code(prefix)
    if prefix and not re.fullmatch(r"[A-Z0-9]{1,12}", prefix):
        raise DomainError(_l("A prefix is up to 12 letters and digits."), field="prefix")
    if not 1 <= count <= 10_000:
        raise DomainError(_l("Generate between 1 and 10,000 codes at a time."), field="count")
    _check_terms(terms)
    existing = set(db.session.scalars(select(Coupon.code)))
    label = (label or "").strip()[:60] or f"batch-{secrets.token_hex(3)}"
    coupons = []
    while len(coupons) < count:
        body = "".join(secrets.choice(COUPON_ALPHABET) for _ in range(10))
        code = f"{prefix}-{body}" if prefix else body
        if code in existing:
            continue
        existing.add(code)
        coupons.append(_coupon(tenant, code, terms, label))
    db.session.add_all(coupons)
    db.session.flush()
    return coupons


def find_coupon(code: str) -> Coupon | None:
    code = normalize_coupon_code(code)
    if not code:
        return None
    return db.session.scalar(select(Coupon).where(Coupon.code == code))


def get_coupon(coupon_id: int) -> Coupon:
    coupon = row_by_id(Coupon, coupon_id)
    if coupon is None:
        raise NotFound(_l("No such coupon."))
    return coupon


def list_coupons(search: str = "", limit: int = 500) -> list[Coupon]:
    query = select(Coupon).order_by(Coupon.id.desc()).limit(limit)
    if search:
        query = query.where(Coupon.code.contains(normalize_coupon_code(search), autoescape=True))
    return list(db.session.scalars(query))


def set_coupon_active(coupon: Coupon, active: bool) -> Coupon:
    coupon.active = active
    db.session.flush()
    return coupon


# -- a new shop -----------------------------------------------------------------------------------


def stock_new_shop(tenant: Tenant, markup_bp: int | None = None) -> None:
    """Give a new shop its buyer levels, its default markup (`markup_bp`, e.g. its plan's;
    else the DEFAULT_MARKUP_BP setting) and the whole supply catalog."""
    ensure_default_levels(tenant)
    if db.session.scalar(select(MarkupRule).where(MarkupRule.scope == "shop")) is None:
        db.session.add(MarkupRule(
            tenant_id=tenant.id, scope="shop", kind="percent",
            value=current_app.config["DEFAULT_MARKUP_BP"] if markup_bp is None else markup_bp,
            rounding="0.01",
        ))
        db.session.flush()
    list_whole_supply_catalog(tenant)
