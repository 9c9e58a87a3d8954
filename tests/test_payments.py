"""Wallet top-ups with Telegram Stars through the real Application and the fake Bot API: the
invoice, the pre-checkout answer, the payment credited exactly once (twice delivered, after a
restart), the summary's Top up, refunds, /paysupport, /terms and the audit."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.app import updates_of_interest
from bot.handlers.payments import DEFAULT_TERMS
from bot.services import payments
from bot.standin.botapi import FakeMessage, feed
from storage import payments as topups
from storage import wallet as ledger
from storage.db import transaction
from tests.conftest import ADMIN, OTHER, USER, BotHarness, stop_harness
from tests.test_responsiveness import FAST, SLOW_PANEL, errors_logged, put, shown, start, tap, until
from tests.test_shop import balance_of, credit, drain, shop_harness, to_summary

JSON = dict[str, Any]
RATE = "50"  # Stars per USD in these tests: 10.00 USD = 500 Stars


async def stars_shop(tmp_path: Path, **overrides: Any) -> BotHarness:
    """A shop in demo mode that takes Stars at 50 per USD."""
    return await shop_harness(tmp_path, **{"STARS_PER_UNIT": RATE, **overrides})


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[BotHarness]:
    harness = await stars_shop(tmp_path)
    yield harness
    await stop_harness(harness)


def last_invoice(bot: BotHarness, user: int = USER) -> FakeMessage:
    invoices = bot.world.invoices(user)
    assert invoices, f"no invoice was sent: {bot.texts(user)[-2:]}"
    return invoices[-1]


async def invoice(bot: BotHarness, amount: str = "10", user: int = USER) -> FakeMessage:
    """The customer asks for a top-up of `amount` with /topup <amount>: its invoice."""
    sent = len(bot.world.invoices(user))
    await bot.send(f"/topup {amount}", user=user)
    assert len(bot.world.invoices(user)) == sent + 1, bot.texts(user)[-1:]
    return last_invoice(bot, user)


async def check_out(bot: BotHarness, message: FakeMessage, user: int = USER,
                    **forged: Any) -> tuple[JSON, JSON]:
    """`user` taps Pay on an invoice: the pre_checkout_query update and the bot's answer."""
    checkout = bot.world.user_checks_out(user, message.message_id, chat_id=message.chat_id,
                                         **forged)
    await feed(bot.app, checkout)
    answer = bot.world.checkout_answer(checkout)
    assert answer is not None, "the pre-checkout query was not answered"
    return checkout, answer


async def pay(bot: BotHarness, message: FakeMessage, user: int = USER) -> JSON:
    """Checkout accepted, Stars charged: the successful_payment update (already fed once)."""
    checkout, answer = await check_out(bot, message, user)
    assert answer["ok"], answer
    paid = bot.world.user_pays(checkout)
    await feed(bot.app, paid)
    return paid


def charge_of(paid: JSON) -> str:
    return str(paid["message"]["successful_payment"]["telegram_payment_charge_id"])


async def audit_ok(bot: BotHarness) -> payments.wallet.AuditReport:
    report = await payments.audit(bot.deps)
    assert report.ok, report.problems
    return report


# --- Stars off ------------------------------------------------------------------------------


async def test_without_stars_per_unit_topup_says_to_ask_an_admin(tmp_path: Path) -> None:
    bot = await shop_harness(tmp_path)
    try:
        await bot.send("/topup")
        text = bot.last().plain
        assert "does not take Telegram Stars" in text and "ask an admin" in text
        assert f"{USER}" in text
        await bot.send("/wallet")
        assert "💳 Top up" not in bot.buttons() and "ask an admin" in bot.last().plain
        assert bot.world.calls_to("sendInvoice") == []
    finally:
        await stop_harness(bot)


# --- the invoice ----------------------------------------------------------------------------


