"""Subscriptions: existing posts are charged at once, new posts one by one as they come; the
summary shows both, and the short-balance warning is about what is charged now."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from bot.panel.models import Service
from bot.panel.sandbox import DEMO_KEY, SandboxPanel
from bot.service_types import form_for
from tests.conftest import BotHarness, start_harness, stop_harness
from tests.test_wizard import EXPIRY, run

# Service 4 of the sandbox: Instagram Auto Likes (Subscriptions), 0.30 USD per 1000, 100–5,000.
SUBSCRIBE = ["@someone", "100", "200", "tap:Skip"]
WARNING = "The balance is not enough"


def subscription(rate: str = "2") -> Service:
    """A Subscriptions service."""
    service = Service.from_api({"service": 4, "name": "Auto Likes", "type": "Subscriptions",
                                "category": "IG", "rate": rate, "min": "100", "max": "1000"})
    assert service is not None
    return service


def test_existing_posts_are_charged_up_front_new_ones_each() -> None:
    form, svc = form_for("Subscriptions"), subscription()
    values = {"username": "acme", "min": "100", "max": "200", "old_posts": "5", "delay": "0"}
    assert form.cost(svc, values) == Decimal("0.4")  # one new post: 2 × 200 / 1000
    assert form.upfront_cost(svc, values) == Decimal("2.0")  # 5 existing posts at once
    assert form.upfront_cost(svc, {**values, "old_posts": ""}) == 0
    default = form_for("Default")
    order = {"link": "https://x.com", "quantity": "500"}
    assert default.upfront_cost(svc, order) == default.cost(svc, order) == Decimal("1")


async def summary_with_balance(tmp_path: Path, balance: str, old_posts: str | None) -> str:
    """The summary of a subscription of service 4 (5 or no existing posts) on this balance."""
    sandbox = SandboxPanel(keys={DEMO_KEY: Decimal(balance)}, speed=60)
    bot: BotHarness = await start_harness(tmp_path, sandbox=sandbox)
    try:
        await bot.send("/order 4")
        old = [old_posts] if old_posts else ["tap:Skip"]
        await run(bot, [*SUBSCRIBE, *old, "tap:30", EXPIRY])
        summary = bot.last().plain
        assert "Check the order" in summary
        return summary
    finally:
        await stop_harness(bot)


async def test_summary_shows_the_charge_now_and_per_new_post(tmp_path: Path) -> None:
    summary = await summary_with_balance(tmp_path, "100", "5")
    assert "Charged now: up to 0.30 USD for 5 existing posts (0.06 USD each)" in summary
    assert "Cost per new post: up to 0.06 USD" in summary
    assert WARNING not in summary


async def test_short_balance_warning_counts_the_existing_posts(tmp_path: Path) -> None:
    # 0.10 USD covers one new post (0.06) but not the five existing ones charged at once (0.30).
    summary = await summary_with_balance(tmp_path, "0.10", "5")
    assert f"{WARNING} for the 5 existing posts charged now" in summary


async def test_without_existing_posts_nothing_is_charged_now(tmp_path: Path) -> None:
    summary = await summary_with_balance(tmp_path, "0.10", None)
    assert "Charged now: nothing (no existing posts)" in summary
    assert "Cost per new post: up to 0.06 USD" in summary
    assert WARNING not in summary and "⚠️" not in summary


async def test_a_balance_below_one_new_post_is_pointed_out(tmp_path: Path) -> None:
    summary = await summary_with_balance(tmp_path, "0.05", None)
    assert WARNING not in summary  # nothing is charged now
    assert "does not cover a new post (up to 0.06 USD each)" in summary
