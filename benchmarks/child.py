"""Measured work that runs in a fresh process: one JSON line of results on stdout.

    child.py ingest   --base-url URL --first D --last D --data-dir DIR [--concurrency N]
                      [--days-per-fetch N] [--parallel-fetches N] [--today D] [--profile FILE]
    child.py stages   --base-url URL --first D --last D --data-dir DIR [--today D]
    child.py dagster  --first D --last D [--with-dbt] [--profile FILE]   (EVO_* set by the parent)
    child.py dlt      --base-url URL --queries JSON --data-dir DIR [--concurrency N]
                      [--file-format parquet]
    child.py daily    --history-first D --history-last D --today D --first D --last D

``ingest`` calls ``pipeline.sync.sync_days`` and reports its wall time, CPU time, and the peak
RSS of this process (``ru_maxrss``) with the RSS after imports as the baseline. ``stages``
replays ``sync_range`` step by step (fetch+decode, flatten, dedup, Parquet, DuckDB) with a
timer around each step, to say where the time goes without a profiler's overhead.
``dagster`` times ``pipeline.cli.run_backfill`` after importing the Dagster definitions;
``daily`` loads a history, builds the marts, then times the daily sync (see :func:`cmd_daily`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

USERNAME = "demo@evo.local"
PASSWORD = "demo-password"


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    """This process's peak RSS. ``VmHWM`` (not ``ru_maxrss``: Linux carries the parent's
    ``ru_maxrss`` across fork+exec, so a big parent would mask the child's own peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _client(base_url: str, concurrency: int):
    from pipeline.evo.client import EvoVoiceClient
    from pipeline.evo.settings import EvoVoiceSettings

    settings = EvoVoiceSettings(
        base_url=base_url, username=USERNAME, password=PASSWORD, concurrency=concurrency
    )
    return EvoVoiceClient(settings, seed=0)


def cmd_ingest(args: argparse.Namespace) -> dict:
    import pyarrow as pa

    from pipeline.lake.store import Lake
    from pipeline.lake.warehouse import Warehouse
    from pipeline.sync import sync_days

    data = Path(args.data_dir)
    baseline = _rss_mb()
    client = _client(args.base_url, args.concurrency)
    lake = Lake(str(data / "lake"))
    warehouse = Warehouse(data / "warehouse.duckdb", lake)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu0, t0 = _cpu(), time.perf_counter()
    outcome = sync_days(
        client,
        warehouse,
        date.fromisoformat(args.first),
        date.fromisoformat(args.last),
        days_per_fetch=args.days_per_fetch,
        parallel_fetches=args.parallel_fetches,
        today=date.fromisoformat(args.today) if args.today else None,
    )
    seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    if outcome.failed:
        raise SystemExit(f"ingest failed: {outcome.failed}")
    return {
        "sessions": sum(s.sessions for s in outcome.committed),
        "members": sum(s.members for s in outcome.committed),
        "log_rows": sum(s.log_rows for s in outcome.committed),
        "breadcrumbs": sum(s.breadcrumbs for s in outcome.committed),
        "pages": client.stats.pages,
        "requests": client.stats.requests,
        "bytes": client.stats.bytes,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": _peak_rss_mb(),
        "arrow_pool_max_mb": pa.default_memory_pool().max_memory() / 2**20,
    }


def cmd_dlt(args: argparse.Namespace) -> dict:
    """dlt over the same pages (see ``contenders.dlt_load``), in its own process."""
    from common import Query
    from contenders import dlt_load

    queries = [Query(params) for params in json.loads(args.queries)]
    result = dlt_load(
        args.base_url, queries, args.concurrency, Path(args.data_dir), args.file_format or None
    )
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


