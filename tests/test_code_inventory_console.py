"""Code inventory pages: the shop's own card products (/admin) and the platform's supply
products (/supply on the admin host). Codes go in by paste or file, never come out on a page,
and leave only through the audited CSV export."""

import io
from types import SimpleNamespace

import pytest
from sqlalchemy import select

CODES = ["KM-PLAIN-0001", "KM-PLAIN-0002", "KM-PLAIN-0003"]


@pytest.fixture
def shop(create_tenant, in_app):
    from kameng.catalog import service as catalog

    with in_app() as session:
        supply = catalog.create_supply_product(name="Platform card", cost=900)
        session.commit()
        supply_id = supply.id
    tenant = create_tenant(slug="gamma", owner_email="owner@gamma.test",
                           owner_password="owner-gamma-1")
    with in_app(tenant) as session:
        row = session.get(type(tenant), tenant.id)
        card = catalog.create_product(row, name="Own card", price=1000, low_stock_threshold=10)
        text = catalog.create_product(row, name="Own text", price=500, delivery_kind="text",
                                      text_content="https://example.test/licence")
        from kameng.catalog.models import Product

        listing = session.scalar(select(Product.id).where(Product.supply_product_id == supply_id))
        session.commit()
        return SimpleNamespace(tenant=tenant, card=card.id, text=text.id, listing=listing,
                               supply=supply_id)


@pytest.fixture
def console(shop, client_for):
    client = client_for(shop.tenant)
    assert client.login("owner@gamma.test", "owner-gamma-1",
                        path="/admin/login").status_code == 302
    return client


def body(page) -> str:
    return page.get_data(as_text=True)


def statuses(in_app, shop):
    from kameng.inventory.models import CardCode

    with in_app(shop.tenant) as session:
        return dict(session.execute(select(CardCode.id, CardCode.status)
                                    .order_by(CardCode.id)).all())


def import_paste(console, product_id, text, base="/admin"):
    codes_page = f"{base}/products/{product_id}/codes"
    return console.submit(f"{codes_page}/import", {"codes": text}, form_path=codes_page)


def import_file(console, product_id, content: bytes, filename, base="/admin"):
    codes_page = f"{base}/products/{product_id}/codes"
    return console.submit(f"{codes_page}/import",
                          {"codes": "", "file": (io.BytesIO(content), filename)},
                          form_path=codes_page)


def flash_after(console, page) -> str:
    assert page.status_code == 302, body(page)[:500]
    return body(console.get(page.location))


# -- import -------------------------------------------------------------------------------------


def test_import_by_paste_reports_added_duplicate_invalid(console, shop):
    text = "\n".join([CODES[0], f"  {CODES[1]}  ", CODES[0], "", "bad\x07code", "x" * 1001])
    page = flash_after(console, import_paste(console, shop.card, text))
    assert "2 added, 1 duplicate, 2 invalid" in page
    # again: everything is a duplicate now
    page = flash_after(console, import_paste(console, shop.card, "\n".join(CODES)))
    assert "1 added, 2 duplicates, 0 invalid" in page
    assert ">3<" in page  # three available


def test_import_txt_and_csv_files(console, shop):
    txt = ("\ufeff" + "\r\n".join(CODES) + "\r\n").encode()
    page = flash_after(console, import_file(console, shop.card, txt, "codes.TXT"))
    assert "3 added, 0 duplicates, 0 invalid" in page

    with_header = b"pin,Code\n1,KM-CSV-1\n2,KM-CSV-2\n3,KM-CSV-1\n4,\n5,KM-PLAIN-0001\n"
    page = flash_after(console, import_file(console, shop.card, with_header, "codes.csv"))
    assert "2 added, 2 duplicates, 0 invalid" in page

    pairs = b"4000123412341234,9911\n4000123412341235,9912\n"
    page = flash_after(console, import_file(console, shop.card, pairs, "pairs.csv"))
    assert "2 added, 0 duplicates, 0 invalid" in page


@pytest.mark.parametrize(
    ("content", "filename", "message"),
    [
        ("KM-1\n".encode("utf-16"), "codes.txt", "must be UTF-8"),
        (b"\xff\xfe\x00bad", "codes.csv", "must be UTF-8"),
        (b"", "codes.txt", "The file is empty"),
        (b"  \n\n", "codes.txt", "The file is empty"),
        (b"KM-1\n", "codes.exe", "Upload a .txt or .csv file"),
        (b"KM-1\n", "", "Paste codes or choose a file"),
        (b'"' + b"x" * 140_000 + b'"\n', "codes.csv", "The CSV file cannot be read"),
        (b"\n\n\x07\n", "codes.txt", None),  # one invalid line only: reported, not refused
    ],
)
def test_unreadable_uploads_are_form_errors(console, shop, content, filename, message):
    page = import_file(console, shop.card, content, filename)
    if message is None:
        assert "0 added, 0 duplicates, 1 invalid" in flash_after(console, page)
        return
    assert page.status_code == 422
    assert message in body(page)


