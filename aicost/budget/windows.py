"""Budget windows: calendar periods in UTC.

Why calendar (minute, hour, day, month starting at UTC boundaries) rather than rolling:

* Vendors invoice per calendar month in UTC, and finance asks "what did we spend today / this month"; a
  calendar window answers exactly that question, a rolling one answers a different one.
* "When does it reset" has one exact answer that fits in an error message (``resets at 2026-12-01T00:00Z``).
* State is one counter per window, which one atomic Redis script can check and reserve; a rolling window needs
  every event (or many sub-buckets) stored and summed on every call.

The known cost: a burst can spend up to one limit just before a boundary and another just after it. For the
short windows that is the price of predictability; pair a minute budget with an hour or day budget if bursts
matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

WINDOWS = ("minute", "hour", "day", "month")
_FIXED_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True, slots=True)
class WindowSpan:
    key: str  # e.g. "day:2026-11-23"; part of the store key, so spend is per window
    start: float  # epoch seconds
    end: float

    @property
    def resets_at(self) -> datetime:
        return datetime.fromtimestamp(self.end, tz=timezone.utc)


def validate_window(window: object) -> str:
    if not isinstance(window, str) or window not in WINDOWS:
        from ..errors import ConfigurationError

        raise ConfigurationError(f"Budget.window: unknown window {window!r}; expected one of {', '.join(WINDOWS)}")
    return window


def window_at(window: str, ts: float) -> WindowSpan:
    """The calendar window (UTC) containing the epoch timestamp ``ts``."""
    seconds = _FIXED_SECONDS.get(window)
    if seconds is not None:
        start = ts - (ts % seconds)
        label = datetime.fromtimestamp(start, tz=timezone.utc).strftime(
            {"minute": "%Y-%m-%dT%H:%M", "hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d"}[window]
        )
        return WindowSpan(f"{window}:{label}", start, start + seconds)
    if window == "month":
        now = datetime.fromtimestamp(ts, tz=timezone.utc)
        first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = (first + timedelta(days=32)).replace(day=1)
        return WindowSpan(f"month:{first:%Y-%m}", first.timestamp(), nxt.timestamp())
    raise ValueError(f"unknown window {window!r}")


class WindowCache:
    """Remembers the current window per kind, so the hot path does one comparison instead of date maths."""

    __slots__ = ("_current",)

    def __init__(self) -> None:
        self._current: dict[str, WindowSpan] = {}

    def at(self, window: str, ts: float) -> WindowSpan:
        span = self._current.get(window)
        if span is None or not (span.start <= ts < span.end):
            span = window_at(window, ts)
            self._current[window] = span
        return span
