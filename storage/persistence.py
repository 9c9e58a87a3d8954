"""A python-telegram-bot persistence on the bot's SQLite file: conversations and data as JSON.

Connection: the persistence opens its *own* connection to the file (``open_database``, so the
schema is migrated) on first use, and closes it in ``flush()``, which PTB calls from
``Application.shutdown()``. It cannot share the handlers' connection because PTB loads persistence
in ``Application.initialize()``, before ``post_init`` where that connection is made. But the two
must not contend for SQLite's write lock (the one that waits sleeps in SQLite's busy handler, and
fails with "database is locked" after the busy timeout): so once the bot's connection is open,
``take_turns_with(db)`` makes the persistence write its rows through that connection (and run
what is left on its own under that connection's lock, ``storage.db.take_turns``). The process
then has one writer, and waiters queue first come, first served.

Durability: every ``update_*`` / ``drop_*`` call returns once its row is committed. PTB itself
calls them only every ``update_interval`` seconds and at shutdown. To lose nothing on a crash
mid-conversation, register ``persist_now`` to run after each update::

    application.add_handler(TypeHandler(Update, persist_now), group=PERSIST_GROUP)

and build the Application as a ``WriteThroughApplication``, whose ``update_persistence`` turns
the rows into JSON and commits them on the spot instead of a deep copy and a task per row.

Group commit: the writes are not one transaction each. Every ``update_*`` / ``drop_*`` call
puts its row into the batch being collected and waits for that batch's commit; one writer task
commits a batch at a time, all its rows in one transaction (one statement per kind of row). So
the conversation state and user_data of one update land together, and the writes of updates
handled at the same moment (other chats) share a commit instead of queueing for one each. Rows
that hold what they held already are not written at all.

JSON: data may hold str/int/float/bool/None, lists, dicts, and also Decimal, tuples, sets and
dicts with non-string keys (e.g. ``{123: ...}``), which come back as they went in. Anything else
raises TypeError on write (PTB hands the error to the error handlers). Callback data is not kept
(``arbitrary_callback_data`` is not used); bot_data is off by default because the bot keeps live
clients there - pass ``store_data=PersistenceInput(bot_data=True, callback_data=False)`` to keep
it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite
from telegram import Update
from telegram.ext import Application, BasePersistence, CallbackContext, PersistenceInput
from telegram.ext._handlers.conversationhandler import PendingState
from telegram.ext._utils.trackingdict import TrackingDict

from storage.db import (
    add_writer,
    close_database,
    connection_lock,
    fetch_all,
    fetch_one,
    has_loop_writer,
    open_database,
    take_turns,
    write_many,
)
from storage.jsontext import tree_encoder

if TYPE_CHECKING:
    # PTB's own aliases, so the overrides match BasePersistence exactly.
    from telegram.ext._utils.types import CDCData, ConversationDict, ConversationKey

Data = dict[Any, Any]

# Runs after every other group (groups run in ascending order).
PERSIST_GROUP = 2**31 - 1

_TAG = "$t"
#: A conversation whose state did not change is written again (to record that it is still in
#: use) at most this often, so an active form is not taken for an abandoned one after a restart.
TOUCH_EVERY = 30.0


_AS_IS = frozenset({str, int, float, bool, type(None)})


def _encode(value: Any) -> Any:
    """Turns a value into plain JSON types, tagging what JSON would lose."""
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is dict:  # the common case first: string keys, plain values (every update's data)
        if _TAG not in value and all(type(key) is str for key in value):
            return {key: item if type(item) in _AS_IS else _encode(item)
                    for key, item in value.items()}
    elif kind is list:
        return [item if type(item) in _AS_IS else _encode(item) for item in value]
    return _encode_any(value)


def _encode_any(value: Any) -> Any:
    """`_encode` for any value (subclasses of the JSON types included)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, tuple):
        return {_TAG: "tuple", "v": [_encode(item) for item in value]}
    if isinstance(value, set | frozenset):
        kind = "set" if isinstance(value, set) else "frozenset"
        return {_TAG: kind, "v": [_encode(item) for item in value]}
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value) and _TAG not in value:
            return {key: _encode(item) for key, item in value.items()}
        return {_TAG: "dict", "v": [[_encode(k), _encode(v)] for k, v in value.items()]}
    raise TypeError(f"cannot persist a {type(value).__name__} as JSON")


