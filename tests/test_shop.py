"""Shop mode through the real Application and the sandbox panel: prices, the wallet, charges,
refunds, the admins' tools, and what customers never see."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.jobs import send_pending
from bot.panel.sandbox import DEMO_KEY, SandboxPanel
from bot.services import mass_order, shop, wallet
from bot.services.tracking import LOST_AFTER, poll_orders
from bot.standin.botapi import feed
from storage import orders
from storage import wallet as ledger
from storage.orders import Order
from tests.conftest import ADMIN, OTHER, USER, BotHarness, start_harness, stop_harness

LINK = "https://instagram.com/p/abc"


async def shop_harness(tmp_path: Path, *, balance: str = "100", **overrides: Any) -> BotHarness:
    """A shop in demo mode: the sandbox is the shop's panel; its orders move only when told."""
    sandbox = SandboxPanel(keys={DEMO_KEY: Decimal(balance)}, speed=0.0001)
    return await start_harness(tmp_path, sandbox=sandbox, MODE="shop", **overrides)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[BotHarness]:
    harness = await shop_harness(tmp_path)
    yield harness
    await stop_harness(harness)


async def drain(bot: BotHarness) -> None:
    """Sends what the outbox holds, as the tracker's job does."""
    await send_pending(bot.app.bot, bot.deps)


async def credit(bot: BotHarness, amount: str, user: int = USER, note: str = "") -> None:
    """An admin tops up a wallet."""
    await bot.send(f"/credit {user} {amount} {note}".strip(), user=ADMIN)
    assert "✅" in bot.last(ADMIN).plain, bot.last(ADMIN).plain


async def to_summary(bot: BotHarness, *, service: int = 1, quantity: str = "1000",
                     user: int = USER, link: str = LINK) -> None:
    """A customer fills in an order of a Default service up to its summary."""
    await bot.send(f"/order {service}", user=user)
    await bot.send(link, user=user)
    await bot.send(quantity, user=user)
    if any("Skip" in label for label in bot.buttons(user)):  # drip-feed offered
        await bot.press("Skip", user=user)
    assert "Check the order" in bot.last(user).plain, bot.last(user).plain


async def buy(bot: BotHarness, **kwargs: Any) -> Order:
    """A customer orders and confirms; the order it became."""
    await to_summary(bot, **kwargs)
    await bot.press("Confirm", user=kwargs.get("user", USER))
    newest = await orders.list_orders(bot.deps.db, owner_id=kwargs.get("user", USER), limit=1)
    return newest[0]


async def balance_of(bot: BotHarness, user: int = USER) -> Decimal:
    return (await wallet.balance(bot.deps, user)).amount


async def assert_audit_holds(bot: BotHarness) -> None:
    report = await wallet.audit(bot.deps)
    assert report.ok, report.problems


def pushes(bot: BotHarness, user: int = USER, since: int = 0) -> list[str]:
    """What the bot sent the user (newest last), from message number `since` on."""
    return bot.texts(user)[since:]


# --- what customers see ------------------------------------------------------------------------


async def test_customers_browse_at_shop_prices_and_never_see_the_panels_rates(
        bot: BotHarness) -> None:
    await bot.send("/services followers")
    listing = bot.last().plain
    assert "#1 Instagram Followers" in listing and "1.17 USD per 1000" in listing
    assert "0.90" not in listing
    await bot.press("#1 Instagram Followers")
    assert "Price: 1.17 USD per 1000" in bot.last().plain
    await bot.send("/services auto likes")  # subscriptions: no total is known in advance
    assert "Auto Likes" not in bot.last().plain
    await bot.send("/order 4")
    assert "There is no service #4" in bot.last().plain
    await bot.send("/services followers", user=ADMIN)  # admins see the panel as today
    assert "0.90 USD per 1000" in bot.last(ADMIN).plain


async def test_the_summary_shows_the_total_rounded_up_and_the_wallet_not_the_panel(
        bot: BotHarness) -> None:
    await credit(bot, "5")
    balance_requests = len(bot.panel_requests("balance"))
    await to_summary(bot, quantity="100")
    summary = bot.last().plain
    assert "Total: 0.12 USD (1.17 USD per 1000 × 100)" in summary  # 0.117 rounded up
    assert "Your wallet: 5.00 USD" in summary
    assert "Balance:" not in summary and "0.09" not in summary and "Estimated cost" not in summary
    assert len(bot.panel_requests("balance")) == balance_requests  # the panel is not asked
    [draft] = await orders.list_orders(bot.deps.db, owner_id=USER, include_drafts=True)
    assert draft.price == Decimal("0.12") and draft.cost == Decimal("0.09")


