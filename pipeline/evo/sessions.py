"""Which requests cover a range of partition days, whatever the server's date filter means.

What ``startDate``/``endDate`` filter on (``dateCreated``? ``dateCompleted``?), in which time zone,
and whether ``endDate`` is inclusive are all UNKNOWN. So we ask for a window that covers the
partition days under every reading and keep, afterwards, exactly the sessions whose
``dateCreated`` falls in a partition day in ``EVO_VOICE_TIMEZONE``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.evo.client import EvoVoiceClient, Page, PageDecoder

log = logging.getLogger(__name__)

SESSIONS_PATH = "/sessions"
# Any server zone is within 14 h of UTC, so a UTC date is at most one day away from the
# server's date for the same instant; one more day absorbs a filter on dateCompleted for
# calls that run past midnight.
WINDOW_MARGIN_DAYS = 1
# Start reading the archive this many days before the documented cut-off: "about 15 days".
ARCHIVE_SAFETY_DAYS = 3


@dataclass(frozen=True)
class RequestWindow:
    """The ``startDate``/``endDate`` to send for partition days ``first_day..last_day``."""

    first_day: date
    last_day: date
    start_date: date
    end_date: date
    start_utc: datetime
    end_utc: datetime

    def params(self) -> dict[str, str]:
        return {"startDate": self.start_date.isoformat(), "endDate": self.end_date.isoformat()}


def day_bounds_utc(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The half-open UTC interval ``[start, end)`` of a calendar day in ``zone`` (DST-aware)."""
    start = datetime.combine(day, time(), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC)
    return start, end


def request_window(
    first_day: date, last_day: date, zone: ZoneInfo, margin_days: int = WINDOW_MARGIN_DAYS
) -> RequestWindow:
    """Dates to send so the window covers ``first_day..last_day`` (in ``zone``) whether the
    server reads ``endDate`` inclusively or exclusively and in whatever zone it filters."""
    if last_day < first_day:
        raise ValueError(f"last day {last_day} is before first day {first_day}")
    start_utc, _ = day_bounds_utc(first_day, zone)
    _, end_utc = day_bounds_utc(last_day, zone)
    last_utc_date = (end_utc - timedelta(microseconds=1)).date()
    margin = timedelta(days=margin_days)
    return RequestWindow(
        first_day=first_day,
        last_day=last_day,
        start_date=start_utc.date() - margin,
        # +1: an exclusive endDate must still let the last needed date through.
        end_date=last_utc_date + margin + timedelta(days=1),
        start_utc=start_utc,
        end_utc=end_utc,
    )


def stores_to_read(first_day: date, today: date, archive_after_days: int) -> tuple[bool, ...]:
    """``searchArchive`` values to query: the live store always, the archive too when any day of
    the window may have been archived already (the cut-off is approximate)."""
    cutoff = today - timedelta(days=max(0, archive_after_days - ARCHIVE_SAFETY_DAYS))
    start = first_day - timedelta(days=WINDOW_MARGIN_DAYS)
    return (False, True) if start <= cutoff else (False,)


def session_params(client: EvoVoiceClient, window: RequestWindow, search_archive: bool) -> dict:
    params: dict[str, Any] = {
        **window.params(),
        # Asked for, never relied on: results are keyed by id and routed by dateCreated.
        "sortField": "dateCreated",
        "sortOrder": "Ascend",
    }
    if search_archive:
        params["searchArchive"] = True
    if client.settings.account_ids:
        params["accountIds"] = list(client.settings.account_ids)
    return params


