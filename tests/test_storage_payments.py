"""storage.payments: top-up rows, each state change guarded, one row per Telegram charge id."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiosqlite
import pytest

from storage import payments as topups
from storage.db import close_database, open_database, transaction
from storage.payments import Topup

ANN = 7


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    conn = await open_database(tmp_path / "bot.sqlite3")
    yield conn
    await close_database(conn)


async def pending(db: aiosqlite.Connection) -> Topup:
    return await topups.create(db, user_id=ANN, chat_id=ANN, nonce="n" * 16,
                               amount=Decimal("10.00"), currency="USD", stars=770,
                               expires_at=2000.0, now=1000.0)


async def test_a_top_up_is_paid_once_even_by_racing_callers(db: aiosqlite.Connection) -> None:
    row = await pending(db)
    assert (row.state, row.amount, row.stars, row.charge_id) == ("pending", Decimal("10"),
                                                                 770, None)
    moved = await asyncio.gather(*(topups.mark_paid(db, row.id, charge_id=f"stx{i}",
                                                    provider_charge_id="") for i in range(5)))
    assert sum(moved) == 1
    paid = await topups.get(db, row.id)
    assert paid is not None and paid.state == "paid" and paid.charge_id is not None
    assert await topups.by_charge(db, paid.charge_id) == paid
    assert not await topups.expire(db, row.id)  # a paid top-up never expires


async def test_one_row_per_charge_id(db: aiosqlite.Connection) -> None:
    first, second = await pending(db), await pending(db)
    await topups.mark_paid(db, first.id, charge_id="stx1", provider_charge_id="")
    with pytest.raises(sqlite3.IntegrityError):
        await topups.mark_paid(db, second.id, charge_id="stx1", provider_charge_id="")


async def test_the_database_refuses_a_paid_row_without_a_charge_or_a_pending_one_with(
        db: aiosqlite.Connection) -> None:
    row = await pending(db)
    for sql in ("UPDATE topups SET state = 'paid' WHERE id = ?",
                "UPDATE topups SET telegram_payment_charge_id = 'x' WHERE id = ?",
                "UPDATE topups SET state = 'gone' WHERE id = ?",
                "UPDATE topups SET amount = NULL WHERE id = ?"):
        with pytest.raises(sqlite3.IntegrityError):
            async with transaction(db):
                await db.execute(sql, (row.id,))


async def test_a_refund_moves_paid_to_refunding_to_refunded_once_per_attempt(
        db: aiosqlite.Connection) -> None:
    row = await pending(db)
    await topups.mark_paid(db, row.id, charge_id="stx1", provider_charge_id="")
    assert not await topups.begin_refund(db, row.id, attempt=2)  # attempts go in order
    assert await topups.begin_refund(db, row.id, attempt=1)
    assert not await topups.begin_refund(db, row.id, attempt=1)  # a second admin: no
    assert await topups.undo_refund(db, row.id)  # Telegram refused: paid again
    assert (await topups.get(db, row.id)).state == "paid"  # type: ignore[union-attr]
    assert await topups.begin_refund(db, row.id, attempt=2)
    assert await topups.finish_refund(db, row.id, now=3000.0)
    assert not await topups.finish_refund(db, row.id)
    done = await topups.get(db, row.id)
    assert done is not None and (done.state, done.refund_attempts, done.refunded_at) == (
        "refunded", 2, 3000.0)


async def test_a_stray_payment_has_no_amount_and_goes_back_to_stray(
        db: aiosqlite.Connection) -> None:
    stray = await topups.record_stray(db, user_id=ANN, chat_id=ANN, currency="XTR", stars=5,
                                      charge_id="stxS", provider_charge_id="", note="why")
    assert (stray.state, stray.amount, stray.note) == ("stray", None, "why")
    assert await topups.begin_refund(db, stray.id, attempt=1)
    assert await topups.undo_refund(db, stray.id)
    assert (await topups.get(db, stray.id)).state == "stray"  # type: ignore[union-attr]
    assert [t.id for t in await topups.of_user(db, ANN, states=("stray",))] == [stray.id]
