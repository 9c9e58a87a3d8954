"""🔁 Order again on an order card: every service type back at its summary with the same
answers, answers the service no longer accepts asked again, and what cannot be ordered again."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bot.panel.models import SANDBOX_URL as PANEL
from bot.panel.sandbox import DEMO_KEY, SandboxPanel
from bot.services import mass_order
from bot.services.accounts import account_for
from storage import orders, users
from tests.conftest import OTHER, USER, BotHarness, start_harness, stop_harness
from tests.test_wizard import FULL_ORDERS, run


async def open_card(bot: BotHarness, panel_order_id: int, user: int = USER) -> None:
    """/orders, then the order's card."""
    await bot.send("/orders", user=user)
    await bot.press(f"{panel_order_id} ·", user=user)
    assert f"Order {panel_order_id}" in bot.last(user).plain


@pytest.mark.parametrize(("service_id", "steps", "sent", "cost"), FULL_ORDERS)
async def test_order_again_opens_the_summary_with_the_same_answers_for_every_type(
        bot: BotHarness, service_id: int, steps: list[str], sent: dict[str, str],
        cost: str) -> None:
    await bot.send(f"/order {service_id}")
    await run(bot, steps)
    first_summary = bot.last().plain
    await bot.press("Confirm")
    bot.sandbox.complete_all()  # the panel takes one active order per link at a time
    await open_card(bot, 23501)
    assert "🔁 Order again" in bot.buttons()
    card = bot.last()
    await bot.press("Order again")
    assert bot.world.message(USER, card.message_id) == card  # the card stays as it was
    summary = bot.last().plain
    assert "Check the order, then tap Confirm." in summary and cost in summary
    # The same fields as the first summary showed (the balance line moved on).
    same = [line for line in first_summary.split("\n") if not line.startswith("Balance")]
    assert [line for line in summary.split("\n") if not line.startswith("Balance")] == same
    assert bot.buttons() == ["✅ Confirm", "✏️ Edit", "✖ Cancel", "◀ Back"]
    await bot.press("Confirm")
    assert bot.panel_requests("add") == [{"action": "add", "service": str(service_id), **sent}] * 2
    assert bot.last().plain.startswith("✅ Order 23502 placed.")


async def test_edit_after_order_again_offers_every_earlier_answer(bot: BotHarness) -> None:
    await bot.send("/order 1")
    await run(bot, ["https://instagram.com/me", "1000", "tap:Skip"])
    await bot.press("Confirm")
    bot.sandbox.complete_all()
    await open_card(bot, 23501)
    await bot.press("Order again")
    await bot.press("Edit")
    assert "Now: https://instagram.com/me" in bot.last().plain
    await bot.press("Keep")
    assert "Now: 1000" in bot.last().plain
    await bot.send("2000")
    await bot.press("Skip")
    assert "Quantity: 2000" in bot.last().plain
    await bot.press("Confirm")
    assert bot.panel_requests("add")[-1] == {"action": "add", "service": "1",
                                             "link": "https://instagram.com/me",
                                             "quantity": "2000"}


async def test_an_answer_the_service_no_longer_takes_is_asked_again(tmp_path: Path) -> None:
    sandbox = SandboxPanel(keys={DEMO_KEY: Decimal("100")})
    bot = await start_harness(tmp_path, sandbox=sandbox)
    try:
        await bot.send("/order 1")
        await run(bot, ["https://instagram.com/me", "5000", "tap:Skip"])
        await bot.press("Confirm")
        sandbox.complete_all()
        # The panel lowers the service's maximum (what its `services` answer lists).
        sandbox._rows[0]["max"] = "2000"
        await bot.deps.catalog.refresh(await catalog_key(bot), DEMO_KEY)
        await open_card(bot, 23501)
        await bot.press("Order again")
        question = bot.last().plain
        assert question.startswith("❌ The earlier answer no longer fits: It must be between 50 "
                                   "and 2,000.")
        assert "Step 2: Quantity" in question and "Now: 5000" in question
        await bot.send("2000")
        await bot.press("Skip")
        assert "Quantity: 2000" in bot.last().plain and "Link: https://instagram.com/me" in (
            bot.last().plain)
    finally:
        await stop_harness(bot)


async def catalog_key(bot: BotHarness) -> str:
    """Which catalogue the user's account sees."""
    account = await account_for(bot.deps, USER)
    assert account is not None
    return account.catalog_key


async def test_a_service_no_longer_offered_says_so(tmp_path: Path) -> None:
    sandbox = SandboxPanel(keys={DEMO_KEY: Decimal("100")})
    bot = await start_harness(tmp_path, sandbox=sandbox)
    try:
        await bot.send("/order 2")
        await run(bot, ["https://instagram.com/p/1", "100", "tap:Skip"])
        await bot.press("Confirm")
        sandbox._rows = [r for r in sandbox._rows if r["service"] != 2]  # no longer listed
        await bot.deps.catalog.refresh(await catalog_key(bot), DEMO_KEY)
        await open_card(bot, 23501)
        await bot.press("Order again")
        assert bot.last().plain == ("Service #2 (Instagram Likes) is no longer offered. "
                                    "Browse /services for another.")
        assert len(bot.panel_requests("add")) == 1
    finally:
        await stop_harness(bot)


async def test_someone_elses_order_cannot_be_ordered_again(bot: BotHarness) -> None:
    await bot.send("/order 2")
    await run(bot, ["https://instagram.com/p/1", "100", "tap:Skip"])
    await bot.press("Confirm")
    order = await orders.get_order_by_panel_id(bot.deps.db, account="operator", panel=PANEL,
                                               panel_order_id=23501)
    assert order is not None
    await bot.send("/start", user=OTHER)
    await bot.press_data(f"oc:{order.id}:ag", user=OTHER)
    assert bot.world.calls_to("answerCallbackQuery")[-1]["text"] == "Order not found."
    assert bot.last(OTHER).plain.startswith("Hi User43")  # nothing else was shown
    assert len(bot.panel_requests("add")) == 1


async def test_an_order_placed_on_the_panels_site_has_no_order_again(bot: BotHarness) -> None:
    await users.upsert_user(bot.deps.db, telegram_id=USER, name="Alice")
    tracked = await orders.track_order(bot.deps.db, panel=PANEL, owner_id=USER,
                                       account="operator", panel_order_id=777)
    await bot.send("/start")
    await bot.press_data(f"oc:{tracked.id}")
    assert "Order 777" in bot.last().plain and "🔁 Order again" not in bot.buttons()
    await bot.press_data(f"oc:{tracked.id}:ag")  # forged
    answer = bot.world.calls_to("answerCallbackQuery")[-1]
    assert answer["text"].startswith("This order was placed on the panel's site")


async def test_a_mass_order_line_can_be_ordered_again(bot: BotHarness) -> None:
    await bot.send("/massorder 2 | https://instagram.com/p/9 | 300")
    await bot.press("Confirm")
    await mass_order.join(bot.deps)
    bot.sandbox.complete_all()
    await open_card(bot, 23501)
    await bot.press("Order again")
    assert "Quantity: 300" in bot.last().plain
    await bot.press("Confirm")
    assert bot.panel_requests("add")[-1]["quantity"] == "300"
