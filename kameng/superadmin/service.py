"""Operations on platform staff (super-admins)."""

from __future__ import annotations

from ..security.auth import authenticate, new_account
from .models import PlatformUser


def create_platform_user(*, email: str, password: str, name: str = "") -> PlatformUser:
    return new_account(
        PlatformUser,
        email=email,
        password=password,
        taken="A super-admin with this e-mail exists.",
        name=(name or "").strip()[:120],
    )


def authenticate_platform_user(email: str, password: str) -> PlatformUser | None:
    return authenticate(PlatformUser, email, password)
