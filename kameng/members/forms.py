"""Forms of the buyer's account pages: password reset, profile and password change."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from ..forms import Form


class ResetRequestForm(Form):
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Length(max=254)])


class ResetPasswordForm(Form):
    password = PasswordField(_l("New password"), validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField(_l("New password again"), validators=[
        DataRequired(), EqualTo("password", message=_l("The two passwords differ."))])


class ProfileForm(Form):
    name = StringField(_l("Name"), validators=[Length(max=120)])


class ChangePasswordForm(Form):
    current = PasswordField(_l("Current password"), validators=[DataRequired(), Length(max=256)])
    password = PasswordField(_l("New password"), validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField(_l("New password again"), validators=[
        DataRequired(), EqualTo("password", message=_l("The two passwords differ."))])
