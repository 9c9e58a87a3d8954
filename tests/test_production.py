"""Production settings and the HTTP side in-process: webhook settings checked, the webhook route's
secret check, /healthz verdicts (a stalled tracker, a missing database file), and the metrics and
health facts that the panel client and the order confirmation record."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from bot import health, metrics
from bot.app import BotAPIRequest, build_application
from bot.config import ConfigError, load_settings
from bot.panel.client import PanelClient
from bot.panel.errors import PanelClientError
from bot.panel.sandbox import DEMO_KEY, SANDBOX_URL, SandboxPanel
from bot.server import SECRET_HEADER, listen, set_webhook, web_app
from tests.conftest import USER, BotHarness, start_harness, stop_harness

SECRET = "in-process_Secret_42"
HOOK = "https://bot.example.com:8443/tg/hook"


def sample(name: str, **labels: str) -> float:
    """A metric's current value in the bot's registry (0 when never set)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "named", "says"), [
    ({"WEBHOOK_URL": "http://bot.example.com/hook", "WEBHOOK_SECRET": "s"}, "WEBHOOK_URL",
     "https"),
    ({"WEBHOOK_URL": "https://bot.example.com:8080/hook", "WEBHOOK_SECRET": "s"}, "WEBHOOK_URL",
     "443, 80, 88 and 8443"),
    ({"WEBHOOK_URL": "https://bot.example.com/metrics", "WEBHOOK_SECRET": "s"}, "WEBHOOK_URL",
     "/healthz or /metrics"),
    ({"WEBHOOK_URL": HOOK}, "WEBHOOK_SECRET", "is missing"),
    ({"WEBHOOK_URL": HOOK, "WEBHOOK_SECRET": "has spaces!"}, "WEBHOOK_SECRET", "1-256"),
    ({"WEBHOOK_URL": HOOK, "WEBHOOK_SECRET": "x" * 257}, "WEBHOOK_SECRET", "1-256"),
    ({"WEBHOOK_PORT": "70000"}, "WEBHOOK_PORT", "65535"),
    ({"HEALTH_PORT": "0"}, "HEALTH_PORT", "greater than or equal to 1"),
])
def test_webhook_and_health_settings_are_checked_in_one_line(
        values: dict[str, str], named: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(_env_file=None, BOT_TOKEN="1:x", **values)
    text = str(refused.value)
    assert text.startswith(f"Setting {named} ") and says in text and "\n" not in text, text
    assert "has spaces!" not in text and "x" * 257 not in text  # a secret is never echoed


def test_webhook_settings_when_valid() -> None:
    polling = load_settings(_env_file=None, BOT_TOKEN="1:x", WEBHOOK_SECRET="", HEALTH_PORT="")
    assert polling.webhook_url is None and polling.webhook_path is None
    assert polling.health_port is None
    hooked = load_settings(_env_file=None, BOT_TOKEN="1:x", WEBHOOK_URL=HOOK,
                           WEBHOOK_SECRET=SECRET, WEBHOOK_PORT="9000")
    assert hooked.webhook_path == "/tg/hook" and hooked.webhook_port == 9000
    assert hooked.webhook_listen == "0.0.0.0"
    assert SECRET not in repr(hooked) + str(hooked)
    bare = load_settings(_env_file=None, BOT_TOKEN="1:x", WEBHOOK_URL="https://b.example",
                         WEBHOOK_SECRET=SECRET)
    assert bare.webhook_path == "/"


# --- the webhook route and /healthz, in-process ------------------------------------------------


@pytest.fixture
async def hooked(tmp_path: Path) -> AsyncIterator[tuple[BotHarness, httpx.AsyncClient]]:
    """A running bot (webhook settings) and an HTTP client on its ASGI app."""
    harness = await start_harness(tmp_path, WEBHOOK_URL=HOOK, WEBHOOK_SECRET=SECRET)
    await harness.app.start()
    web = web_app(harness.app, harness.app.bot_data["settings"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web),
                                 base_url="http://bot") as client:
        yield harness, client
    await stop_harness(harness)


async def test_the_webhook_route_processes_only_requests_with_the_secret(
        hooked: tuple[BotHarness, httpx.AsyncClient]) -> None:
    bot, client = hooked
    update = bot.world.user_sends(USER, "/help")
    bot.world.discard_update(update["update_id"])
    for headers in ({}, {SECRET_HEADER: ""}, {SECRET_HEADER: "wrong"},
                    {SECRET_HEADER: SECRET.upper()}, {SECRET_HEADER: ("é" + SECRET).encode()}):
        answer = await client.post("/tg/hook", json=update, headers=headers)
        assert answer.status_code == 403, headers
    assert (await client.get("/tg/hook", headers={SECRET_HEADER: SECRET})).status_code == 405
    bad = await client.post("/tg/hook", content=b"{not json", headers={SECRET_HEADER: SECRET})
    assert bad.status_code == 400
    await asyncio.sleep(0.2)
    assert bot.texts() == []  # none of them reached a handler
    answer = await client.post("/tg/hook", json=update, headers={SECRET_HEADER: SECRET})
    assert answer.status_code == 200
    shown = await bot.world.wait_for_text_async(USER, "What I can do", 5)
    assert shown.plain.startswith("What I can do")


async def test_healthz_answers_503_without_the_database_file(
        hooked: tuple[BotHarness, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch) -> None:
    bot, client = hooked
    facts = health.Facts()
    facts.tracker_cycled()
    monkeypatch.setattr(health, "FACTS", facts)
    answer = await client.get("/healthz")
    assert answer.status_code == 200, answer.text
    assert answer.json()["outbox_backlog"] == 0 and answer.json()["mode"] == "webhook"
    database = bot.deps.settings.database_path
    database.rename(database.with_suffix(".gone"))
    try:
        answer = await client.get("/healthz")
    finally:
        database.with_suffix(".gone").rename(database)
    assert answer.status_code == 503
    body = answer.json()
    assert body["database_reachable"] is False and body["status"] == "unhealthy"
    assert "missing" in body["problems"][0]


def test_a_stalled_tracker_makes_the_bot_unhealthy_a_silent_panel_does_not() -> None:
    facts = health.Facts(started_at=1000.0)
    ok, body = health.assess(facts, interval=60, database_error=None, backlog=3, now=1100.0)
    assert ok and body["seconds_since_tracker_cycle"] is None  # starting: within the grace
    ok, body = health.assess(facts, interval=60, database_error=None, backlog=3, now=1301.0)
    assert not ok and body["problems"] == ["tracker: no cycle for 301 s (limit 300 s)"]
    facts.tracker_cycled(now=1290.0)
    facts.panel_answered(False, now=1295.0)
    ok, body = health.assess(facts, interval=60, database_error=None, backlog=3, now=1301.0)
    assert ok, body
    assert body["seconds_since_tracker_cycle"] == 11.0 and body["panel_reachable"] is False
    assert body["outbox_backlog"] == 3
    ok, body = health.assess(facts, interval=60, database_error=None, backlog=0,
                             now=1290.0 + 300.5)
    assert not ok and body["problems"][0].startswith("tracker: no cycle for 300 s")
    ok, body = health.assess(facts, interval=60, database_error="cannot open", backlog=None,
                             now=1291.0)
    assert not ok and body["problems"] == ["database: cannot open"]
    assert health.stall_after(1) == health.STALL_MINIMUM and health.stall_after(600) == 3000


async def test_a_webhook_telegram_refuses_is_one_clear_line(bot: BotHarness) -> None:
    # The settings never let such a URL through; Telegram can refuse others (DNS, certificate).
    settings = bot.deps.settings.model_copy(update={
        "webhook_url": "https://bot.example.com:8080/hook", "webhook_secret": SecretStr(SECRET)})
    with pytest.raises(ConfigError) as refused:
        await set_webhook(bot.app, settings)
    text = str(refused.value)
    assert text.startswith("Telegram refused the webhook https://bot.example.com:8080/hook: ")
    assert "ports 80, 88, 443 or 8443" in text and SECRET not in text and "\n" not in text
    assert bot.world.webhook is None


def test_a_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"Cannot listen on 127.0.0.1:{port} .*HEALTH_PORT"):
            listen("127.0.0.1", port, "HEALTH_PORT")


# --- what the panel client and the order confirmation record ---------------------------------


@pytest.mark.parametrize(("mode", "outcome", "reachable"), [
    (None, "ok", True),
    ("error:Invalid API key", "refused", True),
    ("html502", "http_error", False),
    ("timeout", "timeout", False),
    ("connect", "transport_error", False),
    ("badjson", "bad_response", False),
])
async def test_each_panel_request_is_counted_by_outcome_and_sets_panel_reachable(
        mode: str | None, outcome: str, reachable: bool) -> None:
    sandbox = SandboxPanel()
    if mode is not None:
        sandbox.fail_next("balance", mode)
    client = PanelClient(SANDBOX_URL, transport=sandbox.transport(), read_retries=1)
    before = sample("smm_bot_panel_requests_total", action="balance", outcome=outcome)
    health.FACTS.panel_answered(not reachable)
    try:
        if mode is None:
            await client.balance(DEMO_KEY)
        else:
            with pytest.raises(PanelClientError):
                await client.balance(DEMO_KEY)
    finally:
        await client.aclose()
    assert sample("smm_bot_panel_requests_total", action="balance", outcome=outcome) == before + 1
    assert health.FACTS.panel_reachable is reachable


async def test_each_order_outcome_is_counted_once(bot: BotHarness) -> None:
    before = {name: sample("smm_bot_orders_total", outcome=name)
              for name in ("placed", "failed", "unknown")}

    async def confirm(failure: str | None) -> None:
        await bot.send("/order 1")
        for answer in (f"instagram.com/metrics{len(bot.panel_requests('add'))}", "100"):
            await bot.send(answer)
        await bot.press("Skip")
        if failure is not None:
            bot.sandbox.fail_next("add", failure)
        await bot.press("Confirm")

    await confirm("error:Not enough funds on balance")
    await bot.send("/cancel")
    await confirm("timeout_after")
    await confirm(None)
    assert bot.last().plain.startswith("✅ Order ")
    for name in ("placed", "failed", "unknown"):
        assert sample("smm_bot_orders_total", outcome=name) == before[name] + 1, name


# --- HTTP clients --------------------------------------------------------------------------------


async def test_the_bot_api_requests_keep_no_cookie_telegram_or_a_proxy_sets(
        tmp_path: Path) -> None:
    """The Bot API goes through python-telegram-bot's HTTPXRequest on a client that keeps no
    cookies (built as the bot builds it when no fake Bot API is given)."""
    seen: list[httpx.Request] = []

    def telegram(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True, "result": True},
                              headers={"Set-Cookie": "stel_ssid=abc; Path=/"})

    app = build_application(load_settings(_env_file=None, BOT_TOKEN="1:x",
                                          DATABASE_PATH=str(tmp_path / "bot.sqlite3")))
    assert isinstance(app.bot.request, BotAPIRequest)
    request = BotAPIRequest(httpx_kwargs={"transport": httpx.MockTransport(telegram)})
    await request.initialize()
    try:
        for _ in range(3):
            assert await request.post("https://api.telegram.org/bot1:x/close") is True
    finally:
        await request.shutdown()
    assert [r.headers.get("Cookie") for r in seen] == [None, None, None]
