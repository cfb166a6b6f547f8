"""Every buyer route in every theme, in a real browser, with zero console and script errors.

Each theme gets a furnished shop of its own (categories, pictures, bulk prices, logo, banner,
announcement, footer links, contacts) and a closed one. A guest walks the public pages and
the error pages, makes a checkout mistake and registers; a buyer logs in, pays one order in
the sandbox and copies its code, reports a problem with it and gets a new code, leaves another
order waiting for payment, tops up the wallet and pays from it, looks an order up, opens the
account pages, reads them in Chinese and logs out. Any console error, uncaught script error
or failed request (a 500 from a template error, a stylesheet or image that does not load, a
script the Content-Security-Policy refuses) fails the walk. The home, product and order pages
are kept as full-page screenshots in tests/e2e/artifacts/.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from .seed import PNG

pytestmark = pytest.mark.e2e

THEMES = ("default", "neon", "minimal")


def arrive(tab, shop, path: str = "/", status: int = 200) -> None:
    """Open a page of the shop and check it is the shop's page in the shop's theme."""
    tab.visit(shop.slug, path, status)
    check_page(tab, shop)


def check_page(tab, shop) -> None:
    page = tab.page
    expect(page.locator("h1")).to_have_count(1)
    expect(page.locator("html")).to_have_class(f"theme-{shop.theme}")
    if shop.theme != "default":
        assert any(f"/theme/{shop.theme}/style.css" in href for href in tab.stylesheets())
    expect(page.get_by_role("link", name=shop.name).first).to_be_attached()


def buy(page, product_name: str, method: str = "Sandbox (test payments)") -> None:
    """From a product page: the checkout form, up to the sandbox's page (or the wallet's)."""
    expect(page.get_by_role("heading", level=1)).to_have_text(product_name)
    page.get_by_label(method).check()
    page.get_by_role("button", name="Buy now").click()
    if method.startswith("Sandbox"):
        expect(page.get_by_role("heading", name="Sandbox payment")).to_be_visible()


def copy_code(page, where) -> None:
    """Press a code's Copy button: it says so, and the clipboard holds the code."""
    code = where.locator("code").first.inner_text().strip()
    button = where.get_by_role("button").first  # its name changes to "Copied"
    button.click()
    expect(button).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == code


def language_link(page, name):
    return page.locator("footer nav.language-switch").get_by_role("link", name=name)


class Walk:
    """A theme's furnished shop and its closed twin, with ids and logins."""

    def __init__(self, seed, theme: str):
        self.theme = theme
        self.shop = seed.shop(f"walk-{theme}", f"Walk {theme.title()} Shop", theme=theme)
        seed.furnish(self.shop)
        self.category = seed.category(self.shop, "Game cards")
        self.pictured = seed.card_product(
            self.shop, "Pictured card", price=1000, codes=[f"{theme}-PIC-{i}" for i in range(6)],
            category_id=self.category, image=PNG, bulk=[(3, 900)],
            description_html="<p>Works <b>worldwide</b>.</p>")
        self.plain = seed.card_product(self.shop, "Plain card", price=500,
                                       codes=[f"{theme}-PLAIN-{i}" for i in range(3)])
        self.buyer = seed.buyer(self.shop, f"walker@walk-{theme}.test")
        self.reset_token = seed.reset_token(self.shop, self.buyer.email)
        self.new_password = "walker-pass-2"  # the guest's walk sets it with the reset link
        self.closed = seed.shop(f"shut-{theme}", f"Shut {theme.title()} Shop", theme=theme)
        seed.suspend(self.closed)