async def test_an_amount_button_sends_an_invoice_in_stars_naming_a_pending_top_up(
        bot: BotHarness) -> None:
    await bot.send("/topup")
    question = bot.last().plain
    assert "50 ⭐ per USD" in question and "between 1.00 USD and 200.00 USD" in question
    assert bot.buttons()[:5] == ["1.00 USD · 50 ⭐", "5.00 USD · 250 ⭐", "10.00 USD · 500 ⭐",
                                 "25.00 USD · 1250 ⭐", "50.00 USD · 2500 ⭐"]
    await bot.press("10.00 USD")
    [call] = bot.world.calls_to("sendInvoice")
    assert call["currency"] == "XTR" and call.get("provider_token", "") == ""
    assert call["prices"] == [{"label": "Top-up 10.00 USD", "amount": 500}]
    parsed = payments.parse_payload(call["payload"])
    assert parsed is not None
    row = await topups.get(bot.deps.db, parsed[0])
    assert row is not None and (row.user_id, row.amount, row.currency, row.stars, row.state) == (
        USER, Decimal("10"), "USD", 500, "pending")


async def test_stars_are_the_amount_times_the_rate_rounded_up(tmp_path: Path) -> None:
    bot = await stars_shop(tmp_path, STARS_PER_UNIT="77")
    try:
        await invoice(bot, "1.01")  # 77.77 Stars
        assert bot.world.calls_to("sendInvoice")[-1]["prices"][0]["amount"] == 78
        await invoice(bot, "2")  # exactly 154
        assert bot.world.calls_to("sendInvoice")[-1]["prices"][0]["amount"] == 154
        await bot.send("/topup")  # the largest top-up is what 10,000 Stars buy, rounded down
        assert "and 129.87 USD" in bot.last().plain
        await bot.send("/topup 129.88")
        assert "❌ The largest top-up is 129.87 USD." in bot.last().plain
    finally:
        await stop_harness(bot)


async def test_another_amount_bad_input_gets_a_reason_and_the_same_question(
        bot: BotHarness) -> None:
    await bot.send("/topup")
    await bot.press("Other amount")
    assert "Send the amount to top up, between 1.00 USD and 200.00 USD" in bot.last().plain
    for typed, reason in (("lots", "“lots” is not an amount"),
                          ("0.5", "The smallest top-up is 1.00 USD."),
                          ("201", "The largest top-up is 200.00 USD."),
                          ("1.234", "USD has 2 decimals at most.")):
        await bot.send(typed)
        text = bot.last().plain
        assert text.startswith(f"❌ {reason}"), text
        assert "Send the amount to top up" in text  # the same question again
    assert bot.world.calls_to("sendInvoice") == []
    await bot.send("7,5")
    assert bot.world.calls_to("sendInvoice")[-1]["prices"][0]["amount"] == 375
    await bot.send("hello")  # the wait is over: text is a search again, not an amount
    assert len(bot.world.calls_to("sendInvoice")) == 1
    await bot.send("/topup abc")  # typed with the command: the reason and the amounts
    assert bot.last().plain.startswith("❌ “abc” is not an amount")
    assert "1.00 USD · 50 ⭐" in bot.buttons()


async def test_a_command_while_an_amount_is_awaited_ends_the_wait_and_says_so(
        bot: BotHarness) -> None:
    await bot.send("/topup")
    await bot.press("Other amount")
    await bot.send("/orders")
    assert "I stopped waiting for an amount (no invoice was sent). Send /orders again." in (
        bot.last().plain)
    await bot.press("Other amount")
    await bot.send("/cancel")
    assert bot.last().plain == "OK, no top-up."
    assert bot.world.calls_to("sendInvoice") == []


# --- pre-checkout -----------------------------------------------------------------------------


async def test_pre_checkout_accepts_the_users_own_pending_invoice(bot: BotHarness) -> None:
    _checkout, answer = await check_out(bot, await invoice(bot))
    assert answer["ok"] is True and answer["after"] < 1.0


async def test_pre_checkout_refuses_someone_elses_invoice_and_nothing_is_credited(
        bot: BotHarness) -> None:
    message = await invoice(bot)  # USER's invoice, paid by OTHER (forwarded to them)
    checkout, answer = await check_out(bot, message, OTHER)
    assert answer == {**answer, "ok": False,
                      "error_message": "This invoice was made for someone else: ask for your "
                                       "own with /topup."}
    with pytest.raises(ValueError, match="not accepted"):
        bot.world.user_pays(checkout)
    assert await balance_of(bot, OTHER) == 0 and await balance_of(bot, USER) == 0


