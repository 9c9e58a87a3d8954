"""Issue 18: the mechanisms that make the bot cheap per update and flat as users and orders grow.

The figures themselves are measured in benchmarks/ (too slow for the test run); these tests show
each mechanism doing what a user relies on: writes that are grouped and still durable, one writer
per file, catalogues shared when identical and kept apart when not.
"""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.panel.sandbox import DEMO_KEY, ERR_DUPLICATE, SandboxPanel
from storage.db import fetch_all, transaction
from storage.persistence import SqlitePersistence
from tests.conftest import USER, BotHarness


def _begins(statements: list[str]) -> int:
    """How many transactions a list of traced statements opened."""
    return sum(1 for s in statements if s.strip().upper().startswith("BEGIN"))


# --- the persistence: group commit -------------------------------------------------------------


async def test_one_updates_conversation_and_user_data_are_committed_together(
        tmp_path: Path) -> None:
    persistence = SqlitePersistence(tmp_path / "p.sqlite3")
    try:
        db = await persistence._conn()
        seen: list[str] = []
        await db.set_trace_callback(seen.append)
        # What Application.update_persistence does after an update: the calls run concurrently.
        await asyncio.gather(
            persistence.update_conversation("wizard", (USER, USER), 1),
            persistence.update_user_data(USER, {"order": {"field": "link"}}),
            persistence.update_chat_data(USER, {"page": 2}),
        )
        await db.set_trace_callback(None)
        assert _begins(seen) == 1, seen  # one transaction, not one per row
        assert sum(1 for s in seen if s.startswith("INSERT")) == 3
    finally:
        await persistence.flush()
    fresh = SqlitePersistence(tmp_path / "p.sqlite3")
    try:  # all three are on disk, as a restarted bot reads them
        assert await fresh.get_conversations("wizard") == {(USER, USER): 1}
        assert await fresh.get_user_data() == {USER: {"order": {"field": "link"}}}
        assert await fresh.get_chat_data() == {USER: {"page": 2}}
    finally:
        await fresh.flush()


async def test_writes_of_many_chats_at_once_share_one_commit(tmp_path: Path) -> None:
    persistence = SqlitePersistence(tmp_path / "p.sqlite3")
    try:
        db = await persistence._conn()
        seen: list[str] = []
        await db.set_trace_callback(seen.append)
        await asyncio.gather(*(persistence.update_user_data(user, {"n": user})
                               for user in range(1, 51)))
        await db.set_trace_callback(None)
        assert _begins(seen) == 1, seen
        rows = await fetch_all(db, "SELECT user_id FROM ptb_user_data")
        assert sorted(int(r[0]) for r in rows) == list(range(1, 51))
    finally:
        await persistence.flush()


async def test_a_single_changed_row_is_one_statement(tmp_path: Path) -> None:
    persistence = SqlitePersistence(tmp_path / "p.sqlite3")
    try:
        db = await persistence._conn()
        await persistence.update_user_data(USER, {"step": 1})
        seen: list[str] = []
        await db.set_trace_callback(seen.append)
        await persistence.update_user_data(USER, {"step": 2})
        await db.set_trace_callback(None)
        assert len(seen) == 1 and seen[0].startswith("INSERT INTO ptb_user_data"), seen
    finally:
        await persistence.flush()
    fresh = SqlitePersistence(tmp_path / "p.sqlite3")
    try:
        assert await fresh.get_user_data() == {USER: {"step": 2}}
    finally:
        await fresh.flush()


