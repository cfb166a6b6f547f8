"""quote(): examples and properties (hypothesis) of the one pricing function."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kameng.catalog.pricing import Quote, QuoteError, quote
from kameng.errors import DomainError
from kameng.money import apply_rounding, parse_amount, parse_percent

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


# Plain stand-ins with the attributes quote() reads: quote() is pure over its arguments.
@dataclass
class Rule:
    scope: str = "shop"
    kind: str = "percent"
    value: int = 2000
    rounding: str = "0.01"
    category_id: int | None = None
    product_id: int | None = None
    id: int = 0


@dataclass
class Shop:
    markup_rules: list = field(default_factory=list)
    currency: str = "CNY"


@dataclass
class Supply:
    cost: int


@dataclass
class Break:
    min_qty: int
    unit_price: int


@dataclass
class LevelPrice:
    level_id: int
    price: int


@dataclass
class Level:
    id: int
    discount_bp: int = 0
    name: str = "Member"


@dataclass
class Item:
    id: int = 1
    category_id: int | None = 7
    supply: Supply | None = None
    price: int | None = None
    bulk_prices: list = field(default_factory=list)
    level_prices: list = field(default_factory=list)
    quantity_range: tuple = (1, 100)


@dataclass
class Coupon:
    kind: str = "percent"
    value: int = 1000
    scope: str = "all"
    category_id: int | None = None
    product_id: int | None = None
    min_amount: int = 0
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    allowed_level_ids: list = field(default_factory=list)
    active: bool = True
    code: str = "SAVE10"


def test_supply_product_is_cost_plus_markup():
    shop = Shop([Rule(value=2000)])
    q = quote(shop, Item(supply=Supply(4600)), None, 2, now=NOW)
    assert (q.cost, q.base, q.markup, q.unit, q.total) == (4600, 5520, 920, 5520, 11040)


def test_most_specific_rule_wins():
    item = Item(id=3, category_id=9, supply=Supply(1000))
    rules = [Rule(value=1000), Rule(scope="category", category_id=9, value=3000),
             Rule(scope="product", product_id=3, kind="fixed", value=55)]
    assert quote(Shop(rules), item, None, 1, now=NOW).base == 1055
    assert quote(Shop(rules[:2]), item, None, 1, now=NOW).base == 1300
    assert quote(Shop(rules[:1]), item, None, 1, now=NOW).base == 1100
    other = Item(id=4, category_id=8, supply=Supply(1000))
    assert quote(Shop(rules), other, None, 1, now=NOW).base == 1100
    assert quote(Shop([]), other, None, 1, now=NOW).base == 1000  # no rule: at cost


@pytest.mark.parametrize(
    ("amount", "rule", "expected"),
    [(1234, "0.01", 1234), (1234, "0.1", 1230), (1235, "0.1", 1240), (1249, "1", 1200),
     (1250, "1", 1300), (1040, ".99", 1099), (1099, ".99", 1099), (1100, ".99", 1199),
     (1040, ".9", 1090), (1095, ".9", 1190), (0, ".99", 99)],
)
def test_rounding_rules(amount, rule, expected):
    assert apply_rounding(amount, rule) == expected


def test_level_discount_explicit_price_and_bulk():
    member, vip = Level(1, 0, "Member"), Level(2, 1000, "VIP")
    item = Item(price=1000, bulk_prices=[Break(10, 850), Break(5, 950)],
                level_prices=[LevelPrice(3, 700)])
    assert quote(Shop(), item, member, 1, now=NOW).unit == 1000
    vip_q = quote(Shop(), item, vip, 1, now=NOW)
    assert (vip_q.tier, vip_q.unit, vip_q.level_name) == (100, 900, "VIP")
    assert quote(Shop(), item, member, 5, now=NOW).unit == 950
    bulk_q = quote(Shop(), item, vip, 10, now=NOW)
    assert (bulk_q.unit, bulk_q.tier, bulk_q.bulk, bulk_q.total) == (850, 100, 50, 8500)
    assert quote(Shop(), item, Level(3, 0, "Agent"), 1, now=NOW).unit == 700


def test_supply_price_never_below_cost():
    item = Item(supply=Supply(1000), bulk_prices=[Break(2, 500)],
                level_prices=[LevelPrice(1, 10)])
    q = quote(Shop([Rule(value=0)]), item, Level(1), 3, now=NOW)
    assert q.unit == 1000 and q.floor_lifted
    q = quote(Shop([Rule(value=0)]), item, None, 3, Coupon(kind="fixed", value=99999), now=NOW)
    assert q.total == 3000 and q.coupon == 0


def test_coupon_rules():
    item = Item(id=5, category_id=2, price=2000)
    assert quote(Shop(), item, None, 2, Coupon(), now=NOW).total == 3600
    assert quote(Shop(), item, None, 2, Coupon(kind="fixed", value=500), now=NOW).total == 3500
    assert quote(Shop(), item, None, 1, Coupon(kind="fixed", value=5000), now=NOW).total == 0
    bad = [
        (Coupon(active=False), "no longer active"),
        (Coupon(starts_at=NOW + timedelta(days=1)), "not valid yet"),
        (Coupon(ends_at=NOW - timedelta(seconds=1)), "expired"),
        (Coupon(scope="product", product_id=6), "this product"),
        (Coupon(scope="category", category_id=3), "this category"),
        (Coupon(allowed_level_ids=[9]), "buyer level"),
        (Coupon(min_amount=5000), "minimum amount"),
    ]
    for coupon, message in bad:
        with pytest.raises(QuoteError, match=message):
            quote(Shop(), item, Level(1), 2, coupon, now=NOW)
    naive_end = Coupon(ends_at=(NOW + timedelta(hours=1)).replace(tzinfo=None))
    assert quote(Shop(), item, None, 1, naive_end, now=NOW).coupon == 200


@pytest.mark.parametrize("qty", [0, -1, 101, 1.5, "2", True])
def test_quantity_outside_range_is_refused(qty):
    with pytest.raises(QuoteError, match="quantity from 1 to 100"):
        quote(Shop(), Item(price=100), None, qty, now=NOW)


def test_parse_amount_and_percent():
    assert parse_amount("12.34") == 1234
    assert parse_amount("¥1,000") == 100000
    assert parse_amount("5", "JPY") == 5
    assert parse_percent("12.5") == 1250
    for text in ("abc", "1.234", "-1", "NaN", "inf", "", "1e30"):
        with pytest.raises(DomainError):
            parse_amount(text)
    for text in ("x", "1.234", "-5"):
        with pytest.raises(DomainError):
            parse_percent(text)


# -- properties ----------------------------------------------------------------------------------

money = st.integers(min_value=0, max_value=1_000_000)
roundings = st.sampled_from(["0.01", "0.1", "1", ".99", ".9"])
rules = st.builds(
    Rule,
    kind=st.sampled_from(["percent", "fixed"]),
    value=st.integers(min_value=-5000, max_value=50_000),
    rounding=roundings,
)
breaks = st.lists(st.builds(Break, min_qty=st.integers(2, 100), unit_price=money), max_size=4)
levels = st.builds(Level, id=st.integers(1, 3), discount_bp=st.integers(0, 10_000))
level_prices = st.lists(st.builds(LevelPrice, level_id=st.integers(1, 3), price=money),
                        max_size=3)
coupons = st.builds(Coupon, kind=st.sampled_from(["percent", "fixed"]),
                    value=st.integers(1, 10_000), min_amount=st.integers(0, 1000))


@st.composite
def priced(draw):
    supply = draw(st.booleans())
    item = Item(
        supply=Supply(draw(money)) if supply else None,
        price=None if supply else draw(money),
        bulk_prices=draw(breaks),
        level_prices=draw(level_prices),
    )
    shop = Shop([draw(rules)] if supply and draw(st.booleans()) else [])
    level = draw(st.none() | levels)
    qty = draw(st.integers(1, 100))
    return shop, item, level, qty


def _quote_or_none(*args, **kw):
    try:
        return quote(*args, now=NOW, **kw)
    except QuoteError:
        return None


@settings(max_examples=300, deadline=None)
@given(priced(), st.none() | coupons)
def test_total_is_never_negative_and_all_integers(case, coupon):
    shop, item, level, qty = case
    q = _quote_or_none(shop, item, level, qty, coupon)
    assume(q is not None)
    assert q.total >= 0 and q.unit >= 0 and q.coupon >= 0
    assert q.total == q.subtotal - q.coupon and q.subtotal == q.unit * qty
    for f in fields(Quote):
        value = getattr(q, f.name)
        if f.name not in ("currency", "level_name", "coupon_code", "notes", "floor_lifted"):
            assert type(value) is int, f.name


@settings(max_examples=300, deadline=None)
@given(priced(), st.none() | coupons)
def test_supply_products_never_sell_below_cost(case, coupon):
    shop, item, level, qty = case
    assume(item.supply is not None)
    q = _quote_or_none(shop, item, level, qty, coupon)
    assume(q is not None)
    assert q.unit >= item.supply.cost
    assert q.total >= item.supply.cost * qty


@settings(max_examples=300, deadline=None)
@given(priced(), coupons)
def test_a_coupon_never_raises_the_price(case, coupon):
    shop, item, level, qty = case
    with_coupon = _quote_or_none(shop, item, level, qty, coupon)
    assume(with_coupon is not None)
    assert with_coupon.total <= quote(shop, item, level, qty, now=NOW).total


@settings(max_examples=300, deadline=None)
@given(priced(), st.builds(Break, min_qty=st.integers(2, 100), unit_price=money),
       st.builds(LevelPrice, level_id=st.integers(1, 3), price=money),
       st.integers(0, 10_000))
def test_more_tiers_never_cost_more_for_the_same_buyer(case, extra_break, extra_price, more_bp):
    shop, item, level, qty = case
    before = quote(shop, item, level, qty, now=NOW).total
    item.bulk_prices = [*item.bulk_prices, extra_break]
    assert quote(shop, item, level, qty, now=NOW).total <= before
    if level is not None:
        item.level_prices = [*item.level_prices, extra_price]
        with_price = quote(shop, item, level, qty, now=NOW).total
        assert with_price <= before
        deeper = Level(level.id, min(10_000, level.discount_bp + more_bp), level.name)
        assert quote(shop, item, deeper, qty, now=NOW).total <= with_price


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**9), roundings)
def test_rounding_properties(amount, rule):
    rounded = apply_rounding(amount, rule)
    if rule in (".99", ".9"):
        assert rounded >= amount and rounded - amount < 100
        assert rounded % 100 == (99 if rule == ".99" else 90)
    else:
        step = {"0.01": 1, "0.1": 10, "1": 100}[rule]
        assert rounded % step == 0 and abs(rounded - amount) <= step // 2
