"""Money as panels print it: thousands separators (PHP's number_format), decimal commas, and the
one rule for text that could be read either way."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.money import to_decimal, to_int
from bot.panel.sandbox import DEFAULT_SERVICES, DEMO_KEY, SandboxPanel
from tests.conftest import start_harness, stop_harness


def number_format(amount: Decimal, decimals: int = 0, point: str = ".", sep: str = ",") -> str:
    """PHP's number_format($amount, $decimals, $point, $sep): rounded half up, grouped by 3."""
    rounded = amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    sign = "-" if rounded < 0 else ""
    whole, _, frac = f"{abs(rounded):f}".partition(".")
    groups = []
    while len(whole) > 3:
        whole, groups = whole[:-3], [whole[-3:], *groups]
    text = sep.join([whole, *groups])
    return sign + text + (point + frac if decimals else "")


amounts = st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), allow_nan=False,
                      allow_infinity=False, places=8)


@given(amounts, st.integers(min_value=0, max_value=8))
def test_php_number_format_default_reads_back_equal(amount: Decimal, decimals: int) -> None:
    text = number_format(amount, decimals)
    assert to_decimal(text) == Decimal(text.replace(",", ""))


@given(amounts, st.sampled_from([1, 2, 4, 5, 8]))
def test_european_format_with_a_decimal_comma_reads_back_equal(amount: Decimal,
                                                                decimals: int) -> None:
    text = number_format(amount, decimals, point=",", sep=".")
    assert to_decimal(text) == Decimal(text.replace(".", "").replace(",", "."))


@pytest.mark.parametrize(("text", "expected"), [
    ("1,234.56", "1234.56"),       # PHP's number_format($x, 2)
    ("1,234,567.891", "1234567.891"),
    ("1,234", "1234"),             # number_format($x): a lone comma before three digits groups
    ("12,345", "12345"),
    ("-1,234.5", "-1234.5"),
    ("1.234,56", "1234.56"),       # European: dots group, the comma is the decimal point
    ("1.234.567", "1234567"),
    ("1 234,56", "1234.56"),
    ("1,5", "1.5"),                # a decimal comma where that is the only reading
    ("0,234", "0.234"),            # a group never starts with 0, so this is a decimal comma
    ("1234,567", "1234.567"),      # four digits before the comma: not a group either
    ("1,2345", "1.2345"),
    ("1.234", "1.234"),            # a lone dot is always the decimal point
    ("0.90", "0.90"),
    ("1.5E-5", "0.000015"),
    (" 42 ", "42"),
])
def test_readings(text: str, expected: str) -> None:
    assert to_decimal(text) == Decimal(expected)


@pytest.mark.parametrize("text", ["1,23,456", "1,234.5,6", "1.234.5", "12,34.5", "1,,234",
                                  ",", ".", "1,234,", "abc", "1e", "NaN", "Infinity",
                                  "١٢٣", "²", "1,2٣4"])
def test_text_that_is_no_amount_is_unreadable(text: str) -> None:
    assert to_decimal(text) is None


def test_whole_numbers_with_separators() -> None:
    assert to_int("1,000") == 1000
    assert to_int("10,000,000") == 10_000_000
    assert to_int("1,5") is None


# --- through the bot: a panel that prints its numbers with number_format ----------------------

RICH = {"service": 900, "name": "Premium Followers", "type": "Default", "category": "Premium",
        "rate": "1234.56", "min": "100", "max": "10000", "refill": False, "cancel": False}


class PhpPanel(SandboxPanel):
    """The sandbox, printing rates, bounds and balances the way number_format does."""

    def answer(self, fields: Mapping[str, str]) -> Any:
        payload = super().answer(fields)
        if fields.get("action") == "services" and isinstance(payload, list):
            for row in payload:
                row["rate"] = number_format(Decimal(row["rate"]), 2)
                row["max"] = number_format(Decimal(row["max"]))
        if fields.get("action") == "balance" and isinstance(payload, dict):
            payload["balance"] = number_format(Decimal(payload["balance"]), 2)
        return payload


async def test_a_panel_printing_thousands_separators_is_listed_and_its_balance_shown(
        tmp_path: Path) -> None:
    panel = PhpPanel(keys={DEMO_KEY: Decimal("12345.67")}, services=[*DEFAULT_SERVICES, RICH])
    bot = await start_harness(tmp_path, sandbox=panel)
    try:
        await bot.send("/balance")
        assert "Balance: 12,345.67 USD" in bot.last().plain
        await bot.send("/services premium")
        listed = bot.last().plain
        assert "#900 Premium Followers" in listed
        assert "1,234.56 USD per 1000 · 100–10,000" in listed
        await bot.send("/order 900")
        await bot.send("instagram.com/me")
        await bot.send("5,000")
        await bot.press("Skip")
        summary = bot.last().plain
        assert "Estimated cost: 6,172.80 USD" in summary
        assert "Balance: 12,345.67 USD" in summary and "not enough" not in summary
    finally:
        await stop_harness(bot)
