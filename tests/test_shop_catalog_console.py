"""The shop console's catalog pages: products, supply listings, categories, markup, levels,
level and bulk prices, coupons and notices."""

import io
from types import SimpleNamespace

import pytest
from sqlalchemy import select

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


@pytest.fixture
def supply(in_app):
    """A supply catalog made before any shop opens, so every new shop lists it."""
    from kameng.catalog import service as catalog

    with in_app() as session:
        cards = catalog.create_supply_category("Game cards")
        steam = catalog.create_supply_product(name="Steam Wallet 50", cost=1040,
                                              category_id=cards.id)
        qq = catalog.create_supply_product(
            name="QQ top-up", cost=500, category_id=cards.id, delivery_kind="topup",
            input_fields=[{"name": "account", "label": "QQ number", "type": "text",
                           "required": True, "pattern": r"\d{5,12}"}])
        session.commit()
        return SimpleNamespace(category_id=cards.id, steam_id=steam.id, qq_id=qq.id)


@pytest.fixture
def shop(supply, create_tenant):
    return create_tenant(slug="alpha", owner_email="owner@alpha.test",
                         owner_password="owner-alpha-1")


@pytest.fixture
def ids(shop, supply, in_app):
    """Ids of the shop's rows: its listings, the category listing made, its levels."""
    from kameng.catalog import service as catalog
    from kameng.catalog.models import Product

    with in_app(shop) as session:
        listings = dict(session.execute(
            select(Product.supply_product_id, Product.id)
            .where(Product.supply_product_id.is_not(None))).all())
        return SimpleNamespace(
            steam=listings[supply.steam_id], qq=listings[supply.qq_id],
            category=catalog.list_categories()[0].id,
            levels={level.name: level.id for level in catalog.list_levels()},
        )


def own_product(**changes) -> dict:
    data = {
        "name": "Netflix 1 month", "price": "12.50", "category_id": "", "delivery_kind": "card",
        "description_html": "<p>Fast</p><script>alert(1)</script>", "text_content": "",
        "min_qty": "1", "max_qty": "20", "low_stock_threshold": "5", "sort": "3", "active": "y",
    }
    data.update(changes)
    return data


def product_in_db(in_app, shop, product_id):
    from kameng.catalog.models import Product

    with in_app(shop) as session:
        product = session.get(Product, product_id)
        session.refresh(product, ["text_content"])
        session.expunge(product)
        return product


def create_own(console, **changes) -> int:
    page = console.submit("/admin/products/new", own_product(**changes))
    assert page.status_code == 302, page.get_data(as_text=True)
    console.get(page.location)  # shows (and so clears) the flash message
    return int(page.location.rstrip("/").rsplit("/", 1)[1])


def body(page) -> str:
    return page.get_data(as_text=True)


# -- pages and products -----------------------------------------------------------------------


def test_console_pages_need_a_staff_login(shop, client_for):
    anonymous = client_for(shop)
    for path in ("/admin/products", "/admin/supply", "/admin/pricing", "/admin/coupons",
                 "/admin/categories", "/admin/products/1", "/admin/products/1/codes"):
        page = anonymous.get(path)
        assert page.status_code == 302 and "/admin/login" in page.location, path


def test_every_catalog_page_renders_for_the_owner(console, ids, shop, in_app):
    from kameng.catalog import service as catalog

    own = create_own(console)
    with in_app(shop) as session:
        tenant = session.get(type(shop), shop.id)
        coupon = catalog.create_coupon(tenant, "HELLO", catalog.CouponTerms("percent", 500))
        session.commit()
        coupon_id = coupon.id
    for path in ("/admin/", "/admin/products", "/admin/products/new", f"/admin/products/{own}",
                 f"/admin/products/{ids.steam}", f"/admin/products/{ids.qq}", "/admin/supply",
                 "/admin/categories", f"/admin/categories/{ids.category}", "/admin/pricing",
                 f"/admin/levels/{ids.levels['VIP']}", "/admin/coupons",
                 f"/admin/coupons/{coupon_id}", f"/admin/products/{own}/codes",
                 f"/admin/products/{ids.steam}/codes"):
        page = console.get(path)
        assert page.status_code == 200, path
        assert '<main>' in body(page)


