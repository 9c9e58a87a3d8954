"""The order wizard: one named, persistent conversation from a service to a placed order.

Everything is generated from the service-type table (`bot.service_types`): the questions, their
checks, the summary and the `add` request. The wizard's data lives in `user_data["order"]` as
plain JSON-able values, so the persistence keeps it and a restarted bot resumes at the same step:

    service   the service as it was picked (a snapshot: the catalogue may change meanwhile)
    account   the panel account the order is for ("operator" or "user:<id>")
    currency  the catalogue's currency
    answers   {field name: answer as it will be sent}; "" for a skipped optional field
    field     the field being asked (None at the summary)
    history   the fields answered before it, in order (Back pops; the summary's values)
    draft     the id of the order draft the summary's Confirm names (None before the summary)
    msg       the message carrying the current question or summary (older buttons are stale)
    summary   the summary as shown (HTML), repeated above the outcome of Confirm

States: ASKING (a question is out; `field` says which) and SUMMARY. Placing is made safe by the
database, not by the conversation: Confirm claims the draft atomically (`claim_order`) before the
one `add` request, so a second tap, an old summary or two racing taps never send a second order.

Other ways in: "🔁 Order again" on an order card (the form filled from that order's answers,
`bot.services.reorder`, opening at the summary) and the deep link `?start=s<service id>`.

A shop's customer (`Account.customer`) sees the shop's price (`bot.services.pricing`) and their
wallet, never the panel's rates or balance; Confirm charges the wallet as it claims the draft.
With Telegram Stars on, a summary the wallet can't pay has "Top up N" (the missing amount, at
least TOPUP_MIN; bot/handlers/payments.py); once paid, the summary is shown again
(`resume_summary`) and placing stays an explicit tap on its Confirm.

Commands other than /cancel and /order while a question is out get a one-line reminder and the
same question: the wizard takes every message of the chat while it runs, so a command that
slipped through would leave the user unsure what their next message answers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from telegram import Message, Update
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot.callbacks import int_arg, pack, unpack
from bot.config import Settings
from bot.deps import DEPS_KEY, BotApp, BotContext, Deps
from bot.handlers.catalog import categories_page, index_for, load_index, price
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
from bot.handlers.shop import top_up_hint
from bot.i18n import L_, N_, Ln_, Money, Msg, _, ngettext, number
from bot.keyboards import Button, Keyboard, cut
from bot.money import format_money
from bot.panel.errors import PanelClientError, PanelError, PanelErrorKind
from bot.panel.models import Balance, Service
from bot.service_types import FieldError, FormField, Kind, OrderForm, Pricing, form_for
from bot.services import actions, payments, placement, pricing, reorder, sharing, shop, wallet
from bot.services.accounts import Account
from bot.services.notices import notice, unknown_outcome_text
from bot.services.pricing import Quote
from bot.text import esc_short
from storage import outbox

log = logging.getLogger(__name__)

ASKING, SUMMARY = 1, 2
END = ConversationHandler.END
ORDER_KEY = "order"
CHOICES_PER_ROW = 6
SHOWN_LINES = 20  # of a list answer on the summary; the rest is counted
SHOWN_CHARS = 1200

# The wizard's fixed texts: catalog msgids (N_), translated with _() where they are shown.
CLOSED = N_("This order form is closed.")
OUT_OF_DATE = N_("This button is out of date.")
NOT_SOLD = N_("This service is not offered any more. Pick another one with /order.")
ALREADY_SENT = N_("This order was already sent.")
OLD_SUMMARY = N_("This summary is out of date.")
ACCOUNT_CHANGED = N_("Your panel account changed; start again with /order.")
CANCELLED = N_("Order cancelled: nothing was sent. Start again with /order.")
COMMAND_REMINDER = N_("You are filling in an order: send the answer, or /cancel to leave it.")
USE_BUTTONS = N_("Tap Confirm, Edit or Cancel on the summary above (or /cancel).")
NOT_TEXT = N_("Please send the answer as a text message.")
ORDER_USAGE = N_("Send /order followed by a service id, e.g. <code>/order 1</code>, or /order "
                 "alone to browse the services.")

# What to tell the user when the panel refuses an order, by what its error means (N_ msgids).
REFUSALS: dict[PanelErrorKind, str] = {
    PanelErrorKind.NOT_ENOUGH_FUNDS: N_(
        "The panel account does not have enough funds for this order. Top up the balance on "
        "the panel (or lower the quantity with Edit), then tap Confirm again."
    ),
    PanelErrorKind.DUPLICATE_LINK: N_(
        "The panel already has an active order for this link, so it refused this one: your "
        "balance was not charged; try again when the active order for this link finishes, or "
        "Edit the link."
    ),
    PanelErrorKind.QUANTITY_TOO_LOW: N_(
        "The panel says the quantity is below this service's minimum. Tap Edit to change it."
    ),
    PanelErrorKind.QUANTITY_TOO_HIGH: N_(
        "The panel says the quantity is above this service's maximum. Tap Edit to change it."
    ),
    PanelErrorKind.BAD_LINK: N_(
        "The panel did not accept the link. Tap Edit and send the full link to a public page "
        "(https://…)."
    ),
    PanelErrorKind.INVALID_KEY: N_(
        "The panel rejected the API key. If you connected your own key, check it and /connect "
        "it again; otherwise tell the bot's operator."
    ),
    PanelErrorKind.INCORRECT_SERVICE: N_(
        "The panel no longer offers this service. Cancel, and pick another one with /order."
    ),
}


# --- the wizard's data ----------------------------------------------------------------------


def snapshot(service: Service) -> dict[str, Any]:
    """A service as plain data, the way the panel lists it (Service.from_api reads it back)."""
    data: dict[str, Any] = {
        "service": service.service, "name": service.name, "type": service.type,
        "category": service.category, "rate": str(service.rate), "min": service.min,
        "max": service.max, "refill": service.refill, "cancel": service.cancel,
        "desc": service.desc,
    }
    if service.dripfeed is not None:
        data["dripfeed"] = service.dripfeed
    return data


def form_key(chat_id: int) -> str:
    """Where a chat's form lives in the user's user_data: one per chat, so a form in a group
    never mixes with one in the private chat."""
    return f"{ORDER_KEY}:{chat_id}"


def _key(update: Update) -> str:
    """The form key of the update's chat."""
    chat = update.effective_chat
    return form_key(chat.id if chat is not None else 0)


