"""An HTTP client that keeps no cookies, for the panel client and the Bot API's requests
(`bot.app.BotAPIRequest`).

httpx keeps every cookie an answer sets and sends it with every later request of that client.
The panel client is one client for every user's key, so a cookie one user's answer set (a
panel's PHP session, a CDN's mark) would go out with the next user's requests. Neither API v2
(the key authenticates every request) nor the Bot API (the token is in the URL) needs one. And
keeping them is dear: for every answer, with or without a cookie, httpx builds a urllib request
and an email message of the headers, ~90 µs, about 40 % of httpx's own work per request.
"""

from __future__ import annotations

import httpx
from httpx._types import CookieTypes


class _NoCookies(httpx.Cookies):
    """An empty cookie jar that keeps nothing an answer sets."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Keeps none of the answer's cookies."""


class StatelessClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` that keeps no cookies: every request stands on its own."""

    @property
    def cookies(self) -> httpx.Cookies:
        """Always empty (a new jar each time, so nothing set on one is kept either)."""
        return _NoCookies()

    @cookies.setter
    def cookies(self, cookies: CookieTypes) -> None:
        """Cookies cannot be set on this client."""
        raise TypeError("StatelessClient keeps no cookies")