def test_product_list_shows_prices_cost_stock_and_badges(console, ids):
    own = create_own(console, price="8.00", low_stock_threshold="5")
    page = body(console.get("/admin/products"))
    # Steam: cost 10.40 + the default 20% markup; the top-up: 5.00 + 20%.
    assert "Steam Wallet 50" in page and "¥12.48" in page and "¥10.40" in page
    assert "QQ top-up" in page and "¥6.00" in page and "unlimited" in page
    assert "Netflix 1 month" in page and "¥8.00" in page
    assert "low stock" in page  # the own product has 0 codes and a threshold of 5
    assert f"/admin/products/{own}/codes" in page
    assert "supply listing" in page and "own" in page


def test_product_list_filters_by_category_and_name(console, ids):
    create_own(console, name="Uncategorised thing")
    page = body(console.get(f"/admin/products?category={ids.category}"))
    assert "Steam Wallet 50" in page and "Uncategorised thing" not in page
    page = body(console.get("/admin/products?q=steam"))
    assert "Steam Wallet 50" in page and "QQ top-up" not in page
    for query in ("category=abc", "category=99999999999999999999999", "q=" + "x" * 5000):
        assert console.get(f"/admin/products?{query}").status_code == 200


def test_create_and_edit_an_own_product(console, ids, shop, in_app):
    from kameng.catalog.service import text_content

    data = own_product(category_id=str(ids.category), **{
        "input_fields-0-name": "account", "input_fields-0-label": "Game account",
        "input_fields-0-type": "text", "input_fields-0-required": "y",
        "input_fields-0-pattern": r"[a-z0-9]{4,20}",
    })
    data["image"] = (io.BytesIO(PNG), "cover.png")
    page = console.submit("/admin/products/new", data, form_path="/admin/products/new")
    assert page.status_code == 302
    product_id = int(page.location.rsplit("/", 1)[1])
    product = product_in_db(in_app, shop, product_id)
    assert (product.name, product.price, product.category_id) == ("Netflix 1 month", 1250,
                                                                  ids.category)
    assert product.input_fields == [{"name": "account", "label": "Game account", "type": "text",
                                     "required": True, "pattern": "[a-z0-9]{4,20}"}]
    assert (product.min_qty, product.max_qty, product.low_stock_threshold, product.sort) == (
        1, 20, 5, 3)
    assert product.image_type == "image/png" and product.active
    assert "<script>" not in product.description_html

    edit = body(console.get(f"/admin/products/{product_id}"))
    assert 'value="12.50"' in edit and "Game account" in edit and "Price preview" in edit

    page = console.submit(f"/admin/products/{product_id}", own_product(
        name="Netflix (text)", price="9.90", delivery_kind="text",
        text_content="https://example.test/download", active=""))
    assert page.status_code == 302
    product = product_in_db(in_app, shop, product_id)
    assert (product.name, product.price, product.delivery_kind, product.active) == (
        "Netflix (text)", 990, "text", False)
    with in_app(shop):
        assert text_content(product) == "https://example.test/download"
    assert product.input_fields == []  # the rows were left empty this time
    assert product.image_type == "image/png"  # no new upload keeps the image
    listing = body(console.get("/admin/products"))
    assert "Netflix (text)" in listing and "¥9.90" in listing and "off sale" in listing


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"price": "abc"}, "is not an amount of money"),
        ({"price": "1.234"}, "at most 2 decimal places"),
        ({"price": "-1"}, "must not be negative"),
        ({"price": "99999999999999"}, "too large"),
        ({"price": ""}, "This field is required"),
        ({"name": ""}, "This field is required"),
        ({"min_qty": "0"}, "Number must be between 1 and 10000"),
        ({"max_qty": "1e99"}, "Not a valid integer value"),
        ({"min_qty": "9", "max_qty": "2"}, "minimum"),
        ({"sort": "99999999999999999999"}, "Number must be between"),
        ({"delivery_kind": "teleport"}, "Not a valid choice"),
        ({"category_id": "99999999999999999999"}, "Invalid Choice"),
        ({"category_id": "12345"}, "Not a valid choice"),
        ({"delivery_kind": "text", "text_content": "  "}, "needs its content"),
        ({"input_fields-0-name": "Bad Name", "input_fields-0-label": "x"}, "lower-case letters"),
        ({"input_fields-0-name": "acct", "input_fields-0-label": ""}, "needs a label"),
        ({"input_fields-0-name": "acct", "input_fields-0-label": "A",
          "input_fields-0-pattern": "("}, "not a valid regular expression"),
        ({"input_fields-²-name": "acct", "input_fields-x-label": "A"}, None),
    ],
)
def test_bad_product_input_is_a_form_error(console, changes, message):
    page = console.submit("/admin/products/new", own_product(**changes))
    if message is None:  # malformed row numbers are ignored, not a crash
        assert page.status_code == 302
        return
    assert page.status_code == 422, body(page)[:300]
    assert message in body(page)


