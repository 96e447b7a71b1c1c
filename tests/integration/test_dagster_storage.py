"""The Dagster instance of ``dagster-instance.yaml``: its event log keeps Dagster's SQLite files
and rows (what Dagster's own storage reads), writes a batch of events in one transaction with
the rows Dagster writes event by event, keeps nothing of a batch that fails, and a backfill
through it leaves every asset key of ``evo_sessions`` materialized for every day, each
partition carrying its own day's numbers."""

from __future__ import annotations

import logging
import sqlite3
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationPlanned,
)
from dagster._core.events import (
    AssetMaterializationPlannedData,
    DagsterEvent,
    DagsterEventType,
    EngineEventData,
    StepMaterializationData,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage

from pipeline import cli
from pipeline.assets.ingestion import ROW_COUNT_FIELDS, SESSION_KEYS
from pipeline.dagster_storage import EVENT_BATCH_SIZE, PooledSqliteEventLogStorage
from pipeline.emulator import EmulatorConfig, run_emulator
from tests.conftest import NOW

KEYS = [dg.AssetKey(["raw", "a"]), dg.AssetKey(["raw", "b"])]


@pytest.fixture(autouse=True)
def batch_size_env(monkeypatch):
    """The storage turns Dagster's event batching on for its process: not past these tests."""
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)


PARTITIONS = ["2026-01-01", "2026-01-02", "2026-01-03"]


def entry(run_id: str, n: int, dagster_event: DagsterEvent) -> EventLogEntry:
    return EventLogEntry(
        error_info=None,
        level=logging.DEBUG,
        user_message="",
        run_id=run_id,
        timestamp=1_760_000_000.0 + n,
        step_key="evo_sessions",
        job_name="ingest_job",
        dagster_event=dagster_event,
    )


def run_events(run_id: str) -> list[EventLogEntry]:
    """What a range run writes: planned events (and a check's, in between), then the
    materializations of each key's partitions, then a non-asset event."""
    events = [
        DagsterEvent.build_asset_materialization_planned_event(
            "ingest_job", "evo_sessions", AssetMaterializationPlannedData(key, partition=p)
        )
        for key in KEYS
        for p in PARTITIONS
    ]
    events.insert(
        3,
        DagsterEvent(
            event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED.value,
            job_name="ingest_job",
            step_key="evo_sessions",
            event_specific_data=AssetCheckEvaluationPlanned(asset_key=KEYS[0], check_name="c"),
        ),
    )
    events += [
        DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name="ingest_job",
            step_key="evo_sessions",
            event_specific_data=StepMaterializationData(
                dg.AssetMaterialization(
                    key,
                    partition=p,
                    metadata={"dagster/row_count": i},
                    tags={"dagster/data_version": f"v{i}", "not/indexed": "x"},
                )
            ),
        )
        for key in KEYS
        for i, p in enumerate(PARTITIONS)
    ]
    events.append(
        DagsterEvent(
            event_type_value=DagsterEventType.ENGINE_EVENT.value,
            job_name="ingest_job",
            message="done",
            event_specific_data=EngineEventData(),
        )
    )
    return [entry(run_id, n, e) for n, e in enumerate(events)]


def dump(db: Path) -> dict[str, list[tuple]]:
    """Every row of the event log tables (creation times, which the clock sets, left out)."""
    tables = {
        "event_logs": "*",
        "asset_keys": "id, asset_key, last_materialization, last_run_id, asset_details, "
        "wipe_timestamp, last_materialization_timestamp, tags, cached_status_data",
        "asset_event_tags": "*",
        "asset_check_executions": "id, asset_key, check_name, partition, run_id, "
        "execution_status, evaluation_event, evaluation_event_timestamp, "
        "evaluation_event_storage_id, materialization_event_storage_id",
    }
    with sqlite3.connect(db) as con:
        present = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        return {
            table: con.execute(f"SELECT {columns} FROM {table} ORDER BY 1, 2").fetchall()
            for table, columns in tables.items()
            if table in present
        }


def test_a_batch_writes_the_rows_dagster_writes_event_by_event(tmp_path):
    reference = SqliteEventLogStorage(str(tmp_path / "reference"))
    pooled = PooledSqliteEventLogStorage(str(tmp_path / "pooled"))
    for run_id in ("run-1", "run-2"):  # the second run updates existing asset rows
        for event in run_events(run_id):
            reference.store_event(event)
        pooled.store_event_batch(run_events(run_id))
    for shard in ("index", "run-1", "run-2"):
        expected = dump(tmp_path / "reference" / f"{shard}.db")
        assert expected["event_logs"], shard
        assert dump(tmp_path / "pooled" / f"{shard}.db") == expected, shard
    assert len(expected["event_logs"]) == len(run_events("x"))
    # Dagster's own storage reads what the pooled one wrote.
    for key in KEYS:
        assert reference.get_materialized_partitions(key) == set(PARTITIONS)
        assert SqliteEventLogStorage(str(tmp_path / "pooled")).get_materialized_partitions(
            key
        ) == set(PARTITIONS)


