"""Starts the bot: `python -m bot` or the `smm-bot` console script (subcommands: see --help)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config import ConfigError, Settings, load_settings
from bot.logs import REDACTOR, setup_logging
from storage.db import SchemaTooNew


def port_number(text: str) -> int:
    """A TCP port, 0-65535 (argparse type)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def try_it(args: argparse.Namespace) -> int:
    """`smm-bot try [--port N]`."""
    from bot.standin.trymode import run_try

    return run_try(args.port)


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
    command = commands.add_parser(
        "try", help="chat with the bot in your browser: demo mode, no Telegram, no token",
        description="Starts the bot in demo mode against a local stand-in for Telegram and "
        "serves a web chat at http://127.0.0.1:PORT.")
    command.add_argument("--port", type=port_number, default=8080,
                         help="the web chat's port on 127.0.0.1 (default 8080; 0 = any free)")
    command.set_defaults(func=try_it)
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
    So does a bot token Telegram refuses (exit code 2); Telegram out of reach at start-up is
    exit code 1. `smm-bot try` runs the bot in a local web chat instead.
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
    from telegram.error import InvalidToken, NetworkError

    from bot.app import build_application
    from bot.server import run
    from bot.services.accounts import verify_secret_key

    try:
        asyncio.run(verify_secret_key(settings))
        app = build_application(settings)
        asyncio.run(check_telegram(settings))
        log.info("Starting; press Ctrl+C to stop.")
        run(app, settings)
    except (ConfigError, SchemaTooNew) as exc:
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