def test_an_upload_that_is_not_an_image_is_a_form_error(console):
    data = own_product()
    data["image"] = (io.BytesIO(b"<svg onload=alert(1)>"), "cover.png")
    page = console.submit("/admin/products/new", data)
    assert page.status_code == 422 and "must be a PNG, JPEG, GIF or WebP" in body(page)


def test_edit_a_supply_listing(console, ids, shop, in_app):
    page = body(console.get(f"/admin/products/{ids.qq}"))
    assert "Supply details" in page and "QQ number" in page and "¥5.00" in page
    assert 'name="price"' not in page  # a listing's price comes from cost + markup

    page = console.submit(f"/admin/products/{ids.qq}", {
        "name": "QQ 直充", "description_html": "<b>fast</b>", "category_id": "",
        "low_stock_threshold": "2", "sort": "-5", "active": "",
        # fields of an own product are not on this form, and are ignored if sent
        "price": "0.01", "delivery_kind": "card",
    })
    assert page.status_code == 302
    listing = product_in_db(in_app, shop, ids.qq)
    assert (listing.name, listing.category_id, listing.sort, listing.active) == (
        "QQ 直充", None, -5, False)
    assert listing.delivery_kind == "topup" and listing.price is None

    console.submit(f"/admin/products/{ids.qq}", {
        "name": "", "category_id": str(ids.category), "low_stock_threshold": "0", "sort": "0",
        "active": "y"})
    listing = product_in_db(in_app, shop, ids.qq)
    assert listing.name is None and listing.title == "QQ top-up" and listing.active


def test_unknown_products_are_404(console):
    assert console.get("/admin/products/424242").status_code == 404
    assert console.get("/admin/products/99999999999999999999").status_code == 404
    token = console.csrf_token("/admin/")
    for path in ("/admin/products/424242", "/admin/products/424242/markup",
                 "/admin/products/424242/bulk-prices", "/admin/products/424242/level-prices"):
        assert console.post(path, data={"csrf_token": token}).status_code == 404, path


# -- the supply catalog ---------------------------------------------------------------------


def test_supply_catalog_lists_new_products(console, shop, supply, in_app):
    from kameng.catalog import service as catalog
    from kameng.catalog.models import Product

    with in_app() as session:
        extra = catalog.create_supply_category("Software")
        office = catalog.create_supply_product(name="Office key", cost=3000,
                                               category_id=extra.id)
        windows = catalog.create_supply_product(name="Windows key", cost=5000,
                                                category_id=extra.id)
        late = catalog.create_supply_product(name="Late card", cost=100,
                                             category_id=supply.category_id)
        session.commit()
        office_id, windows_id, late_id, extra_id = office.id, windows.id, late.id, extra.id

    def listed():
        with in_app(shop) as session:
            return set(session.scalars(select(Product.supply_product_id)
                                       .where(Product.supply_product_id.is_not(None))))

    page = body(console.get("/admin/supply"))
    assert "Office key" in page and "Software" in page and "¥30.00" in page
    assert "List everything new (3)" in page and "listed" in page
    assert listed() == {supply.steam_id, supply.qq_id}

    page = console.submit("/admin/supply/list", {"supply_product_id": office_id},
                          form_path="/admin/supply")
    assert page.status_code == 302
    assert "on your shelf" in body(console.get(page.location))
    assert office_id in listed()
    # listing twice is harmless
    assert console.submit("/admin/supply/list", {"supply_product_id": office_id},
                          form_path="/admin/supply").status_code == 302

    console.submit("/admin/supply/list-category", {"supply_category_id": extra_id},
                   form_path="/admin/supply")
    assert windows_id in listed() and late_id not in listed()

    page = console.submit("/admin/supply/list-all", form_path="/admin/supply")
    assert "1 new supply product listed" in body(console.get(page.location))
    assert late_id in listed()
    assert "List everything new" not in body(console.get("/admin/supply"))


