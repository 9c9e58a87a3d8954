"""/massorder through the real Application: mixed lines, 500 lines, a .txt file, double and stale
Confirm, a restart mid-batch, the progress edits' pace, and each line's result."""

from __future__ import annotations

import asyncio
import itertools
import time
from decimal import Decimal
from pathlib import Path

import pytest

from bot import jobs
from bot.catalog import ServiceIndex
from bot.panel.models import SANDBOX_URL as PANEL
from bot.panel.models import Service
from bot.panel.sandbox import DEMO_KEY, SandboxPanel
from bot.services import mass_order, tracking
from bot.standin.botapi import MAX_TEXT_LENGTH, FakeMessage, feed
from storage import mass_orders as batch_store
from storage import orders
from tests.conftest import OTHER, USER, BotHarness, start_harness, stop_harness

MIXED = [
    "1 | https://instagram.com/a | 100",  # 1 valid: Default
    "14 | instagram.com/pkg",  # 2 valid: a Package takes only a link
    "abc | https://x.com/a | 1",  # 3 not an id
    "999|https://x.com/a|5",  # 4 no such service
    "3 | https://x.com/c | 10",  # 5 Custom Comments needs comments
    "2\thttps://x.com/b\t  5",  # 6 below the minimum (10)
    "1 | notalink | 100",  # 7 not a link
    "14 | https://x.com/p | 1",  # 8 a package with a quantity
    "1 | https://x.com/q",  # 9 no quantity
    "",  # blank lines are skipped (and still counted)
    "2\t https://instagram.com/p/x \t 1,000 ",  # 11 valid: tabs and extra spaces
    "4 | https://x.com/s | 100",  # 12 Subscriptions need a username and more
]


def lines_for(count: int, service: int = 2, quantity: int = 100) -> list[str]:
    """`count` valid lines, each with its own link (the panel refuses a second active order
    for the same link)."""
    return [f"{service} | https://instagram.com/p/post{i} | {quantity}" for i in range(count)]


def chunks(lines: list[str], limit: int = MAX_TEXT_LENGTH) -> list[str]:
    """The lines as a Telegram client sends a long paste: several messages within the limit."""
    out: list[str] = []
    current: list[str] = []
    for line in lines:
        if current and len("\n".join([*current, line])) > limit:
            out.append("\n".join(current))
            current = []
        current.append(line)
    out.append("\n".join(current))
    return out


async def summary_of(bot: BotHarness, lines: list[str], user: int = USER) -> str:
    """/massorder, then the lines (in as many messages as needed): the summary shown."""
    await bot.send("/massorder", user=user)
    for text in chunks(lines):
        await bot.send(text, user=user)
    return bot.last(user).plain


async def confirm_and_wait(bot: BotHarness, user: int = USER) -> FakeMessage:
    """Taps Confirm and waits for the batch to finish: the progress message, now the result."""
    before = bot.last(user).message_id
    await bot.press("Confirm", user=user)
    await mass_order.join(bot.deps)
    return next(m for m in bot.world.bot_messages(user) if m.message_id > before)


def bot_file(bot: BotHarness, message: FakeMessage) -> str:
    """The text of a file the bot sent."""
    assert message.document is not None, message.plain
    return bot.world.document_content(message).decode()


def adds(bot: BotHarness) -> list[dict[str, str]]:
    """The add requests that reached the panel."""
    return bot.panel_requests("add")


# --- the summary ---------------------------------------------------------------------------


