"""The numbers behind the dashboards — a shop's sales, orders, buyers, product views and
conversion per day; the same across every shop for the platform — and wallet statements.

Every figure is aggregated in SQL (GROUP BY day) over a bounded range. Days are UTC dates; a
period is the last 7, 30 or 90 days up to and including today. A *sale* is a purchase (not a
wallet top-up) in a sale status (orders.states.SALE_STATUSES: paid, not refunded), counted on
the day it was paid at what the buyer was charged (amount_due: after coupons and points).
Orders taken in a shop's test mode (simulated payments) are no sales and are left out.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import Date, distinct, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from ..billing.models import ProductViewCount
from ..errors import DomainError
from ..extensions import db
from ..inventory.service import csv_safe
from ..ledger.models import LedgerAccount, LedgerPosting, LedgerTransaction
from ..members.models import Customer
from ..money import decimal_string
from ..orders.models import Order, OrderLine
from ..orders.states import SALE_STATUSES
from ..tenants.models import Tenant
from ..tenants.scoping import platform_scope

log = logging.getLogger(__name__)

PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30
TOP_PRODUCTS = 10
FAILED_SHOWN = 50


# -- days -----------------------------------------------------------------------------------


class utc_day(FunctionElement):  # lower case: it reads as the SQL function it is
    """The UTC calendar day of a timestamp column, as a DATE.

    PostgreSQL converts the timestamptz to UTC first (the session may be in another time
    zone); SQLite stores UTC text, whose date() is the day.
    """

    type = Date()
    name = "utc_day"
    inherit_cache = True


@compiles(utc_day)
def _utc_day(element, compiler, **kw):
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element, compiler, **kw):
    return f"CAST(timezone('UTC', {compiler.process(element.clauses, **kw)}) AS DATE)"


def _as_date(value) -> date:
    """A day as the database returns it (SQLite may hand back text)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def today() -> date:
    return datetime.now(UTC).date()


def midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass(frozen=True)
class Period:
    """The days from `first` to `last`, both included."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def start(self) -> datetime:
        return midnight(self.first)

    @property
    def end(self) -> datetime:  # exclusive
        return midnight(self.last + timedelta(days=1))

    def dates(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range(self.days)]


def last_days(days: int | None, *, until: date | None = None) -> Period:
    """The last `days` days up to `until` (today, UTC); an unknown choice means 30 days."""
    days = days if days in PERIODS else DEFAULT_PERIOD
    last = until or today()
    return Period(last - timedelta(days=days - 1), last)


def parse_range(start: str | None, end: str | None, *, default_days: int = DEFAULT_PERIOD
                ) -> Period:
    """A date range typed by a person (YYYY-MM-DD, both days included); blank ends default to
    the last `default_days` days. Raises DomainError for a date that is no date."""
    last = _parse_day(end, "end") if end else today()
    first = _parse_day(start, "start") if start else last - timedelta(days=default_days - 1)
    if first > last:
        raise DomainError(_l("The start date is after the end date."), field="start")
    return Period(first, last)


def _parse_day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        raise DomainError(_l("Write dates as YYYY-MM-DD."), field=name) from None


def _sold_in(period: Period) -> tuple:
    """The conditions of a sale paid within `period` (see the module's docstring)."""
    return (
        Order.kind == "purchase",
        Order.status.in_(SALE_STATUSES),
        Order.test_mode.is_(False),
        Order.paid_at >= period.start,
        Order.paid_at < period.end,
    )


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# -- a shop's dashboard -----------------------------------------------------------------------


@dataclass
class ShopDay:
    day: date
    sales: int = 0  # minor units
    orders: int = 0  # orders paid
    buyers: int = 0  # different e-mails with an order paid that day
    new_buyers: int = 0  # buyer accounts registered that day
    views: int = 0  # product page views

    @property
    def conversion(self) -> float | None:
        """Paid orders per product page view (None on a day without views)."""
        return _ratio(self.orders, self.views)


@dataclass
class ProductFigures:
    product_id: int | None
    title: str
    units: int
    revenue: int  # line totals: the price before coupons and points
    orders: int
    views: int = 0

    @property
    def conversion(self) -> float | None:
        return _ratio(self.orders, self.views)


@dataclass
class ShopReport:
    period: Period
    currency: str
    days: list[ShopDay]
    buyers: int  # different e-mails with a paid order in the period
    top_by_revenue: list[ProductFigures] = field(default_factory=list)
    top_by_units: list[ProductFigures] = field(default_factory=list)

    @property
    def sales(self) -> int:
        return sum(d.sales for d in self.days)

    @property
    def orders(self) -> int:
        return sum(d.orders for d in self.days)

    @property
    def new_buyers(self) -> int:
        return sum(d.new_buyers for d in self.days)

    @property
    def views(self) -> int:
        return sum(d.views for d in self.days)

    @property
    def conversion(self) -> float | None:
        return _ratio(self.orders, self.views)

    @property
    def average_order(self) -> int | None:
        return self.sales // self.orders if self.orders else None


def shop_report(tenant: Tenant, days: int | None = None, *, products: bool = True,
                until: date | None = None) -> ShopReport:
    """The shop's figures per day over the last `days` days, and its best-selling products."""
    _write_buffered_views()
    period = last_days(days, until=until)
    figures = {day: ShopDay(day) for day in period.dates()}

    paid_day = utc_day(Order.paid_at)
    for day, sales, orders, buyers in db.session.execute(
        select(paid_day, func.sum(Order.amount_due), func.count(),
               func.count(distinct(Order.email)))
        .where(Order.tenant_id == tenant.id, *_sold_in(period))
        .group_by(paid_day)
    ):
        row = figures.get(_as_date(day))
        if row is not None:
            row.sales, row.orders, row.buyers = int(sales or 0), orders, buyers

    joined_day = utc_day(Customer.created_at)
    for day, count in db.session.execute(
        select(joined_day, func.count())
        .where(Customer.tenant_id == tenant.id, Customer.created_at >= period.start,
               Customer.created_at < period.end)
        .group_by(joined_day)
    ):
        row = figures.get(_as_date(day))
        if row is not None:
            row.new_buyers = count

    for day, views in db.session.execute(
        select(ProductViewCount.day, func.sum(ProductViewCount.views))
        .where(ProductViewCount.tenant_id == tenant.id, ProductViewCount.day >= period.first,
               ProductViewCount.day <= period.last)
        .group_by(ProductViewCount.day)
    ):
        row = figures.get(_as_date(day))
        if row is not None:
            row.views = int(views or 0)

    buyers = db.session.scalar(
        select(func.count(distinct(Order.email)))
        .where(Order.tenant_id == tenant.id, *_sold_in(period))) or 0
    report = ShopReport(period=period, currency=tenant.currency, days=list(figures.values()),
                        buyers=buyers)
    if products:
        report.top_by_revenue, report.top_by_units = _top_products(tenant, period)
    return report


def _top_products(tenant: Tenant, period: Period
                  ) -> tuple[list[ProductFigures], list[ProductFigures]]:
    """The best sellers of the period by revenue and by units, with their views."""
    rows = db.session.execute(
        select(OrderLine.product_id, func.max(OrderLine.title), func.sum(OrderLine.qty),
               func.sum(OrderLine.total), func.count(distinct(OrderLine.order_id)))
        .join(Order, Order.id == OrderLine.order_id)
        .where(Order.tenant_id == tenant.id, OrderLine.tenant_id == tenant.id, *_sold_in(period))
        .group_by(OrderLine.product_id)
    ).all()
    sold = [ProductFigures(product_id, title or "", int(units or 0), int(revenue or 0), orders)
            for product_id, title, units, revenue, orders in rows]
    by_revenue = sorted(sold, key=lambda p: (-p.revenue, -p.units, p.title))[:TOP_PRODUCTS]
    by_units = sorted(sold, key=lambda p: (-p.units, -p.revenue, p.title))[:TOP_PRODUCTS]
    shown = {p.product_id for p in by_revenue + by_units if p.product_id is not None}
    if shown:
        views = dict(db.session.execute(
            select(ProductViewCount.product_id, func.sum(ProductViewCount.views))
            .where(ProductViewCount.tenant_id == tenant.id,
                   ProductViewCount.product_id.in_(shown),
                   ProductViewCount.day >= period.first, ProductViewCount.day <= period.last)
            .group_by(ProductViewCount.product_id)
        ).all())
        for product in sold:
            product.views = int(views.get(product.product_id) or 0)
    return by_revenue, by_units


def _write_buffered_views() -> None:
    """Views this process still holds (no Redis) belong in the report."""
    from .product_views import flush_buffer

    try:
        flush_buffer()
    except Exception:  # the report is shown all the same
        log.exception("product views: could not write the buffered counts")


# -- the platform's dashboard -------------------------------------------------------------------


@dataclass
class PlatformDay:
    day: date
    new_shops: int = 0
    orders: int = 0  # sales paid that day, every shop
    gmv: int = 0  # what buyers were charged for them, in the platform currency
    revenue: int = 0  # supply cost paid by shops (ledger account platform_revenue)
    fees: int = 0  # fees charged to shops (ledger account platform_fees)

    @property
    def platform_income(self) -> int:
        return self.revenue + self.fees


@dataclass
class FailedDelivery:
    order_id: int
    number: str
    tenant_id: int
    shop_name: str
    shop_slug: str
    email: str
    amount_due: int
    currency: str
    paid_at: datetime | None
    reason: str


@dataclass
class PlatformReport:
    period: Period
    currency: str
    days: list[PlatformDay]
    shops: dict[str, int]  # status -> count
    active_buyers: int  # (shop, e-mail) pairs with a paid order in the period
    failed: list[FailedDelivery]
    failed_total: int

    @property
    def shops_total(self) -> int:
        return sum(self.shops.values())

    @property
    def new_shops(self) -> int:
        return sum(d.new_shops for d in self.days)

    @property
    def orders(self) -> int:
        return sum(d.orders for d in self.days)

    @property
    def gmv(self) -> int:
        return sum(d.gmv for d in self.days)

    @property
    def revenue(self) -> int:
        return sum(d.revenue for d in self.days)

    @property
    def fees(self) -> int:
        return sum(d.fees for d in self.days)


def platform_report(days: int | None = None, *, until: date | None = None) -> PlatformReport:
    """Every shop's figures per day, the platform's own revenue, and failed deliveries."""
    currency = current_app.config.get("CURRENCY", "CNY")
    period = last_days(days, until=until)
    figures = {day: PlatformDay(day) for day in period.dates()}

    def at(day) -> PlatformDay | None:
        return figures.get(_as_date(day))

    with platform_scope():
        shops = dict(db.session.execute(
            select(Tenant.status, func.count()).group_by(Tenant.status)).all())
        created_day = utc_day(Tenant.created_at)
        for day, count in db.session.execute(
            select(created_day, func.count())
            .where(Tenant.created_at >= period.start, Tenant.created_at < period.end)
            .group_by(created_day)
        ):
            if row := at(day):
                row.new_shops = count

        paid_day = utc_day(Order.paid_at)
        for day, order_currency, orders, gmv in db.session.execute(
            select(paid_day, Order.currency, func.count(), func.sum(Order.amount_due))
            .where(*_sold_in(period))
            .group_by(paid_day, Order.currency)
        ):
            if row := at(day):
                row.orders += orders
                if order_currency == currency:
                    row.gmv += int(gmv or 0)

        buyers = select(Order.tenant_id, Order.email).where(*_sold_in(period)).distinct()
        active_buyers = db.session.scalar(
            select(func.count()).select_from(buyers.subquery())) or 0

        posted_day = utc_day(LedgerTransaction.created_at)
        for day, kind, amount in db.session.execute(
            select(posted_day, LedgerAccount.kind, func.sum(LedgerPosting.amount))
            .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
            .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
            .where(LedgerAccount.kind.in_(("platform_revenue", "platform_fees")),
                   LedgerAccount.currency == currency,
                   LedgerTransaction.created_at >= period.start,
                   LedgerTransaction.created_at < period.end)
            .group_by(posted_day, LedgerAccount.kind)
        ):
            if row := at(day):
                if kind == "platform_revenue":
                    row.revenue = int(amount or 0)
                else:
                    row.fees = int(amount or 0)

        failed_total, failed = failed_deliveries()
    return PlatformReport(period=period, currency=currency, days=list(figures.values()),
                          shops=shops, active_buyers=active_buyers, failed=failed,
                          failed_total=failed_total)


def failed_deliveries(limit: int = FAILED_SHOWN) -> tuple[int, list[FailedDelivery]]:
    """Orders of every shop whose delivery failed and wait for staff: (how many, the newest)."""
    with platform_scope():
        total = db.session.scalar(
            select(func.count()).select_from(Order).where(Order.status == "failed")) or 0
        rows = db.session.execute(
            select(Order, Tenant.name, Tenant.slug)
            .join(Tenant, Tenant.id == Order.tenant_id)
            .where(Order.status == "failed")
            .order_by(Order.paid_at.desc(), Order.id.desc()).limit(limit)
        ).all()
    return total, [
        FailedDelivery(order_id=order.id, number=order.number, tenant_id=order.tenant_id,
                       shop_name=name, shop_slug=slug, email=order.email,
                       amount_due=order.amount_due, currency=order.currency,
                       paid_at=order.paid_at, reason=order.staff_reason)
        for order, name, slug in rows
    ]


# -- wallet statements -------------------------------------------------------------------------

STATEMENT_COLUMNS = ("date", "transaction_id", "kind", "memo", "order_number", "amount",
                     "balance_after")


@dataclass(frozen=True)
class StatementLine:
    at: datetime
    transaction_id: int
    kind: str
    memo: str
    order_number: str
    amount: int
    balance_after: int


def statement_lines(account: LedgerAccount, period: Period) -> list[StatementLine]:
    """The account's movements within `period`, oldest first, each with the balance after it.

    The running balance is a window sum over all the account's postings in posting order (the
    order its balance moved in: each posting is written while the account's row is locked), so
    the first line of a range carries the balance brought forward.
    """
    running = (
        select(LedgerPosting.id, LedgerPosting.transaction_id, LedgerPosting.amount,
               func.sum(LedgerPosting.amount).over(order_by=LedgerPosting.id)
               .label("balance_after"))
        .where(LedgerPosting.account_id == account.id)
        .subquery()
    )
    order_join = (Order.id == LedgerTransaction.order_id)
    if account.tenant_id is not None:
        order_join = order_join & (Order.tenant_id == account.tenant_id)
    rows = db.session.execute(
        select(LedgerTransaction.created_at, LedgerTransaction.id, LedgerTransaction.kind,
               LedgerTransaction.memo, Order.number, running.c.amount, running.c.balance_after)
        .join(LedgerTransaction, LedgerTransaction.id == running.c.transaction_id)
        .outerjoin(Order, order_join)
        .where(LedgerTransaction.created_at >= period.start,
               LedgerTransaction.created_at < period.end)
        .order_by(running.c.id)
    ).all()
    return [StatementLine(at=_utc(at), transaction_id=tid, kind=kind, memo=memo or "",
                          order_number=number or "", amount=int(amount),
                          balance_after=int(balance))
            for at, tid, kind, memo, number, amount, balance in rows]


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive UTC; PostgreSQL an aware time in the session's zone.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def statement_csv(lines: Iterable[StatementLine], currency: str) -> str:
    """The statement as CSV for a spreadsheet: UTF-8 with a byte-order mark (so Excel and WPS
    read Chinese memos right), amounts as plain decimals, text cells guarded against formula
    injection."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(STATEMENT_COLUMNS)
    for line in lines:
        writer.writerow([
            line.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            line.transaction_id,
            csv_safe(line.kind),
            csv_safe(line.memo),
            csv_safe(line.order_number),
            decimal_string(line.amount, currency),
            decimal_string(line.balance_after, currency),
        ])
    return out.getvalue()
