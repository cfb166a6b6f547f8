"""The super-admin dashboard (/dashboard/ on the admin host, where "/" leads): shops, active
buyers, orders and GMV per day across every shop, the platform's revenue, and the deliveries
that failed, with the same server-drawn charts as the shop dashboard."""

from __future__ import annotations

from functools import partial

from flask import render_template, request, url_for
from flask_babel import gettext as _

from ..money import format_money
from ..superadmin.console import platform_blueprint
from ..tenants.hosts import public_url, subdomain_host
from . import service as reports
from .charts import Chart, day_chart

bp = platform_blueprint("platform_reports", __name__)


def platform_charts(report: reports.PlatformReport) -> list[Chart]:
    money = partial(format_money, currency=report.currency)

    def series(attribute: str):
        return [(d.day, getattr(d, attribute)) for d in report.days]

    return [
        day_chart("chart-gmv", _("GMV per day (all shops)"), series("gmv"), money),
        day_chart("chart-orders", _("Orders paid per day (all shops)"), series("orders")),
        day_chart("chart-income", _("Platform revenue per day (supply cost and fees)"),
                  series("platform_income"), money),
        day_chart("chart-new-shops", _("New shops per day"), series("new_shops")),
    ]


@bp.get("/")
def overview():
    report = reports.platform_report(request.args.get("days", type=int))
    links = {
        f.order_id: {
            # the order in its shop's console (for staff of the shop, or support access)
            "order": public_url(subdomain_host(f.shop_slug), f"/admin/orders/{f.order_id}"),
            "shop": url_for("superadmin.tenant_detail", tenant_id=f.tenant_id),
        }
        for f in report.failed
    }
    return render_template(
        "reports/platform.html", report=report, charts=platform_charts(report),
        periods=reports.PERIODS, money=partial(format_money, currency=report.currency),
        format_money=format_money, links=links,
    )

