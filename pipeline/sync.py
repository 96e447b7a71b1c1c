"""Sync a range of partition days: API pages -> staged Parquet -> lake -> DuckDB ``raw.*``.

Plain Python (no Dagster), so the Dagster asset, the CLI and the tests share one code path.
A range is fetched with one request window (cheaper than one window per day: the window must
overlap neighbouring days to be safe under every reading of the server's date filter), then
every day is committed on its own: its files are moved into the lake beside the ones they
replace, and one DuckDB transaction on ``raw.synced_days`` switches the ``raw.*`` views to them.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.evo.client import EvoVoiceClient, Page, check_screened, repeated_page
from pipeline.evo.sessions import (
    SESSIONS_PATH,
    count_stores,
    iter_window_pages,
    request_window,
    store_label,
    total_count,
)
from pipeline.failpoints import failpoint
from pipeline.lake import schemas
from pipeline.lake.decode import (
    decode_sessions_page,
    parse_screened_pages,
    screen_sessions_page,
    to_wire,
)
from pipeline.lake.flatten import FlatPage, PageStats, SyncContext, flatten_columnar, flatten_page
from pipeline.lake.store import PARQUET_OPTIONS, STAGED_FILE, Lake, RangeWriter
from pipeline.lake.warehouse import (
    DaySummary,
    Warehouse,
    day_sync_id,
    ensure_raw_schema,
    replace_day,
)

log = logging.getLogger(__name__)

DayCallback = Callable[[DaySummary], None]
PageCallback = Callable[[int], None]


# Sessions per parse and flatten call: Arrow's per-call cost is paid per batch. Once the writer
# opens (the last pages are coming), a batch is flushed as soon as no page waits behind it: what
# is left to do after the last page is then no more than what arrived during the last flush.
FLATTEN_BATCH_ROWS = 2_000
# Seconds of paging left (at the window's rate so far, by the stores' opening counts) when the
# window's writer opens: DuckDB's open (25-45 ms) then overlaps the last pages instead of
# following them, and readers of the warehouse wait that much longer at most (unless the
# server's count is far too low).
OPEN_THE_WRITER_BEFORE_THE_END = 0.1


_COPY_KEYS = pa.schema(
    [
        schemas.SESSIONS.field(name)
        for name in ("session_id", "date_last_modified", "copy_ordinal", "partition_date")
    ]
    + [pa.field("archive", pa.bool_())]
)
_UNSTORED_KEYS = pa.schema([_COPY_KEYS.field("session_id"), _COPY_KEYS.field("archive")])


class _Copies:
    """Every copy of a session the window's pages returned, kept as narrow Arrow columns (tens
    of bytes per copy, no Python object per row) and resolved at the end: which copies lose
    de-duplication, and how many distinct sessions each store returned."""

    def __init__(self) -> None:
        self.stored: list[pa.Table] = []  # the copies staged for a day
        self.unstored: list[pa.Table] = []  # ids of the others (outside the days, rejected)

    def add(self, flat: FlatPage, archive: bool, all_ids: pa.Array | None = None) -> None:
        """Record a flattened page; ``all_ids`` (every item's id) when the page's rows may have
        lost their id on the way (the dict path)."""
        sessions = flat.tables["sessions"]
        self.stored.append(
            sessions.select(_COPY_KEYS.names[:-1]).append_column(
                "archive", pa.repeat(pa.scalar(archive), sessions.num_rows)
            )
        )
        others = flat.unstored_ids if all_ids is None else all_ids
        if others is not None and len(others):
            self.unstored.append(
                pa.table(
                    {"session_id": others, "archive": pa.repeat(pa.scalar(archive), len(others))}
                )
            )

    def resolve(self) -> tuple[dict[date, list[int]], int]:
        """The losing copies' ordinals per day (the latest ``dateLastModified`` wins, then the
        later copy), and the number of distinct non-empty ids summed over the stores read.

        One hash pass over the ids (``value_counts``) finds the repeated ones and, when every
        copy came from one store, the distinct count too; only the repeated ids' copies are
        sorted. 500k copies: about 0.17 s and 40 MB for a moment, where Arrow's
        ``count_distinct`` took 0.37 s and 87 MB (no repeats) and a DuckDB window query 0.33 s
        and 41 MB (repeats); the sync's memory peaks here."""
        stored = _concat(self.stored, _COPY_KEYS)
        unstored = _concat(self.unstored, _UNSTORED_KEYS)
        self.stored, self.unstored = [], []
        ids = stored["session_id"]
        counts = pc.value_counts(ids)
        if unstored.num_rows == 0 and _single_store(stored):
            distinct = _count_non_empty(counts.field("values"))
        else:
            distinct = _distinct_per_store(stored, unstored)
        repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
        if not len(repeated):
            return {}, distinct
        return _losers(stored.filter(pc.is_in(ids, value_set=repeated))), distinct