async def test_confirm_charges_the_wallet_before_the_order_is_sent(bot: BotHarness) -> None:
    await credit(bot, "5")
    order = await buy(bot)
    done = bot.last().plain
    assert done.startswith(f"✅ Order {order.panel_order_id} placed. 1.17 USD was charged to "
                           "your wallet (balance 3.83 USD).")
    assert len(bot.panel_requests("add")) == 1
    assert order.state == "placed" and order.price == Decimal("1.17")
    [charge, topup] = await ledger.entries(bot.deps.db, USER)
    assert (charge.kind, charge.amount, charge.balance_after, charge.reference) == (
        "charge", Decimal("-1.17"), Decimal("3.83"), f"order:{order.id}:charge")
    assert topup.kind == "topup"
    # The sandbox charged the shop the panel's cost, not the customer's price.
    assert bot.sandbox.balance_of(DEMO_KEY) == Decimal("99.10")
    await assert_audit_holds(bot)


async def test_not_enough_in_the_wallet_sends_nothing_and_says_what_is_missing(
        bot: BotHarness) -> None:
    await credit(bot, "1")
    await to_summary(bot)
    assert "⚠️ Your wallet is 0.17 USD short of this order." in bot.last().plain
    await bot.press("Confirm")
    text = bot.last().plain
    assert text.startswith("❌ Not enough in your wallet: this order costs 1.17 USD and your "
                           "wallet holds 1.00 USD, so 0.17 USD is missing. Nothing was sent.")
    assert "ask an admin" in text and str(USER) in text
    assert bot.panel_requests("add") == []
    [draft] = await orders.list_orders(bot.deps.db, owner_id=USER, include_drafts=True)
    assert draft.state == "draft"  # the claim went back with the charge
    assert await balance_of(bot) == Decimal("1.00")
    await credit(bot, "0.17")
    await bot.press("Confirm")
    assert "placed. 1.17 USD was charged" in bot.last().plain
    assert await balance_of(bot) == 0
    await assert_audit_holds(bot)


async def test_a_refused_order_is_refunded_with_its_failure_and_retried_as_a_new_order(
        bot: BotHarness) -> None:
    await credit(bot, "5")
    await to_summary(bot)
    bot.sandbox.fail_next("add", "error:Bad link")
    await bot.press("Confirm")
    text = bot.last().plain
    assert text.startswith("❌ The link was not accepted.")
    assert "Nothing was placed: the 1.17 USD was refunded to your wallet (balance 5.00 USD)." \
        in text
    assert "panel" not in text.split("\n\n")[0].lower()
    [failed] = await orders.list_orders(bot.deps.db, owner_id=USER)
    assert failed.state == "failed"
    money = await ledger.order_money(bot.deps.db, [failed.id])
    assert money == {failed.id: (Decimal("1.17"), Decimal("1.17"))}
    await bot.press("Confirm (retry)")
    assert "placed. 1.17 USD was charged" in bot.last().plain
    placed = await orders.list_orders(bot.deps.db, owner_id=USER)
    assert [o.state for o in placed] == ["placed", "failed"] and placed[0].id != failed.id
    assert await balance_of(bot) == Decimal("3.83")
    assert len(bot.panel_requests("add")) == 2
    await assert_audit_holds(bot)


async def test_the_panel_out_of_funds_is_the_shops_problem_and_admins_hear_at_once(
        tmp_path: Path) -> None:
    bot = await shop_harness(tmp_path, balance="0.50")
    try:
        await credit(bot, "5")
        await to_summary(bot)
        await bot.press("Confirm")
        text = bot.last().plain
        assert text.startswith("❌ The shop can't take orders right now. Please try again "
                               "later.\nNothing was placed: the 1.17 USD was refunded")
        assert "funds" not in text and "balance on" not in text
        admin_before = len(bot.texts(ADMIN))
        await drain(bot)
        alert = bot.texts(ADMIN)[admin_before:]
        assert len(alert) == 1 and "The panel refused a customer's order" in alert[0]
        assert "Not enough funds on balance" in alert[0] and "Top up the panel" in alert[0]
        assert await balance_of(bot) == Decimal("5.00")
        [failed] = await orders.list_orders(bot.deps.db, owner_id=USER)
        await bot.send("/orders")
        await bot.press(f"bot #{failed.id}")
        card = bot.last().plain
        assert "Not placed" in card and "Paid from the wallet: 1.17 USD" in card
        assert "Refunded to the wallet: 1.17 USD" in card and "funds" not in card
        await assert_audit_holds(bot)
    finally:
        await stop_harness(bot)


