"""Loading a row by an id that came from a user: out-of-range ids are simply not found."""

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
