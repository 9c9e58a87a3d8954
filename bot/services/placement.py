"""Placing an order, the one way it is done (the wizard today; mass order and reorder next).

    draft_id = await save_draft(deps, account, owner_id, service, form, values, currency)
    outcome = await place(deps, account, owner_id, draft_id)

(`place` is `prepare`, which reads the draft and says whether this user may send it now, then
`send`; the wizard calls the two itself, to answer Telegram in between.)

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

Shop mode (`Account.customer`): the draft carries the price the customer was quoted
(`bot.services.pricing`), and the claim and the wallet charge are ONE transaction, before the
`add`: not enough in the wallet undoes the claim (`Short`, nothing sent), and of racing
Confirms on the same money exactly one is charged and sent. The panel refused: the charge is
refunded in the transaction that marks the order failed, and a fresh draft of the same order is
made for a retry (`Refused.retry_draft`; the refunded one can never be charged again). "Not
enough funds" or a refused key on the panel is the shop's problem: its admins are alerted in
that same transaction (`Refused.shop_problem`). Outcome unknown: the charge stays held and the
admins are alerted; only an admin settles it (`link_unknown` keeps the charge, `not_placed`
refunds it, in the transaction that marks the order failed). Team mode is unchanged.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from bot import i18n, metrics
from bot.deps import Deps
from bot.i18n import L_, N_, _
from bot.panel.errors import OutcomeUnknown, PanelClientError, PanelError, PanelErrorKind
from bot.panel.models import FINAL_ORDER_STATUSES, ItemError, OrderStatus, Service
from bot.service_types import OrderForm
from bot.services import pricing, shop, wallet
from bot.services.accounts import Account
from bot.services.notices import interrupted_notice
from bot.services.notices import notice as owner_notice
from bot.services.shop import service_value
from bot.services.tracking import record_statuses
from bot.text import esc
from storage import orders, outbox
from storage import wallet as ledger
from storage.db import transaction
from storage.orders import Order
from storage.outbox import Notice

log = logging.getLogger(__name__)


#: Refusals that are the shop's problem, not the customer's: its admins are alerted.
SHOP_PROBLEMS = frozenset({PanelErrorKind.NOT_ENOUGH_FUNDS, PanelErrorKind.INVALID_KEY})


@dataclass(frozen=True, slots=True)
class Paid:
    """Money moved in a customer's wallet for an order: the amount and the balance after."""

    amount: Decimal
    balance: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class Placed:
    """The panel took the order; `stored` is False when its id could not be written down."""

    order_id: int
    panel_order_id: int
    stored: bool = True
    charged: Paid | None = None  # shop: what the wallet paid


@dataclass(frozen=True, slots=True)
class Refused:
    """The panel said no, or could not be reached: nothing was placed; Confirm may be retried
    (shop: with `retry_draft`, after the charge was refunded)."""

    error: PanelClientError
    refund: Paid | None = None
    retry_draft: int | None = None
    shop_problem: bool = False  # shop: the panel's funds or key, not the order: admins told


@dataclass(frozen=True, slots=True)
class Unknown:
    """The request went out but no clear answer came: never retried (shop: charge held)."""

    error: PanelClientError | None = None
    held: Paid | None = None


@dataclass(frozen=True, slots=True)
class AlreadyKnown:
    """Placed, but the bot already holds an order with that panel id (tracked a moment earlier):
    `mine` when it is this user's, so they keep following it there."""

    panel_order_id: int
    mine: bool
    held: Paid | None = None


@dataclass(frozen=True, slots=True)
class NotClaimed:
    """The draft is not this user's to send now: already sent (`sent`), or out of date."""

    sent: bool


@dataclass(frozen=True, slots=True)
class Short:
    """Shop: the wallet holds less than the order's price; nothing was claimed or sent."""

    price: Decimal
    balance: Decimal
    currency: str

    @property
    def missing(self) -> Decimal:
        """How much more the wallet needs."""
        return self.price - self.balance


Outcome = Placed | Refused | Unknown | AlreadyKnown | NotClaimed | Short


