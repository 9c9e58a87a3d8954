"""The error handler: logs with context, tells the user, never leaks a secret.

What is logged: the exception with its traceback, the update's kind (the command name or the
button's prefix, never a message's text: it may carry a key), the chat and user ids, and where
in the bot it failed. Admins hear about unexpected errors (not a panel or network hiccup, not a
user who blocked the bot), at most one message a minute in all, with the exception's type and
first line, cleaned of every known secret.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path

from telegram import Update
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot import i18n
from bot.deps import DEPS_KEY, BotContext, Deps
from bot.handlers.common import answer
from bot.handlers.language import speak_their_language
from bot.i18n import N_, _, ngettext
from bot.logs import REDACTOR
from bot.panel.errors import PanelClientError
from storage import users

log = logging.getLogger(__name__)

SORRY = N_("Something went wrong on my side.")
CHECK_ORDERS = N_("If you were confirming an order, check /orders before trying again.")
ALERT_INTERVAL = 60.0
LAST_ALERT = "errors.last_alert"
SUPPRESSED = "errors.suppressed"
_ROOT = Path(__file__).resolve().parents[2]


async def on_error(update: object | None, context: BotContext) -> None:
    """Logs an error raised by a handler or a job, then tells the user and the admins."""
    error = context.error
    where = _where(error)
    about = _describe(update, context)
    if _expected(error):
        log.warning("%s (%s, in %s): %s", type(error).__name__, about, where,
                    _first_line(error))
    else:
        log.error("Unexpected error (%s, in %s)", about, where, exc_info=error)
    deps: Deps | None = context.application.bot_data.get(DEPS_KEY)
    if isinstance(update, Update) and not isinstance(error, Forbidden):
        await _tell_user(update, context, error)
    if deps is not None and not _expected(error):
        await _tell_admins(context, deps, error, where)


def _expected(error: BaseException | None) -> bool:
    """Errors that are the weather, not a bug: the panel or Telegram unreachable, a block."""
    if isinstance(error, BadRequest):  # Telegram refused what we sent: that is our bug
        return False
    return isinstance(error, PanelClientError | NetworkError | RetryAfter | Forbidden)


def _first_line(error: BaseException | None) -> str:
    """The exception's message, first line only, without any known secret, clipped."""
    text = str(error).strip().splitlines()[0] if error is not None and str(error).strip() else ""
    return REDACTOR.clean(text)[:200]


def _where(error: BaseException | None) -> str:
    """The handler (outermost function of this project) and where it broke (innermost)."""
    if error is None or error.__traceback__ is None:
        return "?"
    ours = []
    for frame in traceback.extract_tb(error.__traceback__):
        path = Path(frame.filename).resolve()
        if path.is_relative_to(_ROOT) and "site-packages" not in path.parts:
            module = ".".join(path.relative_to(_ROOT).with_suffix("").parts)
            ours.append(f"{module}.{frame.name}:{frame.lineno}")
    if not ours:
        return "?"
    return ours[0] if len(ours) == 1 else f"{ours[0]} → {ours[-1]}"


def _describe(update: object | None, context: BotContext) -> str:
    """Who and what the error happened for: ids and the command or button kind, never text."""
    if update is None:
        job = context.job
        return f"job {job.name}" if job is not None else "no update"
    if not isinstance(update, Update):
        return type(update).__name__
    parts = []
    if update.effective_chat is not None:
        parts.append(f"chat {update.effective_chat.id}")
    if update.effective_user is not None:
        parts.append(f"user {update.effective_user.id}")
    query = update.callback_query
    message = update.effective_message
    if query is not None:
        prefix = (query.data or "").split(":", 1)[0][:8]
        parts.append(f"button {prefix!r}")
    elif message is not None and message.text and message.text.startswith("/"):
        parts.append(f"command {message.text.split()[0][:32]}")
    elif message is not None:
        parts.append("message")
    return ", ".join(parts)


async def _tell_user(update: Update, context: BotContext, error: BaseException | None) -> None:
    """Says something went wrong, and whether anything may have been ordered (in the user's
    language: the error may have come before the handler that sets it ran)."""
    await speak_their_language(update, context)
    sorry = _(SORRY)
    detail = ""
    if isinstance(error, PanelClientError):
        detail = " " + error.user_message
    text = f"{sorry}{detail}\n{_(CHECK_ORDERS)}"
    try:
        await answer(update.callback_query, sorry)
    except TelegramError as exc:
        log.info("Could not answer the button after an error: %s", exc)
    if update.effective_chat is None:
        return
    try:
        await context.bot.send_message(update.effective_chat.id, text)
    except TelegramError as exc:
        log.info("Could not tell the chat about the error: %s", exc)


async def _tell_admins(context: BotContext, deps: Deps, error: BaseException | None,
                       where: str) -> None:
    """One message to each admin, at most once a minute in all (the rest are counted)."""
    now = time.monotonic()
    last = deps.state.get(LAST_ALERT)
    if last is not None and now - last < ALERT_INTERVAL:
        deps.state[SUPPRESSED] = deps.state.get(SUPPRESSED, 0) + 1
        return
    deps.state[LAST_ALERT] = now
    more = deps.state.pop(SUPPRESSED, 0)
    try:
        admins = set(deps.settings.admin_ids) | await users.admin_user_ids(deps.db)
    except Exception:  # the database may be what failed
        admins = set(deps.settings.admin_ids)
    for admin in sorted(admins):
        with i18n.speaking(await _language_of(deps, admin)):  # the admin's, not the user's
            text = _alert_text(error, where, more)
        try:
            await context.bot.send_message(admin, text)
        except TelegramError as exc:
            log.info("Could not alert admin %d: %s", admin, exc)


def _alert_text(error: BaseException | None, where: str, more: int) -> str:
    """The admins' message about an unexpected error (plain text, in the current language)."""
    # i18n: an alert to the admins: {error} is the exception's type, {detail} its first line,
    # {where} the place in the code (module.function:line)
    text = _("⚠️ Unexpected error: {error}: {detail}\nin {where}").format(
        error=type(error).__name__, detail=_first_line(error), where=where)
    if more:
        text += "\n" + ngettext("(+{n} more since the last alert; see the log)",
                                "(+{n} more since the last alert; see the log)", more).format(
            n=more)
    return text


async def _language_of(deps: Deps, user_id: int) -> str:
    """A user's language (chosen, or Telegram's as last seen), or the default when the database
    cannot say (it may be what failed)."""
    try:
        return deps.languages.of_user(await users.get_user(deps.db, user_id))
    except Exception:
        return deps.languages.of(user_id)
