"""Orders per second through Kameng's full paid path vs a minimal order endpoint, PostgreSQL.

Both run under gunicorn with the same settings (2 sync workers), against the same fresh
PostgreSQL database, driven by the same load generator (threads with http.client), same run,
with Kameng deployed as `make run` and docs/operations.md deploy it: a Redis (REDIS_URL, or a
private redis-server) and one `kameng worker` running throughout, for both measurements:

  - minimal: POST /order inserts one order row and claims one code with FOR UPDATE SKIP LOCKED
    (one request per order: the floor of what any order endpoint costs here);
  - kameng: per order, POST /product/<id>/checkout (priced by quote(), code reserved, sandbox
    payment started: a redirect straight to the gateway's page), then POST /pay/notify/sandbox
    (HMAC-signed notification: verified, stored once, order paid, delivery queued). The worker
    delivers beside the load; after it, every order must be delivered exactly once.
    (A checkout answering with a redirect to /order/<token>/pay is followed there too.)

Target: kameng orders/s >= 0.5x minimal requests/s.

Also measured, to show what bounds the ratio (after Kameng's run, same gunicorn settings):
the same paid path written by hand in SQL — no ORM, no shop lookup, no checks beyond the
price, the signature and the amount (REFERENCE_APP below: the least any implementation
writes) — with a statement per step, and with one statement per request (data-modifying
CTEs). And, same server, before the paid path: Kameng's floor — GET /lang/en, a request that
resolves its shop and answers a redirect — halved, as two requests per order cost at least
that much before any order is written.

    .venv/bin/python bench/checkout.py [--seconds 20] [--clients 8] [--workers 2] [--inline]

--inline: no Redis and no worker; each notification delivers in its own request (the
no-Redis mode of a laptop), as this benchmark measured before 2026-11-26 evening.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from harness import free_port, in_threads, stop_group, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PG_SERVER = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CODES = 200_000

SETUP = r"""
import sys
from kameng import create_app
from kameng.audit.service import Actor
from kameng.catalog.service import create_product
from kameng.extensions import db
from kameng.inventory.service import import_codes
from kameng.payments.registry import decrypt_credentials, ensure_sandbox_account
from kameng.tenants.scoping import tenant_scope
from kameng.tenants.service import create_tenant
count, with_minimal = int(sys.argv[1]), sys.argv[2:] == ["minimal"]
app = create_app()
with app.app_context():
    tenant = create_tenant(slug="bench", name="Bench shop", owner_email="o@bench.test",
                           owner_password="bench-owner")
    with tenant_scope(tenant.id):
        product = create_product(tenant, name="Bench card", price=100, delivery_kind="card")
        import_codes(product, (f"BENCH-{n:08d}" for n in range(count)), actor=Actor.system())
        minimal = None
        if with_minimal:  # the minimal endpoint claims codes of its own, from as many
            minimal = create_product(tenant, name="Minimal card", price=100, delivery_kind="card")
            import_codes(minimal, (f"MIN-{n:08d}" for n in range(count)), actor=Actor.system())
        secret = decrypt_credentials(ensure_sandbox_account(tenant).credentials)["secret"]
    db.session.commit()
    print(tenant.id, product.id, minimal.id if minimal else 0, secret)
