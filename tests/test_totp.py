"""TOTP two-factor login for shop staff and super-admins: enable with a first code, log in in
two steps, refuse wrong and reused codes, disable with a code, reset by a super-admin."""

import html
import re
import time
from types import SimpleNamespace

import pyotp
import pytest
from sqlalchemy import select


@pytest.fixture
def clock(monkeypatch):
    """The TOTP clock, frozen and moved by the test: clock.now, clock.step(n)."""
    from kameng.security import totp

    state = SimpleNamespace(now=float(int(time.time()) // 30 * 30 + 5))
    monkeypatch.setattr(totp, "time", SimpleNamespace(time=lambda: state.now))

    def step(n=1):
        state.now += 30 * n

    state.step = step
    return state


def body(page) -> str:
    return html.unescape(page.get_data(as_text=True))


def code(secret, clock, offset=0) -> str:
    return pyotp.TOTP(secret).at(clock.now + 30 * offset)


def audit_actions(in_app, action) -> list:
    from kameng.audit.models import AuditEvent

    with in_app() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                    .order_by(AuditEvent.id)))


def enable_two_factor(client, clock, security="/admin/account/security") -> str:
    """Set up and confirm two-factor on the logged-in account -> its secret."""
    page = client.get(security)
    assert page.status_code == 200 and "Set up two-factor login" in body(page)
    client.submit(f"{security}/setup", form_path=security)
    page = body(client.get(security))
    assert "<svg" in page and "otpauth://totp/" in page
    secret = re.search(r"Key: <code>([A-Z2-7 ]+)</code>", page).group(1).replace(" ", "")
    page = client.submit(f"{security}/confirm", {"code": "000000"}, form_path=security)
    assert page.status_code == 422
    page = client.submit(f"{security}/confirm", {"code": code(secret, clock)},
                         form_path=security)
    assert page.status_code == 302, body(page)
    assert "Turn two-factor login off" in body(client.get(security))
    return secret


def console_client(client_for, shop):
    client = client_for(shop)
    assert client.login("owner@alpha.test", "owner-alpha-1",
                        path="/admin/login").status_code == 302
    return client


def stored_secret(in_app, shop):
    from kameng.merchant.models import StaffUser

    with in_app(shop) as session:
        return session.scalar(select(StaffUser).where(StaffUser.email == "owner@alpha.test"))


def test_enable_log_in_with_a_code_and_disable(shop, client_for, clock, in_app):
    owner = console_client(client_for, shop)
    secret = enable_two_factor(owner, clock)
    row = stored_secret(in_app, shop)
    assert row.totp_enabled and secret not in (row.totp_secret or "")  # encrypted at rest
    assert len(audit_actions(in_app, "auth.2fa_enabled")) == 1

    # The password alone does not log in.
    client = client_for(shop)
    page = client.login("owner@alpha.test", "owner-alpha-1", path="/admin/login")
    assert page.status_code == 302 and page.location.endswith("/admin/login/code")
    assert client.get("/admin/").status_code == 302
    assert "/admin/login" in client.get("/admin/orders").location
    assert "for owner@alpha.test" in body(client.get("/admin/login/code"))

    # A wrong code is refused (and audited); the code of the step already used is refused.
    page = client.submit("/admin/login/code", {"code": "123456"})
    assert page.status_code == 422 and "not valid" in body(page)
    page = client.submit("/admin/login/code", {"code": code(secret, clock)})
    assert page.status_code == 422  # used to enable two-factor a moment ago
    assert client.get("/admin/").status_code == 302

    clock.step()
    page = client.submit("/admin/login/code", {"code": code(secret, clock)})
    assert page.status_code == 302 and page.location.endswith("/admin/")
    assert client.get("/admin/").status_code == 200
    logins = audit_actions(in_app, "auth.login")
    assert logins[-1].details == {"two_factor": True}
    failed = audit_actions(in_app, "auth.login_failed")
    assert [e.details["reason"] for e in failed] == ["code", "code"]

    # Disabling needs a (fresh) code.
    page = client.submit("/admin/account/security/disable", {"code": code(secret, clock)},
                         form_path="/admin/account/security")
    assert page.status_code == 422  # reused
    clock.step()
    page = client.submit("/admin/account/security/disable", {"code": code(secret, clock)},
                         form_path="/admin/account/security")
    assert page.status_code == 302
    row = stored_secret(in_app, shop)
    assert not row.totp_enabled and row.totp_secret is None
    assert len(audit_actions(in_app, "auth.2fa_disabled")) == 1
    # From now on the password alone logs in again.
    page = client_for(shop).login("owner@alpha.test", "owner-alpha-1", path="/admin/login")
    assert page.location.endswith("/admin/")


