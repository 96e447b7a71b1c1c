"""Bad input: a corpus of malformed and hostile ``GET /sessions`` answers, served through the
emulator's ``rewrite_sessions_page`` hook. Each either loads with its documented handling (what
the contract cannot accept goes to ``raw.rejected_sessions`` with reason, day, page and raw
JSON) or fails the day with one line naming the day and the page, leaving the day as it was.
Never a silent drop, never a corrupted neighbour, never a bare traceback.

The handling of each case is documented in docs/reliability.md (section "Bad input").
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from pipeline.emulator import run_emulator
from pipeline.evo.sessions import SESSIONS_PATH, request_window, session_params
from pipeline.lake.store import Lake
from pipeline.lake.warehouse import Warehouse
from pipeline.sync import sync_days
from tests.conftest import NOW, make_client
from tests.reliability.helpers import (
    SESSION_TABLES,
    connect,
    emulator_config,
    expected_rows,
    loaded_rows,
    record,
    snapshot,
    truth_by_day,
)

DAY = NOW.date() - timedelta(days=3)
TEN_MB = 10 * 1024 * 1024


def deep(levels: int) -> bytes:
    return b'{"k":' * levels + b'"leaf"' + b"}" * levels


@dataclass(frozen=True)
class Case:
    """One hostile answer: ``item`` replaces the target session wherever it is served, ``page``
    rewrites the body of the page it is on; ``raw`` splices raw JSON text in for placeholder
    strings. ``outcome`` is ``loads``, ``rejects`` or ``fails``; ``reason`` must appear in the
    rejection reason or the failure line; ``check`` looks at the loaded target."""

    outcome: str
    item: Callable[[dict], Any] | None = None
    page: Callable[[bytes], bytes] | None = None
    raw: dict[str, bytes] = field(default_factory=dict)
    reason: str = ""
    check: Callable[[dict, dict[str, list[tuple]]], None] | None = None


def setting(**values: Any) -> Callable[[dict], dict]:
    def change(item: dict) -> dict:
        item.update(values)
        return item

    return change


def without(name: str) -> Callable[[dict], dict]:
    def change(item: dict) -> dict:
        item.pop(name, None)
        return item

    return change


def member(**values: Any) -> Callable[[dict], dict]:
    def change(item: dict) -> dict:
        item["members"][0].update(values)
        return item

    return change


def body(transform: Callable[[dict], Any]) -> Callable[[bytes], bytes]:
    return lambda raw: orjson.dumps(transform(orjson.loads(raw)))


def null_everywhere(item: dict) -> dict:
    return {k: (item[k] if k in ("id", "dateCreated") else None) for k in item}


def with_copy(later_wins: bool) -> Callable[[bytes], bytes]:
    """The target twice on its page, the second copy different; same dateLastModified (the later
    copy wins) or an older one (the first wins)."""

    def rewrite(raw: bytes) -> bytes:
        doc = orjson.loads(raw)
        target = next(i for i in doc["items"] if i["id"] == TARGET["id"])
        twin = copy.deepcopy(target)
        twin["answeredByName"] = "Second Copy"
        twin["members"] = twin["members"][:1]
        if not later_wins:
            twin["dateLastModified"] = "2001-01-01T00:00:00Z"
        doc["items"].append(twin)
        return orjson.dumps(doc)

    return rewrite


def loaded_as(**want: Any) -> Callable[[dict, dict], None]:
    def check(row: dict, children: dict) -> None:
        for name, value in want.items():
            assert row[name] == value, (name, row[name], value)

    return check


def check_children(**counts: int) -> Callable[[dict, dict], None]:
    def check(row: dict, children: dict) -> None:
        for table, n in counts.items():
            assert len(children[table]) == n, (table, len(children[table]))

    return check


def extra_json(**want: Any) -> Callable[[dict, dict], None]:
    def check(row: dict, children: dict) -> None:
        extras = json.loads(row["extra_fields"])
        for name, value in want.items():
            assert extras[name] == value, (name, extras)

    return check


def application_data(row: dict, children: dict) -> None:
    data = json.loads(children["session_members"][0][7])
    assert json.loads(data["a"]) == {"b": [1, {"c": None}]} and data["n"] == "3"


def ten_megabytes(row: dict, children: dict) -> None:
    assert len(row["console_data"]) == TEN_MB


def as_served(row: dict, children: dict) -> None:
    assert row["answered_by_name"] == TARGET.get("answeredByName")
    assert len(children["session_members"]) == len(TARGET["members"])


def completed_first(row: dict, children: dict) -> None:
    assert row["date_completed"] < row["date_created"]


def instant(row: dict, children: dict) -> None:
    assert row["date_created"] == datetime(DAY.year, DAY.month, DAY.day, 10, 0, 0, 123456, UTC)


TARGET: dict[str, Any] = {}  # the session the item cases change, set by the fixture

CORPUS: dict[str, Case] = {
    # -- the page as a whole
    "html_with_status_200": Case(
        "fails", page=lambda _: b"<html><body>Service Unavailable</body></html>", reason="not JSON"
    ),
    "truncated_json": Case("fails", page=lambda raw: raw[: len(raw) // 2], reason="not JSON"),
    "empty_body": Case("fails", page=lambda _: b"", reason="not JSON"),
    "top_level_array": Case(
        "fails", page=body(lambda doc: doc["items"]), reason="expected a JSON object"
    ),
    "items_is_an_object": Case(
        "fails", page=body(lambda doc: {**doc, "items": {"0": doc["items"][0]}}), reason="'items'"
    ),
    "items_is_a_string": Case(
        "fails", page=body(lambda doc: {**doc, "items": "[]"}), reason="'items'"
    ),
    "error_status_inside_a_200": Case(
        "fails",
        page=body(lambda _: {"responseStatus": {"errorCode": "SqlException", "message": "x"}}),
        reason="SqlException",
    ),
    "no_items_at_all": Case(
        "fails", page=body(lambda doc: {"results": doc["items"]}), reason="no 'items'"
    ),
    "nested_2000_levels_deep": Case(
        "fails",
        item=setting(applicationJunk="__RAW_deep2000__"),
        raw={"__RAW_deep2000__": deep(2000)},
        reason="not JSON",
    ),
    "byte_order_mark": Case("loads", page=lambda raw: b"\xef\xbb\xbf" + raw),
    "nan_and_huge_numbers": Case(
        "loads",
        item=setting(scoreA="__RAW_nan__", scoreB="__RAW_inf__", scoreC="__RAW_int__"),
        raw={"__RAW_nan__": b"NaN", "__RAW_inf__": b"1e400", "__RAW_int__": b"1" + b"0" * 30},
        check=extra_json(scoreA=None, scoreB=None, scoreC=1e30),
    ),
    # -- the session's identity
    "no_id": Case("rejects", item=without("id"), reason="no id"),
    "null_id": Case("rejects", item=setting(id=None), reason="no id"),
    "empty_id": Case("rejects", item=setting(id=""), reason="no id"),
    "numeric_id": Case("rejects", item=setting(id=12345), reason="id: Input should be a valid"),
    "item_is_a_string": Case("rejects", item=lambda _: "oops", reason="item is str"),
    "item_is_null": Case("rejects", item=lambda _: None, reason="item is NoneType"),
    "duplicate_id_later_copy_wins": Case(
        "loads", page=with_copy(True), check=loaded_as(answered_by_name="Second Copy")
    ),
    "duplicate_id_older_copy_loses": Case("loads", page=with_copy(False), check=as_served),
    # -- dates
    "unparseable_date_created": Case(
        "rejects", item=setting(dateCreated="last Tuesday"), reason="dateCreated"
    ),
    "impossible_date_created": Case(
        "rejects", item=setting(dateCreated=f"{DAY.year}-02-30T10:00:00Z"), reason="dateCreated"
    ),
    "no_date_created": Case("rejects", item=without("dateCreated"), reason="dateCreated"),
    "dotnet_min_date_created": Case(
        "rejects", item=setting(dateCreated="0001-01-01T00:00:00"), reason="outside the days"
    ),
    "year_9999_date_created": Case(
        "rejects", item=setting(dateCreated="9999-12-31T23:59:59Z"), reason="outside the days"
    ),
    "completed_before_created": Case(
        "loads",
        item=setting(dateCompleted=f"{DAY - timedelta(days=1)}T10:00:00Z"),
        check=completed_first,
    ),
    "impossible_date_completed": Case(
        "rejects", item=setting(dateCompleted="2026-13-45T00:00:00"), reason="dateCompleted"
    ),
    "unparseable_log_date": Case(
        "rejects", item=lambda s: {**s, "log": [{"date": "soon", "message": "x"}]}, reason="log"
    ),
    "nine_fraction_digits_and_offset": Case(
        "loads", item=setting(dateCreated=f"{DAY}T12:30:00.123456789+02:30"), check=instant
    ),
    # -- types
    "was_missed_as_text_yes": Case(
        "loads", item=setting(wasMissed="yes"), check=loaded_as(was_missed=True)
    ),
    "was_missed_as_text_perhaps": Case(
        "rejects", item=setting(wasMissed="perhaps"), reason="wasMissed"
    ),
    "account_id_as_number": Case("rejects", item=setting(accountId=42), reason="accountId"),
    "members_is_an_object": Case(
        "rejects", item=setting(members={"identity": "x"}), reason="members"
    ),
    "member_is_null": Case("rejects", item=setting(members=[None]), reason="members.0"),
    "log_entry_is_null": Case(
        "rejects", item=lambda s: {**s, "log": [*s["log"], None]}, reason="log."
    ),
    "breadcrumb_is_a_string": Case(
        "rejects", item=setting(customerBreadcrumb=["Acme"]), reason="customerBreadcrumb"
    ),
    "null_lists": Case(
        "loads",
        item=setting(log=None, members=None, customerBreadcrumb=None),
        check=check_children(session_members=0, session_log=0, session_breadcrumbs=0),
    ),
    "null_everywhere": Case(
        "loads",
        item=null_everywhere,
        check=check_children(session_members=0, session_log=0, session_breadcrumbs=0),
    ),
    "unknown_enum_values": Case(
        "loads",
        item=lambda s: member(role="Ghost")(setting(channel="Hologram", callState="Teleport")(s)),
        check=loaded_as(channel="Hologram", call_state="Teleport"),
    ),
    "unknown_fields": Case(
        "loads",
        item=setting(sentiment={"score": 0.25, "labels": ["calm"]}),
        check=extra_json(sentiment={"score": 0.25, "labels": ["calm"]}),
    ),
    # -- nesting and size
    "nested_junk_in_application_data": Case(
        "loads",
        item=member(applicationData={"a": {"b": [1, {"c": None}]}, "n": 3}),
        check=application_data,
    ),
    "application_data_300_levels_deep": Case(
        "rejects",
        item=member(applicationData={"a": "__RAW_deep300__"}),
        raw={"__RAW_deep300__": deep(300)},
        reason="cannot store session",
    ),
    "unknown_field_300_levels_deep": Case(
        "rejects",
        item=setting(junk="__RAW_deep300__"),
        raw={"__RAW_deep300__": deep(300)},
        reason="cannot store session",
    ),
    "ten_megabyte_string": Case(
        "loads", item=setting(consoleData="x" * TEN_MB), check=ten_megabytes
    ),
    "five_thousand_members": Case(
        "loads",
        item=lambda s: {**s, "members": [s["members"][0]] * 5000},
        check=check_children(session_members=5000),
    ),
    # -- text
    "control_characters": Case(
        "loads",
        item=setting(fromName="a\x00b\x1b[31mc\x7f\u2028d\ttab"),
        check=loaded_as(from_name="a\x00b\x1b[31mc\x7f\u2028d\ttab"),
    ),
    "lone_surrogate_escapes": Case(
        "loads",
        item=setting(fromName="__RAW_surrogate__"),
        raw={"__RAW_surrogate__": b'"A\\ud800B\\udc00C"'},
        check=loaded_as(from_name="A\ufffdB\ufffdC"),
    ),
    "surrogate_pair_escapes": Case(
        "loads",
        item=setting(fromName="__RAW_pair__"),
        raw={"__RAW_pair__": b'"A\\ud83d\\ude00B"'},
        check=loaded_as(from_name="A\U0001f600B"),
    ),
    "invalid_utf8_bytes": Case(
        "loads",
        item=setting(fromName="__RAW_bytes__"),
        raw={"__RAW_bytes__": b'"A\xffB\xed\xa0\x80C"'},
        check=loaded_as(from_name="A\ufffdB\ufffd\ufffd\ufffdC"),
    ),
    "lone_surrogate_in_a_key": Case(
        "loads",
        item=setting(weird="__RAW_key__"),
        raw={'"weird":"__RAW_key__"': b'"we\\udc00ird":"value"'},
        check=extra_json(**{"we\ufffdird": "value"}),
    ),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """An emulator, a lake and a warehouse holding a clean sync of ``DAY``, and the session
    the item cases change (on a page after the first)."""
    root = tmp_path_factory.mktemp("corpus")
    lake = Lake(str(root / "lake"))
    warehouse = Warehouse(root / "warehouse.duckdb", lake)
    with run_emulator(emulator_config(sessions_per_day=40)) as emulator:
        truth = truth_by_day(emulator, [DAY])[DAY]
        TARGET.update(truth[len(truth) // 2])
        with make_client(emulator, max_attempts=2, page_size=30) as client:
            window = request_window(DAY, DAY, client.settings.zone)
            params = session_params(client, window, False)
            home = next(
                page.number
                for page in client.iter_pages(SESSIONS_PATH, params, what="probe")
                if any(i["id"] == TARGET["id"] for i in page.items)
            )
            assert home >= 1  # page 0 also answers the count requests
            sync = sync_days(client, warehouse, DAY, DAY, days_per_fetch=1, parallel_fetches=1)
            assert not sync.failed
            yield emulator, client, lake, warehouse, truth, home


def rewriter(case: Case, home: int) -> Callable[[int, bytes], bytes]:
    def rewrite(page: int, raw: bytes) -> bytes:
        if case.item is not None:
            doc = orjson.loads(raw)
            doc["items"] = [
                case.item(copy.deepcopy(i)) if i.get("id") == TARGET["id"] else i
                for i in doc["items"]
            ]
            raw = orjson.dumps(doc)
            for placeholder, text in case.raw.items():
                key = (
                    placeholder.encode()
                    if placeholder.startswith('"')
                    else orjson.dumps(placeholder)
                )
                raw = raw.replace(key, text)
        if case.page is not None and page == home:
            raw = case.page(raw)
        return raw

    return rewrite


def day_tables(warehouse: Warehouse) -> dict:
    tables = [f"raw.{t}" for t in (*SESSION_TABLES, "synced_days")]
    return snapshot(
        warehouse.path, tables, exclude=(), where="WHERE partition_date = ?", params=[DAY]
    )


@pytest.mark.parametrize("name", CORPUS)
def test_bad_input_is_handled_never_dropped(name, corpus):
    emulator, client, _, warehouse, truth, home = corpus
    case = CORPUS[name]
    before = day_tables(warehouse)
    emulator.config.rewrite_sessions_page = rewriter(case, home)
    try:
        outcome = sync_days(client, warehouse, DAY, DAY, days_per_fetch=1, parallel_fetches=1)
    finally:
        emulator.config.rewrite_sessions_page = None
    record(bad_inputs=1)

    if case.outcome == "fails":
        line = outcome.failed.get(DAY, "")
        assert line, "the day was expected to fail"
        assert "\n" not in line and str(DAY) in line and f"page {home}" in line, line
        assert case.reason in line, line
        assert day_tables(warehouse) == before, "a failed day must stay as it was"
        return

    assert not outcome.failed, outcome.failed
    with connect(warehouse.path) as con:
        rejected = con.execute(
            "SELECT session_id, reason, partition_date, page, raw_json FROM raw.rejected_sessions"
        ).fetchall()
        columns = [c[0] for c in con.execute("SELECT * FROM raw.sessions LIMIT 0").description]
        target = con.execute(
            "SELECT * FROM raw.sessions WHERE session_id = ?", [TARGET["id"]]
        ).fetchall()
    got = loaded_rows(warehouse.path, [DAY])
    loaded = [r[0] for r in got["sessions"]]
    assert len(loaded) == len(set(loaded)), "a session was stored twice"
    # Nothing silently dropped: every session of the day is loaded or rejected.
    rejected_ids = {r[0] for r in rejected}
    missing = {s["id"] for s in truth} - set(loaded) - rejected_ids
    if case.outcome == "rejects" and TARGET["id"] in missing:  # its id itself was the problem
        missing.discard(TARGET["id"])
    assert not missing, missing
    record(lost=len(missing), duplicated=len(loaded) - len(set(loaded)))
    # Nothing else corrupted: every other session and its children exactly as served.
    others = expected_rows({DAY: [s for s in truth if s["id"] != TARGET["id"]]})
    for table, rows in got.items():
        assert [r for r in rows if r[0] != TARGET["id"]] == others[table], table

    if case.outcome == "rejects":
        assert TARGET["id"] not in loaded
        assert len(rejected) == 1, rejected
        session_id, reason, day, page, raw_json = rejected[0]
        assert case.reason in reason, reason
        assert (day, page) == (DAY, home)
        assert raw_json and session_id in (None, "", TARGET["id"])
        if session_id is None and case.item is not None:
            assert raw_json == orjson.dumps(case.item(copy.deepcopy(TARGET))).decode()
    else:
        assert not rejected, rejected
        assert len(target) == 1
        row = dict(zip(columns, target[0], strict=True))
        children = {t: [r for r in got[t] if r[0] == TARGET["id"]] for t in got if t != "sessions"}
        if case.check is not None:
            case.check(row, children)


def test_pagination_that_stops_early_is_reported_incomplete(corpus):
    """A server that says ``hasMorePages: false`` (or serves an empty page) before the end
    cannot be told from the end; the sessions never served are not in the day, and the day is
    marked incomplete by the totalCount check (``synced_days.complete = false``)."""
    emulator, client, _, warehouse, _, home = corpus
    lies = {
        "has_more_pages_false_too_early": lambda doc: {**doc, "hasMorePages": False},
        "null_items_with_more_pages": lambda doc: {**doc, "items": None, "hasMorePages": True},
    }
    for name, lie in lies.items():
        emulator.config.rewrite_sessions_page = lambda page, raw, lie=lie: (
            orjson.dumps(lie(orjson.loads(raw))) if page == home else raw
        )
        try:
            outcome = sync_days(client, warehouse, DAY, DAY, days_per_fetch=1, parallel_fetches=1)
        finally:
            emulator.config.rewrite_sessions_page = None
        record(bad_inputs=1)
        assert not outcome.failed, name
        summary = outcome.committed[0]
        assert summary.complete is False, name
        assert summary.window_distinct_sessions < summary.server_total_count, name
        with connect(warehouse.path) as con:
            assert con.execute(
                "SELECT complete FROM raw.synced_days WHERE partition_date = ?", [DAY]
            ).fetchone() == (False,)
