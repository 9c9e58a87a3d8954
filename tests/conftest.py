"""Shared fixtures: a bot wired to a fake Bot API and the sandbox panel, on a temporary database."""

from __future__ import annotations

import gc
import gettext
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bot import i18n
from bot.app import BotApp, build_application, start_services, stop_services
from bot.config import HINTS, Settings
from bot.deps import DEPS_KEY, Deps
from bot.panel.sandbox import DEMO_KEY, SandboxPanel
from bot.standin.botapi import FakeMessage, FakeRequest, FakeTelegram, feed

TOKEN = "123456:TEST-TOKEN-abcdefghijklmnop"
USER = 42
OTHER = 43
ADMIN = 7


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stops aiosqlite worker threads a test left open: they are not daemon threads, so one
    left running would keep the test process alive after the last test."""
    for obj in gc.get_objects():
        if isinstance(obj, aiosqlite.Connection) and getattr(obj, "_running", False):
            obj.stop()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keeps a developer's own settings (environment or .env) out of the tests."""
    for name in HINTS:
        monkeypatch.delenv(name, raising=False)
    yield


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test bot: demo mode unless PANEL_URL is given; no .env file read."""
    values: dict[str, Any] = {"BOT_TOKEN": TOKEN, "DATABASE_PATH": tmp_path / "bot.sqlite3",
                              "ADMIN_IDS": str(ADMIN)}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class BotHarness:
    """A running bot and the fake Telegram it talks to, driven like a user would."""

    def __init__(self, app: BotApp, world: FakeTelegram, sandbox: SandboxPanel) -> None:
        self.app = app
        self.world = world
        self.sandbox = sandbox

    @property
    def deps(self) -> Deps:
        """The bot's shared objects."""
        deps: Deps = self.app.bot_data[DEPS_KEY]
        return deps

    async def send(self, text: str, user: int = USER, *, raise_errors: bool = True) -> None:
        """The user sends a message (a command when it starts with /)."""
        await feed(self.app, self.world.user_sends(user, text), raise_errors=raise_errors)

    async def press(self, label: str, user: int = USER, *, raise_errors: bool = True) -> None:
        """The user taps the button whose text contains `label` on the newest message with it."""
        button = self.world.find_button(user, label)
        assert button is not None, f"no button {label!r} in {self.texts(user)[-1:]}"
        await feed(self.app, self.world.user_presses(user, button.message_id, button.data),
                   raise_errors=raise_errors)

    async def press_data(self, data: str, user: int = USER, message_id: int | None = None,
                         *, raise_errors: bool = True) -> None:
        """The user's client sends callback data, even if no such button exists (forged)."""
        if message_id is None:
            last = self.world.last_bot_message(user)
            assert last is not None
            message_id = last.message_id
        await feed(self.app, self.world.user_presses(user, message_id, data, force=True),
                   raise_errors=raise_errors)

    def texts(self, user: int = USER) -> list[str]:
        """What the bot's messages in the chat show now (plain text)."""
        return self.world.bot_texts(user)

    def last(self, user: int = USER) -> FakeMessage:
        """The bot's newest message in the chat."""
        message = self.world.last_bot_message(user)
        assert message is not None, "the bot has said nothing"
        return message

    def buttons(self, user: int = USER) -> list[str]:
        """The button labels of the bot's newest message."""
        return [text for row in self.world.buttons(self.last(user)) for text, _data in row]

    def panel_requests(self, action: str) -> list[dict[str, str]]:
        """What reached the sandbox panel for an action (the key left out)."""
        return [{k: v for k, v in r.items() if k != "key"}
                for r in self.sandbox.requests_for(action)]


async def start_harness(tmp_path: Path, *, sandbox: SandboxPanel | None = None,
                        world: FakeTelegram | None = None,
                        demo_sandbox_from_settings: bool = False,
                        **overrides: Any) -> BotHarness:
    """Builds and initialises a bot (not polling: updates are fed by the test).

    Demo mode unless PANEL_URL is among the overrides; then the sandbox plays that panel and
    PANEL_KEY must be one of its keys (e.g. `sandbox=SandboxPanel(keys={"op-key": ...})`).
    `demo_sandbox_from_settings=True` (demo mode only) lets the bot make its sandbox itself, as
    it does in production (state file beside the database, SANDBOX_SPEED from the overrides);
    `harness.sandbox` is then that one.
    """
    settings = make_settings(tmp_path, **overrides)
    if demo_sandbox_from_settings:
        assert settings.demo_mode and sandbox is None, "the bot's own sandbox is demo mode's"
    else:
        sandbox = sandbox or SandboxPanel(keys={DEMO_KEY: Decimal("100")}, speed=60)
    world = world or FakeTelegram(strict_chats=False)
    for user in (USER, OTHER, ADMIN):
        world.open_chat(user, first_name=f"User{user}")
    # With a PANEL_URL the sandbox stands in for that real panel (reached through its transport).
    app = build_application(settings, request=FakeRequest(world),
                            updates_request=FakeRequest(world), sandbox=sandbox,
                            panel_transport=None if sandbox is None or settings.demo_mode
                            else sandbox.transport())
    await app.initialize()
    await start_services(app)
    if sandbox is None:
        sandbox = app.bot_data[DEPS_KEY].sandbox
        assert sandbox is not None
    return BotHarness(app, world, sandbox)


async def stop_harness(harness: BotHarness) -> None:
    """Shuts the bot down the way run_polling would."""
    if harness.app.running:
        await harness.app.stop()
    await stop_services(harness.app)
    await harness.app.shutdown()


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[BotHarness]:
    """A demo-mode bot on a fresh database."""
    harness = await start_harness(tmp_path)
    yield harness
    await stop_harness(harness)




def speak_stand_ins(monkeypatch: pytest.MonkeyPatch,
                    catalogs: dict[str, gettext.NullTranslations]) -> None:
    """For one test, the bot speaks English and these stand-in languages, whose catalogs are
    the given translation objects (undone with the monkeypatch)."""
    _swapped.append(True)
    every = {i18n.SOURCE: gettext.NullTranslations(), **catalogs}
    monkeypatch.setattr(i18n, "_translation",
                        lambda code: every.get(code, every[i18n.SOURCE]))
    monkeypatch.setattr(i18n, "languages", lambda: tuple(every))
    i18n.best_language.cache_clear()


def speak_catalog_files(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """For one test, the bot's catalogs are the .po files in `folder`."""
    _swapped.append(True)
    monkeypatch.setattr(i18n, "LOCALES_DIR", folder)
    i18n.reload()


_swapped: list[bool] = []  # a test swapped the catalogs (the real ones are read once per run)


@pytest.fixture(autouse=True)
def _real_catalogs_after_each_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test that swapped the catalogs leaves the real ones behind it."""
    yield
    if _swapped:
        monkeypatch.undo()
        i18n.reload()
        _swapped.clear()
