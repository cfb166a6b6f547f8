"""The tenant scoping guard: a forgotten tenant filter reads and writes nothing of another shop.

Every shop-owned model mixes in `TenantScoped`. While a tenant is bound to a session
(`tenant_scope(tenant_id)`, done for every shop request and every job), each ORM query is
narrowed to that tenant with `with_loader_criteria`, new rows are stamped with its id and rows
of another tenant are refused at flush. With no tenant bound a query on a shop-owned table
raises, unless the caller opted out with `platform_scope()` — the one greppable way for
platform-wide code (super-admin console, workers, billing) to see every shop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import ForeignKey, event, inspect
from sqlalchemy.orm import (
    Mapped,
    ORMExecuteState,
    Session,
    declared_attr,
    mapped_column,
    with_loader_criteria,
)
from sqlalchemy.sql.util import find_tables

from ..extensions import db

TENANT_KEY = "kameng.tenant_id"
PLATFORM_KEY = "kameng.platform_scope"


class TenantScopeError(RuntimeError):
    """Code touched shop-owned rows outside its tenant: a programming error, never user input."""


class TenantScoped:
    """Mixin for every shop-owned table: a non-null, indexed `tenant_id`.

    A table whose rows hang off another shop-owned row may set `tenant_via_parent = True` and
    declare a composite foreign key (tenant_id, parent_id) -> parent (tenant_id, id) instead:
    one check that also proves the row and its parent belong to the same shop.
    """

    tenant_via_parent = False

    @declared_attr
    def tenant_id(cls) -> Mapped[int]:
        if cls.tenant_via_parent:
            return mapped_column(nullable=False, index=True)
        return mapped_column(
            ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True
        )


def _session(session: Session | None) -> Session:
    return session if session is not None else db.session()


def bind_tenant(tenant_id: int, session: Session | None = None) -> None:
    """Bind `tenant_id` to the session for the rest of its life (one request, one job)."""
    _session(session).info[TENANT_KEY] = int(tenant_id)


def bound_tenant_id(session: Session | None = None) -> int | None:
    return _session(session).info.get(TENANT_KEY)


@contextmanager
def tenant_scope(tenant_id: int, session: Session | None = None) -> Iterator[None]:
    """Work inside one shop: queries see only its rows, new rows become its rows."""
    s = _session(session)
    previous = s.info.get(TENANT_KEY)
    s.info[TENANT_KEY] = int(tenant_id)
    try:
        yield
    finally:
        if previous is None:
            s.info.pop(TENANT_KEY, None)
        else:
            s.info[TENANT_KEY] = previous


@contextmanager
def platform_scope(session: Session | None = None) -> Iterator[None]:
    """Opt out of tenant scoping: platform-wide code that must see every shop's rows.

    Grep for `platform_scope` to review every such place.
    """
    s = _session(session)
    saved = (s.info.get(TENANT_KEY), s.info.get(PLATFORM_KEY))
    s.info.pop(TENANT_KEY, None)
    s.info[PLATFORM_KEY] = True
    try:
        yield
    finally:
        tenant, platform = saved
        if tenant is not None:
            s.info[TENANT_KEY] = tenant
        if platform:
            s.info[PLATFORM_KEY] = platform
        else:
            s.info.pop(PLATFORM_KEY, None)


def enter_platform_scope(session: Session | None = None) -> None:
    """Opt the whole session out of tenant scoping (a super-admin request, a platform job)."""
    s = _session(session)
    s.info.pop(TENANT_KEY, None)
    s.info[PLATFORM_KEY] = True


def _scoped_tables() -> frozenset:
    return frozenset(
        m.local_table for m in db.Model.registry.mappers if issubclass(m.class_, TenantScoped)
    )


def _touches_scoped_table(state: ORMExecuteState) -> bool:
    """Whether the statement reads or writes any shop-owned table (joins, subqueries too)."""
    scoped = _scoped_tables()
    if any(m.local_table in scoped for m in state.all_mappers):
        return True
    found = find_tables(
        state.statement, check_columns=True, include_aliases=True, include_joins=True,
        include_crud=True,
    )
    return any(table in scoped for table in found)


@event.listens_for(Session, "do_orm_execute")
def _narrow_to_tenant(state: ORMExecuteState) -> None:
    if state.is_column_load or not (state.is_select or state.is_update or state.is_delete):
        return
    info = state.session.info
    tenant_id = info.get(TENANT_KEY)
    if tenant_id is None:
        if not info.get(PLATFORM_KEY) and _touches_scoped_table(state):
            raise TenantScopeError(
                "query on a shop-owned table with no tenant bound: "
                "use tenant_scope(tenant_id) or, for platform-wide code, platform_scope()"
            )
        return
    state.statement = state.statement.options(
        with_loader_criteria(
            TenantScoped,
            lambda cls: cls.tenant_id == tenant_id,
            include_aliases=True,
        )
    )


def _owner_id(obj: TenantScoped) -> int | None:
    if obj.tenant_id is not None:
        return obj.tenant_id
    tenant = getattr(obj, "tenant", None)
    return getattr(tenant, "id", None)


@event.listens_for(Session, "before_flush")
def _stamp_and_refuse_foreign_rows(session: Session, flush_context, instances) -> None:
    tenant_id = session.info.get(TENANT_KEY)
    platform = session.info.get(PLATFORM_KEY)
    for obj in session.new:
        if not isinstance(obj, TenantScoped):
            continue
        owner = _owner_id(obj)
        if tenant_id is None:
            if not platform:
                raise TenantScopeError(
                    f"new {type(obj).__name__} with no tenant bound: use tenant_scope()"
                )
            if owner is None:
                raise TenantScopeError(f"new {type(obj).__name__} needs a tenant_id")
        elif owner is None:
            obj.tenant_id = tenant_id
        elif owner != tenant_id:
            raise TenantScopeError(
                f"refusing to write a {type(obj).__name__} of tenant {owner} "
                f"while tenant {tenant_id} is bound"
            )
    for obj in list(session.dirty) + list(session.deleted):
        if not isinstance(obj, TenantScoped):
            continue
        moved = inspect(obj).attrs.tenant_id.history.deleted
        if tenant_id is not None and (obj.tenant_id != tenant_id or moved):
            raise TenantScopeError(
                f"refusing to change a {type(obj).__name__} of tenant "
                f"{(moved or [obj.tenant_id])[0]} while tenant {tenant_id} is bound"
            )
        if tenant_id is None and not platform:
            raise TenantScopeError(
                f"changing a {type(obj).__name__} with no tenant bound: use tenant_scope()"
            )
