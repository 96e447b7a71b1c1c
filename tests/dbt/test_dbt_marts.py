"""The dbt project: `dbt build` over the raw schema produces correct, day-incremental marts.

Behaviour under test, on a small hand-built raw data set (see "The data set" below):
- `dbt build` (models, data tests, unit tests) succeeds, with unknown enum values only warned
  about, and leaves exactly the schemas raw / staging / marts;
- every mart equals the metric definitions of docs/metrics.md recomputed in plain Python;
- after a re-sync (one day replaced, one day gone to zero sessions, one new day), an
  incremental build rebuilds only those days and equals a `--full-refresh` build;
- `dbt docs generate` works and every model and column is described.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest

# --------------------------------------------------------------------------- the data set

# The raw-schema contract (as loaded by pipeline/), a hand-built data set and a dbt runner.
#
# The data set is deliberately varied: three local days in America/New_York around the March
# 2024 DST switch (one session created on a UTC date that differs from its local date), two
# resellers' worth of customers, both directions, missed / answered / active / inconsistent
# sessions, an empty breadcrumb trail, a NULL ``was_missed``, a Chat, a Fax and an unknown
# channel, a day synced to zero sessions and accounts with and without billing items.

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT = REPO_ROOT / "dbt_project"
TIMEZONE = "America/New_York"
TZ = ZoneInfo(TIMEZONE)

RAW_DDL = """
create schema if not exists raw;
create table raw.sessions (
    session_id varchar, partition_date date, date_created timestamptz,
    date_last_modified timestamptz, date_completed timestamptz, dial_state varchar,
    call_state varchar, queue_state varchar, account_id varchar, account_name varchar,
    customer_id varchar, customer_name varchar, endpoint_id varchar, endpoint_name varchar,
    destination varchar, to_address varchar, from_address varchar, from_name varchar,
    answered_by_name varchar, queue_member_id varchar, channel varchar, ended boolean,
    outcome varchar, call_sid varchar, console_data varchar, hold_queue_name varchar,
    held_by_user_id varchar, hold_reason varchar, conference_sid varchar, display_name varchar,
    callback_number varchar, answered_by_id varchar, direction varchar,
    from_phone_number varchar, most_recent_participant_call_sid varchar, was_missed boolean,
    ring_queue_id varchar, created_by varchar, last_modified_by varchar, extra_fields varchar,
    sync_id varchar, synced_at timestamptz
);
create table raw.session_members (
    session_id varchar, member_index integer, identity varchar, endpoint_id varchar,
    display_name varchar, is_original_member boolean, avatar_url varchar,
    application_data varchar, call_state varchar, role varchar, call_sid varchar,
    muted boolean, extra_fields varchar, partition_date date, synced_at timestamptz
);
create table raw.session_log (
    session_id varchar, log_index integer, logged_at timestamptz, message varchar,
    partition_date date, synced_at timestamptz
);
create table raw.session_breadcrumbs (
    session_id varchar, position integer, customer_id varchar, customer_name varchar,
    partition_date date, synced_at timestamptz
);
create table raw.accounts (
    account_id varchar, name varchar, parent_account_id varchar, twilio_account_sid varchar,
    ancestor_ids varchar[], max_phone_numbers integer, is_byoa boolean,
    trust_hub_profile_sid varchar, logo_id varchar, logo_uri varchar,
    date_created timestamptz, date_last_modified timestamptz, created_by varchar,
    last_modified_by varchar, extra_fields varchar, synced_at timestamptz
);
create table raw.account_billing_items (
    account_id varchar, item varchar, base_cost double, raw_unit_multiplier double,
    unit_cost double, allowance double, synced_at timestamptz
);
create table raw.synced_days (
    partition_date date, sync_id varchar, synced_at timestamptz, sessions integer,
    members integer, log_rows integer, breadcrumbs integer, pages integer, rejected integer,
    complete boolean
);
"""


def utc(text: str) -> datetime:
    """Parse an ISO timestamp written in UTC (``2024-03-09T14:00:00.25``)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local_day(ts: datetime) -> date:
    return ts.astimezone(TZ).date()


@dataclass
class Session:
    """One raw session plus its children, with only the fields the marts read set."""

    session_id: str
    created: datetime
    seconds: float | None  # None: still active (no date_completed)
    account: tuple[str, str]
    channel: str = "Voice"
    direction: str = "Incoming"
    was_missed: bool | None = False
    customer: tuple[str, str] | None = None
    crumbs: list[tuple[str, str]] = field(default_factory=list)
    endpoint: tuple[str, str] | None = None
    members: int = 1
    log: int = 1
    call_state: str = "Disconnected"
    completed: datetime | None = None  # overrides created + seconds (for completed < created)

    def __post_init__(self) -> None:
        if self.completed is None and self.seconds is not None:
            self.completed = self.created + timedelta(seconds=self.seconds)

    @property
    def partition_date(self) -> date:
        return local_day(self.created)


