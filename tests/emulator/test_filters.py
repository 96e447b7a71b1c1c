"""Every ListSessions request field filters or orders like the real service, with ServiceStack's
binding rules: case-insensitive names, comma-joined / repeated / bracketed lists, JSON bodies on
the predefined route, and 400 responseStatus errors for values that do not bind."""

from __future__ import annotations

from datetime import date

import orjson
import pytest
import requests

from pipeline.emulator import parse_served
from tests.emulator.helpers import basic_session, fetch_all

D = date(2026, 3, 9)
DAY = {"startDate": "2026-03-09", "endDate": "2026-03-09"}


@pytest.fixture(scope="module")
def api(shared_emu):
    return basic_session(shared_emu)


@pytest.fixture(scope="module")
def truth(shared_emu) -> list[dict]:
    return shared_emu.store.sessions_on_local_day(D)


def ids(items) -> set[str]:
    return {s["id"] for s in items}


def test_account_ids_accept_comma_joined_repeated_and_bracketed_lists(shared_emu, api, truth):
    accounts = [a["id"] for a in shared_emu.store.accounts()[1:3]]
    expected = {s["id"] for s in truth if s["accountId"] in accounts}
    assert expected

    comma = fetch_all(api, shared_emu.base_url, accountIds=",".join(accounts), **DAY)
    repeated = fetch_all(api, shared_emu.base_url, accountIds=accounts, **DAY)
    bracketed = fetch_all(api, shared_emu.base_url, accountIds=f"[{','.join(accounts)}]", **DAY)
    assert ids(comma) == ids(repeated) == ids(bracketed) == expected


def test_customer_ids_match_anywhere_in_the_breadcrumb(shared_emu, api, truth):
    top = truth[0]["customerBreadcrumb"][0]["id"]
    expected = {s["id"] for s in truth if top in {c["id"] for c in s["customerBreadcrumb"]}}
    got = fetch_all(api, shared_emu.base_url, customerIds=top, **DAY)
    assert ids(got) == expected
    assert any(s["customerId"] != top for s in got) or len(expected) == len(
        [s for s in truth if s["customerId"] == top]
    )


def test_endpoint_ids_match_the_endpoint_the_answerer_or_a_member(shared_emu, api, truth):
    agent = next(s["answeredById"] for s in truth if s["answeredById"])

    def involved(s: dict) -> bool:
        members = {m["endpointId"] for m in s["members"]}
        return agent in {s["endpointId"], s["answeredById"], *members}

    got = fetch_all(api, shared_emu.base_url, endpointIds=agent, **DAY)
    assert ids(got) == {s["id"] for s in truth if involved(s)}


def test_from_and_to_are_case_insensitive_contains_searches(shared_emu, api, truth):
    named = next(s for s in truth if s["fromName"] and not s["fromName"].isascii())
    needle = named["fromName"].split()[0].upper()
    got = fetch_all(api, shared_emu.base_url, **{"from": needle}, **DAY)
    expected = {
        s["id"]
        for s in truth
        if needle.lower() in f"{s['fromAddress']}\n{s['fromName'] or ''}".lower()
    }
    assert named["id"] in ids(got) and ids(got) == expected

    prefix = truth[3]["toAddress"][:6]
    got = fetch_all(api, shared_emu.base_url, to=prefix, **DAY)
    expected = {s["id"] for s in truth if prefix in f"{s['toAddress']}\n{s['destination'] or ''}"}
    assert ids(got) == expected and expected


def test_log_filters_on_text_in_any_log_message(shared_emu, api, truth):
    got = fetch_all(api, shared_emu.base_url, log="VOICEMAIL", **DAY)
    expected = {
        s["id"] for s in truth if any("voicemail" in e["message"].lower() for e in s["log"])
    }
    assert ids(got) == expected and expected
    assert all(s["outcome"] == "Voicemail" for s in got)


def test_parent_session_id_returns_transfer_legs(shared_emu, api):
    store = shared_emu.store
    legs = [r for r in store.day(D).records if r.parent_id]
    assert legs, "the seed should produce at least one transfer"
    leg = legs[0]
    got = fetch_all(api, shared_emu.base_url, parentSessionId=leg.parent_id, **DAY)
    assert ids(got) == {r.id for r in legs if r.parent_id == leg.parent_id}
    parent = store.session(leg.parent_id)
    assert parent["holdReason"] == "Transferring"
    assert any(m["role"] == "Transfer" for m in parent["members"])


def test_specific_ids_return_exactly_those_sessions(shared_emu, api, truth):
    wanted = [truth[i]["id"] for i in (0, 5, 9)]
    got = fetch_all(api, shared_emu.base_url, specificIds=",".join(wanted))
    assert ids(got) == set(wanted)
    one = api.get(
        f"{shared_emu.base_url}/sessions",
        params={"specificIds": wanted[0], "countPerPage": 1, "simplifiedPaging": "true"},
        timeout=5,
    ).json()["items"]
    assert one == [next(s for s in truth if s["id"] == wanted[0])]
    assert fetch_all(api, shared_emu.base_url, specificIds="000000000000000000000000") == []


