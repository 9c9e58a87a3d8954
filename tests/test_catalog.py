"""The catalogue: categories, a category's services, a service's card, search, pages, limits."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.catalog import ServiceIndex
from bot.handlers.catalog import category_page, search_page
from bot.panel.models import Service
from bot.panel.sandbox import SandboxPanel
from tests.conftest import OTHER, USER, BotHarness, start_harness, stop_harness


def big_catalogue(count: int = 5000, *, long: bool = False) -> list[dict[str, Any]]:
    """`count` services in 25 categories; with `long`, names, categories and texts at length."""
    rows = []
    for i in range(1, count + 1):
        category = f"Category {i % 25:02d}" + (" with a very long name" * 8 if long else "")
        name = f"Service {i} followers" + (" and a lot more words in the name" * 6 if long else "")
        rows.append({"service": i, "name": name, "type": "Default", "category": category,
                     "rate": "1.5", "min": "10", "max": "100000", "refill": i % 2 == 0,
                     "cancel": True, "desc": ("A long description. " * 400) if long else ""})
    return rows


def callback_data(bot: BotHarness, user: int = USER) -> list[str]:
    """The callback data of the newest message's buttons."""
    return [data or "" for row in bot.world.buttons(bot.last(user)) for _text, data in row]


async def test_new_order_opens_categories_and_navigation_edits_one_message(
        bot: BotHarness) -> None:
    await bot.send("/start")
    menu = bot.last()
    await bot.press("New order")
    assert bot.last().message_id == menu.message_id  # edited, not a new message
    assert "Services: 32 in 6 categories" in bot.last().plain
    assert bot.buttons()[:2] == ["Instagram (14)", "TikTok (4)"]
    await bot.press("Instagram (14)")
    assert bot.last().message_id == menu.message_id
    assert "Instagram: 14 services (page 1/2)" in bot.last().plain
    await bot.press("#1 Instagram Followers")
    await bot.press("◀ Back")
    assert "Instagram: 14 services (page 1/2)" in bot.last().plain
    await bot.press("◀ Categories")
    await bot.press("◀ Menu")
    assert "Tap New order" in bot.last().plain
    assert len(bot.world.bot_messages(USER)) == 1
    assert all(a["callback_query_id"] for a in bot.world.calls_to("answerCallbackQuery"))
    assert len(bot.world.calls_to("answerCallbackQuery")) == 6  # every tap answered


async def test_service_card_shows_everything_the_panel_says(bot: BotHarness) -> None:
    await bot.send("/services")
    await bot.press("Instagram")
    await bot.press("#1 Instagram Followers")
    card = bot.last().plain
    for part in ("#1 Instagram Followers", "Category: Instagram", "Type: Default",
                 "Price: 0.90 USD per 1000", "Order between 50 and 10,000",
                 "Refill: yes · Cancel: yes", "Real-looking profiles."):
        assert part in card
    assert callback_data(bot) == ["new:1", "sh:1", "cs:0:0"]
    await bot.send("/services 14")
    await bot.press("#14 Instagram Starter Package")
    assert "Price: 4.99 USD per package" in bot.last().plain
    assert "Refill: no · Cancel: no" in bot.last().plain


async def test_category_pages_go_forward_and_back(bot: BotHarness) -> None:
    await bot.send("/services")
    await bot.press("Instagram")
    assert [b for b in bot.buttons() if b.startswith("#")][-1] == "#8 Instagram Mentions Hashtag"
    await bot.press("2 ▶")
    assert "page 2/2" in bot.last().plain
    shown = [b for b in bot.buttons() if b.startswith("#")]
    assert shown[0].startswith("#9 ") and shown[-1].startswith("#14 ")
    assert "2 ▶" not in bot.buttons()
    await bot.press("#14")
    await bot.press("◀ Back")
    assert "page 2/2" in bot.last().plain  # back to the page the service was picked from
    await bot.press("◀ 1")
    assert "page 1/2" in bot.last().plain


async def test_search_needs_every_word_any_case(bot: BotHarness) -> None:
    await bot.send("/services INSTAGRAM likes")
    text = bot.last().plain
    assert "#2 Instagram Likes" in text and "#11 Instagram Comment Likes" in text
    assert "YouTube" not in text and "#1 " not in text
    await bot.send("/services instagram nothing-like-this")
    assert "No service matches" in bot.last().plain


async def test_search_puts_an_exact_id_first(bot: BotHarness) -> None:
    await bot.send("/services 2")
    ids = [b.split()[0] for b in bot.buttons() if b.startswith("#")]
    assert ids[0] == "#2"
    assert "#12" in ids and "#20" in ids  # names and ids containing "2" follow


async def test_typed_text_searches_and_finds_categories(bot: BotHarness) -> None:
    await bot.send("telegram poll")
    assert "#24 Telegram Poll Votes" in bot.last().plain
    assert "#28" not in bot.last().plain  # Twitter Poll Votes: "telegram" does not match
    await bot.send("seo")  # the category "Website Traffic / SEO"
    assert "Website Traffic Worldwide" in bot.last().plain


