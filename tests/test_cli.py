"""The `kameng` command: provisioning, demo, and one-line errors without tracebacks."""

import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from kameng.members.models import Customer
from kameng.merchant.models import StaffUser
from kameng.superadmin.models import PlatformUser
from kameng.tenants.models import Tenant


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def test_admin_create_and_duplicate(runner):
    out = _ok(
        runner.invoke(
            args=["admin", "create", "--email", "Boss@K.test", "--password", "boss-pass-1"]
        )
    )
    assert "boss@k.test" in out
    again = runner.invoke(
        args=["admin", "create", "--email", "boss@k.test", "--password", "boss-pass-1"]
    )
    assert again.exit_code == 1
    assert again.output.strip().splitlines() == ["Error: A super-admin with this e-mail exists."]


def test_tenant_create_list_suspend_resume(runner, client_for):
    out = _ok(
        runner.invoke(
            args=[
                "tenant",
                "create",
                "--slug",
                "myshop",
                "--name",
                "My Shop",
                "--owner-email",
                "me@myshop.test",
                "--owner-password",
                "my-owner-pass",
            ]
        )
    )
    assert "http://myshop.localhost/" in out
    assert "myshop" in _ok(runner.invoke(args=["tenant", "list"]))
    shop = client_for("myshop.localhost")
    assert shop.get("/").status_code == 200
    assert "suspended" in _ok(runner.invoke(args=["tenant", "suspend", "myshop"]))
    assert shop.get("/").status_code == 503
    again = runner.invoke(args=["tenant", "suspend", "myshop"])
    assert again.exit_code == 1 and "already suspended" in again.output
    _ok(runner.invoke(args=["tenant", "resume", "myshop"]))
    assert shop.get("/").status_code == 200
    assert shop.login("me@myshop.test", "my-owner-pass", path="/admin/login").status_code == 302


@pytest.mark.parametrize(
    ("slug", "email", "password", "message"),
    [
        ("admin", "a@b.test", "long-enough", "is reserved"),
        ("www", "a@b.test", "long-enough", "is reserved"),
        ("Bad_Slug!", "a@b.test", "long-enough", "3 to 32 characters"),
        ("ab", "a@b.test", "long-enough", "3 to 32 characters"),
        ("-abc", "a@b.test", "long-enough", "3 to 32 characters"),
        ("okshop", "not-an-email", "long-enough", "valid e-mail"),
        ("okshop", "a@b.test", "short", "at least 8"),
    ],
)
def test_tenant_create_refuses_bad_input_in_one_line(
    runner, in_app, slug, email, password, message
):
    result = runner.invoke(
        args=[
            "tenant",
            "create",
            "--slug",
            slug,
            "--name",
            "X",
            "--owner-email",
            email,
            "--owner-password",
            password,
        ]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], lines
    with in_app() as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == 0


def test_taken_slug_is_refused(runner, create_tenant):
    create_tenant(slug="taken")
    result = runner.invoke(
        args=[
            "tenant",
            "create",
            "--slug",
            "TAKEN",
            "--name",
            "X",
            "--owner-email",
            "x@y.test",
            "--owner-password",
            "long-enough",
        ]
    )
    assert result.exit_code == 1 and "is taken" in result.output


def test_unknown_slug_is_one_line(runner):
    result = runner.invoke(args=["tenant", "suspend", "ghost"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: No shop with the address 'ghost'."


def test_demo_is_idempotent(runner, in_app, client_for):
    first = _ok(runner.invoke(args=["demo"]))
    second = _ok(runner.invoke(args=["demo"]))
    assert first == second
    for needle in (
        "admin.localhost",
        "demo.localhost",
        "acme.localhost",
        "demo-owner",
        "acme-buyer",
    ):
        assert needle in first
    with in_app() as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == 2
        assert session.scalar(select(func.count()).select_from(PlatformUser)) == 1
        assert session.scalar(select(func.count()).select_from(StaffUser)) == 2
        assert session.scalar(select(func.count()).select_from(Customer)) == 2
    demo = client_for("demo.localhost")
    assert demo.login("buyer@demo.test", "demo-buyer").status_code == 302
    assert demo.login("owner@demo.test", "demo-owner", path="/admin/login").status_code == 302
    assert (
        client_for("admin.localhost").login("admin@kameng.test", "kameng-admin").status_code == 302
    )


def _kameng(args, tmp_path, **env):
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environment.update(
        {"KAMENG_ENV": "development", "DATABASE_URL": f"sqlite:///{tmp_path}/cli.db"}
    )
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "kameng", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=120,
    )


def _one_error_line(result, needle):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and "Traceback" not in result.stderr


def test_production_refuses_development_secret_key(tmp_path):
    from kameng.config import DEV_SECRET_KEY

    for secret in ("", DEV_SECRET_KEY):
        result = _kameng(
            ["tenant", "list"],
            tmp_path,
            KAMENG_ENV="production",
            SECRET_KEY=secret,
            ENCRYPTION_KEYS="",
        )
        _one_error_line(result, "SECRET_KEY")


def test_production_refuses_missing_encryption_keys(tmp_path):
    result = _kameng(
        ["tenant", "list"],
        tmp_path,
        KAMENG_ENV="production",
        SECRET_KEY="x" * 40,
        ENCRYPTION_KEYS="",
    )
    _one_error_line(result, "ENCRYPTION_KEYS")


def test_wrong_settings_are_one_line(tmp_path):
    _one_error_line(_kameng(["tenant", "list"], tmp_path, CURRENCY="yuan"), "CURRENCY")
    _one_error_line(
        _kameng(["tenant", "list"], tmp_path, ENCRYPTION_KEYS="nope"), "ENCRYPTION_KEYS"
    )
    _one_error_line(_kameng(["tenant", "list"], tmp_path, KAMENG_ENV="prod"), "KAMENG_ENV")


def test_database_not_set_up_is_one_line(tmp_path):
    _one_error_line(_kameng(["tenant", "list"], tmp_path), "kameng db upgrade")


def test_keys_generate_prints_a_fernet_key(runner):
    from cryptography.fernet import Fernet

    key = _ok(runner.invoke(args=["keys", "generate"])).strip()
    Fernet(key)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process tree from /proc")
def test_serve_stops_its_worker_and_redis_on_sigterm(tmp_path):
    """`kill` (SIGTERM, as systemd and `docker stop` send it) stops `kameng serve` and the worker
    and embedded Redis it started, like Ctrl-C: they once ran on as orphans."""
    import hashlib
    import json
    import signal
    import socket
    import time
    from pathlib import Path

    import kameng
    from kameng.config import database_url

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"sqlite:///{tmp_path}/serve.db"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(KAMENG_ENV="development", DATABASE_URL=url)
    serve = subprocess.Popen([sys.executable, "-m", "kameng", "serve", "--port", str(port)],
                             env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    tag = hashlib.sha256(database_url(url).encode()).hexdigest()[:10]
    instance = Path(kameng.__file__).resolve().parent.parent / "instance"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        with open(f"/proc/{serve.pid}/task/{serve.pid}/children") as children:
            workers = [int(pid) for pid in children.read().split()]
        assert workers, "serve started no worker"
        settings = json.loads((instance / f"redis-{tag}.db.settings").read_text())
        redis = int(Path(settings["pidfile"]).read_text())
        assert _alive(redis)
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while any(map(_alive, [*workers, redis])) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(_alive, workers)), "the worker outlived serve"
        assert not _alive(redis), "the embedded Redis outlived serve"
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=10)
        for leftover in instance.glob(f"redis-{tag}.db*"):
            leftover.unlink()
