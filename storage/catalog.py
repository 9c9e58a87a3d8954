"""The services catalogue cache: the panel's service list as JSON, with the time it was fetched."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from storage.db import fetch_one, timestamp, transaction


@dataclass(frozen=True, slots=True)
class CachedServices:
    """A cached service list: the caller's JSON (decimals as strings) and its fetch time."""

    source: str
    payload_json: str
    fetched_at: float


async def save_services(
    db: aiosqlite.Connection, *, source: str, payload_json: str, fetched_at: float | None = None
) -> None:
    """Replaces the cached list for `source` (a panel URL / account label of the caller's)."""
    async with transaction(db):
        await db.execute(
            "INSERT INTO services_cache (source, payload, fetched_at) VALUES (?, ?, ?)"
            " ON CONFLICT (source) DO UPDATE SET payload = excluded.payload,"
            " fetched_at = excluded.fetched_at",
            (source, payload_json, timestamp(fetched_at)),
        )


async def load_services(db: aiosqlite.Connection, *, source: str) -> CachedServices | None:
    """The cached list for `source`, or None; the caller judges whether it is fresh enough."""
    row = await fetch_one(
        db, "SELECT payload, fetched_at FROM services_cache WHERE source = ?", (source,)
    )
    if row is None:
        return None
    return CachedServices(source, str(row["payload"]), float(row["fetched_at"]))


async def clear_services(db: aiosqlite.Connection, *, source: str | None = None) -> int:
    """Forgets the cached list of one source, or of all; how many were dropped."""
    async with transaction(db):
        if source is None:
            cursor = await db.execute("DELETE FROM services_cache")
        else:
            cursor = await db.execute("DELETE FROM services_cache WHERE source = ?", (source,))
    return cursor.rowcount


async def has_services(db: aiosqlite.Connection, *, source: str) -> bool:
    """Whether a list is cached for `source` (without reading it)."""
    row = await fetch_one(db, "SELECT 1 FROM services_cache WHERE source = ?", (source,))
    return row is not None


async def count_payload(db: aiosqlite.Connection, *, payload_json: str) -> int:
    """How many sources hold exactly this payload (the caller's references to shared rows)."""
    row = await fetch_one(
        db, "SELECT COUNT(*) FROM services_cache WHERE payload = ?", (payload_json,)
    )
    return 0 if row is None else int(row[0])
