"""Sync a range of partition days: API pages -> staged Parquet -> lake -> DuckDB ``raw.*``.

Plain Python (no Dagster), so the Dagster asset, the CLI and the tests share one code path.
A range is fetched with one request window (cheaper than one window per day: the window must
overlap neighbouring days to be safe under every reading of the server's date filter), then
every day is committed on its own: its lake folders are swapped in and its rows replaced in
DuckDB in one transaction.
"""

from __future__ import annotations

import logging
import uuid
from array import array
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.evo.client import EvoVoiceClient
from pipeline.evo.sessions import count_window, iter_window_pages, request_window
from pipeline.failpoints import failpoint
from pipeline.lake.flatten import PageStats, SyncContext, flatten_page
from pipeline.lake.store import PARQUET_OPTIONS, Lake, RangeWriter
from pipeline.lake.warehouse import DaySummary, Warehouse, replace_day

log = logging.getLogger(__name__)

DayCallback = Callable[[DaySummary], None]
PageCallback = Callable[[int], None]


_UNKNOWN = -(2**63)


class _Dedup:
    """Which copy of each session id wins: the latest ``dateLastModified``, then the later copy.

    Per copy only 10 bytes are kept (two arrays indexed by ordinal), so a day of 500k sessions
    does not need its rows in memory to be de-duplicated.
    """

    def __init__(self, days: list[date]) -> None:
        self.days = days
        self.winner: dict[str, int] = {}
        self.modified = array("q")
        self.day_index = array("h")
        self.losers: dict[date, list[int]] = defaultdict(list)

    def add(self, sessions: pa.Table, count: int) -> None:
        self.modified.extend([_UNKNOWN] * count)
        self.day_index.extend([-1] * count)
        first = self.days[0]
        columns = (
            sessions["session_id"].to_pylist(),
            sessions["copy_ordinal"].to_pylist(),
            sessions["date_last_modified"].cast(pa.int64()).to_pylist(),
            sessions["partition_date"].to_pylist(),
        )
        for session_id, ordinal, stamp, day in zip(*columns, strict=True):
            self.modified[ordinal] = _UNKNOWN if stamp is None else stamp
            self.day_index[ordinal] = (day - first).days
            previous = self.winner.get(session_id)
            if previous is None:
                self.winner[session_id] = ordinal
                continue
            if self.modified[ordinal] >= self.modified[previous]:
                self.winner[session_id], loser = ordinal, previous
            else:
                loser = ordinal
            self.losers[self.days[self.day_index[loser]]].append(loser)


@dataclass
class RangeOutcome:
    """What a range sync committed, and what it could not."""

    committed: list[DaySummary]
    failed: dict[date, str]


