"""The super-admin console's supply catalog: categories, products, costs and the price floor."""

from __future__ import annotations

import html
import io
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def product_form(**overrides) -> dict:
    """A complete supply product form as a browser would post it."""
    data = {
        "name": "Steam card 100",
        "category_id": "0",
        "cost": "12.00",
        "delivery_kind": "card",
        "description_html": "<p>A card</p>",
        "text_content": "",
        "min_qty": "1",
        "max_qty": "50",
        "low_stock_threshold": "0",
        "active": "y",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def text_of(page) -> str:
    return html.unescape(page.get_data(as_text=True))


@pytest.fixture
def make_supply(in_app):
    """make_supply(name, cost, **details) -> id of a supply product made by the service."""

    def factory(name="Game card", cost=1200, **details):
        from kameng.catalog import service as catalog

        with in_app() as session:
            product = catalog.create_supply_product(name=name, cost=cost, **details)
            session.commit()
            return product.id

    return factory


def listing_of(session, supply_id):
    from kameng.catalog.models import Product

    return session.scalar(select(Product).where(Product.supply_product_id == supply_id))


# -- access ------------------------------------------------------------------------------------


def test_pages_need_login(admin_client):
    for path in ("/supply/", "/supply/products/new", "/supply/products/1",
                 "/supply/products/1/image", "/supply/categories", "/supply/categories/1"):
        page = admin_client.get(path)
        assert page.status_code == 302 and "/login" in page.location, path


def test_shop_owner_cannot_reach_supply(create_tenant, client_for, hosts):
    create_tenant(slug="owned", owner_email="owner@owned.test", owner_password="owner-pass-1")
    client = client_for(hosts.admin)
    refused = client.login("owner@owned.test", "owner-pass-1")
    assert refused.status_code == 422
    assert "/login" in client.get("/supply/").location
    # Logged in on the shop's own console, the admin host still does not know them.
    shop = client_for("owned.localhost")
    assert shop.login("owner@owned.test", "owner-pass-1", path="/admin/login").status_code == 302
    shop.host = hosts.admin
    page = shop.get("/supply/")
    assert page.status_code == 302 and "/login" in page.location


def test_nav_links_to_supply_catalog(admin):
    assert 'href="/supply/"' in admin.get("/tenants").get_data(as_text=True)


def test_post_without_csrf_token_is_refused(admin):
    assert admin.post("/supply/categories", data={"name": "X"}).status_code == 400


# -- categories --------------------------------------------------------------------------------


def test_create_rename_sort_and_deactivate_category(admin, in_app):
    from kameng.catalog.models import SupplyCategory

    page = admin.submit("/supply/categories", {"name": "Game cards", "sort": "2"})
    assert page.status_code == 302
    admin.submit("/supply/categories", {"name": "Gift cards", "sort": "1"})
    listing = admin.get("/supply/categories").get_data(as_text=True)
    assert listing.index("Gift cards") < listing.index("Game cards")  # sorted by `sort`
    with in_app() as s:
        category_id = s.scalar(select(SupplyCategory.id).where(SupplyCategory.name == "Game cards"))

    path = f"/supply/categories/{category_id}"
    assert 'value="Game cards"' in admin.get(path).get_data(as_text=True)
    page = admin.submit(path, {"name": "Point cards", "sort": "0"})  # active unticked
    assert page.status_code == 302
    with in_app() as s:
        category = s.get(SupplyCategory, category_id)
        assert (category.name, category.sort, category.active) == ("Point cards", 0, False)
    admin.submit(path, {"name": "Point cards", "sort": "0", "active": "y"})
    with in_app() as s:
        assert s.get(SupplyCategory, category_id).active is True


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": ""}, "This field is required"),
        ({"name": "x" * 121}, "Field cannot be longer than 120 characters"),
        ({"name": "Ok", "sort": "abc"}, "Not a valid integer value"),
        ({"name": "Ok", "sort": "99999999999"}, "Number must be between"),
        ({"name": "Taken"}, "A supply category named 'Taken' exists"),
    ],
)
def test_bad_category_input_is_a_form_error(admin, data, message):
    admin.submit("/supply/categories", {"name": "Taken"})
    page = admin.submit("/supply/categories", data)
    assert page.status_code == 422
    assert message in text_of(page)


def test_renaming_onto_a_taken_name_is_a_form_error(admin, in_app):
    from kameng.catalog.models import SupplyCategory

    admin.submit("/supply/categories", {"name": "One"})
    admin.submit("/supply/categories", {"name": "Two"})
    with in_app() as s:
        two = s.scalar(select(SupplyCategory.id).where(SupplyCategory.name == "Two"))
    page = admin.submit(f"/supply/categories/{two}", {"name": "One", "sort": "0"})
    assert page.status_code == 422 and "named 'One' exists" in text_of(page)


