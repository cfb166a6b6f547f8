"""Kameng-to-Kameng supply: a shop imports products from an upstream Kameng shop through that
shop's API and keeps their price and stock in sync.

The upstream is one of the shop's suppliers with the "kameng" adapter; its credentials are an
agent buyer key at the upstream shop (the upstream prices everything at that buyer's level,
and orders are paid from that buyer's wallet there). An imported product is an own product of
the shop with

- `delivery_kind` "topup", `supplier_id` the upstream supplier and `supplier_product` the
  upstream product id: a paid order is bought upstream by kameng/delivery/topup.py (placed
  with an Idempotency-Key, polled until the upstream delivers) and the codes the upstream
  delivers become the order's content;
- `upstream_cost` the upstream's unit price for us, `upstream_stock` its stock (None: not
  limited), `upstream_synced_at` when they were read: quote() prices it like a supply product
  (cost plus the shop's markup rules, never below cost) and the storefront shows that stock;
- the name, description, input fields and quantity range of the upstream product (the shop
  may rename it afterwards; the sync keeps the input fields and quantities, which delivery
  depends on, and never the name).

`sync_all()` (the `sync_upstream` periodic job) refreshes every imported product: a changed
cost or a product the upstream no longer sells leaves the shop a notice; a vanished product is
shown sold out (stock 0) until it comes back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import exists, select

from ..catalog import service as catalog
from ..catalog.models import Category, Product
from ..delivery.adapters import KamengAdapter, UpstreamRetry
from ..delivery.models import Supplier
from ..delivery.suppliers import get_supplier, supplier_credentials
from ..errors import DomainError
from ..extensions import db
from ..merchant.models import ShopNotice
from ..money import MAX_AMOUNT, format_money
from ..security.http import UnsafeURL
from ..security.sanitize import clean_html
from ..tenants.models import Tenant
from ..tenants.scoping import platform_scope, tenant_scope

log = logging.getLogger(__name__)

PAGE = 200
MAX_PAGES = 50  # at most 10,000 upstream products per supplier


@dataclass(frozen=True)
class Offer:
    """A product as the upstream shop offers it to us (checked: the upstream is external)."""

    id: int
    name: str
    description_html: str
    category: str
    unit_price: int
    currency: str
    stock: int | None
    input_fields: list
    min_qty: int
    max_qty: int


@dataclass
class SyncReport:
    updated: int = 0
    repriced: int = 0
    gone: int = 0


def kameng_suppliers(tenant_id: int) -> list[Supplier]:
    """The shop's suppliers that are Kameng shops."""
    return list(db.session.scalars(select(Supplier).where(
        Supplier.tenant_id == tenant_id, Supplier.adapter == "kameng")
        .order_by(Supplier.name, Supplier.id)))


def imported_products(supplier_id: int | None = None) -> list[Product]:
    """The bound shop's products bought from an upstream Kameng shop."""
    query = select(Product).where(Product.upstream_cost.is_not(None)).order_by(Product.id)
    if supplier_id is not None:
        query = query.where(Product.supplier_id == supplier_id)
    return list(db.session.scalars(query))


def _offer(raw) -> Offer | None:
    """An upstream product as we can use it, or None when it is not a usable product."""
    if not isinstance(raw, dict):
        return None
    price = raw.get("price") if isinstance(raw.get("price"), dict) else {}
    ident, unit = raw.get("id"), price.get("unit_price")
    low, high = raw.get("min_quantity"), raw.get("max_quantity")
    stock = raw.get("stock")
    numbers = (ident, unit, low, high)
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
        return None
    if not (ident > 0 and 0 <= unit <= MAX_AMOUNT and 1 <= low <= high <= 10_000):
        return None
    if stock is not None and (not isinstance(stock, int) or isinstance(stock, bool)):
        return None
    try:
        fields = catalog.check_input_fields(raw.get("input_fields") or [])
    except (DomainError, AttributeError, TypeError):
        return None
    category = raw.get("category") if isinstance(raw.get("category"), dict) else {}
    name = " ".join(str(raw.get("name") or "").split())[:200] or f"Product {ident}"
    return Offer(id=ident, name=name,
                 description_html=clean_html(str(raw.get("description_html") or "")[:20_000]),
                 category=" ".join(str(category.get("name") or "").split())[:120],
                 unit_price=unit, currency=str(price.get("currency") or ""),
                 stock=max(0, stock) if stock is not None else None, input_fields=fields,
                 min_qty=low, max_qty=high)


def fetch_offers(supplier: Supplier) -> dict[int, Offer]:
    """Every product the upstream shop offers us, by its id there (all pages).

    DomainError when the upstream refuses (wrong key …) or cannot be reached."""
    adapter, credentials = KamengAdapter(), supplier_credentials(supplier)
    offers: dict[int, Offer] = {}
    after = 0
    try:
        for _ in range(MAX_PAGES):
            data = adapter.fetch(supplier, credentials,
                                 f"/api/v1/products?limit={PAGE}&after={after}")
            items = data.get("products") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise DomainError(_l("The upstream shop's answer holds no product list."))
            for raw in items:
                offer = _offer(raw)
                if offer is not None:
                    offers[offer.id] = offer
            following = data.get("next_after")
            if not isinstance(following, int) or following <= after:
                break
            after = following
    except UpstreamRetry as error:
        raise DomainError(_l("The upstream shop could not be reached: %(message)s.",
                             message=error.message)) from None
    except UnsafeURL as error:
        raise DomainError(error.message) from None
    return offers


