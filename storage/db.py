"""The SQLite connection: opening, versioned migrations, and transactions on a shared connection.

How the rest of the bot uses it
-------------------------------
``open_database(path)`` is called once at start-up (``post_init``); the connection it returns is
shared by every handler and by the tracker, and closed with ``close_database`` in
``post_shutdown``. It runs in autocommit mode (``isolation_level=None``): nothing is ever left in
an implicit transaction: every write is an explicit ``BEGIN IMMEDIATE`` … ``COMMIT``, or a
single statement on its own.

Why a lock
----------
One aiosqlite connection is one SQLite connection, and a transaction belongs to the connection,
not to the asyncio task. If task A has begun a transaction and awaits, task B's statements on the
same connection would land *inside A's transaction* (and vanish if A rolls back). So every
repository function runs under a per-connection ``asyncio.Lock``:

- writes go through ``transaction(db)``: lock, ``BEGIN IMMEDIATE``, body, ``COMMIT`` (``ROLLBACK``
  on any exception, cancellation included);
- reads go through ``reading(db)``: the same lock without ``BEGIN``, so a read never observes
  another task's uncommitted writes; and where the connection has a reader (``add_reader``: a
  second, read-only connection, which in WAL mode sees every committed write and never waits
  for the writer), ``fetch_all``/``fetch_one`` outside a transaction use it, without the lock
  and right on the event loop's thread;
- a write that is a single statement may go through ``execute_write(db, sql, params)``: the
  same lock, no ``BEGIN``/``COMMIT`` (SQLite makes one statement atomic by itself), so it costs
  one round trip to the connection's thread instead of three.

All three are re-entrant within a task: a repository function called inside an open
``transaction(db)`` joins it instead of waiting for the lock. That is how callers compose several
writes into one atomic unit::

    async with transaction(db):
        if await record_status(db, order.id, observed):
            await enqueue_notification(db, chat_id=..., text=...)

One process is one writer: the PTB persistence has its own connection, but it runs its statements
under the bot's connection's lock (``take_turns``), so the bot's writes never wait in SQLite's
busy handler for each other. Other processes or other connections to the same file are serialised by
SQLite itself (WAL mode, ``busy_timeout`` of 5 s; ``BEGIN IMMEDIATE`` takes the write lock up
front, so a transaction never fails half-way with SQLITE_BUSY on upgrade from read to write).

Values: money is decimal TEXT (``decimal_text`` / ``text_decimal``), never REAL; times are unix
seconds as REAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiosqlite

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
#: First line of a migration that rebuilds a table: it runs with foreign keys off (dropping a
#: referenced table with them on would delete the rows that refer to it), and is checked with
#: PRAGMA foreign_key_check before it commits.
NO_FOREIGN_KEYS = "-- migration: foreign keys off"
#: Files up to this size get the full `PRAGMA integrity_check` at start-up; bigger ones the
#: cheaper `quick_check` (see `integrity_pragma`).
FULL_CHECK_LIMIT = 256 * 1024 * 1024



def _canonical(minor: str) -> str:
    """SQL for the decimal text of a whole number of minor units at the row's `exponent`
    ('-0.05' for -5 at 2): a money column must read exactly as this, so its text and its
    integer can never disagree."""
    scale = "CAST(substr('1000000000', 1, exponent + 1) AS INTEGER)"
    return (f"((CASE WHEN {minor} < 0 THEN '-' ELSE '' END) || (abs({minor}) / {scale})"
            f" || (CASE WHEN exponent > 0 THEN '.' || printf('%0*d', exponent,"
            f" abs({minor}) % {scale}) ELSE '' END))")


# Migration N (1-based) brings the schema from user_version N-1 to N. Append only: never edit a
# migration that has shipped, add a new one.
MIGRATIONS: list[str] = [
    # v1: the core schema.
    """
    CREATE TABLE users (
        telegram_id INTEGER PRIMARY KEY,
        name        TEXT    NOT NULL DEFAULT '',
        language    TEXT    NOT NULL DEFAULT '',
        role        TEXT    NOT NULL DEFAULT 'other'
                            CHECK (role IN ('admin', 'allowed', 'other')),
        blocked     INTEGER NOT NULL DEFAULT 0,   -- the user has blocked the bot
        panel_key   BLOB,                          -- the user's own panel key, encrypted by caller
        created_at  REAL    NOT NULL,
        updated_at  REAL    NOT NULL
    );

    CREATE TABLE orders (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        owner_id         INTEGER NOT NULL REFERENCES users (telegram_id),
        account          TEXT    NOT NULL,  -- 'operator' or 'user:<telegram_id>'
        panel_order_id   INTEGER,           -- NULL until placed
        service_id       INTEGER,           -- service snapshot (NULL for orders tracked by id)
        service_name     TEXT,
        service_type     TEXT,
        service_rate     TEXT,              -- decimal, per 1000
        service_currency TEXT,
        service_refill   INTEGER,
        service_cancel   INTEGER,
        fields           TEXT    NOT NULL DEFAULT '{}',  -- JSON: the exact fields sent
        quantity         INTEGER,
        cost             TEXT,              -- decimal: the estimate shown before placing
        state            TEXT    NOT NULL
                                 CHECK (state IN ('draft', 'claimed', 'placed', 'failed',
                                                  'unknown')),
        error            TEXT,
        status           TEXT,              -- last known panel status
        charge           TEXT,              -- decimal
        start_count      INTEGER,
        remains          INTEGER,
        currency         TEXT,
        final            INTEGER NOT NULL DEFAULT 0,
        created_at       REAL    NOT NULL,
        updated_at       REAL    NOT NULL,
        last_checked_at  REAL,
        UNIQUE (account, panel_order_id)
    );
    CREATE INDEX orders_owner ON orders (owner_id, id);

    CREATE TABLE order_status_history (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id    INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
        status      TEXT    NOT NULL,
        remains     INTEGER,
        observed_at REAL    NOT NULL
    );
    CREATE INDEX order_status_history_order ON order_status_history (order_id, id);

    CREATE TABLE refills (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id        INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
        account         TEXT    NOT NULL,   -- copied from the order: refill ids are per account
        panel_refill_id INTEGER NOT NULL,
        status          TEXT    NOT NULL,
        final           INTEGER NOT NULL DEFAULT 0,
        created_at      REAL    NOT NULL,
        updated_at      REAL    NOT NULL,
        last_checked_at REAL,
        UNIQUE (account, panel_refill_id)
    );
    CREATE INDEX refills_order ON refills (order_id);

    CREATE TABLE refill_status_history (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        refill_id   INTEGER NOT NULL REFERENCES refills (id) ON DELETE CASCADE,
        status      TEXT    NOT NULL,
        observed_at REAL    NOT NULL
    );
    CREATE INDEX refill_status_history_refill ON refill_status_history (refill_id, id);

    CREATE TABLE notifications (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        chat_id         INTEGER NOT NULL,
        text            TEXT    NOT NULL,
        payload         TEXT    NOT NULL DEFAULT '{}',  -- JSON for the sender (buttons, ...)
        order_id        INTEGER REFERENCES orders (id) ON DELETE SET NULL,
        state           TEXT    NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'sent', 'dropped')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT,
        created_at      REAL    NOT NULL,
        next_attempt_at REAL,
        sent_at         REAL
    );
    CREATE INDEX notifications_pending ON notifications (state, next_attempt_at, id);

    CREATE TABLE services_cache (
        source     TEXT PRIMARY KEY,   -- which panel URL / account the list was fetched for
        payload    TEXT NOT NULL,      -- JSON, serialised by the caller (decimals as strings)
        fetched_at REAL NOT NULL
    );

    CREATE TABLE ptb_user_data (
        user_id INTEGER PRIMARY KEY,
        data    TEXT NOT NULL
    );
    CREATE TABLE ptb_chat_data (
        chat_id INTEGER PRIMARY KEY,
        data    TEXT NOT NULL
    );
    CREATE TABLE ptb_bot_data (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        data TEXT NOT NULL
    );
    CREATE TABLE ptb_conversations (
        name  TEXT NOT NULL,
        key   TEXT NOT NULL,   -- JSON array: the conversation key tuple
        state TEXT NOT NULL,   -- JSON
        PRIMARY KEY (name, key)
    );
    """,
    # v2: tracker back-off. When to poll an order next, and how many polls in a row the panel
    # did not know it ("Incorrect order ID").
    """
    ALTER TABLE orders ADD COLUMN next_check_at REAL;
    ALTER TABLE orders ADD COLUMN lost_strikes INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX orders_active ON orders (next_check_at) WHERE state = 'placed' AND final = 0;
    """,
    # v3: per-user notification preference.
    """
    ALTER TABLE users ADD COLUMN notify TEXT NOT NULL DEFAULT 'all'
        CHECK (notify IN ('all', 'final', 'off'));
    """,
    # v4: facts about the database itself, e.g. the SECRET_KEY canary (storage/meta.py).
    """
    CREATE TABLE meta (
        name       TEXT PRIMARY KEY,
        value      BLOB NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # v5: every order records the panel it was placed on (its API URL; '' = placed before v5,
    # adopted at start-up), and the panel's ids are unique per panel and account, so orders
    # left from demo mode never collide with (or get sent to) a real panel. The table is
    # rebuilt to change its UNIQUE constraint (foreign keys off meanwhile: see migrate()).
    # Refills likewise, and they get the orders' polling schedule; conversations the time of
    # their last change (so a form abandoned before a restart still times out).
    f"""{NO_FOREIGN_KEYS}
    CREATE TABLE orders_v5 (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        owner_id         INTEGER NOT NULL REFERENCES users (telegram_id),
        account          TEXT    NOT NULL,
        panel            TEXT    NOT NULL DEFAULT '',  -- the panel's API URL
        panel_order_id   INTEGER,
        service_id       INTEGER,
        service_name     TEXT,
        service_type     TEXT,
        service_rate     TEXT,
        service_currency TEXT,
        service_refill   INTEGER,
        service_cancel   INTEGER,
        fields           TEXT    NOT NULL DEFAULT '{{}}',
        quantity         INTEGER,
        cost             TEXT,
        state            TEXT    NOT NULL
                                 CHECK (state IN ('draft', 'claimed', 'placed', 'failed',
                                                  'unknown')),
        error            TEXT,
        status           TEXT,
        charge           TEXT,
        start_count      INTEGER,
        remains          INTEGER,
        currency         TEXT,
        final            INTEGER NOT NULL DEFAULT 0,
        created_at       REAL    NOT NULL,
        updated_at       REAL    NOT NULL,
        last_checked_at  REAL,
        next_check_at    REAL,
        lost_strikes     INTEGER NOT NULL DEFAULT 0,
        UNIQUE (panel, account, panel_order_id)
    );
    INSERT INTO orders_v5 (id, owner_id, account, panel, panel_order_id, service_id,
        service_name, service_type, service_rate, service_currency, service_refill,
        service_cancel, fields, quantity, cost, state, error, status, charge, start_count,
        remains, currency, final, created_at, updated_at, last_checked_at, next_check_at,
        lost_strikes)
    SELECT id, owner_id, account, '', panel_order_id, service_id, service_name, service_type,
        service_rate, service_currency, service_refill, service_cancel, fields, quantity, cost,
        state, error, status, charge, start_count, remains, currency, final, created_at,
        updated_at, last_checked_at, next_check_at, lost_strikes FROM orders;
    DROP TABLE orders;
    ALTER TABLE orders_v5 RENAME TO orders;
    CREATE INDEX orders_owner ON orders (owner_id, id);
    CREATE INDEX orders_active ON orders (next_check_at) WHERE state = 'placed' AND final = 0;
    CREATE INDEX orders_panel_id ON orders (account, panel_order_id);

    CREATE TABLE refills_v5 (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id        INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
        account         TEXT    NOT NULL,   -- copied from the order: refill ids are per account
        panel           TEXT    NOT NULL DEFAULT '',  -- and per panel (copied too)
        panel_refill_id INTEGER NOT NULL,
        status          TEXT    NOT NULL,
        final           INTEGER NOT NULL DEFAULT 0,
        error           TEXT,               -- why it is final without a final status (lost)
        created_at      REAL    NOT NULL,
        updated_at      REAL    NOT NULL,
        last_checked_at REAL,
        next_check_at   REAL,
        lost_strikes    INTEGER NOT NULL DEFAULT 0,
        UNIQUE (panel, account, panel_refill_id)
    );
    INSERT INTO refills_v5 (id, order_id, account, panel, panel_refill_id, status, final,
        created_at, updated_at, last_checked_at)
    SELECT id, order_id, account, '', panel_refill_id, status, final, created_at, updated_at,
        last_checked_at FROM refills;
    DROP TABLE refills;
    ALTER TABLE refills_v5 RENAME TO refills;
    CREATE INDEX refills_order ON refills (order_id);
    CREATE INDEX refills_active ON refills (next_check_at) WHERE final = 0;

    ALTER TABLE ptb_conversations ADD COLUMN updated_at REAL;
    """,
    # v6: mass orders (storage/mass_orders.py); only its own tables (IF NOT EXISTS). A batch is
    # the lines of one /massorder summary; each line is its own order draft, placed through the
    # placement service like any order. `lines`: the valid lines shown.
    """
    CREATE TABLE IF NOT EXISTS mass_orders (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        owner_id   INTEGER NOT NULL REFERENCES users (telegram_id),
        chat_id    INTEGER NOT NULL,
        account    TEXT    NOT NULL,
        panel      TEXT    NOT NULL,
        catalog    TEXT    NOT NULL DEFAULT '',  -- which catalogue the lines were checked with
        lines      INTEGER NOT NULL,
        rev        INTEGER NOT NULL DEFAULT 1,  -- bumped when lines are added: older summaries
                                                -- of the batch are out of date
        state      TEXT    NOT NULL DEFAULT 'ready'
                           CHECK (state IN ('ready', 'sending', 'interrupted', 'done',
                                            'cancelled')),
        created_at REAL    NOT NULL,
        updated_at REAL    NOT NULL
    );
    CREATE INDEX IF NOT EXISTS mass_orders_state ON mass_orders (state);
    CREATE TABLE IF NOT EXISTS mass_order_lines (
        batch_id INTEGER NOT NULL REFERENCES mass_orders (id) ON DELETE CASCADE,
        line_no  INTEGER NOT NULL,   -- the line's number in what the user sent
        order_id INTEGER NOT NULL UNIQUE REFERENCES orders (id) ON DELETE CASCADE,
        PRIMARY KEY (batch_id, line_no)
    );
    """,
    # v7: shop mode. Each customer's wallet is an append-only ledger (storage/wallet.py) whose
    # rules the database itself enforces, so no code path can write a wrong row: amounts are
    # decimal TEXT written with exactly the currency's minor-unit digits (`exponent`), read back
    # as whole minor units by generated columns (exact integer arithmetic, never REAL); every
    # entry follows the wallet's previous one (`seq`), its balance_after is the previous
    # balance plus its amount and never below zero; one currency per wallet; a charge or refund
    # names its order (one charge and at most one refund per order, a refund never above the
    # charge, both the order owner's); entries are never changed or deleted. Orders remember
    # the price a customer was quoted; users can be banned from the shop; per-service prices.
    f"""
    CREATE TABLE wallet_entries (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id       INTEGER NOT NULL,
        seq           INTEGER NOT NULL CHECK (seq >= 1),   -- 1, 2, 3… per wallet
        kind          TEXT    NOT NULL
                              CHECK (kind IN ('topup', 'charge', 'refund', 'adjustment')),
        amount        TEXT    NOT NULL,   -- signed decimal, e.g. '-1.17'
        balance_after TEXT    NOT NULL,   -- decimal, e.g. '8.83'
        currency      TEXT    NOT NULL,
        exponent      INTEGER NOT NULL CHECK (exponent BETWEEN 0 AND 8),  -- minor-unit digits
        note          TEXT    NOT NULL DEFAULT '',
        reference     TEXT    NOT NULL UNIQUE CHECK (length(reference) BETWEEN 1 AND 200),
        order_id      INTEGER REFERENCES orders (id),
        created_at    REAL    NOT NULL,
        amount_minor  INTEGER GENERATED ALWAYS AS
                              (CAST(replace(amount, '.', '') AS INTEGER)) STORED,
        balance_minor INTEGER GENERATED ALWAYS AS
                              (CAST(replace(balance_after, '.', '') AS INTEGER)) STORED,
        UNIQUE (user_id, seq),
        CHECK (amount = {_canonical("amount_minor")}),
        CHECK (balance_after = {_canonical("balance_minor")}),
        CHECK (amount_minor != 0),
        CHECK (balance_minor >= 0),
        CHECK (kind = 'adjustment' OR (kind IN ('topup', 'refund') AND amount_minor > 0)
               OR (kind = 'charge' AND amount_minor < 0)),
        CHECK ((kind IN ('charge', 'refund')) = (order_id IS NOT NULL))
    );
    CREATE UNIQUE INDEX wallet_entries_one_per_order ON wallet_entries (order_id, kind)
        WHERE order_id IS NOT NULL;
    CREATE TRIGGER wallet_entries_chain AFTER INSERT ON wallet_entries
    BEGIN
        SELECT RAISE(ABORT, 'wallet: an entry must follow the last entry of its wallet')
        WHERE NEW.seq != 1 + COALESCE((SELECT MAX(seq) FROM wallet_entries
                                       WHERE user_id = NEW.user_id AND id != NEW.id), 0);
        SELECT RAISE(ABORT, 'wallet: balance_after must be the previous balance plus amount')
        WHERE NEW.balance_minor != NEW.amount_minor
              + COALESCE((SELECT balance_minor FROM wallet_entries
                          WHERE user_id = NEW.user_id AND seq = NEW.seq - 1), 0);
        SELECT RAISE(ABORT, 'wallet: one currency per wallet')
        WHERE EXISTS (SELECT 1 FROM wallet_entries WHERE user_id = NEW.user_id
                      AND seq = NEW.seq - 1
                      AND (currency != NEW.currency OR exponent != NEW.exponent));
        SELECT RAISE(ABORT, 'wallet: an order is charged to its owner')
        WHERE NEW.order_id IS NOT NULL AND NEW.user_id IS NOT
              (SELECT owner_id FROM orders WHERE id = NEW.order_id);
        SELECT RAISE(ABORT, 'wallet: a refund needs a charge at least as large')
        WHERE NEW.kind = 'refund' AND NEW.amount_minor > -COALESCE(
              (SELECT amount_minor FROM wallet_entries
               WHERE order_id = NEW.order_id AND kind = 'charge'), 0);
    END;
    CREATE TRIGGER wallet_entries_never_change BEFORE UPDATE ON wallet_entries
    BEGIN
        SELECT RAISE(ABORT, 'wallet: entries are never changed');
    END;
    CREATE TRIGGER wallet_entries_never_deleted BEFORE DELETE ON wallet_entries
    BEGIN
        SELECT RAISE(ABORT, 'wallet: entries are never deleted');
    END;

    ALTER TABLE orders ADD COLUMN price TEXT;   -- shop: the total a customer was quoted
    ALTER TABLE users ADD COLUMN banned INTEGER NOT NULL DEFAULT 0;   -- shop: /deny

    CREATE TABLE shop_prices (
        service_id INTEGER PRIMARY KEY,
        kind       TEXT NOT NULL CHECK (kind IN ('price', 'percent', 'off')),
        value      TEXT,            -- decimal: the price per 1000, or the percent
        updated_at REAL NOT NULL,
        CHECK ((kind = 'off') = (value IS NULL))
    );
    """,
    # v8: wallet top-ups paid with Telegram Stars (storage/payments.py). One row per invoice;
    # the payload names it (id and a random nonce). A payment is recorded once per Telegram
    # charge id (UNIQUE), in the transaction that books its credit (reference stars:<charge>).
    # A payment that matched no payable top-up is kept as 'stray' with no amount: nothing was
    # credited, an admin refunds it. 'refunding': the refund debit is booked and Telegram has
    # not yet confirmed the refund.
    """
    CREATE TABLE topups (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id      INTEGER NOT NULL,
        chat_id      INTEGER NOT NULL,     -- where the invoice was sent
        nonce        TEXT    NOT NULL,
        amount       TEXT,                 -- decimal, in `currency`; NULL: a stray payment
        currency     TEXT    NOT NULL,
        stars        INTEGER NOT NULL CHECK (stars >= 1),
        state        TEXT    NOT NULL DEFAULT 'pending'
                             CHECK (state IN ('pending', 'expired', 'paid', 'refunding',
                                              'refunded', 'stray')),
        draft_id     INTEGER,              -- the order summary it was asked from, if any
        created_at   REAL    NOT NULL,
        expires_at   REAL    NOT NULL,
        paid_at      REAL,
        telegram_payment_charge_id TEXT UNIQUE,
        provider_payment_charge_id TEXT,
        refund_attempts INTEGER NOT NULL DEFAULT 0,
        refunded_at  REAL,
        note         TEXT    NOT NULL DEFAULT '',
        CHECK ((state IN ('pending', 'expired')) = (telegram_payment_charge_id IS NULL)),
        CHECK (amount IS NOT NULL OR state IN ('stray', 'refunding', 'refunded'))
    );
    CREATE INDEX topups_user ON topups (user_id, id);
    """,
    # v9: the language a user chose with /language (NULL: not chosen; Telegram's language_code,
    # kept in `language`, or the default applies).
    """
    ALTER TABLE users ADD COLUMN locale TEXT;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def split_statements(script: str) -> list[str]:
    """Splits an SQL script into complete statements (semicolons inside strings are safe)."""
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            if statement.strip(";").strip() and not _only_comments(statement):
                statements.append(statement)
            buffer = ""
    return statements


def _only_comments(statement: str) -> bool:
    """True when a statement holds nothing but `--` comments and the semicolon."""
    lines = (line.split("--", 1)[0].strip() for line in statement.splitlines())
    return not "".join(lines).strip(";").strip()


async def schema_version(db: aiosqlite.Connection) -> int:
    """The schema version recorded in the file (PRAGMA user_version)."""
    async with reading(db):
        rows = list(await db.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


async def migrate(
    db: aiosqlite.Connection, migrations: Iterable[str] = MIGRATIONS
) -> int:
    """Applies every migration newer than the file's user_version, each in its own transaction."""
    scripts = list(migrations)
    for version, script in enumerate(scripts, start=1):
        rebuild = script.lstrip().startswith(NO_FOREIGN_KEYS)
        if rebuild:  # a no-op inside a transaction, so before it
            await db.execute("PRAGMA foreign_keys = OFF")
        try:
            async with transaction(db):
                # Re-read under the write lock: another process may have migrated meanwhile.
                rows = list(await db.execute_fetchall("PRAGMA user_version"))
                if int(rows[0][0]) >= version:
                    continue
                for statement in split_statements(script):
                    await db.execute(statement)
                if rebuild:
                    broken = list(await db.execute_fetchall("PRAGMA foreign_key_check"))
                    if broken:
                        raise sqlite3.IntegrityError(
                            f"migration {version} left {len(broken)} broken references")
                await db.execute(f"PRAGMA user_version = {version:d}")
        finally:
            if rebuild:
                await db.execute("PRAGMA foreign_keys = ON")
    return await schema_version(db)


async def connect(path: str | Path) -> aiosqlite.Connection:
    """Opens the file with this project's pragmas, without migrating (tests build old versions)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        db.row_factory = aiosqlite.Row
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
        await _enable_wal(db)
        # In WAL mode NORMAL is durable against a crash of the process (SIGKILL included); only
        # an OS crash or power loss can lose the last commits, never corrupt the file.
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        await db.close()
        raise
    return db


async def _enable_wal(db: aiosqlite.Connection) -> None:
    """Switches the file to WAL, retrying while another connection holds it during the switch."""
    # Changing the journal mode needs the file to itself and does not wait on busy_timeout:
    # two processes opening a brand-new file at once get "database is locked" here.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            rows = list(await db.execute_fetchall("PRAGMA journal_mode = WAL"))
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)
            continue
        if str(rows[0][0]).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL here: journal_mode is {rows[0][0]}")
        return


class SchemaTooNew(Exception):
    """The file was written by a newer version of the bot: refused, never misread or migrated."""

    def __init__(self, path: str | Path, found: int) -> None:
        super().__init__(
            f"The database {path} is from a newer version of the bot (schema version {found}; "
            f"this version knows up to {SCHEMA_VERSION}). Run the newer version, or restore a "
            "backup this version made (smm-bot restore <file>)."
        )
        self.found = found


async def open_database(path: str | Path, *, integrity: bool = True) -> aiosqlite.Connection:
    """Opens (creating if needed) the database file and brings its schema up to date.

    A file whose schema is newer than this code's (SCHEMA_VERSION) raises SchemaTooNew before
    anything is written. The first open of a file in a process with `integrity` logs the
    result of an integrity check (`check_integrity`); the bot opens the file several times at
    start-up, once is enough. (The SECRET_KEY check before start-up passes False: when it
    fails, its one line must be all the operator reads.)
    """
    db = await connect(path)
    try:
        found = await schema_version(db)
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(path, found)
        key = _file_key(path)
        if integrity and key not in _checked_files:
            _checked_files.add(key)
            await check_integrity(db, path)
        await migrate(db)
    except BaseException:
        await db.close()
        raise
    return db


_checked_files: set[str] = set()


def size_text(size: int) -> str:
    """A file size for people: '840 KB', '12.3 MB'."""
    if size < 1_000_000:
        return f"{max(size, 0) / 1000:.0f} KB"
    return f"{size / 1e6:.1f} MB"


def _file_key(path: str | Path) -> str:
    """The file's absolute path, to check each file once per process."""
    return str(Path(path).resolve())


def _file_size(path: str | Path) -> int:
    """The size of the file in bytes (0 when it does not exist yet)."""
    try:
        return Path(path).stat().st_size
    except FileNotFoundError:
        return 0


def integrity_pragma(size: int) -> str:
    """`integrity_check` for files up to FULL_CHECK_LIMIT, `quick_check` above.

    integrity_check also verifies that every index matches its table; it took 0.7 s on a 73 MB
    file (100,000 orders, 300,000 history rows, 200,000 notifications) and 3.9 s on 367 MB on the
    2-core development machine, against 0.4 s and 1.9 s for quick_check, which checks the pages
    and the records but not the index contents. Start-up should stay quick on a big file.
    """
    return "integrity_check" if size <= FULL_CHECK_LIMIT else "quick_check"


async def check_integrity(db: aiosqlite.Connection, path: str | Path) -> list[str]:
    """Runs the integrity check (see `integrity_pragma`) and logs its result; returns its lines.

    A damaged file is logged as an error and still opened: the damage may be in an index
    (`REINDEX` repairs it) or in old rows, and refusing to start would not make it better.
    """
    size = _file_size(path)
    pragma = integrity_pragma(size)
    started = time.monotonic()
    async with reading(db):
        rows = list(await db.execute_fetchall(f"PRAGMA {pragma}(20)"))
    lines = [str(row[0]) for row in rows]
    elapsed = time.monotonic() - started
    if lines == ["ok"]:
        log.info("Database %s (%s): %s ok in %.2f s", path, size_text(size), pragma, elapsed)
    else:
        log.error("Database %s is damaged (%s: %s). Restore a backup (smm-bot restore <file>), "
                  "or try sqlite3's .recover.", path, pragma, "; ".join(lines[:5]))
    return lines


async def close_database(db: aiosqlite.Connection) -> None:
    """Waits for the running transaction, if any, then closes the connection (and its reader
    and writer)."""
    state = _state(db)
    async with state.lock:
        if state.reader is not None:
            reader, state.reader = state.reader, None
            reader.close()
        if state.writer is not None:
            writer, state.writer = state.writer, None
            writer.close()
        await db.close()
    _states.pop(db, None)


async def add_reader(db: aiosqlite.Connection, path: str | Path) -> None:
    """Gives the connection a second, read-only connection to the same file, for the reads made
    outside a transaction (`fetch_all`, `fetch_one`), run right on the event loop's thread.

    In WAL mode a reader sees the last committed state and never waits for a writer, nor makes
    one wait: so reads no longer queue on the connection's lock behind writes (and writes not
    behind long reads, like the tracker's). A read inside `transaction(db)` still joins the
    transaction on the writing connection, and sees its own uncommitted writes.

    Why not through aiosqlite's thread like the writes: a point read takes SQLite some
    microseconds, and the hand-over to a thread and back (queue, wake-up, the GIL, the loop's
    self-pipe) costs far more than that. A WAL reader has no lock to wait for, so it cannot
    stall the loop the way a write waiting for the write lock could; writes (which may wait,
    and may checkpoint) stay on the connection's thread.
    """
    state = _state(db)
    if state.reader is None:  # outside WAL a reader would wait for the writer
        state.reader = _loop_twin(path, BUSY_TIMEOUT_MS / 1000, ["query_only = ON"], "a reader")


async def add_writer(db: aiosqlite.Connection, path: str | Path) -> None:
    """Gives the connection a twin on the event loop's thread that runs its writes made outside
    a transaction (`write_many`, `execute_write`, `write_returning`) right there, instead of
    handing each to aiosqlite's thread and back. `transaction(db)` stays on the thread: its
    statements come one await at a time.

    For the persistence, which commits after nearly every update, and the bot's one-statement
    writes (a draft, a claim, a user's row): the commit itself (WAL,
    synchronous=NORMAL: appending pages, no fsync) takes SQLite ~0.1 ms, the hand-over to the
    thread and back (queue, wake-up, the GIL, the loop's self-pipe, a dozen loop rounds) cost
    ~0.3 ms more. The twin never waits, so it cannot stall the loop: its busy timeout is 0, and
    when another process holds the write lock the batch goes to the thread as before, to wait
    there. It never checkpoints either (wal_autocheckpoint 0): every CHECKPOINT_EVERY commits a
    passive checkpoint runs on the connection's thread. It takes its turns on the connection's
    lock like every other statement of the connection.
    """
    state = _state(db)
    if state.writer is None:  # outside WAL a commit would wait for the readers
        state.writer = _loop_twin(
            path, 0, ["busy_timeout = 0", "synchronous = NORMAL", "wal_autocheckpoint = 0",
                      "foreign_keys = ON"], "a loop-thread writer")


def _loop_twin(path: str | Path, timeout: float, pragmas: Sequence[str],
               role: str) -> sqlite3.Connection:
    """A plain sqlite3 connection to the file for the event loop's thread only (rows as
    aiosqlite.Row), with these PRAGMAs; it refuses a database that is not in WAL mode."""
    twin = sqlite3.connect(Path(path), isolation_level=None, timeout=timeout)
    try:
        twin.row_factory = aiosqlite.Row
        for pragma in pragmas:
            twin.execute(f"PRAGMA {pragma}")
        mode = twin.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"{role} needs WAL, not journal_mode {mode}")
    except BaseException:
        twin.close()
        raise
    return twin