def test_nothing_to_import_is_a_form_error(console, shop):
    page = import_paste(console, shop.card, "  \n \n")
    assert page.status_code == 422 and "Paste codes or choose a file" in body(page)


def test_uploads_over_the_limit_are_refused(console, shop, app, monkeypatch, client_for,
                                            in_app):
    from kameng.inventory import console as inventory_console

    monkeypatch.setattr(inventory_console, "MAX_UPLOAD_BYTES", 100)
    page = import_file(console, shop.card, b"KM-BIG\n" * 50, "codes.txt")
    assert page.status_code == 422 and "larger than 64 MB" in body(page)

    # Werkzeug refuses a request body over MAX_CONTENT_LENGTH before the view runs.
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 2000)
    page = import_file(console, shop.card, b"KM-BIG\n" * 500, "codes.txt")
    assert page.status_code == 413
    assert "too large" in body(page) and 'name="codes"' in body(page)
    anonymous = client_for(shop.tenant)
    page = anonymous.post(f"/admin/products/{shop.card}/codes/import",
                          data={"file": (io.BytesIO(b"KM-BIG\n" * 500), "codes.txt")})
    assert page.status_code == 302 and "/admin/login" in page.location
    assert statuses(in_app, shop) == {}


def test_codes_of_a_supply_listing_belong_to_the_platform(console, shop):
    page = console.get(f"/admin/products/{shop.listing}/codes")
    assert page.status_code == 200 and "the platform holds its codes" in body(page)
    assert 'name="codes"' not in body(page)
    page = import_paste(console, shop.listing, "\n".join(CODES))
    assert page.status_code == 422 and "held by the platform" in body(page)
    for action in ("void", "delete", "export"):
        page = console.submit(f"/admin/products/{shop.listing}/codes/{action}",
                              {"scope": "all"}, form_path="/admin/")
        assert "held by the platform" in flash_after(console, page)


def test_a_product_not_delivered_as_codes_takes_none(console, shop):
    page = console.get(f"/admin/products/{shop.text}/codes")
    assert page.status_code == 200 and "not as card codes" in body(page)
    page = import_paste(console, shop.text, "\n".join(CODES))
    assert page.status_code == 422 and "Only products delivered as card codes" in body(page)


# -- void, delete, export ---------------------------------------------------------------------


def _stock_with_sold_and_reserved(console, shop, in_app):
    from kameng.inventory.models import CardCode

    flash_after(console, import_paste(console, shop.card, "\n".join([*CODES, "KM-4", "KM-5"])))
    ids = list(statuses(in_app, shop))
    with in_app(shop.tenant) as session:
        session.get(CardCode, ids[0]).status = "sold"
        session.get(CardCode, ids[1]).status = "reserved"
        session.commit()
    return ids


def test_void_and_delete_never_touch_sold_or_reserved_codes(console, shop, in_app):
    ids = _stock_with_sold_and_reserved(console, shop, in_app)
    codes_page = f"/admin/products/{shop.card}/codes"

    page = console.submit(f"{codes_page}/void", {"code_ids": [ids[0], ids[1], ids[2]]},
                          form_path=codes_page)
    assert "1 code voided" in flash_after(console, page)
    assert list(statuses(in_app, shop).values()) == [
        "sold", "reserved", "void", "available", "available"]

    page = console.submit(f"{codes_page}/void", {"scope": "all"}, form_path=codes_page)
    assert "2 codes voided" in flash_after(console, page)

    page = console.submit(f"{codes_page}/delete", {"code_ids": [ids[0], ids[3]]},
                          form_path=codes_page)
    assert "1 code deleted" in flash_after(console, page)
    page = console.submit(f"{codes_page}/delete", {"scope": "all"}, form_path=codes_page)
    assert "2 codes deleted" in flash_after(console, page)
    assert statuses(in_app, shop) == {ids[0]: "sold", ids[1]: "reserved"}


@pytest.mark.parametrize("code_ids", [[], ["abc"], ["99999999999999999999"], ["1"] * 1001])
def test_bad_selections_change_nothing(console, shop, in_app, code_ids):
    flash_after(console, import_paste(console, shop.card, "\n".join(CODES)))
    codes_page = f"/admin/products/{shop.card}/codes"
    page = console.submit(f"{codes_page}/void", {"code_ids": code_ids}, form_path=codes_page)
    assert page.status_code == 302
    assert set(statuses(in_app, shop).values()) == {"available"}


