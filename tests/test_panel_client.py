"""PanelClient against tiny mock panels that answer as the API v2 reference (and real panels) do."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.money import format_money, to_decimal
from bot.panel import client as client_module
from bot.panel.client import PanelClient
from bot.panel.errors import (
    OutcomeUnknown,
    PanelBadResponse,
    PanelClientError,
    PanelError,
    PanelErrorKind,
    PanelHTTPError,
    PanelNotReached,
    PanelTimeout,
    PanelTransportError,
    classify_error,
)
from bot.panel.models import CancelResult, ItemError, OrderStatus, RefillResult

URL = "https://panel.example/api/v2"
KEY = "SECRET-KEY-123"

Form = dict[str, str]
Answer = httpx.Response | Exception
Answerer = Callable[[Form], Answer]


def reply(text: str, status: int = 200, content_type: str = "application/json") -> httpx.Response:
    """An HTTP answer with exactly this body."""
    return httpx.Response(status, text=text, headers={"Content-Type": content_type})


HTML_502 = reply(
    "<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>",
    502,
    "text/html",
)


class MockPanel:
    """Records every request (form, headers) and answers with `answer(form)`."""

    def __init__(self, answer: Answerer, delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.forms: list[Form] = []
        self.requests: list[httpx.Request] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode(), keep_blank_values=True))
        self.forms.append(form)
        self.requests.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            result = self.answer(form)
        finally:
            self.in_flight -= 1
        if isinstance(result, Exception):
            raise result
        return result

    @property
    def count(self) -> int:
        """How many requests reached the panel."""
        return len(self.forms)


def always(answer: Answer) -> Answerer:
    """A panel that gives the same answer to everything."""
    return lambda form: answer


def sequence(*answers: Answer) -> Answerer:
    """A panel that gives these answers in turn (the last one repeats)."""
    queue = list(answers)
    return lambda form: queue.pop(0) if len(queue) > 1 else queue[0]


Connect = Callable[..., tuple[PanelClient, MockPanel]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Builds clients on mock panels and closes them after the test."""
    clients: list[PanelClient] = []

    def make(
        answer: Answerer, *, delay: float = 0.0, **options: Any
    ) -> tuple[PanelClient, MockPanel]:
        panel = MockPanel(answer, delay)
        options.setdefault("retry_backoff", 0)
        client = PanelClient(URL, transport=httpx.MockTransport(panel), **options)
        clients.append(client)
        return client, panel

    yield make
    for client in clients:
        await client.aclose()


# --- services ------------------------------------------------------------------------------

SERVICES_REFERENCE = """[
  {"service": 1, "name": "Followers", "type": "Default", "category": "First Category",
   "rate": "0.90", "min": "50", "max": "10000", "refill": true, "cancel": true},
  {"service": 2, "name": "Comments", "type": "Custom Comments", "category": "Second Category",
   "rate": "8", "min": "10", "max": "1500", "refill": false, "cancel": true}
]"""


async def test_services_reference_answer(connect: Connect) -> None:
    client, panel = connect(always(reply(SERVICES_REFERENCE)))
    services = await client.services(KEY)
    assert [s.service for s in services] == [1, 2]
    followers, comments = services
    assert followers.rate == Decimal("0.90") and isinstance(followers.rate, Decimal)
    assert (followers.min, followers.max, followers.refill, followers.cancel) == (
        50,
        10000,
        True,
        True,
    )
    assert comments.type == "Custom Comments" and comments.refill is False
    assert panel.forms == [{"key": KEY, "action": "services"}]


