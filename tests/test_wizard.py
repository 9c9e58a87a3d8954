"""The order wizard, driven through the real Application: every type, wrong answers, Back, Edit,
/cancel, the timeout, Confirm exactly once (double, concurrent, stale taps), panel errors, an
`add` that timed out, and a restart mid-wizard."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.panel.models import SANDBOX_URL as PANEL
from bot.panel.sandbox import DEMO_KEY, ERR_DUPLICATE, SandboxPanel
from bot.standin.botapi import feed
from storage import orders, users
from tests.conftest import OTHER, USER, BotHarness, start_harness, stop_harness

EXPIRY = (date.today() + timedelta(days=400)).strftime("%d/%m/%Y")
LINK = "https://instagram.com/p/abc"


async def run(bot: BotHarness, steps: list[str], user: int = USER) -> None:
    """Answers questions: text is sent, "tap:<label>" taps the newest button with that label."""
    for step in steps:
        if step.startswith("tap:"):
            await bot.press(step.removeprefix("tap:"), user=user)
        else:
            assert "Example:" in bot.last(user).plain, bot.last(user).plain
            await bot.send(step, user=user)


def answers_of(bot: BotHarness) -> list[str | None]:
    """The texts of every callback-query answer so far."""
    return [call.get("text") for call in bot.world.calls_to("answerCallbackQuery")]


async def to_summary(bot: BotHarness, link: str = LINK, quantity: str = "100") -> None:
    """Service 1 (Default, drip-feed offered) up to its summary, drip-feed skipped."""
    await bot.send("/order 1")
    await run(bot, [link, quantity, "tap:Skip"])
    assert "Check the order" in bot.last().plain


# --- a full order of every service type in the sandbox ---------------------------------------

FULL_ORDERS = [
    pytest.param(1, ["instagram.com/me", "1,000", "5", "30"],
                 {"link": "https://instagram.com/me", "quantity": "1000", "runs": "5",
                  "interval": "30"}, "Estimated cost: 4.50 USD (0.90 USD per 1000 × 5,000)",
                 id="Default with drip-feed"),
    pytest.param(13, ["https://instagram.com/stories/me", "500"],
                 {"link": "https://instagram.com/stories/me", "quantity": "500"},
                 "Estimated cost: 0.025 USD", id="Default, no drip-feed offered"),
    pytest.param(30, ["https://example.com", "500", "buy shoes\n\n best shoes "],
                 {"link": "https://example.com", "quantity": "500",
                  "keywords": "buy shoes\nbest shoes"}, "Estimated cost: 0.35 USD", id="SEO"),
    pytest.param(3, [LINK, "\n".join(f"Comment <{i}> & more" for i in range(12))],
                 {"link": LINK, "comments": "\n".join(f"Comment <{i}> & more" for i in range(12))},
                 "Estimated cost: 0.096 USD (8.00 USD per 1000 × 12)", id="Custom Comments"),
    pytest.param(4, ["@someone", "100", "200", "tap:Skip", "5", "tap:30", EXPIRY],
                 {"username": "someone", "min": "100", "max": "200", "old_posts": "5",
                  "delay": "30", "expiry": EXPIRY},
                 "Cost per new post: up to 0.06 USD", id="Subscriptions"),
    pytest.param(24, ["https://t.me/channel/5", "50", "2"],
                 {"link": "https://t.me/channel/5", "quantity": "50", "answer_number": "2"},
                 "Estimated cost: 0.03 USD", id="Poll"),
    pytest.param(14, ["instagram.com/me"], {"link": "https://instagram.com/me"},
                 "Price: 4.99 USD (one package)", id="Package"),
    pytest.param(5, [LINK, "100", "alice\nbob"],
                 {"link": LINK, "quantity": "100", "usernames": "alice\nbob"},
                 "Estimated cost: 0.25 USD", id="Mentions"),
    pytest.param(6, [LINK, "100", "alice", "#travel\n#food"],
                 {"link": LINK, "quantity": "100", "usernames": "alice",
                  "hashtags": "#travel\n#food"}, "Estimated cost: 0.30 USD",
                 id="Mentions with Hashtags"),
    pytest.param(7, [LINK, "\n".join(f"user{i}" for i in range(10))],
                 {"link": LINK, "usernames": "\n".join(f"user{i}" for i in range(10))},
                 "Estimated cost: 0.04 USD (4.00 USD per 1000 × 10)", id="Mentions Custom List"),
    pytest.param(8, [LINK, "100", "#travel"],
                 {"link": LINK, "quantity": "100", "hashtag": "#travel"},
                 "Estimated cost: 0.20 USD", id="Mentions Hashtag"),
    pytest.param(9, [LINK, "100", "@celebrity"],
                 {"link": LINK, "quantity": "100", "username": "celebrity"},
                 "Estimated cost: 0.22 USD", id="Mentions User Followers"),
    pytest.param(10, [LINK, "100", "instagram.com/p/xyz"],
                 {"link": LINK, "quantity": "100", "media": "https://instagram.com/p/xyz"},
                 "Estimated cost: 0.22 USD", id="Mentions Media Likers"),
    pytest.param(11, [LINK, "20", "commenter"],
                 {"link": LINK, "quantity": "20", "username": "commenter"},
                 "Estimated cost: 0.03 USD", id="Comment Likes"),
    pytest.param(12, [LINK, "@commenter", "One\nTwo\nThree\nFour\nFive"],
                 {"link": LINK, "username": "commenter", "comments": "One\nTwo\nThree\nFour\nFive"},
                 "Estimated cost: 0.045 USD", id="Comment Replies"),
    pytest.param(26, ["https://t.me/mygroup", "100", "group_one\ngroup_two"],
                 {"link": "https://t.me/mygroup", "quantity": "100",
                  "groups": "group_one\ngroup_two"}, "Estimated cost: 0.50 USD",
                 id="Invites from Groups"),
]


@pytest.mark.parametrize(("service_id", "steps", "sent", "cost"), FULL_ORDERS)
async def test_a_full_order_of_every_type_sends_exactly_the_fields_asked(
        bot: BotHarness, service_id: int, steps: list[str], sent: dict[str, str],
        cost: str) -> None:
    await bot.send(f"/order {service_id}")
    await run(bot, steps)
    summary = bot.last().plain
    assert "Check the order" in summary and cost in summary
    assert "Balance: " in summary
    for value in sent.values():
        assert value.split("\n")[0] in summary  # every field shown as it will be sent
    await bot.press("Confirm")
    assert bot.panel_requests("add") == [{"action": "add", "service": str(service_id), **sent}]
    done = bot.last().plain
    assert done.startswith("✅ Order 23501 placed.") and "tracking is on" in done
    order = await orders.get_order_by_panel_id(bot.deps.db, panel=PANEL, account="operator",
                                               panel_order_id=23501)
    assert order is not None and order.state == "placed" and order.owner_id == USER
    assert order.fields == sent and order.service_id == service_id
    await bot.send("likes")  # the form is closed: text is a search again
    assert "🔎" in bot.last().plain


async def test_the_service_card_button_starts_the_form(bot: BotHarness) -> None:
    await bot.send("/services 24")
    await bot.press("#24")
    await bot.press("Order this")
    assert "New order: #24 Telegram Poll Votes" in bot.last().plain
    assert "Step 1: Link" in bot.last().plain


# --- wrong answers ---------------------------------------------------------------------------

WRONG = [
    (1, [], "not a link", "does not look like a link", "Link"),
    (1, ["x.com/a"], "ten", "Please send a whole number", "Quantity"),
    (1, ["x.com/a"], "49", "between 50 and 10,000", "Quantity"),
    (1, ["x.com/a"], "10001", "between 50 and 10,000", "Quantity"),
    (1, ["x.com/a", "100"], "1", "at least 2", "Drip-feed runs"),
    (1, ["x.com/a", "5000"], "3", "over the service's maximum of 10,000", "Drip-feed runs"),
    (1, ["x.com/a", "100", "5"], "0", "at least 1", "Drip-feed interval"),
    (3, ["x.com/a"], "one\ntwo", "That is 2 lines; this service takes 10–1,500", "Comments"),
    (7, ["x.com/a"], "a\n\nb", "That is 2 lines; this service takes 10–1,000", "Usernames"),
    (24, ["x.com/a", "50"], "0", "at least 1", "Answer number"),
    (8, ["x.com/a", "100"], "#a\n#b", "single line", "Hashtag"),
    (12, ["x.com/a"], "two words", "Send a username", "Username"),
    (4, [], "bad name!", "Send a username", "Username"),
    (4, ["@a"], "99", "between 100 and 5,000", "Quantity min"),
    (4, ["@a", "300"], "200", "cannot be below min", "Quantity max"),
    (4, ["@a", "100", "200"], "0", "at least 1", "New posts"),
    (4, ["@a", "100", "200", "tap:Skip", "tap:Skip"], "7", "Choose one of", "Delay"),
    (4, ["@a", "100", "200", "tap:Skip", "tap:Skip", "tap:0"], "01/01/2000", "in the future",
     "Expiry"),
    (4, ["@a", "100", "200", "tap:Skip", "tap:Skip", "tap:0"], "someday", "day/month/year",
     "Expiry"),
    (1, [], "   ", "Please send a value", "Link"),
    (1, ["x.com/a"], "/balance", "You are filling in an order", "Quantity"),
]


@pytest.mark.parametrize(("service_id", "before", "wrong", "reason", "label"), WRONG)
async def test_a_wrong_answer_gets_one_line_why_and_the_same_question(
        bot: BotHarness, service_id: int, before: list[str], wrong: str, reason: str,
        label: str) -> None:
    await bot.send(f"/order {service_id}")
    await run(bot, before)
    asked = bot.last().plain
    await bot.send(wrong)
    first, rest = bot.last().plain.split("\n", 1)
    assert first.startswith("❌ ") and reason in first
    assert f": {label}" in rest
    assert rest.strip() == asked.strip()  # the very same question again
    assert bot.panel_requests("add") == []


async def test_wrong_answers_at_every_step_lose_nothing(bot: BotHarness) -> None:
    await bot.send("/order 4")
    await run(bot, ["no spaces allowed", "@someone", "1", "100", "50", "200", "0", "tap:Skip",
                    "-3", "3", "7", "tap:5", "1/1/1999", EXPIRY])
    await bot.press("Confirm")
    assert bot.panel_requests("add") == [{
        "action": "add", "service": "4", "username": "someone", "min": "100", "max": "200",
        "old_posts": "3", "delay": "5", "expiry": EXPIRY}]


async def test_photos_and_other_messages_get_asked_again(bot: BotHarness) -> None:
    await bot.send("/order 1")
    await bot.send("")  # a message without text (as a sticker or photo would be)
    assert bot.last().plain.startswith("❌ Please send the answer as a text message.")
    assert "Step 1: Link" in bot.last().plain


NASTY = ["", " ", "\n\n", "<b>", "</i>&amp;", "0", "-1", "1e9", "٣", "https://", "x.com",
         "a" * 5000, "\x00", "🙂" * 300, "50", "10000", "10001", "1,000", "1 000", "/start",
         "/0", "https://a.b/<script>", "x.com/a b", "9" * 30]


def _no_command_that_leaves(text: str) -> bool:
    """/cancel and /order legitimately end or restart the form."""
    return not text.startswith(("/cancel", "/order"))


async def _answer_anything(answers: list[str]) -> None:
    """Every answer gets one reply: the next question, or a one-line reason + the same one."""
    with tempfile.TemporaryDirectory() as tmp:
        bot = await start_harness(Path(tmp))
        try:
            await bot.send("/order 1")
            step = 1
            for text in answers:
                before = len(bot.world.bot_messages(USER))
                await bot.send(text)
                messages = bot.world.bot_messages(USER)
                assert len(messages) == before + 1, text
                shown = messages[-1].plain
                if shown.startswith("❌ "):
                    reason, question = shown.split("\n", 1)
                    assert reason and f"Step {step}: " in question, (text, shown)
                elif "Check the order" in shown:
                    return
                else:
                    step += 1
                    assert f"Step {step}: " in shown, (text, shown)
        finally:
            await stop_harness(bot)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.text(), st.sampled_from(NASTY)).filter(_no_command_that_leaves),
                min_size=1, max_size=6))
def test_any_text_gets_the_next_question_or_a_reason_and_the_same_one(answers: list[str]) -> None:
    asyncio.run(_answer_anything(answers))


def test_nasty_answers_at_the_link_and_quantity_steps() -> None:
    asyncio.run(_answer_anything([*NASTY[:12], "x.com/a", *NASTY]))


# --- Back, Edit, /cancel, /order again --------------------------------------------------------


async def test_back_goes_one_step_and_keeps_the_answers(bot: BotHarness) -> None:
    await bot.send("/order 1")
    await run(bot, ["x.com/a", "300"])
    assert "Step 3: Drip-feed runs" in bot.last().plain
    await bot.press("Back")
    assert "Step 2: Quantity" in bot.last().plain and "Now: 300" in bot.last().plain
    await bot.press("Back")
    assert "Step 1: Link" in bot.last().plain and "Now: https://x.com/a" in bot.last().plain
    assert "◀ Back" not in bot.buttons()
    await bot.press_data("wz:back")
    assert answers_of(bot)[-1] == "This is the first question."
    await bot.press("Keep")
    await bot.send("400")
    await bot.press("Skip")
    await bot.press("◀ Back")  # from the summary: the last question
    assert "Step 3: Drip-feed runs" in bot.last().plain
    await bot.send("2")
    await bot.send("10")
    await bot.press("Confirm")
    assert bot.panel_requests("add") == [{"action": "add", "service": "1",
                                          "link": "https://x.com/a", "quantity": "400",
                                          "runs": "2", "interval": "10"}]


async def test_skipping_drip_feed_after_answering_it_drops_it(bot: BotHarness) -> None:
    await bot.send("/order 1")
    await run(bot, ["x.com/a", "100", "3", "15"])
    await bot.press("◀ Back")
    await bot.press("◀ Back")
    assert "Now: 3" in bot.last().plain
    await bot.press("Skip")
    assert "Interval" not in bot.last().plain and "Check the order" in bot.last().plain
    await bot.press("Confirm")
    assert bot.panel_requests("add")[0] == {"action": "add", "service": "1",
                                            "link": "https://x.com/a", "quantity": "100"}


async def test_edit_asks_again_with_keep_and_only_the_newest_summary_confirms(
        bot: BotHarness) -> None:
    await to_summary(bot)
    old = bot.world.find_button(USER, "Confirm")
    assert old is not None and old.data is not None
    await bot.press("Edit")
    assert "Step 1: Link" in bot.last().plain and "✔ Keep" in bot.buttons()
    await bot.press("Keep")
    await bot.send("250")
    await bot.press("Skip")
    new = bot.world.find_button(USER, "Confirm")
    assert new is not None and new.data != old.data
    await bot.press_data(old.data, message_id=old.message_id)
    assert answers_of(bot)[-1] == "This summary is out of date."
    assert bot.panel_requests("add") == []
    await bot.press("Confirm")
    assert [r["quantity"] for r in bot.panel_requests("add")] == ["250"]


async def test_keep_checks_the_kept_answer_again(bot: BotHarness) -> None:
    await bot.send("/order 1")
    await run(bot, ["x.com/a", "5000", "2", "10"])
    for _ in range(3):
        await bot.press("◀ Back")
    assert "Step 2: Quantity" in bot.last().plain
    await bot.send("6000")  # now 2 runs × 6,000 is over the maximum
    await bot.press("Keep")
    assert "over the service's maximum" in bot.last().plain.split("\n")[0]
    assert "Step 3: Drip-feed runs" in bot.last().plain


async def test_cancel_leaves_at_any_step_and_nothing_is_sent(bot: BotHarness) -> None:
    await bot.send("/order 1")
    await run(bot, ["x.com/a"])
    await bot.send("/cancel")
    assert bot.last().plain.startswith("Order cancelled: nothing was sent.")
    await bot.send("250")  # no longer an answer: a search
    assert "Step" not in bot.last().plain
    await bot.send("/cancel")
    assert "You are not filling in an order" in bot.last().plain
    await to_summary(bot)
    confirm = bot.world.find_button(USER, "Confirm")
    assert confirm is not None and confirm.data is not None
    await bot.press("Cancel")
    assert bot.last().plain.startswith("Order cancelled")
    await bot.press_data(confirm.data, message_id=confirm.message_id)
    assert answers_of(bot)[-1] == "This summary is out of date."
    await bot.press_data("wz:skip")
    assert answers_of(bot)[-1] == "This order form is closed."
    assert bot.panel_requests("add") == []


async def test_order_again_mid_wizard_starts_over_cleanly(bot: BotHarness) -> None:
    await bot.send("/order 1")
    await run(bot, ["x.com/a", "300"])
    stale_back = bot.world.find_button(USER, "Back")
    await bot.send("/order 2")
    assert "New order: #2 Instagram Likes" in bot.last().plain
    assert "Step 1: Link" in bot.last().plain and "Now:" not in bot.last().plain
    assert stale_back is not None and stale_back.data is not None
    await bot.press_data(stale_back.data, message_id=stale_back.message_id)
    assert answers_of(bot)[-1] == "This button is out of date."
    await run(bot, ["x.com/b", "20", "tap:Skip"])
    await bot.press("Confirm")
    assert bot.panel_requests("add") == [{"action": "add", "service": "2",
                                          "link": "https://x.com/b", "quantity": "20"}]


async def test_order_alone_mid_wizard_drops_it_and_opens_the_catalogue(bot: BotHarness) -> None:
    await bot.send("/order 1")
    await bot.send("/order")
    assert "The order you were filling in was dropped." in bot.last().plain
    assert "Services: 32" in bot.last().plain
    await bot.send("/order 999")
    assert "There is no service #999" in bot.last().plain
    await bot.send("/order one")
    assert "/order followed by a service id" in bot.last().plain


# --- Confirm: exactly once ------------------------------------------------------------------


async def test_a_second_tap_on_confirm_sends_nothing(bot: BotHarness) -> None:
    await to_summary(bot)
    button = bot.world.find_button(USER, "Confirm")
    assert button is not None and button.data is not None
    await bot.press("Confirm")
    await bot.press_data(button.data, message_id=button.message_id)
    assert len(bot.panel_requests("add")) == 1
    assert answers_of(bot)[-1] == "This order was already sent."


async def test_two_racing_confirms_send_one_order(bot: BotHarness) -> None:
    await to_summary(bot)
    button = bot.world.find_button(USER, "Confirm")
    assert button is not None and button.data is not None
    bot.sandbox.latency = 0.05  # the first tap is still waiting for the panel
    taps = [bot.world.user_presses(USER, button.message_id, button.data) for _ in range(3)]
    # process_update directly, in parallel: not even the per-chat ordering holds them apart.
    await asyncio.gather(*(feed(bot.app, tap) for tap in taps))
    assert len(bot.panel_requests("add")) == 1
    assert len(bot.sandbox.orders_of(DEMO_KEY)) == 1
    [placed] = await orders.list_orders(bot.deps.db, owner_id=USER)
    assert placed.state == "placed"
    assert f"Order {placed.panel_order_id} placed." in bot.last().plain


async def test_someone_else_cannot_confirm_my_draft(bot: BotHarness) -> None:
    await to_summary(bot)
    button = bot.world.find_button(USER, "Confirm")
    assert button is not None and button.data is not None
    await bot.send("/order 2", user=OTHER)
    await bot.send("/cancel", user=OTHER)
    await bot.press_data(button.data, user=OTHER)  # no form of their own
    assert answers_of(bot)[-1] == "This summary is out of date."
    await bot.send("/order 2", user=OTHER)
    await run(bot, ["x.com/o", "20", "tap:Skip"], user=OTHER)
    await bot.press_data(button.data, user=OTHER)
    assert answers_of(bot)[-1] == "This summary is out of date."
    assert bot.panel_requests("add") == []


async def test_an_add_that_timed_out_is_not_retried_and_says_so(bot: BotHarness) -> None:
    await to_summary(bot)
    button = bot.world.find_button(USER, "Confirm")
    assert button is not None and button.data is not None
    bot.sandbox.fail_next("add", "timeout_after")  # the panel placed it, the answer was lost
    await bot.press("Confirm")
    assert len(bot.panel_requests("add")) == 1
    text = bot.last().plain
    assert "I do not know whether the order was placed" in text
    assert "not retried" in text and "It was placed" in text
    [order] = await orders.list_orders(bot.deps.db, owner_id=USER)
    assert order.state == "unknown"
    await bot.press_data(button.data, message_id=button.message_id)
    assert answers_of(bot)[-1] == "This order was already sent."
    assert len(bot.panel_requests("add")) == 1


# --- the panel says no ------------------------------------------------------------------------

REFUSED = [
    ("Not enough funds on balance", "does not have enough funds"),
    (ERR_DUPLICATE, "your balance was not charged; try again when the active order for this "
                    "link finishes"),
    ("Quantity less than minimal 50", "below this service's minimum"),
    ("Quantity more than maximum 10000", "above this service's maximum"),
    ("Bad link", "did not accept the link"),
    ("Invalid API key", "rejected the API key"),
    ("neworder.error.not_enough_funds", "does not have enough funds"),
    ("Something <odd> & new", "The panel refused the order: Something <odd> & new"),
]


@pytest.mark.parametrize(("error", "told"), REFUSED)
async def test_each_panel_refusal_is_told_plainly_and_confirm_can_be_retried(
        bot: BotHarness, error: str, told: str) -> None:
    await to_summary(bot)
    bot.sandbox.fail_next("add", f"error:{error}")
    await bot.press("Confirm")
    assert told in bot.last().plain.split("\n\n")[0]
    assert bot.buttons() == ["✅ Confirm (retry)", "✏️ Edit", "✖ Cancel", "◀ Back"]
    [order] = await orders.list_orders(bot.deps.db, owner_id=USER)
    assert order.state == "failed"
    await bot.press("Confirm (retry)")
    assert bot.last().plain.startswith("✅ Order 23501 placed.")
    assert len(bot.panel_requests("add")) == 2


async def test_a_duplicate_link_can_be_edited_and_confirmed(bot: BotHarness) -> None:
    await to_summary(bot, link="https://x.com/same")
    await bot.press("Confirm")
    await to_summary(bot, link="https://x.com/same")
    await bot.press("Confirm")
    assert "your balance was not charged" in bot.last().plain
    await bot.press("Edit")
    await run(bot, ["https://x.com/other", "tap:Keep", "tap:Skip"])
    await bot.press("Confirm")
    assert bot.last().plain.startswith("✅ Order 23502 placed.")
    assert [r["link"] for r in bot.panel_requests("add")] == [
        "https://x.com/same", "https://x.com/same", "https://x.com/other"]


async def test_a_short_balance_is_warned_about_on_the_summary(bot: BotHarness) -> None:
    await bot.send("/order 1")
    bot.sandbox.add_key(DEMO_KEY, Decimal("0.05"))
    await run(bot, ["x.com/a", "100", "tap:Skip"])
    assert "Balance: 0.05 USD" in bot.last().plain
    assert "⚠️ The balance is not enough for this order" in bot.last().plain
    await bot.press("Confirm")
    assert "does not have enough funds" in bot.last().plain


async def test_the_summary_shows_even_when_the_balance_is_unavailable(bot: BotHarness) -> None:
    await bot.send("/order 1")
    bot.sandbox.fail_next("balance", "error:Incorrect request")
    await run(bot, ["x.com/a", "100", "tap:Skip"])
    assert "Balance: unavailable right now" in bot.last().plain
    await bot.press("Confirm")
    assert bot.last().plain.startswith("✅ Order")


async def test_confirm_refuses_when_the_panel_account_changed(tmp_path: Path) -> None:
    harness = await start_harness(tmp_path, SECRET_KEY="a-long-random-secret-for-tests-only")
    try:
        await to_summary(harness)
        keybox = harness.deps.keybox
        assert keybox is not None
        await users.set_panel_key(harness.deps.db, USER, keybox.encrypt(DEMO_KEY))
        await harness.press("Confirm")
        assert "Your panel account changed; start again with /order." in harness.texts()
        assert harness.panel_requests("add") == []
    finally:
        await stop_harness(harness)


# --- time and restarts ------------------------------------------------------------------------


async def test_an_abandoned_order_times_out_with_a_message(tmp_path: Path) -> None:
    harness = await start_harness(tmp_path, ORDER_TIMEOUT=0.005)  # 0.3 s
    await harness.app.start()  # the JobQueue runs the conversation's timeout
    try:
        await harness.send("/order 1")
        await harness.send("x.com/a")
        await harness.world.wait_for_text_async(USER, "timed out", timeout=5)
        assert ("Your order was not placed (it timed out after 0.005 minutes). Start again "
                "with /order.") in harness.texts()
        await harness.send("100")  # no longer an answer
        assert "Step" not in harness.last().plain
        assert harness.panel_requests("add") == []
    finally:
        await stop_harness(harness)


async def test_a_restart_mid_wizard_resumes_at_the_same_step(tmp_path: Path) -> None:
    first = await start_harness(tmp_path)
    await first.send("/order 1")
    await first.send("x.com/a")
    assert "Step 2: Quantity" in first.last().plain
    await stop_harness(first)
    second = await start_harness(tmp_path, world=first.world)
    try:
        await second.send("1000")
        assert "Step 3: Drip-feed runs" in second.last().plain
        await second.press("Skip")
        await second.press("Confirm")
        assert second.panel_requests("add") == [{"action": "add", "service": "1",
                                                 "link": "https://x.com/a", "quantity": "1000"}]
    finally:
        await stop_harness(second)


async def test_panel_text_is_escaped_everywhere(tmp_path: Path) -> None:
    row = {"service": 5, "name": "Likes <fast> & cheap", "type": "Default",
           "category": "A&B <x>", "rate": "1", "min": "10", "max": "100",
           "desc": "<b>unclosed & raw"}
    sandbox = SandboxPanel(services=[row], currency="<USD>")
    harness = await start_harness(tmp_path, sandbox=sandbox)
    try:
        await harness.send("/services")
        await harness.press("A&B <x>")
        await harness.press("Likes <fast>")
        assert "<b>unclosed & raw" in harness.last().plain
        assert "1.00 <USD> per 1000" in harness.last().plain
        await harness.press("Order this")
        await run(harness, ["x.com/a", "50", "tap:Skip"])
        assert "Estimated cost: 0.05 <USD>" in harness.last().plain
        assert "New order: #5 Likes <fast> & cheap" in harness.last().plain
    finally:
        await stop_harness(harness)
