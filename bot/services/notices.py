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

from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any, Protocol

from bot import i18n
from bot.i18n import L_, N_, Ln_, Msg
from bot.panel.models import (
    CANCELED,
    COMPLETED,
    FAILED,
    FINAL_ORDER_STATUSES,
    FINAL_REFILL_STATUSES,
    IN_PROGRESS,
    PARTIAL,
    PENDING,
    PROCESSING,
    REFUNDED,
    REJECTED,
    OrderStatus,
)
from bot.text import NAME_MAX, WORD_MAX, esc, esc_short, shorten
from storage.outbox import Notice
from storage.users import User

_STOPPED_ENDINGS = frozenset({CANCELED, REFUNDED, FAILED})

#: The statuses the bot knows (`bot.panel.models`' spellings), in the reader's words; a status
#: the bot does not know is shown as the panel wrote it.
STATUS_WORDS: dict[str, str] = {
    # i18n: an order's or a refill's status
    PENDING: N_("Pending"),
    # i18n: an order's or a refill's status
    IN_PROGRESS: N_("In progress"),
    # i18n: an order's or a refill's status
    PROCESSING: N_("Processing"),
    # i18n: an order's or a refill's status
    COMPLETED: N_("Completed"),
    # i18n: an order's status: only part of the quantity was delivered
    PARTIAL: N_("Partial"),
    # i18n: an order's status
    CANCELED: N_("Canceled"),
    # i18n: an order's status
    REFUNDED: N_("Refunded"),
    # i18n: an order's status
    FAILED: N_("Failed"),
    # i18n: a refill's status
    REJECTED: N_("Rejected"),
}


def status_word(status: str) -> str:
    """A status in the current language (plain text: escape it), or the panel's own word."""
    word = STATUS_WORDS.get(status)
    return status if word is None else i18n._(word)


def status_value(status: str) -> i18n.Value:
    """A status for a Msg (HTML): rendered in its reader's language, or the panel's word."""
    word = STATUS_WORDS.get(status)
    return esc_short(status, WORD_MAX) if word is None else L_(word)


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
    """A queued notification's text in the current language: a status change worded from its
    facts (`change_facts`), another message from its Msg (as written, for one queued before
    notifications were rendered when sent)."""
    if "change" in payload:
        return change_text(payload["change"])
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
    return exact_amount(amount, currency).render()


def exact_amount(amount: Decimal, currency: str) -> i18n.Money:
    """`exact_money` to render later, in its reader's language."""
    exponent = amount.normalize().as_tuple().exponent
    places = -exponent if isinstance(exponent, int) else 2
    return i18n.Money(amount, currency, min(max(places, 2), 10))


def service_title(name: str | None) -> str:
    """" · Instagram Followers" (escaped, clipped), or nothing without a name."""
    return f" · {esc_short(name, NAME_MAX)}" if name else ""


def _titled(title: i18n.Msg, name: str | None) -> i18n.Value:
    """A title followed by " · <service name>" when there is a name (the panel's, escaped)."""
    return i18n.Joined([title, esc_short(name, NAME_MAX)]) if name else title


def order_title_msg(order: OrderFacts) -> i18n.Value:
    """"Order 23501 · Instagram Followers" (HTML-escaped), to render in its reader's language."""
    # i18n: the title of a message about an order; {number} is the panel's order id
    return _titled(L_("Order {number}", number=str(order.panel_order_id)), order.service_name)


def describe_change(order: OrderFacts, previous: str | None, seen: OrderStatus, *,
                    charges: bool = True) -> str:
    """The message for a status change, in plain words (HTML), in the current language (see
    `change_text`)."""
    return change_text(change_facts(order, previous, seen, charges=charges))


def change_facts(order: OrderFacts, previous: str | None, seen: OrderStatus, *,
                 charges: bool = True) -> list[Any]:
    """What the message for a status change says, as JSON: the outbox keeps these few facts
    (``payload["change"]``) and the sender words them in its reader's language (`change_text`).
    In order: the panel's order id, the service's name, the previous and the new status, the
    charge (a decimal as text), its currency, what remains, the start count, and whether the
    charge is told (not to a shop's customers: their wallet's refund is a message of its own)."""
    return [order.panel_order_id, order.service_name, previous, seen.status,
            None if seen.charge is None else str(seen.charge),
            seen.currency or order.service_currency or "", seen.remains, seen.start_count,
            charges]


