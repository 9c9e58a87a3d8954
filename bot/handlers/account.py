"""/connect and /disconnect: a user's own panel API key, checked, encrypted, never shown again.

How /connect fits with the other handlers (all in group 0, where only the first match runs):
the "connect" conversation is registered FIRST (bot/app.py), before the order wizard and the
catalogue's text search. While it waits for a key, the next text message is the key and nothing
else sees it (not the search, which would echo it; not the wizard, which would keep it in
user_data). It waits for one message only: /cancel, any other command or any button press ends
the wait (the command is not run: the user is told to send it again), and so does a silence of
ORDER_TIMEOUT (also across a restart: see bot/jobs.py). The wait is persistent: a restart
between "/connect" and the key does not send the key to the search. /connect works anywhere,
also in the middle of an order: the wizard keeps its place and its next answer goes to it.

Demo mode: the key is checked against the sandbox panel, so only the sandbox's keys connect; a
real panel's key is refused there (and never leaves the process).
"""

from __future__ import annotations

import logging

from telegram import Message, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    BaseHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot.config import Settings
from bot.crypto import KeyBox, WrongSecretKey
from bot.deps import DEPS_KEY, BotApp, BotContext, Deps
from bot.handlers.common import esc, remember_user, reply, within_rate_limit
from bot.handlers.conversations import ExpiringConversation, wait_fallbacks
from bot.i18n import L_, N_, _
from bot.logs import REDACTOR
from bot.money import format_money
from bot.panel.errors import PanelClientError, PanelError, PanelErrorKind
from bot.services.accounts import account_for, forget_own_catalogue, role_of
from bot.services.notices import notice
from bot.text import NOTE_MAX, esc_short, fit
from storage import outbox, users

log = logging.getLogger(__name__)

WAITING_KEY = 1
END = ConversationHandler.END
KEY_WAIT_SECONDS = 300

# Catalog texts (`N_`): each is translated where it is said, `_(TURNED_OFF)`.
TURNED_OFF = N_("Connecting your own key is turned off on this bot.")
NOT_IN_SHOP = N_("This shop does not offer /connect: your orders are paid from your /wallet.")
PRIVATE_ONLY = N_("Connect your key in a private chat with me, never in a group: everyone here "
                  "could read it.")
ASK_KEY = N_("Send me your panel API key (on your panel's account or API page). I delete the "
             "message at once and keep the key encrypted. /cancel to stop.")
DELETE_IT = N_("⚠️ Delete the message with your key yourself: I could not.")
NOT_A_KEY = N_("That does not look like a panel API key (one word, no spaces).")
REFUSED = N_("That key was refused by the panel; nothing was stored.")
CANNOT_CHECK = N_("Could not check the key now; try again in a minute. Nothing was stored.")
# i18n: after why a key was not connected: what to do next
SEND_AGAIN = N_("Send the key again, or /cancel.")
# i18n: after why a key was refused, in demo mode
DEMO_HINT = N_("(Demo mode: only the sandbox panel's keys work on this bot.)")

WAIT_ENDED = N_("I stopped waiting for your panel API key (nothing was connected). Send "
                "/connect again when you have it.")

MIN_KEY, MAX_KEY = 8, 256


async def connect(update: Update, context: BotContext) -> int:
    """Connects the key sent with the command, or asks for it."""
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    if message is None or chat is None or user is None:
        return END
    key = " ".join(context.args or [])
    # The key leaves the chat before anything else happens, whatever the answer will be.
    deleted = await _delete(message) if key else True
    warning = "" if deleted else "\n" + _(DELETE_IT)
    if chat.type != ChatType.PRIVATE:
        await _say(update, _(PRIVATE_ONLY) + warning)
        return END
    if context.deps.keybox is None:
        await _say(update, _(TURNED_OFF) + warning)
        return END
    if context.deps.settings.shop_mode and await role_of(context.deps, user.id) != "admin":
        await _say(update, _(NOT_IN_SHOP) + warning)
        return END
    await remember_user(update, context)
    if not key:
        await _say(update, _(ASK_KEY))
        return WAITING_KEY
    await _connect_key(update, context, key, warning)
    return END


async def receive_key(update: Update, context: BotContext) -> int | None:
    """Takes the key sent after /connect; asks again when it is not accepted."""
    message = update.effective_message
    if message is None or message.text is None:
        return None
    deleted = await _delete(message)
    connected = await _connect_key(update, context, message.text.strip(),
                                   "" if deleted else "\n" + _(DELETE_IT),
                                   retry=" " + _(SEND_AGAIN))
    return END if connected else None


