"""Card codes: encrypted at rest, de-duplicated, counted, voided, exported, rotated, isolated."""

from __future__ import annotations

import logging
import threading

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select, text, update

from kameng.audit.models import AuditEvent
from kameng.audit.service import Actor
from kameng.catalog import service as catalog
from kameng.errors import DomainError, NotFound
from kameng.extensions import db
from kameng.inventory import service as inventory
from kameng.inventory.models import CardCode, SupplyCode
from kameng.security.crypto import keyring
from kameng.tenants.models import Tenant
from kameng.tenants.scoping import tenant_scope

SYSTEM = Actor.system()


@pytest.fixture
def shop(create_tenant):
    return create_tenant(slug="cards")


@pytest.fixture
def product_id(shop, in_app):
    with in_app(shop) as session:
        tenant = session.get(Tenant, shop.id)
        product = catalog.create_product(tenant, name="Game card", price=1000)
        session.commit()
        return product.id


def _import(app, shop, product_id, lines):
    with app.app_context(), tenant_scope(shop.id):
        report = inventory.import_codes(catalog.get_product(product_id), lines, actor=SYSTEM)
        db.session.commit()
        return report


def test_codes_are_never_stored_in_plaintext(app, shop, product_id):
    codes = [f"SECRET-CODE-{n:04d}" for n in range(50)]
    report = _import(app, shop, product_id, codes)
    assert (report.added, report.duplicates, report.invalid) == (50, 0, 0)
    with app.app_context():
        rows = db.session.execute(text("SELECT * FROM card_codes")).all()
        assert len(rows) == 50
        dump = b"".join(
            bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
            for row in rows for v in row
        )
        assert b"SECRET-CODE" not in dump
        other_tables = db.session.execute(text("SELECT * FROM audit_events")).all()
        assert "SECRET-CODE" not in repr(other_tables)
        with tenant_scope(shop.id):
            blobs = db.session.scalars(select(CardCode.ciphertext).order_by(CardCode.id)).all()
            assert [keyring().decrypt(b) for b in blobs] == codes


def test_duplicates_and_invalid_lines_are_reported(app, shop, product_id):
    first = _import(app, shop, product_id, ["A-1", "  A-2  ", "A-1", "", "   ", "x" * 1001,
                                            "bad\x00code", "A-3\r"])
    assert (first.added, first.duplicates, first.invalid) == (3, 1, 2)
    second = _import(app, shop, product_id, ["A-2", "A-4", "A-4"])
    assert (second.added, second.duplicates, second.invalid) == (1, 2, 0)
    with app.app_context(), tenant_scope(shop.id):
        assert inventory.stock_counts(catalog.get_product(product_id))["available"] == 4
        event = db.session.get(AuditEvent, second.batch_id)
        assert event.action == "codes.import"
        assert event.details == {"added": 1, "duplicates": 2, "invalid": 0}
        batches = set(db.session.scalars(select(CardCode.batch_id)))
        assert batches == {first.batch_id, second.batch_id}


def test_the_same_code_may_exist_in_two_products(app, shop, product_id, in_app):
    with in_app(shop) as session:
        other = catalog.create_product(session.get(Tenant, shop.id), name="Other", price=1)
        session.commit()
        other_id = other.id
    assert _import(app, shop, product_id, ["SAME"]).added == 1
    assert _import(app, shop, other_id, ["SAME"]).added == 1


def test_text_and_csv_inputs():
    assert list(inventory.lines_of_upload("codes.txt", "\ufeffA\r\nB\n\nC".encode())) == \
        ["A", "B", "", "C"]
    csv_with_header = b"id,code,note\n1,X-1,a\n2,X-2,b\n"
    assert list(inventory.lines_of_upload("codes.CSV", csv_with_header)) == ["X-1", "X-2"]
    pairs = "1234,abcd\n5678,efgh\n"  # card number + password, no header
    assert list(inventory.lines_of_upload("pairs.csv", pairs.encode())) == \
        ["1234 abcd", "5678 efgh"]
    chinese = "卡密\nK-1\n".encode()
    assert list(inventory.lines_of_upload("c.csv", chinese)) == ["K-1"]
    with pytest.raises(DomainError, match="UTF-8"):
        list(inventory.lines_of_upload("bad.txt", b"\xff\xfe\x00bad"))


