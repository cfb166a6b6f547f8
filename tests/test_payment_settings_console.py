"""Payment settings: a shop's gateway credentials (write-only secrets), its payment options and
wallet; the platform's own gateway accounts and its credit to a shop's wallet."""

import html
import re

import pytest
from sqlalchemy import select

from kameng.payments.gateways.base import CredentialField, Gateway, GatewayError

GOOD_KEY = "sk_test_GOODKEY_0123456789abcdef"
SECRET = "sk_live_TOPSECRET_9f8e7d6c5b4a3210"


class FakePay(Gateway):
    """A gateway for these tests: one plain field, one required secret, one optional secret."""

    name = "fakepay"
    label = "FakePay"
    credential_fields = (
        CredentialField("merchant_id", "Merchant ID", secret=False),
        CredentialField("api_key", "API key"),
        CredentialField("webhook_secret", "Webhook secret", required=False),
    )

    def test_connection(self) -> str:
        self.require("merchant_id", "api_key")
        if self.credentials["api_key"].startswith("explode"):
            raise ConnectionError("network unreachable")
        if self.credentials["api_key"] != GOOD_KEY:
            raise GatewayError("FakePay refused the API key.")
        return f"FakePay accepted merchant {self.credentials['merchant_id']}."


@pytest.fixture(autouse=True)
def fakepay(monkeypatch):
    from kameng.payments import registry

    registry.load_gateways()
    monkeypatch.setitem(registry.GATEWAYS, "fakepay", FakePay)
    return FakePay


def body(page) -> str:
    """The page's text with HTML entities decoded, so a secret cannot hide behind escaping."""
    return html.unescape(page.get_data(as_text=True))


def followed(client, page) -> str:
    assert page.status_code == 302, body(page)
    return body(client.get(page.location))


def fakepay_form(prefix="fakepay", enabled=True, **values) -> dict:
    data = {f"{prefix}-cred_{name}": value for name, value in values.items()}
    if enabled:
        data[f"{prefix}-enabled"] = "y"
    return data


def stored(in_app, shop, gateway="fakepay"):
    """(enabled, decrypted credentials) of the shop's account, or None."""
    from kameng.payments.registry import decrypt_credentials, shop_account

    with in_app(shop):
        account = shop_account(gateway)
        return None if account is None else (account.enabled,
                                             decrypt_credentials(account.credentials))


def stored_platform(in_app, gateway="fakepay"):
    from kameng.payments.registry import decrypt_credentials, platform_account

    with in_app():
        account = platform_account(gateway)
        return None if account is None else (account.enabled,
                                             decrypt_credentials(account.credentials))


def audit(in_app, action) -> list:
    from kameng.audit.models import AuditEvent

    with in_app() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def ledger_problems(in_app) -> list:
    from kameng.ledger.service import check_ledger

    with in_app() as session:
        problems = check_ledger()
        session.rollback()
        return problems


def settings_of(in_app, shop) -> dict:
    with in_app() as session:
        return dict(session.get(type(shop), shop.id).settings or {})


# -- the shop's page --------------------------------------------------------------------------


def test_payment_settings_need_a_staff_login(shop, client_for):
    anonymous = client_for(shop)
    page = anonymous.get("/admin/payments")
    assert page.status_code == 302 and "/admin/login" in page.location


def test_payment_settings_render_for_the_owner(console):
    page = body(console.get("/admin/payments"))
    assert "FakePay" in page and "Merchant ID" in page and "not set up" in page
    assert "Sandbox" in page  # offered to buyers outside production
    assert "Your wallet at the platform" in page and "¥0.00" in page
    assert 'name="fakepay-cred_api_key" type="password"' in page
    assert "Sandbox (test payments)</h2>" not in page  # the sandbox has no settings


