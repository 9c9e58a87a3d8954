"""/orders, order cards, /status, /track, /refill, /cancelorder, /balance: what the user sees."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

from bot.handlers.orders import parse_ids
from bot.jobs import send_pending
from bot.money import order_cost
from bot.order_views import pack_lines
from bot.panel.models import SANDBOX_URL as PANEL
from bot.panel.models import OrderStatus
from bot.panel.sandbox import DEFAULT_SERVICES, DEMO_KEY, SandboxPanel
from bot.services.tracking import poll_orders
from storage import orders as order_store
from storage import refills as refill_store
from storage.orders import Order
from storage.outbox import count_pending_notifications
from storage.users import OPERATOR_ACCOUNT, set_panel_key, upsert_user, user_account
from tests.conftest import ADMIN, OTHER, USER, BotHarness, start_harness, stop_harness

SERVICES = {row["service"]: row for row in DEFAULT_SERVICES}
_links = itertools.count(1)

# Sandbox services by what they allow (checked against DEFAULT_SERVICES below).
REFILL_AND_CANCEL, REFILL_ONLY, CANCEL_ONLY, NEITHER = 1, 15, 2, 13


def test_sandbox_services_allow_what_these_tests_assume() -> None:
    flags = {sid: (SERVICES[sid]["refill"], SERVICES[sid]["cancel"])
             for sid in (REFILL_AND_CANCEL, REFILL_ONLY, CANCEL_ONLY, NEITHER)}
    assert flags == {1: (True, True), 15: (True, False), 2: (False, True), 13: (False, False)}


async def place(bot: BotHarness, *, user: int = USER, service: int = REFILL_AND_CANCEL,
                status: str | None = None, quantity: int = 200) -> Order:
    """An order placed on the sandbox and stored as the wizard would store it."""
    row = SERVICES[service]
    fields = {"link": f"https://instagram.com/p/post{next(_links)}", "quantity": str(quantity)}
    panel_id = await bot.deps.panel.add(DEMO_KEY, service, fields)
    db = bot.deps.db
    await upsert_user(db, telegram_id=user, name=f"User{user}")
    draft = await order_store.save_draft(
        db, panel=PANEL, owner_id=user, account=OPERATOR_ACCOUNT, service_id=service,
        service_name=row["name"], service_type=row["type"], rate=Decimal(row["rate"]),
        currency="USD", can_refill=row["refill"], can_cancel=row["cancel"], fields=fields,
        quantity=quantity, cost=order_cost(Decimal(row["rate"]), quantity),
    )
    assert await order_store.claim_order(db, draft, owner_id=user)
    assert await order_store.mark_placed(db, draft, panel_order_id=panel_id)
    if status is not None:
        await settle(bot, panel_id, status)
    order = await order_store.get_order(db, draft)
    assert order is not None
    return order


async def settle(bot: BotHarness, panel_id: int, status: str) -> None:
    """Sets an order's status on the sandbox and lets the bot learn it (as the tracker would)."""
    bot.sandbox.set_status(panel_id, status)
    order = await order_store.get_order_by_panel_id(
        bot.deps.db, panel=PANEL, account=OPERATOR_ACCOUNT, panel_order_id=panel_id)
    assert order is not None
    await order_store.record_status(bot.deps.db, order.id,
                                    await bot.deps.panel.status(DEMO_KEY, panel_id))


async def stored(bot: BotHarness, order: Order) -> Order:
    """The order as stored now."""
    fresh = await order_store.get_order(bot.deps.db, order.id)
    assert fresh is not None
    return fresh


async def drain(bot: BotHarness) -> None:
    """Sends what the outbox holds, as the tracker's job would."""
    await send_pending(bot.app.bot, bot.deps)


def last_answer(bot: BotHarness) -> str:
    """The text of the newest callback answer."""
    answers = list(bot.world.callback_answers.values())
    assert answers, "no button press was answered"
    return str(answers[-1].get("text") or "")


