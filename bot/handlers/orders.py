"""/orders and order cards, /status, /track, /refill, /cancelorder and /balance.

Ids typed in commands are the PANEL's order ids (what the user sees on the panel and in the
bot); buttons carry the bot's LOCAL order id (`oc:<id>[:<action>]`), so a card can only name
an order the bot stores, and is checked with `owns` on every press.

Who may act on which id (`bot.access.owns` is the rule):
- with the user's own key, any id on that key: the panel itself refuses ids of other accounts;
- on the operator's shared account, only orders the bot stores for this user (admins: every
  order stored on the operator account). Other ids are answered "not found" per id and are
  never sent to the panel, so nobody learns about (or spends on) someone else's order.

/track on the operator's shared account is the exception that lets an id in: the panel account
is shared, so the panel cannot tell whose an order is. Admins may track any id; an allowed (or
demo) user may track ids the bot does not know yet, which then become theirs; an id the bot
already stores for somebody else is answered "not found" like any other id that is not theirs.
With their own key a user may track any id of that key.

Writes (refill, cancel) from a card ask for confirmation first, so a stray tap spends nothing;
a write whose answer never came (OutcomeUnknown) is reported as such and never retried.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.access import Account, owns, role_of
from bot.callbacks import int_arg, unpack
from bot.deps import BotContext
from bot.handlers.common import (
    answer,
    esc,
    remember_user,
    reply,
    require_account,
    show,
    within_rate_limit,
)
from bot.money import format_money, parse_whole
from bot.order_views import (
    CANCEL,
    CANCEL_YES,
    PAGE_SIZE,
    REFILL,
    REFILL_STATUS,
    REFILL_YES,
    REFRESH,
    cancel_refusal,
    card_markup,
    card_text,
    confirm_markup,
    id_list_lines,
    list_markup,
    list_text,
    order_number,
    pack_lines,
    page_count,
    refill_refusal,
    status_line,
)
from bot.panel.errors import OutcomeUnknown, PanelClientError, PanelError
from bot.panel.models import CANCELED, CancelResult, ItemError, OrderStatus, RefillResult
from bot.text import WORD_MAX, esc_short
from storage import orders as order_store
from storage import refills as refill_store
from storage.orders import Order
from storage.users import OPERATOR_ACCOUNT, Role

log = logging.getLogger(__name__)

MAX_IDS = 1000  # per command: 10 panel requests at most, and a reply that stays readable
NOT_FOUND = "Order not found."
UNKNOWN_OUTCOME = ("⚠️ The panel did not confirm the request, so its outcome is unknown. It was "
                   "not retried: check with /status later.")

USAGE = {
    "status": "Send the panel order ids: <code>/status 23501 23502</code> (spaces or commas).",
    "track": "Send the ids of orders you placed on the panel's site: "
             "<code>/track 23501 23502</code>.",
    "refill": "Send the ids of the orders to refill: <code>/refill 23501 23502</code>.",
    "cancelorder": "Send the ids of the orders to cancel: <code>/cancelorder 23501</code>.",
}

_SEPARATORS = re.compile(r"[\s,;]+")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, and through which panel account."""

    user_id: int
    account: Account
    role: Role

    def owns(self, order: Order) -> bool:
        """Whether this caller may see and act on a stored order."""
        return owns(account=self.account, user_id=self.user_id, role=self.role,
                    order_account=order.account, order_owner=order.owner_id)


@dataclass(slots=True)
class Resolved:
    """Typed panel ids sorted out: what may go to the panel, and what is not the caller's."""

    known: dict[int, Order] = field(default_factory=dict)  # panel id → the caller's order
    ask: list[int] = field(default_factory=list)  # ids that may be sent to the panel
    refused: list[int] = field(default_factory=list)  # answered "not found", never sent


# A batched write (refill, cancel) of the ids that passed the checks: a line per id, and
# whether any outcome is unknown.
Perform = Callable[[BotContext, Caller, Resolved, list[int]],
                   Awaitable[tuple[dict[int, str], bool]]]


