"""Errors the panel client raises: each carries a short text that is safe to show a user,
translated when it is read (`user_message`); the panel's own words are never translated."""

from __future__ import annotations

import enum
import re
from typing import ClassVar

from bot import i18n
from bot.i18n import L_, N_, _
from bot.text import esc


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


#: What each refusal we recognise means, in plain words (a user who reads another language than
#: the panel's English, or a panel that sends a bare translation key, still understands it).
PLAIN_MEANING: dict[PanelErrorKind, str] = {
    PanelErrorKind.INVALID_KEY: N_("The panel does not accept this API key."),
    PanelErrorKind.NOT_ENOUGH_FUNDS: N_("The panel account does not have enough funds for this."),
    PanelErrorKind.INCORRECT_SERVICE: N_("The panel does not know this service, or no longer "
                                         "offers it."),
    PanelErrorKind.INCORRECT_ORDER: N_("The panel does not know this order id."),
    PanelErrorKind.INCORRECT_REFILL: N_("The panel does not know this refill."),
    PanelErrorKind.QUANTITY_TOO_LOW: N_("The quantity is below the service's minimum."),
    PanelErrorKind.QUANTITY_TOO_HIGH: N_("The quantity is above the service's maximum."),
    PanelErrorKind.DUPLICATE_LINK: N_("This link already has an order running on the panel: "
                                      "wait until it ends."),
    PanelErrorKind.BAD_LINK: N_("The panel does not accept this link."),
}

# `neworder.error.not_enough_funds`: a panel's untranslated key, not a sentence.
_BARE_KEY = re.compile(r"[a-z0-9]+(?:[._][a-z0-9]+)+", re.I)


class PanelClientError(Exception):
    """Base of everything the panel client raises. `user_message` and `str()` are safe to show
    a user, in the language of the moment they are read (`MESSAGE` is the catalog text)."""

    MESSAGE: ClassVar[str] = N_("The panel could not be reached.")

    def __init__(self, message: str | None = None) -> None:
        self._message = message  # a text given as it is (already in the reader's language)
        super().__init__(message or self.MESSAGE)  # the English text, for logs and reprs

    @property
    def user_message(self) -> str:
        """The text shown to a user, in the current language."""
        return self._message if self._message is not None else _(self.MESSAGE)

    @property
    def msg(self) -> i18n.Value:
        """The text to show later, in its reader's language (a note kept with an order, a
        message for someone else): a `bot.i18n.Msg` (HTML)."""
        return esc(self._message) if self._message is not None else L_(self.MESSAGE)

    def __str__(self) -> str:
        return self.user_message


class PanelError(PanelClientError):
    """The panel answered `{"error": "..."}`: it understood us and refused."""

    def __init__(self, text: str) -> None:
        self.text = text[:300]
        self.kind = classify_error(self.text)
        super().__init__()
        self.args = (f"The panel says: {self.text}",)

    @property
    def user_message(self) -> str:
        """The panel's own words (never translated) in a translated frame; where we know what
        they mean and the reader may not follow them, what they mean first, in plain words."""
        said = _("The panel says: {panel_text}").format(panel_text=self.text)
        meaning = PLAIN_MEANING.get(self.kind)
        if meaning is None or (i18n.language() == i18n.SOURCE
                               and not _BARE_KEY.fullmatch(self.text)):
            return said  # English panel words are plain words for an English reader
        # i18n: {meaning} is a sentence saying what the panel's refusal means; {panel_says} is
        # "The panel says: …" with the panel's own words
        return _("{meaning} {panel_says}").format(meaning=_(meaning), panel_says=said)

    @property
    def msg(self) -> i18n.Value:
        """The panel's own words in a frame rendered in the reader's language (HTML)."""
        return L_("The panel says: {panel_text}", panel_text=esc(self.text))


class PanelTransportError(PanelClientError):
    """Connection refused, DNS, TLS: the request may not have reached the panel."""

    MESSAGE = N_("The panel could not be reached. Please try again in a minute.")


class PanelNotReached(PanelTransportError):
    """No connection could be made (refused, DNS, TLS): the request never left, so a write was
    certainly not carried out."""


class PanelTimeout(PanelTransportError):
    """The panel did not answer in time."""

    MESSAGE = N_("The panel did not answer in time.")


class PanelHTTPError(PanelClientError):
    """The panel answered with an HTTP error status (4xx/5xx)."""

    MESSAGE = N_("The panel answered with HTTP {status}. Please try again later.")

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        super().__init__()
        self.args = (self.MESSAGE.format(status=status_code),)

    @property
    def user_message(self) -> str:
        """The text shown to a user, in the current language."""
        return _(self.MESSAGE).format(status=self.status_code)

    @property
    def msg(self) -> i18n.Value:
        """The text to show later, in its reader's language."""
        return L_(self.MESSAGE, status=self.status_code)


class PanelBadResponse(PanelClientError):
    """The panel answered something that is not the JSON we expect (an HTML page, garbage)."""

    MESSAGE = N_("The panel sent an answer the bot cannot read. Please try again later.")


class OutcomeUnknown(PanelClientError):
    """A write (add, refill, cancel) may or may not have been done: it is never retried."""

    MESSAGE = N_("The panel did not confirm the request, so its outcome is unknown. "
                 "It was not retried.")

    def __init__(self, cause: PanelClientError | None = None) -> None:
        self.cause = cause
        super().__init__()
