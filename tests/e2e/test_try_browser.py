"""`smm-bot try` driven in a real headless Chromium, as a newcomer would use it.

The bot runs as `python -m bot try --port 0` (its own temporary database, the sandbox at
`SANDBOX_SPEED` 120 and the tracker every second, so a demo order completes in a second or two);
the page is driven through Debian's `chromium` and `chromedriver` (`.ci/run` installs them). The
tests skip only when those two are not installed.

`TRY_SCREENSHOT=docs/try-web-chat.png pytest tests/e2e/test_try_browser.py` also saves the page
at the order summary, the picture in the README.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=900,1000")
START_TIMEOUT = 20.0  # seconds for `smm-bot try` to serve the page
WAIT = 10.0  # seconds for anything the user waits for on the page
URL_RE = re.compile(r"the web chat is at (http://127\.0\.0\.1:\d+)")
DATABASE_RE = re.compile(r"the database is (\S+) \(removed at exit\)")
PLACED_RE = re.compile(r"Order (\d+) placed")

needs_chromium = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="Chromium is not installed here (apt-get install -y chromium chromium-driver; "
           ".ci/run installs it)")


@dataclass
class TryProcess:
    """`smm-bot try` running as a subprocess: its URL, log and database."""

    process: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""
    database: Path | None = None

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def try_process(tmp_path: Path) -> Iterator[TryProcess]:
    """`python -m bot try --port 0` in a clean environment; stopped with SIGTERM afterwards.

    At teardown it must exit with 0, leave no database behind and have logged no error.
    """
    env = {name: os.environ[name] for name in ("PATH", "HOME", "VIRTUAL_ENV")
           if name in os.environ}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update({"PYTHONUNBUFFERED": "1", "SANDBOX_SPEED": "120", "STATUS_POLL_INTERVAL": "1",
                # A real bot's settings in the environment must not matter to `try`.
                "PANEL_URL": "https://panel.invalid/api/v2", "BOT_TOKEN": "not:used"})
    log_path = tmp_path / "try.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "bot", "try", "--port", "0"],
                                   cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT)
    running = TryProcess(process, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (match := URL_RE.search(running.log())):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"`smm-bot try` did not start; its log:\n{running.log()}")
            time.sleep(0.1)
        running.url = match.group(1)
        database = DATABASE_RE.search(running.log())
        assert database, running.log()
        running.database = Path(database.group(1))
        assert running.database.exists()
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError("`smm-bot try` did not stop within 15 s of SIGTERM") from None
    assert process.returncode == 0, running.log()
    assert running.database is not None and not running.database.parent.exists()
    errors = [line for line in running.log().splitlines()
              if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")]
    assert not errors, running.log()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium from the system's packages, with a fresh profile."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="smm-try-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """The web chat in the browser, used as a person would: read, type, tap."""

    def __init__(self, driver: WebDriver, url: str) -> None:
        self.driver = driver
        driver.get(url)
        self.until(lambda: self.driver.find_elements(By.CSS_SELECTOR, "#personas button"),
                   "the persona selector")

    def until(self, predicate: Callable[[], T], what: str, timeout: float = WAIT) -> T:
        """Waits for `predicate()` to be truthy; fails with what was on the page."""
        wait = WebDriverWait(self.driver, timeout, poll_frequency=0.05,
                             ignored_exceptions=(StaleElementReferenceException,))
        try:
            return wait.until(lambda _: predicate())
        except TimeoutException:
            raise AssertionError(f"timed out waiting for {what}; the chat shows:\n"
                                 + "\n---\n".join(self.texts())) from None

    def be(self, name: str) -> None:
        """Picks the persona called `name` in the selector."""
        tabs = self.driver.find_elements(By.CSS_SELECTOR, "#personas button")
        tab = next((t for t in tabs if t.text.startswith(name)), None)
        assert tab is not None, f"no persona {name!r}"
        tab.click()
        self.until(lambda: tab.get_attribute("aria-pressed") == "true", name)

    def bot_messages(self) -> list[WebElement]:
        """The bot's messages now on the page, oldest first."""
        return self.driver.find_elements(By.CSS_SELECTOR, "#chat .msg.bot:not(.deleting)")

    def user_messages(self) -> list[WebElement]:
        """The user's own messages now on the page, oldest first."""
        return self.driver.find_elements(By.CSS_SELECTOR, "#chat .msg.user:not(.deleting)")

    def texts(self) -> list[str]:
        """The text of every message on the page."""
        try:
            return [m.find_element(By.CSS_SELECTOR, ".body").text
                    for m in self.driver.find_elements(By.CSS_SELECTOR, "#chat .msg")]
        except StaleElementReferenceException:
            return self.texts()

    def wait_bot(self, *substrings: str, timeout: float = WAIT) -> WebElement:
        """The newest bot message showing all `substrings` (sent or edited), once it is there."""

        def shown() -> WebElement | None:
            for message in reversed(self.bot_messages()):
                text = message.find_element(By.CSS_SELECTOR, ".body").text
                if all(s in text for s in substrings):
                    return message
            return None

        return self.until(shown, " and ".join(map(repr, substrings)), timeout)

    def type(self, text: str) -> None:
        """Types `text` in the message box and presses Enter."""
        box = self.driver.find_element(By.ID, "text")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def tap(self, label: str) -> None:
        """Taps the newest inline button whose label contains `label`."""

        def button() -> WebElement | None:
            for message in reversed(self.bot_messages()):
                for candidate in message.find_elements(By.CSS_SELECTOR, ".keyboard button"):
                    if label in candidate.text:
                        return candidate
            return None

        self.until(button, f"a button {label!r}").click()

    def wait_toast(self, text: str) -> None:
        """Waits for the toast (the answer to a tap) to show `text`."""
        toast = self.driver.find_element(By.ID, "toast")
        self.until(lambda: toast.is_displayed() and toast.text == text, f"a toast {text!r}")


