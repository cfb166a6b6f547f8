"""Which site a request is for: the super-admin console, the platform landing page, or a shop.

The kind of site follows from the host name alone (the admin host, the bare platform domain,
anything else is a shop). A shop host is mapped to its tenant id through the `domains` table,
cached per process for a short TTL (host names rarely change). The tenant row itself is read
fresh on every request by primary key, so a suspension or a new theme shows at once in
every process.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache
from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import event, or_, select
from sqlalchemy.orm import Session

from ..extensions import db
from .models import Domain, Tenant

ADMIN = "admin"  # the super-admin console
LANDING = "landing"  # the platform's own landing and sign-up pages
SHOP = "shop"  # a tenant's shop: storefront and, under /admin, its console

CONSOLE_PREFIX = "/admin"


@dataclass(frozen=True)
class Site:
    kind: str  # ADMIN, LANDING or SHOP
    host: str  # lower-case, without port
    area: str  # "admin", "landing", "console" (a shop's /admin) or "storefront"
    tenant_id: int | None = None  # the shop's id; None on a shop host that nobody owns


def normalize_host(raw: str | None) -> str:
    """Lower-case, without port or trailing dot: 'Demo.LocalHost:8000' -> 'demo.localhost'."""
    host = (raw or "").strip().lower()
    if host.startswith("["):  # an IPv6 literal, [::1]:8000
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host.rstrip(".")


def site_kind(host: str, config: Any) -> str:
    if host == config["ADMIN_HOST"]:
        return ADMIN
    if host in (config["PLATFORM_DOMAIN"], f"www.{config['PLATFORM_DOMAIN']}"):
        return LANDING
    return SHOP


def site_area(kind: str, path: str) -> str:
    if kind != SHOP:
        return kind
    if path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/"):
        return "console"
    return "storefront"


def subdomain_host(slug: str, config: Any | None = None) -> str:
    config = config if config is not None else current_app.config
    return f"{slug}.{config['PLATFORM_DOMAIN']}"


def public_url(host: str, path: str = "/") -> str:
    """An absolute link to `path` on another of our hosts, on the scheme and port in use."""
    if has_request_context():
        scheme = request.scheme
        raw = request.host
        port = raw.rsplit(":", 1)[1] if raw.count(":") == 1 else None
    else:
        scheme = current_app.config["PREFERRED_URL_SCHEME"]
        port = current_app.config.get("PUBLIC_PORT")
    default = {"http": "80", "https": "443"}.get(scheme)
    suffix = f":{port}" if port and str(port) != default else ""
    return f"{scheme}://{host}{suffix}{path}"


def absolute_url_for(endpoint: str, **values) -> str:
    """An absolute link on the host of the current request (for gateways' return URLs).

    url_for(_external=True) would put the routing pseudo-subdomain (shop., admin.) in front of
    the host, so the scheme and host of the request are used instead.
    """
    from flask import url_for

    return f"{request.scheme}://{request.host}{url_for(endpoint, **values)}"


class HostResolver:
    """Host name -> tenant id (or None), cached per process for `ttl` seconds."""

    def __init__(self, ttl: int, maxsize: int = 20_000):
        self.ttl = ttl
        self._cache: TTLCache | None = TTLCache(maxsize=maxsize, ttl=ttl) if ttl > 0 else None
        self._lock = threading.Lock()

    def resolve(self, host: str) -> int | None:
        if self._cache is not None:
            with self._lock:
                try:
                    return self._cache[host]
                except KeyError:
                    pass
        tenant_id = self._lookup(host)
        if self._cache is not None:
            with self._lock:
                self._cache[host] = tenant_id
        return tenant_id

    def peek(self, host: str) -> int | None:
        """The shop id cached for `host`, without reading the database: None when there is
        none (an unknown host, or not asked within the TTL)."""
        if self._cache is None:
            return None
        with self._lock:
            return self._cache.get(host)

    def forget(self) -> None:
        """Drop every cached answer (after a shop or a domain changed in this process)."""
        if self._cache is not None:
            with self._lock:
                self._cache.clear()

    @staticmethod
    def _lookup(host: str) -> int | None:
        from .scoping import platform_scope

        with platform_scope():  # host resolution runs before any shop is known
            return db.session.scalar(
                select(Domain.tenant_id).where(
                    Domain.host == host, or_(Domain.kind == "subdomain", Domain.verified)
                )
            )


def resolver(app: Flask | None = None) -> HostResolver:
    return (app or current_app).extensions["kameng.hosts"]


def forget_hosts() -> None:
    """Make this process see shop and domain changes at once (others see them within the TTL)."""
    resolver().forget()


def current_site() -> Site:
    """The site of the current request, resolved once and kept on `g`."""
    site = g.get("_kameng_site")
    if site is None:
        host = normalize_host(request.host)
        kind = site_kind(host, current_app.config)
        tenant_id = resolver().resolve(host) if kind == SHOP else None
        site = Site(kind=kind, host=host, area=site_area(kind, request.path), tenant_id=tenant_id)
        g._kameng_site = site
    return site


def current_tenant() -> Tenant:
    """The shop of the current request (read fresh once per request, on shop hosts only)."""
    tenant = g.get("_kameng_tenant")
    if tenant is None:
        from .scoping import platform_scope

        tenant_id = current_site().tenant_id
        with platform_scope():  # the tenants table itself is the platform's
            tenant = db.session.get(Tenant, tenant_id) if tenant_id is not None else None
        if tenant is None:
            raise LookupError("no shop for this request")
        g._kameng_tenant = tenant
    return tenant


# Shops and domains rarely change; when they do in this process, drop the cached answers
# right after the commit so the change is visible at once (other processes: within the TTL).
_HOSTS_CHANGED = "kameng.hosts_changed"


@event.listens_for(Session, "after_flush")
def _note_host_changes(session: Session, flush_context) -> None:
    changed = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(obj, Tenant | Domain) for obj in changed):
        session.info[_HOSTS_CHANGED] = True


@event.listens_for(Session, "after_commit")
def _forget_after_commit(session: Session) -> None:
    if session.info.pop(_HOSTS_CHANGED, False):
        with suppress(RuntimeError):  # no app context: nothing is cached outside one
            forget_hosts()


@event.listens_for(Session, "after_rollback")
def _keep_after_rollback(session: Session) -> None:
    session.info.pop(_HOSTS_CHANGED, None)
