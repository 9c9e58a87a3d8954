"""How orders look in the chat: list pages, the order card and its buttons, long replies split.

Reusable outside the orders handlers: the tracker's notifications can link to a card with
`card_button(order)` (callback data `oc:<local order id>`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.callbacks import pack
from bot.money import format_money
from bot.panel.models import SANDBOX_URL, ItemError, OrderStatus
from bot.service_types import form_for
from bot.services.accounts import Account
from bot.services.actions import cancel_refusal, refill_refusal, state_text
from bot.services.wallet import show
from bot.text import MAX_TEXT, NAME_MAX, NOTE_MAX, WORD_MAX, esc, esc_short, fit, shorten, units
from storage.orders import Order, StatusChange
from storage.refills import Refill

PAGE_SIZE = 10
HISTORY_SHOWN = 12  # the newest status changes on a card; older ones are summarised
FIELD_CHARS = 300  # a sent field (comments, keywords…) is shortened on the card beyond this

# Actions of a card (callback data `oc:<local id>:<action>`).
REFRESH, REFILL, REFILL_YES, REFILL_STATUS, CANCEL, CANCEL_YES = "r", "rf", "rfy", "rs", "cx", "cxy"
# An order whose outcome is unknown: link it to the panel's id, or say it was not placed.
LINK, NOT_PLACED, NOT_PLACED_YES = "ln", "np", "npy"
# Order again: the order form of the same service with the same answers (the wizard's).
AGAIN = "ag"


def order_number(order: Order) -> str:
    """The id a user knows an order by: the panel's, or the bot's own before it was placed."""
    if order.panel_order_id is not None:
        return str(order.panel_order_id)
    return f"bot #{order.id}"


def status_text(order: Order) -> str:
    """The order's status as last seen, or where its placement stands (demo orders say so)."""
    text = state_text(order)
    return f"{text} · demo" if order.panel == SANDBOX_URL else text


def service_text(order: Order) -> str:
    """The service's name, or a note that the order was placed elsewhere (tracked)."""
    if order.service_name:
        return order.service_name
    return "placed on the panel's site"


def format_time(at: float) -> str:
    """A stored timestamp as the user reads it (UTC)."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- the list ---------------------------------------------------------------------------------

def page_count(total: int) -> int:
    """How many list pages `total` orders fill (at least one)."""
    return max(1, -(-total // PAGE_SIZE))


def list_line(order: Order) -> str:
    """One order in the list (HTML): id, service, status, remains."""
    line = (f"<code>{esc(order_number(order))}</code> · {esc_short(service_text(order), 90)} · "
            f"<b>{esc_short(status_text(order), WORD_MAX)}</b>")
    if order.remains is not None:
        line += f" · remains {order.remains}"
    return line


def list_text(orders: Sequence[Order], *, page: int, total: int, everyone: bool,
              track: bool = True) -> str:
    """A page of the orders list (HTML); without the /track hint where it is not offered."""
    whose = "All users' orders" if everyone else "Your orders"
    if total == 0:
        if not track:
            return f"📦 <b>{whose}</b>\nNo orders yet. Tap <b>New order</b> to place one."
        return (f"📦 <b>{whose}</b>\nNo orders yet. Tap <b>New order</b> to place one, or "
                "/track orders you placed on the panel's site.")
    header = f"📦 <b>{whose}</b> ({total}, newest first · page {page + 1}/{page_count(total)})"
    lines = [header, *(list_line(order) for order in orders), "", "Tap an order for its card."]
    return "\n".join(lines)


def _button_label(order: Order) -> str:
    """A list button's text: short enough to read on a phone."""
    name = service_text(order)
    if len(name) > 24:
        name = name[:23] + "…"
    return f"{order_number(order)} · {name} · {status_text(order)}"


def card_button(order: Order, label: str | None = None) -> InlineKeyboardButton:
    """A button that opens the order's card."""
    return InlineKeyboardButton(label or _button_label(order), callback_data=pack("oc", order.id))


def list_markup(orders: Sequence[Order], *, page: int, total: int) -> InlineKeyboardMarkup:
    """One button per order, then ◀ ▶ between pages and the menu."""
    rows = [[card_button(order)] for order in orders]
    nav: list[InlineKeyboardButton] = []
    if page > 0:
        nav.append(InlineKeyboardButton("◀", callback_data=pack("ol", page - 1)))
    if page + 1 < page_count(total):
        nav.append(InlineKeyboardButton("▶", callback_data=pack("ol", page + 1)))
    if total == 0:
        nav.append(InlineKeyboardButton("🛒 New order", callback_data="cat:0"))
    nav.append(InlineKeyboardButton("🏠 Menu", callback_data="menu"))
    rows.append(nav)
    return InlineKeyboardMarkup(rows)


