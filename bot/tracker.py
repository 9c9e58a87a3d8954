"""The status tracker: follows unfinished orders and refills on the panel, and pushes each change.

One cycle (a JobQueue job every STATUS_POLL_INTERVAL seconds, never overlapping itself):

1. ``poll_orders``: the placed, unfinished orders that are due (``next_check_at``), grouped by
   panel account; each account is asked with ``status`` and ``orders=``, at most 100 ids per
   request (a few requests in flight per account, a few accounts at a time). As each answer
   arrives, one transaction writes what the panel said about that batch: status changes with
   their history row and their notification (the outbox), the other orders' counts and next
   check in one statement, and the strikes of orders the panel no longer knows.
2. ``poll_refills``: the same for open refills (``refill_status`` with ``refills=``).
3. ``send_pending`` (its own job, started after each cycle and once at start-up): sends what the
   outbox holds, marking each message sent only after Telegram accepted it. A crash between the
   write and the send loses nothing (the message is sent at the next start); a crash between
   the send and the mark sends it twice, which is the only duplicate possible.

Who hears what (``/notify``): ``all`` every status change; ``final`` only when an order ends
(Completed, Partial, Canceled, Refunded, Failed, or lost); ``off`` nothing. Refills are reported
when they end (Completed or Rejected). The first status seen of an order the bot placed counts
as a change from Pending (the order was placed Pending), so a first "Pending" is not news but a
first "In progress" is; an order followed with /track is only reported from its second status
on, or at once if its first status is already final. Users who blocked the bot get nothing
until they write to it again.

How often an order is asked about, by its age (so a backlog of old, slow orders does not make
every cycle dearer):

=================  ==============
age of the order   asked about
=================  ==============
under 1 hour       every cycle
1 hour to 1 day    every 5 minutes
1 day to 1 week    every 30 minutes
over a week        every 2 hours
=================  ==============

Panel trouble (timeouts, HTTP errors, unreadable answers, a refused key) never reaches users:
that account is skipped for interval x 2^n (n failures in a row, capped at 15 minutes) and asked
again after. An order the panel answers "Incorrect order ID" for in LOST_AFTER cycles in a row
is marked lost, no longer followed, and its owner is told once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Final, Protocol, TypeVar, cast

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.ext import JobQueue

from bot import health, metrics
from bot.callbacks import pack
from bot.crypto import WrongSecretKey
from bot.deps import BotContext, Deps
from bot.handlers.common import esc
from bot.money import format_money
from bot.panel.client import BATCH_SIZE
from bot.panel.errors import PanelClientError, PanelErrorKind, classify_error
from bot.panel.models import (
    CANCELED,
    COMPLETED,
    FAILED,
    FINAL_ORDER_STATUSES,
    FINAL_REFILL_STATUSES,
    PARTIAL,
    PENDING,
    REFUNDED,
    ItemError,
    OrderStatus,
)
from bot.panel.sandbox import DEMO_KEY
from storage import orders as order_store
from storage import outbox, refills, users
from storage.db import transaction
from storage.orders import DueOrder, Observation
from storage.outbox import Notice, Notification
from storage.refills import Refill
from storage.users import OPERATOR_ACCOUNT, User

if TYPE_CHECKING:
    from bot.app import BotApp

log = logging.getLogger(__name__)

T = TypeVar("T")

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

#: Cycles in a row the panel may say "Incorrect order ID" before the order counts as lost.
LOST_AFTER: Final = 3
#: Longest pause before an account in trouble is asked again (seconds).
MAX_BACKOFF: Final = 15 * MINUTE
#: Panel accounts asked at the same time, and requests in flight per account.
ACCOUNT_CONCURRENCY: Final = 4
REQUESTS_PER_ACCOUNT: Final = 4
#: Most orders / refills looked at in one cycle; the most overdue come first.
ORDERS_PER_CYCLE: Final = 50_000
REFILLS_PER_CYCLE: Final = 2_000
#: Outbox: messages read per query, give-up point and longest pause for Telegram errors.
SEND_BATCH: Final = 50
MAX_SEND_ATTEMPTS: Final = 20
MAX_SEND_DELAY: Final = HOUR
#: Sent and dropped messages are deleted after this long (checked about once an hour).
KEEP_NOTIFICATIONS: Final = 30 * DAY

LOST = "lost"
_CARD_LABEL = "Open order"
_STOPPED_ENDINGS = frozenset({CANCELED, REFUNDED, FAILED})


# --- state kept between cycles (in memory: a restart simply starts afresh) ---------------------


@dataclass(eq=False)
class TrackerState:
    """What the tracker remembers between cycles, in `deps.state["tracker"]`."""

    cycle_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    failures: dict[str, int] = field(default_factory=dict)  # account -> failed cycles in a row
    retry_at: dict[str, float] = field(default_factory=dict)  # account -> not asked before
    keyless: set[str] = field(default_factory=set)  # accounts without a usable key (logged once)
    cycle_failures: int = 0  # unexpected errors in a row (the database, a bug)
    cycle_retry_at: float = 0.0
    draining: bool = False
    more_to_send: bool = False
    purged_at: float = 0.0


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
    failed_accounts: list[str] = field(default_factory=list)
    skipped_accounts: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SendReport:
    """What one outbox drain did."""

    sent: int = 0
    dropped: int = 0
    deferred: int = 0


# --- scheduling ------------------------------------------------------------------------------


def next_check_at(created_at: float, now: float) -> float:
    """When an unfinished order of this age should be asked about again (POLL_SCHEDULE)."""
    age = now - created_at
    for below, every in POLL_SCHEDULE:
        if age < below:
            return now + every
    return now + AFTER_A_WEEK


def backoff_delay(interval: float, failures: int) -> float:
    """The pause after `failures` failed cycles in a row: interval x 2^n, capped."""
    return float(min(interval * 2 ** min(failures, 20), MAX_BACKOFF))


def _backing_off(state: TrackerState, account: str, now: float) -> bool:
    """True while an account in trouble is left alone."""
    return state.retry_at.get(account, 0.0) > now


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


def _key_for(deps: Deps, account: str, people: Mapping[int, User]) -> str | None:
    """The panel key of an account label, or None when the bot has no usable key for it."""
    if account == OPERATOR_ACCOUNT:
        if deps.sandbox is not None:
            return DEMO_KEY
        key = deps.settings.panel_key
        return None if key is None else key.get_secret_value()
    owner = _account_owner(account)
    user = people.get(owner) if owner is not None else None
    if user is None or user.panel_key is None or deps.keybox is None:
        return None
    try:
        return deps.keybox.decrypt(user.panel_key)
    except WrongSecretKey:
        return None


def _account_owner(account: str) -> int | None:
    """The user id of a 'user:<id>' label (None for the operator's account)."""
    prefix, _, rest = account.partition(":")
    if prefix != "user":
        return None
    try:
        return int(rest)
    except ValueError:
        return None


def _usable_key(deps: Deps, state: TrackerState, account: str,
                people: Mapping[int, User]) -> str | None:
    """The account's key; logs once (not every cycle) while it has none."""
    key = _key_for(deps, account, people)
    if key is None:
        if account not in state.keyless:
            state.keyless.add(account)
            log.warning("No usable panel key for account %s: its orders are not followed "
                        "until one is connected", account)
    else:
        state.keyless.discard(account)
    return key


def _chunks(items: Sequence[T], size: int = BATCH_SIZE) -> Iterable[Sequence[T]]:
    """`items` in slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- what users read -------------------------------------------------------------------------


class OrderFacts(Protocol):
    """What a message says about an order (`storage.orders.Order` and `DueOrder` fit)."""

    @property
    def id(self) -> int: ...

    @property
    def owner_id(self) -> int: ...

    @property
    def panel_order_id(self) -> int | None: ...

    @property
    def service_id(self) -> int | None: ...

    @property
    def service_name(self) -> str | None: ...

    @property
    def service_currency(self) -> str | None: ...

    @property
    def status(self) -> str | None: ...


def exact_money(amount: Decimal, currency: str) -> str:
    """An amount as the panel sent it: every decimal it has (0.27819 USD), at least two."""
    exponent = amount.normalize().as_tuple().exponent
    places = -exponent if isinstance(exponent, int) else 2
    return format_money(amount, currency, places=min(max(places, 2), 10))


def _order_title(order: OrderFacts) -> str:
    """"Order 23501 · Instagram Followers" (HTML-escaped)."""
    title = f"Order {order.panel_order_id}"
    if order.service_name:
        title += f" · {esc(order.service_name)}"
    return title


def describe_change(order: OrderFacts, previous: str | None, seen: OrderStatus) -> str:
    """The message for a status change, in plain words (HTML)."""
    status = seen.status
    moved = esc(status) if previous is None else f"{esc(previous)} → {esc(status)}"
    parts = [f"{_order_title(order)}: {moved}"]

    def charged(amount: Decimal) -> str:
        currency = seen.currency or order.service_currency or ""
        return f"charged {esc(exact_money(amount, currency))}"

    if status == PARTIAL:
        if seen.remains is not None:
            parts.append(f"{seen.remains} not delivered")
        if seen.charge is not None:
            parts.append(charged(seen.charge))
    elif status in _STOPPED_ENDINGS:
        if seen.charge is None or seen.charge == 0:
            parts[0] += " (refunded)"
        else:
            parts.append(charged(seen.charge))
    else:
        if seen.start_count is not None and status != PENDING:
            parts.append(f"start {seen.start_count}")
        if status == COMPLETED and seen.charge is not None:
            parts.append(charged(seen.charge))
    return " · ".join(parts)


def _listening(user: User | None, *, final: bool) -> bool:
    """Whether the owner wants to hear about a change (their /notify mode; not blocked)."""
    if user is None:
        return True
    if user.blocked or user.notify == "off":
        return False
    return final or user.notify == "all"


def order_notice(order: OrderFacts, seen: OrderStatus, owner: User | None) -> Notice | None:
    """The notification for an order's new status, or None when nobody should hear of it."""
    final = seen.status in FINAL_ORDER_STATUSES
    if not _listening(owner, final=final):
        return None
    previous = order.status
    if previous is None:
        if order.service_id is None and not final:
            return None  # followed with /track: its first status is not a change
        if order.service_id is not None:
            previous = PENDING  # placed by the bot, so placed Pending
        if seen.status == previous:
            return None
    return Notice(chat_id=order.owner_id, text=describe_change(order, previous, seen),
                  payload={"order": order.id})


def lost_notice(order: OrderFacts, owner: User | None) -> Notice | None:
    """The one message saying the panel no longer knows an order."""
    if not _listening(owner, final=True):
        return None
    text = (f"{_order_title(order)}: the panel no longer knows this order; "
            "I stopped following it.")
    return Notice(chat_id=order.owner_id, text=text, payload={"order": order.id})


def refill_notice(order: OrderFacts, refill: Refill, status: str,
                  owner: User | None) -> Notice | None:
    """The message for a refill that ended (Completed or Rejected)."""
    if status not in FINAL_REFILL_STATUSES or not _listening(owner, final=True):
        return None
    title = f"Refill {refill.panel_refill_id} of order {order.panel_order_id}"
    if order.service_name:
        title += f" · {esc(order.service_name)}"
    return Notice(chat_id=order.owner_id, text=f"{title}: {esc(status)}",
                  payload={"order": order.id})


# --- polling orders --------------------------------------------------------------------------


async def poll_orders(deps: Deps, *, now: float | None = None) -> CycleReport:
    """Asks the panel about every due, unfinished order and stores what changed (no sending)."""
    now = time.time() if now is None else now
    state = tracker_state(deps)
    report = CycleReport()
    due = await order_store.due_orders(deps.db, due_before=now, limit=ORDERS_PER_CYCLE)
    by_account: dict[str, list[DueOrder]] = defaultdict(list)
    for order in due:
        by_account[order.account].append(order)
    if not by_account:
        return report
    wanted = {order.owner_id for order in due}
    wanted.update(o for o in map(_account_owner, by_account) if o is not None)
    people = await users.get_users(deps.db, wanted)
    gate = asyncio.Semaphore(ACCOUNT_CONCURRENCY)

    async def one(account: str, orders: list[DueOrder]) -> None:
        async with gate:
            await _poll_account(deps, state, account, orders, people, now, report)

    await asyncio.gather(*(one(a, o) for a, o in by_account.items()))
    return report


async def _poll_account(deps: Deps, state: TrackerState, account: str, orders: list[DueOrder],
                        people: Mapping[int, User], now: float, report: CycleReport) -> None:
    """Polls one panel account's orders, 100 per request, writing each batch as it arrives."""
    if _backing_off(state, account, now):
        report.skipped_accounts.append(account)
        return
    key = _usable_key(deps, state, account, people)
    if key is None:
        report.skipped_accounts.append(account)
        return
    batches = list(_chunks(orders))
    failures: list[PanelClientError] = []
    gate = asyncio.Semaphore(REQUESTS_PER_ACCOUNT)

    async def one(batch: Sequence[DueOrder]) -> None:
        # One request per batch, so a refused or failed request is an error of that request,
        # never mistaken for the panel's answer about each id in it.
        async with gate:
            report.requests += 1
            try:
                answers = await deps.panel.statuses(key, [o.panel_order_id for o in batch])
            except PanelClientError as exc:
                failures.append(exc)
                return
        report.checked += len(batch)
        await _store_batch(deps, batch, answers, people, now, report)

    await asyncio.gather(*(one(batch) for batch in batches))
    if len(failures) == len(batches):
        report.failed_accounts.append(account)
        _account_failed(state, account, now, deps.settings.status_poll_interval, failures[0])
        return
    if failures:  # the orders of the failed requests are simply due again next cycle
        log.info("Panel account %s: %d of %d status requests failed (%s)", account,
                 len(failures), len(batches), failures[0])
    _account_answered(state, account)


async def _store_batch(deps: Deps, batch: Sequence[DueOrder],
                       answers: Mapping[int, OrderStatus | ItemError],
                       people: Mapping[int, User], now: float, report: CycleReport) -> None:
    """Writes one batch of answers in one transaction: changes + outbox, checks, strikes."""
    changes: list[Observation] = []
    unchanged: list[Observation] = []
    missing: list[DueOrder] = []
    for order in batch:
        answer = answers.get(order.panel_order_id)
        when = next_check_at(order.created_at, now)
        if isinstance(answer, OrderStatus):
            if answer.status == order.status:
                unchanged.append(Observation(order.id, answer, when))
            else:
                notice = order_notice(order, answer, people.get(order.owner_id))
                changes.append(Observation(order.id, answer, when, notice))
        elif (isinstance(answer, ItemError)
              and classify_error(answer.error) is PanelErrorKind.INCORRECT_ORDER):
            missing.append(order)
        # Any other per-id trouble: nothing is written, so the order is due again next cycle.
    noticed = {seen.order_id for seen in changes if seen.notify is not None}
    async with transaction(deps.db):
        changed = await order_store.apply_status_changes(deps.db, changes, now=now)
        await order_store.record_checks(deps.db, unchanged, now=now)
        for order in missing:
            strikes = await order_store.record_missing(
                deps.db, order.id, now=now, next_check_at=next_check_at(order.created_at, now)
            )
            if strikes < LOST_AFTER:
                continue
            await order_store.stop_tracking(deps.db, order.id, error=LOST)
            report.lost += 1
            log.info("Order %s (panel id %s) is lost: the panel no longer knows it",
                     order.id, order.panel_order_id)
            notice = lost_notice(order, people.get(order.owner_id))
            if notice is not None:
                await outbox.enqueue_notice(deps.db, notice, order_id=order.id, now=now)
                report.notices += 1
    report.changed += len(changed)
    report.notices += sum(1 for order_id in changed if order_id in noticed)


# --- polling refills -------------------------------------------------------------------------


async def poll_refills(deps: Deps, *, now: float | None = None) -> CycleReport:
    """Asks the panel about every open refill and stores (and queues) the ones that ended."""
    now = time.time() if now is None else now
    state = tracker_state(deps)
    report = CycleReport()
    open_ones = await refills.open_refills(deps.db, limit=REFILLS_PER_CYCLE)
    by_account: dict[str, list[Refill]] = defaultdict(list)
    for refill in open_ones:
        by_account[refill.account].append(refill)
    if not by_account:
        return report
    people = await users.get_users(
        deps.db, (o for o in map(_account_owner, by_account) if o is not None)
    )
    for account, group in by_account.items():
        if _backing_off(state, account, now):
            report.skipped_accounts.append(account)
            continue
        key = _usable_key(deps, state, account, people)
        if key is None:
            report.skipped_accounts.append(account)
            continue
        ids = [refill.panel_refill_id for refill in group]
        try:
            answers = await deps.panel.refill_statuses(key, ids)
        except PanelClientError as exc:
            report.failed_accounts.append(account)
            _account_failed(state, account, now, deps.settings.status_poll_interval, exc)
            continue
        _account_answered(state, account)
        report.checked += len(ids)
        report.requests += math.ceil(len(ids) / BATCH_SIZE)
        for batch in _chunks(group):
            await _store_refills(deps, batch, answers, now, report)
    return report


async def _store_refills(deps: Deps, batch: Sequence[Refill],
                         answers: Mapping[int, str | ItemError], now: float,
                         report: CycleReport) -> None:
    """Writes one batch of refill answers in one transaction, queuing a message for each end."""
    owners: dict[int, User | None] = {}
    async with transaction(deps.db):
        for refill in batch:
            status = answers.get(refill.panel_refill_id)
            if not isinstance(status, str):
                continue  # the panel did not say: asked again next cycle
            notice = None
            if status != refill.status and status in FINAL_REFILL_STATUSES:
                order = await order_store.get_order(deps.db, refill.order_id)
                if order is not None:
                    if order.owner_id not in owners:
                        owners[order.owner_id] = await users.get_user(deps.db, order.owner_id)
                    notice = refill_notice(order, refill, status, owners[order.owner_id])
            if await refills.record_refill_status(
                deps.db, refill.id, status=status, now=now, notify=notice
            ):
                report.changed += 1
                report.notices += notice is not None


# --- sending ---------------------------------------------------------------------------------


def _card_markup(note: Notification) -> InlineKeyboardMarkup | None:
    """The button under a notification: the order's card."""
    order_id = note.payload.get("order", note.order_id)
    if not isinstance(order_id, int):
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(_CARD_LABEL,
                                                       callback_data=pack("oc", order_id))]])


