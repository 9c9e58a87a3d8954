"""The Stars payment rules without Telegram: bot.services.payments on a database and the sandbox
panel, with no Application and no Bot API (refunds get a stand-in for refundStarPayment)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.catalog import Catalog
from bot.deps import Deps
from bot.panel.client import PanelClient
from bot.panel.models import SANDBOX_URL
from bot.panel.sandbox import DEMO_KEY, SandboxPanel
from bot.ratelimit import UserRateLimiter
from bot.services import payments, wallet
from bot.services.payments import TopupRefused
from storage import outbox, users
from storage import payments as topups
from storage import wallet as ledger
from storage.db import close_database, open_database
from tests.conftest import ADMIN, OTHER, USER, make_settings

XTR = "XTR"


async def make_deps(tmp_path: Path, **overrides: Any) -> Deps:
    """A shop's shared objects (demo sandbox as its panel), taking Stars at 50 per USD."""
    settings = make_settings(tmp_path, MODE="shop", **{"STARS_PER_UNIT": "50", **overrides})
    db = await open_database(settings.database_path)
    sandbox = SandboxPanel(keys={DEMO_KEY: Decimal("100")})
    panel = PanelClient(SANDBOX_URL, transport=sandbox.transport())
    return Deps(settings=settings, db=db, panel=panel, catalog=Catalog(panel, db, ttl=3600),
                limiter=UserRateLimiter(100), panel_url=SANDBOX_URL, operator_key=DEMO_KEY,
                demo=True, sandbox=sandbox)


@pytest.fixture
async def deps(tmp_path: Path) -> AsyncIterator[Deps]:
    made = await make_deps(tmp_path)
    yield made
    await made.panel.aclose()
    await close_database(made.db)


async def pay(deps: Deps, invoice: payments.Invoice, *, charge: str = "stx1",
              user: int = USER, stars: int | None = None) -> payments.Payment:
    """Records Telegram's payment of an invoice."""
    return await payments.record_payment(
        deps, user_id=user, chat_id=user, payload=invoice.payload, currency=XTR,
        total_amount=invoice.stars if stars is None else stars, charge_id=charge)


