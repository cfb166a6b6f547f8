"""Settings read from environment variables (12-factor), with safe development defaults."""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryptography.fernet import Fernet

# A well-known key: fine on a laptop, refused in production.
DEV_SECRET_KEY = "kameng-development-secret-key-not-for-production"  # noqa: S105

ENVIRONMENTS = ("development", "production", "testing")


class ConfigError(RuntimeError):
    """A setting is missing or wrong; the message is one line that names the variable."""


def _int(env: dict, name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def database_url(raw: str) -> str:
    """Normalise a DATABASE_URL: plain postgres URLs use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix):]
    return raw


def _encryption_keys(env: dict, instance_path: Path, kameng_env: str) -> list[str]:
    raw = (env.get("ENCRYPTION_KEYS") or "").strip()
    if not raw:
        if kameng_env == "production":
            raise ConfigError(
                "ENCRYPTION_KEYS must be set in production "
                "(comma-separated Fernet keys, newest first; make one with `kameng keys generate`)"
            )
        # Development: one key kept beside the development database, so encrypted rows
        # survive restarts without any setup.
        key_file = instance_path / "dev-encryption.key"
        if not key_file.exists():
            instance_path.mkdir(parents=True, exist_ok=True)
            key_file.write_bytes(Fernet.generate_key())
            key_file.chmod(0o600)
        raw = key_file.read_text().strip()
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    for key in keys:
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError(
                "ENCRYPTION_KEYS holds a value that is not a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            ) from None
    return keys


def _limits_uri(redis_url: str | None) -> str:
    """The rate-limit storage: Redis when configured (limits spells a socket redis+unix://)."""
    if not redis_url:
        return "memory://"
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://"):]
    return redis_url


def _host(value: str) -> str:
    return value.strip().lower().rstrip(".")


def load_config(instance_path: Path, env: dict | None = None) -> dict:
    """Read every setting from `env` (default: os.environ) and check it."""
    env = dict(os.environ if env is None else env)
    kameng_env = (env.get("KAMENG_ENV") or "development").strip().lower()
    if kameng_env not in ENVIRONMENTS:
        choices = ", ".join(ENVIRONMENTS)
        raise ConfigError(f"KAMENG_ENV must be one of {choices}, got {kameng_env!r}")
    production = kameng_env == "production"

    secret_key = env.get("SECRET_KEY") or ""
    if production and (not secret_key or secret_key == DEV_SECRET_KEY):
        raise ConfigError("SECRET_KEY must be set to a long random value in production")
    if production and len(secret_key) < 32:
        raise ConfigError("SECRET_KEY must be at least 32 characters in production")
    secret_key = secret_key or DEV_SECRET_KEY

    platform_domain = _host(env.get("PLATFORM_DOMAIN") or "localhost")
    if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", platform_domain):
        raise ConfigError(f"PLATFORM_DOMAIN must be a host name, got {platform_domain!r}")
    admin_host = _host(env.get("ADMIN_HOST") or f"admin.{platform_domain}")
    if admin_host == platform_domain:
        raise ConfigError("ADMIN_HOST must differ from PLATFORM_DOMAIN")

    currency = (env.get("CURRENCY") or "CNY").strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ConfigError(f"CURRENCY must be a three-letter ISO 4217 code, got {currency!r}")

    db_url = database_url(
        env.get("DATABASE_URL") or f"sqlite:///{(instance_path / 'kameng.db').as_posix()}"
    )
    redis_url = (env.get("REDIS_URL") or "").strip() or None

    return {
        "KAMENG_ENV": kameng_env,
        "DEBUG": kameng_env == "development" and env.get("FLASK_DEBUG") == "1",
        "TESTING": kameng_env == "testing",
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": db_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "REDIS_URL": redis_url,
        "PLATFORM_DOMAIN": platform_domain,
        "ADMIN_HOST": admin_host,
        "ENCRYPTION_KEYS": _encryption_keys(env, instance_path, kameng_env),
        "CURRENCY": currency,
        # Host -> shop resolution is cached this many seconds per process; suspending a shop
        # from another process takes effect within this window.
        "TENANT_CACHE_TTL": _int(env, "TENANT_CACHE_TTL", 5),
        # Shop pages and their catalog data are cached per process and dropped at once when
        # the shop changes (version tokens in Redis, kameng/storefront/cache.py); this is
        # the longest any entry lives (0: no cache).
        "STOREFRONT_CACHE_SECONDS": _int(env, "STOREFRONT_CACHE_SECONDS", 300),
        # Stock shown on shop pages may be this many seconds old: a checkout re-counts a
        # shop's stock at most this often per process (0, as in tests: after every change).
        "STOREFRONT_STOCK_STALE_SECONDS": _int(
            env, "STOREFRONT_STOCK_STALE_SECONDS", 0 if kameng_env == "testing" else 5),
        # Number of proxies in front of the app whose X-Forwarded-* headers are trusted.
        "TRUST_PROXY": _int(env, "TRUST_PROXY", 0),
        "LOGIN_LIMIT": env.get("LOGIN_LIMIT") or "5 per minute",
        # Orders: minutes an unpaid order keeps its stock; open unpaid orders allowed per buyer
        # and per client address (so nobody can freeze a shop's stock).
        "ORDER_EXPIRY_MINUTES": _int(env, "ORDER_EXPIRY_MINUTES", 15, minimum=1),
        "MAX_OPEN_ORDERS_PER_BUYER": _int(env, "MAX_OPEN_ORDERS_PER_BUYER", 3, minimum=1),
        "MAX_OPEN_ORDERS_PER_IP": _int(env, "MAX_OPEN_ORDERS_PER_IP", 10, minimum=1),
        "MAX_TOPUP": _int(env, "MAX_TOPUP", 5_000_000, minimum=100),  # minor units
        # The platform's fee on payments it collects for shops, in basis points.
        "PLATFORM_FEE_BP": _int(env, "PLATFORM_FEE_PERCENT_BP", 200),
        # How a paid order reaches delivery: "inline" (right after the commit, in the request)
        # or "queue" (an RQ worker).
        "DELIVERY_MODE": env.get("DELIVERY_MODE") or ("queue" if redis_url else "inline"),
        # Queue work: how long a paid order may wait before the reconciler re-enqueues it, and
        # how long a delivery may take before it counts as stuck (seconds).
        "RECONCILE_GRACE": _int(env, "RECONCILE_GRACE", 30, minimum=1),
        "DELIVERY_STUCK_AFTER": _int(env, "DELIVERY_STUCK_AFTER", 300, minimum=10),
        # A `deliver` job delivers its order and then other card/fixed-content orders that are
        # paid and waiting: up to this many orders in one transaction (1: only its own).
        "DELIVERY_BATCH": _int(env, "DELIVERY_BATCH", 20, minimum=1),
        # Relayed outbox rows are kept this many days (to look at), then deleted.
        "OUTBOX_KEEP_DAYS": _int(env, "OUTBOX_KEEP_DAYS", 7, minimum=1),
        # A test hook: pause this many seconds inside a card delivery, after taking the codes
        # and before committing, so a test can kill the worker there. Never set in production.
        "FAULT_PAUSE_AFTER_CODES": float(env.get("KAMENG_FAULT_PAUSE_AFTER_CODES") or 0),
        "FAULT_MARKER": env.get("KAMENG_FAULT_MARKER") or "",
        # Mail: SMTP when MAIL_SERVER is set; otherwise mails are kept for the consoles.
        "MAIL_SERVER": env.get("MAIL_SERVER") or None,
        "MAIL_PORT": _int(env, "MAIL_PORT", 587),
        "MAIL_USERNAME": env.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": env.get("MAIL_PASSWORD") or None,
        "MAIL_USE_TLS": (env.get("MAIL_USE_TLS") or "1") == "1",
        "MAIL_USE_SSL": (env.get("MAIL_USE_SSL") or "0") == "1",
        "MAIL_FROM": env.get("MAIL_FROM") or f"Kameng <no-reply@{platform_domain}>",
        # Calls to URLs typed by shops (suppliers, webhooks): allow addresses inside the network
        # and plain http only when the operator says so (e.g. a supplier on a private link).
        "UPSTREAM_ALLOW_PRIVATE": (env.get("UPSTREAM_ALLOW_PRIVATE") or "0") == "1",
        "UPSTREAM_ALLOW_HTTP": (env.get("UPSTREAM_ALLOW_HTTP") or "0") == "1",
        # Stripe's API base (None: Stripe itself); tests point it at a local fake.
        "STRIPE_API_BASE": env.get("STRIPE_API_BASE") or None,
        # Seconds a signed payment notification stays valid (replays of older ones are refused).
        "NOTIFY_TOLERANCE": _int(env, "NOTIFY_TOLERANCE", 300, minimum=1),
        # A new shop's default markup over the supply catalog, in basis points (2000 = 20%).
        "DEFAULT_MARKUP_BP": _int(env, "DEFAULT_MARKUP_PERCENT", 20) * 100,
        # Shop billing: days an invoice is due after it is issued, and days after the due date
        # before an unpaid shop is suspended (503 to buyers; its console stays open to pay).
        "BILLING_DUE_DAYS": _int(env, "BILLING_DUE_DAYS", 7),
        "BILLING_GRACE_DAYS": _int(env, "BILLING_GRACE_DAYS", 7),
        # Self-service sign-ups allowed per client address (Flask-Limiter syntax).
        "SIGNUP_LIMIT": env.get("SIGNUP_LIMIT") or "5 per hour",
        # The port people reach the site on, for printed links (`kameng serve` sets it).
        "PUBLIC_PORT": _int(env, "PUBLIC_PORT", 8000 if kameng_env == "development" else 0)
        or None,
        "PASSWORD_MIN_LENGTH": _int(env, "PASSWORD_MIN_LENGTH", 8, minimum=6),
        "SESSION_DAYS": _int(env, "SESSION_DAYS", 14, minimum=1),
        # Argon2id cost; the defaults follow the argon2-cffi recommendation (RFC 9106 low-memory).
        "ARGON2_TIME_COST": _int(env, "ARGON2_TIME_COST", 3, minimum=1),
        "ARGON2_MEMORY_KIB": _int(env, "ARGON2_MEMORY_KIB", 65536, minimum=64),
        "MIGRATIONS_DIR": env.get("MIGRATIONS_DIR")
        or str(Path(__file__).resolve().parent.parent / "migrations"),
        "THEMES_DIR": env.get("THEMES_DIR")
        or str(Path(__file__).resolve().parent.parent / "themes"),
        # Cookies: host-only (no Domain attribute), never readable by scripts.
        "SESSION_COOKIE_DOMAIN": None,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "PREFERRED_URL_SCHEME": "https" if production else "http",
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
        "RATELIMIT_STORAGE_URI": _limits_uri(redis_url),
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_KEY_PREFIX": env.get("RATELIMIT_KEY_PREFIX") or "kameng",
        "MAX_CONTENT_LENGTH": 64 * 1024 * 1024,
    }
