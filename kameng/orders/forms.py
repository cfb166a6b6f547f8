"""Forms of the buyer's side of orders: checkout, order lookup, wallet top-up."""

from __future__ import annotations

from flask import session
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import EmailField, IntegerField, RadioField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from ..forms import Form
from ..payments.registry import available_methods

INPUT_PREFIX = "input_"  # buyer input fields are posted as input_<name>


class CheckoutForm(Form):
    qty = IntegerField(_l("Quantity"), validators=[InputRequired(), NumberRange(1, 10_000)])
    email = EmailField(_l("E-mail for the delivery"), validators=[DataRequired(), Length(max=254)])
    coupon = StringField(_l("Coupon code (optional)"), validators=[Optional(), Length(max=40)])
    use_points = IntegerField(_l("Points to use (optional)"),
                              validators=[Optional(), NumberRange(0, 10**9)])
    payment_method = RadioField(_l("Pay with"), validators=[DataRequired()], choices=[])

    def buyer_inputs(self, formdata) -> dict:
        return {key[len(INPUT_PREFIX):]: value for key, value in formdata.items()
                if key.startswith(INPUT_PREFIX)}


def checkout_needs_csrf() -> bool:
    """Whether this visitor's checkout form carries (and its POST must bring back) a CSRF
    token: yes for anyone with a session — a logged-in buyer, or a guest whose cookie holds
    state (a lookup, a language) — no for a visitor without one.

    Why a visitor without a session needs none: with no session cookie, a checkout only
    creates a pending order for the e-mail typed into the form, paid by an outside gateway.
    A forged cross-site POST can do nothing a direct request from anywhere could not — and
    our cookies are SameSite=Lax, so a cross-site POST never carries a session anyway. What
    a token protects — the wallet, points, orders tied to an account, the orders a browser
    may open — belongs to a session, and a request with a session is checked as before.
    Without a token the product page is the same for every such visitor, so it is kept
    whole (kameng/storefront/views.py cached_page) instead of rendered for each view.
    """
    return bool(session) or current_user.is_authenticated


def checkout_form(tenant, product, buyer, formdata=None) -> CheckoutForm:
    """A checkout form offering the shop's payment methods, pre-filled for a logged-in buyer;
    with a CSRF token only when checkout_needs_csrf()."""
    logged_in = getattr(buyer, "is_authenticated", False)
    data = {"qty": product.quantity_range[0]}
    if logged_in:
        data["email"] = buyer.email
    meta = None if checkout_needs_csrf() else {"csrf": False}  # None: Flask-WTF's default
    form = CheckoutForm(formdata=formdata, data=data, meta=meta) if formdata is not None \
        else CheckoutForm(data=data, meta=meta)
    methods = available_methods(tenant, buyer if logged_in else None)
    form.payment_method.choices = [(m.name, m.label) for m in methods]
    if not form.payment_method.data and methods:
        form.payment_method.data = methods[0].name
    return form


class LookupForm(Form):
    number = StringField(_l("Order number"), validators=[DataRequired(), Length(max=24)])
    email = EmailField(_l("E-mail used for the order"),
                       validators=[DataRequired(), Length(max=254)])


class TopUpForm(Form):
    amount = StringField(_l("Amount"), validators=[DataRequired(), Length(max=20)])
    payment_method = RadioField(_l("Pay with"), validators=[DataRequired()], choices=[])
