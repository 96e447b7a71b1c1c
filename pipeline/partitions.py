"""Daily partitions: one partition = the sessions created on one calendar day in
``EVO_VOICE_TIMEZONE``."""

from __future__ import annotations

import dagster as dg

from pipeline import config

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=config.sync_start_date().isoformat(),
    timezone=config.timezone_name(),
)

# Dagster's documented run tags for a run over a range of partitions (what a single-run
# backfill sets); Dagster exports no public constant for them.
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
