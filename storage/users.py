"""Users: who they are, their role, their notification preference, their own (encrypted) key."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import aiosqlite

from storage.db import (
    execute_write,
    fetch_all,
    fetch_one,
    timestamp,
    transaction,
    write_returning,
)

Role = Literal["admin", "allowed", "other"]
NotifyMode = Literal["all", "final", "off"]
ROLES: frozenset[str] = frozenset(get_args(Role))
NOTIFY_MODES: frozenset[str] = frozenset(get_args(NotifyMode))


@dataclass(frozen=True, slots=True)
class User:
    """A Telegram user as the bot knows them."""

    telegram_id: int
    name: str
    language: str
    role: Role
    blocked: bool
    notify: NotifyMode
    created_at: float
    updated_at: float
    # Encrypted by the caller; kept out of repr so it never reaches a log line.
    panel_key: bytes | None = field(default=None, repr=False)
    banned: bool = False  # shop mode: may not order (an admin's /deny)
    locale: str | None = None  # the language chosen with /language, if any

    @property
    def is_admin(self) -> bool:
        """True for the bot's administrators."""
        return self.role == "admin"

    @property
    def is_allowed(self) -> bool:
        """True when the user may order (admins included)."""
        return self.role in ("admin", "allowed")

    @property
    def account(self) -> str:
        """The panel-account label of this user's own key ('user:<telegram_id>')."""
        return user_account(self.telegram_id)


OPERATOR_ACCOUNT = "operator"


def user_account(telegram_id: int) -> str:
    """The `account` label of orders placed with a user's own key."""
    return f"user:{telegram_id}"


_COLUMNS = (
    "telegram_id, name, language, role, blocked, notify, created_at, updated_at, panel_key,"
    " banned, locale"
)


def _user(row: Any) -> User:
    """Builds a User from a row of `_COLUMNS`."""
    key = row["panel_key"]
    return User(
        telegram_id=int(row["telegram_id"]),
        name=str(row["name"]),
        language=str(row["language"]),
        role=row["role"],
        blocked=bool(row["blocked"]),
        notify=row["notify"],
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        panel_key=None if key is None else bytes(key),
        banned=bool(row["banned"]),
        locale=row["locale"],
    )


def _check_role(role: str) -> None:
    """Rejects a role that is not admin/allowed/other."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")


async def upsert_user(
    db: aiosqlite.Connection, *, telegram_id: int, name: str, language: str = ""
) -> User:
    """Creates or refreshes a user who talks to the bot (also clears `blocked`)."""
    at = timestamp()
    [row] = await write_returning(  # one statement: no BEGIN/COMMIT round trips
        db,
        "INSERT INTO users (telegram_id, name, language, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (telegram_id) DO UPDATE SET name = excluded.name,"
        " language = excluded.language, blocked = 0, updated_at = excluded.updated_at"
        f" RETURNING {_COLUMNS}",
        (telegram_id, name, language, at, at),
    )
    return _user(row)


async def remember_user(
    db: aiosqlite.Connection, *, telegram_id: int, name: str, language: str = ""
) -> None:
    """`upsert_user` for a user who writes again, written only when it changes something: a
    new user, another name or language, or a user marked as having blocked the bot. The usual
    case (nothing new) is one read and no write, so it neither takes the write lock nor waits
    for it. (`updated_at` is then when the row last changed.)"""
    row = await _name_row(db, telegram_id)
    if row is not None and row[0] == name and row[1] == language and not row[2]:
        return
    await upsert_user(db, telegram_id=telegram_id, name=name, language=language)


async def _name_row(db: aiosqlite.Connection, telegram_id: int) -> aiosqlite.Row | None:
    """The user's name, language and blocked mark (one indexed read), or None if unknown."""
    return await fetch_one(
        db, "SELECT name, language, blocked FROM users WHERE telegram_id = ?", (telegram_id,))


async def get_user(db: aiosqlite.Connection, telegram_id: int) -> User | None:
    """The user with this Telegram id, or None."""
    row = await fetch_one(
        db, f"SELECT {_COLUMNS} FROM users WHERE telegram_id = ?", (telegram_id,)
    )
    return None if row is None else _user(row)


async def user_returns(db: aiosqlite.Connection, telegram_id: int) -> tuple[str, str] | None:
    """Someone writes to the bot: their name and language as stored (None: not a known user),
    after clearing their 'blocked the bot' mark if it was set. One indexed read of three
    columns (not the whole row, with its key and dates); a write only for a marked user."""
    row = await _name_row(db, telegram_id)
    if row is None:
        return None
    if row[2]:
        await set_blocked(db, telegram_id, False)
    name: str = row[0]
    language: str = row[1]
    return name, language


async def get_users(
    db: aiosqlite.Connection, telegram_ids: Iterable[int]
) -> dict[int, User]:
    """The known users among these ids, by id (one query per 500 ids, not one per user)."""
    wanted = sorted(set(telegram_ids))
    found: dict[int, User] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        rows = await fetch_all(
            db, f"SELECT {_COLUMNS} FROM users WHERE telegram_id IN ({marks})", tuple(chunk)
        )
        found.update((user.telegram_id, user) for user in map(_user, rows))
    return found


