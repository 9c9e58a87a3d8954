"""The bot as a process: the command menu at start-up, a SIGKILL mid-order and a restart that
resumes at the same step, a SIGKILL while Confirm is being sent and a second tap after the restart,
and a clean stop on SIGTERM that loses nothing."""

from __future__ import annotations

import time

import pytest

from bot.handlers.start import COMMANDS
from tests.e2e.conftest import PLACED_RE, BotDriver

# persist_now writes the wizard's step a few milliseconds after the question is sent; the user
# reading the question for a moment leaves it ample time on a slow machine. Without persist_now
# nothing would reach the disk before PTB's periodic flush, 10 s after start-up.
READING_TIME = 0.5


def test_start_up_registers_every_command_with_a_one_line_description(
        bot_process: BotDriver) -> None:
    menu = bot_process.world.commands()
    assert [c["command"] for c in menu] == [name for name, _ in COMMANDS]
    for command in menu:
        description = command["description"]
        assert description.strip() and "\n" not in description, command
    bot_process.send("/start")
    assert "Demo mode" in bot_process.wait("Hi ").plain
    assert bot_process.world.calls_to("setMyCommands"), "no command menu registered"


def test_a_bot_killed_mid_order_resumes_at_the_same_step(bot_process: BotDriver) -> None:
    bot = bot_process
    bot.send("/order 1")
    bot.wait("Send the link to promote.")
    link = bot.send("https://instagram.com/crash")
    assert "Step 2: Quantity" in bot.wait("How many?").plain
    bot.wait_handled(link)
    time.sleep(READING_TIME)
    bot.kill()
    assert bot.process is not None and bot.process.returncode == -9

    bot.start()  # a new process on the same database
    bot.send("100")
    following = bot.reply().plain
    assert "Step 3: Drip-feed runs" in following, following
    bot.click("Skip")
    summary = bot.wait("Check the order").plain
    assert "Link: https://instagram.com/crash\nQuantity: 100\n" in summary, summary
    bot.click("Confirm")
    assert PLACED_RE.search(bot.wait("placed.").plain)


@pytest.mark.bot_settings(SANDBOX_LATENCY="1")  # every panel request takes a second
def test_a_crash_while_confirm_is_sent_never_sends_the_order_twice(
        bot_process: BotDriver) -> None:
    bot = bot_process
    bot.send("/order 1")
    bot.wait("Send the link to promote.", timeout=15)
    bot.send("https://instagram.com/crash-on-confirm")
    bot.wait("How many?")
    bot.send("100")
    bot.wait("in how many runs")
    bot.click("Skip")
    bot.wait("Check the order")
    confirm = bot.button("Confirm")
    tap = bot.press(confirm)
    # Answered just before the claim and the one `add` request, which the sandbox holds for a
    # second: half a second later the bot dies while the order is on its way.
    assert bot.answer_to(tap).get("text") == "Sending the order…"
    time.sleep(0.5)
    bot.kill()

    bot.start()
    again = bot.press(confirm)  # the summary still shows Confirm: the user taps it again
    assert bot.answer_to(again, timeout=15).get("text") == "This order was already sent."
    assert not [text for text in bot.texts() if PLACED_RE.search(text)]
    bot.send("/orders")
    listing = bot.wait("Your orders", timeout=15).plain
    assert "(1, newest first" in listing, listing


def test_sigterm_stops_cleanly_and_a_restart_loses_nothing(bot_process: BotDriver) -> None:
    bot = bot_process
    bot.send("/order 13")  # Instagram Story Views: link, quantity
    bot.wait("Send the link to promote.")
    bot.send("https://instagram.com/stories/me")
    bot.wait("How many?")
    bot.send("500")
    bot.wait("Check the order")
    bot.click("Confirm")
    match = PLACED_RE.search(bot.wait("placed.").plain)
    assert match is not None
    panel_id = match.group(1)
    # Tracking runs: the push comes while the bot runs (the demo sandbox lives in the process,
    # so an order still running at a restart would be gone from the new process's sandbox).
    push = bot.wait("→ Completed").plain
    assert push.startswith(f"Order {panel_id} · "), push
    bot.send("/order 1")  # a second order, left at its first question
    bot.wait("Send the link to promote.")

    stopping = time.monotonic()
    assert bot.terminate() == 0
    assert time.monotonic() - stopping < 5
    log = bot.log()
    assert "Application.stop() complete" in log, bot.log_tail()
    assert "Traceback" not in log, bot.log_tail()

    bot.start()
    bot.send("https://instagram.com/after-restart")
    following = bot.reply().plain
    assert "Step 2: Quantity" in following, following
    bot.send("/cancel")
    bot.wait("Order cancelled")
    bot.send("/orders")
    listing = bot.wait("Your orders").plain
    assert f"{panel_id} · Instagram Story Views · Completed" in listing, listing
    assert bot.terminate() == 0
