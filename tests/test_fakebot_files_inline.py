"""Tests of the fake Bot API's documents and inline mode: Telegram's rules hold for them too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InputTextMessageContent,
    Message,
)
from telegram.error import BadRequest
from telegram.ext import Application

from bot.standin.botapi import (
    MAX_INLINE_RESULTS,
    FakeRequest,
    FakeTelegram,
    FakeTelegramServer,
)

USER = 42
AnyApp = Application[Any, Any, Any, Any, Any, Any]


@pytest.fixture
def world() -> FakeTelegram:
    """A world where USER has started the bot."""
    fake = FakeTelegram()
    fake.open_chat(USER, first_name="Alice")
    return fake


@pytest.fixture
async def app(world: FakeTelegram) -> AsyncIterator[AnyApp]:
    """An initialized in-process Application."""
    application = (Application.builder().token("123:TEST").request(FakeRequest(world))
                   .get_updates_request(FakeRequest(world)).build())
    async with application:
        yield application


def article(result_id: str, text: str = "hi") -> InlineQueryResultArticle:
    """A minimal article result."""
    return InlineQueryResultArticle(result_id, "title", InputTextMessageContent(text))


async def test_a_users_file_is_downloaded_through_get_file(app: AnyApp,
                                                            world: FakeTelegram) -> None:
    update = world.user_sends_document(USER, "lines.txt", b"1 | x | 2\n", caption="mine")
    message = Message.de_json(update["message"], app.bot)
    assert message is not None and message.document is not None
    assert (message.document.file_name, message.document.file_size) == ("lines.txt", 10)
    assert message.caption == "mine"
    file = await message.document.get_file()
    assert bytes(await file.download_as_bytearray()) == b"1 | x | 2\n"
    with pytest.raises(BadRequest, match=r"(?i)invalid file_id"):
        await app.bot.get_file("nope")


async def test_the_bot_sends_a_document_within_telegrams_limits(app: AnyApp,
                                                                 world: FakeTelegram) -> None:
    await app.bot.send_document(USER, b"a\nb\n", filename="out.txt", caption="<b>2</b> lines",
                                parse_mode="HTML")
    sent = world.last_bot_message(USER)
    assert sent is not None and sent.document is not None
    assert sent.document["file_name"] == "out.txt" and sent.plain == "2 lines"
    assert world.document_content(sent) == b"a\nb\n"
    with pytest.raises(BadRequest, match=r"(?i)file must be non-empty"):
        await app.bot.send_document(USER, b"", filename="empty.txt")
    with pytest.raises(BadRequest, match=r"(?i)caption is too long"):
        await app.bot.send_document(USER, b"x", filename="x.txt", caption="c" * 1025)


async def test_an_inline_answer_keeps_telegrams_limits(app: AnyApp, world: FakeTelegram) -> None:
    update = world.user_inline_query(USER, "likes")
    query_id = update["inline_query"]["id"]
    with pytest.raises(BadRequest, match=r"(?i)RESULTS_TOO_MUCH"):
        await app.bot.answer_inline_query(query_id, [article(str(i))
                                                     for i in range(MAX_INLINE_RESULTS + 1)])
    with pytest.raises(BadRequest, match=r"(?i)RESULT_ID_INVALID"):
        await app.bot.answer_inline_query(query_id, [article("x" * 65)])
    with pytest.raises(BadRequest, match=r"(?i)RESULT_ID_DUPLICATE"):
        await app.bot.answer_inline_query(query_id, [article("a"), article("a")])
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await app.bot.answer_inline_query(query_id, [article("a", "x" * 4097)])
    with pytest.raises(BadRequest, match=r"(?i)BUTTON_DATA_INVALID"):
        bad = article("a")
        bad_markup = InlineKeyboardMarkup([[InlineKeyboardButton("b", callback_data="d" * 65)]])
        await app.bot.answer_inline_query(query_id, [InlineQueryResultArticle(
            "a", "t", bad.input_message_content, reply_markup=bad_markup)])
    ok = [article(str(i)) for i in range(MAX_INLINE_RESULTS)]
    assert await app.bot.answer_inline_query(query_id, ok, is_personal=True, cache_time=0)
    answer = world.inline_answer(update)
    assert answer is not None and len(answer["results"]) == 50 and answer["is_personal"] is True
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):  # answered once only
        await app.bot.answer_inline_query(query_id, ok)


async def test_edits_are_timed(app: AnyApp, world: FakeTelegram) -> None:
    sent = await app.bot.send_message(USER, "0")
    for n in range(1, 4):
        await app.bot.edit_message_text(str(n), USER, sent.message_id)
    message = world.message(USER, sent.message_id)
    assert message is not None and len(message.edit_times) == 3
    assert message.edit_times == sorted(message.edit_times)


def test_files_over_http_carry_their_content() -> None:
    import httpx

    with FakeTelegramServer() as server:
        server.open_chat(USER)
        response = httpx.post(f"{server.base_url}123:TEST/sendDocument",
                              data={"chat_id": str(USER)},
                              files={"document": ("a.txt", b"hello", "text/plain")})
        assert response.json()["ok"] is True
        message = server.world.last_bot_message(USER)
        assert message is not None and server.world.document_content(message) == b"hello"
