"""The services catalogue: cached in memory and in the database, refreshed in the background.

Each panel account (``Account.catalog_key``: its panel and key) has its own catalogue, because a
panel may give a key its own services and prices. But most keys of one panel see the very same
list, and a 5,000-service catalogue with its search index is megabytes: so identical catalogues
are one object in memory, and one row in the database cache. A catalogue is known by a hash of
the panel's answer (every field of every service, as sent) and the currency: accounts whose
panel answers alike share one `ServiceIndex`, parsed once; one that differs in any price or
field gets its own. Each account keeps its own fetch time, so each refreshes on its own
schedule.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import marshal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiosqlite

from bot.money import parse_whole
from bot.panel.client import PanelClient, parse_services
from bot.panel.errors import PanelClientError
from bot.panel.models import Service
from storage import catalog as catalog_store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServiceIndex:
    """One panel account's services, indexed for browsing and search."""

    services: tuple[Service, ...]
    currency: str
    fetched_at: float  # when this content was first fetched (each account's time: Catalog)
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
        return services_json(self.services, self.currency)

    @classmethod
    def from_json(cls, payload: str, fetched_at: float) -> ServiceIndex:
        """Reads what `to_json` wrote."""
        data: dict[str, Any] = json.loads(payload, parse_float=Decimal)
        services = [Service.from_api(row) for row in data.get("services", [])]
        return cls(tuple(s for s in services if s is not None), str(data.get("currency", "")),
                   fetched_at)


def services_json(services: Sequence[Service], currency: str) -> str:
    """A service list as the database cache stores it (Decimal as text)."""
    rows = [
        {"service": s.service, "name": s.name, "type": s.type, "category": s.category,
         "rate": str(s.rate), "min": s.min, "max": s.max, "refill": s.refill,
         "cancel": s.cancel, "desc": s.desc}
        | ({} if s.dripfeed is None else {"dripfeed": s.dripfeed})
        for s in services
    ]
    return json.dumps({"currency": currency, "services": rows})


def content_key(currency: str, rows: Any) -> str:
    """What identifies a catalogue: a hash of the panel's rows as it sent them, and the
    currency. The same answer to two keys is the same catalogue; any other difference (a price,
    a field, the order of the list) makes it another one."""
    # marshal, not json.dumps: the same exact bytes for equal JSON values (types, dict order and
    # all) at a fraction of the cost, for a list every refresh of every key hashes. Version 2
    # writes no back-references, so the bytes never depend on which objects happen to be shared.
    try:
        data = marshal.dumps([currency, rows], 2)
    except ValueError:  # not plain JSON values (never from a panel's answer)
        data = json.dumps([currency, rows], ensure_ascii=False, separators=(",", ":"),
                          default=str).encode()
    return hashlib.sha256(data).hexdigest()


#: The database cache: a catalogue's content is stored once, as the row CONTENT + its content
#: key; each account's row only names that content ({"content": key}). Rows written before
#: catalogues were shared hold the list itself, and are still read.
CONTENT = "content:"


def _reference(content: str) -> str:
    """An account's cache row: the name of the content it sees."""
    return json.dumps({"content": content})


def _referenced(payload_json: str) -> str | None:
    """The content an account's cache row names, or None for a row holding the list itself."""
    if not payload_json.startswith('{"content"'):
        return None
    value = json.loads(payload_json).get("content")
    return value if isinstance(value, str) else None


