"""Async client for SMM panels speaking API v2: lenient parsing, safe errors, no double writes."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, Final, TypeVar
from urllib.parse import urlencode

import httpx

from bot import health, metrics
from bot.i18n import N_, _
from bot.money import to_decimal, to_int
from bot.panel.errors import (
    OutcomeUnknown,
    PanelBadResponse,
    PanelClientError,
    PanelError,
    PanelHTTPError,
    PanelNotReached,
    PanelTimeout,
    PanelTransportError,
)
from bot.panel.models import (
    Balance,
    CancelResult,
    ItemError,
    OrderStatus,
    RefillResult,
    Service,
    normalize_status,
    to_bool,
)
from bot.stateless_http import StatelessClient

# httpx and httpcore log request URLs and connection details at INFO/DEBUG: keep them quiet.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The content type of a form POST.
_FORM: Final = b"application/x-www-form-urlencoded"

#: The API accepts at most this many ids in one `orders`/`refills` parameter.
BATCH_SIZE: Final = 100
#: Seconds a quick read (the balance on a summary) waits before giving up.
QUICK_TIMEOUT: Final = 4.0

# Texts standing in a per-id answer (translated when the answer is made, for the caller).
_NO_ANSWER: Final = N_("The panel did not answer for this id.")
_NOT_CANCELLED: Final = N_("The panel did not cancel this order.")
# i18n: stands for the panel's error text when the panel sent an empty one
_UNKNOWN_ERROR: Final = N_("Unknown error")
_RESERVED_FIELDS: Final = frozenset({"key", "action", "service"})


def _redact(text: str, key: str) -> str:
    """Removes the API key from a text the panel sent back, in case it echoes it."""
    if len(key) >= 4:
        text = text.replace(key, "***")
    return text


def _error_text(value: object, key: str) -> str:
    """The text of a panel's `{"error": value}`, shortened and without the key."""
    text = value if isinstance(value, str) else str(value)
    return _redact(text.strip() or _(_UNKNOWN_ERROR), key)[:300]


def _item_error(value: object) -> object | None:
    """The `error` value when `value` is a `{"error": ...}` object, else None."""
    if isinstance(value, dict):
        error: object = value.get("error")
        if error not in (None, "", False):
            return error
    return None


def _decode_json(text: str) -> tuple[bool, Any]:
    """Parses JSON with Decimal for fractions (never float); (False, None) when unreadable."""
    text = text.lstrip("\ufeff").strip()  # some PHP panels prefix a UTF-8 BOM
    if not text:
        return False, None
    try:
        return True, json.loads(text, parse_float=Decimal, parse_constant=lambda _name: None)
    except (ValueError, RecursionError):
        return False, None


def _dedupe(ids: Sequence[int]) -> list[int]:
    """The ids once each, in their first-seen order."""
    return list(dict.fromkeys(int(i) for i in ids))


def _safe_url(url: httpx.URL) -> str:
    """The URL without user info, query or fragment, for reprs."""
    return str(url.copy_with(userinfo=b"", query=None, fragment=None))


def parse_services(rows: Sequence[Any]) -> list[Service]:
    """A panel's service rows as Services; unusable and repeated rows are skipped."""
    services: list[Service] = []
    seen: set[int] = set()
    skipped = 0
    for row in rows:
        service = Service.from_api(row) if isinstance(row, dict) else None
        if service is None or service.service in seen:
            skipped += 1
            continue
        seen.add(service.service)
        services.append(service)
    if skipped:
        log.debug("panel services: skipped %d unusable or duplicate rows", skipped)
    log.debug("panel services: %d services", len(services))
    return services