async def save_draft(deps: Deps, account: Account, owner_id: int, service: Service,
                     form: OrderForm, values: Mapping[str, str], currency: str, *,
                     draft_id: int | None = None) -> int:
    """Stores the order exactly as it will be sent, with what placing it costs (for
    Subscriptions: the existing posts, charged at once) and a customer's price, one draft per
    form (`draft_id` is reused while it is still an unsent draft); the draft's id."""
    price = None
    if account.customer:
        quote = (await pricing.current(deps)).quote(service, values, currency)
        price = quote.total if quote is not None else None  # not sold: place() refuses it
    return await orders.save_draft(
        deps.db, owner_id=owner_id, account=account.id, panel=account.panel,
        service_id=service.service, service_name=service.name, service_type=service.type,
        rate=service.rate, currency=currency, can_refill=service.refill,
        can_cancel=service.cancel, fields=form.request_fields(service, values),
        quantity=form.quantity(values), cost=form.upfront_cost(service, values),
        draft_id=draft_id, price=price,
    )


async def draft_price(deps: Deps, draft_id: int) -> Decimal | None:
    """The price a draft will charge its customer on Confirm (None: not a customer's)."""
    draft = await orders.get_order(deps.db, draft_id)
    return draft.price if draft is not None else None


def _sendable(draft: Order | None, account: Account, owner_id: int) -> bool:
    """Whether this draft may be sent by this user through this account now."""
    return (draft is not None and draft.owner_id == owner_id and draft.account == account.id
            and draft.panel == account.panel and draft.service_id is not None
            and draft.state in ("draft", "failed"))


@dataclass(frozen=True, slots=True)
class Ready:
    """A draft this user may send now through this account, as read (`prepare`)."""

    account: Account
    draft: Order


async def prepare(deps: Deps, account: Account, owner_id: int,
                  draft_id: int) -> Ready | NotClaimed:
    """Whether this user may send this draft through this account now (one read): `Ready` to
    `send`, or why not. Nothing is claimed yet: `send` claims the draft only as it was read
    (`claim_order(as_read=...)`), so a draft sent meanwhile is sent once, and one rewritten
    meanwhile (Edit) is not sent with the fields and price read before."""
    draft = await orders.get_order(deps.db, draft_id)
    if draft is None or not _sendable(draft, account, owner_id):
        return NotClaimed(sent=_sent(draft, owner_id))
    return Ready(account, draft)


async def place(deps: Deps, account: Account, owner_id: int, draft_id: int) -> Outcome:
    """Sends a draft to the panel exactly once: claim → `add` → the panel's id stored."""
    ready = await prepare(deps, account, owner_id, draft_id)
    return ready if isinstance(ready, NotClaimed) else await send(deps, ready)


async def send(deps: Deps, ready: Ready) -> Outcome:
    """`place` for a draft `prepare` found ready: claim → `add` → the panel's id stored."""
    db, account, draft = deps.db, ready.account, ready.draft
    draft_id, owner_id = draft.id, draft.owner_id
    assert draft.service_id is not None
    fields = {name: str(value) for name, value in draft.fields.items()}
    held: Paid | None = None
    if account.customer:
        claimed = await _claim_and_charge(deps, draft)
        if not isinstance(claimed, Paid):
            return claimed
        held = claimed
    elif not await orders.claim_order(db, draft_id, owner_id=owner_id,
                                      as_read=draft.updated_at):
        return NotClaimed(sent=await was_sent(deps, draft_id, owner_id))
    # From the claim to the stored id: only the panel request and the database.
    try:
        panel_id = await deps.panel.add(account.key, draft.service_id, fields)
    except OutcomeUnknown as exc:
        metrics.order_outcome("unknown")
        await _mark_unknown(deps, draft, exc.msg, held)
        log.warning("Order draft %d: outcome unknown (%s); not retried", draft_id, exc)
        return Unknown(exc, held)
    except PanelClientError as exc:
        # The panel refused, or no connection was made: certainly not placed.
        metrics.order_outcome("failed")
        return await _refused(deps, draft, exc, held)
    except BaseException:
        # A bug or a cancellation, not the panel: the request may have gone out, so it must
        # never be resent.
        metrics.order_outcome("unknown")
        # i18n: an order's note: why its outcome is unknown
        await _mark_unknown(deps, draft, L_("internal error while sending"), held)
        raise
    metrics.order_outcome("placed")
    try:
        await orders.mark_placed(db, draft_id, panel_order_id=panel_id)
    except sqlite3.IntegrityError:
        return await _already_known(deps, account, owner_id, draft, panel_id, held)
    except Exception:
        log.error("RECONCILE: order draft %d (owner %d, account %s) was placed on the panel as "
                  "order %d, but storing that id failed; it will show as 'outcome unknown' "
                  "until linked to %d", draft_id, owner_id, account.id, panel_id, panel_id,
                  exc_info=True)
        return Placed(draft_id, panel_id, stored=False, charged=held)
    return Placed(draft_id, panel_id, charged=held)