def _retry_seconds(error: RetryAfter) -> float:
    """How long Telegram asked us to wait."""
    with warnings.catch_warnings():  # PTB 22 warns that the int form is going away
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


async def send_pending(bot: Bot, deps: Deps, *, now: float | None = None) -> SendReport:
    """Sends what the outbox holds, oldest first; each is marked sent once Telegram took it.

    Only one drain runs at a time; a call while one runs just makes it look again before it
    stops. Telegram's flood limit (RetryAfter, after the rate limiter's own retries) and network
    errors end this drain and keep the message for later; a user who blocked the bot is marked
    and their messages dropped; a message Telegram refuses (BadRequest) is dropped.
    """
    state = tracker_state(deps)
    report = SendReport()
    if state.draining:
        state.more_to_send = True
        return report
    state.draining = True
    try:
        blocked: dict[int, bool] = {}
        while True:
            state.more_to_send = False
            at = time.time() if now is None else now
            batch = await outbox.pending_notifications(deps.db, limit=SEND_BATCH, now=at)
            if not batch:
                if state.more_to_send:
                    continue
                return report
            for note in batch:
                if not await _send_one(bot, deps, note, blocked, at, report):
                    return report
    finally:
        state.draining = False


async def _send_one(bot: Bot, deps: Deps, note: Notification, blocked: dict[int, bool],
                    now: float, report: SendReport) -> bool:
    """Sends one message and records the outcome; False when the drain should stop."""
    db = deps.db
    if note.chat_id not in blocked:
        user = await users.get_user(db, note.chat_id)
        blocked[note.chat_id] = user is not None and user.blocked
    if blocked[note.chat_id]:
        await outbox.drop_notification(db, note.id, reason="the user has blocked the bot")
        report.dropped += 1
        return True
    try:
        await bot.send_message(note.chat_id, note.text, parse_mode=ParseMode.HTML,
                               reply_markup=_card_markup(note), disable_web_page_preview=True)
    except Forbidden as exc:
        log.info("Chat %s has blocked the bot; its messages are dropped until it writes again",
                 note.chat_id)
        blocked[note.chat_id] = True
        await users.set_blocked(db, note.chat_id, True)
        report.dropped += await outbox.drop_pending_for_chat(
            db, note.chat_id, reason=f"blocked: {exc.message}"[:200]
        )
        return True
    except RetryAfter as exc:
        wait = max(_retry_seconds(exc), 1.0)
        await outbox.mark_failed_attempt(db, note.id, error="flood control",
                                         retry_at=now + wait)
        report.deferred += 1
        log.warning("Telegram flood control: notifications wait %.0f s", wait)
        return False
    except BadRequest as exc:
        log.warning("Telegram refused notification %s: %s", note.id, exc.message)
        await outbox.drop_notification(db, note.id, reason=exc.message[:200])
        report.dropped += 1
        return True
    except TelegramError as exc:  # network trouble, timeouts: keep it for later
        attempts = note.attempts + 1
        retry_at = (None if attempts >= MAX_SEND_ATTEMPTS
                    else now + min(30.0 * 2 ** min(note.attempts, 12), MAX_SEND_DELAY))
        await outbox.mark_failed_attempt(db, note.id, error=str(exc)[:200], retry_at=retry_at)
        if retry_at is None:
            report.dropped += 1
            log.warning("Gave up on notification %s after %d attempts", note.id, attempts)
        else:
            report.deferred += 1
            log.warning("Could not send notification %s (%s); retrying later", note.id, exc)
        return False
    await outbox.mark_sent(db, note.id)
    report.sent += 1
    return True


