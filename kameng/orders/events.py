"""What the outside world hears about orders and stock: mails to buyers and shops, and the
shop's webhooks. Called inside the transaction that changed the order; the mails and webhook
calls themselves go out through the outbox after the commit."""

from __future__ import annotations

from flask_babel import gettext as _

from ..mail import service as mail
from ..money import format_money
from ..tenants.hosts import public_url, subdomain_host
from ..tenants.scoping import tenant_scope
from ..webhooks import service as webhooks


def _shop(order):
    from ..extensions import db
    from ..tenants.models import Tenant

    return db.session.get(Tenant, order.tenant_id)


def order_payload(order) -> dict:
    return {
        "order": order.number, "status": order.status, "kind": order.kind,
        "email": order.email, "total": order.total, "amount_due": order.amount_due,
        "currency": order.currency,
        "lines": [{"title": line.title, "qty": line.qty, "unit_price": line.unit_price}
                  for line in order.lines],
    }


def order_link(order) -> str | None:
    from .service import order_link_token

    token = order_link_token(order)
    if token is None:
        return None
    return public_url(subdomain_host(_shop(order).slug), f"/order/{token}")


def order_paid(order) -> None:
    endpoints = webhooks.subscribed(order.tenant_id, "order.paid")
    if endpoints:  # the payload reads the order's lines: only when someone listens
        webhooks.emit(order.tenant_id, "order.paid", order_payload(order), endpoints)


def order_delivered(order) -> None:
    """The buyer's mail (the order link; the codes only if the shop turned that on) and the
    shop's webhook."""
    orders_delivered([order])


def orders_delivered(orders) -> None:
    """`order_delivered` for several orders (a delivery batch): per shop, its language set and
    its webhook endpoints read once, and one INSERT for the mails."""
    by_shop: dict[int, list] = {}
    for order in orders:
        by_shop.setdefault(order.tenant_id, []).append(order)
    for tenant_id, group in by_shop.items():
        with tenant_scope(tenant_id):
            shop = _shop(group[0])
            with mail.shop_language(shop.id):
                mails = [(order.email, *_delivered_mail(shop, order)) for order in group]
            mail.queue_mails(tenant_id=tenant_id, kind="order.delivered", mails=mails)
            endpoints = webhooks.subscribed(tenant_id, "order.delivered")
            for order in group if endpoints else ():
                webhooks.emit(tenant_id, "order.delivered", order_payload(order), endpoints)


def _delivered_mail(shop, order) -> tuple[str, str]:
    """(subject, body) of the buyer's mail for a delivered order, in the current language."""
    from .service import delivered_items

    link = order_link(order)
    lines = [_("Your order %(number)s at %(shop)s is ready.", number=order.number,
               shop=shop.name), ""]
    if link:
        lines += [_("See what you bought here (keep this link private):"), link, ""]
    if (shop.settings or {}).get("mail_codes") and order.kind == "purchase":
        for line, values in delivered_items(order):
            lines += [f"{line.title}:", *(f"  {value}" for value in values), ""]
    lines.append(_("Total: %(total)s", total=format_money(order.amount_due, order.currency)))
    subject = _("%(shop)s: order %(number)s delivered", shop=shop.name, number=order.number)
    return subject, "\n".join(lines)


def order_failed(order, reason: str) -> None:
    shop = _shop(order)
    with mail.shop_language(shop.id):
        subject = _("Order %(number)s: delivery failed", number=order.number)
        body = _("The delivery of order %(number)s at %(shop)s failed: %(reason)s.\n"
                 "Retry it, deliver it by hand or refund it in your console: %(link)s",
                 number=order.number, shop=shop.name, reason=reason,
                 link=_console_link(shop, order))
    for to in mail.shop_recipients(order.tenant_id):
        mail.queue_mail(tenant_id=order.tenant_id, to=to, kind="order.failed",
                        subject=subject, body=body)
    webhooks.emit(order.tenant_id, "order.failed", {**order_payload(order), "reason": reason})


def order_awaiting(order) -> None:
    shop = _shop(order)
    with mail.shop_language(shop.id):
        subject = _("Order %(number)s waits for you", number=order.number)
        body = _("Order %(number)s at %(shop)s is paid and waits for you to fulfil it: "
                 "%(link)s", number=order.number, shop=shop.name,
                 link=_console_link(shop, order))
    for to in mail.shop_recipients(order.tenant_id):
        mail.queue_mail(tenant_id=order.tenant_id, to=to, kind="order.awaiting",
                        subject=subject, body=body)


def stock_low(tenant_id: int, title: str, available: int, threshold: int) -> None:
    with mail.shop_language(tenant_id):
        subject = _("Low stock: %(title)s", title=title)
        body = _("'%(title)s' has %(available)s codes left (your alert is set below "
                 "%(threshold)s). Import more codes in your console.", title=title,
                 available=available, threshold=threshold)
    for to in mail.shop_recipients(tenant_id):
        mail.queue_mail(tenant_id=tenant_id, to=to, kind="stock.low",
                        subject=subject, body=body)
    webhooks.emit(tenant_id, "stock.low",
                  {"product": title, "available": available, "threshold": threshold})


def _console_link(shop, order) -> str:
    return public_url(subdomain_host(shop.slug), f"/admin/orders/{order.id}")

