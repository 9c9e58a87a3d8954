"""What users do to orders they name: status, track, refill, cancel — with who may do what.

Ids typed in commands are the PANEL's order ids; the caller may act on them as
`bot.services.accounts.owns` says:
- with the user's own key, any id on that key: the panel itself refuses ids of other accounts;
- on the operator's shared account, only orders the bot stores for this user (admins: every
  order stored on that account). Other ids are answered "not found" and never sent to the
  panel, so nobody learns about (or spends on) someone else's order.
- /track lets ids in: on the shared account only admins may use it (the panel cannot tell whose
  an order is); with their own key a user may track any id of that key.

Only orders of the panel the bot uses now are sent to it: orders left from demo mode (or from
another panel) stay visible and are refused with a reason. Every status seen is stored through
`tracking.record_statuses`, so the owner hears of each change once. The database is asked a
constant number of times per command, whatever the number of ids. A write (refill, cancel) is
sent once and never retried; an unclear answer is reported as "outcome unknown".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from bot.deps import Deps
from bot.i18n import N_, _
from bot.panel.errors import OutcomeUnknown, PanelClientError, PanelError
from bot.panel.models import (
    COMPLETED,
    FINAL_REFILL_STATUSES,
    PARTIAL,
    SANDBOX_URL,
    CancelResult,
    ItemError,
    OrderStatus,
    RefillResult,
)
from bot.services.accounts import Account, account_for, on_this_panel, owns, role_of
from bot.services.notices import status_word
from bot.services.tracking import record_statuses
from storage import orders as order_store
from storage import refills as refill_store
from storage.orders import Order
from storage.refills import Refill
from storage.users import Role

log = logging.getLogger(__name__)

REFILLABLE = frozenset({COMPLETED, PARTIAL})
TRACK_ADMINS_ONLY = N_("Only the bot's admins can follow orders by id on the shared panel "
                       "account: the panel cannot tell whose an order is.")
# Where an order's placement stands, by its state (the panel's status once it is placed).
_STATES = {
    # i18n: an order's state
    "draft": N_("Draft"),
    # i18n: an order's state: it is being sent to the panel
    "claimed": N_("Being sent"),
    # i18n: an order's state
    "failed": N_("Not placed"),
    # i18n: an order's state: the panel's answer never came
    "unknown": N_("Outcome unknown"),
}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, and through which panel account."""

    user_id: int
    account: Account
    role: Role

    def owns(self, order: Order) -> bool:
        """Whether this caller may see a stored order."""
        return owns(account=self.account, user_id=self.user_id, role=self.role,
                    order_account=order.account, order_owner=order.owner_id)

    def may_act(self, order: Order) -> bool:
        """Whether this caller may send the panel requests about a stored order."""
        return self.owns(order) and on_this_panel(self.account, order)


async def caller_for(deps: Deps, user_id: int) -> Caller | None:
    """The caller with their account and role; None when they have no access."""
    account = await account_for(deps, user_id)
    if account is None:
        return None
    return Caller(user_id, account, await role_of(deps, user_id))


# --- what may be asked of an order --------------------------------------------------------------


def state_text(order: Order) -> str:
    """The order's status as last seen (the panel's word), or where its placement stands (in
    the current language)."""
    if order.state == "placed":
        # i18n: an order's state, before the panel reported a status
        return status_word(order.status) if order.status else _("Placed")
    text = _STATES.get(order.state)
    return order.state if text is None else _(text)


def _elsewhere(order: Order, account: Account) -> str | None:
    """Why an order cannot be sent to the panel in use, or None (a clause: "No refill: …")."""
    if order.state != "placed" or order.panel_order_id is None:
        # i18n: why a refill or cancel is not sent (after "No refill:", "not sent:")
        return _("it was never placed")
    if not on_this_panel(account, order):
        if order.panel == SANDBOX_URL:
            # i18n: why a refill or cancel is not sent (after "No refill:", "not sent:")
            return _("it is a demo order, placed on the sandbox panel")
        # i18n: why a refill or cancel is not sent (after "No refill:", "not sent:")
        return _("it was placed on another panel than the one the bot uses now")
    return None


