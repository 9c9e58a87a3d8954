"""Conversations that end after their timeout, also when the bot restarted in between.

PTB's own `conversation_timeout` schedules a JobQueue job on every update of a conversation
(and removes the one before it): on a busy bot that was 4-5 % of its CPU, spent on timers that
almost never fire. It also does not survive a restart: a form (or a wait for a key) restored
from the database would stay open until its user writes again, days later, and that message
would be taken as an answer. So `ExpiringConversation` keeps its timeout itself: it notes when
each conversation last handled an update (in memory; the persistence records when its state was
last written, which is what a restart has), and `end_stale_conversations` (a job every minute
at most, `bot/jobs.py`) ends every conversation untouched for longer than its timeout and tells
its user, in their language, through the outbox (`on_expiry`).
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
    buttons, and that `end_stale_conversations` ends `conversation_timeout` seconds after it
    last handled an update.

    It is built without PTB's "If 'per_message=False', 'CallbackQueryHandler' will not be
    tracked for every message". The warning says the state belongs to the chat, not to the
    message a button is on. That is what these conversations need: their answers are text
    messages, which a per-message conversation cannot take. A button on an older message is
    told apart by the handlers themselves (the wizard compares message ids; the waits stop on
    any button), so the warning is harmless here. Only that warning is silenced, only while
    the handler is built.
    """

    def __init__(self, *args: Any, on_expiry: OnExpiry, conversation_timeout: float,
                 **kwargs: Any) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"If 'per_message=False'",
                                    category=PTBUserWarning)
            super().__init__(*args, **kwargs)  # no PTB timeout: no job per update
        self.on_expiry = on_expiry
        self.expires_after = float(conversation_timeout)
        #: When each conversation last handled an update in this process (unix time).
        self.touched: dict[tuple[int | str, ...], float] = {}

    def check_update(self, update: object) -> Any:
        """PTB's answer, reached the short way when no conversation of this handler is open for
        the update's chat and user: then only an entry point can take it (PTB's own rule), and
        an update that starts none is turned away without PTB's other checks. Every update is
        checked by each conversation registered before the one it belongs to: the four waits
        placed before the order wizard cost ~5 % of the wizard's instructions, and the short
        way saves a third of that (1.7 %, callgrind)."""
        if type(update) is Update and not self.per_message:
            chat, user = update.effective_chat, update.effective_user
            if chat is not None and user is not None:
                key = ((chat.id,) if self.per_chat else ()) + ((user.id,) if self.per_user
                                                                else ())
                if key not in self._conversations:
                    for entry_point in self.entry_points:
                        check = entry_point.check_update(update)
                        if check is not None and check is not False:
                            return super().check_update(update)
                    return None
        return super().check_update(update)

    async def handle_update(self, update: Update, application: Any, check_result: Any,
                            context: BotContext) -> object | None:
        """Handles the update as PTB does, noting the conversation as touched, before (a
        handler waiting on the panel is not ended meanwhile) and after."""
        key = tuple(check_result[1])
        self.touched[key] = time.time()
        try:
            return await super().handle_update(update, application, check_result, context)
        finally:
            self.touched[key] = time.time()

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


async def end_stale_conversations(app: BotApp, *, now: float | None = None) -> int:
    """Ends each conversation untouched for longer than its timeout (by an update in this
    process, or, restored after a restart, by the last write of its state) and says so to its
    user; how many ended."""
    persistence = app.persistence
    if not isinstance(persistence, SqlitePersistence):
        return 0
    now = time.time() if now is None else now
    ended = 0
    for handlers in app.handlers.values():
        for handler in handlers:
            if not isinstance(handler, ExpiringConversation) or handler.name is None:
                continue
            open_ones = persistence.conversation_times(handler.name)
            for key in [key for key in handler.touched if key not in open_ones]:
                del handler.touched[key]  # ended meanwhile
            for key, written in open_ones.items():
                touched = max(written, handler.touched.get(key, 0.0))
                if touched + handler.expires_after > now:
                    continue
                handler.touched.pop(key, None)
                handler.end(key)
                ended += 1
                chat_id, user_id = (int(part) for part in key[:2])
                log.info("Conversation %s of chat %d ended: untouched for %.0f s",
                         handler.name, chat_id, now - touched)
                deps: Deps = app.bot_data[DEPS_KEY]
                owner = await users.get_user(deps.db, user_id)
                with i18n.speaking(deps.languages.of_user(owner)):
                    await handler.on_expiry(app, chat_id, user_id)
    if ended:
        await app.update_persistence()
    return ended
