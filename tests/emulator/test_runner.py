"""Running the emulator: run_emulator binds 127.0.0.1 on a free port and stops cleanly (no
threads or sockets left, even with keep-alive clients or a stalled request), knobs change on a
live server, and ``python -m pipeline.emulator`` serves in the foreground until interrupted."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from pipeline.emulator import run_emulator
from tests.emulator.helpers import basic_session, make_config

REPO = Path(__file__).resolve().parents[2]


def test_binds_loopback_on_a_random_port_and_cleans_up():
    threads_before = set(threading.enumerate())
    with run_emulator(make_config()) as emu:
        assert emu.base_url.startswith("http://127.0.0.1:") and emu.port > 0
        keep_alive = basic_session(emu)
        assert keep_alive.get(f"{emu.base_url}/sessions", timeout=5).ok  # idle pooled socket
        port = emu.port
    assert set(threading.enumerate()) <= threads_before
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_stop_does_not_wait_for_a_stalled_request():
    with run_emulator(make_config(stall_rate=1.0, stall_seconds=30)) as emu:
        with pytest.raises(requests.ReadTimeout):
            basic_session(emu).get(f"{emu.base_url}/sessions", timeout=0.3)
        started = time.monotonic()
    assert time.monotonic() - started < 5


def test_knobs_change_on_a_running_server(emu):
    api = basic_session(emu)
    params = {"countPerPage": 100, "startDate": "2026-03-09", "endDate": "2026-03-09"}
    assert len(api.get(f"{emu.base_url}/sessions", params=params, timeout=5).json()["items"]) == 100
    emu.config.page_size_cap = 10
    assert len(api.get(f"{emu.base_url}/sessions", params=params, timeout=5).json()["items"]) == 10
    assert emu.stats.by_op["ListSessions"] == 2
    assert [r.path for r in emu.stats.requests_to("/sessions")] == ["/sessions", "/sessions"]
    assert emu.stats.request_log[-1].query["countPerPage"] == ["100"]


def test_module_entry_point_serves_until_interrupted():
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.emulator", "--port", "0", "--sessions-per-day", "20"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = process.stdout.readline()
        assert "demo@evo.local" in banner and "demo-password" in banner
        url = banner.split()[banner.split().index("on") + 1]
        response = requests.get(f"{url}/auth/status", auth=("demo@evo.local", "demo-password"))
        assert response.json()["isAuthenticated"] is True
    finally:
        process.send_signal(signal.SIGINT)
        # Generous: under a loaded CI machine the shutdown once took over 10 s.
        assert process.wait(timeout=60) == 0


def test_live_clock_follows_the_wall_clock(start_emulator):
    stale = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    emu = start_emulator(now=stale, live_clock=True)
    assert emu.store.now == stale
    basic_session(emu).get(f"{emu.base_url}/sessions", params={"countPerPage": 1}, timeout=5)
    assert datetime.now(UTC) - emu.store.now < timedelta(seconds=5)


def test_cors_preflight_and_jsonp(shared_emu):
    preflight = requests.options(f"{shared_emu.base_url}/sessions", timeout=5)
    assert preflight.status_code == 200 and "GET" in preflight.headers["Allow"]
    wrapped = basic_session(shared_emu).get(
        f"{shared_emu.base_url}/auth/status", params={"callback": "cb"}, timeout=5
    )
    assert wrapped.text.startswith("cb({") and wrapped.text.endswith("})")
