"""Refills: the panel's refill id for an order, its last status, and every change seen."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

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
    next_check_at: float | None = None
    lost_strikes: int = 0
    error: str | None = None


_COLUMNS = (
    "id, order_id, account, panel_refill_id, status, final, created_at, updated_at,"
    " last_checked_at, next_check_at, lost_strikes, error"
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
        next_check_at=opt_float(row["next_check_at"]),
        lost_strikes=int(row["lost_strikes"]),
        error=row["error"],
    )


async def add_refill(
    db: aiosqlite.Connection,
    *,
    order_id: int,
    panel_refill_id: int,
    status: str = "Pending",
    final: bool = False,
    now: float | None = None,
) -> Refill:
    """Records a refill the panel accepted for an order (idempotent); the stored refill."""
    at = timestamp(now)
    async with transaction(db):
        # The account comes from the order: refill ids are unique per panel account.
        cursor = await db.execute(
            "INSERT INTO refills (order_id, account, panel, panel_refill_id, status, final,"
            " created_at, updated_at) SELECT id, account, panel, ?, ?, ?, ?, ? FROM orders"
            " WHERE id = ? ON CONFLICT (panel, account, panel_refill_id) DO NOTHING",
            (panel_refill_id, status, int(final), at, at, order_id),
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
            " AND (account, panel) = (SELECT account, panel FROM orders WHERE id = ?)",
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
    final: bool,
    now: float | None = None,
    next_check_at: float | None = None,
    notify: Notice | None = None,
) -> bool:
    """Stores a refill poll result; True (plus history and `notify` queued) if it changed."""
    at = timestamp(now)
    async with transaction(db):
        row = await fetch_one(
            db, "SELECT status, order_id FROM refills WHERE id = ?", (refill_id,)
        )
        if row is None:
            raise LookupError(f"no refill {refill_id}")
        changed: bool = row["status"] != status
        await db.execute(
            "UPDATE refills SET status = ?, final = ?, last_checked_at = ?, next_check_at = ?,"
            " lost_strikes = 0, updated_at = CASE WHEN ? THEN ? ELSE updated_at END WHERE id = ?",
            (status, int(final), at, next_check_at, int(changed), at, refill_id),
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


async def refills_for_orders(
    db: aiosqlite.Connection, order_ids: Sequence[int]
) -> dict[int, list[Refill]]:
    """The refills of many orders in one query: {order id: refills, oldest first}."""
    found: dict[int, list[Refill]] = {int(i): [] for i in order_ids}
    if not found:
        return found
    rows = await fetch_all(
        db,
        f"SELECT {_COLUMNS} FROM refills WHERE order_id IN (SELECT value FROM json_each(?))"
        " ORDER BY id",
        (json.dumps(list(found)),),
    )
    for refill in map(_refill, rows):
        found[refill.order_id].append(refill)
    return found


async def add_refills(
    db: aiosqlite.Connection, requested: Sequence[tuple[int, int]], *, now: float | None = None
) -> int:
    """Records many `(order id, panel refill id)` the panel accepted, in one transaction (as
    `add_refill` each: idempotent, status Pending); how many were new."""
    if not requested:
        return 0
    at = timestamp(now)
    async with transaction(db):
        before = await fetch_one(db, "SELECT COALESCE(MAX(id), 0) FROM refills")
        await db.executemany(
            "INSERT INTO refills (order_id, account, panel, panel_refill_id, status, final,"
            " created_at, updated_at) SELECT id, account, panel, ?, 'Pending', 0, ?, ?"
            " FROM orders WHERE id = ? ON CONFLICT (panel, account, panel_refill_id) DO NOTHING",
            [(refill_id, at, at, order_id) for order_id, refill_id in requested],
        )
        start = int(before[0]) if before is not None else 0
        cursor = await db.execute(
            "INSERT INTO refill_status_history (refill_id, status, observed_at)"
            " SELECT id, status, ? FROM refills WHERE id > ?",
            (at, start),
        )
    return max(cursor.rowcount, 0)


async def open_refills(db: aiosqlite.Connection, *, limit: int | None = None) -> list[Refill]:
    """Refills not yet final, least recently checked first."""
    rows = await fetch_all(
        db,
        f"SELECT {_COLUMNS} FROM refills WHERE final = 0"
        " ORDER BY COALESCE(last_checked_at, 0), id LIMIT ?",
        (-1 if limit is None else limit,),
    )
    return [_refill(row) for row in rows]


@dataclass(frozen=True, slots=True)
class DueRefill:
    """A refill due for a status check, with what its message needs of its order."""

    id: int
    order_id: int
    owner_id: int
    account: str
    panel_refill_id: int
    status: str
    created_at: float
    lost_strikes: int
    panel_order_id: int | None
    service_name: str | None

    @property
    def remote_id(self) -> int:
        """The id the panel knows it by."""
        return self.panel_refill_id


async def due_refills(
    db: aiosqlite.Connection,
    *,
    due_before: float,
    panel: str,
    accounts: Sequence[str],
    limit: int | None = None,
) -> list[DueRefill]:
    """Open refills of these accounts' orders on this panel that are due, most overdue first."""
    if not accounts:
        return []
    rows = await fetch_all(
        db,
        "SELECT r.id, r.order_id, o.owner_id, r.account, r.panel_refill_id, r.status,"
        " r.created_at, r.lost_strikes, o.panel_order_id, o.service_name"
        " FROM refills r JOIN orders o ON o.id = r.order_id"
        " WHERE r.final = 0 AND (r.next_check_at IS NULL OR r.next_check_at <= ?)"
        " AND r.panel = ? AND r.account IN (SELECT value FROM json_each(?))"
        " ORDER BY COALESCE(r.next_check_at, 0), r.id LIMIT ?",
        (due_before, panel, json.dumps(list(accounts)), -1 if limit is None else limit),
    )
    return [
        DueRefill(int(r[0]), int(r[1]), int(r[2]), str(r[3]), int(r[4]), str(r[5]), float(r[6]),
                  int(r[7]), r[8], r[9])
        for r in rows
    ]


