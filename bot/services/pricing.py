"""Shop prices: what a customer pays, derived from the panel's rate. The one place the rule is.

- A service's price per 1000 units (per package for packages) is the panel's rate ×
  (1 + markup / 100): the markup is MARKUP_PERCENT until an admin sets another with /markup. A
  service may have a rule of its own (/price): a price, a percent, or off (not sold). Prices are
  exact Decimals, and never below the panel's current rate, even when the panel raised its rate
  after an admin set a price.
- An order's total is what the service-type table (`OrderForm.cost`) makes of the order at the
  customer's price, rounded UP to the currency's minor unit (cents): never below the panel's
  cost of the same order, never below one minor unit.
- Subscriptions are not sold: the panel charges them per new post, so no total is known before
  ordering, and a wallet can only be charged a known amount.

The catalogue, the wizard's summary and placement all ask this module, so what the customer is
shown is what they are charged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

from babel.numbers import UnknownCurrencyError, get_currency_precision

from bot import i18n
from bot.catalog import ServiceIndex
from bot.deps import Deps
from bot.i18n import _
from bot.panel.models import Service
from bot.service_types import Pricing, form_for
from storage import meta
from storage import prices as price_store
from storage.prices import PriceOverride

MARKUP_META = "shop_markup"
HUNDRED = Decimal(100)
MAX_PERCENT = Decimal(100_000)
_STATE = "prices"
_STOREFRONT = "storefront"


def minor_digits(currency: str) -> int:
    """How many decimals the currency's minor unit has (USD 2, JPY 0, KWD 3); 2 if unknown."""
    try:
        return int(get_currency_precision(currency.upper())) if currency else 2
    except (UnknownCurrencyError, ValueError):
        return 2


def exact(value: Decimal, *, keep: int = 0) -> str:
    """A percent or a rate as it is (every decimal it has, at least `keep`), written the
    reader's way: 12.5 / 12,5."""
    exponent = value.as_tuple().exponent
    places = max(-exponent if isinstance(exponent, int) else 0, keep)
    return i18n.decimal(value, places=places, keep=places)


def minor_unit(currency: str) -> Decimal:
    """The currency's smallest amount (0.01 for USD)."""
    return Decimal(1).scaleb(-minor_digits(currency))


def round_up(amount: Decimal, currency: str) -> Decimal:
    """Up to the currency's minor unit: 1.2301 USD → 1.24."""
    return amount.quantize(minor_unit(currency), rounding=ROUND_CEILING)


def round_down(amount: Decimal, currency: str) -> Decimal:
    """Down to the currency's minor unit: 1.2399 USD → 1.23."""
    return amount.quantize(minor_unit(currency), rounding=ROUND_FLOOR)


def sellable(service: Service) -> bool:
    """Whether the shop can sell this type at all (a total must be known before ordering)."""
    return form_for(service.type).pricing is not Pricing.PER_POST


@dataclass(frozen=True, slots=True)
class Quote:
    """What an order costs the shop on the panel, and what the customer pays."""

    unit_price: Decimal  # the customer's price per 1000 (per package)
    cost: Decimal  # the panel's cost of the order, exact
    total: Decimal  # what the customer pays, in whole minor units
    currency: str

    @property
    def margin(self) -> Decimal:
        """What the shop keeps."""
        return self.total - self.cost


@dataclass(frozen=True, slots=True)
class PriceList:
    """The markup and the per-service rules, as they stand now."""

    markup: Decimal  # percent
    overrides: Mapping[int, PriceOverride] = dataclasses.field(default_factory=dict)

    def rule(self, service_id: int) -> PriceOverride | None:
        """The service's own rule, if an admin set one."""
        return self.overrides.get(service_id)

    def hidden(self, service_id: int) -> bool:
        """Whether an admin took the service off sale (/price <id> off)."""
        rule = self.rule(service_id)
        return rule is not None and rule.kind == "off"

    def listed_price(self, service: Service) -> Decimal | None:
        """The price the rules give, before the floor at the panel's rate; None: not sold."""
        if not sellable(service):
            return None
        rule = self.rule(service.service)
        if rule is not None and rule.kind == "off":
            return None
        if rule is not None and rule.kind == "price" and rule.value is not None:
            return rule.value
        percent = rule.value if rule is not None and rule.value is not None else self.markup
        return service.rate * (HUNDRED + percent) / HUNDRED

    def unit_price(self, service: Service) -> Decimal | None:
        """The customer's price per 1000 (per package): never below the panel's rate."""
        listed = self.listed_price(service)
        return None if listed is None else max(listed, service.rate)

    def quote(self, service: Service, values: Mapping[str, str], currency: str) -> Quote | None:
        """What this order costs the customer, or None when the service is not sold."""
        unit = self.unit_price(service)
        if unit is None:
            return None
        form = form_for(service.type)
        cost = form.cost(service, values)
        price = form.cost(dataclasses.replace(service, rate=unit), values)
        total = max(round_up(price, currency), round_up(cost, currency), minor_unit(currency))
        return Quote(unit, cost, total, currency)