# --- the card ---------------------------------------------------------------------------------

def _field_label(order: Order, name: str) -> str:
    """The wizard's label of a sent field ("Link"), else its API name."""
    if order.service_type:
        for spec in form_for(order.service_type).fields:
            if spec.name == name:
                return spec.label
    return name


def _field_value(value: object) -> str:
    """A sent value for the card (HTML), long ones shortened."""
    text = shorten(str(value), FIELD_CHARS)
    if "\n" in text:
        return "\n" + "\n".join(f"   {esc(line)}" for line in text.splitlines())
    return esc(text)


def shop_money_lines(order: Order, paid: tuple[Decimal, Decimal | None] | None, *,
                     panel: bool) -> list[str]:
    """Shop mode: what the wallet paid for the order and got back (HTML); with the panel's
    cost and charge only for an admin (`panel`)."""
    currency = order.service_currency or order.currency or ""
    lines: list[str] = []
    if paid is not None:
        charged, refunded = paid
        lines.append(f"Paid from the wallet: {esc(show(charged, currency))}")
        if refunded is not None:
            lines.append(f"Refunded to the wallet: {esc(show(refunded, currency))}")
        elif order.state in ("unknown", "claimed"):
            lines.append("The payment stays held until the shop has checked this order.")
    elif order.price is not None and order.state == "draft":
        lines.append(f"Price: {esc(show(order.price, currency))}")
    if panel:
        if order.cost is not None:
            lines.append(f"Panel cost: {esc(format_money(order.cost, currency))}")
        if order.charge is not None:
            lines.append(f"Panel charge: {esc(format_money(order.charge, currency))}")
    return lines


def card_text(order: Order, history: Sequence[StatusChange], refills: Sequence[Refill],
              note: str | None = None,
              shop_money: Sequence[str] | None = None, customer: bool = False) -> str:
    """An order's card (HTML): what was sent, what the panel says, and what happened when; in
    shop mode `shop_money` stands for the panel's charge and price (a `customer` is not shown
    the panel's words on why it refused an order: the shop's problems are not theirs)."""
    currency = order.currency or order.service_currency or ""
    lines = [f"🧾 <b>Order {esc(order_number(order))}</b>"]
    if order.service_id is not None:
        lines.append(f"Service: {esc_short(service_text(order), NAME_MAX)} "
                     f"(id {order.service_id})")
    else:
        lines.append("Service: unknown (tracked: placed on the panel's site)")
    lines.append(f"Status: <b>{esc_short(status_text(order), WORD_MAX)}</b>")
    if order.error and not (customer and order.state == "failed"):  # the panel's own words
        lines.append(f"Note: {esc_short(order.error, NOTE_MAX)}")
    currency = shorten(currency, WORD_MAX)
    if shop_money is not None:
        lines.extend(shop_money)
    elif order.charge is not None:
        lines.append(f"Charge: {esc(format_money(order.charge, currency))}")
    elif order.cost is not None:
        lines.append(f"Price: {esc(format_money(order.cost, currency))} (the panel's charge "
                     "shows once it reports it)")
    if order.start_count is not None:
        lines.append(f"Start count: {order.start_count}")
    if order.remains is not None:
        lines.append(f"Remains: {order.remains}")
    if currency:
        lines.append(f"Currency: {esc(currency)}")
    since = "Placed" if order.service_id is not None else "Followed since"
    lines.append(f"{since}: {format_time(order.created_at)}")
    if order.last_checked_at is not None:
        lines.append(f"Last checked: {format_time(order.last_checked_at)}")
    if order.fields:
        lines.append("\n<b>Sent</b>")
        lines.extend(f"{esc(_field_label(order, name))}: {_field_value(value)}"
                     for name, value in order.fields.items())
    if history:
        lines.append("\n<b>Status history</b>")
        if len(history) > HISTORY_SHOWN:
            lines.append(f"… {len(history) - HISTORY_SHOWN} earlier changes")
        for change in history[-HISTORY_SHOWN:]:
            remains = f" (remains {change.remains})" if change.remains is not None else ""
            lines.append(f"{format_time(change.observed_at)} · "
                         f"{esc_short(change.status, WORD_MAX)}{remains}")
    if refills:
        lines.append("\n<b>Refills</b>")
        lines.extend(f"Refill {refill.panel_refill_id} · {esc_short(refill.status, WORD_MAX)} · "
                     f"requested {format_time(refill.created_at)}"
                     for refill in refills[-HISTORY_SHOWN:])
    if note:
        lines.append(f"\n{note}")
    return "\n".join(lines)


