"""An in-memory SMM panel speaking API v2, reached in-process through an httpx transport."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import heapq
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

from bot.money import order_cost, to_decimal, to_int
from bot.panel.models import SANDBOX_URL as SANDBOX_URL  # re-exported: the sandbox's address

log = logging.getLogger(__name__)

DEMO_KEY = "demo"
FIRST_ORDER_ID = 23501
FIRST_REFILL_ID = 1
MAX_IDS = 100
STATE_VERSION = 1
# Ids handed out after a lost state file start at tenths of a second since this instant (2024-01-01
# UTC): above every id given before, as long as nobody orders more than ten times a second.
_ID_EPOCH = 1_704_067_200

# The texts real panels send, word for word.
ERR_KEY = "Invalid API key"
ERR_REQUEST = "Incorrect request"
ERR_SERVICE = "Incorrect service ID"
ERR_ORDER = "Incorrect order ID"
ERR_FUNDS = "Not enough funds on balance"
ERR_LINK = "Bad link"
ERR_DUPLICATE = "You have active order with this link. Please wait until order being completed."
ERR_REFILL_UNAVAILABLE = "Refill is not available for this order"
ERR_REFILL_ACTIVE = "Refill is already in progress for this order"
ERR_REFILL_NOT_FOUND = "Refill not found"
ERR_CANCEL_UNAVAILABLE = "Cancel is not available for this order"

FAIL_MODES = frozenset({"timeout", "timeout_after", "connect", "html502", "html503", "badjson"})
SUBSCRIPTION_DELAYS = frozenset(
    {0, 5, 10, 15, 20, 30, 40, 50, 60, 90, 120, 150, 180, 210, 240, 270, 300, 360, 420, 480,
     540, 600}
)

PENDING = "Pending"
IN_PROGRESS = "In progress"
COMPLETED = "Completed"
PARTIAL = "Partial"
CANCELED = "Canceled"
REJECTED = "Rejected"

# Status spellings (letters only, lower case) by what they mean for money and eligibility.
_FULL_REFUND = frozenset({"canceled", "cancelled", "refunded", "refund", "fail", "failed", "error"})
_FINAL = _FULL_REFUND | {"completed", "complete", "partial", "rejected"}
_REFILLABLE = frozenset({"completed", "complete", "partial"})


@dataclass(frozen=True, slots=True)
class TypeRule:
    """What `action=add` needs for one service type, by the sandbox's own reading of the API."""

    required: tuple[str, ...]
    lines_field: str | None = None  # quantity is the number of non-empty lines of this field
    list_fields: tuple[str, ...] = ()  # must hold at least one non-empty line
    package: bool = False  # one unit, charged `rate` per package
    dripfeed: bool = False  # accepts runs + interval (when the service says dripfeed)


# Kept independent of the bot's own table on purpose, so a bot mistake shows up as an error.
TYPE_RULES: dict[str, TypeRule] = {
    "Default": TypeRule(("link", "quantity"), dripfeed=True),
    "SEO": TypeRule(("link", "quantity", "keywords"), list_fields=("keywords",)),
    "Custom Comments": TypeRule(("link", "comments"), lines_field="comments"),
    "Subscriptions": TypeRule(("username", "min", "max", "delay")),
    "Poll": TypeRule(("link", "quantity", "answer_number")),
    "Package": TypeRule(("link",), package=True),
    "Mentions": TypeRule(("link", "quantity", "usernames"), list_fields=("usernames",)),
    "Mentions with Hashtags": TypeRule(
        ("link", "quantity", "usernames", "hashtags"), list_fields=("usernames", "hashtags")
    ),
    "Mentions Custom List": TypeRule(("link", "usernames"), lines_field="usernames"),
    "Mentions Hashtag": TypeRule(("link", "quantity", "hashtag")),
    "Mentions User Followers": TypeRule(("link", "quantity", "username")),
    "Mentions Media Likers": TypeRule(("link", "quantity", "media")),
    "Comment Likes": TypeRule(("link", "quantity", "username")),
    "Comment Replies": TypeRule(("link", "username", "comments"), lines_field="comments"),
    "Invites from Groups": TypeRule(("link", "quantity", "groups"), list_fields=("groups",)),
}

_TYPE_ALIASES = {
    "seo2": "SEO",
    "keywords": "SEO",
    "mentionsusersfollowers": "Mentions User Followers",
    "mentionsuserfollower": "Mentions User Followers",
    "invitesfromgroup": "Invites from Groups",
}
_TYPE_BY_KEY = {re.sub(r"[^a-z0-9]", "", name.lower()): name for name in TYPE_RULES}


