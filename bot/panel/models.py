"""What the panel sends back, parsed leniently into typed values (money as Decimal)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from bot.money import to_decimal, to_int

#: The built-in sandbox panel's URL: demo mode is just this panel (orders record it like any).
SANDBOX_URL = "https://sandbox.invalid/api/v2"

# Canonical status names; every spelling a panel uses is mapped onto one of these.
PENDING = "Pending"
IN_PROGRESS = "In progress"
PROCESSING = "Processing"
COMPLETED = "Completed"
PARTIAL = "Partial"
CANCELED = "Canceled"
REFUNDED = "Refunded"
FAILED = "Failed"
REJECTED = "Rejected"

_STATUS_ALIASES = {
    "pending": PENDING,
    "awaiting": PENDING,
    "inprogress": IN_PROGRESS,
    "active": IN_PROGRESS,
    "processing": PROCESSING,
    "completed": COMPLETED,
    "complete": COMPLETED,
    "done": COMPLETED,
    "success": COMPLETED,
    "partial": PARTIAL,
    "canceled": CANCELED,
    "cancelled": CANCELED,
    "refunded": REFUNDED,
    "refund": REFUNDED,
    "fail": FAILED,
    "failed": FAILED,
    "error": FAILED,
    "rejected": REJECTED,
}

# An order in one of these will not change any more (refills: Completed or Rejected).
FINAL_ORDER_STATUSES = frozenset({COMPLETED, PARTIAL, CANCELED, REFUNDED, FAILED})
FINAL_REFILL_STATUSES = frozenset({COMPLETED, REJECTED, CANCELED, FAILED, REFUNDED})


def normalize_status(raw: object) -> str:
    """Maps "Cancelled", "In Progress", "IN_PROGRESS"… to one canonical spelling."""
    return _normalize(str(raw or ""))


@functools.lru_cache(maxsize=1024)  # a panel uses a handful of spellings, thousands of times
def _normalize(raw: str) -> str:
    text = raw.strip()
    key = re.sub(r"[^a-z]", "", text.lower())
    return _STATUS_ALIASES.get(key, text.capitalize() if text else PENDING)


def to_bool(value: object) -> bool:
    """Reads true/"1"/1/"yes" as True, anything else as False."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "y", "on"}
    return False


@dataclass(frozen=True, slots=True)
class Service:
    """One entry of `action=services`; `rate` is per 1000 units."""

    service: int
    name: str
    type: str
    category: str
    rate: Decimal
    min: int
    max: int
    refill: bool = False
    cancel: bool = False
    dripfeed: bool | None = None  # None: the panel does not say (drip-feed is then offered)
    desc: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Service | None:
        """Builds a Service from a panel row, or None when the row is unusable."""
        service_id = to_int(data.get("service"))
        rate = to_decimal(data.get("rate"))
        if service_id is None or rate is None:
            return None
        known = {"service", "name", "type", "category", "rate", "min", "max", "refill",
                 "cancel", "dripfeed", "desc", "description"}
        return cls(
            service=service_id,
            name=str(data.get("name") or f"Service {service_id}").strip(),
            type=str(data.get("type") or "Default").strip(),
            category=str(data.get("category") or "Other").strip(),
            rate=rate,
            min=to_int(data.get("min")) or 1,
            max=to_int(data.get("max")) or 1_000_000_000,
            refill=to_bool(data.get("refill")),
            cancel=to_bool(data.get("cancel")),
            dripfeed=to_bool(data["dripfeed"]) if "dripfeed" in data else None,
            desc=str(data.get("desc") or data.get("description") or "").strip(),
            extra={k: v for k, v in data.items() if k not in known},
        )


class OrderStatus(NamedTuple):
    """The panel's view of one order (`action=status`). A named tuple: the tracker makes one per
    order it checks, and a frozen dataclass cost more than twice as much to build."""

    status: str
    charge: Decimal | None = None
    start_count: int | None = None
    remains: int | None = None
    currency: str = ""

    @property
    def is_final(self) -> bool:
        """True once the order cannot change any more."""
        return self.status in FINAL_ORDER_STATUSES

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> OrderStatus:
        """Builds an OrderStatus from a panel answer (numbers as strings or numbers)."""
        get = data.get
        status = get("status")
        currency = get("currency")
        return cls(  # positional, and the usual strings read directly: one per order tracked
            _normalize(status) if type(status) is str else normalize_status(status),
            to_decimal(get("charge")),
            to_int(get("start_count")),
            to_int(get("remains")),
            currency.strip() if type(currency) is str else str(currency or "").strip(),
        )


@dataclass(frozen=True, slots=True)
class Balance:
    """The account balance (`action=balance`)."""

    balance: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class ItemError:
    """A per-id error inside a batch answer, e.g. `{"error": "Incorrect order ID"}`."""

    error: str


@dataclass(frozen=True, slots=True)
class RefillResult:
    """The outcome of a refill request for one order: a refill id or the panel's error."""

    order: int
    refill: int | None = None
    error: str | None = None
    unknown: bool = False  # the answer never came: the refill may have been requested


@dataclass(frozen=True, slots=True)
class CancelResult:
    """The outcome of a cancel request for one order."""

    order: int
    ok: bool
    error: str | None = None
    unknown: bool = False  # the answer never came: the cancel may have been carried out
