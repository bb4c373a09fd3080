"""Injected time, so the simulator and tests control it and ``core`` never calls ``now()``.

The pattern follows nautilus_trader's ``TestClock``/``LiveClock``: code asks a clock for the
time and a sleeper to wait, and tests drive a ``ManualClock`` forward deterministically.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "ns_to_datetime"]


def ns_to_datetime(ts_ns: int) -> datetime:
    """Convert integer UTC nanoseconds to a tz-aware datetime (microsecond precision)."""
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC)


class Clock(Protocol):
    """A source of time and of waiting."""

    def timestamp_ns(self) -> int:
        """Return UTC nanoseconds since the epoch."""
        ...

    def now(self) -> datetime:
        """Return the current tz-aware UTC datetime."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``: really for the system clock, instantly for a manual one."""
        ...


class SystemClock:
    """Wall-clock time; the only place in ``core`` that touches ``time``."""

    def timestamp_ns(self) -> int:
        return time.time_ns()

    def now(self) -> datetime:
        return datetime.now(tz=UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when told to; ``sleep`` advances it instead of waiting.

    Examples
    --------
    >>> c = ManualClock(start_ns=1_000)
    >>> c.sleep(0.5)
    >>> c.timestamp_ns()
    500001000
    """

    def __init__(self, start_ns: int = 1_767_225_600_000_000_000) -> None:
        # Default start: 2026-01-01T00:00:00Z, so logs read as plausible dates.
        self._ns = start_ns

    def timestamp_ns(self) -> int:
        return self._ns

    def now(self) -> datetime:
        return ns_to_datetime(self._ns)

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backward)."""
        if seconds < 0:
            raise ValueError(f"ManualClock cannot go backward: seconds={seconds}")
        self._ns += round(seconds * 1e9)

    def set_ns(self, ts_ns: int) -> None:
        """Jump to ``ts_ns`` (never backward)."""
        if ts_ns < self._ns:
            raise ValueError(f"ManualClock cannot go backward: {ts_ns} < {self._ns}")
        self._ns = ts_ns

    def __repr__(self) -> str:
        return f"ManualClock(ts_ns={self._ns})"
