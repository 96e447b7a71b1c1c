"""The emulator's data store: lazily generated days, test mutations, queries, ground truth.

Sessions live per UTC day. A day is generated on first use (see
:func:`~pipeline.emulator.data.generate_day`) directly as JSON bytes in the current timestamp
format, and kept as a list of :class:`~pipeline.emulator.data.SessionRecord`, so a page is a
``b",".join`` of cached bytes. Days are dropped least-recently-used past
``config.max_cached_sessions`` and regenerate identically; a change of timestamp format simply
renders the day again.

Mutations (tests removing, inserting or editing sessions, and drift) are kept in a per-day
overlay that is replayed whenever the day is rendered.

Ground truth for tests: :meth:`EmulatorStore.sessions_on_local_day` and friends return exactly
the dicts the server serves (current timestamp format), archived or not.
"""

from __future__ import annotations

import random
import threading
import zlib
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
    NO_TICKS,
    SessionFactory,
    SessionRecord,
    World,
    generate_day,
    make_session_id,
    sessions_for_day_count,
)
from pipeline.emulator.timefmt import (
    TICKS_PER_DAY,
    TICKS_PER_SECOND,
    datetime_from_ticks,
    formatter_for,
    local_midnight_ticks,
    ticks_from_datetime,
    utc_day_of,
)

S = TICKS_PER_SECOND
FAR_FUTURE = 1 << 62
MAX_CACHED_QUERIES = 8
FmtKey = tuple[str, bool]  # (timestamp_format, include_null_values)


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def _is_object_id(value: str) -> bool:
    if len(value) != 24:
        return False
    try:
        int(value, 16)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class InsertRecipe:
    """How to rebuild an inserted session in any format: a private rng seed and its anchors."""

    rng_seed: str
    account_id: str
    created: int
    session_id: str


@dataclass
class DayOverlay:
    """Test and drift changes to one UTC day, replayed whenever the day is rendered."""

    removed: set[str] = field(default_factory=set)
    inserted: dict[str, InsertRecipe] = field(default_factory=dict)
    #: Session id -> served fields to overwrite (timestamps as ticks).
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)


class DayData:
    """One UTC day's sessions in one rendering, sorted by ``dateCreated``."""

    __slots__ = ("by_id", "created_keys", "records")

    def __init__(self, records: list[SessionRecord]) -> None:
        self.records = records
        self.created_keys = [r.created for r in records]
        self.by_id = {r.id: r for r in records}

    def add(self, record: SessionRecord) -> None:
        """Insert ``record``, replacing any record with the same id."""
        self.remove(record.id)
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
class _QueryResult:
    records: list[SessionRecord]
    key: Callable[[SessionRecord], Any]
    matches: Callable[[SessionRecord], bool]
    fmt_key: FmtKey


def _sort_key(query: SessionQuery, seed: int) -> Callable[[SessionRecord], Any]:
    """A key for ``list.sort``/``bisect`` giving the query's order (descending by negation)."""
    if query.shuffled:
        salt = f"{seed}:".encode()
        # Stable across requests and runs, unrelated to any field a client could sort by.
        return lambda r: zlib.crc32(salt + r.id.encode())
    sign = -1 if query.descending else 1
    if query.sort_field == "dateCreated":
        return lambda r: sign * r.created
    if query.sort_field == "dateLastModified":
        return lambda r: sign * r.modified
    if query.sort_field == "dateCompleted":
        # NO_TICKS (-1) puts running sessions first ascending and last descending, like Mongo
        # orders missing values.
        return lambda r: sign * r.completed
    return lambda r: sign * int(r.id, 16)


