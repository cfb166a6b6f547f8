"""A shop owner changes theme and colours in the console; only that shop's pages change."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

NEON_BRAND, NEON_ACCENT = "#ff6600", "#ffd400"


def look(tab, slug: str) -> dict:
    """What a buyer's browser makes of a shop's home page: theme class, stylesheets, colours."""
    tab.visit(slug)
    return {
        "class": tab.page.locator("html").get_attribute("class"),
        "neon_css": any("/theme/neon/style.css" in href for href in tab.stylesheets()),
        "brand": tab.css_var("--brand"),
        "accent": tab.css_var("--accent"),
        "background": tab.page.evaluate("getComputedStyle(document.body).backgroundColor"),
    }


def test_owner_switches_theme_and_colours_and_only_their_shop_changes(seed, open_tab):
    painted = seed.shop("painted", "Painted Cards")
    other = seed.shop("untouched", "Untouched Cards")
    for shop in (painted, other):
        seed.card_product(shop, "Gift card ¥100", price=9800, codes=[f"{shop.slug}-1"])
    buyer = open_tab()
    before, other_before = look(buyer, painted.slug), look(buyer, other.slug)
    assert before["class"] == other_before["class"] == "theme-default"
    assert not before["neon_css"]

    owner = open_tab()
    page = owner.page
    owner.visit(painted.slug, "/admin/login")
    page.get_by_label("E-mail").fill(painted.owner_email)
    page.get_by_label("Password").fill(painted.owner_password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Appearance").click()
    expect(page.get_by_role("heading", name="Appearance", level=1)).to_be_visible()

    page.get_by_role("button", name="Use Neon").click()
    expect(page.get_by_role("status").first).to_contain_text("Theme changed")
    expect(page.get_by_role("heading", name="Neon theme settings")).to_be_visible()
    page.get_by_label("Neon colour", exact=True).fill(NEON_BRAND)
    page.get_by_label("Second neon colour", exact=True).fill(NEON_ACCENT)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status").first).to_contain_text("Appearance saved")

    after, other_after = look(buyer, painted.slug), look(buyer, other.slug)
    assert after["class"] == "theme-neon"
    assert after["neon_css"]
    assert (after["brand"], after["accent"]) == (NEON_BRAND, NEON_ACCENT)
    assert after["background"] == "rgb(11, 13, 23)"  # the neon theme's dark page
    assert after["background"] != before["background"]
    assert other_after == other_before  # the other shop did not change at all
    owner.assert_clean()
    buyer.assert_clean()
