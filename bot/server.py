"""Running the bot: long polling or webhook mode, and /healthz and /metrics over HTTP.

Without WEBHOOK_URL and HEALTH_PORT the bot runs PTB's own `run_polling`, as it always has.
Otherwise it runs PTB's documented custom-webhook pattern on an ASGI server (starlette +
uvicorn, as in PTB's `customwebhookbot` example): one HTTP server answers the webhook path of
WEBHOOK_URL (webhook mode), `GET /healthz` and `GET /metrics`; in polling mode with HEALTH_PORT
the same server answers the last two while PTB's Updater polls.

Both modes go through the same Application, so they behave the same: the per-chat update
processor, the persistence, the JobQueue (the tracker), `start_services` / `stop_services`
(what `run_polling` runs as post_init / post_shutdown, called here by hand since they only run
from `run_polling`/`run_webhook`), and the same stop on SIGTERM or SIGINT: updates stop coming
in (the Updater stops, or the HTTP server stops taking requests and finishes the ones it has),
then `Application.stop()` waits for every queued and running update and the running jobs and
flushes the persistence, then the services close; the exit code is 0.

Webhook mode: the listening socket is bound first (a port in use is one line and exit 2), the
server starts, then `setWebhook` tells Telegram the URL, the secret token and the update types
(`drop_pending_updates=False`: what Telegram queued meanwhile is delivered). Each request must
carry `X-Telegram-Bot-Api-Secret-Token` equal to WEBHOOK_SECRET (compared in constant time):
otherwise 403 and the body is not even read. The webhook stays set when the bot stops, so
Telegram keeps updates for the next start; starting in polling mode later deletes it first
(PTB's Updater calls `deleteWebhook` without dropping updates).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from telegram import Update
from telegram.error import TelegramError

from bot import health, metrics
from bot.app import start_services, stop_services, updates_of_interest
from bot.config import ConfigError, Settings
from bot.logs import REDACTOR

if TYPE_CHECKING:
    from bot.deps import BotApp

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_Endpoint = Callable[[Request], Awaitable[Response]]
#: Seconds the HTTP server gives open requests to finish when the bot stops.
GRACEFUL_HTTP_SECONDS = 10


def run(app: BotApp, settings: Settings) -> None:
    """Runs the bot until SIGTERM or SIGINT, in the mode the settings ask for."""
    if settings.webhook_url is None and settings.health_port is None:
        app.run_polling(allowed_updates=updates_of_interest(), drop_pending_updates=False)
        return
    asyncio.run(serve(app, settings))


# --- the HTTP side ---------------------------------------------------------------------------


def web_app(app: BotApp, settings: Settings) -> Starlette:
    """The ASGI app: the webhook route (webhook mode), /healthz and /metrics."""
    mode = "webhook" if settings.webhook_url is not None else "polling"

    async def healthz(request: Request) -> Response:
        """200 with the facts when the bot can do its job, else 503 with what is wrong."""
        ok, body = await health.check(settings.database_path,
                                      interval=settings.status_poll_interval)
        if not app.running:
            ok = False
            body["status"] = "unhealthy"
            body["problems"].append("the bot is starting or stopping")
        body["mode"] = mode
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics_page(request: Request) -> Response:
        """The Prometheus text format."""
        return Response(await metrics.render(settings.database_path),
                        media_type=metrics.CONTENT_TYPE)

    routes = [Route("/healthz", healthz, methods=["GET"]),
              Route("/metrics", metrics_page, methods=["GET"])]
    path = settings.webhook_path
    if path is not None:
        assert settings.webhook_secret is not None  # the settings require it with WEBHOOK_URL
        routes.append(Route(path, _webhook_endpoint(
            app, settings.webhook_secret.get_secret_value()), methods=["POST"]))
    return Starlette(routes=routes)


def _webhook_endpoint(app: BotApp, secret: str) -> _Endpoint:
    """The route Telegram POSTs updates to: secret checked, update queued, 200 at once."""
    expected = secret.encode()

    async def telegram_update(request: Request) -> Response:
        """Puts the update on the Application's queue, like PTB's own webhook handler."""
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, expected):
            client = request.client.host if request.client else "?"
            log.warning("Webhook request from %s without the right secret token: refused (403)",
                        client)
            return Response(status_code=403)
        if not app.running:
            return Response(status_code=503)  # stopping: Telegram delivers it again later
        try:
            data = await request.json()
            update = Update.de_json(data, app.bot) if isinstance(data, dict) else None
        except Exception:  # anything unreadable is the sender's fault
            update = None
        if update is None:
            log.warning("Webhook request with an unreadable update: refused (400)")
            return Response(status_code=400)
        await app.update_queue.put(update)
        return Response()

    return telegram_update


class HttpServer(uvicorn.Server):
    """uvicorn without signal handlers of its own: the runner decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leaves SIGTERM/SIGINT to the runner."""
        yield


def listen(host: str, port: int, setting: str = "WEBHOOK_PORT") -> socket.socket:
    """The listening socket, bound now so a port in use is known before Telegram is told."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}): set WEBHOOK_LISTEN and "
            f"{setting} to an address and a free port of this machine.") from None
    return sock


