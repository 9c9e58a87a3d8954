"""One user's slow panel call never delays anyone else: the real bot, started, on a slow panel.

These tests run the Application as it runs in production (`app.start()`: the per-chat update
processor and the JobQueue) and hand it updates through its update queue, the way polling does;
`feed` would call `process_update` directly and bypass the processor. The sandbox panel is made
slow (`latency` seconds before each answer) only after what must be fast was fetched once, so
any reply that waited for the panel would take seconds. Replies are read from the fake Bot API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from telegram import Update

from bot import jobs
from bot.panel.models import SANDBOX_URL as PANEL
from bot.panel.sandbox import DEMO_KEY
from bot.services import tracking
from storage import orders, users
from storage.users import OPERATOR_ACCOUNT
from tests.conftest import OTHER, USER, BotHarness, start_harness, stop_harness

JSON = dict[str, Any]

FAST = 0.5  # seconds: "well under a second" for a reply that must not wait for the panel
SLOW_PANEL = 3.0  # seconds the sandbox waits before each answer once it is made slow
LINK = "https://instagram.com/p/abc"


# --- driving the running bot ----------------------------------------------------------------


async def start(bot: BotHarness) -> None:
    """Starts the bot as `run_polling` would (processor and JobQueue), minus polling.

    The tracker's repeating job is paused: the tests that need a cycle run one themselves, at a
    known moment, so a stop never lands in the middle of an unplanned one.
    """
    await bot.app.start()
    assert bot.app.job_queue is not None
    for job in bot.app.job_queue.get_jobs_by_name("tracker"):
        job.enabled = False


def tracker_cycle(bot: BotHarness) -> asyncio.Task[None]:
    """One tracker cycle (poll the panel, store, send the news) running beside the handlers."""

    async def cycle() -> None:
        await tracking.poll_orders(bot.deps)
        await jobs.send_pending(bot.app.bot, bot.deps)

    return asyncio.create_task(cycle())


async def put(bot: BotHarness, update: JSON) -> float:
    """Hands an update to the running bot as polling would; the moment it was queued."""
    bot.world.discard_update(update["update_id"])  # no poller here, but keep the world tidy
    await bot.app.update_queue.put(Update.de_json(update, bot.app.bot))
    return time.monotonic()


def tap(bot: BotHarness, label: str, user: int = USER) -> JSON:
    """The user's tap on the newest button labelled `label` (not yet handed to the bot)."""
    button = bot.world.find_button(user, label)
    assert button is not None and button.data is not None, (label, bot.texts(user)[-1:])
    return bot.world.user_presses(user, button.message_id, button.data)


async def shown(bot: BotHarness, user: int, text: str, *, since: int | None = None,
                timeout: float = 10.0) -> float:  # noqa: ASYNC109 - a deadline, not a cancel
    """Waits until the bot shows `text` in the user's chat (sent or edited); when it was seen."""
    await bot.world.wait_for_text_async(user, text, timeout=timeout, since=since)
    return time.monotonic()


async def answered(bot: BotHarness, update: JSON, timeout: float = 10.0) -> str | None:  # noqa: ASYNC109
    """Waits until the bot answers a button press; the answer's text."""
    answer = await bot.world.wait_for_async(lambda: bot.world.answer_to(update), timeout)
    text = answer.get("text")
    return text if isinstance(text, str) else None


