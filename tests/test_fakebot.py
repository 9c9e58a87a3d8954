"""Tests of the fake Telegram Bot API: Telegram's rules hold in-process and over HTTP; and the bot's
own sending layer (bot/outgoing.py) meets them as python-telegram-bot's typed methods do."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from telegram import (
    CopyTextButton,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    PreCheckoutQuery,
    Update,
    WebAppInfo,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    PreCheckoutQueryHandler,
)

from bot.keyboards import Button, Keyboard
from bot.outgoing import edit_html, markup_json, send_html
from bot.standin.botapi import (
    BOT_ID,
    BOT_USERNAME,
    FakeRequest,
    FakeTelegram,
    FakeTelegramServer,
    HtmlParseError,
    feed,
    parse_html,
)

USER = 42
TOKEN = "123:TEST"
AnyApp = Application[Any, Any, Any, Any, Any, Any]


def build_app(world: FakeTelegram) -> AnyApp:
    """Build a PTB Application wired to the in-process fake."""
    return (
        Application.builder()
        .token(TOKEN)
        .request(FakeRequest(world))
        .get_updates_request(FakeRequest(world))
        .build()
    )


@pytest.fixture
def world() -> FakeTelegram:
    """Return a world where USER has started the bot."""
    fake = FakeTelegram()
    fake.open_chat(USER, first_name="Alice")
    return fake


@pytest.fixture
async def app(world: FakeTelegram) -> AsyncIterator[AnyApp]:
    """Yield an initialized in-process Application."""
    application = build_app(world)
    async with application:
        yield application


def keyboard(*datas: str) -> InlineKeyboardMarkup:
    """Build a one-row keyboard whose button texts equal their data."""
    return InlineKeyboardMarkup([[InlineKeyboardButton(d, callback_data=d) for d in datas]])


# ------------------------------------------------------------------ in-process: the rules


async def test_get_me_is_the_test_bot(app: AnyApp) -> None:
    assert app.bot.id == BOT_ID
    assert app.bot.username == BOT_USERNAME


async def test_text_longer_than_4096_is_rejected(app: AnyApp, world: FakeTelegram) -> None:
    await app.bot.send_message(USER, "x" * 4096)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await app.bot.send_message(USER, "x" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await app.bot.send_message(USER, "  \n ")
    assert len(world.bot_texts(USER)) == 1


async def test_html_length_counts_after_entity_parsing(app: AnyApp, world: FakeTelegram) -> None:
    await app.bot.send_message(USER, "<b>" + "y" * 4096 + "</b>", parse_mode=ParseMode.HTML)
    await app.bot.send_message(USER, "&lt;" * 4096, parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await app.bot.send_message(USER, "&amp;" * 4097, parse_mode=ParseMode.HTML)
    first, second = world.bot_messages(USER)
    assert first.plain == "y" * 4096 and first.html.startswith("<b>y")
    assert first.entities == [{"offset": 0, "length": 4096, "type": "bold"}]
    assert second.text == "<" * 4096


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("<b>bold", 'can\'t find end tag corresponding to start tag "b"'),
        ("<foo>x</foo>", 'unsupported start tag "foo" at byte offset 0'),
        ("1 < 2", 'unsupported start tag "" at byte offset 2'),
        ("<b>x</i>", 'unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ('<span class="x">s</span>', 'tag "span" must have class "tg-spoiler" at byte offset 0'),
        ("x</b>", "unexpected end tag at byte offset 1"),
    ],
)
async def test_malformed_html_is_rejected(app: AnyApp, text: str, detail: str) -> None:
    with pytest.raises(BadRequest) as info:
        await app.bot.send_message(USER, text, parse_mode=ParseMode.HTML)
    assert info.value.message.lower() == f"can't parse entities: {detail}".lower()


async def test_html_without_parse_mode_is_shown_raw(app: AnyApp, world: FakeTelegram) -> None:
    await app.bot.send_message(USER, "<b>hi</b>")
    assert world.bot_texts(USER) == ["<b>hi</b>"]


async def test_a_text_sent_again_is_parsed_once_and_each_message_keeps_its_own_entities(
        app: AnyApp, world: FakeTelegram) -> None:
    """The fake keeps the parse of texts it sees again (every user's menu): the messages
    still get entities of their own, and a text that does not parse is refused every time."""
    from bot.standin import botapi

    botapi._parsed_html.cache_clear()
    text = "<b>Menu</b> · <i>pick one</i>"
    for _ in range(3):
        await app.bot.send_message(USER, text, parse_mode="HTML")
    assert botapi._parsed_html.cache_info().misses == 1
    first, second, third = world.bot_messages(USER)
    assert first.entities == second.entities == third.entities == [
        {"offset": 0, "length": 4, "type": "bold"},
        {"offset": 7, "length": 8, "type": "italic"}]
    first.entities.clear()
    assert second.entities and third.entities  # not the same list
    for _ in range(2):
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
            await app.bot.send_message(USER, "<b>open", parse_mode="HTML")


def test_parse_html_entities_use_utf16_offsets() -> None:
    plain, entities = parse_html(
        '🙂 <b>hi <i>there</i></b> <a href="https://e.x/?a=1&amp;b=2">link</a> &amp; &nbsp;'
        '<pre><code class="language-python">x = 1</code></pre>'
        '<span class="tg-spoiler">s</span><blockquote expandable>q</blockquote>'
    )
    assert plain == "🙂 hi there link & &nbsp;x = 1sq"
    assert entities == [
        {"offset": 3, "length": 8, "type": "bold"},
        {"offset": 6, "length": 5, "type": "italic"},
        {"offset": 12, "length": 4, "type": "text_link", "url": "https://e.x/?a=1&b=2"},
        {"offset": 25, "length": 5, "type": "pre", "language": "python"},
        {"offset": 30, "length": 1, "type": "spoiler"},
        {"offset": 31, "length": 1, "type": "expandable_blockquote"},
    ]
    with pytest.raises(HtmlParseError):
        parse_html("<a href=>x</a")


async def test_callback_data_must_be_1_to_64_bytes(app: AnyApp, world: FakeTelegram) -> None:
    await app.bot.send_message(USER, "ok", reply_markup=keyboard("d" * 64))
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await app.bot.send_message(USER, "no", reply_markup=keyboard("d" * 65))
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await app.bot.send_message(USER, "no", reply_markup=keyboard("ж" * 33))  # 66 bytes
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await app.bot.send_message(USER, "no", reply_markup=keyboard(""))
    assert world.bot_texts(USER) == ["ok"]


async def test_more_than_100_buttons_is_rejected(app: AnyApp) -> None:
    rows = [
        [InlineKeyboardButton(f"{r}-{c}", callback_data=f"{r}-{c}") for c in range(5)]
        for r in range(20)
    ]
    ok = InlineKeyboardMarkup(rows)
    await app.bot.send_message(USER, "100 buttons", reply_markup=ok)
    too_many = InlineKeyboardMarkup([*rows, [InlineKeyboardButton("x", callback_data="x")]])
    with pytest.raises(BadRequest, match=r"(?i)reply markup is too long"):
        await app.bot.send_message(USER, "101 buttons", reply_markup=too_many)


async def test_identical_edit_is_not_modified(app: AnyApp, world: FakeTelegram) -> None:
    sent = await app.bot.send_message(
        USER, "<b>Menu</b>", parse_mode="HTML", reply_markup=keyboard("a")
    )
    with pytest.raises(BadRequest, match="Message is not modified"):
        await sent.edit_text("<b>Menu</b>", parse_mode="HTML", reply_markup=keyboard("a"))
    with pytest.raises(BadRequest, match="Message is not modified"):
        await sent.edit_reply_markup(keyboard("a"))
    await sent.edit_text("Menu", reply_markup=keyboard("a"))  # entities differ: modified
    await sent.edit_reply_markup(keyboard("b"))
    edited = await sent.edit_text("Menu")  # dropping the keyboard is a change
    assert edited.reply_markup is None
    with pytest.raises(BadRequest, match="Message is not modified"):
        await sent.edit_text("Menu")
    (message,) = world.chat(USER)
    assert message.edit_count == 3 and message.plain == "Menu" and message.buttons() == []


async def test_edit_or_delete_unknown_message(app: AnyApp, world: FakeTelegram) -> None:
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await app.bot.edit_message_text("x", chat_id=USER, message_id=999)
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await app.bot.delete_message(USER, 999)
    sent = await app.bot.send_message(USER, "bye")
    assert await sent.delete()
    assert world.chat(USER) == []
    deleted = world.message(USER, sent.message_id)
    assert deleted is not None and deleted.deleted
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await sent.delete()
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await sent.edit_text("again")


async def test_unknown_chat_is_not_found(app: AnyApp) -> None:
    with pytest.raises(BadRequest, match="Chat not found"):
        await app.bot.send_message(555, "hello stranger")


async def test_blocked_user_is_forbidden(app: AnyApp, world: FakeTelegram) -> None:
    update = world.block(USER)
    assert update["my_chat_member"]["new_chat_member"]["status"] == "kicked"
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await app.bot.send_message(USER, "are you there?")
    with pytest.raises(Forbidden):
        await app.bot.send_chat_action(USER, "typing")
    world.user_sends(USER, "/start")  # restarting the bot unblocks it
    await app.bot.send_message(USER, "welcome back")


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # retry_after
async def test_flood_control_raises_retry_after(app: AnyApp, world: FakeTelegram) -> None:
    world.flood(USER, 7)
    with pytest.raises(RetryAfter) as info:
        await app.bot.send_message(USER, "spam")
    assert "7" in str(info.value)
    await app.bot.send_message(USER, "after waiting")
    assert world.bot_texts(USER) == ["after waiting"]


async def test_unknown_method_is_bad_request(app: AnyApp, world: FakeTelegram) -> None:
    with pytest.raises(BadRequest, match="Method not found"):
        await app.bot.do_api_request("sendTelepathy", api_kwargs={"chat_id": USER})
    assert world.calls[-1][0] == "sendTelepathy"


async def test_commands_round_trip(app: AnyApp, world: FakeTelegram) -> None:
    await app.bot.set_my_commands([("start", "Start"), ("order", "New order")])
    assert [c["command"] for c in world.commands()] == ["start", "order"]
    assert [c.command for c in await app.bot.get_my_commands()] == ["start", "order"]
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await app.bot.set_my_commands([("Start", "Start")])
    await app.bot.delete_my_commands()
    assert world.commands() == []


# ------------------------------------------------------------------ in-process: the user side


async def test_command_handler_receives_user_sends(app: AnyApp, world: FakeTelegram) -> None:
    seen: list[list[str]] = []

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_user is not None and update.effective_message is not None
        await update.effective_message.reply_text(f"Hi {update.effective_user.first_name}")

    async def order(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(list(context.args or []))

    app.add_handler(CommandHandler("start", start))
    app.add_handler(CommandHandler("order", order))
    await feed(app, world.user_sends(USER, "/start"))
    update = world.user_sends(USER, "/order 5")
    assert update["message"]["entities"] == [{"offset": 0, "length": 6, "type": "bot_command"}]
    await feed(app, update)
    assert world.bot_texts(USER) == ["Hi Alice"]
    assert seen == [["5"]]
    assert [m.from_bot for m in world.chat(USER)] == [False, True, False]
    assert world.pending_updates == []  # feed took the updates off the getUpdates queue


async def test_callback_query_handler_receives_presses(app: AnyApp, world: FakeTelegram) -> None:
    pressed: list[str | None] = []

    async def on_press(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        pressed.append(query.data)
        await query.answer(f"picked {query.data}")
        await query.edit_message_text(f"You picked {query.data}")

    app.add_handler(CallbackQueryHandler(on_press))
    sent = await app.bot.send_message(USER, "Pick", reply_markup=keyboard("p:1", "p:2"))
    assert world.buttons(world.chat(USER)[-1]) == [[("p:1", "p:1"), ("p:2", "p:2")]]
    button = world.find_button(USER, "p:2")
    assert button is not None and button.message_id == sent.message_id

    update = world.user_presses(USER, sent.message_id, "p:2")
    assert update["callback_query"]["message"]["text"] == "Pick"
    await feed(app, update)
    assert pressed == ["p:2"]
    assert world.answer_to(update) == {
        "callback_query_id": update["callback_query"]["id"],
        "text": "picked p:2",
    }
    assert world.bot_texts(USER) == ["You picked p:2"]

    with pytest.raises(ValueError, match="no button"):
        world.user_presses(USER, sent.message_id, "p:1")  # the keyboard is gone after the edit
    forged = world.user_presses(USER, sent.message_id, "admin:drop_db", force=True)
    await feed(app, forged)  # delivered although no such button exists: validate callback data!
    assert pressed == ["p:2", "admin:drop_db"]
    assert world.bot_texts(USER) == ["You picked admin:drop_db"]
    with pytest.raises(BadRequest, match="Message is not modified"):
        await feed(app, world.user_presses(USER, sent.message_id, "admin:drop_db", force=True))


async def test_answer_callback_query_rules(app: AnyApp, world: FakeTelegram) -> None:
    sent = await app.bot.send_message(USER, "Pick", reply_markup=keyboard("a"))
    query_id = world.user_presses(USER, sent.message_id, "a")["callback_query"]["id"]
    with pytest.raises(BadRequest, match=r"(?i)message_too_long"):
        await app.bot.answer_callback_query(query_id, "x" * 201)
    await app.bot.answer_callback_query(query_id, "x" * 200)
    with pytest.raises(BadRequest, match=r"(?i)query id is invalid"):
        await app.bot.answer_callback_query(query_id)


async def test_feed_reraises_handler_errors(app: AnyApp, world: FakeTelegram) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await context.bot.send_message(USER, "z" * 5000)

    app.add_handler(CommandHandler("start", start))
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await feed(app, world.user_sends(USER, "/start"))
    await feed(app, world.user_sends(USER, "/start"), raise_errors=False)


async def test_polling_in_process(world: FakeTelegram) -> None:
    application = build_app(world)

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("polled")

    application.add_handler(CommandHandler("start", start))
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0, timeout=1)
        world.user_sends(USER, "/start")
        await world.wait_for_text_async(USER, "polled", timeout=5)
        await application.updater.stop()
        await application.stop()
    assert world.pending_updates == []


# ------------------------------------------------------------------ over HTTP


async def test_http_polling_end_to_end() -> None:
    with FakeTelegramServer() as server:
        server.open_chat(USER)
        application = Application.builder().token(TOKEN).base_url(server.base_url).build()

        async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            assert update.effective_message is not None
            await update.effective_message.reply_html(
                "<b>Welcome</b> &amp; hi", reply_markup=keyboard("go")
            )

        async def on_press(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            assert update.callback_query is not None
            await update.callback_query.answer()
            await update.callback_query.edit_message_text("Gone")

        application.add_handler(CommandHandler("start", start))
        application.add_handler(CallbackQueryHandler(on_press))
        async with application:
            await application.start()
            assert application.updater is not None
            await application.updater.start_polling(poll_interval=0, timeout=1)
            server.user_sends(USER, "/start")
            welcome = await server.wait_for_text_async(USER, "Welcome & hi", timeout=5)
            assert welcome.entities == [{"offset": 0, "length": 7, "type": "bold"}]
            server.user_clicks(USER, "go")
            gone = await server.wait_for_text_async(USER, "Gone", timeout=5)
            assert gone.message_id == welcome.message_id and gone.edit_count == 1
            await application.updater.stop()
            await application.stop()
        assert "application/x-www-form-urlencoded" in server.content_types
        assert server.calls_to("answerCallbackQuery")


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # retry_after
async def test_http_errors_map_to_ptb_exceptions() -> None:
    with FakeTelegramServer() as server:
        server.open_chat(USER)
        application = Application.builder().token(TOKEN).base_url(server.base_url).build()
        async with application:
            bot = application.bot
            with pytest.raises(BadRequest, match=r"(?i)message is too long"):
                await bot.send_message(USER, "x" * 4097)
            with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
                await bot.send_message(USER, "x", reply_markup=keyboard("d" * 65))
            server.flood(USER, 3)
            with pytest.raises(RetryAfter):
                await bot.send_message(USER, "x")
            server.block(USER)
            with pytest.raises(Forbidden):
                await bot.send_message(USER, "x")
            with pytest.raises(BadRequest, match="Method not found"):
                await bot.do_api_request("noSuchMethod")


def test_http_raw_requests() -> None:
    with (
        FakeTelegramServer() as server,
        httpx.Client(base_url=server.base_url + TOKEN + "/") as client,
    ):
        server.open_chat(USER)
        unknown = client.post("fooBar", data={"chat_id": "1"})
        assert unknown.status_code == 400
        assert unknown.json() == {
            "ok": False,
            "error_code": 400,
            "description": "Bad Request: method not found",
        }
        assert httpx.post(server.base_url + "not-a-token/getMe").status_code == 404
        as_json = client.post(
            "sendMessage",
            json={
                "chat_id": USER,
                "text": "json",
                "reply_markup": {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]},
            },
        )
        assert as_json.json()["result"]["reply_markup"]["inline_keyboard"][0][0]["text"] == "A"
        multipart = client.post(
            "sendMessage",
            data={
                "chat_id": str(USER),
                "text": "multi",
                "reply_markup": json.dumps(
                    {"inline_keyboard": [[{"text": "B", "callback_data": "b"}]]}
                ),
            },
            files={"thumbnail": ("t.txt", b"123", "text/plain")},
        )
        assert multipart.json()["ok"] is True
        assert server.bot_texts(USER) == ["json", "multi"]
        assert server.content_types[-2:] == ["application/json", "multipart/form-data"]
        bad_markup = client.post(
            "sendMessage", data={"chat_id": USER, "text": "x", "reply_markup": "{"}
        )
        assert bad_markup.json()["description"] == (
            "Bad Request: can't parse reply keyboard markup JSON object"
        )

        later = threading.Timer(
            0.2,
            client.post,
            args=("sendMessage",),
            kwargs={"data": {"chat_id": USER, "text": "later"}},
        )
        later.start()  # the bot side, in another thread; the test thread blocks in wait_for_text
        assert server.wait_for_text(USER, "later", timeout=5, since=0).plain == "later"
        later.join()


def test_http_get_updates_long_poll() -> None:
    with (
        FakeTelegramServer() as server,
        httpx.Client(base_url=server.base_url + TOKEN + "/") as client,
    ):
        started = time.monotonic()
        empty = client.post("getUpdates", data={"timeout": "1"}, timeout=5)
        assert empty.json() == {"ok": True, "result": []}
        assert time.monotonic() - started >= 0.9

        threading.Timer(0.2, server.user_sends, args=(USER, "/start")).start()
        started = time.monotonic()
        got = client.post("getUpdates", data={"timeout": "5"}, timeout=10).json()
        assert time.monotonic() - started < 2
        (update,) = got["result"]
        assert update["message"]["text"] == "/start"
        confirm = {"offset": str(update["update_id"] + 1), "timeout": "0"}
        assert client.post("getUpdates", data=confirm).json()["result"] == []
        assert server.pending_updates == []


def test_http_get_updates_confirms_the_offset_before_the_long_poll() -> None:
    # Telegram forgets the updates below the offset when the call arrives: a bot killed while
    # its long poll is open must not be given them again after a restart.
    with (
        FakeTelegramServer() as server,
        httpx.Client(base_url=server.base_url + TOKEN + "/") as client,
    ):
        update = server.user_sends(USER, "/start")
        confirm = {"offset": str(update["update_id"] + 1), "timeout": "5"}
        poll = threading.Thread(target=client.post, args=("getUpdates",),
                                kwargs={"data": confirm, "timeout": 10})
        poll.start()  # stays open: nothing new arrives
        deadline = time.monotonic() + 5
        while not server.calls_to("getUpdates") and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert poll.is_alive()  # still long-polling...
        assert server.pending_updates == []  # ...and the update is already forgotten
        server.stop()  # releases the long poll
        poll.join(timeout=5)


async def test_fake_request_helpers_share_one_world(world: FakeTelegram) -> None:
    with FakeTelegramServer(world) as server:
        assert server.world is world
        world.user_sends(USER, "hello")
        assert server.chat(USER)[0].plain == "hello"
        await asyncio.sleep(0)


# ------------------------------------------------------------------ payments in Telegram Stars


def stars(amount: int = 50, label: str = "Top-up") -> list[LabeledPrice]:
    return [LabeledPrice(label, amount)]


async def send_stars_invoice(app: AnyApp, **overrides: Any) -> Message:
    """sendInvoice in Stars with valid values, except for `overrides`."""
    values: dict[str, Any] = {"chat_id": USER, "title": "Wallet top-up",
                              "description": "1.00 USD for your wallet", "payload": "topup:1:n",
                              "currency": "XTR", "prices": stars()}
    values.update(overrides)
    return await app.bot.send_invoice(**values)


async def test_a_stars_invoice_is_sent_and_shown_as_an_invoice(
        app: AnyApp, world: FakeTelegram) -> None:
    message = await send_stars_invoice(app, provider_token="")
    assert message.invoice is not None and message.text is None
    assert (message.invoice.currency, message.invoice.total_amount) == ("XTR", 50)
    [shown] = world.invoices(USER)
    assert world.invoice_payload(USER, shown.message_id) == "topup:1:n"
    with pytest.raises(BadRequest, match="no text in the message to edit"):
        await app.bot.edit_message_text("paid", chat_id=USER, message_id=shown.message_id)


@pytest.mark.parametrize(("overrides", "error"), [
    ({"title": ""}, "Invoice_title_invalid"),
    ({"title": "x" * 33}, "Invoice_title_invalid"),
    ({"description": "x" * 256}, "Invoice_description_invalid"),
    ({"payload": "é" * 65}, "Invoice_payload_invalid"),  # 130 bytes
    ({"provider_token": "284685063:TEST:abc"}, "Stars_invoice_invalid"),
    ({"prices": stars() + stars(10, "Tip")}, "Stars_invoice_invalid"),
    ({"max_tip_amount": 10}, "Stars_invoice_invalid"),
    ({"prices": stars(0)}, "Currency_total_amount_invalid"),
    ({"prices": stars(10_001)}, "Currency_total_amount_invalid"),
    ({"currency": "USD"}, "Payment_provider_invalid"),
])
async def test_stars_invoices_follow_telegrams_rules(
        app: AnyApp, world: FakeTelegram, overrides: dict[str, Any], error: str) -> None:
    with pytest.raises(BadRequest, match=error):
        await send_stars_invoice(app, **overrides)
    assert world.invoices(USER) == []


async def test_an_invoice_amount_must_be_a_whole_number(world: FakeTelegram) -> None:
    status, body = world.handle("sendInvoice", {
        "chat_id": USER, "title": "T", "description": "D", "payload": "p", "currency": "XTR",
        "prices": json.dumps([{"label": "x", "amount": 1.5}])})
    assert (status, body["description"]) == (400, "Bad Request: can't parse prices JSON object")


async def test_a_checkout_is_paid_only_after_an_ok_answer_within_ten_seconds(
        app: AnyApp, world: FakeTelegram) -> None:
    answered: list[PreCheckoutQuery] = []

    async def on_checkout(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.pre_checkout_query is not None and update.effective_chat is None
        answered.append(update.pre_checkout_query)
        await update.pre_checkout_query.answer(ok=True)

    app.add_handler(PreCheckoutQueryHandler(on_checkout))
    message = await send_stars_invoice(app)
    checkout = world.user_checks_out(USER, message.message_id)
    with pytest.raises(ValueError, match="not accepted"):
        world.user_pays(checkout)  # not answered yet: Telegram charges nothing
    await feed(app, checkout)
    assert answered[0].invoice_payload == "topup:1:n" and answered[0].total_amount == 50
    with pytest.raises(BadRequest, match="Query is too old"):  # answered once only
        await answered[0].answer(ok=True)
    paid = world.user_pays(checkout)
    payment = Update.de_json(paid, app.bot).effective_message.successful_payment  # type: ignore[union-attr]
    assert payment is not None and payment.total_amount == 50
    assert world.bot_stars == 50
    with pytest.raises(ValueError, match="was paid"):
        world.user_checks_out(USER, message.message_id)

    late = world.user_checks_out(USER, (await send_stars_invoice(app)).message_id)
    world.age_checkout(late, 11)
    with pytest.raises(BadRequest, match="Query is too old"):
        await app.bot.answer_pre_checkout_query(late["pre_checkout_query"]["id"], ok=True)


async def test_a_refused_checkout_needs_a_reason_and_charges_nothing(
        app: AnyApp, world: FakeTelegram) -> None:
    checkout = world.user_checks_out(USER, (await send_stars_invoice(app)).message_id)
    query_id = checkout["pre_checkout_query"]["id"]
    with pytest.raises(BadRequest, match="Error_message_empty"):
        await app.bot.answer_pre_checkout_query(query_id, ok=False)
    await app.bot.answer_pre_checkout_query(query_id, ok=False, error_message="Sold out")
    assert world.checkout_answer(checkout) == {**(world.checkout_answer(checkout) or {}),
                                               "ok": False, "error_message": "Sold out"}
    with pytest.raises(ValueError, match="not accepted"):
        world.user_pays(checkout)
    assert world.bot_stars == 0


async def test_refund_star_payment_follows_telegrams_rules(
        app: AnyApp, world: FakeTelegram) -> None:
    paid = world.successful_payment_update(USER, payload="p", total_amount=70)
    charge = paid["message"]["successful_payment"]["telegram_payment_charge_id"]
    with pytest.raises(BadRequest, match="Charge_id_invalid"):
        await app.bot.refund_star_payment(USER, "stxNOPE")
    with pytest.raises(BadRequest, match="Charge_id_invalid"):  # another user's payment
        await app.bot.refund_star_payment(USER + 1, charge)
    assert await app.bot.refund_star_payment(USER, charge) is True
    assert world.bot_stars == 0
    with pytest.raises(BadRequest, match="Charge_already_refunded"):
        await app.bot.refund_star_payment(USER, charge)


async def test_fail_next_can_lose_the_answer_of_a_call_that_took_effect(
        app: AnyApp, world: FakeTelegram) -> None:
    paid = world.successful_payment_update(USER, payload="p", total_amount=70)
    charge = paid["message"]["successful_payment"]["telegram_payment_charge_id"]
    world.fail_next("refundStarPayment", 502, "Bad Gateway", after_doing_it=True)
    with pytest.raises(NetworkError):
        await app.bot.refund_star_payment(USER, charge)
    assert world.star_payments[charge]["refunded"] is True


# ------------------------------------------------------------------ bot/outgoing.py
# The bot's own sends and edits: on the wire as python-telegram-bot's typed methods make them,
# meeting Telegram's answers (errors included) the same way.

_MARKUP = InlineKeyboardMarkup([[InlineKeyboardButton("Open ✅", callback_data="op:1"),
                                 InlineKeyboardButton("Site", url="https://example.com")]])


async def test_a_message_goes_out_as_the_typed_method_sends_it(
    app: AnyApp, world: FakeTelegram
) -> None:
    text = "<b>Order 7</b> placed: https://example.com/p"
    typed = await app.bot.send_message(USER, text, parse_mode=ParseMode.HTML,
                                       reply_markup=_MARKUP, disable_web_page_preview=True)
    ours = await send_html(app.bot, USER, text, _MARKUP)
    first, second = world.calls_to("sendMessage")
    assert second == first
    assert ours == typed.message_id + 1 == world.bot_messages(USER)[-1].message_id
    assert world.bot_messages(USER)[-1].buttons() == world.bot_messages(USER)[0].buttons()


async def test_an_edit_goes_out_as_the_typed_method_sends_it_and_meets_the_same_errors(
    app: AnyApp, world: FakeTelegram
) -> None:
    message_id = await send_html(app.bot, USER, "Menu", _MARKUP)
    await app.bot.edit_message_text("<i>Typed</i>", USER, message_id, parse_mode=ParseMode.HTML,
                                    reply_markup=_MARKUP, disable_web_page_preview=True)
    await edit_html(app.bot, USER, message_id, "<i>Ours</i>", _MARKUP)
    typed, ours = world.calls_to("editMessageText")
    assert {**ours, "text": "<i>Typed</i>"} == typed
    (message,) = world.bot_messages(USER)
    assert message.plain == "Ours" and message.edit_count == 2
    with pytest.raises(BadRequest, match="Message is not modified"):
        await edit_html(app.bot, USER, message_id, "<i>Ours</i>", _MARKUP)
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await edit_html(app.bot, USER, message_id, "<b>unclosed", _MARKUP)
    await edit_html(app.bot, USER, message_id, "<i>Ours</i>")  # the buttons go
    assert world.bot_messages(USER)[0].buttons() == []


_TEXTS = st.text(min_size=1, max_size=20)
_BUTTONS = st.one_of(
    st.builds(lambda t, d: InlineKeyboardButton(t, callback_data=d), _TEXTS,
              st.text(min_size=1, max_size=64)),
    st.builds(lambda t, u: InlineKeyboardButton(t, url=u), _TEXTS,
              st.sampled_from(["https://example.com/a?b=1", "tg://user?id=7", "https://t.me/x"])),
    st.builds(lambda t, q: InlineKeyboardButton(t, switch_inline_query=q), _TEXTS, _TEXTS),
    st.builds(lambda t, q: InlineKeyboardButton(t, switch_inline_query_current_chat=q),
              _TEXTS, st.text(max_size=10)),
    st.builds(lambda t, c: InlineKeyboardButton(t, copy_text=CopyTextButton(c)), _TEXTS,
              _TEXTS),
    st.builds(lambda t: InlineKeyboardButton(t, web_app=WebAppInfo("https://example.com/app")),
              _TEXTS),
    st.builds(lambda t, d: InlineKeyboardButton(t, callback_data=d, api_kwargs={"style": "x"}),
              _TEXTS, _TEXTS),
)


@given(st.lists(st.lists(_BUTTONS, min_size=1, max_size=4), max_size=5))
def test_a_keyboard_goes_out_as_python_telegram_bot_would_send_it(
        rows: list[list[InlineKeyboardButton]]) -> None:
    markup = InlineKeyboardMarkup(rows)
    assert json.loads(markup_json(markup)) == markup.to_dict()


_OWN_BUTTONS = st.one_of(
    st.builds(lambda t, d: Button(t, callback_data=d), _TEXTS, st.text(min_size=1, max_size=64)),
    st.builds(lambda t, u: Button(t, url=u), _TEXTS,
              st.sampled_from(["https://example.com/a?b=1", "tg://user?id=7", "https://t.me/x"])),
)


@given(st.lists(st.lists(_OWN_BUTTONS, min_size=1, max_size=4), max_size=5))
def test_the_bots_own_keyboard_goes_out_as_the_same_python_telegram_bot_keyboard_would(
        rows: list[list[Button]]) -> None:
    keyboard = Keyboard(rows)
    assert json.loads(markup_json(keyboard)) == keyboard.ptb().to_dict()
    assert keyboard.inline_keyboard == tuple(map(tuple, rows))


async def test_a_send_to_a_user_who_blocked_the_bot_raises_forbidden(
    app: AnyApp, world: FakeTelegram
) -> None:
    world.block(USER)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await send_html(app.bot, USER, "hello")
    assert world.bot_messages(USER) == []