def test_a_code_within_one_step_of_the_clock_works_and_older_ones_do_not(shop, client_for,
                                                                         clock):
    owner = console_client(client_for, shop)
    secret = enable_two_factor(owner, clock)
    clock.step(5)

    def attempt(offset):
        client = client_for(shop)
        client.login("owner@alpha.test", "owner-alpha-1", path="/admin/login")
        return client.submit("/admin/login/code", {"code": code(secret, clock, offset)})

    assert attempt(-2).status_code == 422  # a minute old
    assert attempt(+2).status_code == 422  # a minute ahead
    assert attempt(-1).status_code == 302  # the previous step: clocks drift
    assert attempt(-1).status_code == 422  # but only once
    assert attempt(0).status_code == 302
    assert attempt(-1).status_code == 422  # older than one already used


def test_the_code_step_expires_and_needs_the_password_step(shop, client_for, clock,
                                                           monkeypatch):
    from kameng.security import login

    owner = console_client(client_for, shop)
    secret = enable_two_factor(owner, clock)
    clock.step()
    # Straight to the code step: back to the password.
    stranger = client_for(shop)
    page = stranger.get("/admin/login/code")
    assert page.status_code == 302 and page.location.endswith("/admin/login")

    client = client_for(shop)
    client.login("owner@alpha.test", "owner-alpha-1", path="/admin/login")
    token = client.csrf_token("/admin/login/code")
    later = time.time() + login.PENDING_SECONDS + 1
    monkeypatch.setattr(login, "time", SimpleNamespace(time=lambda: later))
    page = client.post("/admin/login/code", data={"csrf_token": token,
                                                  "code": code(secret, clock)})
    assert page.status_code == 302 and page.location.endswith("/admin/login")
    assert client.get("/admin/").status_code == 302


def test_wrong_codes_are_rate_limited_like_passwords(shop, client_for, clock):
    owner = console_client(client_for, shop)
    enable_two_factor(owner, clock)
    client = client_for(shop)
    client.login("owner@alpha.test", "owner-alpha-1", path="/admin/login")
    token = client.csrf_token("/admin/login/code")
    statuses = [client.post("/admin/login/code", data={"csrf_token": token, "code": "000000"})
                .status_code for _ in range(7)]
    assert statuses[:4] == [422] * 4 and statuses[-1] == 429


