"""Turn one page of SessionInfo JSON objects into Arrow tables, routed to partition days.

The fast path converts a whole page with ``pa.array(items, type=SESSION_WIRE)`` (C++), then
derives every column with Arrow compute. Only a page that the fast path cannot take (a wrong
type, an unparseable timestamp) goes through the pydantic contract row by row; rows the
contract rejects become ``rejected_sessions`` rows carrying the reason and the raw JSON.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from pipeline.evo.models import (
    KNOWN_ENUM_VALUES,
    KNOWN_MEMBER_ENUM_VALUES,
    MEMBER_API_FIELDS,
    SESSION_API_FIELDS,
    SESSION_SCALAR_FIELDS,
    SessionInfo,
)
from pipeline.evo.timestamps import parse_timestamp
from pipeline.lake import schemas

_camel = functools.cache(to_camel)
_SNAKE = {to_camel(name): name for name in SESSION_SCALAR_FIELDS}
_SNAKE_MEMBER = {to_camel(name): name for name, _ in schemas.MEMBER_FIELDS}
_CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)
# A session created this many days before or after the days synced cannot have been returned
# for their request window under any reading of its date filter (see pipeline/evo/sessions.py):
# its dateCreated is wrong (e.g. .NET's 0001-01-01), so it is rejected rather than dropped.
ROUTABLE_MARGIN_DAYS = 3


@dataclass(frozen=True)
class SyncContext:
    """What every row of one sync carries, and which days it keeps."""

    sync_id: str
    synced_at: datetime
    zone: ZoneInfo
    first_day: date
    last_day: date


@dataclass
class PageStats:
    """What was seen on the pages so far; merged into a day's materialization metadata."""

    unknown_fields: Counter[str] = field(default_factory=Counter)
    unknown_enum_values: Counter[str] = field(default_factory=Counter)
    outside_window: int = 0
    rejected: int = 0
    slow_pages: int = 0

    def merge(self, other: PageStats) -> None:
        self.unknown_fields.update(other.unknown_fields)
        self.unknown_enum_values.update(other.unknown_enum_values)
        self.outside_window += other.outside_window
        self.rejected += other.rejected
        self.slow_pages += other.slow_pages


@dataclass
class FlatPage:
    """One page's rows, each table with a ``partition_date`` column, plus what was seen."""

    tables: dict[str, pa.Table]
    stats: PageStats
    # Ids of the sessions not in ``tables["sessions"]`` (outside the days, or rejected).
    unstored_ids: pa.Array | None = None


def flatten_page(
    items: Sequence[Any],
    *,
    page: int,
    search_archive: bool,
    first_ordinal: int,
    ctx: SyncContext,
) -> FlatPage:
    """Flatten one page; ``first_ordinal`` numbers the copies so duplicates can be resolved."""
    stats = PageStats()
    rejected: list[dict[str, Any]] = []
    sessions, kept = _convert(items, stats, rejected)
    _reject_unserializable(items, kept, rejected)
    flat = _flatten(sessions, kept, rejected, stats, items, page, first_ordinal, ctx)
    assert flat is not None  # the dict path can always say why a row was rejected
    flat.tables["rejected_sessions"] = _rejected_table(rejected, items, page, search_archive, ctx)
    return flat


def flatten_columnar(
    sessions: pa.StructArray, pages: pa.Array, *, first_ordinal: int, ctx: SyncContext
) -> FlatPage | None:
    """Flatten sessions already decoded to ``SESSION_WIRE`` (see :mod:`pipeline.lake.decode`),
    several pages at once (``pages``: each row's page number).

    Returns None when any session would be rejected: a rejected row keeps its raw JSON, which
    only the dict path has, so the caller flattens those pages with :func:`flatten_page`.
    Decoded pages hold no unknown fields, so ``extra_fields`` is null throughout.
    """
    stats = PageStats()
    flat = _flatten(sessions, [True] * len(sessions), [], stats, None, pages, first_ordinal, ctx)
    if flat is not None:
        flat.tables["rejected_sessions"] = schemas.REJECTED_SESSIONS.empty_table()
    return flat


