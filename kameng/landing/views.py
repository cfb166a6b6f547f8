"""The landing page on the bare platform domain (sign-up arrives with the billing work)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template
from sqlalchemy import func, select

from ..extensions import db
from ..tenants.hosts import public_url
from ..tenants.models import Tenant

bp = Blueprint("landing", __name__, template_folder="templates")


@bp.get("/")
def home():
    shops = db.session.scalar(
        select(func.count()).select_from(Tenant).where(Tenant.status == "active")
    )
    return render_template(
        "landing/home.html", shops=shops, admin_url=public_url(current_app.config["ADMIN_HOST"])
    )
