"""The ``raw.*`` session views over the lake: they show exactly the syncs ``raw.synced_days``
names, skip other days' files unopened, and keep their columns whatever the lake holds."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.emulator import run_emulator
from pipeline.lake.store import Lake
from pipeline.lake.warehouse import LEGACY_SCHEMA, SESSION_RAW_TABLES, Warehouse, replace_day
from pipeline.sync import new_sync_id, recover, sync_range
from tests.conftest import NOW, make_client
from tests.reliability.helpers import emulator_config

DAYS = [NOW.date() - timedelta(days=n) for n in (4, 3)]


def columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in con.execute(f"DESCRIBE raw.{table}").fetchall()]


def sessions_of(warehouse: Warehouse) -> set[tuple[str, str]]:
    with warehouse.reader() as con:
        return set(con.execute("SELECT session_id, sync_id FROM raw.sessions").fetchall())


@pytest.fixture(scope="module")
def emulator():
    with run_emulator(emulator_config(sessions_per_day=30)) as emulator:
        yield emulator


def test_views_before_any_file_have_the_columns_of_the_views_over_files(lake, warehouse, emulator):
    with warehouse.writer() as con:
        empty = {table: columns(con, table) for table in SESSION_RAW_TABLES}
        assert con.execute("SELECT count(*) FROM raw.sessions").fetchone() == (0,)
    with make_client(emulator) as client:
        sync_range(client, warehouse, DAYS[0], DAYS[0])
    with warehouse.reader() as con:
        assert {table: columns(con, table) for table in SESSION_RAW_TABLES} == empty
        assert con.execute("SELECT count(*) FROM raw.sessions").fetchone()[0] > 0


def test_a_published_day_shows_only_once_its_sync_is_committed(lake, warehouse, emulator):
    with make_client(emulator) as client:
        (committed,) = sync_range(client, warehouse, DAYS[0], DAYS[0])
    before = sessions_of(warehouse)
    assert {sync for _, sync in before} == {committed.sync_id}

    # A second sync's files, published but not committed: readers still see the first sync.
    newer = new_sync_id(NOW)
    for table in SESSION_RAW_TABLES:
        rows = pq.read_table(lake.day_file(table, DAYS[0], committed.sync_id))
        rows = rows.set_column(
            rows.schema.get_field_index("sync_id"),
            "sync_id",
            pa.array([newer] * rows.num_rows, pa.string()),
        )
        pq.write_table(rows, lake.day_file(table, DAYS[0], newer))
    assert sessions_of(warehouse) == before

    with warehouse.writer() as con:
        committed.sync_id = newer
        replace_day(con, lake, committed)
    assert sessions_of(warehouse) == {(session, newer) for session, _ in before}


def test_a_filter_on_the_day_opens_only_that_days_files(lake, warehouse, emulator):
    with make_client(emulator) as client:
        first, second = sync_range(client, warehouse, DAYS[0], DAYS[1])
    # Corrupt the second day's file: a query on the first day must never open it.
    with open(lake.day_file("sessions", DAYS[1], second.sync_id), "wb") as handle:
        handle.write(b"not parquet")
    with warehouse.reader() as con:
        count = con.execute(
            "SELECT count(*) FROM raw.sessions WHERE partition_date = ?", [DAYS[0]]
        ).fetchone()[0]
        assert count == first.sessions > 0
        with pytest.raises(duckdb.Error):
            con.execute("SELECT count(*) FROM raw.sessions").fetchone()


def test_views_follow_the_lake_when_the_data_folder_moves(tmp_path, emulator):
    old = tmp_path / "old"
    lake = Lake(str(old / "lake"))
    with make_client(emulator) as client:
        sync_range(client, Warehouse(old / "warehouse.duckdb", lake), DAYS[0], DAYS[0])
    new = tmp_path / "new"
    shutil.move(old, new)
    moved = Warehouse(new / "warehouse.duckdb", Lake(str(new / "lake")))
    with moved.writer():  # every writer re-points the views at its lake
        pass
    assert len(sessions_of(moved)) > 0


def test_a_warehouse_from_before_the_views_keeps_its_tables_aside(lake, warehouse, emulator):
    with make_client(emulator) as client:
        sync_range(client, warehouse, DAYS[0], DAYS[0])
    rows = sessions_of(warehouse)
    # The older layout: the session tables were copies of the lake inside DuckDB.
    with duckdb.connect(str(warehouse.path)) as con:
        for table in SESSION_RAW_TABLES:
            con.execute(f"CREATE TABLE raw.copy AS SELECT * FROM raw.{table}")
            con.execute(f"DROP VIEW raw.{table}")
            con.execute(f"ALTER TABLE raw.copy RENAME TO {table}")
    with warehouse.writer():
        pass
    with warehouse.reader() as con:
        kinds = con.execute(
            "SELECT DISTINCT table_type FROM information_schema.tables "
            "WHERE table_schema = 'raw' AND table_name IN ?",
            [list(SESSION_RAW_TABLES)],
        ).fetchall()
        assert kinds == [("VIEW",)]
        kept = con.execute(f"SELECT session_id, sync_id FROM {LEGACY_SCHEMA}.sessions").fetchall()
    assert set(kept) == rows == sessions_of(warehouse)


def test_a_sync_of_the_previous_layout_that_died_is_put_back(lake, warehouse, emulator):
    """The previous layout swapped whole day folders and kept the replaced ones in
    ``_trash/<sync>``: recovery still puts them back for a sync the warehouse never committed."""
    with make_client(emulator) as client:
        sync_range(client, warehouse, DAYS[0], DAYS[0])
    before = sessions_of(warehouse)
    root, dead = Path(lake.root), "20261128T000000Z-deadbeef"

    def dead_sync_folder(table: str, day, rows: pa.Table) -> None:
        folder = root / table / f"date={day}"
        folder.mkdir(parents=True)
        rows = rows.set_column(
            rows.schema.get_field_index("sync_id"), "sync_id", pa.array([dead] * len(rows))
        )
        pq.write_table(rows, folder / "part-0.parquet")

    # Died between two swaps of DAYS[0]: sessions swapped, the other tables not yet.
    kept = root / "_trash" / dead / "sessions" / f"date={DAYS[0]}"
    kept.parent.mkdir(parents=True)
    shutil.move(root / "sessions" / f"date={DAYS[0]}", kept)
    dead_sync_folder("sessions", DAYS[0], pq.read_table(next(kept.glob("*.parquet"))))
    # ... after publishing DAYS[1], a day the lake did not have.
    (root / "_trash" / dead / "sessions" / f"date={DAYS[1]}.absent").touch()
    dead_sync_folder("sessions", DAYS[1], pq.read_table(next(kept.glob("*.parquet"))))
    assert sessions_of(warehouse) == set()  # the dead sync's rows never show

    assert recover(warehouse) == 2
    assert sessions_of(warehouse) == before
    assert not (root / "_trash").exists()
    assert not (root / "sessions" / f"date={DAYS[1]}").exists()


def test_a_writer_opened_in_one_thread_closes_in_another_and_excludes_others(tmp_path):
    """A sync opens its writer in the background and closes it from the syncing thread: the
    lock must go with the connection, and still keep other writers (even in this process)
    out while it is held."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from filelock import Timeout

    warehouse = Warehouse(tmp_path / "w.duckdb", Lake(str(tmp_path / "lake")), lock_timeout=0.2)
    opening = warehouse.writer()
    with ThreadPoolExecutor(1) as pool:
        con = pool.submit(opening.__enter__).result()
    con.execute("SELECT 1")
    other = ThreadPoolExecutor(1)
    with pytest.raises(Timeout):
        other.submit(lambda: warehouse.writer().__enter__()).result()
    assert threading.current_thread() is threading.main_thread()
    opening.__exit__(None, None, None)  # closed by the thread that did not open it
    with warehouse.writer() as again:
        assert again.execute("SELECT count(*) FROM raw.synced_days").fetchone() == (0,)
    other.shutdown()