ACC1 = ("acc-1", "Reseller Co")
ACC2 = ("acc-2", "Direct Ltd")
RES1 = ("res-1", "Reseller One")
TOP2 = ("top-2", "Top Two")
ALPHA = ("cust-a", "Alpha")
BETA = ("cust-b", "Beta")
GAMMA = ("cust-c", "Gamma")
FRONT = ("ep-1", "Front desk")
SALES = ("ep-2", "Sales")
SUPPORT = ("ep-3", "Support")
BOT = ("ep-4", "Outbound bot")

DAY0, DAY1, DAY2, DAY3, DAY4 = (date(2024, 3, d) for d in (8, 9, 10, 11, 12))


def initial_sessions() -> list[Session]:
    a_trail = [RES1, ALPHA]
    b_trail = [RES1, BETA]
    # fmt: off
    return [
        # DAY1 (Saturday 2024-03-09, EST = UTC-5)
        Session("s01", utc("2024-03-09T14:00:00"), 125.5, ACC1, customer=ALPHA,
                crumbs=a_trail, endpoint=FRONT, members=2, log=3),
        Session("s02", utc("2024-03-09T15:10:00"), 20, ACC1, was_missed=True,
                customer=BETA, crumbs=b_trail, endpoint=FRONT),
        Session("s03", utc("2024-03-09T16:00:00.25"), 300.25, ACC1, direction="Outgoing",
                customer=ALPHA, crumbs=a_trail, endpoint=SALES, members=3, log=0),
        # Created on UTC 2024-03-10, local 2024-03-09 22:30; 59.999999 s.
        Session("s04", utc("2024-03-10T03:30:00"), 59.999999, ACC2, customer=GAMMA,
                endpoint=SUPPORT, log=2),
        Session("s05", utc("2024-03-09T18:00:00"), 600, ACC2, channel="Chat",
                customer=GAMMA, endpoint=SUPPORT),
        Session("s06", utc("2024-03-09T20:00:00"), None, ACC1, customer=ALPHA,
                crumbs=a_trail, endpoint=FRONT, call_state="Connected", members=2),
        Session("s07", utc("2024-03-09T12:00:00"), None, ACC2, direction="Outgoing",
                customer=GAMMA, endpoint=BOT, completed=utc("2024-03-09T11:59:00")),
        Session("s08", utc("2024-03-09T13:00:00"), 45, ACC2, was_missed=None, members=0),
        Session("s09", utc("2024-03-09T13:30:00"), 5, ACC2, channel="Video",
                customer=GAMMA, endpoint=SUPPORT, call_state="Parked"),
        # DAY2 (Sunday 2024-03-10, DST starts 02:00 local)
        Session("s10", utc("2024-03-10T06:30:00"), 90, ACC1, customer=ALPHA,
                crumbs=a_trail, endpoint=FRONT),
        Session("s11", utc("2024-03-10T07:30:00"), 15, ACC1, was_missed=True,
                customer=BETA, crumbs=b_trail, endpoint=FRONT),
        Session("s12", utc("2024-03-10T16:00:00"), 200, ACC2, customer=GAMMA,
                crumbs=[TOP2, GAMMA], endpoint=SUPPORT),
        Session("s13", utc("2024-03-10T17:00:00"), 33.3, ACC2, direction="Outgoing",
                customer=GAMMA, crumbs=[TOP2, GAMMA], endpoint=SUPPORT),
        Session("s14", utc("2024-03-10T18:00:00"), 12, ACC1, channel="Fax",
                direction="Outgoing", customer=ALPHA, crumbs=a_trail, endpoint=SALES),
        # DAY3 (Monday 2024-03-11, EDT = UTC-4)
        Session("s15", utc("2024-03-11T13:00:00"), 25, ACC1, was_missed=True,
                customer=BETA, crumbs=b_trail, endpoint=SALES),
        Session("s16", utc("2024-03-11T14:00:00"), 10, ACC2, customer=GAMMA,
                endpoint=SUPPORT),
    ]
    # fmt: on


