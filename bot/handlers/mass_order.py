"""/massorder: many orders at once, from lines of `service id | link | quantity` or a .txt file.

The chat side only: the lines are checked, stored, claimed and sent by
`bot.services.mass_order`; this module reads the messages, renders the summary, the progress
and each line's result.

    /massorder            → "send the lines" (or lines right after the command)
    lines / a .txt file   → the summary: valid lines and their total cost, the balance, the
                            invalid lines with reasons; Confirm / Edit / Cancel
    more lines            → added (Telegram splits a long paste into several messages): a new
                            summary of all of them replaces the previous one
    Confirm               → a progress message, edited at most once a second, then each line's
                            result (as a file when it is long)

Buttons name the batch (`mo:<action>:<batch id>`) and the database decides what they may do,
so an old summary, a double tap or a restart never sends a line twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from telegram import Bot, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot.callbacks import int_arg, pack, unpack
from bot.config import Settings
from bot.deps import DEPS_KEY, BotApp, BotContext, Deps
from bot.handlers.catalog import index_for
from bot.handlers.common import (
    answer,
    esc,
    remember_user,
    reply,
    require_account,
    show,
    within_rate_limit,
)
from bot.handlers.conversations import ExpiringConversation
from bot.i18n import L_, N_, _, ngettext, number
from bot.keyboards import Button, Keyboard, cut
from bot.money import format_money
from bot.panel.models import Balance
from bot.services import mass_order, notices, pricing
from bot.services.accounts import Account
from bot.services.mass_order import BadLine, BatchReport, LineResult, MassLine, Parsed
from bot.text import fit as fit_html
from storage import outbox

log = logging.getLogger(__name__)

WAITING = 1
END = ConversationHandler.END
KEY = "mass_order"
MAX_FILE_BYTES = 512 * 1024
BUDGET = 3900  # characters of a summary or result message (Telegram's limit is 4096)

# Catalog texts (`N_`), translated where they are said.
PROMPT = N_(
    "📦 <b>Mass order</b>\n"
    "Send up to {max_lines} lines, one order a line:\n"
    "<code>service id | link | quantity</code>\n"
    "for example\n"
    "<code>1 | https://instagram.com/yourpage | 1000\n"
    "2 | https://instagram.com/p/abc | 500</code>\n"
    "A package is <code>service id | link</code>. Tabs work as separators too. Long lists: "
    "send several messages, or a .txt file with the same lines.\n"
    "Services that need more than a link and a quantity are ordered with /order &lt;id&gt;. "
    "/cancel to stop."
)
CANCELLED = N_("Mass order cancelled: nothing was sent.")
NOT_LINES = N_("Send the lines as text, or a .txt file (or /cancel).")
NOT_TXT = N_("Send a .txt file with one line per order, or paste the lines (or /cancel).")
NOT_UTF8 = N_("I could not read that file as text (UTF-8). Save it as plain text and send it "
              "again.")
STOPPED = N_("OK, I stopped waiting for the lines; nothing was sent. Send that command again.")
STOPPED_BUTTON = N_("I stopped waiting for the mass order's lines. Tap again.")
UNREACHABLE = N_("The panel could not be reached, so I cannot check the lines against its "
                 "services. Send them again in a minute.")
#: What a line that was not placed became, in the results file (by `LineResult.kind`).
KIND_WORDS = {
    # i18n: a mass order line's outcome in the results file ("refused: <reason>")
    "refused": N_("refused"),
    # i18n: a mass order line's outcome in the results file ("unknown: <reason>")
    "unknown": N_("unknown"),
}


def prompt() -> str:
    """The request for the lines (HTML)."""
    return _(PROMPT).format(max_lines=mass_order.MAX_LINES)


# --- the accumulated lines of this chat -------------------------------------------------------


def _key(update: Update) -> str:
    """Where this chat's lines live in the user's user_data."""
    chat = update.effective_chat
    return f"{KEY}:{chat.id if chat is not None else 0}"


def _collected(update: Update, context: BotContext) -> dict[str, Any]:
    """The lines sent so far in this chat and the summary showing them (created empty)."""
    assert context.user_data is not None
    data = context.user_data.get(_key(update))
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        data = context.user_data[_key(update)] = {"text": "", "batch": None, "rev": None,
                                                  "msg": None}
    return data


def _forget(update: Update, context: BotContext) -> None:
    """Drops this chat's lines."""
    if context.user_data is not None:
        context.user_data.pop(_key(update), None)


