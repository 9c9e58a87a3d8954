"""The one table of service types: each type's order form drives the wizard, checks and request."""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from bot.i18n import N_, _, ngettext, number
from bot.money import order_cost
from bot.panel.models import Service

log = logging.getLogger(__name__)

SUBSCRIPTION_DELAYS = (0, 5, 10, 15, 20, 30, 40, 50, 60, 90, 120, 150, 180, 210, 240, 270, 300,
                       360, 420, 480, 540, 600)
MAX_LINES = 10_000
TEXT_MAX = 500  # characters of a free-text answer


class Kind(enum.Enum):
    """What sort of answer a field takes."""

    LINK = "link"
    NUMBER = "number"
    LINES = "lines"
    CHOICE = "choice"
    DATE = "date"
    USERNAME = "username"
    TEXT = "text"


class Pricing(enum.Enum):
    """How the cost of an order follows from its rate."""

    PER_1000 = "per_1000"  # rate × quantity / 1000
    PER_PACKAGE = "per_package"  # the rate is the price of the package
    PER_POST = "per_post"  # subscriptions: rate × max / 1000 for each new post


class FieldError(ValueError):
    """A typed answer is not acceptable; the text is the one-line reason shown to the user
    (translated when it is raised: answers are checked while their update is handled)."""


@dataclass(frozen=True, slots=True)
class FormField:
    """One question of an order form, named by the parameter the `add` request carries.

    The table is built at import time, so `label`, `prompt` and `example` are catalog msgids
    (`N_`, English): translate them with `_()` where they are shown (`question` does)."""

    name: str
    label: str  # a msgid: show it as _(label)
    prompt: str  # a msgid
    example: str  # an example answer: a msgid where it is words, else as it is
    kind: Kind
    optional: bool = False
    in_service_bounds: bool = False  # a number within the service's min..max
    minimum: int | None = None
    not_below: str | None = None  # another field this number may not be below
    times_max: str | None = None  # this × that field ≤ the service's max (drip-feed runs)
    counts_quantity: bool = False  # non-empty lines are the quantity, within min..max
    choices: tuple[int, ...] = ()
    only_if: str | None = None  # asked only when that field has a value
    dripfeed: bool = False  # part of the drip-feed step, offered where the service allows it

    def applies(self, service: Service, values: Mapping[str, str]) -> bool:
        """Whether the wizard asks this field for this service, given the answers so far."""
        if self.dripfeed and service.dripfeed is False:
            return False
        return self.only_if is None or bool(values.get(self.only_if))

    def question(self, service: Service) -> str:
        """The question as shown, with what is expected and an example (in the current
        language)."""
        text = _(self.prompt)
        if self.in_service_bounds or self.counts_quantity:
            # i18n: a question of the order form and the least and most the service takes
            text = _("{question} ({minimum}–{maximum})").format(
                question=text, minimum=number(service.min), maximum=number(service.max))
        # i18n: a question of the order form, and an example answer under it
        return _("{question}\nExample: {example}").format(question=text, example=_(self.example))

    def parse(self, text: str, service: Service, values: Mapping[str, str]) -> str:
        """Checks an answer and returns it as the request will carry it, or raises FieldError."""
        text = (text or "").strip()
        if not text:
            raise FieldError(_("Please send a value or tap Skip.") if self.optional
                             else _("Please send a value."))
        parser = _PARSERS[self.kind]
        return parser(self, text, service, values)


