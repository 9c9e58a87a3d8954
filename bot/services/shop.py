"""The shop's own affairs: telling its admins, its figures for /stats, and the panel balance.

- `alert_admins` queues a message to every admin through the outbox; inside a transaction it
  commits with its cause (a refused order, an outcome to settle).
- `figures`: revenue (charges less refunds), refunds, the panel's cost of what was sold, the
  margin, and what the shop owes its customers (the sum of their wallets) against the panel's
  balance.
- `watch_panel_balance` (from the tracker's cycle): admins are told once each time the panel's
  balance drops below LOW_BALANCE_ALERT, or below what the orders still being sent may cost
  (claimed or outcome unknown: the panel may yet charge them); told again only after it was
  back above. The crossing is remembered in the database, so a restart does not repeat it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from bot import i18n
from bot.deps import Deps
from bot.i18n import L_, _, ngettext
from bot.panel.errors import PanelClientError
from bot.panel.models import FINAL_ORDER_STATUSES, PARTIAL, Balance
from bot.services import notices
from bot.services.accounts import shop_account
from bot.services.wallet import money_value, show
from bot.text import esc
from storage import meta, outbox, users
from storage import wallet as ledger
from storage.db import transaction
from storage.wallet import ChargedOrder

log = logging.getLogger(__name__)

LOW_BALANCE_META: Final = "shop_low_balance"
#: Seconds between two looks at the panel's balance from the tracker's cycle.
BALANCE_EVERY: Final = 300.0
_WATCH_STATE: Final = "shop_balance_checked_at"


async def admin_ids(deps: Deps) -> set[int]:
    """Every admin: ADMIN_IDS and those stored in the database."""
    return set(deps.settings.admin_ids) | await users.admin_user_ids(deps.db)


async def alert_admins(deps: Deps, text: i18n.Value, *, now: float | None = None) -> int:
    """Queues `text` (HTML: a `bot.i18n.Msg`, rendered in each admin's language when it is
    sent, or a text as it is) to every admin; how many. Joins an enclosing transaction."""
    admins = sorted(await admin_ids(deps))
    async with transaction(deps.db):
        for admin in admins:
            if isinstance(text, str):
                await outbox.enqueue_notification(deps.db, chat_id=admin, text=text, now=now)
            else:
                await outbox.enqueue_notice(deps.db, notices.notice(admin, text), now=now)
    if not admins:
        log.warning("No admin to tell: %s", i18n.in_language(text, i18n.SOURCE))
    return len(admins)


@dataclass(frozen=True, slots=True)
class Figures:
    """The shop's money, in its currency."""

    currency: str
    revenue: Decimal  # charged less refunded
    refunds: Decimal
    panel_cost: Decimal  # what the panel charged (or, until it says, its estimate)
    owed: Decimal  # the customers' wallets together
    wallets: int
    orders: int
    panel: Balance | None
    panel_error: str | None = None

    @property
    def margin(self) -> Decimal:
        """What the shop kept: revenue less the panel's cost."""
        return self.revenue - self.panel_cost


async def _panel_balance(deps: Deps, *, quick: bool = False) -> tuple[Balance | None, str | None]:
    """The shop account's balance on the panel, or why it could not be read (`quick`: one
    try, for the tracker's cycle, which must not wait on a slow panel)."""
    account = shop_account(deps)
    if account is None:
        return None, _("no operator account (PANEL_KEY is not set)")
    try:
        return await deps.panel.balance(account.key, quick=quick), None
    except PanelClientError as exc:
        return None, exc.user_message


async def figures(deps: Deps) -> Figures:
    """The shop's figures now (one balance request to the panel)."""
    db = deps.db
    sums = await ledger.sums_by_kind(db)
    charged = await ledger.charged_orders(db, final_statuses=sorted(FINAL_ORDER_STATUSES))
    wallets = await ledger.balances(db)
    currencies = {currency for _kind, currency in sums}
    currency = next(iter(currencies)) if len(currencies) == 1 else ""
    charges = -sum((v for (k, _c), v in sums.items() if k == "charge"), Decimal(0))
    refunds = sum((v for (k, _c), v in sums.items() if k == "refund"), Decimal(0))
    cost = sum((o.panel_charge if o.panel_charge is not None else o.cost or Decimal(0)
                for o in charged if o.state != "failed"), Decimal(0))
    owed = sum((entry.balance_after for entry in wallets.values()), Decimal(0))
    panel, error = await _panel_balance(deps)
    return Figures(currency, charges - refunds, refunds, cost, owed, len(wallets), len(charged),
                   panel, error)


