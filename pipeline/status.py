"""``evo-sync status``: which days are synced and complete, which are missing, how fresh the marts
are. The exit status is non-zero when a day in the range is missing or failing, or when there is
no warehouse, so the command can gate a cron job.

The warehouse is opened read-only, after waiting for the writer lock (a day load or a dbt build
holds the file; DuckDB admits no reader meanwhile).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
from filelock import FileLock, Timeout
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline import config

# The schedule rebuilds the marts daily at 02:00: two hours' slack before they count as stale.
# The Dagster freshness checks (pipeline/checks.py) use the same limit.
MARTS_STALE_AFTER = timedelta(hours=26)
LOCK_WAIT_SECONDS = 120
CONSOLE_WIDTH_WHEN_PIPED = 120


class NoWarehouse(Exception):
    """The warehouse file does not exist (nothing was ever synced into this data folder)."""


@dataclass(frozen=True)
class DayStatus:
    """One row of ``raw.synced_days``, judged at ``now``."""

    day: date
    sessions: int
    rejected: int
    synced_at: datetime
    complete: bool | None
    closed: bool  # the day had ended (in EVO_VOICE_TIMEZONE) when the status was taken
    in_range: bool
    window_distinct_sessions: int | None = None
    server_total_count: int | None = None
    unknown_fields: dict[str, int] = field(default_factory=dict)
    unknown_enum_values: dict[str, int] = field(default_factory=dict)

    @property
    def check(self) -> str:
        """The completeness check: ``ok``, ``incomplete`` or ``unknown`` (no server count)."""
        return {True: "ok", False: "incomplete", None: "unknown"}[self.complete]

    @property
    def failing(self) -> bool:
        """Fewer sessions than the server counted, on a day that can no longer grow."""
        return self.complete is False and self.closed


@dataclass(frozen=True)
class MartFreshness:
    name: str
    last_synced_at: datetime | None  # newest last_synced_at; None when the mart is empty
    stale: bool


@dataclass
class StatusReport:
    warehouse_path: Path
    now: datetime
    start: date | None  # None: nothing synced and no start configured
    end: date
    days: list[DayStatus]  # synced days from ``start`` on (days after ``end`` too)
    earlier_days: int  # synced days before ``start``, not listed
    missing: list[date]
    marts_built: bool
    marts: list[MartFreshness]
    published_at: datetime | None = None  # mtime of the published BI copy, if any

    @property
    def failing(self) -> list[DayStatus]:
        return [d for d in self.days if d.in_range and d.failing]

    @property
    def range_days(self) -> int:
        return 0 if self.start is None else max(0, (self.end - self.start).days + 1)

    @property
    def ok(self) -> bool:
        return self.range_days > 0 and not self.missing and not self.failing

    @property
    def marts_last_synced_at(self) -> datetime | None:
        stamps = [m.last_synced_at for m in self.marts if m.last_synced_at is not None]
        return max(stamps, default=None)

    @property
    def marts_stale(self) -> bool:
        newest = self.marts_last_synced_at
        return newest is None or self.now - newest > MARTS_STALE_AFTER


def collect_status(
    warehouse_path: Path, start: date | None, end: date | None, now: datetime
) -> StatusReport:
    """Read the synced days and the marts' watermarks from the warehouse at ``warehouse_path``.

    Args:
        start: first day expected; default ``EVO_SYNC_START_DATE`` if set, else the first
            synced day.
        end: last day expected; default the day before ``now`` in ``EVO_VOICE_TIMEZONE``.
        now: the time the status is taken (timezone-aware).

    Raises:
        NoWarehouse: the file does not exist.
        filelock.Timeout: a writer held the warehouse for ``LOCK_WAIT_SECONDS``.
    """
    warehouse_path = Path(warehouse_path)
    if not warehouse_path.is_file():
        raise NoWarehouse(warehouse_path)
    today = now.astimezone(ZoneInfo(config.timezone_name())).date()
    with (
        FileLock(str(warehouse_path) + ".lock", timeout=LOCK_WAIT_SECONDS),
        duckdb.connect(str(warehouse_path), read_only=True) as con,
    ):
        con.execute("SET TimeZone = 'UTC'")
        rows = _synced_days(con)
        marts = _mart_watermarks(con)
    if start is None and os.environ.get("EVO_SYNC_START_DATE", "").strip():
        start = config.sync_start_date()
    if start is None and rows:
        start = rows[0]["partition_date"]
    end = end if end is not None else today - timedelta(days=1)

    days, earlier = [], 0
    for row in rows:
        day = row["partition_date"]
        if start is None or day < start:
            earlier += 1
            continue
        days.append(
            DayStatus(
                day=day,
                sessions=row["sessions"] or 0,
                rejected=row["rejected"] or 0,
                synced_at=row["synced_at"],
                complete=row["complete"],
                closed=day < today,
                in_range=day <= end,
                window_distinct_sessions=row["window_distinct_sessions"],
                server_total_count=row["server_total_count"],
                unknown_fields=_counts(row["unknown_fields"]),
                unknown_enum_values=_counts(row["unknown_enum_values"]),
            )
        )
    synced = {d.day for d in days}
    missing = []
    if start is not None:
        day = start
        while day <= end:
            if day not in synced:
                missing.append(day)
            day += timedelta(days=1)
    published = warehouse_path.parent / "published" / warehouse_path.name
    return StatusReport(
        warehouse_path=warehouse_path,
        now=now,
        start=start,
        end=end,
        days=days,
        earlier_days=earlier,
        missing=missing,
        marts_built=marts is not None,
        marts=[
            MartFreshness(name, stamp, stamp is None or now - stamp > MARTS_STALE_AFTER)
            for name, stamp in (marts or {}).items()
        ],
        published_at=(
            datetime.fromtimestamp(published.stat().st_mtime, UTC) if published.is_file() else None
        ),
    )


def _synced_days(con: duckdb.DuckDBPyConnection) -> list[dict]:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND table_schema = 'raw' "
        "AND table_name = 'synced_days'"
    ).fetchone()[0]
    if not exists:
        return []
    result = con.execute(
        "SELECT partition_date, sessions, rejected, synced_at, complete, "
        "window_distinct_sessions, server_total_count, unknown_fields, unknown_enum_values "
        "FROM raw.synced_days ORDER BY partition_date"
    )
    names = [d[0] for d in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _mart_watermarks(con: duckdb.DuckDBPyConnection) -> dict[str, datetime | None] | None:
    """Newest ``last_synced_at`` of each mart that has one; None when no mart was built."""
    tables = [
        row[0]
        for row in con.execute(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_catalog = current_database() AND table_schema = 'marts' "
            "AND column_name = 'last_synced_at' ORDER BY table_name"
        ).fetchall()
    ]
    if not tables:
        return None
    return {
        table: con.execute(f'SELECT max(last_synced_at) FROM marts."{table}"').fetchone()[0]
        for table in tables
    }


def _counts(text: str | None) -> dict[str, int]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {"(unreadable)": 1}
    return value if isinstance(value, dict) else {}


def ago(then: datetime, now: datetime) -> str:
    """``then`` relative to ``now``: "just now", "12 min ago", "3 h ago", "4 d ago"."""
    seconds = (now - then).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def day_ranges(days: list[date]) -> str:
    """Consecutive days folded: ``2026-03-01..2026-03-04, 2026-03-09``."""
    parts: list[str] = []
    run: list[date] = []
    for day in [*sorted(days), None]:
        if run and (day is None or day - run[-1] != timedelta(days=1)):
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}..{run[-1]}")
            run = []
        if day is not None:
            run.append(day)
    return ", ".join(parts)


def render(report: StatusReport, console: Console) -> None:
    """The days table, the missing and failing days, the marts' freshness and a verdict."""
    table = Table(title=f"Synced days in {report.warehouse_path}", title_justify="left")
    table.add_column("day", no_wrap=True)
    table.add_column("sessions", justify="right")
    table.add_column("last synced", no_wrap=True)
    table.add_column("complete", no_wrap=True)
    table.add_column("unknown fields / enum values")
    table.add_column("rejected", justify="right")
    for day in report.days:
        table.add_row(
            str(day.day) + ("" if day.in_range else " (after range)"),
            f"{day.sessions:,}",
            ago(day.synced_at, report.now),
            _check_text(day),
            _unknowns(day),
            Text(f"{day.rejected:,}", style="yellow" if day.rejected else ""),
        )
    console.print(table)
    if report.earlier_days:
        console.print(f"({report.earlier_days} synced day(s) before {report.start} not shown)")

    if report.start is None:
        console.print(Text("No days synced yet.", style="bold red"))
    else:
        console.print(
            f"Range {report.start}..{report.end} ({report.range_days} days, "
            f"EVO_VOICE_TIMEZONE={config.timezone_name()})"
        )
        if report.missing:
            console.print(
                Text(
                    f"Missing {len(report.missing)} day(s): {day_ranges(report.missing)}",
                    style="bold red",
                )
            )
        elif report.range_days:
            console.print(Text("No missing days.", style="green"))
        else:
            console.print(Text("No days in range.", style="bold red"))
        for day in report.failing:
            console.print(
                Text(
                    f"Incomplete closed day {day.day}: saw {day.window_distinct_sessions} "
                    f"distinct sessions in its window, the server counted "
                    f"{day.server_total_count}; re-sync it (evo-sync backfill --start {day.day} "
                    f"--end {day.day}).",
                    style="bold red",
                )
            )

    _render_marts(report, console)
    if report.ok:
        console.print(Text("OK", style="bold green"))
    else:
        problems = []
        if report.missing:
            problems.append(f"{len(report.missing)} missing day(s)")
        if report.failing:
            problems.append(f"{len(report.failing)} incomplete closed day(s)")
        if not report.range_days:
            problems.append("no days in range")
        console.print(Text("FAILED: " + ", ".join(problems), style="bold red"))