# --- shared steps -----------------------------------------------------------------------------

def parse_ids(text: str) -> tuple[list[int], list[str]]:
    """Panel order ids from "1, 2 3,4" (deduplicated, in order) and the words that are not ids."""
    ids: list[int] = []
    bad: list[str] = []
    for word in _SEPARATORS.split(text.strip()):
        if not word:
            continue
        panel_id = parse_whole(word.removeprefix("#"))
        if panel_id is not None and panel_id > 0:
            ids.append(panel_id)
        else:
            bad.append(word)
    return list(dict.fromkeys(ids)), bad


async def typed_ids(update: Update, context: BotContext, command: str) -> list[int] | None:
    """The ids after a command, or None after telling the user (in one line) what is wrong."""
    ids, bad = parse_ids(" ".join(context.args or []))
    if bad:
        shown = ", ".join(esc_short(word, WORD_MAX) for word in bad[:5])
        await reply(update, f"These are not order ids: {shown}{', …' if len(bad) > 5 else ''}. "
                            f"{USAGE[command]}")
        return None
    if not ids:
        await reply(update, USAGE[command])
        return None
    if len(ids) > MAX_IDS:
        await reply(update, f"That is {len(ids)} ids: at most {MAX_IDS} per command, please "
                            "send them in parts.")
        return None
    return ids


async def caller_of(update: Update, context: BotContext) -> Caller | None:
    """The caller with their account and role; None (after explaining) when they have no access."""
    user = update.effective_user
    if user is None:
        return None
    account = await require_account(update, context)
    if account is None:
        return None
    return Caller(user.id, account, await role_of(context.deps, user.id))


async def resolve(context: BotContext, caller: Caller, ids: Sequence[int]) -> Resolved:
    """Sorts typed panel ids by whether the caller may ask the panel about them."""
    resolved = Resolved()
    for panel_id in ids:
        order = await order_store.get_order_by_panel_id(
            context.deps.db, account=caller.account.id, panel_order_id=panel_id)
        if order is not None and caller.owns(order):
            resolved.known[panel_id] = order
            resolved.ask.append(panel_id)
        elif order is None and caller.account.own:
            resolved.ask.append(panel_id)  # the user's own key: the panel knows whose it is
        else:
            resolved.refused.append(panel_id)
    return resolved


async def record(context: BotContext, order: Order, status: OrderStatus) -> None:
    """Stores what the panel just said about an order; no notification (the user is looking)."""
    if order.state != "placed":
        return
    await order_store.record_status(context.deps.db, order.id, status,
                                    next_check_at=order.next_check_at)


async def send_lines(update: Update, lines: Sequence[str]) -> None:
    """Replies with the lines, split into as many messages as Telegram's limit needs."""
    for text in pack_lines(lines):
        await reply(update, text)


def not_found_lines(ids: Sequence[int]) -> list[str]:
    """The one line (per hundred ids) naming ids that are not the caller's."""
    return id_list_lines("❔ Not found: ", ids)


# --- /orders and the list ---------------------------------------------------------------------

async def orders_page(context: BotContext, caller: Caller,
                      page: int) -> tuple[str, InlineKeyboardMarkup]:
    """A page of the caller's orders (admins on the operator account: everyone's)."""
    db = context.deps.db
    everyone = caller.role == "admin" and not caller.account.own
    owner = None if everyone or caller.account.own else caller.user_id
    total = await order_store.count_orders(db, owner_id=owner, account=caller.account.id)
    page = min(max(page, 0), page_count(total) - 1)  # a stale page number shows the nearest
    orders = await order_store.list_orders(db, owner_id=owner, account=caller.account.id,
                                           limit=PAGE_SIZE, offset=page * PAGE_SIZE)
    return (list_text(orders, page=page, total=total, everyone=everyone),
            list_markup(orders, page=page, total=total))


