"""Shop staff: invitations by mail, roles and what each may do, disabling and removing —
never the last owner."""

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update


def body(page) -> str:
    return html.unescape(page.get_data(as_text=True))


def logged_in(client_for, shop, email, password):
    client = client_for(shop)
    page = client.login(email, password, path="/admin/login")
    assert page.status_code == 302, body(page)
    return client


@pytest.fixture
def owner(shop, client_for):
    return logged_in(client_for, shop, "owner@alpha.test", "owner-alpha-1")


@pytest.fixture
def as_role(shop, client_for, create_staff):
    """as_role("support") -> a console client of a new staff member with that role."""

    def make(role):
        email = f"{role}-{datetime.now(UTC).timestamp()}@alpha.test"
        create_staff(shop, email=email, password="staff-pass-1", role=role)
        return logged_in(client_for, shop, email, "staff-pass-1")

    return make


def staff_row(in_app, shop, email):
    from kameng.merchant.models import StaffUser

    with in_app(shop) as session:
        return session.scalar(select(StaffUser).where(StaffUser.email == email))


def audit_actions(in_app, action) -> list:
    from kameng.audit.models import AuditEvent

    with in_app() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture
def delivered_order(shop, card_product, client_for, buy, pay_sandbox, in_app):
    """A paid and delivered order of the shop with the code SECRET-CODE-1 -> its id."""
    from kameng.orders.models import Order

    product = card_product(shop, codes=["SECRET-CODE-1"])
    buyer = client_for(shop)
    pay_sandbox(buyer, buy(buyer, product))
    with in_app(shop) as session:
        order = session.scalar(select(Order).order_by(Order.id.desc()))
        assert order.status == "delivered"
        return order.id, product


# -- invitations ---------------------------------------------------------------------------------


def invitation_link(in_app, to) -> str:
    from kameng.mail.models import MailMessage

    with in_app() as session:
        mail = session.scalar(select(MailMessage).where(MailMessage.to == to,
                                                        MailMessage.kind == "staff.invite"))
    assert mail is not None, "no invitation mail"
    match = re.search(r"https?://[^\s]+/admin/invite/([\w-]+)", mail.body)
    assert match, mail.body
    return f"/admin/invite/{match.group(1)}"


def test_invitation_end_to_end(owner, shop, client_for, in_app):
    page = owner.submit("/admin/staff/invite", {"email": "New.Helper@Mail.test",
                                                "role": "support"}, form_path="/admin/staff")
    assert page.status_code == 302
    listing = body(owner.get("/admin/staff"))
    assert "new.helper@mail.test" in listing and "Invitations waiting" in listing
    link = invitation_link(in_app, "new.helper@mail.test")

    newcomer = client_for(shop)
    page = newcomer.get(link)
    assert page.status_code == 200 and "new.helper@mail.test" in body(page)
    page = newcomer.submit(link, {"name": "Helper", "password": "short"})
    assert page.status_code == 422 and "at least 8 characters" in body(page)
    page = newcomer.submit(link, {"name": "Helper", "password": "helper-pass-1"})
    assert page.status_code == 302 and page.location.endswith("/admin/")
    assert newcomer.get("/admin/").status_code == 200

    staff = staff_row(in_app, shop, "new.helper@mail.test")
    assert staff.role == "support" and staff.name == "Helper"
    assert staff.email_confirmed_at is not None
    # The link works once.
    assert client_for(shop).get(link).status_code == 404
    # The newcomer logs in with the password they chose.
    logged_in(client_for, shop, "new.helper@mail.test", "helper-pass-1")
    assert len(audit_actions(in_app, "staff.invited")) == 1
    assert len(audit_actions(in_app, "staff.joined")) == 1


