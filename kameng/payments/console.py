"""Payment settings in both consoles: a shop's gateway credentials, payment options and wallet
at the platform; the platform's own gateway accounts and the credit it grants to shops' wallets.

Credentials are write-only: secrets are shown masked (••••last4), an empty input keeps the stored
value, and the audit log names the fields changed, never their values.

Registered by create_app() (kameng/__init__.py, _register_blueprints): `shop_payments` under
/admin on shop hosts, `platform_payments_admin` under /payments on the admin host.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError

from ..audit.service import record
from ..errors import DomainError
from ..extensions import db
from ..forms import EmptyForm, committing
from ..ledger import service as ledger
from ..merchant.console import console_blueprint, guard_blueprint, staff_actor
from ..money import format_money
from ..superadmin.console import platform_actor, platform_blueprint
from ..tenants import service as tenants
from ..tenants.hosts import LANDING, current_tenant, public_url
from ..tenants.models import Tenant
from . import registry
from .forms import PaymentOptionsForm, WalletCreditForm, credentials_form
from .gateways.base import Gateway
from .models import PaymentAccount, PlatformPaymentAccount

log = logging.getLogger(__name__)

bp = console_blueprint("shop_payments", __name__)
guard_blueprint(bp, read="payments.manage", write="payments.manage")
platform_bp = platform_blueprint("platform_payments_admin", __name__)

STATEMENT_LINES = 50


def _gateway_or_404(name: str) -> type[Gateway]:
    kind = registry.configurable_gateways().get(name)
    if kind is None:
        abort(404)
    return kind


def _confirm_button() -> None:
    """A plain POST button: CSRFProtect has checked the token; this keeps the habit explicit."""
    if not EmptyForm().validate_on_submit():
        abort(400)


@dataclass
class GatewaySection:
    """One gateway on a settings page: its masked credentials and its form."""

    name: str
    kind: type[Gateway]
    account: PaymentAccount | PlatformPaymentAccount | None
    shown: dict[str, str]
    form: object
    notify_url: str  # where the gateway posts its notifications (for its dashboard)


def _sections(account_of: Callable[[str], PaymentAccount | PlatformPaymentAccount | None],
              notify_url: Callable[[str], str],
              submitted: tuple[str, object] | None = None) -> list[GatewaySection]:
    sections = []
    for name, kind in registry.configurable_gateways().items():
        account = account_of(name)
        shown = registry.masked_credentials(account, kind)
        if submitted is not None and submitted[0] == name:
            form = submitted[1]
        else:
            form = credentials_form(kind, shown=shown, enabled=bool(account and account.enabled),
                                    bind=False)
        sections.append(GatewaySection(name, kind, account, shown, form, notify_url(name)))
    return sections


def _test_connection(bind: Callable[[], Gateway]) -> None:
    """Flash what the gateway says about the stored credentials; never a 500."""
    try:
        message = bind().test_connection()
    except DomainError as error:
        flash(error.message, "error")
    except Exception as error:  # a library or network failure the gateway did not translate
        log.exception("payment gateway connection test failed")
        flash(_("The connection test failed (%(name)s). Check the credentials and "
                "try again.", name=type(error).__name__), "error")
    else:
        flash(message)
    finally:
        db.session.rollback()  # a test changes nothing


# -- the shop console: /admin/payments -------------------------------------------------------


def _options_form(shop: Tenant) -> PaymentOptionsForm:
    settings = shop.settings or {}
    return PaymentOptionsForm(formdata=None, prefix="options", data={
        "test_mode": bool(settings.get("test_mode")),
        "platform_payments": bool(settings.get("platform_payments", True)),
    })


def _shop_notify_url(gateway: str) -> str:
    """On the host the staff use: the shop's subdomain or its own domain."""
    return request.host_url.rstrip("/") + url_for("payments.notify", gateway=gateway)


def _settings_page(*, options_form=None, submitted=None, status: int = 200):
    shop = current_tenant()
    wallet = ledger.shop_wallet(shop.id, shop.currency)
    return render_template(
        "shop_payments/settings.html",
        sections=_sections(registry.shop_account, _shop_notify_url, submitted),
        options_form=options_form or _options_form(shop), offered=registry.available_methods(shop),
        wallet=wallet, statement=ledger.statement(wallet, limit=STATEMENT_LINES),
        action=EmptyForm(formdata=None),
    ), status


@bp.route("/payments", methods=["GET", "POST"])
def settings():
    """The page; a POST saves the shop's payment options (test mode, platform accounts)."""
    if request.method == "GET":
        return _settings_page()
    form = PaymentOptionsForm(prefix="options")
    if not form.validate_on_submit():
        return _settings_page(options_form=form, status=422)
    shop = db.session.get(Tenant, current_tenant().id)
    # A new dict: SQLAlchemy notices a JSON column change only when it is assigned.
    shop.settings = {**(shop.settings or {}), "test_mode": form.test_mode.data,
                     "platform_payments": form.platform_payments.data}
    record(staff_actor(), "payments.options_changed", tenant_id=shop.id,
           test_mode=form.test_mode.data, platform_payments=form.platform_payments.data)
    db.session.commit()
    flash(_("Payment options saved."))
    return redirect(url_for(".settings"))


@bp.post("/payments/gateways/<gateway>")
def gateway_save(gateway: str):
    kind = _gateway_or_404(gateway)
    shop = current_tenant()
    form = credentials_form(kind)
    if form.validate_on_submit():
        with committing(form) as attempt:
            registry.save_credentials(shop, gateway, form.values(), enabled=form.enabled.data)
            record(staff_actor(), "payments.credentials_changed", tenant_id=shop.id,
                   target=gateway, fields=form.changed_fields(), enabled=form.enabled.data)
        if not attempt.failed:
            flash(_("%(label)s settings saved.", label=kind.label))
            return redirect(url_for(".settings") + f"#gateway-{gateway}")
    return _settings_page(submitted=(gateway, form), status=422)


