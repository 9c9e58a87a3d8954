"""The bot in its users' languages, through the real Application: which language a user gets,
/language, the command menu per language, notifications rendered when sent, numbers written the
language's way, and whole flows (an order, its card, its notification, /help) in Russian,
Arabic and Hindi with no English sentence left."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from bot import i18n
from bot.jobs import send_pending
from bot.panel.sandbox import DEFAULT_SERVICES
from bot.services import notices
from bot.services.tracking import poll_orders
from storage import orders, outbox, users
from tests.conftest import OTHER, USER, BotHarness, start_harness, stop_harness

LINK = "https://instagram.com/p/abc"

# Three or more Latin-letter words in a row: an English sentence (or a piece of one).
_ENGLISH = re.compile(r"[A-Za-z][A-Za-z'’]*(?:[ ,;:]+[A-Za-z][A-Za-z'’]*){2,}")
_NOT_TEXT = re.compile(r"/[a-z_]+|@\w+|https?://\S+|[\w.-]+\.(?:com|org|me)/\S*|<[^>]+>")


def panel_words() -> list[str]:
    """What the panel writes and the bot shows as it is: service names, categories, the
    services' descriptions."""
    words = {str(service[key]) for service in DEFAULT_SERVICES
             for key in ("name", "category", "desc") if service.get(key)}
    return sorted(words, key=len, reverse=True)


def english_in(text: str) -> list[str]:
    """The English runs of words in a message, panel data and commands left out."""
    for word in panel_words():
        text = text.replace(word, " ")
    return _ENGLISH.findall(_NOT_TEXT.sub(" ", text))


def everything_said(bot: BotHarness, user: int = USER) -> list[str]:
    """Every text the user saw: messages (as they are now), their buttons, and toasts."""
    said = []
    for message in bot.world.bot_messages(user):
        said.append(message.plain)
        said += [label for row in bot.world.buttons(message) for label, _data in row]
    said += [str(call.get("text")) for call in bot.world.calls_to("answerCallbackQuery")
             if call.get("text")]
    return said


async def tap(bot: BotHarness, prefix: str, user: int = USER) -> None:
    """Taps the newest message's button whose callback data starts with `prefix` (the labels
    are in the user's language)."""
    message = bot.last(user)
    for row in bot.world.buttons(message):
        for _label, data in row:
            if data.startswith(prefix):
                await bot.press_data(data, user=user, message_id=message.message_id)
                return
    raise AssertionError(f"no button {prefix!r} under {message.plain!r}")


async def harness_speaking(tmp_path: Path, language_code: str, **settings: object) -> BotHarness:
    bot = await start_harness(tmp_path, **settings)
    bot.world.open_chat(USER, language_code=language_code)
    return bot


# --- which language -----------------------------------------------------------------------------


@pytest.mark.parametrize(("telegram", "expected"), [
    ("ru", "ru"), ("pt-br", "pt_BR"), ("pt", "pt_BR"), ("uz", "uz_Latn"), ("ar", "ar"),
    ("hi", "hi"), ("es-419", "es"), ("de", "en"), ("", "en")])
async def test_a_user_gets_their_telegram_language_or_the_default(
        tmp_path: Path, telegram: str, expected: str) -> None:
    bot = await harness_speaking(tmp_path, telegram)
    try:
        await bot.send("/help")
        with i18n.speaking(expected):
            assert i18n._("/language – the language I speak to you.") in bot.last().plain
        if expected != "en":
            assert "the language I speak to you" not in bot.last().plain
    finally:
        await stop_harness(bot)


async def test_the_default_language_is_for_users_the_bot_cannot_serve_in_theirs(
        tmp_path: Path) -> None:
    bot = await harness_speaking(tmp_path, "de", DEFAULT_LANGUAGE="es")
    try:
        await bot.send("/help")
        with i18n.speaking("es"):
            assert i18n._("/language – the language I speak to you.") in bot.last().plain
    finally:
        await stop_harness(bot)