# --- rendering ------------------------------------------------------------------------------


def good_line(line: MassLine, currency: str) -> str:
    """A valid line on the summary (HTML)."""
    quantity = line.values.get("quantity")
    # i18n: the start of a line of the mass order summary ("Line 3 · #12 Followers · …")
    parts = [_("Line {number}").format(number=line.number),
             f"#{line.service.service} {esc(cut(line.service.name, 40))}",
             esc(cut(line.values["link"], 60))]
    if quantity:
        parts.append(number(int(quantity)))
    parts.append(esc(format_money(line.cost, currency)))
    return " · ".join(parts)


def bad_line(bad: BadLine) -> str:
    """An invalid line and its reason (HTML)."""
    # i18n: a line of the mass order that will not be sent, and why
    said = _("Line {number}: {reason}").format(number=bad.number, reason=esc(bad.reason))
    return f"{said}\n    <code>{esc(bad.text)}</code>"


def fit(head: Sequence[str], sections: Sequence[tuple[str, Sequence[str]]], tail: Sequence[str],
        more: str) -> tuple[str, bool]:
    """Head, then each section's lines while the message stays within BUDGET, then the tail;
    whether anything was left out (each cut section says how much, followed by `more`, a
    translated text)."""
    used = sum(len(line) + 1 for line in (*head, *tail)) + 200
    out = list(head)
    cut_any = False
    for title, lines in sections:
        if not lines:
            continue
        out += ["", title]
        used += len(title) + 2
        for shown, line in enumerate(lines):
            if used + len(line) + 1 > BUDGET:
                left = len(lines) - shown
                # i18n: after the lines a message could hold; {where} says where the rest are
                out.append(ngettext("… and {n} more {where}", "… and {n} more {where}", left)
                           .format(n=number(left), where=more))
                used += 60
                cut_any = True
                break
            out.append(line)
            used += len(line) + 1
    return "\n".join([*out, "", *tail] if tail else out), cut_any


def money_line(total_text: str, balance: Balance | None, currency: str,
               short: bool) -> list[str]:
    """The total and the balance, with a warning when the balance is short (HTML)."""
    if balance is None:
        return [_("<b>Total: {total}</b> · Balance: unavailable right now")
                .format(total=esc(total_text))]
    shown = esc(format_money(balance.balance, balance.currency or currency))
    lines = [_("<b>Total: {total}</b> · Balance: {balance}").format(total=esc(total_text),
                                                                     balance=shown)]
    if short:
        lines.append(_("⚠️ The balance is not enough for all of them: the orders it cannot pay "
                       "for are not placed. Top it up first, or send fewer lines."))
    return lines


def summary(parsed: Parsed, currency: str, balance: Balance | None) -> tuple[str, bool]:
    """The summary (HTML) and whether lines were left out of it (then a file has them all)."""
    valid, total_lines = len(parsed.lines), len(parsed.lines) + len(parsed.bad)
    head = [ngettext("📦 <b>Mass order: {valid} of {n} line valid</b>",
                     "📦 <b>Mass order: {valid} of {n} lines valid</b>", total_lines)
            .format(valid=valid, n=total_lines)]
    if valid:
        total = parsed.total
        head += money_line(format_money(total, currency), balance, currency,
                           balance is not None and balance.balance < total)
    bad = len(parsed.bad)
    sections = [
        (ngettext("❌ <b>{n} line will not be sent:</b>", "❌ <b>{n} lines will not be sent:</b>",
                  bad).format(n=bad), [bad_line(b) for b in parsed.bad]),
        (_("✅ <b>To send ({count}):</b>").format(count=valid),
         [good_line(line, currency) for line in parsed.lines]),
    ]
    if valid:
        tail = [ngettext("Tap <b>Confirm</b> to place the {n} order, or send more lines to add "
                         "them.",
                         "Tap <b>Confirm</b> to place the {n} orders, or send more lines to add "
                         "them.", valid).format(n=valid)]
    else:
        tail = [_("Nothing can be sent yet: send the lines again (corrected), or /cancel.")]
    # i18n: ends "… and 12 more": where the lines the summary cannot hold are
    return fit(head, sections, tail, _("(all of them are in the file above)"))


