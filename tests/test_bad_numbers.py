"""Digits that are not ASCII ("²", "①", "٣") and any other text, typed after every command, as a
search, or forged into a button's data: the bot always answers, and never with an internal error.

`str.isdigit()` is True for "²" while `int("²")` raises, and `int("٣")` is 3: the bot reads only
ASCII digits as numbers, so such text gets the same one-line reason as any other bad number.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram.ext import AIORateLimiter

from bot.callbacks import int_arg
from bot.handlers.errors import SORRY
from bot.handlers.orders import parse_ids
from bot.handlers.start import COMMANDS
from bot.money import parse_whole
from bot.standin.botapi import feed
from tests.conftest import ADMIN, USER, BotHarness, start_harness, stop_harness

pytestmark = pytest.mark.filterwarnings("ignore:Ignoring `conversation_timeout`")

NOT_ASCII_DIGITS = ["²", "①", "٣", "١٢٣", "۴۵", "१२", "𝟙𝟚", "¹⁰", "Ⅻ", "²³", "#²", "1²", "٣,٤",
                    "12٣", "0²"]
COMMAND_NAMES = [name for name, _ in COMMANDS] + ["stats", "allow", "deny"]
# Callback data a forged client may send, `{}` standing for the text tried.
BUTTON_DATA = ["cat:{}", "cs:{}:0", "cs:0:{}", "sr:{}", "svc:{}", "svc:1:cs:{}:{}", "svc:1:sr:{}",
               "new:{}", "wz:choice:{}", "wz:confirm:{}", "ol:{}", "oc:{}", "oc:{}:r", "oc:1:{}",
               "nt:{}", "menu", "bal"]


class ErrorLog(logging.Handler):
    """Collects log records at ERROR or above."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def fit_data(text: str) -> str:
    """Callback data as Telegram carries it: 1 to 64 bytes."""
    data = text.encode()[:64].decode(errors="ignore")
    return data or "x"


async def check_answered(bot: BotHarness, user: int, action: str, update: dict[str, object],
                         errors: ErrorLog) -> None:
    """Feeds one update and checks the bot answered it, and not with an internal error."""
    world = bot.world
    before = world.mark()
    await feed(bot.app, update)  # re-raises whatever a handler raised
    assert not errors.records, (action, [r.getMessage() for r in errors.records])
    query = update.get("callback_query")
    if isinstance(query, dict):
        answered = str(query["id"]) in world.callback_answers
    else:
        answered = False
    changed = [m for m in world.bot_messages(user) if m.seq > before]
    assert answered or changed, f"{action!r}: no answer"
    for message in changed:
        assert SORRY not in message.plain, (action, message.plain)
    if bot.app.user_data.get(user, {}).get("order"):  # an order form opened: leave it
        await feed(bot.app, world.user_sends(user, "/cancel"))


async def _straight_through(self: AIORateLimiter, callback: Callable[..., Any], args: Any,
                            kwargs: dict[str, Any], endpoint: str, data: dict[str, Any],
                            rate_limit_args: int | None) -> Any:
    """AIORateLimiter.process_request without the limiting: hundreds of replies in a row would
    otherwise be held to Telegram's 30 a second."""
    return await callback(*args, **kwargs)


async def try_everything(texts: list[str]) -> None:
    """Every command with each text as its arguments, each text as a search, and each text in
    every kind of button data, by an admin and by a user (demo mode, /connect on)."""
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    with (tempfile.TemporaryDirectory() as tmp,
          mock.patch.object(AIORateLimiter, "process_request", _straight_through)):
        bot = await start_harness(Path(tmp), SECRET_KEY="a-secret-key-for-the-digits-test",
                                  RATE_LIMIT_PER_MINUTE="100000")
        try:
            world = bot.world
            await bot.send("/start", user=ADMIN)
            await bot.send("/start", user=USER)
            for index, text in enumerate(texts):
                user = (ADMIN, USER)[index % 2]
                for name in COMMAND_NAMES:
                    action = f"/{name} {text}"
                    await check_answered(bot, user, action, world.user_sends(user, action),
                                         errors)
                if text.strip() and not text.lstrip().startswith("/"):
                    await check_answered(bot, user, text, world.user_sends(user, text), errors)
                for pattern in BUTTON_DATA:
                    data = fit_data(pattern.format(text, text))
                    last = world.last_bot_message(user)
                    assert last is not None
                    update = world.user_presses(user, last.message_id, data, force=True)
                    await check_answered(bot, user, data, update, errors)
        finally:
            await stop_harness(bot)
            logging.getLogger().removeHandler(errors)


def test_digits_that_are_not_ascii_get_a_reason_everywhere() -> None:
    asyncio.run(try_everything(NOT_ASCII_DIGITS))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(NOT_ASCII_DIGITS), st.text(min_size=1, max_size=30)),
                min_size=1, max_size=3))
def test_any_text_after_any_command_gets_an_answer_never_an_internal_error(
        texts: list[str]) -> None:
    asyncio.run(try_everything(texts))


# --- the readers themselves ---------------------------------------------------------------------

@pytest.mark.parametrize("text", NOT_ASCII_DIGITS)
def test_readers_refuse_digits_that_are_not_ascii(text: str) -> None:
    assert parse_whole(text) is None
    assert int_arg(["x", text], 1) is None
    ids, bad = parse_ids(text)
    assert ids == [] and bad


def test_readers_take_ascii_digits() -> None:
    assert parse_whole("0042") == 42
    assert parse_whole("1" * 19) is None  # more digits than any id has
    assert int_arg(["oc", "17", "r"], 1) == 17
    assert parse_ids("#5, 6 ٣") == ([5, 6], ["٣"])
