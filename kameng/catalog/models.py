"""Catalog tables: the platform's supply catalog, each shop's own catalog, and its price rules.

Supply categories and products are platform tables (not tenant-scoped): the platform sells
them to shops at cost. A shop's `Product` is either a listing of a supply product (with the
shop's markup) or the shop's own product (with its own price and codes). Markup rules,
buyer levels, explicit level prices, bulk prices and coupons are shop-owned.
"""

from __future__ import annotations

from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..tenants.scoping import TenantScoped

DELIVERY_KINDS = {  # kind -> its label (lazy: shown in the page's language)
    "card": _l("Card code from stock"),
    "text": _l("Fixed content"),
    "manual": _l("Manual fulfilment"),
    "topup": _l("Direct top-up"),
}
INPUT_TYPES = ("text", "email", "number", "tel")
MARKUP_KINDS = ("percent", "fixed")
MARKUP_SCOPES = ("shop", "category", "product")
COUPON_KINDS = ("percent", "fixed")
COUPON_SCOPES = ("all", "category", "product")


def _now_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class ProductDetails:
    """What a buyer sees and what delivery needs; shared by supply and shop products."""

    description_html: Mapped[str] = mapped_column(Text, default="")
    delivery_kind: Mapped[str] = mapped_column(String(16), default="card")
    # Buyer input fields: [{"name", "label", "type", "required", "pattern"}], e.g. the game
    # account of a top-up.
    input_fields: Mapped[list] = mapped_column(JSON, default=list)
    min_qty: Mapped[int] = mapped_column(Integer, default=1)
    max_qty: Mapped[int] = mapped_column(Integer, default=100)
    # `text` delivery: the same content for every buyer, encrypted at rest.
    text_content: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    image_data: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    image_type: Mapped[str | None] = mapped_column(String(32))
    image_version: Mapped[int] = mapped_column(Integer, default=0)
    low_stock_threshold: Mapped[int] = mapped_column(Integer, default=0)
    # When the last low-stock alert went out (cleared when stock is back above the threshold).
    low_stock_alerted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Direct top-up: the upstream supplier to buy from, and the product's code there.
    supplier_id: Mapped[int | None] = mapped_column(
        ForeignKey("suppliers.id", ondelete="SET NULL"))
    supplier_product: Mapped[str] = mapped_column(String(120), default="", server_default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class SupplyCategory(db.Model):
    __tablename__ = "supply_categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    sort: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    products: Mapped[list[SupplyProduct]] = relationship(
        back_populates="category", order_by="SupplyProduct.name"
    )


