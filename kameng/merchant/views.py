"""A shop's staff console at /admin on the shop host (placeholder dashboard for now)."""

from __future__ import annotations

from flask import render_template, request, url_for
from sqlalchemy import func, select

from ..extensions import db
from ..forms import EmptyForm
from ..members import service as members
from ..members.models import Customer
from ..security.auth import login_rate_limited
from ..security.login import login_flow, logout_flow
from .console import console_blueprint
from .service import authenticate_staff, get_staff, list_staff, unread_notices

bp = console_blueprint("merchant", __name__)


@bp.route("/login", methods=["GET", "POST"])
@login_rate_limited
def login():
    return login_flow(
        authenticate_staff,
        template="merchant/login.html",
        success_url=url_for(".dashboard"),
        prefix="/admin",
    )


@bp.post("/logout")
def logout():
    return logout_flow(url_for(".login"))


@bp.get("/")
def dashboard():
    buyers = db.session.scalar(select(func.count()).select_from(Customer))
    notices = unread_notices()
    return render_template(
        "merchant/dashboard.html", buyers=buyers, staff_count=len(list_staff()),
        notices=notices, action=EmptyForm(),
    )


@bp.get("/customers")
def customer_list():
    search = request.args.get("q", "").strip()[:100]
    return render_template(
        "merchant/customers.html", customers=members.list_customers(search), search=search
    )


@bp.get("/customers/<int:customer_id>")
def customer_detail(customer_id: int):
    return render_template("merchant/customer.html", customer=members.get_customer(customer_id))


@bp.get("/staff")
def staff_list():
    return render_template("merchant/staff.html", staff=list_staff())


@bp.get("/staff/<int:staff_id>")
def staff_detail(staff_id: int):
    return render_template("merchant/staff_member.html", member=get_staff(staff_id))
