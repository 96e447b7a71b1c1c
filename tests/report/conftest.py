"""Fixtures for the report tests: the shared warehouse's newest sync and a pinned clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pytest

# The report is built "3 hours and 10 minutes after the newest sync", so its freshness line is
# known in advance: "synced 3 hours ago".
HOURS_SINCE_SYNC = 3


@pytest.fixture(scope="session")
def newest_sync(built_warehouse) -> datetime:
    data_dir, _ = built_warehouse
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        (value,) = con.execute(
            "SELECT max(synced_at) AT TIME ZONE 'UTC' FROM raw.synced_days"
        ).fetchone()
    return value.replace(tzinfo=UTC)


@pytest.fixture(scope="session")
def report_now(newest_sync) -> datetime:
    return newest_sync + timedelta(hours=HOURS_SINCE_SYNC, minutes=10)


@pytest.fixture(scope="session")
def warehouse_file(built_warehouse):
    data_dir, _ = built_warehouse
    return data_dir / "warehouse.duckdb"
