"""Forms of the shop console's catalog pages, and the input fields they share: amounts typed
as text, optional ids, rows of a table, lists of ids. Forms only parse; rules are the service's."""

from __future__ import annotations

from datetime import UTC

from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    Field,
    FieldList,
    FormField,
    IntegerField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms import Form as RowForm  # rows inside a FieldList: no CSRF token of their own
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from ..errors import DomainError
from ..forms import Form
from ..money import ROUNDINGS, parse_amount, parse_percent
from ..rows import MAX_ROW_ID
from .models import DELIVERY_KINDS, INPUT_TYPES
from .service import MAX_QTY_LIMIT, CouponTerms

MAX_COUNT = 1_000_000_000
MAX_SORT = 1_000_000
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]


def optional_id(value) -> int | None:
    """Coerce a <select> value to an id; the empty option is None."""
    if value in (None, "", "None"):
        return None
    number = int(value)
    if not 0 < number <= MAX_ROW_ID:
        raise ValueError("not an id")
    return number


def options(pairs) -> list[SelectChoice]:
    """<select> options from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]


def amount_of(text: str, currency: str, *, field: str | None = None,
              allow_negative: bool = False) -> int:
    """An amount typed as text ('12.50') in minor units (parse_amount caps it at MAX_AMOUNT)."""
    return parse_amount(text, currency, allow_negative=allow_negative, field=field)


def value_by_kind(kind: str, text: str, currency: str, *, allow_negative: bool) -> int:
    """A markup or coupon value: basis points for `percent`, minor units for `fixed`."""
    if kind == "percent":
        return parse_percent(text, allow_negative=allow_negative, field="value")
    return amount_of(text, currency, field="value", allow_negative=allow_negative)


class ShopForm(Form):
    """A console form that knows the shop's currency, for amounts typed as text."""

    def __init__(self, *args, currency: str = "CNY", **kwargs):
        self.currency = currency
        super().__init__(*args, **kwargs)


class MoneyField(StringField):
    """An amount typed as text ('12.50'); once validated, `.amount` is it in minor units
    (None when left empty)."""

    def __init__(self, label=None, validators=None, *, allow_negative=False, **kwargs):
        super().__init__(label, validators, **kwargs)
        self.allow_negative = allow_negative
        self.amount: int | None = None

    def post_validate(self, form, validation_stopped):
        self.amount = None
        if validation_stopped or self.errors or not (self.data or "").strip():
            return
        try:
            self.amount = amount_of(self.data, getattr(form, "currency", "CNY"),
                                    allow_negative=self.allow_negative)
        except DomainError as error:
            raise ValidationError(error.message) from None


class PercentField(StringField):
    """A percentage typed as text ('12.5'); once validated, `.bp` is it in basis points."""

    def post_validate(self, form, validation_stopped):
        self.bp = None
        if validation_stopped or self.errors or not (self.data or "").strip():
            return
        try:
            self.bp = parse_percent(self.data)
        except DomainError as error:
            raise ValidationError(error.message) from None


class IdListField(Field):
    """Ids sent by repeated inputs of one name (the ticked checkboxes of a table)."""

    limit = 1000

    def _value(self):
        return ""

    def process_formdata(self, valuelist):
        self.data = []
        if len(valuelist) > self.limit:
            raise ValueError(f"Select at most {self.limit} rows at a time.")
        for value in valuelist:
            try:
                self.data.append(optional_id(value))
            except ValueError:
                self.data = []
                raise ValueError("The selection is not valid; reload the page.") from None
        self.data = [number for number in self.data if number is not None]

    def process_data(self, value):
        self.data = list(value or [])


class RowList(FieldList):
    """A FieldList of table rows that ignores malformed row numbers instead of failing on them."""

    def _extract_indices(self, prefix, formdata):
        offset = len(prefix) + 1
        for key in formdata:
            if key.startswith(prefix + self._field_separator):
                number = key[offset:].split(self._field_separator, 1)[0]
                if number.isascii() and number.isdigit() and len(number) <= 3:
                    yield int(number)


