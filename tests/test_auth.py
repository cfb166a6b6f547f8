"""The three logins: separate sessions per host and area, CSRF, rate limits, rotation."""

import pytest


@pytest.fixture
def shops(create_tenant, create_customer):
    a = create_tenant(slug="shopa", owner_email="owner@shopa.test", owner_password="owner-a-pass")
    b = create_tenant(slug="shopb", owner_email="owner@shopb.test", owner_password="owner-b-pass")
    create_customer(a, email="buyer@shopa.test", password="buyer-a-pass")
    create_customer(b, email="buyer@shopb.test", password="buyer-b-pass")
    return a, b


def _cookie(client, name, host):
    cookie = client.get_cookie(name, domain=host, path="/admin" if name == "km_staff" else "/")
    assert cookie is not None, f"no {name} cookie for {host}"
    return cookie.value


def test_buyer_registers_logs_in_and_out(shops, client_for):
    a, _ = shops
    client = client_for(a)
    page = client.submit("/register", {"email": "New@Buyer.test", "password": "new-buyer-pass"})
    assert page.status_code == 302 and page.location.endswith("/account")
    assert "new@buyer.test" in client.get("/account").get_data(as_text=True)
    client.submit("/logout", form_path="/account")
    assert client.get("/account").status_code == 302
    page = client.login("new@buyer.test", "new-buyer-pass")
    assert page.status_code == 302


def test_same_email_may_register_at_two_shops_but_not_twice_at_one(shops, client_for):
    a, b = shops
    assert (
        client_for(b)
        .submit("/register", {"email": "buyer@shopa.test", "password": "another-pass"})
        .status_code
        == 302
    )
    page = client_for(a).submit(
        "/register", {"email": "buyer@shopa.test", "password": "another-pass"}
    )
    assert page.status_code == 422
    assert "already exists" in page.get_data(as_text=True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"email": "not-an-email", "password": "long-enough"}, "Enter a valid e-mail address"),
        ({"email": "x@y.test", "password": "short"}, "at least 8 characters"),
        ({"email": "x@y.test", "password": "x@y.test"}, "must not be your e-mail"),
        ({"email": "", "password": ""}, "This field is required"),
    ],
)
def test_bad_registrations_get_form_errors(shops, client_for, data, message):
    page = client_for(shops[0]).submit("/register", data)
    assert page.status_code == 422
    assert message in page.get_data(as_text=True)


def test_wrong_password_is_a_form_error(shops, client_for):
    page = client_for(shops[0]).login("buyer@shopa.test", "wrong-password")
    assert page.status_code == 422
    assert "Wrong e-mail or password" in page.get_data(as_text=True)


def test_buyer_of_shop_a_cannot_log_in_on_shop_b(shops, client_for):
    _, b = shops
    page = client_for(b).login("buyer@shopa.test", "buyer-a-pass")
    assert page.status_code == 422


def test_staff_logs_in_to_own_console_only(shops, client_for):
    a, b = shops
    client = client_for(a)
    assert client.get("/admin/").status_code == 302  # to the login page
    page = client.login("owner@shopa.test", "owner-a-pass", path="/admin/login")
    assert page.status_code == 302 and page.location.endswith("/admin/")
    assert "shopa" in client.get("/admin/").get_data(as_text=True).lower()
    other = client_for(b)
    assert other.login("owner@shopa.test", "owner-a-pass", path="/admin/login").status_code == 422


def test_session_cookie_from_shop_a_does_not_work_on_shop_b_or_admin(shops, client_for, hosts):
    a, b = shops
    client = client_for(a)
    client.login("owner@shopa.test", "owner-a-pass", path="/admin/login")
    staff_cookie = _cookie(client, "km_staff", "shopa.localhost")
    client.login("buyer@shopa.test", "buyer-a-pass")
    buyer_cookie = _cookie(client, "km_shop", "shopa.localhost")
    assert client.get("/admin/").status_code == 200
    assert client.get("/account").status_code == 200

    thief = client_for(b)
    thief.set_cookie("km_staff", staff_cookie, domain="shopb.localhost", path="/admin")
    thief.set_cookie("km_shop", buyer_cookie, domain="shopb.localhost")
    assert thief.get("/admin/").status_code == 302
    assert thief.get("/account").status_code == 302

    admin = client_for(hosts.admin)
    for name in ("km_admin", "km_staff", "km_shop"):
        admin.set_cookie(name, staff_cookie, domain=hosts.admin)
    assert admin.get("/tenants").status_code == 302

    # A staff cookie presented to the storefront (and vice versa) is not a buyer session.
    mixed = client_for(a)
    mixed.set_cookie("km_shop", staff_cookie, domain="shopa.localhost")
    mixed.set_cookie("km_staff", buyer_cookie, domain="shopa.localhost", path="/admin")
    assert mixed.get("/account").status_code == 302
    assert mixed.get("/admin/").status_code == 302


def test_no_cookie_has_a_domain_attribute(shops, client_for, hosts, create_admin):
    create_admin(email="root@kameng.test", password="admin-pass-1")
    a, _ = shops
    responses = []
    shop = client_for(a)
    responses.append(shop.login("buyer@shopa.test", "buyer-a-pass"))
    responses.append(shop.login("owner@shopa.test", "owner-a-pass", path="/admin/login"))
    admin = client_for(hosts.admin)
    responses.append(admin.login("root@kameng.test", "admin-pass-1"))
    responses.append(client_for(hosts.landing).get("/"))
    set_cookies = [h for r in responses for h in r.headers.getlist("Set-Cookie")]
    assert len(set_cookies) >= 3
    for header in set_cookies:
        assert "domain=" not in header.lower(), header
        assert "httponly" in header.lower(), header
        assert "samesite=lax" in header.lower(), header


