"""Order statuses and wallet movements named for people, in the page's language."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

STATUS_LABELS = {
    "pending": _l("Pending"),
    "paid": _l("Paid"),
    "delivering": _l("Delivering"),
    "awaiting": _l("Awaiting"),
    "delivered": _l("Delivered"),
    "failed": _l("Failed"),
    "expired": _l("Expired"),
    "cancelled": _l("Cancelled"),
    "refunded": _l("Refunded"),
}

MOVEMENT_LABELS = {
    "wallet_payment": _l("Wallet payment"),
    "wallet_topup": _l("Wallet topup"),
    "wallet_topup_refund": _l("Wallet topup refund"),
    "refund_to_wallet": _l("Refund to wallet"),
    "points_earned": _l("Points earned"),
    "points_redeemed": _l("Points redeemed"),
    "points_returned": _l("Points returned"),
    "points_reversed": _l("Points reversed"),
    # a shop's wallet at the platform
    "supply_cost": _l("Supply cost"),
    "platform_funding": _l("Credit from the platform"),
    "shop_topup": _l("Shop wallet top-up"),
    "invoice_payment": _l("Invoice payment"),
    "platform_collection": _l("Collected by the platform"),
    "platform_refund": _l("Refunded by the platform"),
}


def order_status_label(status: str) -> str:
    """'delivered' -> 'Delivered' (已发货 in Chinese); an unknown status shows as it is."""
    return str(STATUS_LABELS.get(status) or status.capitalize())


def movement_label(kind: str) -> str:
    """A ledger transaction's kind as a wallet's history names it (a buyer's or a shop's)."""
    return str(MOVEMENT_LABELS.get(kind) or kind.replace("_", " ").capitalize())
