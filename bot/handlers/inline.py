"""Inline mode: `@bot words` lists matching services, `@bot <order id>` shows one's own order,
an empty query the categories. Switched on in BotFather (/setinline); see the README.

Every answer is personal (`is_personal`): the catalogue depends on the caller's panel account,
and an order is shown only to whom it belongs (`bot.services.sharing`). A service result sends
its card with a button that opens the bot at its order form (a deep link); nothing in a result
acts on anything.
"""

from __future__ import annotations

import logging

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InlineQueryResultsButton,
    InputTextMessageContent,
    LinkPreviewOptions,
    Update,
)
from telegram.constants import ParseMode
from telegram.ext import BaseHandler, InlineQueryHandler

from bot import i18n
from bot.catalog import ServiceIndex
from bot.deps import BotContext
from bot.handlers.catalog import service_card_text, service_line
from bot.handlers.common import esc
from bot.i18n import _, ngettext, number
from bot.keyboards import cut
from bot.money import format_money, parse_whole
from bot.order_views import order_number, service_text, status_text
from bot.panel.errors import PanelClientError
from bot.panel.models import Service
from bot.service_types import Pricing, form_for
from bot.services import actions, pricing, sharing
from bot.services.actions import Caller
from storage.orders import Order

log = logging.getLogger(__name__)

SERVICES_CACHE = 30  # seconds Telegram may reuse an answer of services (for this user only)
ORDER_CACHE = 0  # an order's status changes: never reused
CATEGORY_SAMPLE = 5  # services shown in a category's message
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)

Result = InlineQueryResultArticle


def plain_price(service: Service, currency: str) -> str:
    """The price as plain text (result descriptions are not HTML)."""
    amount = format_money(service.rate, currency)
    if form_for(service.type).pricing is Pricing.PER_PACKAGE:
        # i18n: a service's price in an inline result
        return _("{amount} per package").format(amount=amount)
    # i18n: a service's price (per 1000 units) in an inline result
    return _("{amount} per 1000").format(amount=amount)


def service_result(service: Service, currency: str, bot_username: str) -> Result:
    """A service as an inline result: its card, and a button to its order form in the bot."""
    link = sharing.service_link(bot_username, service.service)
    return InlineQueryResultArticle(
        id=f"s{service.service}",
        title=cut(f"#{service.service} {service.name}", 100),
        description=(f"{plain_price(service, currency)} · "
                     f"{number(service.min)}–{number(service.max)}"),
        input_message_content=InputTextMessageContent(
            service_card_text(service, currency), parse_mode=ParseMode.HTML,
            link_preview_options=NO_PREVIEW),
        # i18n: a button under a service card sent from inline mode
        reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton(_("🛒 Order in the bot"),
                                                                 url=link)]]),
    )


def order_card(order: Order) -> str:
    """An order's status, as sent into a chat (HTML): no history, nothing to act on."""
    lines = [_("🧾 <b>Order {number}</b>").format(number=esc(order_number(order))),
             # i18n: a line of an order card; {service} is the panel's service name
             _("Service: {service}").format(service=esc(service_text(order))),
             # i18n: a line of an order card; {status} is the order's status
             _("Status: <b>{status}</b>").format(status=esc(status_text(order)))]
    if order.remains is not None:
        # i18n: a line of an order card: how many units are still to be delivered
        lines.append(_("Remains: {remains}").format(remains=number(order.remains)))
    if order.start_count is not None:
        # i18n: a line of an order card: the count (followers, views…) when the order started
        lines.append(_("Start count: {count}").format(count=number(order.start_count)))
    if order.quantity is not None:
        # i18n: a line of an order card
        lines.append(_("Quantity: {quantity}").format(quantity=number(order.quantity)))
    link = order.fields.get("link")
    if link:
        # i18n: a line of an order card: the link the order promotes
        lines.append(_("Link: {link}").format(link=esc(cut(str(link), 200))))
    checked = order.last_checked_at or order.updated_at
    # i18n: the last line of an order card: when its status was last checked
    lines.append(_("As of {time}").format(time=i18n.when(checked)))
    return "\n".join(lines)


