"""The collector's rules as docs/collector.md states them, each against a case computed by hand:
power-watched time, the class of an interruption, outage time only where a line was watched, the
tie-breaks and rejections, and the invariants that must hold whatever the data (hypothesis).
What the sources do with bad rounds, unset clocks and untagged episodes: test_collector_sources."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

import collector.sites as sites_module
from collector.clean import clean
from collector.columns import CAUSES, TYPES
from collector.sites import by_site
from collector.stats import Settings, aggregate, load_shedding
from kit.definitions import POWER_JOIN_S, Unit, joins_previous_cut
from kit.records import Dataset, Episode, ObsHour

MON = 1_793_559_600          # Monday 2026-11-02 00:00 PKT = 2026-11-01 19:00 UTC
DAY = 86400
H10 = MON + 10 * 3600        # Monday 10:00 PKT: a UTC hour, inside the working hours
PAIR = Settings(bootstrap=50, min_agents=2, min_watch_h=0)
ONE = Settings(bootstrap=50, min_agents=1, min_watch_h=0)
A = Unit("a", "PK-SD", "PTCL")
B = Unit("b", "PK-SD", "PTCL")


def day_of_rounds(u: Unit, skip=(), start=MON, hours=24) -> list[ObsHour]:
    return [ObsHour(u, start + h * 3600, 3600.0) for h in range(hours) if h not in skip]


def ds(start, end, obs=(), eps=()) -> Dataset:
    return Dataset(start, end, tuple(obs), tuple(eps))


# ---------------------------------------------------------------- power-watched time

# a watched 10:00-11:00 with its rounds for `rounds_s` and had one cut, recorded as these power
# episodes (cause, seconds after 10:00, duration); b watched the whole hour and had no cut. The
# window is that hour (T = 3,600 s). Expected, by hand: agent_hours, SAIFI, SAIDI (min), ASAI and
# the 10:00 load-shedding share.
WATCHED = {
    # A battery carried the cut for 1,270 s, then the host died at its last heartbeat (10:21:40,
    # 30 s later: one cut, 10:00-11:00). a watched 1,300 s of rounds and 2,300 s host down:
    # 3,600 s, so 2 customers, 1 interruption of 60 min. The old rule dropped the host-down time
    # with the merge: 4,900 s observed, share 3,600 / 4,900 = 0.73.
    "ac_lost-then-host_down-joined": (
        1300.0, [("ac_lost", 0, 1270), ("host_down", 1300, 2300)],
        dict(agent_hours=2.0, saifi=0.5, saidi=30.0, asai=0.5, share=0.5)),
    # Host down 10:00-10:30, a UPS episode 10:20-10:40: one cut of 2,400 s. Rounds 10:30-11:00
    # (1,800 s) + host down 1,800 s = 3,600 s; the old rule added the merged 2,400 s to the rounds
    # (4,200 s: 10:30-10:40 twice).
    "host_down-then-overlapping-ac_lost": (
        1800.0, [("host_down", 0, 1800), ("ac_lost", 1200, 1200)],
        dict(agent_hours=2.0, saifi=0.5, saidi=20.0, asai=1 - 2400 / 7200, share=2400 / 7200)),
    # 60-s rounds 10:00-10:29 (1,800 s, the last one 10:29-10:30 by its interval) and host down
    # from the last heartbeat, 10:29:00, to 11:00 (1,860 s): 3,660 s, at most 3,600 s.
    "last-round-overlaps-host_down": (
        1800.0, [("host_down", 1740, 1860)],
        dict(agent_hours=2.0, saifi=0.5, saidi=15.5, asai=1 - 1860 / 7200, share=1860 / 7200)),
}


@pytest.mark.parametrize("rounds_s, power, want", WATCHED.values(), ids=list(WATCHED))
def test_host_down_time_is_watched_time_however_it_was_merged(rounds_s, power, want):
    obs = [ObsHour(A, H10, rounds_s), ObsHour(B, H10, 3600.0)]
    eps = [Episode(A, "power", cause, H10 + t, d) for cause, t, d in power]
    r = aggregate(ds(H10, H10 + 3600, obs, eps), PAIR)
    (c,) = r["cells"]
    assert c["agent_hours"] == pytest.approx(want["agent_hours"])
    assert c["power_saifi"] == pytest.approx(want["saifi"])
    assert c["power_saidi_min"] == pytest.approx(want["saidi"])
    assert c["power_caidi_min"] == pytest.approx(want["saidi"] / want["saifi"])
    assert c["power_maifi"] == 0.0
    assert c["power_asai"] == pytest.approx(want["asai"])
    assert c["work_hours_power_min_per_agent"] == pytest.approx(want["saidi"])
    assert c["load_shedding_by_hour"][10] == pytest.approx(want["share"])
    assert c["load_shedding_heatmap"][0][10] == pytest.approx(want["share"])
    assert c["sites_watched_min_h"] == 2
    # Internet figures stand on round time only.
    assert c["internet_availability"] == 1.0
    assert r["data_quality"]["clipped"].get("power_merged", 0) == len(power) - 1
    assert "unwatched_clipped" not in r["data_quality"]["clipped"]


def test_host_down_time_counts_in_the_hours_it_covered():
    """A host down from 10:30 to 12:30 is watched time in three hours (1,800, 3,600, 1,800 s),
    not all in the hour it began: hour by hour it is the share's observed time."""
    obs = day_of_rounds(A, skip=(11,)) + day_of_rounds(B)
    obs = [o if not (o.unit == A and o.hour in (H10, H10 + 7200)) else ObsHour(A, o.hour, 1800.0)
           for o in obs]
    eps = [Episode(A, "power", "host_down", H10 + 1800, 7200.0)]
    (c,) = aggregate(ds(MON, MON + DAY, obs, eps), PAIR)["cells"]
    assert c["agent_hours"] == pytest.approx(48.0)
    assert c["load_shedding_by_hour"][10] == pytest.approx(1800 / 7200)
    assert c["load_shedding_by_hour"][11] == pytest.approx(3600 / 7200)
    assert c["load_shedding_by_hour"][12] == pytest.approx(1800 / 7200)


