"""Named crash points for the reliability suite: ``EVO_FAILPOINT=<name>`` makes the process
SIGKILL itself when it reaches that point, so tests can prove what a crash leaves behind.

Unset (always, outside those tests) a failpoint is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

FAILPOINTS = (
    "after_first_page",  # while paging
    "after_first_row_group",  # while writing Parquet
    "between_lake_swaps",  # while moving a day's folders into the lake
    "inside_duckdb_transaction",  # while committing a day in DuckDB
    "before_publish",  # after dbt, before the BI copy is replaced
)


def failpoint(name: str) -> None:
    if os.environ.get("EVO_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
