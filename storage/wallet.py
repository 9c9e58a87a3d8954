"""Wallets: each user's append-only ledger of money in the shop (SQL only; rules: bot/services).

Every entry has a kind, a signed amount, the balance after it, a note, a time and a unique
reference (``order:123:charge``, ``stars:<charge id>``, …), so the same event can never be
booked twice: `append` with a reference already booked returns that entry unchanged. The
database refuses any entry that does not follow the wallet's last one exactly (see migration v6
in storage/db.py): amounts are written with exactly the currency's minor-unit digits and checked
as whole minor units, so no float and no rounding ever touches a balance.

`append` joins an enclosing ``transaction(db)``: a charge commits with the claim of its order,
a refund with the status change that caused it, a notification with the entry it tells of.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import aiosqlite

from storage.db import (
    fetch_all,
    fetch_one,
    opt_int,
    reading,
    text_decimal,
    timestamp,
    transaction,
)

EntryKind = Literal["topup", "charge", "refund", "adjustment"]
KINDS: frozenset[str] = frozenset({"topup", "charge", "refund", "adjustment"})


class InsufficientFunds(Exception):
    """The entry would take the wallet below zero; nothing was written."""

    def __init__(self, balance: Decimal, amount: Decimal) -> None:
        super().__init__(f"balance {balance} cannot take {amount}")
        self.balance = balance
        self.amount = amount


class CurrencyMismatch(Exception):
    """The wallet holds another currency (or minor unit) than the entry; nothing was written."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One booked entry of a wallet."""

    id: int
    user_id: int
    seq: int
    kind: EntryKind
    amount: Decimal
    balance_after: Decimal
    currency: str
    exponent: int
    note: str
    reference: str
    order_id: int | None
    created_at: float


_COLUMNS = ("id, user_id, seq, kind, amount, balance_after, currency, exponent, note, reference,"
            " order_id, created_at")


def _entry(row: Any) -> Entry:
    """Builds an Entry from a row of `_COLUMNS`."""
    amount, balance = text_decimal(row["amount"]), text_decimal(row["balance_after"])
    assert amount is not None and balance is not None
    return Entry(int(row["id"]), int(row["user_id"]), int(row["seq"]), row["kind"], amount,
                 balance, str(row["currency"]), int(row["exponent"]), str(row["note"]),
                 str(row["reference"]), opt_int(row["order_id"]), float(row["created_at"]))


def money_text(amount: Decimal, exponent: int) -> str:
    """An amount as the ledger stores it: exactly `exponent` decimals ('-1.17', '5'); raises
    ValueError when it has more (the ledger never rounds)."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise TypeError(f"money must be a finite Decimal, not {amount!r}")
    quantum = Decimal(1).scaleb(-exponent)
    exact = amount.quantize(quantum)
    if exact != amount:
        raise ValueError(f"{amount} has more than {exponent} decimals")
    if exact.is_zero():
        exact = exact.copy_abs()
    return format(exact, "f")


async def last_entry(db: aiosqlite.Connection, user_id: int) -> Entry | None:
    """The wallet's newest entry (its balance_after is the balance), or None: never used."""
    row = await fetch_one(db, f"SELECT {_COLUMNS} FROM wallet_entries WHERE user_id = ?"
                              " ORDER BY seq DESC LIMIT 1", (user_id,))
    return None if row is None else _entry(row)


async def get_by_reference(db: aiosqlite.Connection, reference: str) -> Entry | None:
    """The entry booked under this reference, or None."""
    row = await fetch_one(db, f"SELECT {_COLUMNS} FROM wallet_entries WHERE reference = ?",
                          (reference,))
    return None if row is None else _entry(row)


