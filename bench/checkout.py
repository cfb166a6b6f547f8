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

Also measured, same server, before the paid path: Kameng's floor — GET /lang/en, a request
that resolves its shop and answers a redirect — halved, as two requests per order cost at
least that much before any order is written.

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
            reference = target.rsplit("/", 1)[1]
            body = json.dumps({"event_id": f"evt_{secrets.token_hex(8)}", "reference": reference,
                               "tenant_id": int(tenant_id), "status": "succeeded", "amount": 100,
                               "currency": "CNY"}, separators=(",", ":")).encode()
            stamp = int(time.time())
            signature = hmac.new(secret.encode(), f"{stamp}.".encode() + body,
                                 hashlib.sha256).hexdigest()
            status, _, answer = request(
                kameng.port, "POST", "/pay/notify/sandbox", host=host, body=body,
                headers={"Content-Type": "application/json",
                         "X-Sandbox-Signature": f"t={stamp},v1={signature}"})
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
        print(f"| Kameng floor: 2 requests per order that only resolve their shop (GET "
              f"/lang/en: {floor_rps:.1f} requests/s) | {floor_rps / 2:.1f} | "
              f"{p(f_lat, 50):.0f} | {p(f_lat, 99):.0f} | {f_errors} |")
        print(f"| kameng checkout -> sandbox notify -> paid ({per_order} requests/order, {mode}) | "
              f"{kameng_rps:.1f} | {p(k_lat, 50):.0f} | {p(k_lat, 99):.0f} | {k_errors} |")
        print(f"\nratio {ratio:.2f}x (target >= 0.50): {'PASS' if ratio >= 0.5 else 'FAIL'}; "
              f"the floor alone: {floor_rps / 2 / minimal_rps:.2f}x")
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
