"""dbt models as Dagster assets, downstream of the ingestion assets; dbt tests are asset checks."""


from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from pipeline.dbt_project import dbt_project, ensure_manifest


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
def evo_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Build the staging views and the marts (incremental by ``session_date``), and run every
    dbt test as an asset check."""
    yield from dbt.cli(["build"], context=context).stream()
