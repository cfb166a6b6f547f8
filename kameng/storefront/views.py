"""Shop pages for buyers: home, category, search, product, product images and theme files."""

from __future__ import annotations

from functools import partial

from flask import Blueprint, abort, current_app, g, request, send_from_directory, url_for
from flask_login import current_user

from ..appearance import service as appearance
from ..appearance.service import Look
from ..catalog.service import level_for, list_categories
from ..money import format_money
from ..tenants.hosts import current_tenant
from ..themes import render_themed, theme_static_path
from . import service

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
    look = look or appearance.look_for(current_tenant())
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


@bp.app_template_global()
def shop_categories() -> list:
    """The shop's active categories in display order: the header's links (read once a request)."""
    if "_kameng_shop_categories" not in g:
        g._kameng_shop_categories = list_categories(active_only=True)
    return g._kameng_shop_categories


@bp.get("/")
def home():
    return home_page()


def home_page(**context) -> str:
    """The home page (the Appearance preview passes a draft shop, look and a visitor)."""
    buyer = context.get("buyer") or current_user
    sections = service.home_sections(current_tenant(), level_for(buyer), shop_categories())
    return render_shop("home.html", sections=sections, **context)


@bp.get("/category/<int:category_id>")
def category(category_id: int):
    shop = current_tenant()
    chosen = service.active_category(category_id)
    items = service.category_shelf(shop, level_for(current_user), chosen)
    return render_shop("category.html", category=chosen, items=items)


@bp.get("/search")
def search():
    shop = current_tenant()
    q = service.clean_search(request.args.get("q", type=str))
    items = service.search_shelf(shop, level_for(current_user), shop_categories(), q)
    return render_shop("search.html", q=q, items=items)


@bp.get("/product/<int:product_id>")
def product(product_id: int):
    return product_page(product_id)


def product_page(product_id: int, form=None, status: int = 200):
    """The product page, with its checkout form (and that form's errors after a failed try)."""
    from ..orders.forms import checkout_form

    shop = current_tenant()
    chosen = service.shelf_product(product_id, shop_categories())
    level = level_for(current_user)
    guest = level_for(None) if current_user.is_authenticated else level
    view = service.product_view(shop, level, guest, chosen, shop_categories())
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
    return send_from_directory(*found)
