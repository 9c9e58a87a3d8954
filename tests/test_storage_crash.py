"""A writer killed with SIGKILL mid-way: the file opens cleanly, every reported commit is there."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from storage.db import close_database, fetch_all, fetch_one, open_database
from storage.orders import get_order_by_panel_id

ROOT = Path(__file__).resolve().parents[1]
BATCH = 20

# Alternates single orders (draft -> claim -> placed, three commits) with batches of BATCH
# tracked orders in one transaction, so the kill often lands inside an open transaction.
# A line is printed only after the commit it reports.
CHILD = f"""
import asyncio, sys
from decimal import Decimal
from storage.db import open_database, transaction
from storage.orders import claim_order, save_draft, mark_placed, track_order
from storage.users import upsert_user

async def main(path):
    db = await open_database(path)
    await upsert_user(db, telegram_id=1, name="writer")
    n = 0
    while True:
        n += 1
        draft = await save_draft(
            db, panel="p", owner_id=1, account="operator", service_id=1, service_name="F",
            service_type="Default", rate=Decimal("0.90"), currency="USD", can_refill=True,
            can_cancel=True, fields={{"link": "l", "quantity": "100"}}, quantity=100,
            cost=Decimal("0.09"),
        )
        await claim_order(db, draft, owner_id=1)
        await mark_placed(db, draft, panel_order_id=n)
        print("order", n, flush=True)
        async with transaction(db):
            for k in range({BATCH}):
                await track_order(
                    db, panel="p", owner_id=1, account="user:1", panel_order_id=n * 1000 + k
                )
        print("batch", n, flush=True)

asyncio.run(main(sys.argv[1]))
"""


def _run_and_kill(path: Path, seconds: float) -> list[str]:
    """Starts the writer, kills it with SIGKILL `seconds` after its first commit; its lines."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    first = threading.Event()

    def drain() -> None:
        # Keep the pipe empty so the writer never stalls on print() instead of on SQLite.
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.endswith("\n"):
                lines.append(line.strip())
            first.set()
        first.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert first.wait(20), "the writer never committed"
        time.sleep(seconds)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader.join(10)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    return lines


async def _check(path: Path, lines: list[str]) -> None:
    """Opens the killed writer's file and checks every reported commit."""
    orders_done = [int(line.split()[1]) for line in lines if line.startswith("order ")]
    batches_done = [int(line.split()[1]) for line in lines if line.startswith("batch ")]
    assert orders_done, lines
    db = await open_database(path)
    try:
        integrity = await fetch_one(db, "PRAGMA integrity_check")
        assert integrity is not None and integrity[0] == "ok"
        for n in orders_done:
            order = await get_order_by_panel_id(db, panel="p", account="operator",
                                                panel_order_id=n)
            assert order is not None and order.state == "placed", n
        rows = await fetch_all(
            db,
            "SELECT panel_order_id / 1000, COUNT(*) FROM orders WHERE account = 'user:1'"
            " GROUP BY 1",
        )
        per_batch = {int(r[0]): int(r[1]) for r in rows}
        for n in batches_done:
            assert per_batch.get(n) == BATCH, n
        # A batch is all or nothing, even the one the kill interrupted.
        assert set(per_batch.values()) <= {BATCH}
    finally:
        await close_database(db)


def test_sigkill_mid_way_loses_no_committed_order(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite3"
    lines = _run_and_kill(path, 0.5)
    asyncio.run(_check(path, lines))
