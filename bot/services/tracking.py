"""Following orders and refills on the panel: the schedule, batched checks, back-off, and the one
write path for every status the bot sees.

One machinery polls both kinds (`ORDERS`, `REFILLS`): the due items of the accounts the bot
holds a key for, on the panel it uses now, grouped by account, at most 100 ids per request (a
few requests in flight per account, a few accounts at a time). As answers arrive, one
transaction writes what the panel said about the batches answered together (up to
WRITE_TOGETHER): status changes with their history row and their notification (the outbox), the
others' next check, and the strikes of ids the panel no longer knows ("Incorrect order ID"
LOST_AFTER checks in a row: lost, owner told once).

`record_statuses` is the write path for a status seen anywhere — the tracker, a card's Refresh,
/status, /track, a cancel's read-back — so whoever looks first, the owner hears of each change
exactly once, and a shop order's refund is booked with the status that calls for it
(`bot.services.wallet.refund_from_statuses`, same transaction).

How often an item is asked about, by its age (so a backlog of old, slow orders does not make
every cycle dearer):

=================  ==============
age                asked about
=================  ==============
under 1 hour       every cycle
1 hour to 1 day    every 5 minutes
1 day to 1 week    every 30 minutes
over a week        every 2 hours
=================  ==============

A check that gets no usable answer (a per-id error, a failed request) moves the next check
forward like any other, so nothing is asked about every cycle forever. Panel trouble (timeouts,
HTTP errors, unreadable answers, a refused key) never reaches users: that account is skipped for
interval x 2^n (n failures in a row, capped at 15 minutes). Accounts without a usable key
(after /disconnect, or with SECRET_KEY unset) are not read at all; their owners are told once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, Protocol, TypeVar

import aiosqlite

from bot.deps import Deps
from bot.i18n import L_, Msg
from bot.panel.client import BATCH_SIZE, PanelClient
from bot.panel.errors import PanelClientError, PanelErrorKind, classify_error
from bot.panel.models import FINAL_REFILL_STATUSES, ItemError, OrderStatus
from bot.services import shop, wallet
from bot.services.accounts import key_of_account, keyed_accounts, user_of_account
from bot.services.notices import (
    OrderFacts,
    lost_notice,
    lost_refill_notice,
    order_notices,
    refill_notice,
    unfollowed_notice,
)
from storage import meta, outbox, users
from storage import orders as order_store
from storage import refills as refill_store
from storage.db import transaction
from storage.orders import DueOrder, Observation
from storage.refills import DueRefill
from storage.users import OPERATOR_ACCOUNT, User

log = logging.getLogger(__name__)

MINUTE: Final = 60.0
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR
WEEK: Final = 7 * DAY

#: (age below, ask every): see the module docstring. Past the last row: every AFTER_A_WEEK.
POLL_SCHEDULE: Final[tuple[tuple[float, float], ...]] = (
    (HOUR, 0.0),
    (DAY, 5 * MINUTE),
    (WEEK, 30 * MINUTE),
)
AFTER_A_WEEK: Final = 2 * HOUR

#: Checks in a row the panel may say "Incorrect order ID" before the item counts as lost.
LOST_AFTER: Final = 3
#: Longest pause before an account in trouble is asked again (seconds).
MAX_BACKOFF: Final = 15 * MINUTE
#: Panel accounts asked at the same time, and requests in flight per account.
ACCOUNT_CONCURRENCY: Final = 4
REQUESTS_PER_ACCOUNT: Final = 4
#: Most answered batches written in one transaction (see `_Writer`). More makes fewer COMMITs but
#: longer waits for the bot's own writes meanwhile: with 10, a write during a 10,000-order
#: cycle waited up to ~120 ms; with 4, up to ~70 ms (one batch a transaction: up to ~340 ms,
#: queued behind every batch answered before it).
WRITE_TOGETHER: Final = 4
#: Most orders / refills looked at in one cycle; the most overdue come first.
ORDERS_PER_CYCLE: Final = 50_000
REFILLS_PER_CYCLE: Final = 5_000
#: How often the bot looks for accounts whose orders it can no longer follow.
UNFOLLOWED_EVERY: Final = HOUR

LOST = "lost"
_UNFOLLOWED = "unfollowed:"  # meta name prefix: the account's owners were told why

T = TypeVar("T")


class Due(Protocol):
    """An item due for a check (`DueOrder`, `DueRefill`)."""

    @property
    def id(self) -> int: ...

    @property
    def owner_id(self) -> int: ...

    @property
    def account(self) -> str: ...

    @property
    def created_at(self) -> float: ...

    @property
    def remote_id(self) -> int: ...


Item = TypeVar("Item", bound=Due)
Answer = TypeVar("Answer")


# --- state kept between cycles (in memory: a restart simply starts afresh) ---------------------


@dataclass(eq=False)
class TrackerState:
    """What the tracker remembers between cycles, in `deps.state["tracker"]`."""

    cycle_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    failures: dict[str, int] = field(default_factory=dict)  # account -> failed cycles in a row
    retry_at: dict[str, float] = field(default_factory=dict)  # account -> not asked before
    cycle_failures: int = 0  # unexpected errors in a row (the database, a bug)
    cycle_retry_at: float = 0.0
    draining: bool = False
    more_to_send: bool = False
    purged_at: float = 0.0
    unfollowed_at: float = 0.0


def tracker_state(deps: Deps) -> TrackerState:
    """The tracker's state for these deps, created on first use."""
    state = deps.state.get("tracker")
    if not isinstance(state, TrackerState):
        state = deps.state["tracker"] = TrackerState()
    return state


