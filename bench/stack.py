"""A production-like Kameng deployment on this machine, for bench/load.py and bench/faults.py.

Everything lives in one temporary folder and listens on loopback only: a PostgreSQL 15 cluster
of its own (initdb + pg_ctl, run as the `postgres` user when we are root), a redis-server of its
own (append-only file, so a restart keeps the queues as in production), `gunicorn` serving
`kameng:create_app()` with KAMENG_ENV=production behind nginx (a buffering proxy, as sync
workers need), and `kameng worker` processes. Shops are
seeded through Kameng's own services (codes through the bulk import, which uses COPY), each in
test mode so buyers may pay with the sandbox gateway.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import free_port, stop_group, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PG_BIN = Path(os.environ.get("BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
ENCRYPTION_KEY = "3Yh0Fz0r2bq3oBq1vJm7cC1cJ0mJ8m6B0S1nW2e5xqY="


def _as_postgres() -> list[str]:
    """Prefix for commands PostgreSQL refuses to run as root."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class PrivatePostgres:
    """A PostgreSQL cluster of our own in `workdir/pg`, on a free loopback port."""

    def __init__(self, workdir: Path, max_connections: int = 200):
        self.dir = workdir / "pg"
        self.dir.mkdir()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(workdir, owner.pw_uid, owner.pw_gid)
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/kameng"
        subprocess.run([*_as_postgres(), str(PG_BIN / "initdb"), "-D", str(self.dir / "data"),
                        "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True)
        # Production-like durability (fsync and synchronous commit stay on); sized for 2 cores.
        (self.dir / "data" / "postgresql.auto.conf").write_text("\n".join([
            "listen_addresses = '127.0.0.1'", f"port = {self.port}",
            f"unix_socket_directories = '{self.dir}'", f"max_connections = {max_connections}",
            "shared_buffers = '512MB'", "effective_cache_size = '2GB'",
            "work_mem = '8MB'", "maintenance_work_mem = '256MB'", "max_wal_size = '2GB'",
            "checkpoint_timeout = '15min'", "logging_collector = off",
            # which statements cost the most (bench/load.py prints the top ones)
            "shared_preload_libraries = 'pg_stat_statements'", ""]))
        self.start()
        subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "postgres", "kameng"], check=True)

    def _ctl(self, *args: str) -> None:
        subprocess.run([*_as_postgres(), str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"),
                        "-l", str(self.dir / "server.log"), "-w", "-t", "60", *args],
                       check=True, capture_output=True)

    def start(self) -> None:
        self._ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode)

    def restart(self, mode: str = "immediate") -> float:
        """Stop (immediate: like a crash, recovery replays the WAL) and start; seconds down."""
        began = time.perf_counter()
        self.stop(mode)
        self.start()
        return time.perf_counter() - began