def resynced_sessions() -> list[Session]:
    """The sessions after DAY2 is re-synced with other rows, DAY3 goes to zero, DAY4 arrives."""
    kept = [s for s in initial_sessions() if s.partition_date == DAY1]
    # fmt: off
    day2 = [
        Session("s10", utc("2024-03-10T06:30:00"), 95.5, ACC1, was_missed=True,
                customer=ALPHA, crumbs=[RES1, ALPHA], endpoint=FRONT, members=3),
        Session("s12", utc("2024-03-10T16:00:00"), 210, ACC2, customer=GAMMA,
                crumbs=[TOP2, GAMMA], endpoint=SUPPORT, log=4),
        Session("s13", utc("2024-03-10T17:00:00"), 33.3, ACC2, direction="Outgoing",
                customer=GAMMA, crumbs=[TOP2, GAMMA], endpoint=SUPPORT),
        Session("s17", utc("2024-03-10T19:45:00"), 61, ACC1, direction="Outgoing",
                customer=BETA, crumbs=[RES1, BETA], endpoint=SALES),
    ]
    day4 = [
        Session("s18", utc("2024-03-12T15:00:00"), 42, ACC1, customer=ALPHA,
                crumbs=[RES1, ALPHA], endpoint=FRONT),
    ]
    # fmt: on
    return kept + day2 + day4


# Watermarks. The DAY2 re-sync lands *before* DAY3's first sync: a day re-synced out of
# order must still be rebuilt.
INITIAL_SYNCS = {
    DAY0: utc("2024-03-10T05:00:00"),
    DAY1: utc("2024-03-11T05:00:00"),
    DAY2: utc("2024-03-11T05:01:00"),
    DAY3: utc("2024-03-12T05:00:00"),
}
RESYNCS = {
    DAY2: utc("2024-03-11T06:00:00"),
    DAY3: utc("2024-03-13T05:01:00"),
    DAY4: utc("2024-03-13T05:02:00"),
}

ACCOUNTS = [
    # account_id, name, parent, ancestors, billing items {item: (base, mult, unit, allowance)}
    (
        "acc-1",
        "Reseller Co",
        None,
        [],
        {
            "base": (10.0, 1.0, 0.0, 0.0),
            "inboundVoiceCalls": (0.0, 1.0, 0.0125, 1000.0),
            "outboundVoiceCalls": (0.0, 1.0, 0.02, 500.0),
            "localNumbers": (1.0, 1.0, 1.5, 2.0),
        },
    ),
    (
        "acc-2",
        "Direct Ltd",
        "acc-1",
        ["acc-1"],
        {
            "inboundVoiceCalls": (0.0, 1.0, 0.01, 250.0),
        },
    ),
    ("acc-3", "No Billing", None, [], {}),
]


def _session_row(s: Session, synced_at: datetime) -> dict:
    customer_id, customer_name = s.customer or (None, None)
    endpoint_id, endpoint_name = s.endpoint or (None, None)
    return {
        "session_id": s.session_id,
        "partition_date": s.partition_date,
        "date_created": s.created,
        "date_last_modified": s.completed or s.created,
        "date_completed": s.completed,
        "dial_state": "Active" if s.completed is None else "None",
        "call_state": s.call_state,
        "queue_state": "None",
        "account_id": s.account[0],
        "account_name": s.account[1],
        "customer_id": customer_id,
        "customer_name": customer_name,
        "endpoint_id": endpoint_id,
        "endpoint_name": endpoint_name,
        "to_address": "+15550000001",
        "from_address": "+15550000002",
        "answered_by_id": None if s.was_missed else endpoint_id,
        "answered_by_name": None if s.was_missed else endpoint_name,
        "channel": s.channel,
        "ended": s.completed is not None,
        "outcome": "Missed" if s.was_missed else "Completed",
        "hold_reason": "None",
        "direction": s.direction,
        "was_missed": s.was_missed,
        "extra_fields": None,
        "sync_id": f"sync-{s.partition_date}-{synced_at:%H%M}",
        "synced_at": synced_at,
    }


def _child_rows(s: Session, synced_at: datetime) -> dict[str, list[dict]]:
    roles = ["Caller", "Agent", "Transfer"]
    common = {
        "session_id": s.session_id,
        "partition_date": s.partition_date,
        "synced_at": synced_at,
    }
    return {
        "session_members": [
            common
            | {
                "member_index": i,
                "identity": f"{s.session_id}-m{i}",
                "role": roles[i % 3],
                "call_state": "None",
                "muted": False,
                "is_original_member": i == 0,
                "application_data": "{}",
            }
            for i in range(s.members)
        ],
        "session_log": [
            common
            | {
                "log_index": i,
                "logged_at": s.created + timedelta(seconds=i),
                "message": f"step {i}",
            }
            for i in range(s.log)
        ],
        "session_breadcrumbs": [
            common | {"position": i, "customer_id": cid, "customer_name": name}
            for i, (cid, name) in enumerate(s.crumbs)
        ],
    }


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: Iterable[dict]) -> None:
    rows = list(rows)
    if not rows:
        return
    columns = list(rows[0])
    placeholders = ", ".join("?" for _ in columns)
    con.executemany(
        f"insert into raw.{table} ({', '.join(columns)}) values ({placeholders})",
        [[row[c] for c in columns] for row in rows],
    )


