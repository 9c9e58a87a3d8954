"""Admin commands: /stats, and /allow and /deny to give or take the operator's panel account.

Who is allowed: ALLOWED_USER_IDS (configuration) plus whoever an admin /allow-s (database).
/deny only takes back what /allow gave: a user allowed by the configuration or an admin
(ADMIN_IDS) is not changed from the chat, and the answer says to edit the configuration.
A denied user who connected their own key keeps using it: that is their own money.

Shop mode: everyone is a customer, so /deny bans a user from the shop and /allow lifts the ban;
/stats adds the shop's figures (`bot.services.shop`).
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler

from bot.deps import BotContext, Deps
from bot.handlers.common import esc, remember_user, reply, within_rate_limit
from bot.money import format_money, parse_whole
from bot.panel.errors import PanelClientError
from bot.services import shop
from bot.services.accounts import role_of
from bot.text import WORD_MAX, esc_short
from storage import orders, outbox, users

log = logging.getLogger(__name__)

NOT_ADMIN = "This command is for the bot's admins."
MAX_USER_ID = 2**53


async def _admin(update: Update, context: BotContext) -> bool:
    """True for an admin; everyone else is told the command is not for them."""
    user = update.effective_user
    if user is None:
        return False
    if await role_of(context.deps, user.id) == "admin":
        return True
    await remember_user(update, context)
    log.info("User %d tried an admin command", user.id)
    await reply(update, NOT_ADMIN)
    return False


def _target(args: list[str] | None) -> int | None:
    """The Telegram user id an admin named, or None when it is not one."""
    if not args or len(args) != 1:
        return None
    user_id = parse_whole(args[0].strip(), max_digits=16)
    if user_id is None or not 0 < user_id < MAX_USER_ID:
        return None
    return user_id


async def stats(update: Update, context: BotContext) -> None:
    """Users, orders by status, what is being followed, and the operator's balance."""
    if not await _admin(update, context) or not await within_rate_limit(update, context):
        return
    deps = context.deps
    db = deps.db
    admins = deps.settings.admin_ids | await users.admin_user_ids(db)
    allowed = (deps.settings.allowed_user_ids | await users.allowed_user_ids(db)) - admins
    own_keys = len(await users.stored_panel_keys(db))
    by_status = await orders.orders_by_status(db)
    counts = " · ".join(f"{esc_short(status, WORD_MAX)} {count}" for status, count in
                        sorted(by_status.items(), key=lambda item: (-item[1], item[0])))
    tracked = len(await orders.active_orders(db))
    pending = await outbox.count_pending_notifications(db)
    lines = [
        "<b>Bot statistics</b>",
        f"Users: {await users.count_users(db)} known · admins {len(admins)} · allowed "
        f"{len(allowed)} · with their own key {own_keys}",
        f"Orders: {sum(by_status.values())}" + (f" ({counts})" if counts else ""),
        f"Being followed: {tracked} · notifications waiting: {pending}",
        await _operator_balance(deps),
    ]
    if deps.settings.shop_mode:
        lines += ["", *shop.figures_lines(await shop.figures(deps))]
    await reply(update, "\n".join(lines))


async def _operator_balance(deps: Deps) -> str:
    """One line: the operator account's balance, or why it is not shown."""
    key = deps.operator_key
    if key is None:
        return "Panel balance: no operator account (PANEL_KEY is not set)."
    label = "Sandbox balance (demo)" if deps.demo else "Panel balance"
    try:
        balance = await deps.panel.balance(key)
    except PanelClientError as exc:
        return f"{label}: could not be read ({esc(exc.user_message)})"
    return f"{label}: {esc(format_money(balance.balance, balance.currency))}"


async def allow(update: Update, context: BotContext) -> None:
    """Lets a user order with the operator's panel account: /allow <id>."""
    if not await _admin(update, context):
        return
    target = _target(context.args)
    if target is None:
        await reply(update, "Usage: /allow &lt;user id&gt; – the numeric Telegram id "
                            "(users see theirs when they send /start).")
        return
    deps = context.deps
    role = await role_of(deps, target)
    if role == "admin":
        await reply(update, f"<code>{target}</code> is an admin already.")
        return
    if deps.settings.shop_mode:
        await users.set_banned(deps.db, target, False)
        await reply(update, f"✅ <code>{target}</code> may order from the shop.")
        return
    if role == "allowed":
        await reply(update, f"<code>{target}</code> is allowed already.")
        return
    await users.set_role(deps.db, target, "allowed")
    admin = update.effective_user
    log.info("Admin %s allowed user %d", admin.id if admin else "?", target)
    note = ""
    if deps.demo:
        note = "\n(Demo mode: everyone orders from the sandbox anyway.)"
    elif deps.settings.panel_key is None:
        note = "\n(PANEL_KEY is not set, so this gives them nothing until it is.)"
    await reply(update, f"✅ <code>{target}</code> may now order with the operator's panel "
                        f"account.{note}")


async def deny(update: Update, context: BotContext) -> None:
    """Takes the operator's panel account from a user an admin allowed: /deny <id>."""
    if not await _admin(update, context):
        return
    target = _target(context.args)
    if target is None:
        await reply(update, "Usage: /deny &lt;user id&gt; – the numeric Telegram id.")
        return
    deps = context.deps
    settings = deps.settings
    user = await users.get_user(deps.db, target)
    if target in settings.admin_ids or (user is not None and user.role == "admin"):
        await reply(update, f"<code>{target}</code> is an admin; admins come from ADMIN_IDS in "
                            "the bot's configuration.")
        return
    if settings.shop_mode:
        await users.set_banned(deps.db, target, True)
        admin = update.effective_user
        log.info("Admin %s banned user %d from the shop", admin.id if admin else "?", target)
        await reply(update, f"⛔ <code>{target}</code> is banned from the shop: they can no "
                            "longer order (/allow lifts it). Their wallet is kept.")
        return
    if target in settings.allowed_user_ids:
        await reply(update, f"<code>{target}</code> is allowed by ALLOWED_USER_IDS in the bot's "
                            "configuration: remove them there and restart the bot.")
        return
    if user is None or user.role != "allowed":
        await reply(update, f"<code>{target}</code> had no access; nothing changed.")
        return
    await users.set_role(deps.db, target, "other")
    admin = update.effective_user
    log.info("Admin %s denied user %d", admin.id if admin else "?", target)
    own = " They keep using the panel key they connected themselves." if user.panel_key else ""
    await reply(update, f"⛔ <code>{target}</code> may no longer order with the operator's panel "
                        f"account.{own}")


def handlers() -> list[BaseHandler[Update, BotContext, object]]:
    """This module's handlers."""
    return [
        CommandHandler("stats", stats),
        CommandHandler("allow", allow),
        CommandHandler("deny", deny),
    ]
