"""Kameng (卡盟): one Flask deployment serving many white-label digital-goods shops."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask import Flask, request
from jinja2 import ChoiceLoader
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, MapAdapter

from .config import load_config
from .extensions import csrf, db, limiter, login, migrate
from .tenants.hosts import normalize_host, site_kind
from .themes import ThemedEnvironment, ThemeLoader

__all__ = ["create_app"]


class KamengFlask(Flask):
    """Flask, routing by kind of site and loading shop templates from themes."""

    jinja_environment = ThemedEnvironment

    def create_global_jinja_loader(self):
        themes = ThemeLoader(self.config["THEMES_DIR"])
        return ChoiceLoader([themes, super().create_global_jinja_loader()])

    def create_url_adapter(self, request):
        # The same path means different pages on the admin host, the landing domain and a
        # shop ("/" is three pages). Each blueprint is registered under a pseudo-subdomain
        # naming its kind of site, and every request is matched against the kind of its host.
        if request is None:
            return super().create_url_adapter(request)
        kind = site_kind(normalize_host(request.host), self.config)
        adapter = self.url_map.bind_to_environ(request.environ, server_name=None, subdomain=kind)
        adapter.__class__ = SiteMapAdapter
        return adapter


class SiteMapAdapter(MapAdapter):
    """A URL adapter whose "subdomain" is a kind of site, not a label of the host name.

    Werkzeug puts a rule's subdomain in front of the host for absolute URLs, so the redirect
    from /admin to /admin/ went to shop.<shop host> and /dashboard to admin.admin.<domain>:
    within the request's own kind of site, the host is the request's host as it is.
    """

    def get_host(self, domain_part: str | None) -> str:
        if domain_part is None or domain_part == self.subdomain:
            return self.server_name
        return super().get_host(domain_part)


class RowIdConverter(IntegerConverter):
    """`<int:…>` in every route: an id beyond the 32-bit columns is simply not found (404),
    never a database error."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)