def test_bad_supply_picks_are_not_500(console):
    assert console.submit("/admin/supply/list", {"supply_product_id": "424242"},
                          form_path="/admin/supply").status_code == 404
    assert console.submit("/admin/supply/list-category", {"supply_category_id": "424242"},
                          form_path="/admin/supply").status_code == 404
    for value in ("abc", "", "99999999999999999999"):
        page = console.submit("/admin/supply/list", {"supply_product_id": value},
                              form_path="/admin/supply")
        assert page.status_code == 400, value


# -- markup ------------------------------------------------------------------------------------


def test_shop_markup_changes_this_shops_prices_only(console, ids, create_tenant, client_for):
    other = create_tenant(slug="beta", owner_email="owner@beta.test",
                          owner_password="owner-beta-1")
    page = console.submit("/admin/pricing", {"shop-kind": "percent", "shop-value": "50",
                                             "shop-rounding": "0.01"})
    assert page.status_code == 302
    assert "+50%" in body(console.get("/admin/pricing"))
    assert "¥15.60" in body(console.get("/admin/products"))  # 10.40 * 1.5

    beta = client_for(other)
    beta.login("owner@beta.test", "owner-beta-1", path="/admin/login")
    page = body(beta.get("/admin/products"))
    assert "¥12.48" in page and "¥15.60" not in page


@pytest.mark.parametrize(
    ("kind", "value", "rounding"),
    [
        ("percent", "-10", "0.01"),  # 10.40 - 10% is below cost
        ("fixed", "-0.01", "0.01"),
        ("percent", "0", "1"),  # 10.40 rounded to a whole yuan is 10.00
    ],
)
def test_markup_below_cost_is_refused(console, ids, shop, in_app, kind, value, rounding):
    from kameng.catalog.models import MarkupRule

    page = console.submit("/admin/pricing", {"shop-kind": kind, "shop-value": value,
                                             "shop-rounding": rounding})
    assert page.status_code == 422
    assert "below its cost" in body(page)
    page = console.submit("/admin/pricing/rules", {
        "rule-category_id": ids.category, "rule-kind": kind, "rule-value": value,
        "rule-rounding": rounding}, form_path="/admin/pricing")
    assert page.status_code == 422 and "below its cost" in body(page)
    page = console.submit(f"/admin/products/{ids.steam}/markup", {
        "markup-kind": kind, "markup-value": value, "markup-rounding": rounding},
        form_path=f"/admin/products/{ids.steam}")
    assert page.status_code == 422 and "below its cost" in body(page)
    with in_app(shop) as session:
        rules = session.scalars(select(MarkupRule)).all()
        assert [(r.scope, r.value) for r in rules] == [("shop", 2000)]


@pytest.mark.parametrize("value", ["abc", "", "12.345", "1e999", "99999999"])
def test_bad_markup_numbers_are_form_errors(console, ids, value):
    page = console.submit("/admin/pricing", {"shop-kind": "percent", "shop-value": value,
                                             "shop-rounding": "0.01"})
    assert page.status_code == 422
    page = console.submit("/admin/pricing", {"shop-kind": "fixed", "shop-value": value,
                                             "shop-rounding": "nearest"})
    assert page.status_code == 422


def test_category_and_product_markup(console, ids):
    page = console.submit("/admin/pricing/rules", {
        "rule-category_id": ids.category, "rule-kind": "percent", "rule-value": "10",
        "rule-rounding": "0.01"}, form_path="/admin/pricing")
    assert page.status_code == 302
    pricing = body(console.get("/admin/pricing"))
    assert "Game cards" in pricing and "+10%" in pricing
    assert "¥11.44" in body(console.get("/admin/products"))

    page = console.submit(f"/admin/products/{ids.steam}/markup", {
        "markup-kind": "fixed", "markup-value": "2", "markup-rounding": ".99"},
        form_path=f"/admin/products/{ids.steam}")
    assert page.status_code == 302
    product_page = body(console.get(f"/admin/products/{ids.steam}"))
    assert "this product's own" in product_page and "¥12.99" in product_page
    assert "¥12.99" in body(console.get("/admin/products"))
    # the top-up in the same category keeps the category markup
    assert "¥5.50" in body(console.get("/admin/products"))

    console.submit(f"/admin/products/{ids.steam}/markup/delete",
                   form_path=f"/admin/products/{ids.steam}")
    assert "¥11.44" in body(console.get("/admin/products"))

    # change the category rule, then remove it
    console.submit("/admin/pricing/rules", {
        "rule-category_id": ids.category, "rule-kind": "percent", "rule-value": "30",
        "rule-rounding": "0.1"}, form_path="/admin/pricing")
    assert "¥13.50" in body(console.get("/admin/products"))  # 13.52 rounded to 0.1
    pricing = body(console.get(f"/admin/pricing?category={ids.category}"))
    assert 'value="30"' in pricing