def test_saved_secrets_never_appear_in_the_page(console, in_app, shop):
    page = console.submit("/admin/payments/gateways/fakepay",
                          fakepay_form(merchant_id="M-1001", api_key=SECRET,
                                       webhook_secret="whsec_ABCDEFGHIJ123456"),
                          form_path="/admin/payments")
    page = followed(console, page)
    assert "FakePay settings saved." in page and "enabled" in page
    assert SECRET not in page and "whsec_ABCDEFGHIJ123456" not in page
    assert "••••3210" in page and "••••3456" in page  # masked: the last four only
    assert 'value="M-1001"' in page  # not a secret: shown to edit
    assert stored(in_app, shop) == (True, {"merchant_id": "M-1001", "api_key": SECRET,
                                           "webhook_secret": "whsec_ABCDEFGHIJ123456"})
    [event] = audit(in_app, "payments.credentials_changed")
    assert event.tenant_id == shop.id and event.target == "fakepay"
    assert event.details["fields"] == ["api_key", "merchant_id", "webhook_secret"]
    assert SECRET not in str(event.details)


def test_an_empty_secret_keeps_the_stored_one(console, in_app, shop):
    console.submit("/admin/payments/gateways/fakepay",
                   fakepay_form(merchant_id="M-1001", api_key=SECRET),
                   form_path="/admin/payments")
    page = console.submit("/admin/payments/gateways/fakepay",
                          fakepay_form(merchant_id="M-2002", api_key="", enabled=False),
                          form_path="/admin/payments")
    assert "FakePay settings saved." in followed(console, page)
    assert stored(in_app, shop) == (False, {"merchant_id": "M-2002", "api_key": SECRET})
    assert audit(in_app, "payments.credentials_changed")[-1].details["fields"] == ["merchant_id"]


def test_enabling_without_the_required_fields_is_a_form_error(console, in_app, shop):
    page = console.submit("/admin/payments/gateways/fakepay",
                          fakepay_form(merchant_id="M-1001"), form_path="/admin/payments")
    assert page.status_code == 422
    assert "Fill in API key before enabling FakePay." in body(page)
    assert 'value="M-1001"' in body(page)  # what was typed is kept
    assert stored(in_app, shop) is None
    assert audit(in_app, "payments.credentials_changed") == []
    page = console.submit("/admin/payments/gateways/fakepay",
                          fakepay_form(merchant_id="M-1", api_key="k" * 5000),
                          form_path="/admin/payments")
    assert page.status_code == 422 and stored(in_app, shop) is None


def test_test_connection_flashes_what_the_gateway_says(console):
    def check() -> str:
        page = console.submit("/admin/payments/gateways/fakepay/test", {},
                              form_path="/admin/payments")
        return followed(console, page)

    assert "FakePay is not configured (merchant_id, api_key)." in check()
    for key, message in (("bad-key-000000000", "FakePay refused the API key."),
                         ("explode-0000000000", "The connection test failed (ConnectionError)"),
                         (GOOD_KEY, "FakePay accepted merchant M-7.")):
        console.submit("/admin/payments/gateways/fakepay",
                       fakepay_form(merchant_id="M-7", api_key=key),
                       form_path="/admin/payments")
        page = check()
        assert message in page and key not in page


def test_unknown_gateways_are_404(console):
    token = console.csrf_token("/admin/payments")
    for name in ("sandbox", "balance", "nope", "x" * 300):
        for path in (f"/admin/payments/gateways/{name}", f"/admin/payments/gateways/{name}/test"):
            assert console.post(path, data={"csrf_token": token}).status_code == 404, path


def test_test_mode_and_platform_payments_options(console, in_app, shop):
    with in_app() as session:  # other settings of the shop must survive
        tenant = session.get(type(shop), shop.id)
        tenant.settings = {**(tenant.settings or {}), "points": {"earn_per_unit": 2}}
        session.commit()
    page = body(console.get("/admin/payments"))
    assert re.search(r'<input checked id="options-platform_payments"', page)  # default: on
    assert not re.search(r'<input checked id="options-test_mode"', page)
    page = followed(console, console.submit("/admin/payments", {"options-test_mode": "y"}))
    assert "Payment options saved." in page
    assert re.search(r'<input checked id="options-test_mode"', page)
    assert not re.search(r'<input checked id="options-platform_payments"', page)
    settings = settings_of(in_app, shop)
    assert settings["test_mode"] is True and settings["platform_payments"] is False
    assert settings["points"] == {"earn_per_unit": 2}
    followed(console, console.submit("/admin/payments", {"options-platform_payments": "y"}))
    settings = settings_of(in_app, shop)
    assert settings["test_mode"] is False and settings["platform_payments"] is True
    assert len(audit(in_app, "payments.options_changed")) == 2