async def test_outcome_unknown_holds_the_charge_until_an_admin_finds_it_not_placed(
        bot: BotHarness) -> None:
    await credit(bot, "5")
    await to_summary(bot)
    bot.sandbox.fail_next("add", "timeout")  # never reached the panel, but nobody knows
    await bot.press("Confirm")
    text = bot.last().plain
    assert "I do not know yet whether your order was placed" in text
    assert "The 1.17 USD charged to your wallet stays held until the shop has checked" in text
    assert "panel's website" not in text
    assert await balance_of(bot) == Decimal("3.83")
    await drain(bot)
    [order] = await orders.list_orders(bot.deps.db, owner_id=USER)
    assert f"Shop order bot #{order.id}" in bot.texts(ADMIN)[-1]
    # The customer cannot settle it (their money hangs on it): no buttons, a note.
    await bot.send("/orders")
    await bot.press(f"bot #{order.id}")
    card = bot.last().plain
    assert "Paid from the wallet: 1.17 USD" in card and "stays held" in card
    assert "It was not placed" not in bot.buttons()
    await bot.press_data(f"oc:{order.id}:npy")
    assert (await orders.get_order(bot.deps.db, order.id)).state == "unknown"  # type: ignore[union-attr]
    # An admin checks the panel and settles it: refunded in the same step.
    await bot.send("/orders", user=ADMIN)
    await bot.press(f"bot #{order.id}", user=ADMIN)
    await bot.press("It was not placed", user=ADMIN)
    await bot.press("Yes, it was not placed", user=ADMIN)
    assert "Marked as not placed" in bot.last(ADMIN).plain
    assert await balance_of(bot) == Decimal("5.00")
    await drain(bot)
    assert bot.texts()[-1] == ("↩️ 1.17 USD refunded to your wallet: your order of Instagram "
                               "Followers was not placed. Balance: 5.00 USD.")
    await assert_audit_holds(bot)


async def test_outcome_unknown_found_placed_keeps_the_charge(bot: BotHarness) -> None:
    await credit(bot, "5")
    await to_summary(bot)
    bot.sandbox.fail_next("add", "timeout_after")  # placed, but the answer was lost
    await bot.press("Confirm")
    [order] = await orders.list_orders(bot.deps.db, owner_id=USER)
    [on_panel] = bot.sandbox.orders_of(DEMO_KEY)
    await bot.send("/orders", user=ADMIN)
    await bot.press(f"bot #{order.id}", user=ADMIN)
    await bot.press("It was placed", user=ADMIN)
    await bot.send(str(on_panel["order"]), user=ADMIN)
    assert "Linked" in bot.last(ADMIN).plain
    linked = await orders.get_order(bot.deps.db, order.id)
    assert linked is not None and linked.state == "placed"
    assert await balance_of(bot) == Decimal("3.83")
    await drain(bot)
    assert f"was placed after all: it is order {on_panel['order']}" in bot.texts()[-1]
    await assert_audit_holds(bot)


# --- refunds from the panel's statuses ----------------------------------------------------------


async def test_canceled_refunds_the_full_charge_exactly_once_whatever_repeats(
        bot: BotHarness) -> None:
    await credit(bot, "5")
    order = await buy(bot)
    assert order.panel_order_id is not None
    bot.sandbox.set_status(order.panel_order_id, "Canceled")
    await poll_orders(bot.deps)
    assert await balance_of(bot) == Decimal("5.00")
    await drain(bot)
    assert bot.texts()[-1] == (f"↩️ 1.17 USD refunded to your wallet: order "
                               f"{order.panel_order_id} · Instagram Followers was Canceled. "
                               "Balance: 5.00 USD.")
    status_notice = bot.texts()[-2]
    assert "Canceled" in status_notice and "charged" not in status_notice
    # Seen again by every path, and a different final status later (out of order).
    await bot.send(f"/status {order.panel_order_id}")
    await poll_orders(bot.deps)
    bot.sandbox.set_status(order.panel_order_id, "Partial", remains=10)
    await bot.send(f"/status {order.panel_order_id}")
    await bot.send(f"/status {order.panel_order_id}")
    assert await balance_of(bot) == Decimal("5.00")
    assert [e.kind for e in await ledger.entries(bot.deps.db, USER)] == ["refund", "charge",
                                                                         "topup"]
    await assert_audit_holds(bot)


async def test_a_paid_order_the_panel_loses_keeps_its_charge_and_an_admin_is_told(
        bot: BotHarness) -> None:
    await credit(bot, "5")
    order = await buy(bot)
    assert order.panel_order_id is not None
    bot.sandbox.forget(order.panel_order_id)  # purged on the panel: "Incorrect order ID"
    now = time.time()
    for strike in range(1, LOST_AFTER + 1):
        await poll_orders(bot.deps, now=now + strike * 3600)
    await drain(bot)
    assert bot.texts()[-1] == (
        f"Order {order.panel_order_id} · Instagram Followers: the panel no longer knows this "
        "order; I stopped following it. The 1.17 USD charged to your wallet stays held until "
        "the shop has checked: if it was not delivered, you get it back. The shop's admins "
        "have been told.")
    assert bot.texts(ADMIN)[-1] == (
        f"⚠️ Shop order bot #{order.id} of customer {USER} (Instagram Followers, 1.17 USD "
        f"charged) is lost: the panel no longer knows its order {order.panel_order_id}, so I "
        "stopped following it. Check the panel's order list; if it was not delivered, refund "
        f"the customer with /credit {USER} 1.17.")
    assert await balance_of(bot) == Decimal("3.83")  # nothing refunded on its own
    await poll_orders(bot.deps, now=now + 10 * 3600)
    await drain(bot)
    assert len([t for t in bot.texts(ADMIN) if "is lost" in t]) == 1  # told once
    await assert_audit_holds(bot)


