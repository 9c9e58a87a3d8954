"""Tests for the in-memory API v2 sandbox panel, spoken to with a plain httpx client."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from bot.panel.sandbox import (
    DEFAULT_SERVICES,
    DEMO_KEY,
    ERR_DUPLICATE,
    SANDBOX_URL,
    TYPE_RULES,
    SandboxPanel,
    canonical_type,
)

OTHER_KEY = "other-key"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        """The current fake time."""
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    """A hand-moved clock."""
    return FakeClock()


@pytest.fixture
def panel(clock: FakeClock) -> SandboxPanel:
    """A sandbox with the demo key (100 USD) and a second key (5 USD)."""
    return SandboxPanel(
        keys={DEMO_KEY: Decimal("100"), OTHER_KEY: Decimal("5")}, clock=clock
    )


@pytest.fixture
async def client(panel: SandboxPanel) -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx client over the sandbox transport."""
    async with httpx.AsyncClient(transport=panel.transport()) as http:
        yield http


async def call(http: httpx.AsyncClient, key: str = DEMO_KEY, **fields: Any) -> Any:
    """Posts a form to the sandbox and returns the decoded JSON."""
    data = {"key": key, **{k: str(v) for k, v in fields.items()}}
    response = await http.post(SANDBOX_URL, data=data)
    assert response.status_code == 200
    return response.json()


async def add(http: httpx.AsyncClient, key: str = DEMO_KEY, **fields: Any) -> int:
    """Places an order that must succeed and returns its id."""
    answer = await call(http, key, action="add", **fields)
    assert "order" in answer, answer
    return int(answer["order"])


async def balance(http: httpx.AsyncClient, key: str = DEMO_KEY) -> Decimal:
    """The balance as the API reports it, read as Decimal."""
    answer = await call(http, key, action="balance")
    assert isinstance(answer["balance"], str)
    return Decimal(answer["balance"])


LINK = "https://instagram.com/someone"

# A complete, valid `add` form per service type, against a default-catalogue service.
GOOD_ADDS: dict[str, tuple[int, dict[str, str]]] = {
    "Default": (1, {"link": LINK, "quantity": "100"}),
    "SEO": (30, {"link": "https://example.com", "quantity": "500", "keywords": "smm\nbuy"}),
    "Custom Comments": (3, {"link": LINK, "comments": "\n".join(f"c{i}" for i in range(10))}),
    "Subscriptions": (4, {"username": "someone", "min": "100", "max": "200", "delay": "30"}),
    "Poll": (24, {"link": "https://t.me/chan/5", "quantity": "50", "answer_number": "2"}),
    "Package": (14, {"link": LINK}),
    "Mentions": (5, {"link": LINK, "quantity": "100", "usernames": "a\nb"}),
    "Mentions with Hashtags": (
        6, {"link": LINK, "quantity": "100", "usernames": "a\nb", "hashtags": "#x\n#y"}
    ),
    "Mentions Custom List": (7, {"link": LINK, "usernames": "\n".join(f"u{i}" for i in range(10))}),
    "Mentions Hashtag": (8, {"link": LINK, "quantity": "100", "hashtag": "#sale"}),
    "Mentions User Followers": (9, {"link": LINK, "quantity": "100", "username": "star"}),
    "Mentions Media Likers": (10, {"link": LINK, "quantity": "100", "media": LINK + "/p/1"}),
    "Comment Likes": (11, {"link": LINK, "quantity": "20", "username": "commenter"}),
    "Comment Replies": (12, {"link": LINK, "username": "commenter", "comments": "1\n2\n3\n4\n5"}),
    "Invites from Groups": (26, {"link": "https://t.me/mygroup", "quantity": "100",
                                 "groups": "https://t.me/g1\nhttps://t.me/g2"}),
}

# --- catalogue -------------------------------------------------------------------------------


