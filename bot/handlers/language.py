"""/language: the user picks the language the bot speaks to them, by each language's own name.

Every update is rendered in its user's language (`bot.services.languages`): a handler in the
first group of all sets it before any other runs, so every text after it comes out translated.
"""

from __future__ import annotations

from typing import Final

from telegram import BotCommandScopeChat, Update
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, TypeHandler

from bot import i18n
from bot.callbacks import pack, unpack
from bot.deps import DEPS_KEY, BotContext, Deps
from bot.handlers.common import answer, reply, show
from bot.handlers.start import bot_commands
from bot.i18n import _
from bot.keyboards import Button, Keyboard

#: Runs before every other handler group: the language of the texts of this update.
LANGUAGE_GROUP: Final = -2
AUTO: Final = "auto"  # the button that goes back to Telegram's language


def their_language(update: Update, deps: Deps) -> str:
    """The language of the update's user: chosen, Telegram's, or the default."""
    user = update.effective_user
    if user is None:
        return deps.languages.default
    return deps.languages.of(user.id, user.language_code)


async def speak_their_language(update: object, context: BotContext) -> None:
    """Makes the user's language the one of every text rendered for this update (also for an
    update a job hands over, such as a conversation's timeout)."""
    deps: Deps | None = context.application.bot_data.get(DEPS_KEY)
    if isinstance(update, Update) and deps is not None:
        i18n.set_language(their_language(update, deps))


def language_text(current: str, *, chosen: bool) -> str:
    """The /language message: the language in use, and how it was picked."""
    name = i18n.own_name(current)
    how = (_("you chose it.") if chosen
           else _("it follows your Telegram app's language (or the bot's default)."))
    return _("🌐 <b>Language</b>: {name} – {how}\nPick the language I speak to you:").format(
        name=name, how=how)


def language_markup(current: str, *, chosen: bool) -> Keyboard:
    """Each language by its own name, two per row, the current one ticked; and "automatic"."""
    buttons = [Button(("✅ " if code == current and chosen else "")
                      + i18n.own_name(code), callback_data=pack("lg", code))
               for code in i18n.languages()]
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    rows.append([Button(("✅ " if not chosen else "") + _("Automatic"),
                        callback_data=pack("lg", AUTO))])
    return Keyboard(rows)


async def language_command(update: Update, context: BotContext) -> None:
    """Shows the language in use and the choices."""
    user = update.effective_user
    if user is None:
        return
    chosen = user.id in context.deps.languages.chosen
    current = i18n.language()
    await reply(update, language_text(current, chosen=chosen),
                language_markup(current, chosen=chosen))


async def language_pressed(update: Update, context: BotContext) -> None:
    """A language button: stores the choice and answers in the new language."""
    query = update.callback_query
    user = update.effective_user
    if query is None or user is None:
        return
    parts = unpack(query.data)
    wanted = parts[1] if len(parts) == 2 else ""
    if wanted != AUTO and wanted not in i18n.languages():
        await answer(query, _("This button is no longer valid."))
        return
    deps = context.deps
    await deps.languages.choose(deps.db, user.id, None if wanted == AUTO else wanted)
    current = their_language(update, deps)
    i18n.set_language(current)
    chosen = wanted != AUTO
    await answer(query, _("Language: {name}").format(name=i18n.own_name(current)))
    await show(update, language_text(current, chosen=chosen),
               language_markup(current, chosen=chosen))
    await _menu_for_chat(update, context, reset=not chosen)


async def _menu_for_chat(update: Update, context: BotContext, *, reset: bool) -> None:
    """The command menu of this private chat in the chosen language (Telegram shows the menu of
    the app's language otherwise); back to that one for "automatic"."""
    chat = update.effective_chat
    if chat is None or chat.type != ChatType.PRIVATE:
        return
    scope = BotCommandScopeChat(chat.id)
    try:
        if reset:
            await context.bot.delete_my_commands(scope=scope)
        else:
            await context.bot.set_my_commands(
                bot_commands(shop=context.deps.settings.shop_mode), scope=scope)
    except TelegramError:  # the menu is a convenience: the choice itself is saved
        return


def handlers() -> list[BaseHandler[Update, BotContext, object]]:
    """This module's handlers."""
    return [
        CommandHandler("language", language_command),
        CallbackQueryHandler(language_pressed, pattern=r"^lg:"),
    ]


def early_handlers() -> list[tuple[BaseHandler[Update, BotContext, object], int]]:
    """Handlers that must run in their own group before all others: (handler, group)."""
    return [(TypeHandler(Update, speak_their_language), LANGUAGE_GROUP)]