def write_days(
    con: duckdb.DuckDBPyConnection, sessions: list[Session], syncs: dict[date, datetime]
) -> None:
    """Replace the given days whole, as the ingestion does, and record them in synced_days."""
    days = list(syncs)
    for table in ("sessions", "session_members", "session_log", "session_breadcrumbs"):
        con.execute(
            f"delete from raw.{table} where list_contains(?::date[], partition_date)", [days]
        )
    con.execute(
        "delete from raw.synced_days where list_contains(?::date[], partition_date)", [days]
    )
    counts: dict[date, dict[str, int]] = {
        d: dict.fromkeys(("sessions", "session_members", "session_log", "session_breadcrumbs"), 0)
        for d in days
    }
    for s in sessions:
        if s.partition_date not in syncs:
            continue
        synced_at = syncs[s.partition_date]
        _insert(con, "sessions", [_session_row(s, synced_at)])
        counts[s.partition_date]["sessions"] += 1
        for table, rows in _child_rows(s, synced_at).items():
            _insert(con, table, rows)
            counts[s.partition_date][table] += len(rows)
    _insert(
        con,
        "synced_days",
        [
            {
                "partition_date": d,
                "sync_id": f"sync-{d}-{at:%H%M}",
                "synced_at": at,
                "sessions": c["sessions"],
                "members": c["session_members"],
                "log_rows": c["session_log"],
                "breadcrumbs": c["session_breadcrumbs"],
                "pages": 1,
                "rejected": 0,
                "complete": True,
            }
            for d, c in counts.items()
            for at in [syncs[d]]
        ],
    )


def create_raw_warehouse(path: Path) -> None:
    """A warehouse file holding only the raw schema, loaded with the initial data set."""
    refreshed = utc("2024-03-13T04:00:00")
    with duckdb.connect(str(path)) as con:
        con.execute(RAW_DDL)
        for account_id, name, parent, ancestors, items in ACCOUNTS:
            _insert(
                con,
                "accounts",
                [
                    {
                        "account_id": account_id,
                        "name": name,
                        "parent_account_id": parent,
                        "ancestor_ids": ancestors,
                        "max_phone_numbers": 10,
                        "is_byoa": False,
                        "date_created": utc("2023-01-01T00:00:00"),
                        "synced_at": refreshed,
                    }
                ],
            )
            _insert(
                con,
                "account_billing_items",
                [
                    {
                        "account_id": account_id,
                        "item": item,
                        "base_cost": b,
                        "raw_unit_multiplier": m,
                        "unit_cost": u,
                        "allowance": a,
                        "synced_at": refreshed,
                    }
                    for item, (b, m, u, a) in items.items()
                ],
            )
        write_days(con, initial_sessions(), INITIAL_SYNCS)


def resync_raw_warehouse(path: Path) -> None:
    with duckdb.connect(str(path)) as con:
        write_days(con, resynced_sessions(), RESYNCS)


def dbt_env(data_dir: Path, warehouse: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "EVO_"))}
    env |= {
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "EVO_DATA_DIR": str(data_dir),
        "EVO_VOICE_TIMEZONE": TIMEZONE,
    }
    if warehouse is not None:
        env["EVO_WAREHOUSE_PATH"] = str(warehouse)
    return env


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else (shutil.which("dbt") or "dbt")


