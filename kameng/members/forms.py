"""Forms of the buyer's account pages: password reset, profile and password change."""

from __future__ import annotations

from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from ..forms import Form


class ResetRequestForm(Form):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])


class ResetPasswordForm(Form):
    password = PasswordField("New password", validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField("New password again", validators=[
        DataRequired(), EqualTo("password", message="The two passwords differ.")])


class ProfileForm(Form):
    name = StringField("Name", validators=[Length(max=120)])


class ChangePasswordForm(Form):
    current = PasswordField("Current password", validators=[DataRequired(), Length(max=256)])
    password = PasswordField("New password", validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField("New password again", validators=[
        DataRequired(), EqualTo("password", message="The two passwords differ.")])
