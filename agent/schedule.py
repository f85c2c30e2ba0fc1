"""Scheduling that survives wall-clock steps, suspend and overruns.

:class:`Ticker` runs the agent's periodic jobs (probe rounds, power polls, self-metrics,
housekeeping, the speed-test check, the push) on the monotonic clock (CLOCK_BOOTTIME: never
steps, keeps counting through suspend). A wall-clock step cannot stall or flood it because it
never reads the wall clock. After a suspend or an overrun it runs once and realigns
(:func:`next_due`); it never replays missed runs. It is also light: the agent's whole import path
stays far below APScheduler's scheduler (which pulls in asyncio, ssl and multiprocessing).

Speed tests at cron times need no wall-clock scheduler: the ``speedtest`` job checks every 30 s
whether the next due time, a wall-clock time kept in the store, has passed
(:mod:`agent.jobs.speedtests`); the cron expression is read by APScheduler's cron trigger
(:func:`agent.speedplan.next_cron`) only when ``speedtest.cron`` is set.

:func:`detect_step` is the pure core of the clock-step watch: the self-metrics count the steps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from agent.clock import Clock


def next_due(due: float, period: float, now: float) -> float:
    """The next deadline of a job that was due at ``due`` and finished at ``now`` (monotonic s).

    Normally ``due + period``: the cadence does not drift with the job's own run time. When that is
    already past (the run overran, the machine was suspended), missed runs are skipped and the
    job realigns to its grid: the next deadline is the first grid point after ``now``.
    """
    nxt = due + period
    if nxt <= now:
        nxt += ((now - nxt) // period + 1) * period
    return nxt


class Ticker:
    """Periodic jobs on the monotonic clock, one thread per job so a slow job (housekeeping on a
    large store) never delays the probe rounds. A job that raises is the caller's business: wrap
    it (the agent logs and counts failures)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._jobs: list[tuple[str, float, Callable[[], None], float]] = []
        self.runs: dict[str, int] = {}

    def every(self, seconds: float, fn: Callable[[], None], name: str, first_in_s: float = 0.0) -> None:
        if seconds <= 0:
            raise ValueError(f"{name}: period must be > 0, got {seconds}")
        self._jobs.append((name, seconds, fn, first_in_s))
        self.runs[name] = 0

    def _loop(self, name: str, period: float, fn: Callable[[], None], first_in_s: float,
              wait: Callable[[float], bool]) -> None:
        due = self.clock.monotonic() + first_in_s
        while not wait(max(0.0, due - self.clock.monotonic())):
            fn()
            self.runs[name] += 1
            due = next_due(due, period, self.clock.monotonic())

    def run_until(self, stop: threading.Event, wait: Callable[[float], bool] | None = None) -> None:
        """Run every job until ``stop`` is set, then wait for the running ones to finish.

        ``wait(timeout)`` returns True when it is time to stop; tests pass one that advances a
        fake clock instead of sleeping."""
        wait = wait or stop.wait
        threads = [threading.Thread(target=self._loop, args=(n, p, f, first, wait), name=f"job-{n}",
                                    daemon=True)
                   for n, p, f, first in self._jobs]
        for t in threads:
            t.start()
        try:
            while not stop.wait(3600):
                pass
        finally:
            stop.set()
            for t in threads:
                t.join()


def detect_step(prev_offset: float | None, wall_s: float, mono_s: float,
                threshold_s: float) -> tuple[float, float | None]:
    """(new offset, step in seconds or None). The offset is wall minus monotonic; slow NTP slewing
    moves it by microseconds per check and never reaches the threshold."""
    offset = wall_s - mono_s
    if prev_offset is None:
        return offset, None
    delta = offset - prev_offset
    return offset, (delta if abs(delta) > threshold_s else None)
