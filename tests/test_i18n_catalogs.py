"""The catalogs: every text of the bot translated in every language, with the source's
placeholders and HTML tags, as valid Telegram HTML; the template current with the code."""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot import i18n
from bot.standin.botapi import HtmlParseError, parse_html

BOT_DIR = Path(i18n.__file__).parent
#: The issue's ten: English (the source) and these nine catalogs.
LANGUAGES = ["ru", "es", "pt_BR", "ar", "fa", "hi", "id", "tr", "uz_Latn"]

_PLACEHOLDER = re.compile(r"(?<!\{)\{([^{}]*)\}(?!\})")
_TAG = re.compile(r"</?\s*([A-Za-z][A-Za-z0-9-]*)[^<>]*>")
_HREF = re.compile(r"""href\s*=\s*["']([^"']*)["']""")

Key = str | tuple[str, str]


@cache
def source_messages() -> dict[Key, list[str]]:
    """Every text the code gives the catalog (extracted as `pybabel extract` does), with the
    places it comes from."""
    found: dict[Key, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(BOT_DIR), method_map=[("standin/**", "ignore"), ("**.py", "python")],
        keywords={"_": None, "N_": None, "ngettext": (1, 2), "L_": None, "Ln_": (1, 2)},
    ):
        key: Key = message if isinstance(message, str) else (message[0], message[1])
        found.setdefault(key, []).append(f"{filename}:{lineno}")
    found.pop("", None)
    return found


@cache
def catalog(code: str) -> Catalog:
    with (i18n.LOCALES_DIR / f"{code}.po").open("rb") as file:
        return read_po(file, locale=code)


@cache
def plain_texts() -> frozenset[str]:
    """Texts Telegram shows as plain text, not HTML: the command menu's descriptions (there
    `<ids>` is what the user reads, not a tag)."""
    from bot.handlers.start import COMMANDS, SHOP_COMMANDS

    return frozenset(description for _name, description in [*COMMANDS, *SHOP_COMMANDS])


def placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def tags(text: str) -> Counter[str]:
    """The tags of a text, with the link targets of <a> (a translation keeps both)."""
    found = Counter(match.group(0).split()[0].strip("<>/").lower() + ("/" if match.group(0)
                    .startswith("</") else "") for match in _TAG.finditer(text))
    found.update(f"href={href}" for href in _HREF.findall(text))
    return found


def filled(text: str) -> str:
    """A text with its placeholders replaced by plain words, as `format` would."""
    return _PLACEHOLDER.sub("x", text).replace("{{", "{").replace("}}", "}")


def test_the_bot_speaks_the_ten_languages() -> None:
    assert set(i18n.languages()) == {"en", *LANGUAGES}
    assert i18n.own_name("ru") == "Русский"
    assert i18n.telegram_code("pt_BR") == "pt" and i18n.telegram_code("uz_Latn") == "uz"


def test_the_template_is_current_with_the_code() -> None:
    """bot/locales/messages.pot lists exactly the texts in the code (the README says how to
    extract it again), so a new language starts from all of them."""
    with (i18n.LOCALES_DIR / "messages.pot").open("rb") as file:
        template = read_po(file)
    in_template = {message.id if isinstance(message.id, str) else tuple(message.id)
                   for message in template if message.id}
    in_code = set(source_messages())
    assert in_code - in_template == set(), "texts missing from messages.pot: extract it again"
    assert in_template - in_code == set(), "texts no longer in the code: extract it again"


def forms_of(message: object) -> list[str]:
    string = getattr(message, "string", None)
    if isinstance(string, tuple | list):
        return list(string)
    return [string] if string else []


def untranslated(po: Catalog, sources: dict[Key, list[str]]) -> list[str]:
    """The source texts `po` has no (complete, non-fuzzy) translation for."""
    missing = []
    for key, where in sources.items():
        message = po.get(key[0] if isinstance(key, tuple) else key)
        strings = forms_of(message)
        if (message is None or message.fuzzy or not strings or not all(strings)
                or (isinstance(key, tuple) and len(strings) != po.num_plurals)):
            missing.append(f"{where[0]}: {key!r}")
    return missing


def mismatches(po: Catalog, sources: dict[Key, list[str]]) -> list[str]:
    """Translations whose placeholders or tags differ from the source's, or that are not valid
    Telegram HTML."""
    wrong = []
    for key in sources:
        singular = key[0] if isinstance(key, tuple) else key
        forms = forms_of(po.get(singular))
        texts = [key] if isinstance(key, str) else list(key)
        wanted = set().union(*(placeholders(text) for text in texts))
        for form in filter(None, forms):
            got = placeholders(form)
            # A plural form may leave the count out ("one order" for 1), nothing else.
            if got != wanted and not (isinstance(key, tuple) and got <= wanted
                                      and wanted - got <= {"n"}):
                wrong.append(f"{singular!r} → {form!r}: placeholders {sorted(got)} "
                             f"instead of {sorted(wanted)}")
            if singular in plain_texts():
                continue
            if tags(form) != tags(texts[-1]):
                wrong.append(f"{singular!r} → {form!r}: tags differ")
            try:
                parse_html(filled(form))
            except HtmlParseError as exc:
                wrong.append(f"{singular!r} → {form!r}: not valid Telegram HTML ({exc})")
    return wrong


@pytest.mark.parametrize("code", LANGUAGES)
def test_every_text_is_translated(code: str) -> None:
    missing = untranslated(catalog(code), source_messages())
    assert missing == [], f"{code}: {len(missing)} text(s) not translated:\n" + "\n".join(
        missing[:40])


@pytest.mark.parametrize("code", LANGUAGES)
def test_translations_keep_the_placeholders_and_the_tags(code: str) -> None:
    wrong = mismatches(catalog(code), source_messages())
    assert wrong == [], f"{code}:\n" + "\n".join(wrong[:40])


def test_the_source_texts_are_valid_telegram_html() -> None:
    broken = []
    for key in source_messages():
        if key in plain_texts():
            continue
        for text in [key] if isinstance(key, str) else list(key):
            try:
                parse_html(filled(text))
            except HtmlParseError as exc:
                broken.append(f"{text!r}: {exc}")
    assert broken == []


def test_the_checks_catch_a_missing_text_a_lost_placeholder_and_broken_tags() -> None:
    sources: dict[Key, list[str]] = {
        "Order {number} placed.": ["a.py:1"], "<b>Balance</b>: {amount}": ["a.py:2"],
        ("{n} order", "{n} orders"): ["a.py:3"], "Back": ["a.py:4"]}
    po = Catalog(locale="ru")
    po.add("Order {number} placed.", "Заказ {номер} размещён.")
    po.add("<b>Balance</b>: {amount}", "<b>Баланс: {amount}")
    po.add(("{n} order", "{n} orders"), ("{n} заказ", "{n} заказа"))  # Russian has three
    assert untranslated(po, sources) == ["a.py:3: ('{n} order', '{n} orders')",
                                         "a.py:4: 'Back'"]
    found = mismatches(po, sources)
    assert any("placeholders ['номер'] instead of ['number']" in line for line in found)
    assert any("Баланс" in line and "tags differ" in line for line in found)
    assert any("Баланс" in line and "not valid Telegram HTML" in line for line in found)
    po.add("Back", "Назад", flags=["fuzzy"])
    assert "a.py:4: 'Back'" in untranslated(po, sources)
