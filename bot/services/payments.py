"""Wallet top-ups paid with Telegram Stars: invoices, the pre-checkout check, each payment booked
exactly once, refunds, and their audit (the rules; Telegram is the handlers' business).

- An invoice is a pending top-up row (storage/payments.py) of one user: an amount in the
  wallet's currency within TOPUP_MIN..TOPUP_MAX, its price in Stars — ceil(amount ×
  STARS_PER_UNIT), whole Stars, at least 1 — and an expiry (TOPUP_TTL). Its payload
  ``topup:<id>:<nonce>`` names the row; the random nonce makes a payload impossible to guess.
- Pre-checkout (`check_checkout`): ok only for a pending, unexpired top-up of this very user,
  in Stars at exactly its price, of a user not banned, while Stars are on and the wallet still
  holds the top-up's currency. Reads only: it answers within Telegram's 10 seconds.
- A payment (`record_payment`) is recorded once per Telegram charge id: the top-up marked paid
  and the wallet credited (reference ``stars:<charge id>``) in ONE transaction. The same payment
  delivered again — twice, or after a restart — finds its row and books nothing. Telegram only
  charges after an ok pre-checkout, so a payment that still matches no payable top-up (a race)
  is kept as 'stray', never credited, and the admins are told to refund it.
- A refund (`refund`) debits the wallet FIRST (reference ``stars:<charge id>:refund``), in the
  transaction that marks the payment 'refunding', and only then asks Telegram: so the money
  cannot be spent meanwhile, and a wallet that no longer holds it refuses the refund before
  Telegram is asked. Telegram refunded (or says CHARGE_ALREADY_REFUNDED): 'refunded', the
  customer is told. Telegram refused: the debit is given back (``…:refund:back``) and the
  payment is 'paid' again; a later attempt books ``stars:<charge id>:refund:<n>``. No clear
  answer (a timeout): the debit stays held and the payment 'refunding'; asking again finishes
  it (Telegram then refunds, or says it already did) — never a Stars refund with the credit
  kept, never a debit without a refund that Telegram refused.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

from bot import i18n
from bot.config import MAX_INVOICE_STARS, Settings, stars_for
from bot.deps import Deps
from bot.i18n import L_, N_, Msg, _
from bot.services import shop, wallet
from bot.services.accounts import is_banned
from bot.services.notices import notice
from bot.services.pricing import minor_digits, minor_unit, round_down, round_up
from bot.text import esc, shorten
from storage import orders, outbox
from storage import payments as store
from storage import wallet as ledger
from storage.db import transaction
from storage.payments import Topup
from storage.wallet import Entry

log = logging.getLogger(__name__)

STARS: Final = "XTR"
#: Seconds an invoice can be paid; after that its pre-checkout is refused.
TOPUP_TTL: Final = 3600.0
PAYLOAD_PREFIX: Final = "topup"
_AMOUNT = re.compile(r"^\d{1,12}([.,]\d{1,8})?$")
_PAYLOAD = re.compile(r"^topup:(\d{1,18}):([A-Za-z0-9_-]{8,64})$")
#: Telegram's limits on an invoice's texts (characters).
TITLE_MAX: Final = 32
DESCRIPTION_MAX: Final = 255
LABEL_MAX: Final = 64
STARS_OFF: Final = N_("Top-ups with Telegram Stars are off in this shop.")
NO_CURRENCY: Final = N_("The shop's currency cannot be read now: try again in a minute.")
NEW_INVOICE: Final = N_("This invoice has expired: ask for a new one with /topup.")


class TopupRefused(Exception):
    """A top-up that cannot be made; the text is a one-line reason for the customer (translated
    when raised, in the language of the update being handled)."""


class RefundError(Exception):
    """A refund that cannot be asked for; the text is a one-line reason for the admin (translated
    when raised)."""


class TelegramRefused(Exception):
    """Telegram's definite no to a refund (its reason), other than already refunded."""


class AlreadyRefunded(Exception):
    """Telegram says the payment was refunded before (CHARGE_ALREADY_REFUNDED)."""


#: Asks Telegram to refund (user id, charge id): returns when refunded; raises AlreadyRefunded,
#: TelegramRefused, or anything else when the outcome is not known.
SendRefund = Callable[[int, str], Awaitable[object]]


def credit_reference(charge_id: str) -> str:
    """The one credit a Stars payment books."""
    return f"stars:{charge_id}"


