"""Building blocks of the shop console: blueprints that only the shop's staff can reach, what
each staff role may do there, and the read-only sessions of platform support."""

from __future__ import annotations

import time
from functools import wraps

from flask import Blueprint, abort, request, session
from flask_login import current_user

from ..audit.service import Actor
from ..extensions import login as login_manager
from ..tenants.hosts import current_tenant

PUBLIC_ENDPOINTS = {
    "merchant.login",
    "merchant.login_code",  # the code step of two-factor login
    "merchant.impersonate",  # platform support arriving with a one-time link
    "shop_staff.invite_accept",  # a new staff member setting a password
}

# -- roles and permissions ---------------------------------------------------------------------

OWNER = frozenset({"owner"})
MANAGERS = frozenset({"owner", "manager"})
EVERYONE = frozenset({"owner", "manager", "support"})

# What each role may do. The owner may do everything; a manager everything but the staff,
# billing and payment credentials; support looks after buyers: orders, tickets and buyers
# (and the catalog, read-only), never card codes, prices, credentials, webhooks or staff.
PERMISSIONS: dict[str, frozenset[str]] = {
    "dashboard.view": EVERYONE,
    "orders.view": EVERYONE,
    "orders.fulfil": EVERYONE,  # deliver a manual order by hand, retry a failed delivery
    "orders.money": MANAGERS,  # mark paid, refund, cancel
    "tickets.view": EVERYONE,
    "tickets.reply": EVERYONE,
    "buyers.view": EVERYONE,
    "notices.read": EVERYONE,
    "catalog.view": EVERYONE,
    "catalog.edit": MANAGERS,  # products, prices, markup, levels, coupons, code import/void
    "codes.reveal": MANAGERS,
    "codes.export": MANAGERS,
    "appearance.edit": MANAGERS,
    "suppliers.manage": MANAGERS,
    "webhooks.manage": MANAGERS,
    "mail.view": EVERYONE,  # support staff check whether a buyer was mailed (never codes)
    "mail.manage": MANAGERS,
    "domains.manage": MANAGERS,
    "audit.view": MANAGERS,
    "staff.view": EVERYONE,
    "staff.manage": OWNER,
    "payments.manage": OWNER,
    "billing.manage": OWNER,
    "account.security": EVERYONE,  # one's own two-factor login
}


def role_may(role: str | None, permission: str) -> bool:
    return role in PERMISSIONS[permission]  # a KeyError is a typo in code, not user input


def can(permission: str) -> bool:
    """Whether the logged-in staff member may do `permission` (also in every console template).

    A read-only support session may look at everything the owner sees, and change nothing."""
    if not current_user.is_authenticated:
        return False
    return role_may(getattr(current_user, "role", None), permission)


def require_role(*roles: str):
    """Decorator: only staff with one of `roles` reach the view (others get 403)."""

    def decorate(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            if not current_user.is_authenticated or current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return guarded

    return decorate


def require_permission(permission: str):
    """Decorator: only staff whose role has `permission` reach the view (others get 403)."""
    PERMISSIONS[permission]  # fail at import time on a typo

    def decorate(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            if not can(permission):
                abort(403)
            return view(*args, **kwargs)

        return guarded

    return decorate


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def guard_blueprint(bp: Blueprint, *, read: str, write: str, **endpoints: str) -> None:
    """Check permissions before every request of `bp`: `read` for GET pages, `write` for
    anything that changes something, and `endpoints` (view name -> permission) where one
    view needs another permission."""
    for permission in (read, write, *endpoints.values()):
        PERMISSIONS[permission]  # fail at start-up on a typo

    def check():
        if not current_user.is_authenticated:
            return None  # require_staff has sent them to the login page (or it is public)
        view = (request.endpoint or "").rpartition(".")[2]
        needed = endpoints.get(view) or (read if request.method in SAFE_METHODS else write)
        if not can(needed):
            abort(403)
        return None

    bp.before_request(check)


# -- read-only support sessions ----------------------------------------------------------------

IMPERSONATION_KEY = "impersonation"
READ_ONLY_ALLOWED = {"merchant.logout", "merchant.impersonate_end"}


def impersonation() -> dict | None:
    """{"admin_id", "admin_email", "until"} while platform support looks at this console."""
    data = session.get(IMPERSONATION_KEY)
    return data if isinstance(data, dict) else None


def read_only() -> bool:
    return impersonation() is not None


def require_staff():
    """Before every console request: a logged-in staff member of this shop, or the login page.

    A read-only support session changes nothing: every unsafe request is refused (403)."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    support = impersonation()
    if support is not None:
        if time.time() > support.get("until", 0):
            from ..security.auth import end_session

            end_session()
            return login_manager.unauthorized()
        if request.method not in SAFE_METHODS and request.endpoint not in READ_ONLY_ALLOWED:
            abort(403)
    return None


def shop_context() -> dict:
    return {"shop": current_tenant(), "can": can, "read_only": read_only(),
            "impersonation": impersonation()}


def console_blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint of the shop console (register it under /admin on the shop site)."""
    bp = Blueprint(name, import_name, template_folder="templates")
    bp.before_request(require_staff)
    bp.context_processor(shop_context)
    bp.add_app_template_global(can, "can")  # also for console pages rendered elsewhere
    login_manager.blueprint_login_views[name] = "merchant.login"
    return bp


def staff_actor() -> Actor:
    """The logged-in staff member, for the audit log."""
    return Actor.of(current_user, ip=request.remote_addr or "")