def _render_marts(report: StatusReport, console: Console) -> None:
    limit = int(MARTS_STALE_AFTER.total_seconds() // 3600)
    if not report.marts_built:
        console.print(
            Text("Marts: not built (run `evo-sync backfill` without --no-dbt).", style="yellow")
        )
        return
    table = Table(
        title=f"Marts freshness (newest last_synced_at; stale after {limit} h)",
        title_justify="left",
    )
    table.add_column("mart", no_wrap=True)
    table.add_column("last_synced_at (UTC)", no_wrap=True)
    table.add_column("age", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for mart in report.marts:
        stamp = mart.last_synced_at
        table.add_row(
            mart.name,
            stamp.strftime("%Y-%m-%d %H:%M") if stamp else "(empty)",
            ago(stamp, report.now) if stamp else "",
            Text("stale", style="yellow") if mart.stale else Text("fresh", style="green"),
        )
    console.print(table)
    newest = report.marts_last_synced_at
    if report.marts_stale:
        age = f"newest sync {ago(newest, report.now)}" if newest else "no rows"
        console.print(
            Text(f"Marts are stale ({age}, limit {limit} h): is the schedule running?", "yellow")
        )
    if report.published_at is not None:
        console.print(f"BI copy (published/): written {ago(report.published_at, report.now)}")


def _check_text(day: DayStatus) -> Text:
    if day.complete is True:
        return Text("ok", style="green")
    if day.complete is None:
        return Text("unknown", style="dim")
    if day.failing:
        return Text("incomplete", style="bold red")
    return Text("incomplete (day still open)", style="yellow")


def _unknowns(day: DayStatus) -> str:
    items = [f"{name} ×{n}" for name, n in sorted(day.unknown_fields.items())]
    items += [f"{name} ×{n}" for name, n in sorted(day.unknown_enum_values.items())]
    return ", ".join(items) if items else "-"


def status_command(args: argparse.Namespace) -> int:
    """Print the status of the warehouse in ``EVO_DATA_DIR``; 0 when every day in range is
    synced and none is failing."""
    if args.start and args.end and args.end < args.start:
        print(f"evo-sync status: --end {args.end} is before --start {args.start}", file=sys.stderr)
        return 1
    path = config.warehouse_path()
    try:
        report = collect_status(path, args.start, args.end, datetime.now(UTC))
    except NoWarehouse:
        print(
            f"evo-sync status: no warehouse at {path}; run `make demo` or "
            "`evo-sync backfill --start YYYY-MM-DD --end YYYY-MM-DD` first",
            file=sys.stderr,
        )
        return 1
    except Timeout:
        print(
            f"evo-sync status: the warehouse at {path} stayed locked by a sync or dbt build "
            f"for {LOCK_WAIT_SECONDS} s; try again",
            file=sys.stderr,
        )
        return 1
    except ValueError as error:  # a malformed EVO_SYNC_START_DATE
        print(f"evo-sync status: {error}", file=sys.stderr)
        return 1
    console = Console()
    if not console.is_terminal:
        console = Console(width=CONSOLE_WIDTH_WHEN_PIPED)
    render(report, console)
    return 0 if report.ok else 1
