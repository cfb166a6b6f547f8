"""Shop billing: plans and limits, monthly invoices with order fees, proration, downgrades,
payment from the wallet, top-ups through the platform's gateways, dunning and suspension.

The clock is passed in (`now=`): every billing function takes it, and order payment times are
set on the rows, so a test walks through months in a few lines.
"""

from __future__ import annotations

import json
import secrets
import time as clock
from datetime import UTC, date, datetime, time
from urllib.parse import parse_qs, urlsplit

import pytest
import stripe
from sqlalchemy import func, select, update

from kameng.billing import service as billing
from kameng.billing import topups
from kameng.billing.models import Invoice, Subscription
from kameng.billing.service import PlanLimitReached, PlanTerms
from kameng.ledger import service as ledger
from kameng.ledger.models import LedgerTransaction
from kameng.mail.models import MailMessage
from kameng.orders.models import Order
from kameng.orders.service import CheckoutRequest, checkout, mark_paid
from kameng.payments.models import Payment, PlatformPaymentAccount
from kameng.payments.registry import encrypt_credentials
from kameng.tenants.models import Tenant

MARCH = date(2026, 3, 1)


def at(day: date, hour: int = 9) -> datetime:
    return datetime.combine(day, time(hour), UTC)


@pytest.fixture
def plans(in_app):
    """Test plans without trials: small (99.00, 2% + 0.10), big (299.00, 1%), free (5%, 5
    own products, 1 staff account). Returns code -> id."""
    with in_app() as session:
        for terms in (
            PlanTerms(code="small", name="Small", monthly_price=9900, fee_bp=200, fee_fixed=10,
                      max_own_products=100, max_staff=3, sort=1),
            PlanTerms(code="big", name="Big", monthly_price=29900, fee_bp=100,
                      custom_domain=True, api_access=True, sort=2),
            PlanTerms(code="free", name="Free", monthly_price=0, fee_bp=500,
                      max_own_products=5, max_staff=1, themes=("default",), sort=0),
        ):
            billing.save_plan(None, terms)
        session.commit()
        return {plan.code: plan.id for plan in billing.list_plans()}


@pytest.fixture
def subscribe(in_app, plans):
    """subscribe(shop, code, day=MARCH) -> the subscription starts on `day` at 09:00."""

    def start(shop, code, day=MARCH):
        with in_app() as session:
            tenant = session.get(Tenant, shop.id)
            billing.start_subscription(tenant, billing.get_plan(plans[code]), now=at(day))
            session.commit()

    return start


@pytest.fixture
def fund(in_app):
    """fund(shop, amount): platform credit into the shop's wallet."""

    def credit(shop, amount):
        with in_app() as session:
            tenant = session.get(Tenant, shop.id)
            ledger.transfer(f"test-funding:{secrets.token_hex(6)}", "platform_funding",
                            ledger.get_account("platform_funding", currency=tenant.currency),
                            ledger.shop_wallet(tenant.id, tenant.currency), amount,
                            tenant_id=tenant.id)
            session.commit()

    return credit


@pytest.fixture
def sell(in_app):
    """sell(shop, product_id, paid_at, via="manual"|"shop"|"platform", **order values) -> id.

    "manual": marked paid by staff; "shop": through the shop's own EPay account; "platform":
    through the platform's account (which takes its collection fee then)."""

    def factory(shop, product_id, paid_at, via="manual", **values):
        with in_app(shop) as session:
            tenant = session.get(Tenant, shop.id)
            order = checkout(tenant, CheckoutRequest(
                product_id=product_id, qty=1, payment_method="sandbox",
                email=f"b{secrets.token_hex(3)}@mail.test")).order
            payment = None
            if via != "manual":
                payment = Payment(tenant_id=shop.id, order_id=order.id, gateway="epay",
                                  owner=via, reference=f"{order.number}-{via}",
                                  amount=order.amount_due, currency=order.currency,
                                  status="created")
                session.add(payment)
                session.flush()
            assert mark_paid(order, payment=payment, actor="test")
            session.execute(update(Order).where(Order.id == order.id)
                            .values(paid_at=paid_at, **values))
            session.commit()
            return order.id

    return factory


def run(in_app, now):
    with in_app():
        return billing.run_billing(now=now)


def invoices(in_app, shop):
    """[(number, kind, status, total, [(line kind, quantity, amount)])], oldest first."""
    with in_app() as session:
        rows = session.scalars(select(Invoice).where(Invoice.tenant_id == shop.id)
                               .order_by(Invoice.period_start, Invoice.id)).all()
        return [(i.number, i.kind, i.status, i.total,
                 [(line.kind, line.quantity, line.amount) for line in i.lines]) for i in rows]


