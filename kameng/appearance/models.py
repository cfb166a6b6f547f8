"""Images a shop uploads for its theme (logo, banner), stored in the database so every web
process serves the same file."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..tenants.scoping import TenantScoped

ASSET_KINDS = ("logo", "banner")


class ShopAsset(TenantScoped, db.Model):
    __tablename__ = "shop_assets"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind"),
        CheckConstraint("kind IN ('logo', 'banner')", name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())