def _decode(value: Any) -> Any:
    """Reverses `_encode` on what json.loads returned."""
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(_TAG)
    if kind is None:
        return {key: _decode(item) for key, item in value.items()}
    items = value["v"]
    if kind == "decimal":
        return Decimal(items)
    if kind == "tuple":
        return tuple(_decode(item) for item in items)
    if kind == "set":
        return {_decode(item) for item in items}
    if kind == "frozenset":
        return frozenset(_decode(item) for item in items)
    if kind == "dict":
        return {_decode(k): _decode(v) for k, v in items}
    raise ValueError(f"unknown JSON tag {kind!r}")


# Built once (json.dumps with any argument builds a new JSONEncoder on every call, and the
# encoder its C encoder): `_encode`'s output is a fresh tree, with no cycle to look for.
_DUMPS = tree_encoder(ensure_ascii=False, separators=(",", ":"))
_KEY_DUMPS = tree_encoder(separators=(",", ":"))


def dumps(value: Any) -> str:
    """Serialises persistence data (Decimal, tuples, sets, int keys kept) to JSON text."""
    return _DUMPS(_encode(value))


def loads(text: str) -> Any:
    """Reads JSON text written by `dumps`."""
    return _decode(json.loads(text))


def _conversation_key(key: ConversationKey) -> str:
    """A conversation key tuple as JSON text (an array of ints and strings)."""
    return _KEY_DUMPS(list(key))


_UPSERT_DATA = (
    "INSERT INTO {table} ({column}, data) VALUES (?, ?)"
    " ON CONFLICT ({column}) DO UPDATE SET data = excluded.data"
)
_DELETE_DATA = "DELETE FROM {table} WHERE {column} = ?"
_UPSERT_CONVERSATION = (
    "INSERT INTO ptb_conversations (name, key, state, updated_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (name, key) DO UPDATE"
    " SET state = excluded.state, updated_at = excluded.updated_at"
)
_DELETE_CONVERSATION = "DELETE FROM ptb_conversations WHERE name = ? AND key = ?"

#: A row of the persistence: (table or "conversation:<name>", key as text).
Slot = tuple[str, str]
#: A row to write: its slot, the statement, the statement's parameters.
Write = tuple[Slot, str, tuple[Any, ...]]


@dataclass(eq=False)
class _Batch:
    """The rows written by the next commit (the last write of a row wins), and its outcome."""

    done: asyncio.Future[None]
    writes: dict[Slot, tuple[str, tuple[Any, ...]]] = field(default_factory=dict)

    def add(self, write: Write) -> None:
        """Puts a row into the batch (replacing an earlier write of the same row)."""
        slot, sql, params = write
        self.writes[slot] = (sql, params)


def _retrieve(future: asyncio.Future[None]) -> None:
    """Marks a batch's failure as seen even when every writer waiting for it was cancelled."""
    if not future.cancelled():
        future.exception()


