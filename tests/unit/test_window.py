"""The request window covers the partition days under every reading of the server's dates."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pipeline.evo.sessions import day_bounds_utc, request_window, stores_to_read

ZONES = ["UTC", "America/Chicago", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/Berlin"]


def _server_dates(instant: datetime) -> set[date]:
    """Every date a server could file ``instant`` under, whatever zone it filters in."""
    return {(instant + timedelta(hours=h)).date() for h in range(-12, 15)}


@pytest.mark.parametrize("zone_name", ZONES)
@pytest.mark.parametrize("inclusive", [True, False])
def test_window_covers_the_day_under_every_reading(zone_name, inclusive):
    zone = ZoneInfo(zone_name)
    day = date(2026, 3, 8)  # a DST change in America/Chicago
    window = request_window(day, day, zone)
    start, end = day_bounds_utc(day, zone)
    last_included = window.end_date if inclusive else window.end_date - timedelta(days=1)
    instant = start
    while instant < end:
        for server_date in _server_dates(instant):
            assert window.start_date <= server_date <= last_included, (instant, server_date)
        instant += timedelta(minutes=30)
    # A call created at the very end of the day that completes 3 hours later is still covered.
    completed = end - timedelta(microseconds=1) + timedelta(hours=3)
    assert completed.date() <= last_included


def test_day_bounds_follow_dst():
    start, end = day_bounds_utc(date(2026, 3, 8), ZoneInfo("America/Chicago"))
    assert start == datetime(2026, 3, 8, 6, tzinfo=UTC)
    assert end - start == timedelta(hours=23)


def test_range_window_spans_all_days():
    window = request_window(date(2026, 11, 1), date(2026, 11, 7), ZoneInfo("UTC"))
    assert window.params() == {"startDate": "2026-10-31", "endDate": "2026-11-09"}


def test_reversed_range_is_an_error():
    with pytest.raises(ValueError, match="before"):
        request_window(date(2026, 11, 2), date(2026, 11, 1), ZoneInfo("UTC"))


def test_archive_is_read_only_for_old_days():
    today = date(2026, 11, 29)
    assert stores_to_read(date(2026, 11, 28), today, 15) == (False,)
    assert stores_to_read(date(2026, 11, 1), today, 15) == (False, True)
    # the cut-off is approximate: days a little younger than it are read from both stores
    assert stores_to_read(today - timedelta(days=13), today, 15) == (False, True)
