"""The emulator's data store: lazily generated days, test mutations, queries, ground truth.

Sessions live per UTC day. A day is generated on first use (see :func:`generate_day`), rendered
in the current timestamp format, serialized once with orjson, and kept as a list of
:class:`SessionRecord` -- the few fields queries filter and sort on, plus the item's JSON bytes,
so a page is a ``b",".join`` of cached bytes. Days are dropped least-recently-used past
``config.max_cached_sessions`` and regenerate identically.

Mutations (tests removing, inserting or editing sessions, and drift) are kept in a per-day
overlay that survives regeneration.

Ground truth for tests: :meth:`EmulatorStore.sessions_on_local_day` and friends return exactly
the dicts the server serves (current timestamp format), archived or not.
"""

from __future__ import annotations

import random
import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.data import (
    MAX_LATE_EDIT_TICKS,
    MAX_SESSION_TICKS,
    SessionFactory,
    World,
    generate_day,
    make_session_id,
    sessions_for_day_count,
)
from pipeline.emulator.timefmt import (
    TICKS_PER_DAY,
    TICKS_PER_SECOND,
    datetime_from_ticks,
    day_start_ticks,
    local_midnight_ticks,
    session_formatter,
    ticks_from_datetime,
    utc_day_of,
)

S = TICKS_PER_SECOND
TIMESTAMP_KEYS = ("dateCreated", "dateLastModified", "dateCompleted")
NO_TICKS = -1
FAR_FUTURE = 1 << 62


class SessionRecord:
    """What a query needs to know about one served session, plus its serialized JSON."""

    __slots__ = (
        "account_id",
        "completed",
        "created",
        "crumb_ids",
        "endpoint_ids",
        "from_text",
        "id",
        "modified",
        "oid",
        "parent_id",
        "raw",
        "to_text",
    )

    def __init__(self, doc: dict, parent_id: str | None, raw: bytes) -> None:
        self.id: str = doc["id"]
        self.oid = int(self.id, 16) if _is_hex(self.id) else hash(self.id) & ((1 << 96) - 1)
        self.created: int = doc["dateCreated"]
        self.modified: int = doc["dateLastModified"]
        completed = doc["dateCompleted"]
        self.completed: int = NO_TICKS if completed is None else completed
        self.account_id: str = doc["accountId"]
        self.crumb_ids = tuple(crumb["id"] for crumb in doc["customerBreadcrumb"] or ())
        ids = {m["endpointId"] for m in doc["members"] or ()}
        ids.add(doc["endpointId"])
        ids.add(doc["answeredById"])
        ids.discard(None)
        self.endpoint_ids = tuple(ids)
        self.parent_id = parent_id
        self.from_text = f"{doc['fromAddress'] or ''}\n{doc['fromName'] or ''}".lower()
        self.to_text = f"{doc['toAddress'] or ''}\n{doc['destination'] or ''}".lower()
        self.raw = raw


def _is_hex(value: str) -> bool:
    try:
        int(value, 16)
    except ValueError:
        return False
    return True


def render_doc(doc: dict, fmt: str, tz: str, oid: int, include_nulls: bool) -> dict:
    """Turn a canonical doc into the served dict, in place where it is safe to.

    Only top-level keys are reassigned (``log`` gets a new list), so shared sub-objects such
    as a customer's breadcrumb list are never mutated.
    """
    fmt_ticks = session_formatter(fmt, tz, oid)
    doc["dateCreated"] = fmt_ticks(doc["dateCreated"])
    doc["dateLastModified"] = fmt_ticks(doc["dateLastModified"])
    if doc.get("dateCompleted") is not None:
        doc["dateCompleted"] = fmt_ticks(doc["dateCompleted"])
    if "log" in doc:
        doc["log"] = [{"date": fmt_ticks(e["date"]), "message": e["message"]} for e in doc["log"]]
    if not include_nulls:
        return _strip_nulls(doc)
    return doc


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


@dataclass
class DayOverlay:
    """Test and drift changes to one UTC day, replayed whenever the day is regenerated.

    An edited generated session is recorded as removed plus re-inserted with its new content.
    """

    removed: set[str] = field(default_factory=set)
    inserted: dict[str, tuple[dict, str | None, str]] = field(default_factory=dict)