def _single_store(copies: pa.Table) -> bool:
    if copies.num_rows == 0:
        return True
    bounds = pc.min_max(copies["archive"]).as_py()
    return bounds["min"] == bounds["max"]


def _count_non_empty(distinct_ids: pa.Array) -> int:
    """How many of these distinct ids are neither null nor empty."""
    empty = pc.sum(pc.equal(distinct_ids, "")).as_py() or 0
    return len(distinct_ids) - distinct_ids.null_count - empty


def _distinct_per_store(stored: pa.Table, unstored: pa.Table) -> int:
    """Distinct non-empty ids per store (``searchArchive``), over the staged copies and the
    others, summed."""
    total = 0
    for archive in (False, True):
        chunks = [
            chunk
            for table in (stored, unstored)
            for chunk in table.filter(pc.equal(table["archive"], archive))["session_id"].chunks
        ]
        total += _count_non_empty(pc.unique(pa.chunked_array(chunks, pa.string())))
    return total


def _losers(copies: pa.Table) -> dict[date, list[int]]:
    """Every copy of the repeated ids but the winner, as ordinals per day: ranked by id, then
    ``date_last_modified`` (latest first, missing last), then the later copy first."""
    ranked = copies.sort_by(
        [
            ("session_id", "ascending"),
            ("date_last_modified", "descending"),
            ("copy_ordinal", "descending"),
        ]
    )
    ids = ranked["session_id"]
    previous, current = ids.slice(0, len(ids) - 1), ids.slice(1)
    same_as_previous = pc.or_(
        pc.fill_null(pc.equal(current, previous), False),
        pc.and_(current.is_null(), previous.is_null()),
    )
    lost = ranked.slice(1).filter(same_as_previous)
    by_day: dict[date, list[int]] = {}
    for day, ordinal in zip(
        lost["partition_date"].to_pylist(), lost["copy_ordinal"].to_pylist(), strict=True
    ):
        by_day.setdefault(day, []).append(ordinal)
    return {day: sorted(ordinals) for day, ordinals in by_day.items()}


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _item_id(item: Any) -> str | None:
    value = item.get("id") if isinstance(item, dict) else None
    return None if value is None else str(value)


@dataclass
class RangeOutcome:
    """What a range sync committed, and what it could not."""

    committed: list[DaySummary]
    failed: dict[date, str]


