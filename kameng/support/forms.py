"""Forms of after-sales: the buyer's report and replies, and what shop staff send to answer and
resolve a ticket."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import RadioField, SelectChoice, SelectField, SelectMultipleField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from ..forms import Form
from .models import TICKET_REASONS
from .service import MAX_MESSAGE

# The reasons and statuses of kameng/support/models.py, in the visitor's language (a reason
# added there without a label here still shows, in English).
REASON_LABELS = {
    "code_invalid": _l("The code is invalid"),
    "code_used": _l("The code was already used"),
    "wrong_item": _l("I received the wrong item"),
    "not_received": _l("I did not receive it"),
    "other": _l("Something else"),
}
STATUS_LABELS = {
    "open": _l("Open"),
    "answered": _l("Answered"),
    "resolved": _l("Resolved"),
    "declined": _l("Declined"),
}
RESOLUTION_LABELS = {
    "replaced": _l("Code replaced"),
    "refunded": _l("Refunded"),
    "declined": _l("Declined"),
}


def reason_label(reason: str):
    return REASON_LABELS.get(reason) or TICKET_REASONS.get(reason, reason)


def status_label(status: str):
    return STATUS_LABELS.get(status, status)


def resolution_label(resolution: str):
    return RESOLUTION_LABELS.get(resolution, resolution)


def _message(label, *, required: bool = True) -> TextAreaField:
    first = DataRequired() if required else Optional()
    return TextAreaField(label, validators=[first, Length(max=MAX_MESSAGE)])


class ReportForm(Form):
    """A buyer reports a problem with a delivered order."""

    reason = RadioField(_l("What is wrong?"), validators=[InputRequired()],
                        choices=[SelectChoice(key, reason_label(key)) for key in TICKET_REASONS])
    message = _message(_l("Tell the shop more (which code, what the game or site says)"))


class ReplyForm(Form):
    """One more message on an open ticket, from the buyer or the shop."""

    message = _message(_l("Your reply"))


class MultiCheckboxField(SelectMultipleField):
    """A list of checkboxes (the codes to replace)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class ReplaceForm(Form):
    """Staff pick the reported codes; each is voided and replaced by a new one from stock."""

    codes = MultiCheckboxField(_l("Codes to replace"), coerce=int,
                               validators=[DataRequired(_l("Choose the codes to replace."))])
    message = _message(_l("Note to the buyer (optional)"), required=False)


class TicketRefundForm(Form):
    """Staff refund the whole order: to the buyer's wallet, or through the payment gateway."""

    to = SelectField(_l("Refund"), choices=[SelectChoice("wallet", _l("Refund to wallet")),
                                            SelectChoice("gateway", _l("Refund through gateway"))])
    message = _message(_l("Note to the buyer (optional)"), required=False)


class DeclineForm(Form):
    """Staff close the ticket without a remedy, telling the buyer why."""

    reason = _message(_l("Why the request is declined (the buyer reads this)"))