def http_server(app: BotApp, settings: Settings) -> HttpServer:
    """uvicorn serving `web_app`, logging through the bot's logging (no access log)."""
    config = uvicorn.Config(
        web_app(app, settings), log_config=None, access_log=False, lifespan="off", http="h11",
        server_header=False, timeout_graceful_shutdown=GRACEFUL_HTTP_SECONDS)
    return HttpServer(config)


# --- the lifecycle ---------------------------------------------------------------------------


async def serve(app: BotApp, settings: Settings) -> None:
    """Starts everything, serves until SIGTERM/SIGINT, then stops in order (module docstring).

    A signal during start-up cancels the start-up; what was opened is closed all the same.
    """
    webhook = settings.webhook_url is not None
    port = settings.webhook_port if webhook else settings.health_port
    assert port is not None
    if settings.webhook_secret is not None:
        REDACTOR.add(settings.webhook_secret.get_secret_value())
    sock = listen(settings.webhook_listen, port, "WEBHOOK_PORT" if webhook else "HEALTH_PORT")
    stop = asyncio.Event()
    started = False
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        """First signal: stop (cancelling the start-up if still under way); later ones: wait."""
        if stop.is_set():
            log.info("Already stopping; waiting for the running updates to finish")
            return
        log.info("Received %s; stopping.", signal.Signals(signum).name)
        stop.set()
        if not started and main is not None:
            main.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        try:
            await app.initialize()
            await start_services(app)
            await app.start()
            server = http_server(app, settings)
            http = asyncio.create_task(server.serve(sockets=[sock]), name="http-server")
            try:
                await _until_listening(server, http)
                if webhook:
                    await set_webhook(app, settings)
                else:
                    assert app.updater is not None
                    await app.updater.start_polling(allowed_updates=updates_of_interest(),
                                                    drop_pending_updates=False)
                _log_started(settings, port)
                started = True
                await _until(stop, http)
            finally:
                if app.updater is not None and app.updater.running:
                    await app.updater.stop()
                server.should_exit = True
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await http
                if app.running:
                    await app.stop()
        finally:
            await app.shutdown()
            await stop_services(app)
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
        if main is not None:
            main.uncancel()
        log.info("Stopped during start-up.")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        sock.close()


async def _until_listening(server: HttpServer, http: asyncio.Task[None]) -> None:
    """Waits until uvicorn accepts connections (or fails to start)."""
    while not server.started:
        if http.done():
            http.result()  # its exception, if any
            raise RuntimeError("the HTTP server stopped during start-up")
        await asyncio.sleep(0.01)


async def _until(stop: asyncio.Event, http: asyncio.Task[None]) -> None:
    """Waits for a stop signal; an HTTP server that ends by itself stops the bot with an error
    (so that a supervisor restarts it)."""
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({stopped, http}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not stop.is_set():
        log.error("The HTTP server ended unexpectedly; stopping the bot")
        http.result()  # raises what ended it, if anything did
        raise RuntimeError("the HTTP server ended unexpectedly")


async def set_webhook(app: BotApp, settings: Settings) -> None:
    """Tells Telegram where to send updates; a refusal is fatal (one line, exit 2)."""
    assert settings.webhook_url is not None and settings.webhook_secret is not None
    try:
        await app.bot.set_webhook(
            url=settings.webhook_url, secret_token=settings.webhook_secret.get_secret_value(),
            allowed_updates=updates_of_interest(), drop_pending_updates=False)
    except TelegramError as exc:
        raise ConfigError(f"Telegram refused the webhook {settings.webhook_url}: {exc.message}. "
                          "Check WEBHOOK_URL (public, https, a valid certificate).") from None


def _log_started(settings: Settings, port: int) -> None:
    """One line saying how the bot gets its updates and where it listens."""
    where = f"{settings.webhook_listen}:{port}"
    if settings.webhook_url is not None:
        log.info("Webhook mode: Telegram sends updates to %s; listening on %s (%s, /healthz, "
                 "/metrics). Press Ctrl+C to stop.", settings.webhook_url, where,
                 settings.webhook_path)
    else:
        log.info("Long polling; /healthz and /metrics on %s. Press Ctrl+C to stop.", where)
