"""Top-ups with Telegram Stars, the chat side: /topup, invoices, the pre-checkout answer, the
payment, the admins' /refund, and /paysupport and /terms.

The rules are `bot.services.payments`; these handlers read the update, call it and render the
answer. Callback data:

    tp:w              /wallet's Top up: the amounts
    tp:a:<amount>     an amount button, e.g. tp:a:10
    tp:o              another amount: the next message is the amount
    tp:d:<draft id>   a summary's "Top up N": what the wallet is missing for that order
    rf:<top-up id>    an admin's Refund button on a customer's wallet: asks to confirm
    rf:<top-up id>:y  the confirmation: refunds

A `pre_checkout_query` has no chat: the per-chat update processor runs it at once, never behind
a slow update of the same user (bot/concurrency.py), and its answer only reads the database.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation

from telegram import LabeledPrice, Update
from telegram.error import BadRequest, Forbidden
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    PreCheckoutQueryHandler,
    filters,
)

from bot import i18n
from bot.callbacks import int_arg, pack, unpack
from bot.config import Settings
from bot.deps import DEPS_KEY, BotApp, BotContext, Deps
from bot.handlers import wizard
from bot.handlers.common import BANNED, answer, esc, remember_user, reply, show
from bot.handlers.conversations import ExpiringConversation, wait_fallbacks
from bot.handlers.shop import top_up_hint
from bot.i18n import L_, N_, _
from bot.keyboards import Button, Keyboard
from bot.services import payments, wallet
from bot.services.accounts import role_of
from bot.services.notices import notice
from bot.services.payments import Invoice, TopupRefused
from storage import outbox

log = logging.getLogger(__name__)

WAITING_AMOUNT = 1
END = ConversationHandler.END
AMOUNTS_PER_ROW = 3
MAX_USER_ID = 2**53
SHOP_ONLY = N_("This bot is not a shop (MODE=team): there are no wallets to top up.")
NOT_ADMIN = N_("This command is for the bot's admins.")
REFUND_USAGE = N_("Usage: <code>/refund &lt;user id&gt; &lt;charge id&gt;</code>: the charge id "
                  "is on the customer's wallet (/wallet &lt;user id&gt;) or their receipt.")
CHECKOUT_FAILED = N_("Something went wrong on our side: nothing was charged. Please try again.")
NO_LONGER_VALID = N_("This button is no longer valid.")

# The built-in texts of /paysupport and /terms (PAYSUPPORT_TEXT and TERMS_TEXT, the operator's
# own words, replace them and are shown as written).
DEFAULT_PAYSUPPORT = N_(
    "💬 <b>Payment support</b>\n"
    "Questions about a top-up, a payment or a refund? Write to this shop's admins and tell "
    "them your user id (below) and when you paid: the receipt is in this chat.\n"
    "A payment in Telegram Stars can be refunded to your Stars while your wallet still holds "
    "what it added."
)
DEFAULT_TERMS = N_(
    "📄 <b>Terms</b>\n"
    "• A top-up buys credit in this shop's wallet, in the shop's currency, at the rate in Stars "
    "shown on its invoice. Credit is spent on orders in this bot; it cannot be withdrawn, "
    "transferred or exchanged back.\n"
    "• An order is charged to the wallet when you confirm it. What the panel does not deliver "
    "(a cancelled, failed or partial order) is refunded to the wallet.\n"
    "• A payment in Telegram Stars can be refunded to your Stars while the wallet still holds "
    "what it added: ask through /paysupport.\n"
    "• Orders are carried out by an SMM panel: delivery times and results depend on it."
)


# --- the amounts question ---------------------------------------------------------------------


def amount_label(settings: Settings, amount: Decimal, currency: str) -> str:
    """"10.00 USD · 770 ⭐"."""
    return f"{wallet.show(amount, currency)} · {payments.stars_price(settings, amount)} ⭐"


async def amounts_question(deps: Deps, user_id: int,
                           error: str | None = None) -> tuple[str, Keyboard | None]:
    """How much to top up: the amounts as buttons, and the range for another (HTML)."""
    settings = deps.settings
    funds = await wallet.balance(deps, user_id)
    currency = funds.currency
    lines = [f"❌ {esc(error)}", ""] if error else []
    if not currency:
        lines.append(_(payments.NO_CURRENCY))
        return "\n".join(lines), None
    low, high = payments.smallest(settings, currency), payments.largest(settings, currency)
    lines += [_("💳 <b>Top up your wallet</b> with Telegram Stars ({rate}).").format(
                  rate=esc(payments.rate_text(settings, currency))),
              _("Your wallet: <b>{balance}</b>").format(
                  balance=esc(wallet.show(funds.amount, currency))), "",
              _("Tap an amount, or another one between {low} and {high}. You pay in the "
                "invoice that follows.").format(low=esc(wallet.show(low, currency)),
                                                 high=esc(wallet.show(high, currency)))]
    buttons = [Button(amount_label(settings, amount, currency),
                      callback_data=pack("tp", "a", format(amount, "f")))
               for amount in payments.offered(settings, currency)]
    rows = [buttons[i : i + AMOUNTS_PER_ROW] for i in range(0, len(buttons), AMOUNTS_PER_ROW)]
    # i18n: button under the top-up amounts: type an amount of your own
    rows.append([Button(_("✏️ Other amount"), callback_data="tp:o")])
    return "\n".join(lines), Keyboard(rows)


def typed_question(deps: Deps, currency: str, error: str | None = None) -> str:
    """The question for another amount (HTML)."""
    settings = deps.settings
    low, high = payments.smallest(settings, currency), payments.largest(settings, currency)
    lines = [f"❌ {esc(error)}", ""] if error else []
    lines.append(_("Send the amount to top up, between {low} and {high}, e.g. <code>10</code> or "
                   "<code>7.50</code> ({rate}). /cancel to leave.").format(
        low=esc(wallet.show(low, currency)), high=esc(wallet.show(high, currency)),
        rate=esc(payments.rate_text(settings, currency))))
    return "\n".join(lines)


async def _refusal(update: Update, context: BotContext) -> str | None:
    """Why this user cannot top up with Stars here (HTML), or None."""
    user = update.effective_user
    settings = context.deps.settings
    if user is None:
        return ""
    if not settings.shop_mode:
        return _(SHOP_ONLY)
    if not payments.enabled(settings):
        # i18n: {how} is one sentence saying how to top up instead (ask an admin)
        return _("This shop does not take Telegram Stars. {how}").format(
            how=top_up_hint(user.id))
    reason = await payments.why_not(context.deps, user.id)
    return None if reason is None else _(BANNED)


# --- sending an invoice -----------------------------------------------------------------------


async def send_invoice(update: Update, context: BotContext, invoice: Invoice) -> None:
    """Sends a top-up's invoice in Stars to the chat (currency XTR, no provider token)."""
    chat = update.effective_chat
    if chat is None:
        return
    await context.bot.send_invoice(
        chat_id=chat.id, title=invoice.title, description=invoice.description,
        payload=invoice.payload, currency=payments.STARS, provider_token="",
        prices=[LabeledPrice(invoice.label, invoice.stars)])


