"""Building blocks of the super-admin console: blueprints only platform staff can reach."""

from __future__ import annotations

from flask import Blueprint, request
from flask_login import current_user

from ..audit.service import Actor
from ..extensions import login as login_manager
from ..tenants.scoping import enter_platform_scope

PUBLIC_ENDPOINTS = {"superadmin.login", "superadmin.login_code"}


def require_platform_staff():
    # The platform console sees every shop: the explicit opt-out of tenant scoping.
    enter_platform_scope()
    if request.endpoint not in PUBLIC_ENDPOINTS and not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def platform_blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint of the super-admin console (register it on the admin site)."""
    bp = Blueprint(name, import_name, template_folder="templates")
    bp.before_request(require_platform_staff)
    login_manager.blueprint_login_views[name] = "superadmin.login"
    return bp


def platform_actor() -> Actor:
    return Actor.of(current_user, ip=request.remote_addr or "")
