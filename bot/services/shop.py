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

from bot.deps import Deps
from bot.panel.errors import PanelClientError
from bot.panel.models import FINAL_ORDER_STATUSES, Balance
from bot.services.accounts import shop_account
from bot.services.wallet import show
from bot.text import esc
from storage import meta, outbox, users
from storage import wallet as ledger
from storage.db import transaction

log = logging.getLogger(__name__)

LOW_BALANCE_META: Final = "shop_low_balance"
#: Seconds between two looks at the panel's balance from the tracker's cycle.
BALANCE_EVERY: Final = 300.0
_WATCH_STATE: Final = "shop_balance_checked_at"


async def admin_ids(deps: Deps) -> set[int]:
    """Every admin: ADMIN_IDS and those stored in the database."""
    return set(deps.settings.admin_ids) | await users.admin_user_ids(deps.db)


async def alert_admins(deps: Deps, text: str, *, now: float | None = None) -> int:
    """Queues `text` (HTML) to every admin; how many. Joins an enclosing transaction."""
    admins = sorted(await admin_ids(deps))
    async with transaction(deps.db):
        for admin in admins:
            await outbox.enqueue_notification(deps.db, chat_id=admin, text=text, now=now)
    if not admins:
        log.warning("No admin to tell: %s", text)
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
        return None, "no operator account (PANEL_KEY is not set)"
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
        "<b>Shop</b>",
        f"Revenue: {money(fig.revenue)} ({fig.orders} orders charged) · refunds "
        f"{money(fig.refunds)}",
        f"Panel cost: {money(fig.panel_cost)} · margin {money(fig.margin)}",
        f"Customers' wallets: {money(fig.owed)} in {fig.wallets} wallets (what the shop owes)",
    ]
    if fig.panel is not None:
        shown = show(fig.panel.balance, fig.panel.currency or fig.currency)
        lines.append(f"…against the panel's balance: {esc(shown)}")
    else:
        lines.append(f"…against the panel's balance: could not be read ({esc(fig.panel_error)})")
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
    why = (f"below LOW_BALANCE_ALERT ({esc(show(limit, currency))})"
           if alert is not None and limit == alert else
           f"below what the orders being sent may cost ({esc(show(limit, currency))})")
    text = (f"⚠️ <b>Low panel balance</b>: {esc(show(panel.balance, currency))}, {why}. Top "
            "it up, or the panel will refuse the shop's orders.")
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


def held_text(amount: Decimal, currency: str) -> str:
    """"1.17 USD stays held…" (HTML)."""
    return (f"The <b>{esc(show(amount, currency))}</b> charged to your wallet stays held until "
            "the shop has checked: if it was not placed, you get it back.")


def unknown_for_customer(amount: Decimal, currency: str,
                         why: str = "The shop's panel did not answer") -> str:
    """A customer's order was sent but no clear answer came (HTML)."""
    return (f"⚠️ {why}, so I do not know yet whether your order was placed. It was <b>not</b> "
            f"sent twice. {held_text(amount, currency)} The shop's admins have been told.")


def unknown_for_admins(order_id: int, owner_id: int, service_name: str | None,
                       amount: Decimal, currency: str, why: str) -> str:
    """What admins must settle: a customer's charged order whose outcome is unknown (HTML)."""
    return (f"⚠️ <b>Shop order bot #{order_id}</b> of customer <code>{owner_id}</code>"
            f" ({esc(service_name or 'a service')}, {esc(show(amount, currency))} held): "
            f"outcome unknown ({esc(why)}). Check the panel's order list, then open it in "
            "/orders: <b>It was placed</b> (send its id) keeps the charge, <b>It was not "
            "placed</b> refunds the customer.")
