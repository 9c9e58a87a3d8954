"""Shop mode, the chat side: /wallet, and the admins' /credit, /debit, /markup, /price, /audit.

The rules are `bot.services.wallet` and `bot.services.pricing`; these handlers read the
update, call them and render the answer. Callback data: `wl:<user id>:<page>` (a wallet's
page; only its owner or an admin may open it). With Telegram Stars on, a customer's own wallet
has a Top up button and an admin's view of a wallet a Refund button per recent Stars payment
(both handled in bot/handlers/payments.py). An admin's /credit or /debit is booked under the
command message's own reference (`admin:<chat>:<message>`), so a message delivered twice (a
restart before Telegram heard it was handled) is booked once.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from babel.dates import format_date
from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot import i18n
from bot.callbacks import int_arg, pack, unpack
from bot.deps import BotContext, Deps
from bot.handlers.common import answer, esc, remember_user, reply, show, within_rate_limit
from bot.i18n import N_, _, ngettext
from bot.keyboards import Button, Keyboard, nav_row
from bot.money import format_money
from bot.panel.errors import PanelClientError
from bot.panel.models import Service
from bot.services import payments, pricing, wallet
from bot.services.accounts import role_of, shop_account
from bot.services.pricing import PriceRefused, per_unit
from bot.text import note_html
from storage import orders as order_store
from storage import users
from storage import wallet as ledger
from storage.payments import Topup
from storage.wallet import Entry

log = logging.getLogger(__name__)

ENTRIES_PER_PAGE = 10
NOTE_CHARS = 100
MAX_USER_ID = 2**53
# Catalog texts (N_): translated where they are shown, in the reader's language.
NOT_ADMIN = N_("This command is for the bot's admins.")
SHOP_ONLY = N_("This bot is not a shop (MODE=team): there are no wallets or shop prices.")
KIND_LABELS = {
    # i18n: a kind of wallet entry in /wallet's list: money added (a payment, an admin's credit)
    "topup": N_("Top-up"),
    # i18n: a kind of wallet entry in /wallet's list: an order's charge (a noun)
    "charge": N_("Order"),
    # i18n: a kind of wallet entry in /wallet's list: money given back for an order (a noun)
    "refund": N_("Refund"),
    # i18n: a kind of wallet entry in /wallet's list: an admin's correction
    "adjustment": N_("Adjustment"),
}
_AMOUNT = re.compile(r"^\d{1,12}([.,]\d{1,8})?$")

CREDIT_USAGE = N_("Usage: /credit &lt;user id&gt; &lt;amount&gt; [note], e.g. "
                  "<code>/credit 12345 10 paid by bank transfer</code>.")
DEBIT_USAGE = N_("Usage: /debit &lt;user id&gt; &lt;amount&gt; [note], e.g. "
                 "<code>/debit 12345 2.50 correction</code>.")
PRICE_USAGE = N_("Usage: <code>/price &lt;service id&gt;</code> shows cost, price and margin; "
                 "<code>/price 1 1.50</code> sets a price per 1000, <code>/price 1 +20%</code> "
                 "a markup of its own, <code>/price 1 off</code> stops selling it, "
                 "<code>/price 1 reset</code> goes back to the shop's markup.")


def top_up_hint(user_id: int, *, stars: bool = False) -> str:
    """How a customer tops their wallet up (HTML): with Stars, or by asking an admin."""
    if stars:
        return _("Top up with Telegram Stars: /topup.")
    return _("To top up your wallet, ask an admin of this shop (send them your id: "
             "<code>{user}</code>).").format(user=user_id)


def _user_id(text: str) -> int | None:
    """A Telegram user id an admin typed, or None."""
    text = text.strip()
    if not text.isdigit() or len(text) > 16 or not 0 < int(text) < MAX_USER_ID:
        return None
    return int(text)


def parse_amount(text: str) -> Decimal | None:
    """"10", "10.50", "2,5" as an exact amount; None when it is not one."""
    text = text.strip()
    if not _AMOUNT.match(text):
        return None
    try:
        return Decimal(text.replace(",", "."))
    except InvalidOperation:
        return None


async def _is_admin(update: Update, context: BotContext) -> bool:
    """Whether the caller is an admin (nothing said)."""
    user = update.effective_user
    return user is not None and await role_of(context.deps, user.id) == "admin"


async def _admin_in_shop(update: Update, context: BotContext) -> bool:
    """True for an admin of a shop; everyone else is told why not."""
    await remember_user(update, context)
    if not await _is_admin(update, context):
        await reply(update, _(NOT_ADMIN))
        return False
    if not context.deps.settings.shop_mode:
        await reply(update, _(SHOP_ONLY))
        return False
    return True


# --- /wallet ------------------------------------------------------------------------------------


def entry_line(entry: Entry, order_number: str | None) -> str:
    """One ledger entry (HTML): when, what, how much, and the balance after."""
    sign = "+" if entry.amount > 0 else "−"
    amount = wallet.show(abs(entry.amount), entry.currency)
    label = KIND_LABELS.get(entry.kind)
    what = [esc(_(label) if label is not None else entry.kind)]
    if order_number is not None:
        # i18n: in a wallet entry: the order it paid for or refunded ("order 23501")
        what.append(esc(_("order {number}").format(number=order_number)))
    if entry.note and entry.kind not in ("charge", "refund"):
        what.append(note_html(entry.note, NOTE_CHARS))  # the admin's words, or the bot's
    return (f"{i18n.when(entry.created_at)} · {' · '.join(what)} · "
            f"<b>{sign}{esc(amount)}</b> → {esc(wallet.show(entry.balance_after, entry.currency))}")


async def wallet_page(deps: Deps, user_id: int, page: int, *, whose: str | None = None,
                      extra: list[list[Button]] | None = None,
                      ) -> tuple[str, Keyboard]:
    """A wallet's balance and a page of its entries, newest first, with ◀ ▶ (and `extra`
    rows above the menu); `whose`: the title, "Your wallet" unless told."""
    total = await ledger.count_entries(deps.db, user_id)
    pages = max(1, -(-total // ENTRIES_PER_PAGE))
    page = min(max(page, 0), pages - 1)
    found = await ledger.entries(deps.db, user_id, limit=ENTRIES_PER_PAGE,
                                 offset=page * ENTRIES_PER_PAGE)
    funds = await wallet.balance(deps, user_id)
    title = _("Your wallet") if whose is None else whose
    lines = [f"💰 <b>{esc(title)}</b>",
             _("Balance: <b>{balance}</b>").format(
                 balance=esc(wallet.show(funds.amount, funds.currency)))]
    if not found:
        lines.append(_("No entries yet."))
    else:
        placed = await order_store.get_orders(
            deps.db, [e.order_id for e in found if e.order_id is not None])
        lines += ["", _("Entries, newest first (page {page}/{pages}):").format(
            page=page + 1, pages=pages)]
        for entry in found:
            number = None
            if entry.order_id is not None:
                order = placed.get(entry.order_id)
                number = (str(order.panel_order_id) if order is not None
                          and order.panel_order_id is not None
                          # i18n: an order the panel never numbered, by the bot's own number
                          else _("bot #{number}").format(number=entry.order_id))
            lines.append(entry_line(entry, number))
    rows = [row for row in [nav_row(page, pages, lambda p: pack("wl", user_id, p))] if row]
    rows += extra or []
    # i18n: button back to the main menu
    rows.append([Button(_("🏠 Menu"), callback_data="menu")])
    return "\n".join(lines), Keyboard(rows)


async def _whose(deps: Deps, user_id: int, viewer: int) -> str:
    """The wallet's title: the viewer's own, or a named customer's."""
    if user_id == viewer:
        return _("Your wallet")
    user = await users.get_user(deps.db, user_id)
    if user is not None and user.name:
        # i18n: a customer's wallet as an admin sees it: their name and Telegram id
        return _("Wallet of {name} ({user})").format(name=user.name, user=user_id)
    return _("Wallet of ({user})").format(user=user_id)