def _real_gateway(name):
    from kameng.payments import registry

    registry.load_gateways()
    gateway = registry.GATEWAYS.get(name)
    if gateway is None:
        pytest.skip(f"the {name} gateway module has no gateway class yet")
    return gateway


@pytest.mark.parametrize("name", ["stripe", "epay"])
def test_real_gateway_credentials_are_saved_masked(name, console, in_app, shop):
    gateway = _real_gateway(name)
    # Nothing stored yet: the connection test is refused before any network call.
    page = followed(console, console.submit(f"/admin/payments/gateways/{name}/test", {},
                                            form_path="/admin/payments"))
    assert 'class="flash error"' in page
    values = {}
    for n, spec in enumerate(gateway.credential_fields):
        if "url" in spec.name.lower():
            values[spec.name] = "https://pay.example.com/"
        elif spec.secret:
            values[spec.name] = f"SECRET-{name}-{n}-0123456789abcdef"
        else:
            values[spec.name] = f"{1000 + n}"
    page = console.submit(f"/admin/payments/gateways/{name}",
                          fakepay_form(prefix=name, enabled=False, **values),
                          form_path="/admin/payments")
    page = followed(console, page)
    for spec in gateway.credential_fields:
        if spec.secret:
            assert values[spec.name] not in page, spec.name
    enabled, saved = stored(in_app, shop, name)
    assert saved == values and not enabled


# -- the platform's accounts -----------------------------------------------------------------


def test_platform_payment_pages_need_a_super_admin(admin_client, shop, console):
    for path in ("/payments/", "/payments/wallets/1", f"/payments/wallets?shop={shop.slug}"):
        page = admin_client.get(path)
        assert page.status_code == 302 and "/login" in page.location, path
    # A shop's staff session is no use on the admin host.
    console.host = admin_client.host
    assert console.get("/payments/").status_code == 302


def test_platform_accounts_are_write_only_too(admin, in_app):
    page = body(admin.get("/payments/"))
    assert "FakePay" in page and "Shop wallets" in page
    page = admin.submit("/payments/gateways/fakepay", fakepay_form(merchant_id="P-1"),
                        form_path="/payments/")
    assert page.status_code == 422 and "Fill in API key before enabling FakePay." in body(page)
    assert stored_platform(in_app) is None
    page = admin.submit("/payments/gateways/fakepay",
                        fakepay_form(merchant_id="P-1", api_key=SECRET),
                        form_path="/payments/")
    page = followed(admin, page)
    assert "The platform's FakePay account is saved." in page
    assert SECRET not in page and "••••3210" in page
    page = admin.submit("/payments/gateways/fakepay", fakepay_form(merchant_id="P-2", api_key=""),
                        form_path="/payments/")
    followed(admin, page)
    assert stored_platform(in_app) == (True, {"merchant_id": "P-2", "api_key": SECRET})
    events = audit(in_app, "payments.credentials_changed")
    assert [e.target for e in events] == ["platform:fakepay", "platform:fakepay"]
    assert all(e.tenant_id is None and SECRET not in str(e.details) for e in events)
    page = followed(admin, admin.submit("/payments/gateways/fakepay/test", {},
                                        form_path="/payments/"))
    assert "FakePay refused the API key." in page
    token = admin.csrf_token("/payments/")
    assert admin.post("/payments/gateways/sandbox", data={"csrf_token": token}).status_code == 404


def test_shops_use_the_platforms_account_unless_they_opt_out(admin, console, in_app, shop):
    followed(admin, admin.submit("/payments/gateways/fakepay",
                                 fakepay_form(merchant_id="P-1", api_key=GOOD_KEY),
                                 form_path="/payments/"))
    page = body(console.get("/admin/payments"))
    assert re.search(r"<li>FakePay <span[^>]*>— through the platform's account", page)
    followed(admin, admin.submit("/payments/gateways/fakepay/test", {}, form_path="/payments/"))
    followed(console, console.submit("/admin/payments", {"options-test_mode": "y"}))
    page = body(console.get("/admin/payments"))
    assert not re.search(r"<li>FakePay <span", page)
    assert GOOD_KEY not in page