async def current(deps: Deps) -> PriceList:
    """The price list now (read once, then kept until an admin changes it)."""
    cached = deps.state.get(_STATE)
    if isinstance(cached, PriceList):
        return cached
    stored = await meta.get_meta(deps.db, MARKUP_META)
    markup = deps.settings.markup_percent if stored is None else Decimal(stored.decode())
    prices = PriceList(markup, await price_store.get_overrides(deps.db))
    deps.state[_STATE] = prices
    return prices


def _changed(deps: Deps) -> None:
    """Forgets the cached list (and the storefront built from it)."""
    deps.state.pop(_STATE, None)
    deps.state.pop(_STOREFRONT, None)


class PriceRefused(ValueError):
    """A price rule an admin may not set; the text is the one-line reason (in the language of
    the admin's update, where it is raised)."""


def parse_percent(text: str) -> Decimal:
    """"30", "+12.5%", "12,5" as a percent ≥ 0; raises PriceRefused with the reason."""
    cleaned = text.strip().removesuffix("%").strip().removeprefix("+").replace(",", ".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise PriceRefused(_("{text} is not a percentage, e.g. 30 or 12.5.").format(
            text=repr(text))) from None
    if not value.is_finite() or value < 0:
        raise PriceRefused(_("The markup cannot be negative: that would sell below the panel's "
                             "rate."))
    if value > MAX_PERCENT:
        # i18n: the largest markup an admin may set
        raise PriceRefused(_("At most {percent}%.").format(percent=exact(MAX_PERCENT)))
    return value.normalize() if value == value.to_integral_value() else value


async def set_markup(deps: Deps, percent: Decimal) -> PriceList:
    """Sets the shop-wide markup (percent ≥ 0)."""
    if percent < 0:
        raise PriceRefused(_("The markup cannot be negative."))
    await meta.set_meta(deps.db, MARKUP_META, format(percent, "f").encode())
    _changed(deps)
    return await current(deps)


async def set_price(deps: Deps, service: Service, price: Decimal) -> PriceList:
    """Sets one service's own price per 1000 (per package); never below the panel's rate."""
    if not price.is_finite() or price < service.rate:
        # i18n: {per} is "per 1000" or "per package"
        raise PriceRefused(_("That is below the panel's current rate for #{service} ({rate} "
                             "{per}): refused.").format(service=service.service,
                                                         rate=exact(service.rate, keep=2),
                                                         per=per_unit(service)))
    await price_store.set_override(deps.db, service.service, "price", price)
    _changed(deps)
    return await current(deps)


async def set_percent(deps: Deps, service: Service, percent: Decimal) -> PriceList:
    """Sets one service's own markup (percent ≥ 0)."""
    if percent < 0:
        raise PriceRefused(_("The markup cannot be negative."))
    await price_store.set_override(deps.db, service.service, "percent", percent)
    _changed(deps)
    return await current(deps)


async def hide(deps: Deps, service_id: int) -> PriceList:
    """Takes one service off sale."""
    await price_store.set_override(deps.db, service_id, "off", None)
    _changed(deps)
    return await current(deps)


async def reset(deps: Deps, service_id: int) -> PriceList:
    """Drops one service's own rule: it sells at the markup again."""
    await price_store.clear_override(deps.db, service_id)
    _changed(deps)
    return await current(deps)


def per_unit(service: Service) -> str:
    """"per 1000" or "per package" in the current language: what a price is per."""
    if form_for(service.type).pricing is Pricing.PER_PACKAGE:
        # i18n: what a price is for: one package of the service
        return _("per package")
    # i18n: what a price is for: 1000 units (followers, likes…)
    return _("per 1000")


def storefront(deps: Deps, index: ServiceIndex, prices: PriceList) -> ServiceIndex:
    """The catalogue as customers see it: only what is sold, each at the customer's price
    (built once per catalogue and price list)."""
    cached = deps.state.get(_STOREFRONT)
    if (isinstance(cached, tuple) and len(cached) == 3 and cached[0] is index
            and cached[1] is prices and isinstance(cached[2], ServiceIndex)):
        return cached[2]
    shown = []
    for service in index.services:
        unit = prices.unit_price(service)
        if unit is not None:
            shown.append(dataclasses.replace(service, rate=unit))
    view = ServiceIndex(tuple(shown), index.currency, index.fetched_at)
    deps.state[_STOREFRONT] = (index, prices, view)
    return view
