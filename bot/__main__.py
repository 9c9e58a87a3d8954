"""Starts the bot: `python -m bot` or the `smm-bot` console script."""

from __future__ import annotations

import asyncio
import logging
import sys

from bot.config import ConfigError, load_settings
from bot.logs import setup_logging


def main() -> None:
    """Reads the settings, then polls Telegram until stopped (SIGINT/SIGTERM).

    A bad setting, or a SECRET_KEY that cannot decrypt the stored panel keys, ends the process
    with one line on stderr and exit code 2, before Telegram is contacted.
    """
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"smm-bot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(settings.log_level)
    log = logging.getLogger("bot")
    from bot.app import build_application, updates_of_interest
    from bot.services.accounts import verify_secret_key

    try:
        asyncio.run(verify_secret_key(settings))
        app = build_application(settings)
        log.info("Starting; press Ctrl+C to stop.")
        app.run_polling(allowed_updates=updates_of_interest(), drop_pending_updates=False)
    except ConfigError as exc:
        log.critical("%s", exc)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
