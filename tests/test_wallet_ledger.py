"""storage.wallet: the append-only ledger, and the database itself refusing any wrong entry."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bot.panel.models import SANDBOX_URL as PANEL
from storage import orders
from storage import wallet as ledger
from storage.db import close_database, open_database, transaction
from storage.users import OPERATOR_ACCOUNT, upsert_user

ANN, BOB = 7, 8


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    conn = await open_database(tmp_path / "bot.sqlite3")
    await upsert_user(conn, telegram_id=ANN, name="Ann")
    await upsert_user(conn, telegram_id=BOB, name="Bob")
    yield conn
    await close_database(conn)


async def book(db: aiosqlite.Connection, user: int, amount: str, reference: str,
               kind: ledger.EntryKind = "topup", **extra: Any) -> tuple[ledger.Entry, bool]:
    return await ledger.append(db, user_id=user, kind=kind, amount=Decimal(amount),
                               currency="USD", exponent=2, reference=reference, **extra)


async def an_order(db: aiosqlite.Connection, owner: int = ANN) -> int:
    return await orders.save_draft(
        db, owner_id=owner, account=OPERATOR_ACCOUNT, panel=PANEL, service_id=1,
        service_name="Followers", service_type="Default", rate=Decimal("0.90"), currency="USD",
        can_refill=True, can_cancel=True, fields={"link": "https://t.me/x", "quantity": "1000"},
        quantity=1000, cost=Decimal("0.90"), price=Decimal("1.17"))


async def raw(db: aiosqlite.Connection, user: int, seq: int, kind: str, amount: str,
              balance: str, reference: str, order_id: int | None = None, exponent: int = 2,
              currency: str = "USD") -> None:
    """An INSERT straight into the table, past every check in Python."""
    async with transaction(db):
        await db.execute(
            "INSERT INTO wallet_entries (user_id, seq, kind, amount, balance_after, currency,"
            " exponent, reference, order_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (user, seq, kind, amount, balance, currency, exponent, reference, order_id))


async def test_entries_chain_balances_exactly_and_a_reference_books_once(
        db: aiosqlite.Connection) -> None:
    first, new = await book(db, ANN, "10", "t:1", note="cash")
    assert new and first.balance_after == Decimal("10") and first.seq == 1
    second, _ = await book(db, ANN, "-0.01", "t:2", kind="adjustment")
    assert second.balance_after == Decimal("9.99") and second.seq == 2
    again, new = await book(db, ANN, "500", "t:1")  # the same event delivered again
    assert not new and again == first
    assert (await ledger.last_entry(db, ANN)) == second
    stored = await db.execute_fetchall("SELECT amount, balance_after FROM wallet_entries")
    assert [tuple(r) for r in stored] == [("10.00", "10.00"), ("-0.01", "9.99")]
    assert await ledger.last_entry(db, BOB) is None


async def test_append_refuses_to_go_below_zero_or_change_currency_writing_nothing(
        db: aiosqlite.Connection) -> None:
    await book(db, ANN, "1.00", "t:1")
    with pytest.raises(ledger.InsufficientFunds) as caught:
        await book(db, ANN, "-1.01", "t:2", kind="adjustment")
    assert caught.value.balance == Decimal("1.00")
    with pytest.raises(ledger.CurrencyMismatch):
        await ledger.append(db, user_id=ANN, kind="topup", amount=Decimal(5), currency="EUR",
                            exponent=2, reference="t:3")
    with pytest.raises(ValueError, match="decimals"):
        await book(db, ANN, "0.005", "t:4")
    assert await ledger.count_entries(db, ANN) == 1


async def test_concurrent_debits_never_overdraw(db: aiosqlite.Connection) -> None:
    await book(db, ANN, "3.00", "t:0")

    async def take(i: int) -> bool:
        try:
            await book(db, ANN, "-1.00", f"take:{i}", kind="adjustment")
        except ledger.InsufficientFunds:
            return False
        return True

    results = await asyncio.gather(*(take(i) for i in range(10)))
    assert sum(results) == 3
    last = await ledger.last_entry(db, ANN)
    assert last is not None and last.balance_after == 0


BAD_ROWS = [
    pytest.param((2, "adjustment", "-1.00", "8.00", "x"), "previous balance", id="wrong balance"),
    pytest.param((2, "adjustment", "-10.01", "-0.01", "x"), "balance_minor >= 0", id="negative"),
    pytest.param((3, "topup", "1.00", "11.00", "x"), "follow the last", id="skips an entry"),
    pytest.param((1, "topup", "1.00", "11.00", "x"), "UNIQUE", id="entry number taken"),
    pytest.param((2, "topup", "1.0", "11.0", "x"), "CHECK", id="not the minor unit"),
    pytest.param((2, "topup", "1e0", "11.00", "x"), "CHECK", id="not plain decimal"),
    pytest.param((2, "topup", "0.00", "10.00", "x"), "CHECK", id="zero amount"),
    pytest.param((2, "topup", "-1.00", "9.00", "x"), "CHECK", id="negative top-up"),
    pytest.param((2, "topup", "1.00", "11.00", "t:1"), "UNIQUE", id="reference reused"),
    pytest.param((2, "refund", "1.00", "11.00", "x"), "CHECK", id="refund of no order"),
    pytest.param((2, "wage", "1.00", "11.00", "x"), "CHECK", id="unknown kind"),
]


@pytest.mark.parametrize(("row", "error"), BAD_ROWS)
async def test_the_database_itself_refuses_an_inconsistent_row(
        db: aiosqlite.Connection, row: tuple[Any, ...], error: str) -> None:
    await book(db, ANN, "10", "t:1")
    with pytest.raises(sqlite3.IntegrityError, match=error):
        await raw(db, ANN, *row)
    with pytest.raises(sqlite3.IntegrityError, match="one currency"):
        await raw(db, ANN, 2, "topup", "1", "1001", "y", exponent=0)
    assert await ledger.count_entries(db, ANN) == 1


async def test_the_database_refuses_changing_or_deleting_entries(
        db: aiosqlite.Connection) -> None:
    await book(db, ANN, "10", "t:1")
    for statement in ("UPDATE wallet_entries SET amount = '99.00', balance_after = '99.00'",
                      "UPDATE wallet_entries SET note = 'x'", "DELETE FROM wallet_entries"):
        with pytest.raises(sqlite3.IntegrityError, match="never"):
            async with transaction(db):
                await db.execute(statement)
    assert (await ledger.last_entry(db, ANN)) is not None


async def test_one_charge_and_one_refund_per_order_never_above_it_and_the_owners(
        db: aiosqlite.Connection) -> None:
    await book(db, ANN, "10", "t:1")
    await book(db, BOB, "10", "t:2")
    order = await an_order(db)
    await raw(db, ANN, 2, "charge", "-1.17", "8.83", f"order:{order}:charge", order)
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):  # a second charge
        await raw(db, ANN, 3, "charge", "-1.17", "7.66", f"order:{order}:charge:2", order)
    with pytest.raises(sqlite3.IntegrityError, match="its owner"):  # someone else's wallet
        await raw(db, BOB, 2, "refund", "1.17", "11.17", f"order:{order}:refund", order)
    with pytest.raises(sqlite3.IntegrityError, match="at least as large"):
        await raw(db, ANN, 3, "refund", "1.18", "10.01", f"order:{order}:refund", order)
    await raw(db, ANN, 3, "refund", "0.50", "9.33", f"order:{order}:refund", order)
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):  # a second refund
        await raw(db, ANN, 4, "refund", "0.10", "9.43", f"order:{order}:refund:2", order)
    other = await an_order(db)
    with pytest.raises(sqlite3.IntegrityError, match="at least as large"):  # never charged
        await raw(db, ANN, 4, "refund", "0.10", "9.43", f"order:{other}:refund", other)
    assert await ledger.order_money(db, [order, other]) == {
        order: (Decimal("1.17"), Decimal("0.50"))}


def test_money_text_is_exact_and_never_rounds() -> None:
    assert ledger.money_text(Decimal("1.5"), 2) == "1.50"
    assert ledger.money_text(Decimal("-0.05"), 2) == "-0.05"
    assert ledger.money_text(Decimal("12"), 0) == "12"
    assert ledger.money_text(Decimal("-0"), 2) == "0.00"
    with pytest.raises(ValueError):
        ledger.money_text(Decimal("1.234"), 2)
    with pytest.raises(TypeError):
        ledger.money_text(1.5, 2)  # type: ignore[arg-type]
