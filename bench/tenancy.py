"""Shop page throughput with 1 shop vs 10,000 shops in the database (gunicorn + wrk).

For each database size the script builds a fresh database (PostgreSQL when --db postgres,
else SQLite), serves it with gunicorn on loopback and loads it with wrk:
  - `same shop`:   every request is the home page of shop `demo`;
  - `many shops`:  requests rotate over 1,000 different shops (host cache misses at first).
Rounds alternate between the two sizes and the median is reported, since this machine is
noisy; the ratio (10,000 shops / 1 shop) is what the target is about (>= 0.9).

    .venv/bin/python bench/tenancy.py [--db sqlite|postgres] [--shops 10000] [--duration 8]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from harness import free_port, stop_group, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PG_SERVER = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def make_database(kind: str, workdir: Path, label: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / f'{label}.db'}"
    import psycopg

    name = f"kameng_bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_SERVER.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    if not url.startswith("postgresql"):
        return
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


SEED = r"""
import sys, time
from sqlalchemy import insert
from kameng import create_app
from kameng.extensions import db
from kameng.tenants.models import Tenant, Domain
from kameng.merchant.models import StaffUser
from kameng.tenants.service import create_tenant
from kameng.tenants.scoping import platform_scope

shops = int(sys.argv[1])
app = create_app()
with app.app_context():
    demo = create_tenant(slug="demo", name="Demo Card Shop", owner_email="owner@demo.test",
                         owner_password="demo-owner")
    db.session.commit()
    batch = 2000
    for start in range(1, shops, batch):
        ids = range(start, min(start + batch, shops))
        rows = db.session.execute(
            insert(Tenant).returning(Tenant.id, Tenant.slug),
            [{"slug": f"shop{i:05d}", "name": f"Shop {i}", "settings": {}} for i in ids],
        ).all()
        db.session.execute(insert(Domain), [
            {"host": f"{slug}.localhost", "tenant_id": tid, "kind": "subdomain", "verified": True}
            for tid, slug in rows
        ])
        with platform_scope():
            db.session.execute(insert(StaffUser), [
                {"tenant_id": tid, "email": f"owner@{slug}.test", "password_hash": "x",
                 "session_token": "0" * 32, "role": "owner", "name": ""}
                for tid, slug in rows
            ])
        db.session.commit()
print("seeded", shops)
"""


def env_for(db_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    env.update(
        {
            "DATABASE_URL": db_url,
            "KAMENG_ENV": "development",
            "ENCRYPTION_KEYS": "3Yh0Fz0r2bq3oBq1vJm7cC1cJ0mJ8m6B0S1nW2e5xqY=",
            "SECRET_KEY": "bench-" + "x" * 40,
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_KIB": "64",
        }
    )
    return env


def prepare(kind: str, workdir: Path, shops: int) -> str:
    url = make_database(kind, workdir, f"s{shops}")
    env = env_for(url)
    subprocess.run(
        [PY, "-m", "kameng", "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True
    )
    t0 = time.perf_counter()
    subprocess.run([PY, "-c", SEED, str(shops)], env=env, cwd=ROOT, check=True)
    print(f"  {shops:>6} shops seeded in {time.perf_counter() - t0:.1f}s", flush=True)
    return url


class Server:
    def __init__(self, db_url: str, workers: int):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                PY,
                "-m",
                "gunicorn",
                "-w",
                str(workers),
                "-b",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
                "kameng:create_app()",
            ],
            env=env_for(db_url),
            cwd=ROOT,
            start_new_session=True,
        )
        wait_for_port(self.port, what="gunicorn", proc=self.proc)

    def stop(self):
        stop_group(self.proc)


ROTATE_LUA = """
local n = 0
request = function()
  n = n + 1
  local host = string.format("shop%05d.localhost", (n % {count}) + 1)
  return wrk.format("GET", "/", {{["Host"] = host}})
end
"""


def wrk(port: int, duration: int, connections: int, host: str | None, lua: Path | None) -> float:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s"]
    if host:
        cmd += ["-H", f"Host: {host}"]
    if lua:
        cmd += ["-s", str(lua)]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True
    ).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"errors during load: {non2xx.group(0)}\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--shops", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench needs wrk (apt-get install wrk)")

    workdir = Path(tempfile.mkdtemp(prefix="kameng-bench-"))
    lua = workdir / "rotate.lua"
    lua.write_text(ROTATE_LUA.format(count=min(1000, args.shops - 1)))
    print(
        f"tenancy bench on {args.db}: gunicorn -w {args.workers}, wrk -c{args.connections}, "
        f"{args.duration}s x {args.rounds} rounds",
        flush=True,
    )
    urls = {1: prepare(args.db, workdir, 1), args.shops: prepare(args.db, workdir, args.shops)}
    results: dict[tuple[int, str], list[float]] = {}
    try:
        for round_no in range(args.rounds):
            for shops, url in urls.items():
                server = Server(url, args.workers)
                try:
                    wrk(server.port, 2, args.connections, "demo.localhost", None)  # warm up
                    same = wrk(server.port, args.duration, args.connections, "demo.localhost", None)
                    results.setdefault((shops, "same shop"), []).append(same)
                    if shops > 1:
                        many = wrk(server.port, args.duration, args.connections, None, lua)
                        results.setdefault((shops, "many shops"), []).append(many)
                finally:
                    server.stop()
                print(
                    f"  round {round_no + 1}: {shops:>6} shops  same-shop {same:8.1f} req/s"
                    + (f"   1,000-shop rotation {many:8.1f} req/s" if shops > 1 else ""),
                    flush=True,
                )
    finally:
        for url in urls.values():
            drop_database(url)
        shutil.rmtree(workdir, ignore_errors=True)

    base = statistics.median(results[(1, "same shop")])
    print("\n| database | shops in DB | page | req/s (median) | ratio to 1 shop |")
    print("|---|---|---|---|---|")
    for (shops, page), values in sorted(results.items()):
        value = statistics.median(values)
        print(f"| {args.db} | {shops:,} | {page} | {value:.1f} | {value / base:.2f}x |")
    ratio = statistics.median(results[(args.shops, "same shop")]) / base
    print(
        f"\nsame-shop ratio {args.shops:,} shops / 1 shop = {ratio:.2f}x (target >= 0.90): "
        + ("PASS" if ratio >= 0.9 else "FAIL")
    )


if __name__ == "__main__":
    main()
