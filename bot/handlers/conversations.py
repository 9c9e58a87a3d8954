"""Conversations that end after their timeout even when the bot restarted in between.

PTB ends a conversation after `conversation_timeout` with a job it schedules on each update, but
that job does not survive a restart: a form (or a wait for a key) restored from the database
would stay open until its user writes again, days later, and that message would be taken as an
answer. `ExpiringConversation` is a persistent ConversationHandler that can be ended from
outside, and `end_stale_conversations` (a job, `bot/jobs.py`) ends every restored conversation
whose last write (the persistence records when) is older than its timeout, telling its user
what happened exactly as the timeout would have.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot import i18n
from bot.deps import DEPS_KEY, BotApp, BotContext, Deps
from bot.handlers.common import answer, reply
from bot.i18n import _
from bot.text import esc
from storage import users
from storage.persistence import SqlitePersistence

log = logging.getLogger(__name__)

#: What happens when a conversation of (chat id, user id) expires: its handler's own words.
OnExpiry = Callable[[BotApp, int, int], Awaitable[None]]


class ExpiringConversation(ConversationHandler[BotContext]):
    """A persistent, named ConversationHandler, keyed per chat and user, that also takes
    buttons, and that `end_stale_conversations` can end.

    It is built without PTB's "If 'per_message=False', 'CallbackQueryHandler' will not be
    tracked for every message". The warning says the state belongs to the chat, not to the
    message a button is on. That is what these conversations need: their answers are text
    messages, which a per-message conversation cannot take. A button on an older message is
    told apart by the handlers themselves (the wizard compares message ids; the waits stop on
    any button), so the warning is harmless here. Only that warning is silenced, only while
    the handler is built.
    """

    def __init__(self, *args: Any, on_expiry: OnExpiry, **kwargs: Any) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"If 'per_message=False'",
                                    category=PTBUserWarning)
            super().__init__(*args, **kwargs)
        self.on_expiry = on_expiry

    def end(self, key: tuple[int | str, ...]) -> None:
        """Ends one conversation, as returning END from a handler would."""
        # The same call PTB makes for a state END it finds in the persistence at start-up.
        self._update_state(self.END, key)


def wait_fallbacks(stopped: str, cancelled: str) -> list[BaseHandler[Update, BotContext, object]]:
    """The ways out of a one-message wait (for a key, an amount): /cancel says `cancelled`;
    another command or button ends the wait and says `stopped` ("I stopped waiting for …") and
    to send or tap it again (it is not run: the user should not wonder which of the two their
    next message answers). Both are catalog texts (`N_`), translated when said."""

    async def cancel(update: Update, context: BotContext) -> int:
        await reply(update, _(cancelled))
        return ConversationHandler.END

    async def command(update: Update, context: BotContext) -> int:
        message = update.effective_message
        text = message.text if message is not None and message.text else ""
        word = text.split()[0] if text else ""
        again = _("Send {command} again.").format(command=esc(word[:40]))
        await reply(update, f"{_(stopped)} {again}")
        return ConversationHandler.END

    async def button(update: Update, context: BotContext) -> int:
        again = _("Tap again.")
        await answer(update.callback_query, f"{_(stopped)} {again}", alert=True)
        return ConversationHandler.END

    return [CommandHandler("cancel", cancel), MessageHandler(filters.COMMAND, command),
            CallbackQueryHandler(button)]


def timeout_seconds(handler: ConversationHandler[BotContext]) -> float | None:
    """The handler's conversation timeout in seconds, if it has one."""
    timeout = handler.conversation_timeout
    if timeout is None:
        return None
    return timeout if isinstance(timeout, float | int) else timeout.total_seconds()


async def end_stale_conversations(app: BotApp, *, now: float | None = None) -> int:
    """Ends each conversation not touched for longer than its timeout and without a running
    timeout job (restored after a restart); how many ended."""
    persistence = app.persistence
    if not isinstance(persistence, SqlitePersistence):
        return 0
    now = time.time() if now is None else now
    ended = 0
    for handlers in app.handlers.values():
        for handler in handlers:
            if not isinstance(handler, ExpiringConversation) or handler.name is None:
                continue
            timeout = timeout_seconds(handler)
            if timeout is None:
                continue
            for key, touched in persistence.conversation_times(handler.name).items():
                if key in handler.timeout_jobs or touched + timeout > now:
                    continue
                handler.end(key)
                ended += 1
                chat_id, user_id = (int(part) for part in key[:2])
                log.info("Conversation %s of chat %d ended: untouched for %.0f s (restart)",
                         handler.name, chat_id, now - touched)
                deps: Deps = app.bot_data[DEPS_KEY]
                owner = await users.get_user(deps.db, user_id)
                with i18n.speaking(deps.languages.of_user(owner)):
                    await handler.on_expiry(app, chat_id, user_id)
    if ended:
        await app.update_persistence()
    return ended