async def test_a_partial_that_says_no_remains_is_left_to_the_admins_who_are_told_once(
        bot: BotHarness) -> None:
    await credit(bot, "5")
    order = await buy(bot)
    assert order.panel_order_id is not None
    bot.sandbox.leave_out_remains(order.panel_order_id)  # some panels send no `remains`
    bot.sandbox.set_status(order.panel_order_id, "Partial", remains=157)
    await poll_orders(bot.deps)
    await bot.send(f"/status {order.panel_order_id}")  # seen again, by another path
    await drain(bot)
    assert await balance_of(bot) == Decimal("3.83")  # what is owed cannot be told
    alerts = [text for text in bot.texts(ADMIN) if "ended Partial" in text]
    assert alerts == [
        f"⚠️ Shop order bot #{order.id} of customer {USER} (Instagram Followers, 1.17 USD "
        "charged) ended Partial, but the panel did not say how much was not delivered, so "
        f"nothing was refunded. Check order {order.panel_order_id} on the panel, then refund "
        f"what was not delivered with /credit {USER} amount."]
    report = await wallet.audit(bot.deps)
    assert report.ok and any("without saying what remains" in note for note in report.notes)


async def test_partial_refunds_what_was_not_delivered_rounded_down(bot: BotHarness) -> None:
    await credit(bot, "5")
    order = await buy(bot)
    assert order.panel_order_id is not None
    bot.sandbox.set_status(order.panel_order_id, "Partial", remains=157)
    await bot.send(f"/status {order.panel_order_id}")  # any path that sees it books it
    status = bot.last().plain
    assert "Partial" in status and "charge" not in status
    # 1.17 × 157 / 1000 = 0.18369: 0.18 back, never a cent more than what was not delivered.
    assert await balance_of(bot) == Decimal("3.83") + Decimal("0.18")
    await drain(bot)
    assert ("↩️ 0.18 USD refunded to your wallet: order "
            f"{order.panel_order_id} · Instagram Followers ended Partial (157 of 1,000 not "
            "delivered). Balance: 4.01 USD.") in bot.texts()
    bot.sandbox.set_status(order.panel_order_id, "Canceled")  # later, out of order
    await poll_orders(bot.deps)
    await bot.send(f"/status {order.panel_order_id}")
    assert await balance_of(bot) == Decimal("4.01")
    await assert_audit_holds(bot)


async def test_a_cancel_request_refunds_nothing_until_the_panel_says_canceled(
        bot: BotHarness) -> None:
    await credit(bot, "5")
    order = await buy(bot)
    assert order.panel_order_id is not None
    bot.sandbox.fail_next("status", "error:Incorrect request")  # the read-back fails
    await bot.send(f"/cancelorder {order.panel_order_id}")
    assert "cancel accepted" in bot.last().plain
    assert await balance_of(bot) == Decimal("3.83")  # a request is not a refund
    assert await ledger.order_money(bot.deps.db, [order.id]) == {
        order.id: (Decimal("1.17"), None)}
    assert bot.sandbox.pending_failures == []
    await poll_orders(bot.deps)  # the tracker sees the panel's Canceled
    assert await balance_of(bot) == Decimal("5.00")
    await assert_audit_holds(bot)


async def test_orders_not_charged_to_a_wallet_are_never_refunded(tmp_path: Path) -> None:
    # An admin's own order in a shop, and an order followed with /track.
    bot = await shop_harness(tmp_path)
    try:
        order = await buy(bot, user=ADMIN)
        assert "charged to your wallet" not in bot.last(ADMIN).plain
        panel_id = await bot.deps.panel.add(DEMO_KEY, 2, {"link": "https://x.example/1",
                                                         "quantity": "100"})
        await bot.send(f"/track {panel_id}", user=ADMIN)
        assert order.panel_order_id is not None
        bot.sandbox.set_status(order.panel_order_id, "Canceled")
        bot.sandbox.set_status(panel_id, "Canceled")
        await poll_orders(bot.deps)
        assert await ledger.all_entries(bot.deps.db) == []
    finally:
        await stop_harness(bot)
    # Team mode: the same, and no wallet at all.
    team = await start_harness(tmp_path / "team")
    try:
        await team.send("/wallet")
        assert "not a shop" in team.last().plain
        await team.send("/order 1")
        await team.send(LINK)
        await team.send("1000")
        await team.press("Skip")
        assert "Estimated cost: 0.90 USD" in team.last().plain and "Balance: " in team.last().plain
        await team.press("Confirm")
        [placed] = await orders.list_orders(team.deps.db, owner_id=USER)
        assert placed.price is None and placed.panel_order_id is not None
        team.sandbox.set_status(placed.panel_order_id, "Canceled")
        await poll_orders(team.deps)
        assert await ledger.all_entries(team.deps.db) == []
    finally:
        await stop_harness(team)