class DayData:
    """One UTC day's sessions in one rendering, sorted by ``dateCreated``."""

    __slots__ = ("by_id", "created_keys", "records")

    def __init__(self, records: list[SessionRecord]) -> None:
        self.records = records
        self.created_keys = [r.created for r in records]
        self.by_id = {r.id: r for r in records}

    def add(self, record: SessionRecord) -> None:
        old = self.by_id.pop(record.id, None)
        if old is not None:
            self.remove(old.id)
        at = bisect_right(self.created_keys, record.created)
        self.records.insert(at, record)
        self.created_keys.insert(at, record.created)
        self.by_id[record.id] = record

    def remove(self, session_id: str) -> bool:
        record = self.by_id.pop(session_id, None)
        if record is None:
            return False
        at = bisect_left(self.created_keys, record.created)
        while self.records[at] is not record:
            at += 1
        del self.records[at]
        del self.created_keys[at]
        return True


@dataclass(frozen=True)
class SessionQuery:
    """A normalized ListSessions filter and order (paging excluded)."""

    account_ids: frozenset[str] | None = None
    customer_ids: frozenset[str] | None = None
    endpoint_ids: frozenset[str] | None = None
    specific_ids: frozenset[str] | None = None
    from_text: str | None = None
    to_text: str | None = None
    log_text: str | None = None
    parent_session_id: str | None = None
    search_archive: bool = False
    #: Half-open instant range [range_lo, range_hi) on ``date_field``; None means unbounded.
    range_lo: int | None = None
    range_hi: int | None = None
    date_field: str = "dateCreated"
    sort_field: str = "dateCreated"
    descending: bool = True
    shuffled: bool = False


@dataclass
class QueryResult:
    records: list[SessionRecord]
    key: Callable[[SessionRecord], Any]
    matches: Callable[[SessionRecord], bool]
    days: frozenset[date]
    fmt_key: tuple[str, bool]


_SHUFFLE_MULT = 0x9E3779B97F4A7C15F39CC0605CEDC834  # odd: a bijection mod 2**128


def _sort_key(query: SessionQuery, seed: int) -> Callable[[SessionRecord], Any]:
    if query.shuffled:
        salt = (seed * 0x2545F4914F6CDD1D) & ((1 << 128) - 1)
        return lambda r: ((r.oid ^ salt) * _SHUFFLE_MULT) & ((1 << 128) - 1)
    sign = -1 if query.descending else 1
    if query.sort_field == "dateCreated":
        return lambda r: (sign * r.created, sign * r.oid)
    if query.sort_field == "dateLastModified":
        return lambda r: (sign * r.modified, sign * r.oid)
    if query.sort_field == "dateCompleted":
        # Mongo puts missing values first in ascending order, last in descending.
        return lambda r: (sign * r.completed, sign * r.oid)
    return lambda r: sign * r.oid


