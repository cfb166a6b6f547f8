"""The tenant scoping guard: forgotten filters, foreign writes, platform-wide opt-out."""

import pytest
from sqlalchemy import delete, func, select, update

from kameng.extensions import db
from kameng.members.models import Customer
from kameng.merchant.models import StaffUser
from kameng.tenants.scoping import TenantScopeError, platform_scope, tenant_scope


@pytest.fixture
def two_shops(create_tenant, create_customer):
    a, b = create_tenant(slug="shopa"), create_tenant(slug="shopb")
    for _ in range(3):
        create_customer(a)
    for _ in range(2):
        create_customer(b)
    return a, b


def test_query_without_tenant_filter_sees_only_current_tenant(app, two_shops):
    a, b = two_shops
    with app.app_context():
        with tenant_scope(b.id):
            rows = db.session.scalars(select(Customer)).all()  # no filter on purpose
            assert len(rows) == 2
            assert {c.tenant_id for c in rows} == {b.id}
            assert db.session.scalar(select(func.count()).select_from(Customer)) == 2
            assert db.session.scalar(select(func.count(Customer.id))) == 2
            emails = db.session.scalars(select(Customer.email)).all()
            assert all(e.endswith("@shopb.test") for e in emails)
        with tenant_scope(a.id):
            assert len(db.session.scalars(select(Customer)).all()) == 3


def test_get_by_primary_key_of_another_tenant_is_none(app, two_shops):
    a, b = two_shops
    with app.app_context():
        with tenant_scope(a.id):
            a_ids = db.session.scalars(select(Customer.id)).all()
        db.session.expunge_all()
        with tenant_scope(b.id):
            assert db.session.get(Customer, a_ids[0]) is None


def test_joins_and_subqueries_are_scoped(app, two_shops):
    _a, b = two_shops
    with app.app_context(), tenant_scope(b.id):
        sub = select(StaffUser.email).scalar_subquery()
        # a join between two scoped tables, and a subquery: both narrowed to shop B
        rows = db.session.execute(
            select(Customer.email, StaffUser.email).join(
                StaffUser, StaffUser.tenant_id == Customer.tenant_id
            )
        ).all()
        assert rows and all(s.endswith("@shopb.test") for _, s in rows)
        assert db.session.scalar(select(sub)) == "owner@shopb.test"


def test_bulk_update_and_delete_are_scoped(app, two_shops):
    _a, b = two_shops
    with app.app_context():
        with tenant_scope(b.id):
            db.session.execute(update(Customer).values(name="changed"))
            db.session.execute(delete(Customer).where(Customer.name == "nothing"))
            db.session.commit()
        with platform_scope():
            names = dict(db.session.execute(select(Customer.email, Customer.name)).all())
        assert {e for e, n in names.items() if n == "changed"} == {
            e for e in names if e.endswith("@shopb.test")
        }


def test_query_with_no_tenant_bound_raises(app, two_shops):
    with app.app_context(), pytest.raises(TenantScopeError):
        db.session.scalars(select(Customer)).all()


def test_platform_scope_sees_every_shop(app, two_shops):
    with app.app_context(), platform_scope():
        assert db.session.scalar(select(func.count()).select_from(Customer)) == 5


def test_new_rows_are_stamped_with_the_bound_tenant(app, two_shops):
    a, _b = two_shops
    with app.app_context(), tenant_scope(a.id):
        customer = Customer(email="new@shopa.test", password_hash="x")
        db.session.add(customer)
        db.session.flush()
        assert customer.tenant_id == a.id
        db.session.rollback()


def test_writing_a_row_of_another_tenant_is_refused(app, two_shops):
    a, b = two_shops
    with app.app_context():
        with tenant_scope(a.id):
            db.session.add(Customer(tenant_id=b.id, email="x@shopb.test", password_hash="x"))
            with pytest.raises(TenantScopeError):
                db.session.flush()
            db.session.rollback()
        with platform_scope():
            victim = db.session.scalars(select(Customer).where(Customer.tenant_id == b.id)).first()
        with tenant_scope(a.id):
            victim.name = "defaced"
            with pytest.raises(TenantScopeError):
                db.session.flush()
            db.session.rollback()


def test_moving_a_row_to_another_tenant_is_refused(app, two_shops):
    a, b = two_shops
    with app.app_context(), tenant_scope(a.id):
        mine = db.session.scalars(select(Customer)).first()
        mine.tenant_id = b.id
        with pytest.raises(TenantScopeError):
            db.session.flush()
        db.session.rollback()


def test_new_row_with_no_tenant_bound_is_refused(app, two_shops):
    with app.app_context():
        db.session.add(Customer(email="x@x.test", password_hash="x"))
        with pytest.raises(TenantScopeError):
            db.session.flush()
        db.session.rollback()


def test_platform_scope_write_needs_explicit_tenant(app, two_shops):
    a, _ = two_shops
    with app.app_context(), platform_scope():
        db.session.add(Customer(email="y@x.test", password_hash="x"))
        with pytest.raises(TenantScopeError):
            db.session.flush()
        db.session.rollback()
        db.session.add(Customer(tenant_id=a.id, email="y@x.test", password_hash="x"))
        db.session.flush()
        db.session.rollback()


def test_scopes_nest_and_restore(app, two_shops):
    a, b = two_shops
    with app.app_context():
        with tenant_scope(a.id):
            with tenant_scope(b.id):
                assert db.session.scalar(select(func.count()).select_from(Customer)) == 2
            assert db.session.scalar(select(func.count()).select_from(Customer)) == 3
            with platform_scope():
                assert db.session.scalar(select(func.count()).select_from(Customer)) == 5
            assert db.session.scalar(select(func.count()).select_from(Customer)) == 3
        with pytest.raises(TenantScopeError):
            db.session.scalar(select(func.count()).select_from(Customer))