async def append(
    db: aiosqlite.Connection,
    *,
    user_id: int,
    kind: EntryKind,
    amount: Decimal,
    currency: str,
    exponent: int,
    reference: str,
    note: str = "",
    order_id: int | None = None,
    now: float | None = None,
) -> tuple[Entry, bool]:
    """Books an entry after the wallet's last one; (the entry, True). With a reference already
    booked: (that entry, False), nothing written. Raises InsufficientFunds (below zero) or
    CurrencyMismatch, writing nothing; inside a transaction the caller decides what that undoes.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown entry kind {kind!r}")
    text = money_text(amount, exponent)
    async with transaction(db):
        existing = await get_by_reference(db, reference)
        if existing is not None:
            return existing, False
        last = await last_entry(db, user_id)
        if last is not None and (last.currency, last.exponent) != (currency, exponent):
            raise CurrencyMismatch(f"wallet {user_id} holds {last.currency}, not {currency}")
        before = last.balance_after if last is not None else Decimal(0)
        after = before + amount
        if after < 0:
            raise InsufficientFunds(before, amount)
        cursor = await db.execute(
            "INSERT INTO wallet_entries (user_id, seq, kind, amount, balance_after, currency,"
            " exponent, note, reference, order_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (user_id, (last.seq if last is not None else 0) + 1, kind, text,
             money_text(after, exponent), currency, exponent, note, reference, order_id,
             timestamp(now)),
        )
        row = await fetch_one(db, f"SELECT {_COLUMNS} FROM wallet_entries WHERE id = ?",
                              (cursor.lastrowid,))
    assert row is not None
    return _entry(row), True


async def entries(db: aiosqlite.Connection, user_id: int, *, limit: int = 10,
                  offset: int = 0) -> list[Entry]:
    """A wallet's entries, newest first."""
    rows = await fetch_all(db, f"SELECT {_COLUMNS} FROM wallet_entries WHERE user_id = ?"
                               " ORDER BY seq DESC LIMIT ? OFFSET ?", (user_id, limit, offset))
    return [_entry(row) for row in rows]


async def count_entries(db: aiosqlite.Connection, user_id: int) -> int:
    """How many entries a wallet has."""
    row = await fetch_one(db, "SELECT COUNT(*) FROM wallet_entries WHERE user_id = ?",
                          (user_id,))
    return int(row[0]) if row is not None else 0


async def all_entries(db: aiosqlite.Connection) -> list[Entry]:
    """Every entry of every wallet, wallet by wallet, oldest first (for the audit)."""
    rows = await fetch_all(db, f"SELECT {_COLUMNS} FROM wallet_entries ORDER BY user_id, seq")
    return [_entry(row) for row in rows]


async def balances(db: aiosqlite.Connection) -> dict[int, Entry]:
    """Each wallet's newest entry, by user id (its balance_after is the balance)."""
    rows = await fetch_all(
        db, f"SELECT {_COLUMNS} FROM wallet_entries AS e WHERE seq ="
            " (SELECT MAX(seq) FROM wallet_entries WHERE user_id = e.user_id)")
    return {int(row["user_id"]): _entry(row) for row in rows}


async def sums_by_kind(db: aiosqlite.Connection) -> dict[tuple[str, str], Decimal]:
    """Total amount per (kind, currency), added up as Decimal (never SQL REAL)."""
    rows = await fetch_all(db, "SELECT kind, currency, amount FROM wallet_entries")
    totals: dict[tuple[str, str], Decimal] = {}
    for row in rows:
        key = (str(row["kind"]), str(row["currency"]))
        totals[key] = totals.get(key, Decimal(0)) + Decimal(str(row["amount"]))
    return totals


@dataclass(frozen=True, slots=True)
class ChargedOrder:
    """An order charged to a wallet, with what happened to it and to the money."""

    order_id: int
    owner_id: int
    state: str
    status: str | None
    panel_order_id: int | None
    service_name: str | None
    quantity: int | None
    cost: Decimal | None  # the panel's cost as estimated before placing
    panel_charge: Decimal | None  # what the panel says it charged
    price: Decimal | None  # the total quoted to the customer
    charge: Decimal  # what the wallet was charged (positive)
    refund: Decimal | None  # what was refunded (positive), if anything
    currency: str
    exponent: int
    first_final: str | None  # the first final status the bot saw, and its remains
    first_final_remains: int | None


