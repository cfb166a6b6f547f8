"""Form helpers shared by every console and shop page (Flask-WTF: CSRF on every form)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from .errors import DomainError


class Form(FlaskForm):
    """A FlaskForm that can show a service's DomainError next to the field it is about."""

    def fail(self, error: DomainError) -> None:
        field = getattr(self, error.field, None) if error.field else None
        if field is not None and hasattr(field, "errors"):
            field.errors = [*field.errors, error.message]
        else:
            self.form_errors.append(error.message)


class LoginForm(Form):
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=256)])


class RegisterForm(Form):
    name = StringField(_l("Name (optional)"), validators=[Length(max=120)])
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=256)])


class EmptyForm(Form):
    """A form with nothing but its CSRF token: buttons such as log out, suspend, resume."""
