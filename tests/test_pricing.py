"""Shop prices: the panel's rate × (1 + markup), per-service rules, totals rounded up."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.panel.models import Service
from bot.services.pricing import PriceList, PriceRefused, minor_digits, parse_percent, round_up
from storage.prices import PriceOverride

FOLLOWERS = Service(1, "Followers", "Default", "IG", Decimal("0.90"), 50, 10_000)
VIEWS = Service(16, "Views", "Default", "TT", Decimal("0.0125"), 1000, 10_000_000)
PACKAGE = Service(14, "Starter", "Package", "IG", Decimal("4.99"), 1, 1)
AUTO_LIKES = Service(4, "Auto Likes", "Subscriptions", "IG", Decimal("0.30"), 100, 5000)
COMMENTS = Service(3, "Comments", "Custom Comments", "IG", Decimal("8"), 10, 1500)
THIRTY = PriceList(Decimal(30))


def test_the_price_is_the_rate_times_one_plus_the_markup_exactly() -> None:
    assert THIRTY.unit_price(FOLLOWERS) == Decimal("1.17")
    assert THIRTY.unit_price(VIEWS) == Decimal("0.01625")  # kept exact, not rounded
    assert PriceList(Decimal("12.5")).unit_price(FOLLOWERS) == Decimal("1.0125")


def test_an_order_total_is_rounded_up_to_the_cent_never_below_cost() -> None:
    quote = THIRTY.quote(FOLLOWERS, {"quantity": "100"}, "USD")
    assert quote is not None
    assert (quote.unit_price, quote.cost, quote.total) == (Decimal("1.17"), Decimal("0.09"),
                                                            Decimal("0.12"))  # 0.117 → 0.12
    drip = THIRTY.quote(FOLLOWERS, {"quantity": "1000", "runs": "5"}, "USD")
    assert drip is not None and drip.total == Decimal("5.85")
    tiny = PriceList(Decimal(0)).quote(VIEWS, {"quantity": "1000"}, "USD")
    assert tiny is not None and tiny.cost == Decimal("0.0125") and tiny.total == Decimal("0.02")
    package = THIRTY.quote(PACKAGE, {"link": "x"}, "USD")
    assert package is not None and package.total == Decimal("6.49")  # 6.487 → 6.49
    lines = THIRTY.quote(COMMENTS, {"comments": "a\nb\nc"}, "USD")
    assert lines is not None and lines.total == Decimal("0.04")  # 3 × 10.40 / 1000 = 0.0312


def test_other_currencies_round_to_their_own_minor_unit() -> None:
    assert minor_digits("JPY") == 0 and minor_digits("KWD") == 3 and minor_digits("") == 2
    yen = Service(1, "Followers", "Default", "IG", Decimal("130"), 50, 10_000)
    quote = THIRTY.quote(yen, {"quantity": "55"}, "JPY")
    assert quote is not None and quote.total == Decimal("10")  # 9.295 → 10
    assert round_up(Decimal("1.2301"), "KWD") == Decimal("1.231")


def test_subscriptions_are_not_sold_and_off_hides_a_service() -> None:
    assert THIRTY.unit_price(AUTO_LIKES) is None
    assert THIRTY.quote(AUTO_LIKES, {"max": "200"}, "USD") is None
    hidden = PriceList(Decimal(30), {1: PriceOverride(1, "off", None)})
    assert hidden.hidden(1) and hidden.unit_price(FOLLOWERS) is None
    assert hidden.unit_price(VIEWS) == Decimal("0.01625")


def test_a_service_rule_replaces_the_markup_but_never_sells_below_the_panels_rate() -> None:
    own = PriceList(Decimal(30), {1: PriceOverride(1, "price", Decimal("1.50")),
                                  16: PriceOverride(16, "percent", Decimal(100))})
    assert own.unit_price(FOLLOWERS) == Decimal("1.50")
    assert own.unit_price(VIEWS) == Decimal("0.025")
    # The panel raised its rate above the price an admin set: it sells at cost, not below.
    dearer = Service(1, "Followers", "Default", "IG", Decimal("2.00"), 50, 10_000)
    assert own.listed_price(dearer) == Decimal("1.50") and own.unit_price(dearer) == Decimal(2)
    quote = own.quote(dearer, {"quantity": "333"}, "USD")
    assert quote is not None and quote.total == Decimal("0.67") >= quote.cost


def test_percent_parsing() -> None:
    assert parse_percent("+12.5%") == Decimal("12.5")
    assert parse_percent("30") == Decimal(30)
    for bad in ("-5%", "lots", "NaN", "1e9"):
        with pytest.raises(PriceRefused):
            parse_percent(bad)


@given(rate=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1000), places=4),
       markup=st.decimals(min_value=Decimal(0), max_value=Decimal(500), places=2),
       quantity=st.integers(min_value=1, max_value=1_000_000))
def test_no_order_is_ever_sold_below_its_panel_cost(rate: Decimal, markup: Decimal,
                                                    quantity: int) -> None:
    service = Service(9, "S", "Default", "C", rate, 1, 10**7)
    quote = PriceList(markup).quote(service, {"quantity": str(quantity)}, "USD")
    assert quote is not None
    assert quote.total >= quote.cost and quote.total >= Decimal("0.01")
    assert quote.total == quote.total.quantize(Decimal("0.01"))
    exact = rate * (100 + markup) / 100 * quantity / 1000
    assert exact <= quote.total < exact + Decimal("0.01") or quote.total == Decimal("0.01")