async def test_mixed_lines_get_one_summary_with_reasons_and_only_valid_lines_are_sent(
        bot: BotHarness) -> None:
    summary = await summary_of(bot, MIXED)
    assert "Mass order: 3 of 11 lines valid" in summary
    # 100 × 0.90/1000 + 4.99 + 1000 × 0.25/1000
    assert "Total: 5.33 USD · Balance: 100.00 USD" in summary
    for reason in (
        "Line 3: “abc” is not a service id",
        "Line 4: There is no service #999.",
        "Line 5: Service #3 (Custom Comments) needs more than a link and a quantity: order it "
        "with /order 3.",
        "Line 6: Quantity: It must be between 10 and 50,000.",
        "Line 7: Link: That does not look like a link.",
        "Line 8: Service #14 is a package: send only “14 | link”, without a quantity.",
        "Line 9: Service #1 needs 3 parts: service id | link | quantity.",
        "Line 12: Service #4 (Subscriptions) needs more than a link and a quantity: order it "
        "with /order 4.",
    ):
        assert reason in summary
    for shown in ("Line 1 · #1 Instagram Followers · https://instagram.com/a · 100 · 0.09 USD",
                  "Line 2 · #14 Instagram Starter Package · https://instagram.com/pkg · 4.99 USD",
                  "Line 11 · #2 Instagram Likes · https://instagram.com/p/x · 1,000 · 0.25 USD"):
        assert shown in summary
    assert bot.buttons() == ["✅ Confirm: place 3 orders", "✏️ Edit", "✖ Cancel"]
    assert adds(bot) == []  # nothing is sent before Confirm

    final = await confirm_and_wait(bot)
    assert adds(bot) == [
        {"action": "add", "service": "1", "link": "https://instagram.com/a", "quantity": "100"},
        {"action": "add", "service": "14", "link": "https://instagram.com/pkg"},
        {"action": "add", "service": "2", "link": "https://instagram.com/p/x",
         "quantity": "1000"},
    ]
    assert "Mass order #1: 3 of 3 placed" in final.plain


async def test_a_line_is_checked_exactly_like_the_wizard_checks_its_fields(
        bot: BotHarness) -> None:
    # The wizard's own reasons for the same answers (the service-type table's parsers).
    await bot.send("/order 1")
    await bot.send("notalink")
    link_reason = bot.last().plain.split("\n")[0].removeprefix("❌ ")
    await bot.send("https://x.com/a")
    await bot.send("20000")
    quantity_reason = bot.last().plain.split("\n")[0].removeprefix("❌ ")
    await bot.send("/cancel")
    summary = await summary_of(bot, ["1 | notalink | 100", "1 | https://x.com/a | 20000"])
    assert f"Line 1: Link: {link_reason}" in summary
    assert f"Line 2: Quantity: {quantity_reason}" in summary


async def test_nothing_valid_asks_again_and_edit_and_cancel_send_nothing(bot: BotHarness) -> None:
    summary = await summary_of(bot, ["999 | https://x.com/a | 100"])
    assert "0 of 1 line valid" in summary and "send the lines again" in summary
    assert bot.buttons() == []
    await bot.send("1 | https://x.com/a | 100")  # still waiting: the lines add up
    assert "1 of 2 lines valid" in bot.last().plain
    await bot.press("Edit")
    assert "This summary was dropped" in bot.texts()[-2]
    assert "Send up to 500 lines" in bot.last().plain
    await bot.send("1 | https://x.com/b | 100")
    assert "1 of 1 line valid" in bot.last().plain
    await bot.press("Cancel")
    assert bot.last().plain == "Mass order cancelled: nothing was sent."
    await bot.send("likes")  # the chat's text is a search again
    assert "🔎" in bot.last().plain
    assert adds(bot) == []
    for data in ("mo:go:1:1", "mo:go:2:1", "mo:go:2:2", "mo:go:3:1"):  # forged or stale
        await bot.press_data(data)
    assert adds(bot) == []
    drafts = await orders.list_orders(bot.deps.db, owner_id=USER, include_drafts=True)
    assert drafts == []  # dropped summaries leave no drafts behind


