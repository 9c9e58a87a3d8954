"""A per-user limit on actions that spend money or hit the panel (sliding one-minute window).

The rule: a user may start at most `RATE_LIMIT_PER_MINUTE` panel-hitting actions (placing an
order, /balance, /status, refresh, refill, cancel, /connect's key check, /stats…) in any 60
seconds. The next one is refused with how long to wait, and is not counted: waiting is enough.
Catalogue browsing served from the cache does not count. Handlers call
`bot.handlers.common.within_rate_limit` right before the panel request a user triggers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW = 60.0


class UserRateLimiter:
    """Allows each user at most `per_minute` panel-hitting actions in any 60 seconds."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute = per_minute
        self._clock = clock
        self._hits: dict[int, deque[float]] = {}
        self._pruned_at = clock()

    def try_acquire(self, user_id: int) -> float:
        """Records an action and returns 0, or returns the seconds to wait (nothing recorded)."""
        now = self._clock()
        hits = self._hits.setdefault(user_id, deque())
        while hits and hits[0] <= now - WINDOW:
            hits.popleft()
        if len(hits) >= self.per_minute:
            return max(0.0, hits[0] + WINDOW - now)
        hits.append(now)
        if now - self._pruned_at > WINDOW:
            self._forget_idle(now)
        return 0.0

    def _forget_idle(self, now: float) -> None:
        """Drops users with no action in the window, so the table does not grow forever."""
        self._pruned_at = now
        for user_id in [u for u, h in self._hits.items() if not h or h[-1] <= now - WINDOW]:
            del self._hits[user_id]