def order_result(order: Order, bot_username: str) -> Result:
    """The caller's order as an inline result (a status card)."""
    assert order.panel_order_id is not None
    described = [service_text(order)]
    if order.remains is not None:
        # i18n: in an inline result's description, after the service's name
        described.append(_("remains {remains}").format(remains=number(order.remains)))
    return InlineQueryResultArticle(
        id=f"o{order.panel_order_id}",
        # i18n: an inline result's title; {status} is the order's status
        title=_("Order {number} · {status}").format(number=order.panel_order_id,
                                                   status=status_text(order)),
        description=cut(" · ".join(described), 100),
        input_message_content=InputTextMessageContent(
            order_card(order), parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEW),
        reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton(
            # i18n: a button under an order card sent from inline mode
            _("Open in the bot"), url=sharing.order_link(bot_username, order.panel_order_id))]]),
    )


def category_result(index: ServiceIndex, position: int, name: str, count: int) -> Result:
    """A category as an inline result: a few of its services and a button to search it."""
    sample = index.by_category[name][:CATEGORY_SAMPLE]
    # i18n: a category's message from inline mode: its name and how many services it has
    lines = [ngettext("<b>{category}</b>: {n} service", "<b>{category}</b>: {n} services", count)
             .format(category=esc(name), n=number(count)), ""]
    lines += [service_line(service, index.currency) for service in sample]
    if count > len(sample):
        more = count - len(sample)
        # i18n: after the few services of a category that are shown
        lines.append(ngettext("… and {n} more", "… and {n} more", more).format(n=number(more)))
    return InlineQueryResultArticle(
        id=f"c{position}",
        title=cut(name, 100),
        # i18n: an inline result's description: how many services a category has
        description=ngettext("{n} service", "{n} services", count).format(n=number(count)),
        input_message_content=InputTextMessageContent(
            "\n".join(lines), parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEW),
        reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton(
            # i18n: a button under a category's message: search its services inline
            _("🔎 Search these"), switch_inline_query_current_chat=cut(name, 60))]]),
    )


async def catalogue(context: BotContext, caller: Caller, user_id: int) -> ServiceIndex | None:
    """The caller's catalogue: cached, or fetched once (counted by the rate limit)."""
    deps = context.deps
    account = caller.account
    if deps.catalog.cached(account.catalog_key) is None and deps.limiter.try_acquire(user_id) > 0:
        return None
    try:
        index = await deps.catalog.get(account.catalog_key, account.key)
    except PanelClientError as exc:
        log.info("Inline query: catalogue unavailable: %s", exc)
        return None
    if not account.customer:
        return index
    # A shop's customer sees what is sold, at the shop's price (never the panel's rate).
    return pricing.storefront(deps, index, await pricing.current(deps))


async def inline_query(update: Update, context: BotContext) -> None:
    """Answers `@bot …` with services, the caller's order, or the categories."""
    query = update.inline_query
    user = update.effective_user
    if query is None or user is None:
        return
    # i18n: the button above inline results
    open_bot = InlineQueryResultsButton(text=_("Open the bot"), start_parameter="inline")
    caller = await actions.caller_for(context.deps, user.id)
    if caller is None:
        await query.answer([], cache_time=0, is_personal=True, button=InlineQueryResultsButton(
            # i18n: the button above (no) inline results, for someone without access
            text=_("How to get access"), start_parameter="access"))
        return
    username = context.bot.username
    text = query.query or ""
    offset = parse_whole(query.offset) or 0
    order_id = sharing.order_id_query(text)
    if order_id is not None:
        order = await sharing.own_order(context.deps, caller, order_id)
        if order is not None:
            await query.answer([order_result(order, username)], cache_time=ORDER_CACHE,
                               is_personal=True)
            return
    index = await catalogue(context, caller, user.id)
    if index is None:
        await query.answer([], cache_time=0, is_personal=True, button=open_bot)
        return
    results: list[Result]
    next_offset: int | None = None
    if not text.strip():
        results = [category_result(index, i, name, count)
                   for i, (name, count) in enumerate(sharing.top_categories(index))]
    else:
        page, next_offset = sharing.services_page(index, text, offset)
        results = [service_result(s, index.currency, username) for s in page]
    await query.answer(results, cache_time=SERVICES_CACHE, is_personal=True,
                       next_offset=str(next_offset) if next_offset is not None else "",
                       button=open_bot)


def handlers() -> list[BaseHandler[Update, BotContext, object]]:
    """This module's handlers."""
    return [InlineQueryHandler(inline_query)]