# (label, thread, module, attribute path) of the steps ``sync_range`` calls; each is wrapped
# with a timer. Steps in the paging threads overlap the main thread's work.
MAIN, PAGING = "main", "paging threads"
STEPS = (
    ("count requests (count_stores)", MAIN, "pipeline.sync", "count_stores"),
    ("waiting for the next page", MAIN, "pipeline.sync", "iter_window_pages"),
    (
        "parse pages in batches (parse_screened_pages)",
        MAIN,
        "pipeline.sync",
        "parse_screened_pages",
    ),
    ("flatten decoded pages (flatten_columnar)", MAIN, "pipeline.sync", "flatten_columnar"),
    ("flatten dict pages (flatten_page)", MAIN, "pipeline.sync", "flatten_page"),
    ("Parquet staging (RangeWriter.write)", MAIN, "pipeline.lake.store", "RangeWriter.write"),
    ("Parquet staging (RangeWriter.finish)", MAIN, "pipeline.lake.store", "RangeWriter.finish"),
    ("de-duplication (_Copies.resolve)", MAIN, "pipeline.sync", "_Copies.resolve"),
    ("drop duplicate copies (_drop_copies)", MAIN, "pipeline.sync", "_drop_copies"),
    ("lake publish (Lake.publish_day)", MAIN, "pipeline.lake.store", "Lake.publish_day"),
    ("Parquet row counts (_file_rows)", MAIN, "pipeline.sync", "_file_rows"),
    ("DuckDB commit (replace_day)", MAIN, "pipeline.sync", "replace_day"),
    ("HTTP request (EvoVoiceClient._send)", PAGING, "pipeline.evo.client", "EvoVoiceClient._send"),
    ("screen page (screen_sessions_page)", PAGING, "pipeline.sync", "screen_sessions_page"),
)
RESIDUAL = "sync_range's own code (batching, bookkeeping, summaries)"


def cmd_stages(args: argparse.Namespace) -> dict:
    """The real ``sync_days`` (1 worker) with a timer wrapped around each step it calls. Steps
    of the main thread add up to the wall time (what no wrapper covers is ``sync_range``'s own
    code); steps of the paging threads run alongside them."""
    import functools
    import importlib
    import inspect
    from collections import Counter

    timings: Counter[tuple[str, str]] = Counter()

    def timed(key, fn):
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def generator(*a, **k):
                iterator = fn(*a, **k)
                while True:
                    t = time.perf_counter()
                    try:
                        item = next(iterator)
                    except StopIteration:
                        return
                    finally:
                        timings[key] += time.perf_counter() - t
                    yield item

            return generator

        @functools.wraps(fn)
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timings[key] += time.perf_counter() - t

        return wrapper

    missing = []
    for label, thread, module_name, path in STEPS:
        owner = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent, None)
        if owner is None or not hasattr(owner, name):
            missing.append(path)  # the pipeline changed: report it rather than fail
            continue
        setattr(owner, name, timed((label, thread), getattr(owner, name)))
    args.concurrency = 1
    args.profile = None
    result = cmd_ingest(args)
    covered = sum(seconds for (_, thread), seconds in timings.items() if thread == MAIN)
    timings[(RESIDUAL, MAIN)] = max(0.0, result["seconds"] - covered)
    result["stages"] = [[label, thread, seconds] for (label, thread), seconds in timings.items()]
    result["missing_steps"] = missing
    return result