def summary_file(parsed: Parsed, currency: str) -> bytes:
    """Every line of the summary as plain text, for when the message cannot hold them."""
    valid = len(parsed.lines)
    # i18n: the first line of the mass order summary file (plain text)
    out = [ngettext("Mass order: {n} valid line(s), total {total}",
                    "Mass order: {n} valid line(s), total {total}", valid)
           .format(n=valid, total=format_money(parsed.total, currency)), ""]
    if parsed.bad:
        out.append(_("Will not be sent ({count}):").format(count=len(parsed.bad)))
        # i18n: a line of the mass order summary file (plain text): what was sent, and why not
        out += [_("line {number}: {line}  --  {reason}").format(number=b.number, line=b.text,
                                                                reason=b.reason)
                for b in parsed.bad]
        out.append("")
    out.append(_("To send ({count}):").format(count=valid))
    for line in parsed.lines:
        parts = [str(line.service.service), line.values["link"]]
        if line.values.get("quantity"):
            parts.append(line.values["quantity"])
        parts.append(f"{line.service.name}, {format_money(line.cost, currency)}")
        # i18n: a line of the mass order summary file (plain text): "line 3: 12 | link | …"
        out.append(_("line {number}: {line}").format(number=line.number,
                                                      line=" | ".join(parts)))
    return ("\n".join(out) + "\n").encode()


def summary_markup(batch_id: int, rev: int, valid: int) -> Keyboard:
    """Confirm / Edit / Cancel of a summary (naming the batch and the revision shown)."""
    return Keyboard([
        [Button(ngettext("✅ Confirm: place {n} order",
                         "✅ Confirm: place {n} orders", valid).format(n=valid),
                callback_data=pack("mo", "go", batch_id, rev))],
        # i18n: a button under the mass order summary
        [Button(_("✏️ Edit"), callback_data=pack("mo", "ed", batch_id, rev)),
         # i18n: a button under the mass order summary
         Button(_("✖ Cancel"), callback_data=pack("mo", "x", batch_id, rev))],
    ])


def progress_text(batch_id: int, done: int, total: int) -> str:
    """The progress message."""
    return _("⏳ Mass order #{batch}: sending {done}/{total}…").format(batch=batch_id, done=done,
                                                                       total=total)


def result_line(result: LineResult) -> str:
    """One line's outcome (HTML)."""
    # i18n: the start of a line of a mass order's results ("Line 3 · #12 · link · ✅ order 77")
    line = _("Line {number}").format(number=result.number)
    head = f"{line} · #{result.service_id} · {esc(cut(result.link, 50))} · "
    if result.kind == "placed":
        note = f" ({esc(result.note)})" if result.note else ""
        # i18n: a mass order line's outcome: the panel's order id
        placed = _("✅ order <code>{order}</code>").format(order=result.panel_order_id)
        return f"{head}{placed}{note}"
    if result.kind == "refused":
        # i18n: a mass order line's outcome
        why = result.note or _("refused")
        return f"{head}❌ {esc(why)}"
    if result.kind == "unknown":
        # i18n: a mass order line's outcome
        why = result.note or _("outcome unknown")
        return f"{head}⚠️ {esc(why)}"
    # i18n: a mass order line's outcome
    not_sent = _("⏸ not sent")
    return f"{head}{not_sent}"


