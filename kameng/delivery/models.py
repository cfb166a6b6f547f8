"""Upstream suppliers: where direct top-up (直充) products are bought when a buyer pays."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, DateTime, ForeignKey, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db

SUPPLIER_ADAPTERS = {
    "json": "Generic JSON over HTTPS (request template, status mapping)",
    "kameng": "Another Kameng shop (its API)",
}


class Supplier(db.Model):
    """An upstream supplier account: the platform's (for supply products, `tenant_id` None)
    or a shop's own (for its own top-up products).

    A platform table so supply products can name the platform's suppliers; shop services
    always filter on `tenant_id` explicitly. Credentials are encrypted (write-only in forms).
    """

    __tablename__ = "suppliers"
    __table_args__ = (CheckConstraint("adapter IN ('json', 'kameng')", name="adapter"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                                  index=True)
    name: Mapped[str] = mapped_column(String(120))
    adapter: Mapped[str] = mapped_column(String(16), default="json")
    base_url: Mapped[str] = mapped_column(String(500))
    credentials: Mapped[str] = mapped_column(Text, default="")  # Fernet token of a JSON object
    # Adapter settings: request template, field names and status mapping (not secret).
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
