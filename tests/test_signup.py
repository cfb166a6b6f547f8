"""Self-service sign-up on the landing page, walked as a new merchant would: the plans, the form
with its live address check, the confirmation mail kept in the development outbox, the link,
the console, a wallet top-up, a buyer's sandbox purchase of a supply product, and the sale on
the super-admin dashboard."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from kameng.mail.models import MailMessage
from kameng.merchant.models import StaffUser
from kameng.orders.models import Order
from kameng.tenants.models import Tenant

PASSWORD = "a-good-long-password-1"
CONFIRM_LINK = re.compile(r"http://localhost/signup/confirm/[A-Za-z0-9_.-]+")


def text(page) -> str:
    return html.unescape(page.get_data(as_text=True))


@pytest.fixture
def supply_card(in_app):
    """A supply product with three codes in the platform's stock: every new shop lists it."""
    from kameng.audit.service import Actor
    from kameng.catalog import service as catalog
    from kameng.inventory.service import import_codes

    with in_app() as session:
        product = catalog.create_supply_product(name="Steam Wallet Code 50", cost=4600)
        import_codes(product, ["SUP-1111", "SUP-2222", "SUP-3333"], actor=Actor.system())
        session.commit()
        return product.id


def sign_up(landing, slug="fresh", email="new.owner@example.test", plan="free"):
    return landing.submit("/signup", {"shop_name": "Fresh Cards", "slug": slug, "email": email,
                                      "password": PASSWORD, "plan": plan})


def confirmation_mail(in_app) -> MailMessage:
    with in_app() as session:
        return session.scalar(select(MailMessage).where(MailMessage.kind == "account.confirm"))


def test_a_new_merchant_signs_up_confirms_and_sells_a_supply_product(
        supply_card, client_for, hosts, in_app, create_admin, buy, pay_sandbox):
    landing = client_for(hosts.landing)
    home = text(landing.get("/"))
    assert "Plans compared" in home and 'href="/signup' in home

    check = landing.get("/signup/check?slug=fresh").get_json()
    assert check == {"available": True, "message": "fresh.localhost is available."}
    signed_up = sign_up(landing)
    assert signed_up.status_code == 303 and signed_up.location.endswith("/signup/done")
    done = text(landing.get(signed_up.location))
    assert "Fresh Cards is live!" in done and "http://fresh.localhost/" in done
    assert "We sent a confirmation link to new.owner@example.test" in done
    assert "top up your wallet" in done  # what a supply product needs before its first sale
    assert not landing.get("/signup/check?slug=fresh").get_json()["available"]

    # Without MAIL_SERVER the mail is kept: the owner reads it in the console's Mail page.
    mail = confirmation_mail(in_app)
    assert mail.to == "new.owner@example.test"
    link = CONFIRM_LINK.search(mail.body).group(0)
    shop = client_for("fresh.localhost")
    assert shop.get("/admin/").status_code == 302  # the console needs a login
    assert shop.login("new.owner@example.test", PASSWORD, path="/admin/login").status_code == 302
    console = text(shop.get("/admin/"))
    assert "Please confirm your e-mail address" in console and "First steps" in console
    assert "Confirm your e-mail address for Fresh Cards" in text(shop.get("/admin/mail"))

    confirmed = landing.get(urlsplit(link).path)
    assert confirmed.status_code == 200
    assert "new.owner@example.test is confirmed" in text(confirmed)
    assert landing.get(urlsplit(link).path).status_code == 200  # the link works twice
    assert "Please confirm your e-mail address" not in text(shop.get("/admin/"))
    with in_app() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.slug == "fresh"))
        owner = session.scalar(select(StaffUser).where(StaffUser.tenant_id == tenant.id))
        assert owner.email_confirmed_at is not None
        from kameng.catalog.models import Product

        listing = session.scalar(select(Product.id).where(Product.tenant_id == tenant.id,
                                                          Product.supply_product_id
                                                          == supply_card))
    assert listing is not None  # stocked at sign-up
    assert "Steam Wallet Code 50" in text(shop.get("/admin/supply"))

    # The wallet pays the supply cost: the owner tops it up with the sandbox first.
    started = shop.submit("/admin/billing/topup", {"topup-amount": "100",
                                                   "topup-method": "sandbox"},
                          form_path="/admin/billing")
    assert started.status_code == 302 and "/admin/billing/sandbox/KMT-" in started.location
    paid = shop.submit(urlsplit(started.location).path, {"outcome": "pay"})
    assert "your wallet is topped up" in text(shop.get(paid.location))

    buyer = client_for("fresh.localhost")
    assert "Steam Wallet Code 50" in text(buyer.get("/"))
    order_page = pay_sandbox(buyer, buy(buyer, listing, email="first.buyer@example.test"))
    assert order_page.status_code == 200
    assert re.search(r"<code id=\"code-\d+-1\">SUP-\d{4}</code>", text(order_page))
    with in_app() as session:
        order = session.scalar(select(Order).where(Order.tenant_id == tenant.id))
        assert (order.status, order.total) == ("delivered", 5520)  # cost 46.00 + 20 %

    create_admin()
    admin = client_for(hosts.admin)
    assert admin.login("root@kameng.test", "admin-pass-1").status_code == 302
    dashboard = text(admin.get("/dashboard/"))
    assert 'id="total-orders">1<' in dashboard and 'id="total-gmv">¥55.20<' in dashboard
    assert 'id="shops-total">1<' in dashboard
    assert "Fresh Cards" in text(admin.get("/tenants"))


@pytest.mark.parametrize("slug, message", [
    ("admin", "The address 'admin' is reserved"),
    ("taken", "The address 'taken' is taken"),
    ("x", "Use 3 to 32 lower-case letters"),
])
def test_an_address_that_cannot_be_had_is_said_beside_the_field(client_for, hosts,
                                                                create_tenant, slug, message):
    create_tenant(slug="taken")
    landing = client_for(hosts.landing)
    check = landing.get(f"/signup/check?slug={slug}").get_json()
    assert check["available"] is False and message in check["message"]
    refused = sign_up(landing, slug=slug)
    assert refused.status_code == 422 and message in text(refused)


def test_a_tampered_confirmation_link_is_refused(client_for, hosts, in_app):
    landing = client_for(hosts.landing)
    assert sign_up(landing).status_code == 303
    path = urlsplit(CONFIRM_LINK.search(confirmation_mail(in_app).body).group(0)).path
    refused = landing.get(path[:-2] + ("AA" if not path.endswith("AA") else "BB"))
    assert refused.status_code == 400
    assert "This confirmation link is not valid." in text(refused)
    with in_app() as session:
        assert session.scalar(select(StaffUser.email_confirmed_at)) is None
