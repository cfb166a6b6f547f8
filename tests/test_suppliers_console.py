"""Upstream suppliers in both consoles: create, edit, test and delete them; credentials are
write-only (never in a page, encrypted at rest); another shop's supplier is not found; and
products may name only their owner's suppliers (a shop its own, a supply product the
platform's)."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import select

from kameng.catalog import service as catalog
from kameng.catalog.models import Product, SupplyProduct
from kameng.delivery import suppliers
from kameng.delivery.models import Supplier
from kameng.errors import DomainError
from kameng.tenants.models import Tenant
from tests.test_topup import FakeSupplier

SECRET = "sk_supplier_VERYSECRET_abcdef987654"
KAMENG_SECRET = "kameng-secret-0011223344556677"


def body(page) -> str:
    """The page's text with HTML entities decoded, so a secret cannot hide behind escaping."""
    return html.unescape(page.get_data(as_text=True))


def followed(client, page) -> str:
    assert page.status_code == 302, body(page)[:3000]
    return body(client.get(page.location))


def supplier_form(**changes) -> dict:
    data = {
        "name": "Acme Games", "adapter": "json", "base_url": "https://api.acme.example",
        "active": "y", "cred_api_key": SECRET, "cred_key_id": "", "cred_api_secret": "",
        "order_path": "/order", "query_path": "/order/{reference}",
        "body": '{"sku": "{product}", "account": "{input.account}", "qty": "{qty}"}',
        "auth_header": "Authorization", "auth_value": "Bearer {api_key}",
        "idempotency_header": "Idempotency-Key", "status_field": "data.status",
        "success_values": "success", "pending_values": "processing",
        "failure_values": "failed", "reference_field": "data.id", "message_field": "msg",
        "content_field": "",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def make_supplier(in_app):
    """make_supplier(tenant_id or None, name=…) -> id, through the service."""

    def make(tenant_id, name="Other", base_url="https://other.example", **kw):
        with in_app() as session:
            supplier = suppliers.save_supplier(
                tenant_id, None, name=name, adapter=kw.pop("adapter", "json"),
                base_url=base_url, credentials=kw.pop("credentials", {"api_key": SECRET}),
                **kw)
            session.commit()
            return supplier.id

    return make


def stored(in_app, supplier_id) -> Supplier:
    with in_app() as session:
        supplier = session.get(Supplier, supplier_id)
        session.expunge(supplier)
        return supplier


def credentials_of(in_app, supplier_id) -> dict:
    with in_app():
        return suppliers.supplier_credentials(stored(in_app, supplier_id))


# -- the shop console ---------------------------------------------------------------------------


def test_supplier_pages_need_a_staff_login(shop, client_for, make_supplier):
    supplier_id = make_supplier(shop.id)
    anonymous = client_for(shop)
    for path in ("/admin/suppliers", f"/admin/suppliers/{supplier_id}"):
        page = anonymous.get(path)
        assert page.status_code == 302 and "/admin/login" in page.location


def test_a_shop_creates_edits_and_deletes_its_supplier(console, shop, in_app):
    assert "No suppliers yet" in body(console.get("/admin/suppliers"))
    created = console.submit("/admin/suppliers", supplier_form())
    page = followed(console, created)
    supplier_id = int(created.location.rsplit("/", 1)[1])
    assert "Supplier 'Acme Games' created" in page
    assert SECRET not in page and "••••7654" in page
    row = stored(in_app, supplier_id)
    assert (row.tenant_id, row.adapter, row.base_url) == (shop.id, "json", "https://api.acme.example")
    assert SECRET not in row.credentials  # encrypted at rest
    assert row.settings["body"] == {"sku": "{product}", "account": "{input.account}",
                                    "qty": "{qty}"}
    assert row.settings["success_values"] == ["success"]
    assert credentials_of(in_app, supplier_id) == {"api_key": SECRET}
    listing = body(console.get("/admin/suppliers"))
    assert "Acme Games" in listing and SECRET not in listing

    # An empty secret keeps the stored one (write-only).
    saved = console.submit(f"/admin/suppliers/{supplier_id}",
                           supplier_form(name="Acme Games CN", cred_api_key=""))
    assert SECRET not in followed(console, saved)
    assert stored(in_app, supplier_id).name == "Acme Games CN"
    assert credentials_of(in_app, supplier_id) == {"api_key": SECRET}

    deleted = console.submit(f"/admin/suppliers/{supplier_id}/delete", {},
                             form_path=f"/admin/suppliers/{supplier_id}")
    assert "deleted" in followed(console, deleted)
    with in_app() as session:
        assert session.get(Supplier, supplier_id) is None


def test_a_kameng_supplier_keeps_its_key_id_visible_and_its_secret_hidden(console, in_app):
    created = console.submit("/admin/suppliers", supplier_form(
        name="Upstream shop", adapter="kameng", base_url="https://up.kameng.example",
        cred_api_key="", cred_key_id="key_live_42", cred_api_secret=KAMENG_SECRET))
    page = followed(console, created)
    assert 'value="key_live_42"' in page
    assert KAMENG_SECRET not in page
    supplier_id = int(created.location.rsplit("/", 1)[1])
    assert credentials_of(in_app, supplier_id) == {"key_id": "key_live_42",
                                                   "api_secret": KAMENG_SECRET}
    assert stored(in_app, supplier_id).settings == {}


@pytest.mark.parametrize(("changes", "message"), [
    ({"base_url": "http://api.acme.example"}, "https://"),
    ({"base_url": "https://10.1.2.3"}, "inside the network"),
    ({"base_url": "https://localhost:8443"}, "inside the network"),
    ({"base_url": "https://169.254.169.254/latest"}, "inside the network"),
    ({"base_url": "https://user:pw@api.acme.example"}, "user name or password"),
    ({"base_url": "https://api.acme.example/?x=1"}, "no ?query"),
    ({"body": "{not json"}, "not valid JSON"),
    ({"body": '{"x": "{password}"}'}, "Unknown placeholder {password}"),
    ({"success_values": ""}, "at least one status value"),
    ({"cred_api_key": "", "adapter": "kameng"}, "Fill in API key id, API secret"),
    ({"cred_api_key": ""}, "Fill in API key"),
    ({"name": ""}, "This field is required"),
])
def test_bad_supplier_input_is_a_form_error(console, changes, message, in_app):
    page = console.submit("/admin/suppliers", supplier_form(**changes))
    assert page.status_code == 422
    assert message in body(page)
    assert SECRET not in body(page)  # a refused form does not echo the secret either
    with in_app() as session:
        assert session.scalar(select(Supplier)) is None


def test_a_supplier_without_a_credential_header_needs_no_key(console, in_app):
    created = console.submit("/admin/suppliers", supplier_form(cred_api_key="", auth_header=""))
    assert created.status_code == 302, body(created)[:3000]
    with in_app() as session:
        assert session.scalar(select(Supplier)).credentials == ""


def test_another_shops_supplier_is_not_found(console, create_tenant, make_supplier):
    other = create_tenant(slug="beta")
    theirs = make_supplier(other.id, name="Beta Secret Supplier")
    platform = make_supplier(None, name="Platform Secret Supplier")
    for supplier_id in (theirs, platform):
        assert console.get(f"/admin/suppliers/{supplier_id}").status_code == 404
        for action in ("", "/test", "/delete"):
            page = console.submit(f"/admin/suppliers/{supplier_id}{action}",
                                  supplier_form() if not action else {},
                                  form_path="/admin/suppliers")
            assert page.status_code == 404, action
            assert "Secret Supplier" not in body(page)
    listing = body(console.get("/admin/suppliers"))
    assert "Beta Secret Supplier" not in listing and "Platform Secret Supplier" not in listing


def test_the_test_button_reports_what_the_supplier_answered(console, shop, app, monkeypatch,
                                                           make_supplier):
    upstream = FakeSupplier().start()
    try:
        monkeypatch.setitem(app.config, "UPSTREAM_ALLOW_PRIVATE", True)
        monkeypatch.setitem(app.config, "UPSTREAM_ALLOW_HTTP", True)
        supplier_id = make_supplier(shop.id, base_url=upstream.url)
        page = console.submit(f"/admin/suppliers/{supplier_id}/test", {},
                              form_path=f"/admin/suppliers/{supplier_id}")
        assert "127.0.0.1 answered HTTP 404 to a status query" in followed(console, page)
        [call] = upstream.calls
        assert call.headers["authorization"] == f"Bearer {SECRET}"
        assert call.path == "/order/kameng-connection-test"

        monkeypatch.setitem(app.config, "UPSTREAM_ALLOW_PRIVATE", False)
        page = console.submit(f"/admin/suppliers/{supplier_id}/test", {},
                              form_path=f"/admin/suppliers/{supplier_id}")
        text = followed(console, page)
        assert "inside the network" in text and SECRET not in text
        assert len(upstream.calls) == 1  # refused before any connection
    finally:
        upstream.stop()


# -- the shop's own products ----------------------------------------------------------------


def own_product(**changes) -> dict:
    data = {
        "name": "PUBG 60 UC", "price": "6.00", "category_id": "", "delivery_kind": "topup",
        "description_html": "", "text_content": "", "input_fields-0-name": "account",
        "input_fields-0-label": "Game account", "input_fields-0-required": "y",
        "min_qty": "1", "max_qty": "20", "low_stock_threshold": "0", "sort": "0", "active": "y",
        "supplier_id": "", "supplier_product": "",
    }
    data.update(changes)
    return data


def test_an_own_product_names_one_of_the_shops_suppliers(console, shop, in_app, make_supplier,
                                                         create_tenant):
    mine = make_supplier(shop.id, name="My Supplier")
    other = make_supplier(create_tenant(slug="gamma").id, name="Gamma Supplier")
    platform = make_supplier(None, name="Platform Supplier")
    form = body(console.get("/admin/products/new"))
    assert "My Supplier" in form
    assert "Gamma Supplier" not in form and "Platform Supplier" not in form

    created = console.submit("/admin/products/new",
                             own_product(supplier_id=str(mine), supplier_product="PUBG-60"))
    assert created.status_code == 302, body(created)[:3000]
    product_id = int(created.location.rsplit("/", 1)[1])
    with in_app(shop) as session:
        product = session.get(Product, product_id)
        assert (product.supplier_id, product.supplier_product) == (mine, "PUBG-60")
    edit = body(console.get(f"/admin/products/{product_id}"))
    assert 'value="PUBG-60"' in edit and f'<option selected value="{mine}">' in edit

    for foreign in (other, platform):
        refused = console.submit(f"/admin/products/{product_id}",
                                 own_product(supplier_id=str(foreign)))
        assert refused.status_code == 422
    with in_app(shop) as session:
        assert session.get(Product, product_id).supplier_id == mine


def test_the_catalog_service_refuses_another_owners_supplier(shop, in_app, make_supplier,
                                                            create_tenant):
    other = make_supplier(create_tenant(slug="delta").id)
    platform = make_supplier(None)
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        for foreign in (other, platform, 999_999):
            with pytest.raises(DomainError, match="your suppliers") as error:
                catalog.create_product(tenant, name="Top-up", price=100,
                                       delivery_kind="topup", supplier_id=foreign)
            assert error.value.field == "supplier_id"
        session.rollback()


def test_a_listing_keeps_its_supply_products_supplier(shop, in_app, make_supplier):
    platform = make_supplier(None)
    mine = make_supplier(shop.id)
    with in_app() as session:
        supply = catalog.create_supply_product(name="Steam 50", cost=400, delivery_kind="topup",
                                               supplier_id=platform, supplier_product="S50")
        session.commit()
        supply_id = supply.id
    with in_app(shop) as session:
        listing = catalog.list_supply_product(session.get(Tenant, shop.id),
                                              catalog.get_supply_product(supply_id))
        catalog.update_product(listing, name="Steam", supplier_id=mine)
        session.commit()
        assert listing.supplier_id is None and listing.source.supplier_id == platform
        with pytest.raises(DomainError, match="supply product's supplier"):
            catalog._apply_details(listing, {"supplier_id": mine})
        session.rollback()


# -- the super-admin console ------------------------------------------------------------------


def test_the_platform_manages_its_own_suppliers(admin, in_app, shop, make_supplier):
    shops_own = make_supplier(shop.id, name="Alpha Shop Supplier")
    assert "No suppliers yet" in body(admin.get("/suppliers/"))
    created = admin.submit("/suppliers/", supplier_form(name="Platform Source"))
    page = followed(admin, created)
    supplier_id = int(created.location.rsplit("/", 1)[1])
    assert SECRET not in page and "••••7654" in page
    assert stored(in_app, supplier_id).tenant_id is None
    listing = body(admin.get("/suppliers/"))
    assert "Platform Source" in listing and "Alpha Shop Supplier" not in listing
    assert admin.get(f"/suppliers/{shops_own}").status_code == 404  # a shop's: not here

    saved = admin.submit(f"/suppliers/{supplier_id}",
                         supplier_form(name="Platform Source 2", cred_api_key="", active=None))
    assert SECRET not in followed(admin, saved)
    row = stored(in_app, supplier_id)
    assert (row.name, row.active) == ("Platform Source 2", False)
    assert credentials_of(in_app, supplier_id) == {"api_key": SECRET}

    deleted = admin.submit(f"/suppliers/{supplier_id}/delete", {},
                           form_path=f"/suppliers/{supplier_id}")
    assert "deleted" in followed(admin, deleted)


def test_supplier_pages_of_the_platform_need_a_login(admin_client):
    page = admin_client.get("/suppliers/")
    assert page.status_code == 302 and "/login" in page.location


def supply_form(**changes) -> dict:
    data = {"name": "PUBG 325 UC", "category_id": "0", "cost": "25.00",
            "delivery_kind": "topup", "description_html": "", "text_content": "",
            "min_qty": "1", "max_qty": "10", "low_stock_threshold": "0", "active": "y",
            "supplier_id": "0", "supplier_product": ""}
    data.update(changes)
    return data


def test_a_supply_product_uses_only_platform_suppliers(admin, in_app, shop, make_supplier):
    platform = make_supplier(None, name="Platform Source")
    shops_own = make_supplier(shop.id, name="Alpha Shop Supplier")
    form = body(admin.get("/supply/products/new"))
    assert "Platform Source" in form and "Alpha Shop Supplier" not in form
    created = admin.submit("/supply/products/new",
                           supply_form(supplier_id=str(platform), supplier_product="UC-325"))
    assert created.status_code == 302, body(created)[:3000]
    product_id = int(created.location.rsplit("/", 1)[1])
    with in_app() as session:
        product = session.get(SupplyProduct, product_id)
        assert (product.supplier_id, product.supplier_product) == (platform, "UC-325")
    refused = admin.submit(f"/supply/products/{product_id}",
                           supply_form(supplier_id=str(shops_own)))
    assert refused.status_code == 422
    with in_app() as session:
        with pytest.raises(DomainError, match="the platform's suppliers"):
            catalog.create_supply_product(name="X", cost=100, supplier_id=shops_own)
        session.rollback()
        product = session.get(SupplyProduct, product_id)
        catalog.update_supply_product(product, supplier_id=None)
        session.commit()
        assert product.supplier_id is None


def test_deleting_a_supplier_unlinks_its_products(admin, in_app, make_supplier):
    platform = make_supplier(None, name="Platform Source")
    with in_app() as session:
        supply = catalog.create_supply_product(name="X", cost=100, delivery_kind="topup",
                                               supplier_id=platform, supplier_product="X1")
        session.commit()
        supply_id = supply.id
    assert "1 product names this supplier" in body(admin.get(f"/suppliers/{platform}"))
    deleted = admin.submit(f"/suppliers/{platform}/delete", {},
                           form_path=f"/suppliers/{platform}")
    assert "1 product no longer names a supplier" in followed(admin, deleted)
    with in_app() as session:
        product = session.get(SupplyProduct, supply_id)
        assert (product.supplier_id, product.supplier_product) == (None, "X1")
