"""The bot's conversations turn away updates that are not theirs the short way
(`ExpiringConversation.check_update`); whatever the update and whatever the conversation's
state, the answer is python-telegram-bot's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from telegram import Update
from telegram.ext import ConversationHandler

from bot.handlers.conversations import ExpiringConversation
from bot.standin.botapi import _clone
from tests.conftest import USER, start_harness, stop_harness

TEXTS = ["/connect", "/order 1", "/massorder", "/cancel", "/start s1", "/start", "hello",
         "https://example.com/p", "100"]
BUTTONS = ["wz:skip", "wz:ok:1:1", "tp:o", "tp:a:5", "oc:5:link", "oc:5:ag", "mo:ed:1:2",
           "mo:go:1", "new:1", "lg:ru", "zz"]
CHANNEL_POST = {"update_id": 900, "channel_post": {
    "message_id": 1, "date": 0, "text": "/connect",
    "chat": {"id": -1001, "type": "channel", "title": "News"}}}
INLINE_TAP = {"update_id": 901, "callback_query": {
    "id": "77", "from": {"id": USER, "is_bot": False, "first_name": "U"},
    "chat_instance": "1", "inline_message_id": "AAAB", "data": "tp:o"}}


def outcome(result: Any) -> Any:
    """What a check_update answer decides: nothing, or (state, key, which handler)."""
    if result is None or result is False:
        return None
    state, key, handler, _check = result
    return state, key, id(handler)


async def test_each_conversation_answers_as_ptb_does_open_or_not(tmp_path: Path) -> None:
    bot = await start_harness(tmp_path)
    try:
        await bot.send("/start")
        message_id = bot.last().message_id
        updates = ([bot.world.user_sends(USER, text) for text in TEXTS]
                   + [bot.world.user_presses(USER, message_id, data, force=True)
                      for data in BUTTONS] + [CHANNEL_POST, INLINE_TAP])
        conversations = [handler for group in bot.app.handlers.values() for handler in group
                         if isinstance(handler, ExpiringConversation)]
        assert len(conversations) >= 5  # the waits and the order wizard
        key = (USER, USER)
        compared = 0
        for conversation in conversations:
            for state in (None, *conversation.states):
                if state is None:
                    conversation._conversations.pop(key, None)
                else:
                    conversation._conversations[key] = state
                for data in updates:
                    update = Update.de_json(_clone(data), bot.app.bot)
                    ours = outcome(conversation.check_update(update))
                    ptb = outcome(ConversationHandler.check_update(conversation, update))
                    assert ours == ptb, (conversation.name, state, data)
                    compared += 1
            conversation._conversations.pop(key, None)
        assert compared > 200
    finally:
        await stop_harness(bot)
