"""The outbox: notifications waiting to be sent, written in the same transaction as their cause."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiosqlite

from storage.db import (
    fetch_all,
    fetch_one,
    insert_rows,
    opt_float,
    opt_int,
    timestamp,
    transaction,
)
from storage.jsontext import tree_encoder

NotificationState = Literal["pending", "sent", "dropped"]

#: A payload as JSON: a plain tree (no cycle check), its text as it is (UTF-8, not \u escapes).
_encode = tree_encoder(ensure_ascii=False)


def _json(payload: Mapping[str, Any]) -> str:
    """The JSON stored for a payload (the tracker writes thousands: one encoder for all)."""
    return _encode(payload if type(payload) is dict else dict(payload))


@dataclass(slots=True)
class Notice:
    """A message to queue: who gets it, its text, and free JSON for the sender (buttons…).
    (Not frozen: the tracker makes one per status change it tells, and a frozen dataclass
    costs more than twice as much to build.)"""

    chat_id: int
    text: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Notification:
    """A queued message and its delivery bookkeeping."""

    id: int
    chat_id: int
    text: str
    payload: dict[str, Any]
    order_id: int | None
    state: NotificationState
    attempts: int
    last_error: str | None
    created_at: float
    next_attempt_at: float | None
    sent_at: float | None


_COLUMNS = (
    "id, chat_id, text, payload, order_id, state, attempts, last_error, created_at,"
    " next_attempt_at, sent_at"
)


def _notification(row: Any) -> Notification:
    """Builds a Notification from a row of `_COLUMNS`."""
    return Notification(
        id=int(row["id"]),
        chat_id=int(row["chat_id"]),
        text=str(row["text"]),
        payload=json.loads(row["payload"]),
        order_id=opt_int(row["order_id"]),
        state=row["state"],
        attempts=int(row["attempts"]),
        last_error=row["last_error"],
        created_at=float(row["created_at"]),
        next_attempt_at=opt_float(row["next_attempt_at"]),
        sent_at=opt_float(row["sent_at"]),
    )


async def enqueue_notification(
    db: aiosqlite.Connection,
    *,
    chat_id: int,
    text: str,
    payload: Mapping[str, Any] | None = None,
    order_id: int | None = None,
    now: float | None = None,
) -> int:
    """Queues a message; inside an open `transaction(db)` it commits with its cause."""
    async with transaction(db):
        cursor = await db.execute(
            "INSERT INTO notifications (chat_id, text, payload, order_id, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (chat_id, text, _json(payload or {}), order_id, timestamp(now)),
        )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


async def enqueue_notice(
    db: aiosqlite.Connection,
    notice: Notice,
    *,
    order_id: int | None = None,
    now: float | None = None,
) -> int:
    """Queues a `Notice` (see enqueue_notification)."""
    return await enqueue_notification(
        db,
        chat_id=notice.chat_id,
        text=notice.text,
        payload=notice.payload,
        order_id=order_id,
        now=now,
    )


async def enqueue_notices(
    db: aiosqlite.Connection,
    notices: Sequence[tuple[Notice, int | None]],
    *,
    now: float | None = None,
) -> int:
    """Queues many `(notice, order_id)` at once, in order, in one call (`insert_rows`); how
    many."""
    if not notices:
        return 0
    rows = notice_rows(notices, timestamp(now))
    async with transaction(db):
        await insert_rows(db, NOTICE_INSERT, rows)
    return len(rows)


#: `notice_rows` go in with `storage.db.insert_rows(db, NOTICE_INSERT, rows)`.
NOTICE_INSERT = "INSERT INTO notifications (chat_id, text, payload, order_id, created_at)"


def notice_rows(notices: Sequence[tuple[Notice, int | None]], at: float) -> list[tuple[Any, ...]]:
    """The rows `enqueue_notices` writes for `(notice, order_id)`s queued at `at`."""
    return [(notice.chat_id, notice.text, _json(notice.payload), order_id, at)
            for notice, order_id in notices]


async def get_notification(db: aiosqlite.Connection, notification_id: int) -> Notification | None:
    """One queued message by id, whatever its state."""
    row = await fetch_one(
        db, f"SELECT {_COLUMNS} FROM notifications WHERE id = ?", (notification_id,)
    )
    return None if row is None else _notification(row)


async def pending_notifications(
    db: aiosqlite.Connection, *, limit: int = 50, now: float | None = None
) -> list[Notification]:
    """Messages due for sending (pending, retry time reached), oldest first."""
    rows = await fetch_all(
        db,
        f"SELECT {_COLUMNS} FROM notifications WHERE state = 'pending'"
        " AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?",
        (timestamp(now), limit),
    )
    return [_notification(row) for row in rows]


async def count_pending_notifications(db: aiosqlite.Connection) -> int:
    """How many messages are still waiting, due or not."""
    row = await fetch_one(db, "SELECT COUNT(*) FROM notifications WHERE state = 'pending'")
    return int(row[0]) if row is not None else 0


async def mark_sent(
    db: aiosqlite.Connection, notification_id: int, *, now: float | None = None
) -> bool:
    """Records a successful delivery; False when it was not pending."""
    async with transaction(db):
        cursor = await db.execute(
            "UPDATE notifications SET state = 'sent', sent_at = ?"
            " WHERE id = ? AND state = 'pending'",
            (timestamp(now), notification_id),
        )
    return cursor.rowcount == 1


async def mark_failed_attempt(
    db: aiosqlite.Connection, notification_id: int, *, error: str, retry_at: float | None
) -> int:
    """Counts a failed delivery; retried at `retry_at`, or dropped when it is None. Attempts."""
    async with transaction(db):
        await db.execute(
            "UPDATE notifications SET attempts = attempts + 1, last_error = ?,"
            " next_attempt_at = ?,"
            " state = CASE WHEN ? IS NULL THEN 'dropped' ELSE state END"
            " WHERE id = ? AND state = 'pending'",
            (error, retry_at, retry_at, notification_id),
        )
        row = await fetch_one(
            db, "SELECT attempts FROM notifications WHERE id = ?", (notification_id,)
        )
    return int(row[0]) if row is not None else 0


async def drop_notification(db: aiosqlite.Connection, notification_id: int, *, reason: str) -> bool:
    """Gives up on one pending message (e.g. the text was refused)."""
    async with transaction(db):
        cursor = await db.execute(
            "UPDATE notifications SET state = 'dropped', last_error = ?"
            " WHERE id = ? AND state = 'pending'",
            (reason, notification_id),
        )
    return cursor.rowcount == 1


async def drop_pending_for_chat(db: aiosqlite.Connection, chat_id: int, *, reason: str) -> int:
    """Gives up on every pending message to a chat (the user blocked the bot); how many."""
    async with transaction(db):
        cursor = await db.execute(
            "UPDATE notifications SET state = 'dropped', last_error = ?"
            " WHERE chat_id = ? AND state = 'pending'",
            (reason, chat_id),
        )
    return cursor.rowcount


async def purge_notifications(db: aiosqlite.Connection, *, older_than: float) -> int:
    """Deletes sent and dropped messages created before `older_than`; how many."""
    async with transaction(db):
        cursor = await db.execute(
            "DELETE FROM notifications WHERE state IN ('sent', 'dropped') AND created_at < ?",
            (older_than,),
        )
    return cursor.rowcount