def run_dbt(
    args: list[str], work_dir: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run dbt on the project with its own target and log folders under ``work_dir``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [
            dbt_executable(),
            *args,
            "--project-dir",
            str(DBT_PROJECT),
            "--profiles-dir",
            str(DBT_PROJECT),
            "--target-path",
            str(work_dir / "target"),
            "--log-path",
            str(work_dir / "logs"),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


MARTS = (
    "fct_sessions",
    "dim_accounts",
    "missed_call_rate_daily",
    "call_durations_daily",
    "missed_calls_by_hour",
    "endpoint_performance_daily",
    "customer_calls_daily",
)
DAILY_MARTS = tuple(m for m in MARTS if m == "fct_sessions" or m.endswith("_daily"))
KEYS = {
    "fct_sessions": ("session_id",),
    "dim_accounts": ("account_id",),
    "missed_call_rate_daily": ("session_date", "account_id", "direction"),
    "call_durations_daily": ("session_date", "account_id", "direction"),
    "missed_calls_by_hour": ("account_id", "day_of_week", "hour_of_day"),
    "endpoint_performance_daily": ("session_date", "endpoint_id"),
    "customer_calls_daily": ("session_date", "top_customer_id"),
}
SENTINEL = 1000

Rows = dict[tuple, dict]


# --------------------------------------------------------------------------- expectations


def quantile_cont(values: list[float], q: float) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def duration(s: Session) -> float | None:
    if s.completed is None or s.completed < s.created:
        return None
    return (s.completed - s.created).total_seconds()


def is_answered(s: Session) -> bool:
    return s.was_missed is not True and duration(s) is not None


def expected_fct(sessions: list[Session], syncs: dict[date, datetime]) -> Rows:
    rows = {}
    for s in sessions:
        raw = _session_row(s, syncs[s.partition_date])
        children = _child_rows(s, syncs[s.partition_date])
        top = s.crumbs[0] if s.crumbs else s.customer or (None, None)
        local = s.created.astimezone(TZ)
        rows[(s.session_id,)] = {
            "session_id": s.session_id,
            "session_date": s.partition_date,
            "started_at": s.created,
            "completed_at": s.completed,
            "duration_seconds": duration(s),
            "was_missed": s.was_missed,
            "ended": raw["ended"],
            "channel": s.channel,
            "direction": s.direction,
            "account_id": raw["account_id"],
            "account_name": raw["account_name"],
            "customer_id": raw["customer_id"],
            "customer_name": raw["customer_name"],
            "top_customer_id": top[0],
            "top_customer_name": top[1],
            "endpoint_id": raw["endpoint_id"],
            "endpoint_name": raw["endpoint_name"],
            "answered_by_id": raw["answered_by_id"],
            "answered_by_name": raw["answered_by_name"],
            "outcome": raw["outcome"],
            "from_address": raw["from_address"],
            "from_name": raw.get("from_name"),
            "to_address": raw["to_address"],
            "member_count": len(children["session_members"]),
            "log_entry_count": len(children["session_log"]),
            "hour_of_day": local.hour,
            "day_of_week": local.isoweekday(),
            "sync_id": raw["sync_id"],
            "synced_at": raw["synced_at"],
            "last_synced_at": syncs[s.partition_date],
        }
    return rows


def group(sessions: list[Session], key) -> dict[tuple, list[Session]]:
    groups: dict[tuple, list[Session]] = defaultdict(list)
    for s in sessions:
        groups[key(s)].append(s)
    return groups


def expected_marts(sessions: list[Session], syncs: dict[date, datetime]) -> dict[str, Rows]:
    voice = [s for s in sessions if s.channel == "Voice"]
    incoming = [s for s in voice if s.direction == "Incoming"]
    day_key = lambda s: (s.partition_date, s.account[0], s.direction)  # noqa: E731
    marts: dict[str, Rows] = {"fct_sessions": expected_fct(sessions, syncs)}

    marts["missed_call_rate_daily"] = {
        k: {
            "total_calls": len(g),
            "missed_calls": sum(s.was_missed is True for s in g),
            "missed_call_rate": rate(sum(s.was_missed is True for s in g), len(g)),
            "last_synced_at": syncs[k[0]],
        }
        for k, g in group(voice, day_key).items()
    }
    marts["call_durations_daily"] = {
        k: {
            "answered_calls": len(d),
            "avg_duration_seconds": sum(d) / len(d),
            "median_duration_seconds": quantile_cont(d, 0.5),
            "p90_duration_seconds": quantile_cont(d, 0.9),
            "max_duration_seconds": max(d),
            "total_duration_seconds": sum(d),
            "last_synced_at": syncs[k[0]],
        }
        for k, g in group([s for s in voice if is_answered(s)], day_key).items()
        for d in [[duration(s) for s in g]]
    }
    marts["missed_calls_by_hour"] = {
        k: {
            "total_calls": len(g),
            "missed_calls": sum(s.was_missed is True for s in g),
            "missed_call_rate": rate(sum(s.was_missed is True for s in g), len(g)),
        }
        for k, g in group(
            incoming,
            lambda s: (
                s.account[0],
                s.created.astimezone(TZ).isoweekday(),
                s.created.astimezone(TZ).hour,
            ),
        ).items()
    }

    def performance(g: list[Session], name: str) -> dict:
        inc = [s for s in g if s.direction == "Incoming"]
        missed = sum(s.was_missed is True for s in inc)
        answered = [duration(s) for s in inc if is_answered(s)]
        latest = max(g, key=lambda s: s.created)
        return {
            name: (
                latest.endpoint
                if name == "endpoint_name"
                else (latest.crumbs[0] if latest.crumbs else latest.customer)
            )[1],
            "total_calls": len(g),
            "incoming_calls": len(inc),
            "outgoing_calls": sum(s.direction == "Outgoing" for s in g),
            "missed_calls": missed,
            "missed_call_rate": rate(missed, len(inc)),
            "answered_calls": len(answered),
            "avg_duration_seconds": sum(answered) / len(answered) if answered else None,
            "median_duration_seconds": quantile_cont(answered, 0.5),
            "last_synced_at": syncs[g[0].partition_date],
        }

    marts["endpoint_performance_daily"] = {
        k: performance(g, "endpoint_name")
        | {
            "p90_duration_seconds": quantile_cont(
                [duration(s) for s in g if s.direction == "Incoming" and is_answered(s)], 0.9
            )
        }
        for k, g in group(
            [s for s in voice if s.endpoint], lambda s: (s.partition_date, s.endpoint[0])
        ).items()
    }
    top_id = lambda s: (s.crumbs[0] if s.crumbs else s.customer or (None,))[0]  # noqa: E731
    marts["customer_calls_daily"] = {
        k: performance(g, "top_customer_name")
        for k, g in group(
            [s for s in voice if top_id(s)], lambda s: (s.partition_date, top_id(s))
        ).items()
    }

    names = {a[0]: a[1] for a in ACCOUNTS}
    marts["dim_accounts"] = {
        (account_id,): {
            "account_name": name,
            "parent_account_id": parent,
            "parent_account_name": names.get(parent),
            "ancestor_ids": ancestors,
            "base_cost": items.get("base", (None,))[0],
            "inbound_voice_unit_cost": items.get("inboundVoiceCalls", (0, 0, None))[2],
            "inbound_voice_allowance": items.get("inboundVoiceCalls", (0, 0, 0, None))[3],
            "outbound_voice_unit_cost": items.get("outboundVoiceCalls", (0, 0, None))[2],
            "outbound_voice_allowance": items.get("outboundVoiceCalls", (0, 0, 0, None))[3],
            "billing_items": {
                item: dict(
                    zip(
                        ("base_cost", "raw_unit_multiplier", "unit_cost", "allowance"),
                        v,
                        strict=True,
                    )
                )
                for item, v in items.items()
            }
            or None,
        }
        for account_id, name, parent, ancestors, items in ACCOUNTS
    }
    return marts


# --------------------------------------------------------------------------- helpers


def read_marts(path: Path) -> dict[str, Rows]:
    """Every mart, keyed by its grain."""
    marts = {}
    with duckdb.connect(str(path), read_only=True) as con:
        for mart in MARTS:
            cursor = con.execute(f"select * from marts.{mart}")
            columns = [d[0] for d in cursor.description]
            rows = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
            keyed = {tuple(r[k] for k in KEYS[mart]): r for r in rows}
            assert len(keyed) == len(rows), f"{mart}: duplicate grain keys"
            marts[mart] = keyed
    return marts


def same(actual, expected) -> bool:
    if isinstance(expected, float) or isinstance(actual, float):
        return (
            actual is not None
            and expected is not None
            and math.isclose(actual, expected, rel_tol=1e-12, abs_tol=1e-9)
        )
    return actual == expected


def assert_rows_match(mart: str, actual: Rows, expected: Rows) -> None:
    """Same grain keys; every expected column equal (floats within 1e-9)."""
    assert sorted(actual, key=repr) == sorted(expected, key=repr), f"{mart}: keys differ"
    for key, want in expected.items():
        got = actual[key]
        if isinstance(want.get("billing_items"), dict):
            got = got | {"billing_items": json.loads(got["billing_items"])}
        diffs = {c: (got[c], v) for c, v in want.items() if not same(got[c], v)}
        assert not diffs, f"{mart}{key}: (actual, expected) {diffs}"


@dataclass
class Build:
    data_dir: Path
    work_dir: Path
    marts: dict[str, Rows]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def initial(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The raw data set built once with `dbt build` (warehouse found through EVO_DATA_DIR)."""
    root = tmp_path_factory.mktemp("dbt")
    data_dir = root / "data"
    data_dir.mkdir()
    create_raw_warehouse(data_dir / "warehouse.duckdb")
    work_dir = root / "incremental"
    result = run_dbt(["build"], work_dir, dbt_env(data_dir))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return Build(data_dir, work_dir, read_marts(data_dir / "warehouse.duckdb"))


@pytest.fixture(scope="module")
def resynced(initial: Build) -> tuple[Build, Build, dict[str, int]]:
    """A re-sync, an incremental build, then a --full-refresh build of a copy.

    Returns (incremental, full refresh, sentinels still present after the incremental run).
    """
    warehouse = initial.data_dir / "warehouse.duckdb"
    # Sentinels on an untouched day: they survive only if that day is not rebuilt.
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            f"update marts.fct_sessions set log_entry_count = log_entry_count + {SENTINEL} "
            "where session_date = ?",
            [DAY1],
        )
        con.execute(
            f"update marts.missed_call_rate_daily set total_calls = total_calls + {SENTINEL} "
            "where session_date = ?",
            [DAY1],
        )
    resync_raw_warehouse(warehouse)

    result = run_dbt(["build"], initial.work_dir, dbt_env(initial.data_dir))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    with duckdb.connect(str(warehouse)) as con:
        sentinels = {
            "fct_sessions": con.execute(
                f"select count(*) from marts.fct_sessions where session_date = ? "
                f"and log_entry_count >= {SENTINEL}",
                [DAY1],
            ).fetchone()[0],
            "missed_call_rate_daily": con.execute(
                f"select count(*) from marts.missed_call_rate_daily where session_date = ? "
                f"and total_calls >= {SENTINEL}",
                [DAY1],
            ).fetchone()[0],
        }
        con.execute(
            f"update marts.fct_sessions set log_entry_count = log_entry_count - {SENTINEL} "
            f"where log_entry_count >= {SENTINEL}"
        )
        con.execute(
            f"update marts.missed_call_rate_daily set total_calls = total_calls - {SENTINEL} "
            f"where total_calls >= {SENTINEL}"
        )
    incremental = Build(initial.data_dir, initial.work_dir, read_marts(warehouse))

    # Full refresh of a copy under another file name, chosen through EVO_WAREHOUSE_PATH
    # (which must win over EVO_DATA_DIR, still pointing at the original).
    copy = initial.data_dir.parent / "refresh" / "refreshed.duckdb"
    copy.parent.mkdir()
    shutil.copy(warehouse, copy)
    with duckdb.connect(str(copy)) as con:
        # Stale values that only a full rebuild *of the copy* repairs.
        con.execute("update marts.fct_sessions set log_entry_count = -1")
        con.execute("update marts.missed_call_rate_daily set total_calls = -1")
    refresh_dir = initial.data_dir.parent / "full_refresh"
    env = dbt_env(initial.data_dir, warehouse=copy)
    result = run_dbt(["build", "--full-refresh"], refresh_dir, env)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    full_refresh = Build(copy.parent, refresh_dir, read_marts(copy))
    return incremental, full_refresh, sentinels


# --------------------------------------------------------------------------- tests


def test_build_succeeds_and_only_warns_on_unknown_enum_values(initial: Build) -> None:
    results = json.loads((initial.work_dir / "target" / "run_results.json").read_text())
    statuses = defaultdict(list)
    for r in results["results"]:
        statuses[r["status"]].append(r["unique_id"])
    assert set(statuses) <= {"success", "pass", "warn"}, dict(statuses)
    # The data set has channel 'Video' and call_state 'Parked', unknown to the API docs.
    warned = sorted(u.split(".")[2] for u in statuses["warn"])
    assert len(warned) == 2, warned
    assert warned[0].startswith("accepted_values_stg_evo__sessions_call_state_")
    assert warned[1].startswith("accepted_values_stg_evo__sessions_channel_")
    unit_tests = [u for u in statuses["pass"] if u.startswith("unit_test.")]
    assert len(unit_tests) >= 7


def test_schemas_are_exactly_raw_staging_marts(initial: Build) -> None:
    with duckdb.connect(str(initial.data_dir / "warehouse.duckdb"), read_only=True) as con:
        tables = con.execute(
            "select table_schema, table_name, table_type from information_schema.tables "
            "where table_catalog = 'warehouse'"
        ).fetchall()
        schemas = {
            r[0]
            for r in con.execute(
                "select schema_name from information_schema.schemata "
                "where catalog_name = 'warehouse'"
            ).fetchall()
        }
    # `main` is DuckDB's built-in default schema; dbt must leave it empty.
    assert schemas - {"main"} == {"raw", "staging", "marts"}
    assert {s for s, _, _ in tables} == {"raw", "staging", "marts"}
    assert {t for s, t, kind in tables if s == "marts" and kind == "BASE TABLE"} == set(MARTS)
    assert all(kind == "VIEW" for s, _, kind in tables if s == "staging")


@pytest.mark.parametrize("mart", MARTS)
def test_marts_match_python_definitions(initial: Build, mart: str) -> None:
    expected = expected_marts(initial_sessions(), INITIAL_SYNCS)[mart]
    assert_rows_match(mart, initial.marts[mart], expected)


def test_fct_sessions_columns(initial: Build) -> None:
    row = next(iter(initial.marts["fct_sessions"].values()))
    assert list(row) == list(next(iter(expected_fct(initial_sessions(), INITIAL_SYNCS).values())))


def test_incremental_build_rebuilds_only_resynced_days(initial, resynced) -> None:
    incremental, _, sentinels = resynced
    # DAY1 was not re-synced: neither fct_sessions nor a daily mart rebuilt it.
    n_day1 = sum(1 for s in initial_sessions() if s.partition_date == DAY1)
    assert sentinels == {"fct_sessions": n_day1, "missed_call_rate_daily": 4}
    for mart in DAILY_MARTS:
        days = {row["session_date"] for row in incremental.marts[mart].values()}
        assert DAY3 not in days, f"{mart}: day re-synced to zero sessions still there"
        assert DAY4 in days, f"{mart}: new day missing"
        assert DAY2 in days
    # DAY2's re-sync landed before DAY3's first sync, yet DAY2 was rebuilt.
    fct = incremental.marts["fct_sessions"]
    assert ("s11",) not in fct and ("s17",) in fct
    assert fct[("s10",)]["was_missed"] is True


@pytest.mark.parametrize("mart", MARTS)
def test_incremental_equals_full_refresh(resynced, mart: str) -> None:
    incremental, full_refresh, _ = resynced
    assert_rows_match(mart, incremental.marts[mart], full_refresh.marts[mart])


@pytest.mark.parametrize("mart", MARTS)
def test_resynced_marts_match_python_definitions(resynced, mart: str) -> None:
    incremental, _, _ = resynced
    syncs = INITIAL_SYNCS | RESYNCS
    expected = expected_marts(resynced_sessions(), syncs)[mart]
    assert_rows_match(mart, incremental.marts[mart], expected)


def test_docs_generate_describes_every_model_and_column(resynced) -> None:
    _, full_refresh, _ = resynced
    env = dbt_env(full_refresh.data_dir, warehouse=full_refresh.data_dir / "refreshed.duckdb")
    result = run_dbt(["docs", "generate"], full_refresh.work_dir, env)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    target = full_refresh.work_dir / "target"
    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    undocumented = []
    for uid, node in {**manifest["nodes"], **manifest["sources"]}.items():
        if node["resource_type"] not in ("model", "source"):
            continue
        if not node["description"].strip():
            undocumented.append(uid)
        built = catalog["nodes" if uid.startswith("model.") else "sources"][uid]["columns"]
        documented = {c for c, col in node["columns"].items() if col["description"].strip()}
        undocumented += [f"{uid}.{c}" for c in built if c not in documented]
    assert not undocumented
    models = [u for u in manifest["nodes"] if u.startswith("model.")]
    assert len(models) == 14
    assert all(
        manifest["nodes"][f"model.evo_voice.{m}"]["description"].startswith("One row per")
        for m in MARTS
    )


def test_session_tests_check_only_the_days_being_built(resynced, tmp_path) -> None:
    """A bad row on a day the marts already hold (same sync) is not read by the daily build's
    tests; it is found once that day is re-synced, and by a run that tests every day."""
    incremental, _, _ = resynced
    data_dir = tmp_path / "data"
    shutil.copytree(incremental.data_dir, data_dir, ignore=shutil.ignore_patterns("*.wal"))
    warehouse = data_dir / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "insert into raw.session_members (session_id, member_index, partition_date, "
            "synced_at) select null, 0, partition_date, synced_at from raw.synced_days "
            "where partition_date = ?",
            [DAY1],
        )
    env = dbt_env(data_dir)
    members = ["test", "--select", "stg_evo__session_members"]

    def failed(result: subprocess.CompletedProcess[str]) -> list[str]:
        results = json.loads((tmp_path / "work" / "target" / "run_results.json").read_text())
        return sorted(r["unique_id"].split(".")[2] for r in results["results"] if r["failures"])

    scoped = run_dbt(members, tmp_path / "work", env)
    assert scoped.returncode == 0, scoped.stdout[-4000:]
    everything = run_dbt([*members, "--vars", "{evo_test_all_days: true}"], tmp_path / "work", env)
    assert everything.returncode != 0
    assert failed(everything) == ["not_null_stg_evo__session_members_session_id"]

    with duckdb.connect(str(warehouse)) as con:  # the day is re-synced: its sync is new
        con.execute(
            "update raw.synced_days set synced_at = synced_at + interval 1 hour "
            "where partition_date = ?",
            [DAY1],
        )
    resync = run_dbt(members, tmp_path / "work", env)
    assert resync.returncode != 0
    assert failed(resync) == ["not_null_stg_evo__session_members_session_id"]