def _flatten(
    sessions: pa.StructArray,
    kept: list[bool],
    rejected: list[dict[str, Any]],
    stats: PageStats,
    items: Sequence[Any] | None,
    page: int | pa.Array,
    first_ordinal: int,
    ctx: SyncContext,
) -> FlatPage | None:
    _reject_null_elements(sessions, kept, rejected)

    timestamps = {}
    for name in schemas.TIMESTAMP_FIELDS:
        timestamps[name] = _parse_timestamps(sessions.field(_camel(name)), name, rejected, kept)
    log_struct = sessions.field("log")
    log_dates = _parse_timestamps(
        pc.struct_field(pc.list_flatten(log_struct), "date"),
        "log.date",
        rejected,
        kept,
        parents=pc.list_parent_indices(log_struct),
    )

    ids = sessions.field("id")
    missing_id = pc.fill_null(pc.equal(pc.utf8_length(ids), 0), True)
    for index in np.flatnonzero(missing_id.to_numpy(zero_copy_only=False)):
        if kept[index]:
            _reject(rejected, kept, int(index), "session has no id")
    created = timestamps["date_created"]
    for index in np.flatnonzero(created.is_null().to_numpy(zero_copy_only=False)):
        if kept[index]:
            _reject(rejected, kept, int(index), "dateCreated is missing")

    local_day = pc.cast(
        pc.local_timestamp(pc.cast(created, pa.timestamp("us", str(ctx.zone)))), pa.date32()
    )
    margin = timedelta(days=ROUTABLE_MARGIN_DAYS)
    unroutable = pc.or_(
        pc.less(local_day, pa.scalar(ctx.first_day - margin, pa.date32())),
        pc.greater(local_day, pa.scalar(ctx.last_day + margin, pa.date32())),
    )
    for index in np.flatnonzero(pc.fill_null(unroutable, False).to_numpy(zero_copy_only=False)):
        if kept[index]:
            stamp = created[int(index)].as_py()
            _reject(
                rejected,
                kept,
                int(index),
                f"dateCreated {stamp.isoformat()} is more than {ROUTABLE_MARGIN_DAYS} days outside "
                f"the days synced ({ctx.first_day}..{ctx.last_day}); not routed to any day",
            )
    if items is None and rejected:
        return None
    in_window = pc.and_(
        pc.greater_equal(local_day, pa.scalar(ctx.first_day, pa.date32())),
        pc.less_equal(local_day, pa.scalar(ctx.last_day, pa.date32())),
    )
    keep_mask = pa.array(kept, pa.bool_())
    in_window = pc.fill_null(in_window, False)
    stats.outside_window = int(pc.sum(pc.and_(keep_mask, pc.invert(in_window))).as_py() or 0)
    keep = pc.and_(keep_mask, in_window)

    count = len(sessions)
    ordinals = pa.array(np.arange(first_ordinal, first_ordinal + count, dtype=np.int64))
    lineage = _lineage(local_day, ordinals, ctx)
    session_table = _sessions_table(sessions, timestamps, items, kept, page, lineage, stats)
    tables = {
        "sessions": session_table.filter(keep),
        "session_members": _members_table(sessions, items, kept, lineage, stats, keep),
        "session_log": _log_table(sessions, log_dates, lineage, keep),
        "session_breadcrumbs": _breadcrumbs_table(sessions, lineage, keep),
    }
    for api_name, known in KNOWN_ENUM_VALUES.items():
        _count_unknown_enums(tables["sessions"][_SNAKE[api_name]], api_name, known, stats)
    for api_name, known in KNOWN_MEMBER_ENUM_VALUES.items():
        column = tables["session_members"][_SNAKE_MEMBER[api_name]]
        _count_unknown_enums(column, f"members.{api_name}", known, stats)
    stats.rejected = len(rejected)
    return FlatPage(tables=tables, stats=stats, unstored_ids=ids.filter(pc.invert(keep)))


# -- conversion -------------------------------------------------------------------------------


