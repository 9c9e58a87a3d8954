"""Order again: an order's answers put back into its service's form, checked like new ones.

    again = await order_again(deps, caller, index, order_id)   # Again, or why not (a str)
    # again.prefilled.pending is None: the form is complete; show the summary
    # else: ask that field (again.prefilled.reason says why its old answer no longer passes)

Every field comes from the service-type table, so this works for every type: each answer
stored with the order (as it was sent) is parsed again by its field's own check, in the order
the form asks them. An answer the service no longer accepts (a quantity over a new maximum, an
expiry date now past) stops there, and the wizard asks that question with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.catalog import ServiceIndex
from bot.deps import Deps
from bot.panel.models import Service
from bot.service_types import FieldError, FormField, OrderForm, form_for
from bot.services.accounts import on_this_panel
from bot.services.actions import Caller
from storage import orders as order_store
from storage.orders import Order

NOT_FOUND = "Order not found."
TRACKED = ("This order was placed on the panel's site, so I do not know what it asked for: "
           "order its service with /order.")
OTHER_PANEL = ("This order was placed on another panel than the one the bot uses now, so its "
               "service cannot be ordered here.")


@dataclass(frozen=True, slots=True)
class Prefilled:
    """A form filled from earlier answers: what passed, in order, and where it stopped."""

    answers: dict[str, str]  # field name → answer ("" = skipped); unchecked from `pending` on
    history: list[str]  # the fields answered (and checked), in the order the form asks them
    pending: FormField | None = None  # the first field still to answer; None: complete
    reason: str | None = None  # why its earlier answer no longer passes (None: there was none)


def prefill(form: OrderForm, service: Service, previous: Mapping[str, object]) -> Prefilled:
    """Walks the form as the wizard would, answering each field with its earlier answer."""
    answers: dict[str, str] = {}
    history: list[str] = []
    item = form.next_field(service, answers)
    while item is not None:
        old = previous.get(item.name)
        text = "" if old is None else str(old)
        if not text and item.optional:
            value = ""
        elif not text:
            return _stopped(answers, history, item, previous, None)
        else:
            try:
                value = item.parse(text, service, answers)
            except FieldError as exc:
                return _stopped(answers, history, item, previous, str(exc))
        answers[item.name] = value
        history.append(item.name)
        item = form.next_field(service, answers, after=item.name)
    return Prefilled(answers, history)


def _stopped(answers: dict[str, str], history: list[str], item: FormField,
             previous: Mapping[str, object], reason: str | None) -> Prefilled:
    """The form filled up to `item`; the earlier answers of it and the fields after it are
    kept unchecked, so each question offers Keep (the wizard checks them when kept)."""
    kept = {name: str(value) for name, value in previous.items()
            if name not in answers and str(value)}
    return Prefilled({**answers, **kept}, history, item, reason)


@dataclass(frozen=True, slots=True)
class Again:
    """An order to place again: the service as offered now, and the form filled from it."""

    order: Order
    service: Service
    prefilled: Prefilled


async def repeatable(deps: Deps, caller: Caller, order_id: int) -> Order | str:
    """The caller's order that can be ordered again, or why not (a one-line reason)."""
    order = await order_store.get_order(deps.db, order_id)
    if order is None or order.state == "draft" or not caller.owns(order):
        return NOT_FOUND
    if order.service_id is None:
        return TRACKED
    if not on_this_panel(caller.account, order):
        return OTHER_PANEL
    return order


def again(order: Order, index: ServiceIndex) -> Again | str:
    """The order's service as the catalogue offers it now, with the form filled from the
    order's answers; or why it cannot be ordered again."""
    service = index.by_id.get(order.service_id) if order.service_id is not None else None
    if service is None:
        return (f"Service #{order.service_id} ({order.service_name or 'this order’s service'}) "
                "is no longer offered. Browse /services for another.")
    return Again(order, service, prefill(form_for(service.type), service, order.fields))