async def test_services_numbers_as_numbers_never_float(connect: Connect) -> None:
    body = """[{"service": "7", "name": "Likes", "type": "default", "category": "IG",
                "rate": 0.9, "min": 50, "max": 10000.0, "refill": "1", "cancel": 1,
                "dripfeed": true, "desc": "fast", "average_time": "5 min"}]"""
    client, _ = connect(always(reply(body)))
    (likes,) = await client.services(KEY)
    assert likes.service == 7
    assert likes.rate == Decimal("0.9") and isinstance(likes.rate, Decimal)
    assert str(likes.rate) == "0.9"
    assert (likes.min, likes.max) == (50, 10000)
    assert likes.refill and likes.cancel and likes.dripfeed
    assert likes.desc == "fast"
    assert likes.extra == {"average_time": "5 min"}


async def test_services_skips_unusable_rows(connect: Connect) -> None:
    body = """[{"service": 1, "name": "Good", "rate": "1.5", "min": "10", "max": "100"},
               {"name": "no id", "rate": "1"},
               {"service": 3, "name": "no rate"},
               {"service": "x", "rate": "1"},
               "garbage", null,
               {"service": 1, "name": "duplicate id", "rate": "9"},
               {"service": 4, "name": "Also good", "rate": "2"}]"""
    client, _ = connect(always(reply(body)))
    services = await client.services(KEY)
    assert [(s.service, s.name) for s in services] == [(1, "Good"), (4, "Also good")]


async def test_services_not_a_list_is_bad_response(connect: Connect) -> None:
    client, _ = connect(always(reply('"ok"')), read_retries=1)
    with pytest.raises(PanelBadResponse):
        await client.services(KEY)


# --- add -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ['{"order": 23501}', '{"order": "23501"}'])
async def test_add_returns_order_id_and_sends_the_form(connect: Connect, body: str) -> None:
    client, panel = connect(always(reply(body)))
    order = await client.add(KEY, 1, {"link": "https://instagram.com/x?a=1&b=2", "quantity": 500})
    assert order == 23501
    assert panel.forms == [
        {
            "key": KEY,
            "action": "add",
            "service": "1",
            "link": "https://instagram.com/x?a=1&b=2",
            "quantity": "500",
        }
    ]
    request = panel.requests[0]
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["user-agent"] == "smm-panel-bot/0.1"


async def test_a_silent_panel_is_given_up_on_after_the_timeouts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A panel that takes the connection and never answers: a read gives up after the client's
    timeout, the summary's quick balance after its own shorter one (it must not keep the
    summary waiting), both as PanelTimeout."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(client_module, "QUICK_TIMEOUT", 0.05)
    client = PanelClient(f"http://127.0.0.1:{port}/api/v2", timeout=0.6, read_retries=1)
    try:
        started = time.monotonic()
        with pytest.raises(PanelTimeout):
            await client.balance(KEY, quick=True)
        quick = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(PanelTimeout):
            await client.balance(KEY)
        full = time.monotonic() - started
    finally:
        await client.aclose()
        server.close()
    assert quick < 0.4
    assert 0.6 <= full < 3


async def test_add_custom_comments_keep_their_line_breaks(connect: Connect) -> None:
    client, panel = connect(always(reply('{"order": 5}')), user_agent="test-agent/9")
    comments = "great post!\r\nlove it 😍\nwow & more"
    assert await client.add(KEY, 2, {"link": "https://x.example/p/1", "comments": comments}) == 5
    assert panel.forms[0]["comments"] == comments
    assert panel.requests[0].headers["user-agent"] == "test-agent/9"


async def test_add_refusal_is_panel_error_sent_once(connect: Connect) -> None:
    client, panel = connect(always(reply('{"error": "neworder.error.not_enough_funds"}')))
    with pytest.raises(PanelError) as caught:
        await client.add(KEY, 1, {"link": "https://x.example", "quantity": 100})
    assert caught.value.kind is PanelErrorKind.NOT_ENOUGH_FUNDS
    assert caught.value.text == "neworder.error.not_enough_funds"
    assert panel.count == 1


