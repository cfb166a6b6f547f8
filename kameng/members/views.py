"""Buyer accounts on the shop host: register, log in, log out, password reset by mail, and the
account page (profile, level, wallet and points, recent orders, password change)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from ..appearance.service import effective_theme
from ..extensions import db, limiter
from ..extensions import login as login_manager
from ..forms import EmptyForm, RegisterForm, committing
from ..ledger import service as ledger
from ..mail.service import queue_mail
from ..orders.service import orders_of_customer
from ..security.auth import login_rate_limited, normalize_email, start_session
from ..security.login import login_flow, logout_flow
from ..storefront.views import render_shop
from ..tenants.hosts import absolute_url_for, current_tenant
from ..themes import render_themed
from . import service as members
from .forms import ChangePasswordForm, ProfileForm, ResetPasswordForm, ResetRequestForm
from .service import authenticate_customer, register_customer

bp = Blueprint("members", __name__)
login_manager.blueprint_login_views["members"] = "members.login"

RECENT_ORDERS = 5


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
        with committing(form) as attempt:
            customer = register_customer(
                current_tenant().id,
                email=form.email.data,
                password=form.password.data,
                name=form.name.data or "",
            )
        if not attempt.failed:
            start_session(customer)
            return redirect(url_for(".account"))
    if form.errors or form.form_errors:
        status = 422
    return render_shop("account/register.html", form=form), status


@bp.post("/logout")
def logout():
    return logout_flow(url_for("storefront.home"))


# -- password reset by mail ------------------------------------------------------------------


def _reset_ip_key() -> str:
    return f"reset-ip:{current_tenant().id}:{request.remote_addr}"


def _reset_email_key() -> str:
    return f"reset-email:{current_tenant().id}:{normalize_email(request.form.get('email', ''))}"


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit("5 per minute", key_func=_reset_ip_key, methods=["POST"], scope="reset-ip")
@limiter.limit("5 per hour", key_func=_reset_email_key, methods=["POST"], scope="reset-email")
def forgot_password():
    """Ask for a reset link. The answer is the same whether or not the e-mail has an account."""
    form = ResetRequestForm()
    if form.validate_on_submit():
        shop = current_tenant()
        found = members.password_reset_token(shop.id, form.email.data)
        if found is not None:
            customer, token = found
            _mail_reset_link(shop, customer, absolute_url_for(".reset_password", token=token))
        db.session.commit()
        return render_shop("account/forgot.html", form=ResetRequestForm(formdata=None),
                           sent=True)
    status = 422 if request.method == "POST" else 200
    return render_shop("account/forgot.html", form=form, sent=False), status


def _mail_reset_link(shop, customer, link: str) -> None:
    theme = effective_theme(shop.theme)
    context = {"shop": shop, "customer": customer, "link": link,
               "minutes": members.RESET_MAX_AGE // 60}
    subject = render_themed(theme, "mail/password_reset_subject.txt", **context)
    body = render_themed(theme, "mail/password_reset.txt", **context)
    queue_mail(tenant_id=shop.id, to=customer.email, kind="account.password_reset",
               subject=" ".join(subject.split()), body=body)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    """Choose a new password through the mailed link (which works once, for an hour)."""
    shop = current_tenant()
    if members.customer_for_reset(shop.id, token) is None:
        return render_shop("account/reset.html", form=None, invalid=True), 400
    form = ResetPasswordForm()
    status = 200
    if form.validate_on_submit():
        with committing(form) as attempt:
            members.reset_password(shop.id, token, form.password.data)
        if not attempt.failed:
            flash(_("Your password was changed. Log in with the new one."))
            return redirect(url_for(".login"))
    if request.method == "POST":
        status = 422
    # The page carries the token in its address: no Referer to other sites.
    return (render_shop("account/reset.html", form=form, invalid=False), status,
            {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


# -- the account page ------------------------------------------------------------------------


@bp.get("/account")
def account():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return _account_page()


def _account_page(profile_form=None, password_form=None, status: int = 200):
    shop = current_tenant()
    wallet = ledger.buyer_wallet(current_user, shop.currency)
    points = ledger.buyer_points(current_user)
    db.session.commit()  # the wallet and points accounts may have just been created
    return render_shop(
        "account/home.html",
        progress=members.level_progress(current_user),
        wallet=wallet, points=points,
        recent_orders=orders_of_customer(current_user, RECENT_ORDERS),
        profile_form=profile_form or ProfileForm(formdata=None, data={"name": current_user.name}),
        password_form=password_form or ChangePasswordForm(formdata=None),
        logout_form=EmptyForm(),
    ), status


@bp.post("/account/profile")
def update_profile():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    form = ProfileForm()
    if not form.validate_on_submit():
        return _account_page(profile_form=form, status=422)
    members.update_profile(current_user, name=form.name.data or "")
    db.session.commit()
    flash(_("Your profile was saved."))
    return redirect(url_for(".account"))


def _password_change_key() -> str:
    return f"password-change:{current_tenant().id}:{request.remote_addr}"


@bp.post("/account/password")
@limiter.limit("5 per minute", key_func=_password_change_key, scope="password-change")
def change_password():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    form = ChangePasswordForm()
    if form.validate_on_submit():
        customer = current_user._get_current_object()
        with committing(form) as attempt:
            members.change_password(customer, current=form.current.data, new=form.password.data)
        if not attempt.failed:
            start_session(customer)  # the old session id named the old session token
            flash(_("Your password was changed. Other devices were logged out."))
            return redirect(url_for(".account"))
    return _account_page(password_form=form, status=422)
