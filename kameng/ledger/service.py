"""Ledger operations: accounts, balanced postings, holds, and the check that proves it all adds up.

Everything runs in the caller's transaction. A posting or a hold with an idempotency key that
was already used returns the earlier one and changes nothing. Balances move only through
conditional UPDATEs (`… WHERE balance - held + amount >= 0` for accounts that may not go
negative), so concurrent spending can never overdraw a wallet.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, update

from ..errors import DomainError
from ..extensions import db
from ..rows import insert_or_ignore
from .models import ACCOUNT_KINDS, LedgerAccount, LedgerHold, LedgerPosting, LedgerTransaction

POINTS = "PTS"


class InsufficientFunds(DomainError):
    status_code = 409

    def __init__(self, message: str | None = None):
        super().__init__(message or _l("Not enough balance."))


def get_account(kind: str, *, currency: str, tenant_id: int | None = None,
                customer_id: int | None = None) -> LedgerAccount:
    """The account of this owner, created on first use."""
    if kind not in ACCOUNT_KINDS:
        raise ValueError(f"unknown ledger account kind {kind!r}")
    key = f"{kind}:{tenant_id or '-'}:{customer_id or '-'}:{currency}"
    query = select(LedgerAccount).where(LedgerAccount.owner_key == key)
    account = db.session.scalar(query)
    if account is None:
        insert_or_ignore(LedgerAccount, {
            "owner_key": key, "kind": kind, "tenant_id": tenant_id, "customer_id": customer_id,
            "currency": currency, "balance": 0, "held": 0,
            "allow_negative": ACCOUNT_KINDS[kind][0],
        }, ["owner_key"])
        account = db.session.scalar(query)
    return account


def buyer_wallet(customer, currency: str) -> LedgerAccount:
    return get_account("buyer_wallet", currency=currency, tenant_id=customer.tenant_id,
                       customer_id=customer.id)


def buyer_points(customer) -> LedgerAccount:
    return get_account("buyer_points", currency=POINTS, tenant_id=customer.tenant_id,
                       customer_id=customer.id)


def shop_wallet(tenant_id: int, currency: str) -> LedgerAccount:
    return get_account("shop_wallet", currency=currency, tenant_id=tenant_id)


def _move(account_id: int, amount: int, *, release_held: int = 0) -> bool:
    """Add `amount` to the balance (and take `release_held` off `held`) if the account allows."""
    query = (
        update(LedgerAccount)
        .where(LedgerAccount.id == account_id)
        .values(balance=LedgerAccount.balance + amount, held=LedgerAccount.held - release_held)
        .execution_options(synchronize_session=False)
    )
    if amount < 0:
        query = query.where(
            LedgerAccount.allow_negative
            | (LedgerAccount.balance - LedgerAccount.held + release_held + amount >= 0)
        )
    return db.session.execute(query).rowcount == 1


def existing_transaction(key: str) -> LedgerTransaction | None:
    return db.session.scalar(
        select(LedgerTransaction).where(LedgerTransaction.idempotency_key == key))


def post(key: str, kind: str, entries: Iterable[tuple[LedgerAccount, int]], *,
         tenant_id: int | None = None, order_id: int | None = None, memo: str = "",
         details: dict | None = None, _held: dict[int, int] | None = None) -> LedgerTransaction:
    """Record one balanced transaction: `entries` are (account, signed amount) pairs.

    Raises InsufficientFunds (and changes nothing) if an account may not go that low.
    """
    existing = existing_transaction(key)
    if existing is not None:
        return existing
    entries = [(account, amount) for account, amount in entries if amount]
    totals: dict[str, int] = defaultdict(int)
    for account, amount in entries:
        totals[account.currency] += amount
    if any(totals.values()):
        raise ValueError(f"unbalanced ledger transaction {key}: {dict(totals)}")
    transaction = LedgerTransaction(idempotency_key=key, kind=kind, tenant_id=tenant_id,
                                    order_id=order_id, memo=memo[:200], details=details or {})
    db.session.add(transaction)
    db.session.flush()
    held = _held or {}
    # Lowest account id first: the one order in which the ledger locks account rows (see
    # lock_accounts), so concurrent transactions never hold two accounts in opposite orders.
    # A debit the account cannot cover raises with earlier moves made: the caller rolls back.
    for account, amount in sorted(entries, key=lambda e: e[0].id):
        if not _move(account.id, amount, release_held=held.get(account.id, 0)):
            raise InsufficientFunds()
        db.session.add(LedgerPosting(transaction_id=transaction.id, account_id=account.id,
                                     amount=amount, currency=account.currency))
    db.session.flush()
    for account, _ in entries:
        db.session.expire(account, ["balance", "held"])
    return transaction


def transfer(key: str, kind: str, source: LedgerAccount, target: LedgerAccount, amount: int,
             **kwargs) -> LedgerTransaction:
    """Move `amount` from `source` to `target` (same currency)."""
    if amount <= 0:
        raise ValueError("a transfer moves a positive amount")
    return post(key, kind, [(source, -amount), (target, amount)], **kwargs)


# -- holds ---------------------------------------------------------------------------------------


def place_hold(key: str, account: LedgerAccount, amount: int, *, tenant_id: int | None = None,
               order_id: int | None = None) -> LedgerHold:
    """Reserve `amount` of the account's available funds; InsufficientFunds when it is short."""
    existing = db.session.scalar(select(LedgerHold).where(LedgerHold.idempotency_key == key))
    if existing is not None:
        return existing
    reserved = db.session.execute(
        update(LedgerAccount)
        .where(LedgerAccount.id == account.id,
               LedgerAccount.balance - LedgerAccount.held >= amount)
        .values(held=LedgerAccount.held + amount)
        .execution_options(synchronize_session=False)
    ).rowcount
    if reserved != 1:
        raise InsufficientFunds()
    hold = LedgerHold(idempotency_key=key, account_id=account.id, amount=amount,
                      status="active", tenant_id=tenant_id, order_id=order_id)
    db.session.add(hold)
    db.session.flush()
    db.session.expire(account, ["held"])
    return hold


