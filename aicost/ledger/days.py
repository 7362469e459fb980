"""UTC days and months as the ledger counts them: reports, periods, rollups and pair cells all cut time here."""

from __future__ import annotations

from datetime import datetime, timedelta

from .._time import EPOCH, from_ns  # the ledger's first day (pair-cell windows are aligned from it)

__all__ = ["EPOCH", "DAY", "HOUR", "from_ns", "midnight", "hour_start", "ceil", "month_of"]

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def midnight(t: datetime) -> datetime:
    """The start of the UTC day ``t`` is in."""
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def hour_start(t: datetime) -> datetime:
    """The start of the UTC hour ``t`` is in."""
    return t.replace(minute=0, second=0, microsecond=0)


def ceil(t: datetime, step: timedelta) -> datetime:
    """The first start of a UTC hour (``step`` HOUR) or day (DAY) at or after ``t``."""
    floor = hour_start(t) if step == HOUR else midnight(t)
    return floor if floor == t else floor + step


def month_of(t: datetime) -> tuple[datetime, datetime]:
    """The start of the month ``t`` is in, and of the next."""
    start = midnight(t).replace(day=1)
    return start, (start + timedelta(days=32)).replace(day=1)