async def _claim_and_charge(deps: Deps, draft: Order) -> Paid | Short | NotClaimed:
    """Shop: claims the draft and charges its price to the owner's wallet, in one transaction
    (both or neither)."""
    assert draft.service_id is not None
    if draft.price is None or (await pricing.current(deps)).hidden(draft.service_id):
        return NotClaimed(sent=False)  # made before shop mode, or no longer sold
    try:
        async with transaction(deps.db):
            if not await orders.claim_order(deps.db, draft.id, owner_id=draft.owner_id,
                                            as_read=draft.updated_at):
                return NotClaimed(sent=await was_sent(deps, draft.id, draft.owner_id))
            entry = await wallet.charge_order(deps, draft)
    except wallet.NotEnough as exc:
        return Short(exc.amount, exc.balance, exc.currency)
    except wallet.ShopCurrencyChanged:
        log.error("Order draft %d is in %s, but the wallet of %d holds another currency: not "
                  "sent", draft.id, draft.service_currency, draft.owner_id)
        return NotClaimed(sent=False)
    except wallet.WalletError:  # refunded before: it is retried as a new draft, never again
        return NotClaimed(sent=False)
    return Paid(-entry.amount, entry.balance_after, entry.currency)


def _note(why: i18n.Value) -> str:
    """An order's note as stored: the panel's words as they are, the bot's own as a Msg."""
    return why if isinstance(why, str) else i18n.stored(why)


async def _mark_unknown(deps: Deps, draft: Order, why: i18n.Value,
                        held: Paid | None) -> None:
    """Marks a sent order "outcome unknown" (`why`: the panel's words, or a Msg kept to be
    shown in its reader's language); shop: the charge stays held, admins alerted."""
    async with transaction(deps.db):
        await orders.mark_outcome_unknown(deps.db, draft.id, error=_note(why))
        if held is not None:
            await shop.alert_admins(deps, shop.unknown_for_admins(
                draft.id, draft.owner_id, draft.service_name, held.amount, held.currency, why))


async def _refused(deps: Deps, draft: Order, exc: PanelClientError,
                   held: Paid | None) -> Refused:
    """Marks a refused order failed; shop: refunds it, drafts it again for a retry, and alerts
    the admins when the refusal is the shop's problem — all in one transaction."""
    if held is None:
        await orders.mark_failed(deps.db, draft.id, error=_note(exc.msg))
        return Refused(exc)
    problem = isinstance(exc, PanelError) and exc.kind in SHOP_PROBLEMS
    async with transaction(deps.db):
        await orders.mark_failed(deps.db, draft.id, error=_note(exc.msg))
        booked = await wallet.refund_order(deps, draft.id, why="not placed: refused",
                                           notify=False)
        retry = await orders.copy_as_draft(deps.db, draft.id)
        if problem:
            # i18n: to the shop's admins; {service} is the panel's service name, {error} the
            # panel's own error message
            alert = L_("🛑 <b>The panel refused a customer's order</b> (bot #{number}, "
                       "{service}): {error}. The customer was refunded and told the shop "
                       "cannot take orders right now. Top up the panel balance (or check "
                       "PANEL_KEY).", number=draft.id,
                       service=service_value(draft.service_name),
                       error=esc(exc.text if isinstance(exc, PanelError) else exc))
            await shop.alert_admins(deps, alert)
    assert booked is not None
    refund = Paid(booked.entry.amount, booked.entry.balance_after, booked.entry.currency)
    return Refused(exc, refund, retry, problem)