@dataclass(frozen=True, slots=True)
class OrderForm:
    """A service type's order form: its fields in the order they are asked."""

    type: str
    fields: tuple[FormField, ...]
    pricing: Pricing = Pricing.PER_1000
    aliases: tuple[str, ...] = ()
    fallback: bool = False

    def field(self, name: str) -> FormField:
        """The field named `name`."""
        for item in self.fields:
            if item.name == name:
                return item
        raise KeyError(name)

    def next_field(self, service: Service, values: Mapping[str, str],
                   after: str | None = None) -> FormField | None:
        """The first field after `after` (or the first of all) that applies; None when done."""
        names = [f.name for f in self.fields]
        start = names.index(after) + 1 if after is not None else 0
        for item in self.fields[start:]:
            if item.applies(service, values):
                return item
        return None

    def quantity(self, values: Mapping[str, str]) -> int:
        """How many units the order buys (drip-feed: quantity × runs)."""
        for item in self.fields:
            if item.counts_quantity and values.get(item.name):
                return len(values[item.name].split("\n"))
        if self.pricing is Pricing.PER_PACKAGE:
            return 1
        if self.pricing is Pricing.PER_POST:
            return int(values.get("max") or 0)
        quantity = int(values.get("quantity") or 0)
        runs = values.get("runs")
        return quantity * int(runs) if runs else quantity

    def cost(self, service: Service, values: Mapping[str, str]) -> Decimal:
        """The exact estimated cost of the order; for Subscriptions, of ONE new post (up to
        `max` units), which the panel charges as each new post comes. What is charged when the
        order is placed is `upfront_cost`."""
        if self.pricing is Pricing.PER_PACKAGE:
            return service.rate
        return order_cost(service.rate, self.quantity(values))

    def old_posts(self, values: Mapping[str, str]) -> int:
        """How many existing posts a subscription covers (0 for every other type)."""
        if self.pricing is not Pricing.PER_POST or not values.get("old_posts"):
            return 0
        return int(values["old_posts"])

    def upfront_cost(self, service: Service, values: Mapping[str, str]) -> Decimal:
        """What the panel charges when the order is placed: the whole `cost`, except for
        Subscriptions, where the existing posts (`old_posts`, up to `max` units each) are
        charged at once and every new post later (0 now when there are no existing posts)."""
        if self.pricing is Pricing.PER_POST:
            return self.cost(service, values) * self.old_posts(values)
        return self.cost(service, values)

    def request_fields(self, service: Service, values: Mapping[str, str]) -> dict[str, str]:
        """The parameters of the `add` request (besides key, action and service)."""
        return {
            item.name: values[item.name]
            for item in self.fields
            if values.get(item.name) and item.applies(service, values)
        }


# --- parsers, one per kind -------------------------------------------------------------------

_DIGITS_RE = re.compile(r"[0-9]{1,12}")  # ASCII only: "²" and "٣" are not digits here
_LINK_RE = re.compile(r"^(https?://)?[^\s/$.?#@][^\s]*\.[^\s]{2,}$", re.I)
_USERNAME_RE = re.compile(r"^@?([A-Za-z0-9_.]{1,64})$")
_URL_USERNAME_RE = re.compile(r"^https?://[^\s]+\.[^\s]{2,}$", re.I)


def _parse_link(spec: FormField, text: str, service: Service, values: Mapping[str, str]) -> str:
    """A link to a page: http(s), or a bare domain path that gets https:// in front."""
    if " " in text or "\n" in text or not _LINK_RE.match(text):
        raise FieldError(_("That does not look like a link. Send it as https://…"))
    if not text.lower().startswith(("http://", "https://")):
        text = "https://" + text
    return text


def _parse_number(spec: FormField, text: str, service: Service, values: Mapping[str, str]) -> str:
    """A whole number, checked against the field's and the service's bounds."""
    cleaned = text.replace(",", "").replace(" ", "").replace("_", "")
    if not _DIGITS_RE.fullmatch(cleaned):
        raise FieldError(_("Please send a whole number, e.g. {example}.").format(
            example=_(spec.example)))
    value = int(cleaned)
    if spec.minimum is not None and value < spec.minimum:
        raise FieldError(_("It must be at least {minimum}.").format(minimum=number(spec.minimum)))
    if spec.in_service_bounds and not service.min <= value <= service.max:
        raise FieldError(_("It must be between {minimum} and {maximum}.").format(
            minimum=number(service.min), maximum=number(service.max)))
    if spec.not_below and values.get(spec.not_below) and value < int(values[spec.not_below]):
        # i18n: {field} is the API name of the other answer ("min"), {value} its number
        raise FieldError(_("It cannot be below {field} ({value}).").format(
            field=spec.not_below, value=number(int(values[spec.not_below]))))
    if spec.times_max and values.get(spec.times_max):
        other = int(values[spec.times_max])
        if value * other > service.max:
            # i18n: runs × quantity = the total a drip-feed order delivers
            raise FieldError(_("{runs} × {quantity} = {total} is over the service's maximum "
                               "of {maximum}.").format(
                runs=number(value), quantity=number(other), total=number(value * other),
                maximum=number(service.max)))
    if spec.choices and value not in spec.choices:
        raise FieldError(_("Choose one of the buttons."))
    return str(value)


def _parse_lines(spec: FormField, text: str, service: Service, values: Mapping[str, str]) -> str:
    """One item a line; empty lines dropped; the count may be the quantity."""
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        raise FieldError(_("Please send at least one line."))
    count = len(lines)
    if count > MAX_LINES:
        raise FieldError(ngettext("That is {n} line; the most is {most}.",
                                  "That is {n} lines; the most is {most}.", count).format(
            n=number(count), most=number(MAX_LINES)))
    if spec.counts_quantity and not service.min <= count <= service.max:
        raise FieldError(ngettext("That is {n} line; this service takes {minimum}–{maximum}.",
                                  "That is {n} lines; this service takes {minimum}–{maximum}.",
                                  count).format(
            n=number(count), minimum=number(service.min), maximum=number(service.max)))
    return "\n".join(lines)


