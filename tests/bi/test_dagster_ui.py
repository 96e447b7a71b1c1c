"""What the Dagster UI shows: the one Definitions loads with a group and a description on every
asset, a 26-hour freshness check on every mart (and the published copy) with a sensor running
them; ingestion materializations carry their column schema and row counts, dbt ones their
columns, row counts (tables) and, for the marts, a markdown preview of the newest rows."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import dagster as dg
import duckdb
import pytest
from dagster_dbt import DbtCliResource

from pipeline.assets.ingestion import SESSION_KEYS, evo_accounts, evo_sessions
from pipeline.assets.transform import evo_dbt_models, with_table_metadata
from pipeline.dbt_project import dbt_executable, dbt_project
from pipeline.resources import EvoVoiceResource, WarehouseResource
from tests.conftest import NOW

GROUP_OF_PREFIX = {"raw": "ingestion", "staging": "staging", "marts": "marts", "published": "marts"}
FRESHNESS_KEYS = {
    key
    for key in evo_dbt_models.keys
    if key.path[0] == "marts"  # every mart ...
} | {dg.AssetKey(["published", "warehouse"])}  # ... and the copy BI tools read


def describe(con, table: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {table}").fetchall()]


def schema_columns(metadata) -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in metadata["dagster/column_schema"].value.columns]


def test_definitions_load_with_groups_descriptions_freshness_checks_and_sensor():
    from pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert len(keys) >= 23
    for key in keys:
        node = graph.get(key)
        assert node.group_name == GROUP_OF_PREFIX[key.path[0]], key
        assert (node.description or "").strip(), f"{key.to_user_string()} has no description"
        if key.path[0] == "raw":
            assert node.metadata["dagster/column_schema"].value.columns, key

    freshness = {k for k in graph.asset_check_keys if k.name == "freshness_check"}
    assert {k.asset_key for k in freshness} == FRESHNESS_KEYS
    for check_key in freshness:
        spec = graph.get_check_spec(check_key)
        params = spec.metadata["dagster/freshness_params"].value
        assert params["lower_bound_delta_seconds"] == timedelta(hours=26).total_seconds()

    sensor = defs.resolve_sensor_def("marts_freshness_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert set(sensor.asset_selection.resolve_checks(graph)) == freshness

    for job in ("sync_job", "ingest_job", "dbt_job"):
        assert defs.resolve_job_def(job) is not None
    assert defs.resolve_schedule_def("daily_sync_schedule").cron_schedule == "0 2 * * *"


def test_ingestion_materializations_carry_column_schema_and_row_count(built_warehouse, tmp_path):
    _, emulator = built_warehouse
    day = NOW.date() - timedelta(days=2)
    resources = {
        "evo_voice": EvoVoiceResource(
            base_url=emulator.base_url,
            username=emulator.config.username,
            password=emulator.config.password,
        ),
        "warehouse": WarehouseResource(data_dir=str(tmp_path)),
    }
    result = dg.materialize([evo_sessions], partition_key=day.isoformat(), resources=resources)
    assert result.success
    accounts = dg.materialize([evo_accounts], resources=resources)
    assert accounts.success
    materializations = {
        m.asset_key: m.metadata
        for r in (result, accounts)
        for m in (e.materialization for e in r.get_asset_materialization_events())
    }
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        for name, key in SESSION_KEYS.items():
            metadata = materializations[key]
            where = "" if name == "synced_days" else " WHERE partition_date = ?"
            params = [] if name == "synced_days" else [day]
            rows = con.execute(f"SELECT count(*) FROM raw.{name}{where}", params).fetchone()[0]
            assert metadata["dagster/row_count"].value == rows, name
            assert schema_columns(metadata) == describe(con, f"raw.{name}"), name
        assert materializations[SESSION_KEYS["sessions"]]["dagster/row_count"].value > 100
        for name in ("accounts", "account_billing_items"):
            metadata = materializations[dg.AssetKey(["raw", name])]
            rows = con.execute(f"SELECT count(*) FROM raw.{name}").fetchone()[0]
            assert metadata["dagster/row_count"].value == rows > 0, name
            assert schema_columns(metadata) == describe(con, f"raw.{name}"), name


@pytest.mark.e2e
def test_dbt_materializations_carry_columns_row_counts_and_mart_previews(built_warehouse, tmp_path):
    data_dir, _ = built_warehouse
    shutil.copy(data_dir / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    result = dg.materialize(
        [evo_dbt_models],
        resources={
            "warehouse": WarehouseResource(data_dir=str(tmp_path)),
            "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()),
        },
    )
    assert result.success
    materializations = {
        e.materialization.asset_key: e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    marts = [k for k in materializations if k.path[0] == "marts"]
    assert len(marts) == 7
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        for key, metadata in materializations.items():
            table = ".".join(key.path)
            assert schema_columns(metadata) == describe(con, table), table
            if key.path[0] == "staging":  # views: counting would run their query
                assert "dagster/row_count" not in metadata and "preview" not in metadata
                continue
            rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            assert metadata["dagster/row_count"].value == rows > 0, table
            preview = metadata["preview"].value.splitlines()
            header = "| " + " | ".join(name for name, _ in describe(con, table)) + " |"
            assert preview[2] == header, table
            assert len(preview) == 4 + min(5, rows), table
        newest = con.execute("SELECT max(session_date) FROM marts.fct_sessions").fetchone()[0]
    preview = materializations[dg.AssetKey(["marts", "fct_sessions"])]["preview"].value
    assert preview.startswith("newest 5 of ") and f"| {newest} |" in preview.splitlines()[4]
    fct_columns = materializations[dg.AssetKey(["marts", "fct_sessions"])]["dagster/column_schema"]
    described = {c.name: c.description for c in fct_columns.value.columns}
    assert described["session_id"] == "The session's ID; primary key."


def test_events_pass_through_unchanged_when_the_warehouse_cannot_be_read(tmp_path):
    manifest = json.loads(dbt_project.manifest_path.read_text())
    event = dg.Output(None, "marts__fct_sessions", metadata={"unique_id": "model.evo_voice.x"})
    warnings = []

    class Log:
        def warning(self, message):
            warnings.append(message)

    assert with_table_metadata(tmp_path / "absent.duckdb", manifest, [event], Log()) == [event]
    assert warnings and "absent.duckdb" in warnings[0]