def subscription(in_app, shop):
    with in_app() as session:
        sub = session.scalar(select(Subscription).where(Subscription.tenant_id == shop.id))
        return (sub.plan.code, sub.next_plan.code if sub.next_plan else None, sub.status,
                sub.period_start, sub.period_end)


def wallet_balance(in_app, shop):
    with in_app() as session:
        tenant = session.get(Tenant, shop.id)
        return ledger.shop_wallet(tenant.id, tenant.currency).balance


def platform_balance(in_app, kind):
    with in_app():
        return ledger.get_account(kind, currency="CNY").balance


def mails(in_app, shop, kind=None):
    with in_app() as session:
        query = select(MailMessage.subject).where(MailMessage.tenant_id == shop.id)
        if kind:
            query = query.where(MailMessage.kind == kind)
        return list(session.scalars(query.order_by(MailMessage.id)))


# -- plans --------------------------------------------------------------------------------------


def test_default_plans_are_created_once(in_app, app):
    with in_app() as session:
        first = billing.ensure_default_plans()
        again = billing.ensure_default_plans()
        session.commit()
        assert [(p.code, p.monthly_price, p.fee_bp) for p in first] == [
            ("free", 0, 500), ("basic", 9900, 200), ("pro", 29900, 100)]
        assert [p.id for p in again] == [p.id for p in first]
        free, basic, pro = first
        assert free.max_own_products == 5 and not free.custom_domain and not free.api_access
        assert pro.custom_domain and pro.api_access and pro.max_own_products is None
        assert basic.default_markup_bp == app.config["DEFAULT_MARKUP_BP"]


def test_plan_terms_are_checked(in_app, plans):
    with in_app():
        with pytest.raises(billing.DomainError, match="code"):
            billing.save_plan(None, PlanTerms(code="Bad Code", name="X"))
        with pytest.raises(billing.DomainError, match="Another plan"):
            billing.save_plan(None, PlanTerms(code="small", name="Again"))
        with pytest.raises(billing.DomainError, match="Unknown theme"):
            billing.save_plan(None, PlanTerms(code="x1", name="X", themes=("nope",)))
        with pytest.raises(billing.DomainError, match="fee"):
            billing.save_plan(None, PlanTerms(code="x2", name="X", fee_bp=10_001))


# -- the monthly invoice ---------------------------------------------------------------------


def test_monthly_invoice_bills_fees_of_orders_not_collected_by_the_platform(
        create_tenant, subscribe, card_product, sell, in_app, fund):
    shop = create_tenant()
    subscribe(shop, "small")  # no trial: March is billed at once, in advance
    [(number, kind, status, total, lines)] = invoices(in_app, shop)
    assert (number, kind, status, total) == (f"K{shop.id}-20260301-M", "monthly", "open", 9900)
    assert lines == [("subscription", 1, 9900)]

    product = card_product(shop, codes=[f"C-{n}" for n in range(9)], price=1000)
    sell(shop, product, at(date(2026, 3, 5)), via="shop")  # 2% of 10.00 + 0.10 = 0.30
    sell(shop, product, at(date(2026, 3, 20)), via="manual")  # marked paid by staff: 0.30
    sell(shop, product, at(date(2026, 3, 31), 23), via="shop")  # last hour of March: 0.30
    sell(shop, product, at(date(2026, 3, 10)), via="platform")  # fee taken at collection
    sell(shop, product, at(date(2026, 3, 11)), via="shop", test_mode=True)  # a test order
    sell(shop, product, at(date(2026, 3, 12)), via="shop", status="refunded")
    sell(shop, product, at(date(2026, 4, 1)), via="shop")  # April's
    # supply cost taken from the wallet at a delivery in March: summarised, not billed again
    fund(shop, 700)
    with in_app() as session:
        tenant = session.get(Tenant, shop.id)
        taken = ledger.transfer("test-supply-cost", "supply_cost",
                                ledger.shop_wallet(tenant.id, "CNY"),
                                ledger.get_account("platform_revenue", currency="CNY"), 700,
                                tenant_id=tenant.id)
        session.execute(update(LedgerTransaction).where(LedgerTransaction.id == taken.id)
                        .values(created_at=at(date(2026, 3, 15))))
        session.commit()

    assert run(in_app, at(date(2026, 3, 31), 23)).invoices == 0  # March is not over
    report = run(in_app, at(date(2026, 4, 1), 2))
    assert report.invoices == 1 and report.errors == 0
    _march, april = invoices(in_app, shop)
    number, kind, status, total, lines = april
    assert number == f"K{shop.id}-20260401-M" and kind == "monthly" and status == "open"
    assert lines == [("subscription", 1, 9900), ("order_fees", 3, 90),
                     ("supply_summary", 1, 0)]
    assert total == 9990
    with in_app() as session:
        invoice = session.scalar(select(Invoice).where(Invoice.number == number))
        fees, supply = invoice.lines[1].description, invoice.lines[2].description
    assert "2026-03-01 – 2026-03-31" in fees and "3 orders" in fees and "¥30.00" in fees
    assert "¥7.00" in supply
    plan, _, status, start, end = subscription(in_app, shop)
    assert (plan, start, end) == ("small", date(2026, 4, 1), date(2026, 5, 1))
    assert status == "suspended"  # March's invoice is still unpaid a month later
    # Idempotent: running again (or twice at once) issues nothing more.
    assert run(in_app, at(date(2026, 4, 1), 3)).invoices == 0
    assert len(invoices(in_app, shop)) == 2


