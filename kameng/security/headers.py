"""Security headers on every response: a Content-Security-Policy with a per-request nonce,
no MIME sniffing, framing by the same site only, a careful Referer, and HSTS in production.

Templates get `csp_nonce()`: the one way to put an inline `<script>` or `<style>` on a page
(`<style nonce="{{ csp_nonce() }}">`). Inline event handlers and `style="…"` attributes are
blocked by the policy, so pages use classes and script files instead.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app, g

HSTS = "max-age=31536000"


def csp_nonce() -> str:
    """This request's nonce (made on first use, the same for the whole page)."""
    nonce = g.get("_kameng_csp_nonce")
    if nonce is None:
        nonce = g._kameng_csp_nonce = secrets.token_urlsafe(16)
    return nonce


@contextmanager
def nonce_stand_in(text: str) -> Iterator[None]:
    """Render with `text` where the nonce goes (a page kept for many visitors: each response
    replaces it with its own nonce); the request's real nonce is made afresh afterwards."""
    g._kameng_csp_nonce = text
    try:
        yield
    finally:
        g.pop("_kameng_csp_nonce", None)


def content_security_policy(nonce: str) -> str:
    # form-action allows https: because a gateway's payment form posts to the gateway, and a
    # form post answered with a redirect to a gateway (Stripe Checkout) is checked against it.
    return "; ".join((
        "default-src 'self'",
        f"script-src 'self' 'nonce-{nonce}'",
        f"style-src 'self' 'nonce-{nonce}'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'self'",
        "form-action 'self' https:",
    ))


def set_security_headers(response):
    headers = response.headers
    headers["Content-Security-Policy"] = content_security_policy(csp_nonce())
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    # A page that asks for less (the order page's no-referrer) keeps its own policy.
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    if current_app.config.get("KAMENG_ENV") == "production":
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def init_app(app: Flask) -> None:
    app.add_template_global(csp_nonce)
    app.after_request(set_security_headers)
