"""Operations on a shop's buyer accounts: registration, log-in, profile, password change and
reset by mail, and the buyer's progress towards the next price level."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from flask import current_app
from flask_babel import lazy_gettext as _l
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select

from ..catalog.models import PriceLevel
from ..catalog.service import level_for, list_levels
from ..errors import DomainError, NotFound
from ..extensions import db
from ..rows import row_by_id
from ..security.auth import authenticate, new_account, normalize_email
from ..security.passwords import verify_password
from .models import Customer

RESET_MAX_AGE = 60 * 60  # seconds a password reset link works


def register_customer(tenant_id: int, *, email: str, password: str, name: str = "") -> Customer:
    """Create a buyer account at the bound shop."""
    return new_account(
        Customer,
        email=email,
        password=password,
        taken="An account with this e-mail already exists. Log in instead.",
        tenant_id=tenant_id,
        name=(name or "").strip()[:120],
    )


def authenticate_customer(email: str, password: str) -> Customer | None:
    return authenticate(Customer, email, password)


def list_customers(search: str = "", limit: int = 200) -> list[Customer]:
    query = select(Customer).order_by(Customer.id.desc()).limit(limit)
    if search:
        query = query.where(Customer.email.contains(normalize_email(search), autoescape=True))
    return list(db.session.scalars(query))


def get_customer(customer_id: int) -> Customer:
    """A buyer of the bound shop; another shop's buyer is simply not found."""
    customer = row_by_id(Customer, customer_id)
    if customer is None:
        raise NotFound(_l("No such buyer."))
    return customer


# -- profile and password --------------------------------------------------------------------


def update_profile(customer: Customer, *, name: str) -> None:
    customer.name = " ".join((name or "").split())[:120]
    db.session.flush()


def change_password(customer: Customer, *, current: str, new: str) -> None:
    """A new password for a logged-in buyer who knows the current one (ends other sessions)."""
    if not verify_password(customer.password_hash, current or ""):
        raise DomainError(_l("The current password is wrong."), field="current")
    customer.set_password(new)
    db.session.flush()


# -- password reset by mail ----------------------------------------------------------------
#
# The link carries a signed, timed token: the buyer's id and a fingerprint of their session
# token. Setting a password rotates the session token, so a link works once, and no link sent
# before a password change works after it. The signature's salt names the shop, so a link of
# one shop is refused by every other.


def _reset_serializer(tenant_id: int) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"],
                                  salt=f"kameng.password-reset.{tenant_id}")


def _fingerprint(customer: Customer) -> str:
    return hashlib.sha256(f"reset:{customer.session_token}".encode()).hexdigest()[:32]


def password_reset_token(tenant_id: int, email: str) -> tuple[Customer, str] | None:
    """The active buyer of the bound shop with this e-mail and a reset token, or None."""
    customer = db.session.scalar(select(Customer).where(Customer.email == normalize_email(email)))
    if customer is None or not customer.is_active:
        return None
    token = _reset_serializer(tenant_id).dumps({"c": customer.id, "f": _fingerprint(customer)})
    return customer, token


def customer_for_reset(tenant_id: int, token: str) -> Customer | None:
    """The buyer a reset token is for, while it is fresh and unused; else None."""
    try:
        data = _reset_serializer(tenant_id).loads(token or "", max_age=RESET_MAX_AGE)
    except BadSignature:  # also an expired one (SignatureExpired)
        return None
    if not isinstance(data, dict):
        return None
    customer = row_by_id(Customer, data.get("c"))
    if customer is None or not customer.is_active:
        return None
    if not hmac.compare_digest(_fingerprint(customer), str(data.get("f", ""))):
        return None
    return customer


def reset_password(tenant_id: int, token: str, password: str) -> Customer:
    """Set a new password through a reset link (which then stops working)."""
    customer = customer_for_reset(tenant_id, token)
    if customer is None:
        raise DomainError(_l("This link has expired or was already used. Ask for a new one."))
    customer.set_password(password)
    db.session.flush()
    return customer


# -- levels ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LevelProgress:
    """A buyer's price level and what the next one needs."""

    level: PriceLevel | None
    next_level: PriceLevel | None  # the nearest higher level reached by spending
    remaining: int  # minor units still to spend to reach `next_level` (0: none, or reached)
    spent: int  # lifetime spend


def level_progress(customer: Customer) -> LevelProgress:
    current = level_for(customer)
    rank = current.rank if current is not None else -1
    reachable = [lv for lv in list_levels()
                 if lv.spend_threshold is not None and not lv.is_guest and lv.rank > rank]
    following = min(reachable, key=lambda lv: (lv.spend_threshold, lv.rank), default=None)
    spent = customer.lifetime_spend or 0
    remaining = max(0, following.spend_threshold - spent) if following is not None else 0
    return LevelProgress(level=current, next_level=following, remaining=remaining, spent=spent)
