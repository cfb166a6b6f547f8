"""Forms of the payment settings pages: a gateway's credentials (secrets write-only), a shop's
payment options, and a credit the platform grants to a shop's wallet."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

from ..errors import DomainError
from ..forms import Form
from ..money import parse_amount
from .gateways.base import Gateway

CREDENTIAL_MAX = 4000  # long enough for a PEM key, short enough to refuse junk
FIELD_PREFIX = "cred_"  # form attribute names never clash with the Form's own attributes


class CredentialsForm(Form):
    """One gateway's credential fields (`cred_<name>`) and whether it is offered to buyers.

    A secret field is a password input that never shows its stored value; left empty, the
    stored secret stays (the service keeps it)."""

    enabled = BooleanField(_l("Offer this gateway to buyers"))

    def values(self) -> dict[str, str]:
        return {name.removeprefix(FIELD_PREFIX): (field.data or "").strip()
                for name, field in self._fields.items() if name.startswith(FIELD_PREFIX)}

    def changed_fields(self) -> list[str]:
        """The names (never the values) of the credentials typed in: for the audit log."""
        return sorted(name for name, value in self.values().items() if value)


def credentials_form(gateway: type[Gateway], *, shown: dict[str, str] | None = None,
                     enabled: bool = False, bind: bool = True) -> CredentialsForm:
    """A CredentialsForm for `gateway`, prefixed with its name so one page holds several.

    `shown` are the masked stored values: non-secret ones fill their inputs; secrets never do.
    `bind=False`: shown beside another submitted form, so it does not read the request."""

    class GatewayCredentialsForm(CredentialsForm):
        pass

    data = {"enabled": enabled}
    for spec in gateway.credential_fields:
        field_class = PasswordField if spec.secret else StringField
        setattr(GatewayCredentialsForm, FIELD_PREFIX + spec.name, field_class(
            spec.label, validators=[Optional(), Length(max=CREDENTIAL_MAX)]))
        if not spec.secret:
            data[FIELD_PREFIX + spec.name] = (shown or {}).get(spec.name, "")
    kwargs = {} if bind else {"formdata": None, "data": data}
    return GatewayCredentialsForm(prefix=gateway.name, **kwargs)


class PaymentOptionsForm(Form):
    test_mode = BooleanField(_l("Test mode: offer the sandbox to buyers (payments are simulated, "
                                "nothing is charged)"))
    platform_payments = BooleanField(_l("Use the platform's payment accounts for gateways you have "
                                        "not set up (the platform credits your margin to your "
                                        "wallet, minus its fee)"))


class WalletCreditForm(Form):
    """Credit a shop's wallet at the platform. `token` is a random key made when the form was
    shown: sending the same form twice credits once."""

    amount = StringField(_l("Amount"), validators=[DataRequired(), Length(max=20)])
    memo = StringField(_l("Memo (shown on the shop's statement)"),
                       validators=[DataRequired(), Length(max=200)])
    token = HiddenField(validators=[DataRequired(), Regexp(r"^[A-Za-z0-9_-]{16,64}$")])

    def __init__(self, *args, currency: str = "CNY", **kwargs):
        self.currency = currency
        self.minor: int | None = None
        super().__init__(*args, **kwargs)

    def validate_amount(self, field) -> None:
        try:
            minor = parse_amount(field.data, self.currency)
        except DomainError as error:
            raise ValidationError(error.message) from None
        if minor <= 0:
            raise ValidationError(_l("Enter an amount above zero."))
        self.minor = minor