async def test_lines_sent_with_the_command_and_more_lines_replace_the_summary(
        bot: BotHarness) -> None:
    await bot.send("/massorder 1 | https://x.com/a | 100")
    first = bot.last()
    assert "1 of 1 line valid" in first.plain
    assert first.buttons()[0][0][1] == "mo:go:1:1"
    await bot.send("2 | https://x.com/b | 100")
    assert "2 of 2 lines valid" in bot.last().plain
    assert bot.last().buttons()[0][0][1] == "mo:go:1:2"  # the same batch, a new revision
    old = bot.world.message(USER, first.message_id)
    assert old is not None and old.buttons() == []  # the replaced summary lost its buttons
    # A forged tap on the replaced summary's Confirm sends nothing.
    await bot.press_data("mo:go:1:1", message_id=first.message_id)
    assert bot.world.calls_to("answerCallbackQuery")[-1]["text"].startswith(
        "This mass order summary is out of date")
    await bot.press_data("mo:x:1:1", message_id=first.message_id)  # nor cancels the new one
    assert adds(bot) == []
    await confirm_and_wait(bot)
    assert [a["link"] for a in adds(bot)] == ["https://x.com/a", "https://x.com/b"]


async def test_500_lines_in_several_messages_summarised_with_a_file_and_all_sent(
        bot: BotHarness) -> None:
    lines = lines_for(500, quantity=10)
    assert len(chunks(lines)) > 1
    summary = await summary_of(bot, lines)
    assert "Mass order: 500 of 500 lines valid" in summary
    assert "Total: 1.25 USD" in summary  # 500 × 10 × 0.25 / 1000
    assert "more (all of them are in the file above)" in summary
    document = bot.world.bot_messages(USER)[-2]
    assert document.document is not None
    listing = bot.world.document_content(document).decode()
    assert all(f"https://instagram.com/p/post{i} |" in listing for i in range(500))
    final = await confirm_and_wait(bot)
    sent = [a["link"] for a in adds(bot)]
    assert sorted(sent) == sorted(f"https://instagram.com/p/post{i}" for i in range(500))
    assert "500 of 500 placed" in final.plain
    results = bot.world.bot_messages(USER)[-1]
    assert results.document is not None  # every line's result, as a file
    text = bot.world.document_content(results).decode()
    assert text.count("| placed: order ") == 500
    placed = await orders.list_orders(bot.deps.db, owner_id=USER, limit=1000)
    assert len(placed) == 500 and all(o.state == "placed" for o in placed)


async def test_more_than_500_lines_are_refused_with_the_reason(bot: BotHarness) -> None:
    await summary_of(bot, lines_for(400))
    await bot.send("\n".join(lines_for(101)))
    assert ("That makes 501 lines: a mass order takes at most 500. Those lines were not added "
            "(the summary above still has 400).") in bot.last().plain
    document = bot.world.user_sends_document(USER, "many.txt",
                                             "\n".join(lines_for(501)).encode())
    await bot.send("/massorder")
    await feed(bot.app, document)
    assert "That makes 501 lines" in bot.last().plain
    assert adds(bot) == []


# --- a file ----------------------------------------------------------------------------------


async def test_a_txt_file_of_lines_is_taken_like_a_message(bot: BotHarness) -> None:
    await bot.send("/massorder")
    content = ("\ufeff" + "\r\n".join([*lines_for(3), "abc | x | 1"])).encode()
    await feed(bot.app, bot.world.user_sends_document(USER, "orders.txt", content))
    summary = bot.last().plain
    assert "3 of 4 lines valid" in summary and "Line 4: “abc” is not a service id" in summary
    await confirm_and_wait(bot)
    assert len(adds(bot)) == 3


async def test_files_that_are_not_text_get_a_reason_and_the_same_question(
        bot: BotHarness) -> None:
    await bot.send("/massorder")
    await feed(bot.app, bot.world.user_sends_document(USER, "photo.jpg", b"\xff\xd8\xff",
                                                      mime_type="image/jpeg"))
    assert bot.last().plain.startswith("Send a .txt file")
    await feed(bot.app, bot.world.user_sends_document(USER, "latin.txt", b"1 | caf\xe9 | 1"))
    assert "could not read that file as text" in bot.last().plain
    await bot.send("1 | https://x.com/a | 100")  # still waiting for the lines
    assert "1 of 1 line valid" in bot.last().plain


