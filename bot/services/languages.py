"""Which language each user reads: their choice (/language), else Telegram's, else the default.

The choices are few and small, so they are all kept in memory (read once at start-up, written
through on a change): finding an update's language costs a dict lookup, not a query.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiosqlite

from bot import i18n
from storage import users
from storage.users import User


@dataclass(eq=False)
class Languages:
    """The users' chosen languages, and the bot's default."""

    default: str = i18n.SOURCE
    chosen: dict[int, str] = field(default_factory=dict)

    async def load(self, db: aiosqlite.Connection) -> None:
        """Reads every stored choice (a language whose catalog is gone no longer counts)."""
        spoken = set(i18n.languages())
        self.chosen = {user_id: code for user_id, code in (await users.chosen_locales(db)).items()
                       if code in spoken}

    def of(self, user_id: int | None, telegram_code: str | None = None) -> str:
        """The language of a user: chosen, else their Telegram language if the bot speaks it,
        else the default."""
        if user_id is not None:
            code = self.chosen.get(user_id)
            if code is not None:
                return code
        return i18n.best_language(telegram_code) or self.default

    def of_user(self, user: User | None) -> str:
        """The language of a stored user (Telegram's language as last seen)."""
        if user is None:
            return self.default
        return self.of(user.telegram_id, user.language)

    async def choose(self, db: aiosqlite.Connection, user_id: int, code: str | None) -> None:
        """Records a user's choice (None: back to Telegram's language)."""
        if code is not None and code not in i18n.languages():
            raise ValueError(f"no catalog for language {code!r}")
        await users.set_locale(db, user_id, code)
        if code is None:
            self.chosen.pop(user_id, None)
        else:
            self.chosen[user_id] = code
