"""A crash between claiming an order and the panel's answer: the owner is told, nothing resent."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from bot import jobs
from bot.panel.models import SANDBOX_URL as PANEL
from storage import orders, users
from tests.conftest import USER, BotHarness, start_harness, stop_harness


async def test_an_order_cut_off_while_sending_is_reported_as_unknown_after_restart(
    tmp_path: Path,
) -> None:
    first = await start_harness(tmp_path)
    db = first.deps.db
    await users.upsert_user(db, telegram_id=USER, name="Alice")
    draft = await orders.save_draft(
        db, panel=PANEL, owner_id=USER, account="operator", service_id=1,
        service_name="Instagram Followers", service_type="Default", rate=Decimal("0.90"),
        currency="USD", can_refill=True, can_cancel=True,
        fields={"link": "https://instagram.com/a", "quantity": "100"}, quantity=100,
        cost=Decimal("0.09"),
    )
    assert await orders.claim_order(db, draft, owner_id=USER)
    await stop_harness(first)  # the process "dies" before the panel's answer is recorded

    second = await start_harness(tmp_path)
    try:
        order = await orders.get_order(second.deps.db, draft)
        assert order is not None and order.state == "unknown"
        await jobs.send_pending(second.app.bot, second.deps)
        text = second.last().plain
        assert "The bot stopped while sending your order of Instagram Followers" in text
        assert "not retried" in text and "It was placed" in text
        assert second.panel_requests("add") == []
        # The draft can never be confirmed again: an unknown outcome is not claimable.
        assert not await orders.claim_order(second.deps.db, draft, owner_id=USER)
        # A second restart does not tell the user again.
        await stop_harness(second)
        third = await start_harness(tmp_path)
        await jobs.send_pending(third.app.bot, third.deps)
        assert third.texts() == []
        second = third
    finally:
        await stop_harness(second)


async def test_a_placed_order_whose_id_the_bot_already_follows_is_told_truthfully(
    bot: BotHarness,
) -> None:
    # The user tracked the id the panel is about to give (e.g. placed on the site meanwhile).
    await users.upsert_user(bot.deps.db, telegram_id=USER, name="Alice")
    await orders.track_order(bot.deps.db, panel=PANEL, owner_id=USER, account="operator",
                             panel_order_id=23501)
    await bot.send("/order 1")
    for answer in ("https://instagram.com/a", "100"):
        await bot.send(answer)
    await bot.press("Skip")
    await bot.press("Confirm")
    text = bot.last().plain
    assert "Order 23501 placed" in text and "already follow an order with this id" in text
    assert len(bot.panel_requests("add")) == 1
    drafts = [o for o in await orders.list_orders(bot.deps.db, owner_id=USER, include_drafts=True)
              if o.panel_order_id is None]
    assert [o.state for o in drafts] == ["unknown"]  # never left "claimed", never resendable
