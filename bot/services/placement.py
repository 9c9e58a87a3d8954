"""Placing an order, the one way it is done (the wizard today; mass order and reorder next).

    draft_id = await save_draft(deps, account, owner_id, service, form, values, currency)
    outcome = await place(deps, account, owner_id, draft_id)

`place` is exactly once by construction: the draft is claimed atomically in SQLite (one winner
among double taps, old summaries and racing taps), then the one `add` request goes out, then
the panel's id is stored — with nothing in between that could fail or wait on Telegram. So:

- the panel refused (or was never reached): the draft is marked failed and may be confirmed
  again (`Refused`);
- no clear answer came (timeout, a 5xx, a garbled answer): "outcome unknown", never retried
  (`Unknown`); the owner settles it from the order's card (`link_unknown`, `not_placed`);
- the panel placed it but storing the id failed: the id and the local order are logged at
  ERROR for an operator to reconcile, and the user is shown the id (`Placed(stored=False)`);
- the bot died between the claim and the answer: at the next start the order becomes
  "outcome unknown" and its owner is told (`release_interrupted`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass

from bot import metrics
from bot.deps import Deps
from bot.panel.errors import OutcomeUnknown, PanelClientError
from bot.panel.models import ItemError, OrderStatus, Service
from bot.service_types import OrderForm
from bot.services.accounts import Account
from bot.services.notices import interrupted_notice
from bot.services.tracking import record_statuses
from storage import orders
from storage.orders import Order

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Placed:
    """The panel took the order; `stored` is False when its id could not be written down."""

    order_id: int
    panel_order_id: int
    stored: bool = True


@dataclass(frozen=True, slots=True)
class Refused:
    """The panel said no, or could not be reached: nothing was placed; Confirm may be retried."""

    error: PanelClientError


@dataclass(frozen=True, slots=True)
class Unknown:
    """The request went out but no clear answer came: never retried."""

    error: PanelClientError | None = None


@dataclass(frozen=True, slots=True)
class AlreadyKnown:
    """Placed, but the bot already holds an order with that panel id (tracked a moment earlier):
    `mine` when it is this user's, so they keep following it there."""

    panel_order_id: int
    mine: bool


@dataclass(frozen=True, slots=True)
class NotClaimed:
    """The draft is not this user's to send now: already sent (`sent`), or out of date."""

    sent: bool


Outcome = Placed | Refused | Unknown | AlreadyKnown | NotClaimed


async def save_draft(deps: Deps, account: Account, owner_id: int, service: Service,
                     form: OrderForm, values: Mapping[str, str], currency: str, *,
                     draft_id: int | None = None) -> int:
    """Stores the order exactly as it will be sent, with what placing it costs (for
    Subscriptions: the existing posts, charged at once), one draft per form (`draft_id` is
    reused while it is still an unsent draft); the draft's id."""
    return await orders.save_draft(
        deps.db, owner_id=owner_id, account=account.id, panel=account.panel,
        service_id=service.service, service_name=service.name, service_type=service.type,
        rate=service.rate, currency=currency, can_refill=service.refill,
        can_cancel=service.cancel, fields=form.request_fields(service, values),
        quantity=form.quantity(values), cost=form.upfront_cost(service, values),
        draft_id=draft_id,
    )


def _sendable(draft: Order | None, account: Account, owner_id: int) -> bool:
    """Whether this draft may be sent by this user through this account now."""
    return (draft is not None and draft.owner_id == owner_id and draft.account == account.id
            and draft.panel == account.panel and draft.service_id is not None
            and draft.state in ("draft", "failed"))


async def place(deps: Deps, account: Account, owner_id: int, draft_id: int) -> Outcome:
    """Sends a draft to the panel exactly once: claim → `add` → the panel's id stored."""
    db = deps.db
    draft = await orders.get_order(db, draft_id)
    if draft is None or not _sendable(draft, account, owner_id):
        return NotClaimed(sent=await was_sent(deps, draft_id, owner_id))
    assert draft.service_id is not None
    fields = {name: str(value) for name, value in draft.fields.items()}
    if not await orders.claim_order(db, draft_id, owner_id=owner_id):
        return NotClaimed(sent=True)
    # From the claim to the stored id: only the panel request and the database.
    try:
        panel_id = await deps.panel.add(account.key, draft.service_id, fields)
    except OutcomeUnknown as exc:
        metrics.order_outcome("unknown")
        await orders.mark_outcome_unknown(db, draft_id, error=exc.user_message)
        log.warning("Order draft %d: outcome unknown (%s); not retried", draft_id, exc)
        return Unknown(exc)
    except PanelClientError as exc:
        # The panel refused, or no connection was made: certainly not placed.
        metrics.order_outcome("failed")
        await orders.mark_failed(db, draft_id, error=str(exc))
        return Refused(exc)
    except BaseException:
        # A bug or a cancellation, not the panel: the request may have gone out, so it must
        # never be resent.
        metrics.order_outcome("unknown")
        await orders.mark_outcome_unknown(db, draft_id, error="internal error while sending")
        raise
    metrics.order_outcome("placed")
    try:
        await orders.mark_placed(db, draft_id, panel_order_id=panel_id)
    except sqlite3.IntegrityError:
        return await _already_known(deps, account, owner_id, draft_id, panel_id)
    except Exception:
        log.error("RECONCILE: order draft %d (owner %d, account %s) was placed on the panel as "
                  "order %d, but storing that id failed; it will show as 'outcome unknown' "
                  "until linked to %d", draft_id, owner_id, account.id, panel_id, panel_id,
                  exc_info=True)
        return Placed(draft_id, panel_id, stored=False)
    return Placed(draft_id, panel_id)


