"""The language a page declares: <html lang> and the language switch name the same code."""

import re


def switch_current(html: str) -> list[str]:
    """The hreflang of the language switch's link marked as the page's language."""
    return re.findall(r'hreflang="([^"]+)" aria-current="true"', html)


def test_a_chinese_page_says_zh_cn_and_marks_chinese_in_the_switch(create_tenant, client_for):
    shop = create_tenant(slug="lingo", locale="zh_CN")
    page = client_for(shop).get("/").get_data(as_text=True)
    assert '<html lang="zh-CN"' in page  # not Babel's own spelling, "zh-Hans-CN"
    assert switch_current(page) == ["zh-CN"]


def test_switching_to_english_changes_the_declared_language(create_tenant, client_for):
    shop = create_tenant(slug="lingo", locale="zh_CN")
    client = client_for(shop)
    assert client.get("/lang/en?next=/").status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert '<html lang="en"' in page
    assert switch_current(page) == ["en"]


def test_both_consoles_have_the_language_switch(create_tenant, client_for, admin_client):
    shop = create_tenant(slug="lingo")
    client = client_for(shop)
    page = client.get("/admin/login").get_data(as_text=True)
    assert 'href="/lang/zh_CN?next=/admin/login"' in page and switch_current(page) == ["en"]
    assert client.get("/lang/zh_CN?next=/admin/login").headers["Location"] == "/admin/login"
    page = client.get("/admin/login").get_data(as_text=True)
    assert '<html lang="zh-CN"' in page and switch_current(page) == ["zh-CN"]
    assert 'href="/lang/en?next=/login"' in admin_client.get("/login").get_data(as_text=True)