def test_a_late_job_catches_up_every_missed_period(create_tenant, subscribe, in_app):
    shop = create_tenant()
    subscribe(shop, "small")
    assert run(in_app, at(date(2026, 6, 2))).invoices == 3  # April, May, June
    assert [i[0].split("-")[1] for i in invoices(in_app, shop)] == [
        "20260301", "20260401", "20260501", "20260601"]


def test_trial_is_free_and_the_first_paid_period_starts_when_it_ends(create_tenant, in_app):
    shop = create_tenant()
    with in_app() as session:
        billing.ensure_default_plans()
        tenant = session.get(Tenant, shop.id)
        billing.start_subscription(tenant, billing.plan_by_code("basic"), now=at(MARCH))
        session.commit()
    assert invoices(in_app, shop) == []
    assert subscription(in_app, shop) == ("basic", None, "trialing", MARCH, date(2026, 3, 15))
    run(in_app, at(date(2026, 3, 15)))
    assert subscription(in_app, shop) == ("basic", None, "active", date(2026, 3, 15),
                                          date(2026, 4, 15))
    assert [(i[1], i[3]) for i in invoices(in_app, shop)] == [("monthly", 9900)]


# -- plan changes -------------------------------------------------------------------------------


def test_upgrade_is_at_once_and_prorated_with_the_fees_so_far_at_the_old_rate(
        create_tenant, subscribe, card_product, sell, fund, in_app, plans):
    shop = create_tenant()
    fund(shop, 100_000)
    subscribe(shop, "small")  # paid from the wallet at once
    product = card_product(shop, codes=[f"C-{n}" for n in range(5)], price=1000)
    sell(shop, product, at(date(2026, 3, 5)))  # small's rate: 2% + 0.10 = 0.30
    with in_app() as session:
        tenant = session.get(Tenant, shop.id)
        change = billing.change_plan(tenant, billing.get_plan(plans["big"]),
                                     now=at(date(2026, 3, 11)))
        session.commit()
    assert change.outcome == "upgraded"
    assert subscription(in_app, shop)[:3] == ("big", None, "active")
    _first, proration = invoices(in_app, shop)
    # 21 of March's 31 days left at (299.00 - 99.00): 20000 × 21 / 31 = 13548.39 -> 13548
    assert proration == (f"K{shop.id}-20260311-P", "proration", "paid", 13578,
                         [("proration", 21, 13548), ("order_fees", 1, 30)])
    sell(shop, product, at(date(2026, 3, 20)))  # big's rate: 1% of 10.00 = 0.10
    run(in_app, at(date(2026, 4, 1)))
    april = invoices(in_app, shop)[-1]
    assert april[1:] == ("monthly", "paid", 29910,
                         [("subscription", 1, 29900), ("order_fees", 1, 10)])
    # wallet -> platform_revenue (subscription, proration) and platform_fees (order fees)
    assert wallet_balance(in_app, shop) == 100_000 - 9900 - 13578 - 29910
    assert platform_balance(in_app, "platform_revenue") == 9900 + 13548 + 29900
    assert platform_balance(in_app, "platform_fees") == 30 + 10
    with in_app():
        assert ledger.check_ledger() == []


def test_a_second_change_on_the_same_day_gets_its_own_invoice(create_tenant, subscribe, fund,
                                                              in_app, plans):
    shop = create_tenant()
    fund(shop, 100_000)
    subscribe(shop, "free")
    with in_app() as session:
        tenant = session.get(Tenant, shop.id)
        day = at(date(2026, 3, 17))
        assert billing.change_plan(tenant, billing.get_plan(plans["small"]), now=day).invoice
        assert billing.change_plan(tenant, billing.get_plan(plans["big"]), now=day).invoice
        session.commit()
    assert [(i[0].rsplit("-", 1)[1], i[3]) for i in invoices(in_app, shop)] == [
        ("P", 4790), ("P2", 9677)]  # 15 of 31 days: 9900×15/31, 20000×15/31