def current_order(update: Update, context: BotContext) -> dict[str, Any] | None:
    """This user's wizard data in this chat, if a well-formed one is there."""
    order = (context.user_data or {}).get(_key(update))
    if (isinstance(order, dict) and isinstance(order.get("service"), dict)
            and isinstance(order.get("answers"), dict) and isinstance(order.get("history"), list)):
        return order
    return None


def service_of(order: Mapping[str, Any]) -> Service | None:
    """The service the order is for, from its snapshot."""
    return Service.from_api(dict(order["service"]))


def drop_order(update: Update, context: BotContext) -> bool:
    """Forgets the wizard's data of this chat; True if there was any."""
    if context.user_data is None:
        return False
    return context.user_data.pop(_key(update), None) is not None


def answered(order: Mapping[str, Any]) -> dict[str, str]:
    """The answers given on the way to the summary (the fields asked, in order)."""
    answers: Mapping[str, str] = order["answers"]
    return {name: answers[name] for name in order["history"] if answers.get(name)}


# --- what the user sees ---------------------------------------------------------------------


def shown_value(value: str) -> str:
    """An answer as shown (HTML): long lists are cut, with how many lines there are."""
    lines = value.split("\n")
    if len(lines) == 1:
        return esc_short(value, SHOWN_CHARS)
    head = "\n".join(lines[:SHOWN_LINES])
    more = len(lines) - SHOWN_LINES
    # i18n: how many lines a list answer has, above the first of them
    count = ngettext("({n} line)", "({n} lines)", len(lines)).format(n=number(len(lines)))
    if more <= 0:
        return f"{count}\n{esc_short(head, SHOWN_CHARS)}"
    # i18n: under the first lines of a long list answer: how many more are not shown
    rest = ngettext("… and {n} more", "… and {n} more", more).format(n=number(more))
    return f"{count}\n{esc_short(head, SHOWN_CHARS)}\n{rest}"


def header(service: Service) -> str:
    """The wizard's title line (HTML)."""
    return _("🛒 <b>New order: #{service_id} {name}</b>").format(
        service_id=service.service, name=esc(cut(service.name, 80)))


def question_text(order: Mapping[str, Any], service: Service, field: FormField,
                  error: str | None = None) -> str:
    """A question with what is expected, an example, and the answer kept so far (HTML)."""
    lines = [f"❌ {esc(error)}", ""] if error else []
    # i18n: the title of a question of the order form: its number and the field's name
    step = _("Step {number}: {label}").format(number=number(len(order["history"]) + 1),
                                              label=esc(_(field.label)))
    lines += [header(service), step, "", esc(field.question(service))]
    kept = order["answers"].get(field.name)
    if kept:
        # i18n: the answer given before to the question shown again
        lines += ["", _("Now: {answer}").format(answer=shown_value(kept)),
                  _("Tap Keep to keep it, or send a new value.")]
    return "\n".join(lines)


def question_markup(order: Mapping[str, Any], field: FormField) -> Keyboard:
    """The question's buttons: choices, Keep, Skip, Back and Cancel."""
    rows: list[list[Button]] = []
    if field.kind is Kind.CHOICE:
        buttons = [Button(str(c), callback_data=pack("wz", "choice", c))
                   for c in field.choices]
        rows += [buttons[i : i + CHOICES_PER_ROW] for i in range(0, len(buttons),
                                                                  CHOICES_PER_ROW)]
    extra = []
    if order["answers"].get(field.name):
        # i18n: button under an order form's question: keep the answer given before
        extra.append(Button(_("✔ Keep"), callback_data="wz:keep"))
    if field.optional:
        # i18n: button under an order form's question: leave this optional answer out
        extra.append(Button(_("⏭ Skip"), callback_data="wz:skip"))
    if extra:
        rows.append(extra)
    # i18n: button under the order form: leave it, nothing is sent
    last = [Button(_("✖ Cancel"), callback_data="wz:cancel")]
    if order["history"]:
        # i18n: button under the order form: to the previous question
        last.insert(0, Button(_("◀ Back"), callback_data="wz:back"))
    rows.append(last)
    return Keyboard(rows)


def cost_line(form: OrderForm, service: Service, values: Mapping[str, str],
              currency: str) -> str:
    """The estimated cost as the service's pricing works it out (HTML)."""
    cost = esc(format_money(form.cost(service, values), currency))
    quantity = form.quantity(values)
    if form.pricing is Pricing.PER_PACKAGE:
        return _("<b>Price: {cost}</b> (one package)").format(cost=cost)
    if form.pricing is Pricing.PER_POST:
        old_posts = form.old_posts(values)
        if old_posts:
            upfront = esc(format_money(form.upfront_cost(service, values), currency))
            now = ngettext("<b>Charged now: up to {upfront}</b> for {n} existing post "
                           "({cost} each)",
                           "<b>Charged now: up to {upfront}</b> for {n} existing posts "
                           "({cost} each)", old_posts).format(
                upfront=upfront, n=number(old_posts), cost=cost)
        else:
            now = _("Charged now: nothing (no existing posts)")
        # i18n: {price} is the service's rate ("0.9 USD per 1000"), {quantity} the most per post
        per_post = _("<b>Cost per new post: up to {cost}</b> ({price} × {quantity}); the panel "
                     "charges it for each new post").format(
            cost=cost, price=price(service, currency), quantity=number(quantity))
        return f"{now}\n{per_post}"
    # i18n: {price} is the service's rate ("0.9 USD per 1000")
    return _("<b>Estimated cost: {cost}</b> ({price} × {quantity})").format(
        cost=cost, price=price(service, currency), quantity=number(quantity))


