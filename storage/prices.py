"""Shop prices set per service by an admin (/price): a price, a percent, or off (hidden)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import aiosqlite

from storage.db import decimal_text, fetch_all, text_decimal, timestamp, transaction

OverrideKind = Literal["price", "percent", "off"]


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """One service's own price rule: a price per 1000 (`price`), a markup (`percent`), or
    not sold (`off`, value None)."""

    service_id: int
    kind: OverrideKind
    value: Decimal | None


async def get_overrides(db: aiosqlite.Connection) -> dict[int, PriceOverride]:
    """Every service's own price rule, by service id."""
    rows = await fetch_all(db, "SELECT service_id, kind, value FROM shop_prices")
    return {int(row[0]): PriceOverride(int(row[0]), row[1], text_decimal(row[2]))
            for row in rows}


async def set_override(db: aiosqlite.Connection, service_id: int, kind: OverrideKind,
                       value: Decimal | None, *, now: float | None = None) -> None:
    """Sets (or replaces) one service's price rule."""
    async with transaction(db):
        await db.execute(
            "INSERT INTO shop_prices (service_id, kind, value, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (service_id) DO UPDATE SET kind = excluded.kind,"
            " value = excluded.value, updated_at = excluded.updated_at",
            (service_id, kind, decimal_text(value), timestamp(now)),
        )


async def clear_override(db: aiosqlite.Connection, service_id: int) -> bool:
    """Drops one service's price rule (back to the markup); False when it had none."""
    async with transaction(db):
        cursor = await db.execute("DELETE FROM shop_prices WHERE service_id = ?", (service_id,))
    return cursor.rowcount == 1
