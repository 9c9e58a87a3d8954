"""Users' own panel keys: /connect, /disconnect, encrypted at rest, never in logs or the DB."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from bot.app import build_application, start_services, stop_services
from bot.crypto import KeyBox, SecretKeyMismatch
from bot.logs import REDACTOR, RedactSecrets, setup_logging
from bot.panel.sandbox import SandboxPanel
from bot.services.accounts import KEY_LOST, account_for, check_secret_key
from bot.standin.botapi import FakeRequest, FakeTelegram, feed
from storage import meta, users
from storage.db import MIGRATIONS, SCHEMA_VERSION, close_database, connect, migrate, open_database
from storage.outbox import pending_notifications
from tests.conftest import TOKEN, USER, BotHarness, make_settings, start_harness, stop_harness

pytestmark = pytest.mark.filterwarnings("ignore:Ignoring `conversation_timeout`")

PANEL_URL = "https://panel.example/api/v2"
SECRET = "test-secret-key-for-the-bot-0123"
USER_KEY = "user-key-SECRET-123"
GROUP = -100500


def db_path(tmp_path: Path) -> Path:
    """The harness's database file."""
    return tmp_path / "bot.sqlite3"


def database_bytes(tmp_path: Path) -> bytes:
    """Everything SQLite has on disk for the bot: the file, its WAL and shared-memory index."""
    path = db_path(tmp_path)
    return b"".join(Path(f"{path}{suffix}").read_bytes()
                    for suffix in ("", "-wal", "-shm") if Path(f"{path}{suffix}").exists())


async def start_panel_bot(tmp_path: Path, **overrides: object) -> BotHarness:
    """A bot on a configured panel (the sandbox plays it) that knows the operator's key and
    USER_KEY; SECRET_KEY set unless overridden."""
    sandbox = SandboxPanel(keys={"op-key": Decimal("100"), USER_KEY: Decimal("25.50")})
    settings: dict[str, object] = {"PANEL_URL": PANEL_URL, "PANEL_KEY": "op-key",
                                   "SECRET_KEY": SECRET}
    settings.update(overrides)
    return await start_harness(tmp_path, sandbox=sandbox, **settings)


@pytest.fixture
async def panel_bot(tmp_path: Path) -> AsyncIterator[BotHarness]:
    """A bot on a configured panel with SECRET_KEY set."""
    harness = await start_panel_bot(tmp_path)
    yield harness
    await stop_harness(harness)


async def send(harness: BotHarness, text: str, user: int = USER,
               chat_id: int | None = None) -> int:
    """The user sends a message; its message id (to check it was deleted)."""
    update = harness.world.user_sends(user, text, chat_id=chat_id)
    await feed(harness.app, update)
    message_id: int = update["message"]["message_id"]
    return message_id


def deleted(harness: BotHarness, chat_id: int, message_id: int) -> bool:
    """Whether the bot deleted that message."""
    message = harness.world.message(chat_id, message_id)
    return message is not None and message.deleted


# --- /connect ----------------------------------------------------------------------------------


async def test_connect_with_a_good_key_deletes_it_checks_it_and_stores_it_encrypted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    harness = await start_panel_bot(tmp_path)
    try:
        message_id = await send(harness, f"/connect {USER_KEY}")
        assert deleted(harness, USER, message_id)
        assert {"chat_id": USER, "message_id": message_id}.items() <= \
            harness.world.calls_to("deleteMessage")[-1].items()
        reply = harness.last().plain
        assert "Key connected" in reply and "25.5" in reply
        # Checked with a balance request made with that key, and nothing else.
        assert [r["key"] for r in harness.sandbox.requests] == [USER_KEY]

        stored = await users.get_user(harness.deps.db, USER)
        assert stored is not None and stored.panel_key is not None
        assert USER_KEY.encode() not in stored.panel_key
        assert KeyBox(SECRET).decrypt(stored.panel_key) == USER_KEY
        assert USER_KEY not in repr(stored)

        # From now on it serves this user, who had no access before.
        account = await account_for(harness.deps, USER)
        assert account is not None and account.own and account.key == USER_KEY
        assert account.id == f"user:{USER}" and USER_KEY not in repr(account)
        await harness.send("/balance")
        assert "25.5" in harness.last().plain
        assert harness.sandbox.requests[-1]["key"] == USER_KEY

        assert USER_KEY.encode() not in database_bytes(tmp_path)
        assert not any(USER_KEY in text for text in harness.texts())
    finally:
        await stop_harness(harness)
    assert USER_KEY.encode() not in database_bytes(tmp_path)
    assert caplog.records, "the flow logged nothing at DEBUG: the check below would be empty"
    assert USER_KEY not in caplog.text
    assert all(USER_KEY not in str(r.args) for r in caplog.records)


