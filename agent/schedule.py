"""Periodic jobs on APScheduler 3.x, made safe against wall-clock steps.

APScheduler 3.x keeps each job's next run as a wall-clock time. When the wall clock is stepped
(NTP sync after a Raspberry Pi boots with a stale clock, a manual change):

* backwards by an hour, every job would wait an extra hour: the schedule stalls;
* forwards, every job is overdue at once, and without coalescing it would be run for each missed
  interval: the schedule floods.

Flooding is prevented by adding jobs with ``coalesce=True`` and ``max_instances=1`` (one late run,
never a burst), no misfire grace limit (a late run still runs) and :class:`SkippingInterval`, a
trigger that jumps over missed intervals arithmetically: APScheduler lists every missed run time
before coalescing, which after a 56-year step (a Pi booting at 1970) would be 177 million of them. Stalling is prevented by the
:class:`ClockGuard`: it compares the wall clock with the monotonic clock (CLOCK_BOOTTIME, which
also counts suspend, so resuming a laptop is not mistaken for a step) and, when their offset moves
by more than ``threshold_s``, shifts every interval job's next run by the same amount so that it
fires when it was due in monotonic time. :func:`detect_step` is the pure core.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Callable

from agent.clock import Clock

log = logging.getLogger(__name__)


def _skipping_interval_class():
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


class Scheduler:
    """The agent's jobs: a thin wrapper that adds jobs the safe way and runs the guard."""

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
        trigger = _skipping_interval_class()(seconds=seconds, timezone="UTC")
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
