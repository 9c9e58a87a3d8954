"""The fake Bot API keeps its state its own: what it answers, records and hands out are copies.

Its handlers answer with views of the world's state, copied or encoded once on the way out
(`handle`, `handle_encoded`, `FakeRequest`), and the call record keeps the decoded parameters
themselves: these tests change every object a caller gets and check that the world did not move.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.standin.botapi import BOT_ID, FakeRequest, FakeTelegram

USER = 42
KEYBOARD = {"inline_keyboard": [[{"text": "Next", "callback_data": "next"}]]}


@pytest.fixture
def world() -> FakeTelegram:
    """A world with one user's chat open."""
    world = FakeTelegram()
    world.open_chat(USER, first_name="Ann")
    return world


def send(world: FakeTelegram, text: str = "<b>Menu</b>",
         markup: dict[str, Any] | None = None) -> dict[str, Any]:
    """The bot sends an HTML message (with `markup`, a dict, not JSON text); returns the body."""
    status, body = world.handle("sendMessage", {
        "chat_id": USER, "text": text, "parse_mode": "HTML",
        "reply_markup": KEYBOARD if markup is None else markup,
    })
    assert status == 200, body
    return body


def test_changing_an_answer_changes_nothing_in_the_world(world: FakeTelegram) -> None:
    body = send(world)
    message = body["result"]
    message["reply_markup"]["inline_keyboard"][0][0]["callback_data"] = "forged"
    message["entities"][0]["length"] = 1
    message["from"]["first_name"] = "Mallory"
    [shown] = world.chat(USER)
    assert shown.inline_keyboard == KEYBOARD["inline_keyboard"]
    assert shown.entities == [{"offset": 0, "length": 4, "type": "bold"}]
    status, again = world.handle("editMessageText", {
        "chat_id": USER, "message_id": shown.message_id, "text": "<b>Menu</b>",
        "parse_mode": "HTML", "reply_markup": json.dumps(KEYBOARD)})
    assert status == 400 and "not modified" in again["description"]
    assert world.handle("getMe", {})[1]["result"]["first_name"] != "Mallory"
    with pytest.raises(ValueError, match="no button with data 'forged'"):
        world.user_presses(USER, shown.message_id, "forged")


def test_the_callers_parameters_and_the_call_record_are_not_the_worlds(
        world: FakeTelegram) -> None:
    markup: dict[str, Any] = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    send(world, markup=markup)
    markup["inline_keyboard"][0][0]["callback_data"] = "changed by the caller"
    [recorded] = world.calls_to("sendMessage")
    assert recorded["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "a"
    recorded["reply_markup"]["inline_keyboard"][0][0]["callback_data"] = "changed in the record"
    [shown] = world.chat(USER)
    assert shown.inline_keyboard[0][0]["callback_data"] == "a"


def test_an_update_handed_out_is_not_the_queued_one_nor_the_worlds(world: FakeTelegram) -> None:
    send(world)
    [shown] = world.chat(USER)
    update = world.user_presses(USER, shown.message_id, "next")
    update["callback_query"]["message"]["reply_markup"]["inline_keyboard"][0][0]["text"] = "X"
    update["callback_query"]["from"]["first_name"] = "Mallory"
    [queued] = world.pending_updates
    assert queued["callback_query"]["message"]["reply_markup"] == KEYBOARD
    assert queued["callback_query"]["from"]["first_name"] == "Ann"
    assert world.chat(USER)[0].inline_keyboard == KEYBOARD["inline_keyboard"]
    said = world.user_sends(USER, "/start now")
    said["message"]["entities"][0]["length"] = 99
    said["message"]["from"]["first_name"] = "Mallory"
    assert world.chat(USER)[-1].entities == [{"offset": 0, "length": 6, "type": "bot_command"}]
    assert world.pending_updates[-1]["message"]["from"]["first_name"] == "Ann"


def test_a_snapshot_stays_as_it_was_while_the_message_is_edited(world: FakeTelegram) -> None:
    send(world)
    [before] = world.chat(USER)
    status, _ = world.handle("editMessageText", {
        "chat_id": USER, "message_id": before.message_id, "text": "Page 2"})
    assert status == 200
    assert (before.plain, before.edit_times, before.inline_keyboard) == (
        "Menu", [], KEYBOARD["inline_keyboard"])
    [after] = world.chat(USER)
    assert after.plain == "Page 2" and len(after.edit_times) == 1 and after.inline_keyboard == []


async def test_the_encoded_answers_are_telegrams_json(world: FakeTelegram) -> None:
    status, raw = world.handle_encoded("sendMessage", {"chat_id": USER, "text": "Hi"})
    assert status == 200
    body = json.loads(raw)
    assert body["ok"] is True and body["result"]["text"] == "Hi"
    assert body["result"]["from"]["id"] == BOT_ID
    status, raw = await world.handle_encoded_async("sendMessage", {"chat_id": 7, "text": "Hi"})
    assert (status, json.loads(raw)["description"]) == (400, "Bad Request: chat not found")
    status, raw = await FakeRequest(world).do_request(
        "https://api.telegram.org/bot123:ABC/getMe", "POST")
    assert status == 200 and json.loads(raw)["result"]["id"] == BOT_ID


def test_has_text_tells_what_find_text_finds_without_a_copy(world: FakeTelegram) -> None:
    mark = world.mark()
    assert not world.has_text(USER, "Menu", since=mark)
    world.user_sends(USER, "/start")
    assert not world.has_text(USER, "Menu", since=mark)  # the user's own message is not the bot's
    send(world)
    assert world.has_text(USER, "Menu", since=mark)
    found = world.find_text(USER, "Menu", since=mark)
    assert found is not None and found.plain == "Menu"
    later = world.mark()
    assert not world.has_text(USER, "Menu", since=later)
    status, _ = world.handle("editMessageText", {
        "chat_id": USER, "message_id": found.message_id, "text": "Menu, again"})
    assert status == 200
    assert world.has_text(USER, "again", since=later)
    world.handle("deleteMessage", {"chat_id": USER, "message_id": found.message_id})
    assert not world.has_text(USER, "Menu", since=mark)
    assert not world.has_text(999, "Menu", since=0)