async def orders_command(update: Update, context: BotContext) -> None:
    """Lists the caller's orders, newest first."""
    await remember_user(update, context)
    caller = await caller_of(update, context)
    if caller is None:
        return
    text, markup = await orders_page(context, caller, 0)
    await reply(update, text, markup)


async def orders_list_button(update: Update, context: BotContext) -> None:
    """Shows another page of the list (◀ ▶, or My orders from the menu)."""
    query = update.callback_query
    caller = await caller_of(update, context)
    if caller is None or query is None:
        return
    page = int_arg(unpack(query.data), 1) or 0
    await answer(query)
    text, markup = await orders_page(context, caller, page)
    await show(update, text, markup)


# --- the card -----------------------------------------------------------------------------------

async def show_card(update: Update, context: BotContext, order_id: int,
                    note: str | None = None) -> None:
    """Shows an order's card (freshly read) in place of the pressed message."""
    db = context.deps.db
    order = await order_store.get_order(db, order_id)
    if order is None:
        return
    history = await order_store.order_history(db, order.id)
    refills = await refill_store.refills_for_order(db, order.id)
    await show(update, card_text(order, history, refills, note), card_markup(order, refills))


async def card_button(update: Update, context: BotContext) -> None:
    """An order card and its actions: refresh, refill, refill status, cancel."""
    query = update.callback_query
    if query is None:
        return
    parts = unpack(query.data)
    order_id = int_arg(parts, 1)
    action = parts[2] if len(parts) > 2 else ""
    caller = await caller_of(update, context)
    if caller is None:
        return
    order = None if order_id is None else await order_store.get_order(context.deps.db, order_id)
    if order is None or order.state == "draft" or not caller.owns(order) or len(parts) > 3:
        await answer(query, NOT_FOUND)  # stale or forged: nothing else happens
        return
    actions = {"": open_card, REFRESH: refresh_card, REFILL: ask_refill,
               REFILL_YES: refill_card, REFILL_STATUS: refill_status_card,
               CANCEL: ask_cancel, CANCEL_YES: cancel_card}
    handler = actions.get(action)
    if handler is None:
        await answer(query, "This button is no longer valid.")
        return
    await handler(update, context, caller, order)


async def open_card(update: Update, context: BotContext, caller: Caller, order: Order) -> None:
    """Shows the card as stored (no panel request)."""
    await answer(update.callback_query)
    await show_card(update, context, order.id)


def _placed(order: Order) -> int | None:
    """The panel id of a placed order, else None."""
    return order.panel_order_id if order.state == "placed" else None


async def refresh_card(update: Update, context: BotContext, caller: Caller, order: Order) -> None:
    """Asks the panel for the order's status and shows the card again."""
    query = update.callback_query
    panel_id = _placed(order)
    if panel_id is None:
        await answer(query, "This order was never placed, so the panel has nothing to say.")
        return
    if not await within_rate_limit(update, context):
        return
    try:
        status = await context.deps.panel.status(caller.account.key, panel_id)
    except PanelClientError as exc:
        await answer(query, exc.user_message, alert=True)
        return
    await record(context, order, status)
    await answer(query, f"Status: {status.status}")
    await show_card(update, context, order.id)


@dataclass(frozen=True, slots=True)
class CardOutcome:
    """What a write from the card led to: the button's answer and a note on the card."""

    answer: str
    note: str
    alert: bool = False


# One confirmed write (refill, cancel) of one placed order: panel order id → the outcome.
CardWrite = Callable[[BotContext, Caller, Order, int], Awaitable[CardOutcome]]


async def ask_write(update: Update, context: BotContext, order: Order, *, refused: str,
                    reason: str | None, question: str, yes: str) -> None:
    """Asks "Refill/Cancel order N?" before anything is sent, or says why not."""
    query = update.callback_query
    if reason is not None:
        await answer(query, f"{refused}: {reason}.", alert=True)
        await show_card(update, context, order.id)
        return
    await answer(query)
    await show(update, question, confirm_markup(order, yes))


