"""The warehouse writer a sync opens ahead, while its last pages are on the way: it holds the
same lock as ``Warehouse.writer``, never waits for it early, and lets it go on every path."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from filelock import FileLock, Timeout

from pipeline.emulator import run_emulator
from pipeline.lake.warehouse import Warehouse
from pipeline.sync import sync_range
from tests.conftest import NOW, make_client
from tests.reliability.helpers import emulator_config


def lock_is_free(warehouse: Warehouse) -> bool:
    """Whether another holder (its own file handle, as another process has) could take it."""
    other = FileLock(str(warehouse.path) + ".lock")
    try:
        other.acquire(blocking=False)
    except Timeout:
        return False
    other.release()
    return True


@contextmanager
def held_elsewhere(warehouse: Warehouse) -> Iterator[threading.Event]:
    """The writer lock held by another holder until the yielded event is set."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with FileLock(str(warehouse.path) + ".lock"):
            taken.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait(10)
    try:
        yield release
    finally:
        release.set()
        holder.join()


def test_started_ahead_it_holds_the_lock_and_gives_the_writer_connection(warehouse):
    with warehouse.writer_ahead() as ahead:
        ahead.start()
        assert not lock_is_free(warehouse)
        con = ahead.connection()
        assert con.execute("SELECT count(*) FROM raw.synced_days").fetchone() == (0,)
    assert lock_is_free(warehouse)
    with warehouse.writer() as con:  # the connection was closed: the file opens again
        assert con.execute("SELECT count(*) FROM raw.sessions").fetchone() == (0,)


def test_it_does_not_wait_for_a_busy_lock_until_the_connection_is_needed(warehouse):
    with held_elsewhere(warehouse) as release, warehouse.writer_ahead() as ahead:
        started = time.monotonic()
        ahead.start()  # a dbt build is writing: no waiting while pages are coming
        assert time.monotonic() - started < 1
        threading.Timer(0.3, release.set).start()
        waited = time.monotonic()
        ahead.connection()
        assert time.monotonic() - waited >= 0.2  # it waited for the other holder
        assert not lock_is_free(warehouse)
    assert lock_is_free(warehouse)


def test_a_failed_open_lets_the_lock_go(warehouse):
    warehouse.path.write_bytes(b"not a DuckDB file" * 100)
    with pytest.raises(Exception, match=r"(?i)duckdb|database"), warehouse.writer_ahead() as ahead:
        ahead.start()
        ahead.connection()
    assert lock_is_free(warehouse)


def test_a_sync_opens_the_warehouse_before_its_last_page(lake, warehouse, monkeypatch):
    """With the stores' counts known, the lock is taken while the last pages are still being
    read (``on_page`` runs as each batch of pages is staged: here every 200 sessions)."""
    monkeypatch.setattr("pipeline.sync.FLATTEN_BATCH_ROWS", 200)
    day = NOW.date() - timedelta(days=3)
    locked_at_page: list[bool] = []
    with (
        run_emulator(emulator_config(sessions_per_day=3000)) as emulator,
        make_client(emulator, page_size=50, concurrency=2) as client,
    ):
        sync_range(
            client,
            lake,
            warehouse,
            day,
            day,
            on_page=lambda _: locked_at_page.append(not lock_is_free(warehouse)),
        )
    assert len(locked_at_page) >= 3
    assert not locked_at_page[0]
    assert locked_at_page[-1]
    assert lock_is_free(warehouse)
