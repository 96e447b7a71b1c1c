"""The Arrow fast path produces exactly what the pydantic contract produces, routes sessions to
local days, rejects (never drops) rows the contract cannot accept, and reports drift."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from pipeline.evo.models import SESSION_SCALAR_FIELDS, SessionInfo
from pipeline.lake.flatten import SyncContext, flatten_page

DAY = date(2026, 11, 28)


def make_session(rng: random.Random, n: int, day: date = DAY) -> dict:
    created = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
        seconds=rng.randrange(86_400)
    )
    fmt = rng.choice(["z7", "z0", "offset", "msdate"])

    def stamp(t: datetime) -> str:
        if fmt == "z7":
            return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "1Z"
        if fmt == "z0":
            return t.strftime("%Y-%m-%dT%H:%M:%SZ")
        if fmt == "offset":
            return t.astimezone(ZoneInfo("America/Chicago")).isoformat()
        return f"/Date({int(t.timestamp() * 1000)}-0600)/"

    missed = rng.random() < 0.2
    completed = created + timedelta(seconds=rng.randrange(5, 900))
    return {
        "id": f"s{n:06d}",
        "dateCreated": stamp(created),
        "dateLastModified": stamp(completed),
        "dateCompleted": stamp(completed) if rng.random() < 0.95 else None,
        "createdBy": "system",
        "dialState": "None",
        "callState": rng.choice(["Disconnected", "Connected"]),
        "queueState": "None",
        "accountId": "acc1",
        "accountName": "Ünïcode Ltd 王",
        "customerId": "c2",
        "customerBreadcrumb": [{"id": "c1", "name": "Top"}, {"id": "c2", "name": "Sub"}][
            : rng.randrange(3)
        ],
        "channel": rng.choice(["Voice", "Voice", "Chat", "Fax"]),
        "ended": True,
        "wasMissed": missed,
        "direction": rng.choice(["Incoming", "Outgoing"]),
        "log": [
            {"date": stamp(created + timedelta(seconds=i)), "message": f"step {i}"}
            for i in range(rng.randrange(4))
        ],
        "members": [
            {
                "identity": f"m{i}",
                "role": rng.choice(["Caller", "Agent"]),
                "muted": False,
                "applicationData": {"k": str(i)} if i else None,
                "isOriginalMember": i == 0,
            }
            for i in range(rng.randrange(3))
        ],
        **({"brandNewField": {"x": n}} if n % 7 == 0 else {}),
    }


def ctx(zone: str = "UTC", first: date = DAY, last: date = DAY) -> SyncContext:
    return SyncContext("sync1", datetime(2026, 11, 29, tzinfo=UTC), ZoneInfo(zone), first, last)


def flatten(items, **kw):
    return flatten_page(items, page=2, search_archive=False, first_ordinal=10, ctx=ctx(**kw))


def test_fast_path_matches_the_pydantic_contract():
    rng = random.Random(5)
    items = [make_session(rng, n) for n in range(300)]
    flat = flatten(items)
    assert flat.stats.slow_pages == 0 and flat.stats.rejected == 0
    rows = {r["session_id"]: r for r in flat.tables["sessions"].to_pylist()}
    members = flat.tables["session_members"].to_pylist()
    logs = flat.tables["session_log"].to_pylist()
    crumbs = flat.tables["session_breadcrumbs"].to_pylist()
    assert len(rows) == 300
    for item in items:
        model = SessionInfo.model_validate(item)
        row = rows[model.id]
        for name in SESSION_SCALAR_FIELDS:
            if name != "id":
                assert row[name] == getattr(model, name), name
        assert row["extra_fields"] == (
            orjson.dumps(model.model_extra).decode() if model.model_extra else None
        )
        got_members = [m for m in members if m["session_id"] == model.id]
        assert [m["member_index"] for m in got_members] == list(range(len(model.members)))
        for got, want in zip(got_members, model.members, strict=True):
            assert got["identity"] == want.identity and got["role"] == want.role
            assert dict(got["application_data"] or []) == (want.application_data or {})
        got_log = [entry for entry in logs if entry["session_id"] == model.id]
        assert [(e["logged_at"], e["message"]) for e in got_log] == [
            (entry.date, entry.message) for entry in model.log
        ]
        got_crumbs = [c for c in crumbs if c["session_id"] == model.id]
        assert [(c["position"], c["customer_id"]) for c in got_crumbs] == [
            (i, c.id) for i, c in enumerate(model.customer_breadcrumb)
        ]
    assert flat.stats.unknown_fields["brandNewField"] == len(
        [i for i in items if "brandNewField" in i]
    )


def test_slow_path_gives_the_same_rows_as_the_fast_path():
    rng = random.Random(9)
    items = [make_session(rng, n) for n in range(50)]
    fast = flatten(items)
    slow = flatten([*items, {"id": "bad", "dateCreated": "2026-11-28T10:00:00Z", "ended": "maybe"}])
    assert slow.stats.slow_pages == 1 and slow.stats.rejected == 1
    for table in ("sessions", "session_members", "session_log", "session_breadcrumbs"):
        drop = {"extra_fields"} if table == "session_members" else set()
        want = [
            {k: v for k, v in r.items() if k not in drop} for r in fast.tables[table].to_pylist()
        ]
        got = [
            {k: v for k, v in r.items() if k not in drop} for r in slow.tables[table].to_pylist()
        ]
        assert got == want, table


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"dateCreated": "2026-11-28T10:00:00Z"}, "no id"),
        ({"id": "", "dateCreated": "2026-11-28T10:00:00Z"}, "no id"),
        ({"id": 17, "dateCreated": "2026-11-28T10:00:00Z"}, "id"),
        ({"id": "x"}, "dateCreated is missing"),
        ({"id": "x", "dateCreated": "not a date"}, "dateCreated"),
        ({"id": "x", "dateCreated": "2026-02-30T00:00:00Z"}, "dateCreated"),
        ({"id": "x", "dateCreated": "2026-11-28T10:00:00Z", "log": [{"date": "??"}]}, "log"),
        ({"id": "x", "dateCreated": "2026-11-28T10:00:00Z", "members": "everyone"}, "members"),
        ("a string", "not an object"),
        (None, "not an object"),
    ],
)
def test_rows_the_contract_cannot_accept_are_rejected_with_reason_and_raw_json(bad, reason):
    good = make_session(random.Random(1), 1)
    flat = flatten([good, bad])
    assert flat.tables["sessions"]["session_id"].to_pylist() == [good["id"]]
    rejected = flat.tables["rejected_sessions"].to_pylist()
    assert len(rejected) == 1
    assert reason in rejected[0]["reason"]
    assert rejected[0]["page"] == 2 and rejected[0]["partition_date"] == DAY
    assert orjson.loads(rejected[0]["raw_json"]) == bad


def test_sessions_are_routed_to_their_local_day():
    items = [
        {"id": "late-utc", "dateCreated": "2026-11-29T03:00:00Z"},  # 21:00 on the 28th in Chicago
        {"id": "early", "dateCreated": "2026-11-28T05:59:59Z"},  # 23:59:59 on the 27th
        {"id": "inside", "dateCreated": "2026-11-28T06:00:00Z"},
    ]
    flat = flatten(items, zone="America/Chicago")
    assert sorted(flat.tables["sessions"]["session_id"].to_pylist()) == ["inside", "late-utc"]
    assert flat.stats.outside_window == 1
    assert set(flat.tables["sessions"]["partition_date"].to_pylist()) == {DAY}


def test_unknown_enum_values_are_kept_and_counted():
    item = {
        "id": "x",
        "dateCreated": "2026-11-28T10:00:00Z",
        "channel": "Video",
        "members": [{"role": "Supervisor"}],
    }
    flat = flatten([item])
    assert flat.tables["sessions"]["channel"].to_pylist() == ["Video"]
    assert flat.stats.unknown_enum_values == {"channel=Video": 1, "members.role=Supervisor": 1}


def test_nested_junk_in_application_data_is_kept_as_json_text():
    item = {
        "id": "x",
        "dateCreated": "2026-11-28T10:00:00Z",
        "members": [{"applicationData": {"deep": {"a": [1, {"b": None}]}, "n": 3}}],
    }
    flat = flatten([item])
    data = dict(flat.tables["session_members"]["application_data"].to_pylist()[0])
    assert orjson.loads(data["deep"]) == {"a": [1, {"b": None}]} and data["n"] == "3"
