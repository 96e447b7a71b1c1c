"""startDate/endDate semantics (inclusive or exclusive end, filter field, filter time zone) and
the live/archive split around the archive cut-off."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from pipeline.emulator import parse_served
from tests.emulator.helpers import NOW, basic_session, fetch_all, get_json

D = date(2026, 3, 9)


def ids(items) -> set[str]:
    return {s["id"] for s in items}


def test_inclusive_end_date_includes_the_end_day(shared_emu):
    api = basic_session(shared_emu)
    got = fetch_all(api, shared_emu.base_url, startDate="2026-03-09", endDate="2026-03-09")
    assert ids(got) == set(shared_emu.store.ids_on_local_day(D))


def test_exclusive_end_date_excludes_the_end_day(start_emulator):
    emu = start_emulator(end_date_inclusive=False)
    api = basic_session(emu)
    assert fetch_all(api, emu.base_url, startDate="2026-03-09", endDate="2026-03-09") == []
    got = fetch_all(api, emu.base_url, startDate="2026-03-09", endDate="2026-03-10")
    assert ids(got) == set(emu.store.ids_on_local_day(D))


def test_dates_are_read_in_the_configured_zone(start_emulator):
    emu = start_emulator(date_filter_tz="America/New_York")
    got = fetch_all(basic_session(emu), emu.base_url, startDate="2026-03-09", endDate="2026-03-09")
    assert ids(got) == set(emu.store.ids_on_local_day(D, "America/New_York"))
    assert ids(got) != set(emu.store.ids_on_local_day(D))


def test_dates_can_filter_on_completion(start_emulator):
    emu = start_emulator(date_filter_field="dateCompleted")
    got = fetch_all(basic_session(emu), emu.base_url, startDate="2026-03-09", endDate="2026-03-09")
    lo, hi = datetime(2026, 3, 9, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC)
    candidates = emu.store.sessions_between(lo - timedelta(days=1), hi)
    expected = {
        s["id"]
        for s in candidates
        if s["dateCompleted"] and lo <= parse_served(s["dateCompleted"]) < hi
    }
    assert ids(got) == expected
    # Calls running over midnight land on the day they ended, not the day they started.
    assert ids(got) != set(emu.store.ids_on_local_day(D))


def test_open_ended_ranges(shared_emu):
    api = basic_session(shared_emu)
    recent = fetch_all(api, shared_emu.base_url, count=200, startDate="2026-03-10")
    expected = set(shared_emu.store.ids_on_local_day(date(2026, 3, 10)))
    expected |= set(shared_emu.store.ids_on_local_day(date(2026, 3, 11)))
    assert ids(recent) == expected


def test_archive_holds_sessions_older_than_the_cutoff(shared_emu):
    api = basic_session(shared_emu)
    store = shared_emu.store
    cutoff = store.archive_cutoff()
    assert cutoff == NOW - timedelta(days=15)
    day = cutoff.date()  # the cut-off falls inside this day
    params = {"startDate": day.isoformat(), "endDate": day.isoformat()}

    live = fetch_all(api, shared_emu.base_url, **params)
    archived = fetch_all(api, shared_emu.base_url, searchArchive="true", **params)

    assert all(parse_served(s["dateCreated"]) >= cutoff for s in live)
    assert all(parse_served(s["dateCreated"]) < cutoff for s in archived)
    assert live and archived
    assert ids(live) | ids(archived) == set(store.ids_on_local_day(day))

    old = (day - timedelta(days=2)).isoformat()
    assert fetch_all(api, shared_emu.base_url, startDate=old, endDate=old) == []
    assert fetch_all(api, shared_emu.base_url, startDate=old, endDate=old, searchArchive="true")

    # A known id 404s on GetSession once archived (the live store no longer holds it).
    response = api.get(f"{shared_emu.base_url}/sessions/{archived[0]['id']}", timeout=5)
    assert response.status_code == 404
    found = get_json(
        api, f"{shared_emu.base_url}/sessions", specificIds=archived[0]["id"], searchArchive="true"
    )
    assert ids(found["items"]) == {archived[0]["id"]}


def test_history_has_no_sessions_after_now_and_few_still_running(shared_emu):
    today = shared_emu.store.sessions_on_local_day(NOW.date())
    assert today and all(parse_served(s["dateCreated"]) <= NOW for s in today)
    running = [s for s in today if not s["ended"]]
    assert running
    for s in running:
        assert s["dateCompleted"] is None and s["outcome"] is None
        assert s["callState"] in {"Connected", "Ringing", "Hold"}
        assert NOW - parse_served(s["dateCreated"]) < timedelta(hours=9)
    earlier = shared_emu.store.sessions_on_local_day(NOW.date() - timedelta(days=1))
    assert all(s["ended"] for s in earlier)