async def set_trace_callback(
    db: aiosqlite.Connection, callback: Callable[[str], object] | None
) -> None:
    """SQLite's trace callback (every statement run, as text) on the connection and on its
    reader and writer, if it has them (`add_reader`, `add_writer`); None removes it."""
    await db.set_trace_callback(callback)  # type: ignore[arg-type]  # None removes it
    state = _state(db)
    for twin in (state.reader, state.writer):
        if twin is not None:
            twin.set_trace_callback(callback)


def has_loop_writer(db: aiosqlite.Connection) -> bool:
    """True while the connection is open with a loop-thread writer (`add_writer`)."""
    state = _states.get(db)
    return state is not None and state.writer is not None


def total_changes(db: aiosqlite.Connection) -> int:
    """Rows changed through the connection since it was opened, its loop-thread writer's
    (`add_writer`) included."""
    writer = _state(db).writer
    return db.total_changes + (writer.total_changes if writer is not None else 0)


# --- transactions on a shared connection -------------------------------------------------


@dataclass(eq=False)
class _ConnectionState:
    """Per-connection lock and the scope (one transaction or read) currently holding it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    active: object | None = None
    writing: bool = False
    reader: sqlite3.Connection | None = None  # read-only twin for reads (add_reader)
    writer: sqlite3.Connection | None = None  # loop-thread twin for writes (add_writer)
    writer_commits: int = 0


_states: weakref.WeakKeyDictionary[aiosqlite.Connection, _ConnectionState] = (
    weakref.WeakKeyDictionary()
)
# The scopes the current task (and tasks it spawned meanwhile) holds, on any connection.
_held_scopes: ContextVar[tuple[object, ...]] = ContextVar("storage_held_scopes", default=())


def _state(db: aiosqlite.Connection) -> _ConnectionState:
    """The lock bookkeeping of a connection, created on first use."""
    state = _states.get(db)
    if state is None:
        state = _states[db] = _ConnectionState()
    return state


def _joins(state: _ConnectionState) -> bool:
    """True when this task already holds the connection (a nested call)."""
    return state.active is not None and state.active in _held_scopes.get()


@asynccontextmanager
async def _holding(state: _ConnectionState, *, writing: bool) -> AsyncIterator[None]:
    """Takes the connection's lock and marks this task as its holder."""
    async with state.lock:
        scope = object()
        state.active, state.writing = scope, writing
        token = _held_scopes.set((*_held_scopes.get(), scope))
        try:
            yield
        finally:
            _held_scopes.reset(token)
            state.active, state.writing = None, False


