"""Billing in the shop console (/admin/billing on the shop host): the plan and its period, plan
changes, the wallet at the platform and its top-ups, invoices (printable, downloadable), and
the owner's e-mail confirmation.

Only the owner manages billing (the "billing.manage" permission). A shop suspended for unpaid
invoices still reaches this page, so it can pay.

Registered by create_app() (kameng/__init__.py, _register_blueprints) as `shop_billing`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from ..audit.service import record
from ..errors import DomainError
from ..extensions import db, limiter
from ..forms import EmptyForm, committing
from ..ledger import service as ledger
from ..merchant.console import console_blueprint, guard_blueprint, staff_actor
from ..payments.service import receive_notification
from ..tenants.hosts import absolute_url_for, current_tenant
from ..tenants.models import Tenant
from . import service as billing
from . import topups
from .forms import PayInvoiceForm, PlanChoiceForm, TopUpForm
from .views import invoice_file

bp = console_blueprint("shop_billing", __name__)
guard_blueprint(bp, read="billing.manage", write="billing.manage",
                confirm_resend="dashboard.view", markup_reviewed="catalog.edit")

STATEMENT_LINES = 30


def _shop() -> Tenant:
    return db.session.get(Tenant, current_tenant().id)


def _plan_form(subscription, *, bind: bool = False) -> PlanChoiceForm:
    if bind:
        form = PlanChoiceForm(prefix="plan")
    else:
        current = subscription.next_plan_id or subscription.plan_id if subscription else None
        form = PlanChoiceForm(prefix="plan", formdata=None,
                              data={"plan": str(current) if current else ""})
    form.plan.choices = [(str(p.id), p.name) for p in billing.list_plans(active_only=True)]
    return form


def _topup_form(shop: Tenant, *, bind: bool = False) -> TopUpForm:
    form = TopUpForm(currency=shop.currency, prefix="topup",
                     **({} if bind else {"formdata": None}))
    form.method.choices = topups.topup_methods()
    return form


def _page(*, plan_form=None, topup_form=None, status: int = 200):
    shop = _shop()
    subscription = billing.subscription_of(shop.id)
    wallet = ledger.shop_wallet(shop.id, shop.currency)
    invoices = billing.invoices_of(shop.id)
    return render_template(
        "shop_billing/billing.html", shop=shop, subscription=subscription,
        plans=billing.list_plans(active_only=True), invoices=invoices,
        open_invoices=[i for i in invoices if i.status == "open"],
        wallet=wallet, statement=ledger.statement(wallet, limit=STATEMENT_LINES),
        plan_form=plan_form or _plan_form(subscription),
        topup_form=topup_form or _topup_form(shop), pay_form=_pay_form(),
        products=billing.own_product_count(shop.id), staff=billing.staff_count(shop.id),
        kind_label=billing.invoice_kind_label, shortfall=billing.shortfall,
    ), status


def _pay_form(*, bind: bool = False) -> PayInvoiceForm:
    form = PayInvoiceForm(**({} if bind else {"formdata": None}))
    form.method.choices = topups.topup_methods()
    return form


@bp.get("/billing")
def page():
    return _page()


@bp.post("/billing/plan")
def change_plan():
    shop = _shop()
    form = _plan_form(billing.subscription_of(shop.id), bind=True)
    if not form.validate_on_submit():
        return _page(plan_form=form, status=422)
    with committing(form) as attempt:
        plan = billing.get_plan(form.plan.data)
        change = billing.change_plan(shop, plan)
        record(staff_actor(), "subscription.plan_changed", tenant_id=shop.id, target=plan.code,
               outcome=change.outcome)
    if attempt.failed:
        return _page(plan_form=form, status=422)
    messages = {
        "upgraded": _("You are on the %(plan)s plan from now on.", plan=plan.name),
        "switched": _("You are on the %(plan)s plan from now on.", plan=plan.name),
        "started": _("You are on the %(plan)s plan from now on.", plan=plan.name),
        "scheduled": _("You move to the %(plan)s plan on %(day)s, when your next period "
                       "starts.", plan=plan.name, day=change.effective),
        "kept": _("The plan change is cancelled: you stay on the %(plan)s plan.",
                  plan=plan.name),
        "unchanged": _("You are already on the %(plan)s plan.", plan=plan.name),
    }
    flash(messages[change.outcome])
    if change.invoice is not None and change.invoice.status == "open":
        flash(_("Invoice %(number)s for the change is open: pay it below.",
                number=change.invoice.number))
    return redirect(url_for(".page"))


def _start(shop: Tenant, amount: int, method: str):
    """Take the owner to the platform's gateway to pay `amount` into the wallet."""
    return_url = absolute_url_for(".page")
    topup, start = topups.start_topup(
        shop, amount, method, email=current_user.email, ip=request.remote_addr or "",
        return_url=return_url,
        sandbox_page=lambda reference: url_for(".sandbox_page", reference=reference))
    record(staff_actor(), "wallet.topup_started", tenant_id=shop.id, target=topup.reference,
           amount=amount, method=method)
    db.session.commit()
    if start.kind == "redirect" and start.url:
        return redirect(start.url)
    from ..orders.views import qr_svg

    return render_template("shop_billing/gateway.html", topup=topup, start=start,
                           qr=qr_svg(start.qr_data) if start.kind == "qr" else "")


