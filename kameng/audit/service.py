"""Recording and reading audit events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, or_, select

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


@dataclass(frozen=True)
class EventFilter:
    """What an audit page asks for; every field optional."""

    tenant_id: int | None = None  # one shop's events (a shop's own page always sets it)
    action: str = ""  # exact, or a prefix ending in "." ("auth." for every login event)
    actor: str = ""  # part of the actor's e-mail
    text: str = ""  # part of the target, the action or the actor's e-mail
    since: date | None = None
    until: date | None = None  # inclusive


def search_events(query: EventFilter, *, page: int = 1, per_page: int = 50
                  ) -> tuple[list[AuditEvent], bool]:
    """One page of matching events, newest first, and whether there is a next page."""
    statement = select(AuditEvent)
    if query.tenant_id is not None:
        statement = statement.where(AuditEvent.tenant_id == query.tenant_id)
    if query.action:
        if query.action.endswith("."):
            statement = statement.where(AuditEvent.action.startswith(query.action,
                                                                     autoescape=True))
        else:
            statement = statement.where(AuditEvent.action == query.action)
    if query.actor:
        statement = statement.where(func.lower(AuditEvent.actor_email).contains(
            query.actor.lower(), autoescape=True))
    if query.text:
        needle = query.text.lower()
        statement = statement.where(or_(
            func.lower(AuditEvent.target).contains(needle, autoescape=True),
            func.lower(AuditEvent.action).contains(needle, autoescape=True),
            func.lower(AuditEvent.actor_email).contains(needle, autoescape=True),
        ))
    if query.since is not None:
        start = datetime.combine(query.since, time.min, tzinfo=UTC)
        statement = statement.where(AuditEvent.created_at >= start)
    if query.until is not None:
        end = datetime.combine(query.until + timedelta(days=1), time.min, tzinfo=UTC)
        statement = statement.where(AuditEvent.created_at < end)
    page = max(page, 1)
    rows = list(db.session.scalars(
        statement.order_by(AuditEvent.id.desc()).offset((page - 1) * per_page)
        .limit(per_page + 1)))
    return rows[:per_page], len(rows) > per_page


def known_actions(tenant_id: int | None = None) -> list[str]:
    """The actions that occur (for the filter's choices)."""
    statement = select(AuditEvent.action).distinct().order_by(AuditEvent.action)
    if tenant_id is not None:
        statement = statement.where(AuditEvent.tenant_id == tenant_id)
    return list(db.session.scalars(statement))