class MultiCheckboxField(SelectMultipleField):
    """A multiple choice shown as checkboxes."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


SORT_LABEL = _l("Sort order (lower first)")


def _sort_field(label=SORT_LABEL):
    return IntegerField(label, validators=[InputRequired(), NumberRange(-MAX_SORT, MAX_SORT)],
                        default=0)


def _threshold_field():
    return IntegerField(_l("Low-stock alert below (0: no alert)"),
                        validators=[InputRequired(), NumberRange(0, MAX_COUNT)], default=0)


def _category_field(label=None):
    return SelectField(label or _l("Category"), coerce=optional_id)


# -- products ------------------------------------------------------------------------------------


class InputFieldRow(RowForm):
    """One buyer input field of a product (e.g. the game account of a top-up)."""

    name = StringField(_l("Name"), validators=[Optional(), Length(max=32)])
    label = StringField(_l("Label"), validators=[Optional(), Length(max=80)])
    type = SelectField(_l("Type"), choices=list(INPUT_TYPES), default="text")
    required = BooleanField(_l("Required"))
    pattern = StringField(_l("Pattern (regular expression)"),
                          validators=[Optional(), Length(max=200)])


class ProductForm(ShopForm):
    """An own product: everything about it."""

    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    price = MoneyField(_l("Price"), validators=[InputRequired(), Length(max=20)])
    category_id = _category_field()
    delivery_kind = SelectField(_l("Delivery"), choices=options(DELIVERY_KINDS.items()),
                                default="card")
    description_html = TextAreaField(_l("Description (HTML; scripts and styles are removed)"),
                                     validators=[Length(max=50_000)])
    text_content = TextAreaField(
        _l("Fixed content (fixed-content products: what every buyer receives)"),
        validators=[Length(max=20_000)])
    input_fields = RowList(FormField(InputFieldRow), min_entries=5, max_entries=10)
    min_qty = IntegerField(_l("Minimum quantity per order"),
                           validators=[InputRequired(), NumberRange(1, MAX_QTY_LIMIT)], default=1)
    max_qty = IntegerField(_l("Maximum quantity per order"),
                           validators=[InputRequired(), NumberRange(1, MAX_QTY_LIMIT)],
                           default=100)
    low_stock_threshold = _threshold_field()
    image = FileField(_l("Image (PNG, JPEG, GIF or WebP, at most 2 MB)"))
    sort = _sort_field()
    active = BooleanField(_l("On sale"), default=True)
    supplier_id = SelectField(_l("Supplier (direct top-up: bought from it when a buyer pays)"),
                              coerce=optional_id)
    supplier_product = StringField(_l("Upstream product code (its code at the supplier)"),
                                   validators=[Optional(), Length(max=120)])

    def input_field_rows(self) -> list[dict]:
        """The filled-in rows of the input field table (empty rows are dropped)."""
        return [
            row.data for row in self.input_fields
            if (row.form.name.data or "").strip() or (row.form.label.data or "").strip()
        ]


class ListingForm(ShopForm):
    """A listing of a supply product: only what the shop decides about it."""

    name = StringField(_l("Name (empty: the supply product's name)"),
                       validators=[Optional(), Length(max=200)])
    description_html = TextAreaField(
        _l("Description (HTML; empty: the supply product's description)"),
        validators=[Length(max=50_000)])
    category_id = _category_field()
    low_stock_threshold = _threshold_field()
    sort = _sort_field()
    active = BooleanField(_l("On sale"), default=True)


class MarkupForm(ShopForm):
    """A markup rule: cost + percent or fixed amount, then a rounding rule."""

    kind = SelectField(_l("Markup"), choices=options([("percent", _l("Percent of cost")),
                                                  ("fixed", _l("Fixed amount over cost"))]))
    value = StringField(_l("Value (percent or amount; may be negative)"),
                        validators=[InputRequired(), Length(max=20)])
    rounding = SelectField(_l("Rounding"), choices=options(ROUNDINGS.items()))

    def validate_value(self, field):
        try:
            self.units = value_by_kind(self.kind.data, field.data, self.currency,
                                       allow_negative=True)
        except DomainError as error:
            raise ValidationError(error.message) from None


class CategoryRuleForm(MarkupForm):
    category_id = SelectField(_l("Category"), coerce=optional_id)


class BulkRow(RowForm):
    min_qty = IntegerField(_l("From quantity"),
                           validators=[Optional(), NumberRange(2, MAX_QTY_LIMIT)])
    unit_price = StringField(_l("Unit price"), validators=[Optional(), Length(max=20)])


class BulkPricesForm(ShopForm):
    rows = RowList(FormField(BulkRow), min_entries=3, max_entries=20)

    def price_breaks(self) -> list[tuple[int, int]]:
        """[(min_qty, unit_price)] of the filled-in rows; DomainError for a half-filled row."""
        breaks = []
        for number, row in enumerate(self.rows, 1):
            qty, price = row.form.min_qty.data, (row.form.unit_price.data or "").strip()
            if qty is None and not price:
                continue
            if qty is None or not price:
                raise DomainError(_l("Row %(number)s: give both a quantity and a unit price.",
                                     number=number))
            try:
                breaks.append((qty, amount_of(price, self.currency)))
            except DomainError as error:
                raise DomainError(_l("Row %(number)s: %(message)s",
                                     number=number, message=error.message)) from None
        return breaks


def level_prices_form(levels, *, currency: str, data: dict | None = None,
                      bind: bool = True) -> ShopForm:
    """A form with one optional price per buyer level (`level_<id>`; empty: no explicit price).
    `bind=False`: shown beside another submitted form, so it does not read the request."""

    class LevelPricesForm(ShopForm):
        pass

    for level in levels:
        setattr(LevelPricesForm, f"level_{level.id}",
                MoneyField(level.name, validators=[Optional(), Length(max=20)]))
    kwargs = {} if bind else {"formdata": None}
    return LevelPricesForm(currency=currency, data=data or {}, **kwargs)


# -- categories and levels ---------------------------------------------------------------------


class CategoryForm(Form):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=120)])
    sort = _sort_field()
    active = BooleanField(_l("Shown in the shop"), default=True)


class LevelForm(ShopForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=60)])
    rank = IntegerField(_l("Rank (higher is better)"),
                        validators=[InputRequired(), NumberRange(0, 1000)])
    discount = PercentField(_l("Discount (%)"), validators=[InputRequired(), Length(max=10)],
                            default="0")
    spend_threshold = MoneyField(_l("Raise members to this level at lifetime spend (empty: never)"),
                                 validators=[Optional(), Length(max=20)])


# -- coupons ------------------------------------------------------------------------------------


class CouponForm(ShopForm):
    """A coupon's terms, then either one code or a generated batch (two submit buttons)."""

    kind = SelectField(_l("Discount"), choices=options([("percent", _l("Percent off")),
                                                    ("fixed", _l("Amount off"))]))
    value = StringField(_l("Value (percent or amount)"),
                        validators=[InputRequired(), Length(max=20)])
    scope = SelectField(_l("Applies to"), choices=options([("all", _l("Every product")),
                                                       ("category", _l("One category")),
                                                       ("product", _l("One product"))]))
    category_id = _category_field(_l("Category (when it applies to one category)"))
    product_id = SelectField(_l("Product (when it applies to one product)"), coerce=optional_id)
    min_amount = MoneyField(_l("Minimum order amount"), validators=[Optional(), Length(max=20)])
    starts_at = DateTimeLocalField(_l("Starts (UTC; empty: now)"), validators=[Optional()],
                                   format=DATETIME_FORMATS, tz=UTC)
    ends_at = DateTimeLocalField(_l("Ends (UTC; empty: never)"), validators=[Optional()],
                                 format=DATETIME_FORMATS, tz=UTC)
    max_uses = IntegerField(_l("Total uses (empty: unlimited)"),
                            validators=[Optional(), NumberRange(1, MAX_COUNT)])
    max_uses_per_buyer = IntegerField(_l("Uses per buyer (empty: unlimited)"),
                                      validators=[Optional(), NumberRange(1, MAX_COUNT)])
    first_order_only = BooleanField(_l("Only on a buyer's first order"))
    allowed_level_ids = MultiCheckboxField(_l("Buyer levels (none ticked: every level)"),
                                           coerce=int)
    code = StringField(_l("Code"), validators=[Optional(), Length(max=40)])
    count = IntegerField(_l("How many codes"), validators=[Optional(), NumberRange(1, 10_000)])
    prefix = StringField(_l("Prefix (optional)"), validators=[Optional(), Length(max=12)])
    batch_label = StringField(_l("Batch label (optional)"), validators=[Optional(), Length(max=60)])
    create = SubmitField(_l("Create coupon"))
    generate = SubmitField(_l("Generate batch"))

    def validate_value(self, field):
        try:
            self.units = value_by_kind(self.kind.data, field.data, self.currency,
                                       allow_negative=False)
        except DomainError as error:
            raise ValidationError(error.message) from None

    def terms(self) -> CouponTerms:
        return CouponTerms(
            kind=self.kind.data,
            value=self.units,
            scope=self.scope.data,
            category_id=self.category_id.data,
            product_id=self.product_id.data,
            min_amount=self.min_amount.amount or 0,
            starts_at=self.starts_at.data,
            ends_at=self.ends_at.data,
            max_uses=self.max_uses.data,
            max_uses_per_buyer=self.max_uses_per_buyer.data,
            first_order_only=bool(self.first_order_only.data),
            allowed_level_ids=tuple(self.allowed_level_ids.data or ()),
        )


class SupplyPickForm(Form):
    """Which supply product or supply category a "List" button is about (hidden inputs)."""

    supply_product_id = IntegerField(validators=[Optional(), NumberRange(1, MAX_ROW_ID)])
    supply_category_id = IntegerField(validators=[Optional(), NumberRange(1, MAX_ROW_ID)])
