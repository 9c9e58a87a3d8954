"""A full order of each seed service type through the running bot, and Confirm tapped twice.

The sandbox refuses a request with a wrong or missing field for its type with the real panel's
error, so "Order N placed" proves the `add` request was well-formed; the summary is checked to
show exactly the answers, the push to arrive when the order completes, and /status, /orders and
the order's card to show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pytest

from tests.e2e.conftest import PLACED_RE, BotDriver

EXPIRY = (date.today() + timedelta(days=400)).strftime("%d/%m/%Y")


@dataclass(frozen=True)
class Step:
    """A question the bot asks (a piece of its text) and the user's answer to it.

    `answer` is sent as a message, unless `tap` names a button to tap instead.
    """

    question: str
    answer: str = ""
    tap: str | None = None


@dataclass(frozen=True)
class Scenario:
    """A whole order: the service, the questions and answers, and what the summary shows."""

    service: int
    steps: tuple[Step, ...]
    summary: tuple[str, ...]  # the summary's field lines, exactly, in order
    cost: str
    sent: tuple[str, ...]  # values the order's card lists as sent


SCENARIOS = [
    pytest.param(Scenario(
        service=1,  # Instagram Followers, Default, drip-feed offered
        steps=(Step("Send the link to promote.", "instagram.com/me"),
               Step("How many?", "100"),
               Step("in how many runs", "3"),
               Step("how many minutes between runs?", "30")),
        summary=("Link: https://instagram.com/me", "Quantity: 100", "Drip-feed runs: 3",
                 "Drip-feed interval (min): 30", "Total quantity: 300"),
        cost="Estimated cost: 0.27 USD",
        sent=("https://instagram.com/me", "100", "3", "30"),
    ), id="Default with drip-feed"),
    pytest.param(Scenario(
        service=30,  # Website Traffic from Google (keywords), SEO
        steps=(Step("Send the link to promote.", "https://example.com/shop"),
               Step("How many?", "500"),
               Step("Send the keywords, one per line.", "buy shoes\n\n best running shoes ")),
        summary=("Link: https://example.com/shop", "Quantity: 500", "Keywords: (2 lines)",
                 "buy shoes", "best running shoes"),
        cost="Estimated cost: 0.35 USD",
        sent=("https://example.com/shop", "500", "buy shoes", "best running shoes"),
    ), id="keywords"),
    pytest.param(Scenario(
        service=17,  # TikTok Custom Comments, 5-1000 comments
        steps=(Step("Send the link to promote.", "https://tiktok.com/@me/video/1"),
               Step("Send the comments, one per line.",
                    "Great video!\nLove it <3\nTom & Jerry\n<b>not bold</b>\nWow")),
        summary=("Link: https://tiktok.com/@me/video/1", "Comments: (5 lines)", "Great video!",
                 "Love it <3", "Tom & Jerry", "<b>not bold</b>", "Wow"),
        cost="Estimated cost: 0.0325 USD (6.50 USD per 1000 × 5)",
        sent=("https://tiktok.com/@me/video/1", "Love it <3", "Tom & Jerry", "<b>not bold</b>"),
    ), id="Custom Comments"),
    pytest.param(Scenario(
        service=24,  # Telegram Poll Votes
        steps=(Step("Send the link to promote.", "https://t.me/channel/5"),
               Step("How many?", "50"),
               Step("Which answer of the poll", "2")),
        summary=("Link: https://t.me/channel/5", "Quantity: 50", "Answer number: 2"),
        cost="Estimated cost: 0.03 USD",
        sent=("https://t.me/channel/5", "50", "2"),
    ), id="Poll"),
    pytest.param(Scenario(
        service=4,  # Instagram Auto Likes, Subscriptions
        steps=(Step("Send the username of the account to follow.", "@someone"),
               Step("The least quantity for each new post?", "100"),
               Step("The most quantity for each new post?", "200"),
               Step("For how many new posts?", "10"),
               Step("For how many existing posts as well?", tap="Skip"),
               Step("Delay in minutes before each delivery?", tap="30"),
               Step("When should the subscription end?", EXPIRY)),
        summary=("Username: someone", "Quantity min: 100", "Quantity max: 200",
                 "New posts: 10", "Delay (min): 30", f"Expiry: {EXPIRY}"),
        cost="Cost per new post: up to 0.06 USD",
        sent=("someone", "100", "200", "10", "30", EXPIRY),
    ), id="Subscriptions"),
]


def summary_fields(text: str) -> list[str]:
    """The field lines of a summary: after "Check the order…", up to the blank line."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("Check the order")) + 1
    if start < len(lines) and not lines[start]:
        start += 1
    end = lines.index("", start)
    return lines[start:end]


