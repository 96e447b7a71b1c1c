"""dbt models as Dagster assets, downstream of the ingestion assets; dbt tests are asset checks."""

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from pipeline.dbt_project import dbt_project, ensure_manifest
from pipeline.resources import WarehouseResource

PREVIEW_ROWS = 5
PREVIEW_CELL_CHARS = 40
_TABLE_MATERIALIZATIONS = {"table", "incremental"}


class EvoDbtTranslator(DagsterDbtTranslator):
    """``source('evo', t)`` is the ingestion asset ``raw/t``; models are ``<schema>/<name>``
    in the group of their layer (staging, marts)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey(["raw", dbt_resource_props["name"]])
        return dg.AssetKey([dbt_resource_props.get("schema") or "main", dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn") or []
        return fqn[1] if len(fqn) > 2 and fqn[1] in ("staging", "marts") else "marts"


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=EvoDbtTranslator(),
    pool="duckdb_warehouse",
)
def evo_dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
):
    """Build the staging views and the marts (incremental by ``session_date``), and run every
    dbt test as an asset check. Each model reports its columns, each table its row count and
    each mart a preview of its newest rows."""
    target = warehouse.warehouse()
    # dbt holds the DuckDB file for the whole build: day loads of other runs wait meanwhile.
    # DbtCliResource passes os.environ to dbt, so that is where the warehouse path goes.
    with target.exclusive(), _environ(EVO_WAREHOUSE_PATH=str(target.path)):
        invocation = dbt.cli(["build"], context=context, raise_on_error=False)
        # No reader may open the file while dbt writes it, so the events wait for dbt to exit
        # and then get their metadata from the built tables. (dagster-dbt's fetch_row_counts()
        # and fetch_column_metadata() do the same wait, but they open the profile read-only,
        # which fails on its in-memory database: dagster-io/dagster#32300.)
        events = list(invocation.stream())
        events = with_table_metadata(target.path, invocation.manifest, events, context.log)
    yield from events
    _prune_target_dirs(invocation.target_path.parent, keep=KEEP_DBT_TARGET_DIRS)
    if not invocation.is_successful():
        raise invocation.get_error() or dg.Failure("dbt build failed")


# dagster-dbt gives every invocation its own target folder (artifacts, logs); keep the newest
# few for debugging instead of one per run forever.
KEEP_DBT_TARGET_DIRS = 5


def _prune_target_dirs(parent: Path, keep: int) -> None:
    runs = sorted(
        (p for p in parent.glob("evo_dbt_models-*") if p.is_dir()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in runs[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def with_table_metadata(
    path: Path, manifest: Mapping[str, Any], events: Sequence[Any], log: Any
) -> list[Any]:
    """``events`` with each model's column schema, table row count and (marts) preview added,
    read through one read-only connection; events stay as they are when that fails."""
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as error:
        log.warning(f"no table metadata: cannot open {path} read-only: {error}")
        return list(events)
    try:
        con.execute("SET TimeZone = 'UTC'")
        enriched = []
        for event in events:
            node = _model_node(manifest, event)
            if node is None:
                enriched.append(event)
                continue
            try:
                extra = model_metadata(con, node)
            except duckdb.Error as error:
                log.warning(f"no table metadata for {node['unique_id']}: {error}")
                extra = {}
            enriched.append(event.with_metadata({**event.metadata, **extra}))
        return enriched
    finally:
        con.close()


def _model_node(manifest: Mapping[str, Any], event: Any) -> Mapping[str, Any] | None:
    if not isinstance(event, dg.Output | dg.AssetMaterialization):
        return None
    unique_id = event.metadata.get("unique_id")
    node = manifest["nodes"].get(unique_id.value) if unique_id is not None else None
    return node if node is not None and node["resource_type"] == "model" else None


def model_metadata(con: duckdb.DuckDBPyConnection, node: Mapping[str, Any]) -> dict[str, Any]:
    """Columns as built (types from DuckDB, descriptions from the model's yml); for tables the
    row count; for marts the newest rows as a markdown table."""
    schema, name = node["schema"], node["alias"]
    columns = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ? "
        "ORDER BY ordinal_position",
        [schema, name],
    ).fetchall()
    if not columns:
        return {}
    documented = node.get("columns") or {}
    metadata: dict[str, Any] = {
        "dagster/column_schema": dg.MetadataValue.table_schema(
            dg.TableSchema(
                columns=[
                    dg.TableColumn(
                        column,
                        data_type,
                        description=(documented.get(column) or {}).get("description") or None,
                    )
                    for column, data_type in columns
                ]
            )
        )
    }
    if node["config"].get("materialized") not in _TABLE_MATERIALIZATIONS:
        return metadata  # a view's count would run its query: skipped, as dagster-dbt does
    relation = f'"{schema}"."{name}"'
    rows = con.execute(f"SELECT count(*) FROM {relation}").fetchone()[0]
    metadata["dagster/row_count"] = dg.MetadataValue.int(rows)
    if node["fqn"][1:2] == ["marts"]:
        metadata["preview"] = dg.MetadataValue.md(
            mart_preview(con, relation, [c for c, _ in columns], rows)
        )
    return metadata


def mart_preview(
    con: duckdb.DuckDBPyConnection, relation: str, columns: list[str], rows: int
) -> str:
    """The newest ``PREVIEW_ROWS`` rows (by ``session_date`` when the mart has one) as a
    markdown table under a one-line caption."""
    shown = min(PREVIEW_ROWS, rows)
    if "session_date" in columns:
        order, caption = "session_date DESC", f"newest {shown} of {rows} rows, by session_date"
    else:
        order, caption = "ALL", f"first {shown} of {rows} rows"
    result = con.execute(f"SELECT * FROM {relation} ORDER BY {order} LIMIT {PREVIEW_ROWS}")
    header = [d[0] for d in result.description]
    lines = [
        f"{caption}:",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in result.fetchall()]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        text = str(round(value, 4))
    elif isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= PREVIEW_CELL_CHARS else text[: PREVIEW_CELL_CHARS - 1] + "…"


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
