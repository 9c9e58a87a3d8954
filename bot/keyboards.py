"""Inline keyboards: the bot's own (`Button`, `Keyboard`), pages of items, ◀ ▶ rows and
button labels that fit."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, TypeVar

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.callbacks import pack
from bot.text import shorten

T = TypeVar("T")

LABEL_MAX = 60


class Button(NamedTuple):
    """An inline button of the bot: a label with callback data, or with a URL.

    Plain values, because the bot's keyboards go straight to the JSON Telegram reads
    (`bot.outgoing.markup_json`): python-telegram-bot's `InlineKeyboardButton` took ~6.5 µs to
    build (every attribute through its frozen-object checks) and its `InlineKeyboardMarkup`
    ~4 µs more, ~30 µs for the order summary's buttons, on every message sent or edited, only
    to be turned into JSON at once. The fields keep PTB's names, so reading a keyboard is the
    same (`keyboard.inline_keyboard[0][0].callback_data`)."""

    text: str
    callback_data: str | None = None
    url: str | None = None


class Keyboard:
    """Rows of `Button`s: what the bot sends under a message (PTB's `InlineKeyboardMarkup`,
    as plain values; `ptb()` makes that, for the API calls that want one)."""

    __slots__ = ("inline_keyboard",)

    def __init__(self, rows: Iterable[Iterable[Button]]) -> None:
        self.inline_keyboard: tuple[tuple[Button, ...], ...] = tuple(map(tuple, rows))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keyboard) and other.inline_keyboard == self.inline_keyboard

    def __hash__(self) -> int:
        return hash(self.inline_keyboard)

    def __repr__(self) -> str:
        return f"Keyboard({[list(row) for row in self.inline_keyboard]!r})"

    def ptb(self) -> InlineKeyboardMarkup:
        """The same keyboard as python-telegram-bot's type."""
        return InlineKeyboardMarkup(
            [[InlineKeyboardButton(b.text, callback_data=b.callback_data, url=b.url)
              for b in row] for row in self.inline_keyboard])


def cut(label: str, limit: int = LABEL_MAX) -> str:
    """A button label cut to `limit` characters, with … when it was longer."""
    return shorten(" ".join(label.split()), limit)


def page_of(items: Sequence[T], page: int, size: int) -> tuple[Sequence[T], int, int]:
    """The items on `page` (clamped to the pages there are), that page, and how many pages."""
    pages = max(1, -(-len(items) // size))
    page = min(max(page, 0), pages - 1)
    return items[page * size : (page + 1) * size], page, pages


def button(label: str, *data: object) -> Button:
    """A callback button; the data is packed (and checked against Telegram's 64 bytes)."""
    return Button(cut(label), callback_data=pack(*data))


def nav_row(page: int, pages: int, data: Callable[[int], str]) -> list[Button]:
    """◀ and ▶ buttons around `page` (none at the ends); `data(p)` is page p's callback data."""
    row: list[Button] = []
    if page > 0:
        row.append(Button(f"◀ {page}", callback_data=data(page - 1)))
    if page + 1 < pages:
        row.append(Button(f"{page + 2} ▶", callback_data=data(page + 1)))
    return row