class SqlitePersistence(BasePersistence[Data, Data, Data]):
    """Keeps user_data, chat_data, conversations (and optionally bot_data) in SQLite."""

    def __init__(
        self,
        path: str | Path,
        *,
        store_data: PersistenceInput | None = None,
        update_interval: float = 60,
    ) -> None:
        super().__init__(
            store_data=store_data or PersistenceInput(bot_data=False, callback_data=False),
            update_interval=update_interval,
        )
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        # PTB runs the update_* calls of one round concurrently: open the connection once.
        self._opening = asyncio.Lock()
        # The bot's connection, once it is open (take_turns_with): the rows are written
        # through it, and its lock is the one the persistence's own connection takes turns on.
        self._shared: aiosqlite.Connection | None = None
        self._lock: asyncio.Lock | None = None
        # What each row holds now (as written or loaded): PTB hands over every user's and
        # chat's data after every update, mostly unchanged, and only changes are written.
        self._written: dict[Slot, str] = {}
        # When each conversation's state was last written: {name: {key: unix time}}.
        self._touched: dict[str, dict[tuple[Any, ...], float]] = {}
        # Group commit: the batch being collected, and the one task that commits batches.
        self._collecting: _Batch | None = None
        self._writer: asyncio.Task[None] | None = None
        #: Commits made (a test and the benchmarks look at it).
        self.commits = 0

    def _unchanged(self, table: str, key: object, text: str | None) -> bool:
        """True when the row already holds `text` (None: absent); else remembers `text`."""
        slot = _slot(table, key)
        if text is None:
            self._written.pop(slot, None)
            return False
        if self._written.get(slot) == text:
            return True
        self._written[slot] = text
        return False

    async def _conn(self) -> aiosqlite.Connection:
        """The connection, opened (and the schema migrated) on first use."""
        async with self._opening:
            if self._db is None:
                self._db = await open_database(self.path)
                await add_writer(self._db, self.path)
                if self._lock is not None:
                    take_turns(self._db, self._lock)
            return self._db

    async def take_turns_with(self, db: aiosqlite.Connection) -> None:
        """From now on, writes the rows through `db`, the bot's connection to the same file,
        while it is open with a loop-thread writer; the persistence's own connection (its
        reads, a write once `db` is closed) runs its statements under the lock of `db`.

        One connection writing keeps its page cache: SQLite drops a connection's cache
        whenever another one has written, and the persistence commits after every update, so
        the bot's writes and reads right after it (a user's row, an order's) read their pages
        again from the file. Measured on the order wizard (with the SELECTs on the bot's
        loop-thread writer, `storage.db.fetch_all`): the INSERT of an order 59 -> 48 µs, the
        per-update read of a user's row 12 -> 6 µs, SQLite's time per update 88 -> 67 µs."""
        self._shared = db
        self._lock = connection_lock(db)
        async with self._opening:
            if self._db is not None:
                take_turns(self._db, self._lock)

    # -- group commit --------------------------------------------------------------------

    async def _write(self, write: Write) -> None:
        """Adds a row to the batch being collected and waits until that batch is committed."""
        batch = self._collecting
        if batch is None:
            batch = self._collecting = _Batch(asyncio.get_running_loop().create_future())
            batch.done.add_done_callback(_retrieve)
        batch.add(write)
        if self._writer is None:
            # Started now, it runs once the other writes of this round have joined the batch.
            self._writer = asyncio.create_task(self._commit_batches())
        await asyncio.shield(batch.done)

    async def _commit_batches(self) -> None:
        """The writer: commits one batch after another until none is waiting."""
        try:
            while self._collecting is not None:
                batch, self._collecting = self._collecting, None
                try:
                    await self._commit(batch.writes)
                except asyncio.CancelledError:
                    self._forget(batch.writes)
                    batch.done.cancel()
                    raise
                except BaseException as exc:
                    self._forget(batch.writes)
                    batch.done.set_exception(exc)
                else:
                    batch.done.set_result(None)
        finally:
            self._writer = None
            if self._collecting is not None:  # cancelled with rows still waiting
                self._forget(self._collecting.writes)
                self._collecting.done.cancel()
                self._collecting = None

    def _forget(self, slots: Iterable[Slot]) -> None:
        """After a failed commit: the rows are not known to hold anything, so they are written
        again next time even when unchanged."""
        for slot in slots:
            self._written.pop(slot, None)

    async def _commit(self, writes: dict[Slot, tuple[str, tuple[Any, ...]]]) -> None:
        """Writes rows in one transaction: one statement per kind of row."""
        by_sql: dict[str, list[tuple[Any, ...]]] = {}
        for sql, params in writes.values():
            by_sql.setdefault(sql, []).append(params)
        shared = self._shared
        db = shared if shared is not None and has_loop_writer(shared) else await self._conn()
        # One transaction, run on the loop's thread (`add_writer`), or in one round trip to
        # the connection's thread while another process holds the write lock.
        await write_many(db, list(by_sql.items()))
        self.commits += 1

    async def write_now(self, writes: Sequence[Write]) -> None:
        """Commits rows made by the `*_write` methods, in one transaction, right away (not
        through the group commit: the caller has gathered its rows itself). With the loop-thread
        writer this returns without waiting at all. On failure the rows count as unwritten."""
        rows = {slot: (sql, params) for slot, sql, params in writes}
        if not rows:
            return
        try:
            await self._commit(rows)
        except BaseException:
            self._forget(rows)
            raise

    # -- reading ---------------------------------------------------------------------------

    async def _load_map(self, table: str, id_column: str) -> dict[int, Data]:
        """All rows of a ptb_*_data table as {id: data}."""
        rows = await fetch_all(await self._conn(), f"SELECT {id_column}, data FROM {table}")
        for row in rows:
            self._unchanged(table, int(row[0]), str(row[1]))
        return {int(row[0]): loads(row[1]) for row in rows}

    def _data_write(self, table: str, id_column: str, key: int, data: object) -> Write | None:
        """The write of one data row; None when it holds that already. The JSON text is made
        now, so it is a snapshot of `data` (TypeError for what cannot be persisted)."""
        text = dumps(data)
        if self._unchanged(table, key, text):
            return None
        return _slot(table, key), _UPSERT_DATA.format(table=table, column=id_column), (key, text)

    def _drop_write(self, table: str, id_column: str, key: int) -> Write:
        """The deletion of one data row."""
        self._unchanged(table, key, None)
        return _slot(table, key), _DELETE_DATA.format(table=table, column=id_column), (key,)

    async def _apply(self, write: Write | None) -> None:
        """Writes a row through the group commit (nothing for None: unchanged)."""
        if write is not None:
            await self._write(write)

    async def get_user_data(self) -> dict[int, Data]:
        """Every stored user_data, by user id."""
        return await self._load_map("ptb_user_data", "user_id")

    async def get_chat_data(self) -> dict[int, Data]:
        """Every stored chat_data, by chat id."""
        return await self._load_map("ptb_chat_data", "chat_id")

    async def get_bot_data(self) -> Data:
        """The stored bot_data, or an empty dict."""
        row = await fetch_one(await self._conn(), "SELECT data FROM ptb_bot_data WHERE id = 1")
        return {} if row is None else dict(loads(row[0]))

    async def get_callback_data(self) -> CDCData | None:
        """Callback data is not kept: always None."""
        return None

    async def get_conversations(self, name: str) -> ConversationDict:
        """The stored states of one named ConversationHandler, by conversation key."""
        rows = await fetch_all(
            await self._conn(),
            "SELECT key, state, updated_at FROM ptb_conversations WHERE name = ?",
            (name,),
        )
        touched = self._touched.setdefault(name, {})
        for row in rows:
            self._unchanged(f"conversation:{name}", str(row[0]), str(row[1]))
            # Rows from before the time was recorded count as written now.
            touched[tuple(json.loads(row[0]))] = float(row[2] or time.time())
        return {tuple(json.loads(row[0])): loads(row[1]) for row in rows}

    def conversation_times(self, name: str) -> dict[tuple[Any, ...], float]:
        """When each open conversation of `name` last had its state written (unix time)."""
        return dict(self._touched.get(name, {}))

    # -- writing ---------------------------------------------------------------------------

    def conversation_write(
        self, name: str, key: ConversationKey, new_state: object | None
    ) -> Write | None:
        """The write of one conversation's state (and when); None ends it (deletes the row).
        None when the row holds that state already and was written less than TOUCH_EVERY ago."""
        text = None if new_state is None else dumps(new_state)
        now = time.time()
        touched = self._touched.setdefault(name, {})
        table, row_key = f"conversation:{name}", _conversation_key(key)
        if (self._unchanged(table, row_key, text)
                and now - touched.get(tuple(key), 0.0) < TOUCH_EVERY):
            return None
        if new_state is None:
            touched.pop(tuple(key), None)
            return _slot(table, row_key), _DELETE_CONVERSATION, (name, row_key)
        touched[tuple(key)] = now
        return _slot(table, row_key), _UPSERT_CONVERSATION, (name, row_key, text, now)

    def user_data_write(self, user_id: int, data: Data) -> Write | None:
        """The write of one user's user_data (None: unchanged)."""
        return self._data_write("ptb_user_data", "user_id", user_id, data)

    def chat_data_write(self, chat_id: int, data: Data) -> Write | None:
        """The write of one chat's chat_data (None: unchanged)."""
        return self._data_write("ptb_chat_data", "chat_id", chat_id, data)

    def bot_data_write(self, data: Data) -> Write | None:
        """The write of bot_data (None: unchanged)."""
        return self._data_write("ptb_bot_data", "id", 1, data)

    def user_data_drop(self, user_id: int) -> Write:
        """The deletion of one user's user_data."""
        return self._drop_write("ptb_user_data", "user_id", user_id)

    def chat_data_drop(self, chat_id: int) -> Write:
        """The deletion of one chat's chat_data."""
        return self._drop_write("ptb_chat_data", "chat_id", chat_id)

    async def update_conversation(
        self, name: str, key: ConversationKey, new_state: object | None
    ) -> None:
        """Writes one conversation's state (and when); None ends it (deletes the row)."""
        await self._apply(self.conversation_write(name, key, new_state))

    async def update_user_data(self, user_id: int, data: Data) -> None:
        """Writes one user's user_data."""
        await self._apply(self.user_data_write(user_id, data))

    async def update_chat_data(self, chat_id: int, data: Data) -> None:
        """Writes one chat's chat_data."""
        await self._apply(self.chat_data_write(chat_id, data))

    async def update_bot_data(self, data: Data) -> None:
        """Writes bot_data."""
        await self._apply(self.bot_data_write(data))

    async def update_callback_data(self, data: CDCData) -> None:
        """Callback data is not kept: nothing to do."""

    async def drop_chat_data(self, chat_id: int) -> None:
        """Forgets one chat's chat_data."""
        await self._write(self.chat_data_drop(chat_id))

    async def drop_user_data(self, user_id: int) -> None:
        """Forgets one user's user_data."""
        await self._write(self.user_data_drop(user_id))

    async def refresh_user_data(self, user_id: int, user_data: Data) -> None:
        """Nothing to refresh: this process is the only writer of user_data."""

    async def refresh_chat_data(self, chat_id: int, chat_data: Data) -> None:
        """Nothing to refresh: this process is the only writer of chat_data."""

    async def refresh_bot_data(self, bot_data: Data) -> None:
        """Nothing to refresh: this process is the only writer of bot_data."""

    async def flush(self) -> None:
        """Waits for the writes under way, then closes the connection (reopened if used
        again)."""
        writer = self._writer
        if writer is not None:
            await asyncio.wait([writer])
        async with self._opening:
            if self._db is not None:
                db, self._db = self._db, None
                await close_database(db)


