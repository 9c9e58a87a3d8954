"""Orders: drafts, the atomic claim before sending, placement outcome, and what the tracker sees.

Placement (the wizard)::

    draft_id = await create_draft(db, owner_id=..., account=..., ...)   # state 'draft'
    if await claim_order(db, draft_id, owner_id=user_id):               # exactly one winner
        try:
            panel_id = await panel.add(...)
        except <the panel said no>:
            await mark_failed(db, draft_id, error=...)                  # may be claimed again
        except <timeout / connection lost after sending>:
            await mark_outcome_unknown(db, draft_id, error=...)         # never re-sent blindly
        else:
            await mark_placed(db, draft_id, panel_order_id=panel_id)

Tracking: `active_orders` lists placed, non-final orders due for a poll (`due_orders`: the same,
read lean, for the tracker); `record_status` (one) or `apply_status_changes` (a batch) store what
the panel said, add a history row only when the status changed, and queue the change's
notification in the same transaction; `record_checks` stores, in bulk, polls that changed no
status (no history, no notification).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, NamedTuple, Protocol

import aiosqlite

from storage.db import (
    decimal_text,
    execute_write,
    fetch_all,
    fetch_one,
    insert_rows_now,
    opt_bool,
    opt_float,
    opt_int,
    run_in_transaction,
    text_decimal,
    timestamp,
    transaction,
)
from storage.outbox import NOTICE_INSERT, Notice, enqueue_notice, notice_rows

OrderState = Literal["draft", "claimed", "placed", "failed", "unknown"]

_ACCOUNT = re.compile(r"operator|user:-?\d+")


class ObservedStatus(Protocol):
    """What the panel says about an order; `bot.panel.models.OrderStatus` fits."""

    @property
    def status(self) -> str: ...

    @property
    def charge(self) -> Decimal | None: ...

    @property
    def start_count(self) -> int | None: ...

    @property
    def remains(self) -> int | None: ...

    @property
    def currency(self) -> str: ...

    @property
    def is_final(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Order:
    """One order: its service snapshot, what was sent, placement state and last panel status."""

    id: int
    owner_id: int
    account: str
    panel: str  # the panel's API URL ('' for an order stored before panels were recorded)
    panel_order_id: int | None
    service_id: int | None
    service_name: str | None
    service_type: str | None
    service_rate: Decimal | None
    service_currency: str | None
    service_refill: bool | None
    service_cancel: bool | None
    fields: dict[str, Any]
    quantity: int | None
    cost: Decimal | None
    state: OrderState
    error: str | None
    status: str | None
    charge: Decimal | None
    start_count: int | None
    remains: int | None
    currency: str | None
    final: bool
    created_at: float
    updated_at: float
    last_checked_at: float | None
    next_check_at: float | None
    lost_strikes: int
    price: Decimal | None = None  # shop: the total the customer was quoted (None: not sold)


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One observed status (of an order or a refill) and when it was seen."""

    status: str
    observed_at: float
    remains: int | None = None


class Observation(NamedTuple):
    """One poll result for `apply_status_changes`; `notify` is queued only if status changed.
    (A named tuple: the tracker makes one per order checked, and a frozen dataclass costs
    several times more to build.)"""

    order_id: int
    status: ObservedStatus
    next_check_at: float | None = None
    notify: Notice | None = None


_COLUMNS = (
    "id, owner_id, account, panel, panel_order_id, service_id, service_name, service_type,"
    " service_rate, service_currency, service_refill, service_cancel, fields, quantity, cost,"
    " state, error, status, charge, start_count, remains, currency, final, created_at,"
    " updated_at, last_checked_at, next_check_at, lost_strikes, price"
)