def price_line(form: OrderForm, quote: Quote, quantity: int) -> str:
    """A customer's total and how it is made (HTML)."""
    total = esc(wallet.show(quote.total, quote.currency))
    unit = esc(format_money(quote.unit_price, quote.currency))
    if form.pricing is Pricing.PER_PACKAGE:
        return _("<b>Total: {total}</b> (one package)").format(total=total)
    return _("<b>Total: {total}</b> ({unit} per 1000 × {quantity})").format(
        total=total, unit=unit, quantity=number(quantity))


def wallet_lines(quote: Quote, funds: wallet.Money, user_id: int,
                 stars: bool = False) -> list[str]:
    """The customer's wallet on the summary, and how much is missing (HTML)."""
    lines = [_("Your wallet: {amount}").format(
        amount=esc(wallet.show(funds.amount, funds.currency or quote.currency)))]
    if funds.amount < quote.total:
        missing = esc(wallet.show(quote.total - funds.amount, quote.currency))
        # i18n: {how} says how to top the wallet up (a sentence)
        lines.append(_("⚠️ Your wallet is {missing} short of this order. {how}").format(
            missing=missing, how=top_up_hint(user_id, stars=stars)))
    return lines


def top_up_label(settings: Settings, price: Decimal, balance: Decimal,
                 currency: str) -> str | None:
    """"Top up 0.17 USD" for a summary the wallet can't pay (None: no such button)."""
    amount = payments.top_up_for(settings, price, balance, currency)
    # i18n: button on an order summary: pay the missing amount with Telegram Stars
    return None if amount is None else _("💳 Top up {amount}").format(
        amount=wallet.show(amount, currency))


def summary_text(order: Mapping[str, Any], service: Service, form: OrderForm,
                 balance: Balance | None,
                 shop_view: tuple[Quote, wallet.Money, int] | None = None,
                 stars: bool = False) -> str:
    """Every field as it will be sent, the cost, the balance and a warning if short (HTML); for
    a customer (`shop_view`: quote, wallet, user id) the shop's total and their wallet."""
    values = answered(order)
    fields = form.request_fields(service, values)
    currency = str(order.get("currency") or "")
    lines = [header(service), _("Check the order, then tap Confirm."), ""]
    for field in form.fields:
        if field.name in fields:
            # i18n: one answer on the order summary: the field's name and the answer
            lines.append(_("{label}: {answer}").format(
                label=esc(_(field.label)), answer=shown_value(fields[field.name])))
    if "quantity" in fields and form.quantity(values) != int(fields["quantity"]):
        lines.append(_("Total quantity: {quantity}").format(
            quantity=number(form.quantity(values))))
    if shop_view is not None:
        quote, funds, user_id = shop_view
        lines += ["", price_line(form, quote, form.quantity(values)),
                  *wallet_lines(quote, funds, user_id, stars)]
        return "\n".join(lines)
    lines += ["", cost_line(form, service, values, currency)]
    if balance is None:
        lines.append(_("Balance: unavailable right now"))
    else:
        shown = format_money(balance.balance, balance.currency or currency)
        lines.append(_("Balance: {amount}").format(amount=esc(shown)))
        upfront = form.upfront_cost(service, values)
        if form.pricing is not Pricing.PER_POST:
            if balance.balance < upfront:
                lines.append(_("⚠️ The balance is not enough for this order: top it up on the "
                               "panel first, or the panel will refuse it."))
        elif balance.balance < upfront:  # a subscription: its existing posts are charged now
            old_posts = form.old_posts(values)
            lines.append(ngettext(
                "⚠️ The balance is not enough for the {n} existing post charged now: top it up "
                "on the panel first, or the panel will refuse the order.",
                "⚠️ The balance is not enough for the {n} existing posts charged now: top it up "
                "on the panel first, or the panel will refuse the order.",
                old_posts).format(n=number(old_posts)))
        elif balance.balance < upfront + form.cost(service, values):
            per_post = esc(format_money(form.cost(service, values), currency))
            lines.append(_("⚠️ After what is charged now, the balance does not cover a new post "
                           "(up to {cost} each): top it up before new posts come.").format(
                cost=per_post))
    return "\n".join(lines)


def summary_markup(draft_id: int, revision: int, *, retry: bool = False,
                   top_up: str | None = None) -> Keyboard:
    """Confirm / Edit / Cancel (and Back to the last question; a shop's "Top up N" when the
    wallet can't pay). Confirm names the draft and the summary's revision: one draft serves the
    whole form, so an older summary of it is stale."""
    # i18n: button on an order summary: place the order again, after a refusal
    label = (_("✅ Confirm (retry)") if retry
             # i18n: button on an order summary: place the order
             else _("✅ Confirm"))
    rows = [[Button(label, callback_data=pack("wz", "confirm", draft_id, revision))]]
    if top_up is not None:
        rows.append([Button(top_up, callback_data=pack("tp", "d", draft_id))])
    # i18n: buttons on an order summary: go through the questions again, leave, last question
    rows += [[Button(_("✏️ Edit"), callback_data="wz:edit"),
              Button(_("✖ Cancel"), callback_data="wz:cancel")],
             [Button(_("◀ Back"), callback_data="wz:back")]]
    return Keyboard(rows)