@pytest.mark.parametrize("theme", THEMES)
def test_every_buyer_route_in_every_theme(theme, seed, open_tab, artifacts):
    walk = Walk(seed, theme)
    shop = walk.shop

    # A guest: the public pages.
    guest = open_tab()
    page = guest.page
    arrive(guest, shop)
    expect(page.get_by_text("Sale today")).to_be_visible()  # the announcement
    guest.screenshot(artifacts, f"{theme}-home")
    page.get_by_role("navigation", name="Categories").get_by_role("link", name="Game cards").click()
    expect(page).to_have_url(re.compile(rf"/category/{walk.category}$"))
    check_page(guest, shop)
    page.get_by_role("searchbox").fill("card")
    page.get_by_role("searchbox").press("Enter")
    expect(page).to_have_url(re.compile(r"/search\?q=card$"))
    check_page(guest, shop)
    expect(page.get_by_role("link", name="Plain card").first).to_be_visible()
    arrive(guest, shop, "/search?q=nothing-like-it")
    arrive(guest, shop, "/search")
    arrive(guest, shop, f"/product/{walk.pictured}")
    guest.screenshot(artifacts, f"{theme}-product")
    arrive(guest, shop, f"/product/{walk.plain}")
    for path in ("/orders/lookup", "/login", "/register"):
        arrive(guest, shop, path)
    # The buyer forgot the password: the mailed link, a new password, and another link asked.
    arrive(guest, shop, f"/password/reset/{walk.reset_token}")
    page.get_by_label("New password", exact=True).fill(walk.new_password)
    page.get_by_label("New password again").fill(walk.new_password)
    page.get_by_role("button", name="Save the new password").click()
    expect(page.get_by_text("Your password was changed")).to_be_visible()
    check_page(guest, shop)
    arrive(guest, shop, "/password/forgot")
    page.get_by_label("E-mail").fill(walk.buyer.email)
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("status").filter(has_text="we have sent it a link")).to_be_visible()
    check_page(guest, shop)
    arrive(guest, shop, "/no/such/page", status=404)
    arrive(guest, shop, "/product/999999", status=404)
    guest.visit(walk.closed.slug, "/", status=503)
    expect(page.get_by_role("heading", level=1)).to_have_text("Temporarily closed")
    expect(page.locator("html")).to_have_class(f"theme-{theme}")

    arrive(guest, shop, f"/product/{walk.plain}")  # a checkout with a mistake: the form again
    page.get_by_label("E-mail for the delivery").fill("guest@example.test")
    page.get_by_label("Coupon code (optional)").fill("NO-SUCH-COUPON")
    with guest.answering(422):
        page.get_by_role("button", name="Buy now").click()
    check_page(guest, shop)
    expect(page.locator(".errors, .field-error").first).to_be_visible()
    expect(page.get_by_label("E-mail for the delivery")).to_have_value("guest@example.test")

    arrive(guest, shop, "/register")
    page.get_by_label("E-mail").fill(f"newcomer@walk-{theme}.test")
    page.get_by_label("Password").fill("newcomer-pass-1")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("link", name="My account")).to_be_visible()
    check_page(guest, shop)

    # A buyer: log in, pay one order, leave one waiting, look one up, the account pages.
    buyer = open_tab(permissions=["clipboard-read", "clipboard-write"])
    page = buyer.page
    arrive(buyer, shop, "/login")
    page.get_by_label("E-mail").fill(walk.buyer.email)
    page.get_by_label("Password").fill(walk.new_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="My account")).to_be_visible()

    arrive(buyer, shop, f"/product/{walk.pictured}")
    buy(page, "Pictured card")
    check_page(buyer, shop)
    page.get_by_role("button", name=re.compile(r"^Pay ")).click()
    expect(page.locator("ul.codes code")).to_have_count(1, timeout=30_000)
    assert page.locator("ul.codes code").inner_text().startswith(f"{theme}-PIC-")
    check_page(buyer, shop)
    number = page.get_by_role("heading", level=1).inner_text().removeprefix("Order ").strip()
    buyer.screenshot(artifacts, f"{theme}-order")
    copy_code(page, page.locator("ul.codes li").first)
    order_url = page.url

    # After-sales: report the code, reply, and get a new code from the shop.
    page.get_by_role("link", name="Report a problem").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Report a problem")
    check_page(buyer, shop)
    page.get_by_label("The code is invalid").check()
    page.get_by_label("Tell the shop more").fill("The game says the code is not valid.")
    page.get_by_role("button", name="Send to the shop").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Request #\d+$"))
    check_page(buyer, shop)
    page.get_by_label("Your reply").fill("Any news?")
    page.get_by_role("button", name="Send reply").click()
    expect(page.get_by_text("Any news?")).to_be_visible()
    check_page(buyer, shop)
    seed.replace_reported_codes(shop, number)
    page.reload()
    expect(page.get_by_role("heading", name="Your new codes")).to_be_visible()
    check_page(buyer, shop)
    copy_code(page, page.locator("section ul.codes li").first)
    arrive(buyer, shop, "/account/tickets")
    expect(page.get_by_role("link", name=re.compile(r"^#\d+ · The code is invalid"))) \
        .to_be_visible()

    arrive(buyer, shop, f"/product/{walk.plain}")
    buy(page, "Plain card")
    order_path = parse_qs(urlsplit(page.url).query)["return"][0]
    arrive(buyer, shop, order_path)  # the order, waiting for its payment
    expect(page.get_by_text("Waiting for your payment")).to_be_visible()
    expect(page.get_by_role("link", name="Pay now")).to_be_visible()

    # The wallet: top up in the sandbox, then pay an order from it.
    arrive(buyer, shop, "/account/wallet")
    page.get_by_label("Amount").fill("20.00")
    page.get_by_label("Sandbox (test payments)").check()
    page.get_by_role("button", name="Top up").click()
    expect(page.get_by_role("heading", name="Sandbox payment")).to_be_visible()
    page.get_by_role("button", name=re.compile(r"^Pay ")).click()
    expect(page.get_by_text("added to your wallet")).to_be_visible(timeout=30_000)
    check_page(buyer, shop)
    arrive(buyer, shop, f"/product/{walk.plain}")
    buy(page, "Plain card", method="Wallet balance")
    expect(page.get_by_role("heading", name="Pay from your wallet")).to_be_visible()
    check_page(buyer, shop)
    page.get_by_role("button", name=re.compile(r"^Pay ")).click()
    expect(page.locator("ul.codes code")).to_have_count(1, timeout=30_000)
    assert page.locator("ul.codes code").inner_text().startswith(f"{theme}-PLAIN-")
    check_page(buyer, shop)

    arrive(buyer, shop, "/orders/lookup")
    page.get_by_label("Order number").fill(number)
    page.get_by_label("E-mail used for the order").fill(walk.buyer.email)
    page.get_by_role("button", name=re.compile("find|look", re.I)).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Order {number}")
    expect(page.locator("ul.codes code")).to_have_count(1)
    check_page(buyer, shop)

    arrive(buyer, shop, "/account/orders")
    expect(page.get_by_role("link", name=number)).to_be_visible()
    arrive(buyer, shop, "/account/wallet")
    arrive(buyer, shop, "/account")
    expect(page.get_by_role("heading", name="Your level")).to_be_visible()
    expect(page.get_by_role("heading", name="Points")).to_be_visible()

    # The same pages in Chinese: the switch keeps the page and the choice.
    language_link(page, re.compile("中文")).click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page).to_have_url(re.compile(r"/account$"))
    check_page(buyer, shop)
    for path in ("/", f"/product/{walk.pictured}", "/account/orders", "/account/wallet"):
        arrive(buyer, shop, path)
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.goto(order_url)
    expect(page.locator("ul.codes code")).to_have_count(1)
    check_page(buyer, shop)
    language_link(page, "English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")

    arrive(buyer, shop, "/account")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("link", name="Log in")).to_be_visible()
    check_page(buyer, shop)

    guest.assert_clean()
    buyer.assert_clean()