@pytest.mark.parametrize(("body", "content_type"), [
    ("\ufeff{\"error\": \"Неверная ссылка\"}".encode(), "application/json"),  # BOM, no charset
    ('{"error": "Неверная ссылка"}'.encode(), 'application/json; charset="UTF-8"'),
    ('{"error": "Неверная ссылка"}'.encode("cp1251"), "text/html; charset=windows-1251"),
])
async def test_a_refusal_is_read_in_the_charset_the_panel_names(
        connect: Connect, body: bytes, content_type: str) -> None:
    answer = httpx.Response(200, content=body, headers={"Content-Type": content_type})
    client, _panel = connect(always(answer))
    with pytest.raises(PanelError) as caught:
        await client.add(KEY, 1, {"link": "https://x.example", "quantity": 100})
    assert caught.value.text == "Неверная ссылка"


async def test_add_rejects_fields_that_would_override_key_or_action(connect: Connect) -> None:
    client, panel = connect(always(reply('{"order": 1}')))
    with pytest.raises(ValueError):
        await client.add(KEY, 1, {"action": "balance"})
    assert panel.count == 0


# --- status --------------------------------------------------------------------------------


async def test_status_reference_answer(connect: Connect) -> None:
    body = """{"charge": "0.27819", "start_count": "3572", "status": "Partial", "remains": "157",
               "currency": "USD"}"""
    client, panel = connect(always(reply(body)))
    status = await client.status(KEY, 42)
    assert status == OrderStatus("Partial", Decimal("0.27819"), 3572, 157, "USD")
    assert status.is_final
    assert panel.forms == [{"key": KEY, "action": "status", "order": "42"}]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("In Progress", "In progress"),
        ("Cancelled", "Canceled"),
        ("Canceled", "Canceled"),
        ("Processing", "Processing"),
        ("Fail", "Failed"),
        ("Refunded", "Refunded"),
    ],
)
async def test_status_spellings_are_normalised(connect: Connect, raw: str, expected: str) -> None:
    body = f'{{"charge": 1.44219, "start_count": 234, "status": "{raw}", "remains": 10}}'
    client, _ = connect(always(reply(body)))
    status = await client.status(KEY, 1)
    assert status.status == expected
    assert status.charge == Decimal("1.44219")
    assert (status.start_count, status.remains) == (234, 10)


async def test_status_of_unknown_order_is_panel_error(connect: Connect) -> None:
    client, panel = connect(always(reply('{"error": "Incorrect order ID"}')))
    with pytest.raises(PanelError) as caught:
        await client.status(KEY, 10)
    assert caught.value.kind is PanelErrorKind.INCORRECT_ORDER
    assert "Incorrect order ID" in str(caught.value)
    assert panel.count == 1  # a refusal is an answer: not retried


# --- statuses (multi) ----------------------------------------------------------------------

STATUSES_REFERENCE = """{
  "1":   {"charge": "0.27819", "start_count": "3572", "status": "Partial", "remains": "157",
          "currency": "USD"},
  "10":  {"error": "Incorrect order ID"},
  "100": {"charge": "1.44219", "start_count": "234", "status": "In progress", "remains": "10",
          "currency": "USD"}
}"""


async def test_statuses_reference_answer_with_per_id_error(connect: Connect) -> None:
    client, panel = connect(always(reply(STATUSES_REFERENCE)))
    result = await client.statuses(KEY, [1, 10, 100, 1])
    assert list(result) == [1, 10, 100]
    assert result[1] == OrderStatus("Partial", Decimal("0.27819"), 3572, 157, "USD")
    assert result[10] == ItemError("Incorrect order ID")
    assert result[100] == OrderStatus("In progress", Decimal("1.44219"), 234, 10, "USD")
    assert panel.forms == [{"key": KEY, "action": "status", "orders": "1,10,100"}]


async def test_statuses_id_missing_from_answer_is_item_error(connect: Connect) -> None:
    client, _ = connect(always(reply('{"1": {"status": "Completed", "charge": 0.5}}')))
    result = await client.statuses(KEY, [1, 2])
    assert result[1] == OrderStatus("Completed", Decimal("0.5"))
    assert isinstance(result[2], ItemError)