class Catalog:
    """Gives each panel account's catalogue from memory; the panel is asked only when stale.

    Accounts whose panel answers with the same list share one `ServiceIndex` (see the module
    docstring); an index nobody holds any more is dropped, in memory and in the database.
    """

    def __init__(self, panel: PanelClient, db: aiosqlite.Connection, *, ttl: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._panel = panel
        self._db = db
        self._ttl = ttl
        self._clock = clock
        self._memory: dict[str, ServiceIndex] = {}  # account -> its catalogue (maybe shared)
        self._fetched: dict[str, float] = {}  # account -> when its copy was fetched
        self._content: dict[str, str] = {}  # account -> the content key of its catalogue
        self._shared: dict[str, ServiceIndex] = {}  # content key -> the one index of it
        self._holders: dict[str, int] = {}  # content key -> how many accounts hold it
        self._fetching: dict[str, asyncio.Task[ServiceIndex]] = {}

    async def get(self, account_id: str, key: str) -> ServiceIndex:
        """The catalogue of an account; fetched only the first time, refreshed in the background.

        Raises PanelClientError only when there is no copy at all and the panel fails.
        """
        index = self._memory.get(account_id)
        if index is None:
            index = await self._load(account_id)
        if index is None:
            return await self._fetch(account_id, key)
        if (self._clock() - self._fetched[account_id] > self._ttl
                and account_id not in self._fetching):
            self._start_fetch(account_id, key)
        return index

    async def forget(self, account_id: str) -> None:
        """Drops an account's copy (its key changed: another account may see other services or
        prices); the next look fetches it anew."""
        stored = await catalog_store.load_services(self._db, source=account_id)
        self._release(account_id)
        await catalog_store.clear_services(self._db, source=account_id)
        if stored is not None and (content := _referenced(stored.payload_json)) is not None:
            await self._prune(content)

    def cached(self, account_id: str) -> ServiceIndex | None:
        """The in-memory catalogue, if any, without asking anyone."""
        return self._memory.get(account_id)

    def distinct(self) -> int:
        """How many different catalogues are in memory (accounts sharing one count once)."""
        return len(self._shared)

    async def refresh(self, account_id: str, key: str) -> ServiceIndex:
        """Fetches the catalogue now (joins a fetch already under way)."""
        return await self._fetch(account_id, key)

    # -- sharing -------------------------------------------------------------------------------

    def _keep(self, account_id: str, content: str, fetched_at: float,
              build: Callable[[], ServiceIndex]) -> ServiceIndex:
        """Makes this content the account's catalogue: the index already held for identical
        content if there is one (`build` is not even called), else the one `build` makes."""
        if self._content.get(account_id) != content:
            self._release(account_id)
            index = self._shared.get(content)
            if index is None:
                index = self._shared[content] = build()
            self._holders[content] = self._holders.get(content, 0) + 1
            self._content[account_id] = content
            self._memory[account_id] = index
        self._fetched[account_id] = fetched_at
        return self._memory[account_id]

    def _release(self, account_id: str) -> None:
        """The account no longer holds its catalogue; one nobody holds is dropped."""
        self._memory.pop(account_id, None)
        self._fetched.pop(account_id, None)
        content = self._content.pop(account_id, None)
        if content is None:
            return
        left = self._holders[content] - 1
        if left:
            self._holders[content] = left
        else:
            del self._holders[content]
            del self._shared[content]

    async def _load(self, account_id: str) -> ServiceIndex | None:
        """The account's catalogue from the database cache (after a restart), if there is one."""
        stored = await catalog_store.load_services(self._db, source=account_id)
        if stored is None:
            return None
        content, payload = _referenced(stored.payload_json), stored.payload_json
        if content is None:  # written before catalogues were shared: the list itself
            content = hashlib.sha256(payload.encode()).hexdigest()
        elif content not in self._shared:
            row = await catalog_store.load_services(self._db, source=CONTENT + content)
            if row is None:
                return None
            payload = row.payload_json
        return self._keep(account_id, content, stored.fetched_at,
                          lambda: ServiceIndex.from_json(payload, stored.fetched_at))

    async def _prune(self, content: str) -> None:
        """Deletes a stored content that no account's row names any more."""
        if content in self._shared:
            return
        if not await catalog_store.count_payload(self._db, payload_json=_reference(content)):
            await catalog_store.clear_services(self._db, source=CONTENT + content)

    # -- fetching ------------------------------------------------------------------------------

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
        """Asks the panel for the services (and the currency), stores them in memory and db;
        a list this bot holds already (another key's) is neither parsed nor stored again."""
        rows: Sequence[Any] = await self._panel.service_rows(key)
        try:
            currency = (await self._panel.balance(key)).currency
        except PanelClientError:
            previous = self._memory.get(account_id)
            currency = previous.currency if previous else ""
        fetched_at = self._clock()
        content = content_key(currency, rows)
        before = self._content.get(account_id)
        new = content not in self._shared
        index = self._keep(account_id, content, fetched_at, lambda: ServiceIndex(
            tuple(parse_services(rows)), currency, fetched_at))
        if new and not await catalog_store.has_services(self._db, source=CONTENT + content):
            await catalog_store.save_services(self._db, source=CONTENT + content,
                                              payload_json=index.to_json(),
                                              fetched_at=fetched_at)
        await catalog_store.save_services(self._db, source=account_id,
                                          payload_json=_reference(content),
                                          fetched_at=fetched_at)
        if before is not None and before != content:
            await self._prune(before)
        log.info("Catalogue of %s refreshed: %d services", account_id, len(index.services))
        return index


def _log_failure(task: asyncio.Task[ServiceIndex]) -> None:
    """Logs a failed background refresh (the stale copy keeps serving)."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("Catalogue refresh failed: %s", task.exception())