async def say(update: Update, text: str, markup: Keyboard | None = None) -> int | None:
    """Edits the message whose button was tapped, or sends a new one; that message's id."""
    query = update.callback_query
    if query is not None and isinstance(query.message, Message):
        await show(update, text, markup)
        return query.message.message_id
    return await reply(update, text, markup)


def is_fresh(update: Update, order: Mapping[str, Any]) -> bool:
    """Whether a tapped button is on the wizard's current message (not an older one)."""
    query = update.callback_query
    if query is None or order.get("msg") is None:
        return True
    return query.message is not None and query.message.message_id == order["msg"]


# --- the steps ------------------------------------------------------------------------------


async def ask(update: Update, order: dict[str, Any], service: Service, field: FormField,
              error: str | None = None, *, new_message: bool = False) -> None:
    """Puts a question (again, after a one-line reason, when `error` is given)."""
    order["field"] = field.name
    text, markup = question_text(order, service, field, error), question_markup(order, field)
    if new_message:
        order["msg"] = await reply(update, text, markup)
    else:
        order["msg"] = await say(update, text, markup)


async def begin(update: Update, context: BotContext, service: Service, account: Account,
                currency: str, prefilled: reorder.Prefilled | None = None) -> int:
    """Starts a fresh order of `service` at its first question; with `prefilled` (Order
    again) at the summary, or at the first question whose earlier answer no longer passes."""
    await remember_user(update, context)
    order: dict[str, Any] = {
        "service": snapshot(service), "account": account.id, "currency": currency,
        "answers": dict(prefilled.answers) if prefilled else {}, "field": None,
        "history": list(prefilled.history) if prefilled else [], "draft": None, "rev": 0,
        "live": False, "msg": None, "panel": account.catalog_key,
    }
    assert context.user_data is not None
    context.user_data[_key(update)] = order
    form = form_for(service.type)
    first = prefilled.pending if prefilled else form.next_field(service, {})
    if first is None:
        return await summarise(update, context, order, service, form, new_message=True)
    reason = prefilled.reason if prefilled else None
    await ask(update, order, service, first,
              _("The earlier answer no longer fits: {reason}").format(reason=reason)
              if reason else None,
              new_message=True)
    return ASKING


async def advance(update: Update, context: BotContext, order: dict[str, Any], service: Service,
                  field: FormField, value: str) -> int:
    """Stores an accepted answer and asks the next question, or shows the summary."""
    order["answers"][field.name] = value
    order["history"].append(field.name)
    form = form_for(service.type)
    following = form.next_field(service, order["answers"], after=field.name)
    if following is None:
        return await summarise(update, context, order, service, form)
    await ask(update, order, service, following)
    return ASKING


async def order_account(update: Update, context: BotContext,
                        order: Mapping[str, Any]) -> Account | None:
    """The caller's account if it is still the one the order was started with; else says so."""
    account = await require_account(update, context)
    if (account is not None and account.id == order.get("account")
            and account.catalog_key == order.get("panel")):
        return account
    drop_order(update, context)
    if account is not None:
        await answer(update.callback_query)
        await reply(update, _(ACCOUNT_CHANGED))
    return None


async def panel_balance(update: Update, context: BotContext, account: Account) -> Balance | None:
    """The panel balance for the summary, or None when it cannot be had now."""
    user = update.effective_user
    if user is None or context.deps.limiter.try_acquire(user.id) > 0:
        return None
    try:
        # One quick try: the summary must not wait on a slow panel (it says so instead).
        return await context.deps.panel.balance(account.key, quick=True)
    except PanelClientError as exc:
        log.info("Balance unavailable for the summary: %s", exc)
        return None


async def summarise(update: Update, context: BotContext, order: dict[str, Any],
                    service: Service, form: OrderForm, *, new_message: bool = False) -> int:
    """Stores a draft of the order as it will be sent and shows the summary with Confirm."""
    user = update.effective_user
    account = await order_account(update, context, order)
    if user is None or account is None:
        return END
    values = answered(order)
    await remember_user(update, context)
    currency = str(order.get("currency") or "")
    shop_view = None
    top_up = None
    stars = payments.enabled(context.deps.settings)
    if account.customer:
        quote = (await pricing.current(context.deps)).quote(service, values, currency)
        if quote is None:
            drop_order(update, context)
            await say(update, _(NOT_SOLD))
            return END
        funds = await wallet.balance(context.deps, user.id)
        shop_view = (quote, funds, user.id)
        top_up = top_up_label(context.deps.settings, quote.total, funds.amount, quote.currency)
    draft_id = await placement.save_draft(
        context.deps, account, user.id, service, form, values, currency,
        draft_id=order.get("draft") if isinstance(order.get("draft"), int) else None,
    )
    if shop_view is not None:  # show exactly what Confirm will charge: the draft's price
        stored = await placement.draft_price(context.deps, draft_id)
        if stored is not None and stored != shop_view[0].total:
            shop_view = (dataclasses.replace(shop_view[0], total=stored), *shop_view[1:])
    balance = None if account.customer else await panel_balance(update, context, account)
    text = summary_text(order, service, form, balance, shop_view, stars)
    revision = int(order.get("rev") or 0) + 1
    order.update(field=None, draft=draft_id, rev=revision, live=True, summary=text)
    markup = summary_markup(draft_id, revision, top_up=top_up)
    if new_message:
        order["msg"] = await reply(update, text, markup)
    else:
        order["msg"] = await say(update, text, markup)
    return SUMMARY


