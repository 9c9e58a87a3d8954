"""The real bot as a subprocess (`python -m bot`) against the fake Bot API server, driven as a user.

Each test gets its own `FakeTelegramServer` and a `BotDriver` (fixture `bot_process`) that starts
the bot in demo mode on a temporary database, in a clean environment (only PATH, HOME, PYTHONPATH
and VIRTUAL_ENV are passed on, and the working directory is a temporary one, so no developer
`.env` is read). The sandbox panel the bot creates for itself runs `SANDBOX_SPEED` times faster
than real time, so demo orders finish in a second or two, and the tracker polls every second.

Every wait has a deadline (`WAIT` seconds) and stops early if the bot process has died, so a
broken build fails quickly instead of hanging CI. On a failure the report gets the tail of the
bot's log; at teardown the process is killed if still running, and a log with an ERROR or a
traceback fails the test.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.standin.botapi import FakeButton, FakeMessage, FakeTelegramServer

T = TypeVar("T")
JSON = dict[str, Any]

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123456:E2E-test-token-abcdef"
USER = 42
WAIT = 10.0  # seconds for any one thing the user waits for
START_TIMEOUT = 15.0  # seconds for the process to start polling
STOP_TIMEOUT = 10.0  # seconds for a clean exit after SIGTERM
SANDBOX_SPEED = "120"  # demo orders: pending < 0.2 s, completed after 0.5–1 s
LOG_TAIL_LINES = 60
PLACED_RE = re.compile(r"Order (\d+) placed")
#: A `bot_settings` value replaced by a free local TCP port (the same one within a test).
FREE_PORT = "{free port}"


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it for a socket bound to port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class BotDriver:
    """One user talking to the bot process through the fake server; starts and stops the bot."""

    def __init__(self, server: FakeTelegramServer, workdir: Path, user: int = USER,
                 **settings: str) -> None:
        self.server = server
        self.world = server.world
        self.user = user
        self.workdir = workdir
        self.db_path = workdir / "db.sqlite3"
        self.log_path = workdir / "bot.log"
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # --- the process ----------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """A clean environment: the interpreter's paths and the bot's settings, nothing else."""
        env = {name: os.environ[name] for name in ("PATH", "HOME", "VIRTUAL_ENV")
               if name in os.environ}
        # The tree under test first, whatever an editable install elsewhere points at.
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        env["PYTHONUNBUFFERED"] = "1"
        env.update({
            "BOT_TOKEN": TOKEN,
            "TELEGRAM_BASE_URL": self.server.base_url,
            "DATABASE_PATH": str(self.db_path),
            "SANDBOX_SPEED": SANDBOX_SPEED,
            "STATUS_POLL_INTERVAL": "1",
            "LOG_LEVEL": "INFO",
        })
        env.update(self.settings)
        return env

    @property
    def ready_call(self) -> str:
        """The Bot API call that shows the bot is up: setWebhook in webhook mode, else
        getUpdates."""
        return "setWebhook" if self.settings.get("WEBHOOK_URL") else "getUpdates"

    @property
    def running(self) -> bool:
        """Whether the bot process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Starts `python -m bot` and waits until it polls for updates (or sets its webhook)."""
        assert not self.running, "the bot is already running"
        self.starts += 1
        ready = self.ready_call
        polls_before = len(self.world.calls_to(ready))
        with self.log_path.open("ab") as log:
            log.write(f"----- start #{self.starts} -----\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot"], cwd=self.workdir, env=self.environment(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            self.until(lambda: len(self.world.calls_to(ready)) > polls_before,
                       START_TIMEOUT, f"the bot to start ({ready})")
        except AssertionError as exc:
            self.kill()
            raise AssertionError(f"{exc}\nbot log:\n{self.log_tail()}") from None

    def kill(self) -> None:
        """SIGKILL: the process dies at once, nothing is flushed or closed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, as a service manager stops it; the exit code (killed if it overstays)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"the bot did not exit within {timeout:g} s of SIGTERM") from None
        return self.process.returncode

    def restart(self) -> None:
        """Stops the bot cleanly if it runs, then starts a new process on the same database."""
        if self.running:
            assert self.terminate() == 0
        self.start()

    def close(self) -> None:
        """Makes sure no process is left behind."""
        if self.running:
            self.kill()

    # --- the log --------------------------------------------------------------------------

    def log(self) -> str:
        """Everything the bot processes printed so far."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the bot's log."""
        return "\n".join(self.log().splitlines()[-lines:])

    def log_errors(self) -> list[str]:
        """Log lines at ERROR or CRITICAL, and tracebacks."""
        return [line for line in self.log().splitlines()
                if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")]

    # --- waiting --------------------------------------------------------------------------

    def until(self, predicate: Callable[[], T | None], timeout: float, what: str) -> T:
        """Waits for `predicate()` to be truthy; fails fast if the bot died, or at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.world.wait_for(predicate, timeout=0.2)
            except AssertionError:
                pass
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"the bot exited (code {self.process.returncode}) while waiting for {what}; "
                    f"bot texts: {self.texts()!r}")
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout:g} s waiting for {what}; bot texts: "
                    f"{self.texts()!r}")

    def wait(self, substring: str, timeout: float = WAIT, *, since: int | None = None
             ) -> FakeMessage:
        """The bot message (sent or edited) showing `substring` after the user's latest action.

        `since` as in `FakeTelegram.wait_for_text`: None = after the user's latest message or
        tap, 0 = any time, or a `world.mark()`.
        """

        def shown() -> FakeMessage | None:
            try:
                return self.world.wait_for_text(self.user, substring, 0, since=since)
            except AssertionError:
                return None

        return self.until(shown, timeout, repr(substring))

    def reply(self, timeout: float = WAIT) -> FakeMessage:
        """The bot's newest message (sent or edited) after the user's latest action."""
        return self.wait("", timeout)

    def wait_handled(self, update: JSON, timeout: float = WAIT) -> None:
        """Waits until the bot has told the server it is done with `update` (getUpdates offset),
        so a restarted bot will not be given it again."""
        update_id = int(update["update_id"])

        def confirmed() -> bool:
            return any(isinstance(call.get("offset"), int) and call["offset"] > update_id
                       for call in self.world.calls_to("getUpdates"))

        self.until(confirmed, timeout, f"update {update_id} to be confirmed")

    # --- the user -------------------------------------------------------------------------

    def send(self, text: str) -> JSON:
        """The user sends a message (a command when it starts with /)."""
        return self.world.user_sends(self.user, text)

    def button(self, label: str, *, exact: bool = False) -> FakeButton:
        """The newest callback button whose text is (or contains) `label`."""
        for message in reversed(self.world.bot_messages(self.user)):
            for row in message.inline_keyboard:
                for button in row:
                    text = button.get("text", "")
                    if (text == label if exact else label in text) and button.get(
                            "callback_data"):
                        return FakeButton(self.user, message.message_id, text,
                                          button["callback_data"], None)
        raise AssertionError(f"no button {label!r}; bot texts: {self.texts()[-2:]!r}")

    def click(self, label: str, *, exact: bool = False) -> JSON:
        """The user taps the newest button labelled `label`."""
        return self.press(self.button(label, exact=exact))

    def press(self, button: FakeButton, *, force: bool = False) -> JSON:
        """The user's client sends a tap on `button` (`force`: even if no longer shown)."""
        assert button.data is not None
        return self.world.user_presses(self.user, button.message_id, button.data, force=force)

    def answer_to(self, tap: JSON, timeout: float = WAIT) -> JSON:
        """The bot's answerCallbackQuery to a tap, waited for."""
        return self.until(lambda: self.world.answer_to(tap), timeout, "the answer to a tap")

    def texts(self) -> list[str]:
        """The bot's messages in the chat, as the user sees them now."""
        return self.world.bot_texts(self.user)


@pytest.fixture
def server() -> Iterator[FakeTelegramServer]:
    """A fake Bot API server on 127.0.0.1 for this test."""
    with FakeTelegramServer() as fake:
        yield fake


def pytest_configure(config: pytest.Config) -> None:
    """Registers the marker that passes extra settings to the bot process."""
    config.addinivalue_line(
        "markers", "bot_settings(**env): extra environment settings for the e2e bot process")


@pytest.fixture
def bot_process(request: pytest.FixtureRequest, tmp_path: Path,
                server: FakeTelegramServer) -> Iterator[BotDriver]:
    """The bot running as `python -m bot` (demo mode, temp database), and a user to drive it.

    `@pytest.mark.bot_settings(NAME="value")` adds settings (e.g. SANDBOX_LATENCY); a value
    FREE_PORT becomes a free local port.
    """
    marker = request.node.get_closest_marker("bot_settings")
    settings = dict(marker.kwargs) if marker else {}
    if FREE_PORT in settings.values():
        port = str(free_port())
        settings = {name: port if value == FREE_PORT else value
                    for name, value in settings.items()}
    driver = BotDriver(server, tmp_path, **settings)
    try:
        driver.start()
        yield driver
    finally:
        driver.close()
    errors = driver.log_errors()
    assert not errors, "the bot logged errors:\n" + "\n".join(errors)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Adds the tail of the bot's log to the report of a failed e2e test."""
    report = yield
    if report.failed:
        driver = getattr(item, "funcargs", {}).get("bot_process")
        if isinstance(driver, BotDriver):
            report.sections.append((f"bot log (last {LOG_TAIL_LINES} lines)", driver.log_tail()))
    return report
