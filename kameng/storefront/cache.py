"""The storefront's cache: shop data kept in each web process, made stale everywhere at once by
version tokens that every process reads from Redis.

What shop pages show is cached in the process under keys that carry version tokens:

- `shop:<id>`      the shop's catalog: its row (name, theme, settings, status, locale), its
                   categories, products, levels, level and bulk prices, markup rules, images;
- `stock:<id>`     its own card codes (what "12 in stock" counts);
- `platform`       the supply catalog every shop lists (and writes whose shop is unknown);
- `platform-stock` the supply codes, shared by every shop that lists their product.

A change replaces the token with a new random one right after its transaction commits (never
before: a process reading in between would cache the old rows under the new token), so the
next request in any process misses its cache and reads the database. Random tokens, not
counters: a Redis restart cannot bring back a token an old entry was stored under.

Changes are noticed where they are written, by the database session every service uses:

1. rows changed through the ORM (after_flush): a Product, a LevelPrice, the Tenant row…;
2. bulk ORM statements (do_orm_execute): `update(CardCode)…` reserving codes at checkout,
   releasing them when an order expires, voiding them; the bound shop's tokens (none bound:
   every shop's);
3. writes that bypass the ORM call `catalog_changed()` / `stock_changed()` themselves (the
   binary COPY of a code import).

So every service — console, REST API, CLI, workers — invalidates without remembering to.

Stock is a token of its own because it changes on every checkout (a reservation takes codes
out of stock; expiry puts them back), and a stock change must not throw away a shop's pages:

- the shop's stock map (product id -> units, the shelf's one or two indexed count queries) is
  kept per shop beside the tokens it was counted under (`stock_map`). After a change of the
  stock tokens alone, a process keeps using the map it has for up to
  STOREFRONT_STOCK_STALE_SECONDS after counting it (default 5; 0 in tests: re-counted after
  every change), then counts again: a shop selling every second costs one count per process
  per window, not one per sale. Shown stock is thus at most that many seconds old (plus the
  moment a change takes to be announced); a sold-out product shows sold out within that bound.
  A briefly stale count is harmless: checkout reserves real codes and refuses what is gone.
  A change of the catalog (shop or platform token) is never bridged: a new shelf is counted
  at once;
- pages are kept under the shop and platform tokens and the stock of the products they show
  (the home page: the shelf; a category: its products; a product page: that product), not
  under the stock tokens. A sale of one product re-renders the pages that show its count
  (home, its category, its page), and the shop's other pages stay kept. Where the shop hides
  counts, a page shows only "in stock" or "sold out" and is kept under that
  (`stock_as_shown`): a sale re-renders nothing until the product sells out. The fast lane
  checks the same: the stock the kept page shows against the current stock map.

Chosen over stand-ins filled at serve time (one kept page, stock written in per response):
that would need every theme's stock markup (classes, the buy button, the macro) turned into
stand-ins; this keeps themes plain templates and every page rendered whole.

Reading the tokens costs no round trip to Redis per request: each process subscribes to the
cache's change channel, `publish()` announces the names it replaced on it (after the new
tokens are set), and a process keeps the tokens it read until their names are announced.
Before each use it reads what has arrived on its subscription (one non-blocking poll of the
socket), so a change made in any process is seen by the next request in every process. While
the subscription is not known to be live (not made yet, broken, Redis restarted) the process
keeps no tokens and asks Redis every time.

Without Redis (tests, `flask run`) the tokens live in the process: exact for one process;
entries then also expire after TENANT_CACHE_TTL seconds so several processes without Redis
see each other's changes within that window, as they do for host names. When Redis fails the
cache steps aside (pages are read from the database) for a few seconds and tries again.
Every entry expires after STOREFRONT_CACHE_SECONDS at the latest, a bound on staleness
should a token ever fail to be replaced.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from contextlib import suppress
from typing import Any

from flask import Flask, current_app, g, has_request_context
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.orm import Session

from ..appearance.models import ShopAsset
from ..catalog.models import (
    BulkPrice,
    Category,
    LevelPrice,
    MarkupRule,
    PriceLevel,
    Product,
    SupplyCategory,
    SupplyProduct,
)
from ..inventory.models import CardCode, SupplyCode
from ..tenants.models import Tenant
from ..tenants.scoping import TENANT_KEY

log = logging.getLogger(__name__)

PLATFORM = "platform"
PLATFORM_STOCK = "platform-stock"
REDIS_PAUSE = 10  # seconds the cache steps aside after a Redis error
TOKEN_TTL = 24 * 3600  # an unused shop's tokens leave Redis after a day (then: a new token)
DATA_ENTRIES = 4096  # snapshots: shop fronts, priced shelves, stock counts
PAGE_ENTRIES = 2048  # rendered pages, 10-20 KB each (a product page each: 50 a shop)
RESPONSE_ENTRIES = 2048  # kept answers of kameng/storefront/fast_lane.py, one per page variant
MIRROR_ENTRIES = 100_000  # tokens kept per process (4 per shop that was visited)
MESSAGE = (b"message", "message")

# Rows whose change is a change of a shop's catalog (or, for supply rows, of every shop's).
SHOP_MODELS = (Category, Product, LevelPrice, BulkPrice, MarkupRule, PriceLevel, ShopAsset)
PLATFORM_MODELS = (SupplyProduct, SupplyCategory)

_PENDING = "kameng.storefront_changes"
_MEMO = "_kameng_versions"
MISSING = object()


class Entries:
    """A thread-safe LRU map whose entries also expire."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return MISSING
            if found[0] < time.monotonic():
                del self._items[key]
                return MISSING
            self._items.move_to_end(key)
            return found[1]

    def put(self, key: Hashable, value: Any, seconds: float) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + seconds, value)
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class TokenMirror:
    """The tokens this process read from Redis, kept until Redis announces a change of them.

    A subscription of its own (a plain connection in subscribed mode) receives the names that
    `publish()` replaced; `get()` first reads everything that has arrived and forgets those
    names. The mirror holds tokens only while that subscription is live: it is emptied when
    the subscription is made or fails, so no announcement can be missed unnoticed.
    """

    def __init__(self, channel: str):
        self.channel = channel
        self.tokens: dict[str, str] = {}
        self.connection = None  # subscribed; None: not live (tokens are read from Redis)
        self.generation = 0  # one more whenever a subscription is made or dropped
        self.pid = 0
        self.retry_at = 0.0
        self.lock = threading.Lock()

    def get(self, url: str, names: tuple[str, ...]) -> tuple[str, ...] | None:
        """The tokens of `names` as Redis holds them now, or None (ask Redis)."""
        with self.lock:
            if not self._live(url):
                return None
            found = [self.tokens.get(name) for name in names]
            return None if None in found else tuple(found)

    def put(self, names: tuple[str, ...], values: tuple[str, ...], generation: int) -> None:
        """Keep tokens read from Redis under the subscription of `generation` (taken before
        reading them): any announcement since is read by the next get."""
        with self.lock:
            if (self.connection is None or self.generation != generation
                    or self.pid != os.getpid()):
                return
            if len(self.tokens) > MIRROR_ENTRIES:
                self.tokens.clear()
            self.tokens.update(zip(names, values, strict=True))

    def forget(self, names: Iterable[str] | None = None) -> None:
        with self.lock:
            if names is None:
                self.tokens.clear()
            for name in names or ():
                self.tokens.pop(name, None)

    def close(self) -> None:
        with self.lock:
            self._drop()

    def _live(self, url: str) -> bool:
        if self.pid != os.getpid():  # a forked process shares no subscription with its parent
            self.connection, self.pid = None, os.getpid()
            self.tokens.clear()
        if self.connection is not None and not self.connection.is_connected:
            self._drop()  # closed under us: never let it reconnect unsubscribed
        if self.connection is None and not self._subscribe(url):
            return False
        try:
            while self.connection.can_read(timeout=0):
                reply = self.connection.read_response()
                if isinstance(reply, list) and len(reply) == 3 and reply[0] in MESSAGE:
                    data = reply[2].decode() if isinstance(reply[2], bytes) else str(reply[2])
                    for name in data.split():
                        self.tokens.pop(name, None)
                else:  # anything unexpected: trust nothing kept so far
                    self.tokens.clear()
        except (RedisError, OSError, ValueError) as error:
            log.warning("storefront cache: change subscription lost (%s)", error)
            self._drop()
            return False
        return True

    def _subscribe(self, url: str) -> bool:
        if time.monotonic() < self.retry_at:
            return False
        self.retry_at = time.monotonic() + 1.0
        # RESP2: messages arrive as plain replies on this connection (RESP3 would hand them to
        # push handlers instead).
        connection = Redis.from_url(url, protocol=2, socket_timeout=0.5,
                                    socket_connect_timeout=0.5).connection_pool.make_connection()
        try:
            connection.connect()
            connection.send_command("SUBSCRIBE", self.channel)
            reply = connection.read_response()
            if not (isinstance(reply, list) and reply[0] in (b"subscribe", "subscribe")):
                raise RedisError(f"unexpected answer to SUBSCRIBE: {reply!r}")
        except (RedisError, OSError) as error:
            log.warning("storefront cache: cannot subscribe to changes (%s)", error)
            with suppress(Exception):
                connection.disconnect()
            return False
        self.connection, self.pid = connection, os.getpid()
        self.generation += 1
        self.tokens.clear()  # only tokens read from now on are covered by the subscription
        return True

    def _drop(self) -> None:
        if self.connection is not None:
            with suppress(Exception):
                self.connection.disconnect()
        self.connection = None
        self.generation += 1
        self.tokens.clear()


