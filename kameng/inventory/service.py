"""Card-code inventory: import (fast, streaming, de-duplicated, encrypted), stock counts,
void and delete of unsold codes, audited export, and re-encryption on key rotation.

One set of functions serves both kinds of stock: a shop's own product (`Product`, codes in
`card_codes`) and a supply product (`SupplyProduct`, codes in `supply_codes`, platform-wide).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, delete, func, insert, select, update

from ..audit.service import Actor, record
from ..catalog.models import Product, SupplyProduct
from ..errors import DomainError
from ..extensions import db
from ..security.crypto import PlatformSecret, keyring
from ..storefront.cache import stock_changed
from ..tenants.scoping import platform_scope
from .models import MAX_CODE_LENGTH, CardCode, SupplyCode

CHUNK = 20_000
UNLIMITED_KINDS = ("text", "manual", "topup")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass
class ImportReport:
    added: int = 0
    duplicates: int = 0
    invalid: int = 0
    batch_id: int | None = None

    @property
    def total(self) -> int:
        return self.added + self.duplicates + self.invalid

    def summary(self) -> str:
        return (f"{self.added} added, {self.duplicates} duplicate"
                f"{'s' if self.duplicates != 1 else ''}, {self.invalid} invalid")


def _stock_of(target: Product | SupplyProduct):
    """(code model, extra column values) of the stock that holds `target`'s codes."""
    if isinstance(target, SupplyProduct):
        return SupplyCode, {}
    if target.is_supply:
        raise DomainError(_l("Codes of a supply product are held by the platform; "
                             "add codes to your own products only."))
    return CardCode, {"tenant_id": target.tenant_id}


def _check_card_product(target) -> None:
    if target.delivery_kind != "card":
        raise DomainError(_l("Only products delivered as card codes hold codes."))


# -- reading input -------------------------------------------------------------------------------


def normalize_code(raw: str) -> str | None:
    """A code as stored: trimmed. None when invalid (too long, or with control characters)."""
    code = raw.strip().lstrip("\ufeff").strip()
    if len(code) > MAX_CODE_LENGTH or CONTROL_CHARACTERS.search(code):
        return None
    return code


def lines_of_text(content: str) -> Iterator[str]:
    """One code per line (pasted text or a .txt file)."""
    yield from content.splitlines()


def lines_of_csv(stream: Iterable[str]) -> Iterator[str]:
    """Codes from a CSV: the `code` (or `卡密`) column when there is a header, else every row's
    non-empty cells joined by a space (card number + password pairs stay one code)."""
    reader = csv.reader(stream)
    column = None
    for index, row in enumerate(_readable(reader)):
        cells = [cell.strip() for cell in row]
        if index == 0:
            lowered = [c.lower().lstrip("\ufeff") for c in cells]
            for name in ("code", "codes", "card", "卡密"):
                if name in lowered:
                    column = lowered.index(name)
                    break
            if column is not None:
                continue
        if column is not None:
            yield cells[column] if column < len(cells) else ""
        else:
            yield " ".join(c for c in cells if c)


def _readable(reader) -> Iterator[list[str]]:
    try:
        yield from reader
    except csv.Error as error:
        raise DomainError(_l("The CSV file cannot be read (%(error)s).",
                             error=error), field="file") from None


def lines_of_upload(filename: str, data: bytes) -> Iterator[str]:
    """Codes from an uploaded .txt or .csv file (UTF-8, with or without BOM)."""
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DomainError(_l("The file must be UTF-8 text."), field="file") from None
    if filename.lower().endswith(".csv"):
        return lines_of_csv(io.StringIO(content, newline=""))
    return lines_of_text(content)


# -- import -----------------------------------------------------------------------------------