def test_downgrade_takes_effect_at_the_next_period(create_tenant, subscribe, fund, in_app,
                                                  plans):
    shop = create_tenant()
    fund(shop, 100_000)
    subscribe(shop, "big")
    with in_app() as session:
        tenant = session.get(Tenant, shop.id)
        change = billing.change_plan(tenant, billing.get_plan(plans["small"]),
                                     now=at(date(2026, 3, 11)))
        session.commit()
    assert (change.outcome, change.effective, change.invoice) == ("scheduled", date(2026, 4, 1),
                                                                  None)
    assert subscription(in_app, shop)[:2] == ("big", "small")
    assert len(invoices(in_app, shop)) == 1  # no refund, no new invoice
    run(in_app, at(date(2026, 4, 1)))
    assert subscription(in_app, shop)[:2] == ("small", None)
    assert invoices(in_app, shop)[-1][1:4] == ("monthly", "paid", 9900)


def test_choosing_the_current_plan_cancels_a_scheduled_downgrade(create_tenant, subscribe,
                                                                 fund, in_app, plans):
    shop = create_tenant()
    fund(shop, 100_000)
    subscribe(shop, "big")
    with in_app() as session:
        tenant = session.get(Tenant, shop.id)
        billing.change_plan(tenant, billing.get_plan(plans["small"]), now=at(date(2026, 3, 5)))
        kept = billing.change_plan(tenant, billing.get_plan(plans["big"]),
                                   now=at(date(2026, 3, 6)))
        session.commit()
    assert kept.outcome == "kept"
    assert subscription(in_app, shop)[:2] == ("big", None)


# -- paying from the wallet --------------------------------------------------------------------


def test_invoices_are_paid_from_the_wallet_when_it_covers_them(create_tenant, subscribe, fund,
                                                               in_app):
    shop = create_tenant()
    subscribe(shop, "small")
    assert invoices(in_app, shop)[0][2] == "open"  # the wallet is empty
    fund(shop, 5000)
    run(in_app, at(date(2026, 3, 2)))
    assert invoices(in_app, shop)[0][2] == "open"  # 50.00 does not cover 99.00
    fund(shop, 5000)
    report = run(in_app, at(date(2026, 3, 3)))
    assert report.paid == 1
    with in_app() as session:
        invoice = session.scalar(select(Invoice).where(Invoice.tenant_id == shop.id))
        assert (invoice.status, invoice.paid_via) == ("paid", "wallet")
        assert billing.pay_from_wallet(invoice, now=at(date(2026, 3, 3))) is False  # once
        assert ledger.check_ledger() == []
    assert wallet_balance(in_app, shop) == 100
    assert platform_balance(in_app, "platform_revenue") == 9900
    assert mails(in_app, shop, "billing.paid") == [
        f"[{shop.name}] Invoice K{shop.id}-20260301-M paid from your wallet"]


# -- dunning: reminders, suspension after the grace period, resumption when paid ---------------