class StorefrontCache:
    """One app's cache: its entries, its tokens without Redis, its Redis client."""

    def __init__(self, database_uri: str):
        # Keys name the database: two deployments (or test runs) sharing a Redis never mix.
        self.prefix = f"kameng:{hashlib.sha256(database_uri.encode()).hexdigest()[:10]}:front"
        self.data = Entries(DATA_ENTRIES)
        self.pages = Entries(PAGE_ENTRIES)
        self.responses = Entries(RESPONSE_ENTRIES)  # whole answers of the fast lane
        self.local: dict[str, str] = {}
        self.local_lock = threading.Lock()
        self.redis: Redis | None = None
        self.redis_url: str | None = None
        self.redis_paused_until = 0.0
        self.mirror = TokenMirror(f"{self.prefix}:changes")

    def clear(self) -> None:
        self.data.clear()
        self.pages.clear()
        self.responses.clear()
        self.mirror.forget()
        with self.local_lock:
            self.local.clear()

    def client(self, url: str) -> Redis:
        if self.redis is None or self.redis_url != url:
            # Short timeouts: a slow Redis must not hold pages up; the cache steps aside.
            self.redis = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5,
                                        health_check_interval=30)
            self.redis_url = url
            self.mirror.close()
        return self.redis


def init_app(app: Flask) -> None:
    app.extensions["kameng.storefront_cache"] = StorefrontCache(
        str(app.config.get("SQLALCHEMY_DATABASE_URI", "")))


