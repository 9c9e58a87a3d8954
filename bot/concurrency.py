"""Update processing: chats run in parallel, each chat's updates one at a time and in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from bot import metrics


def urgent(update: object) -> bool:
    """Updates Telegram waits on with a deadline (a pre-checkout must be answered within 10 s):
    they wait for nobody, neither their user's other updates nor a free slot. Their handlers
    only read the database, and they belong to no conversation."""
    return isinstance(update, Update) and update.pre_checkout_query is not None


def _chat_key(update: object) -> tuple[str, int] | None:
    """The chat (or, failing that, the user) an update belongs to; None for neither.

    An inline query has no chat: it is typed in another chat's input field, and answers from
    the catalogue alone. It gets a lane of its own per user ("inline"), so it never waits
    behind its user's private-chat update (their private chat's id is their user id), say an
    order being sent to a slow panel; one user's inline queries still run in order."""
    if isinstance(update, Update):
        if update.effective_chat is not None:
            return ("chat", update.effective_chat.id)
        if update.effective_user is not None:
            lane = ("inline" if update.inline_query is not None
                    or update.chosen_inline_result is not None else "user")
            return (lane, update.effective_user.id)
    return None


def update_kind(update: object) -> str:
    """What an update carries: "message", "callback_query", ... ("other" for anything else)."""
    if isinstance(update, Update):
        for kind in Update.ALL_TYPES:
            if getattr(update, kind, None) is not None:
                return str(kind)
    return "other"


async def _handle(update: object, coroutine: Awaitable[Any]) -> None:
    """Runs the handlers of one update and counts it (kind, time taken) in the metrics."""
    started = time.perf_counter()
    try:
        await coroutine
    finally:
        metrics.update_handled(update_kind(update), time.perf_counter() - started)


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """Runs updates of different chats concurrently and those of one chat strictly in order.

    PTB's default processes one update at a time, so a slow panel call for one user would hold
    up everyone. Plain `concurrent_updates(True)` would let two taps of the same chat race in
    the order wizard. So: one asyncio.Lock per chat (asyncio locks wake waiters first in, first
    out, and PTB starts one task per update in arrival order, so a chat's updates run in
    arrival order), and a semaphore bounding how many updates *run* at once. The semaphore is
    taken after the chat lock, so a chat with a long queue cannot fill every slot with updates
    that only wait for their own chat. PTB's own bound (`max_concurrent_updates`) is set high
    for the same reason: it counts waiting updates too.

    An update keeps its slot while it waits for the panel, so the bound must be well above the
    number of panel calls under way at once, or a crowd of slow orders would hold every slot and
    /help would queue behind them again. An update waiting on I/O costs a few kilobytes, so the
    bound is generous (PTB's default for `concurrent_updates(True)`): with 64, 200 users on a
    panel answering in 1 s already made wizard steps wait ~0.2 s for a slot
    (benchmarks/bench_concurrency.py).
    """

    def __init__(self, max_running: int = 256, max_queued: int = 4096) -> None:
        super().__init__(max_concurrent_updates=max_queued)
        self._running = asyncio.Semaphore(max_running)
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._waiting: dict[tuple[str, int], int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Waits for this chat's turn, then for a free slot, then processes the update."""
        if urgent(update):
            await coroutine
            return
        key = _chat_key(update)
        if key is None:
            async with self._running:
                await _handle(update, coroutine)
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock, self._running:
                await _handle(update, coroutine)
        finally:
            self._waiting[key] -= 1
            if self._waiting[key] == 0:
                # Nobody else holds or waits for this lock: forget it so the dict stays small.
                del self._waiting[key]
                del self._locks[key]

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to tear down."""
