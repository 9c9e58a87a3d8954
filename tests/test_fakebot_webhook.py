"""The fake Bot API's webhook side follows Telegram's rules: setWebhook's checks, getUpdates
refused (409) while a webhook is set, nothing dropped unless asked, and deliveries POSTed with
the secret token, retried until the bot answers 2xx."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bot.standin.botapi import (
    ERR_WEBHOOK_ACTIVE,
    ERR_WEBHOOK_HTTPS,
    ERR_WEBHOOK_PORT,
    ERR_WEBHOOK_SECRET,
    SECRET_TOKEN_HEADER,
    FakeTelegram,
)

TOKEN = "1:fake"


class Receiver(ThreadingHTTPServer):
    """A stand-in for the bot's webhook: records what arrives, answers `status`."""

    daemon_threads = True
    status = 200

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[str, str | None, dict[str, Any]]] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append((self.path, self.headers.get(SECRET_TOKEN_HEADER), body))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def call(world: FakeTelegram, method: str, **params: Any) -> tuple[int, dict[str, Any]]:
    """One Bot API call, JSON-encoding list parameters as PTB does."""
    encoded = {k: json.dumps(v) if isinstance(v, list) else v for k, v in params.items()}
    return world.handle(method, encoded, token=TOKEN)


@pytest.mark.parametrize(("params", "error"), [
    ({"url": "http://bot.example.com/hook"}, ERR_WEBHOOK_HTTPS),
    ({"url": "https://bot.example.com:8080/hook"}, ERR_WEBHOOK_PORT),
    ({"url": "https://bot.example.com/hook", "secret_token": "not allowed!"},
     ERR_WEBHOOK_SECRET),
    ({"url": "https://bot.example.com/hook", "secret_token": "x" * 257}, ERR_WEBHOOK_SECRET),
])
def test_set_webhook_is_refused_as_telegram_refuses_it(params: dict[str, Any],
                                                       error: str) -> None:
    world = FakeTelegram()
    status, body = call(world, "setWebhook", **params)
    assert (status, body["description"]) == (400, error)
    assert world.webhook is None


def test_get_updates_is_409_while_a_webhook_is_set_and_nothing_is_dropped() -> None:
    world = FakeTelegram()
    first = world.user_sends(5, "/start")
    assert call(world, "setWebhook", url="https://bot.example.com/hook", secret_token="s",
                allowed_updates=["message"])[0] == 200
    assert world.webhook == {"url": "https://bot.example.com/hook", "secret_token": "s",
                             "allowed_updates": ["message"]}
    status, body = call(world, "getUpdates", offset=first["update_id"] + 1)
    assert (status, body["description"]) == (409, ERR_WEBHOOK_ACTIVE)
    assert [u["update_id"] for u in world.pending_updates] == [first["update_id"]]
    info = call(world, "getWebhookInfo")[1]["result"]
    assert info["url"] == "https://bot.example.com/hook" and info["pending_update_count"] == 1
    assert call(world, "deleteWebhook", drop_pending_updates=False)[0] == 200
    status, body = call(world, "getUpdates")
    assert status == 200 and [u["update_id"] for u in body["result"]] == [first["update_id"]]
    assert call(world, "getWebhookInfo")[1]["result"]["url"] == ""


def test_updates_are_delivered_with_the_secret_and_retried_until_accepted(
        receiver: Receiver) -> None:
    world = FakeTelegram()
    receiver.status = 403
    call(world, "setWebhook", url="https://bot.example.com/tg/hook", secret_token="s3cret",
         allowed_updates=["message"])
    world.route_webhooks(receiver.base)
    try:
        sent = world.user_sends(5, "/start")
        world.wait_for(lambda: len(receiver.received) >= 2, timeout=5)  # refused, tried again
        assert world.pending_updates and not world.delivered(sent)
        info = call(world, "getWebhookInfo")[1]["result"]
        assert info["last_error_message"] == "Wrong response from the webhook: 403 Forbidden"
        receiver.status = 200
        world.wait_for(lambda: world.delivered(sent), timeout=5)
        assert world.pending_updates == []
        path, secret, body = receiver.received[-1]
        assert (path, secret, body["update_id"]) == ("/tg/hook", "s3cret", sent["update_id"])
        world.block(5)  # a my_chat_member update: not in allowed_updates, never sent
        second = world.user_sends(5, "/help")
        world.wait_for(lambda: world.delivered(second), timeout=5)
        assert all("my_chat_member" not in body for _, _, body in receiver.received)
    finally:
        world.stop_webhook_delivery()
