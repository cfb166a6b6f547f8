"""Catalog services: supply listings, markup and the cost floor, levels, coupons, isolation."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from kameng.catalog import service as catalog
from kameng.catalog.models import Coupon, MarkupRule, Product
from kameng.catalog.pricing import quote
from kameng.errors import Conflict, DomainError, NotFound
from kameng.merchant.models import ShopNotice
from kameng.tenants.models import Tenant


@pytest.fixture
def supply(in_app):
    """Two supply categories with three products, created before any shop."""
    with in_app() as session:
        games = catalog.create_supply_category("Games", 1)
        gifts = catalog.create_supply_category("Gifts", 2)
        ids = {
            "steam": catalog.create_supply_product(name="Steam 50", cost=4600,
                                                   category_id=games.id).id,
            "psn": catalog.create_supply_product(name="PSN 100", cost=1040,
                                                 category_id=games.id).id,
            "apple": catalog.create_supply_product(name="Apple 100", cost=9500,
                                                   category_id=gifts.id).id,
        }
        session.commit()
        ids.update(games=games.id, gifts=gifts.id)
        return ids


def _listing(session, supply_id):
    return session.scalar(select(Product).where(Product.supply_product_id == supply_id))


def test_a_new_shop_lists_the_supply_catalog_at_its_default_markup(supply, create_tenant,
                                                                    in_app):
    shop = create_tenant(slug="fresh")
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        products = catalog.list_products()
        assert {p.title for p in products} == {"Steam 50", "PSN 100", "Apple 100"}
        assert {c.name for c in catalog.list_categories()} == {"Games", "Gifts"}
        steam = _listing(session, supply["steam"])
        assert quote(tenant, steam, None, 1).unit == 5520  # 4600 + 20%
        assert [lv.name for lv in catalog.list_levels()] == ["Guest", "Member", "VIP", "Agent"]


def test_markup_changes_one_shop_only(supply, create_tenant, in_app):
    a, b = create_tenant(slug="shopa"), create_tenant(slug="shopb")
    with in_app(a) as session:
        tenant = session.get(Tenant, a.id)
        catalog.set_markup_rule(tenant, scope="shop", kind="fixed", value=100, rounding=".99")
        session.commit()
        assert quote(tenant, _listing(session, supply["steam"]), None, 1).unit == 4799
    with in_app(b) as session:
        assert quote(session.get(Tenant, b.id), _listing(session, supply["steam"]), None,
                     1).unit == 5520


def test_below_cost_rules_and_prices_are_refused(supply, create_tenant, in_app):
    shop = create_tenant(slug="floor")
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        with pytest.raises(DomainError, match="below its cost"):
            catalog.set_markup_rule(tenant, scope="shop", kind="percent", value=-500,
                                    rounding="0.01")
        with pytest.raises(DomainError, match="PSN 100"):  # 10.40 rounded to 10: below cost
            catalog.set_markup_rule(tenant, scope="shop", kind="percent", value=0, rounding="1")
        games = session.scalar(select(catalog.Category).where(catalog.Category.name == "Games"))
        # a category rule at 0% rounded up is fine, and wins over the shop rule
        catalog.set_markup_rule(tenant, scope="category", category_id=games.id, kind="percent",
                                value=0, rounding=".99")
        psn = _listing(session, supply["psn"])
        assert quote(tenant, psn, None, 1).unit == 1099
        with pytest.raises(DomainError, match="below the cost"):
            catalog.set_level_price(psn, catalog.list_levels()[1], 1000)
        with pytest.raises(DomainError, match="below the cost"):
            catalog.set_bulk_prices(psn, [(5, 1039)])
        catalog.set_bulk_prices(psn, [(5, 1040), (10, 1040)])
        assert quote(tenant, psn, None, 10).unit == 1040
        with pytest.raises(DomainError, match="cannot be removed"):
            rule = session.scalar(select(MarkupRule).where(MarkupRule.scope == "shop"))
            catalog.delete_markup_rule(tenant, rule)


def test_a_cost_rise_lifts_prices_to_the_floor_and_tells_each_shop(supply, create_tenant,
                                                                    in_app):
    shops = [create_tenant(slug=f"shop{n}") for n in range(3)]
    for shop in shops[:2]:  # two shops with a bulk price that the rise will undercut
        with in_app(shop) as session:
            catalog.set_bulk_prices(_listing(session, supply["apple"]), [(2, 9600)])
            session.commit()
    with in_app() as session:
        sent = catalog.update_supply_product(catalog.get_supply_product(supply["apple"]),
                                             cost=10000)
        session.commit()
    assert len(sent) == 2
    for shop, told in zip(shops, (1, 1, 0), strict=True):
        with in_app(shop) as session:
            notices = session.scalars(select(ShopNotice)).all()
            assert len(notices) == told
            q = quote(session.get(Tenant, shop.id), _listing(session, supply["apple"]), None, 2)
            assert q.unit >= 10000
            if told:
                assert "Apple 100" in notices[0].message and q.floor_lifted


def test_inactive_supply_category_takes_listings_off_sale(supply, create_tenant, in_app):
    shop = create_tenant(slug="shelf")
    with in_app() as session:
        gifts = catalog.get_supply_category(supply["gifts"])
        catalog.update_supply_category(gifts, name="Gifts", sort=2, active=False)
        session.commit()
    with in_app(shop) as session:
        assert not _listing(session, supply["apple"]).on_sale
        assert _listing(session, supply["steam"]).on_sale
    later = create_tenant(slug="later")
    with in_app(later) as session:
        assert {p.title for p in catalog.list_products()} == {"Steam 50", "PSN 100"}


def test_listing_is_idempotent_and_lists_new_supply(supply, create_tenant, in_app):
    shop = create_tenant(slug="lister")
    with in_app() as session:
        new = catalog.create_supply_product(name="Xbox 200", cost=18000,
                                            category_id=supply["games"])
        session.commit()
        new_id = new.id
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        assert [s.name for s in catalog.unlisted_supply_products()] == ["Xbox 200"]
        first = catalog.list_supply_product(tenant, catalog.get_supply_product(new_id))
        again = catalog.list_supply_product(tenant, catalog.get_supply_product(new_id))
        assert first.id == again.id
        assert catalog.list_whole_supply_catalog(tenant) == 0
        assert session.scalar(select(func.count()).select_from(Product)) == 4


def test_levels_and_automatic_upgrade(create_tenant, create_customer, in_app):
    shop = create_tenant(slug="levels")
    buyer = create_customer(shop)
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        customer = session.get(type(buyer), buyer.id)
        assert catalog.level_for(None).name == "Guest"
        assert catalog.level_for(customer).name == "Member"
        customer.lifetime_spend = 150_000
        assert catalog.upgrade_level(customer).name == "VIP"
        gold = catalog.save_level(tenant, None, name="Gold", rank=5, discount_bp=1500,
                                  spend_threshold=100_000)
        assert catalog.upgrade_level(customer).name == "Gold"
        catalog.save_level(tenant, gold, name="Gold", rank=5, discount_bp=1500,
                           spend_threshold=900_000)
        assert catalog.upgrade_level(customer).name == "Gold"  # never lowered
        with pytest.raises(Conflict):
            catalog.save_level(tenant, None, name="vip", rank=9, discount_bp=0,
                               spend_threshold=None)
        with pytest.raises(DomainError, match="cannot be deleted"):
            catalog.delete_level(catalog.list_levels()[0])


def test_coupons(create_tenant, in_app):
    shop = create_tenant(slug="coupons")
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        terms = catalog.CouponTerms("percent", 1500, min_amount=1000)
        coupon = catalog.create_coupon(tenant, " welcome15 ", terms)
        assert coupon.code == "WELCOME15"
        assert catalog.find_coupon("Welcome15").id == coupon.id
        with pytest.raises(Conflict):
            catalog.create_coupon(tenant, "WELCOME15", terms)
        for bad in ("ab", "bad code", "x" * 41):
            with pytest.raises(DomainError):
                catalog.create_coupon(tenant, bad, terms)
        with pytest.raises(DomainError):
            catalog.create_coupon(tenant, "TOOMUCH", catalog.CouponTerms("percent", 10_001))
        batch = catalog.generate_coupons(tenant, 200, "XMAS", catalog.CouponTerms("fixed", 500),
                                         label="xmas")
        codes = {c.code for c in batch}
        assert len(codes) == 200 and all(c.startswith("XMAS-") for c in codes)
        session.commit()
        assert session.scalar(select(func.count()).select_from(Coupon)) == 201


def test_input_field_definitions_and_buyer_answers(create_tenant, in_app):
    fields = [{"name": "account", "label": "Game account", "type": "text", "required": True,
               "pattern": "[0-9]{5,8}"}]
    assert catalog.check_input_fields(fields)[0]["name"] == "account"
    for bad in ([{"name": "Bad Name", "label": "x"}], [{"name": "a", "label": ""}],
                [{"name": "a", "label": "A", "pattern": "(["}],
                [{"name": "a", "label": "A"}, {"name": "a", "label": "B"}],
                [{"name": "a", "label": "A", "type": "file"}]):
        with pytest.raises(DomainError):
            catalog.check_input_fields(bad)
    shop = create_tenant(slug="topup")
    with in_app(shop) as session:
        product = catalog.create_product(session.get(Tenant, shop.id), name="Top-up",
                                         price=100, delivery_kind="topup", input_fields=fields)
        assert catalog.check_buyer_input(product, {"account": " 123456 "}) == {"account": "123456"}
        with pytest.raises(DomainError, match="required"):
            catalog.check_buyer_input(product, {})
        with pytest.raises(DomainError, match="expected format"):
            catalog.check_buyer_input(product, {"account": "12ab"})


def test_a_shop_cannot_read_or_change_another_shops_catalog(create_tenant, in_app):
    a, b = create_tenant(slug="shopa"), create_tenant(slug="shopb")
    with in_app(a) as session:
        tenant = session.get(Tenant, a.id)
        product = catalog.create_product(tenant, name="Mine", price=100)
        category = catalog.create_category(tenant, "Mine")
        coupon = catalog.create_coupon(tenant, "MINE10", catalog.CouponTerms("percent", 1000))
        session.commit()
        ids = (product.id, category.id, coupon.id)
    with in_app(b) as session:
        tenant_b = session.get(Tenant, b.id)
        for getter, ident in zip((catalog.get_product, catalog.get_category, catalog.get_coupon),
                                 ids, strict=True):
            with pytest.raises(NotFound):
                getter(ident)
        assert catalog.find_coupon("MINE10") is None
        assert all(p.title != "Mine" for p in catalog.list_products())
        with pytest.raises(NotFound):  # a rule for a foreign product or category
            catalog.set_markup_rule(tenant_b, scope="category", category_id=ids[1],
                                    kind="percent", value=0, rounding="0.01")
        with pytest.raises(NotFound):
            catalog.create_product(tenant_b, name="X", price=1, category_id=ids[1])
        with pytest.raises(NotFound):
            catalog.get_product(2**40)


def test_amounts_and_numbers_beyond_the_columns_are_refused(create_tenant, in_app):
    shop = create_tenant(slug="bounds")
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        with pytest.raises(DomainError, match="too large"):
            catalog.create_product(tenant, name="X", price=2**40)
        with pytest.raises(DomainError, match="between"):
            catalog.create_product(tenant, name="X", price=1, low_stock_threshold=2**40)
        with pytest.raises(DomainError, match="must not exceed"):
            catalog.create_product(tenant, name="X", price=1, min_qty=5, max_qty=2)
