"""Issue 12: the money and ownership holes, each shown through the real Application (the items
not covered here are tested beside the feature: see the closing note)."""

from __future__ import annotations

import ast
import logging
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from telegram.error import TimedOut

from bot.handlers.conversations import end_stale_conversations
from bot.jobs import send_pending
from bot.panel.models import SANDBOX_URL
from bot.panel.sandbox import DEMO_KEY, SandboxPanel
from bot.service_types import form_for
from bot.services import placement, tracking
from bot.services.accounts import account_for
from bot.standin.botapi import FakeRequest
from storage import orders, refills, users
from storage.db import fetch_all, set_trace_callback, transaction
from storage.users import OPERATOR_ACCOUNT
from tests.conftest import ADMIN, OTHER, USER, BotHarness, start_harness, stop_harness

ROOT = Path(__file__).resolve().parent.parent
REAL_URL = "https://panel.example/api/v2"
LINK = "https://instagram.com/p/hardening"
REAL_SERVICES = [
    {"service": 900, "name": "Real Followers", "type": "Default", "category": "Real Panel",
     "rate": "2.00", "min": "10", "max": "5000", "refill": True, "cancel": True},
]


async def to_summary(bot: BotHarness, service: int = 1, *, user: int = USER) -> None:
    """Service 1 (Default) up to its summary."""
    await bot.send(f"/order {service}", user=user)
    await bot.send(LINK, user=user)
    await bot.send("100", user=user)
    await bot.press("Skip", user=user)
    assert "Check the order" in bot.last(user).plain, bot.last(user).plain


async def drain(bot: BotHarness) -> None:
    """Sends what the outbox holds."""
    await send_pending(bot.app.bot, bot.deps)


async def all_orders(bot: BotHarness) -> list[orders.Order]:
    """Every stored order, drafts included."""
    return await orders.list_orders(bot.deps.db, limit=1000, include_drafts=True)


# --- the design: layers you can see -----------------------------------------------------------

