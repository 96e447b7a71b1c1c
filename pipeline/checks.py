"""Asset checks that live beside the assets rather than in them: the marts' freshness."""

import warnings

import dagster as dg

from pipeline.assets.publish import MART_KEYS, published_warehouse
from pipeline.status import MARTS_STALE_AFTER  # 26 h, the limit `evo-sync status` reports too

# Dagster 1.12 marks these builders as superseded by FreshnessPolicy (a freshness state the
# daemon keeps per asset). Checks suit us better for now: they sit beside the dbt tests on each
# asset, run in the build jobs right after the marts (the jobs select the assets' checks) and
# the sensor re-evaluates them as the hours pass; so we use them and silence the notice.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    marts_freshness_checks = dg.build_last_update_freshness_checks(
        assets=[*MART_KEYS, published_warehouse], lower_bound_delta=MARTS_STALE_AFTER
    )
    marts_freshness_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=marts_freshness_checks,
        name="marts_freshness_sensor",
        minimum_interval_seconds=600,  # a 26-hour limit needs no finer look
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
