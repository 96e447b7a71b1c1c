"""Daily partitions: one partition = the sessions created on one calendar day in
``EVO_VOICE_TIMEZONE``."""

from __future__ import annotations

import dagster as dg

from pipeline import config

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=config.sync_start_date().isoformat(),
    timezone=config.timezone_name(),
)
