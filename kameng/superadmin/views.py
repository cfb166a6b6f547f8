"""The super-admin console on the admin host: log in (with the two-factor code step), shops
(list, search, create, detail, suspend and resume, read-only support sessions, staff two-factor
resets), the super-admins themselves and one's own two-factor login."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import func, select
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from ..audit.service import record
from ..errors import DomainError, NotFound
from ..extensions import db
from ..forms import EmptyForm, Form, committing
from ..members.models import Customer
from ..merchant.models import StaffUser
from ..security import impersonation as support_links
from ..security import totp
from ..security.auth import login_rate_limited
from ..security.login import (
    ConsoleLogin,
    code_step_rate_limited,
    login_flow,
    logout_flow,
    two_factor_flow,
)
from ..security.two_factor_pages import TwoFactorPages, add_two_factor_pages
from ..tenants import service as tenants
from ..tenants.hosts import public_url, subdomain_host
from ..tenants.models import Tenant
from . import service as platform_users
from .console import platform_actor, platform_blueprint
from .forms import TenantForm
from .models import PlatformUser
from .service import authenticate_platform_user

bp = platform_blueprint("superadmin", __name__)


@bp.get("/")
def index():
    return redirect(url_for("platform_reports.overview"))


def _console_login() -> ConsoleLogin:
    return ConsoleLogin(PlatformUser, None, url_for(".login_code"))


@bp.route("/login", methods=["GET", "POST"])
@login_rate_limited
def login():
    return login_flow(
        authenticate_platform_user,
        template="superadmin/login.html",
        success_url=url_for(".tenant_list"),
        console=_console_login(),
    )


@bp.route("/login/code", methods=["GET", "POST"])
@code_step_rate_limited
def login_code():
    return two_factor_flow(_console_login(), template="superadmin/login_code.html",
                           login_url=url_for(".login"))


@bp.post("/logout")
def logout():
    return logout_flow(url_for(".login"))


def _count_by_tenant(model) -> dict[int, int]:
    rows = db.session.execute(select(model.tenant_id, func.count()).group_by(model.tenant_id))
    return dict(rows.all())


def _tenant_page(form: TenantForm, status: int = 200):
    search = request.args.get("q", "").strip()[:100]
    rows = tenants.list_tenants(search)
    counts = _count_by_tenant(StaffUser)
    buyers = _count_by_tenant(Customer)
    return render_template(
        "superadmin/tenants.html",
        tenants=rows,
        staff_counts=counts,
        buyer_counts=buyers,
        form=form,
        action=EmptyForm(),
        search=search,
        shop_url=tenants.shop_url,
    ), status


@bp.get("/tenants")
def tenant_list():
    return _tenant_page(TenantForm())


@bp.post("/tenants")
def tenant_create():
    form = TenantForm()
    if not form.validate_on_submit():
        return _tenant_page(form, 422)
    try:
        tenant = tenants.create_tenant(
            slug=form.slug.data,
            name=form.name.data,
            owner_email=form.owner_email.data,
            owner_password=form.owner_password.data,
        )
    except DomainError as error:
        db.session.rollback()
        if error.field == "email":
            error.field = "owner_email"
        elif error.field == "password":
            error.field = "owner_password"
        form.fail(error)
        return _tenant_page(form, 422)
    db.session.commit()
    flash(_("Shop '%(name)s' is live at %(tenant)s.",
            name=tenant.name, tenant=tenants.shop_url(tenant)))
    return redirect(url_for(".tenant_detail", tenant_id=tenant.id))


def _tenant_or_404(tenant_id: int) -> Tenant:
    tenant = db.session.get(Tenant, tenant_id)
    if tenant is None:
        abort(404)
    return tenant


def _billing_of(tenant: Tenant) -> dict:
    """Plan, wallet and recent invoices of a shop (read straight from the billing tables)."""
    from ..billing.models import Invoice, Subscription
    from ..ledger import service as ledger

    subscription = db.session.scalar(
        select(Subscription).where(Subscription.tenant_id == tenant.id))
    invoices = db.session.scalars(
        select(Invoice).where(Invoice.tenant_id == tenant.id)
        .order_by(Invoice.period_start.desc(), Invoice.id.desc()).limit(12)).all()
    wallet = ledger.shop_wallet(tenant.id, tenant.currency)
    return {"subscription": subscription, "invoices": invoices, "wallet": wallet}


@bp.get("/tenants/<int:tenant_id>")
def tenant_detail(tenant_id: int):
    tenant = _tenant_or_404(tenant_id)
    staff = db.session.scalars(
        select(StaffUser).where(StaffUser.tenant_id == tenant.id).order_by(StaffUser.id)
    ).all()
    buyers = db.session.scalar(
        select(func.count()).select_from(Customer).where(Customer.tenant_id == tenant.id)
    )
    return render_template(
        "superadmin/tenant.html",
        tenant=tenant,
        staff=staff,
        buyers=buyers,
        action=EmptyForm(),
        shop_url=tenants.shop_url(tenant),
        console_url=tenants.shop_url(tenant, "/admin/"),
        **_billing_of(tenant),
    )


def _change_status(tenant_id: int, change, done: str, action: str):
    tenant = _tenant_or_404(tenant_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    with committing() as attempt:
        change(tenant)
        record(platform_actor(), action, tenant_id=tenant.id, target=tenant.slug)
    if not attempt.failed:
        current_app.logger.info("tenant %s %s by %s", tenant.slug, done, current_user.email)
        if done == "suspended":
            flash(_("Shop '%(slug)s' suspended.", slug=tenant.slug))
        else:
            flash(_("Shop '%(slug)s' resumed.", slug=tenant.slug))
    if request.form.get("back") == "list":
        return redirect(url_for(".tenant_list"))
    return redirect(url_for(".tenant_detail", tenant_id=tenant.id))


@bp.post("/tenants/<int:tenant_id>/suspend")
def tenant_suspend(tenant_id: int):
    return _change_status(tenant_id, tenants.suspend_tenant, "suspended", "tenant.suspend")


@bp.post("/tenants/<int:tenant_id>/resume")
def tenant_resume(tenant_id: int):
    return _change_status(tenant_id, tenants.resume_tenant, "resumed", "tenant.resume")


def _confirm_button() -> None:
    if not EmptyForm().validate_on_submit():
        abort(400)


@bp.post("/tenants/<int:tenant_id>/impersonate")
def tenant_impersonate(tenant_id: int):
    """Open the shop's console as read-only support: a one-time link valid for 60 seconds."""
    tenant = _tenant_or_404(tenant_id)
    _confirm_button()
    token = support_links.issue(tenant.id, current_user.id)
    record(platform_actor(), "tenant.impersonate", tenant_id=tenant.id, target=tenant.slug)
    db.session.commit()
    return redirect(public_url(subdomain_host(tenant.slug), f"/admin/impersonate/{token}"))