def refund_reference(charge_id: str, attempt: int = 1) -> str:
    """The refund debit of a Stars payment's `attempt`-th refund."""
    return f"stars:{charge_id}:refund" + ("" if attempt == 1 else f":{attempt}")


def back_reference(charge_id: str, attempt: int) -> str:
    """The credit that gives back a refund debit Telegram refused."""
    return refund_reference(charge_id, attempt) + ":back"


def payload_of(topup: Topup) -> str:
    """The invoice payload naming a top-up (never shown to the user)."""
    return f"{PAYLOAD_PREFIX}:{topup.id}:{topup.nonce}"


def parse_payload(payload: str) -> tuple[int, str] | None:
    """(top-up id, nonce) from an invoice payload, or None when it is not one of ours."""
    match = _PAYLOAD.match(payload or "")
    return (int(match.group(1)), match.group(2)) if match else None


# --- amounts --------------------------------------------------------------------------------


def enabled(settings: Settings) -> bool:
    """Whether customers can top up with Stars (shop mode and STARS_PER_UNIT set)."""
    return settings.stars_enabled


def _rate(settings: Settings) -> Decimal:
    rate = settings.stars_per_unit
    if rate is None or not settings.shop_mode:
        raise TopupRefused(_(STARS_OFF))
    return rate


def smallest(settings: Settings, currency: str) -> Decimal:
    """The smallest top-up: TOPUP_MIN, up to the currency's minor unit."""
    return max(round_up(settings.topup_min, currency), minor_unit(currency))


def largest(settings: Settings, currency: str) -> Decimal:
    """The largest top-up: TOPUP_MAX, and no more than one invoice can ask in Stars."""
    cap = round_down(Decimal(MAX_INVOICE_STARS) / _rate(settings), currency)
    return cap if settings.topup_max is None else min(round_down(settings.topup_max, currency),
                                                      cap)


def stars_price(settings: Settings, amount: Decimal) -> int:
    """What a top-up of `amount` costs in whole Stars (rounded up)."""
    return stars_for(amount, _rate(settings))


def offered(settings: Settings, currency: str) -> list[Decimal]:
    """The amounts offered as buttons (TOPUP_AMOUNTS that fit this currency and the limits)."""
    if not enabled(settings):
        return []
    low, high, unit = smallest(settings, currency), largest(settings, currency), minor_unit(
        currency)
    return [a for a in settings.topup_amounts
            if low <= a <= high and a == a.quantize(unit)]


def check_amount(settings: Settings, amount: Decimal, currency: str) -> None:
    """Refuses a top-up below TOPUP_MIN, above the largest, or finer than the minor unit."""
    try:
        wallet.check_amount(amount, currency)
    except wallet.WalletError as exc:
        raise TopupRefused(str(exc)) from None
    low, high = smallest(settings, currency), largest(settings, currency)
    if amount < low:
        raise TopupRefused(_("The smallest top-up is {amount}.").format(
            amount=wallet.show(low, currency)))
    if amount > high:
        raise TopupRefused(_("The largest top-up is {amount}.").format(
            amount=wallet.show(high, currency)))


def parse_amount(settings: Settings, text: str, currency: str) -> Decimal:
    """A typed amount ("10", "7.50", "7,5"), checked; raises TopupRefused with the reason."""
    cleaned = text.strip()
    if currency and cleaned.upper().endswith(currency.upper()):  # "10 USD", "10usd"
        cleaned = cleaned[: -len(currency)].strip()
    if not _AMOUNT.match(cleaned):
        shown = text.strip()[:20]
        raise TopupRefused(_("“{text}” is not an amount: send a number such as 10 or 7.50.")
                           .format(text=shown))
    try:
        amount = Decimal(cleaned.replace(",", "."))
    except InvalidOperation:
        raise TopupRefused(_("That is not an amount: send a number such as 10 or 7.50.")
                           ) from None
    check_amount(settings, amount, currency)
    return amount


def rate_text(settings: Settings, currency: str) -> str:
    """"77 ⭐ per USD" (plain text, in the current language)."""
    rate = _rate(settings).normalize()
    shown = i18n.decimal(rate, places=max(-int(rate.as_tuple().exponent), 0), keep=0)
    if not currency:
        # i18n: the price of a top-up in Telegram Stars (⭐) per unit of the shop's money
        return _("{rate} ⭐ per unit").format(rate=shown)
    # i18n: the price of a top-up in Telegram Stars (⭐) per unit of a currency ("77 ⭐ per USD")
    return _("{rate} ⭐ per {currency}").format(rate=shown, currency=currency)