def _convert(
    items: Sequence[Any], stats: PageStats, rejected: list[dict[str, Any]]
) -> tuple[pa.StructArray, list[bool]]:
    if all(type(item) is dict for item in items):
        try:
            return pa.array(items, type=schemas.SESSION_WIRE), [True] * len(items)
        except _CONVERSION_ERRORS:
            pass
    stats.slow_pages += 1
    kept = [True] * len(items)
    normalised: list[dict[str, Any] | None] = []
    for index, item in enumerate(items):
        row = _normalise(item)
        if isinstance(row, str):
            _reject(rejected, kept, index, row)
            normalised.append(None)
            continue
        try:
            pa.array([row], type=schemas.SESSION_WIRE)
        except _CONVERSION_ERRORS as exc:
            _reject(rejected, kept, index, f"cannot store session: {_short(exc)}")
            normalised.append(None)
            continue
        normalised.append(row)
    return pa.array(normalised, type=schemas.SESSION_WIRE), kept


def _normalise(item: Any) -> dict[str, Any] | str:
    """A row through the pydantic contract, or the reason it was rejected."""
    if not isinstance(item, dict):
        return f"item is {type(item).__name__}, not an object"
    try:
        model = SessionInfo.model_validate(item)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg'].removeprefix('Value error, ')}"[:300]
    try:
        row = model.model_dump(mode="json", by_alias=True)
        for member in row.get("members") or []:
            data = member.get("applicationData")
            if isinstance(data, dict):
                # Keep nested junk as JSON text rather than dropping it.
                member["applicationData"] = {
                    str(k): v if isinstance(v, str) or v is None else orjson.dumps(v).decode()
                    for k, v in data.items()
                }
    except (ValueError, TypeError, RecursionError) as exc:  # nested too deeply to store
        return f"cannot store session: {_short(exc)}"
    return row


def _reject_null_elements(
    sessions: pa.StructArray, kept: list[bool], rejected: list[dict[str, Any]]
) -> None:
    """A ``null`` inside ``members``, ``log`` or ``customerBreadcrumb``: the contract (the slow
    path) refuses it, so the fast path must too."""
    for api_name in ("customerBreadcrumb", "log", "members"):
        lists = sessions.field(api_name)
        nulls = pc.list_flatten(lists).is_null()
        if not pc.any(nulls).as_py():
            continue
        parents = pc.list_parent_indices(lists).to_numpy()
        offsets = lists.offsets.to_numpy()
        for index in np.flatnonzero(nulls.to_numpy(zero_copy_only=False)):
            row = int(parents[index])
            if kept[row]:
                position = int(index + offsets[0] - offsets[row])
                _reject(rejected, kept, row, f"{api_name}.{position}: element is null")


def _reject_unserializable(items: Sequence[Any], kept: list[bool], rejected: list) -> None:
    """Reject rows that cannot be written back as JSON (nested deeper than orjson writes), so
    that storing their unknown fields as JSON text later cannot fail the page."""
    try:
        orjson.dumps(list(items))
        return
    except TypeError:
        pass
    for index, item in enumerate(items):
        if kept[index]:
            try:
                orjson.dumps(item)
            except TypeError as exc:
                _reject(rejected, kept, index, f"cannot store session: {_short(exc)}")


def _reject(rejected: list[dict[str, Any]], kept: list[bool], index: int, reason: str) -> None:
    kept[index] = False
    rejected.append({"index": index, "reason": reason})


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


def _parse_timestamps(
    text: pa.Array,
    name: str,
    rejected: list[dict[str, Any]],
    kept: list[bool],
    parents: pa.Array | None = None,
) -> pa.Array:
    """Cast ISO-8601 text to UTC microseconds; other shapes go through :func:`parse_timestamp`,
    and a value nobody can parse rejects its session."""
    try:
        return pc.cast(pc.cast(text, pa.timestamp("ns", tz="UTC")), schemas.TIMESTAMP, safe=False)
    except _CONVERSION_ERRORS:
        pass
    values = []
    parent_of = parents.to_pylist() if parents is not None else None
    for index, value in enumerate(text.to_pylist()):
        try:
            values.append(parse_timestamp(value))
        except (ValueError, OverflowError) as exc:
            row = parent_of[index] if parent_of is not None else index
            if kept[row]:
                _reject(rejected, kept, row, f"{to_camel(name)}: {exc}")
            values.append(None)
    return pa.array(values, type=schemas.TIMESTAMP)