@bp.post("/billing/topup")
def topup():
    shop = _shop()
    form = _topup_form(shop, bind=True)
    if not form.validate_on_submit():
        return _page(topup_form=form, status=422)
    try:
        return _start(shop, form.amount.amount, form.method.data)
    except DomainError as error:
        db.session.rollback()
        form.fail(error)
        return _page(topup_form=form, status=422)


@bp.post("/billing/invoices/<int:invoice_id>/pay")
def pay(invoice_id: int):
    """Pay from the wallet when it covers the invoice; otherwise top up what it lacks (the
    top-up pays the invoice as soon as the gateway confirms it)."""
    shop = _shop()
    invoice = billing.get_invoice(invoice_id, tenant_id=shop.id)
    form = _pay_form(bind=True)
    if not form.validate_on_submit():
        abort(400)
    paid = billing.auto_pay(shop)
    if paid:
        billing.settle_shop(shop.id)
        db.session.commit()
        flash(_("Paid from your wallet: %(numbers)s.",
                numbers=", ".join(i.number for i in paid)))
        return redirect(url_for(".page"))
    missing = billing.shortfall(invoice)
    if invoice.status != "open" or missing <= 0:
        db.session.rollback()
        flash(_("Nothing to pay on invoice %(number)s.", number=invoice.number))
        return redirect(url_for(".page"))
    try:
        return _start(shop, max(missing, topups.MIN_TOPUP), form.method.data or "")
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for(".page"))


@bp.get("/billing/invoices/<int:invoice_id>")
def invoice(invoice_id: int):
    shop = _shop()
    invoice = billing.get_invoice(invoice_id, tenant_id=shop.id)
    if request.args.get("download"):
        return invoice_file(invoice, shop)
    return render_template("shop_billing/invoice.html", invoice=invoice, tenant=shop,
                           kind_label=billing.invoice_kind_label, pay_form=_pay_form(),
                           shortfall=billing.shortfall(invoice))


# -- the platform's sandbox, for top-ups (development and tests) --------------------------------


def _sandbox_reference(reference: str) -> topups.TopUp:
    topup = topups.parse_reference(reference)
    if not topups.sandbox_allowed() or topup is None or topup.tenant_id != current_tenant().id:
        abort(404)
    return topup


@bp.get("/billing/sandbox/<reference>")
def sandbox_page(reference: str):
    topup = _sandbox_reference(reference)
    return render_template("shop_billing/sandbox.html", topup=topup, action=EmptyForm())


@bp.post("/billing/sandbox/<reference>")
def sandbox_submit(reference: str):
    """The owner pressed pay or fail: the platform's sandbox signs the notification a gateway
    would send and hands it to the platform's notify path."""
    _sandbox_reference(reference)
    if not EmptyForm().validate_on_submit():
        abort(400)
    shop = _shop()
    body, headers = topups.sandbox_notification(shop, reference, request.form.get("outcome", ""))
    db.session.commit()
    outcome = receive_notification(None, "sandbox", owner="platform", body=body,
                                   headers=headers, form={})
    if outcome.status_code != 200:
        flash(_("The sandbox payment was refused: %(reason)s", reason=outcome.body.strip()),
              "error")
    elif request.form.get("outcome") == "pay":
        flash(_("Payment received: your wallet is topped up."))
    else:
        flash(_("The payment failed; nothing was charged."), "error")
    return redirect(url_for(".page"))


# -- the owner's e-mail address and the first steps ----------------------------------------------


@bp.post("/billing/confirm-email")
@limiter.limit("3 per hour", methods=["POST"], key_func=lambda: (
    f"confirm-mail:{request.host}:{getattr(current_user, 'id', None)}"))
def confirm_resend():
    from ..landing.service import send_confirmation

    if not EmptyForm().validate_on_submit():
        abort(400)
    if current_user.email_confirmed_at is None:
        send_confirmation(_shop(), current_user)
        db.session.commit()
        flash(_("We sent a new confirmation link to %(email)s.", email=current_user.email))
    return redirect(_back())


@bp.post("/billing/first-steps/markup")
def markup_reviewed():
    """The owner looked at the default markup and keeps it: that first step is done."""
    from ..merchant.onboarding import mark_markup_reviewed

    if not EmptyForm().validate_on_submit():
        abort(400)
    mark_markup_reviewed(_shop())
    db.session.commit()
    return redirect(url_for("merchant.dashboard"))


def _back() -> str:
    target = request.referrer or ""
    path = urlsplit(target).path if urlsplit(target).netloc == request.host else ""
    return path if path.startswith("/admin") else url_for("merchant.dashboard")
