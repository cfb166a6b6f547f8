"""The shop console's reports: sales, orders, buyers, top products and conversion per day with
charts (/admin/reports), and the shop's wallet statement at the platform as CSV
(/admin/reports/wallet.csv) for reconciliation.

Registered by create_app() under /admin on shop hosts.
"""

from __future__ import annotations

from functools import partial

from flask import Response, render_template, request
from flask_babel import gettext as _

from ..extensions import db
from ..ledger import service as ledger
from ..merchant.console import console_blueprint, guard_blueprint
from ..money import format_money
from ..tenants.hosts import current_tenant
from . import service as reports
from .charts import Chart, day_chart

bp = console_blueprint("shop_reports", __name__)
# Every staff member sees the figures (as on the dashboard); the wallet statement is the shop's
# money at the platform: the owner's, like billing.
guard_blueprint(bp, read="dashboard.view", write="dashboard.view", wallet_csv="billing.manage")


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def shop_charts(report: reports.ShopReport) -> list[Chart]:
    """The shop dashboard's charts, in the order they are shown."""
    money = partial(format_money, currency=report.currency)

    def series(attribute: str):
        return [(d.day, getattr(d, attribute)) for d in report.days]

    return [
        day_chart("chart-sales", _("Sales per day"), series("sales"), money),
        day_chart("chart-orders", _("Orders paid per day"), series("orders")),
        day_chart("chart-new-buyers", _("New buyers per day"), series("new_buyers")),
        day_chart("chart-views", _("Product page views per day"), series("views")),
        day_chart("chart-conversion", _("Conversion per day (paid orders per view)"),
                  series("conversion"), percent, kind="line", total=False),
    ]


@bp.app_template_global()
def report_percent(value: float | None) -> str:
    """A ratio as a percentage with one decimal ("–" when there is nothing to divide by)."""
    return percent(value)


def dashboard_summary(shop) -> dict:
    """The last 30 days on the console's dashboard: totals and the sales chart."""
    report = reports.shop_report(shop, reports.DEFAULT_PERIOD, products=False)
    return {"report": report, "chart": shop_charts(report)[0],
            "money": partial(format_money, currency=shop.currency)}


@bp.get("/reports")
def overview():
    shop = current_tenant()
    report = reports.shop_report(shop, request.args.get("days", type=int))
    wallet_range = reports.last_days(reports.DEFAULT_PERIOD)
    return render_template(
        "reports/shop.html", report=report, charts=shop_charts(report),
        periods=reports.PERIODS, money=partial(format_money, currency=shop.currency),
        wallet_range=wallet_range,
    )


@bp.get("/reports/wallet.csv")
def wallet_csv():
    """The shop's wallet at the platform, movement by movement, within a date range."""
    shop = current_tenant()
    period = reports.parse_range(request.args.get("start"), request.args.get("end"))
    account = ledger.shop_wallet(shop.id, shop.currency)
    db.session.commit()  # the account may have just been created
    body = reports.statement_csv(reports.statement_lines(account, period), shop.currency)
    return csv_response(body, f"wallet-{shop.slug}-{period.first}-{period.last}.csv")


def csv_response(body: str, filename: str) -> Response:
    return Response(body, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
    })
