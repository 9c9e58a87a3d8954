"""Deep links (`?start=s<id>`, `?start=o<id>`), the service card's Share button, and inline
mode: services by words, one's own order by id (someone else's: nothing), the categories."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bot.app import updates_of_interest
from bot.panel.sandbox import DEMO_KEY, SandboxPanel
from bot.standin.botapi import BOT_USERNAME, MAX_INLINE_RESULTS, feed
from tests.conftest import OTHER, USER, BotHarness, start_harness, stop_harness
from tests.test_wizard import run

LINK = f"https://t.me/{BOT_USERNAME}?start="


async def place(bot: BotHarness, service: int = 2, user: int = USER) -> int:
    """Places an order through the wizard; its panel id."""
    await bot.send(f"/order {service}", user=user)
    await run(bot, [f"https://instagram.com/p/{user}-{service}", "100", "tap:Skip"], user=user)
    await bot.press("Confirm", user=user)
    return int(bot.last(user).plain.split("Order ")[1].split(" ")[0])


async def inline(bot: BotHarness, query: str, user: int = USER, offset: str = "") -> dict[str, Any]:
    """The user types `@bot <query>`: the bot's answer (answerInlineQuery's parameters)."""
    update = bot.world.user_inline_query(user, query, offset=offset)
    await feed(bot.app, update)
    answer = bot.world.inline_answer(update)
    assert answer is not None, "the inline query was not answered"
    return answer


# --- deep links -----------------------------------------------------------------------------


async def test_a_service_link_opens_its_order_form(bot: BotHarness) -> None:
    await bot.send("/start s24")
    assert "New order: #24 Telegram Poll Votes" in bot.last().plain
    assert "Step 1: Link" in bot.last().plain
    await run(bot, ["https://t.me/channel/5", "50", "2"])
    await bot.press("Confirm")
    assert bot.panel_requests("add")[0]["service"] == "24"


async def test_a_link_to_a_service_that_is_gone_or_a_bad_payload(bot: BotHarness) -> None:
    await bot.send("/start s999")
    assert bot.last().plain.startswith("There is no service #999.")
    await bot.send("/start hello")  # not a link of ours: the usual menu
    assert bot.last().plain.startswith("Hi User42!")
    await bot.send("/order 1")  # mid-form, a link starts that service's form instead
    await bot.send("/start s2")
    assert "New order: #2 Instagram Likes" in bot.last().plain


async def test_an_order_link_opens_ones_own_card_and_nobody_elses(bot: BotHarness) -> None:
    panel_id = await place(bot)
    await bot.send(f"/start o{panel_id}")
    assert f"Order {panel_id}" in bot.last().plain and "🔄 Refresh" in bot.buttons()
    await bot.send(f"/start o{panel_id}", user=OTHER)
    assert bot.last(OTHER).plain == "Order not found. See your orders with /orders."
    await bot.send("/start o999999")
    assert bot.last().plain == "Order not found. See your orders with /orders."


async def test_the_service_card_shares_its_link(bot: BotHarness) -> None:
    await bot.send("/services 24")
    await bot.press("#24")
    await bot.press("Share")
    message = bot.last()
    assert f"{LINK}s24" in message.plain
    (label, url), = message.buttons()[0]
    assert label == "📤 Send to a chat" and url is not None
    shared = parse_qs(urlsplit(url).query)
    assert urlsplit(url).netloc == "t.me" and shared["url"] == [f"{LINK}s24"]
    payload = shared["url"][0].split("?start=")[1]
    await bot.send(f"/start {payload}")
    assert "New order: #24" in bot.last().plain  # and the link does open the form


# --- inline mode ----------------------------------------------------------------------------


async def test_inline_words_list_matching_services_with_a_link_to_their_form(
        bot: BotHarness) -> None:
    answer = await inline(bot, "instagram likes")
    assert answer["is_personal"] is True
    results = answer["results"]
    titles = [r["title"] for r in results]
    assert titles[0] == "#2 Instagram Likes"
    assert all("instagram" in t.lower() and "like" in t.lower() for t in titles)
    first = results[0]
    assert first["description"] == "0.25 USD per 1000 · 10–50,000"
    assert "#2 Instagram Likes" in first["input_message_content"]["message_text"]
    (button,), = first["reply_markup"]["inline_keyboard"]
    assert button["url"] == f"{LINK}s2"
    package = (await inline(bot, "starter package"))["results"][0]
    assert package["description"] == "4.99 USD per package · 1–1"


async def test_inline_results_stop_at_50_and_page_on(tmp_path: Path) -> None:
    rows = [{"service": i, "name": f"Views pack {i}", "type": "Default", "category": "Views",
             "rate": "0.10", "min": "100", "max": "1000"} for i in range(1, 131)]
    bot = await start_harness(tmp_path, sandbox=SandboxPanel(
        keys={DEMO_KEY: Decimal("10")}, services=rows))
    try:
        seen: list[str] = []
        offset = ""
        for _ in range(3):
            answer = await inline(bot, "views", offset=offset)
            assert len(answer["results"]) <= MAX_INLINE_RESULTS
            seen += [r["id"] for r in answer["results"]]
            offset = answer.get("next_offset", "")
        assert len(seen) == 130 and len(set(seen)) == 130 and offset == ""
    finally:
        await stop_harness(bot)


async def test_inline_order_id_shows_ones_own_order_and_nothing_of_someone_elses(
        bot: BotHarness) -> None:
    panel_id = await place(bot)
    answer = await inline(bot, str(panel_id))
    (card,) = answer["results"]
    assert answer["is_personal"] is True and answer["cache_time"] == 0
    assert card["title"].startswith(f"Order {panel_id} · ")
    text = card["input_message_content"]["message_text"]
    assert f"Order {panel_id}" in text and "Instagram Likes" in text
    (button,), = card["reply_markup"]["inline_keyboard"]
    assert button["url"] == f"{LINK}o{panel_id}"  # opens the card (for its owner only)
    others = await inline(bot, str(panel_id), user=OTHER)
    assert others["results"] == []
    assert str(panel_id) not in str(others)
    assert (await inline(bot, f"#{panel_id}", user=OTHER))["results"] == []


async def test_an_empty_inline_query_shows_the_categories(bot: BotHarness) -> None:
    answer = await inline(bot, "")
    titles = [r["title"] for r in answer["results"]]
    assert titles[:3] == ["Instagram", "TikTok", "YouTube"]
    instagram = answer["results"][0]
    assert instagram["description"] == "14 services"
    (button,), = instagram["reply_markup"]["inline_keyboard"]
    assert button["switch_inline_query_current_chat"] == "Instagram"
    assert answer["button"]["start_parameter"] == "inline"


async def test_inline_without_access_shows_no_services(tmp_path: Path) -> None:
    sandbox = SandboxPanel(keys={"op-key": Decimal("10")})
    bot = await start_harness(tmp_path, sandbox=sandbox, PANEL_URL="https://panel.example/api/v2",
                              PANEL_KEY="op-key")
    try:
        answer = await inline(bot, "likes", user=OTHER)
        assert answer["results"] == [] and answer["button"]["start_parameter"] == "access"
        assert sandbox.requests == []
    finally:
        await stop_harness(bot)


async def test_inline_queries_are_asked_for() -> None:
    assert "inline_query" in updates_of_interest()
