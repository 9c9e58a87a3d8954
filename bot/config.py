"""Settings, read from the environment and `.env` (the names are the bot's public interface)."""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

IdList = Annotated[frozenset[int], NoDecode]

# What to put in each setting, said when it is missing or wrong.
HINTS: dict[str, str] = {
    "BOT_TOKEN": "the token @BotFather gave you, e.g. BOT_TOKEN=123456:ABC-DEF",
    "TELEGRAM_BASE_URL": "a URL such as https://api.telegram.org/bot or http://127.0.0.1:8081/bot",
    "PANEL_URL": "the panel's API v2 URL, e.g. https://fortunesmm.com/api/v2, or leave it unset "
    "for demo mode",
    "PANEL_KEY": "the API key from your panel's account page",
    "DEFAULT_LANGUAGE": "the language of users who chose none and whose Telegram language the "
    "bot does not speak: one of the codes in bot/locales (en, ru, es, pt_BR, ar, fa, hi, id, tr, "
    "uz_Latn), e.g. DEFAULT_LANGUAGE=en",
    "DATABASE_PATH": "a file path, e.g. data/bot.sqlite3",
    "ADMIN_IDS": "comma-separated Telegram user ids, e.g. ADMIN_IDS=12345,67890",
    "ALLOWED_USER_IDS": "comma-separated Telegram user ids, e.g. ALLOWED_USER_IDS=12345,67890",
    "STATUS_POLL_INTERVAL": "a number of seconds ≥ 1, e.g. STATUS_POLL_INTERVAL=60",
    "SECRET_KEY": "a long random string, e.g. from: python -c 'import secrets; "
    "print(secrets.token_urlsafe(32))'",
    "LOG_LEVEL": "one of DEBUG, INFO, WARNING, ERROR",
    "ORDER_TIMEOUT": "minutes (> 0) before an abandoned order wizard ends, e.g. ORDER_TIMEOUT=15",
    "CATALOG_TTL": "seconds the services list is cached, e.g. CATALOG_TTL=3600",
    "SANDBOX_SPEED": "a number > 0; 1 = demo orders finish in about two minutes",
    "SANDBOX_LATENCY": "seconds ≥ 0 the sandbox panel waits before answering",
    "RATE_LIMIT_PER_MINUTE": "a whole number ≥ 1, e.g. RATE_LIMIT_PER_MINUTE=10",
    "WEBHOOK_URL": "the public https URL Telegram sends updates to, on port 443, 80, 88 or 8443, "
    "e.g. https://bot.example.com/telegram, or leave it unset for long polling",
    "WEBHOOK_LISTEN": "the local address to listen on, e.g. 0.0.0.0 or 127.0.0.1",
    "WEBHOOK_PORT": "the local port (1-65535) the reverse proxy forwards to, e.g. 8080",
    "WEBHOOK_SECRET": "1-256 characters of A-Z a-z 0-9 _ - (required with WEBHOOK_URL), e.g. "
    "from: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
    "HEALTH_PORT": "a local port (1-65535) for /healthz and /metrics in polling mode, e.g. 8081, "
    "or leave it unset",
    "MODE": "team (people order with the panel account) or shop (a storefront with wallets); "
    "shop needs PANEL_KEY unless in demo mode",
    "MARKUP_PERCENT": "a percentage ≥ 0 added to the panel's rates in shop mode, e.g. "
    "MARKUP_PERCENT=30",
    "LOW_BALANCE_ALERT": "an amount ≥ 0 in the panel's currency, e.g. LOW_BALANCE_ALERT=20, or "
    "leave it unset",
    "STARS_PER_UNIT": "how many Telegram Stars one unit of the shop's currency costs, e.g. "
    "STARS_PER_UNIT=77 (a number > 0), or leave it unset to turn Stars top-ups off",
    "TOPUP_MIN": "the smallest top-up in the shop's currency, e.g. TOPUP_MIN=1",
    "TOPUP_MAX": "the largest top-up in the shop's currency (one invoice asks at most "
    "10,000 Stars, so TOPUP_MAX × STARS_PER_UNIT ≤ 10000), e.g. TOPUP_MAX=100, or leave it "
    "unset for as much as one invoice can ask",
    "TOPUP_AMOUNTS": "comma-separated amounts offered as buttons, each within TOPUP_MIN and "
    "TOPUP_MAX, e.g. TOPUP_AMOUNTS=1,5,10,25,50",
    "PAYSUPPORT_TEXT": "the text /paysupport answers, or @path/to/a/file.txt holding it, or leave "
    "it unset for the built-in text",
    "TERMS_TEXT": "the text /terms answers, or @path/to/a/file.txt holding it, or leave it unset "
    "for the built-in text",
}