def test_sites_take_the_most_watched_agent_for_each_kind_of_time():
    """Two agents of one site in 10:00-11:00: a1 with 3,000 s of rounds, a2 with 600 s of rounds
    and 2,400 s host down (3,000 s power-watched, 600 s round time). The line: round time 3,000 s
    (a1), power-watched time 3,000 s (either); not 3,600 s."""
    a1 = Unit("a1", "PK-SD", "PTCL", site="s")
    a2 = Unit("a2", "PK-SD", "PTCL", site="s")
    obs = [ObsHour(a1, H10, 3000.0), ObsHour(a2, H10, 600.0), ObsHour(B, H10, 3600.0)]
    eps = [Episode(a2, "power", "host_down", H10 + 1200, 2400.0)]
    cols, q = clean(ds(H10, H10 + 3600, obs, eps), ["PK-SD"], H10 + 3600)
    line = by_site(cols, q)
    s = [u.agent for u in line.units].index("s")
    unit, _, o_s = line.obs.columns()
    (i,) = np.flatnonzero(unit == s)
    assert (o_s[i], line.obs_pw[i]) == (3000.0, 3000.0)
    (c,) = aggregate(ds(H10, H10 + 3600, obs, eps), PAIR)["cells"]
    assert c["agent_hours"] == pytest.approx((3000 + 3600) / 3600)
    assert (c["agents"], c["sites"]) == (3, 2)


# ---------------------------------------------------------------- the class and the limits

# One agent, one power cut of 1,200 s of which 180 s count. Window, now, the hours (after MON)
# with rounds, the cut's start, and what clipped it. Customers served n = watched / T.
CLASS = {
    "180-s-in-the-window": (MON + DAY, MON + DAY, range(24), MON + DAY - 180, "window_clipped", 1.0),
    "until-in-the-future": (MON + 2 * DAY, MON + DAY, range(24), MON + DAY - 180, "window_clipped", 0.5),
    "180-s-watched": (MON + DAY, MON + DAY, range(10), H10 - 180, "unwatched_clipped", 10 / 24),
}


