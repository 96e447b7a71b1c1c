"""Paging: whatever the server does where the real API's behaviour is unknown -- silent page-size
caps, an ignored sort, endDate inclusive or exclusive, a date filter on another field or in
another zone, partitions in a non-UTC zone, the archive cut-off inside the synced days, pages
shifting under live writes, the same session on two pages -- every raw table of every synced
day equals the emulator's ground truth, children included, and a session served twice is
stored once, as its newest copy, with that copy's children only."""

from __future__ import annotations

import copy
from datetime import timedelta

import orjson
import pytest

from pipeline.emulator import run_emulator
from pipeline.evo.sessions import SESSIONS_PATH, request_window, session_params
from pipeline.evo.timestamps import parse_timestamp
from pipeline.sync import sync_range
from tests.conftest import NOW, make_client
from tests.reliability.helpers import (
    assert_equals_truth,
    emulator_config,
    expected_rows,
    loaded_rows,
    record,
    truth_by_day,
)

DAY = NOW.date() - timedelta(days=3)
DAYS = [DAY, DAY + timedelta(days=1)]

SCENARIOS = {
    "silent_page_cap_17_and_ignored_sort": ({"page_size_cap": 17, "honour_sort": False}, {}),
    "end_date_exclusive": ({"end_date_inclusive": False}, {}),
    "end_date_inclusive_and_nulls_omitted": (
        {"end_date_inclusive": True, "include_null_values": False},
        {},
    ),
    "filter_on_completion_in_new_york_exclusive": (
        {
            "date_filter_field": "dateCompleted",
            "date_filter_tz": "America/New_York",
            "end_date_inclusive": False,
        },
        {},
    ),
    "chicago_partitions_tokyo_server": (
        {"date_filter_tz": "Asia/Tokyo"},
        {"timezone": "America/Chicago"},
    ),
    "kolkata_partitions_mixed_timestamps": (
        {"timestamp_format": "mixed"},
        {"timezone": "Asia/Kolkata", "concurrency": 1},
    ),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_table_equals_ground_truth(scenario, lake, warehouse):
    knobs, client = SCENARIOS[scenario]
    with (
        run_emulator(emulator_config(sessions_per_day=150, **knobs)) as emulator,
        make_client(emulator, **client) as api,
    ):
        sync_range(api, warehouse, DAYS[0], DAYS[-1])
        truth = truth_by_day(emulator, DAYS, api.settings.timezone)
    assert assert_equals_truth(warehouse.path, truth) > 150


def test_archive_cut_off_inside_the_synced_days(lake, warehouse):
    old = NOW.date() - timedelta(days=21)
    days = [old - timedelta(days=1), old, old + timedelta(days=1)]
    config = emulator_config(sessions_per_day=100, days_of_history=25, archive_cutoff_days=20.2)
    with run_emulator(config) as emulator, make_client(emulator) as api:
        sync_range(api, warehouse, days[0], days[-1], today=NOW.date())
        truth = truth_by_day(emulator, days)
        stores = {
            tuple(r.query.get("searchArchive", ["false"])) for r in emulator.stats.request_log
        }
    assert ("true",) in stores and ("false",) in stores
    assert assert_equals_truth(warehouse.path, truth) > 100


def test_pages_shifting_under_live_writes_lose_nothing_that_existed(lake, warehouse):
    with run_emulator(emulator_config(sessions_per_day=300)) as emulator:
        before = set(emulator.store.ids_on_local_day(DAY))
        # New sessions inside the queried days before every answer, and answers out of order:
        # pages read ahead in parallel see different shifts.
        emulator.config.drift_per_request = 3
        emulator.config.latency_jitter_ms = 20
        with make_client(emulator, concurrency=4, page_size=40) as api:
            sync_range(api, warehouse, DAY, DAY)
        emulator.config.drift_per_request = 0
        emulator.config.latency_jitter_ms = 0
        after = truth_by_day(emulator, [DAY])
        got = loaded_rows(warehouse.path, [DAY])
        loaded = [r[0] for r in got["sessions"]]
        assert len(loaded) == len(set(loaded)), "a session was stored twice"
        assert before <= set(loaded), f"{len(before - set(loaded))} existing sessions lost"
        inserted = {s["id"] for s in after[DAY]} - before
        assert inserted, "the drift inserted nothing"
        # Every loaded session, with its children, is exactly what the server holds for it.
        want = expected_rows({DAY: [s for s in after[DAY] if s["id"] in set(loaded)]})
        assert got == want
        # The next sync (the schedule's look-back) picks up what was created meanwhile.
        with make_client(emulator) as api:
            sync_range(api, warehouse, DAY, DAY)
        assert_equals_truth(warehouse.path, after)
    record(sessions_compared=len(loaded))


def newer_copy(session: dict) -> dict:
    """The session as the server would serve it after an edit: one member left, one more log
    entry, another customer trail, a later ``dateLastModified``."""
    changed = copy.deepcopy(session)
    modified = parse_timestamp(session["dateLastModified"]) + timedelta(hours=1)
    changed["dateLastModified"] = modified.isoformat().replace("+00:00", "Z")
    changed["answeredByName"] = "Edited After First Page"
    changed["members"] = changed["members"][:1]
    changed["log"] = [*changed["log"], {"date": changed["dateLastModified"], "message": "edited"}]
    changed["customerBreadcrumb"] = [{"id": "cust-edited", "name": "Edited Customer"}]
    return changed


def older_copy(session: dict) -> dict:
    stale = newer_copy(session)
    modified = parse_timestamp(session["dateLastModified"]) - timedelta(hours=1)
    stale["dateLastModified"] = modified.isoformat().replace("+00:00", "Z")
    stale["answeredByName"] = "Stale Copy"
    return stale


def page_of(api, window, session_id: str) -> int:
    for page in api.iter_pages(SESSIONS_PATH, session_params(api, window, False), what="probe"):
        if any(item.get("id") == session_id for item in page.items):
            return page.number
    raise AssertionError(f"{session_id} is on no page")


# (copy to add, page it goes on relative to the original, which copy must win)
DUPLICATES = {
    "newer_copy_on_the_next_page": (newer_copy, 1, "copy"),
    "older_copy_on_the_next_page": (older_copy, 1, "original"),
    "newer_copy_on_the_previous_page": (newer_copy, -1, "copy"),
    "newer_copy_on_the_same_page": (newer_copy, 0, "copy"),
}


@pytest.mark.parametrize("case", DUPLICATES)
def test_a_session_served_twice_is_stored_once_as_its_newest_copy(case, lake, warehouse):
    make_copy, offset, winner = DUPLICATES[case]
    with run_emulator(emulator_config(sessions_per_day=150)) as emulator:
        truth = truth_by_day(emulator, [DAY])
        target = truth[DAY][len(truth[DAY]) // 2]
        duplicate = make_copy(target)
        with make_client(emulator, page_size=25) as api:
            window = request_window(DAY, DAY, api.settings.zone)
            home = page_of(api, window, target["id"])
            assert home >= 1

            def add_copy(page: int, body: bytes) -> bytes:
                if page != home + offset:
                    return body
                doc = orjson.loads(body)
                doc["items"].append(duplicate)
                return orjson.dumps(doc)

            emulator.config.rewrite_sessions_page = add_copy
            summary = sync_range(api, warehouse, DAY, DAY)[0]
    assert summary.duplicates_removed == 1
    expected = {
        DAY: [duplicate if s["id"] == target["id"] and winner == "copy" else s for s in truth[DAY]]
    }
    assert_equals_truth(warehouse.path, expected)
