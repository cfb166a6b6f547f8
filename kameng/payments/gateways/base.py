"""The interface every payment gateway implements, and what it hands back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from flask_babel import gettext as _

from ...errors import DomainError
from ...security.credentials import CredentialField


class InvalidNotification(DomainError):
    """A notification that must change nothing: bad signature, wrong shop, amount, replay…"""

    status_code = 400


class IgnoredEvent(InvalidNotification):
    """A genuine (verified) notification Kameng does not act on — another event type, or a
    payment it did not start. It changes nothing and is acknowledged, so the gateway stops
    resending it."""


class GatewayError(DomainError):
    """The gateway refused or failed a call (shown to staff; the buyer sees a plain message)."""

    status_code = 502


@dataclass(frozen=True)
class ReturnUrls:
    """Where the gateway sends the buyer back, and where it posts its notification."""

    success: str
    cancel: str
    notify: str


@dataclass(frozen=True)
class PaymentStart:
    """How to take the buyer to the gateway: a redirect, an auto-submitted form, a QR code."""

    kind: str  # "redirect", "form" or "qr"
    url: str = ""
    fields: dict = field(default_factory=dict)
    qr_data: str = ""
    external_id: str | None = None


@dataclass(frozen=True)
class PaymentEvent:
    """What a verified notification (or a query) says happened to one of our payments."""

    event_id: str
    reference: str  # our Payment.reference
    status: str  # "succeeded", "failed", "pending" or "refunded"
    amount: int | None  # minor units, as the gateway reported them
    currency: str | None
    external_id: str | None = None
    tenant_id: int | None = None  # the shop named in the event, when the gateway carries it
    merchant: str | None = None  # the merchant account named in the event (EPay pid)


class Gateway:
    """One payment gateway bound to one set of credentials (a shop's or the platform's)."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    credential_fields: ClassVar[tuple[CredentialField, ...]] = ()
    # Whether the gateway may call its notify URL with GET and query parameters.
    notify_by_get: ClassVar[bool] = False

    def __init__(self, credentials: dict, *, owner: str, tenant_id: int | None):
        self.credentials = credentials
        self.owner = owner
        self.tenant_id = tenant_id

    def require(self, *names: str) -> None:
        """Refuse to work with a missing or empty credential (never sign with an empty key)."""
        missing = [n for n in names if not str(self.credentials.get(n) or "").strip()]
        if missing:
            raise InvalidNotification(f"{self.label} is not configured ({', '.join(missing)}).")

    def check_credentials(self) -> None:
        """Refuse credentials that cannot work (a DomainError naming the field) when they are
        saved, not at a buyer's checkout. Called only for enabled accounts."""

    def start(self, order, payment, urls: ReturnUrls) -> PaymentStart:
        raise NotImplementedError

    def redirects_at_start(self) -> bool:
        """Whether `start` always answers with a redirect (no page of ours to show): checkout
        then sends the buyer straight on to the gateway."""
        return False

    def verify_notification(self, body: bytes, headers, form) -> PaymentEvent:
        """Check the notification's signature and freshness and read it; InvalidNotification
        otherwise. Matching it to the order, amount and currency is the caller's job."""
        raise NotImplementedError

    def query(self, payment) -> PaymentEvent | None:
        """Ask the gateway about a payment (None when the gateway cannot be asked)."""
        return None

    def refund(self, payment, amount: int) -> None:
        raise GatewayError(_("%(gateway)s refunds are not supported; refund the buyer by hand.",
                             gateway=self.label))

    def acknowledge(self) -> tuple[str, int, dict]:
        """The answer that tells the gateway to stop retrying."""
        return "ok", 200, {"Content-Type": "text/plain; charset=utf-8"}

    def test_connection(self) -> str:
        """Check the credentials against the gateway; a message for the shop, or GatewayError."""
        return _("Credentials saved (this gateway cannot be checked online).")
