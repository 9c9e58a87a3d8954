"""Stars top-ups in the customer's language: the invoice (clipped to Telegram's limits however
long the translation), the pre-checkout refusal, and the refund notice rendered in the
customer's language when it is sent, whatever the admin who refunded speaks.

A small catalog for a stand-in language is written for these tests (the real catalogs are the
translators' work)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

from tests.conftest import ADMIN, USER, BotHarness, speak_catalog_files, stop_harness
from tests.test_payments import charge_of, check_out, invoice, pay, stars_shop
from tests.test_shop import drain

LANGUAGE = "ru"
TITLE = "Пополнение кошелька через Telegram Stars"  # longer than Telegram's 32 characters
DESCRIPTION = ("{amount} зачисляется на ваш кошелёк в этом магазине: {stars} ⭐ по курсу {rate}. "
               "Заказы оплачиваются из кошелька; см. /terms. ") * 3  # longer than 255
TRANSLATIONS = {
    "Wallet top-up": TITLE,
    "{amount} added to your wallet in this shop: {stars} ⭐ at {rate}. Orders are paid from the "
    "wallet; see /terms.": DESCRIPTION,
    "{rate} ⭐ per {currency}": "{rate} ⭐ за 1 {currency}",
    "This invoice's price is not right: ask for a new one with /topup.":
        "Цена этого счёта неверна: запросите новый через /topup.",
    "↩️ Your Telegram Stars payment of <b>{stars} ⭐</b> was refunded: {amount} was taken from "
    "your wallet. Balance: <b>{balance}</b>.":
        "↩️ Ваш платёж <b>{stars} ⭐</b> в Telegram Stars возвращён: с кошелька списано "
        "{amount}. Баланс: <b>{balance}</b>.",
}


@pytest.fixture
def stand_in_language(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot speaks LANGUAGE too, from a catalog holding TRANSLATIONS."""
    folder = tmp_path / "locales"
    folder.mkdir()
    catalog = Catalog(locale=LANGUAGE)
    for source, translation in TRANSLATIONS.items():
        catalog.add(source, translation)
    with (folder / f"{LANGUAGE}.po").open("wb") as file:
        write_po(file, catalog)
    speak_catalog_files(monkeypatch, folder)


@pytest.fixture
async def bot(tmp_path: Path, stand_in_language: None) -> AsyncIterator[BotHarness]:
    harness = await stars_shop(tmp_path)
    await harness.deps.languages.choose(harness.deps.db, USER, LANGUAGE)
    yield harness
    await stop_harness(harness)


async def test_the_invoice_is_in_the_customers_language_within_telegrams_limits(
        bot: BotHarness) -> None:
    sent = (await invoice(bot, "10")).extra["invoice"]
    title, description = sent["title"], sent["description"]
    assert 1 <= len(title) <= 32 and TITLE.startswith(title.rstrip("…"))
    assert 1 <= len(description) <= 255
    assert description.startswith("10,00 USD зачисляется на ваш кошелёк в этом магазине: 500 ⭐ "
                                  "по курсу 50 ⭐ за 1 USD.")


async def test_the_pre_checkout_refusal_is_in_the_customers_language(bot: BotHarness) -> None:
    _, answer = await check_out(bot, await invoice(bot, "10"), total_amount=1)
    assert answer == {**answer, "ok": False,
                      "error_message": "Цена этого счёта неверна: запросите новый через /topup."}


async def test_a_refund_is_told_to_the_customer_in_their_language_not_the_admins(
        bot: BotHarness) -> None:
    paid = await pay(bot, await invoice(bot, "10"))
    await bot.send(f"/refund {USER} {charge_of(paid)}", user=ADMIN)
    assert bot.last(ADMIN).plain.startswith("✅ Refunded 500 ⭐ (10.00 USD)")  # the admin's
    await drain(bot)
    assert ("↩️ Ваш платёж 500 ⭐ в Telegram Stars возвращён: с кошелька списано 10,00 USD. "
            "Баланс: 0,00 USD.") in bot.texts()
