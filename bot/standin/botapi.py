"""Fake Telegram Bot API for offline tests: one in-memory world, reachable in-process or over HTTP.

The world (:class:`FakeTelegram`) plays both sides of a chat: it answers the bot's Bot API calls
with Telegram's own rules and error texts (text length after entity parsing, malformed HTML,
callback_data size, button count, "message is not modified", blocked users, flood control, unknown
chats), and it plays the user with ``user_sends`` / ``user_presses``, which build update dicts the
way Telegram sends them.

Two ways in, one world:

* in-process: ``FakeRequest(world)`` is a PTB ``BaseRequest``; give it to
  ``Application.builder().request(...).get_updates_request(...)`` and push updates with
  ``await feed(app, world.user_sends(...))``;
* over HTTP: ``FakeTelegramServer(world)`` serves the Bot API on ``127.0.0.1:<random port>``
  (``server.base_url`` is ``http://127.0.0.1:PORT/bot``), with real ``getUpdates`` long polling,
  for a bot started as a subprocess or a PTB ``Application`` built with ``.base_url(...)``.

Payments in Telegram Stars: ``sendInvoice`` (Telegram's rules: title 1–32 characters,
description 1–255, payload 1–128 bytes, XTR with no provider token, no tips and exactly one
price of whole Stars), ``answerPreCheckoutQuery`` (within 10 seconds, once) and
``refundStarPayment`` (``CHARGE_ID_INVALID``, ``CHARGE_ALREADY_REFUNDED``); the user side plays
the checkout with ``user_checks_out`` (a ``pre_checkout_query``) and ``user_pays`` (the
``successful_payment`` message, only after an ok answer), and ``successful_payment_update``
forges one (all three queue their update too). ``fail_next`` makes the next call of a method
fail (optionally after doing it: a lost answer). The error texts for invoices are modelled on
Telegram's upper-case codes.

Every update built by ``user_sends``/``user_presses``/``block`` is returned *and* queued for
``getUpdates``. ``feed`` removes the update from that queue before processing it, so feeding and
polling never deliver the same update twice; in-process tests that only ``feed`` never look at the
queue. Do not mix ``feed`` with a polling Updater on the same update.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import marshal
import re
import string
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar

from telegram import Update
from telegram.ext import Application, CallbackContext
from telegram.request import BaseRequest, RequestData

from storage.jsontext import tree_encoder

__all__ = [
    "BOT_ID",
    "BOT_USERNAME",
    "ERR_NOT_MODIFIED",
    "ApiError",
    "FakeButton",
    "FakeMessage",
    "FakeRequest",
    "FakeTelegram",
    "FakeTelegramServer",
    "HtmlParseError",
    "feed",
    "parse_html",
]

JSON = dict[str, Any]
T = TypeVar("T")
R = TypeVar("R")

BOT_ID = 1000
BOT_USERNAME = "smm_test_bot"
BOT_FIRST_NAME = "SMM Test Bot"
BOT_USER: JSON = {
    "id": BOT_ID,
    "is_bot": True,
    "first_name": BOT_FIRST_NAME,
    "username": BOT_USERNAME,
}

MAX_TEXT_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64
MAX_INLINE_BUTTONS = 100
MAX_ANSWER_TEXT = 200
MAX_INLINE_RESULTS = 50
MAX_CAPTION_LENGTH = 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # a bot may send files up to 50 MB
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # and download files up to 20 MB
MAX_INVOICE_STARS = 10_000
PRE_CHECKOUT_TIMEOUT = 10.0  # seconds Telegram waits for answerPreCheckoutQuery

ERR_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
ERR_QUERY_INVALID = (
    "Bad Request: query is too old and response timeout expired or query ID is invalid"
)
ERR_METHOD_NOT_FOUND = "Bad Request: method not found"
ERR_WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
    "the webhook first"
)
ERR_WEBHOOK_HTTPS = "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
ERR_WEBHOOK_PORT = (
    "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
)
ERR_WEBHOOK_SECRET = "Bad Request: secret token contains unallowed characters"
WEBHOOK_PORTS = frozenset({80, 88, 443, 8443})
SECRET_TOKEN_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_SECRET_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")

_TOKEN_RE = re.compile(r"\d+:[A-Za-z0-9_-]+")
_URL_RE = re.compile(r"/bot([^/]+)/([A-Za-z_]+)/?")
_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,64})?")
_BOT_COMMAND_NAME_RE = re.compile(r"[a-z0-9_]{1,32}")
_INT_RE = re.compile(r"-?\d+")
_START_PARAM_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_BUTTON_URL_RE = re.compile(r"(https?|tg)://\S+$")

_INT_PARAMS = frozenset(
    {
        "chat_id",
        "message_id",
        "offset",
        "limit",
        "timeout",
        "cache_time",
        "message_thread_id",
        "from_chat_id",
        "user_id",
        "reply_to_message_id",
        "max_tip_amount",
    }
)
_JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "entities",
        "commands",
        "scope",
        "allowed_updates",
        "link_preview_options",
        "reply_parameters",
        "caption_entities",
        "message_ids",
        "results",
        "button",
        "prices",
        "suggested_tip_amounts",
    }
)
_BOOL_PARAMS = frozenset(
    {
        "show_alert",
        "disable_notification",
        "protect_content",
        "drop_pending_updates",
        "disable_web_page_preview",
        "allow_sending_without_reply",
        "allow_paid_broadcast",
        "is_personal",
        "ok",
        "need_name",
        "need_phone_number",
        "need_email",
        "need_shipping_address",
        "is_flexible",
    }
)
_BUTTON_ACTIONS = frozenset(
    {
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    }
)
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)


# --------------------------------------------------------------------------------------------
# Errors and small helpers
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """A Bot API error answer: HTTP status, Telegram's description and optional parameters."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> JSON:
        """Return the JSON body Telegram answers with."""
        out: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            out["parameters"] = self.parameters
        return out


def _bad(description: str) -> ApiError:
    """Build a 400 Bad Request error (description must include the "Bad Request: " prefix)."""
    return ApiError(400, description)


def _u16(text: str) -> int:
    """Return the length of ``text`` in UTF-16 code units, the unit of entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def _clone(value: T) -> T:
    """A deep copy of JSON data (dicts, lists, scalars): marshal's round trip, in C, twice as
    fast as walking it in Python (what the tests and benchmarks pay on every Bot API call);
    data marshal cannot write (an object of another type) is walked instead."""
    try:
        return marshal.loads(marshal.dumps(value))  # type: ignore[arg-type, no-any-return]
    except ValueError:
        return _walk_clone(value)


_BODY_ENCODER = tree_encoder()  # the world's JSON has no cycles


def _encode(body: JSON) -> bytes:
    """A Bot API answer as the bytes Telegram sends (what the fake's in-process request and
    its HTTP server hand back)."""
    return _BODY_ENCODER(body).encode("utf-8")


def _walk_clone(value: T) -> T:
    """A deep copy of dicts and lists, keeping any other value as it is."""
    if isinstance(value, dict):
        return {key: _walk_clone(item) for key, item in value.items()}  # type: ignore[return-value]
    if isinstance(value, list):
        return [_walk_clone(item) for item in value]  # type: ignore[return-value]
    return value


def _now() -> int:
    """Return the current Unix time as Telegram dates are."""
    return int(time.time())


def _canon(obj: Any) -> str:
    """Return a canonical JSON string used to compare markups and entities."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def decode_params(raw: Mapping[str, Any]) -> JSON:
    """Decode Bot API parameters as Telegram does: JSON for objects, ints for ids, bools; the
    result shares no container with ``raw``."""
    out: JSON = {}
    for key, value in raw.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            if key in _JSON_PARAMS:
                try:
                    value = json.loads(value)
                except ValueError:
                    if key == "reply_markup":
                        raise _bad(
                            "Bad Request: can't parse reply keyboard markup JSON object"
                        ) from None
                    raise _bad(f"Bad Request: can't parse {key} JSON object") from None
            elif key in _INT_PARAMS and _INT_RE.fullmatch(value.strip()):
                value = int(value.strip())
            elif key in _BOOL_PARAMS:
                value = value.strip().lower() in ("true", "1")
        elif isinstance(value, dict | list):
            value = _clone(value)  # the caller's object: the world keeps (and records) its own
        out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# HTML entity parsing, after tdlib's parse_html
# --------------------------------------------------------------------------------------------


class HtmlParseError(ValueError):
    """Malformed HTML text; the message is tdlib's, without the "can't parse entities" prefix."""


_HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "code",
        "pre",
        "tg-spoiler",
        "span",
        "blockquote",
    }
)
_TAG_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_SPECIAL = re.compile("[<&]")
_TRIM_CHARS = " \t\r\n"


def _decode_entity(text: str, pos: int) -> tuple[str | None, int]:
    """Decode an HTML character reference at ``pos`` as tdlib does (only lt/gt/amp/quot/#N)."""
    n = len(text)
    end = pos + 1
    if end < n and text[end] == "#":
        end += 1
        if end < n and text[end] == "x":
            end += 1
            start = end
            while end < n and text[end] in string.hexdigits:
                end += 1
            code = int(text[start:end], 16) if end > start else 0
        else:
            start = end
            while end < n and text[end] in string.digits:
                end += 1
            code = int(text[start:end]) if end > start else 0
        if code == 0 or code >= 0x10FFFF or end - pos >= 10 or 0xD800 <= code <= 0xDFFF:
            return None, pos
        char = chr(code)
    else:
        start = end
        while end < n and text[end] in string.ascii_letters:
            end += 1
        named = _NAMED_ENTITIES.get(text[start:end])
        if named is None:
            return None, pos
        char = named
    if end < n and text[end] == ";":
        end += 1
    return char, end


@functools.lru_cache(maxsize=1024)
def _parsed_html(text: str) -> tuple[str, bytes]:
    """`parse_html`, its entities serialized (each message thaws its own copy). Kept for the
    texts sent again and again (every user's menu and catalogue pages): parsing them was a
    quarter of the fake's work in the stress benchmark, which runs in the bot's process."""
    plain, entities = parse_html(text)
    return plain, marshal.dumps(entities)


