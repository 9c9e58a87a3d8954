"""Stopping the bot while a tracker cycle waits on the panel is quiet and loses nothing."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.conftest import start_harness, stop_harness


async def test_stop_during_a_cycle_logs_no_error(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    bot = await start_harness(tmp_path, STATUS_POLL_INTERVAL=1)
    try:
        await bot.send("/order 1")
        await bot.send("x.com/a")
        await bot.send("100")
        await bot.press("Skip")
        await bot.press("Confirm")
        assert "placed" in bot.last().plain
        bot.sandbox.latency = 0.5
        with caplog.at_level(logging.INFO):
            await bot.app.start()  # the first cycle starts after 1 s
            await asyncio.sleep(1.2)  # ... and is waiting on the panel: stop now
            await bot.app.stop()
    finally:
        await stop_harness(bot)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
