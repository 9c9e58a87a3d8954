"""The order wizard speaks its reader's language: every question, refusal reason, summary line,
button and callback answer comes from the catalog, counts take the language's plural forms and
numbers its separators; the timeout and the restart expiry reach the user in their language.

The language here is a stand-in: a catalog that swaps the case of every msgid (placeholders,
tags and /commands kept), so a text that did not go through the catalog shows as plain English.
"""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import pytest

from bot.handlers.conversations import end_stale_conversations
from bot.jobs import send_pending
from storage.db import fetch_all
from tests.conftest import (
    OTHER,
    USER,
    BotHarness,
    speak_stand_ins,
    start_harness,
    stop_harness,
)
from tests.test_hardening import _age_conversations
from tests.test_wizard import EXPIRY, LINK

FAKE = "es"  # a language Babel knows (its numbers: 10.000, 0,90); its texts are the stand-in's

# English the wizard says, none of which may be left in the stand-in language (case matters:
# the stand-in's "sEND THE LINK" is not "Send the link").
ENGLISH = ["New order", "Step ", "Send the", "Example:", "How many", "It must be", "That does",
           "Check the order", "Total quantity", "Estimated cost", "Balance", "Charged now",
           "Cost per new post", "lines)", "more", "Keep", "Skip", "Confirm", "Edit", "Cancel",
           "Back", "Order 23501", "Sending the order", "The date", "Choose one", "Please",
           "Your order was not placed", "minutes", "Drip-feed", "Quantity", "Link"]


def swapped(text: str) -> str:
    """The stand-in language's translation of a msgid."""
    parts = re.split(r"(\{[^{}]*\}|<[^<>]*>|&\w+;|/\w+)", text)
    return "".join(part if i % 2 else part.swapcase() for i, part in enumerate(parts))


class Swapped(gettext.NullTranslations):
    """A catalog that has every msgid, case swapped."""

    def gettext(self, message: str) -> str:
        return swapped(message)

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        return swapped(msgid1 if n == 1 else msgid2)


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot speaks English and the stand-in language (its catalogs replaced)."""
    speak_stand_ins(monkeypatch, {FAKE: Swapped()})


async def speaking_fake(tmp_path: Path, **overrides: object) -> BotHarness:
    """A bot whose user USER chose the stand-in language."""
    bot = await start_harness(tmp_path, **overrides)
    await bot.deps.languages.choose(bot.deps.db, USER, FAKE)
    return bot


async def tap(bot: BotHarness, data: str) -> None:
    """Taps the newest message's button whose callback data starts with `data`."""
    found = [d for row in bot.world.buttons(bot.last()) for _label, d in row if d.startswith(data)]
    assert found, (data, bot.world.buttons(bot.last()))
    await bot.press_data(found[0])


def everything_said(bot: BotHarness) -> list[str]:
    """Every message shown, the newest message's buttons and every callback answer."""
    said = list(bot.texts())
    said += [label for row in bot.world.buttons(bot.last()) for label, _data in row]
    said += [call.get("text") or "" for call in bot.world.calls_to("answerCallbackQuery")]
    return said


def english_left(said: list[str]) -> list[tuple[str, str]]:
    """(fragment, text) for each English fragment of the wizard's still in what was said."""
    return [(word, text) for text in said for word in ENGLISH if word in text]


async def test_a_full_order_with_wrong_answers_is_all_in_the_readers_language(
        tmp_path: Path, stand_in: None) -> None:
    bot = await speaking_fake(tmp_path)
    try:
        await bot.send("/order 1")
        question = bot.last().plain
        assert swapped("Send the link to promote.") in question
        assert swapped("Step {number}: {label}").format(number=1, label=swapped("Link")) in question
        await bot.send("not a link")
        assert bot.last().plain.startswith(
            "❌ " + swapped("That does not look like a link. Send it as https://…"))
        await bot.send("instagram.com/me")
        assert "(50–10.000)" in bot.last().plain  # the language's grouping
        await bot.send("10")
        assert swapped("It must be between {minimum} and {maximum}.").format(
            minimum="50", maximum="10.000") in bot.last().plain
        await bot.send("1000")
        await bot.send("1")
        await bot.send("5")
        await bot.send("30")
        summary = bot.last().plain
        assert swapped("Check the order, then tap Confirm.") in summary
        assert swapped("Total quantity: {quantity}").format(quantity="5.000") in summary
        assert bot.buttons() == [swapped("✅ Confirm"), swapped("✏️ Edit"), swapped("✖ Cancel"),
                                 swapped("◀ Back")]
        await tap(bot, "wz:edit")
        assert swapped("Tap Keep to keep it, or send a new value.") in bot.last().plain
        for _ in range(4):
            await tap(bot, "wz:keep")
        await tap(bot, "wz:confirm")
        assert bot.last().plain.startswith(swapped("✅ Order {number} placed.").format(
            number=23501))
        assert english_left(everything_said(bot)) == []
    finally:
        await stop_harness(bot)