async def card_write(update: Update, context: BotContext, caller: Caller, order: Order, *,
                     label: str, refused: str, reason: str | None, write: CardWrite) -> None:
    """A confirmed write from the card: the bot's own check again (the card may be old), the
    rate limit, exactly one request, the outcome on the card. A write is never retried."""
    query = update.callback_query
    if reason is not None or order.panel_order_id is None:
        await answer(query, f"{refused}: {reason}.", alert=True)
        await show_card(update, context, order.id)
        return
    if not await within_rate_limit(update, context):
        return
    try:
        outcome = await write(context, caller, order, order.panel_order_id)
    except OutcomeUnknown:
        await answer(query)
        await show_card(update, context, order.id, UNKNOWN_OUTCOME)
        return
    except PanelClientError as exc:
        await answer(query, exc.user_message, alert=True)
        await show_card(update, context, order.id, f"❌ {label}: {esc(exc.user_message)}")
        return
    await answer(query, outcome.answer, alert=outcome.alert)
    await show_card(update, context, order.id, outcome.note)


async def send_refill(context: BotContext, caller: Caller, order: Order,
                      panel_id: int) -> CardOutcome:
    """Requests a refill of one order and stores its id."""
    refill_id = await context.deps.panel.refill(caller.account.key, panel_id)
    await refill_store.add_refill(context.deps.db, order_id=order.id, panel_refill_id=refill_id)
    return CardOutcome(f"Refill {refill_id} requested.", f"♻️ Refill {refill_id} requested.")


async def send_cancel(context: BotContext, caller: Caller, order: Order,
                      panel_id: int) -> CardOutcome:
    """Asks the panel to cancel one order and stores what it says then."""
    results = await context.deps.panel.cancel(caller.account.key, [panel_id])
    result = results[0] if results else CancelResult(panel_id, ok=False)
    if not result.ok:
        error = result.error or "The panel did not cancel this order."
        return CardOutcome(error, f"❌ Cancel: {esc(error)}", alert=True)
    await settle_cancels(context, caller, {panel_id: order})
    return CardOutcome("Cancel accepted.", "✖️ The panel accepted the cancel.")


async def ask_refill(update: Update, context: BotContext, caller: Caller, order: Order) -> None:
    """Asks "Refill order N?" before anything is sent."""
    await ask_write(update, context, order, refused="No refill",
                    reason=await refill_refusal_of(context, order), yes=REFILL_YES,
                    question=f"♻️ Refill order <b>{esc(order_number(order))}</b>?\nThe panel "
                             "decides whether a refill is due.")


async def refill_card(update: Update, context: BotContext, caller: Caller, order: Order) -> None:
    """Requests a refill (confirmed), stores its id and shows the card with the outcome."""
    await card_write(update, context, caller, order, label="Refill", refused="No refill",
                     reason=await refill_refusal_of(context, order), write=send_refill)


async def refill_status_card(update: Update, context: BotContext, caller: Caller,
                             order: Order) -> None:
    """Asks the panel for the status of the order's refills and shows them on the card."""
    query = update.callback_query
    db = context.deps.db
    refills = await refill_store.refills_for_order(db, order.id)
    if not refills:
        await answer(query, "This order has no refills.")
        return
    if not await within_rate_limit(update, context):
        return
    by_panel_id = {refill.panel_refill_id: refill for refill in refills}
    try:
        statuses = await context.deps.panel.refill_statuses(caller.account.key, list(by_panel_id))
    except PanelClientError as exc:
        await answer(query, exc.user_message, alert=True)
        return
    errors: list[str] = []
    for panel_refill_id, result in statuses.items():
        if isinstance(result, ItemError):
            errors.append(f"Refill {panel_refill_id}: {esc(result.error)}")
        else:
            await refill_store.record_refill_status(
                db, by_panel_id[panel_refill_id].id, status=result)
    await answer(query, "Refill status updated.")
    await show_card(update, context, order.id, "\n".join(errors) or None)