async def resume_summary(update: Update, context: BotContext, draft_id: int) -> bool:
    """After a top-up asked from a summary: the summary again, with the new wallet and Confirm
    (a new revision: the older one's Confirm is stale). False when that form is not at that
    summary any more (edited, cancelled, placed)."""
    order = current_order(update, context)
    service = service_of(order) if order is not None else None
    if (order is None or service is None or order.get("draft") != draft_id
            or not order.get("live") or order.get("field") is not None):
        return False
    await summarise(update, context, order, service, form_for(service.type))
    return True


def wizard_state(update: Update,
                 context: BotContext) -> tuple[dict[str, Any], Service, FormField] | None:
    """The order, its service and the field being asked; None when no question is out."""
    order = current_order(update, context)
    service = service_of(order) if order is not None else None
    if order is None or service is None or not isinstance(order.get("field"), str):
        return None
    try:
        field = form_for(service.type).field(order["field"])
    except KeyError:
        return None
    return order, service, field


async def closed(update: Update, context: BotContext) -> int:
    """Ends a conversation whose data is gone (or unreadable)."""
    drop_order(update, context)
    query = update.callback_query
    if query is not None:
        await answer(query, _(CLOSED))
    else:
        await reply(update, _("This order form is closed. Start again with /order."))
    return END


# --- handlers: starting ---------------------------------------------------------------------


async def order_command(update: Update, context: BotContext) -> int | None:
    """/order <service id> starts the order form; /order alone opens the catalogue."""
    args = context.args or []
    if not args:
        dropped = drop_order(update, context)
        index = await load_index(update, context, pack("cat", 0))
        if index is not None:
            note = _("The order you were filling in was dropped.") if dropped else ""
            await reply(update, *categories_page(index, 0, note))
        return END
    service_id = int_arg(args, 0)
    if service_id is None or len(args) > 1:
        await reply(update, _(ORDER_USAGE))
        return None
    return await start_order(update, context, service_id)


async def order_from_link(update: Update, context: BotContext) -> int | None:
    """A deep link `t.me/<bot>?start=s<service id>` opens that service's order form."""
    link = sharing.parse_payload((context.args or [""])[0])
    if link is None or link.kind != "service":  # the handler's filter lets only these in
        return None
    return await start_order(update, context, link.id)


async def start_order(update: Update, context: BotContext, service_id: int) -> int | None:
    """The order form of a service named by its id (typed, or in a link)."""
    account = await require_account(update, context)
    if account is None:
        drop_order(update, context)
        return END
    index = await index_for(update, context, account, pack("new", service_id))
    if index is None:
        return None
    service = await offered(context, account, index.by_id.get(service_id))
    if service is None:
        await reply(update, _("There is no service #{service_id}. Browse with /services, or "
                              "search with /services &lt;words&gt;.").format(
            service_id=service_id))
        return None
    return await begin(update, context, service, account, index.currency)


async def order_again(update: Update, context: BotContext) -> int | None:
    """"🔁 Order again" on an order card: the same service and answers, at the summary (or at
    the first answer the service no longer accepts)."""
    query = update.callback_query
    user = update.effective_user
    order_id = int_arg(unpack(query.data if query else None), 1)
    account = await require_account(update, context)
    caller = await actions.caller_for(context.deps, user.id) if user and account else None
    if caller is None or account is None:
        return None
    found = (await reorder.repeatable(context.deps, caller, order_id) if order_id is not None
             else reorder.not_found())
    if isinstance(found, str):
        await answer(query, found, alert=found != reorder.not_found())
        return None
    index = await index_for(update, context, account, pack("oc", found.id, "ag"))
    if index is None:
        return None
    again = reorder.again(found, index)
    await answer(query)
    if isinstance(again, str):
        await reply(update, esc(again))
        return None
    return await begin(update, context, again.service, account, index.currency,
                       again.prefilled)


async def order_from_button(update: Update, context: BotContext) -> int | None:
    """"Order this" on a service's card starts its order form."""
    query = update.callback_query
    service_id = int_arg(unpack(query.data if query else None), 1)
    account = await require_account(update, context)
    if account is None:
        drop_order(update, context)
        return END
    retry = pack("new", service_id if service_id is not None else 0)
    index = await index_for(update, context, account, retry)
    if index is None:
        return None
    service = index.by_id.get(service_id) if service_id is not None else None
    service = await offered(context, account, service)
    if service is None:
        await answer(query, _("That service is no longer offered."))
        return None
    await answer(query)
    return await begin(update, context, service, account, index.currency)


async def offered(context: BotContext, account: Account,
                  service: Service | None) -> Service | None:
    """The service, if this account may order it (a shop sells only what it prices)."""
    if service is None or not account.customer:
        return service
    prices = await pricing.current(context.deps)
    return service if prices.unit_price(service) is not None else None


# --- handlers: answering --------------------------------------------------------------------


async def take_answer(update: Update, context: BotContext) -> int | None:
    """A typed answer: accepted → next question; refused → the reason and the same question."""
    state = wizard_state(update, context)
    if state is None:
        return await closed(update, context)
    order, service, field = state
    message = update.effective_message
    text = message.text if message is not None else None
    if not text:
        await ask(update, order, service, field, _(NOT_TEXT))
        return None
    return await take(update, context, order, service, field, text)


async def take(update: Update, context: BotContext, order: dict[str, Any], service: Service,
               field: FormField, text: str) -> int | None:
    """Checks an answer (typed, kept or tapped): the next question, or why + the same one."""
    try:
        value = field.parse(text, service, order["answers"])
    except FieldError as exc:
        await ask(update, order, service, field, str(exc))
        return None
    return await advance(update, context, order, service, field, value)