# --- invoices -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invoice:
    """What the handler sends as a Stars invoice for a pending top-up."""

    topup: Topup
    title: str  # 1–32 characters
    description: str  # 1–255 characters
    payload: str  # 1–128 bytes
    label: str
    stars: int


def invoice_of(settings: Settings, topup: Topup) -> Invoice:
    """The invoice of a pending top-up."""
    assert topup.amount is not None
    amount = wallet.show(topup.amount, topup.currency)
    values = {"amount": amount, "stars": topup.stars,
              "rate": rate_text(settings, topup.currency)}
    if topup.draft_id is not None:
        description = _("{amount} added to your wallet in this shop for your order: {stars} ⭐ "
                        "at {rate}. Orders are paid from the wallet; see /terms.").format(**values)
    else:
        description = _("{amount} added to your wallet in this shop: {stars} ⭐ at {rate}. "
                        "Orders are paid from the wallet; see /terms.").format(**values)
    # i18n: the title of a Stars invoice: at most 32 characters (Telegram's limit)
    title = _("Wallet top-up")
    # i18n: the price line of a Stars invoice ("Top-up 10.00 USD")
    label = _("Top-up {amount}").format(amount=amount)
    return Invoice(topup, shorten(title, TITLE_MAX), shorten(description, DESCRIPTION_MAX),
                   payload_of(topup), shorten(label, LABEL_MAX), topup.stars)


async def _wallet_currency(deps: Deps, user_id: int) -> str:
    """The currency a top-up of this wallet is in (the wallet's, or the shop's for a new one)."""
    funds = await wallet.balance(deps, user_id)
    if not funds.currency:
        raise TopupRefused(_(NO_CURRENCY))
    return funds.currency


async def why_not(deps: Deps, user_id: int) -> str | None:
    """Why this user cannot top up with Stars now (None: they can)."""
    if not enabled(deps.settings):
        return _(STARS_OFF)
    if await is_banned(deps, user_id):
        return _("You cannot top up in this shop.")
    return None


async def new_topup(deps: Deps, user_id: int, chat_id: int, amount: Decimal, *,
                    draft_id: int | None = None, now: float | None = None) -> Invoice:
    """A pending top-up of `amount` for this user, and its invoice; raises TopupRefused."""
    reason = await why_not(deps, user_id)
    if reason is not None:
        raise TopupRefused(reason)
    currency = await _wallet_currency(deps, user_id)
    check_amount(deps.settings, amount, currency)
    now = time.time() if now is None else now
    topup = await store.create(
        deps.db, user_id=user_id, chat_id=chat_id, nonce=secrets.token_urlsafe(12),
        amount=amount, currency=currency, stars=stars_price(deps.settings, amount),
        expires_at=now + TOPUP_TTL, draft_id=draft_id, now=now)
    log.info("Top-up %d: user %d, %s %s for %d Stars", topup.id, user_id, amount, currency,
             topup.stars)
    return invoice_of(deps.settings, topup)


def top_up_for(settings: Settings, price: Decimal, balance: Decimal,
               currency: str) -> Decimal | None:
    """What "Top up N" on a summary the wallet can't pay invoices: the missing amount, at least
    TOPUP_MIN; None when Stars are off, nothing is missing, or it is more than one top-up."""
    if not enabled(settings) or price <= balance:
        return None
    amount = max(price - balance, smallest(settings, currency))
    return amount if amount <= largest(settings, currency) else None


async def topup_for_draft(deps: Deps, user_id: int, chat_id: int, draft_id: int, *,
                          now: float | None = None) -> Invoice:
    """The invoice of what an order summary's wallet is missing; raises TopupRefused."""
    draft = await orders.get_order(deps.db, draft_id)
    if (draft is None or draft.owner_id != user_id or draft.price is None
            or draft.state not in ("draft", "failed")):
        raise TopupRefused(_("This summary is out of date."))
    reason = await why_not(deps, user_id)
    if reason is not None:
        raise TopupRefused(reason)
    currency = await _wallet_currency(deps, user_id)
    funds = await wallet.balance(deps, user_id)
    if funds.amount >= draft.price:
        raise TopupRefused(_("Your wallet already holds enough for this order: tap Confirm."))
    amount = top_up_for(deps.settings, draft.price, funds.amount, currency)
    if amount is None:
        raise TopupRefused(_("That is more than one top-up can be ({amount}): top up in parts "
                             "with /topup.").format(
            amount=wallet.show(largest(deps.settings, currency), currency)))
    return await new_topup(deps, user_id, chat_id, amount, draft_id=draft_id, now=now)