class PanelClient:
    """One shared HTTP client for an API v2 panel; the key is given per call (per user)."""

    def __init__(
        self,
        url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        read_retries: int = 3,
        retry_backoff: float = 0.5,
        max_concurrency: int = 4,
        user_agent: str = "smm-panel-bot/0.1",
    ) -> None:
        """Creates the HTTP client; nothing is sent until the first call."""
        self._url = httpx.URL(url)
        self._read_retries = max(1, read_retries)
        self._retry_backoff = max(0.0, retry_backoff)
        self._max_concurrency = max(1, max_concurrency)
        self._http = StatelessClient(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            follow_redirects=False,  # a redirected POST would turn into a GET without the form
        )
        # What `httpx.AsyncClient.post(url, data=form)` would put on every request, made once:
        # the client's headers with the form's content type, and its timeouts.
        self._headers = [*self._http.headers.raw, (b"Content-Type", _FORM)]
        self._timeouts = {"timeout": self._http.timeout.as_dict()}

    def __repr__(self) -> str:
        """Shows where the client points, never a key."""
        return (
            f"PanelClient(url={_safe_url(self._url)!r}, read_retries={self._read_retries}, "
            f"max_concurrency={self._max_concurrency})"
        )

    async def aclose(self) -> None:
        """Closes the HTTP connections."""
        await self._http.aclose()

    async def __aenter__(self) -> PanelClient:
        """Returns the client itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Closes the HTTP connections."""
        await self.aclose()

    # --- read actions (retried) ---------------------------------------------------------

    async def services(self, key: str) -> list[Service]:
        """The panel's service list; unusable rows are skipped."""
        return parse_services(await self.service_rows(key))

    async def service_rows(self, key: str) -> list[Any]:
        """The panel's service list as it sent it, unparsed (`parse_services` reads it): the
        catalogue parses a list only when it is not one it holds already."""
        data = await self._read(key, "services", {})
        if isinstance(data, list):
            return data
        if isinstance(data, dict) and isinstance(data.get("services"), list):
            return list(data["services"])
        if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
            return list(data.values())  # some panels key the list by service id
        raise PanelBadResponse()

    async def status(self, key: str, order: int) -> OrderStatus:
        """The status of one order; `{"error": "Incorrect order ID"}` raises PanelError."""
        data = await self._read(key, "status", {"order": order})
        if isinstance(data, dict) and "status" not in data:
            nested = data.get(str(order))  # a panel answering in the multi-order shape
            if isinstance(nested, dict):
                error = _item_error(nested)
                if error is not None:
                    raise PanelError(_error_text(error, key))
                data = nested
        if not isinstance(data, dict) or "status" not in data:
            raise PanelBadResponse()
        return OrderStatus.from_api(data)

    async def statuses(self, key: str, orders: Sequence[int]) -> dict[int, OrderStatus | ItemError]:
        """Statuses of many orders (100 per request); ids the panel refuses become ItemError."""

        async def run(chunk: list[int]) -> dict[int, OrderStatus | ItemError]:
            data = await self._read(key, "status", {"orders": ",".join(map(str, chunk))})
            entries: dict[int, Any] = {}
            if isinstance(data, dict) and "status" in data and len(chunk) == 1:
                entries[chunk[0]] = data  # answered in the single-order shape
            elif isinstance(data, dict):
                for raw_id, value in data.items():
                    order_id = to_int(raw_id)
                    if order_id is not None:
                        entries[order_id] = value
            elif isinstance(data, list):
                for item in data:
                    order_id = to_int(item.get("order")) if isinstance(item, dict) else None
                    if order_id is not None:
                        entries[order_id] = item
            else:
                raise PanelBadResponse()
            result: dict[int, OrderStatus | ItemError] = {}
            read = OrderStatus.from_api
            for order_id in chunk:
                value = entries.get(order_id)
                if not isinstance(value, dict):
                    result[order_id] = ItemError(_(_NO_ANSWER))
                elif (error := _item_error(value)) is not None:
                    result[order_id] = ItemError(_error_text(error, key))
                elif "status" in value:
                    result[order_id] = read(value)
                else:
                    result[order_id] = ItemError(_(_NO_ANSWER))
            return result

        return await self._batched("status", orders, run, lambda _id, exc: ItemError(str(exc)))

    async def refill_status(self, key: str, refill: int) -> str:
        """The normalised status of one refill."""
        data = await self._read(key, "refill_status", {"refill": refill})
        if not isinstance(data, dict) or "status" not in data:
            raise PanelBadResponse()
        error = _item_error(data["status"])
        if error is not None:
            raise PanelError(_error_text(error, key))
        return normalize_status(data["status"])

    async def refill_statuses(self, key: str, refills: Sequence[int]) -> dict[int, str | ItemError]:
        """Normalised statuses of many refills; ids the panel refuses become ItemError."""

        async def run(chunk: list[int]) -> dict[int, str | ItemError]:
            data = await self._read(key, "refill_status", {"refills": ",".join(map(str, chunk))})
            items = _items_by_id(data, "refill")
            result: dict[int, str | ItemError] = {}
            for refill_id in chunk:
                item = items.get(refill_id)
                if item is None or "status" not in item:
                    error = _item_error(item)
                    result[refill_id] = ItemError(
                        _(_NO_ANSWER) if error is None else _error_text(error, key)
                    )
                    continue
                error = _item_error(item["status"])
                if error is not None:
                    result[refill_id] = ItemError(_error_text(error, key))
                else:
                    result[refill_id] = normalize_status(item["status"])
            return result

        return await self._batched(
            "refill_status", refills, run, lambda _id, exc: ItemError(str(exc))
        )

    async def balance(self, key: str, *, quick: bool = False) -> Balance:
        """The account balance, as Decimal; `quick`: one try with a short timeout (for a screen
        that must not wait on a slow panel)."""
        if quick:
            data = await self._request(key, "balance", {}, wait=QUICK_TIMEOUT)
        else:
            data = await self._read(key, "balance", {})
        amount = to_decimal(data.get("balance")) if isinstance(data, dict) else None
        if amount is None:
            raise PanelBadResponse()
        return Balance(balance=amount, currency=str(data.get("currency") or "").strip())

    # --- write actions (never retried) ----------------------------------------------------

    async def add(self, key: str, service: int, fields: Mapping[str, str | int]) -> int:
        """Places an order and returns the panel's order id; sent exactly once."""
        clash = _RESERVED_FIELDS.intersection(fields)
        if clash:
            raise ValueError(f"order fields may not set {sorted(clash)}")
        params: dict[str, str | int] = {"service": service, **fields}
        data = await self._write(key, "add", params)
        order = to_int(data.get("order")) if isinstance(data, dict) else None
        if order is None:
            # The panel answered, but not with an order id: it may have placed the order.
            raise OutcomeUnknown(PanelBadResponse())
        return order

    async def refill(self, key: str, order: int) -> int:
        """Asks for a refill of one order and returns the refill id; sent exactly once."""
        data = await self._write(key, "refill", {"order": order})
        value = data.get("refill") if isinstance(data, dict) else None
        error = _item_error(value)
        if error is not None:
            raise PanelError(_error_text(error, key))
        refill_id = to_int(value)
        if refill_id is None:
            raise OutcomeUnknown(PanelBadResponse())
        return refill_id

    async def refills(self, key: str, orders: Sequence[int]) -> list[RefillResult]:
        """Asks for refills of many orders (always the multi-order form, even for one id)."""

        async def run(chunk: list[int]) -> dict[int, RefillResult]:
            data = await self._write(key, "refill", {"orders": ",".join(map(str, chunk))})
            items = _items_by_id(data, "order", write=True)
            result: dict[int, RefillResult] = {}
            for order_id in chunk:
                item = items.get(order_id)
                value = item.get("refill") if item is not None else None
                error = _item_error(value) if value is not None else _item_error(item)
                refill_id = to_int(value)
                if error is not None:
                    result[order_id] = RefillResult(order_id, error=_error_text(error, key))
                elif refill_id is not None:
                    result[order_id] = RefillResult(order_id, refill=refill_id)
                else:
                    result[order_id] = RefillResult(order_id, error=_(_NO_ANSWER))
            return result

        merged = await self._batched(
            "refill", orders, run,
            lambda i, exc: RefillResult(i, error=str(exc),
                                        unknown=isinstance(exc, OutcomeUnknown)),
        )
        return list(merged.values())

    async def cancel(self, key: str, orders: Sequence[int]) -> list[CancelResult]:
        """Asks the panel to cancel orders; per-order refusals come back in CancelResult.error."""

        async def run(chunk: list[int]) -> dict[int, CancelResult]:
            data = await self._write(key, "cancel", {"orders": ",".join(map(str, chunk))})
            items = _items_by_id(data, "order", write=True)
            result: dict[int, CancelResult] = {}
            for order_id in chunk:
                item = items.get(order_id)
                value = item.get("cancel") if item is not None else None
                error = _item_error(value) if value is not None else _item_error(item)
                if error is not None:
                    result[order_id] = CancelResult(
                        order_id, ok=False, error=_error_text(error, key)
                    )
                elif item is None:
                    result[order_id] = CancelResult(order_id, ok=False, error=_(_NO_ANSWER))
                elif _cancel_accepted(value):
                    result[order_id] = CancelResult(order_id, ok=True)
                else:
                    result[order_id] = CancelResult(order_id, ok=False, error=_(_NOT_CANCELLED))
            return result

        merged = await self._batched(
            "cancel", orders, run,
            lambda i, exc: CancelResult(i, ok=False, error=str(exc),
                                        unknown=isinstance(exc, OutcomeUnknown)),
        )
        return list(merged.values())

    # --- plumbing -----------------------------------------------------------------------

    async def _batched(
        self,
        action: str,
        ids: Sequence[int],
        run: Callable[[list[int]], Awaitable[dict[int, T]]],
        on_failure: Callable[[int, PanelClientError], T],
    ) -> dict[int, T]:
        """Runs `run` on chunks of at most BATCH_SIZE unique ids, a few at a time, and merges.

        If every chunk fails, the first failure is raised (so a one-chunk call behaves like a
        single request). If only some fail, their ids get `on_failure(id, exc)` so that what the
        panel did answer (and, for writes, did do) is not lost.
        """
        unique = _dedupe(ids)
        if not unique:
            return {}
        chunks = [unique[i : i + BATCH_SIZE] for i in range(0, len(unique), BATCH_SIZE)]
        log.debug("panel %s: %d ids in %d requests", action, len(unique), len(chunks))
        semaphore = asyncio.Semaphore(self._max_concurrency)

        async def guarded(chunk: list[int]) -> dict[int, T]:
            async with semaphore:
                return await run(chunk)

        # return_exceptions: a failed chunk must not cancel the others (they may be writes).
        outcomes = await asyncio.gather(*(guarded(c) for c in chunks), return_exceptions=True)
        failures: list[PanelClientError] = []
        for outcome in outcomes:
            if isinstance(outcome, PanelClientError):
                failures.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
        if len(failures) == len(chunks):
            raise failures[0]
        merged: dict[int, T] = {}
        for chunk, outcome in zip(chunks, outcomes, strict=True):
            if isinstance(outcome, PanelClientError):
                merged.update((i, on_failure(i, outcome)) for i in chunk)
            elif isinstance(outcome, dict):
                merged.update(outcome)
        return {i: merged[i] for i in unique}

    async def _read(self, key: str, action: str, params: Mapping[str, str | int]) -> Any:
        """A read request, retried on timeouts, transport errors, 429, 5xx and garbled answers."""
        for attempt in range(self._read_retries):
            try:
                return await self._request(key, action, params)
            except PanelHTTPError as exc:
                if exc.status_code != 429 and exc.status_code < 500:
                    raise
                if attempt + 1 >= self._read_retries:
                    raise
                failure: PanelClientError = exc
            except (PanelTransportError, PanelBadResponse) as exc:
                if attempt + 1 >= self._read_retries:
                    raise
                failure = exc
            delay = self._retry_backoff * 2**attempt
            log.debug(
                "panel %s: attempt %d failed (%s), retrying in %.2fs",
                action,
                attempt + 1,
                type(failure).__name__,
                delay,
            )
            if delay > 0:
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _write(self, key: str, action: str, params: Mapping[str, str | int]) -> Any:
        """A write request, sent once: anything but a clear answer raises OutcomeUnknown."""
        try:
            return await self._request(key, action, params)
        except (PanelError, PanelNotReached):
            raise  # the panel refused, or was never reached: nothing was done
        except PanelHTTPError as exc:
            if exc.status_code < 500:
                raise  # 3xx/4xx (429 too): the request was turned away, not carried out
            raise OutcomeUnknown(exc) from exc
        except PanelClientError as exc:  # timeout, transport error, unreadable answer
            raise OutcomeUnknown(exc) from exc

    async def _request(self, key: str, action: str, params: Mapping[str, str | int], *,
                       wait: float | None = None) -> Any:
        """Sends one form POST and returns the parsed JSON; typed errors, no retry.

        httpx exceptions are replaced outside their `except` block, so the raised error has
        neither a cause nor a context that could carry the request (and so the key).
        """
        form = {"key": key, "action": action}
        form.update({name: _form_value(value) for name, value in params.items()})
        started = time.monotonic()
        failure: PanelClientError
        try:
            response = await self._http.send(self._form_request(form, wait))
        except (httpx.ConnectError, httpx.ConnectTimeout):
            failure = PanelNotReached()  # no connection was made: nothing was sent
        except httpx.TimeoutException:
            failure = PanelTimeout()
        except httpx.TransportError:
            failure = PanelTransportError()
        except httpx.HTTPError:  # DecodingError and the like: an answer we cannot read
            failure = PanelBadResponse()
        else:
            log.debug(
                "panel %s: HTTP %d in %.2fs",
                action,
                response.status_code,
                time.monotonic() - started,
            )
            try:
                data = _parse_response(response, key)
            except PanelClientError as exc:
                _observe(action, exc, time.monotonic() - started)
                raise
            _observe(action, None, time.monotonic() - started)
            return data
        log.debug(
            "panel %s: %s after %.2fs", action, type(failure).__name__, time.monotonic() - started
        )
        _observe(action, failure, time.monotonic() - started)
        raise failure

    def _form_request(self, form: Mapping[str, str], wait: float | None) -> httpx.Request:
        """The POST of a form, as `httpx.AsyncClient.post(url, data=form, timeout=wait)` builds
        it (the same bytes: `urlencode` of the values, UTF-8), without merging the client's
        headers, cookies and timeouts into it again on every call (7 µs of a 105 µs balance
        request on the sandbox)."""
        timeouts = (self._timeouts if wait is None
                    else {"timeout": httpx.Timeout(wait).as_dict()})
        return httpx.Request("POST", self._url, headers=self._headers,
                             content=urlencode(form).encode(), extensions=timeouts)