def test_unpaid_invoice_reminds_then_suspends_and_a_sandbox_top_up_resumes(
        create_tenant, subscribe, in_app, client_for, owner_of, app):
    shop = create_tenant()
    subscribe(shop, "small")  # due 2026-03-08 09:00, suspended from 2026-03-15 09:00
    assert app.config["BILLING_GRACE_DAYS"] == 7
    assert len(mails(in_app, shop, "billing.invoice")) == 1  # at issue

    run(in_app, at(date(2026, 3, 5), 10))  # three days before the due date
    run(in_app, at(date(2026, 3, 5), 11))  # (once)
    run(in_app, at(date(2026, 3, 8), 10))  # on the due date
    assert mails(in_app, shop, "billing.reminder") == [
        f"[{shop.name}] Reminder: invoice K{shop.id}-20260301-M is due on 2026-03-08",
        f"[{shop.name}] Invoice K{shop.id}-20260301-M is due today"]
    assert subscription(in_app, shop)[2] == "past_due"
    buyer = client_for(shop)
    assert run(in_app, at(date(2026, 3, 15), 8)).suspended == 0  # still in the grace period
    assert buyer.get("/").status_code == 200

    assert run(in_app, at(date(2026, 3, 15), 10)).suspended == 1
    with in_app() as session:
        tenant = session.get(Tenant, shop.id)
        assert (tenant.status, tenant.suspension_reason) == ("suspended", "unpaid")
    assert subscription(in_app, shop)[2] == "suspended"
    assert len(mails(in_app, shop, "billing.suspended")) == 1
    assert buyer.get("/").status_code == 503

    # The console still works, so the owner can pay.
    owner = owner_of(shop)
    console = client_for(shop)
    assert console.login(owner.email, "owner-pass-1", path="/admin/login").status_code == 302
    page = console.get("/admin/billing")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "closed to buyers because an invoice is overdue" in text
    assert "Pay ¥99.00" in text
    with in_app() as session:
        invoice_id = session.scalar(select(Invoice.id).where(Invoice.tenant_id == shop.id))
    started = console.submit(f"/admin/billing/invoices/{invoice_id}/pay", {"method": "sandbox"},
                             form_path="/admin/billing")
    assert started.status_code == 302 and "/admin/billing/sandbox/KMT-" in started.location
    sandbox = urlsplit(started.location).path
    assert "¥99.00" in console.get(sandbox).get_data(as_text=True)
    paid = console.submit(sandbox, {"outcome": "pay"})
    assert paid.status_code == 302
    assert "your wallet is topped up" in console.get(paid.location).get_data(as_text=True)

    assert buyer.get("/").status_code == 200
    with in_app() as session:
        tenant = session.get(Tenant, shop.id)
        assert (tenant.status, tenant.suspension_reason) == ("active", "")
        invoice = session.get(Invoice, invoice_id)
        assert (invoice.status, invoice.paid_via) == ("paid", "wallet")
        assert ledger.check_ledger() == []
    assert subscription(in_app, shop)[2] == "active"
    assert wallet_balance(in_app, shop) == 0
    assert platform_balance(in_app, "platform_gateway") == -9900  # the platform's account
    assert len(mails(in_app, shop, "billing.resumed")) == 1

    # Pressing pay again (the same sandbox payment) credits nothing more.
    console.submit(sandbox, {"outcome": "pay"})
    assert wallet_balance(in_app, shop) == 0


def test_a_manual_suspension_is_not_lifted_by_paying(create_tenant, subscribe, fund, in_app):
    from kameng.tenants.service import suspend_tenant

    shop = create_tenant()
    subscribe(shop, "small")
    with in_app() as session:
        suspend_tenant(session.get(Tenant, shop.id))
        session.commit()
    fund(shop, 9900)
    run(in_app, at(date(2026, 4, 20)))
    with in_app() as session:
        tenant = session.get(Tenant, shop.id)
        assert (tenant.status, tenant.suspension_reason) == ("suspended", "manual")


# -- top-ups through the platform's gateways ---------------------------------------------------

STRIPE_WHSEC = "whsec_platform_test"
EPAY_KEY = "platform-epay-key"


@pytest.fixture
def platform_accounts(in_app):
    with in_app() as session:
        session.add(PlatformPaymentAccount(gateway="stripe", enabled=True, credentials=(
            encrypt_credentials({"secret_key": "sk_test_platform",
                                 "webhook_secret": STRIPE_WHSEC}))))
        session.add(PlatformPaymentAccount(gateway="epay", enabled=True, credentials=(
            encrypt_credentials({"gateway_url": "http://127.0.0.1:9/", "pid": "1001",
                                 "key": EPAY_KEY}))))
        session.commit()


def _reference(shop, amount):
    return f"KMT-{shop.id}-{amount}-{secrets.token_hex(4)}"


def _stripe_event(shop, reference, amount, tenant_id=None):
    return {
        "id": f"evt_{secrets.token_hex(12)}", "object": "event",
        "type": "checkout.session.completed", "created": int(clock.time()), "livemode": False,
        "data": {"object": {
            "id": f"cs_test_{secrets.token_hex(8)}", "object": "checkout.session",
            "client_reference_id": reference, "amount_total": amount, "currency": "cny",
            "payment_status": "paid", "status": "complete",
            "metadata": {"tenant_id": str(tenant_id or shop.id), "order_number": reference,
                         "payment_reference": reference}}}}


def _post_stripe(client, event):
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, STRIPE_WHSEC)
    return client.post("/pay/platform/notify/stripe", data=body.encode(),
                       headers={"Stripe-Signature": header, "Content-Type": "application/json"})


