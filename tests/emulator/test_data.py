"""Generated data: deterministic from the seed (and independent of the order days are asked
for), realistic in shape and distribution, and consistent field by field with the seed page's
SessionInfo DTO."""

from __future__ import annotations

import itertools
import re
import statistics
from collections import Counter
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest

from pipeline.emulator import EmulatorStore, parse_served
from tests.emulator.helpers import NOW, make_config

SESSION_FIELDS = [
    "dialState", "callState", "queueState", "accountId", "accountName", "customerId",
    "customerBreadcrumb", "customerName", "endpointId", "endpointName", "dateCompleted",
    "destination", "toAddress", "fromAddress", "fromName", "answeredByName", "queueMemberId",
    "channel", "ended", "outcome", "callSid", "consoleData", "holdQueueName", "heldByUserId",
    "holdReason", "conferenceSid", "displayName", "log", "members", "callbackNumber",
    "answeredById", "direction", "fromPhoneNumber", "mostRecentParticipantCallSid", "wasMissed",
    "ringQueueId", "id", "dateCreated", "dateLastModified", "createdBy", "lastModifiedBy",
]  # fmt: skip
MEMBER_FIELDS = [
    "identity", "endpointId", "displayName", "isOriginalMember", "avatarUrl", "applicationData",
    "callState", "role", "callSid", "muted",
]  # fmt: skip
ENUMS = {
    "dialState": {"None", "Active"},
    "callState": {"Disconnected", "Ringing", "Connected", "Hold", "Passive"},
    "queueState": {"None", "Queued", "Ringing", "Connected", "Hold", "Disconnected"},
    "channel": {"Voice", "Chat", "Fax"},
    "holdReason": {"None", "Transferring"},
    "direction": {"Incoming", "Outgoing"},
}
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
DAYS = [date(2026, 3, 5) + timedelta(days=i) for i in range(6)]


@pytest.fixture(scope="module")
def store() -> EmulatorStore:
    return EmulatorStore(make_config(sessions_per_day=2000))


@pytest.fixture(scope="module")
def sessions(store) -> list[dict]:
    return [s for day in DAYS for s in store.sessions_on_local_day(day)]


def test_same_seed_same_bytes_in_any_day_order():
    forward = EmulatorStore(make_config())
    backward = EmulatorStore(make_config())
    raw_forward = {d: [r.raw for r in forward.day(d).records] for d in DAYS}
    raw_backward = {d: [r.raw for r in backward.day(d).records] for d in reversed(DAYS)}
    assert raw_forward == raw_backward
    assert all(raw_forward.values())

    other = EmulatorStore(make_config(seed=8))
    assert [r.raw for r in other.day(DAYS[0]).records] != raw_forward[DAYS[0]]


def test_days_regenerate_identically_after_eviction():
    store = EmulatorStore(make_config(max_cached_sessions=10))
    first = [r.raw for r in store.day(DAYS[0]).records]
    store.day(DAYS[1])  # evicts the first day
    assert [r.raw for r in store.day(DAYS[0]).records] == first


def test_every_dto_field_is_present_in_seed_page_order(sessions):
    for session in sessions:
        assert list(session) == SESSION_FIELDS
        for member in session["members"]:
            assert list(member) == MEMBER_FIELDS
            assert all(isinstance(v, str) for v in member["applicationData"].values())
        for name, allowed in ENUMS.items():
            assert session[name] in allowed, (name, session[name])
        assert all(list(e) == ["date", "message"] for e in session["log"])


def test_ids_timestamps_and_addresses_are_well_formed(sessions):
    ids = [s["id"] for s in sessions]
    assert len(ids) == len(set(ids))
    for session in sessions:
        assert re.fullmatch(r"[0-9a-f]{24}", session["id"])
        created = parse_served(session["dateCreated"])
        # ObjectId-style: the id starts with the creation second.
        assert int(session["id"][:8], 16) == int(created.timestamp())
        assert parse_served(session["dateLastModified"]) >= created
        if session["callSid"]:
            assert re.fullmatch(r"CA[0-9a-f]{32}", session["callSid"])
        if session["ended"]:
            assert parse_served(session["dateCompleted"]) >= created
        else:
            assert session["dateCompleted"] is None
        log_dates = [parse_served(e["date"]) for e in session["log"]]
        assert log_dates == sorted(log_dates) and log_dates[0] >= created
        assert E164.match(session["fromAddress"])
        if not session["displayName"].startswith("Transfer to"):
            assert E164.match(session["toAddress"])


