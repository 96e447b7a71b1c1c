"""Instants as integer ticks, and the date-string formats the emulator can serve.

Every instant inside the emulator is an ``int`` of .NET-style ticks: 100 ns units since the Unix
epoch, in UTC. Integers sort, compare and subtract cheaply, and they carry exactly the 7
fractional digits a .NET ``DateTime`` has, so no format loses precision it would really have.

Evo Voice types its dates as plain strings and the real format is unknown (api notes §2), so the
emulator can render them in several shapes; see :data:`TIMESTAMP_FORMATS`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

TICKS_PER_SECOND = 10_000_000
TICKS_PER_MS = 10_000
TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: ``z``: ``2026-11-28T14:03:22.1234567Z``; ``offset``: the same instant in the account's zone
#: with ``+HH:MM``; ``naive``: no zone designator (meaning UTC); ``msdate``: ServiceStack's
#: ``/Date(1700000000000-0000)/``; ``mixed``: one of the others chosen per session, with 0-7
#: fractional digits.
TIMESTAMP_FORMATS = ("z", "offset", "naive", "msdate", "mixed")

_POW10 = [10**i for i in range(8)]


def ticks_from_datetime(value: datetime) -> int:
    """Ticks for an aware datetime (a naive one is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * TICKS_PER_SECOND + delta.microseconds * 10


def datetime_from_ticks(ticks: int) -> datetime:
    """An aware UTC datetime for ``ticks`` (microsecond precision: the 7th digit is dropped)."""
    return _EPOCH + timedelta(microseconds=ticks // 10)


def day_start_ticks(day: date) -> int:
    """Ticks at 00:00 UTC of ``day``."""
    return (day.toordinal() - _EPOCH_ORDINAL) * TICKS_PER_DAY


def utc_day_of(ticks: int) -> date:
    """The UTC calendar day that ``ticks`` falls in."""
    return date.fromordinal(_EPOCH_ORDINAL + ticks // TICKS_PER_DAY)


def local_midnight_ticks(day: date, tz: str) -> int:
    """Ticks at 00:00 local time of ``day`` in the IANA zone ``tz``."""
    return ticks_from_datetime(datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)))


_DAY_PREFIX: dict[int, str] = {}
# "HH:MM:SS" for every second of a day: a list index beats formatting three numbers.
_HMS = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]


def _day_prefix(day_number: int) -> str:
    prefix = _DAY_PREFIX.get(day_number)
    if prefix is None:
        prefix = _DAY_PREFIX[day_number] = (
            date.fromordinal(_EPOCH_ORDINAL + day_number).isoformat() + "T"
        )
    return prefix


@lru_cache(maxsize=262_144)
def _offset(tz: str, quarter_hour: int) -> tuple[int, str]:
    # Offsets only change on quarter-hour boundaries in every zone we use, so caching per
    # quarter hour turns a zoneinfo lookup into a dict hit.
    moment = datetime.fromtimestamp(quarter_hour * 900, ZoneInfo(tz))
    delta = moment.utcoffset()
    seconds = int(delta.total_seconds()) if delta else 0
    sign = "-" if seconds < 0 else "+"
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return seconds * TICKS_PER_SECOND, f"{sign}{hours:02d}:{minutes:02d}"


def offset_seconds(tz: str, ticks: int) -> int:
    """UTC offset of the IANA zone ``tz`` at the instant ``ticks``, in seconds."""
    return _offset(tz, ticks // (900 * TICKS_PER_SECOND))[0] // TICKS_PER_SECOND


def _clock(ticks: int, digits: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS[.fffffff]`` of ``ticks`` read as wall-clock time."""
    seconds, frac = divmod(ticks, TICKS_PER_SECOND)
    day_number, sod = divmod(seconds, 86_400)
    if digits == 7:
        return f"{_day_prefix(day_number)}{_HMS[sod]}.{frac:07d}"
    if digits:
        return f"{_day_prefix(day_number)}{_HMS[sod]}.{frac // _POW10[7 - digits]:0{digits}d}"
    return _day_prefix(day_number) + _HMS[sod]


def format_z(ticks: int, digits: int = 7) -> str:
    """``2026-11-28T14:03:22.1234567Z``."""
    if digits != 7:
        return _clock(ticks, digits) + "Z"
    # The default format is on the hot path of generation: kept to one call.
    seconds, frac = divmod(ticks, TICKS_PER_SECOND)
    day_number, sod = divmod(seconds, 86_400)
    prefix = _DAY_PREFIX.get(day_number) or _day_prefix(day_number)
    return f"{prefix}{_HMS[sod]}.{frac:07d}Z"


def format_naive(ticks: int, digits: int = 7) -> str:
    """``2026-11-28T14:03:22.1234567`` (UTC, no designator)."""
    return _clock(ticks, digits)


def format_offset(ticks: int, tz: str, digits: int = 7) -> str:
    """``2026-11-28T09:03:22.1234567-05:00``: local wall-clock time in ``tz`` plus its offset."""
    shift, suffix = _offset(tz, ticks // (900 * TICKS_PER_SECOND))
    return _clock(ticks + shift, digits) + suffix


def format_msdate(ticks: int) -> str:
    """``/Date(1700000000000-0000)/``: ServiceStack's WCF-style date, milliseconds since epoch."""
    return f"/Date({ticks // TICKS_PER_MS}-0000)/"


def mixed_choice(session_id: str) -> tuple[str, int]:
    """The (format, fractional digits) a session gets under ``mixed``, derived from its id.

    Deriving it from the id keeps it stable for a session however and whenever it is rendered.
    """
    mixed = (zlib.crc32(session_id.encode()) * 0x9E3779B1) >> 7
    return ("z", "offset", "naive", "msdate")[mixed % 4], (mixed >> 4) % 8


def formatter_for(fmt: str, tz: str, session_id: str) -> Callable[[int], str]:
    """The ticks -> string function for one session under the timestamp format ``fmt``.

    ``tz`` is the session's account zone (used by ``offset``); ``session_id`` picks the variant
    under ``mixed``.
    """
    digits = 7
    if fmt == "mixed":
        fmt, digits = mixed_choice(session_id)
    if fmt == "msdate":
        return format_msdate
    return _formatter(fmt, tz, digits)


@lru_cache(maxsize=1024)
def _formatter(fmt: str, tz: str, digits: int) -> Callable[[int], str]:
    if fmt == "z":
        if digits == 7:
            return format_z
        return lambda t: format_z(t, digits)
    if fmt == "naive":
        return lambda t: format_naive(t, digits)
    if fmt == "offset":
        return lambda t: format_offset(t, tz, digits)
    raise ValueError(f"unknown timestamp format {fmt!r}")


def parse_served(text: str) -> datetime:
    """Parse any timestamp the emulator can serve back into an aware UTC datetime.

    Meant for tests and ground-truth comparisons; microsecond precision.
    """
    if text.startswith("/Date("):
        body = text[6:-2]
        sign_at = max(body.rfind("+"), body.rfind("-"))
        millis = int(body[:sign_at] if sign_at > 0 else body)
        return _EPOCH + timedelta(milliseconds=millis)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{(digits + '000000')[:6]}{rest}"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
