"""Nanosecond timestamps (OpenTelemetry's ``time_ns``) and UTC datetimes, converted through integers.

A float of seconds holds about 16 digits: ``ns / 1e9`` rounds 23:59:59.9999996 up to the next day (and month, and
FOCUS billing period), and ``dt.timestamp() * 1e9`` is off by up to a few hundred nanoseconds. The core dates batch
results by these; the ledger cuts its days with them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["EPOCH", "from_ns", "to_ns"]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def from_ns(ns: int) -> datetime:
    """``ns`` nanoseconds since the epoch as a UTC datetime, microseconds truncated (never rounded into the next
    second, day or month)."""
    seconds, nanos = divmod(int(ns), 1_000_000_000)
    return EPOCH + timedelta(0, seconds, nanos // 1000)  # (days, seconds, microseconds)


def to_ns(t: datetime) -> int:
    """An aware datetime as nanoseconds since the epoch, exactly (a naive one is taken as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return (t - EPOCH) // _MICROSECOND * 1000
