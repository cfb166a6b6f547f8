"""Tenants (shops) and the host names that route to them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import JSON, Boolean, CheckConstraint, DateTime, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db

if TYPE_CHECKING:
    from ..catalog.models import MarkupRule

TENANT_STATUSES = ("active", "suspended")
DOMAIN_KINDS = ("subdomain", "custom")


class Tenant(db.Model):
    """A rented shop. A platform table: the shop-owned tables point at it."""

    __tablename__ = "tenants"
    __table_args__ = (CheckConstraint("status IN ('active', 'suspended')", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    theme: Mapped[str] = mapped_column(String(40), default="default", server_default="default")
    locale: Mapped[str] = mapped_column(String(10), default="zh_CN", server_default="zh_CN")
    currency: Mapped[str] = mapped_column(String(3), default="CNY", server_default="CNY")
    # Why a suspended shop is closed: "manual" (the platform) or "unpaid" (an overdue invoice:
    # its console stays open so it can pay).
    suspension_reason: Mapped[str] = mapped_column(String(16), default="", server_default="")
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    domains: Mapped[list[Domain]] = relationship(
        back_populates="tenant", cascade="all, delete-orphan", order_by="Domain.id"
    )

    # The shop's markup rules, read by quote(); loaded under the shop's tenant scope.
    markup_rules: Mapped[list[MarkupRule]] = relationship(
        "MarkupRule", viewonly=True, lazy="select"
    )

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    def __repr__(self) -> str:
        return f"<Tenant {self.slug}>"


class Domain(db.Model):
    """A host name that serves a shop: its platform subdomain or a verified custom domain.

    A platform table (host resolution runs before any tenant is known); `host` is stored
    lower-case without port.
    """

    __tablename__ = "domains"
    __table_args__ = (CheckConstraint("kind IN ('subdomain', 'custom')", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(253), unique=True)
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16), default="subdomain")
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    # A custom domain proves itself with a DNS TXT record holding this token.
    verification_token: Mapped[str] = mapped_column(String(64), default="", server_default="")
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    tenant: Mapped[Tenant] = relationship(back_populates="domains")

    def __repr__(self) -> str:
        return f"<Domain {self.host}>"
