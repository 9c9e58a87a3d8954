"""Top-ups paid with Telegram Stars: one row per invoice, and what became of it (SQL only;
the rules are bot/services/payments.py).

    pending ──paid──▶ paid ──refund asked──▶ refunding ──Telegram refunded──▶ refunded
       │                ▲                        │
       └─expired        └──Telegram refused──────┘
    stray (a payment that matched no payable top-up: nothing credited) ──▶ refunding ──▶ …

Every change of state is one UPDATE guarded by the state it leaves, so of two racing callers
exactly one moves a row (its rowcount is 1). A charge id is UNIQUE: the same Telegram payment
can be recorded once. Functions join an enclosing ``transaction(db)``: the payment commits with
its wallet credit, a refund's state with its wallet debit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import aiosqlite

from storage.db import (
    decimal_text,
    fetch_all,
    fetch_one,
    opt_float,
    text_decimal,
    timestamp,
    transaction,
)

TopupState = Literal["pending", "expired", "paid", "refunding", "refunded", "stray"]


@dataclass(frozen=True, slots=True)
class Topup:
    """One invoice for a wallet top-up, and its payment if one came."""

    id: int
    user_id: int
    chat_id: int
    nonce: str
    amount: Decimal | None  # None: a stray payment (nothing was credited)
    currency: str
    stars: int
    state: TopupState
    draft_id: int | None
    created_at: float
    expires_at: float
    paid_at: float | None
    charge_id: str | None  # telegram_payment_charge_id
    provider_charge_id: str | None
    refund_attempts: int
    refunded_at: float | None
    note: str


_COLUMNS = ("id, user_id, chat_id, nonce, amount, currency, stars, state, draft_id, created_at,"
            " expires_at, paid_at, telegram_payment_charge_id, provider_payment_charge_id,"
            " refund_attempts, refunded_at, note")


def _topup(row: Any) -> Topup:
    """Builds a Topup from a row of `_COLUMNS`."""
    return Topup(
        int(row["id"]), int(row["user_id"]), int(row["chat_id"]), str(row["nonce"]),
        text_decimal(row["amount"]), str(row["currency"]), int(row["stars"]), row["state"],
        None if row["draft_id"] is None else int(row["draft_id"]), float(row["created_at"]),
        float(row["expires_at"]), opt_float(row["paid_at"]), row["telegram_payment_charge_id"],
        row["provider_payment_charge_id"], int(row["refund_attempts"]),
        opt_float(row["refunded_at"]), str(row["note"]),
    )


async def create(db: aiosqlite.Connection, *, user_id: int, chat_id: int, nonce: str,
                 amount: Decimal, currency: str, stars: int, expires_at: float,
                 draft_id: int | None = None, now: float | None = None) -> Topup:
    """A new pending top-up."""
    async with transaction(db):
        cursor = await db.execute(
            "INSERT INTO topups (user_id, chat_id, nonce, amount, currency, stars, draft_id,"
            " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (user_id, chat_id, nonce, decimal_text(amount), currency, stars, draft_id,
             timestamp(now), expires_at),
        )
        topup_id = cursor.lastrowid
        await cursor.close()
        found = await get(db, int(topup_id or 0))
    assert found is not None
    return found


async def get(db: aiosqlite.Connection, topup_id: int) -> Topup | None:
    """A top-up by its id."""
    row = await fetch_one(db, f"SELECT {_COLUMNS} FROM topups WHERE id = ?", (topup_id,))
    return None if row is None else _topup(row)


async def by_charge(db: aiosqlite.Connection, charge_id: str) -> Topup | None:
    """The top-up a Telegram payment was recorded for."""
    row = await fetch_one(db, f"SELECT {_COLUMNS} FROM topups"
                              " WHERE telegram_payment_charge_id = ?", (charge_id,))
    return None if row is None else _topup(row)


async def of_user(db: aiosqlite.Connection, user_id: int, *,
                  states: tuple[TopupState, ...] | None = None, limit: int = 10) -> list[Topup]:
    """A user's top-ups, newest first (only those in `states`, if given)."""
    where = "user_id = ?"
    if states:
        where += f" AND state IN ({', '.join('?' * len(states))})"
    rows = await fetch_all(db, f"SELECT {_COLUMNS} FROM topups WHERE {where}"
                               " ORDER BY id DESC LIMIT ?", (user_id, *(states or ()), limit))
    return [_topup(row) for row in rows]


