"""Shop billing: plans and their limits, each shop's subscription and plan changes, invoices,
paying them from the shop's wallet, reminders, and suspension of shops that do not pay.

The rules (every function takes `now`, so tests control the clock):

- Periods. A subscription runs in periods of one calendar month from the day the shop signed
  up (a day 29–31 start follows the shorter months). A trial is the first period, `trial_days`
  long and free of charge.
- Monthly invoices, issued when a period ends (the `bill_shops` job rolls the subscription into
  the next period): the plan's monthly price for the NEW period (in advance), the order fees
  of the period that ended (in arrears), and an informational supply-cost line (amount 0: the
  supply cost was already taken from the wallet at delivery). A paid plan without a trial is
  billed for its first month at sign-up. One monthly invoice per shop and period: the unique
  (tenant_id, period_start, kind) makes the job idempotent.
- Order fees: per order paid in the window — a purchase, not refunded, not in test mode, with
  money due — `fee_bp` of its amount_due (rounded half up) plus `fee_fixed`. Orders whose
  payment went through the PLATFORM's payment accounts are not billed: the platform took
  PLATFORM_FEE_BP when it collected them (orders.service._post_payment). So fees are billed on
  orders paid through the shop's own gateways, from buyers' wallets, or marked paid by staff.
  The rate is the plan in effect during the window.
- Plan changes. An upgrade (a dearer plan, or one of the same price) takes effect at once: a
  "proration" invoice charges the price difference for the days left in the period,
  (new − old) × days left ÷ days in the period, rounded half up, and the order fees of the
  window it closes at the old plan's rate (so fees are never billed at a rate the shop did not
  have). A downgrade takes effect when the next period starts (`next_plan_id`). Changes during
  a trial are immediate and free.
- Payment. An open invoice is paid from the shop's wallet at the platform as soon as the
  wallet covers it — at issue, after every wallet top-up, and on every billing run — with one
  ledger transaction (wallet → platform_revenue for subscription and proration, → platform_fees
  for order fees) keyed by the invoice. Otherwise the shop tops its wallet up (topups.py).
- Dunning. Mail at issue, three days before the due date and on it (BILLING_DUE_DAYS after
  issue). BILLING_GRACE_DAYS after the due date of an unpaid invoice the shop is suspended with
  the reason "unpaid" (buyers get 503, the console stays open so it can pay); it is resumed as
  soon as no invoice is overdue beyond the grace period.
"""

from __future__ import annotations

import logging
import re
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import IntegrityError

from ..catalog.models import Product
from ..errors import Conflict, DomainError, NotFound
from ..extensions import db
from ..ledger import service as ledger
from ..ledger.models import LedgerPosting, LedgerTransaction
from ..mail.service import queue_mail, shop_recipients
from ..merchant.models import StaffUser
from ..money import BASIS_POINTS, MAX_AMOUNT, apply_percent, format_money, percent_string
from ..orders.models import Order
from ..orders.states import SALE_STATUSES
from ..payments.models import Payment
from ..rows import insert_or_ignore, row_by_id
from ..tenants.hosts import public_url, subdomain_host
from ..tenants.models import Tenant
from ..tenants.scoping import platform_scope, tenant_scope
from .models import Invoice, InvoiceLine, Plan, Subscription

log = logging.getLogger(__name__)

PLAN_CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,30}[a-z0-9]")
REMINDER_BEFORE = timedelta(days=3)
# Invoice line kinds whose money is the platform's subscription revenue; order fees go to
# platform_fees; the supply summary is informational (amount 0).
REVENUE_LINES = ("subscription", "proration")
FEE_LINES = ("order_fees",)
MAX_ROLLOVERS = 36  # periods caught up in one run (a job that did not run for years)


class PlanLimitReached(DomainError):
    """The shop's plan does not allow this (more products, more staff, a feature)."""

    status_code = 403


# -- time -----------------------------------------------------------------------------------------


