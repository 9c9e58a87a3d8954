"""Tests for the sandbox's state file: a demo panel that survives a restart like a real one."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.panel.models import SANDBOX_URL as PANEL
from bot.panel.sandbox import DEMO_KEY, ERR_DUPLICATE, FIRST_ORDER_ID, SANDBOX_URL, SandboxPanel
from storage import orders, users
from tests.conftest import USER, start_harness, stop_harness

USER_KEY = "user-own-sandbox-key-3f9c2a"
LINK = "https://instagram.com/somebody"


class FakeClock:
    """A clock the test moves by hand (each 'process' gets its own, starting anywhere)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        """The current fake time."""
        return self.t


def sandbox(path: Path, clock: FakeClock, **kwargs: Any) -> SandboxPanel:
    """A sandbox on the state file `path` (a new one plays a restarted process)."""
    return SandboxPanel(keys={DEMO_KEY: Decimal("100")}, clock=clock, state_path=path, **kwargs)


async def call(panel: SandboxPanel, key: str = DEMO_KEY, **fields: Any) -> Any:
    """Posts a form to the sandbox over its transport and returns the decoded JSON."""
    async with panel.client() as http:
        response = await http.post("https://sandbox.invalid/api/v2",
                                   data={"key": key, **{k: str(v) for k, v in fields.items()}})
    return response.json()


async def place(panel: SandboxPanel, key: str = DEMO_KEY, *, service: int = 1,
                quantity: int = 100, link: str = LINK) -> int:
    """Places an order and returns its id."""
    answer = await call(panel, key, action="add", service=service, link=link, quantity=quantity)
    assert "order" in answer, answer
    return int(answer["order"])


def files(folder: Path) -> list[str]:
    """The names in a folder (a plain function: tests are async, file checks are quick)."""
    return sorted(path.name for path in folder.iterdir())


def read(path: Path) -> str:
    """A file's text."""
    return path.read_text(encoding="utf-8")


def damage(path: Path, content: bytes) -> None:
    """Overwrites a file with `content`, or puts a directory in its place when empty."""
    if content:
        path.write_bytes(content)
    else:
        path.mkdir()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """Where the sandbox keeps its state."""
    return tmp_path / "bot.sqlite3.sandbox.json"


async def test_a_restarted_sandbox_knows_its_orders_and_balances(state: Path) -> None:
    first = sandbox(state, FakeClock(1000.0))
    a = await place(first, quantity=100, link="https://instagram.com/a")  # 0.09
    b = await place(first, quantity=333, link="https://instagram.com/b")  # 0.2997
    assert state.name in files(state.parent)

    second = sandbox(state, FakeClock(3.0))
    assert (await call(second, action="status", order=a))["status"] == "Pending"
    assert (await call(second, action="status", order=b))["charge"] == "0.2997"
    assert await call(second, action="balance") == {"balance": "99.6103", "currency": "USD"}
    assert second.balance_of(DEMO_KEY) == Decimal("99.6103")

    c = await place(second, link="https://instagram.com/c")
    assert c == b + 1 and c not in (a, b)
    # ...and the duplicate-link rule still sees the orders placed before the restart.
    duplicate = await call(second, action="add", service=1, link="https://instagram.com/a",
                           quantity=100)
    assert duplicate == {"error": ERR_DUPLICATE}


async def test_time_goes_on_from_where_it_stopped(state: Path) -> None:
    clock = FakeClock(1000.0)
    first = sandbox(state, clock)
    order = await place(first)
    clock.t += 30  # order 1: pending 10 s, in progress until 70 s
    status = await call(first, action="status", order=order)
    assert status["status"] == "In progress"

    # The bot was down for a day: the new process's clock starts elsewhere and is not replayed.
    second = sandbox(state, FakeClock(50.0))
    after = await call(second, action="status", order=order)
    assert after["status"] == "In progress"
    assert int(after["remains"]) <= int(status["remains"])

    second.advance(60)
    assert (await call(second, action="status", order=order))["status"] == "Completed"


async def test_what_the_bot_was_shown_is_not_undone_by_a_restart(state: Path) -> None:
    clock = FakeClock(1000.0)
    first = sandbox(state, clock)
    order = await place(first)
    clock.t += 500  # no mutation since the order: only status reads see the completion
    assert (await call(first, action="status", order=order))["status"] == "Completed"

    second = sandbox(state, FakeClock(0.0))
    assert (await call(second, action="status", order=order))["status"] == "Completed"


async def test_refills_cancels_and_test_controls_survive(state: Path) -> None:
    first = sandbox(state, FakeClock(1000.0))
    done = await place(first, link="https://instagram.com/done")
    dropped = await place(first, link="https://instagram.com/dropped")
    manual = await place(first, link="https://instagram.com/manual")
    assert await call(first, action="cancel", orders=str(dropped)) == [
        {"order": dropped, "cancel": 1}]
    first.set_status(manual, "Partial", remains=40)  # refunds 40 * 0.90 / 1000 = 0.036
    first.set_status(done, "Completed")
    refill = int((await call(first, action="refill", order=done))["refill"])

    second = sandbox(state, FakeClock(7.0))
    assert (await call(second, action="status", order=dropped))["status"] == "Canceled"
    partial = await call(second, action="status", order=manual)
    assert partial["status"] == "Partial" and partial["charge"] == "0.054"
    assert second.balance_of(DEMO_KEY) == Decimal("100") - Decimal("0.09") - Decimal("0.054")
    assert (await call(second, action="refill_status", refill=refill))["status"] == "Pending"
    assert await call(second, action="refill", order=done) == {
        "error": "Refill is already in progress for this order"}

    second.advance(120)  # the manual orders stay where they were set; the refill runs on
    assert (await call(second, action="status", order=manual))["status"] == "Partial"
    assert second.refill(refill)["status"] == "Completed"
    again = int((await call(second, action="refill", order=done))["refill"])
    assert again == refill + 1