async def test_services_catalogue_shape(client: httpx.AsyncClient) -> None:
    rows = await call(client, action="services")
    assert isinstance(rows, list) and 25 <= len(rows) <= 40
    assert rows[0] == {
        "service": 1, "name": "Instagram Followers", "type": "Default", "category": "Instagram",
        "rate": "0.90", "min": "50", "max": "10000", "refill": True, "cancel": True,
        "dripfeed": True, "desc": rows[0]["desc"],
    }
    assert {row["type"] for row in rows} == set(TYPE_RULES)
    assert len({row["category"] for row in rows}) >= 6
    for row in rows:
        assert isinstance(row["service"], int)
        assert all(isinstance(row[k], str) for k in ("rate", "min", "max"))
        Decimal(row["rate"])
        assert int(row["min"]) <= int(row["max"])
    assert any(row.get("dripfeed") is True for row in rows)
    assert any("dripfeed" not in row for row in rows)
    assert any(row.get("desc") for row in rows)
    assert {row["refill"] for row in rows} == {True, False}
    assert {row["cancel"] for row in rows} == {True, False}
    assert len({row["service"] for row in rows}) == len(rows)


async def test_services_override_with_odd_spellings(clock: FakeClock) -> None:
    rows = [
        {"service": "7", "name": "x", "type": "default", "category": "c", "rate": 1.5,
         "min": 10, "max": 100},
        {"service": 8, "name": "y", "type": "SEO2", "category": "c", "rate": "2", "min": "10",
         "max": "100"},
    ]
    panel = SandboxPanel(services=rows, clock=clock)
    async with httpx.AsyncClient(transport=panel.transport()) as http:
        assert await call(http, action="services") == rows
        order_id = await add(http, service=7, link=LINK, quantity=10)
        assert panel.order(order_id)["charge"] == Decimal("0.015")
        answer = await call(http, action="add", service=8, link=LINK + "2", quantity=10)
        assert answer == {"error": "Incorrect request"}  # SEO needs keywords


def test_canonical_type_spellings() -> None:
    assert canonical_type("default") == "Default"
    assert canonical_type("SEO2") == "SEO"
    assert canonical_type("Invites From Groups") == "Invites from Groups"
    assert canonical_type("Mentions Users Followers") == "Mentions User Followers"
    assert canonical_type("custom_comments") == "Custom Comments"
    assert canonical_type("Something New") == "Default"


# --- key, action, balance --------------------------------------------------------------------


async def test_balance_is_string_with_currency(client: httpx.AsyncClient) -> None:
    assert await call(client, action="balance") == {"balance": "100", "currency": "USD"}
    assert await call(client, OTHER_KEY, action="balance") == {"balance": "5", "currency": "USD"}


async def test_currency_and_default_demo_key(clock: FakeClock) -> None:
    panel = SandboxPanel(clock=clock, currency="EUR")
    async with httpx.AsyncClient(transport=panel.transport()) as http:
        assert await call(http, action="balance") == {"balance": "100", "currency": "EUR"}
        panel.add_key("new", Decimal("2.5"))
        assert await call(http, "new", action="balance") == {"balance": "2.5", "currency": "EUR"}


@pytest.mark.parametrize("action", ["services", "add", "status", "balance", "nope"])
async def test_invalid_key(client: httpx.AsyncClient, action: str) -> None:
    assert await call(client, "wrong", action=action) == {"error": "Invalid API key"}


async def test_missing_key(client: httpx.AsyncClient) -> None:
    response = await client.post(SANDBOX_URL, data={"action": "balance"})
    assert response.json() == {"error": "Invalid API key"}


async def test_unknown_or_missing_action(client: httpx.AsyncClient) -> None:
    assert await call(client, action="frobnicate") == {"error": "Incorrect request"}
    assert await call(client) == {"error": "Incorrect request"}


async def test_json_body_is_not_a_form(client: httpx.AsyncClient) -> None:
    response = await client.post(SANDBOX_URL, json={"key": DEMO_KEY, "action": "balance"})
    assert response.json() == {"error": "Invalid API key"}


async def test_get_is_not_a_post(client: httpx.AsyncClient) -> None:
    response = await client.get(SANDBOX_URL, params={"key": DEMO_KEY, "action": "balance"})
    assert response.json() == {"error": "Invalid API key"}


