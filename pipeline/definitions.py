"""The one Dagster code location of the Evo Voice warehouse."""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtCliResource

from pipeline.assets.ingestion import evo_accounts, evo_sessions
from pipeline.assets.publish import published_warehouse
from pipeline.assets.transform import evo_dbt_models
from pipeline.checks import marts_freshness_checks, marts_freshness_sensor
from pipeline.dbt_project import dbt_executable, dbt_project
from pipeline.resources import evo_voice_resource_from_env, warehouse_resource_from_env
from pipeline.schedules import daily_sync_schedule, dbt_job, ingest_job, sync_job

defs = dg.Definitions(
    assets=[evo_sessions, evo_accounts, evo_dbt_models, published_warehouse],
    jobs=[sync_job, ingest_job, dbt_job],
    asset_checks=marts_freshness_checks,
    schedules=[daily_sync_schedule],
    sensors=[marts_freshness_sensor],
    resources={
        "evo_voice": evo_voice_resource_from_env(),
        "warehouse": warehouse_resource_from_env(),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()),
    },
)