def test_an_expired_or_withdrawn_invitation_does_not_work(owner, shop, client_for, in_app):
    from kameng.billing.models import StaffInvite

    owner.submit("/admin/staff/invite", {"email": "late@mail.test", "role": "manager"},
                 form_path="/admin/staff")
    link = invitation_link(in_app, "late@mail.test")
    with in_app(shop) as session:
        session.execute(update(StaffInvite).values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        session.commit()
    assert client_for(shop).get(link).status_code == 404

    owner.submit("/admin/staff/invite", {"email": "withdrawn@mail.test", "role": "manager"},
                 form_path="/admin/staff")
    link = invitation_link(in_app, "withdrawn@mail.test")
    with in_app(shop) as session:
        invite_id = session.scalar(select(StaffInvite.id).where(
            StaffInvite.email == "withdrawn@mail.test"))
    owner.submit(f"/admin/staff/invites/{invite_id}/revoke", form_path="/admin/staff")
    assert client_for(shop).get(link).status_code == 404
    assert client_for(shop).get("/admin/invite/not-a-token").status_code == 404


def test_inviting_someone_already_on_the_staff_is_refused(owner):
    page = owner.submit("/admin/staff/invite", {"email": "owner@alpha.test", "role": "manager"},
                        form_path="/admin/staff")
    assert page.status_code == 422 and "already on this shop's staff" in body(page)


def test_an_invitation_of_another_shop_does_not_work_here(owner, create_tenant, client_for,
                                                          in_app):
    owner.submit("/admin/staff/invite", {"email": "wanderer@mail.test", "role": "manager"},
                 form_path="/admin/staff")
    link = invitation_link(in_app, "wanderer@mail.test")
    other = create_tenant(slug="beta")
    assert client_for(other).get(link).status_code == 404


# -- what each role may do -------------------------------------------------------------------------


def test_support_sees_orders_and_buyers_but_never_codes_prices_or_credentials(
        as_role, delivered_order, in_app, create_customer, shop):
    order_id, product_id = delivered_order
    buyer = create_customer(shop)
    support = as_role("support")
    for path in ("/admin/", "/admin/orders", f"/admin/orders/{order_id}", "/admin/customers",
                 f"/admin/customers/{buyer.id}", "/admin/staff", "/admin/products"):
        assert support.get(path).status_code == 200, path
    assert "Reveal codes" not in body(support.get(f"/admin/orders/{order_id}"))
    nav = body(support.get("/admin/"))
    assert "/admin/payments" not in nav and "/admin/webhooks" not in nav

    token = support.csrf_token("/admin/")
    refused = [
        ("POST", f"/admin/orders/{order_id}/codes/reveal", {}),
        ("POST", f"/admin/products/{product_id}/codes/export", {}),
        ("POST", f"/admin/products/{product_id}", {"name": "cheap", "price": "0.01"}),
        ("POST", f"/admin/orders/{order_id}/refund", {"refund-to": "wallet"}),
        ("GET", "/admin/payments", {}),
        ("POST", "/admin/payments/gateways/epay", {}),
        ("GET", "/admin/webhooks", {}),
        ("GET", "/admin/suppliers", {}),
        ("GET", "/admin/appearance", {}),
        ("GET", "/admin/domains", {}),
        ("GET", "/admin/audit", {}),
        ("POST", "/admin/staff/invite", {"email": "x@y.test", "role": "manager"}),
    ]
    for method, path, data in refused:
        page = support.open(path, method=method, data={"csrf_token": token, **data})
        assert page.status_code == 403, f"{method} {path} gave {page.status_code}"
        assert "SECRET-CODE-1" not in body(page)
    assert audit_actions(in_app, "codes.reveal") == []
    assert audit_actions(in_app, "codes.export") == []


def test_a_manager_may_reveal_codes_but_not_manage_staff_or_credentials(
        as_role, delivered_order, in_app):
    order_id, product_id = delivered_order
    manager = as_role("manager")
    page = manager.get(f"/admin/orders/{order_id}")
    assert "Reveal codes" in body(page) and "SECRET-CODE-1" not in body(page)
    page = manager.submit(f"/admin/orders/{order_id}/codes/reveal",
                          form_path=f"/admin/orders/{order_id}")
    assert page.status_code == 200 and "SECRET-CODE-1" in body(page)
    assert page.headers["Cache-Control"] == "no-store"
    events = audit_actions(in_app, "codes.reveal")
    assert len(events) == 1 and events[0].details["count"] == 1
    assert events[0].actor_email.startswith("manager-")

    token = manager.csrf_token("/admin/")
    assert manager.post(f"/admin/products/{product_id}/codes/export",
                        data={"csrf_token": token}).status_code == 200
    for method, path in (("POST", "/admin/staff/invite"), ("GET", "/admin/payments"),
                         ("POST", "/admin/payments/gateways/epay")):
        page = manager.open(path, method=method, data={"csrf_token": token,
                                                       "email": "x@y.test", "role": "support"})
        assert page.status_code == 403, path
    assert manager.get("/admin/webhooks").status_code == 200
    assert manager.get("/admin/domains").status_code == 200


def test_permission_table_matches_the_roles():
    from kameng.merchant.console import PERMISSIONS, role_may

    for permission in ("codes.reveal", "codes.export", "catalog.edit", "payments.manage",
                       "webhooks.manage", "staff.manage", "billing.manage"):
        assert not role_may("support", permission), permission
    for permission in ("staff.manage", "billing.manage", "payments.manage"):
        assert not role_may("manager", permission), permission
    assert all(role_may("owner", permission) for permission in PERMISSIONS)
    for permission in ("orders.view", "tickets.view", "buyers.view"):
        assert role_may("support", permission)


def test_require_role_decorator(app):
    from flask_login import AnonymousUserMixin
    from werkzeug.exceptions import Forbidden

    from kameng.merchant import console

    @console.require_role("owner")
    def view():
        return "ok"

    class Staff:
        is_authenticated = True

        def __init__(self, role):
            self.role = role

    with app.test_request_context():
        for user, allowed in ((Staff("owner"), True), (Staff("manager"), False),
                              (AnonymousUserMixin(), False)):
            from unittest import mock

            with mock.patch.object(console, "current_user", user):
                if allowed:
                    assert view() == "ok"
                else:
                    with pytest.raises(Forbidden):
                        view()


# -- roles, disabling, removing ---------------------------------------------------------------


def test_owner_changes_roles_and_the_change_is_audited(owner, shop, create_staff, in_app):
    member = create_staff(shop, email="m@alpha.test", role="manager")
    page = owner.submit(f"/admin/staff/{member.id}/role", {"role": "support"},
                        form_path=f"/admin/staff/{member.id}")
    assert page.status_code == 302
    assert staff_row(in_app, shop, "m@alpha.test").role == "support"
    events = audit_actions(in_app, "staff.role_changed")
    assert len(events) == 1 and events[0].details == {"before": "manager", "after": "support"}


def test_the_last_owner_cannot_be_removed_disabled_or_demoted(owner, shop, in_app, owner_of,
                                                              create_staff):
    me = owner_of(shop)
    for action, data in (("role", {"role": "manager"}), ("disable", {}), ("remove", {})):
        page = owner.submit(f"/admin/staff/{me.id}/{action}", data,
                            form_path=f"/admin/staff/{me.id}")
        assert page.status_code == 302
        assert "at least one active owner" in body(owner.get(page.location)), action
        row = staff_row(in_app, shop, "owner@alpha.test")
        assert row.role == "owner" and row.active
    # With a second owner, the first may go.
    second = create_staff(shop, email="second@alpha.test", role="owner")
    page = owner.submit(f"/admin/staff/{second.id}/remove", form_path="/admin/staff")
    assert staff_row(in_app, shop, "second@alpha.test") is None
    create_staff(shop, email="third@alpha.test", role="owner")
    page = owner.submit(f"/admin/staff/{me.id}/role", {"role": "manager"},
                        form_path=f"/admin/staff/{me.id}")
    assert staff_row(in_app, shop, "owner@alpha.test").role == "manager"
    assert len(audit_actions(in_app, "staff.removed")) == 1


def test_a_disabled_member_is_logged_out_and_cannot_log_in(owner, shop, create_staff,
                                                           client_for, in_app):
    member = create_staff(shop, email="leaving@alpha.test", password="leaving-pass-1")
    theirs = logged_in(client_for, shop, "leaving@alpha.test", "leaving-pass-1")
    owner.submit(f"/admin/staff/{member.id}/disable", form_path=f"/admin/staff/{member.id}")
    assert theirs.get("/admin/").status_code == 302
    page = client_for(shop).login("leaving@alpha.test", "leaving-pass-1", path="/admin/login")
    assert page.status_code == 422
    owner.submit(f"/admin/staff/{member.id}/enable", form_path=f"/admin/staff/{member.id}")
    logged_in(client_for, shop, "leaving@alpha.test", "leaving-pass-1")
    assert [len(audit_actions(in_app, a)) for a in ("staff.disabled", "staff.enabled")] == [1, 1]


def test_a_manager_cannot_manage_staff(as_role, shop, owner_of):
    manager = as_role("manager")
    me = owner_of(shop)
    assert manager.get("/admin/staff").status_code == 200  # may look
    assert "Invite someone" not in body(manager.get("/admin/staff"))
    token = manager.csrf_token("/admin/staff")
    for action in ("role", "disable", "remove"):
        page = manager.post(f"/admin/staff/{me.id}/{action}",
                            data={"csrf_token": token, "role": "support"})
        assert page.status_code == 403, action


def test_the_plan_limits_staff_accounts(owner, shop, in_app):
    from datetime import date

    from kameng.billing.models import Plan, Subscription

    with in_app() as session:
        plan = Plan(code="tiny", name="Tiny", max_staff=2)
        session.add(plan)
        session.flush()
        session.execute(Subscription.__table__.delete().where(
            Subscription.tenant_id == shop.id))
        session.add(Subscription(tenant_id=shop.id, plan_id=plan.id, status="active",
                                 period_start=date.today(),
                                 period_end=date.today() + timedelta(days=30)))
        session.commit()
    assert owner.submit("/admin/staff/invite", {"email": "one@mail.test", "role": "manager"},
                        form_path="/admin/staff").status_code == 302
    page = owner.submit("/admin/staff/invite", {"email": "two@mail.test", "role": "manager"},
                        form_path="/admin/staff")
    assert page.status_code == 422 and "allows 2 staff accounts" in body(page)