async def test_requests_recorded(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    await call(client, action="balance")
    await add(client, service=1, link=LINK, quantity=100)
    assert panel.requests[0] == {"key": DEMO_KEY, "action": "balance"}
    assert panel.requests_for("add") == [
        {"key": DEMO_KEY, "action": "add", "service": "1", "link": LINK, "quantity": "100"}
    ]


# --- add -------------------------------------------------------------------------------------


async def test_add_default_charges_exactly(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    assert await call(client, action="add", service=1, link=LINK, quantity=1000) == {
        "order": 23501
    }
    assert await balance(client) == Decimal("99.10")
    second = await add(client, service=2, link=LINK + "/p/2", quantity=37)
    assert second == 23502
    assert panel.order(second)["charge"] == Decimal("0.00925")  # 0.25 * 37 / 1000
    assert await balance(client) == Decimal("99.09075")
    status = await call(client, action="status", order=second)
    assert status["charge"] == "0.00925"


async def test_string_ids(clock: FakeClock) -> None:
    panel = SandboxPanel(clock=clock, string_ids=True)
    async with httpx.AsyncClient(transport=panel.transport()) as http:
        assert await call(http, action="add", service=1, link=LINK, quantity=50) == {
            "order": "23501"
        }


@pytest.mark.parametrize("type_name", sorted(GOOD_ADDS))
async def test_add_each_type_good(
    panel: SandboxPanel, client: httpx.AsyncClient, type_name: str
) -> None:
    service, fields = GOOD_ADDS[type_name]
    assert DEFAULT_SERVICES[service - 1]["type"] == type_name
    order_id = await add(client, service=service, **fields)
    assert panel.order(order_id)["type"] == type_name
    assert panel.order(order_id)["status"] == "Pending"


@pytest.mark.parametrize(
    ("type_name", "missing"),
    [(name, f) for name, rule in sorted(TYPE_RULES.items()) for f in rule.required],
)
async def test_add_each_type_missing_field(
    client: httpx.AsyncClient, type_name: str, missing: str
) -> None:
    service, fields = GOOD_ADDS[type_name]
    partial = {k: v for k, v in fields.items() if k != missing}
    assert await call(client, action="add", service=service, **partial) == {
        "error": "Incorrect request"
    }
    blank = {**fields, missing: "  "}
    assert await call(client, action="add", service=service, **blank) == {
        "error": "Incorrect request"
    }
    assert await balance(client) == Decimal("100")


def test_good_adds_cover_every_type_and_field() -> None:
    assert set(GOOD_ADDS) == set(TYPE_RULES)
    for name, (_, fields) in GOOD_ADDS.items():
        assert set(TYPE_RULES[name].required) <= set(fields)


async def test_list_field_of_blank_lines_is_missing(client: httpx.AsyncClient) -> None:
    answer = await call(client, action="add", service=30, link="https://example.com",
                        quantity=500, keywords="\r\n \n")
    assert answer == {"error": "Incorrect request"}


async def test_add_missing_or_bad_service(client: httpx.AsyncClient) -> None:
    assert await call(client, action="add", link=LINK, quantity=100) == {
        "error": "Incorrect request"
    }
    for service in ("999", "abc", "-1"):
        answer = await call(client, action="add", service=service, link=LINK, quantity=100)
        assert answer == {"error": "Incorrect service ID"}


async def test_add_non_numeric_quantity(client: httpx.AsyncClient) -> None:
    for quantity in ("1,000", "100.5", "abc", "1e3"):
        answer = await call(client, action="add", service=1, link=LINK, quantity=quantity)
        assert answer == {"error": "Incorrect request"}, quantity


async def test_quantity_limits(client: httpx.AsyncClient) -> None:
    assert await call(client, action="add", service=1, link=LINK, quantity=49) == {
        "error": "Quantity less than minimal 50"
    }
    assert await call(client, action="add", service=1, link=LINK, quantity=10001) == {
        "error": "Quantity more than maximum 10000"
    }
    await add(client, service=1, link=LINK, quantity=50)
    await add(client, service=1, link=LINK + "2", quantity=10000)


@pytest.mark.parametrize(
    "link", ["instagram.com/someone", "ftp://example.com", "https://localhost", "https://", "x"]
)
async def test_bad_link(client: httpx.AsyncClient, link: str) -> None:
    answer = await call(client, action="add", service=1, link=link, quantity=100)
    assert answer == {"error": "Bad link"}


async def test_not_enough_funds(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    # 5 USD at 0.90 per 1000: 5555 costs 4.9995, 5556 costs 5.0004.
    assert await call(client, OTHER_KEY, action="add", service=1, link=LINK, quantity=5556) == {
        "error": "Not enough funds on balance"
    }
    assert await balance(client, OTHER_KEY) == Decimal("5")
    assert panel.orders_of(OTHER_KEY) == []
    await add(client, OTHER_KEY, service=1, link=LINK, quantity=5555)
    assert await balance(client, OTHER_KEY) == Decimal("0.0005")


async def test_exact_balance_is_enough(client: httpx.AsyncClient, panel: SandboxPanel) -> None:
    panel.add_key("tight", Decimal("0.09"))
    await add(client, "tight", service=1, link=LINK, quantity=100)
    assert await balance(client, "tight") == Decimal(0)


async def test_duplicate_active_link(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    first = await add(client, service=1, link=LINK, quantity=100)
    answer = await call(client, action="add", service=2, link=LINK, quantity=100)
    assert answer == {"error": ERR_DUPLICATE}
    assert ERR_DUPLICATE == (
        "You have active order with this link. Please wait until order being completed."
    )
    await add(client, OTHER_KEY, service=1, link=LINK, quantity=100)  # another key may
    panel.set_status(first, "Completed")
    await add(client, service=2, link=LINK, quantity=100)  # final orders don't block


async def test_custom_comments_quantity_is_lines(
    panel: SandboxPanel, client: httpx.AsyncClient
) -> None:
    comments = "great\r\nnice\n\n  \nwow\r\n" + "\n".join(f"c{i}" for i in range(9))
    order_id = await add(client, service=3, link=LINK, comments=comments)
    assert panel.order(order_id)["quantity"] == 12
    assert panel.order(order_id)["charge"] == Decimal("0.096")  # 8 * 12 / 1000
    answer = await call(client, action="add", service=3, link=LINK + "x", comments="a\nb")
    assert answer == {"error": "Quantity less than minimal 10"}


async def test_lines_quantity_for_custom_list_and_replies(
    panel: SandboxPanel, client: httpx.AsyncClient
) -> None:
    answer = await call(client, action="add", service=7, link=LINK, usernames="a\nb")
    assert answer == {"error": "Quantity less than minimal 10"}
    replies = "\n".join(f"r{i}" for i in range(501))
    answer = await call(client, action="add", service=12, link=LINK, username="u",
                        comments=replies)
    assert answer == {"error": "Quantity more than maximum 500"}
    order_id = await add(client, service=12, link=LINK, username="u", comments="1\n2\n3\n4\n5")
    assert panel.order(order_id)["charge"] == Decimal("0.045")  # 9 * 5 / 1000


async def test_package_charges_rate(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    order_id = await add(client, service=14, link=LINK, quantity=500)  # quantity is ignored
    snapshot = panel.order(order_id)
    assert (snapshot["quantity"], snapshot["charge"]) == (1, Decimal("4.99"))
    assert await balance(client) == Decimal("95.01")


async def test_poll_answer_number(client: httpx.AsyncClient) -> None:
    for bad in ("0", "x", "-1"):
        answer = await call(client, action="add", service=24, link="https://t.me/c/1",
                            quantity=50, answer_number=bad)
        assert answer == {"error": "Incorrect request"}


async def test_subscriptions(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    base = {"username": "someone", "min": "100", "max": "200", "delay": "0"}
    order_id = await add(client, service=4, **base, posts="3", old_posts="2",
                         expiry="31/12/2030")
    # Charged one post's worth of the max up front, whatever `posts` says: 0.30 * 200 / 1000.
    assert panel.order(order_id)["charge"] == Decimal("0.06")
    async def err(**fields: str) -> Any:
        return (await call(client, action="add", service=4, **{**base, **fields}))["error"]
    assert await err(delay="7") == "Incorrect request"
    assert await err(expiry="2030-12-31") == "Incorrect request"
    assert await err(expiry="31/13/2030") == "Incorrect request"
    assert await err(min="300", max="200") == "Incorrect request"
    assert await err(posts="0") == "Incorrect request"
    assert await err(min="99") == "Quantity less than minimal 100"
    assert await err(max="5001") == "Quantity more than maximum 5000"
    for delay in (0, 5, 90, 600):
        await add(client, service=4, **{**base, "delay": str(delay)})


async def test_dripfeed(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    order_id = await add(client, service=1, link=LINK, quantity=1000, runs=5, interval=30)
    snapshot = panel.order(order_id)
    assert (snapshot["runs"], snapshot["interval"], snapshot["total"]) == (5, 30, 5000)
    assert snapshot["charge"] == Decimal("4.5")  # 0.90 * 5000 / 1000
    status = await call(client, action="status", order=order_id)
    assert status["remains"] == "5000"
    answer = await call(client, action="add", service=1, link=LINK + "2", quantity=2001,
                        runs=5, interval=30)
    assert answer == {"error": "Quantity more than maximum 10000"}
    halves: list[dict[str, Any]] = [{"runs": 5}, {"interval": 30}, {"runs": 0, "interval": 30}]
    for only in halves:
        answer = await call(client, action="add", service=1, link=LINK + "3", quantity=100,
                            **only)
        assert answer == {"error": "Incorrect request"}
    # Service 13 is Default without drip-feed.
    answer = await call(client, action="add", service=13, link=LINK + "4", quantity=100,
                        runs=2, interval=10)
    assert answer == {"error": "Incorrect request"}


# --- status ----------------------------------------------------------------------------------


async def test_status_single(client: httpx.AsyncClient) -> None:
    order_id = await add(client, service=1, link=LINK, quantity=300)
    assert await call(client, action="status", order=order_id) == {
        "charge": "0.27", "start_count": "0", "status": "Pending", "remains": "300",
        "currency": "USD",
    }
    assert await call(client, action="status", order=1) == {"error": "Incorrect order ID"}
    assert await call(client, action="status", order="abc") == {"error": "Incorrect order ID"}
    assert await call(client, OTHER_KEY, action="status", order=order_id) == {
        "error": "Incorrect order ID"
    }
    assert await call(client, action="status") == {"error": "Incorrect request"}


async def test_status_multi(client: httpx.AsyncClient) -> None:
    first = await add(client, service=1, link=LINK, quantity=300)
    theirs = await add(client, OTHER_KEY, service=1, link=LINK, quantity=100)
    answer = await call(client, action="status", orders=f"{first}, 10,{theirs}")
    assert list(answer) == [str(first), "10", str(theirs)]
    assert answer[str(first)]["status"] == "Pending"
    assert all(isinstance(v, str) for v in answer[str(first)].values())
    assert answer["10"] == {"error": "Incorrect order ID"}
    assert answer[str(theirs)] == {"error": "Incorrect order ID"}


async def test_status_multi_limit(client: httpx.AsyncClient) -> None:
    ids = [str(23501 + i) for i in range(101)]
    assert await call(client, action="status", orders=",".join(ids)) == {
        "error": "Incorrect request"
    }
    answer = await call(client, action="status", orders=",".join(ids[:100]))
    assert len(answer) == 100
    assert await call(client, action="status", orders="") == {"error": "Incorrect request"}


# --- progression -----------------------------------------------------------------------------


async def test_progression(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    order_id = await add(client, service=1, link=LINK, quantity=1000)
    seen: list[tuple[str, int]] = []
    start_counts: set[str] = set()
    for _ in range(25):
        status = await call(client, action="status", order=order_id)
        seen.append((status["status"], int(status["remains"])))
        if status["status"] != "Pending":
            start_counts.add(status["start_count"])
        panel.advance(5)
    statuses = [s for s, _ in seen]
    assert statuses[0] == "Pending"
    assert "In progress" in statuses
    assert statuses[-1] == "Completed"
    assert statuses.index("Completed") * 5 <= 120
    remains = [r for _, r in seen]
    assert remains == sorted(remains, reverse=True)
    assert len({r for s, r in seen if s == "In progress"}) > 3
    assert seen[-1][1] == 0
    assert len(start_counts) == 1 and int(start_counts.pop()) > 0
    assert await balance(client) == Decimal("99.1")


async def test_every_order_final_within_two_minutes(
    panel: SandboxPanel, client: httpx.AsyncClient
) -> None:
    ids = [await add(client, service=1, link=f"{LINK}{i}", quantity=700) for i in range(14)]
    panel.advance(59)
    assert {panel.order(i)["status"] for i in ids} == {"In progress"}
    panel.advance(61)
    assert {panel.order(i)["status"] for i in ids} == {"Completed", "Partial"}


async def test_partial_every_fifth_order_refunds(
    panel: SandboxPanel, client: httpx.AsyncClient
) -> None:
    ids = [await add(client, service=1, link=f"{LINK}{i}", quantity=700) for i in range(10)]
    assert await balance(client) == Decimal("100") - Decimal("6.3")
    panel.advance(300)
    answer = await call(client, action="status", orders=",".join(map(str, ids)))
    partial = [i for i in ids if answer[str(i)]["status"] == "Partial"]
    assert partial == [ids[4], ids[9]]
    remains = int(answer[str(ids[4])]["remains"])
    assert remains == 100  # 700 // 7
    refund = Decimal("0.90") * remains / 1000
    assert Decimal(answer[str(ids[4])]["charge"]) == Decimal("0.63") - refund
    assert await balance(client) == Decimal("100") - Decimal("6.3") + 2 * refund


async def test_a_finished_order_refunds_and_frees_its_link_though_no_one_asked_about_it(
    panel: SandboxPanel, client: httpx.AsyncClient
) -> None:
    ids = [await add(client, service=1, link=f"{LINK}{i}", quantity=700) for i in range(5)]
    assert (await call(client, action="add", service=1, link=f"{LINK}4",
                       quantity=100))["error"] == ERR_DUPLICATE
    panel.advance(300)
    # Only balance and add: no status request has read the orders since they were placed.
    assert await balance(client) == Decimal("100") - Decimal("3.15") + Decimal("0.09")
    await add(client, service=1, link=f"{LINK}4", quantity=100)  # its order 5 is Partial now
    assert panel.order(ids[4])["status"] == "Partial"


async def test_a_request_brings_up_to_date_the_orders_it_reads_and_those_that_finish(
    panel: SandboxPanel, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    panel.add_key(DEMO_KEY, Decimal("10000"))
    ids = [await add(client, service=1, link=f"{LINK}{i}", quantity=100) for i in range(300)]
    looked_at: list[int] = []
    natural = SandboxPanel._natural

    def counted(order: Any, now: float) -> tuple[str, int]:
        looked_at.append(order.id)
        return natural(order, now)

    monkeypatch.setattr(SandboxPanel, "_natural", staticmethod(counted))
    panel.advance(30)
    await balance(client)  # 300 orders on their way: none of them is walked
    assert looked_at == []
    assert (await call(client, action="status", order=ids[7]))["status"] == "In progress"
    assert looked_at == [ids[7]]
    looked_at.clear()
    panel.advance(35)  # 65 s: the orders due to finish at 60 s (every 7th) finish, only they
    assert sorted(looked_at) == [i for n, i in enumerate(ids, start=1) if n % 7 == 0]


async def test_speed_scales_real_time(clock: FakeClock) -> None:
    panel = SandboxPanel(clock=clock, speed=60)
    async with httpx.AsyncClient(transport=panel.transport()) as http:
        order_id = await add(http, service=1, link=LINK, quantity=100)
        clock.t += 1
        assert (await call(http, action="status", order=order_id))["status"] == "In progress"
        clock.t += 1
        assert (await call(http, action="status", order=order_id))["status"] == "Completed"


async def test_set_status_and_complete_all(
    panel: SandboxPanel, client: httpx.AsyncClient
) -> None:
    a = await add(client, service=1, link=LINK + "a", quantity=1000)
    b = await add(client, service=1, link=LINK + "b", quantity=1000)
    c = await add(client, service=1, link=LINK + "c", quantity=1000)
    panel.set_status(a, "Partial", remains=400)
    panel.set_status(b, "In progress", remains=600)
    status = await call(client, action="status", order=a)
    assert int(status.pop("start_count")) > 0
    assert status == {"charge": "0.54", "status": "Partial", "remains": "400", "currency": "USD"}
    assert await balance(client) == Decimal("100") - Decimal("2.7") + Decimal("0.36")
    panel.advance(1000)
    assert panel.order(b)["status"] == "In progress"  # forced orders stay put
    assert panel.order(c)["status"] == "Completed"
    panel.complete_all()
    assert (panel.order(b)["status"], panel.order(b)["remains"]) == ("Completed", 0)
    panel.set_status(a, "Cancelled")
    assert panel.order(a)["charge"] == Decimal(0)
    assert await balance(client) == Decimal("100") - Decimal("1.8")
    with pytest.raises(ValueError):
        panel.set_status(a, "Partial", remains=1001)


async def test_orders_of(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    mine = await add(client, service=1, link=LINK, quantity=100)
    await add(client, OTHER_KEY, service=1, link=LINK, quantity=100)
    snapshots = panel.orders_of(DEMO_KEY)
    assert [s["order"] for s in snapshots] == [mine]
    assert "key" not in snapshots[0]["fields"]
    assert DEMO_KEY not in repr(panel._orders[mine])


# --- refill ----------------------------------------------------------------------------------


async def test_refill_single(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    order_id = await add(client, service=1, link=LINK, quantity=100)
    assert await call(client, action="refill", order=order_id) == {
        "error": "Refill is not available for this order"
    }
    panel.advance(200)
    assert await call(client, action="refill", order=order_id) == {"refill": "1"}
    assert await call(client, action="refill", order=order_id) == {
        "error": "Refill is already in progress for this order"
    }
    assert await call(client, action="refill", order=999) == {"error": "Incorrect order ID"}
    assert await call(client, OTHER_KEY, action="refill", order=order_id) == {
        "error": "Incorrect order ID"
    }
    no_refill = await add(client, service=2, link=LINK + "/p", quantity=100)
    panel.set_status(no_refill, "Completed")
    assert await call(client, action="refill", order=no_refill) == {
        "error": "Refill is not available for this order"
    }
    assert await call(client, action="refill") == {"error": "Incorrect request"}


async def test_refill_multi_and_status(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    ids = [await add(client, service=1, link=f"{LINK}{i}", quantity=100) for i in range(3)]
    panel.set_status(ids[0], "Completed")
    panel.set_status(ids[1], "Partial", remains=10)
    answer = await call(client, action="refill", orders=f"{ids[0]},{ids[1]},{ids[2]},9")
    assert answer == [
        {"order": ids[0], "refill": 1},
        {"order": ids[1], "refill": 2},
        {"order": ids[2], "refill": {"error": "Refill is not available for this order"}},
        {"order": 9, "refill": {"error": "Incorrect order ID"}},
    ]
    assert await call(client, action="refill_status", refill=1) == {"status": "Pending"}
    assert await call(client, action="refill_status", refill=77) == {"error": "Refill not found"}
    assert await call(client, OTHER_KEY, action="refill_status", refill=1) == {
        "error": "Refill not found"
    }
    panel.advance(15)
    assert await call(client, action="refill_status", refills="1,2,3") == [
        {"refill": 1, "status": "In progress"},
        {"refill": 2, "status": "In progress"},
        {"refill": 3, "status": {"error": "Refill not found"}},
    ]
    panel.advance(60)
    assert await call(client, action="refill_status", refills="1,2") == [
        {"refill": 1, "status": "Completed"},
        {"refill": 2, "status": "Completed"},
    ]
    # A third refill (of a finished refill's order) is rejected: every 3rd one is.
    assert await call(client, action="refill", order=ids[0]) == {"refill": "3"}
    panel.advance(100)
    assert await call(client, action="refill_status", refill=3) == {"status": "Rejected"}
    panel.set_refill_status(3, "Completed")
    assert panel.refill(3) == {"refill": 3, "order": ids[0], "status": "Completed"}
    too_many = ",".join(str(i) for i in range(1, 102))
    assert await call(client, action="refill", orders=too_many) == {"error": "Incorrect request"}
    assert await call(client, action="refill_status", refills=too_many) == {
        "error": "Incorrect request"
    }
    assert await call(client, action="refill_status") == {"error": "Incorrect request"}


# --- cancel ----------------------------------------------------------------------------------


async def test_cancel(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    cancellable = await add(client, service=1, link=LINK, quantity=1000)
    not_cancellable = await add(client, service=15, link="https://tiktok.com/@x", quantity=100)
    done = await add(client, service=1, link=LINK + "2", quantity=100)
    panel.set_status(done, "Completed")
    assert await balance(client) == Decimal("100") - Decimal("0.9") - Decimal("0.12") - Decimal(
        "0.09"
    )
    answer = await call(
        client, action="cancel", orders=f"9,{cancellable},{not_cancellable},{done}"
    )
    assert answer == [
        {"order": 9, "cancel": {"error": "Incorrect order ID"}},
        {"order": cancellable, "cancel": 1},
        {"order": not_cancellable, "cancel": {"error": "Cancel is not available for this order"}},
        {"order": done, "cancel": {"error": "Cancel is not available for this order"}},
    ]
    status = await call(client, action="status", order=cancellable)
    assert (status["status"], status["remains"], Decimal(status["charge"])) == (
        "Canceled", "1000", Decimal(0)
    )
    assert await balance(client) == Decimal("100") - Decimal("0.12") - Decimal("0.09")
    panel.advance(500)
    assert panel.order(cancellable)["status"] == "Canceled"
    again = await call(client, action="cancel", orders=str(cancellable))
    assert again == [{"order": cancellable, "cancel": {"error": "Cancel is not available for "
                                                                "this order"}}]
    assert await call(client, OTHER_KEY, action="cancel", orders=str(done)) == [
        {"order": done, "cancel": {"error": "Incorrect order ID"}}
    ]
    assert await call(client, action="cancel", order=done) == {"error": "Incorrect request"}
    too_many = ",".join(str(i) for i in range(1, 102))
    assert await call(client, action="cancel", orders=too_many) == {"error": "Incorrect request"}


# --- failures and latency --------------------------------------------------------------------


async def test_fail_timeout_does_not_process(
    panel: SandboxPanel, client: httpx.AsyncClient
) -> None:
    panel.fail_next("add", "timeout")
    await call(client, action="balance")  # other actions are untouched
    with pytest.raises(httpx.ReadTimeout):
        await client.post(SANDBOX_URL, data={"key": DEMO_KEY, "action": "add", "service": "1",
                                             "link": LINK, "quantity": "100"})
    assert panel.orders_of(DEMO_KEY) == []
    assert len(panel.requests_for("add")) == 1  # the attempt is recorded
    await add(client, service=1, link=LINK, quantity=100)  # used up


async def test_fail_timeout_after_processes(
    panel: SandboxPanel, client: httpx.AsyncClient
) -> None:
    panel.fail_next("add", "timeout_after")
    with pytest.raises(httpx.ReadTimeout):
        await client.post(SANDBOX_URL, data={"key": DEMO_KEY, "action": "add", "service": "1",
                                             "link": LINK, "quantity": "100"})
    assert len(panel.orders_of(DEMO_KEY)) == 1
    assert await balance(client) == Decimal("99.91")


async def test_fail_connect(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    panel.fail_next(None, "connect", times=2)
    for _ in range(2):
        with pytest.raises(httpx.ConnectError):
            await client.post(SANDBOX_URL, data={"key": DEMO_KEY, "action": "balance"})
    assert panel.pending_failures == []
    await call(client, action="balance")


@pytest.mark.parametrize("mode", ["html502", "html503"])
async def test_fail_html(panel: SandboxPanel, client: httpx.AsyncClient, mode: str) -> None:
    panel.fail_next("status", mode)
    response = await client.post(SANDBOX_URL, data={"key": DEMO_KEY, "action": "status",
                                                    "order": "1"})
    assert response.status_code == int(mode[-3:])
    assert response.headers["content-type"].startswith("text/html")
    assert "cloudflare" in response.text.lower() and "<html" in response.text
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_fail_badjson(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    panel.fail_next("services", "badjson")
    response = await client.post(SANDBOX_URL, data={"key": DEMO_KEY, "action": "services"})
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_fail_error_text(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    panel.fail_next("add", "error:neworder.error.not_enough_funds")
    answer = await call(client, action="add", service=1, link=LINK, quantity=100)
    assert answer == {"error": "neworder.error.not_enough_funds"}
    assert panel.orders_of(DEMO_KEY) == []


def test_fail_unknown_mode(panel: SandboxPanel) -> None:
    with pytest.raises(ValueError):
        panel.fail_next("add", "explode")


async def test_down(panel: SandboxPanel, client: httpx.AsyncClient) -> None:
    panel.down = True
    for action in ("balance", "services", "add"):
        response = await client.post(SANDBOX_URL, data={"key": DEMO_KEY, "action": action})
        assert response.status_code == 502
    panel.down = False
    assert (await call(client, action="balance"))["balance"] == "100"


async def test_latency() -> None:
    panel = SandboxPanel(latency=0.05)
    async with httpx.AsyncClient(transport=panel.transport()) as http:
        started = time.monotonic()
        await call(http, action="balance")
        assert time.monotonic() - started >= 0.05


async def test_client_helper_and_base_url() -> None:
    panel = SandboxPanel()
    async with panel.client(base_url=SANDBOX_URL) as http:
        response = await http.post("", data={"key": DEMO_KEY, "action": "balance"})
        assert response.json()["balance"] == "100"
