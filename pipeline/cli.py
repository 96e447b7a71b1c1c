"""``evo-sync``: backfill days through the Dagster definitions, run the demo, serve the emulator.

Heavy imports (Dagster, dbt) happen inside the commands that need them, so ``evo-sync --help``
and ``evo-sync fake-api`` start instantly.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pipeline import config, progress

log = logging.getLogger("evo_sync")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


@dataclass
class BackfillReport:
    """What a backfill did: the CLI's exit status and failure lines come from here."""

    days_ok: list[date] = field(default_factory=list)
    failed: dict[date, str] = field(default_factory=dict)
    # Closed days loaded with fewer distinct sessions than the server's totalCount.
    incomplete: dict[date, str] = field(default_factory=dict)
    sessions: int = 0
    dbt_ok: bool | None = None
    dbt_error: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.incomplete and self.dbt_ok is not False


# Days per Dagster run of a CLI backfill. A run has fixed costs (its planned events, a count
# request, its request windows' margin days): over a quarter of quiet days they are a few
# percent. Days still commit one by one, and request windows are sized by volume, not by the run
# (ingestion.fetch_window_days), so a longer run holds no more in memory at a time. Backfills
# launched from Dagster keep runs of a month (the asset's backfill policy).
BACKFILL_DAYS_PER_RUN = 92


def run_backfill(
    start: date, end: date, *, with_dbt: bool = True, show_progress: bool = True
) -> BackfillReport:
    """Sync ``start..end`` (inclusive) through the Dagster definitions, then build dbt.

    Runs are recorded in the Dagster instance at ``DAGSTER_HOME`` when it is set (an ephemeral
    one otherwise). Each day commits on its own, so earlier days stay loaded on failure.
    """
    if end < start:
        raise SystemExit(f"evo-sync: --end {end} is before --start {start}")
    import dagster as dg
    from tqdm import tqdm

    if os.environ.get("DAGSTER_HOME"):
        ensure_dagster_home()

    from pipeline.definitions import defs
    from pipeline.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG

    _quiet_dagster()
    instance = (
        dg.DagsterInstance.get()
        if os.environ.get("DAGSTER_HOME")
        else (dg.DagsterInstance.ephemeral())
    )
    report = BackfillReport()
    total_days = (end - start).days + 1
    bar = tqdm(
        total=total_days,
        unit="day",
        disable=not show_progress,
        file=sys.stderr,
        desc="syncing",
        dynamic_ncols=True,
    )

    fetched = 0

    def listen(event: str, payload: Any) -> None:
        nonlocal fetched
        if event == "page":  # a request window commits its days at its end: show it moving
            fetched += payload
            bar.set_postfix(sessions=report.sessions, fetched=fetched, refresh=False)
        elif event == "day":
            report.days_ok.append(payload.partition_date)
            report.sessions += payload.sessions
            if payload.complete is False and payload.partition_date < _today():
                report.incomplete[payload.partition_date] = (
                    f"saw {payload.window_distinct_sessions} distinct sessions in the request "
                    f"window, the server counted {payload.server_total_count}; re-run the day"
                )
            bar.update(1)
            bar.set_postfix(sessions=report.sessions, fetched=fetched, refresh=False)
        elif event == "failed":
            day, reason = payload
            report.failed[day] = reason
            bar.update(1)

    progress.set_listener(listen)
    try:
        job = defs.resolve_job_def("ingest_job")
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(end, chunk_start + timedelta(days=BACKFILL_DAYS_PER_RUN - 1))
            result = job.execute_in_process(
                instance=instance,
                run_config=QUIET_RUN_CONFIG,
                tags={
                    PARTITION_RANGE_START_TAG: chunk_start.isoformat(),
                    PARTITION_RANGE_END_TAG: chunk_end.isoformat(),
                },
                raise_on_error=False,
            )
            if not result.success:
                _record_unexplained_failures(result, report, chunk_start, chunk_end)
            chunk_start = chunk_end + timedelta(days=1)
    finally:
        progress.set_listener(None)
        bar.close()

    if with_dbt and report.days_ok:
        # dbt prints a line per model and test; keep it for when something fails.
        dbt_output = io.StringIO()
        if show_progress:
            print("building the dbt models (staging, marts, tests)...", file=sys.stderr)
        with contextlib.redirect_stdout(dbt_output):
            result = defs.resolve_job_def("dbt_job").execute_in_process(
                instance=instance, run_config=QUIET_RUN_CONFIG, raise_on_error=False
            )
        report.dbt_ok = result.success
        if not result.success:
            report.dbt_error = _first_failure(result) or "dbt build failed"
            sys.stderr.write("".join(dbt_output.getvalue().splitlines(True)[-30:]))
    return report


def _today() -> date:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(config.timezone_name())).date()


def _record_unexplained_failures(
    result: Any, report: BackfillReport, first: date, last: date
) -> None:
    """Days of a failed run that neither committed nor reported a reason (a crash before the
    fetch began, bad settings): give them the run's own error."""
    reason = _first_failure(result) or "run failed"
    day = first
    while day <= last:
        if day not in report.days_ok and day not in report.failed:
            report.failed[day] = reason
        day += timedelta(days=1)


def _first_failure(result: Any) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None:
            error = event.step_failure_data.error
            user = error.cause if error and error.cause else error
            message = (user.message if user else "").strip()
            return message.splitlines()[0] if message else "step failed"
    return ""


# Dagster's console logger prints every event; on a terminal we want the progress bar and the
# failures only (the runs' full event logs stay in the Dagster instance).
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def _quiet_dagster() -> None:
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)


