"""Placeholder: the status tracker job (filled in by the tracking work)."""

from __future__ import annotations

from typing import Any


def schedule(app: Any) -> None:
    """Schedules the tracker jobs on the application's JobQueue."""
