"""Customers' wallets: credits and debits, order charges and refunds, and the audit (the rules;
the ledger itself is storage/wallet.py, whose rules the database enforces).

Every booking has a unique reference, so the same event is booked once whatever repeats:

- `credit` / `debit`: an admin's /credit and /debit, and any top-up (a Telegram Stars payment is
  one call: ``credit(deps, user_id, amount, reference=f"stars:{charge_id}")``). The customer is
  told, with the new balance, through the outbox in the same transaction as the entry.
- `charge_order` (``order:<id>:charge``): placement calls it in the transaction that claims the
  draft, before the panel is asked; not enough in the wallet undoes the claim too.
- `refund_order` (``order:<id>:refund``, at most one per order): placement, when the panel
  refused the order or it turned out not to be placed — in the transaction that marks it failed.
- `refund_from_statuses`: inside `tracking.record_statuses`' transaction, so every path that
  sees a status books what it means. The refund follows the FIRST final status the order's
  history holds: Canceled, Refunded or Failed → the full charge; Partial → charge × remains /
  quantity, rounded down to the minor unit and never above the charge; Completed → nothing.
  A status seen again, or a different one later (out of order), changes nothing. A cancel
  request refunds nothing by itself; only the panel's status does. Orders never charged to a
  wallet (team mode, /track) are never refunded.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from bot import i18n
from bot.deps import Deps
from bot.i18n import L_, Ln_, _, ngettext
from bot.money import format_money
from bot.panel.errors import PanelClientError
from bot.panel.models import (
    CANCELED,
    FAILED,
    FINAL_ORDER_STATUSES,
    PARTIAL,
    REFUNDED,
    OrderStatus,
)
from bot.services import notices
from bot.services.accounts import shop_account
from bot.services.notices import service_title, status_value
from bot.services.pricing import minor_digits, round_down
from bot.text import NOTE_MAX, esc, esc_short
from storage import outbox
from storage import wallet as ledger
from storage.db import transaction
from storage.orders import Order
from storage.wallet import ChargedOrder, Entry, EntryKind

log = logging.getLogger(__name__)

#: Statuses that return the whole charge, and the one that returns what was not delivered.
FULL_REFUND = frozenset({CANCELED, REFUNDED, FAILED})
REFUND_STATUSES = FULL_REFUND | {PARTIAL}
MAX_AMOUNT = Decimal(10) ** 12


class WalletError(Exception):
    """A booking that cannot be made; the text is a one-line reason for the user: a `Msg`
    (or text), rendered in the reader's language when shown (``str(exc)``, `msg` for a text
    rendered later)."""

    def __init__(self, msg: i18n.Value) -> None:
        super().__init__(msg)
        self.msg = msg

    def __str__(self) -> str:
        return i18n.render(self.msg)


class NotEnough(WalletError):
    """The wallet holds less than the amount; nothing was booked."""

    def __init__(self, balance: Decimal, amount: Decimal, currency: str) -> None:
        self.balance, self.amount, self.currency = balance, amount, currency
        super().__init__(L_("The wallet holds {balance}, less than {amount}.",
                            balance=i18n.Money(balance, currency),
                            amount=i18n.Money(amount, currency)))

    @property
    def missing(self) -> Decimal:
        """How much more the wallet would need."""
        return self.amount - self.balance


def charge_reference(order_id: int) -> str:
    """The one charge an order can have."""
    return f"order:{order_id}:charge"


def refund_reference(order_id: int) -> str:
    """The one refund an order can have."""
    return f"order:{order_id}:refund"


@dataclass(frozen=True, slots=True)
class Booked:
    """An entry, and whether this call booked it (False: the reference was booked before)."""

    entry: Entry
    new: bool


@dataclass(frozen=True, slots=True)
class Money:
    """A balance and its currency ('' while the shop's currency is not known)."""

    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return format_money(self.amount, self.currency, places=max(2, minor_digits(
            self.currency)))


def show(amount: Decimal, currency: str) -> str:
    """An amount of wallet money as shown: the currency's minor unit, every digit of it."""
    return format_money(amount, currency, places=max(2, minor_digits(currency)))


def money_value(amount: Decimal, currency: str) -> i18n.Money:
    """An amount of wallet money in a text rendered later, as `show` writes it (HTML-safe)."""
    return i18n.Money(amount, esc(currency), places=max(2, minor_digits(currency)))


# --- the shop's currency ------------------------------------------------------------------------


async def shop_currency(deps: Deps) -> str:
    """The currency the shop sells in: its panel's (from the shop's catalogue, cached)."""
    account = shop_account(deps)
    if account is None:
        raise WalletError(L_("The shop has no panel account (PANEL_KEY is not set)."))
    try:
        index = await deps.catalog.get(account.catalog_key, account.key)
    except PanelClientError as exc:
        raise WalletError(L_("The shop's currency cannot be read now: {reason}",
                             reason=exc.user_message)) from None
    if not index.currency:
        raise WalletError(L_("The panel did not say its currency; try again in a minute."))
    return index.currency


async def balance(deps: Deps, user_id: int) -> Money:
    """A wallet's balance (0 in the shop's currency, or in '' when that is unknown now)."""
    last = await ledger.last_entry(deps.db, user_id)
    if last is not None:
        return Money(last.balance_after, last.currency)
    try:
        return Money(Decimal(0), await shop_currency(deps))
    except WalletError:
        return Money(Decimal(0), "")


async def _currency_for(deps: Deps, user_id: int) -> str:
    """The currency of the wallet, or the shop's for a wallet never used."""
    last = await ledger.last_entry(deps.db, user_id)
    return last.currency if last is not None else await shop_currency(deps)


def check_amount(amount: Decimal, currency: str) -> None:
    """Refuses an amount that is not positive, too large, or finer than the minor unit."""
    if not amount.is_finite() or amount <= 0:
        raise WalletError(L_("The amount must be more than zero."))
    if amount >= MAX_AMOUNT:
        raise WalletError(L_("That amount is too large."))
    digits = minor_digits(currency)
    if amount != amount.quantize(Decimal(1).scaleb(-digits)):
        if currency:
            raise WalletError(Ln_("{currency} has {n} decimal at most.",
                                  "{currency} has {n} decimals at most.", digits,
                                  currency=currency))
        raise WalletError(Ln_("The currency has {n} decimal at most.",
                              "The currency has {n} decimals at most.", digits))


# --- what the customer is told ----------------------------------------------------------------


def _note_value(note: str) -> i18n.Value:
    """An entry's note in a Msg: the bot's own (stored) rendered in the reader's language when
    sent, or someone's words escaped."""
    return i18n.from_stored(note) or esc_short(note, NOTE_MAX)


def _credit_text(entry: Entry) -> i18n.Msg:
    """"💰 10.00 USD added to your wallet (note). Balance: …" (HTML, rendered when sent)."""
    balance_now = money_value(entry.balance_after, entry.currency)
    if entry.amount > 0:
        amount = money_value(entry.amount, entry.currency)
        if entry.note:
            return L_("💰 <b>{amount}</b> added to your wallet ({note}). "
                      "Balance: <b>{balance}</b>.",
                      amount=amount, note=_note_value(entry.note), balance=balance_now)
        return L_("💰 <b>{amount}</b> added to your wallet. Balance: <b>{balance}</b>.",
                  amount=amount, balance=balance_now)
    taken = money_value(-entry.amount, entry.currency)
    if entry.note:
        return L_("➖ <b>{amount}</b> taken from your wallet ({note}). "
                  "Balance: <b>{balance}</b>.",
                  amount=taken, note=_note_value(entry.note), balance=balance_now)
    return L_("➖ <b>{amount}</b> taken from your wallet. Balance: <b>{balance}</b>.",
              amount=taken, balance=balance_now)


def _refund_text(entry: Entry, what: i18n.Value) -> i18n.Msg:
    """"↩️ 1.17 USD refunded to your wallet: <what>. Balance: …" (`what` is HTML)."""
    return L_("↩️ <b>{amount}</b> refunded to your wallet: {reason}. "
              "Balance: <b>{balance}</b>.",
              amount=money_value(entry.amount, entry.currency), reason=what,
              balance=money_value(entry.balance_after, entry.currency))


async def _tell(deps: Deps, entry: Entry, text: i18n.Msg, *, now: float | None) -> None:
    """Queues the owner's message about an entry (inside the entry's transaction), rendered
    in the owner's language when it is sent."""
    await outbox.enqueue_notice(deps.db, notices.notice(entry.user_id, text),
                                order_id=entry.order_id, now=now)


# --- credits and debits ----------------------------------------------------------------------


async def credit(deps: Deps, user_id: int, amount: Decimal, *, reference: str, note: str = "",
                 kind: EntryKind = "topup", notify: bool = True, currency: str | None = None,
                 now: float | None = None) -> Booked:
    """Adds money to a wallet, once per reference; the owner is told with the new balance.
    `currency`: what the amount is in (a Stars top-up's), checked against the wallet's; by
    default the wallet's (the shop's for a new wallet). Joins an enclosing transaction."""
    return await _book(deps, user_id, amount, reference=reference, note=note, kind=kind,
                       notify=notify, currency=currency, now=now)


async def debit(deps: Deps, user_id: int, amount: Decimal, *, reference: str, note: str = "",
                kind: EntryKind = "adjustment", notify: bool = True,
                currency: str | None = None, now: float | None = None) -> Booked:
    """Takes money from a wallet, once per reference; raises NotEnough rather than go below
    zero. The owner is told with the new balance."""
    return await _book(deps, user_id, -amount, reference=reference, note=note, kind=kind,
                       notify=notify, currency=currency, now=now)


async def _book(deps: Deps, user_id: int, signed: Decimal, *, reference: str, note: str,
                kind: EntryKind, notify: bool, currency: str | None,
                now: float | None) -> Booked:
    """One credit or debit: the entry and its message in one transaction."""
    if kind in ("charge", "refund"):
        raise ValueError("charges and refunds belong to orders: charge_order / refund_order")
    # A currency given is never looked up: inside a transaction that must not wait on the panel.
    currency = currency if currency is not None else await _currency_for(deps, user_id)
    check_amount(abs(signed), currency)
    async with transaction(deps.db):
        try:
            entry, new = await ledger.append(
                deps.db, user_id=user_id, kind=kind, amount=signed, currency=currency,
                exponent=minor_digits(currency), reference=reference, note=note[:200], now=now)
        except ledger.InsufficientFunds as exc:
            raise NotEnough(exc.balance, -signed, currency) from None
        except ledger.CurrencyMismatch:
            raise WalletError(L_("This wallet holds another currency.")) from None
        if new and notify:
            await _tell(deps, entry, _credit_text(entry), now=now)
    if new:
        log.info("Wallet %d: %s %s %s (%s)", user_id, kind, entry.amount, currency, reference)
    return Booked(entry, new)


# --- orders --------------------------------------------------------------------------------


class ShopCurrencyChanged(WalletError):
    """The order's currency is not the wallet's (the panel changed its currency)."""


async def charge_order(deps: Deps, order: Order, *, now: float | None = None) -> Entry:
    """Charges a claimed draft's quoted price to its owner's wallet (call inside the claim's
    transaction). Raises NotEnough, or ShopCurrencyChanged, booking nothing."""
    assert order.price is not None
    currency = order.service_currency or ""
    note = f"order #{order.id}{': ' + order.service_name if order.service_name else ''}"
    try:
        entry, new = await ledger.append(
            deps.db, user_id=order.owner_id, kind="charge", amount=-order.price,
            currency=currency, exponent=minor_digits(currency),
            reference=charge_reference(order.id), note=note[:200], order_id=order.id, now=now)
    except ledger.InsufficientFunds as exc:
        raise NotEnough(exc.balance, order.price, currency) from None
    except ledger.CurrencyMismatch:
        raise ShopCurrencyChanged(L_("The shop's currency changed.")) from None
    if not new:  # a draft is charged once: a second claim of it never reaches here
        raise WalletError(L_("Order {number} was charged before.", number=order.id))
    return entry


async def refund_order(deps: Deps, order_id: int, *, why: i18n.Value, notify: bool = True,
                       now: float | None = None) -> Booked | None:
    """Refunds an order's whole charge (it was not placed), once; None if it was never charged.
    Call inside the transaction that marks the order failed. `why` (plain text, or a `Msg`
    for the owner's language) says why, in the owner's message and, in English, the entry."""
    charge = await ledger.get_by_reference(deps.db, charge_reference(order_id))
    if charge is None:
        return None
    return await _refund(deps, charge, -charge.amount, why=why, notify=notify, now=now)


async def _refund(deps: Deps, charge: Entry, amount: Decimal, *, why: i18n.Value,
                  notify: bool, now: float | None) -> Booked:
    """Books the refund of a charge (one per order) and, if asked, tells the owner (`why` as
    plain text, or a `Msg`: the entry keeps its English)."""
    assert charge.order_id is not None
    note = i18n.in_language(why, i18n.SOURCE)
    async with transaction(deps.db):
        entry, new = await ledger.append(
            deps.db, user_id=charge.user_id, kind="refund", amount=amount,
            currency=charge.currency, exponent=charge.exponent,
            reference=refund_reference(charge.order_id), note=note[:200],
            order_id=charge.order_id, now=now)
        if new and notify:
            reason = why if isinstance(why, i18n.Msg | i18n.Joined) else esc(why)
            await _tell(deps, entry, _refund_text(entry, reason), now=now)
    if new:
        log.info("Wallet %d: refund %s %s for order %d", charge.user_id, amount,
                 charge.currency, charge.order_id)
    return Booked(entry, new)


async def held_by(deps: Deps, order_id: int) -> Money | None:
    """What an order's charge still holds of its owner's money (charged less refunded); None
    when it was not charged to a wallet, or was refunded in full."""
    charge = await ledger.get_by_reference(deps.db, charge_reference(order_id))
    if charge is None:
        return None
    refund = await ledger.get_by_reference(deps.db, refund_reference(order_id))
    held = -charge.amount - (refund.amount if refund is not None else Decimal(0))
    return Money(held, charge.currency) if held > 0 else None


def refund_due(order: ChargedOrder) -> Decimal | None:
    """What an order's outcome gives back, from the first final status the bot saw: the full
    charge, a Partial's share, or 0; None when it cannot be told (a Partial without remains)."""
    first = order.first_final
    if first in FULL_REFUND:
        return order.charge
    if first != PARTIAL:
        return Decimal(0)
    if order.first_final_remains is None or not order.quantity:
        return None
    remains = min(max(order.first_final_remains, 0), order.quantity)
    share = round_down(order.charge * remains / order.quantity, order.currency)
    return min(share, order.charge)


class _Seen(Protocol):
    @property
    def id(self) -> int: ...


def _outcome_words(order: ChargedOrder) -> i18n.Msg:
    """"order 23501 · Followers ended Partial (157 of 1,000 not delivered)" (HTML)."""
    number, service = order.panel_order_id, service_title(order.service_name)
    if order.first_final == PARTIAL and order.quantity:
        # i18n: {service} is " · <the panel's service name>" or nothing; completes "refunded to
        # your wallet: …"
        return L_("order {number}{service} ended Partial ({remains} of {quantity} not "
                  "delivered)", number=number, service=service,
                  remains=i18n.Number(order.first_final_remains or 0),
                  quantity=i18n.Number(order.quantity))
    # i18n: {status} is the panel's word (Canceled, Refunded, Failed); completes "refunded to
    # your wallet: …"
    return L_("order {number}{service} was {status}", number=number, service=service,
              status=status_value(order.first_final or ""))


async def refund_from_statuses(deps: Deps, seen: Iterable[tuple[_Seen, OrderStatus]], *,
                               now: float | None = None) -> list[ChargedOrder]:
    """Books the refunds the statuses just stored call for (call inside their transaction,
    after they are written); the charged orders whose refund cannot be told (a Partial
    without remains: a person must settle them)."""
    candidates = {order.id for order, status in seen if status.status in REFUND_STATUSES}
    by_hand: list[ChargedOrder] = []
    if not candidates:
        return by_hand
    async with transaction(deps.db):
        for order in await ledger.charged_orders(deps.db, final_statuses=sorted(
                FINAL_ORDER_STATUSES), order_ids=sorted(candidates)):
            if order.refund is not None:
                continue
            amount = refund_due(order)
            if amount is None:
                log.warning("Order %d ended Partial without saying what remains: refund it "
                            "by hand (/audit lists it)", order.order_id)
                by_hand.append(order)
                continue
            if amount <= 0:
                continue
            charge = await ledger.get_by_reference(deps.db, charge_reference(order.order_id))
            assert charge is not None
            result = await _refund(deps, charge, amount, notify=False, now=now,
                                   why=f"order {order.panel_order_id}: {order.first_final}")
            if result.new:
                await _tell(deps, result.entry,
                            _refund_text(result.entry, _outcome_words(order)), now=now)
    return by_hand


async def order_money(deps: Deps, order_ids: Sequence[int]) -> dict[int, tuple[Decimal,
                                                                               Decimal | None]]:
    """{order id: (charged, refunded)} for the charged orders among these."""
    return await ledger.order_money(deps.db, order_ids)


# --- the audit -------------------------------------------------------------------------------


@dataclass(slots=True)
class AuditReport:
    """What the audit looked at, what is wrong (`problems`), and what needs a person (`notes`)."""

    entries: int = 0
    wallets: int = 0
    charged_orders: int = 0
    payments: int = 0  # Stars payments checked (bot.services.payments.audit)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every check held."""
        return not self.problems


def _audit_chains(report: AuditReport, all_entries: Sequence[Entry]) -> None:
    """Every chain adds up, in order, in one currency, never below zero."""
    by_user: dict[int, list[Entry]] = defaultdict(list)
    for entry in all_entries:
        by_user[entry.user_id].append(entry)
    report.wallets = len(by_user)
    for user_id, chain in by_user.items():
        running = Decimal(0)
        for position, entry in enumerate(chain, start=1):
            where = dict(user=user_id, seq=entry.seq)
            if entry.seq != position:
                # i18n: an /audit problem (admins)
                report.problems.append(_("wallet {user} entry {seq}: expected entry "
                                         "{position}").format(position=position, **where))
            running += entry.amount
            if entry.balance_after != running:
                # i18n: an /audit problem (admins)
                report.problems.append(_("wallet {user} entry {seq}: balance {balance} should "
                                         "be {expected}").format(
                    balance=entry.balance_after, expected=running, **where))
            if entry.balance_after < 0:
                # i18n: an /audit problem (admins)
                report.problems.append(_("wallet {user} entry {seq}: negative balance "
                                         "{balance}").format(balance=entry.balance_after,
                                                             **where))
            if (entry.currency, entry.exponent) != (chain[0].currency, chain[0].exponent):
                # i18n: an /audit problem (admins)
                report.problems.append(_("wallet {user} entry {seq}: currency {currency} in a "
                                         "{wallet_currency} wallet").format(
                    currency=entry.currency, wallet_currency=chain[0].currency, **where))


def _audit_orders(report: AuditReport, all_entries: Sequence[Entry],
                  charged: Sequence[ChargedOrder]) -> None:
    """One charge per charged order, refunds that match a charge and the order's outcome."""
    charges: dict[int, list[Entry]] = defaultdict(list)
    refunds: dict[int, list[Entry]] = defaultdict(list)
    for entry in all_entries:
        if entry.kind == "charge" and entry.order_id is not None:
            charges[entry.order_id].append(entry)
            if entry.reference != charge_reference(entry.order_id):
                # i18n: an /audit problem (admins); {reference} is the ledger's reference
                report.problems.append(_("charge {reference} is booked for order "
                                         "{order}").format(reference=entry.reference,
                                                           order=entry.order_id))
        elif entry.kind == "refund" and entry.order_id is not None:
            refunds[entry.order_id].append(entry)
        elif entry.kind in ("charge", "refund"):
            # i18n: an /audit problem (admins)
            problem = (_("charge {reference} names no order") if entry.kind == "charge"
                       # i18n: an /audit problem (admins)
                       else _("refund {reference} names no order"))
            report.problems.append(problem.format(reference=entry.reference))
    for order_id, found in charges.items():
        if len(found) != 1:
            # i18n: an /audit problem (admins)
            report.problems.append(ngettext("order {order} has {n} charge",
                                            "order {order} has {n} charges",
                                            len(found)).format(order=order_id, n=len(found)))
    for order_id, found in refunds.items():
        if order_id not in charges:
            # i18n: an /audit problem (admins)
            report.problems.append(_("order {order} has a refund but no charge").format(
                order=order_id))
        if len(found) != 1:
            # i18n: an /audit problem (admins)
            report.problems.append(ngettext("order {order} has {n} refund",
                                            "order {order} has {n} refunds",
                                            len(found)).format(order=order_id, n=len(found)))
        elif order_id in charges and found[0].amount > -charges[order_id][0].amount:
            # i18n: an /audit problem (admins)
            report.problems.append(_("order {order}: refund {refund} is more than its charge "
                                     "{charge}").format(order=order_id, refund=found[0].amount,
                                                        charge=-charges[order_id][0].amount))
    report.charged_orders = len(charged)
    for order in charged:
        _audit_outcome(report, order, charges[order.order_id][0])


def _audit_outcome(report: AuditReport, order: ChargedOrder, charge: Entry) -> None:
    """The refund an order has is the one its outcome calls for."""
    where = order.order_id
    refunded = order.refund or Decimal(0)
    if charge.user_id != order.owner_id:
        # i18n: an /audit problem (admins)
        report.problems.append(_("order {order} was charged to {user}, not its owner").format(
            order=where, user=charge.user_id))
    if order.price is not None and order.charge != order.price:
        # i18n: an /audit problem (admins)
        report.problems.append(_("order {order}: charged {charge}, quoted {price}").format(
            order=where, charge=order.charge, price=order.price))
    if order.state == "failed":
        due: Decimal | None = order.charge
    elif order.state in ("claimed", "unknown", "draft"):
        due = Decimal(0)
    else:
        due = refund_due(order)
    if due is None:
        # i18n: an /audit note (admins)
        report.notes.append(_("order {order} ended Partial without saying what remains: refund "
                              "it by hand with /credit").format(order=where))
        return
    if refunded != due:
        if order.first_final:
            # i18n: an /audit problem (admins); {state} is the bot's state of the order (failed,
            # placed…), {status} the panel's
            problem = _("order {order} ({state}, {status}): refunded {refunded}, due {due}")
        else:
            # i18n: an /audit problem (admins); {state} is the bot's state of the order (failed,
            # placed…)
            problem = _("order {order} ({state}, not final): refunded {refunded}, due {due}")
        report.problems.append(problem.format(order=where, state=order.state,
                                              status=order.first_final, refunded=refunded,
                                              due=due))


async def audit(deps: Deps) -> AuditReport:
    """Checks every wallet and every charged order (see the module docstring)."""
    report = AuditReport()
    all_entries = await ledger.all_entries(deps.db)
    report.entries = len(all_entries)
    _audit_chains(report, all_entries)
    charged = await ledger.charged_orders(deps.db, final_statuses=sorted(FINAL_ORDER_STATUSES))
    _audit_orders(report, all_entries, charged)
    return report
