"""Shop staff (the owner and the managers of one shop) and the notices the shop receives."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, String, Text, UniqueConstraint, func
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
    email_confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    def __repr__(self) -> str:
        return f"<StaffUser {self.email} of tenant {self.tenant_id}>"


class ShopNotice(TenantScoped, db.Model):
    """Something the shop should know: a price lifted to cost, low stock, new supply products."""

    __tablename__ = "shop_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