def figures_lines(fig: Figures) -> list[str]:
    """/stats lines for the shop (HTML)."""
    def money(amount: Decimal) -> str:
        return esc(show(amount, fig.currency))

    lines = [
        # i18n: the heading of the shop's part of /stats
        _("<b>Shop</b>"),
        ngettext("Revenue: {revenue} ({n} order charged) · refunds {refunds}",
                 "Revenue: {revenue} ({n} orders charged) · refunds {refunds}",
                 fig.orders).format(revenue=money(fig.revenue), n=fig.orders,
                                    refunds=money(fig.refunds)),
        _("Panel cost: {cost} · margin {margin}").format(cost=money(fig.panel_cost),
                                                         margin=money(fig.margin)),
        ngettext("Customers' wallets: {owed} in {n} wallet (what the shop owes)",
                 "Customers' wallets: {owed} in {n} wallets (what the shop owes)",
                 fig.wallets).format(owed=money(fig.owed), n=fig.wallets),
    ]
    if fig.panel is not None:
        shown = show(fig.panel.balance, fig.panel.currency or fig.currency)
        lines.append(_("…against the panel's balance: {balance}").format(balance=esc(shown)))
    else:
        lines.append(_("…against the panel's balance: could not be read ({reason})").format(
            reason=esc(fig.panel_error)))
    return lines


async def in_flight_need(deps: Deps) -> Decimal:
    """What the orders still being sent (claimed, or outcome unknown) may cost on the panel."""
    charged = await ledger.charged_orders(deps.db, final_statuses=sorted(FINAL_ORDER_STATUSES),
                                          states=("claimed", "unknown"))
    return sum((o.cost or Decimal(0) for o in charged), Decimal(0))


async def check_panel_balance(deps: Deps, *, now: float | None = None) -> bool | None:
    """Looks at the panel's balance once; True when admins were just told it is low, False when
    not, None when it could not be read (nothing changes then)."""
    panel, error = await _panel_balance(deps, quick=True)
    if panel is None:
        log.info("Panel balance not checked: %s", error)
        return None
    alert = deps.settings.low_balance_alert
    need = await in_flight_need(deps)
    limit = max(alert if alert is not None else Decimal(0), need)
    was_low = await meta.get_meta(deps.db, LOW_BALANCE_META) is not None
    if panel.balance >= limit:
        if was_low:
            await meta.delete_meta(deps.db, LOW_BALANCE_META)
            log.info("Panel balance back above %s", limit)
        return False
    if was_low:
        return False
    currency = panel.currency
    balance, floor = money_value(panel.balance, currency), money_value(limit, currency)
    text = (L_("⚠️ <b>Low panel balance</b>: {balance}, below LOW_BALANCE_ALERT ({limit}). "
               "Top it up, or the panel will refuse the shop's orders.",
               balance=balance, limit=floor)
            if alert is not None and limit == alert else
            L_("⚠️ <b>Low panel balance</b>: {balance}, below what the orders being sent may "
               "cost ({limit}). Top it up, or the panel will refuse the shop's orders.",
               balance=balance, limit=floor))
    async with transaction(deps.db):
        await alert_admins(deps, text, now=now)
        await meta.set_meta(deps.db, LOW_BALANCE_META, b"1", now=now)
    log.warning("Panel balance %s is below %s: admins told", panel.balance, limit)
    return True


async def watch_panel_balance(deps: Deps, *, now: float | None = None) -> None:
    """The tracker cycle's look at the panel balance (shop mode, every BALANCE_EVERY s)."""
    if not deps.settings.shop_mode:
        return
    now = time.time() if now is None else now
    last = deps.state.get(_WATCH_STATE)
    if isinstance(last, float) and now - last < BALANCE_EVERY:
        return
    deps.state[_WATCH_STATE] = now
    await check_panel_balance(deps, now=now)


# --- what customers and admins are told about an order whose outcome is unknown ---------------


def held_msg(amount: Decimal, currency: str) -> i18n.Msg:
    """"1.17 USD stays held…" (HTML), rendered in its reader's language (a notification)."""
    return L_("The <b>{amount}</b> charged to your wallet stays held until the shop has "
              "checked: if it was not placed, you get it back.",
              amount=money_value(amount, currency))


def held_text(amount: Decimal, currency: str) -> str:
    """"1.17 USD stays held…" (HTML), in the current language (a reply)."""
    return held_msg(amount, currency).render()