def test_void_and_delete_never_touch_sold_or_reserved_codes(app, shop, product_id):
    _import(app, shop, product_id, [f"C-{n}" for n in range(6)])
    with app.app_context(), tenant_scope(shop.id):
        ids = db.session.scalars(select(CardCode.id).order_by(CardCode.id)).all()
        db.session.execute(update(CardCode).where(CardCode.id == ids[0]).values(status="sold"))
        db.session.execute(update(CardCode).where(CardCode.id == ids[1]).values(status="reserved"))
        product = catalog.get_product(product_id)
        assert inventory.void_codes(product, [ids[0], ids[1], ids[2]], actor=SYSTEM) == 1
        assert inventory.delete_codes(product, None, actor=SYSTEM) == 4  # 3 available + 1 void
        db.session.commit()
        assert inventory.stock_counts(product) == {"available": 0, "reserved": 1, "sold": 1,
                                                   "void": 0}


def test_export_is_guarded_against_formulas_and_audited(app, shop, product_id, caplog):
    caplog.set_level(logging.DEBUG)
    _import(app, shop, product_id, ["=HYPERLINK(1)", "+1", "PLAIN-1"])
    with app.app_context(), tenant_scope(shop.id):
        csv_text = inventory.export_unsold(catalog.get_product(product_id), actor=SYSTEM)
        db.session.commit()
        assert "'=HYPERLINK(1)" in csv_text and "'+1" in csv_text and "PLAIN-1" in csv_text
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "codes.export")).all()
        assert len(events) == 1 and events[0].details == {"count": 3}
        assert events[0].tenant_id == shop.id
    assert "PLAIN-1" not in caplog.text and "HYPERLINK" not in caplog.text


def test_supply_listings_and_other_kinds_hold_no_codes(app, create_tenant, in_app):
    with in_app() as session:
        supply = catalog.create_supply_product(name="Supply card", cost=100)
        text_product = catalog.create_supply_product(
            name="Guide", cost=100, delivery_kind="text", text_content="https://x.test/guide")
        session.commit()
        supply_id, text_id = supply.id, text_product.id
    shop = create_tenant(slug="lister")
    with in_app(shop) as session:
        listing = session.scalar(select(catalog.Product).where(
            catalog.Product.supply_product_id == supply_id))
        with pytest.raises(DomainError, match="held by the platform"):
            inventory.import_codes(listing, ["X"], actor=SYSTEM)
    with in_app() as session:
        with pytest.raises(DomainError, match="card codes"):
            inventory.import_codes(catalog.get_supply_product(text_id), ["X"], actor=SYSTEM)
        report = inventory.import_codes(catalog.get_supply_product(supply_id), ["S-1", "S-1"],
                                        actor=SYSTEM)
        session.commit()
        assert (report.added, report.duplicates) == (1, 1)
        assert session.scalar(select(func.count()).select_from(SupplyCode)) == 1
    with in_app(shop) as session:
        listing = session.scalar(select(catalog.Product).where(
            catalog.Product.supply_product_id == supply_id))
        assert inventory.available_stock([listing]) == {listing.id: 1}


def test_a_shop_cannot_reach_another_shops_codes(app, shop, product_id, create_tenant):
    _import(app, shop, product_id, ["MINE-1"])
    intruder = create_tenant(slug="intruder")
    with app.app_context(), tenant_scope(intruder.id):
        with pytest.raises(NotFound):
            catalog.get_product(product_id)
        assert db.session.scalars(select(CardCode)).all() == []
        assert inventory.available_stock([]) == {}


def _rotate_back(app, old_keys, new_key):
    """Re-seal everything under the keys the test started with, so the tests that follow run
    with their own keys."""
    app.config["ENCRYPTION_KEYS"] = [*old_keys, new_key]
    app.extensions.pop("kameng.keyring", None)
    with app.app_context():
        inventory.rotate_keys()
    app.config["ENCRYPTION_KEYS"] = old_keys
    app.extensions.pop("kameng.keyring", None)


