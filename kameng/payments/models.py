"""Payments: attempts to collect an order's amount, notifications received, gateway accounts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..tenants.scoping import TenantScoped


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class Payment(TenantScoped, db.Model):
    """One attempt to collect an order's amount through a gateway."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("reference"),
        CheckConstraint("status IN ('created', 'succeeded', 'failed', 'refunded')", name="status"),
        CheckConstraint("owner IN ('shop', 'platform')", name="owner"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    gateway: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(12), default="shop")  # whose gateway account
    reference: Mapped[str] = mapped_column(String(64))  # our id of it, sent to the gateway
    external_id: Mapped[str | None] = mapped_column(String(128))  # the gateway's id of it
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(12), default="created")
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = _now()
    succeeded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    detail: Mapped[str] = mapped_column(Text, default="")


class PaymentNotification(db.Model):
    """Every payment notification accepted, stored once: a replay hits the unique key."""

    __tablename__ = "payment_notifications"
    __table_args__ = (UniqueConstraint("gateway", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    gateway: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(128))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="SET NULL"))
    payment_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # what the gateway said: succeeded/failed/…
    outcome: Mapped[str] = mapped_column(String(200), default="")  # what we did about it
    received_at: Mapped[datetime] = _now()


class PaymentAccount(TenantScoped, db.Model):
    """A shop's own credentials for one gateway, encrypted at rest (write-only in forms)."""

    __tablename__ = "payment_accounts"
    __table_args__ = (UniqueConstraint("tenant_id", "gateway"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    gateway: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    credentials: Mapped[str] = mapped_column(Text, default="")  # Fernet token of a JSON object
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())


class PlatformPaymentAccount(db.Model):
    """The platform's own credentials for a gateway, used by shops without their own."""

    __tablename__ = "platform_payment_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    gateway: Mapped[str] = mapped_column(String(16), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    credentials: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())
