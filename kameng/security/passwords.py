"""Password hashing with Argon2id (argon2-cffi); the cost comes from the app's settings."""

from __future__ import annotations

from contextlib import suppress

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app


def _hasher() -> PasswordHasher:
    hasher = current_app.extensions.get("kameng.password_hasher")
    if hasher is None:
        hasher = PasswordHasher(
            time_cost=current_app.config["ARGON2_TIME_COST"],
            memory_cost=current_app.config["ARGON2_MEMORY_KIB"],
            parallelism=1,
        )
        current_app.extensions["kameng.password_hasher"] = hasher
    return hasher


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; a missing or malformed hash never matches."""
    if not password_hash:
        # Spend the same time as a real check, so a missing account is not revealed by timing.
        _burn(password)
        return False
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)


def _dummy_hash() -> str:
    dummy = current_app.extensions.get("kameng.password_dummy")
    if dummy is None:
        dummy = _hasher().hash("kameng-dummy-password")
        current_app.extensions["kameng.password_dummy"] = dummy
    return dummy


def _burn(password: str) -> None:
    with suppress(VerificationError, InvalidHashError):
        _hasher().verify(_dummy_hash(), password + "\0not-the-dummy")