async def wallet_command(update: Update, context: BotContext) -> None:
    """/wallet: the balance and recent entries; admins: /wallet <user id>."""
    user = update.effective_user
    if user is None:
        return
    await remember_user(update, context)
    if not context.deps.settings.shop_mode:
        await reply(update, _(SHOP_ONLY))
        return
    args = context.args or []
    target = user.id
    if args:
        if not await _is_admin(update, context):
            await reply(update, _("Only admins can look at another wallet; /wallet shows yours."))
            return
        named = _user_id(args[0]) if len(args) == 1 else None
        if named is None:
            await reply(update, _("Usage: /wallet [user id], e.g. <code>/wallet 12345</code>."))
            return
        target = named
    text, markup = await wallet_page(context.deps, target, 0,
                                     whose=await _whose(context.deps, target, user.id),
                                     extra=await _payment_rows(update, context, target))
    if target == user.id:
        text += f"\n\n{top_up_hint(user.id, stars=payments.enabled(context.deps.settings))}"
    await reply(update, text, markup)


async def wallet_button(update: Update, context: BotContext) -> None:
    """◀ ▶ on a wallet's page (its owner, or an admin)."""
    query = update.callback_query
    user = update.effective_user
    if query is None or user is None:
        return
    parts = unpack(query.data)
    target, page = int_arg(parts, 1), int_arg(parts, 2)
    if target is None or page is None or (target != user.id
                                          and not await _is_admin(update, context)):
        await answer(query, _("This button is no longer valid."))
        return
    await answer(query)
    text, markup = await wallet_page(context.deps, target, page,
                                     whose=await _whose(context.deps, target, user.id),
                                     extra=await _payment_rows(update, context, target))
    await show(update, text, markup)


