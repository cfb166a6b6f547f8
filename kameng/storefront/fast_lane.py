"""The fast lane: shop pages kept for anonymous visitors, answered before Flask runs.

A page kept by `views.cached_page` is the same for every anonymous visitor until its shop's
version tokens change. Flask still spends most of a request on work that cannot change such
a page (a request context, the session, Flask-Login, the rate limiter, locale selection,
URL matching), so this WSGI middleware answers a request that can only be anonymous — GET, no
query string, no Authorization header and no cookie but the language one (`km_lang`: a choice
of language, nothing personal) — from the whole response kept the first time Flask served it:
same status and headers, a fresh CSP nonce in the header and the page. Answers are kept per
host, scheme, path and chosen language, or raw Accept-Language header when none was chosen
(a page may then follow the browser's).

An answer is replayed only when, right now:
- the host still maps to the same shop in this process's host cache (an expired or changed
  mapping goes through Flask, which resolves it afresh);
- the shop's catalog version tokens (shop, platform) are the ones the page was kept under
  (read as every shop page reads them: kameng/storefront/cache.py), so a change of the shop,
  the supply catalog or the shop's status (suspended: 503) shows on the next request;
- the products the page shows have the stock they had in it, by the stock map this process
  keeps (none usable: through Flask, which counts it), so stock shows as it does in Flask;
- the entry is younger than the page cache's lifetime (STOREFRONT_CACHE_SECONDS).
Anything else, and every request that could be personal, goes through Flask as before; a
response that set a cookie, or was not a 200, is never kept. A replayed product page still
counts as a product view (record_view, in memory or one Redis HINCRBY).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flask import Flask, request
from werkzeug.http import parse_cookie

from ..i18n import LANGUAGE_COOKIE, LANGUAGES
from ..reports.product_views import record_view
from ..tenants.hosts import normalize_host, resolver
from .cache import Shown, lifetime, peek_stock, responses, stock_as_shown, versions

SLOT = "kameng.fast_lane"  # environ key: where cached_page tells the lane what it may keep


@dataclass(frozen=True)
class KeptResponse:
    tenant_id: int
    tokens: tuple[str, ...]  # the catalog's: shop, platform
    shows: tuple[Shown, ...]  # products whose stock the page shows, and how
    shown: tuple  # and that stock, as shown
    status: str
    headers: tuple[tuple[str, str], ...]  # with the stand-in where the nonce goes
    body: bytes  # likewise
    stand_in: bytes
    counts_view: int | None = None  # a product page: its product's view is counted


def offer(tenant_id: int, tokens: tuple[str, ...], shows: tuple[Shown, ...], shown: tuple,
          page: str, stand_in: str, nonce: str, counts_view: int | None = None) -> None:
    """Called by cached_page for a page kept for every anonymous visitor (`page` with the
    stand-in, `nonce` the one this response carries): the lane may keep this response."""
    slot = request.environ.get(SLOT)
    if slot is not None:
        slot.update(tenant_id=tenant_id, tokens=tokens, shows=shows, shown=shown, page=page,
                    stand_in=stand_in, nonce=nonce, seconds=lifetime(),
                    counts_view=counts_view)


def chosen_language_only(cookie_header: str) -> str | None:
    """The language a visitor chose, when the language cookie is the only cookie they send
    (a visitor who switched language is as anonymous as one who did not); else None."""
    cookies = parse_cookie(cookie_header)
    if list(cookies) != [LANGUAGE_COOKIE] or len(cookies.getlist(LANGUAGE_COOKIE)) != 1:
        return None
    chosen = cookies[LANGUAGE_COOKIE]
    return chosen if chosen in LANGUAGES else None


class FastLane:
    """WSGI middleware in front of Kameng's Flask app (inside ProxyFix)."""

    def __init__(self, app: Flask, wsgi_app: Callable):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if (environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING")
                or "HTTP_AUTHORIZATION" in environ or "HTTP_HOST" not in environ):
            return self.wsgi_app(environ, start_response)
        language = environ.get("HTTP_ACCEPT_LANGUAGE", "")
        if "HTTP_COOKIE" in environ:
            chosen = chosen_language_only(environ["HTTP_COOKIE"])
            if chosen is None:  # a session, or anything else: may be personal
                return self.wsgi_app(environ, start_response)
            language = f"{LANGUAGE_COOKIE}={chosen}"  # the choice decides, not the header
        key = (environ["HTTP_HOST"], environ.get("wsgi.url_scheme"),
               environ.get("SCRIPT_NAME", ""), environ.get("PATH_INFO", ""), language)
        kept = responses(self.app).get(key)
        if isinstance(kept, KeptResponse) and self._still_valid(kept, environ["HTTP_HOST"]):
            if kept.counts_view is not None:
                with self.app.app_context():
                    record_view(kept.tenant_id, kept.counts_view)
            return self._replay(kept, start_response)
        slot: dict = {}
        environ[SLOT] = slot
        captured: list = []

        def capture(status, headers, exc_info=None):
            captured[:] = [status, headers]
            return start_response(status, headers, exc_info)

        result = self.wsgi_app(environ, capture)
        if slot and captured:
            self._keep(key, slot, *captured)
        return result

    def _still_valid(self, kept: KeptResponse, raw_host: str) -> bool:
        if resolver(self.app).peek(normalize_host(raw_host)) != kept.tenant_id:
            return False
        tokens = versions(kept.tenant_id, self.app)
        if tokens is None or (tokens[0], tokens[2]) != kept.tokens:
            return False
        stock = peek_stock(self.app, kept.tenant_id, tokens)
        return stock is not None and stock_as_shown(stock, kept.shows) == kept.shown

    @staticmethod
    def _replay(kept: KeptResponse, start_response: Callable) -> list[bytes]:
        nonce = secrets.token_urlsafe(16)
        body = kept.body.replace(kept.stand_in, nonce.encode())
        stand_in = kept.stand_in.decode()
        headers = [(name, value.replace(stand_in, nonce)) for name, value in kept.headers]
        headers.append(("Content-Length", str(len(body))))
        start_response(kept.status, headers)
        return [body]

    def _keep(self, key: tuple, slot: dict, status: str, headers: list) -> None:
        if not status.startswith("200 ") or slot["nonce"] not in str(headers):
            return
        if any(name.lower() == "set-cookie" for name, _ in headers):
            return
        stand_in, nonce = slot["stand_in"], slot["nonce"]
        kept_headers = tuple((name, value.replace(nonce, stand_in)) for name, value in headers
                             if name.lower() != "content-length")
        responses(self.app).put(key, KeptResponse(
            tenant_id=slot["tenant_id"], tokens=tuple(slot["tokens"]), shows=slot["shows"],
            shown=slot["shown"], status=status, headers=kept_headers,
            body=slot["page"].encode(), stand_in=stand_in.encode(),
            counts_view=slot["counts_view"]),
            slot["seconds"])  # kept no longer than the page cache keeps pages