def _imports(path: Path) -> set[str]:
    """The modules a file imports (absolute names)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_storage_imports_nothing_from_bot_and_services_nothing_from_telegram() -> None:
    for path in (ROOT / "storage").glob("*.py"):
        assert not [m for m in _imports(path) if m == "bot" or m.startswith("bot.")], path
    for path in (ROOT / "bot" / "services").glob("*.py"):
        imported = _imports(path)
        assert not [m for m in imported if m.split(".")[0] == "telegram"], path
        assert not [m for m in imported if m.startswith("bot.handlers")], path
    # Demo mode is just another panel: only the start-up code knows the sandbox.
    for path in [*(ROOT / "bot" / "services").glob("*.py"), *(ROOT / "bot" / "handlers").glob(
            "*.py"), ROOT / "bot" / "jobs.py"]:
        assert "bot.panel.sandbox" not in _imports(path), path


# --- item 1: a catalogue and an order belong to a panel ------------------------------------------

async def test_a_demo_database_reused_with_a_real_panel_shows_and_orders_only_that_panel(
        tmp_path: Path) -> None:
    demo = await start_harness(tmp_path)
    await to_summary(demo, user=ADMIN)
    await demo.press("Confirm", user=ADMIN)
    [demo_order] = await orders.list_orders(demo.deps.db, owner_id=ADMIN)
    assert demo_order.state == "placed" and demo_order.panel == SANDBOX_URL
    await stop_harness(demo)

    real = SandboxPanel(keys={"op-key-1234": Decimal("50")}, services=REAL_SERVICES)
    bot = await start_harness(tmp_path, sandbox=real, PANEL_URL=REAL_URL,
                              PANEL_KEY="op-key-1234")
    try:
        await bot.send("/services", user=ADMIN)
        categories = " ".join(bot.buttons(ADMIN))
        assert "Real Panel" in categories and "Instagram" not in categories, categories
        await bot.send("/order 1", user=ADMIN)  # a sandbox service id: not on this panel
        assert "There is no service #1" in bot.last(ADMIN).plain
        assert real.requests_for("add") == []

        # The demo order stays visible, marked, and is never sent to the real panel.
        await bot.send("/orders", user=ADMIN)
        assert f"{demo_order.panel_order_id}" in bot.last(ADMIN).plain
        assert "demo" in bot.last(ADMIN).plain
        await bot.press_data(f"oc:{demo_order.id}", user=ADMIN)
        assert "Refresh" not in bot.buttons(ADMIN)
        await bot.press_data(f"oc:{demo_order.id}:r", user=ADMIN)
        await bot.send(f"/status {demo_order.panel_order_id}", user=ADMIN)
        assert f"Not found: {demo_order.panel_order_id}" in bot.last(ADMIN).plain
        await bot.send(f"/cancelorder {demo_order.panel_order_id}", user=ADMIN)
        report = await tracking.poll_orders(bot.deps, now=time.time() + 3600)
        assert report.checked == 0
        assert real.requests_for("status") == [] and real.requests_for("cancel") == []

        # An order on the real panel: its own service, its own price, asked about there.
        await to_summary(bot, 900, user=ADMIN)
        assert "2.00 USD per 1000" in bot.last(ADMIN).plain
        await bot.press("Confirm", user=ADMIN)
        [add] = real.requests_for("add")
        assert add["service"] == "900"
        report = await tracking.poll_orders(bot.deps)
        assert report.checked == 1 and len(real.requests_for("status")) == 1
    finally:
        await stop_harness(bot)


async def test_a_new_panel_key_alone_means_a_fresh_catalogue(tmp_path: Path) -> None:
    panel = SandboxPanel(keys={"op-key-AAAA": Decimal("5"), "op-key-BBBB": Decimal("5")})
    first = await start_harness(tmp_path, sandbox=panel, PANEL_URL=REAL_URL,
                                PANEL_KEY="op-key-AAAA")
    await first.send("/services", user=ADMIN)
    await stop_harness(first)
    assert [r["key"] for r in panel.requests_for("services")] == ["op-key-AAAA"]
    second = await start_harness(tmp_path, sandbox=panel, PANEL_URL=REAL_URL,
                                 PANEL_KEY="op-key-BBBB")
    try:
        await second.send("/services", user=ADMIN)
        assert [r["key"] for r in panel.requests_for("services")] == ["op-key-AAAA",
                                                                      "op-key-BBBB"]
        stored = await fetch_all(second.deps.db, "SELECT source FROM services_cache")
        assert all("op-key" not in row[0] for row in stored)  # a fingerprint, never the key
    finally:
        await stop_harness(second)


# --- item 3: whoever sees a change first, the owner hears of it once ----------------------------

async def test_an_admins_cancel_of_a_users_order_is_told_to_the_owner_once(
        bot: BotHarness) -> None:
    await to_summary(bot)
    await bot.press("Confirm")
    [order] = await orders.list_orders(bot.deps.db, owner_id=USER)
    await drain(bot)
    await bot.send(f"/cancelorder {order.panel_order_id}", user=ADMIN)
    assert "cancel accepted" in bot.last(ADMIN).plain
    await drain(bot)
    await tracking.poll_orders(bot.deps)
    await drain(bot)
    told = [t for t in bot.texts(USER) if "Canceled" in t]
    assert len(told) == 1, bot.texts(USER)


# --- item 4: nothing between the claim and the add ---------------------------------------------

async def test_a_telegram_timeout_at_confirm_never_leaves_the_order_claimed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bot = await start_harness(tmp_path)
    await to_summary(bot)
    real = FakeRequest.do_request

    async def flaky(self: FakeRequest, url: str, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        if url.endswith(("/answerCallbackQuery", "/editMessageText")):
            raise TimedOut()
        return await real(self, url, *args, **kwargs)

    monkeypatch.setattr(FakeRequest, "do_request", flaky)
    await bot.press("Confirm", raise_errors=False)
    monkeypatch.undo()
    [order] = await orders.list_orders(bot.deps.db, owner_id=USER)
    assert order.state == "placed" and order.panel_order_id is not None
    assert len(bot.panel_requests("add")) == 1
    await stop_harness(bot)
    again = await start_harness(tmp_path)  # nothing was left "claimed" for the restart
    try:
        await drain(again)
        assert not [t for t in again.texts() if "do not know whether" in t]
        fresh = await orders.get_order(again.deps.db, order.id)
        assert fresh is not None and fresh.state == "placed"
    finally:
        await stop_harness(again)


async def test_a_database_error_after_the_add_is_logged_for_reconciling_and_shown(
        bot: BotHarness, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    await to_summary(bot)

    async def broken(*args: Any, **kwargs: Any) -> bool:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(placement.orders, "mark_placed", broken)
    with caplog.at_level(logging.ERROR):
        await bot.press("Confirm")
    [sent] = bot.sandbox.orders_of(DEMO_KEY)
    panel_id = sent["id"] if "id" in sent else sent["order"]
    [draft] = await all_orders(bot)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("RECONCILE" in m and f"draft {draft.id}" in m and f"order {panel_id}" in m
               for m in errors), errors
    assert f"Order {panel_id} placed" in bot.last().plain
    assert "could not write it down" in bot.last().plain


# --- item 5: an unknown outcome can be settled ---------------------------------------------------

async def test_an_unknown_outcome_is_linked_to_the_panels_id_as_the_same_row(
        bot: BotHarness) -> None:
    await to_summary(bot)
    bot.sandbox.fail_next("add", "timeout_after")  # placed, but the answer was lost
    await bot.press("Confirm")
    [order] = await orders.list_orders(bot.deps.db, owner_id=USER)
    assert order.state == "unknown"
    [on_panel] = bot.sandbox.orders_of(DEMO_KEY)
    panel_id = int(on_panel.get("id", on_panel.get("order", 0)))
    await bot.send("/orders")
    await bot.press("Outcome unknown")
    assert {"🔗 It was placed", "✖ It was not placed"} <= set(bot.buttons())
    await bot.press("It was placed")
    assert "Send me the panel's order id" in bot.last().plain
    await bot.send("999999")
    assert "does not know order 999999" in bot.last().plain  # asked again, nothing linked
    await bot.send(str(panel_id))
    assert f"Linked: this is order {panel_id}" in bot.last().plain
    rows = await all_orders(bot)
    assert [(o.id, o.state, o.panel_order_id) for o in rows] == [(order.id, "placed", panel_id)]
    bot.sandbox.set_status(panel_id, "Completed")
    report = await tracking.poll_orders(bot.deps)
    assert report.checked == 1 and report.changed == 1


async def test_an_unknown_outcome_can_be_marked_not_placed(bot: BotHarness) -> None:
    await to_summary(bot)
    bot.sandbox.fail_next("add", "timeout_after")
    await bot.press("Confirm")
    [order] = await orders.list_orders(bot.deps.db, owner_id=USER)
    await bot.press_data(f"oc:{order.id}")
    await bot.press("It was not placed")
    await bot.press("Yes, it was not placed")
    fresh = await orders.get_order(bot.deps.db, order.id)
    assert fresh is not None and fresh.state == "failed"
    assert "Status: Not placed" in bot.last().plain
    await bot.press_data(f"oc:{order.id}:npy")  # a second tap changes nothing
    assert "not waiting to be settled" in str(bot.world.calls_to("answerCallbackQuery")[-1])


async def test_a_panel_that_could_not_be_reached_did_not_get_the_order(bot: BotHarness) -> None:
    # The bot checks by itself where it can: no connection was made, so nothing was sent.
    await to_summary(bot)
    bot.sandbox.fail_next("add", "connect")
    await bot.press("Confirm")
    assert "The order was not placed: tap Confirm to try again" in bot.last().plain
    [order] = await orders.list_orders(bot.deps.db, owner_id=USER)
    assert order.state == "failed"
    await bot.press("Confirm (retry)")
    assert "placed." in bot.last().plain
    assert len(bot.sandbox.orders_of(DEMO_KEY)) == 1


# --- item 6: nothing polled forever, nothing silently never polled -------------------------------

async def test_an_unanswered_batch_moves_the_next_check_forward(bot: BotHarness) -> None:
    await to_summary(bot)
    await bot.press("Confirm")
    [order] = await orders.list_orders(bot.deps.db, owner_id=USER)
    later = order.created_at + 2 * 3600  # an order two hours old: every 5 minutes
    bot.sandbox.fail_next("status", "html502", times=10)
    report = await tracking.poll_orders(bot.deps, now=later)
    assert report.failed_accounts == [OPERATOR_ACCOUNT]
    fresh = await orders.get_order(bot.deps.db, order.id)
    assert fresh is not None and fresh.next_check_at == pytest.approx(later + 300)


async def test_refills_share_the_schedule_and_are_lost_after_repeated_incorrect_ids(
        bot: BotHarness) -> None:
    await to_summary(bot)
    await bot.press("Confirm")
    [order] = await orders.list_orders(bot.deps.db, owner_id=USER)
    refill = await refills.add_refill(bot.deps.db, order_id=order.id, panel_refill_id=424242)
    now = time.time()
    for n in range(tracking.LOST_AFTER):
        report = await tracking.poll_refills(bot.deps, now=now + n)
        assert report.requests == 1
    stored = await refills.get_refill(bot.deps.db, refill.id)
    assert stored is not None and stored.final and stored.error == "lost"
    assert (await tracking.poll_refills(bot.deps, now=now + 10)).requests == 0
    await drain(bot)
    assert "the panel no longer knows this refill" in bot.last().plain


# --- item 12: abandoned forms end even across a restart ------------------------------------------

async def _age_conversations(bot: BotHarness, seconds: float) -> None:
    """Makes every stored conversation look `seconds` older (as if the bot was down)."""
    async with transaction(bot.deps.db):
        await bot.deps.db.execute("UPDATE ptb_conversations SET updated_at = updated_at - ?",
                                  (seconds,))


async def test_a_form_abandoned_over_a_restart_times_out_and_later_text_is_not_an_answer(
        tmp_path: Path) -> None:
    first = await start_harness(tmp_path)
    await first.send("/order 1")
    assert "Send the link" in first.last().plain
    await _age_conversations(first, 3 * 24 * 3600)
    await stop_harness(first)
    bot = await start_harness(tmp_path)
    try:
        assert await end_stale_conversations(bot.app) == 1
        await drain(bot)
        assert "Your order was not placed (it timed out after 15 minutes)" in bot.last().plain
        await bot.send("followers")  # days later: a search, not the link the form asked for
        assert "Send the link" not in bot.last().plain
        assert "Instagram Followers" in bot.last().plain
        assert await end_stale_conversations(bot.app) == 0
    finally:
        await stop_harness(bot)


async def test_a_key_wait_abandoned_over_a_restart_never_takes_a_later_message_as_key(
        tmp_path: Path) -> None:
    secret = "a-long-secret-for-the-tests-only-0123"
    first = await start_harness(tmp_path, SECRET_KEY=secret)
    await first.send("/connect")
    assert "Send me your panel API key" in first.last().plain
    await _age_conversations(first, 3600)
    await stop_harness(first)
    bot = await start_harness(tmp_path, SECRET_KEY=secret)
    try:
        await end_stale_conversations(bot.app)
        await drain(bot)
        assert "I stopped waiting for your panel API key" in bot.last().plain
        bot.sandbox.add_key("user-key-LATE-0001", Decimal("5"))
        await bot.send("user-key-LATE-0001")  # a valid key: it would connect if taken as one
        assert "user-key-LATE-0001" not in [r["key"] for r in bot.sandbox.requests_for(
            "balance")]
        user = await users.get_user(bot.deps.db, USER)
        assert user is not None and user.panel_key is None
    finally:
        await stop_harness(bot)


class Clock:
    """time.time for bot/handlers/conversations.py, moved by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        """The hand-moved time."""
        return self.now


