"""Every shop route that takes an id: shop A's ids on shop B's host are 404, never A's data."""

import pytest
from werkzeug.routing import IntegerConverter

from kameng.tenants.hosts import SHOP

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
        order = checkout(tenant, CheckoutRequest(
            product_id=order_product.id, qty=1, email="secret-buyer@shopa.test",
            payment_method="sandbox")).order
        notice = ShopNotice(kind="test", message="secret-notice")
        supplier = save_supplier(tenant.id, None, name="secret-supplier", adapter="json",
                                 base_url="https://secret-supplier.example.com",
                                 credentials={"api_key": "secret-api-key-0123456789"})
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
    for rule, args in routes:
        missing = [arg for arg in args if arg not in ids_of_a]
        assert not missing, f"{rule}: add an object of shop A for {missing} to the world fixture"
        path = adapter.build(rule.endpoint, {arg: ids_of_a[arg] for arg in args})
        client = clients["console" if path.startswith("/admin") else "storefront"]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if method == "GET":
                page = client.get(path)
            else:
                token = client.csrf_token("/admin/" if path.startswith("/admin") else "/account")
                page = client.open(path, method=method, data={"csrf_token": token})
            body = page.get_data(as_text=True)
            assert page.status_code == 404, f"{method} {path} gave {page.status_code}"
            assert "secret-" not in body and "shopa" not in body.lower(), f"{method} {path} leaks"


def test_the_same_ids_work_on_their_own_shop(app, world, client_for):
    """The check above is not vacuous: on shop A, A's owner sees these pages."""
    a, _, ids_of_a = world
    adapter = app.url_map.bind("x", subdomain=SHOP)
    owner = client_for(a)
    owner.login("owner@shopa.test", "owner-a-pass", path="/admin/login")
    for rule, args in _id_routes(app):
        if "GET" not in rule.methods:
            continue
        path = adapter.build(rule.endpoint, {arg: ids_of_a[arg] for arg in args})
        assert owner.get(path).status_code == 200, path