def _parse_choice(spec: FormField, text: str, service: Service, values: Mapping[str, str]) -> str:
    """One of a fixed set of numbers (buttons, or typed)."""
    cleaned = text.strip()
    if not _DIGITS_RE.fullmatch(cleaned) or int(cleaned) not in spec.choices:
        allowed = ", ".join(number(c) for c in spec.choices)
        raise FieldError(_("Choose one of: {choices}.").format(choices=allowed))
    return str(int(cleaned))


def _parse_date(spec: FormField, text: str, service: Service, values: Mapping[str, str]) -> str:
    """A date typed as d/m/Y, in the future; sent as dd/mm/YYYY."""
    try:
        day = datetime.strptime(text.replace(".", "/").replace("-", "/"), "%d/%m/%Y").date()
    except ValueError:
        reason = _("Please send a date as day/month/year, e.g. {example}.").format(
            example=_(spec.example))
        raise FieldError(reason) from None
    if day <= date.today():
        raise FieldError(_("The date must be in the future."))
    return day.strftime("%d/%m/%Y")


def _parse_username(spec: FormField, text: str, service: Service,
                    values: Mapping[str, str]) -> str:
    """A username (with or without @) or a profile link."""
    match = _USERNAME_RE.match(text)
    if match:
        return match.group(1)
    if _URL_USERNAME_RE.match(text):
        return text
    raise FieldError(_("Send a username such as @name (letters, digits, . and _) or a profile "
                       "link."))


def _parse_text(spec: FormField, text: str, service: Service, values: Mapping[str, str]) -> str:
    """A single line of free text."""
    if "\n" in text:
        raise FieldError(_("Please send a single line."))
    if len(text) > TEXT_MAX:
        raise FieldError(_("That is too long ({most} characters at most).").format(
            most=number(TEXT_MAX)))
    return text


_PARSERS = {
    Kind.LINK: _parse_link,
    Kind.NUMBER: _parse_number,
    Kind.LINES: _parse_lines,
    Kind.CHOICE: _parse_choice,
    Kind.DATE: _parse_date,
    Kind.USERNAME: _parse_username,
    Kind.TEXT: _parse_text,
}


# --- the fields, reused across types ---------------------------------------------------------
# Labels, questions and worded examples are catalog texts (N_), translated where they are shown.

# i18n: an order form field: its name, then its question
LINK = FormField("link", N_("Link"), N_("Send the link to promote."),
                 "https://instagram.com/yourpage", Kind.LINK)
# i18n: an order form field: its name, then its question
QUANTITY = FormField("quantity", N_("Quantity"), N_("How many?"), "1000", Kind.NUMBER,
                     in_service_bounds=True)
# i18n: an order form field: its name, then its question
RUNS = FormField("runs", N_("Drip-feed runs"),
                 N_("Drip-feed: in how many runs should the quantity be delivered? "
                    "Each run delivers the full quantity. Tap Skip to deliver it at once."),
                 "5", Kind.NUMBER, optional=True, minimum=2, times_max="quantity", dripfeed=True)
# i18n: an order form field: its name, then its question
INTERVAL = FormField("interval", N_("Drip-feed interval (min)"),
                     N_("Drip-feed: how many minutes between runs?"), "30", Kind.NUMBER,
                     minimum=1, only_if="runs", dripfeed=True)
# i18n: an order form field: its name, then its question
KEYWORDS = FormField("keywords", N_("Keywords"), N_("Send the keywords, one per line."),
                     # i18n: an example answer: two search keywords, one per line
                     N_("buy shoes\nbest running shoes"), Kind.LINES)
# i18n: an order form field: its name, then its question
COMMENTS = FormField("comments", N_("Comments"), N_("Send the comments, one per line."),
                     # i18n: an example answer: two comments under a post, one per line
                     N_("Great post!\nLove it"), Kind.LINES, counts_quantity=True)
# i18n: an order form field: its name, then its question
USERNAMES = FormField("usernames", N_("Usernames"), N_("Send the usernames, one per line."),
                      "alice\nbob", Kind.LINES)
# i18n: an order form field: its name, then its question
USERNAMES_COUNTED = FormField("usernames", N_("Usernames"),
                              N_("Send the usernames, one per line."),
                              "alice\nbob", Kind.LINES, counts_quantity=True)
# i18n: an order form field: its name, then its question
HASHTAGS = FormField("hashtags", N_("Hashtags"), N_("Send the hashtags, one per line."),
                     "#travel\n#food", Kind.LINES)
# i18n: an order form field: its name, then its question
HASHTAG = FormField("hashtag", N_("Hashtag"), N_("Send the hashtag whose users to mention."),
                    "#travel", Kind.TEXT)