def _status_html(status: str, _: Callable[[str], str]) -> str:
    """A status in the language of `_` (HTML), or the panel's word, clipped and escaped."""
    word = STATUS_WORDS.get(status)
    return esc_short(status, WORD_MAX) if word is None else _(word)


def _charged(charge: str, currency: str) -> str:
    """"charged 0.27 USD": every decimal the panel sent, in the current language."""
    # i18n: what the panel charged for an order ("charged 0.27 USD"), after its status
    return i18n._("charged {amount}").format(
        amount=exact_money(Decimal(charge), esc(shorten(currency, WORD_MAX))))


@lru_cache(maxsize=1024)
def _moved(gettext: Callable[[str], str], previous: str | None, status: str) -> str:
    """"In progress → Partial" (HTML) in the language of `gettext`. Cached, as `_name_html`:
    the tracker words thousands of changes in a cycle, from a handful of statuses and
    services."""
    return (_status_html(status, gettext) if previous is None
            else f"{_status_html(previous, gettext)} → {_status_html(status, gettext)}")


@lru_cache(maxsize=1024)
def _name_html(name: str) -> str:
    """A service's name as a message shows it: clipped, escaped."""
    return esc_short(name, NAME_MAX)


def change_text(facts: Sequence[Any]) -> str:
    """The message for a status change (`change_facts`), in plain words (HTML), in the current
    language. The statuses are the panel's words."""
    _ = i18n.translator()
    number, name, previous, status, charge, currency, remains, start, charges = facts
    moved = _moved(_, previous, status)
    # i18n: the title of a message about an order; {number} is the panel's order id
    title = _("Order {number}").format(number=number)
    if name:
        title = f"{title} · {_name_html(name)}"
    if status in _STOPPED_ENDINGS and (charge is None or Decimal(charge) == 0):
        # i18n: {order} is "Order 23501 · <service>", {change} the panel's status ("A → B")
        return _("{order}: {change} (refunded)").format(order=title, change=moved)
    # i18n: {order} is "Order 23501 · <service>", {change} the panel's status ("A → B")
    head = _("{order}: {change}").format(order=title, change=moved)
    parts = [head]
    if status == PARTIAL:
        if remains is not None:
            # i18n: units of a partial order the panel did not deliver, after its status
            parts.append(i18n.ngettext("{n} not delivered", "{n} not delivered",
                                       remains).format(n=remains))
        if charge is not None and charges:
            parts.append(_charged(charge, currency))
    elif status in _STOPPED_ENDINGS:
        if charges:
            parts.append(_charged(charge, currency))
    else:
        if start is not None and status != PENDING:
            # i18n: the count (of followers, views…) when the panel started the order
            parts.append(_("start {count}").format(count=start))
        if status == COMPLETED and charge is not None and charges:
            parts.append(_charged(charge, currency))
    return head if len(parts) == 1 else " · ".join(parts)


def listening(user: User | None, *, final: bool) -> bool:
    """Whether the owner wants to hear about a change (their /notify mode; not blocked)."""
    if user is None:
        return True
    if user.blocked or user.notify == "off":
        return False
    return final or user.notify == "all"


def order_notices(changes: Iterable[tuple[OrderFacts, OrderStatus, User | None]], *,
                  charges: bool = True) -> list[Notice | None]:
    """The notification of each (order, new status, owner), in order, or None where nobody
    should hear of it. The record's text is English; the sender words the facts for its
    reader (`rendered`)."""
    with i18n.speaking(i18n.SOURCE):  # once for the batch, not once per order
        return [_order_notice(order, seen, owner, charges) for order, seen, owner in changes]


def _order_notice(order: OrderFacts, seen: OrderStatus, owner: User | None,
                  charges: bool) -> Notice | None:
    """One of `order_notices`, its record's text in the current language."""
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
    facts = change_facts(order, previous, seen, charges=charges)
    return Notice(order.owner_id, change_text(facts), {"order": order.id, "change": facts})


