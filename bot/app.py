"""Builds the Application: settings → shared services → handlers, in the order they must match."""

from __future__ import annotations

import gc
import logging
from typing import Final

import httpx
from telegram import Update
from telegram.ext import (
    AIORateLimiter,
    ApplicationBuilder,
    BaseHandler,
    BaseUpdateProcessor,
    ContextTypes,
    PersistenceInput,
    TypeHandler,
)
from telegram.request import BaseRequest, HTTPXRequest

from bot import i18n, jobs
from bot.catalog import Catalog
from bot.concurrency import PerChatUpdateProcessor
from bot.config import Settings
from bot.crypto import KeyBox
from bot.deps import DEPS_KEY, BotApp, BotContext, Deps
from bot.handlers import (
    account,
    admin,
    catalog,
    errors,
    language,
    notify,
    orders,
    shop,
    start,
    wizard,
)
from bot.handlers import inline as inline_mode
from bot.handlers import links as deep_links
from bot.handlers import mass_order as mass_order_handlers
from bot.handlers import payments as payment_handlers
from bot.logs import REDACTOR
from bot.panel.client import PanelClient
from bot.panel.models import SANDBOX_URL
from bot.panel.sandbox import DEMO_KEY, SandboxPanel
from bot.ratelimit import UserRateLimiter
from bot.services import mass_order, placement
from bot.services.accounts import verify_secret_key
from bot.services.languages import Languages
from bot.stateless_http import StatelessClient
from storage import orders as order_store
from storage.db import add_reader, add_writer, close_database, open_database
from storage.persistence import (
    PERSIST_GROUP,
    SqlitePersistence,
    WriteThroughApplication,
    persist_now,
)

log = logging.getLogger(__name__)



class BotAPIRequest(HTTPXRequest):
    """python-telegram-bot's `HTTPXRequest` (the same parameters and defaults) on a client that
    keeps no cookies (`bot.stateless_http`): Telegram sets none, and keeping them cost ~90 µs a
    call."""

    def _build_client(self) -> httpx.AsyncClient:
        return StatelessClient(**self._client_kwargs)


def build_application(settings: Settings, *, request: BaseRequest | None = None,
                      updates_request: BaseRequest | None = None,
                      sandbox: SandboxPanel | None = None,
                      panel_transport: httpx.AsyncBaseTransport | None = None,
                      update_processor: BaseUpdateProcessor | None = None) -> BotApp:
    """The bot, ready for `run_polling`.

    Tests pass a fake Bot API (`request`), the sandbox used in demo mode, and for a configured
    PANEL_URL a `panel_transport` that stands in for the real panel. `update_processor` replaces
    the per-chat one (the concurrency benchmark compares it with sequential processing).
    """
    token = settings.bot_token.get_secret_value()
    REDACTOR.add(token)
    persistence = SqlitePersistence(
        settings.database_path,
        # The shared services live in bot_data: nothing there is worth persisting. No handler
        # uses chat_data: storing it would deep-copy and compare an empty dict every update.
        store_data=PersistenceInput(bot_data=False, chat_data=False, callback_data=False),
        update_interval=10,
    )
    builder = (
        ApplicationBuilder()
        # Its update_persistence writes the rows of an update on the spot (storage/persistence.py)
        .application_class(WriteThroughApplication)
        .token(token)
        .base_url(settings.telegram_base_url)
        .context_types(ContextTypes(context=BotContext))
        .persistence(persistence)
        .concurrent_updates(PerChatUpdateProcessor() if update_processor is None
                            else update_processor)
        .rate_limiter(AIORateLimiter(max_retries=3))
        .post_init(start_services)
        .post_shutdown(stop_services)
    )
    file_url = file_base_url(settings.telegram_base_url)
    if file_url is not None:  # files (a mass order's .txt) come from the same Bot API server
        builder = builder.base_file_url(file_url)
    if request is None:  # python-telegram-bot's own defaults, on clients that keep no cookies
        request, updates_request = BotAPIRequest(), BotAPIRequest(connection_pool_size=1)
    builder = builder.request(request).get_updates_request(updates_request or request)
    app: BotApp = builder.build()
    app.bot_data["settings"] = settings
    app.bot_data["sandbox"] = sandbox
    app.bot_data["panel_transport"] = panel_transport
    register_handlers(app)
    return app


