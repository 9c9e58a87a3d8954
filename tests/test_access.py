"""Who may do what: roles, /start per access, admin commands, the rate limit, and every command
and button tried by someone who may not use them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from telegram import Update

from bot.handlers.start import COMMANDS
from bot.panel.models import SANDBOX_URL as PANEL
from bot.panel.sandbox import SandboxPanel
from bot.ratelimit import UserRateLimiter
from bot.services.accounts import Account, account_for, owns, role_of
from bot.standin.botapi import feed
from storage import orders, users
from tests.conftest import ADMIN, OTHER, USER, BotHarness, start_harness, stop_harness

pytestmark = pytest.mark.filterwarnings("ignore:Ignoring `conversation_timeout`")

PANEL_URL = "https://panel.example/api/v2"
SECRET = "test-secret-key-for-the-bot-0123"
STRANGER = 99

# Plausible arguments for each command: without any, and with what a user would type.
ARGUMENTS: dict[str, list[str]] = {
    "order": ["", " 1"],
    "massorder": ["", " 1 | https://x.com/a | 100"],
    "start": ["", " s1", " o23501"],
    "services": ["", " followers"],
    "status": ["", " 23501", " 1 2 3"],
    "refill": ["", " 23501"],
    "cancelorder": ["", " 23501"],
    "track": ["", " 23501"],
    "stats": [""],
    "allow": ["", f" {STRANGER}"],
    "deny": ["", f" {USER}"],
}
# Callback data of every prefix in bot/callbacks.py (and the notify module's).
BUTTONS = [
    "menu", "bal", "cat:0", "cat:1", "cs:0:0", "sr:0", "svc:1", "new:1",
    "wz:skip", "wz:back", "wz:keep", "wz:choice:0", "wz:confirm:1", "wz:edit", "wz:cancel",
    "ol:0", "ol:1", "oc:1", "oc:1:r", "oc:1:rf", "oc:1:rfy", "oc:1:rs", "oc:1:cx", "oc:1:cxy",
    "nt:all", "nt:final", "nt:off",
    "oc:1:ag", "sh:1", "mo:go:1:1", "mo:ed:1:1", "mo:x:1:1", "mo:rs:1",
]


async def start_panel_bot(tmp_path: Path, **overrides: object) -> BotHarness:
    """A bot on a configured panel (the sandbox plays it): op-key is the operator's key."""
    sandbox = SandboxPanel(keys={"op-key": Decimal("100"), "own-key-123456": Decimal("5")})
    settings: dict[str, object] = {"PANEL_URL": PANEL_URL, "PANEL_KEY": "op-key"}
    settings.update(overrides)
    return await start_harness(tmp_path, sandbox=sandbox, **settings)


@pytest.fixture
async def panel_bot(tmp_path: Path) -> AsyncIterator[BotHarness]:
    """A configured panel; USER is allowed, OTHER is nobody, ADMIN is the admin."""
    harness = await start_panel_bot(tmp_path, ALLOWED_USER_IDS=str(USER), SECRET_KEY=SECRET)
    yield harness
    await stop_harness(harness)


def matching_handler(harness: BotHarness, update: dict[str, object]) -> bool:
    """Whether any registered handler of the main group would take this update."""
    parsed = Update.de_json(update, harness.app.bot)
    return any(handler.check_update(parsed) not in (None, False)
               for handler in harness.app.handlers.get(0, []))


# --- every command and button, by someone without access ---------------------------------------


async def test_unknown_user_tries_every_command_and_button(tmp_path: Path) -> None:
    harness = await start_panel_bot(tmp_path)
    try:
        world = harness.world
        db = harness.deps.db
        tried: list[str] = []
        unhandled: list[str] = []
        commands = [name for name, _ in COMMANDS] + ["stats", "allow", "deny"]
        for name in commands:
            for args in ARGUMENTS.get(name, [""]):
                text = f"/{name}{args}"
                before = len(world.bot_messages(OTHER))
                update = world.user_sends(OTHER, text)
                if not matching_handler(harness, update):
                    unhandled.append(text)
                    continue
                await feed(harness.app, update)
                tried.append(text)
                assert len(world.bot_messages(OTHER)) > before, f"{text}: no reply"
        for data in BUTTONS:
            await harness.send("/start", user=OTHER)
            update = world.user_presses(OTHER, harness.last(OTHER).message_id, data, force=True)
            if not matching_handler(harness, update):
                unhandled.append(data)
                continue
            before = len(world.bot_messages(OTHER))
            await feed(harness.app, update)
            tried.append(data)
            query_id = update["callback_query"]["id"]  # type: ignore[index]
            answered = query_id in world.callback_answers
            assert answered or len(world.bot_messages(OTHER)) > before, f"{data}: silent"
        assert harness.sandbox.requests == [], "someone without access reached the panel"
        assert await orders.count_orders(db, owner_id=OTHER, include_drafts=True) == 0
        other = await users.get_user(db, OTHER)
        assert other is None or (other.role == "other" and other.panel_key is None)
        stranger = await users.get_user(db, STRANGER)
        assert stranger is None  # /allow by a non-admin changed nothing
        assert "/start" in tried and "cat:0" in tried and "/stats" in tried
        print(f"tried {len(tried)}, no handler registered for: {unhandled}")
    finally:
        await stop_harness(harness)


