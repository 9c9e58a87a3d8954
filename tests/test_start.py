"""/start and /help: what a user sees first."""

from __future__ import annotations

from tests.conftest import ADMIN, BotHarness


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
