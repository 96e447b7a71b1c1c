"""ListResponse paging: 0-based pages, hasMorePages, totals with and without simplifiedPaging,
the default page size, all=true, and the silent page-size cap."""

from __future__ import annotations

import math
from datetime import date

from tests.emulator.helpers import basic_session, fetch_all, get_json

DAY = {"startDate": "2026-03-09", "endDate": "2026-03-09"}


def test_pages_are_zero_based_and_cover_the_result_exactly_once(shared_emu):
    session = basic_session(shared_emu)
    truth = shared_emu.store.ids_on_local_day(date(2026, 3, 9))

    items = fetch_all(session, shared_emu.base_url, count=37, **DAY)

    assert [s["id"] for s in items] == sorted(
        truth, key=lambda i: shared_emu.store.record(i).created, reverse=True
    )
    first = get_json(session, f"{shared_emu.base_url}/sessions", countPerPage=37, **DAY)
    assert first["items"] == items[:37]  # page omitted == page 0


def test_totals_are_filled_without_simplified_paging(shared_emu):
    session = basic_session(shared_emu)
    body = get_json(session, f"{shared_emu.base_url}/sessions", countPerPage=40, page=1, **DAY)
    total = body["totalCount"]

    assert total > 80
    assert body["totalPages"] == math.ceil(total / 40)
    assert body["hasMorePages"] is True
    last = get_json(
        session,
        f"{shared_emu.base_url}/sessions",
        countPerPage=40,
        page=body["totalPages"] - 1,
        **DAY,
    )
    assert len(last["items"]) == total - 40 * (body["totalPages"] - 1)
    assert last["hasMorePages"] is False
    beyond = get_json(
        session, f"{shared_emu.base_url}/sessions", countPerPage=40, page=body["totalPages"], **DAY
    )
    assert beyond["items"] == [] and beyond["hasMorePages"] is False


def test_simplified_paging_disables_totals(shared_emu):
    session = basic_session(shared_emu)
    body = get_json(
        session, f"{shared_emu.base_url}/sessions", countPerPage=10, simplifiedPaging="true", **DAY
    )
    assert list(body) == ["items", "totalCount", "totalPages", "hasMorePages"]
    assert (body["totalCount"], body["totalPages"], body["hasMorePages"]) == (0, 0, True)
    assert len(body["items"]) == 10


def test_default_page_size_is_25(shared_emu):
    body = get_json(basic_session(shared_emu), f"{shared_emu.base_url}/sessions", **DAY)
    assert len(body["items"]) == 25


def test_all_returns_everything_in_one_response(shared_emu):
    session = basic_session(shared_emu)
    body = get_json(session, f"{shared_emu.base_url}/sessions", all="true", countPerPage=5, **DAY)
    assert len(body["items"]) == body["totalCount"] > 5
    assert body["hasMorePages"] is False


def test_page_size_cap_silently_shortens_pages(start_emulator):
    emu = start_emulator(page_size_cap=17)
    session = basic_session(emu)

    body = get_json(session, f"{emu.base_url}/sessions", countPerPage=100, **DAY)
    assert len(body["items"]) == 17
    assert body["totalPages"] == math.ceil(body["totalCount"] / 17)
    # A client that stops on a short page instead of hasMorePages would lose data here.
    items = fetch_all(session, emu.base_url, count=100, **DAY)
    assert len(items) == body["totalCount"] == len({s["id"] for s in items})


def test_accounts_are_paged_and_filtered_by_name(shared_emu):
    session = basic_session(shared_emu)
    body = get_json(session, f"{shared_emu.base_url}/accounts", countPerPage=2)
    assert body["totalCount"] == len(shared_emu.store.accounts()) == 4
    assert len(body["items"]) == 2 and body["hasMorePages"] is True

    named = get_json(session, f"{shared_emu.base_url}/json/reply/ListAccounts", nameFilter="CAFÉ")
    assert [a["name"] for a in named["items"]] == ["Señor Café Group"]