def test_stripe_top_up_at_the_platform_webhook_credits_the_wallet_and_pays(
        create_tenant, subscribe, platform_accounts, client_for, hosts, in_app):
    shop, other = create_tenant(), create_tenant()
    subscribe(shop, "small")
    platform = client_for(hosts.landing)
    reference = _reference(shop, 10_000)
    # an event naming another shop than its reference, and a wrong amount: refused
    assert _post_stripe(platform, _stripe_event(shop, reference, 10_000, other.id)
                        ).status_code == 400
    assert _post_stripe(platform, _stripe_event(shop, reference, 9_000)).status_code == 400
    assert wallet_balance(in_app, shop) == 0
    event = _stripe_event(shop, reference, 10_000)
    assert _post_stripe(platform, event).status_code == 200
    assert _post_stripe(platform, event).status_code == 200  # a replay
    assert _post_stripe(platform, {**event, "id": "evt_other"}).status_code == 200  # resent
    assert wallet_balance(in_app, shop) == 100  # 100.00 in, 99.00 paid the invoice
    assert invoices(in_app, shop)[0][2:4] == ("paid", 9900)


def epay_notification(reference, amount_text, trade_no, key=EPAY_KEY):
    from kameng.payments.gateways.epay import sign

    params = {"pid": "1001", "trade_no": trade_no, "out_trade_no": reference, "type": "alipay",
              "name": "Wallet top-up", "money": amount_text, "trade_status": "TRADE_SUCCESS"}
    return {**params, "sign": sign(params, key), "sign_type": "MD5"}


def test_epay_top_up_starts_with_its_own_notify_url_and_is_credited_once(
        create_tenant, platform_accounts, client_for, hosts, in_app, owner_of):
    shop = create_tenant()
    console = client_for(shop)
    console.login(owner_of(shop).email, "owner-pass-1", path="/admin/login")
    started = console.submit("/admin/billing/topup", {"topup-amount": "50.00",
                                                      "topup-method": "epay"},
                             form_path="/admin/billing")
    assert started.status_code == 302
    query = {k: v[0] for k, v in parse_qs(urlsplit(started.location).query).items()}
    assert query["notify_url"] == f"http://{hosts.landing}/pay/platform/topup-notify/epay"
    assert query["out_trade_no"].startswith(f"KMT-{shop.id}-5000-")
    assert query["money"] == "50.00"

    platform = client_for(hosts.landing)
    reference = query["out_trade_no"]
    forged = epay_notification(reference, "50.00", "T1", key="wrong-key")
    assert platform.post("/pay/platform/topup-notify/epay", data=forged).status_code == 400
    notice = epay_notification(reference, "50.00", "T1")
    for _ in range(2):
        response = platform.post("/pay/platform/topup-notify/epay", data=notice)
        assert response.get_data(as_text=True) == "success"
    assert wallet_balance(in_app, shop) == 5000
    # Buyers' payments are not top-ups: the platform's usual notify URL refuses this one.
    assert platform.post("/pay/platform/notify/epay", data=notice).status_code == 400


def test_the_sandbox_never_tops_up_in_production(create_tenant, in_app, app, monkeypatch):
    from kameng.payments.gateways.base import PaymentEvent

    shop = create_tenant()
    monkeypatch.setitem(app.config, "KAMENG_ENV", "production")
    event = PaymentEvent(event_id="evt_1", reference=_reference(shop, 500), status="succeeded",
                         amount=500, currency="CNY", tenant_id=shop.id)
    with in_app():
        assert "sandbox" not in dict(topups.topup_methods())
        assert topups.apply_topup_event(event, "sandbox") is not None
    assert wallet_balance(in_app, shop) == 0


# -- limits -------------------------------------------------------------------------------------


def test_plan_limits_refuse_the_sixth_own_product_and_extra_staff(
        create_tenant, subscribe, card_product, in_app, client_for, owner_of):
    shop = create_tenant()
    subscribe(shop, "free")  # 5 own products, 1 staff account
    for n in range(5):
        card_product(shop, codes=[f"C-{n}"], name=f"Card {n}")
    with pytest.raises(PlanLimitReached, match="allows 5 own products"):
        card_product(shop, codes=[], name="Card 6")
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        with pytest.raises(PlanLimitReached, match="allows 1 staff accounts"):
            billing.check_staff_limit(tenant)
        assert not billing.custom_domain_allowed(tenant)
        assert not billing.api_access_allowed(tenant)
        assert billing.theme_allowed(tenant, "default")
        assert not billing.theme_allowed(tenant, "neon")
    # In the console the refusal is a message, not an error page.
    console = client_for(shop)
    console.login(owner_of(shop).email, "owner-pass-1", path="/admin/login")
    page = console.submit("/admin/products/new", {"name": "Card 6", "price": "1.00",
                                                  "delivery_kind": "card", "min_qty": 1,
                                                  "max_qty": 10, "sort": 0,
                                                  "low_stock_threshold": 0})
    assert page.status_code in (403, 422)
    assert "allows 5 own products" in page.get_data(as_text=True)