async def test_connect_then_the_key_in_the_next_message(panel_bot: BotHarness) -> None:
    await panel_bot.send("/connect")
    assert "Send me your panel API key" in panel_bot.last().plain
    message_id = await send(panel_bot, USER_KEY)
    assert deleted(panel_bot, USER, message_id)
    assert "Key connected" in panel_bot.last().plain
    # The text went to /connect only: the catalogue search never saw (nor echoed) it.
    assert [r["action"] for r in panel_bot.sandbox.requests] == ["balance"]
    assert not any(USER_KEY in text for text in panel_bot.texts())
    account = await account_for(panel_bot.deps, USER)
    assert account is not None and account.own
    # The wait is over: the next text is not taken for a key.
    later = await send(panel_bot, "instagram followers")
    assert not deleted(panel_bot, USER, later)


async def test_a_refused_key_is_not_stored_and_may_be_sent_again(
    panel_bot: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "not-a-real-key-987654"
    message_id = await send(panel_bot, f"/connect {bad}")
    assert deleted(panel_bot, USER, message_id)
    assert "refused by the panel" in panel_bot.last().plain
    stored = await users.get_user(panel_bot.deps.db, USER)
    assert stored is None or stored.panel_key is None
    assert await account_for(panel_bot.deps, USER) is None

    await panel_bot.send("/connect")
    second = await send(panel_bot, bad)
    assert deleted(panel_bot, USER, second)
    assert "refused by the panel" in panel_bot.last().plain
    assert "Send the key again" in panel_bot.last().plain
    third = await send(panel_bot, USER_KEY)  # still waiting: the good one connects
    assert deleted(panel_bot, USER, third)
    assert "Key connected" in panel_bot.last().plain
    assert bad not in caplog.text and USER_KEY not in caplog.text


async def test_something_that_is_not_a_key_is_not_sent_to_the_panel(panel_bot: BotHarness) -> None:
    message_id = await send(panel_bot, "/connect my key is abc123456")
    assert deleted(panel_bot, USER, message_id)
    assert "does not look like a panel API key" in panel_bot.last().plain
    assert panel_bot.sandbox.requests == []


async def test_panel_unreachable_while_checking_stores_nothing(panel_bot: BotHarness) -> None:
    panel_bot.sandbox.down = True
    message_id = await send(panel_bot, f"/connect {USER_KEY}")
    assert deleted(panel_bot, USER, message_id)
    assert "Could not check the key now" in panel_bot.last().plain
    assert await account_for(panel_bot.deps, USER) is None


async def test_connect_is_turned_off_without_secret_key(tmp_path: Path) -> None:
    harness = await start_panel_bot(tmp_path, SECRET_KEY="")
    try:
        message_id = await send(harness, f"/connect {USER_KEY}")
        assert deleted(harness, USER, message_id)  # the key leaves the chat all the same
        assert harness.last().plain == "Connecting your own key is turned off on this bot."
        assert harness.sandbox.requests == []
        assert USER_KEY.encode() not in database_bytes(tmp_path)
    finally:
        await stop_harness(harness)


async def test_connect_is_refused_in_groups(panel_bot: BotHarness) -> None:
    message_id = await send(panel_bot, f"/connect {USER_KEY}", chat_id=GROUP)
    # The bot has no right to delete others' messages in this group: it says so.
    assert not deleted(panel_bot, GROUP, message_id)
    text = panel_bot.world.bot_texts(GROUP)[-1]
    assert "private chat" in text and "Delete the message with your key yourself" in text
    assert panel_bot.sandbox.requests == []
    assert await account_for(panel_bot.deps, USER) is None


async def test_another_command_ends_the_wait_for_a_key(panel_bot: BotHarness) -> None:
    await panel_bot.send("/connect")
    await panel_bot.send("/orders")
    assert "stopped waiting for your key" in panel_bot.last().plain
    message_id = await send(panel_bot, "some text")
    assert not deleted(panel_bot, USER, message_id)
    await panel_bot.send("/connect")
    await panel_bot.send("/cancel")
    assert "no key was connected" in panel_bot.last().plain


async def test_disconnect_forgets_the_key(panel_bot: BotHarness) -> None:
    await send(panel_bot, f"/connect {USER_KEY}")
    await panel_bot.send("/disconnect")
    assert "forgotten your panel API key" in panel_bot.last().plain
    assert "no access" in panel_bot.last().plain
    stored = await users.get_user(panel_bot.deps.db, USER)
    assert stored is not None and stored.panel_key is None
    assert await account_for(panel_bot.deps, USER) is None
    await panel_bot.send("/disconnect")
    assert panel_bot.last().plain == "You have no panel API key connected."


async def test_demo_mode_connects_sandbox_keys_only(tmp_path: Path) -> None:
    harness = await start_harness(tmp_path, SECRET_KEY=SECRET)
    try:
        await send(harness, "/connect real-panel-key-123456")
        assert "refused" in harness.last().plain and "Demo mode" in harness.last().plain
        harness.sandbox.add_key(USER_KEY, Decimal("7"))
        await send(harness, f"/connect {USER_KEY}")
        assert "Key connected" in harness.last().plain
        account = await account_for(harness.deps, USER)
        assert account is not None and account.own and account.demo
    finally:
        await stop_harness(harness)


async def test_a_key_that_cannot_be_decrypted_is_dropped_and_the_user_told(
    panel_bot: BotHarness,
) -> None:
    db = panel_bot.deps.db
    await users.upsert_user(db, telegram_id=USER, name="U")
    await users.set_panel_key(db, USER, KeyBox("another secret").encrypt(USER_KEY))
    assert await account_for(panel_bot.deps, USER) is None  # no crash: as if none
    stored = await users.get_user(db, USER)
    assert stored is not None and stored.panel_key is None
    assert [n.text for n in await pending_notifications(db, now=time.time() + 1)] == [KEY_LOST]
    await panel_bot.send("/start")
    assert "no access" in panel_bot.last().plain


# --- SECRET_KEY at start-up ------------------------------------------------------------------


async def make_old_database(path: Path, secret: str) -> None:
    """A database where USER connected a key under `secret` (canary included)."""
    db = await open_database(path)
    try:
        await users.upsert_user(db, telegram_id=USER, name="U")
        await users.set_panel_key(db, USER, KeyBox(secret).encrypt(USER_KEY))
        await check_secret_key(db, KeyBox(secret))
        assert await meta.get_meta(db, meta.SECRET_KEY_CANARY) is not None
    finally:
        await close_database(db)


def test_wrong_secret_key_stops_python_m_bot_with_one_clear_line(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "old.sqlite3"
    asyncio.run(make_old_database(path, "the old secret"))
    env = {"PATH": os.environ.get("PATH", ""), "BOT_TOKEN": TOKEN, "DATABASE_PATH": str(path),
           "SECRET_KEY": "a brand new secret", "TELEGRAM_BASE_URL": "http://127.0.0.1:9/bot"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "bot"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "SECRET_KEY does not match the one the stored panel keys were encrypted with" in lines[0]
    assert "Restore the old SECRET_KEY" in lines[0] and "/connect again" in lines[0]
    assert "a brand new secret" not in result.stderr and "the old secret" not in result.stderr
    assert time.monotonic() - started < 30


async def test_start_services_refuses_a_wrong_secret_key(tmp_path: Path) -> None:
    await make_old_database(db_path(tmp_path), "the old secret")
    settings = make_settings(tmp_path, PANEL_URL=PANEL_URL, PANEL_KEY="op-key",
                             SECRET_KEY=SECRET)
    world = FakeTelegram(strict_chats=False)
    app = build_application(settings, request=FakeRequest(world),
                            panel_transport=SandboxPanel().transport())
    await app.initialize()
    try:
        with pytest.raises(SecretKeyMismatch, match="cannot be decrypted"):
            await start_services(app)
    finally:
        await stop_services(app)
        await app.shutdown()
    assert world.calls_to("setMyCommands") == []  # it stopped before anything else


async def test_right_secret_key_starts_and_serves_the_stored_key(tmp_path: Path) -> None:
    await make_old_database(db_path(tmp_path), SECRET)
    harness = await start_panel_bot(tmp_path)
    try:
        account = await account_for(harness.deps, USER)
        assert account is not None and account.key == USER_KEY
    finally:
        await stop_harness(harness)


async def test_changed_secret_key_without_stored_keys_just_starts(tmp_path: Path) -> None:
    await make_old_database(db_path(tmp_path), "the old secret")
    db = await open_database(db_path(tmp_path))
    await users.set_panel_key(db, USER, None)
    await close_database(db)
    harness = await start_panel_bot(tmp_path)  # nothing to lose: a new canary is written
    try:
        canary = await meta.get_meta(harness.deps.db, meta.SECRET_KEY_CANARY)
        assert canary is not None
        KeyBox(SECRET).check_canary(canary)
    finally:
        await stop_harness(harness)


async def test_keys_stored_before_the_canary_are_checked_too(tmp_path: Path) -> None:
    db = await open_database(db_path(tmp_path))
    await users.upsert_user(db, telegram_id=USER, name="U")
    await users.set_panel_key(db, USER, KeyBox("the old secret").encrypt(USER_KEY))
    with pytest.raises(SecretKeyMismatch):
        await check_secret_key(db, KeyBox(SECRET))
    assert await meta.get_meta(db, meta.SECRET_KEY_CANARY) is None
    await check_secret_key(db, KeyBox("the old secret"))
    assert await meta.get_meta(db, meta.SECRET_KEY_CANARY) is not None
    await close_database(db)


# --- storage: the meta table (migration v4) --------------------------------------------------


async def test_upgrade_from_v3_keeps_stored_keys_and_adds_meta(tmp_path: Path) -> None:
    path = tmp_path / "v3.sqlite3"
    old = await connect(path)
    assert await migrate(old, MIGRATIONS[:3]) == 3
    token = KeyBox(SECRET).encrypt(USER_KEY)
    await old.execute("INSERT INTO users (telegram_id, name, panel_key, created_at, updated_at)"
                      " VALUES (?, 'Ann', ?, 1.0, 1.0)", (USER, token))
    await close_database(old)

    db = await open_database(path)
    try:
        assert SCHEMA_VERSION >= 4
        assert await users.stored_panel_keys(db) == {USER: token}
        assert await meta.get_meta(db, "anything") is None
        await meta.set_meta(db, "x", b"\x00\x01")
        await meta.set_meta(db, "x", b"\x02")
        assert await meta.get_meta(db, "x") == b"\x02"
        assert await meta.delete_meta(db, "x") and not await meta.delete_meta(db, "x")
    finally:
        await close_database(db)


# --- logs --------------------------------------------------------------------------------------


def test_ptb_never_logs_updates_at_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("telegram").level
    try:
        setup_logging("DEBUG")
        # PTB logs each incoming update (a key sent with /connect included) at DEBUG.
        assert logging.getLogger("telegram.ext.Application").getEffectiveLevel() == logging.INFO
        assert logging.getLogger("bot").getEffectiveLevel() == logging.DEBUG
        setup_logging("WARNING")
        assert logging.getLogger("telegram").getEffectiveLevel() == logging.WARNING
    finally:
        root.handlers[:], level, telegram_level = saved
        root.setLevel(level)
        logging.getLogger("telegram").setLevel(telegram_level)


def test_redactor_blanks_secrets_in_messages_and_tracebacks() -> None:
    redactor = RedactSecrets(["abcd-secret", "abc"])
    assert redactor.clean("key=abcd-secret!") == "key=***!"
    try:
        raise ValueError("bad key abcd-secret")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "with %s", ("abcd-secret",),
                                   sys.exc_info())
    assert redactor.filter(record)
    formatted = logging.Formatter().format(record)
    assert "abcd-secret" not in formatted and "***" in formatted
    assert "abc" in redactor.clean("abc")  # too short to be a secret: left alone


async def test_secret_key_is_known_to_the_redactor(panel_bot: BotHarness) -> None:
    assert REDACTOR.clean(f"x {SECRET} y") == "x *** y"


async def test_connect_in_the_middle_of_an_order_takes_the_key_not_the_wizard(
    tmp_path: Path,
) -> None:
    harness = await start_harness(tmp_path, SECRET_KEY=SECRET)  # demo: anyone may order
    try:
        harness.sandbox.add_key(USER_KEY, Decimal("9"))
        await harness.send("/order 1")
        question = harness.last().plain
        await harness.send("/connect")
        assert "Send me your panel API key" in harness.last().plain
        message_id = await send(harness, USER_KEY)
        assert deleted(harness, USER, message_id)
        assert "Key connected" in harness.last().plain
        assert question != harness.last().plain
        # The wizard never saw the key: not in its answers, not in anything persisted.
        assert USER_KEY not in str(harness.app.user_data.get(USER, {}))
        assert USER_KEY.encode() not in database_bytes(tmp_path)
        # The wizard is still there; its next answer goes to it again.
        await harness.send("https://instagram.com/someone")
        assert "Step 2" in harness.last().plain
        assert not deleted(harness, USER, harness.world.chat(USER)[-2].message_id)
    finally:
        await stop_harness(harness)