def test_the_shop_default_markup_cannot_be_removed(console, shop, in_app):
    from kameng.catalog.models import MarkupRule

    with in_app(shop) as session:
        rule_id = session.scalar(select(MarkupRule.id).where(MarkupRule.scope == "shop"))
    page = console.submit(f"/admin/pricing/rules/{rule_id}/delete", form_path="/admin/pricing")
    assert page.status_code == 302
    assert "cannot be removed" in body(console.get(page.location))


# -- level and bulk prices --------------------------------------------------------------------


def test_level_and_bulk_prices_of_a_listing(console, ids):
    vip, agent = ids.levels["VIP"], ids.levels["Agent"]
    page = console.submit(f"/admin/products/{ids.steam}/level-prices",
                          {f"level_{agent}": "5.00", f"level_{vip}": "11.00"},
                          form_path=f"/admin/products/{ids.steam}")
    assert page.status_code == 422
    assert "must not be below the cost of ¥10.40" in body(page)

    page = console.submit(f"/admin/products/{ids.steam}/level-prices",
                          {f"level_{agent}": "10.40", f"level_{vip}": "oops"},
                          form_path=f"/admin/products/{ids.steam}")
    assert page.status_code == 422 and "is not an amount of money" in body(page)

    page = console.submit(f"/admin/products/{ids.steam}/level-prices",
                          {f"level_{agent}": "10.40"}, form_path=f"/admin/products/{ids.steam}")
    assert page.status_code == 302

    page = console.submit(f"/admin/products/{ids.steam}/bulk-prices", {
        "rows-0-min_qty": "10", "rows-0-unit_price": "1.00"},
        form_path=f"/admin/products/{ids.steam}")
    assert page.status_code == 422 and "must not be below the cost" in body(page)
    page = console.submit(f"/admin/products/{ids.steam}/bulk-prices", {
        "rows-0-min_qty": "10", "rows-0-unit_price": ""},
        form_path=f"/admin/products/{ids.steam}")
    assert page.status_code == 422 and "give both a quantity and a unit price" in body(page)
    page = console.submit(f"/admin/products/{ids.steam}/bulk-prices", {
        "rows-0-min_qty": "1", "rows-0-unit_price": "11"},
        form_path=f"/admin/products/{ids.steam}")
    assert page.status_code == 422
    page = console.submit(f"/admin/products/{ids.steam}/bulk-prices", {
        "rows-0-min_qty": "10", "rows-0-unit_price": "11.50",
        "rows-1-min_qty": "50", "rows-1-unit_price": "10.90"},
        form_path=f"/admin/products/{ids.steam}")
    assert page.status_code == 302

    page = body(console.get(f"/admin/products/{ids.steam}"))
    assert "× 10" in page and "× 50" in page  # preview columns at each break
    assert "¥11.50" in page and "¥10.90" in page and "¥10.40" in page  # Agent's own price
    assert 'value="10.40"' in page  # the level price form shows it


def test_own_product_prices_may_be_anything_not_negative(console):
    product_id = create_own(console, price="3.00", max_qty="100")
    page = console.submit(f"/admin/products/{product_id}/bulk-prices", {
        "rows-0-min_qty": "20", "rows-0-unit_price": "0.50"},
        form_path=f"/admin/products/{product_id}")
    assert page.status_code == 302
    page = console.submit(f"/admin/products/{product_id}/markup", {
        "markup-kind": "percent", "markup-value": "10", "markup-rounding": "0.01"},
        form_path=f"/admin/products/{product_id}")
    assert page.status_code == 422 and "Markup applies to supply products" in body(page)


