"""Secrets: a full backfill through the CLI -- with a failing login, a quarter of the requests
failing, a Dagster instance on disk and every log record at DEBUG -- leaves the password (and a
wrong one tried before it) and the session cookies nowhere: not on stdout or stderr, not in a
log record or exception text, not in the Dagster instance, the lake, the warehouse, the
published copy or the dbt artifacts. Wrong credentials fail with one line naming the settings."""

from __future__ import annotations

import sqlite3
import traceback
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline.emulator import run_emulator
from pipeline.evo.errors import AuthError
from pipeline.lake.store import Lake
from pipeline.lake.warehouse import Warehouse
from pipeline.sync import sync_range
from tests.conftest import make_client
from tests.reliability.helpers import DAYS, REPO_ROOT, emulator_config, record

AUTH_HINT = "EVO_VOICE_USERNAME / EVO_VOICE_PASSWORD"


def readable_texts(path: Path) -> Iterator[str]:
    """A file's bytes as text, plus -- for formats that compress or encode strings (Parquet,
    DuckDB, SQLite) -- every value read back through the format."""
    data = path.read_bytes()
    yield data.decode("latin-1")
    if data.startswith(b"PAR1"):
        yield repr(pq.read_table(path).to_pylist())
    elif data.startswith(b"SQLite format 3"):
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                yield repr(con.execute(f'SELECT * FROM "{table}"').fetchall())
        finally:
            con.close()
    elif path.suffix == ".duckdb" and data[8:12] == b"DUCK":
        con = duckdb.connect(str(path), read_only=True)
        try:
            for schema, table in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables()"
            ).fetchall():
                yield repr(con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall())
        finally:
            con.close()


def files_under(folder: Path, since: float = 0.0) -> list[Path]:
    return [
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.endswith(".lock") and p.stat().st_mtime >= since
    ]


def test_no_secret_anywhere(faulted_run):
    secrets = {
        "password": faulted_run.password,
        "wrong password": faulted_run.wrong_password,
        **{f"cookie {value[:4]}...": value for value in faulted_run.cookies},
    }
    assert len(faulted_run.cookies) >= 2, "the run never logged in"
    texts: dict[str, str] = {}
    for run, streams in faulted_run.outputs.items():
        for stream, text in streams.items():
            texts[f"{run} {stream}"] = text
    texts["log records"] = faulted_run.log_file.read_text()
    assert " DEBUG pipeline.evo.client: retrying " in texts["log records"]
    files = files_under(faulted_run.dagster_home) + files_under(faulted_run.data_dir)
    dbt_artifacts = [REPO_ROOT / "dbt_project" / "target", REPO_ROOT / "dbt_project" / "logs"]
    for folder in dbt_artifacts:
        files += files_under(folder, since=faulted_run.started)
    for path in files:
        for n, text in enumerate(readable_texts(path)):
            texts[f"{path} #{n}"] = text
    kinds = {p.suffix for p in files}
    assert {".parquet", ".duckdb", ".db"} <= kinds, kinds  # lake, warehouse, Dagster storage
    assert any("event" in str(p) or p.name == "runs.db" for p in files)

    # Controls: the scan does read what those formats hold.
    with duckdb.connect(str(faulted_run.data_dir / "warehouse.duckdb"), read_only=True) as con:
        session_id = con.execute("SELECT min(session_id) FROM raw.sessions").fetchone()[0]
    for suffix, known in (
        (".parquet", session_id),
        (".duckdb", session_id),
        (".db", "evo_sessions"),
    ):
        assert any(
            known in text for where, text in texts.items() if where.split(" #")[0].endswith(suffix)
        ), suffix

    leaks = [
        f"{what} in {where}"
        for where, text in texts.items()
        for what, value in secrets.items()
        if value in text
    ]
    record(leaked=len(leaks))
    assert not leaks, leaks


def test_wrong_credentials_fail_with_one_line_naming_the_settings(faulted_run):
    assert faulted_run.statuses["wrong-password"] != 0
    err = faulted_run.outputs["wrong-password"]["stderr"]
    failed = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert [line.split(":")[0] for line in failed] == [f"FAILED {day}" for day in DAYS]
    assert all(AUTH_HINT in line for line in failed), failed
    assert "Traceback" not in err


def test_an_auth_error_and_its_traceback_carry_no_secret(tmp_path):
    password = "Pw-sync-range-secret-8c1f"
    with (
        run_emulator(emulator_config(sessions_per_day=5)) as emulator,
        make_client(emulator, password=password) as client,
        pytest.raises(AuthError) as caught,
    ):
        lake = Lake(str(tmp_path / "lake"))
        sync_range(client, Warehouse(tmp_path / "w.duckdb", lake), *DAYS[:2])
    text = "".join(traceback.format_exception(caught.value))
    assert AUTH_HINT in str(caught.value) and "\n" not in str(caught.value)
    assert password not in text and password not in repr(client.settings)
