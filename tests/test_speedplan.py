"""When speed tests run and whether they may: the schedule's distribution, the monthly budget
and the skip rules, as pure table-driven tests (no clock, no network)."""

import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest

from agent.speedplan import (
    DEFAULT_ESTIMATE_BYTES,
    MAX_INTERVAL_S,
    MIN_INTERVAL_S,
    check_cron,
    decide,
    estimate_bytes,
    month_start,
    next_cron,
    next_interval_s,
    used_bytes,
)

UTC = UTC
MB = 1_000_000


@pytest.mark.parametrize("u, want_s", [
    (0.0, MIN_INTERVAL_S),                       # clamped up to 36 min
    (1 - math.exp(-0.1), MIN_INTERVAL_S),        # 0.6 h: still under 36 min
    (1 - math.exp(-1), 6 * 3600),                # the mean
    (0.5, 6 * 3600 * math.log(2)),               # the median, 4.16 h
    (1 - math.exp(-2.5), MAX_INTERVAL_S),        # 15 h exactly
    (0.999999, MAX_INTERVAL_S),                  # clamped down to 15 h
    (1.0, MAX_INTERVAL_S),
], ids=["zero", "short", "mean", "median", "15h", "long", "one"])
def test_next_interval_table(u, want_s):
    assert next_interval_s(u, 6.0) == pytest.approx(want_s)


def test_interval_distribution_matches_the_clamped_exponential():
    rng = random.Random(42)
    draws = [next_interval_s(rng.random(), 6.0) for _ in range(50_000)]
    assert min(draws) == MIN_INTERVAL_S and max(draws) == MAX_INTERVAL_S
    # E[clamp(X, a, b)] for X ~ Exp(mean m): a + m (e^{-a/m} - e^{-b/m})
    m, a, b = 6 * 3600, MIN_INTERVAL_S, MAX_INTERVAL_S
    expected = a + m * (math.exp(-a / m) - math.exp(-b / m))
    assert sum(draws) / len(draws) == pytest.approx(expected, rel=0.02)
    share_at_floor = sum(d == a for d in draws) / len(draws)
    assert share_at_floor == pytest.approx(1 - math.exp(-a / m), abs=0.01)   # 9.5 %
    share_at_ceiling = sum(d == b for d in draws) / len(draws)
    assert share_at_ceiling == pytest.approx(math.exp(-b / m), abs=0.01)     # 8.2 %


def test_tests_spread_evenly_over_the_hours_of_the_day():
    """Two years of tests on the default schedule: every hour of the day gets its share
    (1/24 = 4.17 %) within 0.8 points, so evening slowdowns are sampled as often as nights."""
    rng = random.Random(7)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    hours = Counter()
    while t < datetime(2028, 1, 1, tzinfo=UTC):
        t += timedelta(seconds=next_interval_s(rng.random(), 6.0))
        hours[t.hour] += 1
    n = sum(hours.values())
    assert len(hours) == 24
    for h in range(24):
        assert abs(hours[h] / n - 1 / 24) < 0.008, (h, hours[h] / n)


def test_month_and_used_bytes():
    now = datetime(2026, 11, 23, 10, tzinfo=UTC)
    assert month_start(now) == datetime(2026, 11, 1, tzinfo=UTC)
    tests = [(datetime(2026, 10, 31, 23, 59, tzinfo=UTC), 500 * MB),   # last month: not counted
             (datetime(2026, 11, 1, 0, 0, tzinfo=UTC), 40 * MB),
             (datetime(2026, 11, 20, tzinfo=UTC), 60 * MB),
             (datetime(2026, 11, 21, tzinfo=UTC), 0)]                   # a skip
    assert used_bytes(tests, now) == 100 * MB


@pytest.mark.parametrize("recent, want", [
    ([], DEFAULT_ESTIMATE_BYTES), ([0, 0], DEFAULT_ESTIMATE_BYTES), ([30 * MB], 30 * MB),
    ([900 * MB, 20 * MB, 30 * MB, 25 * MB], 30 * MB),   # the last three only
    ([20 * MB, 80 * MB, 30 * MB], 80 * MB),
])
def test_estimate_bytes(recent, want):
    assert estimate_bytes(recent) == want


@pytest.mark.parametrize("kw, run, reason", [
    ({}, True, None),
    ({"used": 1950 * MB}, False, "budget"),                       # 1950 + 100 > 2000
    ({"used": 1950 * MB, "force": True}, True, None),             # --force overrides the budget
    ({"used": 1900 * MB}, True, None),                            # 1900 + 100 = 2000: fits
    ({"outage_in_progress": True}, False, "outage"),
    ({"outage_in_progress": True, "force": True}, False, "outage"),
    ({"on_battery": True}, True, None),                           # only_on_ac off by default
    ({"on_battery": True, "only_on_ac": True}, False, "on_battery"),
    ({"budget_bytes": 0}, False, "budget"),                       # a zero budget: never
], ids=["fits", "over", "forced", "exact", "outage", "outage-forced", "battery-ok", "battery-skip",
        "zero-budget"])
def test_decide(kw, run, reason):
    args = {"used": 0, "estimate": 100 * MB, "budget_bytes": 2000 * MB, "outage_in_progress": False,
            "on_battery": False, "only_on_ac": False, **kw}
    d = decide(**args)
    assert (d.run, d.reason) == (run, reason)
    if not run:
        assert d.detail


def test_cron_schedule():
    t = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
    assert next_cron("0 9,21 * * *", t, UTC) == datetime(2026, 11, 23, 21, tzinfo=UTC)
    assert next_cron("0 9,21 * * *", datetime(2026, 11, 23, 21, tzinfo=UTC), UTC) == \
        datetime(2026, 11, 24, 9, tzinfo=UTC)
    pkt = timezone(timedelta(hours=5))  # Asia/Karachi has no DST
    assert next_cron("0 9 * * *", t, pkt) == datetime(2026, 11, 24, 4, tzinfo=UTC)


@pytest.mark.parametrize("expr", ["", "0 9 * *", "61 * * * *", "0 25 * * *", "* * * * * *"])
def test_bad_cron_is_refused(expr):
    with pytest.raises(ValueError):
        check_cron(expr)
