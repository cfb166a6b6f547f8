"""Every buyer page in every theme, password reset by mail, and the account page.

The walk renders each buyer route of a furnished shop (categories, pictures, bulk prices, a
logo and banner, an announcement, footer links and contacts, a buyer with a pending and a
delivered order) in each of the three themes, with StrictUndefined so a template that names a
missing variable fails, and checks the status and that no page carries inline code the
Content-Security-Policy would block.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import urlsplit

import pytest
from jinja2 import StrictUndefined
from sqlalchemy import select

from kameng.appearance import service as appearance
from kameng.catalog import service as catalog
from kameng.extensions import db
from kameng.mail.models import MailMessage
from kameng.members import service as members
from kameng.members.models import Customer
from kameng.orders.models import Order
from kameng.payments.gateways.base import PaymentStart
from kameng.payments.models import Payment
from kameng.tenants.models import Tenant
from kameng.tenants.service import suspend_tenant
from tests.test_security_headers import assert_no_inline_code, assert_security_headers

from .conftest import order_token

THEMES = ("default", "neon", "minimal")
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
RESET_LINK = re.compile(r"https?://[^\s]+/password/reset/[^\s]+")


@pytest.fixture
def strict_templates(app):
    """Undefined template variables raise instead of rendering as nothing."""
    before = app.jinja_env.undefined
    app.jinja_env.undefined = StrictUndefined
    yield
    app.jinja_env.undefined = before


def set_theme(in_app, shop, theme: str) -> None:
    with in_app(shop) as session:
        session.get(Tenant, shop.id).theme = theme
        session.commit()


@pytest.fixture
def furnished(create_tenant, create_customer, card_product, in_app, client_for, buy,
              pay_sandbox):
    """A shop with everything a page can show, a logged-in buyer and their orders."""
    shop = create_tenant(slug="walk", name="Walk Shop")
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        category_id = catalog.create_category(tenant, "Game cards").id
        session.commit()
    pictured = card_product(shop, codes=[f"WALK-{i}" for i in range(6)], price=1000,
                            name="Pictured card", category_id=category_id, image=PNG,
                            description="<p>Works <b>worldwide</b>.</p>")
    plain = card_product(shop, codes=["PLAIN-1"], price=500, name="Plain card")
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        catalog.set_bulk_prices(catalog.get_product(pictured), [(3, 900)])
        appearance.save_appearance(tenant, appearance.AppearanceChanges(
            name="Walk Shop", settings={}, notice="<p>Sale <b>today</b></p>",
            footer_links=[("Terms", "https://walk.example/terms")],
            contacts={"email": "help@walk.test", "qq": "123456", "telegram": "walkshop",
                      "wechat": "walk-shop"}))
        appearance.store_asset(tenant, "logo", PNG)
        appearance.store_asset(tenant, "banner", PNG)
        session.commit()
    customer = create_customer(shop, email="walker@walk.test", password="walker-pass-1")
    buyer = client_for(shop)
    assert buyer.login("walker@walk.test", "walker-pass-1").status_code == 302
    delivered_page = pay_sandbox(buyer, buy(buyer, pictured, email="walker@walk.test"))
    assert delivered_page.status_code == 200
    pending = buy(buyer, plain, email="walker@walk.test")
    assert pending.status_code == 302
    pending_token = order_token(pending)
    sandbox = urlsplit(pending.location)  # checkout went straight to the sandbox's page
    sandbox_path = sandbox.path + "?" + sandbox.query
    with in_app(shop) as session:
        orders = {o.status: o for o in session.scalars(select(Order))}
        delivered_token = urlsplit(delivered_page.request.url).path.split("/")[2]
        reset_token = members.password_reset_token(shop.id, "walker@walk.test")[1]
        numbers = {status: o.number for status, o in orders.items()}
    return {
        "shop": shop, "customer": customer, "buyer": buyer, "pictured": pictured,
        "plain": plain, "category": category_id, "pending": pending_token,
        "delivered": delivered_token, "sandbox": sandbox_path, "numbers": numbers,
        "reset": reset_token,
    }


def check(response, status: int, where: str) -> str:
    assert response.status_code == status, (where, response.status_code,
                                            response.get_data(as_text=True)[:3000])
    assert_security_headers(response)
    assert_no_inline_code(response, where)
    return response.get_data(as_text=True)


@pytest.mark.parametrize("theme", THEMES)
def test_every_buyer_page_renders_in_every_theme(theme, furnished, strict_templates, in_app,
                                                 client_for, buy, app):
    shop, buyer = furnished["shop"], furnished["buyer"]
    set_theme(in_app, shop, theme)
    guest = client_for(shop)
    pages = [
        (buyer, "/", 200), (guest, "/", 200),
        (buyer, f"/category/{furnished['category']}", 200),
        (guest, "/search?q=card", 200), (guest, "/search?q=nothing-like-it", 200),
        (guest, "/search", 200),
        (buyer, f"/product/{furnished['pictured']}", 200),
        (guest, f"/product/{furnished['plain']}", 200),
        (buyer, furnished["sandbox"], 200),
        (buyer, f"/order/{furnished['pending']}", 200),
        (buyer, f"/order/{furnished['delivered']}", 200),
        (buyer, f"/orders/{furnished['numbers']['delivered']}", 200),
        (guest, "/orders/lookup", 200),
        (buyer, "/account/orders", 200), (buyer, "/account/wallet", 200),
        (buyer, "/account", 200),
        (guest, "/login", 200), (guest, "/register", 200),
        (guest, "/password/forgot", 200),
        (guest, f"/password/reset/{furnished['reset']}", 200),
        (guest, "/password/reset/not-a-token", 400),
        (guest, "/no/such/page", 404), (guest, "/product/999999", 404),
    ]
    for client, path, status in pages:
        html = check(client.get(path), status, f"{theme} {path}")
        assert f"/theme/{theme}/style.css" in html or theme == "default", path
        assert "Walk Shop" in html
    # Paying from the wallet: the confirmation page.
    by_wallet = buy(buyer, furnished["pictured"], email="walker@walk.test",
                    payment_method="balance")
    assert by_wallet.status_code == 302, by_wallet.get_data(as_text=True)[:2000]
    check(buyer.get(by_wallet.location), 200, f"{theme} wallet payment")
    # Forms answered with their errors.
    check(buy(guest, furnished["plain"], qty=0), 422, f"{theme} checkout error")
    check(guest.submit("/orders/lookup", {"number": "NOPE", "email": "a@b.test"}), 404,
          f"{theme} lookup miss")
    check(guest.submit("/login", {"email": "walker@walk.test", "password": "wrong"}), 422,
          f"{theme} failed login")
    check(guest.submit("/register", {"email": "bad", "password": "x"}), 422,
          f"{theme} register error")
    check(guest.submit("/password/forgot", {"email": "someone@walk.test"}), 200,
          f"{theme} reset requested")
    # The payment waiting pages of QR and form gateways.
    for start in (PaymentStart(kind="qr", qr_data="https://pay.example/qr/123"),
                  PaymentStart(kind="form", url="https://pay.example/submit",
                               fields={"pid": "1", "sign": "abc"})):
        html = gateway_page(app, furnished, start)
        assert "Pay order" in html and ("<svg" in html) == (start.kind == "qr")
    # A closed shop.
    with in_app(shop) as session:
        suspend_tenant(session.get(Tenant, shop.id))
        session.commit()
    check(guest.get("/"), 503, f"{theme} closed shop")


def gateway_page(app, furnished, start: PaymentStart) -> str:
    """orders/gateway.html for the pending order, as the pay step renders it."""
    from kameng.orders.views import qr_svg
    from kameng.storefront.views import render_shop

    token = furnished["pending"]
    host = f"{furnished['shop'].slug}.{app.config['PLATFORM_DOMAIN']}"
    with app.test_request_context(f"/order/{token}/pay", base_url=f"http://{host}"):
        app.preprocess_request()
        order = db.session.scalar(select(Order).where(Order.status == "pending"))
        payment = Payment(amount=order.amount_due, currency=order.currency, gateway="epay")
        return render_shop("orders/gateway.html", order=order, start=start, payment=payment,
                           qr_svg=qr_svg(start.qr_data) if start.kind == "qr" else "")


def test_themes_look_different(furnished, in_app, client_for):
    shop = furnished["shop"]
    marks = {"default": "<section class=\"hero", "neon": "neon-hero", "minimal": "price-list"}
    pages = {}
    for theme in THEMES:
        set_theme(in_app, shop, theme)
        pages[theme] = client_for(shop).get("/").get_data(as_text=True)
    for theme, mark in marks.items():
        assert mark in pages[theme]
        assert all(mark not in pages[other] for other in THEMES if other != theme)
    # Minimal lists no pictures; the others show the product's picture.
    image = f"/product/{furnished['pictured']}/image"
    assert image in pages["default"] and image in pages["neon"] and image not in pages["minimal"]
    # Minimal has no banner setting: the banner is not shown there.
    assert "/asset/banner" in pages["default"] and "/asset/banner" not in pages["minimal"]
    assert all("/asset/logo" in page for page in pages.values())


def test_the_shop_look_is_on_every_page(furnished, client_for):
    html = client_for(furnished["shop"]).get("/login").get_data(as_text=True)
    assert '<img class="shop-logo" src="/asset/logo?v=1" alt="Walk Shop"' in html
    assert 'href="https://walk.example/terms"' in html and ">Terms<" in html
    assert 'href="mailto:help@walk.test"' in html and "123456" in html
    assert 'href="https://t.me/walkshop"' in html and "walk-shop" in html
    home = client_for(furnished["shop"]).get("/").get_data(as_text=True)
    assert "<p>Sale <b>today</b></p>" in home  # the announcement, on the home page only
    assert "Sale <b>today</b>" not in html


# -- password reset ---------------------------------------------------------------------------


def reset_mails(in_app, to: str) -> list[MailMessage]:
    with in_app() as session:
        return list(session.scalars(select(MailMessage).where(
            MailMessage.kind == "account.password_reset", MailMessage.to == to)
            .order_by(MailMessage.id)))


def answer(response) -> str:
    """The page without its per-request parts (CSRF token, CSP nonce)."""
    html = response.get_data(as_text=True)
    return re.sub(r'(value|nonce)="[^"]*"', "", html)


def test_password_reset_by_mail(create_tenant, create_customer, client_for, in_app):
    shop = create_tenant(slug="reset", name="Reset Shop")
    create_customer(shop, email="forgetful@reset.test", password="old-password-1")
    client = client_for(shop)

    asked = client.submit("/password/forgot", {"email": "Forgetful@Reset.test"})
    unknown = client.submit("/password/forgot", {"email": "nobody@reset.test"})

    assert asked.status_code == unknown.status_code == 200
    assert answer(asked) == answer(unknown)  # the same answer, account or not
    assert "If an account at Reset Shop uses that e-mail address" in asked.get_data(as_text=True)
    assert reset_mails(in_app, "nobody@reset.test") == []
    [mail] = reset_mails(in_app, "forgetful@reset.test")
    assert mail.tenant_id == shop.id and "Reset Shop" in mail.subject
    link = RESET_LINK.search(mail.body).group(0)
    assert link.startswith(f"http://{client.host}/password/reset/")
    path = urlsplit(link).path

    form = client.get(path)
    assert form.status_code == 200 and "Choose a new password" in form.get_data(as_text=True)
    assert form.headers["Referrer-Policy"] == "no-referrer"
    mismatch = client.submit(path, {"password": "new-password-1", "confirm": "other-pass-1"})
    assert mismatch.status_code == 422 and "differ" in mismatch.get_data(as_text=True)
    short = client.submit(path, {"password": "short", "confirm": "short"})
    assert short.status_code == 422 and "at least" in short.get_data(as_text=True)
    done = client.submit(path, {"password": "new-password-1", "confirm": "new-password-1"})
    assert done.status_code == 302 and urlsplit(done.location).path == "/login"

    assert client_for(shop).login("forgetful@reset.test", "old-password-1").status_code == 422
    assert client_for(shop).login("forgetful@reset.test", "new-password-1").status_code == 302
    # The link worked once.
    again = client.get(path)
    assert again.status_code == 400 and "expired or was already used" in again.get_data(
        as_text=True)
    csrf = client.csrf_token("/password/forgot")
    replay = client.post(path, data={"csrf_token": csrf, "password": "third-pass-1",
                                     "confirm": "third-pass-1"})
    assert replay.status_code == 400
    assert client_for(shop).login("forgetful@reset.test", "new-password-1").status_code == 302


def test_a_reset_link_works_only_at_its_shop_and_for_an_hour(create_tenant, create_customer,
                                                              client_for, in_app, monkeypatch):
    shop, other = create_tenant(slug="resetone"), create_tenant(slug="resettwo")
    create_customer(shop, email="same@buyer.test", password="first-pass-1")
    create_customer(other, email="same@buyer.test", password="second-pass-1")
    with in_app(shop):
        token = members.password_reset_token(shop.id, "same@buyer.test")[1]
    assert client_for(other).get(f"/password/reset/{token}").status_code == 400
    assert client_for(shop).get(f"/password/reset/{token}").status_code == 200
    monkeypatch.setattr(members, "RESET_MAX_AGE", -1)  # every token is now too old
    assert client_for(shop).get(f"/password/reset/{token}").status_code == 400


def test_a_password_change_kills_older_reset_links(create_tenant, create_customer, client_for,
                                                    in_app):
    shop = create_tenant(slug="resetkill")
    customer = create_customer(shop, email="k@kill.test", password="first-pass-1")
    with in_app(shop) as session:
        token = members.password_reset_token(shop.id, "k@kill.test")[1]
        session.get(Customer, customer.id).set_password("second-pass-1")
        session.commit()
    assert client_for(shop).get(f"/password/reset/{token}").status_code == 400


def test_reset_requests_are_rate_limited(create_tenant, client_for, in_app):
    shop = create_tenant(slug="resetrate")
    client = client_for(shop)
    statuses = [client.submit("/password/forgot", {"email": f"a{i}@rate.test"}).status_code
                for i in range(6)]
    assert statuses == [200] * 5 + [429]


# -- the account page ---------------------------------------------------------------------------


def test_account_page_shows_level_progress_wallet_and_points(create_tenant, create_customer,
                                                             client_for, in_app):
    shop = create_tenant(slug="levels")
    customer = create_customer(shop, email="lv@levels.test", password="level-pass-1",
                               name="Lee")
    client = client_for(shop)
    client.login("lv@levels.test", "level-pass-1")

    page = client.get("/account").get_data(as_text=True)
    assert "Member" in page and "Lee" in page
    assert "Spend <strong>¥1000.00</strong> more to become <strong>VIP</strong>" in page
    assert 'href="/account/orders"' in page and 'href="/account/wallet"' in page
    assert "Points" in page

    with in_app(shop) as session:
        session.get(Customer, customer.id).lifetime_spend = 40_000
        session.commit()
    page = client.get("/account").get_data(as_text=True)
    assert "Spend <strong>¥600.00</strong> more to become <strong>VIP</strong>" in page

    with in_app(shop) as session:
        row = session.get(Customer, customer.id)
        row.lifetime_spend = 150_000
        catalog.upgrade_level(row)
        session.commit()
    page = client.get("/account").get_data(as_text=True)
    assert "VIP" in page and "5% off" in page
    assert "highest level you can reach by spending" in page


def test_account_profile_and_password_change(create_tenant, create_customer, client_for, in_app):
    shop = create_tenant(slug="profile")
    create_customer(shop, email="p@profile.test", password="first-pass-1")
    client = client_for(shop)
    client.login("p@profile.test", "first-pass-1")
    other_device = client_for(shop)
    other_device.login("p@profile.test", "first-pass-1")

    saved = client.submit("/account/profile", {"name": "  Pat   Lee "}, form_path="/account")
    assert saved.status_code == 302
    assert "Pat Lee" in client.get("/account").get_data(as_text=True)

    wrong = client.submit("/account/password", {"current": "nope-nope-1", "password":
                          "second-pass-1", "confirm": "second-pass-1"}, form_path="/account")
    assert wrong.status_code == 422 and "current password is wrong" in wrong.get_data(
        as_text=True)
    changed = client.submit("/account/password", {"current": "first-pass-1", "password":
                            "second-pass-1", "confirm": "second-pass-1"}, form_path="/account")
    assert changed.status_code == 302
    assert client.get("/account").status_code == 200  # this browser stays logged in
    assert other_device.get("/account").status_code == 302  # the other one is logged out
    assert client_for(shop).login("p@profile.test", "second-pass-1").status_code == 302


def test_account_pages_need_a_buyer(create_tenant, client_for):
    client = client_for(create_tenant(slug="needlogin"))
    for path in ("/account", "/account/orders", "/account/wallet"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.location
