"""Form helpers shared by every console and shop page (Flask-WTF: CSRF on every form)."""

from __future__ import annotations

from flask import flash
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from .errors import DomainError
from .extensions import db


class Form(FlaskForm):
    """A FlaskForm that can show a service's DomainError next to the field it is about."""

    def fail(self, error: DomainError) -> None:
        field = getattr(self, error.field, None) if error.field else None
        if field is not None and hasattr(field, "errors"):
            field.errors = [*field.errors, error.message]
        else:
            self.form_errors.append(error.message)


class Change:
    """One change a page makes through the services, committed or refused as a whole.

    Used as `with committing(form) as attempt:` around the service calls: when the block ends
    the session is committed; when a service refuses with a DomainError the session is rolled
    back and the error shown, next to its field on `form` or, with no form, as a flashed
    message, and `attempt.failed` is set. Any other exception goes on up (the request's
    teardown rolls back, the error page answers).
    """

    def __init__(self, form: Form | None) -> None:
        self.form = form
        self.error: DomainError | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def __enter__(self) -> Change:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if kind is None:
            db.session.commit()
            return False
        if not issubclass(kind, DomainError):
            return False
        db.session.rollback()
        self.error = error
        if self.form is not None:
            self.form.fail(error)
        else:
            flash(error.message, "error")
        return True


def committing(form: Form | None = None) -> Change:
    """A Change showing a refusal on `form`, or flashing it when there is no form."""
    return Change(form)


class LoginForm(Form):
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=256)])


class RegisterForm(Form):
    name = StringField(_l("Name (optional)"), validators=[Length(max=120)])
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=256)])


class EmptyForm(Form):
    """A form with nothing but its CSRF token: buttons such as log out, suspend, resume."""