def iter_window_pages(
    client: EvoVoiceClient,
    window: RequestWindow,
    *,
    today: date,
    decoder: PageDecoder | None = None,
    counts_before: Mapping[bool, int | None] | None = None,
    while_counting: Callable[[], None] | None = None,
    before_reading_again: Callable[[], None] | None = None,
) -> Iterator[tuple[bool, Page]]:
    """Every page of every store for the window, as ``(search_archive, page)``.

    Offset paging is not a snapshot: a session written (or archived) while the pages are read
    shifts the later ones, and a page read before the shift next to one read after it can
    skip a session that existed all along (a repeat is harmless: duplicates are removed
    downstream). Pages are read ahead and retried independently, so their order is not a
    defence; instead the store's ``totalCount`` is asked before and after, and when it
    changed the store is read again with one request at a time, after the other stores.
    ``counts_before``: the stores' counts (:func:`count_stores`) when the caller has just
    asked for them. The "after" count is asked as soon as every page of a store up to its last
    one is in (by a paging thread, before the caller has processed them), while the next store
    is read, so it costs no round trip of its own. ``while_counting`` is called
    once, when the caller is done with the last page of the last store and only the closing
    counts (and requests past the end) are on the wire: the caller's end-of-window work that
    does not depend on them overlaps that round trip. ``before_reading_again`` is called once
    before a store is read again, so that the caller can undo what should not last that long.
    """
    stores = stores_to_read(window.first_day, today, client.settings.archive_after_days)
    before = dict(counts_before or {})
    if any(archive not in before for archive in stores):
        before = count_stores(client, window, today=today)
    with ThreadPoolExecutor(len(stores), thread_name_prefix="evo-count") as counting:
        after: dict[bool, Future[int | None]] = {}
        for archive in stores:
            label, params = store_label(window, archive), session_params(client, window, archive)

            def count_after(archive: bool = archive, params: dict = params, label: str = label):
                after[archive] = counting.submit(
                    client.count, SESSIONS_PATH, params, what=f"{label} count"
                )

            for page in client.iter_pages(
                SESSIONS_PATH, params, what=label, decoder=decoder, at_end=count_after
            ):
                yield archive, page  # the last one after count_after was called
                if page.is_last and archive == stores[-1] and while_counting is not None:
                    while_counting()
        reading_again = False
        for archive in stores:
            if after[archive].result() == before[archive]:
                continue
            if not reading_again and before_reading_again is not None:
                before_reading_again()
            reading_again = True
            label, params = store_label(window, archive), session_params(client, window, archive)
            log.info(
                "%s: %s sessions became %s while paging; reading again",
                label,
                before[archive],
                after[archive].result(),
            )
            for page in client.iter_pages(
                SESSIONS_PATH, params, what=label, concurrency=1, decoder=decoder
            ):
                yield archive, page


def count_stores(
    client: EvoVoiceClient, window: RequestWindow, *, today: date
) -> dict[bool, int | None]:
    """The server's ``totalCount`` for the window's query in each store read (by
    ``searchArchive``), asked of the stores at the same time."""
    stores = stores_to_read(window.first_day, today, client.settings.archive_after_days)
    label = f"{_label(window)} count"

    def count(archive: bool) -> int | None:
        return client.count(SESSIONS_PATH, session_params(client, window, archive), what=label)

    if len(stores) == 1:
        return {stores[0]: count(stores[0])}
    with ThreadPoolExecutor(len(stores), thread_name_prefix="evo-count") as pool:
        return dict(zip(stores, pool.map(count, stores), strict=True))


def count_window(client: EvoVoiceClient, window: RequestWindow, *, today: date) -> int | None:
    """The server's ``totalCount`` for the same queries, summed over the stores read."""
    return total_count(count_stores(client, window, today=today))


def total_count(counts: Mapping[bool, int | None]) -> int | None:
    """The stores' counts summed, or None if a store did not say."""
    if any(count is None for count in counts.values()):
        return None
    return sum(counts.values())


def store_label(window: RequestWindow, archive: bool) -> str:
    return f"{_label(window)} ({'archive' if archive else 'live'})"


def _label(window: RequestWindow) -> str:
    if window.first_day == window.last_day:
        return f"day {window.first_day}"
    return f"days {window.first_day}..{window.last_day}"