async def test_a_failed_write_is_written_again_the_next_time(tmp_path: Path) -> None:
    persistence = SqlitePersistence(tmp_path / "p.sqlite3")
    try:
        db = await persistence._conn()
        await db.execute("CREATE TRIGGER refuse BEFORE INSERT ON ptb_user_data"
                         " BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        with pytest.raises(sqlite3.IntegrityError, match="disk full"):
            await persistence.update_user_data(USER, {"step": "quantity"})
        await db.execute("DROP TRIGGER refuse")
        # PTB hands over the same data after the next update: it must not count as written.
        await persistence.update_user_data(USER, {"step": "quantity"})
    finally:
        await persistence.flush()
    fresh = SqlitePersistence(tmp_path / "p.sqlite3")
    try:
        assert await fresh.get_user_data() == {USER: {"step": "quantity"}}
    finally:
        await fresh.flush()


async def test_flush_waits_for_the_writes_under_way(tmp_path: Path) -> None:
    persistence = SqlitePersistence(tmp_path / "p.sqlite3")
    await persistence._conn()
    writes = [asyncio.ensure_future(persistence.update_user_data(u, {"u": u})) for u in (1, 2)]
    await asyncio.sleep(0)  # the writes are queued, not yet committed
    await persistence.flush()
    assert all(w.done() and w.exception() is None for w in writes)
    fresh = SqlitePersistence(tmp_path / "p.sqlite3")
    try:
        assert await fresh.get_user_data() == {1: {"u": 1}, 2: {"u": 2}}
    finally:
        await fresh.flush()


# --- one writer per file -------------------------------------------------------------------------


async def test_the_persistence_waits_its_turn_instead_of_failing_with_database_locked(
        bot: BotHarness) -> None:
    persistence = bot.app.persistence
    assert isinstance(persistence, SqlitePersistence)
    own = await persistence._conn()
    # SQLite's busy handler would give up after 50 ms; the bot's write below takes 300 ms.
    await own.execute("PRAGMA busy_timeout = 50")
    released = asyncio.Event()
    finished_at: list[float] = []
    loop = asyncio.get_running_loop()

    async def long_write() -> None:
        async with transaction(bot.deps.db):
            await bot.deps.db.execute("UPDATE users SET name = name")
            await asyncio.sleep(0.3)
        released.set()

    async def persist() -> None:
        await persistence.update_user_data(USER, {"step": "link"})
        finished_at.append(loop.time())

    writer = asyncio.create_task(long_write())
    await asyncio.sleep(0.05)  # the bot's transaction holds SQLite's write lock now
    await asyncio.gather(writer, persist())  # no "database is locked"
    assert released.is_set() and finished_at
    rows = await fetch_all(bot.deps.db, "SELECT data FROM ptb_user_data WHERE user_id = ?",
                           (USER,))
    assert [r[0] for r in rows] == ['{"step":"link"}']


# --- the sandbox panel: its clock and its duplicate check do not walk every order ---------------


def test_the_sandbox_refuses_a_second_active_order_for_a_link_until_the_first_ends() -> None:
    panel = SandboxPanel(keys={DEMO_KEY: Decimal(1000)}, speed=1)
    other = "other-key"
    panel.add_key(other, Decimal(1000))

    def add(key: str, link: str) -> Any:
        return panel.answer({"key": key, "action": "add", "service": "1", "link": link,
                             "quantity": "100"})

    first = add(DEMO_KEY, "https://instagram.com/p/a")["order"]
    assert add(DEMO_KEY, "https://instagram.com/p/a") == {"error": ERR_DUPLICATE}
    assert "order" in add(other, "https://instagram.com/p/a")  # another key's orders are apart
    assert "order" in add(DEMO_KEY, "https://instagram.com/p/b")
    panel.set_status(first, "Completed")
    again = add(DEMO_KEY, "https://instagram.com/p/a")["order"]  # the first one has ended
    panel.set_status(again, "Canceled")
    panel.set_status(first, "In progress")  # forced back to running: active again
    assert add(DEMO_KEY, "https://instagram.com/p/a") == {"error": ERR_DUPLICATE}


def test_the_sandbox_moves_only_orders_still_running_and_restores_them(tmp_path: Path) -> None:
    clock = [0.0]
    state = tmp_path / "sandbox.json"
    panel = SandboxPanel(keys={DEMO_KEY: Decimal(1000)}, clock=lambda: clock[0], speed=1,
                         state_path=state)
    ids = [panel.answer({"key": DEMO_KEY, "action": "add", "service": "1",
                         "link": f"https://instagram.com/p/{n}", "quantity": "100"})["order"]
           for n in range(3)]
    panel.set_status(ids[0], "In progress")  # held by hand: the clock leaves it alone
    clock[0] = 500.0  # far past every natural ending
    assert [panel.order(i)["status"] for i in ids] == ["In progress", "Completed", "Completed"]
    # A restart resumes from the last save (the clock goes on from there): the two orders that
    # were running at that save run again, the held one stays held.
    restored = SandboxPanel(keys={DEMO_KEY: Decimal(1000)}, clock=lambda: clock[0], speed=1,
                            state_path=state)
    late = restored.answer({"key": DEMO_KEY, "action": "add", "service": "1",
                            "link": "https://instagram.com/p/late", "quantity": "100"})["order"]
    clock[0] = 1000.0
    assert [restored.order(i)["status"] for i in [*ids, late]] == [
        "In progress", "Completed", "Completed", "Completed"]
