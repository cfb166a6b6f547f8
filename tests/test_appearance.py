"""The shop console's Appearance page: theme choice, theme settings from theme.json, logo and
banner uploads and the asset route, notice, footer links, contacts, and the live preview —
each change shows on this shop's pages and never on another shop's."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import pytest
from sqlalchemy import select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from kameng.appearance import service as appearance
from kameng.appearance.models import ShopAsset
from kameng.audit.models import AuditEvent
from kameng.tenants.models import Tenant

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"  # noqa: E501


class FormValues(HTMLParser):
    """What a browser would send for the Appearance form (text, colours, checked boxes and
    radios, textareas, selects), by field name."""

    def __init__(self, form_action: str):
        super().__init__()
        self.action = form_action
        self.inside = False
        self.values: dict[str, str] = {}
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("action") == self.action and "enctype" in attrs
        if not self.inside:
            return
        if tag == "input" and attrs.get("name"):
            kind = attrs.get("type", "text")
            if kind == "file" or kind == "submit":
                return
            if kind in ("checkbox", "radio"):
                if "checked" in attrs:
                    self.values[attrs["name"]] = attrs.get("value", "y")
                return
            self.values[attrs["name"]] = attrs.get("value", "")
        if tag == "textarea":
            self._textarea = attrs["name"]
            self.values[self._textarea] = ""
        if tag == "select":
            self._select = attrs["name"]
        # the selected option, else the first
        if tag == "option" and self._select and (
                "selected" in attrs or self._select not in self.values):
            self.values[self._select] = attrs.get("value", "")

    def handle_data(self, data):
        if self._textarea:
            self.values[self._textarea] += data.lstrip("\n")

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None
        if tag == "select":
            self._select = None
        if tag == "form":
            self.inside = False


@pytest.fixture
def console(create_tenant, client_for):
    """console(slug) -> (shop, a client logged in as its owner)."""

    def make(slug: str):
        shop = create_tenant(slug=slug, name=f"Shop {slug}")
        client = client_for(shop)
        assert client.login(f"owner@{slug}.test", "owner-pass-1",
                            path="/admin/login").status_code == 302
        return shop, client

    return make


def form_values(client) -> dict:
    parser = FormValues("/admin/appearance")
    parser.feed(client.get("/admin/appearance").get_data(as_text=True))
    return parser.values


def save(client, drop: tuple[str, ...] = (), **changes):
    """Post the Appearance form as shown, with `changes` (None removes a field)."""
    data = form_values(client)
    data.update(changes)
    data = {k: v for k, v in data.items() if v is not None and k not in drop}
    return client.post("/admin/appearance", data=data)


def home(client_for, shop) -> str:
    return client_for(shop).get("/").get_data(as_text=True)


def test_the_page_offers_every_theme_with_a_preview(console):
    _shop, client = console("looks")
    page = client.get("/admin/appearance")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    for theme in ("default", "neon", "minimal"):
        assert f"/theme/{theme}/preview.png" in html
        with client.get(f"/theme/{theme}/preview.png") as preview:
            assert preview.status_code == 200 and preview.mimetype == "image/png"
    assert html.count('name="theme"') == 2  # "use this theme" for the two others
    assert '<iframe name="preview"' in html and 'formtarget="preview"' in html
    assert 'type="color"' in html and 'name="brand_color"' in html


def test_switching_theme_and_colours_changes_only_this_shop(console, create_tenant, client_for,
                                                            in_app):
    shop, client = console("switcher")
    other = create_tenant(slug="bystander")
    token = client.csrf_token("/admin/appearance")

    switched = client.post("/admin/appearance/theme", data={"csrf_token": token,
                                                            "theme": "neon"})
    assert switched.status_code == 302
    assert "/theme/neon/style.css" in home(client_for, shop)
    assert "/theme/neon/style.css" not in home(client_for, other)

    saved = save(client, brand_color="#ff0088", accent_color="#00ff00")
    assert saved.status_code == 302, saved.get_data(as_text=True)[:2000]
    assert "--brand: #ff0088;" in home(client_for, shop)
    assert "--accent: #00ff00;" in home(client_for, shop)
    assert "--brand-fg: #000000;" in home(client_for, shop)  # dark text on a light pink
    assert "#ff0088" not in home(client_for, other)

    # Each theme keeps its own settings.
    client.post("/admin/appearance/theme", data={"csrf_token": token, "theme": "default"})
    assert "--brand: #1971c2;" in home(client_for, shop)
    client.post("/admin/appearance/theme", data={"csrf_token": token, "theme": "neon"})
    assert "--brand: #ff0088;" in home(client_for, shop)

    with in_app() as session:
        actions = session.scalars(select(AuditEvent.action).where(
            AuditEvent.tenant_id == shop.id)).all()
    assert "appearance.theme_changed" in actions and "appearance.saved" in actions


def test_unknown_theme_is_refused(console, in_app):
    shop, client = console("nothemes")
    token = client.csrf_token("/admin/appearance")
    response = client.post("/admin/appearance/theme", data={"csrf_token": token,
                                                            "theme": "../default"})
    assert response.status_code == 302
    assert "No such theme." in client.get("/admin/appearance").get_data(as_text=True)
    with in_app() as session:
        assert session.get(Tenant, shop.id).theme == "default"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("brand_color", "red", "#rrggbb"),
    ("brand_color", "#12345g", "#rrggbb"),
    ("product_layout", "carousel", "Not a valid choice"),
    ("banner_text", "x" * 121, "120 characters"),
    ("name", "", "This field is required"),
    ("links-0-url", "javascript:alert(1)", "http:// or https://"),
    ("contact_qq", "12ab", "QQ number"),
    ("contact_email", "not-an-email", "valid contact e-mail"),
    ("contact_telegram", "ab", "Telegram"),
])
def test_bad_settings_are_form_errors(console, in_app, field, value, message):
    shop, client = console("badvalues")
    changes = {field: value}
    if field.startswith("links-0"):
        changes["links-0-label"] = "Help"
    response = save(client, **changes)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    with in_app() as session:
        tenant = session.get(Tenant, shop.id)
        assert "theme_settings" not in tenant.settings and tenant.name == "Shop badvalues"


def test_layout_and_stock_numbers(console, client_for, card_product):
    shop, client = console("layout")
    card_product(shop, codes=["A", "B", "C"])
    assert "layout-grid" in home(client_for, shop) and "3 in stock" in home(client_for, shop)
    assert save(client, product_layout="list", drop=("show_stock_numbers",)).status_code == 302
    page = home(client_for, shop)
    assert "layout-list" in page and "3 in stock" not in page and "In stock" in page


def test_notice_is_sanitised(console, client_for):
    shop, client = console("notice")
    hostile = ('<p onclick="steal()">Big <b>sale</b> <a href="javascript:alert(1)">now</a>'
               '<img src="x" onerror="alert(1)"></p><script>alert(2)</script>'
               '<style>body{display:none}</style>')
    assert save(client, notice=hostile).status_code == 302
    page = home(client_for, shop)
    assert "Big <b>sale</b>" in page
    for bad in ("onclick", "javascript:", "onerror", "alert(2)", "display:none"):
        assert bad not in page
    # The announcement on every page, as a bar.
    assert save(client, announcement="every").status_code == 302
    assert "announcement-bar" in client_for(shop).get("/login").get_data(as_text=True)


def test_footer_links_and_contacts(console, client_for, create_tenant):
    shop, client = console("footer")
    other = create_tenant(slug="otherfooter")
    response = save(client, **{"links-0-label": "Terms", "links-0-url": "https://t.example/terms",
                               "links-2-label": "Group", "links-2-url": "http://g.example/",
                               "contact_email": "Help@Footer.test", "contact_qq": "10001",
                               "contact_telegram": "@footershop", "contact_wechat": "footer_1"})
    assert response.status_code == 302
    page = home(client_for, shop)
    assert 'href="https://t.example/terms" rel="noopener noreferrer">Terms<' in page
    assert 'href="http://g.example/"' in page
    assert "mailto:help@footer.test" in page.lower() and "10001" in page
    assert "https://t.me/footershop" in page and "footer_1" in page
    assert "t.example" not in home(client_for, other)
    # The form shows what was saved, and saving it again changes nothing.
    values = form_values(client)
    assert values["links-0-label"] == "Terms" and values["links-1-label"] == "Group"
    assert values["links-2-label"] == ""
    assert values["contact_telegram"] == "footershop"
    assert save(client).status_code == 302
    assert 'href="http://g.example/"' in home(client_for, shop)


def test_shop_name_changes(console, client_for):
    shop, client = console("renamed")
    assert save(client, name="  Brand   New  ").status_code == 302
    assert "Brand New" in home(client_for, shop)


def test_the_owner_sets_the_shops_default_language(console, client_for, in_app):
    shop, client = console("lingo")
    assert 'lang="en"' in home(client_for, shop)[:80]
    assert save(client, locale="zh_CN").status_code == 302
    assert '<html lang="zh-CN"' in home(client_for, shop)  # the cached page was dropped
    with in_app(shop) as session:
        assert session.get(type(shop), shop.id).locale == "zh_CN"
    assert save(client, locale="fr").status_code == 422  # a form error (now in Chinese)
    with in_app(shop) as session:
        assert session.get(type(shop), shop.id).locale == "zh_CN"


# -- images -----------------------------------------------------------------------------------


def upload(client, path="/admin/appearance", values=None, **files):
    """Post the form with files. The body is encoded here, in memory: the test client would
    spool a large one to a temporary file that it never closes."""
    data = dict(form_values(client) if values is None else values)
    for kind, content in files.items():
        data[kind] = FileStorage(io.BytesIO(content), filename=f"{kind}.bin")
    boundary, body = encode_multipart(data)
    return client.post(path, data=body,
                       content_type=f"multipart/form-data; boundary={boundary}")


def test_logo_and_banner_upload_replace_and_remove(console, client_for, create_tenant, in_app):
    shop, client = console("pictures")
    other = create_tenant(slug="nopictures")
    guest = client_for(shop)
    assert guest.get("/asset/logo").status_code == 404

    assert upload(client, logo=PNG, banner=GIF).status_code == 302
    page = home(client_for, shop)
    assert 'src="/asset/logo?v=1"' in page and 'src="/asset/banner?v=1"' in page
    logo = guest.get("/asset/logo?v=1")
    assert logo.status_code == 200 and logo.data == PNG and logo.mimetype == "image/png"
    assert logo.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert logo.headers["X-Content-Type-Options"] == "nosniff"
    assert guest.get("/asset/logo?v=1", headers={"If-None-Match": logo.headers["ETag"]}
                     ).status_code == 304
    assert guest.get("/asset/logo").headers["Cache-Control"] == "public, no-cache"
    banner = guest.get("/asset/banner?v=1")
    assert banner.status_code == 200 and banner.mimetype == "image/gif"
    # Another shop has none of them.
    assert client_for(other).get("/asset/logo").status_code == 404
    assert "/asset/logo" not in home(client_for, other)
    assert guest.get("/asset/favicon").status_code == 404

    # Replace: a new version, a new URL.
    assert upload(client, logo=GIF).status_code == 302
    assert 'src="/asset/logo?v=2"' in home(client_for, shop)
    assert guest.get("/asset/logo?v=2").mimetype == "image/gif"

    # Remove, then upload again: the version is never reused.
    assert save(client, remove_logo="y").status_code == 302
    assert guest.get("/asset/logo").status_code == 404
    assert "/asset/logo" not in home(client_for, shop)
    assert 'src="/asset/banner?v=1"' in home(client_for, shop)
    assert upload(client, logo=PNG).status_code == 302
    assert 'src="/asset/logo?v=3"' in home(client_for, shop)
    with in_app(shop) as session:
        assert session.scalar(select(ShopAsset).where(ShopAsset.kind == "logo")).version == 3


@pytest.mark.parametrize(("content", "message"), [
    (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
     "must be a PNG, JPEG, GIF or WebP"),
    (b"hello", "must be a PNG, JPEG, GIF or WebP"),
    (PNG + b"\0" * (2 * 1024 * 1024), "at most 2 MB"),
])
def test_uploads_that_are_too_big_or_not_images_are_refused(console, client_for, content,
                                                           message):
    shop, client = console("refused")
    response = upload(client, logo=content)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert client_for(shop).get("/asset/logo").status_code == 404


# -- preview ------------------------------------------------------------------------------------


def test_preview_shows_unsaved_changes_and_saves_nothing(console, client_for, card_product,
                                                         create_customer):
    shop, client = console("preview")
    card_product(shop, price=1000, name="Preview card")
    data = form_values(client)
    data.update(name="Draft Name", brand_color="#123456", notice="<p>Draft notice</p>",
                product_layout="list", brand_colour_typo="ignored")
    preview = upload(client, "/admin/appearance/preview", data, logo=PNG)
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200 and preview.headers["Cache-Control"] == "no-store"
    assert "Draft Name" in html and "--brand: #123456;" in html
    assert "Draft notice" in html and "layout-list" in html
    assert 'src="data:image/png;base64,' in html  # the unsaved logo
    assert "Preview card" in html and "Log in" in html  # as a visitor sees it
    # Nothing was saved.
    page = home(client_for, shop)
    assert "Draft Name" not in page and "#123456" not in page and "Draft notice" not in page
    # An invalid value previews as saved.
    data = form_values(client)
    data.update(brand_color="nonsense")
    html = client.post("/admin/appearance/preview", data=data).get_data(as_text=True)
    assert "--brand: #1971c2;" in html


def test_preview_of_another_theme_and_login(console, client_for):
    shop, client = console("previewtheme")
    neon = client.get("/admin/appearance/preview?theme=neon")
    assert neon.status_code == 200 and "/theme/neon/style.css" in neon.get_data(as_text=True)
    assert neon.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "/theme/neon/style.css" not in home(client_for, shop)
    unknown = client.get("/admin/appearance/preview?theme=nosuch")
    assert unknown.status_code == 200
    anonymous = client_for(shop).get("/admin/appearance/preview")
    assert anonymous.status_code == 302 and "/admin/login" in anonymous.location


# -- the service --------------------------------------------------------------------------------


def test_theme_settings_fall_back_to_defaults(create_tenant, in_app):
    shop = create_tenant(slug="fallback")
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        tenant.settings = {"theme_settings": {"default": {"brand_color": "javascript:x",
                                                          "product_layout": "list"}},
                           "show_stock_numbers": False}
        settings = appearance.theme_settings(tenant)
        assert settings["brand_color"] == "#1971c2"  # a stored value that no longer fits
        assert settings["product_layout"] == "list"
        assert settings["show_stock_numbers"] is False  # set before themes had settings
        look = appearance.look_for(tenant)
        assert ("--brand", "#1971c2") in look.css_vars
        session.rollback()


def test_every_theme_declares_the_settings_the_issue_asks_for(app):
    with app.app_context():
        for theme in ("default", "neon", "minimal"):
            kinds = {s.key: s.type for s in appearance.theme_schema(theme)}
            assert kinds["brand_color"] == kinds["background_color"] == "color", theme
            assert kinds["text_color"] == "color"
            assert kinds["logo"] == "image" and kinds["banner_text"] == "text"
            assert kinds["announcement"] == kinds["product_layout"] == "choice"
            assert kinds["show_stock_numbers"] == "boolean"
        assert "banner" not in {s.key for s in appearance.theme_schema("minimal")}
        assert {s.key for s in appearance.theme_schema("default")} >= {"banner"}
