"""How orders look in the chat: list pages, the order card and its buttons, long replies split.

Reusable outside the orders handlers: the tracker's notifications can link to a card with
`card_button(order)` (callback data `oc:<local order id>`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from bot import i18n
from bot.callbacks import pack
from bot.i18n import _, ngettext
from bot.keyboards import Button, Keyboard
from bot.money import format_money
from bot.panel.models import SANDBOX_URL, ItemError, OrderStatus
from bot.service_types import form_for
from bot.services.accounts import Account
from bot.services.actions import cancel_refusal, refill_refusal, state_text
from bot.services.notices import status_word
from bot.services.wallet import show
from bot.text import (
    MAX_TEXT,
    NAME_MAX,
    NOTE_MAX,
    WORD_MAX,
    esc,
    esc_short,
    fit,
    note_html,
    shorten,
    units,
)
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
    # i18n: an order not placed yet, by the bot's own number ("bot #12")
    return _("bot #{local_id}").format(local_id=order.id)


def status_text(order: Order) -> str:
    """The order's status as last seen, or where its placement stands (demo orders say so)."""
    text = state_text(order)
    # i18n: an order placed on the demo sandbox; {status} is its status
    return _("{status} · demo").format(status=text) if order.panel == SANDBOX_URL else text


def service_text(order: Order) -> str:
    """The service's name, or a note that the order was placed elsewhere (tracked)."""
    if order.service_name:
        return order.service_name
    # i18n: stands for the service of an order placed on the panel's site and followed here
    return _("placed on the panel's site")


# --- the list ---------------------------------------------------------------------------------

