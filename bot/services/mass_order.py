"""Mass order: lines of `service id | link | quantity`, checked like the wizard, then one order
per line placed through `placement.place` with bounded concurrency.

    parsed = parse_lines(text, index)          # the service-type table's own field checks
    batch_id = await prepare(deps, account, owner_id, chat_id, parsed.lines, currency)
    started = await start(deps, account, owner_id, batch_id)   # claimed once: ready → sending
    launch(deps, account, owner_id, batch_id, on_progress=..., on_done=...)

Exactly once, line by line: every line is its own order draft, and `placement.place` claims
each draft atomically before its one `add`; the batch itself is claimed too (`start`), so a
double tap or an old summary starts nothing. A line whose draft is still a draft was not sent:
after a stop (`wind_down`: the lines being sent finish, no new one starts) or a crash, the next
start reports the batch as interrupted, with a button to send the rest (`release_interrupted`).

Costs are worked out by `line_cost` only, so another pricing (a shop's) changes one function.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from bot import i18n
from bot.catalog import ServiceIndex
from bot.deps import Deps
from bot.i18n import L_, N_, Ln_, _, ngettext
from bot.money import parse_whole
from bot.panel.errors import PanelClientError
from bot.panel.models import Balance, Service
from bot.service_types import FieldError, FormField, form_for
from bot.services import notices, placement, wallet
from bot.services.accounts import Account
from bot.services.pricing import PriceList
from bot.text import note_text
from storage import mass_orders as store
from storage import orders as order_store
from storage import outbox
from storage.db import transaction
from storage.mass_orders import Batch, BatchState
from storage.orders import Order
from storage.outbox import Notice

log = logging.getLogger(__name__)

MAX_LINES = 500
#: `add` requests in flight at once for one batch.
CONCURRENCY = 10
#: Seconds between two progress reports of a batch: Telegram's edit rate for one message.
PROGRESS_EVERY = 1.0
#: The fields a line can give, in this order after the service id.
LINE_FIELDS = ("link", "quantity")
SHOWN_CHARS = 80  # of a bad line, quoted in its reason

SEND_DATA = "mo:go"  # callback data prefixes of the batch's buttons: `mo:<action>:<batch>`
RESULTS_DATA = "mo:rs"

# Why a batch's button does nothing now: catalog texts (`N_`), translated where they are said
# (`refusal` and `start` return them translated).
OUT_OF_DATE = N_("This mass order summary is out of date: use the newest one, or send the "
                 "lines again with /massorder.")
BEING_SENT = N_("This mass order is being sent.")
ALREADY_SENT = N_("This mass order was already sent.")
CANCELLED = N_("This mass order was cancelled or replaced: nothing of it was sent.")
ACCOUNT_CHANGED = N_("Your panel account changed: send the lines again with /massorder.")
NOTHING_LEFT = N_("Every line of this mass order has been sent already.")
STOPPING = N_("The bot is restarting: try again in a minute.")
EXPIRED = N_("The lines of this mass order that were not sent have expired (they are kept a "
             "day): send them again with /massorder.")
#: The shape of a line, by how many fields it gives after the service id (`line_fields`).
SHAPES = {
    # i18n: the parts of a mass order line for a package (the words are what the user types)
    1: N_("service id | link"),
    # i18n: the parts of a mass order line (the words are what the user types)
    2: N_("service id | link | quantity"),
}


# --- checking the lines ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MassLine:
    """A valid line: its number in what the user sent, the service and the answers."""

    number: int
    service: Service
    values: dict[str, str]
    price: Decimal | None = None  # a shop customer's total for the line (what is charged)

    @property
    def cost(self) -> Decimal:
        """What this line costs the sender: a customer's price, else `line_cost`."""
        return self.price if self.price is not None else line_cost(self.service, self.values)


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that will not be sent, and the one-line reason."""

    number: int
    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a message of lines holds: valid lines, bad lines, or too many lines to check."""

    lines: tuple[MassLine, ...] = ()
    bad: tuple[BadLine, ...] = ()
    too_many: int = 0  # how many lines were sent when over MAX_LINES (then nothing is checked)

    @property
    def total(self) -> Decimal:
        """The cost of every valid line."""
        return total_cost(self.lines)


