"""Dagster's SQLite event log with pooled connections (``dagster-instance.yaml`` selects it).

Dagster's ``SqliteEventLogStorage`` opens a new SQLAlchemy engine and SQLite connection for
every statement group and disposes it right after: an asset event costs ~5 of them (the run's
shard, then the index shard for the event copy, the asset row and its partition tags), and
closing the last connection of a WAL database checkpoints it. A backfill writes two events per
partition and asset key (planned, materialized), so this churn, not the data, made a 90-day
backfill slow (~12 ms an event).

This subclass keeps the same files, schema and statements (an instance made with Dagster's
default storage reads what it wrote and vice versa) and changes two things (besides
remembering which tables and columns exist instead of asking SQLite before every insert):

- connections stay open: the index shard's for the life of the storage, the run shards' for the
  few most recently used runs;
- a batch of events (Dagster hands one over when ``DAGSTER_EVENT_BATCH_SIZE`` is set, which this
  storage does: the planned events of a run, the materializations of an output's partitions) is
  written in one transaction per shard instead of one per statement group. Each event still
  goes through Dagster's own ``store_event``, so the rows are exactly Dagster's
  (``tests/integration/test_dagster_storage.py`` compares the databases); if the batch fails
  nothing of it is kept and Dagster stores the events one by one.

Commits keep SQLite's default ``synchronous`` setting, so what is durable does not change.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dagster._config import Field, StringSource
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME
from dagster._core.storage.sql import create_engine
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

# Run shards whose connections stay open: the run being written plus a few being read.
RUN_SHARDS_KEPT_OPEN = 4
# Dagster passes events to store_event_batch only when DAGSTER_EVENT_BATCH_SIZE is set (it reads
# it per event). The largest batches are a run's planned events: 6 keys x 31 partitions + checks.
EVENT_BATCH_SIZE = "1000"


def default_base_dir() -> str:
    """Where Dagster's default storage keeps the event logs of ``$DAGSTER_HOME``."""
    home = os.environ.get("DAGSTER_HOME", "").strip()
    if not home:
        raise ValueError("DAGSTER_HOME is not set: the event log storage needs a base_dir")
    return os.path.join(os.path.abspath(os.path.expanduser(home)), "history", "runs", "")


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` that reuses its connections (see the module docstring).

    Config: ``base_dir`` (default ``$DAGSTER_HOME/history/runs``, where Dagster's default
    storage puts the event logs)."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        # An engine per shard; the base class serializes all use of them with its _db_lock (a
        # connection is only used by one thread at a time, inside _connect).
        self._index_engine: Engine | None = None
        self._run_engines: OrderedDict[str, Engine] = OrderedDict()
        # While a batch is written: the open connection and transaction of each shard it used.
        self._batch: dict[str, tuple[Connection, Any]] | None = None
        self._asset_key_index_cols = False
        self._tables_seen: set[str] = set()
        super().__init__(base_dir or default_base_dir(), inst_data=inst_data)
        # The process that loads this storage writes its events through it: let Dagster batch.
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
        # Reentrant: a batch holds it while store_event opens its connections.
        self._db_lock = threading.RLock()

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(  # pyright: ignore[reportIncompatibleMethodOverride]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        if shard == INDEX_SHARD_NAME:
            if self._index_engine is None:
                self._index_engine = self._new_engine(shard)
            return self._index_engine
        engine = self._run_engines.get(shard)
        if engine is None:
            engine = self._run_engines[shard] = self._new_engine(shard)
            while len(self._run_engines) > RUN_SHARDS_KEPT_OPEN:
                # Outside a batch none of its connections is checked out (callers hold _db_lock
                # while they use one); a batch's is closed when the batch returns it.
                self._run_engines.popitem(last=False)[1].dispose()
        else:
            self._run_engines.move_to_end(shard)
        return engine

    def _new_engine(self, shard: str) -> Engine:
        # One connection is ever in use at a time (under _db_lock); keep it between uses.
        return create_engine(
            self.conn_string_for_shard(shard), poolclass=QueuePool, pool_size=1, max_overflow=1
        )

    def _ready_engine(self, shard: str) -> Engine:
        engine = self._engine(shard)
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:  # pyright: ignore[reportIncompatibleMethodOverride]
        with self._db_lock:
            if self._batch is not None:
                if shard not in self._batch:
                    conn = self._ready_engine(shard).connect()
                    self._batch[shard] = (conn, conn.begin())
                yield self._batch[shard][0]
                return
            with self._ready_engine(shard).connect() as conn, conn.begin():
                yield conn

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        with self._db_lock:
            if self._batch is not None:  # not expected: store them as part of that batch
                for event in events:
                    self.store_event(event)
                return
            self._batch = {}
            try:
                for event in events:
                    self.store_event(event)
                # The run's shard first (it is written first for each event), then the index.
                for _conn, transaction in self._batch.values():
                    transaction.commit()
            except BaseException:
                for _conn, transaction in self._batch.values():
                    if transaction.is_active:
                        transaction.rollback()
                raise
            finally:
                batch, self._batch = self._batch, None
                for conn, _transaction in batch.values():
                    conn.close()

    def has_table(self, table_name: str) -> bool:
        # Dagster asks before every tags insert (with a new engine and connection each time);
        # tables are only ever added, so once seen they stay.
        if table_name not in self._tables_seen and super().has_table(table_name):
            self._tables_seen.add(table_name)
        return table_name in self._tables_seen

    def has_asset_key_index_cols(self) -> bool:
        # Dagster inspects the asset_keys table for every asset event; columns are only ever
        # added (by `dagster instance migrate`), so once seen they stay.
        if not self._asset_key_index_cols:
            self._asset_key_index_cols = super().has_asset_key_index_cols()
        return self._asset_key_index_cols

    def _dispose_engines(self) -> None:
        with self._db_lock:
            for engine in self._run_engines.values():
                engine.dispose()
            self._run_engines.clear()
            if self._index_engine is not None:
                self._index_engine.dispose()
                self._index_engine = None

    def wipe(self) -> None:
        # Dagster deletes the run shards' files: close their connections first.
        self._dispose_engines()
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self._dispose_engines()
