"""Logging set-up, with a filter that blanks every known secret in case one slips into a record."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable


class RedactSecrets(logging.Filter):
    """Replaces known secrets in log records with ***.

    Two kinds. The bot's own (bot token, PANEL_KEY, SECRET_KEY) are `add`ed at start-up and kept.
    Users' panel keys are `learn`ed only once the panel accepted them (when stored or decrypted),
    so no user can make the logs hide text of their choosing (such as their own user id); they
    must be at least LEARNED_MIN characters (API keys are long), at most LEARNED_MAX of them are
    kept (the least recently used goes first), and `forget` drops one on /disconnect.
    """

    LEARNED_MIN = 16
    LEARNED_MAX = 1000

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._own: set[str] = {s for s in secrets if len(s) >= 4}
        self._learned: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._ordered: tuple[str, ...] = ()
        self._rebuild()

    def add(self, secret: str) -> None:
        """Blanks one of the bot's own secrets from now on, for the life of the process."""
        if len(secret) >= 4 and secret not in self._own:
            with self._lock:
                self._own.add(secret)
                self._rebuild()

    def learn(self, key: str) -> None:
        """Blanks a user's panel key the panel accepted, from now on (while it is among the
        LEARNED_MAX most recently used)."""
        if len(key) < self.LEARNED_MIN:
            return
        with self._lock:
            if key in self._learned:
                self._learned.move_to_end(key)
                return
            self._learned[key] = None
            while len(self._learned) > self.LEARNED_MAX:
                self._learned.popitem(last=False)
            self._rebuild()

    def forget(self, key: str) -> None:
        """No longer blanks a user's key (they disconnected it)."""
        with self._lock:
            if key in self._learned:
                del self._learned[key]
                self._rebuild()

    def learned_count(self) -> int:
        """How many users' keys are blanked now."""
        return len(self._learned)

    def _rebuild(self) -> None:
        """Every secret, longest first, so a secret that contains another is blanked whole
        (called with the lock held, or from __init__)."""
        self._ordered = tuple(sorted(self._own | self._learned.keys(), key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrites the record's message and traceback text without the secrets."""
        if not self._ordered:
            return True
        message = record.getMessage()
        exc_text = None
        if record.exc_info:
            exc_text = logging.Formatter().formatException(record.exc_info)
        cleaned = self.clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if exc_text is not None:
            cleaned_exc = self.clean(exc_text)
            if cleaned_exc != exc_text:
                record.exc_info, record.exc_text = None, None
                record.msg = f"{record.msg}\n{cleaned_exc}"
                record.args = None
        return True

    def clean(self, text: str) -> str:
        """The text with every secret replaced."""
        for secret in self._ordered:
            text = text.replace(secret, "***")
        return text


REDACTOR = RedactSecrets()


# Loggers that print whole updates or requests at DEBUG: PTB logs every incoming update (a key a
# user sends with /connect included) before any handler can delete it, httpx logs URLs.
QUIET_LOGGERS = ("httpx", "httpcore", "apscheduler", "aiosqlite")
NEVER_DEBUG_LOGGERS = ("telegram",)


def setup_logging(level: str, secrets: Iterable[str] = ()) -> None:
    """Configures the root logger; loggers that would print secrets are kept above DEBUG."""
    for secret in secrets:
        REDACTOR.add(secret)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(REDACTOR)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for chatty in NEVER_DEBUG_LOGGERS:
        logging.getLogger(chatty).setLevel(max(logging.INFO, logging.getLevelNamesMapping()[level]))