def line_cost(service: Service, values: Mapping[str, str]) -> Decimal:
    """The one place a mass-order line's cost is worked out: the service type's pricing."""
    return form_for(service.type).cost(service, values)


def total_cost(lines: Sequence[MassLine]) -> Decimal:
    """The cost of these lines."""
    return sum((line.cost for line in lines), Decimal(0))


def line_fields(service: Service) -> tuple[FormField, ...] | None:
    """The fields a line gives for this service, from its order form: the link (and the
    quantity); None when the form asks for anything else that is not optional."""
    form = form_for(service.type)
    fields: list[FormField] = []
    values: dict[str, str] = {}
    item = form.next_field(service, values)
    while item is not None:
        if item.name in LINE_FIELDS:
            fields.append(item)
            values[item.name] = "x"  # a placeholder: only whether it has a value matters here
        elif not item.optional:
            return None
        item = form.next_field(service, values, after=item.name)
    names = tuple(f.name for f in fields)
    return tuple(fields) if names and names == LINE_FIELDS[: len(names)] else None


def split_line(text: str) -> list[str]:
    """A line's parts: split on | or tabs (spaces around them dropped), else on spaces."""
    if "|" in text or "\t" in text:
        parts = [part.strip() for part in re.split(r"[|\t]", text)]
    else:
        parts = text.split()
    while parts and not parts[-1]:
        parts.pop()
    return parts


def _shown(text: str) -> str:
    """A line as quoted back: one line, cut."""
    text = " ".join(text.split())
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def parse_line(number: int, text: str, index: ServiceIndex,
               prices: PriceList | None = None) -> MassLine | BadLine:
    """Checks one line with the wizard's rules: the service exists and takes a link (and a
    quantity), and each value passes its field's check. With a shop's `prices` (a customer's
    lines), the line carries the customer's price, and a service not sold is refused."""

    def bad(reason: str) -> BadLine:
        return BadLine(number, _shown(text), reason)

    parts = split_line(text) or [""]
    service_id = parse_whole(parts[0].removeprefix("#"), max_digits=12)
    if service_id is None:
        return bad(_("“{text}” is not a service id: a line is service id | link | quantity.")
                   .format(text=_shown(parts[0])))
    service = index.by_id.get(service_id)
    if service is None:
        return bad(_("There is no service #{service}.").format(service=service_id))
    fields = line_fields(service)
    if fields is None:
        return bad(_("Service #{service} ({type}) needs more than a link and a quantity: order "
                     "it with /order {service}.").format(service=service.service,
                                                         type=service.type))
    given = parts[1:]
    if len(given) < len(fields):
        parts_needed = len(fields) + 1
        return bad(ngettext("Service #{service} needs {n} part: {shape}.",
                            "Service #{service} needs {n} parts: {shape}.", parts_needed)
                   .format(service=service.service, n=parts_needed,
                           shape=_(SHAPES[len(fields)])))
    if len(given) > len(fields):
        if len(fields) == 1:
            return bad(_("Service #{service} is a package: send only “{service} | link”, "
                         "without a quantity.").format(service=service.service))
        return bad(_("Too many parts: a line is service id | link | quantity."))
    values: dict[str, str] = {}
    for spec, answer in zip(fields, given, strict=True):
        try:
            values[spec.name] = spec.parse(answer, service, values)
        except FieldError as exc:
            return bad(f"{spec.label}: {exc}")
    if prices is None:
        return MassLine(number, service, values)
    quote = prices.quote(service, values, index.currency)
    if quote is None:
        return bad(_("There is no service #{service}.").format(service=service.service))
    return MassLine(number, service, values, quote.total)


def parse_lines(text: str, index: ServiceIndex, prices: PriceList | None = None) -> Parsed:
    """Every non-empty line checked (numbered as sent); more than MAX_LINES are refused whole."""
    numbered = [(n, line) for n, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1)
                if line.strip()]
    if len(numbered) > MAX_LINES:
        return Parsed(too_many=len(numbered))
    results = [parse_line(n, line, index, prices) for n, line in numbered]
    return Parsed(tuple(r for r in results if isinstance(r, MassLine)),
                  tuple(r for r in results if isinstance(r, BadLine)))