def _slot(table: str, key: object) -> Slot:
    """The `_written` / batch key of a row (an id as its digits: what `json.dumps` writes, made
    without building an encoder, twice for every row of every update: 0.7 % of the wizard's
    instructions)."""
    if type(key) is int:
        return (table, str(key))
    return (table, key if isinstance(key, str) else json.dumps(key))


async def persist_now(update: object, context: CallbackContext[Any, Any, Any, Any]) -> None:
    """Handler callback: writes this update's conversation state and data to disk right away."""
    application = context.application
    if isinstance(update, Update):
        chat, user = update.effective_chat, update.effective_user
        application.mark_data_for_update_persistence(
            chat_ids=chat.id if chat else None, user_ids=user.id if user else None
        )
    await application.update_persistence()


class WriteThroughApplication(Application[Any, Any, Any, Any, Any, Any]):
    """python-telegram-bot's Application, whose `update_persistence` writes a SqlitePersistence's
    rows on the spot.

    PTB's own deep-copies each marked user's and chat's data and hands every row to the
    persistence as a coroutine of its own, run concurrently (a task each, then the group
    commit's writer task and the waits on it): after every update (`persist_now`) that was a
    fifth of the order wizard's time per update (160 µs of 810), of which the SQLite commit
    was a third. This one turns each row into its JSON text at once (the snapshot the deep copy
    was for) and commits them together through `SqlitePersistence.write_now`: one transaction,
    and, with the loop-thread writer, no wait at all (~75 µs an update).

    The rows are PTB 22's: the data of the users and chats marked since the last run (deleted
    ones dropped), bot_data when it is stored, the conversations whose state was set, a
    non-blocking handler's pending state resolved as PTB does (callback data: SqlitePersistence
    keeps none). A row that cannot be persisted (TypeError) or a failed commit goes to the
    error handlers, as PTB's gather hands them over; the other rows are written. Any other
    persistence goes PTB's way.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._persisting = asyncio.Lock()

    async def update_persistence(self) -> None:
        """Writes what changed since the last run (see the class)."""
        persistence = self.persistence
        if not isinstance(persistence, SqlitePersistence):
            await super().update_persistence()
            return
        async with self._persisting:
            writes, errors = self._persistence_writes(persistence)
            try:
                await persistence.write_now(writes)
            except Exception as exc:  # handed to the error handlers, as PTB does
                errors.append(exc)
            for error in errors:
                await self.process_error(error=error, update=None)

    def _persistence_writes(
        self, persistence: SqlitePersistence
    ) -> tuple[list[Write], list[Exception]]:
        """The rows to write now (taking the marks PTB keeps), and the errors making them."""
        writes: list[Write] = []
        errors: list[Exception] = []

        def add(make: Any, *args: Any) -> None:
            try:
                write = make(*args)
            except Exception as exc:  # one unpersistable row: the rest go on
                errors.append(exc)
                return
            if write is not None:
                writes.append(write)

        stored = persistence.store_data
        if stored.bot_data:
            add(persistence.bot_data_write, self.bot_data)
        if stored.chat_data:
            update, delete = (self._chat_ids_to_be_updated_in_persistence,
                              self._chat_ids_to_be_deleted_in_persistence)
            self._chat_ids_to_be_updated_in_persistence = set()
            self._chat_ids_to_be_deleted_in_persistence = set()
            for chat_id in update - delete:
                add(persistence.chat_data_write, chat_id, self.chat_data[chat_id])
            for chat_id in delete:
                writes.append(persistence.chat_data_drop(chat_id))
        if stored.user_data:
            update, delete = (self._user_ids_to_be_updated_in_persistence,
                              self._user_ids_to_be_deleted_in_persistence)
            self._user_ids_to_be_updated_in_persistence = set()
            self._user_ids_to_be_deleted_in_persistence = set()
            for user_id in update - delete:
                add(persistence.user_data_write, user_id, self.user_data[user_id])
            for user_id in delete:
                writes.append(persistence.user_data_drop(user_id))
        for name, states in self._conversation_handler_conversations.items():
            for key, state in states.pop_accessed_write_items():
                if isinstance(state, PendingState):
                    if state.done():
                        state = state.resolve()
                    else:  # the old state for now; looked at again on the next run
                        states.mark_as_accessed(key)
                        state = state.old_state
                add(persistence.conversation_write, name, key,
                    None if state is TrackingDict.DELETED else state)
        return writes, errors