async def test_forged_button_naming_another_users_order_is_not_found(
    panel_bot: BotHarness,
) -> None:
    db = panel_bot.deps.db
    await users.upsert_user(db, telegram_id=OTHER, name="Other")
    order = await orders.track_order(db, panel=PANEL, owner_id=OTHER, account="operator",
                                     panel_order_id=23501)
    await panel_bot.send("/start")  # USER is allowed: same operator account, not their order
    for action in ("", ":r", ":rfy", ":cxy"):
        data = f"oc:{order.id}{action}"
        update = panel_bot.world.user_presses(USER, panel_bot.last().message_id, data,
                                              force=True)
        if not matching_handler(panel_bot, update):
            pytest.skip("the order card buttons (oc:) are not registered yet")
        await feed(panel_bot.app, update)
        answer = panel_bot.world.callback_answers[update["callback_query"]["id"]]
        assert "not found" in str(answer.get("text", "")).lower(), data
    assert panel_bot.sandbox.requests == []
    stored = await orders.get_order(db, order.id)
    assert stored is not None and stored.owner_id == OTHER and stored.status is None


# --- roles and accounts --------------------------------------------------------------------------


async def test_roles_come_from_settings_and_database(panel_bot: BotHarness) -> None:
    deps = panel_bot.deps
    assert await role_of(deps, ADMIN) == "admin"
    assert await role_of(deps, USER) == "allowed"
    assert await role_of(deps, OTHER) == "other"
    await users.set_role(deps.db, OTHER, "allowed")
    assert await role_of(deps, OTHER) == "allowed"
    account = await account_for(deps, OTHER)
    assert account is not None and account.id == "operator" and not account.own
    assert account.key == "op-key" and "op-key" not in repr(account)


def test_ownership_rule() -> None:
    operator = Account("operator", "k")
    own = Account("user:42", "k2", own=True)
    rule = {"account": operator, "user_id": USER, "role": "allowed"}
    assert owns(**rule, order_account="operator", order_owner=USER)  # type: ignore[arg-type]
    assert not owns(**rule, order_account="operator", order_owner=OTHER)  # type: ignore[arg-type]
    assert not owns(**rule, order_account="user:42", order_owner=USER)  # type: ignore[arg-type]
    assert owns(account=operator, user_id=ADMIN, role="admin", order_account="operator",
                order_owner=OTHER)
    assert not owns(account=operator, user_id=ADMIN, role="admin", order_account="user:43",
                    order_owner=OTHER)
    assert owns(account=own, user_id=USER, role="other", order_account="user:42",
                order_owner=None)


# --- /start for each kind of access ------------------------------------------------------------


async def test_start_in_demo_mode(bot: BotHarness) -> None:
    await bot.send("/start", user=OTHER)
    assert "Demo mode" in bot.last(OTHER).plain
    assert "no access" not in bot.last(OTHER).plain


async def test_start_for_each_kind_of_access(panel_bot: BotHarness) -> None:
    await panel_bot.send("/start")
    assert "operator's panel account" in panel_bot.last().plain
    assert "/connect" in panel_bot.last().plain
    await panel_bot.send("/start", user=OTHER)
    text = panel_bot.last(OTHER).plain
    assert "no access" in text and str(OTHER) in text and "/connect" in text
    await panel_bot.send("/connect own-key-123456", user=OTHER)
    await panel_bot.send("/start", user=OTHER)
    text = panel_bot.last(OTHER).plain
    assert "your own panel API key" in text and "no access" not in text
    for message in (panel_bot.last(USER), panel_bot.last(OTHER)):
        assert len(message.plain) < 600  # one short message


async def test_start_without_secret_key_does_not_offer_connect(tmp_path: Path) -> None:
    harness = await start_panel_bot(tmp_path)
    try:
        await harness.send("/start", user=OTHER)
        assert "no access" in harness.last(OTHER).plain
        assert "/connect" not in harness.last(OTHER).plain
    finally:
        await stop_harness(harness)


# --- admin commands ------------------------------------------------------------------------------


async def test_allow_and_deny_by_a_non_admin_are_refused(panel_bot: BotHarness) -> None:
    for user in (USER, OTHER):
        for command in (f"/allow {STRANGER}", f"/deny {USER}", "/stats"):
            await panel_bot.send(command, user=user)
            assert panel_bot.last(user).plain == "This command is for the bot's admins."
    assert await role_of(panel_bot.deps, STRANGER) == "other"
    assert await role_of(panel_bot.deps, USER) == "allowed"
    assert panel_bot.sandbox.requests == []


