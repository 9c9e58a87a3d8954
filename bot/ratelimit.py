"""A per-user limit on actions that spend money or hit the panel (sliding one-minute window)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class UserRateLimiter:
    """Allows each user at most `per_minute` panel-hitting actions in any 60 seconds."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._hits: dict[int, deque[float]] = {}

    def try_acquire(self, user_id: int) -> float:
        """Records an action and returns 0, or returns the seconds to wait (nothing recorded)."""
        now = self._clock()
        hits = self._hits.setdefault(user_id, deque())
        while hits and hits[0] <= now - 60:
            hits.popleft()
        if len(hits) >= self.per_minute:
            return max(0.0, hits[0] + 60 - now)
        hits.append(now)
        return 0.0
