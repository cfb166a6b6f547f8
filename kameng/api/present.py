"""What the API answers: rows turned into the JSON shapes of `openapi.SCHEMAS` (plain dicts,
money in integer minor units, times in ISO 8601 UTC)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select

from ..catalog.models import PriceLevel, Product
from ..catalog.pricing import quote
from ..extensions import db
from ..orders.models import Order
from ..storefront.service import ShelfItem
from ..tenants.models import Tenant


def when(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def day(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _price_breaks(tenant: Tenant, item: ShelfItem, level: PriceLevel | None) -> list[dict]:
    """Quantities from which the unit price drops, for this buyer's level."""
    product = item.product
    low, high = product.quantity_range
    breaks, last = [], item.quote.unit
    for qty in sorted({b.min_qty for b in product.bulk_prices if low < b.min_qty <= high}):
        unit = quote(tenant, product, level, qty).unit
        if unit < last:
            breaks.append({"min_quantity": qty, "unit_price": unit})
            last = unit
    return breaks


def product(tenant: Tenant, item: ShelfItem, level: PriceLevel | None) -> dict:
    p: Product = item.product
    low, high = p.quantity_range
    category = p.category
    return {
        "id": p.id,
        "name": p.title,
        "description_html": p.description,
        "category": {"id": category.id, "name": category.name} if category else None,
        "delivery_kind": p.kind,
        "input_fields": [{"name": f["name"], "label": f["label"], "type": f.get("type", "text"),
                          "required": bool(f.get("required")), "pattern": f.get("pattern", "")}
                         for f in p.fields],
        "min_quantity": low,
        "max_quantity": high,
        "price": {"currency": item.quote.currency, "unit_price": item.quote.unit,
                  "level": level.name if level is not None else None},
        "price_breaks": _price_breaks(tenant, item, level),
        "stock": item.stock,
        "available": not item.sold_out,
    }


def order(row: Order, delivered: list[dict] | None = None) -> dict:
    """An order; `delivered` (what the buyer received) only for the buyer who bought it."""
    data = {
        "id": row.id,
        "number": row.number,
        "status": row.status,
        "currency": row.currency,
        "total": row.total,
        "amount_due": row.amount_due,
        "created_at": when(row.created_at),
        "paid_at": when(row.paid_at),
        "delivered_at": when(row.delivered_at),
        "lines": [{"product_id": line.product_id, "title": line.title, "quantity": line.qty,
                   "unit_price": line.unit_price, "total": line.total,
                   "inputs": {str(k): str(v) for k, v in (line.buyer_input or {}).items()}}
                  for line in row.lines],
    }
    if delivered is not None:
        data["delivered"] = delivered
    return data


def delivered(items) -> list[dict]:
    """`orders.service.delivered_items` as the API shows it (lines with nothing left out)."""
    return [{"title": line.title, "items": list(values)} for line, values in items if values]


def transaction(posting, txn) -> dict:
    return {"id": posting.id, "amount": posting.amount, "currency": posting.currency,
            "kind": txn.kind, "order_id": txn.order_id, "memo": txn.memo or "",
            "created_at": when(txn.created_at)}


def wallet(account, owner: str) -> dict:
    return {"wallet": {"owner": owner, "currency": account.currency,
                       "balance": account.balance, "held": account.held,
                       "available": account.balance - account.held}}


def webhook(endpoint) -> dict:
    return {"id": endpoint.id, "url": endpoint.url, "events": list(endpoint.events or []),
            "active": bool(endpoint.active), "created_at": when(endpoint.created_at)}


# -- the platform's view of a shop ------------------------------------------------------------


def billing(tenant: Tenant) -> dict:
    """A shop's billing state: its subscription (None when it has none yet) and open
    invoices. Read-only; the billing module owns these tables."""
    from ..billing.models import Invoice, Subscription

    subscription = db.session.scalar(select(Subscription).where(
        Subscription.tenant_id == tenant.id))
    invoices = list(db.session.scalars(select(Invoice).where(
        Invoice.tenant_id == tenant.id, Invoice.status == "open").order_by(Invoice.id)))
    sub = None
    if subscription is not None:
        plan = subscription.plan
        sub = {"plan": plan.code if plan else "", "plan_name": plan.name if plan else "",
               "status": subscription.status, "period_start": day(subscription.period_start),
               "period_end": day(subscription.period_end),
               "trial_ends_at": when(subscription.trial_ends_at),
               "grace_until": when(subscription.grace_until)}
    return {
        "subscription": sub,
        "open_invoices": [{"number": i.number, "status": i.status, "total": i.total,
                           "currency": i.currency, "due_at": when(i.due_at),
                           "paid_at": when(i.paid_at)} for i in invoices],
        "amount_due": sum(i.total for i in invoices if i.currency == tenant.currency),
        "currency": tenant.currency,
    }


def shop(tenant: Tenant) -> dict:
    return {"slug": tenant.slug, "name": tenant.name, "status": tenant.status,
            "created_at": when(tenant.created_at),
            "hosts": [d.host for d in tenant.domains if d.kind == "subdomain" or d.verified],
            "billing": billing(tenant)}
