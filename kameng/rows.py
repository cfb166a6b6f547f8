"""Row helpers: loading by an id that came from a user, and race-free create-if-missing."""

from __future__ import annotations

from .extensions import db

MAX_ROW_ID = 2**31 - 1  # ids live in 32-bit integer columns


def row_by_id(model, ident):
    """The row of `model` with primary key `ident`, or None (never a database error)."""
    try:
        number = int(ident)
    except (TypeError, ValueError):
        return None
    if not 1 <= number <= MAX_ROW_ID:
        return None
    return db.session.get(model, number)


def insert_or_ignore(model, values: dict, conflict_columns: list[str]) -> None:
    """INSERT … ON CONFLICT DO NOTHING: two transactions creating the same row make one."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    dialect = db.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    db.session.execute(
        insert(model).values(**values).on_conflict_do_nothing(index_elements=conflict_columns)
    )