async def test_language_lists_each_language_by_its_own_name_and_the_choice_sticks(
        tmp_path: Path) -> None:
    bot = await harness_speaking(tmp_path, "en")
    try:
        await bot.send("/language")
        labels = bot.buttons()
        for name in ("English", "Русский", "Español", "Português (Brasil)", "العربية", "فارسی",
                     "हिन्दी", "Indonesia", "Türkçe", "O‘zbek (lotin)"):
            assert name in labels
        await bot.press("Русский")
        assert "✅ Русский" in bot.buttons()
        await bot.send("/help")
        assert "the language I speak to you" not in bot.last().plain
        with i18n.speaking("ru"):
            assert i18n._("/language – the language I speak to you.") in bot.last().plain
        # Only this user: another keeps their own.
        await bot.send("/help", user=OTHER)
        assert "the language I speak to you" in bot.last(OTHER).plain
        # The menu of this chat follows the choice.
        menu = bot.world.commands(scope={"type": "chat", "chat_id": USER})
        with i18n.speaking("ru"):
            assert {"command": "language",
                    "description": i18n._("Choose the bot's language")} in menu
    finally:
        await stop_harness(bot)
    # Kept over a restart.
    again = await start_harness(tmp_path)
    try:
        await again.send("/help")
        assert "the language I speak to you" not in again.last().plain
        await again.send("/language")
        await tap(again, "lg:auto")
        await again.send("/help")
        assert "the language I speak to you" in again.last().plain
        assert (await users.get_user(again.deps.db, USER)).locale is None  # type: ignore[union-attr]
    finally:
        await stop_harness(again)


async def test_a_forged_language_button_changes_nothing(tmp_path: Path) -> None:
    bot = await harness_speaking(tmp_path, "en")
    try:
        await bot.send("/language")
        await bot.press_data("lg:xx")
        assert bot.world.calls_to("answerCallbackQuery")[-1]["text"] == (
            "This button is no longer valid.")
        assert USER not in bot.deps.languages.chosen
    finally:
        await stop_harness(bot)


async def test_the_command_menu_is_set_in_every_language(bot: BotHarness) -> None:
    english = {c["command"]: c["description"] for c in bot.world.commands()}
    assert english["language"] == "Choose the bot's language"
    for code in i18n.languages():
        menu = {c["command"]: c["description"]
                for c in bot.world.commands(language_code=i18n.telegram_code(code))}
        assert menu.keys() == english.keys(), code
        if code != "en":
            assert all(menu[name] != english[name] for name in menu), code


# --- when a text is rendered ----------------------------------------------------------------------


async def test_a_notification_is_rendered_in_the_owners_language_when_sent(
        tmp_path: Path) -> None:
    bot = await harness_speaking(tmp_path, "en")
    try:
        await bot.send("/start")
        message = i18n.L_("{order}: the panel no longer knows this order; I stopped following "
                          "it.", order=i18n.L_("Order {number}", number=23501))
        await outbox.enqueue_notice(bot.deps.db, notices.notice(USER, message))
        [queued] = await outbox.pending_notifications(bot.deps.db, limit=10)
        assert queued.text.startswith("Order 23501")  # the record keeps the English text
        await bot.deps.languages.choose(bot.deps.db, USER, "ru")  # changed before it is sent
        await send_pending(bot.app.bot, bot.deps)
        with i18n.speaking("ru"):
            assert bot.last().plain == message.render()
        assert not bot.last().plain.startswith("Order")
    finally:
        await stop_harness(bot)


async def test_a_status_change_is_queued_as_its_facts_and_worded_when_sent(
        tmp_path: Path) -> None:
    """The tracker queues a change as the few facts it tells (no text tree built and stored
    per order); the sender words them in the language the owner has chosen by then."""
    from bot.panel.sandbox import DEMO_KEY
    from tests.test_orders import place

    bot = await harness_speaking(tmp_path, "en")
    try:
        await bot.send("/start")
        order = await place(bot, status="In progress")
        panel_id = order.panel_order_id or 0
        bot.sandbox.set_status(panel_id, "Partial")
        await poll_orders(bot.deps, now=10.0**10)
        [queued] = await outbox.pending_notifications(bot.deps.db, limit=10, now=10.0**10)
        assert "msg" not in queued.payload and queued.payload["order"] == order.id
        assert queued.payload["change"][:4] == [panel_id, order.service_name, "In progress",
                                                "Partial"]
        assert queued.text.startswith(f"Order {panel_id} · ")  # the record keeps the English
        assert "In progress → Partial" in queued.text and "charged" in queued.text
        await bot.deps.languages.choose(bot.deps.db, USER, "ru")  # changed before it is sent
        await send_pending(bot.app.bot, bot.deps, now=10.0**10)
        seen = await bot.deps.panel.status(DEMO_KEY, panel_id)
        with i18n.speaking("ru"):
            assert bot.last().html == notices.describe_change(order, "In progress", seen)
        assert "Partial" not in bot.last().plain and "charged" not in bot.last().plain
        assert bot.last().plain != queued.text
    finally:
        await stop_harness(bot)


