"""End to end: ``evo-sync backfill`` syncs days from the emulator through the real Dagster
definitions, builds the dbt marts, and the marts equal metrics recomputed in plain Python from
the emulator's ground truth. A persistently failing day fails with one line per day and leaves
the days already loaded untouched."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import timedelta

import duckdb
import pytest

from pipeline.cli import main
from pipeline.emulator import EmulatorConfig, run_emulator
from pipeline.evo.timestamps import parse_timestamp
from tests.conftest import NOW

FIRST = NOW.date() - timedelta(days=4)
LAST = NOW.date() - timedelta(days=2)
DAYS = [FIRST + timedelta(days=n) for n in range((LAST - FIRST).days + 1)]


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    config = EmulatorConfig(seed=31, sessions_per_day=250, days_of_history=10, now=NOW)
    with run_emulator(config) as emulator, pytest.MonkeyPatch.context() as env:
        env.setenv("EVO_VOICE_BASE_URL", emulator.base_url)
        env.setenv("EVO_VOICE_USERNAME", config.username)
        env.setenv("EVO_VOICE_PASSWORD", config.password)
        env.setenv("EVO_DATA_DIR", str(data_dir))
        env.delenv("DAGSTER_HOME", raising=False)
        status = main(["backfill", "--start", str(FIRST), "--end", str(LAST), "--quiet"])
        yield emulator, data_dir, status, env


def query(data_dir, sql, params=()):
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def quantile_cont(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def expected_marts(emulator) -> tuple[dict, dict]:
    rates: dict = defaultdict(lambda: [0, 0])
    durations: dict = defaultdict(list)
    for day in DAYS:
        for s in emulator.store.sessions_on_local_day(day):
            if s.get("channel") != "Voice":
                continue
            key = (day, s.get("accountId"), s.get("direction"))
            rates[key][0] += 1
            rates[key][1] += bool(s.get("wasMissed"))
            created = parse_timestamp(s.get("dateCreated"))
            completed = parse_timestamp(s.get("dateCompleted"))
            if not s.get("wasMissed") and completed is not None and completed >= created:
                durations[key].append((completed - created).total_seconds())
    expected_rates = {k: (t, m, m / t) for k, (t, m) in rates.items()}
    expected_durations = {
        k: (
            len(v),
            statistics.fmean(v),
            quantile_cont(v, 0.5),
            quantile_cont(v, 0.9),
            max(v),
            sum(v),
        )
        for k, v in durations.items()
        if v
    }
    return expected_rates, expected_durations


def test_backfill_succeeds_and_raw_tables_match_ground_truth(backfilled, capsys):
    emulator, data_dir, status, _ = backfilled
    assert status == 0
    for day in DAYS:
        got = {
            r[0]
            for r in query(
                data_dir, "SELECT session_id FROM raw.sessions WHERE partition_date = ?", [day]
            )
        }
        assert got == set(emulator.store.ids_on_local_day(day))


def test_marts_equal_metrics_recomputed_from_ground_truth(backfilled):
    emulator, data_dir, status, _ = backfilled
    assert status == 0
    expected_rates, expected_durations = expected_marts(emulator)
    rates = {
        (d, a, r): (t, m, rate)
        for d, a, r, t, m, rate in query(
            data_dir,
            "SELECT session_date, account_id, direction, total_calls, missed_calls, "
            "missed_call_rate FROM marts.missed_call_rate_daily",
        )
    }
    assert rates.keys() == expected_rates.keys()
    for key, (total, missed, rate) in expected_rates.items():
        assert rates[key][:2] == (total, missed)
        assert rates[key][2] == pytest.approx(rate, abs=1e-9)
    durations = {
        row[:3]: row[3:]
        for row in query(
            data_dir,
            "SELECT session_date, account_id, direction, answered_calls, "
            "avg_duration_seconds, median_duration_seconds, p90_duration_seconds, "
            "max_duration_seconds, total_duration_seconds "
            "FROM marts.call_durations_daily",
        )
    }
    assert durations.keys() == expected_durations.keys()
    for key, want in expected_durations.items():
        assert durations[key][0] == want[0]
        assert list(durations[key][1:]) == pytest.approx(list(want[1:]), abs=1e-9, rel=1e-12)


def test_a_persistently_failing_day_fails_with_one_line_and_keeps_loaded_days(backfilled, capsys):
    emulator, data_dir, _, env = backfilled
    before = query(data_dir, "SELECT partition_date, sync_id FROM raw.synced_days ORDER BY 1")
    env.setenv("EVO_VOICE_MAX_ATTEMPTS", "2")
    emulator.config.error_rate_500 = 1.0
    try:
        capsys.readouterr()
        status = main(
            [
                "backfill",
                "--start",
                str(FIRST),
                "--end",
                str(FIRST + timedelta(1)),
                "--quiet",
                "--no-dbt",
            ]
        )
    finally:
        emulator.config.error_rate_500 = 0.0
    err = capsys.readouterr().err
    assert status == 1
    failed_lines = [line for line in err.splitlines() if line.startswith("FAILED ")]
    assert [line.split(":")[0] for line in failed_lines] == [
        f"FAILED {FIRST}",
        f"FAILED {FIRST + timedelta(1)}",
    ]
    assert all("HTTP 500" in line and "/sessions" in line for line in failed_lines)
    after = query(data_dir, "SELECT partition_date, sync_id FROM raw.synced_days ORDER BY 1")
    assert after == before


def test_bad_date_range_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit):
        main(["backfill", "--start", "2026-11-05", "--end", "2026-13-01"])
    assert "is not a date" in capsys.readouterr().err


def test_demo_days_are_idempotent(backfilled):
    _, data_dir, _, _ = backfilled
    before = query(
        data_dir, "SELECT * EXCLUDE (last_synced_at) FROM marts.missed_call_rate_daily ORDER BY ALL"
    )
    assert main(["backfill", "--start", str(FIRST), "--end", str(LAST), "--quiet"]) == 0
    assert (
        query(
            data_dir,
            "SELECT * EXCLUDE (last_synced_at) FROM marts.missed_call_rate_daily ORDER BY ALL",
        )
        == before
    )
    assert query(data_dir, "SELECT count(*) - count(DISTINCT session_id) FROM raw.sessions") == [
        (0,)
    ]


def test_published_copy_holds_the_marts_for_bi_tools(backfilled):
    _, data_dir, status, _ = backfilled
    assert status == 0
    published = data_dir / "published" / "warehouse.duckdb"
    working = query(data_dir, "SELECT * FROM marts.call_durations_daily ORDER BY ALL")
    with duckdb.connect(str(published), read_only=True) as con:
        assert con.execute("SELECT * FROM marts.call_durations_daily ORDER BY ALL").fetchall() == (
            working
        )
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert {"fct_sessions", "missed_call_rate_daily", "synced_days"} <= tables