async def _invoice_for(update: Update, context: BotContext, amount: Decimal,
                       draft_id: int | None = None) -> str | None:
    """Makes and sends the invoice of a top-up; the reason (plain) when it cannot be."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return ""
    try:
        invoice = await payments.new_topup(context.deps, user.id, chat.id, amount,
                                           draft_id=draft_id)
    except TopupRefused as exc:
        return str(exc)
    await send_invoice(update, context, invoice)
    return None


async def topup_command(update: Update, context: BotContext) -> None:
    """/topup [amount]: the amounts to top up with Stars, or the invoice of the amount typed."""
    user = update.effective_user
    if user is None:
        return
    await remember_user(update, context)
    refusal = await _refusal(update, context)
    if refusal is not None:
        await reply(update, refusal)
        return
    deps = context.deps
    args = context.args or []
    if not args:
        await reply(update, *await amounts_question(deps, user.id))
        return
    currency = (await wallet.balance(deps, user.id)).currency
    try:
        amount = payments.parse_amount(deps.settings, " ".join(args), currency)
    except TopupRefused as exc:
        await reply(update, *await amounts_question(deps, user.id, str(exc)))
        return
    reason = await _invoice_for(update, context, amount)
    if reason:
        await reply(update, *await amounts_question(deps, user.id, reason))


async def wallet_topup_button(update: Update, context: BotContext) -> None:
    """/wallet's Top up: the amounts, in a new message (the wallet stays on screen)."""
    query = update.callback_query
    user = update.effective_user
    if query is None or user is None:
        return
    refusal = await _refusal(update, context)
    await answer(query)
    if refusal is not None:
        await reply(update, refusal)
        return
    await reply(update, *await amounts_question(context.deps, user.id))


