"""What the shop pages show: shelves of priced, stocked products for one buyer level.

Every price comes from `catalog.pricing.quote`; this module only decides which products a
buyer may see and gathers their data with one query per kind of data (products with their
bulk and level prices, stock of all of them at once, the shop's markup rules once), so a page
costs the same few queries whether the shop sells five products or five hundred.

A product is on the shelf when it is on sale (active, and its supply product too) and its
category, if it has one, is active: hiding a category hides its products everywhere.

The home, category and search pages read their shelves through the storefront cache
(kameng/storefront/cache.py): a `ShopFront` per shop (open or closed, language, look,
categories, levels), the priced shelf per shop and buyer level (`ProductCard`s with their
quotes), and the stock of that shelf — each a copy of the rows, never an ORM object, so it
can be shared by requests and threads; each kept under the version tokens it depends on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask_babel import lazy_gettext as _l

from ..appearance.service import Look, look_for
from ..catalog import service as catalog
from ..catalog.models import Category, PriceLevel, Product
from ..catalog.pricing import Quote, quote
from ..errors import NotFound
from ..extensions import db
from ..inventory.service import available_stock
from ..tenants.models import Tenant
from . import cache

SEARCH_MAX_LENGTH = 100
OTHER_TITLE = "Other"


@dataclass(frozen=True)
class CategoryCard:
    """A shop category as its pages show it (a copy of the row, for the cache)."""

    id: int
    name: str


@dataclass(frozen=True)
class ProductCard:
    """What a shelf shows of a product: a copy of its row, cached and shared by requests."""

    id: int
    title: str
    category_id: int | None
    quantity_range: tuple[int, int]
    kind: str
    supply_product_id: int | None
    upstream_stock: int | None
    image_token: str | None

    @property
    def is_supply(self) -> bool:
        return self.supply_product_id is not None

    @classmethod
    def of(cls, product: Product) -> ProductCard:
        return cls(id=product.id, title=product.title, category_id=product.category_id,
                   quantity_range=product.quantity_range, kind=product.kind,
                   supply_product_id=product.supply_product_id,
                   upstream_stock=product.upstream_stock, image_token=image_token(product))


@dataclass(frozen=True)
class ShelfItem:
    """One product as a buyer sees it: its price at the smallest quantity, and its stock."""

    product: Product | ProductCard
    quote: Quote  # one unit at the product's minimum quantity, for the buyer's level
    stock: int | None  # units a buyer can order now (None: not limited by codes)
    from_quote: Quote | None = None  # the cheapest bulk break, when cheaper than `quote`

    @property
    def unit(self) -> int:
        return self.quote.unit

    @property
    def from_unit(self) -> int | None:
        return self.from_quote.unit if self.from_quote is not None else None

    @property
    def sold_out(self) -> bool:
        return self.stock is not None and self.stock < self.product.quantity_range[0]

    @property
    def image_token(self) -> str | None:
        if isinstance(self.product, ProductCard):
            return self.product.image_token
        return image_token(self.product)


@dataclass(frozen=True)
class ShelfSection:
    """A heading of the home page: a category (None: products without one) and its items."""

    category: Category | CategoryCard | None
    title: str
    items: list[ShelfItem]


@dataclass(frozen=True)
class PriceBreak:
    """A row of a product's bulk price table: from `min_qty` units on, each costs `quote.unit`."""

    min_qty: int
    quote: Quote


@dataclass(frozen=True)
class ProductView:
    """Everything the product page shows."""

    item: ShelfItem
    category: Category | None  # None: the product has no category
    level: PriceLevel | None
    guest_quote: Quote | None  # the visitor's price, when this buyer's is lower
    price_breaks: list[PriceBreak]  # empty when no bulk price lowers this buyer's price


@dataclass(frozen=True)
class ProductImage:
    data: bytes
    content_type: str
    token: str  # changes whenever the image does: the ?v= of its links and its ETag


# -- reading the shelf ---------------------------------------------------------------------


def shows_stock_numbers(tenant: Tenant, settings: dict | None = None) -> bool:
    """Whether the shop shows how many units are left (else just in stock / sold out): a
    setting of its theme (`settings`, else read from the shop)."""
    if settings is None:
        from ..appearance.service import theme_settings

        settings = theme_settings(tenant)
    return bool(settings.get("show_stock_numbers", True))


def image_token(product: Product) -> str | None:
    """The version of the image a product shows (None: no image).

    An own image and a supply product's image number their versions separately, so the token
    says which one it is: a listing that gets its own image never reuses a cached URL.
    """
    if product.image_type:
        return str(product.image_version or 0)
    if product.supply is not None and product.supply.image_type:
        return f"s{product.supply.image_version or 0}"
    return None


