"""Data safety: `smm-bot backup` while writes go on, `smm-bot restore` with its refusals, and the
start-up checks of the database (integrity result logged, a newer schema refused in one line)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from storage.db import SCHEMA_VERSION, SchemaTooNew, close_database, open_database
from storage.files import DatabaseFileError, check_backup, restore_database

REPO_ROOT = Path(__file__).resolve().parents[1]
HISTORY_PER_ORDER = 3


def smm_bot(*args: str, database: Path, cwd: Path,
            **env: str) -> subprocess.CompletedProcess[str]:
    """Runs `python -m bot <args>` with DATABASE_PATH (and `env`) only."""
    base = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    base["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**base, "DATABASE_PATH": str(database), **env})


async def open_and_close(path: Path) -> None:
    """Opens the file as the bot does (creating and migrating it), then closes it."""
    await close_database(await open_database(path))


def make_database(path: Path) -> None:
    """A database with the bot's current schema."""
    asyncio.run(open_and_close(path))


class Writer(threading.Thread):
    """Another process writing like the bot: each transaction one order and its history rows."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.committed = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=5)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            now = time.time()
            conn.execute("INSERT OR IGNORE INTO users (telegram_id, created_at, updated_at)"
                         " VALUES (1, ?, ?)", (now, now))
            while not self.stop.is_set():
                conn.execute("BEGIN IMMEDIATE")
                cursor = conn.execute(
                    "INSERT INTO orders (owner_id, account, panel_order_id, fields, state,"
                    " created_at, updated_at) VALUES (1, 'operator', ?, ?, 'placed', ?, ?)",
                    (self.committed + 1, '{"link": "' + "x" * 200 + '"}', now, now))
                for step in range(HISTORY_PER_ORDER):
                    conn.execute("INSERT INTO order_status_history (order_id, status,"
                                 " observed_at) VALUES (?, ?, ?)",
                                 (cursor.lastrowid, f"step {step}", now))
                conn.execute("COMMIT")
                self.committed += 1
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            conn.close()


def counts(path: Path) -> tuple[int, int]:
    """(orders, history rows) in a database file."""
    conn = sqlite3.connect(path)
    try:
        return (conn.execute("SELECT count(*) FROM orders").fetchone()[0],
                conn.execute("SELECT count(*) FROM order_status_history").fetchone()[0])
    finally:
        conn.close()


def test_a_backup_taken_while_writes_go_on_is_consistent_and_restores_intact(
        tmp_path: Path) -> None:
    live = tmp_path / "data" / "bot.sqlite3"
    make_database(live)
    writer = Writer(live)
    writer.start()
    try:
        deadline = time.monotonic() + 10
        while writer.committed < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        at_start = writer.committed
        backup = tmp_path / "backups" / "bot-backup.sqlite3"
        done = smm_bot("backup", str(backup), database=live, cwd=tmp_path)
        at_end = writer.committed
        time.sleep(0.1)  # and the writes go on after it
        assert writer.committed > at_end
    finally:
        writer.stop.set()
        writer.join(timeout=10)
    assert writer.error is None, writer.error
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith(f"Backed up {live} to {backup}: "), line
    assert f"schema v{SCHEMA_VERSION}, integrity_check ok" in line, line
    assert done.stderr == ""

    orders, history = counts(backup)
    assert at_start <= orders <= at_end + 1, (at_start, orders, at_end)
    assert history == HISTORY_PER_ORDER * orders  # one snapshot: no transaction cut in half
    report = check_backup(backup)
    assert report.intact and report.schema_version == SCHEMA_VERSION
    assert not list(backup.parent.glob(".*partial*")), "the temporary copy was left behind"
    conn = sqlite3.connect(backup)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file
    finally:
        conn.close()
    live_orders, _ = counts(live)
    assert live_orders > orders  # the writer went on after the snapshot

    restored = smm_bot("restore", str(backup), database=live, cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith(f"Restored {live} from {backup}: "), restored.stdout
    assert counts(live) == (orders, history)
    [kept] = live.parent.glob("bot.before-restore-*.sqlite3")
    assert counts(kept) == (live_orders, HISTORY_PER_ORDER * live_orders)
    assert f"kept as {kept}" in restored.stdout
    asyncio.run(open_and_close(live))  # the bot opens it
    conn = sqlite3.connect(live)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def test_restore_is_refused_while_the_database_is_in_use(tmp_path: Path) -> None:
    live = tmp_path / "bot.sqlite3"
    backup = tmp_path / "backup.sqlite3"
    make_database(live)
    assert smm_bot("backup", str(backup), database=live, cwd=tmp_path).returncode == 0
    running = sqlite3.connect(live, isolation_level=None)  # the bot runs: WAL, as it uses it
    try:
        running.execute("PRAGMA journal_mode = WAL")
        running.execute("INSERT INTO users (telegram_id, created_at, updated_at) VALUES (5, 0, 0)")
        refused = smm_bot("restore", str(backup), database=live, cwd=tmp_path)
        assert refused.returncode == 1
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
        assert "is in use: stop the bot first" in lines[0] and "nothing was changed" in lines[0]
        assert running.execute("SELECT count(*) FROM users").fetchone()[0] == 1
    finally:
        running.close()
    assert not list(tmp_path.glob("*before-restore*"))


def test_restore_refuses_a_damaged_foreign_or_newer_file_and_changes_nothing(
        tmp_path: Path) -> None:
    live = tmp_path / "bot.sqlite3"
    make_database(live)
    before = live.read_bytes()
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all " * 500)
    foreign = tmp_path / "foreign.sqlite3"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    newer = tmp_path / "newer.sqlite3"
    make_database(newer)
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    for file, reason in ((garbage, "not a readable SQLite database"),
                         (foreign, "not a database of this bot"),
                         (newer, "from a newer version of the bot"),
                         (tmp_path / "missing.sqlite3", "no database file")):
        with pytest.raises(DatabaseFileError, match=reason) as refused:
            restore_database(file, live)
        assert "nothing was changed" in str(refused.value)
    assert live.read_bytes() == before
    assert not list(tmp_path.glob("*before-restore*"))
    result = smm_bot("restore", str(newer), database=live, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("smm-bot restore: ") and result.stderr.count("\n") == 1


def test_a_database_from_a_newer_bot_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    make_database(path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew, match="newer version of the bot"):
        asyncio.run(open_and_close(path))

    result = smm_bot(database=path, cwd=tmp_path, BOT_TOKEN="123:SECRET-TOKEN-VALUE",
                     TELEGRAM_BASE_URL="http://127.0.0.1:9/bot")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"is from a newer version of the bot (schema version {SCHEMA_VERSION + 1}" in lines[0]
    assert "Traceback" not in result.stderr and "SECRET-TOKEN-VALUE" not in result.stderr
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    finally:
        conn.close()


def test_the_integrity_check_result_is_logged_when_the_database_opens(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "bot.sqlite3"
    caplog.set_level(logging.INFO, logger="storage.db")
    make_database(path)
    assert any("integrity_check ok" in record.getMessage() for record in caplog.records)

    damaged = tmp_path / "damaged.sqlite3"  # a copy: this process has not opened it yet
    shutil.copyfile(path, damaged)
    conn = sqlite3.connect(damaged, isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")
    now = time.time()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO users (telegram_id, name, created_at, updated_at)"
                     " VALUES (?, 'u', ?, ?)", [(i, now, now) for i in range(1, 400)])
    conn.executemany("INSERT INTO orders (owner_id, account, fields, state, created_at,"
                     " updated_at) VALUES (?, 'operator', '{}', 'draft', ?, ?)",
                     [(400 - i, now, now) for i in range(1, 400)])
    conn.execute("COMMIT")
    # The index's entries stay sorted by (owner_id, id) while the schema now says (id,
    # owner_id): every row is "missing from index", as after a torn write to the index.
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_master SET sql = replace(sql, '(owner_id, id)', '(id, owner_id)')"
                 " WHERE name = 'orders_owner'")
    conn.execute("PRAGMA writable_schema = OFF")
    conn.close()
    caplog.clear()
    asyncio.run(open_and_close(damaged))
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors and "is damaged (integrity_check:" in errors[0], errors
    assert "smm-bot restore" in errors[0]
