"""Idempotence: syncing the same day again, overlapping backfills, and a re-sync after the server
lost sessions all leave exactly the server's state -- the same rows as before where nothing
changed, no stale child rows where something did -- and touch no other day."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.emulator import run_emulator
from pipeline.sync import sync_days, sync_range
from tests.conftest import NOW, make_client
from tests.reliability.helpers import (
    SESSION_TABLES,
    assert_equals_truth,
    connect,
    emulator_config,
    record,
    snapshot,
    truth_by_day,
)

DAYS = [NOW.date() - timedelta(days=n) for n in (5, 4, 3, 2)]
RAW = [f"raw.{t}" for t in SESSION_TABLES]
# Which sync, and which page of its request window, a row came from: different windows page
# differently.
PROVENANCE = ("sync_id", "synced_at", "source_page")


def only(days):
    return {"where": "WHERE partition_date IN (SELECT unnest(?::DATE[]))", "params": [days]}


def lake_files(lake) -> list[str]:
    root = Path(lake.root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_the_same_day_three_times_gives_the_same_tables(lake, warehouse):
    day = DAYS[1]
    with run_emulator(emulator_config()) as emulator, make_client(emulator) as client:
        states = []
        for _ in range(3):
            sync_range(client, warehouse, day, day)
            states.append(snapshot(warehouse.path, RAW))
        truth = truth_by_day(emulator, [day])
    assert states[0] == states[1] == states[2]
    assert_equals_truth(warehouse.path, truth)
    with connect(warehouse.path) as con:
        assert con.execute("SELECT count(*) FROM raw.synced_days").fetchone() == (1,)
        (sync_id,) = con.execute("SELECT sync_id FROM raw.synced_days").fetchone()
    # One file per table and day, the last sync's; nothing left in staging or pending.
    assert lake_files(lake) == sorted(
        f"{table}/date={day}/part-{sync_id}.parquet" for table in SESSION_TABLES
    )


def test_overlapping_backfills_and_lost_sessions_leave_exactly_the_server_state(lake, warehouse):
    first, second = DAYS[:3], DAYS[1:]
    with run_emulator(emulator_config()) as emulator, make_client(emulator) as client:
        outcome = sync_days(
            client, warehouse, first[0], first[-1], days_per_fetch=7, parallel_fetches=1
        )
        assert not outcome.failed
        after_first = snapshot(warehouse.path, RAW, exclude=PROVENANCE, **only(first))
        outcome = sync_days(
            client, warehouse, second[0], second[-1], days_per_fetch=2, parallel_fetches=2
        )
        assert not outcome.failed
        # The days both backfills synced hold the same rows (provenance aside).
        overlap = [d for d in first if d in second]
        assert snapshot(warehouse.path, RAW, exclude=PROVENANCE, **only(overlap)) == {
            table: (columns, [r for r in rows if r[columns.index("partition_date")] in overlap])
            for table, (columns, rows) in after_first.items()
        }
        assert_equals_truth(warehouse.path, truth_by_day(emulator, DAYS))

        # The server loses a third of one day's sessions; the day is synced again.
        day = DAYS[2]
        others = [d for d in DAYS if d != day]
        untouched = snapshot(warehouse.path, RAW, exclude=(), **only(others))
        lost = emulator.store.ids_on_local_day(day)[::3]
        assert emulator.store.remove_sessions(lost) == len(lost) > 20
        sync_range(client, warehouse, day, day)
        truth = truth_by_day(emulator, DAYS)
    assert_equals_truth(warehouse.path, truth)  # exact, children included: nothing stale
    with connect(warehouse.path) as con:
        for table in SESSION_TABLES:
            stale = con.execute(
                f"SELECT count(*) FROM raw.{table} WHERE session_id IN (SELECT unnest(?))", [lost]
            ).fetchone()[0]
            assert stale == 0, table
    assert snapshot(warehouse.path, RAW, exclude=(), **only(others)) == untouched
    lake_sessions = pq.read_table(f"{lake.root}/sessions/date={day}").column("session_id")
    assert set(lake_sessions.to_pylist()) == {s["id"] for s in truth[day]}
    record(sessions_compared=sum(len(v) for v in truth.values()))
