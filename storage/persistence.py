"""A python-telegram-bot persistence on the bot's SQLite file: conversations and data as JSON.

Connection: the persistence opens its *own* connection to the file (``open_database``, so the
schema is migrated) on first use, and closes it in ``flush()``, which PTB calls from
``Application.shutdown()``. It cannot share the handlers' connection because PTB loads persistence
in ``Application.initialize()``, before ``post_init`` where that connection is made. Two
connections to one WAL file are fine; SQLite serialises their writes.

Durability: every ``update_*`` / ``drop_*`` call commits at once (write-through). But PTB itself
calls them only every ``update_interval`` seconds and at shutdown. To lose nothing on a crash
mid-conversation, register ``persist_now`` to run after each update::

    application.add_handler(TypeHandler(Update, persist_now), group=PERSIST_GROUP)

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
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite
from telegram import Update
from telegram.ext import BasePersistence, CallbackContext, PersistenceInput

from storage.db import close_database, fetch_all, fetch_one, open_database, transaction

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


def _encode(value: Any) -> Any:
    """Turns a value into plain JSON types, tagging what JSON would lose."""
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


def dumps(value: Any) -> str:
    """Serialises persistence data (Decimal, tuples, sets, int keys kept) to JSON text."""
    return json.dumps(_encode(value), ensure_ascii=False, separators=(",", ":"))


def loads(text: str) -> Any:
    """Reads JSON text written by `dumps`."""
    return _decode(json.loads(text))


def _conversation_key(key: ConversationKey) -> str:
    """A conversation key tuple as JSON text (an array of ints and strings)."""
    return json.dumps(list(key), separators=(",", ":"))


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
        # What each row holds now (as written or loaded): PTB hands over every user's and
        # chat's data after every update, mostly unchanged, and each write would take SQLite's
        # write lock from the bot's own connection.
        self._written: dict[tuple[str, str], str] = {}
        # When each conversation's state was last written: {name: {key: unix time}}.
        self._touched: dict[str, dict[tuple[Any, ...], float]] = {}

    def _unchanged(self, table: str, key: object, text: str | None) -> bool:
        """True when the row already holds `text` (None: absent); else remembers `text`."""
        slot = (table, json.dumps(key) if not isinstance(key, str) else key)
        if text is None:
            self._written.pop(slot, None)
            return False
        if self._written.get(slot) == text:
            return True
        self._written[slot] = text
        return False

    async def _conn(self) -> aiosqlite.Connection:
        """The persistence's own connection, opened (and the schema migrated) on first use."""
        async with self._opening:
            if self._db is None:
                self._db = await open_database(self.path)
            return self._db

    async def _load_map(self, table: str, id_column: str) -> dict[int, Data]:
        """All rows of a ptb_*_data table as {id: data}."""
        rows = await fetch_all(await self._conn(), f"SELECT {id_column}, data FROM {table}")
        for row in rows:
            self._unchanged(table, int(row[0]), str(row[1]))
        return {int(row[0]): loads(row[1]) for row in rows}

    async def _store(self, table: str, id_column: str, key: int, data: object) -> None:
        """Writes one data row at once (nothing when it holds that already)."""
        text = dumps(data)
        if self._unchanged(table, key, text):
            return
        db = await self._conn()
        async with transaction(db):
            await db.execute(
                f"INSERT INTO {table} ({id_column}, data) VALUES (?, ?)"
                f" ON CONFLICT ({id_column}) DO UPDATE SET data = excluded.data",
                (key, text),
            )

    async def _drop(self, table: str, id_column: str, key: int) -> None:
        """Deletes one data row at once."""
        self._unchanged(table, key, None)
        db = await self._conn()
        async with transaction(db):
            await db.execute(f"DELETE FROM {table} WHERE {id_column} = ?", (key,))

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

    async def update_conversation(
        self, name: str, key: ConversationKey, new_state: object | None
    ) -> None:
        """Writes one conversation's state at once (and when); None ends it (deletes the row)."""
        text = None if new_state is None else dumps(new_state)
        now = time.time()
        touched = self._touched.setdefault(name, {})
        if (self._unchanged(f"conversation:{name}", _conversation_key(key), text)
                and now - touched.get(tuple(key), 0.0) < TOUCH_EVERY):
            return
        db = await self._conn()
        async with transaction(db):
            if new_state is None:
                touched.pop(tuple(key), None)
                await db.execute(
                    "DELETE FROM ptb_conversations WHERE name = ? AND key = ?",
                    (name, _conversation_key(key)),
                )
            else:
                touched[tuple(key)] = now
                await db.execute(
                    "INSERT INTO ptb_conversations (name, key, state, updated_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (name, key) DO UPDATE"
                    " SET state = excluded.state, updated_at = excluded.updated_at",
                    (name, _conversation_key(key), text, now),
                )

    async def update_user_data(self, user_id: int, data: Data) -> None:
        """Writes one user's user_data at once."""
        await self._store("ptb_user_data", "user_id", user_id, data)

    async def update_chat_data(self, chat_id: int, data: Data) -> None:
        """Writes one chat's chat_data at once."""
        await self._store("ptb_chat_data", "chat_id", chat_id, data)

    async def update_bot_data(self, data: Data) -> None:
        """Writes bot_data at once."""
        await self._store("ptb_bot_data", "id", 1, data)

    async def update_callback_data(self, data: CDCData) -> None:
        """Callback data is not kept: nothing to do."""

    async def drop_chat_data(self, chat_id: int) -> None:
        """Forgets one chat's chat_data."""
        await self._drop("ptb_chat_data", "chat_id", chat_id)

    async def drop_user_data(self, user_id: int) -> None:
        """Forgets one user's user_data."""
        await self._drop("ptb_user_data", "user_id", user_id)

    async def refresh_user_data(self, user_id: int, user_data: Data) -> None:
        """Nothing to refresh: this process is the only writer of user_data."""

    async def refresh_chat_data(self, chat_id: int, chat_data: Data) -> None:
        """Nothing to refresh: this process is the only writer of chat_data."""

    async def refresh_bot_data(self, bot_data: Data) -> None:
        """Nothing to refresh: this process is the only writer of bot_data."""

    async def flush(self) -> None:
        """Everything is already committed; closes the connection (reopened if used again)."""
        async with self._opening:
            if self._db is not None:
                db, self._db = self._db, None
                await close_database(db)


async def persist_now(update: object, context: CallbackContext[Any, Any, Any, Any]) -> None:
    """Handler callback: writes this update's conversation state and data to disk right away."""
    application = context.application
    if isinstance(update, Update):
        chat, user = update.effective_chat, update.effective_user
        application.mark_data_for_update_persistence(
            chat_ids=chat.id if chat else None, user_ids=user.id if user else None
        )
    await application.update_persistence()
