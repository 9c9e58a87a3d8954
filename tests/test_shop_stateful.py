"""The shop's money under random sequences: credits, debits, orders the panel takes, refuses or
leaves unknown, statuses (repeated, out of order) seen through every path, cancels, settling,
crashes mid-send and restarts. After every step the audit holds and every wallet equals what a
simple model in whole cents computes."""

from __future__ import annotations

import asyncio
import itertools
import math
import shutil
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from bot.panel.sandbox import DEMO_KEY, SandboxPanel
from bot.service_types import form_for
from bot.services import actions, placement, wallet
from bot.services.accounts import account_for
from bot.services.tracking import poll_orders
from storage import orders as order_store
from storage.users import upsert_user
from tests.conftest import ADMIN, OTHER, USER, BotHarness, start_harness, stop_harness

T = TypeVar("T")
# On a failure, shrinking replays many runs: give it time rather than a misleading timeout.
pytestmark = pytest.mark.timeout(600)

CUSTOMERS = (USER, OTHER)
#: The shop's price per 1000 in hundredths of a cent (0.90 × 1.3 = 1.17, 0.25 × 1.3 = 0.325).
PRICE_PER_1000 = {1: 11700, 2: 3250}
FINAL = {"Completed", "Partial", "Canceled", "Refunded"}
FULL = {"Canceled", "Refunded"}
LINK = "https://instagram.com/p/"


def price_cents(service: int, quantity: int) -> int:
    """What the model says an order costs, in whole cents, rounded up."""
    return max(1, math.ceil(PRICE_PER_1000[service] * quantity / 100_000))


@dataclass
class ModelOrder:
    """What the model knows of one order."""

    local: int
    owner: int
    charge: int  # cents
    quantity: int
    state: str  # placed, unknown, failed
    panel_id: int | None = None  # the sandbox's order, if it made one
    panel_status: str = "Pending"
    panel_remains: int = 0
    bot_final: bool = False
    refunded: int = 0