def responses(app: Flask) -> Entries:
    """The fast lane's kept answers (kameng/storefront/fast_lane.py)."""
    return _cache(app).responses


def _cache(app: Flask | None = None) -> StorefrontCache:
    app = app or current_app
    cache = app.extensions.get("kameng.storefront_cache")
    if cache is None:  # an app built without init_app (a test's second app)
        init_app(app)
        cache = app.extensions["kameng.storefront_cache"]
    return cache


def clear(app: Flask | None = None) -> None:
    """Forget everything this process cached (tests: after emptying the database)."""
    _cache(app).clear()


def _enabled(app: Flask | None = None) -> bool:
    return (app or current_app).config.get("STOREFRONT_CACHE_SECONDS", 300) > 0


def lifetime() -> float:
    """Seconds an entry may live: STOREFRONT_CACHE_SECONDS, and without Redis no longer than
    host names are cached (other processes cannot tell this one about their changes)."""
    seconds = current_app.config.get("STOREFRONT_CACHE_SECONDS", 300)
    if not current_app.config.get("REDIS_URL"):
        seconds = min(seconds, current_app.config.get("TENANT_CACHE_TTL", 5))
    return seconds


# -- version tokens -------------------------------------------------------------------------


def _names(tenant_id: int) -> tuple[str, str, str, str]:
    return f"shop:{tenant_id}", f"stock:{tenant_id}", PLATFORM, PLATFORM_STOCK


def _new_token() -> str:
    return secrets.token_hex(8)


def versions(tenant_id: int, app: Flask | None = None) -> tuple[str, str, str, str] | None:
    """The shop's tokens (shop, stock, platform, platform stock), read once per request;
    None when the cache is off or Redis is failing (then nothing may be cached). `app`: read
    outside a request (kameng/storefront/fast_lane.py)."""
    if app is not None:
        return _read_tokens(_names(tenant_id), app) if _enabled(app) else None
    memo = g.get(_MEMO) if has_request_context() else None
    if memo is not None and tenant_id in memo:
        return memo[tenant_id]
    found = _read_tokens(_names(tenant_id)) if _enabled() else None
    if has_request_context():
        if memo is None:
            memo = g._kameng_versions = {}
        memo[tenant_id] = found
    return found


