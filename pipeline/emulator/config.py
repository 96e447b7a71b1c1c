"""The emulator's knobs, in one mutable dataclass.

The server reads the config object on every request, so a test can flip a knob on a running
emulator (``emu.config.error_rate_500 = 0.3``) and the next request sees it. Knobs that shape the
generated data (seed, volume, accounts, history, clock) are read when the store is built; change
those by starting a new emulator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from pipeline.emulator.timefmt import TIMESTAMP_FORMATS

SORT_FIELDS = ("dateCreated", "dateLastModified", "dateCompleted", "id")
DATE_FILTER_FIELDS = ("dateCreated", "dateCompleted")
DRIFT_MODES = ("queried_day", "now")


@dataclass
class EmulatorConfig:
    """Every setting of the emulated Evo Voice service.

    Data (read once, when the store is built):
        seed: Seed of all generated data; same seed, same bytes.
        sessions_per_day: Sessions created on each weekday (UTC day); weekends get
            ``sessions_per_day * weekend_factor``.
        weekend_factor: Volume of Saturdays and Sundays relative to weekdays.
        days_of_history: Days of history ending at ``history_end`` (inclusive), when
            ``history_start`` is not given.
        history_start: First UTC day with sessions (overrides ``days_of_history``).
        history_end: Last UTC day with sessions; default: the UTC day of ``now``.
        now: The emulator's clock, frozen at this instant (aware; naive means UTC). Default: the
            wall clock when the store is built, to the second. Sessions created after ``now``
            do not exist yet; sessions in progress at ``now`` are served as active.
        live_clock: Let the clock follow the wall clock while serving (re-read at most once a
            minute). Meant for a long-running ``fake-api``; keep it off in tests.
        accounts_count: Number of accounts; the first is a reseller parent of the others.
        username, password: The one login the service accepts (user name case-insensitive).

    Validation runs at construction only; keep runtime changes within the same ranges.

    Behaviour (read on every request):
        latency_ms: Delay added to every request; ``latency_jitter_ms`` adds uniform noise.
        fault_seed: Seed of the fault draws; one draw per eligible request, in arrival order.
        error_rate_500, error_rate_502, error_rate_503, error_rate_429, drop_rate, stall_rate:
            Probabilities (summing to at most 1) of each fault on a request. 500 carries a
            ServiceStack JSON error; 502/503 an HTML page from a "proxy"; 429 a ``Retry-After``;
            a drop closes the socket without answering; a stall waits ``stall_seconds`` and
            then answers normally (so a client read timeout trips first).
        retry_after_seconds: The ``Retry-After`` value on 429 (also sent on 503).
        retry_after_http_date: Send ``Retry-After`` as an HTTP-date instead of seconds.
        faults_on_auth_routes: Whether ``/auth*`` requests can fail too (default: exempt).
        page_size_cap: Silently serve at most this many items per page (None: no cap). The cap
            acts like a server-side clamp of countPerPage: page N starts at ``N * cap`` and
            totalPages is computed with the cap; ``all=true`` is not capped.
        max_count_per_page: ``countPerPage`` above this is a 400 (None: no limit).
        end_date_inclusive: Whether ``endDate=D`` includes the day D.
        date_filter_field: ``dateCreated`` or ``dateCompleted``: what startDate/endDate filter.
        date_filter_tz: IANA zone in which startDate/endDate days are read.
        honour_sort: When False, sortField/sortOrder are ignored and a fixed shuffled order
            (stable across requests) is served.
        default_sort_field, default_sort_order: The order when no sortField is sent (a
            sortField without sortOrder sorts ascending, as a non-nullable enum would).
        timestamp_format: One of ``z``, ``offset``, ``naive``, ``msdate``, ``mixed`` (see
            :mod:`pipeline.emulator.timefmt`). Changing it re-renders days on next use.
        include_null_values: Serialize null fields (True) or omit them the way ServiceStack's
            default ``JsConfig.IncludeNullValues=false`` does (False).
        archive_cutoff_days: Sessions created before ``now - cutoff`` are served only with
            ``searchArchive=true``, younger ones only without it.
        drift_per_request: Sessions inserted on every ListSessions request, before answering.
        drift_mode: ``queried_day`` (created on a day inside the request's date range; falls
            back to ``now`` without one) or ``now`` (created in the last minute before now).
        rewrite_sessions_page: For the bad-input corpus: ``f(page, body) -> body`` replaces the
            body of every successful ListSessions answer (None: serve what was generated).
        cookie_expiry_requests: A login session dies after this many authenticated requests
            (None: never). Basic auth is not affected.
        request_log_size: How many requests ``stats.request_log`` keeps.
        max_cached_sessions: Budget of generated sessions kept in memory (about 3 KB each);
            least recently used days beyond it are dropped and regenerated on demand
            (identically). Cached query results count against it too.
    """

    seed: int = 42
    sessions_per_day: int = 200
    weekend_factor: float = 0.3
    days_of_history: int = 30
    history_start: date | None = None
    history_end: date | None = None
    now: datetime | None = None
    live_clock: bool = False
    accounts_count: int = 4
    username: str = "demo@evo.local"
    password: str = "demo-password"

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    fault_seed: int = 0
    error_rate_500: float = 0.0
    error_rate_502: float = 0.0
    error_rate_503: float = 0.0
    error_rate_429: float = 0.0
    drop_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 5.0
    retry_after_seconds: int = 1
    retry_after_http_date: bool = False
    faults_on_auth_routes: bool = False

    page_size_cap: int | None = None
    max_count_per_page: int | None = None
    end_date_inclusive: bool = True
    date_filter_field: str = "dateCreated"
    date_filter_tz: str = "UTC"
    honour_sort: bool = True
    default_sort_field: str = "dateCreated"
    default_sort_order: str = "Descend"
    timestamp_format: str = "z"
    include_null_values: bool = True
    archive_cutoff_days: float = 15

    drift_per_request: int = 0
    drift_mode: str = "queried_day"

    rewrite_sessions_page: Callable[[int, bytes], bytes] | None = None
    cookie_expiry_requests: int | None = None
    request_log_size: int = 10_000
    max_cached_sessions: int = 1_500_000

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError on a setting the emulator cannot honour."""
        if self.sessions_per_day < 0:
            raise ValueError("sessions_per_day must be >= 0")
        if self.accounts_count < 1:
            raise ValueError("accounts_count must be >= 1")
        if self.timestamp_format not in TIMESTAMP_FORMATS:
            raise ValueError(f"timestamp_format must be one of {TIMESTAMP_FORMATS}")
        if self.date_filter_field not in DATE_FILTER_FIELDS:
            raise ValueError(f"date_filter_field must be one of {DATE_FILTER_FIELDS}")
        if self.default_sort_field not in SORT_FIELDS:
            raise ValueError(f"default_sort_field must be one of {SORT_FIELDS}")
        if self.default_sort_order not in ("Ascend", "Descend"):
            raise ValueError("default_sort_order must be Ascend or Descend")
        if self.drift_mode not in DRIFT_MODES:
            raise ValueError(f"drift_mode must be one of {DRIFT_MODES}")
        ZoneInfo(self.date_filter_tz)
        rates = self.fault_rates()
        if any(r < 0 for r in rates.values()) or sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates must be >= 0 and sum to at most 1")
        if self.page_size_cap is not None and self.page_size_cap < 1:
            raise ValueError("page_size_cap must be >= 1")

    def fault_rates(self) -> dict[str, float]:
        """Fault kind -> probability per eligible request."""
        return {
            "500": self.error_rate_500,
            "502": self.error_rate_502,
            "503": self.error_rate_503,
            "429": self.error_rate_429,
            "drop": self.drop_rate,
            "stall": self.stall_rate,
        }