def test_shop_owner_cannot_log_in_to_admin_host(shops, admin_client):
    page = admin_client.login("owner@shopa.test", "owner-a-pass")
    assert page.status_code == 422
    assert admin_client.get("/tenants").status_code == 302


def test_super_admin_logs_in_on_admin_host_only(create_admin, admin_client, shops, client_for):
    create_admin(email="root@kameng.test", password="admin-pass-1")
    assert admin_client.login("root@kameng.test", "admin-pass-1").status_code == 302
    assert admin_client.get("/tenants").status_code == 200
    shop = client_for(shops[0])
    assert shop.login("root@kameng.test", "admin-pass-1", path="/admin/login").status_code == 422


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("shop", "/login"),
        ("shop", "/register"),
        ("shop", "/admin/login"),
        ("admin", "/login"),
        ("admin", "/tenants"),
    ],
)
def test_post_without_csrf_token_is_400(shops, client_for, hosts, target, path):
    client = client_for(shops[0] if target == "shop" else hosts.admin)
    page = client.post(path, data={"email": "buyer@shopa.test", "password": "buyer-a-pass"})
    assert page.status_code == 400
    assert "expired" in page.get_data(as_text=True)


def test_csrf_token_of_another_shop_is_refused(shops, client_for):
    a, b = shops
    client = client_for(a)
    token_a = client.csrf_token("/login")
    page = client_for(b).post(
        "/login",
        data={"email": "buyer@shopb.test", "password": "buyer-b-pass", "csrf_token": token_a},
    )
    assert page.status_code == 400


@pytest.mark.parametrize("path", ["/login", "/admin/login"])
def test_sixth_bad_password_within_a_minute_is_429(shops, client_for, path):
    client = client_for(shops[0])
    email = "buyer@shopa.test" if path == "/login" else "owner@shopa.test"
    for _ in range(5):
        assert client.login(email, "bad-password").status_code == 422
    page = client.login(email, "bad-password")
    assert page.status_code == 429
    assert "Retry-After" in page.headers
    assert "Too many attempts" in page.get_data(as_text=True)


def test_admin_host_login_is_rate_limited(create_admin, admin_client):
    create_admin(email="root@kameng.test", password="admin-pass-1")
    for _ in range(5):
        admin_client.login("root@kameng.test", "nope-nope")
    assert admin_client.login("root@kameng.test", "admin-pass-1").status_code == 429


def test_limit_is_per_account_across_client_addresses(shops, client_for):
    a, _ = shops
    for n in range(5):
        client = client_for(a)
        client.environ_base = {"REMOTE_ADDR": f"10.0.0.{n}"}
        assert client.login("buyer@shopa.test", "bad-password").status_code == 422
    client = client_for(a)
    client.environ_base = {"REMOTE_ADDR": "10.0.0.99"}
    assert client.login("buyer@shopa.test", "buyer-a-pass").status_code == 429


def test_limit_is_per_address_across_accounts(shops, client_for):
    a, _ = shops
    client = client_for(a)
    for n in range(5):
        assert client.login(f"nobody{n}@shopa.test", "bad-password").status_code == 422
    assert client.login("buyer@shopa.test", "buyer-a-pass").status_code == 429


def test_good_logins_do_not_use_up_the_limit(shops, client_for):
    client = client_for(shops[0])
    for _ in range(7):
        assert client.login("buyer@shopa.test", "buyer-a-pass").status_code == 302


def test_login_rotates_the_session(shops, client_for):
    client = client_for(shops[0])
    client.get("/login")
    before = _cookie(client, "km_shop", "shopa.localhost")
    token_before = client.csrf_token("/login")
    client.submit("/login", {"email": "buyer@shopa.test", "password": "buyer-a-pass"})
    after = _cookie(client, "km_shop", "shopa.localhost")
    assert after != before
    assert client.csrf_token("/account") != token_before


def test_password_change_ends_other_sessions(shops, client_for, in_app):
    from sqlalchemy import select

    from kameng.members.models import Customer

    a, _ = shops
    client = client_for(a)
    client.login("buyer@shopa.test", "buyer-a-pass")
    assert client.get("/account").status_code == 200
    with in_app(a) as session:
        buyer = session.scalar(select(Customer).where(Customer.email == "buyer@shopa.test"))
        buyer.set_password("a-new-password")
        session.commit()
    assert client.get("/account").status_code == 302


def test_login_next_only_follows_local_paths(shops, client_for):
    client = client_for(shops[0])
    token = client.csrf_token("/login")
    for target, expected in [
        ("/account?x=1", "/account?x=1"),
        ("https://evil.test/", "/account"),
        ("//evil.test/", "/account"),
        ("/\\evil.test", "/account"),
    ]:
        client.get("/account")  # fresh page
        page = client.post(
            f"/login?next={target}",
            data={"email": "buyer@shopa.test", "password": "buyer-a-pass", "csrf_token": token},
        )
        assert page.status_code == 302
        assert page.location.endswith(expected), (target, page.location)
        token = client.csrf_token("/login")
