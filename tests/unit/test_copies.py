"""De-duplication bookkeeping of a window (``pipeline.sync._Copies``): the no-copies fast path
answers exactly what the DuckDB query answers."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from pipeline import sync
from pipeline.lake.flatten import FlatPage
from pipeline.sync import _COPY_KEYS, _Copies


def page(ids: list[str | None], first_ordinal: int, unstored: list[str | None]) -> FlatPage:
    rows = len(ids)
    sessions = pa.table(
        {
            "session_id": ids,
            "date_last_modified": [
                datetime(2026, 5, 1, tzinfo=UTC) + timedelta(minutes=i) for i in range(rows)
            ],
            "copy_ordinal": range(first_ordinal, first_ordinal + rows),
            "partition_date": [date(2026, 5, 1 + i % 2) for i in range(rows)],
        },
        schema=pa.schema(_COPY_KEYS.field(i) for i in range(4)),  # the lake's own fields
    )
    return FlatPage(
        tables={"sessions": sessions},
        stats=None,
        unstored_ids=pa.array(unstored, pa.string()),
    )


def copies_of(pages: list[tuple[FlatPage, bool]]) -> _Copies:
    copies = _Copies()
    for flat, archive in pages:
        copies.add(flat, archive)
    return copies


@pytest.mark.parametrize("seed", range(6))
def test_the_fast_path_equals_the_duckdb_query(seed, monkeypatch):
    rng = random.Random(seed)
    pool = [f"s{n}" for n in range(60)]
    duplicates = seed % 2 == 1  # odd seeds: some ids twice (the DuckDB path either way)
    pages, ordinal, seen = [], 0, set()
    for archive in (False, True):
        ids = rng.sample(pool, 25) if not duplicates else rng.choices(pool, k=25)
        if not duplicates:
            ids = [i for i in ids if i not in seen]
        seen.update(ids)
        unstored = rng.sample(pool, 5) + ["", None]
        pages.append((page(ids, ordinal, unstored), archive))
        ordinal += len(ids)

    fast = copies_of(pages).resolve()
    monkeypatch.setattr(sync.pc, "count_distinct", lambda *a, **k: pa.scalar(-1))
    slow = copies_of(pages).resolve()
    assert fast == slow
    assert bool(fast[0]) == duplicates