async def funds(deps: Deps, account: Account, owner_id: int) -> Balance | None:
    """What the sender can spend, for the summary (a shop customer: their wallet, never the
    panel's balance); None when it cannot be had now."""
    if account.customer:
        money = await wallet.balance(deps, owner_id)
        return Balance(money.amount, money.currency)
    try:
        return await deps.panel.balance(account.key, quick=True)
    except PanelClientError as exc:
        log.info("Balance unavailable for a mass order summary: %s", exc)
        return None


# --- the batch -------------------------------------------------------------------------------


async def prepare(deps: Deps, account: Account, owner_id: int, chat_id: int,
                  lines: Sequence[MassLine], currency: str, *,
                  batch_id: int | None = None) -> tuple[int, int]:
    """Stores the batch and one order draft per line (as each will be sent), in one
    transaction; the batch's id and revision. Nothing is sent. With `batch_id` (more lines
    came for the summary on screen) that batch is renewed in place while it is still 'ready',
    at a new revision, so its older summary is out of date."""
    db = deps.db
    async with transaction(db):
        rev = (await store.renew_batch(db, batch_id, owner_id=owner_id, lines=len(lines))
               if batch_id is not None else None)
        if batch_id is None or rev is None:
            batch_id = await store.create_batch(
                db, owner_id=owner_id, chat_id=chat_id, account=account.id,
                panel=account.panel, catalog=account.catalog_key, lines=len(lines),
            )
            rev = 1
        drafts: list[tuple[int, int]] = []
        for line in lines:
            draft = await placement.save_draft(deps, account, owner_id, line.service,
                                               form_for(line.service.type), line.values,
                                               currency)
            drafts.append((line.number, draft))
        await store.add_lines(db, batch_id, drafts)
    return batch_id, rev


async def discard(deps: Deps, owner_id: int, batch_id: int, rev: int | None = None) -> bool:
    """Cancel (or Edit) on the summary: the batch and its drafts go; False when it is being
    sent, was sent, is gone, or `rev` is not its revision (an older summary)."""
    return await store.cancel_batch(deps.db, batch_id, owner_id=owner_id, rev=rev)


async def refusal(deps: Deps, owner_id: int, batch_id: int, rev: int | None = None) -> str:
    """Why this batch's buttons do nothing now (for a stale Cancel, Edit or Confirm), in the
    current language."""
    batch = await store.get_batch(deps.db, batch_id)
    if batch is None or batch.owner_id != owner_id or (rev is not None and rev != batch.rev):
        return _(OUT_OF_DATE)
    reason = {"sending": BEING_SENT, "done": ALREADY_SENT, "cancelled": CANCELLED,
              "interrupted": BEING_SENT}.get(batch.state, OUT_OF_DATE)
    return _(reason)


async def _lines_with_orders(deps: Deps, batch_id: int) -> list[tuple[int, Order]]:
    """The batch's stored lines with their orders, in line order."""
    pairs = await store.line_orders(deps.db, batch_id)
    found = await order_store.get_orders(deps.db, [order_id for _, order_id in pairs])
    return [(line, found[order_id]) for line, order_id in pairs if order_id in found]


@dataclass(frozen=True, slots=True)
class Started:
    """The batch is being sent: `pending` of its `lines` lines go now."""

    batch: Batch
    pending: int


@dataclass(frozen=True, slots=True)
class NotStarted:
    """Why nothing was started (a one-line reason for the user, translated)."""

    reason: str