# --- money racing -------------------------------------------------------------------------------


async def test_ten_concurrent_confirms_on_a_wallet_that_pays_for_one(tmp_path: Path) -> None:
    bot = await shop_harness(tmp_path, RATE_LIMIT_PER_MINUTE="100")
    try:
        await credit(bot, "1.17")
        chats = [-(100 + i) for i in range(10)]  # ten group chats: ten forms, ten drafts
        for chat in chats:
            for text in ("/order 1", LINK, "1000"):
                await feed(bot.app, bot.world.user_sends(USER, text, chat_id=chat))
            await feed(bot.app, bot.world.user_clicks(USER, "Skip", chat_id=chat))
            assert "Total: 1.17 USD" in bot.texts(chat)[-1]
        taps = [bot.world.user_clicks(USER, "Confirm", chat_id=chat) for chat in chats]
        bot.sandbox.latency = 0.02  # the winner is still waiting for the panel
        await asyncio.gather(*(feed(bot.app, tap) for tap in taps))
        assert len(bot.panel_requests("add")) == 1
        outcomes = [bot.texts(chat)[-1] for chat in chats]
        assert sum("placed. 1.17 USD was charged" in text for text in outcomes) == 1
        assert sum("Not enough in your wallet" in text for text in outcomes) == 9
        assert await balance_of(bot) == 0
        states = [o.state for o in await orders.list_orders(bot.deps.db, owner_id=USER,
                                                            include_drafts=True, limit=20)]
        assert sorted(states) == ["draft"] * 9 + ["placed"]
        await assert_audit_holds(bot)
    finally:
        await stop_harness(bot)


async def test_double_taps_on_one_confirm_charge_once(bot: BotHarness) -> None:
    await credit(bot, "5")
    await to_summary(bot)
    button = bot.world.find_button(USER, "Confirm")
    assert button is not None and button.data is not None
    bot.sandbox.latency = 0.02
    taps = [bot.world.user_presses(USER, button.message_id, button.data) for _ in range(5)]
    await asyncio.gather(*(feed(bot.app, tap) for tap in taps))
    assert len(bot.panel_requests("add")) == 1
    assert await balance_of(bot) == Decimal("3.83")
    await assert_audit_holds(bot)


# --- the wallet ---------------------------------------------------------------------------------


async def test_credit_and_debit_tell_the_customer_with_the_new_balance_once(
        bot: BotHarness) -> None:
    await bot.send("/start")
    update = bot.world.user_sends(ADMIN, f"/credit {USER} 10 paid by transfer")
    await feed(bot.app, update)
    assert bot.last(ADMIN).plain == (f"✅ Wallet of {USER} credited: 10.00 USD. Balance now "
                                     "10.00 USD. The customer has been told.")
    await feed(bot.app, update)  # the same message delivered again: booked once
    assert "already booked" in bot.last(ADMIN).plain
    await bot.send(f"/debit {USER} 2.5 correction", user=ADMIN)
    await bot.send(f"/debit {USER} 8", user=ADMIN)
    assert bot.last(ADMIN).plain.startswith(f"❌ Not debited: the wallet of {USER} holds "
                                            "7.50 USD, less than 8.00 USD.")
    await drain(bot)
    assert bot.texts()[-2:] == [
        "💰 10.00 USD added to your wallet (paid by transfer). Balance: 10.00 USD.",
        "➖ 2.50 USD taken from your wallet (correction). Balance: 7.50 USD.",
    ]
    assert await balance_of(bot) == Decimal("7.50")
    for bad in (f"/credit {USER} 1.005", f"/credit {USER} -1", f"/credit {USER} 0",
                f"/credit {USER} lots", "/credit 0 5", "/credit"):
        await bot.send(bad, user=ADMIN)
        assert bot.last(ADMIN).plain.startswith(("❌", "Usage")), bad
    await bot.send(f"/credit {USER} 5")  # not an admin
    assert bot.last().plain == "This command is for the bot's admins."
    assert await balance_of(bot) == Decimal("7.50")
    await assert_audit_holds(bot)


async def test_wallet_shows_the_balance_and_entries_in_pages(bot: BotHarness) -> None:
    for i in range(12):
        await credit(bot, f"{i + 1}", note=f"top-up {i + 1}")
    await bot.send("/wallet")
    page = bot.last().plain
    assert "Your wallet" in page and "Balance: 78.00 USD" in page and "page 1/2" in page
    assert "Top-up · top-up 12 · +12.00 USD → 78.00 USD" in page
    assert "top-up 2 " not in page
    await bot.press("2 ▶")
    assert "top-up 1 · +1.00 USD → 1.00 USD" in bot.last().plain
    await bot.send(f"/wallet {OTHER}")  # a customer sees only their own
    assert "Only admins" in bot.last().plain
    await bot.send(f"/wallet {USER}", user=ADMIN)
    assert f"Wallet of User{USER} ({USER})" in bot.last(ADMIN).plain
    await bot.send("/start", user=OTHER)
    await bot.press_data(f"wl:{USER}:1", user=OTHER)  # a forged page of someone else's
    assert bot.world.calls_to("answerCallbackQuery")[-1]["text"] == (
        "This button is no longer valid.")
    await bot.send("/balance")
    assert bot.last().plain.startswith("💰 Wallet balance: 78.00 USD.")


