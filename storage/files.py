"""The database as a file: online backup, restore, checks of a copy, and a probe from outside.

Plain `sqlite3` connections of their own (no asyncio, no shared connection): `smm-bot backup`
and `restore` run in their own process, and the health check must not queue behind the bot's
transactions.

Backup uses SQLite's online backup API in a single step (`pages=-1`): one read transaction
copies every page, so the copy is one consistent snapshot. In WAL mode a reader never blocks
the writers, so the bot keeps working meanwhile. (Copying in several steps would let a write of
the bot restart the copy from the beginning, again and again on a busy bot.)
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from storage.db import BUSY_TIMEOUT_MS, SCHEMA_VERSION, integrity_pragma, size_text

#: A table every database of this bot has; a file without it is something else.
_MARKER_TABLE = "orders"


class DatabaseFileError(Exception):
    """A backup, a restore or a probe could not be done; the text is one line for the operator."""


@dataclass(frozen=True, slots=True)
class FileReport:
    """What a database file holds: schema version, integrity check result, rows per table."""

    path: Path
    size: int
    schema_version: int
    check: str  # which pragma ran: integrity_check or quick_check
    problems: tuple[str, ...]  # empty when the check said "ok"
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def intact(self) -> bool:
        """True when the integrity check found nothing wrong."""
        return not self.problems

    def summary(self) -> str:
        """'1.2 MB, schema v4, integrity_check ok, 120 orders'."""
        state = "ok" if self.intact else "FAILED: " + "; ".join(self.problems[:3])
        return (f"{size_text(self.size)}, schema v{self.schema_version}, {self.check} {state}, "
                f"{self.rows.get(_MARKER_TABLE, 0)} orders")


def _uri(path: Path, mode: str) -> str:
    """An SQLite URI for an existing file (`mode=rw` never creates one, `ro` never writes)."""
    return f"{path.resolve().as_uri()}?mode={mode}"


def _open_existing(path: Path, mode: str = "rw") -> sqlite3.Connection:
    """Opens a file that must already exist; DatabaseFileError if it does not or cannot."""
    if not path.is_file():
        raise DatabaseFileError(f"there is no database file at {path}")
    try:
        return sqlite3.connect(_uri(path, mode), uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                               isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseFileError(f"cannot open {path}: {exc}") from None


def inspect(conn: sqlite3.Connection, path: Path) -> FileReport:
    """Checks an open database: schema version, integrity (see `integrity_pragma`), row counts."""
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    pragma = integrity_pragma(size)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        lines = tuple(str(row[0]) for row in conn.execute(f"PRAGMA {pragma}(20)"))
        tables = [str(row[0]) for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name")]
        rows = {name: int(conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
                for name in tables} if lines == ("ok",) else {}
    except sqlite3.DatabaseError as exc:  # "file is not a database" and the like
        raise DatabaseFileError(f"{path} is not a readable SQLite database ({exc})") from None
    problems = () if lines == ("ok",) else lines
    return FileReport(path=path, size=size, schema_version=version, check=pragma,
                      problems=problems, rows=rows)


def inspect_file(path: Path) -> FileReport:
    """`inspect` on a file, opened read-only."""
    conn = _open_existing(path, "ro")
    try:
        return inspect(conn, path)
    finally:
        conn.close()


def _fsync(path: Path) -> None:
    """Flushes a file (or a directory entry) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_database(source: Path, target: Path) -> FileReport:
    """Copies the live database `source` to `target`, consistent while the bot writes.

    The copy is written beside `target` under a temporary name, checked (integrity, schema),
    switched to a self-contained single file (journal_mode DELETE), flushed to disk, and only
    then renamed over `target`: a failed or interrupted backup never replaces a good one.
    """
    if target.resolve() == source.resolve():
        raise DatabaseFileError("the backup file must not be the database itself")
    if target.is_dir():
        raise DatabaseFileError(f"{target} is a directory; give a file name")
    src = _open_existing(source, "rw")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        dst = sqlite3.connect(partial, isolation_level=None)
        try:
            try:
                src.backup(dst, pages=-1, sleep=0.05)
            except sqlite3.Error as exc:
                raise DatabaseFileError(f"the backup of {source} failed: {exc}") from None
            dst.execute("PRAGMA journal_mode = DELETE")
            report = inspect(dst, partial)
        finally:
            dst.close()
        if not report.intact:
            raise DatabaseFileError(
                f"the copy of {source} failed its {report.check} ({'; '.join(report.problems[:3])})"
                "; the database itself may be damaged")
        _fsync(partial)
        os.replace(partial, target)
        _fsync(target.parent)
    finally:
        src.close()
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return FileReport(path=target, size=target.stat().st_size,
                      schema_version=report.schema_version, check=report.check,
                      problems=report.problems, rows=report.rows)


