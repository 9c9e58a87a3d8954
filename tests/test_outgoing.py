"""Tests of bot/outgoing.py: the bot's messages go out as python-telegram-bot's typed methods
would send them, and meet Telegram's answers (errors included) the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden
from telegram.ext import Application

from bot.outgoing import edit_html, send_html
from bot.standin.botapi import FakeRequest, FakeTelegram

USER = 42
AnyApp = Application[Any, Any, Any, Any, Any, Any]
MARKUP = InlineKeyboardMarkup([[InlineKeyboardButton("Open ✅", callback_data="op:1"),
                                InlineKeyboardButton("Site", url="https://example.com")]])


@pytest.fixture
def world() -> FakeTelegram:
    """A world where USER has started the bot."""
    fake = FakeTelegram()
    fake.open_chat(USER, first_name="Alice")
    return fake


@pytest.fixture
async def app(world: FakeTelegram) -> AsyncIterator[AnyApp]:
    """An initialized in-process Application on the fake Bot API."""
    application = (Application.builder().token("123:TEST").request(FakeRequest(world))
                   .get_updates_request(FakeRequest(world)).build())
    async with application:
        yield application


async def test_a_message_goes_out_as_the_typed_method_sends_it(
    app: AnyApp, world: FakeTelegram
) -> None:
    text = "<b>Order 7</b> placed: https://example.com/p"
    typed = await app.bot.send_message(USER, text, parse_mode=ParseMode.HTML,
                                       reply_markup=MARKUP, disable_web_page_preview=True)
    ours = await send_html(app.bot, USER, text, MARKUP)
    first, second = world.calls_to("sendMessage")
    assert second == first
    assert ours == typed.message_id + 1 == world.bot_messages(USER)[-1].message_id
    assert world.bot_messages(USER)[-1].buttons() == world.bot_messages(USER)[0].buttons()


async def test_an_edit_goes_out_as_the_typed_method_sends_it_and_meets_the_same_errors(
    app: AnyApp, world: FakeTelegram
) -> None:
    message_id = await send_html(app.bot, USER, "Menu", MARKUP)
    await app.bot.edit_message_text("<i>Typed</i>", USER, message_id, parse_mode=ParseMode.HTML,
                                    reply_markup=MARKUP, disable_web_page_preview=True)
    await edit_html(app.bot, USER, message_id, "<i>Ours</i>", MARKUP)
    typed, ours = world.calls_to("editMessageText")
    assert {**ours, "text": "<i>Typed</i>"} == typed
    (message,) = world.bot_messages(USER)
    assert message.plain == "Ours" and message.edit_count == 2
    with pytest.raises(BadRequest, match="Message is not modified"):
        await edit_html(app.bot, USER, message_id, "<i>Ours</i>", MARKUP)
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await edit_html(app.bot, USER, message_id, "<b>unclosed", MARKUP)
    await edit_html(app.bot, USER, message_id, "<i>Ours</i>")  # the buttons go
    assert world.bot_messages(USER)[0].buttons() == []


async def test_a_send_to_a_user_who_blocked_the_bot_raises_forbidden(
    app: AnyApp, world: FakeTelegram
) -> None:
    world.block(USER)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await send_html(app.bot, USER, "hello")
    assert world.bot_messages(USER) == []
