"""Building blocks of the shop console: blueprints that only the shop's staff can reach."""

from __future__ import annotations

from flask import Blueprint, request
from flask_login import current_user

from ..audit.service import Actor
from ..extensions import login as login_manager
from ..tenants.hosts import current_tenant

PUBLIC_ENDPOINTS = {"merchant.login"}


def require_staff():
    """Before every console request: a logged-in staff member of this shop, or the login page."""
    if request.endpoint not in PUBLIC_ENDPOINTS and not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def shop_context() -> dict:
    return {"shop": current_tenant()}


def console_blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint of the shop console (register it under /admin on the shop site)."""
    bp = Blueprint(name, import_name, template_folder="templates")
    bp.before_request(require_staff)
    bp.context_processor(shop_context)
    login_manager.blueprint_login_views[name] = "merchant.login"
    return bp


def staff_actor() -> Actor:
    """The logged-in staff member, for the audit log."""
    return Actor.of(current_user, ip=request.remote_addr or "")
