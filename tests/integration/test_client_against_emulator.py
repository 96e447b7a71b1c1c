"""The real client and sync path over a socket against the emulator: every session of a day
exactly once -- nothing lost, nothing twice -- whatever the server does where the real
service's behaviour is UNKNOWN."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pytest
from filelock import FileLock, Timeout

from pipeline.emulator import EmulatorConfig, run_emulator
from pipeline.evo.sessions import iter_window_pages, request_window
from pipeline.lake.store import RangeWriter
from pipeline.sync import sync_range
from tests.conftest import NOW, make_client

DAY = NOW.date() - timedelta(days=2)
OLD_DAY = NOW.date() - timedelta(days=20)


def loaded_ids(warehouse, day: date) -> list[str]:
    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        return [
            r[0]
            for r in con.execute(
                "SELECT session_id FROM raw.sessions WHERE partition_date = ?", [day]
            ).fetchall()
        ]


SCENARIOS = {
    "clean": ({}, {}),
    "faults_25_percent_mixed": (
        {
            "error_rate_500": 0.06,
            "error_rate_502": 0.04,
            "error_rate_503": 0.04,
            "error_rate_429": 0.05,
            "drop_rate": 0.04,
            "stall_rate": 0.02,
            "stall_seconds": 1.5,
            "fault_seed": 3,
        },
        {},
    ),
    "silent_page_cap_and_ignored_sort": ({"page_size_cap": 17, "honour_sort": False}, {}),
    "exclusive_end_date_filtering_on_completion_in_new_york": (
        {
            "end_date_inclusive": False,
            "date_filter_field": "dateCompleted",
            "date_filter_tz": "America/New_York",
        },
        {},
    ),
    "mixed_timestamp_formats": ({"timestamp_format": "mixed"}, {}),
    "msdate_timestamps": ({"timestamp_format": "msdate"}, {}),
    "cookie_expires_every_7_requests": ({"cookie_expiry_requests": 7}, {}),
    "basic_auth": ({}, {"auth": "basic"}),
    "chicago_partitions": ({"date_filter_tz": "Asia/Tokyo"}, {"timezone": "America/Chicago"}),
    "sequential_paging": ({}, {"concurrency": 1}),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_day_is_loaded_exactly_once(scenario, lake, warehouse):
    knobs, client_overrides = SCENARIOS[scenario]
    config = EmulatorConfig(seed=5, sessions_per_day=400, days_of_history=10, now=NOW, **knobs)
    with run_emulator(config) as emulator, make_client(emulator, **client_overrides) as client:
        summaries = sync_range(client, warehouse, DAY, DAY)
        truth = emulator.store.ids_on_local_day(DAY, client.settings.timezone)
    got = loaded_ids(warehouse, DAY)
    assert len(got) == len(set(got)), "a session was loaded twice"
    assert set(got) == set(truth)
    assert summaries[0].sessions == len(truth) > 100
    if scenario == "faults_25_percent_mixed":
        assert client.stats.retries > 0


def test_archive_boundary_reads_both_stores(lake, warehouse):
    config = EmulatorConfig(
        seed=6, sessions_per_day=150, days_of_history=30, now=NOW, archive_cutoff_days=20.2
    )
    days = (OLD_DAY - timedelta(days=1), OLD_DAY, OLD_DAY + timedelta(days=1))
    with run_emulator(config) as emulator, make_client(emulator) as client:
        sync_range(client, warehouse, days[0], days[-1], today=NOW.date())
        archive_requests = [
            r
            for r in emulator.stats.request_log
            if {k.lower(): v for k, v in r.query.items()}.get("searcharchive") == ["true"]
        ]
        for day in days:
            assert set(loaded_ids(warehouse, day)) == set(emulator.store.ids_on_local_day(day))
    assert archive_requests, "the archive was never queried"


def test_live_writes_while_paging_lose_nothing_that_existed(lake, warehouse):
    config = EmulatorConfig(seed=8, sessions_per_day=400, days_of_history=10, now=NOW)
    with run_emulator(config) as emulator, make_client(emulator, concurrency=1) as client:
        before = set(emulator.store.ids_on_local_day(DAY))
        emulator.config.drift_per_request = 3
        sync_range(client, warehouse, DAY, DAY)
        emulator.config.drift_per_request = 0
        after = set(emulator.store.ids_on_local_day(DAY))
    got = loaded_ids(warehouse, DAY)
    assert len(got) == len(set(got))
    assert before <= set(got) <= after
    assert len(after) > len(before)


def test_end_of_window_work_runs_once_after_the_last_page_of_the_last_store():
    config = EmulatorConfig(
        seed=6, sessions_per_day=150, days_of_history=30, now=NOW, archive_cutoff_days=20.2
    )
    events: list[object] = []
    with run_emulator(config) as emulator, make_client(emulator, page_size=40) as client:
        window = request_window(OLD_DAY, OLD_DAY, client.settings.zone)
        for archive, page in iter_window_pages(
            client, window, today=NOW.date(), while_counting=lambda: events.append("prepare")
        ):
            events.append((archive, page.number, page.is_last))
    assert events.count("prepare") == 1
    assert events[-1] == "prepare"  # nothing was read again: the counts did not change
    assert events[-2][:1] == (True,) and events[-2][2]  # right after the archive's last page
    live = [e for e in events[:-1] if e[0] is False]
    assert live and live[-1][2]  # the live store was read first, to its last page


def writer_lock_is_held(warehouse) -> bool:
    """Whether some holder has the warehouse's writer lock (a lock of our own would wait)."""
    try:
        with FileLock(str(warehouse.path) + ".lock", timeout=0):
            return False
    except Timeout:
        return True