async def test_statuses_250_ids_take_three_requests(connect: Connect) -> None:
    def answer(form: Form) -> httpx.Response:
        ids = form["orders"].split(",")
        body = ",".join(f'"{i}": {{"status": "Completed", "charge": "0.1"}}' for i in ids)
        return reply("{" + body + "}")

    client, panel = connect(answer)
    ids = list(range(1000, 1250))
    result = await client.statuses(KEY, ids + ids[:30])  # duplicates are asked once
    assert panel.count == 3
    sent = [form["orders"].split(",") for form in panel.forms]
    assert all(len(chunk) <= 100 for chunk in sent)
    assert sorted(int(i) for chunk in sent for i in chunk) == ids
    assert list(result) == ids
    assert all(isinstance(s, OrderStatus) and s.status == "Completed" for s in result.values())


async def test_batches_run_with_bounded_concurrency(connect: Connect) -> None:
    client, panel = connect(always(reply("{}")), delay=0.01, max_concurrency=2)
    result = await client.statuses(KEY, list(range(1, 1001)))
    assert panel.count == 10
    assert panel.max_in_flight == 2
    assert all(isinstance(v, ItemError) for v in result.values())


async def test_batch_methods_with_no_ids_send_nothing(connect: Connect) -> None:
    client, panel = connect(always(reply("[]")))
    assert await client.statuses(KEY, []) == {}
    assert await client.refills(KEY, []) == []
    assert await client.refill_statuses(KEY, []) == {}
    assert await client.cancel(KEY, []) == []
    assert panel.count == 0


async def test_statuses_invalid_key_raises_for_the_whole_call(connect: Connect) -> None:
    client, _ = connect(always(reply('{"error": "Invalid API key"}')))
    with pytest.raises(PanelError) as caught:
        await client.statuses(KEY, [1, 2, 3])
    assert caught.value.kind is PanelErrorKind.INVALID_KEY


async def test_statuses_keep_answered_chunks_when_one_chunk_fails(connect: Connect) -> None:
    def answer(form: Form) -> httpx.Response:
        if form["orders"].startswith("1,"):
            return reply('{"1": {"status": "Pending"}}')
        return HTML_502

    client, panel = connect(answer, read_retries=2)
    result = await client.statuses(KEY, list(range(1, 151)))
    assert result[1] == OrderStatus("Pending")
    assert isinstance(result[2], ItemError)
    assert isinstance(result[101], ItemError) and "HTTP 502" in result[101].error
    assert panel.count == 3  # one good chunk, the failing one tried twice


# --- refill --------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ['{"refill": "1"}', '{"refill": 1}'])
async def test_refill_returns_refill_id(connect: Connect, body: str) -> None:
    client, panel = connect(always(reply(body)))
    assert await client.refill(KEY, 23501) == 1
    assert panel.forms == [{"key": KEY, "action": "refill", "order": "23501"}]


async def test_refills_reference_answer_with_per_id_error(connect: Connect) -> None:
    body = """[{"order": 1, "refill": 1}, {"order": "2", "refill": "2"},
               {"order": 3, "refill": {"error": "Incorrect order ID"}}]"""
    client, panel = connect(always(reply(body)))
    assert await client.refills(KEY, [1, 2, 3, 4]) == [
        RefillResult(1, refill=1),
        RefillResult(2, refill=2),
        RefillResult(3, error="Incorrect order ID"),
        RefillResult(4, error="The panel did not answer for this id."),
    ]
    assert panel.forms == [{"key": KEY, "action": "refill", "orders": "1,2,3,4"}]


async def test_refills_with_one_id_use_the_multi_form(connect: Connect) -> None:
    client, panel = connect(always(reply('[{"order": 7, "refill": 70}]')))
    assert await client.refills(KEY, [7]) == [RefillResult(7, refill=70)]
    assert panel.forms[0]["orders"] == "7" and "order" not in panel.forms[0]


