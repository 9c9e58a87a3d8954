"""/start, /help and the main menu: what the user can do, given their access."""

from __future__ import annotations

from telegram import BotCommand, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.deps import BotContext
from bot.handlers.common import BANNED, answer, esc, no_access_text, remember_user, reply, show
from bot.i18n import N_, _
from bot.keyboards import Button, Keyboard
from bot.services import wallet
from bot.services.accounts import account_for, role_of

# The command menu Telegram shows (set at start-up, once per language), one line each; the
# descriptions are catalog texts, translated in `bot_commands`.
COMMANDS: list[tuple[str, str]] = [
    ("start", N_("Main menu")),
    ("order", N_("Place an order (/order <service id>)")),
    ("massorder", N_("Many orders at once: lines of id | link | quantity")),
    ("services", N_("Browse or search services (/services <words>)")),
    ("orders", N_("Your orders")),
    ("status", N_("Status of orders: /status <ids>")),
    ("refill", N_("Request a refill: /refill <ids>")),
    ("cancelorder", N_("Cancel orders: /cancelorder <ids>")),
    ("track", N_("Follow orders placed on the panel's site: /track <ids>")),
    ("balance", N_("Your panel balance")),
    ("notify", N_("Notifications: all changes, final only, or off")),
    ("connect", N_("Use your own panel API key")),
    ("disconnect", N_("Forget your panel API key")),
    ("cancel", N_("Leave the order you are filling in")),
    ("language", N_("Choose the bot's language")),
    ("help", N_("What this bot can do")),
]

# The admins' line under /help and the welcome (catalog texts: `_()` where shown).
ADMIN_HELP = N_("Admin: /stats, /allow &lt;id&gt;, /deny &lt;id&gt;.")
SHOP_ADMIN_HELP = N_("Admin: /stats, /deny &lt;id&gt; (ban), /allow &lt;id&gt; (unban), "
                     "/wallet &lt;id&gt;, /credit &lt;id&gt; &lt;amount&gt; [note], /debit "
                     "&lt;id&gt; &lt;amount&gt; [note], /markup &lt;percent&gt;, /price "
                     "&lt;service id&gt; […], /audit, /refund &lt;id&gt; &lt;charge id&gt; (a "
                     "Stars payment).")

# Shop mode: what a customer can do (no /track, no /connect; /balance is the wallet).
SHOP_COMMANDS: list[tuple[str, str]] = [
    ("start", N_("Main menu")),
    ("order", N_("Place an order (/order <service id>)")),
    ("services", N_("Browse or search services (/services <words>)")),
    ("orders", N_("Your orders")),
    ("wallet", N_("Your wallet: balance and entries")),
    ("topup", N_("Top up your wallet")),
    ("balance", N_("Your wallet balance")),
    ("status", N_("Status of orders: /status <ids>")),
    ("refill", N_("Request a refill: /refill <ids>")),
    ("cancelorder", N_("Cancel orders: /cancelorder <ids>")),
    ("notify", N_("Notifications: all changes, final only, or off")),
    ("cancel", N_("Leave the order you are filling in")),
    ("paysupport", N_("Help with a payment")),
    ("terms", N_("Terms of top-ups and orders")),
    ("language", N_("Choose the bot's language")),
    ("help", N_("What this bot can do")),
]

# /help, a catalog text a line (the lines the two modes share are translated once).
_HELP_TITLE = N_("<b>What I can do</b>")
_HELP_ORDER = N_("/order – place an order: pick a service, answer a few questions, confirm.")
_HELP_SERVICES = N_("/services &lt;words&gt; – search the services; /services alone to browse.")
_HELP_ORDERS = N_("/orders – your orders; tap one for its card (refresh, refill, cancel).")
_HELP_STATUS = N_("/status &lt;ids&gt; – the status of any of your orders.")
_HELP_REFILL = N_("/refill &lt;ids&gt;, /cancelorder &lt;ids&gt; – refill or cancel orders.")
_HELP_NOTIFY = N_("/notify – which status changes I message you about.")
_HELP_CANCEL = N_("/cancel – leave the order you are filling in.")
_HELP_LANGUAGE = N_("/language – the language I speak to you.")

SHOP_HELP: tuple[str, ...] = (
    _HELP_TITLE,
    _HELP_ORDER,
    _HELP_SERVICES,
    _HELP_ORDERS,
    N_("/wallet – your wallet: its balance and entries; orders are paid from it."),
    N_("/topup – top up your wallet."),
    N_("/balance – your wallet balance."),
    _HELP_STATUS,
    _HELP_REFILL,
    _HELP_NOTIFY,
    _HELP_CANCEL,
    N_("/paysupport, /terms – help with a payment; the terms."),
    _HELP_LANGUAGE,
)

