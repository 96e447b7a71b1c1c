"""Data that changes under a client: drift inserted on every request while it pages, and the
test API that removes, inserts and edits sessions -- all reflected in what is served and in the
ground truth."""

from __future__ import annotations

from datetime import date, timedelta

from pipeline.emulator import parse_served
from tests.emulator.helpers import NOW, basic_session, fetch_all, get_json

D = date(2026, 3, 9)
DAY = {"startDate": "2026-03-09", "endDate": "2026-03-09"}


def test_drift_inserts_sessions_on_the_queried_day_while_paging(start_emulator):
    emu = start_emulator(drift_per_request=2)
    api = basic_session(emu)
    before = set(emu.store.ids_on_local_day(D))

    pages = []
    page = 0
    while True:
        body = get_json(api, f"{emu.base_url}/sessions", page=page, countPerPage=25, **DAY)
        pages.append(body)
        page += 1
        if not body["hasMorePages"]:
            break

    after = set(emu.store.ids_on_local_day(D))
    assert len(after) == len(before) + 2 * page
    totals = [p["totalCount"] for p in pages]
    assert totals == sorted(totals) and totals[-1] > totals[0]
    served = [s["id"] for p in pages for s in p["items"]]
    # Newest-first paging under inserts shifts rows down: some come back twice.
    assert len(served) > len(set(served))
    assert set(served) <= after


def test_drift_now_mode_adds_fresh_sessions_of_the_queried_accounts(start_emulator):
    emu = start_emulator(drift_per_request=3, drift_mode="now")
    account = emu.store.accounts()[2]["id"]
    before = set(emu.store.ids_on_local_day(NOW.date()))
    get_json(basic_session(emu), f"{emu.base_url}/sessions", accountIds=account)
    new = set(emu.store.ids_on_local_day(NOW.date())) - before
    assert len(new) == 3
    for session_id in new:
        session = emu.store.session(session_id)
        assert session["accountId"] == account
        assert timedelta(0) <= NOW - parse_served(session["dateCreated"]) <= timedelta(minutes=1)


def test_removed_sessions_disappear_from_responses_and_truth(emu):
    api = basic_session(emu)
    removed = emu.store.remove_sessions_on_local_day(D, fraction=0.1, seed=3)
    assert removed
    got = {s["id"] for s in fetch_all(api, emu.base_url, **DAY)}
    assert not got & set(removed)
    assert got == set(emu.store.ids_on_local_day(D))
    assert emu.store.remove_sessions(removed[:2]) == 0  # already gone


def test_inserted_sessions_are_served_and_survive_a_format_change(emu):
    api = basic_session(emu)
    new = emu.store.insert_sessions(D, count=4)
    got = {s["id"]: s for s in fetch_all(api, emu.base_url, **DAY)}
    assert set(new) <= set(got)
    assert all(parse_served(got[i]["dateCreated"]).date() == D for i in new)

    emu.config.timestamp_format = "msdate"
    again = {s["id"]: s for s in fetch_all(api, emu.base_url, **DAY)}
    assert set(again) == set(got)
    assert again[new[0]]["dateCreated"].startswith("/Date(")


def test_modified_sessions_bump_date_last_modified(emu):
    api = basic_session(emu)
    target = emu.store.sessions_on_local_day(D)[10]
    edited = emu.store.modify_session(target["id"], {"outcome": "Escalated"}, by="agent-7")

    assert edited["outcome"] == "Escalated"
    assert edited["lastModifiedBy"] == "agent-7"
    assert parse_served(edited["dateLastModified"]) == NOW
    served = get_json(api, f"{emu.base_url}/sessions", specificIds=target["id"])["items"]
    assert served == [edited]

    newest = get_json(
        api, f"{emu.base_url}/sessions", sortField="dateLastModified", sortOrder="Descend", **DAY
    )["items"][0]
    assert newest["id"] == target["id"]
    # Edits are replayed when the day is rendered again.
    emu.config.timestamp_format = "naive"
    assert emu.store.session(target["id"])["outcome"] == "Escalated"
