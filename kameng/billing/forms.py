"""Forms of the billing pages: a plan (super-admin), a plan change, a wallet top-up."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, IntegerField, RadioField, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from ..catalog.forms import MoneyField, MultiCheckboxField, PercentField, ShopForm
from ..forms import Form
from .service import PlanTerms


class PlanForm(ShopForm):
    code = StringField(_l("Code (in links and sign-up: lower-case letters, digits, hyphens)"),
                       validators=[DataRequired(), Length(min=2, max=32)])
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=80)])
    monthly_price = MoneyField(_l("Monthly price"), validators=[DataRequired()])
    fee_percent = PercentField(_l("Fee per paid order (percent of the amount paid)"),
                               validators=[Optional()])
    fee_fixed = MoneyField(_l("Fixed fee per paid order"), validators=[Optional()])
    max_own_products = IntegerField(_l("Own products allowed (empty: unlimited)"),
                                    validators=[Optional(), NumberRange(0, 1_000_000)])
    max_staff = IntegerField(_l("Staff accounts allowed, the owner included (empty: unlimited)"),
                             validators=[Optional(), NumberRange(1, 10_000)])
    custom_domain = BooleanField(_l("Custom domain allowed"))
    api_access = BooleanField(_l("API access"))
    themes = MultiCheckboxField(_l("Themes allowed (none ticked: every theme)"), choices=[])
    trial_days = IntegerField(_l("Trial days (0: no trial)"), default=0,
                              validators=[InputRequired(), NumberRange(0, 365)])
    markup_percent = PercentField(_l("Default markup over the supply catalog for new shops "
                                     "(percent)"), validators=[DataRequired()])
    active = BooleanField(_l("Offered at sign-up and for plan changes"), default=True)
    sort = IntegerField(_l("Sort order (lower first)"), default=0,
                        validators=[InputRequired(), NumberRange(-1000, 1000)])

    def terms(self) -> PlanTerms:
        return PlanTerms(
            code=self.code.data, name=self.name.data,
            monthly_price=self.monthly_price.amount or 0,
            fee_bp=self.fee_percent.bp or 0, fee_fixed=self.fee_fixed.amount or 0,
            max_own_products=self.max_own_products.data, max_staff=self.max_staff.data,
            custom_domain=self.custom_domain.data, api_access=self.api_access.data,
            themes=tuple(self.themes.data or ()), trial_days=self.trial_days.data or 0,
            default_markup_bp=self.markup_percent.bp or 0, active=self.active.data,
            sort=self.sort.data or 0)


class PlanChoiceForm(Form):
    """A plan change (shop console) or a plan given to a shop (super-admin)."""

    plan = RadioField(_l("Plan"), choices=[], validators=[InputRequired()])


class TopUpForm(ShopForm):
    amount = MoneyField(_l("Amount"), validators=[DataRequired()])
    method = SelectField(_l("Pay with"), choices=[], validators=[InputRequired()])


class PayInvoiceForm(Form):
    """Pay an invoice: from the wallet, or by topping up what the wallet lacks with `method`."""

    method = SelectField(_l("Pay with"), choices=[], validators=[Optional()])
