"""Timestamp parsing: every shape a .NET ServiceStack server may send, normalised to UTC."""

from datetime import UTC, datetime

import pytest

from pipeline.evo.timestamps import parse_timestamp

EXPECTED = datetime(2026, 11, 28, 14, 3, 22, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T14:03:22.1234567Z", EXPECTED),  # .NET's 7 digits, truncated to micros
        ("2026-11-28T14:03:22.123456Z", EXPECTED),
        ("2026-11-28T14:03:22.123456", EXPECTED),  # no zone: UTC
        ("2026-11-28T08:03:22.123456-06:00", EXPECTED),
        ("2026-11-28T15:03:22.123456+0100", EXPECTED),
        ("2026-11-28T14:03:22Z", EXPECTED.replace(microsecond=0)),
        ("2026-11-28T14:03:22.1Z", EXPECTED.replace(microsecond=100000)),
        ("2026-11-28T14:03Z", EXPECTED.replace(second=0, microsecond=0)),
        ("2026-11-28", datetime(2026, 11, 28, tzinfo=UTC)),
        ("/Date(1764338602123)/", datetime(2025, 11, 28, 14, 3, 22, 123000, tzinfo=UTC)),
        ("/Date(1764338602123-0600)/", datetime(2025, 11, 28, 14, 3, 22, 123000, tzinfo=UTC)),
        ("/Date(-1000)/", datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("0001-01-01T00:00:00", datetime(1, 1, 1, tzinfo=UTC)),
        (None, None),
        ("", None),
        ("  ", None),
    ],
)
def test_accepted_shapes(text, expected):
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-11-28T25:00:00Z",
        "/Date(abc)/",
        "2026/11/28 10:00",
        "String",
    ],
)
def test_rejected_shapes_raise_value_error(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)