async def start(deps: Deps, account: Account, owner_id: int, batch_id: int,
                rev: int) -> Started | NotStarted:
    """Claims a batch for sending (a fresh one, or the rest of an interrupted one) at the
    revision its summary showed: exactly one of any number of taps wins."""
    db = deps.db
    if _runs(deps).stopping:
        return NotStarted(_(STOPPING))
    batch = await store.get_batch(db, batch_id)
    if batch is None or batch.owner_id != owner_id or batch.rev != rev:
        return NotStarted(_(OUT_OF_DATE))
    if batch.state not in ("ready", "interrupted"):
        return NotStarted(await refusal(deps, owner_id, batch_id))
    if (batch.account, batch.panel, batch.catalog) != (account.id, account.panel,
                                                       account.catalog_key):
        return NotStarted(_(ACCOUNT_CHANGED))
    lines = await _lines_with_orders(deps, batch_id)
    pending = [order for _, order in lines if order.state == "draft"]
    if not pending:
        expired = len(lines) < batch.lines  # unsent drafts are purged after a day
        if batch.state == "interrupted":
            await store.move_batch(db, batch_id, owner_id=owner_id, to="done",
                                   allowed_from=("interrupted",))
        reason = (EXPIRED if expired else
                  OUT_OF_DATE if batch.state == "ready" else NOTHING_LEFT)
        return NotStarted(_(reason))
    if not await store.move_batch(db, batch_id, owner_id=owner_id, to="sending",
                                  allowed_from=("ready", "interrupted"), rev=rev):
        return NotStarted(await refusal(deps, owner_id, batch_id))
    return Started(batch, len(pending))


# --- what each line became -------------------------------------------------------------------

LineKind = Literal["placed", "refused", "unknown", "not_sent"]


@dataclass(frozen=True, slots=True)
class LineResult:
    """One line's outcome: the panel's order id, or why it was not placed (`note`: a text in
    the language of the moment the report was made, or the panel's own error)."""

    number: int
    order_id: int
    service_id: int | None
    link: str
    quantity: int | None
    kind: LineKind
    panel_order_id: int | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class BatchReport:
    """Every line's outcome, in line order; `expired`: lines whose drafts were purged."""

    batch_id: int
    rev: int
    state: str
    results: tuple[LineResult, ...]
    expired: int = 0

    def count(self, kind: LineKind) -> int:
        """How many lines ended this way."""
        return sum(1 for result in self.results if result.kind == kind)


def _result(number: int, order: Order, outcome: placement.Outcome | None) -> LineResult:
    """A line's outcome from its order as stored (and what placing it said just now)."""
    def made(kind: LineKind, panel_id: int | None = None, note: str | None = None) -> LineResult:
        return LineResult(number, order.id, order.service_id, str(order.fields.get("link", "")),
                          order.quantity, kind, panel_id, note)

    if isinstance(outcome, placement.Placed):  # stored or not, the panel has it
        return made("placed", outcome.panel_order_id,
                    # i18n: a note after a mass order line's order id
                    None if outcome.stored else _("placed, but the bot could not write it down"))
    if isinstance(outcome, placement.AlreadyKnown):
        return made("placed", outcome.panel_order_id,
                    # i18n: a note after a mass order line's order id
                    _("you already follow an order with this id") if outcome.mine
                    # i18n: a note after a mass order line's order id
                    else _("the bot knows this id under another user"))
    if isinstance(outcome, placement.Short):  # a shop customer's wallet: nothing was sent
        missing = wallet.show(outcome.missing, outcome.currency)
        # i18n: why a mass order line was not placed
        return made("refused", note=_("not enough in your wallet ({missing} missing); nothing "
                                      "was charged").format(missing=missing))
    if order.state == "placed":
        return made("placed", order.panel_order_id)
    if order.state == "failed":
        # i18n: why a mass order line was not placed (when the panel gave no reason)
        return made("refused", note=note_text(order.error) if order.error
                    else _("the panel refused it"))
    if order.state in ("unknown", "claimed"):
        # i18n: a mass order line's outcome
        return made("unknown", note=_("outcome unknown, not retried: see /orders"))
    return made("not_sent")


async def batch_report(deps: Deps, batch_id: int,
                       outcomes: Mapping[int, placement.Outcome] | None = None) -> BatchReport:
    """What each line of the batch became (from the database; `outcomes` of this run add
    what only the panel's answer knew)."""
    batch = await store.get_batch(deps.db, batch_id)
    lines = await _lines_with_orders(deps, batch_id)
    seen = outcomes or {}
    results = tuple(_result(number, order, seen.get(order.id)) for number, order in lines)
    expired = max((batch.lines if batch else 0) - len(results), 0)
    return BatchReport(batch_id, batch.rev if batch else 0, batch.state if batch else "gone",
                       results, expired)