# --- pre-checkout -----------------------------------------------------------------------------


async def _named(deps: Deps, payload: str) -> Topup | None:
    """The top-up a payload names (id and nonce both right), or None."""
    parsed = parse_payload(payload)
    if parsed is None:
        return None
    topup = await store.get(deps.db, parsed[0])
    if topup is None or not secrets.compare_digest(topup.nonce, parsed[1]):
        return None
    return topup


async def check_checkout(deps: Deps, *, user_id: int, payload: str, currency: str,
                         total_amount: int, now: float | None = None) -> str | None:
    """Whether Telegram may charge this checkout: None (ok), or the reason the user reads."""
    topup = await _named(deps, payload)
    if topup is None:
        return _("This invoice is not valid: ask for a new one with /topup.")
    if topup.user_id != user_id:
        return _("This invoice was made for someone else: ask for your own with /topup.")
    if currency != STARS or total_amount != topup.stars:
        return _("This invoice's price is not right: ask for a new one with /topup.")
    if topup.state != "pending":
        if topup.state == "expired":
            return _(NEW_INVOICE)
        return _("This invoice was paid already: nothing more to pay (see /wallet).")
    if (time.time() if now is None else now) >= topup.expires_at:
        await store.expire(deps.db, topup.id)
        return _(NEW_INVOICE)
    reason = await why_not(deps, user_id)
    if reason is not None:
        # i18n: {reason} is why the user cannot top up (one sentence); the payment is refused
        return _("{reason} Nothing was charged.").format(reason=reason)
    last = await ledger.last_entry(deps.db, user_id)
    if last is not None and last.currency != topup.currency:
        return _("The shop's currency changed: ask for a new invoice with /topup.")
    return None


# --- payments -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Payment:
    """A Stars payment as recorded: its top-up, the credit it booked (None: a stray payment,
    not credited), and whether this call recorded it (False: it was recorded before)."""

    topup: Topup
    entry: Entry | None
    new: bool

    @property
    def credited(self) -> bool:
        """Whether the payment is in the wallet."""
        return self.entry is not None


class _Stray(Exception):
    """A payment that matches no payable top-up; `why` says why (a clause, for the admins)."""

    def __init__(self, why: Msg) -> None:
        super().__init__(why.msgid)
        self.why = why


async def record_payment(deps: Deps, *, user_id: int, chat_id: int, payload: str,
                         currency: str, total_amount: int, charge_id: str,
                         provider_charge_id: str = "", now: float | None = None) -> Payment:
    """Records a Telegram Stars payment exactly once and credits its top-up to the wallet, in
    one transaction; delivered again, it returns what was recorded the first time."""
    db = deps.db
    if not charge_id:
        raise ValueError("a payment without a charge id")
    try:
        async with transaction(db):
            known = await store.by_charge(db, charge_id)
            if known is not None:
                return Payment(known, await ledger.get_by_reference(
                    db, credit_reference(charge_id)), new=False)
            topup = await _named(deps, payload)
            if topup is None:
                # i18n: why a Stars payment was not credited, the end of "… paid 5 ⭐ but {why}"
                raise _Stray(L_("its payload names no top-up"))
            if topup.user_id != user_id:
                # i18n: why a Stars payment was not credited, the end of "… paid 5 ⭐ but {why}"
                raise _Stray(L_("it paid top-up {topup} of user {user}", topup=topup.id,
                                user=topup.user_id))
            if currency != STARS or total_amount != topup.stars or topup.amount is None:
                # i18n: why a Stars payment was not credited, the end of "… paid 5 ⭐ but {why}"
                raise _Stray(L_("it paid {total} {currency} for top-up {topup} of {stars} Stars",
                                total=total_amount, currency=esc(currency), topup=topup.id,
                                stars=topup.stars))
            if topup.state in ("pending", "expired"):
                # Expired after an ok pre-checkout: Telegram took the money, so it is credited.
                moved = await store.mark_paid(db, topup.id, charge_id=charge_id,
                                              provider_charge_id=provider_charge_id, now=now)
                assert moved, "the top-up changed inside the transaction"
                paid = await store.get(db, topup.id)
                assert paid is not None
            else:  # the invoice was paid twice: the second payment is the customer's money too
                paid = await store.record_paid_again(db, topup, charge_id=charge_id,
                                                     provider_charge_id=provider_charge_id,
                                                     now=now)
            assert paid.amount is not None
            booked = await wallet.credit(
                deps, user_id, paid.amount, reference=credit_reference(charge_id),
                note=i18n.stored(L_("Telegram Stars: {stars} ⭐", stars=paid.stars)),
                currency=paid.currency, notify=False,
                now=now)
    except _Stray as exc:
        why = exc.why
    except wallet.WalletError as exc:  # e.g. the wallet holds another currency now
        # i18n: why a Stars payment was not credited, the end of "… paid 5 ⭐ but {why}";
        # {reason} is the wallet's one-line reason
        why = L_("it could not be credited: {reason}",
                 reason=exc.msg if isinstance(exc.msg, Msg | i18n.Joined) else esc(exc))
    else:
        log.info("Stars payment %s: top-up %d of user %d, %s %s credited", charge_id, paid.id,
                 user_id, paid.amount, paid.currency)
        return Payment(paid, booked.entry, new=True)
    return await _record_stray(deps, user_id=user_id, chat_id=chat_id, currency=currency,
                               stars=total_amount, charge_id=charge_id,
                               provider_charge_id=provider_charge_id, why=why, now=now)