async def test_refill_status_reference_answer(connect: Connect) -> None:
    client, panel = connect(always(reply('{"status": "Completed"}')))
    assert await client.refill_status(KEY, 1) == "Completed"
    assert panel.forms == [{"key": KEY, "action": "refill_status", "refill": "1"}]


async def test_refill_status_not_found_is_panel_error(connect: Connect) -> None:
    client, _ = connect(always(reply('{"status": {"error": "Refill not found"}}')))
    with pytest.raises(PanelError, match="Refill not found"):
        await client.refill_status(KEY, 3)


async def test_refill_statuses_reference_answer_with_per_id_error(connect: Connect) -> None:
    body = """[{"refill": 1, "status": "Completed"}, {"refill": "2", "status": "Rejected"},
               {"refill": 3, "status": {"error": "Refill not found"}}]"""
    client, panel = connect(always(reply(body)))
    assert await client.refill_statuses(KEY, [1, 2, 3]) == {
        1: "Completed",
        2: "Rejected",
        3: ItemError("Refill not found"),
    }
    assert panel.forms == [{"key": KEY, "action": "refill_status", "refills": "1,2,3"}]


# --- cancel --------------------------------------------------------------------------------


async def test_cancel_reference_answer_with_per_id_error(connect: Connect) -> None:
    body = '[{"order": 9, "cancel": {"error": "Incorrect order ID"}}, {"order": 2, "cancel": 1}]'
    client, panel = connect(always(reply(body)))
    assert await client.cancel(KEY, [2, 9]) == [
        CancelResult(2, ok=True),
        CancelResult(9, ok=False, error="Incorrect order ID"),
    ]
    assert panel.forms == [{"key": KEY, "action": "cancel", "orders": "2,9"}]


async def test_cancel_accepts_string_and_boolean_answers(connect: Connect) -> None:
    body = """[{"order": "1", "cancel": "1"}, {"order": 2, "cancel": true},
               {"order": 3, "cancel": 0}, {"order": 4, "cancel": "5512"}]"""
    client, _ = connect(always(reply(body)))
    results = await client.cancel(KEY, [1, 2, 3, 4])
    assert [(r.order, r.ok) for r in results] == [(1, True), (2, True), (3, False), (4, True)]
    assert results[2].error


async def test_cancel_keeps_done_chunk_when_later_chunk_outcome_is_unknown(
    connect: Connect,
) -> None:
    def answer(form: Form) -> Answer:
        ids = form["orders"].split(",")
        if ids[0] == "1":
            return reply("[" + ",".join(f'{{"order": {i}, "cancel": 1}}' for i in ids) + "]")
        return httpx.ReadTimeout("timed out")

    client, panel = connect(answer)
    results = await client.cancel(KEY, list(range(1, 151)))
    assert panel.count == 2  # the timed-out chunk is not sent again
    assert all(r.ok for r in results[:100])
    assert all(not r.ok and r.error == str(OutcomeUnknown()) for r in results[100:])


# --- balance -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    ['{"balance": "100.84292", "currency": "USD"}', '{"balance": 100.84292, "currency": "USD"}'],
)
async def test_balance_is_exact_decimal(connect: Connect, body: str) -> None:
    client, panel = connect(always(reply(body)))
    balance = await client.balance(KEY)
    assert balance.balance == Decimal("100.84292") and isinstance(balance.balance, Decimal)
    assert str(balance.balance) == "100.84292"
    assert balance.currency == "USD"
    assert panel.forms == [{"key": KEY, "action": "balance"}]


# --- failures on reads (retried) -----------------------------------------------------------


async def test_html_502_on_read_is_http_error_after_all_retries(connect: Connect) -> None:
    client, panel = connect(always(HTML_502), read_retries=3)
    with pytest.raises(PanelHTTPError) as caught:
        await client.balance(KEY)
    assert caught.value.status_code == 502
    assert panel.count == 3


