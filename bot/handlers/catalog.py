"""The services catalogue: categories, a category's services, search, and a service's card.

Every page is built from the cached ServiceIndex (never a panel call per tap) and edits the
message whose button was tapped. A shop's customers browse the storefront: the same index with
only what is sold, at the customer's price (`bot.services.pricing.storefront`).
Callback data: `cat:<page>`, `cs:<category index>:<page>`,
`sr:<page>` (the query lives in user_data), `svc:<id>[:<where Back goes>]`.
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot.callbacks import int_arg, pack, unpack
from bot.catalog import ServiceIndex
from bot.deps import BotContext
from bot.handlers.common import answer, esc, reply, require_account, show, within_rate_limit
from bot.i18n import N_, _, ngettext, number
from bot.keyboards import Button, Keyboard, button, cut, nav_row, page_of
from bot.money import format_money
from bot.panel.errors import PanelClientError
from bot.panel.models import Service
from bot.service_types import Pricing, form_for
from bot.services import pricing
from bot.services.accounts import Account
from bot.text import NAME_MAX, WORD_MAX, esc_short, shorten

log = logging.getLogger(__name__)

CATEGORIES_PER_PAGE = 10
SERVICES_PER_PAGE = 8
QUERY_MAX = 100
DESC_MAX = 1500
SEARCH_KEY = "catalog_search"

UNREACHABLE = N_("The panel could not be reached, so I cannot show its services. Try again "
                 "soon.")


# --- what a service looks like -------------------------------------------------------------


def price(service: Service, currency: str) -> str:
    """The service's price as the panel means it: per 1000, or per package (HTML)."""
    amount = esc(format_money(service.rate, shorten(currency, WORD_MAX)))
    if form_for(service.type).pricing is Pricing.PER_PACKAGE:
        # i18n: a service's price, for one package
        return _("{price} per package").format(price=amount)
    # i18n: a service's price, for 1000 units (followers, likes…)
    return _("{price} per 1000").format(price=amount)


def service_line(service: Service, currency: str, *, category: bool = False) -> str:
    """One service in a list: id, name, price and bounds (HTML)."""
    where = f" <i>({esc(cut(service.category, 40))})</i>" if category else ""
    return (f"<b>#{service.service}</b> {esc(cut(service.name, 90))}{where}\n"
            f"    {price(service, currency)} · {number(service.min)}–{number(service.max)}")


def yes_no(flag: bool) -> str:
    """A flag as a word."""
    if flag:
        # i18n: a service can be refilled / cancelled (on its card)
        return _("yes")
    # i18n: a service cannot be refilled / cancelled (on its card)
    return _("no")


def service_card_text(service: Service, currency: str) -> str:
    """A service's card: everything the panel says about it (HTML)."""
    lines = [
        f"<b>#{service.service} {esc_short(service.name, NAME_MAX)}</b>",
        # i18n: a line of a service's card; {category} is the panel's category name
        _("Category: {category}").format(category=esc_short(service.category, NAME_MAX)),
        # i18n: a line of a service's card; {type} is the panel's service type ("Default")
        _("Type: {type}").format(type=esc_short(service.type, WORD_MAX)),
        # i18n: a line of a service's card
        _("Price: {price}").format(price=price(service, currency)),
        # i18n: a line of a service's card: the quantities it takes
        _("Order between {low} and {high}").format(low=number(service.min),
                                                   high=number(service.max)),
        # i18n: a line of a service's card; {refill} and {cancel} are "yes" or "no"
        _("Refill: {refill} · Cancel: {cancel}").format(refill=yes_no(service.refill),
                                                        cancel=yes_no(service.cancel)),
    ]
    if service.desc:
        lines += ["", esc_short(service.desc, DESC_MAX)]
    return "\n".join(lines)


# --- pages (pure: text and buttons from the index) ------------------------------------------


Page = tuple[str, Keyboard]


def page_note(page: int, pages: int) -> str:
    """" (page 2/5)" after a list's heading, or nothing when there is only one page."""
    if pages <= 1:
        return ""
    # i18n: after a list's heading: which page of the list this is
    return " " + _("(page {page}/{pages})").format(page=page + 1, pages=pages)


def categories_page(index: ServiceIndex, page: int, note: str = "") -> Page:
    """The categories, CATEGORIES_PER_PAGE at a time, with ◀ ▶ and Back to the menu."""
    names, page, pages = page_of(index.categories, page, CATEGORIES_PER_PAGE)
    first = page * CATEGORIES_PER_PAGE
    rows = [
        [button(f"{name} ({len(index.by_category[name])})", "cs", first + i, 0)]
        for i, name in enumerate(names)
    ]
    rows.append(nav_row(page, pages, lambda p: pack("cat", p)))
    # i18n: a button back to the main menu
    rows.append([Button(_("◀ Menu"), callback_data="menu")])
    head = f"{esc(note)}\n\n" if note else ""
    if not index.services:
        return head + _("The panel lists no services right now."), Keyboard(rows)
    count = len(index.categories)
    # i18n: {services} is how many services there are, in {n} categories; {page} is
    # " (page 1/3)" or nothing
    total = ngettext("<b>Services</b>: {services} in {n} category{page}.",
                     "<b>Services</b>: {services} in {n} categories{page}.", count).format(
        services=number(len(index.services)), n=number(count), page=page_note(page, pages))
    hint = _("Pick a category, or type words to search (a service id works too).")
    return f"{head}{total}\n{hint}", Keyboard(rows)


