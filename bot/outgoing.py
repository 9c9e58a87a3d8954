"""Sending and editing the bot's HTML messages, keeping only the id of Telegram's answer.

Telegram answers sendMessage and editMessageText with the whole message back: its text, its
entities, its keyboard. python-telegram-bot's typed methods (`send_message`,
`edit_message_text`) turn that answer into a `Message` of a dozen objects, and the bot throws it
away: at most it keeps the message's id. Measured on the order wizard, building those objects
was a sixth of the bot's CPU per update, and in a bare echo bot half of it. So the bot's own
messages go through the layer under those methods, `Bot._post`, with the same parameters they
send: the same request, the same rate limiter, the same errors (BadRequest, Forbidden,
RetryAfter), only no `Message` built from the answer.
"""

from __future__ import annotations

from typing import Any

from telegram import Bot, InlineKeyboardMarkup
from telegram.constants import ParseMode

#: What the bot's messages never have: a preview of the first link in them.
_NO_PREVIEW = {"is_disabled": True}


async def send_html(bot: Bot, chat_id: int, text: str,
                    markup: InlineKeyboardMarkup | None = None, *,
                    thread_id: int | None = None,
                    business_connection_id: str | None = None) -> int:
    """Sends an HTML message (no link preview); the new message's id. `thread_id`: the forum
    topic to post in; `business_connection_id`: the business connection to send through."""
    sent = await _post(bot, "sendMessage", {
        "chat_id": chat_id, "text": text, "parse_mode": ParseMode.HTML,
        "reply_markup": markup, "link_preview_options": _NO_PREVIEW,
        "message_thread_id": thread_id, "business_connection_id": business_connection_id,
    })
    return int(sent["message_id"])


async def edit_html(bot: Bot, chat_id: int, message_id: int, text: str,
                    markup: InlineKeyboardMarkup | None = None, *,
                    business_connection_id: str | None = None) -> None:
    """Replaces a message's text (HTML, no link preview) and its buttons (none when `markup` is
    None). Raises BadRequest "message is not modified" as Telegram does."""
    await _post(bot, "editMessageText", {
        "chat_id": chat_id, "message_id": message_id, "text": text,
        "parse_mode": ParseMode.HTML, "reply_markup": markup,
        "link_preview_options": _NO_PREVIEW, "business_connection_id": business_connection_id,
    })


async def _post(bot: Bot, method: str, data: dict[str, Any]) -> Any:
    """Calls a Bot API method through python-telegram-bot's request layer; Telegram's answer
    as JSON (parameters that are None are left out, as the typed methods leave them)."""
    return await bot._post(method, data)