@pytest.mark.parametrize("end, now, hours, start, reason, n", CLASS.values(), ids=list(CLASS))
def test_the_class_follows_the_whole_duration(end, now, hours, start, reason, n):
    obs = [ObsHour(A, MON + h * 3600, 3600.0) for h in hours]
    eps = [Episode(A, "power", "ac_lost", start, 1200.0)]
    r = aggregate(ds(MON, end, obs, eps), ONE, now=now)
    (c,) = r["cells"]
    assert c["power_saifi"] == pytest.approx(1 / n)      # one sustained interruption
    assert c["power_maifi"] == 0.0
    assert c["power_saidi_min"] == pytest.approx(3.0 / n)   # of 180 s
    assert c["power_caidi_min"] == pytest.approx(3.0)
    assert r["data_quality"]["clipped"] == {reason: 1}


def test_an_outage_counts_up_to_now_when_the_window_reaches_into_the_future():
    obs = day_of_rounds(A)
    eps = [Episode(A, "connectivity", "isp", MON + DAY - 600, 3600.0)]
    r = aggregate(ds(MON, MON + 2 * DAY, obs, eps), ONE, now=MON + DAY)
    (c,) = r["cells"]
    assert c["internet_outage_min_per_agent"] == pytest.approx(10.0 / 0.5)
    assert c["internet_availability"] == pytest.approx(1 - 600 / DAY)
    assert r["data_quality"]["clipped"] == {"window_clipped": 1}


@pytest.fixture(params=["dense", "sorted"])
def cells(request, monkeypatch):
    """Both ways collector.clean finds a line's watched time per hour: a dense table (few lines
    and hours) and sorting (many), the observed hours then looked up a few at a time (slices
    of a large fleet's, here of 3)."""
    if request.param == "sorted":
        monkeypatch.setattr("collector.sites._DENSE_CELLS", 0)
        monkeypatch.setattr("collector.sites._SLICE", 3)
    return request.param


def test_outage_time_is_scaled_down_where_the_line_was_watched_less(cells):
    """a's rounds of 10:00-11:00 are half missing (1,800 s). Power: a cut 09:30-11:30 has 3,600 s
    in that hour, scaled to 1,800 s (5,400 s in all). Internet: two outages of 1,200 s there,
    2,400 s > 1,800 s: each scaled by 0.75 to 900 s."""
    obs = day_of_rounds(A, skip=(10,)) + [ObsHour(A, H10, 1800.0)]
    eps = [Episode(A, "power", "ac_lost", H10 - 1800, 7200.0),
           Episode(A, "connectivity", "isp", H10, 1200.0),
           Episode(A, "connectivity", "dns", H10 + 1800, 1200.0)]
    r = aggregate(ds(MON, MON + DAY, obs, eps), ONE)
    (c,) = r["cells"]
    watched = 23 * 3600 + 1800
    n = watched / DAY
    assert c["power_saifi"] == pytest.approx(1 / n)
    assert c["power_saidi_min"] == pytest.approx(90 / n)
    assert c["power_asai"] == pytest.approx(1 - 5400 / watched)
    assert c["load_shedding_by_hour"][9] == pytest.approx(0.5)
    assert c["load_shedding_by_hour"][10] == pytest.approx(1.0)
    assert c["load_shedding_by_hour"][11] == pytest.approx(0.5)
    assert c["internet_outage_min_per_agent"] == pytest.approx(30 / n)
    assert c["internet_outage_min_per_agent_isp"] == pytest.approx(15 / n)
    assert c["internet_outage_min_per_agent_dns"] == pytest.approx(15 / n)
    assert c["internet_availability"] == pytest.approx(1 - 1800 / watched)
    # 10:00-11:00 is inside working hours: the cut's working minutes are its scaled minutes
    # there (30), plus 09:30-10:00 (30); 11:00-11:30 too (30).
    assert c["work_hours_power_min_per_agent"] == pytest.approx(90 / n)
    assert r["data_quality"]["clipped"] == {"unwatched_clipped": 3}


