"""Money as integer minor units (cents, 分): parsing, formatting, percentages and rounding rules.

Amounts are plain `int`s everywhere; a currency code travels beside them. Floats never touch
money: input is parsed with `Decimal` and every division rounds half up explicitly.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from flask_babel import lazy_gettext as _l

from .errors import DomainError

# Digits after the decimal point; every currency not listed has two.
MINOR_DIGITS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0}
SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "HKD": "HK$"}

# Rounding rules a shop may put on a markup: to a step, or "charm" prices ending in .99 / .9.
ROUNDINGS = {
    "0.01": _l("to 0.01"),
    "0.1": _l("to 0.1"),
    "1": _l("to 1"),
    ".99": _l("ending in .99"),
    ".9": _l("ending in .9"),
}

BASIS_POINTS = 10_000  # percentages are stored in basis points: 12.5% == 1250
# The largest single amount (a price, a cost, a top-up) in minor units: prices live in 32-bit
# integer columns; sums and balances use 64-bit columns.
MAX_AMOUNT = 1_000_000_000


def minor_digits(currency: str) -> int:
    return MINOR_DIGITS.get(currency.upper(), 2)


def parse_amount(text: str | int | None, currency: str = "CNY", *, allow_negative=False,
                 field: str | None = None) -> int:
    """'12.34' -> 1234 minor units; refuses garbage, extra decimals and (by default) negatives."""
    if isinstance(text, int):
        value = Decimal(text)
    else:
        raw = (text or "").strip().replace(",", "").lstrip("¥$€£")
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise DomainError(_l("'%(text)s' is not an amount of money.",
                                 text=text), field=field) from None
    if not value.is_finite():
        raise DomainError(_l("'%(text)s' is not an amount of money.", text=text), field=field)
    digits = minor_digits(currency)
    scaled = value.scaleb(digits)
    if scaled != scaled.to_integral_value():
        raise DomainError(_l("Use at most %(digits)s decimal places.", digits=digits), field=field)
    if scaled < 0 and not allow_negative:
        raise DomainError(_l("The amount must not be negative."), field=field)
    if abs(scaled) > MAX_AMOUNT:
        raise DomainError(_l("The amount is too large."), field=field)
    return int(scaled)


def parse_percent(text: str | None, *, allow_negative=False, field: str | None = None) -> int:
    """'12.5' -> 1250 basis points."""
    try:
        value = Decimal((text or "").strip().rstrip("%"))
    except InvalidOperation:
        raise DomainError(_l("'%(text)s' is not a percentage.", text=text), field=field) from None
    if not value.is_finite():
        raise DomainError(_l("'%(text)s' is not a percentage.", text=text), field=field)
    bp = value * 100
    if bp != bp.to_integral_value():
        raise DomainError(_l("Use at most two decimal places in a percentage."), field=field)
    if bp < 0 and not allow_negative:
        raise DomainError(_l("The percentage must not be negative."), field=field)
    if abs(bp) > 100 * BASIS_POINTS:
        raise DomainError(_l("The percentage is too large."), field=field)
    return int(bp)


def decimal_string(minor: int, currency: str = "CNY") -> str:
    """1234 -> '12.34' (no symbol): for forms, CSV and payment gateways."""
    digits = minor_digits(currency)
    if digits == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**digits)
    return f"{sign}{whole}.{frac:0{digits}d}"


def format_money(minor: int | None, currency: str = "CNY") -> str:
    """1234 -> '¥12.34'."""
    if minor is None:
        return ""
    symbol = SYMBOLS.get(currency.upper(), currency.upper() + " ")
    text = decimal_string(abs(minor), currency)
    return f"{'-' if minor < 0 else ''}{symbol}{text}"


def percent_string(bp: int) -> str:
    """1250 -> '12.5'."""
    value = Decimal(bp) / 100
    return format(value.normalize(), "f") if value != value.to_integral() else str(int(value))


def _div_half_up(numerator: int, denominator: int) -> int:
    return int((Decimal(numerator) / Decimal(denominator)).quantize(Decimal(1), ROUND_HALF_UP))


def apply_percent(amount: int, bp: int) -> int:
    """`bp` basis points of `amount`, rounded half up (away from zero)."""
    return _div_half_up(amount * bp, BASIS_POINTS)


def apply_rounding(amount: int, rule: str) -> int:
    """Round a price by a shop's rule: to a step (half up), or up to a price ending in .99/.9."""
    if rule in ("0.01", "", None):
        return amount
    if rule in ("0.1", "1"):
        step = 10 if rule == "0.1" else 100
        return _div_half_up(amount, step) * step
    if rule in (".99", ".9"):
        ending = 99 if rule == ".99" else 90
        whole = amount // 100
        candidate = whole * 100 + ending
        return candidate if candidate >= amount else candidate + 100
    raise DomainError(_l("Unknown rounding rule '%(rule)s'.", rule=rule), field="rounding")
