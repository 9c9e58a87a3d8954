"""storage.db: pragmas, migrations from every earlier version, transactions on one connection."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiosqlite
import pytest

from storage.db import (
    MIGRATIONS,
    SCHEMA_VERSION,
    close_database,
    connect,
    decimal_text,
    fetch_all,
    fetch_one,
    in_transaction,
    migrate,
    open_database,
    reading,
    schema_version,
    split_statements,
    text_decimal,
    timestamp,
    transaction,
)
from storage.orders import get_order, order_history
from storage.outbox import pending_notifications
from storage.users import get_user


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    conn = await open_database(tmp_path / "bot.sqlite3")
    yield conn
    await close_database(conn)


async def test_open_creates_parent_dir_and_sets_pragmas(tmp_path: Path) -> None:
    conn = await open_database(tmp_path / "a" / "b" / "bot.sqlite3")
    try:
        assert (tmp_path / "a" / "b" / "bot.sqlite3").exists()
        assert (await fetch_one(conn, "PRAGMA journal_mode"))[0] == "wal"  # type: ignore[index]
        assert (await fetch_one(conn, "PRAGMA foreign_keys"))[0] == 1  # type: ignore[index]
        assert (await fetch_one(conn, "PRAGMA busy_timeout"))[0] == 5000  # type: ignore[index]
        assert await schema_version(conn) == SCHEMA_VERSION
        assert conn.row_factory is aiosqlite.Row
    finally:
        await close_database(conn)


async def test_there_are_several_migrations() -> None:
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 2


async def test_reopening_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    for _ in range(3):
        conn = await open_database(path)
        assert await schema_version(conn) == SCHEMA_VERSION
        await close_database(conn)


async def test_connections_migrating_a_new_file_at_once(tmp_path: Path) -> None:
    for attempt in range(5):
        path = tmp_path / f"bot{attempt}.sqlite3"
        conns = await asyncio.gather(*(open_database(path) for _ in range(4)))
        try:
            for conn in conns:
                assert await schema_version(conn) == SCHEMA_VERSION
        finally:
            for conn in conns:
                await close_database(conn)


async def _fill_version(conn: aiosqlite.Connection, version: int) -> None:
    """Writes rows the way the schema of `version` allows (raw SQL: the repos speak the latest)."""
    if version < 1:
        return
    async with transaction(conn):
        await conn.execute(
            "INSERT INTO users (telegram_id, name, language, role, panel_key, created_at,"
            " updated_at) VALUES (7, 'Ann', 'en', 'allowed', x'0102', 1.0, 1.0)"
        )
        await conn.execute(
            "INSERT INTO orders (owner_id, account, panel_order_id, service_id, service_rate,"
            " fields, quantity, cost, state, status, charge, created_at, updated_at)"
            " VALUES (7, 'operator', 501, 1, '0.90', '{\"link\": \"l\"}', 100, '0.09',"
            " 'placed', 'In progress', '0.0900', 1.0, 2.0)"
        )
        await conn.execute(
            "INSERT INTO order_status_history (order_id, status, observed_at)"
            " VALUES (1, 'In progress', 2.0)"
        )
        await conn.execute(
            "INSERT INTO notifications (chat_id, text, order_id, created_at)"
            " VALUES (7, 'hello', 1, 2.0)"
        )


@pytest.mark.parametrize("version", range(SCHEMA_VERSION))
async def test_upgrade_from_every_earlier_version(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.sqlite3"
    old = await connect(path)
    assert await migrate(old, MIGRATIONS[:version]) == version
    await _fill_version(old, version)
    await close_database(old)

    conn = await open_database(path)
    try:
        assert await schema_version(conn) == SCHEMA_VERSION
        integrity = await fetch_one(conn, "PRAGMA integrity_check")
        assert integrity is not None and integrity[0] == "ok"
        assert await fetch_all(conn, "PRAGMA foreign_key_check") == []
        if version >= 1:
            user = await get_user(conn, 7)
            assert user is not None
            assert (user.name, user.role, user.panel_key) == ("Ann", "allowed", b"\x01\x02")
            assert user.notify == "all"  # v3 default
            order = await get_order(conn, 1)
            assert order is not None
            assert order.panel_order_id == 501
            assert order.service_rate == Decimal("0.90")
            assert order.charge == Decimal("0.0900")
            assert order.fields == {"link": "l"}
            assert (order.lost_strikes, order.next_check_at) == (0, None)  # v2 defaults
            assert [c.status for c in await order_history(conn, 1)] == ["In progress"]
            assert [n.text for n in await pending_notifications(conn, now=3.0)] == ["hello"]
    finally:
        await close_database(conn)


async def test_failed_migration_rolls_back_and_keeps_version(tmp_path: Path) -> None:
    conn = await connect(tmp_path / "bot.sqlite3")
    try:
        bad = ["CREATE TABLE a (x); CREATE TABLE b (y); INSERT INTO nowhere VALUES (1);"]
        with pytest.raises(sqlite3.OperationalError):
            await migrate(conn, bad)
        assert await schema_version(conn) == 0
        assert await fetch_all(conn, "SELECT name FROM sqlite_master WHERE name IN ('a','b')") == []
        assert not conn.in_transaction
    finally:
        await close_database(conn)


def test_split_statements_keeps_semicolons_in_strings_and_triggers() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE t (x TEXT DEFAULT 'a;b');
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 'c;d'; END;
    -- trailing comment
    """
    statements = split_statements(script)
    assert len(statements) == 2
    assert "'a;b'" in statements[0]
    assert statements[1].rstrip().endswith("END;")


