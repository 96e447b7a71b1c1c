"""Timestamp formats the server can write (z, offset, naive, msdate, mixed), each describing
the same instants; and omitting nulls the way ServiceStack's default serializer does."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date
from zoneinfo import ZoneInfo

import pytest

from pipeline.emulator import parse_served
from tests.emulator.helpers import basic_session, fetch_all

D = date(2026, 3, 9)
PATTERNS = {
    "z": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$"),
    "offset": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}[+-]\d\d:\d\d$"),
    "naive": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}$"),
    "msdate": re.compile(r"^/Date\(\d{13}-0000\)/$"),
}
MIXED = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?(Z|[+-]\d\d:\d\d)?|/Date\(\d+-0000\)/)$"
)


def timestamps(session: dict) -> list[str]:
    values = [session["dateCreated"], session["dateLastModified"]]
    values += [e["date"] for e in session["log"]]
    if session["dateCompleted"]:
        values.append(session["dateCompleted"])
    return values


@pytest.fixture(scope="module")
def reference(shared_emu) -> dict[str, list[str]]:
    """Each session's instants as written in the default ``z`` format."""
    return {s["id"]: timestamps(s) for s in shared_emu.store.sessions_on_local_day(D)}


@pytest.mark.parametrize("fmt", ["z", "offset", "naive", "msdate"])
def test_each_format_writes_every_timestamp_its_way(start_emulator, reference, fmt):
    emu = start_emulator(timestamp_format=fmt)
    got = fetch_all(basic_session(emu), emu.base_url, startDate="2026-03-09", endDate="2026-03-09")
    zones = {a["id"]: a for a in emu.store.accounts()}
    assert {s["id"] for s in got} == set(reference)
    for session in got:
        values = timestamps(session)
        assert all(PATTERNS[fmt].match(v) for v in values), values
        expected = [parse_served(v) for v in reference[session["id"]]]
        tolerance = 1e-3 if fmt == "msdate" else 1e-6
        assert all(
            abs((parse_served(v) - e).total_seconds()) < tolerance
            for v, e in zip(values, expected, strict=True)
        )
        if fmt == "offset":
            # The offset is the account's zone at that instant (DST included).
            tz = ZoneInfo(emu.store.world.by_account_id[session["accountId"]].tz)
            created = parse_served(session["dateCreated"])
            offset = created.astimezone(tz).utcoffset()
            assert session["dateCreated"].endswith(
                f"{'-' if offset.total_seconds() < 0 else '+'}"
                f"{abs(int(offset.total_seconds())) // 3600:02d}:"
                f"{abs(int(offset.total_seconds())) % 3600 // 60:02d}"
            )
            assert session["accountId"] in zones


def test_mixed_varies_per_session_but_is_stable(start_emulator, reference):
    emu = start_emulator(timestamp_format="mixed")
    api = basic_session(emu)
    got = fetch_all(api, emu.base_url, startDate="2026-03-09", endDate="2026-03-09")
    again = fetch_all(api, emu.base_url, count=13, startDate="2026-03-09", endDate="2026-03-09")
    assert got == again

    shapes = Counter()
    digits = set()
    for session in got:
        values = timestamps(session)
        assert all(MIXED.match(v) for v in values), values
        kinds = {
            "msdate" if v.startswith("/Date") else "z" if v.endswith("Z") else
            "offset" if re.search(r"[+-]\d\d:\d\d$", v) else "naive"
            for v in values
        }  # fmt: skip
        assert len(kinds) == 1  # one format per session
        shapes[kinds.pop()] += 1
        fraction = re.search(r"\.(\d+)", session["dateCreated"])
        digits.add(len(fraction.group(1)) if fraction else 0)
        for value, expected in zip(values, reference[session["id"]], strict=True):
            assert abs((parse_served(value) - parse_served(expected)).total_seconds()) < 1
    assert set(shapes) == {"z", "offset", "naive", "msdate"}
    assert {0, 7} <= digits and len(digits) >= 6


def test_format_can_change_while_running(emu):
    api = basic_session(emu)
    params = {"startDate": "2026-03-09", "endDate": "2026-03-09"}
    before = fetch_all(api, emu.base_url, **params)
    emu.config.timestamp_format = "msdate"
    after = fetch_all(api, emu.base_url, **params)
    assert [s["id"] for s in before] == [s["id"] for s in after]
    assert all(PATTERNS["msdate"].match(s["dateCreated"]) for s in after)
    assert emu.store.sessions_on_local_day(D)[0]["dateCreated"].startswith("/Date(")


def test_nulls_can_be_omitted_like_servicestack_default(start_emulator):
    emu = start_emulator(include_null_values=False)
    got = fetch_all(basic_session(emu), emu.base_url, startDate="2026-03-09", endDate="2026-03-09")
    assert got
    for session in got:
        assert None not in session.values()
        assert all(None not in m.values() for m in session["members"])
        assert {"id", "dateCreated", "accountId", "channel", "log", "members"} <= session.keys()
    assert any("destination" not in s for s in got)
