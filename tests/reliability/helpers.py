"""What the reliability tests compare, and how: table contents of a warehouse file, the rows the
emulator's ground truth implies for every raw table, subprocess runners, and the suite's figures.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow.parquet as pq
from pydantic.alias_generators import to_camel

from pipeline.emulator import EmulatorConfig
from pipeline.evo.models import MEMBER_API_FIELDS, SESSION_API_FIELDS, SESSION_SCALAR_FIELDS
from pipeline.evo.timestamps import parse_timestamp
from pipeline.lake.schemas import MEMBER_FIELDS, TIMESTAMP_FIELDS
from tests.conftest import NOW

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

# The synced days every CLI scenario uses (a Tuesday-to-Thursday or so: weekdays vary) and the
# emulator that serves them; a "twin" built from the same knobs serves byte-identical data.
DAYS = [NOW.date() - timedelta(days=n) for n in (4, 3, 2)]
EMULATOR_DATA = {"seed": 61, "sessions_per_day": 220, "days_of_history": 12, "now": NOW}
# Settings shared by the clean and the faulted run, so only the faults differ between them.
RUN_ENV = {
    "EVO_VOICE_PAGE_SIZE": "40",
    "EVO_SYNC_DAYS_PER_FETCH": "1",
    "EVO_SYNC_PARALLEL_FETCHES": "2",
    "EVO_VOICE_MAX_ATTEMPTS": "12",
    "EVO_VOICE_TIMEZONE": "UTC",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
}
# Provenance columns: they name the sync, not the data, and differ between any two runs.
VOLATILE = ("sync_id", "synced_at", "last_synced_at")
SESSION_TABLES = (
    "sessions",
    "session_members",
    "session_log",
    "session_breadcrumbs",
    "rejected_sessions",
)
CHILD_TABLES = ("session_members", "session_log", "session_breadcrumbs")


def emulator_config(**knobs: Any) -> EmulatorConfig:
    return EmulatorConfig(**{**EMULATOR_DATA, **knobs})


# -- figures ------------------------------------------------------------------------------------

FIGURES: Counter[str] = Counter()
"""What the suite did, printed at the end of the session (see conftest.py)."""


def record(**counts: int) -> None:
    FIGURES.update(counts)


# -- reading a warehouse ------------------------------------------------------------------------


def connect(path: Path | str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    return con


def tables_in(path: Path | str, schema: str) -> list[str]:
    with connect(path) as con:
        return [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = ? ORDER BY 1",
                [schema],
            ).fetchall()
        ]


def contents(
    con: duckdb.DuckDBPyConnection,
    table: str,
    *,
    exclude: Iterable[str] = VOLATILE,
    where: str = "",
    params: list | None = None,
) -> tuple[list[str], list[tuple]]:
    """Every row of ``schema.table`` (without the ``exclude`` columns), in a stable order."""
    schema, name = table.split(".")
    columns = [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? "
            "ORDER BY column_index",
            [schema, name],
        ).fetchall()
        if r[0] not in set(exclude)
    ]
    select = ", ".join(f'"{c}"' for c in columns)
    rows = con.execute(
        f"SELECT {select} FROM {schema}.{name} {where} ORDER BY ALL", params or []
    ).fetchall()
    return columns, rows


def snapshot(
    path: Path | str,
    tables: Iterable[str] | None = None,
    *,
    exclude: Iterable[str] = VOLATILE,
    where: str = "",
    params: list | None = None,
) -> dict[str, tuple[list[str], list[tuple]]]:
    """``contents`` of several tables (default: every raw session table and every mart)."""
    if tables is None:
        tables = [f"raw.{t}" for t in SESSION_TABLES] + [
            f"marts.{t}" for t in tables_in(path, "marts")
        ]
    with connect(path) as con:
        return {t: contents(con, t, exclude=exclude, where=where, params=params) for t in tables}


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        # Aggregates over the same rows may differ in the last bits with the summation order.
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    return a == b


def differences(left: Mapping[str, Any], right: Mapping[str, Any], limit: int = 5) -> list[str]:
    """Human-readable differences between two ``snapshot``-shaped mappings (empty: equal)."""
    found: list[str] = []
    for table in sorted(set(left) | set(right)):
        if table not in left or table not in right:
            found.append(f"{table}: only on one side")
            continue
        (lcols, lrows), (rcols, rrows) = left[table], right[table]
        if lcols != rcols:
            found.append(f"{table}: columns differ: {lcols} != {rcols}")
            continue
        if len(lrows) != len(rrows):
            found.append(f"{table}: {len(lrows)} rows != {len(rrows)} rows")
        shown = 0
        for lrow, rrow in zip(lrows, rrows, strict=False):
            if len(lrow) != len(rrow) or not all(map(_same_value, lrow, rrow)):
                found.append(f"{table}: {lrow!r} != {rrow!r}"[:400])
                shown += 1
                if shown >= limit:
                    break
    return found


# -- ground truth -------------------------------------------------------------------------------

SESSION_COLUMNS = [
    "session_id",
    *[n for n in SESSION_SCALAR_FIELDS if n != "id"],
    "extra_fields",
    "partition_date",
]
MEMBER_COLUMNS = [
    "session_id",
    "member_index",
    *[n for n, _ in MEMBER_FIELDS],
    "extra_fields",
    "partition_date",
]
RAW_COLUMNS = {
    "sessions": SESSION_COLUMNS,
    "session_members": MEMBER_COLUMNS,
    "session_log": ["session_id", "log_index", "logged_at", "message", "partition_date"],
    "session_breadcrumbs": [
        "session_id",
        "position",
        "customer_id",
        "customer_name",
        "partition_date",
    ],
}


def _extras(item: dict, known: frozenset[str]) -> str | None:
    unknown = sorted(item.keys() - known)
    return orjson.dumps({k: item[k] for k in unknown}).decode() if unknown else None


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def expected_rows(sessions_by_day: Mapping[date, Iterable[dict]]) -> dict[str, list[tuple]]:
    """The rows of raw.sessions and its child tables that served sessions imply, computed
    without the pipeline's flattening code: the oracle the loaded tables are compared with."""
    rows: dict[str, list[tuple]] = {table: [] for table in RAW_COLUMNS}
    for day, sessions in sessions_by_day.items():
        for s in sessions:
            sid = s["id"]
            scalars = []
            for name in SESSION_SCALAR_FIELDS:
                if name == "id":
                    continue
                value = s.get(to_camel(name))
                scalars.append(parse_timestamp(value) if name in TIMESTAMP_FIELDS else value)
            rows["sessions"].append((sid, *scalars, _extras(s, SESSION_API_FIELDS), day))
            for index, m in enumerate(s.get("members") or []):
                values = [
                    _json_text(m.get("applicationData"))
                    if n == "application_data"
                    else m.get(to_camel(n))
                    for n, _ in MEMBER_FIELDS
                ]
                rows["session_members"].append(
                    (sid, index, *values, _extras(m, MEMBER_API_FIELDS), day)
                )
            for index, entry in enumerate(s.get("log") or []):
                rows["session_log"].append(
                    (sid, index, parse_timestamp(entry.get("date")), entry.get("message"), day)
                )
            for index, crumb in enumerate(s.get("customerBreadcrumb") or []):
                rows["session_breadcrumbs"].append(
                    (sid, index, crumb.get("id"), crumb.get("name"), day)
                )
    return {table: sorted(found, key=lambda r: r[:2]) for table, found in rows.items()}


