"""The super-admin console: list, create, suspend and resume shops."""

import pytest


@pytest.fixture
def admin(create_admin, admin_client):
    create_admin(email="root@kameng.test", password="admin-pass-1")
    assert admin_client.login("root@kameng.test", "admin-pass-1").status_code == 302
    return admin_client


def test_console_pages_need_login(admin_client):
    for path in ("/", "/tenants", "/tenants/1"):
        page = admin_client.get(path)
        assert page.status_code == 302 and "/login" in page.location


def test_create_shop_from_console(admin, client_for):
    page = admin.submit(
        "/tenants",
        {
            "slug": "newshop",
            "name": "New Shop",
            "owner_email": "o@newshop.test",
            "owner_password": "owner-pass-9",
        },
        form_path="/tenants",
    )
    assert page.status_code == 302
    detail = admin.get(page.location).get_data(as_text=True)
    assert "New Shop" in detail and "newshop.localhost" in detail and "o@newshop.test" in detail
    assert "New Shop" in admin.get("/tenants").get_data(as_text=True)
    shop = client_for("newshop.localhost")
    assert "New Shop" in shop.get("/").get_data(as_text=True)
    assert shop.login("o@newshop.test", "owner-pass-9", path="/admin/login").status_code == 302


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"slug": "admin"}, "is reserved"),
        ({"slug": "x"}, "Field must be between 3 and 32 characters"),
        ({"slug": "has space"}, "3 to 32 characters"),
        ({"owner_email": "nope"}, "valid e-mail"),
        ({"owner_password": "short"}, "at least 8"),
        ({"name": ""}, "This field is required"),
    ],
)
def test_bad_shop_input_is_a_form_error(admin, data, message):
    form = {
        "slug": "goodshop",
        "name": "Good",
        "owner_email": "o@good.test",
        "owner_password": "owner-pass-9",
        **data,
    }
    page = admin.submit("/tenants", form)
    assert page.status_code == 422
    assert message in page.get_data(as_text=True)


def test_taken_slug_is_a_form_error(admin, create_tenant):
    create_tenant(slug="taken")
    page = admin.submit(
        "/tenants",
        {"slug": "taken", "name": "X", "owner_email": "o@x.test", "owner_password": "owner-pass-9"},
    )
    assert page.status_code == 422 and "is taken" in page.get_data(as_text=True)


def test_suspend_and_resume_from_console(admin, create_tenant, client_for):
    shop = create_tenant(slug="shop1")
    buyer = client_for(shop)
    assert buyer.get("/").status_code == 200
    page = admin.submit(f"/tenants/{shop.id}/suspend", form_path=f"/tenants/{shop.id}")
    assert page.status_code == 302
    assert buyer.get("/").status_code == 503
    assert "suspended" in admin.get(f"/tenants/{shop.id}").get_data(as_text=True)
    admin.submit(f"/tenants/{shop.id}/resume", form_path=f"/tenants/{shop.id}")
    assert buyer.get("/").status_code == 200


def test_unknown_tenant_is_404(admin):
    assert admin.get("/tenants/999999").status_code == 404
    token = admin.csrf_token("/tenants")
    assert admin.post("/tenants/999999/suspend", data={"csrf_token": token}).status_code == 404


def test_search(admin, create_tenant):
    create_tenant(slug="alpha", name="Alpha Cards")
    create_tenant(slug="beta", name="Beta Keys")
    page = admin.get("/tenants?q=alp").get_data(as_text=True)
    assert "Alpha Cards" in page and "Beta Keys" not in page
