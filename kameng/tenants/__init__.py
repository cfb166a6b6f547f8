"""Tenants (shops), their host names, host resolution and the tenant scoping guard."""

from __future__ import annotations

from flask import Flask, abort, g, request

from .hosts import SHOP, HostResolver, current_site, current_tenant
from .scoping import bind_tenant


def init_app(app: Flask) -> None:
    app.extensions["kameng.hosts"] = HostResolver(app.config["TENANT_CACHE_TTL"])
    app.before_request(enter_site)


def enter_site() -> None:
    """Resolve the request's site; on a shop host bind the shop to the database session.

    Buyer pages learn whether the shop is open from its cached front (kameng/storefront), so
    an anonymous visit to a cached page reads nothing from the database; the shop console
    reads the shop's row.
    """
    g.pop("_kameng_site", None)  # computed afresh for every request
    g.pop("_kameng_tenant", None)
    g.pop("_kameng_front", None)
    site = current_site()
    if site.kind != SHOP:
        return
    if site.tenant_id is None:
        abort(404, description="unknown-host")
    bind_tenant(site.tenant_id)
    try:
        if site.area == "storefront":
            from ..storefront.views import current_front

            is_active = current_front().is_active
        else:
            is_active = current_tenant().is_active
    except LookupError:
        abort(404, description="unknown-host")
    # A closed shop's 503 page still needs its theme's stylesheets and scripts: they are the
    # same files for every shop and carry nothing of the shop's own.
    if (site.area == "storefront" and not is_active
            and request.endpoint != "storefront.theme_static"):
        abort(503)
