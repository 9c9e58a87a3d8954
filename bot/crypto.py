"""Encryption of users' panel keys at rest (Fernet: AES-128-CBC + HMAC-SHA256, authenticated)."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bot.config import ConfigError
from bot.logs import REDACTOR

# Encrypted once with the configured SECRET_KEY and kept in the database, so a start-up with a
# different SECRET_KEY is noticed at once instead of on a user's first order.
CANARY = b"smm-panel-bot key check"
_WRONG = "stored panel keys cannot be decrypted with this SECRET_KEY"


class WrongSecretKey(Exception):
    """Stored keys cannot be decrypted with this SECRET_KEY."""


class SecretKeyMismatch(ConfigError):
    """At start-up: the panel keys in the database were encrypted with another SECRET_KEY."""


class KeyBox:
    """Encrypts and decrypts panel keys with a key derived from SECRET_KEY."""

    __slots__ = ("_fernet",)

    def __init__(self, secret: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"smm-panel-bot", info=b"panel-keys",
        ).derive(secret.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def __repr__(self) -> str:
        return "KeyBox(<hidden>)"

    def encrypt(self, plain: str) -> bytes:
        """The encrypted form of a panel key (which from now on is blanked in every log line:
        only keys the panel accepted are stored)."""
        REDACTOR.learn(plain)
        return self._fernet.encrypt(plain.encode())

    def decrypt(self, token: bytes) -> str:
        """The panel key back (blanked in logs from now on, whoever asked for it); raises
        WrongSecretKey when it was encrypted with another key."""
        plain = self._open(token)
        REDACTOR.learn(plain)
        return plain

    def canary(self) -> bytes:
        """A token to store, proving later that SECRET_KEY has not changed."""
        return self._fernet.encrypt(CANARY)

    def check_canary(self, token: bytes) -> None:
        """Raises WrongSecretKey when `token` was made with another SECRET_KEY."""
        if self._open(token) != CANARY.decode():
            raise WrongSecretKey(_WRONG)

    def _open(self, token: bytes) -> str:
        """Decrypts a token; WrongSecretKey when it was made with another key."""
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise WrongSecretKey(_WRONG) from None
