"""Forms of the super-admin console."""

from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from ..forms import Form


class TenantForm(Form):
    slug = StringField("Shop address", validators=[DataRequired(), Length(min=3, max=32)])
    name = StringField("Shop name", validators=[DataRequired(), Length(max=120)])
    owner_email = EmailField("Owner e-mail", validators=[DataRequired(), Length(max=254)])
    owner_password = PasswordField("Owner password", validators=[DataRequired(), Length(max=256)])
