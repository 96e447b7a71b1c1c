"""The Arrow decoder of ``GET /sessions`` pages is an exact fast path: what it decodes equals
what orjson + ``pa.array`` give, ``flatten_columnar`` equals ``flatten_page`` row for row, and
any body it cannot take exactly returns None (the client then parses it the ordinary way)."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pyarrow as pa
import pytest

from pipeline.emulator import EmulatorConfig, EvoVoiceEmulator
from pipeline.lake import schemas
from pipeline.lake.decode import (
    decode_sessions_page,
    parse_screened_pages,
    screen_sessions_page,
    to_wire,
)
from pipeline.lake.flatten import FlatPage, SyncContext, flatten_columnar, flatten_page

NOW = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
DAY = date(2026, 11, 27)
TABLES = ("sessions", "session_members", "session_log", "session_breadcrumbs")


def sync_ctx(zone: str = "UTC", first: date = DAY, last: date = DAY) -> SyncContext:
    return SyncContext("sync1", datetime(2026, 11, 28, 12, tzinfo=UTC), ZoneInfo(zone), first, last)


def emulator_bodies(timestamp_format: str, include_null_values: bool) -> list[bytes]:
    """Every page body the emulator serves for DAY, exactly as it goes on the wire."""
    config = EmulatorConfig(
        seed=3,
        sessions_per_day=500,
        days_of_history=3,
        now=NOW,
        timestamp_format=timestamp_format,
        include_null_values=include_null_values,
    )
    emulator = EvoVoiceEmulator(config)
    token = base64.b64encode(f"{config.username}:{config.password}".encode()).decode()
    bodies = []
    for number in itertools.count():
        response, *_ = emulator.handle(
            "GET",
            f"/sessions?startDate={DAY}&endDate={DAY}&countPerPage=150&page={number}",
            {"authorization": f"Basic {token}"},
            b"",
        )
        assert response.status == 200, response.body[:200]
        bodies.append(response.body)
        if not orjson.loads(response.body)["hasMorePages"]:
            return bodies
    raise AssertionError("unreachable")


@pytest.fixture(
    scope="module",
    params=[("mixed", True), ("z", False), ("msdate", True)],
    ids=lambda p: f"{p[0]}-{'nulls' if p[1] else 'omitted'}",
)
def bodies(request) -> list[bytes]:
    return emulator_bodies(*request.param)


def wire(items: list) -> pa.StructArray:
    return pa.array(items, type=schemas.SESSION_WIRE)


def assert_same_tables(got: FlatPage, want: dict[str, pa.Table]) -> None:
    for name in TABLES:
        assert got.tables[name].schema == want[name].schema, name
        assert got.tables[name].to_pylist() == want[name].to_pylist(), name
        assert got.tables[name].equals(want[name]), name


def dict_path(pages: list[tuple[int, list]], first_ordinal: int, ctx: SyncContext):
    """``flatten_page`` on each page's dict items, numbered as one stream of copies."""
    flats = []
    ordinal = first_ordinal
    for number, items in pages:
        flats.append(
            flatten_page(items, page=number, search_archive=False, first_ordinal=ordinal, ctx=ctx)
        )
        ordinal += len(items)
    tables = {name: pa.concat_tables([f.tables[name] for f in flats]) for name in TABLES}
    return tables, flats


# -- realistic pages --------------------------------------------------------------------------


def test_emulator_pages_decode_to_what_the_dict_conversion_gives(bodies):
    assert len(bodies) >= 3
    sessions = 0
    with_data = 0
    for body in bodies:
        payload = orjson.loads(body)
        decoded = decode_sessions_page(body)
        assert decoded is not None, "a realistic page must take the fast path"
        assert to_wire([decoded.columns]).type == schemas.SESSION_WIRE
        want = wire(payload["items"])
        assert to_wire([decoded.columns]).to_pylist() == want.to_pylist()
        assert to_wire([decoded.columns]).equals(want)
        assert decoded.ids == [item["id"] for item in payload["items"]]
        assert decoded.has_more_pages is payload["hasMorePages"]
        assert decoded.total_count == payload["totalCount"] > 0
        assert decoded.body is body
        sessions += len(payload["items"])
        with_data += sum(
            bool(m.get("applicationData"))
            for item in payload["items"]
            for m in item.get("members") or []
        )
    assert sessions >= 300 and with_data >= 100  # the comparison covered real maps


