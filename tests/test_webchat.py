"""The web chat's HTTP side and `smm-bot try`'s settings, without a browser.

The page itself is driven in Chromium by tests/e2e/test_try_browser.py; these check what the
page relies on: a change in the chat ends a waiting long poll, taps and their answers belong to
the persona who tapped, a button that is gone cannot be tapped, and `try` is demo mode on its own
database whatever the environment of a real bot says.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.__main__ import main
from bot.config import ConfigError
from bot.standin.botapi import FakeTelegram
from bot.standin.trymode import ADMIN, CUSTOMER, PERSONAS, STRANGER, run_try, try_settings
from bot.standin.webchat import Persona, WebChat

ALICE = Persona(1, "Alice", "admin", "can do everything")
BOB = Persona(2, "Bob", "customer", "can order")


@pytest.fixture
def world() -> FakeTelegram:
    """An empty stand-in world."""
    return FakeTelegram()


@contextlib.asynccontextmanager
async def open_web(world: FakeTelegram, poll_timeout: float) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on a web chat for Alice and Bob."""
    chat = WebChat(world, [ALICE, BOB], poll_timeout=poll_timeout)
    transport = httpx.ASGITransport(app=chat.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://chat.test") as client:
        yield client


@pytest.fixture
async def web(world: FakeTelegram) -> AsyncIterator[httpx.AsyncClient]:
    """A client on a web chat whose long polls give up after 0.3 s."""
    async with open_web(world, 0.3) as client:
        yield client


def bot_says(world: FakeTelegram, chat_id: int, text: str, **params: object) -> int:
    """The bot sends an HTML message through the Bot API; its message id."""
    status, body = world.handle("sendMessage", {"chat_id": chat_id, "text": text,
                                                "parse_mode": "HTML", **params})
    assert status == 200, body
    return int(body["result"]["message_id"])


async def test_the_page_and_its_script_and_style_are_served(web: httpx.AsyncClient) -> None:
    page = await web.get("/")
    assert page.status_code == 200
    assert '<script src="/static/chat.js">' in page.text
    for name, kind in (("chat.js", "javascript"), ("chat.css", "text/css")):
        response = await web.get(f"/static/{name}")
        assert response.status_code == 200
        assert kind in response.headers["content-type"]
    personas = (await web.get("/api/personas")).json()["personas"]
    assert [(p["user_id"], p["role"]) for p in personas] == [(1, "admin"), (2, "customer")]


async def test_a_waiting_long_poll_returns_as_soon_as_the_bot_writes(
        web: httpx.AsyncClient, world: FakeTelegram) -> None:
    first = (await web.get("/api/chat", params={"user": 1})).json()
    assert first["messages"] == []
    idle = (await web.get("/api/chat", params={"user": 1, "since": first["version"]})).json()
    assert idle["version"] == first["version"]  # nothing new: answered after the poll timeout

    async with open_web(world, 30) as patient:  # this one would wait 30 s for news
        waiting = asyncio.create_task(
            patient.get("/api/chat", params={"user": 1, "since": first["version"]}))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        markup = '{"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}'
        bot_says(world, 1, "<b>Order 7</b> &lt;done&gt;", reply_markup=markup)
        snap = (await asyncio.wait_for(waiting, 5)).json()
    [message] = snap["messages"]
    # Plain text and entities, never the HTML: the page builds the formatting from these.
    assert message["text"] == "Order 7 <done>"
    assert message["entities"] == [{"offset": 0, "length": 7, "type": "bold"}]
    assert message["keyboard"] == [[{"text": "Go", "data": "go", "url": None}]]
    assert message["from_bot"] and not message["edited"]


async def test_edits_and_deletions_show_in_the_next_snapshot(
        web: httpx.AsyncClient, world: FakeTelegram) -> None:
    kept = bot_says(world, 1, "Pick one")
    gone = bot_says(world, 1, "Temporary")
    world.handle("editMessageText", {"chat_id": 1, "message_id": kept, "text": "Picked"})
    world.handle("deleteMessage", {"chat_id": 1, "message_id": gone})
    snap = (await web.get("/api/chat", params={"user": 1})).json()
    assert [(m["id"], m["text"], m["edited"]) for m in snap["messages"]] == [
        (kept, "Picked", True)]


async def test_a_tap_reaches_the_bot_and_its_answer_only_the_persona_who_tapped(
        web: httpx.AsyncClient, world: FakeTelegram) -> None:
    markup = '{"inline_keyboard": [[{"text": "Balance", "callback_data": "bal"}]]}'
    message_id = bot_says(world, 1, "Menu", reply_markup=markup)
    tap = await web.post("/api/press", json={"user": 1, "message_id": message_id,
                                             "data": "bal"})
    assert tap.status_code == 200
    query_id = tap.json()["query_id"]
    [update] = world.pending_updates
    assert update["callback_query"]["from"]["id"] == 1
    assert update["callback_query"]["data"] == "bal"
    world.handle("answerCallbackQuery", {"callback_query_id": query_id, "text": "10 USD"})

    alice = (await web.get("/api/chat", params={"user": 1})).json()
    assert alice["answers"] == [{"id": query_id, "text": "10 USD", "show_alert": False}]
    bob = (await web.get("/api/chat", params={"user": 2})).json()
    assert bob["answers"] == []
    assert bob["latest"] == {"1": message_id, "2": 0}  # Alice's chat has news: an unread mark


async def test_a_button_no_longer_shown_cannot_be_tapped(
        web: httpx.AsyncClient, world: FakeTelegram) -> None:
    markup = '{"inline_keyboard": [[{"text": "Confirm", "callback_data": "ok"}]]}'
    message_id = bot_says(world, 1, "Sure?", reply_markup=markup)
    world.handle("editMessageText", {"chat_id": 1, "message_id": message_id, "text": "Done"})
    tap = await web.post("/api/press", json={"user": 1, "message_id": message_id, "data": "ok"})
    assert tap.status_code == 409
    assert tap.json() == {"error": "That button is no longer there."}
    assert world.pending_updates == []


async def test_what_the_user_types_reaches_the_bot_and_bad_requests_get_a_reason(
        web: httpx.AsyncClient, world: FakeTelegram) -> None:
    sent = await web.post("/api/send", json={"user": 2, "text": "/start"})
    assert sent.status_code == 200
    [update] = world.pending_updates
    assert update["message"]["from"]["first_name"] == "Bob"
    assert update["message"]["entities"] == [{"offset": 0, "length": 6, "type": "bot_command"}]

    refusals = [
        (await web.post("/api/send", json={"user": 3, "text": "hi"}), 404,
         "No such user on this page."),
        (await web.post("/api/send", json={"user": 2, "text": "  "}), 400, "Type a message first."),
        (await web.post("/api/send", json={"user": 2, "text": "x" * 4097}), 400,
         "A message can be at most 4096 characters long."),
        (await web.post("/api/send", content=b"not json"), 404, "No such user on this page."),
        (await web.get("/api/chat", params={"user": "nobody"}), 404,
         "No such user on this page."),
    ]
    for response, status, reason in refusals:
        assert (response.status_code, response.json()["error"]) == (status, reason)
    assert len(world.pending_updates) == 1


async def test_the_menu_is_the_narrowest_scope_the_bot_set(
        web: httpx.AsyncClient, world: FakeTelegram) -> None:
    world.handle("setMyCommands", {"commands": '[{"command": "start", "description": "Menu"}]'})
    world.handle("setMyCommands", {"commands": '[{"command": "stats", "description": "Stats"}]',
                                   "scope": '{"type": "chat", "chat_id": 1}'})
    alice = (await web.get("/api/chat", params={"user": 1})).json()
    bob = (await web.get("/api/chat", params={"user": 2})).json()
    assert [c["command"] for c in alice["commands"]] == ["stats"]
    assert [c["command"] for c in bob["commands"]] == ["start"]


def test_try_is_demo_mode_on_its_own_database_whatever_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real bot's settings, in the environment and in a .env file where `try` is started.
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("STATUS_POLL_INTERVAL=60\nSANDBOX_SPEED=1\n")
    for name, value in {"BOT_TOKEN": "123:real-token", "PANEL_URL": "https://panel.example/api",
                        "PANEL_KEY": "real-key", "DATABASE_PATH": str(tmp_path / "real.db"),
                        "ADMIN_IDS": "999", "TELEGRAM_BASE_URL": "https://api.telegram.org/bot",
                        "SANDBOX_SPEED": "50"}.items():
        monkeypatch.setenv(name, value)
    settings = try_settings(tmp_path / "try" / "try.sqlite3")
    assert settings.demo_mode and settings.panel_key is None
    assert settings.database_path == tmp_path / "try" / "try.sqlite3"
    assert settings.bot_token.get_secret_value() != "123:real-token"
    assert settings.telegram_base_url.startswith("http://bot-api.invalid/")
    assert settings.admin_ids == {ADMIN.user_id}
    assert settings.allowed_user_ids == {CUSTOMER.user_id}
    assert STRANGER.user_id not in settings.admin_ids | settings.allowed_user_ids
    assert [p.role for p in PERSONAS] == ["admin", "customer", "stranger"]
    assert settings.secret_key is not None  # so /connect can be tried
    assert settings.sandbox_speed == 50  # the environment may tune the demo; .env is not read
    assert settings.status_poll_interval == 5

    monkeypatch.setenv("SANDBOX_SPEED", "fast")
    with pytest.raises(ConfigError, match="SANDBOX_SPEED"):
        try_settings(tmp_path / "try.sqlite3")


def test_a_taken_port_is_one_line_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run_try(port) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err


def test_a_bad_port_on_the_command_line_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["try", "--port", "http"])
    assert exit_info.value.code == 2
    assert "'http' is not a port number (0-65535)" in capsys.readouterr().err
