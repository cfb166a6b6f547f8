"""A shop's staff console at /admin on the shop host: log in (with the two-factor code step),
log out, read-only support sessions, the dashboard, buyers and staff."""

from __future__ import annotations

import time

from flask import redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ..audit.service import Actor, record
from ..errors import Conflict
from ..extensions import db
from ..forms import EmptyForm
from ..members import service as members
from ..members.models import Customer
from ..reports.console import dashboard_summary
from ..security import impersonation as support_links
from ..security.auth import end_session, login_rate_limited, start_session
from ..security.login import (
    ConsoleLogin,
    code_step_rate_limited,
    login_flow,
    logout_flow,
    two_factor_flow,
)
from ..tenants.hosts import current_tenant, public_url
from . import staff_console
from .console import (
    IMPERSONATION_KEY,
    can,
    console_blueprint,
    impersonation,
    require_permission,
)
from .models import StaffUser
from .onboarding import first_steps
from .service import authenticate_staff, list_staff, unread_notices

bp = console_blueprint("merchant", __name__)


def _console_login() -> ConsoleLogin:
    return ConsoleLogin(StaffUser, current_tenant().id, url_for(".login_code"))


@bp.route("/login", methods=["GET", "POST"])
@login_rate_limited
def login():
    return login_flow(
        authenticate_staff,
        template="merchant/login.html",
        success_url=url_for(".dashboard"),
        prefix="/admin",
        console=_console_login(),
    )


@bp.route("/login/code", methods=["GET", "POST"])
@code_step_rate_limited
def login_code():
    return two_factor_flow(_console_login(), template="merchant/login_code.html",
                           login_url=url_for(".login"))


@bp.post("/logout")
def logout():
    return logout_flow(url_for(".login"))


# -- read-only support sessions of the platform ----------------------------------------------


@bp.get("/impersonate/<token>")
def impersonate(token: str):
    """A super-admin's one-time link: a read-only session as the shop's owner (audited)."""
    shop = current_tenant()
    admin = support_links.redeem(token, shop.id)
    owner = db.session.scalar(select(StaffUser).where(StaffUser.role == "owner",
                                                      StaffUser.active).order_by(StaffUser.id))
    if owner is None:
        raise Conflict(_l("This shop has no active owner to look through."))
    record(Actor(kind="platform", id=admin.id, email=admin.email, ip=request.remote_addr or ""),
           "tenant.impersonate_start", tenant_id=shop.id, target=shop.slug, as_staff=owner.email)
    db.session.commit()
    start_session(owner)
    session[IMPERSONATION_KEY] = {"admin_id": admin.id, "admin_email": admin.email,
                                  "until": int(time.time()) + support_links.SESSION_SECONDS}
    return redirect(url_for(".dashboard"))


@bp.post("/impersonate/end")
def impersonate_end():
    support = impersonation()
    end_session()
    if support is None:
        return redirect(url_for(".login"))
    from flask import current_app

    return redirect(public_url(current_app.config["ADMIN_HOST"],
                               f"/tenants/{current_tenant().id}"))


# -- pages -------------------------------------------------------------------------------------


@bp.get("/")
def dashboard():
    buyers = db.session.scalar(select(func.count()).select_from(Customer))
    notices = unread_notices()
    return render_template(
        "merchant/dashboard.html", buyers=buyers, staff_count=len(list_staff()),
        notices=notices, action=EmptyForm(),
        sales_summary=dashboard_summary(current_tenant()),
        first_steps=[step for step in first_steps(current_tenant()) if can(step.permission)],
    )


@bp.get("/customers")
@require_permission("buyers.view")
def customer_list():
    search = request.args.get("q", "").strip()[:100]
    return render_template(
        "merchant/customers.html", customers=members.list_customers(search), search=search
    )


@bp.get("/customers/<int:customer_id>")
@require_permission("buyers.view")
def customer_detail(customer_id: int):
    return render_template("merchant/customer.html", customer=members.get_customer(customer_id))


@bp.get("/staff")
@require_permission("staff.view")
def staff_list():
    return staff_console.staff_page()


@bp.get("/staff/<int:staff_id>")
@require_permission("staff.view")
def staff_detail(staff_id: int):
    return staff_console.staff_member_page(staff_id)
