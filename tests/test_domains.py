"""Custom domains: a shop adds its own domain, proves it with a DNS TXT record (through an
injected resolver: no test touches the network) and only then is served on it."""

import html
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update


@pytest.fixture
def dns(app, monkeypatch):
    """The TXT records the fake resolver answers: {name: [values]}."""
    records: dict[str, list[str]] = {}
    monkeypatch.setitem(app.extensions, "kameng.dns_txt", lambda name: records.get(name, []))
    return records


@pytest.fixture
def give_plan(in_app):
    """give_plan(shop, custom_domain=True, max_staff=None): the shop's subscription."""
    from kameng.billing.models import Plan, Subscription

    def give(shop, custom_domain=True, max_staff=None):
        with in_app() as session:
            code = f"plan-{shop.slug}-{custom_domain}-{max_staff}"
            plan = Plan(code=code, name=code, custom_domain=custom_domain, max_staff=max_staff)
            session.add(plan)
            session.flush()
            subscription = session.scalar(
                select(Subscription).where(Subscription.tenant_id == shop.id))
            if subscription is None:
                today = date.today()
                session.add(Subscription(tenant_id=shop.id, plan_id=plan.id, status="active",
                                         period_start=today,
                                         period_end=today + timedelta(days=30)))
            else:
                subscription.plan_id = plan.id
                subscription.status = "active"
            session.commit()

    return give


@pytest.fixture
def shop(create_tenant, give_plan):
    shop = create_tenant(slug="alpha", owner_email="owner@alpha.test",
                         owner_password="owner-alpha-1")
    give_plan(shop)
    return shop


def body(page) -> str:
    return html.unescape(page.get_data(as_text=True))


def add(console, host):
    return console.submit("/admin/domains", {"host": host})


def domain_row(in_app, host):
    from kameng.tenants.models import Domain

    with in_app() as session:
        return session.scalar(select(Domain).where(Domain.host == host))


def verify(console, domain_id):
    return console.submit(f"/admin/domains/{domain_id}/verify", form_path="/admin/domains")


def serves(client_for, host, shop_name="Shop alpha") -> bool:
    page = client_for(host).get("/")
    if page.status_code == 404:
        return False
    assert page.status_code == 200, page.status_code
    return shop_name in body(page)


def audit_actions(in_app, action) -> list:
    from kameng.audit.models import AuditEvent

    with in_app() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_custom_domain_routes_only_after_verification(console, dns, in_app, client_for,
                                                     shop):
    page = add(console, "Shop.Example.COM.")
    assert page.status_code == 302
    domain = domain_row(in_app, "shop.example.com")
    assert domain is not None and domain.kind == "custom" and not domain.verified
    assert len(domain.verification_token) == 32

    listing = body(console.get("/admin/domains"))
    assert "_kameng-challenge.shop.example.com" in listing
    assert f"kameng-verify={domain.verification_token}" in listing
    assert "alpha.localhost" in listing  # the CNAME target

    # Not routed while unverified.
    assert not serves(client_for, "shop.example.com")

    # No record yet, or a wrong one: still not verified.
    dns["_kameng-challenge.shop.example.com"] = ["kameng-verify=wrong"]
    page = console.get(verify(console, domain.id).location)
    assert "was not found" in body(page)
    assert not domain_row(in_app, "shop.example.com").verified
    assert not serves(client_for, "shop.example.com")

    dns["_kameng-challenge.shop.example.com"] = [
        "v=spf1 -all", f"kameng-verify={domain.verification_token}"]
    page = console.get(verify(console, domain.id).location)
    assert "is verified" in body(page)
    assert domain_row(in_app, "shop.example.com").verified_at is not None

    assert serves(client_for, "shop.example.com")
    assert serves(client_for, "alpha.localhost")  # the platform subdomain keeps working
    # The console answers on the new domain too (its own, host-only session).
    assert client_for("shop.example.com").get("/admin/").status_code == 302
    assert [e.target for e in audit_actions(in_app, "domain.verified")] == ["shop.example.com"]


def test_removing_a_domain_stops_routing(console, dns, in_app, client_for):
    add(console, "gone.example.com")
    domain = domain_row(in_app, "gone.example.com")
    dns["_kameng-challenge.gone.example.com"] = [f"kameng-verify={domain.verification_token}"]
    verify(console, domain.id)
    assert serves(client_for, "gone.example.com")
    page = console.submit(f"/admin/domains/{domain.id}/remove", form_path="/admin/domains")
    assert page.status_code == 302
    assert domain_row(in_app, "gone.example.com") is None
    assert not serves(client_for, "gone.example.com")
    assert serves(client_for, "alpha.localhost")
    assert len(audit_actions(in_app, "domain.removed")) == 1


