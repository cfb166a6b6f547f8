"""The login and logout pages' shared flow; each site passes its own authenticate function."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request

from ..extensions import db
from ..forms import EmptyForm, LoginForm
from .auth import Account, end_session, mark_login_failed, start_session


def safe_next(default: str, prefix: str = "/") -> str:
    """The `next` parameter when it is a local path under `prefix`, else `default`."""
    target = request.values.get("next") or ""
    parts = urlsplit(target)
    if (
        not target.startswith(prefix)
        or target.startswith("//")
        or parts.scheme
        or parts.netloc
        or "\\" in target
    ):
        return default
    return target


def login_flow(
    authenticate: Callable[[str, str], Account | None],
    *,
    template: str,
    success_url: str,
    prefix: str = "/",
    render: Callable[..., str] = render_template,
    **context,
):
    """GET shows the form; POST logs in with a fresh session or counts a failed attempt."""
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        account = authenticate(form.email.data, form.password.data)
        if account is not None:
            db.session.commit()
            start_session(account)
            return redirect(safe_next(success_url, prefix))
        db.session.rollback()
        mark_login_failed()
        form.form_errors.append("Wrong e-mail or password.")
        status = 422
    elif request.method == "POST":
        status = 422
    return render(template, form=form, **context), status


def logout_flow(redirect_to: str):
    if EmptyForm().validate_on_submit():
        end_session()
        flash("You are logged out.")
    return redirect(redirect_to)