@bp.post("/tenants/<int:tenant_id>/staff/<int:staff_id>/reset-2fa")
def tenant_staff_reset_2fa(tenant_id: int, staff_id: int):
    """Turn off a shop staff member's two-factor login (they lost their phone)."""
    tenant = _tenant_or_404(tenant_id)
    staff = db.session.scalar(select(StaffUser).where(StaffUser.id == staff_id,
                                                      StaffUser.tenant_id == tenant.id))
    if staff is None:
        abort(404)
    _confirm_button()
    totp.reset(staff)
    record(platform_actor(), "auth.2fa_reset", tenant_id=tenant.id, target=staff.email)
    db.session.commit()
    flash(_("Two-factor login of %(email)s is off; they log in with their password and may "
            "set it up again.", email=staff.email))
    return redirect(url_for(".tenant_detail", tenant_id=tenant.id))


# -- super-admin accounts --------------------------------------------------------------------


class PlatformUserForm(Form):
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Length(max=254)])
    name = StringField(_l("Name (optional)"), validators=[Length(max=120)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=256)])


def _accounts_page(form: PlatformUserForm | None = None, status: int = 200):
    return render_template(
        "superadmin/accounts.html", users=platform_users.list_platform_users(),
        form=form or PlatformUserForm(formdata=None), action=EmptyForm(formdata=None),
    ), status


@bp.get("/staff")
def account_list():
    return _accounts_page()


@bp.post("/staff")
def account_create():
    form = PlatformUserForm()
    if not form.validate_on_submit():
        return _accounts_page(form, 422)
    with committing(form) as attempt:
        user = platform_users.create_platform_user(
            email=form.email.data, password=form.password.data, name=form.name.data or "")
        record(platform_actor(), "platform_user.created", tenant_id=None, target=user.email)
    if attempt.failed:
        return _accounts_page(form, 422)
    flash(_("%(email)s is a super-admin now.", email=user.email))
    return redirect(url_for(".account_list"))


def _account_change(user_id: int, change, done: str):
    try:
        user = platform_users.get_platform_user(user_id)
    except NotFound:
        abort(404)
    _confirm_button()
    with committing() as attempt:
        change(user)
    if not attempt.failed:
        flash(done % {"email": user.email})
    return redirect(url_for(".account_list"))


@bp.post("/staff/<int:user_id>/disable")
def account_disable(user_id: int):
    return _account_change(
        user_id, lambda u: platform_users.set_platform_user_active(u, False,
                                                                   actor=platform_actor()),
        _("%(email)s is disabled and logged out."))


@bp.post("/staff/<int:user_id>/enable")
def account_enable(user_id: int):
    return _account_change(
        user_id, lambda u: platform_users.set_platform_user_active(u, True,
                                                                   actor=platform_actor()),
        _("%(email)s may log in again."))


def _reset_platform_2fa(user: PlatformUser) -> None:
    totp.reset(user)
    record(platform_actor(), "auth.2fa_reset", tenant_id=None, target=user.email)


@bp.post("/staff/<int:user_id>/reset-2fa")
def account_reset_2fa(user_id: int):
    return _account_change(user_id, _reset_platform_2fa,
                           _("Two-factor login of %(email)s is off."))


# -- one's own two-factor login ----------------------------------------------------------------


add_two_factor_pages(bp, TwoFactorPages(
    template="superadmin/security.html",
    issuer=lambda: "Kameng platform",
    audit=lambda action: record(platform_actor(), action, tenant_id=None,
                                target=current_user.email),
))