def lost_notice(order: OrderFacts, owner: User | None,
                held: Msg | None = None) -> Notice | None:
    """The one message saying the panel no longer knows an order; `held`: what becomes of the
    money a shop's customer paid for it (a sentence)."""
    if not listening(owner, final=True):
        return None
    title = order_title_msg(order)
    if held is None:
        # i18n: {order} is "Order 23501 · <service>"
        text = L_("{order}: the panel no longer knows this order; I stopped following it.",
                  order=title)
    else:
        # i18n: {order} is "Order 23501 · <service>"; {held} is a sentence about the money
        # charged to the customer's wallet for it
        text = L_("{order}: the panel no longer knows this order; I stopped following it. "
                  "{held}", order=title, held=held)
    return notice(order.owner_id, text, {"order": order.id})


def refill_title_msg(refill: RefillFacts) -> i18n.Value:
    """"Refill 7 of order 23501 · Followers" (HTML), to render in its reader's language."""
    # i18n: the title of a message about a refill; {refill} and {number} are the panel's ids
    title = L_("Refill {refill} of order {number}", refill=str(refill.panel_refill_id),
               number=str(refill.panel_order_id))
    return _titled(title, refill.service_name)


def refill_notice(refill: RefillFacts, status: str, owner: User | None) -> Notice | None:
    """The message for a refill that ended (Completed or Rejected)."""
    if status not in FINAL_REFILL_STATUSES or not listening(owner, final=True):
        return None
    # i18n: {refill} is "Refill 7 of order 23501 · <service>", {status} the panel's status
    text = L_("{refill}: {status}", refill=refill_title_msg(refill),
              status=status_value(status))
    return notice(refill.owner_id, text, {"order": refill.order_id})


def lost_refill_notice(refill: RefillFacts, owner: User | None) -> Notice | None:
    """The one message saying the panel no longer knows a refill."""
    if not listening(owner, final=True):
        return None
    # i18n: {refill} is "Refill 7 of order 23501 · <service>"
    text = L_("{refill}: the panel no longer knows this refill; I stopped following it.",
              refill=refill_title_msg(refill))
    return notice(refill.owner_id, text, {"order": refill.order_id})


def unknown_outcome_text(why: str | None = None) -> str:
    """A sent order whose outcome is unknown: not retried, and how to settle it (HTML), in the
    current language; `why` is a clause in the current language ("The panel did not answer")."""
    return unknown_outcome_msg(why).render()


def unknown_outcome_msg(why: i18n.Value | None = None) -> i18n.Msg:
    """`unknown_outcome_text` to render later (`why` a Msg, or a text)."""
    # i18n: why the outcome of an order is unknown (continues ", so I do not know…")
    reason = L_("The panel did not answer") if why is None else why
    # i18n: {why} is a clause such as "The panel did not answer"; the buttons named here are
    # "It was placed" and "It was not placed" on the order's card
    return L_("⚠️ {why}, so I do not know whether the order was placed. "
              "It was <b>not</b> retried, so you will not be charged twice.\n"
              "Check the order list on the panel's website in a few minutes, then open this "
              "order in /orders: tap <b>It was placed</b> and send its id, and I will follow it; "
              "or tap <b>It was not placed</b> and order again with /order.", why=reason)


def interrupted_notice(order_id: int, owner_id: int, service_name: str | None) -> Notice:
    """The owner's message about an order cut off while it was being sent (a crash)."""
    if service_name:
        # i18n: why the outcome of an order is unknown (continues ", so I do not know…")
        why = L_("The bot stopped while sending your order of <b>{service}</b>",
                 service=esc_short(service_name, NAME_MAX))
    else:
        # i18n: why the outcome of an order is unknown (continues ", so I do not know…")
        why = L_("The bot stopped while sending your order of <b>a service</b>")
    return notice(owner_id, unknown_outcome_msg(why), {"order": order_id})


def unfollowed_notice(owner_id: int, count: int, why: i18n.Value) -> Notice:
    """Told once: the bot can no longer follow some of the user's orders, and why (`why` a Msg,
    or an escaped text)."""
    # i18n: {why} is a clause saying why (the panel key is gone…)
    text = Ln_("⚠️ I can no longer follow your unfinished order: {why}. You still find it in "
               "/orders.",
               "⚠️ I can no longer follow your {n} unfinished orders: {why}. You still find "
               "them in /orders.", count, why=why)
    return notice(owner_id, text)
