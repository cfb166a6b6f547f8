"""committing(): a console change is committed whole, or refused whole with its reason shown."""

import pytest
from flask import get_flashed_messages
from sqlalchemy import select
from wtforms import StringField

from kameng.catalog import service as catalog
from kameng.catalog.models import Category
from kameng.errors import DomainError
from kameng.forms import Form, committing


class NameForm(Form):
    class Meta:
        csrf = False

    name = StringField()


def _names(app, shop):
    from kameng.extensions import db
    from kameng.tenants.scoping import tenant_scope

    with app.app_context(), tenant_scope(shop.id):
        return sorted(db.session.scalars(select(Category.name)))


def test_a_change_that_ends_well_is_committed(app, shop):
    from kameng.tenants.scoping import tenant_scope

    with app.test_request_context(), tenant_scope(shop.id):
        with committing(NameForm()) as attempt:
            catalog.create_category(shop, "Game cards")
        assert not attempt.failed
    assert _names(app, shop) == ["Game cards"]


def test_a_refused_change_is_rolled_back_and_shown_next_to_its_field(app, shop):
    from kameng.extensions import db
    from kameng.tenants.scoping import tenant_scope

    with app.test_request_context(), tenant_scope(shop.id):
        form = NameForm()
        with committing(form) as attempt:
            catalog.create_category(shop, "Written first")
            raise DomainError("That name is taken.", field="name")
        assert attempt.failed
        assert form.name.errors == ["That name is taken."]
        assert get_flashed_messages() == []
        assert db.session.scalars(select(Category.name)).all() == []  # rolled back here too
    assert _names(app, shop) == []  # the write before the refusal is gone too


def test_without_a_form_the_refusal_is_flashed(app, shop):
    from kameng.tenants.scoping import tenant_scope

    with app.test_request_context(), tenant_scope(shop.id):
        with committing() as attempt:
            catalog.create_category(shop, "Written first")
            raise DomainError("Not now.")
        assert attempt.error.message == "Not now."
        assert get_flashed_messages(with_categories=True) == [("error", "Not now.")]
    assert _names(app, shop) == []


def test_other_errors_go_on_up_uncommitted(app, shop):
    from kameng.extensions import db
    from kameng.tenants.scoping import tenant_scope

    with app.test_request_context(), tenant_scope(shop.id):
        with pytest.raises(LookupError), committing(NameForm()):
            catalog.create_category(shop, "Written first")
            raise LookupError("not a refusal: a bug")
        db.session.rollback()  # what the request's teardown does
    assert _names(app, shop) == []