async def with_payment(db: aiosqlite.Connection) -> list[Topup]:
    """Every top-up that has a payment (for the audit), oldest first."""
    rows = await fetch_all(db, f"SELECT {_COLUMNS} FROM topups"
                               " WHERE telegram_payment_charge_id IS NOT NULL ORDER BY id")
    return [_topup(row) for row in rows]


async def _move(db: aiosqlite.Connection, sql: str, params: tuple[Any, ...]) -> bool:
    """Runs one guarded UPDATE; True when it moved the row."""
    async with transaction(db):
        cursor = await db.execute(sql, params)
        moved = cursor.rowcount == 1
        await cursor.close()
    return moved


async def expire(db: aiosqlite.Connection, topup_id: int) -> bool:
    """A pending top-up can no longer be paid."""
    return await _move(db, "UPDATE topups SET state = 'expired' WHERE id = ? AND state ="
                           " 'pending'", (topup_id,))


async def mark_paid(db: aiosqlite.Connection, topup_id: int, *, charge_id: str,
                    provider_charge_id: str, now: float | None = None) -> bool:
    """Records the payment of a pending (or just expired) top-up."""
    return await _move(
        db, "UPDATE topups SET state = 'paid', telegram_payment_charge_id = ?,"
            " provider_payment_charge_id = ?, paid_at = ? WHERE id = ?"
            " AND state IN ('pending', 'expired')",
        (charge_id, provider_charge_id, timestamp(now), topup_id))


async def record_paid_again(db: aiosqlite.Connection, paid: Topup, *, charge_id: str,
                            provider_charge_id: str, now: float | None = None) -> Topup:
    """A second payment of an invoice that was paid before: a paid copy of its top-up."""
    async with transaction(db):
        cursor = await db.execute(
            "INSERT INTO topups (user_id, chat_id, nonce, amount, currency, stars, state,"
            " draft_id, created_at, expires_at, paid_at, telegram_payment_charge_id,"
            " provider_payment_charge_id, note)"
            " VALUES (?, ?, ?, ?, ?, ?, 'paid', ?, ?, ?, ?, ?, ?, ?)",
            (paid.user_id, paid.chat_id, paid.nonce, decimal_text(paid.amount), paid.currency,
             paid.stars, paid.draft_id, paid.created_at, paid.expires_at, timestamp(now),
             charge_id, provider_charge_id, f"paid again (top-up {paid.id})"),
        )
        topup_id = cursor.lastrowid
        await cursor.close()
        found = await get(db, int(topup_id or 0))
    assert found is not None
    return found


async def record_stray(db: aiosqlite.Connection, *, user_id: int, chat_id: int, currency: str,
                       stars: int, charge_id: str, provider_charge_id: str, note: str,
                       now: float | None = None) -> Topup:
    """A payment that matched no payable top-up: kept (nothing credited) for an admin."""
    at = timestamp(now)
    async with transaction(db):
        cursor = await db.execute(
            "INSERT INTO topups (user_id, chat_id, nonce, amount, currency, stars, state,"
            " created_at, expires_at, paid_at, telegram_payment_charge_id,"
            " provider_payment_charge_id, note)"
            " VALUES (?, ?, '', NULL, ?, ?, 'stray', ?, ?, ?, ?, ?, ?)",
            (user_id, chat_id, currency, max(1, stars), at, at, at, charge_id,
             provider_charge_id, note[:300]),
        )
        topup_id = cursor.lastrowid
        await cursor.close()
        found = await get(db, int(topup_id or 0))
    assert found is not None
    return found


async def begin_refund(db: aiosqlite.Connection, topup_id: int, *, attempt: int) -> bool:
    """A paid (or stray) payment is being refunded: this is refund attempt `attempt`."""
    return await _move(
        db, "UPDATE topups SET state = 'refunding', refund_attempts = ? WHERE id = ?"
            " AND state IN ('paid', 'stray') AND refund_attempts = ? - 1",
        (attempt, topup_id, attempt))


async def finish_refund(db: aiosqlite.Connection, topup_id: int,
                        now: float | None = None) -> bool:
    """Telegram refunded the payment."""
    return await _move(db, "UPDATE topups SET state = 'refunded', refunded_at = ? WHERE id = ?"
                           " AND state = 'refunding'", (timestamp(now), topup_id))


async def undo_refund(db: aiosqlite.Connection, topup_id: int) -> bool:
    """Telegram refused the refund: the payment is as it was (paid, or stray)."""
    return await _move(
        db, "UPDATE topups SET state = CASE WHEN amount IS NULL THEN 'stray' ELSE 'paid' END"
            " WHERE id = ? AND state = 'refunding'", (topup_id,))
