"""The error handler: the user hears something went wrong, admins hear of bugs (once a minute),
the log has the context but never a message's text or a secret."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from telegram import Update
from telegram.error import BadRequest, Forbidden
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot.deps import BotContext
from bot.handlers import errors
from bot.panel.errors import PanelTimeout
from bot.panel.sandbox import SandboxPanel
from bot.standin.botapi import feed
from tests.conftest import ADMIN, USER, BotHarness, start_harness, stop_harness

PANEL_URL = "https://panel.example/api/v2"
OP_KEY = "operator-key-VERY-SECRET"
FAILURES: dict[str, BaseException] = {}


async def failing(update: Update, context: BotContext) -> None:
    """A handler that fails the way the test says."""
    raise FAILURES["next"]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[BotHarness]:
    """A bot on a configured panel with /boom and a boom button that fail on demand."""
    sandbox = SandboxPanel(keys={OP_KEY: Decimal("100")})
    bot = await start_harness(tmp_path, sandbox=sandbox, PANEL_URL=PANEL_URL, PANEL_KEY=OP_KEY,
                              ALLOWED_USER_IDS=str(USER))
    bot.app.add_handler(CommandHandler("boom", failing), group=-10)
    bot.app.add_handler(CallbackQueryHandler(failing, pattern=r"^boom"), group=-10)
    yield bot
    await stop_harness(bot)


def admin_alerts(bot: BotHarness) -> list[str]:
    """What the admin was told."""
    return bot.texts(ADMIN)


async def test_unexpected_error_tells_user_and_admin_without_secrets(
    harness: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    FAILURES["next"] = RuntimeError(f"bad state with {OP_KEY}\nsecond line")
    await harness.send("/boom my-private-words", raise_errors=False)

    told = harness.last().plain
    assert told.startswith("Something went wrong on my side.")
    assert "check /orders before trying again" in told
    assert OP_KEY not in told

    [alert] = admin_alerts(harness)
    assert "RuntimeError: bad state with ***" in alert
    assert OP_KEY not in alert and "second line" not in alert
    assert "tests.test_errors.failing" in alert

    [record] = [r for r in caplog.records if r.name == "bot.handlers.errors"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    message = record.getMessage()
    assert f"chat {USER}" in message and f"user {USER}" in message
    assert "command /boom" in message and "tests.test_errors.failing" in message
    assert "my-private-words" not in caplog.text


async def test_admins_hear_at_most_once_a_minute(harness: BotHarness) -> None:
    FAILURES["next"] = RuntimeError("first")
    await harness.send("/boom", raise_errors=False)
    FAILURES["next"] = KeyError("second")
    await harness.send("/boom", raise_errors=False)
    await harness.send("/boom", raise_errors=False)
    assert len(admin_alerts(harness)) == 1
    assert len(harness.texts(USER)) == 3  # the user hears every time

    harness.deps.state[errors.LAST_ALERT] -= errors.ALERT_INTERVAL  # a minute later
    FAILURES["next"] = ValueError("third")
    await harness.send("/boom", raise_errors=False)
    alerts = admin_alerts(harness)
    assert len(alerts) == 2
    assert "ValueError: third" in alerts[-1] and "+2 more" in alerts[-1]


async def test_panel_trouble_is_told_to_the_user_not_the_admins(
    harness: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    FAILURES["next"] = PanelTimeout()
    await harness.send("/boom", raise_errors=False)
    told = harness.last().plain
    assert "Something went wrong" in told and "did not answer in time" in told
    assert admin_alerts(harness) == []
    [record] = [r for r in caplog.records if r.name == "bot.handlers.errors"]
    assert record.levelno == logging.WARNING and record.exc_info is None


async def test_a_button_that_fails_is_answered(harness: BotHarness) -> None:
    await harness.send("/start")
    FAILURES["next"] = BadRequest("Can't parse entities")  # our bug: admins hear of it
    update = harness.world.user_presses(USER, harness.last().message_id, "boom:1", force=True)
    await feed(harness.app, update, raise_errors=False)
    answer = harness.world.callback_answers[update["callback_query"]["id"]]
    assert answer.get("text") == errors.SORRY
    assert "Something went wrong" in harness.last().plain
    assert "BadRequest" in admin_alerts(harness)[0]


async def test_a_user_who_blocked_the_bot_is_not_written_to(harness: BotHarness) -> None:
    FAILURES["next"] = Forbidden("Forbidden: bot was blocked by the user")
    await harness.send("/boom", raise_errors=False)
    assert harness.texts(USER) == []
    assert admin_alerts(harness) == []


async def test_errors_in_jobs_go_to_the_log_and_the_admins(
    harness: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    await harness.app.process_error(None, RuntimeError(f"job broke near {OP_KEY}"))
    [alert] = admin_alerts(harness)
    assert "RuntimeError: job broke near ***" in alert
    assert harness.texts(USER) == []
    assert any(r.name == "bot.handlers.errors" and "no update" in r.getMessage()
               for r in caplog.records)
