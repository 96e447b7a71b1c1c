"""The syncing thread's side of screened pages: a batch parsed in one call, or page by page
when the call cannot take it, and screened facts checked against the parse."""

from __future__ import annotations

import orjson
import pytest
from pydantic import SecretStr

from pipeline.evo.client import EvoVoiceClient, Page
from pipeline.evo.errors import BadResponse
from pipeline.evo.settings import EvoVoiceSettings
from pipeline.lake.decode import decode_sessions_page, screen_sessions_page, to_wire
from pipeline.sync import _check_not_repeated, _decode_batch
from tests.unit.test_decode import BASE, base_items, page_body, set_session, wire


def fetched(number: int, body: bytes) -> Page:
    """A page as the client yields it after the sessions' screen."""
    decoded = screen_sessions_page(body)
    assert decoded is not None
    return Page.of_decoded(number, decoded)


CLIENT = EvoVoiceClient(
    EvoVoiceSettings(base_url="http://evo.test", username="u", password=SecretStr("p"))
)
LAST = page_body(base_items()[:1], hasMorePages=False)
UNKNOWN = set_session(brandNewField="x")(BASE)


def test_screened_pages_are_parsed_in_one_call():
    pages = [fetched(0, BASE), fetched(1, BASE), fetched(2, LAST)]
    assert all(p.screened for p in pages)
    arrays, rows, by_dict = _decode_batch(CLIENT, pages, what="day 2026-11-27 (live)")
    assert len(arrays) == 1 and by_dict == []
    assert [(p.number, n) for p, n in rows] == [(0, 2), (1, 2), (2, 1)]
    want = base_items() + base_items() + base_items()[:1]
    assert to_wire(arrays).equals(wire(want))


def test_a_page_the_call_cannot_take_alone_goes_the_dict_way_and_the_others_stay_arrow():
    pages = [fetched(0, BASE), fetched(1, UNKNOWN), fetched(2, LAST)]
    arrays, rows, by_dict = _decode_batch(CLIENT, pages, what="day 2026-11-27 (live)")
    assert [(p.number, n) for p, n in rows] == [(0, 2), (2, 1)]
    assert to_wire(arrays).equals(wire(base_items() + base_items()[:1]))
    assert [(p.number, p.items) for p in by_dict] == [(1, orjson.loads(UNKNOWN)["items"])]
    assert by_dict[0].items[0]["brandNewField"] == "x"


def test_pages_decoded_by_the_paging_threads_join_the_batch():
    decoded = decode_sessions_page(LAST)
    page = Page(
        number=5,
        items=[],
        has_more_pages=False,
        total_count=None,
        columns=decoded.columns,
        ids=decoded.ids,
        body=LAST,
    )
    arrays, rows, by_dict = _decode_batch(CLIENT, [page, fetched(4, BASE)], what="t")
    assert [(p.number, n) for p, n in rows] == [(5, 1), (4, 2)]
    assert to_wire(arrays).equals(wire(base_items()[:1] + base_items()))
    assert by_dict == []


@pytest.mark.parametrize("alone", [False, True], ids=["in a batch", "page by page"])
def test_screened_facts_that_disagree_with_the_parse_fail_by_page(alone):
    lying = Page(number=7, items=[], has_more_pages=True, total_count=None, body=LAST, empty=False)
    others = [] if alone else [fetched(6, BASE)]
    batch = [*others, lying] if not alone else [lying, fetched(8, UNKNOWN)]
    with pytest.raises(BadResponse, match=r"day 1 page 7\): the paging facts .* disagree"):
        _decode_batch(CLIENT, batch, what="day 1")


def test_a_page_repeating_the_previous_one_by_its_ids_fails_even_if_its_bytes_differ():
    # A server ignoring `page` on a busy day: the same sessions, one of them changed since.
    changed = set_session(accountName="Acme Two")(BASE)
    assert changed != BASE
    pages = [fetched(0, BASE), fetched(1, changed)]
    arrays, rows, _ = _decode_batch(CLIENT, pages, what="t")
    ids = to_wire(arrays).field("id")
    with pytest.raises(BadResponse, match=r"day 1 page 1\): the server returned the previous"):
        _check_not_repeated(rows, ids, None, what="day 1")
    # across batches too: the previous batch's last page is remembered
    first = _check_not_repeated(rows[:1], ids.slice(0, 2), None, what="day 1")
    assert first[0] == 0
    with pytest.raises(BadResponse, match="previous page again"):
        _check_not_repeated(rows[1:], ids.slice(2), first, what="day 1")


def test_pages_with_other_ids_and_the_last_page_pass():
    other = set_session(id="s9")(BASE)
    last_again = page_body(base_items(), hasMorePages=False)
    pages = [fetched(0, BASE), fetched(1, other), fetched(2, last_again)]
    arrays, rows, _ = _decode_batch(CLIENT, pages, what="t")
    last = _check_not_repeated(rows, to_wire(arrays).field("id"), None, what="t")
    assert last[0] == 2 and last[1].to_pylist() == ["s1", "s2"]
