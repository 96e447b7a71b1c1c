"""dbt models as Dagster assets, downstream of the ingestion assets; dbt tests are asset checks."""

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from pipeline.dbt_project import dbt_project, ensure_manifest
from pipeline.resources import WarehouseResource


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
    dbt test as an asset check."""
    target = warehouse.warehouse()
    # dbt holds the DuckDB file for the whole build: day loads of other runs wait meanwhile.
    # DbtCliResource passes os.environ to dbt, so that is where the warehouse path goes.
    with target.exclusive(), _environ(EVO_WAREHOUSE_PATH=str(target.path)):
        yield from dbt.cli(["build"], context=context).stream()


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