# -- levels and categories ---------------------------------------------------------------------


def test_buyer_levels(console, ids, shop, in_app):
    from kameng.catalog.models import PriceLevel

    page = console.submit("/admin/levels", {"level-name": "Gold", "level-rank": "5",
                                            "level-discount": "7.5",
                                            "level-spend_threshold": "500"},
                          form_path="/admin/pricing")
    assert page.status_code == 302
    pricing = body(console.get("/admin/pricing"))
    assert "Gold" in pricing and "7.5%" in pricing and "¥500.00" in pricing
    for data, message in (
        ({"level-name": "Gold", "level-rank": "6"}, "exists"),
        ({"level-name": "Platinum", "level-rank": "5"}, "Rank 5 is taken"),
        ({"level-name": "X", "level-rank": "7", "level-discount": "150"}, "between 0% and 100%"),
        ({"level-name": "X", "level-rank": "7", "level-discount": "-1"}, "must not be negative"),
        ({"level-name": "X", "level-rank": "99999999999"}, "Number must be between"),
    ):
        page = console.submit("/admin/levels", {"level-discount": "0", **data},
                              form_path="/admin/pricing")
        assert page.status_code == 422 and message in body(page), data

    with in_app(shop) as session:
        gold = session.scalar(select(PriceLevel.id).where(PriceLevel.name == "Gold"))
    page = console.submit(f"/admin/levels/{gold}", {"name": "Golden", "rank": "5",
                                                    "discount": "8", "spend_threshold": ""})
    assert page.status_code == 302
    with in_app(shop) as session:
        level = session.get(PriceLevel, gold)
        assert (level.name, level.discount_bp, level.spend_threshold) == ("Golden", 800, None)

    page = console.submit(f"/admin/levels/{ids.levels['Guest']}/delete",
                          form_path="/admin/pricing")
    assert "cannot be deleted" in body(console.get(page.location))
    console.submit(f"/admin/levels/{gold}/delete", form_path="/admin/pricing")
    assert console.get(f"/admin/levels/{gold}").status_code == 404


def test_categories(console, ids, shop, in_app):
    from kameng.catalog.models import Category, Product

    page = console.submit("/admin/categories", {"name": "Gift cards", "sort": "2"})
    assert page.status_code == 302
    assert "Gift cards" in body(console.get("/admin/categories"))
    assert console.submit("/admin/categories", {"name": "", "sort": "0"}).status_code == 422
    assert console.submit("/admin/categories", {"name": "x", "sort": "y"}).status_code == 422

    page = console.submit(f"/admin/categories/{ids.category}", {"name": "Games", "sort": "1"})
    assert page.status_code == 302
    with in_app(shop) as session:
        category = session.get(Category, ids.category)
        assert (category.name, category.sort, category.active) == ("Games", 1, False)

    page = console.submit(f"/admin/categories/{ids.category}/delete",
                          form_path=f"/admin/categories/{ids.category}")
    assert page.status_code == 302
    with in_app(shop) as session:
        assert session.get(Category, ids.category) is None
        assert session.get(Product, ids.steam).category_id is None  # the product stays
    assert console.get(f"/admin/categories/{ids.category}").status_code == 404


# -- coupons ------------------------------------------------------------------------------------


def coupon(**changes) -> dict:
    data = {"kind": "percent", "value": "10", "scope": "all", "category_id": "",
            "product_id": "", "min_amount": "", "starts_at": "", "ends_at": "", "max_uses": "",
            "max_uses_per_buyer": "", "code": "", "count": "", "prefix": "", "batch_label": ""}
    data.update(changes)
    return data


