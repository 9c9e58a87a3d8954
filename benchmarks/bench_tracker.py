"""Benchmark of the tracker: one cycle over many active orders, how it grows, and the schedule.

Run from the repository root:
``python benchmarks/bench_tracker.py [--quick] [--sizes 10000,100000] [--keys 10]``.

For each size, a fresh database and sandbox panel hold that many active orders over 10 panel keys
(the operator's and nine users' own), owned by 1,000 users; the sandbox answers every request
after 20 ms. What is timed is ``bot.services.tracking.poll_orders``: select the due orders, ask
the panel in batches of 100 ids, write every batch (status changes + history + outbox, the rest
in one statement) in one transaction. Sending is a separate job, throttled by Telegram's own
limits, so it is not part of a cycle; the notifications *written* are counted. A cycle looks at
most ``ORDERS_PER_CYCLE`` orders (the most overdue first), so a first look at more takes more
than one cycle: the figures are per order checked.

- CPU is the process's (the database thread included), minus the sandbox's own work (reading
  the request, answering, writing the answer: measured inside it and shown apart), since the
  sandbox runs in this process.
- The first look is run twice (the second time replayed: every order made never-checked again),
  and the cheaper run counts; "nothing changed" is the median of three cycles.
- The heap start-up built is frozen out of the garbage collector's way, as the bot's start-up
  does (`bot.app.freeze_start_up`); the seeded sandbox and everything after are not.
- Memory is tracemalloc's peak during a first-look cycle, replayed with tracemalloc on.
- The schedule: the largest set of orders, all over a week old and checked once, then a cycle
  every minute for two hours (``POLL_SCHEDULE``: such orders are asked about every 2 hours).

Goal lines (exit status 1 when one is missed):

    goal first_look_cpu_s_per_10k: <worst size> (want <= 0.5)
    goal cpu_per_order_growth: <per order at the largest size / at the smallest> (want <= 1.3)
    goal memory_per_order_growth: <the same for memory> (want <= 1.3)
    goal old_order_requests_per_cycle_per_order: <average> (want <= 0.001)

``--quick``: 5,000 and 20,000 orders (about 40 s); the full form: 10,000 and 100,000.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from goals import Goals

from bot.app import freeze_start_up
from bot.catalog import Catalog
from bot.config import Settings
from bot.crypto import KeyBox
from bot.deps import Deps
from bot.panel.client import BATCH_SIZE, PanelClient
from bot.panel.models import SANDBOX_URL as PANEL
from bot.panel.sandbox import DEMO_KEY, SandboxPanel
from bot.ratelimit import UserRateLimiter
from bot.services.tracking import ORDERS_PER_CYCLE, CycleReport, poll_orders
from storage import orders, users
from storage.db import add_reader, add_writer, close_database, open_database, transaction
from storage.users import OPERATOR_ACCOUNT, user_account

SECRET = "benchmark-secret-key-not-for-production"
SERVICE = 2  # Instagram Likes, 0.25 per 1000
MINUTE, DAY = 60.0, 86_400.0


class TimedSandbox(SandboxPanel):
    """The sandbox, with its own CPU time counted (so it can be told apart from the bot's)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cpu = 0.0

    def answer(self, fields: Mapping[str, str]) -> Any:
        """Answers as the sandbox does, adding the thread CPU time it took to `cpu`."""
        started = time.thread_time()
        try:
            return super().answer(fields)
        finally:
            self.cpu += time.thread_time() - started

    def _parse_form(self, request: httpx.Request, body: bytes) -> dict[str, str]:
        """Reads the request as the sandbox does, counted as the sandbox's."""
        started = time.thread_time()
        try:
            return SandboxPanel._parse_form(request, body)
        finally:
            self.cpu += time.thread_time() - started

    def _json(self, request: httpx.Request, payload: Any) -> httpx.Response:
        """Writes the answer as the sandbox does, counted as the sandbox's."""
        started = time.thread_time()
        try:
            return SandboxPanel._json(request, payload)
        finally:
            self.cpu += time.thread_time() - started

    def seed(self, key: str, count: int) -> list[int]:
        """Places `count` orders of `key` and holds them In progress (they move when told to)."""
        ids = []
        for n in range(count):
            answer = super().answer({
                "key": key, "action": "add", "service": str(SERVICE),
                "link": f"https://instagram.com/p/{key}-{n}", "quantity": "1000",
            })
            ids.append(int(answer["order"]))
            self.set_status(ids[-1], "In progress")
        return ids


@dataclass
class Cycle:
    """One timed cycle."""

    report: CycleReport
    wall: float
    cpu_bot: float
    cpu_sandbox: float
    requests: int


@dataclass
class Size:
    """The figures of one size."""

    orders: int
    first: list[Cycle]
    unchanged: list[Cycle]
    peak: int
    seeded: float

    @property
    def first_checked(self) -> int:
        return sum(c.report.checked for c in self.first)

    @property
    def first_cpu(self) -> float:
        return sum(c.cpu_bot for c in self.first)


def keys(n_keys: int) -> list[tuple[str, str]]:
    """(account, key): the operator's account and users 1..n-1 with their own keys."""
    return [(OPERATOR_ACCOUNT, DEMO_KEY)] + [
        (user_account(u), f"own-key-of-user-{u}") for u in range(1, n_keys)]


async def seed(deps: Deps, panel: TimedSandbox, n_orders: int, n_keys: int, n_users: int,
               created: float) -> None:
    """Users, keys, and the orders (in the sandbox and tracked by the bot), spread over keys."""
    db = deps.db
    assert deps.keybox is not None
    async with transaction(db):
        for telegram_id in range(1, n_users + 1):
            await users.upsert_user(db, telegram_id=telegram_id, name=f"User {telegram_id}")
        for account, key in keys(n_keys)[1:]:
            panel.add_key(key, Decimal(10**9))
            await users.set_panel_key(db, int(account.split(":")[1]), deps.keybox.encrypt(key))
    operator_owners = list(range(n_keys, n_users + 1))
    for index, (account, key) in enumerate(keys(n_keys)):
        count = n_orders // n_keys + (index < n_orders % n_keys)
        ids = panel.seed(key, count)
        by_owner: dict[int, list[int]] = {}
        for n, panel_id in enumerate(ids):
            owner = (operator_owners[n % len(operator_owners)] if account == OPERATOR_ACCOUNT
                     else int(account.split(":")[1]))
            by_owner.setdefault(owner, []).append(panel_id)
        for owner, panel_ids in by_owner.items():
            await orders.track_orders(db, owner_id=owner, account=account, panel=PANEL,
                                      panel_order_ids=panel_ids, now=created)
    async with transaction(db):  # as if the bot had placed them: their owners hear of changes
        await db.execute("UPDATE orders SET service_id = ?, service_name = 'Instagram Likes',"
                         " service_type = 'Default', service_rate = '0.25',"
                         " service_currency = 'USD', quantity = 1000", (SERVICE,))


async def timed_cycle(deps: Deps, panel: TimedSandbox, now: float) -> Cycle:
    """One poll_orders cycle with its wall time, CPU time (bot, sandbox) and report."""
    requests_before = len(panel.requests_for("status"))
    panel.cpu = 0.0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    report = await poll_orders(deps, now=now)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Cycle(report, wall, cpu - panel.cpu, panel.cpu,
                 len(panel.requests_for("status")) - requests_before)


async def replay_first_look(deps: Deps) -> None:
    """Makes every order look never checked again (for the memory run)."""
    async with transaction(deps.db):
        await deps.db.execute("UPDATE orders SET status = NULL, next_check_at = NULL,"
                              " last_checked_at = NULL")
        await deps.db.execute("DELETE FROM order_status_history")
        await deps.db.execute("DELETE FROM notifications")


def make_deps(tmp: Path, db: Any, panel: TimedSandbox) -> tuple[Deps, PanelClient]:
    """The tracker's dependencies on this database and sandbox."""
    settings = Settings(_env_file=None, BOT_TOKEN="1:bench",  # type: ignore[call-arg]
                        DATABASE_PATH=tmp / "bench.sqlite3", SECRET_KEY=SECRET)
    client = PanelClient(PANEL, transport=panel.transport())
    deps = Deps(settings=settings, db=db, panel=client,
                catalog=Catalog(client, db, ttl=3600), limiter=UserRateLimiter(10),
                panel_url=PANEL, operator_key=DEMO_KEY, demo=True, keybox=KeyBox(SECRET),
                sandbox=panel)
    return deps, client


async def one_size(n_orders: int, n_keys: int, n_users: int, latency: float,
                   schedule_hours: float) -> tuple[Size, dict[str, float] | None]:
    """Seeds `n_orders`, runs the cycles; with `schedule_hours`, the old-orders run too."""
    with tempfile.TemporaryDirectory() as tmp:
        panel = TimedSandbox(keys={DEMO_KEY: Decimal(10**9)}, latency=0.0)
        db = await open_database(Path(tmp) / "bench.sqlite3")
        await add_reader(db, Path(tmp) / "bench.sqlite3")  # as start_services does
        await add_writer(db, Path(tmp) / "bench.sqlite3")
        deps, client = make_deps(Path(tmp), db, panel)
        freeze_start_up()  # as the bot's start-up ends (start_services)
        try:
            now = time.time()
            started = time.perf_counter()
            await seed(deps, panel, n_orders, n_keys, n_users, created=now)
            seeded = time.perf_counter() - started
            panel.latency = latency
            t = now + 1
            looks: list[list[Cycle]] = []
            for _ in range(2):  # twice (the second replayed), the cheaper one counts
                if looks:
                    await replay_first_look(deps)
                looks.append([])
                checked = 0
                while checked < n_orders:  # more than ORDERS_PER_CYCLE: more than one cycle
                    looks[-1].append(await timed_cycle(deps, panel, t))
                    checked += looks[-1][-1].report.checked
                    t += 1
            first = min(looks, key=lambda cycles: sum(c.cpu_bot for c in cycles))
            unchanged = [await timed_cycle(deps, panel, t + n) for n in range(3)]
            await replay_first_look(deps)
            gc.collect()
            tracemalloc.start()
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            await poll_orders(deps, now=t + 10)
            peak = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()
            size = Size(n_orders, first, unchanged, peak, seeded)
            old = None
            if schedule_hours:
                old = await old_orders(deps, panel, t + 100, schedule_hours)
        finally:
            await client.aclose()
            await close_database(db)
            gc.unfreeze()  # as stop_services does
    return size, old


async def old_orders(deps: Deps, panel: TimedSandbox, now: float,
                     hours: float) -> dict[str, float]:
    """Every order over a week old: checked once, then a cycle a minute for `hours` hours."""
    async with transaction(deps.db):
        await deps.db.execute("UPDATE orders SET created_at = ?, next_check_at = NULL",
                              (now - 8 * DAY,))
    active = len(await orders.due_orders(deps.db, due_before=now, panel=PANEL,
                                         accounts=[a for a, _ in keys(100)]))
    checked = 0
    t = now
    while checked < active:
        checked += (await poll_orders(deps, now=t)).checked
        t += MINUTE
    before = len(panel.requests_for("status"))
    cycles = int(hours * 60)
    cpu0 = time.process_time()
    for n in range(cycles):
        await poll_orders(deps, now=t + n * MINUTE)
    cpu = time.process_time() - cpu0
    requests = len(panel.requests_for("status")) - before
    return {"orders": active, "cycles": cycles, "requests": requests,
            "per_cycle": requests / cycles, "cpu_per_cycle": cpu / cycles}


def row(label: str, n_orders: int, cycles: list[Cycle]) -> str:
    """A table row: orders checked, requests, wall, CPU (bot, sandbox), changes, notices."""
    checked = sum(c.report.checked for c in cycles)
    if len(cycles) > 1 and label.startswith("nothing"):  # the median of repeated cycles
        pick = sorted(cycles, key=lambda c: c.cpu_bot)[len(cycles) // 2]
        cycles, checked = [pick], pick.report.checked
    requests = sum(c.requests for c in cycles)
    wall = sum(c.wall for c in cycles)
    cpu = sum(c.cpu_bot for c in cycles)
    sandbox = sum(c.cpu_sandbox for c in cycles)
    changed = sum(c.report.changed for c in cycles)
    notices = sum(c.report.notices for c in cycles)
    return (f"| {n_orders:,} | {label} | {len(cycles)} | {checked:,} | {requests:,} | "
            f"{math.ceil(checked / BATCH_SIZE):,}+ | {wall:.2f} s | {cpu:.2f} s | "
            f"{cpu / max(checked, 1) * 10_000:.2f} s | {sandbox:.2f} s | {changed:,} | "
            f"{notices:,} |")


async def main(sizes: list[int], n_keys: int, n_users: int, latency: float,
               hours: float) -> int:
    """Runs every size, prints the tables and the goals; the exit status."""
    results: list[Size] = []
    old: dict[str, float] | None = None
    await one_size(1_000, n_keys, min(n_users, 100), latency, 0)  # warm-up, not shown
    for n in sizes:
        size, found = await one_size(n, n_keys, n_users, latency,
                                     hours if n == max(sizes) else 0)
        results.append(size)
        old = found or old
    print(f"Tracker cycles: {n_keys} panel keys, {n_users:,} users, sandbox latency "
          f"{latency * 1000:.0f} ms per request; at most {ORDERS_PER_CYCLE:,} orders per "
          f"cycle. Set-up (not timed): " + ", ".join(f"{s.orders:,} orders {s.seeded:.0f} s"
                                                    for s in results) + ".\n")
    print("| active orders | cycle | cycles | orders checked | requests | Σ ceil(n/100) | wall | "
          "CPU (bot) | CPU per 10k | CPU (sandbox, excluded) | changes | notifications "
          "written |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in results:
        print(row("first look: every status new", size.orders, size.first))
        print(row("nothing changed (median of 3)", size.orders, size.unchanged))
    print()
    print("| active orders | first look: CPU per order | memory peak | per order |")
    print("|---:|---:|---:|---:|")
    for size in results:
        print(f"| {size.orders:,} | {size.first_cpu / size.first_checked * 1e6:.0f} µs | "
              f"{size.peak / 2**20:,.1f} MiB | {size.peak / size.orders:,.0f} B |")
    if old is not None:
        print()
        print(f"Old orders: {old['orders']:,.0f} orders over a week old, checked once, then a "
              f"cycle a minute for {old['cycles'] / 60:g} h: {old['requests']:,.0f} status "
              f"requests in {old['cycles']:,.0f} cycles, {old['per_cycle']:.1f} per cycle "
              f"(one per order would be {old['orders']:,.0f}; every order every cycle in "
              f"batches of 100, {math.ceil(old['orders'] / BATCH_SIZE):,}); CPU "
              f"{old['cpu_per_cycle'] * 1000:.1f} ms per cycle.")
    print()
    small, big = results[0], results[-1]
    goals = Goals()
    goals.at_most("first_look_cpu_s_per_10k",
                  max(s.first_cpu / s.first_checked * 10_000 for s in results), 0.5)
    goals.at_most("cpu_per_order_growth",
                  (big.first_cpu / big.first_checked) / (small.first_cpu / small.first_checked),
                  1.3)
    goals.at_most("memory_per_order_growth",
                  (big.peak / big.orders) / (small.peak / small.orders), 1.3)
    if old is not None:
        goals.at_most("old_order_requests_per_cycle_per_order",
                      old["per_cycle"] / old["orders"], 0.001, fmt="{:.5f}")
    return goals.exit_code()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 and 20,000 orders")
    parser.add_argument("--sizes", default=None, help="comma-separated order counts")
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--latency", type=float, default=0.020)
    parser.add_argument("--hours", type=float, default=2.0,
                        help="the old-orders run: hours of one-minute cycles")
    args = parser.parse_args()
    chosen = args.sizes or ("5000,20000" if args.quick else "10000,100000")
    counts = sorted(int(n) for n in chosen.split(","))
    sys.exit(asyncio.run(main(counts, args.keys, args.users, args.latency, args.hours)))