def connection_lock(db: aiosqlite.Connection) -> asyncio.Lock:
    """The lock every statement on this connection is run under (see `take_turns`)."""
    return _state(db).lock


def take_turns(db: aiosqlite.Connection, lock: asyncio.Lock) -> None:
    """Runs this connection's statements under `lock`, another connection's lock, from now on:
    the two connections to one file then take turns, one writer at a time.

    Without this, two connections of one process contend for SQLite's write lock, and the one
    that waits sleeps in SQLite's busy handler (1, 2, 5 … 100 ms at a time) and, after
    BUSY_TIMEOUT_MS, fails with "database is locked". On one asyncio lock the waiter is woken
    the moment the other is done, first come, first served.
    """
    state = _state(db)
    if state.active is not None:
        raise RuntimeError("the connection is in use")
    state.lock = lock


def in_transaction(db: aiosqlite.Connection) -> bool:
    """True when the current task is inside `transaction(db)`."""
    state = _state(db)
    return _joins(state) and state.writing


@asynccontextmanager
async def transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """`BEGIN IMMEDIATE` … `COMMIT` under the connection's lock; joins an enclosing one."""
    state = _state(db)
    if _joins(state):
        if not state.writing:
            raise RuntimeError("cannot start a transaction inside reading(db)")
        yield db
        return
    async with _holding(state, writing=True):
        try:
            await db.execute("BEGIN IMMEDIATE")
            yield db
            await db.execute("COMMIT")
        except BaseException:
            await _rollback(db)
            raise


