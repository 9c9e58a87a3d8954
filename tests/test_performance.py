"""Issue 18: the mechanisms that make the bot cheap per update and flat as users and orders grow.

The figures themselves are measured in benchmarks/ (too slow for the test run); these tests show
each mechanism doing what a user relies on: writes that are grouped and still durable, one writer
per file, catalogues shared when identical and kept apart when not.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from telegram.ext import AIORateLimiter

from bot.catalog import Catalog, ServiceIndex
from bot.panel.client import PanelClient
from bot.panel.models import Service
from bot.panel.sandbox import DEMO_KEY, ERR_DUPLICATE, SandboxPanel
from bot.services.accounts import Account
from bot.standin.botapi import feed
from storage import catalog as catalog_store
from storage import orders, users
from storage.db import (
    add_reader,
    add_writer,
    close_database,
    execute_write,
    fetch_all,
    open_database,
    set_trace_callback,
    transaction,
)
from storage.persistence import SqlitePersistence
from storage.users import OPERATOR_ACCOUNT
from tests.conftest import USER, BotHarness, start_harness, stop_harness


def _begins(statements: list[str]) -> int:
    """How many transactions a list of traced statements opened."""
    return sum(1 for s in statements if s.strip().upper().startswith("BEGIN"))


def _thread_visits(db: Any) -> list[object]:
    """The functions queued to the aiosqlite connection's thread from now on (each a visit)."""
    trips: list[object] = []
    queue_one = db._execute

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(fn)
        return await queue_one(fn, *args, **kwargs)

    db._execute = counted
    return trips


# --- the persistence: group commit -------------------------------------------------------------


async def test_one_updates_conversation_and_user_data_are_committed_together(
        tmp_path: Path) -> None:
    persistence = SqlitePersistence(tmp_path / "p.sqlite3")
    try:
        db = await persistence._conn()
        seen: list[str] = []
        await set_trace_callback(db, seen.append)
        # What Application.update_persistence does after an update: the calls run concurrently.
        await asyncio.gather(
            persistence.update_conversation("wizard", (USER, USER), 1),
            persistence.update_user_data(USER, {"order": {"field": "link"}}),
            persistence.update_chat_data(USER, {"page": 2}),
        )
        await set_trace_callback(db, None)
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
        await set_trace_callback(db, seen.append)
        await asyncio.gather(*(persistence.update_user_data(user, {"n": user})
                               for user in range(1, 51)))
        await set_trace_callback(db, None)
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
        await set_trace_callback(db, seen.append)
        await persistence.update_user_data(USER, {"step": 2})
        await set_trace_callback(db, None)
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


