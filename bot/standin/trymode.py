"""`smm-bot try`: the real bot in demo mode against the Bot API stand-in, chatted with in a browser.

One process, one event loop: the Application of `bot.app.build_application` (its handlers,
storage, persistence and the tracker's JobQueue) polls the stand-in world in-process, and uvicorn
serves the web chat over that same world. Nothing goes to Telegram or to a panel: the Bot API
base URL is an `.invalid` host that never resolves, and orders go to the built-in sandbox.

The run has a database of its own in a fresh temporary directory, removed at exit, so every try
starts empty and a real bot's `data/` is never touched. `.env` is not read; the environment may
still tune the demo (`SANDBOX_SPEED`, `STATUS_POLL_INTERVAL`, `SANDBOX_LATENCY`, `LOG_LEVEL`,
`ORDER_TIMEOUT`, `CATALOG_TTL`, `RATE_LIMIT_PER_MINUTE`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from bot.config import ConfigError, Settings, load_settings
from bot.logs import setup_logging
from bot.standin.botapi import FakeRequest, FakeTelegram
from bot.standin.webchat import Persona, WebChat

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080
HOST = "127.0.0.1"
# Made up: the stand-in only checks its shape. Telegram never sees it.
TRY_TOKEN = "1000:try-local-stand-in"
STAND_IN_URL = "http://bot-api.invalid/bot"

ADMIN = Persona(101, "Alice", "admin",
                "An admin (ADMIN_IDS): orders, sees every order, /stats, /allow and /deny.")
CUSTOMER = Persona(102, "Bob", "customer",
                   "An allowed user (ALLOWED_USER_IDS): orders and follows their own orders.")
STRANGER = Persona(103, "Sam", "stranger",
                   "Nobody listed. Demo mode lets everyone order from the sandbox; with a real "
                   "panel they would need /connect and their own key.")
PERSONAS = (ADMIN, CUSTOMER, STRANGER)

# The demo's pace unless the environment says otherwise: orders complete 60-120 sandbox seconds
# after they are placed, so at 2× they complete within a minute and the tracker sees it in 5 s.
TUNABLE_DEFAULTS = {
    "SANDBOX_SPEED": "2",
    "STATUS_POLL_INTERVAL": "5",
    "SANDBOX_LATENCY": "0",
    "LOG_LEVEL": "INFO",
    "ORDER_TIMEOUT": "15",
    "CATALOG_TTL": "3600",
    "RATE_LIMIT_PER_MINUTE": "30",
}


def try_settings(database_path: Path) -> Settings:
    """The try run's settings: demo mode, the stand-in, the personas' roles, its own database.

    Raises ConfigError for a bad tuning value in the environment.
    """
    values: dict[str, object] = {
        name: os.environ.get(name, default) for name, default in TUNABLE_DEFAULTS.items()
    }
    values.update({
        "_env_file": None,  # a real deployment's .env must not leak into the demo
        "BOT_TOKEN": TRY_TOKEN,
        "TELEGRAM_BASE_URL": STAND_IN_URL,
        "PANEL_URL": "",  # demo mode, whatever the environment says
        "PANEL_KEY": "",
        "DATABASE_PATH": str(database_path),
        "ADMIN_IDS": str(ADMIN.user_id),
        "ALLOWED_USER_IDS": str(CUSTOMER.user_id),
        # So /connect can be tried; fresh each run, like the database it protects.
        "SECRET_KEY": secrets.token_urlsafe(32),
    })
    return load_settings(**values)


def bind(port: int, host: str = HOST) -> socket.socket:
    """A listening socket on host:port (0 = any free port); OSError when it is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class _WebServer(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` stops the bot too, then returns."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings, sock: socket.socket) -> None:
    """Runs the bot and the web chat until SIGINT/SIGTERM, then shuts both down in order."""
    from bot.app import build_application, start_services, stop_services, updates_of_interest

    world = FakeTelegram(strict_chats=True)
    chat = WebChat(world, PERSONAS)
    app = build_application(settings, request=FakeRequest(world),
                            updates_request=FakeRequest(world))
    server = _WebServer(uvicorn.Config(chat.app, log_level="warning", lifespan="off",
                                       timeout_graceful_shutdown=2))

    def stop() -> None:
        chat.close()
        server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    # As run_polling does it: initialize, post_init, poll, start; and the reverse at the end.
    await app.initialize()
    try:
        await start_services(app)
        assert app.updater is not None
        await app.updater.start_polling(allowed_updates=updates_of_interest(),
                                        poll_interval=0.0, timeout=10)
        await app.start()
        host, port = sock.getsockname()[:2]
        print(f"smm-bot try: the web chat is at http://{host}:{port} (Ctrl+C to stop)",
              flush=True)
        await server.serve(sockets=[sock])
    finally:
        stop()
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()
        await stop_services(app)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_try(port: int = DEFAULT_PORT) -> int:
    """`smm-bot try`: the exit code (0 after Ctrl+C, 2 for a taken port or a bad setting)."""
    try:
        sock = bind(port)
    except OSError as exc:
        print(f"smm-bot try: cannot listen on {HOST}:{port} ({exc.strerror or exc}); "
              f"pick another port, e.g. smm-bot try --port {port + 1 if port else 8081}",
              file=sys.stderr)
        return 2
    with sock, tempfile.TemporaryDirectory(prefix="smm-bot-try-") as tmp:
        database = Path(tmp) / "try.sqlite3"
        try:
            settings = try_settings(database)
        except ConfigError as exc:
            print(f"smm-bot try: {exc}", file=sys.stderr)
            return 2
        setup_logging(settings.log_level)
        log.info("Demo mode against a local stand-in for Telegram; the database is %s "
                 "(removed at exit). Nothing leaves this machine.", database)
        asyncio.run(serve(settings, sock))
    return 0
