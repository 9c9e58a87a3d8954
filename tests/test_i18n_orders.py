"""Orders, cards, /status, /refill, /cancelorder, /balance, notifications and panel errors speak
the reader's language: run in a stand-in language whose every text is «the English text», no
sentence of these screens is left outside the catalog (panel data stays as the panel wrote it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_file
from babel.messages.pofile import write_po

from bot import i18n
from bot.jobs import send_pending
from bot.panel.errors import OutcomeUnknown, PanelError, PanelHTTPError, PanelTimeout
from bot.services.tracking import poll_orders
from storage import outbox
from tests.conftest import USER, speak_catalog_files, start_harness, stop_harness
from tests.test_orders import CANCEL_ONLY, REFILL_ONLY, place

FAKE = "ru"  # a real locale (three plural forms), with a stand-in catalog
SOURCES = ["bot/handlers/orders.py", "bot/order_views.py", "bot/services/actions.py",
           "bot/services/notices.py", "bot/services/tracking.py", "bot/panel/errors.py",
           "bot/panel/client.py", "bot/jobs.py"]
KEYWORDS = {**DEFAULT_KEYWORDS, "L_": None, "Ln_": (1, 2)}
# What may stay in English: the panel's data (service names, statuses, currency), the field
# labels of the order form (bot/service_types.py) and the bot's commands.
PANEL_WORDS = {"Instagram", "Followers", "TikTok", "Likes", "In", "progress", "Completed",
               "Pending", "Partial", "Canceled", "USD", "Link", "Quantity", "Incorrect", "order",
               "ID", "Not", "enough", "funds", "neworder", "error", "not_enough_funds", "https",
               "instagram", "com", "post", "status", "refill", "cancelorder", "track", "orders"}


def _stand_in_catalog(folder: Path) -> Path:
    """A catalog translating every text of SOURCES into «text» (placeholders kept)."""
    root = Path(__file__).resolve().parents[1]
    catalog = Catalog(locale=FAKE)
    for source in SOURCES:
        for _line, message, _comments, _context in extract_from_file(
                "python", root / source, keywords=KEYWORDS):
            if isinstance(message, tuple):
                catalog.add(message, tuple(f"«{message[1]}»" for _ in range(catalog.num_plurals)))
            elif message:
                catalog.add(message, f"«{message}»")
    folder.mkdir()
    with (folder / f"{FAKE}.po").open("wb") as file:
        write_po(file, catalog)
    return folder


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in language is one of the bot's languages for the test."""
    speak_catalog_files(monkeypatch, _stand_in_catalog(tmp_path / "locales"))


def untranslated(text: str) -> set[str]:
    """The words of `text` outside «…» (nested ones too) that are not the panel's data."""
    previous = None
    while previous != text:
        previous, text = text, re.sub(r"«[^«»]*»", "", text)
    return {word for word in re.findall(r"[A-Za-z_]{2,}", text) if word not in PANEL_WORDS}


async def test_orders_screens_speak_the_readers_language(tmp_path: Path, stand_in: None) -> None:
    bot = await start_harness(tmp_path, RATE_LIMIT_PER_MINUTE=1000)
    try:
        await bot.deps.languages.choose(bot.deps.db, USER, FAKE)
        running = await place(bot, status="In progress")
        done = await place(bot, service=REFILL_ONLY, status="Completed")
        other = await place(bot, service=CANCEL_ONLY, status="In progress")
        seen: list[str] = []

        async def shown() -> None:
            message = bot.last()
            seen.append(message.plain)
            seen.extend(label for row in message.buttons() for label, _data in row)

        for step in ("/orders", f"/status {running.panel_order_id} 999999 abc", "/status",
                     f"/refill {running.panel_order_id} {done.panel_order_id} 424242",
                     f"/cancelorder {running.panel_order_id} {done.panel_order_id}", "/track 5",
                     "/balance"):
            await bot.send(step)
            await shown()
        for data in (f"oc:{running.id}", f"oc:{done.id}:rf", f"oc:{done.id}:rfy",
                     f"oc:{done.id}:rs", f"oc:{other.id}:cx", f"oc:{other.id}:cxy"):
            await bot.press_data(data)
            await shown()
        bot.sandbox.fail_next("balance", "error:Not enough funds")
        await bot.send("/balance")
        await shown()
        answers = [str(a.get("text", "")) for a in bot.world.callback_answers.values()]

        assert any(label == "«🔄 Refresh»" for label in seen)
        assert "«The panel account does not have enough funds for this.»" in seen[-1]
        assert "The panel says: Not enough funds" in seen[-1]  # the panel's words as they are
        assert len(seen) > 30 and answers
        for text in seen + answers:
            assert untranslated(text) == set(), text
    finally:
        await stop_harness(bot)


async def test_a_notification_is_written_in_english_and_sent_in_the_owners_language(
        tmp_path: Path, stand_in: None) -> None:
    bot = await start_harness(tmp_path)
    try:
        await bot.deps.languages.choose(bot.deps.db, USER, FAKE)
        order = await place(bot, status="In progress")
        bot.sandbox.set_status(order.panel_order_id or 0, "Partial")
        await poll_orders(bot.deps, now=10.0**10)
        queued = await outbox.pending_notifications(bot.deps.db, now=10.0**10)
        assert queued and queued[0].text.startswith(f"Order {order.panel_order_id} · ")
        assert "not delivered" in queued[0].text  # the record keeps the English text
        await send_pending(bot.app.bot, bot.deps, now=10.0**10)
        sent = bot.last().plain
        assert sent.startswith(f"««Order {order.panel_order_id}» · Instagram Followers: "
                               "«In progress» → «Partial»» · «")  # statuses in their words
        assert untranslated(sent) == set(), sent
    finally:
        await stop_harness(bot)


def test_panel_errors_are_translated_when_read(stand_in: None) -> None:
    refused, key = PanelError("Not enough funds"), PanelError("neworder.error.min_quantity")
    assert refused.user_message == "The panel says: Not enough funds"  # English: as it was
    assert key.user_message == ("The quantity is below the service's minimum. "
                                "The panel says: neworder.error.min_quantity")
    with i18n.speaking(FAKE):
        assert refused.user_message == ("««The panel account does not have enough funds for "
                                        "this.» «The panel says: Not enough funds»»")
        assert str(PanelTimeout()) == "«The panel did not answer in time.»"
        assert PanelHTTPError(502).user_message == ("«The panel answered with HTTP 502. "
                                                    "Please try again later.»")
        assert OutcomeUnknown().user_message.startswith("«The panel did not confirm")
        assert PanelError("Incorrect request").user_message == (
            "«The panel says: Incorrect request»")
    assert str(OutcomeUnknown()).startswith("The panel did not confirm")