def report_head(report: BatchReport) -> list[str]:
    """The counts of a batch's outcome (HTML)."""
    placed, refused = report.count("placed"), report.count("refused")
    unknown, left = report.count("unknown"), report.count("not_sent")
    total = len(report.results)
    icon = "✅" if placed == total else "⚠️"
    counted = ngettext("<b>Mass order #{batch}: {placed} of {n} placed</b>",
                       "<b>Mass order #{batch}: {placed} of {n} placed</b>", total).format(
        batch=report.batch_id, placed=placed, n=total)
    head = [f"{icon} {counted}"]
    # How many lines ended each other way, in a list ("2 refused, 1 not sent.").
    parts: list[str] = []
    if refused:
        # i18n: how many lines of a mass order were refused, in a list ("2 refused, 1 not sent.")
        parts.append(ngettext("{n} refused", "{n} refused", refused).format(n=refused))
    if unknown:
        # i18n: how many lines of a mass order have an unknown outcome, in a list
        parts.append(ngettext("{n} outcome unknown", "{n} outcome unknown", unknown)
                     .format(n=unknown))
    if left:
        # i18n: how many lines of a mass order were not sent, in a list ("2 refused, 1 not sent.")
        parts.append(ngettext("{n} not sent", "{n} not sent", left).format(n=left))
    if parts:
        head.append(", ".join(parts) + ".")
    if report.expired:
        head.append(ngettext("{n} line(s) expired before they were sent.",
                             "{n} line(s) expired before they were sent.", report.expired)
                    .format(n=report.expired))
    if placed:
        head.append(_("The orders are in /orders; I'll message you as they change."))
    return head


def report_markup(report: BatchReport) -> Keyboard:
    """Send the rest (when the batch was interrupted) and My orders."""
    rows: list[list[Button]] = []
    left = report.count("not_sent")
    if left and report.state == "interrupted":
        rows.append([Button(
            # i18n: a button sending the lines of a mass order that were not sent
            ngettext("▶ Send the {n} not sent", "▶ Send the {n} not sent", left).format(n=left),
            callback_data=pack("mo", "go", report.batch_id, report.rev))])
    # i18n: a button under a mass order's results
    rows.append([Button(_("📦 My orders"), callback_data=pack("ol", 0))])
    return Keyboard(rows)


def report_text(report: BatchReport) -> tuple[str, bool]:
    """Every line's outcome when it fits, else the lines that were not placed; and whether a
    file must carry the rest."""
    lines = [result_line(r) for r in report.results]
    full, was_cut = fit(report_head(report), [(_("<b>Each line:</b>"), lines)], [], "")
    if not was_cut:
        return full, False
    problems = [result_line(r) for r in report.results if r.kind != "placed"]
    text, _cut = fit(report_head(report), [(_("<b>Not placed:</b>"), problems)],
                     [_("Every line's result is in the file below.")],
                     # i18n: ends "… and 12 more": where the lines not shown are
                     _("(in the file below)"))
    return text, True


def report_file(report: BatchReport) -> bytes:
    """Every line's outcome as plain text."""
    out = [_("Mass order #{batch}").format(batch=report.batch_id), ""]
    for r in report.results:
        if r.kind == "placed":
            # i18n: a mass order line's outcome in the results file (plain text)
            what = (_("placed: order {order}").format(order=r.panel_order_id)
                    + (f" ({r.note})" if r.note else ""))
        elif r.kind == "not_sent":
            # i18n: a mass order line's outcome in the results file (plain text)
            what = _("not sent")
        else:
            what = f"{_(KIND_WORDS[r.kind])}: {r.note or ''}"
        # i18n: the start of a line of the mass order results file ("line 3 | 12 | link | …")
        line = _("line {number}").format(number=r.number)
        out.append(f"{line} | {r.service_id} | {r.link} | "
                   f"{r.quantity if r.quantity is not None else ''} | {what}")
    return ("\n".join(out) + "\n").encode()


async def deliver(bot: Bot, chat_id: int, message_id: int | None, report: BatchReport) -> None:
    """The batch's final message (the progress message, edited) and, when long, a file."""
    text, with_file = report_text(report)
    markup = report_markup(report).ptb()
    if message_id is not None:
        try:
            await bot.edit_message_text(fit_html(text), chat_id, message_id,
                                        parse_mode=ParseMode.HTML, reply_markup=markup,
                                        disable_web_page_preview=True)
            message_id = None
        except BadRequest as exc:
            log.info("Could not edit the progress message (%s); sending the result", exc)
    if message_id is None and not with_file:
        return
    if message_id is not None:
        await bot.send_message(chat_id, fit_html(text), parse_mode=ParseMode.HTML,
                               reply_markup=markup, disable_web_page_preview=True)
    if with_file:
        await bot.send_document(chat_id, report_file(report),
                                filename=f"mass-order-{report.batch_id}-results.txt",
                                caption=_("Mass order #{batch}: every line's result")
                                .format(batch=report.batch_id))


