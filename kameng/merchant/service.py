"""Operations on a shop's staff accounts."""

from __future__ import annotations

from sqlalchemy import select

from ..errors import DomainError, NotFound
from ..extensions import db
from ..rows import row_by_id
from ..security.auth import authenticate, new_account
from ..tenants.models import Tenant
from .models import STAFF_ROLES, StaffUser


def create_staff(
    tenant: Tenant, *, email: str, password: str, role: str = "manager", name: str = ""
) -> StaffUser:
    """Add a staff account to `tenant` (the tenant must be bound to the session)."""
    if role not in STAFF_ROLES:
        raise DomainError(f"Role must be one of {', '.join(STAFF_ROLES)}.", field="role")
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
        raise NotFound("No such staff member.")
    return staff
