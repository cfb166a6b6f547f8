"""The super-admin console's supply catalog: categories, products (cost), supply codes."""

from __future__ import annotations

from flask import redirect, url_for

from .console import platform_blueprint

bp = platform_blueprint("supply", __name__)


@bp.get("/")
def product_list():
    return redirect(url_for("superadmin.tenant_list"))