def cmd_backfill(args: argparse.Namespace) -> int:
    report = run_backfill(
        args.start, args.end, with_dbt=not args.no_dbt, show_progress=not args.quiet
    )
    for day, reason in sorted(report.failed.items()):
        print(f"FAILED {day}: {reason}", file=sys.stderr)
    for day, reason in sorted(report.incomplete.items()):
        print(f"INCOMPLETE {day}: {reason}", file=sys.stderr)
    if report.dbt_ok is False:
        print(f"FAILED dbt build: {report.dbt_error}", file=sys.stderr)
    print(
        f"synced {len(report.days_ok)} of {(args.end - args.start).days + 1} days, "
        f"{report.sessions} sessions"
        + ("" if report.dbt_ok is None else f"; dbt build {'ok' if report.dbt_ok else 'failed'}")
    )
    return 0 if report.ok else 1


def cmd_fake_api(args: argparse.Namespace) -> int:
    from pipeline.emulator import EmulatorConfig, serve_forever

    emulator_config = EmulatorConfig(
        seed=args.seed,
        sessions_per_day=args.sessions_per_day,
        days_of_history=args.days,
        live_clock=True,
    )
    serve_forever(emulator_config, host=args.host, port=args.port)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    return run_demo(days=args.days, sessions_per_day=args.sessions_per_day, seed=args.seed)


def cmd_dev(args: argparse.Namespace) -> int:
    """``dagster dev`` on the workspace, against the emulator unless EVO_VOICE_BASE_URL is set."""
    import subprocess

    command = [
        config.venv_executable("dagster"),
        "dev",
        "-w",
        str(config.PROJECT_ROOT / "workspace.yaml"),
        "--port",
        str(args.port),
    ]
    ensure_dagster_home()
    if os.environ.get("EVO_VOICE_BASE_URL"):
        return subprocess.call(command, cwd=config.PROJECT_ROOT)
    from pipeline.emulator import EmulatorConfig, run_emulator

    emulator_config = EmulatorConfig(seed=args.seed, days_of_history=45, live_clock=True)
    with run_emulator(emulator_config) as emulator:
        print(f"Evo Voice emulator at {emulator.base_url}")
        env = {
            **os.environ,
            "EVO_VOICE_BASE_URL": emulator.base_url,
            "EVO_VOICE_USERNAME": emulator_config.username,
            "EVO_VOICE_PASSWORD": emulator_config.password,
        }
        return subprocess.call(command, cwd=config.PROJECT_ROOT, env=env)


def cmd_docs(args: argparse.Namespace) -> int:
    """Generate the dbt docs and serve them on localhost."""
    import subprocess

    from pipeline.dbt_project import dbt_executable

    dbt = [dbt_executable()]
    flags = [
        "--project-dir",
        str(config.DBT_PROJECT_DIR),
        "--profiles-dir",
        str(config.DBT_PROJECT_DIR),
    ]
    status = subprocess.call([*dbt, "docs", "generate", *flags])
    if status != 0 or args.no_serve:
        return status
    return subprocess.call(
        [*dbt, "docs", "serve", "--port", str(args.port), "--host", "127.0.0.1", *flags]
    )


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.report import report_command

    return report_command(args)


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.status import status_command

    return status_command(args)


def ensure_dagster_home() -> None:
    """Give a new DAGSTER_HOME our instance settings (telemetry off, one DuckDB writer)."""
    from pathlib import Path

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str(config.PROJECT_ROOT / ".dagster_home")
        os.environ["DAGSTER_HOME"] = home
    target = Path(home) / "dagster.yaml"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((config.PROJECT_ROOT / "dagster-instance.yaml").read_text())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evo-sync", description="Evo Voice call-analytics warehouse: sync, demo, emulator."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    backfill = commands.add_parser(
        "backfill", help="sync a range of days through Dagster, then build the dbt models"
    )
    backfill.add_argument("--start", type=_date, required=True, help="first day, YYYY-MM-DD")
    backfill.add_argument("--end", type=_date, required=True, help="last day (inclusive)")
    backfill.add_argument("--no-dbt", action="store_true", help="skip the dbt build")
    backfill.add_argument("--quiet", action="store_true", help="no progress bar")
    backfill.set_defaults(func=cmd_backfill)

    demo = commands.add_parser(
        "demo", help="start the emulator, backfill the last 14 days, build, and summarise"
    )
    demo.add_argument("--days", type=int, default=14)
    demo.add_argument("--sessions-per-day", type=int, default=1500)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)

    fake = commands.add_parser("fake-api", help="serve the Evo Voice emulator")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8000)
    fake.add_argument("--seed", type=int, default=7)
    fake.add_argument("--sessions-per-day", type=int, default=1500)
    fake.add_argument("--days", type=int, default=45, help="days of history")
    fake.set_defaults(func=cmd_fake_api)

    dev = commands.add_parser(
        "dev", help="dagster dev (with the emulator unless EVO_VOICE_BASE_URL is set)"
    )
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--seed", type=int, default=7)
    dev.set_defaults(func=cmd_dev)

    docs = commands.add_parser("docs", help="generate and serve the dbt docs")
    docs.add_argument("--port", type=int, default=8080)
    docs.add_argument("--no-serve", action="store_true", help="only generate")
    docs.set_defaults(func=cmd_docs)

    report = commands.add_parser(
        "report", help="write the HTML dashboard ($EVO_DATA_DIR/report.html) from the marts"
    )
    report.add_argument("--output", help="where to write it (default $EVO_DATA_DIR/report.html)")
    report.set_defaults(func=cmd_report)

    status = commands.add_parser(
        "status", help="synced days, completeness and freshness; non-zero exit on gaps"
    )
    status.add_argument(
        "--start",
        type=_date,
        help="first day expected (default EVO_SYNC_START_DATE, else the first synced day)",
    )
    status.add_argument("--end", type=_date, help="last day expected (default yesterday)")
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config.export_data_dir()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