def page_count(total: int) -> int:
    """How many list pages `total` orders fill (at least one)."""
    return max(1, -(-total // PAGE_SIZE))


def list_line(order: Order) -> str:
    """One order in the list (HTML): id, service, status, remains."""
    line = (f"<code>{esc(order_number(order))}</code> · {esc_short(service_text(order), 90)} · "
            f"<b>{esc_short(status_text(order), WORD_MAX)}</b>")
    if order.remains is not None:
        # i18n: what an order has not delivered yet ("remains 40"), in a list of orders
        line += " · " + _("remains {count}").format(count=i18n.number(order.remains))
    return line


def list_text(orders: Sequence[Order], *, page: int, total: int, everyone: bool,
              track: bool = True) -> str:
    """A page of the orders list (HTML); without the /track hint where it is not offered."""
    # i18n: the title of the orders list
    whose = _("All users' orders") if everyone else _("Your orders")
    if total == 0:
        if not track:
            return _("📦 <b>{title}</b>\nNo orders yet. Tap <b>New order</b> to place one."
                     ).format(title=whose)
        return _("📦 <b>{title}</b>\nNo orders yet. Tap <b>New order</b> to place one, or "
                 "/track orders you placed on the panel's site.").format(title=whose)
    header = _("📦 <b>{title}</b> ({total}, newest first · page {page}/{pages})").format(
        title=whose, total=i18n.number(total), page=page + 1, pages=page_count(total))
    lines = [header, *(list_line(order) for order in orders), "",
             _("Tap an order for its card.")]
    return "\n".join(lines)


def _button_label(order: Order) -> str:
    """A list button's text: short enough to read on a phone."""
    name = service_text(order)
    if len(name) > 24:
        name = name[:23] + "…"
    return f"{order_number(order)} · {name} · {status_text(order)}"


def card_button(order: Order, label: str | None = None) -> Button:
    """A button that opens the order's card."""
    return Button(label or _button_label(order), callback_data=pack("oc", order.id))


def list_markup(orders: Sequence[Order], *, page: int, total: int) -> Keyboard:
    """One button per order, then ◀ ▶ between pages and the menu."""
    rows = [[card_button(order)] for order in orders]
    nav: list[Button] = []
    if page > 0:
        nav.append(Button("◀", callback_data=pack("ol", page - 1)))
    if page + 1 < page_count(total):
        nav.append(Button("▶", callback_data=pack("ol", page + 1)))
    if total == 0:
        # i18n: button
        nav.append(Button(_("🛒 New order"), callback_data="cat:0"))
    # i18n: button back to the main menu
    nav.append(Button(_("🏠 Menu"), callback_data="menu"))
    rows.append(nav)
    return Keyboard(rows)


# --- the card ---------------------------------------------------------------------------------

def _field_label(order: Order, name: str) -> str:
    """The wizard's label of a sent field ("Link", a catalog text), else its API name."""
    if order.service_type:
        for spec in form_for(order.service_type).fields:
            if spec.name == name:
                return _(spec.label)
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
        lines.append(_("Paid from the wallet: {amount}").format(
            amount=esc(show(charged, currency))))
        if refunded is not None:
            lines.append(_("Refunded to the wallet: {amount}").format(
                amount=esc(show(refunded, currency))))
        elif order.state in ("unknown", "claimed"):
            lines.append(_("The payment stays held until the shop has checked this order."))
    elif order.price is not None and order.state == "draft":
        lines.append(_("Price: {amount}").format(amount=esc(show(order.price, currency))))
    if panel:
        if order.cost is not None:
            lines.append(_("Panel cost: {amount}").format(
                amount=esc(format_money(order.cost, currency))))
        if order.charge is not None:
            lines.append(_("Panel charge: {amount}").format(
                amount=esc(format_money(order.charge, currency))))
    return lines


def card_text(order: Order, history: Sequence[StatusChange], refills: Sequence[Refill],
              note: str | None = None,
              shop_money: Sequence[str] | None = None, customer: bool = False) -> str:
    """An order's card (HTML): what was sent, what the panel says, and what happened when; in
    shop mode `shop_money` stands for the panel's charge and price (a `customer` is not shown
    the panel's words on why it refused an order: the shop's problems are not theirs)."""
    currency = order.currency or order.service_currency or ""
    lines = [_("🧾 <b>Order {number}</b>").format(number=esc(order_number(order)))]
    if order.service_id is not None:
        # i18n: on an order's card; {service} is the panel's name of the service
        lines.append(_("Service: {service} (id {service_id})").format(
            service=esc_short(service_text(order), NAME_MAX), service_id=order.service_id))
    else:
        lines.append(_("Service: unknown (tracked: placed on the panel's site)"))
    lines.append(_("Status: <b>{status}</b>").format(
        status=esc_short(status_text(order), WORD_MAX)))
    if order.error and not (customer and order.state == "failed"):  # the panel's own words
        # i18n: on an order's card; {note} is what the panel said (its own words) or the bot
        lines.append(_("Note: {note}").format(note=note_html(order.error, NOTE_MAX)))
    currency = shorten(currency, WORD_MAX)
    if shop_money is not None:
        lines.extend(shop_money)
    elif order.charge is not None:
        lines.append(_("Charge: {amount}").format(
            amount=esc(format_money(order.charge, currency))))
    elif order.cost is not None:
        lines.append(_("Price: {amount} (the panel's charge shows once it reports it)").format(
            amount=esc(format_money(order.cost, currency))))
    if order.start_count is not None:
        # i18n: on an order's card: the count (followers, views…) when the panel started it
        lines.append(_("Start count: {count}").format(count=i18n.number(order.start_count)))
    if order.remains is not None:
        # i18n: on an order's card: what the panel has not delivered yet
        lines.append(_("Remains: {count}").format(count=i18n.number(order.remains)))
    if currency:
        lines.append(_("Currency: {currency}").format(currency=esc(currency)))
    if order.service_id is not None:
        # i18n: on an order's card: when it was placed
        lines.append(_("Placed: {time}").format(time=i18n.when(order.created_at)))
    else:
        # i18n: on an order's card: when the bot began to follow an order placed elsewhere
        lines.append(_("Followed since: {time}").format(time=i18n.when(order.created_at)))
    if order.last_checked_at is not None:
        lines.append(_("Last checked: {time}").format(time=i18n.when(order.last_checked_at)))
    if order.fields:
        # i18n: heading on an order's card: the answers sent to the panel
        lines.append("\n" + _("<b>Sent</b>"))
        lines.extend(f"{esc(_field_label(order, name))}: {_field_value(value)}"
                     for name, value in order.fields.items())
    if history:
        # i18n: heading on an order's card
        lines.append("\n" + _("<b>Status history</b>"))
        if len(history) > HISTORY_SHOWN:
            earlier = len(history) - HISTORY_SHOWN
            lines.append(ngettext("… {n} earlier change", "… {n} earlier changes",
                                  earlier).format(n=i18n.number(earlier)))
        for change in history[-HISTORY_SHOWN:]:
            time = i18n.when(change.observed_at)
            status = esc_short(status_word(change.status), WORD_MAX)
            if change.remains is None:
                lines.append(f"{time} · {status}")
            else:
                # i18n: a line of an order's status history; {status} is the panel's status
                lines.append(_("{time} · {status} (remains {count})").format(
                    time=time, status=status, count=i18n.number(change.remains)))
    if refills:
        # i18n: heading on an order's card
        lines.append("\n" + _("<b>Refills</b>"))
        # i18n: a refill on an order's card; {status} is the panel's status of the refill
        lines.extend(_("Refill {refill} · {status} · requested {time}").format(
                         refill=refill.panel_refill_id,
                         status=esc_short(status_word(refill.status), WORD_MAX),
                         time=i18n.when(refill.created_at))
                     for refill in refills[-HISTORY_SHOWN:])
    if note:
        lines.append(f"\n{note}")
    return "\n".join(lines)


def card_markup(order: Order, account: Account,
                refills: Sequence[Refill] = ()) -> Keyboard:
    """The card's buttons: only the actions this order allows now, on the panel in use."""
    rows: list[list[Button]] = []
    here = order.panel == account.panel
    if order.state == "placed" and order.panel_order_id is not None and here:
        # i18n: button on an order's card: ask the panel for its status now
        rows.append([Button(_("🔄 Refresh"), callback_data=pack("oc", order.id, REFRESH))])
    if order.state == "unknown" and here and not account.customer:  # the shop settles it
        rows.append([
            # i18n: button on the card of an order whose outcome is unknown
            Button(_("🔗 It was placed"), callback_data=pack("oc", order.id, LINK)),
            # i18n: button on the card of an order whose outcome is unknown
            Button(_("✖ It was not placed"),
                   callback_data=pack("oc", order.id, NOT_PLACED)),
        ])
    actions: list[Button] = []
    if refill_refusal(order, refills, account) is None:
        # i18n: button on an order's card
        actions.append(Button(_("♻️ Refill"), callback_data=pack("oc", order.id, REFILL)))
    if refills and here:
        # i18n: button on an order's card
        actions.append(Button(_("📋 Refill status"),
                              callback_data=pack("oc", order.id, REFILL_STATUS)))
    if cancel_refusal(order, account) is None:
        # i18n: button on an order's card
        actions.append(Button(_("✖️ Cancel order"),
                              callback_data=pack("oc", order.id, CANCEL)))
    if actions:
        rows.append(actions)
    if order.service_id is not None and here:
        # i18n: button on an order's card: the same order form with the same answers
        rows.append([Button(_("🔁 Order again"),
                            callback_data=pack("oc", order.id, AGAIN))])
    # i18n: button on an order's card: back to the list
    rows.append([Button(_("◀ My orders"), callback_data=pack("ol", 0))])
    return Keyboard(rows)


def confirm_markup(order: Order, action: str) -> Keyboard:
    """Yes / No for a write action on the card (`action` is the confirmed action's code)."""
    if action == REFILL_YES:
        # i18n: button confirming a refill request
        label = _("✅ Yes, refill")
    elif action == CANCEL_YES:
        # i18n: button confirming a cancel request
        label = _("✅ Yes, cancel it")
    else:
        assert action == NOT_PLACED_YES
        # i18n: button confirming that an order whose outcome was unknown was not placed
        label = _("✅ Yes, it was not placed")
    return Keyboard([[
        Button(label, callback_data=pack("oc", order.id, action)),
        # i18n: button: do not do it, back to the order's card
        Button(_("◀ No, back"), callback_data=pack("oc", order.id)),
    ]])


# --- typed ids and long replies -----------------------------------------------------------------

def status_line(panel_id: int, result: OrderStatus | ItemError, *, charge: bool = True) -> str:
    """One id's answer to /status (HTML); without the panel's charge for a shop's customer."""
    if isinstance(result, ItemError):
        return f"<code>{panel_id}</code> · ❌ {esc_short(result.error, NOTE_MAX)}"
    status = esc_short(status_word(result.status), WORD_MAX)
    parts = [f"<code>{panel_id}</code>", f"<b>{status}</b>"]
    if result.remains is not None:
        # i18n: what an order has not delivered yet ("remains 40"), in /status
        parts.append(_("remains {count}").format(count=i18n.number(result.remains)))
    if result.start_count is not None:
        # i18n: the count (followers, views…) when the panel started an order, in /status
        parts.append(_("start {count}").format(count=i18n.number(result.start_count)))
    if result.charge is not None and charge:
        currency = shorten(result.currency, WORD_MAX)
        # i18n: what the panel charged for an order, in /status
        parts.append(_("charge {amount}").format(
            amount=esc(format_money(result.charge, currency))))
    return " · ".join(parts)


def id_list_lines(template: str, ids: Iterable[int], per_line: int = 100) -> list[str]:
    """`template` with the ids in its ``{ids}``, a hundred per line (lines stay far below the
    limit)."""
    ids = list(ids)
    return [template.format(ids=", ".join(map(str, ids[i:i + per_line])))
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
