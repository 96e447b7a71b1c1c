"""Flatten API pages into Arrow tables, write the Parquet lake, and the DuckDB warehouse over it."""

import contextlib
import importlib
import os

import pyarrow as pa

# Pages are decoded in several threads and their buffers are short-lived: Arrow's default
# mimalloc keeps per-thread heaps that stay resident, which cost ~90 MB more peak RSS than the
# system allocator on a 5k-session day and grew with the day (benchmarks/results.md, "rss").
# An explicit ARROW_DEFAULT_MEMORY_POOL still wins.
if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
    pa.set_memory_pool(pa.system_memory_pool())

# pyarrow imports these on first use: numpy.ma on the first pa.array() of a numpy array, and
# dateutil (when installed) on the first Python scalar in a compute call. That was 14 ms with
# the GIL held in the middle of a sync's first pages, every paging thread waiting; here they
# load with the package instead (python -X importtime, benchmarks' 2 x 10k-session window).
for _lazy in ("numpy.ma", "dateutil.relativedelta"):
    with contextlib.suppress(ImportError):
        importlib.import_module(_lazy)
