"""Who may do what: roles, and which panel account (and key) serves a user.

Roles: admins come from ADMIN_IDS; allowed users from ALLOWED_USER_IDS or an admin's /allow
(kept in the database); everyone else is "other". The operator's PANEL_KEY serves admins and
allowed users; anyone may /connect their own key when SECRET_KEY is set, and it then serves them
(it comes first). In demo mode the sandbox serves everybody: nothing real is bought.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import aiosqlite

from bot.config import Settings
from bot.crypto import KeyBox, SecretKeyMismatch, WrongSecretKey
from bot.deps import Deps
from bot.panel.sandbox import DEMO_KEY
from storage import meta, outbox, users
from storage.db import close_database, open_database, transaction
from storage.users import OPERATOR_ACCOUNT, Role

log = logging.getLogger(__name__)

KEY_LOST = (
    "I could not read the panel API key you connected, so I have forgotten it. "
    "Please /connect it again."
)


@dataclass(frozen=True, slots=True)
class Account:
    """A panel account as used for one user: its label in the database and its key."""

    id: str  # "operator" (the operator's PANEL_KEY, or the sandbox in demo mode) or "user:<id>"
    key: str = field(repr=False)
    own: bool = False  # the user's own key: every order on it is theirs
    demo: bool = False  # the built-in sandbox panel: nothing real is bought

    def __str__(self) -> str:
        return self.id


async def role_of(deps: Deps, user_id: int) -> Role:
    """The user's role: admin / allowed from the settings or the database, else other."""
    settings = deps.settings
    if user_id in settings.admin_ids:
        return "admin"
    user = await users.get_user(deps.db, user_id)
    if user is not None and user.role in ("admin", "allowed"):
        return user.role
    if user_id in settings.allowed_user_ids:
        return "allowed"
    return "other"


async def account_for(deps: Deps, user_id: int) -> Account | None:
    """The panel account that serves this user, or None when they have no access.

    The user's own connected key comes first; then the sandbox in demo mode (open to everyone:
    nothing is bought); then the operator's PANEL_KEY for admins and allowed users.
    """
    own = await own_key(deps, user_id)
    if own is not None:
        return Account(users.user_account(user_id), own, own=True, demo=deps.sandbox is not None)
    if deps.sandbox is not None:
        return Account(OPERATOR_ACCOUNT, DEMO_KEY, demo=True)
    panel_key = deps.settings.panel_key
    if panel_key is not None and await role_of(deps, user_id) in ("admin", "allowed"):
        return Account(OPERATOR_ACCOUNT, panel_key.get_secret_value())
    return None


async def own_key(deps: Deps, user_id: int) -> str | None:
    """The user's own connected panel key, decrypted; None without one (or without SECRET_KEY).

    A key that cannot be decrypted (the start-up check passed, so only that one is damaged) is
    forgotten, and the user is told once, through the outbox, to /connect again: one bad row
    must not break every command of that user.
    """
    if deps.keybox is None:
        return None
    user = await users.get_user(deps.db, user_id)
    if user is None or user.panel_key is None:
        return None
    try:
        key = deps.keybox.decrypt(user.panel_key)
    except WrongSecretKey:
        log.warning("The panel key of user %d cannot be decrypted; it is forgotten", user_id)
        async with transaction(deps.db):
            await users.set_panel_key(deps.db, user_id, None)
            await outbox.enqueue_notification(deps.db, chat_id=user_id, text=KEY_LOST)
        return None
    return key


async def check_secret_key(db: aiosqlite.Connection, keybox: KeyBox | None, *,
                           database: object = "the database") -> None:
    """Makes sure the stored panel keys can be decrypted; raises SecretKeyMismatch if not.

    The first start with a SECRET_KEY stores a canary encrypted with it; later starts decrypt
    the canary. A canary made with another SECRET_KEY is fatal only while keys are stored (they
    would be lost); with none it is simply replaced.
    """
    stored = await users.stored_panel_keys(db)
    if keybox is None:
        if stored:
            log.warning("SECRET_KEY is not set: the panel keys %d user(s) connected are not "
                        "used until it is set again", len(stored))
        return
    canary = await meta.get_meta(db, meta.SECRET_KEY_CANARY)
    try:
        if canary is not None:
            keybox.check_canary(canary)
        elif stored:  # keys stored before there was a canary: try one of them
            keybox.decrypt(next(iter(stored.values())))
        else:
            await meta.set_meta(db, meta.SECRET_KEY_CANARY, keybox.canary())
    except WrongSecretKey:
        if stored:
            raise SecretKeyMismatch(
                "SECRET_KEY does not match the one the stored panel keys were encrypted with: "
                f"the keys of {len(stored)} user(s) cannot be decrypted. Restore the old "
                "SECRET_KEY, or have users /connect again after clearing the stored keys "
                f'(sqlite3 {database} "UPDATE users SET panel_key = NULL").'
            ) from None
        log.warning("SECRET_KEY has changed; no panel keys were stored, so nothing is lost")
        await meta.set_meta(db, meta.SECRET_KEY_CANARY, keybox.canary())
        return
    if canary is None and stored:
        await meta.set_meta(db, meta.SECRET_KEY_CANARY, keybox.canary())


async def verify_secret_key(settings: Settings) -> None:
    """The start-up check on its own connection: before anything talks to Telegram."""
    secret = settings.secret_key
    keybox = None if secret is None else KeyBox(secret.get_secret_value())
    db = await open_database(settings.database_path, integrity=False)
    try:
        await check_secret_key(db, keybox, database=settings.database_path)
    finally:
        await close_database(db)


def owns(*, account: Account, user_id: int, role: Role, order_account: str,
         order_owner: int | None) -> bool:
    """Whether a user may see and act on an order the bot knows.

    An order belongs to the panel account that placed it. With the user's own key every order
    on it is theirs; on the shared operator account only the orders the bot knows to be theirs
    (admins: all of them).
    """
    if order_account != account.id:
        return False
    return account.own or role == "admin" or order_owner == user_id