def test_super_admin_two_factor_and_staff_reset(shop, client_for, clock, create_admin,
                                               admin_client, in_app):
    create_admin(email="root@kameng.test", password="admin-pass-1")
    assert admin_client.login("root@kameng.test", "admin-pass-1").status_code == 302
    admin_secret = enable_two_factor(admin_client, clock, security="/account/security")

    # The super-admin's own login now has two steps.
    clock.step()
    fresh = client_for(admin_client.host)
    page = fresh.login("root@kameng.test", "admin-pass-1")
    assert page.location.endswith("/login/code")
    assert fresh.get("/tenants").status_code == 302
    page = fresh.submit("/login/code", {"code": code(admin_secret, clock)})
    assert page.status_code == 302 and fresh.get("/tenants").status_code == 200

    # A shop owner with two-factor on loses the phone; the platform resets it (audited).
    owner = console_client(client_for, shop)
    clock.step()
    enable_two_factor(owner, clock)
    detail = f"/tenants/{shop.id}"
    page = body(fresh.get(detail))
    assert "Reset two-factor" in page
    owner_id = stored_secret(in_app, shop).id
    page = fresh.submit(f"{detail}/staff/{owner_id}/reset-2fa", form_path=detail)
    assert page.status_code == 302
    assert not stored_secret(in_app, shop).totp_enabled
    resets = audit_actions(in_app, "auth.2fa_reset")
    assert len(resets) == 1 and resets[0].tenant_id == shop.id
    assert resets[0].target == "owner@alpha.test" and resets[0].actor_kind == "platform"
    page = client_for(shop).login("owner@alpha.test", "owner-alpha-1", path="/admin/login")
    assert page.location.endswith("/admin/")
    # Another shop's staff id through this shop's page is not found.
    other_id = owner_id + 1000
    assert fresh.submit(f"{detail}/staff/{other_id}/reset-2fa",
                        form_path=detail).status_code == 404


def test_super_admin_accounts_page(create_admin, admin_client, client_for, in_app, clock):
    create_admin(email="root@kameng.test", password="admin-pass-1")
    admin_client.login("root@kameng.test", "admin-pass-1")
    page = admin_client.submit("/staff", {"email": "Second@Kameng.test", "name": "Two",
                                          "password": "second-pass-1"})
    assert page.status_code == 302
    listing = body(admin_client.get("/staff"))
    assert "second@kameng.test" in listing and "(you)" in listing

    second = client_for(admin_client.host)
    assert second.login("second@kameng.test", "second-pass-1").status_code == 302
    secret = enable_two_factor(second, clock, security="/account/security")
    assert secret
    assert "Reset two-factor" in body(admin_client.get("/staff"))

    from kameng.superadmin.models import PlatformUser

    with in_app() as session:
        ids = dict(session.execute(select(PlatformUser.email, PlatformUser.id)).all())
    # Nobody disables themselves; another super-admin can be disabled (and is logged out).
    page = admin_client.submit(f"/staff/{ids['root@kameng.test']}/disable", form_path="/staff")
    assert "cannot disable your own account" in body(admin_client.get(page.location))
    admin_client.submit(f"/staff/{ids['second@kameng.test']}/reset-2fa", form_path="/staff")
    admin_client.submit(f"/staff/{ids['second@kameng.test']}/disable", form_path="/staff")
    assert second.get("/tenants").status_code == 302
    assert client_for(admin_client.host).login("second@kameng.test",
                                               "second-pass-1").status_code == 422
    for action in ("platform_user.created", "platform_user.disabled", "auth.2fa_reset"):
        assert len(audit_actions(in_app, action)) == 1, action
    with in_app() as session:
        assert not session.get(PlatformUser, ids["second@kameng.test"]).totp_enabled


def test_totp_service_refuses_reuse_under_a_race(app, shop, in_app, clock):
    """Two requests with one code: the compare-and-set lets only the first through."""
    from kameng.errors import DomainError
    from kameng.merchant.models import StaffUser
    from kameng.security import totp

    with in_app(shop) as session:
        staff = session.scalar(select(StaffUser))
        secret = totp.begin_setup(staff)
        totp.confirm_setup(staff, code(secret, clock))
        session.commit()
    clock.step()
    with in_app(shop) as session:
        first = session.scalar(select(StaffUser))
        stale_copy = first.totp_secret
        totp.verify_login_code(first, code(secret, clock, 0))
        session.commit()
    with in_app(shop) as session:
        second = session.scalar(select(StaffUser))
        # As if this request had read the row before the first one wrote it.
        from sqlalchemy.orm.attributes import set_committed_value

        set_committed_value(second, "totp_secret", stale_copy)
        with pytest.raises(DomainError):
            totp.verify_login_code(second, code(secret, clock, 0))
        session.rollback()
