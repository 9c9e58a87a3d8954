"""/orders and order cards, /status, /track, /refill, /cancelorder, /balance — the chat side.

Ids typed in commands are the PANEL's order ids (what the user sees on the panel and in the
bot); buttons carry the bot's LOCAL order id (`oc:<id>[:<action>]`), so a card can only name
an order the bot stores, and is checked with the caller's ownership on every press. Who may do
what, and every request and write, is `bot.services.actions`: these handlers read the update,
call it and render the answer.

Writes (refill, cancel) from a card ask for confirmation first, so a stray tap spends nothing;
a write whose answer never came (OutcomeUnknown) is reported as such and never retried.

A shop's customer sees what their wallet paid and got back instead of the panel's charges,
never gets /track, and leaves an order whose outcome is unknown to the shop's admins.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from telegram import Update
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot.callbacks import int_arg, unpack
from bot.config import Settings
from bot.deps import DEPS_KEY, BotApp, BotContext, Deps
from bot.handlers.common import (
    answer,
    esc,
    remember_user,
    reply,
    require_account,
    show,
    within_rate_limit,
)
from bot.handlers.conversations import ExpiringConversation
from bot.handlers.shop import wallet_balance_text
from bot.i18n import L_, N_, _, ngettext
from bot.keyboards import Keyboard
from bot.money import format_money, parse_whole
from bot.order_views import (
    CANCEL,
    CANCEL_YES,
    LINK,
    NOT_PLACED,
    NOT_PLACED_YES,
    PAGE_SIZE,
    REFILL,
    REFILL_STATUS,
    REFILL_YES,
    REFRESH,
    card_markup,
    card_text,
    confirm_markup,
    id_list_lines,
    list_markup,
    list_text,
    order_number,
    pack_lines,
    page_count,
    shop_money_lines,
    status_line,
)
from bot.panel.errors import OutcomeUnknown, PanelClientError
from bot.panel.models import CANCELED
from bot.services import actions, notices, placement, wallet
from bot.services.accounts import role_of
from bot.services.actions import Caller, WriteLine, WriteReport
from bot.text import WORD_MAX, esc_short
from storage import orders as order_store
from storage import outbox
from storage import refills as refill_store
from storage.orders import Order
from storage.users import OPERATOR_ACCOUNT

log = logging.getLogger(__name__)

MAX_IDS = 1000  # per command: 10 panel requests at most, and a reply that stays readable
# Catalog texts (marked here, translated where they are shown).
NOT_FOUND = N_("Order not found.")
UNKNOWN_OUTCOME = N_("⚠️ The panel did not confirm the request, so its outcome is unknown. It "
                     "was not retried: check with /status later.")

USAGE = {
    "status": N_("Send the panel order ids: <code>/status 23501 23502</code> (spaces or "
                 "commas)."),
    "track": N_("Send the ids of orders you placed on the panel's site: "
                "<code>/track 23501 23502</code>."),
    "refill": N_("Send the ids of the orders to refill: <code>/refill 23501 23502</code>."),
    "cancelorder": N_("Send the ids of the orders to cancel: <code>/cancelorder 23501</code>."),
}

NO_TRACK = N_("This shop does not offer /track: follow the orders you placed here in /orders.")
CUSTOMER_CANCEL = N_("What was not delivered is refunded to your wallet once the shop's panel "
                     "has cancelled it.")
STALE_BUTTON = N_("This button is no longer valid.")
OTHER_PANEL = N_("This order was placed on another panel: I cannot ask about it.")
# i18n: a button's answer; {reason} says why no refill is requested
NO_REFILL = N_("No refill: {reason}.")
# i18n: a button's answer; {reason} says why the order is not cancelled
NO_CANCEL = N_("Cannot cancel: {reason}.")
# i18n: on an order's card; {error} says why the refill request failed
REFILL_FAILED = N_("❌ Refill: {error}")
# i18n: on an order's card; {error} says why the cancel request failed
CANCEL_FAILED = N_("❌ Cancel: {error}")

_SEPARATORS = re.compile(r"[\s,;]+")


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
        shown += ", …" if len(bad) > 5 else ""
        # i18n: {words} are the words typed that are not ids; {usage} says how to send them
        await reply(update, _("These are not order ids: {words}. {usage}").format(
            words=shown, usage=_(USAGE[command])))
        return None
    if not ids:
        await reply(update, _(USAGE[command]))
        return None
    if len(ids) > MAX_IDS:
        await reply(update, ngettext("That is {n} id: at most {most} per command, please send "
                                     "them in parts.",
                                     "That is {n} ids: at most {most} per command, please send "
                                     "them in parts.", len(ids)).format(n=len(ids),
                                                                        most=MAX_IDS))
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


async def send_lines(update: Update, lines: Sequence[str]) -> None:
    """Replies with the lines, split into as many messages as Telegram's limit needs."""
    for text in pack_lines(lines):
        await reply(update, text)