"""

MINIMAL_APP = r'''
import os
from flask import Flask, request
from sqlalchemy import create_engine, text

engine = create_engine(os.environ["MINIMAL_DB"], pool_pre_ping=True)
app = Flask(__name__)
with engine.begin() as c:
    c.execute(text("CREATE TABLE IF NOT EXISTS bench_orders (id bigserial PRIMARY KEY, "
                   "tenant_id int NOT NULL, email text NOT NULL, total bigint NOT NULL, "
                   "created_at timestamptz NOT NULL DEFAULT now())"))

@app.post("/order")
def order():
    with engine.begin() as c:
        order_id = c.execute(text("INSERT INTO bench_orders (tenant_id, email, total) "
                                  "VALUES (:t, :e, 100) RETURNING id"),
                             {"t": int(os.environ["MINIMAL_TENANT"]),
                              "e": request.form.get("email", "")}).scalar_one()
        claimed = c.execute(text(
            "UPDATE card_codes SET status = 'reserved', order_id = :o WHERE id = ("
            "SELECT id FROM card_codes WHERE tenant_id = :t AND product_id = :p "
            "AND status = 'available' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"),
            {"o": order_id, "t": int(os.environ["MINIMAL_TENANT"]),
             "p": int(os.environ["MINIMAL_PRODUCT"])}).rowcount
    return ("ok" if claimed else "sold out"), (200 if claimed else 409)
'''

# The least any implementation of the paid path does, written by hand: SQL through SQLAlchemy
# Core, no ORM, no tenant guard, no shop lookup by host, no quote() beyond the product's price,
# no open-order caps, no CSRF, no templates. Per order, checkout: the price read, the order,
# its line, the code claimed (SKIP LOCKED), the timeline row, the payment, one commit; the
# signed notification: HMAC checked, the payment and order read, the notification stored once
# (unique gateway + event id), the order's compare-and-set to paid, the payment marked, the
# timeline row, the outbox row, one commit. What it measures is an upper bound: no way of
# writing Kameng's paid path on this machine goes faster than this.
REFERENCE_APP = r'''
import hashlib, hmac, json, os, secrets
from flask import Flask, request
from sqlalchemy import create_engine, text

engine = create_engine(os.environ["REFERENCE_DB"], pool_pre_ping=True)
TENANT, PRODUCT = int(os.environ["REFERENCE_TENANT"]), int(os.environ["REFERENCE_PRODUCT"])
SECRET = os.environ["REFERENCE_SECRET"].encode()
app = Flask(__name__)


class SoldOut(Exception):
    pass


app.register_error_handler(SoldOut, lambda error: ("sold out", 409))
with engine.begin() as c:
    c.execute(text("SELECT pg_advisory_xact_lock(4242)"))  # both workers start at once
    for ddl in (
        "CREATE TABLE IF NOT EXISTS ref_orders (id bigserial PRIMARY KEY, tenant_id int NOT NULL, "
        "number text NOT NULL UNIQUE, token_hash bytea NOT NULL UNIQUE, email text NOT NULL, "
        "status text NOT NULL, total bigint NOT NULL, currency text NOT NULL, "
        "created_at timestamptz NOT NULL DEFAULT now(), paid_at timestamptz)",
        "CREATE TABLE IF NOT EXISTS ref_order_lines (id bigserial PRIMARY KEY, "
        "order_id bigint NOT NULL REFERENCES ref_orders, product_id int NOT NULL, "
        "qty int NOT NULL, unit bigint NOT NULL)",
        "CREATE TABLE IF NOT EXISTS ref_order_events (id bigserial PRIMARY KEY, "
        "order_id bigint NOT NULL REFERENCES ref_orders, from_status text, to_status text, "
        "note text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
        "CREATE TABLE IF NOT EXISTS ref_payments (id bigserial PRIMARY KEY, "
        "order_id bigint NOT NULL REFERENCES ref_orders, reference text NOT NULL UNIQUE, "
        "amount bigint NOT NULL, currency text NOT NULL, status text NOT NULL)",
        "CREATE TABLE IF NOT EXISTS ref_notifications (id bigserial PRIMARY KEY, "
        "gateway text NOT NULL, event_id text NOT NULL, payment_id bigint NOT NULL "
        "REFERENCES ref_payments, body text NOT NULL, UNIQUE (gateway, event_id))",
        "CREATE TABLE IF NOT EXISTS ref_outbox (id bigserial PRIMARY KEY, kind text NOT NULL, "
        "order_id bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
    ):
        c.execute(text(ddl))


@app.post("/checkout")
def checkout():
    with engine.begin() as c:
        price = c.execute(text("SELECT price FROM products WHERE id = :p AND tenant_id = :t "
                               "AND active"), {"p": PRODUCT, "t": TENANT}).scalar_one()
        order_id = c.execute(text(
            "INSERT INTO ref_orders (tenant_id, number, token_hash, email, status, total, "
            "currency) VALUES (:t, :n, :h, :e, 'pending', :total, 'CNY') RETURNING id"),
            {"t": TENANT, "n": secrets.token_hex(6), "e": request.form.get("email", ""),
             "h": hashlib.sha256(secrets.token_bytes(24)).digest(), "total": price}).scalar_one()
        c.execute(text("INSERT INTO ref_order_lines (order_id, product_id, qty, unit) "
                       "VALUES (:o, :p, 1, :u)"), {"o": order_id, "p": PRODUCT, "u": price})
        claimed = c.execute(text(
            "UPDATE card_codes SET status = 'reserved', order_id = :o WHERE id = ("
            "SELECT id FROM card_codes WHERE tenant_id = :t AND product_id = :p "
            "AND status = 'available' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"),
            {"o": order_id, "t": TENANT, "p": PRODUCT}).rowcount
        if not claimed:
            raise SoldOut  # rolls the order back
        c.execute(text("INSERT INTO ref_order_events (order_id, to_status, note) "
                       "VALUES (:o, 'pending', 'placed')"), {"o": order_id})
        reference = secrets.token_hex(8)
        c.execute(text("INSERT INTO ref_payments (order_id, reference, amount, currency, status) "
                       "VALUES (:o, :r, :a, 'CNY', 'started')"),
                  {"o": order_id, "r": reference, "a": price})
    return "", 302, {"Location": f"/pay/sandbox/{reference}"}


class BadSignature(Exception):
    pass


app.register_error_handler(BadSignature, lambda error: ("refused: signature\n", 400))


def verified() -> tuple[bytes, dict]:
    """The notification's body and event, its HMAC signature checked (else BadSignature)."""
    body = request.get_data()
    stamp, _, signature = request.headers.get("X-Sandbox-Signature", "").partition(",v1=")
    expected = hmac.new(SECRET, f"{stamp[2:]}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise BadSignature
    return body, json.loads(body)


@app.post("/notify")
def notify():
    body, event = verified()
    with engine.begin() as c:
        row = c.execute(text(
            "SELECT p.id, p.amount, p.currency, o.id, o.tenant_id FROM ref_payments p "
            "JOIN ref_orders o ON o.id = p.order_id WHERE p.reference = :r"),
            {"r": event["reference"]}).one_or_none()
        if row is None or row[4] != event["tenant_id"] or row[1] != event["amount"] \
                or row[2] != event["currency"]:
            return "refused: payment\n", 400
        payment_id, order_id = row[0], row[3]
        stored = c.execute(text(
            "INSERT INTO ref_notifications (gateway, event_id, payment_id, body) "
            "VALUES ('sandbox', :e, :p, :b) ON CONFLICT DO NOTHING RETURNING id"),
            {"e": event["event_id"], "p": payment_id, "b": body.decode()}).scalar()
        if stored is None:
            return "ok"  # seen before: acknowledged again, nothing changes
        paid = c.execute(text("UPDATE ref_orders SET status = 'paid', paid_at = now() "
                              "WHERE id = :o AND status = 'pending'"), {"o": order_id}).rowcount
        if paid:
            c.execute(text("UPDATE ref_payments SET status = 'succeeded' WHERE id = :p"),
                      {"p": payment_id})
            c.execute(text("INSERT INTO ref_order_events (order_id, from_status, to_status, "
                           "note) VALUES (:o, 'pending', 'paid', 'sandbox notification')"),
                      {"o": order_id})
            c.execute(text("INSERT INTO ref_outbox (kind, order_id) VALUES ('deliver', :o)"),
                      {"o": order_id})
    return "ok"


# The same writes, each request one statement (data-modifying CTEs) and its commit: the fewest
# round trips the paid path can take.
@app.post("/checkout-one")
def checkout_one():
    reference = secrets.token_hex(8)
    with engine.begin() as c:
        claimed = c.execute(text(
            "WITH price AS (SELECT price FROM products WHERE id = :p AND tenant_id = :t "
            "AND active), "
            "o AS (INSERT INTO ref_orders (tenant_id, number, token_hash, email, status, total, "
            "currency) SELECT :t, :n, :h, :e, 'pending', price, 'CNY' FROM price "
            "RETURNING id, total), "
            "code AS (UPDATE card_codes SET status = 'reserved', order_id = (SELECT id FROM o) "
            "WHERE id = (SELECT id FROM card_codes WHERE tenant_id = :t AND product_id = :p "
            "AND status = 'available' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id), "
            "l AS (INSERT INTO ref_order_lines (order_id, product_id, qty, unit) "
            "SELECT id, :p, 1, total FROM o), "
            "e AS (INSERT INTO ref_order_events (order_id, to_status, note) "
            "SELECT id, 'pending', 'placed' FROM o), "
            "pay AS (INSERT INTO ref_payments (order_id, reference, amount, currency, status) "
            "SELECT id, :r, total, 'CNY', 'started' FROM o) "
            "SELECT count(*) FROM code"),
            {"t": TENANT, "p": PRODUCT, "n": secrets.token_hex(6), "r": reference,
             "h": hashlib.sha256(secrets.token_bytes(24)).digest(),
             "e": request.form.get("email", "")}).scalar_one()
        if not claimed:
            raise SoldOut
    return "", 302, {"Location": f"/pay/sandbox/{reference}"}


@app.post("/notify-one")
def notify_one():
    body, event = verified()
    with engine.begin() as c:
        found = c.execute(text(
            "WITH pay AS (SELECT p.id, p.order_id FROM ref_payments p JOIN ref_orders o "
            "ON o.id = p.order_id WHERE p.reference = :r AND o.tenant_id = :t "
            "AND p.amount = :a AND p.currency = :c), "
            "n AS (INSERT INTO ref_notifications (gateway, event_id, payment_id, body) "
            "SELECT 'sandbox', :e, id, :b FROM pay ON CONFLICT DO NOTHING "
            "RETURNING payment_id), "
            "o AS (UPDATE ref_orders SET status = 'paid', paid_at = now() "
            "WHERE id = (SELECT order_id FROM pay) AND status = 'pending' "
            "AND EXISTS (SELECT 1 FROM n) RETURNING id), "
            "p2 AS (UPDATE ref_payments SET status = 'succeeded' "
            "WHERE id IN (SELECT payment_id FROM n) AND EXISTS (SELECT 1 FROM o)), "
            "ev AS (INSERT INTO ref_order_events (order_id, from_status, to_status, note) "
            "SELECT id, 'pending', 'paid', 'sandbox notification' FROM o), "
            "ob AS (INSERT INTO ref_outbox (kind, order_id) SELECT 'deliver', id FROM o) "
            "SELECT count(*) FROM pay"),
            {"r": event["reference"], "t": event["tenant_id"], "a": event["amount"],
             "c": event["currency"], "e": event["event_id"], "b": body.decode()}).scalar_one()
    return "ok" if found else ("refused: payment\n", 400)
'''


def signed_notification(reference: str, tenant_id: int, secret: str) -> tuple[bytes, dict]:
    """A succeeded sandbox notification for a payment: its body and headers (HMAC-signed)."""
    body = json.dumps({"event_id": f"evt_{secrets.token_hex(8)}", "reference": reference,
                       "tenant_id": tenant_id, "status": "succeeded", "amount": 100,
                       "currency": "CNY"}, separators=(",", ":")).encode()
    stamp = int(time.time())
    signature = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json",
                  "X-Sandbox-Signature": f"t={stamp},v1={signature}"}


def env_for(db_url: str, redis_url: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url:
        env.update({"REDIS_URL": redis_url, "DELIVERY_MODE": "queue"})
    env.update({
        "DATABASE_URL": db_url, "KAMENG_ENV": "development",
        "ENCRYPTION_KEYS": "3Yh0Fz0r2bq3oBq1vJm7cC1cJ0mJ8m6B0S1nW2e5xqY=",
        "SECRET_KEY": "bench-" + "x" * 40, "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "64",
        # every bench order comes from 127.0.0.1: no per-address cap on open orders here
        "MAX_OPEN_ORDERS_PER_IP": "100000",
    })
    return env


class Server:
    def __init__(self, app: str, env: dict, workers: int, cwd: Path):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [PY, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{self.port}",
             "--log-level", "warning", app], env=env, cwd=cwd, start_new_session=True)
        wait_for_port(self.port, what=app, proc=self.proc)

    def stop(self) -> None:
        stop_group(self.proc)


def request(port: int, method: str, path: str, *, host: str, body: bytes = b"",
            headers: dict | None = None, cookies: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    all_headers = {"Host": host, **(headers or {})}
    if cookies:
        all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    conn.request(method, path, body=body, headers=all_headers)
    response = conn.getresponse()
    data = response.read()
    for value in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = value.partition("=")
        if cookies is not None:
            cookies[name] = rest.split(";", 1)[0]
    conn.close()
    return response.status, response.headers, data


def run_load(seconds: float, clients: int, one_order) -> tuple[int, int, list[float]]:
    """Run `one_order(state)` in `clients` threads for `seconds`: (done, errors, latencies)."""
    stop = time.perf_counter() + seconds
    done, errors, latencies, lock = [0], [0], [], threading.Lock()

    def worker():
        state: dict = {}
        while time.perf_counter() < stop:
            start = time.perf_counter()
            try:
                ok = one_order(state)
            except Exception:  # a failed request is counted, never hidden
                ok = False
            with lock:
                if ok:
                    done[0] += 1
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[0] += 1

    in_threads(clients, worker)
    return done[0], errors[0], latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--inline", action="store_true",
                        help="no Redis, no worker: deliver inside the notification request")
    args = parser.parse_args()
    import psycopg
    from redis import Redis

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from delivery import PrivateRedis, Worker  # (delivery.py imports this module's helpers)

    name = f"kameng_bench_co_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_SERVER.rsplit("/", 1)[0] + "/" + name
    workdir = Path(tempfile.mkdtemp(prefix="kameng-co-"))
    private = None
    if not args.inline and not os.environ.get("REDIS_URL"):
        private = PrivateRedis(workdir)
    redis_url = None if args.inline else (os.environ.get("REDIS_URL") or private.url)
    env = env_for(url, redis_url)
    servers, worker = [], None
    try:
        subprocess.run([PY, "-m", "kameng", "db", "upgrade"], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        tenant_id, product_id, minimal_product_id, secret = subprocess.run(
            [PY, "-c", SETUP, str(CODES), "minimal"], env=env, cwd=ROOT, check=True,
            capture_output=True, text=True).stdout.split()
        host = "bench.localhost"
        if redis_url:
            worker = Worker(env, Redis.from_url(redis_url))  # beside both measurements

        # -- the minimal endpoint ------------------------------------------------------------
        (workdir / "minimal_app.py").write_text(MINIMAL_APP)
        minimal_env = {**env, "MINIMAL_DB": url.replace("postgresql://", "postgresql+psycopg://"),
                       "MINIMAL_TENANT": tenant_id, "MINIMAL_PRODUCT": minimal_product_id}
        minimal = Server("minimal_app:app", minimal_env, args.workers, workdir)
        servers.append(minimal)

        def minimal_order(state):
            body = urlencode({"email": f"{secrets.token_hex(4)}@bench.test"}).encode()
            status, _, _ = request(minimal.port, "POST", "/order", host=host, body=body,
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
            return status == 200

        run_load(3, args.clients, minimal_order)  # warm up
        m_done, m_errors, m_lat = run_load(args.seconds, args.clients, minimal_order)
        minimal.stop()
        servers.remove(minimal)
        minimal_rps = m_done / args.seconds
        print(f"minimal endpoint: {minimal_rps:.1f} orders/s ({m_errors} errors)", flush=True)

        # -- kameng's paid path --------------------------------------------------------------
        kameng = Server("kameng:create_app()", env, args.workers, ROOT)
        servers.append(kameng)
        steps: set[int] = set()  # requests per order seen (2: checkout started the payment)
        token_re = re.compile(rb'name="csrf_token" type="hidden" value="([^"]+)"')

        def kameng_order(state):
            cookies = state.setdefault("cookies", {})
            if "csrf" not in state:
                # A session and its CSRF token (a product page gives a visitor without one
                # neither).
                _, _, page = request(kameng.port, "GET", "/orders/lookup", host=host,
                                     cookies=cookies)
                state["csrf"] = token_re.search(page).group(1).decode()
            form = urlencode({"csrf_token": state["csrf"], "qty": "1", "payment_method": "sandbox",
                              "email": f"{secrets.token_hex(5)}@bench.test"}).encode()
            status, headers, _ = request(
                kameng.port, "POST", f"/product/{product_id}/checkout", host=host, body=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"}, cookies=cookies)
            if status != 302:
                return False
            target = urlsplit(headers["Location"]).path
            state.pop("requests", None)
            if target.endswith("/pay"):  # the payment step, where checkout does not start it
                state["requests"] = 3
                status, headers, _ = request(kameng.port, "GET", target, host=host,
                                             cookies=cookies)
                if status != 302:
                    return False
                target = urlsplit(headers["Location"]).path
            if not target.startswith("/pay/sandbox/"):
                return False
            steps.add(2 if "requests" not in state else 3)
            body, headers = signed_notification(target.rsplit("/", 1)[1], int(tenant_id), secret)
            status, _, answer = request(kameng.port, "POST", "/pay/notify/sandbox", host=host,
                                        body=body, headers=headers)
            return status == 200 and answer == b"ok"

        def kameng_floor(state):
            # A Kameng request that does next to nothing: its shop resolved, then a redirect
            # (the language switch). What any two Kameng requests cost at least.
            status, _, _ = request(kameng.port, "GET", "/lang/en", host=host)
            return status == 302

        run_load(3, args.clients, kameng_floor)  # warm up
        f_done, f_errors, f_lat = run_load(args.seconds, args.clients, kameng_floor)
        floor_rps = f_done / args.seconds
        print(f"kameng floor (GET /lang/en): {floor_rps:.1f} requests/s "
              f"({f_errors} errors)", flush=True)

        run_load(3, args.clients, kameng_order)  # warm up
        k_done, k_errors, k_lat = run_load(args.seconds, args.clients, kameng_order)
        kameng.stop()
        servers.remove(kameng)
        kameng_rps = k_done / args.seconds

        deadline = time.time() + 120  # the worker finishes what the load left queued
        with psycopg.connect(url, autocommit=True) as conn:
            while True:
                paid, delivered, undelivered = conn.execute(
                    "SELECT count(*) FILTER (WHERE status NOT IN ('pending', 'expired')), "
                    "count(*) FILTER (WHERE status = 'delivered'), "
                    "count(*) FILTER (WHERE status IN ('paid', 'delivering')) FROM orders"
                ).fetchone()
                if not undelivered or time.time() > deadline:
                    break
                time.sleep(0.5)
            sold, twice = conn.execute(
                "SELECT count(*), count(*) - count(DISTINCT order_id) FROM card_codes "
                "WHERE status = 'sold'").fetchone()
        ledger = subprocess.run([PY, "-m", "kameng", "ledger", "check"], env=env, cwd=ROOT,
                                capture_output=True, text=True)
        exact = paid == delivered == sold and not twice and ledger.returncode == 0

        # -- the hand-written reference paid path ---------------------------------------------
        (workdir / "reference_app.py").write_text(REFERENCE_APP)
        reference_env = {**minimal_env, "REFERENCE_DB": minimal_env["MINIMAL_DB"],
                         "REFERENCE_TENANT": tenant_id, "REFERENCE_PRODUCT": minimal_product_id,
                         "REFERENCE_SECRET": secret}
        reference = Server("reference_app:app", reference_env, args.workers, workdir)
        servers.append(reference)

        def reference_order(suffix: str):
            def one(state):
                body = urlencode({"email": f"{secrets.token_hex(5)}@bench.test"}).encode()
                status, headers, _ = request(
                    reference.port, "POST", f"/checkout{suffix}", host=host, body=body,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
                if status != 302:
                    return False
                body, headers = signed_notification(headers["Location"].rsplit("/", 1)[1],
                                                    int(tenant_id), secret)
                status, _, answer = request(reference.port, "POST", f"/notify{suffix}",
                                            host=host, body=body, headers=headers)
                return status == 200 and answer == b"ok"
            return one

        lanes = {}
        for suffix in ("", "-one"):  # a statement per step; one statement per request
            run_load(3, args.clients, reference_order(suffix))  # warm up
            lanes[suffix] = run_load(args.seconds, args.clients, reference_order(suffix))
        reference.stop()
        servers.remove(reference)
        with psycopg.connect(url, autocommit=True) as conn:
            r_orders, r_paid, r_events, r_outbox = conn.execute(
                "SELECT (SELECT count(*) FROM ref_orders), "
                "(SELECT count(*) FROM ref_orders WHERE status = 'paid'), "
                "(SELECT count(*) FROM ref_order_events WHERE to_status = 'paid'), "
                "(SELECT count(*) FROM ref_outbox)").fetchone()
        r_done, r_errors, r_lat = lanes[""]
        reference_rps = r_done / args.seconds
        one_done, one_errors, one_lat = lanes["-one"]
        one_rps = one_done / args.seconds
        print(f"hand-written reference paid path: {reference_rps:.1f} orders/s ({r_errors} "
              f"errors); in one statement per request: {one_rps:.1f} orders/s ({one_errors} "
              f"errors); {r_orders} orders, {r_paid} paid, {r_events} paid events, {r_outbox} "
              "outbox rows (warm-ups included)", flush=True)
        if not r_orders == r_paid == r_events == r_outbox:
            raise SystemExit("the reference paid path lost or doubled a payment: see above")

        def p(values, q):
            return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 2 else 0

        ratio = kameng_rps / minimal_rps
        print(f"kameng paid path: {kameng_rps:.1f} orders/s ({k_errors} errors); "
              f"{paid} paid (warm-up included), {delivered} delivered, {undelivered} paid but "
              f"undelivered, {sold} codes sold, {twice} sold twice; ledger check "
              f"{'OK' if ledger.returncode == 0 else 'FAILED: ' + ledger.stdout + ledger.stderr}"
              f"; exactly once: {'yes' if exact else 'NO'}")
        mode = "inline delivery, no worker" if args.inline else "delivery on the worker"
        per_order = "/".join(str(n) for n in sorted(steps)) or "?"
        print()
        print("| path | orders/s | p50 ms | p99 ms | errors |")
        print("|---|---|---|---|---|")
        print(f"| minimal endpoint (1 request/order) | {minimal_rps:.1f} | {p(m_lat, 50):.0f} | "
              f"{p(m_lat, 99):.0f} | {m_errors} |")
        print(f"| hand-written SQL paid path, no ORM (2 requests/order: checkout, notify) | "
              f"{reference_rps:.1f} | {p(r_lat, 50):.0f} | {p(r_lat, 99):.0f} | {r_errors} |")
        print(f"| the same, one SQL statement per request (data-modifying CTEs) | "
              f"{one_rps:.1f} | {p(one_lat, 50):.0f} | {p(one_lat, 99):.0f} | {one_errors} |")
        print(f"| Kameng floor: 2 requests per order that only resolve their shop (GET "
              f"/lang/en: {floor_rps:.1f} requests/s) | {floor_rps / 2:.1f} | "
              f"{p(f_lat, 50):.0f} | {p(f_lat, 99):.0f} | {f_errors} |")
        print(f"| kameng checkout -> sandbox notify -> paid ({per_order} requests/order, {mode}) | "
              f"{kameng_rps:.1f} | {p(k_lat, 50):.0f} | {p(k_lat, 99):.0f} | {k_errors} |")
        print(f"\nratio {ratio:.2f}x (target >= 0.50): {'PASS' if ratio >= 0.5 else 'FAIL'}; "
              f"the floor alone: {floor_rps / 2 / minimal_rps:.2f}x; the paid path written by "
              f"hand in SQL: {reference_rps / minimal_rps:.2f}x, in one statement per request: "
              f"{one_rps / minimal_rps:.2f}x")
        if not exact:
            raise SystemExit("orders were not delivered exactly once: see above")
    finally:
        for server in servers:
            server.stop()
        if worker is not None:
            worker.stop()
        if private is not None:
            private.stop()
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