def category_page(index: ServiceIndex, category: int, page: int) -> Page | None:
    """One category's services, SERVICES_PER_PAGE at a time; None if there is no such category."""
    if not 0 <= category < len(index.categories):
        return None
    name = index.categories[category]
    services, page, pages = page_of(index.by_category[name], page, SERVICES_PER_PAGE)
    count = len(index.by_category[name])
    # i18n: a category's heading; {category} is the panel's category name, {page} is
    # " (page 1/3)" or nothing
    heading = ngettext("<b>{category}</b>: {n} service{page}",
                       "<b>{category}</b>: {n} services{page}", count).format(
        category=esc_short(name, NAME_MAX), n=number(count), page=page_note(page, pages))
    lines = [heading, ""]
    lines += [service_line(s, index.currency) for s in services]
    lines += ["", _("Tap a service for its details.")]
    rows = [[button(f"#{s.service} {s.name}", "svc", s.service, "cs", category, page)]
            for s in services]
    rows.append(nav_row(page, pages, lambda p: pack("cs", category, p)))
    # i18n: a button back to the list of categories
    rows.append([button(_("◀ Categories"), "cat", category // CATEGORIES_PER_PAGE)])
    return "\n".join(lines), Keyboard(rows)


def search_page(index: ServiceIndex, query: str, page: int) -> Page:
    """The services matching every word of `query` (an exact id first), a page at a time."""
    found = index.search(query)
    words = esc(cut(query, QUERY_MAX))
    # i18n: a button back to the list of categories
    back = [button(_("◀ Categories"), "cat", 0)]
    if not found:
        # i18n: {words} is what the user searched for
        text = _("No service matches “{words}”. Try fewer words, or browse the "
                 "categories.").format(words=words)
        return text, Keyboard([back])
    services, page, pages = page_of(found, page, SERVICES_PER_PAGE)
    # i18n: the heading of search results; {words} is what the user searched for, {page} is
    # " (page 1/3)" or nothing
    heading = ngettext("🔎 “{words}”: {n} service{page}", "🔎 “{words}”: {n} services{page}",
                       len(found)).format(words=words, n=number(len(found)),
                                          page=page_note(page, pages))
    lines = [heading, ""]
    lines += [service_line(s, index.currency, category=True) for s in services]
    rows = [[button(f"#{s.service} {s.name}", "svc", s.service, "sr", page)] for s in services]
    rows.append(nav_row(page, pages, lambda p: pack("sr", p)))
    rows.append(back)
    return "\n".join(lines), Keyboard(rows)


def service_page(index: ServiceIndex, service: Service, back: list[str]) -> Page:
    """A service's card with "Order this" and Back (to the page it was picked from)."""
    if back[:1] == ["sr"] and int_arg(back, 1) is not None:
        back_data = pack("sr", int_arg(back, 1))
    elif back[:1] == ["cs"] and int_arg(back, 1) is not None and int_arg(back, 2) is not None:
        back_data = pack("cs", int_arg(back, 1), int_arg(back, 2))
    else:  # no origin given: the service's own category, on the page that shows it
        category = index.categories.index(service.category)
        position = index.by_category[service.category].index(service)
        back_data = pack("cs", category, position // SERVICES_PER_PAGE)
    rows = [
        # i18n: a button under a service's card
        [button(_("🛒 Order this"), "new", service.service),
         # i18n: a button under a service's card: share a link to it
         button(_("🔗 Share"), "sh", service.service)],
        # i18n: a button under a service's card: back to the list it was picked from
        [Button(_("◀ Back"), callback_data=back_data)],
    ]
    return service_card_text(service, index.currency), Keyboard(rows)


# --- handlers -------------------------------------------------------------------------------


async def load_index(update: Update, context: BotContext, retry: str) -> ServiceIndex | None:
    """The catalogue as the caller browses it (cached; a customer's at shop prices); on a
    failure with nothing cached, says so with Retry."""
    account = await require_account(update, context)
    if account is None:
        return None
    index = await index_for(update, context, account, retry)
    if index is None or not account.customer:
        return index
    return pricing.storefront(context.deps, index, await pricing.current(context.deps))


async def index_for(update: Update, context: BotContext, account: Account,
                    retry: str | None, unreachable: str = UNREACHABLE) -> ServiceIndex | None:
    """The account's catalogue; only a first fetch reaches the panel (and counts as one). On a
    failure with nothing cached it says so (`unreachable`, a catalog text: translated here):
    with a Retry button sending `retry`, or (None) as a new message."""
    catalog = context.deps.catalog
    if catalog.cached(account.catalog_key) is None and not await within_rate_limit(update,
                                                                                   context):
        return None
    try:
        return await catalog.get(account.catalog_key, account.key)
    except PanelClientError as exc:
        log.warning("Catalogue of %s unavailable: %s", account.id, exc)
        await answer(update.callback_query)
        if retry is None:
            await reply(update, _(unreachable))
        else:
            # i18n: a button: try again what failed
            markup = Keyboard([[Button(_("🔄 Retry"),
                                       callback_data=retry)]])
            await show(update, _(unreachable), markup)
        return None


async def tapped_service(update: Update, context: BotContext,
                         position: int = 1) -> tuple[ServiceIndex, Service] | None:
    """The catalogue and the service a tapped button names (callback data `x:<id>…`); None
    after answering when it is no longer offered (the categories are shown instead)."""
    query = update.callback_query
    service_id = int_arg(unpack(query.data if query else None), position)
    index = await load_index(update, context, pack("cat", 0))
    if index is None:
        return None
    service = index.by_id.get(service_id) if service_id is not None else None
    if service is None:
        await answer(query, _("That service is no longer offered."))
        await show(update, *categories_page(index, 0))
        return None
    return index, service


async def show_categories(update: Update, context: BotContext) -> None:
    """Shows a page of categories (the menu's "New order", Back, ◀ ▶)."""
    query = update.callback_query
    page = int_arg(unpack(query.data if query else None), 1) or 0
    index = await load_index(update, context, pack("cat", page))
    if index is None:
        return
    await answer(query)
    await show(update, *categories_page(index, page))


async def show_category(update: Update, context: BotContext) -> None:
    """Shows a page of one category's services."""
    query = update.callback_query
    parts = unpack(query.data if query else None)
    category, page = int_arg(parts, 1), int_arg(parts, 2) or 0
    index = await load_index(update, context, pack("cat", 0))
    if index is None:
        return
    await answer(query)
    built = category_page(index, category, page) if category is not None else None
    if built is None:  # the catalogue changed since the button was made, or forged data
        built = categories_page(index, 0, _("The service list has changed: pick the category "
                                            "again."))
    await show(update, *built)


async def show_search_page(update: Update, context: BotContext) -> None:
    """Shows another page of the last search."""
    query = update.callback_query
    page = int_arg(unpack(query.data if query else None), 1) or 0
    index = await load_index(update, context, pack("sr", page))
    if index is None:
        return
    await answer(query)
    words = (context.user_data or {}).get(SEARCH_KEY)
    if not isinstance(words, str) or not words:
        await show(update, *categories_page(index, 0, _("That search has expired: type it "
                                                        "again.")))
        return
    await show(update, *search_page(index, words, page))


async def show_service(update: Update, context: BotContext) -> None:
    """Shows a service's card."""
    query = update.callback_query
    tapped = await tapped_service(update, context)
    if tapped is None:
        return
    index, service = tapped
    await answer(query)
    await show(update, *service_page(index, service, unpack(query.data if query else None)[2:]))


async def search(update: Update, context: BotContext, words: str) -> None:
    """Replies with the first page of services matching `words`."""
    index = await load_index(update, context, pack("sr", 0))
    if index is None:
        return
    words = " ".join(words.split())[:QUERY_MAX]
    if context.user_data is not None:
        context.user_data[SEARCH_KEY] = words
    await reply(update, *search_page(index, words, 0))


async def services_command(update: Update, context: BotContext) -> None:
    """/services shows the categories; /services <words> searches."""
    words = " ".join(context.args or [])
    if words.strip():
        await search(update, context, words)
        return
    index = await load_index(update, context, pack("cat", 0))
    if index is not None:
        await reply(update, *categories_page(index, 0))


async def search_text(update: Update, context: BotContext) -> None:
    """Text typed outside any form is a search of the catalogue."""
    message = update.effective_message
    if message is None or not message.text:
        return
    await search(update, context, message.text)


def handlers() -> list[BaseHandler[Update, BotContext, object]]:
    """This module's handlers."""
    return [
        CommandHandler("services", services_command),
        CallbackQueryHandler(show_categories, pattern=r"^cat:"),
        CallbackQueryHandler(show_category, pattern=r"^cs:"),
        CallbackQueryHandler(show_search_page, pattern=r"^sr:"),
        CallbackQueryHandler(show_service, pattern=r"^svc:"),
        # Any other plain text in a private chat: the order wizard (registered earlier) takes
        # its answers first, so what reaches this handler is a search.
        MessageHandler(filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND, search_text),
    ]
