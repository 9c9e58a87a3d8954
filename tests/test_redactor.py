"""The log redactor learns a user's panel key only once the panel accepted it, forgets it on
/disconnect, stays small, and no user can make the logs hide text of their choosing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from bot.logs import REDACTOR, RedactSecrets
from bot.panel.sandbox import SandboxPanel
from tests.conftest import OTHER, USER, BotHarness, start_harness, stop_harness

pytestmark = pytest.mark.filterwarnings("ignore:Ignoring `conversation_timeout`")

SECRET = "test-secret-key-for-the-redactor"
GOOD_KEY = "accepted-key-0123456789abcdef"
USER_ID = "5123456789"  # what a user might /connect to hide their own id in the logs


def logged(redactor: RedactSecrets, text: str) -> str:
    """A log line as the bot's handler writes it (through the redactor)."""
    record = logging.LogRecord("bot", logging.INFO, __file__, 1, "%s", (text,), None)
    assert redactor.filter(record)
    return record.getMessage()


@pytest.fixture
async def panel_bot(tmp_path: Path) -> AsyncIterator[BotHarness]:
    """A configured panel (the sandbox plays it) with /connect on; GOOD_KEY is a key of it."""
    sandbox = SandboxPanel(keys={"op-key": Decimal("100"), GOOD_KEY: Decimal("5")})
    harness = await start_harness(tmp_path, sandbox=sandbox, PANEL_URL="https://p.example/api/v2",
                                  PANEL_KEY="op-key", SECRET_KEY=SECRET)
    yield harness
    await stop_harness(harness)


@pytest.mark.parametrize("text", [USER_ID, "Unexpected", "refused-key-0123456789abcdef"])
async def test_a_refused_key_never_hides_anything_in_the_logs(panel_bot: BotHarness,
                                                             text: str) -> None:
    await panel_bot.send(f"/connect {text}", user=OTHER)
    assert "Key connected" not in panel_bot.last(OTHER).plain
    line = f"Unexpected error (user {USER_ID}): refused-key-0123456789abcdef"
    assert logged(REDACTOR, line) == line


async def test_an_accepted_key_is_blanked_until_it_is_disconnected(panel_bot: BotHarness) -> None:
    await panel_bot.send(f"/connect {GOOD_KEY}")
    assert "Key connected" in panel_bot.last().plain
    assert logged(REDACTOR, f"polling with {GOOD_KEY}") == "polling with ***"
    await panel_bot.send("/disconnect")
    assert "forgotten your panel API key" in panel_bot.last().plain
    assert logged(REDACTOR, f"polling with {GOOD_KEY}") == f"polling with {GOOD_KEY}"


def test_learned_keys_are_bounded_the_oldest_forgotten_first() -> None:
    redactor = RedactSecrets(["the-bot-token-123"])
    keys = [f"user-panel-key-{i:06d}" for i in range(RedactSecrets.LEARNED_MAX + 500)]
    for key in keys:
        redactor.learn(key)
    redactor.learn(keys[0] + "-again")
    assert redactor.learned_count() == RedactSecrets.LEARNED_MAX
    assert logged(redactor, keys[-1]) == "***"
    assert logged(redactor, keys[0]) == keys[0]  # least recently used: forgotten
    assert logged(redactor, "the-bot-token-123") == "***"  # the bot's own: never dropped


def test_a_key_in_use_again_is_kept() -> None:
    redactor = RedactSecrets()
    first = "user-panel-key-first-0"
    redactor.learn(first)
    for i in range(RedactSecrets.LEARNED_MAX - 1):
        redactor.learn(f"user-panel-key-{i:06d}")
    redactor.learn(first)  # decrypted again (the tracker polls that user's orders)
    redactor.learn("user-panel-key-one-more")
    assert logged(redactor, first) == "***"


def test_short_text_is_never_learned() -> None:
    redactor = RedactSecrets()
    redactor.learn("12345678")  # as long as a user id, shorter than any API key
    assert logged(redactor, "user 12345678") == "user 12345678"
    assert RedactSecrets.LEARNED_MIN >= 12


async def test_a_user_id_connected_as_a_key_does_not_mask_that_id(panel_bot: BotHarness) -> None:
    await panel_bot.send(f"/connect {USER}{USER}{USER}{USER}")
    line = f"User {USER}{USER}{USER}{USER} tried an admin command"
    assert logged(REDACTOR, line) == line
