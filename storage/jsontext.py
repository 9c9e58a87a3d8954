"""JSON text exactly as the standard library's encoder writes it, with its C encoder made once.

`json.JSONEncoder.encode` builds its C encoder again at every call, which was two thirds of the
cost of encoding a small value, and the bot encodes thousands: a notification's payload for
every status change the tracker tells, the persistence's data on every update.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from typing import Any


def tree_encoder(*, ensure_ascii: bool = True,
                 separators: tuple[str, str] = (", ", ": ")) -> Callable[[Any], str]:
    """``json.JSONEncoder(ensure_ascii=…, separators=…, check_circular=False).encode``: the same
    text (a value it cannot write raises the same TypeError), for trees, which have no cycles
    to look for."""
    plain = json.JSONEncoder(ensure_ascii=ensure_ascii, check_circular=False,
                             separators=separators)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return plain.encode
    strings = (json.encoder.encode_basestring_ascii if ensure_ascii
               else json.encoder.encode_basestring)
    item_separator, key_separator = separators
    run = make(None, plain.default, strings, None, key_separator, item_separator,
               False, False, True)  # sort_keys, skipkeys, allow_nan: JSONEncoder's defaults
    return lambda value: "".join(run(value, 0))
