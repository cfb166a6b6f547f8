"""A shop's home page (50 products) served by Kameng vs the same bytes served from memory.

The script builds a fresh PostgreSQL database and starts a private redis-server, so the
storefront cache's version tokens live in Redis as in production. It seeds one shop with 50
products (7 listed from the platform's supply catalog, 43 of its own; 5 categories; every
product with an image and codes in stock; a logo, a banner and a notice), then serves:

  - kameng:   the shop's home page, `kameng:create_app()` (KAMENG_ENV=production);
  - baseline: a minimal Flask app (in this file) answering every request with Kameng's home
              page as fetched once at start-up, held in memory: same size, no database.

Both under gunicorn with the same settings (2 sync workers by default), both loaded by wrk
with the same Host header, alternately in the same run (baseline, kameng, baseline, kameng…).
A third lane, for information, sends the same request with a cookie: Kameng's fast lane
(kameng/storefront/fast_lane.py) answers only requests that cannot be personal, so this one
goes through Flask (session, Flask-Login, the page cache). Then wrk opens 1,000 concurrent
connections to Kameng's home page (and, for information, to the baseline and with the
cookie) and reports p99 latency and errors (socket errors and non-2xx answers). wrk runs on
the same 2 cores: the CPU it and the gunicorn workers used is printed beside each figure.

Targets: kameng req/s >= 0.8x baseline req/s; at 1,000 connections p99 < 2 s with no errors.

    .venv/bin/python bench/storefront.py [--seconds 10] [--rounds 2] [--workers 2]
        [--connections 16] [--crowd 1000] [--crowd-seconds 20]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from harness import free_port, stop_group, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PG_SERVER = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
HOST = "bench.localhost"
PRODUCTS = 50
CATEGORIES = 5

SEED = r"""
import base64, zlib, struct
from kameng import create_app
from kameng.appearance.service import AppearanceChanges, save_appearance, store_asset
from kameng.audit.service import Actor
from kameng.catalog.models import Product
from kameng.catalog.service import create_category, create_product, update_product
from kameng.demo import seed_supply
from kameng.extensions import db
from kameng.inventory.service import import_codes
from kameng.tenants.scoping import platform_scope, tenant_scope
from kameng.tenants.service import create_tenant

PRODUCTS, CATEGORIES = %(products)d, %(categories)d


def png(r, g, b, size=64):
    # A real (small) PNG: what a shop uploads for a product, served by the product image URL.
    raw = b"".join(b"\x00" + bytes((r, g, b)) * size for _ in range(size))
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


app = create_app()
with app.app_context():
    with platform_scope():
        seed_supply()  # the demo supply catalog: 7 products, a shop lists them all
    tenant = create_tenant(slug="bench", name="Bench Card Shop", owner_email="o@bench.test",
                           owner_password="bench-owner")
    with tenant_scope(tenant.id):
        listed = db.session.query(Product).count()
        categories = [create_category(tenant, f"Category {n + 1}", sort=n)
                      for n in range(CATEGORIES)]
        for n in range(PRODUCTS - listed):
            product = create_product(
                tenant, name=f"Game card {n + 1:02d} ¥{(n + 1) * 10}", price=(n + 1) * 1000,
                category_id=categories[n %% CATEGORIES].id, delivery_kind="card", sort=n,
                description_html=f"<p>Card {n + 1}: delivered at once after payment.</p>",
                image=png(40 + n * 4, 120, 200 - n * 3),
            )
            import_codes(product, (f"B{n:02d}-{i:06d}" for i in range(20)),
                         actor=Actor.system())
        for product in db.session.query(Product).filter(Product.supply_product_id.isnot(None)):
            update_product(product, image=png(200, 80, 40))
        store_asset(tenant, "logo", png(250, 180, 0, 48))
        store_asset(tenant, "banner", png(30, 60, 160, 128))
        save_appearance(tenant, AppearanceChanges(
            name="Bench Card Shop", settings={},
            notice="<p><strong>Open 24/7.</strong> Codes are delivered instantly.</p>",
            footer_links=[("Help", "https://example.com/help")],
            contacts={"email": "help@bench.test"}))
        total = db.session.query(Product).count()
    db.session.commit()
    print(tenant.id, total)
