"""Who may do what: roles, and which panel account (its URL and key) serves a user.

Roles: admins come from ADMIN_IDS; allowed users from ALLOWED_USER_IDS or an admin's /allow
(kept in the database); everyone else is "other". The operator's PANEL_KEY serves admins and
allowed users; anyone may /connect their own key when SECRET_KEY is set, and it then serves them
(it comes first). In demo mode the sandbox serves everybody: nothing real is bought.

Shop mode (MODE=shop): everyone who starts the bot is a customer, served by the operator's
account (the sandbox in demo mode) and paying from their wallet in the bot (`Account.customer`);
an admin's /deny bans a customer. Admins order as in team mode. Customers never use keys of
their own.

A panel is its API URL (`Deps.panel_url`); demo mode is just another panel (the sandbox's URL
and key come from the start-up code, so nothing here knows the sandbox). Every order records
the panel it was placed on, and only orders of the panel the bot uses now can be acted on.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiosqlite

from bot.config import Settings
from bot.crypto import KeyBox, SecretKeyMismatch, WrongSecretKey
from bot.deps import Deps
from storage import meta, outbox, users
from storage.db import close_database, open_database, transaction
from storage.orders import Order
from storage.users import OPERATOR_ACCOUNT, Role, User

log = logging.getLogger(__name__)

KEY_LOST = (
    "I could not read the panel API key you connected, so I have forgotten it. "
    "Please /connect it again."
)


def fingerprint(key: str) -> str:
    """A short, one-way name for a key (never the key itself): caches are keyed by it."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Account:
    """A panel account as used for one user: its label in the database, its panel and key."""

    id: str  # "operator" (the operator's PANEL_KEY, or the sandbox in demo mode) or "user:<id>"
    key: str = field(repr=False)
    panel: str = ""  # the panel's API URL
    own: bool = False  # the user's own key: every order on it is theirs
    demo: bool = False  # the built-in sandbox panel: nothing real is bought
    customer: bool = False  # shop mode: a customer, paying from their wallet at shop prices

    def __str__(self) -> str:
        return self.id

    @property
    def catalog_key(self) -> str:
        """Which catalogue this account sees: its panel and its key's fingerprint (panels may
        give a key its own services and prices)."""
        return f"{self.panel}#{fingerprint(self.key)}"


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
    if deps.settings.shop_mode and await role_of(deps, user_id) != "admin":
        return await _customer_account(deps, user_id)
    own = await own_key(deps, user_id)
    if own is not None:
        return Account(users.user_account(user_id), own, deps.panel_url, own=True,
                       demo=deps.demo)
    operator = deps.operator_key
    if operator is None:
        return None
    if deps.demo:
        return Account(OPERATOR_ACCOUNT, operator, deps.panel_url, demo=True)
    if await role_of(deps, user_id) in ("admin", "allowed"):
        return Account(OPERATOR_ACCOUNT, operator, deps.panel_url)
    return None


async def _customer_account(deps: Deps, user_id: int) -> Account | None:
    """Shop mode: the shop's account for a customer, or None when they are banned."""
    if deps.operator_key is None or await is_banned(deps, user_id):
        return None
    return Account(OPERATOR_ACCOUNT, deps.operator_key, deps.panel_url, demo=deps.demo,
                   customer=True)


async def is_banned(deps: Deps, user_id: int) -> bool:
    """Shop mode: whether an admin banned this user (/deny)."""
    user = await users.get_user(deps.db, user_id)
    return user is not None and user.banned


def shop_account(deps: Deps) -> Account | None:
    """The operator's account the shop sells from (its catalogue and key), or None."""
    if deps.operator_key is None:
        return None
    return Account(OPERATOR_ACCOUNT, deps.operator_key, deps.panel_url, demo=deps.demo)


def user_of_account(account: str) -> int | None:
    """The user id of a 'user:<id>' label (None for the operator's account)."""
    prefix, _, rest = account.partition(":")
    if prefix != "user":
        return None
    try:
        return int(rest)
    except ValueError:
        return None


def key_of_account(deps: Deps, account: str, people: Mapping[int, User]) -> str | None:
    """The panel key of an account label (jobs have no user at hand), or None when the bot has
    no usable key for it; `people` holds the account's owner."""
    if account == OPERATOR_ACCOUNT:
        return deps.operator_key
    owner = user_of_account(account)
    user = people.get(owner) if owner is not None else None
    if user is None or user.panel_key is None or deps.keybox is None:
        return None
    try:
        return deps.keybox.decrypt(user.panel_key)
    except WrongSecretKey:
        return None


async def keyed_accounts(deps: Deps) -> list[str]:
    """The account labels the bot holds a key for (their orders can be followed)."""
    labels = [OPERATOR_ACCOUNT] if deps.operator_key is not None else []
    if deps.keybox is not None:
        labels += [users.user_account(i) for i in await users.stored_panel_keys(deps.db)]
    return labels


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


async def forget_own_catalogue(deps: Deps, user_id: int) -> None:
    """Drops the cached catalogue of the user's own key (call before the key changes): nobody
    else sees it, and the new key may have other services or prices."""
    key = await own_key(deps, user_id)
    if key is not None:
        account = Account(users.user_account(user_id), key, deps.panel_url, own=True)
        await deps.catalog.forget(account.catalog_key)


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


def on_this_panel(account: Account, order: Order) -> bool:
    """Whether an order was placed on the panel this account is on (so the panel can be asked
    about it): orders left from demo mode, or from a panel the bot no longer uses, are only
    shown."""
    return order.panel == account.panel