async def test_html_page_with_200_is_bad_response(connect: Connect) -> None:
    page = reply("<!DOCTYPE html><html>Just a moment...</html>", 200, "text/html")
    client, panel = connect(always(page), read_retries=2)
    with pytest.raises(PanelBadResponse):
        await client.services(KEY)
    assert panel.count == 2


async def test_invalid_json_is_bad_response(connect: Connect) -> None:
    client, panel = connect(always(reply('{"balance": "1.0",')), read_retries=1)
    with pytest.raises(PanelBadResponse):
        await client.balance(KEY)
    assert panel.count == 1


async def test_read_recovers_after_timeouts(connect: Connect) -> None:
    answers = sequence(
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("connection refused"),
        reply('{"balance": "5", "currency": "EUR"}'),
    )
    client, panel = connect(answers, read_retries=3)
    assert (await client.balance(KEY)).balance == Decimal(5)
    assert panel.count == 3


async def test_read_timeout_every_time_is_panel_timeout(connect: Connect) -> None:
    client, panel = connect(always(httpx.ReadTimeout("timed out")), read_retries=4)
    with pytest.raises(PanelTimeout):
        await client.status(KEY, 1)
    assert panel.count == 4


async def test_connection_refused_on_read_is_transport_error(connect: Connect) -> None:
    client, panel = connect(always(httpx.ConnectError("refused")), read_retries=2)
    with pytest.raises(PanelTransportError) as caught:
        await client.refill_status(KEY, 1)
    assert not isinstance(caught.value, PanelTimeout)
    assert panel.count == 2


async def test_429_on_read_is_retried_then_served(connect: Connect) -> None:
    client, panel = connect(
        sequence(reply("Too Many Requests", 429), reply('{"status": "Pending"}'))
    )
    assert await client.refill_status(KEY, 1) == "Pending"
    assert panel.count == 2


async def test_4xx_on_read_is_not_retried(connect: Connect) -> None:
    client, panel = connect(always(reply("Forbidden", 403, "text/plain")))
    with pytest.raises(PanelHTTPError) as caught:
        await client.balance(KEY)
    assert caught.value.status_code == 403
    assert panel.count == 1


async def test_4xx_with_json_error_is_panel_error(connect: Connect) -> None:
    client, panel = connect(always(reply('{"error": "Invalid API key"}', 401)))
    with pytest.raises(PanelError) as caught:
        await client.balance(KEY)
    assert caught.value.kind is PanelErrorKind.INVALID_KEY
    assert panel.count == 1


async def test_retry_backoff_is_exponential(
    connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)

    client, panel = connect(always(HTML_502), read_retries=4, retry_backoff=0.5)
    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    with pytest.raises(PanelHTTPError):
        await client.balance(KEY)
    assert delays == [0.5, 1.0, 2.0]
    assert panel.count == 4


# --- failures on writes (never retried) ----------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "cause"),
    [
        (httpx.ReadTimeout("timed out"), PanelTimeout),
        (httpx.ReadError("connection reset"), PanelTransportError),
        (HTML_502, PanelHTTPError),
        (reply("<html>maintenance</html>", 200, "text/html"), PanelBadResponse),
        (reply('{"status": "ok"}'), PanelBadResponse),
    ],
)
async def test_add_without_clear_answer_is_outcome_unknown_sent_once(
    connect: Connect, failure: Answer, cause: type[PanelClientError]
) -> None:
    client, panel = connect(always(failure), read_retries=5)
    with pytest.raises(OutcomeUnknown) as caught:
        await client.add(KEY, 1, {"link": "https://x.example", "quantity": 100})
    assert isinstance(caught.value.cause, cause)
    assert panel.count == 1


@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"),
                                     httpx.ConnectTimeout("no connection")])
