"""Prometheus metrics of the process (`GET /metrics`), in a registry of their own.

The registry is not prometheus-client's global one, so nothing else registered in the process
shows up and in-process tests read values from `REGISTRY` without clashes. Each place that
counts calls one small function here; `render()` produces the text format.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from storage.files import DatabaseFileError, probe

__all__ = ["CONTENT_TYPE", "REGISTRY", "order_outcome", "panel_request", "render",
           "tracker_cycle", "update_handled"]

# The `*_created` timestamp series only double the output; Prometheus does not need them.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY: Final = CollectorRegistry()

OrderOutcome = Literal["placed", "failed", "unknown"]
ORDER_OUTCOMES: Final[tuple[OrderOutcome, ...]] = ("placed", "failed", "unknown")
NOTIFICATION_STATES: Final = ("pending", "sent", "dropped")

UPDATES: Final = Counter(
    "smm_bot_updates", "Telegram updates handled, by kind (message, callback_query, ...)",
    ["kind"], registry=REGISTRY)
UPDATE_SECONDS: Final = Histogram(
    "smm_bot_update_handling_seconds",
    "Time the handlers of one update took (after waiting for its chat's turn), by kind",
    ["kind"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
PANEL_REQUESTS: Final = Counter(
    "smm_bot_panel_requests",
    "Requests to the SMM panel by action and outcome (ok, refused, http_error, timeout, "
    "transport_error, bad_response)", ["action", "outcome"], registry=REGISTRY)
PANEL_SECONDS: Final = Histogram(
    "smm_bot_panel_request_seconds", "Time one panel request took, by action", ["action"],
    registry=REGISTRY, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
TRACKER_CYCLE_SECONDS: Final = Histogram(
    "smm_bot_tracker_cycle_seconds", "Time one tracker cycle took (orders and refills polled)",
    registry=REGISTRY, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
TRACKER_CHECKED: Final = Counter(
    "smm_bot_tracker_checked", "Orders and refills the tracker asked the panel about",
    ["kind"], registry=REGISTRY)
NOTIFICATIONS: Final = Gauge(
    "smm_bot_notifications",
    "Notifications in the outbox by state (pending, sent, dropped = failed for good); "
    "sent and dropped ones are kept 30 days", ["state"], registry=REGISTRY)
ORDERS: Final = Counter(
    "smm_bot_orders", "Orders sent to the panel, by outcome (placed, failed = refused, unknown)",
    ["outcome"], registry=REGISTRY)
DATABASE_UP: Final = Gauge(
    "smm_bot_database_up", "1 when the database file could be opened and read at this scrape",
    registry=REGISTRY)

for _outcome in ORDER_OUTCOMES:
    ORDERS.labels(_outcome)  # shown as 0 before the first order
for _state in NOTIFICATION_STATES:
    NOTIFICATIONS.labels(_state)
for _kind in ("order", "refill"):
    TRACKER_CHECKED.labels(_kind)


def update_handled(kind: str, seconds: float) -> None:
    """One update went through the handlers."""
    UPDATES.labels(kind).inc()
    UPDATE_SECONDS.labels(kind).observe(seconds)


def panel_request(action: str, outcome: str, seconds: float) -> None:
    """One HTTP request to the panel ended."""
    PANEL_REQUESTS.labels(action, outcome).inc()
    PANEL_SECONDS.labels(action).observe(seconds)


def tracker_cycle(seconds: float, *, orders: int, refills: int) -> None:
    """The tracker ended a cycle."""
    TRACKER_CYCLE_SECONDS.observe(seconds)
    TRACKER_CHECKED.labels("order").inc(orders)
    TRACKER_CHECKED.labels("refill").inc(refills)


def order_outcome(outcome: OrderOutcome) -> None:
    """An order's `add` request ended: placed, refused by the panel, or outcome unknown."""
    ORDERS.labels(outcome).inc()


def set_notifications(counts: Mapping[str, int]) -> None:
    """The outbox as it is now (states missing from `counts` have none)."""
    for state in NOTIFICATION_STATES:
        NOTIFICATIONS.labels(state).set(counts.get(state, 0))


async def render(database: Path | None) -> bytes:
    """The text exposition; the outbox gauges are read from the database file first."""
    if database is not None:
        try:
            seen = await asyncio.wait_for(asyncio.to_thread(probe, database), 3.0)
        except (DatabaseFileError, TimeoutError):
            DATABASE_UP.set(0)
        else:
            DATABASE_UP.set(1)
            set_notifications(seen.notifications)
    return generate_latest(REGISTRY)