def _on_shelf(product: Product, active_category_ids: set[int]) -> bool:
    return product.on_sale and (
        product.category_id is None or product.category_id in active_category_ids
    )


def _bulk_quantities(product: Product) -> list[int]:
    """Quantities at which a bulk break starts, within what the product may be ordered."""
    low, high = product.quantity_range
    return sorted({b.min_qty for b in product.bulk_prices if low < b.min_qty <= high})


def _shelf_quotes(tenant: Tenant, product: Product,
                  level: PriceLevel | None) -> tuple[Quote, Quote | None]:
    """(one unit at the minimum quantity, the cheapest bulk break when cheaper than that)."""
    first = quote(tenant, product, level, product.quantity_range[0])
    cheapest = None
    for qty in _bulk_quantities(product):
        candidate = quote(tenant, product, level, qty)
        if candidate.unit < first.unit and (cheapest is None or candidate.unit < cheapest.unit):
            cheapest = candidate
    return first, cheapest


def _shelf_item(tenant: Tenant, product: Product, level: PriceLevel | None,
                stock: int | None) -> ShelfItem:
    first, cheapest = _shelf_quotes(tenant, product, level)
    return ShelfItem(product=product, quote=first, stock=stock, from_quote=cheapest)


def shelf(tenant: Tenant, level: PriceLevel | None, products: list[Product]) -> list[ShelfItem]:
    """Price and stock `products` for a buyer at `level`: one stock query for all of them."""
    stock = available_stock(products)
    return [_shelf_item(tenant, p, level, stock.get(p.id)) for p in products]


# -- the cached shelves of the home, category and search pages ------------------------------


@dataclass(frozen=True)
class ShopFront:
    """What every page of a shop needs first, cached per shop: whether it is open, its
    language, its look, its active categories in display order, and its buyer levels."""

    tenant_id: int
    status: str
    locale: str
    look: Look
    categories: tuple[CategoryCard, ...]
    level_ids: frozenset[int]
    guest_level_id: int | None
    default_level_id: int | None

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    def level_id_for(self, customer) -> int | None:
        """The id of the level a buyer is priced at (as catalog.level_for picks it)."""
        if customer is None or not getattr(customer, "is_authenticated", False):
            return self.guest_level_id
        if customer.level_id is not None and customer.level_id in self.level_ids:
            return customer.level_id
        return self.default_level_id


@dataclass(frozen=True)
class PricedCard:
    """A product on the shelf with its quotes for one buyer level (stock comes separately)."""

    card: ProductCard
    quote: Quote
    from_quote: Quote | None


TenantLoader = Callable[[], Tenant]


def _through_cache(key: tuple, tokens: tuple | None, load: Callable):
    """`load()`, kept under `key` + `tokens`; with no tokens (cache off, Redis failing) read
    afresh every time."""
    if tokens is None:
        return load()
    return cache.cached("data", (*key, *tokens), load)


def shop_front(tenant_id: int, load_tenant: TenantLoader) -> ShopFront:
    """The shop's front (read from the database only after the shop's catalog changed).

    Runs with the shop bound to the session; `load_tenant()` returns its row (LookupError: it
    does not exist) and is called only on a miss.
    """
    tokens = cache.versions(tenant_id)
    return _through_cache(("front", tenant_id), tokens and (tokens[0], tokens[2]),
                          lambda: _load_front(load_tenant()))


def _load_front(tenant: Tenant) -> ShopFront:
    levels = catalog.list_levels()
    return ShopFront(
        tenant_id=tenant.id, status=tenant.status, locale=tenant.locale, look=look_for(tenant),
        categories=tuple(CategoryCard(c.id, c.name)
                         for c in catalog.list_categories(active_only=True)),
        level_ids=frozenset(level.id for level in levels),
        guest_level_id=next((lv.id for lv in levels if lv.is_guest), None),
        default_level_id=next((lv.id for lv in levels if lv.is_default), None),
    )


def priced_shelf(front: ShopFront, level_id: int | None,
                 load_tenant: TenantLoader) -> tuple[PricedCard, ...]:
    """Every product on the shop's shelf, in shelf order, priced for one buyer level."""
    tokens = cache.versions(front.tenant_id)

    def load() -> tuple[PricedCard, ...]:
        tenant = load_tenant()
        level = db.session.get(PriceLevel, level_id) if level_id is not None else None
        active_ids = {c.id for c in front.categories}
        products = [p for p in catalog.list_products(on_sale_only=True)
                    if _on_shelf(p, active_ids)]
        return tuple(PricedCard(ProductCard.of(p), *_shelf_quotes(tenant, p, level))
                     for p in products)

    return _through_cache(("shelf", front.tenant_id, level_id),
                          tokens and (tokens[0], tokens[2]), load)


