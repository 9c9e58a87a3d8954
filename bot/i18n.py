"""The bot's languages: gettext catalogs (Babel), the reader's language, and texts for later.

Every text the bot sends goes through the catalog:

- ``_("Order {number} placed.").format(number=...)`` translates now, into the language of the
  update being handled (`speaking` / `set_language` set it; the source, English, otherwise);
- ``ngettext("{n} order", "{n} orders", n).format(n=...)`` picks the language's plural form;
- ``N_("…")`` only marks a text for the catalog (module constants, tables built at import):
  translate it with ``_()`` where it is shown;
- ``L_("…", **values)`` / ``Ln_(singular, plural, n, **values)`` make a `Msg`: a text rendered
  later, in its reader's language. Notifications are written as Msgs (the outbox stores them as
  JSON) and rendered when they are sent, in the owner's language of that moment.

Placeholders are named (``{number}``) so a translation may put them in any order; values put into
a text are escaped by the caller (`bot.text.esc`) where they come from a user or the panel.

The catalogs are the files ``bot/locales/<code>.po`` (``messages.pot`` is their template): adding
a language is adding one file. They are read with Babel and compiled in memory at start-up.
Numbers, money and dates are formatted by Babel for the language (`number`, `decimal`, `when`).
"""

from __future__ import annotations

import gettext as _gettext
import io
import json
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_skeleton
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import (
    NumberPattern,
    format_decimal,
    get_decimal_symbol,
    get_group_symbol,
    parse_pattern,
)
from babel.support import Translations

SOURCE = "en"  # the language the texts are written in
LOCALES_DIR = Path(__file__).with_name("locales")

_current: ContextVar[str] = ContextVar("language", default=SOURCE)


# --- the catalogs ------------------------------------------------------------------------------


@cache
def _translation(code: str) -> _gettext.NullTranslations:
    """A language's compiled catalog, read on first use (the source language's is empty)."""
    if code == SOURCE or code not in languages():
        return _gettext.NullTranslations()
    with (LOCALES_DIR / f"{code}.po").open("rb") as file:
        catalog = read_po(file, locale=code)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)  # fuzzy entries are left out: they are not translations
    compiled.seek(0)
    return Translations(compiled)


@cache
def languages() -> tuple[str, ...]:
    """The codes of the languages the bot speaks (a catalog file each): the source first."""
    return (SOURCE, *sorted(path.stem for path in LOCALES_DIR.glob("*.po")
                            if path.stem != SOURCE))


def reload() -> None:
    """Forgets the catalogs read and the languages found (after a catalog file changed)."""
    for cached in (_translation, languages, best_language):
        cached.cache_clear()


@cache
def own_name(code: str) -> str:
    """A language's name in that language ("Русский", "Português (Brasil)")."""
    name = Locale.parse(code).get_display_name(code) or code
    return name[:1].upper() + name[1:]


@cache
def telegram_code(code: str) -> str:
    """The two-letter ISO 639-1 code Telegram uses for a language (``pt_BR`` → ``pt``)."""
    return Locale.parse(code).language


