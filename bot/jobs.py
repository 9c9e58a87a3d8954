"""The bot's repeating jobs: the tracker's cycle and sending the outbox (the Telegram side).

One cycle (a JobQueue job every STATUS_POLL_INTERVAL seconds, never overlapping itself) polls
orders, then refills (`bot.services.tracking`: what is asked, how often, what is stored), now and
then tells owners of orders that can no longer be followed, and purges old messages and drafts;
then ``send_pending`` (its own job, started after each cycle and once at start-up) sends what the
outbox holds, marking each message sent only after Telegram accepted it. A crash between the
write and the send loses nothing (the message is sent at the next start); a crash between the
send and the mark sends it twice, which is the only duplicate possible.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, cast

from telegram import Bot
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.ext import JobQueue

from bot import health, i18n, metrics
from bot.callbacks import pack
from bot.deps import BotApp, BotContext, Deps
from bot.handlers import conversations
from bot.i18n import N_, _
from bot.keyboards import Button, Keyboard
from bot.outgoing import send_html
from bot.services import shop, tracking
from bot.services.notices import rendered
from bot.services.tracking import HOUR, backoff_delay, tracker_state
from bot.text import fit
from storage import orders as order_store
from storage import outbox, users
from storage.outbox import Notification

log = logging.getLogger(__name__)

DAY: Final = 24 * HOUR
#: Outbox: messages read per query, give-up point and longest pause for Telegram errors.
SEND_BATCH: Final = 50
MAX_SEND_ATTEMPTS: Final = 20
MAX_SEND_DELAY: Final = HOUR
#: Sent and dropped messages, and summaries never confirmed, are deleted after this long
#: (checked about once an hour).
KEEP_NOTIFICATIONS: Final = 30 * DAY
KEEP_DRAFTS: Final = DAY

_CARD_LABEL = N_("Open order")


@dataclass(slots=True)
class SendReport:
    """What one outbox drain did."""

    sent: int = 0
    dropped: int = 0
    deferred: int = 0


# --- sending ---------------------------------------------------------------------------------


def _card_markup(note: Notification) -> Keyboard | None:
    """The buttons under a notification: those it names (`payload["buttons"]`: rows of
    [label, callback data]), else the order's card."""
    rows = note.payload.get("buttons")
    if isinstance(rows, list) and rows:
        return Keyboard([[Button(i18n.render(i18n.from_json(label)),
                                 callback_data=str(data))
                          for label, data in row] for row in rows])
    order_id = note.payload.get("order", note.order_id)
    if not isinstance(order_id, int):
        return None
    return Keyboard([[Button(_(_CARD_LABEL),
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
        languages: dict[int, str] = {}
        while True:
            state.more_to_send = False
            at = time.time() if now is None else now
            batch = await outbox.pending_notifications(deps.db, limit=SEND_BATCH, now=at)
            if not batch:
                if state.more_to_send:
                    continue
                return report
            for note in batch:
                if not await _send_one(bot, deps, note, blocked, languages, at, report):
                    return report
    finally:
        state.draining = False


async def _send_one(bot: Bot, deps: Deps, note: Notification, blocked: dict[int, bool],
                    languages: dict[int, str], now: float, report: SendReport) -> bool:
    """Sends one message and records the outcome; False when the drain should stop."""
    db = deps.db
    if note.chat_id not in blocked:
        user = await users.get_user(db, note.chat_id)
        blocked[note.chat_id] = user is not None and user.blocked
        languages[note.chat_id] = deps.languages.of_user(user)
    if blocked[note.chat_id]:
        await outbox.drop_notification(db, note.id, reason="the user has blocked the bot")
        report.dropped += 1
        return True
    with i18n.speaking(languages[note.chat_id]):  # the owner's language now, not when written
        text, markup = rendered(note.text, note.payload), _card_markup(note)
    try:
        await send_html(bot, note.chat_id, fit(text), markup)
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
            orders = await tracking.poll_orders(deps, now=now)
            refill_report = await tracking.poll_refills(deps, now=now)
            await shop.watch_panel_balance(deps, now=now)  # shop mode only
            if now - state.unfollowed_at > tracking.UNFOLLOWED_EVERY:
                state.unfollowed_at = now
                await tracking.tell_unfollowed(deps, now=now)
            if now - state.purged_at > HOUR:
                state.purged_at = now
                await outbox.purge_notifications(deps.db, older_than=now - KEEP_NOTIFICATIONS)
                await order_store.purge_drafts(deps.db, older_than=now - KEEP_DRAFTS)
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


async def end_stale_conversations(context: BotContext) -> None:
    """The job that ends abandoned forms and waits, also across a restart (see
    bot/handlers/conversations.py), then sends what they say."""
    try:
        ended = await conversations.end_stale_conversations(
            cast("BotApp", context.application))
    except Exception:
        log.exception("Ending stale conversations failed; tried again at the next run")
        return
    if ended:
        await drain_outbox(context)


def schedule(app: BotApp) -> None:
    """Schedules the tracker: a cycle every STATUS_POLL_INTERVAL s, and the start-up drain."""
    queue = app.job_queue
    if queue is None:  # pragma: no cover - the JobQueue extra is a dependency
        log.error("No JobQueue: orders are not followed (install python-telegram-bot[job-queue])")
        return
    interval = app.bot_data["settings"].status_poll_interval
    queue.run_repeating(run_cycle, interval=interval, first=1, name="tracker")
    queue.run_once(drain_outbox, 0, name="tracker-outbox")
    timeout = app.bot_data["settings"].order_timeout * 60
    queue.run_repeating(end_stale_conversations, interval=min(60.0, max(timeout / 4, 1.0)),
                        first=0.5, name="stale-conversations")
