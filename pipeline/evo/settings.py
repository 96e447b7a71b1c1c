"""Connection and paging settings of the Evo Voice client, read from the environment.

The client takes an :class:`EvoVoiceSettings`; Dagster builds it from ``dg.EnvVar`` in
``pipeline/resources.py`` and plain scripts call :meth:`EvoVoiceSettings.from_env`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from pipeline.evo.errors import ConfigError

# Retry policy, written once. Every request has both timeouts; retries back off exponentially
# from INITIAL_RETRY_DELAY, capped at MAX_RETRY_DELAY, with full jitter; a server's Retry-After
# is honoured up to MAX_RETRY_AFTER.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
MAX_ATTEMPTS = 8
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 30.0
MAX_RETRY_AFTER = 300.0

DEFAULT_PAGE_SIZE = 100
DEFAULT_CONCURRENCY = 4
# The vendor CLI says sessions move to the archive after "about 15 days"; days older than
# this (minus a safety margin) are read from both stores.
DEFAULT_ARCHIVE_AFTER_DAYS = 15


class EvoVoiceSettings(BaseModel):
    """Everything the client needs to reach one Evo Voice deployment."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    username: str = ""
    password: SecretStr = SecretStr("")
    auth: Literal["credentials", "basic"] = "credentials"
    account_ids: tuple[str, ...] = ()
    timezone: str = "UTC"
    page_size: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=10_000)
    concurrency: int = Field(DEFAULT_CONCURRENCY, ge=1, le=64)
    archive_after_days: int = Field(DEFAULT_ARCHIVE_AFTER_DAYS, ge=1)
    connect_timeout: float = Field(DEFAULT_CONNECT_TIMEOUT, gt=0)
    read_timeout: float = Field(DEFAULT_READ_TIMEOUT, gt=0)
    max_attempts: int = Field(MAX_ATTEMPTS, ge=1)
    initial_retry_delay: float = Field(INITIAL_RETRY_DELAY, ge=0)
    max_retry_delay: float = Field(MAX_RETRY_DELAY, ge=0)
    max_retry_after: float = Field(MAX_RETRY_AFTER, ge=0)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("EVO_VOICE_BASE_URL must start with http:// or https://")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"EVO_VOICE_TIMEZONE={value!r} is not an IANA zone name (e.g. America/Chicago)"
            ) from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EvoVoiceSettings:
        """Build settings from ``EVO_VOICE_*`` variables; raise :class:`ConfigError` naming
        the variable to fix."""
        env = os.environ if environ is None else environ
        base_url = env.get("EVO_VOICE_BASE_URL", "").strip()
        if not base_url:
            raise ConfigError("EVO_VOICE_BASE_URL is not set (e.g. https://evovoice.io)")
        raw = env_settings_fields(env)
        raw.update(
            base_url=base_url,
            username=env.get("EVO_VOICE_USERNAME", ""),
            password=env.get("EVO_VOICE_PASSWORD", ""),
        )
        return build_settings(raw)


_NUMERIC_ENV = {
    "page_size": "EVO_VOICE_PAGE_SIZE",
    "concurrency": "EVO_VOICE_CONCURRENCY",
    "archive_after_days": "EVO_VOICE_ARCHIVE_AFTER_DAYS",
    "read_timeout": "EVO_VOICE_READ_TIMEOUT",
    "max_attempts": "EVO_VOICE_MAX_ATTEMPTS",
}
_FIELD_TO_ENV = {
    "base_url": "EVO_VOICE_BASE_URL",
    "username": "EVO_VOICE_USERNAME",
    "password": "EVO_VOICE_PASSWORD",
    "auth": "EVO_VOICE_AUTH",
    "account_ids": "EVO_VOICE_ACCOUNT_IDS",
    "timezone": "EVO_VOICE_TIMEZONE",
    **_NUMERIC_ENV,
}


def env_settings_fields(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The non-secret settings that are set in the environment (unset ones keep defaults)."""
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {
        "auth": env.get("EVO_VOICE_AUTH", "credentials").strip().lower() or "credentials",
        "account_ids": split_csv(env.get("EVO_VOICE_ACCOUNT_IDS", "")),
        "timezone": env.get("EVO_VOICE_TIMEZONE", "UTC").strip() or "UTC",
    }
    for field, var in _NUMERIC_ENV.items():
        if env.get(var, "").strip():
            raw[field] = env[var].strip()
    return raw


def build_settings(raw: Mapping[str, object]) -> EvoVoiceSettings:
    """Validate ``raw`` into settings; a bad value raises a one-line :class:`ConfigError`
    naming its environment variable (and never echoing the password)."""
    try:
        return EvoVoiceSettings.model_validate(dict(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        var = _FIELD_TO_ENV.get(field, field)
        message = first["msg"].removeprefix("Value error, ")
        if field == "auth":
            message = "must be 'credentials' or 'basic'"
        raise ConfigError(f"{var}: {message}") from None


def split_csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())
