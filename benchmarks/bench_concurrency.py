"""Benchmark: many users at once on a slow panel, per-chat concurrent vs sequential processing.

Run from the repository root: `python benchmarks/bench_concurrency.py [--quick] [--users 200]
[--sequential-users 20] [--deployed-users 60] [--latency 1.0]`. Prints a markdown table and the
goal lines of the stress run (exit status 1 when one is missed):

    goal cheap_p99_ms_stress: <p99 of cheap actions, 200 users at a stress pace> (want <= 100)
    goal database_locked_in_log: <log lines saying "database is locked"> (want <= 0)
    goal errors_logged: <log lines at ERROR or above> (want <= 0)

Takes about two and a half minutes; `--quick` runs only the stress run (about 25 s).

Each simulated user goes through the real Application (started as `run_polling` starts it:
update processor, JobQueue with the tracker every 2 s; updates are put on its update queue as
polling would), with the fake Bot API of the tests and the sandbox panel answering every request
after `--latency` seconds. A user starts at a random moment within the first 10 s and, like a
person, waits for the bot's reply to each action, then thinks before the next one: 0.5–2 s at
a human pace, 50–300 ms in the stress run (about twice the updates per second):

    cheap:     /help · /start (menu) · New order · a category · its next page
    wizard:    /order 1 · link · quantity (no panel request)
    summary:   Skip → the summary, which shows the panel balance (one panel request)
    placement: Confirm → "Order … placed" (the `add` request)
    cheap:     /help · /start (menu) · New order · a category, once more after ordering

so the cheap actions of some users always fall while others wait on the panel.

Latency is from the update entering the queue to the bot's reply reaching the fake Bot API.
updates/s is every update over the run's wall time (first update queued to last reply).

The catalogue is fetched once before the run (as in production after the first /services), so
cheap actions never need the panel. The bot's AIORateLimiter keeps it under Telegram's ~30
calls/s overall: with hundreds of users that ceiling, not the bot, sets the reply time, so the
main runs switch it off (patched to pass calls straight through) to time the bot itself, and a
smaller run shows it as deployed. The sequential run has fewer users: every panel request stops
everyone, so 200 users would take minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from goals import Goals, pct
from telegram import Update
from telegram.ext import AIORateLimiter, BaseUpdateProcessor, SimpleUpdateProcessor
from telegram.request import BaseRequest, RequestData

from bot.app import BotApp, build_application, start_services, stop_services
from bot.concurrency import PerChatUpdateProcessor
from bot.deps import DEPS_KEY, Deps
from bot.panel.sandbox import DEMO_KEY, SandboxPanel
from bot.services.accounts import account_for
from bot.standin.botapi import FakeRequest, FakeTelegram
from tests.conftest import make_settings

FIRST_USER = 1_000_000
START_SPREAD = 10.0  # seconds over which the users arrive
HUMAN = (0.5, 2.0)  # seconds a user thinks between a reply and their next action
STRESS = (0.05, 0.3)
REPLY_TIMEOUT = 600.0


class TimedRequest(FakeRequest):
    """The fake Bot API, also noting when the bot last wrote to each chat (and waking its user)."""

    def __init__(self, world: FakeTelegram) -> None:
        super().__init__(world)
        self.written: dict[int, float] = {}
        self.wake: dict[int, asyncio.Event] = {}

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Answers as the fake does; a message sent or edited marks its chat."""
        result = await super().do_request(url, method, request_data, read_timeout,
                                          write_timeout, connect_timeout, pool_timeout)
        if request_data is None or not url.endswith(("/sendMessage", "/editMessageText")):
            return result
        chat_id = request_data.parameters.get("chat_id")
        if isinstance(chat_id, int | str):
            chat = int(chat_id)
            self.written[chat] = time.perf_counter()
            self.wake.setdefault(chat, asyncio.Event()).set()
        return result


@dataclass
class Results:
    """Latencies (ms) by kind of action, and the run's totals."""

    latency: dict[str, list[float]] = field(default_factory=dict)
    updates: int = 0
    seconds: float = 0.0
    cpu: float = 0.0  # the process's CPU seconds over the run (bot, stand-ins, simulated users)
    busy: list[float] = field(default_factory=list)  # CPU share of each second of the run
    orders: int = 0
    errors: int = 0
    locked: int = 0

    def add(self, kind: str, ms: float) -> None:
        """Records one reply time."""
        self.latency.setdefault(kind, []).append(ms)


class ErrorCounter(logging.Handler):
    """Counts what is logged at ERROR or above (handler crashes, …), and every line at WARNING
    or above that says "database is locked" (with its traceback, if any)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.locked = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Counts the record; keeps the first few messages."""
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({record.exc_info[1]})"
        if "database is locked" in text:
            self.locked += 1
        if record.levelno < logging.ERROR:
            return
        self.count += 1
        if len(self.first) < 3:
            self.first.append(text[:200])