def _observe(action: str, failure: PanelClientError | None, seconds: float) -> None:
    """Counts one request in the metrics and tells the health facts whether the panel answered.

    A refusal (`{"error": ...}`) is an answer: the panel is there. HTTP errors, timeouts,
    transport errors and unreadable pages (a Cloudflare 502) mean it was not reachable.
    """
    if failure is None:
        outcome = "ok"
    elif isinstance(failure, PanelError):
        outcome = "refused"
    elif isinstance(failure, PanelHTTPError):
        outcome = "http_error"
    elif isinstance(failure, PanelTimeout):
        outcome = "timeout"
    elif isinstance(failure, PanelTransportError):
        outcome = "transport_error"
    else:
        outcome = "bad_response"
    metrics.panel_request(action, outcome, seconds)
    health.FACTS.panel_answered(outcome in ("ok", "refused"))


def _form_value(value: str | int) -> str:
    """A form value: booleans as 1/0, numbers and text as text."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _text(response: httpx.Response) -> str:
    """The answer as text: `response.text` (the charset its Content-Type names, else UTF-8,
    undecodable bytes replaced), read straight as UTF-8 when no other charset is named:
    httpx's encoding lookup (parsing the header, a codec lookup) was 1 % of the wizard."""
    content_type = response.headers.get("content-type", "").lower()
    if "charset" not in content_type or "charset=utf-8" in content_type.replace('"', ""):
        return response.content.decode("utf-8", "replace")
    return response.text


