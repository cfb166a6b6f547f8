"""Platform staff: the super-admins of the admin host."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..security.auth import Account


class PlatformUser(Account, db.Model):
    """A super-admin. Not tied to any shop; logs in on the admin host only."""

    __tablename__ = "platform_users"
    login_kind = "platform"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120), default="")

    def __repr__(self) -> str:
        return f"<PlatformUser {self.email}>"
