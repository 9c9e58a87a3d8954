"""Health: facts the bot records as it works, and the verdict `GET /healthz` gives from them.

Telegram-free on purpose: the tracker says when a cycle ended (`FACTS.tracker_cycled()`), the
panel client how its last request went (`FACTS.panel_answered(...)`); `assess` turns those and
a look at the database file into a verdict. One `Facts` per process, like the process's metrics.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.files import DatabaseFileError, probe

#: The tracker counts as stalled when its last cycle ended more than this many intervals ago
#: (and at least STALL_MINIMUM seconds): a slow cycle or a skipped one is not yet trouble.
STALL_INTERVALS = 5
STALL_MINIMUM = 120.0
#: The database probe gives up after this long (seconds) and counts as unreachable.
PROBE_TIMEOUT = 3.0


@dataclass
class Facts:
    """What the bot last did, on the monotonic clock (seconds)."""

    started_at: float = field(default_factory=time.monotonic)
    tracker_cycled_at: float | None = None
    panel_reachable: bool | None = None  # None: the panel was not asked yet
    panel_asked_at: float | None = None

    def tracker_cycled(self, now: float | None = None) -> None:
        """The tracker finished a cycle (orders and refills polled, results stored)."""
        self.tracker_cycled_at = time.monotonic() if now is None else now

    def panel_answered(self, reachable: bool, now: float | None = None) -> None:
        """The panel answered in API terms (True: a result or a refusal) or not at all."""
        self.panel_reachable = reachable
        self.panel_asked_at = time.monotonic() if now is None else now


FACTS = Facts()


def stall_after(interval: float) -> float:
    """Seconds without a tracker cycle after which the bot is unhealthy."""
    return max(STALL_INTERVALS * interval, STALL_MINIMUM)


def assess(facts: Facts, *, interval: float, database_error: str | None,
           backlog: int | None, now: float | None = None) -> tuple[bool, dict[str, Any]]:
    """The verdict: (healthy, the JSON body of /healthz).

    Unhealthy when the database cannot be opened and read, or when the tracker has not ended a
    cycle for `stall_after(interval)` seconds (since start-up, before the first one). A panel
    that did not answer is reported but is not a reason: restarting the bot would not bring the
    panel back, and the bot still serves everything else.
    """
    at = time.monotonic() if now is None else now
    problems: list[str] = []
    if database_error is not None:
        problems.append(f"database: {database_error}")
    since_cycle = None if facts.tracker_cycled_at is None else at - facts.tracker_cycled_at
    quiet_for = at - (facts.tracker_cycled_at or facts.started_at)
    limit = stall_after(interval)
    if quiet_for > limit:
        problems.append(f"tracker: no cycle for {quiet_for:.0f} s (limit {limit:.0f} s)")
    body: dict[str, Any] = {
        "status": "ok" if not problems else "unhealthy",
        "database_reachable": database_error is None,
        "seconds_since_tracker_cycle": None if since_cycle is None else round(since_cycle, 1),
        "tracker_interval": interval,
        "outbox_backlog": backlog,
        "panel_reachable": facts.panel_reachable,
        "seconds_since_panel_request": (None if facts.panel_asked_at is None
                                        else round(at - facts.panel_asked_at, 1)),
        "problems": problems,
    }
    return not problems, body


async def check(database: Path, *, interval: float,
                facts: Facts | None = None) -> tuple[bool, dict[str, Any]]:
    """Probes the database file (in a thread, with a deadline), then `assess`."""
    database_error: str | None = None
    backlog: int | None = None
    try:
        seen = await asyncio.wait_for(asyncio.to_thread(probe, database), PROBE_TIMEOUT)
    except DatabaseFileError as exc:
        database_error = str(exc)
    except TimeoutError:
        database_error = f"no answer within {PROBE_TIMEOUT:g} s"
    else:
        backlog = seen.notifications.get("pending", 0)
    return assess(FACTS if facts is None else facts, interval=interval,
                  database_error=database_error, backlog=backlog)
