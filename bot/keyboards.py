"""Inline keyboard helpers: pages of items, ◀ ▶ rows and button labels that fit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from telegram import InlineKeyboardButton

from bot.callbacks import pack
from bot.text import shorten

T = TypeVar("T")

LABEL_MAX = 60


def cut(label: str, limit: int = LABEL_MAX) -> str:
    """A button label cut to `limit` characters, with … when it was longer."""
    return shorten(" ".join(label.split()), limit)


def page_of(items: Sequence[T], page: int, size: int) -> tuple[Sequence[T], int, int]:
    """The items on `page` (clamped to the pages there are), that page, and how many pages."""
    pages = max(1, -(-len(items) // size))
    page = min(max(page, 0), pages - 1)
    return items[page * size : (page + 1) * size], page, pages


def button(label: str, *data: object) -> InlineKeyboardButton:
    """A callback button; the data is packed (and checked against Telegram's 64 bytes)."""
    return InlineKeyboardButton(cut(label), callback_data=pack(*data))


def nav_row(page: int, pages: int, data: Callable[[int], str]) -> list[InlineKeyboardButton]:
    """◀ and ▶ buttons around `page` (none at the ends); `data(p)` is page p's callback data."""
    row: list[InlineKeyboardButton] = []
    if page > 0:
        row.append(InlineKeyboardButton(f"◀ {page}", callback_data=data(page - 1)))
    if page + 1 < pages:
        row.append(InlineKeyboardButton(f"{page + 2} ▶", callback_data=data(page + 1)))
    return row
