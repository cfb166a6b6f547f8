"""Signed-cookie sessions kept apart per host and per area.

Each area has its own cookie: the super-admin console (`km_admin`), a shop's staff console
(`km_staff`, path /admin), a shop's buyers (`km_shop`) and the landing site (`km_site`).
Cookies are host-only, and the signature is salted with the area and the host, so a cookie
copied from one shop (or from the storefront to the console) does not even parse elsewhere.
"""

from __future__ import annotations

from flask import Flask, current_app, request
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

from ..tenants.hosts import CONSOLE_PREFIX, normalize_host, site_area, site_kind

COOKIE_NAMES = {
    "admin": "km_admin",
    "landing": "km_site",
    "console": "km_staff",
    "storefront": "km_shop",
}


def request_area() -> tuple[str, str]:
    """(area, host) of the current request, from the host name and path alone."""
    host = normalize_host(request.host)
    return site_area(site_kind(host, current_app.config), request.path), host


class AreaSessionInterface(SecureCookieSessionInterface):
    def get_cookie_name(self, app: Flask) -> str:
        return COOKIE_NAMES[request_area()[0]]

    def get_cookie_path(self, app: Flask) -> str:
        return CONSOLE_PREFIX if request_area()[0] == "console" else "/"

    def get_cookie_domain(self, app: Flask) -> None:
        return None  # host-only, always

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            return None
        keys = [*(app.config.get("SECRET_KEY_FALLBACKS") or []), app.secret_key]
        area, host = request_area()
        return URLSafeTimedSerializer(
            keys,
            salt=f"kameng-session:{area}:{host}",
            serializer=self.serializer,
            signer_kwargs={
                "key_derivation": self.key_derivation,
                "digest_method": self.digest_method,
            },
        )