async def set_role(db: aiosqlite.Connection, telegram_id: int, role: Role) -> None:
    """Sets a user's role, creating the user if the bot has not met them yet."""
    _check_role(role)
    at = timestamp()
    async with transaction(db):
        await db.execute(
            "INSERT INTO users (telegram_id, role, created_at, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (telegram_id) DO UPDATE SET role = excluded.role,"
            " updated_at = excluded.updated_at",
            (telegram_id, role, at, at),
        )


async def _update(db: aiosqlite.Connection, telegram_id: int, column: str, value: object) -> bool:
    """Sets one column of an existing user; False when there is no such user."""
    async with transaction(db):
        cursor = await db.execute(
            f"UPDATE users SET {column} = ?, updated_at = ? WHERE telegram_id = ?",
            (value, timestamp(), telegram_id),
        )
    return cursor.rowcount == 1


async def set_blocked(db: aiosqlite.Connection, telegram_id: int, blocked: bool) -> bool:
    """Records whether the user has blocked the bot; False when the user is unknown."""
    return await _update(db, telegram_id, "blocked", int(blocked))


async def set_panel_key(
    db: aiosqlite.Connection, telegram_id: int, encrypted: bytes | str | None
) -> bool:
    """Stores the user's panel key as encrypted by the caller (None removes it)."""
    if isinstance(encrypted, str):
        encrypted = encrypted.encode()
    return await _update(db, telegram_id, "panel_key", encrypted)


async def set_notify(db: aiosqlite.Connection, telegram_id: int, mode: NotifyMode) -> bool:
    """Sets which order changes the user hears about: 'all', 'final' or 'off'."""
    if mode not in NOTIFY_MODES:
        raise ValueError(f"unknown notification mode {mode!r}")
    return await _update(db, telegram_id, "notify", mode)


async def set_locale(db: aiosqlite.Connection, telegram_id: int, locale: str | None) -> None:
    """Records the language a user chose (None: back to Telegram's language or the default),
    creating the user if the bot has not met them."""
    at = timestamp()
    await execute_write(
        db,
        "INSERT INTO users (telegram_id, locale, created_at, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (telegram_id) DO UPDATE SET locale = excluded.locale,"
        " updated_at = excluded.updated_at",
        (telegram_id, locale, at, at),
    )


async def chosen_locales(db: aiosqlite.Connection) -> dict[int, str]:
    """Every language chosen with /language, by user id."""
    rows = await fetch_all(db, "SELECT telegram_id, locale FROM users WHERE locale IS NOT NULL")
    return {int(row[0]): str(row[1]) for row in rows}


async def set_banned(db: aiosqlite.Connection, telegram_id: int, banned: bool) -> None:
    """Bans a user from the shop (or lifts it), creating the user if the bot has not met them."""
    at = timestamp()
    async with transaction(db):
        await db.execute(
            "INSERT INTO users (telegram_id, banned, created_at, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (telegram_id) DO UPDATE SET banned = excluded.banned,"
            " updated_at = excluded.updated_at",
            (telegram_id, int(banned), at, at),
        )


def _role_filter(role: Role | None) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause for an optional role filter."""
    if role is None:
        return "", ()
    _check_role(role)
    return " WHERE role = ?", (role,)


async def list_users(
    db: aiosqlite.Connection, *, role: Role | None = None, limit: int = 50, offset: int = 0
) -> list[User]:
    """Users, newest first, optionally only those with one role."""
    where, params = _role_filter(role)
    rows = await fetch_all(
        db,
        f"SELECT {_COLUMNS} FROM users{where} ORDER BY created_at DESC, telegram_id DESC"
        " LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return [_user(row) for row in rows]


async def count_users(db: aiosqlite.Connection, *, role: Role | None = None) -> int:
    """How many users there are, optionally only those with one role."""
    where, params = _role_filter(role)
    row = await fetch_one(db, f"SELECT COUNT(*) FROM users{where}", params)
    return int(row[0]) if row is not None else 0


async def allowed_user_ids(db: aiosqlite.Connection) -> set[int]:
    """Ids of everyone who may order: role 'allowed' or 'admin'."""
    rows = await fetch_all(
        db, "SELECT telegram_id FROM users WHERE role IN ('admin', 'allowed')"
    )
    return {int(row[0]) for row in rows}


async def admin_user_ids(db: aiosqlite.Connection) -> set[int]:
    """Ids of the administrators."""
    rows = await fetch_all(db, "SELECT telegram_id FROM users WHERE role = 'admin'")
    return {int(row[0]) for row in rows}


async def stored_panel_keys(db: aiosqlite.Connection) -> dict[int, bytes]:
    """Every user's own panel key, still encrypted, by Telegram id (for the start-up check)."""
    rows = await fetch_all(
        db, "SELECT telegram_id, panel_key FROM users WHERE panel_key IS NOT NULL"
    )
    return {int(row[0]): bytes(row[1]) for row in rows}