async def amount_button(update: Update, context: BotContext) -> int:
    """An amount button: its invoice (ends a wait for a typed amount)."""
    query = update.callback_query
    user = update.effective_user
    if query is None or user is None:
        return END
    refusal = await _refusal(update, context)
    if refusal is not None:
        await answer(query)
        await reply(update, refusal)
        return END
    try:
        amount = Decimal(unpack(query.data)[2])
    except (IndexError, InvalidOperation):
        await answer(query, _(NO_LONGER_VALID))
        return END
    reason = await _invoice_for(update, context, amount)
    if reason:
        await answer(query, reason, alert=True)
        return END
    await answer(query, _("Invoice sent: pay it below."))
    return END


async def other_amount(update: Update, context: BotContext) -> int | None:
    """Other amount: asks for it; the next message is the amount."""
    query = update.callback_query
    user = update.effective_user
    if query is None or user is None:
        return END
    refusal = await _refusal(update, context)
    await answer(query)
    if refusal is not None:
        await reply(update, refusal)
        return END
    currency = (await wallet.balance(context.deps, user.id)).currency
    if not currency:
        await reply(update, _(payments.NO_CURRENCY))
        return END
    await reply(update, typed_question(context.deps, currency))
    return WAITING_AMOUNT


async def typed_amount(update: Update, context: BotContext) -> int | None:
    """The amount typed after Other amount: its invoice, or why not and the question again."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return END
    refusal = await _refusal(update, context)
    if refusal is not None:
        await reply(update, refusal)
        return END
    deps = context.deps
    currency = (await wallet.balance(deps, user.id)).currency
    try:
        amount = payments.parse_amount(deps.settings, message.text or "", currency)
    except TopupRefused as exc:
        await reply(update, typed_question(deps, currency, str(exc)))
        return None
    reason = await _invoice_for(update, context, amount)
    if reason:
        await reply(update, typed_question(deps, currency, reason))
        return None
    return END


async def summary_topup_button(update: Update, context: BotContext) -> None:
    """"Top up N" on a summary the wallet can't pay: the invoice of what is missing."""
    query = update.callback_query
    user, chat = update.effective_user, update.effective_chat
    draft_id = int_arg(unpack(query.data if query else None), 2)
    if query is None or user is None or chat is None or draft_id is None:
        await answer(query, _(NO_LONGER_VALID))
        return
    try:
        invoice = await payments.topup_for_draft(context.deps, user.id, chat.id, draft_id)
    except TopupRefused as exc:
        await answer(query, str(exc), alert=True)
        return
    await answer(query, _("Invoice sent: once it is paid, the summary comes back with Confirm."))
    await send_invoice(update, context, invoice)


# --- the checkout and the payment -------------------------------------------------------------