def not_found_lines(ids: Sequence[int]) -> list[str]:
    """The one line (per hundred ids) naming ids that are not the caller's."""
    # i18n: before a list of order ids ("❔ Not found: 23501, 23502"): ids that are not yours
    return id_list_lines(_("❔ Not found: {ids}"), ids)


# --- /orders and the list ---------------------------------------------------------------------

async def orders_page(context: BotContext, caller: Caller,
                      page: int) -> tuple[str, Keyboard]:
    """A page of the caller's orders (admins on the operator account: everyone's)."""
    db = context.deps.db
    everyone = caller.role == "admin" and not caller.account.own
    owner = None if everyone or caller.account.own else caller.user_id
    total = await order_store.count_orders(db, owner_id=owner, account=caller.account.id)
    page = min(max(page, 0), page_count(total) - 1)  # a stale page number shows the nearest
    orders = await order_store.list_orders(db, owner_id=owner, account=caller.account.id,
                                           limit=PAGE_SIZE, offset=page * PAGE_SIZE)
    return (list_text(orders, page=page, total=total, everyone=everyone,
                      track=not caller.account.customer),
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

async def show_card(update: Update, context: BotContext, caller: Caller, order_id: int,
                    note: str | None = None) -> None:
    """Shows an order's card (freshly read) in place of the pressed message."""
    db = context.deps.db
    order = await order_store.get_order(db, order_id)
    if order is None:
        return
    history = await order_store.order_history(db, order.id)
    refills = await refill_store.refills_for_order(db, order.id)
    money = None
    if context.deps.settings.shop_mode:
        paid = (await wallet.order_money(context.deps, [order.id])).get(order.id)
        if paid is not None or order.price is not None:
            money = shop_money_lines(order, paid, panel=not caller.account.customer)
    await show(update, card_text(order, history, refills, note, money,
                                 customer=caller.account.customer),
               card_markup(order, caller.account, refills))


async def card_order(update: Update, context: BotContext) -> tuple[Caller, Order, str] | None:
    """The caller, the order a card button names and its action; None (answered) when the
    order is not the caller's, or the data is stale or forged."""
    query = update.callback_query
    if query is None:
        return None
    parts = unpack(query.data)
    order_id = int_arg(parts, 1)
    caller = await caller_of(update, context)
    if caller is None:
        return None
    order = None if order_id is None else await order_store.get_order(context.deps.db, order_id)
    if order is None or order.state == "draft" or not caller.owns(order) or len(parts) > 3:
        await answer(query, _(NOT_FOUND))  # stale or forged: nothing else happens
        return None
    return caller, order, parts[2] if len(parts) > 2 else ""


async def card_button(update: Update, context: BotContext) -> None:
    """An order card and its actions: refresh, refill, refill status, cancel, settle."""
    named = await card_order(update, context)
    if named is None:
        return
    caller, order, action = named
    card_actions = {"": open_card, REFRESH: refresh_card, REFILL: ask_refill,
                    REFILL_YES: refill_card, REFILL_STATUS: refill_status_card,
                    CANCEL: ask_cancel, CANCEL_YES: cancel_card, NOT_PLACED: ask_not_placed,
                    NOT_PLACED_YES: not_placed_card}
    handler = card_actions.get(action)
    if handler is None:
        await answer(update.callback_query, _(STALE_BUTTON))
        return
    await handler(update, context, caller, order)


async def open_card(update: Update, context: BotContext, caller: Caller, order: Order) -> None:
    """Shows the card as stored (no panel request)."""
    await answer(update.callback_query)
    await show_card(update, context, caller, order.id)


async def refresh_card(update: Update, context: BotContext, caller: Caller, order: Order) -> None:
    """Asks the panel for the order's status and shows the card again."""
    query = update.callback_query
    if order.state != "placed" or order.panel_order_id is None:
        await answer(query, _("This order was never placed, so the panel has nothing to say."))
        return
    if not caller.may_act(order):
        await answer(query, _(OTHER_PANEL))
        return
    if not await within_rate_limit(update, context):
        return
    try:
        status = await actions.refresh(context.deps, caller, order)
    except PanelClientError as exc:
        await answer(query, exc.user_message, alert=True)
        return
    # i18n: a button's answer after a refresh; {status} is the panel's status
    await answer(query, _("Status: {status}").format(status=notices.status_word(status.status)))
    await show_card(update, context, caller, order.id)


@dataclass(frozen=True, slots=True)
class CardOutcome:
    """What a write from the card led to: the button's answer and a note on the card."""

    answer: str
    note: str
    alert: bool = False


# One confirmed write (refill, cancel) of one placed order.
CardWrite = Callable[[BotContext, Caller, Order], Awaitable[CardOutcome]]


async def ask_write(update: Update, context: BotContext, caller: Caller, order: Order, *,
                    refused: str, reason: str | None, question: str, yes: str) -> None:
    """Asks "Refill/Cancel order N?" before anything is sent, or says why not (`refused` is a
    catalog text with the `{reason}`)."""
    query = update.callback_query
    if reason is not None:
        await answer(query, _(refused).format(reason=reason), alert=True)
        await show_card(update, context, caller, order.id)
        return
    await answer(query)
    await show(update, question, confirm_markup(order, yes))


async def card_write(update: Update, context: BotContext, caller: Caller, order: Order, *,
                     failed: str, refused: str, reason: str | None, write: CardWrite) -> None:
    """A confirmed write from the card: the bot's own check again (the card may be old), the
    rate limit, exactly one request, the outcome on the card. A write is never retried.
    `failed` and `refused` are catalog texts with an `{error}` and a `{reason}`."""
    query = update.callback_query
    if reason is not None or order.panel_order_id is None:
        await answer(query, _(refused).format(reason=reason), alert=True)
        await show_card(update, context, caller, order.id)
        return
    if not await within_rate_limit(update, context):
        return
    try:
        outcome = await write(context, caller, order)
    except OutcomeUnknown:
        await answer(query)
        await show_card(update, context, caller, order.id, _(UNKNOWN_OUTCOME))
        return
    except PanelClientError as exc:
        await answer(query, exc.user_message, alert=True)
        await show_card(update, context, caller, order.id,
                        _(failed).format(error=esc(exc.user_message)))
        return
    await answer(query, outcome.answer, alert=outcome.alert)
    await show_card(update, context, caller, order.id, outcome.note)


async def send_refill(context: BotContext, caller: Caller, order: Order) -> CardOutcome:
    """Requests a refill of one order and stores its id."""
    refill_id = await actions.refill_one(context.deps, caller, order)
    return CardOutcome(_("Refill {refill} requested.").format(refill=refill_id),
                       _("♻️ Refill {refill} requested.").format(refill=refill_id))


async def send_cancel(context: BotContext, caller: Caller, order: Order) -> CardOutcome:
    """Asks the panel to cancel one order and stores what it says then."""
    result = await actions.cancel_one(context.deps, caller, order)
    if not result.ok:
        error = result.error or _("The panel did not cancel this order.")
        # i18n: on an order's card; {error} is the panel's answer to the cancel
        return CardOutcome(error, _("❌ Cancel: {error}").format(error=esc(error)), alert=True)
    return CardOutcome(_("Cancel accepted."), _("✖️ The panel accepted the cancel."))


async def refill_reason(context: BotContext, caller: Caller, order: Order) -> str | None:
    """Why the bot will not ask for a refill of this order now, or None."""
    refills = await refill_store.refills_for_order(context.deps.db, order.id)
    return actions.refill_refusal(order, refills, caller.account)


async def ask_refill(update: Update, context: BotContext, caller: Caller, order: Order) -> None:
    """Asks "Refill order N?" before anything is sent."""
    await ask_write(update, context, caller, order, refused=NO_REFILL,
                    reason=await refill_reason(context, caller, order), yes=REFILL_YES,
                    question=_("♻️ Refill order <b>{number}</b>?\nThe panel decides whether a "
                               "refill is due.").format(number=esc(order_number(order))))


async def refill_card(update: Update, context: BotContext, caller: Caller, order: Order) -> None:
    """Requests a refill (confirmed), stores its id and shows the card with the outcome."""
    await card_write(update, context, caller, order, failed=REFILL_FAILED, refused=NO_REFILL,
                     reason=await refill_reason(context, caller, order), write=send_refill)


async def refill_status_card(update: Update, context: BotContext, caller: Caller,
                             order: Order) -> None:
    """Asks the panel for the status of the order's refills and shows them on the card."""
    query = update.callback_query
    refills = await refill_store.refills_for_order(context.deps.db, order.id)
    if not refills:
        await answer(query, _("This order has no refills."))
        return
    if not caller.may_act(order):
        await answer(query, _(OTHER_PANEL))
        return
    if not await within_rate_limit(update, context):
        return
    try:
        errors = await actions.refill_statuses(context.deps, caller, order, refills)
    except PanelClientError as exc:
        await answer(query, exc.user_message, alert=True)
        return
    await answer(query, _("Refill status updated."))
    await show_card(update, context, caller, order.id, "\n".join(map(esc, errors)) or None)


async def ask_cancel(update: Update, context: BotContext, caller: Caller, order: Order) -> None:
    """Asks "Cancel order N?" before anything is sent."""
    refund = (_(CUSTOMER_CANCEL) if caller.account.customer
              else _("What was not delivered is refunded by the panel."))
    # i18n: {refund} says who refunds what was not delivered
    question = _("✖️ Cancel order <b>{number}</b>?\n{refund}").format(
        number=esc(order_number(order)), refund=refund)
    await ask_write(update, context, caller, order, refused=NO_CANCEL,
                    reason=actions.cancel_refusal(order, caller.account), yes=CANCEL_YES,
                    question=question)


async def cancel_card(update: Update, context: BotContext, caller: Caller, order: Order) -> None:
    """Asks the panel to cancel the order (confirmed) and shows the card with the outcome."""
    await card_write(update, context, caller, order, failed=CANCEL_FAILED, refused=NO_CANCEL,
                     reason=actions.cancel_refusal(order, caller.account), write=send_cancel)


# --- settling an order whose outcome is unknown ----------------------------------------------

NOT_WAITING = placement.NOT_WAITING
WAITING_LINK = 1
LINK_KEY = "link_order"


async def ask_not_placed(update: Update, context: BotContext, caller: Caller,
                         order: Order) -> None:
    """Asks "It was not placed?" before the order is marked so."""
    if order.state != "unknown":
        await answer(update.callback_query, _(NOT_WAITING))
        await show_card(update, context, caller, order.id)
        return
    await answer(update.callback_query)
    await show(update, _("✖ Order <b>{number}</b> is not on the panel's order list?\nI will "
                         "mark it as not placed (nothing is sent to the panel).").format(
                             number=esc(order_number(order))),
               confirm_markup(order, NOT_PLACED_YES))


async def not_placed_card(update: Update, context: BotContext, caller: Caller,
                          order: Order) -> None:
    """Marks an outcome-unknown order as not placed (confirmed)."""
    done = await placement.not_placed(context.deps, caller.account, caller.user_id, order.id,
                                      admin=caller.role == "admin")
    await answer(update.callback_query, _("Marked as not placed.") if done else _(NOT_WAITING))
    await show_card(update, context, caller, order.id,
                    _("Marked as not placed. Order again with /order.") if done else None)


async def ask_link(update: Update, context: BotContext) -> int | None:
    """"It was placed": asks for the panel's id of the order."""
    named = await card_order(update, context)
    if named is None:
        return ConversationHandler.END
    caller, order, _action = named
    if (order.state != "unknown" or not caller.may_act(order)
            or not placement.may_settle(order, caller.account)):
        await answer(update.callback_query, _(NOT_WAITING))
        return ConversationHandler.END
    await answer(update.callback_query)
    assert context.user_data is not None
    context.user_data[LINK_KEY] = order.id
    # i18n: stands for the service's name of an order that has none
    service = esc(order.service_name) if order.service_name else _("order")
    # i18n: {local_id} is the bot's own number of the order, {service} the panel's service name
    await reply(update, _("🔗 Send me the panel's order id of bot order #{local_id} ({service}), "
                          "as the panel's order list shows it. /cancel to stop.").format(
                              local_id=order.id, service=service))
    return WAITING_LINK


async def receive_link(update: Update, context: BotContext) -> int | None:
    """Links the order to the typed panel id once the panel confirms it; else asks again."""
    message = update.effective_message
    caller = await caller_of(update, context)
    order_id = (context.user_data or {}).get(LINK_KEY)
    if message is None or caller is None or not isinstance(order_id, int):
        return ConversationHandler.END
    ids, bad = parse_ids(message.text or "")
    if bad or len(ids) != 1:
        await reply(update, _("Send one order id (digits only), or /cancel."))
        return None
    if not await within_rate_limit(update, context):
        return None
    outcome = await placement.link_unknown(context.deps, caller.account, caller.user_id,
                                           order_id, ids[0], admin=caller.role == "admin")
    if isinstance(outcome, placement.LinkRefused):
        if outcome.reason == placement.NOT_WAITING:
            await reply(update, esc(_(outcome.reason)))
            return ConversationHandler.END
        # i18n: {reason} is a sentence saying why the id was not linked
        await reply(update, _("❌ {reason} Send the id again, or /cancel.").format(
            reason=esc(outcome.reason)))
        return None
    (context.user_data or {}).pop(LINK_KEY, None)
    # i18n: {number} is the panel's order id, {status} the panel's status
    await reply(update, _("✅ Linked: this is order <b>{number}</b> ({status}). I follow it "
                          "from now on; see /orders.").format(number=outcome.panel_order_id,
                                                              status=esc(notices.status_word(outcome.status))))
    return ConversationHandler.END


async def stop_link(update: Update, context: BotContext) -> int:
    """/cancel, another command or a button while an id is awaited: stop waiting."""
    (context.user_data or {}).pop(LINK_KEY, None)
    if update.callback_query is not None:
        await answer(update.callback_query,
                     _("I stopped waiting for the order id. Tap again."), alert=True)
    else:
        await reply(update, _("OK, I stopped waiting for the order id; nothing was linked."))
    return ConversationHandler.END


async def link_wait_expired(app: BotApp, chat_id: int, user_id: int) -> None:
    """The wait for an order id, ended after ORDER_TIMEOUT (also across a restart)."""
    data = app.user_data.get(user_id)
    if data is not None and data.pop(LINK_KEY, None) is not None:
        app.mark_data_for_update_persistence(user_ids=user_id)
    deps: Deps = app.bot_data[DEPS_KEY]
    await outbox.enqueue_notice(deps.db, notices.notice(chat_id, L_(
        "I stopped waiting for the order id; nothing was linked. Open the order in /orders to "
        "try again.")))


def link_handler(settings: Settings | None = None) -> ExpiringConversation:
    """The short conversation of "It was placed" → the panel's id (before the wizard, so the
    id is not taken as a search or an answer)."""
    minutes = settings.order_timeout if settings is not None else 15.0
    return ExpiringConversation(
        on_expiry=link_wait_expired,
        entry_points=[CallbackQueryHandler(ask_link, pattern=rf"^oc:\d+:{LINK}$")],
        states={WAITING_LINK: [MessageHandler(filters.TEXT & ~filters.COMMAND, receive_link)]},
        fallbacks=[CommandHandler("cancel", stop_link),
                   MessageHandler(filters.COMMAND, stop_link),
                   CallbackQueryHandler(stop_link)],
        allow_reentry=True,
        conversation_timeout=minutes * 60,
        name="link_order",
        persistent=True,
    )


# --- /status and /track -------------------------------------------------------------------------

async def ids_command(update: Update, context: BotContext, name: str, *,
                      track: bool = False) -> tuple[Caller, list[int]] | None:
    """What every command taking order ids does first: the caller (with access), the ids, the
    rate limit; None after telling the user (in one line) what stands in the way."""
    await remember_user(update, context)
    caller = await caller_of(update, context)
    if caller is None:
        return None
    refusal = None
    if track:
        refusal = _(NO_TRACK) if caller.account.customer else actions.track_refusal(caller)
    if refusal is not None:
        await reply(update, esc(refusal))
        return None
    ids = await typed_ids(update, context, name)
    if ids is None or not await within_rate_limit(update, context):
        return None
    return caller, ids


async def status_command(update: Update, context: BotContext) -> None:
    """Shows the panel's status of each typed order id (batched by 100)."""
    asked = await ids_command(update, context, "status")
    if asked is None:
        return
    caller, ids = asked
    try:
        report = await actions.check_statuses(context.deps, caller, ids)
    except PanelClientError as exc:
        await reply(update, f"❌ {esc(exc.user_message)}")
        return
    lines = [ngettext("📊 <b>Status of {n} order</b>", "📊 <b>Status of {n} orders</b>",
                      len(ids)).format(n=len(ids))]
    charge = not caller.account.customer
    lines += [status_line(panel_id, report.results[panel_id], charge=charge) for panel_id in ids
              if panel_id in report.results]
    lines += not_found_lines(report.refused)
    await send_lines(update, lines)


async def track_command(update: Update, context: BotContext) -> None:
    """Starts following orders placed elsewhere under the caller's panel account."""
    asked = await ids_command(update, context, "track", track=True)
    if asked is None:
        return
    caller, ids = asked
    try:
        report = await actions.track(context.deps, caller, ids)
    except PanelClientError as exc:
        await reply(update, f"❌ {esc(exc.user_message)}")
        return
    lines: dict[int, str] = {}
    # i18n: /track: an order id followed already; {status} is its status
    lines.update((i, _("<code>{number}</code> · already followed ({status})").format(
                     number=i, status=esc(notices.status_word(s))))
                 for i, s in report.already.items())
    lines.update((i, f"<code>{i}</code> · ❌ {esc(e)}") for i, e in report.errors.items())
    # i18n: /track: an order id followed from now on; {status} is the panel's status
    lines.update((i, _("<code>{number}</code> · ✅ now followed ({status})").format(
                     number=i, status=esc(notices.status_word(s))))
                 for i, s in report.tracked.items())
    tracked = len(report.tracked)
    if tracked:
        header = ngettext("👁 <b>Tracking</b>: {n} new order followed. I will message you when "
                          "it changes; see it in /orders.",
                          "👁 <b>Tracking</b>: {n} new orders followed. I will message you when "
                          "they change; see them in /orders.", tracked).format(n=tracked)
    else:
        header = _("👁 <b>Tracking</b>: 0 new orders followed.")
    out = [header, *(lines[panel_id] for panel_id in ids if panel_id in lines)]
    out += not_found_lines(sorted(set(report.refused), key=ids.index))
    await send_lines(update, out)


# --- /refill and /cancelorder ---------------------------------------------------------------------

def write_line(panel_id: int, line: WriteLine) -> str:
    """One id's outcome of /refill or /cancelorder (HTML)."""
    head = f"<code>{panel_id}</code> · "
    if line.kind == "not_sent":
        # i18n: /refill, /cancelorder: an id not sent to the panel; {reason} says why
        return head + _("not sent: {reason}").format(reason=esc(line.text))
    if line.kind == "error":
        return f"{head}❌ {esc(line.text)}"
    if line.kind == "unknown":
        # i18n: /refill, /cancelorder: the panel's answer about this id never came
        return head + _("⚠️ outcome unknown")
    if line.kind == "refill":
        return head + _("♻️ refill {refill} requested").format(refill=line.refill_id)
    now = line.status_now
    if now and now != CANCELED:
        # i18n: /cancelorder: {status} is the panel's status of the order now
        return head + _("✖️ cancel accepted (now {status})").format(
            status=esc(notices.status_word(now)))
    return head + _("✖️ cancel accepted")


async def write_command(update: Update, context: BotContext, *, name: str,
                        title: Callable[[int], str],
                        perform: Callable[[Caller, list[int]], Awaitable[WriteReport]]) -> None:
    """What /refill and /cancelorder share: typed ids → the service → a line per id (`title`
    is the heading for that many ids)."""
    asked = await ids_command(update, context, name)
    if asked is None:
        return
    caller, ids = asked
    try:
        report = await perform(caller, ids)
    except PanelClientError as exc:
        await reply(update, f"❌ {esc(exc.user_message)}")
        return
    out = [title(len(ids))]
    out += [write_line(i, report.lines[i]) for i in ids if i in report.lines]
    out += not_found_lines(report.refused)
    if report.unknown:
        out.append(_(UNKNOWN_OUTCOME))
    await send_lines(update, out)


async def refill_command(update: Update, context: BotContext) -> None:
    """Requests refills of the typed orders; per-order refill id or the panel's error."""
    deps = context.deps
    await write_command(update, context, name="refill", title=lambda n: ngettext(
                            "♻️ <b>Refill</b> of {n} order", "♻️ <b>Refill</b> of {n} orders",
                            n).format(n=n),
                        perform=lambda caller, ids: actions.refill_orders(deps, caller, ids))


async def cancel_command(update: Update, context: BotContext) -> None:
    """Asks the panel to cancel the typed orders (batched); per-order result."""
    deps = context.deps
    await write_command(update, context, name="cancelorder", title=lambda n: ngettext(
                            "✖️ <b>Cancel</b> of {n} order", "✖️ <b>Cancel</b> of {n} orders",
                            n).format(n=n),
                        perform=lambda caller, ids: actions.cancel_orders(deps, caller, ids))


# --- /balance -------------------------------------------------------------------------------------

async def balance(update: Update, context: BotContext) -> None:
    """Shows the balance of the caller's panel account (/balance or the menu's button)."""
    await remember_user(update, context)
    query = update.callback_query
    caller = await caller_of(update, context)
    if caller is None:
        return
    if caller.account.customer:  # a shop's customer: their wallet, never the panel's balance
        await answer(query)
        await reply(update, await wallet_balance_text(context.deps, caller.user_id))
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
    # i18n: whose balance /balance shows (in brackets after the amount)
    if account.demo:
        whose = (_("your own key on the demo sandbox: not real money") if account.own
                 else _("the demo sandbox: not real money"))
    elif account.own:
        whose = _("your own panel key")
    elif account.id == OPERATOR_ACCOUNT:
        whose = _("the operator's panel account")
    else:
        whose = _("your panel account")
    # i18n: {whose} says whose balance it is
    await reply(update, _("💰 Balance: <b>{amount}</b> ({whose}).").format(amount=amount,
                                                                          whose=whose))


def handlers() -> list[BaseHandler[Update, BotContext, object]]:
    """This module's handlers (the link conversation is registered early: see bot/app.py)."""
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
