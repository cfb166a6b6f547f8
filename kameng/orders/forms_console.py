"""Forms of the shop console's order pages: what staff send to act on one order."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from ..forms import Form

REASON_MAX = 500
CONTENT_MAX = 20_000


class MarkPaidForm(Form):
    """Staff confirm by hand that the buyer paid (a bank transfer, cash, a gateway outage)."""

    reason = StringField(_l("Why it is paid (kept on the order's timeline)"),
                         validators=[DataRequired(), Length(max=REASON_MAX)])


class RefundForm(Form):
    """A refund, to the buyer's wallet or through the gateway that took the payment."""

    to = SelectField(_l("Refund"), choices=[SelectChoice("wallet", _l("Refund to wallet")),
                                        SelectChoice("gateway", _l("Refund through gateway"))])
    reason = StringField(_l("Reason for the refund"), validators=[DataRequired(),
                                                             Length(max=REASON_MAX)])


class FulfilForm(Form):
    """What to deliver by hand, one text per order line (`line_<id>`)."""

    def contents(self) -> dict[int, str]:
        return {int(name.removeprefix("line_")): (field.data or "")
                for name, field in self._fields.items() if name.startswith("line_")}

    def validate(self, extra_validators=None) -> bool:
        if not super().validate(extra_validators):
            return False
        if not any(text.strip() for text in self.contents().values()):
            self.form_errors.append(_l("Enter what to deliver for at least one line."))
            return False
        return True


def fulfil_form(lines, *, bind: bool = True, prefix: str = "fulfil") -> FulfilForm:
    """A FulfilForm with one textarea per line; `bind=False` when another form was sent."""

    class OrderFulfilForm(FulfilForm):
        pass

    for line in lines:
        setattr(OrderFulfilForm, f"line_{line.id}", TextAreaField(
            _l("Content for %(qty)s × %(title)s",
               qty=line.qty, title=line.title), validators=[Length(max=CONTENT_MAX)]))
    kwargs = {} if bind else {"formdata": None}
    return OrderFulfilForm(prefix=prefix, **kwargs)
