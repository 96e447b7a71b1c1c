"""Jobs and the daily schedule."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from pipeline import config
from pipeline.assets.ingestion import evo_accounts, evo_sessions
from pipeline.assets.publish import published_warehouse
from pipeline.assets.transform import evo_dbt_models
from pipeline.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
)

sync_job = dg.define_asset_job(
    "sync_job",
    selection=dg.AssetSelection.assets(
        evo_sessions, evo_accounts, evo_dbt_models, published_warehouse
    ),
    description="Sync a range of days from Evo Voice, refresh accounts, then build the marts.",
)
ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(evo_sessions),
    description="Sync a range of days from Evo Voice into the lake and raw.* only.",
)
dbt_job = dg.define_asset_job(
    "dbt_job",
    selection=dg.AssetSelection.assets(evo_accounts, evo_dbt_models, published_warehouse),
    description="Refresh accounts, build the dbt models and publish the BI copy.",
)


def lookback_range(now: datetime, lookback_days: int) -> tuple[str, str]:
    """Yesterday and the ``lookback_days`` days before it (sessions change after first seen:
    a call still ringing at sync time ends later)."""
    yesterday = now.date() - timedelta(days=1)
    first = max(yesterday - timedelta(days=lookback_days), config.sync_start_date())
    return first.isoformat(), yesterday.isoformat()


@dg.schedule(
    job=sync_job,
    cron_schedule="0 2 * * *",
    execution_timezone=config.timezone_name(),
    description="02:00 daily: sync yesterday, re-sync EVO_SYNC_LOOKBACK_DAYS days before it, "
    "then rebuild the marts.",
)
def daily_sync_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    now = context.scheduled_execution_time or datetime.now(ZoneInfo(config.timezone_name()))
    first, last = lookback_range(now, config.lookback_days())
    return dg.RunRequest(
        run_key=f"daily-{last}",
        tags={
            PARTITION_RANGE_START_TAG: first,
            PARTITION_RANGE_END_TAG: last,
        },
    )