async def test_transaction_commits_or_rolls_back(db: aiosqlite.Connection) -> None:
    async with transaction(db):
        await db.execute("INSERT INTO services_cache VALUES ('kept', '[]', 1)")
    with pytest.raises(RuntimeError):
        async with transaction(db):
            await db.execute("INSERT INTO services_cache VALUES ('lost', '[]', 1)")
            raise RuntimeError("boom")
    rows = await fetch_all(db, "SELECT source FROM services_cache")
    assert [r[0] for r in rows] == ["kept"]
    assert not db.in_transaction


async def test_nested_calls_join_the_outer_transaction(db: aiosqlite.Connection) -> None:
    with pytest.raises(RuntimeError):
        async with transaction(db):
            assert in_transaction(db)
            async with transaction(db):  # joins, does not deadlock
                await db.execute("INSERT INTO services_cache VALUES ('inner', '[]', 1)")
            assert await fetch_one(db, "SELECT 1 FROM services_cache") is not None
            raise RuntimeError("undo the inner write too")
    assert not in_transaction(db)
    assert await fetch_all(db, "SELECT * FROM services_cache") == []


async def test_nesting_two_connections_in_one_task(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    other = await open_database(tmp_path / "other.sqlite3")
    try:
        async with transaction(db):
            async with transaction(other):
                await other.execute("INSERT INTO services_cache VALUES ('o', '[]', 1)")
                # Back on the first connection while the second is held: joins, no deadlock.
                await db.execute("INSERT INTO services_cache VALUES ('d', '[]', 1)")
                assert await fetch_one(db, "SELECT source FROM services_cache") is not None
                assert in_transaction(db) and in_transaction(other)
        assert not in_transaction(db) and not in_transaction(other)
        assert len(await fetch_all(other, "SELECT * FROM services_cache")) == 1
    finally:
        await close_database(other)


async def test_transaction_inside_reading_is_refused(db: aiosqlite.Connection) -> None:
    async with reading(db):
        with pytest.raises(RuntimeError):
            async with transaction(db):
                pass


async def test_other_tasks_never_land_inside_a_transaction(db: aiosqlite.Connection) -> None:
    started = asyncio.Event()

    async def failing_writer() -> None:
        async with transaction(db):
            await db.execute("INSERT INTO services_cache VALUES ('a', '[]', 1)")
            started.set()
            await asyncio.sleep(0.05)  # others run meanwhile
            raise RuntimeError("roll back a")

    async def other_writer() -> None:
        await started.wait()
        async with transaction(db):
            await db.execute("INSERT INTO services_cache VALUES ('b', '[]', 1)")

    async def reader() -> list[str]:
        await started.wait()
        return [r[0] for r in await fetch_all(db, "SELECT source FROM services_cache")]

    results = await asyncio.gather(
        failing_writer(), other_writer(), reader(), return_exceptions=True
    )
    assert isinstance(results[0], RuntimeError)
    # The reader waited for the lock: it never saw the uncommitted 'a'.
    assert isinstance(results[2], list) and "a" not in results[2]
    rows = await fetch_all(db, "SELECT source FROM services_cache")
    assert [r[0] for r in rows] == ["b"]


async def test_cancelled_transaction_leaves_the_connection_usable(
    db: aiosqlite.Connection,
) -> None:
    inside = asyncio.Event()

    async def slow() -> None:
        async with transaction(db):
            await db.execute("INSERT INTO services_cache VALUES ('x', '[]', 1)")
            inside.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(slow())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with transaction(db):
        await db.execute("INSERT INTO services_cache VALUES ('y', '[]', 1)")
    rows = await fetch_all(db, "SELECT source FROM services_cache")
    assert [r[0] for r in rows] == ["y"]


def test_money_is_stored_as_exact_text() -> None:
    assert decimal_text(Decimal("0.90")) == "0.90"
    assert decimal_text(Decimal("1E+1")) == "10"
    assert decimal_text(Decimal("0.000000001")) == "0.000000001"
    assert decimal_text(None) is None
    assert text_decimal("0.90") == Decimal("0.90")
    assert text_decimal(None) is None
    with pytest.raises(TypeError):
        decimal_text(0.9)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        decimal_text(Decimal("NaN"))


async def test_money_columns_are_text_not_real(db: aiosqlite.Connection) -> None:
    rows = await fetch_all(
        db,
        "SELECT name, type FROM pragma_table_info('orders')"
        " WHERE name IN ('service_rate', 'cost', 'charge')",
    )
    assert {r[1] for r in rows} == {"TEXT"}


def test_timestamp_uses_the_given_time() -> None:
    assert timestamp(0.0) == 0.0
    assert timestamp() > 1_600_000_000
