"""The shop speaks each reader's language: wallet notices and admin alerts are rendered when they
are sent, in their reader's language then; replies in the language of the update.

A stand-in catalog ("ru", every text put in «») shows which texts went through the catalog; the
real translations come with the catalogs themselves.
"""

from __future__ import annotations

import gettext
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from bot import i18n
from bot.panel.sandbox import DEMO_KEY
from bot.services import shop, wallet
from bot.services.tracking import poll_orders
from storage import orders, outbox
from tests.conftest import ADMIN, USER, BotHarness, speak_stand_ins, stop_harness
from tests.test_shop import buy, drain, shop_harness


class Guillemets(gettext.NullTranslations):
    """A language whose every text is its English in «»."""

    def gettext(self, message: str) -> str:
        return f"«{message}»"

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        return f"«{msgid1 if n == 1 else msgid2}»"


@pytest.fixture
def guillemets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot speaks English and "ru", the stand-in language."""
    speak_stand_ins(monkeypatch, {"ru": Guillemets()})


@pytest.fixture
async def bot(tmp_path: Path, guillemets: None) -> AsyncIterator[BotHarness]:
    """A shop whose customer USER reads "ru" and whose admin reads English."""
    harness = await shop_harness(tmp_path, LOW_BALANCE_ALERT="50")
    await harness.deps.languages.choose(harness.deps.db, USER, "ru")
    yield harness
    await stop_harness(harness)


async def test_wallet_notices_reach_the_customer_in_their_language_not_the_admins(
        bot: BotHarness) -> None:
    await bot.send(f"/credit {USER} 1234.5 bank transfer", user=ADMIN)
    assert bot.last(ADMIN).plain == (f"✅ Wallet of {USER} credited: 1,234.50 USD. Balance now "
                                     "1,234.50 USD. The customer has been told.")
    [queued] = await outbox.pending_notifications(bot.deps.db)
    assert queued.text == ("💰 <b>1,234.50 USD</b> added to your wallet (bank transfer). "
                           "Balance: <b>1,234.50 USD</b>.")  # the record keeps the English
    await drain(bot)
    # Russian writes 1 234,50 (a no-break space groups the digits).
    assert bot.last().plain == ("«💰 1\u00a0234,50 USD added to your wallet (bank transfer). "
                                "Balance: 1\u00a0234,50 USD.»")
    await bot.send(f"/debit {USER} 0.5", user=ADMIN)
    await drain(bot)
    assert bot.last().plain == ("«➖ 0,50 USD taken from your wallet. Balance: 1\u00a0234,00 "
                                "USD.»")


async def test_a_refund_is_told_in_the_customers_language_with_the_panels_words_as_they_are(
        bot: BotHarness) -> None:
    await bot.send(f"/credit {USER} 10", user=ADMIN)
    order = await buy(bot)
    assert order.panel_order_id is not None
    bot.sandbox.set_status(order.panel_order_id, "Canceled")
    await poll_orders(bot.deps)
    await drain(bot)
    refund = [t for t in bot.texts() if "refunded to your wallet" in t]
    # The service's name as the panel writes it; a status the bot knows in the reader's words.
    assert refund == [f"«↩️ 1,17 USD refunded to your wallet: «order {order.panel_order_id} · "
                      "Instagram Followers was «Canceled»». Balance: 10,00 USD.»"]


async def test_the_customers_wallet_page_is_in_their_language(bot: BotHarness) -> None:
    await bot.send(f"/credit {USER} 10 bank", user=ADMIN)
    await bot.send("/wallet")
    page = bot.last().plain
    assert page.startswith("💰 «Your wallet»\n«Balance: 10,00 USD»\n\n«Entries, newest first "
                           "(page 1/1):»\n")
    assert " · «Top-up» · bank · +10,00 USD → 10,00 USD" in page
    assert "«To top up your wallet, ask an admin of this shop" in page
    assert "«🏠 Menu»" in bot.buttons()


async def test_admin_alerts_are_rendered_in_each_admins_language_when_sent(
        bot: BotHarness) -> None:
    bot.sandbox.add_key(DEMO_KEY, Decimal("40"))
    assert await shop.check_panel_balance(bot.deps) is True
    await bot.deps.languages.choose(bot.deps.db, ADMIN, "ru")  # chosen after it was queued
    await drain(bot)
    assert bot.last(ADMIN).plain == ("«⚠️ Low panel balance: 40,00 USD, below LOW_BALANCE_ALERT "
                                     "(50,00 USD). Top it up, or the panel will refuse the "
                                     "shop's orders.»")


async def test_a_panel_refusal_reaches_the_admins_in_their_language_with_the_panels_words(
        bot: BotHarness) -> None:
    """The customer reads "ru"; the admins, English: the alert about the customer's refused
    order carries the panel's own words, not the customer's translation of them."""
    await bot.send(f"/credit {USER} 10", user=ADMIN)
    bot.sandbox.fail_next("add", "error:Not enough funds on balance")
    order = await buy(bot)
    assert order.state == "failed"
    await drain(bot)
    [alert] = [t for t in bot.texts(ADMIN) if "refused a customer's order" in t]
    assert "Not enough funds on balance" in alert and "«" not in alert
    fresh = await orders.get_order(bot.deps.db, order.id)
    assert fresh is not None and fresh.error is not None
    await bot.send("/orders", user=ADMIN)  # the admin reads the order's note in English
    await bot.press_data(f"oc:{order.id}", user=ADMIN)
    assert "The panel says: Not enough funds on balance" in bot.last(ADMIN).plain
    assert "«" not in bot.last(ADMIN).plain


async def test_a_wallet_error_is_shown_in_the_language_of_whoever_reads_it(
        guillemets: None) -> None:
    error = wallet.NotEnough(Decimal("1"), Decimal("2.5"), "USD")
    assert str(error) == "The wallet holds 1.00 USD, less than 2.50 USD."
    with i18n.speaking("ru"):
        assert str(error) == "«The wallet holds 1,00 USD, less than 2,50 USD.»"
