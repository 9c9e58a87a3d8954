"""Text in Telegram's HTML messages: escaping, clipping on the text, and fitting a whole message.

Whatever a user or the panel wrote enters a message through `esc` or `esc_short` (clipped on the
text first, then escaped: a cut can never fall inside an entity such as `&amp;`). A whole message
goes out through `fit`, which keeps it within Telegram's 4,096 characters (counted on the text,
as Telegram counts) without cutting inside a tag or an entity, closing every tag it leaves open.
"""

from __future__ import annotations

import html
import re

from bot import i18n

MAX_TEXT = 4096  # characters of a message's text, after its HTML is parsed
ELLIPSIS = "…"

# How much of a value from the panel or a user a message shows.
NAME_MAX = 200  # a service's name or category
WORD_MAX = 60  # a status, a currency, a word that was not understood
NOTE_MAX = 300  # an error or a note from the panel

# A tag, an entity, a run of plain text, or a stray character.
_TOKENS = re.compile(r"<[^<>]*>|&#?[A-Za-z0-9]{1,10};|[^<&]+|[<&]")
_TAG_NAME = re.compile(r"</?\s*([A-Za-z][A-Za-z0-9-]*)")


def esc(value: object) -> str:
    """Escapes user- or panel-supplied text for an HTML message."""
    return html.escape(str(value), quote=False)


def shorten(text: str, limit: int) -> str:
    """Plain text of at most `limit` characters, ending in … when it was longer."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + ELLIPSIS


def esc_short(value: object, limit: int) -> str:
    """Clipped on the text, then escaped: the way a value of unknown length enters a message."""
    return esc(shorten(str(value), limit))


def note_html(text: str, limit: int) -> str:
    """A note kept in the database, as HTML in the reader's language: a `bot.i18n.stored` text
    rendered, or words as someone wrote them (the panel, an admin) clipped and escaped."""
    message = i18n.from_stored(text)
    return esc_short(text, limit) if message is None else i18n.render(message)


def note_text(text: str) -> str:
    """A note kept in the database as plain text in the reader's language (see `note_html`)."""
    message = i18n.from_stored(text)
    return text if message is None else html.unescape(i18n.render(message))


def units(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _is_tag(token: str) -> bool:
    """Whether a token is a tag (not a stray "<")."""
    return len(token) > 1 and token[0] == "<"


def _text_units(token: str) -> int:
    """How much of the message's text a non-tag token is (an entity is what it stands for)."""
    return units(html.unescape(token) if token[0] == "&" else token)


def fit(message: str, limit: int = MAX_TEXT) -> str:
    """An HTML message cut to at most `limit` characters of text, on a line break where one is
    in its second half, else between two characters; … marks the cut and the tags still open
    there are closed. A message that fits is returned as it is."""
    if units(message) <= limit:  # the HTML is never shorter than its text
        return message
    tokens = [(m.start(), m.group()) for m in _TOKENS.finditer(message)]
    if sum(_text_units(t) for _, t in tokens if not _is_tag(t)) <= limit:
        return message
    budget = limit - 2  # room for "\n…"
    used = 0
    opened: list[str] = []
    cut = 0  # where the text stops fitting...
    cut_open: tuple[str, ...] = ()  # ...and the tags open there
    line: tuple[int, tuple[str, ...]] | None = None  # the last line break that fits
    for start, token in tokens:
        if _is_tag(token):
            _track(opened, token)
            cut, cut_open = start + len(token), tuple(opened)
            continue
        size = _text_units(token)
        if used + size > budget:
            if token[0] not in "<&":  # a run of text: keep what fits of it
                kept = 0
                for char in token:
                    if used + units(char) > budget:
                        break
                    used += units(char)
                    kept += 1
                    if char == "\n" and used > budget // 2:
                        line = (start + kept - 1, tuple(opened))
                cut, cut_open = start + kept, tuple(opened)
            break
        used += size
        if "\n" in token and used - size + token.rindex("\n") >= budget // 2:
            line = (start + token.rindex("\n"), tuple(opened))
        cut, cut_open = start + len(token), tuple(opened)
    if line is not None:
        end, still_open, mark = line[0], line[1], "\n" + ELLIPSIS
    else:
        end, still_open, mark = cut, cut_open, ELLIPSIS
    closing = "".join(f"</{name}>" for name in reversed(still_open))
    return message[:end].rstrip() + mark + closing


def _track(opened: list[str], tag: str) -> None:
    """Keeps the stack of open tags up to date with one more tag."""
    match = _TAG_NAME.match(tag)
    if match is None:
        return
    name = match.group(1).lower()
    if tag.startswith("</"):
        if name in opened:
            del opened[len(opened) - 1 - opened[::-1].index(name):]
    elif not tag.endswith("/>"):
        opened.append(name)