#: The ports Telegram delivers webhooks to.
WEBHOOK_PORTS = frozenset({443, 80, 88, 8443})
_WEBHOOK_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: Paths the bot's own HTTP server answers besides the webhook.
RESERVED_PATHS = frozenset({"/healthz", "/metrics"})
#: The most Telegram Stars one invoice may ask (Telegram's limit for XTR).
MAX_INVOICE_STARS = 10_000
DEFAULT_TOPUP_AMOUNTS = (Decimal(1), Decimal(5), Decimal(10), Decimal(25), Decimal(50))
AmountList = Annotated[tuple[Decimal, ...], NoDecode]


class ConfigError(Exception):
    """A setting is missing or invalid; the text names it and says what to put there."""


class Settings(BaseSettings):
    """Everything the bot reads from its environment."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        hide_input_in_errors=True,
    )

    bot_token: SecretStr = Field(alias="BOT_TOKEN")
    telegram_base_url: str = Field("https://api.telegram.org/bot", alias="TELEGRAM_BASE_URL")
    panel_url: str | None = Field(None, alias="PANEL_URL")
    panel_key: SecretStr | None = Field(None, alias="PANEL_KEY")
    database_path: Path = Field(Path("data/bot.sqlite3"), alias="DATABASE_PATH")
    admin_ids: IdList = Field(frozenset(), alias="ADMIN_IDS")
    allowed_user_ids: IdList = Field(frozenset(), alias="ALLOWED_USER_IDS")
    status_poll_interval: float = Field(60.0, ge=1, alias="STATUS_POLL_INTERVAL")
    secret_key: SecretStr | None = Field(None, alias="SECRET_KEY")
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    order_timeout: float = Field(15.0, gt=0, alias="ORDER_TIMEOUT")
    catalog_ttl: float = Field(3600.0, ge=0, alias="CATALOG_TTL")
    sandbox_speed: float = Field(1.0, gt=0, alias="SANDBOX_SPEED")
    sandbox_latency: float = Field(0.0, ge=0, alias="SANDBOX_LATENCY")
    rate_limit_per_minute: int = Field(10, ge=1, alias="RATE_LIMIT_PER_MINUTE")
    webhook_url: str | None = Field(None, alias="WEBHOOK_URL")
    webhook_listen: str = Field("0.0.0.0", min_length=1, alias="WEBHOOK_LISTEN")
    webhook_port: int = Field(8080, ge=1, le=65535, alias="WEBHOOK_PORT")
    # Checked against WEBHOOK_URL (declared before it), also when unset.
    webhook_secret: SecretStr | None = Field(None, alias="WEBHOOK_SECRET", validate_default=True)
    health_port: int | None = Field(None, ge=1, le=65535, alias="HEALTH_PORT")
    # Shop mode (bot/services/pricing.py, bot/services/wallet.py). After panel_key: MODE's
    # check reads it.
    mode: Literal["team", "shop"] = Field("team", alias="MODE")
    markup_percent: Decimal = Field(Decimal(30), ge=0, le=100_000, alias="MARKUP_PERCENT")
    low_balance_alert: Decimal | None = Field(None, ge=0, alias="LOW_BALANCE_ALERT")
    # Top-ups with Telegram Stars (bot/services/payments.py), in this order: each check reads
    # the ones before it.
    stars_per_unit: Decimal | None = Field(None, gt=0, le=1_000_000, alias="STARS_PER_UNIT")
    topup_min: Decimal = Field(Decimal(1), gt=0, alias="TOPUP_MIN")
    topup_max: Decimal | None = Field(None, gt=0, alias="TOPUP_MAX")
    topup_amounts: AmountList = Field(DEFAULT_TOPUP_AMOUNTS, alias="TOPUP_AMOUNTS")
    paysupport_text: str | None = Field(None, alias="PAYSUPPORT_TEXT")
    terms_text: str | None = Field(None, alias="TERMS_TEXT")
    # bot/i18n.py: the language of a user who chose none and whose Telegram language is unknown
    default_language: str = Field("en", alias="DEFAULT_LANGUAGE")

    @field_validator("default_language", mode="before")
    @classmethod
    def _known_language(cls, value: object) -> object:
        """Reads "pt-BR", "pt_br" or "ru"; only a language the bot has a catalog for."""
        if isinstance(value, str):
            from bot.i18n import best_language, languages

            value = value.strip() or "en"
            found = best_language(value)
            if found is None:
                raise ValueError(f"no catalog for it (the bot speaks {', '.join(languages())})")
            return found
        return value

    @field_validator("admin_ids", "allowed_user_ids", mode="before")
    @classmethod
    def _parse_ids(cls, value: object) -> object:
        """Reads "1, 2,3" as {1, 2, 3}."""
        if isinstance(value, str):
            parts = [p for p in value.replace(";", ",").replace(" ", ",").split(",") if p]
            return frozenset(int(p) for p in parts)
        if isinstance(value, int):
            return frozenset({value})
        return value

    @field_validator("panel_url", "telegram_base_url", mode="before")
    @classmethod
    def _check_url(cls, value: object) -> object:
        """Accepts only http(s) URLs; an empty PANEL_URL means demo mode."""
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
            if not value.startswith(("http://", "https://")):
                raise ValueError("must start with http:// or https://")
        return value

    @field_validator("panel_key", "secret_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """Treats an empty secret as unset."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _check_webhook_url(cls, value: object) -> object:
        """An https URL on a port Telegram delivers to; empty means long polling."""
        if not isinstance(value, str):
            return value
        value = value.strip()
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be an https:// URL")
        try:
            port = parts.port or 443
        except ValueError:
            raise ValueError("has a bad port") from None
        if port not in WEBHOOK_PORTS:
            raise ValueError("Telegram only delivers to ports 443, 80, 88 and 8443")
        if (parts.path or "/") in RESERVED_PATHS:
            raise ValueError("its path is taken by /healthz or /metrics")
        return value

    @field_validator("health_port", mode="before")
    @classmethod
    def _empty_port_is_none(cls, value: object) -> object:
        """An empty HEALTH_PORT means off."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _check_webhook_secret(cls, value: object, info: ValidationInfo) -> object:
        """Required with WEBHOOK_URL; the characters Telegram allows (never echoed)."""
        if isinstance(value, str) and not value.strip():
            value = None
        if value is None:
            if info.data.get("webhook_url"):
                raise PydanticCustomError("missing", "required with WEBHOOK_URL")
            return None
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if not _WEBHOOK_SECRET_RE.fullmatch(text):
            raise ValueError("must be 1-256 characters of A-Z a-z 0-9 _ -")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _check_level(cls, value: object) -> object:
        """Accepts the standard logging level names, any case."""
        level = str(value).strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("unknown level")
        return level

    @field_validator("mode", mode="before")
    @classmethod
    def _check_mode(cls, value: object, info: ValidationInfo) -> object:
        """Reads "Shop" as "shop"; shop mode sells through the operator's PANEL_KEY."""
        if isinstance(value, str):
            value = value.strip().lower() or "team"
        if (value == "shop" and info.data.get("panel_url") is not None
                and info.data.get("panel_key") is None):
            raise ValueError("shop mode orders through the operator's account: set PANEL_KEY")
        return value

    @field_validator("markup_percent", "low_balance_alert", mode="before")
    @classmethod
    def _exact_number(cls, value: object, info: ValidationInfo) -> object:
        """Reads "30" or "12.5" exactly (never through a float); empty means unset/default."""
        if isinstance(value, float):
            raise ValueError("give it as text, e.g. 30 or 12.5")
        if isinstance(value, str):
            value = value.strip().rstrip("%").strip()
            if not value:
                return Decimal(30) if info.field_name == "markup_percent" else None
        return value

    @field_validator("stars_per_unit", "topup_min", "topup_max", mode="before")
    @classmethod
    def _exact_amount(cls, value: object, info: ValidationInfo) -> object:
        """Reads "77" or "0.5" exactly (never through a float); empty means unset/default."""
        if isinstance(value, float):
            raise ValueError("give it as text, e.g. 10 or 0.5")
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return Decimal(1) if info.field_name == "topup_min" else None
        return value

    @field_validator("topup_max")
    @classmethod
    def _check_max(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        """At least TOPUP_MIN, and within what one invoice can ask at STARS_PER_UNIT."""
        low, rate = info.data.get("topup_min"), info.data.get("stars_per_unit")
        if value is not None and low is not None and value < low:
            raise ValueError(f"less than TOPUP_MIN ({low})")
        if value is not None and rate is not None and stars_for(value, rate) > MAX_INVOICE_STARS:
            raise ValueError(f"{value} × {rate} is more than the {MAX_INVOICE_STARS:,} Stars "
                             "one invoice can ask")
        if low is not None and rate is not None and stars_for(low, rate) > MAX_INVOICE_STARS:
            raise ValueError(f"even TOPUP_MIN ({low}) is more than one invoice can ask")
        return value

    @field_validator("topup_amounts", mode="before")
    @classmethod
    def _parse_amounts(cls, value: object) -> object:
        """Reads "1, 5,10" as (1, 5, 10), exactly; empty means the default."""
        if isinstance(value, str):
            parts = [p for p in value.replace(";", ",").replace(" ", ",").split(",") if p]
            if not parts:
                return DEFAULT_TOPUP_AMOUNTS
            try:
                amounts = tuple(Decimal(p) for p in parts)
            except InvalidOperation:
                raise ValueError("not a list of amounts") from None
            if not all(a.is_finite() and a > 0 for a in amounts):
                raise ValueError("every amount must be more than zero")
            return tuple(sorted(set(amounts)))
        return value

    @field_validator("topup_amounts")
    @classmethod
    def _check_amounts(cls, value: tuple[Decimal, ...],
                       info: ValidationInfo) -> tuple[Decimal, ...]:
        """Every amount offered is one a customer may top up (the default list is cut to fit)."""
        low, high = info.data.get("topup_min"), info.data.get("topup_max")
        rate = info.data.get("stars_per_unit")
        if value == DEFAULT_TOPUP_AMOUNTS:  # the default (or the same list): cut to fit
            return tuple(a for a in value if (low is None or a >= low)
                         and (high is None or a <= high)
                         and (rate is None or stars_for(a, rate) <= MAX_INVOICE_STARS))
        if len(value) > 12:
            raise ValueError("at most 12 amounts")
        for amount in value:
            if low is not None and amount < low:
                raise ValueError(f"{amount} is less than TOPUP_MIN ({low})")
            if high is not None and amount > high:
                raise ValueError(f"{amount} is more than TOPUP_MAX ({high})")
            if rate is not None and stars_for(amount, rate) > MAX_INVOICE_STARS:
                raise ValueError(f"{amount} × {rate} is more than the {MAX_INVOICE_STARS:,} "
                                 "Stars one invoice can ask")
        return value

    @field_validator("paysupport_text", "terms_text", mode="before")
    @classmethod
    def _text_or_file(cls, value: object) -> object:
        """A text, or "@path" naming a UTF-8 file that holds it; empty means the default."""
        if not isinstance(value, str):
            return value
        value = value.strip()
        if not value:
            return None
        if value.startswith("@"):
            try:
                value = Path(value[1:].strip()).expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"cannot read {value[1:].strip()}: "
                                 f"{exc.strerror or type(exc).__name__}") from None
            except UnicodeDecodeError:
                raise ValueError(f"{value[1:].strip()} is not UTF-8 text") from None
            if not value:
                raise ValueError("the file is empty")
        if len(value) > 3500:
            raise ValueError("longer than 3500 characters")
        return value

    @property
    def stars_enabled(self) -> bool:
        """True when customers can top up their wallet with Telegram Stars (STARS_PER_UNIT)."""
        return self.shop_mode and self.stars_per_unit is not None

    @property
    def shop_mode(self) -> bool:
        """True in shop mode: everyone is a customer paying from a wallet in the bot."""
        return self.mode == "shop"

    @property
    def demo_mode(self) -> bool:
        """True when no PANEL_URL is set: the built-in sandbox panel serves every order."""
        return self.panel_url is None

    @property
    def webhook_path(self) -> str | None:
        """The path of WEBHOOK_URL the bot listens on (None in polling mode)."""
        if self.webhook_url is None:
            return None
        return urlsplit(self.webhook_url).path or "/"


