"""A user's key, once known to the bot, is blanked in logs; a new key means a fresh catalogue."""

from __future__ import annotations

import io
import logging
from decimal import Decimal
from pathlib import Path

from bot.crypto import KeyBox
from bot.logs import REDACTOR
from bot.panel.sandbox import SandboxPanel
from storage import users
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


async def test_connecting_a_key_drops_the_cached_catalogue_of_that_account(
    tmp_path: Path,
) -> None:
    sandbox = SandboxPanel(keys={"demo": Decimal("100"), "user-key-AAAA-1111": Decimal("5")})
    bot = await start_harness(tmp_path, sandbox=sandbox, SECRET_KEY=SECRET)
    try:
        account = users.user_account(USER)
        await users.upsert_user(bot.deps.db, telegram_id=USER, name="Alice")
        await bot.deps.catalog.get(account, "user-key-AAAA-1111")
        assert bot.deps.catalog.cached(account) is not None
        await bot.send("/connect user-key-AAAA-1111")
        assert "Key connected" in bot.last().plain
        assert bot.deps.catalog.cached(account) is None
        fetches = len(bot.panel_requests("services"))
        await bot.send("/services")
        assert len(bot.panel_requests("services")) == fetches + 1  # fetched with the new key
        await bot.send("/disconnect")
        assert bot.deps.catalog.cached(account) is None
    finally:
        await stop_harness(bot)