async def test_what_the_bot_noted_on_an_order_is_shown_in_the_readers_language(
        tmp_path: Path) -> None:
    """The bot's own notes (kept with the order) are shown in the language of whoever reads
    the card, never as the data they are stored as."""
    bot = await harness_speaking(tmp_path, "en")
    try:
        await bot.send("/order 1")
        await bot.send(LINK)
        await bot.send("1000")
        await tap(bot, "wz:skip")
        bot.sandbox.fail_next("add", "timeout_after")
        await tap(bot, "wz:confirm")
        [order] = await orders.list_orders(bot.deps.db, owner_id=USER)
        await bot.press_data(f"oc:{order.id}")
        await bot.press("It was not placed")
        await bot.press("Yes, it was not placed")
        assert "Note: not placed (checked by its owner)" in bot.last().plain
        await bot.deps.languages.choose(bot.deps.db, USER, "ru")
        await bot.press_data(f"oc:{order.id}")
        with i18n.speaking("ru"):
            assert i18n._("not placed (checked by its owner)") in bot.last().plain
        assert "checked by" not in bot.last().plain and "msg:" not in bot.last().plain
    finally:
        await stop_harness(bot)


@pytest.mark.parametrize(("code", "written"), [
    ("en", "12,345.67 USD"), ("ru", "12 345,67 USD"), ("es", "12.345,67 USD"),
    ("tr", "12.345,67 USD")])
def test_money_is_written_the_languages_way(code: str, written: str) -> None:
    from bot.money import format_money

    with i18n.speaking(code):
        assert format_money(Decimal("12345.670")).replace("\u00a0", " ") + " USD" == written


@pytest.mark.parametrize(("code", "counts"), [
    ("ru", {1: 0, 2: 1, 5: 2, 11: 2, 21: 0, 22: 1}),
    ("ar", {0: 0, 1: 1, 2: 2, 3: 3, 11: 4, 100: 5}),
])
def test_plural_forms_follow_the_language(code: str, counts: dict[int, int]) -> None:
    """Russian has three forms, Arabic six: each count gets its own."""
    from tests.test_i18n_catalogs import catalog, source_messages

    plural = next(key for key in source_messages() if isinstance(key, tuple))
    forms = list(catalog(code).get(plural[0]).string)
    assert len(forms) == {"ru": 3, "ar": 6}[code]
    with i18n.speaking(code):
        for n, form in counts.items():
            assert i18n.ngettext(plural[0], plural[1], n) == forms[form]


# --- whole flows in Russian, Arabic and Hindi ---------------------------------------------------


@pytest.mark.parametrize("code", ["ru", "ar", "hi"])
async def test_an_order_its_card_its_notification_and_help_speak_the_language(
        tmp_path: Path, code: str) -> None:
    bot = await harness_speaking(tmp_path, code)
    try:
        await bot.send("/start")
        await bot.send("/help")
        await bot.send("/order 1")
        await bot.send(LINK)
        await bot.send("abc")  # a wrong quantity: the reason, and the same question again
        await bot.send("1000")
        await tap(bot, "wz:skip")  # no drip-feed
        summary = bot.last().plain
        assert "1" in summary and LINK in summary
        await tap(bot, "wz:confirm")
        [order] = await orders.list_orders(bot.deps.db, owner_id=USER)
        assert order.panel_order_id is not None
        await bot.send("/orders")
        await tap(bot, f"oc:{order.id}")
        bot.sandbox.set_status(order.panel_order_id, "Completed")
        await poll_orders(bot.deps)
        await send_pending(bot.app.bot, bot.deps)
        assert str(order.panel_order_id) in bot.last().plain
        said = everything_said(bot)
        assert len(said) > 10
        english = {run for text in said for run in english_in(text)}
        assert english == set(), f"{code}: English left: {sorted(english)}"
    finally:
        await stop_harness(bot)


def test_the_english_detector_finds_english() -> None:
    assert english_in("Заказ 23501 размещён. Check the order list") == ["Check the order list"]
    assert english_in("Заказ · Instagram Followers /orders https://instagram.com/p/abc") == []
