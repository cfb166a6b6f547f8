"""The audit log: every security-relevant action writes exactly one event; a shop's page shows
its own events only; the platform's page shows and filters them all. And read-only support
sessions (impersonation): a one-time link, short-lived, read-only, audited."""

import html
import time
from datetime import date, timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

import pyotp
import pytest
from sqlalchemy import func, select
from werkzeug.routing import IntegerConverter

from kameng.tenants.hosts import SHOP


@pytest.fixture
def owner(console):
    return console


def body(page) -> str:
    return html.unescape(page.get_data(as_text=True))


def count(in_app, action) -> int:
    from kameng.audit.models import AuditEvent

    with in_app() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.action == action))


def events(in_app, action) -> list:
    from kameng.audit.models import AuditEvent

    with in_app() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture
def scene(shop, owner, admin, client_for, card_product, buy, pay_sandbox, create_customer,
          in_app, monkeypatch, app):
    """Everything an audited action needs, made on demand."""
    from kameng.orders.models import Order

    def delivered_order(customer=None):
        product = card_product(shop, codes=[f"CODE-{time.monotonic_ns()}"])
        buyer = client_for(shop)
        if customer is not None:
            buyer.login(customer.email, "buyer-pass-1")
        pay_sandbox(buyer, buy(buyer, product, **({"email": customer.email} if customer
                                                 else {})))
        with in_app(shop) as session:
            return session.scalar(select(Order.id).order_by(Order.id.desc())), product

    def pending_order():
        product = card_product(shop, codes=["PENDING-1"])
        buyer = client_for(shop)
        buy(buyer, product)
        with in_app(shop) as session:
            return session.scalar(select(Order.id).order_by(Order.id.desc()))

    def two_factor_secret():
        from kameng.merchant.models import StaffUser
        from kameng.security import totp

        with in_app(shop) as session:
            staff = session.scalar(select(StaffUser).where(StaffUser.role == "owner"))
            secret = totp.begin_setup(staff)
            session.commit()
            return secret, staff.id

    records = {}
    monkeypatch.setitem(app.extensions, "kameng.dns_txt", lambda name: records.get(name, []))
    return SimpleNamespace(shop=shop, owner=owner, admin=admin, client_for=client_for,
                           delivered_order=delivered_order, pending_order=pending_order,
                           two_factor_secret=two_factor_secret, dns=records,
                           create_customer=create_customer, in_app=in_app)


# -- one audited action each ------------------------------------------------------------------


def staff_login(s):
    s.client_for(s.shop).login("owner@alpha.test", "owner-alpha-1", path="/admin/login")


def staff_login_failed(s):
    s.client_for(s.shop).login("owner@alpha.test", "wrong-password", path="/admin/login")


def admin_login(s):
    s.client_for(s.admin.host).login("root@kameng.test", "admin-pass-1")


def admin_login_failed(s):
    s.client_for(s.admin.host).login("nobody@kameng.test", "wrong-password")


def two_factor_enabled(s):
    secret, _ = s.two_factor_secret()
    s.owner.submit("/admin/account/security/confirm", {"code": pyotp.TOTP(secret).now()},
                   form_path="/admin/account/security")


def two_factor_disabled(s):
    from kameng.merchant.models import StaffUser
    from kameng.security import totp

    secret, staff_id = s.two_factor_secret()
    with s.in_app(s.shop) as session:
        totp.confirm_setup(session.get(StaffUser, staff_id),
                           pyotp.TOTP(secret).at(time.time() - 30))
        session.commit()
    s.owner.submit("/admin/account/security/disable", {"code": pyotp.TOTP(secret).now()},
                   form_path="/admin/account/security")


def two_factor_reset(s):
    from kameng.merchant.models import StaffUser

    _, staff_id = s.two_factor_secret()
    with s.in_app(s.shop) as session:
        session.get(StaffUser, staff_id).totp_enabled = True
        session.commit()
    detail = f"/tenants/{s.shop.id}"
    s.admin.submit(f"{detail}/staff/{staff_id}/reset-2fa", form_path=detail)


def credentials_changed(s):
    page = s.owner.submit("/admin/payments/gateways/epay", {
        "epay-cred_gateway_url": "https://pay.example.com/", "epay-cred_pid": "1001",
        "epay-cred_key": "merchant-key-0123456789"}, form_path="/admin/payments")
    assert page.status_code == 302, body(page)[:3000]


