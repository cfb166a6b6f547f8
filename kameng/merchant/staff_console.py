"""The shop console's staff pages: invite by mail, accept an invitation (a public page),
change roles, disable and remove staff, and each person's own two-factor login settings."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from ..forms import EmptyForm, Form, committing
from ..security.auth import start_session
from ..security.two_factor_pages import TwoFactorPages, add_two_factor_pages
from ..tenants.hosts import absolute_url_for, current_tenant
from . import staff as service
from .console import console_blueprint, guard_blueprint, read_only, staff_actor
from .models import STAFF_ROLES
from .service import get_staff, list_staff

bp = console_blueprint("shop_staff", __name__)
guard_blueprint(
    bp, read="staff.view", write="staff.manage",
    invite_accept="account.security",
    security="account.security", security_setup="account.security",
    security_confirm="account.security", security_disable="account.security",
)


class InviteForm(Form):
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Length(max=254)])
    role = SelectField(_l("Role"), choices=[SelectChoice(r, r) for r in service.INVITABLE_ROLES])


class RoleForm(Form):
    role = SelectField(_l("Role"), choices=[SelectChoice(r, r) for r in STAFF_ROLES])


class AcceptForm(Form):
    name = StringField(_l("Your name (optional)"), validators=[Length(max=120)])
    password = PasswordField(_l("Choose a password"),
                             validators=[DataRequired(), Length(max=256)])


def _confirm_button() -> None:
    if not EmptyForm().validate_on_submit():
        abort(400)


def _back(staff_id: int | None = None):
    if staff_id is not None:
        return redirect(url_for("merchant.staff_detail", staff_id=staff_id))
    return redirect(url_for("merchant.staff_list"))


# -- the staff list (merchant.staff_list renders it) ------------------------------------------


def staff_page(invite_form: InviteForm | None = None, status: int = 200):
    return render_template(
        "merchant/staff.html", staff=list_staff(), invites=service.pending_invites(),
        invite_form=invite_form or InviteForm(formdata=None), action=EmptyForm(formdata=None),
        role_form=RoleForm, limit=service.staff_limit(current_tenant()),
    ), status


def staff_member_page(staff_id: int):
    member = get_staff(staff_id)
    return render_template("merchant/staff_member.html", member=member,
                           role_form=RoleForm(formdata=None, role=member.role),
                           action=EmptyForm(formdata=None))


@bp.post("/staff/invite")
def invite():
    form = InviteForm()
    if not form.validate_on_submit():
        return staff_page(form, 422)
    with committing(form) as attempt:
        service.invite_staff(
            current_tenant(), email=form.email.data, role=form.role.data, actor=staff_actor(),
            accept_url=lambda token: absolute_url_for(".invite_accept", token=token))
    if attempt.failed:
        return staff_page(form, 422)
    flash(_("Invitation sent to %(email)s.", email=form.email.data.strip().lower()))
    return _back()


@bp.post("/staff/invites/<int:invite_id>/revoke")
def invite_revoke(invite_id: int):
    invite_row = service.get_invite(invite_id)
    _confirm_button()
    with committing() as attempt:
        service.revoke_invite(invite_row, actor=staff_actor())
    if attempt.failed:
        return _back()
    flash(_("The invitation of %(email)s is withdrawn.", email=invite_row.email))
    return _back()


def _change(staff_id: int, change, done: str):
    member = get_staff(staff_id)
    with committing() as attempt:
        change(member)
    if attempt.failed:
        return _back(staff_id)
    flash(done % {"email": member.email})
    return _back(staff_id)


@bp.post("/staff/<int:staff_id>/role")
def staff_role(staff_id: int):
    member = get_staff(staff_id)
    form = RoleForm()
    if not form.validate_on_submit():
        flash(_("Choose one of the roles."), "error")
        return _back(member.id)
    return _change(staff_id, lambda m: service.change_role(m, form.role.data,
                                                           actor=staff_actor()),
                   _("%(email)s's role is changed."))


@bp.post("/staff/<int:staff_id>/disable")
def staff_disable(staff_id: int):
    get_staff(staff_id)
    _confirm_button()
    return _change(staff_id, lambda m: service.set_active(m, False, actor=staff_actor()),
                   _("%(email)s is disabled and logged out everywhere."))


@bp.post("/staff/<int:staff_id>/enable")
def staff_enable(staff_id: int):
    get_staff(staff_id)
    _confirm_button()
    return _change(staff_id, lambda m: service.set_active(m, True, actor=staff_actor()),
                   _("%(email)s may log in again."))


@bp.post("/staff/<int:staff_id>/remove")
def staff_remove(staff_id: int):
    member = get_staff(staff_id)
    _confirm_button()
    email = member.email
    with committing() as attempt:
        service.remove_staff(member, actor=staff_actor())
    if attempt.failed:
        return _back(staff_id)
    flash(_("%(email)s is removed from the staff.", email=email))
    return _back()


# -- accepting an invitation (public) ---------------------------------------------------------


@bp.route("/invite/<token>", methods=["GET", "POST"])
def invite_accept(token: str):
    shop = current_tenant()
    invitation = service.invite_by_token(token)  # NotFound (404) when invalid or expired
    form = AcceptForm()
    status = 200
    if form.validate_on_submit():
        with committing(form) as attempt:
            staff = service.accept_invite(shop, token, password=form.password.data,
                                          name=form.name.data or "",
                                          ip=request.remote_addr or "")
        if attempt.failed:
            status = 422
        else:
            start_session(staff)
            flash(_("Welcome to the staff of %(shop)s.", shop=shop.name))
            return redirect(url_for("merchant.dashboard"))
    elif request.method == "POST":
        status = 422
    return render_template("merchant/invite_accept.html", form=form, invite=invitation), status


# -- one's own two-factor login ---------------------------------------------------------------


add_two_factor_pages(bp, TwoFactorPages(
    template="merchant/security.html",
    issuer=lambda: f"Kameng · {current_tenant().name}",
    audit=lambda action: service.record_security(current_user, action, staff_actor()),
    read_only=read_only,
))
