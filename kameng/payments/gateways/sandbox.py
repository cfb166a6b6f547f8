"""The built-in sandbox gateway: a payment page with "pay" and "fail" buttons and an
HMAC-SHA256-signed, timestamped notification, for development, demos, tests and shops in test mode.

The notification is exactly what an external gateway would post to /pay/notify/sandbox; the
sandbox page produces it with the shop's secret and hands it to the same notify path.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .base import CredentialField, Gateway, InvalidNotification, PaymentEvent, PaymentStart

SIGNATURE_HEADER = "X-Sandbox-Signature"  # "t=<unix time>,v1=<hex hmac of 't.<body>'>"


class SandboxGateway(Gateway):
    name = "sandbox"
    label = _l("Sandbox (test payments)")
    credential_fields = (CredentialField("secret", _l("Signing secret")),)

    def start(self, order, payment, urls) -> PaymentStart:
        from flask import url_for

        return PaymentStart(kind="redirect",
                            url=url_for("payments.sandbox_page", reference=payment.reference))

    def redirects_at_start(self) -> bool:
        return True

    def _signature(self, timestamp: int, body: bytes) -> str:
        self.require("secret")
        message = str(timestamp).encode() + b"." + body
        return hmac.new(self.credentials["secret"].encode(), message, hashlib.sha256).hexdigest()

    def signed_notification(self, payment, status: str, *, amount: int | None = None,
                            timestamp: int | None = None) -> tuple[bytes, dict]:
        """The notification the sandbox posts when the buyer presses pay or fail."""
        timestamp = int(time.time()) if timestamp is None else timestamp
        body = json.dumps({
            "event_id": f"evt_{secrets.token_hex(12)}",
            "reference": payment.reference,
            "tenant_id": payment.tenant_id,
            "status": status,
            "amount": payment.amount if amount is None else amount,
            "currency": payment.currency,
        }, separators=(",", ":")).encode()
        header = f"t={timestamp},v1={self._signature(timestamp, body)}"
        return body, {SIGNATURE_HEADER: header, "Content-Type": "application/json"}

    def verify_notification(self, body: bytes, headers, form) -> PaymentEvent:
        self.require("secret")
        header = headers.get(SIGNATURE_HEADER, "")
        parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        try:
            timestamp = int(parts.get("t", ""))
        except ValueError:
            raise InvalidNotification("missing or malformed signature") from None
        expected = self._signature(timestamp, body)
        if not hmac.compare_digest(expected, parts.get("v1", "")):
            raise InvalidNotification("bad signature")
        if abs(time.time() - timestamp) > current_app.config["NOTIFY_TOLERANCE"]:
            raise InvalidNotification("stale notification (timestamp outside the tolerance)")
        try:
            data = json.loads(body)
            return PaymentEvent(
                event_id=str(data["event_id"]), reference=str(data["reference"]),
                status=str(data["status"]), amount=int(data["amount"]),
                currency=str(data["currency"]), tenant_id=int(data["tenant_id"]),
            )
        except (ValueError, KeyError, TypeError):
            raise InvalidNotification("malformed notification") from None

    def refund(self, payment, amount: int) -> None:
        """Sandbox refunds always succeed."""

    def test_connection(self) -> str:
        self.require("secret")
        return _("The sandbox is ready: payments are simulated.")
