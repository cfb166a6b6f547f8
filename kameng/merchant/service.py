"""Operations on a shop's staff accounts."""

from __future__ import annotations

from datetime import UTC, datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ..errors import DomainError, NotFound
from ..extensions import db
from ..rows import row_by_id
from ..security.auth import authenticate, new_account
from ..tenants.models import Tenant
from .models import STAFF_ROLES, ShopNotice, StaffUser


def create_staff(
    tenant: Tenant, *, email: str, password: str, role: str = "manager", name: str = ""
) -> StaffUser:
    """Add a staff account to `tenant` (the tenant must be bound to the session)."""
    if role not in STAFF_ROLES:
        raise DomainError(_l("Role must be one of %(staff_roles)s.",
                             staff_roles=', '.join(STAFF_ROLES)), field="role")
    return new_account(
        StaffUser,
        email=email,
        password=password,
        taken="This e-mail is already on this shop's staff.",
        tenant_id=tenant.id,
        role=role,
        name=(name or "").strip()[:120],
    )


def authenticate_staff(email: str, password: str) -> StaffUser | None:
    """The staff account of the bound shop with these credentials, or None."""
    return authenticate(StaffUser, email, password)


def list_staff() -> list[StaffUser]:
    return list(db.session.scalars(select(StaffUser).order_by(StaffUser.id)))


def get_staff(staff_id: int) -> StaffUser:
    """A staff member of the bound shop; another shop's staff is simply not found."""
    staff = row_by_id(StaffUser, staff_id)
    if staff is None:
        raise NotFound(_l("No such staff member."))
    return staff


def unread_notices(limit: int = 50) -> list[ShopNotice]:
    """The bound shop's unread notices, newest first."""
    return list(db.session.scalars(
        select(ShopNotice).where(ShopNotice.read_at.is_(None))
        .order_by(ShopNotice.id.desc()).limit(limit)
    ))


def mark_notice_read(notice_id: int) -> ShopNotice:
    notice = row_by_id(ShopNotice, notice_id)
    if notice is None:
        raise NotFound(_l("No such notice."))
    if notice.read_at is None:
        notice.read_at = datetime.now(UTC)
        db.session.flush()
    return notice
