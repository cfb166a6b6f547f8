"""Payment pages and endpoints: the sandbox's payment page and every gateway's notify URL."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, request
from sqlalchemy import select

from ..extensions import csrf, db
from ..forms import EmptyForm
from ..orders.models import Order
from ..storefront.views import render_shop
from ..tenants.hosts import current_tenant
from ..workers.outbox import after_payment
from .models import Payment
from .registry import GATEWAYS, gateway_for, load_gateways, sandbox_allowed
from .service import receive_notification

bp = Blueprint("payments", __name__)


def _sandbox_payment(reference: str) -> tuple[Payment, Order]:
    shop = current_tenant()
    if not sandbox_allowed(shop):
        abort(404)
    payment = db.session.scalar(select(Payment).where(Payment.reference == reference,
                                                      Payment.gateway == "sandbox"))
    if payment is None:
        abort(404)
    return payment, db.session.get(Order, payment.order_id)


def _return_to() -> str:
    target = request.values.get("return", "")
    return target if target.startswith("/order/") and "//" not in target else "/"


@bp.get("/pay/sandbox/<reference>")
def sandbox_page(reference: str):
    payment, order = _sandbox_payment(reference)
    return render_shop("orders/sandbox.html", payment=payment, order=order, form=EmptyForm(),
                       back=_return_to())


@bp.post("/pay/sandbox/<reference>")
def sandbox_submit(reference: str):
    """The buyer pressed pay or fail: the sandbox signs the notification a real gateway would
    send and hands it to the notify path."""
    payment, _ = _sandbox_payment(reference)
    if not EmptyForm().validate_on_submit():
        abort(400)
    shop = current_tenant()
    status = "succeeded" if request.form.get("outcome") == "pay" else "failed"
    gateway = gateway_for(shop, "sandbox", "shop")
    body, headers = gateway.signed_notification(payment, status)
    db.session.commit()
    outcome = receive_notification(shop, "sandbox", owner="shop", body=body, headers=headers,
                                   form={})
    after_payment(outcome.order_id)
    return redirect(_return_to())


def _notified(tenant, gateway: str, owner: str):
    """Hand one notification (POST body/form, or GET query for gateways that notify by GET)
    to the payments service, then start the delivery it paid for."""
    if request.method == "GET":
        kind = GATEWAYS.get(gateway)
        if kind is None or not kind.notify_by_get:
            abort(405)
        body, form = b"", request.args
    else:
        body, form = request.get_data(cache=True), request.form
    outcome = receive_notification(tenant, gateway, owner=owner, body=body,
                                   headers=request.headers, form=form)
    after_payment(outcome.order_id)
    return outcome.body, outcome.status_code, {**outcome.headers, "Cache-Control": "no-store"}


@bp.route("/pay/notify/<gateway>", methods=["GET", "POST"])
@csrf.exempt
def notify(gateway: str):
    """A gateway's server-to-server notification for a payment to this shop's own account."""
    load_gateways()
    return _notified(current_tenant(), gateway, "shop")


# The platform's notify URL lives on the bare platform domain (no shop host): the verified
# event names the shop.
platform_bp = Blueprint("platform_payments", __name__)


@platform_bp.route("/pay/platform/notify/<gateway>", methods=["GET", "POST"])
@csrf.exempt
def platform_notify(gateway: str):
    load_gateways()
    return _notified(None, gateway, "platform")