def test_an_outage_with_no_watched_second_is_rejected(cells):
    obs = day_of_rounds(A, skip=(12,))
    eps = [Episode(A, "connectivity", "isp", MON + 12 * 3600 + 600, 600.0),
           Episode(A, "power", "ac_lost", MON + 12 * 3600 + 1200, 600.0)]
    r = aggregate(ds(MON, MON + DAY, obs, eps), ONE)
    (c,) = r["cells"]
    assert r["data_quality"]["rejected"] == {"unwatched": 2}
    assert r["data_quality"]["accepted"]["episodes"] == 0
    assert c["power_maifi"] == 0.0 and c["internet_outages_per_agent"] == 0.0
    assert c["load_shedding_by_hour"][12] is None


# ---------------------------------------------------------------- ties and rejections

@pytest.mark.parametrize("first, second, kept", [
    (("isp", 600.0), ("lan", 300.0), ("isp", 600.0)),
    (("lan", 300.0), ("isp", 600.0), ("isp", 600.0)),
    (("isp", 600.0), ("lan", 600.0), ("lan", 600.0)),
    (("dns", 600.0), ("power", 600.0), ("power", 600.0)),
    (("unknown", 600.0), ("dns", 600.0), ("dns", 600.0)),
], ids=["longer-kept", "longer-kept-either-order", "lan-before-isp", "power-first",
        "dns-before-unknown"])
def test_equal_starts_keep_the_longer_then_the_first_cause(first, second, kept):
    eps = [Episode(A, "connectivity", c, H10, d) for c, d in (first, second)]
    cols, q = clean(ds(MON, MON + DAY, eps=eps), ["PK-SD"], MON + DAY)
    assert [(CAUSES[c], d) for c, d in zip(cols.ep_cause.tolist(), cols.ep_dur.tolist())] == [kept]
    assert dict(q.rejected) == {"overlap_dropped": 1}


def test_zero_length_episodes_are_rejected():
    eps = [Episode(A, "power", "ac_lost", H10, 0.0), Episode(A, "power", "host_down", H10 + 600, 0.0),
           Episode(A, "connectivity", "isp", H10 + 1200, 0.0)]
    r = aggregate(ds(MON, MON + DAY, day_of_rounds(A), eps), ONE)
    (c,) = r["cells"]
    assert r["data_quality"]["rejected"] == {"zero_duration": 3}
    assert r["data_quality"]["accepted"]["episodes"] == 0
    assert c["power_maifi"] == 0.0 and c["internet_outages_per_agent"] == 0.0


def test_records_from_a_clock_never_set_are_counted():
    """Records dated before 2000 (a hand-made dataset; the sources count such rows themselves)."""
    old = 3600
    d = Dataset(MON, MON + DAY, (ObsHour(A, old, 3600.0),) + tuple(day_of_rounds(A)),
                (Episode(A, "power", "ac_lost", old + 60, 600.0),))
    r = aggregate(d, ONE, now=MON + DAY)
    assert r["data_quality"]["rejected"] == {"clock_unset": 2}


def test_a_share_above_one_is_left_empty_and_counted():
    """Data can no longer make one; the pure profile function shows what would happen."""
    off, obs = np.zeros(168), np.zeros(168)
    off[10], obs[10] = 4000.0, 3600.0          # Monday 10:00: more cut than watched
    off[11], obs[11] = 1800.0, 3600.0
    by_hour, by_weekday, heatmap, impossible = load_shedding(off, obs)
    assert heatmap[0][10] is None and heatmap[0][11] == 0.5 and heatmap[1][10] is None
    assert by_hour[10] is None and by_hour[11] == 0.5
    assert by_weekday[0] == pytest.approx(5800 / 7200)
    assert impossible == 2


# ---------------------------------------------------------------- power episodes of one cut