def create_app(config: dict | None = None) -> Flask:
    """Build the application: settings, extensions, tenancy, themes, blueprints and CLI."""
    app = KamengFlask(__name__, static_folder=None, instance_relative_config=True)
    app.config.update(load_config(Path(app.instance_path)))
    if config:
        app.config.update(config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.permanent_session_lifetime = timedelta(days=app.config["SESSION_DAYS"])

    from .security import headers
    from .security.sessions import AreaSessionInterface

    app.session_interface = AreaSessionInterface()

    # Tenancy first: its before_request must run before CSRF and rate limiting look at the
    # request, so an unknown host is a plain 404.
    from . import models, pages, tenants  # noqa: F401 - models: every table is mapped

    tenants.init_app(app)
    db.init_app(app)
    _sqlite_pragmas(app)
    migrate.init_app(app, db, directory=app.config["MIGRATIONS_DIR"], render_as_batch=True)
    csrf.init_app(app)
    limiter.init_app(app)
    login.init_app(app)
    login.session_protection = "basic"
    pages.init_app(app)
    headers.init_app(app)
    from . import static_files
    from .storefront import cache as storefront_cache
    from .storefront.fast_lane import FastLane

    static_files.init_app(app)
    storefront_cache.init_app(app)
    # Shop pages kept for anonymous visitors are answered before Flask runs; ProxyFix wraps
    # the lane, so the lane sees the forwarded host and scheme.
    app.wsgi_app = FastLane(app, app.wsgi_app)
    if app.config["TRUST_PROXY"]:
        n = app.config["TRUST_PROXY"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)
    from . import i18n

    i18n.init_app(app)
    _register_blueprints(app)

    from .cli import register_commands

    register_commands(app)
    return app


def _sqlite_pragmas(app: Flask) -> None:
    """SQLite: enforce foreign keys (as PostgreSQL does), wait for locks instead of failing."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


def _register_blueprints(app: Flask) -> None:
    app.url_map.converters["int"] = RowIdConverter
    from .api import platform as _platform_api  # noqa: F401 - its routes, before registering
    from .api.console import platform_bp as platform_api_keys
    from .api.console import shop_bp as shop_api_console
    from .api.views import platform_api, shop_api
    from .appearance.console import bp as shop_appearance
    from .audit.console import platform_bp as platform_audit
    from .audit.console import shop_bp as shop_audit
    from .billing.console import bp as platform_billing
    from .billing.shop_console import bp as shop_billing
    from .billing.views import bp as billing_notify
    from .catalog.console import bp as shop_catalog
    from .delivery.console import platform_bp as platform_suppliers
    from .delivery.console import shop_bp as shop_suppliers
    from .inventory.console import bp as shop_codes
    from .inventory.console import supply_bp as supply_codes
    from .landing.views import bp as landing
    from .mail.console import bp as shop_mail
    from .mail.console import platform_bp as platform_mail
    from .members.views import bp as members
    from .merchant.staff_console import bp as shop_staff
    from .merchant.views import bp as merchant
    from .orders.console import bp as shop_orders
    from .orders.views import bp as orders
    from .payments.console import bp as shop_payments
    from .payments.console import platform_bp as platform_payments_admin
    from .payments.views import bp as payments
    from .payments.views import platform_bp as platform_payments
    from .reports.console import bp as shop_reports
    from .reports.platform_console import bp as platform_reports
    from .storefront.views import bp as storefront
    from .superadmin.supply import bp as supply
    from .superadmin.views import bp as superadmin
    from .support.console import bp as shop_support
    from .support.views import bp as support
    from .tenants.console import bp as shop_domains
    from .tenants.hosts import ADMIN, LANDING, SHOP
    from .webhooks.console import bp as shop_webhooks
    from .workers.console import bp as queue_health

    app.register_blueprint(landing, subdomain=LANDING)
    app.register_blueprint(platform_payments, subdomain=LANDING)
    app.register_blueprint(billing_notify, subdomain=LANDING)
    app.register_blueprint(platform_billing, subdomain=ADMIN, url_prefix="/billing")
    app.register_blueprint(shop_billing, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(superadmin, subdomain=ADMIN)
    app.register_blueprint(platform_audit, subdomain=ADMIN)
    app.register_blueprint(supply, subdomain=ADMIN, url_prefix="/supply")
    app.register_blueprint(supply_codes, subdomain=ADMIN, url_prefix="/supply")
    app.register_blueprint(platform_payments_admin, subdomain=ADMIN, url_prefix="/payments")
    app.register_blueprint(platform_suppliers, subdomain=ADMIN, url_prefix="/suppliers")
    app.register_blueprint(platform_mail, subdomain=ADMIN, url_prefix="/mail")
    app.register_blueprint(queue_health, subdomain=ADMIN, url_prefix="/queues")
    app.register_blueprint(platform_reports, subdomain=ADMIN, url_prefix="/dashboard")
    app.register_blueprint(merchant, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(shop_staff, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(shop_domains, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(shop_audit, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(shop_catalog, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(shop_codes, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(shop_orders, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(shop_support, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(shop_payments, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(shop_appearance, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(shop_suppliers, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(shop_webhooks, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(shop_mail, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(shop_reports, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(shop_api_console, subdomain=SHOP, url_prefix="/admin")
    app.register_blueprint(platform_api_keys, subdomain=ADMIN, url_prefix="/api-keys")
    # The REST API: signed requests, no cookies, so no CSRF tokens (kameng/api/auth.py).
    app.register_blueprint(shop_api, subdomain=SHOP, url_prefix="/api/v1")
    app.register_blueprint(platform_api, subdomain=ADMIN, url_prefix="/api/v1")
    csrf.exempt(shop_api)
    csrf.exempt(platform_api)
    app.register_blueprint(storefront, subdomain=SHOP)
    app.register_blueprint(members, subdomain=SHOP)
    app.register_blueprint(orders, subdomain=SHOP)
    app.register_blueprint(support, subdomain=SHOP)
    app.register_blueprint(payments, subdomain=SHOP)

    # The language switch works on every kind of site.
    from .i18n import choose_language

    app.add_url_rule("/lang/<code>", endpoint="choose_language", view_func=choose_language,
                     subdomain="<_site>")

    # The console's own static files are served on every kind of site (versioned URLs).
    from .static_files import app_static

    app.static_folder = "static"
    app.add_url_rule(
        "/static/<path:filename>",
        endpoint="static",
        view_func=app_static,
        subdomain="<_site>",
    )

    @app.url_value_preprocessor
    def _drop_site(endpoint, values):
        if values:
            values.pop("_site", None)

    @app.url_defaults
    def _add_site(endpoint, values):
        if "_site" not in values and app.url_map.is_endpoint_expecting(endpoint, "_site"):
            values["_site"] = site_kind(normalize_host(request.host), app.config)