class EmulatorStore:
    """All data the emulator serves, plus the ground-truth and mutation API for tests.

    Thread-safe: the HTTP server calls it from many threads.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.world = World(config.seed, config.accounts_count)
        self.factory = SessionFactory(self.world)
        now = config.now or datetime.now(UTC).replace(microsecond=0)
        self._now = ticks_from_datetime(now)
        self._fixed_end = config.history_end
        end = config.history_end or utc_day_of(self._now)
        start = config.history_start or end - timedelta(days=max(config.days_of_history, 1) - 1)
        if start > end:
            raise ValueError("history_start is after history_end")
        self.history_start: date = start
        self._lock = threading.RLock()
        self._gen_locks: dict[tuple, threading.Lock] = {}
        self._days: OrderedDict[tuple[date, tuple[str, bool]], DayData] = OrderedDict()
        self._cached_sessions = 0
        self._overlays: dict[date, DayOverlay] = {}
        self._id_days: dict[str, date] = {}
        self._queries: OrderedDict[tuple, QueryResult] = OrderedDict()
        self._mutation_rng = random.Random(f"evo-emulator/mutations/{config.seed}")
        self._mutation_process = self._mutation_rng.getrandbits(40) | (1 << 39)
        self._mutation_counter = 0

    # -- clock -------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The emulator's current instant (UTC)."""
        return datetime_from_ticks(self._now)

    @property
    def now_ticks(self) -> int:
        return self._now

    def set_now(self, when: datetime) -> None:
        """Move the emulator's clock; days the move can affect are regenerated on next use."""
        ticks = ticks_from_datetime(when)
        with self._lock:
            oldest = min(ticks, self._now) - MAX_SESSION_TICKS - MAX_LATE_EDIT_TICKS
            self._now = ticks
            first = utc_day_of(oldest)
            for key in [k for k in self._days if k[0] >= first]:
                self._cached_sessions -= len(self._days.pop(key).records)
            self._queries.clear()

    @property
    def history_end(self) -> date:
        """Last UTC day with generated sessions (follows the clock unless fixed in config)."""
        return self._fixed_end or utc_day_of(self._now)

    def archive_cutoff_ticks(self) -> int:
        """Sessions created before this instant are archived."""
        return self._now - int(self.config.archive_cutoff_days * TICKS_PER_DAY)

    # -- days --------------------------------------------------------------------------------

    def fmt_key(self) -> tuple[str, bool]:
        return (self.config.timestamp_format, self.config.include_null_values)

    def _has_base(self, day: date) -> bool:
        return self.history_start <= day <= self.history_end

    def days_with_data(self, first: date, last: date) -> list[date]:
        """UTC days in [first, last] that can hold sessions (history or overlay inserts)."""
        days = set()
        lo, hi = max(first, self.history_start), min(last, self.history_end, utc_day_of(self._now))
        d = lo
        while d <= hi:
            days.add(d)
            d += timedelta(days=1)
        days.update(d for d, o in self._overlays.items() if o.inserted and first <= d <= last)
        return sorted(days)

    def _render_record(self, doc: dict, parent_id: str | None, tz: str, fmt_key) -> SessionRecord:
        fmt, include_nulls = fmt_key
        # Copy: overlay docs are rendered again for every format and regeneration.
        served = dict(doc)
        record = SessionRecord(doc, parent_id, b"")
        record.raw = orjson.dumps(render_doc(served, fmt, tz, record.oid, include_nulls))
        return record

    def day(self, day: date, fmt_key: tuple[str, bool] | None = None) -> DayData:
        """The sessions of the UTC ``day``, generating and caching them on first use."""
        fmt_key = fmt_key or self.fmt_key()
        key = (day, fmt_key)
        while True:
            with self._lock:
                cached = self._days.get(key)
                if cached is not None:
                    self._days.move_to_end(key)
                    return cached
                gen_lock = self._gen_locks.setdefault(key, threading.Lock())
            with gen_lock:
                with self._lock:
                    cached = self._days.get(key)
                    if cached is not None:
                        return cached
                    now = self._now
                # The expensive part runs outside the store lock so other days keep being served.
                base = self._generate_records(day, fmt_key, now) if self._has_base(day) else []
                with self._lock:
                    if now != self._now:
                        continue  # the clock moved meanwhile: generate again
                    overlay = self._overlays.get(day)
                    if overlay is not None:
                        if overlay.removed:
                            base = [r for r in base if r.id not in overlay.removed]
                        if overlay.inserted:
                            base.extend(
                                self._render_record(doc, parent, tz, fmt_key)
                                for doc, parent, tz in overlay.inserted.values()
                            )
                            base.sort(key=lambda r: r.created)
                    data = DayData(base)
                    self._days[key] = data
                    self._cached_sessions += len(base)
                    self._evict(keep=key)
                    self._gen_locks.pop(key, None)
                    return data

    def _generate_records(self, day: date, fmt_key, now: int) -> list[SessionRecord]:
        fmt, include_nulls = fmt_key
        count = sessions_for_day_count(
            self.config.sessions_per_day, self.config.weekend_factor, day
        )
        dumps = orjson.dumps
        records = []
        append = records.append
        for doc, parent_id, tz in generate_day(self.factory, self.config.seed, day, count, now):
            record = SessionRecord(doc, parent_id, b"")
            record.raw = dumps(render_doc(doc, fmt, tz, record.oid, include_nulls))
            append(record)
        return records

    def _evict(self, keep) -> None:
        budget = self.config.max_cached_sessions
        while self._cached_sessions > budget and len(self._days) > 1:
            key, data = next(iter(self._days.items()))
            if key == keep:
                self._days.move_to_end(key)
                continue
            del self._days[key]
            self._cached_sessions -= len(data.records)

    def _day_of_id(self, session_id: str) -> date | None:
        known = self._id_days.get(session_id)
        if known is not None:
            return known
        if len(session_id) == 24 and _is_hex(session_id):
            return utc_day_of(int(session_id[:8], 16) * S)
        return None

    # -- queries -----------------------------------------------------------------------------

    def candidate_days(self, query: SessionQuery) -> list[date]:
        """The UTC days whose sessions can match ``query``."""
        created_lo, created_hi = self._created_bounds(query)
        if created_lo >= created_hi:
            return []
        first, last = utc_day_of(max(created_lo, 0)), utc_day_of(created_hi - 1)
        days = self.days_with_data(first, last)
        if query.specific_ids is not None:
            wanted = {self._day_of_id(i) for i in query.specific_ids}
            days = [d for d in days if d in wanted]
        return days

    def _created_bounds(self, query: SessionQuery) -> tuple[int, int]:
        cutoff = self.archive_cutoff_ticks()
        lo, hi = (0, cutoff) if query.search_archive else (cutoff, FAR_FUTURE)
        hi = min(hi, self._now + 1)
        if query.date_field == "dateCreated":
            if query.range_lo is not None:
                lo = max(lo, query.range_lo)
            if query.range_hi is not None:
                hi = min(hi, query.range_hi)
        else:
            # A session completing in range was created at most MAX_SESSION_TICKS earlier.
            if query.range_lo is not None:
                lo = max(lo, query.range_lo - MAX_SESSION_TICKS)
            if query.range_hi is not None:
                hi = min(hi, query.range_hi)
        return lo, hi

    def _checks(self, query: SessionQuery) -> list[Callable[[SessionRecord], bool]]:
        """Every filter of ``query`` except the dateCreated range (which callers slice)."""
        checks: list[Callable[[SessionRecord], bool]] = []
        if query.date_field == "dateCompleted" and (
            query.range_lo is not None or query.range_hi is not None
        ):
            c_lo = query.range_lo if query.range_lo is not None else 0
            c_hi = query.range_hi if query.range_hi is not None else FAR_FUTURE
            checks.append(lambda r: r.completed != NO_TICKS and c_lo <= r.completed < c_hi)
        if query.account_ids is not None:
            accounts = query.account_ids
            checks.append(lambda r: r.account_id in accounts)
        if query.customer_ids is not None:
            customers = query.customer_ids
            checks.append(lambda r: not customers.isdisjoint(r.crumb_ids))
        if query.endpoint_ids is not None:
            endpoints = query.endpoint_ids
            checks.append(lambda r: not endpoints.isdisjoint(r.endpoint_ids))
        if query.specific_ids is not None:
            ids = query.specific_ids
            checks.append(lambda r: r.id in ids)
        if query.parent_session_id is not None:
            parent = query.parent_session_id
            checks.append(lambda r: r.parent_id == parent)
        if query.from_text is not None:
            needle = query.from_text
            checks.append(lambda r: needle in r.from_text)
        if query.to_text is not None:
            needle_to = query.to_text
            checks.append(lambda r: needle_to in r.to_text)
        if query.log_text is not None:
            needle_log = query.log_text
            # The log is not kept outside the JSON; decoding is fine for a rare filter whose
            # result is cached.
            checks.append(
                lambda r: any(
                    needle_log in (e.get("message") or "").lower()
                    for e in orjson.loads(r.raw).get("log") or ()
                )
            )
        return checks

    def _matcher(self, query: SessionQuery) -> Callable[[SessionRecord], bool]:
        lo, hi = self._created_bounds(query)
        checks = self._checks(query)
        return lambda r: lo <= r.created < hi and all(check(r) for check in checks)

    def query(self, query: SessionQuery) -> list[SessionRecord]:
        """All sessions matching ``query``, in the query's order (cached until data changes)."""
        fmt_key = self.fmt_key()
        cache_key = (query, fmt_key, self._now, self.config.archive_cutoff_days, self.config.seed)
        with self._lock:
            cached = self._queries.get(cache_key)
            if cached is not None:
                self._queries.move_to_end(cache_key)
                return cached.records
        days = self.candidate_days(query)
        lo, hi = self._created_bounds(query)
        checks = self._checks(query)
        records: list[SessionRecord] = []
        for day in days:
            data = self.day(day, fmt_key)
            # Records are sorted by creation: slice the created range, then filter the rest.
            start = bisect_left(data.created_keys, lo)
            stop = bisect_left(data.created_keys, hi)
            chunk = data.records[start:stop]
            if checks:
                chunk = [r for r in chunk if all(check(r) for check in checks)]
            records.extend(chunk)
        matches = self._matcher(query)
        key = _sort_key(query, self.config.seed)
        records.sort(key=key)
        with self._lock:
            self._queries[cache_key] = QueryResult(records, key, matches, frozenset(days), fmt_key)
            while len(self._queries) > 8:
                self._queries.popitem(last=False)
        return records

    # -- ground truth ------------------------------------------------------------------------

    def _records_between(self, lo: int, hi: int) -> Iterator[SessionRecord]:
        for day in self.days_with_data(utc_day_of(lo), utc_day_of(hi - 1)):
            data = self.day(day)
            start = bisect_left(data.created_keys, lo)
            stop = bisect_left(data.created_keys, hi)
            yield from data.records[start:stop]

    def sessions_between(self, start: datetime, end: datetime) -> list[dict]:
        """Served dicts of every session (live or archived) created in [start, end)."""
        lo, hi = ticks_from_datetime(start), ticks_from_datetime(end)
        return [orjson.loads(r.raw) for r in self._records_between(lo, hi)]

    def sessions_on_local_day(self, day: date, tz: str = "UTC") -> list[dict]:
        """Served dicts of every session whose ``dateCreated`` falls on ``day`` in zone ``tz``.

        Live and archived alike, after every removal, insert, edit and drift so far, ordered by
        ``dateCreated``; timestamps in the current ``timestamp_format``.
        """
        lo = local_midnight_ticks(day, tz)
        hi = local_midnight_ticks(day + timedelta(days=1), tz)
        return [orjson.loads(r.raw) for r in self._records_between(lo, hi)]

    def ids_on_local_day(self, day: date, tz: str = "UTC") -> list[str]:
        """Ids of :meth:`sessions_on_local_day`, without decoding the sessions."""
        lo = local_midnight_ticks(day, tz)
        hi = local_midnight_ticks(day + timedelta(days=1), tz)
        return [r.id for r in self._records_between(lo, hi)]

    def count_on_local_day(self, day: date, tz: str = "UTC") -> int:
        return len(self.ids_on_local_day(day, tz))

    def session(self, session_id: str) -> dict | None:
        """The served dict of one session, or None."""
        record = self._find(session_id)
        return orjson.loads(record.raw) if record else None

    def session_raw(self, session_id: str) -> SessionRecord | None:
        return self._find(session_id)

    def _find(self, session_id: str) -> SessionRecord | None:
        day = self._day_of_id(session_id)
        if day is None or not self.days_with_data(day, day):
            return None
        return self.day(day).by_id.get(session_id)

    def _render_entity(self, doc: dict, tz: str) -> dict:
        fmt, include_nulls = self.fmt_key()
        return render_doc(doc, fmt, tz, int(doc["id"], 16), include_nulls)

    def accounts(self) -> list[dict]:
        """Served AccountInfo dicts of every account."""
        return [self._render_entity(self.world.account_doc(a), a.tz) for a in self.world.accounts]

    def customers(self) -> list[dict]:
        """Served CustomerInfo dicts of every customer."""
        out = []
        for account in self.world.accounts:
            for customer in account.customers:
                out.append(self._render_entity(self.world.customer_doc(customer), account.tz))
        return out

    def endpoints(self) -> list[dict]:
        """Served EndpointInfo dicts of every endpoint (phone numbers, users, teams)."""
        return [
            self._render_entity(
                self.world.endpoint_doc(e), self.world.by_account_id[e.account_id].tz
            )
            for e in self.world.endpoints.values()
        ]

    # -- mutations ---------------------------------------------------------------------------

    def _overlay(self, day: date) -> DayOverlay:
        return self._overlays.setdefault(day, DayOverlay())

    def _apply_insert(self, doc: dict, parent_id: str | None, tz: str) -> None:
        """Record an inserted canonical doc and patch every cache it belongs to (lock held)."""
        day = utc_day_of(doc["dateCreated"])
        self._overlay(day).inserted[doc["id"]] = (doc, parent_id, tz)
        if not (len(doc["id"]) == 24 and _is_hex(doc["id"])) or (
            utc_day_of(int(doc["id"][:8], 16) * S) != day
        ):
            self._id_days[doc["id"]] = day
        rendered: dict[tuple[str, bool], SessionRecord] = {}

        def record_for(fmt_key) -> SessionRecord:
            if fmt_key not in rendered:
                rendered[fmt_key] = self._render_record(doc, parent_id, tz, fmt_key)
            return rendered[fmt_key]

        for (cached_day, fmt_key), data in self._days.items():
            if cached_day == day:
                data.add(record_for(fmt_key))
                self._cached_sessions += 1
        # Keep cached query results in step instead of recomputing them: this is what lets a
        # client page through a drifting result without the emulator re-filtering every time.
        for result in self._queries.values():
            record = record_for(result.fmt_key)
            if result.matches(record):
                at = bisect_right(result.records, result.key(record), key=result.key)
                result.records.insert(at, record)

    def _invalidate_queries(self) -> None:
        self._queries.clear()

    def remove_sessions(self, ids: Iterable[str]) -> int:
        """Make sessions disappear, as if the server lost them. Returns how many existed."""
        removed = 0
        with self._lock:
            for session_id in ids:
                day = self._day_of_id(session_id)
                if day is None:
                    continue
                overlay = self._overlay(day)
                existed = self._find(session_id) is not None
                overlay.inserted.pop(session_id, None)
                overlay.removed.add(session_id)
                for (cached_day, _fmt), data in self._days.items():
                    if cached_day == day and data.remove(session_id):
                        self._cached_sessions -= 1
                removed += existed
            self._invalidate_queries()
        return removed

    def remove_sessions_on_local_day(
        self, day: date, tz: str = "UTC", fraction: float = 1.0, seed: int = 0
    ) -> list[str]:
        """Remove a deterministic ``fraction`` of the sessions created on ``day`` in ``tz``."""
        ids = self.ids_on_local_day(day, tz)
        chosen = random.Random(f"remove/{seed}/{day}").sample(ids, round(len(ids) * fraction))
        self.remove_sessions(chosen)
        return chosen

    def _new_session_id(self, created: int) -> str:
        self._mutation_counter += 1
        return make_session_id(created, self._mutation_process, self._mutation_counter)

    def insert_sessions(
        self,
        day: date | None = None,
        count: int = 1,
        tz: str = "UTC",
        *,
        at: datetime | None = None,
        account_id: str | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> list[str]:
        """Insert ``count`` new realistic sessions and return their ids.

        They are created at ``at`` if given, else at random instants of the local ``day`` in
        ``tz`` (not after now), else within the last minute before now. ``overrides`` replaces
        served fields (timestamps may be given as datetimes).
        """
        ids = []
        with self._lock:
            rng = self._mutation_rng
            for _ in range(count):
                created = self._pick_created(rng, day, tz, at)
                account = (
                    self.world.by_account_id[account_id]
                    if account_id
                    else self.factory.pick_account(rng)
                )
                doc, _ = self.factory.build(
                    rng, account, created, self._new_session_id(created), self._now
                )[0]
                if overrides:
                    doc.update(_canonical_changes(overrides))
                self._apply_insert(doc, None, account.tz)
                ids.append(doc["id"])
        return ids

    def _pick_created(self, rng: random.Random, day: date | None, tz: str, at) -> int:
        if at is not None:
            return ticks_from_datetime(at)
        if day is not None:
            lo = local_midnight_ticks(day, tz)
            hi = min(local_midnight_ticks(day + timedelta(days=1), tz), self._now + 1)
            if lo < hi:
                return lo + int(rng.random() * (hi - lo))
        return self._now - int(rng.random() * 60 * S)

    def modify_session(
        self,
        session_id: str,
        changes: dict[str, Any] | None = None,
        *,
        at: datetime | None = None,
        by: str = "system",
    ) -> dict:
        """Edit a session the way the service would: fields change, ``dateLastModified`` moves
        to ``at`` (default: now, and always later than before), ``lastModifiedBy`` to ``by``.

        Returns the served dict after the edit.
        """
        with self._lock:
            day = self._day_of_id(session_id)
            if day is None:
                raise KeyError(session_id)
            doc, parent_id, tz = self._canonical(session_id, day)
            doc = dict(doc)
            doc.update(_canonical_changes(changes or {}))
            bumped = ticks_from_datetime(at) if at else self._now
            doc["dateLastModified"] = max(bumped, doc["dateLastModified"] + 1)
            doc["lastModifiedBy"] = by
            self._overlay(day).removed.add(session_id)
            for (cached_day, _fmt), data in self._days.items():
                if cached_day == day and data.remove(session_id):
                    self._cached_sessions -= 1
            self._invalidate_queries()
            self._apply_insert(doc, parent_id, tz)
        result = self.session(session_id)
        assert result is not None
        return result

    def _canonical(self, session_id: str, day: date) -> tuple[dict, str | None, str]:
        overlay = self._overlays.get(day)
        if overlay and session_id in overlay.inserted:
            return overlay.inserted[session_id]
        if self._has_base(day) and not (overlay and session_id in overlay.removed):
            count = sessions_for_day_count(
                self.config.sessions_per_day, self.config.weekend_factor, day
            )
            for doc, parent_id, tz in generate_day(
                self.factory, self.config.seed, day, count, self._now
            ):
                if doc["id"] == session_id:
                    return doc, parent_id, tz
        raise KeyError(session_id)

    # -- drift -------------------------------------------------------------------------------

    def drift(self, query: SessionQuery, count: int, mode: str, tz: str) -> list[str]:
        """Insert ``count`` sessions the way a busy live system would while a client pages."""
        if count <= 0:
            return []
        ids = []
        with self._lock:
            rng = self._mutation_rng
            for _ in range(count):
                created = None
                if mode == "queried_day" and (
                    query.range_lo is not None or query.range_hi is not None
                ):
                    lo = (
                        query.range_lo
                        if query.range_lo is not None
                        else query.range_hi - TICKS_PER_DAY
                    )
                    hi = query.range_hi if query.range_hi is not None else lo + TICKS_PER_DAY
                    hi = min(hi, self._now + 1)
                    if lo < hi:
                        created = lo + int(rng.random() * (hi - lo))
                if created is None:
                    created = self._now - int(rng.random() * 60 * S)
                if query.account_ids:
                    choices = sorted(a for a in query.account_ids if a in self.world.by_account_id)
                    account = (
                        self.world.by_account_id[rng.choice(choices)]
                        if choices
                        else self.factory.pick_account(rng)
                    )
                else:
                    account = self.factory.pick_account(rng)
                doc, _ = self.factory.build(
                    rng, account, created, self._new_session_id(created), self._now
                )[0]
                self._apply_insert(doc, None, account.tz)
                ids.append(doc["id"])
        return ids


def _canonical_changes(changes: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in changes.items():
        if isinstance(value, datetime):
            value = ticks_from_datetime(value)
        if key == "log" and isinstance(value, list):
            value = [
                {
                    "date": ticks_from_datetime(e["date"])
                    if isinstance(e["date"], datetime)
                    else e["date"],
                    "message": e["message"],
                }
                for e in value
            ]
        out[key] = value
    return out


def day_range_ticks(start: date, end: date) -> tuple[int, int]:
    """[00:00 UTC of start, 00:00 UTC of the day after end)."""
    return day_start_ticks(start), day_start_ticks(end) + TICKS_PER_DAY