async def other_command(update: Update, context: BotContext) -> int | None:
    """A command while a question is out: a reminder and the same question."""
    state = wizard_state(update, context)
    if state is None:
        return await closed(update, context)
    order, service, field = state
    await ask(update, order, service, field, _(COMMAND_REMINDER))
    return None


async def press(update: Update, context: BotContext) -> tuple[
        dict[str, Any], Service, FormField] | None:
    """The wizard's state for a tapped question button; None (answered) when it is stale."""
    state = wizard_state(update, context)
    if state is None or not is_fresh(update, state[0]):
        await answer(update.callback_query, _(OUT_OF_DATE if state else CLOSED))
        return None
    await answer(update.callback_query)
    return state


async def keep(update: Update, context: BotContext) -> int | None:
    """Keeps the answer given before (checked again: earlier answers may have changed)."""
    state = await press(update, context)
    if state is None:
        return None
    order, service, field = state
    kept = order["answers"].get(field.name)
    if not kept:
        await ask(update, order, service, field, _("There is no answer to keep: send one."))
        return None
    return await take(update, context, order, service, field, kept)


async def skip(update: Update, context: BotContext) -> int | None:
    """Skips an optional question."""
    state = await press(update, context)
    if state is None:
        return None
    order, service, field = state
    if not field.optional:
        await ask(update, order, service, field, _("This question cannot be skipped."))
        return None
    return await advance(update, context, order, service, field, "")


async def choose(update: Update, context: BotContext) -> int | None:
    """One of a question's choice buttons (checked like a typed answer)."""
    state = await press(update, context)
    if state is None:
        return None
    order, service, field = state
    query = update.callback_query
    choice = int_arg(unpack(query.data if query else None), 2)
    if field.kind is not Kind.CHOICE or choice is None:
        await ask(update, order, service, field, _("Send the answer to this question."))
        return None
    return await take(update, context, order, service, field, str(choice))


async def back(update: Update, context: BotContext) -> int | None:
    """Goes back one question (from the summary: to the last one), answers kept."""
    order = current_order(update, context)
    service = service_of(order) if order is not None else None
    if order is None or service is None or not is_fresh(update, order):
        await answer(update.callback_query, _(OUT_OF_DATE if order else CLOSED))
        return None
    if not order["history"]:
        await answer(update.callback_query, _("This is the first question."))
        return None
    await answer(update.callback_query)
    name = order["history"].pop()
    order["live"] = False
    await ask(update, order, service, form_for(service.type).field(name))
    return ASKING


async def edit(update: Update, context: BotContext) -> int | None:
    """Edit on the summary: the questions again from the first, each offering Keep."""
    order = current_order(update, context)
    service = service_of(order) if order is not None else None
    if order is None or service is None or not is_fresh(update, order):
        await answer(update.callback_query, _(OUT_OF_DATE if order else CLOSED))
        return None
    first = form_for(service.type).next_field(service, {})
    if first is None:
        await answer(update.callback_query, _("This service has nothing to edit."))
        return None
    await answer(update.callback_query)
    order.update(history=[], live=False)
    await ask(update, order, service, first)
    return ASKING


# --- handlers: the summary ------------------------------------------------------------------


async def stale_confirm_text(context: BotContext, draft_id: int | None, user_id: int) -> str:
    """Why a Confirm that is not the current summary's does nothing."""
    if draft_id is not None and await placement.was_sent(context.deps, draft_id, user_id):
        return _(ALREADY_SENT)
    return _(OLD_SUMMARY)


def refusal_text(exc: PanelClientError) -> str:
    """What to tell the user when the panel did not take the order, and what to do (HTML)."""
    if isinstance(exc, PanelError):
        advice = REFUSALS.get(exc.kind)
        if advice is not None:
            return f"❌ {esc(_(advice))}"
        # i18n: {reason} is the panel's own error text, as the panel wrote it
        return _("❌ The panel refused the order: {reason}\n"
                 "Tap Edit to change it, or Confirm to try again.").format(reason=esc(exc.text))
    # i18n: {problem} says what went wrong reaching the panel (a sentence)
    return _("❌ {problem} The order was not placed: tap Confirm to try again.").format(
        problem=esc(exc.user_message))


def is_current_summary(order: Mapping[str, Any], draft_id: int | None,
                       revision: int | None) -> bool:
    """Whether a Confirm names the summary on screen now (its draft and revision)."""
    return (bool(order.get("live")) and draft_id is not None and draft_id == order.get("draft")
            and revision == order.get("rev"))


