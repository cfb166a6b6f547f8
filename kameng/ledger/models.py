"""The ledger: accounts with a cached balance, balanced append-only transactions, and holds.

Every movement of money (or points) is a `LedgerTransaction` whose `LedgerPosting`s sum to zero
per currency. An account's `balance` is the sum of its postings, kept in the same transaction
by a conditional UPDATE, so a wallet can never go below zero or be spent twice. `held` is the
sum of the account's active holds: funds reserved (e.g. a shop's supply cost while its buyer
pays) that are later captured or released.

Platform tables: the ledger spans shops (a shop's wallet lives at the platform). Services
always name the shop and the owner of an account explicitly.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db

# kind -> (may go below zero, what it is)
ACCOUNT_KINDS = {
    "buyer_wallet": (False, "a buyer's wallet at a shop (the shop owes the buyer)"),
    "buyer_points": (False, "a buyer's points at a shop"),
    "shop_wallet": (False, "a shop's wallet at the platform (the platform owes the shop)"),
    "shop_income": (True, "a shop's takings recorded by the ledger (wallet payments)"),
    "shop_points": (True, "points a shop has issued (negative) and taken back"),
    "shop_gateway": (True, "money a shop's own payment account received (outside the platform)"),
    "platform_gateway": (True, "money the platform's payment accounts received"),
    "platform_revenue": (True, "supply cost paid by shops"),
    "platform_fees": (True, "fees the platform charged shops"),
    "platform_funding": (True, "credit the platform granted (demo money, goodwill)"),
}


class LedgerAccount(db.Model):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("allow_negative OR balance >= 0", name="balance"),
        CheckConstraint("held >= 0 AND (allow_negative OR held <= balance)", name="held"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # "kind:shop:buyer:currency" — one account per owner, unique even where ids are NULL.
    owner_key: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(24))
    # The shop the account belongs to or concerns (None for platform accounts), and the buyer.
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"),
                                                  index=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True)
    currency: Mapped[str] = mapped_column(String(3))  # "PTS" for points
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    allow_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    @property
    def available(self) -> int:
        return self.balance - self.held


class LedgerTransaction(db.Model):
    """One balanced movement; `idempotency_key` makes every posting happen at most once."""

    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"),
                                                  index=True)
    order_id: Mapped[int | None] = mapped_column(Integer, index=True)
    memo: Mapped[str] = mapped_column(String(200), default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    postings: Mapped[list[LedgerPosting]] = relationship(back_populates="transaction",
                                                         order_by="LedgerPosting.id")


class LedgerPosting(db.Model):
    __tablename__ = "ledger_postings"
    __table_args__ = (Index("ix_ledger_postings_account", "account_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("ledger_transactions.id", ondelete="RESTRICT"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id", ondelete="RESTRICT"))
    amount: Mapped[int] = mapped_column(BigInteger)  # + credits the account, - debits it
    currency: Mapped[str] = mapped_column(String(3))

    transaction: Mapped[LedgerTransaction] = relationship(back_populates="postings")
    account: Mapped[LedgerAccount] = relationship()


class LedgerHold(db.Model):
    """Funds reserved on an account until captured (posted) or released."""

    __tablename__ = "ledger_holds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount"),
        CheckConstraint("status IN ('active', 'captured', 'released')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id", ondelete="RESTRICT"),
                                            index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(12), default="active")
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    order_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    account: Mapped[LedgerAccount] = relationship()