async def test_a_shop_order_card_shows_the_wallet_not_the_panel(bot: BotHarness) -> None:
    await credit(bot, "5")
    order = await buy(bot)
    assert order.panel_order_id is not None
    bot.sandbox.set_status(order.panel_order_id, "Completed")
    await poll_orders(bot.deps)
    await drain(bot)
    assert "charged" not in bot.texts()[-1]  # the status message, without the panel's charge
    await bot.send("/orders")
    await bot.press(str(order.panel_order_id))
    card = bot.last().plain
    assert "Paid from the wallet: 1.17 USD" in card
    assert "0.9" not in card and "Panel" not in card
    await bot.send("/orders", user=ADMIN)
    await bot.press(str(order.panel_order_id), user=ADMIN)
    admin_card = bot.last(ADMIN).plain
    assert "Paid from the wallet: 1.17 USD" in admin_card and "Panel charge: 0.90 USD" in \
        admin_card


# --- roles ---------------------------------------------------------------------------------------


async def test_everyone_is_a_customer_without_track_or_connect(tmp_path: Path) -> None:
    bot = await shop_harness(tmp_path, SECRET_KEY="s" * 40)
    try:
        await bot.send("/start", user=OTHER)  # never allowed by anyone: a customer
        assert "Welcome to the shop" in bot.last(OTHER).plain
        assert "Your wallet: 0.00 USD" in bot.last(OTHER).plain
        await bot.send("/track 23501", user=OTHER)
        assert "does not offer /track" in bot.last(OTHER).plain
        await bot.send("/connect somekey123", user=OTHER)
        assert "does not offer /connect" in bot.last(OTHER).plain
        await bot.send("/help", user=OTHER)
        assert "/track" not in bot.last(OTHER).plain and "/connect" not in bot.last(OTHER).plain
        names = [c["command"] for c in bot.world.commands()]
        assert "wallet" in names and "track" not in names and "connect" not in names
        await bot.send("/balance", user=ADMIN)  # admins as today: the panel's balance
        assert "demo sandbox" in bot.last(ADMIN).plain
    finally:
        await stop_harness(bot)


async def test_deny_bans_a_customer_and_allow_lifts_it(bot: BotHarness) -> None:
    await credit(bot, "5")
    await bot.send(f"/deny {USER}", user=ADMIN)
    assert "banned from the shop" in bot.last(ADMIN).plain
    await bot.send("/order 1")
    assert bot.last().plain == "You cannot order from this shop."
    await bot.send(f"/allow {USER}", user=ADMIN)
    await buy(bot)
    assert "placed" in bot.last().plain


# --- admin tools --------------------------------------------------------------------------------


async def test_price_and_markup_set_what_customers_pay(bot: BotHarness) -> None:
    await bot.send("/price 1", user=ADMIN)
    card = bot.last(ADMIN).plain
    assert "Panel cost: 0.90 USD per 1000" in card
    assert "Price: 1.17 USD per 1000 (the shop's markup (30%))" in card
    assert "Margin: 0.27 USD per 1000 (30.0%)" in card
    await bot.send("/price 1 0.80", user=ADMIN)
    assert "below the panel's current rate" in bot.last(ADMIN).plain
    await bot.send("/price 1 -5%", user=ADMIN)
    assert bot.last(ADMIN).plain.startswith("❌")
    await bot.send("/price 1 1.50", user=ADMIN)
    assert "Price: 1.50 USD per 1000 (its own price)" in bot.last(ADMIN).plain
    await bot.send("/services followers")
    assert "1.50 USD per 1000" in bot.last().plain
    await bot.send("/price 1 +10%", user=ADMIN)
    assert "Price: 0.99 USD per 1000 (its own markup (10%))" in bot.last(ADMIN).plain
    await bot.send("/markup 50", user=ADMIN)
    assert "Markup set: 50%" in bot.last(ADMIN).plain
    await bot.send("/services instagram likes")
    assert "0.375 USD per 1000" in bot.last().plain
    await bot.send("/price 1 off", user=ADMIN)
    await bot.send("/order 1")
    assert "There is no service #1" in bot.last().plain
    await bot.send("/price 1 reset", user=ADMIN)
    await credit(bot, "5")
    await to_summary(bot)
    assert "Total: 1.35 USD" in bot.last().plain
    await bot.send("/markup -1", user=ADMIN)
    assert bot.last(ADMIN).plain.startswith("❌")
    await bot.send("/price 1 1.10")
    assert bot.last().plain == "This command is for the bot's admins."


