"""Every shop route that takes an id: shop A's ids on shop B's host are 404, never A's data."""

from types import SimpleNamespace

import pytest
from sqlalchemy import select
from werkzeug.routing import IntegerConverter

from kameng.tenants.hosts import SHOP
from tests.test_api import signed

TINY_PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.fixture
def world(create_tenant, create_customer, create_staff, in_app):
    """Two shops with one of everything; B's owner and buyer log in on B.

    Every shop route argument that names a shop-owned row must have an entry here.
    """
    from sqlalchemy import select

    from kameng.audit.service import Actor
    from kameng.catalog import service as catalog
    from kameng.catalog.models import MarkupRule
    from kameng.delivery.suppliers import save_supplier
    from kameng.inventory.models import CardCode
    from kameng.inventory.service import import_codes
    from kameng.mail.models import MailMessage
    from kameng.merchant.models import ShopNotice
    from kameng.orders.service import CheckoutRequest, checkout
    from kameng.security.crypto import keyring
    from kameng.webhooks.models import WebhookDelivery, WebhookEndpoint

    a = create_tenant(slug="shopa", owner_email="owner@shopa.test", owner_password="owner-a-pass")
    b = create_tenant(slug="shopb", owner_email="owner@shopb.test", owner_password="owner-b-pass")
    ids_of_a = {
        "customer_id": create_customer(a, email="secret-buyer@shopa.test").id,
        "staff_id": create_staff(a, email="secret-staff@shopa.test").id,
    }
    with in_app(a) as session:
        tenant = session.get(type(a), a.id)
        category = catalog.create_category(tenant, "secret-category")
        product = catalog.create_product(tenant, name="secret-product", price=500,
                                         category_id=category.id, image=TINY_PNG)
        import_codes(product, ["secret-code-1", "secret-code-2"], actor=Actor.system())
        coupon = catalog.create_coupon(tenant, "SECRET10", catalog.CouponTerms("percent", 1000))
        rule = catalog.set_markup_rule(tenant, scope="category", category_id=category.id,
                                       kind="percent", value=1000, rounding="0.01")
        order_product = catalog.create_product(tenant, name="secret-order-product", price=300)
        import_codes(order_product, ["secret-order-code"], actor=Actor.system())
        from kameng.members.models import Customer

        placed = checkout(tenant, CheckoutRequest(
            product_id=order_product.id, qty=1, email="secret-buyer@shopa.test",
            payment_method="sandbox",
            customer=session.get(Customer, ids_of_a["customer_id"])))
        order = placed.order
        notice = ShopNotice(kind="test", message="secret-notice")
        supplier = save_supplier(tenant.id, None, name="secret-supplier", adapter="kameng",
                                 base_url="https://secret-supplier.example.com",
                                 credentials={"key_id": "kk_secret",
                                              "api_secret": "secret-api-key-0123456789"})
        session.add(notice)
        endpoint = WebhookEndpoint(url="https://hooks.example.com/secret-hook",
                                   events=["order.paid"], active=True,
                                   secret=keyring().encrypt_secret("whsec_secret-signing"))
        session.add(endpoint)
        session.flush()
        delivery = WebhookDelivery(endpoint_id=endpoint.id, delivery_id="secret-delivery-1",
                                   event="order.paid", status="delivered", attempts=1,
                                   payload={"id": "secret-delivery-1", "data": {}},
                                   response_status=200, response_body="secret-answer")
        message = MailMessage(tenant_id=tenant.id, kind="order.delivered",
                              to="secret-buyer@shopa.test", subject="secret-subject",
                              body="secret-body", status="kept")
        session.add_all([delivery, message])
        from datetime import UTC, datetime, timedelta

        from kameng.billing.models import StaffInvite
        from kameng.tenants.models import Domain

        domain = Domain(host="secret-domain.example.com", tenant_id=tenant.id, kind="custom",
                        verified=False, verification_token="secret-token")
        invite = StaffInvite(email="secret-invitee@shopa.test", role="manager",
                             token_hash=b"\x01" * 32, invited_by="owner@shopa.test",
                             expires_at=datetime.now(UTC) + timedelta(days=7))
        session.add_all([domain, invite])
        from kameng.billing import service as billing

        billing.ensure_default_plans()
        billing.start_subscription(tenant, billing.plan_by_code("pro"))  # API access
        invoice = billing._create_invoice(
            tenant, "monthly", datetime.now(UTC).date(), datetime.now(UTC).date(),
            [billing._subscription_line(billing.plan_by_code("pro"),
                                        datetime.now(UTC).date(), datetime.now(UTC).date())],
            datetime.now(UTC))
        from kameng.api import service as api_keys
        from kameng.support.models import Ticket, TicketMessage

        ticket = Ticket(tenant_id=tenant.id, order_id=order.id, email=order.email,
                        reason="code_used", status="open")
        session.add(ticket)
        session.flush()
        session.add(TicketMessage(tenant_id=tenant.id, ticket_id=ticket.id, author="buyer",
                                  author_email=order.email, body="secret-complaint"))
        session.flush()
        ids_of_a.update(
            category_id=category.id,
            product_id=product.id,
            coupon_id=coupon.id,
            level_id=catalog.list_levels()[-1].id,
            rule_id=rule.id,
            notice_id=notice.id,
            supplier_id=supplier.id,
            code_id=session.scalar(select(CardCode.id)),
            order_id=order.id,
            endpoint_id=endpoint.id,
            delivery_id=delivery.id,
            message_id=message.id,
            domain_id=domain.id,
            invite_id=invite.id,
            invoice_id=invoice.id,
            webhook_id=endpoint.id,
            token=placed.token,
            number=order.number,
            ticket_id=ticket.id,
            key_pk=api_keys.create_staff_key(tenant.id, ids_of_a["staff_id"],
                                             scopes=["orders"], name="secret-key").key.id,
        )
        assert session.scalar(select(MarkupRule.id).where(MarkupRule.id == rule.id))
        session.commit()
    create_customer(b, email="buyer@shopb.test", password="buyer-b-pass")
    return a, b, ids_of_a