def test_breadcrumbs_are_the_trail_down_to_the_customer(store, sessions):
    depths = Counter(len(s["customerBreadcrumb"]) for s in sessions)
    assert set(depths) == {1, 2, 3}
    customers = {c["id"]: c for c in store.customers()}
    for session in sessions:
        trail = session["customerBreadcrumb"]
        assert trail[-1] == {"id": session["customerId"], "name": session["customerName"]}
        assert customers[trail[0]["id"]]["parentCustomerId"] is None
        for parent, child in itertools.pairwise(trail):
            assert customers[child["id"]]["parentCustomerId"] == parent["id"]


def test_accounts_form_a_reseller_tree_with_billing_settings(store):
    accounts = store.accounts()
    reseller, *children = accounts
    assert reseller["parentAccountId"] is None and reseller["ancestorIds"] == []
    assert children
    for account in children:
        assert account["parentAccountId"] == reseller["id"]
        assert account["ancestorIds"] == [reseller["id"]]
    items = {
        "base", "localNumbers", "tollFreeNumbers", "inboundVoiceCalls", "outboundVoiceCalls",
        "inboundFaxes", "outboundFaxes", "inboundSmsMessages", "outboundSmsMessages",
    }  # fmt: skip
    for account in accounts:
        assert set(account["billingSettings"]) == items
        for item in account["billingSettings"].values():
            assert set(item) == {"baseCost", "rawUnitMultiplier", "unitCost", "allowance"}


def test_mix_of_channels_directions_and_missed_calls(sessions):
    channels = Counter(s["channel"] for s in sessions)
    assert channels["Voice"] > 0.75 * len(sessions)
    assert channels["Chat"] and channels["Fax"]
    assert Counter(s["direction"] for s in sessions)["Outgoing"] > 0.2 * len(sessions)

    incoming = [
        s
        for s in sessions
        if s["channel"] == "Voice" and s["direction"] == "Incoming" and s["ended"]
    ]
    missed = [s for s in incoming if s["wasMissed"]]
    assert 0.15 < len(missed) / len(incoming) < 0.25
    assert {s["outcome"] for s in missed} == {"Missed", "Voicemail", "Abandoned"}
    for session in missed:
        assert [m["role"] for m in session["members"]] == ["Caller"]
        assert session["answeredById"] is None
        assert any(e["message"].startswith("Ringing") for e in session["log"])
    answered = [s for s in incoming if not s["wasMissed"]]
    for session in answered:
        roles = [m["role"] for m in session["members"]]
        assert roles[:2] == ["Caller", "Agent"]
        assert session["members"][1]["endpointId"] == session["answeredById"]
        assert session["members"][1]["displayName"] == session["answeredByName"]
        assert any(
            e["message"] == f"Call answered by {session['answeredByName']}" for e in session["log"]
        )


def test_answered_call_durations_are_log_normal_ish(sessions):
    durations = [
        (parse_served(s["dateCompleted"]) - parse_served(s["dateCreated"])).total_seconds()
        for s in sessions
        if s["channel"] == "Voice" and s["outcome"] == "Answered" and s["ended"]
    ]
    median = statistics.median(durations)
    assert 90 < median < 300
    assert statistics.mean(durations) > median  # right-skewed
    assert max(durations) > 10 * median


def test_arrivals_follow_business_hours_in_the_account_zone(store, sessions):
    zones = {a.id: ZoneInfo(a.tz) for a in store.world.accounts}
    weekday = [
        s
        for s in sessions
        if parse_served(s["dateCreated"]).astimezone(zones[s["accountId"]]).weekday() < 5
    ]
    hours = Counter(
        parse_served(s["dateCreated"]).astimezone(zones[s["accountId"]]).hour for s in weekday
    )
    business = sum(hours[h] for h in range(8, 18))
    assert business > 0.7 * sum(hours.values())
    assert hours[10] > 5 * max(hours[3], 1)


def test_names_are_unicode(sessions):
    names = {s["fromName"] for s in sessions if s["fromName"]}
    names |= {s["answeredByName"] for s in sessions if s["answeredByName"]}
    assert any(not n.isascii() for n in names)
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in n) for n in names)  # CJK, e.g. 王芳


def test_volume_follows_sessions_per_day_and_weekends(store):
    monday, sunday = date(2026, 3, 9), date(2026, 3, 8)
    assert len(store.day(monday).records) >= 2000  # plus transfer legs
    assert len(store.day(sunday).records) < 0.4 * len(store.day(monday).records)
    assert store.day(NOW.date() + timedelta(days=1)).records == []
