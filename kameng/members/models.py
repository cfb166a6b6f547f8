"""Buyer accounts of a shop."""

from __future__ import annotations

from sqlalchemy import String, UniqueConstraint
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

    def __repr__(self) -> str:
        return f"<Customer {self.email} of tenant {self.tenant_id}>"