async def _rollback(db: aiosqlite.Connection) -> None:
    """Rolls back whatever is open; quiet when nothing is (BEGIN failed or COMMIT went through)."""
    # aiosqlite queues each request before its first await and runs the queue in order, and a
    # cancelled await does not unqueue a request: so this ROLLBACK always runs after the
    # BEGIN/COMMIT it follows, and before anything the next lock holder sends.
    with contextlib.suppress(sqlite3.Error, ValueError):
        await db.execute("ROLLBACK")


class Written(Protocol):
    """What a write statement tells (an aiosqlite or a sqlite3 cursor)."""

    @property
    def rowcount(self) -> int: ...

    @property
    def lastrowid(self) -> int | None: ...


async def execute_write(
    db: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()
) -> Written:
    """One write statement under the connection's lock; joins an enclosing transaction.

    Outside a transaction it runs on its own: in autocommit mode SQLite makes a single
    statement atomic by itself (all of it or nothing, taking the write lock up front like
    BEGIN IMMEDIATE), so a write that is one statement costs one round trip to the database
    thread instead of three (BEGIN, the statement, COMMIT), and none with a loop-thread writer
    (`add_writer`).
    """
    state = _state(db)
    values = tuple(params)
    if _joins(state):
        if not state.writing:
            raise RuntimeError("cannot write inside reading(db)")
        return await db.execute(sql, values)
    async with _holding(state, writing=True):
        done: Written = _on_loop(db, state, lambda writer: writer.execute(sql, values))
        if done is not _BUSY:
            return done
        return await db.execute(sql, values)