# -- crediting a shop's wallet -----------------------------------------------------------------

TOKEN_RE = re.compile(r'name="token" type="hidden" value="([^"]+)"')


def test_credit_a_shops_wallet_exactly_once(admin, console, in_app, shop):
    from kameng.ledger.service import shop_wallet

    page = admin.get(f"/payments/wallets?shop={shop.slug}")
    assert page.status_code == 302 and page.location.endswith(f"/payments/wallets/{shop.id}")
    page = body(admin.get(f"/payments/wallets/{shop.id}"))
    assert f"Wallet of {shop.name}" in page and "¥0.00" in page
    token = TOKEN_RE.search(page).group(1)
    form = {"amount": "100.00", "memo": "Welcome credit", "token": token}
    first = admin.submit(f"/payments/wallets/{shop.id}", form)
    assert "¥100.00 credited to Shop alpha's wallet." in followed(admin, first)
    again = admin.submit(f"/payments/wallets/{shop.id}", form)  # the same form, sent twice
    page = followed(admin, again)
    assert "already made" in page and "Welcome credit" in page
    with in_app() as session:
        assert shop_wallet(shop.id, "CNY").balance == 10000
        session.rollback()
    [event] = audit(in_app, "wallet.credit")
    assert event.tenant_id == shop.id and event.details["amount"] == 10000
    assert ledger_problems(in_app) == []
    # The shop sees it on its payments page.
    page = body(console.get("/admin/payments"))
    assert "¥100.00" in page and "Welcome credit" in page and "credit from the platform" in page
    # A fresh form (a new token) credits again.
    token = TOKEN_RE.search(body(admin.get(f"/payments/wallets/{shop.id}"))).group(1)
    followed(admin, admin.submit(f"/payments/wallets/{shop.id}",
                                 {"amount": "0.50", "memo": "Top-up", "token": token}))
    with in_app() as session:
        assert shop_wallet(shop.id, "CNY").balance == 10050
        session.rollback()
    assert ledger_problems(in_app) == []


@pytest.mark.parametrize(("data", "message"), [
    ({"amount": "0"}, "above zero"),
    ({"amount": "-5"}, "must not be negative"),
    ({"amount": "abc"}, "is not an amount"),
    ({"amount": "1.001"}, "at most 2 decimal places"),
    ({"amount": "99999999999"}, "too large"),
    ({"memo": ""}, "This field is required"),
    ({"token": ""}, "This form has expired"),
    ({"token": "short"}, "This form has expired"),
    ({"token": "x" * 65}, "This form has expired"),
    ({"token": "../../etc/passwd-AAAAAAAAA"}, "This form has expired"),
])
def test_bad_credit_input_is_a_form_error(admin, in_app, shop, data, message):
    from kameng.ledger.service import shop_wallet

    form = {"amount": "10.00", "memo": "Credit", "token": "A" * 32, **data}
    page = admin.submit(f"/payments/wallets/{shop.id}", form)
    assert page.status_code == 422 and message in body(page)
    with in_app() as session:
        assert shop_wallet(shop.id, "CNY").balance == 0
        session.rollback()
    assert audit(in_app, "wallet.credit") == []


def test_unknown_shops_have_no_wallet_page(admin):
    assert admin.get("/payments/wallets/999999").status_code == 404
    assert admin.get("/payments/wallets/99999999999999").status_code == 404
    page = followed(admin, admin.get("/payments/wallets?shop=nobody"))
    assert "No shop with the address 'nobody'." in page
    assert admin.get("/payments/wallets?shop=" + "x" * 5000).status_code == 302


def test_pages_show_where_gateways_send_notifications(console, admin, shop):
    page = body(console.get("/admin/payments"))
    assert f"http://{shop.slug}.localhost/pay/notify/fakepay" in page
    assert "http://localhost/pay/platform/notify/fakepay" in body(admin.get("/payments/"))
