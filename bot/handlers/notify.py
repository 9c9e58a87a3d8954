"""Placeholder: filled in by its feature's work."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler

from bot.deps import BotContext


def handlers() -> list[BaseHandler[Update, BotContext, object]]:
    """This module's handlers."""
    return []