def test_create_a_coupon_and_refuse_a_duplicate(console, ids, shop, in_app):
    from kameng.catalog.models import Coupon

    page = console.submit("/admin/coupons", coupon(
        code="save10", min_amount="20", starts_at="2030-01-01T00:00", ends_at="2030-02-01T12:30",
        max_uses="100", max_uses_per_buyer="1", first_order_only="y",
        allowed_level_ids=[str(ids.levels["VIP"]), str(ids.levels["Agent"])], create="1"))
    assert page.status_code == 302 and "/admin/coupons/" in page.location
    detail = body(console.get(page.location))
    assert "SAVE10" in detail and "10% off" in detail and "VIP, Agent" in detail
    assert "2030-02-01 12:30 UTC" in detail
    with in_app(shop) as session:
        saved = session.scalar(select(Coupon))
        assert (saved.code, saved.value, saved.min_amount, saved.max_uses) == (
            "SAVE10", 1000, 2000, 100)
        assert saved.first_order_only and saved.ends_at.day == 1
        coupon_id = saved.id

    page = console.submit("/admin/coupons", coupon(code="SAVE10", create="1"))
    assert page.status_code == 422 and "exists" in body(page)

    detail = f"/admin/coupons/{coupon_id}"
    console.submit(f"{detail}/deactivate", form_path=detail)
    assert "inactive" in body(console.get(detail))
    console.submit(f"{detail}/activate", form_path=detail)
    assert "Deactivate" in body(console.get(detail))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"code": "ab"}, "3 to 40 letters"),
        ({"code": "NO SPACES"}, "3 to 40 letters"),
        ({"code": "OK1", "value": "0"}, "0.01% to 100%"),
        ({"code": "OK1", "value": "150"}, "0.01% to 100%"),
        ({"code": "OK1", "kind": "fixed", "value": "x"}, "is not an amount of money"),
        ({"code": "OK1", "scope": "category"}, "Choose the category"),
        ({"code": "OK1", "scope": "product"}, "Choose the product"),
        ({"code": "OK1", "starts_at": "2030-01-02T00:00", "ends_at": "2030-01-01T00:00"},
         "must end after it starts"),
        ({"code": "OK1", "ends_at": "yesterday"}, "Not a valid datetime value"),
        ({"code": "OK1", "max_uses": "0"}, "Number must be between"),
        ({"code": "OK1", "allowed_level_ids": "999999"}, "is not a valid choice"),
        ({"code": "OK1", "allowed_level_ids": "x"}, "could not be coerced"),
    ],
)
def test_bad_coupons_are_form_errors(console, changes, message):
    page = console.submit("/admin/coupons", coupon(create="1", **changes))
    assert page.status_code == 422
    assert message in body(page)


def test_generate_a_batch_and_download_it(console, ids, shop, in_app):
    from kameng.catalog.models import Coupon

    page = console.submit("/admin/coupons", coupon(
        kind="fixed", value="5", scope="category", category_id=str(ids.category), count="5",
        prefix="vip", batch_label="spring sale", generate="1"))
    assert page.status_code == 302
    listing = body(console.get(page.location))
    assert "Generated 5 coupon codes in batch" in listing and "spring sale" in listing
    with in_app(shop) as session:
        codes = session.scalars(select(Coupon.code).where(Coupon.batch == "spring sale")).all()
    assert len(codes) == 5 and all(code.startswith("VIP-") for code in codes)

    csv_page = console.get("/admin/coupons/batch.csv?batch=spring sale")
    assert csv_page.status_code == 200 and csv_page.mimetype == "text/csv"
    assert "attachment" in csv_page.headers["Content-Disposition"]
    text = body(csv_page)
    assert all(code in text for code in codes) and "5.00" in text
    assert console.get("/admin/coupons/batch.csv?batch=nope").status_code == 404
    assert console.get("/admin/coupons/batch.csv").status_code == 404

    page = console.submit("/admin/coupons", coupon(generate="1"))
    assert page.status_code == 422 and "how many codes" in body(page)
    page = console.submit("/admin/coupons", coupon(generate="1", count="10001"))
    assert page.status_code == 422


# -- notices ------------------------------------------------------------------------------------


def test_notices_on_the_dashboard_can_be_marked_read(console, shop, in_app):
    from kameng.merchant.models import ShopNotice

    with in_app(shop) as session:
        notice = ShopNotice(kind="price_floor", message="The cost of Steam rose.")
        session.add(notice)
        session.commit()
        notice_id = notice.id
    dashboard = body(console.get("/admin/"))
    assert "The cost of Steam rose." in dashboard and "Mark read" in dashboard
    page = console.submit(f"/admin/notices/{notice_id}/read", form_path="/admin/")
    assert page.status_code == 302
    assert "The cost of Steam rose." not in body(console.get("/admin/"))
    with in_app(shop) as session:
        assert session.get(ShopNotice, notice_id).read_at is not None
    token = console.csrf_token("/admin/")
    assert console.post("/admin/notices/424242/read",
                        data={"csrf_token": token}).status_code == 404
