"""Security headers: a Content-Security-Policy with a fresh nonce on every response of every
site (shop, shop console, super-admin console, landing page), no inline script or style
without that nonce, no-sniff, same-origin framing, the Referer policy, and HSTS in
production only."""

from __future__ import annotations

import re

from kameng.security.headers import set_security_headers

NONCE = re.compile(r"'nonce-([A-Za-z0-9_-]+)'")
SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.I)
STYLE_TAG = re.compile(r"<style\b([^>]*)>", re.I)
STYLE_ATTR = re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I)
HANDLER_ATTR = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I)
JS_URL = re.compile(r"""(?:href|src|action)\s*=\s*["']?\s*javascript:""", re.I)


def csp_nonce_of(response) -> str:
    policy = response.headers["Content-Security-Policy"]
    found = NONCE.search(policy)
    assert found, policy
    return found.group(1)


def assert_no_inline_code(response, where: str = "") -> None:
    """Every inline <script> and every <style> carries this response's nonce; no style="…"
    attributes, inline event handlers or javascript: links (the policy would block them)."""
    html = response.get_data(as_text=True)
    nonce = csp_nonce_of(response)
    for attrs in SCRIPT_TAG.findall(html):
        if re.search(r"\ssrc\s*=", attrs):
            continue
        assert f'nonce="{nonce}"' in attrs, f"{where}: inline <script{attrs}> without the nonce"
    for attrs in STYLE_TAG.findall(html):
        assert f'nonce="{nonce}"' in attrs, f"{where}: <style{attrs}> without the nonce"
    assert not STYLE_ATTR.search(html), f"{where}: a style attribute: {STYLE_ATTR.search(html)}"
    assert not HANDLER_ATTR.search(html), f"{where}: an inline event handler"
    assert not JS_URL.search(html), f"{where}: a javascript: URL"


def assert_security_headers(response) -> None:
    policy = response.headers["Content-Security-Policy"]
    nonce = csp_nonce_of(response)
    for part in ("default-src 'self'", f"script-src 'self' 'nonce-{nonce}'",
                 f"style-src 'self' 'nonce-{nonce}'", "img-src 'self' data:",
                 "object-src 'none'", "base-uri 'self'", "frame-ancestors 'self'",
                 "form-action 'self' https:"):
        assert part in policy, (part, policy)
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert response.headers["Referrer-Policy"] in ("strict-origin-when-cross-origin",
                                                   "no-referrer")


def test_every_site_sends_the_policy_with_a_fresh_nonce(create_tenant, create_admin, client_for,
                                                       admin_client, hosts):
    shop = create_tenant(slug="headers")
    create_admin()
    owner = client_for(shop)
    owner.login("owner@headers.test", "owner-pass-1", path="/admin/login")
    admin_client.login("root@kameng.test", "admin-pass-1")
    pages = [
        (client_for(shop), "/"), (client_for(shop), "/login"), (client_for(shop), "/nope"),
        (owner, "/admin/"), (owner, "/admin/appearance"), (owner, "/admin/appearance/preview"),
        (client_for(shop), "/admin/login"),
        (admin_client, "/"), (client_for(hosts.admin), "/login"),
        (client_for(hosts.landing), "/"),
        (client_for("nobody.localhost"), "/"),  # an unknown host: the 404 page
    ]
    for client, path in pages:
        first = client.get(path, follow_redirects=True)
        second = client.get(path, follow_redirects=True)
        where = f"{client.host}{path}"
        assert first.status_code in (200, 404), (where, first.status_code)
        assert_security_headers(first)
        assert csp_nonce_of(first) != csp_nonce_of(second), where
        if first.mimetype == "text/html":
            assert_no_inline_code(first, where)


def _get_pages(app, site: str) -> list[str]:
    """Paths of the GET pages of one kind of site that take no arguments."""
    paths = []
    for rule in app.url_map.iter_rules():
        if rule.subdomain != site or "GET" not in rule.methods or rule.endpoint == "static":
            continue
        if set(rule.arguments) - {"_site"}:
            continue
        paths.append(rule.rule)
    return sorted(set(paths))


def test_no_console_or_shop_page_has_inline_code(app, create_tenant, create_admin, client_for,
                                                 admin_client, hosts):
    """Every argument-free page of every site, logged in where it needs it."""
    from kameng.tenants.hosts import ADMIN, LANDING, SHOP

    shop = create_tenant(slug="walkall")
    create_admin()
    owner = client_for(shop)
    owner.login("owner@walkall.test", "owner-pass-1", path="/admin/login")
    assert admin_client.login("root@kameng.test", "admin-pass-1").status_code == 302
    checked = 0
    sites = ((owner, SHOP), (admin_client, ADMIN), (client_for(hosts.landing), LANDING))
    for client, site in sites:
        for path in _get_pages(app, site):
            if path.endswith(("/logout", ".json")) or "/export" in path:
                continue
            response = client.get(path)
            where = f"{client.host}{path}"
            # 503: a page about a service the tests run without (the queue page without Redis).
            assert response.status_code < 500 or response.status_code == 503, (
                where, response.status_code)
            assert_security_headers(response)
            if response.mimetype == "text/html":
                assert_no_inline_code(response, where)
                checked += 1
    assert checked > 20


def test_the_shop_page_styles_carry_the_nonce(create_tenant, client_for):
    page = client_for(create_tenant(slug="nonce")).get("/")
    nonce = csp_nonce_of(page)
    assert f'<style nonce="{nonce}">' in page.get_data(as_text=True)  # the theme's colours
    assert_no_inline_code(page, "home")


def test_the_order_page_keeps_its_stricter_referrer_policy(create_tenant, card_product,
                                                            client_for, buy, pay_sandbox):
    shop = create_tenant(slug="referrer")
    client = client_for(shop)
    order_page = pay_sandbox(client, buy(client, card_product(shop)))
    assert order_page.status_code == 200
    assert order_page.headers["Referrer-Policy"] == "no-referrer"
    assert_security_headers(order_page)
    assert client.get("/").headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


def test_static_files_and_images_are_not_sniffed(create_tenant, client_for):
    client = client_for(create_tenant(slug="statics"))
    for path in ("/theme/default/style.css", "/theme/neon/style.css", "/static/console.css"):
        with client.get(path) as response:
            assert response.status_code == 200, path
            assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_hsts_only_in_production(app, create_tenant, client_for):
    client = client_for(create_tenant(slug="hsts"))
    assert "Strict-Transport-Security" not in client.get("/").headers
    app.config["KAMENG_ENV"] = "production"
    try:
        with app.test_request_context("/"):
            response = set_security_headers(app.response_class("x"))
    finally:
        app.config["KAMENG_ENV"] = "testing"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert_security_headers(response)
