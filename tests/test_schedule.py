"""Scheduling across wall-clock steps: pure detection, the trigger, and a real APScheduler.

The system clock of a shared test machine cannot be stepped, so the end-to-end test shifts the
wall clock APScheduler reads (``apscheduler.schedulers.base.datetime.now``) and the one our guard
reads by the same amount: a stand-in for an NTP step, not a mock of APScheduler itself.
"""

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from agent.clock import SystemClock
from agent.schedule import Scheduler, _skipping_interval_class, detect_step


@pytest.mark.parametrize("prev, wall, mono, step", [
    (None, 100.0, 10.0, None),
    (90.0, 100.0, 10.0, None),          # steady
    (90.0, 100.5, 10.0, None),          # below threshold (slew, jitter)
    (90.0, 200.0, 10.0, 100.0),         # forward step
    (90.0, 10.0, 10.0, -90.0),          # backward step
], ids=["first", "steady", "small", "forward", "backward"])
def test_detect_step(prev, wall, mono, step):
    offset, got = detect_step(prev, wall, mono, threshold_s=2.0)
    assert offset == wall - mono
    assert got == step


def test_skipping_interval_never_returns_the_past_and_is_cheap():
    trig = _skipping_interval_class()(seconds=10, timezone="UTC")
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    prev = datetime(1970, 1, 1, tzinfo=timezone.utc)   # a Pi that booted at the epoch
    t0 = time.perf_counter()
    nxt = trig.get_next_fire_time(prev, now)
    assert time.perf_counter() - t0 < 0.01
    assert now < nxt <= now + timedelta(seconds=10)


class ShiftedClock(SystemClock):
    offset = 0.0

    def now(self):
        return super().now() + timedelta(seconds=self.offset)


@pytest.fixture
def shifted(monkeypatch):
    clock = ShiftedClock()

    class ShiftedDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) + timedelta(seconds=clock.offset)

    import apscheduler.schedulers.base as base
    monkeypatch.setattr(base, "datetime", ShiftedDatetime)
    return clock


@pytest.mark.parametrize("step_s", [-3600.0, -30.0, 86400.0 * 365 * 56], ids=["back-1h", "back-30s", "forward-56y"])
def test_jobs_keep_their_pace_across_a_wall_clock_step(shifted, step_s):
    runs: list[float] = []
    sched = Scheduler(shifted, guard_every_s=0.1)
    sched.every(0.3, lambda: runs.append(time.monotonic()), "tick")
    stop = threading.Event()
    t = threading.Thread(target=sched.run_until, args=(stop,))
    t.start()
    try:
        time.sleep(1.0)
        before = len(runs)
        shifted.offset += step_s
        time.sleep(2.0)
        after = len(runs) - before
    finally:
        stop.set()
        t.join(10)
    assert before >= 2
    # about 2.0 / 0.3 = 6-7 runs: neither stalled (0) nor flooded (a burst of catch-up runs)
    assert 4 <= after <= 9, (before, after)
    gaps = [b - a for a, b in zip(runs, runs[1:])]
    assert max(gaps) < 1.0  # no stall longer than a few intervals
    assert sched.guard.steps == 1