def refill_refusal(order: Order, refills: Sequence[Refill], account: Account) -> str | None:
    """Why the bot will not ask for a refill of this order, or None when it may (a clause, in
    the current language)."""
    elsewhere = _elsewhere(order, account)
    if elsewhere is not None:
        return elsewhere
    if order.service_refill is False:
        # i18n: why a refill is not sent (after "No refill:")
        return _("its service does not offer refills")
    if order.status not in REFILLABLE:
        # i18n: why a refill is not sent (after "No refill:"); {status} is the panel's status
        return _("a refill is possible once it is Completed or Partial (now {status})").format(
            status=state_text(order))
    running = [refill for refill in refills if not refill.final]
    if running:
        # i18n: why a refill is not sent (after "No refill:"); {status} is the panel's status
        return _("refill {refill} is still {status}").format(
            refill=running[-1].panel_refill_id, status=status_word(running[-1].status))
    return None


def cancel_refusal(order: Order, account: Account) -> str | None:
    """Why the bot will not ask to cancel this order, or None when it may (a clause, in the
    current language)."""
    elsewhere = _elsewhere(order, account)
    if elsewhere is not None:
        return elsewhere
    if order.service_cancel is False:
        # i18n: why a cancel is not sent (after "Cannot cancel:")
        return _("its service does not allow cancelling")
    if order.final:
        # i18n: why a cancel is not sent (after "Cannot cancel:"); {status} is the order's status
        return _("it is already final ({status})").format(status=state_text(order))
    return None


# --- typed ids ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Resolved:
    """Typed panel ids sorted out: what may go to the panel, and what is not the caller's."""

    known: dict[int, Order] = field(default_factory=dict)  # panel id → the caller's order
    ask: list[int] = field(default_factory=list)  # ids that may be sent to the panel
    refused: list[int] = field(default_factory=list)  # answered "not found", never sent


async def resolve(deps: Deps, caller: Caller, ids: Sequence[int]) -> Resolved:
    """Sorts typed panel ids by whether the caller may ask the panel about them (one query)."""
    account = caller.account
    stored = await order_store.get_orders_by_panel_ids(
        deps.db, account=account.id, panel=account.panel, panel_order_ids=ids)
    resolved = Resolved()
    for panel_id in ids:
        order = stored.get(panel_id)
        if order is not None and caller.owns(order):
            resolved.known[panel_id] = order
            resolved.ask.append(panel_id)
        elif order is None and account.own:
            resolved.ask.append(panel_id)  # the user's own key: the panel knows whose it is
        else:
            resolved.refused.append(panel_id)
    return resolved


async def _record(deps: Deps, orders: dict[int, Order],
                  results: dict[int, OrderStatus | ItemError]) -> None:
    """Stores what the panel said about the stored, placed ones among `orders`."""
    await record_statuses(deps, [
        (orders[panel_id], result) for panel_id, result in results.items()
        if isinstance(result, OrderStatus) and panel_id in orders
        and orders[panel_id].state == "placed"
    ])


@dataclass(slots=True)
class StatusReport:
    """The panel's answer per id, and the ids that are not the caller's."""

    results: dict[int, OrderStatus | ItemError]
    refused: list[int]


async def check_statuses(deps: Deps, caller: Caller, ids: Sequence[int]) -> StatusReport:
    """The panel's status of each id the caller may ask about (batched by 100), stored."""
    resolved = await resolve(deps, caller, ids)
    results: dict[int, OrderStatus | ItemError] = {}
    if resolved.ask:
        results = await deps.panel.statuses(caller.account.key, resolved.ask)
    await _record(deps, resolved.known, results)
    return StatusReport(results, resolved.refused)


def track_refusal(caller: Caller) -> str | None:
    """Why the caller may not follow orders by id (in the current language), or None."""
    if caller.account.own or caller.role == "admin":
        return None
    return _(TRACK_ADMINS_ONLY)


@dataclass(slots=True)
class TrackReport:
    """Per id: already followed (its status), now followed (its status), or the panel's error."""

    already: dict[int, str] = field(default_factory=dict)
    tracked: dict[int, str] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    refused: list[int] = field(default_factory=list)