class SimulatedUser:
    """One person talking to the bot: acts, waits for the reply, thinks, acts again."""

    def __init__(self, user_id: int, app: BotApp, world: FakeTelegram, request: TimedRequest,
                 results: Results, rng: random.Random, think: tuple[float, float]) -> None:
        self.id = user_id
        self.think = think
        self.app = app
        self.world = world
        self.request = request
        self.results = results
        self.rng = rng

    async def act(self, kind: str, update: dict[str, Any], expected: str) -> None:
        """Hands the update to the bot and waits until the chat shows `expected`."""
        mark = self.world.mark()
        wake = self.request.wake.setdefault(self.id, asyncio.Event())
        self.world.discard_update(update["update_id"])
        queued = time.perf_counter()
        await self.app.update_queue.put(Update.de_json(update, self.app.bot))
        self.results.updates += 1
        async with asyncio.timeout(REPLY_TIMEOUT):  # one timer an action, no task per wait
            while True:
                wake.clear()
                if self.shows(expected, mark):
                    break
                await wake.wait()
        self.results.add(kind, (self.request.written[self.id] - queued) * 1000)
        await asyncio.sleep(self.rng.uniform(*self.think))

    def shows(self, expected: str, mark: int) -> bool:
        """Whether a bot message sent or edited after `mark` contains `expected` (looked up in
        place: the simulated users share the bot's CPU, so they must cost it little)."""
        return self.world.has_text(self.id, expected, since=mark)

    def tap(self, label: str) -> dict[str, Any]:
        """A tap on the newest button whose label contains `label`."""
        button = self.world.find_button(self.id, label)
        if button is None or button.data is None:
            raise AssertionError(f"user {self.id}: no button {label!r}")
        return self.world.user_presses(self.id, button.message_id, button.data)

    def says(self, text: str) -> dict[str, Any]:
        """A message from the user."""
        return self.world.user_sends(self.id, text)

    async def run(self) -> None:
        """Browses, fills in and places one order, then browses again."""
        await asyncio.sleep(self.rng.uniform(0, START_SPREAD))
        await self.act("cheap", self.says("/help"), "What I can do")
        await self.act("cheap", self.says("/start"), "Tap New order")
        await self.act("cheap", self.tap("New order"), "Pick a category")
        await self.act("cheap", self.tap("Instagram"), "(page 1/2)")
        await self.act("cheap", self.tap("2 ▶"), "(page 2/2)")
        await self.act("wizard", self.says("/order 1"), "Step 1")
        await self.act("wizard", self.says(f"https://instagram.com/p/u{self.id}"), "Step 2")
        await self.act("wizard", self.says("100"), "Step 3")
        await self.act("summary", self.tap("Skip"), "Check the order")
        await self.act("placement", self.tap("Confirm"), "placed")
        self.results.orders += 1
        await self.act("cheap", self.says("/help"), "What I can do")
        await self.act("cheap", self.says("/start"), "Tap New order")
        await self.act("cheap", self.tap("New order"), "Pick a category")
        await self.act("cheap", self.tap("Instagram"), "(page 1/2)")


_LIMITED = AIORateLimiter.process_request


def telegram_limiter(on: bool) -> None:
    """Switches the bot's AIORateLimiter on (as deployed) or off (to time the bot itself)."""
    AIORateLimiter.process_request = (  # type: ignore[method-assign]
        _LIMITED if on else _straight_through)


async def _straight_through(self: AIORateLimiter, callback: Callable[..., Any], args: Any,
                            kwargs: dict[str, Any], endpoint: str, data: dict[str, Any],
                            rate_limit_args: int | None) -> Any:
    """AIORateLimiter.process_request without the limiting."""
    return await callback(*args, **kwargs)


