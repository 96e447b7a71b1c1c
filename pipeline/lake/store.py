"""The Parquet lake: ``<lake>/<table>/date=YYYY-MM-DD/part-<sync_id>.parquet``, one file per
table, day and sync.

A re-sync adds its own file beside the one it replaces, and deletes the old one once the
warehouse has committed the day (``raw.synced_days`` names the sync whose files are current, and
the ``raw.*`` views read only those). Readers of the lake outside DuckDB take, in a day's folder,
the file of the sync that ``raw.synced_days`` names; there is more than one only while a sync
publishes, or after one died before it could clean up.

The lake location is URI-shaped (``EVO_LAKE_URI``: a folder today, ``s3://...`` later) and all
file operations go through a ``pyarrow.fs`` filesystem.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.failpoints import failpoint
from pipeline.lake.flatten import FlatPage
from pipeline.lake.schemas import SESSION_TABLES, dictionary_columns

# Row groups of about this many rows: big enough for good zstd and scans (files 2.5% bigger
# than with 32,000), small enough that a day's buffers stay bounded whatever the day's size,
# and that little of the last day is left to compress once its last page is in.
ROW_GROUP_ROWS = 8_000
# Rows buffered for the next row groups, over every (table, day) of a sync: past this, the
# biggest buffers are written out early, so a window of many days stays as small as one day.
BUFFERED_BYTES = 24 * 2**20
# Row groups handed to the compressing thread and not yet written: bounds the memory they hold.
ROW_GROUPS_IN_FLIGHT = 2
# zstd level 1: on session pages as small as level 3 (within 2%), written ~35% faster.
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1}
# A sync's staging folder lives minutes; one this old belongs to a crashed process.
ABANDONED_AFTER = timedelta(hours=6)
# The one file a sync stages per table and day.
STAGED_FILE = "part-0.parquet"
# Where each publishing sync marks the days it has moved files for (see Lake.publish_day).
PENDING = "_pending"
# Where syncs before the per-sync files kept the day folders they replaced, and the marker of
# a folder that did not exist (see Lake._recover_legacy_trash).
LEGACY_TRASH = "_trash"
LEGACY_ABSENT = ".absent"


class Lake:
    """A lake root on some filesystem."""

    def __init__(self, uri: str) -> None:
        if "://" not in uri:
            uri = str(Path(uri).expanduser().resolve())
            Path(uri).mkdir(parents=True, exist_ok=True)
        self.fs, self.root = pafs.FileSystem.from_uri(uri)
        self.uri = uri

    def day_dir(self, table: str, day: date) -> str:
        return f"{self.root}/{table}/date={day.isoformat()}"

    @staticmethod
    def file_name(sync_id: str) -> str:
        return f"part-{sync_id}.parquet"

    def day_file(self, table: str, day: date, sync_id: str) -> str:
        return f"{self.day_dir(table, day)}/{self.file_name(sync_id)}"

    def table_glob(self, table: str) -> str:
        """Every published file of ``table``, as a pattern DuckDB can read."""
        return self.local_path(f"{self.root}/{table}") + "/date=*/*.parquet"

    def has_files(self, table: str) -> bool:
        """Whether ``table_glob`` matches a file (usually decided by the first day folder)."""
        selector = pafs.FileSelector(f"{self.root}/{table}", allow_not_found=True)
        for info in self.fs.get_file_info(selector):
            if info.base_name.startswith("date=") and info.type == pafs.FileType.Directory:
                inside = self.fs.get_file_info(pafs.FileSelector(info.path))
                if any(i.base_name.endswith(".parquet") for i in inside):
                    return True
        return False

    def staging_dir(self, sync_id: str) -> str:
        return f"{self.root}/_staging/{sync_id}"

    def local_path(self, path: str) -> str:
        """A path DuckDB can read (local filesystems only for now)."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            return path
        return f"{self.uri.split('://', 1)[0]}://{path}"

    def pending_dir(self, sync_id: str) -> str:
        return f"{self.root}/{PENDING}/{sync_id}"

    def pending_marker(self, sync_id: str, day: date) -> str:
        return f"{self.pending_dir(sync_id)}/date={day.isoformat()}"

    def publish_day(self, staged: dict[str, str], day: date, sync_id: str) -> dict[str, str]:
        """Move a day's staged files into place beside the files they replace; return the new
        files. Nothing changes for readers yet: ``raw.*`` shows the sync that ``raw.synced_days``
        names, so the day switches over when the warehouse commits that row.

        A marker in ``_pending/<sync_id>`` records the day until :meth:`commit_day` deletes the
        replaced files or :meth:`rollback_day` the new ones, so :meth:`recover` can finish the
        job for a sync that dies in between. Callers hold the warehouse's writer lock.
        """
        self.fs.create_dir(self.pending_dir(sync_id), recursive=True)
        self.fs.open_output_stream(self.pending_marker(sync_id, day)).close()
        final = {}
        for table, staged_dir in staged.items():
            self.fs.create_dir(self.day_dir(table, day), recursive=True)
            final[table] = self.day_file(table, day, sync_id)
            self.fs.move(f"{staged_dir}/{STAGED_FILE}", final[table])
            failpoint("between_lake_swaps")
        return final

    def commit_day(self, day: date, sync_id: str) -> None:
        """Delete the files the sync's files replaced (the warehouse has committed the day)."""
        keep = self.file_name(sync_id)
        for table in SESSION_TABLES:
            for info in self._day_files(table, day):
                if info.base_name != keep:
                    self.fs.delete_file(info.path)
        self._forget(sync_id, day)

    def rollback_day(self, day: date, sync_id: str) -> None:
        """Delete the sync's files of the day (the warehouse did not commit it)."""
        for table in SESSION_TABLES:
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(self.day_file(table, day, sync_id))
            directory = self.day_dir(table, day)
            if not self.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True)):
                with contextlib.suppress(FileNotFoundError, OSError):
                    self.fs.delete_dir(directory)
        self._forget(sync_id, day)

    def has_pending(self) -> bool:
        return any(
            self.fs.get_file_info(pafs.FileSelector(f"{self.root}/{name}", allow_not_found=True))
            for name in (PENDING, LEGACY_TRASH)
        )

    def recover(self, committed: Callable[[date, str], bool]) -> int:
        """Finish the publishes of syncs that died: keep a day the warehouse committed (by that
        sync), roll back any other. Call it holding the warehouse's writer lock, so that no live
        publish is in flight. Returns how many days were rolled back."""
        rolled_back = 0
        pending = pafs.FileSelector(f"{self.root}/{PENDING}", allow_not_found=True)
        for sync in self.fs.get_file_info(pending):
            sync_id = sync.base_name
            markers = self.fs.get_file_info(pafs.FileSelector(sync.path))
            days = sorted(
                date.fromisoformat(m.base_name.removeprefix("date="))
                for m in markers
                if m.base_name.startswith("date=")
            )
            for day in days:
                if committed(day, sync_id):
                    self.commit_day(day, sync_id)
                else:
                    self.rollback_day(day, sync_id)
                    rolled_back += 1
            with contextlib.suppress(FileNotFoundError, OSError):
                self.fs.delete_dir(sync.path)
        return rolled_back + self._recover_legacy_trash(committed)

    def _recover_legacy_trash(self, committed: Callable[[date, str], bool]) -> int:
        """What a sync of the previous layout left when it died: it swapped whole day folders
        and kept the replaced ones in ``_trash/<sync>/<table>/date=D`` (``date=D.absent`` where
        there was none). Put back a day the warehouse did not commit; drop the rest."""
        rolled_back = 0
        trash = pafs.FileSelector(f"{self.root}/{LEGACY_TRASH}", allow_not_found=True)
        for sync in self.fs.get_file_info(trash):
            entries = self.fs.get_file_info(pafs.FileSelector(sync.path, recursive=True))
            kept: dict[date, list[tuple[str, pafs.FileInfo]]] = defaultdict(list)
            for info in entries:
                name = info.base_name.removesuffix(LEGACY_ABSENT)
                if name.startswith("date=") and info.path.count("/") == sync.path.count("/") + 2:
                    table = info.path.rsplit("/", 2)[1]
                    kept[date.fromisoformat(name.removeprefix("date="))].append((table, info))
            for day, tables in sorted(kept.items()):
                if committed(day, sync.base_name):
                    continue
                for table, info in tables:
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.delete_dir(self.day_dir(table, day))
                    if not info.base_name.endswith(LEGACY_ABSENT):
                        self.fs.move(info.path, self.day_dir(table, day))
                rolled_back += 1
            self.fs.delete_dir(sync.path)
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.delete_dir(f"{self.root}/{LEGACY_TRASH}")
        return rolled_back

    def _day_files(self, table: str, day: date) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.day_dir(table, day), allow_not_found=True)
        return [i for i in self.fs.get_file_info(selector) if i.base_name.endswith(".parquet")]

    def _forget(self, sync_id: str, day: date) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.pending_marker(sync_id, day))

    def sweep_abandoned(self, older_than: timedelta = ABANDONED_AFTER) -> int:
        """Delete staging folders left by syncs that crashed (old enough that no live sync can
        still be using them). Returns how many were removed."""
        removed = 0
        cutoff = datetime.now(UTC) - older_than
        selector = pafs.FileSelector(f"{self.root}/_staging", allow_not_found=True)
        for info in self.fs.get_file_info(selector):
            if info.type == pafs.FileType.Directory and info.mtime and info.mtime < cutoff:
                with contextlib.suppress(FileNotFoundError, OSError):
                    self.fs.delete_dir(info.path)
                    removed += 1
        return removed

    def discard(self, sync_id: str) -> None:
        """Delete a sync's staging folder, and its pending folder if every day in it was
        committed or rolled back."""
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.delete_dir(self.staging_dir(sync_id))
        pending = self.pending_dir(sync_id)
        if not self.fs.get_file_info(pafs.FileSelector(pending, allow_not_found=True)):
            with contextlib.suppress(FileNotFoundError, OSError):
                self.fs.delete_dir(pending)