def test_a_store_read_again_after_the_commit_was_prepared_keeps_its_rows_unlocked(
    lake, warehouse, monkeypatch
):
    events: list[str] = []
    write, write_out = RangeWriter.write, RangeWriter.write_out

    def recording_write(self, flat):
        events.append("rows while the writer is open" if writer_lock_is_held(warehouse) else "rows")
        return write(self, flat)

    def recording_write_out(self, before=None):
        events.append("written out" if before is None else "day written out")
        return write_out(self, before)

    monkeypatch.setattr(RangeWriter, "write", recording_write)
    monkeypatch.setattr(RangeWriter, "write_out", recording_write_out)
    config = EmulatorConfig(seed=8, sessions_per_day=400, days_of_history=10, now=NOW)
    with run_emulator(config) as emulator, make_client(emulator, concurrency=2) as client:
        before = set(emulator.store.ids_on_local_day(DAY))
        emulator.config.drift_per_request = 3  # the closing count differs: read again
        sync_range(client, warehouse, DAY, DAY)
        emulator.config.drift_per_request = 0
        after = set(emulator.store.ids_on_local_day(DAY))
    re_read = events[events.index("written out") :]
    assert "rows" in re_read  # the re-read came after it...
    # ...with the warehouse writer closed again: readers do not wait for a re-read
    assert "rows while the writer is open" not in re_read
    got = loaded_ids(warehouse, DAY)
    assert len(got) == len(set(got))
    assert before <= set(got) <= after


def test_wrong_password_fails_with_the_settings_to_fix(lake, warehouse):
    from pipeline.evo.errors import AuthError

    config = EmulatorConfig(seed=1, sessions_per_day=10, days_of_history=3, now=NOW)
    with (
        run_emulator(config) as emulator,
        make_client(emulator, password="wrong-Secret-123") as client,
        pytest.raises(AuthError, match="EVO_VOICE_USERNAME / EVO_VOICE_PASSWORD") as caught,
    ):
        sync_range(client, warehouse, DAY, DAY)
    assert "wrong-Secret-123" not in str(caught.value)
