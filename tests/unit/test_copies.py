"""De-duplication bookkeeping of a window (``pipeline.sync._Copies``), checked against the same
rules written as one SQL query: the latest ``dateLastModified`` wins (a missing one loses), then
the later copy; distinct non-empty ids are counted per store."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest

from pipeline.lake.flatten import FlatPage
from pipeline.sync import _COPY_KEYS, _Copies

REFERENCE_DISTINCT = """
    SELECT count(*) FROM (
        SELECT archive, session_id FROM stored UNION SELECT archive, session_id FROM unstored)
    WHERE session_id <> ''
"""
REFERENCE_LOSERS = """
    SELECT partition_date, list(copy_ordinal ORDER BY copy_ordinal) FROM (
        SELECT partition_date, copy_ordinal FROM stored
        QUALIFY row_number() OVER (
            PARTITION BY session_id
            ORDER BY date_last_modified DESC NULLS LAST, copy_ordinal DESC) > 1)
    GROUP BY partition_date
"""


def page(
    ids: list[str],
    modified: list[datetime | None],
    first_ordinal: int,
    unstored: list[str | None],
) -> FlatPage:
    rows = len(ids)
    sessions = pa.table(
        {
            "session_id": ids,
            "date_last_modified": modified,
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


def reference(pages: list[tuple[FlatPage, bool]]) -> tuple[dict[date, list[int]], int]:
    copies = _Copies()
    for flat, archive in pages:
        copies.add(flat, archive)
    stored = pa.concat_tables(copies.stored) if copies.stored else _COPY_KEYS.empty_table()
    unstored = (
        pa.concat_tables(copies.unstored)
        if copies.unstored
        else pa.table(
            {"session_id": pa.array([], pa.string()), "archive": pa.array([], pa.bool_())}
        )
    )
    con = duckdb.connect()
    con.register("stored", stored)
    con.register("unstored", unstored)
    distinct = con.execute(REFERENCE_DISTINCT).fetchone()[0]
    losers = dict(con.execute(REFERENCE_LOSERS).fetchall())
    con.close()
    return losers, distinct


def random_pages(seed: int) -> list[tuple[FlatPage, bool]]:
    rng = random.Random(seed)
    pool = [f"s{n}" for n in range(60)] + [""]
    stores = [(False,), (True,), (False, True)][seed % 3]
    repeats = seed % 2 == 1
    pages, ordinal = [], 0
    for archive in stores:
        for _ in range(rng.randint(1, 3)):
            ids = rng.choices(pool, k=25) if repeats else rng.sample(pool, 25)
            modified = [
                None
                if rng.random() < 0.2
                else datetime(2026, 5, 1, tzinfo=UTC)
                + timedelta(minutes=rng.randint(0, 5))  # ties: the later copy must win
                for _ in ids
            ]
            unstored = rng.sample(pool, rng.randint(0, 5)) + rng.choice([[], ["", None]])
            pages.append((page(ids, modified, ordinal, unstored), archive))
            ordinal += len(ids)
    return pages


@pytest.mark.parametrize("seed", range(24))
def test_resolve_follows_the_reference_query(seed):
    pages = random_pages(seed)
    copies = _Copies()
    for flat, archive in pages:
        copies.add(flat, archive)
    assert copies.resolve() == reference(pages)


def test_a_window_without_copies_loses_none():
    pages = [(page(["a", "b"], [None, None], 0, []), False), (page(["c"], [None], 2, ["d"]), True)]
    copies = _Copies()
    for flat, archive in pages:
        copies.add(flat, archive)
    assert copies.resolve() == ({}, 4)