def test_key_rotation_re_encrypts_everything(app, shop, product_id):
    _import(app, shop, product_id, ["ROT-1", "ROT-2"])
    old_keys = list(app.config["ENCRYPTION_KEYS"])
    new_key = Fernet.generate_key().decode()
    try:
        app.config["ENCRYPTION_KEYS"] = [new_key, *old_keys]
        app.extensions.pop("kameng.keyring", None)
        with app.app_context():
            assert inventory.rotate_keys() == 2
        app.config["ENCRYPTION_KEYS"] = [new_key]  # the old key is gone
        app.extensions.pop("kameng.keyring", None)
        with app.app_context(), tenant_scope(shop.id):
            blobs = db.session.scalars(select(CardCode.ciphertext).order_by(CardCode.id)).all()
            assert [keyring().decrypt(b) for b in blobs] == ["ROT-1", "ROT-2"]
            # fingerprints survive rotation: the same code is still a duplicate
            report = inventory.import_codes(catalog.get_product(product_id), ["ROT-1"],
                                            actor=SYSTEM)
            assert report.duplicates == 1
            db.session.rollback()
    finally:
        _rotate_back(app, old_keys, new_key)


def test_key_rotation_re_seals_secrets_so_the_old_key_can_go(app, shop):
    """Payment and supplier credentials (and every other value sealed with encrypt_secret) and
    orders' link tokens are re-sealed too: once rotated, the old key can be removed without
    losing a shop's gateway secret, its supplier's key or a buyer's order link."""
    from kameng.delivery.models import Supplier
    from kameng.delivery.suppliers import save_supplier, supplier_credentials
    from kameng.orders.models import Order
    from kameng.orders.service import CheckoutRequest, checkout, order_link_token
    from kameng.payments.models import PaymentAccount
    from kameng.payments.registry import decrypt_credentials, ensure_sandbox_account

    with app.app_context(), tenant_scope(shop.id):
        tenant = db.session.get(Tenant, shop.id)
        secret = decrypt_credentials(ensure_sandbox_account(tenant).credentials)["secret"]
        supplier = save_supplier(tenant.id, None, name="Upstream", adapter="json",
                                 base_url="https://upstream.example.com",
                                 credentials={"api_key": "upstream-key-0123456789"})
        product = catalog.create_product(tenant, name="Linked", price=100)
        inventory.import_codes(product, ["LINK-1"], actor=Actor.system())
        placed = checkout(tenant, CheckoutRequest(product_id=product.id, qty=1,
                                                  email="b@example.test",
                                                  payment_method="sandbox"))
        supplier_id, order_id = supplier.id, placed.order.id
        db.session.commit()
    old_keys = list(app.config["ENCRYPTION_KEYS"])
    new_key = Fernet.generate_key().decode()
    try:
        app.config["ENCRYPTION_KEYS"] = [new_key, *old_keys]
        app.extensions.pop("kameng.keyring", None)
        with app.app_context():
            assert inventory.rotate_keys() >= 1
        app.config["ENCRYPTION_KEYS"] = [new_key]  # the old key is gone
        app.extensions.pop("kameng.keyring", None)
        with app.app_context(), tenant_scope(shop.id):
            token = db.session.scalar(select(PaymentAccount.credentials))
            assert decrypt_credentials(token)["secret"] == secret
            supplier = db.session.get(Supplier, supplier_id)
            assert supplier_credentials(supplier)["api_key"] == "upstream-key-0123456789"
            assert order_link_token(db.session.get(Order, order_id)) == placed.token
    finally:
        _rotate_back(app, old_keys, new_key)


@pytest.mark.postgres
def test_concurrent_imports_into_one_product_never_duplicate(app, shop, product_id, is_postgres):
    if not is_postgres:
        pytest.skip("row locks need PostgreSQL")
    batches = [[f"P-{n}" for n in range(i * 300, i * 300 + 600)] for i in range(4)]
    reports, errors = [], []

    def run(lines):
        try:
            reports.append(_import(app, shop, product_id, lines))
        except Exception as error:  # pragma: no cover - shown by the assertion
            errors.append(error)

    threads = [threading.Thread(target=run, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    expected = len({code for batch in batches for code in batch})
    assert sum(r.added for r in reports) == expected
    assert sum(r.added + r.duplicates for r in reports) == sum(len(b) for b in batches)
    with app.app_context(), tenant_scope(shop.id):
        assert db.session.scalar(select(func.count()).select_from(CardCode)) == expected
