"""/notify: choosing which order changes the bot messages you about."""

from __future__ import annotations

from bot.jobs import send_pending
from bot.panel.models import SANDBOX_URL as PANEL
from bot.panel.sandbox import DEMO_KEY
from bot.services.tracking import poll_orders
from storage import orders, users
from storage.users import OPERATOR_ACCOUNT
from tests.conftest import OTHER, USER, BotHarness


async def mode_of(bot: BotHarness, user: int = USER) -> str:
    """The stored notification mode."""
    found = await users.get_user(bot.deps.db, user)
    assert found is not None
    return found.notify


async def test_notify_shows_the_mode_with_three_buttons_the_current_one_ticked(
    bot: BotHarness,
) -> None:
    await bot.send("/notify")
    assert "Notifications: Every change" in bot.last().plain
    assert bot.buttons() == ["✅ Every change", "Final only", "Off"]
    assert [d for row in bot.last().buttons() for _t, d in row] == ["nt:all", "nt:final",
                                                                    "nt:off"]


async def test_pressing_a_mode_saves_it_and_moves_the_tick(bot: BotHarness) -> None:
    await bot.send("/notify")
    await bot.press("Final only")
    assert await mode_of(bot) == "final"
    assert bot.buttons() == ["Every change", "✅ Final only", "Off"]
    assert bot.last().edit_count == 1  # the same message, edited
    assert "Saved" in bot.last().plain
    await bot.press("Off")
    assert await mode_of(bot) == "off"
    assert bot.buttons() == ["Every change", "Final only", "✅ Off"]
    answers = list(bot.world.callback_answers.values())
    assert len(answers) == 2 and answers[-1].get("text") == "Notifications: Off"


async def test_typed_modes_work_too(bot: BotHarness) -> None:
    await bot.send("/notify final")
    assert await mode_of(bot) == "final"
    assert "Saved" in bot.last().plain and bot.buttons()[1] == "✅ Final only"
    await bot.send("/notify OFF")
    assert await mode_of(bot) == "off"
    await bot.send("/notify all")
    assert await mode_of(bot) == "all"


async def test_an_unknown_mode_gets_one_line_and_the_buttons(bot: BotHarness) -> None:
    await bot.send("/notify final")
    await bot.send("/notify <loud>")
    assert bot.last().plain == "Unknown choice “<loud>”: use all, final or off."
    assert bot.buttons() == ["Every change", "✅ Final only", "Off"]
    assert await mode_of(bot) == "final"  # unchanged


async def test_a_forged_mode_button_is_answered_and_changes_nothing(bot: BotHarness) -> None:
    await bot.send("/notify")
    await bot.press_data("nt:loud")
    await bot.press_data("nt:all:x")
    assert await mode_of(bot) == "all"
    answers = list(bot.world.callback_answers.values())
    assert [a.get("text") for a in answers] == ["This button is no longer valid."] * 2


async def test_each_user_has_their_own_mode(bot: BotHarness) -> None:
    await bot.send("/notify off")
    await bot.send("/notify", user=OTHER)
    assert "Every change" in bot.last(OTHER).plain
    assert await mode_of(bot, OTHER) == "all" and await mode_of(bot) == "off"


async def test_off_means_no_messages_about_orders(bot: BotHarness) -> None:
    await bot.send("/notify off")
    seen = len(bot.world.bot_messages(USER))
    panel_id = await bot.deps.panel.add(DEMO_KEY, 2, {"link": "https://instagram.com/p/n",
                                                      "quantity": 100})
    bot.sandbox.set_status(panel_id, "Pending")
    await orders.track_order(bot.deps.db, panel=PANEL, owner_id=USER, account=OPERATOR_ACCOUNT,
                             panel_order_id=panel_id)
    await poll_orders(bot.deps)
    bot.sandbox.set_status(panel_id, "Completed")
    report = await poll_orders(bot.deps)
    await send_pending(bot.app.bot, bot.deps)
    assert report.changed == 1 and report.notices == 0
    assert len(bot.world.bot_messages(USER)) == seen
    await bot.send("/notify all")
    assert "Every change" in bot.last().plain
