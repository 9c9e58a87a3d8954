"""Benchmark: a 5,000-service catalogue (page build, search, taps) and the order wizard's speed.

Run from the repository root: `python benchmarks/bench_catalog_wizard.py [--quick] [--orders N]`.
Prints markdown tables and the goal line (exit status 1 when it is missed):

    goal wizard_vs_echo: <wizard updates/s / echo updates/s> (want >= 0.5)

Everything runs in-process: the real Application (persistence on, write-through after every
update), the fake Bot API of the tests (bot/standin/botapi.py), the sandbox panel; the wizard's
updates per second are compared with a bare echo bot fed the same way in the same run, and
with the wizard's Telegram traffic alone (`ShapedBot`: the same updates and Bot API calls, made
the way the bot makes them, and no other work), the three taking turns (a fifth of the orders,
then as many echo updates, then as many orders of traffic alone, five times over). The traffic
alone is the most the wizard could reach if its own work (conversation, SQLite, persistence,
panel requests, texts) cost nothing. The time spent inside the stand-ins themselves (the fake
Bot API answering, the sandbox panel answering) is shown apart: it is counted in every rate,
as a real Telegram and panel would cost waiting instead.

The bot's AIORateLimiter keeps it under Telegram's ~30 calls/s, and that ceiling, not the bot's
own work, bounds it when one chat is fed as fast as possible. So the bot's own cost is measured
with that limiter switched off (patched to pass calls straight through), and the wizard is also
timed as deployed, limiter on, to show the ceiling. `--quick` (about 15 s): fewer orders and
page builds.

`--without persistence,summary-balance,blocked-read` measures what some of the bot's promises
cost: it switches them off before the bot starts (see `PROMISES`) and prints the same tables,
with no goal judged (the bot then breaks those promises; the figures are an ablation, not the
bot). Without `--without` nothing is switched off.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from goals import Goals
from telegram import Update
from telegram.ext import (
    AIORateLimiter,
    Application,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

import bot.handlers.notify
import bot.handlers.wizard
from bot.catalog import ServiceIndex
from bot.handlers.catalog import categories_page, category_page, search_page
from bot.keyboards import Button, Keyboard
from bot.outgoing import edit_html, send_html
from bot.panel.models import Service
from bot.panel.sandbox import DEMO_KEY, SandboxPanel
from bot.standin.botapi import FakeRequest, FakeTelegram, feed
from storage.persistence import WriteThroughApplication
from tests.conftest import TOKEN, USER, BotHarness, start_harness, stop_harness

PLATFORMS = ["Instagram", "TikTok", "YouTube", "Telegram", "Twitter", "Facebook", "Spotify",
             "Twitch", "Discord", "Website"]
KINDS = ["Followers", "Likes", "Views", "Comments", "Shares", "Members", "Plays", "Saves",
         "Reposts", "Traffic"]
QUALITY = ["Real", "HQ", "Cheap", "Instant", "Non-drop", "Targeted USA", "Premium", "Fast"]


def services(count: int = 5000) -> list[dict[str, Any]]:
    """A panel-like catalogue: 50 categories (platform × kind group), Default services."""
    rng = random.Random(7)
    rows = []
    for i in range(1, count + 1):
        platform, kind = rng.choice(PLATFORMS), rng.choice(KINDS)
        category = f"{platform} {kind} {'[Refill]' if i % 2 else '[No refill]'}"
        rows.append({
            "service": i, "type": "Default", "category": category,
            "name": f"{platform} {kind} [{rng.choice(QUALITY)}] [Max {rng.randint(1, 500)}K] "
                    f"[Start 0-{rng.randint(1, 24)}h] - {rng.randint(100, 50000)}/day",
            "rate": f"{rng.uniform(0.01, 20):.4f}", "min": "10", "max": "1000000",
            "refill": i % 2 == 1, "cancel": i % 3 == 0, "desc": "Speed and quality vary.",
        })
    return rows


def timings(action: Callable[[], object], runs: int) -> list[float]:
    """Milliseconds each of `runs` calls took."""
    result = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        result.append((time.perf_counter() - start) * 1000)
    return result


def p(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def row(what: str, values: list[float]) -> str:
    """A table row with p50 / p99 in milliseconds."""
    return f"| {what} | {p(values, 50):.3f} ms | {p(values, 99):.3f} ms | {len(values)} |"


async def catalogue_rows(bot: BotHarness, runs: int) -> list[str]:
    """Page build and search on the cached 5,000-service index, and taps through the bot."""
    rng = random.Random(1)
    rows = []
    start = time.perf_counter()
    await bot.send("/services")  # the one fetch: services (+ balance for the currency)
    first = (time.perf_counter() - start) * 1000
    index = await bot.deps.catalog.get("operator", DEMO_KEY)
    assert len(index.services) == 5000
    rows.append(f"| first /services (fetch 5,000 services, build index) | {first:.1f} ms | – | 1 |")
    parsed = [Service.from_api(r) for r in bot.sandbox.services()]
    built = timings(lambda: ServiceIndex(tuple(s for s in parsed if s), "USD", 0.0), 20)
    rows.append(row("index build from parsed services", built))
    cats = len(index.categories)
    rows.append(row("categories page build", timings(
        lambda: categories_page(index, rng.randrange(5)), runs)))
    rows.append(row("category page build", timings(
        lambda: category_page(index, rng.randrange(cats), rng.randrange(15)), runs)))
    queries = ["followers", "instagram likes", "4321", "tiktok views hq", "premium usa",
               "no such thing here", "refill", "spotify plays instant"]
    rows.append(row("search + results page build", timings(
        lambda: search_page(index, rng.choice(queries), 0), runs)))
    taps = []
    message_id = bot.last().message_id
    for _ in range(runs // 4):
        data = f"cs:{rng.randrange(cats)}:{rng.randrange(3)}"
        update = bot.world.user_presses(USER, message_id, data, force=True)
        start = time.perf_counter()
        await feed(bot.app, update)
        taps.append((time.perf_counter() - start) * 1000)
    rows.append(row("category tap through the bot (edit + persistence)", taps))
    searches = []
    for _ in range(runs // 4):
        update = bot.world.user_sends(USER, rng.choice(queries))
        start = time.perf_counter()
        await feed(bot.app, update)
        searches.append((time.perf_counter() - start) * 1000)
    rows.append(row("typed search through the bot", searches))
    return rows


async def wizard_rate(bot: BotHarness, orders: int, run: str,
                      first_user: int = 100_000) -> tuple[float, int]:
    """Updates per second of full orders: /order, link, quantity, Skip, Confirm."""
    updates = 0
    sent = len(bot.panel_requests("add"))
    start = time.perf_counter()
    for n in range(orders):
        # A chat per order: finding a button in a long chat would cost the test tool, not
        # the bot, more and more.
        user = first_user + n
        await bot.send("/order 1", user=user)
        await bot.send(f"https://example.com/{run}/{n}", user=user)  # one active order a link
        await bot.send("100", user=user)
        await bot.press("Skip", user=user)
        await bot.press("Confirm", user=user)
        updates += 5
    elapsed = time.perf_counter() - start
    assert len(bot.panel_requests("add")) == sent + orders
    return updates / elapsed, updates


class EchoBot:
    """A bare echo bot on the same fake Bot API, fed the same way."""

    def __init__(self) -> None:
        self.world = FakeTelegram(strict_chats=False)
        self.world.open_chat(USER, first_name="Echo")
        self.app = Application.builder().token(TOKEN).request(
            FakeRequest(self.world)).get_updates_request(FakeRequest(self.world)).build()
        self.app.add_handler(MessageHandler(filters.TEXT, self.echo))
        self.sent = 0

    @staticmethod
    async def echo(update: Update, context: Any) -> None:
        """Says the message back."""
        message = update.effective_message
        if message is not None and message.text:
            await message.reply_text(message.text)

    async def seconds(self, count: int) -> float:
        """How long `count` updates take."""
        start = time.perf_counter()
        for _ in range(count):
            self.sent += 1
            await feed(self.app, self.world.user_sends(USER, f"hello {self.sent}"))
        return time.perf_counter() - start


#: The wizard's steps as a user takes them: (what the user does, with what).
STEPS = (("send", "/order 1"), ("send", "https://example.com/"), ("send", "100"),
         ("press", "Skip"), ("press", "Confirm"))


async def wizard_calls(bot: BotHarness, user: int) -> list[list[tuple[str, dict[str, Any]]]]:
    """One full order through the real wizard: the Bot API calls the bot made at each step."""
    steps = []
    for kind, arg in STEPS:
        before = len(bot.world.calls)
        if kind == "send":
            await bot.send(arg, user=user)
        else:
            await bot.press(arg, user=user)
        steps.append([(method, dict(params)) for method, params in bot.world.calls[before:]])
    return steps


class ShapedBot:
    """The wizard's Telegram traffic alone: a bot that gets the same five updates an order is
    (three messages; two button taps, whose callback carries the message with its keyboard)
    and makes the same Bot API calls with the same texts and keyboards, the way the bot makes
    them (`bot.outgoing`'s sendMessage / editMessageText, PTB's answerCallbackQuery), and
    nothing else: no conversation, no state, no database, no panel. Its rate is the most the
    wizard could reach if all of its own work cost nothing; what the wizard takes beyond it is
    that work."""

    def __init__(self, calls: list[list[tuple[str, dict[str, Any]]]]) -> None:
        self.world = FakeTelegram(strict_chats=False)
        self.app = Application.builder().token(TOKEN).request(
            FakeRequest(self.world)).get_updates_request(FakeRequest(self.world)).build()
        self.calls = calls
        self.app.add_handler(CommandHandler("order", self._step(0)))
        self.app.add_handler(MessageHandler(filters.Regex("^https://"), self._step(1)))
        self.app.add_handler(MessageHandler(filters.TEXT, self._step(2)))
        self.app.add_handler(CallbackQueryHandler(self._step(3), pattern="^wz:skip$"))
        self.app.add_handler(CallbackQueryHandler(self._step(4)))
        self.chats = 0

    def _step(self, index: int) -> Callable[[Update, Any], Any]:
        async def step(update: Update, context: Any) -> None:
            chat, query = update.effective_chat, update.callback_query
            assert chat is not None
            for method, params in self.calls[index]:
                markup = params.get("reply_markup")  # built as the bot builds its own
                keyboard = (Keyboard([[Button(b["text"], b.get("callback_data"), b.get("url"))
                                       for b in row] for row in markup["inline_keyboard"]])
                            if isinstance(markup, dict) else None)
                if method == "answerCallbackQuery":
                    assert query is not None
                    await query.answer(params.get("text"))
                elif method == "sendMessage":
                    await send_html(context.bot, chat.id, params["text"], keyboard)
                elif method == "editMessageText":
                    assert query is not None and query.message is not None
                    await edit_html(context.bot, chat.id, query.message.message_id,
                                    params["text"], keyboard)
                else:  # the wizard makes a call this peer does not: it would not be its traffic
                    raise AssertionError(f"the traffic-alone bot cannot make {method}")
        return step

    async def seconds(self, orders: int) -> float:
        """How long `orders` full orders (five updates each, a chat each) take."""
        start = time.perf_counter()
        for _ in range(orders):
            self.chats += 1
            user = 700_000 + self.chats
            for kind, arg in STEPS:
                if kind == "send":
                    update = self.world.user_sends(user, arg)
                else:
                    button = self.world.find_button(user, arg)
                    assert button is not None and button.data is not None
                    update = self.world.user_presses(user, button.message_id, button.data)
                await feed(self.app, update)
        return time.perf_counter() - start


async def _nothing(*args: Any, **kwargs: Any) -> None:
    """Does nothing (a promise switched off)."""


#: The promises `--without` can switch off, each with what the bot then no longer does. Each
#: is patched where the bot looks it up, before the bot is built.
PROMISES: dict[str, tuple[str, Callable[[], None]]] = {
    "persistence": (
        "write-through persistence after every update (an answer may be lost in a restart)",
        lambda: setattr(WriteThroughApplication, "update_persistence", _nothing)),
    "summary-balance": (
        "the panel balance request on the summary (it no longer says if the balance covers "
        "the order)",
        lambda: setattr(bot.handlers.wizard, "panel_balance", _nothing)),
    "blocked-read": (
        "the per-update read of the user's 'blocked the bot' mark (notices no longer resume "
        "when a user comes back)",
        lambda: setattr(bot.handlers.notify, "user_is_back", _nothing)),
}


def switch_off(names: list[str]) -> None:
    """Switches these promises off (`PROMISES`) for the rest of the process."""
    for name in names:
        PROMISES[name][1]()


_LIMITED = AIORateLimiter.process_request


async def _straight_through(self: AIORateLimiter, callback: Callable[..., Any], args: Any,
                            kwargs: dict[str, Any], endpoint: str, data: dict[str, Any],
                            rate_limit_args: int | None) -> Any:
    """AIORateLimiter.process_request without the limiting."""
    return await callback(*args, **kwargs)


def telegram_limiter(on: bool) -> None:
    """Switches the bot's AIORateLimiter on (as deployed) or off (to time the bot's own work)."""
    AIORateLimiter.process_request = _LIMITED if on else _straight_through  # type: ignore[method-assign]


class StandIns:
    """Wall time spent inside the stand-ins' own work: the fake Bot API and the sandbox panel."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._saved: list[tuple[type, str, Any]] = []

    def __enter__(self) -> StandIns:
        # Every Bot API call the bot makes reaches the fake through _handle_async (PTB's
        # requests through handle_encoded_async, other callers through handle_async).
        for owner, name in ((FakeTelegram, "_handle_async"), (SandboxPanel, "handle")):
            original = getattr(owner, name)
            self._saved.append((owner, name, original))
            setattr(owner, name, self._timed(original))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in self._saved:
            setattr(owner, name, original)

    def _timed(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
        return timed


async def main(orders: int, runs: int, deployed_orders: int, without: list[str]) -> int:
    """Runs everything, prints the tables and the goal; the exit status."""
    switch_off(without)
    rounds = 5
    echo = EchoBot()
    await echo.app.initialize()
    wizard_seconds = echo_seconds = shaped_seconds = 0.0
    wizard_stand_ins = echo_stand_ins = shaped_stand_ins = 0.0
    updates = 0
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = SandboxPanel(keys={DEMO_KEY: Decimal("1000000000")}, speed=60,
                               services=services())
        bot = await start_harness(Path(tmp), sandbox=sandbox, RATE_LIMIT_PER_MINUTE=10**6)
        try:
            telegram_limiter(on=False)
            rows = await catalogue_rows(bot, runs)
            shaped = ShapedBot(await wizard_calls(bot, user=40_000))
            await shaped.app.initialize()
            await wizard_rate(bot, max(1, orders // 10), "warm-up", first_user=50_000)
            await echo.seconds(50)
            await shaped.seconds(10)
            # The bots take turns, a fifth of the orders at a time, so a slower moment of a
            # shared machine weighs on them alike.
            with StandIns() as stand_ins:
                for n in range(rounds):
                    share = orders // rounds + (n < orders % rounds)
                    mark = stand_ins.seconds
                    rate, done = await wizard_rate(bot, share, f"off{n}",
                                                   first_user=100_000 + n * orders)
                    wizard_seconds += done / rate
                    wizard_stand_ins += stand_ins.seconds - mark
                    updates += done
                    mark = stand_ins.seconds
                    echo_seconds += await echo.seconds(done)
                    echo_stand_ins += stand_ins.seconds - mark
                    mark = stand_ins.seconds
                    shaped_seconds += await shaped.seconds(share)
                    shaped_stand_ins += stand_ins.seconds - mark
            telegram_limiter(on=True)
            deployed, deployed_updates = await wizard_rate(bot, deployed_orders, "on",
                                                           first_user=300_000)
        finally:
            telegram_limiter(on=True)
            await stop_harness(bot)
            await echo.app.shutdown()
    wizard = updates / wizard_seconds
    echo_rate = updates / echo_seconds
    shaped_rate = updates / shaped_seconds
    print("| 5,000-service catalogue | p50 | p99 | runs |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("| Throughput (updates fed one at a time) | updates/s | µs per update | "
          "of which in the stand-ins |")
    print("|---|---|---|---|")
    for what, rate, stand_in_seconds in (
        ("bare echo bot (same fake Bot API)", echo_rate, echo_stand_ins),
        ("the wizard's Telegram traffic alone: its updates and Bot API calls, nothing else",
         shaped_rate, shaped_stand_ins),
        (f"order wizard: {orders} full orders, {updates} updates (SQLite drafts, write-through "
         "persistence, sandbox balance + add), Telegram limiter off"
         + (f"; ABLATION: without {', '.join(without)}" if without else ""),
         wizard, wizard_stand_ins),
    ):
        in_stand_ins = stand_in_seconds * rate / updates
        print(f"| {what} | {rate:,.0f} | {1e6 / rate:,.0f} | {in_stand_ins:.0%} |")
    print(f"| ratio wizard / echo | {wizard / echo_rate:.2f} | | |")
    print(f"| ratio traffic alone / echo: the most the wizard could reach if its own work cost "
          f"nothing | {shaped_rate / echo_rate:.2f} | | |")
    print(f"| ratio wizard / traffic alone | {wizard / shaped_rate:.2f} | | |")
    print(f"| order wizard as deployed ({deployed_updates} updates, AIORateLimiter on: "
          f"~30 Bot API calls/s overall) | {deployed:,.0f} | | |")
    print()
    if without:
        print("ablation, no goal judged: switched off " + "; ".join(
            PROMISES[name][0] for name in without))
        print(f"ablation wizard_vs_echo: {wizard / echo_rate:.2f}")
        return 0
    goals = Goals()
    goals.at_least("wizard_vs_echo", wizard / echo_rate, 0.5)
    return goals.exit_code()


def promises(value: str) -> list[str]:
    """`--without`'s value: promise names, comma-separated."""
    names = [name for name in value.split(",") if name]
    unknown = [name for name in names if name not in PROMISES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {', '.join(unknown)} (known: {', '.join(PROMISES)})")
    return names


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a shorter run (about 15 s)")
    parser.add_argument("--orders", type=int, default=None, help="full orders (default 200)")
    parser.add_argument("--runs", type=int, default=None, help="page builds (default 2000)")
    parser.add_argument("--without", type=promises, default=[],
                        help=f"promises switched off, to see their cost: {', '.join(PROMISES)}")
    args = parser.parse_args()
    n_orders = args.orders or (60 if args.quick else 200)
    n_runs = args.runs or (400 if args.quick else 2000)
    sys.exit(asyncio.run(main(n_orders, n_runs, 20, args.without)))