def test_export_returns_unsold_codes_and_is_audited(console, shop, in_app):
    from kameng.audit.models import AuditEvent

    _stock_with_sold_and_reserved(console, shop, in_app)
    codes_page = f"/admin/products/{shop.card}/codes"
    page = console.submit(f"{codes_page}/export", form_path=codes_page)
    assert page.status_code == 200
    assert page.mimetype == "text/csv"
    assert page.headers["Content-Disposition"].startswith("attachment;")
    assert "no-store" in page.headers["Cache-Control"]
    text = body(page)
    assert text.splitlines()[0] == "id,code,imported_at"
    assert all(code in text for code in (CODES[2], "KM-4", "KM-5"))
    assert CODES[0] not in text and CODES[1] not in text  # sold and reserved stay out
    with in_app() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "codes.export"))
        events = events.all()
        assert len(events) == 1
        assert events[0].tenant_id == shop.tenant.id and events[0].details["count"] == 3
        assert events[0].actor_email == "owner@gamma.test"


def test_pages_never_show_code_content(console, shop):
    flash_after(console, import_paste(console, shop.card, "\n".join(CODES)))
    for path in (f"/admin/products/{shop.card}/codes", f"/admin/products/{shop.card}/codes"
                 "?status=available", f"/admin/products/{shop.card}", "/admin/products", "/admin/"):
        page = body(console.get(path))
        assert "KM-PLAIN" not in page, path
    page = body(console.get(f"/admin/products/{shop.card}/codes"))
    assert "Export 3 available codes" in page and "low stock" in page  # threshold 10


def test_codes_of_another_shop_are_out_of_reach(console, shop, create_tenant, client_for):
    flash_after(console, import_paste(console, shop.card, "\n".join(CODES)))
    create_tenant(slug="delta", owner_email="owner@delta.test", owner_password="owner-delta-1")
    other = client_for("delta.localhost")
    other.login("owner@delta.test", "owner-delta-1", path="/admin/login")
    assert other.get(f"/admin/products/{shop.card}/codes").status_code == 404
    token = other.csrf_token("/admin/")
    for action in ("import", "void", "delete", "export"):
        page = other.post(f"/admin/products/{shop.card}/codes/{action}",
                          data={"csrf_token": token, "scope": "all", "codes": "X"})
        assert page.status_code == 404 and "KM-PLAIN" not in body(page)


# -- supply codes on the admin host ------------------------------------------------------------


def test_supply_code_pages(admin, shop, in_app, admin_client):
    from kameng.audit.models import AuditEvent
    from kameng.inventory.models import SupplyCode

    base = f"/supply/products/{shop.supply}/codes"
    assert admin.get(base).status_code == 200
    page = flash_after(admin, import_paste(admin, shop.supply, "\n".join([*CODES, CODES[0]]),
                                           base="/supply"))
    assert "3 added, 1 duplicate, 0 invalid" in page and "KM-PLAIN" not in page
    page = flash_after(admin, import_file(admin, shop.supply, b"code\nKM-S-1\n", "s.csv",
                                          base="/supply"))
    assert "1 added" in page

    with in_app() as session:
        first = session.scalar(select(SupplyCode).order_by(SupplyCode.id))
        first.status, first.tenant_id = "sold", shop.tenant.id
        session.commit()
    page = admin.submit(f"{base}/export", form_path=base)
    assert page.status_code == 200 and "attachment" in page.headers["Content-Disposition"]
    assert "KM-PLAIN-0002" in body(page) and "KM-PLAIN-0001" not in body(page)
    with in_app() as session:
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "codes.export"))
        assert event.tenant_id is None and event.details["count"] == 3

    page = admin.submit(f"{base}/void", {"scope": "all"}, form_path=base)
    assert "3 codes voided" in flash_after(admin, page)
    page = admin.submit(f"{base}/delete", {"scope": "all"}, form_path=base)
    assert "3 codes deleted" in flash_after(admin, page)
    with in_app() as session:
        assert session.scalars(select(SupplyCode.status)).all() == ["sold"]

    assert admin.get("/supply/products/424242/codes").status_code == 404
    assert admin.get("/supply/products/99999999999999999999/codes").status_code == 404


def test_the_shop_sees_only_the_count_of_supply_codes(admin, console, shop):
    flash_after(admin, import_paste(admin, shop.supply, "\n".join(CODES), base="/supply"))
    page = body(console.get(f"/admin/products/{shop.listing}/codes"))
    assert "<strong>3</strong> available" in page and "KM-PLAIN" not in page
    assert "KM-PLAIN" not in body(console.get("/admin/supply"))


def test_supply_code_pages_need_a_platform_login(shop, admin_client, client_for):
    page = admin_client.get(f"/supply/products/{shop.supply}/codes")
    assert page.status_code == 302 and "/login" in page.location
    # and they do not exist on a shop's host
    assert client_for(shop.tenant).get(f"/supply/products/{shop.supply}/codes").status_code \
        == 404
