"""Clocks, injected everywhere: ``monotonic()`` for durations, ``now()`` (UTC) for timestamps.

On Linux the monotonic clock is CLOCK_BOOTTIME: it never goes backwards and, unlike
CLOCK_MONOTONIC, it keeps counting while a laptop is suspended, so an outage that spans a suspend
gets its real length and a wall-clock/monotonic offset does not jump on resume.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never decreases (counts suspend where the OS can)."""

    def now(self) -> datetime:
        """The wall clock as an aware UTC datetime; may jump in either direction."""


class SystemClock:
    """The real clocks of this machine."""

    def monotonic(self) -> float:
        if _BOOTTIME is not None:
            return time.clock_gettime(_BOOTTIME)
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock for tests: advance both clocks together, or step the wall clock alone."""

    def __init__(self, start: datetime | None = None, mono: float = 1000.0) -> None:
        self._wall = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = mono

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._wall

    def advance(self, seconds: float) -> None:
        """Time passes: both clocks move forward by ``seconds``."""
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)

    def step_wall(self, seconds: float) -> None:
        """The wall clock is set (NTP step, manual change): only ``now()`` moves."""
        self._wall += timedelta(seconds=seconds)
