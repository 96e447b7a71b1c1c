"""When a window opens the warehouse writer (``pipeline.sync.ends_soon``): once the sessions the
stores' opening counts leave to read would take under ``OPEN_THE_WRITER_BEFORE_THE_END`` at the
window's rate so far, so that readers wait for it about that long at most, however slow the
API."""

from __future__ import annotations

import pytest

from pipeline.sync import OPEN_THE_WRITER_BEFORE_THE_END, ends_soon


@pytest.mark.parametrize(
    ("server_total", "sessions_read", "seconds", "expected"),
    [
        (None, 5_000, 1.0, False),  # the server gave no count: open after the last page
        (5_000, 0, 0.5, False),  # no rate yet
        (10_000, 10_000, 1.0, False),  # the count is reached: the closing counts decide
        (10_000, 12_000, 1.0, False),  # the count was too low: the end is unknown
        (10_900, 10_000, 1.0, True),  # 900 left at 10k/s: 90 ms
        (11_100, 10_000, 1.0, False),  # 1,100 left: 110 ms
        (520, 500, 5.0, False),  # a slow API, 100 sessions/s: 20 left are 200 ms
        (505, 500, 5.0, True),  # 5 left: 50 ms
    ],
)
def test_the_writer_opens_within_a_bounded_time_of_the_end(
    server_total, sessions_read, seconds, expected
):
    assert OPEN_THE_WRITER_BEFORE_THE_END == 0.1
    assert ends_soon(server_total, sessions_read, seconds) is expected