def test_the_api_needs_a_plan_with_api_access(create_tenant, subscribe, plans, in_app,
                                              client_for):
    from types import SimpleNamespace

    from kameng.api import service as api_keys
    from kameng.errors import DomainError
    from kameng.merchant.models import StaffUser

    from .test_api import error_of, signed

    shop = create_tenant()
    subscribe(shop, "small")  # no API access
    with in_app(shop) as session:
        owner_id = session.scalar(select(StaffUser.id))
        with pytest.raises(DomainError, match="does not include API access"):
            api_keys.create_staff_key(shop.id, owner_id, scopes=["catalog"])
        session.execute(update(Subscription).values(plan_id=plans["big"]))  # API access
        new = api_keys.create_staff_key(shop.id, owner_id, scopes=["catalog"])
        session.commit()
        key = SimpleNamespace(id=new.key.key_id, secret=new.secret)
    client = client_for(shop)
    assert signed(client, "GET", "/api/v1/key", key).status_code == 200
    with in_app(shop) as session:  # back on a plan without it: the key stops working
        session.execute(update(Subscription).values(plan_id=plans["small"]))
        session.commit()
    refused = signed(client, "GET", "/api/v1/key", key)
    assert (refused.status_code, error_of(refused)["code"]) == (403, "forbidden")
    assert "plan does not include API access" in error_of(refused)["message"]


def test_a_shop_without_a_subscription_has_no_limits(create_tenant, card_product, in_app):
    shop = create_tenant()
    for n in range(7):
        card_product(shop, codes=[], name=f"Card {n}")
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        billing.check_staff_limit(tenant)
        assert billing.plan_of(tenant.id) is None


# -- the consoles ---------------------------------------------------------------------------------


def test_super_admin_manages_plans(admin, in_app):
    page = admin.submit("/billing/plans", {
        "code": "team", "name": "Team", "monthly_price": "199.00", "fee_percent": "1.5",
        "fee_fixed": "0.20", "max_own_products": "50", "max_staff": "", "trial_days": "7",
        "markup_percent": "25", "active": "y", "sort": "3", "themes": ["default", "neon"]})
    assert page.status_code == 302, page.get_data(as_text=True)
    with in_app():
        plan = billing.plan_by_code("team")
        assert (plan.monthly_price, plan.fee_bp, plan.fee_fixed, plan.max_own_products,
                plan.max_staff, plan.trial_days, plan.default_markup_bp, plan.themes) == (
            19900, 150, 20, 50, None, 7, 2500, ["default", "neon"])
        plan_id = plan.id
    assert "Team" in admin.get("/billing/plans").get_data(as_text=True)
    bad = admin.submit("/billing/plans", {"code": "team", "name": "Again",
                                          "monthly_price": "1", "markup_percent": "10",
                                          "trial_days": "0", "sort": "0"})
    assert bad.status_code == 422 and "Another plan has the code" in bad.get_data(as_text=True)
    edited = admin.submit(f"/billing/plans/{plan_id}", {
        "code": "team", "name": "Team+", "monthly_price": "249.00", "fee_percent": "1",
        "markup_percent": "25", "trial_days": "0", "sort": "3"})
    assert edited.status_code == 302
    with in_app():
        plan = billing.plan_by_code("team", active_only=False)
        assert (plan.name, plan.monthly_price, plan.active) == ("Team+", 24900, False)
    assert admin.submit(f"/billing/plans/{plan_id}/delete",
                        form_path=f"/billing/plans/{plan_id}").status_code == 302
    with in_app(), pytest.raises(billing.DomainError):
        billing.plan_by_code("team", active_only=False)