async def confirm(update: Update, context: BotContext) -> int | None:
    """Places the order exactly once (`bot.services.placement.place`) and says how it went."""
    query = update.callback_query
    user = update.effective_user
    order = current_order(update, context)
    service = service_of(order) if order is not None else None
    if query is None or user is None or order is None or service is None:
        return await closed(update, context)
    parts = unpack(query.data)
    draft_id, revision = int_arg(parts, 2), int_arg(parts, 3)
    if not await within_rate_limit(update, context):
        return None
    if not is_current_summary(order, draft_id, revision):
        await answer(query, await stale_confirm_text(context, draft_id, user.id))
        return None
    assert draft_id is not None
    account = await order_account(update, context, order)
    if account is None:
        return END
    ready = await placement.prepare(context.deps, account, user.id, draft_id)
    if isinstance(ready, placement.NotClaimed) and ready.sent:
        await answer(query, _(ALREADY_SENT))
        return None
    # Telegram is answered before the claim: nothing may stand between the claim and the add.
    await answer(query, _("Sending the order…"))
    outcome = (ready if isinstance(ready, placement.NotClaimed)
               else await placement.send(context.deps, ready))
    summary = str(order.get("summary") or "")
    if isinstance(outcome, placement.Short):
        settings = context.deps.settings
        await say(update, f"{short_text(outcome, user.id, payments.enabled(settings))}\n\n"
                          f"{summary}",
                  summary_markup(draft_id, int(order["rev"]), retry=True, top_up=top_up_label(
                      settings, outcome.price, outcome.balance, outcome.currency)))
        return None
    if isinstance(outcome, placement.Refused):
        if outcome.retry_draft is not None:  # the refunded draft is closed: retry a new one
            order["draft"] = draft_id = outcome.retry_draft
        text = (customer_refusal_text(outcome) if outcome.refund is not None
                else refusal_text(outcome.error))
        await say(update, f"{text}\n\n{summary}",
                  summary_markup(draft_id, int(order["rev"]), retry=True))
        return None
    if isinstance(outcome, placement.NotClaimed):
        await say(update, f"{_(ALREADY_SENT if outcome.sent else OLD_SUMMARY)}\n\n{summary}")
        drop_order(update, context)
        return END
    drop_order(update, context)
    if isinstance(outcome, placement.Unknown):
        text = (unknown_outcome_text() if outcome.held is None
                else shop.unknown_for_customer(outcome.held.amount, outcome.held.currency))
    elif isinstance(outcome, placement.AlreadyKnown):
        text = already_known_text(outcome)
        if outcome.held is not None:
            text += "\n" + shop.held_text(outcome.held.amount, outcome.held.currency)
    elif outcome.charged is not None:
        paid = outcome.charged
        text = _("✅ <b>Order {number} placed.</b> {amount} was charged to your wallet "
                 "(balance {balance}). I'll message you when its status changes (see "
                 "/orders).").format(
            number=outcome.panel_order_id, amount=esc(wallet.show(paid.amount, paid.currency)),
            balance=esc(wallet.show(paid.balance, paid.currency)))
        if not outcome.stored:
            text += "\n" + _("⚠️ I could not write its id down, so I cannot follow it yet. "
                             "Keep this id; the bot's operator has been told.")
    elif outcome.stored:
        text = _("✅ <b>Order {number} placed.</b> I'll message you when its status changes "
                 "(tracking is on; see /orders).").format(number=outcome.panel_order_id)
    else:
        text = _("✅ <b>Order {number} placed</b>, but I could not write it down, so I cannot "
                 "follow it yet. Keep this id; the bot's operator has been told. Open the order "
                 "in /orders and link it to this id.").format(number=outcome.panel_order_id)
    await say(update, f"{text}\n\n{summary}")
    return END


def short_text(outcome: placement.Short, user_id: int, stars: bool = False) -> str:
    """A customer's wallet cannot pay for the order: nothing was sent (HTML)."""
    def money(amount: Decimal) -> str:
        return esc(wallet.show(amount, outcome.currency))

    # i18n: {how} says how to top the wallet up (a sentence)
    return _("❌ <b>Not enough in your wallet</b>: this order costs {price} and your wallet "
             "holds {balance}, so {missing} is missing. Nothing was sent. {how} Then tap "
             "Confirm again.").format(
        price=money(outcome.price), balance=money(outcome.balance),
        missing=money(outcome.missing), how=top_up_hint(user_id, stars=stars))


# What a customer is told when the panel refuses, by what its error means (never the panel's
# funds or key: that is the shop's problem, see `customer_refusal_text`); N_ msgids.
CUSTOMER_REFUSALS: dict[PanelErrorKind, str] = {
    PanelErrorKind.DUPLICATE_LINK: N_(
        "There is already an active order for this link, so this one was refused: try again "
        "when it finishes, or Edit the link."
    ),
    PanelErrorKind.QUANTITY_TOO_LOW: N_(
        "The quantity is below this service's minimum. Tap Edit to change it."
    ),
    PanelErrorKind.QUANTITY_TOO_HIGH: N_(
        "The quantity is above this service's maximum. Tap Edit to change it."
    ),
    PanelErrorKind.BAD_LINK: N_(
        "The link was not accepted. Tap Edit and send the full link to a public page "
        "(https://…)."
    ),
    PanelErrorKind.INCORRECT_SERVICE: N_(
        "This service is no longer offered. Cancel, and pick another one with /order."
    ),
}
SHOP_CLOSED = N_("The shop can't take orders right now. Please try again later.")


def customer_refusal_text(outcome: placement.Refused) -> str:
    """A customer's order was refused: why, and that the charge came back (HTML)."""
    exc = outcome.error
    # Plain texts, escaped whole below (the panel's text in them too).
    if outcome.shop_problem:
        why = _(SHOP_CLOSED)
    elif isinstance(exc, PanelError):
        advice = CUSTOMER_REFUSALS.get(exc.kind)
        # i18n: {reason} is the panel's own error text, as the panel wrote it
        refused = _("The order was refused: {reason}. Tap Edit to change it, or Confirm to "
                    "try again.")
        why = _(advice) if advice else refused.format(reason=exc.text)
    else:
        why = _("The shop's panel could not be reached. Tap Confirm to try again.")
    refund = outcome.refund
    assert refund is not None
    back = _("Nothing was placed: the {amount} was refunded to your wallet (balance "
             "{balance}).").format(amount=wallet.show(refund.amount, refund.currency),
                                   balance=wallet.show(refund.balance, refund.currency))
    return f"❌ {esc(why)}\n{esc(back)}"