# -- products ----------------------------------------------------------------------------------


def test_create_product_in_a_category(admin, in_app):
    from kameng.catalog.models import SupplyCategory, SupplyProduct

    admin.submit("/supply/categories", {"name": "Top-ups"})
    with in_app() as s:
        category_id = s.scalar(select(SupplyCategory.id))
    data = product_form(
        name="Genshin crystals", category_id=str(category_id), cost="12.50",
        delivery_kind="topup", min_qty="1", max_qty="5",
        description_html='<p onclick="x()">Fast<script>alert(1)</script></p>',
        **{"input_fields-0-name": "uid", "input_fields-0-label": "Player UID",
           "input_fields-0-type": "number", "input_fields-0-required": "y",
           "input_fields-0-pattern": r"\d{9}",
           "input_fields-1-name": "", "input_fields-1-label": "", "input_fields-1-type": "text",
           "input_fields-2-name": "server", "input_fields-2-label": "Server",
           "input_fields-2-type": "text"},
        image=(io.BytesIO(PNG), "cover.png"),
    )
    page = admin.submit("/supply/products/new", data, form_path="/supply/products/new")
    assert page.status_code == 302
    with in_app() as s:
        product = s.scalar(select(SupplyProduct))
        assert product.category_id == category_id and product.cost == 1250
        assert product.currency == "CNY" and product.delivery_kind == "topup"
        assert product.input_fields == [
            {"name": "uid", "label": "Player UID", "type": "number", "required": True,
             "pattern": r"\d{9}"},
            {"name": "server", "label": "Server", "type": "text", "required": False,
             "pattern": ""},
        ]
        assert "script" not in product.description_html
        assert "onclick" not in product.description_html
        assert product.image_type == "image/png" and product.active
        product_id = product.id
    assert page.location.endswith(f"/supply/products/{product_id}")

    edit = text_of(admin.get(page.location))
    assert "Genshin crystals" in edit and 'value="Player UID"' in edit and 'value="12.50"' in edit
    image = admin.get(f"/supply/products/{product_id}/image")
    assert image.status_code == 200 and image.data == PNG
    assert image.headers["Content-Type"] == "image/png"
    assert image.headers["X-Content-Type-Options"] == "nosniff"

    catalog_page = text_of(admin.get("/supply/"))
    assert "Top-ups" in catalog_page and "Genshin crystals" in catalog_page
    assert "¥12.50" in catalog_page and "Direct top-up" in catalog_page


def test_product_list_shows_stock_low_stock_and_shops(admin, make_supply, create_tenant, in_app):
    from kameng.audit.service import Actor
    from kameng.catalog.models import SupplyProduct
    from kameng.inventory.service import import_codes

    card = make_supply("Steam card", 1200, low_stock_threshold=5)
    make_supply("Office licence", 3000, delivery_kind="manual")
    with in_app() as s:
        import_codes(s.get(SupplyProduct, card), ["A-1", "A-2", "A-3"], actor=Actor.system())
        s.commit()
    create_tenant(slug="one")
    create_tenant(slug="two")
    page = admin.get("/supply/")
    assert page.status_code == 200
    body = text_of(page)
    row = body[body.index("Steam card"):body.index("</tr>", body.index("Steam card"))]
    assert "3 available" in row and "low stock" in row and "<td>2</td>" in row
    other = body[body.index("Office licence"):body.index("</tr>", body.index("Office licence"))]
    assert "not limited" in other and "low stock" not in other
    assert "No category" in body


def test_codes_link_only_when_codes_pages_exist(admin, make_supply, app):
    card = make_supply("Steam card", 1200)
    body = admin.get("/supply/").get_data(as_text=True)
    if "supply_codes.codes" in app.view_functions:
        with app.test_request_context(base_url=f"http://{app.config['ADMIN_HOST']}"):
            from flask import url_for

            assert url_for("supply_codes.codes", product_id=card) in body
    else:
        assert "Codes<span" not in body


