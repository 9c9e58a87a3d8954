"""Small helpers every handler uses: replying or editing safely, escaping, access checks."""

from __future__ import annotations

import logging

from telegram import CallbackQuery, Message, Update
from telegram.error import BadRequest, TelegramError

from bot.deps import BotContext
from bot.i18n import N_, _
from bot.keyboards import Keyboard
from bot.outgoing import edit_html, send_html
from bot.services.accounts import Account, account_for
from bot.text import esc as esc
from bot.text import fit, shorten
from storage import users

log = logging.getLogger(__name__)

#: A catalog text (`N_`): translate it where it is said, ``_(BANNED)``.
BANNED = N_("You cannot order from this shop.")


async def reply(update: Update, text: str,
                markup: Keyboard | None = None) -> int | None:
    """Sends a new HTML message to the update's chat (in the forum topic, or through the
    business connection, of the message it answers); the new message's id."""
    message = update.effective_message
    chat = update.effective_chat
    if chat is None:
        return None
    if message is not None and update.callback_query is None:
        return await send_html(message.get_bot(), chat.id, fit(text), markup,
                               thread_id=message.message_thread_id
                               if message.is_topic_message else None,
                               business_connection_id=message.business_connection_id)
    return await send_html(chat.get_bot(), chat.id, fit(text), markup)


async def show(update: Update, text: str, markup: Keyboard | None = None) -> None:
    """Edits the message a button was pressed on (or sends one when there is none).

    Pressing a button that would show the same thing again is not an error.
    """
    query = update.callback_query
    if query is not None and query.message is not None and isinstance(query.message, Message):
        message = query.message
        try:
            await edit_html(message.get_bot(), message.chat_id, message.message_id, fit(text),
                            markup, business_connection_id=message.business_connection_id)
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                raise
        return
    await reply(update, text, markup)


async def answer(query: CallbackQuery | None, text: str | None = None,
                 alert: bool = False) -> None:
    """Answers a button press (stops the spinner); never fails the handler: the answer is a
    courtesy, so neither an old query nor a network hiccup may stop what the tap does."""
    if query is None:
        return
    try:
        await query.answer(shorten(text, 200) if text else None, show_alert=alert)
    except BadRequest as exc:  # the query is too old to answer: nothing the user can see
        log.debug("Could not answer callback query: %s", exc)
    except TelegramError as exc:  # timed out, network: the spinner stops by itself
        log.info("Could not answer callback query: %s", type(exc).__name__)


async def remember_user(update: Update, context: BotContext) -> None:
    """Records the user who wrote (and that they have not blocked the bot)."""
    user = update.effective_user
    if user is None:
        return
    name, language = user.full_name, user.language_code or ""
    db = context.deps.db
    if not context.user_read:
        await users.remember_user(db, telegram_id=user.id, name=name, language=language)
    elif context.stored_user != (name, language):  # new, or renamed: no need to read again
        await users.upsert_user(db, telegram_id=user.id, name=name, language=language)
    else:
        return  # stored as they are, and unblocked when the update came in (`user_is_back`)
    context.stored_user, context.user_read = (name, language), True


def no_access_text(user_id: int, *, can_connect: bool) -> str:
    """How to get access, for a user who has none (/connect only where it is turned on)."""
    if can_connect:
        text = _("This bot orders from a private SMM panel account, and you have no access to "
                 "it.\nAsk the bot's operator to add you (send them your id: <code>{user_id}"
                 "</code>), or connect your own panel API key with /connect.")
    else:
        text = _("This bot orders from a private SMM panel account, and you have no access to "
                 "it.\nAsk the bot's operator to add you (send them your id: <code>{user_id}"
                 "</code>).")
    return text.format(user_id=user_id)


async def require_account(update: Update, context: BotContext) -> Account | None:
    """The caller's panel account; tells them how to get access when they have none."""
    user = update.effective_user
    if user is None:
        return None
    account = await account_for(context.deps, user.id)
    if account is None:
        await answer(update.callback_query)
        if context.deps.settings.shop_mode:  # only a ban shuts a customer out
            await reply(update, _(BANNED))
        else:
            await reply(update, no_access_text(user.id,
                                               can_connect=context.deps.keybox is not None))
    return account


async def within_rate_limit(update: Update, context: BotContext) -> bool:
    """Counts a panel-hitting action; tells the user to slow down when over the limit."""
    user = update.effective_user
    if user is None:
        return False
    wait = context.deps.limiter.try_acquire(user.id)
    if wait <= 0:
        return True
    message = _("Too many requests: please wait {seconds} s and try again.").format(
        seconds=int(wait) + 1)
    if update.callback_query is not None:
        await answer(update.callback_query, message, alert=True)
    else:
        await reply(update, message)
    return False