@dataclass
class _Buffer:
    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    nbytes: int = 0
    writer: pq.ParquetWriter | None = None


class RangeWriter:
    """Streams flattened pages into staged Parquet files, one per table and day.

    Memory stays bounded: each (table, day) buffers at most ``ROW_GROUP_ROWS`` rows before the
    buffer is written out as a row group, and all buffers together about ``BUFFERED_BYTES``.
    Row groups are encoded and compressed in a thread of their own (Arrow releases the GIL
    there), in order, at most ``ROW_GROUPS_IN_FLIGHT`` at a time: the syncing thread goes on
    with the next pages meanwhile instead of stopping 10-40 ms for each.
    """

    def __init__(self, lake: Lake, sync_id: str, days: list[date]) -> None:
        self.lake = lake
        self.sync_id = sync_id
        self.days = days
        self._buffers: dict[tuple[str, date], _Buffer] = defaultdict(_Buffer)
        self._buffered_bytes = 0
        self.rows: dict[tuple[str, date], int] = defaultdict(int)
        self._compressing = ThreadPoolExecutor(1, thread_name_prefix="evo-parquet")
        self._in_flight: deque[Future[None]] = deque()

    def staged_dir(self, table: str, day: date) -> str:
        return f"{self.lake.staging_dir(self.sync_id)}/{table}/date={day.isoformat()}"

    def write(self, flat: FlatPage) -> None:
        earliest: date | None = None
        for table_name, table in flat.tables.items():
            if table.num_rows == 0:
                continue
            days = pc.unique(table["partition_date"]).to_pylist()
            if table_name == "sessions":
                earliest = min(days)
            for day in days:
                part = (
                    table
                    if len(days) == 1
                    else table.filter(
                        pc.equal(table["partition_date"], pa.scalar(day, pa.date32()))
                    )
                )
                self._append(table_name, day, part)
        if earliest is not None:
            # Pages are asked for sorted by dateCreated: once a batch holds no session before
            # a day, the earlier days' rows are most likely all in, and compressing them now,
            # while pages are still arriving, takes that work off the end of the sync.
            self.write_out(before=earliest)

    def _append(self, table_name: str, day: date, part: pa.Table) -> None:
        buffer = self._buffers[(table_name, day)]
        buffer.tables.append(part)
        buffer.rows += part.num_rows
        buffer.nbytes += part.nbytes
        self._buffered_bytes += part.nbytes
        self.rows[(table_name, day)] += part.num_rows
        if buffer.rows >= ROW_GROUP_ROWS:
            self._flush(table_name, day, buffer)
        while self._buffered_bytes > BUFFERED_BYTES:
            (name, biggest_day), biggest = max(
                self._buffers.items(), key=lambda item: item[1].nbytes
            )
            if not biggest.nbytes:
                break
            self._flush(name, biggest_day, biggest)

    def _flush(self, table_name: str, day: date, buffer: _Buffer) -> None:
        tables, buffer.tables = buffer.tables, []
        buffer.rows = 0
        self._buffered_bytes -= buffer.nbytes
        buffer.nbytes = 0
        self._in_flight.append(
            self._compressing.submit(self._write_row_group, table_name, day, buffer, tables)
        )
        while len(self._in_flight) > ROW_GROUPS_IN_FLIGHT:
            self._in_flight.popleft().result()

    def _write_row_group(
        self, table_name: str, day: date, buffer: _Buffer, tables: list[pa.Table]
    ) -> None:
        """In the compressing thread: the file is opened with its first row group (or empty)."""
        if buffer.writer is None:
            directory = self.staged_dir(table_name, day)
            self.lake.fs.create_dir(directory, recursive=True)
            buffer.writer = pq.ParquetWriter(
                f"{directory}/{STAGED_FILE}",
                SESSION_TABLES[table_name],
                filesystem=self.lake.fs,
                use_dictionary=dictionary_columns(SESSION_TABLES[table_name]),
                **PARQUET_OPTIONS,
            )
        if tables:
            buffer.writer.write_table(pa.concat_tables(tables), row_group_size=ROW_GROUP_ROWS)
            failpoint("after_first_row_group")

    def _wait_for_row_groups(self) -> None:
        while self._in_flight:
            self._in_flight.popleft().result()

    def write_out(self, before: date | None = None) -> None:
        """Hand the buffered rows to the compressing thread now (only the days before
        ``before``, if given). The files stay open: a row that still comes for such a day
        becomes one more row group."""
        for (table_name, day), buffer in self._buffers.items():
            if buffer.tables and (before is None or day < before):
                self._flush(table_name, day, buffer)

    def finish(self) -> dict[date, dict[str, str]]:
        """Close every file (empty days get empty files) and return the staged folders."""
        staged: dict[date, dict[str, str]] = {}
        for day in self.days:
            for table_name in SESSION_TABLES:
                self._flush(table_name, day, self._buffers[(table_name, day)])
        self._wait_for_row_groups()
        self._compressing.shutdown()
        for day in self.days:
            staged[day] = {}
            for table_name in SESSION_TABLES:
                self._buffers[(table_name, day)].writer.close()
                staged[day][table_name] = self.staged_dir(table_name, day)
        self._buffers.clear()
        return staged

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._wait_for_row_groups()
        self._in_flight.clear()
        self._compressing.shutdown()
        for buffer in self._buffers.values():
            if buffer.writer is not None:
                with contextlib.suppress(Exception):
                    buffer.writer.close()
        self._buffers.clear()
        self.lake.discard(self.sync_id)
