"""Low-stock alerts: when a product's available codes fall below its threshold, its owner is
told once (a notice, a mail, the stock.low webhook); the alert re-arms when stock recovers."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from ..catalog.models import Product, SupplyProduct
from ..extensions import db
from ..merchant.models import ShopNotice
from ..orders import events
from ..tenants.scoping import platform_scope, tenant_scope
from .service import stock_summary


def _check(target, tenant_id: int | None, title: str, summary: dict | None) -> bool:
    """Alert or re-arm one product; True when an alert went out."""
    if summary is None or not target.low_stock_threshold:
        return False
    low = summary["available"] < target.low_stock_threshold
    if low and target.low_stock_alerted_at is None:
        target.low_stock_alerted_at = datetime.now(UTC)
        if tenant_id is not None:
            db.session.add(ShopNotice(
                tenant_id=tenant_id, kind="stock_low",
                message=(f"'{title}' has {summary['available']} codes left (alert below "
                         f"{target.low_stock_threshold}).")))
            events.stock_low(tenant_id, title, summary["available"], target.low_stock_threshold)
        return True
    if not low and target.low_stock_alerted_at is not None:
        target.low_stock_alerted_at = None
    return False


def send_low_stock_alerts() -> int:
    """Check every product with a threshold: shops' own products and the platform's supply
    products (the platform's alerts are notices on its console). Commits."""
    sent = 0
    with platform_scope():
        supply = list(db.session.scalars(
            select(SupplyProduct).where(SupplyProduct.low_stock_threshold > 0,
                                        SupplyProduct.delivery_kind == "card")))
        for product, summary in zip(supply, stock_summary(supply).values(), strict=True):
            sent += _check(product, None, product.name, summary)
        owners = sorted(set(db.session.scalars(
            select(Product.tenant_id).where(Product.low_stock_threshold > 0,
                                            Product.supply_product_id.is_(None),
                                            Product.delivery_kind == "card"))))
        db.session.commit()
    for tenant_id in owners:
        with tenant_scope(tenant_id):
            own = list(db.session.scalars(
                select(Product).where(Product.low_stock_threshold > 0,
                                      Product.supply_product_id.is_(None),
                                      Product.delivery_kind == "card")))
            summaries = stock_summary(own)
            for product in own:
                sent += _check(product, tenant_id, product.title, summaries[product.id])
            db.session.commit()
    return sent
