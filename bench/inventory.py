"""Importing 1,000,000 card codes: Kameng's import vs a plain COPY of the same strings.

Both run in their own process against a fresh PostgreSQL database, same run:
  - kameng: `kameng codes import --tenant bench --product ID codes.txt` — the real command:
    read, trim, fingerprint, encrypt, COPY into a staging table, INSERT … ON CONFLICT;
  - baseline: the same 1,000,000 plaintext strings COPYed (binary, psycopg) into a table of the
    same shape as `card_codes` (`LIKE card_codes INCLUDING ALL` plus the same two foreign keys:
    same columns, defaults, constraints, indexes), the plaintext standing in for ciphertext and
    fingerprint.
Targets: kameng <= 60 s, peak memory <= 300 MB, time <= 3x the baseline.

    .venv/bin/python bench/inventory.py [--codes 1000000]
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PG_SERVER = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

SETUP = r"""
import sys
from kameng import create_app
from kameng.extensions import db
from kameng.catalog.service import create_product
from kameng.tenants.scoping import tenant_scope
from kameng.tenants.service import create_tenant
app = create_app()
with app.app_context():
    tenant = create_tenant(slug="bench", name="Bench", owner_email="o@bench.test",
                           owner_password="bench-owner")
    with tenant_scope(tenant.id):
        product = create_product(tenant, name="Bench card", price=100, delivery_kind="card")
    db.session.commit()
    print(tenant.id, product.id)
"""

BASELINE = r"""
import sys, time, psycopg
url, path, tenant_id, product_id = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with_keys = sys.argv[5] == "keys"
with psycopg.connect(url) as conn:
    # Same columns, defaults, checks and indexes (LIKE … INCLUDING ALL); with "keys" also the
    # same foreign key as card_codes (LIKE does not copy those), so only Kameng's work differs.
    conn.execute("DROP TABLE IF EXISTS baseline_codes")
    conn.execute("CREATE TABLE baseline_codes (LIKE card_codes INCLUDING ALL)")
    if with_keys:
        conn.execute("ALTER TABLE baseline_codes ADD FOREIGN KEY (tenant_id, product_id) "
                     "REFERENCES products (tenant_id, id)")
    conn.commit()
    start = time.perf_counter()
    with conn.cursor() as cur, cur.copy(
        "COPY baseline_codes (tenant_id, product_id, ciphertext, fingerprint, status) "
        "FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int4", "int4", "bytea", "bytea", "text"])
        with open(path, "rb") as handle:
            for line in handle:
                code = line.strip()
                copy.write_row((tenant_id, product_id, code, code, "available"))
    conn.commit()
    print(f"{time.perf_counter() - start:.3f}")
"""


def env_for(db_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update({
        "DATABASE_URL": db_url, "KAMENG_ENV": "development",
        "ENCRYPTION_KEYS": "3Yh0Fz0r2bq3oBq1vJm7cC1cJ0mJ8m6B0S1nW2e5xqY=",
        "SECRET_KEY": "bench-" + "x" * 40, "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "64",
    })
    return env


# Runs a command and reports its own peak RSS (a fresh parent, so nothing else is counted).
MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:])\n"
    "sys.stderr.write('\\nmaxrss=%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(done.returncode)\n"
)


def run_measured(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of a child process."""
    start = time.perf_counter()
    done = subprocess.run([PY, "-c", MEASURE, *cmd], env=env, cwd=ROOT, capture_output=True,
                          text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed:\n{done.stdout}\n{done.stderr}")
    peak_kb = int(done.stderr.rsplit("maxrss=", 1)[1].split()[0])
    return elapsed, peak_kb / 1024, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--codes", type=int, default=1_000_000)
    args = parser.parse_args()
    import psycopg

    name = f"kameng_bench_inv_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_SERVER.rsplit("/", 1)[0] + "/" + name
    env = env_for(url)
    workdir = Path(tempfile.mkdtemp(prefix="kameng-inv-"))
    try:
        subprocess.run([PY, "-m", "kameng", "db", "upgrade"], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        tenant_id, product_id = subprocess.run(
            [PY, "-c", SETUP], env=env, cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout.split()
        path = workdir / "codes.txt"
        with path.open("w") as handle:
            for _ in range(args.codes):
                handle.write(f"CARD-{secrets.token_hex(8).upper()}-{secrets.token_hex(4)}\n")
        size_mb = path.stat().st_size / 1e6
        print(f"{args.codes:,} codes, {size_mb:.1f} MB file, PostgreSQL database {name}",
              flush=True)

        base_wall, base_rss, base_out = run_measured(
            [PY, "-c", BASELINE, url, str(path), tenant_id, product_id, "keys"], env)
        print(f"baseline COPY, same shape: {float(base_out):.2f} s inside COPY "
              f"({base_wall:.2f} s process), peak {base_rss:.0f} MB", flush=True)
        bare_wall, _, bare_out = run_measured(
            [PY, "-c", BASELINE, url, str(path), tenant_id, product_id, "bare"], env)
        print(f"baseline COPY, no foreign key: {float(bare_out):.2f} s inside COPY "
              f"({bare_wall:.2f} s process)", flush=True)

        wall, rss, out = run_measured(
            [PY, "-m", "kameng", "codes", "import", "--tenant", "bench", "--product", product_id,
             str(path)], env)
        print(f"kameng import: {wall:.2f} s process (app start included), peak {rss:.0f} MB")
        print("  " + out.strip().splitlines()[-1])

        again, _, out2 = run_measured(
            [PY, "-m", "kameng", "codes", "import", "--tenant", "bench", "--product", product_id,
             str(path)], env)
        print(f"re-import of the same file: {again:.2f} s — {out2.strip().splitlines()[-1]}")

        with psycopg.connect(url) as conn:
            stored = conn.execute("SELECT count(*) FROM card_codes").fetchone()[0]
            sample = conn.execute("SELECT ciphertext FROM card_codes LIMIT 1").fetchone()[0]
        first_code = path.open().readline().strip().encode()
        assert stored == args.codes, stored
        assert first_code not in bytes(sample), "plaintext in the table"

        ratio = wall / base_wall
        print()
        print("| measure | kameng import | baseline COPY | ratio | target |")
        print("|---|---|---|---|---|")
        print(f"| wall time, {args.codes:,} codes | {wall:.1f} s | {base_wall:.1f} s | "
              f"{ratio:.2f}x | <= 60 s and <= 3x |")
        print(f"| same, vs a COPY without the foreign key | {wall:.1f} s | {bare_wall:.1f} s | "
              f"{wall / bare_wall:.2f}x | (stricter reading) |")
        print(f"| peak memory (RSS) | {rss:.0f} MB | {base_rss:.0f} MB | | <= 300 MB |")
        print(f"| re-import, all duplicates | {again:.1f} s | | | |")
        ok = wall <= 60 and ratio <= 3 and wall / bare_wall <= 3 and rss <= 300
        print(f"\n{'PASS' if ok else 'FAIL'}: {wall:.1f} s, {ratio:.2f}x baseline, {rss:.0f} MB")
    finally:
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for child in workdir.iterdir():
            child.unlink()
        workdir.rmdir()


if __name__ == "__main__":
    main()