# --- exactly once ----------------------------------------------------------------------------


async def test_a_double_confirm_sends_each_line_once(tmp_path: Path) -> None:
    sandbox = SandboxPanel(keys={DEMO_KEY: Decimal("100")}, latency=0.02)
    bot = await start_harness(tmp_path, sandbox=sandbox)
    try:
        await summary_of(bot, lines_for(30))
        button = bot.world.find_button(USER, "Confirm")
        assert button is not None and button.data is not None
        taps = [bot.world.user_presses(USER, button.message_id, button.data, force=True)
                for _ in range(3)]
        await asyncio.gather(*(feed(bot.app, tap) for tap in taps))
        answers = [bot.world.answer_to(tap) for tap in taps]
        assert sorted(str(a and a.get("text")) for a in answers) == [
            "Sending…", "This mass order is being sent.", "This mass order is being sent."]
        await mass_order.join(bot.deps)
        links = [a["link"] for a in adds(bot)]
        assert len(links) == 30 and len(set(links)) == 30
        await bot.press_data(button.data, message_id=button.message_id)  # an old summary
        assert bot.world.calls_to("answerCallbackQuery")[-1]["text"] == (
            "This mass order was already sent.")
        assert len(adds(bot)) == 30
        # Nobody else can send (or read) this batch.
        await bot.press_data(button.data, user=OTHER, message_id=button.message_id)
        assert bot.world.calls_to("answerCallbackQuery")[-1]["text"].startswith(
            "This mass order summary is out of date")
        assert await mass_order.own_report(bot.deps, OTHER, 1) is None
    finally:
        await stop_harness(bot)


async def test_a_restart_mid_batch_reports_what_was_not_sent_and_sends_only_that(
        tmp_path: Path) -> None:
    sandbox = SandboxPanel(keys={DEMO_KEY: Decimal("100")}, latency=0.1)
    first = await start_harness(tmp_path, sandbox=sandbox)
    await summary_of(first, lines_for(60))
    await first.press("Confirm")
    await first.world.wait_for_async(lambda: len(sandbox.requests_for("add")) >= 15)
    await stop_harness(first)  # a stop mid-batch: what is in flight finishes, nothing new starts
    sent_before = [a["link"] for a in first.panel_requests("add")]
    assert 15 <= len(sent_before) < 60

    second = await start_harness(tmp_path, sandbox=sandbox, world=first.world)
    try:
        stored = await orders.list_orders(second.deps.db, owner_id=USER, limit=100,
                                          include_drafts=True)
        assert sum(o.state == "placed" for o in stored) == len(sent_before)
        assert all(o.state in ("placed", "draft") for o in stored)
        await jobs.send_pending(second.app.bot, second.deps)
        left = 60 - len(sent_before)
        notice = second.last().plain
        assert "The bot stopped while sending your mass order #1." in notice
        assert f"{len(sent_before)} of 60 lines had been sent; {left} were not sent" in notice
        assert second.buttons() == [f"▶ Send the {left} not sent", "📋 Results"]
        await second.press("Results")
        shown, file = second.world.bot_messages(USER)[-2:]
        assert f"Mass order #1: {len(sent_before)} of 60 placed" in shown.plain
        assert f"{left} not sent" in shown.plain  # long: the problems here, every line in a file
        assert bot_file(second, file).count("| not sent") == left
        await second.press(f"Send the {left} not sent")
        await mass_order.join(second.deps)
        links = [a["link"] for a in second.panel_requests("add")]
        assert len(links) == 60 and len(set(links)) == 60  # every line once, none twice
        assert "Mass order #1: 60 of 60 placed" in second.texts()[-2]
        batch = await batch_store.get_batch(second.deps.db, 1)
        assert batch is not None and batch.state == "done"
        await second.press_data(f"mo:go:1:{batch.rev}")  # the restart notice's button again
        assert len(second.panel_requests("add")) == 60
    finally:
        await stop_harness(second)