async def _already_known(deps: Deps, account: Account, owner_id: int, draft_id: int,
                         panel_id: int) -> AlreadyKnown:
    """The draft cannot carry an id the bot already holds: it is closed as "outcome unknown"
    (never claimable, never resent) and the user is told the truth."""
    await orders.mark_outcome_unknown(
        deps.db, draft_id, error=f"placed as panel order {panel_id}, which the bot already had"
    )
    log.warning("Order draft %d placed as panel order %d, already known to the bot",
                draft_id, panel_id)
    existing = await orders.get_order_by_panel_id(deps.db, account=account.id,
                                                  panel=account.panel, panel_order_id=panel_id)
    return AlreadyKnown(panel_id, mine=existing is not None and existing.owner_id == owner_id)


async def was_sent(deps: Deps, draft_id: int, owner_id: int) -> bool:
    """Whether this user's draft has been sent (or is being sent) already."""
    draft = await orders.get_order(deps.db, draft_id)
    return (draft is not None and draft.owner_id == owner_id
            and draft.state in ("claimed", "placed", "unknown"))


async def release_interrupted(deps: Deps) -> list[Order]:
    """At start-up: orders cut off while being sent (the bot died between the claim and the
    panel's answer) become "outcome unknown", and each owner is told how to settle them."""
    released = await orders.release_interrupted_claims(
        deps.db, error="the bot stopped while sending it",
        notices=lambda o: interrupted_notice(o.id, o.owner_id, o.service_name),
    )
    for order in released:
        log.warning("Order draft %d was being sent when the bot stopped: outcome unknown", order.id)
    return released


# --- settling an order whose outcome is unknown -------------------------------------------------


NOT_WAITING = "This order is not waiting to be settled any more."


@dataclass(frozen=True, slots=True)
class Linked:
    """The order is now the panel's order `panel_order_id`, and followed."""

    panel_order_id: int
    status: str


@dataclass(frozen=True, slots=True)
class LinkRefused:
    """Why an id could not be linked (a one-line reason for the user)."""

    reason: str


def _unsettled(order: Order | None, account: Account, owner_id: int) -> bool:
    """Whether this is the user's outcome-unknown order on this account and panel."""
    return (order is not None and order.state == "unknown" and order.owner_id == owner_id
            and order.account == account.id and order.panel == account.panel)


async def link_unknown(deps: Deps, account: Account, owner_id: int, order_id: int,
                       panel_order_id: int) -> Linked | LinkRefused:
    """The user found the order on the panel: the row becomes that order (not a second row),
    after the panel confirmed the id exists on this account, and is followed from now on."""
    db = deps.db
    order = await orders.get_order(db, order_id)
    if not _unsettled(order, account, owner_id):
        return LinkRefused(NOT_WAITING)
    assert order is not None
    known = await orders.get_order_by_panel_id(db, account=account.id, panel=account.panel,
                                               panel_order_id=panel_order_id)
    if known is not None:
        return LinkRefused(f"The bot already follows order {panel_order_id}: it is not this "
                           "one's id.")
    try:
        answers = await deps.panel.statuses(account.key, [panel_order_id])
    except PanelClientError as exc:
        return LinkRefused(f"I could not check that id with the panel: {exc.user_message}")
    seen = answers.get(panel_order_id)
    if not isinstance(seen, OrderStatus):
        why = seen.error if isinstance(seen, ItemError) else "no answer"
        return LinkRefused(f"The panel does not know order {panel_order_id} ({why}).")
    try:
        if not await orders.mark_placed(db, order_id, panel_order_id=panel_order_id):
            return LinkRefused(NOT_WAITING)
    except sqlite3.IntegrityError:
        return LinkRefused(f"The bot already follows order {panel_order_id}: it is not this "
                           "one's id.")
    placed = await orders.get_order(db, order_id)
    assert placed is not None
    await record_statuses(deps, [(placed, seen)])
    log.info("Order %d (outcome unknown) linked to panel order %d", order_id, panel_order_id)
    return Linked(panel_order_id, seen.status)


async def not_placed(deps: Deps, account: Account, owner_id: int, order_id: int) -> bool:
    """The user says the order is not on the panel: it is marked failed (not placed)."""
    order = await orders.get_order(deps.db, order_id)
    if not _unsettled(order, account, owner_id):
        return False
    return await orders.mark_failed(deps.db, order_id, error="not placed (checked by its owner)")

