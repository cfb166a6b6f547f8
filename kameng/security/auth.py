"""Logins of the three kinds of user: super-admins, shop staff and buyers.

All three go through one Flask-Login manager. A user's session id is
`<kind>:<id>:<session_token>`: the loader accepts only the kind that belongs to the area of
the request (and, for staff and buyers, only users of the current shop — the tenant guard
makes another shop's user invisible), and rotating `session_token` ends every session of
that user.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime

from email_validator import EmailNotValidError, validate_email
from flask import current_app, g, request, session
from flask_babel import lazy_gettext as _l
from flask_login import UserMixin, login_user, logout_user
from sqlalchemy import Boolean, DateTime, String, Text, false, func, select, true
from sqlalchemy.orm import Mapped, mapped_column

from ..errors import Conflict, DomainError
from ..extensions import db, limiter, login
from .passwords import hash_password, needs_rehash, verify_password
from .sessions import request_area

# Which kind of user each area accepts.
AREA_KINDS = {"admin": "platform", "console": "staff", "storefront": "customer"}
_MODELS: dict[str, type] = {}


def new_session_token() -> str:
    return secrets.token_hex(16)


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


class Account(UserMixin):
    """Columns and behaviour shared by every kind of user account."""

    login_kind: str = ""

    email: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    session_token: Mapped[str] = mapped_column(String(32), default=new_session_token)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Two-factor login (TOTP): the secret is encrypted with ENCRYPTION_KEYS.
    totp_secret: Mapped[str | None] = mapped_column(Text)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.login_kind:
            _MODELS[cls.login_kind] = cls

    @property
    def is_active(self) -> bool:
        return bool(self.active)

    def get_id(self) -> str:
        return f"{self.login_kind}:{self.id}:{self.session_token}"

    def set_password(self, password: str) -> None:
        """Set a new password and end every other session of this user."""
        check_password_policy(password, self.email)
        self.password_hash = hash_password(password)
        self.session_token = new_session_token()


def check_email(email: str) -> str:
    """The normalised (lower-case) address, or a DomainError for a malformed one."""
    email = normalize_email(email)
    try:
        validate_email(email, check_deliverability=False, test_environment=True)
    except EmailNotValidError:
        raise DomainError(_l("Enter a valid e-mail address."), field="email") from None
    return email


def check_password_policy(password: str, email: str = "") -> None:
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(password or "") < minimum:
        raise DomainError(_l("Password must be at least %(minimum)s characters.",
                             minimum=minimum), field="password")
    if len(password) > 256:
        raise DomainError(_l("Password must be at most 256 characters."), field="password")
    if email and password.strip().lower() == normalize_email(email):
        raise DomainError(_l("Password must not be your e-mail address."), field="password")


def new_account(
    model: type[Account], *, email: str, password: str, taken: str, **fields
) -> Account:
    """Create an account of `model`; `taken` is the message when the e-mail is in use.

    For shop-owned models the uniqueness check is within the bound shop (the tenant guard).
    """
    email = check_email(email)
    check_password_policy(password, email)
    exists = db.session.scalar(select(func.count()).select_from(model).where(model.email == email))
    if exists:
        raise Conflict(taken, field="email")
    account = model(email=email, **fields)
    account.set_password(password)
    db.session.add(account)
    db.session.flush()
    return account


def authenticate(model: type[Account], email: str, password: str) -> Account | None:
    """The active account of `model` with this e-mail and password, or None.

    For shop-owned models the tenant guard limits the lookup to the bound shop.
    """
    account = db.session.scalar(select(model).where(model.email == normalize_email(email)))
    if account is None or not verify_password(account.password_hash, password):
        if account is None:
            verify_password(None, password)
        return None
    if not account.is_active:
        return None
    if needs_rehash(account.password_hash):
        account.password_hash = hash_password(password)
    account.last_login_at = datetime.now(UTC)
    return account


def start_session(account: Account) -> None:
    """Log `account` in with a fresh session (nothing from before the login survives)."""
    session.clear()
    login_user(account)
    session.permanent = True


def end_session() -> None:
    logout_user()
    session.clear()


@login.user_loader
def _load_user(user_id: str) -> Account | None:
    kind, _, rest = (user_id or "").partition(":")
    raw_id, _, token = rest.partition(":")
    area, _ = request_area()
    if kind != AREA_KINDS.get(area) or not raw_id.isdigit() or not token:
        return None
    model = _MODELS.get(kind)
    if model is None:
        return None
    account = db.session.get(model, int(raw_id))
    if account is None or not hmac.compare_digest(account.session_token, token):
        return None
    return account if account.is_active else None


# -- login rate limits ---------------------------------------------------------------------


def _limit() -> str:
    return current_app.config["LOGIN_LIMIT"]


def _ip_key() -> str:
    area, host = request_area()
    return f"login-ip:{area}@{host}:{request.remote_addr}"


def _account_key() -> str:
    area, host = request_area()
    return f"login-account:{area}@{host}:{normalize_email(request.form.get('email', ''))}"


def _failed(response) -> bool:
    return bool(g.get("login_failed"))


def mark_login_failed() -> None:
    """Count this request against the login limits (only failed attempts count)."""
    g.login_failed = True


def login_rate_limited(view):
    """Limit failed logins per client address and per account (Flask-Limiter)."""
    view = limiter.limit(
        _limit, key_func=_ip_key, methods=["POST"], deduct_when=_failed, scope="login-ip"
    )(view)
    return limiter.limit(
        _limit, key_func=_account_key, methods=["POST"], deduct_when=_failed, scope="login-acct"
    )(view)
