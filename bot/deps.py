"""What every handler and job needs (database, panel client, catalogue…), reachable from context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiosqlite
from telegram.ext import CallbackContext, ExtBot

from bot.config import Settings
from bot.crypto import KeyBox
from bot.panel.client import PanelClient

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
    keybox: KeyBox | None = None
    sandbox: SandboxPanel | None = None
    state: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Deps(database={self.settings.database_path}, demo={self.sandbox is not None})"


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """The handlers' context, with `deps` for the shared objects."""

    @property
    def deps(self) -> Deps:
        """The shared objects of this application."""
        deps: Deps = self.application.bot_data[DEPS_KEY]
        return deps