def _order(row: Any) -> Order:
    """Builds an Order from a row of `_COLUMNS`."""
    return Order(
        id=int(row["id"]),
        owner_id=int(row["owner_id"]),
        account=str(row["account"]),
        panel=str(row["panel"]),
        panel_order_id=opt_int(row["panel_order_id"]),
        service_id=opt_int(row["service_id"]),
        service_name=row["service_name"],
        service_type=row["service_type"],
        service_rate=text_decimal(row["service_rate"]),
        service_currency=row["service_currency"],
        service_refill=opt_bool(row["service_refill"]),
        service_cancel=opt_bool(row["service_cancel"]),
        fields=json.loads(row["fields"]),
        quantity=opt_int(row["quantity"]),
        cost=text_decimal(row["cost"]),
        state=row["state"],
        error=row["error"],
        status=row["status"],
        charge=text_decimal(row["charge"]),
        start_count=opt_int(row["start_count"]),
        remains=opt_int(row["remains"]),
        currency=row["currency"],
        final=bool(row["final"]),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        last_checked_at=opt_float(row["last_checked_at"]),
        next_check_at=opt_float(row["next_check_at"]),
        lost_strikes=int(row["lost_strikes"]),
        price=text_decimal(row["price"]),
    )


def _check_account(account: str) -> None:
    """Rejects an account label other than 'operator' or 'user:<telegram_id>'."""
    if not _ACCOUNT.fullmatch(account):
        raise ValueError(f"account must be 'operator' or 'user:<id>', not {account!r}")