def codes_exported(s):
    _, product = s.delivered_order()
    s.owner.submit(f"/admin/products/{product}/codes/export",
                   form_path=f"/admin/products/{product}/codes")


def codes_revealed(s):
    order_id, _ = s.delivered_order()
    s.owner.submit(f"/admin/orders/{order_id}/codes/reveal",
                   form_path=f"/admin/orders/{order_id}")


def refunded(s):
    customer = s.create_customer(s.shop, email="refund-me@alpha.test")
    order_id, _ = s.delivered_order(customer)
    s.owner.submit(f"/admin/orders/{order_id}/refund",
                   {"refund-to": "wallet", "refund-reason": "did not work"},
                   form_path=f"/admin/orders/{order_id}")


def marked_paid(s):
    order_id = s.pending_order()
    s.owner.submit(f"/admin/orders/{order_id}/mark-paid", {"paid-reason": "bank transfer"},
                   form_path=f"/admin/orders/{order_id}")


def impersonated(s):
    detail = f"/tenants/{s.shop.id}"
    s.admin.submit(f"{detail}/impersonate", form_path=detail)


def impersonation_started(s):
    detail = f"/tenants/{s.shop.id}"
    link = s.admin.submit(f"{detail}/impersonate", form_path=detail).location
    support = s.client_for(urlsplit(link).hostname)
    assert support.get(urlsplit(link).path).status_code == 302


def suspended(s):
    detail = f"/tenants/{s.shop.id}"
    s.admin.submit(f"{detail}/suspend", form_path=detail)


def resumed(s):
    suspended(s)
    detail = f"/tenants/{s.shop.id}"
    s.admin.submit(f"{detail}/resume", form_path=detail)


def staff_invited(s):
    s.owner.submit("/admin/staff/invite", {"email": "new@mail.test", "role": "manager"},
                   form_path="/admin/staff")


def domain_added(s):
    s.owner.submit("/admin/domains", {"host": "shop.example.com"})


def domain_verified(s):
    from kameng.tenants.models import Domain

    domain_added(s)
    with s.in_app() as session:
        domain = session.scalar(select(Domain).where(Domain.host == "shop.example.com"))
    s.dns["_kameng-challenge.shop.example.com"] = [f"kameng-verify={domain.verification_token}"]
    s.owner.submit(f"/admin/domains/{domain.id}/verify", form_path="/admin/domains")


def api_key_created(s):
    from kameng.merchant.models import StaffUser

    with s.in_app(s.shop) as session:
        owner_id = session.scalar(select(StaffUser.id).where(StaffUser.role == "owner"))
    page = s.owner.submit("/admin/api-keys/staff", {"owner": owner_id, "name": "audited",
                                                    "scopes": ["catalog"]},
                          form_path="/admin/api-keys")
    assert page.status_code == 200, body(page)[:3000]


def api_key_revoked(s):
    from kameng.api.models import ApiKey

    api_key_created(s)
    with s.in_app() as session:
        key = session.scalar(select(ApiKey.id).where(ApiKey.name == "audited"))
    s.owner.submit(f"/admin/api-keys/{key}/revoke", form_path="/admin/api-keys")


AUDITED = [
    ("auth.login", staff_login),
    ("auth.login_failed", staff_login_failed),
    ("auth.login", admin_login),
    ("auth.login_failed", admin_login_failed),
    ("auth.2fa_enabled", two_factor_enabled),
    ("auth.2fa_disabled", two_factor_disabled),
    ("auth.2fa_reset", two_factor_reset),
    ("payments.credentials_changed", credentials_changed),
    ("api_key.created", api_key_created),
    ("api_key.revoked", api_key_revoked),
    ("codes.export", codes_exported),
    ("codes.reveal", codes_revealed),
    ("order.refund", refunded),
    ("order.mark_paid", marked_paid),
    ("tenant.impersonate", impersonated),
    ("tenant.impersonate_start", impersonation_started),
    ("tenant.suspend", suspended),
    ("tenant.resume", resumed),
    ("staff.invited", staff_invited),
    ("domain.added", domain_added),
    ("domain.verified", domain_verified),
]


@pytest.mark.parametrize(("action", "perform"), AUDITED,
                         ids=[f"{a}-{f.__name__}" for a, f in AUDITED])
def test_every_audited_action_writes_exactly_one_event(scene, in_app, action, perform):
    before = count(in_app, action)
    perform(scene)
    assert count(in_app, action) == before + 1
    event = events(in_app, action)[-1]
    assert event.actor_kind in ("staff", "platform")
    assert event.ip  # from which address
    assert event.created_at is not None


