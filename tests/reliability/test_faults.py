"""Faults: with a quarter or more of all requests failing (500, HTML 502/503, 429 with Retry-After,
dropped connections, stalls beyond the read timeout) ``evo-sync backfill`` produces exactly the
tables and marts of a clean run; a day that keeps failing fails alone, with one line, and leaves
every loaded day as it was."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs

from pipeline.emulator.server import Response
from tests.reliability.helpers import (
    DAYS,
    RUN_ENV,
    SESSION_TABLES,
    cli,
    connect,
    contents,
    day_args,
    differences,
    record,
    snapshot,
    tables_in,
)

SYNCED_DAYS_FACTS = "raw.synced_days"
SYNCED_DAYS_VOLATILE = ("sync_id", "synced_at", "pages", "retries")


def everything(path):
    """Every raw table and every mart, without provenance columns."""
    tables = [f"raw.{t}" for t in (*SESSION_TABLES, "accounts", "account_billing_items")]
    tables += [f"marts.{t}" for t in tables_in(path, "marts")]
    found = snapshot(path, tables)
    with connect(path) as con:
        found[SYNCED_DAYS_FACTS] = contents(con, SYNCED_DAYS_FACTS, exclude=SYNCED_DAYS_VOLATILE)
    return found


def test_requests_failing_in_every_way_change_nothing(baseline, faulted_run):
    assert faulted_run.statuses["faulted"] == 0, faulted_run.outputs["faulted"]
    failed = sum(faulted_run.faults.values())
    assert failed >= 0.2 * faulted_run.requests, (failed, faulted_run.requests)
    assert set(faulted_run.faults) == {"500", "502", "503", "429", "drop", "stall"}
    retries = len(
        re.findall(r" DEBUG pipeline\.evo\.client: retrying ", faulted_run.log_file.read_text())
    )
    assert retries >= failed  # every failed request was retried (the last attempt never came)
    record(retries=retries)

    clean, faulted = (
        everything(baseline.warehouse),
        everything(faulted_run.data_dir / "warehouse.duckdb"),
    )
    assert not differences(clean, faulted), differences(clean, faulted)
    assert len(clean["raw.sessions"][1]) > 500
    assert len(clean) >= 15, sorted(clean)  # 7 raw tables, synced_days and every mart
    published = [
        f"marts.{t}" for t in tables_in(baseline.data_dir / "published/warehouse.duckdb", "marts")
    ]
    clean_bi = snapshot(baseline.data_dir / "published/warehouse.duckdb", published)
    faulted_bi = snapshot(faulted_run.data_dir / "published/warehouse.duckdb", published)
    assert not differences(clean_bi, faulted_bi)
    assert not differences(clean_bi, snapshot(faulted_run.data_dir / "warehouse.duckdb", published))
    record(
        sessions_compared=len(clean["raw.sessions"][1]),
        tables_compared=len(clean) + len(clean_bi),
    )


def fail_sessions_of_window(emulator, start_date: str) -> None:
    """Make every ``/sessions`` request whose window starts on ``start_date`` fail with a
    ServiceStack 500, as if the database behind that day kept timing out."""
    handle = emulator.app.handle

    def failing(method, target, headers, body):
        path, _, query = target.partition("?")
        if path == "/sessions" and parse_qs(query).get("startDate") == [start_date]:
            error = b'{"responseStatus":{"errorCode":"SqlException","message":"Timeout expired"}}'
            return Response(500, error), "listsessions", 0, "500"
        return handle(method, target, headers, body)

    emulator.app.handle = failing


def test_a_day_that_keeps_failing_fails_alone_with_one_line(baseline, start_twin, tmp_path, capsys):
    data_dir = baseline.copy_to(tmp_path / "data")
    warehouse = data_dir / "warehouse.duckdb"
    emulator = start_twin()
    failing_day = DAYS[1]
    # With one day per request window (RUN_ENV) the window of a day starts the day before it.
    assert RUN_ENV["EVO_SYNC_DAYS_PER_FETCH"] == "1"
    fail_sessions_of_window(emulator, (failing_day - timedelta(days=1)).isoformat())
    exact = ()  # every column, sync_id included: "untouched" means the same sync's rows
    raw = [f"raw.{t}" for t in (*SESSION_TABLES, "synced_days")]
    before = snapshot(warehouse, raw, exclude=exact)
    published_before = (data_dir / "published/warehouse.duckdb").read_bytes()

    capsys.readouterr()
    status = cli(
        emulator,
        data_dir,
        "backfill",
        *day_args(DAYS[0], failing_day),
        "--quiet",
        "--no-dbt",
        EVO_VOICE_MAX_ATTEMPTS="2",
    )
    err = capsys.readouterr().err
    assert status == 1
    failed = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1, err
    assert failed[0].startswith(f"FAILED {failing_day}: ") and "/sessions" in failed[0]
    assert "HTTP 500" in failed[0] and f"day {failing_day}" in failed[0]
    assert "Traceback" not in err

    after = snapshot(warehouse, raw, exclude=exact)
    untouched = [d for d in DAYS if d != DAYS[0]]
    for table, (columns, rows) in before.items():
        at = columns.index("partition_date")
        keep = [r for r in rows if r[at] in untouched]
        assert keep == [r for r in after[table][1] if r[at] in untouched], table
        if table != "raw.rejected_sessions":
            assert keep, table
    # The day that did sync was replaced by identical data under a new sync id.
    day_one = {
        "tables": [f"raw.{t}" for t in SESSION_TABLES],
        "where": "WHERE partition_date = ?",
        "params": [DAYS[0]],
    }
    assert not differences(snapshot(baseline.warehouse, **day_one), snapshot(warehouse, **day_one))
    assert (data_dir / "published/warehouse.duckdb").read_bytes() == published_before