def card_markup(order: Order, account: Account,
                refills: Sequence[Refill] = ()) -> InlineKeyboardMarkup:
    """The card's buttons: only the actions this order allows now, on the panel in use."""
    rows: list[list[InlineKeyboardButton]] = []
    here = order.panel == account.panel
    if order.state == "placed" and order.panel_order_id is not None and here:
        rows.append([InlineKeyboardButton("🔄 Refresh", callback_data=pack("oc", order.id,
                                                                           REFRESH))])
    if order.state == "unknown" and here and not account.customer:  # the shop settles it
        rows.append([
            InlineKeyboardButton("🔗 It was placed", callback_data=pack("oc", order.id, LINK)),
            InlineKeyboardButton("✖ It was not placed",
                                 callback_data=pack("oc", order.id, NOT_PLACED)),
        ])
    actions: list[InlineKeyboardButton] = []
    if refill_refusal(order, refills, account) is None:
        actions.append(InlineKeyboardButton("♻️ Refill", callback_data=pack("oc", order.id,
                                                                           REFILL)))
    if refills and here:
        actions.append(InlineKeyboardButton("📋 Refill status",
                                            callback_data=pack("oc", order.id, REFILL_STATUS)))
    if cancel_refusal(order, account) is None:
        actions.append(InlineKeyboardButton("✖️ Cancel order",
                                            callback_data=pack("oc", order.id, CANCEL)))
    if actions:
        rows.append(actions)
    if order.service_id is not None and here:
        rows.append([InlineKeyboardButton("🔁 Order again",
                                          callback_data=pack("oc", order.id, AGAIN))])
    rows.append([InlineKeyboardButton("◀ My orders", callback_data=pack("ol", 0))])
    return InlineKeyboardMarkup(rows)


def confirm_markup(order: Order, action: str) -> InlineKeyboardMarkup:
    """Yes / No for a write action on the card (`action` is the confirmed action's code)."""
    label = {REFILL_YES: "✅ Yes, refill", CANCEL_YES: "✅ Yes, cancel it",
             NOT_PLACED_YES: "✅ Yes, it was not placed"}[action]
    return InlineKeyboardMarkup([[
        InlineKeyboardButton(label, callback_data=pack("oc", order.id, action)),
        InlineKeyboardButton("◀ No, back", callback_data=pack("oc", order.id)),
    ]])


# --- typed ids and long replies -----------------------------------------------------------------

def status_line(panel_id: int, result: OrderStatus | ItemError, *, charge: bool = True) -> str:
    """One id's answer to /status (HTML); without the panel's charge for a shop's customer."""
    if isinstance(result, ItemError):
        return f"<code>{panel_id}</code> · ❌ {esc_short(result.error, NOTE_MAX)}"
    line = f"<code>{panel_id}</code> · <b>{esc_short(result.status, WORD_MAX)}</b>"
    if result.remains is not None:
        line += f" · remains {result.remains}"
    if result.start_count is not None:
        line += f" · start {result.start_count}"
    if result.charge is not None and charge:
        currency = shorten(result.currency, WORD_MAX)
        line += f" · charge {esc(format_money(result.charge, currency))}"
    return line


def id_list_lines(prefix: str, ids: Iterable[int], per_line: int = 100) -> list[str]:
    """`prefix` followed by the ids, a hundred per line (lines stay far below the limit)."""
    ids = list(ids)
    return [f"{prefix}{', '.join(map(str, ids[i:i + per_line]))}"
            for i in range(0, len(ids), per_line)]


def pack_lines(lines: Sequence[str], limit: int = MAX_TEXT) -> list[str]:
    """Lines packed into as few messages as fit Telegram's limit, never splitting a line.

    Lengths are counted on the HTML, which is never shorter than what Telegram counts. A single
    line over the limit (the callers avoid them) is cut on its text (`fit`), never inside a tag
    or an entity.
    """
    messages: list[str] = []
    current = ""
    for line in lines:
        line = fit(line, limit)
        candidate = f"{current}\n{line}" if current else line
        if units(candidate) > limit and current:
            messages.append(current)
            candidate = line
        current = candidate
    if current:
        messages.append(current)
    return messages