async def pre_checkout(update: Update, context: BotContext) -> None:
    """Telegram asks before charging: ok only for a payable top-up of this user."""
    query = update.pre_checkout_query
    if query is None:
        return
    try:
        reason = await payments.check_checkout(
            context.deps, user_id=query.from_user.id, payload=query.invoice_payload,
            currency=query.currency, total_amount=query.total_amount)
    except Exception:
        await query.answer(ok=False, error_message=_(CHECKOUT_FAILED))
        raise
    if reason is None:
        await query.answer(ok=True)
    else:
        log.info("Pre-checkout of user %d refused: %s", query.from_user.id, reason)
        await query.answer(ok=False, error_message=reason)


async def payment_received(update: Update, context: BotContext) -> None:
    """A successful payment: credited once (whatever repeats), the customer told the new
    balance, and the order summary it was asked from shown again with Confirm."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None or message.successful_payment is None:
        return
    paid = message.successful_payment
    deps = context.deps
    payment = await payments.record_payment(
        deps, user_id=user.id, chat_id=message.chat_id, payload=paid.invoice_payload,
        currency=paid.currency, total_amount=paid.total_amount,
        charge_id=paid.telegram_payment_charge_id,
        provider_charge_id=paid.provider_payment_charge_id)
    entry = payment.entry
    if entry is None:
        await reply(update, _("⚠️ Your payment of {stars} ⭐ arrived, but it could not be added "
                              "to your wallet. The shop's admins have been told and will refund "
                              "it; see /paysupport.").format(
            stars=paid.total_amount))
        return
    amount = esc(wallet.show(entry.amount, entry.currency))
    if payment.new:
        text = _("✅ <b>Payment received</b>: {amount} added to your wallet ({stars} ⭐). "
                 "Balance: <b>{balance}</b>.").format(
            amount=amount, stars=payment.topup.stars,
            balance=esc(wallet.show(entry.balance_after, entry.currency)))
    else:
        funds = await wallet.balance(deps, user.id)
        text = _("✅ This payment is in your wallet already ({amount}). Balance: "
                 "<b>{balance}</b>.").format(amount=amount,
                                             balance=esc(wallet.show(funds.amount,
                                                                     funds.currency)))
    await reply(update, text)
    draft_id = payment.topup.draft_id
    if payment.new and draft_id is not None:
        await wizard.resume_summary(update, context, draft_id)


# --- refunds ----------------------------------------------------------------------------------


async def _admin_in_shop(update: Update, context: BotContext) -> bool:
    """True for an admin of a shop; everyone else is told why not."""
    await remember_user(update, context)
    user = update.effective_user
    if user is None or await role_of(context.deps, user.id) != "admin":
        await reply(update, _(NOT_ADMIN))
        return False
    if not context.deps.settings.shop_mode:
        await reply(update, _(SHOP_ONLY))
        return False
    return True


async def telegram_refund(context: BotContext, user_id: int, charge_id: str) -> None:
    """refundStarPayment, its errors sorted into already refunded, refused, or unknown."""
    try:
        await context.bot.refund_star_payment(user_id, charge_id)
    except (BadRequest, Forbidden) as exc:
        if "CHARGE_ALREADY_REFUNDED" in exc.message.upper():
            raise payments.AlreadyRefunded() from None
        raise payments.TelegramRefused(exc.message) from None


def refund_text(outcome: payments.RefundOutcome) -> str:
    """What an admin is told about a refund (HTML)."""
    topup = outcome.topup
    user = topup.user_id
    what = f"{topup.stars} ⭐"
    if topup.amount is not None:
        what += f" ({esc(wallet.show(topup.amount, topup.currency))})"
    if isinstance(outcome, payments.Refunded):
        if outcome.before:
            return _("✅ That payment of {what} by <code>{user}</code> was refunded before: "
                     "nothing more to do.").format(what=what, user=user)
        if outcome.debit is None:
            return _("✅ Refunded {what} to <code>{user}</code>'s Telegram Stars. The customer "
                     "is told.").format(what=what, user=user)
        return _("✅ Refunded {what} to <code>{user}</code>'s Telegram Stars. {amount} was taken "
                 "from the wallet (balance now {balance}). The customer is told.").format(
            what=what, user=user,
            amount=esc(wallet.show(-outcome.debit.amount, outcome.debit.currency)),
            balance=esc(wallet.show(outcome.debit.balance_after, outcome.debit.currency)))
    if isinstance(outcome, payments.RefundShort):
        return _("❌ Not refunded: the wallet of <code>{user}</code> holds {balance}, less than "
                 "the {amount} this payment added (it was spent). Nothing was changed.").format(
            user=user, balance=esc(wallet.show(outcome.balance, outcome.currency)),
            amount=esc(wallet.show(outcome.amount, outcome.currency)))
    if isinstance(outcome, payments.RefundRefused):
        # i18n: {reason} is Telegram's own error text, as Telegram wrote it
        if outcome.back is None:
            return _("❌ Telegram refused the refund of {what}: {reason}.").format(
                what=what, reason=esc(outcome.reason))
        # i18n: {reason} is Telegram's own error text, as Telegram wrote it
        return _("❌ Telegram refused the refund of {what}: {reason}. The wallet's debit was "
                 "given back.").format(what=what, reason=esc(outcome.reason))
    if outcome.held is None:
        # i18n: {error} is the name of the error (TimedOut, NetworkError)
        return _("⚠️ Telegram did not answer the refund of {what} ({error}), so I do not know "
                 "whether it went through. Run the same /refund again to finish it.").format(
            what=what, error=esc(outcome.error))
    # i18n: {error} is the name of the error (TimedOut, NetworkError)
    return _("⚠️ Telegram did not answer the refund of {what} ({error}), so I do not know "
             "whether it went through. The {amount} stays held from the wallet meanwhile. Run "
             "the same /refund again to finish it.").format(
        what=what, error=esc(outcome.error),
        amount=esc(wallet.show(-outcome.held.amount, outcome.held.currency)))


async def _refund(context: BotContext, user_id: int, charge_id: str) -> str:
    """Refunds one payment; what the admin is told (HTML)."""
    async def send(uid: int, cid: str) -> None:
        await telegram_refund(context, uid, cid)

    try:
        outcome = await payments.refund(context.deps, user_id=user_id, charge_id=charge_id,
                                        send_refund=send)
    except payments.RefundError as exc:
        return f"❌ {esc(exc)}"
    return refund_text(outcome)


def _user_id(text: str) -> int | None:
    """A Telegram user id an admin typed, or None."""
    text = text.strip()
    if not text.isdigit() or len(text) > 16 or not 0 < int(text) < MAX_USER_ID:
        return None
    return int(text)


async def refund_command(update: Update, context: BotContext) -> None:
    """/refund <user id> <charge id>: gives a Stars payment back, taking it from the wallet."""
    if not await _admin_in_shop(update, context):
        return
    args = context.args or []
    target = _user_id(args[0]) if len(args) == 2 else None
    if target is None or not 1 <= len(args[1]) <= 200:
        await reply(update, _(REFUND_USAGE))
        return
    await reply(update, await _refund(context, target, args[1]))


async def refund_button(update: Update, context: BotContext) -> None:
    """Refund on a wallet (asks to confirm), and its confirmation (refunds)."""
    query = update.callback_query
    user = update.effective_user
    if query is None or user is None:
        return
    if await role_of(context.deps, user.id) != "admin":
        await answer(query, _(NOT_ADMIN))
        return
    parts = unpack(query.data)
    topup_id = int_arg(parts, 1)
    topup = None if topup_id is None else await payments.by_id(context.deps, topup_id)
    if topup is None or topup.charge_id is None:
        await answer(query, _(NO_LONGER_VALID))
        return
    back = Keyboard([[Button(
        # i18n: button back to a customer's wallet
        _("◀ Wallet"), callback_data=pack("wl", topup.user_id, 0))]])
    if parts[2:3] != ["y"]:
        await answer(query)
        question = _("↩️ Refund the Stars payment of <code>{user}</code>: {stars} ⭐, paid "
                     "{when}?\nCharge id: <code>{charge}</code>").format(
            user=topup.user_id, stars=topup.stars,
            when=i18n.when(topup.paid_at or topup.created_at), charge=esc(topup.charge_id))
        if topup.amount is None:
            taken = _("The Stars go back to the customer; nothing is taken from the wallet (it "
                      "was never credited).")
        else:
            taken = _("The Stars go back to the customer; the wallet is debited {amount} "
                      "first.").format(amount=esc(wallet.show(topup.amount, topup.currency)))
        await show(update, f"{question}\n{taken}", Keyboard([
            # i18n: button confirming an admin's refund of a Stars payment
            [Button(_("↩️ Yes, refund"), callback_data=pack("rf", topup.id, "y"))],
            *back.inline_keyboard]))
        return
    # i18n: the answer to the refund confirmation button, while Telegram is asked
    await answer(query, _("Refunding…"))
    await show(update, await _refund(context, topup.user_id, topup.charge_id), back)


# --- /paysupport and /terms -------------------------------------------------------------------


async def paysupport_command(update: Update, context: BotContext) -> None:
    """/paysupport: how to get help with a payment (Telegram asks bots taking payments)."""
    user = update.effective_user
    text = context.deps.settings.paysupport_text
    body = _(DEFAULT_PAYSUPPORT) if text is None else esc(text)
    if user is not None:
        body += "\n\n" + _("Your user id: <code>{id}</code>").format(id=user.id)
    await reply(update, body)


async def terms_command(update: Update, context: BotContext) -> None:
    """/terms: the terms of top-ups and orders."""
    text = context.deps.settings.terms_text
    await reply(update, _(DEFAULT_TERMS) if text is None else esc(text))


# --- wiring -----------------------------------------------------------------------------------


async def wait_expired(app: BotApp, chat_id: int, user_id: int) -> None:
    """The wait for a typed amount, ended after ORDER_TIMEOUT (also across a restart)."""
    deps: Deps = app.bot_data[DEPS_KEY]
    await outbox.enqueue_notice(deps.db, notice(chat_id, L_(
        "I stopped waiting for the top-up amount; nothing was charged. Send /topup again when "
        "you are ready.")))


def early_handlers(settings: Settings | None = None) -> list[BaseHandler[Update, BotContext,
                                                                        object]]:
    """Before every other handler of group 0: the payment (a form waiting for an answer must
    never take it for one), and the wait for a typed amount (its answer is not a search)."""
    minutes = settings.order_timeout if settings is not None else 15.0
    return [
        MessageHandler(filters.SUCCESSFUL_PAYMENT, payment_received),
        ExpiringConversation(
            on_expiry=wait_expired,
            entry_points=[CallbackQueryHandler(other_amount, pattern=r"^tp:o$")],
            states={WAITING_AMOUNT: [
                MessageHandler(filters.TEXT & ~filters.COMMAND, typed_amount),
                CallbackQueryHandler(amount_button, pattern=r"^tp:a:"),
            ]},
            fallbacks=wait_fallbacks(N_("I stopped waiting for an amount (no invoice was sent)."),
                                     N_("OK, no top-up.")),
            allow_reentry=True,
            conversation_timeout=minutes * 60,
            name="topup_amount",
            persistent=True,
        ),
    ]


def handlers() -> list[BaseHandler[Update, BotContext, object]]:
    """This module's other handlers."""
    return [
        PreCheckoutQueryHandler(pre_checkout),
        CommandHandler("topup", topup_command),
        CommandHandler("refund", refund_command),
        CommandHandler("paysupport", paysupport_command),
        CommandHandler("terms", terms_command),
        CallbackQueryHandler(wallet_topup_button, pattern=r"^tp:w$"),
        CallbackQueryHandler(amount_button, pattern=r"^tp:a:"),
        CallbackQueryHandler(summary_topup_button, pattern=r"^tp:d:\d+$"),
        CallbackQueryHandler(refund_button, pattern=r"^rf:\d+(:y)?$"),
    ]