async def test_add_that_never_connected_is_not_placed_and_not_unknown(
    connect: Connect, failure: Answer
) -> None:
    # No connection was made, so nothing was sent: the order is certainly not placed (the
    # wizard offers Confirm again) rather than "outcome unknown".
    client, panel = connect(always(failure), read_retries=5)
    with pytest.raises(PanelNotReached):
        await client.add(KEY, 1, {"link": "https://x.example", "quantity": 100})
    assert panel.count == 1


async def test_refill_and_cancel_timeouts_are_outcome_unknown_sent_once(connect: Connect) -> None:
    client, panel = connect(always(httpx.WriteTimeout("timed out")), read_retries=5)
    with pytest.raises(OutcomeUnknown):
        await client.refill(KEY, 1)
    with pytest.raises(OutcomeUnknown):
        await client.refills(KEY, [1, 2])
    with pytest.raises(OutcomeUnknown):
        await client.cancel(KEY, [1, 2])
    assert panel.count == 3


async def test_rate_limited_write_is_http_error_not_retried(connect: Connect) -> None:
    client, panel = connect(always(reply("slow down", 429, "text/plain")))
    with pytest.raises(PanelHTTPError) as caught:
        await client.add(KEY, 1, {"link": "https://x.example", "quantity": 100})
    assert caught.value.status_code == 429
    assert panel.count == 1


# --- error texts seen in the wild ----------------------------------------------------------

ERROR_TEXTS = [
    ("Invalid API key", PanelErrorKind.INVALID_KEY),
    ("Incorrect request", PanelErrorKind.INCORRECT_REQUEST),
    ("Incorrect order ID", PanelErrorKind.INCORRECT_ORDER),
    ("Incorrect service ID", PanelErrorKind.INCORRECT_SERVICE),
    ("Not enough funds on balance", PanelErrorKind.NOT_ENOUGH_FUNDS),
    ("Quantity less than minimal 50", PanelErrorKind.QUANTITY_TOO_LOW),
    ("Quantity more than maximum 10000", PanelErrorKind.QUANTITY_TOO_HIGH),
    ("Bad link", PanelErrorKind.BAD_LINK),
    (
        "You have active order with this link. Please wait until order being completed.",
        PanelErrorKind.DUPLICATE_LINK,
    ),
    ("neworder.error.not_enough_funds", PanelErrorKind.NOT_ENOUGH_FUNDS),
    ("neworder.error.link_duplicate", PanelErrorKind.DUPLICATE_LINK),
    ("neworder.error.min_quantity", PanelErrorKind.QUANTITY_TOO_LOW),
    ("error.incorrect_service_id", PanelErrorKind.INCORRECT_SERVICE),
    ("Incorrect keywords", PanelErrorKind.OTHER),
    ("Something odd happened", PanelErrorKind.OTHER),
]


@pytest.mark.parametrize(("text", "kind"), ERROR_TEXTS)
async def test_panel_error_texts_are_classified(
    connect: Connect, text: str, kind: PanelErrorKind
) -> None:
    assert classify_error(text) is kind
    client, panel = connect(always(reply(f'{{"error": "{text}"}}')))
    with pytest.raises(PanelError) as caught:
        await client.add(KEY, 1, {"link": "https://x.example", "quantity": 10})
    assert caught.value.kind is kind
    assert caught.value.text == text
    assert panel.count == 1


# --- secrets -------------------------------------------------------------------------------


def _exception_texts(exc: BaseException | None) -> list[str]:
    """str() and repr() of an exception and of everything chained to it."""
    texts: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts += [str(exc), repr(exc), repr(exc.args)]
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            texts += [str(cause), repr(cause)]
        exc = exc.__cause__ or exc.__context__
    return texts


