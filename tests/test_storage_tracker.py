"""Storage the tracker's bulk path uses: due_orders, record_checks, apply_status_changes in bulk,
enqueue_notices and get_users."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.panel.models import SANDBOX_URL as PANEL
from bot.panel.models import OrderStatus
from storage import orders, outbox, users
from storage.db import close_database, open_database, set_trace_callback
from storage.orders import Observation
from storage.outbox import Notice
from storage.users import OPERATOR_ACCOUNT


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    conn = await open_database(tmp_path / "bot.sqlite3")
    yield conn
    await close_database(conn)


async def test_record_checks_writes_counts_and_next_check_but_no_history(
    db: aiosqlite.Connection,
) -> None:
    await users.upsert_user(db, telegram_id=1, name="Ann")
    order = await orders.track_order(db, panel=PANEL, owner_id=1, account=OPERATOR_ACCOUNT,
                                     panel_order_id=7)
    await orders.record_status(db, order.id, OrderStatus("In progress", Decimal("0.5"), 10, 90,
                                                        "USD"), now=100.0)
    await orders.record_missing(db, order.id, now=150.0)
    seen = OrderStatus("In progress", Decimal("0.50"), 10, 40, "USD")
    written = await orders.record_checks(db, [Observation(order.id, seen, next_check_at=500.0)],
                                         now=200.0)
    stored = await orders.get_order(db, order.id)
    assert written == 1 and stored is not None
    assert (stored.remains, stored.charge, stored.next_check_at) == (40, Decimal("0.50"), 500.0)
    assert (stored.last_checked_at, stored.updated_at, stored.lost_strikes) == (200.0, 200.0, 0)
    assert [c.status for c in await orders.order_history(db, order.id)] == ["In progress"]
    assert await outbox.count_pending_notifications(db) == 0


async def test_record_checks_leaves_an_order_whose_status_moved_meanwhile(
    db: aiosqlite.Connection,
) -> None:
    await users.upsert_user(db, telegram_id=1, name="Ann")
    order = await orders.track_order(db, panel=PANEL, owner_id=1, account=OPERATOR_ACCOUNT,
                                     panel_order_id=7)
    await orders.record_status(db, order.id, OrderStatus("Completed", remains=0), now=100.0)
    stale = OrderStatus("In progress", remains=50)
    assert await orders.record_checks(db, [Observation(order.id, stale, 300.0)], now=200.0) == 0
    stored = await orders.get_order(db, order.id)
    assert stored is not None and (stored.status, stored.remains) == ("Completed", 0)
    assert await orders.record_checks(db, []) == 0


async def test_get_users_reads_many_at_once(db: aiosqlite.Connection) -> None:
    for telegram_id in range(1, 1201):
        await users.upsert_user(db, telegram_id=telegram_id, name=f"U{telegram_id}")
    await users.set_notify(db, 600, "off")
    found = await users.get_users(db, [*range(1, 1201), 5000])
    assert len(found) == 1200 and 5000 not in found
    assert found[600].notify == "off" and found[1].name == "U1"
    assert await users.get_users(db, []) == {}


async def test_apply_status_changes_in_bulk_matches_one_by_one(db: aiosqlite.Connection) -> None:
    await users.upsert_user(db, telegram_id=1, name="Ann")
    ids = [(await orders.track_order(db, panel=PANEL, owner_id=1, account=OPERATOR_ACCOUNT,
                                     panel_order_id=100 + n)).id for n in range(250)]
    batch = [Observation(i, OrderStatus("In progress", remains=5), 50.0, Notice(1, f"#{i}"))
             for i in ids]
    # The same order twice in one batch: the second sees the first, as record_status would.
    batch.append(Observation(ids[0], OrderStatus("Completed", Decimal("1.5"), 3, 0, "USD"),
                             None, Notice(1, "done")))
    batch.append(Observation(ids[0], OrderStatus("Completed", Decimal("1.5"), 3, 0, "USD"),
                             None, Notice(1, "twice")))
    assert await orders.apply_status_changes(db, batch, now=10.0) == [*ids, ids[0]]
    history = await orders.order_history(db, ids[0])
    assert [c.status for c in history] == ["In progress", "Completed"]
    first = await orders.get_order(db, ids[0])
    assert first is not None and first.final and first.charge == Decimal("1.5")
    texts = [n.text for n in await outbox.pending_notifications(db, limit=300, now=11.0)]
    assert texts == [*(f"#{i}" for i in ids), "done"]
    other = await orders.get_order(db, ids[1])
    assert other is not None and (other.remains, other.next_check_at) == (5, 50.0)


async def test_a_batch_whose_statuses_are_as_read_is_stored_without_reading_the_rows(
    db: aiosqlite.Connection,
) -> None:
    await users.upsert_user(db, telegram_id=1, name="Ann")
    ids = [(await orders.track_order(db, panel=PANEL, owner_id=1, account=OPERATOR_ACCOUNT,
                                     panel_order_id=100 + n)).id for n in range(120)]
    for order_id in ids:
        await orders.record_status(db, order_id, OrderStatus("Pending"), now=5.0)
    batch = [Observation(i, OrderStatus("Completed", Decimal("0.27819"), 10, 0, "USD"), None,
                         Notice(1, f"#{i}") if i % 2 else None) for i in ids]
    statements: list[str] = []
    await set_trace_callback(db, statements.append)
    try:
        changed = await orders.apply_status_changes(db, batch, now=10.0,
                                                    previous=["Pending"] * len(ids))
    finally:
        await set_trace_callback(db, None)
    assert changed == ids
    assert not [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
    stored = await orders.get_order(db, ids[0])
    assert stored is not None and stored.final and stored.charge == Decimal("0.27819")
    assert (stored.status, stored.remains, stored.updated_at) == ("Completed", 0, 10.0)
    assert [c.status for c in await orders.order_history(db, ids[0])] == ["Pending", "Completed"]
    texts = [n.text for n in await outbox.pending_notifications(db, limit=300, now=11.0)]
    assert texts == [f"#{i}" for i in ids if i % 2]


async def test_a_status_stored_meanwhile_is_neither_recorded_nor_told_twice(
    db: aiosqlite.Connection,
) -> None:
    """The tracker read "In progress"; before its write, a card's Refresh stored "Partial". Its
    batch still says "was In progress": that order gets no second history row and no second
    message, and the rest of the batch is stored as usual."""
    await users.upsert_user(db, telegram_id=1, name="Ann")
    ids = [(await orders.track_order(db, panel=PANEL, owner_id=1, account=OPERATOR_ACCOUNT,
                                     panel_order_id=100 + n)).id for n in range(3)]
    for order_id in ids:
        await orders.record_status(db, order_id, OrderStatus("In progress"), now=5.0)
    partial = OrderStatus("Partial", Decimal("0.5"), 10, 40, "USD")
    await orders.record_status(db, ids[1], partial, now=7.0, notify=Notice(1, "refresh"))
    batch = [Observation(i, partial, 90.0, Notice(1, f"#{i}")) for i in ids]
    changed = await orders.apply_status_changes(db, batch, now=10.0,
                                                previous=["In progress"] * 3)
    assert changed == [ids[0], ids[2]]
    for order_id in ids:
        history = await orders.order_history(db, order_id)
        assert [c.status for c in history] == ["In progress", "Partial"]
        stored = await orders.get_order(db, order_id)
        assert stored is not None and (stored.status, stored.next_check_at) == ("Partial", 90.0)
    texts = [n.text for n in await outbox.pending_notifications(db, limit=10, now=11.0)]
    assert texts == ["refresh", f"#{ids[0]}", f"#{ids[2]}"]
    with pytest.raises(LookupError):  # an unknown order: nothing of the batch is written
        await orders.apply_status_changes(
            db, [Observation(ids[0], OrderStatus("Completed")), Observation(999, partial)],
            now=20.0, previous=["Partial", "In progress"])
    assert [c.status for c in await orders.order_history(db, ids[0])] == ["In progress",
                                                                          "Partial"]


async def test_enqueue_notices_keeps_order_and_payload(db: aiosqlite.Connection) -> None:
    notices = [(Notice(5, "one", {"order": 1}), None), (Notice(6, "two"), None)]
    assert await outbox.enqueue_notices(db, notices, now=1.0) == 2
    assert await outbox.enqueue_notices(db, []) == 0
    queued = await outbox.pending_notifications(db, now=2.0)
    assert [(n.chat_id, n.text, n.payload) for n in queued] == [
        (5, "one", {"order": 1}), (6, "two", {})
    ]


#: Texts a batch writes: non-ASCII, emoji, HTML, quotes, a literal backslash-u, line breaks.
AWKWARD = ["plain", "Order 1 · A → B", "😀 emoji 👍🏽", "ünïcödé ﷽", 'a "quote" and \\ a slash',
           "<b>&amp;</b>", "\\ud800 is not a surrogate", "", "tab\tnew\nline"]


async def test_a_batch_reads_back_every_text_and_payload_as_written(
    db: aiosqlite.Connection,
) -> None:
    await users.upsert_user(db, telegram_id=1, name="Ann")
    ids = [(await orders.track_order(db, panel=PANEL, owner_id=1, account=OPERATOR_ACCOUNT,
                                     panel_order_id=700 + n)).id for n in range(len(AWKWARD))]
    payloads = [{"order": n, "t": text, "n": [1.5, 10**18, None, True]}
                for n, text in enumerate(AWKWARD)]
    batch = [Observation(order_id, OrderStatus(text or "Pending", remains=n), 5.0,
                         Notice(1, text, payload))
             for n, (order_id, text, payload) in enumerate(zip(ids, AWKWARD, payloads,
                                                               strict=True))]
    assert await orders.apply_status_changes(db, batch, now=1.0) == ids
    queued = await outbox.pending_notifications(db, limit=50, now=2.0)
    assert [(n.text, n.payload, n.order_id) for n in queued] == list(zip(AWKWARD, payloads, ids,
                                                                         strict=True))
    for n, (order_id, text) in enumerate(zip(ids, AWKWARD, strict=True)):
        [change] = await orders.order_history(db, order_id)
        assert (change.status, change.remains) == (text or "Pending", n)


#: JSON trees as payloads hold them: text of any kind, numbers, nesting.
json_trees = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.dictionaries(st.text(max_size=8), json_trees, max_size=5))
async def test_a_payload_is_stored_as_the_standard_json_encoder_writes_it(
    db: aiosqlite.Connection, payload: dict[str, Any],
) -> None:
    """The outbox keeps one C encoder for all its payloads rather than json's per call: what it
    writes is still exactly `json.dumps(..., ensure_ascii=False)`, and reads back the same."""
    await outbox.enqueue_notices(db, [(Notice(1, "x", payload), None)], now=1.0)
    [(stored,)] = await db.execute_fetchall(
        "SELECT payload FROM notifications ORDER BY id DESC LIMIT 1")
    assert stored == json.dumps(payload, ensure_ascii=False)
    assert json.loads(stored) == payload


async def test_many_notices_are_queued_in_order_and_all_or_nothing(
    db: aiosqlite.Connection,
) -> None:
    """A big batch (more rows than one multi-row statement holds) keeps its order, and a row
    refused late leaves nothing of the earlier ones."""
    many = [(Notice(n % 7, f"#{n}", {"n": n}), None) for n in range(1_000)]
    assert await outbox.enqueue_notices(db, many, now=1.0) == 1_000
    queued = await outbox.pending_notifications(db, limit=2_000, now=2.0)
    assert [(n.chat_id, n.text, n.payload) for n in queued] == [
        (n % 7, f"#{n}", {"n": n}) for n in range(1_000)]
    assert [n.id for n in queued] == sorted(n.id for n in queued)
    bad = [*many, (Notice(1, "a lone surrogate \ud800"), None)]
    with pytest.raises(UnicodeEncodeError):
        await outbox.enqueue_notices(db, bad, now=3.0)
    assert await outbox.count_pending_notifications(db) == 1_000


async def test_queueing_10_or_1000_notices_costs_the_same_calls_into_the_database(
    db: aiosqlite.Connection,
) -> None:
    """/status with 1,000 ids queues up to 1,000 notices and history rows: the calls into the
    database must not grow with them (issue 18's constant queries)."""
    calls: list[str] = []
    execute, executemany = db.execute, db.executemany

    def counted(name: str, method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return method(*args, **kwargs)
        return call

    db.execute = counted("execute", execute)  # type: ignore[method-assign]
    db.executemany = counted("executemany", executemany)  # type: ignore[method-assign]
    counts = []
    for size in (10, 1_000):
        calls.clear()
        await outbox.enqueue_notices(db, [(Notice(n, f"#{n}"), None) for n in range(size)],
                                     now=1.0)
        counts.append(len(calls))
    assert counts[0] == counts[1], counts
    assert await outbox.count_pending_notifications(db) == 1_010


async def test_due_orders_lists_what_active_orders_lists_when_due(
    db: aiosqlite.Connection,
) -> None:
    await users.upsert_user(db, telegram_id=1, name="Ann")
    due, later, done = [(await orders.track_order(db, panel=PANEL, owner_id=1,
                                                  account=OPERATOR_ACCOUNT,
                                                  panel_order_id=n)).id for n in (1, 2, 3)]
    await orders.schedule_check(db, later, next_check_at=500.0)
    await orders.record_status(db, done, OrderStatus("Completed"))
    found = await orders.due_orders(db, due_before=100.0, panel=PANEL,
                                    accounts=[OPERATOR_ACCOUNT])
    assert [o.id for o in found] == [o.id for o in await orders.active_orders(
        db, due_before=100.0)] == [due]
    assert (found[0].panel_order_id, found[0].status, found[0].account) == (1, None, "operator")
    assert [o.id for o in await orders.due_orders(
        db, due_before=600.0, panel=PANEL, accounts=[OPERATOR_ACCOUNT])] == [due, later]
    # Orders of other panels (demo leftovers) and of accounts without a key are not read.
    assert await orders.due_orders(db, due_before=600.0, panel="https://other.example/api/v2",
                                   accounts=[OPERATOR_ACCOUNT]) == []
    assert await orders.due_orders(db, due_before=600.0, panel=PANEL, accounts=["user:9"]) == []