# --- handlers: the lines --------------------------------------------------------------------


async def summary_balance(update: Update, context: BotContext,
                          account: Account) -> Balance | None:
    """The balance for the summary, unless the user is over the rate limit (then unknown)."""
    user = update.effective_user
    if user is None or context.deps.limiter.try_acquire(user.id) > 0:
        return None
    return await mass_order.funds(context.deps, account, user.id)


async def take(update: Update, context: BotContext, text: str) -> int | None:
    """New lines: added to those sent so far, all checked, and a summary of them replaces the
    previous one (whose batch is dropped: nothing of it was sent)."""
    user, chat = update.effective_user, update.effective_chat
    account = await require_account(update, context)
    if user is None or chat is None or account is None:
        return END
    await remember_user(update, context)
    index = await index_for(update, context, account, None, _(UNREACHABLE))
    if index is None:
        return WAITING
    data = _collected(update, context)
    combined = f"{data['text']}\n{text}" if data["text"] else text
    prices = await pricing.current(context.deps) if account.customer else None
    parsed = mass_order.parse_lines(combined, index, prices)
    if parsed.too_many:
        kept = (len(mass_order.parse_lines(data["text"], index, prices).lines)
                if data["text"] else 0)
        too_many = ngettext(
            "That makes {n} line: a mass order takes at most {max_lines}. Those lines were not "
            "added (the summary above still has {kept}). Send the rest as another mass order.",
            "That makes {n} lines: a mass order takes at most {max_lines}. Those lines were not "
            "added (the summary above still has {kept}). Send the rest as another mass order.",
            parsed.too_many) if kept else ngettext(
            "That makes {n} line: a mass order takes at most {max_lines}. Those lines were not "
            "added. Send the rest as another mass order.",
            "That makes {n} lines: a mass order takes at most {max_lines}. Those lines were not "
            "added. Send the rest as another mass order.", parsed.too_many)
        await reply(update, too_many.format(n=number(parsed.too_many),
                                            max_lines=mass_order.MAX_LINES, kept=kept))
        return WAITING
    deps = context.deps
    old_batch, old_msg = data.get("batch"), data.get("msg")
    old_batch = old_batch if isinstance(old_batch, int) else None
    batch_id: int | None = None
    rev = 0
    if parsed.lines:
        batch_id, rev = await mass_order.prepare(deps, account, user.id, chat.id, parsed.lines,
                                                 index.currency, batch_id=old_batch)
    elif old_batch is not None:
        await mass_order.discard(deps, user.id, old_batch)
    data.update(text=combined, batch=batch_id, rev=rev)
    balance = await summary_balance(update, context, account) if parsed.lines else None
    shown, was_cut = summary(parsed, index.currency, balance)
    if was_cut:
        await context.bot.send_document(chat.id, summary_file(parsed, index.currency),
                                        filename=f"mass-order-{batch_id or 'lines'}.txt",
                                        caption=_("Every line of this mass order"))
    markup = summary_markup(batch_id, rev, len(parsed.lines)) if batch_id is not None else None
    data["msg"] = await reply(update, shown, markup)
    if isinstance(old_msg, int):
        try:
            await context.bot.edit_message_reply_markup(chat.id, old_msg, reply_markup=None)
        except BadRequest:
            pass  # gone, or had no buttons
    return WAITING


async def mass_order_command(update: Update, context: BotContext) -> int | None:
    """/massorder: asks for the lines (or takes those sent with the command)."""
    message = update.effective_message
    if await require_account(update, context) is None:
        return END
    _forget(update, context)
    words = (message.text or "").split(maxsplit=1) if message is not None else []
    if len(words) > 1:
        return await take(update, context, words[1])
    await reply(update, prompt())
    return WAITING


async def take_text(update: Update, context: BotContext) -> int | None:
    """Lines typed or pasted."""
    message = update.effective_message
    return await take(update, context, message.text or "" if message is not None else "")


