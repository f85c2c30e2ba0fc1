"""The publication floor on watching time, rows retagged with their agent's region (and site),
and one line one vote (sites): hand-computed cells through collector.stats.aggregate."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from collector.output import to_table
from collector.sites import _merge_site_episodes
from collector.stats import Settings, aggregate
from kit.definitions import Unit
from kit.records import Episode, ObsHour, PingDay, SpeedTest
from tests.cells import DAY, MON, ds_of, units, watch

S = Settings(bootstrap=200)


# ---------------------------------------------------------------- thin cells (min_watch_h)

def thin_cell(hours_each: float):
    """Six agents that each watched ``hours_each`` hours of a one-day window, each with one
    momentary power cut and two short outages."""
    us = units(6)
    obs, eps = [], []
    for u in us:
        left = hours_each * 3600.0
        h = 0
        while left > 0:
            obs.append(ObsHour(u, int(MON + h * 3600), min(3600.0, left)))
            left -= 3600.0
            h += 1
        eps.append(Episode(u, "power", "ac_lost", MON + 60, 30.0))
        eps += [Episode(u, "connectivity", "isp", MON + 300 + 200 * k, 40.0) for k in range(2)]
    return ds_of(MON, MON + DAY, obs, eps)


def test_minutes_of_watching_are_not_published():
    """The case that was published: six agents and 0.4 agent-hours gave MAIFI in the
    thousands. Now the cell says why it is empty."""
    (c,) = aggregate(thin_cell(0.4 / 6), S)["cells"]
    assert c["suppressed"] and c["suppressed_reason"] == "min_watch_h"
    assert "power_maifi" not in c and "agents" not in c
    # A day cell asks for half the day (12 h) at most: six agents that watched 12 h each pass.
    (c,) = aggregate(thin_cell(12), S)["cells"]
    assert not c["suppressed"] and c["sites_watched_min_h"] == 6
    assert c["power_maifi"] == pytest.approx(6 / (6 * 12 / 24))
    r = aggregate(thin_cell(11.5), S)
    assert r["cells"][0]["suppressed_reason"] == "min_watch_h"
    assert "suppressed (fewer than 5 lines watched 24 h or more)" in to_table(r)


def test_min_watch_h_counts_each_line_against_the_floor():
    """Five of six agents watched long enough: with min_agents 5 the cell is published and
    rests on all six (the short watcher's time still counts as observed)."""
    ds = thin_cell(24)
    short = Unit("a5", "PK-SD", "PTCL")
    ds = replace(ds, obs=tuple(o for o in ds.obs if o.unit != short)
                 + tuple(watch(short, MON, 2)))
    (c,) = aggregate(ds, S)["cells"]
    assert not c["suppressed"] and c["agents"] == 6 and c["sites_watched_min_h"] == 5
    assert c["agent_hours"] == pytest.approx(5 * 24 + 2)
    (c,) = aggregate(ds, replace(S, min_agents=6))["cells"]
    assert c["suppressed_reason"] == "min_watch_h"
    (c,) = aggregate(ds, replace(S, min_agents=6, min_watch_h=2))["cells"]
    assert not c["suppressed"]


def test_each_line_figure_says_what_it_rests_on():
    """A download median from one of six lines says so; latency from all six."""
    us = units(6)
    obs = [o for u in us for o in watch(u, MON, 24)]
    pings = [PingDay(u, int(MON), 20.0 + i, 40.0 + i, 0.5, 100) for i, u in enumerate(us)]
    speeds = [SpeedTest(us[2], MON + 600, 8e6, 1e6), SpeedTest(us[2], MON + 7200, 9e6, None)]
    (c,) = aggregate(ds_of(MON, MON + DAY, obs, pings=pings, speeds=speeds), S)["cells"]
    assert c["download_p50_bps"] == 8e6
    assert (c["download_p50_bps_sites"], c["download_p50_bps_agents"]) == (1, 1)
    assert (c["rtt_p50_ms_sites"], c["rtt_p50_ms_agents"]) == (6, 6)
    assert c["sites"] == 6


# ---------------------------------------------------------------- retagging

def test_rows_without_a_valid_region_take_the_agents_region():
    """a0 watched 10 h before its region was set, then 14 h as PK-SD: all 24 h count in Sindh.
    a1 wrote PK-XX and later corrected it to PK-SD. a2 never had a valid region. a3 moved from
    Punjab to Sindh: both its regions are valid and stay as they are."""
    sd = units(6)
    none = replace(sd[0], region="")
    typo = replace(sd[1], region="PK-XX")
    lost = Unit("z9", "PK-XX", "PTCL")
    pb = replace(sd[3], region="PK-PB")
    obs = (watch(none, MON, 10) + watch(sd[0], MON + 10 * 3600, 14)
           + watch(typo, MON, 2) + watch(sd[1], MON + 2 * 3600, 22)
           + watch(pb, MON, 12) + watch(sd[3], MON + 12 * 3600, 12)
           + watch(lost, MON, 24)
           + [o for u in (sd[2], sd[4], sd[5]) for o in watch(u, MON, 24)])
    eps = [Episode(none, "power", "ac_lost", MON + 3600, 1200.0),
           Episode(typo, "connectivity", "isp", MON + 1800, 600.0)]
    r = aggregate(ds_of(MON, MON + DAY, obs, eps), replace(S, min_watch_h=0))
    assert r["data_quality"]["clipped"]["retagged"] == 10 + 1 + 2 + 1
    assert r["data_quality"]["rejected"]["unknown_region"] == 24
    assert r["data_quality"]["unknown_region_codes"] == {"PK-XX": 24}
    cells = {c["region"]: c for c in r["cells"]}
    assert set(cells) == {"PK-SD", "PK-PB"}       # no cell for the empty code or PK-XX
    sd_cell = cells["PK-SD"]
    assert sd_cell["agents"] == 6
    assert sd_cell["agent_hours"] == pytest.approx(24 * 5 + 12)
    assert sd_cell["power_saifi"] == pytest.approx(1 / (5.5))
    assert sd_cell["internet_outages_per_agent_isp"] == pytest.approx(1 / 5.5)
    assert cells["PK-PB"]["suppressed"]          # a3's Punjab half: one agent


def test_the_latest_valid_region_wins():
    """An agent that wrote PK-PB, then nothing, then PK-SD: the untagged rows go to Sindh."""
    u = Unit("a0", "PK-PB", "PTCL")
    obs = watch(u, MON, 2) + watch(replace(u, region=""), MON + 2 * 3600, 2) \
        + watch(replace(u, region="PK-SD"), MON + 4 * 3600, 2)
    others = [o for v in units(5, prefix="b") for o in watch(v, MON, 24)]
    r = aggregate(ds_of(MON, MON + DAY, obs + others), replace(S, min_agents=1, min_watch_h=0))
    hours = {c["region"]: c["agent_hours"] for c in r["cells"] if c.get("isp") == "PTCL"}
    assert hours["PK-PB"] == pytest.approx(2)
    assert hours["PK-SD"] == pytest.approx(5 * 24 + 4)
    assert r["data_quality"]["clipped"]["retagged"] == 2


# ---------------------------------------------------------------- one line, one vote

def shared_router(n_shared=6, n_alone=4):
    """``n_shared`` agents behind one router (site "s1"), ``n_alone`` agents on lines of their
    own (no site tag: older agents). One ISP cut of the shared line seen by all its agents,
    within a minute of each other; one outage of a lone line."""
    shared = [Unit(f"h{i}", "PK-SD", "PTCL", site="s1") for i in range(n_shared)]
    alone = units(n_alone)
    obs = [o for u in shared + alone for o in watch(u, MON, 24)]
    eps = [Episode(u, "connectivity", "isp", MON + 3600 + 10 * i, 600.0 + 5 * i)
           for i, u in enumerate(shared)]
    eps.append(Episode(alone[0], "connectivity", "lan", MON + 7200, 300.0))
    return ds_of(MON, MON + DAY, obs, eps)


def test_agents_behind_one_router_are_one_customer():
    r = aggregate(shared_router(), S)
    (c,) = r["cells"]
    assert (c["agents"], c["sites"]) == (10, 5)
    n = 5.0                                       # five lines watched the whole day
    assert c["internet_outages_per_agent"] == pytest.approx(2 / n)
    # The shared line's outage is the union of its agents' episodes: 3600 .. 3650 + 625 s.
    union_s = (3600 + 50 + 625) - 3600
    assert c["internet_outage_min_per_agent"] == pytest.approx((union_s + 300) / 60 / n)
    assert c["internet_availability"] == pytest.approx(1 - (union_s + 300) / (5 * DAY))
    assert c["agent_hours"] == pytest.approx(5 * 24)
    assert r["data_quality"]["clipped"]["site_merged"] == 5
    assert r["events"] == []                      # one line's cut is no regional event


def test_six_agents_on_one_line_do_not_pass_the_floor():
    (c,) = aggregate(shared_router(6, 2), S)["cells"]
    assert c["suppressed"] and c["suppressed_reason"] == "min_agents"


def test_regional_events_count_lines():
    """Three lines lose power together, one of them with three agents: 3 of 6 lines, not 5 of 8
    agents; the agents are given alongside."""
    shared = [Unit(f"h{i}", "PK-SD", "PTCL", site="s1") for i in range(3)]
    alone = units(5)
    obs = [o for u in shared + alone for o in watch(u, MON, 24)]
    eps = [Episode(u, "power", "ac_lost", MON + 36000 + 15 * i, 3600.0)
           for i, u in enumerate(shared + alone[:2])]
    r = aggregate(ds_of(MON, MON + DAY, obs, eps), S)
    (e,) = r["events"]
    assert (e["sites_affected"], e["sites_observed"]) == (3, 6)
    assert (e["agents_affected"], e["agents_observed"]) == (5, 8)
    assert e["share"] == 0.5
    # Two lines out of six is below the share: no event.
    r = aggregate(ds_of(MON, MON + DAY, obs, eps[:4]), S)
    assert r["events"] == []


def test_agents_without_a_site_tag_give_the_same_figures_as_before():
    """An agent whose site tag is its own id (it could not see its gateway's address) is the
    same customer as one with no tag at all."""
    ds = shared_router(1, 5)
    tagged = replace(ds, obs=tuple(replace(o, unit=replace(o.unit, site=o.unit.site or o.unit.agent))
                                   for o in ds.obs),
                     episodes=tuple(replace(e, unit=replace(e.unit, site=e.unit.site or e.unit.agent))
                                    for e in ds.episodes))
    (a,) = aggregate(ds, S)["cells"]
    (b,) = aggregate(tagged, S)["cells"]
    assert a == b and a["sites"] == a["agents"] == 6


@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 3),
                          st.integers(0, 200), st.integers(0, 60), st.integers(0, 6)),
                min_size=1, max_size=40))
