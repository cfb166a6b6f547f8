"""One-time links that let a super-admin open a shop's console as read-only support.

Cookies are host-only, so the admin host cannot hand its session to a shop host. Instead it
signs a short-lived token (itsdangerous, 60 seconds) naming the shop, the super-admin and a
random nonce; the shop host redeems it once — the nonce is counted in the rate-limit storage
(Redis in production, shared by every process) and a second use is refused.
"""

from __future__ import annotations

import secrets

from flask import current_app
from flask_babel import gettext as _
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ..errors import PermissionDenied
from ..extensions import db, limiter

SALT = "kameng-impersonate"
MAX_AGE = 60  # seconds a link may wait before it is used
SESSION_SECONDS = 3600  # how long the read-only session lasts


def _serializer() -> URLSafeTimedSerializer:
    keys = [*(current_app.config.get("SECRET_KEY_FALLBACKS") or []), current_app.secret_key]
    return URLSafeTimedSerializer(keys, salt=SALT)


def issue(tenant_id: int, admin_id: int) -> str:
    """A signed token for one read-only support session of `tenant_id` by `admin_id`."""
    return _serializer().dumps({"t": tenant_id, "a": admin_id, "n": secrets.token_hex(16)})


def redeem(token: str, tenant_id: int):
    """The super-admin a valid, unexpired, unused token of this shop names (once only)."""
    from ..superadmin.models import PlatformUser

    refused = PermissionDenied(_("This support link is invalid, has expired or was already "
                                 "used. Open a new one from the platform console."))
    try:
        data = _serializer().loads(token, max_age=MAX_AGE)
    except (SignatureExpired, BadSignature):
        raise refused from None
    if not isinstance(data, dict) or data.get("t") != tenant_id:
        raise refused
    nonce = str(data.get("n", ""))
    if not nonce or limiter.storage.incr(f"impersonate-once:{nonce}", MAX_AGE * 5) != 1:
        raise refused
    admin = db.session.get(PlatformUser, int(data.get("a", 0)))
    if admin is None or not admin.is_active:
        raise refused
    return admin
