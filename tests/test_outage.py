"""The outage state machine: tables for the rules, properties for the invariants."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings, strategies as st

from agent import outage
from agent.outage import Params, RoundResult, Tracker, step

T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
P = Params(open_after=3, close_after=2, momentary_max_s=300, max_gap_s=60)


def rounds(pattern: str, interval: float = 10.0, cause: str = "isp", wall_steps: dict | None = None):
    """'u' up, 'd' down, 'g' degraded, 'e' error; one round every ``interval`` s.
    ``wall_steps`` {index: seconds} steps the wall clock before that round."""
    out, wall_offset = [], 0.0
    for i, ch in enumerate(pattern):
        wall_offset += (wall_steps or {}).get(i, 0.0)
        status = {"u": "up", "d": "down", "g": "degraded", "e": "error"}[ch]
        out.append(RoundResult(time=T0 + timedelta(seconds=i * interval + wall_offset),
                               mono=1000.0 + i * interval, status=status,
                               cause=cause if ch == "d" else ("loss" if ch == "g" else None)))
    return out


def run(rs, params=P, state=None):
    state = state or Tracker()
    changes = []
    for r in rs:
        state, ch = step(state, r, params)
        changes += ch
    return state, changes


def closed(changes, kind="connectivity"):
    return [c.episode for c in changes if c.kind == "closed" and c.episode.type == kind]


@pytest.mark.parametrize("pattern, n_episodes, start_idx, end_idx", [
    ("uuuuu", 0, None, None),
    ("uddu", 0, None, None),                 # a blip of 2 < open_after: nothing
    ("udddu", 0, None, None),                # opened, but one good round does not close it
    ("udddduu", 1, 1, 5),                    # starts at the first failure, ends at first good round
    ("udddudduu", 1, 1, 7),                  # a relapse during recovery keeps it open
    ("uddduuddduu", 2, 1, 4),
    ("ddduu", 1, 0, 3),
    ("udddeeduu", 1, 1, 7),                  # error rounds count neither way
], ids=["all-up", "blip", "open-not-closed", "one", "relapse", "two", "from-first-round", "errors-neutral"])
def test_episode_boundaries(pattern, n_episodes, start_idx, end_idx):
    rs = rounds(pattern)
    _, changes = run(rs)
    eps = closed(changes)
    assert len(eps) == n_episodes
    if n_episodes:
        # the first episode (tables only check the first)
        assert eps[0].start == rs[start_idx].time
        assert eps[0].end == rs[end_idx].time
        assert eps[0].duration_s == (end_idx - start_idx) * 10


def test_opened_once_and_closed_once():
    _, changes = run(rounds("udddddddduu"))
    assert [c.kind for c in changes if c.episode.type == "connectivity"] == ["opened", "closed"]


@pytest.mark.parametrize("causes, expected", [
    (["lan", "lan", "isp"], "lan"),
    (["isp", "isp", "lan"], "isp"),
    (["dns", "dns", "dns"], "dns"),
    (["isp", "lan", "unknown", "dns"], "lan"),   # tie: the most local cause wins
    (["unknown", "unknown", "isp"], "unknown"),
], ids=["lan-majority", "isp-majority", "dns", "tie", "unknown"])
def test_cause_is_majority_of_failed_rounds(causes, expected):
    rs = [RoundResult(T0 + timedelta(seconds=10 * i), 1000.0 + 10 * i, "down", c)
          for i, c in enumerate(causes)]
    n = len(rs)
    rs += [RoundResult(T0 + timedelta(seconds=10 * (n + i)), 1000.0 + 10 * (n + i), "up") for i in range(2)]
    _, changes = run(rs)
    assert closed(changes)[0].cause == expected


def test_power_cause_when_on_battery_at_start():
    rs = [RoundResult(T0 + timedelta(seconds=10 * i), 1000.0 + 10 * i, "down", "lan", on_battery=(i == 0))
          for i in range(4)]
    rs += [RoundResult(T0 + timedelta(seconds=40 + 10 * i), 1040.0 + 10 * i, "up") for i in range(2)]
    _, changes = run(rs)
    assert closed(changes)[0].cause == "power"


@pytest.mark.parametrize("down_rounds, sustained", [(30, False), (31, True)],
                         ids=["300s-momentary", "310s-sustained"])
def test_momentary_sustained_split(down_rounds, sustained):
    _, changes = run(rounds("u" + "d" * down_rounds + "uu"))
    ep = closed(changes)[0]
    assert ep.duration_s == down_rounds * 10
    assert ep.sustained is sustained


def test_wall_clock_step_backwards_inside_episode():
    # NTP steps the clock back an hour in the middle of an outage: duration still from monotonic.
    rs = rounds("udddddduu", wall_steps={4: -3600})
    _, changes = run(rs)
    ep = closed(changes)[0]
    assert ep.duration_s == 60
    assert ep.end == rs[7].time
    assert ep.start == ep.end - timedelta(seconds=60)  # rebased on the trusted, latest clock


def test_wall_clock_step_forward_inside_episode():
    rs = rounds("udddddduu", wall_steps={3: 86400 * 365 * 56})  # 1970 -> 2026 style jump
    _, changes = run(rs)
    ep = closed(changes)[0]
    assert ep.duration_s == 60
    assert ep.start == ep.end - timedelta(seconds=60)


def test_gap_closes_open_episode_at_last_round_seen():
    rs = rounds("uddddd")
    late = RoundResult(rs[-1].time + timedelta(hours=2), rs[-1].mono + 7200, "up")
    _, changes = run(rs + [late])
    ep = closed(changes)[0]
    assert ep.end == rs[-1].time
    assert ep.duration_s == 40
    assert ep.details["end_observed"] is False


def test_reboot_detected_by_boot_id_closes_episode():
    rs = [RoundResult(T0 + timedelta(seconds=10 * i), 100.0 + 10 * i, "down", "lan", boot="A")
          for i in range(4)]
    after = RoundResult(T0 + timedelta(seconds=50), 140.0 + 5, "up", boot="B")  # mono looks continuous
    _, changes = run(rs + [after])
    assert len(closed(changes)) == 1


def test_degraded_period_is_not_an_outage():
    _, changes = run(rounds("ugggggguu"))
    assert closed(changes) == []
    deg = closed(changes, "degraded")
    assert len(deg) == 1 and deg[0].duration_s == 60 and deg[0].cause == "loss"


def test_in_progress_reports_length_so_far():
    state, _ = run(rounds("udddddd"))
    (ep,) = outage.in_progress(state, P)
    assert ep.end is None and ep.duration_s == 50


def test_state_round_trips_through_json():
    state, _ = run(rounds("uddddgud"))
    assert Tracker.from_json(state.to_json()) == state


# -- properties ------------------------------------------------------------------------------

patterns = st.text(alphabet="uudddge", min_size=0, max_size=120)
params = st.builds(Params, open_after=st.integers(1, 5), close_after=st.integers(1, 5),
                   momentary_max_s=st.sampled_from([0.0, 30.0, 300.0]), max_gap_s=st.just(60.0))


@settings(max_examples=300, deadline=None)
@given(patterns, params, st.dictionaries(st.integers(0, 119), st.sampled_from([-7200.0, -5.0, 3.0, 86400.0]),
                                         max_size=3))
def test_episodes_never_overlap_and_durations_non_negative(pattern, prm, wall_steps):
    _, changes = run(rounds(pattern, wall_steps=wall_steps), prm)
    for kind in ("connectivity", "degraded"):
        eps = closed(changes, kind)
        for e in eps:
            assert e.duration_s >= 0
            assert e.end >= e.start
            assert e.sustained == (e.duration_s > prm.momentary_max_s)
        if not wall_steps:
            for a, b in zip(eps, eps[1:]):
                assert a.end <= b.start
        assert len({e.id for e in eps}) == len(eps)  # each closed exactly once


@settings(max_examples=300, deadline=None)
@given(patterns, params, st.integers(0, 120))
def test_restart_anywhere_neither_loses_nor_duplicates(pattern, prm, cut):
    rs = rounds(pattern)
    cut = min(cut, len(rs))
    whole, ch_whole = run(rs, prm)
    first, ch1 = run(rs[:cut], prm)
    resumed = Tracker.from_json(first.to_json())  # what the agent stores with each round
    second, ch2 = run(rs[cut:], prm, resumed)
    assert second == whole
    assert ch1 + ch2 == ch_whole


def test_sustained_follows_the_published_duration():
    """300.0004 s is published as 300.0 s: it must then be momentary, not sustained."""
    rs = [RoundResult(T0 + timedelta(seconds=10 * i), 1000.0 + 10 * i, "down", "isp") for i in range(3)]
    rs += [RoundResult(T0 + timedelta(seconds=300.0004), 1300.0004, "up"),
           RoundResult(T0 + timedelta(seconds=310), 1310.0, "up")]
    _, changes = run(rs, Params(open_after=3, close_after=2, momentary_max_s=300, max_gap_s=600))
    (ep,) = closed(changes)
    assert ep.duration_s == 300.0 and ep.sustained is False
