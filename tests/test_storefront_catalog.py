"""The buyer-facing catalog: home, category, search and product pages, and product images."""

from __future__ import annotations

import base64
import re

import pytest
from sqlalchemy import event

from kameng.audit.service import Actor
from kameng.catalog import service as catalog
from kameng.extensions import db
from kameng.inventory.service import import_codes
from kameng.members.models import Customer
from kameng.storefront import cache as storefront_cache
from kameng.tenants.models import Tenant

# A real 1×1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


@pytest.fixture
def supply(in_app):
    """supply(name, cost, category=None, codes=(), **details) -> id of a new supply product.

    Create supply products before the shops: a new shop lists the whole supply catalog.
    """

    def make(name, cost, category=None, codes=(), **details):
        with in_app() as session:
            category_id = None
            if category is not None:
                found = [c for c in catalog.list_supply_categories() if c.name == category]
                category_id = (found[0] if found else catalog.create_supply_category(category)).id
            product = catalog.create_supply_product(name=name, cost=cost,
                                                    category_id=category_id, **details)
            if codes:
                import_codes(product, list(codes), actor=Actor.system())
            session.commit()
            return product.id

    return make


@pytest.fixture
def own_product(in_app):
    """own_product(shop, name, price, category=None, codes=(), bulk=(), **details) -> id."""

    def make(shop, name, price, category=None, codes=(), bulk=(), **details):
        with in_app(shop) as session:
            tenant = session.get(Tenant, shop.id)
            category_id = None
            if category is not None:
                found = [c for c in catalog.list_categories() if c.name == category]
                category_id = (found[0] if found else catalog.create_category(tenant, category)).id
            product = catalog.create_product(tenant, name=name, price=price,
                                             category_id=category_id, **details)
            if codes:
                import_codes(product, list(codes), actor=Actor.system())
            if bulk:
                catalog.set_bulk_prices(product, bulk)
            session.commit()
            return product.id

    return make


