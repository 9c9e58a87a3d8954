"""Mass orders: a batch of lines, each line its own order (a draft until it is placed).

A batch is created with its drafts in one transaction (`create_batch` + `add_lines` inside the
caller's `transaction(db)`), then moves between states, each move atomic (`move_batch`: exactly
one caller wins, as with `orders.claim_order`):

    ready ──Confirm──▶ sending ──every line tried──▶ done
      │                  │
      │                  └─the bot stopped─▶ interrupted ──"Send the rest"──▶ sending
      └─Cancel / Edit──▶ cancelled (its drafts deleted)

What each line became is its order's state (`storage.orders`): still a draft = not sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiosqlite

from storage.db import fetch_all, fetch_one, timestamp, transaction

BatchState = Literal["ready", "sending", "interrupted", "done", "cancelled"]


@dataclass(frozen=True, slots=True)
class Batch:
    """One mass order: whose it is, where it goes, how many valid lines, and where it stands."""

    id: int
    owner_id: int
    chat_id: int
    account: str
    panel: str
    catalog: str
    lines: int
    rev: int  # the summary's revision: a summary of an older one is out of date
    state: BatchState
    created_at: float
    updated_at: float


_COLUMNS = ("id, owner_id, chat_id, account, panel, catalog, lines, rev, state, created_at,"
            " updated_at")


def _batch(row: Any) -> Batch:
    """Builds a Batch from a row of `_COLUMNS`."""
    return Batch(int(row["id"]), int(row["owner_id"]), int(row["chat_id"]), str(row["account"]),
                 str(row["panel"]), str(row["catalog"]), int(row["lines"]), int(row["rev"]),
                 row["state"],
                 float(row["created_at"]), float(row["updated_at"]))


async def create_batch(db: aiosqlite.Connection, *, owner_id: int, chat_id: int, account: str,
                       panel: str, catalog: str, lines: int, now: float | None = None) -> int:
    """Stores a new batch in state 'ready'; its id."""
    at = timestamp(now)
    async with transaction(db):
        cursor = await db.execute(
            "INSERT INTO mass_orders (owner_id, chat_id, account, panel, catalog, lines, state,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'ready', ?, ?)",
            (owner_id, chat_id, account, panel, catalog, lines, at, at),
        )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


async def add_lines(db: aiosqlite.Connection, batch_id: int,
                    lines: Sequence[tuple[int, int]]) -> None:
    """Records which order draft each line number of the batch is: `(line number, order id)`."""
    async with transaction(db):
        await db.executemany(
            "INSERT INTO mass_order_lines (batch_id, line_no, order_id) VALUES (?, ?, ?)",
            [(batch_id, int(line), int(order)) for line, order in lines],
        )


async def renew_batch(db: aiosqlite.Connection, batch_id: int, *, owner_id: int,
                      lines: int) -> int | None:
    """Empties this owner's 'ready' batch for a new set of lines (its drafts deleted) and bumps
    its revision; the new revision, or None when the batch is not 'ready' any more."""
    async with transaction(db):
        cursor = await db.execute(
            "UPDATE mass_orders SET rev = rev + 1, lines = ?, updated_at = ?"
            " WHERE id = ? AND owner_id = ? AND state = 'ready'",
            (lines, timestamp(), batch_id, owner_id),
        )
        if cursor.rowcount != 1:
            return None
        await _delete_drafts(db, batch_id)
        await db.execute("DELETE FROM mass_order_lines WHERE batch_id = ?", (batch_id,))
        row = await fetch_one(db, "SELECT rev FROM mass_orders WHERE id = ?", (batch_id,))
    assert row is not None
    return int(row[0])


async def _delete_drafts(db: aiosqlite.Connection, batch_id: int) -> None:
    """Deletes the batch's lines that are still drafts (inside the caller's transaction)."""
    await db.execute(
        "DELETE FROM orders WHERE state = 'draft' AND id IN"
        " (SELECT order_id FROM mass_order_lines WHERE batch_id = ?)",
        (batch_id,),
    )


async def get_batch(db: aiosqlite.Connection, batch_id: int) -> Batch | None:
    """The batch with this id, or None."""
    row = await fetch_one(db, f"SELECT {_COLUMNS} FROM mass_orders WHERE id = ?", (batch_id,))
    return None if row is None else _batch(row)


async def batches_in_state(db: aiosqlite.Connection, state: BatchState) -> list[Batch]:
    """Every batch in `state`, oldest first."""
    rows = await fetch_all(db, f"SELECT {_COLUMNS} FROM mass_orders WHERE state = ? ORDER BY id",
                           (state,))
    return [_batch(row) for row in rows]


async def move_batch(db: aiosqlite.Connection, batch_id: int, *, owner_id: int,
                     to: BatchState, allowed_from: Sequence[BatchState],
                     rev: int | None = None) -> bool:
    """Moves this owner's batch to `to` if it is in one of `allowed_from` (and at revision
    `rev`, when given); True for exactly one of any number of concurrent callers."""
    async with transaction(db):
        cursor = await db.execute(
            "UPDATE mass_orders SET state = ?, updated_at = ? WHERE id = ? AND owner_id = ?"
            " AND state IN (SELECT value FROM json_each(?)) AND (? IS NULL OR rev = ?)",
            (to, timestamp(), batch_id, owner_id, json.dumps(list(allowed_from)), rev, rev),
        )
    return cursor.rowcount == 1


async def cancel_batch(db: aiosqlite.Connection, batch_id: int, *, owner_id: int,
                       rev: int | None = None) -> bool:
    """Cancels this owner's batch that is still 'ready' (at revision `rev`, when given) and
    deletes its drafts; False when it is (being) sent, cancelled, or of another revision."""
    async with transaction(db):
        if not await move_batch(db, batch_id, owner_id=owner_id, to="cancelled",
                                allowed_from=("ready",), rev=rev):
            return False
        await _delete_drafts(db, batch_id)
    return True


async def line_orders(db: aiosqlite.Connection, batch_id: int) -> list[tuple[int, int]]:
    """The batch's lines still stored, in line order: `(line number, order id)`. Drafts purged
    as stale (`orders.purge_drafts`) take their line with them."""
    rows = await fetch_all(
        db,
        "SELECT line_no, order_id FROM mass_order_lines WHERE batch_id = ? ORDER BY line_no",
        (batch_id,),
    )
    return [(int(row[0]), int(row[1])) for row in rows]
