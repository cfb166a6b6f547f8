"""Shop webhooks: signed deliveries of order and stock events. (Interface; completed with the
webhook work.)"""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..tenants.scoping import tenant_scope
from .models import WebhookDelivery, WebhookEndpoint


def emit(tenant_id: int, event: str, payload: dict) -> list[WebhookDelivery]:
    """Record one delivery per active endpoint subscribed to `event` (sent after the commit)."""
    with tenant_scope(tenant_id):
        endpoints = [e for e in db.session.scalars(
            select(WebhookEndpoint).where(WebhookEndpoint.active)) if event in (e.events or [])]
    return [] if not endpoints else _not_yet(endpoints)


def _not_yet(endpoints):
    raise NotImplementedError("webhook deliveries are being written")


def deliver_webhook(delivery_id: int) -> str:
    raise NotImplementedError("webhook deliveries are being written")
