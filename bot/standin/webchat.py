"""The web chat of `smm-bot try`: a page where a person talks to the bot through the stand-in.

The page (``web/``: plain HTML, CSS and JavaScript, no build step) plays a Telegram client for a
few users (personas). It reads each chat from the Bot API stand-in (:class:`FakeTelegram`) and
acts in it as that user, so the bot sees exactly the updates Telegram would send:

* ``GET /api/chat?user=ID&since=VERSION`` answers at once when the world changed since
  ``VERSION``, else long-polls until it does (or ``poll_timeout`` passes): the chat's visible
  messages (plain text and entities, never HTML, so the page builds the formatting itself), the
  command menu, the answers to this user's button taps, and the id of the newest bot message in
  every persona's chat (for unread marks);
* ``POST /api/send`` ``{"user": ID, "text": "..."}``: the user sends a message;
* ``POST /api/press`` ``{"user": ID, "message_id": N, "data": "..."}``: the user taps a button
  (409 when the message no longer shows it, as Telegram's client could not send that tap).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bot.standin.botapi import (
    BOT_FIRST_NAME,
    BOT_USERNAME,
    MAX_TEXT_LENGTH,
    FakeMessage,
    FakeTelegram,
)

JSON = dict[str, Any]

WEB_DIR = Path(__file__).with_name("web")
POLL_TIMEOUT = 20.0  # seconds a long poll waits for a change before answering "nothing new"
POLL_STEP = 0.05  # seconds between looks at the world while a long poll waits
ANSWERS_KEPT = 20  # answers to button taps kept per user for the page to show


@dataclass(frozen=True, slots=True)
class Persona:
    """A user the page can be: their Telegram id and name, and what they may do, in a line."""

    user_id: int
    name: str
    role: str  # "admin", "customer", "stranger": the selector's label
    about: str


class WebChat:
    """The web chat's HTTP app (``.app``, ASGI) over one Bot API stand-in world."""

    def __init__(self, world: FakeTelegram, personas: Sequence[Persona], *,
                 poll_timeout: float = POLL_TIMEOUT) -> None:
        """Serve ``personas`` (their chats are opened in ``world`` so the bot may write there)."""
        if not personas:
            raise ValueError("the web chat needs at least one persona")
        self.world = world
        self.personas = {p.user_id: p for p in personas}
        self.poll_timeout = poll_timeout
        self._queries: dict[int, deque[str]] = {p.user_id: deque(maxlen=ANSWERS_KEPT)
                                                for p in personas}
        self._closing = False
        for persona in personas:
            world.open_chat(persona.user_id, first_name=persona.name)
        self.app = Starlette(routes=[
            Route("/", self._index),
            Route("/api/personas", self._personas),
            Route("/api/chat", self._chat),
            Route("/api/send", self._send, methods=["POST"]),
            Route("/api/press", self._press, methods=["POST"]),
            Mount("/static", StaticFiles(directory=WEB_DIR), name="static"),
        ])

    def close(self) -> None:
        """Answer the waiting long polls now (the server is stopping)."""
        self._closing = True

    # ------------------------------------------------------------------ reading the world

    def version(self) -> str:
        """A token that changes whenever anything the page shows may have changed."""
        with self.world.lock:
            return f"{self.world.mark()}.{len(self.world.callback_answers)}"

    def snapshot(self, user_id: int) -> JSON:
        """What the page shows for one persona's chat now."""
        world = self.world
        with world.lock:
            version = self.version()
            messages = [_message_json(m) for m in world.chat(user_id)]
            answers = []
            for query_id in self._queries[user_id]:
                answer = world.callback_answers.get(query_id)
                if answer is not None:
                    answers.append({"id": query_id, "text": str(answer.get("text") or ""),
                                    "show_alert": bool(answer.get("show_alert"))})
            latest = {}
            for uid in self.personas:
                last = world.last_bot_message(uid)
                latest[str(uid)] = last.message_id if last is not None else 0
        return {"version": version, "messages": messages, "commands": self.commands(user_id),
                "answers": answers, "latest": latest}

    def commands(self, user_id: int) -> list[JSON]:
        """The command menu this user sees: the narrowest scope the bot set, as Telegram picks."""
        for scope in ({"type": "chat", "chat_id": user_id}, {"type": "all_private_chats"},
                      None):
            commands = self.world.commands(scope=scope)
            if commands:
                return commands
        return []

    # ------------------------------------------------------------------ routes

    async def _index(self, request: Request) -> Response:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def _personas(self, request: Request) -> Response:
        return JSONResponse({
            "bot": {"first_name": BOT_FIRST_NAME, "username": BOT_USERNAME},
            "personas": [asdict(p) for p in self.personas.values()],
        })

    async def _chat(self, request: Request) -> Response:
        user_id = self._persona_id(request.query_params.get("user"))
        if user_id is None:
            return _error(404, "No such user on this page.")
        since = request.query_params.get("since", "")
        deadline = time.monotonic() + self.poll_timeout
        # The world changes from other threads too and signals only a threading.Condition, so
        # an asyncio.Event would not be told: look again every POLL_STEP instead.
        while (since == self.version() and not self._closing  # noqa: ASYNC110
               and time.monotonic() < deadline):
            await asyncio.sleep(POLL_STEP)
        return JSONResponse(self.snapshot(user_id))

    async def _send(self, request: Request) -> Response:
        body = await _json_body(request)
        user_id = self._persona_id(body.get("user"))
        if user_id is None:
            return _error(404, "No such user on this page.")
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Type a message first.")
        if len(text) > MAX_TEXT_LENGTH:
            return _error(400, f"A message can be at most {MAX_TEXT_LENGTH} characters long.")
        self.world.user_sends(user_id, text)
        return JSONResponse({"version": self.version()})

    async def _press(self, request: Request) -> Response:
        body = await _json_body(request)
        user_id = self._persona_id(body.get("user"))
        if user_id is None:
            return _error(404, "No such user on this page.")
        message_id, data = body.get("message_id"), body.get("data")
        if not isinstance(message_id, int) or not isinstance(data, str):
            return _error(400, "A tap needs the message and the button's data.")
        try:
            update = self.world.user_presses(user_id, message_id, data)
        except ValueError:
            return _error(409, "That button is no longer there.")
        query_id = str(update["callback_query"]["id"])
        self._queries[user_id].append(query_id)
        return JSONResponse({"query_id": query_id, "version": self.version()})

    def _persona_id(self, raw: object) -> int | None:
        """The persona a request names (an id as int or digits), or None when there is none."""
        if isinstance(raw, str) and raw.strip().isdigit():
            raw = int(raw)
        if isinstance(raw, int) and not isinstance(raw, bool) and raw in self.personas:
            return raw
        return None


def _message_json(message: FakeMessage) -> JSON:
    """A message as the page needs it: plain text plus entities (UTF-16 offsets, as JS counts)."""
    return {
        "id": message.message_id,
        "from_bot": message.from_bot,
        "text": message.plain,
        "entities": message.entities,
        "keyboard": [
            [{"text": str(b.get("text", "")), "data": b.get("callback_data"), "url": b.get("url")}
             for b in row]
            for row in message.inline_keyboard
        ],
        "edited": message.edit_count > 0,
        "date": message.date,
        "seq": message.seq,
    }


async def _json_body(request: Request) -> JSON:
    """The request's JSON object, or an empty one when the body is not a JSON object."""
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(status: int, reason: str) -> Response:
    """A JSON error with a one-line reason the page shows as it is."""
    return JSONResponse({"error": reason}, status_code=status)
