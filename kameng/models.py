"""Imports every model module, so the mappers and Alembic see the whole schema."""

from .api.models import ApiIdempotency, ApiKey, ApiNonce  # noqa: F401
from .appearance.models import ShopAsset  # noqa: F401
from .audit.models import AuditEvent  # noqa: F401
from .billing.models import (  # noqa: F401
    Invoice,
    InvoiceLine,
    Plan,
    ProductViewCount,
    StaffInvite,
    Subscription,
)
from .catalog.models import (  # noqa: F401
    BulkPrice,
    Category,
    Coupon,
    LevelPrice,
    MarkupRule,
    PriceLevel,
    Product,
    SupplyCategory,
    SupplyProduct,
)
from .delivery.models import Supplier  # noqa: F401
from .inventory.models import CardCode, SupplyCode  # noqa: F401
from .ledger.models import LedgerAccount, LedgerHold, LedgerPosting, LedgerTransaction  # noqa: F401
from .mail.models import MailMessage  # noqa: F401
from .members.models import Customer  # noqa: F401
from .merchant.models import ShopNotice, StaffUser  # noqa: F401
from .orders.models import Order, OrderEvent, OrderLine  # noqa: F401
from .payments.models import (  # noqa: F401
    Payment,
    PaymentAccount,
    PaymentNotification,
    PlatformPaymentAccount,
)
from .security.crypto import PlatformSecret  # noqa: F401
from .superadmin.models import PlatformUser  # noqa: F401
from .support.models import Ticket, TicketMessage  # noqa: F401
from .tenants.models import Domain, Tenant  # noqa: F401
from .webhooks.models import WebhookDelivery, WebhookEndpoint  # noqa: F401
from .workers.models import Outbox  # noqa: F401