class ShopMoney(RuleBasedStateMachine):
    """A shop in demo mode, driven through the services layer as its handlers drive it."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="shop-stateful-"))
        self.sandbox = SandboxPanel(keys={DEMO_KEY: Decimal(100_000)}, speed=1e-9)
        self.bot: BotHarness = self.run(self.start())
        self.balances = dict.fromkeys(CUSTOMERS, 0)
        self.orders: list[ModelOrder] = []
        self.refs = itertools.count()
        self.links = itertools.count()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    async def start(self) -> BotHarness:
        bot = await start_harness(self.tmp, sandbox=self.sandbox, MODE="shop")
        for user in (*CUSTOMERS, ADMIN):
            await upsert_user(bot.deps.db, telegram_id=user, name=f"User{user}")
        return bot

    def teardown(self) -> None:
        try:
            self.run(stop_harness(self.bot))
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the model's rules -------------------------------------------------------------------

    def observe(self, order: ModelOrder) -> None:
        """The bot has just stored what the panel says of this order now."""
        if order.bot_final:
            return
        if order.panel_status in FINAL:
            order.bot_final = True
            if order.panel_status in FULL:
                refund = order.charge
            elif order.panel_status == "Partial":
                refund = order.charge * order.panel_remains // order.quantity
            else:
                refund = 0
            order.refunded = refund
            self.balances[order.owner] += refund

    def live(self, state: str) -> list[ModelOrder]:
        return [o for o in self.orders if o.state == state]

    # -- money in and out --------------------------------------------------------------------

    @initialize(first=st.integers(0, 5000), second=st.integers(0, 5000))
    def open_shop(self, first: int, second: int) -> None:
        """Customers start with some money (or none), so orders are placed from the start."""
        for user, cents in zip(CUSTOMERS, (first, second), strict=True):
            if cents:
                self.credit(user, cents)

    @rule(user=st.sampled_from(CUSTOMERS), cents=st.integers(1, 3000))
    def credit(self, user: int, cents: int) -> None:
        booked = self.run(wallet.credit(self.bot.deps, user, Decimal(cents) / 100,
                                        reference=f"test:{next(self.refs)}"))
        assert booked.new
        self.balances[user] += cents

    @rule(user=st.sampled_from(CUSTOMERS), cents=st.integers(1, 2000))
    def debit(self, user: int, cents: int) -> None:
        try:
            self.run(wallet.debit(self.bot.deps, user, Decimal(cents) / 100,
                                  reference=f"test:{next(self.refs)}"))
        except wallet.NotEnough:
            assert self.balances[user] < cents
            return
        assert self.balances[user] >= cents
        self.balances[user] -= cents

    # -- ordering ----------------------------------------------------------------------------

    async def _draft(self, user: int, service: int, quantity: int) -> int:
        deps = self.bot.deps
        account = await account_for(deps, user)
        assert account is not None and account.customer
        index = await deps.catalog.get(account.catalog_key, account.key)
        chosen = index.by_id[service]
        values = {"link": f"{LINK}{next(self.links)}", "quantity": str(quantity)}
        return await placement.save_draft(deps, account, user, chosen, form_for(chosen.type),
                                          values, index.currency)

    async def _place(self, user: int, draft: int) -> placement.Outcome:
        account = await account_for(self.bot.deps, user)
        assert account is not None
        return await placement.place(self.bot.deps, account, user, draft)

    @rule(user=st.sampled_from(CUSTOMERS), service=st.sampled_from([1, 2]),
          quantity=st.integers(50, 3000),
          panel=st.sampled_from(["takes it", "takes it", "bad link", "no funds", "timeout",
                                 "timeout after"]))
    def order(self, user: int, service: int, quantity: int, panel: str) -> None:
        failures = {"bad link": "error:Bad link", "no funds": "error:Not enough funds on balance",
                    "timeout": "timeout", "timeout after": "timeout_after"}
        draft = self.run(self._draft(user, service, quantity))
        price = price_cents(service, quantity)
        if panel in failures and self.balances[user] >= price:  # a Short never reaches it
            self.sandbox.fail_next("add", failures[panel])
        before = {o["order"] for o in self.sandbox.orders_of(DEMO_KEY)}
        outcome = self.run(self._place(user, draft))
        made = [o["order"] for o in self.sandbox.orders_of(DEMO_KEY) if o["order"] not in before]
        assert self.sandbox.pending_failures == []
        if self.balances[user] < price:
            assert isinstance(outcome, placement.Short), outcome
            assert outcome.missing == Decimal(price - self.balances[user]) / 100
            assert not made
            return
        self.balances[user] -= price
        model = ModelOrder(draft, user, price, quantity, "placed", made[0] if made else None)
        self.orders.append(model)
        if panel == "takes it":
            assert isinstance(outcome, placement.Placed) and outcome.charged is not None
            assert outcome.charged.amount == Decimal(price) / 100
        elif panel in ("bad link", "no funds"):
            assert isinstance(outcome, placement.Refused) and outcome.refund is not None
            assert outcome.shop_problem == (panel == "no funds")
            model.state, model.refunded = "failed", price
            self.balances[user] += price
        else:
            assert isinstance(outcome, placement.Unknown) and outcome.held is not None
            model.state = "unknown"

    @rule(user=st.sampled_from(CUSTOMERS), quantity=st.integers(50, 1000))
    def crash_while_sending(self, user: int, quantity: int) -> None:
        """The claim and the charge committed, then the bot died before the panel answered."""
        draft = self.run(self._draft(user, 1, quantity))
        order = self.run(order_store.get_order(self.bot.deps.db, draft))
        assert order is not None
        claimed = self.run(placement._claim_and_charge(self.bot.deps, order))
        price = price_cents(1, quantity)
        if self.balances[user] < price:
            assert isinstance(claimed, placement.Short)
            return
        assert isinstance(claimed, placement.Paid)
        self.balances[user] -= price
        self.orders.append(ModelOrder(draft, user, price, quantity, "unknown"))
        self.restart()

    @precondition(lambda self: bool(self.live("unknown")))
    @rule(pick=st.integers(0, 100), found=st.booleans())
    def settle(self, pick: int, found: bool) -> None:
        """An admin checks the panel: it was placed (linked), or not (refunded)."""
        candidates = self.live("unknown")
        order = candidates[pick % len(candidates)]
        deps = self.bot.deps
        admin = self.run(account_for(deps, ADMIN))
        assert admin is not None
        if found and order.panel_id is not None:
            linked = self.run(placement.link_unknown(deps, admin, ADMIN, order.local,
                                                     order.panel_id, admin=True))
            assert isinstance(linked, placement.Linked), linked
            order.state = "placed"
            self.observe(order)
        else:
            assert self.run(placement.not_placed(deps, admin, ADMIN, order.local, admin=True))
            order.state, order.refunded = "failed", order.charge
            self.balances[order.owner] += order.charge

    # -- what the panel does, and who looks ----------------------------------------------------

    @precondition(lambda self: bool(self.live("placed")))
    @rule(pick=st.integers(0, 100),
          status=st.sampled_from(["In progress", "Completed", "Partial", "Canceled",
                                  "Refunded"]),
          percent=st.integers(0, 100),
          look=st.sampled_from(["tracker", "refresh", "status", "later"]))
    def panel_moves(self, pick: int, status: str, percent: int, look: str) -> None:
        placed = self.live("placed")
        order = placed[pick % len(placed)]
        assert order.panel_id is not None
        remains = {"In progress": order.quantity // 2, "Completed": 0,
                   "Partial": order.quantity * percent // 100,
                   "Canceled": order.quantity, "Refunded": order.quantity}[status]
        self.sandbox.set_status(order.panel_id, status, remains=remains)
        order.panel_status, order.panel_remains = status, remains
        deps = self.bot.deps
        if look == "tracker":
            self.run(poll_orders(deps))
            for other in self.live("placed"):  # the tracker looks at every unfinished order
                self.observe(other)
        elif look in ("refresh", "status"):
            caller = self.run(actions.caller_for(deps, order.owner))
            assert caller is not None
            stored = self.run(order_store.get_order(deps.db, order.local))
            assert stored is not None
            if look == "refresh":
                self.run(actions.refresh(deps, caller, stored))
            else:
                self.run(actions.check_statuses(deps, caller, [order.panel_id]))
            self.observe(order)

    @precondition(lambda self: bool(self.live("placed")))
    @rule(pick=st.integers(0, 100))
    def customer_cancels(self, pick: int) -> None:
        placed = self.live("placed")
        order = placed[pick % len(placed)]
        assert order.panel_id is not None
        deps = self.bot.deps
        caller = self.run(actions.caller_for(deps, order.owner))
        assert caller is not None
        report = self.run(actions.cancel_orders(deps, caller, [order.panel_id]))
        line = report.lines[order.panel_id]
        if order.bot_final:
            assert line.kind == "not_sent"
        elif order.panel_status in FINAL:
            assert line.kind == "error"  # the panel will not cancel a finished order
        else:
            assert line.kind == "cancel"
            order.panel_status, order.panel_remains = "Canceled", order.quantity
            self.observe(order)  # the read-back stores the panel's Canceled

    @rule()
    def restart(self) -> None:
        self.run(stop_harness(self.bot))
        self.bot = self.run(self.start())

    # -- after every step ----------------------------------------------------------------------

    @invariant()
    def money_adds_up(self) -> None:
        report = self.run(wallet.audit(self.bot.deps))
        assert report.ok, report.problems
        for user, cents in self.balances.items():
            assert self.run(wallet.balance(self.bot.deps, user)).amount == Decimal(cents) / 100
        for order in self.orders:
            money = self.run(wallet.order_money(self.bot.deps, [order.local]))[order.local]
            assert money == (Decimal(order.charge) / 100,
                             Decimal(order.refunded) / 100 if order.refunded else None), order


ShopMoney.TestCase.settings = settings(
    max_examples=20, stateful_step_count=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    # No "explain" phase: tracing every line of a failing run takes minutes here.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
TestShopMoney = ShopMoney.TestCase