@pytest.mark.parametrize("payload", ["topup:1:AAAAAAAAAAAAAAAA", "topup:99:s9PsvBNSQE2wpGXV",
                                     "topup:1", "{}", "x" * 128])
async def test_pre_checkout_refuses_a_forged_payload(bot: BotHarness, payload: str) -> None:
    message = await invoice(bot)
    _checkout, answer = await check_out(bot, message, payload=payload)
    assert answer["ok"] is False
    assert answer["error_message"] == "This invoice is not valid: ask for a new one with /topup."


@pytest.mark.parametrize(("forged", "why"), [({"total_amount": 1}, "price is not right"),
                                             ({"total_amount": 501}, "price is not right"),
                                             ({"currency": "USD"}, "price is not right")])
async def test_pre_checkout_refuses_a_wrong_amount_or_currency(
        bot: BotHarness, forged: JSON, why: str) -> None:
    _checkout, answer = await check_out(bot, await invoice(bot), **forged)
    assert answer["ok"] is False and why in answer["error_message"]


async def test_pre_checkout_refuses_an_expired_invoice(
        bot: BotHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    message = await invoice(bot)
    [row] = await topups.of_user(bot.deps.db, USER)
    later = row.expires_at + 1
    monkeypatch.setattr(payments.time, "time", lambda: later)
    for _ in range(2):  # the first look marks it expired; it stays so
        _checkout, answer = await check_out(bot, message)
        assert answer["ok"] is False
        assert answer["error_message"] == ("This invoice has expired: ask for a new one with "
                                           "/topup.")
    assert (await topups.get(bot.deps.db, row.id)).state == "expired"  # type: ignore[union-attr]


async def test_pre_checkout_refuses_a_paid_invoice_and_a_banned_user(bot: BotHarness) -> None:
    message = await invoice(bot)
    payload = bot.world.invoice_payload(USER, message.message_id)
    await pay(bot, message)
    fresh = await invoice(bot, "5")  # Telegram will not let the paid one be paid: forge it
    _checkout, answer = await check_out(bot, fresh, payload=payload, total_amount=500)
    assert answer["ok"] is False and "paid already" in answer["error_message"]
    await bot.send(f"/deny {USER}", user=ADMIN)
    _checkout, answer = await check_out(bot, fresh)
    assert answer == {**answer, "ok": False,
                      "error_message": "You cannot top up in this shop. Nothing was charged."}


async def test_a_pre_checkout_is_answered_at_once_while_the_users_order_waits_on_the_panel(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bot = await stars_shop(tmp_path)
    try:
        await credit(bot, "5")
        message = await invoice(bot)
        await to_summary(bot)
        await start(bot)  # the real update processor, as in production
        bot.sandbox.latency = SLOW_PANEL
        confirm = tap(bot, "Confirm")
        await put(bot, confirm)
        await until(bot, lambda: len(bot.sandbox.requests_for("add")) == 1)  # now in flight

        checkout = bot.world.user_checks_out(USER, message.message_id)  # the same user pays
        asked_at = await put(bot, checkout)
        answer = await bot.world.wait_for_async(lambda: bot.world.checkout_answer(checkout))
        assert time.monotonic() - asked_at < FAST
        assert answer["ok"] is True
        assert "placed" not in bot.last().plain  # the order really was still on its way
        await shown(bot, USER, "placed", timeout=SLOW_PANEL + 5)
        await bot.app.stop()
        assert errors_logged(caplog) == []
    finally:
        await stop_harness(bot)


# --- the payment ------------------------------------------------------------------------------


async def test_a_payment_is_credited_once_and_the_customer_told_amount_and_balance(
        bot: BotHarness) -> None:
    await credit(bot, "2")
    paid = await pay(bot, await invoice(bot))
    assert bot.last().plain == ("✅ Payment received: 10.00 USD added to your wallet (500 ⭐). "
                                "Balance: 12.00 USD.")
    await feed(bot.app, paid)  # Telegram delivers the same update again
    assert bot.last().plain == ("✅ This payment is in your wallet already (10.00 USD). "
                                "Balance: 12.00 USD.")
    assert await balance_of(bot) == Decimal("12")
    entry = await ledger.get_by_reference(bot.deps.db, f"stars:{charge_of(paid)}")
    assert entry is not None and (entry.kind, entry.amount) == ("topup", Decimal("10"))
    [row] = await topups.of_user(bot.deps.db, USER)
    assert (row.state, row.charge_id) == ("paid", charge_of(paid))
    report = await audit_ok(bot)
    assert report.payments == 1


async def test_the_payment_redelivered_to_a_restarted_bot_is_credited_once(
        tmp_path: Path) -> None:
    first = await stars_shop(tmp_path)
    message = await invoice(first)
    checkout, answer = await check_out(first, message)
    assert answer["ok"]
    paid = first.world.user_pays(checkout)  # Telegram charged; the bot dies before it hears
    world = first.world
    await stop_harness(first)

    second = await shop_harness(tmp_path, world=world, STARS_PER_UNIT=RATE)
    try:
        await feed(second.app, paid)
        assert "Payment received: 10.00 USD" in second.last().plain
        # …and once more: the first delivery's offset was never confirmed either.
        third_delivery = dict(paid)
        await feed(second.app, third_delivery)
        assert "already" in second.last().plain
        assert await balance_of(second) == Decimal("10")
        assert len(await ledger.entries(second.deps.db, USER)) == 1
        await audit_ok(second)
    finally:
        await stop_harness(second)


async def test_a_credit_committed_before_a_crash_is_not_booked_again_after_the_restart(
        tmp_path: Path) -> None:
    first = await stars_shop(tmp_path)
    message = await invoice(first)
    checkout, _answer = await check_out(first, message)
    paid = first.world.user_pays(checkout)
    # The credit commits, then telling the customer fails (the bot dies mid-way): Telegram
    # never got the offset, so it delivers the update again to the restarted bot.
    first.world.fail_next("sendMessage", 502, "Bad Gateway")
    with pytest.raises(Exception, match="Bad Gateway"):
        await feed(first.app, paid)
    assert await balance_of(first) == Decimal("10")
    world = first.world
    await stop_harness(first)

    second = await shop_harness(tmp_path, world=world, STARS_PER_UNIT=RATE)
    try:
        await feed(second.app, paid)
        assert second.last().plain == ("✅ This payment is in your wallet already (10.00 USD). "
                                       "Balance: 10.00 USD.")
        assert len(await ledger.entries(second.deps.db, USER)) == 1
        await audit_ok(second)
    finally:
        await stop_harness(second)


async def test_a_payment_matching_no_top_up_is_kept_uncredited_and_the_admins_told(
        bot: BotHarness) -> None:
    message = await invoice(bot, user=OTHER)
    payload = bot.world.invoice_payload(OTHER, message.message_id)
    # Telegram would never charge this (the pre-checkout refuses it): a race, or a bug.
    paid = bot.world.successful_payment_update(USER, payload=payload, total_amount=500)
    await feed(bot.app, paid)
    assert "could not be added to your wallet" in bot.last().plain
    assert await balance_of(bot) == 0 and await balance_of(bot, OTHER) == 0
    await drain(bot)
    charge = charge_of(paid)
    assert any("Stars payment not credited" in t and f"/refund {USER} {charge}" in t
               for t in bot.texts(ADMIN))
    report = await audit_ok(bot)
    assert any("not credited" in note for note in report.notes)
    await bot.send(f"/refund {USER} {charge}", user=ADMIN)  # nothing to take from the wallet
    assert bot.last(ADMIN).plain.startswith("✅ Refunded 500 ⭐ to 42's Telegram Stars.")
    assert bot.world.star_payments[charge]["refunded"] is True
    await audit_ok(bot)


# --- a summary the wallet can't pay -----------------------------------------------------------


async def test_top_up_on_a_summary_invoices_what_is_missing_then_shows_it_again(
        tmp_path: Path) -> None:
    bot = await stars_shop(tmp_path, TOPUP_MIN="0.10")
    try:
        await credit(bot, "1")
        await to_summary(bot)  # 1.17 USD; the wallet holds 1.00
        summary = bot.last()
        assert "Your wallet is 0.17 USD short of this order. Top up with Telegram Stars" in (
            summary.plain)
        assert "💳 Top up 0.17 USD" in bot.buttons()
        await bot.press("Top up 0.17 USD")
        call = bot.world.calls_to("sendInvoice")[-1]
        assert call["prices"] == [{"label": "Top-up 0.17 USD", "amount": 9}]  # 8.5 rounded up
        await pay(bot, last_invoice(bot))
        texts = bot.texts()
        assert texts[-2].startswith("✅ Payment received: 0.17 USD added")
        again = bot.last()
        assert "Check the order, then tap Confirm." in again.plain
        assert "Your wallet: 1.17 USD" in again.plain and "short" not in again.plain
        assert "✅ Confirm" in bot.buttons() and "💳 Top up 0.17 USD" not in bot.buttons()
        assert bot.panel_requests("add") == []  # placing stays an explicit tap
        old_confirm = next(d for row in summary.buttons() for t, d in row if "Confirm" in t)
        assert old_confirm is not None
        tap = bot.world.user_presses(USER, summary.message_id, old_confirm, force=True)
        await feed(bot.app, tap)
        assert (bot.world.answer_to(tap) or {}).get("text") == "This summary is out of date."
        assert bot.panel_requests("add") == []
        await bot.press("Confirm")
        assert "Order" in bot.last().plain and "placed" in bot.last().plain
        assert len(bot.panel_requests("add")) == 1 and await balance_of(bot) == 0
        await audit_ok(bot)
    finally:
        await stop_harness(bot)


async def test_a_summary_top_up_is_at_least_topup_min_and_confirm_short_offers_it(
        bot: BotHarness) -> None:
    await credit(bot, "1")
    await to_summary(bot)
    assert "💳 Top up 1.00 USD" in bot.buttons()  # 0.17 missing, TOPUP_MIN is 1
    await bot.press("Confirm")
    text = bot.last().plain
    assert text.startswith("❌ Not enough in your wallet") and "Telegram Stars: /topup" in text
    assert "💳 Top up 1.00 USD" in bot.buttons()
    await bot.press("Top up 1.00 USD")
    assert bot.world.calls_to("sendInvoice")[-1]["prices"][0]["amount"] == 50


async def test_a_summary_top_up_button_checks_the_draft_is_the_callers(bot: BotHarness) -> None:
    await to_summary(bot)
    [draft] = (await bot.deps.db.execute_fetchall("SELECT id FROM orders"))
    tap = bot.world.user_presses(OTHER, 1, f"tp:d:{draft[0]}", force=True)
    await feed(bot.app, tap)
    assert (bot.world.answer_to(tap) or {}).get("text") == "This summary is out of date."
    assert bot.world.calls_to("sendInvoice") == []


# --- refunds ----------------------------------------------------------------------------------


async def test_refund_debits_the_wallet_refunds_the_stars_and_is_idempotent(
        bot: BotHarness) -> None:
    paid = await pay(bot, await invoice(bot))
    charge = charge_of(paid)
    assert bot.world.bot_stars == 500
    await bot.send(f"/refund {USER} {charge}", user=ADMIN)
    assert bot.last(ADMIN).plain == ("✅ Refunded 500 ⭐ (10.00 USD) to 42's Telegram Stars. "
                                     "10.00 USD was taken from the wallet (balance now 0.00 "
                                     "USD). The customer is told.")
    assert bot.world.bot_stars == 0 and await balance_of(bot) == 0
    debit = await ledger.get_by_reference(bot.deps.db, f"stars:{charge}:refund")
    assert debit is not None and debit.amount == Decimal("-10")
    await drain(bot)
    assert "↩️ Your Telegram Stars payment of 500 ⭐ was refunded: 10.00 USD was taken from " \
           "your wallet. Balance: 0.00 USD." in bot.texts()
    await bot.send(f"/refund {USER} {charge}", user=ADMIN)  # again: nothing more happens
    assert "was refunded before: nothing more to do" in bot.last(ADMIN).plain
    assert len(bot.world.calls_to("refundStarPayment")) == 1
    assert len(await ledger.entries(bot.deps.db, USER)) == 2
    await audit_ok(bot)


async def test_a_refund_of_money_already_spent_is_refused_before_telegram_is_asked(
        bot: BotHarness) -> None:
    paid = await pay(bot, await invoice(bot, "1"))
    await credit(bot, "0.50")
    await to_summary(bot)
    await bot.press("Confirm")  # 1.17 of the 1.50 spent on an order
    assert await balance_of(bot) == Decimal("0.33")
    await bot.send(f"/refund {USER} {charge_of(paid)}", user=ADMIN)
    assert bot.last(ADMIN).plain.startswith("❌ Not refunded: the wallet of 42 holds 0.33 USD, "
                                            "less than the 1.00 USD this payment added")
    assert bot.world.calls_to("refundStarPayment") == []
    assert bot.world.bot_stars == 50 and await balance_of(bot) == Decimal("0.33")
    await audit_ok(bot)


async def test_charge_already_refunded_counts_as_done(bot: BotHarness) -> None:
    paid = await pay(bot, await invoice(bot))
    bot.world.star_payments[charge_of(paid)]["refunded"] = True  # refunded outside the bot
    await bot.send(f"/refund {USER} {charge_of(paid)}", user=ADMIN)
    assert bot.last(ADMIN).plain.startswith("✅ Refunded 500 ⭐")
    assert await balance_of(bot) == 0
    [row] = await topups.of_user(bot.deps.db, USER)
    assert row.state == "refunded"
    await audit_ok(bot)


async def test_a_refund_telegram_refuses_gives_the_money_back_and_can_be_tried_again(
        bot: BotHarness) -> None:
    paid = await pay(bot, await invoice(bot))
    charge = charge_of(paid)
    bot.world.fail_next("refundStarPayment", 400, "Bad Request: CHARGE_NOT_FOUND")
    await bot.send(f"/refund {USER} {charge}", user=ADMIN)
    assert bot.last(ADMIN).plain == ("❌ Telegram refused the refund of 500 ⭐ (10.00 USD): "
                                     "Charge_not_found. The wallet's debit was given back.")
    assert await balance_of(bot) == Decimal("10") and bot.world.bot_stars == 500
    [row] = await topups.of_user(bot.deps.db, USER)
    assert row.state == "paid"
    await audit_ok(bot)
    await bot.send(f"/refund {USER} {charge}", user=ADMIN)
    assert bot.last(ADMIN).plain.startswith("✅ Refunded 500 ⭐")
    assert await ledger.get_by_reference(bot.deps.db, f"stars:{charge}:refund:2") is not None
    assert await balance_of(bot) == 0 and bot.world.bot_stars == 0
    await audit_ok(bot)


async def test_a_refund_whose_answer_is_lost_keeps_the_debit_until_asked_again(
        bot: BotHarness) -> None:
    paid = await pay(bot, await invoice(bot))
    charge = charge_of(paid)
    bot.world.fail_next("refundStarPayment", 502, "Bad Gateway", after_doing_it=True)
    await bot.send(f"/refund {USER} {charge}", user=ADMIN)
    text = bot.last(ADMIN).plain
    assert "Telegram did not answer the refund" in text and "stays held" in text
    assert await balance_of(bot) == 0  # held: it cannot be spent meanwhile
    report = await audit_ok(bot)
    assert any("never confirmed the refund" in note for note in report.notes)
    await bot.send(f"/refund {USER} {charge}", user=ADMIN)  # Telegram: already refunded
    assert bot.last(ADMIN).plain.startswith("✅ Refunded 500 ⭐")
    assert len(await ledger.entries(bot.deps.db, USER)) == 2  # the credit and one debit
    await audit_ok(bot)


async def test_refund_is_for_admins_and_checks_user_and_charge(bot: BotHarness) -> None:
    paid = await pay(bot, await invoice(bot))
    await bot.send(f"/refund {USER} {charge_of(paid)}")
    assert bot.last().plain == "This command is for the bot's admins."
    await bot.send(f"/refund {OTHER} {charge_of(paid)}", user=ADMIN)
    assert bot.last(ADMIN).plain == "❌ That payment is not user 43's (it is 42's)."
    await bot.send(f"/refund {USER} stxNOPE", user=ADMIN)
    assert bot.last(ADMIN).plain == "❌ No Stars payment with this charge id is known."
    await bot.send("/refund", user=ADMIN)
    assert bot.last(ADMIN).plain.startswith("Usage: /refund <user id> <charge id>")
    assert bot.world.calls_to("refundStarPayment") == [] and await balance_of(bot) == 10


async def test_the_admins_view_of_a_wallet_has_a_refund_button_per_payment(
        bot: BotHarness) -> None:
    await pay(bot, await invoice(bot))
    await bot.send("/wallet")  # the customer: Top up, never Refund
    assert "💳 Top up" in bot.buttons() and not any("Refund" in b for b in bot.buttons())
    await bot.send(f"/wallet {USER}", user=ADMIN)
    [label] = [b for b in bot.buttons(ADMIN) if b.startswith("↩️ Refund 500 ⭐ · 10.00 USD")]
    await bot.press(label, user=ADMIN)
    assert "Refund the Stars payment of 42: 500 ⭐" in bot.last(ADMIN).plain
    assert "the wallet is debited 10.00 USD first" in bot.last(ADMIN).plain
    assert bot.world.calls_to("refundStarPayment") == []
    await bot.press("Yes, refund", user=ADMIN)
    assert bot.last(ADMIN).plain.startswith("✅ Refunded 500 ⭐ (10.00 USD)")
    assert await balance_of(bot) == 0
    await bot.press("◀ Wallet", user=ADMIN)
    assert not any("Refund" in b for b in bot.buttons(ADMIN))  # nothing left to refund
    await bot.press_data("rf:1:y", user=USER)  # a customer's forged tap does nothing
    assert len(bot.world.calls_to("refundStarPayment")) == 1


# --- the audit --------------------------------------------------------------------------------


async def test_the_audit_finds_a_paid_top_up_without_its_credit_and_a_refund_without_debit(
        bot: BotHarness) -> None:
    await pay(bot, await invoice(bot))
    await bot.send("/audit", user=ADMIN)
    assert "1 Stars payment." in bot.last(ADMIN).plain and "✅" in bot.last(ADMIN).plain
    db = bot.deps.db
    # A code path that marks a top-up paid without booking its credit is what the audit is for.
    row = await topups.create(db, user_id=OTHER, chat_id=OTHER, nonce="n" * 16,
                              amount=Decimal("5"), currency="USD", stars=250, expires_at=9e9)
    await topups.mark_paid(db, row.id, charge_id="stxLOST", provider_charge_id="")
    [mine] = await topups.of_user(db, USER)
    async with transaction(db):
        await db.execute("UPDATE topups SET state = 'refunded', refund_attempts = 1"
                         " WHERE id = ?", (mine.id,))
    await bot.send("/audit", user=ADMIN)
    text = bot.last(ADMIN).plain
    assert "❌ Audit found 2 problems" in text
    assert "Stars payment stxLOST (user 43, paid) has no credit in the wallet" in text
    assert f"Stars payment {mine.charge_id} (user 42, refunded) has 0 refund debit(s), 1 due" \
        in text


# --- /paysupport, /terms, the menu, allowed updates -------------------------------------------


async def test_paysupport_and_terms_answer_and_are_in_the_menu(bot: BotHarness) -> None:
    await bot.send("/paysupport")
    assert "Payment support" in bot.last().plain and f"Your user id: {USER}" in bot.last().plain
    await bot.send("/terms")
    assert bot.last().html == DEFAULT_TERMS
    menu = [c["command"] for c in bot.world.calls_to("setMyCommands")[-1]["commands"]]
    assert {"topup", "paysupport", "terms"} <= set(menu)


async def test_paysupport_and_terms_come_from_settings_or_a_file(tmp_path: Path) -> None:
    terms = tmp_path / "terms.txt"
    terms.write_text("No refunds after 30 days <really>.\n", encoding="utf-8")
    bot = await stars_shop(tmp_path, PAYSUPPORT_TEXT="Write to @shop_help", TERMS_TEXT=f"@{terms}")
    try:
        await bot.send("/paysupport")
        assert bot.last().plain == f"Write to @shop_help\n\nYour user id: {USER}"
        await bot.send("/terms")
        assert bot.last().plain == "No refunds after 30 days <really>."
    finally:
        await stop_harness(bot)


def test_telegram_is_asked_for_pre_checkout_queries() -> None:
    assert "pre_checkout_query" in updates_of_interest()
    assert {"message", "callback_query"} <= set(updates_of_interest())
