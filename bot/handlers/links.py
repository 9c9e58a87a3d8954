"""Sharing: a service card's Share button, and the deep link to one's own order card.

(The deep link to a service's order form, `?start=s<id>`, enters the order wizard: it is one
of the wizard's entry points.) What a link names is `bot.services.sharing`.
"""

from __future__ import annotations

from urllib.parse import urlencode

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot.deps import BotContext
from bot.handlers.catalog import tapped_service
from bot.handlers.common import answer, esc, remember_user, reply
from bot.handlers.orders import caller_of, show_card
from bot.i18n import _
from bot.keyboards import Button, Keyboard, cut
from bot.services import sharing


def share_text(service_name: str, service_id: int, link: str) -> str:
    """The message with a service's link (HTML)."""
    return _("🔗 <b>Link to #{service} {name}</b>\n<code>{link}</code>\n\nWhoever opens it gets "
             "this service's order form in the bot (ordering needs access to the bot).").format(
        service=service_id, name=esc(cut(service_name, 80)), link=esc(link))


def share_markup(service_name: str, link: str) -> Keyboard:
    """A button that opens Telegram's "share to a chat" with the link."""
    url = "https://t.me/share/url?" + urlencode({"url": link, "text": cut(service_name, 80)})
    # i18n: a button under a service's link: Telegram's "share to a chat"
    return Keyboard([[Button(_("📤 Send to a chat"), url=url)]])


async def share_service(update: Update, context: BotContext) -> None:
    """"🔗 Share" on a service's card: the link that opens its order form."""
    tapped = await tapped_service(update, context)
    if tapped is None:
        return
    _index, service = tapped
    await answer(update.callback_query)
    link = sharing.service_link(context.bot.username, service.service)
    await reply(update, share_text(service.name, service.service, link),
                share_markup(service.name, link))


async def open_order_link(update: Update, context: BotContext) -> None:
    """A deep link `t.me/<bot>?start=o<order id>`: the caller's own order card, else
    "not found" (exactly as for an id that does not exist)."""
    await remember_user(update, context)
    link = sharing.parse_payload((context.args or [""])[0])
    caller = await caller_of(update, context)
    if caller is None or link is None or link.kind != "order":
        return
    order = await sharing.own_order(context.deps, caller, link.id)
    if order is None:
        # The same words as for an order id that does not exist (`bot.handlers.orders`).
        await reply(update, _("Order not found. See your orders with /orders."))
        return
    await show_card(update, context, caller, order.id)


def handlers() -> list[BaseHandler[Update, BotContext, object]]:
    """This module's handlers (before /start's own: they take /start with a payload)."""
    return [
        CommandHandler("start", open_order_link,
                       filters=filters.Regex(r"^/start(@\w+)?\s+o\d{1,18}\s*$")),
        CallbackQueryHandler(share_service, pattern=r"^sh:"),
    ]