async def run(users: int, processor: BaseUpdateProcessor, latency: float, *,
              limiter: bool, think: tuple[float, float], seed: int = 1) -> Results:
    """One run: `users` simulated users at once through a freshly started bot."""
    telegram_limiter(on=limiter)
    errors = ErrorCounter()
    logging.getLogger().addHandler(errors)
    results = Results()
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = SandboxPanel(keys={DEMO_KEY: Decimal("1000000")}, speed=60)
        world = FakeTelegram(strict_chats=False)
        request = TimedRequest(world)
        settings = make_settings(Path(tmp), STATUS_POLL_INTERVAL=2, RATE_LIMIT_PER_MINUTE=60)
        app = build_application(settings, request=request, updates_request=FakeRequest(world),
                                sandbox=sandbox, update_processor=processor)
        await app.initialize()
        await start_services(app)
        deps: Deps = app.bot_data[DEPS_KEY]
        account = await account_for(deps, FIRST_USER)  # the one fetch, before the run
        assert account is not None
        await deps.catalog.get(account.catalog_key, account.key)
        sandbox.latency = latency
        await app.start()
        try:
            rng = random.Random(seed)
            people = [SimulatedUser(FIRST_USER + n, app, world, request, results,
                                    random.Random(rng.random()), think)
                      for n in range(users)]
            started, cpu = time.perf_counter(), time.process_time()
            meter = asyncio.create_task(_busy(results.busy))
            await asyncio.gather(*(person.run() for person in people))
            meter.cancel()
            results.cpu = time.process_time() - cpu
            last_reply = max(request.written[p.id] for p in people)
            results.seconds = last_reply - started
            placed = len(sandbox.requests_for("add"))
            assert placed == users, f"{placed} orders for {users} users"
        finally:
            await app.stop()
            await stop_services(app)
            await app.shutdown()
            telegram_limiter(on=True)
            logging.getLogger().removeHandler(errors)
    results.errors = errors.count
    results.locked = errors.locked
    if errors.first:
        print(f"errors logged: {errors.first}", file=sys.stderr)
    return results


async def _busy(shares: list[float]) -> None:
    """Appends the process's CPU share of each second until cancelled (1.0: a core's worth,
    so the loop cannot keep up and updates queue)."""
    while True:
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.sleep(1.0)
        shares.append((time.process_time() - cpu) / (time.perf_counter() - wall))


def row(title: str, users: int, result: Results) -> str:
    """A table row: p50 / p99 per kind of action, updates/s, orders and errors."""
    cells = []
    for kind in ("cheap", "placement"):
        values = result.latency.get(kind, [])
        cells.append(f"{pct(values, 50):,.0f} / {pct(values, 99):,.0f}" if values else "–")
    return (f"| {title} | {users} | {cells[0]} | {cells[1]} | "
            f"{result.updates / result.seconds:,.1f} | {result.orders} | {result.errors} | "
            f"{result.locked} |")


async def main(users: int, sequential_users: int, deployed_users: int, latency: float,
               quick: bool) -> int:
    """Runs the set-ups (`quick`: the stress run only), prints the table and the goals."""
    root = logging.getLogger()
    root.setLevel(logging.WARNING)  # nothing printed: the error counter sees WARNING and above
    warnings.simplefilter("ignore")  # PTB's per_message notice for the wizard
    rows = []
    if not quick:
        concurrent = await run(users, PerChatUpdateProcessor(), latency, limiter=False,
                               think=HUMAN)
        rows.append(row("per chat concurrent (PerChatUpdateProcessor)", users, concurrent))
        sequential = await run(sequential_users, SimpleUpdateProcessor(1), latency,
                               limiter=False, think=HUMAN)
        rows.append(row("sequential (PTB default)", sequential_users, sequential))
    stress = await run(users, PerChatUpdateProcessor(), latency, limiter=False, think=STRESS)
    rows.append(row("per chat concurrent, stress pace (50–300 ms between actions)", users,
                    stress))
    if deployed_users and not quick:
        deployed = await run(deployed_users, PerChatUpdateProcessor(), latency, limiter=True,
                             think=HUMAN)
        rows.append(row("per chat concurrent, AIORateLimiter on (as deployed)", deployed_users,
                        deployed))
    print(f"Sandbox panel answering every request after {latency:g} s; latency in ms, "
          "update queued → reply at the Bot API; cheap = /help, /start menu, catalogue pages; "
          "human pace (0.5–2 s between actions) unless said; Telegram rate limiter off unless "
          "said.")
    print()
    print("| processing | users | cheap p50 / p99 ms | placement p50 / p99 ms | updates/s "
          "| orders placed | errors logged | \"database is locked\" |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    saturated = sum(1 for share in stress.busy if share >= 0.95)
    print(f"Stress run: {stress.cpu:.1f} s of CPU for {stress.updates:,} updates "
          f"({stress.cpu / stress.updates * 1000:.2f} ms each: bot, fake Bot API, sandbox and "
          f"simulated users, one process); {saturated} of its {len(stress.busy)} seconds at "
          f"95 %+ of a core (updates queue for the loop then).")
    print()
    goals = Goals()
    goals.at_most("cheap_p99_ms_stress", pct(stress.latency["cheap"], 99), 100, fmt="{:,.0f}")
    goals.at_most("database_locked_in_log", stress.locked, 0, fmt="{:,.0f}")
    goals.at_most("errors_logged", stress.errors, 0, fmt="{:,.0f}")
    return goals.exit_code()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the stress run only (about 25 s)")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--sequential-users", type=int, default=20)
    parser.add_argument("--deployed-users", type=int, default=60,
                        help="users of the run with the Telegram rate limiter on (0: skip it)")
    parser.add_argument("--latency", type=float, default=1.0)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.users, args.sequential_users, args.deployed_users,
                              args.latency, args.quick)))