async def start_services(app: BotApp) -> None:
    """Opens the database and the panel client, and registers the command menu.

    Called by `run_polling` (post_init); tests call it themselves after `app.initialize()`.
    """
    settings: Settings = app.bot_data["settings"]
    sandbox: SandboxPanel | None = app.bot_data.get("sandbox")
    await verify_secret_key(settings)  # stored keys undecryptable: SecretKeyMismatch, exit 2
    db = await open_database(settings.database_path)
    await add_reader(db, settings.database_path)  # reads never queue behind writes
    await add_writer(db, settings.database_path)  # one-statement writes on the loop
    if isinstance(app.persistence, SqlitePersistence):
        await app.persistence.take_turns_with(db)  # one writer for the file (storage/db.py)
    if settings.demo_mode and sandbox is None:
        # Its orders, balances, ids and clock live beside the database, so a restart of the demo
        # bot finds them as it would on a real panel.
        state = settings.database_path.with_name(settings.database_path.name + ".sandbox.json")
        sandbox = SandboxPanel(speed=settings.sandbox_speed, latency=settings.sandbox_latency,
                               state_path=state, keep_requests=1000)
    operator_key: str | None
    if settings.demo_mode:
        assert sandbox is not None
        panel_url, operator_key = SANDBOX_URL, DEMO_KEY
        panel = PanelClient(SANDBOX_URL, transport=sandbox.transport())
        log.warning("DEMO MODE: PANEL_URL is not set, so orders go to the built-in sandbox "
                    "panel. Nothing real is bought.")
    else:
        assert settings.panel_url is not None
        panel_url = settings.panel_url
        operator_key = (None if settings.panel_key is None
                        else settings.panel_key.get_secret_value())
        panel = PanelClient(settings.panel_url, transport=app.bot_data.get("panel_transport"))
        sandbox = None
    if settings.panel_key is not None:
        REDACTOR.add(settings.panel_key.get_secret_value())
    keybox = None
    if settings.secret_key is not None:
        REDACTOR.add(settings.secret_key.get_secret_value())
        keybox = KeyBox(settings.secret_key.get_secret_value())
    deps = Deps(
        settings=settings, db=db, panel=panel,
        catalog=Catalog(panel, db, ttl=settings.catalog_ttl),
        limiter=UserRateLimiter(settings.rate_limit_per_minute),
        panel_url=panel_url, operator_key=operator_key, demo=settings.demo_mode,
        keybox=keybox, sandbox=sandbox,
        languages=Languages(default=settings.default_language),
    )
    await deps.languages.load(db)
    app.bot_data[DEPS_KEY] = deps
    await adopt_unlabelled_orders(deps)
    # Before the tracker's first outbox drain, so the owners hear about it at once.
    await placement.release_interrupted(deps)
    await mass_order.release_interrupted(deps)
    await set_commands(app, shop=settings.shop_mode, default=settings.default_language)
    jobs.schedule(app)
    freeze_start_up()


#: Tracked objects allocated (net) between two young collections while the bot runs; CPython's
#: default is 700. A young collection is cheap, but every 10th is a middle one and every 100th
#: a full one: with 700, the stress benchmark (200 users) made a full collection every few
#: seconds, each a pause of 40-90 ms, and the collector took ~3 % of the CPU. With 10,000:
#: no full collection in the run, the longest pause ~17 ms, the collector ~1 %. The bot makes
#: little cyclic garbage (most of it is freed at once by reference counting), so it waits
#: little longer to be freed.
YOUNG_COLLECTION_EVERY: Final = 10_000
_thresholds: list[tuple[int, int, int]] = []  # the collector's, as they were before a start


def freeze_start_up() -> None:
    """What start-up built (modules, handlers, services) lives as long as the bot: moved out of
    the collector's way, so full collections no longer walk it again and again (they were
    pauses of 100+ ms under load). Young collections are made rarer too
    (`YOUNG_COLLECTION_EVERY`). `stop_services` hands both back (`release_start_up`)."""
    gc.freeze()
    if not _thresholds:
        _thresholds.append(gc.get_threshold())
    _young, middle, old = _thresholds[0]
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, old)


def release_start_up() -> None:
    """Undoes `freeze_start_up`: what start-up built may be garbage now (a test's bot, a
    restart), and the collector's thresholds are its own again."""
    gc.unfreeze()
    if _thresholds:
        gc.set_threshold(*_thresholds.pop())


