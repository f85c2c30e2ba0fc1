"""Scheduling that survives wall-clock steps, suspend and overruns.

Two schedulers, for two kinds of job:

* :class:`Ticker` runs the agent's periodic jobs (probe rounds, counters, housekeeping) on the
  monotonic clock (CLOCK_BOOTTIME: never steps, keeps counting through suspend). A wall-clock step
  cannot stall or flood it because it never reads the wall clock. After a suspend or an overrun it
  runs once and realigns (:func:`next_due`); it never replays missed runs. It is also light: the
  agent's whole import path stays far below APScheduler's (which pulls in asyncio, ssl and
  multiprocessing: about 11 MB of resident memory, a third of the agent's budget).

* :class:`WallScheduler` is for jobs tied to wall-clock times (a cron-style speed-test schedule):
  APScheduler 3.x, imported only when such a job exists. APScheduler keeps each job's next run as a
  wall-clock time, so a step backwards would stall every job and a step forwards would make every
  job overdue at once. Jobs are added with ``coalesce=True``, ``max_instances=1``, no misfire grace
  limit (a late run still runs, once) and :class:`SkippingInterval`-style triggers that jump over
  missed intervals arithmetically (APScheduler lists every missed run time before coalescing, which
  after a 56-year step, a Pi booting at 1970, would be 177 million of them). The
  :class:`ClockGuard` watches the wall clock against the monotonic one and, when their offset moves
  by more than ``threshold_s``, shifts every job's next run by the same amount.
  :func:`detect_step` is its pure core; the agent also uses it to count steps.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Callable

from agent.clock import Clock

log = logging.getLogger(__name__)


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


def skipping_interval_class():
    from apscheduler.triggers.interval import IntervalTrigger

    class SkippingInterval(IntervalTrigger):
        """An interval trigger whose next fire time is never in the past."""

        def get_next_fire_time(self, previous_fire_time, now):
            nxt = super().get_next_fire_time(previous_fire_time, now)
            if nxt is not None and nxt < now:
                missed = (now - nxt).total_seconds() // self.interval_length + 1
                nxt = nxt + timedelta(seconds=missed * self.interval_length)
            return nxt

    return SkippingInterval


def detect_step(prev_offset: float | None, wall_s: float, mono_s: float,
                threshold_s: float) -> tuple[float, float | None]:
    """(new offset, step in seconds or None). The offset is wall minus monotonic; slow NTP slewing
    moves it by microseconds per check and never reaches the threshold."""
    offset = wall_s - mono_s
    if prev_offset is None:
        return offset, None
    delta = offset - prev_offset
    return offset, (delta if abs(delta) > threshold_s else None)


class ClockGuard:
    """Watches for wall-clock steps and re-times the scheduler's jobs."""

    def __init__(self, clock: Clock, scheduler, threshold_s: float = 2.0) -> None:
        self.clock = clock
        self.scheduler = scheduler
        self.threshold_s = threshold_s
        self.offset: float | None = None
        self.steps = 0

    def check(self) -> float | None:
        """Look once; when the wall clock stepped, shift the jobs and return the step (s)."""
        self.offset, step = detect_step(self.offset, self.clock.now().timestamp(),
                                        self.clock.monotonic(), self.threshold_s)
        if step is None:
            return None
        self.steps += 1
        log.warning("wall clock stepped by %+.1f s; re-timing scheduled jobs", step)
        for job in self.scheduler.get_jobs():
            if job.next_run_time is not None:
                job.modify(next_run_time=job.next_run_time + timedelta(seconds=step))
        self.scheduler.wakeup()
        return step


class WallScheduler:
    """Jobs on APScheduler 3.x, added the safe way, with the clock guard running."""

    def __init__(self, clock: Clock, guard_every_s: float = 1.0) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.clock = clock
        self._aps = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )
        self.guard = ClockGuard(clock, self._aps)
        self.guard_every_s = guard_every_s
        self._stop = threading.Event()

    def every(self, seconds: float, fn: Callable[[], None], name: str, first_in_s: float = 0.0) -> None:
        """Run ``fn`` every ``seconds``, first after ``first_in_s``."""
        start = self.clock.now() + timedelta(seconds=first_in_s)
        trigger = skipping_interval_class()(seconds=seconds, timezone="UTC")
        self._aps.add_job(fn, trigger, id=name, name=name,
                          next_run_time=start)

    def run_until(self, stop: threading.Event) -> None:
        """Start the jobs and watch the clock until ``stop`` is set; then wait for running jobs."""
        self._aps.start()
        try:
            self.guard.check()
            while not stop.wait(self.guard_every_s):
                self.guard.check()
        finally:
            self._aps.shutdown(wait=True)
