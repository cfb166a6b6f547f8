"""Payment operations: starting a payment, paying from the wallet, receiving notifications,
refunds.

A notification changes something only when every check passes: signature (with a non-empty
secret) and freshness (the gateway), then shop, payment, gateway, amount and currency (here).
It is stored once under UNIQUE(gateway, event_id) — a replay or a duplicate hits that key and
is acknowledged without effect — and the payment is applied with the order's compare-and-set
`mark_paid`. The gateway is told "ok" only after the commit.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, DomainError
from ..extensions import db
from ..ledger import service as ledger
from ..members.models import Customer
from ..money import apply_percent
from ..orders.models import Order
from ..orders.service import mark_paid
from ..orders.states import note
from ..tenants.models import Tenant
from ..tenants.scoping import platform_scope, tenant_scope
from .gateways.base import (
    GatewayError,
    IgnoredEvent,
    InvalidNotification,
    PaymentStart,
    ReturnUrls,
)
from .models import Payment, PaymentNotification
from .registry import BALANCE, gateway_for, method_available

log = logging.getLogger(__name__)


def new_reference(order: Order) -> str:
    return f"{order.number}-{secrets.token_hex(4)}"


def start_payment(tenant: Tenant, order: Order, urls: ReturnUrls, customer=None
                  ) -> tuple[Payment, PaymentStart]:
    """Create a payment attempt for a pending order and ask its gateway how to pay it."""
    if order.status != "pending" or order.expires_at.replace(tzinfo=UTC) <= datetime.now(UTC):
        raise Conflict(_l("This order can no longer be paid."))
    if order.payment_method == BALANCE:
        raise DomainError(_l("Pay this order from your wallet."))
    method = method_available(tenant, order.payment_method, customer)
    gateway = gateway_for(tenant, method.name, method.owner)
    payment = Payment(tenant_id=tenant.id, order_id=order.id, gateway=method.name,
                      owner=method.owner, reference=new_reference(order),
                      amount=order.amount_due, currency=order.currency, status="created")
    db.session.add(payment)
    db.session.flush()
    start = gateway.start(order, payment, urls)
    if start.external_id:
        payment.external_id = start.external_id
    note(order, f"Payment started with {gateway.label}", data={"payment": payment.reference})
    return payment, start


def starts_with_redirect(tenant: Tenant, order: Order, customer=None) -> bool:
    """Whether paying `order` means only sending the buyer on to its gateway (no page of
    ours in between): checkout then starts the payment itself."""
    if order.payment_method == BALANCE:
        return False
    try:
        method = method_available(tenant, order.payment_method, customer)
        return gateway_for(tenant, method.name, method.owner).redirects_at_start()
    except DomainError:
        return False  # the payment step explains it


def pay_with_balance(tenant: Tenant, order: Order, customer: Customer) -> Payment:
    """Pay a pending order from the buyer's wallet (InsufficientFunds when it is short)."""
    if order.customer_id != customer.id:
        raise DomainError(_l("This is not your order."))
    if order.payment_method != BALANCE:
        raise DomainError(_l("This order is paid through a gateway."))
    payment = Payment(tenant_id=tenant.id, order_id=order.id, gateway=BALANCE, owner="shop",
                      reference=new_reference(order), amount=order.amount_due,
                      currency=order.currency, status="created")
    db.session.add(payment)
    db.session.flush()
    if not mark_paid(order, payment=payment, actor=customer.email, note_text="paid from wallet"):
        raise Conflict(_l("This order can no longer be paid."))
    return payment


@dataclass
class NotifyOutcome:
    status_code: int
    body: str
    headers: dict
    order_id: int | None = None  # set when the notification paid an order


def _refuse(reason, gateway: str) -> NotifyOutcome:
    """A 400 for the gateway and a line in the log, in English whatever the shop's language:
    read by the gateway's logs and the operators, never by a buyer."""
    with force_locale("en"):
        reason = str(reason)
    log.warning("payment notification refused (%s): %s", gateway, reason)
    return NotifyOutcome(400, f"refused: {reason}\n", {"Content-Type": "text/plain"})


