"""Orders, their lines and their timelines."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..tenants.scoping import TenantScoped

if TYPE_CHECKING:
    from ..payments.models import Payment

ORDER_STATUSES = ("pending", "paid", "delivering", "awaiting", "delivered", "failed", "expired",
                  "cancelled", "refunded")
ORDER_KINDS = ("purchase", "topup")


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class Order(TenantScoped, db.Model):
    """A buyer's order (or a wallet top-up), priced by quote() at checkout."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("tenant_id", "number"),
        Index("ix_orders_tenant_status_created", "tenant_id", "status", "created_at"),
        Index("ix_orders_status_expires", "status", "expires_at"),
        Index("ix_orders_tenant_email", "tenant_id", "email"),
        CheckConstraint(
            "status IN ('pending', 'paid', 'delivering', 'awaiting', 'delivered', 'failed', "
            "'expired', 'cancelled', 'refunded')", name="status"),
        CheckConstraint("kind IN ('purchase', 'topup')", name="kind"),
        CheckConstraint("amount_due >= 0 AND total >= 0", name="amounts"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(24))  # shown to people
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)  # of the link token
    # The link token itself, encrypted: only to put the order link in the buyer's mail.
    token_cipher: Mapped[bytes | None] = mapped_column(LargeBinary)
    kind: Mapped[str] = mapped_column(String(12), default="purchase")
    status: Mapped[str] = mapped_column(String(12), default="pending")
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[int] = mapped_column(BigInteger)  # unit price * qty, after level and bulk
    coupon_discount: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger)  # the quoted price
    points_used: Mapped[int] = mapped_column(BigInteger, default=0)
    points_value: Mapped[int] = mapped_column(BigInteger, default=0)  # money the points paid
    amount_due: Mapped[int] = mapped_column(BigInteger)  # total - points_value: charged
    cost_total: Mapped[int] = mapped_column(BigInteger, default=0)  # supply cost to the shop
    coupon_id: Mapped[int | None] = mapped_column(ForeignKey("coupons.id", ondelete="SET NULL"))
    coupon_code: Mapped[str] = mapped_column(String(40), default="")
    level_id: Mapped[int | None] = mapped_column(
        ForeignKey("price_levels.id", ondelete="SET NULL"))
    payment_method: Mapped[str] = mapped_column(String(16))
    ip: Mapped[str] = mapped_column(String(64), default="")
    test_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    needs_staff: Mapped[bool] = mapped_column(Boolean, default=False)
    staff_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    lines: Mapped[list[OrderLine]] = relationship(back_populates="order", order_by="OrderLine.id")
    events: Mapped[list[OrderEvent]] = relationship(order_by="OrderEvent.id", viewonly=True)
    payments: Mapped[list[Payment]] = relationship("Payment", order_by="Payment.id",
                                                   viewonly=True)

    def __repr__(self) -> str:
        return f"<Order {self.number} {self.status} of tenant {self.tenant_id}>"


class OrderLine(TenantScoped, db.Model):
    __tablename__ = "order_lines"
    __table_args__ = (
        CheckConstraint("qty >= 1", name="qty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int | None] = mapped_column(
        ForeignKey("products.id", ondelete="SET NULL"), index=True)
    supply_product_id: Mapped[int | None] = mapped_column(
        ForeignKey("supply_products.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(200))
    delivery_kind: Mapped[str] = mapped_column(String(16))
    qty: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    unit_cost: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger)
    buyer_input: Mapped[dict] = mapped_column(JSON, default=dict)
    # Delivered content that is not a card code (fixed content, manual fulfilment), encrypted.
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Direct top-up: the upstream order (our idempotency key is the line id) and its state.
    upstream_ref: Mapped[str] = mapped_column(String(128), default="", server_default="")
    upstream_status: Mapped[str] = mapped_column(String(16), default="", server_default="")
    upstream_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    order: Mapped[Order] = relationship(back_populates="lines")


class OrderEvent(TenantScoped, db.Model):
    """One step of an order's timeline: every transition, and notes worth keeping."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = _now()
    actor: Mapped[str] = mapped_column(String(254), default="system")
    from_status: Mapped[str | None] = mapped_column(String(12))
    to_status: Mapped[str | None] = mapped_column(String(12))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)
