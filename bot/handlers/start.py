"""/start, /help and the main menu: what the user can do, given their access."""

from __future__ import annotations

from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.deps import BotContext
from bot.handlers.common import BANNED, answer, esc, no_access_text, remember_user, reply, show
from bot.services import wallet
from bot.services.accounts import account_for, role_of

# The command menu Telegram shows (set at start-up), one line each.
COMMANDS: list[tuple[str, str]] = [
    ("start", "Main menu"),
    ("order", "Place an order (/order <service id>)"),
    ("massorder", "Many orders at once: lines of id | link | quantity"),
    ("services", "Browse or search services (/services <words>)"),
    ("orders", "Your orders"),
    ("status", "Status of orders: /status <ids>"),
    ("refill", "Request a refill: /refill <ids>"),
    ("cancelorder", "Cancel orders: /cancelorder <ids>"),
    ("track", "Follow orders placed on the panel's site: /track <ids>"),
    ("balance", "Your panel balance"),
    ("notify", "Notifications: all changes, final only, or off"),
    ("connect", "Use your own panel API key"),
    ("disconnect", "Forget your panel API key"),
    ("cancel", "Leave the order you are filling in"),
    ("language", "Choose the bot's language"),
    ("help", "What this bot can do"),
]

ADMIN_HELP = "\n\nAdmin: /stats, /allow &lt;id&gt;, /deny &lt;id&gt;."
SHOP_ADMIN_HELP = ("\n\nAdmin: /stats, /deny &lt;id&gt; (ban), /allow &lt;id&gt; (unban), "
                   "/wallet &lt;id&gt;, /credit &lt;id&gt; &lt;amount&gt; [note], /debit "
                   "&lt;id&gt; &lt;amount&gt; [note], /markup &lt;percent&gt;, /price "
                   "&lt;service id&gt; […], /audit, /refund &lt;id&gt; &lt;charge id&gt; (a "
                   "Stars payment).")

# Shop mode: what a customer can do (no /track, no /connect; /balance is the wallet).
SHOP_COMMANDS: list[tuple[str, str]] = [
    ("start", "Main menu"),
    ("order", "Place an order (/order <service id>)"),
    ("services", "Browse or search services (/services <words>)"),
    ("orders", "Your orders"),
    ("wallet", "Your wallet: balance and entries"),
    ("topup", "Top up your wallet"),
    ("balance", "Your wallet balance"),
    ("status", "Status of orders: /status <ids>"),
    ("refill", "Request a refill: /refill <ids>"),
    ("cancelorder", "Cancel orders: /cancelorder <ids>"),
    ("notify", "Notifications: all changes, final only, or off"),
    ("cancel", "Leave the order you are filling in"),
    ("paysupport", "Help with a payment"),
    ("terms", "Terms of top-ups and orders"),
    ("language", "Choose the bot's language"),
    ("help", "What this bot can do"),
]

SHOP_HELP = """<b>What I can do</b>
/order – place an order: pick a service, answer a few questions, confirm.
/services &lt;words&gt; – search the services; /services alone to browse.
/orders – your orders; tap one for its card (refresh, refill, cancel).
/wallet – your wallet: its balance and entries; orders are paid from it.
/topup – top up your wallet.
/balance – your wallet balance.
/status &lt;ids&gt; – the status of any of your orders.
/refill &lt;ids&gt;, /cancelorder &lt;ids&gt; – refill or cancel orders.
/notify – which status changes I message you about.
/cancel – leave the order you are filling in.
/paysupport, /terms – help with a payment; the terms.
/language – the language I speak to you."""

HELP = """<b>What I can do</b>
/order – place an order: pick a service, answer a few questions, confirm.
/massorder – many orders at once: lines of <code>service id | link | quantity</code>.
/services &lt;words&gt; – search the services; /services alone to browse.
/orders – your orders; tap one for its card (refresh, refill, cancel).
/status &lt;ids&gt; – the status of any of your orders.
/refill &lt;ids&gt;, /cancelorder &lt;ids&gt; – refill or cancel orders.
/track &lt;ids&gt; – follow orders you placed on the panel's website.
/balance – your panel balance.
/notify – which status changes I message you about.
/connect, /disconnect – use your own panel API key, or stop using it.
/cancel – leave the order you are filling in.
/language – the language I speak to you."""


def bot_commands(*, shop: bool = False) -> list[BotCommand]:
    """The command menu registered with Telegram (a shop's customers' in shop mode)."""
    return [BotCommand(name, description)
            for name, description in (SHOP_COMMANDS if shop else COMMANDS)]


def menu_markup() -> InlineKeyboardMarkup:
    """The main menu's buttons."""
    return InlineKeyboardMarkup([
        [InlineKeyboardButton("🛒 New order", callback_data="cat:0")],
        [InlineKeyboardButton("📦 My orders", callback_data="ol:0"),
         InlineKeyboardButton("💰 Balance", callback_data="bal")],
    ])


async def welcome_text(update: Update, context: BotContext) -> str:
    """One short message saying what this user can do, given their access."""
    user = update.effective_user
    assert user is not None
    deps = context.deps
    account = await account_for(deps, user.id)
    name = esc(user.first_name)
    if account is None and deps.settings.shop_mode:
        return f"Hi {name}! {BANNED}"
    if account is None:
        return f"Hi {name}! " + no_access_text(user.id, can_connect=deps.keybox is not None)
    if account.customer:
        funds = await wallet.balance(deps, user.id)
        demo = ("\n⚠️ <b>Demo mode</b>: orders go to a built-in sandbox panel; nothing real is "
                "bought." if account.demo else "")
        return (f"Hi {name}! Welcome to the shop: order followers, likes, views and more, "
                "paid from your wallet here, and I will tell you when each order changes."
                f"\nYour wallet: <b>{esc(wallet.show(funds.amount, funds.currency))}</b> "
                f"(/wallet).{demo}\n\nTap <b>New order</b>, or see /help.")
    if account.demo:
        access = ("⚠️ <b>Demo mode</b>: orders go to a built-in sandbox panel. Nothing real is "
                  "bought and no money is spent; demo orders finish within a couple of minutes.")
    elif account.own:
        access = "You are using your own panel API key (/disconnect to stop)."
    else:
        access = "You order with the operator's panel account."
        if deps.keybox is not None:
            access += " You can /connect your own API key instead."
    text = (f"Hi {name}! Order followers, likes, views and more from the panel, and I will "
            f"tell you when each order changes.\n{access}\n\nTap <b>New order</b>, or see /help.")
    if await role_of(deps, user.id) == "admin":
        text += SHOP_ADMIN_HELP if deps.settings.shop_mode else ADMIN_HELP
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
    text = SHOP_HELP if shop and not admin else HELP
    if admin:
        text += SHOP_ADMIN_HELP if shop else ADMIN_HELP
    await reply(update, text)


def handlers() -> list[BaseHandler[Update, BotContext, object]]:
    """This module's handlers."""
    return [
        CommandHandler("start", start),
        CommandHandler("help", help_command),
        CallbackQueryHandler(open_menu, pattern=r"^menu$"),
    ]