async def test_a_form_whose_user_keeps_answering_wrong_is_not_ended_while_they_answer(
        bot: BotHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr("bot.handlers.conversations.time", clock)
    start = clock.now
    await bot.send("/order 1")
    clock.now = start + 10 * 60
    await bot.send("not a link")  # the same question again: the form's state is not rewritten
    assert "Send the link" in bot.last().plain
    assert await end_stale_conversations(bot.app, now=start + 20 * 60) == 0  # 15 min timeout
    clock.now = start + 30 * 60
    await bot.send(LINK)
    assert "How many" in bot.last().plain
    assert await end_stale_conversations(bot.app, now=start + 44 * 60) == 0
    assert await end_stale_conversations(bot.app, now=start + 46 * 60) == 1
    await drain(bot)
    assert "Your order was not placed (it timed out after 15 minutes)" in bot.last().plain
    await bot.send("100")  # no longer an answer
    assert "Step" not in bot.last().plain


async def test_a_conversation_schedules_no_job_per_update(tmp_path: Path) -> None:
    harness = await start_harness(tmp_path)
    await harness.app.start()  # the JobQueue runs
    try:
        queue = harness.app.job_queue
        assert queue is not None
        before = [job.name for job in queue.jobs()]
        await harness.send("/order 1")
        await harness.send(LINK)
        await harness.send("/connect")
        assert {job.name for job in queue.jobs()} <= set(before)  # one-off start-up jobs end
    finally:
        await stop_harness(harness)


async def test_a_live_form_is_kept_over_a_restart(tmp_path: Path) -> None:
    first = await start_harness(tmp_path)
    await first.send("/order 1")
    await stop_harness(first)
    bot = await start_harness(tmp_path)
    try:
        assert await end_stale_conversations(bot.app) == 0
        await bot.send(LINK)
        assert "How many" in bot.last().plain
    finally:
        await stop_harness(bot)


# --- item 13: the summary's balance, one draft per form, groups apart ---------------------------

async def test_the_summary_asks_the_balance_once_and_still_offers_confirm(
        bot: BotHarness) -> None:
    await bot.send("/order 1")
    await bot.send(LINK)
    await bot.send("100")
    before = len(bot.panel_requests("balance"))
    bot.sandbox.fail_next("balance", "timeout", times=5)
    await bot.press("Skip")
    assert "Balance: unavailable right now" in bot.last().plain
    assert "Confirm" in " ".join(bot.buttons())
    assert len(bot.panel_requests("balance")) == before + 1  # one try, no retries


async def test_back_and_edit_reuse_one_draft_and_an_older_summary_is_stale(
        bot: BotHarness) -> None:
    await to_summary(bot)
    first = bot.world.find_button(USER, "Confirm")
    assert first is not None and first.data is not None
    await bot.press("Back")
    await bot.press("Skip")
    await bot.press("Edit")
    await bot.press("Keep")
    await bot.send("200")
    await bot.press("Skip")
    assert "Quantity: 200" in bot.last().plain
    assert len(await all_orders(bot)) == 1  # one form, one draft
    await bot.press_data(first.data, message_id=first.message_id)  # the first summary's
    assert bot.world.calls_to("answerCallbackQuery")[-1].get("text") == (
        "This summary is out of date.")
    assert bot.panel_requests("add") == []
    await bot.press("Confirm")
    [add] = bot.panel_requests("add")
    assert add["quantity"] == "200"


async def test_a_draft_rewritten_after_it_was_read_for_sending_is_not_sent_as_read(
        bot: BotHarness) -> None:
    # Confirm reads the draft, answers Telegram, then claims: a draft rewritten in between
    # (the same form's draft, after Edit) must not go out with the quantity read before it.
    await to_summary(bot)
    [draft] = await all_orders(bot)
    deps = bot.deps
    account = await account_for(deps, USER)
    assert account is not None
    ready = await placement.prepare(deps, account, USER, draft.id)
    assert isinstance(ready, placement.Ready) and ready.draft.quantity == 100
    index = await deps.catalog.get(account.catalog_key, account.key)
    service = index.by_id[1]
    assert await placement.save_draft(
        deps, account, USER, service, form_for(service.type),
        {"link": LINK, "quantity": "200"}, index.currency, draft_id=draft.id) == draft.id
    outcome = await placement.send(deps, ready)
    assert outcome == placement.NotClaimed(sent=False)  # out of date, not "already sent"
    assert bot.panel_requests("add") == []
    fresh = await orders.get_order(deps.db, draft.id)
    assert fresh is not None and fresh.state == "draft" and fresh.quantity == 200
    placed = await placement.place(deps, account, USER, draft.id)  # read afresh: sent once
    assert isinstance(placed, placement.Placed)
    [add] = bot.panel_requests("add")
    assert add["quantity"] == "200"
    assert await placement.send(deps, ready) == placement.NotClaimed(sent=True)
    assert len(bot.panel_requests("add")) == 1


async def test_old_drafts_are_purged(bot: BotHarness) -> None:
    await to_summary(bot)
    assert await orders.purge_drafts(bot.deps.db, older_than=time.time() - 60) == 0
    assert await orders.purge_drafts(bot.deps.db, older_than=time.time() + 60) == 1
    assert await all_orders(bot) == []


async def test_a_form_in_a_group_never_mixes_with_the_private_one(bot: BotHarness) -> None:
    group = -100123
    bot.world.open_chat(USER, chat_id=group, title="Team")
    await bot.send("/order 1")  # private: service 1
    await bot.app.process_update(  # type: ignore[arg-type]
        __import__("telegram").Update.de_json(
            bot.world.user_sends(USER, "/order 13", chat_id=group), bot.app.bot))
    await bot.send(LINK)  # answers the private form
    assert "How many" in bot.last().plain and "#1 " in bot.last().plain
    group_last = bot.world.last_bot_message(group)
    assert group_last is not None and "#13 " in group_last.plain
    assert "Send the link" in group_last.plain


# --- item 14: /status with 1,000 ids costs a constant number of queries -------------------------

async def _statements_for(bot: BotHarness, command: str) -> int:
    """How many SQL statements the bot's connection (and its reader) ran for one command."""
    seen: list[str] = []
    await set_trace_callback(bot.deps.db, seen.append)
    try:
        await bot.send(command, user=ADMIN)
    finally:
        await set_trace_callback(bot.deps.db, None)
    return len(seen)


async def test_status_refill_and_cancel_cost_the_same_queries_for_10_or_1000_ids(
        bot: BotHarness) -> None:
    db = bot.deps.db
    await users.upsert_user(db, telegram_id=OTHER, name="Other")
    tracked = await orders.track_orders(db, owner_id=OTHER, account=OPERATOR_ACCOUNT,
                                        panel=SANDBOX_URL, panel_order_ids=range(1, 1001))
    assert len(tracked) == 1000
    await bot.send("/start", user=ADMIN)  # met: no first-contact write inside the counts
    for command in ("status", "refill", "cancelorder"):
        few = await _statements_for(bot, f"/{command} " + " ".join(map(str, range(1, 11))))
        many = await _statements_for(bot, f"/{command} " + " ".join(map(str, range(1, 1001))))
        assert many == few, (command, few, many)