async def _record_stray(deps: Deps, *, user_id: int, chat_id: int, currency: str, stars: int,
                        charge_id: str, provider_charge_id: str, why: Msg,
                        now: float | None) -> Payment:
    """Keeps a payment that could not be credited, and tells the admins in the same
    transaction (a repeat of it finds the row and tells nobody again). The row's note is the
    reason in English (data, like a log line); each admin reads it in their language."""
    note = html.unescape(i18n.in_language(why, i18n.SOURCE))
    async with transaction(deps.db):
        known = await store.by_charge(deps.db, charge_id)
        if known is not None:
            return Payment(known, None, new=False)
        row = await store.record_stray(
            deps.db, user_id=user_id, chat_id=chat_id, currency=currency, stars=stars,
            charge_id=charge_id, provider_charge_id=provider_charge_id, note=note, now=now)
        alert = L_("⚠️ <b>Stars payment not credited</b>: user <code>{user}</code> paid "
                   "{stars} ⭐ but {why}. Refund it with <code>/refund {user} {charge}</code>.",
                   user=user_id, stars=stars, why=why, charge=esc(charge_id))
        admins = sorted(await shop.admin_ids(deps))
        for admin in admins:
            await outbox.enqueue_notice(deps.db, notice(admin, alert), now=now)
    if not admins:
        log.warning("No admin to tell: Stars payment %s was not credited", charge_id)
    log.error("Stars payment %s of user %d (%d %s) was not credited: %s", charge_id, user_id,
              stars, currency, note)
    return Payment(row, None, new=True)


# --- refunds --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refunded:
    """Telegram refunded the payment; `debit` took it from the wallet (None: never credited);
    `before`: it had been refunded before this call, nothing was done now."""

    topup: Topup
    debit: Entry | None
    before: bool = False


@dataclass(frozen=True, slots=True)
class RefundShort:
    """The wallet no longer holds what the payment credited: nothing was done."""

    topup: Topup
    balance: Decimal
    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class RefundRefused:
    """Telegram refused the refund (`reason`); the debit was given back (`back`)."""

    topup: Topup
    reason: str
    back: Entry | None


@dataclass(frozen=True, slots=True)
class RefundUnknown:
    """No clear answer from Telegram: the debit stays held, the payment 'refunding'; asking
    again finishes it."""

    topup: Topup
    error: str
    held: Entry | None


RefundOutcome = Refunded | RefundShort | RefundRefused | RefundUnknown


class _Raced(Exception):
    """Another refund of the same payment moved it first."""


def _money(amount: Decimal, currency: str) -> i18n.Money:
    """An amount of wallet money for a text rendered later (as `wallet.show` shows it)."""
    return i18n.Money(amount, esc(currency), max(2, minor_digits(currency)))


