"""The copy of the marts that BI tools read: ``$EVO_DATA_DIR/published/warehouse.duckdb``.

DuckDB lets one process write a file, and a reader holding it open blocks that writer. So
dashboards never open the working warehouse: after each successful build the marts (and the
sync bookkeeping) are copied into a new file that then atomically replaces the published one.
A reader keeps the snapshot it opened; the next connection sees the new build. Nobody ever
sees a half-built state, and no reader can make a sync fail.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from datetime import timedelta
from pathlib import Path

import duckdb

from pipeline.failpoints import failpoint
from pipeline.lake.store import ABANDONED_AFTER
from pipeline.lake.warehouse import Warehouse

PUBLISHED_SCHEMAS = ("marts",)
PUBLISHED_RAW_TABLES = ("synced_days", "accounts")


def published_path(data_dir: Path) -> Path:
    return data_dir / "published" / "warehouse.duckdb"


def publish(warehouse: Warehouse, target: Path) -> dict[str, int]:
    """Copy the marts into a fresh file and move it over ``target``; return rows per table."""
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_abandoned(target)
    staging = target.with_name(f".{target.stem}-{uuid.uuid4().hex[:8]}.duckdb")
    rows: dict[str, int] = {}
    try:
        with warehouse.exclusive():
            con = duckdb.connect(str(staging))
            try:
                con.execute("ATTACH ? AS source (READ_ONLY)", [str(warehouse.path)])
                tables = con.execute(
                    "SELECT schema_name, table_name FROM duckdb_tables() "
                    "WHERE database_name = 'source' AND (schema_name IN ? OR "
                    "(schema_name = 'raw' AND table_name IN ?)) ORDER BY ALL",
                    [list(PUBLISHED_SCHEMAS), list(PUBLISHED_RAW_TABLES)],
                ).fetchall()
                for schema, table in tables:
                    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                    con.execute(
                        f'CREATE TABLE "{schema}"."{table}" AS '
                        f'SELECT * FROM source."{schema}"."{table}"'
                    )
                    rows[f"{schema}.{table}"] = con.execute(
                        f'SELECT count(*) FROM "{schema}"."{table}"'
                    ).fetchone()[0]
                con.execute("DETACH source")
                con.execute("CHECKPOINT")
            finally:
                con.close()
        with open(staging, "rb") as handle:
            os.fsync(handle.fileno())
        failpoint("before_publish")
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
        Path(str(staging) + ".wal").unlink(missing_ok=True)
    return rows


def sweep_abandoned(target: Path, older_than: timedelta = ABANDONED_AFTER) -> int:
    """Delete staging copies left beside ``target`` by publishes that died (old enough that no
    live publish can still be writing them). Returns how many files were removed."""
    cutoff = time.time() - older_than.total_seconds()
    removed = 0
    for path in target.parent.glob(f".{target.stem}-*.duckdb*"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed
