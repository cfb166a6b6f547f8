"""One's own two-factor login page, the same in both consoles: start the setup (a secret shown
as a QR code and as text), confirm it with a first code, or turn it off with a code. Each
console adds these routes to its blueprint with its template, the issuer name shown in the
authenticator app and how it audits the change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from ..errors import DomainError
from ..extensions import db
from ..forms import EmptyForm, committing
from . import totp
from .login import TwoFactorForm


@dataclass(frozen=True)
class TwoFactorPages:
    template: str
    issuer: Callable[[], str]  # the account's label in the authenticator app
    audit: Callable[[str], None]  # records "auth.2fa_enabled" / "auth.2fa_disabled"
    read_only: Callable[[], bool] = lambda: False  # e.g. a support session: nothing to set up


def add_two_factor_pages(bp: Blueprint, pages: TwoFactorPages) -> None:
    """GET /account/security, POST …/setup, …/confirm and …/disable on `bp`."""

    def page(code_form: TwoFactorForm | None = None, status: int = 200):
        account = current_user
        secret = None if pages.read_only() else totp.pending_secret(account)
        uri = totp.provisioning_uri(secret, account.email, pages.issuer()) if secret else None
        return render_template(
            pages.template, account=account, secret=secret,
            grouped=totp.grouped(secret) if secret else "",
            qr=totp.qr_svg(uri) if uri else None, uri=uri,
            code_form=code_form or TwoFactorForm(formdata=None),
            action=EmptyForm(formdata=None),
        ), status

    def security():
        return page()

    def security_setup():
        if not EmptyForm().validate_on_submit():
            abort(400)
        with committing():
            totp.begin_setup(current_user)
        return redirect(url_for(".security"))

    def change(step, action: str, done: str):
        form = TwoFactorForm()
        if not form.validate_on_submit():
            return page(form, 422)
        try:
            step(current_user, form.code.data)
        except DomainError as error:
            db.session.rollback()
            form.fail(error)
            return page(form, 422)
        pages.audit(action)
        db.session.commit()
        flash(done)
        return redirect(url_for(".security"))

    def security_confirm():
        return change(totp.confirm_setup, "auth.2fa_enabled",
                      _("Two-factor login is on. From now on you log in with a code from your "
                        "app."))

    def security_disable():
        return change(totp.disable, "auth.2fa_disabled", _("Two-factor login is off."))

    bp.add_url_rule("/account/security", view_func=security, methods=["GET"])
    bp.add_url_rule("/account/security/setup", view_func=security_setup, methods=["POST"])
    bp.add_url_rule("/account/security/confirm", view_func=security_confirm, methods=["POST"])
    bp.add_url_rule("/account/security/disable", view_func=security_disable, methods=["POST"])