def new_sync_id(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def sync_range(
    client: EvoVoiceClient,
    lake: Lake,
    warehouse: Warehouse,
    first_day: date,
    last_day: date,
    *,
    today: date | None = None,
    on_day: DayCallback | None = None,
    on_page: PageCallback | None = None,
) -> list[DaySummary]:
    """Fetch every session created in ``first_day..last_day`` (in the client's time zone) and
    commit each day. Raises on a fetch failure before any day of the range is touched."""
    zone = client.settings.zone
    now = datetime.now(UTC)
    today = today or now.astimezone(zone).date()
    window = request_window(first_day, last_day, zone)
    days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    ctx = SyncContext(new_sync_id(now), now, zone, first_day, last_day)
    pages_before, retries_before = client.stats.pages, client.stats.retries

    lake.sweep_abandoned()
    recover(lake, warehouse)
    server_total = count_window(client, window, today=today)
    writer = RangeWriter(lake, ctx.sync_id, days)
    dedup = _Dedup(days)
    stats = PageStats()
    # 8 bytes per session copy (a 64-bit hash of its id), counted distinct per store at the end.
    id_hashes: dict[bool, array] = defaultdict(lambda: array("q"))
    ordinal = 0
    try:
        for archive, page in iter_window_pages(client, window, today=today):
            id_hashes[archive].extend(
                hash(i["id"]) for i in page.items if isinstance(i, dict) and i.get("id")
            )
            flat = flatten_page(
                page.items,
                page=page.number,
                search_archive=archive,
                first_ordinal=ordinal,
                ctx=ctx,
            )
            dedup.add(flat.tables["sessions"], len(page.items))
            ordinal += len(page.items)
            stats.merge(flat.stats)
            writer.write(flat)
            failpoint("after_first_page")
            if on_page is not None:
                on_page(flat.tables["sessions"].num_rows)
        staged = writer.finish()
    except BaseException:
        writer.abort()
        raise
    window_distinct = sum(
        len(np.unique(np.frombuffer(h, dtype=np.int64))) for h in id_hashes.values()
    )
    del id_hashes

    def summarize(day: date, files: dict[str, str], removed: int) -> DaySummary:
        return DaySummary(
            partition_date=day,
            sync_id=ctx.sync_id,
            synced_at=now,
            sessions=writer.rows[("sessions", day)] - removed,
            members=_file_rows(lake, files["session_members"]),
            log_rows=_file_rows(lake, files["session_log"]),
            breadcrumbs=_file_rows(lake, files["session_breadcrumbs"]),
            rejected=writer.rows[("rejected_sessions", day)],
            pages=client.stats.pages - pages_before,
            retries=client.stats.retries - retries_before,
            duplicates_removed=removed,
            outside_window=stats.outside_window,
            window_first_day=first_day,
            window_last_day=last_day,
            window_distinct_sessions=window_distinct,
            server_total_count=server_total,
            complete=None if server_total is None else window_distinct >= server_total,
            unknown_fields=dict(stats.unknown_fields),
            unknown_enum_values=dict(stats.unknown_enum_values),
        )

    summaries = []
    try:
        for day in days:
            losers = dedup.losers.get(day, [])
            if losers:
                _drop_copies(lake, staged[day], losers)
        # A day's lake folders and warehouse rows change together: under the writer lock (one
        # connection for the window's days, each day its own transaction), undone here on
        # failure, and by Lake.recover if the process dies midway.
        with warehouse.writer() as con:
            for day in days:
                try:
                    files = lake.publish_day(staged[day], day, ctx.sync_id)
                    summary = summarize(day, files, len(dedup.losers.get(day, [])))
                    replace_day(con, files, summary)
                except BaseException:
                    lake.rollback_day(day, ctx.sync_id)
                    raise
                lake.commit_day(day, ctx.sync_id)
                summaries.append(summary)
                if on_day is not None:
                    on_day(summary)
    finally:
        lake.discard(ctx.sync_id)
    return summaries


def recover(lake: Lake, warehouse: Warehouse) -> int:
    """Undo what syncs that died left half-published in the lake (see :meth:`Lake.recover`), so
    that the lake holds, for every day, the files of the sync the warehouse holds. Returns how
    many days were rolled back."""
    if not lake.has_trash():
        return 0
    with warehouse.exclusive():
        return lake.recover(lambda day, sync_id: warehouse.day_sync_id(day) == sync_id)


def _file_rows(lake: Lake, path: str) -> int:
    with lake.fs.open_input_file(path) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def _drop_copies(lake: Lake, staged: dict[str, str], losers: list[int]) -> None:
    """Rewrite a day's staged files without the copies that lost de-duplication."""
    con = duckdb.connect()
    try:
        con.register("losers", pa.table({"copy_ordinal": pa.array(losers, pa.int64())}))
        for table, directory in staged.items():
            if table == "rejected_sessions":
                continue
            source = f"{directory}/part-0.parquet"
            target = f"{directory}/part-0.parquet.tmp"
            con.execute(
                f"COPY (SELECT * FROM read_parquet('{lake.local_path(source)}') "
                "WHERE copy_ordinal NOT IN (SELECT copy_ordinal FROM losers) ORDER BY copy_ordinal)"
                f" TO '{lake.local_path(target)}' (FORMAT parquet, COMPRESSION "
                f"{PARQUET_OPTIONS['compression']})"
            )
            lake.fs.move(target, source)
    finally:
        con.close()


def sync_days(
    client: EvoVoiceClient,
    lake: Lake,
    warehouse: Warehouse,
    first_day: date,
    last_day: date,
    *,
    days_per_fetch: int,
    parallel_fetches: int,
    today: date | None = None,
    on_day: DayCallback | None = None,
    on_page: PageCallback | None = None,
) -> RangeOutcome:
    """Sync ``first_day..last_day`` in windows of ``days_per_fetch`` days, ``parallel_fetches``
    windows at a time. A window that fails leaves its days untouched and the others go on."""
    windows = []
    start = first_day
    while start <= last_day:
        end = min(last_day, start + timedelta(days=max(1, days_per_fetch) - 1))
        windows.append((start, end))
        start = end + timedelta(days=1)

    committed: list[DaySummary] = []
    failed: dict[date, str] = {}

    def run(window: tuple[date, date]) -> None:
        try:
            committed.extend(
                sync_range(
                    client, lake, warehouse, *window, today=today, on_day=on_day, on_page=on_page
                )
            )
        except Exception as exc:  # one window's failure must not stop the others
            log.warning("sync of %s..%s failed: %s", window[0], window[1], exc)
            day = window[0]
            while day <= window[1]:
                if not any(s.partition_date == day for s in committed):
                    failed[day] = _one_line(exc)
                day += timedelta(days=1)

    if parallel_fetches <= 1 or len(windows) == 1:
        for window in windows:
            run(window)
    else:
        with ThreadPoolExecutor(parallel_fetches, thread_name_prefix="evo-window") as pool:
            list(pool.map(run, windows))
    committed.sort(key=lambda s: s.partition_date)
    return RangeOutcome(committed=committed, failed=dict(sorted(failed.items())))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
