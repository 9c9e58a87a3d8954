"""Mass order texts said later (the restart notice, the expired wait) are written as catalog
texts and rendered in their reader's language when they are sent, not in the writer's."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

from bot import i18n
from bot.handlers import mass_order as mass_order_chat
from bot.services import mass_order, notices
from storage import outbox
from storage.mass_orders import Batch
from tests.conftest import USER, BotHarness, speak_catalog_files

STOPPED = "⚠️ <b>The bot stopped while sending your mass order #{batch}.</b>"
HAD_BEEN_SENT = ("{sent} of {n} line had been sent; {rest}",
                 "{sent} of {n} lines had been sent; {rest}")
WERE_NOT_SENT = (
    "{n} was <b>not sent</b>. Nothing is sent again by itself: tap below to send the rest.",
    "{n} were <b>not sent</b>. Nothing is sent again by itself: tap below to send the rest.")
SEND_REST = ("▶ Send the {n} not sent", "▶ Send the {n} not sent")
WAIT_OVER = ("I stopped waiting for the mass order's lines; nothing was sent. Send /massorder "
             "again to start over.")


@pytest.fixture
def russian(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Russian catalog holding this module's texts (three plural forms)."""
    catalog = Catalog(locale="ru")
    catalog.add(STOPPED, "⚠️ <b>Бот остановился при отправке массового заказа #{batch}.</b>")
    catalog.add(HAD_BEEN_SENT, ("{sent} из {n} строки отправлено; {rest}",
                                "{sent} из {n} строк отправлено; {rest}",
                                "{sent} из {n} строк отправлено; {rest}"))
    catalog.add(WERE_NOT_SENT, ("{n} <b>не отправлена</b>. Нажмите ниже.",
                                "{n} <b>не отправлены</b>. Нажмите ниже.",
                                "{n} <b>не отправлено</b>. Нажмите ниже."))
    catalog.add(SEND_REST, ("▶ Отправить {n} строку", "▶ Отправить {n} строки",
                            "▶ Отправить {n} строк"))
    catalog.add("📋 Results", "📋 Итоги")
    catalog.add(WAIT_OVER, "Я перестал ждать строки массового заказа; ничего не отправлено.")
    locales = tmp_path / "locales"
    locales.mkdir()
    with (locales / "ru.po").open("wb") as file:
        write_po(file, catalog)
    speak_catalog_files(monkeypatch, locales)


def batch(batch_id: int = 7, rev: int = 2) -> Batch:
    return Batch(id=batch_id, owner_id=USER, chat_id=USER, account="operator", panel="p",
                 catalog="c", lines=60, rev=rev, state="sending", created_at=0.0, updated_at=0.0)


def labels(payload: dict[str, object]) -> list[str]:
    """A notification's button labels, rendered as the sender renders them."""
    rows = payload["buttons"]
    assert isinstance(rows, list)
    return [i18n.render(i18n.from_json(label)) for row in rows for label, _data in row]


@pytest.mark.usefixtures("russian")
def test_the_restart_notice_is_rendered_in_its_readers_language_when_sent() -> None:
    notice = mass_order.interrupted_notice(batch(), 20, 42)
    # The stored text stays the English one (what the outbox shows an operator).
    assert notice.text == ("⚠️ <b>The bot stopped while sending your mass order #7.</b>\n"
                           "20 of 62 lines had been sent; 42 were <b>not sent</b>. Nothing is "
                           "sent again by itself: tap below to send the rest.")
    with i18n.speaking("ru"):
        text = notices.rendered(notice.text, notice.payload)
        buttons = labels(dict(notice.payload))
    assert text == ("⚠️ <b>Бот остановился при отправке массового заказа #7.</b>\n"
                    "20 из 62 строк отправлено; 42 <b>не отправлены</b>. Нажмите ниже.")
    assert buttons == ["▶ Отправить 42 строки", "📋 Итоги"]
    with i18n.speaking("ru"):  # 45: Russian's third form
        assert labels(dict(mass_order.interrupted_notice(batch(), 0, 45).payload))[0] == (
            "▶ Отправить 45 строк")
    with i18n.speaking("ru"):  # one line left: Russian's singular form, here and on the button
        one = mass_order.interrupted_notice(batch(), 0, 1)
        assert notices.rendered(one.text, one.payload).endswith(
            "0 из 1 строки отправлено; 1 <b>не отправлена</b>. Нажмите ниже.")
        assert labels(dict(one.payload))[0] == "▶ Отправить 1 строку"
    assert one.payload["buttons"][0][0][1] == "mo:go:7:2"  # type: ignore[index]


@pytest.mark.usefixtures("russian")
async def test_the_expired_wait_for_lines_is_said_in_the_users_language(
        bot: BotHarness) -> None:
    await mass_order_chat.wait_expired(bot.app, USER, USER)
    (queued,) = await outbox.pending_notifications(bot.deps.db)
    assert queued.chat_id == USER and queued.text == WAIT_OVER
    with i18n.speaking("ru"):
        assert notices.rendered(queued.text, queued.payload) == (
            "Я перестал ждать строки массового заказа; ничего не отправлено.")