class EmulatorStore:
    """All data the emulator serves, plus the ground-truth and mutation API for tests.

    Thread-safe: the HTTP server calls it from many threads.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        # Data knobs are read once: changing them later would make days disagree.
        self.seed = config.seed
        self.sessions_per_day = config.sessions_per_day
        self.weekend_factor = config.weekend_factor
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
        self._gen_locks: dict[tuple[date, FmtKey], threading.Lock] = {}
        self._days: OrderedDict[tuple[date, FmtKey], DayData] = OrderedDict()
        self._cached_sessions = 0
        self._overlays: dict[date, DayOverlay] = {}
        self._queries: OrderedDict[tuple, _QueryResult] = OrderedDict()
        # Bumped by every mutation; a query result computed across a bump is not cached.
        self._version = 0
        self._insert_rng = random.Random(f"evo-emulator/inserts/{config.seed}")
        # Inserted ids use their own 5-byte "process" value, so they never collide with
        # generated ones.
        self._insert_process = self._insert_rng.getrandbits(40) | (1 << 39)
        self._insert_counter = 0

    # -- clock -------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The emulator's current instant (UTC)."""
        return datetime_from_ticks(self._now)

    @property
    def now_ticks(self) -> int:
        return self._now

    def set_now(self, when: datetime) -> None:
        """Move the emulator's clock. Days the move can affect are re-rendered on next use, so
        running sessions complete and new ones appear."""
        ticks = ticks_from_datetime(when)
        with self._lock:
            oldest = min(ticks, self._now) - MAX_SESSION_TICKS - MAX_LATE_EDIT_TICKS
            self._now = ticks
            first = utc_day_of(oldest)
            for key in [k for k in self._days if k[0] >= first]:
                self._cached_sessions -= len(self._days.pop(key).records)
            self._version += 1
            self._queries.clear()

    @property
    def history_end(self) -> date:
        """Last UTC day with generated sessions (follows the clock unless fixed in config)."""
        return self._fixed_end or utc_day_of(self._now)

    def archive_cutoff_ticks(self) -> int:
        """Sessions created before this instant are archived."""
        return self._now - int(self.config.archive_cutoff_days * TICKS_PER_DAY)

    def archive_cutoff(self) -> datetime:
        """Sessions created before this instant are only served with ``searchArchive=true``."""
        return datetime_from_ticks(self.archive_cutoff_ticks())

    # -- days --------------------------------------------------------------------------------

    def fmt_key(self) -> FmtKey:
        return (self.config.timestamp_format, self.config.include_null_values)

    def _has_base(self, day: date) -> bool:
        return self.history_start <= day <= self.history_end

    def days_with_data(self, first: date, last: date) -> list[date]:
        """UTC days in [first, last] that can hold sessions (history or inserted sessions)."""
        days = set()
        day = max(first, self.history_start)
        last_generated = min(last, self.history_end, utc_day_of(self._now))
        while day <= last_generated:
            days.add(day)
            day += timedelta(days=1)
        days.update(d for d, o in self._overlays.items() if o.inserted and first <= d <= last)
        return sorted(days)

    def day(self, day: date, fmt_key: FmtKey | None = None) -> DayData:
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
                # The expensive part runs outside the store lock, so other days keep being
                # served while a big one is generated.
                base = self._generate(day, fmt_key, now) if self._has_base(day) else []
                with self._lock:
                    if now != self._now:
                        continue  # the clock moved meanwhile: generate again
                    data = DayData(self._apply_overlay(day, base, fmt_key))
                    self._days[key] = data
                    self._cached_sessions += len(data.records)
                    self._evict(keep=key)
                    self._gen_locks.pop(key, None)
                    return data

    def _generate(self, day: date, fmt_key: FmtKey, now: int) -> list[SessionRecord]:
        count = sessions_for_day_count(self.sessions_per_day, self.weekend_factor, day)
        records = generate_day(self.factory, self.seed, day, count, now, fmt_key[0])
        if not fmt_key[1]:
            for record in records:
                record.raw = orjson.dumps(_strip_nulls(orjson.loads(record.raw)))
        return records

    def _apply_overlay(
        self, day: date, records: list[SessionRecord], fmt_key: FmtKey
    ) -> list[SessionRecord]:
        overlay = self._overlays.get(day)
        if overlay is None:
            return records
        if overlay.removed:
            records = [r for r in records if r.id not in overlay.removed]
        if overlay.inserted:
            records.extend(self._build_inserted(r, fmt_key) for r in overlay.inserted.values())
            records.sort(key=lambda r: r.created)
        if overlay.changes:
            records = [
                self._with_changes(r, overlay.changes[r.id], fmt_key)
                if r.id in overlay.changes
                else r
                for r in records
            ]
            records.sort(key=lambda r: r.created)
        return records

    def _build_inserted(self, recipe: InsertRecipe, fmt_key: FmtKey) -> SessionRecord:
        account = self.world.by_account_id[recipe.account_id]
        rng = random.Random(recipe.rng_seed)
        record = self.factory.build(
            rng, account, recipe.created, recipe.session_id, self._now, fmt_key[0]
        )[0]
        if not fmt_key[1]:
            record.raw = orjson.dumps(_strip_nulls(orjson.loads(record.raw)))
        return record

    def _with_changes(
        self, record: SessionRecord, changes: dict[str, Any], fmt_key: FmtKey
    ) -> SessionRecord:
        """``record`` with served fields overwritten; timestamps in ``changes`` are ticks."""
        doc = orjson.loads(record.raw)
        account = self.world.by_account_id.get(changes.get("accountId", doc.get("accountId")))
        tz = account.tz if account else "UTC"
        fmt_ticks = formatter_for(fmt_key[0], tz, record.id)
        fields: dict[str, Any] = {}
        for name, value in changes.items():
            if name in ("dateLastModified", "dateCompleted") and isinstance(value, int):
                fields["modified" if name == "dateLastModified" else "completed"] = value
                value = fmt_ticks(value)
            elif name == "dateCompleted" and value is None:
                fields["completed"] = NO_TICKS
            elif name == "log" and isinstance(value, list):
                value = [
                    {
                        "date": fmt_ticks(e["date"]) if isinstance(e["date"], int) else e["date"],
                        "message": e["message"],
                    }
                    for e in value
                ]
            doc[name] = value
        if not fmt_key[1]:
            doc = _strip_nulls(doc)
        fields["account_id"] = doc.get("accountId")
        fields["crumb_ids"] = tuple(c["id"] for c in doc.get("customerBreadcrumb") or ())
        ids = {m.get("endpointId") for m in doc.get("members") or ()}
        ids.update((doc.get("endpointId"), doc.get("answeredById")))
        ids.discard(None)
        fields["endpoint_ids"] = tuple(ids)
        fields["from_text"] = f"{doc.get('fromAddress') or ''}\n{doc.get('fromName') or ''}".lower()
        fields["to_text"] = f"{doc.get('toAddress') or ''}\n{doc.get('destination') or ''}".lower()
        return record.replaced(orjson.dumps(doc), **fields)

    def _evict(self, keep: tuple[date, FmtKey]) -> None:
        budget = self.config.max_cached_sessions
        while self._cached_sessions > budget and len(self._days) > 1:
            key, data = next(iter(self._days.items()))
            if key == keep:
                self._days.move_to_end(key)
                continue
            del self._days[key]
            self._cached_sessions -= len(data.records)

    def warm(self, first: date, last: date) -> int:
        """Generate the days [first, last] now (e.g. before timing a benchmark).

        Returns the number of sessions they hold.
        """
        return sum(len(self.day(d).records) for d in self.days_with_data(first, last))

    @staticmethod
    def _day_of_id(session_id: str) -> date | None:
        # Like a Mongo ObjectId, every id starts with its creation second.
        if not _is_object_id(session_id):
            return None
        return utc_day_of(int(session_id[:8], 16) * S)

    # -- queries -----------------------------------------------------------------------------

    def _created_bounds(self, query: SessionQuery) -> tuple[int, int]:
        cutoff = self.archive_cutoff_ticks()
        lo, hi = (0, cutoff) if query.search_archive else (cutoff, FAR_FUTURE)
        if query.range_lo is not None:
            # A session completing in range was created at most MAX_SESSION_TICKS earlier.
            slack = MAX_SESSION_TICKS if query.date_field == "dateCompleted" else 0
            lo = max(lo, query.range_lo - slack)
        if query.range_hi is not None:
            hi = min(hi, query.range_hi)
        return lo, hi

    def candidate_days(self, query: SessionQuery) -> list[date]:
        """The UTC days whose sessions can match ``query``."""
        lo, hi = self._created_bounds(query)
        if lo >= hi:
            return []
        # Nothing is ever created more than a year ahead of the clock, even by a test insert.
        horizon = self._now + 366 * TICKS_PER_DAY
        days = self.days_with_data(utc_day_of(max(lo, 0)), utc_day_of(min(hi, horizon) - 1))
        if query.specific_ids is not None:
            wanted = {self._day_of_id(i) for i in query.specific_ids}
            days = [d for d in days if d in wanted]
        return days

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
            # The log lives only in the JSON; decoding is fine for a rare filter whose result
            # is cached.
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
        """All sessions matching ``query``, in the query's order.

        Results are cached, so paging through them costs a slice per page; inserts (drift)
        patch cached results in place, other mutations drop them.
        """
        fmt_key = self.fmt_key()
        cache_key = (query, fmt_key, self._now, self.config.archive_cutoff_days)
        with self._lock:
            cached = self._queries.get(cache_key)
            if cached is not None:
                self._queries.move_to_end(cache_key)
                return cached.records
            version = self._version
        lo, hi = self._created_bounds(query)
        checks = self._checks(query)
        records: list[SessionRecord] = []
        for day in self.candidate_days(query):
            data = self.day(day, fmt_key)
            # Records are sorted by creation: slice the created range, then filter the rest.
            chunk = data.records[
                bisect_left(data.created_keys, lo) : bisect_left(data.created_keys, hi)
            ]
            if checks:
                chunk = [r for r in chunk if all(check(r) for check in checks)]
            records.extend(chunk)
        key = _sort_key(query, self.seed)
        records.sort(key=key)
        with self._lock:
            if version != self._version:
                # Data changed while this result was computed: fine to serve once (that is what
                # a live server does), wrong to keep.
                return records
            self._queries[cache_key] = _QueryResult(records, key, self._matcher(query), fmt_key)
            # Cached results pin their records in memory even after their days are evicted,
            # so they share the session budget.
            while len(self._queries) > 1 and (
                len(self._queries) > MAX_CACHED_QUERIES
                or sum(len(q.records) for q in self._queries.values())
                > self.config.max_cached_sessions
            ):
                self._queries.popitem(last=False)
        return records

    # -- ground truth ------------------------------------------------------------------------

    def _records_between(self, lo: int, hi: int) -> Iterator[SessionRecord]:
        for day in self.days_with_data(utc_day_of(lo), utc_day_of(hi - 1)):
            data = self.day(day)
            yield from data.records[
                bisect_left(data.created_keys, lo) : bisect_left(data.created_keys, hi)
            ]

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
        """How many sessions :meth:`sessions_on_local_day` would return."""
        return len(self.ids_on_local_day(day, tz))

    def session(self, session_id: str) -> dict | None:
        """The served dict of one session (live or archived), or None."""
        record = self.record(session_id)
        return orjson.loads(record.raw) if record else None

    def record(self, session_id: str) -> SessionRecord | None:
        """The cached record of one session, or None."""
        day = self._day_of_id(session_id)
        if day is None or not self.days_with_data(day, day):
            return None
        return self.day(day).by_id.get(session_id)

    def _render_entity(self, doc: dict, tz: str) -> dict:
        fmt, include_nulls = self.fmt_key()
        fmt_ticks = formatter_for(fmt, tz, doc["id"])
        doc["dateCreated"] = fmt_ticks(doc["dateCreated"])
        doc["dateLastModified"] = fmt_ticks(doc["dateLastModified"])
        return doc if include_nulls else _strip_nulls(doc)

    def accounts(self) -> list[dict]:
        """Served AccountInfo dicts of every account."""
        return [self._render_entity(self.world.account_doc(a), a.tz) for a in self.world.accounts]

    def customers(self) -> list[dict]:
        """Served CustomerInfo dicts of every customer."""
        return [
            self._render_entity(self.world.customer_doc(customer), account.tz)
            for account in self.world.accounts
            for customer in account.customers
        ]

    def endpoints(self) -> list[dict]:
        """Served EndpointInfo dicts of every endpoint (phone numbers, users, teams)."""
        by_account = self.world.by_account_id
        return [
            self._render_entity(self.world.endpoint_doc(e), by_account[e.account_id].tz)
            for e in self.world.endpoints.values()
        ]

    # -- mutations ---------------------------------------------------------------------------

    def _overlay(self, day: date) -> DayOverlay:
        return self._overlays.setdefault(day, DayOverlay())

    def _drop_cached(self, day: date, session_id: str) -> None:
        for (cached_day, _fmt), data in self._days.items():
            if cached_day == day and data.remove(session_id):
                self._cached_sessions -= 1

    def remove_sessions(self, ids: Iterable[str]) -> int:
        """Make sessions disappear, as if the server lost them. Returns how many existed."""
        removed = 0
        with self._lock:
            for session_id in ids:
                day = self._day_of_id(session_id)
                if day is None:
                    continue
                removed += self.record(session_id) is not None
                overlay = self._overlay(day)
                overlay.inserted.pop(session_id, None)
                overlay.changes.pop(session_id, None)
                overlay.removed.add(session_id)
                self._drop_cached(day, session_id)
            self._version += 1
            self._queries.clear()
        return removed

    def remove_sessions_on_local_day(
        self, day: date, tz: str = "UTC", fraction: float = 1.0, seed: int = 0
    ) -> list[str]:
        """Remove a deterministic ``fraction`` of the sessions created on ``day`` in ``tz``.

        Returns the removed ids.
        """
        ids = self.ids_on_local_day(day, tz)
        chosen = random.Random(f"remove/{seed}/{day}").sample(ids, round(len(ids) * fraction))
        self.remove_sessions(chosen)
        return chosen

    def _insert(self, account_id: str, created: int) -> str:
        """Add one new session to the overlay and to every cache it belongs in (lock held)."""
        self._insert_counter += 1
        self._version += 1
        session_id = make_session_id(created, self._insert_process, self._insert_counter)
        recipe = InsertRecipe(
            f"evo-emulator/insert/{self.seed}/{session_id}", account_id, created, session_id
        )
        day = utc_day_of(created)
        self._overlay(day).inserted[session_id] = recipe
        rendered: dict[FmtKey, SessionRecord] = {}

        def record_for(fmt_key: FmtKey) -> SessionRecord:
            if fmt_key not in rendered:
                rendered[fmt_key] = self._build_inserted(recipe, fmt_key)
            return rendered[fmt_key]

        for (cached_day, fmt_key), data in self._days.items():
            if cached_day == day:
                data.add(record_for(fmt_key))
                self._cached_sessions += 1
        # Patch cached query results instead of recomputing them: this is what lets a client
        # page through a drifting result without the emulator re-filtering on every request.
        for result in self._queries.values():
            record = record_for(result.fmt_key)
            if result.matches(record):
                at = bisect_right(result.records, result.key(record), key=result.key)
                result.records.insert(at, record)
        return session_id

    def _pick_created(self, rng: random.Random, day: date | None, tz: str) -> int:
        if day is not None:
            lo = local_midnight_ticks(day, tz)
            hi = min(local_midnight_ticks(day + timedelta(days=1), tz), self._now + 1)
            if lo < hi:
                return lo + int(rng.random() * (hi - lo))
        return self._now - int(rng.random() * 60 * S)

    def insert_sessions(
        self,
        day: date | None = None,
        count: int = 1,
        tz: str = "UTC",
        *,
        at: datetime | None = None,
        account_id: str | None = None,
    ) -> list[str]:
        """Insert ``count`` new realistic sessions and return their ids.

        Each is created at ``at`` if given, else at a random instant of the local ``day`` in
        ``tz`` (not after now), else within the minute before now. Edit them further with
        :meth:`modify_session`.
        """
        ids = []
        with self._lock:
            rng = self._insert_rng
            for _ in range(count):
                created = ticks_from_datetime(at) if at else self._pick_created(rng, day, tz)
                account = account_id or self.factory.pick_account(rng).id
                ids.append(self._insert(account, created))
        return ids

    def modify_session(
        self,
        session_id: str,
        changes: dict[str, Any] | None = None,
        *,
        at: datetime | None = None,
        by: str = "system",
    ) -> dict:
        """Edit a session the way the service would and return its served dict afterwards.

        ``changes`` overwrites served fields (datetimes allowed for ``dateCompleted`` and
        ``log[].date``); ``dateLastModified`` moves to ``at`` (default: now, and always later
        than before) and ``lastModifiedBy`` to ``by``. ``id`` and ``dateCreated`` are fixed.
        """
        changes = dict(changes or {})
        if {"id", "dateCreated"} & changes.keys():
            raise ValueError("id and dateCreated cannot be changed")
        with self._lock:
            record = self.record(session_id)
            if record is None:
                raise KeyError(session_id)
            day = utc_day_of(record.created)
            canonical: dict[str, Any] = {}
            for name, value in changes.items():
                if isinstance(value, datetime):
                    value = ticks_from_datetime(value)
                if name == "log" and isinstance(value, list):
                    value = [
                        {
                            "date": ticks_from_datetime(e["date"])
                            if isinstance(e["date"], datetime)
                            else e["date"],
                            "message": e["message"],
                        }
                        for e in value
                    ]
                canonical[name] = value
            bumped = ticks_from_datetime(at) if at else self._now
            canonical["dateLastModified"] = max(bumped, record.modified + 1)
            canonical["lastModifiedBy"] = by
            overlay = self._overlay(day)
            overlay.changes[session_id] = {**overlay.changes.get(session_id, {}), **canonical}
            for (cached_day, fmt_key), data in self._days.items():
                current = data.by_id.get(session_id) if cached_day == day else None
                if current is not None:
                    data.add(self._with_changes(current, canonical, fmt_key))
            self._version += 1
            self._queries.clear()
        result = self.session(session_id)
        assert result is not None
        return result

    # -- drift -------------------------------------------------------------------------------

    def drift(self, query: SessionQuery, count: int, mode: str) -> list[str]:
        """Insert ``count`` sessions the way a busy live system would while a client pages.

        ``queried_day``: created inside the query's date range (falling back to ``now``
        without one); ``now``: created within the minute before now. When the query names
        accounts, the new sessions belong to them, so the client's result really shifts.
        """
        if count <= 0:
            return []
        ids = []
        with self._lock:
            rng = self._insert_rng
            accounts = sorted(a for a in query.account_ids or () if a in self.world.by_account_id)
            for _ in range(count):
                created = None
                if mode == "queried_day" and (
                    query.range_lo is not None or query.range_hi is not None
                ):
                    lo = query.range_lo
                    hi = query.range_hi
                    if lo is None:
                        lo = hi - TICKS_PER_DAY  # type: ignore[operator]
                    if hi is None:
                        hi = lo + TICKS_PER_DAY
                    hi = min(hi, self._now + 1)
                    if lo < hi:
                        created = lo + int(rng.random() * (hi - lo))
                if created is None:
                    created = self._now - int(rng.random() * 60 * S)
                account = rng.choice(accounts) if accounts else self.factory.pick_account(rng).id
                ids.append(self._insert(account, created))
        return ids
