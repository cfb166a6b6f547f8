"""Kameng under faults: 5 minutes of the bench/load.py user mix while things break, then checks.

On the deployment of bench/stack.py (its own PostgreSQL and Redis, gunicorn, two `kameng
worker`s; 20 shops, 1,000 products, 200,000 codes), during --seconds of mixed load:

  - every 30 s one worker is killed with SIGKILL, alternately a `kameng worker` (a supervisor
    starts it again at once, as systemd's Restart=always would) and a gunicorn worker (its
    master forks a new one);
  - Redis is killed (SIGKILL) and started again once, a third of the way in (append-only file);
  - PostgreSQL is stopped in immediate mode (a crash: recovery replays the WAL) and started
    again once, two thirds of the way in;
  - every payment notification is sent twice (the same signed bytes, 0-3 s apart), and a
    notification that fails (e.g. while PostgreSQL is down) is retried, as gateways do.

Then, once no order is left paid but undelivered (or --settle seconds pass), straight from the
database: every paid order delivered exactly once; no code sold twice (sold codes = delivered
card units, one line each); no code lost (every imported code decrypts to one of the texts the
seed imported, none missing, none extra, each in a state that matches its order);
`kameng ledger check` passes; the orders that needed staff are zero, or each one's timeline
says why. Figures are printed as ratios to their baselines (paid orders, imported codes).

    .venv/bin/python bench/faults.py [--seconds 300] [--small]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

from load import buyer_sessions, delivery_lags, lookup_orders, percentile, run_mix, table
from stack import PY, ROOT, Stack, code_text

CODES_CHECK = r"""
import json, sys
from sqlalchemy import text
from kameng import create_app
from kameng.extensions import db
from kameng.security.crypto import keyring
from kameng.tenants.scoping import platform_scope
app = create_app()
with app.app_context(), platform_scope():
    ring = keyring()
    rows = db.session.execute(text(
        "SELECT c.id, c.ciphertext, c.status, c.order_id, c.order_line_id, o.status "
        "FROM card_codes c LEFT JOIN orders o ON o.id = c.order_id"))
    out = [[i, ring.decrypt(bytes(blob)), s, oid, lid, os] for i, blob, s, oid, lid, os in rows]