def _currency_problem(tenant: Tenant, offer: Offer) -> str | None:
    if offer.currency and offer.currency != tenant.currency:
        return (f"'{offer.name}' is priced in {offer.currency} upstream; this shop sells in "
                f"{tenant.currency}.")
    return None


def _category_for(tenant: Tenant, name: str) -> int | None:
    if not name:
        return None
    found = db.session.scalar(select(Category).where(Category.name == name))
    return (found or catalog.create_category(tenant, name)).id


def _apply(product: Product, offer: Offer, now: datetime) -> None:
    """Copy what delivery and pricing depend on (never the shop's own name)."""
    product.upstream_cost = offer.unit_price
    product.price = offer.unit_price  # unused by quote() while upstream_cost is set
    product.upstream_stock = offer.stock
    product.upstream_synced_at = now
    product.input_fields = offer.input_fields
    product.min_qty, product.max_qty = offer.min_qty, offer.max_qty


def import_products(tenant: Tenant, supplier_id, upstream_ids) -> list[Product]:
    """Put upstream products on the bound shop's shelf (one already imported is refreshed)."""
    supplier = get_supplier(tenant.id, supplier_id)
    if supplier.adapter != "kameng":
        raise DomainError(_l("Products can be imported only from a Kameng supplier."))
    wanted = []
    for raw in upstream_ids or ():
        try:
            wanted.append(int(raw))
        except (TypeError, ValueError):
            raise DomainError(_l("Choose products to import."), field="products") from None
    if not wanted:
        raise DomainError(_l("Choose products to import."), field="products")
    offers = fetch_offers(supplier)
    now = datetime.now(UTC)
    imported = []
    for upstream_id in dict.fromkeys(wanted):
        offer = offers.get(upstream_id)
        if offer is None:
            raise DomainError(_l("The upstream shop does not offer product %(upstream_id)s.",
                                 upstream_id=upstream_id),
                              field="products")
        problem = _currency_problem(tenant, offer)
        if problem:
            raise DomainError(problem, field="products")
        product = db.session.scalar(select(Product).where(
            Product.supplier_id == supplier.id, Product.supplier_product == str(offer.id)))
        if product is None:
            product = catalog.create_product(
                tenant, name=offer.name, price=offer.unit_price,
                category_id=_category_for(tenant, offer.category),
                description_html=offer.description_html, delivery_kind="topup",
                input_fields=offer.input_fields, min_qty=offer.min_qty,
                max_qty=offer.max_qty, supplier_id=supplier.id,
                supplier_product=str(offer.id))
        _apply(product, offer, now)
        imported.append(product)
    db.session.flush()
    return imported


def sync_supplier(tenant: Tenant, supplier: Supplier) -> SyncReport:
    """Refresh the price and stock of every product imported from `supplier`."""
    products = imported_products(supplier.id)
    report = SyncReport()
    if not products:
        return report
    offers = fetch_offers(supplier)
    now = datetime.now(UTC)
    for product in products:
        offer = offers.get(int(product.supplier_product)) \
            if product.supplier_product.isdigit() else None
        if offer is None or _currency_problem(tenant, offer):
            if product.upstream_stock != 0:
                report.gone += 1
                db.session.add(ShopNotice(
                    tenant_id=tenant.id, kind="upstream_gone",
                    message=f"'{product.title}' is no longer offered by {supplier.name}: it "
                            "shows as sold out until it comes back."))
            product.upstream_stock = 0
            product.upstream_synced_at = now
            continue
        if offer.unit_price != product.upstream_cost:
            report.repriced += 1
            db.session.add(ShopNotice(
                tenant_id=tenant.id, kind="upstream_price",
                message=f"{supplier.name} changed the price of '{product.title}' from "
                        f"{format_money(product.upstream_cost, tenant.currency)} to "
                        f"{format_money(offer.unit_price, tenant.currency)}; your markup "
                        "applies to the new cost."))
        _apply(product, offer, now)
        report.updated += 1
    db.session.flush()
    return report


def sync_all() -> int:
    """Every shop's imported products, one supplier at a time, each in its own transaction
    (one unreachable upstream does not stop the others). Returns the products updated."""
    with platform_scope():
        rows = db.session.execute(
            select(Supplier.id, Supplier.tenant_id).where(
                Supplier.adapter == "kameng", Supplier.active.is_(True),
                Supplier.tenant_id.is_not(None),
                exists().where(Product.supplier_id == Supplier.id,
                               Product.upstream_cost.is_not(None)))
            .order_by(Supplier.id)).all()
    db.session.rollback()
    updated = 0
    for supplier_id, tenant_id in rows:
        with tenant_scope(tenant_id):
            try:
                tenant = db.session.get(Tenant, tenant_id)
                supplier = db.session.get(Supplier, supplier_id)
                updated += sync_supplier(tenant, supplier).updated
                db.session.commit()
            except DomainError as error:
                db.session.rollback()
                log.warning("upstream sync of supplier %s (shop %s) failed: %s", supplier_id,
                            tenant_id, error.message)
            except Exception:
                db.session.rollback()
                log.exception("upstream sync of supplier %s (shop %s) failed", supplier_id,
                              tenant_id)
    return updated
