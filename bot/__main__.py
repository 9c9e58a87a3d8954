"""Starts the bot: `python -m bot` or the `smm-bot` console script."""

from __future__ import annotations

import logging
import sys

from bot.config import ConfigError, load_settings
from bot.logs import setup_logging


def main() -> None:
    """Reads the settings, then polls Telegram until stopped (SIGINT/SIGTERM)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"smm-bot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(settings.log_level)
    from bot.app import build_application, updates_of_interest

    app = build_application(settings)
    logging.getLogger(__name__).info("Starting; press Ctrl+C to stop.")
    app.run_polling(allowed_updates=updates_of_interest(), drop_pending_updates=False)


if __name__ == "__main__":
    main()
