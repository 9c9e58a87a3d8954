"""Who may do what: roles, and which panel account (and key) serves a user."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.deps import Deps
from bot.panel.sandbox import DEMO_KEY
from storage import users
from storage.users import OPERATOR_ACCOUNT, Role


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
    user = await users.get_user(deps.db, user_id)
    if user is not None and user.panel_key is not None and deps.keybox is not None:
        return Account(users.user_account(user_id), deps.keybox.decrypt(user.panel_key), own=True)
    if deps.sandbox is not None:
        return Account(OPERATOR_ACCOUNT, DEMO_KEY, demo=True)
    panel_key = deps.settings.panel_key
    if panel_key is not None and await role_of(deps, user_id) in ("admin", "allowed"):
        return Account(OPERATOR_ACCOUNT, panel_key.get_secret_value())
    return None


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