async def test_a_crash_mid_batch_never_resends_a_line_that_may_have_gone(tmp_path: Path) -> None:
    sandbox = SandboxPanel(keys={DEMO_KEY: Decimal("100")}, latency=0.05)
    first = await start_harness(tmp_path, sandbox=sandbox)
    await summary_of(first, lines_for(40))
    await first.press("Confirm")
    await first.world.wait_for_async(lambda: len(sandbox.requests_for("add")) >= 12)
    # The process dies: the sending task is torn down with requests in flight.
    for task in list(first.deps.state["mass_order"].tasks.values()):
        task.cancel()
    await stop_harness(first)
    links_before = [a["link"] for a in first.panel_requests("add")]

    second = await start_harness(tmp_path, sandbox=sandbox, world=first.world)
    try:
        stored = await orders.list_orders(second.deps.db, owner_id=USER, limit=100,
                                          include_drafts=True)
        unknown = [o for o in stored if o.state == "unknown"]
        drafts = {o.fields["link"] for o in stored if o.state == "draft"}
        assert unknown and drafts  # cut off mid-request: outcome unknown, never resent
        await jobs.send_pending(second.app.bot, second.deps)
        assert f"{len(drafts)} were not sent" in second.last().plain
        await second.press("not sent")
        await mass_order.join(second.deps)
        links = [a["link"] for a in second.panel_requests("add")]
        assert set(links[len(links_before):]) == drafts  # exactly the lines never sent
        assert len(links) == len(set(links))  # and no line twice
        final = second.last().plain
        assert f"{40 - len(unknown)} of 40 placed" in final
        assert f"{len(unknown)} outcome unknown" in final
    finally:
        await stop_harness(second)


# --- progress and results ----------------------------------------------------------------


async def test_progress_is_edited_at_most_once_a_second(tmp_path: Path) -> None:
    sandbox = SandboxPanel(keys={DEMO_KEY: Decimal("100")}, latency=0.1)
    bot = await start_harness(tmp_path, sandbox=sandbox)
    try:
        await summary_of(bot, lines_for(250))
        await bot.press("Confirm")
        progress = bot.last()
        assert progress.plain == "⏳ Mass order #1: sending 0/250…"  # one batch, however many
    # messages brought its lines
        await mass_order.join(bot.deps)
        message = bot.world.message(USER, progress.message_id)
        assert message is not None and "Mass order #1: 250 of 250 placed" in message.plain
        times = message.edit_times
        assert len(times) >= 3  # sending k/250 at least twice, then the result
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert min(gaps) >= 1.0, gaps
        shown = [c["text"] for c in bot.world.calls_to("editMessageText")
                 if c.get("message_id") == progress.message_id and "sending" in c["text"]]
        counts = [int(text.split("sending ")[1].split("/")[0]) for text in shown]
        assert counts == sorted(counts) and 0 < counts[0] and counts[-1] <= 250
    finally:
        await stop_harness(bot)