def test_the_three_themes_look_different(seed, open_tab):
    """The same shop in each theme, as a buyer's browser draws it: page colours, type, width,
    buttons and product pictures all differ, each theme in its own recognisable way."""
    looks = {}
    tab = open_tab()
    for theme in THEMES:
        shop = seed.shop(f"look-{theme}", "Look Shop", theme=theme)
        seed.card_product(shop, "Pictured card", price=1000, codes=[f"{theme}-LOOK"], image=PNG)
        arrive(tab, shop)
        looks[theme] = tab.page.evaluate("""() => {
            const style = element => getComputedStyle(document.querySelector(element));
            return {
                background: style("body").backgroundColor,
                text: style("body").color,
                font: style("body").fontFamily,
                width: style("main.wrap").maxWidth,
                button: style(".search-box button").backgroundColor,
                corners: style(".search-box button").borderTopLeftRadius,
                pictures: [...document.querySelectorAll("main img")]
                    .filter(img => img.getBoundingClientRect().width > 0).length,
            };
        }""")
    default, neon, minimal = (looks[theme] for theme in THEMES)
    for name in ("background", "text", "button"):
        assert len({look[name] for look in looks.values()}) == 3, (name, looks)
    assert default["background"] == "rgb(248, 249, 250)"  # soft grey
    assert neon["background"] == "rgb(11, 13, 23)"  # dark
    assert minimal["background"] == "rgb(255, 255, 255)"  # white
    assert "serif" in minimal["font"].split(",")[-1] and "sans" not in minimal["font"]
    assert minimal["width"] != default["width"]  # one narrow column
    assert minimal["pictures"] == 0 < default["pictures"]  # a price list without pictures
    tab.assert_clean()