json.dump(out, sys.stdout)
"""


class Faults(threading.Thread):
    """The fault schedule, run beside the load."""

    def __init__(self, stack: Stack, web, rq_workers: list, seconds: float, every: float = 30):
        super().__init__(daemon=True)
        self.stack, self.web, self.rq_workers = stack, web, rq_workers
        self.seconds, self.every = seconds, every
        self.log: list[str] = []
        self.counts = {"rq worker SIGKILL": 0, "gunicorn worker SIGKILL": 0,
                       "redis restart": 0, "postgresql restart": 0}

    def note(self, began: float, text: str) -> None:
        line = f"t={time.time() - began:5.0f}s {text}"
        self.log.append(line)
        print("  fault: " + line, flush=True)

    def run(self) -> None:
        began = time.time()
        redis_at, pg_at = self.seconds / 3 + 5, 2 * self.seconds / 3 + 5
        kills = 0
        next_kill = began + self.every
        while time.time() < began + self.seconds - 5:
            now = time.time()
            if redis_at is not None and now - began >= redis_at:
                down = self.stack.redis.restart(signal.SIGKILL)
                self.counts["redis restart"] += 1
                self.note(began, f"redis-server killed (SIGKILL) and started ({down:.1f} s)")
                redis_at = None
            if pg_at is not None and now - began >= pg_at:
                down = self.stack.pg.restart("immediate")
                self.counts["postgresql restart"] += 1
                self.note(began, f"PostgreSQL stopped in immediate mode and started "
                                 f"({down:.1f} s down)")
                pg_at = None
            if now >= next_kill:
                kills += 1
                next_kill += self.every
                if kills % 2:
                    worker = random.choice(self.rq_workers)
                    worker.kill()
                    worker.start()
                    self.counts["rq worker SIGKILL"] += 1
                    self.note(began, f"kameng worker pid {worker.proc.pid} restarted after "
                                     "SIGKILL")
                else:
                    pids = self.web.worker_pids()
                    if pids:
                        victim = random.choice(pids)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(victim, signal.SIGKILL)
                        self.counts["gunicorn worker SIGKILL"] += 1
                        self.note(began, f"gunicorn worker pid {victim} SIGKILL")
            time.sleep(0.2)


def settle(stack: Stack, seconds: float) -> tuple[int, float]:
    """Wait until no order is paid-but-undelivered; (left over, seconds waited)."""
    began = time.time()
    left = -1
    while time.time() - began < seconds:
        left = stack.sql("SELECT count(*) FROM orders WHERE status IN ('paid', 'delivering')")[0][0]
        queued = stack.sql("SELECT count(*) FROM outbox WHERE processed_at IS NULL")[0][0]
        if left == 0 and queued == 0:
            break
        time.sleep(2)
    return left, time.time() - began


def checks(stack: Stack) -> list[tuple[str, bool, str]]:
    results = []
    # 1. every paid order delivered exactly once
    paid = stack.sql("SELECT count(*) FROM orders WHERE paid_at IS NOT NULL")[0][0]
    delivered = stack.sql("SELECT count(*) FROM orders WHERE paid_at IS NOT NULL "
                          "AND status = 'delivered'")[0][0]
    other = stack.sql("SELECT status, count(*) FROM orders WHERE paid_at IS NOT NULL "
                      "AND status <> 'delivered' GROUP BY status")
    twice = stack.sql("SELECT count(*) FROM (SELECT order_id FROM order_events WHERE "
                      "to_status = 'delivered' GROUP BY order_id HAVING count(*) > 1) t")[0][0]
    payments = stack.sql("SELECT count(*) FROM (SELECT order_id FROM payments WHERE "
                         "status = 'succeeded' GROUP BY order_id HAVING count(*) > 1) t")[0][0]
    results.append((
        "every paid order delivered exactly once",
        paid > 0 and delivered == paid and twice == 0 and payments == 0,
        f"{delivered}/{paid} paid orders delivered ({delivered / max(paid, 1):.4f}x); "
        f"not delivered by status: {dict(other) or 'none'}; orders delivered twice: {twice}; "
        f"orders with two succeeded payments: {payments}"))

    # 2. no code sold twice: sold codes = delivered card units, each code on one line
    sold = stack.sql("SELECT count(*) FROM card_codes WHERE status = 'sold'")[0][0]
    units = stack.sql("SELECT coalesce(sum(l.qty), 0) FROM order_lines l JOIN orders o "
                      "ON o.id = l.order_id WHERE o.status = 'delivered' "
                      "AND l.delivery_kind = 'card'")[0][0]
    mismatched = stack.sql(
        "SELECT count(*) FROM order_lines l JOIN orders o ON o.id = l.order_id "
        "WHERE o.status = 'delivered' AND l.delivery_kind = 'card' AND l.qty <> "
        "(SELECT count(*) FROM card_codes c WHERE c.order_line_id = l.id "
        "AND c.status = 'sold')")[0][0]
    results.append((
        "no code sold twice", sold == units and mismatched == 0,
        f"{sold} codes sold for {units} delivered card units ({sold / max(units, 1):.4f}x); "
        f"lines whose sold codes differ from their quantity: {mismatched}"))

    # 3. no code lost: decrypt every code and compare with the texts the seed imported
    done = subprocess.run([PY, "-c", CODES_CHECK], env=stack.env, cwd=ROOT, check=True,
                          capture_output=True, text=True)
    rows = json.loads(done.stdout)
    per_product = stack.codes // stack.products
    expected = {code_text(s, p, n) for s in range(stack.shops)
                for p in range(stack.products // stack.shops) for n in range(per_product)}
    texts = [r[1] for r in rows]
    found = set(texts)
    bad_state = sum(1 for _, _, status, order_id, line_id, order_status in rows
                    if (status == "sold" and (order_status != "delivered" or line_id is None))
                    or (status == "reserved" and order_status != "pending")
                    or (status == "available" and order_id is not None))
    results.append((
        "no code lost (nor duplicated)",
        found == expected and len(texts) == len(expected) and bad_state == 0,
        f"{len(found & expected)}/{len(expected)} imported codes present "
        f"({len(found & expected) / len(expected):.4f}x), {len(expected - found)} missing, "
        f"{len(found - expected)} unknown, {len(texts) - len(found)} duplicated, "
        f"{bad_state} in a state that does not match their order"))

    # 4. the ledger
    ledger = stack.cli("ledger", "check", check=False)
    results.append(("`kameng ledger check` passes", ledger.returncode == 0,
                    (ledger.stdout or ledger.stderr).strip().splitlines()[-1]))

    # 5. orders that needed staff: none, or each explained in its timeline
    staff = stack.sql("SELECT o.id, o.number, o.status, o.staff_reason, "
                      "(SELECT string_agg(coalesce(e.from_status, '') || '->' || "
                      "coalesce(e.to_status, '') || ' ' || e.note, ' | ' ORDER BY e.id) "
                      "FROM order_events e WHERE e.order_id = o.id) "
                      "FROM orders o WHERE o.needs_staff")
    unexplained = [row for row in staff if not (row[3] or "").strip() or not row[4]]
    detail = f"{len(staff)} orders needed staff"
    if staff:
        detail += "; " + "; ".join(f"{r[1]} ({r[2]}): {r[3]} — timeline: {r[4]}"
                                   for r in staff[:5])
    results.append(("orders that needed staff: zero or each explained", not unexplained, detail))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--think", default="5-15", help="think time per request, seconds: a-b")
    parser.add_argument("--web", default="4:sync", help="gunicorn workers:class[:threads]")
    parser.add_argument("--settle", type=float, default=300,
                        help="seconds to wait for the last deliveries after the load")
    parser.add_argument("--small", action="store_true", help="2 shops, 40 products, 8k codes")
    args = parser.parse_args()
    think = tuple(float(x) for x in args.think.split("-"))
    sizes = ({"shops": 2, "products": 40, "codes": 8_000} if args.small
             else {"shops": 20, "products": 1000, "codes": 200_000})
    stack = Stack(**sizes)
    try:
        stack.up()
        work = stack.workdir
        print(f"stack up in {stack.seconds_up:.0f} s (seed {stack.seconds_to_seed:.0f} s): "
              f"{sizes['shops']} shops, {sizes['products']} products, {sizes['codes']:,} codes",
              flush=True)
        rq_workers = stack.workers(2)
        workers, kind, *threads = args.web.split(":")
        web = stack.web(int(workers), kind, int(threads[0]) if threads else 1)
        shops = buyer_sessions(web.port, stack.seeded)
        _, warm = run_mix(stack, web.port, shops, 10, (0.5, 1.5), {"checkout": 100}, work,
                          tag="warm")
        delivery_lags(stack, warm.sent, wait=60)
        lookup_orders(stack, shops)
        users = args.users
        groups = {"home": users * 24 // 100, "category": users * 16 // 100,
                  "product": users * 40 // 100, "checkout": users * 15 // 100,
                  "lookup": users * 5 // 100}
        faults = Faults(stack, web, rq_workers, args.seconds)
        faults.start()
        results, notifier = run_mix(stack, web.port, shops, args.seconds, think, groups, work,
                                    copies=2, tag="faults")
        faults.join()
        left, waited = settle(stack, args.settle)
        lags, missing = delivery_lags(stack, notifier.sent, wait=10)
        outcome = checks(stack)

        lines = [f"{users} users for {args.seconds:.0f} s (think {args.think} s), gunicorn "
                 f"{web.setting}, 2 kameng workers; faults: "
                 + ", ".join(f"{k} x{v}" for k, v in faults.counts.items()), ""]
        for r in results:
            r["users"] = groups[r["name"]]
        ms = [v * 1000 for v in notifier.latencies]
        results.append({"name": "notify (each sent twice)", "users": "",
                        "requests": 2 * len(ms), "rps": 2 * len(ms) / args.seconds,
                        "p50": percentile(ms, 50) * 1000, "p95": percentile(ms, 95) * 1000,
                        "p99": percentile(ms, 99) * 1000, "max": max(ms, default=0) * 1000,
                        "errors": len(notifier.failures)})
        lines += table(results)
        lines += ["", "(errors during faults are expected and recorded: requests cut off by a "
                  "killed gunicorn worker, refused while PostgreSQL restarts; failed "
                  "notifications were retried by the notifier)", ""]
        if lags:
            lines += [f"delivery lag, notification -> delivered_at: p50 "
                      f"{percentile(lags, 50) * 1000:.0f} ms, p99 "
                      f"{percentile(lags, 99) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms "
                      f"({len(lags)} orders; {missing} not delivered); after the load "
                      f"{waited:.0f} s to settle, {left} left paid-but-undelivered", ""]
        lines += ["| check | result | figures |", "|---|---|---|"]
        lines += [f"| {name} | {'PASS' if ok else 'FAIL'} | {detail} |"
                  for name, ok, detail in outcome]
        lines += ["", "fault log:"] + [f"    {line}" for line in faults.log]
        print("\n" + "\n".join(lines))
        sys.exit(0 if all(ok for _, ok, _ in outcome) else 1)
    finally:
        stack.down()


if __name__ == "__main__":
    main()