class SupplyProduct(ProductDetails, db.Model):
    """A product the platform sells to shops at `cost`; its codes belong to the platform."""

    __tablename__ = "supply_products"
    __table_args__ = (
        CheckConstraint("cost >= 0", name="cost"),
        CheckConstraint("delivery_kind IN ('card', 'text', 'manual', 'topup')", name="kind"),
        CheckConstraint("min_qty >= 1 AND max_qty >= min_qty", name="qty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("supply_categories.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    cost: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")

    category: Mapped[SupplyCategory | None] = relationship(back_populates="products",
                                                           lazy="joined")

    @property
    def on_offer(self) -> bool:
        """Offered to shops: the product and its category (if any) are active."""
        return bool(self.active and (self.category is None or self.category.active))

    def __repr__(self) -> str:
        return f"<SupplyProduct {self.id} {self.name}>"


class Category(TenantScoped, db.Model):
    """A shop's category; `supply_category_id` links one created by listing a supply category."""

    __tablename__ = "categories"
    __table_args__ = (
        Index(
            "uq_categories_tenant_supply_category",
            "tenant_id",
            "supply_category_id",
            unique=True,
            postgresql_where=text("supply_category_id IS NOT NULL"),
            sqlite_where=text("supply_category_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    sort: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    supply_category_id: Mapped[int | None] = mapped_column(
        ForeignKey("supply_categories.id", ondelete="SET NULL")
    )

    products: Mapped[list[Product]] = relationship(back_populates="category")


class Product(ProductDetails, TenantScoped, db.Model):
    """A product on a shop's shelf: a listing of a supply product, or the shop's own.

    For a listing, what is delivered (kind, input fields, quantities, content, codes) comes from
    the supply product; the shop sets name, description, category, order and its markup.
    For an own product, `price` is the shop's base price.
    """

    __tablename__ = "products"
    __table_args__ = (
        Index(
            "uq_products_tenant_supply_product",
            "tenant_id",
            "supply_product_id",
            unique=True,
            postgresql_where=text("supply_product_id IS NOT NULL"),
            sqlite_where=text("supply_product_id IS NOT NULL"),
        ),
        UniqueConstraint("tenant_id", "id"),  # the target of shop-owned composite keys
        CheckConstraint("price IS NULL OR price >= 0", name="price"),
        CheckConstraint("supply_product_id IS NOT NULL OR price IS NOT NULL", name="priced"),
        CheckConstraint("delivery_kind IN ('card', 'text', 'manual', 'topup')", name="kind"),
        CheckConstraint("min_qty >= 1 AND max_qty >= min_qty", name="qty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id", ondelete="SET NULL"), index=True
    )
    supply_product_id: Mapped[int | None] = mapped_column(
        ForeignKey("supply_products.id", ondelete="RESTRICT")
    )
    name: Mapped[str | None] = mapped_column(String(200))  # a listing may keep the supply name
    price: Mapped[int | None] = mapped_column(Integer)
    sort: Mapped[int] = mapped_column(Integer, default=0)
    # A product bought from an upstream Kameng shop: its price and stock there (kept in sync);
    # the shop's markup rules then price it like a supply product, never below that cost.
    upstream_cost: Mapped[int | None] = mapped_column(Integer)
    upstream_stock: Mapped[int | None] = mapped_column(Integer)
    upstream_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    category: Mapped[Category | None] = relationship(back_populates="products")
    supply: Mapped[SupplyProduct | None] = relationship(lazy="joined")
    bulk_prices: Mapped[list[BulkPrice]] = relationship(
        back_populates="product", order_by="BulkPrice.min_qty", cascade="all, delete-orphan"
    )
    level_prices: Mapped[list[LevelPrice]] = relationship(
        back_populates="product", cascade="all, delete-orphan"
    )

    @property
    def is_supply(self) -> bool:
        return self.supply_product_id is not None

    @property
    def title(self) -> str:
        return self.name or (self.supply.name if self.supply is not None else "")

    @property
    def description(self) -> str:
        if self.description_html or self.supply is None:
            return self.description_html or ""
        return self.supply.description_html or ""

    @property
    def has_image(self) -> bool:
        return bool(self.image_type or (self.supply is not None and self.supply.image_type))

    @property
    def source(self) -> ProductDetails:
        """Where delivery details come from: the supply product for a listing, else itself."""
        return self.supply if self.supply is not None else self

    @property
    def kind(self) -> str:
        return self.source.delivery_kind

    @property
    def fields(self) -> list:
        return self.source.input_fields or []

    @property
    def quantity_range(self) -> tuple[int, int]:
        return self.source.min_qty, self.source.max_qty

    @property
    def on_sale(self) -> bool:
        return bool(self.active and (self.supply is None or self.supply.on_offer))

    def __repr__(self) -> str:
        return f"<Product {self.id} {self.title} of tenant {self.tenant_id}>"


class MarkupRule(TenantScoped, db.Model):
    """How a shop prices supply products: cost + percent or fixed amount, then a rounding rule.

    The most specific rule wins: product, then category, then the shop default.
    `value` is basis points for `percent` (1500 == 15%) and minor units for `fixed`.
    """

    __tablename__ = "markup_rules"
    __table_args__ = (
        Index("uq_markup_rules_shop", "tenant_id", unique=True,
              postgresql_where=text("scope = 'shop'"), sqlite_where=text("scope = 'shop'")),
        Index("uq_markup_rules_category", "tenant_id", "category_id", unique=True,
              postgresql_where=text("scope = 'category'"),
              sqlite_where=text("scope = 'category'")),
        Index("uq_markup_rules_product", "tenant_id", "product_id", unique=True,
              postgresql_where=text("scope = 'product'"),
              sqlite_where=text("scope = 'product'")),
        CheckConstraint("scope IN ('shop', 'category', 'product')", name="scope"),
        CheckConstraint("kind IN ('percent', 'fixed')", name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id", ondelete="CASCADE"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), default="percent")
    value: Mapped[int] = mapped_column(Integer, default=0)
    rounding: Mapped[str] = mapped_column(String(8), default="0.01")


class PriceLevel(TenantScoped, db.Model):
    """A buyer level (guest, member, VIP, agent …) with its discount and upgrade threshold."""

    __tablename__ = "price_levels"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        UniqueConstraint("tenant_id", "rank"),
        CheckConstraint("discount_bp >= 0 AND discount_bp <= 10000", name="discount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60))
    rank: Mapped[int] = mapped_column(Integer)
    discount_bp: Mapped[int] = mapped_column(Integer, default=0)
    # Lifetime spend (minor units) at which a member is raised to this level automatically.
    spend_threshold: Mapped[int | None] = mapped_column(Integer)
    is_guest: Mapped[bool] = mapped_column(Boolean, default=False)  # the level of visitors
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)  # new accounts start here

    def __repr__(self) -> str:
        return f"<PriceLevel {self.name} of tenant {self.tenant_id}>"


class LevelPrice(TenantScoped, db.Model):
    """An explicit unit price of one product for one buyer level (instead of its discount)."""

    __tablename__ = "level_prices"
    __table_args__ = (
        UniqueConstraint("tenant_id", "level_id", "product_id"),
        CheckConstraint("price >= 0", name="price"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    level_id: Mapped[int] = mapped_column(ForeignKey("price_levels.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    price: Mapped[int] = mapped_column(Integer)

    product: Mapped[Product] = relationship(back_populates="level_prices")


class BulkPrice(TenantScoped, db.Model):
    """A price break: buying at least `min_qty` units costs `unit_price` each."""

    __tablename__ = "bulk_prices"
    __table_args__ = (
        UniqueConstraint("tenant_id", "product_id", "min_qty"),
        CheckConstraint("min_qty >= 2 AND unit_price >= 0", name="values"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    min_qty: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(Integer)

    product: Mapped[Product] = relationship(back_populates="bulk_prices")


class Coupon(TenantScoped, db.Model):
    """A shop's discount code. `value` is basis points (percent) or minor units (fixed)."""

    __tablename__ = "coupons"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code"),
        CheckConstraint("kind IN ('percent', 'fixed')", name="kind"),
        CheckConstraint("scope IN ('all', 'category', 'product')", name="scope"),
        CheckConstraint("value > 0", name="value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16), default="percent")
    value: Mapped[int] = mapped_column(Integer)
    scope: Mapped[str] = mapped_column(String(16), default="all")
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id", ondelete="CASCADE"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    min_amount: Mapped[int] = mapped_column(Integer, default=0)
    starts_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    max_uses: Mapped[int | None] = mapped_column(Integer)
    max_uses_per_buyer: Mapped[int | None] = mapped_column(Integer)
    first_order_only: Mapped[bool] = mapped_column(Boolean, default=False)
    allowed_level_ids: Mapped[list] = mapped_column(JSON, default=list)  # empty: every level
    used_count: Mapped[int] = mapped_column(Integer, default=0)
    batch: Mapped[str | None] = mapped_column(String(60))  # label of a generated batch
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = _now_column()
