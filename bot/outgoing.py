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

import json
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode

from bot.keyboards import Keyboard

#: What the bot's messages never have: a preview of the first link in them (as the JSON
#: python-telegram-bot would make of {"is_disabled": True} on every call).
_NO_PREVIEW = '{"is_disabled":true}'

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
#: What a button made of text and callback data or a URL leaves unset.
_OTHER_FIELDS = tuple(name for name in InlineKeyboardButton.__slots__
                      if name not in ("text", "callback_data", "url"))


#: A markup the bot sends: its own `Keyboard` (every keyboard it builds), or PTB's type.
Markup = Keyboard | InlineKeyboardMarkup


def markup_json(markup: Markup) -> str:
    """A keyboard as the JSON Telegram reads: what python-telegram-bot's `to_dict` would make
    of it. The bot's own `Keyboard` is written straight from its plain buttons; PTB's type too
    when its buttons are text with callback data or a URL (PTB's generic walk over every
    attribute of every button took ~30 µs for a four-button keyboard); any other button goes
    through `to_dict`, and so does an empty keyboard (PTB leaves its empty list out)."""
    if isinstance(markup, Keyboard):
        if not markup.inline_keyboard:
            return _JSON(markup.ptb().to_dict())
        return _JSON({"inline_keyboard": [[_plain(*button) for button in row]
                                          for row in markup.inline_keyboard]})
    if not markup.inline_keyboard:
        return _JSON(markup.to_dict())
    return _JSON({"inline_keyboard": [[_button(button) for button in row]
                                      for row in markup.inline_keyboard]})


def _plain(text: str, data: str | None, url: str | None) -> dict[str, Any]:
    """A button as JSON-ready values (PTB's order: text, url, callback_data)."""
    plain: dict[str, Any] = {"text": text}
    if url is not None:
        plain["url"] = url
    if data is not None:
        plain["callback_data"] = data
    return plain


def _button(button: InlineKeyboardButton) -> dict[str, Any]:
    """One button as JSON-ready values."""
    data = button.callback_data
    if (button.api_kwargs or not (data is None or type(data) is str)
            or any(getattr(button, name) is not None for name in _OTHER_FIELDS)):
        return button.to_dict()
    return _plain(button.text, data, button.url)


async def send_html(bot: Bot, chat_id: int, text: str,
                    markup: Markup | None = None, *,
                    thread_id: int | None = None,
                    business_connection_id: str | None = None) -> int:
    """Sends an HTML message (no link preview); the new message's id. `thread_id`: the forum
    topic to post in; `business_connection_id`: the business connection to send through."""
    sent = await _post(bot, "sendMessage", {
        "chat_id": str(chat_id), "text": text, "parse_mode": ParseMode.HTML,
        "reply_markup": None if markup is None else markup_json(markup),
        "link_preview_options": _NO_PREVIEW,
        "message_thread_id": None if thread_id is None else str(thread_id),
        "business_connection_id": business_connection_id,
    })
    return int(sent["message_id"])


async def edit_html(bot: Bot, chat_id: int, message_id: int, text: str,
                    markup: Markup | None = None, *,
                    business_connection_id: str | None = None) -> None:
    """Replaces a message's text (HTML, no link preview) and its buttons (none when `markup` is
    None). Raises BadRequest "message is not modified" as Telegram does."""
    await _post(bot, "editMessageText", {
        "chat_id": str(chat_id), "message_id": str(message_id), "text": text,
        "parse_mode": ParseMode.HTML,
        "reply_markup": None if markup is None else markup_json(markup),
        "link_preview_options": _NO_PREVIEW, "business_connection_id": business_connection_id,
    })


async def _post(bot: Bot, method: str, data: dict[str, Any]) -> Any:
    """Calls a Bot API method through python-telegram-bot's request layer; Telegram's answer
    as JSON (parameters that are None are left out, as the typed methods leave them). The
    callers hand ids over as their digits and JSON values as text: the request is the same
    (PTB sends a value that is not text as `json.dumps` of it), without an encoder built for
    each value (1.2 % of the order wizard's instructions)."""
    return await bot._post(method, data)