async def record_refill_missing(
    db: aiosqlite.Connection, refill_id: int, *, now: float | None = None,
    next_check_at: float | None = None,
) -> int:
    """Counts a poll where the panel did not know the refill; the strikes in a row so far."""
    async with transaction(db):
        await db.execute(
            "UPDATE refills SET lost_strikes = lost_strikes + 1, last_checked_at = ?,"
            " next_check_at = ? WHERE id = ?",
            (timestamp(now), next_check_at, refill_id),
        )
        row = await fetch_one(db, "SELECT lost_strikes FROM refills WHERE id = ?", (refill_id,))
    if row is None:
        raise LookupError(f"no refill {refill_id}")
    return int(row[0])


async def postpone_refill_checks(
    db: aiosqlite.Connection, schedule: Sequence[tuple[int, float]], *, now: float | None = None
) -> int:
    """Moves each `(refill id, next check)` forward after a check without a usable answer."""
    if not schedule:
        return 0
    at = timestamp(now)
    async with transaction(db):
        cursor = await db.executemany(
            "UPDATE refills SET last_checked_at = ?, next_check_at = ? WHERE id = ?",
            [(at, when, refill_id) for refill_id, when in schedule],
        )
    return max(cursor.rowcount, 0)


async def stop_refill(db: aiosqlite.Connection, refill_id: int, *, error: str) -> bool:
    """Marks a refill final without a final status (the panel lost it); False if unknown."""
    async with transaction(db):
        cursor = await db.execute(
            "UPDATE refills SET final = 1, error = ?, updated_at = ? WHERE id = ?",
            (error, timestamp(), refill_id),
        )
    return cursor.rowcount == 1


async def refill_history(db: aiosqlite.Connection, refill_id: int) -> list[StatusChange]:
    """Every status seen for a refill, oldest first."""
    rows = await fetch_all(
        db,
        "SELECT status, observed_at FROM refill_status_history WHERE refill_id = ? ORDER BY id",
        (refill_id,),
    )
    return [StatusChange(str(r["status"]), float(r["observed_at"])) for r in rows]
