"""storage.orders: drafts, the atomic claim, placement outcomes, tracking and status history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bot.panel.models import SANDBOX_URL as PANEL
from bot.panel.models import OrderStatus, normalize_status
from storage import orders
from storage.db import close_database, open_database, transaction
from storage.orders import Observation
from storage.outbox import Notice, count_pending_notifications, pending_notifications
from storage.users import OPERATOR_ACCOUNT, upsert_user, user_account

OWNER = 7
OTHER = 8


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    conn = await open_database(tmp_path / "bot.sqlite3")
    await upsert_user(conn, telegram_id=OWNER, name="Ann")
    await upsert_user(conn, telegram_id=OTHER, name="Bob")
    yield conn
    await close_database(conn)


async def draft(db: aiosqlite.Connection, owner_id: int = OWNER, **overrides: Any) -> int:
    """A draft of 100 followers at 0.90 per 1000."""
    values: dict[str, Any] = {
        "owner_id": owner_id,
        "account": OPERATOR_ACCOUNT,
        "service_id": 1,
        "service_name": "Followers",
        "service_type": "Default",
        "rate": Decimal("0.90"),
        "currency": "USD",
        "can_refill": True,
        "can_cancel": False,
        "fields": {"service": "1", "link": "https://t.me/x", "quantity": "100"},
        "quantity": 100,
        "cost": Decimal("0.090"),
    }
    values.update(overrides)
    return await orders.save_draft(db, panel=PANEL, **values)


async def placed(db: aiosqlite.Connection, panel_order_id: int, owner_id: int = OWNER) -> int:
    """An order claimed and placed under the operator account."""
    order_id = await draft(db, owner_id)
    assert await orders.claim_order(db, order_id, owner_id=owner_id)
    assert await orders.mark_placed(db, order_id, panel_order_id=panel_order_id)
    return order_id


def status(name: str, charge: str | None = "0.09", remains: int | None = 10) -> OrderStatus:
    """A panel status answer (spellings normalised as the panel client does)."""
    return OrderStatus(
        status=normalize_status(name),
        charge=None if charge is None else Decimal(charge),
        start_count=3572,
        remains=remains,
        currency="USD",
    )


async def test_create_draft_keeps_the_snapshot_and_exact_money(db: aiosqlite.Connection) -> None:
    order_id = await draft(db, fields={"link": "ссылка", "comments": "a\nb"}, quantity=None)
    order = await orders.get_order(db, order_id)
    assert order is not None
    assert order.state == "draft"
    assert (order.owner_id, order.account, order.panel_order_id) == (OWNER, "operator", None)
    assert (order.service_id, order.service_name, order.service_type) == (1, "Followers", "Default")
    assert order.service_rate == Decimal("0.90") and str(order.service_rate) == "0.90"
    assert order.cost == Decimal("0.090") and str(order.cost) == "0.090"
    assert (order.service_currency, order.service_refill, order.service_cancel) == (
        "USD",
        True,
        False,
    )
    assert order.fields == {"link": "ссылка", "comments": "a\nb"}
    assert order.quantity is None
    assert order.status is None and not order.final


async def test_create_draft_rejects_bad_accounts_and_unknown_owners(
    db: aiosqlite.Connection,
) -> None:
    with pytest.raises(ValueError):
        await draft(db, account="sk-plainkey")
    with pytest.raises(aiosqlite.IntegrityError):
        await draft(db, owner_id=999)  # foreign key: upsert_user first
    await draft(db, account=user_account(OWNER))
    assert await orders.count_orders(db, include_drafts=True) == 1


async def test_claim_rules(db: aiosqlite.Connection) -> None:
    order_id = await draft(db)
    assert not await orders.claim_order(db, order_id, owner_id=OTHER)  # not theirs
    assert await orders.claim_order(db, order_id, owner_id=OWNER)
    assert not await orders.claim_order(db, order_id, owner_id=OWNER)  # claimed
    assert await orders.mark_failed(db, order_id, error="Not enough funds")
    failed = await orders.get_order(db, order_id)
    assert failed is not None and (failed.state, failed.error) == ("failed", "Not enough funds")
    assert await orders.claim_order(db, order_id, owner_id=OWNER)  # retry allowed
    retried = await orders.get_order(db, order_id)
    assert retried is not None and (retried.state, retried.error) == ("claimed", None)
    assert await orders.mark_outcome_unknown(db, order_id, error="timeout")
    assert not await orders.claim_order(db, order_id, owner_id=OWNER)  # unknown: never resend
    assert not await orders.mark_outcome_unknown(db, order_id, error="again")
    assert await orders.mark_placed(db, order_id, panel_order_id=23501)  # reconciled later
    assert not await orders.claim_order(db, order_id, owner_id=OWNER)  # placed
    assert not await orders.mark_failed(db, order_id, error="late")
    order = await orders.get_order(db, order_id)
    assert order is not None
    assert (order.state, order.panel_order_id, order.error) == ("placed", 23501, None)


async def test_mark_functions_need_a_claim(db: aiosqlite.Connection) -> None:
    order_id = await draft(db)
    assert not await orders.mark_placed(db, order_id, panel_order_id=1)
    assert not await orders.mark_failed(db, order_id, error="x")
    assert not await orders.mark_outcome_unknown(db, order_id, error="x")
    assert not await orders.mark_placed(db, 12345, panel_order_id=1)


async def test_twenty_concurrent_claims_on_one_connection(db: aiosqlite.Connection) -> None:
    order_id = await draft(db)
    results = await asyncio.gather(
        *(orders.claim_order(db, order_id, owner_id=OWNER) for _ in range(20))
    )
    assert results.count(True) == 1


async def test_twenty_concurrent_claims_across_two_connections(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    other = await open_database(tmp_path / "bot.sqlite3")
    try:
        for _ in range(3):
            order_id = await draft(db)
            conns = [db, other] * 10
            results = await asyncio.gather(
                *(orders.claim_order(c, order_id, owner_id=OWNER) for c in conns)
            )
            assert results.count(True) == 1
    finally:
        await close_database(other)


async def test_panel_order_ids_are_unique_per_account(db: aiosqlite.Connection) -> None:
    await placed(db, 501)
    own = await draft(db, account=user_account(OWNER))
    assert await orders.claim_order(db, own, owner_id=OWNER)
    assert await orders.mark_placed(db, own, panel_order_id=501)  # other account: fine
    dup = await draft(db)
    assert await orders.claim_order(db, dup, owner_id=OWNER)
    with pytest.raises(aiosqlite.IntegrityError):
        await orders.mark_placed(db, dup, panel_order_id=501)
    still = await orders.get_order(db, dup)
    assert still is not None and still.state == "claimed"


async def test_track_order_is_idempotent(db: aiosqlite.Connection) -> None:
    first = await orders.track_order(
        db, panel=PANEL, owner_id=OWNER, account=OPERATOR_ACCOUNT, panel_order_id=77, now=100.0
    )
    assert first.state == "placed" and first.service_id is None and first.fields == {}
    again = await orders.track_order(
        db, panel=PANEL, owner_id=OTHER, account=OPERATOR_ACCOUNT, panel_order_id=77
    )
    assert again == first  # the existing order, still its first owner's: callers check owner
    assert again.owner_id == OWNER
    other_account = await orders.track_order(
        db, panel=PANEL, owner_id=OTHER, account=user_account(OTHER), panel_order_id=77
    )
    assert other_account.id != first.id
    with pytest.raises(ValueError):
        await orders.track_order(db, panel=PANEL, owner_id=OWNER, account="users:1",
                                 panel_order_id=1)


async def test_get_order_by_panel_id(db: aiosqlite.Connection) -> None:
    order_id = await placed(db, 900)
    found = await orders.get_order_by_panel_id(db, panel=PANEL, account=OPERATOR_ACCOUNT,
                                               panel_order_id=900)
    assert found is not None and found.id == order_id
    assert await orders.get_order_by_panel_id(db, panel=PANEL, account="user:7",
                                              panel_order_id=900) is None
    assert await orders.get_order(db, 424242) is None


async def test_list_and_count_orders(db: aiosqlite.Connection) -> None:
    mine = [await placed(db, 1000 + i) for i in range(5)]
    theirs = await placed(db, 2000, owner_id=OTHER)
    await draft(db)  # drafts are hidden by default
    page = await orders.list_orders(db, owner_id=OWNER, limit=2)
    assert [o.id for o in page] == [mine[4], mine[3]]
    page2 = await orders.list_orders(db, owner_id=OWNER, limit=2, offset=2)
    assert [o.id for o in page2] == [mine[2], mine[1]]
    assert await orders.count_orders(db, owner_id=OWNER) == 5
    assert await orders.count_orders(db, owner_id=OWNER, include_drafts=True) == 6
    everyone = await orders.list_orders(db, limit=100)
    assert everyone[0].id == theirs and len(everyone) == 6
    assert await orders.count_orders(db) == 6
    with_drafts = await orders.list_orders(db, limit=100, include_drafts=True)
    assert len(with_drafts) == 7


async def test_record_status_writes_history_only_on_change(db: aiosqlite.Connection) -> None:
    order_id = await placed(db, 501)
    assert await orders.record_status(db, order_id, status("Pending", None, None), now=10.0)
    assert not await orders.record_status(
        db,
        order_id,
        status("pending", None, None),
        now=20.0,  # same status, other spelling
    )
    assert await orders.record_status(db, order_id, status("In progress", "0.05", 60), now=30.0)
    assert not await orders.record_status(db, order_id, status("In Progress", "0.07", 40), now=40)
    assert await orders.record_status(
        db, order_id, status("Partial", "0.27819", 157), now=50.0, next_check_at=99.0
    )
    order = await orders.get_order(db, order_id)
    assert order is not None
    assert order.status == "Partial" and order.final
    assert order.charge == Decimal("0.27819")
    assert (order.start_count, order.remains, order.currency) == (3572, 157, "USD")
    assert (order.last_checked_at, order.updated_at, order.next_check_at) == (50.0, 50.0, 99.0)
    history = await orders.order_history(db, order_id)
    assert [(h.status, h.observed_at, h.remains) for h in history] == [
        ("Pending", 10.0, None),
        ("In progress", 30.0, 60),
        ("Partial", 50.0, 157),
    ]


async def test_record_status_updated_at_moves_only_when_something_changed(
    db: aiosqlite.Connection,
) -> None:
    order_id = await placed(db, 501)
    await orders.record_status(db, order_id, status("In progress"), now=10.0)
    await orders.record_status(db, order_id, status("In progress"), now=20.0)
    order = await orders.get_order(db, order_id)
    assert order is not None and (order.updated_at, order.last_checked_at) == (10.0, 20.0)


async def test_record_status_of_a_missing_order(db: aiosqlite.Connection) -> None:
    with pytest.raises(LookupError):
        await orders.record_status(db, 999, status("Pending"))


async def test_a_change_and_its_notification_commit_together(db: aiosqlite.Connection) -> None:
    order_id = await placed(db, 501)
    notice = Notice(chat_id=OWNER, text="#1 is Completed", payload={"order": order_id})
    assert await orders.record_status(db, order_id, status("Completed"), notify=notice, now=5.0)
    queued = await pending_notifications(db, now=6.0)
    assert [(n.chat_id, n.text, n.payload, n.order_id) for n in queued] == [
        (OWNER, "#1 is Completed", {"order": order_id}, order_id)
    ]
    # No change: nothing is queued.
    assert not await orders.record_status(db, order_id, status("Completed"), notify=notice)
    assert await count_pending_notifications(db) == 1


async def test_a_change_and_its_notification_roll_back_together(
    db: aiosqlite.Connection,
) -> None:
    order_id = await placed(db, 501)
    bad = Notice(chat_id=OWNER, text="x", payload={"not json": object()})
    with pytest.raises(TypeError):
        await orders.record_status(db, order_id, status("Completed"), notify=bad)
    order = await orders.get_order(db, order_id)
    assert order is not None and order.status is None and not order.final
    assert await orders.order_history(db, order_id) == []
    assert await count_pending_notifications(db) == 0


async def test_apply_status_changes_is_one_transaction(db: aiosqlite.Connection) -> None:
    a, b, c = [await placed(db, 600 + i) for i in range(3)]
    await orders.record_status(db, b, status("In progress"))
    batch = [
        Observation(a, status("Completed"), notify=Notice(OWNER, "a done")),
        Observation(b, status("In progress"), next_check_at=500.0, notify=Notice(OWNER, "b")),
        Observation(c, status("Canceled", None, None), notify=Notice(OWNER, "c canceled")),
    ]
    assert await orders.apply_status_changes(db, batch, now=100.0) == [a, c]
    assert [n.text for n in await pending_notifications(db, now=101.0)] == [
        "a done",
        "c canceled",
    ]
    order_b = await orders.get_order(db, b)
    assert order_b is not None and order_b.next_check_at == 500.0

    # One bad observation: none of the batch is written.
    d = await placed(db, 700)
    broken = [
        Observation(d, status("Completed"), notify=Notice(OWNER, "d done")),
        Observation(424242, status("Completed")),
    ]
    with pytest.raises(LookupError):
        await orders.apply_status_changes(db, broken)
    order_d = await orders.get_order(db, d)
    assert order_d is not None and order_d.status is None
    assert await count_pending_notifications(db) == 2


async def test_composing_writes_in_an_explicit_transaction(db: aiosqlite.Connection) -> None:
    order_id = await placed(db, 501)
    with pytest.raises(RuntimeError):
        async with transaction(db):
            await orders.record_status(db, order_id, status("Completed"))
            raise RuntimeError("the sender crashed before enqueueing")
    order = await orders.get_order(db, order_id)
    assert order is not None and order.status is None


async def test_active_orders_and_backoff(db: aiosqlite.Connection) -> None:
    a = await placed(db, 1)
    b = await placed(db, 2)
    done = await placed(db, 3)
    await draft(db)  # not placed
    await orders.record_status(db, done, status("Completed"))
    await orders.schedule_check(db, a, next_check_at=200.0)
    assert [o.id for o in await orders.active_orders(db)] == [b, a]
    assert [o.id for o in await orders.active_orders(db, due_before=100.0)] == [b]
    assert [o.id for o in await orders.active_orders(db, due_before=200.0)] == [b, a]
    assert [o.id for o in await orders.active_orders(db, limit=1)] == [b]

    assert await orders.record_missing(db, b, now=50.0, next_check_at=300.0) == 1
    assert await orders.record_missing(db, b, now=60.0, next_check_at=300.0) == 2
    order_b = await orders.get_order(db, b)
    assert order_b is not None
    assert (order_b.lost_strikes, order_b.last_checked_at, order_b.next_check_at) == (
        2,
        60.0,
        300.0,
    )
    await orders.record_status(db, b, status("In progress"), next_check_at=400.0)
    order_b = await orders.get_order(db, b)
    assert order_b is not None and order_b.lost_strikes == 0
    with pytest.raises(LookupError):
        await orders.record_missing(db, 999)

    assert await orders.stop_tracking(db, b, error="Incorrect order ID")
    assert [o.id for o in await orders.active_orders(db)] == [a]
    stopped = await orders.get_order(db, b)
    assert stopped is not None and stopped.final and stopped.error == "Incorrect order ID"
    assert not await orders.stop_tracking(db, 999, error="x")


async def test_orders_by_status_and_total_charged(db: aiosqlite.Connection) -> None:
    a = await placed(db, 1)
    b = await placed(db, 2)
    await placed(db, 3)  # never checked
    c = await placed(db, 4, owner_id=OTHER)
    failed = await draft(db)
    await orders.claim_order(db, failed, owner_id=OWNER)
    await orders.mark_failed(db, failed, error="no funds")
    await draft(db)
    await orders.record_status(db, a, status("Completed", "0.10"))
    await orders.record_status(db, b, status("Completed", "0.20"))
    await orders.record_status(db, c, status("In progress", "1.005"))
    assert await orders.orders_by_status(db) == {
        "Completed": 2,
        "In progress": 1,
        "placed": 1,
        "failed": 1,
    }
    assert await orders.orders_by_status(db, owner_id=OTHER) == {"In progress": 1}
    assert await orders.total_charged(db) == {"USD": Decimal("1.305")}
    assert await orders.total_charged(db, owner_id=OWNER) == {"USD": Decimal("0.30")}
    assert await orders.total_charged(db, owner_id=999) == {}


async def test_an_order_once_final_stays_final(db: aiosqlite.Connection) -> None:
    order_id = await placed(db, 777)
    await orders.record_status(db, order_id, status("Canceled"), now=10.0)
    assert await orders.record_status(db, order_id, status("In progress"), now=20.0)
    order = await orders.get_order(db, order_id)
    assert order is not None and order.status == "In progress" and order.final
    seen = OrderStatus("Pending", None, None, None, "USD")
    await orders.apply_status_changes(db, [orders.Observation(order_id, seen)], now=30.0)
    again = await orders.get_order(db, order_id)
    assert again is not None and again.final
