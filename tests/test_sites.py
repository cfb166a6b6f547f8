"""Host -> site resolution: shops, the admin host, the landing page, unknown and suspended hosts."""

import re

from kameng.tenants.hosts import normalize_host


def test_shop_home_names_the_shop(create_tenant, client_for):
    shop = create_tenant(slug="demo", name="Demo Card Shop")
    page = client_for(shop).get("/")
    assert page.status_code == 200
    assert "Demo Card Shop" in page.get_data(as_text=True)


def test_host_is_case_and_port_insensitive(create_tenant, client_for):
    create_tenant(slug="demo", name="Demo Card Shop")
    for host in ("DEMO.localhost", "demo.LocalHost:8000", "demo.localhost.", "demo.localhost:80"):
        page = client_for(host).get("/")
        assert page.status_code == 200, host
        assert "Demo Card Shop" in page.get_data(as_text=True)


def test_unknown_host_is_404_page(create_tenant, client_for):
    create_tenant(slug="demo")
    page = client_for("nope.localhost").get("/")
    assert page.status_code == 404
    assert "No shop lives at this address" in page.get_data(as_text=True)
    assert client_for("nope.localhost").get("/admin/").status_code == 404
    assert client_for("127.0.0.1:8000").get("/").status_code == 404


def test_admin_host_shows_super_admin_login(admin_client):
    page = admin_client.get("/", follow_redirects=True)
    assert page.status_code == 200
    assert "Super-admin log in" in page.get_data(as_text=True)


def test_bare_domain_serves_landing_page(client_for, hosts):
    for host in (hosts.landing, f"www.{hosts.landing}:8000"):
        page = client_for(host).get("/")
        assert page.status_code == 200
        assert "card shop" in page.get_data(as_text=True)


def test_missing_trailing_slash_redirects_on_the_same_host(create_tenant, client_for, hosts):
    # Routing names each kind of site as a pseudo-subdomain: the redirect once went to
    # shop.demo.localhost/admin/ and admin.admin.localhost/dashboard/, hosts that do not exist.
    create_tenant(slug="demo")
    for host, path in (("demo.localhost:8000", "/admin"), (hosts.admin, "/dashboard")):
        response = client_for(host).get(path)
        assert response.status_code in (301, 308), (host, path)
        assert response.headers["Location"] in (f"{path}/", f"http://{host}{path}/"), host


def test_suspended_shop_answers_503_and_console_stays_reachable(create_tenant, client_for, in_app):
    from kameng.tenants.service import get_tenant, suspend_tenant

    shop = create_tenant(slug="demo")
    client = client_for(shop)
    assert client.get("/").status_code == 200  # now cached in the resolver
    with in_app() as session:
        suspend_tenant(get_tenant("demo"))
        session.commit()
    page = client.get("/")
    assert page.status_code == 503
    assert "temporarily closed" in page.get_data(as_text=True)
    # The closed page is styled: its theme's stylesheet is served, not another 503 page.
    stylesheet = re.search(r'<link rel="stylesheet" href="([^"]+)"', page.get_data(as_text=True))
    style = client.get(stylesheet.group(1))
    style.close()  # a file response
    assert (style.status_code, style.mimetype) == (200, "text/css")
    assert client.get("/login").status_code == 503
    assert client.get("/admin/login").status_code == 200


def test_suspension_is_seen_at_once_even_with_a_stale_host_cache(create_tenant, client_for, app):
    """Another process suspends the shop: the host cache is not told, the page still is 503."""
    from sqlalchemy import update

    from kameng.extensions import db
    from kameng.tenants.models import Tenant

    shop = create_tenant(slug="demo")
    client = client_for(shop)
    assert client.get("/").status_code == 200
    with app.app_context():
        db.session.execute(update(Tenant).where(Tenant.id == shop.id).values(status="suspended"))
        db.session.commit()  # a Core update: no ORM event, just like another process
    assert client.get("/").status_code == 503


def test_normalize_host():
    assert normalize_host("Demo.LocalHost:8000") == "demo.localhost"
    assert normalize_host("shop.example.com.") == "shop.example.com"
    assert normalize_host("[::1]:8000") == "[::1]"
    assert normalize_host("") == ""


def test_unknown_path_on_shop_is_themed_404(create_tenant, client_for):
    shop = create_tenant(slug="demo", name="Demo Card Shop")
    page = client_for(shop).get("/no/such/page")
    assert page.status_code == 404
    assert "Demo Card Shop" in page.get_data(as_text=True)


def test_ids_beyond_the_columns_are_404_not_500(create_tenant, client_for, create_admin):
    shop = create_tenant(slug="demo")
    owner = client_for(shop)
    owner.login("owner@demo.test", "owner-pass-1", path="/admin/login")
    assert owner.get("/admin/customers/99999999999999").status_code == 404
    assert owner.get("/admin/customers/2147483648").status_code == 404