@dataclass(slots=True)
class CycleReport:
    """What one poll did: ids asked, requests sent, changes stored, messages queued."""

    checked: int = 0
    requests: int = 0
    changed: int = 0
    notices: int = 0
    lost: int = 0
    postponed: int = 0
    failed_accounts: list[str] = field(default_factory=list)
    skipped_accounts: list[str] = field(default_factory=list)


# --- scheduling ------------------------------------------------------------------------------


def next_check_at(created_at: float, now: float) -> float:
    """When an unfinished item of this age should be asked about again (POLL_SCHEDULE)."""
    age = now - created_at
    for below, every in POLL_SCHEDULE:
        if age < below:
            return now + every
    return now + AFTER_A_WEEK


def backoff_delay(interval: float, failures: int) -> float:
    """The pause after `failures` failed cycles in a row: interval x 2^n, capped."""
    return float(min(interval * 2 ** min(failures, 20), MAX_BACKOFF))


def _account_failed(
    state: TrackerState, account: str, now: float, interval: float, error: Exception
) -> None:
    """Counts a failed poll of an account and sets when to ask it again."""
    failures = state.failures[account] = state.failures.get(account, 0) + 1
    delay = backoff_delay(interval, failures)
    state.retry_at[account] = now + delay
    # The client's errors never carry the key; their text is safe to log.
    log.warning("Panel trouble on account %s (%s: %s); %d in a row, next try in %.0f s",
                account, type(error).__name__, error, failures, delay)


def _account_answered(state: TrackerState, account: str) -> None:
    """Forgets an account's trouble once it answers again."""
    if state.failures.pop(account, 0):
        log.info("Panel account %s answers again", account)
    state.retry_at.pop(account, None)


