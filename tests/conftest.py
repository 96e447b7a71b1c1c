"""Shared fixtures: a running emulator, client settings for it, a temporary lake and warehouse."""

from __future__ import annotations

import os
from datetime import UTC, datetime, time, timedelta

import pytest

from pipeline.evo.client import EvoVoiceClient
from pipeline.evo.settings import EvoVoiceSettings
from pipeline.lake.store import Lake
from pipeline.lake.warehouse import Warehouse

# Frozen emulator clock: tests see the same "today" however long they run (09:30 UTC today,
# so partitions and the archive cut-off line up with the wall clock the pipeline uses).
NOW = datetime.combine(datetime.now(UTC).date(), time(9, 30), tzinfo=UTC)

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
os.environ["EVO_SYNC_START_DATE"] = (NOW.date() - timedelta(days=120)).isoformat()


def client_settings(emulator, **overrides) -> EvoVoiceSettings:
    """Settings for the real client against ``emulator``, with test-sized retry delays."""
    values = {
        "base_url": emulator.base_url,
        "username": emulator.config.username,
        "password": emulator.config.password,
        "page_size": 50,
        "initial_retry_delay": 0.01,
        "max_retry_delay": 0.05,
        "max_retry_after": 0.05,
        "read_timeout": 1.0,
        "connect_timeout": 1.0,
        "max_attempts": 12,
        **overrides,
    }
    return EvoVoiceSettings(**values)


def make_client(emulator, **overrides) -> EvoVoiceClient:
    return EvoVoiceClient(client_settings(emulator, **overrides), seed=11)


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(str(tmp_path / "lake"))


@pytest.fixture
def warehouse(tmp_path, lake) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb", lake)


@pytest.fixture(scope="session")
def built_warehouse(tmp_path_factory):
    """A data folder filled once per test session by ``evo-sync backfill`` (5 days from the
    emulator, through Dagster and dbt), for tests that only read the warehouse or the marts.

    Yields ``(data_dir, emulator)``; the emulator is stopped afterwards. Do not mutate either.
    """
    from pipeline.cli import main
    from pipeline.emulator import EmulatorConfig, run_emulator

    data_dir = tmp_path_factory.mktemp("built")
    # Every day the same volume: the days are relative to today, and may be a weekend.
    config = EmulatorConfig(
        seed=41, sessions_per_day=300, days_of_history=9, now=NOW, weekend_factor=1.0
    )
    first, last = NOW.date() - timedelta(days=5), NOW.date() - timedelta(days=1)
    with run_emulator(config) as emulator:
        with pytest.MonkeyPatch.context() as env:  # only for the backfill: no leaks
            env.setenv("EVO_VOICE_BASE_URL", emulator.base_url)
            env.setenv("EVO_VOICE_USERNAME", config.username)
            env.setenv("EVO_VOICE_PASSWORD", config.password)
            env.setenv("EVO_DATA_DIR", str(data_dir))
            env.delenv("DAGSTER_HOME", raising=False)
            status = main(["backfill", "--start", str(first), "--end", str(last), "--quiet"])
        assert status == 0, "the shared backfill failed"
        yield data_dir, emulator