def _read_tokens(names: tuple[str, ...], app: Flask | None = None) -> tuple[str, ...] | None:
    app = app or current_app
    cache = _cache(app)
    url = app.config.get("REDIS_URL")
    if not url:
        with cache.local_lock:
            return tuple(cache.local.setdefault(name, _new_token()) for name in names)
    if time.monotonic() < cache.redis_paused_until:
        return None
    keys = [f"{cache.prefix}:{name}" for name in names]
    try:
        redis = cache.client(url)
        known = cache.mirror.get(url, names)
        if known is not None:
            return known
        generation = cache.mirror.generation  # before reading: see TokenMirror.put
        values = redis.mget(keys)
        if None in values:  # never set, or expired: start it with a token nobody has used
            with redis.pipeline(transaction=False) as pipe:
                for key, value in zip(keys, values, strict=True):
                    if value is None:
                        pipe.set(key, _new_token(), nx=True, ex=TOKEN_TTL)
                pipe.execute()
            values = redis.mget(keys)
    except RedisError as error:
        cache.redis_paused_until = time.monotonic() + REDIS_PAUSE
        cache.mirror.close()
        log.warning("storefront cache: Redis unavailable (%s); reading from the database", error)
        return None
    tokens = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values)
    cache.mirror.put(names, tokens, generation)
    return tokens


def publish(names: Iterable[str]) -> None:
    """Give each named token a new value, in this process and in Redis (after a commit)."""
    names = sorted(set(names))
    if not names:
        return
    cache = _cache()
    with cache.local_lock:
        for name in names:
            cache.local[name] = _new_token()
    if has_request_context():
        g.pop(_MEMO, None)  # this request reads the new tokens from now on
    url = current_app.config.get("REDIS_URL")
    if not url:
        return
    cache.mirror.forget(names)
    try:
        with cache.client(url).pipeline(transaction=False) as pipe:
            for name in names:
                pipe.set(f"{cache.prefix}:{name}", _new_token(), ex=TOKEN_TTL)
            # After the new tokens: a process told of the change reads them, never older ones.
            pipe.publish(cache.mirror.channel, " ".join(names))
            pipe.execute()
    except RedisError as error:
        # Other processes keep their entries until they expire (STOREFRONT_CACHE_SECONDS).
        log.warning("storefront cache: could not publish a change of %s (%s)", names, error)


# -- noticing changes -------------------------------------------------------------------------


def _note(session: Session, name: str) -> None:
    session.info.setdefault(_PENDING, set()).add(name)


def catalog_changed(tenant_id: int | None = None, session: Session | None = None) -> None:
    """A shop's catalog (None: the supply catalog, i.e. every shop's) changed in this
    transaction: its pages are read afresh once the transaction commits."""
    from ..extensions import db

    _note(session or db.session(), f"shop:{tenant_id}" if tenant_id is not None else PLATFORM)


def stock_changed(tenant_id: int | None = None, session: Session | None = None) -> None:
    """A shop's codes (None: supply codes, shared by every shop) went in or out of stock in
    this transaction."""
    from ..extensions import db

    _note(session or db.session(),
          f"stock:{tenant_id}" if tenant_id is not None else PLATFORM_STOCK)


def _name_for_row(obj: object) -> str | None:
    if isinstance(obj, Tenant):
        return f"shop:{obj.id}" if obj.id is not None else None
    if isinstance(obj, SHOP_MODELS):
        return f"shop:{obj.tenant_id}" if obj.tenant_id is not None else PLATFORM
    if isinstance(obj, CardCode):
        return f"stock:{obj.tenant_id}" if obj.tenant_id is not None else PLATFORM_STOCK
    if isinstance(obj, PLATFORM_MODELS):
        return PLATFORM
    if isinstance(obj, SupplyCode):
        return PLATFORM_STOCK
    return None


@event.listens_for(Session, "after_flush")
def _note_changed_rows(session: Session, flush_context) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        name = _name_for_row(obj)
        if name is not None and (obj not in session.dirty or session.is_modified(obj)):
            _note(session, name)