JOINS = {
    # episodes of one agent (cause, start, duration) -> interruptions (start, duration, cause)
    "touching-ac_lost": ([("ac_lost", 0, 600), ("ac_lost", 600, 300)], [(0, 900, "ac_lost")]),
    "ac_lost-10-s-apart": ([("ac_lost", 0, 600), ("ac_lost", 610, 300)],
                           [(0, 600, "ac_lost"), (610, 300, "ac_lost")]),
    "touching-host_down": ([("host_down", 0, 600), ("host_down", 600, 300)], [(0, 900, "host_down")]),
    "host_down-5-s-after-host_down": ([("host_down", 0, 600), ("host_down", 605, 300)],
                                      [(0, 600, "host_down"), (605, 300, "host_down")]),
    "host_down-30-s-after-ac_lost": ([("ac_lost", 0, 600), ("host_down", 630, 300)],
                                     [(0, 930, "ac_lost")]),
    "host_down-60-s-after-ac_lost": ([("ac_lost", 0, 600), ("host_down", 660, 300)],
                                     [(0, 960, "ac_lost")]),
    "host_down-90-s-after-ac_lost": ([("ac_lost", 0, 600), ("host_down", 690, 300)],
                                     [(0, 600, "ac_lost"), (690, 300, "host_down")]),
    "ac_lost-30-s-after-host_down": ([("host_down", 0, 600), ("ac_lost", 630, 300)],
                                     [(0, 600, "host_down"), (630, 300, "ac_lost")]),
    # A host-down episode inside a long battery episode does not hide the battery's end: the
    # host going down 30 s after it is the same cut.
    "host_down-after-the-battery-it-was-inside": (
        [("ac_lost", 0, 1000), ("host_down", 10, 10), ("host_down", 1030, 300)], [(0, 1330, "ac_lost")]),
    # The host booted at 600 (power back), then went down again: the battery ended long before.
    "host_down-after-a-joined-host_down": (
        [("ac_lost", 0, 100), ("host_down", 100, 500), ("host_down", 630, 60)],
        [(0, 600, "ac_lost"), (630, 60, "host_down")]),
}


def _fold(eps):
    """Interruptions by kit.definitions.joins_previous_cut, one episode at a time, in order of
    start (equal starts: the longer first, then the cause sorting first in CAUSES)."""
    out = []
    for cause, s, d in sorted(eps, key=lambda e: (e[1], -e[2], CAUSES.index(e[0]))):
        if out and joins_previous_cut(out[-1][1], out[-1][3], s, cause):
            out[-1][1] = max(out[-1][1], s + d)
        else:
            out.append([s, s + d, cause, None])
        if cause != "host_down":
            out[-1][3] = max(out[-1][3] if out[-1][3] is not None else -np.inf, s + d)
    return [(s, e - s, cause) for s, e, cause, _ in out]


@pytest.mark.parametrize("eps, cuts", JOINS.values(), ids=list(JOINS))
def test_power_episodes_of_one_cut_are_one_interruption(eps, cuts):
    recs = [Episode(A, "power", c, H10 + s, float(d)) for c, s, d in eps]
    cols, q = clean(ds(MON, MON + DAY, eps=recs), ["PK-SD"], MON + DAY)
    got = [(s - H10, d, CAUSES[c]) for s, d, c in
           zip(cols.ep_start.tolist(), cols.ep_dur.tolist(), cols.ep_cause.tolist())]
    assert got == [(float(s), float(d), c) for s, d, c in cuts]
    assert q.clipped["power_merged"] == len(eps) - len(cuts)
    assert _fold(eps) == [(s, d, c) for s, d, c in cuts]


# ---------------------------------------------------------------- properties

KINDS = [("power", "ac_lost"), ("power", "host_down"), ("connectivity", "isp"),
         ("connectivity", "lan")]
agent_st = st.tuples(
    st.lists(st.one_of(st.none(), st.floats(1, 3600)), min_size=24, max_size=24),
    st.lists(st.tuples(st.sampled_from(KINDS), st.floats(0, DAY - 1), st.floats(1, 7200)),
             max_size=12))
fleet_st = st.tuples(st.lists(agent_st, min_size=1, max_size=4), st.booleans())