async def test_each_lines_result_is_its_panel_id_or_its_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mass_order, "CONCURRENCY", 1)  # one at a time: a known order of events
    sandbox = SandboxPanel(keys={DEMO_KEY: Decimal("1.00")})
    bot = await start_harness(tmp_path, sandbox=sandbox)
    try:
        await summary_of(bot, [
            "2 | https://x.com/zero | 100",  # the panel's answer never comes
            "2 | https://x.com/one | 100",  # 0.025: placed
            "2 | https://x.com/one | 200",  # the same link: the panel refuses a duplicate
            "1 | https://x.com/two | 2000",  # 1.80: more than the balance
            "14 | https://x.com/four",  # 4.99: more than the balance too
        ])
        assert "The balance is not enough for all of them" in bot.last().plain
        sandbox.fail_next("add", "timeout")
        final = (await confirm_and_wait(bot)).plain
        assert "Mass order #1: 1 of 5 placed" in final
        assert "3 refused, 1 outcome unknown." in final
        assert ("Line 1 · #2 · https://x.com/zero · ⚠️ outcome unknown, not retried: see "
                "/orders") in final
        assert "Line 2 · #2 · https://x.com/one · ✅ order 23501" in final
        assert ("Line 3 · #2 · https://x.com/one · ❌ The panel says: You have active order "
                "with this link.") in final
        assert "Line 4 · #1 · https://x.com/two · ❌ The panel says: Not enough funds" in final
        assert "Line 5 · #14 · https://x.com/four · ❌ The panel says: Not enough funds" in final
        assert bot.buttons() == ["📦 My orders"]
        assert len(adds(bot)) == 5  # each line once: nothing retried
    finally:
        await stop_harness(bot)


async def test_placed_lines_join_orders_and_tracking(bot: BotHarness) -> None:
    await summary_of(bot, lines_for(3))
    await confirm_and_wait(bot)
    await bot.send("/orders")
    listing = bot.last().plain
    assert all(str(panel_id) in listing for panel_id in (23501, 23502, 23503))
    report = await tracking.poll_orders(bot.deps)
    assert report.checked == 3
    await bot.press("23502")
    assert "Order 23502" in bot.last().plain and "Refresh" in " ".join(bot.buttons())
    batch = await batch_store.get_batch(bot.deps.db, 1)
    assert batch is not None and batch.state == "done"
    placed = await orders.get_order_by_panel_id(bot.deps.db, account="operator", panel=PANEL,
                                                panel_order_id=23501)
    assert placed is not None and placed.owner_id == USER


@pytest.fixture
def sandbox_index() -> ServiceIndex:
    """The sandbox's catalogue as the bot indexes it."""
    services = [Service.from_api(row) for row in SandboxPanel().services()]
    return ServiceIndex(tuple(s for s in services if s is not None), "USD", 0.0)


@pytest.mark.parametrize("line", ["1 | https://x.com/a | 100", "1|https://x.com/a|100",
                                  "1\thttps://x.com/a\t100", "  1  |  https://x.com/a  |  100  ",
                                  "#1 | x.com/a | 100 |", "1 https://x.com/a 100",
                                  "1 | https://x.com/a | 1,00"])
def test_the_separators_a_line_may_use(sandbox_index: ServiceIndex, line: str) -> None:
    parsed = mass_order.parse_lines(line, sandbox_index)
    assert parsed.bad == ()
    assert [x.values for x in parsed.lines] == [{"link": "https://x.com/a", "quantity": "100"}]


async def test_lines_left_unsent_for_over_a_day_expire_with_a_reason(tmp_path: Path) -> None:
    first = await start_harness(tmp_path)
    await summary_of(first, lines_for(3))
    # The bot dies right after claiming the batch, before any line goes out.
    assert await batch_store.move_batch(first.deps.db, 1, owner_id=USER, to="sending",
                                        allowed_from=("ready",))
    await stop_harness(first)
    second = await start_harness(tmp_path, sandbox=first.sandbox, world=first.world)
    try:
        await jobs.send_pending(second.app.bot, second.deps)
        assert "0 of 3 lines had been sent; 3 were not sent" in second.last().plain
        # A day later the unsent drafts are purged (the tracker's hourly purge).
        assert await orders.purge_drafts(second.deps.db, older_than=time.time() + 1) == 3
        await second.press("Send the 3 not sent")
        answer = second.world.calls_to("answerCallbackQuery")[-1]["text"]
        assert answer.startswith("The lines of this mass order that were not sent have expired")
        assert second.panel_requests("add") == []
    finally:
        await stop_harness(second)
