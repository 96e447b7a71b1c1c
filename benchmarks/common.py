"""Shared pieces of the benchmark harness: the emulator subprocess, the request plan, timing."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
PYTHON = sys.executable
USERNAME = "demo@evo.local"
PASSWORD = "demo-password"
PAGE_SIZE = 100


@dataclass
class Emulator:
    """A running emulator subprocess."""

    base_url: str
    warmed: int
    process: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.contextmanager
def emulator(
    *,
    seed: int,
    sessions_per_day: int,
    first_day: date,
    last_day: date,
    now: datetime,
    latency_ms: float = 0.0,
    warm: bool = True,
) -> Iterator[Emulator]:
    """An emulator in its own process with history ``first_day..last_day`` (every day the same
    volume: ``weekend_factor=1``), its clock frozen at ``now``."""
    config = {
        "seed": seed,
        "sessions_per_day": sessions_per_day,
        "weekend_factor": 1.0,
        "history_start": first_day.isoformat(),
        "history_end": last_day.isoformat(),
        "now": now.isoformat(),
        "latency_ms": latency_ms,
        # A 500k-session day and its cached query result fit; bigger histories are evicted
        # (least recently used) and regenerated on demand, identically.
        "max_cached_sessions": 1_500_000,
    }
    command = [PYTHON, str(HERE / "emulator_proc.py"), json.dumps(config)]
    if warm:
        command += ["--warm", first_day.isoformat(), last_day.isoformat()]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True
    )
    try:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"emulator failed to start (exit {process.wait()})")
        info = json.loads(line)
        yield Emulator(info["base_url"], info["warmed"], process)
    finally:
        with contextlib.suppress(Exception):
            process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def midnight(day: date) -> datetime:
    return datetime.combine(day, dtime(), UTC)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


# -- the request plan: exactly the queries our ingest sends ------------------------------------


@dataclass(frozen=True)
class Query:
    """One paged ``GET /sessions`` query (all its pages share these parameters)."""

    params: dict[str, Any] = field(hash=False)


def session_queries(first_day: date, last_day: date, today: date) -> list[Query]:
    """The ``/sessions`` queries ``pipeline.sync.sync_range`` sends for one window (window,
    stores, sort), so the raw floor and dlt read exactly the same pages as our ingest."""
    from pipeline.evo.client import query_params
    from pipeline.evo.sessions import request_window, stores_to_read
    from pipeline.evo.settings import DEFAULT_ARCHIVE_AFTER_DAYS

    window = request_window(first_day, last_day, ZoneInfo("UTC"))
    queries = []
    for archive in stores_to_read(first_day, today, DEFAULT_ARCHIVE_AFTER_DAYS):
        params: dict[str, Any] = {
            **window.params(),
            "sortField": "dateCreated",
            "sortOrder": "Ascend",
        }
        if archive:
            params["searchArchive"] = True
        params.update(countPerPage=PAGE_SIZE, simplifiedPaging=True)
        queries.append(Query(query_params(params)))
    return queries


def windows(first_day: date, last_day: date, days_per_fetch: int) -> list[tuple[date, date]]:
    out = []
    start = first_day
    while start <= last_day:
        end = min(last_day, start + timedelta(days=days_per_fetch - 1))
        out.append((start, end))
        start = end + timedelta(days=1)
    return out


# -- timing --------------------------------------------------------------------------------------


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def git_state() -> str:
    """The commit measured, and which tracked files differ from it (others may be editing)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
    except OSError:
        return "unknown"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"{head}" + (f" plus uncommitted changes to {', '.join(changed)}" if changed else "")


def machine_info() -> dict[str, str]:
    import platform

    import duckdb
    import psutil
    import pyarrow

    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in ("dlt", "dagster", "dbt.version", "orjson", "requests"):
        with contextlib.suppress(Exception):
            module = __import__(name, fromlist=["__version__"])
            versions[name.split(".")[0]] = getattr(
                module, "__version__", getattr(module, "installed", "?")
            )
    return {
        "cpu": cpu,
        "cores": f"{psutil.cpu_count(logical=False)} physical / {os.cpu_count()} logical",
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
        **{k: str(v) for k, v in versions.items()},
    }
