"""The tracker: the sandbox panel moves orders on, and their owners get one message per change."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from telegram.error import RetryAfter

from bot.jobs import send_pending
from bot.panel.client import PanelClient
from bot.panel.models import SANDBOX_URL as PANEL
from bot.panel.models import OrderStatus
from bot.panel.sandbox import DEMO_KEY, SANDBOX_URL
from bot.services import notices, tracking
from bot.services.tracking import LOST_AFTER, poll_orders, poll_refills
from storage import orders, outbox, refills, users
from storage.db import execute_write, fetch_all, set_trace_callback
from storage.orders import Order
from storage.users import OPERATOR_ACCOUNT
from tests.conftest import OTHER, USER, BotHarness, start_harness, stop_harness

INTERVAL = 60.0  # the default STATUS_POLL_INTERVAL
_links = itertools.count(1)


async def place(bot: BotHarness, *, owner: int = USER, service: int = 2, quantity: int = 111,
                status: str = "Pending") -> tuple[int, int]:
    """An order placed on the sandbox and stored as the wizard would; (local id, panel id).

    The sandbox order is frozen at `status`: it moves only when the test moves it. The default
    (111 Instagram Likes at 0.25 per 1000) costs 0.02775 USD, an amount with five decimals.
    """
    db = bot.deps.db
    await users.upsert_user(db, telegram_id=owner, name=f"User{owner}")
    panel_id = await bot.deps.panel.add(
        DEMO_KEY, service, {"link": f"https://instagram.com/p/{next(_links)}", "quantity": quantity}
    )
    bot.sandbox.set_status(panel_id, status)
    names = {1: "Instagram Followers", 2: "Instagram Likes"}
    rates = {1: Decimal("0.90"), 2: Decimal("0.25")}
    local = await orders.save_draft(
        db, panel=PANEL, owner_id=owner, account=OPERATOR_ACCOUNT, service_id=service,
        service_name=names[service], service_type="Default", rate=rates[service],
        currency="USD", can_refill=service == 1, can_cancel=True,
        fields={"link": "https://instagram.com/p/x", "quantity": str(quantity)},
        quantity=quantity, cost=rates[service] * quantity / 1000,
    )
    assert await orders.claim_order(db, local, owner_id=owner)
    assert await orders.mark_placed(db, local, panel_order_id=panel_id)
    return local, panel_id


async def cycle(bot: BotHarness, now: float | None = None) -> tracking.CycleReport:
    """One tracker cycle as the job runs it: poll orders and refills, then send."""
    report = await poll_orders(bot.deps, now=now)
    await poll_refills(bot.deps, now=now)
    await send_pending(bot.app.bot, bot.deps, now=now)
    return report


def pushes(bot: BotHarness, user: int = USER) -> list[str]:
    """The notifications a user received (messages from the bot with an order-card button)."""
    return [m.plain for m in bot.world.bot_messages(user)
            if any((data or "").startswith("oc:") for row in m.buttons() for _t, data in row)]


async def order(bot: BotHarness, local: int) -> Order:
    """The stored order."""
    found = await orders.get_order(bot.deps.db, local)
    assert found is not None
    return found


async def fast_panel_client(bot: BotHarness) -> None:
    """Swaps in a panel client that retries without pausing, so a panel outage costs no time."""
    await bot.deps.panel.aclose()
    bot.deps.panel = PanelClient(SANDBOX_URL, transport=bot.sandbox.transport(),
                                 retry_backoff=0)


# --- one message per change -----------------------------------------------------------------


async def test_one_notification_per_transition_in_order_with_the_card_button(
    bot: BotHarness,
) -> None:
    local, panel_id = await place(bot)
    await cycle(bot)  # first look: Pending, as placed; not news
    assert pushes(bot) == []
    bot.sandbox.set_status(panel_id, "In progress")
    await cycle(bot)
    await cycle(bot)  # nothing moved: nothing sent
    bot.sandbox.set_status(panel_id, "Completed")
    await cycle(bot)
    await cycle(bot)
    start = bot.sandbox.order(panel_id)["start_count"]
    assert pushes(bot) == [
        f"Order {panel_id} · Instagram Likes: Pending → In progress · start {start}",
        f"Order {panel_id} · Instagram Likes: In progress → Completed · start {start}"
        " · charged 0.02775 USD",
    ]
    assert [m.buttons() for m in bot.world.bot_messages(USER)] == [[[("Open order",
                                                                       f"oc:{local}")]]] * 2
    stored = await order(bot, local)
    assert stored.final and stored.status == "Completed" and stored.charge == Decimal("0.02775")
    history = [c.status for c in await orders.order_history(bot.deps.db, local)]
    assert history == ["Pending", "In progress", "Completed"]


async def test_final_orders_are_no_longer_asked_about(bot: BotHarness) -> None:
    _local, panel_id = await place(bot)
    bot.sandbox.set_status(panel_id, "Completed")
    await cycle(bot)
    asked = len(bot.panel_requests("status"))
    await cycle(bot)
    assert len(bot.panel_requests("status")) == asked
    assert len(pushes(bot)) == 1  # a first status that is already final is news


async def test_partial_and_canceled_say_what_happened_to_the_money(bot: BotHarness) -> None:
    _a, partial = await place(bot, service=1, quantity=1000, status="In progress")
    _b, canceled = await place(bot, service=1, quantity=200, status="In progress")
    await cycle(bot)
    bot.sandbox.set_status(partial, "Partial", remains=157)
    bot.sandbox.set_status(canceled, "Canceled")
    await cycle(bot)
    # The sandbox refunds what was not delivered: 843 delivered at 0.90 per 1000.
    assert pushes(bot)[-2:] == [
        f"Order {partial} · Instagram Followers: In progress → Partial · 157 not delivered"
        " · charged 0.7587 USD",
        f"Order {canceled} · Instagram Followers: In progress → Canceled (refunded)",
    ]


def test_message_text_keeps_every_decimal_of_the_charge_and_escapes_panel_text() -> None:
    stored = Order(
        id=1, owner_id=USER, account=OPERATOR_ACCOUNT, panel=PANEL, panel_order_id=23501,
        service_id=1,
        service_name="Instagram Followers <HQ> & fast", service_type="Default",
        service_rate=Decimal("0.9"), service_currency="USD", service_refill=True,
        service_cancel=True, fields={}, quantity=300, cost=Decimal("0.27"), state="placed",
        error=None, status="In progress", charge=None, start_count=3572, remains=10,
        currency="USD", final=False, created_at=0.0, updated_at=0.0, last_checked_at=None,
        next_check_at=None, lost_strikes=0,
    )
    seen = OrderStatus("Completed", Decimal("0.27819"), 3572, 0, "USD")
    assert notices.describe_change(stored, "In progress", seen) == (
        "Order 23501 · Instagram Followers &lt;HQ&gt; &amp; fast: In progress → Completed"
        " · start 3572 · charged 0.27819 USD"
    )
    assert notices.exact_money(Decimal("12.5000"), "USD") == "12.50 USD"


# --- batches ---------------------------------------------------------------------------------


async def follow_many(bot: BotHarness, count: int) -> list[int]:
    """`count` running orders of USER on the sandbox, followed by the bot; their panel ids."""
    db = bot.deps.db
    await users.upsert_user(db, telegram_id=USER, name="User")
    ids = []
    for _ in range(count):
        # Straight into the sandbox (no HTTP) to keep the set-up quick.
        answer = bot.sandbox.answer({"key": DEMO_KEY, "action": "add", "service": "2",
                                     "link": f"https://instagram.com/p/b{next(_links)}",
                                     "quantity": "10"})
        await orders.track_order(db, panel=PANEL, owner_id=USER, account=OPERATOR_ACCOUNT,
                                 panel_order_id=int(answer["order"]))
        ids.append(int(answer["order"]))
    return ids


async def test_250_orders_take_three_status_requests_of_at_most_100_ids(
    bot: BotHarness,
) -> None:
    for panel_id in await follow_many(bot, 250):
        # Held running: on a slow machine the sandbox would finish some during the set-up.
        bot.sandbox.set_status(panel_id, "In progress")
    before = len(bot.panel_requests("status"))
    report = await poll_orders(bot.deps)
    sent = bot.panel_requests("status")[before:]
    assert len(sent) == 3 == report.requests
    sizes = sorted(len(r["orders"].split(",")) for r in sent)
    assert sizes == [50, 100, 100] and report.checked == 250
    followed = await orders.active_orders(bot.deps.db)
    assert len(followed) == 250  # still followed (none finished)
    assert all(o.status is not None for o in followed)


async def test_one_refused_request_costs_no_order_a_strike(bot: BotHarness) -> None:
    await follow_many(bot, 150)
    # A panel that refuses a whole request with the text it uses for one unknown id.
    bot.sandbox.fail_next("status", "error:Incorrect order ID")
    report = await poll_orders(bot.deps)
    assert report.requests == 2 and report.failed_accounts == []
    followed = await orders.active_orders(bot.deps.db)
    assert all(o.lost_strikes == 0 for o in followed)
    unanswered = sum(o.status is None for o in followed)
    assert unanswered in (50, 100)  # that request's orders are simply asked again
    await poll_orders(bot.deps)
    assert all(o.status is not None for o in await orders.active_orders(bot.deps.db))


async def test_batches_answered_together_are_written_in_one_transaction(
    bot: BotHarness,
) -> None:
    for panel_id in await follow_many(bot, 400):
        bot.sandbox.set_status(panel_id, "In progress")
    bot.sandbox.latency = 0.05  # the four requests in flight are answered at about one time
    statements: list[str] = []
    await set_trace_callback(bot.deps.db, statements.append)
    try:
        report = await poll_orders(bot.deps)
    finally:
        await set_trace_callback(bot.deps.db, None)
    assert report.requests == 4 and report.checked == 400
    # The first answer is written alone, the three that came while it was written together
    # (one COMMIT per batch before: 4).
    assert statements.count("COMMIT") <= 2
    followed = await orders.active_orders(bot.deps.db)
    assert [o.status for o in followed] == ["In progress"] * 400
    [(history,)] = await fetch_all(bot.deps.db, "SELECT COUNT(*) FROM order_status_history")
    assert history == 400


async def test_a_write_of_the_bots_own_waits_for_one_tracker_transaction_at_most(
    bot: BotHarness,
) -> None:
    for panel_id in await follow_many(bot, 800):
        bot.sandbox.set_status(panel_id, "In progress")
    bot.sandbox.latency = 0.02
    seen: list[str] = []  # "asked" when a write is asked for, then the statements as they run
    await set_trace_callback(bot.deps.db, seen.append)
    cycle = asyncio.create_task(poll_orders(bot.deps))
    try:
        while not cycle.done():  # a user's writes (their draft, their row) all along the cycle
            seen.append("asked")
            await execute_write(bot.deps.db, "UPDATE users SET name = 'User' WHERE telegram_id = ?",
                                (USER,))
            await asyncio.sleep(0.002)
        assert (await cycle).checked == 800
    finally:
        await set_trace_callback(bot.deps.db, None)
    waits = []  # tracker COMMITs between asking for each write and running it
    for at, entry in enumerate(seen):
        if entry == "asked":
            ran = next(i for i in range(at, len(seen)) if seen[i].startswith("UPDATE users"))
            waits.append(seen[at:ran].count("COMMIT"))
    assert seen.count("COMMIT") >= 3 and len(waits) >= 3
    assert max(waits) <= 1, waits  # queued behind every batch answered before it: up to 4


async def test_a_failed_write_stores_none_of_the_batches_it_held_and_the_next_cycle_does(
    bot: BotHarness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for panel_id in await follow_many(bot, 400):
        bot.sandbox.set_status(panel_id, "In progress")
    bot.sandbox.latency = 0.05
    real = orders.apply_status_changes
    calls = 0

    async def third_fails(*args: Any, **kwargs: Any) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 3:  # inside the write of batches 2 to 4
            raise sqlite3.OperationalError("disk I/O error")
        return await real(*args, **kwargs)

    monkeypatch.setattr(orders, "apply_status_changes", third_fails)
    with pytest.raises(sqlite3.OperationalError):
        await poll_orders(bot.deps)
    followed = await orders.active_orders(bot.deps.db)
    # Only a batch written before, in a transaction of its own (the first), is stored.
    assert sum(o.status is not None for o in followed) in (0, 100)
    monkeypatch.setattr(orders, "apply_status_changes", real)
    await poll_orders(bot.deps)
    followed = await orders.active_orders(bot.deps.db)
    assert all(o.status == "In progress" for o in followed)
    rows = await fetch_all(bot.deps.db, "SELECT order_id, COUNT(*) FROM order_status_history"
                                        " GROUP BY order_id")
    assert len(rows) == 400 and {count for _, count in rows} == {1}  # each change once


# --- crash between the write and the send ----------------------------------------------------


async def test_a_restart_between_the_change_and_the_send_still_delivers_it_once(
    tmp_path: Path,
) -> None:
    first = await start_harness(tmp_path)
    _local, panel_id = await place(first)
    await poll_orders(first.deps)
    first.sandbox.set_status(panel_id, "In progress")
    report = await poll_orders(first.deps)  # written with its outbox entry…
    assert report.notices == 1
    await stop_harness(first)  # …and the process goes before sending it
    assert pushes(first) == []

    second = await start_harness(tmp_path, sandbox=first.sandbox, world=first.world)
    try:
        await second.app.start()  # the start-up job sends what the outbox holds
        await second.world.wait_for_text_async(USER, "Pending → In progress", timeout=5, since=0)
        await asyncio.sleep(0.2)
        assert len(pushes(second)) == 1
        assert await outbox.count_pending_notifications(second.deps.db) == 0
    finally:
        await stop_harness(second)


# --- Telegram's limits -----------------------------------------------------------------------


async def test_a_user_who_blocked_the_bot_is_skipped_until_they_write_again(
    bot: BotHarness,
) -> None:
    _a, first = await place(bot)
    _b, second = await place(bot)
    await cycle(bot)
    bot.world.block(USER)
    bot.sandbox.set_status(first, "In progress")
    await cycle(bot)
    user = await users.get_user(bot.deps.db, USER)
    assert user is not None and user.blocked
    tries = len(bot.world.calls_to("sendMessage"))
    bot.sandbox.set_status(first, "Completed")
    await cycle(bot)
    await cycle(bot)
    assert len(bot.world.calls_to("sendMessage")) == tries  # not even tried again
    assert await outbox.count_pending_notifications(bot.deps.db) == 0

    await bot.send("/start")  # they are back
    user = await users.get_user(bot.deps.db, USER)
    assert user is not None and not user.blocked
    bot.sandbox.set_status(second, "In progress")
    await cycle(bot)
    assert pushes(bot) == [
        f"Order {second} · Instagram Likes: Pending → In progress"
        f" · start {bot.sandbox.order(second)['start_count']}"
    ]


async def test_any_message_from_a_blocked_user_unblocks_them(bot: BotHarness) -> None:
    await users.upsert_user(bot.deps.db, telegram_id=USER, name="User")
    await users.set_blocked(bot.deps.db, USER, True)
    await bot.send("/help")
    user = await users.get_user(bot.deps.db, USER)
    assert user is not None and not user.blocked


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_flood_control_is_waited_out_without_losing_the_message(bot: BotHarness) -> None:
    _local, panel_id = await place(bot)
    await cycle(bot)
    bot.sandbox.set_status(panel_id, "In progress")
    await poll_orders(bot.deps)
    bot.world.flood(USER, 1)  # one "429 retry after 1": the rate limiter waits and retries
    started = time.monotonic()
    report = await send_pending(bot.app.bot, bot.deps)
    assert report.sent == 1 and time.monotonic() - started >= 1
    assert len(pushes(bot)) == 1


class FloodedBot:
    """A bot whose every send meets flood control the rate limiter could not wait out."""

    def __init__(self) -> None:
        self.calls = 0

    async def _post(self, *args: object, **kwargs: object) -> None:
        """Every Bot API call (bot/outgoing.py's layer): "429: retry after 30"."""
        self.calls += 1
        raise RetryAfter(30)


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_persistent_flood_control_keeps_the_message_until_the_wait_is_over(
    bot: BotHarness,
) -> None:
    _local, panel_id = await place(bot)
    await cycle(bot)
    bot.sandbox.set_status(panel_id, "In progress")
    _other, later = await place(bot)
    bot.sandbox.set_status(later, "In progress")
    now = time.time()
    await poll_orders(bot.deps, now=now)
    flooded = FloodedBot()
    report = await send_pending(flooded, bot.deps, now=now)  # type: ignore[arg-type]
    assert (report.sent, report.deferred, flooded.calls) == (0, 1, 1)  # the drain stops there
    assert await outbox.count_pending_notifications(bot.deps.db) == 2
    report = await send_pending(bot.app.bot, bot.deps, now=now + 5)
    assert report.sent == 1  # the other one is not held up…
    report = await send_pending(bot.app.bot, bot.deps, now=now + 31)
    assert report.sent == 1  # …and the first goes once the wait is over
    assert sorted(p.split(" ·")[0] for p in pushes(bot)) == [
        f"Order {panel_id}", f"Order {later}"
    ]


# --- panel trouble ---------------------------------------------------------------------------


async def test_panel_down_for_several_cycles_backs_off_quietly_then_delivers(
    bot: BotHarness,
) -> None:
    await fast_panel_client(bot)
    _local, panel_id = await place(bot)
    t = time.time()
    await cycle(bot, now=t)
    bot.sandbox.down = True
    bot.sandbox.set_status(panel_id, "In progress")
    state = tracking.tracker_state(bot.deps)
    delays = []
    for step in range(1, 16):  # a quarter of an hour of cycles, one a minute
        now = t + step * INTERVAL
        asked = len(bot.sandbox.requests_for("status"))
        report = await cycle(bot, now=now)
        if report.failed_accounts:
            delays.append(state.retry_at[OPERATOR_ACCOUNT] - now)
        else:
            assert report.skipped_accounts == [OPERATOR_ACCOUNT]
            assert len(bot.sandbox.requests_for("status")) == asked  # left alone meanwhile
    assert delays == [120, 240, 480, 900]  # doubling, then capped at 15 minutes
    assert bot.world.bot_messages(USER) == []  # nobody hears about the panel's trouble

    bot.sandbox.down = False
    report = await cycle(bot, now=state.retry_at[OPERATOR_ACCOUNT])
    assert report.failed_accounts == [] and report.changed == 1
    assert OPERATOR_ACCOUNT not in state.retry_at
    assert [p.split(" · start")[0] for p in pushes(bot)] == [
        f"Order {panel_id} · Instagram Likes: Pending → In progress"
    ]


def test_backoff_doubles_and_is_capped() -> None:
    assert [tracking.backoff_delay(60, n) for n in range(1, 6)] == [120, 240, 480, 900, 900]


async def test_a_lost_order_is_reported_once_and_no_longer_followed(bot: BotHarness) -> None:
    await users.upsert_user(bot.deps.db, telegram_id=USER, name="User")
    lost = await orders.track_order(bot.deps.db, panel=PANEL, owner_id=USER,
                                    account=OPERATOR_ACCOUNT,
                                    panel_order_id=999_999)
    for _ in range(LOST_AFTER - 1):
        await cycle(bot)
    assert pushes(bot) == []
    assert (await order(bot, lost.id)).lost_strikes == LOST_AFTER - 1
    await cycle(bot)
    assert pushes(bot) == [
        "Order 999999: the panel no longer knows this order; I stopped following it."
    ]
    asked = len(bot.panel_requests("status"))
    await cycle(bot)
    await cycle(bot)
    assert len(bot.panel_requests("status")) == asked  # not asked about any more
    assert len(pushes(bot)) == 1
    stored = await order(bot, lost.id)
    assert stored.final and stored.error == "lost"


async def test_an_answer_between_misses_starts_the_count_again(bot: BotHarness) -> None:
    await users.upsert_user(bot.deps.db, telegram_id=USER, name="User")
    # Followed before the panel knows it (the next id the sandbox will give out).
    early = await orders.track_order(bot.deps.db, panel=PANEL, owner_id=USER,
                                     account=OPERATOR_ACCOUNT,
                                     panel_order_id=23501)
    for _ in range(LOST_AFTER - 1):
        await cycle(bot)
    assert (await order(bot, early.id)).lost_strikes == LOST_AFTER - 1
    panel_id = await bot.deps.panel.add(DEMO_KEY, 2, {"link": "https://instagram.com/p/e",
                                                      "quantity": 100})
    bot.sandbox.set_status(panel_id, "Pending")
    assert panel_id == 23501
    for _ in range(LOST_AFTER):
        await cycle(bot)
    stored = await order(bot, early.id)
    assert stored.lost_strikes == 0 and not stored.final and stored.status == "Pending"
    assert pushes(bot) == []


async def test_a_refused_request_is_panel_trouble_not_a_lost_order(bot: BotHarness) -> None:
    local, _panel_id = await place(bot)
    bot.sandbox.fail_next("status", "error:Incorrect order ID", times=3)
    report = await cycle(bot)
    assert report.failed_accounts == [OPERATOR_ACCOUNT]
    stored = await order(bot, local)
    assert stored.lost_strikes == 0 and not stored.final
    assert bot.world.bot_messages(USER) == []


# --- who hears what --------------------------------------------------------------------------


async def test_notify_final_only_and_off(bot: BotHarness) -> None:
    _a, mine = await place(bot, owner=USER)
    _b, theirs = await place(bot, owner=OTHER)
    await users.set_notify(bot.deps.db, USER, "final")
    await users.set_notify(bot.deps.db, OTHER, "off")
    await cycle(bot)
    for status in ("In progress", "Completed"):
        bot.sandbox.set_status(mine, status)
        bot.sandbox.set_status(theirs, status)
        await cycle(bot)
    assert [p.split(" · start")[0] for p in pushes(bot, USER)] == [
        f"Order {mine} · Instagram Likes: In progress → Completed"
    ]
    assert bot.world.bot_messages(OTHER) == []
    assert (await order(bot, _b)).status == "Completed"  # followed all the same


async def test_refills_are_reported_when_they_end(bot: BotHarness) -> None:
    local, panel_id = await place(bot, service=1, quantity=100, status="Completed")
    other, other_panel = await place(bot, service=1, quantity=100, status="Completed")
    await cycle(bot)
    done = await bot.deps.panel.refill(DEMO_KEY, panel_id)
    rejected = await bot.deps.panel.refill(DEMO_KEY, other_panel)
    await refills.add_refill(bot.deps.db, order_id=local, panel_refill_id=done)
    await refills.add_refill(bot.deps.db, order_id=other, panel_refill_id=rejected)
    bot.sandbox.set_refill_status(done, "In progress")
    bot.sandbox.set_refill_status(rejected, "In progress")
    already = len(pushes(bot))
    await cycle(bot)
    assert len(pushes(bot)) == already  # under way is not news
    bot.sandbox.set_refill_status(done, "Completed")
    bot.sandbox.set_refill_status(rejected, "Rejected")
    await cycle(bot)
    await cycle(bot)
    assert pushes(bot)[already:] == [
        f"Refill {done} of order {panel_id} · Instagram Followers: Completed",
        f"Refill {rejected} of order {other_panel} · Instagram Followers: Rejected",
    ]
    assert await refills.open_refills(bot.deps.db) == []


# --- age-based backoff -----------------------------------------------------------------------


@pytest.mark.parametrize(("age", "every"), [
    (0, 0), (59 * 60, 0), (2 * 3600, 300), (2 * 86400, 1800), (30 * 86400, 7200),
])
def test_older_orders_are_asked_about_less_often(age: float, every: float) -> None:
    assert tracking.next_check_at(1000.0, 1000.0 + age) == 1000.0 + age + every


async def test_old_orders_are_skipped_until_due(bot: BotHarness) -> None:
    await place(bot)
    t = time.time() + 2 * 86400  # the order is two days old at this cycle
    await poll_orders(bot.deps, now=t)
    asked = len(bot.panel_requests("status"))
    await poll_orders(bot.deps, now=t + 60)
    await poll_orders(bot.deps, now=t + 29 * 60)
    assert len(bot.panel_requests("status")) == asked
    await poll_orders(bot.deps, now=t + 30 * 60)
    assert len(bot.panel_requests("status")) == asked + 1


# --- the real job ----------------------------------------------------------------------------


async def test_the_job_queue_runs_the_cycle_and_pushes(tmp_path: Path) -> None:
    harness = await start_harness(tmp_path, STATUS_POLL_INTERVAL=1)
    try:
        _local, panel_id = await place(harness)
        await poll_orders(harness.deps)
        harness.sandbox.set_status(panel_id, "In progress")
        await harness.app.start()
        await harness.world.wait_for_text_async(USER, "Pending → In progress", timeout=5,
                                                since=0)
    finally:
        await stop_harness(harness)


# --- several panel accounts ------------------------------------------------------------------


async def test_each_account_is_asked_with_its_own_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    harness = await start_harness(tmp_path, SECRET_KEY="a-long-secret-for-the-tests-only-0123")
    try:
        deps = harness.deps
        assert deps.keybox is not None
        harness.sandbox.add_key("own-key-of-42", Decimal("50"))
        await users.upsert_user(deps.db, telegram_id=USER, name="User")
        await users.set_panel_key(deps.db, USER, deps.keybox.encrypt("own-key-of-42"))
        _op_local, op_order = await place(harness, owner=OTHER)
        own_order = await deps.panel.add("own-key-of-42", 2, {"link": "https://instagram.com/p/o",
                                                             "quantity": 100})
        harness.sandbox.set_status(own_order, "In progress")
        await orders.track_order(deps.db, panel=PANEL, owner_id=USER,
                                 account=users.user_account(USER),
                                 panel_order_id=own_order)
        report = await poll_orders(deps)
        keys = sorted(r["key"] for r in harness.sandbox.requests_for("status"))
        assert keys == ["demo", "own-key-of-42"] and report.checked == 2
        harness.sandbox.set_status(own_order, "Completed")
        harness.sandbox.set_status(op_order, "Completed")
        await cycle(harness)
        assert [p.split(":")[0] for p in pushes(harness, USER)] == [f"Order {own_order}"]
        assert [p.split(" ·")[0] for p in pushes(harness, OTHER)] == [f"Order {op_order}"]

        # The key is gone (hardening item 6): that account's orders are not read at all, and
        # their owner is told once why they are no longer followed.
        await users.set_panel_key(deps.db, USER, None)
        other = await deps.panel.add("own-key-of-42", 2, {"link": "https://instagram.com/p/p",
                                                         "quantity": 100})
        await orders.track_order(deps.db, panel=PANEL, owner_id=USER,
                                 account=users.user_account(USER), panel_order_id=other)
        harness.sandbox.requests.clear()
        caplog.clear()
        for _ in range(3):
            report = await poll_orders(deps)
            assert report.checked == 0 and report.skipped_accounts == []
            await tracking.tell_unfollowed(deps)
        assert harness.sandbox.requests_for("status") == []
        await send_pending(harness.app.bot, deps)
        told = [t for t in harness.texts(USER) if "I can no longer follow" in t]
        assert told == ["⚠️ I can no longer follow your unfinished order: the panel key they "
                        "were placed with is no longer connected (/connect it again). You "
                        "still find it in /orders."]
        assert "own-key-of-42" not in caplog.text
    finally:
        await stop_harness(harness)
