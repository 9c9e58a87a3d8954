"""Money and numbers as panels send them: Decimal from the wire to the screen, never float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext

PER_UNITS = Decimal(1000)


def to_decimal(value: object) -> Decimal | None:
    """Reads a panel number ("0.90", 0.9, 1, "1,5") as Decimal; None when absent or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # Through repr, so 0.9 stays 0.9 rather than 0.90000000000000002220…
        return Decimal(repr(value))
    if isinstance(value, str):
        text = value.strip().replace(",", ".").replace(" ", "")
        if not text:
            return None
        try:
            result = Decimal(text)
        except InvalidOperation:
            return None
        return result if result.is_finite() else None
    return None


def to_int(value: object) -> int | None:
    """Reads a panel whole number ("50", 50, "50.0") as int; None when absent or not whole."""
    number = to_decimal(value)
    # adjusted() guards against "1e999999999", which int() would expand into a huge number.
    if number is None or number.adjusted() > 18 or number != number.to_integral_value():
        return None
    return int(number)


def order_cost(rate: Decimal, quantity: int) -> Decimal:
    """The exact cost of `quantity` units at `rate` per 1000 units."""
    return rate * Decimal(quantity) / PER_UNITS


def format_money(amount: Decimal, currency: str = "", places: int = 4) -> str:
    """Rounds only for display: at least 2 and at most `places` decimals, trailing zeros trimmed."""
    quantum = Decimal(1).scaleb(-places)
    with localcontext() as context:  # enough digits that quantize never fails on big amounts
        context.prec = max(context.prec, amount.adjusted() + places + 2)
        rounded = amount.quantize(quantum, rounding=ROUND_HALF_UP)
    if rounded.is_zero():
        rounded = rounded.copy_abs()  # "-0.00001" shows as 0.00, not -0.00
    text = f"{rounded:f}"
    if "." in text:
        whole, frac = text.split(".")
        frac = frac.rstrip("0").ljust(2, "0")
        text = f"{whole}.{frac}"
    return f"{text} {currency}".strip()