async def test_counts_take_the_languages_plural_forms(tmp_path: Path, stand_in: None) -> None:
    bot = await speaking_fake(tmp_path)
    try:
        await bot.send("/order 3")  # Custom Comments: the lines are the quantity
        await bot.send(LINK)
        await bot.send("\n".join(f"c{i}" for i in range(30)))
        summary = bot.last().plain
        assert swapped("({n} lines)").format(n=30) in summary
        assert swapped("… and {n} more").format(n=10) in summary
        await bot.send("/order 4")  # Subscriptions: existing posts charged now
        for answer in ["@someone", "100", "50", "200"]:
            await bot.send(answer)
        await tap(bot, "wz:skip")
        await bot.send("1")
        await bot.send("7")
        chooses = swapped("Choose one of: {choices}.").format(choices="0, 5, 10")
        assert bot.last().plain.startswith("❌ " + chooses.removesuffix("."))
        await tap(bot, "wz:choice:30")
        await bot.send("01/01/2000")
        assert swapped("The date must be in the future.") in bot.last().plain
        await bot.send(EXPIRY)
        assert swapped("<b>Charged now: up to {upfront}</b> for {n} existing post "
                       "({cost} each)").format(upfront="0,06 USD", n=1, cost="0,06 USD") in (
            bot.last().html)  # one existing post: the singular form
        assert english_left(everything_said(bot)) == []
    finally:
        await stop_harness(bot)


async def test_the_timeout_speaks_the_users_language(tmp_path: Path, stand_in: None) -> None:
    bot = await speaking_fake(tmp_path, ORDER_TIMEOUT=0.005)  # 0.3 s
    await bot.app.start()  # the JobQueue runs the conversation's timeout, outside the update
    try:
        await bot.send("/order 1")
        # Someone reading English fills in a form too: the timeouts run in a job, in whatever
        # language the scheduler's context has, unless they set their user's.
        await bot.send("/order 1", user=OTHER)
        told = swapped("Your order was not placed (it timed out after {minutes} minutes). Start "
                       "again with /order.").format(minutes="0,005")
        await bot.world.wait_for_text_async(USER, told, timeout=5)
        await bot.world.wait_for_text_async(
            OTHER, "Your order was not placed (it timed out after 0.005 minutes).", timeout=5)
        assert english_left(everything_said(bot)) == []
    finally:
        await stop_harness(bot)


async def test_a_form_expired_over_a_restart_is_told_in_the_language_of_when_it_is_sent(
        tmp_path: Path, stand_in: None) -> None:
    first = await start_harness(tmp_path)
    await first.send("/order 1")
    await _age_conversations(first, 3 * 24 * 3600)
    await stop_harness(first)
    bot = await start_harness(tmp_path)
    try:
        assert await end_stale_conversations(bot.app) == 1  # queued while the user reads English
        [(text,)] = await fetch_all(bot.deps.db, "SELECT text FROM notifications")
        assert text == ("Your order was not placed (it timed out after 15 minutes). Start again "
                        "with /order.")
        await bot.deps.languages.choose(bot.deps.db, USER, FAKE)  # then they switch
        await send_pending(bot.app.bot, bot.deps)
        assert bot.last().plain == swapped(
            "Your order was not placed (it timed out after {n} minutes). Start again with "
            "/order.").format(n=15)
    finally:
        await stop_harness(bot)