@needs_chromium
def test_a_demo_order_from_start_to_the_completion_notification(
        try_process: TryProcess, browser: WebDriver) -> None:
    """/start, the catalogue, the order form and Confirm on the page; the push arrives there."""
    page = Page(browser, try_process.url)
    page.be("Bob")
    page.type("/start")
    welcome = page.wait_bot("Hi Bob!")
    # The bot's HTML arrives as entities and is rendered as formatting, not as tags.
    bold = [b.text for b in welcome.find_elements(By.CSS_SELECTOR, ".body b")]
    assert "Demo mode" in bold
    assert "<b>" not in welcome.text
    menu_id = welcome.get_attribute("data-id")

    page.tap("New order")
    categories = page.wait_bot("Pick a category")
    assert categories.get_attribute("data-id") == menu_id  # edited in place, not a new message
    assert "edited" in categories.find_element(By.CSS_SELECTOR, ".meta").text
    assert len(page.bot_messages()) == 1
    page.tap("Instagram (")
    page.wait_bot("#2 Instagram Likes")
    page.tap("#2 Instagram Likes")
    page.wait_bot("Order between 10 and 50,000")
    page.tap("Order this")
    page.wait_bot("Send the link to promote.")
    page.type("instagram.com/p/demo")
    page.wait_bot("How many?")
    page.type("500")
    page.wait_bot("Drip-feed")
    page.tap("Skip")
    summary = page.wait_bot("Check the order, then tap Confirm.")
    assert "Quantity: 500" in summary.text
    assert "Estimated cost: 0.125 USD" in summary.text
    if os.environ.get("TRY_SCREENSHOT"):
        ActionChains(browser).move_to_element(browser.find_element(By.ID, "about")).perform()
        time.sleep(0.5)  # let the scroll and the buttons' hover settle
        assert browser.save_screenshot(os.environ["TRY_SCREENSHOT"])

    page.tap("Confirm")
    page.wait_toast("Sending the order…")  # the answer to the tap
    placed = page.wait_bot("placed.")
    match = PLACED_RE.search(placed.text)
    assert match, placed.text
    order = match.group(1)
    # Pushed by the tracker while the page is open: no reload, no typing.
    done = page.wait_bot(f"Order {order} · Instagram Likes: ", "→ Completed", timeout=20)
    assert "charged 0.125 USD" in done.text

    page.tap("Open order")
    page.wait_bot(f"Order {order}")
    page.tap("Refresh")
    page.wait_toast("Status: Completed")


@needs_chromium
def test_each_persona_sees_what_they_may_do_and_the_page_stays_safe(
        try_process: TryProcess, browser: WebDriver) -> None:
    """The menu, admin-only commands, a deleted message, and HTML typed by a user."""
    page = Page(browser, try_process.url)
    page.be("Sam")
    # The command menu is the bot's setMyCommands; picking an entry sends it.
    browser.find_element(By.ID, "menu-button").click()
    items = page.until(lambda: [i for i in browser.find_elements(By.CSS_SELECTOR, "#menu button")
                                if i.is_displayed()], "the command menu")
    assert [i.get_attribute("data-command") for i in items][:2] == ["start", "order"]
    next(i for i in items if i.get_attribute("data-command") == "help").click()
    page.wait_bot("What I can do")

    page.type("/stats")
    page.wait_bot("This command is for the bot's admins.")

    # The message with a key is deleted at once: it vanishes from the page.
    page.type("/connect")
    page.wait_bot("Send me your panel API key")
    page.type("not-a-real-key")
    page.wait_bot("That key was refused by the panel")
    page.until(lambda: not any("not-a-real-key" in m.text for m in page.user_messages()),
               "the key message to vanish")
    page.type("/cancel")
    page.wait_bot("no key was connected")

    # Whatever a user types is shown as text, never run as HTML.
    attack = '<img src=x onerror="document.title=\'owned\'">'
    page.type(f"/services {attack}")
    page.wait_bot(attack)
    assert browser.find_elements(By.CSS_SELECTOR, "#chat img") == []
    assert browser.title != "owned"

    page.be("Alice")
    page.type("/stats")
    stats = page.wait_bot("Bot statistics")
    assert "admins 1 · allowed 1" in stats.text
    page.be("Sam")
    page.wait_bot("This command is for the bot's admins.")  # each persona has their own chat
