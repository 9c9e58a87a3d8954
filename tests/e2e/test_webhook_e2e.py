"""Webhook mode through the real process: `setWebhook` at start, updates POSTed by the fake
Telegram with the secret token and answered, requests without it (or with a wrong one) refused
with 403 and never processed, /healthz on the webhook port, SIGTERM finishing the update in
flight, a wizard step kept across a restart, and the way back to long polling deleting the
webhook without losing a queued update.

The fake Bot API plays Telegram's side of a webhook (`FakeTelegram.route_webhooks`): while one
is set, getUpdates answers 409 and the queued updates are POSTed to the bot's local port, the
path taken from the public WEBHOOK_URL, as a reverse proxy in front of the bot would.
"""

from __future__ import annotations

import time

import httpx
import pytest

from bot.app import updates_of_interest
from bot.standin.botapi import ERR_WEBHOOK_ACTIVE, SECRET_TOKEN_HEADER
from tests.e2e.conftest import FREE_PORT, BotDriver, free_port

PUBLIC_URL = "https://bot.example.com/tg/hook"
SECRET = "e2e_Webhook-secret_0123456789"
WEBHOOK = {"WEBHOOK_URL": PUBLIC_URL, "WEBHOOK_SECRET": SECRET, "WEBHOOK_PORT": FREE_PORT,
           "WEBHOOK_LISTEN": "127.0.0.1"}
HELP = "What I can do"


def local(bot: BotDriver, path: str = "/tg/hook") -> str:
    """The bot's own HTTP address for `path`."""
    return f"http://127.0.0.1:{bot.settings['WEBHOOK_PORT']}{path}"


def route(bot: BotDriver) -> None:
    """Telegram (the fake) delivers to the bot's port from now on."""
    bot.world.route_webhooks(local(bot, ""))


@pytest.mark.bot_settings(**WEBHOOK)
def test_webhook_mode_answers_updates_posted_with_the_secret_and_refuses_the_rest(
        bot_process: BotDriver) -> None:
    bot = bot_process
    hook = bot.world.calls_to("setWebhook")[-1]
    assert hook["url"] == PUBLIC_URL
    assert hook["secret_token"] == SECRET
    assert hook["allowed_updates"] == updates_of_interest()
    assert not hook.get("drop_pending_updates")
    assert not bot.world.calls_to("getUpdates")
    route(bot)

    first = bot.send("/start")
    assert "Demo mode" in bot.wait("Hi ").plain
    assert bot.world.delivered(first)
    assert bot.world.webhook_deliveries[0] == (first["update_id"], 200)
    bot.send("/help")
    bot.wait(HELP)

    # A request that does not come from Telegram: same update, no or a wrong secret token.
    with bot.world.webhook_paused():
        forged = bot.send("/orders")
        bot.world.discard_update(forged["update_id"])
    for headers in ({}, {SECRET_TOKEN_HEADER: "wrong"}, {SECRET_TOKEN_HEADER: SECRET + "x"},
                    {SECRET_TOKEN_HEADER: SECRET[:-1]}):
        answer = httpx.post(local(bot), json=forged, headers=headers, timeout=5)
        assert answer.status_code == 403, headers
    time.sleep(0.5)  # ample time for the bot to have answered, had it processed one of them
    assert not [text for text in bot.texts() if "Your orders" in text], bot.texts()[-1:]
    # The same request with the secret is answered: the 403s came from the check alone.
    answer = httpx.post(local(bot), json=forged, headers={SECRET_TOKEN_HEADER: SECRET},
                        timeout=5)
    assert answer.status_code == 200
    assert "No orders yet" in bot.wait("Your orders").plain
    assert [text for text in bot.texts() if "Your orders" in text] == [bot.texts()[-1]]

    # The same start-up as in polling mode: the command menu, and the tracker's job cycling.
    assert bot.world.commands(), "no command menu registered"

    def cycled() -> dict[str, object] | None:
        body: dict[str, object] = httpx.get(local(bot, "/healthz"), timeout=5).json()
        return body if body["seconds_since_tracker_cycle"] is not None else None

    health = bot.until(cycled, 10, "a tracker cycle")
    assert health["status"] == "ok" and health["mode"] == "webhook", health
    assert health["database_reachable"] is True
    assert SECRET not in bot.log()
    assert bot.terminate() == 0


@pytest.mark.bot_settings(**WEBHOOK, SANDBOX_LATENCY="1")  # every panel request takes 1 s
def test_sigterm_in_webhook_mode_finishes_the_update_in_flight(bot_process: BotDriver) -> None:
    bot = bot_process
    route(bot)
    bot.send("/start")
    bot.wait("Hi ")
    asking = bot.send("/balance")  # asks the sandbox panel, which takes a second to answer
    bot.until(lambda: bot.world.delivered(asking), 10, "the update to be delivered")
    stopping = time.monotonic()
    assert bot.terminate() == 0
    assert time.monotonic() - stopping < 8
    assert "Balance:" in bot.texts()[-1], bot.texts()[-1:]
    log = bot.log()
    assert "Application.stop() complete" in log and "Traceback" not in log, bot.log_tail()

    # The wizard's step survives a restart in webhook mode too (the same persistence).
    bot.start()
    bot.send("/order 1")
    bot.wait("Send the link to promote.", timeout=15)
    bot.send("https://instagram.com/webhook")
    bot.wait("How many?")
    assert bot.terminate() == 0
    bot.start()
    bot.send("100")
    assert "Step 3: Drip-feed runs" in bot.reply().plain


def test_polling_to_webhook_and_back_loses_no_queued_update(bot_process: BotDriver) -> None:
    bot = bot_process  # long polling
    bot.send("/start")
    bot.wait("Hi ")
    assert bot.terminate() == 0

    waiting = bot.send("/help")  # queued at Telegram while the bot is down
    bot.settings.update(WEBHOOK, WEBHOOK_PORT=str(free_port()))
    route(bot)
    bot.start()  # webhook mode: Telegram delivers what it kept
    assert HELP in bot.wait(HELP, since=0).plain
    # The bot may answer before Telegram has read its 200 for the delivery.
    bot.until(lambda: bot.world.delivered(waiting), 10, "the delivery's 2xx")
    status, body = bot.world.handle("getUpdates", {}, token="1:x")
    assert (status, body["description"]) == (409, ERR_WEBHOOK_ACTIVE)
    assert bot.terminate() == 0
    assert bot.world.webhook is not None, "stopping must not delete the webhook"

    later = bot.send("/orders")  # Telegram cannot deliver it: the bot is down
    bot.until(lambda: any(uid == later["update_id"] and status == 0
                          for uid, status in bot.world.webhook_deliveries), 10,
              "a failed delivery")
    for name in WEBHOOK:
        del bot.settings[name]
    bot.start()  # long polling again: deleteWebhook first, keeping the queue
    deletes = bot.world.calls_to("deleteWebhook")
    assert deletes and not deletes[-1].get("drop_pending_updates"), deletes
    assert bot.world.webhook is None
    assert "No orders yet" in bot.wait("Your orders").plain
    bot.send("/help")
    bot.wait(HELP)