@cache
def best_language(tag: str | None) -> str | None:
    """The bot's language for a Telegram ``language_code`` (an IETF tag such as ``pt-br``,
    ``uz``, ``ar``), or None when the bot does not speak it: the exact locale first, then any
    of the bot's languages with the same base language."""
    if not tag:
        return None
    try:
        wanted = Locale.parse(tag.replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return None
    codes = languages()
    exact = str(wanted)
    if exact in codes:
        return exact
    same = [code for code in codes if Locale.parse(code).language == wanted.language]
    return same[0] if same else None


# --- the reader's language ---------------------------------------------------------------------


def language() -> str:
    """The language texts are rendered in now."""
    return _current.get()


def set_language(code: str) -> Token[str]:
    """Makes `code` the language of what follows in this task (an update's handling)."""
    return _current.set(code if code in languages() else SOURCE)


class speaking:
    """``with speaking(code):`` renders the texts of a block in `code` (a notification for its
    owner). A class rather than a generator: the tracker enters one per notification, and a
    generator-based context manager cost it several times more than the switch itself."""

    __slots__ = ("_code", "_token")

    def __init__(self, code: str) -> None:
        self._code = code

    def __enter__(self) -> None:
        self._token = set_language(self._code)

    def __exit__(self, *_exc: object) -> None:
        _current.reset(self._token)


@cache
def _locale(code: str) -> Locale:
    return Locale.parse(code)


def locale() -> Locale:
    """The Babel locale of the current language."""
    return _locale(_current.get())


# --- translating -------------------------------------------------------------------------------


def _(message: str) -> str:
    """The current language's translation of `message` (itself when there is none)."""
    return _translation(_current.get()).gettext(message)


def translator() -> Callable[[str], str]:
    """`_` for the current language, looked up once (for a function translating many texts)."""
    return _translation(_current.get()).gettext


def ngettext(singular: str, plural: str, n: int) -> str:
    """The current language's form of a text for the count `n`."""
    return _translation(_current.get()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks a text for the catalog without translating it (translate it where it is shown)."""
    return message


# --- formatting --------------------------------------------------------------------------------


def number(value: int) -> str:
    """A whole number for the current language (12,345 / 12 345 / 12.345 / 12,34,567): exactly
    what Babel's `format_decimal` writes, laid out from the locale's own pattern and symbols."""
    layout = _whole_layout(_current.get())
    if layout is None or type(value) is not int or value < 0:
        return format_decimal(value, locale=locale())
    return _grouped(str(value), layout.group, layout.primary, layout.secondary)


def decimal(value: Decimal, *, places: int = 2, keep: int = 2) -> str:
    """A decimal for the current language, with `keep` to `places` decimals (trailing zeros
    past `keep` trimmed). The value is expected rounded already (`bot.money`): every decimal it
    has is shown, as Babel's `format_decimal(..., decimal_quantization=False)` shows them."""
    if not value.is_finite() or value.is_signed():
        with localcontext() as context:  # Babel rounds on the context: big amounts need digits
            context.prec = max(context.prec, value.adjusted() + places + 4)
            return format_decimal(value, format=_decimal_pattern(places, keep), locale=locale(),
                                  decimal_quantization=False)
    whole, _dot, fraction = f"{value:f}".partition(".")
    fraction = fraction.rstrip("0")
    if len(fraction) < keep:
        fraction += "0" * (keep - len(fraction))
    layout = _decimal_layout(_current.get())
    # The pattern "#,##0.00##" groups by three, whatever the locale's own pattern does.
    text = _grouped(whole, layout.group, 3, 3)
    if not fraction:
        return text
    return f"{text}{layout.point}{fraction}"


@dataclass(frozen=True, slots=True)
class _Layout:
    """How a language writes numbers: its group and decimal symbols, its group sizes."""

    group: str
    point: str
    primary: int
    secondary: int


@cache
def _whole_layout(code: str) -> _Layout | None:
    """The layout of a language's own decimal pattern (Babel's data: "#,##,##0.###" in hi);
    None for a pattern with more to it than groups (a prefix, a suffix): Babel writes those."""
    place = _locale(code)
    pattern = place.decimal_formats[None]
    if pattern.prefix[0] or pattern.suffix[0]:
        return None
    return _Layout(get_group_symbol(place), get_decimal_symbol(place), *pattern.grouping)


@cache
def _decimal_layout(code: str) -> _Layout:
    """The symbols `decimal` writes in a language."""
    place = _locale(code)
    return _Layout(get_group_symbol(place), get_decimal_symbol(place), 3, 3)


def _grouped(digits: str, group: str, primary: int, secondary: int) -> str:
    """ASCII digits with `group` between groups: the last `primary` long, the others
    `secondary` long (Babel's NumberPattern._format_int)."""
    if len(digits) <= primary:
        return digits
    parts = [digits[-primary:]]
    digits = digits[:-primary]
    while len(digits) > secondary:
        parts.append(digits[-secondary:])
        digits = digits[:-secondary]
    parts.append(digits)
    return group.join(reversed(parts))


@cache
def _decimal_pattern(places: int, keep: int) -> NumberPattern:
    """The parsed Babel pattern of `decimal`, for the values its own layout leaves to Babel."""
    return parse_pattern(
        "#,##0" + ("." + "0" * keep + "#" * max(places - keep, 0) if places else ""))


def when(timestamp: float) -> str:
    """A moment (unix seconds, shown in UTC) for the current language: "Dec 1, 2026 11:25 UTC",
    "1 дек. 2026 г. 11:25 UTC" (24-hour time everywhere: no AM/PM to misread)."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    day = format_skeleton("yMMMd", moment, locale=locale())
    return f"{day} {format_skeleton('Hm', moment, locale=locale())} UTC"


# --- texts for later ---------------------------------------------------------------------------

#: What a `Msg` may carry: text (already escaped HTML), numbers, money and other Msgs.
Value = Any


@dataclass(frozen=True, slots=True)
class Money:
    """An amount shown in the reader's language (`bot.money.format_money`)."""

    amount: Decimal
    currency: str = ""
    places: int = 4

    def render(self) -> str:
        from bot.money import format_money

        return format_money(self.amount, self.currency, places=self.places)


@dataclass(frozen=True, slots=True)
class Number:
    """A whole number shown in the reader's language."""

    value: int

    def render(self) -> str:
        return number(self.value)


@dataclass(frozen=True, slots=True)
class Msg:
    """A catalog text and the values for its placeholders, rendered in the language current
    when `render` is called."""

    msgid: str
    values: Mapping[str, Value] = field(default_factory=dict)
    plural: str | None = None
    n: int = 0

    def render(self) -> str:
        template = (_(self.msgid) if self.plural is None
                    else ngettext(self.msgid, self.plural, self.n))
        if not self.values and self.plural is None:
            return template
        return template.format(n=self.n, **{key: render(value)
                                            for key, value in self.values.items()})

    def __str__(self) -> str:
        return self.render()


@dataclass(frozen=True, slots=True)
class Joined:
    """Several texts in one, with a separator (" · ", a line break)."""

    parts: Sequence[Value]
    sep: str = " · "

    def render(self) -> str:
        return self.sep.join([render(part) for part in self.parts])


# Tuples, not `A | B`: a union in isinstance is built anew at each call.
_LAZY = (Msg, Joined, Money, Number)
_PLAIN = (str, int, float)


def L_(message: str, /, **values: Value) -> Msg:
    """A text to render later, in its reader's language."""
    return Msg(message, values)


def Ln_(singular: str, plural: str, n: int, /, **values: Value) -> Msg:
    """A text with a count to render later; ``{n}`` in it is the count."""
    return Msg(singular, values, plural=plural, n=n)


def render(value: Value) -> str:
    """A value of a `Msg` as text in the current language."""
    if type(value) is str:  # most values (the tracker renders ~10 per notification)
        return value
    if isinstance(value, _LAZY):
        return value.render()
    return str(value)  # ids and text as they are: a count that wants grouping is a Number


def in_language(value: Value, code: str) -> str:
    """A value rendered in the language `code`."""
    with speaking(code):
        return render(value)


# --- texts for later, as JSON (the outbox keeps them so; notes in the database too) ------------

_STORED = "msg:"  # a database text that is a Msg as JSON (else: words as someone wrote them)


def stored(value: Value) -> str:
    """A text to keep in the database and show later in its reader's language (an order's
    note, a wallet entry's note): the Msg as JSON behind a marker."""
    return _STORED + json.dumps(to_json(value), ensure_ascii=False, separators=(",", ":"))


def from_stored(text: str) -> Value | None:
    """The Msg a `stored` text holds, or None for words stored as they were written (the
    panel's error, an admin's note)."""
    if not text.startswith(_STORED):
        return None
    try:
        return from_json(json.loads(text[len(_STORED):]))
    except (ValueError, TypeError, KeyError):
        return None



def to_json(value: Value) -> Any:
    """A `Msg` (or any Value) as JSON."""
    if type(value) is str:
        return value
    if isinstance(value, Msg):
        data: dict[str, Any] = {"m": value.msgid,
                                "v": {key: to_json(item) for key, item in value.values.items()}}
        if value.plural is not None:
            data["p"], data["n"] = value.plural, value.n
        return data
    if isinstance(value, Joined):
        return {"j": [to_json(part) for part in value.parts], "s": value.sep}
    if isinstance(value, Money):
        return {"$": str(value.amount), "c": value.currency, "d": value.places}
    if isinstance(value, Number):
        return {"#": value.value}
    if isinstance(value, Decimal):
        return {"d": str(value)}
    if isinstance(value, _PLAIN) or value is None:
        return value
    return str(value)


def from_json(data: Any) -> Value:
    """The Value `to_json` wrote."""
    if isinstance(data, dict):
        if "m" in data:
            values = {key: from_json(item) for key, item in dict(data.get("v") or {}).items()}
            if "p" in data:
                return Msg(str(data["m"]), values, plural=str(data["p"]), n=int(data["n"]))
            return Msg(str(data["m"]), values)
        if "j" in data:
            return Joined([from_json(part) for part in data["j"]], str(data.get("s", " · ")))
        if "$" in data:
            return Money(Decimal(data["$"]), str(data.get("c", "")), int(data.get("d", 4)))
        if "#" in data:
            return Number(int(data["#"]))
        if "d" in data:
            return Decimal(data["d"])
    return data