def _name_for_statement(model: type, tenant_id: int | None) -> str | None:
    if issubclass(model, Tenant):
        return PLATFORM  # which shops an UPDATE of tenants touched is not known: all of them
    if issubclass(model, SHOP_MODELS):
        return f"shop:{tenant_id}" if tenant_id is not None else PLATFORM
    if issubclass(model, CardCode):
        return f"stock:{tenant_id}" if tenant_id is not None else PLATFORM_STOCK
    if issubclass(model, PLATFORM_MODELS):
        return PLATFORM
    if issubclass(model, SupplyCode):
        return PLATFORM_STOCK
    return None


@event.listens_for(Session, "do_orm_execute")
def _note_bulk_statements(state) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    tenant_id = state.session.info.get(TENANT_KEY)  # the tenant guard confines the statement
    for mapper in state.all_mappers:
        name = _name_for_statement(mapper.class_, tenant_id)
        if name is not None:
            _note(state.session, name)


@event.listens_for(Session, "after_commit")
def _publish_after_commit(session: Session) -> None:
    names = session.info.pop(_PENDING, None)
    if names:
        with suppress(RuntimeError):  # no app context: no process cache to tell
            publish(names)


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


# -- reading through the cache ------------------------------------------------------------------


def cached(store: str, key: tuple, load: Callable[[], Any]) -> Any:
    """The entry at `key` (which must carry the version tokens it depends on), loaded and kept
    on a miss. `store` is "data" (snapshots) or "pages" (rendered pages)."""
    entries = getattr(_cache(), store)
    value = entries.get(key)
    if value is MISSING:
        value = load()
        entries.put(key, value, lifetime())
    return value


def lookup(store: str, key: tuple) -> Any:
    return getattr(_cache(), store).get(key)


def keep(store: str, key: tuple, value: Any) -> None:
    getattr(_cache(), store).put(key, value, lifetime())


# -- the stock map ----------------------------------------------------------------------------


class KeptStock:
    """A shop's stock map, the tokens it was counted under and when (time.monotonic())."""

    __slots__ = ("counted_at", "tokens", "units")

    def __init__(self, tokens: tuple[str, ...], counted_at: float, units: dict):
        self.tokens, self.counted_at, self.units = tokens, counted_at, units


def _usable(kept: Any, tokens: tuple[str, ...], app: Flask) -> bool:
    """Whether a kept stock map may be shown under `tokens`: counted under them, or only the
    stock tokens changed since and it is younger than STOREFRONT_STOCK_STALE_SECONDS."""
    if not isinstance(kept, KeptStock):
        return False
    if kept.tokens == tokens:
        return True
    if (kept.tokens[0], kept.tokens[2]) != (tokens[0], tokens[2]):
        return False  # the catalog changed: the shelf may have other products
    stale = app.config.get("STOREFRONT_STOCK_STALE_SECONDS", 0)
    return time.monotonic() - kept.counted_at < stale


def stock_map(tenant_id: int, tokens: tuple[str, ...], count: Callable[[], dict]) -> dict:
    """The shop's stock map (see the module's docstring), counted with `count()` when none
    usable is kept."""
    entries = _cache().data
    kept = entries.get(("stock", tenant_id))
    if _usable(kept, tokens, current_app):
        return kept.units
    counted_at = time.monotonic()  # before counting: the age bound holds from the read
    units = count()
    entries.put(("stock", tenant_id), KeptStock(tokens, counted_at, units), lifetime())
    return units


# What a page shows of a product's stock: (product id, floor). Floor None: the count itself
# ("12 in stock"); a number: only whether the stock reaches it — the fewest units one can buy,
# for shops that hide counts ("in stock" / "sold out"), whose pages then outlive sales.
Shown = tuple[int, "int | None"]


def stock_as_shown(units: dict, shows: Iterable[Shown]) -> tuple:
    """What pages showing `shows` show of the stock map `units` (None: unlimited)."""
    shown = []
    for product_id, floor in shows:
        count = units.get(product_id)
        shown.append(count if floor is None or count is None else count >= floor)
    return tuple(shown)


def peek_stock(app: Flask, tenant_id: int, tokens: tuple[str, ...]) -> dict | None:
    """The shop's stock map if one usable under `tokens` is kept (the fast lane: never
    counts), else None."""
    kept = _cache(app).data.get(("stock", tenant_id))
    return kept.units if _usable(kept, tokens, app) else None
