"""The Stripe gateway: a Checkout Session per payment on the shop's own Stripe account (or the
platform's), confirmed by a webhook signed with that account's webhook secret.

Every call builds its own `StripeClient` with the account's secret key — never the global
`stripe.api_key`, which one shop's request would leave behind for the next shop's. The API base
is the app setting STRIPE_API_BASE (None: Stripe itself; tests point it at a local server).

Our `Payment.reference` is the session's `client_reference_id`; it also travels, with the shop
and the order number, in the metadata of the session and of its PaymentIntent, so that every
event names exactly one payment of one shop. Matching that payment, its amount and currency is
the payments service's job; here we only prove the event came from Stripe and read it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import stripe
from flask import current_app, has_request_context, request, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ...money import minor_digits
from ...tenants.hosts import normalize_host, public_url
from ..registry import register
from .base import (
    CredentialField,
    Gateway,
    GatewayError,
    IgnoredEvent,
    InvalidNotification,
    PaymentEvent,
    PaymentStart,
    ReturnUrls,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Stripe-Signature"

# Payment methods offered in Checkout, in display order. Cards take every currency; the wallets
# only the presentment currencies Stripe lists for them in Checkout (docs.stripe.com/payments/
# alipay/accept-a-payment and /payments/wechat-pay/accept-a-payment, "Determine compatibility").
# WeChat Pay also needs payment_method_options.wechat_pay.client = "web" (see `start`).
METHODS = ("card", "alipay", "wechat_pay")
WALLET_CURRENCIES = {
    "alipay": frozenset({"AUD", "CAD", "CNY", "EUR", "GBP", "HKD", "JPY", "MYR", "NZD", "SGD",
                         "USD"}),
    "wechat_pay": frozenset({"AUD", "CAD", "CHF", "CNY", "DKK", "EUR", "GBP", "HKD", "JPY",
                             "NOK", "SEK", "SGD", "USD"}),
}

# Stripe amounts are in the currency's smallest unit, like ours — except where Stripe counts
# decimals differently from Kameng (docs.stripe.com/currencies): those currencies are refused
# rather than charged 100 times too much or too little.
STRIPE_ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG",
                                 "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"})
STRIPE_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})

# The events Kameng acts on; a shop points its Stripe webhook endpoint at these.
SESSION_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded",
                  "checkout.session.async_payment_failed")
HANDLED_EVENTS = (*SESSION_EVENTS, "charge.refunded")

# Metadata keys on the session and its PaymentIntent.
TENANT_KEY = "tenant_id"
ORDER_KEY = "order_number"
REFERENCE_KEY = "payment_reference"

# A Checkout Session must live between 30 minutes and 24 hours.
SESSION_MIN_LIFE = timedelta(minutes=31)
SESSION_MAX_LIFE = timedelta(hours=23, minutes=55)


def stripe_digits(currency: str) -> int:
    code = currency.upper()
    if code in STRIPE_ZERO_DECIMAL:
        return 0
    return 3 if code in STRIPE_THREE_DECIMAL else 2


def check_currency(currency: str) -> None:
    """Refuse a currency whose Stripe unit is not Kameng's minor unit."""
    if stripe_digits(currency) != minor_digits(currency):
        raise GatewayError(_l("Stripe cannot take payments in %(upper)s in this shop; "
                              "choose another payment method.", upper=currency.upper()))


def payment_method_types(currency: str, configured: str = "") -> list[str]:
    """The methods to offer for `currency`: those the shop chose (all by default) that Stripe
    supports in that currency; at least cards."""
    wanted = set(re.split(r"[\s,;]+", configured.strip().lower())) - {""} or set(METHODS)
    code = currency.upper()
    chosen = [m for m in METHODS
              if m in wanted and (m == "card" or code in WALLET_CURRENCIES[m])]
    return chosen or ["card"]


def _failure(action, error: stripe.StripeError) -> GatewayError:
    """`action`: what Kameng asked of Stripe, a lazy string ("start the payment")."""
    with force_locale("en"):  # the log in English, whoever asked
        log.warning("Stripe could not %s: %r", action, error)
    if isinstance(error, stripe.APIConnectionError):
        return GatewayError(_l("Stripe could not be reached to %(action)s; please try again.",
                               action=action))
    return GatewayError(_l("Stripe would not %(action)s: %(reason)s", action=action,
                           reason=error.user_message or _l("no reason given")))


def _as_int(value) -> int | None:
    """An amount exactly as an integer (a float or a string is no amount)."""
    return value if type(value) is int else None


def _currency(value) -> str | None:
    return value.upper() if isinstance(value, str) and value else None


def _tenant_id(metadata: dict) -> int:
    value = str(metadata.get(TENANT_KEY) or "")
    if not value.isdigit():
        raise InvalidNotification("the event does not name its shop")
    return int(value)