async def disconnect(update: Update, context: BotContext) -> None:
    """Forgets the user's own panel key."""
    user = update.effective_user
    if user is None:
        return
    deps = context.deps
    stored = await users.get_user(deps.db, user.id)
    if stored is None or stored.panel_key is None:
        await reply(update, _("You have no panel API key connected."))
        return
    await forget_own_catalogue(deps, user.id)
    await users.set_panel_key(deps.db, user.id, None)
    _forget_in_logs(deps.keybox, stored.panel_key)
    log.info("User %d disconnected their own panel key", user.id)
    account = await account_for(deps, user.id)
    if account is None:
        now = _("You have no access to order now; /connect a key again to order.")
    elif account.demo:
        now = _("You are back on the demo sandbox.")
    else:
        now = _("Your orders now use the operator's panel account.")
    forgotten = _("I have forgotten your panel API key. Orders placed with it stay on your "
                  "panel account; I no longer follow them.")
    await reply(update, f"{forgotten}\n{now}")


def _forget_in_logs(keybox: KeyBox | None, token: bytes) -> None:
    """The log redactor stops blanking a key that is no longer connected (it stays small)."""
    if keybox is None:
        return
    try:
        REDACTOR.forget(keybox.decrypt(token))
    except WrongSecretKey:
        pass  # it was never readable, so never learned either


async def _connect_key(update: Update, context: BotContext, key: str, warning: str,
                       retry: str = "") -> bool:
    """Checks the key with a balance request, then stores it encrypted; True when connected.
    `warning` and `retry` are translated texts said after the answer (or nothing)."""
    user = update.effective_user
    deps = context.deps
    keybox = deps.keybox
    if user is None or keybox is None:
        return False
    if not MIN_KEY <= len(key) <= MAX_KEY or any(c.isspace() for c in key):
        await _say(update, _(NOT_A_KEY) + retry + warning)
        return False
    # The redactor learns the key only once the panel accepted it (`keybox.encrypt`): taught
    # every text sent here, it would let anyone hide what they like from the logs. Until then
    # the key is in no log line: nothing logs panel requests or updates' text.
    if not await within_rate_limit(update, context):
        return False
    try:
        balance = await deps.panel.balance(key)
    except PanelError as exc:
        demo = " " + _(DEMO_HINT) if deps.demo else ""
        if exc.kind is PanelErrorKind.INVALID_KEY:
            text = _(REFUSED)
        else:
            said = esc_short(REDACTOR.clean(exc.text.replace(key, "***")), NOTE_MAX)
            # i18n: {error} is the panel's own error message
            text = _("The panel did not accept the key ({error}); nothing was stored.").format(
                error=said)
        log.info("User %d tried to connect a panel key: refused (%s)", user.id, exc.kind.value)
        await _say(update, text + demo + retry + warning)
        return False
    except PanelClientError as exc:
        log.warning("User %d tried to connect a panel key: %s", user.id, type(exc).__name__)
        await _say(update, _(CANNOT_CHECK) + retry + warning)
        return False
    await forget_own_catalogue(deps, user.id)  # the old key's: nobody sees it any more
    await users.set_panel_key(deps.db, user.id, keybox.encrypt(key))
    log.info("User %d connected their own panel key", user.id)
    connected = _("✅ Key connected. Balance: {balance}.\nYour orders now use your own panel "
                  "account. /disconnect to stop.").format(
        balance=esc(format_money(balance.balance, balance.currency)))
    await _say(update, connected + warning)
    return True


async def _say(update: Update, text: str) -> None:
    """Sends a message to the chat without quoting: the message it answers may be deleted."""
    chat = update.effective_chat
    if chat is not None:
        await chat.send_message(fit(text), parse_mode=ParseMode.HTML)


async def _delete(message: Message) -> bool:
    """Deletes a message that carries a key; False when Telegram would not."""
    try:
        return await message.delete()
    except TelegramError as exc:
        log.info("Could not delete a key message in chat %d: %s", message.chat_id, exc)
        return False


async def wait_expired(app: BotApp, chat_id: int, user_id: int) -> None:
    """The wait for a key, ended after ORDER_TIMEOUT, also across a restart (queued as a
    Msg: rendered in the user's language when it is sent)."""
    deps: Deps = app.bot_data[DEPS_KEY]
    await outbox.enqueue_notice(deps.db, notice(chat_id, L_(WAIT_ENDED)))


def handlers(settings: Settings | None = None) -> list[BaseHandler[Update, BotContext, object]]:
    """This module's handlers (the conversation must be registered before the wizard's); the
    wait for a key ends after ORDER_TIMEOUT."""
    wait = settings.order_timeout * 60 if settings is not None else KEY_WAIT_SECONDS
    return [
        ExpiringConversation(
            on_expiry=wait_expired,
            entry_points=[CommandHandler("connect", connect)],
            states={
                WAITING_KEY: [MessageHandler(filters.TEXT & ~filters.COMMAND, receive_key)],
            },
            fallbacks=wait_fallbacks(N_("I stopped waiting for your key (nothing was connected)."),
                                     N_("OK, no key was connected.")),
            allow_reentry=True,
            conversation_timeout=wait,
            name="connect",
            persistent=True,
        ),
        CommandHandler("disconnect", disconnect),
    ]