def test_property_site_episodes_merge_into_their_union(spec):
    """Per (line, type) the merged episodes never overlap and cover exactly the union of the
    agents' episodes, where only overlapping ones join (one starting at another's end does
    not); each keeps the start and cause of the first it absorbed (by start, then the longer,
    then the cause order)."""
    unit = np.array([u for u, *_ in spec], dtype=np.int64)
    typ = np.array([t for _, t, *_ in spec], dtype=np.int64)
    agent = np.array([a for _, _, a, *_ in spec], dtype=np.int64)
    start = np.array([float(s) for *_, s, _, _ in spec])
    dur = np.array([float(d) for *_, d, _ in spec])
    cause = np.array([c for *_, c in spec], dtype=np.int64)
    whole = dur * 2     # a longer whole duration (clipped at a window's end): merged the same way
    keep, new_dur, new_whole, heads = _merge_site_episodes(np.arange(unit.size), unit, typ, start, dur,
                                                           whole, agent, cause)
    for g in {(u, t) for u, t, *_ in spec}:
        mine = sorted((start[i], -whole[i], cause[i], i) for i in range(unit.size)
                       if (unit[i], typ[i]) == g)
        runs = []
        for a, _, _, i in mine:
            b = start[i] + dur[i]
            if runs and a < runs[-1][1]:
                runs[-1][1] = max(runs[-1][1], b)
                runs[-1][2].append(i)
            else:
                runs.append([a, b, [i]])
        got = [(start[i], start[i] + new_dur[i], i) for _, _, _, i in
               sorted((start[i], -whole[i], cause[i], i) for i in np.flatnonzero(keep)
                      if (unit[i], typ[i]) == g)]
        assert [(a, b) for a, b, _ in got] == [(a, b) for a, b, _ in runs]
        for (_, _, i), (_, _, members) in zip(got, runs):
            assert i == members[0]      # the first: its start and cause
            # the whole duration: to the latest whole end of the run's members
            assert new_whole[i] == max(start[m] + whole[m] for m in members) - start[i]
    for h, who in heads.items():
        assert keep[h] and len(who) > 1


