"""Settings: a bad or missing setting stops the bot with one line that says what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings


def run_bot(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Runs `python -m bot` with only these settings; returns what it printed."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-m", "bot"], env={**base, **env}, cwd=cwd, capture_output=True,
        text=True, timeout=60,
    )


def test_missing_token_exits_2_with_one_line_naming_it(tmp_path: Path) -> None:
    result = run_bot({}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "BOT_TOKEN" in lines[0] and "@BotFather" in lines[0]
    assert "Traceback" not in result.stderr


def test_invalid_interval_names_the_setting_and_never_prints_the_token(tmp_path: Path) -> None:
    result = run_bot({"BOT_TOKEN": "999:SECRET-TOKEN-VALUE", "STATUS_POLL_INTERVAL": "0"},
                     tmp_path)
    assert result.returncode == 2
    assert "STATUS_POLL_INTERVAL" in result.stderr
    assert "SECRET-TOKEN-VALUE" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("name", "value"),
    [("PANEL_URL", "ftp://x"), ("ADMIN_IDS", "12,abc"), ("LOG_LEVEL", "LOUD")],
)
def test_each_invalid_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(_env_file=None, BOT_TOKEN="1:x", **{name: value})


def test_secrets_are_hidden_in_repr_and_ids_parsed() -> None:
    settings = load_settings(_env_file=None, BOT_TOKEN="1:topsecret", PANEL_KEY="panelsecret",
                             ADMIN_IDS="1, 2;3", STATUS_POLL_INTERVAL="1")
    text = repr(settings) + str(settings)
    assert "topsecret" not in text and "panelsecret" not in text
    assert settings.admin_ids == frozenset({1, 2, 3})
    assert settings.status_poll_interval == 1
    assert settings.demo_mode


def test_env_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("BOT_TOKEN=5:fromfile\nPANEL_URL=https://p.example/api/v2\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.bot_token.get_secret_value() == "5:fromfile"
    assert not settings.demo_mode


@pytest.mark.parametrize(("values", "name", "why"), [
    ({"STARS_PER_UNIT": "0"}, "STARS_PER_UNIT", "greater than 0"),
    ({"STARS_PER_UNIT": "lots"}, "STARS_PER_UNIT", "invalid"),
    ({"STARS_PER_UNIT": "77", "TOPUP_MAX": "200"}, "TOPUP_MAX", "10,000 Stars"),
    ({"TOPUP_MIN": "5", "TOPUP_MAX": "2"}, "TOPUP_MAX", "less than TOPUP_MIN"),
    ({"TOPUP_AMOUNTS": "1,x"}, "TOPUP_AMOUNTS", "not a list of amounts"),
    ({"TOPUP_MIN": "5", "TOPUP_AMOUNTS": "1,10"}, "TOPUP_AMOUNTS", "less than TOPUP_MIN"),
    ({"STARS_PER_UNIT": "1000", "TOPUP_AMOUNTS": "5,50"}, "TOPUP_AMOUNTS", "10,000 Stars"),
    ({"TERMS_TEXT": "@/no/such/file.txt"}, "TERMS_TEXT", "cannot read"),
])
def test_stars_settings_are_checked_and_named(values: dict[str, str], name: str,
                                              why: str) -> None:
    with pytest.raises(ConfigError, match=name) as caught:
        load_settings(_env_file=None, BOT_TOKEN="1:x", **values)
    assert why in str(caught.value)


def test_stars_settings_defaults_and_exact_values(tmp_path: Path) -> None:
    settings = load_settings(_env_file=None, BOT_TOKEN="1:x", MODE="shop")
    assert settings.stars_per_unit is None and not settings.stars_enabled
    assert settings.topup_amounts == tuple(Decimal(a) for a in (1, 5, 10, 25, 50))
    text = tmp_path / "support.txt"
    text.write_text("Mail help@example.com\n", encoding="utf-8")
    settings = load_settings(_env_file=None, BOT_TOKEN="1:x", MODE="shop",
                             STARS_PER_UNIT="76.9", TOPUP_MIN="", TOPUP_AMOUNTS="25, 5",
                             PAYSUPPORT_TEXT=f"@{text}")
    assert settings.stars_per_unit == Decimal("76.9") and settings.stars_enabled
    assert settings.topup_min == 1 and settings.topup_amounts == (Decimal(5), Decimal(25))
    assert settings.paysupport_text == "Mail help@example.com"
    # The default amounts are cut to what fits, not refused.
    settings = load_settings(_env_file=None, BOT_TOKEN="1:x", STARS_PER_UNIT="1000")
    assert settings.topup_amounts == (Decimal(1), Decimal(5), Decimal(10))
