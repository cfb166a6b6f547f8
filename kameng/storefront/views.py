"""Shop pages for buyers: home, category, search, product, product images and theme files."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from contextlib import contextmanager, nullcontext
from functools import partial

from flask import Blueprint, abort, current_app, g, request, session, url_for
from flask_babel import get_locale
from flask_login import current_user
from flask_wtf.csrf import generate_csrf

from ..appearance import service as appearance
from ..appearance.service import Look
from ..catalog.service import level_for
from ..money import format_money
from ..reports.product_views import record_view
from ..security.headers import csp_nonce, nonce_stand_in
from ..static_files import send_versioned
from ..tenants.hosts import current_site, current_tenant
from ..themes import render_themed, theme_static_path
from . import cache, fast_lane, service

bp = Blueprint("storefront", __name__)

IMMUTABLE = "public, max-age=31536000, immutable"


def shop_page_context(shop, look: Look | None = None, buyer=None) -> dict:
    """What every shop page's template gets.

    `shop` and `buyer`; `money(amount)` (formatted in the shop's currency);
    `show_stock_numbers`; and the shop's look: `theme_name`, `theme_settings` (the theme's
    settings merged with its theme.json defaults), `theme_css` ((custom property, colour)
    pairs), `logo_url` and `banner_url` (None: no image), `notice` (sanitised HTML),
    `footer_links` ([{label, url}]) and `contacts` ({email, qq, telegram, wechat}).
    """
    look = look or current_front().look
    return {
        "shop": shop,
        "buyer": current_user if buyer is None else buyer,
        "money": partial(format_money, currency=shop.currency),
        "show_stock_numbers": service.shows_stock_numbers(shop, look.settings),
        "theme_name": look.theme,
        "theme_settings": look.settings,
        "theme_css": look.css_vars,
        "logo_url": _image_url(look, "logo"),
        "banner_url": _image_url(look, "banner"),
        "notice": look.notice,
        "footer_links": look.footer_links,
        "contacts": look.contacts,
    }


def _image_url(look: Look, kind: str) -> str | None:
    if kind in look.images:
        return look.images[kind]
    if kind in look.assets:
        return url_for("storefront.shop_asset", kind=kind, v=look.assets[kind])
    return None


def render_shop(template: str, **context) -> str:
    """Render a buyer page with the current shop's theme and look (see shop_page_context).

    The Appearance preview passes `shop` (a draft with unsaved name), `look` (unsaved
    settings) and `buyer` (an anonymous visitor) to show a page as it would look.
    """
    shop = context.pop("shop", None) or current_tenant()
    page = shop_page_context(shop, context.pop("look", None), context.pop("buyer", None))
    page.update(context)
    return render_themed(page["theme_name"], template, **page)


def current_front() -> service.ShopFront:
    """The current shop's front (open or not, language, look, categories, levels): from the
    storefront cache, once per request."""
    front = g.get("_kameng_front")
    if front is None:
        tenant_id = current_site().tenant_id
        if tenant_id is None:
            raise LookupError("no shop for this request")
        front = g._kameng_front = service.shop_front(tenant_id, current_tenant)
    return front


@bp.app_template_global()
def shop_categories() -> list:
    """The shop's active categories in display order: the header's links."""
    return list(current_front().categories)


def _shelf(buyer=None) -> list[service.ShelfItem]:
    """The shop's shelf priced for the buyer's level (the current visitor by default)."""
    front = current_front()
    level_id = front.level_id_for(current_user if buyer is None else buyer)
    return service.shelf_items(front, level_id, current_tenant)


# A page kept for every visitor carries this where each visitor's CSP nonce goes (random per
# process, so nothing a shop types can match it); a page kept for guests with a session, this
# where each one's CSRF token goes.
NONCE_STAND_IN = secrets.token_urlsafe(24)
CSRF_STAND_IN = secrets.token_urlsafe(24)


@contextmanager
def _csrf_stand_in():
    """Render with CSRF_STAND_IN as the CSRF token of every form on the page (Flask-WTF reads
    the request's token from g first), leaving the session untouched."""
    field = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    setattr(g, field, CSRF_STAND_IN)
    try:
        yield
    finally:
        g.pop(field, None)


def _same_for_every_visitor() -> bool:
    """Whether this request sees the page every anonymous visitor sees: a plain GET (no query
    string), nobody logged in, no message waiting to be flashed."""
    return (request.method in ("GET", "HEAD") and not request.query_string
            and "_flashes" not in session and not current_user.is_authenticated)


def shop_stock() -> dict[int, int | None]:
    """The shop's stock map, as its shelf shows it (kameng/storefront/cache.py: may be a few
    seconds old)."""
    front = current_front()
    priced = service.priced_shelf(front, front.guest_level_id, current_tenant)
    return service.shelf_stock(front, tuple(p.card for p in priced))


def stock_shown(products: Iterable) -> tuple[cache.Shown, ...]:
    """How a page showing these products (or their shelf cards) shows their stock: counts
    where the shop shows them, else only in stock / sold out (sold out below the fewest units
    one can buy)."""
    front = current_front()
    exact = service.shows_stock_numbers(current_tenant(), front.look.settings)
    return tuple((product.id, None if exact else product.quantity_range[0])
                 for product in products)


def cached_page(name: tuple, render: Callable[[], str], shows: Iterable[cache.Shown] = (),
                counts_view: int | None = None, with_token: bool = False) -> str:
    """A shop page rendered once for all anonymous visitors and kept until the shop's catalog
    or look changes, or what it `shows` (stock_shown()) of its products' stock does (per host,
    scheme and language); each response gets its own nonce. `render` must show stock from
    shop_stock().
    `counts_view`: the product whose view a fast-lane replay of the page counts.
    `with_token`: the page for guests with a session, whose forms carry their CSRF token —
    kept with a stand-in, each response getting its visitor's own token.

    A rendering that wrote to the session or made a CSRF token is personal and is not kept.
    """
    if not _same_for_every_visitor():
        return render()
    front = current_front()
    tokens = cache.versions(front.tenant_id)
    if tokens is None:
        return render()
    shows = tuple(shows)
    stock = shop_stock()
    shown = cache.stock_as_shown(stock, shows)
    catalog_tokens = (tokens[0], tokens[2])  # shop, platform (stock: `shown`)
    key = ("page", *name, front.tenant_id, request.host, request.scheme, str(get_locale()),
           *catalog_tokens, shown)
    if with_token:
        key = (*key, "with-token")
    page = cache.lookup("pages", key)
    if page is cache.MISSING:
        with nonce_stand_in(NONCE_STAND_IN), (_csrf_stand_in() if with_token else nullcontext()):
            page = render()
        personal = session.modified or current_app.config.get(
            "WTF_CSRF_FIELD_NAME", "csrf_token") in g
        if personal:
            return _own(page.replace(NONCE_STAND_IN, csp_nonce()))
        cache.keep("pages", key, page)
    if with_token:
        return _own(page.replace(NONCE_STAND_IN, csp_nonce()))
    fast_lane.offer(front.tenant_id, catalog_tokens, shows, shown, page, NONCE_STAND_IN,
                    csp_nonce(), counts_view)
    return page.replace(NONCE_STAND_IN, csp_nonce())


def _own(page: str) -> str:
    """The page with this visitor's CSRF token where the stand-in is (if it has one)."""
    return page.replace(CSRF_STAND_IN, generate_csrf()) if CSRF_STAND_IN in page else page


@bp.get("/")
def home():
    return cached_page(("home",), home_page, shows=stock_shown(item.product for item in _shelf()))


def home_page(**context) -> str:
    """The home page (the Appearance preview passes a draft shop, look and a visitor)."""
    sections = service.home_sections(current_front(), _shelf(context.get("buyer")))
    return render_shop("home.html", sections=sections, **context)


@bp.get("/category/<int:category_id>")
def category(category_id: int):
    chosen = service.active_category(current_front(), category_id)
    items = service.category_items(_shelf(), chosen)
    return cached_page(("category", category_id), lambda: render_shop(
        "category.html", category=chosen, items=service.category_items(_shelf(), chosen)),
        shows=stock_shown(item.product for item in items))


@bp.get("/search")
def search():
    q = service.clean_search(request.args.get("q", type=str))
    return render_shop("search.html", q=q, items=service.search_items(_shelf(), q))


@bp.get("/product/<int:product_id>")
def product(product_id: int):
    from ..orders.forms import checkout_needs_csrf

    if current_user.is_authenticated:  # a buyer's own prices
        page = product_page(product_id)
    else:
        # The same for every guest without a session (the fast lane replays it and counts the
        # view); a guest with a session gets it too, with their own CSRF token put in.
        with_token = checkout_needs_csrf()
        front = current_front()  # the guest prices' shelf, without its stock (cached_page counts)
        on_shelf = [p.card for p in service.priced_shelf(front, front.guest_level_id,
                                                           current_tenant)
                    if p.card.id == product_id]
        page = cached_page(("product", product_id),
                           lambda: product_page(product_id, stock=shop_stock())[0],
                           shows=stock_shown(on_shelf) if on_shelf else ((product_id, None),),
                           counts_view=None if with_token else product_id, with_token=with_token)
    if request.method == "GET":  # not HEAD: link checkers are no visitors
        record_view(current_front().tenant_id, product_id)  # in memory, no database write
    return page


def product_page(product_id: int, form=None, status: int = 200, stock: dict | None = None):
    """The product page, with its checkout form (and that form's errors after a failed try);
    its stock from `stock` (the shop's stock map) when given, else counted now."""
    from ..orders.forms import checkout_form

    shop = current_tenant()
    chosen = service.shelf_product(product_id, shop_categories())
    level = level_for(current_user)
    guest = level_for(None) if current_user.is_authenticated else level
    view = service.product_view(shop, level, guest, chosen, shop_categories(), stock)
    form = form or checkout_form(shop, chosen, current_user)
    return render_shop("product.html", product=chosen, view=view, item=view.item,
                       form=form), status


@bp.get("/product/<int:product_id>/image")
def product_image(product_id: int):
    image = service.product_image(product_id, shop_categories())
    response = current_app.response_class(image.data, mimetype=image.content_type)
    response.set_etag(f"image-{image.token}")
    # A link carrying the current version may be cached for good: a new image gets a new URL.
    # Anything else is revalidated with the ETag.
    if request.args.get("v") == image.token:
        response.headers["Cache-Control"] = IMMUTABLE
    else:
        response.headers["Cache-Control"] = "public, no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response.make_conditional(request)


@bp.get("/asset/<kind>")
def shop_asset(kind: str):
    """The shop's logo or banner (as uploaded on the Appearance page)."""
    asset = appearance.get_asset(kind)
    if asset is None:
        abort(404)
    version = str(asset.version)
    response = current_app.response_class(asset.data, mimetype=asset.content_type)
    response.set_etag(f"{kind}-{version}")
    # A new upload gets a new version, hence a new URL: the versioned link is cached for good.
    if request.args.get("v") == version:
        response.headers["Cache-Control"] = IMMUTABLE
    else:
        response.headers["Cache-Control"] = "public, no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response.make_conditional(request)


@bp.get("/theme/<theme>/<path:filename>")
def theme_static(theme: str, filename: str):
    found = theme_static_path(theme, filename)
    if found is None:
        abort(404)
    return send_versioned(*found)