class FakeRefunds:
    """refundStarPayment as a service test sees it: records calls, answers as told."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.calls: list[tuple[int, str]] = []
        self.balance_seen: list[Decimal] = []
        self.answer: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.arrived: asyncio.Queue[None] = asyncio.Queue()

    async def __call__(self, user_id: int, charge_id: str) -> None:
        self.calls.append((user_id, charge_id))
        self.balance_seen.append((await wallet.balance(self.deps, user_id)).amount)
        self.arrived.put_nowait(None)
        if self.gate is not None:
            await self.gate.wait()
        if self.answer is not None:
            raise self.answer


# --- amounts and invoices -------------------------------------------------------------------


def test_stars_are_rounded_up_to_whole_stars_exactly(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, MODE="shop", STARS_PER_UNIT="77")
    assert payments.stars_price(settings, Decimal("1.01")) == 78  # 77.77
    assert payments.stars_price(settings, Decimal("2")) == 154
    assert payments.stars_price(settings, Decimal("0.01")) == 1  # never 0
    assert payments.largest(settings, "USD") == Decimal("129.87")  # 10,000 Stars, rounded down
    assert payments.largest(settings, "JPY") == Decimal("129")
    cheap = make_settings(tmp_path, MODE="shop", STARS_PER_UNIT="0.3")
    assert payments.stars_price(cheap, Decimal("10")) == 3


def test_offered_amounts_fit_the_currency_and_the_limits(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, MODE="shop", STARS_PER_UNIT="50",
                             TOPUP_AMOUNTS="0.5,2,10,100", TOPUP_MIN="0.5", TOPUP_MAX="100")
    assert payments.offered(settings, "USD") == [Decimal("0.5"), Decimal("2"), Decimal("10"),
                                                 Decimal("100")]
    assert payments.offered(settings, "JPY") == [Decimal("2"), Decimal("10"),
                                                 Decimal("100")]  # no half yen
    off = make_settings(tmp_path, MODE="shop")
    assert payments.offered(off, "USD") == [] and not payments.enabled(off)


async def test_a_top_up_outside_the_limits_is_refused_with_the_reason(deps: Deps) -> None:
    with pytest.raises(TopupRefused, match=re.escape("The smallest top-up is 1.00 USD")):
        await payments.new_topup(deps, USER, USER, Decimal("0.99"))
    with pytest.raises(TopupRefused, match=re.escape("The largest top-up is 200.00 USD")):
        await payments.new_topup(deps, USER, USER, Decimal("200.01"))
    with pytest.raises(TopupRefused, match="2 decimals at most"):
        await payments.new_topup(deps, USER, USER, Decimal("1.001"))
    assert await topups.of_user(deps.db, USER) == []


async def test_an_invoice_stays_within_telegrams_limits(deps: Deps) -> None:
    invoice = await payments.new_topup(deps, USER, USER, Decimal("200"))
    assert 1 <= len(invoice.title) <= 32 and 1 <= len(invoice.description) <= 255
    assert 1 <= len(invoice.payload.encode()) <= 128 and invoice.stars == 10_000
    assert payments.parse_payload(invoice.payload) == (invoice.topup.id, invoice.topup.nonce)


async def test_a_banned_customer_cannot_get_an_invoice(deps: Deps) -> None:
    await users.set_banned(deps.db, USER, True)
    with pytest.raises(TopupRefused, match="You cannot top up"):
        await payments.new_topup(deps, USER, USER, Decimal("5"))


# --- pre-checkout ---------------------------------------------------------------------------


async def test_pre_checkout_rules(deps: Deps) -> None:
    invoice = await payments.new_topup(deps, USER, USER, Decimal("5"), now=1000.0)
    payload, stars = invoice.payload, invoice.stars

    async def check(**kwargs: Any) -> str | None:
        values: dict[str, Any] = {"user_id": USER, "payload": payload, "currency": XTR,
                                  "total_amount": stars, "now": 1001.0, **kwargs}
        return await payments.check_checkout(deps, **values)

    assert await check() is None
    assert "someone else" in (await check(user_id=OTHER) or "")
    forged = payload[:-1] + ("y" if payload.endswith("x") else "x")  # another nonce, always
    assert "not valid" in (await check(payload=forged) or "")
    assert "not valid" in (await check(payload="topup:1:" + "A" * 16) or "")
    assert "price is not right" in (await check(total_amount=stars - 1) or "")
    assert "price is not right" in (await check(currency="USD") or "")
    assert "expired" in (await check(now=1000.0 + payments.TOPUP_TTL) or "")
    assert "expired" in (await check() or "")  # expired stays expired
    assert (await topups.get(deps.db, invoice.topup.id)).state == "expired"  # type: ignore[union-attr]


# --- payments -------------------------------------------------------------------------------


async def test_a_payment_is_credited_once_whatever_repeats_even_concurrently(
        deps: Deps) -> None:
    invoice = await payments.new_topup(deps, USER, USER, Decimal("5"))
    results = await asyncio.gather(*(pay(deps, invoice) for _ in range(5)))
    assert sum(r.new for r in results) == 1 and all(r.credited for r in results)
    assert (await wallet.balance(deps, USER)).amount == Decimal("5")
    [entry] = await ledger.entries(deps.db, USER)
    assert entry.reference == "stars:stx1" and entry.kind == "topup"
    assert (await payments.audit(deps)).ok


async def test_the_credit_and_the_paid_mark_are_one_transaction(
        deps: Deps, monkeypatch: pytest.MonkeyPatch) -> None:
    invoice = await payments.new_topup(deps, USER, USER, Decimal("5"))

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(payments.wallet, "credit", broken)
    with pytest.raises(RuntimeError):
        await pay(deps, invoice)
    row = await topups.get(deps.db, invoice.topup.id)
    assert row is not None and row.state == "pending" and row.charge_id is None
    monkeypatch.undo()
    assert (await pay(deps, invoice)).new  # the redelivery books it
    assert (await wallet.balance(deps, USER)).amount == Decimal("5")


async def test_a_payment_after_expiry_that_was_accepted_is_still_credited(deps: Deps) -> None:
    invoice = await payments.new_topup(deps, USER, USER, Decimal("5"), now=0.0)
    await topups.expire(deps.db, invoice.topup.id)
    assert (await pay(deps, invoice)).credited  # Telegram took the Stars: they are the user's


async def test_an_invoice_paid_twice_credits_both_payments(deps: Deps) -> None:
    invoice = await payments.new_topup(deps, USER, USER, Decimal("5"))
    await pay(deps, invoice, charge="stx1")
    second = await pay(deps, invoice, charge="stx2")
    assert second.new and second.credited and second.topup.id != invoice.topup.id
    assert (await wallet.balance(deps, USER)).amount == Decimal("10")
    assert (await payments.audit(deps)).ok


async def test_stray_payments_are_kept_uncredited_and_the_admins_told_once(deps: Deps) -> None:
    invoice = await payments.new_topup(deps, OTHER, OTHER, Decimal("5"))
    for charge, kwargs in (("stxA", {"user": USER}), ("stxB", {"stars": 1})):
        for _ in range(2):
            paid = await pay(deps, invoice, charge=charge, **kwargs)
            assert not paid.credited and paid.topup.state == "stray"
    assert (await wallet.balance(deps, USER)).amount == 0
    assert (await wallet.balance(deps, OTHER)).amount == 0
    pending = await outbox.pending_notifications(deps.db, now=9e12)
    alerts = [n for n in pending if n.chat_id == ADMIN and "not credited" in n.text]
    assert len(alerts) == 2  # one per payment, not per delivery
    report = await payments.audit(deps)
    assert report.ok and sum("not credited" in note for note in report.notes) == 2


# --- refunds --------------------------------------------------------------------------------


async def test_the_wallet_is_debited_before_telegram_is_asked(deps: Deps) -> None:
    await pay(deps, await payments.new_topup(deps, USER, USER, Decimal("5")))
    refunds = FakeRefunds(deps)
    refunds.gate = asyncio.Event()
    running = asyncio.create_task(payments.refund(deps, user_id=USER, charge_id="stx1",
                                                  send_refund=refunds))
    await refunds.arrived.get()
    assert refunds.balance_seen == [Decimal(0)]  # debited before the call went out
    # While Telegram is asked, the money cannot be spent: it is no longer in the wallet.
    with pytest.raises(wallet.NotEnough):
        await wallet.debit(deps, USER, Decimal("1"), reference="spend", currency="USD")
    refunds.gate.set()
    outcome = await running
    assert isinstance(outcome, payments.Refunded) and outcome.debit is not None
    assert (await topups.by_charge(deps.db, "stx1")).state == "refunded"  # type: ignore[union-attr]
    assert (await payments.audit(deps)).ok


async def test_a_refund_twice_asks_telegram_once(deps: Deps) -> None:
    await pay(deps, await payments.new_topup(deps, USER, USER, Decimal("5")))
    refunds = FakeRefunds(deps)
    first = await payments.refund(deps, user_id=USER, charge_id="stx1", send_refund=refunds)
    second = await payments.refund(deps, user_id=USER, charge_id="stx1", send_refund=refunds)
    assert isinstance(first, payments.Refunded) and not first.before
    assert isinstance(second, payments.Refunded) and second.before
    assert len(refunds.calls) == 1 and len(await ledger.entries(deps.db, USER)) == 2


async def test_two_admins_refunding_at_once_debit_once_and_tell_the_customer_once(
        deps: Deps) -> None:
    await pay(deps, await payments.new_topup(deps, USER, USER, Decimal("5")))
    refunds = FakeRefunds(deps)
    refunds.gate = asyncio.Event()

    def refund() -> asyncio.Task[payments.RefundOutcome]:
        return asyncio.create_task(payments.refund(deps, user_id=USER, charge_id="stx1",
                                                   send_refund=refunds))

    first = refund()
    await refunds.arrived.get()  # the first admin's debit is booked, Telegram asked
    second = refund()  # the second finds it 'refunding' and asks Telegram too
    await refunds.arrived.get()
    refunds.gate.set()
    outcomes = [await first, await second]
    assert all(isinstance(o, payments.Refunded) for o in outcomes)
    assert sorted(o.before for o in outcomes if isinstance(o, payments.Refunded)) == [
        False, True]
    assert len(await ledger.entries(deps.db, USER)) == 2  # one credit, one debit
    told = [n for n in await outbox.pending_notifications(deps.db, now=9e12)
            if n.chat_id == USER and "was refunded" in n.text]
    assert len(told) == 1
    assert (await payments.audit(deps)).ok


async def test_a_refund_of_spent_money_is_refused_and_telegram_never_asked(deps: Deps) -> None:
    await pay(deps, await payments.new_topup(deps, USER, USER, Decimal("5")))
    await wallet.debit(deps, USER, Decimal("4.99"), reference="spent", currency="USD")
    refunds = FakeRefunds(deps)
    outcome = await payments.refund(deps, user_id=USER, charge_id="stx1", send_refund=refunds)
    assert isinstance(outcome, payments.RefundShort)
    assert (outcome.balance, outcome.amount) == (Decimal("0.01"), Decimal("5"))
    assert refunds.calls == []
    assert (await topups.by_charge(deps.db, "stx1")).state == "paid"  # type: ignore[union-attr]


@pytest.mark.parametrize("answer", [payments.TelegramRefused("Charge_id_invalid")])
async def test_a_refused_refund_is_given_back_and_retried_under_a_new_reference(
        deps: Deps, answer: BaseException) -> None:
    await pay(deps, await payments.new_topup(deps, USER, USER, Decimal("5")))
    refunds = FakeRefunds(deps)
    refunds.answer = answer
    outcome = await payments.refund(deps, user_id=USER, charge_id="stx1", send_refund=refunds)
    assert isinstance(outcome, payments.RefundRefused) and outcome.back is not None
    assert (await wallet.balance(deps, USER)).amount == Decimal("5")
    assert (await payments.audit(deps)).ok
    refunds.answer = None
    again = await payments.refund(deps, user_id=USER, charge_id="stx1", send_refund=refunds)
    assert isinstance(again, payments.Refunded) and again.debit is not None
    assert again.debit.reference == "stars:stx1:refund:2"
    assert [e.reference for e in await ledger.entries(deps.db, USER)] == [
        "stars:stx1:refund:2", "stars:stx1:refund:back", "stars:stx1:refund", "stars:stx1"]
    assert (await payments.audit(deps)).ok


async def test_an_unknown_refund_outcome_keeps_the_debit_and_the_next_call_finishes_it(
        deps: Deps) -> None:
    await pay(deps, await payments.new_topup(deps, USER, USER, Decimal("5")))
    refunds = FakeRefunds(deps)
    refunds.answer = TimeoutError()
    outcome = await payments.refund(deps, user_id=USER, charge_id="stx1", send_refund=refunds)
    assert isinstance(outcome, payments.RefundUnknown) and outcome.held is not None
    assert (await wallet.balance(deps, USER)).amount == 0
    refunds.answer = payments.AlreadyRefunded()
    done = await payments.refund(deps, user_id=USER, charge_id="stx1", send_refund=refunds)
    assert isinstance(done, payments.Refunded) and done.debit == outcome.held
    assert len(await ledger.entries(deps.db, USER)) == 2
    assert (await payments.audit(deps)).ok


async def test_the_audit_flags_a_stars_entry_without_a_payment(deps: Deps) -> None:
    await wallet.credit(deps, USER, Decimal("3"), reference="stars:stxGHOST", currency="USD")
    report = await payments.audit(deps)
    assert not report.ok
    assert report.problems == ["ledger entry stars:stxGHOST names no Stars payment"]
