"""Thin Dagster resources: configuration in, a plain client / lake / warehouse out."""

from __future__ import annotations

import dagster as dg

from pipeline import config
from pipeline.evo.client import EvoVoiceClient, RateGate
from pipeline.evo.settings import EvoVoiceSettings, build_settings, split_csv
from pipeline.lake.store import Lake
from pipeline.lake.warehouse import Warehouse

# One budget per process: a 429 seen by any day's fetch slows every other fetch too.
_SHARED_RATE_GATE = RateGate()


class EvoVoiceResource(dg.ConfigurableResource):
    """Connection settings for the Evo Voice API; hands out :class:`EvoVoiceClient`s."""

    base_url: str
    username: str
    password: str
    auth: str = "credentials"
    account_ids: str = ""
    timezone: str = "UTC"
    page_size: int = 100
    concurrency: int = 4
    archive_after_days: int = 15
    max_attempts: int = 8

    def settings(self) -> EvoVoiceSettings:
        return build_settings(
            {
                "base_url": self.base_url,
                "username": self.username,
                "password": self.password,
                "auth": (self.auth or "credentials").lower(),
                "account_ids": split_csv(self.account_ids),
                "timezone": self.timezone or "UTC",
                "page_size": self.page_size,
                "concurrency": self.concurrency,
                "archive_after_days": self.archive_after_days,
                "max_attempts": self.max_attempts,
            }
        )

    def get_client(self) -> EvoVoiceClient:
        return EvoVoiceClient(self.settings(), rate_gate=_SHARED_RATE_GATE)


class WarehouseResource(dg.ConfigurableResource):
    """Where the Parquet lake and the DuckDB warehouse live."""

    data_dir: str
    lake_uri: str = ""

    def lake(self) -> Lake:
        return Lake(self.lake_uri or f"{self.data_dir}/lake")

    def warehouse(self) -> Warehouse:
        return Warehouse(f"{self.data_dir}/warehouse.duckdb")


def evo_voice_resource_from_env() -> EvoVoiceResource:
    return EvoVoiceResource(
        base_url=dg.EnvVar("EVO_VOICE_BASE_URL"),
        username=dg.EnvVar("EVO_VOICE_USERNAME"),
        password=dg.EnvVar("EVO_VOICE_PASSWORD"),
        auth=config.env_str("EVO_VOICE_AUTH", "credentials"),
        account_ids=config.env_str("EVO_VOICE_ACCOUNT_IDS", ""),
        timezone=config.timezone_name(),
        page_size=config.env_int("EVO_VOICE_PAGE_SIZE", 100),
        concurrency=config.env_int("EVO_VOICE_CONCURRENCY", 4),
        archive_after_days=config.env_int("EVO_VOICE_ARCHIVE_AFTER_DAYS", 15),
        max_attempts=config.env_int("EVO_VOICE_MAX_ATTEMPTS", 8),
    )


def warehouse_resource_from_env() -> WarehouseResource:
    return WarehouseResource(data_dir=str(config.data_dir()), lake_uri=config.lake_uri())