@bp.post("/payments/gateways/<gateway>/test")
def gateway_test(gateway: str):
    _gateway_or_404(gateway)
    _confirm_button()
    shop = current_tenant()
    _test_connection(lambda: registry.gateway_for(shop, gateway, "shop"))
    return redirect(url_for(".settings") + f"#gateway-{gateway}")


# -- the super-admin console: /payments -----------------------------------------------------


def _platform_ledger() -> list[tuple[str, object]]:
    currency = _platform_currency()
    return [(label, ledger.get_account(kind, currency=currency)) for kind, label in (
        ("platform_gateway", _("Collected through the platform's accounts")),
        ("platform_fees", _("Fees charged to shops")),
        ("platform_revenue", _("Supply cost paid by shops")),
        ("platform_funding", _("Credit granted to shops")),
    )]


def _platform_currency() -> str:
    return current_app.config.get("CURRENCY", "CNY")


def _platform_notify_url(gateway: str) -> str:
    """The platform's notify URL lives on the bare platform domain (payments.views)."""
    domain = current_app.config["PLATFORM_DOMAIN"]
    path = current_app.url_map.bind(domain, subdomain=LANDING).build(
        "platform_payments.platform_notify", {"gateway": gateway})
    return public_url(domain, path)


def _accounts_page(*, submitted=None, status: int = 200):
    return render_template(
        "platform_payments/accounts.html",
        sections=_sections(registry.platform_account, _platform_notify_url, submitted),
        platform_ledger=_platform_ledger(), action=EmptyForm(formdata=None),
    ), status


@platform_bp.get("/")
def accounts():
    return _accounts_page()


@platform_bp.post("/gateways/<gateway>", endpoint="gateway_save")
def platform_gateway_save(gateway: str):
    kind = _gateway_or_404(gateway)
    form = credentials_form(kind)
    if form.validate_on_submit():
        with committing(form) as attempt:
            registry.save_credentials(None, gateway, form.values(), enabled=form.enabled.data)
            record(platform_actor(), "payments.credentials_changed", tenant_id=None,
                   target=f"platform:{gateway}", fields=form.changed_fields(),
                   enabled=form.enabled.data)
        if not attempt.failed:
            flash(_("The platform's %(label)s account is saved.", label=kind.label))
            return redirect(url_for(".accounts") + f"#gateway-{gateway}")
    return _accounts_page(submitted=(gateway, form), status=422)


@platform_bp.post("/gateways/<gateway>/test", endpoint="gateway_test")
def platform_gateway_test(gateway: str):
    _gateway_or_404(gateway)
    _confirm_button()
    _test_connection(lambda: registry.gateway_for(None, gateway, "platform"))
    return redirect(url_for(".accounts") + f"#gateway-{gateway}")


@platform_bp.get("/wallets")
def wallet_lookup():
    """The form on the accounts page: a shop's address -> its wallet page."""
    try:
        tenant = tenants.get_tenant(request.args.get("shop", "")[:64])
    except DomainError as error:
        flash(error.message, "error")
        return redirect(url_for(".accounts") + "#wallets")
    return redirect(url_for(".wallet", tenant_id=tenant.id))


def _wallet_page(tenant: Tenant, form: WalletCreditForm, status: int = 200):
    wallet = ledger.shop_wallet(tenant.id, tenant.currency)
    return render_template(
        "platform_payments/wallet.html", tenant=tenant, wallet=wallet, form=form,
        statement=ledger.statement(wallet, limit=STATEMENT_LINES),
    ), status


@platform_bp.route("/wallets/<int:tenant_id>", methods=["GET", "POST"])
def wallet(tenant_id: int):
    """A shop's wallet at the platform; a POST credits it ("platform funding")."""
    tenant = db.session.get(Tenant, tenant_id)
    if tenant is None:
        abort(404)
    if request.method == "GET":
        return _wallet_page(tenant, WalletCreditForm(
            currency=tenant.currency, data={"token": secrets.token_urlsafe(24)}))
    form = WalletCreditForm(currency=tenant.currency)
    if not form.validate_on_submit():
        return _wallet_page(tenant, form, 422)
    key = f"platform-funding:{tenant.id}:{form.token.data}"
    done = _("%(amount)s credited to %(shop)s's wallet.",
             amount=format_money(form.minor, tenant.currency), shop=tenant.name)
    if ledger.existing_transaction(key) is None:
        try:
            ledger.transfer(
                key, "platform_funding",
                ledger.get_account("platform_funding", currency=tenant.currency),
                ledger.shop_wallet(tenant.id, tenant.currency), form.minor,
                tenant_id=tenant.id, memo=form.memo.data.strip())
            record(platform_actor(), "wallet.credit", tenant_id=tenant.id, target=tenant.slug,
                   amount=form.minor, currency=tenant.currency, memo=form.memo.data.strip())
            db.session.commit()
        except IntegrityError:  # the same form sent twice at once: the other one credited it
            db.session.rollback()
            done = _("This credit was already made; nothing more was credited.")
        except DomainError as error:
            db.session.rollback()
            form.fail(error)
            return _wallet_page(tenant, form, 422)
    else:
        done = _("This credit was already made (the form was sent twice); nothing more was "
                 "credited.")
    flash(done)
    return redirect(url_for(".wallet", tenant_id=tenant.id))