async def test_a_service_taken_off_sale_after_the_summary_is_not_sold(bot: BotHarness) -> None:
    await credit(bot, "5")
    await to_summary(bot)
    await bot.send("/price 1 off", user=ADMIN)
    await bot.press("Confirm")
    assert "out of date" in bot.last().plain
    assert bot.panel_requests("add") == [] and await balance_of(bot) == Decimal("5.00")


async def test_stats_add_the_shops_money(bot: BotHarness) -> None:
    await credit(bot, "10")
    first = await buy(bot)
    await buy(bot, link="https://instagram.com/p/other")
    assert first.panel_order_id is not None
    bot.sandbox.set_status(first.panel_order_id, "Canceled")
    await poll_orders(bot.deps)
    await bot.send("/stats", user=ADMIN)
    stats = bot.last(ADMIN).plain
    assert "Revenue: 1.17 USD (2 orders charged) · refunds 1.17 USD" in stats
    assert "Panel cost: 0.90 USD · margin 0.27 USD" in stats
    assert "Customers' wallets: 8.83 USD in 1 wallet (what the shop owes)" in stats
    assert "against the panel's balance: 99.10 USD" in stats


async def test_low_panel_balance_alerts_admins_once_per_crossing(tmp_path: Path) -> None:
    bot = await shop_harness(tmp_path, LOW_BALANCE_ALERT="50")
    try:
        told = len(bot.texts(ADMIN))
        assert await shop.check_panel_balance(bot.deps) is False
        bot.sandbox.add_key(DEMO_KEY, Decimal("40"))
        assert await shop.check_panel_balance(bot.deps) is True
        assert await shop.check_panel_balance(bot.deps) is False  # still low: said already
        await drain(bot)
        alerts = bot.texts(ADMIN)[told:]
        assert alerts == ["⚠️ Low panel balance: 40.00 USD, below LOW_BALANCE_ALERT "
                          "(50.00 USD). Top it up, or the panel will refuse the shop's orders."]
        bot.sandbox.add_key(DEMO_KEY, Decimal("60"))
        assert await shop.check_panel_balance(bot.deps) is False
        bot.sandbox.add_key(DEMO_KEY, Decimal("30"))
        await stop_harness(bot)  # the crossing is remembered across a restart
        bot = await start_harness(tmp_path, sandbox=bot.sandbox, world=bot.world,
                                  MODE="shop", LOW_BALANCE_ALERT="50")
        assert await shop.check_panel_balance(bot.deps) is True
        await shop.watch_panel_balance(bot.deps)  # the tracker cycle's look: no repeat
        await drain(bot)
        assert len([t for t in bot.texts(ADMIN) if "Low panel balance" in t]) == 2
    finally:
        await stop_harness(bot)


async def test_a_low_balance_is_also_what_orders_being_sent_may_cost(bot: BotHarness) -> None:
    await credit(bot, "50")
    await to_summary(bot, service=20, quantity="4000")  # YouTube Subscribers: 60 USD cost
    bot.sandbox.add_key(DEMO_KEY, Decimal("100"))
    await credit(bot, "50")
    bot.sandbox.fail_next("add", "timeout")
    await bot.press("Confirm")
    assert await shop.check_panel_balance(bot.deps) is False  # 100 ≥ 60
    bot.sandbox.add_key(DEMO_KEY, Decimal("59"))
    assert await shop.check_panel_balance(bot.deps) is True
    await drain(bot)
    assert "below what the orders being sent may cost (60.00 USD)" in bot.texts(ADMIN)[-1]


async def test_audit_holds_and_catches_a_failed_order_left_unrefunded(bot: BotHarness) -> None:
    await credit(bot, "5")
    order = await buy(bot)
    await bot.send("/audit", user=ADMIN)
    assert bot.last(ADMIN).plain.startswith("✅ Audit passed: 2 entries in 1 wallet, 1 "
                                            "charged order.")
    await bot.send("/audit")
    assert bot.last().plain == "This command is for the bot's admins."
    # A path that marks a charged order failed without its refund is what the audit is for.
    async with orders.transaction(bot.deps.db):
        await bot.deps.db.execute("UPDATE orders SET state = 'failed' WHERE id = ?", (order.id,))
    await bot.send("/audit", user=ADMIN)
    report = bot.last(ADMIN).plain
    assert report.startswith("❌ Audit found 1 problem ")
    assert f"order {order.id} (failed, not final): refunded 0, due 1.17" in report


