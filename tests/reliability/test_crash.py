"""Crash safety: a process SIGKILLed anywhere while it syncs a day -- at every failpoint of
``pipeline.failpoints`` and while dbt builds -- leaves every day of the warehouse as it was
before or as the next complete state, never half of a day; the lake agrees with the warehouse;
the published copy BI tools read is untouched. The next run completes the day (abandoned
staging folders in the way or not) and equals the ground truth, while a dashboard holding the
published copy keeps its snapshot and neither fails the run nor sees a half-built state.

The steps share one data folder and build on each other, so they run as one test per phase.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import time
from collections import Counter

import psutil
import pyarrow.parquet as pq
import pytest

import pipeline.sync
from pipeline.emulator import run_emulator
from pipeline.failpoints import FAILPOINTS
from pipeline.lake.store import Lake
from pipeline.lake.warehouse import Warehouse
from pipeline.sync import recover, sync_range
from tests.conftest import make_client
from tests.reliability.helpers import (
    DAYS,
    PYTHON,
    REPO_ROOT,
    SESSION_TABLES,
    assert_equals_truth,
    assert_lake_matches_warehouse,
    cli,
    connect,
    day_args,
    emulator_config,
    pipeline_env,
    record,
    run,
    snapshot,
    truth_by_day,
    worker,
)
from tests.reliability.worker import published_view

DAY = DAYS[1]
SYNC_FAILPOINTS = [name for name in FAILPOINTS if name != "before_publish"]
STALE = 7 * 3600  # older than the 6 h after which staging folders count as abandoned


@pytest.fixture(scope="module")
def site(baseline, tmp_path_factory):
    """A copy of the baseline's data folder and an emulator serving the same data, which the
    steps change (the server loses and gains sessions) so that every crash has something to
    lose."""
    data_dir = baseline.copy_to(tmp_path_factory.mktemp("crash") / "data")
    with run_emulator(emulator_config()) as emulator:
        yield data_dir, emulator


def change_the_server(emulator, step: int) -> None:
    """The server loses a few sessions of DAY and gains a few, so a re-sync changes DAY."""
    ids = emulator.store.ids_on_local_day(DAY)
    emulator.store.remove_sessions(ids[step::17][:4])
    emulator.store.insert_sessions(DAY, count=3)


def day_state(data_dir) -> dict:
    """Every row of every raw table, sync ids included: a crash must leave exactly this."""
    tables = [f"raw.{t}" for t in (*SESSION_TABLES, "synced_days")]
    return snapshot(data_dir / "warehouse.duckdb", tables, exclude=())


def published_bytes(data_dir) -> bytes:
    return (data_dir / "published" / "warehouse.duckdb").read_bytes()


def complete_with(data_dir, emulator) -> None:
    """The next run: a plain in-process sync of DAY."""
    with make_client(emulator) as client:
        sync_range(
            client,
            Warehouse(data_dir / "warehouse.duckdb", Lake(str(data_dir / "lake"))),
            DAY,
            DAY,
        )


@pytest.mark.parametrize("failpoint", SYNC_FAILPOINTS)
def test_a_sync_killed_at_a_failpoint_leaves_the_day_as_it_was(failpoint, site):
    data_dir, emulator = site
    change_the_server(emulator, SYNC_FAILPOINTS.index(failpoint))
    before, published = day_state(data_dir), published_bytes(data_dir)

    env = pipeline_env(emulator, data_dir, EVO_FAILPOINT=failpoint)
    killed = run(worker("sync", str(DAY), str(DAY)), env, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.describe()
    record(crashes=1)

    assert day_state(data_dir) == before
    assert published_bytes(data_dir) == published
    # The first thing the next run does: put back what the dead one half-published.
    lake = Lake(str(data_dir / "lake"))
    warehouse = Warehouse(data_dir / "warehouse.duckdb", lake)
    rolled_back = recover(warehouse)
    assert rolled_back == (failpoint in ("between_lake_swaps", "inside_duckdb_transaction"))
    assert_lake_matches_warehouse(data_dir)
    assert day_state(data_dir) == before
    complete_with(data_dir, emulator)
    assert_equals_truth(data_dir / "warehouse.duckdb", truth_by_day(emulator, DAYS))
    assert_lake_matches_warehouse(data_dir)


def start_cli(emulator, data_dir, *argv: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "pipeline.cli", *argv],
        env=pipeline_env(emulator, data_dir, **env),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, dbt included
    )


def kill_while_dbt_builds(process: subprocess.Popen, wal, timeout: float = 180) -> int:
    """SIGKILL the whole process group while dbt builds: once dbt has committed part of its
    build into the warehouse (its WAL exists), or has run for a few seconds."""
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + timeout
    dbt, dbt_seen = None, 0.0
    while time.monotonic() < deadline and process.poll() is None:
        if dbt is None:
            for child in parent.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    if "build" in child.cmdline() and any("dbt" in a for a in child.cmdline()):
                        dbt, dbt_seen = child, time.monotonic()
        elif wal.exists() or time.monotonic() - dbt_seen > 3:
            break
        time.sleep(0.05)
    assert dbt is not None, "dbt never started"
    assert dbt.is_running(), "dbt finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    psutil.wait_procs([dbt], timeout=10)
    assert not dbt.is_running(), "dbt survived the kill of its process group"
    return process.returncode


def test_a_backfill_killed_while_dbt_builds_or_before_publishing(site):
    data_dir, emulator = site
    days = day_args(DAY, DAY)

    change_the_server(emulator, 11)
    before, published = day_state(data_dir), published_bytes(data_dir)
    process = start_cli(emulator, data_dir, "backfill", *days, "--quiet")
    status = kill_while_dbt_builds(process, data_dir / "warehouse.duckdb.wal")
    assert status == -signal.SIGKILL
    record(crashes=1)
    after = day_state(data_dir)
    # The day was committed before dbt started: the next complete state, not a partial one.
    assert after != before
    assert_equals_truth(data_dir / "warehouse.duckdb", truth_by_day(emulator, DAYS))
    assert_lake_matches_warehouse(data_dir)
    assert published_bytes(data_dir) == published

    change_the_server(emulator, 12)
    killed = run(
        [PYTHON, "-m", "pipeline.cli", "backfill", *days, "--quiet"],
        pipeline_env(emulator, data_dir, EVO_FAILPOINT="before_publish"),
        timeout=240,
    )
    assert killed.returncode == -signal.SIGKILL, killed.describe()
    record(crashes=1)
    assert_equals_truth(data_dir / "warehouse.duckdb", truth_by_day(emulator, DAYS))
    assert published_bytes(data_dir) == published
    leftovers = list((data_dir / "published").glob(".warehouse-*"))
    assert leftovers, "the killed publish left no staging file (is the failpoint still there?)"


def read_line(process: subprocess.Popen, timeout: float = 60) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, "the dashboard process did not answer"
    return process.stdout.readline()


def marts_of(path) -> dict:
    with connect(path) as con:
        sessions = con.execute(
            "SELECT session_id, session_date, member_count, log_entry_count, was_missed "
            "FROM marts.fct_sessions ORDER BY ALL"
        ).fetchall()
        rates = con.execute(
            "SELECT session_date, account_id, direction, total_calls, missed_calls "
            "FROM marts.missed_call_rate_daily ORDER BY ALL"
        ).fetchall()
    return {"fct_sessions": sessions, "missed_call_rate_daily": rates}


def marts_from_truth(truth) -> dict:
    sessions, rates = [], Counter()
    for day, found in truth.items():
        for s in found:
            counts = (len(s.get("members") or []), len(s.get("log") or []))
            sessions.append((s["id"], day, *counts, s.get("wasMissed")))
            if s.get("channel") == "Voice":
                key = (day, s.get("accountId"), s.get("direction"))
                rates[key, "total"] += 1
                rates[key, "missed"] += bool(s.get("wasMissed"))
    keys = sorted({key for key, _ in rates})
    return {
        "fct_sessions": sorted(sessions),
        "missed_call_rate_daily": [(*k, rates[k, "total"], rates[k, "missed"]) for k in keys],
    }


def test_the_next_run_completes_while_a_dashboard_holds_the_published_copy(site):
    data_dir, emulator = site
    published = data_dir / "published" / "warehouse.duckdb"
    # Leftovers of the crashes above, aged past the point where they count as abandoned.
    abandoned = list((data_dir / "lake" / "_staging").iterdir())
    abandoned += list((data_dir / "published").glob(".warehouse-*"))
    assert abandoned
    for path in abandoned:
        os.utime(path, (time.time() - STALE, time.time() - STALE))

    dashboard = subprocess.Popen(
        worker("hold-published", str(published)),
        env=pipeline_env(emulator, data_dir),
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        held_before = json.loads(read_line(dashboard))
        change_the_server(emulator, 13)
        status = cli(emulator, data_dir, "backfill", *day_args(DAYS[0], DAYS[-1]), "--quiet")
        dashboard.stdin.write("now\n")
        dashboard.stdin.flush()
        seen = json.loads(read_line(dashboard))
    finally:
        dashboard.stdin.close()
        dashboard.wait(timeout=30)
    assert status == 0

    truth = truth_by_day(emulator, DAYS)
    assert_equals_truth(data_dir / "warehouse.duckdb", truth)
    assert_lake_matches_warehouse(data_dir)
    working, bi = marts_of(data_dir / "warehouse.duckdb"), marts_of(published)
    assert working == marts_from_truth(truth)  # no stale or missing mart rows after the crashes
    assert bi == working
    # The dashboard kept its snapshot throughout; a new connection sees the new build.
    assert seen == held_before
    with connect(published) as con:
        fresh = published_view(con)
    assert fresh != held_before and fresh[0] == len(working["fct_sessions"])
    assert not [p for p in abandoned if p.exists()], "abandoned staging was not swept"
    record(sessions_compared=len(working["fct_sessions"]), tables_compared=2)


def test_a_first_sync_killed_between_lake_swaps_leaves_nothing(tmp_path):
    data_dir = tmp_path / "data"
    with run_emulator(emulator_config(sessions_per_day=50)) as emulator:
        env = pipeline_env(emulator, data_dir, EVO_FAILPOINT="between_lake_swaps")
        killed = run(worker("sync", str(DAY), str(DAY)), env, timeout=120)
        assert killed.returncode == -signal.SIGKILL, killed.describe()
        record(crashes=1)
        lake = Lake(str(data_dir / "lake"))
        warehouse = Warehouse(data_dir / "warehouse.duckdb", lake)
        assert (data_dir / "lake" / "sessions" / f"date={DAY}").exists()  # half-published
        assert recover(warehouse) == 1
        assert not [p for p in (data_dir / "lake").rglob("date=*") if "_staging" not in str(p)]
        assert not (data_dir / "lake" / "_pending").exists() or not any(
            (data_dir / "lake" / "_pending").iterdir()
        )
        with connect(data_dir / "warehouse.duckdb") as con:
            assert con.execute("SELECT count(*) FROM raw.sessions").fetchone() == (0,)
        complete_with(data_dir, emulator)
        assert_equals_truth(data_dir / "warehouse.duckdb", truth_by_day(emulator, [DAY]))


def test_a_load_that_fails_puts_the_lake_back(tmp_path, monkeypatch):
    """Not a crash but an error (disk full, a DuckDB error) while a day is loaded: the day's lake
    folders are put back as they were, in the same process."""
    data_dir = tmp_path / "data"
    with run_emulator(emulator_config(sessions_per_day=50)) as emulator:
        complete_with(data_dir, emulator)
        before = day_state(data_dir)
        emulator.store.insert_sessions(DAY, count=5)

        def broken(con, files, summary, **_):
            raise OSError("No space left on device")

        monkeypatch.setattr(pipeline.sync, "replace_day", broken)
        with pytest.raises(OSError, match="No space left"):
            complete_with(data_dir, emulator)
        monkeypatch.undo()
        assert day_state(data_dir) == before
        lake = data_dir / "lake"
        with connect(data_dir / "warehouse.duckdb") as con:
            want = {r[0] for r in con.execute("SELECT session_id FROM raw.sessions").fetchall()}
        got = pq.read_table(lake / "sessions" / f"date={DAY}").column("session_id").to_pylist()
        assert set(got) == want
        assert not (lake / "_pending").exists() or not any((lake / "_pending").iterdir())
