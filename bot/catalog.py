"""The services catalogue: cached in memory and in the database, refreshed in the background."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiosqlite

from bot.money import parse_whole
from bot.panel.client import PanelClient
from bot.panel.errors import PanelClientError
from bot.panel.models import Service
from storage import catalog as catalog_store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServiceIndex:
    """One panel account's services, indexed for browsing and search."""

    services: tuple[Service, ...]
    currency: str
    fetched_at: float
    by_id: dict[int, Service] = field(init=False, repr=False)
    categories: tuple[str, ...] = field(init=False, repr=False)
    by_category: dict[str, tuple[Service, ...]] = field(init=False, repr=False)
    _haystack: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_category: dict[str, list[Service]] = {}
        for service in self.services:
            by_category.setdefault(service.category, []).append(service)
        object.__setattr__(self, "by_id", {s.service: s for s in self.services})
        object.__setattr__(self, "categories", tuple(by_category))
        object.__setattr__(
            self, "by_category", {name: tuple(items) for name, items in by_category.items()}
        )
        object.__setattr__(
            self, "_haystack",
            tuple(f"{s.service} {s.name} {s.category} {s.type}".lower() for s in self.services),
        )

    def search(self, query: str) -> list[Service]:
        """Services whose id, name, category or type contain every word; an exact id first."""
        words = query.lower().split()
        if not words:
            return []
        exact: list[Service] = []
        wanted = parse_whole(words[0]) if len(words) == 1 else None
        if wanted is not None and wanted in self.by_id:
            exact.append(self.by_id[wanted])
        found = [
            service
            for service, text in zip(self.services, self._haystack, strict=True)
            if all(word in text for word in words) and (not exact or service is not exact[0])
        ]
        return exact + found

    def to_json(self) -> str:
        """Serialises for the database cache (Decimal as text)."""
        rows = [
            {"service": s.service, "name": s.name, "type": s.type, "category": s.category,
             "rate": str(s.rate), "min": s.min, "max": s.max, "refill": s.refill,
             "cancel": s.cancel, "desc": s.desc}
            | ({} if s.dripfeed is None else {"dripfeed": s.dripfeed})
            for s in self.services
        ]
        return json.dumps({"currency": self.currency, "services": rows})

    @classmethod
    def from_json(cls, payload: str, fetched_at: float) -> ServiceIndex:
        """Reads what `to_json` wrote."""
        data: dict[str, Any] = json.loads(payload, parse_float=Decimal)
        services = [Service.from_api(row) for row in data.get("services", [])]
        return cls(tuple(s for s in services if s is not None), str(data.get("currency", "")),
                   fetched_at)


class Catalog:
    """Gives each panel account's catalogue from memory; the panel is asked only when stale."""

    def __init__(self, panel: PanelClient, db: aiosqlite.Connection, *, ttl: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._panel = panel
        self._db = db
        self._ttl = ttl
        self._clock = clock
        self._memory: dict[str, ServiceIndex] = {}
        self._fetching: dict[str, asyncio.Task[ServiceIndex]] = {}

    async def get(self, account_id: str, key: str) -> ServiceIndex:
        """The catalogue of an account; fetched only the first time, refreshed in the background.

        Raises PanelClientError only when there is no copy at all and the panel fails.
        """
        index = self._memory.get(account_id)
        if index is None:
            stored = await catalog_store.load_services(self._db, source=account_id)
            if stored is not None:
                index = ServiceIndex.from_json(stored.payload_json, stored.fetched_at)
                self._memory[account_id] = index
        if index is None:
            return await self._fetch(account_id, key)
        if self._clock() - index.fetched_at > self._ttl and account_id not in self._fetching:
            self._start_fetch(account_id, key)
        return index

    async def forget(self, account_id: str) -> None:
        """Drops an account's copy (its key changed: another account may see other services or
        prices); the next look fetches it anew."""
        self._memory.pop(account_id, None)
        await catalog_store.clear_services(self._db, source=account_id)

    def cached(self, account_id: str) -> ServiceIndex | None:
        """The in-memory catalogue, if any, without asking anyone."""
        return self._memory.get(account_id)

    async def refresh(self, account_id: str, key: str) -> ServiceIndex:
        """Fetches the catalogue now (joins a fetch already under way)."""
        return await self._fetch(account_id, key)

    def _start_fetch(self, account_id: str, key: str) -> asyncio.Task[ServiceIndex]:
        """Starts one fetch for the account unless one is running."""
        task = self._fetching.get(account_id)
        if task is None:
            task = asyncio.create_task(self._do_fetch(account_id, key))
            self._fetching[account_id] = task
            task.add_done_callback(lambda _t: self._fetching.pop(account_id, None))
            task.add_done_callback(_log_failure)
        return task

    async def _fetch(self, account_id: str, key: str) -> ServiceIndex:
        """Waits for a fetch of the account's catalogue."""
        return await asyncio.shield(self._start_fetch(account_id, key))

    async def _do_fetch(self, account_id: str, key: str) -> ServiceIndex:
        """Asks the panel for the services (and the currency), stores them in memory and db."""
        services: Sequence[Service] = await self._panel.services(key)
        try:
            currency = (await self._panel.balance(key)).currency
        except PanelClientError:
            previous = self._memory.get(account_id)
            currency = previous.currency if previous else ""
        index = ServiceIndex(tuple(services), currency, self._clock())
        self._memory[account_id] = index
        await catalog_store.save_services(
            self._db, source=account_id, payload_json=index.to_json(), fetched_at=index.fetched_at
        )
        log.info("Catalogue of %s refreshed: %d services", account_id, len(services))
        return index


def _log_failure(task: asyncio.Task[ServiceIndex]) -> None:
    """Logs a failed background refresh (the stale copy keeps serving)."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("Catalogue refresh failed: %s", task.exception())
