"""Payment notifications: forged, empty-secret, stale, short, foreign and cross-gateway ones
change nothing and get a 4xx; a valid one pays once however often it comes."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from sqlalchemy import func, select

from kameng.orders.models import Order
from kameng.payments.gateways.sandbox import SIGNATURE_HEADER, SandboxGateway
from kameng.payments.models import Payment, PaymentAccount, PaymentNotification
from kameng.payments.registry import decrypt_credentials, encrypt_credentials
from kameng.tenants.models import Tenant


@pytest.fixture
def started(create_tenant, card_product, client_for, buy):
    """A pending sandbox order of shop A with its payment started; shop B exists too."""
    shop = create_tenant(slug="shopa")
    other = create_tenant(slug="shopb")
    product_id = card_product(shop, codes=["N-1", "N-2"])
    client = client_for(shop)
    placed = buy(client, product_id)
    client.get(placed.location)  # starts the sandbox payment
    return shop, other, client


def _payment(in_app, shop):
    with in_app(shop) as session:
        payment = session.scalar(select(Payment))
        session.expunge(payment)
        return payment


def _secret(in_app, shop):
    with in_app(shop) as session:
        account = session.scalar(select(PaymentAccount).where(PaymentAccount.gateway == "sandbox"))
        return decrypt_credentials(account.credentials)["secret"]


def _signed(secret, payload: dict, timestamp=None):
    gateway = SandboxGateway({"secret": secret}, owner="shop", tenant_id=None)
    timestamp = int(time.time()) if timestamp is None else timestamp
    body = json.dumps(payload, separators=(",", ":")).encode()
    return body, {SIGNATURE_HEADER: f"t={timestamp},v1={gateway._signature(timestamp, body)}",
                  "Content-Type": "application/json"}


def _event(payment, **changes):
    return {"event_id": "evt_1", "reference": payment.reference, "tenant_id": payment.tenant_id,
            "status": "succeeded", "amount": payment.amount, "currency": payment.currency,
            **changes}


def _post(client_for, host_of, body, headers):
    return client_for(host_of).post("/pay/notify/sandbox", data=body, headers=headers)


def _nothing_changed(in_app, shop):
    with in_app(shop) as session:
        assert session.scalar(select(Order.status)) == "pending"
        assert session.scalar(select(func.count()).select_from(PaymentNotification)) == 0
        assert session.scalar(select(Payment.status)) == "created"


def test_a_valid_notification_pays_and_delivers(started, in_app, client_for):
    shop, _, _ = started
    payment = _payment(in_app, shop)
    body, headers = _signed(_secret(in_app, shop), _event(payment))
    response = _post(client_for, shop, body, headers)
    assert (response.status_code, response.get_data(as_text=True)) == (200, "ok")
    with in_app(shop) as session:
        assert session.scalar(select(Order.status)) == "delivered"


def test_a_forged_signature_changes_nothing(started, in_app, client_for):
    shop, _, _ = started
    payment = _payment(in_app, shop)
    body, headers = _signed("not-the-secret", _event(payment))
    assert _post(client_for, shop, body, headers).status_code == 400
    tampered_body, good_headers = _signed(_secret(in_app, shop), _event(payment))
    tampered = tampered_body.replace(b'"succeeded"', b'"succeeded" ')
    assert _post(client_for, shop, tampered, good_headers).status_code == 400
    assert _post(client_for, shop, body, {}).status_code == 400
    _nothing_changed(in_app, shop)


def test_an_empty_secret_is_refused(started, in_app, client_for):
    shop, _, _ = started
    payment = _payment(in_app, shop)
    with in_app(shop) as session:
        account = session.scalar(select(PaymentAccount).where(PaymentAccount.gateway == "sandbox"))
        account.credentials = encrypt_credentials({"secret": ""})
        session.commit()
    # A notification signed with the empty key is what a forger could make: refused.
    timestamp = int(time.time())
    body = json.dumps(_event(payment), separators=(",", ":")).encode()
    signature = hmac.new(b"", f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    response = _post(client_for, shop, body, {SIGNATURE_HEADER: f"t={timestamp},v1={signature}"})
    assert response.status_code == 400
    with pytest.raises(Exception, match="not configured"):  # and it never signs with it
        SandboxGateway({"secret": ""}, owner="shop", tenant_id=None)._signature(1, b"x")
    _nothing_changed(in_app, shop)


def test_a_stale_replay_is_refused(started, in_app, client_for, app):
    shop, _, _ = started
    payment = _payment(in_app, shop)
    old = int(time.time()) - app.config["NOTIFY_TOLERANCE"] - 5
    body, headers = _signed(_secret(in_app, shop), _event(payment), timestamp=old)
    response = _post(client_for, shop, body, headers)
    assert response.status_code == 400 and "stale" in response.get_data(as_text=True)
    _nothing_changed(in_app, shop)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"amount": 1}, "amount"),
        ({"currency": "USD"}, "currency"),
        ({"reference": "000000-deadbeef"}, "unknown payment"),
    ],
)
def test_wrong_amount_currency_or_payment_changes_nothing(started, in_app, client_for, changes,
                                                          why):
    shop, _, _ = started
    payment = _payment(in_app, shop)
    body, headers = _signed(_secret(in_app, shop), _event(payment, **changes))
    response = _post(client_for, shop, body, headers)
    assert response.status_code == 400 and why in response.get_data(as_text=True)
    _nothing_changed(in_app, shop)


def test_another_shops_order_changes_nothing(started, in_app, client_for, buy, card_product):
    shop, other, _ = started
    payment = _payment(in_app, shop)
    # posted to shop B's notify URL, signed with shop B's own secret
    client_b = client_for(other)
    placed = buy(client_b, card_product(other, codes=["B-1"]))
    client_b.get(placed.location)
    body, headers = _signed(_secret(in_app, other), _event(payment))
    assert _post(client_for, other, body, headers).status_code == 400
    # posted to shop A's URL but naming shop B in the event
    body, headers = _signed(_secret(in_app, shop), _event(payment, tenant_id=other.id))
    response = _post(client_for, shop, body, headers)
    assert response.status_code == 400 and "another shop" in response.get_data(as_text=True)
    _nothing_changed(in_app, shop)


def test_a_sandbox_event_for_an_order_paid_with_another_gateway_changes_nothing(
        started, in_app, client_for):
    shop, _, _ = started
    payment = _payment(in_app, shop)
    with in_app(shop) as session:
        session.get(Payment, payment.id).gateway = "epay"
        session.commit()
    body, headers = _signed(_secret(in_app, shop), _event(payment))
    response = _post(client_for, shop, body, headers)
    assert response.status_code == 400 and "made with epay" in response.get_data(as_text=True)
    with in_app(shop) as session:
        assert session.scalar(select(Order.status)) == "pending"


def test_the_same_notification_100_times_pays_once(started, in_app, client_for):
    shop, _, _ = started
    payment = _payment(in_app, shop)
    body, headers = _signed(_secret(in_app, shop), _event(payment))
    answers = {_post(client_for, shop, body, headers).status_code for _ in range(100)}
    assert answers == {200}
    with in_app(shop) as session:
        assert session.scalar(select(func.count()).select_from(PaymentNotification)) == 1
        order = session.scalar(select(Order))
        assert order.status == "delivered"
        assert sum(1 for e in order.events if e.to_status == "paid") == 1
        assert sum(1 for e in order.events if e.to_status == "delivered") == 1


def test_a_second_payment_for_a_paid_order_is_flagged_not_delivered_twice(started, in_app,
                                                                        client_for):
    shop, _, _ = started
    first = _payment(in_app, shop)
    secret = _secret(in_app, shop)
    with in_app(shop) as session:  # the buyer started a second payment of the same order
        second = Payment(tenant_id=shop.id, order_id=first.order_id, gateway="sandbox",
                         owner="shop", reference=first.reference + "x", amount=first.amount,
                         currency=first.currency)
        session.add(second)
        session.commit()
        session.refresh(second)
        session.expunge(second)
    for payment, event_id in ((first, "evt_a"), (second, "evt_b")):
        body, headers = _signed(secret, _event(payment, event_id=event_id))
        assert _post(client_for, shop, body, headers).status_code == 200
    with in_app(shop) as session:
        order = session.scalar(select(Order))
        assert order.status == "delivered" and order.needs_staff
        assert "second payment" in order.staff_reason
        assert session.scalar(select(func.count()).select_from(Payment)
                              .where(Payment.status == "succeeded")) == 2


def test_sandbox_is_closed_in_production_unless_the_shop_is_in_test_mode(started, in_app, app,
                                                                         client_for):
    shop, _, _ = started
    payment = _payment(in_app, shop)
    body, headers = _signed(_secret(in_app, shop), _event(payment))
    app.config["KAMENG_ENV"] = "production"
    try:
        assert _post(client_for, shop, body, headers).status_code == 400
        with in_app(shop) as session:
            tenant = session.get(Tenant, shop.id)
            tenant.settings = {**tenant.settings, "test_mode": True}
            session.commit()
        assert _post(client_for, shop, body, headers).status_code == 200
    finally:
        app.config["KAMENG_ENV"] = "testing"


def test_a_refusal_is_in_english_whatever_the_shops_language(create_tenant, client_for,
                                                              caplog):
    """The gateway's logs and the operators read refusals, not a buyer: never translated."""
    shop = create_tenant(slug="zh-shop", locale="zh_CN")
    response = client_for(shop).post("/pay/notify/nosuch", data=b"{}",
                                     headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert response.status_code == 400
    assert response.get_data(as_text=True) == "refused: Unknown payment gateway.\n"
    assert "refused (nosuch): Unknown payment gateway." in caplog.text