def test_a_login_event_names_who_and_where(shop, owner, in_app):
    (event,) = events(in_app, "auth.login")
    assert event.tenant_id == shop.id and event.actor_email == "owner@alpha.test"
    assert event.actor_kind == "staff" and event.actor_id is not None


def test_a_failed_login_of_an_unknown_address_is_recorded_with_that_address(shop, client_for,
                                                                            in_app):
    client_for(shop).login("Nobody@Alpha.test", "whatever-pass", path="/admin/login")
    (event,) = events(in_app, "auth.login_failed")
    assert event.actor_id is None and event.actor_email == "nobody@alpha.test"
    assert event.tenant_id == shop.id and event.details == {"reason": "password"}


def test_buyer_logins_are_not_audited(shop, create_customer, client_for, in_app):
    create_customer(shop, email="buyer@alpha.test")
    client_for(shop).login("buyer@alpha.test", "buyer-pass-1")
    client_for(shop).login("buyer@alpha.test", "wrong-pass-1")
    assert count(in_app, "auth.login") == 0 and count(in_app, "auth.login_failed") == 0


# -- the pages --------------------------------------------------------------------------------


def add_events(in_app, tenant_id, n, action="test.thing", actor="someone@mail.test"):
    from kameng.audit.service import Actor, record

    with in_app() as session:
        for i in range(n):
            record(Actor(kind="staff", id=1, email=actor, ip="10.0.0.1"), action,
                   tenant_id=tenant_id, target=f"target-{tenant_id}-{i}")
        session.commit()


def test_the_shop_audit_page_shows_only_its_own_events(shop, owner, create_tenant, in_app):
    other = create_tenant(slug="beta")
    add_events(in_app, shop.id, 2, action="test.alpha")
    add_events(in_app, other.id, 2, action="test.beta")
    add_events(in_app, None, 1, action="test.platform")
    page = body(owner.get("/admin/audit"))
    assert f"target-{shop.id}-0" in page and "<code>test.alpha" in page
    assert "<code>test.beta" not in page and f"target-{other.id}-0" not in page
    assert "<code>test.platform" not in page
    # Filtering by action of another shop finds nothing; searching works.
    assert "No events match" in body(owner.get("/admin/audit?action=test.beta"))
    page = body(owner.get(f"/admin/audit?q=target-{shop.id}-1"))
    assert f"target-{shop.id}-1" in page and f"target-{shop.id}-0" not in page


def test_the_audit_pages_are_newest_first_and_paginated(shop, owner, in_app):
    add_events(in_app, shop.id, 60, action="test.many")
    page = body(owner.get("/admin/audit?action=test.many"))
    assert page.index(f"target-{shop.id}-59") < page.index(f"target-{shop.id}-10")
    assert f"target-{shop.id}-9<" not in page and "Older" in page
    page = body(owner.get("/admin/audit?action=test.many&page=2"))
    assert f"target-{shop.id}-9<" in page and f"target-{shop.id}-0<" in page
    assert "Newer" in page and "Older" not in page


def test_the_platform_audit_page_filters_by_shop_action_actor_and_date(
        shop, admin, create_tenant, in_app):
    other = create_tenant(slug="beta")
    add_events(in_app, shop.id, 1, action="test.alpha", actor="anna@mail.test")
    add_events(in_app, other.id, 1, action="test.beta", actor="bert@mail.test")
    page = body(admin.get("/audit"))
    assert "<code>test.alpha" in page and "<code>test.beta" in page and "<code>auth.login" in page
    page = body(admin.get("/audit?shop=beta"))
    assert "<code>test.beta" in page and "<code>test.alpha" not in page
    page = body(admin.get("/audit?actor=anna"))
    assert "<code>test.alpha" in page and "<code>test.beta" not in page
    page = body(admin.get("/audit?action=auth."))
    assert "<code>auth.login" in page and "<code>test.alpha" not in page
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    assert "No events match" in body(admin.get(f"/audit?since={tomorrow}"))
    assert "<code>test.alpha" in body(admin.get(f"/audit?until={tomorrow}"))
    assert "No shop with this address" in body(admin.get("/audit?shop=nope"))


def test_support_staff_cannot_read_the_audit_log(shop, create_staff, client_for):
    create_staff(shop, email="support@alpha.test", password="support-pass-1", role="support")
    client = client_for(shop)
    client.login("support@alpha.test", "support-pass-1", path="/admin/login")
    assert client.get("/admin/audit").status_code == 403


