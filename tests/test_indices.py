"""IEEE 1366 indices (collector/indices.py): hand-computed examples and property tests."""

import math

import pytest
from hypothesis import given, settings, strategies as st

from collector.indices import Interruption, ieee1366

DAY = 86400.0


def test_hand_computed_cell():
    # 4 agents watching a whole day, 2 more watching half of it: 5 customers.
    observed = 4 * DAY + 2 * DAY / 2
    cuts = [Interruption("a", 3600), Interruption("a", 1800), Interruption("b", 7200),
            Interruption("c", 120), Interruption("d", 300)]          # 300 s is still momentary
    ix = ieee1366(cuts, observed, DAY)
    assert ix.customers == 5
    assert (ix.sustained, ix.momentary) == (3, 2)
    assert ix.power_saifi == pytest.approx(3 / 5)
    assert ix.power_saidi_min == pytest.approx((60 + 30 + 120) / 5)   # 42 min
    assert ix.power_caidi_min == pytest.approx(70)                    # 210 min / 3
    assert ix.power_maifi == pytest.approx(2 / 5)
    assert ix.power_asai == pytest.approx(1 - 12600 / observed)


def test_the_class_follows_the_whole_duration_the_minutes_the_counted_part():
    """A 1,200 s cut of which 180 s lie in the window (or in watched time): one sustained
    interruption of 3 minutes."""
    ix = ieee1366([Interruption("a", 1200, 180)], DAY, DAY)
    assert (ix.sustained, ix.momentary) == (1, 0)
    assert ix.power_saidi_min == pytest.approx(3.0) and ix.power_caidi_min == pytest.approx(3.0)
    assert ix.power_asai == pytest.approx(1 - 180 / DAY)


def test_nothing_observed_gives_no_figures():
    ix = ieee1366([], 0.0, DAY)
    assert ix.power_saifi is None and ix.power_asai is None and ix.customers == 0


def test_no_sustained_interruption_has_no_caidi():
    ix = ieee1366([Interruption("a", 60)], DAY, DAY)
    assert ix.power_saifi == 0 and ix.power_caidi_min is None and ix.power_maifi == 1


@pytest.mark.parametrize("bad", [
    lambda: ieee1366([Interruption("a", -1)], DAY, DAY),
    lambda: ieee1366([], -1, DAY),
    lambda: ieee1366([], DAY, 0),
    lambda: ieee1366([Interruption("a", 60, 90)], DAY, DAY),
], ids=["negative-duration", "negative-observed", "zero-period", "counted-beyond-whole"])
def test_bad_input_is_refused(bad):
    with pytest.raises(ValueError):
        bad()


durations = st.lists(st.floats(min_value=0, max_value=3 * DAY, allow_nan=False), max_size=40)


def cuts_of(ds):
    return [Interruption(f"a{i % 7}", d) for i, d in enumerate(ds)]


@settings(max_examples=300, deadline=None)
@given(durations, st.integers(min_value=1, max_value=50))
def test_saidi_is_saifi_times_caidi(ds, agents):
    ix = ieee1366(cuts_of(ds), agents * DAY, DAY)
    if ix.sustained:
        assert math.isclose(ix.power_saidi_min, ix.power_saifi * ix.power_caidi_min, rel_tol=1e-9)


@settings(max_examples=300, deadline=None)
@given(durations, st.integers(min_value=1, max_value=50), st.floats(min_value=1, max_value=DAY))
def test_an_agent_without_outages_never_raises_saifi(ds, agents, extra_watch):
    before = ieee1366(cuts_of(ds), agents * DAY, DAY)
    after = ieee1366(cuts_of(ds), agents * DAY + extra_watch, DAY)
    assert after.power_saifi <= before.power_saifi
    assert after.power_saidi_min <= before.power_saidi_min
    assert after.power_asai >= before.power_asai


@settings(max_examples=200, deadline=None)
@given(durations, st.randoms())
def test_indices_do_not_depend_on_input_order(ds, rnd):
    cuts = cuts_of(ds)
    shuffled = list(cuts)
    rnd.shuffle(shuffled)
    a, b = ieee1366(cuts, 10 * DAY, DAY), ieee1366(shuffled, 10 * DAY, DAY)
    assert (a.sustained, a.momentary) == (b.sustained, b.momentary)
    for name in ("power_saifi", "power_saidi_min", "power_maifi", "power_asai"):
        assert math.isclose(getattr(a, name), getattr(b, name), rel_tol=1e-9, abs_tol=1e-12)