def _id_routes(app):
    """(rule, id arguments) of every shop route with an integer argument."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.subdomain != SHOP:
            continue
        int_args = [
            name
            for name, conv in rule._converters.items()
            if isinstance(conv, IntegerConverter)
        ]
        if int_args:
            routes.append((rule, int_args))
    return routes


def _owner_key(app, shop):
    """An API key of the shop's owner with every staff scope."""
    from kameng.api import service as api_keys
    from kameng.extensions import db
    from kameng.merchant.models import StaffUser
    from kameng.tenants.scoping import tenant_scope

    with app.app_context(), tenant_scope(shop.id):
        owner = db.session.scalar(select(StaffUser).where(StaffUser.role == "owner"))
        new = api_keys.create_staff_key(shop.id, owner.id, scopes=["catalog", "orders", "manage"])
        db.session.commit()
        return SimpleNamespace(id=new.key.key_id, secret=new.secret)


def _client_as(client_for, shop, area):
    client = client_for(shop)
    if area == "console":
        client.login(f"owner@{shop.slug}.test", f"owner-{shop.slug[-1]}-pass", path="/admin/login")
    else:
        client.login(f"buyer@{shop.slug}.test", f"buyer-{shop.slug[-1]}-pass")
    return client


def test_another_shops_ids_are_404_on_every_route(app, world, client_for):
    _a, b, ids_of_a = world
    routes = _id_routes(app)
    assert routes, "no shop route takes an id: this test would check nothing"
    adapter = app.url_map.bind("x", subdomain=SHOP)
    clients = {area: _client_as(client_for, b, area) for area in ("console", "storefront")}
    key_of_b = _owner_key(app, b)
    for rule, args in routes:
        missing = [arg for arg in args if arg not in ids_of_a]
        assert not missing, f"{rule}: add an object of shop A for {missing} to the world fixture"
        path = adapter.build(rule.endpoint, {arg: ids_of_a[arg] for arg in rule.arguments})
        client = clients["console" if path.startswith("/admin") else "storefront"]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if path.startswith("/api/"):  # signed with B's owner key, every scope
                page = signed(client_for(b), method, path, key_of_b,
                              body={} if method in ("POST", "PATCH") else None)
                body = page.get_data(as_text=True)
                # 403 only where the route is for buyer keys and refuses before any lookup
                assert page.status_code in (403, 404), f"{method} {path} gave {page.status_code}"
                assert "secret-" not in body and "shopa" not in body.lower(), f"{method} {path}"
                continue
            if method == "GET":
                page = client.get(path)
            else:
                token = client.csrf_token("/admin/" if path.startswith("/admin") else "/account")
                page = client.open(path, method=method, data={"csrf_token": token})
            body = page.get_data(as_text=True)
            assert page.status_code == 404, f"{method} {path} gave {page.status_code}"
            assert "secret-" not in body and "shopa" not in body.lower(), f"{method} {path} leaks"


def test_the_same_ids_work_on_their_own_shop(app, world, client_for, monkeypatch):
    """The check above is not vacuous: on shop A, A's owner sees these pages."""
    from kameng.api import upstream

    monkeypatch.setattr(upstream, "fetch_offers", lambda supplier: {})  # no network in tests
    a, _, ids_of_a = world
    adapter = app.url_map.bind("x", subdomain=SHOP)
    owner = client_for(a)
    owner.login("owner@shopa.test", "owner-a-pass", path="/admin/login")
    key_of_a = _owner_key(app, a)
    buyer = client_for(a)
    buyer.login("secret-buyer@shopa.test", "buyer-pass-1")
    for rule, _args in _id_routes(app):
        if "GET" not in rule.methods:
            continue
        path = adapter.build(rule.endpoint, {arg: ids_of_a[arg] for arg in rule.arguments})
        if path.startswith("/orders/"):  # the buyer's own order, in their account
            assert buyer.get(path).status_code == 200, path
            continue
        if path.startswith("/api/"):
            if path.endswith("/delivery"):  # buyer keys only: see test_api.py
                assert signed(client_for(a), "GET", path, key_of_a).status_code == 403, path
                continue
            assert signed(client_for(a), "GET", path, key_of_a).status_code == 200, path
            continue
        assert owner.get(path).status_code == 200, path
