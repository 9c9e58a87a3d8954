"""/start and /help: what a user sees first."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from bot.panel.sandbox import SandboxPanel
from bot.standin.botapi import feed
from tests.conftest import ADMIN, OTHER, USER, BotHarness, start_harness, stop_harness


async def test_start_in_demo_mode_says_nothing_real_is_bought(bot: BotHarness) -> None:
    await bot.send("/start")
    text = bot.last().plain
    assert "Demo mode" in text and "Nothing real is bought" in text
    assert bot.buttons() == ["🛒 New order", "📦 My orders", "💰 Balance"]


async def test_help_lists_commands_and_admin_extras_only_for_admins(bot: BotHarness) -> None:
    await bot.send("/help")
    assert "/order" in bot.last().plain and "/stats" not in bot.last().plain
    await bot.send("/help", user=ADMIN)
    assert "/stats" in bot.last(ADMIN).plain


async def test_command_menu_is_registered_at_start(bot: BotHarness) -> None:
    commands = [c["command"] for c in bot.world.commands()]
    assert {"start", "order", "orders", "status", "balance", "cancel", "help"} <= set(commands)


async def test_operator_account_serves_allowed_users_only(tmp_path: Path) -> None:
    sandbox = SandboxPanel(keys={"operator-key-123": Decimal("50")})
    harness = await start_harness(
        tmp_path, sandbox=sandbox, PANEL_URL="https://panel.example/api/v2",
        PANEL_KEY="operator-key-123", ALLOWED_USER_IDS=str(USER),
    )
    try:
        await harness.send("/start")
        assert "operator's panel account" in harness.last().plain
        await harness.send("/start", user=OTHER)
        assert "no access" in harness.last(OTHER).plain
        assert str(OTHER) in harness.last(OTHER).plain
    finally:
        await stop_harness(harness)


async def test_no_access_text_offers_connect_only_where_it_is_turned_on(tmp_path: Path) -> None:
    sandbox = SandboxPanel(keys={"operator-key-123": Decimal("50")})
    harness = await start_harness(
        tmp_path, sandbox=sandbox, PANEL_URL="https://panel.example/api/v2",
        PANEL_KEY="operator-key-123",
    )
    try:
        await harness.send("/orders", user=OTHER)
        text = harness.last(OTHER).plain
        assert "you have no access" in text and str(OTHER) in text
        assert "/connect" not in text  # no SECRET_KEY: /connect is off
    finally:
        await stop_harness(harness)


async def test_a_reply_goes_to_the_forum_topic_it_answers_and_a_reply_chain_gets_none(
        bot: BotHarness) -> None:
    group = -100555
    bot.world.open_chat(USER, chat_id=group, title="Team")
    for topic, expected in ((True, 7), (False, None)):
        update = bot.world.user_sends(USER, "/help", chat_id=group)
        update["message"].update(message_thread_id=7, is_topic_message=topic)
        await feed(bot.app, update)
        sent = bot.world.calls_to("sendMessage")[-1]
        assert sent["chat_id"] == group and sent.get("message_thread_id") == expected
        assert "/order" in sent["text"]