"""

BASELINE_APP = r'''
"""The baseline: a minimal Flask app answering with a page held in memory (no database)."""
import os
from flask import Flask, Response

PAGE = open(os.environ["BASELINE_PAGE"], "rb").read()
app = Flask(__name__)


@app.get("/")
def home():
    return Response(PAGE, content_type="text/html; charset=utf-8")
'''


class Redis:
    """A private redis-server in a temporary directory (no persistence)."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port, what="redis-server", proc=self.proc)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Server:
    """gunicorn serving `app`: the same settings for both lanes."""

    def __init__(self, app: str, env: dict, cwd: Path, workers: int):
        self.port = free_port()
        self.settings = ["--workers", str(workers), "--worker-class", "sync",
                         "--backlog", "2048", "--log-level", "warning"]
        self.proc = subprocess.Popen(
            [PY, "-m", "gunicorn", *self.settings, "-b", f"127.0.0.1:{self.port}", app],
            env=env, cwd=cwd, start_new_session=True)
        wait_for_port(self.port, what=app, proc=self.proc)

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                             text=True).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        stop_group(self.proc)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


@dataclass
class Load:
    rps: float
    requests: int
    p50: float  # seconds
    p99: float
    max: float
    socket_errors: int
    non_2xx: int
    wrk_cores: float  # CPU cores wrk itself used (of the machine's 2)
    server_cores: float  # CPU cores the gunicorn workers used
    server_cpu_ms: float  # their CPU time per answered request

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(port: int, seconds: int, connections: int, server: Server, threads: int = 2,
        cookie: str | None = None) -> Load:
    """One wrk run against / with the shop's Host header (latency percentiles recorded;
    a 10 s timeout, so slow answers count in the percentiles instead of vanishing)."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
           "--timeout", "10s", "-H", f"Host: {HOST}", f"http://127.0.0.1:{port}/"]
    if cookie:
        cmd[-1:-1] = ["-H", f"Cookie: {cookie}"]
    workers = server.worker_pids()
    before_server = cpu_seconds(workers)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = cpu_seconds(workers) - before_server
    wrk_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    latency = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)\s*$", out, re.M))
    if set(latency) != {"50", "99"}:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    socket_errors = sum(int(n) for n in re.findall(
        r"(?:connect|read|write|timeout) (\d+)", out.split("Socket errors:", 1)[1])) \
        if "Socket errors:" in out else 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    max_latency = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return Load(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), requests=requests,
        p50=_seconds(latency["50"]), p99=_seconds(latency["99"]),
        max=_seconds(max_latency.group(1)), socket_errors=socket_errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        wrk_cores=wrk_cpu / wall, server_cores=server_cpu / wall,
        server_cpu_ms=1000 * server_cpu / max(1, requests))


def fetch(port: int) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/", headers={"Host": HOST})
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


def make_database() -> str:
    import psycopg

    name = f"kameng_bench_sf_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_SERVER.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def env_for(db_url: str, redis_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("FLASK_DEBUG",)}
    env.update({
        "DATABASE_URL": db_url, "REDIS_URL": redis_url, "KAMENG_ENV": "production",
        "PLATFORM_DOMAIN": "localhost",
        "ENCRYPTION_KEYS": "3Yh0Fz0r2bq3oBq1vJm7cC1cJ0mJ8m6B0S1nW2e5xqY=",
        "SECRET_KEY": "bench-" + "x" * 40, "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "64",
    })
    return env


def raise_open_files(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        soft = min(hard, max(needed, 4096)) if hard != resource.RLIM_INFINITY else needed
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="per throughput measurement")
    parser.add_argument("--rounds", type=int, default=2, help="baseline/kameng pairs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--crowd", type=int, default=1000, help="connections of the crowd run")
    parser.add_argument("--crowd-seconds", type=int, default=20)
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("redis-server"):
        sys.exit("bench needs wrk and redis-server (apt-get install wrk redis-server)")
    open_files = raise_open_files(args.crowd + 512)
    if open_files < args.crowd + 64:
        sys.exit(f"open-file limit {open_files} is too low for {args.crowd} connections")

    workdir = Path(tempfile.mkdtemp(prefix="kameng-sf-"))
    redis = Redis(workdir)
    url = make_database()
    env = env_for(url, redis.url)
    servers: list[Server] = []
    try:
        subprocess.run([PY, "-m", "kameng", "db", "upgrade"], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        _, products = subprocess.run(
            [PY, "-c", SEED % {"products": PRODUCTS, "categories": CATEGORIES}], env=env,
            cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
        kameng = Server("kameng:create_app()", env, ROOT, args.workers)
        servers.append(kameng)

        status, headers, page = fetch(kameng.port)
        _, _, again = fetch(kameng.port)
        shown = len(set(re.findall(rb'href="/product/(\d+)"', page)))
        print(f"kameng home page: HTTP {status}, {len(page):,} bytes, {shown} of {products} "
              f"products linked, {'sets a' if 'Set-Cookie' in headers else 'no'} cookie; "
              f"second fetch {len(again):,} bytes", flush=True)
        if status != 200 or shown != int(products) or len(again) != len(page):
            sys.exit("the home page is not what this bench expects")
        (workdir / "page.html").write_bytes(page)
        (workdir / "baseline_app.py").write_text(BASELINE_APP)
        baseline = Server("baseline_app:app", {**env, "BASELINE_PAGE": str(workdir / "page.html")},
                          workdir, args.workers)
        servers.append(baseline)
        _, _, same = fetch(baseline.port)
        assert len(same) == len(page)
        print(f"gunicorn for both: {' '.join(kameng.settings)}; wrk -t2 -c{args.connections} "
              f"-d{args.seconds}s, Host: {HOST}; {os.cpu_count()} CPU cores shared by wrk and "
              f"gunicorn", flush=True)

        # The third lane is for information: a visitor whose request carries a cookie goes
        # through Flask (session, login, page cache) instead of the fast lane.
        lanes = (("baseline", baseline, None), ("kameng", kameng, None),
                 ("kameng+cookie", kameng, "seen=1"))
        for _, server, cookie in lanes:  # warm up: imports, pools, caches
            wrk(server.port, 3, args.connections, server, cookie=cookie)
        results: dict[str, list[Load]] = {name: [] for name, _, _ in lanes}
        for round_no in range(args.rounds):
            for name, server, cookie in lanes:
                load = wrk(server.port, args.seconds, args.connections, server, cookie=cookie)
                if load.errors:
                    sys.exit(f"{name}: {load.errors} errors during load")
                results[name].append(load)
                print(f"  round {round_no + 1} {name:<13} {load.rps:8.1f} req/s  "
                      f"p99 {ms(load.p99):>7}  (gunicorn {load.server_cores:.2f} cores, "
                      f"{load.server_cpu_ms:.2f} ms CPU per request; wrk "
                      f"{load.wrk_cores:.2f} cores)", flush=True)

        # The crowd: the target is Kameng's anonymous home page; the baseline and the cookie
        # lane show what the same crowd does to the floor and to the Flask path.
        crowds = {}
        for name, server, cookie in (lanes[1], lanes[0], lanes[2]):
            wrk(server.port, 3, args.connections, server, cookie=cookie)
            crowd = crowds[name] = wrk(server.port, args.crowd_seconds, args.crowd, server,
                                       cookie=cookie)
            print(f"  crowd {name:<13} {args.crowd} connections {args.crowd_seconds}s: "
                  f"{crowd.rps:.1f} req/s, p50 {ms(crowd.p50)}, p99 {ms(crowd.p99)}, "
                  f"max {ms(crowd.max)}, {crowd.socket_errors} socket errors, "
                  f"{crowd.non_2xx} non-2xx (gunicorn {crowd.server_cores:.2f} cores, "
                  f"wrk {crowd.wrk_cores:.2f} cores)", flush=True)
        crowd = crowds["kameng"]
    finally:
        for server in servers:
            server.stop()
        drop_database(url)
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    medians = {name: statistics.median(r.rps for r in loads) for name, loads in results.items()}
    base, ratio = medians["baseline"], medians["kameng"] / medians["baseline"]
    labels = {"baseline": "baseline: in-memory page, minimal Flask app, no database",
              "kameng": f"kameng home page, {products} products, anonymous visitor",
              "kameng+cookie": "kameng home page, request with a cookie (through Flask)"}
    print("\n| lane | req/s (median) | runs | p99 (median) | gunicorn CPU per request "
          "(median) | ratio to baseline |")
    print("|---|---|---|---|---|---|")
    for name, loads in results.items():
        p99 = statistics.median(r.p99 for r in loads)
        cpu = statistics.median(r.server_cpu_ms for r in loads)
        print(f"| {labels[name]} | {medians[name]:.1f} | "
              f"{', '.join(f'{r.rps:.0f}' for r in loads)} | {ms(p99)} | {cpu:.2f} ms | "
              f"**{medians[name] / base:.2f}x** |")
    print(f"\nthroughput ratio {ratio:.2f}x (target >= 0.80): "
          + ("PASS" if ratio >= 0.8 else "FAIL"))
    crowd_ok = crowd.p99 < 2.0 and crowd.errors == 0
    print(f"{args.crowd} connections: p99 {ms(crowd.p99)}, {crowd.errors} errors "
          f"(target p99 < 2 s, 0 errors): " + ("PASS" if crowd_ok else "FAIL"))


if __name__ == "__main__":
    main()