def canonical_type(name: str) -> str:
    """Maps a panel's type spelling ("default", "SEO2", "Invites From Groups") to a rule name."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return _TYPE_BY_KEY.get(key) or _TYPE_ALIASES.get(key) or "Default"


def _row(
    sid: int, name: str, type_: str, category: str, rate: str, min_: str, max_: str,
    refill: bool = False, cancel: bool = False, **extra: Any,
) -> dict[str, Any]:
    """One catalogue row exactly as the API sends it."""
    row: dict[str, Any] = {
        "service": sid, "name": name, "type": type_, "category": category, "rate": rate,
        "min": min_, "max": max_, "refill": refill, "cancel": cancel,
    }
    row.update(extra)
    return row


_IG, _TT, _YT, _TG, _TW, _WEB = (
    "Instagram", "TikTok", "YouTube", "Telegram", "Twitter", "Website Traffic / SEO",
)

DEFAULT_SERVICES: list[dict[str, Any]] = [
    _row(1, "Instagram Followers", "Default", _IG, "0.90", "50", "10000", True, True,
         dripfeed=True, desc="Real-looking profiles. Start 0-1 h, 30-day refill."),
    _row(2, "Instagram Likes", "Default", _IG, "0.25", "10", "50000", False, True,
         dripfeed=True),
    _row(3, "Instagram Custom Comments", "Custom Comments", _IG, "8", "10", "1500", False, True,
         desc="One comment per line."),
    _row(4, "Instagram Auto Likes", "Subscriptions", _IG, "0.30", "100", "5000",
         dripfeed=False),
    _row(5, "Instagram Mentions", "Mentions", _IG, "2.50", "100", "20000", False, True),
    _row(6, "Instagram Mentions with Hashtags", "Mentions with Hashtags", _IG, "3.00", "100",
         "10000"),
    _row(7, "Instagram Mentions Custom List", "Mentions Custom List", _IG, "4.00", "10", "1000"),
    _row(8, "Instagram Mentions Hashtag", "Mentions Hashtag", _IG, "2.00", "100", "10000"),
    _row(9, "Instagram Mentions User Followers", "Mentions User Followers", _IG, "2.20", "100",
         "10000", desc="Mentions the followers of the given username."),
    _row(10, "Instagram Mentions Media Likers", "Mentions Media Likers", _IG, "2.20", "100",
         "10000"),
    _row(11, "Instagram Comment Likes", "Comment Likes", _IG, "1.50", "20", "5000", True, False),
    _row(12, "Instagram Comment Replies", "Comment Replies", _IG, "9.00", "5", "500"),
    _row(13, "Instagram Story Views", "Default", _IG, "0.05", "100", "100000", False, False,
         dripfeed=False),
    _row(14, "Instagram Starter Package", "Package", _IG, "4.99", "1", "1",
         desc="500 followers + 1000 likes + 5000 views."),
    _row(15, "TikTok Followers", "Default", _TT, "1.20", "100", "20000", True, False),
    _row(16, "TikTok Views", "Default", _TT, "0.0125", "1000", "10000000", False, True,
         dripfeed=True, desc="Fast start, up to 1M/day."),
    _row(17, "TikTok Custom Comments", "Custom Comments", _TT, "6.50", "5", "1000", False, True),
    _row(18, "TikTok Auto Views", "Subscriptions", _TT, "0.02", "500", "100000"),
    _row(19, "YouTube Views", "Default", _YT, "1.75", "500", "1000000", True, True,
         dripfeed=True, desc="Retention 1-3 minutes."),
    _row(20, "YouTube Subscribers", "Default", _YT, "15", "50", "5000", True, False),
    _row(21, "YouTube Comment Likes", "Comment Likes", _YT, "3", "10", "2000"),
    _row(22, "YouTube Comment Replies", "Comment Replies", _YT, "12", "5", "300", False, True),
    _row(23, "Telegram Channel Members", "Default", _TG, "0.80", "100", "50000", True, True),
    _row(24, "Telegram Poll Votes", "Poll", _TG, "0.60", "50", "10000", False, True),
    _row(25, "Telegram Post Views", "Default", _TG, "0.01", "100", "500000", False, False,
         dripfeed=True),
    _row(26, "Telegram Group Members (invites from groups)", "Invites from Groups", _TG, "5",
         "100", "10000", desc="One source group per line."),
    _row(27, "Twitter Followers", "Default", _TW, "2.40", "100", "10000", True, True),
    _row(28, "Twitter Poll Votes", "Poll", _TW, "1.10", "100", "20000"),
    _row(29, "Twitter Retweets", "Default", _TW, "1.80", "20", "5000", False, True),
    _row(30, "Website Traffic from Google (keywords)", "SEO", _WEB, "0.70", "500", "100000",
         False, True, desc="One keyword per line."),
    _row(31, "Website Traffic Worldwide", "Default", _WEB, "0.15", "1000", "1000000", False,
         True, dripfeed=True),
    _row(32, "SEO Backlinks Package", "Package", _WEB, "25", "1", "1"),
]


@dataclass(frozen=True, slots=True)
class _Service:
    """A catalogue row read for the sandbox's own use."""

    id: int
    type: str
    rate: Decimal
    min: int
    max: int
    refill: bool
    cancel: bool
    dripfeed: bool