# i18n: an order form field: its name, then its question
USERNAME = FormField("username", N_("Username"), N_("Send the username."), "@username",
                     Kind.USERNAME)
# i18n: an order form field: its name, then its question
MEDIA = FormField("media", N_("Media link"),
                  N_("Send the link to the media whose likers to mention."),
                  "https://instagram.com/p/abc123", Kind.LINK)
# i18n: an order form field: its name, then its question
GROUPS = FormField("groups", N_("Groups"), N_("Send the groups to invite from, one per line."),
                   "group_one\ngroup_two", Kind.LINES)
# i18n: an order form field: its name, then its question
ANSWER_NUMBER = FormField("answer_number", N_("Answer number"),
                          N_("Which answer of the poll should get the votes? (1 = the first)"),
                          "1", Kind.NUMBER, minimum=1)

SUBSCRIPTION_FIELDS = (
    # i18n: an order form field: its name, then its question
    FormField("username", N_("Username"), N_("Send the username of the account to follow."),
              "@username", Kind.USERNAME),
    # i18n: an order form field: its name, then its question
    FormField("min", N_("Quantity min"), N_("The least quantity for each new post?"), "100",
              Kind.NUMBER, in_service_bounds=True),
    # i18n: an order form field: its name, then its question
    FormField("max", N_("Quantity max"), N_("The most quantity for each new post?"), "200",
              Kind.NUMBER, in_service_bounds=True, not_below="min"),
    # i18n: an order form field: its name, then its question
    FormField("posts", N_("New posts"), N_("For how many new posts? Tap Skip for no limit."),
              "10", Kind.NUMBER, optional=True, minimum=1),
    # i18n: an order form field: its name, then its question
    FormField("old_posts", N_("Old posts"),
              N_("For how many existing posts as well? Tap Skip for none."), "5",
              Kind.NUMBER, optional=True, minimum=1),
    # i18n: an order form field: its name, then its question
    FormField("delay", N_("Delay (min)"), N_("Delay in minutes before each delivery?"), "0",
              Kind.CHOICE, choices=SUBSCRIPTION_DELAYS),
    # i18n: an order form field: its name, then its question
    FormField("expiry", N_("Expiry"),
              N_("When should the subscription end? Tap Skip for never."),
              "31/12/2030", Kind.DATE, optional=True),
)

# Type names are compared with case, spaces and punctuation removed (see `form_for`).
FORMS: tuple[OrderForm, ...] = (
    OrderForm("Default", (LINK, QUANTITY, RUNS, INTERVAL)),
    OrderForm("SEO", (LINK, QUANTITY, KEYWORDS), aliases=("SEO2", "Keywords")),
    OrderForm("Custom Comments", (LINK, COMMENTS), aliases=("Custom Comments Package",)),
    OrderForm("Subscriptions", SUBSCRIPTION_FIELDS, Pricing.PER_POST,
              aliases=("Subscription",)),
    OrderForm("Poll", (LINK, QUANTITY, ANSWER_NUMBER)),
    OrderForm("Package", (LINK,), Pricing.PER_PACKAGE),
    OrderForm("Mentions", (LINK, QUANTITY, USERNAMES)),
    OrderForm("Mentions with Hashtags", (LINK, QUANTITY, USERNAMES, HASHTAGS)),
    OrderForm("Mentions Custom List", (LINK, USERNAMES_COUNTED)),
    OrderForm("Mentions Hashtag", (LINK, QUANTITY, HASHTAG)),
    OrderForm("Mentions User Followers", (LINK, QUANTITY, USERNAME),
              aliases=("Mentions Users Followers",)),
    OrderForm("Mentions Media Likers", (LINK, QUANTITY, MEDIA)),
    OrderForm("Comment Likes", (LINK, QUANTITY, USERNAME)),
    OrderForm("Comment Replies", (LINK, USERNAME, COMMENTS)),
    OrderForm("Invites from Groups", (LINK, QUANTITY, GROUPS), aliases=("Invites From Group",)),
)

FALLBACK = OrderForm("Unknown", (LINK, QUANTITY), fallback=True)


def _key(type_name: str) -> str:
    """A type name folded for comparison: "Mentions Users Followers" → "mentionsusersfollowers"."""
    return re.sub(r"[^a-z0-9]", "", type_name.lower())


_BY_KEY: dict[str, OrderForm] = {
    _key(name): form for form in FORMS for name in (form.type, *form.aliases)
}
_warned: set[str] = set()


def form_for(type_name: str) -> OrderForm:
    """The order form of a service type; unknown types get link + quantity (logged once)."""
    form = _BY_KEY.get(_key(type_name or "Default"))
    if form is not None:
        return form
    if type_name not in _warned:
        _warned.add(type_name)
        log.warning("Unknown service type %r: ordering it with link + quantity", type_name)
    return FALLBACK