# -- tables -----------------------------------------------------------------------------------


def _lineage(local_day: pa.Array, ordinals: pa.Array, ctx: SyncContext) -> dict[str, pa.Array]:
    count = len(ordinals)
    return {
        "partition_date": local_day,
        "sync_id": pa.repeat(pa.scalar(ctx.sync_id, pa.string()), count),
        "synced_at": pa.repeat(pa.scalar(ctx.synced_at, schemas.TIMESTAMP), count),
        "copy_ordinal": ordinals,
    }


def _take_lineage(lineage: dict[str, pa.Array], parents: pa.Array) -> list[pa.Array]:
    return [lineage[f.name].take(parents) for f in schemas.LINEAGE]


def _extra_json(
    items: Sequence[Any],
    kept: list[bool],
    known: frozenset[str],
    stats: PageStats,
    prefix: str = "",
) -> list[str | None]:
    extras: list[str | None] = []
    for item, ok in zip(items, kept, strict=True):
        unknown = item.keys() - known if ok and isinstance(item, dict) else ()
        if unknown:
            stats.unknown_fields.update(prefix + key for key in unknown)
            extras.append(orjson.dumps({k: item[k] for k in sorted(unknown)}).decode())
        else:
            extras.append(None)
    return extras


def _count_unknown_enums(
    column: pa.ChunkedArray, api_name: str, known: frozenset[str], stats: PageStats
) -> None:
    unknown = pc.filter(column, pc.invert(pc.is_in(column, pa.array(sorted(known)))))
    unknown = pc.drop_null(unknown)
    if len(unknown):
        for value, n in Counter(unknown.to_pylist()).items():
            stats.unknown_enum_values[f"{api_name}={value}"] += n


def _sessions_table(
    sessions: pa.StructArray,
    timestamps: dict[str, pa.Array],
    items: Sequence[Any] | None,
    kept: list[bool],
    page: int | pa.Array,
    lineage: dict[str, pa.Array],
    stats: PageStats,
) -> pa.Table:
    columns: dict[str, pa.Array] = {"session_id": sessions.field("id")}
    for name in SESSION_SCALAR_FIELDS:
        if name == "id":
            continue
        columns[name] = timestamps[name] if name in timestamps else sessions.field(_camel(name))
    columns["extra_fields"] = (
        pa.nulls(len(sessions), pa.string())
        if items is None
        else pa.array(_extra_json(items, kept, SESSION_API_FIELDS, stats), pa.string())
    )
    columns["source_page"] = (
        pa.repeat(pa.scalar(page, pa.int32()), len(sessions))
        if isinstance(page, int)
        else page.cast(pa.int32())
    )
    columns.update(lineage)
    return pa.Table.from_pydict(columns, schema=schemas.SESSIONS)


def _child_index(lists: pa.ListArray) -> tuple[pa.Array, pa.Array]:
    """Parent row of every child element, and its position within the parent's list."""
    parents = pc.list_parent_indices(lists)
    offsets = lists.offsets.to_numpy()
    parent_np = parents.to_numpy()
    position = np.arange(len(parent_np), dtype=np.int64) + offsets[0] - offsets[parent_np]
    return parents, pa.array(position.astype(np.int32))