def _charged(row: Any) -> ChargedOrder:
    """Builds a ChargedOrder from a row of `_charged_query`."""
    charge = text_decimal(row["charge"])
    assert charge is not None
    refund = text_decimal(row["refund"])
    return ChargedOrder(
        int(row["order_id"]), int(row["owner_id"]), str(row["state"]), row["status"],
        opt_int(row["panel_order_id"]), row["service_name"], opt_int(row["quantity"]),
        text_decimal(row["cost"]), text_decimal(row["panel_charge"]),
        text_decimal(row["price"]), -charge, refund, str(row["currency"]),
        int(row["exponent"]), row["first_final"], opt_int(row["first_final_remains"]),
    )


def _charged_query(where: str) -> str:
    """The charged orders (`:finals`: a JSON list of the statuses that count as final)."""
    first = ("SELECT {} FROM order_status_history AS h WHERE h.order_id = o.id AND h.status IN"
             " (SELECT value FROM json_each(:finals)) ORDER BY h.id LIMIT 1")
    return (
        "SELECT o.id AS order_id, o.owner_id, o.state, o.status, o.panel_order_id,"
        " o.service_name, o.quantity, o.cost, o.charge AS panel_charge, o.price,"
        " c.amount AS charge, r.amount AS refund, c.currency, c.exponent,"
        f" ({first.format('h.status')}) AS first_final,"
        f" ({first.format('h.remains')}) AS first_final_remains"
        " FROM wallet_entries AS c JOIN orders AS o ON o.id = c.order_id"
        " LEFT JOIN wallet_entries AS r ON r.order_id = c.order_id AND r.kind = 'refund'"
        f" WHERE c.kind = 'charge'{where} ORDER BY o.id"
    )


async def charged_orders(db: aiosqlite.Connection, *, final_statuses: Sequence[str],
                         order_ids: Sequence[int] | None = None,
                         states: Sequence[str] | None = None) -> list[ChargedOrder]:
    """The orders charged to a wallet (all, or those among `order_ids`, or in `states`), with
    their refund and the first of `final_statuses` their history holds."""
    if order_ids is not None and not order_ids:
        return []
    where = ""
    if order_ids is not None:
        where += " AND c.order_id IN (SELECT value FROM json_each(:ids))"
    if states is not None:
        where += " AND o.state IN (SELECT value FROM json_each(:states))"
    params = {"finals": json.dumps(list(final_statuses)),
              "ids": json.dumps(sorted({int(i) for i in order_ids or ()})),
              "states": json.dumps(list(states or ()))}
    async with reading(db):
        rows = list(await db.execute_fetchall(_charged_query(where), params))
    return [_charged(row) for row in rows]


async def order_money(db: aiosqlite.Connection,
                      order_ids: Sequence[int]) -> dict[int, tuple[Decimal, Decimal | None]]:
    """{order id: (charged, refunded or None)} for the charged orders among `order_ids`."""
    if not order_ids:
        return {}
    rows = await fetch_all(
        db,
        "SELECT c.order_id, c.amount, r.amount FROM wallet_entries AS c"
        " LEFT JOIN wallet_entries AS r ON r.order_id = c.order_id AND r.kind = 'refund'"
        " WHERE c.kind = 'charge' AND c.order_id IN (SELECT value FROM json_each(?))",
        (json.dumps(sorted({int(i) for i in order_ids})),),
    )
    found: dict[int, tuple[Decimal, Decimal | None]] = {}
    for row in rows:
        charge = text_decimal(row[1])
        assert charge is not None
        found[int(row[0])] = (-charge, text_decimal(row[2]))
    return found