@pytest.mark.parametrize("zone", ["UTC", "America/Chicago"])
def test_flatten_columnar_equals_flatten_page_for_a_batch_of_pages(bodies, zone):
    # Chicago: sessions before 06:00 UTC fall on the 26th, outside the window, on both paths.
    ctx = sync_ctx(zone)
    numbers = [10 + i for i in range(3)]
    decoded = [decode_sessions_page(body) for body in bodies[:3]]
    assert all(d is not None for d in decoded)
    counts = [len(d.ids) for d in decoded]
    columns = to_wire([d.columns for d in decoded])
    pages = pa.array(np.repeat(numbers, counts))

    got = flatten_columnar(columns, pages, first_ordinal=1000, ctx=ctx)
    assert got is not None
    want, flats = dict_path(
        [(n, orjson.loads(b)["items"]) for n, b in zip(numbers, bodies, strict=False)], 1000, ctx
    )
    assert all(f.stats.rejected == 0 and f.stats.slow_pages == 0 for f in flats)
    assert_same_tables(got, want)
    for name in TABLES:
        assert got.tables[name].num_rows > 0, name
    sessions = got.tables["sessions"]
    page_of = {i: n for d, n in zip(decoded, numbers, strict=True) for i in d.ids}
    assert sessions["source_page"].to_pylist() == [
        page_of[i] for i in sessions["session_id"].to_pylist()
    ]
    assert set(sessions["source_page"].to_pylist()) == set(numbers)
    assert got.stats.outside_window == sum(f.stats.outside_window for f in flats)
    if zone != "UTC":
        assert got.stats.outside_window > 0
    assert got.stats.rejected == 0
    assert got.tables["rejected_sessions"].num_rows == 0
    assert got.tables["rejected_sessions"].schema == schemas.REJECTED_SESSIONS


# -- edited bodies ----------------------------------------------------------------------------


def base_items() -> list[dict]:
    return [
        {
            "id": "s1",
            "dateCreated": "2026-11-27T10:00:00.1234567Z",
            "dateLastModified": "2026-11-27T10:05:00Z",
            "accountName": "Acme",
            "channel": "Voice",
            "ended": True,
            "wasMissed": False,
            "customerBreadcrumb": [{"id": "c1", "name": "Top"}, {"id": "c2", "name": "Sub"}],
            "log": [
                {"date": "2026-11-27T10:00:01Z", "message": "Ringing"},
                {"date": "2026-11-27T10:04:59Z", "message": "Call ended"},
            ],
            "members": [
                {
                    "identity": "+15125550492",
                    "role": "Caller",
                    "muted": False,
                    "isOriginalMember": True,
                    "applicationData": {"carrier": "Verizon", "source": "pstn"},
                },
                {"identity": "agent7", "role": "Agent", "applicationData": {"device": "sip"}},
            ],
        },
        {
            "id": "s2",
            "dateCreated": "/Date(1795860000000-0600)/",
            "accountName": "Beta",
            "ended": False,
            "customerBreadcrumb": [],
            "log": [],
            "members": [{"identity": "+15125550999", "applicationData": {"carrier": "Telstra"}}],
        },
    ]


def page_body(items: list, **page: object) -> bytes:
    return orjson.dumps(
        {"items": items, "totalCount": 17, "totalPages": 0, "hasMorePages": True, **page}
    )


BASE = page_body(base_items())


