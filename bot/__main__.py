"""Starts the bot: `python -m bot` or the `smm-bot` console script (subcommands: see --help)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config import ConfigError, load_settings
from bot.logs import setup_logging
from storage.db import SchemaTooNew


def backup(args: argparse.Namespace) -> int:
    """`smm-bot backup FILE`."""
    from bot.backup import backup_command

    return backup_command(args.file)


def restore(args: argparse.Namespace) -> int:
    """`smm-bot restore FILE`."""
    from bot.backup import restore_command

    return restore_command(args.file)


def parser() -> argparse.ArgumentParser:
    """The command line: no subcommand (or `run`) runs the bot; each other one sets `func`."""
    top = argparse.ArgumentParser(
        prog="smm-bot", description="A Telegram bot for ordering from an SMM panel. Settings "
        "come from the environment or .env (see .env.example).")
    commands = top.add_subparsers(dest="command", metavar="command")
    commands.add_parser("run", help="run the bot (the default)")
    command = commands.add_parser("backup", help="copy the database to FILE, safely while the "
                                  "bot runs (SQLite's online backup)")
    command.add_argument("file", type=Path)
    command.set_defaults(func=backup)
    command = commands.add_parser("restore", help="replace the database with the backup FILE "
                                  "(stop the bot first)")
    command.add_argument("file", type=Path)
    command.set_defaults(func=restore)
    return top


def main(argv: Sequence[str] | None = None) -> None:
    """Runs a subcommand, or reads the settings and serves Telegram until SIGINT/SIGTERM.

    Long polling, or webhook mode with WEBHOOK_URL (bot.server). A bad setting, a SECRET_KEY
    that cannot decrypt the stored panel keys, or a database from a newer version of the bot
    ends the process with one line on stderr and exit code 2, before Telegram is contacted.
    """
    args = parser().parse_args(argv)
    if getattr(args, "func", None) is not None:
        raise SystemExit(args.func(args))
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"smm-bot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(settings.log_level)
    log = logging.getLogger("bot")
    from bot.access import verify_secret_key
    from bot.app import build_application
    from bot.server import run

    try:
        asyncio.run(verify_secret_key(settings))
        app = build_application(settings)
        log.info("Starting; press Ctrl+C to stop.")
        run(app, settings)
    except (ConfigError, SchemaTooNew) as exc:
        log.critical("%s", exc)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
