"""Benchmark: /status, /refill and /cancelorder with 10 and with 1,000 order ids.

Run from the repository root: `python benchmarks/bench_commands.py [--quick]`.

A demo-mode bot (the real Application, the fake Bot API, the sandbox panel) follows 1,000 orders
placed on the sandbox; an admin sends each command with 10 ids, then with 1,000, twice each:
first every status is new to the bot, then nothing has changed. Counted: the queries (calls into
the database: execute, executemany, fetch), the SQL statements run (SQLite's trace: each row of
an executemany is one), the panel requests, and the time to the reply (Telegram's rate limiter
off: an answer about 1,000 orders is several messages). Prints a table and, per command, the
goal line (exit status 1 when one is missed):

    goal <command>_queries_1000_minus_10_ids: <the larger difference of the two runs> (want <= 0)

`--quick` is the same run (it takes a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_catalog_wizard import telegram_limiter
from goals import Goals

from bot.panel.models import SANDBOX_URL
from bot.panel.sandbox import DEMO_KEY, SandboxPanel
from storage import orders, users
from storage.db import _state as db_state
from storage.db import transaction
from storage.users import OPERATOR_ACCOUNT
from tests.conftest import ADMIN, OTHER, BotHarness, start_harness, stop_harness

COMMANDS = ("status", "refill", "cancelorder")


async def measure(bot: BotHarness, command: str) -> list[tuple[int, int, int, float]]:
    """(queries, statements run, panel requests, milliseconds) of a command sent twice: the
    first time every status is new to the bot (each one written, with its history), the second
    time nothing has changed.

    A query is one call to the database (execute, executemany, fetch): what the number of ids
    must not change. SQLite's trace sees every row of an executemany as a statement run, so a
    status written for each of 1,000 orders (one executemany) is 1,000 of those.
    """
    db = bot.deps.db
    statements: list[str] = []
    calls = [0]
    real = db._execute
    reader = db_state(db).reader  # reads outside transactions: one statement, one query each
    # Writes of one statement outside transactions run on the loop-thread writer (add_writer):
    # one statement, one query each, too.
    writer = db_state(db).writer
    read: list[str] = []

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await real(fn, *args, **kwargs)

    runs = []
    for _ in range(2):
        statements.clear()
        calls[0] = 0
        requests = len(bot.sandbox.requests)
        read.clear()
        await db.set_trace_callback(statements.append)
        for twin in (reader, writer):
            if twin is not None:
                twin.set_trace_callback(read.append)
        db._execute = counted  # type: ignore[method-assign]
        started = time.perf_counter()
        try:
            await bot.send(command, user=ADMIN)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            del db._execute
            await db.set_trace_callback(None)  # type: ignore[arg-type]
            for twin in (reader, writer):
                if twin is not None:
                    twin.set_trace_callback(None)
        runs.append((calls[0] + len(read), len(statements) + len(read),
                     len(bot.sandbox.requests) - requests, elapsed))
    return runs


async def main() -> int:
    """Seeds the orders, runs the commands, prints the table and the goals."""
    logging.basicConfig(level=logging.CRITICAL)
    warnings.simplefilter("ignore")
    rows = []
    goals = Goals()
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = SandboxPanel(keys={DEMO_KEY: Decimal(10**9)}, speed=60)
        bot = await start_harness(Path(tmp), sandbox=sandbox, RATE_LIMIT_PER_MINUTE=10**6)
        telegram_limiter(on=False)  # a long answer is several messages: Telegram's pace aside
        try:
            panel_ids = [int(sandbox.answer({
                "key": DEMO_KEY, "action": "add", "service": "1", "quantity": "100",
                "link": f"https://instagram.com/p/bench-{n}"})["order"]) for n in range(1000)]
            for panel_id in panel_ids:  # held where they are: the two runs see the same
                sandbox.set_status(panel_id, "In progress")
            await users.upsert_user(bot.deps.db, telegram_id=OTHER, name="Other")
            await bot.send("/start", user=ADMIN)  # met already: no first-contact write counted
            for command in COMMANDS:
                runs = []
                for ids in (panel_ids[:10], panel_ids):
                    # Followed afresh each time, so the first run finds every status new.
                    async with transaction(bot.deps.db):
                        await bot.deps.db.execute("DELETE FROM orders")
                    await orders.track_orders(bot.deps.db, owner_id=OTHER,
                                              account=OPERATOR_ACCOUNT, panel=SANDBOX_URL,
                                              panel_order_ids=panel_ids)
                    runs.append(await measure(bot, f"/{command} " + " ".join(map(str, ids))))
                rows.append((command, runs[0], runs[1]))
        finally:
            telegram_limiter(on=True)
            await stop_harness(bot)
    print("Commands with 10 and with 1,000 ids (an admin; 1,000 orders followed, held In "
          "progress on the sandbox). Each is sent twice: first every status is new to the bot "
          "(written, with history), then nothing has changed.\n")
    print("| command | run | queries, 10 / 1,000 ids | statements run, 10 / 1,000 ids | "
          "panel requests, 10 / 1,000 | time, 10 / 1,000 ids |")
    print("|---|---|---:|---:|---:|---:|")
    for command, few, many in rows:
        for run, label in enumerate(("statuses new", "nothing changed")):
            f, m = few[run], many[run]
            print(f"| /{command} | {label} | {f[0]} / {m[0]} | {f[1]} / {m[1]} | "
                  f"{f[2]} / {m[2]} | {f[3]:.0f} / {m[3]:.0f} ms |")
    print()
    for command, few, many in rows:
        goals.at_most(f"{command}_queries_1000_minus_10_ids",
                      max(m[0] - f[0] for f, m in zip(few, many, strict=True)), 0,
                      fmt="{:,.0f}")
    return goals.exit_code()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the same run (a few seconds)")
    parser.parse_args()
    sys.exit(asyncio.run(main()))
