"""Errors the panel client raises: each carries a short text that is safe to show a user."""

from __future__ import annotations

import enum
import re


class PanelErrorKind(enum.Enum):
    """What a panel's `{"error": ...}` text means, where we recognise it."""

    INVALID_KEY = "invalid_key"
    NOT_ENOUGH_FUNDS = "not_enough_funds"
    INCORRECT_SERVICE = "incorrect_service"
    INCORRECT_ORDER = "incorrect_order"
    INCORRECT_REFILL = "incorrect_refill"
    QUANTITY_TOO_LOW = "quantity_too_low"
    QUANTITY_TOO_HIGH = "quantity_too_high"
    DUPLICATE_LINK = "duplicate_link"
    BAD_LINK = "bad_link"
    INCORRECT_REQUEST = "incorrect_request"
    OTHER = "other"


# Order matters: the first pattern that matches wins. Panels send English sentences or
# untranslated translation keys such as `neworder.error.not_enough_funds`.
_PATTERNS: list[tuple[PanelErrorKind, re.Pattern[str]]] = [
    (
        PanelErrorKind.INVALID_KEY,
        # `key(?![a-z])` so that "Incorrect keywords" is not read as a bad API key.
        re.compile(
            r"(invalid|incorrect|wrong|bad)[ _.]*(api[ _.]*)?key(?![a-z])|api[ _.]*key", re.I
        ),
    ),
    (
        PanelErrorKind.NOT_ENOUGH_FUNDS,
        re.compile(r"not[ _.]*enough[ _.]*(funds|balance|money)|insufficient", re.I),
    ),
    (
        PanelErrorKind.INCORRECT_SERVICE,
        re.compile(
            r"(incorrect|invalid|unknown)[ _.]*service|service[ _.]*(not[ _.]*found|disabled)", re.I
        ),
    ),
    (
        PanelErrorKind.INCORRECT_ORDER,
        re.compile(r"(incorrect|invalid|unknown)[ _.]*order|order[ _.]*not[ _.]*found", re.I),
    ),
    (
        PanelErrorKind.INCORRECT_REFILL,
        re.compile(r"(incorrect|invalid|unknown)[ _.]*refill|refill[ _.]*not[ _.]*found", re.I),
    ),
    (
        PanelErrorKind.QUANTITY_TOO_LOW,
        re.compile(
            r"quantity[ _.]*less|min[ _.]*quantity|less[ _.]*than[ _.]*min|quantity[ _.]*min", re.I
        ),
    ),
    (
        PanelErrorKind.QUANTITY_TOO_HIGH,
        re.compile(
            r"quantity[ _.]*more|max[ _.]*quantity|more[ _.]*than[ _.]*max|quantity[ _.]*max", re.I
        ),
    ),
    (
        PanelErrorKind.DUPLICATE_LINK,
        re.compile(
            r"active[ _.]*order[ _.]*with[ _.]*this[ _.]*link"
            r"|link[ _.]*duplicate|duplicate[ _.]*link",
            re.I,
        ),
    ),
    (PanelErrorKind.BAD_LINK, re.compile(r"(bad|invalid|incorrect|wrong)[ _.]*(link|url)", re.I)),
    (PanelErrorKind.INCORRECT_REQUEST, re.compile(r"incorrect[ _.]*request", re.I)),
]


def classify_error(text: str) -> PanelErrorKind:
    """Maps a panel's error text to what it means, OTHER when unknown."""
    for kind, pattern in _PATTERNS:
        if pattern.search(text):
            return kind
    return PanelErrorKind.OTHER


class PanelClientError(Exception):
    """Base of everything the panel client raises. `str()` is safe to show a user."""

    user_message: str = "The panel could not be reached."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.user_message)
        self.user_message = message or self.user_message


class PanelError(PanelClientError):
    """The panel answered `{"error": "..."}`: it understood us and refused."""

    def __init__(self, text: str) -> None:
        self.text = text[:300]
        self.kind = classify_error(self.text)
        super().__init__(f"The panel says: {self.text}")


class PanelTransportError(PanelClientError):
    """Connection refused, DNS, TLS: the request may not have reached the panel."""

    user_message = "The panel could not be reached. Please try again in a minute."


class PanelNotReached(PanelTransportError):
    """No connection could be made (refused, DNS, TLS): the request never left, so a write was
    certainly not carried out."""


class PanelTimeout(PanelTransportError):
    """The panel did not answer in time."""

    user_message = "The panel did not answer in time."


class PanelHTTPError(PanelClientError):
    """The panel answered with an HTTP error status (4xx/5xx)."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        super().__init__(f"The panel answered with HTTP {status_code}. Please try again later.")


class PanelBadResponse(PanelClientError):
    """The panel answered something that is not the JSON we expect (an HTML page, garbage)."""

    user_message = "The panel sent an answer the bot cannot read. Please try again later."


class OutcomeUnknown(PanelClientError):
    """A write (add, refill, cancel) may or may not have been done: it is never retried."""

    user_message = (
        "The panel did not confirm the request, so its outcome is unknown. "
        "It was not retried."
    )

    def __init__(self, cause: PanelClientError | None = None) -> None:
        self.cause = cause
        super().__init__()
