"""Shop pages for buyers: home, category, search, product, product images and theme files."""

from __future__ import annotations

from functools import partial

from flask import Blueprint, abort, current_app, g, request, send_from_directory
from flask_login import current_user

from ..catalog.service import level_for, list_categories
from ..money import format_money
from ..tenants.hosts import current_tenant
from ..themes import render_themed, theme_static_path
from . import service

bp = Blueprint("storefront", __name__)

IMMUTABLE = "public, max-age=31536000, immutable"


def render_shop(template: str, **context) -> str:
    """Render a buyer page with the current shop's theme.

    Besides `shop` and `buyer`, every page gets `money(amount)` (formatted in the shop's
    currency) and `show_stock_numbers`.
    """
    shop = current_tenant()
    return render_themed(
        shop.theme, template, shop=shop, buyer=current_user,
        money=partial(format_money, currency=shop.currency),
        show_stock_numbers=service.shows_stock_numbers(shop), **context,
    )


@bp.app_template_global()
def shop_categories() -> list:
    """The shop's active categories in display order: the header's links (read once a request)."""
    if "_kameng_shop_categories" not in g:
        g._kameng_shop_categories = list_categories(active_only=True)
    return g._kameng_shop_categories


@bp.get("/")
def home():
    shop = current_tenant()
    sections = service.home_sections(shop, level_for(current_user), shop_categories())
    return render_shop("home.html", sections=sections)


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


@bp.get("/theme/<theme>/<path:filename>")
def theme_static(theme: str, filename: str):
    found = theme_static_path(theme, filename)
    if found is None:
        abort(404)
    return send_from_directory(*found)
