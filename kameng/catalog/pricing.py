"""`quote()`: the one place where a price is computed.

Pure: it reads only its arguments (the shop's markup rules, the product with its bulk and level
prices, the buyer's level, the quantity, a coupon and the time) and returns a `Quote` with the
whole breakdown in integer minor units. Checkout, the storefront and the consoles all call it;
clients never send prices.

    base  = own price, or cost + markup (most specific rule), rounded by the rule
    level = base minus the level's discount, or the level's explicit price if that is lower
    unit  = the lower of the level price and the best bulk price for the quantity,
            never below cost for a product that has one
    total = unit * qty - coupon (never below cost * qty for a product that has a cost)

A product has a cost when it is a listing of a supply product (the platform's cost) or is
bought from an upstream Kameng shop (`upstream_cost`, its price there, kept in sync by
kameng/api/upstream.py): both are priced by the markup rules and never sold below cost. An own
product has no cost: its price is the shop's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask_babel import lazy_gettext as _l

from ..errors import DomainError
from ..money import apply_percent, apply_rounding


class QuoteError(DomainError):
    """The quantity or coupon cannot be priced; the message says why."""

    status_code = 422


@dataclass(frozen=True)
class Quote:
    currency: str
    qty: int
    cost: int  # unit cost to the shop (supply listing, upstream product), 0 for an own one
    base: int  # unit price before the buyer's level and bulk breaks
    markup: int  # base - cost for a product with a cost (before the cost floor)
    tier: int  # unit discount from the buyer's level (>= 0)
    bulk: int  # further unit discount from a bulk price break (>= 0)
    unit: int  # final unit price
    subtotal: int  # unit * qty
    coupon: int  # discount from the coupon on the whole line (>= 0)
    total: int  # what the buyer pays
    floor_lifted: bool = False  # the price was raised to the cost floor
    level_name: str = ""
    coupon_code: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def unit_floor(self) -> int:
        return self.cost


def markup_rule_for(rules, product):
    """The most specific markup rule for `product`: product, then category, then shop."""
    by_scope = {"product": None, "category": None, "shop": None}
    for rule in rules:
        if rule.scope == "product" and rule.product_id == product.id:
            by_scope["product"] = rule
        elif rule.scope == "category" and product.category_id is not None \
                and rule.category_id == product.category_id:
            by_scope["category"] = rule
        elif rule.scope == "shop":
            by_scope["shop"] = rule
    return by_scope["product"] or by_scope["category"] or by_scope["shop"]


def marked_up(cost: int, rule) -> int:
    """Cost plus the rule's markup, rounded by the rule (no rule: sold at cost)."""
    if rule is None:
        return cost
    raised = cost + (apply_percent(cost, rule.value) if rule.kind == "percent" else rule.value)
    return apply_rounding(raised, rule.rounding)


def unit_cost(product) -> int | None:
    """What one unit costs the shop — the supply cost of a listing, the upstream price of a
    product bought from another Kameng shop — or None for an own product (no cost floor)."""
    if product.supply is not None:
        return product.supply.cost
    return getattr(product, "upstream_cost", None)


def base_price(tenant, product) -> tuple[int, int]:
    """(cost, base) of one unit before the buyer's level and bulk breaks."""
    cost = unit_cost(product)
    if cost is not None:
        return cost, marked_up(cost, markup_rule_for(tenant.markup_rules, product))
    return 0, product.price or 0


def _level_unit(product, level, base: int) -> int:
    """The level's price: its discount off base, or its explicit price if that is lower."""
    if level is None:
        return base
    unit = base - apply_percent(base, level.discount_bp)
    for explicit in product.level_prices:
        if explicit.level_id == level.id:
            unit = min(unit, explicit.price)
    return unit


def _bulk_unit(product, qty: int) -> int | None:
    """The lowest unit price among the breaks this quantity reaches (None: no break applies)."""
    reached = [b.unit_price for b in product.bulk_prices if b.min_qty <= qty]
    return min(reached) if reached else None


def coupon_problem(coupon, product, level, subtotal: int, now: datetime) -> str | None:
    """Why `coupon` does not apply to this line (None when it applies). Pure checks only:
    use counts and first-order rules need the order history and are checked at checkout."""
    if not coupon.active:
        return _l("This coupon is no longer active.")
    if coupon.starts_at is not None and now < _aware(coupon.starts_at):
        return _l("This coupon is not valid yet.")
    if coupon.ends_at is not None and now > _aware(coupon.ends_at):
        return _l("This coupon has expired.")
    if coupon.scope == "product" and coupon.product_id != product.id:
        return _l("This coupon does not apply to this product.")
    if coupon.scope == "category" and (
        product.category_id is None or coupon.category_id != product.category_id
    ):
        return _l("This coupon does not apply to this category.")
    if coupon.allowed_level_ids and (level is None or level.id not in coupon.allowed_level_ids):
        return _l("This coupon is not available for your buyer level.")
    if subtotal < coupon.min_amount:
        return _l("The order does not reach this coupon's minimum amount.")
    return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def quote(tenant, product, buyer_level, qty: int, coupon=None, *, now: datetime | None = None
          ) -> Quote:
    """Price `qty` units of `product` for a buyer at `buyer_level` (None: no level discount)."""
    low, high = product.quantity_range
    if not isinstance(qty, int) or isinstance(qty, bool) or qty < low or qty > high:
        raise QuoteError(_l("Choose a quantity from %(low)s to %(high)s.",
                            low=low, high=high), field="qty")
    cost, base = base_price(tenant, product)
    has_cost = unit_cost(product) is not None
    level_unit = _level_unit(product, buyer_level, base)
    bulk_unit = _bulk_unit(product, qty)
    unit = level_unit if bulk_unit is None else min(level_unit, bulk_unit)
    notes = []
    floor_lifted = False
    if has_cost and unit < cost:
        unit, floor_lifted = cost, True
        notes.append("Raised to the cost price.")
    subtotal = unit * qty
    discount = 0
    if coupon is not None:
        problem = coupon_problem(coupon, product, buyer_level, subtotal, now or datetime.now(UTC))
        if problem:
            raise QuoteError(problem, field="coupon")
        wanted = apply_percent(subtotal, coupon.value) if coupon.kind == "percent" else coupon.value
        floor = cost * qty if has_cost else 0
        discount = max(0, min(wanted, subtotal - floor))
        if discount < wanted:
            notes.append("The coupon is limited so the price stays at or above cost.")
    return Quote(
        currency=tenant.currency,
        qty=qty,
        cost=cost,
        base=base,
        markup=base - cost if has_cost else 0,
        tier=base - level_unit,
        bulk=level_unit - unit if not floor_lifted and unit < level_unit else 0,
        unit=unit,
        subtotal=subtotal,
        coupon=discount,
        total=subtotal - discount,
        floor_lifted=floor_lifted,
        level_name=buyer_level.name if buyer_level is not None else "",
        coupon_code=coupon.code if coupon is not None else "",
        notes=tuple(notes),
    )
