"""Forms of the super-admin console."""

from flask_babel import lazy_gettext as _l
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from ..forms import Form


class TenantForm(Form):
    slug = StringField(_l("Shop address"), validators=[DataRequired(), Length(min=3, max=32)])
    name = StringField(_l("Shop name"), validators=[DataRequired(), Length(max=120)])
    owner_email = EmailField(_l("Owner e-mail"), validators=[DataRequired(), Length(max=254)])
    owner_password = PasswordField(_l("Owner password"),
                                   validators=[DataRequired(), Length(max=256)])
