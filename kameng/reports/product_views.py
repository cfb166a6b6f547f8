"""Product page views: counted in memory on each page view and written to product_view_counts
in batches, so that a product page never waits on a database write.

- With Redis (REDIS_URL: always so under `kameng serve` and in production) a view is one
  HINCRBY on a hash that every web process shares. The `flush_views` job (every 30 s, see
  kameng/workers/periodic.py) renames the hash aside — new views start a fresh one — and adds
  its counts to product_view_counts with one upsert per (shop, product, day). A flush that
  dies before its commit is redone from the renamed hash by the next run; one that dies between
  its commit and deleting the hash counts that batch twice (rare, and views are not money).
- Without Redis (tests, `flask run`, a bench without Redis) each process keeps its counts and
  writes them in one upsert at most every VIEW_FLUSH_SECONDS (default 5): on the first view
  after the interval, before the shop's reports are read, and at exit. The counts of an idle
  process wait for its next view.
- When Redis fails, views go to the process's buffer and Redis is left alone for a while, so
  an outage slows no page.

Days are UTC dates. Counts of a product deleted before the flush are dropped.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, date, datetime

from flask import Flask, current_app
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import select

from ..billing.models import ProductViewCount
from ..catalog.models import Product
from ..extensions import db

log = logging.getLogger(__name__)

FLUSH_SECONDS = 5  # default of the VIEW_FLUSH_SECONDS setting
REDIS_PAUSE = 30  # seconds Redis is left alone after an error
LOCK_SECONDS = 120  # one flush of the Redis hash at a time
CHUNK = 500

ViewKey = tuple[int, int, date]  # (shop id, product id, UTC day)


class ViewBuffer:
    """One process's views not yet written (no Redis, or Redis failing)."""

    def __init__(self, tag: str):
        self.tag = tag  # names this database's Redis keys
        self.counts: Counter[ViewKey] = Counter()
        self.lock = threading.Lock()
        self.last_flush = time.monotonic()
        self.redis_paused_until = 0.0

    def add(self, key: ViewKey, views: int = 1) -> None:
        with self.lock:
            self.counts[key] += views

    def take(self) -> Counter[ViewKey]:
        with self.lock:
            counts, self.counts = self.counts, Counter()
            self.last_flush = time.monotonic()
        return counts

    def due(self, interval: float) -> bool:
        return bool(self.counts) and time.monotonic() - self.last_flush >= interval


_buffers_lock = threading.Lock()


def _buffer(app: Flask) -> ViewBuffer:
    buffer = app.extensions.get("kameng.views")
    if buffer is None:
        with _buffers_lock:
            buffer = app.extensions.get("kameng.views")
            if buffer is None:
                uri = str(app.config.get("SQLALCHEMY_DATABASE_URI", ""))
                buffer = ViewBuffer(hashlib.sha256(uri.encode()).hexdigest()[:10])
                app.extensions["kameng.views"] = buffer
                atexit.register(_flush_at_exit, app)
    return buffer


def _hash_key(buffer: ViewBuffer) -> str:
    # One hash per database: two deployments (or test runs) sharing a Redis never mix counts.
    return f"kameng:views:{buffer.tag}"


def record_view(tenant_id: int, product_id: int) -> None:
    """Count one view of a product page (called by the storefront on every GET)."""
    app = current_app._get_current_object()
    buffer = _buffer(app)
    key = (int(tenant_id), int(product_id), datetime.now(UTC).date())
    if not _count_in_redis(app, buffer, key):
        buffer.add(key)
    if buffer.due(app.config.get("VIEW_FLUSH_SECONDS", FLUSH_SECONDS)):
        try:
            flush_buffer()
        except Exception:  # the page is served all the same; the counts stay buffered
            log.exception("product views: could not write the buffered counts")