def statuses_asked(bot: BotHarness) -> list[int]:
    """Every order id sent to the panel's status action, in order."""
    ids: list[int] = []
    for request in bot.panel_requests("status"):
        raw = request.get("orders") or request.get("order") or ""
        ids += [int(part) for part in raw.split(",") if part]
    return ids


# --- parsing and splitting --------------------------------------------------------------------

def test_ids_are_parsed_leniently_and_deduplicated() -> None:
    assert parse_ids("1, 2 3,4 #5,,2") == ([1, 2, 3, 4, 5], [])
    assert parse_ids("12 abc -3 0 4.5") == ([12], ["abc", "-3", "0", "4.5"])


def test_long_replies_are_packed_under_telegrams_limit_without_splitting_lines() -> None:
    lines = [f"<code>{i}</code> · ❌ Incorrect order ID" for i in range(400)]
    messages = pack_lines(lines)
    assert len(messages) > 1
    assert all(len(m.encode("utf-16-le")) // 2 <= 4096 for m in messages)
    assert "\n".join(messages).split("\n") == lines


# --- /orders and the list -------------------------------------------------------------------------

async def test_orders_list_pages_25_orders_ten_at_a_time_newest_first(bot: BotHarness) -> None:
    db = bot.deps.db
    await upsert_user(db, telegram_id=USER, name="Ann")
    for panel_id in range(1001, 1026):
        await order_store.track_order(db, panel=PANEL, owner_id=USER, account=OPERATOR_ACCOUNT,
                                      panel_order_id=panel_id)
    await place(bot, user=OTHER)  # somebody else's: never in USER's list

    await bot.send("/orders")
    first = bot.last()
    assert "Your orders" in first.plain and "page 1/3" in first.plain
    assert first.plain.index("1025") < first.plain.index("1016")  # newest first
    assert "1015" not in first.plain
    labels = bot.buttons()
    assert sum(label.startswith("10") for label in labels) == 10
    assert "▶" in labels and "◀" not in labels

    await bot.press("▶")
    assert "page 2/3" in bot.last().plain and {"◀", "▶"} <= set(bot.buttons())
    await bot.press("▶")
    last = bot.last()
    assert "page 3/3" in last.plain and "1001" in last.plain and "1006" not in last.plain
    assert "▶" not in bot.buttons() and "◀" in bot.buttons()
    assert last.message_id == first.message_id  # pages replace each other
    assert not any(str(o.panel_order_id) in last.plain
                   for o in await order_store.list_orders(db, owner_id=OTHER))

    await bot.press_data("ol:99")  # a stale page number shows the last page
    assert "page 3/3" in bot.last().plain


async def test_admin_sees_all_users_orders(bot: BotHarness) -> None:
    mine = await place(bot, user=USER)
    theirs = await place(bot, user=OTHER)
    await bot.send("/orders", user=ADMIN)
    text = bot.last(ADMIN).plain
    assert "All users' orders" in text
    assert str(mine.panel_order_id) in text and str(theirs.panel_order_id) in text


async def test_my_orders_button_and_empty_list(bot: BotHarness) -> None:
    await bot.send("/start")
    await bot.press("My orders")
    assert "No orders yet" in bot.last().plain
    assert "🛒 New order" in bot.buttons()


# --- the card ------------------------------------------------------------------------------------

async def test_card_shows_what_was_sent_the_panels_figures_and_history(bot: BotHarness) -> None:
    order = await place(bot, status="In progress")
    await settle(bot, order.panel_order_id or 0, "Completed")
    await bot.send("/orders")
    await bot.press(str(order.panel_order_id))
    card = bot.last().plain
    assert f"Order {order.panel_order_id}" in card
    assert "Instagram Followers (id 1)" in card
    assert "Status: Completed" in card and "Remains: 0" in card and "Currency: USD" in card
    assert "Charge: 0.18 USD" in card and "Start count:" in card
    assert f"Link: {order.fields['link']}" in card and "Quantity: 200" in card
    history = card.split("Status history")[1]
    assert history.index("In progress") < history.index("Completed")
    assert "UTC" in history


async def test_buttons_follow_the_services_flags_and_the_status(bot: BotHarness) -> None:
    async def buttons_of(order: Order) -> list[str]:
        await bot.press_data(f"oc:{order.id}")
        return bot.buttons()

    await bot.send("/start")
    running = await place(bot, service=REFILL_AND_CANCEL, status="In progress")
    assert "✖️ Cancel order" in await buttons_of(running)
    assert "♻️ Refill" not in await buttons_of(running)

    done = await place(bot, service=REFILL_AND_CANCEL, status="Completed")
    assert "♻️ Refill" in await buttons_of(done)
    assert "✖️ Cancel order" not in await buttons_of(done)

    partial = await place(bot, service=REFILL_ONLY, status="Partial")
    assert "♻️ Refill" in await buttons_of(partial)
    no_cancel = await place(bot, service=REFILL_ONLY, status="In progress")
    assert "✖️ Cancel order" not in await buttons_of(no_cancel)

    no_refill = await place(bot, service=CANCEL_ONLY, status="Completed")
    assert "♻️ Refill" not in await buttons_of(no_refill)
    neither = await place(bot, service=NEITHER, status="In progress")
    assert await buttons_of(neither) == ["🔄 Refresh", "🔁 Order again", "◀ My orders"]
    assert "📋 Refill status" not in await buttons_of(done)


async def test_a_change_seen_on_refresh_is_still_told_to_the_owner_once(bot: BotHarness) -> None:
    # Hardening item 3: the admin looks first; the owner must still hear of the change, once.
    order = await place(bot, status="In progress")
    await drain(bot)
    before = len(bot.texts(USER))
    await bot.send("/start", user=ADMIN)
    await bot.press_data(f"oc:{order.id}", user=ADMIN)
    bot.sandbox.set_status(order.panel_order_id or 0, "Partial", remains=40)
    await bot.press("Refresh", user=ADMIN)
    assert "Status: Partial" in bot.last(ADMIN).plain and "Remains: 40" in bot.last(ADMIN).plain
    assert last_answer(bot) == "Status: Partial"
    assert (await stored(bot, order)).status == "Partial"
    await drain(bot)
    told = [t for t in bot.texts(USER)[before:] if "In progress → Partial" in t]
    assert len(told) == 1, bot.texts(USER)[before:]
    await poll_orders(bot.deps)  # the tracker sees the same status: nothing new to say
    await drain(bot)
    assert len([t for t in bot.texts(USER) if "→ Partial" in t]) == 1


async def test_card_refill_asks_first_then_stores_and_follows_the_refill(bot: BotHarness) -> None:
    order = await place(bot, status="Completed")
    await bot.send("/start")
    await bot.press_data(f"oc:{order.id}")
    await bot.press("Refill")
    assert f"Refill order {order.panel_order_id}?" in bot.last().plain
    assert bot.panel_requests("refill") == []  # a stray tap spends nothing

    await bot.press("Yes, refill")
    assert bot.panel_requests("refill") == [{"action": "refill",
                                             "order": str(order.panel_order_id)}]
    refills = await refill_store.refills_for_order(bot.deps.db, order.id)
    assert [r.panel_refill_id for r in refills] == [1]
    assert "Refill 1 requested" in bot.last().plain
    assert "📋 Refill status" in bot.buttons()
    assert "♻️ Refill" not in bot.buttons()  # not again while this one runs

    bot.sandbox.set_refill_status(1, "Completed")
    await bot.press("Refill status")
    assert "Refill 1 · Completed" in bot.last().plain
    assert (await refill_store.refills_for_order(bot.deps.db, order.id))[0].final
    assert "♻️ Refill" in bot.buttons()


async def test_card_refill_refused_by_the_panel_shows_its_error(bot: BotHarness) -> None:
    order = await place(bot, status="Completed")
    bot.sandbox.fail_next("refill", "error:Refill is disabled for this service")
    await bot.send("/start")
    await bot.press_data(f"oc:{order.id}:rfy")
    assert "Refill is disabled for this service" in bot.last().plain
    assert await refill_store.refills_for_order(bot.deps.db, order.id) == []


async def test_card_cancel_asks_first_then_cancels(bot: BotHarness) -> None:
    order = await place(bot, status="In progress")
    await bot.send("/start")
    await bot.press_data(f"oc:{order.id}")
    await bot.press("Cancel order")
    assert f"Cancel order {order.panel_order_id}?" in bot.last().plain
    assert bot.panel_requests("cancel") == []
    await bot.press("No, back")
    assert "Status: In progress" in bot.last().plain and bot.panel_requests("cancel") == []

    await bot.press("Cancel order")
    await bot.press("Yes, cancel it")
    assert len(bot.panel_requests("cancel")) == 1
    assert "Status: Canceled" in bot.last().plain
    assert "✖️ Cancel order" not in bot.buttons()
    assert (await stored(bot, order)).final


async def test_card_write_with_unknown_outcome_is_not_retried(bot: BotHarness) -> None:
    order = await place(bot, status="In progress")
    bot.sandbox.fail_next("cancel", "timeout_after")
    await bot.send("/start")
    await bot.press_data(f"oc:{order.id}:cxy")
    assert "outcome is unknown" in bot.last().plain and "not retried" in bot.last().plain
    assert len(bot.panel_requests("cancel")) == 1


# --- ownership, forged and stale buttons ---------------------------------------------------------

async def test_forged_buttons_for_another_users_order_do_nothing(bot: BotHarness) -> None:
    theirs = await place(bot, user=OTHER, status="Completed")
    running = await place(bot, user=OTHER, status="In progress")
    await bot.send("/start")
    bot.sandbox.requests.clear()
    before = bot.last().copy()
    for data in (f"oc:{theirs.id}", f"oc:{theirs.id}:r", f"oc:{theirs.id}:rfy",
                 f"oc:{theirs.id}:rs", f"oc:{running.id}:cxy", f"oc:{running.id}:cx",
                 "oc:99999", "oc:abc", f"oc:{theirs.id}:cxy:1", "oc:"):
        await bot.press_data(data)
        assert last_answer(bot) == "Order not found.", data
    after = bot.last()
    assert (after.message_id, after.plain, after.edit_count) == (
        before.message_id, before.plain, before.edit_count)
    assert bot.panel_requests("cancel") == [] and bot.panel_requests("refill") == []
    assert statuses_asked(bot) == []
    assert (await stored(bot, running)).status == "In progress"


async def test_an_unknown_card_action_is_answered(bot: BotHarness) -> None:
    order = await place(bot)
    await bot.send("/start")
    await bot.press_data(f"oc:{order.id}:zz")
    assert last_answer(bot) == "This button is no longer valid."


async def test_stale_cancel_button_after_the_order_finished_sends_nothing(
        bot: BotHarness) -> None:
    order = await place(bot, status="In progress")
    await bot.send("/start")
    await bot.press_data(f"oc:{order.id}")
    await bot.press("Cancel order")  # the confirmation is on screen…
    await settle(bot, order.panel_order_id or 0, "Completed")  # …while the order completes
    await bot.press("Yes, cancel it")
    assert "already final (Completed)" in last_answer(bot)
    assert bot.panel_requests("cancel") == []
    assert "Status: Completed" in bot.last().plain


async def test_stale_refill_button_after_a_refund_sends_nothing(bot: BotHarness) -> None:
    order = await place(bot, status="Completed")
    await bot.send("/start")
    await bot.press_data(f"oc:{order.id}")
    await order_store.record_status(bot.deps.db, order.id, OrderStatus(status="Refunded"))
    await bot.press("Refill")
    assert "Completed or Partial" in last_answer(bot)
    assert bot.panel_requests("refill") == []


# --- /status -------------------------------------------------------------------------------------

async def test_status_of_250_ids_takes_3_requests_and_shows_each_id(bot: BotHarness) -> None:
    db = bot.deps.db
    real = [await place(bot, status="In progress"), await place(bot, status="Completed")]
    await upsert_user(db, telegram_id=USER, name="Ann")
    fake = list(range(1, 249))  # stored as the user's, unknown to the panel
    for panel_id in fake:
        await order_store.track_order(db, panel=PANEL, owner_id=USER, account=OPERATOR_ACCOUNT,
                                      panel_order_id=panel_id)
    ids = [o.panel_order_id or 0 for o in real] + fake
    bot.sandbox.requests.clear()

    await bot.send("/status " + ", ".join(map(str, ids)))
    assert len(bot.panel_requests("status")) == 3
    assert sorted(statuses_asked(bot)) == sorted(ids)
    messages = bot.texts()[-3:]
    replies = [m for m in messages if "Status of" in m or "Incorrect order ID" in m]
    assert len(replies) >= 2 and all(len(m) <= 4096 for m in replies)
    text = "\n".join(replies)
    assert f"{real[0].panel_order_id} · In progress" in text
    assert f"{real[1].panel_order_id} · Completed · remains 0" in text
    assert all(f"\n{i} · ❌ Incorrect order ID" in text for i in fake)
    assert (await stored(bot, real[0])).status == "In progress"


async def test_status_records_what_it_learns_and_the_owner_hears_of_it_once(
        bot: BotHarness) -> None:
    order = await place(bot, status="In progress")
    await drain(bot)
    bot.sandbox.set_status(order.panel_order_id or 0, "Completed")
    await bot.send(f"/status {order.panel_order_id}", user=ADMIN)
    assert "Completed" in bot.last(ADMIN).plain
    fresh = await stored(bot, order)
    assert fresh.status == "Completed" and fresh.final
    assert await count_pending_notifications(bot.deps.db) == 1
    await drain(bot)
    await bot.send(f"/status {order.panel_order_id}")  # seen again: no second message
    await drain(bot)
    assert len([t for t in bot.texts(USER) if "In progress → Completed" in t]) == 1


async def test_status_never_asks_the_panel_about_ids_that_are_not_yours(
        bot: BotHarness) -> None:
    mine = await place(bot, status="In progress")
    theirs = await place(bot, user=OTHER)
    bot.sandbox.requests.clear()
    await bot.send(f"/status {mine.panel_order_id} {theirs.panel_order_id} 777")
    assert statuses_asked(bot) == [mine.panel_order_id]
    text = bot.last().plain
    assert f"Not found: {theirs.panel_order_id}, 777" in text
    assert f"{mine.panel_order_id} · In progress" in text

    await bot.send(f"/status {theirs.panel_order_id}", user=ADMIN)  # admins: every order
    assert f"{theirs.panel_order_id} ·" in bot.last(ADMIN).plain


async def test_status_refuses_bad_input_in_one_line(bot: BotHarness) -> None:
    await bot.send("/status 23501, abc 12x")
    assert bot.last().plain.startswith("These are not order ids: abc, 12x.")
    await bot.send("/status")
    assert "/status 23501 23502" in bot.last().plain
    await bot.send("/status " + " ".join(str(i) for i in range(1, 1002)))
    assert "at most 1000" in bot.last().plain
    assert bot.panel_requests("status") == []


async def test_status_when_the_panel_refuses_says_so_in_one_line(bot: BotHarness) -> None:
    order = await place(bot)
    bot.sandbox.fail_next("status", "error:Incorrect request")
    await bot.send(f"/status {order.panel_order_id}")
    assert bot.last().plain == "❌ The panel says: Incorrect request"


async def test_the_rate_limit_counts_a_command_once_not_per_id(tmp_path: Path) -> None:
    bot = await start_harness(tmp_path, RATE_LIMIT_PER_MINUTE="1")
    try:
        order = await place(bot)
        await bot.send("/status " + " ".join([str(order.panel_order_id)] * 3 + ["1"]))
        assert str(order.panel_order_id) in bot.last().plain
        await bot.send(f"/status {order.panel_order_id}")
        assert "Too many requests" in bot.last().plain
    finally:
        await stop_harness(bot)


# --- /track ------------------------------------------------------------------------------------

async def test_track_an_order_placed_on_the_panels_site_then_it_changes(
        bot: BotHarness) -> None:
    panel_id = await bot.deps.panel.add(
        DEMO_KEY, 1, {"link": "https://instagram.com/elsewhere", "quantity": "500"})
    bot.sandbox.set_status(panel_id, "In progress")

    await bot.send(f"/track {panel_id} 999", user=ADMIN)
    text = bot.last(ADMIN).plain
    assert f"{panel_id} · ✅ now followed (In progress)" in text
    assert "999 · ❌ Incorrect order ID" in text
    order = await order_store.get_order_by_panel_id(
        bot.deps.db, panel=PANEL, account=OPERATOR_ACCOUNT, panel_order_id=panel_id)
    assert order is not None and order.owner_id == ADMIN and order.status == "In progress"
    assert order.id in [o.id for o in await order_store.active_orders(bot.deps.db)]

    await bot.send("/orders", user=ADMIN)
    assert str(panel_id) in bot.last(ADMIN).plain
    bot.sandbox.set_status(panel_id, "Completed")
    await bot.press(str(panel_id), user=ADMIN)
    assert "Status: In progress" in bot.last(ADMIN).plain
    await bot.press("Refresh", user=ADMIN)
    assert "Status: Completed" in bot.last(ADMIN).plain
    assert "Service: unknown" in bot.last(ADMIN).plain

    await bot.send(f"/track {panel_id}", user=ADMIN)
    assert "already followed (Completed)" in bot.last(ADMIN).plain


async def test_track_on_the_shared_account_is_for_admins_only(bot: BotHarness) -> None:
    # Hardening item 2: an allowed (here: demo) user cannot pull in an id placed elsewhere and
    # then refill or cancel it; one plain line says why, and the panel is not asked.
    theirs = await place(bot, user=OTHER)
    outside = await bot.deps.panel.add(
        DEMO_KEY, 1, {"link": "https://instagram.com/website-order", "quantity": "500"})
    bot.sandbox.requests.clear()
    for ids in (str(theirs.panel_order_id), str(outside)):
        await bot.send(f"/track {ids}")
        assert bot.last().plain == ("Only the bot's admins can follow orders by id on the "
                                    "shared panel account: the panel cannot tell whose an "
                                    "order is.")
    assert statuses_asked(bot) == []
    assert (await stored(bot, theirs)).owner_id == OTHER
    await bot.send(f"/cancelorder {outside}")
    assert f"Not found: {outside}" in bot.last().plain
    assert bot.panel_requests("cancel") == []
    await bot.send(f"/track {theirs.panel_order_id}", user=ADMIN)
    assert "already followed" in bot.last(ADMIN).plain


# --- /refill ------------------------------------------------------------------------------------

async def test_refill_one_id_uses_the_single_form_and_checks_eligibility(
        bot: BotHarness) -> None:
    done = await place(bot, status="Completed")
    running = await place(bot, status="In progress")
    no_refill = await place(bot, service=NEITHER, status="Completed")
    theirs = await place(bot, user=OTHER, status="Completed")
    await bot.send(f"/refill {done.panel_order_id} {running.panel_order_id} "
                   f"{no_refill.panel_order_id} {theirs.panel_order_id}")
    assert bot.panel_requests("refill") == [{"action": "refill",
                                             "order": str(done.panel_order_id)}]
    text = bot.last().plain
    assert f"{done.panel_order_id} · ♻️ refill 1 requested" in text
    assert f"{running.panel_order_id} · not sent: a refill is possible once" in text
    assert f"{no_refill.panel_order_id} · not sent: its service does not offer refills" in text
    assert f"Not found: {theirs.panel_order_id}" in text
    assert [r.panel_refill_id for r in
            await refill_store.refills_for_order(bot.deps.db, done.id)] == [1]


async def test_refill_many_ids_is_batched_with_per_order_results(bot: BotHarness) -> None:
    first = await place(bot, status="Completed")
    second = await place(bot, service=REFILL_ONLY, status="Partial")
    await bot.send(f"/refill {first.panel_order_id},{second.panel_order_id}")
    requests = bot.panel_requests("refill")
    assert requests == [{"action": "refill",
                         "orders": f"{first.panel_order_id},{second.panel_order_id}"}]
    text = bot.last().plain
    assert f"{first.panel_order_id} · ♻️ refill 1 requested" in text
    assert f"{second.panel_order_id} · ♻️ refill 2 requested" in text


async def test_refill_panel_errors_are_shown_per_order(bot: BotHarness) -> None:
    first = await place(bot, status="Completed")
    second = await place(bot, status="Completed")
    await bot.deps.panel.refill(DEMO_KEY, first.panel_order_id or 0)  # on the panel's site
    await bot.send(f"/refill {first.panel_order_id} {second.panel_order_id} 777")
    text = bot.last().plain
    assert f"{first.panel_order_id} · ❌ Refill is already in progress for this order" in text
    assert f"{second.panel_order_id} · ♻️ refill 2 requested" in text
    assert "Not found: 777" in text


async def test_refill_is_not_sent_while_the_last_one_still_runs(bot: BotHarness) -> None:
    order = await place(bot, status="Completed")
    await bot.send(f"/refill {order.panel_order_id}")
    await bot.send(f"/refill {order.panel_order_id}")
    assert f"{order.panel_order_id} · not sent: refill 1 is still Pending" in bot.last().plain
    assert len(bot.panel_requests("refill")) == 1


# --- /cancelorder ---------------------------------------------------------------------------------

async def test_cancelorder_batches_and_reports_each_order(bot: BotHarness) -> None:
    running = await place(bot, status="In progress")
    pending = await place(bot, service=CANCEL_ONLY, status="Pending")
    no_cancel = await place(bot, service=REFILL_ONLY, status="In progress")
    done = await place(bot, status="Completed")
    theirs = await place(bot, user=OTHER, status="In progress")
    ids = [running, pending, no_cancel, done, theirs]
    await bot.send("/cancelorder " + " ".join(str(o.panel_order_id) for o in ids))
    assert bot.panel_requests("cancel") == [
        {"action": "cancel", "orders": f"{running.panel_order_id},{pending.panel_order_id}"}]
    text = bot.last().plain
    assert f"{running.panel_order_id} · ✖️ cancel accepted" in text
    assert f"{pending.panel_order_id} · ✖️ cancel accepted" in text
    assert f"{no_cancel.panel_order_id} · not sent: its service does not allow cancelling" in text
    assert f"{done.panel_order_id} · not sent: it is already final (Completed)" in text
    assert f"Not found: {theirs.panel_order_id}" in text
    assert (await stored(bot, running)).status == "Canceled"
    assert (await stored(bot, theirs)).status == "In progress"
    assert bot.sandbox.order(theirs.panel_order_id or 0)["status"] == "In progress"


async def test_cancelorder_of_150_ids_takes_2_requests_with_per_id_errors(
        bot: BotHarness) -> None:
    db = bot.deps.db
    await upsert_user(db, telegram_id=USER, name="Ann")
    for panel_id in range(1, 151):
        await order_store.track_order(db, panel=PANEL, owner_id=USER, account=OPERATOR_ACCOUNT,
                                      panel_order_id=panel_id)
    await bot.send("/cancelorder " + " ".join(str(i) for i in range(1, 151)))
    assert len(bot.panel_requests("cancel")) == 2
    assert "\n".join(bot.texts()[-2:]).count("❌ Incorrect order ID") == 150


async def test_cancelorder_with_unknown_outcome_says_so_and_does_not_retry(
        bot: BotHarness) -> None:
    order = await place(bot, status="In progress")
    bot.sandbox.fail_next("cancel", "timeout")
    await bot.send(f"/cancelorder {order.panel_order_id}")
    assert "outcome is unknown" in bot.last().plain and "not retried" in bot.last().plain
    assert len(bot.panel_requests("cancel")) == 1


# --- /balance -----------------------------------------------------------------------------------

async def test_balance_command_and_menu_button(bot: BotHarness) -> None:
    await bot.send("/balance")
    assert "Balance: 100.00 USD" in bot.last().plain and "demo" in bot.last().plain
    await place(bot)  # 200 × 0.90 / 1000 = 0.18
    await bot.send("/start")
    await bot.press("Balance")
    assert "Balance: 99.82 USD" in bot.last().plain


async def test_balance_panel_error_in_one_line(bot: BotHarness) -> None:
    bot.sandbox.fail_next("balance", "error:Invalid API key")
    await bot.send("/balance")
    assert bot.last().plain == "❌ The panel says: Invalid API key"


# --- the user's own key and the operator's account -----------------------------------------------

async def test_with_their_own_key_a_user_may_ask_about_any_id_of_that_key(
        tmp_path: Path) -> None:
    bot = await start_harness(tmp_path, SECRET_KEY="test-secret-key-0123456789")
    try:
        bot.sandbox.add_key("own-key-123", Decimal("20"))
        await upsert_user(bot.deps.db, telegram_id=USER, name="Ann")
        assert bot.deps.keybox is not None
        await set_panel_key(bot.deps.db, USER, bot.deps.keybox.encrypt("own-key-123"))
        own_id = await bot.deps.panel.add(
            "own-key-123", 1, {"link": "https://instagram.com/own", "quantity": "100"})
        bot.sandbox.set_status(own_id, "In progress")
        demo_order = await place(bot, user=OTHER)

        await bot.send(f"/status {own_id} {demo_order.panel_order_id}")
        text = bot.last().plain
        assert f"{own_id} · In progress" in text
        assert f"{demo_order.panel_order_id} · ❌ Incorrect order ID" in text  # the panel says

        await bot.send(f"/cancelorder {own_id}")
        assert f"{own_id} · ✖️ cancel accepted" in bot.last().plain
        order = await order_store.get_order_by_panel_id(
            bot.deps.db, panel=PANEL, account=user_account(USER), panel_order_id=own_id)
        assert order is not None and order.status == "Canceled"  # followed from now on
        await bot.send("/orders")
        assert str(own_id) in bot.last().plain and "Your orders" in bot.last().plain
        assert str(demo_order.panel_order_id) not in bot.last().plain
        await bot.send("/balance")
        assert "your own key" in bot.last().plain
    finally:
        await stop_harness(bot)


async def test_operator_account_refuses_users_without_access(tmp_path: Path) -> None:
    sandbox = SandboxPanel(keys={"operator-key-123": Decimal("50")})
    bot = await start_harness(tmp_path, sandbox=sandbox, PANEL_URL="https://panel.example/api/v2",
                              PANEL_KEY="operator-key-123", ALLOWED_USER_IDS=str(USER))
    try:
        for command in ("/orders", "/status 1", "/balance", "/track 1"):
            await bot.send(command, user=OTHER)
            assert "you have no access" in bot.last(OTHER).plain
        assert sandbox.requests == []
        await bot.send("/balance")
        assert "50.00 USD" in bot.last().plain and "operator's panel account" in bot.last().plain
    finally:
        await stop_harness(bot)


# --- storage: the list's account filter ---------------------------------------------------------

async def test_list_orders_can_be_limited_to_one_panel_account(bot: BotHarness) -> None:
    db = bot.deps.db
    await upsert_user(db, telegram_id=USER, name="Ann")
    operator = await order_store.track_order(db, panel=PANEL, owner_id=USER,
                                             account=OPERATOR_ACCOUNT,
                                             panel_order_id=5)
    own = await order_store.track_order(db, panel=PANEL, owner_id=USER, account=user_account(USER),
                                        panel_order_id=5)
    listed = await order_store.list_orders(db, owner_id=USER, account=user_account(USER))
    assert [o.id for o in listed] == [own.id]
    assert await order_store.count_orders(db, account=OPERATOR_ACCOUNT) == 1
    assert {o.id for o in await order_store.list_orders(db, owner_id=USER)} == {operator.id,
                                                                                own.id}
