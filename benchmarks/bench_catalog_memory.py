"""Benchmark: the catalogue's memory with many users who each connected their own panel key.

Run from the repository root: `python benchmarks/bench_catalog_memory.py [--quick] [--users N]`.

1,000 users (`--quick`: 100), each with their own key on one 5,000-service panel that shows every
key the same list, load their catalogue through the bot's `Catalog` (as /services does: fetched
from the panel, stored in SQLite); a few more keys get their own prices from that panel. Memory is
what tracemalloc counts as still allocated after the loads, next to what one catalogue costs
(measured the same way, first). Prints the figures and the goal lines (exit status 1 when one is
missed):

    goal memory_vs_one_catalogue: <all users' catalogues / one catalogue> (want <= 2)
    goal own_price_catalogues_kept: <keys with their own prices that see them> (want >= <n>)

The panel here is a tiny httpx transport answering from bytes prepared once (the sandbox panel
would spend most of the run building the same 5,000-service answer again); the bot's own work,
parsing the answer, building or finding the index, writing the cache, is all counted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_catalog_wizard import services
from goals import Goals

from bot.catalog import Catalog
from bot.panel.client import PanelClient
from bot.services.accounts import Account
from storage.db import close_database, open_database

PANEL = "https://panel.example/api/v2"
OWN_PRICES = 5  # keys the panel gives their own prices


class OnePanel(httpx.AsyncBaseTransport):
    """A panel with one catalogue for every key, except the keys it gives their own prices."""

    def __init__(self, own_price_keys: set[str]) -> None:
        rows = services()
        self.shared = json.dumps(rows).encode()
        self.own: dict[str, bytes] = {}
        for n, key in enumerate(sorted(own_price_keys)):
            special = [dict(row, rate=f"{Decimal(row['rate']) * (2 + n):.4f}") for row in rows]
            self.own[key] = json.dumps(special).encode()
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answers `services` and `balance`."""
        self.requests += 1
        fields = dict(parse_qsl((await request.aread()).decode()))
        if fields.get("action") == "balance":
            body = b'{"balance": "100.00", "currency": "USD"}'
        else:
            body = self.own.get(fields.get("key", ""), self.shared)
        return httpx.Response(200, content=body, request=request,
                              headers={"content-type": "application/json"})


def key_of(user: int) -> str:
    """User `user`'s own panel key."""
    return f"own-key-of-user-{user:05d}"


def traced() -> int:
    """Bytes tracemalloc counts as allocated now, after a full collection."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def main(n_users: int) -> int:
    """Loads the catalogues, prints the figures and goals; the exit status."""
    special = {key_of(n_users + n) for n in range(1, OWN_PRICES + 1)}
    transport = OnePanel(special)
    with tempfile.TemporaryDirectory() as tmp:
        db = await open_database(Path(tmp) / "bench.sqlite3")
        client = PanelClient(PANEL, transport=transport)
        catalog = Catalog(client, db, ttl=3600)
        accounts = [Account(f"user:{u}", key_of(u), PANEL, own=True)
                    for u in range(1, n_users + OWN_PRICES + 1)]
        try:
            await catalog.get(accounts[0].catalog_key, accounts[0].key)  # warm-up: imports, pools
            await catalog.forget(accounts[0].catalog_key)
            tracemalloc.start()
            base = traced()
            started = time.perf_counter()
            first = await catalog.get(accounts[0].catalog_key, accounts[0].key)
            one = traced() - base
            for account in accounts[1:n_users]:
                await catalog.get(account.catalog_key, account.key)
            everyone = traced() - base
            loaded = time.perf_counter() - started
            for account in accounts[n_users:]:
                await catalog.get(account.catalog_key, account.key)
            with_own = traced() - base
            tracemalloc.stop()
            own_seen = sum(
                1 for account in accounts[n_users:]
                if (index := catalog.cached(account.catalog_key)) is not None
                and index.by_id[1].rate != first.by_id[1].rate)
            distinct = catalog.distinct() if hasattr(catalog, "distinct") else None
        finally:
            await client.aclose()
            await close_database(db)
    mib = 1024 * 1024
    print(f"Catalogue memory: {n_users:,} users with their own keys on one panel "
          f"(5,000 services, the same list for every key), then {OWN_PRICES} keys the panel "
          f"gives their own prices; tracemalloc, after a full collection. Loading the "
          f"{n_users:,} took {loaded:.1f} s (tracemalloc on).\n")
    print("| catalogues loaded | memory | × one catalogue |")
    print("|---|---:|---:|")
    print(f"| one user's | {one / mib:,.1f} MiB | 1.0 |")
    print(f"| {n_users:,} users', identical | {everyone / mib:,.1f} MiB | {everyone / one:,.2f} |")
    print(f"| + {OWN_PRICES} keys with their own prices | {with_own / mib:,.1f} MiB | "
          f"{with_own / one:,.2f} |")
    if distinct is not None:
        print(f"\nDistinct catalogues in memory: {distinct}.")
    print()
    goals = Goals()
    goals.at_most("memory_vs_one_catalogue", everyone / one, 2.0)
    goals.at_least("own_price_catalogues_kept", own_seen, OWN_PRICES, fmt="{:,.0f}")
    return goals.exit_code()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 users instead of 1,000")
    parser.add_argument("--users", type=int, default=None)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.users or (100 if args.quick else 1000))))