async def _already_known(deps: Deps, account: Account, owner_id: int, draft: Order,
                         panel_id: int, held: Paid | None = None) -> AlreadyKnown:
    """The draft cannot carry an id the bot already holds: it is closed as "outcome unknown"
    (never claimable, never resent) and the user is told the truth."""
    # i18n: an order's note: why its outcome is unknown
    await _mark_unknown(deps, draft, L_("placed as panel order {number}, which the bot already "
                                        "had", number=panel_id), held)
    log.warning("Order draft %d placed as panel order %d, already known to the bot",
                draft.id, panel_id)
    existing = await orders.get_order_by_panel_id(deps.db, account=account.id,
                                                  panel=account.panel, panel_order_id=panel_id)
    return AlreadyKnown(panel_id, mine=existing is not None and existing.owner_id == owner_id,
                        held=held)


async def was_sent(deps: Deps, draft_id: int, owner_id: int) -> bool:
    """Whether this user's draft has been sent (or is being sent) already."""
    return _sent(await orders.get_order(deps.db, draft_id), owner_id)


def _sent(draft: Order | None, owner_id: int) -> bool:
    """Whether this draft, as read, is this user's and has been sent (or is being sent)."""
    return (draft is not None and draft.owner_id == owner_id
            and draft.state in ("claimed", "placed", "unknown"))


async def release_interrupted(deps: Deps) -> list[Order]:
    """At start-up: orders cut off while being sent (the bot died between the claim and the
    panel's answer) become "outcome unknown", and each owner is told how to settle them."""
    # i18n: an order's note: why its outcome is unknown
    why = L_("the bot stopped while sending it")
    async with transaction(deps.db):
        charged = {o.order_id: o for o in await ledger.charged_orders(
            deps.db, final_statuses=sorted(FINAL_ORDER_STATUSES), states=("claimed",))}

        def notice(order: Order) -> Notice:
            held = charged.get(order.id)
            if held is None:
                return interrupted_notice(order.id, order.owner_id, order.service_name)
            # i18n: opens the sentence "…, so I do not know yet whether your order was placed"
            why = L_("The bot stopped while sending your order of <b>{service}</b>",
                     service=service_value(order.service_name))
            return owner_notice(order.owner_id, shop.unknown_customer_msg(
                held.charge, held.currency, why), {"order": order.id})

        released = await orders.release_interrupted_claims(deps.db, error=_note(why),
                                                           notices=notice)
        for order in released:
            held = charged.get(order.id)
            if held is not None:
                await shop.alert_admins(deps, shop.unknown_for_admins(
                    order.id, order.owner_id, order.service_name, held.charge, held.currency,
                    why))
    for order in released:
        log.warning("Order draft %d was being sent when the bot stopped: outcome unknown", order.id)
    return released


# --- settling an order whose outcome is unknown -------------------------------------------------


NOT_WAITING = N_("This order is not waiting to be settled any more.")


@dataclass(frozen=True, slots=True)
class Linked:
    """The order is now the panel's order `panel_order_id`, and followed."""

    panel_order_id: int
    status: str


@dataclass(frozen=True, slots=True)
class LinkRefused:
    """Why an id could not be linked (a one-line reason for the user, in their language), or
    NOT_WAITING, the catalog text itself (compare with it, then translate it, `_()`)."""

    reason: str


async def _unsettled(deps: Deps, order: Order | None, account: Account, owner_id: int,
                     admin: bool) -> bool:
    """Whether this user may settle this outcome-unknown order on this account and panel: its
    owner; in shop mode an admin, and never a customer (their money hangs on it)."""
    if (order is None or order.state != "unknown" or order.account != account.id
            or order.panel != account.panel or account.customer):
        return False
    if order.owner_id == owner_id:
        return True
    return admin and deps.settings.shop_mode and not account.own


