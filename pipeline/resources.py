"""Thin Dagster resources: configuration in, a plain client / lake / warehouse out."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pipeline import config
from pipeline.evo.client import EvoVoiceClient, RateGate
from pipeline.evo.settings import (
    EvoVoiceSettings,
    build_settings,
    env_settings_fields,
    split_csv,
)
from pipeline.lake.store import Lake
from pipeline.lake.warehouse import Warehouse

# One budget per process: a 429 seen by any day's fetch slows every other fetch too.
_SHARED_RATE_GATE = RateGate()


class EvoVoiceResource(dg.ConfigurableResource):
    """Connection settings for the Evo Voice API; hands out :class:`EvoVoiceClient`s.

    Fields left unset are read from their ``EVO_VOICE_*`` variable when the run starts (see
    :meth:`EvoVoiceSettings.from_env`), so one code location serves every environment.
    """

    base_url: str
    username: str
    password: str
    auth: str | None = None
    account_ids: str | None = None
    timezone: str | None = None
    page_size: int | None = None
    concurrency: int | None = None
    archive_after_days: int | None = None
    read_timeout: float | None = None
    max_attempts: int | None = None

    def settings(self) -> EvoVoiceSettings:
        raw = env_settings_fields()
        raw.update(
            {"base_url": self.base_url, "username": self.username, "password": self.password}
        )
        for name in (
            "auth",
            "timezone",
            "page_size",
            "concurrency",
            "archive_after_days",
            "read_timeout",
            "max_attempts",
        ):
            value = getattr(self, name)
            if value is not None:
                raw[name] = value
        if self.account_ids is not None:
            raw["account_ids"] = split_csv(self.account_ids)
        return build_settings(raw)

    def get_client(self) -> EvoVoiceClient:
        return EvoVoiceClient(self.settings(), rate_gate=_SHARED_RATE_GATE)


class WarehouseResource(dg.ConfigurableResource):
    """Where the Parquet lake and the DuckDB warehouse live. Empty fields mean: read
    ``EVO_DATA_DIR`` / ``EVO_LAKE_URI`` when the run starts (defaults ``data/``, ``data/lake``)."""

    data_dir: str = ""
    lake_uri: str = ""

    def data_path(self) -> Path:
        return Path(self.data_dir).resolve() if self.data_dir else config.data_dir()

    def lake(self) -> Lake:
        if self.lake_uri:
            return Lake(self.lake_uri)
        return Lake(str(self.data_path() / "lake") if self.data_dir else config.lake_uri())

    def warehouse(self) -> Warehouse:
        return Warehouse(self.data_path() / "warehouse.duckdb", self.lake())


def evo_voice_resource_from_env() -> EvoVoiceResource:
    return EvoVoiceResource(
        base_url=dg.EnvVar("EVO_VOICE_BASE_URL"),
        username=dg.EnvVar("EVO_VOICE_USERNAME"),
        password=dg.EnvVar("EVO_VOICE_PASSWORD"),
    )


def warehouse_resource_from_env() -> WarehouseResource:
    return WarehouseResource()
