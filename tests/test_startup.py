"""Start-up as a newcomer meets it: no library warnings, and one plain line when Telegram cannot
be reached or refuses the token."""

from __future__ import annotations

import warnings
from pathlib import Path

from tests.conftest import start_harness, stop_harness


async def test_start_up_raises_no_library_warnings(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        harness = await start_harness(tmp_path, SECRET_KEY="a-secret-key-for-the-startup-test")
        await stop_harness(harness)
    shown = [f"{w.category.__name__} at {w.filename}:{w.lineno}: {w.message}" for w in caught]
    assert shown == []