def refund_label(topup: Topup) -> str:
    """"↩️ Refund 770 ⭐ · 10.00 USD · 5/3/25" (the date of the payment, the reader's way)."""
    # i18n: a button on a customer's wallet (admins): refund a Telegram Stars payment
    what = (_("↩️ Finish refund {stars} ⭐") if topup.state == "refunding"
            # i18n: a button on a customer's wallet (admins): refund a Telegram Stars payment
            else _("↩️ Refund {stars} ⭐")).format(stars=topup.stars)
    parts = [what]
    if topup.amount is not None:
        parts.append(wallet.show(topup.amount, topup.currency))
    paid = datetime.fromtimestamp(topup.paid_at or 0, UTC)
    parts.append(format_date(paid, format="short", locale=i18n.locale()))
    return " · ".join(parts)


async def _payment_rows(update: Update, context: BotContext,
                        target: int) -> list[list[Button]]:
    """Stars buttons on a wallet: Top up on one's own, Refund per recent payment for admins."""
    user = update.effective_user
    deps = context.deps
    if user is None or not payments.enabled(deps.settings):
        return []
    rows = []
    if target == user.id:
        # i18n: button on one's own wallet: top it up with Telegram Stars
        rows.append([Button(_("💳 Top up"), callback_data="tp:w")])
    if await _is_admin(update, context):
        rows += [[Button(refund_label(t), callback_data=pack("rf", t.id))]
                 for t in await payments.refundable(deps, target)]
    return rows


async def wallet_balance_text(deps: Deps, user_id: int) -> str:
    """/balance for a customer: their wallet (HTML)."""
    funds = await wallet.balance(deps, user_id)
    hint = top_up_hint(user_id, stars=payments.enabled(deps.settings))
    # i18n: {hint} is how to top the wallet up (a sentence)
    return _("💰 Wallet balance: <b>{balance}</b>. /wallet shows its entries. {hint}").format(
        balance=esc(wallet.show(funds.amount, funds.currency)), hint=hint)