async def set_commands(app: BotApp, *, shop: bool, default: str) -> None:
    """The command menu in each language (Telegram shows a user the one of their app's
    language), and in the default language for every other user."""
    with i18n.speaking(default):
        await app.bot.set_my_commands(start.bot_commands(shop=shop))
    for code in i18n.languages():
        with i18n.speaking(code):
            await app.bot.set_my_commands(start.bot_commands(shop=shop),
                                          language_code=i18n.telegram_code(code))


async def adopt_unlabelled_orders(deps: Deps) -> None:
    """Orders stored before orders recorded their panel get one: the sandbox's where demo mode
    ran on this database (its state file is beside it), else the panel in use now."""
    settings = deps.settings
    state = settings.database_path.with_name(settings.database_path.name + ".sandbox.json")
    panel = SANDBOX_URL if deps.demo or state.exists() else deps.panel_url
    adopted = await order_store.adopt_orders(deps.db, panel=panel)
    if adopted:
        log.info("%d order(s) from before panels were recorded are marked as placed on %s",
                 adopted, "the demo sandbox" if panel == SANDBOX_URL else "the current panel")


async def stop_services(app: BotApp) -> None:
    """Closes what `start_services` opened."""
    deps: Deps | None = app.bot_data.pop(DEPS_KEY, None)
    if deps is None:
        return
    await mass_order.wind_down(deps)  # the lines being sent finish; the rest wait for a start
    await deps.panel.aclose()
    await close_database(deps.db)
    release_start_up()


def register_handlers(app: BotApp) -> None:
    """Adds every handler. Order matters: the first matching handler of a group wins."""
    settings: Settings = app.bot_data["settings"]
    # Before all of them, in a group of its own: whoever writes has not blocked the bot.
    for handler, group in notify.early_handlers():
        app.add_handler(handler, group=group)
    # Before those: the language every text of this update is rendered in.
    for handler, group in language.early_handlers():
        app.add_handler(handler, group=group)
    in_order: list[list[BaseHandler[Update, BotContext, object]]] = [
        # A Stars payment before anything: a form waiting for an answer must never take it for
        # one. Then the wait for a typed top-up amount (its answer is not a search either).
        payment_handlers.early_handlers(settings),
        # /connect's key prompt comes first: the message after "/connect" is a key, and nobody
        # else may see it (the search would echo it). It only matches /connect, or the one
        # message after. The waits time out after ORDER_TIMEOUT, so they take the settings.
        account.handlers(settings),
        # An order card's "It was placed" prompt is such a one-message wait too.
        [orders.link_handler(settings)],
        # /massorder's lines likewise: while it waits, the chat's messages are lines.
        mass_order_handlers.handlers(settings),
        # Then the order wizard: while a user is filling in an order, their text answers
        # belong to it, not to the catalogue search that catches text otherwise.
        wizard.handlers(settings),
        # Deep links (/start o<id>) before /start itself; then inline mode and Share.
        deep_links.handlers(), inline_mode.handlers(),
        start.handlers(), catalog.handlers(), orders.handlers(), admin.handlers(),
        notify.handlers(), language.handlers(), shop.handlers(), payment_handlers.handlers(),
    ]
    for handlers in in_order:
        for handler in handlers:
            app.add_handler(handler)
    # Last of all: write the conversation state and user_data of this update to disk now, not
    # at PTB's next periodic flush, so a crash mid-wizard loses nothing.
    app.add_handler(TypeHandler(Update, persist_now), group=PERSIST_GROUP)
    app.add_error_handler(errors.on_error)


def updates_of_interest() -> list[str]:
    """The update types the bot asks Telegram for."""
    # pre_checkout_query: without it Telegram never asks, and every Stars checkout times out.
    return [Update.MESSAGE, Update.CALLBACK_QUERY, Update.INLINE_QUERY,
            Update.PRE_CHECKOUT_QUERY]


def file_base_url(base_url: str) -> str | None:
    """The file download URL of a Bot API base URL (`…/bot` → `…/file/bot`), or None when it
    cannot be told (PTB's default then)."""
    for suffix in ("/bot{token}", "/bot"):
        if base_url.endswith(suffix):
            return base_url[: -len(suffix)] + "/file" + suffix
    return None