def unknown_customer_msg(amount: Decimal, currency: str,
                         why: i18n.Value | None = None) -> i18n.Msg:
    """A customer's order was sent but no clear answer came (HTML), rendered in its reader's
    language (a notification); `why` (HTML, or a Msg) opens it: "The shop's panel did not
    answer" unless told."""
    # i18n: {reason} is a sentence's start such as "The shop's panel did not answer"; {held}
    # is the sentence "The 1.17 USD charged to your wallet stays held…"
    return L_("⚠️ {reason}, so I do not know yet whether your order was placed. It was "
              "<b>not</b> sent twice. {held} The shop's admins have been told.",
              reason=L_("The shop's panel did not answer") if why is None else why,
              held=held_msg(amount, currency))


def unknown_for_customer(amount: Decimal, currency: str,
                         why: i18n.Value | None = None) -> str:
    """A customer's order was sent but no clear answer came (HTML), in the current language
    (a reply); see `unknown_customer_msg`."""
    return unknown_customer_msg(amount, currency, why).render()


# --- … and about a charged order the panel no longer knows ----------------------------------


def service_value(name: str | None) -> i18n.Value:
    """An order's service in a Msg: the panel's name (escaped), or "a service"."""
    # i18n: an order's service when the panel's name of it is not known
    return esc(name) if name else L_("a service")


def lost_held_msg(amount: Decimal, currency: str) -> i18n.Msg:
    """"The 1.17 USD you paid stays held…" for a customer whose order the panel lost (HTML),
    rendered in its reader's language (a notification)."""
    return L_("The <b>{amount}</b> charged to your wallet stays held until the shop has "
              "checked: if it was not delivered, you get it back. The shop's admins have been "
              "told.", amount=money_value(amount, currency))


def lost_for_admins(order_id: int, owner_id: int, panel_order_id: int,
                    service_name: str | None, amount: Decimal, currency: str) -> i18n.Msg:
    """What admins must settle: a customer's charged order the panel no longer knows (HTML, a
    Msg for `alert_admins`). Nothing is refunded on its own: the panel may have delivered it
    and purged it since."""
    # i18n: {panel} is the panel's order id; the /credit command is typed as it stands
    return L_("⚠️ <b>Shop order bot #{number}</b> of customer <code>{customer}</code> "
              "({service}, {amount} charged) is lost: the panel no longer knows its order "
              "{panel}, so I stopped following it. Check the panel's order list; if it was not "
              "delivered, refund the customer with <code>/credit {customer} {refund}</code>.",
              number=order_id, customer=owner_id, panel=panel_order_id,
              service=service_value(service_name), amount=money_value(amount, currency),
              refund=f"{amount:f}")


def partial_for_admins(order: ChargedOrder) -> i18n.Msg:
    """What admins must settle: a customer's charged order that ended Partial without the
    panel saying how much was not delivered, so no refund could be worked out (HTML, a Msg
    for `alert_admins`)."""
    # i18n: {status} is the status word (Partial); {panel} is the panel's order id; the
    # /credit command is typed as it stands, with the amount to refund put in by the admin
    return L_("⚠️ <b>Shop order bot #{number}</b> of customer <code>{customer}</code> "
              "({service}, {amount} charged) ended {status}, but the panel did not say how much "
              "was not delivered, so nothing was refunded. Check order {panel} on the panel, "
              "then refund what was not delivered with <code>/credit {customer} "
              "amount</code>.",
              number=order.order_id, customer=order.owner_id,
              panel=order.panel_order_id if order.panel_order_id is not None else "?",
              service=service_value(order.service_name),
              amount=money_value(order.charge, order.currency),
              status=notices.status_value(order.first_final or PARTIAL))


def unknown_for_admins(order_id: int, owner_id: int, service_name: str | None,
                       amount: Decimal, currency: str, why: i18n.Value) -> i18n.Msg:
    """What admins must settle: a customer's charged order whose outcome is unknown (HTML, a
    Msg for `alert_admins`; `why`: plain text, or a Msg)."""
    # i18n: {service} is the panel's service name; "It was placed" and "It was not placed"
    # are the buttons on the order's card
    return L_("⚠️ <b>Shop order bot #{number}</b> of customer <code>{customer}</code> "
              "({service}, {amount} held): outcome unknown ({reason}). Check the panel's order "
              "list, then open it in /orders: <b>It was placed</b> (send its id) keeps the "
              "charge, <b>It was not placed</b> refunds the customer.",
              number=order_id, customer=owner_id, service=service_value(service_name),
              amount=money_value(amount, currency),
              reason=why if isinstance(why, i18n.Msg | i18n.Joined) else esc(why))
