"""What the bot tells an order's owner when something happens to it (HTML texts, no Telegram).

Who hears what (``/notify``): ``all`` every status change; ``final`` only when an order ends
(Completed, Partial, Canceled, Refunded, Failed, or lost); ``off`` nothing. Refills are reported
when they end (Completed or Rejected). The first status seen of an order the bot placed counts
as a change from Pending (the order was placed Pending), so a first "Pending" is not news but a
first "In progress" is; an order followed with /track is only reported from its second status
on, or at once if its first status is already final. Users who blocked the bot get nothing
until they write to it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol

from bot import i18n
from bot.money import format_money
from bot.panel.models import (
    CANCELED,
    COMPLETED,
    FAILED,
    FINAL_ORDER_STATUSES,
    FINAL_REFILL_STATUSES,
    PARTIAL,
    PENDING,
    REFUNDED,
    OrderStatus,
)
from bot.text import NAME_MAX, WORD_MAX, esc, esc_short, shorten
from storage.outbox import Notice
from storage.users import User

_STOPPED_ENDINGS = frozenset({CANCELED, REFUNDED, FAILED})


def notice(chat_id: int, message: i18n.Value, payload: Mapping[str, Any] | None = None) -> Notice:
    """A notification written now and rendered when it is sent, in its reader's language then
    (`message` is a `bot.i18n.Msg`; its English text is kept as the record's text). Buttons in
    ``payload["buttons"]`` may have Msgs as labels (`button`)."""
    data = dict(payload or {})
    data["msg"] = i18n.to_json(message)
    return Notice(chat_id=chat_id, text=i18n.in_language(message, i18n.SOURCE), payload=data)


def button(label: i18n.Value, data: str) -> list[Any]:
    """A notification's button: [label, callback data] (the label rendered when sent)."""
    return [i18n.to_json(label), data]


def rendered(text: str, payload: Mapping[str, Any]) -> str:
    """A queued notification's text in the current language (as written, for one queued before
    notifications were rendered when sent)."""
    if "msg" not in payload:
        return text
    return i18n.render(i18n.from_json(payload["msg"]))


class OrderFacts(Protocol):
    """What a message says about an order (`storage.orders.Order` and `DueOrder` fit)."""

    @property
    def id(self) -> int: ...

    @property
    def owner_id(self) -> int: ...

    @property
    def panel_order_id(self) -> int | None: ...

    @property
    def service_id(self) -> int | None: ...

    @property
    def service_name(self) -> str | None: ...

    @property
    def service_currency(self) -> str | None: ...

    @property
    def status(self) -> str | None: ...


class RefillFacts(Protocol):
    """What a message says about a refill (`storage.refills.DueRefill` fits)."""

    @property
    def order_id(self) -> int: ...

    @property
    def owner_id(self) -> int: ...

    @property
    def panel_refill_id(self) -> int: ...

    @property
    def panel_order_id(self) -> int | None: ...

    @property
    def service_name(self) -> str | None: ...


def exact_money(amount: Decimal, currency: str) -> str:
    """An amount as the panel sent it: every decimal it has (0.27819 USD), at least two."""
    exponent = amount.normalize().as_tuple().exponent
    places = -exponent if isinstance(exponent, int) else 2
    return format_money(amount, currency, places=min(max(places, 2), 10))


def service_title(name: str | None) -> str:
    """" · Instagram Followers" (escaped, clipped), or nothing without a name."""
    return f" · {esc_short(name, NAME_MAX)}" if name else ""


def order_title(order: OrderFacts) -> str:
    """"Order 23501 · Instagram Followers" (HTML-escaped)."""
    return f"Order {order.panel_order_id}{service_title(order.service_name)}"


def describe_change(order: OrderFacts, previous: str | None, seen: OrderStatus, *,
                    charges: bool = True) -> str:
    """The message for a status change, in plain words (HTML); without the panel's charge when
    `charges` is False (a shop's customers: their wallet's refund is a message of its own)."""
    status = seen.status
    moved = (esc_short(status, WORD_MAX) if previous is None
             else f"{esc_short(previous, WORD_MAX)} → {esc_short(status, WORD_MAX)}")
    parts = [f"{order_title(order)}: {moved}"]

    def charged(amount: Decimal) -> str:
        currency = shorten(seen.currency or order.service_currency or "", WORD_MAX)
        return f"charged {esc(exact_money(amount, currency))}"

    if status == PARTIAL:
        if seen.remains is not None:
            parts.append(f"{seen.remains} not delivered")
        if seen.charge is not None and charges:
            parts.append(charged(seen.charge))
    elif status in _STOPPED_ENDINGS:
        if seen.charge is None or seen.charge == 0:
            parts[0] += " (refunded)"
        elif charges:
            parts.append(charged(seen.charge))
    else:
        if seen.start_count is not None and status != PENDING:
            parts.append(f"start {seen.start_count}")
        if status == COMPLETED and seen.charge is not None and charges:
            parts.append(charged(seen.charge))
    return " · ".join(parts)


def listening(user: User | None, *, final: bool) -> bool:
    """Whether the owner wants to hear about a change (their /notify mode; not blocked)."""
    if user is None:
        return True
    if user.blocked or user.notify == "off":
        return False
    return final or user.notify == "all"


def order_notice(order: OrderFacts, seen: OrderStatus, owner: User | None, *,
                 charges: bool = True) -> Notice | None:
    """The notification for an order's new status, or None when nobody should hear of it."""
    final = seen.status in FINAL_ORDER_STATUSES
    if not listening(owner, final=final):
        return None
    previous = order.status
    if previous is None:
        if order.service_id is None and not final:
            return None  # followed with /track: its first status is not a change
        if order.service_id is not None:
            previous = PENDING  # placed by the bot, so placed Pending
        if seen.status == previous:
            return None
    return Notice(chat_id=order.owner_id,
                  text=describe_change(order, previous, seen, charges=charges),
                  payload={"order": order.id})


def lost_notice(order: OrderFacts, owner: User | None) -> Notice | None:
    """The one message saying the panel no longer knows an order."""
    if not listening(owner, final=True):
        return None
    text = (f"{order_title(order)}: the panel no longer knows this order; "
            "I stopped following it.")
    return Notice(chat_id=order.owner_id, text=text, payload={"order": order.id})


def refill_title(refill: RefillFacts) -> str:
    """"Refill 7 of order 23501 · Followers" (HTML)."""
    return (f"Refill {refill.panel_refill_id} of order {refill.panel_order_id}"
            f"{service_title(refill.service_name)}")


def refill_notice(refill: RefillFacts, status: str, owner: User | None) -> Notice | None:
    """The message for a refill that ended (Completed or Rejected)."""
    if status not in FINAL_REFILL_STATUSES or not listening(owner, final=True):
        return None
    return Notice(chat_id=refill.owner_id,
                  text=f"{refill_title(refill)}: {esc_short(status, WORD_MAX)}",
                  payload={"order": refill.order_id})


def lost_refill_notice(refill: RefillFacts, owner: User | None) -> Notice | None:
    """The one message saying the panel no longer knows a refill."""
    if not listening(owner, final=True):
        return None
    return Notice(chat_id=refill.owner_id,
                  text=f"{refill_title(refill)}: the panel no longer knows this refill; I "
                       "stopped following it.",
                  payload={"order": refill.order_id})


def unknown_outcome_text(why: str = "The panel did not answer") -> str:
    """A sent order whose outcome is unknown: not retried, and how to settle it (HTML)."""
    return (f"⚠️ {why}, so I do not know whether the order was placed. "
            "It was <b>not</b> retried, so you will not be charged twice.\n"
            "Check the order list on the panel's website in a few minutes, then open this "
            "order in /orders: tap <b>It was placed</b> and send its id, and I will follow it; "
            "or tap <b>It was not placed</b> and order again with /order.")


def interrupted_notice(order_id: int, owner_id: int, service_name: str | None) -> Notice:
    """The owner's message about an order cut off while it was being sent (a crash)."""
    service = esc_short(service_name or "a service", NAME_MAX)
    why = f"The bot stopped while sending your order of <b>{service}</b>"
    return Notice(chat_id=owner_id, text=unknown_outcome_text(why), payload={"order": order_id})


def unfollowed_notice(owner_id: int, count: int, why: str) -> Notice:
    """Told once: the bot can no longer follow some of the user's orders, and why."""
    what = "your unfinished order" if count == 1 else f"your {count} unfinished orders"
    return Notice(chat_id=owner_id,
                  text=f"⚠️ I can no longer follow {what}: {esc(why)}. You still find "
                       f"{'it' if count == 1 else 'them'} in /orders.")
