"""Shops, products, codes and buyers for the browser tests, made through the services.

The seeder runs in the test process against the live server's database (the same database
URL and encryption keys), each call in its own short application context, and hands back
plain values: browser tests only need ids, slugs and logins.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import Flask
from sqlalchemy import select

from kameng.appearance import service as appearance
from kameng.audit.service import Actor
from kameng.catalog import service as catalog
from kameng.extensions import db
from kameng.inventory.service import import_codes
from kameng.members import service as members
from kameng.orders.models import Order
from kameng.support import service as support
from kameng.tenants import service as tenants
from kameng.tenants.models import Tenant
from kameng.tenants.scoping import tenant_scope

# A 1×1 PNG: a product picture, logo and banner that cost nothing to serve.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


@dataclass(frozen=True)
class Shop:
    id: int
    slug: str
    name: str
    owner_email: str
    owner_password: str
    theme: str


@dataclass(frozen=True)
class Buyer:
    email: str
    password: str


class Seeder:
    def __init__(self, app: Flask):
        self.app = app

    def shop(self, slug: str, name: str, *, theme: str = "default", locale: str = "en") -> Shop:
        """A live shop with its owner (password `owner-pass-<slug>`)."""
        password = f"owner-pass-{slug}"
        with self.app.app_context():
            tenant = tenants.create_tenant(slug=slug, name=name, owner_email=f"owner@{slug}.test",
                                           owner_password=password, theme=theme, locale=locale)
            db.session.commit()
            return Shop(tenant.id, tenant.slug, tenant.name, f"owner@{slug}.test", password,
                        tenant.theme)

    def category(self, shop: Shop, name: str) -> int:
        with self._in(shop) as tenant:
            category_id = catalog.create_category(tenant, name).id
            db.session.commit()
            return category_id

    def card_product(self, shop: Shop, name: str, *, price: int, codes: list[str],
                     bulk: list[tuple[int, int]] = (), **details) -> int:
        """One of the shop's own card products with these codes in stock."""
        with self._in(shop) as tenant:
            product = catalog.create_product(tenant, name=name, price=price,
                                             delivery_kind="card", **details)
            import_codes(product, codes, actor=Actor.system())
            if bulk:
                catalog.set_bulk_prices(product, bulk)
            db.session.commit()
            return product.id

    def furnish(self, shop: Shop) -> None:
        """Everything a shop page can show: announcement, footer links, contacts, logo, banner."""
        with self._in(shop) as tenant:
            appearance.save_appearance(tenant, appearance.AppearanceChanges(
                name=shop.name, settings={}, notice="<p>Sale <b>today</b></p>",
                footer_links=[("Terms", "https://example.com/terms")],
                contacts={"email": f"help@{shop.slug}.test", "qq": "123456",
                          "telegram": "kamengshop", "wechat": "kameng-shop"}))
            appearance.store_asset(tenant, "logo", PNG)
            appearance.store_asset(tenant, "banner", PNG)
            db.session.commit()

    def buyer(self, shop: Shop, email: str, password: str = "buyer-pass-1") -> Buyer:
        with self._in(shop):
            members.register_customer(shop.id, email=email, password=password, name="E2E buyer")
            db.session.commit()
        return Buyer(email, password)

    def reset_token(self, shop: Shop, email: str) -> str:
        """The token of the link a password-reset mail carries."""
        with self._in(shop):
            return members.password_reset_token(shop.id, email)[1]

    def replace_reported_codes(self, shop: Shop, order_number: str) -> None:
        """The shop's answer to the order's open ticket: every code of the order replaced."""
        with self._in(shop):
            order = db.session.scalar(select(Order).where(Order.number == order_number))
            ticket = support.tickets_of_order(order)[0]
            support.replace_codes(ticket, [code for _, code in support.sold_codes(order)],
                                  actor=shop.owner_email, message="Here is a new code.")
            db.session.commit()

    def delivery_seconds(self, shop: Shop, email: str) -> float:
        """From the payment to the delivery of the buyer's newest order, in seconds."""
        with self._in(shop):
            order = db.session.scalar(select(Order).where(Order.email == email)
                                      .order_by(Order.id.desc()).limit(1))
            return (order.delivered_at - order.paid_at).total_seconds()

    def suspend(self, shop: Shop) -> None:
        """Close the shop: its buyers get the 503 "temporarily closed" page."""
        with self._in(shop) as tenant:
            tenants.suspend_tenant(tenant)
            db.session.commit()

    @contextmanager
    def _in(self, shop: Shop) -> Iterator[Tenant]:
        """An application context bound to the shop, with the shop's row loaded."""
        with self.app.app_context(), tenant_scope(shop.id):
            yield db.session.get(Tenant, shop.id)
