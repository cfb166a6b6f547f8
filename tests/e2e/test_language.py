"""The language switch: 中文 turns the page and its navigation Chinese, and stays chosen."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def nav_labels(page) -> dict:
    header = page.locator("header.shop-header")
    return {
        "search": header.locator("form[role=search] button[type=submit]").inner_text().strip(),
        "account": [text.strip() for text in
                    header.locator("nav.account-nav a").all_inner_texts()],
    }


def language_link(page, name):
    """A link of the footer's language switch (whose own label is translated: "语言")."""
    return page.locator("footer nav.language-switch").get_by_role("link", name=name)


def test_switching_to_chinese_changes_the_page_and_is_remembered(seed, open_tab):
    shop = seed.shop("lingo", "Lingo Cards", locale="en")
    seed.card_product(shop, "Apple Gift Card ¥100", price=9800, codes=["LINGO-1"])
    tab = open_tab()
    page = tab.page

    tab.visit(shop.slug)
    assert tab.html_lang() == "en"
    assert nav_labels(page) == {"search": "Search",
                                "account": ["Find an order", "Log in", "Register"]}

    language_link(page, re.compile("中文")).click()
    expect(page.locator("html")).to_have_attribute("lang", re.compile(r"^zh"))
    chinese = nav_labels(page)
    assert chinese["search"] == "搜索"
    assert "登录" in chinese["account"] and "注册" in chinese["account"]

    # The choice is remembered: the next page is Chinese too.
    page.get_by_role("link", name="Apple Gift Card ¥100").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Apple Gift Card ¥100")
    assert tab.html_lang().startswith("zh")
    assert nav_labels(page) == chinese

    # And back.
    language_link(page, "English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    assert nav_labels(page)["search"] == "Search"
    tab.assert_clean()
