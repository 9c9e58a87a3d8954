"""A user's key, once known to the bot, is blanked in logs; a new key means a fresh catalogue."""

from __future__ import annotations

import io
import logging
from decimal import Decimal
from pathlib import Path

from bot.crypto import KeyBox
from bot.logs import REDACTOR
from bot.panel.sandbox import SandboxPanel
from bot.services.accounts import account_for
from tests.conftest import USER, start_harness, stop_harness

SECRET = "test-secret-key-for-the-bot-0123"


def test_a_key_only_ever_decrypted_is_blanked_in_logs() -> None:
    # As after a restart: the key was encrypted by an earlier process, this one only decrypts it
    # (e.g. the tracker polling that user's orders).
    box = KeyBox(SECRET)
    token = box._fernet.encrypt(b"decrypted-only-key-5521")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(REDACTOR)
    log = logging.getLogger("test.key")
    log.addHandler(handler)
    try:
        key = box.decrypt(token)
        log.warning("polling with %s", key)
    finally:
        log.removeHandler(handler)
    assert "decrypted-only-key-5521" not in stream.getvalue()
    assert "***" in stream.getvalue()


async def test_each_key_sees_its_own_catalogue_and_a_replaced_key_drops_its_copy(
    tmp_path: Path,
) -> None:
    keys = {"demo": Decimal("100"), "user-key-AAAA-1111": Decimal("5"),
            "user-key-BBBB-2222": Decimal("5")}
    bot = await start_harness(tmp_path, sandbox=SandboxPanel(keys=keys), SECRET_KEY=SECRET)
    try:
        await bot.send("/connect user-key-AAAA-1111")
        assert "Key connected" in bot.last().plain
        fetches = len(bot.panel_requests("services"))
        await bot.send("/services")
        assert len(bot.panel_requests("services")) == fetches + 1  # fetched with key A
        first = await account_for(bot.deps, USER)
        assert first is not None and bot.deps.catalog.cached(first.catalog_key) is not None
        await bot.send("/connect user-key-BBBB-2222")
        assert "Key connected" in bot.last().plain
        assert bot.deps.catalog.cached(first.catalog_key) is None  # nobody sees A's copy
        await bot.send("/services")
        assert len(bot.panel_requests("services")) == fetches + 2  # fetched with key B
        second = await account_for(bot.deps, USER)
        assert second is not None and second.catalog_key != first.catalog_key
        await bot.send("/disconnect")
        assert bot.deps.catalog.cached(second.catalog_key) is None
    finally:
        await stop_harness(bot)