HELP: tuple[str, ...] = (
    _HELP_TITLE,
    _HELP_ORDER,
    N_("/massorder – many orders at once: lines of <code>service id | link | quantity</code>."),
    _HELP_SERVICES,
    _HELP_ORDERS,
    _HELP_STATUS,
    _HELP_REFILL,
    N_("/track &lt;ids&gt; – follow orders you placed on the panel's website."),
    N_("/balance – your panel balance."),
    _HELP_NOTIFY,
    N_("/connect, /disconnect – use your own panel API key, or stop using it."),
    _HELP_CANCEL,
    _HELP_LANGUAGE,
)


def help_text(lines: tuple[str, ...]) -> str:
    """A /help text (`HELP`, `SHOP_HELP`) in the current language."""
    return "\n".join(_(line) for line in lines)


def bot_commands(*, shop: bool = False) -> list[BotCommand]:
    """The command menu registered with Telegram (a shop's customers' in shop mode), in the
    current language."""
    return [BotCommand(name, _(description))
            for name, description in (SHOP_COMMANDS if shop else COMMANDS)]


def menu_markup() -> Keyboard:
    """The main menu's buttons."""
    return Keyboard([
        # i18n: a button of the main menu
        [Button(_("🛒 New order"), callback_data="cat:0")],
        # i18n: a button of the main menu
        [Button(_("📦 My orders"), callback_data="ol:0"),
         # i18n: a button of the main menu (the panel balance, or a shop's wallet)
         Button(_("💰 Balance"), callback_data="bal")],
    ])


async def welcome_text(update: Update, context: BotContext) -> str:
    """One short message saying what this user can do, given their access."""
    user = update.effective_user
    assert user is not None
    deps = context.deps
    account = await account_for(deps, user.id)
    # i18n: the greeting that opens the welcome; {name} is the user's first name
    hello = _("Hi {name}!").format(name=esc(user.first_name))
    tap = _("Tap <b>New order</b>, or see /help.")
    if account is None and deps.settings.shop_mode:
        return f"{hello} {_(BANNED)}"
    if account is None:
        return f"{hello} " + no_access_text(user.id, can_connect=deps.keybox is not None)
    if account.customer:
        funds = await wallet.balance(deps, user.id)
        shop = _("Welcome to the shop: order followers, likes, views and more, paid from your "
                 "wallet here, and I will tell you when each order changes.\nYour wallet: "
                 "<b>{balance}</b> (/wallet).").format(
            balance=esc(wallet.show(funds.amount, funds.currency)))
        demo = ("\n" + _("⚠️ <b>Demo mode</b>: orders go to a built-in sandbox panel; nothing "
                         "real is bought.") if account.demo else "")
        return f"{hello} {shop}{demo}\n\n{tap}"
    if account.demo:
        access = _("⚠️ <b>Demo mode</b>: orders go to a built-in sandbox panel. Nothing real is "
                   "bought and no money is spent; demo orders finish within a couple of "
                   "minutes.")
    elif account.own:
        access = _("You are using your own panel API key (/disconnect to stop).")
    elif deps.keybox is not None:
        access = _("You order with the operator's panel account. You can /connect your own "
                   "API key instead.")
    else:
        access = _("You order with the operator's panel account.")
    intro = _("Order followers, likes, views and more from the panel, and I will tell you "
              "when each order changes.")
    text = f"{hello} {intro}\n{access}\n\n{tap}"
    if await role_of(deps, user.id) == "admin":
        text += "\n\n" + _(SHOP_ADMIN_HELP if deps.settings.shop_mode else ADMIN_HELP)
    return text


async def start(update: Update, context: BotContext) -> None:
    """Greets the user with the main menu."""
    await remember_user(update, context)
    await reply(update, await welcome_text(update, context), menu_markup())


async def open_menu(update: Update, context: BotContext) -> None:
    """Shows the main menu in place of the message whose button was tapped."""
    await answer(update.callback_query)
    await show(update, await welcome_text(update, context), menu_markup())


async def help_command(update: Update, context: BotContext) -> None:
    """Lists the commands."""
    user = update.effective_user
    shop = context.deps.settings.shop_mode
    admin = user is not None and await role_of(context.deps, user.id) == "admin"
    text = help_text(SHOP_HELP if shop and not admin else HELP)
    if admin:
        text += "\n\n" + _(SHOP_ADMIN_HELP if shop else ADMIN_HELP)
    await reply(update, text)


def handlers() -> list[BaseHandler[Update, BotContext, object]]:
    """This module's handlers."""
    return [
        CommandHandler("start", start),
        CommandHandler("help", help_command),
        CallbackQueryHandler(open_menu, pattern=r"^menu$"),
    ]
