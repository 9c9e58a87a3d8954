"""Update processing: one chat's slow update never delays another chat; a chat stays in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from telegram import LabeledPrice, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    InlineQueryHandler,
    MessageHandler,
    PreCheckoutQueryHandler,
    filters,
)

from bot.concurrency import PerChatUpdateProcessor
from bot.standin.botapi import FakeRequest, FakeTelegram


def build(world: FakeTelegram, handler_log: list[tuple[int, str, float]]) -> Application:  # type: ignore[type-arg]
    """A bare Application on the per-chat processor whose handler is slow for chat 1."""

    async def on_text(update: Update, _context: object) -> None:
        message = update.effective_message
        assert message is not None and message.text is not None
        if message.text == "slow":
            await asyncio.sleep(1.5)
        handler_log.append((message.chat_id, message.text, time.monotonic()))

    app = (ApplicationBuilder().token("1:T").request(FakeRequest(world))
           .get_updates_request(FakeRequest(world))
           .concurrent_updates(PerChatUpdateProcessor()).build())
    app.add_handler(MessageHandler(filters.TEXT, on_text))
    return app


async def wait_until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    """Waits for a condition checked every 10 ms."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_slow_chat_does_not_delay_another_chat() -> None:
    world = FakeTelegram(strict_chats=False)
    log: list[tuple[int, str, float]] = []
    app = build(world, log)
    async with app:
        await app.start()
        started = time.monotonic()
        await app.update_queue.put(Update.de_json(world.user_sends(1, "slow"), app.bot))
        await app.update_queue.put(Update.de_json(world.user_sends(2, "fast"), app.bot))
        await wait_until(lambda: len(log) == 2)
        await app.stop()
    (first_chat, _, first_at), (second_chat, _, second_at) = log
    assert first_chat == 2 and first_at - started < 0.5
    assert second_chat == 1 and second_at - started >= 1.4


async def test_fifty_rapid_updates_of_one_chat_are_handled_in_order() -> None:
    world = FakeTelegram(strict_chats=False)
    log: list[tuple[int, str, float]] = []
    app = build(world, log)
    async with app:
        await app.start()
        for i in range(50):
            await app.update_queue.put(Update.de_json(world.user_sends(1, f"m{i}"), app.bot))
        await wait_until(lambda: len(log) == 50)
        await app.stop()
    assert [text for _, text, _ in log] == [f"m{i}" for i in range(50)]


async def test_a_chat_waits_for_its_own_slow_update() -> None:
    world = FakeTelegram(strict_chats=False)
    log: list[tuple[int, str, float]] = []
    app = build(world, log)
    async with app:
        await app.start()
        await app.update_queue.put(Update.de_json(world.user_sends(1, "slow"), app.bot))
        await app.update_queue.put(Update.de_json(world.user_sends(1, "after"), app.bot))
        await wait_until(lambda: len(log) == 2)
        await app.stop()
    assert [text for _, text, _ in log] == ["slow", "after"]


async def test_a_pre_checkout_never_waits_behind_its_users_slow_update() -> None:
    world = FakeTelegram(strict_chats=False)
    log: list[tuple[int, str, float]] = []
    app = build(world, log)

    async def on_checkout(update: Update, _context: object) -> None:
        assert update.pre_checkout_query is not None
        log.append((update.pre_checkout_query.from_user.id, "checkout", time.monotonic()))
        await update.pre_checkout_query.answer(ok=True)

    app.add_handler(PreCheckoutQueryHandler(on_checkout))
    async with app:
        await app.start()
        invoice = await app.bot.send_invoice(1, "Top-up", "1.00 USD", "topup:1:n", "XTR",
                                             [LabeledPrice("Top-up", 50)])
        started = time.monotonic()
        await app.update_queue.put(Update.de_json(world.user_sends(1, "slow"), app.bot))
        checkout = world.user_checks_out(1, invoice.message_id)  # the same user, no chat
        await app.update_queue.put(Update.de_json(checkout, app.bot))
        await wait_until(lambda: len(log) == 2)
        await app.stop()
    (who, what, at), (_, later, _) = log
    assert (who, what, later) == (1, "checkout", "slow") and at - started < 0.5
    answer = world.checkout_answer(checkout)
    assert answer is not None and answer["ok"] is True


async def test_an_inline_query_never_waits_behind_its_users_slow_private_chat_update() -> None:
    world = FakeTelegram(strict_chats=False)
    log: list[tuple[int, str, float]] = []
    app = build(world, log)

    async def on_inline(update: Update, _context: object) -> None:
        assert update.inline_query is not None
        log.append((update.inline_query.from_user.id, "inline", time.monotonic()))

    app.add_handler(InlineQueryHandler(on_inline))
    async with app:
        await app.start()
        started = time.monotonic()
        # The user's private chat (its id is theirs) is busy, say sending an order to a slow
        # panel, while they type "@bot likes" in another chat: the results must not wait.
        await app.update_queue.put(Update.de_json(world.user_sends(1, "slow"), app.bot))
        await app.update_queue.put(Update.de_json(world.user_inline_query(1, "likes"), app.bot))
        await app.update_queue.put(Update.de_json(world.user_inline_query(1, "views"), app.bot))
        await wait_until(lambda: len(log) == 3)
        await app.stop()
    (_, first, first_at), (_, second, second_at), (_, third, _) = log
    assert (first, second, third) == ("inline", "inline", "slow")
    assert first_at <= second_at and second_at - started < 0.5