async def own_report(deps: Deps, owner_id: int, batch_id: int) -> BatchReport | None:
    """The report of this owner's batch; None for anyone else's (or none)."""
    batch = await store.get_batch(deps.db, batch_id)
    if batch is None or batch.owner_id != owner_id or batch.state in ("ready", "cancelled"):
        return None
    return await batch_report(deps, batch_id)


# --- sending ---------------------------------------------------------------------------------

ProgressFn = Callable[[int, int], Awaitable[None]]
DoneFn = Callable[[BatchReport], Awaitable[None]]


@dataclass(slots=True)
class _Runs:
    """The batches being sent by this process, in `deps.state["mass_order"]`."""

    tasks: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    stopping: bool = False


def _runs(deps: Deps) -> _Runs:
    """The running batches of these deps, created on first use."""
    runs = deps.state.get("mass_order")
    if not isinstance(runs, _Runs):
        runs = deps.state["mass_order"] = _Runs()
    return runs


@dataclass(slots=True)
class Pacer:
    """Spaces reports on one message at least `interval` seconds apart, counted from the end
    of one report to the start of the next (so Telegram never receives two closer together,
    however long each request took on its way)."""

    interval: float = PROGRESS_EVERY
    clock: Callable[[], float] = time.monotonic
    last: float = float("-inf")  # no report yet: the first may go at once

    def due_in(self) -> float:
        """Seconds until the next report may go."""
        return max(self.last + self.interval - self.clock(), 0.0)

    async def report(self, send: Callable[[], Awaitable[None]]) -> None:
        """Waits until a report may go, then sends it."""
        delay = self.due_in()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            await send()
        finally:
            self.last = self.clock()


async def send_batch(deps: Deps, account: Account, owner_id: int, batch_id: int, *,
                     on_progress: ProgressFn | None = None, pacer: Pacer | None = None,
                     concurrency: int | None = None) -> BatchReport | None:
    """Places every line not yet sent, `concurrency` at a time, each through
    `placement.place`; reports progress at most once per `pacer.interval`. The report, or
    None when the bot began stopping first (the batch stays 'sending' for the next start)."""
    runs = _runs(deps)
    pending = [order.id for _, order in await _lines_with_orders(deps, batch_id)
               if order.state == "draft"]
    total = len(pending)
    outcomes: dict[int, placement.Outcome] = {}
    queue = iter(pending)  # shared: each line is taken by exactly one worker
    finished = asyncio.Event()
    pacer = pacer or Pacer()

    async def worker() -> None:
        for order_id in queue:
            if runs.stopping:
                return
            outcomes[order_id] = await placement.place(deps, account, owner_id, order_id)

    shown = 0

    async def show_progress() -> None:
        nonlocal shown
        assert on_progress is not None
        shown = len(outcomes)
        await on_progress(shown, total)

    async def progress() -> None:
        assert pacer is not None
        while not finished.is_set():
            try:
                await asyncio.wait_for(finished.wait(), pacer.due_in() or pacer.interval)
            except TimeoutError:
                pass
            if finished.is_set() or len(outcomes) == shown:
                continue
            try:
                await pacer.report(show_progress)
            except Exception:  # a failed edit must not stop the sending
                log.warning("Mass order %d: progress report failed", batch_id, exc_info=True)

    reporter = asyncio.create_task(progress()) if on_progress is not None else None
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(max(concurrency or CONCURRENCY, 1), total)):
                group.create_task(worker())
    finally:
        finished.set()
        if reporter is not None:
            await reporter
    if len(outcomes) < total and runs.stopping:
        log.info("Mass order %d: stopped after %d of %d lines; the rest wait for the next "
                 "start", batch_id, len(outcomes), total)
        return None
    await store.move_batch(deps.db, batch_id, owner_id=owner_id, to="done",
                           allowed_from=("sending",))
    return await batch_report(deps, batch_id, outcomes)


