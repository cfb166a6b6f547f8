"""After-sales tickets and their messages."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..tenants.scoping import TenantScoped

TICKET_REASONS = {
    "code_invalid": "The code is invalid",
    "code_used": "The code was already used",
    "wrong_item": "I received the wrong item",
    "not_received": "I did not receive it",
    "other": "Something else",
}
TICKET_STATUSES = ("open", "answered", "resolved", "declined")


class Ticket(TenantScoped, db.Model):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_tenant_status", "tenant_id", "status"),
        CheckConstraint("status IN ('open', 'answered', 'resolved', 'declined')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    reason: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(12), default="open")
    resolution: Mapped[str] = mapped_column(String(24), default="")  # replaced/refunded/declined
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())

    messages: Mapped[list[TicketMessage]] = relationship(order_by="TicketMessage.id",
                                                         back_populates="ticket")


class TicketMessage(TenantScoped, db.Model):
    __tablename__ = "ticket_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"),
                                           index=True)
    author: Mapped[str] = mapped_column(String(12))  # buyer or staff
    author_email: Mapped[str] = mapped_column(String(254), default="")
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