def new_sync_id(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def sync_range(
    client: EvoVoiceClient,
    warehouse: Warehouse,
    first_day: date,
    last_day: date,
    *,
    today: date | None = None,
    on_day: DayCallback | None = None,
    on_page: PageCallback | None = None,
) -> list[DaySummary]:
    """Fetch every session created in ``first_day..last_day`` (in the client's time zone) and
    commit each day to ``warehouse`` and its lake. Raises on a fetch failure before any day of
    the range is touched."""
    lake = warehouse.lake
    zone = client.settings.zone
    now = datetime.now(UTC)
    today = today or now.astimezone(zone).date()
    window = request_window(first_day, last_day, zone)
    days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    ctx = SyncContext(new_sync_id(now), now, zone, first_day, last_day)
    pages_before, retries_before = client.stats.pages, client.stats.retries

    started = time.monotonic()
    lake.sweep_abandoned()
    recover(warehouse)
    store_counts = count_stores(client, window, today=today)
    server_total = total_count(store_counts)
    writer = RangeWriter(lake, ctx.sync_id, days)
    copies = _Copies()
    stats = PageStats()
    ordinal = 0
    batch: list[Page] = []
    batch_rows = 0
    last_ids: dict[bool, tuple[int, pa.Array]] = {}  # per store: the last page flushed

    def stage(flat: FlatPage, archive: bool, all_ids: pa.Array | None = None) -> None:
        copies.add(flat, archive, all_ids)
        stats.merge(flat.stats)
        writer.write(flat)
        failpoint("after_first_page")
        if on_page is not None:
            on_page(flat.tables["sessions"].num_rows)

    def stage_items(items: list[Any], page: int, archive: bool) -> None:
        nonlocal ordinal
        flat = flatten_page(
            items, page=page, search_archive=archive, first_ordinal=ordinal, ctx=ctx
        )
        ordinal += len(items)
        stage(flat, archive, pa.array([_item_id(i) for i in items], pa.string()))

    def flush(archive: bool) -> None:
        nonlocal ordinal, batch_rows
        if not batch:
            return
        pages = list(batch)
        batch.clear()
        batch_rows = 0
        label = store_label(window, archive)
        arrays, rows, by_dict = _decode_batch(client, pages, what=label)
        if arrays:
            sessions = to_wire(arrays)
            last_ids[archive] = _check_not_repeated(
                rows, sessions.field("id"), last_ids.get(archive), what=label
            )
            numbers = pa.array(np.repeat([p.number for p, _ in rows], [n for _, n in rows]))
            flat = flatten_columnar(sessions, numbers, first_ordinal=ordinal, ctx=ctx)
            if flat is None:  # a session is rejected: its page goes the dict way, which says why
                for p, _ in rows:
                    stage_items(orjson.loads(p.body).get("items") or [], p.number, archive)
            else:
                ordinal += len(sessions)
                stage(flat, archive)
        for p in by_dict:
            stage_items(p.items, p.number, archive)

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

    # The window's writer connection (under the writer lock) is opened in the background as the
    # last pages come in, or at the latest while the stores' closing counts are asked; it is
    # closed after the last day is committed, or before a store is read again.
    current_store = False
    sessions_read = 0  # screened pages count as full until parsed: only for ends_soon
    page_size = client.settings.page_size

    def prepare_commit() -> None:
        """Every page is in and only the closing counts are on the wire: spend that round trip
        on what the commit needs either way. The buffered rows are compressed while the
        warehouse opens; if a count changed, the store is read again, and its rows become more
        row groups of the same files."""
        opening.start()
        flush(current_store)
        writer.write_out()

    summaries = []
    with _WriterOpening(warehouse) as opening:
        try:
            for archive, page in iter_window_pages(
                client,
                window,
                today=today,
                decoder=screen_sessions_page,
                counts_before=store_counts,
                while_counting=prepare_commit,
                # A store is read again one request at a time: readers must not wait for that.
                before_reading_again=opening.close,
            ):
                if archive != current_store:
                    flush(current_store)
                    current_store = archive
                sessions_read += page.count if page.count is not None else page_size
                if not opening.started and ends_soon(
                    server_total, sessions_read, time.monotonic() - started
                ):
                    opening.start()
                if page.columns is not None or page.screened:
                    batch.append(page)
                    batch_rows += page.count if page.count is not None else page_size
                    if batch_rows >= FLATTEN_BATCH_ROWS or (opening.started and not page.next_in):
                        flush(archive)
                    continue
                flush(archive)
                stage_items(page.items, page.number, archive)
            flush(current_store)
            staged = writer.finish()
        except BaseException:
            writer.abort()
            raise
        losers, window_distinct = copies.resolve()
        try:
            for day in days:
                if losers.get(day):
                    _drop_copies(lake, staged[day], losers[day])
            # A day's files and its raw.synced_days row change together: under the writer lock
            # (one connection for the window's days, each day its own transaction), undone here
            # on failure, and by Lake.recover if the process dies midway.
            connection = opening.connection()
            for day in days:
                try:
                    files = lake.publish_day(staged[day], day, ctx.sync_id)
                    summary = summarize(day, files, len(losers.get(day, [])))
                    replace_day(connection, lake, summary, check_views=not summaries)
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


def _decode_batch(
    client: EvoVoiceClient, pages: list[Page], *, what: str
) -> tuple[list[pa.StructArray], list[tuple[Page, int]], list[Page]]:
    """A batch's sessions as Arrow arrays, with the page and session count of their rows in
    order, and the pages only the dict path takes (parsed as dicts).

    Pages come decoded by the paging threads, or screened there and parsed here, all in one
    call; a batch that call cannot take is parsed a page at a time, to find which pages take
    the dict path. A screened page whose paging facts (empty? more pages?) disagree with its
    parse fails the window: the paging already acted on them."""
    arrays = [p.columns for p in pages if p.columns is not None]
    rows = [(p, p.count or 0) for p in pages if p.columns is not None]
    screened = [p for p in pages if p.screened]
    if not screened:
        return arrays, rows, []
    parsed = parse_screened_pages([p.body for p in screened])
    if parsed is not None:
        for page, count, more in zip(screened, parsed.counts, parsed.has_more_pages, strict=True):
            check_screened(page, count == 0, more, path=SESSIONS_PATH, what=what)
        arrays.append(parsed.sessions)
        rows.extend(zip(screened, parsed.counts, strict=True))
        return arrays, rows, []
    by_dict = []
    for page in screened:
        one = decode_sessions_page(page.body)
        if one is None:
            by_dict.append(client.parse_screened_page(page, path=SESSIONS_PATH, what=what))
            continue
        check_screened(page, not one.ids, one.has_more_pages, path=SESSIONS_PATH, what=what)
        arrays.append(one.columns)
        rows.append((page, len(one.ids)))
    return arrays, rows, by_dict


def _check_not_repeated(
    rows: list[tuple[Page, int]],
    ids: pa.Array,
    previous: tuple[int, pa.Array] | None,
    *,
    what: str,
) -> tuple[int, pa.Array]:
    """Fail on a page that repeats the one before it by its ids (a server ignoring ``page``).
    The paging threads compare screened pages by their bytes, which differ when any of their
    sessions changed in between, as they do on a busy day. Returns the last page's ids."""
    by_number: dict[int, tuple[Page | None, pa.Array]] = {}
    if previous is not None:
        by_number[previous[0]] = (None, previous[1])
    start = 0
    for page, count in rows:
        by_number[page.number] = (page, ids.slice(start, count))
        start += count
    for number, (page, page_ids) in by_number.items():
        before = by_number.get(number - 1)
        if page is None or before is None or not len(page_ids) or page.is_last:
            continue
        if page_ids.equals(before[1]):
            raise repeated_page(SESSIONS_PATH, what, number)
    last = max(number for number, (page, _) in by_number.items() if page is not None)
    return last, by_number[last][1]


class _WriterOpening:
    """A window's warehouse writer connection, opened in a background thread: DuckDB's open
    (25-45 ms, most of it without the GIL) then overlaps the syncing thread's work on the last
    pages instead of stopping it. The connection is closed by whichever thread ends the
    window (``Warehouse.writer``'s lock allows that)."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="evo-writer")
        self._stack = contextlib.ExitStack()
        self._opened: Future[duckdb.DuckDBPyConnection] | None = None

    @property
    def started(self) -> bool:
        return self._opened is not None

    def start(self) -> None:
        if self._opened is None:
            self._opened = self._thread.submit(self._stack.enter_context, self._warehouse.writer())

    def connection(self) -> duckdb.DuckDBPyConnection:
        self.start()
        return self._opened.result()

    def close(self) -> None:
        """Close the connection and release the lock, once an open in progress is done."""
        if self._opened is not None:
            with contextlib.suppress(Exception):  # a failed open holds nothing
                self._opened.result()
            self._opened = None
        self._stack.close()

    def __enter__(self) -> _WriterOpening:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        finally:
            self._thread.shutdown()


def ends_soon(server_total: int | None, sessions_read: int, seconds: float) -> bool:
    """Whether the sessions the counts leave to read take under
    ``OPEN_THE_WRITER_BEFORE_THE_END`` at the rate of the first ``seconds``."""
    if server_total is None or sessions_read <= 0:
        return False
    left = server_total - sessions_read
    return left > 0 and left * seconds / sessions_read <= OPEN_THE_WRITER_BEFORE_THE_END


def recover(warehouse: Warehouse) -> int:
    """Finish what syncs that died left half-published in the lake (see :meth:`Lake.recover`),
    so that every day folder holds only the files of the sync ``raw.synced_days`` names. Returns
    how many days were rolled back."""
    lake = warehouse.lake
    if not lake.has_pending():
        return 0
    with warehouse.writer() as con:  # its lock: no live publish is in flight
        rolled_back = lake.recover(lambda day, sync_id: day_sync_id(con, day) == sync_id)
        if rolled_back:
            ensure_raw_schema(con, lake)  # re-point the views: a table may have no file left
    return rolled_back


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
            source = f"{directory}/{STAGED_FILE}"
            target = f"{source}.tmp"
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
                sync_range(client, warehouse, *window, today=today, on_day=on_day, on_page=on_page)
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