async def save_draft(
    db: aiosqlite.Connection,
    *,
    owner_id: int,
    account: str,
    panel: str,
    service_id: int,
    service_name: str,
    service_type: str,
    rate: Decimal,
    currency: str,
    can_refill: bool,
    can_cancel: bool,
    fields: Mapping[str, Any],
    quantity: int | None,
    cost: Decimal,
    draft_id: int | None = None,
    now: float | None = None,
    price: Decimal | None = None,
) -> int:
    """Stores an order as it will be sent, with its service snapshot; the draft's id.

    With `draft_id` (the form's earlier draft, after Back or Edit) that draft is rewritten in
    place when it is still this owner's unsent draft, so one form keeps one draft; otherwise a
    new one is made.
    """
    _check_account(account)
    at = timestamp(now)
    values = (
        owner_id, account, panel, service_id, service_name, service_type, decimal_text(rate),
        currency, int(can_refill), int(can_cancel), json.dumps(dict(fields), ensure_ascii=False),
        quantity, decimal_text(cost), decimal_text(price),
    )
    # One statement each: the rewrite either hits the unsent draft or nothing, and then the
    # new draft stands alone, so neither needs BEGIN/COMMIT round trips around it.
    if draft_id is not None:
        cursor = await execute_write(
            db,
            "UPDATE orders SET owner_id = ?, account = ?, panel = ?, service_id = ?,"
            " service_name = ?, service_type = ?, service_rate = ?, service_currency = ?,"
            " service_refill = ?, service_cancel = ?, fields = ?, quantity = ?, cost = ?,"
            " price = ?, updated_at = ? WHERE id = ? AND owner_id = ? AND state = 'draft'",
            (*values, at, draft_id, owner_id),
        )
        if cursor.rowcount == 1:
            return draft_id
    cursor = await execute_write(
        db,
        "INSERT INTO orders (owner_id, account, panel, service_id, service_name,"
        " service_type, service_rate, service_currency, service_refill, service_cancel,"
        " fields, quantity, cost, price, state, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'draft', ?, ?)",
        (*values, at, at),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


async def copy_as_draft(db: aiosqlite.Connection, order_id: int, *,
                        now: float | None = None) -> int:
    """A new draft with the same service, fields, quantity, cost and price as `order_id` (a
    refused shop order, whose charge was refunded, is retried as a new order); its id."""
    at = timestamp(now)
    async with transaction(db):
        cursor = await db.execute(
            "INSERT INTO orders (owner_id, account, panel, service_id, service_name,"
            " service_type, service_rate, service_currency, service_refill, service_cancel,"
            " fields, quantity, cost, price, state, created_at, updated_at)"
            " SELECT owner_id, account, panel, service_id, service_name, service_type,"
            " service_rate, service_currency, service_refill, service_cancel, fields, quantity,"
            " cost, price, 'draft', ?, ? FROM orders WHERE id = ?",
            (at, at, order_id),
        )
    if cursor.rowcount != 1 or cursor.lastrowid is None:
        raise LookupError(f"no order {order_id}")
    return cursor.lastrowid


async def purge_drafts(db: aiosqlite.Connection, *, older_than: float) -> int:
    """Deletes drafts (summaries never confirmed) last written before `older_than`; how many."""
    async with transaction(db):
        cursor = await db.execute(
            "DELETE FROM orders WHERE state = 'draft' AND updated_at < ?", (older_than,)
        )
    return cursor.rowcount


async def claim_order(db: aiosqlite.Connection, draft_id: int, *, owner_id: int,
                      as_read: float | None = None) -> bool:
    """Takes a draft (or a failed order) for sending; True for exactly one concurrent caller.
    With `as_read` (the `updated_at` of the row the caller read), only if it has not been
    written since: a draft rewritten after that read is not sent with what the read said."""
    cursor = await execute_write(
        db,
        "UPDATE orders SET state = 'claimed', error = NULL, updated_at = ?"
        " WHERE id = ? AND owner_id = ? AND state IN ('draft', 'failed')"
        + ("" if as_read is None else " AND updated_at = ?"),
        (timestamp(), draft_id, owner_id, *(() if as_read is None else (as_read,))),
    )
    return cursor.rowcount == 1


async def _move(
    db: aiosqlite.Connection,
    order_id: int,
    *,
    to: OrderState,
    allowed_from: tuple[OrderState, ...],
    error: str | None = None,
    panel_order_id: int | None = None,
) -> bool:
    """Moves an order between placement states; False when it was not in `allowed_from`."""
    marks = ", ".join("?" for _ in allowed_from)
    cursor = await execute_write(
        db,
        "UPDATE orders SET state = ?, error = ?,"
        " panel_order_id = COALESCE(?, panel_order_id), updated_at = ?"
        f" WHERE id = ? AND state IN ({marks})",
        (to, error, panel_order_id, timestamp(), order_id, *allowed_from),
    )
    return cursor.rowcount == 1


async def mark_placed(db: aiosqlite.Connection, order_id: int, *, panel_order_id: int) -> bool:
    """Records the panel's order id of a claimed (or outcome-unknown) order."""
    return await _move(
        db, order_id, to="placed", allowed_from=("claimed", "unknown"),
        panel_order_id=panel_order_id,
    )


async def mark_failed(db: aiosqlite.Connection, order_id: int, *, error: str) -> bool:
    """Records that the panel refused a claimed order; it may be claimed and sent again."""
    return await _move(db, order_id, to="failed", allowed_from=("claimed", "unknown"), error=error)


async def mark_outcome_unknown(db: aiosqlite.Connection, order_id: int, *, error: str) -> bool:
    """Records that a claimed order was sent but no answer came: it must not be resent blindly."""
    return await _move(db, order_id, to="unknown", allowed_from=("claimed",), error=error)


async def release_interrupted_claims(
    db: aiosqlite.Connection, *, error: str, notices: Callable[[Order], Notice | None]
) -> list[Order]:
    """At start-up: every order still 'claimed' was being sent when the process died. Marks each
    outcome unknown and queues its owner's notice, in one transaction; returns those orders."""
    async with transaction(db):
        rows = await fetch_all(db, f"SELECT {_COLUMNS} FROM orders WHERE state = 'claimed'")
        interrupted = [_order(row) for row in rows]
        for order in interrupted:
            await _move(db, order.id, to="unknown", allowed_from=("claimed",), error=error)
            notice = notices(order)
            if notice is not None:
                await enqueue_notice(db, notice, order_id=order.id)
    return interrupted


async def track_order(
    db: aiosqlite.Connection,
    *,
    owner_id: int,
    account: str,
    panel: str,
    panel_order_id: int,
    now: float | None = None,
) -> Order:
    """Follows an order placed elsewhere; returns the existing one if already known (any owner)."""
    _check_account(account)
    at = timestamp(now)
    async with transaction(db):
        await db.execute(
            "INSERT INTO orders (owner_id, account, panel, panel_order_id, state, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, 'placed', ?, ?)"
            " ON CONFLICT (panel, account, panel_order_id) DO NOTHING",
            (owner_id, account, panel, panel_order_id, at, at),
        )
        order = await get_order_by_panel_id(db, account=account, panel=panel,
                                            panel_order_id=panel_order_id)
    assert order is not None
    return order


async def track_orders(
    db: aiosqlite.Connection,
    *,
    owner_id: int,
    account: str,
    panel: str,
    panel_order_ids: Sequence[int],
    now: float | None = None,
) -> dict[int, Order]:
    """`track_order` for many ids in one transaction: {panel id: the stored order (any owner)}."""
    _check_account(account)
    if not panel_order_ids:
        return {}
    at = timestamp(now)
    async with transaction(db):
        await db.executemany(
            "INSERT INTO orders (owner_id, account, panel, panel_order_id, state, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, 'placed', ?, ?)"
            " ON CONFLICT (panel, account, panel_order_id) DO NOTHING",
            [(owner_id, account, panel, int(i), at, at) for i in panel_order_ids],
        )
        return await get_orders_by_panel_ids(db, account=account, panel=panel,
                                             panel_order_ids=panel_order_ids)


async def get_order(db: aiosqlite.Connection, order_id: int) -> Order | None:
    """The order with this local id, or None."""
    row = await fetch_one(db, f"SELECT {_COLUMNS} FROM orders WHERE id = ?", (order_id,))
    return None if row is None else _order(row)


async def get_order_by_panel_id(
    db: aiosqlite.Connection, *, account: str, panel: str, panel_order_id: int
) -> Order | None:
    """The order this panel knows by this id under this account, or None."""
    row = await fetch_one(
        db,
        f"SELECT {_COLUMNS} FROM orders WHERE panel = ? AND account = ? AND panel_order_id = ?",
        (panel, account, panel_order_id),
    )
    return None if row is None else _order(row)


async def get_orders_by_panel_ids(
    db: aiosqlite.Connection, *, account: str, panel: str, panel_order_ids: Sequence[int]
) -> dict[int, Order]:
    """The orders this panel knows by these ids under this account, in one query: {id: order}."""
    if not panel_order_ids:
        return {}
    rows = await fetch_all(
        db,
        f"SELECT {_COLUMNS} FROM orders WHERE panel = ? AND account = ? AND panel_order_id IN"
        " (SELECT value FROM json_each(?))",
        (panel, account, json.dumps([int(i) for i in panel_order_ids])),
    )
    return {int(row["panel_order_id"]): _order(row) for row in rows}


async def get_orders(db: aiosqlite.Connection, order_ids: Sequence[int]) -> dict[int, Order]:
    """The orders with these local ids, in one query: {id: order}."""
    if not order_ids:
        return {}
    rows = await fetch_all(
        db,
        f"SELECT {_COLUMNS} FROM orders WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps([int(i) for i in order_ids]),),
    )
    return {int(row["id"]): _order(row) for row in rows}


async def adopt_orders(db: aiosqlite.Connection, *, panel: str) -> int:
    """Records `panel` on the orders stored before panels were recorded; how many."""
    async with transaction(db):
        cursor = await db.execute("UPDATE orders SET panel = ? WHERE panel = ''", (panel,))
        await db.execute(
            "UPDATE refills SET panel = (SELECT panel FROM orders WHERE orders.id = order_id)"
            " WHERE panel = ''"
        )
    return cursor.rowcount


def _list_filter(
    owner_id: int | None, include_drafts: bool, account: str | None = None
) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause shared by list_orders and count_orders."""
    clauses: list[str] = []
    params: list[Any] = []
    if owner_id is not None:
        clauses.append("owner_id = ?")
        params.append(owner_id)
    if account is not None:
        clauses.append("account = ?")
        params.append(account)
    if not include_drafts:
        clauses.append("state != 'draft'")
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return where, tuple(params)


async def list_orders(
    db: aiosqlite.Connection,
    *,
    owner_id: int | None = None,
    account: str | None = None,
    limit: int = 10,
    offset: int = 0,
    include_drafts: bool = False,
) -> list[Order]:
    """Orders newest first, of one owner and/or account (or all); drafts only when asked for."""
    where, params = _list_filter(owner_id, include_drafts, account)
    rows = await fetch_all(
        db,
        f"SELECT {_COLUMNS} FROM orders{where} ORDER BY id DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return [_order(row) for row in rows]


async def count_orders(
    db: aiosqlite.Connection,
    *,
    owner_id: int | None = None,
    account: str | None = None,
    include_drafts: bool = False,
) -> int:
    """How many orders list_orders would page through."""
    where, params = _list_filter(owner_id, include_drafts, account)
    row = await fetch_one(db, f"SELECT COUNT(*) FROM orders{where}", params)
    return int(row[0]) if row is not None else 0


async def active_orders(
    db: aiosqlite.Connection, *, due_before: float | None = None, limit: int | None = None
) -> list[Order]:
    """Placed, not final orders (due by `due_before`, if given), most overdue first."""
    due = "" if due_before is None else " AND (next_check_at IS NULL OR next_check_at <= ?)"
    params: tuple[Any, ...] = () if due_before is None else (due_before,)
    rows = await fetch_all(
        db,
        f"SELECT {_COLUMNS} FROM orders WHERE state = 'placed' AND final = 0{due}"
        " ORDER BY COALESCE(next_check_at, 0), id LIMIT ?",
        (*params, -1 if limit is None else limit),
    )
    return [_order(row) for row in rows]


class DueOrder(NamedTuple):
    """An order due for a status check: only what the tracker needs to poll and report it. (A
    named tuple: the tracker reads thousands per cycle, and a frozen dataclass costs several
    times more to build.)"""

    id: int
    owner_id: int
    account: str
    panel_order_id: int
    service_id: int | None
    service_name: str | None
    service_currency: str | None
    status: str | None
    created_at: float
    lost_strikes: int = 0

    @property
    def remote_id(self) -> int:
        """The id the panel knows it by."""
        return self.panel_order_id


async def due_orders(
    db: aiosqlite.Connection,
    *,
    due_before: float,
    panel: str,
    accounts: Sequence[str],
    limit: int | None = None,
) -> list[DueOrder]:
    """The placed, unfinished orders of these accounts on this panel that are due for a check,
    most overdue first, read lean (the tracker reads thousands). Orders of other panels (left
    from demo mode, or from a panel the bot no longer uses) and of accounts without a usable
    key are not read at all."""
    if not accounts:
        return []
    # Two range searches of the orders_active index, which holds only unfinished orders:
    # those never checked (in id order), then those due (most overdue first). That is the
    # order of COALESCE(next_check_at, 0), id, with nothing sorted, and neither finished
    # orders nor ones not due yet are read (one OR'ed condition would scan the whole index, or
    # the planner would walk every order of the accounts by their UNIQUE index).
    select = (
        "SELECT id, owner_id, account, panel_order_id, service_id, service_name,"
        " service_currency, status, created_at, lost_strikes FROM orders INDEXED BY orders_active"
        " WHERE state = 'placed' AND final = 0 AND panel_order_id IS NOT NULL AND panel = ?"
        " AND account IN (SELECT value FROM json_each(?))"
    )
    labels = json.dumps(list(accounts))
    rows = await fetch_all(db, f"{select} AND next_check_at IS NULL ORDER BY id LIMIT ?",
                           (panel, labels, -1 if limit is None else limit), many=True)
    if limit is None or len(rows) < limit:
        rows += await fetch_all(
            db, f"{select} AND next_check_at <= ? ORDER BY next_check_at, id LIMIT ?",
            (panel, labels, due_before, -1 if limit is None else limit - len(rows)), many=True,
        )
    # The columns come back as the fields' types (INTEGER, TEXT, REAL affinity): no converting.
    return list(map(DueOrder._make, rows))


async def followed_accounts(db: aiosqlite.Connection, *, panel: str) -> dict[str, set[int]]:
    """Accounts with unfinished orders on this panel, and the owners of those orders."""
    rows = await fetch_all(
        db,
        "SELECT DISTINCT account, owner_id FROM orders"
        " WHERE state = 'placed' AND final = 0 AND panel = ?",
        (panel,),
    )
    found: dict[str, set[int]] = {}
    for row in rows:
        found.setdefault(str(row[0]), set()).add(int(row[1]))
    return found


_SET_STATUS = (
    "UPDATE orders SET status = ?, charge = ?, start_count = ?, remains = ?, currency = ?,"
    " final = MAX(final, ?), last_checked_at = ?, next_check_at = ?, lost_strikes = 0,"
    " updated_at = CASE WHEN ? THEN ? ELSE updated_at END WHERE id = ?"
)


async def record_status(
    db: aiosqlite.Connection,
    order_id: int,
    observed: ObservedStatus,
    *,
    now: float | None = None,
    next_check_at: float | None = None,
    notify: Notice | None = None,
) -> bool:
    """Stores a poll result; True (plus a history row and `notify` queued) if status changed.

    An order once final stays final: a later status (panels reporting out of order) is stored
    and told, but the order is neither followed nor offered a cancel again."""
    at = timestamp(now)
    status = observed.status
    values = _stored(observed)
    async with transaction(db):
        row = await fetch_one(
            db,
            "SELECT status, charge, start_count, remains, currency FROM orders WHERE id = ?",
            (order_id,),
        )
        if row is None:
            raise LookupError(f"no order {order_id}")
        changed: bool = row["status"] != status
        touched = changed or tuple(row) != values
        await db.execute(
            _SET_STATUS,
            (
                *values,
                int(observed.is_final),
                at,
                next_check_at,
                int(touched),
                at,
                order_id,
            ),
        )
        if changed:
            await db.execute(
                "INSERT INTO order_status_history (order_id, status, remains, observed_at)"
                " VALUES (?, ?, ?, ?)",
                (order_id, status, observed.remains, at),
            )
            if notify is not None:
                await enqueue_notice(db, notify, order_id=order_id, now=at)
    return changed


async def apply_status_changes(
    db: aiosqlite.Connection, observations: Sequence[Observation], *, now: float | None = None,
    previous: Sequence[str | None] | None = None,
) -> list[int]:
    """Stores a batch of poll results in one transaction; the ids whose status changed.

    The same as `record_status` for each observation in turn (history row and `notify` only on
    a change; LookupError, and nothing written, if an order is unknown), in a handful of
    statements for the whole batch rather than several per order, run back to back in one
    round trip to the connection's thread: the tracker writes thousands of these per cycle.

    `previous`: the status the caller read for each observation's order, when it has them
    (the tracker does). If every observation then changes its order's status, the orders are
    updated on the condition that they still hold that status, and the rows are not read
    first; if any order no longer does (someone else stored a status meanwhile, or the order
    is unknown), that update is undone and the batch is stored as without `previous`.
    """
    at = timestamp(now)
    if not observations:
        return []
    # Everything Python is prepared here, on the loop; the thread only runs the statements.
    stored = [_stored(seen.status) for seen in observations]
    history = [(seen.order_id, seen.status.status, seen.status.remains, at)
               for seen in observations]
    notify = {index: (notice, seen.order_id) for index, seen in enumerate(observations)
              if (notice := seen.notify) is not None}
    told = dict(zip(notify, notice_rows(list(notify.values()), at), strict=True))  # index: row
    conditional = None
    if previous is not None and _all_move(observations, previous):
        conditional = [(*values, int(seen.status.is_final), at, seen.next_check_at, 1, at,
                        seen.order_id, was)
                       for seen, values, was in zip(observations, stored, previous, strict=True)]

    def write(conn: sqlite3.Connection) -> list[int]:
        moved = None if conditional is None else _changed_as_read(conn, conditional)
        if moved is None:
            moved = _changed_by_rows(conn, observations, stored, at)
        insert_rows_now(conn, _HISTORY_INSERT, [history[i] for i in moved])
        insert_rows_now(conn, NOTICE_INSERT, [told[i] for i in moved if i in told])
        return moved

    async with transaction(db):
        changed = await run_in_transaction(db, write)
    return [observations[i].order_id for i in changed]


_HISTORY_INSERT = "INSERT INTO order_status_history (order_id, status, remains, observed_at)"


def _stored(observed: ObservedStatus) -> tuple[Any, ...]:
    """An observed status as the orders table holds it: status, charge, counts, currency."""
    return (observed.status, decimal_text(observed.charge), observed.start_count,
            observed.remains, observed.currency or None)


def _all_move(observations: Sequence[Observation], previous: Sequence[str | None]) -> bool:
    """True when each observation names its own order and changes the status read of it."""
    return (len(previous) == len(observations)
            and len({seen.order_id for seen in observations}) == len(observations)
            and all(seen.status.status != was
                    for seen, was in zip(observations, previous, strict=True)))


def _changed_as_read(conn: sqlite3.Connection,
                     updates: Sequence[tuple[Any, ...]]) -> list[int] | None:
    """`apply_status_changes`' way without reading (on the connection's thread): each order
    updated on the condition that it still holds the status its caller read; every index of
    the batch when all of them did, else None and nothing written."""
    conn.execute("SAVEPOINT changed_as_read")
    try:
        matched = conn.executemany(f"{_SET_STATUS} AND status IS ?", updates).rowcount
        if matched != len(updates):
            conn.execute("ROLLBACK TO changed_as_read")
    finally:
        conn.execute("RELEASE changed_as_read")
    return list(range(len(updates))) if matched == len(updates) else None


def _changed_by_rows(conn: sqlite3.Connection, observations: Sequence[Observation],
                     stored: Sequence[tuple[Any, ...]], at: float) -> list[int]:
    """`apply_status_changes`' way with the orders' rows read first, in one query (on the
    connection's thread): the orders updated, and the indexes of the observations that changed
    a status."""
    wanted = sorted({seen.order_id for seen in observations})
    current: dict[int, tuple[Any, ...]] = {
        int(row[0]): tuple(row)[1:] for row in conn.execute(
            "SELECT id, status, charge, start_count, remains, currency FROM orders"
            " WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(wanted),))}
    updates: list[tuple[Any, ...]] = []
    changed: list[int] = []
    for index, (seen, values) in enumerate(zip(observations, stored, strict=True)):
        before = current.get(seen.order_id)
        if before is None:
            raise LookupError(f"no order {seen.order_id}")
        moved = before[0] != values[0]
        touched = moved or before != values
        updates.append((*values, int(seen.status.is_final), at, seen.next_check_at,
                        int(touched), at, seen.order_id))
        if moved:
            changed.append(index)
        current[seen.order_id] = values
    conn.executemany(_SET_STATUS, updates)
    return changed


async def record_checks(
    db: aiosqlite.Connection, observations: Sequence[Observation], *, now: float | None = None
) -> int:
    """Stores poll results that leave an order's status as it was, in one statement; how many.

    The tracker's bulk path for the many orders that did not move: counts, charge and the next
    check are written, but no history row and no notification. A row whose status changed since
    the caller read it is left alone (the next poll records that change properly), so this never
    writes a status change without its history.
    """
    at = timestamp(now)
    rows = []
    for seen in observations:
        observed = seen.status
        values = _stored(observed)[1:]  # all but the status
        rows.append((*values, at, seen.next_check_at, *values, at,
                     seen.order_id, observed.status))
    if not rows:
        return 0
    async with transaction(db):
        cursor = await db.executemany(
            "UPDATE orders SET charge = ?, start_count = ?, remains = ?, currency = ?,"
            " last_checked_at = ?, next_check_at = ?, lost_strikes = 0,"
            " updated_at = CASE WHEN charge IS NOT ? OR start_count IS NOT ? OR remains IS NOT ?"
            " OR currency IS NOT ? THEN ? ELSE updated_at END"
            " WHERE id = ? AND status = ?",
            rows,
        )
    return max(cursor.rowcount, 0)


async def record_missing(
    db: aiosqlite.Connection,
    order_id: int,
    *,
    now: float | None = None,
    next_check_at: float | None = None,
) -> int:
    """Counts a poll where the panel did not know the order; the strikes in a row so far."""
    async with transaction(db):
        await db.execute(
            "UPDATE orders SET lost_strikes = lost_strikes + 1, last_checked_at = ?,"
            " next_check_at = ? WHERE id = ?",
            (timestamp(now), next_check_at, order_id),
        )
        row = await fetch_one(db, "SELECT lost_strikes FROM orders WHERE id = ?", (order_id,))
    if row is None:
        raise LookupError(f"no order {order_id}")
    return int(row[0])


async def postpone_checks(
    db: aiosqlite.Connection, schedule: Sequence[tuple[int, float]], *, now: float | None = None
) -> int:
    """Moves each `(order id, next check)` forward after a check that got no usable answer (a
    per-id error, a failed request), so nothing is asked about every cycle forever; how many."""
    if not schedule:
        return 0
    at = timestamp(now)
    async with transaction(db):
        cursor = await db.executemany(
            "UPDATE orders SET last_checked_at = ?, next_check_at = ? WHERE id = ?",
            [(at, when, order_id) for order_id, when in schedule],
        )
    return max(cursor.rowcount, 0)


async def schedule_check(
    db: aiosqlite.Connection, order_id: int, *, next_check_at: float | None
) -> None:
    """Sets when the tracker should poll the order next (None: at the next round)."""
    async with transaction(db):
        await db.execute(
            "UPDATE orders SET next_check_at = ? WHERE id = ?", (next_check_at, order_id)
        )


async def stop_tracking(db: aiosqlite.Connection, order_id: int, *, error: str) -> bool:
    """Marks an order final without a final status (e.g. the panel lost it); False if unknown."""
    async with transaction(db):
        cursor = await db.execute(
            "UPDATE orders SET final = 1, error = ?, updated_at = ? WHERE id = ?",
            (error, timestamp(), order_id),
        )
    return cursor.rowcount == 1


async def order_history(db: aiosqlite.Connection, order_id: int) -> list[StatusChange]:
    """Every status change observed for an order, oldest first."""
    rows = await fetch_all(
        db,
        "SELECT status, observed_at, remains FROM order_status_history"
        " WHERE order_id = ? ORDER BY id",
        (order_id,),
    )
    return [
        StatusChange(str(r["status"]), float(r["observed_at"]), opt_int(r["remains"]))
        for r in rows
    ]


async def count_unfinished(
    db: aiosqlite.Connection, *, panel: str, account: str
) -> dict[int, int]:
    """How many placed, unfinished orders each owner has on this panel account."""
    rows = await fetch_all(
        db,
        "SELECT owner_id, COUNT(*) FROM orders WHERE state = 'placed' AND final = 0"
        " AND panel = ? AND account = ? GROUP BY owner_id",
        (panel, account),
    )
    return {int(row[0]): int(row[1]) for row in rows}


async def orders_by_status(
    db: aiosqlite.Connection, *, owner_id: int | None = None
) -> dict[str, int]:
    """Counts for /stats: by panel status once known ('Completed'…), else by state ('placed'…)."""
    where, params = _list_filter(owner_id, include_drafts=False)
    rows = await fetch_all(
        db,
        "SELECT CASE WHEN state = 'placed' THEN COALESCE(status, 'placed') ELSE state END AS k,"
        f" COUNT(*) FROM orders{where} GROUP BY k",
        params,
    )
    return {str(row[0]): int(row[1]) for row in rows}


async def total_charged(
    db: aiosqlite.Connection, *, owner_id: int | None = None
) -> dict[str, Decimal]:
    """Sum of the panel's charges per currency, added up as Decimal (never SQL REAL)."""
    where, params = _list_filter(owner_id, include_drafts=False)
    rows = await fetch_all(
        db,
        f"SELECT COALESCE(currency, service_currency, '') AS c, charge FROM orders{where}"
        f" {'AND' if where else 'WHERE'} charge IS NOT NULL",
        params,
    )
    totals: dict[str, Decimal] = {}
    for row in rows:
        amount = text_decimal(row["charge"])
        assert amount is not None
        totals[row["c"]] = totals.get(row["c"], Decimal(0)) + amount
    return totals