def fill_in(bot: BotDriver, service: int, steps: tuple[Step, ...]) -> str:
    """/order <service>, answering each question once it shows; the summary's text."""
    bot.send(f"/order {service}")
    for step in steps:
        question = bot.wait(step.question).plain
        assert "Example:" in question, question
        if step.tap is not None:
            bot.click(step.tap, exact=step.tap.isdigit())  # "30", not "300"; "Skip" in "⏭ Skip"
        else:
            bot.send(step.answer)
    return bot.wait("Check the order").plain


def placed_id(bot: BotDriver) -> int:
    """The panel's order id from the "Order N placed" message shown after the latest tap."""
    match = PLACED_RE.search(bot.wait("placed.").plain)
    assert match is not None
    return int(match.group(1))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_full_order_is_placed_pushed_when_completed_and_listed(
        bot_process: BotDriver, scenario: Scenario) -> None:
    bot = bot_process
    summary = fill_in(bot, scenario.service, scenario.steps)
    assert summary_fields(summary) == list(scenario.summary), summary
    assert scenario.cost in summary, summary
    assert "Balance: 100.00 USD" in summary, summary

    tap = bot.click("Confirm")
    panel_id = placed_id(bot)
    assert "tracking is on" in bot.wait(f"Order {panel_id} placed").plain
    assert bot.answer_to(tap).get("text") == "Sending the order…"

    push = bot.wait("→ Completed").plain
    assert push.startswith(f"Order {panel_id} · "), push

    bot.send(f"/status {panel_id}")
    status = bot.wait("Status of 1 order").plain
    assert f"{panel_id} · Completed" in status, status

    bot.send("/orders")
    listing = bot.wait("Your orders").plain
    assert "(1, newest first" in listing and f"{panel_id} · " in listing, listing
    bot.click(f"{panel_id} · ")
    card = bot.wait(f"Order {panel_id}").plain
    assert "Status: Completed" in card, card
    for value in scenario.sent:
        assert value in card, (value, card)


def test_confirm_tapped_twice_places_one_order(bot_process: BotDriver) -> None:
    bot = bot_process
    fill_in(bot, 1, (Step("Send the link to promote.", "https://instagram.com/double"),
                     Step("How many?", "100"),
                     Step("in how many runs", tap="Skip")))
    confirm = bot.button("Confirm")
    # Two taps arrive before the bot has answered the first (the second one forced: by the time
    # it is queued the bot may already have taken the button off the message).
    first = bot.press(confirm, force=True)
    second = bot.press(confirm, force=True)
    answers = sorted(str(bot.answer_to(tap).get("text")) for tap in (first, second))
    assert answers == ["Sending the order…", "This order was already sent."]

    panel_id = placed_id(bot)
    placed = [text for text in bot.texts() if PLACED_RE.search(text)]
    assert len(placed) == 1, placed
    bot.send("/orders")
    listing = bot.wait("Your orders").plain
    assert "(1, newest first" in listing and f"{panel_id} · " in listing, listing
    bot.send(f"/status {panel_id} {panel_id + 1}")
    status = bot.wait("Status of 2 orders").plain
    assert f"{panel_id} · " in status and f"Not found: {panel_id + 1}" in status, status