async def write_returning(
    db: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()
) -> list[aiosqlite.Row]:
    """`execute_write` for a statement with RETURNING: the rows it returned (one round trip, or
    none with a loop-thread writer)."""
    state = _state(db)
    values = tuple(params)
    if _joins(state):
        if not state.writing:
            raise RuntimeError("cannot write inside reading(db)")
        return list(await db.execute_fetchall(sql, values))
    async with _holding(state, writing=True):
        rows: list[aiosqlite.Row] = _on_loop(
            db, state, lambda writer: writer.execute(sql, values).fetchall())
        if rows is not _BUSY:
            return rows
        return list(await db.execute_fetchall(sql, values))


async def write_many(
    db: aiosqlite.Connection, batch: Sequence[tuple[str, Sequence[tuple[Any, ...]]]]
) -> None:
    """Several statements, each run for its rows (``executemany``), as ONE transaction in ONE
    round trip to the connection's thread: ``BEGIN IMMEDIATE``, the statements, ``COMMIT``
    (``ROLLBACK`` on any error) run there back to back, under the connection's lock.

    `transaction(db)` costs a round trip per statement plus two; a batch of writes known in
    advance (the persistence's rows of an update) needs none of the awaits in between. A
    cancelled caller cannot split it either: the thread runs the whole of it, then the caller
    sees the cancellation. Inside an enclosing transaction the statements join it. A single
    row of a single statement runs without BEGIN/COMMIT (atomic on its own).

    A connection with a loop-thread writer (`add_writer`) runs the batch right there, with no
    round trip at all, unless another process holds the write lock.
    """
    state = _state(db)
    if _joins(state):
        if not state.writing:
            raise RuntimeError("cannot write inside reading(db)")
        for sql, rows in batch:
            await db.executemany(sql, rows)
        return

    def run(conn: sqlite3.Connection) -> None:
        if len(batch) == 1 and len(batch[0][1]) == 1:  # one statement is atomic on its own
            conn.execute(batch[0][0], batch[0][1][0])
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in batch:
                conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async with _holding(state, writing=True):
        if _on_loop(db, state, run) is not _BUSY:
            return
        # aiosqlite runs every request of a connection on its one thread, in order; _execute
        # is how its own methods queue a function there (no public name for it).
        await db._execute(run, db._conn)  # type: ignore[no-untyped-call]