def _chunks(items: Sequence[T], size: int = BATCH_SIZE) -> Iterable[Sequence[T]]:
    """`items` in slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _is_missing(answer: object) -> bool:
    """True when the panel says it does not know the id ("Incorrect order ID")."""
    return (isinstance(answer, ItemError)
            and classify_error(answer.error) in (PanelErrorKind.INCORRECT_ORDER,
                                                 PanelErrorKind.INCORRECT_REFILL))


# --- the one write path for statuses ----------------------------------------------------------


class Placed(OrderFacts, Protocol):
    """A placed order whose status is being stored (`Order` and `DueOrder` fit)."""

    @property
    def created_at(self) -> float: ...


async def record_statuses(deps: Deps, seen: Sequence[tuple[Placed, OrderStatus]], *,
                          now: float | None = None,
                          people: Mapping[int, User] | None = None) -> tuple[int, int]:
    """Stores what the panel said about placed orders, in one transaction: a changed status
    with its history row and its owner's notification, an unchanged one as a check. Every path
    that sees a status comes here. Returns (changed, notifications queued)."""
    if not seen:
        return 0, 0
    now = time.time() if now is None else now
    if people is None:
        people = await users.get_users(deps.db, {order.owner_id for order, _ in seen})
    unchanged: list[Observation] = []
    moved: list[tuple[Placed, OrderStatus]] = []
    for order, status in seen:
        if status.status == order.status:
            unchanged.append(Observation(order.id, status, next_check_at(order.created_at, now)))
        else:
            moved.append((order, status))
    told = order_notices(((order, status, people.get(order.owner_id)) for order, status in moved),
                         charges=not deps.settings.shop_mode)  # a shop's customers: no charges
    changes = [Observation(order.id, status, next_check_at(order.created_at, now), notice)
               for (order, status), notice in zip(moved, told, strict=True)]
    noticed = {change.order_id for change in changes if change.notify is not None}
    async with transaction(deps.db):
        changed = await order_store.apply_status_changes(
            deps.db, changes, now=now, previous=[order.status for order, _ in moved])
        await order_store.record_checks(deps.db, unchanged, now=now)
        by_hand = await wallet.refund_from_statuses(deps, seen, now=now)
        for charged in by_hand:
            if charged.order_id in changed:  # told once: when the status has just become it
                await shop.alert_admins(deps, shop.partial_for_admins(charged), now=now)
    return len(changed), sum(1 for order_id in changed if order_id in noticed)


# --- one machinery for orders and refills -----------------------------------------------------


@dataclass(frozen=True)
class Kind(Generic[Item, Answer]):
    """What differs between polling orders and polling refills."""

    name: str
    due: Callable[[aiosqlite.Connection, float, str, Sequence[str], int],
                  Awaitable[Sequence[Item]]]
    ask: Callable[[PanelClient, str, Sequence[int]], Awaitable[Mapping[int, Answer | ItemError]]]
    store: Callable[[Deps, Sequence[tuple[Item, Answer]], Mapping[int, User], float],
                    Awaitable[tuple[int, int]]]
    strike: Callable[[aiosqlite.Connection, int, float, float], Awaitable[int]]
    lose: Callable[[Deps, Item, User | None, float], Awaitable[bool]]
    postpone: Callable[[aiosqlite.Connection, Sequence[tuple[int, float]], float],
                       Awaitable[int]]
    per_cycle: int


async def poll(deps: Deps, kind: Kind[Item, Answer], *, now: float | None = None) -> CycleReport:
    """Asks the panel about every due item of this kind and stores what it said (no sending)."""
    now = time.time() if now is None else now
    state = tracker_state(deps)
    report = CycleReport()
    accounts = await keyed_accounts(deps)
    due = await kind.due(deps.db, now, deps.panel_url, accounts, kind.per_cycle)
    by_account: dict[str, list[Item]] = defaultdict(list)
    for item in due:
        by_account[item.account].append(item)
    if not by_account:
        return report
    wanted = {item.owner_id for item in due}
    wanted.update(o for o in map(user_of_account, by_account) if o is not None)
    people = await users.get_users(deps.db, wanted)
    gate = asyncio.Semaphore(ACCOUNT_CONCURRENCY)
    writer = _Writer(deps, kind, people, now, report)

    async def one(account: str, items: list[Item]) -> None:
        async with gate:
            await _poll_account(deps, kind, state, account, items, people, now, report, writer)

    await asyncio.gather(*(one(a, i) for a, i in by_account.items()))
    return report


async def _poll_account(deps: Deps, kind: Kind[Item, Answer], state: TrackerState, account: str,
                        items: list[Item], people: Mapping[int, User], now: float,
                        report: CycleReport, writer: _Writer[Item, Answer]) -> None:
    """Polls one account's items, 100 per request, each batch handed to the writer as it
    arrives."""
    if state.retry_at.get(account, 0.0) > now:
        report.skipped_accounts.append(account)
        return
    key = key_of_account(deps, account, people)
    if key is None:  # a stored key that no longer decrypts
        report.skipped_accounts.append(account)
        await kind.postpone(deps.db, [(i.id, next_check_at(i.created_at, now)) for i in items],
                            now)
        return
    batches = list(_chunks(items))
    failures: list[PanelClientError] = []
    gate = asyncio.Semaphore(REQUESTS_PER_ACCOUNT)

    async def one(batch: Sequence[Item]) -> None:
        # One request per batch, so a refused or failed request is an error of that request,
        # never mistaken for the panel's answer about each id in it.
        async with gate:
            report.requests += 1
            try:
                answers = await kind.ask(deps.panel, key, [i.remote_id for i in batch])
            except PanelClientError as exc:
                failures.append(exc)
                answers = {}
        report.checked += len(batch)
        await writer.write(batch, answers)

    await asyncio.gather(*(one(batch) for batch in batches))
    if len(failures) == len(batches):
        report.failed_accounts.append(account)
        _account_failed(state, account, now, deps.settings.status_poll_interval, failures[0])
        return
    if failures:
        log.info("Panel account %s: %d of %d %s requests failed (%s)", account,
                 len(failures), len(batches), kind.name, failures[0])
    _account_answered(state, account)


#: A batch, the panel's answers about it, and the future its caller waits on until it is stored.
_Answered = tuple[Sequence[Item], Mapping[int, Answer | ItemError], asyncio.Future[None]]


class _Writer(Generic[Item, Answer]):
    """Writes a cycle's answered batches. Those answered while a write is running wait for it,
    then go together in one transaction (at most WRITE_TOGETHER of them): the requests in flight
    are answered at about the same time, and a COMMIT for each batch was a sixth of SQLite's
    work on it. Only one group waits for the connection at a time, so the bot's own writes
    queue behind one group, not behind every batch answered. A failed write fails every batch
    it held (none of them is stored)."""

    def __init__(self, deps: Deps, kind: Kind[Item, Answer], people: Mapping[int, User],
                 now: float, report: CycleReport) -> None:
        self.deps, self.kind, self.people, self.now, self.report = deps, kind, people, now, report
        self.lock = asyncio.Lock()
        self.waiting: list[_Answered[Item, Answer]] = []

    async def write(self, batch: Sequence[Item], answers: Mapping[int, Answer | ItemError]) -> None:
        """Returns once the batch is stored (by this call or by the one before it)."""
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append((batch, answers, stored))
        async with self.lock:
            if self.waiting:
                group = self.waiting[:WRITE_TOGETHER]
                del self.waiting[:WRITE_TOGETHER]
                await self._write_group(group)
        await stored

    async def _write_group(self, group: Sequence[_Answered[Item, Answer]]) -> None:
        counts = CycleReport()  # counted into the cycle's report once committed
        try:
            async with transaction(self.deps.db):
                for batch, answers, _ in group:
                    await _store_batch(self.deps, self.kind, batch, answers, self.people,
                                       self.now, counts)
        except Exception as exc:
            for *_, stored in group:
                if not stored.done():  # done: its caller was cancelled meanwhile
                    stored.set_exception(exc)
            return
        except BaseException:
            for *_, stored in group:
                stored.cancel()
            raise
        self.report.changed += counts.changed
        self.report.notices += counts.notices
        self.report.postponed += counts.postponed
        self.report.lost += counts.lost
        for *_, stored in group:
            if not stored.done():
                stored.set_result(None)


async def _store_batch(deps: Deps, kind: Kind[Item, Answer], batch: Sequence[Item],
                       answers: Mapping[int, Answer | ItemError], people: Mapping[int, User],
                       now: float, report: CycleReport) -> None:
    """Writes one batch of answers (in the transaction of its `_Writer` group): changes + outbox,
    strikes, next checks."""
    seen: list[tuple[Item, Answer]] = []
    missing: list[Item] = []
    silent: list[tuple[int, float]] = []
    for item in batch:
        answer = answers.get(item.remote_id)
        if answer is None or isinstance(answer, ItemError):
            if _is_missing(answer):
                missing.append(item)
            else:  # no usable answer: asked again by the schedule, not every cycle
                silent.append((item.id, next_check_at(item.created_at, now)))
        else:
            seen.append((item, answer))
    async with transaction(deps.db):
        changed, notices = await kind.store(deps, seen, people, now)
        report.changed += changed
        report.notices += notices
        report.postponed += await kind.postpone(deps.db, silent, now)
        for item in missing:
            strikes = await kind.strike(deps.db, item.id, now,
                                        next_check_at(item.created_at, now))
            if strikes < LOST_AFTER:
                continue
            report.lost += 1
            log.info("%s %s (panel id %s) is lost: the panel no longer knows it",
                     kind.name, item.id, item.remote_id)
            report.notices += await kind.lose(deps, item, people.get(item.owner_id), now)


# --- orders ----------------------------------------------------------------------------------


async def _due_orders(db: aiosqlite.Connection, now: float, panel: str, accounts: Sequence[str],
                      limit: int) -> list[DueOrder]:
    return await order_store.due_orders(db, due_before=now, panel=panel, accounts=accounts,
                                        limit=limit)


async def _ask_orders(panel: PanelClient, key: str,
                      ids: Sequence[int]) -> Mapping[int, OrderStatus | ItemError]:
    return await panel.statuses(key, ids)


async def _store_orders(deps: Deps, seen: Sequence[tuple[DueOrder, OrderStatus]],
                        people: Mapping[int, User], now: float) -> tuple[int, int]:
    return await record_statuses(deps, seen, now=now, people=people)


async def _strike_order(db: aiosqlite.Connection, order_id: int, now: float,
                        when: float) -> int:
    return await order_store.record_missing(db, order_id, now=now, next_check_at=when)


async def _lose_order(deps: Deps, order: DueOrder, owner: User | None, now: float) -> bool:
    await order_store.stop_tracking(deps.db, order.id, error=LOST)
    held = await wallet.held_by(deps, order.id)
    if held is not None:  # a shop's customer paid for it: nothing is refunded on its own
        await shop.alert_admins(deps, shop.lost_for_admins(
            order.id, order.owner_id, order.panel_order_id, order.service_name, held.amount,
            held.currency), now=now)
    notice = lost_notice(order, owner, held=None if held is None
                         else shop.lost_held_msg(held.amount, held.currency))
    if notice is not None:
        await outbox.enqueue_notice(deps.db, notice, order_id=order.id, now=now)
    return notice is not None


async def _postpone_orders(db: aiosqlite.Connection, schedule: Sequence[tuple[int, float]],
                           now: float) -> int:
    return await order_store.postpone_checks(db, schedule, now=now)


ORDERS: Final[Kind[DueOrder, OrderStatus]] = Kind(
    "order", _due_orders, _ask_orders, _store_orders, _strike_order, _lose_order,
    _postpone_orders, ORDERS_PER_CYCLE,
)


# --- refills ---------------------------------------------------------------------------------


async def _due_refills(db: aiosqlite.Connection, now: float, panel: str,
                       accounts: Sequence[str], limit: int) -> list[DueRefill]:
    return await refill_store.due_refills(db, due_before=now, panel=panel, accounts=accounts,
                                          limit=limit)


async def _ask_refills(panel: PanelClient, key: str,
                       ids: Sequence[int]) -> Mapping[int, str | ItemError]:
    return await panel.refill_statuses(key, ids)


async def _store_refills(deps: Deps, seen: Sequence[tuple[DueRefill, str]],
                         people: Mapping[int, User], now: float) -> tuple[int, int]:
    changed = notices = 0
    for refill, status in seen:
        notice = None
        if status != refill.status:
            notice = refill_notice(refill, status, people.get(refill.owner_id))
        if await refill_store.record_refill_status(
            deps.db, refill.id, status=status, final=status in FINAL_REFILL_STATUSES, now=now,
            next_check_at=next_check_at(refill.created_at, now), notify=notice,
        ):
            changed += 1
            notices += notice is not None
    return changed, notices


async def _strike_refill(db: aiosqlite.Connection, refill_id: int, now: float,
                         when: float) -> int:
    return await refill_store.record_refill_missing(db, refill_id, now=now, next_check_at=when)


async def _lose_refill(deps: Deps, refill: DueRefill, owner: User | None, now: float) -> bool:
    await refill_store.stop_refill(deps.db, refill.id, error=LOST)
    notice = lost_refill_notice(refill, owner)
    if notice is not None:
        await outbox.enqueue_notice(deps.db, notice, order_id=refill.order_id, now=now)
    return notice is not None


async def _postpone_refills(db: aiosqlite.Connection, schedule: Sequence[tuple[int, float]],
                            now: float) -> int:
    return await refill_store.postpone_refill_checks(db, schedule, now=now)


REFILLS: Final[Kind[DueRefill, str]] = Kind(
    "refill", _due_refills, _ask_refills, _store_refills, _strike_refill, _lose_refill,
    _postpone_refills, REFILLS_PER_CYCLE,
)


async def poll_orders(deps: Deps, *, now: float | None = None) -> CycleReport:
    """One look at every due order (see `poll`)."""
    return await poll(deps, ORDERS, now=now)


async def poll_refills(deps: Deps, *, now: float | None = None) -> CycleReport:
    """One look at every due refill (see `poll`)."""
    return await poll(deps, REFILLS, now=now)


# --- accounts the bot can no longer follow ------------------------------------------------------


def _unfollowed_reason(deps: Deps, account: str) -> Msg:
    """Why the orders of an account without a key are not followed (rendered when sent)."""
    if account == OPERATOR_ACCOUNT:
        # i18n: why the bot can no longer follow someone's orders (after "I can no longer
        # follow your orders:")
        return L_("the bot's operator removed the panel key they were placed with")
    if deps.keybox is None:
        # i18n: why the bot can no longer follow someone's orders (after "I can no longer
        # follow your orders:")
        return L_("the bot's operator turned off connected keys (SECRET_KEY is not set), so I "
                  "cannot use the key they were placed with")
    # i18n: why the bot can no longer follow someone's orders (after "I can no longer follow
    # your orders:")
    return L_("the panel key they were placed with is no longer connected (/connect it again)")


async def tell_unfollowed(deps: Deps, *, now: float | None = None) -> int:
    """Tells the owners of unfinished orders on accounts without a usable key, once per account
    (until it has a key again), why those orders are no longer followed; how many were told."""
    now = time.time() if now is None else now
    keyed = set(await keyed_accounts(deps))
    told = 0
    for account, owners in (await order_store.followed_accounts(
            deps.db, panel=deps.panel_url)).items():
        name = _UNFOLLOWED + account
        if account in keyed:
            await meta.delete_meta(deps.db, name)
            continue
        if await meta.get_meta(deps.db, name) is not None:
            continue
        counts = await order_store.count_unfinished(deps.db, panel=deps.panel_url,
                                                    account=account)
        async with transaction(deps.db):
            for owner in sorted(owners):
                await outbox.enqueue_notice(
                    deps.db, unfollowed_notice(owner, counts.get(owner, 0),
                                               _unfollowed_reason(deps, account)), now=now)
                told += 1
            await meta.set_meta(deps.db, name, b"1", now=now)
        log.info("Account %s has unfinished orders but no usable key: %d owner(s) told",
                 account, len(owners))
    return told
