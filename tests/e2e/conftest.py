"""Browser tests: Playwright driving Debian's Chromium against the live product on loopback.

One live server (`kameng serve`, with its embedded Redis and worker) and one headless Chromium
serve every test in this folder; each test seeds its own shops with fresh slugs and opens its
own browser contexts (separate cookies), so tests neither share state nor depend on order.

Without /usr/bin/chromium the tests are skipped on a laptop, and fail under CI=true: CI must
run them (.ci/run installs Chromium). No browser is ever downloaded.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from flask import Flask

from .live_server import PLATFORM_DOMAIN, LiveServer, TemporaryDatabase, embedded_redis_files
from .seed import Seeder

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """Replaces the unit tests' per-test emptying of their database: the browser tests run
    against a database of their own, behind a server in another process."""


@pytest.fixture(scope="package", autouse=True)
def chromium() -> Path:
    """Debian's Chromium, or a skip (a laptop without it) or a failure (CI=true)."""
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (install it with `apt-get install chromium`)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "Playwright is not installed (pip install -e '.[test]')"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run: {missing}", pytrace=False)
        pytest.skip(f"browser tests skipped: {missing}")
    return CHROMIUM


@pytest.fixture(scope="package")
def server_env(tmp_path_factory) -> Iterator[dict]:
    """The live server's settings: a fresh database, fresh keys, the development setup."""
    folder = tmp_path_factory.mktemp("e2e")
    database = TemporaryDatabase(folder)
    env = {key: value for key, value in os.environ.items()
           if key not in ("REDIS_URL", "FLASK_DEBUG")}  # no REDIS_URL: serve embeds its own
    env.update({
        "KAMENG_ENV": "development",
        "DATABASE_URL": database.url,
        "PLATFORM_DOMAIN": PLATFORM_DOMAIN,
        "SECRET_KEY": f"e2e-secret-{uuid.uuid4().hex}",
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "64",
        # One browser logs in many times from one address within a minute.
        "LOGIN_LIMIT": "200 per minute",
        "MAX_OPEN_ORDERS_PER_IP": "100",
    })
    env["_E2E_FOLDER"] = str(folder)
    try:
        yield env
    finally:
        database.drop()


@pytest.fixture(scope="package")
def seed_app(server_env) -> Iterator[Flask]:
    """The application in this process, on the live server's database: migrations and seeds."""
    from flask_migrate import upgrade

    from kameng import create_app
    from kameng.config import database_url
    from kameng.extensions import db

    app = create_app({
        "KAMENG_ENV": "development",
        "TESTING": False,
        "SQLALCHEMY_DATABASE_URI": database_url(server_env["DATABASE_URL"]),
        "PLATFORM_DOMAIN": PLATFORM_DOMAIN,
        "ADMIN_HOST": f"admin.{PLATFORM_DOMAIN}",
        "SECRET_KEY": server_env["SECRET_KEY"],
        "ENCRYPTION_KEYS": [server_env["ENCRYPTION_KEYS"]],
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_KIB": 64,
        "REDIS_URL": None,
        "RATELIMIT_STORAGE_URI": "memory://",
        "DELIVERY_MODE": "inline",
    })
    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="package")
def live_server(seed_app, server_env) -> Iterator[LiveServer]:
    server = LiveServer(Path(server_env["_E2E_FOLDER"]), server_env)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        for path in embedded_redis_files(Path(seed_app.instance_path),
                                         seed_app.config["SQLALCHEMY_DATABASE_URI"]):
            path.unlink(missing_ok=True)


@pytest.fixture(scope="package")
def seed(seed_app, live_server) -> Seeder:
    return Seeder(seed_app)


@pytest.fixture(scope="package")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="package")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def open_tab(browser, live_server):
    """open_tab(viewport=DESKTOP, **context_options) -> a Tab in a new browser context (its
    own cookies), watching for console errors, script errors and failed responses."""
    from .tabs import Tab

    contexts = []

    def open_(viewport: dict = DESKTOP, **options) -> Tab:
        context = browser.new_context(viewport=viewport, locale="en-US", **options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return Tab(context.new_page(), live_server)

    yield open_
    for context in contexts:
        context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed browser test shows the end of the live server's log (its tracebacks)."""
    report = yield
    server = item.funcargs.get("live_server") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(server, LiveServer):
        report.sections.append(("kameng serve log (end)", server.output()))
    return report
