"""Benchmark of one tracker cycle: 10,000 active orders, 1,000 users, 3 panel keys, 20 ms panel.

Run: ``python benchmarks/bench_tracker.py [--orders N] [--users N] [--latency S]``.

What is timed is ``bot.services.tracking.poll_orders``: select the due orders, ask the panel in
batches of 100 ids, write every batch (status changes + history + outbox, the rest in one
statement) in one transaction. Sending is a separate job, throttled by Telegram's own limits
(about 30 messages a second), so it is not part of a cycle's cost; the notifications *written*
are counted.

The sandbox panel runs in this process, so its own work (answering 100 requests over 10,000
orders) would be counted as ours: it is measured separately (thread CPU time inside
``SandboxPanel.answer``) and shown apart. Orders are placed straight through the sandbox's
``answer`` (no HTTP) to keep the set-up short.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.catalog import Catalog
from bot.config import Settings
from bot.crypto import KeyBox
from bot.deps import Deps
from bot.panel.client import BATCH_SIZE, PanelClient
from bot.panel.models import SANDBOX_URL as PANEL
from bot.panel.sandbox import DEMO_KEY, SANDBOX_URL, SandboxPanel
from bot.ratelimit import UserRateLimiter
from bot.services.accounts import keyed_accounts
from bot.services.tracking import CycleReport, poll_orders
from storage import orders, users
from storage.db import close_database, open_database, transaction
from storage.users import OPERATOR_ACCOUNT, user_account

SECRET = "benchmark-secret-key-not-for-production"
OWN_KEYS = {1: "own-key-of-user-1", 2: "own-key-of-user-2"}  # users 1 and 2 use their own keys
SERVICE = 2  # Instagram Likes, 0.25 per 1000


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

    def seed(self, key: str, count: int, quantity: int = 1000) -> list[int]:
        """Places `count` orders of `key` and holds them In progress (they move when told to)."""
        ids = []
        for _ in range(count):
            answer = super().answer({
                "key": key, "action": "add", "service": str(SERVICE),
                "link": f"https://instagram.com/p/{len(self.requests)}-{len(ids)}",
                "quantity": str(quantity),
            })
            ids.append(int(answer["order"]))
            # Held: it would otherwise move with the clock, and every request re-checks every
            # order that moves by itself (quadratic at this size).
            self.set_status(ids[-1], "In progress")
        return ids


async def seed(deps: Deps, panel: TimedSandbox, n_orders: int, n_users: int) -> dict[str, int]:
    """Users, keys and orders: the operator's account plus two users' own; orders per account."""
    db = deps.db
    assert deps.keybox is not None
    async with transaction(db):
        for telegram_id in range(1, n_users + 1):
            await users.upsert_user(db, telegram_id=telegram_id, name=f"User {telegram_id}")
        for telegram_id, key in OWN_KEYS.items():
            panel.add_key(key, Decimal(10**6))
            await users.set_panel_key(db, telegram_id, deps.keybox.encrypt(key))
    accounts = [(OPERATOR_ACCOUNT, DEMO_KEY)] + [(user_account(u), k) for u, k in OWN_KEYS.items()]
    per_account = Counter[str]()
    operator_owners = list(range(len(OWN_KEYS) + 1, n_users + 1))
    async with transaction(db):  # one transaction: set-up speed only, not what is measured
        for index, (account, key) in enumerate(accounts):
            count = n_orders // len(accounts) + (index < n_orders % len(accounts))
            for n, panel_id in enumerate(panel.seed(key, count)):
                owner = (operator_owners[n % len(operator_owners)] if account == OPERATOR_ACCOUNT
                         else int(account.split(":")[1]))
                local = await orders.save_draft(
                    db, panel=PANEL, owner_id=owner, account=account, service_id=SERVICE,
                    service_name="Instagram Likes", service_type="Default",
                    rate=Decimal("0.25"), currency="USD", can_refill=False, can_cancel=True,
                    fields={"link": f"https://instagram.com/p/{panel_id}", "quantity": "1000"},
                    quantity=1000, cost=Decimal("0.25"),
                )
                await orders.claim_order(db, local, owner_id=owner)
                await orders.mark_placed(db, local, panel_order_id=panel_id)
            per_account[account] = count
    return dict(per_account)


async def timed_cycle(deps: Deps, panel: TimedSandbox, now: float) -> dict[str, Any]:
    """One poll_orders cycle with its wall time, CPU time (bot, sandbox) and report."""
    due = Counter(o.account for o in await orders.due_orders(
        deps.db, due_before=now, panel=deps.panel_url, accounts=await keyed_accounts(deps)))
    expected = sum(math.ceil(n / BATCH_SIZE) for n in due.values())
    requests_before = len(panel.requests_for("status"))
    panel.cpu = 0.0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    report: CycleReport = await poll_orders(deps, now=now)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "report": report,
        "wall": wall,
        "cpu_bot": cpu - panel.cpu,
        "cpu_sandbox": panel.cpu,
        "requests": len(panel.requests_for("status")) - requests_before,
        "expected": expected,
        "due": sum(due.values()),
    }


def change_some(panel: TimedSandbox, ids: list[int], share: float, step: int) -> int:
    """Moves a share of the still-running orders on: completed, partial or canceled."""
    moved = 0
    endings = ("Completed", "Completed", "Completed", "Partial", "Canceled")
    for n, panel_id in enumerate(ids[: int(len(ids) * share)]):
        ending = endings[(n + step) % len(endings)]
        remains = 157 if ending == "Partial" else None
        panel.set_status(panel_id, ending, remains=remains)
        moved += 1
    del ids[:moved]
    return moved


async def main(n_orders: int, n_users: int, latency: float) -> None:
    """Seeds, runs the cycles, prints the table."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, BOT_TOKEN="1:bench",  # type: ignore[call-arg]
                            DATABASE_PATH=Path(tmp) / "bench.sqlite3", SECRET_KEY=SECRET)
        panel = TimedSandbox(keys={DEMO_KEY: Decimal(10**6)}, latency=0.0)
        db = await open_database(settings.database_path)
        client = PanelClient(SANDBOX_URL, transport=panel.transport())
        deps = Deps(settings=settings, db=db, panel=client,
                    catalog=Catalog(client, db, ttl=3600), limiter=UserRateLimiter(10),
                    panel_url=SANDBOX_URL, operator_key=DEMO_KEY, demo=True,
                    keybox=KeyBox(SECRET), sandbox=panel)
        try:
            started = time.perf_counter()
            per_account = await seed(deps, panel, n_orders, n_users)
            seeded = time.perf_counter() - started
            panel.latency = latency
            expected = sum(math.ceil(n / BATCH_SIZE) for n in per_account.values())
            running = [o["order"] for o in panel.orders_of(DEMO_KEY)]
            for key in OWN_KEYS.values():
                running += [o["order"] for o in panel.orders_of(key)]
            now = time.time()
            rows: list[tuple[str, list[dict[str, Any]]]] = []
            rows.append(("first look: every status new",
                         [await timed_cycle(deps, panel, now + 1)]))
            rows.append(("nothing changed (median of 5)",
                         [await timed_cycle(deps, panel, now + 2 + n) for n in range(5)]))
            for step in range(3):
                moved = change_some(panel, running, 0.10, step)
                rows.append((f"10% finished ({moved:,} orders)",
                             [await timed_cycle(deps, panel, now + 10 + step)]))
            rows.append(("nothing changed (median of 5)",
                         [await timed_cycle(deps, panel, now + 20 + n) for n in range(5)]))
        finally:
            await client.aclose()
            await close_database(db)

    print(f"Tracker cycle: {n_orders:,} active orders, {n_users:,} users, "
          f"{len(per_account)} panel keys "
          f"({', '.join(f'{n:,}' for n in per_account.values())} orders), "
          f"sandbox latency {latency * 1000:.0f} ms per request; set-up {seeded:.1f} s.")
    print(f"Expected requests for {n_orders:,} orders: Σ ceil(orders per key / 100) = "
          f"{expected} (one request per order would be {n_orders:,}).\n")
    print("| cycle | active orders | requests | Σ ceil(n/100) | one per order | wall | "
          "CPU (bot) | CPU (sandbox, excluded) | changes | notifications written |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, runs in rows:
        row = {k: statistics.median(r[k] for r in runs)
               for k in ("wall", "cpu_bot", "cpu_sandbox")}
        last = runs[-1]
        report: CycleReport = last["report"]
        print(f"| {label} | {last['due']:,} | {last['requests']} | {last['expected']} | "
              f"{last['due']:,} | {row['wall']:.2f} s | {row['cpu_bot']:.2f} s | "
              f"{row['cpu_sandbox']:.2f} s | {report.changed:,} | {report.notices:,} |")
        for run in runs:
            assert run["requests"] == run["expected"], (run["requests"], run["expected"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--latency", type=float, default=0.020)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.users, args.latency))
