"""A buyer on a phone walks the real pages, pays in the sandbox and copies the delivered code."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import PHONE

pytestmark = pytest.mark.e2e

CODES = ["PHONE-AAAA-1111", "PHONE-BBBB-2222", "PHONE-CCCC-3333"]


def test_phone_buyer_pays_in_the_sandbox_and_copies_the_delivered_code(seed, open_tab,
                                                                      artifacts):
    shop = seed.shop("phone", "Pocket Card Shop")
    seed.card_product(shop, "Steam Wallet Code ¥50", price=5000, codes=CODES)
    tab = open_tab(viewport=PHONE, is_mobile=True, has_touch=True,
                   permissions=["clipboard-read", "clipboard-write"])
    page = tab.page

    tab.visit(shop.slug)
    page.get_by_role("link", name="Steam Wallet Code ¥50").first.click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Steam Wallet Code ¥50")
    page.get_by_label("E-mail for the delivery").fill("pocket.buyer@example.test")
    page.get_by_label("Sandbox (test payments)").check()
    page.get_by_role("button", name="Buy now").click()

    expect(page.get_by_role("heading", name="Sandbox payment")).to_be_visible()
    page.get_by_role("button", name=re.compile(r"^Pay ")).click()

    # The order page: the worker delivers while the page refreshes by itself.
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Order "))
    code = page.locator("ul.codes code")
    expect(code).to_have_count(1, timeout=30_000)
    delivered = code.inner_text().strip()
    assert delivered in CODES
    expect(page.locator(".order-status")).to_have_text("Delivered")
    # `kameng serve`'s own worker (embedded Redis, as `make run`) delivered within 2 s.
    took = seed.delivery_seconds(shop, "pocket.buyer@example.test")
    print(f"paid -> delivered: {took:.3f} s")
    assert took < 2
    tab.screenshot(artifacts, "phone-order")

    # The button's name changes to "Copied": find it by its place, not by its name.
    copy = page.locator("ul.codes li").get_by_role("button")
    expect(copy).to_have_text("Copy")
    copy.tap()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == delivered
    expect(copy).to_have_text("Copy")  # and back, ready for another tap

    # A browser that refuses the clipboard API: the button still copies, by the older way.
    page.evaluate("""async () => {
        await navigator.clipboard.writeText("");
        navigator.clipboard.writeText = () =>
            Promise.reject(new DOMException("Write permission denied.", "NotAllowedError"));
    }""")
    copy.tap()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == delivered
    tab.assert_clean()
