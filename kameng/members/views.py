"""Buyer accounts on the shop host: register, log in, log out, account page."""

from __future__ import annotations

from flask import Blueprint, redirect, url_for
from flask_login import current_user

from ..errors import DomainError
from ..extensions import db
from ..extensions import login as login_manager
from ..forms import EmptyForm, RegisterForm
from ..security.auth import login_rate_limited, start_session
from ..security.login import login_flow, logout_flow
from ..storefront.views import render_shop
from ..tenants.hosts import current_tenant
from .service import authenticate_customer, register_customer

bp = Blueprint("members", __name__)
login_manager.blueprint_login_views["members"] = "members.login"


@bp.route("/login", methods=["GET", "POST"])
@login_rate_limited
def login():
    return login_flow(
        authenticate_customer,
        template="account/login.html",
        success_url=url_for(".account"),
        render=render_shop,
    )


@bp.route("/register", methods=["GET", "POST"])
def register():
    form = RegisterForm()
    status = 200
    if form.validate_on_submit():
        try:
            customer = register_customer(
                current_tenant().id,
                email=form.email.data,
                password=form.password.data,
                name=form.name.data or "",
            )
        except DomainError as error:
            db.session.rollback()
            form.fail(error)
        else:
            db.session.commit()
            start_session(customer)
            return redirect(url_for(".account"))
    if form.errors or form.form_errors:
        status = 422
    return render_shop("account/register.html", form=form), status


@bp.post("/logout")
def logout():
    return logout_flow(url_for("storefront.home"))


@bp.get("/account")
def account():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return render_shop("account/home.html", logout_form=EmptyForm())