def utc_now(now: datetime | None = None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored moment is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def start_of(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def add_month(day: date) -> date:
    """The same day next month, or that month's last day (Jan 31 -> Feb 28)."""
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return date(year, month, min(day.day, monthrange(year, month)[1]))


def _half_up(numerator: int, denominator: int) -> int:
    return int((Decimal(numerator) / Decimal(denominator)).quantize(Decimal(1), ROUND_HALF_UP))


def _config_days(name: str, default: int) -> timedelta:
    return timedelta(days=int(current_app.config.get(name, default)))


# -- plans ----------------------------------------------------------------------------------------


def _default_plans() -> list[dict]:
    markup = current_app.config["DEFAULT_MARKUP_BP"]
    return [
        {"code": "free", "name": "Free", "monthly_price": 0, "fee_bp": 500, "fee_fixed": 0,
         "max_own_products": 5, "max_staff": 1, "custom_domain": False, "api_access": False,
         "themes": ["default"], "trial_days": 0, "default_markup_bp": markup, "sort": 0},
        {"code": "basic", "name": "Basic", "monthly_price": 9900, "fee_bp": 200, "fee_fixed": 0,
         "max_own_products": 200, "max_staff": 5, "custom_domain": False, "api_access": False,
         "themes": [], "trial_days": 14, "default_markup_bp": markup, "sort": 1},
        {"code": "pro", "name": "Pro", "monthly_price": 29900, "fee_bp": 100, "fee_fixed": 0,
         "max_own_products": None, "max_staff": None, "custom_domain": True,
         "api_access": True, "themes": [], "trial_days": 14, "default_markup_bp": markup,
         "sort": 2},
    ]


def ensure_default_plans() -> list[Plan]:
    """Create Free, Basic and Pro when no plan exists yet (race-free); the active plans."""
    if db.session.scalar(select(func.count()).select_from(Plan)) == 0:
        for values in _default_plans():
            insert_or_ignore(Plan, {**values, "active": True}, ["code"])
        db.session.flush()
    return list_plans(active_only=True)


def list_plans(active_only: bool = False) -> list[Plan]:
    query = select(Plan).order_by(Plan.sort, Plan.monthly_price, Plan.id)
    if active_only:
        query = query.where(Plan.active.is_(True))
    return list(db.session.scalars(query))


def get_plan(plan_id) -> Plan:
    plan = row_by_id(Plan, plan_id)
    if plan is None:
        raise NotFound(_l("No such plan."))
    return plan


def plan_by_code(code: str, *, active_only: bool = True) -> Plan:
    plan = db.session.scalar(select(Plan).where(Plan.code == (code or "").strip().lower()))
    if plan is None or (active_only and not plan.active):
        raise DomainError(_l("Choose one of the plans offered."), field="plan")
    return plan


@dataclass
class PlanTerms:
    """What the super-admin sets on a plan (amounts in minor units, rates in basis points)."""

    code: str
    name: str
    monthly_price: int = 0
    fee_bp: int = 0
    fee_fixed: int = 0
    max_own_products: int | None = None
    max_staff: int | None = None
    custom_domain: bool = False
    api_access: bool = False
    themes: tuple[str, ...] = ()
    trial_days: int = 0
    default_markup_bp: int = 2000
    active: bool = True
    sort: int = 0


def _check_terms(terms: PlanTerms) -> None:
    from ..themes import available_themes

    if not PLAN_CODE.fullmatch(terms.code or ""):
        raise DomainError(_l("The code must be 2 to 32 lower-case letters, digits or hyphens."),
                          field="code")
    if not (terms.name or "").strip() or len(terms.name.strip()) > 80:
        raise DomainError(_l("The name must be 1 to 80 characters."), field="name")
    for field, value in (("monthly_price", terms.monthly_price), ("fee_fixed", terms.fee_fixed)):
        if value is None or not 0 <= value <= MAX_AMOUNT:
            raise DomainError(_l("The amount must be between 0 and %(most)s.",
                                 most=format_money(MAX_AMOUNT)), field=field)
    if not 0 <= terms.fee_bp <= BASIS_POINTS:
        raise DomainError(_l("The fee must be between 0 and 100%."), field="fee_percent")
    if not 0 <= terms.default_markup_bp <= 100 * BASIS_POINTS:
        raise DomainError(_l("The markup must be between 0 and 10000%."), field="markup_percent")
    if terms.max_own_products is not None and not 0 <= terms.max_own_products <= 1_000_000:
        raise DomainError(_l("The product limit must be between 0 and 1000000."),
                          field="max_own_products")
    if terms.max_staff is not None and not 1 <= terms.max_staff <= 10_000:
        raise DomainError(_l("The staff limit must be between 1 and 10000 (the owner counts)."),
                          field="max_staff")
    if not 0 <= terms.trial_days <= 365:
        raise DomainError(_l("The trial must be between 0 and 365 days."), field="trial_days")
    unknown = set(terms.themes) - set(available_themes())
    if unknown:
        raise DomainError(_l("Unknown theme: %(names)s.", names=", ".join(sorted(unknown))),
                          field="themes")


def save_plan(plan: Plan | None, terms: PlanTerms) -> Plan:
    """Create a plan (plan=None) or change one. A change applies to every shop on the plan
    from now on (prices from their next invoice; limits at once)."""
    terms.code = (terms.code or "").strip().lower()
    _check_terms(terms)
    clash = db.session.scalar(select(Plan).where(Plan.code == terms.code))
    if clash is not None and clash is not plan:
        raise Conflict(_l("Another plan has the code '%(code)s'.", code=terms.code), field="code")
    if plan is None:
        plan = Plan()
        db.session.add(plan)
    plan.code, plan.name = terms.code, terms.name.strip()
    plan.monthly_price, plan.fee_bp, plan.fee_fixed = (terms.monthly_price, terms.fee_bp,
                                                       terms.fee_fixed)
    plan.max_own_products, plan.max_staff = terms.max_own_products, terms.max_staff
    plan.custom_domain, plan.api_access = bool(terms.custom_domain), bool(terms.api_access)
    plan.themes = sorted(set(terms.themes))
    plan.trial_days, plan.default_markup_bp = terms.trial_days, terms.default_markup_bp
    plan.active, plan.sort = bool(terms.active), int(terms.sort or 0)
    db.session.flush()
    return plan


def delete_plan(plan: Plan) -> None:
    """Delete a plan no shop uses (a plan in use is retired by making it inactive)."""
    used = db.session.scalar(select(func.count()).select_from(Subscription).where(
        (Subscription.plan_id == plan.id) | (Subscription.next_plan_id == plan.id)))
    if used:
        raise Conflict(_l("%(count)d shop(s) use this plan: make it inactive instead.",
                          count=used))
    db.session.delete(plan)
    db.session.flush()


# -- subscriptions and limits ---------------------------------------------------------------------


def subscription_of(tenant_id: int) -> Subscription | None:
    return db.session.scalar(select(Subscription).where(Subscription.tenant_id == tenant_id))


def plan_of(tenant_id: int) -> Plan | None:
    """The shop's plan; None for a shop the platform runs without a subscription (no limits)."""
    subscription = subscription_of(tenant_id)
    return subscription.plan if subscription is not None else None


def own_product_count(tenant_id: int) -> int:
    with tenant_scope(tenant_id):
        return db.session.scalar(select(func.count()).select_from(Product).where(
            Product.supply_product_id.is_(None)))


def staff_count(tenant_id: int) -> int:
    with tenant_scope(tenant_id):
        return db.session.scalar(select(func.count()).select_from(StaffUser).where(
            StaffUser.active.is_(True)))


def check_product_limit(tenant: Tenant) -> None:
    """Refuse one more own product beyond the plan's limit (supply listings do not count)."""
    plan = plan_of(tenant.id)
    if plan is None or plan.max_own_products is None:
        return
    if own_product_count(tenant.id) >= plan.max_own_products:
        raise PlanLimitReached(_l(
            "Your %(plan)s plan allows %(limit)d own products. Upgrade your plan in Billing to "
            "add more.", plan=plan.name, limit=plan.max_own_products))


def check_staff_limit(tenant: Tenant) -> None:
    """Refuse one more staff account beyond the plan's limit (the owner counts). For the staff
    console to call before it invites or creates a staff member."""
    plan = plan_of(tenant.id)
    if plan is None or plan.max_staff is None:
        return
    if staff_count(tenant.id) >= plan.max_staff:
        raise PlanLimitReached(_l(
            "Your %(plan)s plan allows %(limit)d staff accounts. Upgrade your plan in Billing to "
            "add more.", plan=plan.name, limit=plan.max_staff))


def theme_allowed(tenant: Tenant, theme: str) -> bool:
    plan = plan_of(tenant.id)
    return plan is None or not plan.themes or theme in plan.themes


def custom_domain_allowed(tenant: Tenant) -> bool:
    plan = plan_of(tenant.id)
    return plan is None or plan.custom_domain


def api_access_allowed(tenant: Tenant) -> bool:
    plan = plan_of(tenant.id)
    return plan is None or plan.api_access


def start_subscription(tenant: Tenant, plan: Plan, *, now: datetime | None = None
                       ) -> Subscription:
    """Put a shop on `plan` from today: a trial when the plan has one, else the first month,
    billed at once when the plan costs money."""
    now = utc_now(now)
    if subscription_of(tenant.id) is not None:
        raise Conflict(_l("This shop already has a subscription."))
    today = now.date()
    trialing = plan.trial_days > 0
    end = today + timedelta(days=plan.trial_days) if trialing else add_month(today)
    subscription = Subscription(
        tenant_id=tenant.id, plan_id=plan.id, status="trialing" if trialing else "active",
        trial_ends_at=start_of(end) if trialing else None, period_start=today, period_end=end)
    db.session.add(subscription)
    db.session.flush()
    if not trialing and plan.monthly_price:
        invoice = _create_invoice(tenant, "monthly", today, end,
                                  [_subscription_line(plan, today, end)], now)
        if invoice is not None:
            _after_issue(tenant, invoice, now)
    return subscription


def _subscription_line(plan: Plan, start: date, end: date) -> InvoiceLine:
    return InvoiceLine(
        kind="subscription", quantity=1, amount=plan.monthly_price,
        description=_("%(plan)s plan, %(start)s – %(end)s", plan=plan.name, start=start,
                      end=end - timedelta(days=1))[:200])


@dataclass
class PlanChange:
    """What a plan change did: "upgraded" (at once, maybe invoiced), "switched" (at once, same
    price or in a trial), "scheduled" (a downgrade at `effective`), "kept" (a scheduled
    downgrade cancelled), "unchanged" or "started" (a first subscription)."""

    outcome: str
    effective: date | None = None
    invoice: Invoice | None = None


def change_plan(tenant: Tenant, plan: Plan, *, now: datetime | None = None) -> PlanChange:
    """Move the shop to `plan`: upgrades at once and prorated, downgrades next period."""
    now = utc_now(now)
    today = now.date()
    if not plan.active:
        raise DomainError(_l("This plan is no longer offered."), field="plan")
    subscription = _locked_subscription(tenant.id)
    if subscription is None:
        start_subscription(tenant, plan, now=now)
        return PlanChange("started", today)
    _roll_over(subscription, tenant, now)
    current = subscription.plan
    if plan.id == current.id:
        if subscription.next_plan_id is not None:
            subscription.next_plan_id = None
            db.session.flush()
            return PlanChange("kept")
        return PlanChange("unchanged")
    if subscription.status == "trialing":
        subscription.plan_id, subscription.next_plan_id = plan.id, None
        db.session.flush()
        db.session.expire(subscription, ["plan"])
        return PlanChange("switched", today)
    if plan.monthly_price < current.monthly_price:
        subscription.next_plan_id = plan.id
        db.session.flush()
        return PlanChange("scheduled", subscription.period_end)
    if _overdue_since(tenant.id, now) is not None:
        raise Conflict(_l("Pay your overdue invoices before changing to a dearer plan."))
    # An upgrade (or a plan of the same price): at once, prorated for the days left.
    window_start = _fee_window_start(tenant.id, subscription.period_start, today)
    lines = []
    difference = plan.monthly_price - current.monthly_price
    days_left = (subscription.period_end - today).days
    days = (subscription.period_end - subscription.period_start).days
    if difference > 0 and days_left > 0 and days > 0:
        lines.append(InvoiceLine(
            kind="proration", quantity=days_left,
            amount=_half_up(difference * days_left, days),
            description=_("Change from %(old)s to %(new)s: %(left)d of %(days)d days × "
                          "(%(new_price)s − %(old_price)s)", old=current.name, new=plan.name,
                          left=days_left, days=days,
                          new_price=format_money(plan.monthly_price, tenant.currency),
                          old_price=format_money(current.monthly_price, tenant.currency))[:200]))
    lines += _fee_lines(tenant, current, window_start, today)
    subscription.plan_id, subscription.next_plan_id = plan.id, None
    db.session.flush()
    db.session.expire(subscription, ["plan"])
    invoice = None
    if lines:
        invoice = _create_invoice(tenant, _free_proration_kind(tenant.id, today), today,
                                  subscription.period_end, lines, now)
        if invoice is not None:
            _after_issue(tenant, invoice, now)
    return PlanChange("upgraded" if difference > 0 else "switched", today, invoice)


def _locked_subscription(tenant_id: int) -> Subscription | None:
    """The shop's subscription, row-locked on PostgreSQL so two billing runs (or a run and a
    plan change) work on one shop one after the other."""
    return db.session.scalar(
        select(Subscription).where(Subscription.tenant_id == tenant_id).with_for_update())


# -- invoices -------------------------------------------------------------------------------------


def _number(tenant_id: int, period_start: date, kind: str) -> str:
    """Readable and unique because (shop, period_start, kind) is: K12-20261101-M."""
    if kind == "monthly":
        code = "M"
    elif kind.startswith("proration"):
        code = "P" + kind.removeprefix("proration").lstrip("-")
    else:
        code = kind[:6].upper()
    return f"K{tenant_id}-{period_start:%Y%m%d}-{code}"


def _free_proration_kind(tenant_id: int, day: date) -> str:
    """"proration", or "proration-2", "-3"… for a further change on the same day (the unique
    (tenant_id, period_start, kind) allows one invoice per kind and day)."""
    taken = set(db.session.scalars(select(Invoice.kind).where(
        Invoice.tenant_id == tenant_id, Invoice.period_start == day,
        Invoice.kind.like("proration%"))))
    kind, n = "proration", 1
    while kind in taken:
        n += 1
        kind = f"proration-{n}"
    return kind


def _create_invoice(tenant: Tenant, kind: str, start: date, end: date,
                    lines: list[InvoiceLine], now: datetime) -> Invoice | None:
    """The shop's invoice of `kind` for the period starting `start` (the existing one when it
    was issued already); None when there is nothing to put on it."""
    query = select(Invoice).where(Invoice.tenant_id == tenant.id, Invoice.period_start == start,
                                  Invoice.kind == kind)
    existing = db.session.scalar(query)
    if existing is not None or not lines:
        return existing
    total = sum(line.amount for line in lines)
    invoice = Invoice(tenant_id=tenant.id, number=_number(tenant.id, start, kind), kind=kind,
                      period_start=start, period_end=end, status="open", total=total,
                      currency=tenant.currency, due_at=now + _config_days("BILLING_DUE_DAYS", 7),
                      paid_via="", lines=lines)
    if total == 0:  # a statement only (e.g. the supply summary): nothing to pay
        invoice.status, invoice.paid_at, invoice.paid_via = "paid", now, "nothing due"
    try:
        with db.session.begin_nested():
            db.session.add(invoice)
            db.session.flush()
    except IntegrityError:  # issued at the same moment by another run
        return db.session.scalar(query)
    return invoice


def _fee_window_start(tenant_id: int, period_start: date, before: date) -> date:
    """Where the period's unbilled fee window begins: the period start, or the day of the
    latest plan change in the period (its proration invoice billed the fees before it)."""
    latest = db.session.scalar(select(func.max(Invoice.period_start)).where(
        Invoice.tenant_id == tenant_id, Invoice.kind.like("proration%"),
        Invoice.period_start >= period_start, Invoice.period_start <= before))
    return max(period_start, latest) if latest else period_start


def billable_orders(tenant_id: int, start: date, end: date) -> list[int]:
    """amount_due of every order whose fee the platform bills for [start, end) (see the rules
    at the top: paid purchases, not refunded, not test mode, not collected by the platform)."""
    collected_by_platform = exists().where(
        Payment.order_id == Order.id, Payment.owner == "platform",
        Payment.status.in_(("succeeded", "refunded")))
    with tenant_scope(tenant_id):
        return list(db.session.scalars(select(Order.amount_due).where(
            Order.kind == "purchase", Order.status.in_(SALE_STATUSES),
            Order.test_mode.is_(False), Order.amount_due > 0,
            Order.paid_at >= start_of(start), Order.paid_at < start_of(end),
            ~collected_by_platform)))


def supply_cost(tenant_id: int, currency: str, start: date, end: date) -> tuple[int, int]:
    """(deliveries, amount) of supply cost taken from the shop's wallet in [start, end)."""
    wallet = ledger.shop_wallet(tenant_id, currency)
    count, amount = db.session.execute(
        select(func.count(func.distinct(LedgerTransaction.id)),
               func.coalesce(func.sum(LedgerPosting.amount), 0))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(LedgerPosting.account_id == wallet.id, LedgerTransaction.kind == "supply_cost",
               LedgerTransaction.tenant_id == tenant_id,
               LedgerTransaction.created_at >= start_of(start),
               LedgerTransaction.created_at < start_of(end))).one()
    return int(count or 0), -int(amount or 0)


def _fee_lines(tenant: Tenant, plan: Plan, start: date, end: date) -> list[InvoiceLine]:
    """The order fees of [start, end) at `plan`'s rate, and the supply-cost summary."""
    if start >= end:
        return []
    lines = []
    last = end - timedelta(days=1)
    amounts = billable_orders(tenant.id, start, end)
    fees = sum(apply_percent(amount, plan.fee_bp) + plan.fee_fixed for amount in amounts)
    if amounts and fees:
        rate = f"{percent_string(plan.fee_bp)}%"
        if plan.fee_fixed:
            rate += " + " + format_money(plan.fee_fixed, tenant.currency)
        lines.append(InvoiceLine(
            kind="order_fees", quantity=len(amounts), amount=fees,
            description=_("Order fees %(start)s – %(end)s: %(count)d orders paid through your "
                          "own payment accounts or wallets (%(total)s) at %(rate)s each",
                          start=start, end=last, count=len(amounts), rate=rate,
                          total=format_money(sum(amounts), tenant.currency))[:200]))
    deliveries, cost = supply_cost(tenant.id, tenant.currency, start, end)
    if deliveries:
        lines.append(InvoiceLine(
            kind="supply_summary", quantity=deliveries, amount=0,
            description=_("Supply cost %(start)s – %(end)s: %(cost)s for %(count)d deliveries, "
                          "already paid from your wallet (for information)", start=start,
                          end=last, cost=format_money(cost, tenant.currency),
                          count=deliveries)[:200]))
    return lines


def _roll_over(subscription: Subscription, tenant: Tenant, now: datetime) -> list[Invoice]:
    """Move the subscription into the period containing `now`, issuing each new period's
    monthly invoice; a scheduled downgrade and the end of a trial take effect here."""
    issued = []
    today = now.date()
    for _step in range(MAX_ROLLOVERS):
        if today < subscription.period_end:
            break
        old_start, old_end = subscription.period_start, subscription.period_end
        fee_plan = subscription.plan
        window_start = _fee_window_start(tenant.id, old_start, old_end)
        moved = db.session.execute(
            update(Subscription)
            .where(Subscription.id == subscription.id, Subscription.period_start == old_start)
            .values(period_start=old_end, period_end=add_month(old_end))
            .execution_options(synchronize_session=False)).rowcount
        db.session.refresh(subscription)
        if not moved:  # another run moved it first
            continue
        if subscription.next_plan_id is not None:
            subscription.plan_id, subscription.next_plan_id = subscription.next_plan_id, None
        if subscription.status == "trialing":
            subscription.status = "active"
        db.session.flush()
        db.session.expire(subscription, ["plan"])
        start, end = subscription.period_start, subscription.period_end
        lines = []
        if subscription.plan.monthly_price:
            lines.append(_subscription_line(subscription.plan, start, end))
        lines += _fee_lines(tenant, fee_plan, window_start, old_end)
        invoice = _create_invoice(tenant, "monthly", start, end, lines, now)
        if invoice is not None:
            issued.append(invoice)
            _after_issue(tenant, invoice, now)
    return issued


def open_invoices(tenant_id: int) -> list[Invoice]:
    """The shop's unpaid invoices, oldest due first (the order they are paid in)."""
    return list(db.session.scalars(
        select(Invoice).where(Invoice.tenant_id == tenant_id, Invoice.status == "open")
        .order_by(Invoice.due_at, Invoice.id)))


def _mark(invoice: Invoice, status: str, now: datetime, via: str = "") -> bool:
    """Compare-and-set an open invoice to paid or void; False when it was not open."""
    values = {"status": status}
    if status == "paid":
        values.update(paid_at=now, paid_via=via)
    changed = db.session.execute(
        update(Invoice).where(Invoice.id == invoice.id, Invoice.status == "open").values(**values)
        .execution_options(synchronize_session=False)).rowcount
    db.session.refresh(invoice)
    return changed == 1


def pay_from_wallet(invoice: Invoice, *, now: datetime | None = None) -> bool:
    """Pay an open invoice from the shop's wallet if the wallet covers it (idempotent)."""
    now = utc_now(now)
    if invoice.status != "open":
        return False
    wallet = ledger.shop_wallet(invoice.tenant_id, invoice.currency)
    db.session.refresh(wallet)
    if wallet.available < invoice.total:
        return False
    revenue = sum(line.amount for line in invoice.lines if line.kind in REVENUE_LINES)
    fees = invoice.total - revenue
    try:
        with db.session.begin_nested():
            if not _mark(invoice, "paid", now, "wallet"):
                return False
            if invoice.total:
                ledger.post(f"invoice:{invoice.id}:paid", "invoice_payment", [
                    (wallet, -invoice.total),
                    (ledger.get_account("platform_revenue", currency=invoice.currency), revenue),
                    (ledger.get_account("platform_fees", currency=invoice.currency), fees),
                ], tenant_id=invoice.tenant_id, memo=f"invoice {invoice.number}",
                    details={"invoice": invoice.number})
    except ledger.InsufficientFunds:  # spent meanwhile (a supply hold): stays open
        db.session.refresh(invoice)
        return False
    return True


def auto_pay(tenant: Tenant, *, now: datetime | None = None) -> list[Invoice]:
    """Pay every open invoice the wallet covers, oldest due first."""
    now = utc_now(now)
    paid = []
    for invoice in open_invoices(tenant.id):
        if pay_from_wallet(invoice, now=now):
            paid.append(invoice)
            _tell(tenant, "billing.paid", _("Invoice %(number)s paid from your wallet",
                                            number=invoice.number),
                  _("Invoice %(number)s (%(total)s) was paid from your wallet at the platform.",
                    number=invoice.number, total=format_money(invoice.total, invoice.currency)),
                  invoice)
    return paid


def shortfall(invoice: Invoice) -> int:
    """What the wallet lacks to pay this invoice (and the open ones due before it, which are
    paid first)."""
    if invoice.status != "open":
        return 0
    before = [i for i in open_invoices(invoice.tenant_id)
              if (aware(i.due_at), i.id) <= (aware(invoice.due_at), invoice.id)]
    wallet = ledger.shop_wallet(invoice.tenant_id, invoice.currency)
    db.session.refresh(wallet)
    return max(0, sum(i.total for i in before) - max(0, wallet.available))


def mark_paid_by_hand(invoice: Invoice, *, now: datetime | None = None) -> None:
    """The platform received the money outside Kameng (e.g. a bank transfer): nothing is
    posted to the ledger."""
    now = utc_now(now)
    if not _mark(invoice, "paid", now, "manual"):
        raise Conflict(_l("Only an open invoice can be marked paid."))
    settle_shop(invoice.tenant_id, now=now)


def void_invoice(invoice: Invoice, *, now: datetime | None = None) -> None:
    """Cancel an open invoice: the shop owes nothing for it."""
    now = utc_now(now)
    if not _mark(invoice, "void", now):
        raise Conflict(_l("Only an open invoice can be voided."))
    settle_shop(invoice.tenant_id, now=now)


def get_invoice(invoice_id, tenant_id: int | None = None) -> Invoice:
    """An invoice (of `tenant_id` when given: another shop's invoice is simply not found)."""
    invoice = row_by_id(Invoice, invoice_id)
    if invoice is None or (tenant_id is not None and invoice.tenant_id != tenant_id):
        raise NotFound(_l("No such invoice."))
    return invoice


def invoices_of(tenant_id: int, limit: int = 200) -> list[Invoice]:
    return list(db.session.scalars(
        select(Invoice).where(Invoice.tenant_id == tenant_id)
        .order_by(Invoice.period_start.desc(), Invoice.id.desc()).limit(limit)))


def list_invoices(status: str = "", limit: int = 500) -> list[tuple[Invoice, Tenant]]:
    query = (select(Invoice, Tenant).join(Tenant, Tenant.id == Invoice.tenant_id)
             .order_by(Invoice.id.desc()).limit(limit))
    if status in ("open", "paid", "void"):
        query = query.where(Invoice.status == status)
    return [(invoice, tenant) for invoice, tenant in db.session.execute(query).all()]


@dataclass
class SubscriptionRow:
    tenant: Tenant
    subscription: Subscription
    open_total: int


def list_subscriptions() -> list[SubscriptionRow]:
    open_totals = dict(db.session.execute(
        select(Invoice.tenant_id, func.sum(Invoice.total)).where(Invoice.status == "open")
        .group_by(Invoice.tenant_id)).all())
    rows = db.session.execute(
        select(Subscription, Tenant).join(Tenant, Tenant.id == Subscription.tenant_id)
        .order_by(Tenant.slug)).all()
    return [SubscriptionRow(tenant, subscription, int(open_totals.get(tenant.id) or 0))
            for subscription, tenant in rows]


BILLING_STATUS_LABELS = {  # subscriptions, then invoices
    "trialing": _l("Trial"),
    "active": _l("Active"),
    "past_due": _l("Past due"),
    "suspended": _l("Suspended"),
    "cancelled": _l("Cancelled"),
    "open": _l("Open"),
    "paid": _l("Paid"),
    "void": _l("Void"),
}


def billing_status_label(status: str) -> str:
    """A subscription's or an invoice's status named for people, in the page's language."""
    return str(BILLING_STATUS_LABELS.get(status) or status.replace("_", " "))


def invoice_kind_label(kind: str) -> str:
    if kind == "monthly":
        return _("Monthly")
    if kind.startswith("proration"):
        return _("Plan change")
    return kind


# -- dunning: reminders, suspension, resumption ---------------------------------------------------


def billing_url(tenant: Tenant, invoice: Invoice | None = None) -> str:
    path = f"/admin/billing/invoices/{invoice.id}" if invoice is not None else "/admin/billing"
    return public_url(subdomain_host(tenant.slug), path)


def _tell(tenant: Tenant, kind: str, subject: str, text: str, invoice: Invoice | None = None
          ) -> None:
    """Mail the shop's owners (queued in the caller's transaction)."""
    link = billing_url(tenant, invoice)
    body = f"{text}\n\n{_('Billing')}: {link}\n"
    for to in shop_recipients(tenant.id):
        queue_mail(tenant_id=tenant.id, to=to, kind=kind, subject=f"[{tenant.name}] {subject}",
                   body=body)


def _after_issue(tenant: Tenant, invoice: Invoice, now: datetime) -> None:
    """A new invoice: paid from the wallet when it covers it, else announced by mail."""
    if invoice.status != "open":
        return
    if pay_from_wallet(invoice, now=now):
        _tell(tenant, "billing.paid", _("Invoice %(number)s paid from your wallet",
                                        number=invoice.number),
              _("Invoice %(number)s (%(total)s) was issued and paid from your wallet at the "
                "platform.", number=invoice.number,
                total=format_money(invoice.total, invoice.currency)), invoice)
        return
    invoice.reminded_at = now
    _tell(tenant, "billing.invoice", _("Invoice %(number)s: %(total)s due %(due)s",
                                       number=invoice.number,
                                       total=format_money(invoice.total, invoice.currency),
                                       due=aware(invoice.due_at).strftime("%Y-%m-%d")),
          _("A new invoice of %(total)s is due on %(due)s. Your wallet at the platform does not "
            "cover it: top it up on the billing page and the invoice is paid at once.",
            total=format_money(invoice.total, invoice.currency),
            due=aware(invoice.due_at).strftime("%Y-%m-%d")), invoice)


def _send_reminders(tenant: Tenant, now: datetime) -> int:
    """Three days before the due date and on it (at issue was mailed by _after_issue)."""
    sent = 0
    for invoice in open_invoices(tenant.id):
        due = aware(invoice.due_at)
        last = aware(invoice.reminded_at)
        for mark, soon in ((due, False), (due - REMINDER_BEFORE, True)):
            if now >= mark and (last is None or last < mark):
                invoice.reminded_at = now
                if soon:
                    subject = _("Reminder: invoice %(number)s is due on %(due)s",
                                number=invoice.number, due=due.strftime("%Y-%m-%d"))
                else:
                    subject = _("Invoice %(number)s is due today", number=invoice.number)
                grace_end = due + _config_days("BILLING_GRACE_DAYS", 7)
                _tell(tenant, "billing.reminder", subject, _(
                    "Invoice %(number)s of %(total)s is due on %(due)s and not paid yet. Top up "
                    "your wallet at the platform to pay it. If it is still unpaid on %(grace)s "
                    "your shop will be closed to buyers until it is paid.",
                    number=invoice.number, total=format_money(invoice.total, invoice.currency),
                    due=due.strftime("%Y-%m-%d"), grace=grace_end.strftime("%Y-%m-%d")), invoice)
                sent += 1
                break
    return sent


def _overdue_since(tenant_id: int, now: datetime) -> datetime | None:
    """The earliest due date of the shop's open invoices that are past due."""
    due = db.session.scalar(select(func.min(Invoice.due_at)).where(
        Invoice.tenant_id == tenant_id, Invoice.status == "open", Invoice.due_at <= now))
    return aware(due)


def settle_shop(tenant_id: int, *, now: datetime | None = None) -> str | None:
    """Bring the subscription's status and the shop's suspension in line with its invoices:
    "suspended" or "resumed" when that changed, else None."""
    now = utc_now(now)
    tenant = db.session.get(Tenant, tenant_id)
    subscription = subscription_of(tenant_id)
    if tenant is None:
        return None
    overdue = _overdue_since(tenant_id, now)
    grace_until = overdue + _config_days("BILLING_GRACE_DAYS", 7) if overdue else None
    beyond_grace = grace_until is not None and now >= grace_until
    if subscription is not None:
        subscription.grace_until = grace_until
        if beyond_grace:
            subscription.status = "suspended"
        elif overdue is not None:
            subscription.status = "past_due"
        elif subscription.status in ("past_due", "suspended"):
            trial_end = aware(subscription.trial_ends_at)
            subscription.status = "trialing" if trial_end and now < trial_end else "active"
    changed = None
    if beyond_grace and tenant.status == "active":
        tenant.status, tenant.suspension_reason = "suspended", "unpaid"
        changed = "suspended"
        _tell(tenant, "billing.suspended", _("Your shop is closed until its invoices are paid"),
              _("An invoice is unpaid %(days)d days after its due date, so your shop is closed to "
                "buyers. Your console stays open: top up your wallet on the billing page and the "
                "shop reopens as soon as the overdue invoices are paid.",
                days=_config_days("BILLING_GRACE_DAYS", 7).days))
    elif not beyond_grace and tenant.status == "suspended" and \
            tenant.suspension_reason == "unpaid":
        tenant.status, tenant.suspension_reason = "active", ""
        changed = "resumed"
        _tell(tenant, "billing.resumed", _("Your shop is open again"),
              _("Thank you: the overdue invoices are paid and your shop is open to buyers again."))
    db.session.flush()
    return changed


# -- the billing run --------------------------------------------------------------------------


@dataclass
class BillingRun:
    """What one run did, for the job's result and the console's message."""

    shops: int = 0
    invoices: int = 0
    paid: int = 0
    reminders: int = 0
    suspended: int = 0
    resumed: int = 0
    errors: int = 0

    def summary(self) -> str:
        return _("%(shops)d shops billed: %(invoices)d invoices issued, %(paid)d paid from "
                 "wallets, %(reminders)d reminders, %(suspended)d suspended, %(resumed)d "
                 "resumed, %(errors)d errors.", shops=self.shops, invoices=self.invoices,
                 paid=self.paid, reminders=self.reminders, suspended=self.suspended,
                 resumed=self.resumed, errors=self.errors)


def bill_shop(tenant_id: int, *, now: datetime | None = None,
              report: BillingRun | None = None) -> BillingRun:
    """Everything billing owes one shop at `now` (in the caller's transaction): roll its
    periods over and issue their invoices, pay what the wallet covers, remind, suspend or
    resume. Idempotent: a second run at the same moment changes nothing."""
    now = utc_now(now)
    report = report or BillingRun()
    with platform_scope():
        subscription = _locked_subscription(tenant_id)
        tenant = db.session.get(Tenant, tenant_id)
        if subscription is None or tenant is None:
            return report
        report.shops += 1
        with force_locale(tenant.locale or "zh_CN"):  # the shop's mails in its language
            report.invoices += len(_roll_over(subscription, tenant, now))
            report.paid += len(auto_pay(tenant, now=now))
            report.reminders += _send_reminders(tenant, now)
            changed = settle_shop(tenant_id, now=now)
        if changed == "suspended":
            report.suspended += 1
        elif changed == "resumed":
            report.resumed += 1
    return report


def run_billing(*, now: datetime | None = None) -> BillingRun:
    """Bill every shop with a subscription, committing shop by shop (one shop's error does not
    stop the others). The `bill_shops` job runs this every hour; the console has a button."""
    now = utc_now(now)
    report = BillingRun()
    with platform_scope():
        tenant_ids = list(db.session.scalars(
            select(Subscription.tenant_id).order_by(Subscription.tenant_id)))
    db.session.commit()
    for tenant_id in tenant_ids:
        try:
            bill_shop(tenant_id, now=now, report=report)
            db.session.commit()
        except Exception:
            db.session.rollback()
            report.errors += 1
            log.exception("billing shop %s failed", tenant_id)
    return report