async def take_file(update: Update, context: BotContext) -> int | None:
    """A .txt file of lines."""
    message = update.effective_message
    document = message.document if message is not None else None
    if document is None:
        return await not_lines(update, context)
    name = (document.file_name or "").lower()
    if not name.endswith(".txt") and document.mime_type != "text/plain":
        await reply(update, _(NOT_TXT))
        return WAITING
    if document.file_size is not None and document.file_size > MAX_FILE_BYTES:
        await reply(update, _("That file is too big: at most {size} KB ({max_lines} lines).")
                    .format(size=MAX_FILE_BYTES // 1024, max_lines=mass_order.MAX_LINES))
        return WAITING
    try:
        file = await document.get_file()
        data = bytes(await file.download_as_bytearray())
    except TelegramError as exc:
        log.warning("Could not download a mass order file: %s", exc)
        await reply(update, _("I could not download that file. Please send it again."))
        return WAITING
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        await reply(update, _(NOT_UTF8))
        return WAITING
    return await take(update, context, text)


async def not_lines(update: Update, context: BotContext) -> int | None:
    """Anything else while lines are awaited (a photo, a sticker…)."""
    await reply(update, _(NOT_LINES))
    return WAITING


def batch_arg(update: Update) -> tuple[int, int] | None:
    """The batch and revision a button names (`mo:<action>:<batch>:<rev>`)."""
    query = update.callback_query
    parts = unpack(query.data if query else None)
    batch_id, rev = int_arg(parts, 2), int_arg(parts, 3)
    return None if batch_id is None or rev is None else (batch_id, rev)


async def edit(update: Update, context: BotContext) -> int | None:
    """Edit on a summary: its batch is dropped and the lines are asked for again."""
    query, user, named = update.callback_query, update.effective_user, batch_arg(update)
    if query is None or user is None or named is None:
        return None
    if not await mass_order.discard(context.deps, user.id, *named):
        await answer(query, await mass_order.refusal(context.deps, user.id, *named), alert=True)
        return None
    await answer(query)
    _forget(update, context)
    await show(update, _("✏️ This summary was dropped: nothing of it was sent."))
    await reply(update, prompt())
    return WAITING


async def cancel_batch(update: Update, context: BotContext) -> int:
    """Cancel on a summary: nothing is sent."""
    query, user, named = update.callback_query, update.effective_user, batch_arg(update)
    if query is None or user is None or named is None:
        return END
    if not await mass_order.discard(context.deps, user.id, *named):
        await answer(query, await mass_order.refusal(context.deps, user.id, *named), alert=True)
        return END
    await answer(query)
    _forget(update, context)
    await show(update, _(CANCELLED))
    return END


async def cancel_command(update: Update, context: BotContext) -> int:
    """/cancel while lines are awaited: the summary shown (if any) is dropped."""
    user = update.effective_user
    batch_id = _collected(update, context).get("batch")
    if user is not None and isinstance(batch_id, int):
        await mass_order.discard(context.deps, user.id, batch_id)
    _forget(update, context)
    await reply(update, _(CANCELLED))
    return END


async def stop_for_command(update: Update, context: BotContext) -> int:
    """Another command while lines are awaited: stop waiting (a summary shown stays valid)."""
    _forget(update, context)
    await reply(update, _(STOPPED))
    return END


async def stop_for_button(update: Update, context: BotContext) -> int:
    """Another button while lines are awaited: stop waiting; the tap is to be repeated."""
    _forget(update, context)
    await answer(update.callback_query, _(STOPPED_BUTTON), alert=True)
    return END


# --- handlers: sending ----------------------------------------------------------------------


async def send(update: Update, context: BotContext) -> int:
    """Confirm on a summary, or "Send the rest" after a restart: the batch is claimed once and
    sent in the background, with a progress message."""
    query, user, chat = update.callback_query, update.effective_user, update.effective_chat
    named = batch_arg(update)
    if query is None or user is None or chat is None or named is None:
        return END
    account = await require_account(update, context)
    if account is None or not await within_rate_limit(update, context):
        return END
    deps = context.deps
    batch_id, rev = named
    started = await mass_order.start(deps, account, user.id, batch_id, rev)
    if isinstance(started, mass_order.NotStarted):
        await answer(query, started.reason, alert=True)
        return END
    # i18n: the answer to the Confirm button of a mass order
    await answer(query, _("Sending…"))
    collected = (context.user_data or {}).get(_key(update))
    if isinstance(collected, dict) and collected.get("batch") == batch_id:
        _forget(update, context)  # these lines are sent: the next ones start a new batch
    if isinstance(query.message, Message):
        try:
            await query.edit_message_reply_markup(reply_markup=None)
        except BadRequest:
            pass
    progress = await context.bot.send_message(
        chat.id, progress_text(batch_id, 0, started.pending))
    bot, chat_id, message_id = context.bot, chat.id, progress.message_id

    async def on_progress(done: int, total: int) -> None:
        await bot.edit_message_text(progress_text(batch_id, done, total), chat_id, message_id)

    async def on_done(report: BatchReport) -> None:
        await deliver(bot, chat_id, message_id, report)

    mass_order.launch(deps, account, user.id, batch_id, on_progress=on_progress, on_done=on_done)
    return END


async def results(update: Update, context: BotContext) -> None:
    """"📋 Results" (after a restart): what each line of the batch became so far."""
    query, user, chat = update.callback_query, update.effective_user, update.effective_chat
    batch_id = int_arg(unpack(query.data if query else None), 2)
    if query is None or user is None or chat is None or batch_id is None:
        return
    report = await mass_order.own_report(context.deps, user.id, batch_id)
    if report is None:
        await answer(query, _(mass_order.OUT_OF_DATE), alert=True)
        return
    await answer(query)
    text, with_file = report_text(report)
    await reply(update, text, report_markup(report))
    if with_file:
        await context.bot.send_document(chat.id, report_file(report),
                                        filename=f"mass-order-{batch_id}-results.txt",
                                        caption=_("Mass order #{batch}: every line's result")
                                        .format(batch=batch_id))


async def wait_expired(app: BotApp, chat_id: int, user_id: int) -> None:
    """The wait for lines, ended after ORDER_TIMEOUT, also across a restart (a summary
    already shown stays valid, as when any other command ends the wait)."""
    data = app.user_data.get(user_id)
    if data is not None and data.pop(f"{KEY}:{chat_id}", None) is not None:
        app.mark_data_for_update_persistence(user_ids=user_id)
    deps: Deps = app.bot_data[DEPS_KEY]
    await outbox.enqueue_notice(deps.db, notices.notice(chat_id, L_(
        "I stopped waiting for the mass order's lines; nothing was sent. Send /massorder again "
        "to start over.")))


def handlers(settings: Settings | None = None) -> list[BaseHandler[Update, BotContext, object]]:
    """The conversation that takes the lines (before the order wizard: while it waits, the
    chat's messages are lines), then the batch buttons outside it."""
    minutes = settings.order_timeout if settings is not None else 15.0
    message = filters.UpdateType.MESSAGE
    go: BaseHandler[Update, BotContext, object] = CallbackQueryHandler(
        send, pattern=r"^mo:go:\d+:\d+$")
    cancel: BaseHandler[Update, BotContext, object] = CallbackQueryHandler(
        cancel_batch, pattern=r"^mo:x:\d+:\d+$")
    conversation: ConversationHandler[BotContext] = ExpiringConversation(
        on_expiry=wait_expired,
        entry_points=[CommandHandler("massorder", mass_order_command),
                      CallbackQueryHandler(edit, pattern=r"^mo:ed:\d+:\d+$")],
        states={WAITING: [
            MessageHandler(message & filters.TEXT & ~filters.COMMAND, take_text),
            MessageHandler(message & filters.Document.ALL, take_file),
            go,
            cancel,
            MessageHandler(message & ~filters.COMMAND, not_lines),
        ]},
        fallbacks=[CommandHandler("cancel", cancel_command),
                   MessageHandler(filters.COMMAND, stop_for_command),
                   CallbackQueryHandler(stop_for_button, pattern=r"^(?!mo:)")],
        allow_reentry=True,
        conversation_timeout=minutes * 60,
        name="mass_order",
        persistent=True,
    )
    return [
        conversation,
        go,
        cancel,
        CallbackQueryHandler(results, pattern=r"^mo:rs:\d+$"),
    ]