# --- /credit and /debit -------------------------------------------------------------------------


async def _book(update: Update, context: BotContext, *, credit: bool) -> None:
    """/credit and /debit: parse → book once (this message's reference) → say what happened."""
    if not await _admin_in_shop(update, context):
        return
    message, admin = update.effective_message, update.effective_user
    args = context.args or []
    usage = _(CREDIT_USAGE if credit else DEBIT_USAGE)
    target = _user_id(args[0]) if args else None
    amount = parse_amount(args[1]) if len(args) > 1 else None
    if message is None or admin is None or target is None or amount is None:
        await reply(update, usage)
        return
    note = " ".join(args[2:])[:200]
    reference = f"admin:{message.chat_id}:{message.message_id}"
    deps = context.deps
    try:
        if credit:
            booked = await wallet.credit(deps, target, amount, reference=reference, note=note)
        else:
            booked = await wallet.debit(deps, target, amount, reference=reference, note=note)
    except wallet.NotEnough as exc:
        await reply(update, _("❌ Not debited: the wallet of <code>{user}</code> holds {balance}, "
                              "less than {amount}.").format(
            user=target, balance=esc(wallet.show(exc.balance, exc.currency)),
            amount=esc(wallet.show(exc.amount, exc.currency))))
        return
    except wallet.WalletError as exc:
        await reply(update, f"❌ {esc(exc)} {usage}")
        return
    entry = booked.entry
    log.info("Admin %d %s wallet %d by %s", admin.id, "credited" if credit else "debited",
             target, entry.amount)
    if not booked.new:
        done = _("✅ Wallet of <code>{user}</code> already booked: {amount}. Balance now "
                 "{balance}.")
    elif credit:
        done = _("✅ Wallet of <code>{user}</code> credited: {amount}. Balance now {balance}. "
                 "The customer has been told.")
    else:
        done = _("✅ Wallet of <code>{user}</code> debited: {amount}. Balance now {balance}. "
                 "The customer has been told.")
    await reply(update, done.format(user=target,
                                    amount=esc(wallet.show(abs(entry.amount), entry.currency)),
                                    balance=esc(wallet.show(entry.balance_after,
                                                            entry.currency))))


async def credit_command(update: Update, context: BotContext) -> None:
    """/credit <user id> <amount> [note]: adds money to a customer's wallet."""
    await _book(update, context, credit=True)


async def debit_command(update: Update, context: BotContext) -> None:
    """/debit <user id> <amount> [note]: takes money from a customer's wallet (never below 0)."""
    await _book(update, context, credit=False)


# --- /markup and /price -------------------------------------------------------------------------


async def markup_command(update: Update, context: BotContext) -> None:
    """/markup [percent]: shows or sets the markup on every service without a price of its own."""
    if not await _admin_in_shop(update, context):
        return
    args = context.args or []
    deps = context.deps
    if not args:
        prices = await pricing.current(deps)
        await reply(update, _("Markup: <b>{percent}%</b> on the panel's rates. Set another with "
                              "<code>/markup 30</code>.").format(
            percent=pricing.exact(prices.markup)))
        return
    try:
        percent = pricing.parse_percent(" ".join(args))
        prices = await pricing.set_markup(deps, percent)
    except PriceRefused as exc:
        # i18n: {reason} is why the markup was refused (a sentence)
        await reply(update, _("❌ {reason} Usage: <code>/markup 30</code>.").format(
            reason=esc(exc)))
        return
    await reply(update, _("✅ Markup set: <b>{percent}%</b>. Services with a price of their own "
                          "(/price) keep it.").format(percent=pricing.exact(prices.markup)))


