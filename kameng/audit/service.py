"""Recording and reading audit events."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from ..extensions import db
from .models import AuditEvent


@dataclass(frozen=True)
class Actor:
    """Who acts: taken from the logged-in user by views, or `Actor.cli()` / `Actor.system()`."""

    kind: str
    id: int | None = None
    email: str = ""
    ip: str = ""

    @classmethod
    def cli(cls) -> Actor:
        return cls(kind="cli", email="command line")

    @classmethod
    def system(cls) -> Actor:
        return cls(kind="system", email="system")

    @classmethod
    def of(cls, account, ip: str = "") -> Actor:
        return cls(kind=account.login_kind, id=account.id, email=account.email, ip=ip or "")


def record(actor: Actor, action: str, *, tenant_id: int | None, target: str = "",
           **details) -> AuditEvent:
    """Append one audit event in the caller's transaction (so it commits with the action)."""
    event = AuditEvent(
        tenant_id=tenant_id,
        actor_kind=actor.kind,
        actor_id=actor.id,
        actor_email=actor.email,
        action=action,
        target=target[:200],
        details=details,
        ip=actor.ip,
    )
    db.session.add(event)
    db.session.flush()
    return event


def events_of_shop(tenant_id: int, limit: int = 200) -> list[AuditEvent]:
    """A shop's own audit events, newest first."""
    query = (
        select(AuditEvent)
        .where(AuditEvent.tenant_id == tenant_id)
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    )
    return list(db.session.scalars(query))
