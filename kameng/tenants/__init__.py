"""Tenants (shops), their host names, host resolution and the tenant scoping guard."""

from __future__ import annotations

from flask import Flask, abort, g

from .hosts import SHOP, HostResolver, current_site, current_tenant
from .scoping import bind_tenant


def init_app(app: Flask) -> None:
    app.extensions["kameng.hosts"] = HostResolver(app.config["TENANT_CACHE_TTL"])
    app.before_request(enter_site)


def enter_site() -> None:
    """Resolve the request's site; on a shop host bind the shop to the database session."""
    g.pop("_kameng_site", None)  # computed afresh for every request
    g.pop("_kameng_tenant", None)
    site = current_site()
    if site.kind != SHOP:
        return
    try:
        tenant = current_tenant()
    except LookupError:
        abort(404, description="unknown-host")
    bind_tenant(tenant.id)
    if site.area == "storefront" and not tenant.is_active:
        abort(503)
