"""storage.users, storage.refills, storage.outbox and storage.catalog on a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiosqlite
import pytest

from bot.panel.models import SANDBOX_URL as PANEL
from storage import catalog, outbox, refills, users
from storage.db import close_database, open_database, transaction
from storage.orders import get_order, save_draft, track_order
from storage.outbox import Notice
from storage.users import OPERATOR_ACCOUNT


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    conn = await open_database(tmp_path / "bot.sqlite3")
    yield conn
    await close_database(conn)


# --- users ---------------------------------------------------------------------------------


async def test_upsert_user_creates_then_refreshes(db: aiosqlite.Connection) -> None:
    created = await users.upsert_user(db, telegram_id=1, name="Ann", language="en")
    assert (created.name, created.language, created.role, created.notify) == (
        "Ann",
        "en",
        "other",
        "all",
    )
    assert not created.blocked and created.panel_key is None
    await users.set_blocked(db, 1, True)
    await users.set_role(db, 1, "allowed")
    again = await users.upsert_user(db, telegram_id=1, name="Ann B", language="ru")
    assert (again.name, again.language, again.role) == ("Ann B", "ru", "allowed")
    assert not again.blocked  # talking to the bot means it is not blocked
    assert again.created_at == created.created_at
    assert again.account == "user:1"


async def test_get_user_unknown(db: aiosqlite.Connection) -> None:
    assert await users.get_user(db, 404) is None


async def test_set_role_creates_unknown_users_and_checks_roles(db: aiosqlite.Connection) -> None:
    await users.set_role(db, 42, "admin")
    user = await users.get_user(db, 42)
    assert user is not None and user.is_admin and user.is_allowed and user.name == ""
    await users.set_role(db, 42, "other")
    user = await users.get_user(db, 42)
    assert user is not None and not user.is_allowed
    with pytest.raises(ValueError):
        await users.set_role(db, 42, "root")  # type: ignore[arg-type]


async def test_set_blocked(db: aiosqlite.Connection) -> None:
    await users.upsert_user(db, telegram_id=1, name="Ann")
    assert await users.set_blocked(db, 1, True)
    user = await users.get_user(db, 1)
    assert user is not None and user.blocked
    assert not await users.set_blocked(db, 404, True)


async def test_panel_key_is_stored_as_given_and_never_printed(db: aiosqlite.Connection) -> None:
    await users.upsert_user(db, telegram_id=1, name="Ann")
    assert await users.set_panel_key(db, 1, b"gAAAA-encrypted")
    user = await users.get_user(db, 1)
    assert user is not None and user.panel_key == b"gAAAA-encrypted"
    assert "gAAAA" not in repr(user)
    assert await users.set_panel_key(db, 1, "gAAAA-as-text")
    user = await users.get_user(db, 1)
    assert user is not None and user.panel_key == b"gAAAA-as-text"
    assert await users.set_panel_key(db, 1, None)
    user = await users.get_user(db, 1)
    assert user is not None and user.panel_key is None
    assert not await users.set_panel_key(db, 404, b"x")


async def test_set_notify(db: aiosqlite.Connection) -> None:
    await users.upsert_user(db, telegram_id=1, name="Ann")
    for mode in ("final", "off", "all"):
        assert await users.set_notify(db, 1, mode)
        user = await users.get_user(db, 1)
        assert user is not None and user.notify == mode
    with pytest.raises(ValueError):
        await users.set_notify(db, 1, "loud")  # type: ignore[arg-type]
    with pytest.raises(aiosqlite.IntegrityError):  # the CHECK constraint backs it up
        await users._update(db, 1, "notify", "loud")
    assert not await users.set_notify(db, 404, "off")


async def test_list_count_and_allow_list(db: aiosqlite.Connection) -> None:
    for telegram_id in range(1, 6):
        await users.upsert_user(db, telegram_id=telegram_id, name=f"u{telegram_id}")
    await users.set_role(db, 1, "admin")
    await users.set_role(db, 2, "allowed")
    await users.set_role(db, 3, "allowed")
    assert await users.count_users(db) == 5
    assert await users.count_users(db, role="allowed") == 2
    listed = await users.list_users(db, limit=2)
    assert len(listed) == 2
    everyone = await users.list_users(db, limit=10)
    assert {u.telegram_id for u in everyone} == {1, 2, 3, 4, 5}
    rest = await users.list_users(db, limit=10, offset=2)
    assert len(rest) == 3 and {u.telegram_id for u in listed + rest} == {1, 2, 3, 4, 5}
    assert [u.telegram_id for u in await users.list_users(db, role="admin")] == [1]
    assert await users.allowed_user_ids(db) == {1, 2, 3}
    assert await users.admin_user_ids(db) == {1}
    with pytest.raises(ValueError):
        await users.count_users(db, role="nobody")  # type: ignore[arg-type]


# --- refills -------------------------------------------------------------------------------


async def _tracked(db: aiosqlite.Connection, panel_order_id: int = 501) -> int:
    """A placed order under the operator account."""
    await users.upsert_user(db, telegram_id=1, name="Ann")
    order = await track_order(
        db, panel=PANEL, owner_id=1, account=OPERATOR_ACCOUNT, panel_order_id=panel_order_id
    )
    return order.id


async def test_add_refill_is_idempotent(db: aiosqlite.Connection) -> None:
    order_id = await _tracked(db)
    refill = await refills.add_refill(db, order_id=order_id, panel_refill_id=1, now=10.0)
    assert (refill.order_id, refill.account, refill.panel_refill_id) == (order_id, "operator", 1)
    assert (refill.status, refill.final, refill.created_at) == ("Pending", False, 10.0)
    again = await refills.add_refill(db, order_id=order_id, panel_refill_id=1, status="Completed")
    assert again == refill
    assert [h.status for h in await refills.refill_history(db, refill.id)] == ["Pending"]
    with pytest.raises(LookupError):
        await refills.add_refill(db, order_id=999, panel_refill_id=2)


async def test_record_refill_status_history_and_notification(db: aiosqlite.Connection) -> None:
    order_id = await _tracked(db)
    refill = await refills.add_refill(db, order_id=order_id, panel_refill_id=9, now=1.0)
    assert not await refills.record_refill_status(db, refill.id, status="Pending", final=False,
                                                  now=2.0)
    assert await refills.record_refill_status(db, refill.id, status="In progress", final=False,
                                              now=3.0)
    assert await refills.record_refill_status(
        db, refill.id, status="Rejected", final=True, now=4.0,
        notify=Notice(1, "refill rejected"),
    )
    stored = await refills.get_refill(db, refill.id)
    assert stored is not None
    assert (stored.status, stored.final, stored.updated_at, stored.last_checked_at) == (
        "Rejected",
        True,
        4.0,
        4.0,
    )
    history = await refills.refill_history(db, refill.id)
    assert [(h.status, h.observed_at) for h in history] == [
        ("Pending", 1.0),
        ("In progress", 3.0),
        ("Rejected", 4.0),
    ]
    queued = await outbox.pending_notifications(db, now=5.0)
    assert [(n.text, n.order_id) for n in queued] == [("refill rejected", order_id)]
    with pytest.raises(LookupError):
        await refills.record_refill_status(db, 999, status="Completed", final=True)
    assert await refills.get_refill(db, 999) is None


async def test_refills_for_order_and_open_refills(db: aiosqlite.Connection) -> None:
    first = await _tracked(db, 501)
    second = await _tracked(db, 502)
    r1 = await refills.add_refill(db, order_id=first, panel_refill_id=1)
    r2 = await refills.add_refill(db, order_id=first, panel_refill_id=2)
    r3 = await refills.add_refill(db, order_id=second, panel_refill_id=3)
    await refills.record_refill_status(db, r2.id, status="Completed", final=True)
    assert [r.id for r in await refills.refills_for_order(db, first)] == [r1.id, r2.id]
    assert [r.id for r in await refills.open_refills(db)] == [r1.id, r3.id]
    assert len(await refills.open_refills(db, limit=1)) == 1
    await refills.record_refill_status(db, r1.id, status="In progress", final=False, now=1e12)
    assert [r.id for r in await refills.open_refills(db)] == [r3.id, r1.id]


# --- outbox --------------------------------------------------------------------------------


async def test_outbox_lifecycle(db: aiosqlite.Connection) -> None:
    first = await outbox.enqueue_notification(
        db, chat_id=1, text="hello", payload={"buttons": [["Refill", "order:refill:1"]]}, now=1.0
    )
    second = await outbox.enqueue_notice(db, Notice(2, "second"), now=2.0)
    third = await outbox.enqueue_notice(db, Notice(2, "third"), now=3.0)
    due = await outbox.pending_notifications(db, now=10.0)
    assert [n.id for n in due] == [first, second, third]
    assert due[0].payload == {"buttons": [["Refill", "order:refill:1"]]}
    assert [n.id for n in await outbox.pending_notifications(db, now=10.0, limit=1)] == [first]

    assert await outbox.mark_sent(db, first, now=11.0)
    assert not await outbox.mark_sent(db, first)
    sent = await outbox.get_notification(db, first)
    assert sent is not None and (sent.state, sent.sent_at) == ("sent", 11.0)

    assert await outbox.mark_failed_attempt(db, second, error="Timed out", retry_at=20.0) == 1
    assert [n.id for n in await outbox.pending_notifications(db, now=15.0)] == [third]
    assert [n.id for n in await outbox.pending_notifications(db, now=20.0)] == [second, third]
    assert await outbox.mark_failed_attempt(db, second, error="Timed out", retry_at=None) == 2
    dropped = await outbox.get_notification(db, second)
    assert dropped is not None and (dropped.state, dropped.attempts) == ("dropped", 2)
    assert dropped.last_error == "Timed out"
    assert await outbox.count_pending_notifications(db) == 1
    assert await outbox.mark_failed_attempt(db, 999, error="x", retry_at=None) == 0


async def test_outbox_drops(db: aiosqlite.Connection) -> None:
    a = await outbox.enqueue_notice(db, Notice(5, "a"), now=1.0)
    await outbox.enqueue_notice(db, Notice(5, "b"), now=1.0)
    c = await outbox.enqueue_notice(db, Notice(6, "c"), now=1.0)
    assert await outbox.drop_notification(db, c, reason="Message is too long")
    assert not await outbox.drop_notification(db, c, reason="again")
    assert await outbox.drop_pending_for_chat(db, 5, reason="Forbidden: bot was blocked") == 2
    assert await outbox.count_pending_notifications(db) == 0
    gone = await outbox.get_notification(db, a)
    assert gone is not None and gone.last_error == "Forbidden: bot was blocked"
    assert await outbox.purge_notifications(db, older_than=0.5) == 0
    assert await outbox.purge_notifications(db, older_than=2.0) == 3
    assert await outbox.get_notification(db, a) is None


async def test_outbox_row_survives_when_its_order_goes(db: aiosqlite.Connection) -> None:
    await users.upsert_user(db, telegram_id=1, name="Ann")
    order_id = await save_draft(
        db,
        panel="p",
        owner_id=1,
        account="operator",
        service_id=1,
        service_name="F",
        service_type="Default",
        rate=Decimal(1),
        currency="USD",
        can_refill=False,
        can_cancel=False,
        fields={},
        quantity=10,
        cost=Decimal("0.01"),
    )
    note = await outbox.enqueue_notification(db, chat_id=1, text="x", order_id=order_id)
    async with transaction(db):
        await db.execute("DELETE FROM orders WHERE id = ?", (order_id,))
    assert await get_order(db, order_id) is None
    kept = await outbox.get_notification(db, note)
    assert kept is not None and kept.order_id is None


# --- catalog -------------------------------------------------------------------------------


async def test_services_cache_round_trip(db: aiosqlite.Connection) -> None:
    assert await catalog.load_services(db, source="https://panel/api/v2|operator") is None
    payload = json.dumps([{"service": 1, "rate": "0.90"}, {"service": 2, "rate": "8"}])
    await catalog.save_services(
        db, source="https://panel/api/v2|operator", payload_json=payload, fetched_at=100.0
    )
    cached = await catalog.load_services(db, source="https://panel/api/v2|operator")
    assert cached is not None and cached.fetched_at == 100.0
    rates = [Decimal(s["rate"]) for s in json.loads(cached.payload_json)]
    assert rates == [Decimal("0.90"), Decimal("8")] and str(rates[0]) == "0.90"

    await catalog.save_services(db, source="https://panel/api/v2|operator", payload_json="[]")
    newer = await catalog.load_services(db, source="https://panel/api/v2|operator")
    assert newer is not None and newer.payload_json == "[]" and newer.fetched_at > 100.0

    await catalog.save_services(db, source="user:1", payload_json="[]", fetched_at=1.0)
    assert await catalog.clear_services(db, source="user:1") == 1
    assert await catalog.load_services(db, source="user:1") is None
    assert await catalog.clear_services(db) == 1