def _members_table(
    sessions: pa.StructArray,
    items: Sequence[Any] | None,
    kept: list[bool],
    lineage: dict[str, pa.Array],
    stats: PageStats,
    keep: pa.Array,
) -> pa.Table:
    members = sessions.field("members")
    parents, position = _child_index(members)
    flat = pc.list_flatten(members)
    columns = {"session_id": sessions.field("id").take(parents), "member_index": position}
    for name, _ in schemas.MEMBER_FIELDS:
        columns[name] = flat.field(_camel(name))
    member_items: list[Any] = []
    member_kept: list[bool] = []
    for item, ok in zip(items or (), kept if items is not None else (), strict=True):
        nested = item.get("members") if ok and isinstance(item, dict) else None
        if nested:
            member_items.extend(nested)
            member_kept.extend(isinstance(m, dict) for m in nested)
    if items is not None and len(member_items) == len(flat):
        columns["extra_fields"] = pa.array(
            _extra_json(member_items, member_kept, MEMBER_API_FIELDS, stats, "members."),
            pa.string(),
        )
    else:  # decoded pages have no unknown fields; slow-path rows keep theirs in the contract
        columns["extra_fields"] = pa.nulls(len(flat), pa.string())
    columns.update(
        zip([f.name for f in schemas.LINEAGE], _take_lineage(lineage, parents), strict=True)
    )
    table = pa.Table.from_pydict(columns, schema=schemas.SESSION_MEMBERS)
    return table.filter(keep.take(parents))


def _log_table(
    sessions: pa.StructArray, log_dates: pa.Array, lineage: dict[str, pa.Array], keep: pa.Array
) -> pa.Table:
    log = sessions.field("log")
    parents, position = _child_index(log)
    flat = pc.list_flatten(log)
    columns = {
        "session_id": sessions.field("id").take(parents),
        "log_index": position,
        "logged_at": log_dates,
        "message": flat.field("message"),
    }
    columns.update(
        zip([f.name for f in schemas.LINEAGE], _take_lineage(lineage, parents), strict=True)
    )
    return pa.Table.from_pydict(columns, schema=schemas.SESSION_LOG).filter(keep.take(parents))


def _breadcrumbs_table(
    sessions: pa.StructArray, lineage: dict[str, pa.Array], keep: pa.Array
) -> pa.Table:
    trail = sessions.field("customerBreadcrumb")
    parents, position = _child_index(trail)
    flat = pc.list_flatten(trail)
    columns = {
        "session_id": sessions.field("id").take(parents),
        "position": position,
        "customer_id": flat.field("id"),
        "customer_name": flat.field("name"),
    }
    columns.update(
        zip([f.name for f in schemas.LINEAGE], _take_lineage(lineage, parents), strict=True)
    )
    table = pa.Table.from_pydict(columns, schema=schemas.SESSION_BREADCRUMBS)
    return table.filter(keep.take(parents))


def _rejected_table(
    rejected: list[dict[str, Any]],
    items: Sequence[Any],
    page: int,
    search_archive: bool,
    ctx: SyncContext,
) -> pa.Table:
    rows = []
    for entry in rejected:
        item = items[entry["index"]]
        session_id = item.get("id") if isinstance(item, dict) else None
        day = _claimed_day(item, ctx)
        rows.append(
            {
                # A row whose day cannot be read is kept with the window's first day.
                "partition_date": day or ctx.first_day,
                "page": page,
                "search_archive": search_archive,
                "session_id": session_id if isinstance(session_id, str) else None,
                "reason": entry["reason"],
                "raw_json": _raw_json(item),
                "sync_id": ctx.sync_id,
                "synced_at": ctx.synced_at,
            }
        )
    return pa.Table.from_pylist(rows, schema=schemas.REJECTED_SESSIONS)


def _raw_json(item: Any) -> str | None:
    """The rejected item as JSON text; stdlib json for what orjson will not write (nesting
    deeper than 254 levels), None only for what neither can write."""
    try:
        return orjson.dumps(item, default=str).decode(errors="replace")
    except TypeError:
        pass
    try:
        return json.dumps(item, default=str, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return None


def _claimed_day(item: Any, ctx: SyncContext) -> date | None:
    try:
        created = parse_timestamp(item.get("dateCreated"))
    except (AttributeError, TypeError, ValueError, OverflowError):
        return None
    if created is None:
        return None
    day = created.astimezone(ctx.zone).date()
    return day if ctx.first_day <= day <= ctx.last_day else None
