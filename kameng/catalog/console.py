"""The shop console's catalog pages (/admin on the shop host): products, supply listings,
categories, markup rules, buyer levels, level and bulk prices, coupons, notices."""

from __future__ import annotations

from flask import redirect, url_for

from ..merchant.console import console_blueprint

bp = console_blueprint("shop_catalog", __name__)


@bp.get("/products")
def product_list():
    return redirect(url_for("merchant.dashboard"))