def _flag(value: object) -> bool:
    """Reads a catalogue flag (true, "1", 1) as bool."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)


def _read_service(row: Mapping[str, Any]) -> _Service:
    """Reads one catalogue row; raises ValueError when it cannot serve orders."""
    sid, rate = to_int(row.get("service")), to_decimal(row.get("rate"))
    if sid is None or rate is None:
        raise ValueError(f"unusable service row: {row!r}")
    return _Service(
        id=sid,
        type=canonical_type(str(row.get("type") or "Default")),
        rate=rate,
        min=to_int(row.get("min")) or 1,
        max=to_int(row.get("max")) or 1_000_000_000,
        refill=_flag(row.get("refill")),
        cancel=_flag(row.get("cancel")),
        # Real panels that do not say accept drip-feed on Default services: so does the sandbox.
        dripfeed=_flag(row["dripfeed"]) if "dripfeed" in row else True,
    )


@dataclass(slots=True)
class _Order:
    """One order as the sandbox keeps it."""

    id: int
    key: str = field(repr=False)  # the key's sha256 (see _key_id), never the key itself
    service: _Service
    seq: int
    link: str
    quantity: int
    runs: int | None
    interval: int | None
    total: int
    charge: Decimal
    created: float
    fields: dict[str, str]
    status: str = PENDING
    remains: int = 0
    start_count: int = 0
    refunded: Decimal = Decimal(0)
    manual: bool = False


@dataclass(slots=True)
class _Refill:
    """One refill request as the sandbox keeps it."""

    id: int
    key: str = field(repr=False)  # the key's sha256 (see _key_id)
    order_id: int
    seq: int
    created: float
    status: str = PENDING
    manual: bool = False


def _stored_money(value: object) -> Decimal:
    """An amount read back from the state file, where it is kept as a string."""
    amount = Decimal(str(value))
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return amount


def _opt_int(value: object) -> int | None:
    """A whole number or None read back from the state file."""
    return None if value is None else int(str(value))


def _order_state(order: _Order) -> dict[str, Any]:
    """One order for the state file, with the service it was placed under."""
    service = order.service
    return {
        "id": order.id, "key": order.key, "seq": order.seq, "link": order.link,
        "service": {
            "id": service.id, "type": service.type, "rate": _money(service.rate),
            "min": service.min, "max": service.max, "refill": service.refill,
            "cancel": service.cancel, "dripfeed": service.dripfeed,
        },
        "quantity": order.quantity, "runs": order.runs, "interval": order.interval,
        "total": order.total, "charge": _money(order.charge), "created": order.created,
        "fields": order.fields, "status": order.status, "remains": order.remains,
        "start_count": order.start_count, "refunded": _money(order.refunded),
        "manual": order.manual,
    }


def _read_order(data: Mapping[str, Any]) -> _Order:
    """One order read back from the state file."""
    row = data["service"]
    service = _Service(
        id=int(row["id"]), type=canonical_type(str(row["type"])), rate=_stored_money(row["rate"]),
        min=int(row["min"]), max=int(row["max"]), refill=bool(row["refill"]),
        cancel=bool(row["cancel"]), dripfeed=bool(row["dripfeed"]),
    )
    return _Order(
        id=int(data["id"]), key=str(data["key"]), service=service, seq=int(data["seq"]),
        link=str(data["link"]), quantity=int(data["quantity"]), runs=_opt_int(data["runs"]),
        interval=_opt_int(data["interval"]), total=int(data["total"]),
        charge=_stored_money(data["charge"]), created=float(data["created"]),
        fields={str(k): str(v) for k, v in data["fields"].items()}, status=str(data["status"]),
        remains=int(data["remains"]), start_count=int(data["start_count"]),
        refunded=_stored_money(data["refunded"]), manual=bool(data["manual"]),
    )


def _refill_state(refill: _Refill) -> dict[str, Any]:
    """One refill for the state file."""
    return {
        "id": refill.id, "key": refill.key, "order_id": refill.order_id, "seq": refill.seq,
        "created": refill.created, "status": refill.status, "manual": refill.manual,
    }


def _read_refill(data: Mapping[str, Any]) -> _Refill:
    """One refill read back from the state file."""
    return _Refill(
        id=int(data["id"]), key=str(data["key"]), order_id=int(data["order_id"]),
        seq=int(data["seq"]), created=float(data["created"]), status=str(data["status"]),
        manual=bool(data["manual"]),
    )


class _Reply(Exception):
    """Short-circuits a handler with `{"error": text}`."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@functools.lru_cache(maxsize=512)
def _letters(status: str) -> str:
    """A status reduced to lower-case letters, for comparing spellings (a handful of spellings
    are looked up all the time: remembered)."""
    return re.sub(r"[^a-z]", "", status.lower())


def _is_final(status: str) -> bool:
    """True for a status that will not change any more."""
    return _letters(status) in _FINAL


def _money(value: Decimal) -> str:
    """A Decimal as the plain string panels send ("0.27819"), never in exponent form."""
    return f"{value:f}"


def _parse_int(text: str | None) -> int | None:
    """Reads a plain non-negative whole number ("50"); None for anything else ("1,000", "5.0")."""
    if text is None or not re.fullmatch(r"[0-9]+", text):
        return None
    return int(text)


def _lines(text: str) -> list[str]:
    """The non-empty lines of a list field separated by \\r\\n or \\n."""
    return [line.strip() for line in re.split(r"\r\n|\n|\r", text) if line.strip()]


def _good_link(link: str) -> bool:
    """True when the link starts with http(s):// and names a host with a dot."""
    match = re.match(r"https?://(.+)", link.strip(), re.I)
    return bool(match) and "." in (match.group(1) if match else "")


def _split_ids(text: str) -> list[str]:
    """Splits a comma list of ids; raises Incorrect request when empty or over MAX_IDS."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items or len(items) > MAX_IDS:
        raise _Reply(ERR_REQUEST)
    return items


def _id_value(item: str) -> int | str:
    """An id echoed back in a list answer: the number when it is one, else the text sent."""
    number = _parse_int(item)
    return item if number is None else number


def _key_id(key: str) -> str:
    """How the sandbox files an API key: its sha256 hex, so no key is held or saved in clear."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _clock_path(state_path: Path) -> Path:
    """The small file beside the state file that records the sandbox clock after reads."""
    return state_path.with_name(state_path.name + ".clock")


def _fresh_id(first: int) -> int:
    """A first id for when the stored counters are lost: above any id handed out before."""
    return max(first, int((time.time() - _ID_EPOCH) * 10))


_CLOUDFLARE_PAGE = """<!DOCTYPE html>
<html lang="en-US"><head><meta charset="UTF-8" />
<title>sandbox.invalid | {code}: {title}</title></head>
<body><div id="cf-wrapper"><div id="cf-error-details">
<h1><span>{title}</span> <span>Error code {code}</span></h1>
<p>Visit <a href="https://www.cloudflare.com/5xx-error-landing">cloudflare.com</a>
for more information.</p>
<p>Cloudflare Ray ID: <strong>8a1b2c3d4e5f6789</strong> &bull; Performance &amp; security by
Cloudflare</p></div></div></body></html>
"""
_HTML_ERRORS = {"html502": (502, "Bad gateway"), "html503": (503, "Service unavailable")}
_PHP_WARNING = (
    "<br />\n<b>Warning</b>:  mysqli_connect(): (HY000/1040): Too many connections in "
    "<b>/var/www/panel/api/v2.php</b> on line <b>12</b><br />\n{\"error\":\"Incorrect request\"}"
)