def _settle(hold: LedgerHold, status: str) -> bool:
    """Compare-and-set the hold from active to `status`; False if someone settled it already."""
    changed = db.session.execute(
        update(LedgerHold).where(LedgerHold.id == hold.id, LedgerHold.status == "active")
        .values(status=status, settled_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.expire(hold, ["status", "settled_at"])
    return changed == 1


def release_hold(hold: LedgerHold) -> bool:
    """Give the reserved funds back (idempotent)."""
    if not _settle(hold, "released"):
        return False
    db.session.execute(
        update(LedgerAccount).where(LedgerAccount.id == hold.account_id)
        .values(held=LedgerAccount.held - hold.amount)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(hold.account, ["held"])
    return True


def capture_hold(hold: LedgerHold, key: str, kind: str, target: LedgerAccount, **kwargs
                 ) -> LedgerTransaction | None:
    """Post the reserved funds to `target` (idempotent: None if already settled)."""
    if not _settle(hold, "captured"):
        return existing_transaction(key)
    account = hold.account
    return post(key, kind, [(account, -hold.amount), (target, hold.amount)],
                _held={account.id: hold.amount}, **kwargs)


def holds_of_order(order_id: int, status: str | None = "active") -> list[LedgerHold]:
    return holds_of_orders([order_id], status)


def holds_of_orders(order_ids: list[int], status: str | None = "active") -> list[LedgerHold]:
    query = select(LedgerHold).where(LedgerHold.order_id.in_(order_ids)).order_by(LedgerHold.id)
    if status:
        query = query.where(LedgerHold.status == status)
    return list(db.session.scalars(query))


def lock_accounts(account_ids) -> None:
    """Lock these accounts' rows until the transaction ends, lowest id first — the order `post`
    moves them in. A transaction that posts several times over different accounts (a delivery
    batch) locks them all first, so that it cannot hold one another transaction waits for
    while waiting for one that transaction holds. (SQLite locks the whole database instead.)"""
    ids = sorted(set(account_ids))
    if ids:
        db.session.execute(select(LedgerAccount.id).where(LedgerAccount.id.in_(ids))
                           .order_by(LedgerAccount.id).with_for_update())


# -- reading ------------------------------------------------------------------------------------


def statement(account: LedgerAccount, limit: int = 100
              ) -> list[tuple[LedgerPosting, LedgerTransaction]]:
    """The account's latest postings with their transactions, newest first."""
    rows = db.session.execute(
        select(LedgerPosting, LedgerTransaction)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(LedgerPosting.account_id == account.id)
        .order_by(LedgerPosting.id.desc()).limit(limit)
    ).all()
    return [(posting, transaction) for posting, transaction in rows]


def check_ledger() -> list[str]:
    """Every invariant of the ledger; an empty list means it all adds up."""
    problems = []
    sums = dict(db.session.execute(
        select(LedgerPosting.account_id, func.sum(LedgerPosting.amount))
        .group_by(LedgerPosting.account_id)).all())
    holds = dict(db.session.execute(
        select(LedgerHold.account_id, func.sum(LedgerHold.amount))
        .where(LedgerHold.status == "active").group_by(LedgerHold.account_id)).all())
    for account in db.session.scalars(select(LedgerAccount).order_by(LedgerAccount.id)):
        label = f"account {account.id} ({account.kind}, shop {account.tenant_id}, " \
                f"buyer {account.customer_id}, {account.currency})"
        if int(sums.get(account.id) or 0) != account.balance:
            problems.append(f"{label}: balance {account.balance} but postings sum to "
                            f"{int(sums.get(account.id) or 0)}")
        if int(holds.get(account.id) or 0) != account.held:
            problems.append(f"{label}: held {account.held} but active holds sum to "
                            f"{int(holds.get(account.id) or 0)}")
        if not account.allow_negative and account.balance < 0:
            problems.append(f"{label}: negative balance {account.balance}")
    unbalanced = db.session.execute(
        select(LedgerPosting.transaction_id, LedgerPosting.currency)
        .group_by(LedgerPosting.transaction_id, LedgerPosting.currency)
        .having(func.sum(LedgerPosting.amount) != 0)).all()
    problems += [f"transaction {tid} does not balance in {cur}" for tid, cur in unbalanced]
    return problems
