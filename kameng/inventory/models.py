"""Card codes (卡密): encrypted at rest, de-duplicated by a keyed fingerprint, counted as stock.

A code moves `available -> reserved (order, expiry) -> sold (order line)`, or to `void`.
A shop's own codes are shop-owned rows (`CardCode`); the supply catalog's codes belong to the
platform (`SupplyCode`) and record which shop's order took them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..tenants.scoping import TenantScoped

CODE_STATUSES = ("available", "reserved", "sold", "void")
MAX_CODE_LENGTH = 1000


class CodeColumns:
    id: Mapped[int] = mapped_column(primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(16))
    status: Mapped[str] = mapped_column(String(12), default="available")
    # The import that brought the code in: the id of its audit event.
    batch_id: Mapped[int | None] = mapped_column(Integer)
    reserved_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    order_id: Mapped[int | None] = mapped_column(Integer)
    order_line_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sold_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CardCode(CodeColumns, TenantScoped, db.Model):
    """A code of a shop's own product; the composite key proves it is that shop's product."""

    __tablename__ = "card_codes"
    tenant_via_parent = True
    __table_args__ = (
        UniqueConstraint("tenant_id", "product_id", "fingerprint"),
        # Stock counts, and the oldest available code first (ORDER BY id LIMIT n) without a sort.
        Index("ix_card_codes_stock", "tenant_id", "product_id", "status", "id"),
        Index("ix_card_codes_order", "order_id", postgresql_where=text("order_id IS NOT NULL"),
              sqlite_where=text("order_id IS NOT NULL")),
        CheckConstraint("status IN ('available', 'reserved', 'sold', 'void')", name="status"),
        ForeignKeyConstraint(["tenant_id", "product_id"], ["products.tenant_id", "products.id"],
                             ondelete="RESTRICT"),
    )

    product_id: Mapped[int] = mapped_column()


class SupplyCode(CodeColumns, db.Model):
    """A code of a supply product, held by the platform until a shop's order takes it."""

    __tablename__ = "supply_codes"
    __table_args__ = (
        UniqueConstraint("product_id", "fingerprint"),
        Index("ix_supply_codes_stock", "product_id", "status", "id"),
        Index("ix_supply_codes_order", "order_id", postgresql_where=text("order_id IS NOT NULL"),
              sqlite_where=text("order_id IS NOT NULL")),
        CheckConstraint("status IN ('available', 'reserved', 'sold', 'void')", name="status"),
    )

    product_id: Mapped[int] = mapped_column(ForeignKey("supply_products.id", ondelete="RESTRICT"))
    # The shop whose order reserved or bought the code.
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="SET NULL"))
