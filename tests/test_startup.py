"""Start-up as a newcomer meets it: no library warnings, and one plain line when Telegram cannot
be reached or refuses the token."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

from bot.standin.botapi import FakeTelegramServer
from tests.conftest import start_harness, stop_harness

REPO_ROOT = Path(__file__).resolve().parents[1]


async def test_start_up_raises_no_library_warnings(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        harness = await start_harness(tmp_path, SECRET_KEY="a-secret-key-for-the-startup-test")
        await stop_harness(harness)
    shown = [f"{w.category.__name__} at {w.filename}:{w.lineno}: {w.message}" for w in caught]
    assert shown == []


# --- Telegram unreachable, or the token refused ---------------------------------------------

TOKEN = "424242:STARTUP-token-must-never-be-printed"


def run_bot(tmp_path: Path, base_url: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot` in demo mode against `base_url`, in a clean environment."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "VIRTUAL_ENV")
           if name in os.environ}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [
        os.environ.get("PYTHONPATH")])])
    env.update({"BOT_TOKEN": TOKEN, "TELEGRAM_BASE_URL": base_url,
                "DATABASE_PATH": str(tmp_path / "bot.sqlite3")})
    return subprocess.run([sys.executable, "-m", "bot"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def the_one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The line that says why the bot stopped; fails unless there is exactly one, no traceback,
    and the token is nowhere in what was printed."""
    printed = result.stdout + result.stderr
    assert "Traceback" not in printed, printed
    assert TOKEN not in printed and TOKEN.split(":")[1] not in printed, printed
    # Besides that line, only the bot's own log lines (timestamp, level, logger) may be there.
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and not re.match(r"\d{4}-\d\d-\d\d [\d:,]+ (INFO|WARNING) ", line)]
    assert len(lines) == 1, result.stderr
    return lines[0]


def closed_port() -> int:
    """A local TCP port nobody listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_telegram_unreachable_says_so_in_one_line_and_exits_non_zero(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_bot(tmp_path, f"http://127.0.0.1:{closed_port()}/bot")
    assert result.returncode not in (0, None)
    line = the_one_line(result)
    assert "reach Telegram" in line and "TELEGRAM_BASE_URL" in line and "network" in line
    assert time.monotonic() - started < 30


def test_a_refused_token_names_bot_token_and_never_prints_it(tmp_path: Path) -> None:
    with FakeTelegramServer() as server:
        server.world.refused_tokens.add(TOKEN)
        result = run_bot(tmp_path, server.base_url)
        assert server.world.calls_to("getMe"), "the bot never asked Telegram"
    assert result.returncode not in (0, None)
    line = the_one_line(result)
    assert "BOT_TOKEN" in line and "refused" in line
