"""/healthz and /metrics of the real process in polling mode (HEALTH_PORT): healthy with the
facts, 503 while the database file is gone, back to 200 when it returns; the Prometheus numbers
moving with an order (placed counter, panel requests, updates, tracker, notifications)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import FREE_PORT, PLACED_RE, BotDriver

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def url(bot: BotDriver, path: str) -> str:
    """The bot's health server address for `path`."""
    return f"http://127.0.0.1:{bot.settings['HEALTH_PORT']}{path}"


def healthz(bot: BotDriver) -> tuple[int, dict[str, Any]]:
    """GET /healthz: (status code, JSON body)."""
    answer = httpx.get(url(bot, "/healthz"), timeout=10)
    return answer.status_code, answer.json()


def scrape(bot: BotDriver) -> Samples:
    """GET /metrics, parsed: (sample name, sorted labels) -> value."""
    answer = httpx.get(url(bot, "/metrics"), timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.bot_settings(HEALTH_PORT=FREE_PORT, WEBHOOK_LISTEN="127.0.0.1")
def test_healthz_is_200_with_the_facts_and_503_while_the_database_file_is_gone(
        bot_process: BotDriver) -> None:
    bot = bot_process
    assert "integrity_check ok" in bot.log(), bot.log_tail()
    bot.send("/balance")  # one panel request
    bot.wait("Balance:")
    status, body = bot.until(
        lambda: (lambda got: got if got[1]["seconds_since_tracker_cycle"] is not None else None)(
            healthz(bot)), 10, "a tracker cycle")
    assert status == 200, body
    assert body["status"] == "ok" and body["mode"] == "polling" and body["problems"] == []
    assert body["database_reachable"] is True
    assert 0 <= body["seconds_since_tracker_cycle"] < 5
    assert body["outbox_backlog"] == 0
    assert body["panel_reachable"] is True

    moved = bot.db_path.with_name("elsewhere.sqlite3")
    bot.db_path.rename(moved)  # deleted or moved under the running bot
    try:
        status, body = healthz(bot)
        assert status == 503, body
        assert body["status"] == "unhealthy" and body["database_reachable"] is False
        assert any("database" in problem for problem in body["problems"]), body
        assert value(scrape(bot), "smm_bot_database_up") == 0
    finally:
        moved.rename(bot.db_path)
    status, body = healthz(bot)
    assert status == 200 and body["database_reachable"] is True, body
    assert bot.terminate() == 0


@pytest.mark.bot_settings(HEALTH_PORT=FREE_PORT, WEBHOOK_LISTEN="127.0.0.1")
def test_metrics_move_with_an_order(bot_process: BotDriver) -> None:
    bot = bot_process
    before = scrape(bot)
    for outcome in ("placed", "failed", "unknown"):
        assert ("smm_bot_orders_total", (("outcome", outcome),)) in before
    assert value(before, "smm_bot_orders_total", outcome="placed") == 0

    bot.send("/order 13")  # Instagram Story Views: link, quantity
    bot.wait("Send the link to promote.")
    bot.send("https://instagram.com/stories/metrics")
    bot.wait("How many?")
    bot.send("500")
    bot.wait("Check the order")
    bot.click("Confirm")
    match = PLACED_RE.search(bot.wait("placed.").plain)
    assert match is not None
    bot.wait("→ Completed")  # the tracker followed it and the notification went out

    def settled() -> Samples | None:
        samples = scrape(bot)
        return samples if value(samples, "smm_bot_notifications", state="sent") >= 1 else None

    after = bot.until(settled, 10, "the notification to count as sent")
    assert value(after, "smm_bot_orders_total", outcome="placed") == 1
    assert value(after, "smm_bot_orders_total", outcome="failed") == 0
    assert value(after, "smm_bot_orders_total", outcome="unknown") == 0
    assert value(after, "smm_bot_panel_requests_total", action="add", outcome="ok") == 1
    assert value(after, "smm_bot_panel_requests_total", action="status", outcome="ok") >= 1
    messages = value(after, "smm_bot_updates_total", kind="message")
    assert messages - value(before, "smm_bot_updates_total", kind="message") == 3
    assert value(after, "smm_bot_updates_total", kind="callback_query") >= 1
    assert value(after, "smm_bot_update_handling_seconds_count", kind="message") == messages
    assert value(after, "smm_bot_tracker_checked_total", kind="order") >= 1
    assert value(after, "smm_bot_tracker_cycle_seconds_count") >= 1
    assert value(after, "smm_bot_notifications", state="pending") == 0
    assert value(after, "smm_bot_database_up") == 1
    assert bot.terminate() == 0