def import_codes(target: Product | SupplyProduct, lines: Iterable[str], *, actor: Actor,
                 progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import codes into `target`'s stock: trimmed, de-duplicated (within the input and against
    the stock, by keyed fingerprint), encrypted, and audited as one batch.

    Runs in the caller's transaction; the caller commits. The product row is locked for the
    duration, so two imports into one product take turns; the unique index on
    (product, fingerprint) stays the last word. Only new codes are encrypted and written:
    with COPY on PostgreSQL, with INSERT OR IGNORE elsewhere.
    """
    model, extra = _stock_of(target)
    _check_card_product(target)
    event = record(actor, "codes.import", tenant_id=extra.get("tenant_id"),
                   target=f"{'supply ' if model is SupplyCode else ''}product {target.id}")
    report = ImportReport(batch_id=event.id)
    ring = keyring()
    fingerprint = ring.fingerprinter()
    postgres = db.session.get_bind().dialect.name == "postgresql"
    writer_class = _CopyWriter if postgres else _PortableWriter
    writer = writer_class(model, type(target), target.id, extra, event.id)
    seen = writer.existing_fingerprints()

    codes: list[str] = []
    prints: list[bytes] = []

    def flush() -> None:
        if codes:
            writer.write(prints, ring.encrypt_many(codes))
        if progress:
            progress(len(codes))
        codes.clear()
        prints.clear()

    try:
        for raw in lines:
            if not raw.strip():
                continue
            code = normalize_code(raw)
            if not code:
                report.invalid += 1
                continue
            mark = fingerprint(code)
            if mark in seen:
                report.duplicates += 1
                continue
            seen.add(mark)
            codes.append(code)
            prints.append(mark)
            if len(codes) >= CHUNK:
                flush()
        flush()
        written, report.added = writer.finish()
    except BaseException as error:
        writer.close(error)
        raise
    report.duplicates += written - report.added  # lost a race with another writer (SQLite)
    if report.added:  # COPY bypasses the ORM: tell the shop pages (after the commit)
        stock_changed(extra.get("tenant_id"))
    event.details = {"added": report.added, "duplicates": report.duplicates,
                     "invalid": report.invalid}
    db.session.flush()
    return report


class _Writer:
    def __init__(self, model, product_model, product_id: int, extra: dict, batch_id: int):
        self.model, self.product_id, self.extra, self.batch_id = model, product_id, extra, batch_id
        self.written = 0
        self.lock_product(product_model)

    def lock_product(self, product_model) -> None:
        """Imports into one product take turns (a row lock where the database has them)."""
        db.session.execute(
            select(product_model.id).where(product_model.id == self.product_id).with_for_update()
        )

    def close(self, error: BaseException | None = None) -> None:
        """Release what the writer holds (after an error, abandon the rows in flight)."""

    def existing_fingerprints(self) -> set[bytes]:
        rows = db.session.execute(
            select(self.model.fingerprint).where(self.model.product_id == self.product_id)
            .execution_options(yield_per=CHUNK)
        )
        return {bytes(mark) for (mark,) in rows}


class _CopyWriter(_Writer):
    """PostgreSQL: one binary COPY straight into the codes table for the whole import, so the
    server stores rows while Python encrypts the next ones."""

    copy = None

    def _open(self) -> None:
        columns = ["product_id", "fingerprint", "ciphertext", "status", "batch_id"]
        types = ["int4", "bytea", "bytea", "text", "int4"]
        self.tail = ("available", self.batch_id)
        if "tenant_id" in self.extra:
            columns.append("tenant_id")
            types.append("int4")
            self.tail += (self.extra["tenant_id"],)
        raw = db.session.connection().connection.driver_connection
        self.stack = ExitStack()
        cursor = self.stack.enter_context(raw.cursor())
        self.copy = self.stack.enter_context(cursor.copy(
            f"COPY {self.model.__table__.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
        ))
        self.copy.set_types(types)

    def write(self, fingerprints: list[bytes], ciphertexts: list[bytes]) -> None:
        if self.copy is None:
            self._open()
        product_id, tail, write_row = self.product_id, self.tail, self.copy.write_row
        for mark, blob in zip(fingerprints, ciphertexts, strict=True):
            write_row((product_id, mark, blob, *tail))
        self.written += len(fingerprints)

    def close(self, error: BaseException | None = None) -> None:
        if self.copy is not None:
            stack, self.copy = self.stack, None
            if error is None:
                stack.close()
            else:
                stack.__exit__(type(error), error, error.__traceback__)

    def finish(self) -> tuple[int, int]:
        self.close()
        return self.written, self.written


class _PortableWriter(_Writer):
    """SQLite and others: INSERT OR IGNORE in chunks; the unique index drops late duplicates."""

    def __init__(self, *args):
        super().__init__(*args)
        self.before = self._count()

    def _count(self) -> int:
        return db.session.scalar(
            select(func.count()).select_from(self.model)
            .where(self.model.product_id == self.product_id)
        )

    def write(self, fingerprints: list[bytes], ciphertexts: list[bytes]) -> None:
        now = datetime.now(UTC)
        rows = [
            {"product_id": self.product_id, "fingerprint": mark, "ciphertext": blob,
             "status": "available", "batch_id": self.batch_id, "created_at": now, **self.extra}
            for mark, blob in zip(fingerprints, ciphertexts, strict=True)
        ]
        db.session.execute(insert(self.model).prefix_with("OR IGNORE"), rows)
        self.written += len(rows)

    def finish(self) -> tuple[int, int]:
        return self.written, self._count() - self.before


# -- stock -------------------------------------------------------------------------------------


def stock_counts(target: Product | SupplyProduct) -> dict[str, int]:
    """Codes of one product by status: available, reserved, sold, void."""
    model = SupplyCode if isinstance(target, SupplyProduct) else CardCode
    rows = db.session.execute(
        select(model.status, func.count()).where(model.product_id == target.id)
        .group_by(model.status)
    ).all()
    counts = dict.fromkeys(("available", "reserved", "sold", "void"), 0)
    counts.update(dict(rows))
    return counts


def available_stock(products: Iterable[Product]) -> dict[int, int | None]:
    """Units a buyer can order now, per shop product (None: not limited by codes)."""
    products = list(products)
    stock: dict[int, int | None] = {}
    own = [p.id for p in products if not p.is_supply and p.kind == "card"]
    supply = {p.supply_product_id: p.id for p in products if p.is_supply and p.kind == "card"}
    counts = {}
    if own:
        counts.update(dict(db.session.execute(
            select(CardCode.product_id, func.count())
            .where(CardCode.product_id.in_(own), CardCode.status == "available")
            .group_by(CardCode.product_id)).all()))
    if supply:
        # Supply stock is the platform's: only its count is shown, never a code.
        supply_counts = dict(db.session.execute(
            select(SupplyCode.product_id, func.count())
            .where(SupplyCode.product_id.in_(supply), SupplyCode.status == "available")
            .group_by(SupplyCode.product_id)).all())
        counts.update({supply[sid]: n for sid, n in supply_counts.items()})
    for product in products:
        stock[product.id] = counts.get(product.id, 0) if product.kind == "card" else None
        if product.kind == "topup" and getattr(product, "upstream_stock", None) is not None:
            stock[product.id] = product.upstream_stock  # an upstream Kameng shop's, synced
    return stock


def stock_summary(targets: Iterable[Product | SupplyProduct]) -> dict[int, dict | None]:
    """Per product: {"available": n, "low": below its threshold} for `card` products (None for
    kinds not limited by codes), in one query per kind of stock."""
    targets = list(targets)
    summary: dict[int, dict | None] = {}
    for model, group in ((SupplyCode, [t for t in targets if isinstance(t, SupplyProduct)]),
                         (CardCode, [t for t in targets if not isinstance(t, SupplyProduct)])):
        cards = [t for t in group if t.delivery_kind == "card"]
        counts = dict(db.session.execute(
            select(model.product_id, func.count())
            .where(model.product_id.in_([t.id for t in cards]), model.status == "available")
            .group_by(model.product_id)).all()) if cards else {}
        for target in group:
            if target.delivery_kind != "card":
                summary[target.id] = None
                continue
            available = counts.get(target.id, 0)
            threshold = target.low_stock_threshold or 0
            summary[target.id] = {"available": available,
                                  "low": threshold > 0 and available < threshold}
    return summary


def low_stock(target: Product | SupplyProduct) -> bool:
    threshold = target.low_stock_threshold or 0
    return threshold > 0 and stock_counts(target)["available"] < threshold


def list_codes(target: Product | SupplyProduct, status: str | None = None, limit: int = 200):
    """Code rows for the console (ids, status, dates): never their content."""
    model, _ = _stock_of(target)
    query = (select(model.id, model.status, model.batch_id, model.created_at, model.sold_at,
                    model.order_id)
             .where(model.product_id == target.id).order_by(model.id.desc()).limit(limit))
    if status:
        query = query.where(model.status == status)
    return db.session.execute(query).all()


def void_codes(target: Product | SupplyProduct, code_ids: Iterable[int] | None, *,
               actor: Actor) -> int:
    """Void available codes (all of them when `code_ids` is None); sold codes never change."""
    model, extra = _stock_of(target)
    query = update(model).where(model.product_id == target.id, model.status == "available")
    if code_ids is not None:
        query = query.where(model.id.in_(list(code_ids)))
    count = db.session.execute(query.values(status="void")).rowcount
    record(actor, "codes.void", tenant_id=extra.get("tenant_id"),
           target=f"product {target.id}", count=count)
    return count


def delete_codes(target: Product | SupplyProduct, code_ids: Iterable[int] | None, *,
                 actor: Actor) -> int:
    """Delete unsold codes (available or void); reserved and sold codes are kept."""
    model, extra = _stock_of(target)
    query = delete(model).where(model.product_id == target.id,
                                model.status.in_(("available", "void")))
    if code_ids is not None:
        query = query.where(model.id.in_(list(code_ids)))
    count = db.session.execute(query).rowcount
    record(actor, "codes.delete", tenant_id=extra.get("tenant_id"),
           target=f"product {target.id}", count=count)
    return count


def csv_safe(value: str) -> str:
    """Guard against formula injection when the CSV is opened in a spreadsheet (a text cell
    starting with = + - @ or a tab/CR gets a leading apostrophe)."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def export_unsold(target: Product | SupplyProduct, *, actor: Actor) -> str:
    """CSV of the available codes in plaintext, recorded in the audit log."""
    model, extra = _stock_of(target)
    ring = keyring()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "code", "imported_at"])
    count = 0
    query = (select(model.id, model.ciphertext, model.created_at)
             .where(model.product_id == target.id, model.status == "available")
             .order_by(model.id))
    for code_id, blob, created in db.session.execute(query):
        writer.writerow([code_id, csv_safe(ring.decrypt(blob)),
                         created.isoformat() if created else ""])
        count += 1
    record(actor, "codes.export", tenant_id=extra.get("tenant_id"),
           target=f"product {target.id}", count=count)
    return out.getvalue()


