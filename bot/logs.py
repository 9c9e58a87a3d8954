"""Logging set-up, with a filter that blanks every known secret in case one slips into a record."""

from __future__ import annotations

import logging
from collections.abc import Iterable


class RedactSecrets(logging.Filter):
    """Replaces known secrets (bot token, panel keys, SECRET_KEY) in log records with ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = {s for s in secrets if len(s) >= 4}

    def add(self, secret: str) -> None:
        """Also blanks this secret from now on (e.g. a key a user connects)."""
        if len(secret) >= 4:
            self._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrites the record's message and traceback text without the secrets."""
        if not self._secrets:
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
        # Longest first, so a secret that contains another is blanked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
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