def page(client, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, f"{path}: {response.status_code}"
    return response.get_data(as_text=True)


def set_markup(in_app, shop, percent_bp: int) -> None:
    with in_app(shop) as session:
        catalog.set_markup_rule(session.get(Tenant, shop.id), scope="shop", kind="percent",
                                value=percent_bp, rounding="0.01")
        session.commit()


def set_level(in_app, shop, customer, level_name: str) -> None:
    with in_app(shop) as session:
        level = next(lv for lv in catalog.list_levels() if lv.name == level_name)
        session.get(Customer, customer.id).level_id = level.id
        session.commit()


# -- home page and prices --------------------------------------------------------------------


def test_new_shop_lists_the_supply_catalog_at_cost_plus_default_markup(supply, create_tenant,
                                                                       client_for):
    supply("Steam Card 100", 10000, category="Game cards", codes=["S-1", "S-2", "S-3"])
    supply("Netflix 1 month", 5000, delivery_kind="manual")
    shop = create_tenant(slug="demo", name="Demo Card Shop")
    html = page(client_for(shop), "/")
    assert "Demo Card Shop" in html
    assert "Game cards" in html and "Other" in html  # uncategorised products come under Other
    assert html.index("Game cards") < html.index("Steam Card 100") < html.index("Other")
    assert "¥120.00" in html and "¥60.00" in html  # cost + 20%
    assert "¥100.00" not in html and "¥50.00" not in html  # never the cost
    assert "3 in stock" in html


def test_a_shops_markup_changes_its_page_and_no_other(supply, create_tenant, client_for, in_app):
    supply("Steam Card 100", 10000)
    one, two = create_tenant(slug="one"), create_tenant(slug="two")
    set_markup(in_app, one, 5000)
    assert "¥150.00" in page(client_for(one), "/")
    other = page(client_for(two), "/")
    assert "¥120.00" in other and "¥150.00" not in other


def test_categories_follow_their_sort_and_hidden_ones_hide_their_products(
        create_tenant, own_product, client_for, in_app):
    shop = create_tenant(slug="demo")
    own_product(shop, "Zeta card", 100, category="Second")
    own_product(shop, "Alpha card", 100, category="First")
    own_product(shop, "Hidden card", 100, category="Hidden")
    with in_app(shop) as session:
        for category in catalog.list_categories():
            sort = {"First": 1, "Second": 2, "Hidden": 3}[category.name]
            catalog.update_category(category, name=category.name, sort=sort,
                                    active=category.name != "Hidden")
        session.commit()
    client = client_for(shop)
    html = page(client, "/")
    assert html.index("Alpha card") < html.index("Zeta card")
    assert "Hidden card" not in html and "Hidden" not in html
    assert "Hidden card" not in page(client, "/search?q=card")


def test_a_buyer_at_a_discounted_level_sees_the_discounted_price(
        create_tenant, create_customer, own_product, client_for, in_app):
    shop = create_tenant(slug="demo")
    product_id = own_product(shop, "Game card", 10000)
    buyer = create_customer(shop, email="vip@demo.test")
    set_level(in_app, shop, buyer, "VIP")  # 5% off

    guest = client_for(shop)
    assert "¥100.00" in page(guest, "/")
    guest_product = page(guest, f"/product/{product_id}")
    assert "¥100.00" in guest_product and "<s " not in guest_product

    client = client_for(shop)
    client.login("vip@demo.test", "buyer-pass-1")
    home = page(client, "/")
    assert "¥95.00" in home and "¥100.00" not in home
    detail = page(client, f"/product/{product_id}")
    assert "¥95.00" in detail and "VIP price" in detail
    assert '<s class="guest-price">' in detail and "¥100.00" in detail  # the guest price, crossed


def test_bulk_prices_show_a_from_price_and_a_table_quoted_for_the_buyer(
        create_tenant, create_customer, own_product, client_for, in_app):
    shop = create_tenant(slug="demo")
    product_id = own_product(shop, "Game card", 10000, max_qty=20,
                             bulk=[(5, 9000), (10, 8000), (50, 7000)])  # 50 is out of reach
    client = client_for(shop)
    assert "from ¥80.00" in page(client, "/")
    html = page(client, f"/product/{product_id}")
    table = html[html.index('<table class="bulk-prices">'):html.index("</table>")]
    rows = [("1+", "¥100.00"), ("5+", "¥90.00"), ("10+", "¥80.00")]
    assert all(qty in table and price in table for qty, price in rows)
    assert "50+" not in table and "¥70.00" not in table
    qty_input = re.search(r'<input[^>]*name="qty"[^>]*>', html).group(0)
    assert 'min="1"' in qty_input and 'max="20"' in qty_input

    buyer = create_customer(shop, email="agent@demo.test")
    set_level(in_app, shop, buyer, "Agent")  # 10% off: 90.00, better than the 5+ break
    agent = client_for(shop)
    agent.login("agent@demo.test", "buyer-pass-1")
    html = page(agent, f"/product/{product_id}")
    table = html[html.index('<table class="bulk-prices">'):html.index("</table>")]
    assert "¥90.00" in table and "¥80.00" in table and "¥100.00" not in table
    assert "5+" not in table  # the 5+ break does not lower this buyer's price


# -- stock --------------------------------------------------------------------------------------


def test_stock_is_a_number_or_sold_out_and_can_be_hidden(create_tenant, own_product,
                                                         client_for, in_app):
    shop = create_tenant(slug="demo")
    stocked = own_product(shop, "Stocked card", 100, codes=["A-1", "A-2"])
    empty = own_product(shop, "Empty card", 100)
    own_product(shop, "Top-up", 100, delivery_kind="topup")
    client = client_for(shop)
    html = page(client, "/")
    assert "2 in stock" in html
    assert "Empty card" in html and html.count("Sold out") == 1  # shown, but marked
    assert "In stock" in html  # the top-up is not limited by codes
    assert "Sold out" in page(client, f"/product/{empty}")
    assert "2 in stock" in page(client, f"/product/{stocked}")

    with in_app(shop) as session:
        session.get(Tenant, shop.id).settings = {"show_stock_numbers": False}
        session.commit()
    html = page(client, "/")
    assert "2 in stock" not in html and html.count("In stock") == 2 and "Sold out" in html


def test_pages_never_show_a_code(supply, create_tenant, own_product, client_for, in_app):
    supply("Supply card", 1000, codes=["SUPPLY-CODE-XYZ"])
    shop = create_tenant(slug="demo")
    product_id = own_product(shop, "Own card", 1000, category="Cards",
                             codes=["OWN-CODE-123", "OWN-CODE-456"])
    with in_app(shop):
        category_id = catalog.list_categories()[0].id
    client = client_for(shop)
    for path in ("/", f"/product/{product_id}", "/search?q=card", f"/category/{category_id}"):
        html = page(client, path)
        assert "CODE" not in html, path


# -- product page ---------------------------------------------------------------------------


def test_product_page_shows_input_fields_quantity_and_the_checkout_form(
        create_tenant, own_product, client_for):
    shop = create_tenant(slug="demo")
    product_id = own_product(
        shop, "<b>Diamonds</b> top-up", 600, delivery_kind="topup", min_qty=2, max_qty=9,
        description_html='<p>Fast <strong>top-up</strong><script>alert(1)</script></p>',
        input_fields=[
            {"name": "account", "label": "Game account", "type": "text", "required": True,
             "pattern": "[0-9]{5,12}"},
            {"name": "email", "label": "Receipt e-mail", "type": "email"},
        ],
    )
    html = page(client_for(shop), f"/product/{product_id}")
    assert "&lt;b&gt;Diamonds&lt;/b&gt; top-up" in html  # the title is text, never HTML
    assert "<p>Fast <strong>top-up</strong></p>" in html and "<script>alert" not in html
    assert '<label for="input-account">Game account' in html
    assert ('<input id="input-account" name="input_account" type="text" value="" required '
            'pattern="[0-9]{5,12}"') in html
    assert '<label for="input-email">Receipt e-mail</label>' in html
    assert ('<input id="input-email" name="input_email" type="email" value="" maxlength="200"'
            in html)
    assert '<label for="qty">Quantity</label>' in html
    qty_input = re.search(r'<input[^>]*name="qty"[^>]*>', html).group(0)
    assert 'min="2"' in qty_input and 'max="9"' in qty_input and 'type="number"' in qty_input
    assert "Order 2 to 9 at a time." in html
    assert f'action="/product/{product_id}/checkout"' in html
    # A visitor without a session gets a form without a CSRF token (kept for every visitor;
    # see tests/test_storefront_fast_lane.py for the checkout with and without a session).
    assert 'name="csrf_token"' not in html
    assert re.search(r'<input[^>]*name="payment_method"[^>]*value="sandbox"', html)
    assert "Buy now" in html


def test_inactive_missing_and_huge_products_are_404(supply, create_tenant, own_product,
                                                    client_for, in_app):
    supply_id = supply("Retired card", 1000)
    shop = create_tenant(slug="demo")
    product_id = own_product(shop, "Old card", 1000)
    client = client_for(shop)
    assert page(client, f"/product/{product_id}")
    with in_app(shop) as session:
        catalog.update_product(catalog.get_product(product_id), active=False)
        listing = next(p for p in catalog.list_products() if p.supply_product_id == supply_id)
        listing_id = listing.id
        session.commit()
    with in_app() as session:
        catalog.update_supply_product(catalog.get_supply_product(supply_id), active=False)
        session.commit()
    for path in (f"/product/{product_id}", f"/product/{listing_id}", "/product/999999",
                 "/product/99999999999999999999999", "/product/0", "/category/999999",
                 "/category/99999999999999999999999", f"/product/{product_id}/image"):
        assert "Page not found" in page(client, path, 404), path
    html = page(client, "/")
    assert "Old card" not in html and "Retired card" not in html


# -- category and search ----------------------------------------------------------------------


def test_category_page_lists_its_products_and_an_inactive_one_is_404(
        create_tenant, own_product, client_for, in_app):
    shop = create_tenant(slug="demo")
    own_product(shop, "Steam 50", 5000, category="Steam")
    own_product(shop, "Xbox 50", 5000, category="Xbox")
    with in_app(shop) as session:
        ids = {c.name: c.id for c in catalog.list_categories()}
        empty = catalog.create_category(session.get(Tenant, shop.id), "Empty").id
        session.commit()
    client = client_for(shop)
    html = page(client, f"/category/{ids['Steam']}")
    assert "Steam 50" in html and "Xbox 50" not in html and "¥50.00" in html
    assert f'href="/category/{ids["Xbox"]}"' in html  # the header links every category
    assert "No products in this category yet." in page(client, f"/category/{empty}")
    with in_app(shop) as session:
        catalog.update_category(catalog.get_category(ids["Steam"]), name="Steam", sort=0,
                                active=False)
        session.commit()
    page(client, f"/category/{ids['Steam']}", 404)


def test_search_matches_titles_case_insensitively_with_clear_empty_states(
        supply, create_tenant, own_product, client_for):
    supply("Steam Wallet 100", 10000)
    shop = create_tenant(slug="demo")
    own_product(shop, "STEAM gift 20", 2000)
    own_product(shop, "Xbox Live", 3000)
    client = client_for(shop)
    html = page(client, "/search?q=steam")
    assert "Steam Wallet 100" in html and "STEAM gift 20" in html and "Xbox Live" not in html
    assert "2 products for “steam”" in html
    assert 'value="steam"' in html  # the search box keeps the query
    assert "No products match “nothing-like-this”" in page(client, "/search?q=nothing-like-this")
    assert "Type part of a product name" in page(client, "/search")
    assert "Type part of a product name" in page(client, "/search?q=%20%20")
    long_query = "x" * 5000
    html = page(client, f"/search?q={long_query}")
    assert "x" * 100 in html and "x" * 101 not in html
    for odd in ("%00", "%25", "<script>", "%ff%fe", "a&q=b"):
        assert "<script>" not in page(client, f"/search?q={odd}")


# -- product images -------------------------------------------------------------------------


def test_product_image_is_served_with_its_version_and_cached_for_good(
        create_tenant, own_product, client_for):
    shop = create_tenant(slug="demo")
    product_id = own_product(shop, "Pictured card", 100, image=PNG)
    plain_id = own_product(shop, "Plain card", 100)
    client = client_for(shop)
    url = f"/product/{product_id}/image?v=1"
    assert f'src="{url}"' in page(client, "/")
    assert f'src="{url}" alt="Pictured card"' in page(client, f"/product/{product_id}")

    image = client.get(url)
    assert image.status_code == 200 and image.data == PNG
    assert image.content_type == "image/png"
    assert image.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert image.headers["ETag"] and "Set-Cookie" not in image.headers
    again = client.get(url, headers={"If-None-Match": image.headers["ETag"]})
    assert again.status_code == 304 and not again.data

    stale = client.get(f"/product/{product_id}/image?v=0")
    assert stale.status_code == 200 and "immutable" not in stale.headers["Cache-Control"]
    assert page(client, f"/product/{plain_id}/image", 404)
    assert f"/product/{plain_id}/image" not in page(client, "/")


def test_a_listing_shows_its_supply_products_image(supply, create_tenant, client_for, in_app):
    supply_id = supply("Supply card", 1000, image=PNG)
    shop = create_tenant(slug="demo")
    with in_app(shop):
        listing_id = next(p.id for p in catalog.list_products()
                          if p.supply_product_id == supply_id)
    client = client_for(shop)
    url = f"/product/{listing_id}/image?v=s1"
    assert f'src="{url}"' in page(client, "/")
    image = client.get(url)
    assert image.status_code == 200 and image.data == PNG
    assert "immutable" in image.headers["Cache-Control"]


# -- cost ------------------------------------------------------------------------------------


def _queries_for(app, client, path: str, cold: bool = True) -> int:
    """SQL statements one request runs (cold: with an empty storefront cache)."""
    with app.app_context():
        engine = db.engine
    if cold:
        storefront_cache.clear(app)
    statements = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(path).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(statements)


def test_page_queries_do_not_grow_with_the_number_of_products(
        app, supply, create_tenant, own_product, client_for, in_app):
    supply("Supply card", 1000, category="Supply", codes=["S-1"])
    shop = create_tenant(slug="demo")
    first = own_product(shop, "Card 0", 100, category="Cards", codes=["C-0"], bulk=[(5, 90)])
    client = client_for(shop)
    client.get("/")  # warm up: host cache
    few = {path: _queries_for(app, client, path)
           for path in ("/", "/search?q=card", f"/product/{first}")}
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        category = catalog.list_categories()[0]
        for n in range(1, 50):
            product = catalog.create_product(tenant, name=f"Card {n}", price=100 + n,
                                             category_id=category.id)
            import_codes(product, [f"C-{n}"], actor=Actor.system())
            catalog.set_bulk_prices(product, [(5, 90)])
        session.commit()
    many = {path: _queries_for(app, client, path) for path in few}
    assert many == few
    assert few["/"] <= 12
    # Warm: an anonymous visitor's home page comes from the cache, with no query at all ...
    client.get("/")
    assert _queries_for(app, client, "/", cold=False) == 0
    # ... until the shop changes something, in any process: the page is read afresh.
    with in_app(shop) as session:
        catalog.create_product(session.get(Tenant, shop.id), name="Card new", price=150,
                               category_id=category.id)
        session.commit()
    assert _queries_for(app, client, "/", cold=False) > 0
    assert "Card new" in client.get("/").get_data(as_text=True)
