"""Scheduling across wall-clock steps, suspend and overruns: the monotonic Ticker that runs the
agent's jobs, and the clock-step detector."""

import sys
import threading
import time

import pytest

from agent.clock import FakeClock, SystemClock
from agent.schedule import Ticker, detect_step, next_due


@pytest.mark.parametrize("due, period, now, expected", [
    (100.0, 10.0, 101.0, 110.0),      # the usual: a short job, the cadence does not drift
    (100.0, 10.0, 109.9, 110.0),
    (100.0, 10.0, 110.0, 120.0),      # ran exactly one period: the next grid point
    (100.0, 10.0, 135.0, 140.0),      # overran / suspended: skip 110..130, realign, no burst
    (100.0, 10.0, 100.0 + 86400 * 30, 100.0 + 86400 * 30 + 10),  # a month asleep: one run
], ids=["short", "almost", "exact", "overrun", "suspended"])
def test_next_due(due, period, now, expected):
    assert next_due(due, period, now) == pytest.approx(expected)
    assert next_due(due, period, now) > now


class FakeWaits:
    """Drives a Ticker loop on a FakeClock: each wait advances the clock (plus what a job costs),
    and wall-clock steps or a suspend can be injected at chosen waits."""

    def __init__(self, clock, n_waits, events=None, job_cost=0.0):
        self.clock, self.left, self.events, self.job_cost = clock, n_waits, events or {}, job_cost
        self.i = 0

    def wait(self, timeout):
        self.clock.advance(timeout)
        ev = self.events.get(self.i)
        if ev:
            kind, secs = ev
            self.clock.step_wall(secs) if kind == "wall" else self.clock.advance(secs)
        self.i += 1
        self.left -= 1
        return self.left < 0

    def job(self, log):
        def run():
            log.append(self.clock.monotonic())
            self.clock.advance(self.job_cost)
        return run


@pytest.mark.parametrize("events, expected_gaps", [
    ({}, [10.0] * 9),
    ({4: ("wall", -3600.0)}, [10.0] * 9),                 # the ticker never reads the wall clock
    ({4: ("wall", 86400.0 * 365 * 56)}, [10.0] * 9),
    ({4: ("suspend", 3600.0)}, [10.0] * 3 + [3610.0] + [10.0] * 5),  # one run on resume, no replay
], ids=["steady", "wall-back-1h", "wall-forward-56y", "suspend-1h"])
def test_ticker_cadence_on_fake_clock(events, expected_gaps):
    clock = FakeClock()
    fw = FakeWaits(clock, 10, events, job_cost=1.5)
    runs = []
    t = Ticker(clock)
    t.every(10.0, fw.job(runs), "round")
    t._loop("round", 10.0, fw.job(runs), 0.0, fw.wait)
    assert [round(b - a, 6) for a, b in zip(runs, runs[1:])] == expected_gaps


def test_ticker_realigns_after_an_overrun():
    clock = FakeClock()
    fw = FakeWaits(clock, 6, job_cost=25.0)   # every run takes 2.5 periods
    runs = []
    t = Ticker(clock)
    t.every(10.0, fw.job(runs), "slow")
    t._loop("slow", 10.0, fw.job(runs), 0.0, fw.wait)
    gaps = [b - a for a, b in zip(runs, runs[1:])]
    assert all(g == 30.0 for g in gaps)       # next grid point after each run: never a burst


@pytest.mark.serial   # counts the runs of 1 s of real time (tests/run.sh runs it alone)
def test_ticker_runs_jobs_in_real_time_and_stops():
    counts = {"a": 0, "b": 0}
    t = Ticker(SystemClock())
    t.every(0.1, lambda: counts.__setitem__("a", counts["a"] + 1), "a")
    t.every(0.25, lambda: counts.__setitem__("b", counts["b"] + 1), "b", first_in_s=0.05)
    stop = threading.Event()
    th = threading.Thread(target=t.run_until, args=(stop,))
    th.start()
    time.sleep(1.0)
    stop.set()
    th.join(5)
    assert not th.is_alive()
    assert 8 <= counts["a"] <= 12 and 3 <= counts["b"] <= 5, counts


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


def test_counters_added_from_many_job_threads_lose_nothing():
    """The job threads add to the agent's counters at once (rounds, push, alerts, the guard):
    every addition counts, with the interpreter switching threads as often as it can."""
    from agent.jobs.context import COUNTERS, Tally

    tally = Tally(dict.fromkeys(COUNTERS, 0))
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        def work():
            for _ in range(20_000):
                tally.add("rounds")
                tally.add("pushed_rows", 3)
        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(before)
    assert (tally["rounds"], tally["pushed_rows"]) == (6 * 20_000, 6 * 20_000 * 3)
    tally.add("alerts_sent")           # a counter first added later starts at 0
    assert tally["alerts_sent"] == 1 and list(tally)[:len(COUNTERS)] == list(COUNTERS)


def test_counters_copy_and_pickle_as_counters():
    """A copy, a copy.copy and a pickled and loaded Tally are Tallies with the same counts and a
    lock of their own."""
    import copy
    import pickle

    from agent.jobs.context import Tally

    tally = Tally({"rounds": 3})
    for other in (tally.copy(), copy.copy(tally), pickle.loads(pickle.dumps(tally))):
        assert type(other) is Tally and other == {"rounds": 3}
        other.add("rounds")
        assert other["rounds"] == 4 and tally["rounds"] == 3
