"""Deep links and inline mode, free of Telegram: link payloads, and what a query may show.

Deep links are `https://t.me/<bot>?start=<payload>` (Telegram delivers `/start <payload>`;
a payload is 1–64 of A–Z a–z 0–9 _ -):
  s<service id>   the order form of that service
  o<order id>     the caller's own order card (the panel's order id, as the user knows it)

Inline mode (`@bot words`): the caller's catalogue searched like /services, 50 results a
page; `@bot <order id>`: that order, only when the caller may see it (`Caller.owns`), so an id
of someone else's order shows nothing at all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bot.catalog import ServiceIndex
from bot.deps import Deps
from bot.money import parse_whole
from bot.panel.models import Service
from bot.services.actions import Caller
from storage import orders as order_store
from storage.orders import Order

#: Telegram shows at most 50 inline results per answer.
INLINE_PAGE = 50
QUERY_MAX = 100

_PAYLOAD = re.compile(r"([so])([0-9]{1,18})")


@dataclass(frozen=True, slots=True)
class StartLink:
    """What a deep link's payload names."""

    kind: Literal["service", "order"]
    id: int


def service_link(bot_username: str, service_id: int) -> str:
    """The link that opens the bot at a service's order form."""
    return f"https://t.me/{bot_username}?start=s{service_id}"


def order_link(bot_username: str, panel_order_id: int) -> str:
    """The link that opens the bot at one's own order card."""
    return f"https://t.me/{bot_username}?start=o{panel_order_id}"


def parse_payload(payload: str) -> StartLink | None:
    """The service or order a `/start` payload names; None for anything else."""
    match = _PAYLOAD.fullmatch(payload.strip())
    if match is None:
        return None
    return StartLink("service" if match.group(1) == "s" else "order", int(match.group(2)))


async def own_order(deps: Deps, caller: Caller, panel_order_id: int) -> Order | None:
    """The order the panel knows by this id on the caller's account, if the caller may see it
    (anyone else's is None, exactly as if there were no such order)."""
    account = caller.account
    order = await order_store.get_order_by_panel_id(
        deps.db, account=account.id, panel=account.panel, panel_order_id=panel_order_id)
    return order if order is not None and caller.owns(order) else None


def order_id_query(query: str) -> int | None:
    """The order id an inline query is, when it is one number (`23501` or `#23501`)."""
    text = query.strip().removeprefix("#")
    number = parse_whole(text)
    return number if number else None


def services_page(index: ServiceIndex, query: str,
                  offset: int) -> tuple[Sequence[Service], int | None]:
    """A page of the services matching the query (as /services searches), and the next
    page's offset (None on the last page). A query that is one number is taken as an id: only
    the service of exactly that id, so an order id that is not the caller's shows nothing."""
    number = order_id_query(query)
    if number is not None:
        service = index.by_id.get(number)
        return ([service] if service is not None and offset <= 0 else []), None
    found = index.search(" ".join(query.split())[:QUERY_MAX])
    offset = max(offset, 0)
    page = found[offset : offset + INLINE_PAGE]
    more = offset + INLINE_PAGE < len(found)
    return page, offset + INLINE_PAGE if more else None


def top_categories(index: ServiceIndex) -> list[tuple[str, int]]:
    """The catalogue's categories as /services lists them (at most a page): name, services."""
    return [(name, len(index.by_category[name])) for name in index.categories[:INLINE_PAGE]]
