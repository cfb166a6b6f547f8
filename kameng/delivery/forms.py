"""The supplier form of both consoles: name, protocol, base URL, credentials (write-only) and
the settings of the generic JSON protocol. Forms only parse; rules are in `suppliers`."""

from __future__ import annotations

import json

from flask_babel import lazy_gettext as _l
from wtforms import (
    BooleanField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional

from ..forms import Form
from .adapters import ADAPTERS, JSON_DEFAULTS

CREDENTIAL_MAX = 2000
FIELD_PREFIX = "cred_"
LIST_SETTINGS = ("success_values", "pending_values", "failure_values")
TEXT_SETTINGS = ("order_path", "query_path", "auth_header", "auth_value", "idempotency_header",
                 "status_field", "reference_field", "message_field", "content_field")


def _text(label, description="", limit: int = 200) -> StringField:
    return StringField(label, validators=[Optional(), Length(max=limit)], description=description)


class SupplierForm(Form):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=120)])
    adapter = SelectField(_l("Protocol"), choices=[SelectChoice(name, kind.label)
                                               for name, kind in ADAPTERS.items()],
                          default="json")
    base_url = StringField(_l("Base URL"), validators=[DataRequired(), Length(max=500)],
                           description=_l("e.g. https://api.supplier.example — paths are added "
                                          "to it."))
    active = BooleanField(_l("Active (new top-ups are bought from it)"), default=True)
    # Credentials, write-only: secrets are never shown; empty keeps the stored value.
    cred_api_key = PasswordField(_l("API key (JSON protocol)"),
                                 validators=[Optional(), Length(max=CREDENTIAL_MAX)])
    cred_key_id = StringField(_l("API key id (Kameng shop)"),
                              validators=[Optional(), Length(max=200)])
    cred_api_secret = PasswordField(_l("API secret (Kameng shop)"),
                                    validators=[Optional(), Length(max=CREDENTIAL_MAX)])
    # Settings of the JSON protocol (see kameng/delivery/adapters.py).
    order_path = _text(_l("Order path"), _l("POSTed to place an order, e.g. /order."))
    query_path = _text(_l("Query path"), _l("GET to read an order; {reference} is the "
                                            "supplier's order id, {idempotency_key} ours."))
    body = TextAreaField(
        _l("Request body (JSON)"), validators=[Optional(), Length(max=5000)],
        description=_l("Placeholders: {product} (upstream product code), {qty}, {order}, "
                       "{idempotency_key}, {inputs} (all buyer inputs), {input.<name>} "
                       "(one of them, e.g. {input.account}), {api_key}."))
    auth_header = _text(_l("Credential header"),
                        _l("Header carrying the API key; empty for none."))
    auth_value = _text(_l("Credential header value"), _l("e.g. Bearer {api_key}."))
    idempotency_header = _text(_l("Idempotency header"),
                               _l("Carries our idempotency key; empty for none."))
    status_field = _text(_l("Status field"),
                         _l("Where the answer gives the status, e.g. data.status."))
    success_values = _text(_l("Success values"), _l("Comma-separated, e.g. success, 1."), 1300)
    pending_values = _text(_l("Pending values"),
                           _l("Comma-separated, e.g. pending, processing."), 1300)
    failure_values = _text(_l("Failure values"),
                           _l("Comma-separated, e.g. failed, refunded."), 1300)
    reference_field = _text(_l("Reference field"),
                            _l("The supplier's order id, e.g. data.order_id."))
    message_field = _text(_l("Message field"), _l("Its explanation, e.g. msg."))
    content_field = _text(_l("Delivered content field"),
                          _l("Optional: text the buyer receives (a code, a receipt)."))

    def credential_values(self) -> dict[str, str]:
        return {name.removeprefix(FIELD_PREFIX): (field.data or "").strip()
                for name, field in self._fields.items() if name.startswith(FIELD_PREFIX)}

    def typed_credentials(self) -> list[str]:
        """The names (never the values) of the credentials typed in: for the audit log."""
        return sorted(name for name, value in self.credential_values().items() if value)

    def settings_values(self) -> dict:
        """The protocol settings as typed (the service validates and normalises them)."""
        if self.adapter.data != "json":
            return {}
        values = {name: self[name].data or "" for name in (*TEXT_SETTINGS, *LIST_SETTINGS)}
        values["body"] = self.body.data or ""
        return values


def supplier_form_data(supplier=None) -> dict:
    """What the form shows for a supplier (or a new one): never a secret."""
    settings = {**JSON_DEFAULTS, **((supplier.settings or {}) if supplier else {})}
    data = {name: settings[name] for name in TEXT_SETTINGS}
    data.update({name: ", ".join(settings[name]) for name in LIST_SETTINGS})
    data["body"] = json.dumps(settings["body"], indent=2, ensure_ascii=False)
    if supplier is not None:
        data.update(name=supplier.name, adapter=supplier.adapter, base_url=supplier.base_url,
                    active=supplier.active)
    return data
