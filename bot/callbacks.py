"""Callback data of every inline button: short prefixes, always within Telegram's 64 bytes.

Each feature owns its prefixes; the patterns below are what the handlers match:
  menu                      the main menu
  bal                       balance
  cat:<page>                catalogue: categories page
  cs:<category>:<page>      catalogue: a category's services (category = its index)
  sr:<page>                 catalogue: search results page (query kept in user_data)
  svc:<service id>          a service's card
  new:<service id>          start the order wizard for a service
  wz:<action>[:<arg>]       order wizard: skip, back, delay:<n>, confirm:<draft>, edit, cancel
  ol:<page>                 orders list
  oc:<order id>[:<act>]     an order's card and its actions (refresh, refill, refills, cancel,
                            ag = order again: the wizard's)
  sh:<service id>           a service's Share link
  mo:<action>:<batch>       mass order: go (confirm / send the rest), ed (edit), x (cancel),
                            rs (results)
  tp:<w|o|a:<amt>|d:<id>>   Stars top-ups: wallet's button, other amount, an amount, a summary's
  rf:<top-up id>[:y]        an admin's refund of a Stars payment, and its confirmation
"""

from __future__ import annotations

from bot.money import parse_whole

MAX_BYTES = 64


def pack(*parts: object) -> str:
    """Joins parts with ':' and checks Telegram's 64-byte limit."""
    data = ":".join(str(p) for p in parts)
    if not 1 <= len(data.encode()) <= MAX_BYTES:
        raise ValueError(f"callback data of {len(data.encode())} bytes: {data[:20]}…")
    return data


def unpack(data: str | None) -> list[str]:
    """Splits callback data into its parts."""
    return (data or "").split(":")


def int_arg(parts: list[str], index: int) -> int | None:
    """The part at `index` as a non-negative int, or None when absent or malformed (forged)."""
    return parse_whole(parts[index]) if index < len(parts) else None
