"""The audit log pages: a shop's own events in its console (/admin/audit) and every event
on the admin host (/audit), searchable, newest first, a page at a time."""

from __future__ import annotations

from datetime import date

from flask import render_template, request, url_for
from sqlalchemy import select

from ..extensions import db
from ..merchant.console import console_blueprint, guard_blueprint
from ..superadmin.console import platform_blueprint
from ..tenants.hosts import current_tenant
from ..tenants.models import Tenant
from .service import EventFilter, known_actions, search_events

PER_PAGE = 50

shop_bp = console_blueprint("shop_audit", __name__)
guard_blueprint(shop_bp, read="audit.view", write="audit.view")
platform_bp = platform_blueprint("platform_audit", __name__)


def _day(name: str) -> date | None:
    try:
        return date.fromisoformat(request.args.get(name, "").strip()[:10])
    except ValueError:
        return None


def _page_number() -> int:
    return min(max(request.args.get("page", 1, type=int) or 1, 1), 10_000)


def _filter(tenant_id: int | None) -> EventFilter:
    args = request.args
    return EventFilter(
        tenant_id=tenant_id,
        action=args.get("action", "").strip()[:64],
        actor=args.get("actor", "").strip()[:254],
        text=args.get("q", "").strip()[:100],
        since=_day("since"),
        until=_day("until"),
    )


def _page_url(page: int) -> str:
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    return url_for(request.endpoint, page=page, **args)


@shop_bp.get("/audit")
def shop_events():
    shop = current_tenant()
    page = _page_number()
    events, more = search_events(_filter(shop.id), page=page, per_page=PER_PAGE)
    return render_template(
        "audit/shop.html", events=events, more=more, page=page, page_url=_page_url,
        actions=known_actions(shop.id), args=request.args,
    )


@platform_bp.get("/audit")
def events():
    page = _page_number()
    slug = request.args.get("shop", "").strip().lower()[:64]
    tenant_id = None
    unknown_shop = False
    if slug:
        tenant_id = db.session.scalar(select(Tenant.id).where(Tenant.slug == slug))
        unknown_shop = tenant_id is None
    if unknown_shop:
        found, more = [], False
    else:
        found, more = search_events(_filter(tenant_id), page=page, per_page=PER_PAGE)
    shops = dict(db.session.execute(select(Tenant.id, Tenant.slug).where(
        Tenant.id.in_({e.tenant_id for e in found if e.tenant_id is not None}))).all())
    return render_template(
        "audit/platform.html", events=found, more=more, page=page, page_url=_page_url,
        actions=known_actions(), args=request.args, shops=shops, unknown_shop=unknown_shop,
    )