def test_text_product_content_is_encrypted_and_shown_to_admins(admin, in_app):
    from kameng.catalog.models import SupplyProduct

    secret = "https://dl.example/licence?key=XYZZY-42"
    page = admin.submit("/supply/products/new", product_form(
        name="Office key", delivery_kind="text", text_content=secret))
    assert page.status_code == 302
    with in_app() as s:
        product = s.scalar(select(SupplyProduct))
        assert product.text_content and secret.encode() not in product.text_content
    assert secret in text_of(admin.get(page.location))

    missing = admin.submit(urlsplit(page.location).path,
                           product_form(name="Office key", delivery_kind="text", text_content=""))
    assert missing.status_code == 422
    assert "needs its content" in text_of(missing)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": ""}, "This field is required"),
        ({"cost": "abc"}, "is not an amount of money"),
        ({"cost": "-1"}, "must not be negative"),
        ({"cost": "1.234"}, "Use at most 2 decimal places"),
        ({"cost": "99999999999"}, "too large"),
        ({"cost": "1e400000"}, "The amount is too large"),
        ({"min_qty": "5", "max_qty": "2"}, "must not exceed the maximum"),
        ({"min_qty": "x"}, "Not a valid integer value"),
        ({"max_qty": "99999999999999"}, "Number must be between 1 and 10000"),
        ({"low_stock_threshold": "-1"}, "Number must be between 0 and"),
        ({"delivery_kind": "teleport"}, "Not a valid choice"),
        ({"category_id": "999999"}, "Not a valid choice"),
        ({"category_id": "abc"}, "Invalid Choice"),
        ({"input_fields-0-name": "uid", "input_fields-0-label": "UID",
          "input_fields-0-pattern": "(unclosed"}, "not a valid regular expression"),
        ({"input_fields-0-name": "Bad Name", "input_fields-0-label": "X"}, "lower-case letters"),
        ({"input_fields-0-name": "uid"}, "needs a label"),
        ({"input_fields-0-name": "uid", "input_fields-0-label": "A",
          "input_fields-1-name": "uid", "input_fields-1-label": "B"}, "appears twice"),
        ({"input_fields-0-name": "uid", "input_fields-0-label": "UID",
          "input_fields-0-type": "date"}, "Not a valid choice"),
    ],
)
def test_bad_product_input_is_a_form_error(admin, in_app, overrides, message):
    from kameng.catalog.models import SupplyProduct

    page = admin.submit("/supply/products/new", product_form(**overrides))
    assert page.status_code == 422
    assert message in text_of(page)
    with in_app() as s:
        assert s.scalar(select(SupplyProduct.id)) is None


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        ((io.BytesIO(b"<svg onload=alert(1)>"), "cover.png"), "must be a PNG, JPEG, GIF or WebP"),
        ((io.BytesIO(b""), "empty.png"), "The image file is empty"),
        ((io.BytesIO(PNG + b"\x00" * (2 * 1024 * 1024)), "huge.png"), "at most 2 MB"),
    ],
)
def test_bad_image_is_refused(admin, make_supply, in_app, upload, message):
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    from kameng.catalog.models import SupplyProduct

    product_id = make_supply("Steam card", 1200)
    path = f"/supply/products/{product_id}"
    # Encoded here, in memory: the test client would spool a large body to a temporary file
    # it never closes (a ResourceWarning, an error under filterwarnings=error).
    stream, filename = upload
    form = product_form(name="Renamed", csrf_token=admin.csrf_token(path),
                        image=FileStorage(stream, filename, content_type="image/png"))
    boundary, body = encode_multipart(form)
    page = admin.post(path, data=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert page.status_code == 422 and message in text_of(page)
    with in_app() as s:
        product = s.get(SupplyProduct, product_id)
        assert product.name == "Steam card" and product.image_type is None
    assert admin.get(f"{path}/image").status_code == 404


def test_unknown_ids_are_404(admin):
    for path in ("/supply/products/999999", "/supply/products/999999/image",
                 "/supply/categories/999999", "/supply/products/99999999999",
                 "/supply/categories/99999999999", "/supply/products/-1"):
        assert admin.get(path).status_code == 404, path
    token = admin.csrf_token("/supply/products/new")
    page = admin.post("/supply/products/999999", data={**product_form(), "csrf_token": token})
    assert page.status_code == 404


# -- cost changes and shops --------------------------------------------------------------------


def test_cost_rise_tells_shops_and_keeps_prices_at_cost(admin, make_supply, create_tenant,
                                                         in_app):
    from kameng.catalog import service as catalog
    from kameng.catalog.models import SupplyProduct
    from kameng.catalog.pricing import quote
    from kameng.merchant.models import ShopNotice
    from kameng.tenants.models import Tenant

    supply_id = make_supply("Steam card", 1200)
    cheap = create_tenant(slug="cheap")  # sells 2+ units at 13.00 each
    calm = create_tenant(slug="calm")  # keeps its markup only
    with in_app(cheap) as s:
        catalog.set_bulk_prices(listing_of(s, supply_id), [(2, 1300)])
        s.commit()

    path = f"/supply/products/{supply_id}"
    page = admin.submit(path, product_form(name="Steam card", cost="14.00"))
    assert page.status_code == 302
    flashed = text_of(admin.get(page.location))
    assert "1 shop was told" in flashed and "cheap: Steam card" in flashed
    assert "calm" not in flashed
    with in_app() as s:
        assert s.get(SupplyProduct, supply_id).cost == 1400

    with in_app(cheap) as s:
        notices = list(s.scalars(select(ShopNotice)))
        assert len(notices) == 1 and notices[0].kind == "price_floor"
        assert "¥14.00" in notices[0].message
        tenant, listing = s.get(Tenant, cheap.id), listing_of(s, supply_id)
        for qty in (1, 2, 10):
            priced = quote(tenant, listing, None, qty)
            assert priced.cost == 1400 and priced.unit >= 1400
        assert quote(tenant, listing, None, 2).floor_lifted
    with in_app(calm) as s:
        assert s.scalar(select(ShopNotice.id)) is None
        assert quote(s.get(Tenant, calm.id), listing_of(s, supply_id), None, 1).unit > 1400

    # Lowering the cost tells nobody.
    page = admin.submit(path, product_form(name="Steam card", cost="11.00"))
    assert page.status_code == 302
    assert "told" not in text_of(admin.get(page.location))
    with in_app(cheap) as s:
        assert len(list(s.scalars(select(ShopNotice)))) == 1


def test_many_notices_are_counted_not_all_named(admin, make_supply, create_tenant, in_app):
    from kameng.catalog import service as catalog

    supply_id = make_supply("Steam card", 1000)
    shops = [create_tenant(slug=f"shop{n}x") for n in range(7)]
    for shop in shops:
        with in_app(shop) as s:
            catalog.set_bulk_prices(listing_of(s, supply_id), [(2, 1000)])
            s.commit()
    page = admin.submit(f"/supply/products/{supply_id}",
                        product_form(name="Steam card", cost="10.01"))
    flashed = text_of(admin.get(page.location))
    assert "7 shops were told" in flashed and "and 2 more" in flashed


def test_new_shop_lists_a_new_supply_product(admin, create_tenant, in_app):
    from kameng.catalog.models import SupplyProduct
    from kameng.catalog.pricing import quote
    from kameng.tenants.models import Tenant

    page = admin.submit("/supply/products/new", product_form(name="Fresh card", cost="5.00"))
    assert page.status_code == 302
    with in_app() as s:
        supply_id = s.scalar(select(SupplyProduct.id))
    shop = create_tenant(slug="latecomer")
    with in_app(shop) as s:
        listing = listing_of(s, supply_id)
        assert listing is not None and listing.title == "Fresh card" and listing.on_sale
        assert quote(s.get(Tenant, shop.id), listing, None, 1).unit >= 500
    assert "<td>1</td>" in admin.get("/supply/").get_data(as_text=True)


def test_deactivating_a_product_takes_it_off_sale(admin, make_supply, create_tenant, in_app):
    supply_id = make_supply("Steam card", 1200)
    shop = create_tenant(slug="seller")
    page = admin.submit(f"/supply/products/{supply_id}",
                        product_form(name="Steam card", active=None))
    assert page.status_code == 302
    with in_app(shop) as s:
        assert not listing_of(s, supply_id).on_sale
    assert "inactive" in admin.get("/supply/").get_data(as_text=True)


def test_every_input_has_a_label(admin, make_supply, in_app):
    from html.parser import HTMLParser

    from kameng.catalog.models import SupplyCategory

    class Inputs(HTMLParser):
        def __init__(self):
            super().__init__()
            self.ids, self.labelled = [], set()

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "label" and attrs.get("for"):
                self.labelled.add(attrs["for"])
            elif tag in ("input", "select", "textarea") and attrs.get("type") != "hidden" \
                    and attrs.get("type") != "submit":
                self.ids.append(attrs.get("id"))

    admin.submit("/supply/categories", {"name": "Cards"})
    with in_app() as s:
        category_id = s.scalar(select(SupplyCategory.id))
    product_id = make_supply("Steam card", 1200, category_id=category_id)
    for path in ("/supply/", "/supply/products/new", f"/supply/products/{product_id}",
                 "/supply/categories", f"/supply/categories/{category_id}"):
        page = admin.get(path)
        assert page.status_code == 200, path
        parser = Inputs()
        parser.feed(page.get_data(as_text=True))
        assert all(i and i in parser.labelled for i in parser.ids), (path, parser.ids)
        assert "<script" not in page.get_data(as_text=True)