async def test_an_updates_rows_are_committed_on_the_loop_and_land_all_or_nothing(
        tmp_path: Path) -> None:
    persistence = SqlitePersistence(tmp_path / "p.sqlite3")
    try:
        db = await persistence._conn()
        trips = _thread_visits(db)
        await asyncio.gather(
            persistence.update_conversation("wizard", (USER, USER), 1),
            persistence.update_user_data(USER, {"order": {"field": "link"}}),
        )
        # BEGIN, both rows, COMMIT, run on the loop's thread: no visit to aiosqlite's thread
        # and back (storage.db.add_writer).
        assert trips == [], trips
        # A row that fails takes the rest of its update with it: nothing half-written.
        await db.execute("CREATE TRIGGER refuse BEFORE INSERT ON ptb_user_data"
                         " BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        with pytest.raises(sqlite3.IntegrityError, match="disk full"):
            await asyncio.gather(
                persistence.update_conversation("wizard", (USER, USER), 2),
                persistence.update_user_data(USER, {"order": {"field": "quantity"}}),
            )
        assert not db.in_transaction
    finally:
        await persistence.flush()
    fresh = SqlitePersistence(tmp_path / "p.sqlite3")
    try:  # the first update, whole; nothing of the second
        assert await fresh.get_conversations("wizard") == {(USER, USER): 1}
        assert await fresh.get_user_data() == {USER: {"order": {"field": "link"}}}
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


# --- reads on a read-only second connection ----------------------------------------------------


@pytest.mark.parametrize("with_writer", [False, True])
async def test_reads_outside_a_transaction_see_every_committed_write_and_never_wait(
        tmp_path: Path, with_writer: bool) -> None:
    db = await open_database(tmp_path / "bot.sqlite3")
    await add_reader(db, tmp_path / "bot.sqlite3")
    if with_writer:  # as at start-up: the SELECTs then run on the loop-thread writer
        await add_writer(db, tmp_path / "bot.sqlite3")
    try:
        # Read after write by the same task, through every way of writing.
        await users.upsert_user(db, telegram_id=USER, name="Ann")
        assert (await users.get_user(db, USER)).name == "Ann"  # type: ignore[union-attr]
        await execute_write(db, "UPDATE users SET name = 'Bob' WHERE telegram_id = ?", (USER,))
        assert (await users.get_user(db, USER)).name == "Bob"  # type: ignore[union-attr]
        async with transaction(db):
            await db.execute("UPDATE users SET name = 'Cid' WHERE telegram_id = ?", (USER,))
            # Inside the transaction a read joins it and sees its uncommitted write.
            assert (await users.get_user(db, USER)).name == "Cid"  # type: ignore[union-attr]
        assert (await users.get_user(db, USER)).name == "Cid"  # type: ignore[union-attr]

        # Another task's read neither waits for an open transaction nor sees inside it.
        inside, release = asyncio.Event(), asyncio.Event()

        async def slow_write() -> None:
            async with transaction(db):
                await db.execute("UPDATE users SET name = 'Dan' WHERE telegram_id = ?", (USER,))
                inside.set()
                await release.wait()

        writer = asyncio.create_task(slow_write())
        await inside.wait()
        seen = await asyncio.wait_for(users.get_user(db, USER), 1)
        assert seen is not None and seen.name == "Cid"
        release.set()
        await writer
        assert (await users.get_user(db, USER)).name == "Dan"  # type: ignore[union-attr]
        # The reader only reads: fetch_all cannot write through it.
        with pytest.raises(sqlite3.OperationalError):
            await fetch_all(db, "DELETE FROM users RETURNING telegram_id")
        assert (await users.get_user(db, USER)) is not None
    finally:
        await close_database(db)


# --- the user row: written when it changes, not on every command --------------------------------


async def test_a_returning_user_is_written_only_when_something_changed(tmp_path: Path) -> None:
    harness = await start_harness(tmp_path)
    try:
        db = harness.deps.db
        await harness.send("/start")
        seen: list[str] = []
        await set_trace_callback(db, seen.append)
        await harness.send("/start")  # the same name, language, not blocked: nothing to write
        await set_trace_callback(db, None)
        assert not [s for s in seen if "INTO users" in s or "UPDATE users" in s], seen
        # A new name is written (and the 'blocked the bot' mark cleared) at once.
        await users.set_blocked(db, USER, True)
        await feed(harness.app, harness.world.user_sends(USER, "/start", first_name="Renamed"))
        known = await users.get_user(db, USER)
        assert known is not None and known.name == "Renamed" and not known.blocked
    finally:
        await stop_harness(harness)
    again = await start_harness(tmp_path)  # a restart finds it on disk
    try:
        known = await users.get_user(again.deps.db, USER)
        assert known is not None and known.name == "Renamed" and not known.blocked
    finally:
        await stop_harness(again)


async def test_every_update_reads_its_user_once_narrowly_and_handlers_reuse_it(
        tmp_path: Path) -> None:
    harness = await start_harness(tmp_path)
    try:
        db = harness.deps.db
        await harness.send("/start")
        seen: list[str] = []
        await set_trace_callback(db, seen.append)  # the reader's statements too
        await harness.send("/notify")  # remembers its user, and reads the mode shown
        await set_trace_callback(db, None)
        # The check that runs on every update reads the three columns it needs, not the whole
        # row (panel key, dates...), once: /notify's own "remember the user" uses that read.
        # Nothing is written for a known user whose name and language are unchanged; the only
        # whole-row read is /notify's own (the mode shown).
        narrow = f"SELECT name, language, blocked FROM users WHERE telegram_id = {USER}"
        assert seen.count(narrow) == 1, seen
        assert len([s for s in seen if "FROM users" in s]) == 2, seen
        assert len([s for s in seen if "FROM users" in s and "panel_key" in s]) == 1, seen
        assert not [s for s in seen if "INTO users" in s or "UPDATE users" in s], seen
        assert "Notifications" in harness.texts()[-1]
        # A user renamed in Telegram is stored under the new name by the next command that
        # remembers its user (the read made when the update came in showed the old one).
        harness.world.open_chat(USER, first_name="Renamed")
        await harness.send("/notify")
        known = await users.get_user(db, USER)
        assert known is not None and known.name == "Renamed"
        # A marked user who writes is unmarked at once, so messages to them resume.
        await users.set_blocked(db, USER, True)
        await harness.send("hello")
        known = await users.get_user(db, USER)
        assert known is not None and not known.blocked
    finally:
        await stop_harness(harness)


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


# --- catalogues: identical ones shared, others kept apart ---------------------------------------

PANEL_URL = "https://panel.example/api/v2"
CATALOGUE = [
    {"service": n, "name": f"Service {n}", "type": "Default", "category": f"Cat {n % 3}",
     "rate": "0.90", "min": 10, "max": 1000, "refill": True, "cancel": False}
    for n in range(1, 31)
]


class KeyedPanel(httpx.AsyncBaseTransport):
    """A panel giving every key the same catalogue, except the keys with their own prices."""

    def __init__(self, own_prices: dict[str, str] | None = None, *, down: bool = False) -> None:
        self.own_prices = own_prices or {}
        self.down = down
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.down:
            raise httpx.ConnectError("down", request=request)
        fields = dict(parse_qsl((await request.aread()).decode()))
        body: Any = {"balance": "10", "currency": "USD"}
        if fields["action"] == "services":
            rate = self.own_prices.get(fields["key"])
            body = [dict(row, rate=rate) if rate else row for row in CATALOGUE]
        return httpx.Response(200, json=body, request=request)


def accounts(*keys: str) -> list[Account]:
    """One own-key account per key, on PANEL_URL."""
    return [Account(f"user:{n}", key, PANEL_URL, own=True) for n, key in enumerate(keys, 1)]


async def test_identical_catalogues_are_one_index_and_prices_of_their_own_are_kept(
        tmp_path: Path) -> None:
    db = await open_database(tmp_path / "bot.sqlite3")
    a, b, c = accounts("key-a", "key-b", "key-c")
    panel = KeyedPanel({"key-c": "2.50"})
    client = PanelClient(PANEL_URL, transport=panel)
    try:
        catalog = Catalog(client, db, ttl=3600)
        first, second, own = [await catalog.get(x.catalog_key, x.key) for x in (a, b, c)]
        assert first is second  # one index for the two keys that see the same list
        assert own is not first
        assert first.by_id[1].rate == Decimal("0.90") and own.by_id[1].rate == Decimal("2.50")
        rows = await fetch_all(db, "SELECT source, length(payload) FROM services_cache")
        big = [source for source, size in rows if size > 1000]
        assert len(big) == 2, rows  # each distinct list is stored once, not once per key
        # After a restart, with the panel down: every key finds its own catalogue on disk.
        down = KeyedPanel(down=True)
        async with PanelClient(PANEL_URL, transport=down) as offline:
            again = Catalog(offline, db, ttl=3600)
            first2, second2, own2 = [await again.get(x.catalog_key, x.key) for x in (a, b, c)]
        assert down.requests == 0
        assert first2 is second2 and own2 is not first2
        assert first2.by_id[1].rate == Decimal("0.90") and own2.by_id[1].rate == Decimal("2.50")
    finally:
        await client.aclose()
        await close_database(db)


async def test_a_forgotten_key_leaves_the_shared_catalogue_to_the_others(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "bot.sqlite3")
    a, b = accounts("key-a", "key-b")
    panel = KeyedPanel()
    client = PanelClient(PANEL_URL, transport=panel)
    try:
        catalog = Catalog(client, db, ttl=3600)
        shared = await catalog.get(a.catalog_key, a.key)
        await catalog.get(b.catalog_key, b.key)
        await catalog.forget(a.catalog_key)
        assert catalog.cached(a.catalog_key) is None
        assert catalog.cached(b.catalog_key) is shared
        assert len(await fetch_all(db, "SELECT 1 FROM services_cache")) == 2  # b's + the list
        await catalog.forget(b.catalog_key)
        assert await fetch_all(db, "SELECT source FROM services_cache") == []  # nothing left
        requests = panel.requests
        assert (await catalog.get(a.catalog_key, a.key)).by_id[1].name == "Service 1"
        assert panel.requests > requests  # fetched anew
    finally:
        await client.aclose()
        await close_database(db)


async def test_a_catalogue_cached_before_sharing_is_still_read(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "bot.sqlite3")
    [a] = accounts("key-a")
    old = ServiceIndex(tuple(filter(None, map(Service.from_api, CATALOGUE))), "EUR", 100.0)
    await catalog_store.save_services(db, source=a.catalog_key, payload_json=old.to_json(),
                                      fetched_at=time.time())
    panel = KeyedPanel(down=True)
    try:
        async with PanelClient(PANEL_URL, transport=panel) as client:
            index = await Catalog(client, db, ttl=3600).get(a.catalog_key, a.key)
        assert panel.requests == 0
        assert index.currency == "EUR" and len(index.services) == len(CATALOGUE)
    finally:
        await close_database(db)


def test_the_catalogue_key_is_the_same_for_equal_answers_and_differs_for_any_change() -> None:
    from bot.catalog import content_key
    rows = [{"service": 1, "name": "Likes", "rate": "0.25", "refill": True},
            {"service": 2, "name": "Views", "rate": 0.5, "refill": False}]
    same = json.loads(json.dumps(rows, indent=2))  # parsed again from other bytes
    held = same[0]["name"]  # an object also referenced elsewhere does not change the key
    assert held == "Likes"
    assert content_key("USD", same) == content_key("USD", rows)
    for other in ([{**rows[0], "rate": "0.26"}, rows[1]],  # a price
                  [{**rows[0], "service": "1"}, rows[1]],  # a type ("1" is not 1)
                  [rows[1], rows[0]],  # the order
                  [{**rows[0], "refill": 1}, rows[1]]):  # True is not 1
        assert content_key("USD", other) != content_key("USD", rows), other
    assert content_key("EUR", rows) != content_key("USD", rows)


# --- the tracker reads only the orders that are due ---------------------------------------------


async def test_while_another_process_holds_the_write_lock_the_commit_waits_off_the_loop(
        tmp_path: Path) -> None:
    persistence = SqlitePersistence(tmp_path / "p.sqlite3")
    other = sqlite3.connect(tmp_path / "p.sqlite3", isolation_level=None)
    try:
        db = await persistence._conn()
        trips = _thread_visits(db)
        other.execute("BEGIN IMMEDIATE")  # a backup or the sqlite3 shell writing
        write = asyncio.create_task(persistence.update_user_data(USER, {"step": "link"}))
        ticks = 0
        while ticks < 20:  # the loop keeps turning while the write waits for the lock
            await asyncio.sleep(0.01)
            ticks += 1
        assert not write.done()
        other.execute("COMMIT")
        await asyncio.wait_for(write, timeout=5)
        assert len(trips) == 1  # it waited on the connection's thread, in SQLite's busy handler
        rows = await fetch_all(db, "SELECT data FROM ptb_user_data WHERE user_id = ?", (USER,))
        assert [json.loads(r[0]) for r in rows] == [{"step": "link"}]
    finally:
        other.close()
        await persistence.flush()


async def test_the_bots_one_statement_writes_run_on_the_loop_and_wait_off_it_when_busy(
        tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    db = await open_database(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await add_writer(db, path)
        trips = _thread_visits(db)
        await users.upsert_user(db, telegram_id=USER, name="Ann")  # RETURNING, on the loop
        cursor = await execute_write(db, "UPDATE users SET name = 'Bob' WHERE telegram_id = ?",
                                     (USER,))
        assert cursor.rowcount == 1 and trips == []
        other.execute("BEGIN IMMEDIATE")  # another process writing: the write waits off the loop
        write = asyncio.create_task(execute_write(
            db, "UPDATE users SET name = 'Cid' WHERE telegram_id = ?", (USER,)))
        await asyncio.sleep(0.2)  # the loop turns meanwhile
        assert not write.done()
        other.execute("COMMIT")
        assert (await asyncio.wait_for(write, timeout=5)).rowcount == 1
        assert len(trips) == 1
        known = await users.get_user(db, USER)
        assert known is not None and known.name == "Cid"
    finally:
        other.close()
        await close_database(db)


async def test_the_loop_writer_leaves_checkpoints_to_the_connections_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import storage.db as db_module

    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY", 5)
    persistence = SqlitePersistence(tmp_path / "p.sqlite3")
    try:
        db = await persistence._conn()
        seen: list[str] = []
        await db.set_trace_callback(seen.append)  # the aiosqlite connection only
        for n in range(12):
            await persistence.update_user_data(USER, {"n": n})
        await asyncio.sleep(0.05)  # the checkpoint tasks run between the writes' turns
        assert sum("wal_checkpoint(PASSIVE)" in s for s in seen) == 2, seen
        assert not any("ptb_user_data" in s for s in seen)  # the writes stayed on the loop
    finally:
        await persistence.flush()
    fresh = SqlitePersistence(tmp_path / "p.sqlite3")
    try:
        assert await fresh.get_user_data() == {USER: {"n": 11}}
    finally:
        await fresh.flush()


def _size(path: Path) -> int:
    """A file's size in bytes."""
    return path.stat().st_size


async def test_the_write_ahead_log_stays_small_while_orders_come_back_to_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import storage.db as db_module

    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY", 5)

    async def straight_through(self: Any, callback: Any, args: Any, kwargs: Any,
                               **_: Any) -> Any:
        return await callback(*args, **kwargs)

    # Telegram's limiter off, as in the benchmarks: nothing in an update then waits, and the
    # loop turns only between updates.
    monkeypatch.setattr(AIORateLimiter, "process_request", straight_through)
    harness = await start_harness(tmp_path, RATE_LIMIT_PER_MINUTE=10**6)
    wal = Path(f"{harness.deps.settings.database_path}-wal")
    try:
        sizes = []
        for n in range(30):  # 150 updates, each committing on the loop-thread writer
            user = 1000 + n
            await harness.send("/order 1", user=user)
            await harness.send(f"https://example.com/p/{n}", user=user)
            await harness.send("100", user=user)
            await harness.press("Skip", user=user)
            await harness.press("Confirm", user=user)
            sizes.append(_size(wal))
        # The checkpoints run between the updates and SQLite starts the log over: it does not
        # grow with every order (never checkpointed, 30 orders leave ~3 MB in it).
        assert max(sizes[10:]) < 1_000_000, sizes
        assert max(sizes[20:]) <= max(sizes[:20]), sizes
    finally:
        await stop_harness(harness)


async def test_the_tracker_finds_due_orders_by_the_active_orders_index(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "bot.sqlite3")
    try:
        await users.upsert_user(db, telegram_id=USER, name="U")
        await orders.track_orders(db, owner_id=USER, account=OPERATOR_ACCOUNT, panel=PANEL_URL,
                                  panel_order_ids=range(1, 51))
        statements: list[str] = []
        await db.set_trace_callback(statements.append)
        due = await orders.due_orders(db, due_before=time.time(), panel=PANEL_URL,
                                      accounts=[OPERATOR_ACCOUNT, "user:5"])
        await set_trace_callback(db, None)
        assert len(due) == 50
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert reads
        for sql in reads:
            plan = " | ".join(str(row[3]) for row in await fetch_all(
                db, "EXPLAIN QUERY PLAN " + sql))
            # A search of the index of unfinished orders: finished ones (most of a bot's
            # history) are never read, and nothing is sorted.
            assert "SEARCH orders USING INDEX orders_active" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
    finally:
        await close_database(db)


async def test_the_trackers_read_of_thousands_of_due_orders_leaves_the_loop_free(
        tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    db = await open_database(path)
    await add_reader(db, path)  # as at start-up: other reads run on the loop
    try:
        await users.upsert_user(db, telegram_id=USER, name="U")
        await orders.track_orders(db, owner_id=USER, account=OPERATOR_ACCOUNT, panel=PANEL_URL,
                                  panel_order_ids=range(1, 3001))
        turns = 0
        reading = True

        async def other_updates() -> None:  # what the loop does for everyone else meanwhile
            nonlocal turns
            while reading:
                turns += 1
                await asyncio.sleep(0)

        others = asyncio.create_task(other_updates())
        await asyncio.sleep(0)
        trips = _thread_visits(db)
        turns = 0
        due = await orders.due_orders(db, due_before=time.time(), panel=PANEL_URL,
                                      accounts=[OPERATOR_ACCOUNT])
        during = turns
        reading = False
        await others
        assert len(due) == 3000
        assert trips  # read on the connection's thread…
        assert during > 0  # …while the loop went on (on the loop's reader: not once)
        trips.clear()
        assert await users.get_user(db, USER) is not None
        assert trips == []  # a read of one row still runs on the loop's reader
    finally:
        await close_database(db)


# --- per update: only what the bot uses is persisted; start-up is out of the collector's way ----


async def test_an_update_persists_the_users_data_and_no_chat_data(tmp_path: Path) -> None:
    harness = await start_harness(tmp_path)
    try:
        persistence = harness.app.persistence
        assert isinstance(persistence, SqlitePersistence)
        seen: list[str] = []
        own: list[str] = []
        await set_trace_callback(harness.deps.db, seen.append)
        await set_trace_callback(await persistence._conn(), own.append)
        await harness.send("/order 1")
        await harness.send("https://example.com/p/1")
        # Written through the bot's connection: the persistence's own one writes nothing, so
        # it never makes SQLite drop the bot's page cache (SqlitePersistence.take_turns_with).
        assert any("ptb_user_data" in s for s in seen), seen
        assert own == [], own
        assert not any("ptb_chat_data" in s for s in seen), seen
        rows = await fetch_all(await persistence._conn(), "SELECT * FROM ptb_chat_data")
        assert rows == []
    finally:
        await stop_harness(harness)
    again = await start_harness(tmp_path)  # the wizard goes on where it was after a restart
    try:
        await again.send("100")
        assert "Step 3" in again.texts()[-1] or "Check the order" in again.texts()[-1]
    finally:
        await stop_harness(again)


async def test_start_up_leaves_what_it_built_out_of_full_collections(tmp_path: Path) -> None:
    import gc

    def collected(thing: object) -> bool:  # what a collection walks, by identity
        return any(tracked is thing for tracked in gc.get_objects())

    harness = await start_harness(tmp_path)
    try:
        assert gc.get_freeze_count() > 0
        assert not collected(harness.app.handlers)
    finally:
        await stop_harness(harness)
    assert gc.get_freeze_count() == 0  # handed back: a stopped bot can be freed


async def test_a_running_bot_makes_no_full_collection_for_a_burst_of_new_objects(
        tmp_path: Path) -> None:
    """200,000 objects that outlive a young collection (a busy minute's sessions, answers,
    rows): with CPython's default thresholds, while the bot runs (its start-up frozen), that
    is a couple of full collections, each a pause that walks the whole heap; now none.
    Stopped, the collector's own thresholds are back."""
    import gc

    def full_collections_for_a_burst() -> int:
        full: list[int] = []

        def count(phase: str, info: dict[str, int]) -> None:
            if phase == "start" and info["generation"] == 2:
                full.append(1)

        gc.collect()
        gc.callbacks.append(count)
        try:
            burst = [[n] for n in range(200_000)]
            del burst
        finally:
            gc.callbacks.remove(count)
        return len(full)

    before = gc.get_threshold()
    harness = await start_harness(tmp_path)
    try:
        assert full_collections_for_a_burst() == 0
    finally:
        await stop_harness(harness)
    assert gc.get_threshold() == before
