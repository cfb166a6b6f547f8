"""The whole product on loopback for browser tests: `kameng serve` in a child process.

Like `make run` on a laptop: waitress serves every host, and with no REDIS_URL the command
starts its private Redis and a worker beside the web server, so paid orders are delivered by
the real queue. Each test session gets a fresh database of its own (a SQLite file in a
temporary folder, or a new PostgreSQL database when DATABASE_URL points at a server), so no
test ever sees data left by an earlier run. Shops are `<slug>.localhost`, which Chromium
resolves to loopback by itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import make_url

from kameng.config import database_url

PLATFORM_DOMAIN = "localhost"
START_TIMEOUT = 60  # seconds for the server to answer its first request


def free_port() -> int:
    """A TCP port nobody listens on (the kernel's choice; never 8000, the developer's port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://", "postgresql+"))


class TemporaryDatabase:
    """A database that exists for one test session only."""

    def __init__(self, folder: Path):
        configured = os.environ.get("DATABASE_URL", "")
        self._admin_dsn = None
        if not _is_postgres(configured):
            self.url = f"sqlite:///{folder / 'kameng-e2e.db'}"
            return
        import psycopg

        server = make_url(database_url(configured))
        self._name = f"kameng_e2e_{uuid.uuid4().hex[:12]}"
        self._admin_dsn = server.set(drivername="postgresql", database="postgres") \
            .render_as_string(hide_password=False)
        with psycopg.connect(self._admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self._name}"')
        self.url = server.set(database=self._name).render_as_string(hide_password=False)

    def drop(self) -> None:
        if self._admin_dsn is None:
            return
        import psycopg

        with psycopg.connect(self._admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)')


class LiveServer:
    """`python -m kameng serve` on a free loopback port, with its embedded Redis and worker."""

    def __init__(self, folder: Path, env: dict[str, str]):
        self.port = free_port()
        self.folder = folder
        self.env = env
        self.log_path = folder / "server.log"
        self.process: subprocess.Popen | None = None

    def url(self, slug: str, path: str = "/") -> str:
        """The address of a shop page, as a buyer types it."""
        return f"http://{slug}.{PLATFORM_DOMAIN}:{self.port}{path}"

    def start(self) -> None:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kameng", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--threads", "8"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
            # Its own process group: the worker it starts goes down with it, whatever happens.
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kameng serve exited with {self.process.returncode}:\n"
                                   f"{self.output()}")
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"kameng serve did not answer within {START_TIMEOUT}s:\n"
                           f"{self.output()}")

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/", headers={"Host": f"{PLATFORM_DOMAIN}:{self.port}"})
            return conn.getresponse().status == 200  # the platform's landing page
        except OSError:
            return False
        finally:
            conn.close()

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Ctrl-C, as a developer would: serve stops its worker and its Redis on the way out."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        else:
            # The worker is in the same process group; make sure nothing outlives the session.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


def embedded_redis_files(instance_path: Path, database_uri: str) -> list[Path]:
    """The files `kameng serve` keeps its private Redis in for this database (see cli.py)."""
    tag = hashlib.sha256(database_uri.encode()).hexdigest()[:10]
    return sorted(instance_path.glob(f"redis-{tag}.db*"))
