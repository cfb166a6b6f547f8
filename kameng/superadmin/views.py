"""The super-admin console on the admin host: log in, list, create, suspend and resume shops."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from ..errors import DomainError
from ..extensions import db
from ..forms import EmptyForm
from ..members.models import Customer
from ..merchant.models import StaffUser
from ..security.auth import login_rate_limited
from ..security.login import login_flow, logout_flow
from ..tenants import service as tenants
from ..tenants.models import Tenant
from .console import platform_blueprint
from .forms import TenantForm
from .service import authenticate_platform_user

bp = platform_blueprint("superadmin", __name__)


@bp.get("/")
def index():
    return redirect(url_for(".tenant_list"))


@bp.route("/login", methods=["GET", "POST"])
@login_rate_limited
def login():
    return login_flow(
        authenticate_platform_user,
        template="superadmin/login.html",
        success_url=url_for(".tenant_list"),
    )


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
    flash(f"Shop '{tenant.name}' is live at {tenants.shop_url(tenant)}.")
    return redirect(url_for(".tenant_detail", tenant_id=tenant.id))


def _tenant_or_404(tenant_id: int) -> Tenant:
    tenant = db.session.get(Tenant, tenant_id)
    if tenant is None:
        abort(404)
    return tenant


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
    )


def _change_status(tenant_id: int, change, done: str):
    tenant = _tenant_or_404(tenant_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        change(tenant)
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
    else:
        db.session.commit()
        current_app.logger.info("tenant %s %s by %s", tenant.slug, done, current_user.email)
        flash(f"Shop '{tenant.slug}' {done}.")
    if request.form.get("back") == "list":
        return redirect(url_for(".tenant_list"))
    return redirect(url_for(".tenant_detail", tenant_id=tenant.id))


@bp.post("/tenants/<int:tenant_id>/suspend")
def tenant_suspend(tenant_id: int):
    return _change_status(tenant_id, tenants.suspend_tenant, "suspended")


@bp.post("/tenants/<int:tenant_id>/resume")
def tenant_resume(tenant_id: int):
    return _change_status(tenant_id, tenants.resume_tenant, "resumed")
