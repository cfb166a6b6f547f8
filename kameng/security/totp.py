"""TOTP two-factor login (RFC 6238) for shop staff and super-admins.

A secret lives encrypted in `Account.totp_secret` (ENCRYPTION_KEYS), together with the last
time step a code was accepted for, so the same code (or an older one) never works twice:
`{"secret": <base32>, "last_step": <int>}`. A secret may be stored while two-factor is not
yet enabled: that is a setup waiting for its first code.

Codes are six digits over 30-second steps; the step before and after the current one are
accepted too (clocks drift). Accepting a code is a compare-and-set on the stored ciphertext,
so two requests racing with one code cannot both succeed.
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass

import pyotp
import segno
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value

from ..errors import DomainError
from ..extensions import db
from .auth import Account
from .crypto import keyring

STEP_SECONDS = 30
DIGITS = 6
WINDOW = 1  # steps accepted either side of the current one


class WrongCode(DomainError):
    """The code is wrong, too old, or was already used."""

    status_code = 422

    def __init__(self, message: str | None = None):
        super().__init__(message or _("That code is not valid. Enter the current code from "
                                      "your authenticator app."), field="code")


@dataclass(frozen=True)
class Sealed:
    secret: str
    last_step: int


def seal(secret: str, last_step: int = 0) -> str:
    return keyring().encrypt_secret(json.dumps({"secret": secret, "last_step": last_step}))


def unseal(token: str | None) -> Sealed | None:
    if not token:
        return None
    data = json.loads(keyring().decrypt_secret(token))
    return Sealed(secret=data["secret"], last_step=int(data.get("last_step", 0)))


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // STEP_SECONDS)


def _normalise(code: str) -> str:
    return "".join((code or "").split()).replace("-", "")


def matching_step(secret: str, code: str, *, after: int, now: float | None = None) -> int | None:
    """The time step `code` belongs to (within the window, later than `after`), or None."""
    code = _normalise(code)
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    step = current_step(now)
    for candidate in range(step - WINDOW, step + WINDOW + 1):
        expected = totp.at(candidate * STEP_SECONDS)
        if hmac.compare_digest(expected, code) and candidate > after:
            return candidate
    return None


def _accept(account: Account, code: str, *, enable: bool | None = None,
            clear: bool = False) -> None:
    """Check `code` against the account's secret and record its step (compare-and-set).

    `enable` switches two-factor on; `clear` removes the secret (turning it off).
    Raises WrongCode for a wrong, stale or reused code.
    """
    account = _unwrapped(account)
    stored = account.totp_secret
    sealed = unseal(stored)
    if sealed is None:
        raise WrongCode(_l("Two-factor login is not set up."))
    step = matching_step(sealed.secret, code, after=sealed.last_step)
    if step is None:
        raise WrongCode()
    model = type(account)
    values: dict = {"totp_secret": None if clear else seal(sealed.secret, step)}
    if clear:
        values["totp_enabled"] = False
    elif enable is not None:
        values["totp_enabled"] = enable
    changed = db.session.execute(
        update(model).where(model.id == account.id, model.totp_secret == stored).values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:  # someone used a code of this account at the same moment
        raise WrongCode()
    # The row has the new values: tell the ORM so, without a second write.
    for name, value in values.items():
        set_committed_value(account, name, value)


def _unwrapped(account: Account) -> Account:
    """The account itself, not Flask-Login's `current_user` proxy (its type is the model)."""
    getter = getattr(account, "_get_current_object", None)
    return getter() if getter is not None else account


# -- the operations ----------------------------------------------------------------------------


def begin_setup(account: Account) -> str:
    """Store a new secret waiting for its first code; returns the secret (base32)."""
    if account.totp_enabled:
        raise DomainError(_l("Two-factor login is already on."))
    secret = pyotp.random_base32()
    account.totp_secret = seal(secret)
    db.session.flush()
    return secret


def pending_secret(account: Account) -> str | None:
    """The secret of a setup waiting for its first code (None when none, or when enabled)."""
    if account.totp_enabled:
        return None
    sealed = unseal(account.totp_secret)
    return sealed.secret if sealed else None


def confirm_setup(account: Account, code: str) -> None:
    """Turn two-factor on once the first code from the app matches the pending secret."""
    if account.totp_enabled:
        raise DomainError(_l("Two-factor login is already on."))
    _accept(account, code, enable=True)


def verify_login_code(account: Account, code: str) -> None:
    """The second login step: raises WrongCode unless `code` is valid and not used before."""
    if not account.totp_enabled:
        raise WrongCode(_l("Two-factor login is not on for this account."))
    _accept(account, code)


def disable(account: Account, code: str) -> None:
    """Turn two-factor off; needs a current code."""
    if not account.totp_enabled:
        raise DomainError(_l("Two-factor login is not on."))
    _accept(account, code, clear=True)


def reset(account: Account) -> None:
    """Turn two-factor off without a code (a super-admin helping someone who lost the app)."""
    account.totp_secret = None
    account.totp_enabled = False
    db.session.flush()


# -- showing a secret ---------------------------------------------------------------------------


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=email, issuer_name=issuer)


def qr_svg(uri: str) -> Markup:
    """The otpauth URI as an inline SVG QR code (no image request, nothing external)."""
    svg = segno.make(uri, error="m").svg_inline(scale=4, border=2, dark="#000", light="#fff")
    return Markup(svg)  # noqa: S704 - segno's own markup of our own URI


def grouped(secret: str) -> str:
    """ABCD EFGH … for typing the secret by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