async def track(deps: Deps, caller: Caller, ids: Sequence[int]) -> TrackReport:
    """Starts following orders placed elsewhere under the caller's panel account."""
    assert track_refusal(caller) is None
    account = caller.account
    db = deps.db
    report = TrackReport()
    stored = await order_store.get_orders_by_panel_ids(
        db, account=account.id, panel=account.panel, panel_order_ids=ids)
    ask: list[int] = []
    for panel_id in ids:
        order = stored.get(panel_id)
        if order is None:
            ask.append(panel_id)
        elif caller.owns(order):
            report.already[panel_id] = state_text(order)
        else:
            report.refused.append(panel_id)
    if not ask:
        return report
    results = await deps.panel.statuses(account.key, ask)
    found = [panel_id for panel_id, result in results.items() if isinstance(result, OrderStatus)]
    report.errors = {panel_id: result.error for panel_id, result in results.items()
                     if isinstance(result, ItemError)}
    tracked = await order_store.track_orders(db, owner_id=caller.user_id, account=account.id,
                                             panel=account.panel, panel_order_ids=found)
    mine: dict[int, Order] = {}
    for panel_id in found:
        order = tracked[panel_id]
        if caller.owns(order):
            mine[panel_id] = order
            status = results[panel_id]
            assert isinstance(status, OrderStatus)
            report.tracked[panel_id] = status.status
        else:  # claimed by somebody else a moment ago
            report.refused.append(panel_id)
    await _record(deps, mine, results)
    return report


# --- writes: refill and cancel --------------------------------------------------------------------

WriteKind = Literal["not_sent", "error", "unknown", "refill", "cancel"]


@dataclass(frozen=True, slots=True)
class WriteLine:
    """What became of one id: not sent (why), the panel's error, unknown, or done."""

    kind: WriteKind
    text: str = ""  # the reason or error
    refill_id: int | None = None
    status_now: str | None = None  # after a cancel: what the panel says now


@dataclass(slots=True)
class WriteReport:
    """A line per id that reached the checks, the ids not the caller's, and any unknown."""

    lines: dict[int, WriteLine] = field(default_factory=dict)
    refused: list[int] = field(default_factory=list)

    @property
    def unknown(self) -> bool:
        """Whether the outcome of any request is unknown."""
        return any(line.kind == "unknown" for line in self.lines.values())


async def _orders_for(deps: Deps, caller: Caller, resolved: Resolved,
                      panel_ids: Sequence[int]) -> dict[int, Order]:
    """The stored orders for ids a write reached; ids on the user's own key are tracked."""
    found = {i: resolved.known[i] for i in panel_ids if i in resolved.known}
    new = [i for i in panel_ids if i not in found]
    if new:
        found.update(await order_store.track_orders(
            deps.db, owner_id=caller.user_id, account=caller.account.id,
            panel=caller.account.panel, panel_order_ids=new))
    return found


async def _write(deps: Deps, caller: Caller, ids: Sequence[int], *, refills: bool) -> WriteReport:
    """What refill and cancel share: only the caller's ids → the bot's own checks → one
    (batched) request → a line per id. Raises PanelClientError when the request fails whole."""
    resolved = await resolve(deps, caller, ids)
    report = WriteReport(refused=resolved.refused)
    known_refills = (await refill_store.refills_for_orders(
        deps.db, [order.id for order in resolved.known.values()]) if refills else {})
    send: list[int] = []
    for panel_id in resolved.ask:
        order = resolved.known.get(panel_id)
        reason = None
        if order is not None:
            reason = (refill_refusal(order, known_refills.get(order.id, []), caller.account)
                      if refills else cancel_refusal(order, caller.account))
        if reason is not None:
            report.lines[panel_id] = WriteLine("not_sent", reason)
        else:
            send.append(panel_id)
    if not send:
        return report
    try:
        if refills:
            await _send_refills(deps, caller, resolved, send, report)
        else:
            await _send_cancels(deps, caller, resolved, send, report)
    except OutcomeUnknown:
        report.lines.update((i, WriteLine("unknown")) for i in send)
    return report


async def _request_refills(deps: Deps, caller: Caller, ids: list[int]) -> list[RefillResult]:
    """Refill requests: the single-order form for one id, batches of 100 for more."""
    if len(ids) == 1:
        try:
            refill_id = await deps.panel.refill(caller.account.key, ids[0])
        except PanelError as exc:
            return [RefillResult(ids[0], error=exc.text)]
        return [RefillResult(ids[0], refill=refill_id)]
    return await deps.panel.refills(caller.account.key, ids)


async def _send_refills(deps: Deps, caller: Caller, resolved: Resolved, send: list[int],
                        report: WriteReport) -> None:
    """Requests the refills and stores each refill id."""
    done: dict[int, int] = {}
    for result in await _request_refills(deps, caller, send):
        if result.refill is None:
            report.lines[result.order] = WriteLine("unknown" if result.unknown else "error",
                                                   result.error or "")
        else:
            done[result.order] = result.refill
    orders = await _orders_for(deps, caller, resolved, list(done))
    await refill_store.add_refills(deps.db, [(orders[i].id, r) for i, r in done.items()])
    report.lines.update((i, WriteLine("refill", refill_id=r)) for i, r in done.items())