async def ask_cancel(update: Update, context: BotContext, caller: Caller, order: Order) -> None:
    """Asks "Cancel order N?" before anything is sent."""
    await ask_write(update, context, order, refused="Cannot cancel",
                    reason=cancel_refusal(order), yes=CANCEL_YES,
                    question=f"✖️ Cancel order <b>{esc(order_number(order))}</b>?\nWhat was "
                             "not delivered is refunded by the panel.")


async def cancel_card(update: Update, context: BotContext, caller: Caller, order: Order) -> None:
    """Asks the panel to cancel the order (confirmed) and shows the card with the outcome."""
    await card_write(update, context, caller, order, label="Cancel", refused="Cannot cancel",
                     reason=cancel_refusal(order), write=send_cancel)


async def settle_cancels(context: BotContext, caller: Caller,
                         accepted: dict[int, Order]) -> dict[int, str]:
    """Reads back the status of orders whose cancel the panel accepted, and stores it.

    Recording "Canceled" blindly would mark the order final and stop the tracker, while some
    panels take a while to carry a cancel out: what the panel says now is stored instead (most
    say Canceled at once), and an order still running is followed by the tracker as before.
    """
    if not accepted:
        return {}
    try:
        statuses = await context.deps.panel.statuses(caller.account.key, list(accepted))
    except PanelClientError as exc:
        log.info("status after cancel not read: %s", type(exc).__name__)
        return {}
    seen: dict[int, str] = {}
    for panel_id, result in statuses.items():
        if isinstance(result, OrderStatus):
            await record(context, accepted[panel_id], result)
            seen[panel_id] = result.status
    return seen


# --- /status and /track -------------------------------------------------------------------------

async def status_command(update: Update, context: BotContext) -> None:
    """Shows the panel's status of each typed order id (batched by 100)."""
    await remember_user(update, context)
    caller = await caller_of(update, context)
    if caller is None:
        return
    ids = await typed_ids(update, context, "status")
    if ids is None:
        return
    resolved = await resolve(context, caller, ids)
    results: dict[int, OrderStatus | ItemError] = {}
    if resolved.ask:
        if not await within_rate_limit(update, context):
            return
        try:
            results = await context.deps.panel.statuses(caller.account.key, resolved.ask)
        except PanelClientError as exc:
            await reply(update, f"❌ {esc(exc.user_message)}")
            return
    for panel_id, result in results.items():
        order = resolved.known.get(panel_id)
        if order is not None and isinstance(result, OrderStatus):
            await record(context, order, result)
    lines = [f"📊 <b>Status of {len(ids)} order{'s' if len(ids) != 1 else ''}</b>"]
    lines += [status_line(panel_id, results[panel_id]) for panel_id in ids
              if panel_id in results]
    lines += not_found_lines(resolved.refused)
    await send_lines(update, lines)


async def track_command(update: Update, context: BotContext) -> None:
    """Starts following orders placed elsewhere under the caller's panel account."""
    await remember_user(update, context)
    caller = await caller_of(update, context)
    if caller is None:
        return
    ids = await typed_ids(update, context, "track")
    if ids is None:
        return
    db = context.deps.db
    lines: dict[int, str] = {}
    ask: list[int] = []
    refused: list[int] = []
    for panel_id in ids:
        order = await order_store.get_order_by_panel_id(
            db, account=caller.account.id, panel_order_id=panel_id)
        if order is None:
            ask.append(panel_id)
        elif caller.owns(order):
            lines[panel_id] = (f"<code>{panel_id}</code> · already followed "
                               f"({esc(order.status or 'Placed')})")
        else:
            refused.append(panel_id)  # somebody else's order on the shared account
    results: dict[int, OrderStatus | ItemError] = {}
    if ask:
        if not await within_rate_limit(update, context):
            return
        try:
            results = await context.deps.panel.statuses(caller.account.key, ask)
        except PanelClientError as exc:
            await reply(update, f"❌ {esc(exc.user_message)}")
            return
    tracked = 0
    for panel_id, result in results.items():
        if isinstance(result, ItemError):
            lines[panel_id] = f"<code>{panel_id}</code> · ❌ {esc(result.error)}"
            continue
        order = await order_store.track_order(
            db, owner_id=caller.user_id, account=caller.account.id, panel_order_id=panel_id)
        if not caller.owns(order):  # claimed by somebody else a moment ago
            refused.append(panel_id)
            continue
        await record(context, order, result)
        tracked += 1
        lines[panel_id] = f"<code>{panel_id}</code> · ✅ now followed ({esc(result.status)})"
    header = f"👁 <b>Tracking</b>: {tracked} new order{'s' if tracked != 1 else ''} followed."
    if tracked:
        header += " I will message you when they change; see them in /orders."
    out = [header, *(lines[panel_id] for panel_id in ids if panel_id in lines)]
    out += not_found_lines(sorted(set(refused), key=ids.index))
    await send_lines(update, out)


