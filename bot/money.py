"""Money and numbers as panels send them: Decimal from the wire to the screen, never float."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext

from bot import i18n

PER_UNITS = Decimal(1000)


# Only ASCII digits: Decimal() would also take "١٢٣" (Arabic-Indic), which no panel sends.
_PLAIN = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_COMMA_GROUPS = re.compile(r"(?P<whole>[1-9][0-9]{0,2}(?:,[0-9]{3})+)(?:\.(?P<frac>[0-9]+))?")
_DOT_GROUPS = re.compile(r"(?P<whole>[1-9][0-9]{0,2}(?:\.[0-9]{3})+)(?:,(?P<frac>[0-9]+))?")
_DECIMAL_COMMA = re.compile(r"(?P<whole>[0-9]*),(?P<frac>[0-9]+)")
_SPACES = str.maketrans("", "", " \u00a0\u2009\u202f")


def to_decimal(value: object) -> Decimal | None:
    """Reads a panel number as Decimal; None when absent or unreadable.

    Text is read as panels print it (spaces between digit groups are dropped):
      "0.90", "1.5E-5"          a dot is the decimal point ("1.234" is 1.234);
      "1,234.56", "1,234,567"   commas group thousands (PHP's number_format default);
      "1.234,56", "1.234.567"   dots group thousands, a comma is the decimal point;
      "1,5", "0,234", "12,3456" a lone comma is a decimal comma...
      "1,234", "12,345"         ...except before exactly three digits after 1-3 digits that do
                                not start with 0: that is a thousands group, as number_format
                                prints whole amounts. The other reading (1.234) would make a
                                price a thousand times too low, this one a thousand times too
                                high: the safe side when money is spent on it.
    Groups must be whole ("1,23,456" and "12,34.5" are unreadable), digits ASCII.
    """
    if type(value) is str and _PLAIN.fullmatch(value):  # the usual "0.90", first: no sign,
        return _finite(value)  # spaces or groups to read (panels send thousands per cycle)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # Through repr, so 0.9 stays 0.9 rather than 0.90000000000000002220…
        return Decimal(repr(value))
    if isinstance(value, str):  # not plain (read first, above): a sign, spaces or groups
        return _read_text(value.strip().translate(_SPACES))
    return None


def _finite(digits: str) -> Decimal | None:
    """Decimal(digits) when that is a finite number, else None."""
    try:
        result = Decimal(digits)
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def _read_text(text: str) -> Decimal | None:
    """A number written as `to_decimal` describes, or None."""
    sign = text[:1] if text[:1] in ("+", "-") else ""
    text = text[len(sign):]
    if _PLAIN.fullmatch(text):
        digits = text
    elif match := _COMMA_GROUPS.fullmatch(text) or _DOT_GROUPS.fullmatch(text):
        whole = match["whole"].replace(",", "").replace(".", "")
        digits = f"{whole}.{match['frac']}" if match["frac"] else whole
    elif match := _DECIMAL_COMMA.fullmatch(text):
        digits = f"{match['whole'] or '0'}.{match['frac']}"
    else:
        return None
    return _finite(sign + digits)


_WHOLE = re.compile(r"[0-9]{1,18}")


def parse_whole(text: str, *, max_digits: int = 18) -> int | None:
    """A whole number a user typed (an id, a page) or a button carries: ASCII digits only, at
    most `max_digits` of them; None for anything else. `str.isdigit()` is not the test: it is
    True for "²", which int() refuses, and int() reads "٣" as 3."""
    if len(text) > max_digits or not _WHOLE.fullmatch(text):
        return None
    return int(text)


def to_int(value: object) -> int | None:
    """Reads a panel whole number ("50", 50, "50.0") as int; None when absent or not whole."""
    if type(value) is int:  # not bool
        return value if abs(value) < 10**19 else None
    if isinstance(value, str) and len(value) <= 18 and value.isascii() and value.isdigit():
        return int(value)  # the usual "50"
    number = to_decimal(value)
    # adjusted() guards against "1e999999999", which int() would expand into a huge number.
    if number is None or number.adjusted() > 18 or number != number.to_integral_value():
        return None
    return int(number)


def order_cost(rate: Decimal, quantity: int) -> Decimal:
    """The exact cost of `quantity` units at `rate` per 1000 units."""
    return rate * Decimal(quantity) / PER_UNITS


def format_money(amount: Decimal, currency: str = "", places: int = 4) -> str:
    """Rounds only for display: at least 2 and at most `places` decimals, trailing zeros trimmed,
    written the reader's way (`bot.i18n.decimal`: 1,234.50 / 1 234,50 / 1.234,50)."""
    quantum = Decimal(1).scaleb(-places)
    with localcontext() as context:  # enough digits that quantize never fails on big amounts
        context.prec = max(context.prec, amount.adjusted() + places + 2)
        rounded = amount.quantize(quantum, rounding=ROUND_HALF_UP)
    if rounded.is_zero():
        rounded = rounded.copy_abs()  # "-0.00001" shows as 0.00, not -0.00
    text = i18n.decimal(rounded, places=places, keep=min(2, places))
    return f"{text} {currency}".strip()