# --- jobs ------------------------------------------------------------------------------------


async def run_cycle(context: BotContext) -> None:
    """The repeating job: poll orders and refills, then send; never overlaps, never raises."""
    deps = context.deps
    state = tracker_state(deps)
    if state.cycle_lock.locked():
        log.debug("Tracker cycle still running; this one is skipped")
        return
    now = time.time()
    if state.cycle_retry_at > now:
        return
    async with state.cycle_lock:
        try:
            started = time.monotonic()
            orders = await poll_orders(deps, now=now)
            refill_report = await poll_refills(deps, now=now)
            if now - state.purged_at > HOUR:
                state.purged_at = now
                await outbox.purge_notifications(deps.db, older_than=now - KEEP_NOTIFICATIONS)
        except Exception:
            state.cycle_failures += 1
            delay = backoff_delay(deps.settings.status_poll_interval, state.cycle_failures)
            state.cycle_retry_at = now + delay
            log.exception("Tracker cycle failed; next one in %.0f s", delay)
        else:
            state.cycle_failures = 0
            health.FACTS.tracker_cycled()
            metrics.tracker_cycle(time.monotonic() - started, orders=orders.checked,
                                  refills=refill_report.checked)
            if orders.checked or refill_report.checked or orders.failed_accounts:
                log.debug("Tracker: %d orders (%d requests), %d changed, %d messages, "
                          "%d refills in %.2f s", orders.checked, orders.requests,
                          orders.changed, orders.notices + refill_report.notices,
                          refill_report.checked, time.monotonic() - started)
    # PTB types the context's queue with an unbound context type; it is this app's queue.
    queue = cast("JobQueue[BotContext] | None", context.job_queue)
    if not context.application.running:
        return  # stopping: the outbox is sent at the next start
    if queue is not None:
        queue.run_once(drain_outbox, 0, name="tracker-outbox")
    else:  # pragma: no cover - the JobQueue extra is a dependency
        await drain_outbox(context)


async def drain_outbox(context: BotContext) -> None:
    """The sending job (after each cycle, and once at start-up for what a crash left)."""
    try:
        await send_pending(context.bot, context.deps)
    except asyncio.CancelledError:
        # The bot is stopping: what was not marked sent stays queued for the next start.
        log.info("Sending notifications interrupted by shutdown; the rest stay queued")
    except Exception:
        log.exception("Sending notifications failed; they stay queued")


def schedule(app: BotApp) -> None:
    """Schedules the tracker: a cycle every STATUS_POLL_INTERVAL s, and the start-up drain."""
    queue = app.job_queue
    if queue is None:  # pragma: no cover - the JobQueue extra is a dependency
        log.error("No JobQueue: orders are not followed (install python-telegram-bot[job-queue])")
        return
    interval = app.bot_data["settings"].status_poll_interval
    queue.run_repeating(run_cycle, interval=interval, first=1, name="tracker")
    queue.run_once(drain_outbox, 0, name="tracker-outbox")
