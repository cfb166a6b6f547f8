"""Mail messages: every mail Kameng sends is a row first, then delivered by the mail queue."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class MailMessage(db.Model):
    """A mail to send (or, without SMTP, kept for the consoles to show). `tenant_id` names the
    shop it is from (None: the platform); shop consoles list only their own."""

    __tablename__ = "mail_messages"
    __table_args__ = (
        Index("ix_mail_messages_tenant_created", "tenant_id", "created_at"),
        CheckConstraint("status IN ('queued', 'sent', 'failed', 'kept')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))  # order.delivered, stock.low, …
    to: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