async def test_api_key_never_leaks(connect: Connect, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answers: list[Answer] = [
        reply(SERVICES_REFERENCE),
        reply(f'{{"error": "Invalid API key {KEY}"}}'),  # a panel echoing the key back
        HTML_502,
        reply("<html>oops</html>"),
        reply("not json"),
        httpx.ReadTimeout(f"timed out posting key={KEY}"),
        httpx.ConnectError(f"refused key={KEY}"),
        httpx.RemoteProtocolError(f"broken key={KEY}"),
    ]
    raised: list[BaseException] = []
    for answer in answers:
        client, _ = connect(always(answer), read_retries=2)
        assert KEY not in repr(client) and KEY not in str(client)
        calls = [
            client.services(KEY),
            client.add(KEY, 1, {"link": "https://x.example", "quantity": 10}),
            client.statuses(KEY, [1, 2]),
            client.cancel(KEY, [1]),
        ]
        for call in calls:
            try:
                await call
            except PanelClientError as exc:
                raised.append(exc)
    assert len(raised) > 20
    for error in raised:
        for text in _exception_texts(error):
            assert KEY not in text
        # httpx errors carry the request (and so the form with the key): never chained
        assert not any(isinstance(e, httpx.HTTPError) for e in (error.__cause__, error.__context__))
    assert caplog.records  # debug logging did happen
    assert KEY not in caplog.text
    assert all(KEY not in str(record.args) for record in caplog.records)


async def test_a_cookie_one_users_answer_sets_never_goes_out_with_another_request(
        connect: Connect) -> None:
    """One client serves every user's key: a panel's session cookie (PHPSESSID) or a CDN's mark
    set on one answer is not kept, so the next request, another user's, carries no Cookie."""
    session = httpx.Response(200, text='{"balance": "1.00", "currency": "USD"}', headers=[
        ("Content-Type", "application/json"),
        ("Set-Cookie", "PHPSESSID=ann-session; Path=/"),
        ("Set-Cookie", "__cf_bm=mark; Path=/; Domain=panel.example"),
    ])
    client, panel = connect(always(session))
    await client.balance(KEY)
    await client.balance("ANOTHER-USERS-KEY")
    await client.statuses("ANOTHER-USERS-KEY", [1, 2])
    assert panel.count == 3
    assert [request.headers.get("Cookie") for request in panel.requests] == [None, None, None]


def test_repr_hides_url_credentials() -> None:
    client = PanelClient(f"https://user:pw@panel.example/api/v2?key={KEY}")
    assert KEY not in repr(client) and "pw" not in repr(client)
    assert "panel.example/api/v2" in repr(client)


# --- money ---------------------------------------------------------------------------------


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_to_decimal_of_a_float_has_no_binary_artefacts(value: float) -> None:
    number = to_decimal(value)
    assert number is not None
    assert float(number) == value
    assert len(number.as_tuple().digits) <= 17  # repr digits, not 0.90000000000000002220…


@given(
    st.decimals(min_value=-(10**40), max_value=10**40, allow_nan=False, allow_infinity=False),
    st.integers(min_value=2, max_value=8),
)
def test_format_money_is_fixed_point_with_thousands_separators(amount: Decimal,
                                                               places: int) -> None:
    text = format_money(amount, "USD", places)
    grouped, currency = text.split(" ")
    whole = grouped.split(".")[0].lstrip("-")
    assert all(len(group) == 3 for group in whole.split(",")[1:]) and len(whole.split(",")[0]) <= 3
    number = grouped.replace(",", "")
    assert currency == "USD"
    assert "E" not in number and "e" not in number
    _, frac = number.split(".")
    assert 2 <= len(frac) <= places
    assert abs(Decimal(number) - amount) <= Decimal(1).scaleb(-places) / 2
    assert not (number.startswith("-") and Decimal(number).is_zero())  # never "-0.00"


def test_format_money_examples() -> None:
    assert format_money(Decimal("0.27819"), "USD") == "0.2782 USD"
    assert format_money(Decimal("100.84292")) == "100.8429"
    assert format_money(Decimal("-0.00001"), "USD") == "0.00 USD"
    assert format_money(Decimal("1E+3")) == "1,000.00"
    assert format_money(Decimal("1e30")) == "1" + ",000" * 10 + ".00"