async def test_search_results_page_through_a_big_catalogue(tmp_path: Path) -> None:
    harness = await start_harness(tmp_path, sandbox=SandboxPanel(services=big_catalogue()))
    try:
        await harness.send("12")
        first = harness.last()
        assert "page 1/" in first.plain
        ids = [b.split()[0] for b in harness.buttons() if b.startswith("#")]
        assert ids[:3] == ["#12", "#37", "#62"]  # the exact id, then "Category 12" in order
        await harness.press("2 ▶")
        assert harness.last().message_id == first.message_id
        assert "page 2/" in harness.last().plain
        await harness.press("◀ Categories")
        assert "Services: 5,000 in 25 categories (page 1/3)" in harness.last().plain
    finally:
        await stop_harness(harness)


async def test_an_expired_search_page_shows_the_categories(bot: BotHarness) -> None:
    await bot.send("/start")
    await bot.press_data("sr:3")  # no search was made (or the bot restarted)
    assert "That search has expired" in bot.last().plain


async def test_the_catalogue_is_fetched_once_not_per_tap(bot: BotHarness) -> None:
    await bot.send("/services")
    for _ in range(3):
        await bot.press("Instagram")
        await bot.press("#1 ")
        await bot.press("◀ Back")
        await bot.press("◀ Categories")
    await bot.send("likes")
    assert len(bot.panel_requests("services")) == 1


async def test_a_stale_catalogue_is_refreshed_in_the_background(tmp_path: Path) -> None:
    harness = await start_harness(tmp_path, CATALOG_TTL=0)
    try:
        await harness.send("/services")
        await harness.press("Instagram")  # served from the stale copy at once
        assert "Instagram: 14 services" in harness.last().plain
        await harness.deps.catalog.refresh("operator", "demo")
        assert len(harness.panel_requests("services")) >= 2
    finally:
        await stop_harness(harness)


async def test_panel_down_with_nothing_cached_offers_retry(bot: BotHarness) -> None:
    bot.sandbox.fail_next("services", "error:Incorrect request")
    await bot.send("/start")
    await bot.press("New order")
    assert "The panel could not be reached" in bot.last().plain
    assert bot.buttons() == ["🔄 Retry"]
    await bot.press("Retry")
    assert "Services: 32 in 6 categories" in bot.last().plain


async def test_forged_or_outdated_buttons_get_a_short_answer(bot: BotHarness) -> None:
    await bot.send("/services")
    await bot.press_data("cs:99:0")
    assert "The service list has changed" in bot.last().plain
    await bot.press_data("svc:9999")
    assert "Services: 32" in bot.last().plain
    assert bot.world.calls_to("answerCallbackQuery")[-1]["text"] == (
        "That service is no longer offered.")
    await bot.press_data("cs:x:y")
    await bot.press_data("cat:-1")
    await bot.press_data("svc:1:cs:zz")  # Back falls back to the service's own category
    assert "cs:0:0" in callback_data(bot)
    await bot.press_data("cat:999")  # clamped to the last page
    assert "Instagram (14)" in bot.buttons()


async def test_users_without_access_are_told_how_to_get_it(tmp_path: Path) -> None:
    sandbox = SandboxPanel(keys={"op-key": Decimal("10")})
    harness = await start_harness(tmp_path, sandbox=sandbox, PANEL_URL="https://p.example/api/v2",
                                  PANEL_KEY="op-key", ALLOWED_USER_IDS=str(USER))
    try:
        await harness.send("/services", user=OTHER)
        assert "you have no access" in harness.last(OTHER).plain
        await harness.send("/services", user=USER)
        assert "Services: 32" in harness.last(USER).plain
    finally:
        await stop_harness(harness)


async def test_long_names_and_descriptions_stay_within_telegram_limits(tmp_path: Path) -> None:
    harness = await start_harness(
        tmp_path, sandbox=SandboxPanel(services=big_catalogue(600, long=True)))
    try:
        await harness.send("/services")
        await harness.press("Category 01")
        for _ in range(2):
            await harness.press("▶")
        labels = harness.buttons()
        assert all(len(label) <= 60 for label in labels)
        await harness.press("#")
        assert len(harness.last().plain) <= 4096
        assert "A long description." in harness.last().plain
        await harness.send("followers words")
        assert all(len(data.encode()) <= 64 for data in callback_data(harness))
    finally:
        await stop_harness(harness)


def test_pages_of_a_5000_service_catalogue_fit_telegram() -> None:
    rows = big_catalogue(5000, long=True)
    services = tuple(s for s in (Service.from_api(r) for r in rows) if s is not None)
    index = ServiceIndex(services, "USD", 0.0)
    for category in range(len(index.categories)):
        text, markup = category_page(index, category, 10**6) or ("", None)
        assert markup is not None and len(text) <= 4096
        assert sum(len(row) for row in markup.inline_keyboard) <= 100
    text, markup = search_page(index, "followers", 40)
    assert len(text) <= 4096 and "page 41/625" in text
