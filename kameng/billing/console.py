"""Billing in the super-admin console (/billing on the admin host): plans, every shop's
subscription and invoices, marking an invoice paid by hand or voiding it, and running billing
now instead of waiting for the hourly job.

Registered by create_app() (kameng/__init__.py, _register_blueprints) as `platform_billing`.
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..audit.service import record
from ..extensions import db
from ..forms import EmptyForm, committing
from ..ledger import service as ledger
from ..money import decimal_string, percent_string
from ..superadmin.console import platform_actor, platform_blueprint
from ..tenants.hosts import public_url, subdomain_host
from ..tenants.models import Tenant
from ..themes import available_themes
from . import service as billing
from .forms import PlanChoiceForm, PlanForm
from .models import Plan
from .views import invoice_file

bp = platform_blueprint("platform_billing", __name__)


def _confirm() -> None:
    if not EmptyForm().validate_on_submit():
        abort(400)


def _currency() -> str:
    return current_app.config["CURRENCY"]


# -- overview and the billing run ---------------------------------------------------------------


@bp.get("/")
def overview():
    return render_template(
        "platform_billing/overview.html", rows=billing.list_subscriptions(),
        plans=billing.list_plans(), open_invoices=billing.list_invoices("open", limit=50),
        action=EmptyForm(formdata=None), kind_label=billing.invoice_kind_label)


@bp.post("/run")
def run_now():
    _confirm()
    report = billing.run_billing()
    record(platform_actor(), "billing.run", tenant_id=None, invoices=report.invoices,
           paid=report.paid, suspended=report.suspended, resumed=report.resumed)
    db.session.commit()
    flash(report.summary(), "error" if report.errors else "message")
    return redirect(url_for(".overview"))


# -- plans ----------------------------------------------------------------------------------------


def _plan_form(plan: Plan | None = None, *, bind: bool = True) -> PlanForm:
    data = {}
    if plan is not None:
        data = {
            "code": plan.code, "name": plan.name,
            "monthly_price": decimal_string(plan.monthly_price, _currency()),
            "fee_percent": percent_string(plan.fee_bp),
            "fee_fixed": decimal_string(plan.fee_fixed, _currency()),
            "max_own_products": plan.max_own_products, "max_staff": plan.max_staff,
            "custom_domain": plan.custom_domain, "api_access": plan.api_access,
            "themes": list(plan.themes or []), "trial_days": plan.trial_days,
            "markup_percent": percent_string(plan.default_markup_bp), "active": plan.active,
            "sort": plan.sort,
        }
    elif not bind:
        data = {"monthly_price": "0.00", "fee_percent": "0", "trial_days": 0,
                "markup_percent": percent_string(current_app.config["DEFAULT_MARKUP_BP"]),
                "active": True, "sort": 0}
    kwargs = {"formdata": None, "data": data} if not bind else {}
    form = PlanForm(currency=_currency(), **kwargs)
    form.themes.choices = [(name, theme.title) for name, theme in available_themes().items()]
    return form


@bp.get("/plans")
def plan_list():
    return _plans_page(_plan_form(bind=False))


def _plans_page(form: PlanForm, status: int = 200):
    return render_template("platform_billing/plans.html", plans=billing.list_plans(),
                           form=form, action=EmptyForm(formdata=None)), status


@bp.post("/plans")
def plan_create():
    form = _plan_form()
    if not form.validate_on_submit():
        return _plans_page(form, 422)
    with committing(form) as attempt:
        plan = billing.save_plan(None, form.terms())
        record(platform_actor(), "plan.created", tenant_id=None, target=plan.code)
    if attempt.failed:
        return _plans_page(form, 422)
    flash(_("Plan '%(name)s' created.", name=plan.name))
    return redirect(url_for(".plan_list"))


@bp.route("/plans/<int:plan_id>", methods=["GET", "POST"])
def plan_edit(plan_id: int):
    plan = billing.get_plan(plan_id)
    if request.method == "GET":
        form = _plan_form(plan, bind=False)
        return render_template("platform_billing/plan.html", plan=plan, form=form,
                               action=EmptyForm(formdata=None))
    form = _plan_form()
    if form.validate_on_submit():
        with committing(form) as attempt:
            billing.save_plan(plan, form.terms())
            record(platform_actor(), "plan.changed", tenant_id=None, target=plan.code)
        if not attempt.failed:
            flash(_("Plan '%(name)s' saved.", name=plan.name))
            return redirect(url_for(".plan_list"))
    return render_template("platform_billing/plan.html", plan=plan, form=form,
                           action=EmptyForm(formdata=None)), 422


@bp.post("/plans/<int:plan_id>/delete")
def plan_delete(plan_id: int):
    _confirm()
    plan = billing.get_plan(plan_id)
    name = plan.name
    with committing() as attempt:
        billing.delete_plan(plan)
        record(platform_actor(), "plan.deleted", tenant_id=None, target=name)
    if attempt.failed:
        return redirect(url_for(".plan_edit", plan_id=plan_id))
    flash(_("Plan '%(name)s' deleted.", name=name))
    return redirect(url_for(".plan_list"))


# -- shops' subscriptions -------------------------------------------------------------------------


def _tenant_or_404(tenant_id: int) -> Tenant:
    tenant = db.session.get(Tenant, tenant_id)
    if tenant is None:
        abort(404)
    return tenant


def _plan_choices() -> list[tuple[str, str]]:
    return [(str(p.id), p.name) for p in billing.list_plans(active_only=True)]


@bp.get("/shops/<int:tenant_id>")
def shop(tenant_id: int, form: PlanChoiceForm | None = None, status: int = 200):
    tenant = _tenant_or_404(tenant_id)
    subscription = billing.subscription_of(tenant.id)
    if form is None:
        form = PlanChoiceForm(formdata=None, data={
            "plan": str(subscription.plan_id) if subscription else ""})
        form.plan.choices = _plan_choices()
    wallet = ledger.shop_wallet(tenant.id, tenant.currency)
    return render_template(
        "platform_billing/shop.html", tenant=tenant, subscription=subscription,
        invoices=billing.invoices_of(tenant.id), wallet=wallet, form=form,
        statement=ledger.statement(wallet, limit=20), kind_label=billing.invoice_kind_label,
        products=billing.own_product_count(tenant.id), staff=billing.staff_count(tenant.id),
        shop_url=public_url(subdomain_host(tenant.slug))), status


@bp.post("/shops/<int:tenant_id>/plan")
def shop_plan(tenant_id: int):
    """Put a shop on a plan: a first subscription, or a change by the usual rules."""
    tenant = _tenant_or_404(tenant_id)
    form = PlanChoiceForm()
    form.plan.choices = _plan_choices()
    if not form.validate_on_submit():
        return shop(tenant_id, form=form, status=422)
    with committing(form) as attempt:
        change = billing.change_plan(tenant, billing.get_plan(form.plan.data))
        record(platform_actor(), "subscription.plan_changed", tenant_id=tenant.id,
               target=tenant.slug, plan=form.plan.data, outcome=change.outcome)
    if attempt.failed:
        return shop(tenant_id, form=form, status=422)
    flash(_("Plan change: %(outcome)s.", outcome=change.outcome))
    return redirect(url_for(".shop", tenant_id=tenant.id))


# -- invoices -------------------------------------------------------------------------------------


@bp.get("/invoices")
def invoice_list():
    status = request.args.get("status", "")
    return render_template("platform_billing/invoices.html",
                           rows=billing.list_invoices(status), status=status,
                           kind_label=billing.invoice_kind_label)


@bp.get("/invoices/<int:invoice_id>")
def invoice(invoice_id: int):
    invoice = billing.get_invoice(invoice_id)
    tenant = _tenant_or_404(invoice.tenant_id)
    context = {"invoice": invoice, "tenant": tenant, "kind_label": billing.invoice_kind_label}
    if request.args.get("download"):
        return invoice_file(invoice, tenant)
    return render_template("platform_billing/invoice.html", action=EmptyForm(formdata=None),
                           **context)


def _change_invoice(invoice_id: int, change, action: str, done: str):
    _confirm()
    invoice = billing.get_invoice(invoice_id)
    with committing() as attempt:
        change(invoice)
        record(platform_actor(), action, tenant_id=invoice.tenant_id, target=invoice.number,
               total=invoice.total)
    if not attempt.failed:
        flash(done % {"number": invoice.number})
    return redirect(url_for(".invoice", invoice_id=invoice_id))


@bp.post("/invoices/<int:invoice_id>/mark-paid")
def invoice_mark_paid(invoice_id: int):
    return _change_invoice(invoice_id, billing.mark_paid_by_hand, "invoice.marked_paid",
                           _("Invoice %(number)s marked paid."))


@bp.post("/invoices/<int:invoice_id>/void")
def invoice_void(invoice_id: int):
    return _change_invoice(invoice_id, billing.void_invoice, "invoice.voided",
                           _("Invoice %(number)s voided."))