def test_another_shops_domain_cannot_be_added(console, create_tenant, give_plan, client_for,
                                              dns, in_app):
    other = create_tenant(slug="beta", owner_email="owner@beta.test",
                          owner_password="owner-beta-1")
    give_plan(other)
    add(console, "taken.example.com")
    beta = client_for(other)
    beta.login("owner@beta.test", "owner-beta-1", path="/admin/login")
    page = add(beta, "taken.example.com")
    assert page.status_code == 422 and "already used by another shop" in body(page)
    assert domain_row(in_app, "taken.example.com").tenant_id != other.id
    # Nor the platform address of another shop, nor the same domain twice.
    page = add(beta, "alpha.localhost")
    assert page.status_code == 422 and "Domains of the platform" in body(page)
    page = add(console, "taken.example.com")
    assert page.status_code == 422 and "already has this domain" in body(page)


def test_a_stale_unverified_claim_does_not_block_the_real_owner(
        console, create_tenant, give_plan, client_for, in_app):
    from kameng.tenants.models import Domain

    add(console, "squatted.example.com")
    with in_app() as session:
        session.execute(update(Domain).where(Domain.host == "squatted.example.com")
                        .values(created_at=datetime.now(UTC) - timedelta(days=4)))
        session.commit()
    other = create_tenant(slug="beta", owner_email="owner@beta.test",
                          owner_password="owner-beta-1")
    give_plan(other)
    beta = client_for(other)
    beta.login("owner@beta.test", "owner-beta-1", path="/admin/login")
    assert add(beta, "squatted.example.com").status_code == 302
    assert domain_row(in_app, "squatted.example.com").tenant_id == other.id


@pytest.mark.parametrize(("host", "message"), [
    ("localhost", "Enter a domain name"),
    ("x.localhost", "Domains of the platform"),
    ("admin.localhost", "Domains of the platform"),
    ("192.168.1.10", "not an IP address"),
    ("no_underscores.example.com", "Enter a domain name"),
    ("-dash.example.com", "Enter a domain name"),
    ("example", "Enter a domain name"),
    ("shop.example.com/path", "Enter a domain name"),
    ("shop.example.com:8080", "Enter a domain name"),
    ("a" * 64 + ".com", "Enter a domain name"),
])
def test_bad_domains_are_form_errors(console, host, message, in_app):
    from kameng.tenants.models import Domain

    page = add(console, host)
    assert page.status_code == 422 and message in body(page)
    with in_app() as session:
        assert session.scalar(select(Domain).where(Domain.kind == "custom")) is None


def test_the_plan_must_allow_custom_domains(console, shop, give_plan):
    give_plan(shop, custom_domain=False)
    page = console.get("/admin/domains")
    assert "does not include custom domains" in body(page)
    page = add(console, "shop.example.com")
    assert page.status_code == 422 and "does not include custom domains" in body(page)


def test_no_subscription_is_allowed_in_development_only(app, create_tenant, in_app,
                                                        monkeypatch):
    from kameng.tenants.domains import custom_domain_allowed
    from kameng.tenants.models import Tenant

    shop = create_tenant(slug="noplan")
    with in_app() as session:
        from kameng.billing.models import Subscription

        session.execute(Subscription.__table__.delete().where(
            Subscription.tenant_id == shop.id))
        tenant = session.get(Tenant, shop.id)
        for env, allowed in (("development", True), ("production", False)):
            monkeypatch.setitem(app.config, "KAMENG_ENV", env)
            assert custom_domain_allowed(tenant) is allowed
        session.rollback()


def test_dns_lookup_unavailable_is_a_clear_message(console, in_app, app, monkeypatch):
    import sys

    add(console, "nodns.example.com")
    domain = domain_row(in_app, "nodns.example.com")
    monkeypatch.delitem(app.extensions, "kameng.dns_txt", raising=False)
    monkeypatch.setitem(sys.modules, "dns.resolver", None)  # as if dnspython were missing
    page = console.get(verify(console, domain.id).location)
    assert "DNS lookup is unavailable" in body(page)
    assert not domain_row(in_app, "nodns.example.com").verified


def test_a_subdomain_row_cannot_be_removed_through_the_domains_page(console, in_app, shop):
    from kameng.tenants.models import Domain

    with in_app() as session:
        subdomain = session.scalar(select(Domain).where(Domain.tenant_id == shop.id))
    page = console.submit(f"/admin/domains/{subdomain.id}/remove", form_path="/admin/domains")
    assert page.status_code == 404
    assert domain_row(in_app, "alpha.localhost") is not None