def _refund_text(topup: Topup, debit: Entry | None) -> Msg:
    """What the customer is told when a payment was refunded (HTML, rendered when sent)."""
    stars = topup.stars
    if debit is None:
        return L_("↩️ Your Telegram Stars payment of <b>{stars} ⭐</b> was refunded.",
                  stars=stars)
    return L_("↩️ Your Telegram Stars payment of <b>{stars} ⭐</b> was refunded: {amount} was "
              "taken from your wallet. Balance: <b>{balance}</b>.", stars=stars,
              amount=_money(-debit.amount, debit.currency),
              balance=_money(debit.balance_after, debit.currency))


async def refund(deps: Deps, *, user_id: int, charge_id: str, send_refund: SendRefund,
                 now: float | None = None) -> RefundOutcome:
    """Refunds a Stars payment: the wallet's debit first, then Telegram (see the module
    docstring); idempotent. Raises RefundError when there is nothing to refund."""
    db = deps.db
    topup = await store.by_charge(db, charge_id)
    if topup is None:
        raise RefundError(_("No Stars payment with this charge id is known."))
    if topup.user_id != user_id:
        raise RefundError(_("That payment is not user {user}'s (it is {owner}'s).").format(
            user=user_id, owner=topup.user_id))
    if topup.state == "refunded":
        debit = await ledger.get_by_reference(db, refund_reference(charge_id,
                                                                   topup.refund_attempts))
        return Refunded(topup, debit, before=True)
    if topup.state == "refunding":  # an earlier attempt got no clear answer: finish it
        attempt = topup.refund_attempts
        debit = await ledger.get_by_reference(db, refund_reference(charge_id, attempt))
    elif topup.state in ("paid", "stray"):
        attempt = topup.refund_attempts + 1
        try:
            debit = await _hold(deps, topup, attempt, now=now)
        except wallet.NotEnough as exc:
            return RefundShort(topup, exc.balance, exc.amount, exc.currency)
        except _Raced:
            raise RefundError(_("Another refund of this payment is under way: look again in a "
                                "moment.")) from None
    else:
        raise RefundError(_("That payment cannot be refunded."))
    try:
        await send_refund(user_id, charge_id)
    except AlreadyRefunded:
        log.info("Stars payment %s: Telegram says it was refunded already", charge_id)
    except TelegramRefused as exc:
        back = await _give_back(deps, topup, attempt, debit, now=now)
        log.warning("Stars payment %s: Telegram refused the refund (%s); the debit was given "
                    "back", charge_id, exc)
        return RefundRefused(await _reload(deps, topup), str(exc), back)
    except Exception as exc:
        log.warning("Stars payment %s: refund outcome unknown (%s); the debit stays held",
                    charge_id, type(exc).__name__)
        return RefundUnknown(await _reload(deps, topup), type(exc).__name__, debit)
    async with transaction(db):
        # Two admins finishing the same refund at once: one moves it and the customer is told
        # once; the other finds it done.
        moved = await store.finish_refund(db, topup.id, now=now)
        if moved:
            await outbox.enqueue_notice(db, notice(user_id, _refund_text(topup, debit)),
                                        now=now)
    if moved:
        log.info("Stars payment %s of user %d refunded", charge_id, user_id)
    return Refunded(await _reload(deps, topup), debit, before=not moved)


async def _hold(deps: Deps, topup: Topup, attempt: int, *, now: float | None) -> Entry | None:
    """Books the refund debit and marks the payment 'refunding', in one transaction."""
    assert topup.charge_id is not None
    async with transaction(deps.db):
        debit = None
        if topup.amount is not None:
            booked = await wallet.debit(
                deps, topup.user_id, topup.amount,
                reference=refund_reference(topup.charge_id, attempt),
                note=i18n.stored(L_("Telegram Stars refund: {stars} ⭐", stars=topup.stars)),
                currency=topup.currency,
                notify=False, now=now)
            debit = booked.entry
        if not await store.begin_refund(deps.db, topup.id, attempt=attempt):
            raise _Raced()
    return debit


async def _give_back(deps: Deps, topup: Topup, attempt: int, debit: Entry | None, *,
                     now: float | None) -> Entry | None:
    """Undoes a refund Telegram refused: the debit credited back, the payment as it was."""
    assert topup.charge_id is not None
    async with transaction(deps.db):
        back = None
        if debit is not None:
            booked = await wallet.credit(
                deps, topup.user_id, -debit.amount,
                reference=back_reference(topup.charge_id, attempt),
                note=i18n.stored(L_("Telegram refused the refund: given back")),
                kind="adjustment",
                currency=debit.currency, notify=False, now=now)
            back = booked.entry
        await store.undo_refund(deps.db, topup.id)
    return back