def cmd_dagster(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    import pipeline.definitions  # noqa: F401  (partitions read EVO_SYNC_START_DATE here)
    from pipeline.cli import run_backfill

    import_seconds = time.perf_counter() - t0
    first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu0, t0 = _cpu(), time.perf_counter()
    report = run_backfill(first, last, with_dbt=args.with_dbt, show_progress=False)
    seconds = time.perf_counter() - t0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    if not report.ok:
        raise SystemExit(f"backfill failed: {report.failed} dbt={report.dbt_error}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "sessions": report.sessions,
        "days": len(report.days_ok),
        "seconds": seconds,
        "cpu_seconds": _cpu() - cpu0,
        "children_cpu_seconds": children.ru_utime + children.ru_stime,
        "import_seconds": import_seconds,
        "dbt_ok": report.dbt_ok,
        "peak_rss_mb": _peak_rss_mb(),
    }


def cmd_daily(args: argparse.Namespace) -> dict:
    """Scenario 7 in one process: load the history directly (``sync_days``), build the marts
    (the Dagster ``dbt_job``), then time the daily sync: ``run_backfill(first, last,
    with_dbt=True)``."""
    import contextlib
    import io
    import logging

    t0 = time.perf_counter()
    import dagster as dg

    import pipeline.definitions as definitions
    from pipeline import cli
    from pipeline.lake.store import Lake
    from pipeline.lake.warehouse import Warehouse
    from pipeline.sync import sync_days

    import_seconds = time.perf_counter() - t0
    data = Path(os.environ["EVO_DATA_DIR"])
    prep0 = time.perf_counter()
    with _client(os.environ["EVO_VOICE_BASE_URL"], 4) as client:
        outcome = sync_days(
            client,
            Warehouse(data / "warehouse.duckdb", Lake(str(data / "lake"))),
            date.fromisoformat(args.history_first),
            date.fromisoformat(args.history_last),
            days_per_fetch=args.days_per_fetch,
            parallel_fetches=2,
            today=date.fromisoformat(args.today),
        )
    if outcome.failed:
        raise SystemExit(f"history load failed: {outcome.failed}")
    history = sum(s.sessions for s in outcome.committed)
    load_seconds = time.perf_counter() - prep0
    cli.ensure_dagster_home()
    logging.getLogger().setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):
        built = definitions.defs.resolve_job_def("dbt_job").execute_in_process(
            instance=dg.DagsterInstance.get(),
            run_config=cli.QUIET_RUN_CONFIG,
            raise_on_error=False,
        )
    if not built.success:
        raise SystemExit("the initial dbt build failed")
    prep_seconds = time.perf_counter() - prep0
    first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
    children0 = _children_cpu()
    cpu0, t0 = _cpu(), time.perf_counter()
    report = cli.run_backfill(first, last, with_dbt=True, show_progress=False)
    seconds = time.perf_counter() - t0
    if not report.ok:
        raise SystemExit(f"daily sync failed: {report.failed} dbt={report.dbt_error}")
    return {
        "history": history,
        "history_load_seconds": load_seconds,
        "prep_seconds": prep_seconds,
        "sessions": report.sessions,
        "days": len(report.days_ok),
        "seconds": seconds,
        "cpu_seconds": _cpu() - cpu0,
        "children_cpu_seconds": _children_cpu() - children0,
        "import_seconds": import_seconds,
        "peak_rss_mb": _peak_rss_mb(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("ingest", "stages"):
        sub = commands.add_parser(name)
        sub.add_argument("--base-url", required=True)
        sub.add_argument("--first", required=True)
        sub.add_argument("--last", required=True)
        sub.add_argument("--data-dir", required=True)
        sub.add_argument("--today")
        sub.add_argument("--concurrency", type=int, default=1)
        sub.add_argument("--days-per-fetch", type=int, default=7)
        sub.add_argument("--parallel-fetches", type=int, default=1)
        sub.add_argument("--profile")
    dag = commands.add_parser("dagster")
    dag.add_argument("--first", required=True)
    dag.add_argument("--last", required=True)
    dag.add_argument("--with-dbt", action="store_true")
    dag.add_argument("--profile")
    dlt_cmd = commands.add_parser("dlt")
    dlt_cmd.add_argument("--base-url", required=True)
    dlt_cmd.add_argument("--queries", required=True, help="JSON list of query parameter dicts")
    dlt_cmd.add_argument("--data-dir", required=True)
    dlt_cmd.add_argument("--concurrency", type=int, default=1)
    dlt_cmd.add_argument("--file-format", default="")
    daily = commands.add_parser("daily")
    daily.add_argument("--history-first", required=True)
    daily.add_argument("--history-last", required=True)
    daily.add_argument("--today", required=True)
    daily.add_argument("--days-per-fetch", type=int, default=7)
    daily.add_argument("--first", required=True)
    daily.add_argument("--last", required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("RUNTIME__DLT_TELEMETRY_DISABLED", "true")
    handler = {
        "ingest": cmd_ingest,
        "stages": cmd_stages,
        "dagster": cmd_dagster,
        "daily": cmd_daily,
        "dlt": cmd_dlt,
    }[args.command]
    result = handler(args)
    sys.stdout.write("BENCH-RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
