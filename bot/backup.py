"""`smm-bot backup <file>` and `smm-bot restore <file>`: what the operator types and reads.

The work is in `storage.files`; this module finds the database (DATABASE_PATH, from the
environment or `.env`, as the bot reads it), prints one line, and returns the exit code:
0 done, 1 refused or failed (the line says why; nothing was changed), 2 a bad setting.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bot.config import ConfigError, load_database_path
from storage.files import DatabaseFileError, backup_database, restore_database


def _fail(command: str, reason: str, code: int = 1) -> int:
    """Prints `smm-bot <command>: <reason>` on stderr; returns the exit code."""
    print(f"smm-bot {command}: {reason}", file=sys.stderr)
    return code


def backup_command(file: Path) -> int:
    """Copies the database to `file` while the bot may be running (SQLite online backup)."""
    try:
        database = load_database_path()
    except ConfigError as exc:
        return _fail("backup", str(exc), 2)
    started = time.monotonic()
    try:
        report = backup_database(database, file)
    except DatabaseFileError as exc:
        return _fail("backup", str(exc))
    except OSError as exc:
        return _fail("backup", f"cannot write {file}: {exc.strerror or exc}")
    print(f"Backed up {database} to {file}: {report.summary()}, in "
          f"{time.monotonic() - started:.2f} s.")
    return 0


def restore_command(file: Path) -> int:
    """Replaces the database with the backup `file`; the bot must be stopped."""
    try:
        database = load_database_path()
    except ConfigError as exc:
        return _fail("restore", str(exc), 2)
    try:
        report, kept = restore_database(file, database)
    except DatabaseFileError as exc:
        return _fail("restore", str(exc))
    except OSError as exc:
        return _fail("restore", f"cannot restore into {database}: {exc.strerror or exc}")
    previous = f" The previous database is kept as {kept}." if kept is not None else ""
    print(f"Restored {database} from {file}: {report.summary()}.{previous} Start the bot again.")
    return 0
