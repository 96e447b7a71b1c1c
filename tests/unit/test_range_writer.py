"""RangeWriter: a day's rows are written out once the (sorted) pages have moved past it, and
rows that still come for it afterwards are kept all the same."""

from __future__ import annotations

import random
from datetime import timedelta

import pyarrow.parquet as pq

from pipeline.lake.flatten import flatten_page
from pipeline.lake.store import STAGED_FILE, Lake, RangeWriter
from tests.unit.test_flatten import DAY, ctx, make_session

NEXT_DAY = DAY + timedelta(days=1)


def page(rng: random.Random, day, numbers: range, first_ordinal: int):
    items = [make_session(rng, n, day) for n in numbers]
    return flatten_page(
        items, page=0, search_archive=False, first_ordinal=first_ordinal, ctx=ctx(last=NEXT_DAY)
    )


def buffered_rows(writer: RangeWriter, day) -> int:
    return sum(b.rows for (_, d), b in writer._buffers.items() if d == day)


def test_a_day_is_written_out_once_the_pages_move_past_it(tmp_path):
    rng = random.Random(3)
    writer = RangeWriter(Lake(str(tmp_path)), "sync1", [DAY, NEXT_DAY])
    writer.write(page(rng, DAY, range(50), 0))
    writer.write(page(rng, DAY, range(50, 80), 50))
    assert buffered_rows(writer, DAY) > 0  # still the day being read: kept for one row group

    writer.write(page(rng, NEXT_DAY, range(80, 120), 80))
    assert buffered_rows(writer, DAY) == 0  # the pages moved on: written out
    assert buffered_rows(writer, NEXT_DAY) > 0

    writer.write(page(rng, DAY, range(120, 125), 120))  # the server did not keep to the order
    staged = writer.finish()
    sessions = pq.ParquetFile(f"{staged[DAY]['sessions']}/{STAGED_FILE}")
    assert sessions.metadata.num_rows == 85
    assert sessions.metadata.num_row_groups == 2  # the late rows are one more row group
    assert pq.read_table(f"{staged[NEXT_DAY]['sessions']}/{STAGED_FILE}").num_rows == 40


def test_write_out_empties_every_buffer_and_later_rows_still_count(tmp_path):
    rng = random.Random(4)
    writer = RangeWriter(Lake(str(tmp_path)), "sync1", [DAY, NEXT_DAY])
    writer.write(page(rng, DAY, range(30), 0))
    writer.write(page(rng, NEXT_DAY, range(30, 70), 30))
    writer.write_out()  # the window's pages are in: compress while the closing counts are asked
    assert buffered_rows(writer, DAY) == buffered_rows(writer, NEXT_DAY) == 0

    writer.write(page(rng, NEXT_DAY, range(70, 75), 70))  # a store read again adds rows
    staged = writer.finish()
    sessions = pq.ParquetFile(f"{staged[NEXT_DAY]['sessions']}/{STAGED_FILE}")
    assert sessions.metadata.num_rows == 45
    assert sessions.metadata.num_row_groups == 2
    assert pq.read_table(f"{staged[DAY]['sessions']}/{STAGED_FILE}").num_rows == 30


def test_columns_with_a_value_per_row_are_written_without_a_dictionary(tmp_path):
    from pipeline.lake.schemas import SESSION_TABLES, VALUE_PER_ROW

    names = {f.name for schema in SESSION_TABLES.values() for f in schema}
    assert not VALUE_PER_ROW - names  # a misspelt name would silently keep its dictionary
    writer = RangeWriter(Lake(str(tmp_path)), "sync1", [DAY])
    writer.write(page(random.Random(5), DAY, range(40), 0))
    staged = writer.finish()
    for table, low_cardinality in (("sessions", "account_id"), ("session_members", "role")):
        metadata = pq.ParquetFile(f"{staged[DAY][table]}/{STAGED_FILE}").metadata
        encodings = {
            metadata.row_group(0).column(i).path_in_schema.split(".")[0]: set(
                metadata.row_group(0).column(i).encodings
            )
            for i in range(metadata.num_columns)
        }
        dictionary = {
            c for c, used in encodings.items() if used & {"RLE_DICTIONARY", "PLAIN_DICTIONARY"}
        }
        assert low_cardinality in dictionary
        assert not dictionary & VALUE_PER_ROW, (table, dictionary & VALUE_PER_ROW)


def test_row_groups_compressed_in_the_background_keep_their_order_and_their_errors(
    tmp_path, monkeypatch
):
    import pytest

    import pipeline.lake.store as store

    monkeypatch.setattr(store, "ROW_GROUP_ROWS", 10)  # a row group every few sessions
    rng = random.Random(6)
    writer = RangeWriter(Lake(str(tmp_path)), "sync1", [DAY])
    for start in range(0, 60, 6):
        writer.write(page(rng, DAY, range(start, start + 6), start))
    staged = writer.finish()
    sessions = pq.ParquetFile(f"{staged[DAY]['sessions']}/{STAGED_FILE}")
    assert sessions.metadata.num_row_groups > 3
    assert sessions.read().column("copy_ordinal").to_pylist() == list(range(60))

    failing = RangeWriter(Lake(str(tmp_path)), "sync2", [DAY])

    def disk_full(self, *args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", disk_full)
    with pytest.raises(OSError, match="No space left"):  # the thread's failure reaches the
        failing.write(page(rng, DAY, range(12), 0))  # sync at the next row group or at the end
        failing.finish()
    failing.abort()
    assert not (tmp_path / "_staging" / "sync2").exists()