_BUSY: Any = object()  # `_on_loop`'s answer when the loop-thread writer could not write now
T = TypeVar("T")


def _on_loop(db: aiosqlite.Connection, state: _ConnectionState,
             write: Callable[[sqlite3.Connection], T]) -> T:
    """Runs `write` on the connection's loop-thread writer (`add_writer`), under the lock the
    caller holds; `_BUSY` when there is none or another process holds the write lock, and the
    caller goes to the connection's thread instead (to wait there, not on the loop)."""
    writer = state.writer
    if writer is None:
        return _BUSY  # type: ignore[no-any-return]
    try:
        result = write(writer)
    except sqlite3.OperationalError as exc:
        if not _busy(exc):
            raise
        return _BUSY  # type: ignore[no-any-return]  # a backup, the sqlite3 shell: it waits
    _committed_on_loop(db, state)
    return result


def _busy(exc: sqlite3.OperationalError) -> bool:
    """True for SQLITE_BUSY / SQLITE_LOCKED (and their extended codes): the write lock is held."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _committed_on_loop(db: aiosqlite.Connection, state: _ConnectionState) -> None:
    """Counts a commit of the loop-thread writer; every CHECKPOINT_EVERY commits, a passive
    checkpoint on the connection's thread moves the WAL's pages into the file (the writer never
    checkpoints itself: a checkpoint takes tens of milliseconds, too long for the loop)."""
    state.writer_commits += 1
    if state.writer_commits % CHECKPOINT_EVERY == 0:
        task = asyncio.get_running_loop().create_task(_checkpoint(db, state))
        _checkpoints.add(task)
        task.add_done_callback(_checkpoints.discard)


async def _checkpoint(db: aiosqlite.Connection, state: _ConnectionState) -> None:
    """`PRAGMA wal_checkpoint(PASSIVE)` on the connection's thread, between its transactions."""
    try:
        async with _holding(state, writing=False):
            if state.writer is not None:  # not closed meanwhile
                await db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except (sqlite3.Error, ValueError) as exc:  # the next one will do; nothing is lost
        log.warning("WAL checkpoint failed: %s", exc)


