"""Flatten API pages into Arrow tables, write the Parquet lake, and the DuckDB warehouse over it."""

import os

import pyarrow as pa

# Pages are decoded in several threads and their buffers are short-lived: Arrow's default
# mimalloc keeps per-thread heaps that stay resident, which cost ~90 MB more peak RSS than the
# system allocator on a 5k-session day and grew with the day (benchmarks/results.md, "rss").
# An explicit ARROW_DEFAULT_MEMORY_POOL still wins.
if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
    pa.set_memory_pool(pa.system_memory_pool())