def loaded_rows(path: Path | str, days: Iterable[date]) -> dict[str, list[tuple]]:
    """The same tables as :func:`expected_rows`, read back from the warehouse."""
    days = list(days)
    found = {}
    with connect(path) as con:
        for table, columns in RAW_COLUMNS.items():
            rows = con.execute(
                f"SELECT {', '.join(columns)} FROM raw.{table} "
                "WHERE partition_date IN (SELECT unnest(?::DATE[]))",
                [days],
            ).fetchall()
            if table == "session_members":
                at = columns.index("application_data")
                rows = [(*r[:at], _json_text(r[at]), *r[at + 1 :]) for r in rows]
            found[table] = sorted(rows, key=lambda r: r[:2])
    return found


def truth_by_day(emulator, days: Iterable[date], tz: str = "UTC") -> dict[date, list[dict]]:
    return {day: emulator.store.sessions_on_local_day(day, tz) for day in days}


def assert_equals_truth(path: Path | str, truth: Mapping[date, list[dict]]) -> int:
    """Every raw session table of ``truth``'s days equals the ground truth; returns how many
    sessions were compared. Records lost and duplicated sessions in the figures."""
    want = expected_rows(truth)
    got = loaded_rows(path, truth)
    got_ids = [r[0] for r in got["sessions"]]
    want_ids = {r[0] for r in want["sessions"]}
    lost = len(want_ids - set(got_ids))
    duplicated = len(got_ids) - len(set(got_ids))
    record(sessions_compared=len(want_ids), lost=lost, duplicated=duplicated)
    assert lost == 0, f"{lost} sessions of the ground truth are missing"
    assert duplicated == 0, f"{duplicated} sessions were loaded twice"
    for table in RAW_COLUMNS:
        if got[table] != want[table]:
            extra = [r for r in got[table] if r not in want[table]][:3]
            missing = [r for r in want[table] if r not in got[table]][:3]
            raise AssertionError(
                f"raw.{table} differs from the ground truth: unexpected {extra!r}, "
                f"missing {missing!r}"[:2000]
            )
    return len(want_ids)