def _count_in_redis(app: Flask, buffer: ViewBuffer, key: ViewKey) -> bool:
    if not app.config.get("REDIS_URL") or time.monotonic() < buffer.redis_paused_until:
        return False
    from ..workers.queues import connection

    tenant_id, product_id, day = key
    try:
        connection().hincrby(_hash_key(buffer), f"{tenant_id}:{product_id}:{day.isoformat()}", 1)
    except RedisError as error:
        buffer.redis_paused_until = time.monotonic() + REDIS_PAUSE
        log.warning("product views: Redis unavailable (%s); counting in the process", error)
        return False
    return True


def write_counts(counts: Mapping[ViewKey, int]) -> int:
    """Add `counts` to product_view_counts in one transaction of its own; returns the views
    written (those of products that no longer exist, or changed shop, are dropped)."""
    if not counts:
        return 0
    products = Product.__table__
    table = ProductViewCount.__table__
    written = 0
    with db.engine.begin() as conn:
        ids = sorted({product_id for _, product_id, _ in counts})
        owners: dict[int, int] = {}
        for start in range(0, len(ids), CHUNK):
            owners.update(conn.execute(
                select(products.c.id, products.c.tenant_id)
                .where(products.c.id.in_(ids[start:start + CHUNK]))).all())
        rows = [{"tenant_id": tenant_id, "product_id": product_id, "day": day, "views": views}
                for (tenant_id, product_id, day), views in sorted(counts.items())
                if views > 0 and owners.get(product_id) == tenant_id]
        if rows:
            conn.execute(_upsert(conn.dialect.name, table), rows)
            written = sum(row["views"] for row in rows)
    return written


def _upsert(dialect: str, table):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=["tenant_id", "product_id", "day"],
        set_={"views": table.c.views + statement.excluded.views},
    )


def flush_buffer() -> int:
    """Write this process's buffered views now; on failure they stay buffered."""
    buffer = _buffer(current_app._get_current_object())
    counts = buffer.take()
    try:
        return write_counts(counts)
    except Exception:
        for key, views in counts.items():
            buffer.add(key, views)
        raise


def flush_redis() -> int:
    """Move the views counted in Redis into the database (the `flush_views` job)."""
    from ..workers.queues import connection

    buffer = _buffer(current_app._get_current_object())
    conn = connection()
    live = _hash_key(buffer)
    pending, lock = f"{live}:flushing", f"{live}:lock"
    if not conn.set(lock, "1", nx=True, ex=LOCK_SECONDS):
        return 0  # another worker is flushing
    try:
        if not conn.exists(pending):  # else: a flush that died before deleting it; redo it
            try:
                conn.rename(live, pending)
            except ResponseError:
                return 0  # no views since the last flush
        counts: Counter[ViewKey] = Counter()
        for field, views in conn.hgetall(pending).items():
            try:
                tenant_id, product_id, day = field.decode().split(":")
                counts[(int(tenant_id), int(product_id), date.fromisoformat(day))] += int(views)
            except ValueError:
                log.warning("product views: ignoring malformed field %r", field)
        written = write_counts(counts)
        conn.delete(pending)
        return written
    finally:
        conn.delete(lock)


def flush_views() -> int:
    """Write every pending view this process can reach: Redis's hash and its own buffer."""
    written = 0
    if current_app.config.get("REDIS_URL"):
        written += flush_redis()
    return written + flush_buffer()


def discard_pending() -> None:
    """Forget views not yet written (tests start from zero with this)."""
    buffer = _buffer(current_app._get_current_object())
    buffer.take()
    if current_app.config.get("REDIS_URL"):
        from ..workers.queues import connection

        live = _hash_key(buffer)
        connection().delete(live, f"{live}:flushing", f"{live}:lock")


def _flush_at_exit(app: Flask) -> None:
    try:
        with app.app_context():
            flush_buffer()
    except Exception as error:  # the database may be gone already; views are not money
        log.debug("product views: could not flush at exit: %s", error)
