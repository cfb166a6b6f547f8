"""The login and logout pages' shared flow; each site passes its own authenticate function.

Staff and super-admin logins (`ConsoleLogin`) are audited, and when the account has TOTP
two-factor on, the password step does not log in: it remembers who passed it (for a few
minutes, in the session) and sends them to the code step, which logs in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import current_app, flash, g, redirect, render_template, request, session
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import inspect, select
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from ..audit.service import Actor, record
from ..errors import DomainError
from ..extensions import db, limiter
from ..forms import EmptyForm, Form, LoginForm
from . import totp
from .auth import Account, end_session, mark_login_failed, normalize_email, start_session
from .sessions import request_area

PENDING_KEY = "two_factor_pending"
PENDING_SECONDS = 300  # the code step must follow the password step within five minutes


class TwoFactorForm(Form):
    code = StringField(_l("Code from your authenticator app"),
                       validators=[DataRequired(), Length(max=12)])


@dataclass(frozen=True)
class ConsoleLogin:
    """How a console logs its people in: whose accounts, which shop (None: the platform), and
    where the code step of two-factor login is."""

    model: type[Account]
    tenant_id: int | None
    two_factor_url: str

    def actor(self, account: Account | None, email: str = "") -> Actor:
        ip = request.remote_addr or ""
        if account is not None:
            return Actor.of(account, ip=ip)
        return Actor(kind=self.model.login_kind, email=normalize_email(email)[:254], ip=ip)

    def record_failure(self, email: str, account: Account | None = None, **details) -> None:
        """One `auth.login_failed` event, committed on its own (the attempt changed nothing)."""
        db.session.rollback()
        if account is None:
            account = db.session.scalar(
                select(self.model).where(self.model.email == normalize_email(email)))
        record(self.actor(account, email), "auth.login_failed", tenant_id=self.tenant_id,
               target=(account.email if account is not None else normalize_email(email))[:200],
               **details)
        db.session.commit()


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
    console: ConsoleLogin | None = None,
    **context,
):
    """GET shows the form; POST logs in with a fresh session or counts a failed attempt.

    With `console`, every attempt is audited and two-factor accounts go on to the code step.
    """
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        account = authenticate(form.email.data, form.password.data)
        if account is not None and console is not None and account.totp_enabled:
            # Not logged in yet: the last login is the one that passes the code step.
            previous = inspect(account).attrs.last_login_at.history.deleted
            account.last_login_at = previous[0] if previous else None
            db.session.commit()
            _begin_code_step(account, safe_next(success_url, prefix))
            return redirect(console.two_factor_url)
        if account is not None:
            if console is not None:
                record(console.actor(account), "auth.login", tenant_id=console.tenant_id,
                       target=account.email)
            db.session.commit()
            start_session(account)
            return redirect(safe_next(success_url, prefix))
        db.session.rollback()
        mark_login_failed()
        if console is not None:
            console.record_failure(form.email.data, reason="password")
        form.form_errors.append(_("Wrong e-mail or password."))
        status = 422
    elif request.method == "POST":
        status = 422
    return render(template, form=form, **context), status


def logout_flow(redirect_to: str):
    if EmptyForm().validate_on_submit():
        end_session()
        flash(_("You are logged out."))
    return redirect(redirect_to)


# -- the code step of two-factor login ----------------------------------------------------------


def _begin_code_step(account: Account, next_url: str) -> None:
    session.clear()  # nothing of a session from before survives, and nobody is logged in
    session[PENDING_KEY] = {"kind": account.login_kind, "id": account.id,
                            "token": account.session_token, "at": int(time.time()),
                            "next": next_url}


def _pending_account(model: type[Account]) -> Account | None:
    """Who passed the password step on this browser (recently), if still allowed to log in."""
    pending = session.get(PENDING_KEY)
    if not isinstance(pending, dict) or pending.get("kind") != model.login_kind:
        return None
    if time.time() - int(pending.get("at", 0)) > PENDING_SECONDS:
        return None
    account = db.session.get(model, int(pending.get("id", 0)))
    if (account is None or not account.is_active or not account.totp_enabled
            or account.session_token != pending.get("token")):
        return None
    return account


def _code_step_key() -> str:
    area, host = request_area()
    pending = session.get(PENDING_KEY)
    who = f"{pending.get('kind')}:{pending.get('id')}" if isinstance(pending, dict) else "-"
    return f"login-code:{area}@{host}:{who}"


def _code_step_ip_key() -> str:
    area, host = request_area()
    return f"login-ip:{area}@{host}:{request.remote_addr}"


def _failed(response) -> bool:
    return bool(g.get("login_failed"))


def code_step_rate_limited(view):
    """Failed codes count like failed passwords: per client address and per account."""
    limit = lambda: current_app.config["LOGIN_LIMIT"]  # noqa: E731
    view = limiter.limit(limit, key_func=_code_step_ip_key, methods=["POST"],
                         deduct_when=_failed, scope="login-ip")(view)
    return limiter.limit(limit, key_func=_code_step_key, methods=["POST"],
                         deduct_when=_failed, scope="login-code")(view)


def two_factor_flow(console: ConsoleLogin, *, template: str, login_url: str,
                    render: Callable[..., str] = render_template, **context):
    """GET asks for the code; a valid POST logs in the account that passed the password step."""
    account = _pending_account(console.model)
    if account is None:
        session.pop(PENDING_KEY, None)
        flash(_("Log in with your e-mail and password first."), "error")
        return redirect(login_url)
    form = TwoFactorForm()
    status = 200
    if form.validate_on_submit():
        try:
            totp.verify_login_code(account, form.code.data)
        except DomainError as error:
            mark_login_failed()
            console.record_failure(account.email, account, reason="code")
            form.fail(error)
            status = 422
        else:
            next_url = session.get(PENDING_KEY, {}).get("next") or login_url
            account.last_login_at = datetime.now(UTC)
            record(console.actor(account), "auth.login", tenant_id=console.tenant_id,
                   target=account.email, two_factor=True)
            db.session.commit()
            start_session(account)
            return redirect(next_url)
    elif request.method == "POST":
        status = 422
    return render(template, form=form, email=account.email, **context), status