async def _send_cancels(deps: Deps, caller: Caller, resolved: Resolved, send: list[int],
                        report: WriteReport) -> None:
    """Asks the panel to cancel, then reads back and stores what it did."""
    accepted: list[int] = []
    for result in await deps.panel.cancel(caller.account.key, send):
        if result.ok:
            accepted.append(result.order)
        else:
            report.lines[result.order] = WriteLine("unknown" if result.unknown else "error",
                                                   # i18n: a cancel the panel refused
                                                   result.error or _("not cancelled"))
    orders = await _orders_for(deps, caller, resolved, accepted)
    seen = await settle_cancels(deps, caller, orders)
    report.lines.update((i, WriteLine("cancel", status_now=seen.get(i))) for i in accepted)


async def settle_cancels(deps: Deps, caller: Caller, accepted: dict[int, Order]) -> dict[int, str]:
    """Reads back the status of orders whose cancel the panel accepted, and stores it.

    Recording "Canceled" blindly would mark the order final and stop the tracker, while some
    panels take a while to carry a cancel out: what the panel says now is stored instead (most
    say Canceled at once), and an order still running is followed by the tracker as before.
    """
    if not accepted:
        return {}
    try:
        statuses = await deps.panel.statuses(caller.account.key, list(accepted))
    except PanelClientError as exc:
        log.info("status after cancel not read: %s", type(exc).__name__)
        return {}
    await _record(deps, accepted, statuses)
    return {i: r.status for i, r in statuses.items() if isinstance(r, OrderStatus)}


async def refill_orders(deps: Deps, caller: Caller, ids: Sequence[int]) -> WriteReport:
    """Requests refills of the typed orders (see `_write`)."""
    return await _write(deps, caller, ids, refills=True)


async def cancel_orders(deps: Deps, caller: Caller, ids: Sequence[int]) -> WriteReport:
    """Asks the panel to cancel the typed orders (see `_write`)."""
    return await _write(deps, caller, ids, refills=False)


# --- one order, from its card ---------------------------------------------------------------------


async def refresh(deps: Deps, caller: Caller, order: Order) -> OrderStatus:
    """Asks the panel for one order's status and stores it (raises PanelClientError)."""
    assert order.panel_order_id is not None
    status = await deps.panel.status(caller.account.key, order.panel_order_id)
    await record_statuses(deps, [(order, status)])
    return status


async def refill_one(deps: Deps, caller: Caller, order: Order) -> int:
    """Requests a refill of one order and stores its id (raises PanelClientError)."""
    assert order.panel_order_id is not None
    refill_id = await deps.panel.refill(caller.account.key, order.panel_order_id)
    await refill_store.add_refill(deps.db, order_id=order.id, panel_refill_id=refill_id)
    return refill_id


async def cancel_one(deps: Deps, caller: Caller, order: Order) -> CancelResult:
    """Asks the panel to cancel one order and stores what it says then."""
    assert order.panel_order_id is not None
    results = await deps.panel.cancel(caller.account.key, [order.panel_order_id])
    result = results[0] if results else CancelResult(order.panel_order_id, ok=False)
    if result.ok:
        await settle_cancels(deps, caller, {order.panel_order_id: order})
    return result


async def refill_statuses(deps: Deps, caller: Caller, order: Order,
                          refills: Sequence[Refill]) -> list[str]:
    """Asks the panel about the order's refills and stores them; the per-refill errors (in
    the current language, with the panel's own words)."""
    by_panel_id = {refill.panel_refill_id: refill for refill in refills}
    statuses = await deps.panel.refill_statuses(caller.account.key, list(by_panel_id))
    errors: list[str] = []
    for panel_refill_id, result in statuses.items():
        if isinstance(result, ItemError):
            # i18n: {error} is the panel's own error text about this refill
            errors.append(_("Refill {refill}: {error}").format(refill=panel_refill_id,
                                                               error=result.error))
        else:
            await refill_store.record_refill_status(
                deps.db, by_panel_id[panel_refill_id].id, status=result,
                final=result in FINAL_REFILL_STATUSES)
    return errors