# -- reservation and sale ------------------------------------------------------------------------


class SoldOut(DomainError):
    """Not enough codes in stock for the quantity asked."""

    status_code = 409

    def __init__(self, available: int):
        message = (_l("Sorry, this product is sold out.") if available <= 0 else
                   _l("Sorry, only %(available)s left in stock.", available=available))
        super().__init__(message, field="qty")
        self.available = available


def code_stock(product: Product):
    """(code model, the product id its codes are kept under, extra filter) for a shop product."""
    if product.is_supply:
        return SupplyCode, product.supply_product_id
    return CardCode, product.id


def claim_codes(model, product_id: int, qty: int, values: dict, *,
                status: str = "available") -> int:
    """Mark up to `qty` codes of `product_id` in `status` with `values`; returns how many.

    The oldest codes go first. On PostgreSQL the rows are picked with FOR UPDATE SKIP LOCKED, so
    concurrent buyers take different codes without waiting on each other; SQLite serialises
    writers, so the single UPDATE is atomic there too.
    """
    pick = (select(model.id).where(model.product_id == product_id, model.status == status)
            .order_by(model.id).limit(qty))
    if db.session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    return db.session.execute(
        update(model).where(model.id.in_(pick.scalar_subquery())).values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount


def reserve_codes(product: Product, qty: int, *, order_id: int, until: datetime) -> None:
    """Reserve `qty` codes for an unpaid order, or raise SoldOut (the caller rolls back)."""
    model, product_id = code_stock(product)
    values = {"status": "reserved", "order_id": order_id, "reserved_until": until}
    if model is SupplyCode:
        values["tenant_id"] = product.tenant_id
    taken = claim_codes(model, product_id, qty, values)
    if taken < qty:
        raise SoldOut(available=taken)


def release_codes(order_id: int, tenant_id: int) -> int:
    """Put the codes an unpaid order reserved back into stock."""
    released = db.session.execute(
        update(CardCode).where(CardCode.order_id == order_id, CardCode.status == "reserved")
        .values(status="available", order_id=None, reserved_until=None)
        .execution_options(synchronize_session=False)).rowcount
    released += db.session.execute(
        update(SupplyCode).where(SupplyCode.order_id == order_id,
                                 SupplyCode.tenant_id == tenant_id,
                                 SupplyCode.status == "reserved")
        .values(status="available", order_id=None, reserved_until=None, tenant_id=None)
        .execution_options(synchronize_session=False)).rowcount
    return released


def sell_codes(product: Product, qty: int, *, order_id: int, line_id: int) -> int:
    """Sell the codes reserved for the order; top up from stock if fewer were reserved (a late
    payment). Returns how many codes the line now has (qty, or fewer when stock ran out)."""
    model, product_id = code_stock(product)
    now = datetime.now(UTC)
    scope = [model.order_id == order_id]
    if model is SupplyCode:
        scope.append(model.tenant_id == product.tenant_id)
    sold = db.session.execute(
        update(model).where(*scope, model.product_id == product_id, model.status == "reserved")
        .values(status="sold", order_line_id=line_id, sold_at=now, reserved_until=None)
        .execution_options(synchronize_session=False)).rowcount
    if sold >= qty:
        return sold  # the usual case: the reservation covered the line
    have = db.session.scalar(  # all the line has now, with what an earlier attempt sold it
        select(func.count()).select_from(model).where(*scope, model.status == "sold",
                                                      model.order_line_id == line_id))
    if have < qty:
        values = {"status": "sold", "order_id": order_id, "order_line_id": line_id,
                  "sold_at": now}
        if model is SupplyCode:
            values["tenant_id"] = product.tenant_id
        have += claim_codes(model, product_id, qty - have, values)
    return have


def sell_reservations(lines: list[tuple[Product, int, int, int]]) -> bool:
    """`sell_codes` for several order lines at once, (product, qty, order id, line id) each:
    sells the codes reserved for them with one UPDATE per code table. True when every line
    got exactly its qty; otherwise (a reservation that lapsed before a late payment, say) the
    caller rolls back and sells line by line with `sell_codes`."""
    now = datetime.now(UTC)
    params: dict = {}
    for product, _qty, order_id, line_id in lines:
        model, product_id = code_stock(product)
        row = {"order": order_id, "product": product_id, "line": line_id}
        if model is SupplyCode:
            row["tenant"] = product.tenant_id
        params.setdefault(model, []).append(row)
    sold = 0
    for model, rows in params.items():
        # tell the storefront cache what the ORM UPDATE of `sell_codes` tells it
        if model is SupplyCode:
            stock_changed(None)  # supply codes: every shop's stock
        else:
            for tenant_id in {product.tenant_id for product, *_ in lines
                              if not product.is_supply}:
                stock_changed(tenant_id)
        table = model.__table__
        where = [table.c.order_id == bindparam("order"), table.c.product_id == bindparam("product"),
                 table.c.status == "reserved"]
        if model is SupplyCode:
            where.append(table.c.tenant_id == bindparam("tenant"))
        sold += db.session.execute(
            update(table).where(*where).values(status="sold", order_line_id=bindparam("line"),
                                               sold_at=now, reserved_until=None), rows).rowcount
    return sold == sum(qty for _, qty, _, _ in lines)


def codes_of_line(product_kind_supply: bool, line_id: int, tenant_id: int) -> list[str]:
    """The plaintext codes delivered on an order line (only for the buyer's order page)."""
    model = SupplyCode if product_kind_supply else CardCode
    query = select(model.ciphertext).where(model.order_line_id == line_id,
                                           model.status == "sold").order_by(model.id)
    if model is SupplyCode:
        query = query.where(model.tenant_id == tenant_id)
    ring = keyring()
    return [ring.decrypt(blob) for blob in db.session.scalars(query)]


def void_sold_codes(order_id: int, tenant_id: int) -> int:
    """A refunded order's delivered codes are void: never sold again."""
    count = 0
    for model in (CardCode, SupplyCode):
        query = update(model).where(model.order_id == order_id, model.status == "sold")
        if model is SupplyCode:
            query = query.where(model.tenant_id == tenant_id)
        count += db.session.execute(
            query.values(status="void").execution_options(synchronize_session=False)).rowcount
    return count


# -- key rotation --------------------------------------------------------------------------------


def rotate_keys(progress: Callable[[int], None] | None = None, batch: int = 5000) -> int:
    """Re-encrypt every code and fixed content not yet under the newest key. Platform-wide."""
    ring = keyring()
    changed = 0
    with platform_scope():
        for model in (CardCode, SupplyCode):
            last_id = 0
            while True:
                rows = db.session.execute(
                    select(model.id, model.ciphertext).where(model.id > last_id)
                    .order_by(model.id).limit(batch)
                ).all()
                if not rows:
                    break
                last_id = rows[-1][0]
                stale = [(i, blob) for i, blob in rows if ring.needs_rotation(blob)]
                if stale:
                    fresh = ring.encrypt_many([ring.decrypt(blob) for _, blob in stale])
                    db.session.execute(
                        update(model),
                        [{"id": i, "ciphertext": blob} for (i, _), blob in zip(stale, fresh,
                                                                               strict=True)],
                    )
                    changed += len(stale)
                db.session.commit()
                if progress:
                    progress(len(rows))
        for model in (Product, SupplyProduct):
            for item in db.session.scalars(select(model).where(model.text_content.is_not(None))):
                if ring.needs_rotation(item.text_content):
                    item.text_content = ring.encrypt(ring.decrypt(item.text_content))
                    changed += 1
        changed += _rotate_delivered_content(ring, batch)
        changed += _rotate_sealed_secrets(ring)
        for secret in db.session.scalars(select(PlatformSecret)):
            secret.value = ring.fernet.rotate(bytes(secret.value))
        db.session.commit()
    return changed


def _rotate_delivered_content(ring, batch: int) -> int:
    """Order lines' delivered text content (the buyer's order page decrypts it) and orders'
    link tokens (kept to put the order link in the buyer's mail)."""
    from ..orders.models import Order, OrderLine

    return (_rotate_column(ring, OrderLine, "content", batch)
            + _rotate_column(ring, Order, "token_cipher", batch))


def _rotate_column(ring, model, column: str, batch: int) -> int:
    field = getattr(model, column)
    changed, last_id = 0, 0
    while True:
        rows = db.session.execute(
            select(model.id, field).where(model.id > last_id, field.is_not(None))
            .order_by(model.id).limit(batch)).all()
        if not rows:
            return changed
        last_id = rows[-1][0]
        stale = [(i, bytes(blob)) for i, blob in rows if ring.needs_rotation(bytes(blob))]
        if stale:
            fresh = ring.encrypt_many([ring.decrypt(blob) for _, blob in stale])
            db.session.execute(update(model), [
                {"id": i, column: blob} for (i, _), blob in zip(stale, fresh, strict=True)])
            changed += len(stale)
        db.session.commit()


def _rotate_sealed_secrets(ring) -> int:
    """Every value sealed with `encrypt_secret` (Fernet tokens): payment and supplier
    credentials, API key and webhook secrets, two-factor secrets. MultiFernet.rotate re-seals
    with the newest key."""
    from cryptography.fernet import InvalidToken

    from ..api.models import ApiKey
    from ..delivery.models import Supplier
    from ..members.models import Customer
    from ..merchant.models import StaffUser
    from ..payments.models import PaymentAccount, PlatformPaymentAccount
    from ..superadmin.models import PlatformUser
    from ..webhooks.models import WebhookEndpoint

    sealed = [(PaymentAccount, "credentials"), (PlatformPaymentAccount, "credentials"),
              (ApiKey, "secret"), (WebhookEndpoint, "secret"), (Customer, "totp_secret"),
              (StaffUser, "totp_secret"), (PlatformUser, "totp_secret"),
              (Supplier, "credentials")]
    newest = ring.fernet._fernets[0]  # tokens already under the newest key stay as they are
    changed = 0
    for model, column in sealed:
        field = getattr(model, column)
        for row_id, token in db.session.execute(
                select(model.id, field).where(field.is_not(None), field != "")).all():
            try:
                newest.decrypt(token.encode())
                continue
            except InvalidToken:
                pass
            db.session.execute(update(model).where(model.id == row_id).values(
                {column: ring.fernet.rotate(token.encode()).decode()}))
            changed += 1
        db.session.commit()
    return changed