def test_rows_from_before_an_upgrade_take_the_agents_site():
    """h0 ran an older agent (no site tag) for the first 6 hours, then tagged its rows with the
    router it shares with h1: it is one line with h1 all day, not a line of its own until the
    upgrade. Four more lines make the floor."""
    old = Unit("h0", "PK-SD", "PTCL")
    new, h1 = replace(old, site="s1"), Unit("h1", "PK-SD", "PTCL", site="s1")
    obs = (watch(old, MON, 6) + watch(new, MON + 6 * 3600, 18) + watch(h1, MON, 24)
           + [o for u in units(4, prefix="b") for o in watch(u, MON, 24)])
    eps = [Episode(old, "connectivity", "isp", MON + 3600, 600.0),
           Episode(h1, "connectivity", "isp", MON + 3610, 600.0)]
    r = aggregate(ds_of(MON, MON + DAY, obs, eps), S)
    (c,) = r["cells"]
    assert (c["agents"], c["sites"]) == (6, 5)
    assert c["agent_hours"] == pytest.approx(5 * 24)
    assert r["data_quality"]["clipped"]["site_retagged"] == 6 + 1
    assert r["data_quality"]["clipped"]["site_merged"] == 1
    assert c["internet_outages_per_agent"] == pytest.approx(1 / 5)


def test_a_lines_agents_count_in_the_periods_they_watched():
    """h1 shares h0's router but watched only on the second day: the first day's cell has the
    line with one agent."""
    h0, h1 = Unit("h0", "PK-SD", "PTCL", site="s1"), Unit("h1", "PK-SD", "PTCL", site="s1")
    obs = (watch(h0, MON, 48) + watch(h1, MON + DAY, 24)
           + [o for u in units(4, prefix="b") for o in watch(u, MON, 48)])
    mon, tue = aggregate(ds_of(MON, MON + 2 * DAY, obs), S, period="day")["cells"]
    assert (mon["agents"], mon["sites"]) == (5, 5)
    assert (tue["agents"], tue["sites"]) == (6, 5)
