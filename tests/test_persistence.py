"""SqlitePersistence: a fresh Application on the same file resumes conversations and user_data."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from telegram import Update
from telegram.ext import (
    Application,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    PersistenceInput,
    TypeHandler,
    filters,
)

from bot.standin.botapi import FakeRequest, FakeTelegram, feed
from storage.db import (
    add_writer,
    close_database,
    fetch_all,
    open_database,
    set_trace_callback,
    total_changes,
)
from storage.persistence import (
    PERSIST_GROUP,
    SqlitePersistence,
    WriteThroughApplication,
    dumps,
    loads,
    persist_now,
)

TOKEN = "123456:TEST"
USER = 7
LINK, QUANTITY = range(2)


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    """Starts a draft holding money as Decimal."""
    assert context.user_data is not None and update.effective_message is not None
    context.user_data["draft"] = {"service": 1, "rate": Decimal("0.90"), "ids": (1, 2)}
    await update.effective_message.reply_text("Link?")
    return LINK


async def got_link(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    """Stores the link."""
    assert context.user_data is not None and update.effective_message is not None
    context.user_data["draft"]["link"] = update.effective_message.text
    await update.effective_message.reply_text("Quantity?")
    return QUANTITY


async def got_quantity(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    """Finishes with the cost computed from the restored Decimal rate."""
    assert context.user_data is not None and update.effective_message is not None
    draft = context.user_data.pop("draft")
    quantity = int(update.effective_message.text or "0")
    cost = draft["rate"] * quantity / 1000
    await update.effective_message.reply_text(f"{draft['link']} x{quantity} = {cost}")
    return ConversationHandler.END


AnyApp = Application[Any, Any, Any, Any, Any, Any]


#: PTB's own Application, and the bot's, whose update_persistence writes on the spot.
APPLICATIONS = pytest.mark.parametrize("app_class", [Application, WriteThroughApplication])


def build(path: Path, world: FakeTelegram, *, write_through: bool = False,
          app_class: type[AnyApp] = Application) -> AnyApp:
    """An Application with the order conversation and a SqlitePersistence on `path`."""
    persistence = SqlitePersistence(path, update_interval=3600)
    app = (
        Application.builder()
        .application_class(app_class)
        .token(TOKEN)
        .request(FakeRequest(world))
        .get_updates_request(FakeRequest(world))
        .persistence(persistence)
        .build()
    )
    app.add_handler(
        ConversationHandler(
            entry_points=[CommandHandler("order", start)],
            states={
                LINK: [MessageHandler(filters.TEXT & ~filters.COMMAND, got_link)],
                QUANTITY: [MessageHandler(filters.Regex(r"^\d+$"), got_quantity)],
            },
            fallbacks=[],
            name="order",
            persistent=True,
        )
    )
    if write_through:
        app.add_handler(TypeHandler(Update, persist_now), group=PERSIST_GROUP)
    return app


@APPLICATIONS
async def test_fresh_application_resumes_the_conversation(tmp_path: Path,
                                                          app_class: type[AnyApp]) -> None:
    path = tmp_path / "bot.sqlite3"
    world = FakeTelegram()
    app = build(path, world, app_class=app_class)
    async with app:
        await feed(app, world.user_sends(USER, "/order"))
        await feed(app, world.user_sends(USER, "https://t.me/x"))
    assert world.bot_texts(USER) == ["Link?", "Quantity?"]

    # A new process: new Application, new persistence object, same file.
    app2 = build(path, world, app_class=app_class)
    async with app2:
        assert app2.user_data[USER]["draft"] == {
            "service": 1, "rate": Decimal("0.90"), "ids": (1, 2), "link": "https://t.me/x",
        }
        await feed(app2, world.user_sends(USER, "100"))  # only the QUANTITY state accepts it
        assert world.bot_texts(USER)[-1] == "https://t.me/x x100 = 0.09"
        assert "draft" not in app2.user_data[USER]

    # The finished conversation is gone from the file; user_data was written at shutdown.
    check = SqlitePersistence(path)
    assert await check.get_conversations("order") == {}
    assert await check.get_user_data() == {USER: {}}
    await check.flush()


@APPLICATIONS
async def test_persist_now_writes_before_any_shutdown(tmp_path: Path,
                                                      app_class: type[AnyApp]) -> None:
    path = tmp_path / "bot.sqlite3"
    world = FakeTelegram()
    app = build(path, world, write_through=True, app_class=app_class)
    await app.initialize()
    try:
        await feed(app, world.user_sends(USER, "/order"))
        # Another reader of the file sees the state at once, as after a SIGKILL here.
        peek = SqlitePersistence(path)
        assert await peek.get_conversations("order") == {(USER, USER): LINK}
        user_data = await peek.get_user_data()
        assert user_data[USER]["draft"]["rate"] == Decimal("0.90")
        await feed(app, world.user_sends(USER, "https://t.me/x"))
        assert await peek.get_conversations("order") == {(USER, USER): QUANTITY}
        await peek.flush()
    finally:
        await app.shutdown()


async def test_an_updates_rows_are_committed_together_before_the_update_is_done(
        tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    world = FakeTelegram()
    app = build(path, world, write_through=True, app_class=WriteThroughApplication)
    await app.initialize()
    try:
        assert isinstance(app.persistence, SqlitePersistence)
        seen: list[str] = []
        await set_trace_callback(await app.persistence._conn(), seen.append)
        await feed(app, world.user_sends(USER, "/order"))
        # The conversation's state, the user's draft and the chat's (empty) data, in one
        # transaction, committed before the update is done.
        heads = [s.split(" (")[0] for s in seen]
        assert heads[0] == "BEGIN IMMEDIATE" and heads[-1] == "COMMIT", seen
        assert sorted(heads[1:-1]) == ["INSERT INTO ptb_chat_data",
                                       "INSERT INTO ptb_conversations",
                                       "INSERT INTO ptb_user_data"], seen
        seen.clear()
        await feed(app, world.user_sends(USER, "https://t.me/x"))
        # Only what changed: the state and the draft; the chat's data is as it was.
        assert sorted(s.split(" (")[0] for s in seen if s.startswith("INSERT")) == [
            "INSERT INTO ptb_conversations", "INSERT INTO ptb_user_data"], seen
    finally:
        await app.shutdown()
    fresh = SqlitePersistence(path)
    try:
        assert await fresh.get_conversations("order") == {(USER, USER): QUANTITY}
        assert (await fresh.get_user_data())[USER]["draft"]["link"] == "https://t.me/x"
    finally:
        await fresh.flush()


async def stored_user_data(path: Path) -> dict[int, Any]:
    """The user_data a restarted bot would load from `path`."""
    fresh = SqlitePersistence(path)
    try:
        return await fresh.get_user_data()
    finally:
        await fresh.flush()


async def errors_told(path: Path) -> tuple[AnyApp, list[object]]:
    """An initialised WriteThroughApplication on `path`, and what its error handlers are told."""
    app = build(path, FakeTelegram(), app_class=WriteThroughApplication)
    errors: list[object] = []

    async def collect(_: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        errors.append(context.error)

    app.add_error_handler(collect)
    await app.initialize()
    return app, errors


async def test_a_row_that_cannot_be_stored_goes_to_the_error_handlers_and_the_rest_is_written(
        tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    app, errors = await errors_told(path)
    try:
        app.user_data[1]["fine"] = Decimal("1.50")
        app.user_data[2]["broken"] = object()  # not JSON, not a type the codec keeps
        app.user_data[3]["gone"] = True
        app.mark_data_for_update_persistence(user_ids=[1, 2, 3])
        await app.update_persistence()
        assert len(errors) == 1 and isinstance(errors[0], TypeError), errors
        app.drop_user_data(3)
        await app.update_persistence()
    finally:
        await app.shutdown()
    assert await stored_user_data(path) == {1: {"fine": Decimal("1.50")}}


async def test_rows_whose_commit_failed_are_written_the_next_time(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    app, errors = await errors_told(path)
    try:
        assert isinstance(app.persistence, SqlitePersistence)
        db = await app.persistence._conn()
        await db.execute("CREATE TRIGGER refuse BEFORE INSERT ON ptb_user_data"
                         " BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        app.user_data[USER]["step"] = "quantity"
        app.mark_data_for_update_persistence(user_ids=USER)
        await app.update_persistence()
        assert [type(e).__name__ for e in errors] == ["IntegrityError"], errors
        await db.execute("DROP TRIGGER refuse")
        # The same data after the next update: it must not count as written already.
        app.mark_data_for_update_persistence(user_ids=USER)
        await app.update_persistence()
    finally:
        await app.shutdown()
    assert await stored_user_data(path) == {USER: {"step": "quantity"}}


async def test_the_rows_go_through_the_bots_connection_while_it_is_open(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    persistence = SqlitePersistence(path)
    await persistence.get_user_data()  # as PTB loads it, before the bot's connection opens
    bots = await open_database(path)
    await add_writer(bots, path)
    own: list[str] = []
    shared: list[str] = []
    await set_trace_callback(await persistence._conn(), own.append)
    await set_trace_callback(bots, shared.append)
    await persistence.take_turns_with(bots)
    await persistence.update_user_data(USER, {"step": "link"})
    assert own == [] and any("ptb_user_data" in s for s in shared), (own, shared)
    await close_database(bots)  # the bot stops first; a last write still lands
    await persistence.update_user_data(USER, {"step": "quantity"})
    assert any("ptb_user_data" in s for s in own), own
    await persistence.flush()
    assert await stored_user_data(path) == {USER: {"step": "quantity"}}


async def test_data_methods(tmp_path: Path) -> None:
    p = SqlitePersistence(
        tmp_path / "bot.sqlite3",
        store_data=PersistenceInput(bot_data=True, callback_data=False),
    )
    assert await p.get_user_data() == {}
    assert await p.get_chat_data() == {}
    assert await p.get_bot_data() == {}
    assert await p.get_callback_data() is None
    await p.update_user_data(1, {"a": Decimal("1.10")})
    await p.update_user_data(1, {"a": Decimal("2.20")})
    await p.update_user_data(2, {})
    await p.update_chat_data(-100, {"k": [1, 2]})
    await p.update_bot_data({"started": 1})
    await p.update_callback_data(([], {}))
    await p.update_conversation("c", (1, 2), "state")
    await p.update_conversation("c", (3, "inline-id"), 5)
    await p.update_conversation("other", (1, 2), 1)
    await p.refresh_user_data(1, {})
    await p.refresh_chat_data(1, {})
    await p.refresh_bot_data({})
    await p.flush()

    q = SqlitePersistence(tmp_path / "bot.sqlite3")
    assert await q.get_user_data() == {1: {"a": Decimal("2.20")}, 2: {}}
    assert await q.get_chat_data() == {-100: {"k": [1, 2]}}
    assert await q.get_bot_data() == {"started": 1}
    assert await q.get_conversations("c") == {(1, 2): "state", (3, "inline-id"): 5}
    await q.update_conversation("c", (1, 2), None)
    assert await q.get_conversations("c") == {(3, "inline-id"): 5}
    assert await q.get_conversations("other") == {(1, 2): 1}
    await q.drop_user_data(1)
    await q.drop_chat_data(-100)
    assert await q.get_user_data() == {2: {}}
    assert await q.get_chat_data() == {}
    rows = await fetch_all(await q._conn(), "SELECT key FROM ptb_conversations WHERE name='c'")
    assert [r[0] for r in rows] == ['[3,"inline-id"]']  # keys stored as JSON
    await q.flush()
    await q.flush()  # twice is fine


def test_bot_data_is_off_by_default(tmp_path: Path) -> None:
    p = SqlitePersistence(tmp_path / "bot.sqlite3")
    assert p.store_data.user_data and p.store_data.chat_data
    assert not p.store_data.bot_data and not p.store_data.callback_data


def test_codec_keeps_what_json_would_lose() -> None:
    value = {
        "rate": Decimal("0.90"),
        "pair": (1, "a"),
        "tags": {"x"},
        "frozen": frozenset({1}),
        "by_id": {123: "int key", None: 1},
        "$t": "a key that looks like our tag",
        "nested": [{"cost": Decimal("1E+2")}],
    }
    back = loads(dumps(value))
    assert back == value
    assert str(back["rate"]) == "0.90"
    assert isinstance(back["pair"], tuple) and isinstance(back["frozen"], frozenset)
    with pytest.raises(TypeError):
        dumps({"client": object()})
    with pytest.raises(ValueError):
        loads('{"$t": "pickle", "v": ""}')


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=5)
    | st.decimals(allow_nan=False, allow_infinity=False)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3),
    max_leaves=10,
)


@given(_values)
def test_codec_round_trips_anything_it_accepts(value: Any) -> None:
    assert loads(dumps(value)) == value


async def test_unchanged_data_is_not_written_again(tmp_path: Path) -> None:
    persistence = SqlitePersistence(tmp_path / "p.sqlite3")
    try:
        await persistence.update_user_data(1, {"step": "link"})
        db = await persistence._conn()
        before = total_changes(db)
        await persistence.update_user_data(1, {"step": "link"})
        await persistence.update_conversation("wizard", (1, 1), "ASKING")
        await persistence.update_conversation("wizard", (1, 1), "ASKING")
        assert total_changes(db) == before + 1  # only the first conversation write
        await persistence.update_user_data(1, {"step": "quantity"})
        await persistence.drop_user_data(1)
        await persistence.update_user_data(1, {"step": "quantity"})  # re-created after a drop
        assert await persistence.get_user_data() == {1: {"step": "quantity"}}
        await persistence.update_conversation("wizard", (1, 1), None)
        assert await persistence.get_conversations("wizard") == {}
    finally:
        await persistence.flush()
    fresh = SqlitePersistence(tmp_path / "p.sqlite3")
    try:
        assert await fresh.get_user_data() == {1: {"step": "quantity"}}
    finally:
        await fresh.flush()
