"""bot/i18n.py on its own: texts for later survive the outbox's JSON and render in the language
current when rendered; the update's language stays within its task."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal, localcontext

from babel.numbers import format_decimal
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import i18n
from bot.i18n import L_, Joined, Ln_, Money, Number


def test_a_text_for_later_survives_json_and_renders_in_the_readers_language() -> None:
    message = Joined([L_("{order}: the panel no longer knows this order; I stopped following "
                         "it.",
                         order=L_("Order {number}", number=23501)),
                      Ln_("{n} order", "{n} orders", 3),
                      Money(Decimal("1234.5"), "USD", 4), Number(12000), "<b>as is</b>"])
    again = i18n.from_json(json.loads(json.dumps(i18n.to_json(message))))
    assert again == message
    english = i18n.in_language(again, "en")
    assert english == ("Order 23501: the panel no longer knows this order; I stopped following "
                       "it. · 3 orders · 1,234.50 USD · 12,000 · <b>as is</b>")
    russian = i18n.in_language(again, "ru")
    assert "1 234,50 USD" in russian.replace("\u00a0", " ")
    assert "23501" in russian and not russian.startswith("Order")


def test_ids_are_never_grouped_but_numbers_are() -> None:
    assert L_("Order {number}", number=123456).render() == "Order 123456"
    with i18n.speaking("ru"):
        assert i18n.number(123456).replace("\u00a0", " ") == "123 456"


async def test_each_update_keeps_its_own_language() -> None:
    """Two updates handled at once, each in its task: neither sees the other's language."""
    seen: dict[str, str] = {}

    async def handle(code: str) -> None:
        i18n.set_language(code)
        await asyncio.sleep(0.01)
        seen[code] = i18n.language()

    await asyncio.gather(asyncio.create_task(handle("ru")), asyncio.create_task(handle("ar")))
    assert seen == {"ru": "ru", "ar": "ar"}
    assert i18n.language() == "en"


def test_an_unknown_language_falls_back_to_the_source() -> None:
    with i18n.speaking("xx"):
        assert i18n.language() == "en"
    assert i18n.best_language("de") is None
    assert i18n.best_language("pt-br") == "pt_BR" and i18n.best_language("uz") == "uz_Latn"


def test_a_note_kept_in_the_database_is_shown_in_the_readers_language() -> None:
    from bot.text import note_html, note_text

    kept = i18n.stored(L_("Telegram Stars: {stars} ⭐", stars=500))
    assert note_html(kept, 100) == "Telegram Stars: 500 ⭐"
    with i18n.speaking("tr"):
        assert note_html(kept, 100) == "Telegram Yıldızları: 500 ⭐"
    # Words someone wrote (the panel, an admin) are shown as written, escaped and clipped.
    assert note_html("msg <b>cash</b> & more", 100) == "msg &lt;b&gt;cash&lt;/b&gt; &amp; more"
    assert note_html("x" * 50, 10) == "x" * 9 + "…"
    assert note_text(i18n.stored(L_("not placed (checked by its owner)"))) == (
        "not placed (checked by its owner)")
    assert i18n.from_stored("msg:{broken") is None


# Numbers are laid out from Babel's own data (symbols, group sizes) rather than through
# `format_decimal`, which cost 15–25 µs a call (a catalogue page has a few dozen numbers): the
# text must be exactly Babel's, in every language, for every value.

def _babel_decimal(value: Decimal, places: int, keep: int) -> str:
    pattern = "#,##0" + ("." + "0" * keep + "#" * max(places - keep, 0) if places else "")
    with localcontext() as context:
        context.prec = max(context.prec, value.adjusted() + places + 4)
        return format_decimal(value, format=pattern, locale=i18n.locale(),
                              decimal_quantization=False)


@settings(max_examples=300, deadline=None)
@given(value=st.integers(min_value=-10**20, max_value=10**20),
       code=st.sampled_from(i18n.languages()))
def test_whole_numbers_are_written_exactly_as_babel_writes_them(value: int, code: str) -> None:
    with i18n.speaking(code):
        assert i18n.number(value) == format_decimal(value, locale=i18n.locale())


@settings(max_examples=400, deadline=None)
@given(value=st.integers(0, 10).flatmap(lambda digits: st.decimals(  # as money is: rounded
           allow_nan=False, allow_infinity=False, min_value=-10**15, max_value=10**15,
           places=digits)),
       places=st.integers(0, 10), keep=st.integers(0, 4),
       code=st.sampled_from(i18n.languages()))
def test_decimals_are_written_exactly_as_babel_writes_them(value: Decimal, places: int,
                                                          keep: int, code: str) -> None:
    keep = min(keep, places)
    with i18n.speaking(code):
        assert i18n.decimal(value, places=places, keep=keep) == _babel_decimal(value, places,
                                                                               keep)


def test_numbers_follow_each_languages_own_grouping() -> None:
    cases = {"en": "1,234,567", "ru": "1\xa0234\xa0567", "es": "1.234.567", "hi": "12,34,567"}
    for code, text in cases.items():
        with i18n.speaking(code):
            assert i18n.number(1234567) == text
    with i18n.speaking("hi"):  # money is grouped by three there too, as Babel's pattern says
        assert i18n.decimal(Decimal("1234567.5"), places=4, keep=2) == "1,234,567.50"
    with i18n.speaking("ru"):
        assert i18n.decimal(Decimal("0.27819"), places=10, keep=2) == "0,27819"
