"""Injected faults: 500 with a ServiceStack body, 502/503 HTML pages from a proxy, 429 with
Retry-After, dropped connections and stalls -- at roughly the configured rates, in a sequence
fixed by the fault seed; plus added latency and fault-free auth routes."""

from __future__ import annotations

import time
from collections import Counter
from email.utils import parsedate_to_datetime

import pytest
import requests

URL = "/sessions?countPerPage=1&startDate=2026-03-09&endDate=2026-03-09"
RATES = {
    "error_rate_500": 0.1,
    "error_rate_502": 0.1,
    "error_rate_503": 0.1,
    "error_rate_429": 0.1,
    "drop_rate": 0.1,
}


def outcome(emu, timeout: float = 5) -> str | int:
    try:
        response = requests.get(
            f"{emu.base_url}{URL}", auth=(emu.config.username, emu.config.password), timeout=timeout
        )
    except requests.ConnectionError:
        return "drop"
    return response.status_code


def test_fault_rates_are_roughly_as_configured(start_emulator):
    emu = start_emulator(fault_seed=1, **RATES)
    seen = Counter(outcome(emu) for _ in range(500))

    for kind in (500, 502, 503, 429, "drop"):
        assert 25 <= seen[kind] <= 80, seen
    assert 200 <= seen[200] <= 300, seen
    assert emu.stats.faults == Counter({str(k): n for k, n in seen.items() if k != 200}), (
        emu.stats.snapshot()
    )
    assert emu.stats.requests == 500


def test_fault_sequence_is_fixed_by_the_fault_seed(start_emulator):
    first = start_emulator(fault_seed=9, **RATES)
    second = start_emulator(fault_seed=9, **RATES)
    other = start_emulator(fault_seed=10, **RATES)
    runs = [[outcome(emu) for _ in range(60)] for emu in (first, second, other)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_fault_bodies_and_headers(start_emulator):
    emu = start_emulator()
    auth = (emu.config.username, emu.config.password)

    def fetch() -> requests.Response:
        return requests.get(f"{emu.base_url}{URL}", auth=auth, timeout=5)

    emu.config.error_rate_500 = 1.0
    response = fetch()
    assert response.status_code == 500
    status = response.json()["responseStatus"]
    assert status["errorCode"] and status["message"]

    emu.config.error_rate_500, emu.config.error_rate_429 = 0.0, 1.0
    emu.config.retry_after_seconds = 7
    response = fetch()
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["responseStatus"]["errorCode"] == "TooManyRequests"

    emu.config.retry_after_http_date = True
    retry_at = parsedate_to_datetime(fetch().headers["Retry-After"])
    assert 0 < (retry_at - parsedate_to_datetime(response.headers["Date"])).total_seconds() < 60

    for status_code in (502, 503):
        emu.config.error_rate_429 = 0.0
        setattr(emu.config, f"error_rate_{status_code}", 1.0)
        response = fetch()
        assert response.status_code == status_code
        assert response.headers["Content-Type"].startswith("text/html")
        assert response.text.lstrip().lower().startswith(("<html", "<!doctype html"))
        setattr(emu.config, f"error_rate_{status_code}", 0.0)
    assert fetch().status_code == 200


def test_dropped_connections_close_without_a_response(start_emulator):
    emu = start_emulator(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{emu.base_url}{URL}", auth=("demo@evo.local", "demo-password"), timeout=5)
    assert emu.stats.faults["drop"] == 1


def test_stalls_trip_a_client_read_timeout(start_emulator):
    emu = start_emulator(stall_rate=1.0, stall_seconds=1.0)
    with pytest.raises(requests.ReadTimeout):
        outcome(emu, timeout=0.25)
    started = time.monotonic()
    assert outcome(emu, timeout=5) == 200  # a patient client gets its answer, late
    assert time.monotonic() - started >= 1.0


def test_auth_routes_are_exempt_unless_asked(start_emulator):
    emu = start_emulator(error_rate_500=1.0)
    creds = {"userName": emu.config.username, "password": emu.config.password}
    assert requests.post(f"{emu.base_url}/auth/credentials", json=creds, timeout=5).ok
    emu.config.faults_on_auth_routes = True
    response = requests.post(f"{emu.base_url}/auth/credentials", json=creds, timeout=5)
    assert response.status_code == 500


def test_latency_is_added_to_every_request(start_emulator):
    emu = start_emulator(latency_ms=150)
    started = time.monotonic()
    assert outcome(emu) == 200
    assert time.monotonic() - started >= 0.15