def _fleet(spec):
    agents, shared = spec
    units = [Unit(f"a{i}", "PK-SD", "PTCL", site="s" if shared and i < 2 else "")
             for i in range(len(agents))]
    obs = [ObsHour(u, MON + h * 3600, v) for u, (hours, _) in zip(units, agents)
           for h, v in enumerate(hours) if v is not None]
    eps = [Episode(u, t, c, MON + s, d) for u, (_, es) in zip(units, agents) for (t, c), s, d in es]
    return units, ds(MON, MON + DAY, obs, eps)


def _union(spans) -> float:
    total, end = 0.0, -np.inf
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "sorted"])
@hsettings(max_examples=60, deadline=None)
@given(spec=fleet_st)
def test_property_outage_seconds_never_exceed_watched_seconds(dense, spec):
    _, d = _fleet(spec)
    cols, q = clean(d, ["PK-SD"], MON + DAY)
    dense_cells, slice_rows = sites_module._DENSE_CELLS, sites_module._SLICE
    try:
        sites_module._DENSE_CELLS = dense_cells if dense else 0
        sites_module._SLICE = slice_rows if dense else 2
        line = by_site(cols, q)
    finally:
        sites_module._DENSE_CELLS, sites_module._SLICE = dense_cells, slice_rows
    watched = {}
    unit, hour, o_s = line.obs.columns()
    for u, h, r, pw in zip(unit.tolist(), hour.tolist(), o_s.tolist(), line.obs_pw.tolist()):
        assert 0 <= r <= pw <= 3600
        watched[(u, h)] = (pw, r)
    spent: dict = {}
    for e, h, s in zip(line.pc_ep.tolist(), line.pc_hour.tolist(), line.pc_s.tolist()):
        k = (int(line.ep_unit[e]), int(line.ep_type[e]), int(h))
        spent[k] = spent.get(k, 0.0) + s
    for (u, t, h), s in spent.items():
        w = watched.get((u, h), (0.0, 0.0))[0 if t == TYPES.index("power") else 1]
        assert s <= w + 1e-6
    assert np.all(line.ep_secs > 0)
    assert np.all(line.ep_secs <= line.ep_dur + 1e-6)


@hsettings(max_examples=60, deadline=None)
@given(fleet_st)
def test_property_shares_in_0_1_and_saidi_is_saifi_times_caidi(spec):
    _, d = _fleet(spec)
    r = aggregate(d, ONE)
    for c in r["cells"]:
        shares = c["load_shedding_by_hour"] + c["load_shedding_by_weekday"]
        shares += [x for row in c["load_shedding_heatmap"] for x in row]
        assert all(0.0 <= x <= 1.0 for x in shares if x is not None)
        if c["power_caidi_min"] is None:
            assert c["power_saifi"] == 0
        else:
            assert c["power_saidi_min"] == pytest.approx(c["power_saifi"] * c["power_caidi_min"])
        assert 0.0 <= c["power_asai"] <= 1.0
    assert "impossible_share" not in r["data_quality"]["rejected"]


@hsettings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ac_lost", "host_down"]), st.floats(0, 7200),
                          st.floats(1, 900)), max_size=12))
def test_property_a_merged_cut_is_the_union_of_its_episodes(spec):
    """One agent's power episodes, merged: apart from each other, each one the union of its
    episodes plus, where a host_down joined late, the gap (at most 60 s) before it; the same
    interruptions as kit.definitions.joins_previous_cut taken one episode at a time (equal
    starts: the longer first, then ac_lost)."""
    eps = [Episode(A, "power", c, MON + s, d) for c, s, d in spec]
    cols, q = clean(ds(MON, MON + DAY, eps=eps), ["PK-SD"], MON + DAY)
    s, d = cols.ep_start, cols.ep_dur
    assert np.all(s[1:] > s[:-1] + d[:-1])
    for a, b in zip(s.tolist(), (s + d).tolist()):
        mine = [(MON + x, MON + x + y) for _, x, y in spec if a <= MON + x <= b]
        assert min(x for x, _ in mine) == a and max(y for _, y in mine) == pytest.approx(b)
        assert _union(mine) - 1e-6 <= b - a <= _union(mine) + POWER_JOIN_S * (len(mine) - 1) + 1e-6
    if not any(c == "host_down" for c, _, _ in spec):
        assert d.sum() == pytest.approx(_union([(x, x + y) for _, x, y in spec]), abs=1e-3)
    order = sorted(range(len(spec)), key=lambda i: (spec[i][1], -spec[i][2], CAUSES.index(spec[i][0])))
    want = _fold([spec[i] for i in order])
    got = [v for x, y in zip(s.tolist(), d.tolist()) for v in (x - MON, y)]
    assert got == pytest.approx([v for x, y, _ in want for v in (x, y)], abs=1e-3)
    assert q.accepted["episodes"] + q.clipped["power_merged"] == len(spec)


