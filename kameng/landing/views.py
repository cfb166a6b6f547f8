"""The platform's own pages on the bare platform domain: the landing page with the plans side by
side, self-service sign-up (with a live shop-address check), and e-mail confirmation links.

After signing up, the owner lands on a page of this site (a form post may only be redirected
within its own site under the Content-Security-Policy's form-action, and the new shop's cookies
are host-only anyway) that links to the live shop and its console, where they log in.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from sqlalchemy import func, select

from ..billing import service as billing
from ..errors import DomainError
from ..extensions import db, limiter
from ..tenants.hosts import public_url, subdomain_host
from ..tenants.models import Tenant
from ..tenants.scoping import platform_scope
from . import service as signup_service
from .forms import SignUpForm

bp = Blueprint("landing", __name__, template_folder="templates")

SIGNED_UP = "signed_up"  # the landing session remembers the shop just created, for /signup/done


def _signup_limit() -> str:
    return current_app.config["SIGNUP_LIMIT"]


def _created(response) -> bool:
    """Only sign-ups that created a shop count against the limit (not forms with mistakes)."""
    return response.status_code in (302, 303)


def _plans() -> list:
    with platform_scope():
        plans = billing.ensure_default_plans()
    db.session.commit()
    return plans


@bp.get("/")
def home():
    plans = _plans()
    shops = db.session.scalar(
        select(func.count()).select_from(Tenant).where(Tenant.status == "active")
    )
    return render_template(
        "landing/home.html", shops=shops, plans=plans,
        admin_url=public_url(current_app.config["ADMIN_HOST"]),
    )


def _form(plans) -> SignUpForm:
    form = SignUpForm()
    form.plan.choices = [(plan.code, plan.name) for plan in plans]
    if request.method == "GET":
        wanted = request.args.get("plan", "")
        form.plan.data = wanted if wanted in {p.code for p in plans} else (
            plans[0].code if plans else "")
    return form


def _signup_page(form: SignUpForm, plans, status: int = 200):
    return render_template("landing/signup.html", form=form, plans=plans,
                           domain=current_app.config["PLATFORM_DOMAIN"]), status


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(_signup_limit, methods=["POST"], deduct_when=_created, scope="signup")
def signup():
    plans = _plans()
    form = _form(plans)
    if not form.validate_on_submit():
        return _signup_page(form, plans, 422 if request.method == "POST" else 200)
    locale = str(get_locale() or "zh_CN")
    try:
        with platform_scope():
            tenant = signup_service.sign_up(signup_service.SignUp(
                shop_name=form.shop_name.data, slug=form.slug.data, email=form.email.data,
                password=form.password.data, plan_code=form.plan.data,
                locale="en" if locale.startswith("en") else "zh_CN"))
    except DomainError as error:
        db.session.rollback()
        if error.field == "name":
            error.field = "shop_name"
        form.fail(error)
        return _signup_page(form, plans, 422)
    db.session.commit()
    session[SIGNED_UP] = tenant.id
    return redirect(url_for(".signup_done"), 303)


@bp.get("/signup/check")
@limiter.limit("60 per minute")
def signup_check():
    """{available, message} for the shop address typed so far (the form's live check)."""
    check = signup_service.check_slug_availability(request.args.get("slug", "")[:64])
    response = jsonify(available=check.available, message=check.message)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/signup/done")
def signup_done():
    tenant_id = session.get(SIGNED_UP)
    tenant = db.session.get(Tenant, tenant_id) if isinstance(tenant_id, int) else None
    if tenant is None:
        return redirect(url_for(".signup"))
    with platform_scope():
        subscription = billing.subscription_of(tenant.id)
        owner = signup_service.owner_of(tenant)
    host = subdomain_host(tenant.slug)
    return render_template(
        "landing/signup_done.html", tenant=tenant, subscription=subscription, owner=owner,
        shop_url=public_url(host), console_url=public_url(host, "/admin/login"),
        billing_url=public_url(host, "/admin/billing"), mail_url=public_url(host, "/admin/mail"))


@bp.get("/signup/confirm/<token>")
def confirm_email(token: str):
    try:
        tenant, staff = signup_service.confirm_email(token[:512])
    except DomainError as error:
        db.session.rollback()
        return render_template("landing/confirmed.html", error=error.message), 400
    db.session.commit()
    return render_template(
        "landing/confirmed.html", tenant=tenant, staff=staff, error=None,
        console_url=public_url(subdomain_host(tenant.slug), "/admin/"),
        message=_("Thank you: %(email)s is confirmed.", email=staff.email))
