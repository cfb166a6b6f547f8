"""Kameng under 1,000 concurrent users, vs a bare Flask hello-world on the same gunicorn setting.

One run, on loopback, on the deployment of bench/stack.py (its own PostgreSQL and Redis, two
`kameng worker`s, gunicorn behind nginx, KAMENG_ENV=production) seeded with 20 shops, 1,000
products and 200,000 card codes:

  1. worker setting: short closed-loop runs of the users' mix (browsing and checkout, with
     their notifications) under a few gunicorn settings; the best is kept from then on;
  2. ceiling: the browsing mix (closed loop, --capacity-connections) against Kameng, and the
     same wrk against a bare Flask hello-world on the same gunicorn setting behind nginx;
  3. 1,000 users, each a wrk connection that waits a think time (--think, seconds, uniform)
     before every request: 80% browse (home 240, category 160, product 400), 15% check out
     (POST checkout, which starts a sandbox payment; a notifier then sends the signed sandbox
     notification, as the gateway would) and 5% look up an order (POST lookup by number and
     e-mail, then GET the order page). Per page: requests, throughput, p50/p95/p99, errors;
     per paid order: notification sent -> delivered_at (delivery lag). Then the statements and
     tables where the database spent its time (pg_stat_statements, sequential scans).

Each wrk thread of the checkout and lookup groups works for one shop (wrk cannot tell which
connection a response belongs to, so a thread's follow-up request must not need to know).

    .venv/bin/python bench/load.py [--seconds 60] [--think 5-15] [--small]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stack import Gunicorn, Proxy, Stack

TOKEN_RE = re.compile(rb'name="csrf_token" type="hidden" value="([^"]+)"')
HELLO_APP = '''
from flask import Flask
app = Flask(__name__)

@app.get("/")
@app.get("/<path:anything>")
def hello(anything=""):
    return "Hello, World!"
'''

# -- wrk scripts ----------------------------------------------------------------------------------

LUA = r"""
local shops = %(shops)s
local role = "%(role)s"
local think_min, think_max = %(think_min)d, %(think_max)d
local refs_path = "%(refs)s"
local queue, shop, out = {}, nil, nil
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("index", counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + (index or 0))
  if index and (role == "checkout" or role == "lookup") then
    shop = shops[(index - 1) %% #shops + 1]
  end
  if refs_path ~= "" then out = io.open(refs_path .. "." .. (index or 0), "a") end
end

local function pick(t) return t[math.random(#t)] end

local function headers(s)
  return {["Host"] = s.host, ["X-Forwarded-For"] = string.format("10.%%d.%%d.%%d",
          math.random(0, 255), math.random(0, 255), math.random(1, 254))}
end

if think_max > 0 then
  function delay() return math.random(think_min, think_max) end
end

function request()
  local step = table.remove(queue, 1)
  if step then return step end
  local s = shop or pick(shops)
  local h = headers(s)
  local page = role
  if role == "browse" then
    local r = math.random(10)
    page = (r <= 3 and "home") or (r <= 5 and "category") or "product"
  end
  if page == "home" then return wrk.format("GET", "/", h) end
  if page == "category" then return wrk.format("GET", "/category/" .. pick(s.categories), h) end
  if page == "product" then return wrk.format("GET", "/product/" .. pick(s.products), h) end
  h["Cookie"] = s.cookie
  h["Content-Type"] = "application/x-www-form-urlencoded"
  if page == "checkout" then
    local body = "csrf_token=" .. s.csrf .. "&qty=1&payment_method=sandbox&email=b" ..
                 math.random(1, 1000000000) .. "%%40buyer.test"
    return wrk.format("POST", "/product/" .. pick(s.products) .. "/checkout", h, body)
  end
  local o = pick(s.orders)
  return wrk.format("POST", "/orders/lookup", h, "csrf_token=" .. s.csrf .. "&number=" ..
                    o[1] .. "&email=" .. o[2])
end

function response(status, hdrs, body)
  if status ~= 302 or shop == nil then return end
  local location = hdrs["Location"] or hdrs["location"] or ""
  location = string.gsub(location, "^https?://[^/]+", "")
  local h = headers(shop)
  if role == "checkout" then
    local reference = string.match(location, "/pay/sandbox/([^?/]+)")
    if reference then
      out:write(shop.id .. " " .. reference .. "\n")
      out:flush()
    elseif string.match(location, "/pay$") then
      table.insert(queue, wrk.format("GET", location, h))
    end
  elseif role == "lookup" and string.match(location, "^/orders/") then
    local cookie = hdrs["Set-Cookie"] or hdrs["set-cookie"]
    h["Cookie"] = cookie and string.match(cookie, "^[^;]+") or shop.cookie
    table.insert(queue, wrk.format("GET", location, h))
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write("WRK-JSON " .. string.format(
    '{"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "p50": %%d, "p95": %%d, "p99": %%d, "max": %%d}',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max) .. "\n")
end
"""


def lua_value(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {lua_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(lua_value(v) for v in value) + "}"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def write_lua(path: Path, role: str, shops: list[dict], think: tuple[float, float],
              refs: Path | None = None) -> Path:
    path.write_text(LUA % {"shops": lua_value(shops), "role": role,
                           "think_min": int(think[0] * 1000), "think_max": int(think[1] * 1000),
                           "refs": str(refs) if refs else ""})
    return path


class Wrk:
    """One wrk process; `result()` waits for it and returns its figures."""

    def __init__(self, name: str, port: int, script: Path, connections: int, seconds: float,
                 threads: int = 1, timeout: int = 30):
        self.name, self.connections = name, connections
        self.proc = subprocess.Popen(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s",
             f"--timeout={timeout}s", "-s", str(script), f"http://127.0.0.1:{port}/"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self) -> dict:
        out, _ = self.proc.communicate()
        line = next((x for x in out.splitlines() if x.startswith("WRK-JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk {self.name} printed no result:\n{out}")
        figures = json.loads(line[len("WRK-JSON "):])
        figures["name"] = self.name
        figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
        figures["errors"] = sum(figures[k] for k in ("connect", "read", "write", "status",
                                                     "timeout"))
        return figures


# -- buyers' sessions, the gateway's notifications -----------------------------------------------


def call(port: int, method: str, path: str, host: str, body: bytes = b"",
         headers: dict | None = None, timeout: float = 60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def buyer_sessions(port: int, seeded: list[dict]) -> list[dict]:
    """Per shop: a session cookie and its CSRF token (as a browser gets from the order lookup
    page; a product page gives a visitor without a session neither)."""
    shops = []
    for shop in seeded:
        _, headers, page = call(port, "GET", "/orders/lookup", shop["host"])
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        shops.append({"id": shop["id"], "host": shop["host"], "cookie": cookie,
                      "csrf": TOKEN_RE.search(page).group(1).decode(),
                      "products": shop["products"], "categories": shop["categories"]})
    return shops


class Notifier:
    """The sandbox gateway's side: reads the payment references the checkout wrk wrote and sends
    each one's signed notification (`copies` times: the same bytes again a little later)."""

    def __init__(self, stack: Stack, port: int, refs: Path, copies: int = 1, senders: int = 16):
        self.stack, self.port, self.refs, self.copies = stack, port, refs, copies
        self.secrets = {s["id"]: (s["host"], s["secret"]) for s in stack.seeded}
        self.sent: dict[str, float] = {}  # reference -> wall time of the first copy
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.pool = ThreadPoolExecutor(senders)
        self.stopping = threading.Event()
        self.offsets: dict[Path, int] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _new_lines(self) -> tuple[list[tuple[int, str]], dict]:
        """Complete lines not read yet, and the file offsets to move to once handled."""
        lines, offsets = [], dict(self.offsets)
        for path in sorted(self.refs.parent.glob(self.refs.name + ".*")):
            with path.open() as f:
                f.seek(offsets.get(path, 0))
                data = f.read()
                complete = data[:data.rfind("\n") + 1]
                offsets[path] = offsets.get(path, 0) + len(complete.encode())
            for line in complete.splitlines():
                tenant, reference = line.split()
                lines.append((int(tenant), reference))
        return lines, offsets

    def _run(self) -> None:
        while True:
            stopping = self.stopping.is_set()
            try:
                lines, offsets = self._new_lines()
                if lines:
                    rows = self.stack.sql("SELECT reference, amount, currency FROM payments "
                                          "WHERE reference = ANY(%s)", [r for _, r in lines])
                    amounts = {r: (a, c) for r, a, c in rows}
                    for tenant, reference in lines:
                        if reference in amounts:
                            self.pool.submit(self._notify, tenant, reference,
                                             *amounts[reference])
                        else:
                            self.failures.append(f"{reference}: no payment row")
                self.offsets = offsets  # handled: read on from here
            except Exception as error:  # the database may be restarting: try again
                self.failures.append(f"notifier: {error}")
                time.sleep(1)
                continue
            if stopping:
                return
            time.sleep(0.2)

    def _notify(self, tenant: int, reference: str, amount: int, currency: str) -> None:
        host, secret = self.secrets[tenant]
        body = json.dumps({"event_id": f"evt_{secrets.token_hex(8)}", "reference": reference,
                           "tenant_id": tenant, "status": "succeeded", "amount": amount,
                           "currency": currency}, separators=(",", ":")).encode()
        stamp = int(time.time())
        signature = hmac.new(secret.encode(), f"{stamp}.".encode() + body,
                             hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json",
                   "X-Sandbox-Signature": f"t={stamp},v1={signature}"}
        for copy in range(self.copies):
            if copy:
                time.sleep(random.uniform(0, 3))
            for attempt in range(20):  # a gateway retries until it is answered 2xx
                began, wall = time.perf_counter(), time.time()
                try:
                    status, _, answer = call(self.port, "POST", "/pay/notify/sandbox", host,
                                             body, headers, timeout=30)
                except OSError as error:
                    status, answer = -1, str(error).encode()
                if status == 200:
                    if copy == 0:
                        self.sent[reference] = wall
                        self.latencies.append(time.perf_counter() - began)
                    break
                self.failures.append(f"{reference}: HTTP {status} {answer[:80]!r}")
                time.sleep(min(2 ** attempt * 0.2, 5))

    def finish(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.pool.shutdown(wait=True)


def delivery_lags(stack: Stack, sent: dict[str, float], wait: float = 120) -> tuple[list, int]:
    """Seconds from each notification to its order's delivered_at; and how many are missing."""
    deadline, done = time.time() + wait, {}
    while time.time() < deadline:
        rows = stack.sql("SELECT p.reference, extract(epoch FROM o.delivered_at) FROM payments p "
                         "JOIN orders o ON o.id = p.order_id WHERE p.reference = ANY(%s) "
                         "AND o.delivered_at IS NOT NULL", list(sent))
        done = {r: float(e) for r, e in rows}
        if len(done) == len(sent):
            break
        time.sleep(1)
    return [done[r] - sent[r] for r in sent if r in done], len(sent) - len(done)


def percentile(values: list[float], q: int) -> float:
    if len(values) < 3:
        return max(values) if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# -- the run --------------------------------------------------------------------------------------


def run_mix(stack: Stack, port: int, shops: list[dict], seconds: float, think: tuple,
            groups: dict[str, int], work: Path, copies: int = 1, tag: str = "mix"):
    """Run the user mix once: (per-page wrk figures, notifier)."""
    refs = work / f"refs-{tag}"
    notifier = Notifier(stack, port, refs, copies=copies)
    runs = []
    for role, connections in groups.items():
        if not connections:
            continue
        if role in ("checkout", "lookup"):
            per = 5 if role == "checkout" else 2
            threads = max(1, connections // per)
            connections = threads * per
        else:
            threads = 1
        script = write_lua(work / f"{tag}-{role}.lua", role, shops, think,
                           refs if role == "checkout" else None)
        runs.append(Wrk(role, port, script, connections, seconds, threads=threads))
    results = [run.result() for run in runs]
    notifier.finish()
    return results, notifier


def lookup_orders(stack: Stack, shops: list[dict]) -> None:
    """Give each shop's lookup group some real (number, e-mail) pairs of paid orders."""
    rows = stack.sql("SELECT tenant_id, number, email FROM orders WHERE status = 'delivered'")
    by_shop: dict[int, list] = {}
    for tenant, number, email in rows:
        by_shop.setdefault(tenant, []).append([number, email.replace("@", "%40")])
    for shop in shops:
        shop["orders"] = by_shop.get(shop["id"], [])[:50]
        if not shop["orders"]:
            raise RuntimeError(f"no delivered order to look up in {shop['host']}")


def table(results: list[dict]) -> list[str]:
    lines = ["| page | users | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r.get('users', '')} | {r['requests']} | {r['rps']:.1f} | "
                     f"{r['p50'] / 1000:.0f} | {r['p95'] / 1000:.0f} | {r['p99'] / 1000:.0f} | "
                     f"{r['max'] / 1000:.0f} | {r['errors']} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="length of the 1,000-user run")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--think", default="5-15", help="think time per request, seconds: a-b")
    parser.add_argument("--probe-seconds", type=float, default=8)
    parser.add_argument("--warm-seconds", type=float, default=8)
    parser.add_argument("--capacity-connections", type=int, default=64)
    parser.add_argument("--settings", default="2:sync,4:sync,8:sync,4:gthread:4",
                        help="gunicorn settings to probe: workers:class[:threads],...")
    parser.add_argument("--small", action="store_true", help="2 shops, 40 products, 8k codes")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/load.py needs wrk (apt-get install wrk)")
    think = tuple(float(x) for x in args.think.split("-"))
    sizes = ({"shops": 2, "products": 40, "codes": 8_000} if args.small
             else {"shops": 20, "products": 1000, "codes": 200_000})
    stack = Stack(**sizes)
    report: list[str] = []
    try:
        stack.up()
        work = stack.workdir
        print(f"stack up in {stack.seconds_up:.0f} s (seed {stack.seconds_to_seed:.0f} s): "
              f"{sizes['shops']} shops, {sizes['products']} products, {sizes['codes']:,} codes",
              flush=True)
        stack.workers(2)
        (work / "hello_app.py").write_text(HELLO_APP)

        # 1. the gunicorn setting ----------------------------------------------------------------
        probes = []
        for spec in args.settings.split(","):
            workers, kind, *threads = spec.split(":")
            web = stack.web(int(workers), kind, int(threads[0]) if threads else 1)
            shops = buyer_sessions(web.port, stack.seeded)
            # The probe is the users' mix without think time (browsing and checkout, with
            # their notifications), so the setting is chosen for the whole workload, whose
            # checkout waits on commits. A fresh worker's first requests import the payment
            # gateways and compile the templates (about a second each): warm every worker.
            n = args.capacity_connections
            mix = {"browse": n - n * 15 // 100, "checkout": n * 15 // 100}
            run_mix(stack, web.port, shops, args.warm_seconds, (0, 0), mix, work, tag="pwarm")
            ran, _ = run_mix(stack, web.port, shops, args.probe_seconds, (0, 0), mix, work,
                             tag=f"probe{len(probes)}")
            stack.stop(web)
            rps, errors = sum(r["rps"] for r in ran), sum(r["errors"] for r in ran)
            p99 = max(r["p99"] for r in ran) / 1000
            probes.append((rps, int(workers), kind, int(threads[0]) if threads else 1,
                           web.setting, errors, p99))
            print(f"probe {web.setting}: {rps:.0f} req/s (browse + checkout, closed loop), "
                  f"p99 {p99:.0f} ms, {errors} errors", flush=True)
        best = max(probes)
        _, workers, kind, threads, setting, _, _ = best
        print(f"best setting: {setting}", flush=True)

        # 2. ceiling: hello-world vs the browsing mix, same setting, same wrk ------------------
        hello = Gunicorn("hello_app:app", stack.env, workers, kind, threads, cwd=work)
        hello_proxy = Proxy(work, hello.port, "proxy-hello")  # the same path as Kameng's
        hello.proxy, hello.port = hello_proxy, hello_proxy.port
        script = write_lua(work / "hello.lua", "browse", shops, (0, 0))
        Wrk("warm", hello.port, script, args.capacity_connections, args.warm_seconds).result()
        ceiling = Wrk("hello", hello.port, script, args.capacity_connections,
                      args.probe_seconds * 2).result()
        hello.stop()
        web = stack.web(workers, kind, threads)
        shops = buyer_sessions(web.port, stack.seeded)
        script = write_lua(work / "capacity.lua", "browse", shops, (0, 0))
        Wrk("warm", web.port, script, args.capacity_connections, args.warm_seconds).result()
        capacity = Wrk("storefront", web.port, script, args.capacity_connections,
                       args.probe_seconds * 2).result()
        ratio = capacity["rps"] / ceiling["rps"]
        print(f"ceiling: hello-world {ceiling['rps']:.0f} req/s, storefront browsing "
              f"{capacity['rps']:.0f} req/s: {ratio:.2f}x", flush=True)

        # 3. 1,000 users ---------------------------------------------------------------------------
        users = args.users
        groups = {"home": users * 24 // 100, "category": users * 16 // 100,
                  "product": users * 40 // 100, "checkout": users * 15 // 100,
                  "lookup": users * 5 // 100}
        # warm-up: a short checkout run (its paid orders are what the lookups look up)
        _, warm_notifier = run_mix(stack, web.port, shops, 10, (0.5, 1.5),
                                   {"checkout": min(100, groups["checkout"])}, work, tag="warm")
        delivery_lags(stack, warm_notifier.sent, wait=60)
        lookup_orders(stack, shops)
        stack.sql("ANALYZE")
        stack.reset_stats()
        began = time.time()
        results, notifier = run_mix(stack, web.port, shops, args.seconds, think, groups, work)
        lags, missing = delivery_lags(stack, notifier.sent)
        for r in results:
            r["users"] = groups[r["name"]]
        ms = [v * 1000 for v in notifier.latencies]
        results.append({"name": "notify (gateway -> /pay/notify)", "users": "",
                        "requests": len(ms), "rps": len(ms) / args.seconds,
                        "p50": percentile(ms, 50) * 1000, "p95": percentile(ms, 95) * 1000,
                        "p99": percentile(ms, 99) * 1000, "max": max(ms, default=0) * 1000,
                        "errors": len(notifier.failures)})
        total = sum(r["requests"] for r in results[:-1])
        errors = sum(r["errors"] for r in results)
        worst_p99 = max(r["p99"] for r in results) / 1e6
        paid = stack.sql("SELECT count(*) FROM orders WHERE paid_at >= to_timestamp(%s)",
                         began)[0][0]
        ledger = stack.cli("ledger", "check", check=False)

        report += [f"gunicorn setting (best of the probes): **{setting}**", ""]
        report += ["| gunicorn setting | req/s, browse + checkout mix (closed loop, "
                   f"{args.capacity_connections} connections) | p99 ms | errors |",
                   "|---|---|---|---|"]
        report += [f"| {p[4]} | {p[0]:.0f} | {p[6]:.0f} | {p[5]} |" for p in probes]
        report += ["", f"| ceiling ({setting}, wrk {args.capacity_connections} connections, "
                   "closed loop) | req/s | p50 ms | p99 ms | errors | ratio |",
                   "|---|---|---|---|---|---|",
                   f"| bare Flask hello-world | {ceiling['rps']:.0f} | "
                   f"{ceiling['p50'] / 1000:.0f} | {ceiling['p99'] / 1000:.0f} | "
                   f"{ceiling['errors']} | 1.00x |",
                   f"| Kameng storefront, browsing mix | {capacity['rps']:.0f} | "
                   f"{capacity['p50'] / 1000:.0f} | {capacity['p99'] / 1000:.0f} | "
                   f"{capacity['errors']} | **{ratio:.2f}x** |", ""]
        report += [f"{users} users for {args.seconds:.0f} s, think time {args.think} s "
                   f"before every request: {total} requests ({total / args.seconds:.0f} req/s), "
                   f"{len(notifier.sent)} orders paid by notification ({paid} paid in the "
                   "window)", ""]
        report += table(results)
        if lags:
            report += ["", "| delivery lag (notification sent -> delivered_at) | orders | p50 ms "
                       "| p95 ms | p99 ms | max ms | not delivered |",
                       "|---|---|---|---|---|---|---|",
                       f"| sandbox card orders | {len(lags)} | {percentile(lags, 50) * 1000:.0f} | "
                       f"{percentile(lags, 95) * 1000:.0f} | {percentile(lags, 99) * 1000:.0f} | "
                       f"{max(lags) * 1000:.0f} | {missing} |"]
        report += ["", f"`kameng ledger check`: {(ledger.stdout or ledger.stderr).strip()}", ""]
        p99_ok, errors_ok, ratio_ok = worst_p99 < 2, errors == 0 and missing == 0, ratio >= 0.4
        report += [f"p99 of every page < 2 s (worst {worst_p99 * 1000:.0f} ms): "
                   f"{'PASS' if p99_ok else 'FAIL'}",
                   f"zero errors ({errors} errors, {missing} paid orders not delivered): "
                   f"{'PASS' if errors_ok else 'FAIL'}",
                   f"storefront throughput >= 0.4x hello-world ({ratio:.2f}x): "
                   f"{'PASS' if ratio_ok else 'FAIL'}"]
        if notifier.failures:
            report += ["", "notification failures (first 5): " + "; ".join(notifier.failures[:5])]
        report += ["", "Where the database time went during the 1,000-user run:", ""]
        report += stack.hot_spots()
        print("\n" + "\n".join(report))
    finally:
        stack.down()


if __name__ == "__main__":
    main()