def may_settle(order: Order, account: Account) -> bool:
    """Whether the order's card should offer the settling buttons to this account."""
    return order.state == "unknown" and order.panel == account.panel and not account.customer


async def link_unknown(deps: Deps, account: Account, owner_id: int, order_id: int,
                       panel_order_id: int, *, admin: bool = False) -> Linked | LinkRefused:
    """The user found the order on the panel: the row becomes that order (not a second row),
    after the panel confirmed the id exists on this account, and is followed from now on.
    A customer's charge is kept, and they are told."""
    db = deps.db
    order = await orders.get_order(db, order_id)
    if not await _unsettled(deps, order, account, owner_id, admin):
        return LinkRefused(NOT_WAITING)
    assert order is not None
    known = await orders.get_order_by_panel_id(db, account=account.id, panel=account.panel,
                                               panel_order_id=panel_order_id)
    if known is not None:
        return LinkRefused(_already_followed(panel_order_id))
    try:
        answers = await deps.panel.statuses(account.key, [panel_order_id])
    except PanelClientError as exc:
        # i18n: {error} says what went wrong ("The panel did not answer in time.")
        return LinkRefused(_("I could not check that id with the panel: {error}").format(
            error=exc.user_message))
    seen = answers.get(panel_order_id)
    if not isinstance(seen, OrderStatus):
        # i18n: why the panel said nothing about an order id (in brackets after it)
        why = seen.error if isinstance(seen, ItemError) else _("no answer")
        # i18n: {reason} is the panel's own words, or "no answer"
        return LinkRefused(_("The panel does not know order {number} ({reason}).").format(
            number=panel_order_id, reason=why))
    try:
        async with transaction(db):
            if not await orders.mark_placed(db, order_id, panel_order_id=panel_order_id):
                return LinkRefused(NOT_WAITING)
            if order.owner_id != owner_id:
                # i18n: {service} is the panel's service name, {number} the panel's order id
                placed_msg = L_("✅ Your order of <b>{service}</b> was placed after all: it is "
                                "order <b>{number}</b>. I follow it from now on (see /orders).",
                                service=service_value(order.service_name),
                                number=panel_order_id)
                await outbox.enqueue_notice(db, owner_notice(order.owner_id, placed_msg),
                                            order_id=order_id)
    except sqlite3.IntegrityError:
        return LinkRefused(_already_followed(panel_order_id))
    placed = await orders.get_order(db, order_id)
    assert placed is not None
    await record_statuses(deps, [(placed, seen)])
    log.info("Order %d (outcome unknown) linked to panel order %d", order_id, panel_order_id)
    return Linked(panel_order_id, seen.status)


def _already_followed(panel_order_id: int) -> str:
    """Why an id the bot follows already cannot be linked (in the reader's language)."""
    return _("The bot already follows order {number}: it is not this one's id.").format(
        number=panel_order_id)


async def not_placed(deps: Deps, account: Account, owner_id: int, order_id: int, *,
                     admin: bool = False) -> bool:
    """The user says the order is not on the panel: it is marked failed (not placed), and a
    customer's charge is refunded (they are told) in the same transaction."""
    order = await orders.get_order(deps.db, order_id)
    if not await _unsettled(deps, order, account, owner_id, admin):
        return False
    assert order is not None
    # i18n: an order's note, after its owner or an admin said it was not placed
    note = (L_("not placed (checked by its owner)") if order.owner_id == owner_id
            else L_("not placed (checked by an admin)"))
    async with transaction(deps.db):
        if not await orders.mark_failed(deps.db, order_id, error=_note(note)):
            return False
        # i18n: why a wallet was refunded, after "refunded to your wallet:"
        why = L_("your order of {service} was not placed",
                 service=service_value(order.service_name))
        await wallet.refund_order(deps, order_id, why=why)
    return True

