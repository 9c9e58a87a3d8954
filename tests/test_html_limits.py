"""Every clipped reply and every notification is valid HTML within 4,096 characters, whatever the
user or the panel put in it: clipped on the text, then escaped; a message cut never inside a tag
or an entity."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.order_views import pack_lines
from bot.panel.models import SANDBOX_URL, OrderStatus
from bot.panel.sandbox import DEFAULT_SERVICES, DEMO_KEY, SandboxPanel
from bot.services import notices
from bot.standin.botapi import parse_html
from bot.text import ELLIPSIS, MAX_TEXT, esc, esc_short, fit, shorten, units
from storage import orders, users
from tests.conftest import USER, BotHarness, start_harness, stop_harness
from tests.test_tracker import cycle, pushes

NASTY = "<b>&amp; <i>Fish & Chips</i> </b> <a href='x'>"
HUGE_NAME = ("Followers " + NASTY) * 200  # about 8,000 characters, every one to be escaped
HUGE_STATUS = "In <progress> & " * 300


def plain(message: str) -> str:
    """The text Telegram shows for an HTML message (raises on HTML Telegram refuses)."""
    return parse_html(message)[0]


# --- the helper itself ------------------------------------------------------------------------

texts = st.text(alphabet=st.sampled_from([*"ab <>&;\n", "😀", "é", "#", "1"]), max_size=40)
pieces = st.one_of(
    texts.map(esc),
    st.tuples(st.sampled_from(["b", "i", "u", "s", "code", "tg-spoiler"]), texts).map(
        lambda p: f"<{p[0]}>{esc(p[1])}</{p[0]}>"),
    texts.map(lambda t: f'<a href="https://x.com/?a=1&amp;b=2">{esc(t)}</a>'),
    texts.map(lambda t: f"<b>bold <i>{esc(t)}</i> still</b>"),
    texts.map(lambda t: f'<pre><code class="language-python">{esc(t)}</code></pre>'),
    st.just("\n"),
)


@given(st.lists(pieces, max_size=30), st.integers(min_value=3, max_value=120))
def test_fit_cuts_on_the_text_and_never_inside_a_tag_or_an_entity(parts: list[str],
                                                                    limit: int) -> None:
    message = "".join(parts)
    fitted = fit(message, limit)
    shown = plain(fitted)  # valid HTML, every tag closed
    assert units(shown) <= limit
    if units(plain(message)) <= limit:
        assert fitted == message
    else:
        assert shown.endswith(ELLIPSIS)
        assert plain(message).startswith(shown.removesuffix(ELLIPSIS).rstrip())


def test_fit_prefers_a_line_break_in_the_second_half() -> None:
    message = "<b>Title</b>\n" + "\n".join(f"line {i} &amp; more" for i in range(400))
    fitted = fit(message)
    assert fitted.endswith("\n…") and units(plain(fitted)) <= MAX_TEXT
    assert plain(fitted).splitlines()[-2].endswith("& more")  # whole lines kept


def test_clip_then_escape() -> None:
    assert esc_short("a & b" * 10, 5) == "a &amp;…"
    assert shorten("short", 5) == "short"
    assert esc("<&>") == "&lt;&amp;&gt;"


@pytest.mark.parametrize("line", [esc(HUGE_NAME), "<b>" + esc(HUGE_NAME) + "</b>",
                                  "<code>1</code> · " + "&amp;" * 5000])
def test_an_overlong_line_is_cut_into_valid_html(line: str) -> None:
    for message in pack_lines(["first", line, "last"]):
        assert units(plain(message)) <= MAX_TEXT


# --- through the bot: a panel with a huge, HTML-laden service -------------------------------------

HUGE = {"service": 777, "name": HUGE_NAME, "type": "Default", "category": "Cat " + NASTY * 40,
        "rate": "0.50", "min": "10", "max": "100000", "refill": True, "cancel": True,
        "desc": ("Read me & <weep> " * 400)}


@pytest.fixture
async def huge_bot(tmp_path: Path) -> BotHarness:
    sandbox = SandboxPanel(keys={DEMO_KEY: Decimal("100")}, speed=60,
                           services=[*DEFAULT_SERVICES, HUGE])
    harness = await start_harness(tmp_path, sandbox=sandbox)
    yield harness  # type: ignore[misc]
    await stop_harness(harness)


def check_all_messages(bot: BotHarness) -> None:
    """Every message the bot showed is valid HTML within the limit (the fake refuses the rest,
    so this is also what the user saw)."""
    for message in bot.world.bot_messages(USER):
        assert units(message.plain) <= MAX_TEXT
        if message.parse_mode == "HTML":
            plain(message.html)


async def test_a_huge_service_name_is_shown_everywhere(huge_bot: BotHarness) -> None:
    bot = huge_bot
    await bot.send("/services Followers")  # the search lists it
    assert "#777 Followers" in bot.texts()[-1]
    await bot.press_data("svc:777")  # its card, with the long description
    card = bot.last().plain
    assert card.startswith("#777 Followers <b>&amp;") and "Read me & <weep>" in card
    await bot.press("Order this")
    await bot.send("instagram.com/me")
    await bot.send("1000")
    await bot.press("Skip")
    assert "Check the order" in bot.last().plain
    await bot.press("Confirm")
    placed = bot.last().plain
    assert "placed" in placed
    await bot.send("/orders")
    assert "Followers <b>&amp;" in bot.last().plain
    await bot.press("Followers")  # the order's card
    assert bot.last().plain.startswith("🧾 Order ")
    check_all_messages(bot)


async def test_notifications_with_huge_panel_texts_are_delivered(huge_bot: BotHarness) -> None:
    bot = huge_bot
    db = bot.deps.db
    await users.upsert_user(db, telegram_id=USER, name="User")
    panel_id = await bot.deps.panel.add(DEMO_KEY, 777, {"link": "https://x.com/a",
                                                        "quantity": "100"})
    local = await orders.save_draft(
        db, panel=SANDBOX_URL, owner_id=USER, account="operator", service_id=777,
        service_name=HUGE_NAME,
        service_type="Default", rate=Decimal("0.5"), currency="USD", can_refill=True,
        can_cancel=True, fields={"link": "https://x.com/a", "quantity": "100"}, quantity=100,
        cost=Decimal("0.05"))
    assert await orders.claim_order(db, local, owner_id=USER)
    assert await orders.mark_placed(db, local, panel_order_id=panel_id)
    bot.sandbox.set_status(panel_id, "Completed")
    await cycle(bot)
    got = pushes(bot)
    assert len(got) == 1 and got[0].startswith(f"Order {panel_id} · Followers <b>&amp;")
    assert "Completed" in got[0]
    check_all_messages(bot)
    # The other notices, with a status as long as a panel may send.
    order = await orders.get_order(db, local)
    assert order is not None
    texts = [notices.describe_change(order, HUGE_STATUS, OrderStatus(HUGE_STATUS,
                                                                     currency=HUGE_STATUS))]
    lost = notices.lost_notice(order, None)
    assert lost is not None
    texts.append(lost.text)
    for text in texts:
        assert units(plain(text)) <= MAX_TEXT
        await bot.app.bot.send_message(USER, text, parse_mode="HTML")
