"""Processes the reliability tests start (``python -m tests.reliability.worker ...``).

``sync FIRST LAST``
    Sync days with the real client and ``sync_range`` into ``$EVO_DATA_DIR`` (test-sized retry
    delays); prints one JSON line with the start and end times and the sessions committed.
    With ``RELIABILITY_GO_FILE`` set it prints ``ready`` once imported and starts when that
    file exists.
    With ``EVO_FAILPOINT`` set the process SIGKILLs itself at that point.
``hold-published PATH``
    A dashboard: open a read-only connection to the published copy, print what it sees, and
    print it again through the same connection on each line of stdin. (A new connection in the
    same process would share the open database: DuckDB caches one instance per path.)
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import date
from pathlib import Path


def cmd_sync(first: str, last: str) -> int:
    from pipeline.evo.client import EvoVoiceClient
    from pipeline.evo.settings import EvoVoiceSettings
    from pipeline.lake.store import Lake
    from pipeline.lake.warehouse import Warehouse
    from pipeline.sync import sync_range

    env = EvoVoiceSettings.from_env()
    settings = env.model_copy(
        update={"initial_retry_delay": 0.01, "max_retry_delay": 0.05, "max_retry_after": 0.05}
    )
    data = Path(os.environ["EVO_DATA_DIR"])
    go = os.environ.get("RELIABILITY_GO_FILE")
    if go:  # start together with the other workers: imports done, wait for the signal
        print("ready", flush=True)
        deadline = time.monotonic() + 120
        while not Path(go).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    started = time.time()
    with EvoVoiceClient(settings) as client:
        summaries = sync_range(
            client,
            Warehouse(data / "warehouse.duckdb", Lake(str(data / "lake"))),
            date.fromisoformat(first),
            date.fromisoformat(last),
        )
    print(
        json.dumps(
            {
                "started": started,
                "finished": time.time(),
                "sessions": {str(s.partition_date): s.sessions for s in summaries},
            }
        )
    )
    return 0


def cmd_hold_published(path: str) -> int:
    import duckdb

    held = duckdb.connect(path, read_only=True)
    print(json.dumps(published_view(held)), flush=True)
    for _ in sys.stdin:
        print(json.dumps(published_view(held)), flush=True)
    held.close()
    return 0


def published_view(con) -> list:
    """What a dashboard shows: sessions in the marts and the newest sync they include."""
    return list(
        con.execute(
            "SELECT (SELECT count(*) FROM marts.fct_sessions), "
            "(SELECT CAST(max(synced_at) AS VARCHAR) FROM raw.synced_days)"
        ).fetchone()
    )


def main(argv: list[str]) -> int:
    command, *args = argv
    return {"sync": cmd_sync, "hold-published": cmd_hold_published}[command](*args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