class DatabaseSettings(BaseSettings):
    """DATABASE_PATH alone, for `smm-bot backup` and `restore` (they need no BOT_TOKEN)."""

    model_config = Settings.model_config

    database_path: Path = Field(Path("data/bot.sqlite3"), alias="DATABASE_PATH")


def load_database_path(**overrides: object) -> Path:
    """DATABASE_PATH from the environment or `.env`; ConfigError as for `load_settings`."""
    try:
        return DatabaseSettings(**overrides).database_path  # type: ignore[arg-type]
    except ValidationError:
        raise ConfigError(f"Setting DATABASE_PATH is invalid: set it to "
                          f"{HINTS['DATABASE_PATH']}.") from None


def stars_for(amount: Decimal, rate: Decimal) -> int:
    """The whole Stars an amount costs at `rate` Stars per unit: rounded up, at least 1."""
    return max(1, int((amount * rate).to_integral_value(rounding=ROUND_CEILING)))


def load_settings(**overrides: object) -> Settings:
    """Reads the settings; raises ConfigError naming the first bad setting and what to put."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]).upper() if error["loc"] else "a setting"
        problem = "is missing" if error["type"] == "missing" else "is invalid"
        if error["type"] != "missing":
            problem += f" ({error['msg']})"
        hint = HINTS.get(name, "see .env.example")
        raise ConfigError(f"Setting {name} {problem}: set it to {hint}.") from None