def already_known_text(outcome: placement.AlreadyKnown) -> str:
    """The panel placed the order, but the bot already held an order with that panel id."""
    if outcome.mine:
        return _("✅ <b>Order {number} placed.</b> You already follow an order with this id, so "
                 "I keep following it there (see /orders).").format(
            number=outcome.panel_order_id)
    return _("✅ <b>Order {number} placed</b>, but the bot already knows an order with this id "
             "under another user, so I cannot follow it for you. Check its status with the "
             "panel, or ask the bot's admin.").format(number=outcome.panel_order_id)


async def use_the_buttons(update: Update, context: BotContext) -> None:
    """A message while the summary is out: points at its buttons."""
    await reply(update, _(USE_BUTTONS))


# --- handlers: leaving ----------------------------------------------------------------------


async def cancel(update: Update, context: BotContext) -> int | None:
    """/cancel or the Cancel button: leaves the wizard, nothing sent."""
    order = current_order(update, context)
    query = update.callback_query
    if query is not None and order is not None and not is_fresh(update, order):
        await answer(query, _(OUT_OF_DATE))
        return None
    drop_order(update, context)
    await answer(query)
    await say(update, _(CANCELLED))
    return END


def timeout_message(minutes: float) -> Msg:
    """What the user reads when their order form timed out, rendered in the reader's language
    when it is sent (it is queued: `form_expired`)."""
    if float(minutes).is_integer():
        return Ln_("Your order was not placed (it timed out after {n} minute). Start again "
                   "with /order.",
                   "Your order was not placed (it timed out after {n} minutes). Start again "
                   "with /order.", int(minutes))
    shown = Decimal(f"{minutes:g}").normalize()
    places = max(-int(shown.as_tuple().exponent), 0)
    # i18n: {minutes} is a fraction of a minute ("0.5")
    return L_("Your order was not placed (it timed out after {minutes} minutes). Start again "
              "with /order.", minutes=Money(shown, "", places))  # a decimal in the reader's way


async def form_expired(app: BotApp, chat_id: int, user_id: int) -> None:
    """A form abandoned for ORDER_TIMEOUT (also across a restart): dropped, user told."""
    data = app.user_data.get(user_id)
    if data is not None and data.pop(form_key(chat_id), None) is not None:
        app.mark_data_for_update_persistence(user_ids=user_id)
        deps: Deps = app.bot_data[DEPS_KEY]
        await outbox.enqueue_notice(
            deps.db, notice(chat_id, timeout_message(deps.settings.order_timeout)))


async def stale_button(update: Update, context: BotContext) -> None:
    """A wizard button from a form that is closed or a message that is not current."""
    query = update.callback_query
    user = update.effective_user
    if query is None or user is None:
        return
    parts = unpack(query.data)
    if parts[1:2] == ["confirm"]:
        await answer(query, await stale_confirm_text(context, int_arg(parts, 2), user.id))
        return
    await answer(query, _(OUT_OF_DATE if current_order(update, context) else CLOSED))


async def nothing_to_cancel(update: Update, context: BotContext) -> None:
    """/cancel with no order form open."""
    await reply(update, _("You are not filling in an order. Start one with /order."))


def handlers(settings: Settings | None = None) -> list[BaseHandler[Update, BotContext, object]]:
    """This module's handlers: the conversation, then what catches its stale buttons."""
    minutes = settings.order_timeout if settings is not None else 15.0
    message = filters.UpdateType.MESSAGE
    Handler = BaseHandler[Update, BotContext, object]
    cancel_command: Handler = CommandHandler("cancel", cancel)
    cancel_button: Handler = CallbackQueryHandler(cancel, pattern=r"^wz:cancel$")
    stale: Handler = CallbackQueryHandler(stale_button, pattern=r"^wz:")
    conversation: ConversationHandler[BotContext] = ExpiringConversation(
        on_expiry=form_expired,
        entry_points=[
            CallbackQueryHandler(order_from_button, pattern=r"^new:"),
            CommandHandler("order", order_command),
            # "🔁 Order again" on an order card, and a deep link to a service's form.
            CallbackQueryHandler(order_again, pattern=r"^oc:\d+:ag$"),
            CommandHandler("start", order_from_link,
                           filters=filters.Regex(r"^/start(@\w+)?\s+s\d{1,18}\s*$")),
        ],
        states={
            ASKING: [
                cancel_command,
                cancel_button,
                MessageHandler(message & filters.TEXT & ~filters.COMMAND, take_answer),
                MessageHandler(message & filters.COMMAND, other_command),
                MessageHandler(message, take_answer),  # photos, stickers…: asked again
                CallbackQueryHandler(keep, pattern=r"^wz:keep$"),
                CallbackQueryHandler(skip, pattern=r"^wz:skip$"),
                CallbackQueryHandler(choose, pattern=r"^wz:choice:"),
                CallbackQueryHandler(back, pattern=r"^wz:back$"),
                stale,
            ],
            SUMMARY: [
                cancel_command,
                cancel_button,
                CallbackQueryHandler(confirm, pattern=r"^wz:confirm:"),
                CallbackQueryHandler(edit, pattern=r"^wz:edit$"),
                CallbackQueryHandler(back, pattern=r"^wz:back$"),
                MessageHandler(message & ~filters.COMMAND, use_the_buttons),
                stale,
            ],
        },
        fallbacks=[cancel_command, cancel_button],
        name="order_wizard",
        persistent=True,
        allow_reentry=True,  # /order or "Order this" mid-wizard starts over cleanly
        per_message=False,
        conversation_timeout=minutes * 60,
    )
    return [
        conversation,
        CallbackQueryHandler(stale_button, pattern=r"^wz:"),
        CommandHandler("cancel", nothing_to_cancel),
    ]