async def _shop_service(update: Update, context: BotContext,
                        service_id: int) -> tuple[Service, str] | None:
    """The shop's service (from its catalogue) and its currency; says why not otherwise."""
    deps = context.deps
    account = shop_account(deps)
    if account is None:
        await reply(update, _("The shop has no panel account (PANEL_KEY is not set)."))
        return None
    if not await within_rate_limit(update, context):
        return None
    try:
        index = await deps.catalog.get(account.catalog_key, account.key)
    except PanelClientError as exc:
        await reply(update, _("❌ The catalogue cannot be read now: {reason}").format(
            reason=esc(exc.user_message)))
        return None
    service = index.by_id.get(service_id)
    if service is None:
        await reply(update, _("The panel has no service #{service}.").format(service=service_id))
        return None
    return service, index.currency


def price_card(service: Service, currency: str, prices: pricing.PriceList) -> str:
    """A service's cost, price and margin as the shop stands (HTML)."""
    per = per_unit(service)
    rule = prices.rule(service.service)
    unit = prices.unit_price(service)

    def money(amount: Decimal) -> str:
        return esc(format_money(amount, currency, places=6))

    lines = [f"<b>#{service.service} {esc(service.name)}</b>",
             # i18n: {per} is "per 1000" or "per package"
             _("Panel cost: {cost} {per}").format(cost=money(service.rate), per=per)]
    if rule is None:
        # i18n: how a service's price is set, in "Price: 1.50 USD per 1000 (…)"
        how = _("the shop's markup ({percent}%)").format(percent=pricing.exact(prices.markup))
    elif rule.kind == "price":
        # i18n: how a service's price is set, in "Price: 1.50 USD per 1000 (…)"
        how = _("its own price")
    elif rule.kind == "percent":
        # i18n: how a service's price is set, in "Price: 1.50 USD per 1000 (…)"
        how = _("its own markup ({percent}%)").format(
            percent=pricing.exact(rule.value or Decimal(0)))
    else:
        # i18n: a service an admin took off sale, in "Price: …"
        how = _("off: not sold")
    if unit is None:
        why = how if rule is not None and rule.kind == "off" else _(
            "not sold (subscriptions are charged per new post, so no total is known before "
            "ordering)")
        # i18n: {price} is why a service is not sold ("off: not sold")
        lines.append(_("Price: {price}").format(price=why))
        return "\n".join(lines)
    margin = unit - service.rate
    # i18n: {per} is "per 1000" or "per package"; {how} how the price is set
    lines.append(_("Price: <b>{price}</b> {per} ({how})").format(price=money(unit), per=per,
                                                                 how=how))
    if service.rate > 0:
        share = pricing.exact((margin * 100 / service.rate).quantize(Decimal("0.1")), keep=1)
        # i18n: {per} is "per 1000" or "per package"; {percent}: the margin's share of the price
        lines.append(_("Margin: {margin} {per} ({percent}%)").format(
            margin=money(margin), per=per, percent=share))
    else:
        # i18n: {per} is "per 1000" or "per package"
        lines.append(_("Margin: {margin} {per}").format(margin=money(margin), per=per))
    listed = prices.listed_price(service)
    if listed is not None and listed < service.rate:
        lines.append(_("⚠️ Its price ({price}) is below the panel's rate now, so it sells at "
                       "cost: set a new one.").format(price=money(listed)))
    return "\n".join(lines)