def shelf_stock(front: ShopFront, cards: tuple[ProductCard, ...]) -> dict[int, int | None]:
    """Units in stock of the shelf's products: the shop's stock map, which may be up to
    STOREFRONT_STOCK_STALE_SECONDS old (kameng/storefront/cache.py)."""
    tokens = cache.versions(front.tenant_id)
    if tokens is None:
        return available_stock(cards)
    return cache.stock_map(front.tenant_id, tokens, lambda: available_stock(cards))


def shelf_items(front: ShopFront, level_id: int | None,
                load_tenant: TenantLoader) -> list[ShelfItem]:
    """The shelf for a buyer at `level_id`: priced, with stock, in shelf order."""
    priced = priced_shelf(front, level_id, load_tenant)
    stock = shelf_stock(front, tuple(p.card for p in priced))
    return [ShelfItem(product=p.card, quote=p.quote, stock=stock.get(p.card.id),
                      from_quote=p.from_quote) for p in priced]


def home_sections(front: ShopFront, items: list[ShelfItem]) -> list[ShelfSection]:
    """The home page: each active category (in display order) with its products on the
    shelf, then the products without a category under "Other"; empty sections are left out."""
    by_category: dict[int | None, list[ShelfItem]] = {}
    for item in items:
        by_category.setdefault(item.product.category_id, []).append(item)
    sections = [ShelfSection(c, c.name, by_category[c.id]) for c in front.categories
                if c.id in by_category]
    if None in by_category:
        sections.append(ShelfSection(None, OTHER_TITLE, by_category[None]))
    return sections


def active_category(front: ShopFront, category_id: int) -> CategoryCard:
    """A category buyers may browse (another shop's or an inactive one is not found)."""
    for category in front.categories:
        if category.id == category_id:
            return category
    raise NotFound(_l("No such category."))


def category_items(items: list[ShelfItem], category: CategoryCard) -> list[ShelfItem]:
    return [item for item in items if item.product.category_id == category.id]


def clean_search(text: str | None) -> str:
    """What a buyer typed into the search box, trimmed and capped."""
    return " ".join((text or "")[:SEARCH_MAX_LENGTH].split())


def search_items(items: list[ShelfItem], text: str) -> list[ShelfItem]:
    """Products on the shelf whose title contains `text` (case-insensitive); none for ""."""
    needle = clean_search(text).lower()
    if not needle:
        return []
    return [item for item in items if needle in item.product.title.lower()]


def shelf_product(product_id: int, categories: list[Category]) -> Product:
    """A product buyers may see (inactive, hidden or another shop's: not found)."""
    product = catalog.get_product(product_id)
    if not _on_shelf(product, {c.id for c in categories}):
        raise NotFound(_l("No such product."))
    return product


def product_view(tenant: Tenant, level: PriceLevel | None, guest_level: PriceLevel | None,
                 product: Product, categories: list[Category],
                 stock: dict[int, int | None] | None = None) -> ProductView:
    """The product page for a buyer at `level`: price, visitor's price, bulk table, stock
    (counted now, unless `stock`, the shop's stock map, is given)."""
    if stock is not None and product.id in stock:
        item = _shelf_item(tenant, product, level, stock[product.id])
    else:
        item = shelf(tenant, level, [product])[0]
    guest_quote = None
    if level is not None and (guest_level is None or guest_level.id != level.id):
        candidate = quote(tenant, product, guest_level, product.quantity_range[0])
        if candidate.unit > item.unit:
            guest_quote = candidate
    # A break that does not lower this buyer's price (their level may already beat it) is
    # left out; a table with only its first row is no table.
    breaks = [PriceBreak(product.quantity_range[0], item.quote)]
    for qty in _bulk_quantities(product):
        quoted = quote(tenant, product, level, qty)
        if quoted.unit < breaks[-1].quote.unit:
            breaks.append(PriceBreak(qty, quoted))
    if len(breaks) == 1:
        breaks = []
    category = next((c for c in categories if c.id == product.category_id), None)
    return ProductView(item=item, category=category, level=level, guest_quote=guest_quote,
                       price_breaks=breaks)


def product_image(product_id: int, categories: list[Category]) -> ProductImage:
    """The image a product shows: its own, else its supply product's (loaded only here)."""
    product = shelf_product(product_id, categories)
    token = image_token(product)
    if token is None:
        raise NotFound(_l("This product has no image."))
    source = product if product.image_type else product.supply
    if not source.image_data:  # the deferred column is read here, and only here
        raise NotFound(_l("This product has no image."))
    return ProductImage(data=source.image_data, content_type=source.image_type, token=token)