async def _run(deps: Deps, account: Account, owner_id: int, batch_id: int,
               on_progress: ProgressFn | None, on_done: DoneFn) -> None:
    """One batch in the background: sent, then reported (the final report paced too)."""
    pacer = Pacer()
    try:
        report = await send_batch(deps, account, owner_id, batch_id, on_progress=on_progress,
                                  pacer=pacer)
    except Exception:
        log.exception("Mass order %d failed while sending; the rest can be sent again", batch_id)
        await store.move_batch(deps.db, batch_id, owner_id=owner_id, to="interrupted",
                               allowed_from=("sending",))
        report = await batch_report(deps, batch_id)
    if report is None:
        return
    final = report
    await pacer.report(lambda: on_done(final))


def launch(deps: Deps, account: Account, owner_id: int, batch_id: int, *,
           on_progress: ProgressFn | None, on_done: DoneFn) -> asyncio.Task[None]:
    """Sends a started batch in the background (the chat stays free meanwhile)."""
    runs = _runs(deps)
    task = asyncio.create_task(_run(deps, account, owner_id, batch_id, on_progress, on_done),
                               name=f"mass-order-{batch_id}")
    runs.tasks[batch_id] = task

    def forget(done: asyncio.Task[None]) -> None:
        runs.tasks.pop(batch_id, None)
        if not done.cancelled() and done.exception() is not None:
            log.error("Mass order %d: reporting failed", batch_id, exc_info=done.exception())

    task.add_done_callback(forget)
    return task


async def join(deps: Deps) -> None:
    """Waits for every batch being sent now (tests and benchmarks)."""
    while tasks := list(_runs(deps).tasks.values()):
        await asyncio.gather(*tasks, return_exceptions=True)


async def wind_down(deps: Deps) -> None:
    """At shutdown: no new line starts; the lines in flight finish and are stored."""
    runs = _runs(deps)
    runs.stopping = True
    await join(deps)


async def release_interrupted(deps: Deps) -> list[Batch]:
    """At start-up (after `placement.release_interrupted`): batches the bot stopped while
    sending become 'interrupted', and each owner is told what was and was not sent, with a
    button to send the rest."""
    db = deps.db
    released: list[Batch] = []
    for batch in await store.batches_in_state(db, "sending"):
        async with transaction(db):
            lines = await _lines_with_orders(deps, batch.id)
            left = sum(1 for _, order in lines if order.state == "draft")
            to: BatchState = "interrupted" if left else "done"
            if not await store.move_batch(db, batch.id, owner_id=batch.owner_id, to=to,
                                          allowed_from=("sending",)):
                continue
            await outbox.enqueue_notice(db, interrupted_notice(batch, len(lines) - left, left))
        released.append(batch)
        log.warning("Mass order %d was being sent when the bot stopped: %d line(s) not sent",
                    batch.id, left)
    return released


def interrupted_notice(batch: Batch, sent: int, left: int) -> Notice:
    """The owner's message about a batch cut off while it was being sent (rendered when it is
    sent, in the owner's language then)."""
    total = sent + left
    rest = (Ln_("{n} was <b>not sent</b>. Nothing is sent again by itself: tap below to send "
                "the rest.",
                "{n} were <b>not sent</b>. Nothing is sent again by itself: tap below to send "
                "the rest.", left)
            if left else L_("none was left to send."))
    text = i18n.Joined([
        L_("⚠️ <b>The bot stopped while sending your mass order #{batch}.</b>", batch=batch.id),
        # i18n: {rest} is what became of the lines not sent ("2 were not sent. …")
        Ln_("{sent} of {n} line had been sent; {rest}", "{sent} of {n} lines had been sent; {rest}",
            total, sent=sent, rest=rest),
    ], "\n")
    buttons: list[list[list[object]]] = []
    if left:
        # i18n: a button sending the lines of a mass order that were not sent
        buttons.append([notices.button(Ln_("▶ Send the {n} not sent", "▶ Send the {n} not sent",
                                           left), f"{SEND_DATA}:{batch.id}:{batch.rev}")])
    # i18n: a button showing what each line of a mass order became
    buttons.append([notices.button(L_("📋 Results"), f"{RESULTS_DATA}:{batch.id}")])
    return notices.notice(batch.chat_id, text, {"buttons": buttons})