# --- /refill and /cancelorder ---------------------------------------------------------------------

async def order_for_write(context: BotContext, caller: Caller, resolved: Resolved,
                          panel_id: int) -> Order:
    """The stored order for a typed id; an id on the user's own key is tracked from now on."""
    order = resolved.known.get(panel_id)
    if order is None:
        order = await order_store.track_order(context.deps.db, owner_id=caller.user_id,
                                              account=caller.account.id, panel_order_id=panel_id)
    return order


async def request_refills(context: BotContext, caller: Caller,
                          ids: list[int]) -> dict[int, RefillResult]:
    """Refill requests: the single-order form for one id, batches of 100 for more."""
    panel = context.deps.panel
    if len(ids) == 1:
        try:
            refill_id = await panel.refill(caller.account.key, ids[0])
        except PanelError as exc:
            return {ids[0]: RefillResult(ids[0], error=exc.text)}
        return {ids[0]: RefillResult(ids[0], refill=refill_id)}
    return {result.order: result for result in await panel.refills(caller.account.key, ids)}


async def write_command(update: Update, context: BotContext, *, name: str, title: str,
                        refusal: Callable[[BotContext, Order], Awaitable[str | None]],
                        perform: Perform) -> None:
    """What /refill and /cancelorder share: typed ids → only the caller's → the bot's own checks
    → one (batched) write to the panel → a line per id. A write is never retried."""
    await remember_user(update, context)
    caller = await caller_of(update, context)
    if caller is None:
        return
    ids = await typed_ids(update, context, name)
    if ids is None:
        return
    resolved = await resolve(context, caller, ids)
    lines: dict[int, str] = {}
    send: list[int] = []
    for panel_id in resolved.ask:
        known = resolved.known.get(panel_id)
        reason = None if known is None else await refusal(context, known)
        if reason is not None:
            lines[panel_id] = f"<code>{panel_id}</code> · not sent: {esc(reason)}"
        else:
            send.append(panel_id)
    unknown = False
    if send:
        if not await within_rate_limit(update, context):
            return
        try:
            done, unknown = await perform(context, caller, resolved, send)
        except OutcomeUnknown:
            done, unknown = {i: f"<code>{i}</code> · ⚠️ outcome unknown" for i in send}, True
        except PanelClientError as exc:
            await reply(update, f"❌ {esc(exc.user_message)}")
            return
        lines.update(done)
    out = [f"{title} of {len(ids)} order{'s' if len(ids) != 1 else ''}"]
    out += [lines[panel_id] for panel_id in ids if panel_id in lines]
    out += not_found_lines(resolved.refused)
    if unknown:
        out.append(UNKNOWN_OUTCOME)
    await send_lines(update, out)


async def refill_refusal_of(context: BotContext, order: Order) -> str | None:
    """Why the bot will not ask for a refill of this order, or None."""
    return refill_refusal(order, await refill_store.refills_for_order(context.deps.db, order.id))


async def cancel_refusal_of(context: BotContext, order: Order) -> str | None:
    """Why the bot will not ask to cancel this order, or None."""
    return cancel_refusal(order)