@hsettings(max_examples=60, deadline=None)
@given(fleet_st.map(lambda s: (s[0], False)))
def test_property_observed_hours_are_the_agents_power_watched_hours(spec):
    """Single-agent sites: agent_hours is the sum over agents and hours of round time plus the
    union of host-down time, at most an hour each."""
    agents, _ = spec
    _units, d = _fleet(spec)
    want = 0.0
    for hours, es in agents:
        hd = [(MON + s, min(MON + s + du, MON + DAY)) for (t, c), s, du in es if c == "host_down"]
        for h in range(24):
            a, b = MON + h * 3600, MON + (h + 1) * 3600
            down = _union([(max(x, a), min(y, b)) for x, y in hd if x < b and y > a])
            want += min(3600.0, (hours[h] or 0.0) + down)
    r = aggregate(d, ONE)
    assert sum(c["agent_hours"] for c in r["cells"]) * 3600 == pytest.approx(want, abs=1e-6)


def test_observed_hours_held_as_runs_read_back_as_they_were(monkeypatch):
    """The checked hours are held as runs of consecutive hours of one unit with one round time
    (collector.columns.Hours): read back whole, row by row or a slice at a time (any edge,
    inside a run or at one) they are the columns they were made from; the runs are found a
    slice at a time at any slice edge; bad columns are refused."""
    import collector.columns as columns_module
    from collector.columns import Hours

    rng = np.random.default_rng(5)
    for slice_rows in (1, 3, 7, 1 << 20):
        monkeypatch.setattr(columns_module, "HOURS_SLICE", slice_rows)
        units = np.sort(rng.choice(2**31 - 1, 6, replace=False))
        rows = []
        for u in units.tolist():
            h = int(rng.integers(480_000, 500_000))
            for _ in range(int(rng.integers(1, 40))):
                h += int(rng.choice([1, 1, 1, 2, 30]))
                rows.append((u, h * 3600, float(rng.choice([3600.0, 3600.0, 1200.5, 0.0]))))
        unit, hour, s = (np.array(c) for c in zip(*rows))
        obs = Hours.of(unit, hour, s)
        assert obs.n == len(rows) and obs.at.size < obs.n and obs.rising()
        assert obs.unit.dtype == np.int32 and obs.first.dtype == np.int32
        for got, want in zip(obs.columns(), (unit, hour, s)):
            assert np.array_equal(got, want)
        for a, b in ((0, 1), (2, 9), (0, obs.n), (obs.n - 4, obs.n + 5), (7, 7), (-3, 2)):
            lo, hi = max(a, 0), min(b, obs.n)
            for got, want in zip(obs.rows(a, b), (unit, hour, s)):
                assert np.array_equal(got, want[lo:hi])
            assert np.array_equal(obs.round_time(a, b), s[lo:hi])
        for size in (1, 4, 1000):
            parts = list(obs.slices(size))
            assert [p[0] for p in parts] == list(range(0, obs.n, size))
            for k, want in enumerate((unit, hour, s)):
                assert np.array_equal(np.concatenate([p[k + 1] for p in parts]), want)
        assert obs.hour_range() == (int(hour.min()) // 3600, int(hour.max()) // 3600)
        # one run per stretch of consecutive hours of one unit with one round time
        breaks = (unit[1:] != unit[:-1]) | (hour[1:] != hour[:-1] + 3600) | (s[1:] != s[:-1])
        assert obs.at.size == 1 + int(breaks.sum())
        # every unit made one (as lines merge agents): no longer one row per unit and hour
        # when two units watched the same hour
        one = obs.with_units(np.zeros(int(units.max()) + 1, dtype=np.int64))
        assert one.rising() == bool(np.all(np.diff(hour) > 0))
        assert np.array_equal(one.columns()[0], np.zeros(obs.n))
    empty = Hours.empty()
    assert empty.n == 0 and empty.hour_range() is None and list(empty.slices()) == []
    assert [c.size for c in empty.columns()] == [0, 0, 0]
    with pytest.raises(ValueError, match="in that order"):
        Hours.of(np.array([1, 1]), np.array([7200, 3600]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="UTC hour"):
        Hours.of(np.array([1]), np.array([7201]), np.array([1.0]))
    with pytest.raises(ValueError, match="differ in length"):
        Hours.of(np.array([1, 2]), np.array([3600]), np.array([1.0]))
    with pytest.raises(ValueError, match="int32"):
        Hours.of(np.array([2**31]), np.array([3600]), np.array([1.0]))


def test_observed_hours_rows_found_and_empty_hours_added():
    """The runs answer which row holds a unit's hour (-1 where none does) and take hours of
    0 s round time in among theirs (host-down hours without a round, collector.episodes): the
    same rows as columns made with those hours from the start."""
    from collector.columns import Hours

    rng = np.random.default_rng(8)
    keys = np.unique(rng.integers(0, 5, 300) * (1 << 32) + rng.integers(480_000, 480_090, 300))
    s = rng.choice([3600.0, 3600.0, 17.25], keys.size)
    obs = Hours.from_key(keys, s)
    absent = np.setdiff1d((np.arange(5)[:, None] * (1 << 32) + np.arange(479_997, 480_095)).ravel(), keys)
    assert np.array_equal(obs.rows_of(keys), np.arange(keys.size))
    assert (obs.rows_of(absent) == -1).all()
    assert np.array_equal(obs.round_time_at(np.arange(keys.size)), s)
    add = np.sort(rng.choice(absent, 40, replace=False))
    both = obs.with_empty(add)
    order = np.argsort(np.concatenate([keys, add]))
    want = Hours.from_key(np.concatenate([keys, add])[order], np.concatenate([s, np.zeros(40)])[order])
    for got, exp in zip(both.columns(), want.columns()):
        assert np.array_equal(got, exp)
    assert both.n == keys.size + 40 and both.rising()
    assert np.array_equal(both.rows_of(add), np.searchsorted(np.sort(np.concatenate([keys, add])), add))
    assert obs.with_empty(np.zeros(0, dtype=np.int64)) is obs
    assert (Hours.empty().rows_of(keys[:3]) == -1).all()
    assert Hours.empty().with_empty(add).columns()[2].tolist() == [0.0] * 40


@pytest.mark.parametrize("unit_base", [0, 1 << 20])
def test_observed_hours_summed_per_unit_and_hour_in_arrival_order(unit_base):
    """collector.clean sums the hours of one unit and hour in the order they came and clips
    them at the hour, on a key of 4 bytes where unit x span fits and of 8 where it does not
    (units from ``unit_base``): the hours a dictionary sums row by row."""
    import collector.clean as clean_module
    from kit.definitions import Quality

    rng = np.random.default_rng(12)
    n = 5000
    unit = unit_base + rng.integers(0, 40, n)
    hour = (480_000 + rng.integers(0, 4000, n)) * 3600
    secs = rng.uniform(0.5, 2500.0, n)
    q = Quality()
    obs = clean_module._summed_hours(q, [unit.copy(), hour.copy(), secs.copy()])  # consumed
    want: dict = {}
    for u, h, x in zip(unit.tolist(), hour.tolist(), secs.tolist()):
        want[(u, h)] = want.get((u, h), 0.0) + x
    keys = sorted(want)
    got_u, got_h, got_s = obs.columns()
    assert list(zip(got_u.tolist(), got_h.tolist())) == keys
    assert got_s.tolist() == [min(want[k], 3600.0) for k in keys]
    assert q.clipped["observed_clipped"] == sum(1 for v in want.values() if v > 3600.0) > 0
    assert q.accepted["obs_hours"] == len(keys)
