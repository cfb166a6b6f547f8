"""Operations on platform staff (super-admins)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ..audit.service import Actor, record
from ..errors import Conflict, NotFound
from ..extensions import db
from ..rows import row_by_id
from ..security.auth import authenticate, new_account, new_session_token
from .models import PlatformUser


def create_platform_user(*, email: str, password: str, name: str = "") -> PlatformUser:
    return new_account(
        PlatformUser,
        email=email,
        password=password,
        taken="A super-admin with this e-mail exists.",
        name=(name or "").strip()[:120],
    )


def authenticate_platform_user(email: str, password: str) -> PlatformUser | None:
    return authenticate(PlatformUser, email, password)


def list_platform_users() -> list[PlatformUser]:
    return list(db.session.scalars(select(PlatformUser).order_by(PlatformUser.id)))


def get_platform_user(user_id: int) -> PlatformUser:
    user = row_by_id(PlatformUser, user_id)
    if user is None:
        raise NotFound(_l("No such super-admin."))
    return user


def set_platform_user_active(user: PlatformUser, active: bool, *, actor: Actor
                             ) -> PlatformUser:
    """Disable (every session ends) or enable a super-admin; never oneself, never the last."""
    if user.active == active:
        return user
    if not active:
        if user.id == actor.id:
            raise Conflict(_l("You cannot disable your own account."))
        others = db.session.scalars(select(PlatformUser.id).where(
            PlatformUser.active, PlatformUser.id != user.id).with_for_update()).all()
        if not others:
            raise Conflict(_l("The platform must keep at least one active super-admin."))
        user.session_token = new_session_token()
    user.active = active
    db.session.flush()
    record(actor, "platform_user.enabled" if active else "platform_user.disabled",
           tenant_id=None, target=user.email)
    return user