async def test_added_keys_are_never_written_in_clear(state: Path) -> None:
    first = sandbox(state, FakeClock(1000.0))
    first.add_key(USER_KEY, Decimal("12.50"))
    mine = await place(first, USER_KEY, link="https://instagram.com/mine")

    text = read(state)
    assert USER_KEY not in text and DEMO_KEY not in json.loads(text)["balances"]
    second = sandbox(state, FakeClock(1.0))
    assert (await call(second, USER_KEY, action="status", order=mine))["charge"] == "0.09"
    assert second.balance_of(USER_KEY) == Decimal("12.41")
    assert await call(second, "wrong-key", action="balance") == {"error": "Invalid API key"}
    assert await call(second, action="status", order=mine) == {"error": "Incorrect order ID"}


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"version": 1, "now": 5}',
                                     b"\xff\xfe"])
async def test_an_unreadable_state_file_starts_afresh_with_new_ids(
    state: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    first = sandbox(state, FakeClock(1000.0))
    old = [await place(first, link=f"https://instagram.com/{n}") for n in range(3)]
    damage(state, content)

    with caplog.at_level(logging.WARNING, logger="bot.panel.sandbox"):
        second = sandbox(state, FakeClock(1.0))
    assert "unreadable" in caplog.text and "starts afresh" in caplog.text
    assert second.balance_of(DEMO_KEY) == Decimal("100")
    new = await place(second)
    assert new > max(old) + 1000  # far past anything handed out before: no id is reused

    third = sandbox(state, FakeClock(2.0))  # and from then on the file works again
    assert (await call(third, action="status", order=new))["status"] == "Pending"
    assert await place(third, link="https://instagram.com/next") == new + 1


async def test_a_state_path_that_is_a_directory_does_not_crash(
    state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damage(state, b"")
    with caplog.at_level(logging.WARNING, logger="bot.panel.sandbox"):
        panel = sandbox(state, FakeClock(1000.0))
        order = await place(panel)
        await place(panel, link="https://instagram.com/other")
    assert order > FIRST_ORDER_ID
    assert (await call(panel, action="status", order=order))["status"] == "Pending"
    assert caplog.text.count("not saved") == 1  # said once, not on every request


async def test_without_a_state_path_nothing_is_written(tmp_path: Path) -> None:
    panel = SandboxPanel(clock=FakeClock(1000.0))
    await place(panel)
    panel.complete_all()
    assert files(tmp_path) == []


async def test_the_demo_bot_finds_its_sandbox_orders_after_a_restart(tmp_path: Path) -> None:
    bot = await start_harness(tmp_path, demo_sandbox_from_settings=True, SANDBOX_SPEED=60)
    db = bot.deps.db
    await users.upsert_user(db, telegram_id=USER, name="User")
    first_id = await bot.deps.panel.add(DEMO_KEY, 1, {"link": LINK, "quantity": 100})
    draft = await draft_order(db)
    assert await orders.claim_order(db, draft, owner_id=USER)
    assert await orders.mark_placed(db, draft, panel_order_id=first_id)
    await stop_harness(bot)
    assert "bot.sqlite3.sandbox.json" in files(tmp_path)  # beside the database

    bot = await start_harness(tmp_path, demo_sandbox_from_settings=True, SANDBOX_SPEED=60)
    try:
        db = bot.deps.db
        status = await bot.deps.panel.status(DEMO_KEY, first_id)
        assert status.status in {"Pending", "In progress"}
        assert bot.sandbox.balance_of(DEMO_KEY) == Decimal("99.91")
        second_id = await bot.deps.panel.add(DEMO_KEY, 1, {"link": "https://x.com/b",
                                                             "quantity": 100})
        assert second_id != first_id
        draft = await draft_order(db)
        assert await orders.claim_order(db, draft, owner_id=USER)
        assert await orders.mark_placed(db, draft, panel_order_id=second_id)  # no IntegrityError
    finally:
        await stop_harness(bot)


async def draft_order(db: Any) -> int:
    """A claimed-to-be operator order of 100 Instagram followers."""
    return await orders.save_draft(
        db, panel=PANEL, owner_id=USER, account="operator", service_id=1,
        service_name="Instagram Followers",
        service_type="Default", rate=Decimal("0.90"), currency="USD", can_refill=True,
        can_cancel=True, fields={"link": LINK, "quantity": "100"}, quantity=100,
        cost=Decimal("0.09"),
    )


async def test_a_passed_in_sandbox_stays_in_memory(tmp_path: Path) -> None:
    bot = await start_harness(tmp_path)
    try:
        await bot.deps.panel.add(DEMO_KEY, 1, {"link": LINK, "quantity": 100})
        assert not [name for name in files(tmp_path) if name.endswith(".sandbox.json")]
    finally:
        await stop_harness(bot)


async def test_a_long_running_sandbox_keeps_only_recent_requests() -> None:
    panel = SandboxPanel(keep_requests=10)
    async with panel.client() as client:
        for _ in range(25):
            await client.post(SANDBOX_URL, data={"key": DEMO_KEY, "action": "balance"})
    assert 10 <= len(panel.requests) <= 20


async def test_reads_record_only_the_clock_not_the_whole_state(state: Path) -> None:
    clock = FakeClock(1000.0)
    panel = sandbox(state, clock)
    await place(panel)
    saved = read(state)
    for _ in range(5):
        clock.t += 10
        await call(panel, action="balance")
    assert read(state) == saved  # the (large) state file is not rewritten by reads
    assert state.with_name(state.name + ".clock").exists()