def test_super_admin_runs_billing_marks_paid_and_voids(admin, create_tenant, subscribe,
                                                      in_app, client_for):
    shop = create_tenant()
    subscribe(shop, "small")
    run(in_app, at(date(2026, 3, 20)))  # beyond the grace period: suspended
    assert client_for(shop).get("/").status_code == 503
    overview = admin.get("/billing/").get_data(as_text=True)
    assert shop.slug in overview and "Small" in overview and "unpaid" in overview
    done = admin.submit("/billing/run", form_path="/billing/")
    assert done.status_code == 302
    assert "shops billed" in admin.get(done.location).get_data(as_text=True)
    with in_app() as session:
        invoice_id = session.scalar(select(Invoice.id).where(Invoice.tenant_id == shop.id))
    detail = admin.get(f"/billing/invoices/{invoice_id}")
    assert detail.status_code == 200 and f"K{shop.id}-20260301-M" in detail.get_data(as_text=True)
    download = admin.get(f"/billing/invoices/{invoice_id}?download=1")
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert "@media print" in download.get_data(as_text=True)
    admin.submit(f"/billing/invoices/{invoice_id}/mark-paid",
                 form_path=f"/billing/invoices/{invoice_id}")
    with in_app() as session:
        invoice = session.get(Invoice, invoice_id)
        assert (invoice.status, invoice.paid_via) == ("paid", "manual")
    assert client_for(shop).get("/").status_code == 200  # resumed
    void = admin.submit(f"/billing/invoices/{invoice_id}/void",
                        form_path=f"/billing/invoices/{invoice_id}")
    assert "Only an open invoice" in admin.get(void.location).get_data(as_text=True)


def test_super_admin_puts_a_shop_on_a_plan(admin, create_tenant, plans, in_app):
    shop = create_tenant()
    assert "No subscription" in admin.get(f"/billing/shops/{shop.id}").get_data(as_text=True)
    page = admin.submit(f"/billing/shops/{shop.id}/plan", {"plan": str(plans["free"])},
                        form_path=f"/billing/shops/{shop.id}")
    assert page.status_code == 302
    assert subscription(in_app, shop)[:3] == ("free", None, "active")


def test_shop_console_billing_page_and_plan_change(create_tenant, plans, in_app, client_for,
                                                   owner_of, create_staff, fund):
    shop = create_tenant()
    fund(shop, 50_000)
    with in_app() as session:
        billing.start_subscription(session.get(Tenant, shop.id),
                                   billing.get_plan(plans["small"]))
        session.commit()
    console = client_for(shop)
    console.login(owner_of(shop).email, "owner-pass-1", path="/admin/login")
    text = console.get("/admin/billing").get_data(as_text=True)
    assert "Small" in text and "¥401.00" in text  # 500.00 - 99.00 in the wallet
    changed = console.submit("/admin/billing/plan", {"plan-plan": str(plans["big"])},
                             form_path="/admin/billing")
    assert changed.status_code == 302
    assert "You are on the Big plan from now on." in console.get(changed.location).get_data(
        as_text=True)
    assert subscription(in_app, shop)[0] == "big"
    with in_app() as session:
        invoice = session.scalar(select(Invoice).where(Invoice.tenant_id == shop.id,
                                                       Invoice.kind == "proration"))
        assert invoice.status == "paid"
        invoice_id = invoice.id
    page = console.get(f"/admin/billing/invoices/{invoice_id}")
    assert page.status_code == 200 and invoice.number in page.get_data(as_text=True)
    assert console.get(f"/admin/billing/invoices/{invoice_id}?download=1").headers[
        "Content-Disposition"].startswith("attachment;")
    # A manager does not manage billing.
    manager = create_staff(shop, role="manager")
    other = client_for(shop)
    other.login(manager.email, "staff-pass-1", path="/admin/login")
    assert other.get("/admin/billing").status_code == 403


def test_another_shops_invoice_is_not_found(create_tenant, subscribe, in_app, client_for,
                                            owner_of):
    mine, theirs = create_tenant(), create_tenant()
    subscribe(theirs, "small")
    with in_app() as session:
        their_invoice = session.scalar(select(Invoice.id).where(Invoice.tenant_id == theirs.id))
    console = client_for(mine)
    console.login(owner_of(mine).email, "owner-pass-1", path="/admin/login")
    assert console.get(f"/admin/billing/invoices/{their_invoice}").status_code == 404
    assert console.get(f"/admin/billing/invoices/{their_invoice}?download=1").status_code == 404


def test_billing_job_is_scheduled():
    from kameng.workers import jobs, periodic, queues

    assert periodic.SCHEDULE["bill_shops"] == 3600
    assert queues.POLICIES["bill_shops"][0] == "default"
    assert callable(jobs.bill_shops)


def test_invoice_numbers_are_unique_per_shop_period_and_kind(create_tenant, subscribe, in_app):
    shop = create_tenant()
    subscribe(shop, "small")
    with in_app() as session:
        count = session.scalar(select(func.count()).select_from(Invoice))
        tenant = session.get(Tenant, shop.id)
        again = billing._create_invoice(tenant, "monthly", MARCH, date(2026, 4, 1), [],
                                        at(MARCH))
        assert again is not None and again.number == f"K{shop.id}-20260301-M"
        assert session.scalar(select(func.count()).select_from(Invoice)) == count
