"""Buyer accounts of a shop."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..security.auth import Account
from ..tenants.scoping import TenantScoped


class Customer(Account, TenantScoped, db.Model):
    """A buyer registered at one shop; the e-mail is unique within that shop only."""

    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)
    login_kind = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    # The buyer's price level (None: the shop's default member level) and what they have spent.
    level_id: Mapped[int | None] = mapped_column(ForeignKey("price_levels.id", ondelete="SET NULL"))
    lifetime_spend: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    def __repr__(self) -> str:
        return f"<Customer {self.email} of tenant {self.tenant_id}>"