@pytest.mark.parametrize("field", ["dateCreated", "dateLastModified", "dateCompleted", "id"])
@pytest.mark.parametrize("order", ["Ascend", "Descend"])
def test_sort_field_and_order_are_honoured(shared_emu, api, field, order):
    got = fetch_all(
        api, shared_emu.base_url, sortField=field.upper(), sortOrder=order.lower(), **DAY
    )

    def key(s: dict):
        if field == "id":
            return int(s["id"], 16)
        value = s[field]
        return parse_served(value).timestamp() if value else float("-inf")

    keys = [key(s) for s in got]
    assert keys == sorted(keys, reverse=order == "Descend")


def test_default_order_is_newest_first(shared_emu, api):
    got = fetch_all(api, shared_emu.base_url, **DAY)
    created = [parse_served(s["dateCreated"]) for s in got]
    assert created == sorted(created, reverse=True)


def test_ignored_sort_gives_a_stable_shuffled_order(start_emulator):
    emu = start_emulator(honour_sort=False)
    api = basic_session(emu)
    first = [s["id"] for s in fetch_all(api, emu.base_url, sortField="id", **DAY)]
    second = [s["id"] for s in fetch_all(api, emu.base_url, count=7, **DAY)]
    assert first == second
    assert first != sorted(first) and first != sorted(first, reverse=True)


def test_parameter_names_are_case_insensitive_and_formats_harmless(shared_emu, api):
    base = shared_emu.base_url
    reference = api.get(f"{base}/sessions", params={"countPerPage": 3, **DAY}, timeout=5).content
    variants = [
        ("/sessions", {"CountPerPage": 3, "STARTDATE": "2026-03-09", "enddate": "2026-03-09"}),
        ("/sessions", {"countPerPage": 3, "format": "json", **DAY}),
        ("/sessions.json", {"countPerPage": 3, **DAY}),
        ("/json/reply/ListSessions", {"countPerPage": 3, **DAY}),
        ("/api/ListSessions", {"countPerPage": 3, **DAY}),
    ]
    for path, params in variants:
        response = api.get(f"{base}{path}", params=params, timeout=5)
        assert response.content == reference, path
        assert response.headers["Content-Type"].startswith("application/json")


def test_post_to_the_predefined_route_takes_a_json_body(shared_emu, api):
    accounts = [a["id"] for a in shared_emu.store.accounts()[1:3]]
    body = {"countPerPage": 4, "simplifiedPaging": True, "accountIds": accounts, **DAY}
    response = api.post(f"{shared_emu.base_url}/json/reply/ListSessions", json=body, timeout=5)
    expected = api.get(
        f"{shared_emu.base_url}/sessions",
        params={**body, "simplifiedPaging": "true", "accountIds": ",".join(accounts)},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.content == expected.content


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"page": "abc"}, "SerializationException", "Page"),
        ({"countPerPage": "1.5"}, "SerializationException", "CountPerPage"),
        ({"simplifiedPaging": "maybe"}, "SerializationException", "SimplifiedPaging"),
        ({"sortOrder": "Sideways"}, "SerializationException", "SortOrder"),
        ({"startDate": "2024-13-45"}, "ArgumentException", "StartDate"),
        ({"endDate": "yesterday"}, "ArgumentException", "EndDate"),
        ({"sortField": "duration"}, "ArgumentException", "SortField"),
        ({"page": "-1"}, "ArgumentException", "Page"),
    ],
)
def test_bad_parameters_are_400_with_field_errors(shared_emu, api, params, code, field):
    response = api.get(f"{shared_emu.base_url}/sessions", params=params, timeout=5)
    assert response.status_code == 400
    status = orjson.loads(response.content)["responseStatus"]
    assert status["errorCode"] == code
    assert status["message"]
    assert [(e["errorCode"], e["fieldName"]) for e in status["errors"]] == [(code, field)]


def test_unknown_routes_are_404_with_response_status(shared_emu, api):
    for method, path in (("GET", "/nope"), ("GET", "/json/reply/NoSuchOp"), ("POST", "/sessions")):
        response = api.request(method, f"{shared_emu.base_url}{path}", timeout=5)
        assert response.status_code == 404, path
        assert response.json()["responseStatus"]["errorCode"] == "NotFound"


def test_get_session_serves_one_session_with_an_empty_log(shared_emu, api, truth):
    wanted = truth[0]
    got = api.get(f"{shared_emu.base_url}/sessions/{wanted['id']}", timeout=5).json()
    assert got == {**wanted, "log": []}
    missing = api.get(f"{shared_emu.base_url}/sessions/000000000000000000000000", timeout=5)
    assert missing.status_code == 404


def test_customer_and_endpoint_lists_describe_what_sessions_reference(shared_emu, api, truth):
    customers = api.get(f"{shared_emu.base_url}/customers", params={"all": "true"}, timeout=5)
    endpoints = api.get(f"{shared_emu.base_url}/endpoints", params={"all": "true"}, timeout=5)
    customer_ids = {c["id"] for c in customers.json()["items"]}
    endpoint_ids = {e["id"] for e in endpoints.json()["items"]}
    assert {s["customerId"] for s in truth} <= customer_ids
    assert {s["endpointId"] for s in truth} <= endpoint_ids
    assert {s["answeredById"] for s in truth if s["answeredById"]} <= endpoint_ids
    users = requests.get(
        f"{shared_emu.base_url}/endpoints",
        params={"type": "User", "all": "true"},
        auth=api.auth,
        timeout=5,
    ).json()["items"]
    assert users and {u["type"] for u in users} == {"User"}
