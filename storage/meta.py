"""Facts about the database itself, as a tiny name → bytes table (e.g. the SECRET_KEY canary)."""

from __future__ import annotations

import aiosqlite

from storage.db import fetch_one, timestamp, transaction

# The token `KeyBox.canary()` made with the SECRET_KEY the stored panel keys are encrypted with.
SECRET_KEY_CANARY = "secret_key_canary"


async def get_meta(db: aiosqlite.Connection, name: str) -> bytes | None:
    """The value stored under `name`, or None."""
    row = await fetch_one(db, "SELECT value FROM meta WHERE name = ?", (name,))
    return None if row is None else bytes(row["value"])


async def set_meta(
    db: aiosqlite.Connection, name: str, value: bytes, *, now: float | None = None
) -> None:
    """Stores (or replaces) the value under `name`."""
    async with transaction(db):
        await db.execute(
            "INSERT INTO meta (name, value, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at",
            (name, value, timestamp(now)),
        )


async def delete_meta(db: aiosqlite.Connection, name: str) -> bool:
    """Forgets the value under `name`; False when there was none."""
    async with transaction(db):
        cursor = await db.execute("DELETE FROM meta WHERE name = ?", (name,))
    return cursor.rowcount == 1
