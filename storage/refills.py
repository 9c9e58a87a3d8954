"""Refills: the panel's refill id for an order, its last status, and every change seen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiosqlite

from bot.panel.models import FINAL_REFILL_STATUSES, normalize_status
from storage.db import fetch_all, fetch_one, opt_float, timestamp, transaction
from storage.orders import StatusChange
from storage.outbox import Notice, enqueue_notice


@dataclass(frozen=True, slots=True)
class Refill:
    """A refill requested for an order, as last seen on the panel."""

    id: int
    order_id: int
    account: str
    panel_refill_id: int
    status: str
    final: bool
    created_at: float
    updated_at: float
    last_checked_at: float | None


_COLUMNS = (
    "id, order_id, account, panel_refill_id, status, final, created_at, updated_at,"
    " last_checked_at"
)


def _refill(row: Any) -> Refill:
    """Builds a Refill from a row of `_COLUMNS`."""
    return Refill(
        id=int(row["id"]),
        order_id=int(row["order_id"]),
        account=str(row["account"]),
        panel_refill_id=int(row["panel_refill_id"]),
        status=str(row["status"]),
        final=bool(row["final"]),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        last_checked_at=opt_float(row["last_checked_at"]),
    )


async def add_refill(
    db: aiosqlite.Connection,
    *,
    order_id: int,
    panel_refill_id: int,
    status: str = "Pending",
    now: float | None = None,
) -> Refill:
    """Records a refill the panel accepted for an order (idempotent); the stored refill."""
    at = timestamp(now)
    status = normalize_status(status)
    async with transaction(db):
        # The account comes from the order: refill ids are unique per panel account.
        cursor = await db.execute(
            "INSERT INTO refills (order_id, account, panel_refill_id, status, final, created_at,"
            " updated_at) SELECT id, account, ?, ?, ?, ?, ? FROM orders WHERE id = ?"
            " ON CONFLICT (account, panel_refill_id) DO NOTHING",
            (panel_refill_id, status, int(status in FINAL_REFILL_STATUSES), at, at, order_id),
        )
        if cursor.rowcount == 1:
            await db.execute(
                "INSERT INTO refill_status_history (refill_id, status, observed_at)"
                " VALUES (?, ?, ?)",
                (cursor.lastrowid, status, at),
            )
        row = await fetch_one(
            db,
            f"SELECT {_COLUMNS} FROM refills WHERE panel_refill_id = ?"
            " AND account = (SELECT account FROM orders WHERE id = ?)",
            (panel_refill_id, order_id),
        )
    if row is None:
        raise LookupError(f"no order {order_id}")
    return _refill(row)


async def get_refill(db: aiosqlite.Connection, refill_id: int) -> Refill | None:
    """The refill with this local id, or None."""
    row = await fetch_one(db, f"SELECT {_COLUMNS} FROM refills WHERE id = ?", (refill_id,))
    return None if row is None else _refill(row)


async def record_refill_status(
    db: aiosqlite.Connection,
    refill_id: int,
    *,
    status: str,
    now: float | None = None,
    notify: Notice | None = None,
) -> bool:
    """Stores a refill poll result; True (plus history and `notify` queued) if it changed."""
    at = timestamp(now)
    status = normalize_status(status)
    async with transaction(db):
        row = await fetch_one(
            db, "SELECT status, order_id FROM refills WHERE id = ?", (refill_id,)
        )
        if row is None:
            raise LookupError(f"no refill {refill_id}")
        changed: bool = row["status"] != status
        await db.execute(
            "UPDATE refills SET status = ?, final = ?, last_checked_at = ?,"
            " updated_at = CASE WHEN ? THEN ? ELSE updated_at END WHERE id = ?",
            (status, int(status in FINAL_REFILL_STATUSES), at, int(changed), at, refill_id),
        )
        if changed:
            await db.execute(
                "INSERT INTO refill_status_history (refill_id, status, observed_at)"
                " VALUES (?, ?, ?)",
                (refill_id, status, at),
            )
            if notify is not None:
                await enqueue_notice(db, notify, order_id=int(row["order_id"]), now=at)
    return changed


async def refills_for_order(db: aiosqlite.Connection, order_id: int) -> list[Refill]:
    """The refills of one order, oldest first."""
    rows = await fetch_all(
        db, f"SELECT {_COLUMNS} FROM refills WHERE order_id = ? ORDER BY id", (order_id,)
    )
    return [_refill(row) for row in rows]


async def open_refills(db: aiosqlite.Connection, *, limit: int | None = None) -> list[Refill]:
    """Refills not yet final, least recently checked first."""
    rows = await fetch_all(
        db,
        f"SELECT {_COLUMNS} FROM refills WHERE final = 0"
        " ORDER BY COALESCE(last_checked_at, 0), id LIMIT ?",
        (-1 if limit is None else limit,),
    )
    return [_refill(row) for row in rows]


async def refill_history(db: aiosqlite.Connection, refill_id: int) -> list[StatusChange]:
    """Every status seen for a refill, oldest first."""
    rows = await fetch_all(
        db,
        "SELECT status, observed_at FROM refill_status_history WHERE refill_id = ? ORDER BY id",
        (refill_id,),
    )
    return [StatusChange(str(r["status"]), float(r["observed_at"])) for r in rows]
