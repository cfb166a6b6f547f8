"""What the benchmark scripts share: a free port, waiting for a server on it, stopping a
process group, and running clients in threads."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, seconds: float = 30, what: str = "server",
                  proc: subprocess.Popen | None = None) -> None:
    """Return once something accepts connections on 127.0.0.1:`port`; fail after `seconds`,
    or at once when `proc` (the server being waited for) has exited."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} on port {port} did not start")


def stop_group(proc: subprocess.Popen, seconds: float = 30) -> None:
    """SIGTERM to the process group `proc` leads (started with start_new_session=True: its
    workers and their children too), SIGKILL if it has not ended after `seconds`."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:  # the whole group has ended already
        proc.wait()
        return
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def in_threads(count: int, target: Callable[[], None]) -> None:
    """Run `target` in `count` threads at once and wait for all of them."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