async def _reload(deps: Deps, topup: Topup) -> Topup:
    """The top-up as it is now."""
    return await store.get(deps.db, topup.id) or topup


async def refundable(deps: Deps, user_id: int, *, limit: int = 5) -> list[Topup]:
    """A user's Stars payments an admin can refund (or finish refunding), newest first."""
    return await store.of_user(deps.db, user_id, states=("paid", "refunding", "stray"),
                               limit=limit)


async def by_id(deps: Deps, topup_id: int) -> Topup | None:
    """A top-up by its id."""
    return await store.get(deps.db, topup_id)


# --- the audit ------------------------------------------------------------------------------


async def audit(deps: Deps) -> wallet.AuditReport:
    """The wallet audit, and: every Stars payment has exactly the entries its state calls for
    (one credit; one refund debit not given back when refunded, none when paid)."""
    report = await wallet.audit(deps)
    by_reference = {e.reference: e for e in await ledger.all_entries(deps.db)}
    paid = await store.with_payment(deps.db)
    report.payments = len(paid)
    accounted: set[str] = set()
    for topup in paid:
        _audit_payment(report, topup, by_reference, accounted)
    for reference in by_reference:
        if reference.startswith("stars:") and reference not in accounted:
            report.problems.append(_("ledger entry {reference} names no Stars payment").format(
                reference=reference))
    return report


def _audit_payment(report: wallet.AuditReport, topup: Topup, by_reference: dict[str, Entry],
                   accounted: set[str]) -> None:
    """One payment's credit and refund debits against its state."""
    charge = topup.charge_id
    assert charge is not None
    # i18n: the subject of an /audit line; {state} is the payment's state as stored (paid,
    # refunded, refunding, stray)
    where = _("Stars payment {charge} (user {user}, {state})").format(
        charge=charge, user=topup.user_id, state=topup.state)
    credit = by_reference.get(credit_reference(charge))
    accounted.add(credit_reference(charge))
    if topup.amount is None:
        if credit is not None:
            report.problems.append(_("{payment} was never matched but has a credit").format(
                payment=where))
        if topup.state == "stray":
            # i18n: an /audit note; {why} is the stored reason, in English
            report.notes.append(_("{payment}: {stars} ⭐ not credited ({why}); refund it with "
                                  "/refund {user} {charge}").format(
                payment=where, stars=topup.stars, why=topup.note,
                user=topup.user_id, charge=charge))
    elif credit is None:
        report.problems.append(_("{payment} has no credit in the wallet").format(payment=where))
    elif (credit.user_id, credit.amount, credit.currency) != (topup.user_id, topup.amount,
                                                               topup.currency):
        report.problems.append(_("{payment}: credited {credited} {credited_currency} to "
                                 "{user}, paid {paid} {currency}").format(
            payment=where, credited=credit.amount, credited_currency=credit.currency,
            user=credit.user_id, paid=topup.amount, currency=topup.currency))
    held = 0
    for attempt in range(1, topup.refund_attempts + 1):
        debit = by_reference.get(refund_reference(charge, attempt))
        back = by_reference.get(back_reference(charge, attempt))
        accounted.update({refund_reference(charge, attempt), back_reference(charge, attempt)})
        if debit is None:
            if back is not None:
                report.problems.append(_("{payment}: refund {attempt} given back, never "
                                         "debited").format(payment=where, attempt=attempt))
            continue
        if topup.amount is not None and debit.amount != -topup.amount:
            report.problems.append(_("{payment}: refund {attempt} debited {debited}, paid "
                                     "{paid}").format(payment=where, attempt=attempt,
                                                      debited=-debit.amount, paid=topup.amount))
        if back is None:
            held += 1
        elif back.amount != -debit.amount:
            report.problems.append(_("{payment}: refund {attempt} given back {amount}").format(
                payment=where, attempt=attempt, amount=back.amount))
    due = 1 if topup.amount is not None and topup.state in ("refunded", "refunding") else 0
    if held != due:
        # i18n: an /audit line: how many refund debits a payment has and how many it should
        report.problems.append(_("{payment} has {held} refund debit(s), {due} due").format(
            payment=where, held=held, due=due))
    if topup.state == "refunding":
        report.notes.append(_("{payment}: Telegram never confirmed the refund; run /refund "
                              "{user} {charge} again").format(payment=where, user=topup.user_id,
                                                             charge=charge))