def test_a_failed_batch_keeps_nothing_and_the_next_one_is_written(tmp_path, monkeypatch):
    pooled = PooledSqliteEventLogStorage(str(tmp_path))

    def broken(*_args):
        raise RuntimeError("disk trouble")

    with monkeypatch.context() as patch:
        patch.setattr(pooled, "store_asset_event_tags", broken)
        with pytest.raises(RuntimeError, match="disk trouble"):
            pooled.store_event_batch(run_events("run-1"))
    assert dump(tmp_path / "index.db")["event_logs"] == []
    assert dump(tmp_path / "run-1.db")["event_logs"] == []

    pooled.store_event_batch(run_events("run-1"))
    assert len(dump(tmp_path / "run-1.db")["event_logs"]) == len(run_events("x"))
    assert pooled.get_materialized_partitions(KEYS[1]) == set(PARTITIONS)


def test_wipe_closes_the_run_shards_and_the_storage_goes_on(tmp_path):
    pooled = PooledSqliteEventLogStorage(str(tmp_path))
    for n in range(6):  # more runs than connections kept open
        pooled.store_event_batch(run_events(f"run-{n}"))
        pooled.store_event(run_events(f"run-{n}")[-1])
    assert len(pooled.get_records_for_run("run-0").records) == len(run_events("x")) + 1
    pooled.wipe()
    assert not (tmp_path / "run-5.db").exists()
    assert pooled.get_materialized_partitions(KEYS[0]) == set()
    pooled.store_event_batch(run_events("run-5"))
    assert pooled.get_materialized_partitions(KEYS[0]) == set(PARTITIONS)
    pooled.dispose()


def test_dagster_home_gets_the_pooled_event_log_where_dagster_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    cli.ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        assert Path(storage._base_dir) == tmp_path / "history" / "runs"
        assert not instance.telemetry_enabled


def test_backfill_with_dagster_home_materializes_every_key_for_every_day(tmp_path, monkeypatch):
    """Through the CLI, with the instance on disk: 9 days (windows sized by volume), then read
    back with Dagster's default event log storage."""
    days = [NOW.date() - timedelta(days=n) for n in range(9, 0, -1)]
    config = EmulatorConfig(seed=51, sessions_per_day=40, days_of_history=12, now=NOW)
    home, data_dir = tmp_path / "dagster_home", tmp_path / "data"
    with run_emulator(config) as emulator:
        monkeypatch.setenv("EVO_VOICE_BASE_URL", emulator.base_url)
        monkeypatch.setenv("EVO_VOICE_USERNAME", config.username)
        monkeypatch.setenv("EVO_VOICE_PASSWORD", config.password)
        monkeypatch.setenv("EVO_DATA_DIR", str(data_dir))
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.delenv("EVO_SYNC_DAYS_PER_FETCH", raising=False)
        report = cli.run_backfill(days[0], days[-1], with_dbt=False, show_progress=False)
    assert report.ok and report.days_ok == days

    storage = SqliteEventLogStorage(str(home / "history" / "runs"))
    expected = {str(day) for day in days}
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        for name, key in SESSION_KEYS.items():
            assert storage.get_materialized_partitions(key) == expected, name
            records = storage.fetch_materializations(key, limit=100).records
            assert len(records) == len(days)
            for record in records:
                day = record.partition_key
                metadata = record.asset_materialization.metadata
                rows = (
                    1
                    if name == "synced_days"
                    else con.execute(
                        f"SELECT count(*) FROM raw.{name} WHERE partition_date = ?", [day]
                    ).fetchone()[0]
                )
                assert metadata["dagster/row_count"].value == rows, (name, day)
                # The column schema once per run: on its newest partition.
                assert ("dagster/column_schema" in metadata) == (day == str(days[-1])), day
                if name == "sessions":
                    summary = dict(
                        zip(
                            ROW_COUNT_FIELDS.values(),
                            con.execute(
                                "SELECT sessions, members, log_rows, breadcrumbs, rejected "
                                "FROM raw.synced_days WHERE partition_date = ?",
                                [day],
                            ).fetchone(),
                            strict=True,
                        )
                    )
                    assert {k: metadata[k].value for k in summary} == summary
                    # Quiet days: the run's 9 days in one request window.
                    assert metadata["request_window"].value == f"{days[0]}..{days[-1]}"
    checks = storage.get_asset_check_execution_history(
        dg.AssetCheckKey(SESSION_KEYS["sessions"], "no_duplicate_session_ids"), limit=10
    )
    # One evaluation for the run's range (Dagster records a range run's check unpartitioned).
    assert [c.status.value for c in checks if c.partition is None] == ["SUCCEEDED"]
