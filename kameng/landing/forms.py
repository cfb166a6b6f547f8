"""The sign-up form on the landing page."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import EmailField, PasswordField, RadioField, StringField
from wtforms.validators import DataRequired, InputRequired, Length

from ..forms import Form


class SignUpForm(Form):
    shop_name = StringField(_l("Shop name"), validators=[DataRequired(), Length(max=120)])
    slug = StringField(_l("Shop address"), validators=[DataRequired(), Length(max=64)])
    email = EmailField(_l("Your e-mail"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=256)])
    plan = RadioField(_l("Plan"), choices=[], validators=[InputRequired()])