def _parse_response(response: httpx.Response, key: str) -> Any:
    """The JSON of an answer; raises PanelHTTPError, PanelBadResponse or PanelError."""
    readable, data = _decode_json(_text(response))
    status = response.status_code
    if not 200 <= status < 300:
        # A 4xx that still says `{"error": ...}` is a refusal we can explain; 429 is retryable.
        error = _item_error(data)
        if 400 <= status < 500 and status != 429 and error is not None:
            raise PanelError(_error_text(error, key))
        raise PanelHTTPError(status)
    if not readable:
        raise PanelBadResponse()  # an HTML page (Cloudflare, maintenance) or garbage
    error = _item_error(data)
    if error is not None:
        raise PanelError(_error_text(error, key))
    return data


def _items_by_id(data: Any, id_field: str, *, write: bool = False) -> dict[int, dict[str, Any]]:
    """Indexes a list answer (`[{"order": 1, ...}, ...]`) by its id field, read as int."""
    if not isinstance(data, list):
        raise OutcomeUnknown(PanelBadResponse()) if write else PanelBadResponse()
    items: dict[int, dict[str, Any]] = {}
    for item in data:
        if isinstance(item, dict):
            item_id = to_int(item.get(id_field))
            if item_id is not None:
                items.setdefault(item_id, item)
    return items


def _cancel_accepted(value: object) -> bool:
    """Reads a cancel answer (1, "1", true, a cancel id) as accepted."""
    number = to_int(value)
    if number is not None:
        return number != 0
    return to_bool(value)
