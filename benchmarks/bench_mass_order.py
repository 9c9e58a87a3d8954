"""Benchmark: a 500-line mass order against the sandbox panel answering each request in 200 ms,
sent with the bot's bounded concurrency, next to sending the same lines one at a time.

Run from the repository root: ``python benchmarks/bench_mass_order.py [--quick] [--lines N]
[--latency S]``. Everything runs in-process and through the real Application as deployed
(AIORateLimiter on): the Bot API stand-in (bot/standin/botapi.py) and the sandbox panel.
The timed span is from the Confirm tap to the batch's final message (the result is edited into
the progress message, which waits out the edit pace, so it includes up to one second of it).

``--quick`` sends the one-at-a-time comparison for only 50 lines and scales it to the full
count (one at a time is linear in the lines: 500 × 200 ms is 100 s on its own), so the whole
run stays well under a minute. It prints ``goal <name>: <value> (want <= <x>)`` lines and
exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.panel.sandbox import DEMO_KEY, SandboxPanel
from bot.services import mass_order
from bot.standin.botapi import MAX_TEXT_LENGTH
from tests.conftest import USER, start_harness, stop_harness


@dataclass(frozen=True, slots=True)
class Run:
    """One mass order, measured."""

    lines: int
    concurrency: int
    wall: float  # seconds from Confirm to the final message
    adds: int  # add requests that reached the panel
    panel_requests: int  # every panel request while sending
    bot_calls: int  # Bot API calls while sending
    edits: int  # edits of the progress message
    min_gap: float  # shortest time between two edits of it (s)
    placed: int


def chunks(lines: list[str]) -> list[str]:
    """The lines as a client sends a long paste: messages within Telegram's 4096 characters."""
    out: list[str] = []
    current: list[str] = []
    for line in lines:
        if current and len("\n".join([*current, line])) > MAX_TEXT_LENGTH:
            out.append("\n".join(current))
            current = []
        current.append(line)
    out.append("\n".join(current))
    return out


async def measure(lines: int, concurrency: int, latency: float) -> Run:
    """Places `lines` lines through the bot with `concurrency` adds in flight."""
    saved = mass_order.CONCURRENCY
    mass_order.CONCURRENCY = concurrency
    sandbox = SandboxPanel(keys={DEMO_KEY: Decimal("100000")}, latency=latency)
    with tempfile.TemporaryDirectory() as tmp:
        bot = await start_harness(Path(tmp), sandbox=sandbox)
        try:
            await bot.send("/massorder")
            text = [f"2 | https://instagram.com/p/bench{i} | 100" for i in range(lines)]
            for message in chunks(text):
                await bot.send(message)
            assert f"{lines} of {lines} lines valid" in bot.last().plain, bot.last().plain
            requests_before, calls_before = len(sandbox.requests), len(bot.world.calls)
            started = time.perf_counter()
            await bot.press("Confirm")
            progress = bot.last()
            await mass_order.join(bot.deps)
            wall = time.perf_counter() - started
            shown = bot.world.message(USER, progress.message_id)
            assert shown is not None
            gaps = [b - a for a, b in itertools.pairwise(shown.edit_times)]
            placed = int(shown.plain.split(": ")[1].split(" of ")[0])
            return Run(lines, concurrency, wall, len(sandbox.requests_for("add")),
                       len(sandbox.requests) - requests_before,
                       len(bot.world.calls) - calls_before, len(shown.edit_times),
                       min(gaps) if gaps else float("inf"), placed)
        finally:
            await stop_harness(bot)
            mass_order.CONCURRENCY = saved


def table(bounded: Run, single: Run, scale: float) -> str:
    """The markdown table of the two runs (one at a time scaled to the same line count)."""
    head = ("| sending | lines | in flight | wall | panel requests | add requests | Bot API calls "
            "| progress edits | shortest gap between edits |\n|---|---:|---:|---:|---:|---:|---:|"
            "---:|---:|")
    rows = [head]
    for run, factor, label in ((bounded, 1.0, "bounded concurrency (the bot)"),
                               (single, scale, "one at a time")):
        note = f" (measured {run.lines}, ×{scale:g})" if factor != 1 else ""
        rows.append(f"| {label}{note} | {round(run.lines * factor):,} | {run.concurrency} | "
                    f"{run.wall * factor:.1f} s | {round(run.panel_requests * factor):,} | "
                    f"{round(run.adds * factor):,} | {round(run.bot_calls * factor):,} | "
                    f"{round(run.edits * factor)} | {run.min_gap:.2f} s |")
    return "\n".join(rows)


async def main() -> int:
    """Runs both and prints the table and the goals; 1 when a goal is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one at a time on 50 lines only")
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.2, help="panel answer delay (s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the demo-mode warning of every start
    warnings.filterwarnings("ignore", message="Ignoring `conversation_timeout`")
    warnings.filterwarnings("ignore", message="If 'per_message=False'")
    bounded = await measure(args.lines, mass_order.CONCURRENCY, args.latency)
    single_lines = min(50, args.lines) if args.quick else args.lines
    single = await measure(single_lines, 1, args.latency)
    scale = args.lines / single_lines
    print(table(bounded, single, scale))
    ideal = args.lines * args.latency / mass_order.CONCURRENCY
    goals = [
        ("wall_s", bounded.wall, ideal * 1.5 + 2.0),  # the panel's own time, plus little
        ("wall_vs_one_at_a_time", bounded.wall / (single.wall * scale), 0.2),
        ("add_requests_per_line", bounded.adds / args.lines, 1.0),
        ("panel_requests_per_line", bounded.panel_requests / args.lines, 1.0),
        ("lines_not_placed", args.lines - bounded.placed, 0),
        ("progress_edits_per_second", 1 / bounded.min_gap if bounded.min_gap else 99.0, 1.0),
        ("progress_edits_per_elapsed_second", bounded.edits / bounded.wall, 1.0),
    ]
    missed = 0
    for name, value, want in goals:
        print(f"goal {name}: {value:.3g} (want <= {want:.3g})")
        missed += value > want
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