async def test_a_restart_mid_send_holds_the_charge_and_tells_both_sides(
        tmp_path: Path) -> None:
    bot = await shop_harness(tmp_path)
    await credit(bot, "5")
    await to_summary(bot)
    [draft] = await orders.list_orders(bot.deps.db, owner_id=USER, include_drafts=True)
    # The claim and the charge committed, then the process died before the panel answered.
    from bot.services.placement import _claim_and_charge
    assert await _claim_and_charge(bot.deps, draft) is not None
    sandbox = bot.sandbox
    await stop_harness(bot)
    bot = await start_harness(tmp_path, sandbox=sandbox, world=bot.world, MODE="shop")
    try:
        await drain(bot)
        assert "The bot stopped while sending your order of Instagram Followers" in \
            bot.texts()[-1] and "stays held" in bot.texts()[-1]
        assert f"Shop order bot #{draft.id}" in bot.texts(ADMIN)[-1]
        assert await balance_of(bot) == Decimal("3.83")
        await assert_audit_holds(bot)
    finally:
        await stop_harness(bot)


async def test_prices_and_markup_are_stored_and_survive_a_restart(tmp_path: Path) -> None:
    bot = await shop_harness(tmp_path)
    await bot.send("/price 1 1.50", user=ADMIN)
    await bot.send("/price 2 off", user=ADMIN)
    await bot.send("/markup 40", user=ADMIN)
    sandbox, world = bot.sandbox, bot.world
    await stop_harness(bot)
    bot = await start_harness(tmp_path, sandbox=sandbox, world=world, MODE="shop")
    try:
        await bot.send("/services instagram")
        listing = bot.last().plain
        assert "#1 Instagram Followers" in listing and "1.50 USD per 1000" in listing
        assert "#2 Instagram Likes" not in listing
        assert "#5 Instagram Mentions (Instagram)\n    3.50 USD per 1000" in listing  # 2.50 +40%
    finally:
        await stop_harness(bot)


async def test_customers_see_refill_and_cancel_only_their_own_orders(bot: BotHarness) -> None:
    await credit(bot, "5")
    order = await buy(bot)
    await bot.send("/start", user=OTHER)
    for command in ("/status", "/cancelorder", "/refill"):
        await bot.send(f"{command} {order.panel_order_id}", user=OTHER)
        assert f"Not found: {order.panel_order_id}" in bot.last(OTHER).plain, command
    await bot.send("/orders", user=OTHER)
    assert "No orders yet" in bot.last(OTHER).plain and "/track" not in bot.last(OTHER).plain
    await bot.press_data(f"oc:{order.id}", user=OTHER)
    assert bot.world.calls_to("answerCallbackQuery")[-1]["text"] == "Order not found."
    assert bot.sandbox.requests_for("cancel") == []


def test_shop_mode_with_a_real_panel_needs_the_operators_key() -> None:
    from bot.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=r"MODE.*PANEL_KEY"):
        load_settings(_env_file=None, BOT_TOKEN="1:x", MODE="shop",
                      PANEL_URL="https://panel.example/api/v2")
    settings = load_settings(_env_file=None, BOT_TOKEN="1:x", MODE="Shop",
                             MARKUP_PERCENT="12.5%", LOW_BALANCE_ALERT="20")
    assert settings.shop_mode and settings.markup_percent == Decimal("12.5")
    assert settings.low_balance_alert == Decimal(20)
    team = load_settings(_env_file=None, BOT_TOKEN="1:x")
    assert team.mode == "team" and team.markup_percent == Decimal(30)
    for name, value in (("MODE", "bazaar"), ("MARKUP_PERCENT", "-1"),
                        ("LOW_BALANCE_ALERT", "lots")):
        with pytest.raises(ConfigError, match=name):
            load_settings(_env_file=None, BOT_TOKEN="1:x", **{name: value})


# --- shop mode meets mass orders and inline mode ------------------------------------------------

async def test_a_customers_mass_order_shows_shop_prices_and_the_wallet_and_charges_each_line(
        bot: BotHarness) -> None:
    await credit(bot, "1.20")  # pays for one line of 1,000 at 1.17, not for two
    await bot.send("/massorder")
    await bot.send(f"1 | {LINK}1 | 1000\n1 | {LINK}2 | 1000")
    summary = bot.last().plain
    assert "1.17 USD" in summary and "2.34 USD" in summary, summary  # 0.90 + 30 %
    assert "0.90" not in summary and "Balance: 1.20 USD" in summary, summary
    assert "not enough for all of them" in summary
    await bot.press("Confirm")
    await mass_order.join(bot.deps)  # the batch is sent in the background
    results = [t for t in bot.texts() if "not enough in your wallet" in t]
    assert len(results) == 1, bot.texts()[-3:]
    assert len(bot.panel_requests("add")) == 1
    assert await balance_of(bot) == Decimal("0.03")
    await assert_audit_holds(bot)


async def test_inline_results_show_customers_the_shops_price(bot: BotHarness) -> None:
    update = bot.world.user_inline_query(USER, "instagram likes")
    await feed(bot.app, update)
    answer = bot.world.inline_answer(update)
    assert answer is not None
    first = answer["results"][0]
    assert first["title"] == "#2 Instagram Likes"
    assert first["description"].startswith("0.325 USD per 1000"), first["description"]
