"""Starts the bot: `python -m bot` or the `smm-bot` console script."""

from __future__ import annotations

import asyncio
import logging
import sys

from bot.config import ConfigError, Settings, load_settings
from bot.logs import REDACTOR, setup_logging


def main() -> None:
    """Reads the settings, then polls Telegram until stopped (SIGINT/SIGTERM).

    A bad setting, or a SECRET_KEY that cannot decrypt the stored panel keys, ends the process
    with one line on stderr and exit code 2, before Telegram is contacted. So does a bot token
    Telegram refuses (exit code 2); Telegram out of reach at start-up is exit code 1.
    """
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"smm-bot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(settings.log_level)
    log = logging.getLogger("bot")
    from telegram.error import InvalidToken, NetworkError

    from bot.access import verify_secret_key
    from bot.app import build_application, updates_of_interest

    try:
        asyncio.run(verify_secret_key(settings))
        app = build_application(settings)
        asyncio.run(check_telegram(settings))
        log.info("Starting; press Ctrl+C to stop.")
        app.run_polling(allowed_updates=updates_of_interest(), drop_pending_updates=False)
    except ConfigError as exc:
        log.critical("%s", exc)
        raise SystemExit(2) from None
    # A newcomer's first two errors: one line saying what to check, not a traceback.
    except InvalidToken:
        print(f"smm-bot: {REDACTOR.clean(token_refused(settings.telegram_base_url))}",
              file=sys.stderr)
        raise SystemExit(2) from None
    except NetworkError as exc:  # TimedOut is one too
        print(f"smm-bot: {REDACTOR.clean(unreachable(settings.telegram_base_url, exc))}",
              file=sys.stderr)
        raise SystemExit(1) from None


async def check_telegram(settings: Settings) -> None:
    """Asks Telegram who the bot is (getMe), as run_polling does first; raises InvalidToken or
    NetworkError. Asked here, on a bot of its own, because run_polling logs either failure at
    ERROR with a traceback before it raises it."""
    from telegram import Bot

    async with Bot(settings.bot_token.get_secret_value(), base_url=settings.telegram_base_url):
        pass


def token_refused(base_url: str) -> str:
    """Why the bot stopped when Telegram refused its token (the token itself is never shown)."""
    text = ("Telegram refused the bot token: check BOT_TOKEN (the token @BotFather gave you; "
            "/token there shows it again, /revoke makes a new one)")
    if base_url != Settings.model_fields["telegram_base_url"].default:
        text += f", and that TELEGRAM_BASE_URL ({base_url}) is a Bot API server"
    return text + "."


def unreachable(base_url: str, error: Exception) -> str:
    """Why the bot stopped when Telegram could not be reached, and what to check."""
    cause = str(error).removeprefix("httpx.").strip() or type(error).__name__
    return (f"cannot reach Telegram at {base_url} ({cause[:200]}): check the network "
            "connection (a proxy or firewall?), and TELEGRAM_BASE_URL if you set it.")


if __name__ == "__main__":
    main()