async def price_command(update: Update, context: BotContext) -> None:
    """/price <service id> [<price per 1000> | +<percent>% | off | reset]."""
    if not await _admin_in_shop(update, context):
        return
    args = context.args or []
    service_id = int_arg(args, 0) if args else None
    if service_id is None or len(args) > 2:
        await reply(update, _(PRICE_USAGE))
        return
    found = await _shop_service(update, context, service_id)
    if found is None:
        return
    service, currency = found
    deps = context.deps
    try:
        if len(args) == 1:
            prices = await pricing.current(deps)
        elif args[1].lower() == "off":
            prices = await pricing.hide(deps, service_id)
        elif args[1].lower() in ("reset", "default"):
            prices = await pricing.reset(deps, service_id)
        elif args[1].startswith(("+", "-")) or args[1].endswith("%"):
            prices = await pricing.set_percent(deps, service, pricing.parse_percent(args[1]))
        else:
            price = parse_amount(args[1])
            if price is None:
                refused = _("❌ {text} is not a price.").format(text=esc(args[1]))
                await reply(update, refused + " " + _(PRICE_USAGE))
                return
            prices = await pricing.set_price(deps, service, price)
    except PriceRefused as exc:
        await reply(update, f"❌ {esc(exc)}")
        return
    done = "" if len(args) == 1 else _("✅ Saved.") + "\n"
    await reply(update, done + price_card(service, currency, prices))


# --- /audit -------------------------------------------------------------------------------------


async def audit_command(update: Update, context: BotContext) -> None:
    """/audit: checks every wallet and every charged order."""
    if not await _admin_in_shop(update, context):
        return
    report = await payments.audit(context.deps)
    head = _audit_head(report)
    if report.ok:
        passed = _("✅ <b>Audit passed</b>: {counts}. Every wallet adds up, each charged order "
                   "has one charge, every refund matches its order, no balance is "
                   "negative.").format(counts=head)
        if report.payments:
            passed += " " + _("Every Stars payment has its one credit, every refunded one its "
                              "one refund debit.")
        lines = [passed]
    else:
        found = len(report.problems)
        lines = [ngettext("❌ <b>Audit found {n} problem</b> ({counts}):",
                          "❌ <b>Audit found {n} problems</b> ({counts}):",
                          found).format(n=found, counts=head)]
        lines += [f"• {esc(problem)}" for problem in report.problems[:30]]
        if found > 30:
            more = found - 30
            lines.append(ngettext("… and {n} more (see the log)", "… and {n} more (see the log)",
                                  more).format(n=more))
        for problem in report.problems:
            log.error("Audit: %s", problem)
    lines += [f"ℹ️ {esc(note)}" for note in report.notes[:10]]
    await reply(update, "\n".join(lines))


def _audit_head(report: wallet.AuditReport) -> str:
    """"2 entries in 1 wallet, 1 charged order[, 3 Stars payments]" (what the audit read)."""
    entries = ngettext("{n} entry", "{n} entries", report.entries).format(n=report.entries)
    # i18n: in /audit's "2 entries in 1 wallet, …"
    wallets = ngettext("{n} wallet", "{n} wallets", report.wallets).format(n=report.wallets)
    # i18n: in /audit's "2 entries in 1 wallet, 1 charged order"
    orders = ngettext("{n} charged order", "{n} charged orders",
                      report.charged_orders).format(n=report.charged_orders)
    if not report.payments:
        # i18n: what /audit read: "{entries} in {wallets}, {orders}"
        return _("{entries} in {wallets}, {orders}").format(entries=entries, wallets=wallets,
                                                            orders=orders)
    # i18n: Telegram Stars payments /audit checked
    stars = ngettext("{n} Stars payment", "{n} Stars payments",
                     report.payments).format(n=report.payments)
    # i18n: what /audit read: "{entries} in {wallets}, {orders}, {payments}"
    return _("{entries} in {wallets}, {orders}, {payments}").format(
        entries=entries, wallets=wallets, orders=orders, payments=stars)


def handlers() -> list[BaseHandler[Update, BotContext, object]]:
    """This module's handlers."""
    return [
        CommandHandler("wallet", wallet_command),
        CommandHandler("credit", credit_command),
        CommandHandler("debit", debit_command),
        CommandHandler("markup", markup_command),
        CommandHandler("price", price_command),
        CommandHandler("audit", audit_command),
        CallbackQueryHandler(wallet_button, pattern=r"^wl:"),
    ]