#: Commits of a loop-thread writer (`add_writer`) between two passive WAL checkpoints.
CHECKPOINT_EVERY = 200
_checkpoints: set[asyncio.Task[None]] = set()


@asynccontextmanager
async def reading(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """Holds the connection's lock for reads (no BEGIN); joins an enclosing transaction."""
    state = _state(db)
    if _joins(state):
        yield db
        return
    async with _holding(state, writing=False):
        yield db


async def fetch_all(
    db: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = (), *, many: bool = False
) -> list[aiosqlite.Row]:
    """Runs a query and returns every row: on the connection's reader if it has one (no lock
    to wait for), inside an enclosing transaction on that transaction's connection, else under
    `reading(db)`. `many`: rows by the thousand (the tracker's due orders), read under
    `reading(db)` on the connection's thread, so the loop keeps answering updates meanwhile
    (on the loop, 20,000 rows held it for ~0.2 s)."""
    state = _state(db)
    if not many and not _joins(state):
        # A SELECT on the loop-thread writer when there is one: after the bot's own writes its
        # page cache is still good, where the reader's is dropped by every write (SQLite drops
        # a connection's cache when another one has written). Anything but a SELECT goes to
        # the reader, which refuses to write.
        if state.writer is not None and sql.lstrip()[:6].upper() == "SELECT":
            try:
                return state.writer.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                # A WAL read is busy only for a moment (another process recovering the WAL):
                # the reader waits for it; the writer never waits.
        if state.reader is not None:
            return state.reader.execute(sql, params).fetchall()
    async with reading(db):
        return list(await db.execute_fetchall(sql, params))


#: Most values bound to one statement (SQLite's limit before 3.32; 32,766 since).
MAX_BOUND = 999


@functools.cache
def _values(width: int, count: int) -> str:
    """"(?, ?), (?, ?)": the VALUES of `count` rows of `width` values."""
    row = "(" + ", ".join("?" * width) + ")"
    return ", ".join([row] * count)


def _insert_statement(insert: str,
                      rows: Sequence[Sequence[Any]]) -> tuple[str, Sequence[Any], bool]:
    """`insert_rows`' statement for `rows`: (SQL, its values, whether it runs per row)."""
    width = len(rows[0])
    if len(rows) * width <= MAX_BOUND:
        return (f"{insert} VALUES {_values(width, len(rows))}",
                [value for row in rows for value in row], False)
    return f"{insert} VALUES ({', '.join('?' * width)})", rows, True


async def insert_rows(db: aiosqlite.Connection, insert: str,
                      rows: Sequence[Sequence[Any]]) -> None:
    """Runs ``insert`` (``INSERT INTO t (a, b)``) for `rows`, in order, in one call: one
    statement of many rows (``VALUES (?, ?), (?, ?), …``) when they fit in MAX_BOUND values, as
    a tracker batch does, rather than one statement run per row: a row then costs SQLite much
    less (a CHECK's ``IN (…)`` list, for one, is built once per statement, not for each row).
    More rows than that (a /status of 1,000 ids) are one ``executemany``, so the number of
    calls never grows with the rows. Call it inside a transaction."""
    if not rows:
        return
    sql, values, per_row = _insert_statement(insert, rows)
    if per_row:
        await db.executemany(sql, values)
    else:
        await db.execute(sql, values)


def insert_rows_now(conn: sqlite3.Connection, insert: str,
                    rows: Sequence[Sequence[Any]]) -> None:
    """`insert_rows` on a plain sqlite3 connection, for work run by `run_in_transaction`."""
    if not rows:
        return
    sql, values, per_row = _insert_statement(insert, rows)
    if per_row:
        conn.executemany(sql, values)
    else:
        conn.execute(sql, values)


async def run_in_transaction(db: aiosqlite.Connection,
                             work: Callable[[sqlite3.Connection], T]) -> T:
    """Runs `work` (plain sqlite3 calls, no Python work worth the name) on the connection's
    thread, in the enclosing `transaction(db)`, in one round trip; its result.

    Each statement awaited is a round trip to that thread, ~65 µs of CPU (the thread woken, the
    loop woken back); a tracker batch's five statements cost more that way than SQLite spent
    on them. An error in `work` reaches the caller, and the enclosing transaction rolls back."""
    state = _state(db)
    if not _joins(state) or not state.writing:
        raise RuntimeError("run_in_transaction needs an enclosing transaction(db)")
    # aiosqlite runs every request of a connection on its one thread, in order; _execute is
    # how its own methods queue a function there (no public name for it), as in write_many.
    result: T = await db._execute(work, db._conn)  # type: ignore[no-untyped-call]
    return result


async def fetch_one(
    db: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()
) -> aiosqlite.Row | None:
    """Runs a query under `reading(db)` and returns its first row, or None."""
    rows = await fetch_all(db, sql, params)
    return rows[0] if rows else None


# --- values ------------------------------------------------------------------------------


def timestamp(now: float | None = None) -> float:
    """`now` if given, else the current time: unix seconds, as stored."""
    return time.time() if now is None else now


def decimal_text(value: Decimal | None) -> str | None:
    """A Decimal as the TEXT stored for money (plain notation, exact); None stays None."""
    if value is None:
        return None
    if not isinstance(value, Decimal):
        raise TypeError(f"money must be Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"money must be finite, not {value}")
    text = str(value)  # plain already unless an exponent shows ("1E-7"); str is 4x cheaper
    return format(value, "f") if "E" in text else text


def text_decimal(value: Any) -> Decimal | None:
    """Reads a decimal TEXT column back as Decimal; NULL stays None."""
    if value is None:
        return None
    return Decimal(str(value))


def opt_int(value: Any) -> int | None:
    """An INTEGER column that may be NULL."""
    return None if value is None else int(value)


def opt_float(value: Any) -> float | None:
    """A REAL column that may be NULL."""
    return None if value is None else float(value)


def opt_bool(value: Any) -> bool | None:
    """A 0/1 column that may be NULL."""
    return None if value is None else bool(value)