def receive_notification(tenant: Tenant | None, gateway_name: str, *, owner: str, body: bytes,
                         headers, form) -> NotifyOutcome:
    """Verify and apply one notification; commits before acknowledging.

    `tenant` is the shop of the notify URL (None on the platform's notify URL: the shop then
    comes from the verified event). Every refusal is a 4xx that changed nothing.
    """
    try:
        gateway = gateway_for(tenant, gateway_name, owner) if tenant is not None else None
        if gateway is None:
            gateway = _platform_gateway(gateway_name)
        event = gateway.verify_notification(body, headers, form)
    except IgnoredEvent as ignored:
        db.session.rollback()
        log.info("payment notification ignored (%s): %s", gateway_name, ignored)
        body, status, response_headers = gateway.acknowledge()
        return NotifyOutcome(status, body, response_headers)
    except DomainError as error:
        db.session.rollback()
        return _refuse(error, gateway_name)
    if tenant is None and _is_shop_topup(event.reference):
        # Shop billing, not a buyer's payment: a shop paid the platform's own account to top
        # up its wallet at the platform (kameng.billing.topups applies it and commits).
        from ..billing.topups import apply_topup_event

        problem = apply_topup_event(event, gateway_name)
        if problem:
            db.session.rollback()
            return _refuse(problem, gateway_name)
        body, status, response_headers = gateway.acknowledge()
        return NotifyOutcome(status, body, response_headers)
    shop_id = tenant.id if tenant is not None else event.tenant_id
    if shop_id is None or (event.tenant_id is not None and event.tenant_id != shop_id):
        return _refuse("the event names another shop", gateway_name)
    with tenant_scope(shop_id):
        payment = db.session.scalar(select(Payment).where(Payment.reference == event.reference))
        problem = _mismatch(payment, event, gateway_name, owner)
        if problem:
            db.session.rollback()
            return _refuse(problem, gateway_name)
        record = PaymentNotification(gateway=gateway_name, event_id=event.event_id,
                                     tenant_id=shop_id, payment_id=payment.id,
                                     status=event.status)
        db.session.add(record)
        try:
            db.session.flush()
        except IntegrityError:  # seen before (a retry or a replay): acknowledge, change nothing
            db.session.rollback()
            body, status, response_headers = gateway.acknowledge()
            return NotifyOutcome(status, body, response_headers)
        order = db.session.get(Order, payment.order_id)
        paid_now = False
        if event.external_id and not payment.external_id:
            payment.external_id = event.external_id
        if event.status == "succeeded":
            paid_now = mark_paid(order, payment=payment, actor=f"{gateway_name} notification")
            if not paid_now and payment.status == "created":
                # Paid twice (another attempt won): keep the money visible to staff.
                payment.status = "succeeded"
                payment.succeeded_at = datetime.now(UTC)
                order.needs_staff = True
                order.staff_reason = (f"A second payment ({payment.reference}) arrived for an "
                                      "order that was already paid or closed: refund it.")
                note(order, order.staff_reason)
        elif event.status == "failed" and payment.status == "created":
            payment.status = "failed"
            note(order, f"Payment {payment.reference} failed at {gateway_name}")
        elif event.status == "refunded":
            note(order, f"The gateway reports payment {payment.reference} refunded")
        record.outcome = "paid the order" if paid_now else f"recorded ({event.status})"
        db.session.commit()
    body, status, response_headers = gateway.acknowledge()
    return NotifyOutcome(status, body, response_headers, order.id if paid_now else None)


def _is_shop_topup(reference: str | None) -> bool:
    from ..billing.topups import is_topup_reference

    return is_topup_reference(reference)


def _platform_gateway(name: str):
    from .registry import GATEWAYS, decrypt_credentials, platform_account

    with platform_scope():
        account = platform_account(name)
    kind = GATEWAYS.get(name)
    if kind is None or account is None or not account.enabled:
        raise InvalidNotification("the platform has no such payment account")
    return kind(decrypt_credentials(account.credentials), owner="platform", tenant_id=None)


def _mismatch(payment: Payment | None, event, gateway_name: str, owner: str) -> str | None:
    if payment is None:
        return "unknown payment"
    if payment.gateway != gateway_name:
        return f"the payment was made with {payment.gateway}, not {gateway_name}"
    if payment.owner != owner:
        return "the payment belongs to another merchant account"
    if event.amount is None or event.amount != payment.amount:
        return f"amount {event.amount} does not match {payment.amount}"
    if (event.currency or "").upper() != payment.currency.upper():
        return f"currency {event.currency} does not match {payment.currency}"
    return None


def refund_payment(order: Order, payment: Payment) -> None:
    """Refund a gateway payment in full (called by refund_order inside its transaction)."""
    if payment.gateway == BALANCE:
        raise DomainError(_l("A wallet payment is refunded to the wallet."))
    tenant = db.session.get(Tenant, order.tenant_id)
    if payment.owner == "platform":
        # The platform collected it and credited the shop's wallet: take that back first,
        # so a shop whose wallet cannot cover it is told before any money moves.
        fee = apply_percent(payment.amount, current_app.config["PLATFORM_FEE_BP"])
        ledger.post(f"order:{order.id}:platform-refund", "platform_refund", [
            (ledger.shop_wallet(tenant.id, order.currency), -(payment.amount - fee)),
            (ledger.get_account("platform_fees", currency=order.currency), -fee),
            (ledger.get_account("platform_gateway", currency=order.currency), payment.amount),
        ], tenant_id=tenant.id, order_id=order.id)
    gateway = gateway_for(tenant, payment.gateway, payment.owner)
    try:
        gateway.refund(payment, payment.amount)
    except GatewayError:
        raise
    except Exception as error:  # a network or library error: nothing was refunded
        log.exception("refund of %s failed", payment.reference)
        raise GatewayError(_l("%(label)s did not accept the refund: %(error)s",
                              label=gateway.label, error=error)) from None
    payment.status = "refunded"
    payment.refunded_amount = payment.amount
    db.session.flush()