async def test_admin_allows_and_denies(panel_bot: BotHarness) -> None:
    deps = panel_bot.deps
    await panel_bot.send("/start", user=OTHER)
    assert await account_for(deps, OTHER) is None
    await panel_bot.send(f"/allow {OTHER}", user=ADMIN)
    assert "may now order" in panel_bot.last(ADMIN).plain
    account = await account_for(deps, OTHER)
    assert account is not None and account.id == "operator"
    await panel_bot.send(f"/allow {OTHER}", user=ADMIN)
    assert "allowed already" in panel_bot.last(ADMIN).plain

    await panel_bot.send(f"/deny {OTHER}", user=ADMIN)
    assert "may no longer order" in panel_bot.last(ADMIN).plain
    assert await account_for(deps, OTHER) is None
    await panel_bot.send(f"/deny {OTHER}", user=ADMIN)
    assert "had no access" in panel_bot.last(ADMIN).plain


async def test_deny_leaves_configured_users_and_admins_alone(panel_bot: BotHarness) -> None:
    await panel_bot.send(f"/deny {USER}", user=ADMIN)
    assert "ALLOWED_USER_IDS" in panel_bot.last(ADMIN).plain
    assert await role_of(panel_bot.deps, USER) == "allowed"
    await panel_bot.send(f"/deny {ADMIN}", user=ADMIN)
    assert "is an admin" in panel_bot.last(ADMIN).plain
    assert await role_of(panel_bot.deps, ADMIN) == "admin"


@pytest.mark.parametrize("command", ["/allow", "/allow abc", "/allow -5", "/allow 0",
                                     "/deny 1 2", "/allow 99999999999999999999"])
async def test_allow_and_deny_need_one_numeric_id(panel_bot: BotHarness, command: str) -> None:
    await panel_bot.send(command, user=ADMIN)
    assert panel_bot.last(ADMIN).plain.startswith("Usage:")
    assert await users.count_users(panel_bot.deps.db, role="allowed") == 0


async def test_stats_for_admins(panel_bot: BotHarness) -> None:
    db = panel_bot.deps.db
    for user in (USER, OTHER):
        await users.upsert_user(db, telegram_id=user, name=str(user))
    await orders.track_order(db, panel=PANEL, owner_id=USER, account="operator", panel_order_id=1)
    await orders.track_order(db, panel=PANEL, owner_id=USER, account="operator", panel_order_id=2)
    await panel_bot.send("/stats", user=ADMIN)
    text = panel_bot.last(ADMIN).plain
    assert "Users: 2 known · admins 1 · allowed 1 · with their own key 0" in text
    assert "Orders: 2 (placed 2)" in text
    assert "Being followed: 2" in text and "notifications waiting: 0" in text
    assert "Panel balance: 100" in text
    assert [r["key"] for r in panel_bot.sandbox.requests] == ["op-key"]

    panel_bot.sandbox.down = True
    await panel_bot.send("/stats", user=ADMIN)
    assert "Panel balance: could not be read" in panel_bot.last(ADMIN).plain


# --- the rate limit ------------------------------------------------------------------------------


async def test_rate_limit_on_panel_hitting_commands(tmp_path: Path) -> None:
    harness = await start_panel_bot(tmp_path, RATE_LIMIT_PER_MINUTE=3)
    try:
        for _ in range(3):
            await harness.send("/stats", user=ADMIN)
            assert "Bot statistics" in harness.last(ADMIN).plain
        assert len(harness.sandbox.requests_for("balance")) == 3
        await harness.send("/stats", user=ADMIN)
        assert "Too many requests" in harness.last(ADMIN).plain
        assert len(harness.sandbox.requests_for("balance")) == 3  # no panel request
        # The limit is per user: another user's command still goes through.
        await harness.send("/balance", user=USER)
        assert "Too many requests" not in harness.last(USER).plain
    finally:
        await stop_harness(harness)


async def test_rate_limit_default_is_ten_a_minute_for_balance(tmp_path: Path) -> None:
    harness = await start_panel_bot(tmp_path, ALLOWED_USER_IDS=str(USER))
    try:
        for _ in range(10):
            await harness.send("/balance")
            assert "Too many requests" not in harness.last().plain
        requests = len(harness.sandbox.requests)
        await harness.send("/balance")
        assert "Too many requests" in harness.last().plain
        assert len(harness.sandbox.requests) == requests
    finally:
        await stop_harness(harness)


def test_rate_limiter_window_slides() -> None:
    now = [1000.0]
    limiter = UserRateLimiter(2, clock=lambda: now[0])
    assert limiter.try_acquire(USER) == 0
    now[0] += 30
    assert limiter.try_acquire(USER) == 0
    assert limiter.try_acquire(USER) == pytest.approx(30)  # refused: not counted
    assert limiter.try_acquire(OTHER) == 0
    now[0] += 30.5  # the first action is older than a minute now
    assert limiter.try_acquire(USER) == 0
    assert limiter.try_acquire(USER) == pytest.approx(29.5)
    now[0] += 1000  # idle users are forgotten
    assert limiter.try_acquire(OTHER) == 0
    assert list(limiter._hits) == [OTHER]