class PrivateRedis:
    """A redis-server of our own on a free loopback port, with an append-only file."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--maxclients", "10000"],
            stdout=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port, what="redis-server")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def restart(self, sig: int = signal.SIGKILL) -> float:
        began = time.perf_counter()
        self.stop(sig)
        self.start()
        return time.perf_counter() - began


def app_env(db_url: str, redis_url: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({
        "KAMENG_ENV": "production", "DATABASE_URL": db_url, "REDIS_URL": redis_url,
        "DELIVERY_MODE": "queue", "PLATFORM_DOMAIN": "localhost",
        "ENCRYPTION_KEYS": ENCRYPTION_KEY, "SECRET_KEY": "bench-" + "x" * 40,
        "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "64",
        # A proxy (the load generator) in front: the buyer's address comes from
        # X-Forwarded-For, so per-address limits apply per simulated buyer.
        "TRUST_PROXY": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "bench"),
                                                    os.environ.get("PYTHONPATH")])),
    })
    env.update(extra)
    return env


SEED = r"""
import json, sys
from kameng import create_app
from kameng.audit.service import Actor
from kameng.catalog.service import create_category, create_product
from kameng.extensions import db
from kameng.inventory.service import import_codes
from kameng.payments.registry import decrypt_credentials, ensure_sandbox_account
from kameng.tenants.scoping import tenant_scope
from kameng.tenants.service import create_tenant
shops, products, codes = (int(a) for a in sys.argv[1:4])
app = create_app()
out = []
with app.app_context():
    for s in range(shops):
        tenant = create_tenant(slug=f"shop{s:02d}", name=f"Shop {s}",
                               owner_email=f"owner{s}@bench.test", owner_password="bench-owner")
        tenant.settings = {**(tenant.settings or {}), "test_mode": True}
        with tenant_scope(tenant.id):
            categories = [create_category(tenant, f"Category {c}").id for c in range(5)]
            ids = []
            for p in range(products // shops):
                product = create_product(tenant, name=f"Card {s}-{p}", price=100 + 10 * p,
                                         category_id=categories[p % 5], delivery_kind="card")
                import_codes(product, (f"K8-{s:02d}-{p:03d}-{n:06d}"
                                       for n in range(codes // products)),
                             actor=Actor.system())
                ids.append(product.id)
            secret = decrypt_credentials(ensure_sandbox_account(tenant).credentials)["secret"]
        db.session.commit()
        out.append({"slug": tenant.slug, "host": f"{tenant.slug}.localhost", "id": tenant.id,
                    "secret": secret, "products": ids, "categories": categories})
print(json.dumps(out))
"""


def code_text(shop: int, product: int, n: int) -> str:
    """The text of an imported code (the seed's pattern), to check none was lost."""
    return f"K8-{shop:02d}-{product:03d}-{n:06d}"


class Gunicorn:
    """gunicorn with a given worker setting; `app` is a WSGI spec (module:callable)."""

    def __init__(self, app: str, env: dict, workers: int, worker_class: str = "sync",
                 threads: int = 1, cwd: Path = ROOT, backlog: int = 4096, log: Path | None = None):
        self.port = free_port()
        self.setting = (f"{workers} {worker_class} workers"
                        + (f" x {threads} threads" if worker_class == "gthread" else ""))
        cmd = [PY, "-m", "gunicorn", "-w", str(workers), "-k", worker_class,
               "--threads", str(threads), "-b", f"127.0.0.1:{self.port}",
               "--backlog", str(backlog), "--log-level", "warning", "--timeout", "60",
               "--keep-alive", "5", app]
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, start_new_session=True,
                                     stderr=open(log, "ab") if log else None)  # noqa: SIM115
        wait_for_port(self.port, 60, "gunicorn")
        self.wait_ready(workers)

    def wait_ready(self, workers: int, seconds: float = 120) -> None:
        """Until every worker has booted (a fresh worker imports the app first): a run of
        answered requests, each on a new connection, as many as twice the workers."""
        import http.client

        deadline, answered = time.time() + seconds, 0
        while answered < 2 * workers and time.time() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=0.5)
            try:
                conn.request("GET", "/", headers={"Host": "shop00.localhost"})
                conn.getresponse().read()
                answered += 1
            except OSError:
                answered = 0
                time.sleep(0.2)
            finally:
                conn.close()
        booted = len(self.worker_pids())
        while booted < workers and time.time() < deadline:
            time.sleep(0.2)
            booted = len(self.worker_pids())

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def stop(self) -> None:
        proxy = getattr(self, "proxy", None)
        if proxy is not None:
            proxy.stop()
        stop_group(self.proc)


class Proxy:
    """nginx in front of a gunicorn, as in production: it holds the slow and idle client
    connections (keep-alive, a buyer thinking between pages) and hands gunicorn's sync
    workers only complete requests, over a few kept upstream connections."""

    def __init__(self, workdir: Path, upstream_port: int, name: str = "proxy"):
        self.dir = workdir / name
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        (self.dir / "nginx.conf").write_text(f"""
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
daemon off;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    keepalive_timeout 65s;
    keepalive_requests 100000;
    upstream app {{ server 127.0.0.1:{upstream_port}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        client_max_body_size 64m;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $http_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 60s;
        }}
    }}
}}
""")
        self.proc = subprocess.Popen(
            [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(self.dir / "nginx.conf"),
             "-p", str(self.dir)], start_new_session=True, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, what="nginx")

    def stop(self) -> None:
        stop_group(self.proc)


class KamengWorker:
    """A `kameng worker` process (all queues, scheduler and ticker), as deployed."""

    def __init__(self, env: dict, log: Path | None = None):
        self.env, self.log = env, log
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([PY, "-m", "kameng", "worker"], env=self.env, cwd=ROOT,
                                     start_new_session=True,
                                     stdout=open(self.log, "ab") if self.log else None,  # noqa: SIM115
                                     stderr=subprocess.STDOUT if self.log else None)

    def kill(self) -> None:
        """SIGKILL, no warning: whatever job it was running is cut off mid-way."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        stop_group(self.proc)


@dataclass
class Stack:
    """The deployment: database, Redis, seeded shops; web and workers started on demand."""

    shops: int = 20
    products: int = 1000
    codes: int = 200_000
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kameng-k8-")))
    keep: bool = False

    def __post_init__(self):
        self.pg: PrivatePostgres | None = None
        self.redis: PrivateRedis | None = None
        self.running: list = []
        self.seeded: list[dict] = []

    def up(self) -> Stack:
        # a SIGTERM (e.g. `timeout`) unwinds through down(), so nothing is left running
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        began = time.perf_counter()
        self.pg = PrivatePostgres(self.workdir)
        self.redis = PrivateRedis(self.workdir)
        self.env = app_env(self.pg.url, self.redis.url)
        self.cli("db", "upgrade")
        seed = time.perf_counter()
        self.seeded = json.loads(subprocess.run(
            [PY, "-c", SEED, str(self.shops), str(self.products), str(self.codes)],
            env=self.env, cwd=ROOT, check=True, capture_output=True, text=True).stdout)
        self.seconds_to_seed = time.perf_counter() - seed
        self.sql("VACUUM ANALYZE")
        self.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.seconds_up = time.perf_counter() - began
        return self

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([PY, "-m", "kameng", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True)
        if check and done.returncode != 0:
            raise RuntimeError(f"kameng {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def connect(self):
        import psycopg

        return psycopg.connect(self.pg.url, autocommit=True)

    def sql(self, statement: str, *params) -> list[tuple]:
        with self.connect() as conn:
            cursor = conn.execute(statement, params or None)
            return cursor.fetchall() if cursor.description else []

    def web(self, workers: int, worker_class: str = "sync", threads: int = 1) -> Gunicorn:
        """gunicorn serving Kameng, behind nginx: `.port` is the proxy's, `.app_port`
        gunicorn's own."""
        server = Gunicorn("kameng:create_app()", self.env, workers, worker_class, threads,
                          log=self.workdir / "gunicorn.log")
        self.running.append(server)
        if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
            proxy = Proxy(self.workdir, server.port, f"proxy-{server.port}")
            self.running.append(proxy)
            server.proxy, server.app_port, server.port = proxy, server.port, proxy.port
            server.setting += " behind nginx"
        return server

    def workers(self, count: int = 2) -> list[KamengWorker]:
        started = [KamengWorker(self.env, self.workdir / f"worker{n}.log") for n in range(count)]
        self.running.extend(started)
        from redis import Redis
        from rq import Worker

        conn = Redis.from_url(self.redis.url)
        deadline = time.time() + 60
        while Worker.count(connection=conn) < count and time.time() < deadline:
            time.sleep(0.2)
        return started

    def hot_spots(self, top: int = 8) -> list[str]:
        """Where the database time went since the last reset: statements by total time, and
        tables read by sequential scans (a missing index shows here)."""
        lines = ["| statement (pg_stat_statements) | calls | total ms | mean ms |",
                 "|---|---|---|---|"]
        for query, calls, total, mean in self.sql(
                "SELECT regexp_replace(query, '\\s+', ' ', 'g'), calls, total_exec_time, "
                "mean_exec_time FROM pg_stat_statements ORDER BY total_exec_time DESC "
                "LIMIT %s", top):
            short = query[:110].replace("|", "/")
            lines.append(f"| `{short}` | {calls} | {total:.0f} | {mean:.2f} |")
        lines += ["", "| table | sequential scans | rows read by them | index scans |",
                  "|---|---|---|---|"]
        for name, seq, rows, idx in self.sql(
                "SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0) "
                "FROM pg_stat_user_tables WHERE seq_tup_read > 0 "
                "ORDER BY seq_tup_read DESC LIMIT %s", top):
            lines.append(f"| {name} | {seq} | {rows} | {idx} |")
        return lines

    def reset_stats(self) -> None:
        self.sql("SELECT pg_stat_statements_reset()")
        self.sql("SELECT pg_stat_reset()")

    def stop(self, process) -> None:
        process.stop()
        if process in self.running:
            self.running.remove(process)

    def down(self) -> None:
        for process in reversed(self.running):
            try:
                process.stop()
            except Exception as error:  # keep tearing down
                print(f"stopping {process}: {error}", file=sys.stderr)
        self.running.clear()
        if self.redis is not None:
            self.redis.stop()
        if self.pg is not None:
            with contextlib.suppress(subprocess.CalledProcessError):
                self.pg.stop("fast")
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()


if __name__ == "__main__":  # a smoke test: bring a small stack up and down
    with Stack(shops=2, products=10, codes=1000) as stack:
        print(f"up in {stack.seconds_up:.1f} s (seed {stack.seconds_to_seed:.1f} s): "
              f"{stack.pg.url} {stack.redis.url}")
        web = stack.web(2)
        stack.workers(2)
        print(json.dumps(stack.seeded[0])[:200], "port", web.port)
