"""/notify: which order changes the tracker messages you about (every change, final only, off)."""

from __future__ import annotations

from typing import Final, cast

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, TypeHandler

from bot.callbacks import pack, unpack
from bot.deps import BotContext
from bot.handlers.common import answer, esc, remember_user, reply, show
from bot.i18n import N_, _
from bot.keyboards import Button, Keyboard
from storage import users
from storage.users import NOTIFY_MODES, NotifyMode

#: Runs before every other handler group: a user who writes has unblocked the bot.
SEEN_GROUP: Final = -1

#: Each mode's name (a button) and what it means, in English: translate with _() where shown.
LABELS: Final[dict[str, str]] = {
    # i18n: a /notify choice (button): a message for every status change of an order
    "all": N_("Every change"),
    # i18n: a /notify choice (button): a message only when an order ends
    "final": N_("Final only"),
    # i18n: a /notify choice (button): no messages about orders
    "off": N_("Off"),
}
MEANINGS: Final[dict[str, str]] = {
    # i18n: what the /notify choice "Every change" means; the statuses are the panel's words
    "all": N_("every status change of your orders (Pending → In progress → Completed)"),
    # i18n: what the /notify choice "Final only" means; the statuses are the panel's words
    "final": N_("only when an order ends: Completed, Partial, Canceled, or lost"),
    # i18n: what the /notify choice "Off" means
    "off": N_("nothing; you can still look at /orders"),
}


def notify_text(mode: str, *, saved: bool = False) -> str:
    """The /notify message: the current mode and what each choice means."""
    label, meaning = _(LABELS[mode]), _(MEANINGS[mode])
    if saved:
        head = _("Saved. <b>Notifications</b>: {label} – {meaning}.").format(
            label=label, meaning=meaning)
    else:
        head = _("<b>Notifications</b>: {label} – {meaning}.").format(label=label,
                                                                       meaning=meaning)
    lines = [head, ""]
    lines += [f"• <b>{_(LABELS[m])}</b>: {_(MEANINGS[m])}" for m in LABELS]
    lines += ["", _("Refills are reported when they end, unless notifications are off.")]
    return "\n".join(lines)


def notify_markup(mode: str) -> Keyboard:
    """One button per mode, the current one ticked."""
    return Keyboard([[
        Button(("✅ " if m == mode else "") + _(LABELS[m]),
               callback_data=pack("nt", m))
        for m in LABELS
    ]])


async def _current_mode(update: Update, context: BotContext) -> str:
    """The caller's mode, recording them first (a user row holds the preference)."""
    await remember_user(update, context)
    user = update.effective_user
    known = await users.get_user(context.deps.db, user.id) if user is not None else None
    return known.notify if known is not None else "all"


async def notify_command(update: Update, context: BotContext) -> None:
    """Shows the notification mode, or sets it from `/notify all|final|off`."""
    user = update.effective_user
    if user is None:
        return
    mode = await _current_mode(update, context)
    args = context.args or []
    if not args:
        await reply(update, notify_text(mode), notify_markup(mode))
        return
    wanted = args[0].strip().lower()
    if wanted not in NOTIFY_MODES:
        # i18n: all, final and off are what to type after /notify: keep them as they are
        await reply(update, _("Unknown choice “{choice}”: use all, final or off.").format(
            choice=esc(args[0][:30])), notify_markup(mode))
        return
    await users.set_notify(context.deps.db, user.id, cast(NotifyMode, wanted))
    await reply(update, notify_text(wanted, saved=True), notify_markup(wanted))


async def notify_pressed(update: Update, context: BotContext) -> None:
    """A mode button: saves the choice and ticks it."""
    query = update.callback_query
    user = update.effective_user
    if query is None or user is None:
        return
    parts = unpack(query.data)
    wanted = parts[1] if len(parts) == 2 else ""
    if wanted not in NOTIFY_MODES:
        await answer(query, _("This button is no longer valid."))
        return
    await _current_mode(update, context)
    await users.set_notify(context.deps.db, user.id, cast(NotifyMode, wanted))
    # i18n: the answer to a /notify button: the choice just saved
    await answer(query, _("Notifications: {label}").format(label=_(LABELS[wanted])))
    await show(update, notify_text(wanted, saved=True), notify_markup(wanted))


async def user_is_back(update: Update, context: BotContext) -> None:
    """Clears the 'blocked the bot' mark of a user who writes again, so messages resume."""
    user = update.effective_user
    if user is None:
        return
    # Every update passes here: one indexed read, and a write only for a user who is marked.
    # What it read is kept for this update's `remember_user`.
    context.stored_user = await users.user_returns(context.deps.db, user.id)
    context.user_read = True


def handlers() -> list[BaseHandler[Update, BotContext, object]]:
    """This module's handlers."""
    return [
        CommandHandler("notify", notify_command),
        CallbackQueryHandler(notify_pressed, pattern=r"^nt:"),
    ]


def early_handlers() -> list[tuple[BaseHandler[Update, BotContext, object], int]]:
    """Handlers that must run in their own group before all others: (handler, group)."""
    return [(TypeHandler(Update, user_is_back), SEEN_GROUP)]
