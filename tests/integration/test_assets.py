"""The real Dagster assets materialize partitions from the emulator into a temporary lake and
warehouse: row counts equal the emulator's ground truth, and re-running a day (also after the
server lost sessions of it) leaves exactly the new state, in every table and in the lake."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.assets.ingestion import SESSION_KEYS, SESSIONS_KEY, evo_accounts, evo_sessions
from pipeline.emulator import EmulatorConfig, run_emulator
from pipeline.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from pipeline.resources import EvoVoiceResource, WarehouseResource
from tests.conftest import NOW

DAY = NOW.date() - timedelta(days=2)
CHILD_TABLES = {
    "session_members": "members",
    "session_log": "log",
    "session_breadcrumbs": "customerBreadcrumb",
}


@pytest.fixture(scope="module")
def emulator():
    # Every day the same volume: the days tested are relative to today, and may be a weekend.
    config = EmulatorConfig(
        seed=21, sessions_per_day=300, days_of_history=8, now=NOW, weekend_factor=1.0
    )
    with run_emulator(config) as running:
        yield running


def resources(emulator, data_dir) -> dict:
    return {
        "evo_voice": EvoVoiceResource(
            base_url=emulator.base_url,
            username=emulator.config.username,
            password=emulator.config.password,
            page_size=40,
            concurrency=3,
        ),
        "warehouse": WarehouseResource(data_dir=str(data_dir)),
    }


def materialize_day(emulator, data_dir, day=DAY) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [evo_sessions], partition_key=day.isoformat(), resources=resources(emulator, data_dir)
    )


def table_counts(data_dir, day) -> dict[str, int]:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        return {
            table: con.execute(
                f"SELECT count(*) FROM raw.{table} WHERE partition_date = ?", [day]
            ).fetchone()[0]
            for table in ("sessions", *CHILD_TABLES)
        }


def truth_counts(emulator, day) -> dict[str, int]:
    sessions = emulator.store.sessions_on_local_day(day)
    counts = {"sessions": len(sessions)}
    for table, field in CHILD_TABLES.items():
        counts[table] = sum(len(s.get(field) or []) for s in sessions)
    return counts


def test_partition_row_counts_equal_ground_truth(emulator, tmp_path):
    result = materialize_day(emulator, tmp_path)
    assert result.success
    truth = truth_counts(emulator, DAY)
    assert truth["sessions"] > 100 and truth["session_members"] > truth["sessions"]
    assert table_counts(tmp_path, DAY) == truth
    materialization = result.asset_materializations_for_node("evo_sessions")[0]
    assert materialization.metadata["sessions"].value == truth["sessions"]
    assert materialization.metadata["pages_fetched"].value >= truth["sessions"] // 40
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"no_duplicate_session_ids": True, "complete_for_window": True}
    lake_rows = pq.read_table(tmp_path / "lake" / "sessions" / f"date={DAY}").num_rows
    assert lake_rows == truth["sessions"]


def test_rerun_after_server_lost_sessions_leaves_exactly_the_new_state(tmp_path):
    config = EmulatorConfig(seed=22, sessions_per_day=200, days_of_history=8, now=NOW)
    with run_emulator(config) as emulator:
        neighbour = DAY - timedelta(days=1)
        assert materialize_day(emulator, tmp_path, neighbour).success
        for _ in range(2):
            assert materialize_day(emulator, tmp_path).success
        before_neighbour = table_counts(tmp_path, neighbour)
        lost = emulator.store.ids_on_local_day(DAY)[::3]
        emulator.store.remove_sessions(lost)
        assert materialize_day(emulator, tmp_path).success
        assert table_counts(tmp_path, DAY) == truth_counts(emulator, DAY)
        with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
            for table in ("sessions", *CHILD_TABLES):
                stale = con.execute(
                    f"SELECT count(*) FROM raw.{table} WHERE session_id IN "
                    f"(SELECT unnest(?::VARCHAR[]))",
                    [lost],
                ).fetchone()[0]
                assert stale == 0, table
        assert table_counts(tmp_path, neighbour) == before_neighbour

        emulator.store.remove_sessions(emulator.store.ids_on_local_day(DAY))
        assert materialize_day(emulator, tmp_path).success
        assert table_counts(tmp_path, DAY) == dict.fromkeys(table_counts(tmp_path, DAY), 0)
        with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
            assert con.execute(
                "SELECT sessions FROM raw.synced_days WHERE partition_date = ?", [DAY]
            ).fetchone() == (0,)
        assert pq.read_table(tmp_path / "lake" / "sessions" / f"date={DAY}").num_rows == 0


def test_accounts_asset_loads_accounts_and_billing_items(emulator, tmp_path):
    result = dg.materialize([evo_accounts], resources=resources(emulator, tmp_path))
    assert result.success
    accounts = emulator.store.accounts()
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        ids = {r[0] for r in con.execute("SELECT account_id FROM raw.accounts").fetchall()}
        items = con.execute(
            "SELECT count(*) FROM raw.account_billing_items WHERE item = 'inboundVoiceCalls'"
        ).fetchone()[0]
    assert ids == {a["id"] for a in accounts}
    assert items == sum(
        1 for a in accounts if (a.get("billingSettings") or {}).get("inboundVoiceCalls")
    )


def test_definitions_load_with_graph_partitions_schedule_and_checks():
    from pipeline.definitions import defs
    from pipeline.schedules import daily_sync_schedule

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for table in (
        "sessions",
        "session_members",
        "session_log",
        "session_breadcrumbs",
        "accounts",
        "account_billing_items",
        "rejected_sessions",
        "synced_days",
    ):
        assert f"raw/{table}" in keys
    for mart in ("fct_sessions", "missed_call_rate_daily", "call_durations_daily"):
        assert f"marts/{mart}" in keys
    fct = graph.get(dg.AssetKey(["marts", "fct_sessions"]))
    assert dg.AssetKey(["staging", "stg_evo__sessions"]) in fct.parent_keys
    stg = graph.get(dg.AssetKey(["staging", "stg_evo__sessions"]))
    assert SESSIONS_KEY in stg.parent_keys  # the dbt source is the ingestion asset

    partitions = graph.get(SESSIONS_KEY).partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    check_names = {key.name for key in graph.asset_check_keys}
    assert {"no_duplicate_session_ids", "complete_for_window"} <= check_names
    assert any(name.startswith(("unique_", "not_null_")) for name in check_names)

    schedule = defs.resolve_schedule_def("daily_sync_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    context = dg.build_schedule_context(scheduled_execution_time=NOW.replace(hour=2, minute=0))
    request = daily_sync_schedule(context)
    yesterday = NOW.date() - timedelta(days=1)
    assert request.tags[PARTITION_RANGE_END_TAG] == yesterday.isoformat()
    assert request.tags[PARTITION_RANGE_START_TAG] == (yesterday - timedelta(days=3)).isoformat()


def test_a_range_run_gives_each_partition_its_own_numbers(emulator, tmp_path):
    """A run over three days: every key materialized for every day, each event with that
    day's rows (not the run's totals), the column schema once per key: on the newest day."""
    days = [DAY - timedelta(days=2), DAY - timedelta(days=1), DAY]
    result = dg.materialize(
        [evo_sessions],
        resources=resources(emulator, tmp_path),
        tags={
            PARTITION_RANGE_START_TAG: days[0].isoformat(),
            PARTITION_RANGE_END_TAG: days[-1].isoformat(),
        },
    )
    assert result.success
    events = {
        (e.materialization.asset_key, e.materialization.partition): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert set(events) == {(key, str(day)) for key in SESSION_KEYS.values() for day in days}
    for day in days:
        counts = table_counts(tmp_path, day)
        assert counts == truth_counts(emulator, day)
        with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
            rejected = con.execute(
                "SELECT count(*) FROM raw.rejected_sessions WHERE partition_date = ?", [day]
            ).fetchone()[0]
        rows_of = {**counts, "rejected_sessions": rejected, "synced_days": 1}
        for name, key in SESSION_KEYS.items():
            metadata = events[(key, str(day))]
            assert metadata["dagster/row_count"].value == rows_of[name], (name, day)
            assert ("dagster/column_schema" in metadata) == (day == days[-1]), (name, day)
        assert events[(SESSIONS_KEY, str(day))]["sessions"].value == counts["sessions"]
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"no_duplicate_session_ids": True, "complete_for_window": True}


def test_request_windows_are_sized_by_volume_unless_configured(emulator, monkeypatch):
    from datetime import datetime

    from pipeline.assets import ingestion
    from pipeline.evo.sessions import count_window, request_window
    from tests.conftest import make_client

    short = (DAY - timedelta(days=5), DAY)  # 6 days: one window of the default size
    long = (DAY - timedelta(days=19), DAY)  # 20 days (8 of them with sessions): sized by volume
    monkeypatch.delenv("EVO_SYNC_DAYS_PER_FETCH", raising=False)
    with make_client(emulator) as client:
        before = emulator.stats.requests
        assert ingestion.fetch_window_days(client, *short) == 7
        monkeypatch.setenv("EVO_SYNC_DAYS_PER_FETCH", "3")
        assert ingestion.fetch_window_days(client, *long) == 3
        assert emulator.stats.requests == before  # neither asked the server
        monkeypatch.delenv("EVO_SYNC_DAYS_PER_FETCH")

        # ~300 sessions a day: the whole range fits a window of the default target ...
        assert ingestion.fetch_window_days(client, *long) == 20
        assert emulator.stats.requests > before
        # ... a small target gives the default size, never less ...
        monkeypatch.setattr(ingestion, "WINDOW_TARGET_SESSIONS", 100)
        assert ingestion.fetch_window_days(client, *long) == 7
        # ... and in between, the days that hold about the target.
        zone = client.settings.zone
        total = count_window(client, request_window(*long, zone), today=datetime.now(zone).date())
        monkeypatch.setattr(ingestion, "WINDOW_TARGET_SESSIONS", total // 2)
        assert 7 < ingestion.fetch_window_days(client, *long) == 20 * (total // 2) // total < 20

    # A server that fails the count: the default size (the sync will say what is wrong).
    with make_client(emulator, max_attempts=1) as client:
        emulator.config.error_rate_500 = 1.0
        try:
            assert ingestion.fetch_window_days(client, *long) == 7
        finally:
            emulator.config.error_rate_500 = 0.0


def test_days_per_fetch_setting(monkeypatch):
    from pipeline import config

    for raw, expected in (("", None), ("0", None), ("12", 12)):
        monkeypatch.setenv("EVO_SYNC_DAYS_PER_FETCH", raw)
        assert config.days_per_fetch() == expected
    monkeypatch.setenv("EVO_SYNC_DAYS_PER_FETCH", "-1")
    with pytest.raises(ValueError, match="negative"):
        config.days_per_fetch()


def test_a_session_id_also_on_a_neighbouring_day_fails_the_duplicate_check(emulator, tmp_path):
    neighbour = DAY - timedelta(days=1)
    for day in (neighbour, DAY):
        assert materialize_day(emulator, tmp_path, day).success
    # The neighbour's lake file gains a copy of one of DAY's sessions (as if a new time zone
    # had moved it there), under the neighbour's committed sync.
    lake = tmp_path / "lake" / "sessions"
    (theirs,) = (lake / f"date={neighbour}").glob("*.parquet")
    (ours,) = (lake / f"date={DAY}").glob("*.parquet")
    moved = pq.read_table(ours).slice(0, 1)
    rows = pq.read_table(theirs)
    moved = moved.set_column(
        moved.schema.get_field_index("sync_id"), "sync_id", rows.column("sync_id").slice(0, 1)
    )
    pq.write_table(pa.concat_tables([rows, moved.cast(rows.schema)]), theirs)

    result = materialize_day(emulator, tmp_path, DAY)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    duplicate = checks["no_duplicate_session_ids"]
    assert not duplicate.passed
    assert duplicate.metadata["duplicated_ids"].value == [moved.column("session_id")[0].as_py()]