def _session_event(session, *, event_id: str, status: str) -> PaymentEvent:
    """What a Checkout Session (from an event or a query) says about our payment."""
    metadata = session.get("metadata") or {}
    reference = session.get("client_reference_id") or metadata.get(REFERENCE_KEY)
    if not reference and not metadata.get(TENANT_KEY):
        raise IgnoredEvent("the Checkout Session was not started by Kameng")
    if not reference:
        raise InvalidNotification("the Checkout Session carries no payment reference")
    if metadata.get(REFERENCE_KEY) and metadata[REFERENCE_KEY] != reference:
        raise InvalidNotification("client_reference_id and metadata name different payments")
    return PaymentEvent(
        event_id=event_id, reference=str(reference), status=status,
        amount=_as_int(session.get("amount_total")), currency=_currency(session.get("currency")),
        external_id=session.get("id"), tenant_id=_tenant_id(metadata),
    )


def _session_status(event_type: str, session) -> str:
    if event_type == "checkout.session.async_payment_failed":
        return "failed"
    # Paid only when Stripe says so: a completed session may still await an async payment.
    return "succeeded" if session.get("payment_status") == "paid" else "pending"


def _signed_at(header: str) -> int:
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            return int(value)
    return 0


@register
class StripeGateway(Gateway):
    name = "stripe"
    label = "Stripe"
    credential_fields = (
        CredentialField("secret_key", _l("Secret key (sk_…)")),
        CredentialField("webhook_secret", _l("Webhook signing secret (whsec_…)")),
        CredentialField("publishable_key", _l("Publishable key (pk_…)"), secret=False,
                        required=False),
        CredentialField("payment_methods",
                        _l("Payment methods (blank: card, alipay and wechat_pay "
                           "where the currency allows)"), secret=False, required=False),
    )

    # -- the API -------------------------------------------------------------------------------

    @contextmanager
    def _client(self) -> Iterator[stripe.StripeClient]:
        """A StripeClient for this account and this call only."""
        self.require("secret_key")
        base = current_app.config.get("STRIPE_API_BASE")
        http = stripe.RequestsClient(timeout=(5, 30))
        client = stripe.StripeClient(
            self.credentials["secret_key"].strip(),
            base_addresses={"api": base} if base else None,
            max_network_retries=2,  # safe: every POST carries an idempotency key
            http_client=http,
        )
        try:
            yield client
        finally:
            http.close()

    def _metadata(self, order, payment) -> dict[str, str]:
        return {TENANT_KEY: str(payment.tenant_id), ORDER_KEY: order.number,
                REFERENCE_KEY: payment.reference}

    def start(self, order, payment, urls: ReturnUrls) -> PaymentStart:
        check_currency(payment.currency)
        methods = payment_method_types(payment.currency,
                                       str(self.credentials.get("payment_methods") or ""))
        metadata = self._metadata(order, payment)
        lines = list(order.lines)
        title = f"{lines[0].title} × {lines[0].qty}" if len(lines) == 1 else \
            f"Order {order.number}"
        now = datetime.now(UTC)
        due = order.expires_at.replace(tzinfo=UTC) if order.expires_at.tzinfo is None \
            else order.expires_at
        # Stripe wants 30 min – 24 h; a payment after the order's expiry still counts (it is
        # delivered if stock allows, otherwise credited or refunded by staff).
        expires = min(max(due, now + SESSION_MIN_LIFE), now + SESSION_MAX_LIFE)
        params = {
            "mode": "payment",
            "client_reference_id": payment.reference,
            "customer_email": order.email,
            "line_items": [{"quantity": 1, "price_data": {
                "currency": payment.currency.lower(),
                "unit_amount": payment.amount,
                "product_data": {"name": title[:250]},
            }}],
            "payment_method_types": methods,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata,
                                    "description": f"Order {order.number}"},
            "success_url": urls.success,
            "cancel_url": urls.cancel,
            "expires_at": int(expires.timestamp()),
        }
        if "wechat_pay" in methods:
            params["payment_method_options"] = {"wechat_pay": {"client": "web"}}
        try:
            with self._client() as client:
                session = client.v1.checkout.sessions.create(
                    params, {"idempotency_key": f"kameng-checkout-{payment.reference}"}
                ).to_dict()
        except stripe.StripeError as error:
            raise _failure(_l("start the payment"), error) from None
        if not session.get("url") or not session.get("id"):
            raise GatewayError(_l("Stripe did not return a payment page; please try again."))
        return PaymentStart(kind="redirect", url=session["url"], external_id=session["id"])

    def redirects_at_start(self) -> bool:
        return True  # to the Checkout Session's page

    def query(self, payment) -> PaymentEvent | None:
        """The payment's Checkout Session as Stripe sees it now."""
        if not payment.external_id:
            return None
        try:
            with self._client() as client:
                session = client.v1.checkout.sessions.retrieve(payment.external_id).to_dict()
        except stripe.StripeError as error:
            raise _failure(_l("look up the payment"), error) from None
        if session.get("payment_status") == "paid":
            status = "succeeded"
        elif session.get("status") == "expired":
            status = "failed"
        else:
            status = "pending"
        return _session_event(session, event_id=f"{session.get('id')}:{status}", status=status)

    def refund(self, payment, amount: int) -> None:
        """Refund `amount` of the session's PaymentIntent (once: the key is per payment and
        amount, so a retried refund cannot pay back twice)."""
        if not payment.external_id:
            raise GatewayError(_l("This payment has no Stripe Checkout Session to refund."))
        try:
            with self._client() as client:
                session = client.v1.checkout.sessions.retrieve(payment.external_id).to_dict()
                intent = session.get("payment_intent")
                if isinstance(intent, dict):
                    intent = intent.get("id")
                if not intent:
                    raise GatewayError(_l("Stripe holds no payment for this order to refund."))
                refund = client.v1.refunds.create(
                    {"payment_intent": intent, "amount": amount,
                     "metadata": {REFERENCE_KEY: payment.reference,
                                  TENANT_KEY: str(payment.tenant_id)}},
                    {"idempotency_key": f"kameng-refund-{payment.reference}-{amount}"}
                ).to_dict()
        except stripe.StripeError as error:
            raise _failure(_l("refund the payment"), error) from None
        if refund.get("status") in ("failed", "canceled"):
            raise GatewayError(_l("Stripe could not refund the payment (refund %(id)s "
                                  "%(status)s).", id=refund.get('id'), status=refund.get('status')))

    def test_connection(self) -> str:
        self.require("secret_key", "webhook_secret")
        if self.credentials["secret_key"].startswith("pk_"):
            raise GatewayError(_l("That is the publishable key: paste the secret key (sk_…)."))
        if not self.credentials["webhook_secret"].startswith("whsec_"):
            raise GatewayError(_l("The webhook signing secret starts with whsec_: copy it from the "
                                  "webhook endpoint in the Stripe dashboard."))
        try:
            with self._client() as client:
                balance = client.v1.balance.retrieve().to_dict()
        except stripe.StripeError as error:
            raise _failure(_l("accept the secret key"), error) from None
        mode = "live" if balance.get("livemode") else "test"
        message = _("Stripe accepted the secret key (%(mode)s mode).", mode=mode)
        return f"{message} Send the events {', '.join(HANDLED_EVENTS)}{self._notify_target()}."

    def _notify_target(self) -> str:
        """Where the account's webhook endpoint must point, for the connection message."""
        if not has_request_context():
            return ""
        if self.owner == "shop":  # asked on the shop's host, which the URL may keep
            host, endpoint = normalize_host(request.host), "payments.notify"
        else:
            host, endpoint = current_app.config["PLATFORM_DOMAIN"], \
                "platform_payments.platform_notify"
        # Only the path: an endpoint of another kind of site builds as an odd absolute URL.
        path = urlsplit(url_for(endpoint, gateway=self.name)).path
        return " to " + public_url(host, path)

    # -- webhooks ------------------------------------------------------------------------------

    def verify_notification(self, body: bytes, headers, form) -> PaymentEvent:
        self.require("webhook_secret")
        header = headers.get(SIGNATURE_HEADER, "") or ""
        tolerance = current_app.config["NOTIFY_TOLERANCE"]
        try:
            stripe.WebhookSignature.verify_header(body, header,
                                                  self.credentials["webhook_secret"], tolerance)
        except stripe.SignatureVerificationError as error:
            raise InvalidNotification(f"bad Stripe signature: {error.user_message}") from None
        except UnicodeDecodeError:
            raise InvalidNotification("the body is not UTF-8") from None
        if _signed_at(header) > time.time() + tolerance:  # Stripe's check looks back only
            raise InvalidNotification("the signature's timestamp lies in the future")
        try:
            event = json.loads(body)
            event_type, event_id = str(event["type"]), str(event["id"])
            obj = event["data"]["object"]
            if not isinstance(obj, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise InvalidNotification("malformed Stripe event") from None
        if event_type in SESSION_EVENTS:
            if obj.get("object") != "checkout.session":
                raise InvalidNotification("malformed Stripe event")
            return _session_event(obj, event_id=event_id,
                                  status=_session_status(event_type, obj))
        if event_type == "charge.refunded":
            return self._refund_event(obj, event_id)
        raise IgnoredEvent(f"Stripe {event_type} events change nothing here")

    def _refund_event(self, charge: dict, event_id: str) -> PaymentEvent:
        """A refund (full or partial, made here or in the Stripe dashboard) of our payment."""
        metadata = charge.get("metadata") or {}
        intent = charge.get("payment_intent")
        if not metadata.get(REFERENCE_KEY) and isinstance(intent, str) and intent:
            # The charge may not carry its PaymentIntent's metadata: ask Stripe for it.
            try:
                with self._client() as client:
                    intent_data = client.v1.payment_intents.retrieve(intent).to_dict()
                metadata = intent_data.get("metadata") or {}
            except stripe.StripeError as error:
                raise _failure(_l("look up the refunded payment"), error) from None
        if not metadata.get(REFERENCE_KEY):
            raise IgnoredEvent("the refunded charge is not a Kameng payment")
        return PaymentEvent(
            event_id=event_id, reference=str(metadata[REFERENCE_KEY]), status="refunded",
            amount=_as_int(charge.get("amount")), currency=_currency(charge.get("currency")),
            tenant_id=_tenant_id(metadata),
        )
