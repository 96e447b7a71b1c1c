"""Shared setup of the reliability suite: one clean backfill (sync, dbt, publish) that the other
scenarios compare with or start from, emulators serving the same data, and the figures the suite
prints at the end."""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.emulator import RunningEmulator, run_emulator
from tests.reliability.helpers import (
    DAYS,
    FIGURES,
    captured_output,
    cli,
    day_args,
    debug_log,
    emulator_config,
    record,
)


@dataclass(frozen=True)
class Baseline:
    """A data folder after a clean ``evo-sync backfill`` of ``DAYS``; do not modify it."""

    data_dir: Path
    emulator: RunningEmulator

    @property
    def warehouse(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    def copy_to(self, target: Path) -> Path:
        """A private copy of the data folder (lake, warehouse, published copy) to change."""
        shutil.copytree(self.data_dir, target, ignore=shutil.ignore_patterns("*.lock"))
        return target


@pytest.fixture(scope="session")
def baseline(tmp_path_factory) -> Iterator[Baseline]:
    data_dir = tmp_path_factory.mktemp("baseline")
    with run_emulator(emulator_config()) as emulator:
        status = cli(emulator, data_dir, "backfill", *day_args(DAYS[0], DAYS[-1]), "--quiet")
        assert status == 0, "the clean backfill failed"
        yield Baseline(data_dir, emulator)


@pytest.fixture
def start_twin() -> Iterator[Callable[..., RunningEmulator]]:
    """Start emulators serving the baseline's data (plus ``knobs``); stopped at teardown."""
    with ExitStack() as stack:
        yield lambda **knobs: stack.enter_context(run_emulator(emulator_config(**knobs)))


def pytest_terminal_summary(terminalreporter) -> None:
    if not FIGURES:
        return
    names = (
        ("requests", "requests of the faulted backfill"),
        ("requests_failed", "of them failed on purpose (5xx, HTML, 429, drops, stalls)"),
        ("retries", "retries the client made for them"),
        ("sessions_compared", "sessions compared with the ground truth or a clean run"),
        ("tables_compared", "raw tables and marts compared whole with a clean run"),
        ("bad_inputs", "malformed or hostile responses served"),
        ("crashes", "processes SIGKILLed mid-sync"),
        ("lost", "sessions lost"),
        ("duplicated", "sessions duplicated"),
        ("leaked", "secret values leaked"),
    )
    terminalreporter.section("reliability figures")
    for key, label in names:
        terminalreporter.write_line(f"{FIGURES.get(key, 0):>9,}  {label}")


# The faulted run: >= 20 % of requests fail, in every way the emulator knows. Rates per request.
FAULTS = {
    "error_rate_500": 0.08,
    "error_rate_502": 0.04,
    "error_rate_503": 0.04,
    "error_rate_429": 0.02,
    "drop_rate": 0.05,
    "stall_rate": 0.02,
    "stall_seconds": 1.0,  # beyond the client's read timeout of 0.5 s (EVO_VOICE_READ_TIMEOUT)
    "retry_after_seconds": 1,
    "faults_on_auth_routes": True,
    "fault_seed": 9,
}


@dataclass(frozen=True)
class FaultedRun:
    """``evo-sync backfill`` of ``DAYS`` against a faulty emulator with a random password, a
    Dagster instance on disk and every log record at DEBUG: first with a wrong password
    (``--no-dbt``), then for real (sync, dbt, publish)."""

    root: Path
    data_dir: Path
    dagster_home: Path
    log_file: Path
    started: float
    outputs: dict[str, dict[str, str]]  # run name -> stdout, stderr
    statuses: dict[str, int]
    password: str
    wrong_password: str
    cookies: frozenset[str]
    requests: int
    faults: dict[str, int]


@pytest.fixture(scope="session")
def faulted_run(tmp_path_factory) -> Iterator[FaultedRun]:
    root = tmp_path_factory.mktemp("faulted")
    password = "Pw-" + secrets.token_hex(16)
    wrong_password = "Wrong-" + secrets.token_hex(16)
    data_dir, home, log_file = root / "data", root / "dagster_home", root / "debug.log"
    home.mkdir()
    days = day_args(DAYS[0], DAYS[-1])
    runs = {
        "wrong-password": (wrong_password, ["backfill", *days, "--quiet", "--no-dbt"]),
        "faulted": (password, ["backfill", *days, "--quiet"]),
    }
    outputs, statuses = {}, {}
    with run_emulator(emulator_config(password=password, **FAULTS)) as emulator:
        started = time.time()
        with debug_log(log_file):
            for name, (secret, argv) in runs.items():
                with captured_output() as output:
                    statuses[name] = cli(
                        emulator,
                        data_dir,
                        *argv,
                        DAGSTER_HOME=str(home),
                        EVO_VOICE_PASSWORD=secret,
                        EVO_VOICE_READ_TIMEOUT="0.5",
                    )
                outputs[name] = output
        cookies = set()
        for key, session in emulator.app.auth._by_id.items():
            cookies |= {key, session.session_id, session.permanent_id}
        faults = dict(emulator.stats.faults)
        record(requests=emulator.stats.requests, requests_failed=sum(faults.values()))
        yield FaultedRun(
            root=root,
            data_dir=data_dir,
            dagster_home=home,
            log_file=log_file,
            started=started,
            outputs=outputs,
            statuses=statuses,
            password=password,
            wrong_password=wrong_password,
            cookies=frozenset(cookies),
            requests=emulator.stats.requests,
            faults=faults,
        )
