"""Shop pages for buyers: the home page (a placeholder naming the shop) and theme files."""

from __future__ import annotations

from flask import Blueprint, abort, send_from_directory
from flask_login import current_user

from ..tenants.hosts import current_tenant
from ..themes import render_themed, theme_static_path

bp = Blueprint("storefront", __name__)


def render_shop(template: str, **context) -> str:
    """Render a buyer page with the current shop's theme."""
    shop = current_tenant()
    return render_themed(shop.theme, template, shop=shop, buyer=current_user, **context)


@bp.get("/")
def home():
    return render_shop("home.html")


@bp.get("/theme/<theme>/<path:filename>")
def theme_static(theme: str, filename: str):
    found = theme_static_path(theme, filename)
    if found is None:
        abort(404)
    return send_from_directory(*found)