# -- read-only support sessions ---------------------------------------------------------------


def support_link(admin, shop) -> tuple[str, str]:
    detail = f"/tenants/{shop.id}"
    page = admin.submit(f"{detail}/impersonate", form_path=detail)
    assert page.status_code == 302
    parts = urlsplit(page.location)
    return parts.hostname, parts.path


def test_impersonation_link_works_once_and_is_audited_on_both_sides(shop, admin, client_for,
                                                                    in_app):
    host, path = support_link(admin, shop)
    assert host == "alpha.localhost" and path.startswith("/admin/impersonate/")
    support = client_for(host)
    page = support.get(path)
    assert page.status_code == 302 and page.location.endswith("/admin/")
    page = body(support.get("/admin/"))
    assert "Read-only support session" in page and "root@kameng.test" in page
    assert support.get("/admin/orders").status_code == 200

    again = client_for(host)
    assert again.get(path).status_code == 403
    assert again.get("/admin/").status_code == 302

    (issued,) = events(in_app, "tenant.impersonate")
    (started,) = events(in_app, "tenant.impersonate_start")
    for event in (issued, started):
        assert event.tenant_id == shop.id and event.actor_kind == "platform"
        assert event.actor_email == "root@kameng.test"
    assert started.details["as_staff"] == "owner@alpha.test"
    # The shop sees the support session in its own audit log.
    owner = client_for(shop)
    owner.login("owner@alpha.test", "owner-alpha-1", path="/admin/login")
    page = body(owner.get("/admin/audit"))
    assert "tenant.impersonate_start" in page and "root@kameng.test" in page


def test_impersonation_link_expires(shop, admin, client_for, monkeypatch):
    import itsdangerous.timed

    host, path = support_link(admin, shop)
    later = time.time() + 61
    monkeypatch.setattr(itsdangerous.timed, "time", SimpleNamespace(time=lambda: later))
    assert client_for(host).get(path).status_code == 403


def test_impersonation_link_is_for_its_shop_only(shop, admin, client_for, create_tenant):
    other = create_tenant(slug="beta")
    _, path = support_link(admin, shop)
    assert client_for(other).get(path).status_code == 403
    assert client_for(shop).get("/admin/impersonate/forged-token").status_code == 403


def _console_post_routes(app):
    from kameng.merchant.console import PUBLIC_ENDPOINTS, READ_ONLY_ALLOWED

    adapter = app.url_map.bind("x", subdomain=SHOP)
    for rule in app.url_map.iter_rules():
        if rule.subdomain != SHOP or not rule.rule.startswith("/admin"):
            continue
        if rule.endpoint in PUBLIC_ENDPOINTS | READ_ONLY_ALLOWED:
            continue
        for method in sorted(rule.methods - {"GET", "HEAD", "OPTIONS"}):
            values = {name: 1 if isinstance(conv, IntegerConverter) else "x"
                      for name, conv in rule._converters.items()}
            yield method, adapter.build(rule.endpoint, values)


def test_a_read_only_session_changes_nothing(app, shop, admin, client_for, in_app):
    host, path = support_link(admin, shop)
    support = client_for(host)
    support.get(path)
    token = support.csrf_token("/admin/")
    routes = list(_console_post_routes(app))
    assert len(routes) > 20, "the console has no POST routes? this test would check nothing"
    for method, route in routes:
        page = support.open(route, method=method, data={"csrf_token": token, "email": "x@y.z",
                                                        "role": "support", "host": "a.example"})
        assert page.status_code == 403, f"{method} {route} gave {page.status_code}"
    # Nothing was written but the two events of the session.
    from kameng.audit.models import AuditEvent

    with in_app() as session:
        actions = set(session.scalars(select(AuditEvent.action)))
    assert actions == {"auth.login", "tenant.impersonate", "tenant.impersonate_start"}

    # Ending the session works (and leads back to the platform console).
    end = support.post("/admin/impersonate/end", data={"csrf_token": token})
    assert end.status_code == 302 and "admin.localhost" in end.location
    assert support.get("/admin/").status_code == 302


def test_a_read_only_session_ends_after_an_hour(shop, admin, client_for, monkeypatch):
    from kameng.merchant import console

    host, path = support_link(admin, shop)
    support = client_for(host)
    support.get(path)
    assert support.get("/admin/").status_code == 200
    later = time.time() + 3601
    monkeypatch.setattr(console, "time", SimpleNamespace(time=lambda: later))
    assert support.get("/admin/").status_code == 302