class SandboxTransport(httpx.AsyncBaseTransport):
    """An httpx transport that hands every request to a SandboxPanel, with no sockets."""

    def __init__(self, panel: SandboxPanel) -> None:
        self._panel = panel

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Parses the form body and returns the panel's answer (or a simulated failure)."""
        return await self._panel.handle(request)


class SandboxPanel:
    """An in-memory API v2 panel: a catalogue, balances, orders that progress with time."""

    def __init__(
        self,
        *,
        keys: Mapping[str, Decimal] | None = None,
        speed: float = 1.0,
        latency: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        services: list[dict[str, Any]] | None = None,
        currency: str = "USD",
        string_ids: bool = False,
        state_path: Path | None = None,
        keep_requests: int | None = None,
    ) -> None:
        """`state_path`: a JSON file the sandbox resumes from and saves to after every request,
        so that orders, balances, ids and its clock survive a restart like a real panel's do;
        None (tests) keeps everything in memory. `keep_requests`: how many recorded requests to
        keep (a long-running demo bot would otherwise grow `requests` for ever); None: all."""
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.latency = latency
        self.currency = currency
        self.string_ids = string_ids
        self.down = False
        self.requests: list[dict[str, str]] = []
        self._keep_requests = keep_requests
        self._clock = clock
        self._clock0 = clock()
        self._offset = 0.0
        source = DEFAULT_SERVICES if services is None else services
        self._rows: list[dict[str, Any]] = [dict(row) for row in source]
        self._services: dict[int, _Service] = {}
        for row in self._rows:
            service = _read_service(row)
            self._services[service.id] = service
        start = {DEMO_KEY: Decimal("100")} if keys is None else keys
        self._balances: dict[str, Decimal] = {_key_id(k): Decimal(v) for k, v in start.items()}
        self._orders: dict[int, _Order] = {}
        self._refills: dict[int, _Refill] = {}
        self._index()
        self._failures: list[tuple[str | None, str]] = []
        #: Orders whose status answers leave `remains` out (not kept across restarts).
        self._remains_unsaid: set[int] = set()
        self._next_order = FIRST_ORDER_ID
        self._next_refill = FIRST_REFILL_ID
        self._state_path = state_path
        self._save_failing: set[Path] = set()
        if state_path is not None:
            self._load(state_path)

    def _index(self) -> None:
        """What `_tick` and `add` look at, so neither walks every order ever placed: the orders
        and refills that still move on their own (not final, not forced: once out, never back),
        when each of those orders finishes (a heap), and how many unfinished orders each (key,
        link) has."""
        self._moving = {o.id: o for o in self._orders.values()
                        if not o.manual and not _is_final(o.status)}
        self._finishing = [(self._finishes(o), o.id) for o in self._moving.values()]
        heapq.heapify(self._finishing)
        self._moving_refills = {r.id: r for r in self._refills.values()
                                if not r.manual and not _is_final(r.status)}
        self._open_links: dict[tuple[str, str], int] = {}
        for order in self._orders.values():
            if not _is_final(order.status):
                self._count_link(order, 1)

    def _count_link(self, order: _Order, step: int) -> None:
        """Counts an order in or out of the unfinished orders of its (key, link)."""
        slot = (order.key, order.link)
        count = self._open_links.get(slot, 0) + step
        if count > 0:
            self._open_links[slot] = count
        else:
            self._open_links.pop(slot, None)

    # -- wiring ----------------------------------------------------------------------------

    def transport(self) -> SandboxTransport:
        """A new httpx transport bound to this panel."""
        return SandboxTransport(self)

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """A plain httpx.AsyncClient that talks to this panel (the caller closes it)."""
        return httpx.AsyncClient(transport=self.transport(), **kwargs)

    # -- test controls -----------------------------------------------------------------------

    def now(self) -> float:
        """The sandbox's own time in seconds: the clock scaled by speed, plus advance() offsets."""
        return (self._clock() - self._clock0) * self.speed + self._offset

    def advance(self, seconds: float) -> None:
        """Moves the sandbox's clock forward by `seconds` of sandbox time."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._offset += seconds
        self._tick()
        self._save()

    def add_key(self, key: str, balance: Decimal) -> None:
        """Adds an API key (or resets its balance)."""
        self._balances[_key_id(key)] = Decimal(balance)
        self._save()

    def balance_of(self, key: str) -> Decimal:
        """The exact balance of a key."""
        self._tick()
        return self._balances[_key_id(key)]

    def fail_next(self, action: str | None, mode: str, times: int = 1) -> None:
        """Makes the next `times` requests of `action` (None: any action) fail in `mode`.

        Modes: timeout (httpx.ReadTimeout, request not processed), timeout_after (processed,
        then httpx.ReadTimeout), connect (httpx.ConnectError), html502 / html503 (a
        Cloudflare-like HTML page), badjson (200 with invalid JSON), error:<text> (200
        {"error": text}).
        """
        if mode not in FAIL_MODES and not mode.startswith("error:"):
            raise ValueError(f"unknown failure mode: {mode}")
        self._failures.extend([(action, mode)] * times)

    @property
    def pending_failures(self) -> list[tuple[str | None, str]]:
        """Failures queued by fail_next and not yet used."""
        return list(self._failures)

    def set_status(self, order_id: int, status: str, *, remains: int | None = None) -> None:
        """Forces an order to `status` now (any spelling); it stops progressing on its own."""
        self._tick()
        order = self._current(self._orders[order_id])
        letters = _letters(status)
        if remains is None:
            if letters in _FULL_REFUND:
                remains = order.total
            elif letters in {"completed", "complete"}:
                remains = 0
            elif letters == "partial":
                remains = max(1, order.total // 2)
            else:
                remains = order.remains
        if not 0 <= remains <= order.total:
            raise ValueError(f"remains must be within 0..{order.total}")
        order.manual = True
        self._moving.pop(order.id, None)
        self._apply(order, status, remains)
        self._save()

    def complete_all(self) -> None:
        """Completes every unfinished order and refill now."""
        self._tick()
        for order in self._orders.values():
            if not _is_final(order.status):
                order.manual = True
                self._moving.pop(order.id, None)
                self._apply(order, COMPLETED, 0)
        for refill in self._refills.values():
            if not _is_final(refill.status):
                refill.manual = True
                refill.status = COMPLETED
        self._save()

    def leave_out_remains(self, order_id: int) -> None:
        """From now on the status of this order comes without `remains`, as some panels send
        it (kept for this run only, like the queued failures)."""
        self._remains_unsaid.add(order_id)

    def forget(self, order_id: int) -> None:
        """Drops an order, as a panel that purged it or went back to an older database would:
        from now on it answers "Incorrect order ID" for it."""
        self._tick()
        order = self._current(self._orders.pop(order_id))
        self._moving.pop(order_id, None)
        if not _is_final(order.status):
            self._count_link(order, -1)
        self._save()

    def set_refill_status(self, refill_id: int, status: str) -> None:
        """Forces a refill to `status` now; it stops progressing on its own."""
        refill = self._refills[refill_id]
        refill.manual = True
        refill.status = status
        self._save()

    def requests_for(self, action: str) -> list[dict[str, str]]:
        """The recorded requests whose action is `action`."""
        return [fields for fields in self.requests if fields.get("action") == action]

    def services(self) -> list[dict[str, Any]]:
        """A copy of the catalogue rows as the API sends them."""
        return [dict(row) for row in self._rows]

    def order(self, order_id: int) -> dict[str, Any]:
        """A snapshot of one order (charge as Decimal; the key is left out)."""
        self._tick()
        return self._snapshot(self._current(self._orders[order_id]))

    def orders_of(self, key: str) -> list[dict[str, Any]]:
        """Snapshots of every order of a key, oldest first."""
        self._tick()
        key_id = _key_id(key)
        return [self._snapshot(self._current(o)) for o in self._orders.values()
                if o.key == key_id]

    def refill(self, refill_id: int) -> dict[str, Any]:
        """A snapshot of one refill."""
        self._tick()
        refill = self._refills[refill_id]
        return {"refill": refill.id, "order": refill.order_id, "status": refill.status}

    # -- time ------------------------------------------------------------------------------

    def _tick(self) -> None:
        """Finishes the orders whose time has come, and moves every refill that runs on its own
        to where the clock says. An order on its way is brought up to date when it is read
        (`_current`): until it finishes only its own status and remains change with the clock,
        nothing that other requests see (balance, the links with an unfinished order). So a
        request costs the orders that finish, not every order on its way."""
        now = self.now()
        finishing = self._finishing
        while finishing and finishing[0][0] <= now:
            order = self._moving.pop(heapq.heappop(finishing)[1], None)
            if order is not None and not order.manual:
                self._apply(order, *self._natural(order, now))
        for refill in list(self._moving_refills.values()):
            if not refill.manual and not _is_final(refill.status):
                refill.status = self._natural_refill(refill, now)
            if refill.manual or _is_final(refill.status):
                del self._moving_refills[refill.id]

    def _current(self, order: _Order) -> _Order:
        """`order`, brought to where the clock says if it runs on its own (after `_tick`)."""
        if order.id in self._moving and not order.manual:
            self._apply(order, *self._natural(order, self.now()))
            if _is_final(order.status):  # read after its finish time, before a tick (a save)
                del self._moving[order.id]
        return order

    @staticmethod
    def _finishes(order: _Order) -> float:
        """When an order that runs on its own reaches its final status (sandbox time)."""
        return order.created + 60.0 + (order.seq % 7) * 10

    @classmethod
    def _natural(cls, order: _Order, now: float) -> tuple[str, int]:
        """Where an order stands at `now`: deterministic, no randomness.

        Pending for 5-15 s, in progress until 60-120 s, then Completed, or Partial for every
        5th order (remains about a seventh of the total, refunded).
        """
        age = now - order.created
        starts = 5.0 + (order.seq % 3) * 5
        ends = cls._finishes(order) - order.created
        package = TYPE_RULES[order.service.type].package
        partial = order.seq % 5 == 0 and order.total >= 2 and not package
        final_remains = max(1, order.total // 7) if partial else 0
        if age < starts:
            return PENDING, order.total
        if age < ends:
            delivered = int((order.total - final_remains) * (age - starts) / (ends - starts))
            return IN_PROGRESS, order.total - delivered
        return (PARTIAL if partial else COMPLETED), final_remains

    @staticmethod
    def _natural_refill(refill: _Refill, now: float) -> str:
        """Pending 10 s, in progress until 30-60 s, then Completed, or Rejected every 3rd."""
        age = now - refill.created
        if age < 10:
            return PENDING
        if age < 30 + (refill.seq % 4) * 10:
            return IN_PROGRESS
        return REJECTED if refill.seq % 3 == 0 else COMPLETED

    def _apply(self, order: _Order, status: str, remains: int) -> None:
        """Sets status and remains, keeping charge and balance consistent (refunds as deltas)."""
        was_open, is_open = not _is_final(order.status), not _is_final(status)
        if was_open != is_open:
            self._count_link(order, 1 if is_open else -1)
        order.status, order.remains = status, remains
        if _letters(status) != "pending" and order.start_count == 0:
            order.start_count = 100 + (order.id * 7919) % 9000
        letters = _letters(status)
        if letters in _FULL_REFUND:
            target = order.charge
        elif letters == "partial":
            target = self._cost(order.service, remains)
        else:
            target = Decimal(0)
        self._balances[order.key] += target - order.refunded
        order.refunded = target

    @staticmethod
    def _cost(service: _Service, units: int) -> Decimal:
        """What `units` cost: rate per package for packages, else rate per 1000."""
        if TYPE_RULES[service.type].package:
            return service.rate * units
        return order_cost(service.rate, units)

    def _snapshot(self, order: _Order) -> dict[str, Any]:
        """An order as a plain dict for tests."""
        return {
            "order": order.id,
            "service": order.service.id,
            "type": order.service.type,
            "status": order.status,
            "charge": order.charge - order.refunded,
            "original_charge": order.charge,
            "remains": order.remains,
            "start_count": order.start_count,
            "quantity": order.quantity,
            "runs": order.runs,
            "interval": order.interval,
            "total": order.total,
            "link": order.link,
            "created": order.created,
            "fields": dict(order.fields),
        }

    # -- state file ------------------------------------------------------------------------

    def _load(self, path: Path) -> None:
        """Resumes from the state file: none yet starts fresh; an unreadable one starts fresh too,
        with a warning and ids above any handed out before (the bot may already hold those)."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self._lost_state(path, exc)
            return
        try:
            self._restore(json.loads(text))
        except (ValueError, TypeError, KeyError, AttributeError, InvalidOperation) as exc:
            self._lost_state(path, exc)
            return
        self._load_clock(path)

    def _lost_state(self, path: Path, exc: Exception) -> None:
        """Starts afresh after an unreadable state file, with ids that cannot repeat old ones."""
        self._next_order = _fresh_id(FIRST_ORDER_ID)
        self._next_refill = _fresh_id(FIRST_REFILL_ID)
        log.warning("Sandbox state file %s is unreadable (%s: %s); the sandbox starts afresh "
                    "with order ids from %d", path, type(exc).__name__, exc, self._next_order)

    def _restore(self, state: Any) -> None:
        """Takes over the saved orders, refills, balances, counters and clock (all or nothing)."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"not a version {STATE_VERSION} sandbox state")
        balances = {str(k): _stored_money(v) for k, v in state["balances"].items()}
        orders = {order.id: order for order in map(_read_order, state["orders"])}
        refills = {refill.id: refill for refill in map(_read_refill, state["refills"])}
        now = float(state["now"])
        if not math.isfinite(now):
            raise ValueError(f"not a time: {now!r}")
        next_order = max(int(state["next_order"]), max(orders, default=0) + 1)
        next_refill = max(int(state["next_refill"]), max(refills, default=0) + 1)
        # Keys given to the constructor but absent from the file keep their starting balance.
        self._balances.update(balances)
        self._orders, self._refills = orders, refills
        self._index()
        self._next_order, self._next_refill = next_order, next_refill
        # The clock goes on from where it stood at the last save: time the bot was down is skipped.
        self._offset = now - (self._clock() - self._clock0) * self.speed

    def _state(self) -> dict[str, Any]:
        """Everything that must survive a restart, as JSON-ready data (money as strings)."""
        return {
            "version": STATE_VERSION,
            "now": self.now(),
            "next_order": self._next_order,
            "next_refill": self._next_refill,
            "balances": {key: _money(amount) for key, amount in self._balances.items()},
            "orders": [_order_state(self._current(order)) for order in self._orders.values()],
            "refills": [_refill_state(refill) for refill in self._refills.values()],
        }

    def _save(self) -> None:
        """Replaces the state file (when there is one) atomically; failures are logged only."""
        if self._state_path is not None:
            self._write(self._state_path, json.dumps(self._state(), separators=(",", ":")))
            self._save_clock()

    def _save_clock(self) -> None:
        """Records only where the clock stands (cheap: done after every read)."""
        if self._state_path is not None:
            self._write(_clock_path(self._state_path), json.dumps({"now": self.now()}))

    def _load_clock(self, path: Path) -> None:
        """Moves the clock on to the last recorded position, if later than the state's."""
        try:
            now = float(json.loads(_clock_path(path).read_text(encoding="utf-8"))["now"])
        except (OSError, ValueError, TypeError, KeyError):
            return
        if math.isfinite(now) and now > self.now():
            self._offset += now - self.now()

    def _write(self, path: Path, text: str) -> None:
        """Replaces a file atomically; failures are logged once per run of failures."""
        try:
            handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                            dir=path.parent)
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    out.write(text)
                os.replace(temp, path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            if path not in self._save_failing:  # once per run of failures, not every request
                log.warning("Sandbox state not saved to %s: %s", path, exc)
            self._save_failing.add(path)
        else:
            self._save_failing.discard(path)

    # -- HTTP ------------------------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Answers one HTTP request the way a panel would (used by SandboxTransport)."""
        body = await request.aread()
        fields = self._parse_form(request, body)
        self.requests.append(dict(fields))
        if self._keep_requests is not None and len(self.requests) > 2 * self._keep_requests:
            del self.requests[: -self._keep_requests]
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        mode = "html502" if self.down else self._take_failure(fields.get("action"))
        if mode == "timeout":
            raise httpx.ReadTimeout("sandbox: simulated read timeout", request=request)
        if mode == "connect":
            raise httpx.ConnectError("sandbox: simulated connection failure", request=request)
        if mode in {"html502", "html503"}:
            code, title = _HTML_ERRORS[mode]
            page = _CLOUDFLARE_PAGE.format(code=code, title=title)
            return httpx.Response(
                code, text=page, request=request,
                headers={"content-type": "text/html; charset=UTF-8", "server": "cloudflare"},
            )
        if mode == "badjson":
            return httpx.Response(
                200, text=_PHP_WARNING, request=request,
                headers={"content-type": "text/html; charset=UTF-8"},
            )
        if mode is not None and mode.startswith("error:"):
            return self._json(request, {"error": mode.removeprefix("error:")})
        payload = self.answer(fields)
        if mode == "timeout_after":
            raise httpx.ReadTimeout("sandbox: simulated read timeout", request=request)
        return self._json(request, payload)

    @staticmethod
    def _parse_form(request: httpx.Request, body: bytes) -> dict[str, str]:
        """The form fields of a POST, last value winning as in PHP; {} for anything else."""
        content_type = request.headers.get("content-type", "")
        if request.method != "POST" or not content_type.startswith(
            "application/x-www-form-urlencoded"
        ):
            return {}
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

    def _take_failure(self, action: str | None) -> str | None:
        """Pops the first queued failure that applies to `action`."""
        for index, (wanted, mode) in enumerate(self._failures):
            if wanted is None or wanted == action:
                del self._failures[index]
                return mode
        return None

    @staticmethod
    def _json(request: httpx.Request, payload: Any) -> httpx.Response:
        """A 200 JSON answer."""
        return httpx.Response(
            200, content=json.dumps(payload).encode(), request=request,
            headers={"content-type": "application/json"},
        )

    def answer(self, fields: Mapping[str, str]) -> Any:
        """The JSON payload the panel answers to these form fields (no failure modes)."""
        self._tick()
        key = _key_id(fields.get("key", ""))
        if key not in self._balances:
            return {"error": ERR_KEY}
        handlers: dict[str, Callable[[str, Mapping[str, str]], Any]] = {
            "services": self._services_action,
            "add": self._add,
            "status": self._status,
            "refill": self._refill,
            "refill_status": self._refill_status,
            "cancel": self._cancel,
            "balance": self._balance,
        }
        handler = handlers.get(fields.get("action", ""))
        if handler is None:
            return {"error": ERR_REQUEST}
        try:
            return handler(key, fields)
        except _Reply as reply:
            return {"error": reply.text}
        finally:
            # Writes change the state; reads only move the clock. Orders and refills progress as
            # a function of the clock, so saving the clock after reads (a tiny file) is enough to
            # keep what the bot was shown from being undone by a restart.
            if fields.get("action") in ("add", "refill", "cancel"):
                self._save()
            else:
                self._save_clock()

    # -- actions ---------------------------------------------------------------------------

    def _services_action(self, key: str, fields: Mapping[str, str]) -> Any:
        """action=services."""
        return self.services()

    def _balance(self, key: str, fields: Mapping[str, str]) -> Any:
        """action=balance."""
        return {"balance": _money(self._balances[key]), "currency": self.currency}

    def _add(self, key: str, fields: Mapping[str, str]) -> Any:
        """action=add: validates by type, charges, creates the order."""
        raw_service = fields.get("service", "").strip()
        if not raw_service:
            raise _Reply(ERR_REQUEST)
        service_id = _parse_int(raw_service)
        service = self._services.get(service_id) if service_id is not None else None
        if service is None:
            raise _Reply(ERR_SERVICE)
        rule = TYPE_RULES[service.type]
        if any(not fields.get(name, "").strip() for name in rule.required):
            raise _Reply(ERR_REQUEST)
        if any(not _lines(fields[name]) for name in rule.list_fields):
            raise _Reply(ERR_REQUEST)
        if service.type == "Subscriptions":
            link, quantity, runs, interval, total = self._subscription(service, fields)
        else:
            link, quantity, runs, interval, total = self._link_order(service, rule, fields)
            if self._open_links.get((key, link)):  # an unfinished order of this key and link
                raise _Reply(ERR_DUPLICATE)
        charge = self._cost(service, total)
        if charge > self._balances[key]:
            raise _Reply(ERR_FUNDS)
        order = _Order(
            id=self._next_order, key=key, service=service, seq=len(self._orders) + 1,
            link=link, quantity=quantity, runs=runs, interval=interval, total=total,
            charge=charge, created=self.now(),
            fields={k: v for k, v in fields.items() if k != "key"}, remains=total,
        )
        self._next_order += 1
        self._orders[order.id] = order
        self._moving[order.id] = order
        heapq.heappush(self._finishing, (self._finishes(order), order.id))
        self._count_link(order, 1)
        self._balances[key] -= charge
        return {"order": str(order.id) if self.string_ids else order.id}

    @staticmethod
    def _check_range(service: _Service, low: int, high: int) -> None:
        """Raises the panel's quantity errors when low/high fall outside the service's range."""
        if low < service.min:
            raise _Reply(f"Quantity less than minimal {service.min}")
        if high > service.max:
            raise _Reply(f"Quantity more than maximum {service.max}")

    def _link_order(
        self, service: _Service, rule: TypeRule, fields: Mapping[str, str]
    ) -> tuple[str, int, int | None, int | None, int]:
        """Validates every type that orders against a link."""
        link = fields["link"].strip()
        if not _good_link(link):
            raise _Reply(ERR_LINK)
        if rule.package:
            return link, 1, None, None, 1
        if rule.lines_field is not None:
            quantity: int | None = len(_lines(fields[rule.lines_field]))
        else:
            quantity = _parse_int(fields["quantity"].strip())
        if quantity is None:
            raise _Reply(ERR_REQUEST)
        if service.type == "Poll":
            answer = _parse_int(fields["answer_number"].strip())
            if answer is None or answer < 1:
                raise _Reply(ERR_REQUEST)
        self._check_range(service, quantity, quantity)
        raw_runs = fields.get("runs", "").strip()
        raw_interval = fields.get("interval", "").strip()
        if not raw_runs and not raw_interval:
            return link, quantity, None, None, quantity
        if not (rule.dripfeed and service.dripfeed):
            raise _Reply(ERR_REQUEST)
        runs, interval = _parse_int(raw_runs), _parse_int(raw_interval)
        if runs is None or interval is None or runs < 1 or interval < 1:
            raise _Reply(ERR_REQUEST)
        self._check_range(service, quantity, quantity * runs)
        return link, quantity, runs, interval, quantity * runs

    def _subscription(
        self, service: _Service, fields: Mapping[str, str]
    ) -> tuple[str, int, None, None, int]:
        """Validates a Subscriptions order; it is charged one post's worth (max units) up front."""
        low, high = _parse_int(fields["min"].strip()), _parse_int(fields["max"].strip())
        delay = _parse_int(fields["delay"].strip())
        if low is None or high is None or low > high:
            raise _Reply(ERR_REQUEST)
        if delay is None or delay not in SUBSCRIPTION_DELAYS:
            raise _Reply(ERR_REQUEST)
        raw_posts = fields.get("posts", "").strip()
        if raw_posts and not _parse_int(raw_posts):
            raise _Reply(ERR_REQUEST)
        raw_old = fields.get("old_posts", "").strip()
        if raw_old and _parse_int(raw_old) is None:
            raise _Reply(ERR_REQUEST)
        raw_expiry = fields.get("expiry", "").strip()
        if raw_expiry:
            try:
                datetime.strptime(raw_expiry, "%d/%m/%Y")
            except ValueError:
                raise _Reply(ERR_REQUEST) from None
        self._check_range(service, low, high)
        return fields["username"].strip(), high, None, None, high

    def _own_order(self, key: str, raw: str) -> _Order | None:
        """The order with this id if it belongs to `key`."""
        order_id = _parse_int(raw.strip())
        order = self._orders.get(order_id) if order_id is not None else None
        return self._current(order) if order is not None and order.key == key else None

    def _status_of(self, order: _Order) -> dict[str, str]:
        """One order's status object, numbers as strings."""
        answer = {
            "charge": _money(order.charge - order.refunded),
            "start_count": str(order.start_count),
            "status": order.status,
            "remains": str(order.remains),
            "currency": self.currency,
        }
        if order.id in self._remains_unsaid:
            del answer["remains"]
        return answer

    def _status(self, key: str, fields: Mapping[str, str]) -> Any:
        """action=status, single (`order`) or multiple (`orders`)."""
        if "orders" in fields:
            result: dict[str, Any] = {}
            for item in _split_ids(fields["orders"]):
                order = self._own_order(key, item)
                result[item] = self._status_of(order) if order else {"error": ERR_ORDER}
            return result
        if "order" not in fields:
            raise _Reply(ERR_REQUEST)
        order = self._own_order(key, fields["order"])
        if order is None:
            raise _Reply(ERR_ORDER)
        return self._status_of(order)

    def _refill_one(self, key: str, raw: str) -> int:
        """Creates a refill for one order, or raises the panel's error."""
        order = self._own_order(key, raw)
        if order is None:
            raise _Reply(ERR_ORDER)
        if not order.service.refill or _letters(order.status) not in _REFILLABLE:
            raise _Reply(ERR_REFILL_UNAVAILABLE)
        if any(r.order_id == order.id and not _is_final(r.status) for r in self._refills.values()):
            raise _Reply(ERR_REFILL_ACTIVE)
        refill = _Refill(
            id=self._next_refill, key=key, order_id=order.id, seq=len(self._refills) + 1,
            created=self.now(),
        )
        self._next_refill += 1
        self._refills[refill.id] = refill
        self._moving_refills[refill.id] = refill
        return refill.id

    def _refill(self, key: str, fields: Mapping[str, str]) -> Any:
        """action=refill, single (`order`) or multiple (`orders`)."""
        if "orders" in fields:
            results: list[dict[str, Any]] = []
            for item in _split_ids(fields["orders"]):
                try:
                    outcome: Any = self._refill_one(key, item)
                except _Reply as reply:
                    outcome = {"error": reply.text}
                results.append({"order": _id_value(item), "refill": outcome})
            return results
        if "order" not in fields:
            raise _Reply(ERR_REQUEST)
        return {"refill": str(self._refill_one(key, fields["order"]))}

    def _own_refill(self, key: str, raw: str) -> _Refill | None:
        """The refill with this id if it belongs to `key`."""
        refill_id = _parse_int(raw.strip())
        refill = self._refills.get(refill_id) if refill_id is not None else None
        return refill if refill is not None and refill.key == key else None

    def _refill_status(self, key: str, fields: Mapping[str, str]) -> Any:
        """action=refill_status, single (`refill`) or multiple (`refills`)."""
        if "refills" in fields:
            results: list[dict[str, Any]] = []
            for item in _split_ids(fields["refills"]):
                refill = self._own_refill(key, item)
                status: Any = refill.status if refill else {"error": ERR_REFILL_NOT_FOUND}
                results.append({"refill": _id_value(item), "status": status})
            return results
        if "refill" not in fields:
            raise _Reply(ERR_REQUEST)
        refill = self._own_refill(key, fields["refill"])
        if refill is None:
            raise _Reply(ERR_REFILL_NOT_FOUND)
        return {"status": refill.status}

    def _cancel(self, key: str, fields: Mapping[str, str]) -> Any:
        """action=cancel with `orders`: cancels and refunds orders that allow it."""
        if "orders" not in fields:
            raise _Reply(ERR_REQUEST)
        results: list[dict[str, Any]] = []
        for item in _split_ids(fields["orders"]):
            order = self._own_order(key, item)
            outcome: Any
            if order is None:
                outcome = {"error": ERR_ORDER}
            elif not order.service.cancel or _is_final(order.status):
                outcome = {"error": ERR_CANCEL_UNAVAILABLE}
            else:
                order.manual = True
                self._moving.pop(order.id, None)
                self._apply(order, CANCELED, order.total)
                outcome = 1
            results.append({"order": _id_value(item), "cancel": outcome})
        return results
