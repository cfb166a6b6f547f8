"""Shop staff: the owner and the managers of one shop."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..security.auth import Account
from ..tenants.scoping import TenantScoped

STAFF_ROLES = ("owner", "manager", "support")


class StaffUser(Account, TenantScoped, db.Model):
    """A person who runs one shop. The same e-mail at two shops is two accounts."""

    __tablename__ = "staff_users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "email"),
        CheckConstraint("role IN ('owner', 'manager', 'support')", name="role"),
    )
    login_kind = "staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    role: Mapped[str] = mapped_column(String(16), default="manager")

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    def __repr__(self) -> str:
        return f"<StaffUser {self.email} of tenant {self.tenant_id}>"