def parse_html(text: str) -> tuple[str, list[JSON]]:
    """Parse Telegram HTML into (plain text, UTF-16 entities) or raise HtmlParseError."""
    out: list[str] = []
    u16 = 0
    stack: list[tuple[str, int, str]] = []
    entities: list[JSON] = []
    n = len(text)
    i = 0

    def at(pos: int) -> int:
        return len(text[:pos].encode("utf-8"))

    while i < n:
        char = text[i]
        if char != "&" and char != "<":
            # A run of plain text up to the next tag or character reference, in one piece.
            found = _HTML_SPECIAL.search(text, i)
            end = found.start() if found else n
            out.append(text[i:end])
            u16 += _u16(text[i:end])
            i = end
            continue
        if char == "&":
            decoded, nxt = _decode_entity(text, i)
            if decoded is not None:
                out.append(decoded)
                u16 += _u16(decoded)
                i = nxt
                continue
        if char != "<":
            out.append(char)
            u16 += _u16(char)
            i += 1
            continue
        begin = i
        i += 1
        if i >= n:
            raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
        if text[i] != "/":
            j = i
            while j < n and not text[j].isspace() and text[j] != ">":
                j += 1
            if j >= n:
                raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
            tag = text[i:j].lower()
            if tag not in _HTML_TAGS:
                raise HtmlParseError(f'Unsupported start tag "{tag}" at byte offset {at(begin)}')
            i = j
            argument = ""
            while True:
                while i < n and text[i].isspace():
                    i += 1
                if i >= n:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
                if text[i] == ">":
                    break
                name_begin = i
                while i < n and not text[i].isspace() and text[i] not in "=>":
                    i += 1
                name = text[name_begin:i].lower()
                if not name:
                    raise HtmlParseError(
                        f'Empty attribute name in the tag "{tag}" at byte offset {at(begin)}'
                    )
                while i < n and text[i].isspace():
                    i += 1
                if i < n and text[i] != "=":
                    if tag == "blockquote" and name == "expandable":
                        argument = "expandable"
                        continue
                    raise HtmlParseError(
                        "Expected equal sign in declaration of an attribute of the tag "
                        f'"{tag}" at byte offset {at(begin)}'
                    )
                i += 1
                while i < n and text[i].isspace():
                    i += 1
                if i >= n:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
                if text[i] in "'\"":
                    quote = text[i]
                    i += 1
                    chars: list[str] = []
                    while i < n and text[i] != quote:
                        if text[i] == "&":
                            decoded, nxt = _decode_entity(text, i)
                            if decoded is not None:
                                chars.append(decoded)
                                i = nxt
                                continue
                        chars.append(text[i])
                        i += 1
                    if i >= n:
                        raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
                    i += 1
                    value = "".join(chars)
                else:
                    token_begin = i
                    while i < n and (text[i].isalnum() or text[i] in ".-"):
                        i += 1
                    value = text[token_begin:i].lower()
                    if i >= n or (not text[i].isspace() and text[i] != ">"):
                        raise HtmlParseError(
                            f"Unexpected end of name token at byte offset {at(token_begin)}"
                        )
                if tag == "a" and name == "href":
                    argument = value
                elif tag == "code" and name == "class" and value.startswith("language-"):
                    argument = value[len("language-") :]
                elif tag == "span" and name == "class" and value.startswith("tg-"):
                    argument = value[len("tg-") :]
            if tag == "span" and argument != "spoiler":
                raise HtmlParseError(
                    f'Tag "span" must have class "tg-spoiler" at byte offset {at(begin)}'
                )
            stack.append((tag, u16, argument))
            i += 1
            continue
        # end tag
        if not stack:
            raise HtmlParseError(f"Unexpected end tag at byte offset {at(begin)}")
        i += 1
        j = i
        while j < n and not text[j].isspace() and text[j] != ">":
            j += 1
        end_name = text[i:j].lower()
        while j < n and text[j].isspace():
            j += 1
        if j >= n or text[j] != ">":
            raise HtmlParseError(f"Unclosed end tag at byte offset {at(begin)}")
        tag, start, argument = stack[-1]
        if end_name and end_name != tag:
            raise HtmlParseError(
                f'Unmatched end tag at byte offset {at(begin)}, expected "</{tag}>", '
                f'found "</{end_name}>"'
            )
        stack.pop()
        i = j + 1
        length = u16 - start
        if length <= 0:
            continue
        entity: JSON = {"offset": start, "length": length}
        if tag == "a":
            if not argument:
                continue
            entity.update(type="text_link", url=argument)
        elif tag == "pre":
            entity["type"] = "pre"
            for k, inner in enumerate(entities):
                if (
                    inner["type"] == "code"
                    and inner["offset"] == start
                    and inner["length"] == length
                    and inner.get("language")
                ):
                    entity["language"] = inner["language"]
                    del entities[k]
                    break
        elif tag == "code":
            entity["type"] = "code"
            if argument and stack and stack[-1][0] == "pre":
                entity["language"] = argument
        elif tag == "blockquote":
            entity["type"] = "expandable_blockquote" if argument else "blockquote"
        else:
            entity["type"] = _TAG_ENTITY[tag]
        entities.append(entity)
    if stack:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _trim(plain: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Strip leading/trailing whitespace as Telegram does, moving or cutting entities."""
    stripped_left = plain.lstrip(_TRIM_CHARS)
    shift = len(plain) - len(stripped_left)  # the trimmed characters are one UTF-16 unit each
    result = stripped_left.rstrip(_TRIM_CHARS)
    if not entities:
        return result, []
    total = _u16(result)
    out: list[JSON] = []
    for entity in entities:
        begin = max(entity["offset"] - shift, 0)
        end = min(entity["offset"] + entity["length"] - shift, total)
        if end > begin:
            out.append({**entity, "offset": begin, "length": end - begin})
    return result, out


# --------------------------------------------------------------------------------------------
# World state
# --------------------------------------------------------------------------------------------


@dataclass
class FakeMessage:
    """One message in a chat as Telegram keeps it: ``plain`` is what users see, ``html`` as sent."""

    chat_id: int
    message_id: int
    from_bot: bool
    user_id: int
    html: str
    plain: str
    entities: list[JSON] = field(default_factory=list)
    parse_mode: str | None = None
    reply_markup: JSON | None = None
    date: int = 0
    edit_count: int = 0
    edit_date: int | None = None
    deleted: bool = False
    reply_to: int | None = None
    seq: int = 0
    document: JSON | None = None  # a document message: file_id, file_name, file_size, mime_type
    edit_times: list[float] = field(default_factory=list)  # time.monotonic() of each edit
    kind: str = "text"  # "invoice", "successful_payment": no text field, `extra` instead
    extra: JSON = field(default_factory=dict)

    @property
    def text(self) -> str:
        """Return the text as Telegram shows it (HTML parsed away)."""
        return self.plain

    @property
    def inline_keyboard(self) -> list[list[JSON]]:
        """Return the raw inline keyboard rows, empty when the message has none."""
        if self.reply_markup and isinstance(self.reply_markup.get("inline_keyboard"), list):
            return self.reply_markup["inline_keyboard"]  # type: ignore[no-any-return]
        return []

    def buttons(self) -> list[list[tuple[str, str | None]]]:
        """Return inline buttons as rows of (text, callback_data or url or None)."""
        return [
            [(b.get("text", ""), b.get("callback_data", b.get("url"))) for b in row]
            for row in self.inline_keyboard
        ]

    def copy(self) -> FakeMessage:
        """Return a deep copy (a snapshot safe to keep while the world changes)."""
        snapshot = object.__new__(FakeMessage)
        snapshot.__dict__.update(self.__dict__)
        snapshot.entities = _clone(self.entities)
        snapshot.reply_markup = _clone(self.reply_markup)
        snapshot.edit_times = list(self.edit_times)
        if self.document is not None:
            snapshot.document = dict(self.document)
        if self.extra:
            snapshot.extra = _clone(self.extra)
        return snapshot


@dataclass(frozen=True)
class _Queued:
    """An update on the getUpdates queue, kept serialized: it is read (a fresh copy each time)
    only when delivered, and most in-process updates are taken off the queue unread (``feed``)."""

    update_id: int
    kind: str  # the update's type: its first field besides update_id ("message", ...)
    frozen: bytes | None  # marshal's serialization...
    value: JSON | None = None  # ...or, for data marshal cannot write, a walked copy

    @staticmethod
    def of(update: JSON) -> _Queued:
        """The world's own copy of ``update``."""
        kind = next((key for key in update if key != "update_id"), "")
        try:
            return _Queued(update["update_id"], kind, marshal.dumps(update))
        except ValueError:
            return _Queued(update["update_id"], kind, None, _walk_clone(update))

    def thaw(self) -> JSON:
        """A fresh copy of the update."""
        if self.frozen is not None:
            return marshal.loads(self.frozen)  # type: ignore[no-any-return]
        return _walk_clone(self.value or {})


@dataclass(frozen=True)
class FakeButton:
    """An inline button found on a bot message."""

    chat_id: int
    message_id: int
    text: str
    data: str | None
    url: str | None


@dataclass
class _Chat:
    """A chat the bot can talk in (a user started it, or a group added it)."""

    id: int
    type: str
    first_name: str | None = None
    username: str | None = None
    title: str | None = None
    messages: list[FakeMessage] = field(default_factory=list)
    next_message_id: int = 1
    blocked: bool = False
    last_user_seq: int = 0
    reply_keyboard: JSON | None = None
    by_id: dict[int, FakeMessage] = field(default_factory=dict)  # messages by message_id
    bot_seq: int = 0  # the newest change (seq) of a bot message here: nothing newer, no match

    def add(self, msg: FakeMessage) -> None:
        """Append a new message (its message_id is new in the chat)."""
        self.messages.append(msg)
        self.by_id[msg.message_id] = msg
        if msg.from_bot:
            self.bot_seq = max(self.bot_seq, msg.seq)

    def changed(self, msg: FakeMessage, seq: int) -> None:
        """Note a change (edit, deletion) of one of its messages."""
        msg.seq = seq
        if msg.from_bot:
            self.bot_seq = max(self.bot_seq, seq)

    def as_dict(self) -> JSON:
        """Return the Chat object as Telegram sends it."""
        out: JSON = {"id": self.id, "type": self.type}
        if self.type == "private":
            out["first_name"] = self.first_name or "Tester"
            if self.username:
                out["username"] = self.username
        else:
            out["title"] = self.title or f"Group {self.id}"
        return out


class FakeTelegram:
    """The in-memory Bot API server and the users who talk to the bot; thread-safe."""

    def __init__(self, *, strict_chats: bool = True) -> None:
        """Create an empty world; ``strict_chats`` makes unknown chat ids "chat not found"."""
        self.strict_chats = strict_chats
        self.lock = threading.RLock()
        self._cond = threading.Condition(self.lock)
        self.calls: list[tuple[str, JSON]] = []
        self.callback_answers: dict[str, JSON] = {}
        self.chat_actions: list[tuple[int, str]] = []
        self.webhook_deleted = 0
        # Tokens Telegram no longer accepts (revoked at @BotFather): every call is 401.
        self.refused_tokens: set[str] = set()
        self._chats: dict[int, _Chat] = {}
        self._users: dict[int, JSON] = {}
        self._updates: list[_Queued] = []
        self._next_update_id = 1
        self._next_query_id = 7_000_000_000_000_000_001
        self._pending_queries: dict[str, tuple[int, int]] = {}
        self._commands: dict[tuple[str, str], list[JSON]] = {}
        self._flood: dict[int | None, list[int]] = {}
        self._seq = 0
        self._closed = False
        self._init_webhook()
        # Stars: invoices by (chat, message id), pre-checkout queries waiting for an answer,
        # their answers, and every payment by its charge id.
        self._invoices: dict[tuple[int, int], JSON] = {}
        self._checkouts: dict[str, JSON] = {}
        self.checkout_answers: dict[str, JSON] = {}
        self.star_payments: dict[str, JSON] = {}
        self._next_charge = 1
        self._failures: dict[str, list[tuple[ApiError, bool]]] = {}
        self._methods: dict[str, tuple[str, Callable[[JSON], Any]]] = {
            name.lower(): (name, fn)
            for name, fn in {
                "getMe": self._get_me,
                "setWebhook": self._set_webhook,
                "deleteWebhook": self._delete_webhook,
                "getWebhookInfo": self._get_webhook_info,
                "getUpdates": self._get_updates,
                "sendMessage": self._send_message,
                "editMessageText": self._edit_message_text,
                "editMessageReplyMarkup": self._edit_message_reply_markup,
                "answerCallbackQuery": self._answer_callback_query,
                "deleteMessage": self._delete_message,
                "setMyCommands": self._set_my_commands,
                "getMyCommands": self._get_my_commands,
                "deleteMyCommands": self._delete_my_commands,
                "sendChatAction": self._send_chat_action,
                "sendInvoice": self._send_invoice,
                "answerPreCheckoutQuery": self._answer_pre_checkout_query,
                "refundStarPayment": self._refund_star_payment,
                "close": self._true,
                "logOut": self._true,
                **self._file_and_inline_methods(),
            }.items()
        }
        self._files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, content)
        self.inline_answers: dict[str, JSON] = {}
        self._pending_inline: dict[str, int] = {}  # inline query id -> user id

    # ---------------------------------------------------------------- request entry points

    def handle(
        self,
        method: str,
        params: Mapping[str, Any],
        *,
        token: str | None = None,
        block: bool = False,
    ) -> tuple[int, JSON]:
        """Answer one Bot API call: (HTTP status, JSON body); ``block`` long-polls getUpdates."""
        return self._handle(method, params, token, block, _clone)

    def handle_encoded(
        self,
        method: str,
        params: Mapping[str, Any],
        *,
        token: str | None = None,
        block: bool = False,
    ) -> tuple[int, bytes]:
        """Like ``handle``, the body as the JSON bytes Telegram sends (the HTTP server's)."""
        return self._handle(method, params, token, block, _encode)

    def _handle(self, method: str, params: Mapping[str, Any], token: str | None, block: bool,
                finish: Callable[[JSON], R]) -> tuple[int, R]:
        try:
            name, decoded = self._begin(method, params, token)
        except ApiError as exc:
            return exc.status, finish(exc.body())
        if name == "getUpdates" and not self._webhook_url:
            self._confirm(decoded)
            if block:
                self._wait_for_updates(decoded)
        return self._dispatch(name, decoded, finish)

    async def handle_async(
        self, method: str, params: Mapping[str, Any], *, token: str | None = None
    ) -> tuple[int, JSON]:
        """Answer one Bot API call from an event loop; getUpdates long-polls without blocking."""
        return await self._handle_async(method, params, token, _clone)

    async def handle_encoded_async(
        self, method: str, params: Mapping[str, Any], *, token: str | None = None
    ) -> tuple[int, bytes]:
        """Like ``handle_async``, the body as the JSON bytes Telegram sends (``FakeRequest``'s)."""
        return await self._handle_async(method, params, token, _encode)

    async def _handle_async(self, method: str, params: Mapping[str, Any], token: str | None,
                            finish: Callable[[JSON], R]) -> tuple[int, R]:
        try:
            name, decoded = self._begin(method, params, token)
        except ApiError as exc:
            return exc.status, finish(exc.body())
        if name == "getUpdates" and not self._webhook_url:
            self._confirm(decoded)
            deadline = time.monotonic() + self._poll_timeout(decoded)
            offset = self._offset(decoded)
            while time.monotonic() < deadline:
                with self.lock:
                    if self._closed or self._available(offset):
                        break
                await asyncio.sleep(0.01)
        return self._dispatch(name, decoded, finish)

    def _begin(self, method: str, params: Mapping[str, Any], token: str | None) -> tuple[str, JSON]:
        """Check the token, decode and record the call; return the canonical method name."""
        if token is not None and not _TOKEN_RE.fullmatch(token):
            raise ApiError(404, "Not Found")
        entry = self._methods.get(method.lower())
        name = entry[0] if entry else method
        try:
            decoded = decode_params(params)
        except ApiError:
            with self.lock:
                self.calls.append((name, dict(params)))
            raise
        with self.lock:  # decoded is the world's own (decode_params): nothing to copy
            self.calls.append((name, decoded))
        if token is not None and token in self.refused_tokens:
            raise ApiError(401, "Unauthorized")
        if entry is None:
            raise _bad(ERR_METHOD_NOT_FOUND)
        return name, decoded

    def _dispatch(self, name: str, params: JSON, finish: Callable[[JSON], R]) -> tuple[int, R]:
        """Run the handler of ``name`` under the lock and wrap its result.

        Handlers answer with views of the world's state (no copies); ``finish`` turns the body,
        still under the lock, into what leaves the world: a deep copy (``_clone``) or the JSON
        bytes (``_encode``), so callers never hold the world's own data."""
        with self._cond:
            try:
                failures = self._failures.get(name.lower())
                if failures:
                    error, do_it = failures.pop(0)
                    if do_it:
                        self._methods[name.lower()][1](params)
                    raise error
                result = self._methods[name.lower()][1](params)
                return 200, finish({"ok": True, "result": result})
            except ApiError as exc:
                return exc.status, finish(exc.body())
            finally:
                self._cond.notify_all()

    def fail_next(self, method: str, status: int, description: str, *,
                  after_doing_it: bool = False) -> None:
        """Make the next call of ``method`` answer this error; ``after_doing_it``: the call
        takes effect first (an answer lost on the way back, e.g. a 502 after a refund)."""
        with self.lock:
            self._failures.setdefault(method.lower(), []).append(
                (ApiError(status, description), after_doing_it))

    # ---------------------------------------------------------------- bot-side methods

    def _true(self, params: JSON) -> bool:
        return True

    def _get_me(self, params: JSON) -> JSON:
        return {
            **BOT_USER,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _delete_webhook(self, params: JSON) -> bool:
        self.webhook_deleted += 1
        self._webhook_url = ""
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _get_webhook_info(self, params: JSON) -> JSON:
        return {
            "url": self._webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
            **self._webhook_info_extra(),
        }

    @staticmethod
    def _offset(params: JSON) -> int:
        offset = params.get("offset", 0)
        return offset if isinstance(offset, int) else 0

    @staticmethod
    def _poll_timeout(params: JSON) -> float:
        timeout = params.get("timeout", 0)
        return float(timeout) if isinstance(timeout, int | float) and timeout > 0 else 0.0

    def _available(self, offset: int) -> bool:
        if offset < 0:
            return bool(self._updates)
        return any(u.update_id >= offset for u in self._updates)

    def _confirm(self, params: JSON) -> None:
        """Forget the updates below a positive offset as soon as the call arrives, not after the
        long poll: Telegram does, so a bot that dies mid poll is not given them again."""
        offset = self._offset(params)
        if offset > 0:
            with self.lock:
                self._updates = [u for u in self._updates if u.update_id >= offset]

    def _wait_for_updates(self, params: JSON) -> None:
        offset = self._offset(params)
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or self._available(offset), timeout=self._poll_timeout(params)
            )

    def _get_updates(self, params: JSON) -> list[JSON]:
        if self._webhook_url:
            raise ApiError(409, ERR_WEBHOOK_ACTIVE)
        offset = self._offset(params)
        limit = params.get("limit", 100)
        limit = min(max(limit, 1), 100) if isinstance(limit, int) else 100
        if offset > 0:
            self._updates = [u for u in self._updates if u.update_id >= offset]
            selected = self._updates
        elif offset < 0:
            selected = self._updates[offset:]
        else:
            selected = self._updates
        return [queued.thaw() for queued in selected[:limit]]

    def _chat_for(self, params: JSON) -> _Chat:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad("Bad Request: chat_id is empty")
        if isinstance(chat_id, str):
            if not _INT_RE.fullmatch(chat_id.strip()):
                raise _bad("Bad Request: chat not found")
            chat_id = int(chat_id)
        if not isinstance(chat_id, int):
            raise _bad("Bad Request: chat not found")
        chat = self._chats.get(chat_id)
        if chat is None:
            if self.strict_chats:
                raise _bad("Bad Request: chat not found")
            chat = self._open(chat_id, chat_id, None, None, None)
        return chat

    def _check_flood(self, chat_id: int) -> None:
        for key in (chat_id, None):
            pending = self._flood.get(key)
            if pending:
                retry_after = pending.pop(0)
                raise ApiError(
                    429,
                    f"Too Many Requests: retry after {retry_after}",
                    {"retry_after": retry_after},
                )

    @staticmethod
    def _check_blocked(chat: _Chat) -> None:
        if chat.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")

    @staticmethod
    def _render(text: Any, parse_mode: Any, entities: Any) -> tuple[str, str, list[JSON]]:
        """Return (raw, plain, entities) of a message text, enforcing Telegram's text rules."""
        if text is None or text == "":
            raise _bad("Bad Request: message text is empty")
        raw = text if isinstance(text, str) else str(text)
        mode = parse_mode.lower() if isinstance(parse_mode, str) else ""
        if mode == "html":
            try:
                plain, frozen = _parsed_html(raw)
            except HtmlParseError as exc:
                raise _bad(f"Bad Request: can't parse entities: {exc}") from None
            ents = marshal.loads(frozen)  # the message's own entities
        elif mode == "":
            plain = raw
            ents = _clone([dict(e) for e in entities]) if isinstance(entities, list) else []
        elif mode in ("markdown", "markdownv2"):
            plain, ents = raw, []  # Markdown is not modelled: the raw text is what you get
        else:
            raise _bad("Bad Request: unsupported parse_mode")
        plain, ents = _trim(plain, ents)
        if not plain:
            raise _bad("Bad Request: message text is empty")
        if len(plain) > MAX_TEXT_LENGTH:
            raise _bad("Bad Request: message is too long")
        return raw, plain, ents

    @staticmethod
    def _check_markup(markup: Any) -> JSON | None:
        """Validate a reply_markup object as Telegram does; return a private copy."""
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("Bad Request: can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad(
                    'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup should be '
                    "an Array of Arrays"
                )
            if sum(len(r) for r in rows) > MAX_INLINE_BUTTONS:
                raise _bad("Bad Request: reply markup is too long")
            for row in rows:
                for button in row:
                    if not isinstance(button, dict):
                        raise _bad(
                            "Bad Request: can't parse inline keyboard button: "
                            "InlineKeyboardButton must be an Object"
                        )
                    if not isinstance(button.get("text"), str):
                        raise _bad(
                            "Bad Request: can't parse inline keyboard button: "
                            'Field "text" must be of type String'
                        )
                    if _BUTTON_ACTIONS.isdisjoint(button):
                        raise _bad(
                            "Bad Request: can't parse inline keyboard button: "
                            "Text buttons are unallowed in the inline keyboard"
                        )
                    if "callback_data" in button:
                        data = button["callback_data"]
                        if not isinstance(data, str) or not (
                            1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES
                        ):
                            raise _bad("Bad Request: BUTTON_DATA_INVALID")
                    if "url" in button:
                        url = button["url"]
                        if not isinstance(url, str) or not _BUTTON_URL_RE.match(url):
                            raise _bad("Bad Request: BUTTON_URL_INVALID")
            return _clone(markup)
        if {"keyboard", "remove_keyboard", "force_reply"} & set(markup):
            return _clone(markup)
        raise _bad("Bad Request: can't parse reply keyboard markup JSON object")

    def _message_dict(self, msg: FakeMessage, *, with_reply: bool = True) -> JSON:
        """The Message object as Telegram sends it: a view sharing the world's data (the sender,
        entities, keyboard), to be copied or encoded under the lock before it leaves (see
        ``_dispatch`` and ``_queue_built``)."""
        chat = self._chats[msg.chat_id]
        sender = BOT_USER if msg.from_bot else self._users.get(msg.user_id, {"id": msg.user_id})
        out: JSON = {
            "message_id": msg.message_id,
            "from": sender,
            "chat": chat.as_dict(),
            "date": msg.date,
        }
        if msg.edit_date is not None:
            out["edit_date"] = msg.edit_date
        if with_reply and msg.reply_to is not None:
            replied = self._find(chat, msg.reply_to)
            if replied is not None:
                out["reply_to_message"] = self._message_dict(replied, with_reply=False)
        if msg.document is not None:
            out["document"] = msg.document
            if msg.plain:
                out["caption"] = msg.plain
            if msg.entities:
                out["caption_entities"] = msg.entities
        else:
            if msg.kind == "text":
                out["text"] = msg.plain
            out.update(msg.extra)
            if msg.entities:
                out["entities"] = msg.entities
        keyboard = msg.inline_keyboard
        if keyboard:
            out["reply_markup"] = {"inline_keyboard": keyboard}
        return out

    @staticmethod
    def _find(chat: _Chat, message_id: Any) -> FakeMessage | None:
        try:
            msg = chat.by_id.get(message_id)
        except TypeError:  # an unhashable id (a list, …) is no message's
            return None
        return msg if msg is not None and not msg.deleted else None

    def _bump(self) -> int:
        self._seq += 1
        return self._seq

    def _send_message(self, params: JSON) -> JSON:
        chat = self._chat_for(params)
        self._check_flood(chat.id)
        self._check_blocked(chat)
        raw, plain, entities = self._render(
            params.get("text"), params.get("parse_mode"), params.get("entities")
        )
        markup = self._check_markup(params.get("reply_markup"))
        reply_to = params.get("reply_to_message_id")
        reply_parameters = params.get("reply_parameters")
        allow_missing = bool(params.get("allow_sending_without_reply"))
        if isinstance(reply_parameters, dict):
            reply_to = reply_parameters.get("message_id")
            allow_missing = bool(reply_parameters.get("allow_sending_without_reply"))
        if reply_to is not None and self._find(chat, reply_to) is None:
            if not allow_missing:
                raise _bad("Bad Request: message to be replied not found")
            reply_to = None
        if markup is not None and "inline_keyboard" not in markup:
            chat.reply_keyboard = None if "remove_keyboard" in markup else markup
        msg = FakeMessage(
            chat_id=chat.id,
            message_id=chat.next_message_id,
            from_bot=True,
            user_id=BOT_ID,
            html=raw,
            plain=plain,
            entities=entities,
            parse_mode=params.get("parse_mode"),
            reply_markup=markup if markup and "inline_keyboard" in markup else None,
            date=_now(),
            reply_to=reply_to,
            seq=self._bump(),
        )
        chat.next_message_id += 1
        chat.add(msg)
        return self._message_dict(msg)

    def _editable(self, params: JSON) -> tuple[_Chat, FakeMessage]:
        if "inline_message_id" in params:
            raise _bad("Bad Request: MESSAGE_ID_INVALID")
        chat = self._chat_for(params)
        if params.get("message_id") is None:
            raise _bad("Bad Request: message identifier is not specified")
        msg = self._find(chat, params.get("message_id"))
        if msg is None:
            raise _bad("Bad Request: message to edit not found")
        self._check_flood(chat.id)
        self._check_blocked(chat)
        if not msg.from_bot:
            raise _bad("Bad Request: message can't be edited")
        return chat, msg

    def _edit_markup(self, params: JSON) -> JSON | None:
        markup = self._check_markup(params.get("reply_markup"))
        if markup is not None and "inline_keyboard" not in markup:
            raise _bad("Bad Request: inline keyboard expected")
        if markup is not None and not any(markup["inline_keyboard"]):
            return None
        return markup

    def _apply_edit(
        self,
        msg: FakeMessage,
        raw: str,
        plain: str,
        entities: list[JSON],
        markup: JSON | None,
        parse_mode: str | None,
    ) -> JSON:
        old_keyboard = msg.inline_keyboard
        new_keyboard = markup["inline_keyboard"] if markup else []
        if (
            plain == msg.plain
            and _canon(entities) == _canon(msg.entities)
            and _canon(new_keyboard) == _canon(old_keyboard)
        ):
            raise _bad(ERR_NOT_MODIFIED)
        msg.html, msg.plain, msg.entities, msg.parse_mode = raw, plain, entities, parse_mode
        msg.reply_markup = markup
        msg.edit_count += 1
        msg.edit_times.append(time.monotonic())
        msg.edit_date = _now()
        self._chats[msg.chat_id].changed(msg, self._bump())
        return self._message_dict(msg)

    def _edit_message_text(self, params: JSON) -> JSON:
        _, msg = self._editable(params)
        if msg.kind != "text":
            raise _bad("Bad Request: there is no text in the message to edit")
        raw, plain, entities = self._render(
            params.get("text"), params.get("parse_mode"), params.get("entities")
        )
        markup = self._edit_markup(params)
        return self._apply_edit(msg, raw, plain, entities, markup, params.get("parse_mode"))

    def _edit_message_reply_markup(self, params: JSON) -> JSON:
        _, msg = self._editable(params)
        markup = self._edit_markup(params)
        return self._apply_edit(
            msg, msg.html, msg.plain, _clone(msg.entities), markup, msg.parse_mode
        )

    def _delete_message(self, params: JSON) -> bool:
        chat = self._chat_for(params)
        if params.get("message_id") is None:
            raise _bad("Bad Request: message identifier is not specified")
        msg = self._find(chat, params.get("message_id"))
        if msg is None:
            raise _bad("Bad Request: message to delete not found")
        if chat.type != "private" and not msg.from_bot:
            raise _bad("Bad Request: message can't be deleted")
        msg.deleted = True
        chat.changed(msg, self._bump())
        return True

    def _answer_callback_query(self, params: JSON) -> bool:
        query_id = str(params.get("callback_query_id", ""))
        if query_id not in self._pending_queries:
            raise _bad(ERR_QUERY_INVALID)
        text = params.get("text")
        if isinstance(text, str) and len(text) > MAX_ANSWER_TEXT:
            raise _bad("Bad Request: MESSAGE_TOO_LONG")
        if params.get("url"):
            raise _bad("Bad Request: URL_INVALID")
        del self._pending_queries[query_id]
        self.callback_answers[query_id] = _clone(params)
        return True

    @staticmethod
    def _commands_key(params: JSON) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return _canon(scope), str(params.get("language_code") or "")

    def _set_my_commands(self, params: JSON) -> bool:
        language = params.get("language_code")
        if language and not (isinstance(language, str) and re.fullmatch(r"[a-z]{2}", language)):
            raise _bad("Bad Request: invalid language code specified")  # ISO 639-1 or nothing
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad("Bad Request: can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("Bad Request: BOT_COMMANDS_TOO_MUCH")
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("Bad Request: can't parse BotCommand: BotCommand must be an Object")
            name = command.get("command")
            if not isinstance(name, str) or not _BOT_COMMAND_NAME_RE.fullmatch(name):
                raise _bad("Bad Request: BOT_COMMAND_INVALID")
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise _bad("Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self._commands[self._commands_key(params)] = _clone(commands)
        return True

    def _get_my_commands(self, params: JSON) -> list[JSON]:
        return self._commands.get(self._commands_key(params), [])

    def _delete_my_commands(self, params: JSON) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True

    def _send_chat_action(self, params: JSON) -> bool:
        chat = self._chat_for(params)
        self._check_blocked(chat)
        action = params.get("action")
        if action not in _CHAT_ACTIONS:
            raise _bad("Bad Request: wrong parameter action in request")
        self.chat_actions.append((chat.id, str(action)))
        return True

    # ---------------------------------------------------------------- payments in Stars

    def _send_invoice(self, params: JSON) -> JSON:
        chat = self._chat_for(params)
        self._check_flood(chat.id)
        self._check_blocked(chat)
        title, description = params.get("title"), params.get("description")
        payload, currency = params.get("payload"), params.get("currency")
        if not isinstance(title, str) or not 1 <= len(title) <= 32:
            raise _bad("Bad Request: INVOICE_TITLE_INVALID")
        if not isinstance(description, str) or not 1 <= len(description) <= 255:
            raise _bad("Bad Request: INVOICE_DESCRIPTION_INVALID")
        if not isinstance(payload, str) or not 1 <= len(payload.encode("utf-8")) <= 128:
            raise _bad("Bad Request: INVOICE_PAYLOAD_INVALID")
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
            raise _bad("Bad Request: CURRENCY_INVALID")
        prices = params.get("prices")
        if not isinstance(prices, list) or not prices:
            raise _bad("Bad Request: can't parse prices JSON object")
        for price in prices:
            if (not isinstance(price, dict) or not isinstance(price.get("label"), str)
                    or not price["label"] or type(price.get("amount")) is not int):
                raise _bad("Bad Request: can't parse prices JSON object")
        total = sum(price["amount"] for price in prices)
        token = params.get("provider_token")
        if currency == "XTR":
            extras = {"max_tip_amount", "suggested_tip_amounts", "need_name",
                      "need_phone_number", "need_email", "need_shipping_address",
                      "is_flexible"}
            if token not in (None, "") or len(prices) != 1 or any(
                    params.get(name) for name in extras):
                raise _bad("Bad Request: STARS_INVOICE_INVALID")
            if not 1 <= total <= MAX_INVOICE_STARS:
                raise _bad("Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID")
        else:
            if not token:
                raise _bad("Bad Request: PAYMENT_PROVIDER_INVALID")
            if total <= 0:
                raise _bad("Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID")
        markup = self._check_markup(params.get("reply_markup"))
        if markup is not None:
            rows = markup.get("inline_keyboard") or []
            if not rows or not rows[0] or not rows[0][0].get("pay"):
                raise _bad("Bad Request: REPLY_MARKUP_BUY_EMPTY")
        invoice = {"title": title, "description": description, "start_parameter": "",
                   "currency": currency, "total_amount": total}
        msg = FakeMessage(
            chat_id=chat.id,
            message_id=chat.next_message_id,
            from_bot=True,
            user_id=BOT_ID,
            html=f"{title}\n{description}",
            plain=f"{title}\n{description}",
            reply_markup=markup,
            date=_now(),
            seq=self._bump(),
            kind="invoice",
            extra={"invoice": invoice},
        )
        chat.next_message_id += 1
        chat.add(msg)
        self._invoices[(chat.id, msg.message_id)] = {**invoice, "payload": payload,
                                                     "paid": False}
        return self._message_dict(msg)

    def _answer_pre_checkout_query(self, params: JSON) -> bool:
        query_id = str(params.get("pre_checkout_query_id", ""))
        checkout = self._checkouts.get(query_id)
        after = time.monotonic() - checkout["created"] if checkout else 0.0
        if checkout is None or after > PRE_CHECKOUT_TIMEOUT:
            self._checkouts.pop(query_id, None)
            raise _bad(ERR_QUERY_INVALID)
        ok = params.get("ok")
        if not isinstance(ok, bool):
            raise _bad("Bad Request: parameter \"ok\" is required")
        error = params.get("error_message")
        if not ok and (not isinstance(error, str) or not error.strip()):
            raise _bad("Bad Request: ERROR_MESSAGE_EMPTY")
        del self._checkouts[query_id]
        self.checkout_answers[query_id] = {"ok": ok, "error_message": error, "after": after,
                                           "chat_id": checkout["chat_id"],
                                           "message_id": checkout["message_id"]}
        return True

    def _refund_star_payment(self, params: JSON) -> bool:
        user_id, charge_id = params.get("user_id"), params.get("telegram_payment_charge_id")
        if not isinstance(user_id, int):
            raise _bad("Bad Request: USER_ID_INVALID")
        payment = self.star_payments.get(charge_id) if isinstance(charge_id, str) else None
        if payment is None or payment["user_id"] != user_id:
            raise _bad("Bad Request: CHARGE_ID_INVALID")
        if payment["refunded"]:
            raise _bad("Bad Request: CHARGE_ALREADY_REFUNDED")
        payment["refunded"] = True
        return True

    # ---------------------------------------------------------------- the user side

    def _open(
        self,
        user_id: int,
        chat_id: int,
        first_name: str | None,
        username: str | None,
        title: str | None,
    ) -> _Chat:
        """Register a user and their chat; None name fields keep what is known already."""
        user = self._users.get(user_id)
        if user is None:
            user = {"id": user_id, "is_bot": False, "first_name": "Tester", "language_code": "en"}
            self._users[user_id] = user
        if first_name is not None:
            user["first_name"] = first_name
        if username is not None:
            user["username"] = username
        chat = self._chats.get(chat_id)
        if chat is None:
            if chat_id > 0:
                chat = _Chat(chat_id, "private")
            else:
                chat = _Chat(chat_id, "supergroup" if chat_id < -(10**12) else "group", title=title)
            self._chats[chat_id] = chat
        if chat.type == "private" and chat_id == user_id:
            chat.first_name = user["first_name"]
            chat.username = user.get("username")
        return chat

    def open_chat(
        self,
        user_id: int,
        *,
        first_name: str | None = None,
        username: str | None = None,
        chat_id: int | None = None,
        title: str | None = None,
        language_code: str | None = None,
    ) -> None:
        """Register a user (and their chat) so the bot may write there (like pressing Start);
        `language_code` is their Telegram app's language (IETF tag; "" for none)."""
        with self._cond:
            self._open(
                user_id, user_id if chat_id is None else chat_id, first_name, username, title
            )
            if language_code is not None:
                user = self._users[user_id]
                if language_code:
                    user["language_code"] = language_code
                else:
                    user.pop("language_code", None)
            self._cond.notify_all()

    def push_update(self, update: JSON) -> JSON:
        """Queue an update for getUpdates (assigning update_id if missing) and return it."""
        with self._cond:
            if "update_id" not in update:
                update["update_id"] = self._next_update_id
            self._enqueue(_Queued.of(update))
            return update

    def _enqueue(self, queued: _Queued) -> None:
        """Put an update on the getUpdates queue."""
        self._next_update_id = max(self._next_update_id, queued.update_id + 1)
        self._updates.append(queued)
        self._seq += 1
        self._cond.notify_all()

    def _queue_built(self, update: JSON) -> JSON:
        """Queue an update the world built from views of its state (``_message_dict``); return
        the caller's copy (the queue keeps its own)."""
        queued = _Queued.of(update)
        self._enqueue(queued)
        return queued.thaw()

    def discard_update(self, update_id: int) -> None:
        """Remove an update from the getUpdates queue (``feed`` does this)."""
        with self.lock:
            self._updates = [u for u in self._updates if u.update_id != update_id]

    @property
    def pending_updates(self) -> list[JSON]:
        """Return a copy of the updates not yet confirmed by getUpdates."""
        with self.lock:
            return [queued.thaw() for queued in self._updates]

    def user_sends(
        self,
        user_id: int,
        text: str,
        *,
        first_name: str | None = None,
        username: str | None = None,
        chat_id: int | None = None,
    ) -> JSON:
        """Play a user sending ``text``; return the message update (also queued for getUpdates)."""
        with self._cond:
            chat = self._open(
                user_id, user_id if chat_id is None else chat_id, first_name, username, None
            )
            chat.blocked = False
            entities: list[JSON] = []
            for match in _COMMAND_RE.finditer(text):
                start = match.start()
                if start == 0 or text[start - 1].isspace():
                    entities.append(
                        {
                            "offset": _u16(text[:start]),
                            "length": _u16(match.group()),
                            "type": "bot_command",
                        }
                    )
            msg = FakeMessage(
                chat_id=chat.id,
                message_id=chat.next_message_id,
                from_bot=False,
                user_id=user_id,
                html=text,
                plain=text,
                entities=entities,
                date=_now(),
            )
            chat.next_message_id += 1
            chat.add(msg)
            message = self._message_dict(msg)
            if not entities:
                message.pop("entities", None)
            update = self._queue_built({"update_id": self._next_update_id, "message": message})
            chat.last_user_seq = self._seq
            msg.seq = self._seq
            return update

    def user_presses(
        self,
        user_id: int,
        message_id: int,
        data: str,
        *,
        chat_id: int | None = None,
        force: bool = False,
    ) -> JSON:
        """Play a user pressing an inline button; the data must be on the keyboard unless forced."""
        with self._cond:
            cid = user_id if chat_id is None else chat_id
            chat = self._chats.get(cid)
            msg = self._find(chat, message_id) if chat else None
            if not force:
                if chat is None or msg is None:
                    raise ValueError(f"no visible message {message_id} in chat {cid}")
                datas = [b.get("callback_data") for row in msg.inline_keyboard for b in row]
                if data not in datas:
                    raise ValueError(
                        f"message {message_id} in chat {cid} has no button with data {data!r}; "
                        f"buttons: {msg.buttons()} (use force=True to forge)"
                    )
            if chat is None:
                chat = self._open(user_id, cid, None, None, None)
            if user_id not in self._users:
                self._open(user_id, cid, None, None, None)
            if msg is not None:
                message: JSON = self._message_dict(msg)
            else:  # InaccessibleMessage, as Telegram sends for deleted/unknown messages
                message = {"chat": chat.as_dict(), "message_id": message_id, "date": 0}
            query_id = str(self._next_query_id)
            self._next_query_id += 1
            self._pending_queries[query_id] = (cid, message_id)
            query: JSON = {
                "id": query_id,
                "from": self._users[user_id],
                "message": message,
                "chat_instance": str(abs(cid) * 7 + 13),
                "data": data,
            }
            update = self._queue_built({"update_id": self._next_update_id,
                                        "callback_query": query})
            chat.last_user_seq = self._seq
            return update

    def invoices(self, chat_id: int) -> list[FakeMessage]:
        """Return the invoices the bot sent to a chat, oldest first."""
        return [m for m in self.bot_messages(chat_id) if m.kind == "invoice"]

    def invoice_payload(self, chat_id: int, message_id: int) -> str:
        """Return the payload of an invoice (Telegram never shows it; tests may look)."""
        with self.lock:
            return str(self._invoices[(chat_id, message_id)]["payload"])

    def user_checks_out(
        self,
        user_id: int,
        message_id: int,
        *,
        chat_id: int | None = None,
        payload: str | None = None,
        total_amount: int | None = None,
        currency: str | None = None,
    ) -> JSON:
        """Play a user tapping Pay on an invoice: the pre_checkout_query update (queued).

        ``payload``, ``total_amount`` and ``currency`` forge what the query says (a tampered
        client); otherwise they are the invoice's. A paid invoice cannot be paid again.
        """
        with self._cond:
            cid = user_id if chat_id is None else chat_id
            invoice = self._invoices.get((cid, message_id))
            if invoice is None:
                raise ValueError(f"no invoice {message_id} in chat {cid}")
            if invoice["paid"]:
                raise ValueError(f"invoice {message_id} was paid: Telegram shows its receipt")
            if user_id not in self._users:
                self._open(user_id, user_id, None, None, None)
            query_id = str(self._next_query_id)
            self._next_query_id += 1
            query: JSON = {
                "id": query_id,
                "from": copy.deepcopy(self._users[user_id]),
                "currency": invoice["currency"] if currency is None else currency,
                "total_amount": invoice["total_amount"] if total_amount is None else total_amount,
                "invoice_payload": invoice["payload"] if payload is None else payload,
            }
            self._checkouts[query_id] = {"created": time.monotonic(), "chat_id": cid,
                                         "message_id": message_id, "user_id": user_id}
            return self.push_update({"update_id": self._next_update_id,
                                     "pre_checkout_query": query})

    def age_checkout(self, checkout: JSON, seconds: float) -> None:
        """Make a pending checkout older, e.g. past Telegram's 10 s to answer it."""
        with self.lock:
            pending = self._checkouts.get(checkout["pre_checkout_query"]["id"])
            if pending is not None:
                pending["created"] -= seconds

    def checkout_answer(self, checkout: JSON) -> JSON | None:
        """Return the bot's answer to a pre_checkout_query update ({ok, error_message, after})."""
        with self.lock:
            answer = self.checkout_answers.get(checkout["pre_checkout_query"]["id"])
            return copy.deepcopy(answer) if answer is not None else None

    def user_pays(self, checkout: JSON) -> JSON:
        """Complete a checkout the bot accepted: Telegram charges the Stars and sends the
        ``successful_payment`` message (queued; returned). Raises when it was not accepted."""
        query = checkout["pre_checkout_query"]
        with self._cond:
            answer = self.checkout_answers.get(query["id"])
            if answer is None or not answer["ok"]:
                raise ValueError(f"the checkout was not accepted ({answer}): nothing is charged")
            if answer.get("used"):
                raise ValueError("this checkout was paid already")
            answer["used"] = True
            chat_id = answer["chat_id"]
            self._invoices[(chat_id, answer["message_id"])]["paid"] = True
            return self._payment_message(
                query["from"]["id"], chat_id, payload=query["invoice_payload"],
                total_amount=query["total_amount"], currency=query["currency"], charge_id=None)

    def successful_payment_update(
        self,
        user_id: int,
        *,
        payload: str,
        total_amount: int,
        currency: str = "XTR",
        charge_id: str | None = None,
        chat_id: int | None = None,
    ) -> JSON:
        """Forge a ``successful_payment`` message (no checkout): a payment Telegram recorded
        (refundable) with this payload. Feed the returned update twice for a redelivery."""
        with self._cond:
            if user_id not in self._users:
                self._open(user_id, user_id, None, None, None)
            return self._payment_message(user_id, user_id if chat_id is None else chat_id,
                                         payload=payload, total_amount=total_amount,
                                         currency=currency, charge_id=charge_id)

    def _payment_message(self, user_id: int, chat_id: int, *, payload: str, total_amount: int,
                         currency: str, charge_id: str | None) -> JSON:
        """Record a payment and queue its service message from the user."""
        if charge_id is None:
            charge_id = f"stxFAKE{self._next_charge:012d}"
            self._next_charge += 1
        self.star_payments[charge_id] = {"user_id": user_id, "amount": total_amount,
                                         "currency": currency, "payload": payload,
                                         "refunded": False}
        chat = self._chats.get(chat_id) or self._open(user_id, chat_id, None, None, None)
        paid = {"currency": currency, "total_amount": total_amount, "invoice_payload": payload,
                "telegram_payment_charge_id": charge_id, "provider_payment_charge_id": ""}
        msg = FakeMessage(chat_id=chat.id, message_id=chat.next_message_id, from_bot=False,
                          user_id=user_id, html="", plain="", date=_now(),
                          kind="successful_payment", extra={"successful_payment": paid})
        chat.next_message_id += 1
        chat.add(msg)
        update = self._queue_built({"update_id": self._next_update_id,
                                    "message": self._message_dict(msg)})
        chat.last_user_seq = self._seq
        msg.seq = self._seq
        return update

    @property
    def bot_stars(self) -> int:
        """The bot's Stars balance: every payment not refunded."""
        with self.lock:
            return sum(p["amount"] for p in self.star_payments.values()
                       if p["currency"] == "XTR" and not p["refunded"])

    def user_clicks(self, user_id: int, label: str, *, chat_id: int | None = None) -> JSON:
        """Find the newest button whose text contains ``label`` and press it."""
        cid = user_id if chat_id is None else chat_id
        button = self.find_button(cid, label)
        if button is None or button.data is None:
            raise ValueError(f"no callback button {label!r} in chat {cid}: {self.bot_texts(cid)}")
        return self.user_presses(user_id, button.message_id, button.data, chat_id=chat_id)

    def block(self, chat_id: int) -> JSON:
        """Make the user block the bot (403 from now on); return the my_chat_member update."""
        with self._cond:
            chat = self._chats.get(chat_id) or self._open(chat_id, chat_id, None, None, None)
            chat.blocked = True
            user = self._users.get(
                chat_id, {"id": chat_id, "is_bot": False, "first_name": "Tester"}
            )
            member = {
                "chat": chat.as_dict(),
                "from": _clone(user),
                "date": _now(),
                "old_chat_member": {"user": dict(BOT_USER), "status": "member"},
                "new_chat_member": {"user": dict(BOT_USER), "status": "kicked", "until_date": 0},
            }
            return self.push_update({"update_id": self._next_update_id, "my_chat_member": member})

    def unblock(self, chat_id: int) -> None:
        """Make the user unblock the bot (``user_sends`` also does, like pressing Restart)."""
        with self.lock:
            if chat_id in self._chats:
                self._chats[chat_id].blocked = False

    def flood(self, chat_id: int | None, retry_after: int, *, times: int = 1) -> None:
        """Make the next ``times`` send/edit calls to ``chat_id`` (None: any chat) answer 429."""
        with self.lock:
            self._flood.setdefault(chat_id, []).extend([retry_after] * times)

    def close(self) -> None:
        """Wake all long polls and make new ones return at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        """Undo ``close`` so getUpdates long-polls again."""
        with self.lock:
            self._closed = False

    # ---------------------------------------------------------------- webhooks (Telegram's side)

    def _init_webhook(self) -> None:
        """No webhook set, nothing delivered yet."""
        self._webhook_url = ""
        self._webhook_secret: str | None = None
        self._webhook_allowed: list[str] = []
        self._webhook_error: tuple[int, str] | None = None
        self._webhook_route: str | None = None
        self._webhook_paused = 0
        self._delivery_thread: threading.Thread | None = None
        self._delivery_stop = False
        self.webhook_deliveries: list[tuple[int, int]] = []  # (update_id, HTTP status; 0 = none)

    def _set_webhook(self, params: JSON) -> bool:
        """setWebhook with Telegram's checks; an empty url removes the webhook."""
        url = str(params.get("url") or "")
        if not url:
            self._webhook_url = ""
            return True
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise _bad(ERR_WEBHOOK_HTTPS)
        if (parts.port or 443) not in WEBHOOK_PORTS:
            raise _bad(ERR_WEBHOOK_PORT)
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_TOKEN_RE.fullmatch(str(secret)):
            raise _bad(ERR_WEBHOOK_SECRET)
        if params.get("drop_pending_updates"):
            self._updates.clear()
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):  # not given: the previous setting stays, as on Telegram
            self._webhook_allowed = [str(kind) for kind in allowed]
        self._webhook_url = url
        self._webhook_secret = None if secret is None else str(secret)
        self._webhook_error = None
        return True

    def _webhook_info_extra(self) -> JSON:
        """The getWebhookInfo fields beyond url and pending_update_count."""
        extra: JSON = {"max_connections": 40} if self._webhook_url else {}
        if self._webhook_url and self._webhook_allowed:
            extra["allowed_updates"] = list(self._webhook_allowed)
        if self._webhook_error is not None:
            extra["last_error_date"], extra["last_error_message"] = self._webhook_error
        return extra

    @property
    def webhook(self) -> JSON | None:
        """The webhook as set (url, secret_token, allowed_updates), or None in polling mode."""
        with self.lock:
            if not self._webhook_url:
                return None
            return {"url": self._webhook_url, "secret_token": self._webhook_secret,
                    "allowed_updates": list(self._webhook_allowed)}

    def route_webhooks(self, local_base_url: str | None) -> None:
        """Play Telegram delivering to the webhook, and the reverse proxy in front of the bot.

        While a webhook is set, queued updates are POSTed one at a time, oldest first, as JSON
        with the secret token header, to ``local_base_url`` + the path of the webhook URL (the
        proxy's job). An update leaves the queue only when the bot answers 2xx; otherwise it is
        tried again (as Telegram does) and the error shows in getWebhookInfo. Update types not
        in the webhook's allowed_updates are never sent (Telegram does not make them). None
        stops routing (deliveries wait).
        """
        with self._cond:
            self._webhook_route = local_base_url.rstrip("/") if local_base_url else None
            self._delivery_stop = False
            if self._delivery_thread is None or not self._delivery_thread.is_alive():
                self._delivery_thread = threading.Thread(
                    target=self._deliver_forever, name="fake-telegram-webhook", daemon=True)
                self._delivery_thread.start()
            self._cond.notify_all()

    def stop_webhook_delivery(self) -> None:
        """Stop the delivery thread (queued updates stay queued); ``close`` stops it too."""
        with self._cond:
            self._delivery_stop = True
            self._cond.notify_all()
            thread = self._delivery_thread
        if thread is not None:
            thread.join(timeout=10)

    @contextlib.contextmanager
    def webhook_paused(self) -> Iterator[None]:
        """A context in which nothing is delivered (to build an update and post it by hand)."""
        with self._cond:
            self._webhook_paused += 1
        try:
            yield
        finally:
            with self._cond:
                self._webhook_paused -= 1
                self._cond.notify_all()

    def _next_delivery(self) -> tuple[_Queued, str, str | None] | None:
        """(update, local URL, secret) to deliver now, dropping types the webhook excludes."""
        if (not self._webhook_url or self._webhook_route is None or self._webhook_paused
                or self._closed):
            return None
        while self._updates:
            queued = self._updates[0]
            if self._webhook_allowed and queued.kind not in self._webhook_allowed:
                self._updates.pop(0)
                continue
            path = urllib.parse.urlsplit(self._webhook_url).path or "/"
            return queued, self._webhook_route + path, self._webhook_secret
        return None

    def _deliver_forever(self) -> None:
        """The delivery loop (see ``route_webhooks``)."""
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._delivery_stop or self._closed
                    or self._next_delivery() is not None, timeout=0.5)
                if self._delivery_stop or self._closed:
                    self._delivery_thread = None
                    return
                job = self._next_delivery()
            if job is None:
                continue
            queued, url, secret = job
            update = queued.thaw()
            status, error = _post_json(url, update, secret)
            with self._cond:
                self.webhook_deliveries.append((update["update_id"], status))
                if 200 <= status < 300:
                    self._updates = [u for u in self._updates
                                     if u.update_id != queued.update_id]
                else:
                    self._webhook_error = (_now(), error)
                self._cond.notify_all()
            if not 200 <= status < 300:
                time.sleep(0.1)

    def delivered(self, update: JSON) -> bool:
        """True once the bot answered 2xx to the delivery of ``update``."""
        with self.lock:
            return any(uid == update["update_id"] and 200 <= status < 300
                       for uid, status in self.webhook_deliveries)

    # ---------------------------------------------------------------- readers

    def chat(self, chat_id: int) -> list[FakeMessage]:
        """Return snapshots of the visible messages of a chat (edits applied, deletions gone)."""
        with self.lock:
            chat = self._chats.get(chat_id)
            return [m.copy() for m in chat.messages if not m.deleted] if chat else []

    def message(self, chat_id: int, message_id: int) -> FakeMessage | None:
        """Return a snapshot of any message, deleted ones included (check ``.deleted``)."""
        with self.lock:
            chat = self._chats.get(chat_id)
            for msg in chat.messages if chat else []:
                if msg.message_id == message_id:
                    return msg.copy()
            return None

    def bot_messages(self, chat_id: int) -> list[FakeMessage]:
        """Return snapshots of the visible bot messages of a chat."""
        return [m for m in self.chat(chat_id) if m.from_bot]

    def last_bot_message(self, chat_id: int) -> FakeMessage | None:
        """Return the newest visible bot message of a chat, or None."""
        messages = self.bot_messages(chat_id)
        return messages[-1] if messages else None

    def bot_texts(self, chat_id: int) -> list[str]:
        """Return the plain texts of the visible bot messages of a chat, oldest first."""
        return [m.plain for m in self.bot_messages(chat_id)]

    @staticmethod
    def buttons(message: FakeMessage) -> list[list[tuple[str, str | None]]]:
        """Return the inline buttons of a message as rows of (text, callback_data or url)."""
        return message.buttons()

    def find_button(self, chat_id: int, text_substring: str) -> FakeButton | None:
        """Return the newest inline button whose text contains ``text_substring``, or None."""
        with self.lock:  # looked up in place: nothing of the chat needs copying
            chat = self._chats.get(chat_id)
            for msg in reversed(chat.messages if chat else []):
                if msg.deleted or not msg.from_bot:
                    continue
                for row in msg.inline_keyboard:
                    for button in row:
                        if text_substring in button.get("text", ""):
                            return FakeButton(
                                chat_id,
                                msg.message_id,
                                button.get("text", ""),
                                button.get("callback_data"),
                                button.get("url"),
                            )
        return None

    def reply_keyboard(self, chat_id: int) -> list[list[str]] | None:
        """Return the texts of the reply keyboard currently shown in a chat, or None."""
        with self.lock:
            chat = self._chats.get(chat_id)
            if chat is None or chat.reply_keyboard is None:
                return None
            rows = chat.reply_keyboard.get("keyboard") or []
            return [[b if isinstance(b, str) else b.get("text", "") for b in row] for row in rows]

    def calls_to(self, method: str) -> list[JSON]:
        """Return the parameters of every recorded call to ``method`` (case-insensitive)."""
        with self.lock:
            return [p for name, p in self.calls if name.lower() == method.lower()]

    def answer_to(self, update: JSON) -> JSON | None:
        """Return the answerCallbackQuery parameters for a callback_query update, or None."""
        query_id = update.get("callback_query", {}).get("id")
        with self.lock:
            return self.callback_answers.get(str(query_id))

    def commands(self, *, scope: JSON | None = None, language_code: str = "") -> list[JSON]:
        """Return the commands set by setMyCommands for a scope and language."""
        with self.lock:
            return _clone(self._get_my_commands({"scope": scope, "language_code": language_code}))

    # ---------------------------------------------------------------- files and inline mode

    def _file_and_inline_methods(self) -> dict[str, Callable[[JSON], Any]]:
        """The Bot API methods for documents and inline queries (registered in __init__)."""
        return {
            "sendDocument": self._send_document,
            "getFile": self._get_file,
            "answerInlineQuery": self._answer_inline_query,
        }

    def _store_file(self, content: bytes, file_name: str) -> str:
        """Keep a file's bytes as Telegram's servers would; return its file_id."""
        file_id = f"BQACAgIAAx{len(self._files) + 1:06d}"
        suffix = file_name.rsplit(".", 1)[-1] if "." in file_name else "bin"
        self._files[file_id] = (f"documents/file_{len(self._files) + 1}.{suffix}", content)
        return file_id

    def _send_document(self, params: JSON) -> JSON:
        chat = self._chat_for(params)
        self._check_flood(chat.id)
        self._check_blocked(chat)
        document = params.get("document")
        if isinstance(document, dict) and isinstance(document.get("content"), bytes):
            content: bytes = document["content"]
            name = str(document.get("filename") or "document")
            mime = str(document.get("mime_type") or "application/octet-stream")
        elif isinstance(document, str) and document in self._files:
            path, content = self._files[document]
            name, mime = path.rsplit("/", 1)[-1], "application/octet-stream"
        else:
            raise _bad("Bad Request: there is no document in the request")
        if not content:
            raise _bad("Bad Request: file must be non-empty")
        if len(content) > MAX_UPLOAD_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        plain, raw = "", ""
        entities: list[JSON] = []
        if params.get("caption"):
            raw, plain, entities = self._render(
                params.get("caption"), params.get("parse_mode"), params.get("caption_entities")
            )
            if len(plain) > MAX_CAPTION_LENGTH:
                raise _bad("Bad Request: message caption is too long")
        markup = self._check_markup(params.get("reply_markup"))
        file_id = self._store_file(content, name)
        msg = FakeMessage(
            chat_id=chat.id,
            message_id=chat.next_message_id,
            from_bot=True,
            user_id=BOT_ID,
            html=raw,
            plain=plain,
            entities=entities,
            parse_mode=params.get("parse_mode"),
            reply_markup=markup if markup and "inline_keyboard" in markup else None,
            date=_now(),
            seq=self._bump(),
            document={"file_id": file_id, "file_unique_id": file_id[-8:], "file_name": name,
                      "mime_type": mime, "file_size": len(content)},
        )
        chat.next_message_id += 1
        chat.add(msg)
        return self._message_dict(msg)

    def _get_file(self, params: JSON) -> JSON:
        file_id = params.get("file_id")
        if not isinstance(file_id, str) or file_id not in self._files:
            raise _bad("Bad Request: invalid file_id")
        path, content = self._files[file_id]
        if len(content) > MAX_DOWNLOAD_BYTES:
            raise _bad("Bad Request: file is too big")
        return {"file_id": file_id, "file_unique_id": file_id[-8:], "file_size": len(content),
                "file_path": path}

    def file_download(self, url: str) -> tuple[int, bytes]:
        """Serve ``<base file url><token>/<file_path>`` as Telegram's file server does."""
        path = urllib.parse.urlsplit(url).path
        with self.lock:
            for file_path, content in self._files.values():
                if path.endswith("/" + file_path):
                    return 200, content
        return 404, b'{"ok":false,"error_code":404,"description":"Not Found"}'

    def document_content(self, message: FakeMessage) -> bytes:
        """Return the bytes of a document message (sent by the bot or a user)."""
        assert message.document is not None, "not a document message"
        with self.lock:
            return self._files[message.document["file_id"]][1]

    def user_sends_document(
        self,
        user_id: int,
        file_name: str,
        content: bytes,
        *,
        mime_type: str = "text/plain",
        caption: str | None = None,
        chat_id: int | None = None,
    ) -> JSON:
        """Play a user sending a file; return the message update (also queued)."""
        with self._cond:
            chat = self._open(user_id, user_id if chat_id is None else chat_id, None, None, None)
            chat.blocked = False
            file_id = self._store_file(content, file_name)
            msg = FakeMessage(
                chat_id=chat.id,
                message_id=chat.next_message_id,
                from_bot=False,
                user_id=user_id,
                html=caption or "",
                plain=caption or "",
                date=_now(),
                document={"file_id": file_id, "file_unique_id": file_id[-8:],
                          "file_name": file_name, "mime_type": mime_type,
                          "file_size": len(content)},
            )
            chat.next_message_id += 1
            chat.add(msg)
            message = self._message_dict(msg)
            update = self._queue_built({"update_id": self._next_update_id, "message": message})
            chat.last_user_seq = self._seq
            msg.seq = self._seq
            return update

    def user_inline_query(
        self, user_id: int, query: str, *, offset: str = "", chat_type: str = "private"
    ) -> JSON:
        """Play a user typing ``@bot <query>`` in a chat; return the inline_query update."""
        with self._cond:
            if user_id not in self._users:
                self._open(user_id, user_id, None, None, None)
            query_id = str(self._next_query_id)
            self._next_query_id += 1
            self._pending_inline[query_id] = user_id
            inline: JSON = {
                "id": query_id,
                "from": copy.deepcopy(self._users[user_id]),
                "query": query,
                "offset": offset,
                "chat_type": chat_type,
            }
            return self.push_update({"update_id": self._next_update_id, "inline_query": inline})

    def inline_answer(self, update: JSON) -> JSON | None:
        """Return the answerInlineQuery parameters for an inline_query update, or None."""
        query_id = update.get("inline_query", {}).get("id")
        with self.lock:
            return copy.deepcopy(self.inline_answers.get(str(query_id)))

    def _answer_inline_query(self, params: JSON) -> bool:
        query_id = str(params.get("inline_query_id", ""))
        if query_id not in self._pending_inline:
            raise _bad(ERR_QUERY_INVALID)
        results = params.get("results")
        if not isinstance(results, list):
            raise _bad("Bad Request: can't parse inline query results JSON object")
        if len(results) > MAX_INLINE_RESULTS:
            raise _bad("Bad Request: RESULTS_TOO_MUCH")
        seen: set[str] = set()
        for result in results:
            self._check_inline_result(result, seen)
        next_offset = params.get("next_offset")
        if next_offset is not None and len(str(next_offset).encode()) > 64:
            raise _bad("Bad Request: NEXT_OFFSET_INVALID")
        button = params.get("button")
        if button is not None:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad("Bad Request: can't parse InlineQueryResultsButton")
            start = button.get("start_parameter")
            if start is not None and not _START_PARAM_RE.fullmatch(str(start)):
                raise _bad("Bad Request: START_PARAM_INVALID")
        del self._pending_inline[query_id]
        self.inline_answers[query_id] = copy.deepcopy(params)
        return True

    def _check_inline_result(self, result: Any, seen: set[str]) -> None:
        """Validate one InlineQueryResult as Telegram does (the kinds a bot like this sends)."""
        if not isinstance(result, dict):
            raise _bad("Bad Request: can't parse inline query result")
        result_id = result.get("id")
        if not isinstance(result_id, str) or not 1 <= len(result_id.encode()) <= 64:
            raise _bad("Bad Request: RESULT_ID_INVALID")
        if result_id in seen:
            raise _bad("Bad Request: RESULT_ID_DUPLICATE")
        seen.add(result_id)
        if result.get("type") != "article":
            raise _bad("Bad Request: RESULT_TYPE_INVALID")
        if not isinstance(result.get("title"), str) or not result["title"]:
            raise _bad("Bad Request: RESULT_TITLE_EMPTY")
        content = result.get("input_message_content")
        if not isinstance(content, dict) or "message_text" not in content:
            raise _bad("Bad Request: MESSAGE_EMPTY")
        self._render(content.get("message_text"), content.get("parse_mode"),
                     content.get("entities"))
        markup = self._check_markup(result.get("reply_markup"))
        if markup is not None and "inline_keyboard" not in markup:
            raise _bad("Bad Request: REPLY_MARKUP_INVALID")

    def mark(self) -> int:
        """Return the current change counter, for ``wait_for_text(..., since=mark)``."""
        with self.lock:
            return self._seq

    def find_text(self, chat_id: int, substring: str, *, since: int) -> FakeMessage | None:
        """The newest bot message sent or edited after ``since`` (a ``mark()``) whose text
        contains ``substring``, or None; looks in place, without copying the chat."""
        return self._text_matcher(chat_id, substring, since)()

    def has_text(self, chat_id: int, substring: str, *, since: int) -> bool:
        """Whether ``find_text`` would find a message (nothing copied: for simulated users who
        only wait for the bot's reply)."""
        with self.lock:
            return self._newest_text(chat_id, substring, since) is not None

    # ---------------------------------------------------------------- waiting

    def _text_matcher(
        self, chat_id: int, substring: str, since: int | None
    ) -> Callable[[], FakeMessage | None]:
        def match() -> FakeMessage | None:
            with self.lock:
                msg = self._newest_text(chat_id, substring, since)
                return msg.copy() if msg is not None else None

        return match

    def _newest_text(self, chat_id: int, substring: str, since: int | None) -> FakeMessage | None:
        """The live message ``find_text`` means (the caller holds the lock)."""
        chat = self._chats.get(chat_id)
        if chat is None:
            return None
        floor = chat.last_user_seq if since is None else since
        if chat.bot_seq <= floor:
            return None  # no bot message sent or edited since
        for msg in reversed(chat.messages):
            if msg.from_bot and not msg.deleted and msg.seq > floor and substring in msg.plain:
                return msg
        return None

    def _timeout_report(self, what: str, chat_id: int | None) -> str:
        detail = f"; bot texts in chat {chat_id}: {self.bot_texts(chat_id)!r}" if chat_id else ""
        return f"timed out waiting for {what}{detail}"

    def wait_for(self, predicate: Callable[[], T | None], timeout: float = 10.0) -> T:
        """Block until ``predicate()`` is truthy (re-checked on every change); return its value."""
        result: list[T] = []

        def check() -> bool:
            value = predicate()
            if value:
                result.append(value)
                return True
            return False

        with self._cond:
            if self._cond.wait_for(check, timeout=timeout):
                return result[-1]
        raise AssertionError(self._timeout_report("predicate", None))

    async def wait_for_async(
        self,
        predicate: Callable[[], T | None],
        timeout: float = 10.0,  # noqa: ASYNC109 - same signature as the blocking wait_for
    ) -> T:
        """Like ``wait_for`` but polls without blocking the event loop (for in-loop bots)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_report("predicate", None))
            await asyncio.sleep(0.01)

    def wait_for_text(
        self, chat_id: int, substring: str, timeout: float = 10.0, *, since: int | None = None
    ) -> FakeMessage:
        """Block until a bot message containing ``substring`` is sent/edited after ``since``.

        ``since`` None means "after the user's latest action in that chat"; pass 0 for any time,
        or a ``mark()`` value.
        """
        match = self._text_matcher(chat_id, substring, since)
        try:
            return self.wait_for(match, timeout)
        except AssertionError:
            raise AssertionError(self._timeout_report(repr(substring), chat_id)) from None

    async def wait_for_text_async(
        self,
        chat_id: int,
        substring: str,
        timeout: float = 10.0,  # noqa: ASYNC109 - same signature as wait_for_text
        *,
        since: int | None = None,
    ) -> FakeMessage:
        """Like ``wait_for_text`` but without blocking the event loop."""
        match = self._text_matcher(chat_id, substring, since)
        try:
            return await self.wait_for_async(match, timeout)
        except AssertionError:
            raise AssertionError(self._timeout_report(repr(substring), chat_id)) from None


# --------------------------------------------------------------------------------------------
# In-process: a PTB request class
# --------------------------------------------------------------------------------------------


_SPLIT_URLS: dict[str, tuple[str | None, str | None]] = {}  # a bot calls a few URLs over and over


def _split_url(url: str) -> tuple[str | None, str | None]:
    """Return (token, method) of a Bot API URL, or (None, None) when it is not one."""
    known = _SPLIT_URLS.get(url)
    if known is None:
        if len(_SPLIT_URLS) >= 1024:
            _SPLIT_URLS.clear()
        known = _SPLIT_URLS[url] = _parse_url(url)
    return known


def _parse_url(url: str) -> tuple[str | None, str | None]:
    path = urllib.parse.urlsplit(url).path
    for start in range(len(path)):
        if path.startswith("/bot", start):
            match = _URL_RE.fullmatch(path[start:])
            if match:
                return match.group(1), match.group(2)
    return None, None


class FakeRequest(BaseRequest):
    """A PTB ``BaseRequest`` that answers from a FakeTelegram instead of the network."""

    def __init__(self, world: FakeTelegram) -> None:
        """Bind the request to a world; use one instance per Application slot."""
        self.world = world

    @property
    def read_timeout(self) -> float | None:
        """Return the default read timeout (unused: nothing goes over the network)."""
        return 5.0

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to tear down."""

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Hand the call to the world as Telegram would receive it (form values, JSON-encoded)."""
        if method == "GET" and "/file/bot" in url:
            return self.world.file_download(url)
        token, api_method = _split_url(url)
        if api_method is None:
            return 404, b'{"ok":false,"error_code":404,"description":"Not Found"}'
        params: dict[str, Any] = dict(request_data.json_parameters) if request_data else {}
        if request_data is not None and request_data.contains_files:
            for name, (filename, content, mime) in request_data.multipart_data.items():
                data = content if isinstance(content, bytes) else content.read()
                params[name] = {"filename": filename, "content": data, "mime_type": mime}
        return await self.world.handle_encoded_async(api_method, params, token=token)


async def feed(
    app: Application[Any, Any, Any, Any, Any, Any], update: JSON, *, raise_errors: bool = True
) -> None:
    """Process one update dict in ``app`` (inside ``async with app``); re-raise handler errors.

    The update is removed from the world's getUpdates queue first. With ``raise_errors`` the
    first exception a (blocking) handler raised is re-raised after the app's own error handlers
    have run, so a Telegram rejection fails the test instead of being only logged.
    """
    request = app.bot.request
    if isinstance(request, FakeRequest) and "update_id" in update:
        request.world.discard_update(update["update_id"])
    errors: list[BaseException] = []

    async def collect(_: object, context: CallbackContext[Any, Any, Any, Any]) -> None:
        if context.error is not None:
            errors.append(context.error)

    app.add_error_handler(collect)
    # The loop turns before each update, as it does between updates that come over the
    # network (getUpdates, a webhook): what the bot left to run meanwhile (a WAL checkpoint,
    # a notification) runs, even when a test feeds updates back to back.
    await asyncio.sleep(0)
    try:
        await app.process_update(Update.de_json(_clone(update), app.bot))
    finally:
        app.remove_error_handler(collect)
    if raise_errors and errors:
        raise errors[0]


# --------------------------------------------------------------------------------------------
# Over HTTP
# --------------------------------------------------------------------------------------------


def _parse_body(content_type: str, body: bytes) -> JSON:
    """Decode a request body sent as JSON, urlencoded form or multipart form."""
    kind = content_type.split(";")[0].strip().lower()
    if not body:
        return {}
    if kind == "application/json":
        decoded = json.loads(body.decode("utf-8"))
        if not isinstance(decoded, dict):
            raise _bad("Bad Request: invalid JSON body")
        return decoded
    if kind == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        out: JSON = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if not isinstance(name, str) or not isinstance(payload, bytes):
                continue
            filename = part.get_filename()
            if filename:
                out[name] = {"filename": filename, "size": len(payload), "content": payload}
            else:
                out[name] = payload.decode("utf-8", "replace")
        return out
    return dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))


def _post_json(url: str, body: JSON, secret: str | None) -> tuple[int, str]:
    """POSTs an update as Telegram does; (HTTP status or 0 without an answer, error text)."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_TOKEN_HEADER] = secret
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"Wrong response from the webhook: {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return 0, f"Connection failed: {reason}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    world: FakeTelegram
    content_types: list[str]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hang up; report anything else as usual."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        """Serve a GET call (parameters in the query string)."""
        self._serve()

    def do_POST(self) -> None:
        """Serve a POST call (JSON, urlencoded or multipart body)."""
        self._serve()

    def _reply(self, status: int, body: JSON | bytes) -> None:
        """Send a JSON answer (a body or its bytes), tolerating a client that already hung up."""
        data = body if isinstance(body, bytes) else _encode(body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except ConnectionError:  # the bot went away mid long poll (e.g. it was terminated)
            self.close_connection = True

    def _serve(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        match = _URL_RE.fullmatch(parts.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if match is None:
            self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        content_type = self.headers.get("Content-Type") or ""
        self.server.content_types.append(content_type.split(";")[0].strip())
        params: JSON = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        try:
            params.update(_parse_body(content_type, body))
        except (ValueError, ApiError) as exc:
            error = exc if isinstance(exc, ApiError) else _bad("Bad Request: invalid request body")
            self._reply(error.status, error.body())
            return
        status, payload = self.server.world.handle_encoded(
            match.group(2), params, token=match.group(1), block=True
        )
        self._reply(status, payload)


class FakeTelegramServer:
    """The world served over HTTP on 127.0.0.1 (random port) from a daemon thread."""

    def __init__(self, world: FakeTelegram | None = None, host: str = "127.0.0.1") -> None:
        """Create (not start) a server for ``world`` (a new one when None)."""
        self.world = world if world is not None else FakeTelegram()
        self._httpd = _Server((host, 0), _Handler)
        self._httpd.world = self.world
        self._httpd.content_types = []
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """Return the TCP port the server listens on."""
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """Return the Bot API base URL; the bot appends ``<token>/<method>``."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def content_types(self) -> list[str]:
        """Return the Content-Type of every Bot API request received, in order."""
        return list(self._httpd.content_types)

    def start(self) -> FakeTelegramServer:
        """Start serving in a daemon thread; return self."""
        self.world.reopen()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release long polls, stop serving and close the socket."""
        self.world.close()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> FakeTelegramServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Shortcuts to the world, so HTTP tests can talk to the server object alone.

    def push_update(self, update: JSON) -> JSON:
        """Queue an update for the bot's getUpdates."""
        return self.world.push_update(update)

    def user_sends(self, user_id: int, text: str, **kwargs: Any) -> JSON:
        """Queue a user message (see ``FakeTelegram.user_sends``)."""
        return self.world.user_sends(user_id, text, **kwargs)

    def user_presses(self, user_id: int, message_id: int, data: str, **kwargs: Any) -> JSON:
        """Queue a button press (see ``FakeTelegram.user_presses``)."""
        return self.world.user_presses(user_id, message_id, data, **kwargs)

    def user_clicks(self, user_id: int, label: str, **kwargs: Any) -> JSON:
        """Queue a press on the newest button labelled ``label``."""
        return self.world.user_clicks(user_id, label, **kwargs)

    def wait_for(self, predicate: Callable[[], T | None], timeout: float = 10.0) -> T:
        """Block until ``predicate()`` is truthy (for a bot in another process or thread)."""
        return self.world.wait_for(predicate, timeout)

    def wait_for_text(
        self, chat_id: int, substring: str, timeout: float = 10.0, *, since: int | None = None
    ) -> FakeMessage:
        """Block until the bot shows ``substring`` in the chat (see FakeTelegram.wait_for_text)."""
        return self.world.wait_for_text(chat_id, substring, timeout, since=since)

    async def wait_for_text_async(
        self,
        chat_id: int,
        substring: str,
        timeout: float = 10.0,  # noqa: ASYNC109 - same signature as wait_for_text
        *,
        since: int | None = None,
    ) -> FakeMessage:
        """Await the bot showing ``substring`` without blocking the loop (bot in this loop)."""
        return await self.world.wait_for_text_async(chat_id, substring, timeout, since=since)

    def __getattr__(self, name: str) -> Any:
        """Delegate other readers and helpers (chat, bot_texts, block, flood, ...) to the world."""
        if name.startswith("_") or name == "world":
            raise AttributeError(name)
        return getattr(self.world, name)
