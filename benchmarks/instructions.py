"""Instructions per update of the order wizard and of the bare echo bot, counted by valgrind.

Run from the repository root: `python benchmarks/instructions.py [--orders N]` (needs valgrind;
about three minutes on the 2-core machine). Prints, for each bot, the instructions one update
costs: the difference between a run that feeds N orders (5 N updates; the echo bot as many
updates) and one that feeds none, divided by 5 N, so start-up and warm-up cancel out.

Why: the shared machines' speed swings by 1.5-2x from one minute to the next, more than most
changes to the bot move its time, so two trees timed one after the other tell little.
Instruction counts are the same from run to run (PYTHONHASHSEED is fixed) and show a change of
1 % plainly. They leave out what the instructions wait on (caches, branch mispredictions: the
wizard takes ~2x the echo bot's time per instruction), so they rank changes, not hosts.

Compare trees in the same state: one without `__pycache__` (PYTHONDONTWRITEBYTECODE=1 is set on
these machines) compiles every module at start-up; both runs of a tree pay that alike, so the
difference per update is still right. `--tree DIR` measures another checkout (a `git worktree`)
with this script. `--without NAMES` switches some of the bot's promises off first, as
`bench_catalog_wizard.py --without` does, to count what they cost.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve()


def run_counted(tree: Path, bot: str, count: int, without: str) -> int:
    """Instructions valgrind counts for one run of `bot` ("wizard" or "echo") feeding `count`
    orders or updates, with the promises `without` (comma-separated) switched off."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
             str(HERE), "--drive", bot, str(count), "--tree", str(tree), "--without", without],
            env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected\s*:\s*([\d,]+)", done.stderr)
    if found is None:
        raise RuntimeError(f"valgrind said no count:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


async def drive(tree: Path, bot: str, count: int, without: str) -> None:
    """The counted program: a bot started, warmed up, then fed `count` orders or updates."""
    sys.path[:0] = [str(tree / "benchmarks"), str(tree)]
    import bench_catalog_wizard as bench

    if without:  # (a tree from before `--without` has no switch_off)
        bench.switch_off(bench.promises(without))

    from bot.panel.sandbox import DEMO_KEY, SandboxPanel
    from tests.conftest import start_harness, stop_harness

    with tempfile.TemporaryDirectory() as tmp:
        sandbox = SandboxPanel(keys={DEMO_KEY: Decimal("1000000000")}, speed=60,
                               services=bench.services(500))
        harness = await start_harness(Path(tmp), sandbox=sandbox, RATE_LIMIT_PER_MINUTE=10**6)
        try:
            bench.telegram_limiter(on=False)
            await bench.wizard_rate(harness, 10, "warm-up", first_user=50_000)
            echo = bench.EchoBot()
            await echo.app.initialize()
            await echo.seconds(50)
            if bot == "wizard" and count:
                await bench.wizard_rate(harness, count, "counted", first_user=100_000)
            elif bot == "echo" and count:
                await echo.seconds(count)
            await echo.app.shutdown()
        finally:
            await stop_harness(harness)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200, help="orders counted (default 200)")
    parser.add_argument("--tree", type=Path, default=HERE.parent.parent,
                        help="the checkout to measure (default: this one)")
    parser.add_argument("--without", default="",
                        help="promises switched off (see bench_catalog_wizard.py --without)")
    parser.add_argument("--drive", nargs=2, metavar=("BOT", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    tree = args.tree.resolve()
    if args.drive:
        asyncio.run(drive(tree, args.drive[0], int(args.drive[1]), args.without))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt install valgrind)")
        return 2
    updates = 5 * args.orders
    runs = {("wizard", 0): 0, ("wizard", args.orders): 0, ("echo", updates): 0}
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        counted = {run: pool.submit(run_counted, tree, *run, args.without) for run in runs}
        base = counted[("wizard", 0)].result()  # the same start-up and warm-up in every run
        wizard = (counted[("wizard", args.orders)].result() - base) / updates
        echo = (counted[("echo", updates)].result() - base) / updates
    off = f", without {args.without}" if args.without else ""
    print(f"| {tree}{off} | instructions per update |")
    print("|---|---|")
    print(f"| order wizard ({args.orders} full orders, limiter off) | {wizard / 1e6:.3f} M |")
    print(f"| bare echo bot ({updates} updates) | {echo / 1e6:.3f} M |")
    print(f"| ratio echo / wizard | {echo / wizard:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
