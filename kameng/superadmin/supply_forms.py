"""Forms of the super-admin console's supply catalog: supply categories and supply products."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    FieldList,
    FormField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms import Form as SubForm
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from ..catalog.models import DELIVERY_KINDS, INPUT_TYPES
from ..catalog.service import MAX_QTY_LIMIT
from ..forms import Form

# Database integers are 32-bit on PostgreSQL: every number a form accepts stays well inside.
MAX_SORT = 1_000_000
MAX_QTY = MAX_QTY_LIMIT
MAX_THRESHOLD = 1_000_000_000
INPUT_FIELD_ROWS = 5  # empty rows offered for buyer input fields
MAX_INPUT_FIELD_ROWS = 10  # what the service accepts; more posted rows are ignored


class SupplyCategoryForm(Form):
    """A new supply category (it starts active)."""

    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=120)])
    sort = IntegerField(
        _l("Sort order"),
        validators=[Optional(), NumberRange(-MAX_SORT, MAX_SORT)],
        description=_l("Lower numbers come first."),
    )


class SupplyCategoryEditForm(SupplyCategoryForm):
    active = BooleanField(_l("Active"))


class InputFieldForm(SubForm):
    """One buyer input field of a product (e.g. the game account of a top-up)."""

    name = StringField(_l("Name"), validators=[Length(max=64)])
    label = StringField(_l("Label"), validators=[Length(max=200)])
    type = SelectField(_l("Type"), choices=list(INPUT_TYPES), default="text")
    required = BooleanField(_l("Required"))
    pattern = StringField(_l("Pattern"), validators=[Length(max=400)])

    def is_blank(self) -> bool:
        return not any((f.data or "").strip() for f in (self.name, self.label, self.pattern))

    def as_dict(self) -> dict:
        return {"name": self.name.data or "", "label": self.label.data or "",
                "type": self.type.data or "text", "required": bool(self.required.data),
                "pattern": self.pattern.data or ""}


class SupplyProductForm(Form):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    category_id = SelectField(_l("Category"), coerce=int, default=0)
    cost = StringField(
        _l("Cost to shops"), validators=[DataRequired(), Length(max=40)],
        description=_l("What a shop pays per unit, e.g. 9.50."),
    )
    delivery_kind = SelectField(
        _l("Delivery"), choices=[SelectChoice(k, v) for k, v in DELIVERY_KINDS.items()],
        default="card",
    )
    description_html = TextAreaField(
        _l("Description (HTML)"), validators=[Length(max=50_000)],
        description=_l("Shown to buyers; unsafe tags and attributes are removed."),
    )
    text_content = TextAreaField(
        _l("Fixed content"), validators=[Length(max=20_000)],
        description=_l("Only for “Fixed content” products: what every buyer receives "
                       "(a download link, a shared licence). Stored encrypted."),
    )
    input_fields = FieldList(FormField(InputFieldForm), min_entries=INPUT_FIELD_ROWS,
                             max_entries=MAX_INPUT_FIELD_ROWS)
    min_qty = IntegerField(_l("Minimum quantity"), default=1,
                           validators=[InputRequired(), NumberRange(1, MAX_QTY)])
    max_qty = IntegerField(_l("Maximum quantity"), default=100,
                           validators=[InputRequired(), NumberRange(1, MAX_QTY)])
    low_stock_threshold = IntegerField(
        _l("Low-stock threshold"), default=0,
        validators=[Optional(), NumberRange(0, MAX_THRESHOLD)],
        description=_l("Warn when fewer codes than this are available (0: never)."),
    )
    image = FileField(_l("Image"), description=_l("PNG, JPEG, GIF or WebP, at most 2 MB."))
    active = BooleanField(_l("Active (shops can sell it)"), default=True)
    supplier_id = SelectField(
        _l("Supplier"), coerce=int, default=0,
        description=_l("Direct top-up products are bought from this supplier when a buyer pays."),
    )
    supplier_product = StringField(
        _l("Upstream product code"), validators=[Length(max=120)],
        description=_l("The product's code (or id) at the supplier."),
    )

    def set_categories(self, categories) -> None:
        self.category_id.choices = [SelectChoice(0, "— no category —")] + [
            SelectChoice(c.id, c.name if c.active else f"{c.name} (inactive)")
            for c in categories
        ]

    def set_suppliers(self, choices) -> None:
        """The platform's suppliers, as (id, label) pairs."""
        self.supplier_id.choices = [SelectChoice(0, "— none —")] + [
            SelectChoice(value, label) for value, label in choices
        ]

    def buyer_input_fields(self) -> list[dict]:
        """The filled-in input field rows, in order (blank rows are skipped)."""
        return [row.form.as_dict() for row in self.input_fields if not row.form.is_blank()]