def sub(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    """Replace the one occurrence of ``old`` in the body."""

    def edit(body: bytes) -> bytes:
        assert body.count(old) == 1, old
        return body.replace(old, new)

    return edit


def chain(*edits: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    def edit(body: bytes) -> bytes:
        for step in edits:
            body = step(body)
        return body

    return edit


def items_edit(change: Callable[[list], object]) -> Callable[[bytes], bytes]:
    """Change the parsed items in place, then write the page again as the server would."""

    def edit(body: bytes) -> bytes:
        payload = orjson.loads(body)
        change(payload["items"])
        return orjson.dumps(payload)

    return edit


def set_items(value: object) -> Callable[[bytes], bytes]:
    def edit(body: bytes) -> bytes:
        return orjson.dumps({**orjson.loads(body), "items": value})

    return edit


def set_member(**values: object) -> Callable[[bytes], bytes]:
    return items_edit(lambda items: items[0]["members"][0].update(values))


def set_session(**values: object) -> Callable[[bytes], bytes]:
    return items_edit(lambda items: items[0].update(values))


def app_data(value: bytes) -> Callable[[bytes], bytes]:
    """Splice raw JSON in for the first member's applicationData."""
    return sub(b'{"carrier":"Verizon","source":"pstn"}', value)


def every_app_data(value: object) -> Callable[[bytes], bytes]:
    def change(items: list) -> None:
        for item in items:
            for member in item["members"]:
                member["applicationData"] = value

    return items_edit(change)


FALLS_BACK = {
    # page level
    "unknown page field": lambda b: b'{"nextToken":"abc",' + b[1:],
    "unknown page field null": lambda b: b'{"nextToken":null,' + b[1:],
    "responseStatus object": lambda b: (
        b'{"responseStatus":{"errorCode":"Boom","message":"x"},' + b[1:]
    ),
    "responseStatus empty object": lambda b: b'{"responseStatus":{},' + b[1:],
    "duplicate page key": sub(b'"hasMorePages":true', b'"hasMorePages":false,"hasMorePages":true'),
    "two documents": lambda b: b + b" " + b,
    "two documents adjacent": lambda b: b + b"{}",
    "BOM": lambda b: b"\xef\xbb\xbf" + b,
    "pretty-printed": lambda b: orjson.dumps(orjson.loads(b), option=orjson.OPT_INDENT_2),
    "raw newline between tokens": sub(b',"totalCount"', b',\n"totalCount"'),
    "raw carriage return between tokens": sub(b',"totalCount"', b',\r"totalCount"'),
    "items is an object": chain(
        sub(b'"items":[', b'"items":{"list":['), sub(b'],"totalCount"', b']},"totalCount"')
    ),
    "items is a string": set_items("s1"),
    "items is a number": set_items(3),
    "null session": items_edit(lambda items: items.insert(1, None)),
    "session is a string": items_edit(lambda items: items.append("s3")),
    "session is a list": items_edit(lambda items: items.append([])),
    # session level
    "unknown session field": set_session(brandNewField="x"),
    "unknown session field null": set_session(brandNewField=None),
    "unknown session field object": set_session(brandNewField={"x": 1}),
    "number in string field": set_session(id=17),
    "float in string field": set_session(accountName=1.5),
    "bool in string field": set_session(accountName=True),
    "object in string field": set_session(accountName={"name": "Acme"}),
    "list in string field": set_session(accountName=["Acme"]),
    "string in bool field": set_session(ended="true"),
    "number in bool field": set_session(wasMissed=0),
    "duplicate session key": sub(b'"id":"s1"', b'"id":"s0","id":"s1"'),
    "members is an object": set_session(members={"identity": "x"}),
    "log is a string": set_session(log="Ringing"),
    # member level
    "unknown member field": set_member(nickname="Bob"),
    "unknown member field null": set_member(nickname=None),
    "number in member string": set_member(identity=15125550492),
    "string in member bool": set_member(muted="false"),
    "object in member string": set_member(role={"name": "Caller"}),
    "duplicate member key": sub(b'"identity":"agent7"', b'"identity":"x","identity":"agent7"'),
    "member is a string": items_edit(lambda items: items[1]["members"].append("agent")),
    # log and breadcrumb level
    "unknown log field": items_edit(lambda items: items[0]["log"][0].update(level="info")),
    "number in log message": items_edit(lambda items: items[0]["log"][0].update(message=3)),
    "duplicate log key": sub(b'"message":"Ringing"', b'"message":"x","message":"Ringing"'),
    "unknown breadcrumb field": items_edit(
        lambda items: items[0]["customerBreadcrumb"][0].update(kind="reseller")
    ),
    "number in breadcrumb id": items_edit(
        lambda items: items[0]["customerBreadcrumb"][0].update(id=1)
    ),
    "duplicate breadcrumb key": sub(b'"name":"Top"', b'"name":"x","name":"Top"'),
    # text that is not valid Unicode
    "invalid UTF-8 byte": sub(b'"Acme"', b'"Ac\xffme"'),
    "truncated UTF-8 sequence": sub(b'"Acme"', b'"Acme\xc3"'),
    "overlong UTF-8": sub(b'"Acme"', b'"Ac\xc0\xafme"'),
    "UTF-8 encoded surrogate": sub(b'"Acme"', b'"Ac\xed\xa0\x80me"'),
    "lone high surrogate escape": sub(b'"Acme"', b'"Ac\\ud800me"'),
    "lone low surrogate escape": sub(b'"Acme"', b'"Ac\\udc00me"'),
    "high surrogate at end of string": sub(b'"Acme"', b'"Acme\\ud83d"'),
    "reversed surrogate pair": sub(b'"Acme"', b'"\\ude00\\ud83d"'),
    "lone surrogate in applicationData key": sub(b'"device"', b'"dev\\udfffice"'),
    # applicationData
    "explicit null in applicationData": app_data(b'{"carrier":null}'),
    "null beside a string in applicationData": app_data(b'{"carrier":"Verizon","source":null}'),
    "null in applicationData with spaces": app_data(b'{ "carrier" : null }'),
    "null where another member has a string": sub(b'{"device":"sip"}', b'{"carrier":null}'),
    "null in a later session's applicationData": sub(b'{"carrier":"Telstra"}', b'{"x":null}'),
    "number in applicationData": app_data(b'{"carrier":"Verizon","port":5060}'),
    "float in applicationData": app_data(b'{"score":0.5}'),
    "bool in applicationData": app_data(b'{"vip":true}'),
    "nested object in applicationData": app_data(b'{"carrier":{"name":"Verizon"}}'),
    "empty object in applicationData": app_data(b'{"carrier":{}}'),
    "list in applicationData": app_data(b'{"carrier":["Verizon"]}'),
    "empty list in applicationData": app_data(b'{"carrier":[]}'),
    "duplicate key in applicationData": app_data(b'{"carrier":"A","carrier":"B"}'),
    "applicationData is a string": app_data(b'"carrier=Verizon"'),
    "applicationData is a number": app_data(b"7"),
    "applicationData is a list": app_data(b'["Verizon"]'),
    "applicationData is an empty list": app_data(b"[]"),
    # ...and the same when no member on the page has an object there to infer a struct from
    "every applicationData a string": every_app_data("carrier=Verizon"),
    "every applicationData a number": every_app_data(7),
    "every applicationData a bool": every_app_data(True),
    "every applicationData a string or null": chain(
        every_app_data(None), set_member(applicationData="x")
    ),
    "every applicationData a list": every_app_data(["Verizon"]),
    "every applicationData an empty list": every_app_data([]),
    "null in applicationData under an escaped key name": sub(
        b'"applicationData":{"carrier":"Verizon","source":"pstn"}',
        b'"applicationD\\u0061ta":{"carrier":"Verizon","source":null}',
    ),
    "the same after more backslashes than are visited one by one": chain(
        sub(b'"accountName":"Acme"', b'"accountName":"' + b'\\"' * 70 + b'"'),
        sub(
            b'"applicationData":{"carrier":"Verizon","source":"pstn"}',
            b'"applicationD\\u0061ta":{"carrier":"Verizon","source":null}',
        ),
    ),
}


def test_the_base_body_takes_the_fast_path():
    decoded = decode_sessions_page(BASE)
    assert decoded is not None
    assert to_wire([decoded.columns]).equals(wire(base_items()))
    assert decoded.ids == ["s1", "s2"]
    assert decoded.has_more_pages is True and decoded.total_count == 17


@pytest.mark.parametrize("edit", list(FALLS_BACK.values()), ids=list(FALLS_BACK))
def test_bodies_it_cannot_take_exactly_fall_back(edit):
    body = edit(BASE)
    assert body != BASE
    assert decode_sessions_page(body) is None


TAKES_EXACTLY = {
    "base": lambda b: b,
    "empty applicationData": app_data(b"{}"),
    "only empty applicationData on the page": items_edit(
        lambda items: [m.update(applicationData={}) for i in items for m in i["members"]]
    ),
    "missing applicationData": items_edit(
        lambda items: items[0]["members"][0].pop("applicationData")
    ),
    "no applicationData on the page": items_edit(
        lambda items: [m.pop("applicationData") for i in items for m in i["members"]]
    ),
    "null applicationData": app_data(b"null"),
    "only null applicationData on the page": items_edit(
        lambda items: [m.update(applicationData=None) for i in items for m in i["members"]]
    ),
    "empty, null and missing applicationData side by side": items_edit(
        lambda items: items[0]["members"].extend(
            [{"applicationData": {}}, {"applicationData": None}, {"identity": "x"}]
        )
    ),
    "null and braces inside applicationData strings": app_data(
        b'{"carrier":"null","source":"} null {","note":"say \\"null\\"}"}'
    ),
    "key named null in applicationData": app_data(b'{"null":"x","nullable":"null"}'),
    "applicationData look-alike inside a string": sub(
        b'"Acme"', b'"\\"applicationData\\":{\\"k\\":null}"'
    ),
    "escaped unicode": sub(b'"Acme"', b'"Caf\\u00e9 \\ud83d\\ude00 \\u2013 \\u0000 \\/"'),
    "escaped unicode in applicationData": app_data(
        b'{"caf\\u00e9":"\\ud83d\\ude00","\\u2013":"caf\\u00e9"}'
    ),
    "raw UTF-8": sub(b'"Acme"', '"Café 😀 王"'.encode()),
    "escaped field name": sub(b'"accountName":"Acme"', b'"\\u0061ccountName":"Acme"'),
    "spaces and tabs between tokens": sub(b',"totalCount":17', b' ,\t"totalCount" :  17 '),
    "trailing newline": lambda b: b + b"\r\n",
    "empty items page": lambda b: page_body([], hasMorePages=False, totalCount=0),
    "members null": set_session(members=None),
    "members empty": set_session(members=[]),
    "log and breadcrumbs null": set_session(log=None, customerBreadcrumb=None),
    "everything but id and dateCreated missing": items_edit(
        lambda items: items.append({"id": "s3", "dateCreated": "2026-11-27T23:00:00Z"})
    ),
    "explicit nulls in known fields": set_session(
        accountName=None, ended=None, dateLastModified=None
    ),
}


@pytest.mark.parametrize("edit", list(TAKES_EXACTLY.values()), ids=list(TAKES_EXACTLY))
def test_bodies_it_takes_equal_the_dict_path(edit):
    body = edit(BASE)
    decoded = decode_sessions_page(body)
    assert decoded is not None
    payload = orjson.loads(body)
    items = payload["items"]
    want = wire(items)
    assert to_wire([decoded.columns]).to_pylist() == want.to_pylist()
    assert to_wire([decoded.columns]).equals(want)
    assert decoded.ids == [item["id"] for item in items]
    assert (decoded.has_more_pages, decoded.total_count) == (
        payload["hasMorePages"],
        payload["totalCount"],
    )
    ctx = sync_ctx()
    pages = pa.array(np.full(len(items), 4, dtype=np.int64))
    got = flatten_columnar(to_wire([decoded.columns]), pages, first_ordinal=7, ctx=ctx)
    assert got is not None
    want_tables, (flat,) = dict_path([(4, items)], 7, ctx)
    assert flat.stats.rejected == 0
    assert_same_tables(got, want_tables)


def test_missing_empty_and_null_application_data_stay_distinct():
    body = items_edit(
        lambda items: items[0]["members"].extend(
            [{"applicationData": {}}, {"applicationData": None}, {"identity": "x"}]
        )
    )(BASE)
    decoded = decode_sessions_page(body)
    assert decoded is not None
    data = [m["applicationData"] for m in to_wire([decoded.columns]).field("members")[0].as_py()]
    assert data == [
        [("carrier", "Verizon"), ("source", "pstn")],
        [("device", "sip")],
        [],
        None,
        None,
    ]


# -- rows flatten_columnar hands back to the dict path ----------------------------------------


def good(n: int) -> dict:
    item = base_items()[0]
    item["id"] = f"g{n}"
    return item


REJECTS = {
    "missing id": ({"dateCreated": "2026-11-27T10:00:00Z"}, "no id"),
    "empty id": ({"id": "", "dateCreated": "2026-11-27T10:00:00Z"}, "no id"),
    "null id": ({"id": None, "dateCreated": "2026-11-27T10:00:00Z"}, "no id"),
    "missing dateCreated": ({"id": "x"}, "dateCreated is missing"),
    "unparseable dateCreated": ({"id": "x", "dateCreated": "yesterday"}, "dateCreated"),
    "impossible dateCreated": ({"id": "x", "dateCreated": "2026-02-30T00:00:00Z"}, "dateCreated"),
    ".NET default dateCreated": (
        {"id": "x", "dateCreated": "0001-01-01T00:00:00"},
        "not routed to any day",
    ),
    "dateCreated months away": (
        {"id": "x", "dateCreated": "2026-06-01T12:00:00Z"},
        "not routed to any day",
    ),
    "null member element": (
        {"id": "x", "dateCreated": "2026-11-27T10:00:00Z", "members": [{"identity": "a"}, None]},
        "members.1: element is null",
    ),
    "null log element": (
        {"id": "x", "dateCreated": "2026-11-27T10:00:00Z", "log": [None]},
        "log.0: element is null",
    ),
    "null breadcrumb element": (
        {"id": "x", "dateCreated": "2026-11-27T10:00:00Z", "customerBreadcrumb": [None]},
        "customerBreadcrumb.0: element is null",
    ),
    "unparseable log date": (
        {"id": "x", "dateCreated": "2026-11-27T10:00:00Z", "log": [{"date": "??"}]},
        "log.Date: unrecognised timestamp",
    ),
}


@pytest.mark.parametrize(("bad", "reason"), list(REJECTS.values()), ids=list(REJECTS))
def test_flatten_columnar_hands_rejects_back_and_flatten_page_rejects_just_them(bad, reason):
    ctx = sync_ctx()
    items = [good(1), bad, good(2)]
    decoded = decode_sessions_page(page_body(items))
    assert decoded is not None, "decoding takes it; rejecting is flattening's job"
    pages = pa.array([3, 3, 3])
    assert flatten_columnar(to_wire([decoded.columns]), pages, first_ordinal=0, ctx=ctx) is None

    flat = flatten_page(items, page=3, search_archive=False, first_ordinal=0, ctx=ctx)
    assert flat.tables["sessions"]["session_id"].to_pylist() == ["g1", "g2"]
    assert flat.tables["sessions"]["copy_ordinal"].to_pylist() == [0, 2]
    rejected = flat.tables["rejected_sessions"].to_pylist()
    assert len(rejected) == 1 and flat.stats.rejected == 1
    assert reason in rejected[0]["reason"]
    assert orjson.loads(rejected[0]["raw_json"]) == bad
    assert rejected[0]["page"] == 3

    # The same good rows alone stay on the columnar path.
    alone = decode_sessions_page(page_body([good(1), good(2)]))
    assert alone is not None
    assert (
        flatten_columnar(to_wire([alone.columns]), pages[:2], first_ordinal=0, ctx=ctx) is not None
    )


def test_one_reject_sends_the_whole_batch_back():
    ctx = sync_ctx()
    clean = decode_sessions_page(page_body([good(1), good(2)]))
    dirty = decode_sessions_page(page_body([good(3), {"id": "", "dateCreated": "2026-11-27"}]))
    assert clean is not None and dirty is not None
    columns = pa.concat_arrays([to_wire([clean.columns]), to_wire([dirty.columns])])
    assert flatten_columnar(columns, pa.array([0, 0, 1, 1]), first_ordinal=0, ctx=ctx) is None
    assert (
        flatten_columnar(to_wire([clean.columns]), pa.array([0, 0]), first_ordinal=0, ctx=ctx)
        is not None
    )


def test_sessions_within_the_routing_margin_are_kept_out_of_the_window_on_both_paths():
    ctx = sync_ctx()
    items = [good(1), {"id": "early", "dateCreated": "2026-11-25T10:00:00Z"}, good(2)]
    decoded = decode_sessions_page(page_body(items))
    assert decoded is not None
    got = flatten_columnar(
        to_wire([decoded.columns]), pa.array([0, 0, 0]), first_ordinal=5, ctx=ctx
    )
    assert got is not None
    want, (flat,) = dict_path([(0, items)], 5, ctx)
    assert_same_tables(got, want)
    assert got.stats.outside_window == flat.stats.outside_window == 1
    assert got.tables["sessions"]["copy_ordinal"].to_pylist() == [5, 7]


def test_application_data_keeps_its_pairs_in_the_order_the_page_first_showed_them():
    """A map's key order carries nothing, and the inferred struct cannot tell each object's
    own order: the decoded path keeps the same pairs, keys in page order."""
    body = items_edit(
        lambda items: items[1]["members"][0].update(
            applicationData={"source": "pstn", "carrier": "Telstra"}
        )
    )(BASE)
    decoded = decode_sessions_page(body)
    assert decoded is not None
    got = to_wire([decoded.columns]).to_pylist()
    want = wire(orjson.loads(body)["items"]).to_pylist()
    assert got[1]["members"][0]["applicationData"] == [("carrier", "Telstra"), ("source", "pstn")]
    for got_row, want_row in zip(got, want, strict=True):
        for got_member, want_member in zip(got_row["members"], want_row["members"], strict=True):
            got_data, want_data = (
                got_member.pop("applicationData"),
                want_member.pop("applicationData"),
            )
            assert sorted(got_data or []) == sorted(want_data or [])
            assert (got_data is None) == (want_data is None)
        assert got_row == want_row


def test_a_batch_of_pages_with_different_application_data_keys_equals_the_dict_path():
    """Each page infers its own applicationData struct; to_wire widens them to one."""
    first = app_data(b'{"device":"ios"}')(BASE)
    second = items_edit(
        lambda items: [
            m.update(applicationData={"carrier": "Telstra", "source": "pstn"})
            for i in items
            for m in i["members"]
        ]
    )(BASE)
    third = items_edit(
        lambda items: [m.pop("applicationData") for i in items for m in i["members"]]
    )(BASE)
    fourth = items_edit(
        lambda items: [m.update(applicationData=None) for i in items for m in i["members"]]
    )(BASE)
    bodies = [first, second, third, fourth]
    decoded = [decode_sessions_page(body) for body in bodies]
    assert all(d is not None for d in decoded)
    got = to_wire([d.columns for d in decoded])
    want = pa.concat_arrays([wire(orjson.loads(body)["items"]) for body in bodies])
    assert got.to_pylist() == want.to_pylist()
    assert got.equals(want)


# -- screened pages, parsed in batches --------------------------------------------------------


def test_emulator_pages_are_screened_and_a_batch_parses_to_what_each_page_decodes_to(bodies):
    screened = [screen_sessions_page(body) for body in bodies]
    assert all(s is not None and s.columns is None and s.ids is None for s in screened)
    payloads = [orjson.loads(body) for body in bodies]
    assert [s.has_more_pages for s in screened] == [p["hasMorePages"] for p in payloads]
    assert [s.empty for s in screened] == [not p["items"] for p in payloads]
    assert all(s.body is body for s, body in zip(screened, bodies, strict=True))
    parsed = parse_screened_pages(bodies)
    assert parsed is not None
    assert parsed.counts == [len(p["items"]) for p in payloads]
    assert parsed.has_more_pages == [p["hasMorePages"] for p in payloads]
    one_by_one = to_wire([decode_sessions_page(body).columns for body in bodies])
    assert to_wire([parsed.sessions]).equals(one_by_one)
    assert to_wire([parsed.sessions]).equals(pa.concat_arrays([wire(p["items"]) for p in payloads]))


def batch_path(body: bytes) -> tuple[list, bool | None] | None:
    """What the sync makes of ``body`` in a batch beside BASE: its sessions as wire dicts and
    hasMorePages, or None where it takes the dict path."""
    screened = screen_sessions_page(body)
    if screened is None:
        return None
    if screened.columns is not None:  # a layout the screen does not read: decoded now
        return to_wire([screened.columns]).to_pylist(), screened.has_more_pages
    parsed = parse_screened_pages([BASE, body])
    if parsed is None:
        return None
    sessions = to_wire([parsed.sessions]).to_pylist()[parsed.counts[0] :]
    assert parsed.has_more_pages[1] is screened.has_more_pages
    assert (parsed.counts[1] == 0) is screened.empty
    return sessions, screened.has_more_pages


@pytest.mark.parametrize("edit", list(TAKES_EXACTLY.values()), ids=list(TAKES_EXACTLY))
def test_bodies_it_takes_equal_the_dict_path_when_parsed_in_a_batch(edit):
    body = edit(BASE)
    payload = orjson.loads(body)
    got = batch_path(body)
    assert got is not None
    assert got == (wire(payload["items"]).to_pylist(), payload["hasMorePages"])


@pytest.mark.parametrize("edit", list(FALLS_BACK.values()), ids=list(FALLS_BACK))
def test_bodies_it_cannot_take_exactly_fall_back_from_a_batch_too(edit):
    assert batch_path(edit(BASE)) is None


@pytest.mark.parametrize(
    ("body", "more", "empty"),
    [
        (BASE, True, False),
        (page_body(base_items(), hasMorePages=False), False, False),
        (page_body([], hasMorePages=False), False, True),
        (page_body([], hasMorePages=True), True, True),  # empty ends the list all the same
        (sub(b'"items":[]', b'"items":[ \t]')(page_body([])), True, True),
        (b"  " + BASE + b"\r\n", True, False),
    ],
)
def test_the_screen_reads_the_paging_facts_from_the_bytes(body, more, empty):
    screened = screen_sessions_page(body)
    assert screened is not None and screened.columns is None
    assert (screened.has_more_pages, screened.empty) == (more, empty)


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b'{"totalCount":17,' + b[1:].replace(b',"totalCount":17', b""),
        sub(
            b',"totalCount":17,"totalPages":0,"hasMorePages":true',
            b',"hasMorePages":true,"totalCount":17,"totalPages":0',
        ),
        sub(b',"hasMorePages":true', b',"hasMorePages" : true'),
        sub(b'{"items":[', b'{ "items":['),
        sub(b'"Acme"', b'"Caf\\u00e9"'),  # any escape: a lone surrogate must not be screened
    ],
    ids=["items not first", "hasMorePages not last", "spaces", "space first", "escape"],
)
def test_a_body_laid_out_otherwise_is_decoded_at_once(edit):
    body = edit(BASE)
    assert body != BASE
    screened = screen_sessions_page(body)
    assert screened is not None and screened.columns is not None
    assert to_wire([screened.columns]).equals(wire(orjson.loads(body)["items"]))


def test_one_body_the_batch_cannot_take_sends_the_whole_batch_back():
    null_data = app_data(b'{"k":null}')(BASE)
    unknown = set_session(brandNewField="x")(BASE)
    for bad in (null_data, unknown):
        screened = screen_sessions_page(bad)
        assert screened is not None and screened.columns is None
        assert parse_screened_pages([BASE, bad, BASE]) is None
        assert decode_sessions_page(bad) is None  # and alone it takes the dict path
    assert parse_screened_pages([BASE, BASE]) is not None
