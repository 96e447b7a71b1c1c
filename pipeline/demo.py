"""``evo-sync demo``: the emulator, a 14-day backfill through Dagster and dbt, and a summary."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta

from pipeline import config

SUMMARY_SQL = """
SELECT
    session_date,
    count(*) AS calls,
    count(*) FILTER (WHERE was_missed) AS missed,
    count(*) FILTER (WHERE was_missed) / nullif(count(*), 0) AS missed_rate,
    quantile_cont(duration_seconds, 0.5) FILTER (WHERE NOT was_missed) AS median_answered
FROM marts.fct_sessions
WHERE channel = 'Voice' AND session_date BETWEEN ? AND ?
GROUP BY session_date
ORDER BY session_date
"""


def run_demo(days: int = 14, sessions_per_day: int = 1500, seed: int = 7) -> int:
    """Backfill the last ``days`` days from a local emulator and print what the marts say."""
    from pipeline.emulator import EmulatorConfig, run_emulator

    zone_today = datetime.now(UTC).date()
    last = zone_today - timedelta(days=1)
    first = last - timedelta(days=days - 1)
    os.environ.setdefault("EVO_SYNC_START_DATE", first.isoformat())
    emulator_config = EmulatorConfig(
        seed=seed, sessions_per_day=sessions_per_day, days_of_history=days + 2
    )
    print(f"Evo Voice emulator: {days} days x ~{sessions_per_day} sessions (seed {seed})")
    with run_emulator(emulator_config) as emulator:
        os.environ["EVO_VOICE_BASE_URL"] = emulator.base_url
        os.environ["EVO_VOICE_USERNAME"] = emulator_config.username
        os.environ["EVO_VOICE_PASSWORD"] = emulator_config.password
        from pipeline.cli import run_backfill

        report = run_backfill(first, last, with_dbt=True)
    for day, reason in sorted(report.failed.items()):
        print(f"FAILED {day}: {reason}", file=sys.stderr)
    for day, reason in sorted(report.incomplete.items()):
        print(f"INCOMPLETE {day}: {reason}", file=sys.stderr)
    if not report.ok:
        if report.dbt_ok is False:
            print(f"FAILED dbt build: {report.dbt_error}", file=sys.stderr)
        return 1
    print_summary(first, last)
    from pipeline.report import build_report

    print(f"Dashboard: {build_report(config.warehouse_path(), config.data_dir() / 'report.html')}")
    return 0


def print_summary(first, last) -> None:
    import duckdb

    warehouse = config.warehouse_path()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(SUMMARY_SQL, [first, last]).fetchall()
    print()
    print(f"{'day':<12}{'calls':>8}{'missed':>8}{'missed %':>10}{'median answered':>17}")
    for day, calls, missed, rate, median in rows:
        rate_text = "-" if rate is None else f"{rate:.1%}"
        median_text = "-" if median is None else f"{median / 60:.1f} min"
        print(f"{day!s:<12}{calls:>8}{missed:>8}{rate_text:>10}{median_text:>17}")
    print()
    print(f"Warehouse: {warehouse}")
    print(f"Lake:      {config.lake_uri()}")
    print("Next:")
    print("  make dev                                    # Dagster UI: assets, partitions, checks")
    print(
        f"  .venv/bin/python -c \"import duckdb; duckdb.connect('{warehouse}', read_only=True)"
        ".sql('from marts.missed_call_rate_daily').show()\""
    )
    print("  make docs                                   # dbt docs for every model and column")
    print("  .venv/bin/evo-sync backfill --start YYYY-MM-DD --end YYYY-MM-DD  # more days")
