"""Parse every timestamp shape Evo Voice (a .NET ServiceStack service) may send, into UTC.

Accepted: ISO-8601 with ``Z``, with a ``+HH:MM`` offset, or with no zone (read as UTC), with
0-7 fractional digits (.NET writes 7; Python keeps 6, so the 7th digit is truncated), and
ServiceStack's ``/Date(1700000000000-0000)/`` form.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2})?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_timestamp(value: str | None) -> datetime | None:
    """Return ``value`` as an aware UTC datetime, ``None`` for null/empty.

    Raises:
        ValueError: the text is not a timestamp in any accepted shape, or names an impossible
            date (month 13, February 30).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    match = _MS_DATE.match(text)
    if match:
        # The offset in /Date(ms+zzzz)/ only says where the writer was; ms is already UTC.
        return _EPOCH + timedelta(milliseconds=int(match.group(1)))
    match = _ISO.match(text)
    if not match:
        raise ValueError(f"unrecognised timestamp {text[:40]!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    tz = UTC
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    parsed = datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        micros,
        tzinfo=tz,
    )
    return parsed.astimezone(UTC)