def assert_lake_matches_warehouse(data_dir: Path, days: Iterable[date] = DAYS) -> None:
    """For every day and table the lake holds one file, the one of the sync ``raw.synced_days``
    names, and the ``raw.*`` view shows exactly its rows."""
    lake, days = data_dir / "lake", list(days)
    with connect(data_dir / "warehouse.duckdb") as con:
        synced = dict(con.execute("SELECT partition_date, sync_id FROM raw.synced_days").fetchall())
        for table in SESSION_TABLES:
            for day in days:
                want = Counter(
                    con.execute(
                        f"SELECT session_id, sync_id FROM raw.{table} WHERE partition_date = ?",
                        [day],
                    ).fetchall()
                )
                files = sorted((lake / table / f"date={day}").glob("*.parquet"))
                assert [f.name for f in files] == [f"part-{synced[day]}.parquet"], (
                    f"lake {table} {day}: {[f.name for f in files]}, synced {synced.get(day)}"
                )
                rows = pq.read_table(files[0], columns=["session_id", "sync_id"]).to_pylist()
                got = Counter((r["session_id"], r["sync_id"]) for r in rows)
                assert got == want, f"lake {table} {day} disagrees with the warehouse"


# -- subprocesses -------------------------------------------------------------------------------


@dataclass
class Finished:
    """A finished subprocess."""

    returncode: int
    stdout: str
    stderr: str
    args: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{' '.join(self.args)} -> {self.returncode}\n--- stdout\n{self.stdout[-3000:]}"
            f"\n--- stderr\n{self.stderr[-3000:]}"
        )


def pipeline_env(emulator, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a pipeline process talking to ``emulator`` and writing ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVO_", "DAGSTER_"))}
    env.update(RUN_ENV)
    env.update(
        {
            "EVO_VOICE_BASE_URL": emulator.base_url,
            "EVO_VOICE_USERNAME": emulator.config.username,
            "EVO_VOICE_PASSWORD": emulator.config.password,
            "EVO_DATA_DIR": str(data_dir),
            "EVO_SYNC_START_DATE": os.environ["EVO_SYNC_START_DATE"],
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    env.update(extra)
    return env


def run(args: list[str], env: Mapping[str, str], timeout: float = 240) -> Finished:
    done = subprocess.run(
        args,
        env=dict(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Finished(done.returncode, done.stdout, done.stderr, args)


def worker(*args: str) -> list[str]:
    """The command line of ``tests/reliability/worker.py`` with ``args``."""
    return [PYTHON, "-m", "tests.reliability.worker", *args]


def cli(emulator, data_dir: Path, *argv: str, **extra_env: str) -> int:
    """``evo-sync <argv>`` in this process, its environment set for the duration of the call
    only (no Dagster instance on disk unless ``DAGSTER_HOME`` is given)."""
    import pytest

    from pipeline.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DAGSTER_HOME", raising=False)
        for name, value in pipeline_env(emulator, data_dir, **extra_env).items():
            if name.startswith(("EVO_", "DBT_", "DAGSTER_")):
                patch.setenv(name, value)
        return main(list(argv))


class _EverythingHandler(logging.FileHandler):
    """Keeps DEBUG: the CLI quietens the root logger's handlers, this one stays a witness."""

    def setLevel(self, level: int | str) -> None:
        super().setLevel(logging.DEBUG)


@contextlib.contextmanager
def debug_log(path: Path) -> Iterator[None]:
    """Every Python log record, at DEBUG and with its exception text, written to ``path``."""
    handler = _EverythingHandler(path, encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(relativeCreated)8d %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


@contextlib.contextmanager
def captured_output() -> Iterator[dict[str, str]]:
    """What is written to stdout and stderr meanwhile, by Python (``sys.stdout``) or by anything
    writing to file descriptors 1 and 2."""
    found: dict[str, str] = {}
    streams = {"stdout": io.StringIO(), "stderr": io.StringIO()}
    with tempfile.TemporaryFile() as fd_out, tempfile.TemporaryFile() as fd_err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(fd_out.fileno(), 1)
        os.dup2(fd_err.fileno(), 2)
        try:
            with (
                contextlib.redirect_stdout(streams["stdout"]),
                contextlib.redirect_stderr(streams["stderr"]),
            ):
                yield found
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            for name, raw in (("stdout", fd_out), ("stderr", fd_err)):
                raw.seek(0)
                found[name] = streams[name].getvalue() + raw.read().decode(errors="replace")


def day_args(first: date, last: date) -> list[str]:
    return ["--start", first.isoformat(), "--end", last.isoformat()]