def check_backup(path: Path) -> FileReport:
    """A backup fit to restore: intact, this bot's schema, not newer than this code knows."""
    report = inspect_file(path)
    if not report.intact:
        raise DatabaseFileError(
            f"{path} is damaged ({report.check}: {'; '.join(report.problems[:3])})")
    if report.schema_version < 1 or _MARKER_TABLE not in report.rows:
        raise DatabaseFileError(f"{path} is not a database of this bot")
    if report.schema_version > SCHEMA_VERSION:
        raise DatabaseFileError(
            f"{path} is from a newer version of the bot (schema version "
            f"{report.schema_version}; this version knows up to {SCHEMA_VERSION})")
    return report


def _lock_exclusively(conn: sqlite3.Connection, path: Path) -> None:
    """Takes the file for this connection alone, or says it is in use (the bot still runs).

    In exclusive locking mode the lock taken by the first transaction is kept until the
    connection closes. Any other connection to the file in WAL mode (the running bot holds
    several) makes it fail at once ("database is locked").
    """
    try:
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise DatabaseFileError(
                f"the database {path} is in use: stop the bot first (and any backup running); "
                "nothing was changed") from None
        raise DatabaseFileError(f"cannot open {path}: {exc}") from None


def restore_database(backup: Path, target: Path, *,
                     now: float | None = None) -> tuple[FileReport, Path | None]:
    """Replaces the database `target` with the backup; the bot must be stopped.

    The backup is checked first (`check_backup`); nothing changes if it fails. The current
    database is kept beside it (`<name>.before-restore-<time><suffix>`, returned) and then
    overwritten page by page through SQLite's backup API on a connection holding the file
    exclusively, so a bot starting meanwhile waits or fails instead of reading half a file, and
    leftover WAL files of the old database cannot be replayed over the restored one.
    """
    if backup.resolve() == target.resolve():
        raise DatabaseFileError("the backup file is the database itself")
    try:
        check_backup(backup)
    except DatabaseFileError as exc:
        raise DatabaseFileError(f"{exc}; nothing was changed") from None
    existed = target.is_file() and target.stat().st_size > 0
    target.parent.mkdir(parents=True, exist_ok=True)
    dst = sqlite3.connect(target, timeout=0, isolation_level=None)
    kept: Path | None = None
    try:
        _lock_exclusively(dst, target)
        if existed:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
            kept = target.with_name(f"{target.stem}.before-restore-{stamp}{target.suffix}")
            keep = sqlite3.connect(kept, isolation_level=None)
            try:
                dst.backup(keep)
                keep.execute("PRAGMA journal_mode = DELETE")
            finally:
                keep.close()
        src = _open_existing(backup, "ro")
        try:
            src.backup(dst)
        except sqlite3.Error as exc:
            raise DatabaseFileError(f"restoring {backup} failed ({exc}); the database was left "
                                    "as it was") from None
        finally:
            src.close()
        report = inspect(dst, target)
    finally:
        dst.close()
    if not report.intact:
        raise DatabaseFileError(f"the restored database failed its {report.check}; the previous "
                                f"one is kept as {kept}")
    return report, kept


@dataclass(frozen=True, slots=True)
class Probe:
    """What a fresh connection to the live file saw: notifications per outbox state."""

    notifications: dict[str, int]


def probe(path: Path, *, timeout: float = 2.0) -> Probe:
    """Opens the live file anew and reads a little: is it there and readable, and the outbox.

    A fresh connection notices what the bot's open connections would not until the next
    start: the file deleted, moved or made unreadable.
    """
    if not path.is_file():
        raise DatabaseFileError(f"the database file {path} is missing")
    try:
        conn = sqlite3.connect(_uri(path, "rw"), uri=True, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseFileError(f"cannot open the database {path}: {exc}") from None
    try:
        states = {str(row[0]): int(row[1]) for row in conn.execute(
            "SELECT state, count(*) FROM notifications GROUP BY state")}
    except sqlite3.Error as exc:
        raise DatabaseFileError(f"cannot read the database {path}: {exc}") from None
    finally:
        conn.close()
    return Probe(notifications=states)
