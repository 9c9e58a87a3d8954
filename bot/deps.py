"""What every handler and job needs (database, panel client, catalogue…), reachable from context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiosqlite
from telegram.ext import Application, CallbackContext, ExtBot

from bot.config import Settings
from bot.crypto import KeyBox
from bot.panel.client import PanelClient
from bot.services.languages import Languages

if TYPE_CHECKING:
    from bot.catalog import Catalog
    from bot.panel.sandbox import SandboxPanel
    from bot.ratelimit import UserRateLimiter

DEPS_KEY = "deps"


@dataclass(eq=False)
class Deps:
    """Long-lived objects, created at start-up (`bot.app.start_services`) and closed at the end."""

    settings: Settings
    db: aiosqlite.Connection
    panel: PanelClient
    catalog: Catalog
    limiter: UserRateLimiter
    panel_url: str  # the panel the bot uses now (the sandbox's URL in demo mode)
    operator_key: str | None = field(default=None, repr=False)  # PANEL_KEY, or the sandbox's
    demo: bool = False  # the panel is the built-in sandbox: nothing real is bought
    keybox: KeyBox | None = None
    # Only for the start-up code and the tests: the rest of the bot sees `demo` and the URL.
    sandbox: SandboxPanel | None = None
    state: dict[str, Any] = field(default_factory=dict)
    languages: Languages = field(default_factory=Languages)  # who reads which language

    def __repr__(self) -> str:
        return f"Deps(database={self.settings.database_path}, demo={self.demo})"


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """The handlers' context, with `deps` for the shared objects."""

    #: The update's user as the users table had them when the update came in: (name,
    #: language), None when not in it. Read once per update, by the first handler group
    #: (`bot.handlers.notify.user_is_back`), so `remember_user` need not read it again;
    #: `user_read` is False until then. (PTB makes one context per update.)
    stored_user: tuple[str, str] | None = None
    user_read: bool = False

    @property
    def deps(self) -> Deps:
        """The shared objects of this application."""
        deps: Deps = self.application.bot_data[DEPS_KEY]
        return deps


#: The bot's Application, as handlers and jobs see it.
BotApp = Application[Any, BotContext, Any, Any, Any, Any]
