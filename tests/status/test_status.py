"""``evo-sync status`` on a warehouse built by a real backfill: a table of the synced days and
the marts' freshness; exit 0 only when every day of the range is synced and none is failing;
exit 1 naming a missing day, on an incomplete closed day, and (in one line) without a
warehouse; stale marts are reported. Modified warehouses are copies, never the shared one."""

from __future__ import annotations

import io
import shutil
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from rich.console import Console

from pipeline.cli import main
from pipeline.status import MARTS_STALE_AFTER, ago, collect_status, day_ranges, render
from tests.conftest import NOW

FIRST, LAST = NOW.date() - timedelta(days=5), NOW.date() - timedelta(days=1)
DAYS = [FIRST + timedelta(days=n) for n in range((LAST - FIRST).days + 1)]
MARTS_WITH_WATERMARK = {
    "call_durations_daily",
    "customer_calls_daily",
    "endpoint_performance_daily",
    "fct_sessions",
    "missed_call_rate_daily",
}


@pytest.fixture(autouse=True)
def _settings(monkeypatch):
    # tests/conftest.py sets EVO_SYNC_START_DATE 120 days back for the partitions; the status
    # range must start at the first synced day here unless a test says otherwise.
    monkeypatch.delenv("EVO_SYNC_START_DATE", raising=False)
    monkeypatch.delenv("EVO_VOICE_TIMEZONE", raising=False)


def run_status(monkeypatch, capsys, data_dir, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("EVO_DATA_DIR", str(data_dir))
    code = main(["status", *args])
    out, err = capsys.readouterr()
    return code, out, err


def copy_of(built_warehouse, tmp_path):
    data_dir, _ = built_warehouse
    target = tmp_path / "data"
    target.mkdir()
    shutil.copy(data_dir / "warehouse.duckdb", target / "warehouse.duckdb")
    return target


def row_of(out: str, first_cell: str) -> str:
    """The table row whose first cell starts with ``first_cell``."""
    return next(line for line in out.splitlines() if line.lstrip("│┃ ").startswith(first_cell))


def execute(data_dir, sql: str, params=()) -> None:
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as con:
        con.execute(sql, list(params))


def test_all_days_synced_and_complete_exit_0_with_the_table(built_warehouse, monkeypatch, capsys):
    data_dir, _ = built_warehouse
    code, out, err = run_status(monkeypatch, capsys, data_dir)
    assert code == 0, out + err
    for day in DAYS:
        row = row_of(out, str(day))
        assert " ok " in row and (" ago " in row or " just now " in row)
    assert f"Range {FIRST}..{LAST} (5 days" in out
    assert "No missing days." in out
    for mart in MARTS_WITH_WATERMARK:
        assert " fresh " in row_of(out, mart)
    assert "Marts are stale" not in out
    assert out.rstrip().endswith("OK")


def test_a_missing_day_exits_1_and_is_named(built_warehouse, tmp_path, monkeypatch, capsys):
    data_dir = copy_of(built_warehouse, tmp_path)
    gone = DAYS[2]
    execute(data_dir, "DELETE FROM raw.synced_days WHERE partition_date = ?", [gone])
    code, out, _ = run_status(monkeypatch, capsys, data_dir)
    assert code == 1
    assert f"Missing 1 day(s): {gone}" in out
    assert "FAILED: 1 missing day(s)" in out


def test_days_before_the_first_synced_one_count_when_a_start_is_set(
    built_warehouse, monkeypatch, capsys
):
    data_dir, _ = built_warehouse
    start = FIRST - timedelta(days=3)
    monkeypatch.setenv("EVO_SYNC_START_DATE", start.isoformat())
    code, out, _ = run_status(monkeypatch, capsys, data_dir)
    assert code == 1
    assert f"Missing 3 day(s): {start}..{FIRST - timedelta(days=1)}" in out
    code, out, _ = run_status(monkeypatch, capsys, data_dir, "--start", str(FIRST))
    assert code == 0, out  # --start wins over EVO_SYNC_START_DATE


def test_an_incomplete_closed_day_exits_1(built_warehouse, tmp_path, monkeypatch, capsys):
    data_dir = copy_of(built_warehouse, tmp_path)
    short = DAYS[1]
    execute(
        data_dir,
        "UPDATE raw.synced_days SET complete = false, "
        "server_total_count = window_distinct_sessions + 7 WHERE partition_date = ?",
        [short],
    )
    code, out, _ = run_status(monkeypatch, capsys, data_dir)
    assert code == 1
    assert " incomplete " in row_of(out, str(short))
    assert f"Incomplete closed day {short}" in out
    assert "FAILED: 1 incomplete closed day(s)" in out


def test_an_incomplete_day_still_open_is_not_failing(built_warehouse, tmp_path):
    data_dir = copy_of(built_warehouse, tmp_path)
    today = NOW.date()
    execute(
        data_dir,
        "INSERT INTO raw.synced_days SELECT * REPLACE (CAST(? AS DATE) AS partition_date, "
        "false AS complete) FROM raw.synced_days WHERE partition_date = ?",
        [today, LAST],
    )
    now = datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=12)
    report = collect_status(data_dir / "warehouse.duckdb", None, today, now)
    (open_day,) = [d for d in report.days if d.day == today]
    assert open_day.check == "incomplete" and not open_day.failing
    assert report.ok and not report.missing


def test_missing_warehouse_exits_1_with_one_line(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "nothing-here"
    code, out, err = run_status(monkeypatch, capsys, empty)
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "no warehouse" in err and "make demo" in err and "evo-sync backfill" in err
    assert not (empty / "warehouse.duckdb").exists()  # status never creates one


def test_stale_marts_are_reported(built_warehouse, tmp_path, monkeypatch, capsys):
    data_dir = copy_of(built_warehouse, tmp_path)
    for mart in MARTS_WITH_WATERMARK:
        execute(
            data_dir, f"UPDATE marts.{mart} SET last_synced_at = last_synced_at - INTERVAL 30 HOUR"
        )
    code, out, _ = run_status(monkeypatch, capsys, data_dir)
    assert code == 0  # the days are fine; stale marts are reported, not fatal
    assert "Marts are stale" in out
    for mart in MARTS_WITH_WATERMARK:
        row = row_of(out, mart)
        assert " stale " in row and "h ago" in row


def test_collect_status_judges_freshness_at_the_given_time(built_warehouse):
    data_dir, _ = built_warehouse
    path = data_dir / "warehouse.duckdb"
    fresh = collect_status(path, None, LAST, datetime.now(UTC))
    assert [d.day for d in fresh.days] == DAYS and fresh.ok
    assert {m.name for m in fresh.marts} == MARTS_WITH_WATERMARK
    assert not fresh.marts_stale
    later = fresh.marts_last_synced_at + MARTS_STALE_AFTER + timedelta(minutes=1)
    stale = collect_status(path, None, LAST, later)
    assert stale.marts_stale and all(m.stale for m in stale.marts)
    console = Console(file=io.StringIO(), width=120)
    render(stale, console)
    assert "Marts are stale (newest sync 26 h ago, limit 26 h)" in console.file.getvalue()


def test_relative_times_and_day_ranges():
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert ago(now - timedelta(seconds=20), now) == "just now"
    assert ago(now - timedelta(minutes=12), now) == "12 min ago"
    assert ago(now - timedelta(hours=3, minutes=59), now) == "3 h ago"
    assert ago(now - timedelta(days=4), now) == "4 d ago"
    days = [NOW.date() + timedelta(days=n) for n in (0, 1, 2, 5)]
    assert day_ranges(days) == f"{days[0]}..{days[2]}, {days[3]}"