async def until(bot: BotHarness, condition: Callable[[], bool],
                timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Waits, without blocking the bot's loop, until `condition()` holds."""
    await bot.world.wait_for_async(condition, timeout)


async def to_summary(bot: BotHarness, user: int = USER, link: str = LINK) -> None:
    """Service 1 up to its summary, fed directly (set-up: the bot is not running yet)."""
    await bot.send("/order 1", user=user)
    await bot.send(link, user=user)
    await bot.send("100", user=user)
    await bot.press("Skip", user=user)
    assert "Check the order" in bot.last(user).plain


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What was logged at ERROR or above (handler crashes, "database is locked", …)."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def placed_ids(texts: Sequence[str]) -> list[str]:
    """The panel ids of the "Order N placed" messages among a chat's texts."""
    return [t.split()[2] for t in texts if t.startswith("✅ Order ") and " placed." in t]


# --- a slow panel call holds up only its own chat ---------------------------------------------


async def test_help_is_instant_while_another_users_confirm_waits_on_the_panel(
        bot: BotHarness, caplog: pytest.LogCaptureFixture) -> None:
    await to_summary(bot)
    await start(bot)
    bot.sandbox.latency = SLOW_PANEL  # only the `add` below is slow
    confirm = tap(bot, "Confirm")
    confirmed_at = await put(bot, confirm)
    await until(bot, lambda: len(bot.sandbox.requests_for("add")) == 1)  # A is waiting on the panel

    asked_at = await put(bot, bot.world.user_sends(OTHER, "/help"))
    helped_at = await shown(bot, OTHER, "What I can do")
    assert helped_at - asked_at < FAST
    assert "placed" not in bot.last(USER).plain  # A's order really was still on its way

    placed_at = await shown(bot, USER, "placed", timeout=SLOW_PANEL + 5)
    assert placed_at - confirmed_at >= SLOW_PANEL
    assert await answered(bot, confirm) == "Sending the order…"
    assert len(bot.panel_requests("add")) == 1
    assert len(bot.sandbox.orders_of(DEMO_KEY)) == 1
    assert len(placed_ids(bot.texts(USER))) == 1
    await bot.app.stop()
    assert errors_logged(caplog) == []


async def test_menu_and_catalogue_pages_answer_from_memory_while_the_panel_is_slow(
        bot: BotHarness, caplog: pytest.LogCaptureFixture) -> None:
    await bot.send("/start", user=OTHER)
    await bot.send("/services", user=OTHER)  # the catalogue is fetched once, here
    await to_summary(bot)
    await start(bot)
    bot.sandbox.latency = SLOW_PANEL
    await put(bot, tap(bot, "Confirm"))  # another user's slow panel call is under way
    await until(bot, lambda: len(bot.sandbox.requests_for("add")) == 1)
    asked_before = len(bot.sandbox.requests)

    steps = [("◀ Menu", "Tap New order"), ("New order", "Pick a category"),
             ("Instagram", "Instagram: 14 services (page 1/2)"), ("2 ▶", "(page 2/2)"),
             ("#", "Order between"), ("◀ Back", "(page 2/2)"), ("◀ Categories", "Services:"),
             ("◀ Menu", "Tap New order")]
    for label, expected in steps:
        press = tap(bot, label, OTHER)
        pressed_at = await put(bot, press)
        seen_at = await shown(bot, OTHER, expected)
        assert seen_at - pressed_at < FAST, label
        assert await answered(bot, press) is None, label
    assert len(bot.sandbox.requests) == asked_before  # nothing of B's reached the panel
    assert "placed" not in bot.last(USER).plain  # and A's order was still on its way
    await shown(bot, USER, "placed", timeout=SLOW_PANEL + 5)
    await bot.app.stop()
    assert errors_logged(caplog) == []


async def test_a_tracker_cycle_on_a_slow_panel_does_not_delay_anyone(
        bot: BotHarness, caplog: pytest.LogCaptureFixture) -> None:
    await to_summary(bot)
    await bot.press("Confirm")
    assert len(placed_ids(bot.texts())) == 1
    await start(bot)
    bot.sandbox.latency = 2.0
    statuses_before = len(bot.sandbox.requests_for("status"))
    running = tracker_cycle(bot)
    await until(bot, lambda: len(bot.sandbox.requests_for("status")) > statuses_before)

    for user, text, expected in ((OTHER, "/help", "What I can do"), (USER, "/start", "Hi"),
                                 (USER, "/orders", "Your orders")):
        asked_at = await put(bot, bot.world.user_sends(user, text))
        seen_at = await shown(bot, user, expected)
        assert seen_at - asked_at < FAST, text
    assert not running.done()  # the cycle was still waiting on the panel all along
    await running
    await bot.app.stop()
    assert errors_logged(caplog) == []


# --- one chat stays in order --------------------------------------------------------------------


async def test_fifty_rapid_updates_of_one_chat_are_answered_in_order(
        bot: BotHarness, caplog: pytest.LogCaptureFixture) -> None:
    await bot.send("/services")  # the catalogue is cached: text is a search, answered at once
    await start(bot)
    # Five kinds of update that take different paths (and time) through the bot: run side by
    # side they would overtake each other; in order, the replies come in the order sent.
    kinds = {"/help": "What I can do", "/orders": "Your orders", "/start": "Hi ",
             "/services": "Services:", "search": "No service matches"}
    sent = [list(kinds)[i % len(kinds)] for i in range(50)]
    before = len(bot.texts())
    for i, kind in enumerate(sent):
        await put(bot, bot.world.user_sends(USER, f"nothing{i:02d}" if kind == "search" else kind))
    await until(bot, lambda: len(bot.texts()) - before == 50)
    replies = bot.texts()[before:]
    assert [next(k for k, text in kinds.items() if text in reply) for reply in replies] == sent
    searched = [reply.split("“")[1][:9] for reply in replies if "No service matches" in reply]
    assert searched == [f"nothing{i:02d}" for i, kind in enumerate(sent) if kind == "search"]
    await bot.app.stop()
    assert errors_logged(caplog) == []


async def test_a_burst_of_wizard_answers_lands_on_the_right_questions(
        bot: BotHarness, caplog: pytest.LogCaptureFixture) -> None:
    await bot.send("/services")
    await start(bot)
    # Sent without waiting for a single question: only strict per-chat order makes this work.
    for text in ("/order 1", "instagram.com/me", "1,000", "5", "30"):
        await put(bot, bot.world.user_sends(USER, text))
    await shown(bot, USER, "Check the order", since=0)
    summary = bot.last().plain
    assert "Estimated cost: 4.50 USD (0.90 USD per 1000 × 5,000)" in summary
    assert "https://instagram.com/me" in summary
    await bot.app.stop()
    assert errors_logged(caplog) == []


# --- Confirm exactly once, and a restart, with the processor on --------------------------------


async def test_two_confirm_taps_back_to_back_place_one_order(
        bot: BotHarness, caplog: pytest.LogCaptureFixture) -> None:
    await to_summary(bot)
    await start(bot)
    bot.sandbox.latency = 0.3  # the second tap is queued while the first waits on the panel
    button = bot.world.find_button(USER, "Confirm")
    assert button is not None and button.data is not None
    first = bot.world.user_presses(USER, button.message_id, button.data)
    second = bot.world.user_presses(USER, button.message_id, button.data)
    await put(bot, first)
    await put(bot, second)
    assert await answered(bot, second) == "This order was already sent."
    assert await answered(bot, first) == "Sending the order…"
    assert len(placed_ids(bot.texts())) == 1  # the second tap came after the first had ended
    assert len(bot.panel_requests("add")) == 1
    assert len(bot.sandbox.orders_of(DEMO_KEY)) == 1
    await bot.app.stop()
    assert errors_logged(caplog) == []


async def test_a_restart_mid_wizard_resumes_with_the_processor_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = await start_harness(tmp_path)
    try:
        await start(first)
        for text, expected in (("/order 1", "Step 1"), ("x.com/a", "Step 2: Quantity")):
            await put(first, first.world.user_sends(USER, text))
            await shown(first, USER, expected)
    finally:
        await stop_harness(first)
    second = await start_harness(tmp_path, world=first.world)
    try:
        await start(second)
        await put(second, second.world.user_sends(USER, "1000"))
        await shown(second, USER, "Step 3: Drip-feed runs")
        await put(second, tap(second, "Skip"))
        await shown(second, USER, "Check the order")
        await put(second, tap(second, "Confirm"))
        await shown(second, USER, "placed")
        assert second.panel_requests("add") == [{"action": "add", "service": "1",
                                                 "link": "https://x.com/a", "quantity": "1000"}]
    finally:
        await stop_harness(second)
    assert errors_logged(caplog) == []


# --- the database under concurrency ---------------------------------------------------------


async def test_many_users_writing_at_once_beside_the_tracker_lose_nothing(
        bot: BotHarness, caplog: pytest.LogCaptureFixture) -> None:
    owners = [USER, OTHER]
    for owner in owners:
        await to_summary(bot, owner, link=f"{LINK}{owner}")
        await bot.press("Confirm", user=owner)
    placed = [int(placed_ids(bot.texts(owner))[0]) for owner in owners]
    bot.sandbox.complete_all()
    await start(bot)
    bot.sandbox.latency = 0.05  # the cycle's writes land among the users' writes
    newcomers = list(range(5001, 5031))
    running = tracker_cycle(bot)
    for user in newcomers:
        await put(bot, bot.world.user_sends(user, "/start", first_name=f"New{user}"))
    for user in newcomers:
        await shown(bot, user, "Hi New")
    for owner in owners:  # the tracker's news reached them too
        await shown(bot, owner, "Completed", since=0)
    await running
    await bot.app.stop()

    db = bot.deps.db
    known = await users.get_users(db, newcomers)
    assert sorted(known) == newcomers
    assert [known[u].name for u in newcomers] == [f"New{u}" for u in newcomers]
    for panel_id in placed:
        order = await orders.get_order_by_panel_id(db, panel=PANEL, account=OPERATOR_ACCOUNT,
                                                   panel_order_id=panel_id)
        assert order is not None and order.status == "Completed"
    assert errors_logged(caplog) == []


async def test_the_claim_of_a_draft_holds_for_many_concurrent_callers(bot: BotHarness) -> None:
    await to_summary(bot)
    button = bot.world.find_button(USER, "Confirm")
    assert button is not None and button.data is not None
    draft_id = int(button.data.split(":")[2])
    claims = await asyncio.gather(*(orders.claim_order(bot.deps.db, draft_id, owner_id=USER)
                                    for _ in range(20)))
    assert claims.count(True) == 1