async def perform_refills(context: BotContext, caller: Caller, resolved: Resolved,
                          send: list[int]) -> tuple[dict[int, str], bool]:
    """Requests the refills and stores each refill id; a line per order, and whether any
    outcome is unknown."""
    lines: dict[int, str] = {}
    unknown = False
    for panel_id, result in (await request_refills(context, caller, send)).items():
        if result.refill is None:
            unknown = unknown or result.error == OutcomeUnknown.user_message
            lines[panel_id] = f"<code>{panel_id}</code> · ❌ {esc(result.error or '')}"
            continue
        order = await order_for_write(context, caller, resolved, panel_id)
        await refill_store.add_refill(context.deps.db, order_id=order.id,
                                      panel_refill_id=result.refill)
        lines[panel_id] = f"<code>{panel_id}</code> · ♻️ refill {result.refill} requested"
    return lines, unknown


async def perform_cancels(context: BotContext, caller: Caller, resolved: Resolved,
                          send: list[int]) -> tuple[dict[int, str], bool]:
    """Asks the panel to cancel, then reads back what it did; a line per order, and whether any
    outcome is unknown."""
    lines: dict[int, str] = {}
    unknown = False
    accepted: dict[int, Order] = {}
    for result in await context.deps.panel.cancel(caller.account.key, send):
        if result.ok:
            accepted[result.order] = await order_for_write(context, caller, resolved,
                                                           result.order)
        else:
            unknown = unknown or result.error == OutcomeUnknown.user_message
            lines[result.order] = (f"<code>{result.order}</code> · ❌ "
                                   f"{esc(result.error or 'not cancelled')}")
    seen = await settle_cancels(context, caller, accepted)
    for panel_id in accepted:
        now = seen.get(panel_id)
        lines[panel_id] = (f"<code>{panel_id}</code> · ✖️ cancel accepted"
                           + (f" (now {esc(now)})" if now and now != CANCELED else ""))
    return lines, unknown


async def refill_command(update: Update, context: BotContext) -> None:
    """Requests refills of the typed orders; per-order refill id or the panel's error."""
    await write_command(update, context, name="refill", title="♻️ <b>Refill</b>",
                        refusal=refill_refusal_of, perform=perform_refills)


async def cancel_command(update: Update, context: BotContext) -> None:
    """Asks the panel to cancel the typed orders (batched); per-order result."""
    await write_command(update, context, name="cancelorder", title="✖️ <b>Cancel</b>",
                        refusal=cancel_refusal_of, perform=perform_cancels)


# --- /balance -------------------------------------------------------------------------------------

async def balance(update: Update, context: BotContext) -> None:
    """Shows the balance of the caller's panel account (/balance or the menu's button)."""
    await remember_user(update, context)
    query = update.callback_query
    caller = await caller_of(update, context)
    if caller is None:
        return
    if not await within_rate_limit(update, context):
        return
    try:
        result = await context.deps.panel.balance(caller.account.key)
    except PanelClientError as exc:
        await answer(query)
        await reply(update, f"❌ {esc(exc.user_message)}")
        return
    await answer(query)
    amount = esc(format_money(result.balance, result.currency))
    account = caller.account
    whose = ("your own panel key" if account.own
             else "the operator's panel account" if account.id == OPERATOR_ACCOUNT
             else "your panel account")
    if account.demo:
        whose = ("your own key on the demo sandbox" if account.own
                 else "the demo sandbox") + ": not real money"
    await reply(update, f"💰 Balance: <b>{amount}</b> ({whose}).")


def handlers() -> list[BaseHandler[Update, BotContext, object]]:
    """This module's handlers."""
    return [
        CommandHandler("orders", orders_command),
        CommandHandler("status", status_command),
        CommandHandler("track", track_command),
        CommandHandler("refill", refill_command),
        CommandHandler("cancelorder", cancel_command),
        CommandHandler("balance", balance),
        CallbackQueryHandler(orders_list_button, pattern=r"^ol:"),
        CallbackQueryHandler(card_button, pattern=r"^oc:"),
        CallbackQueryHandler(balance, pattern=r"^bal$"),
    ]
