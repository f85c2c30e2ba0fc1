"""The collector's statistics against hand-computed cells, bad-data accounting and properties."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from collector.bootstrap import Bootstrap, wquantile
from collector.clean import clean
from collector.localtime import hour_of_week, periods, work_seconds_before
from collector.stats import Settings, aggregate
from kit.definitions import Unit, availability, quantile
from kit.records import Episode, ObsHour, PingDay, SpeedTest
from tests.cells import DAY, MON, ds_of, units, watch

S = Settings(bootstrap=200)


def hand_cell():
    """Five agents over one day (T = 86,400 s):
    a0..a3 watch all day, a4 half the day: observed rounds 4.5 agent-days.
    Power: a0 one sustained cut of 3,600 s; a1 a momentary one of 120 s; a2 a host-down cut of
    1,800 s (its rounds stop for that half hour: 86,400 - 1,800 s of rounds).
    Connectivity: a0 600 s (isp), a3 60 s (dns)."""
    us = units(5)
    obs = []
    for u in us[:2] + us[3:4]:
        obs += watch(u, MON, 24)
    obs += watch(us[2], MON, 24)[:-1] + [ObsHour(us[2], int(MON + 23 * 3600), 1800.0)]
    obs += watch(us[4], MON, 12)
    eps = [Episode(us[0], "power", "ac_lost", MON + 10 * 3600, 3600.0),
           Episode(us[1], "power", "ac_lost", MON + 3 * 3600, 120.0),
           Episode(us[2], "power", "host_down", MON + 23 * 3600 + 1800, 1800.0),
           Episode(us[0], "connectivity", "isp", MON + 15 * 3600, 600.0),
           Episode(us[3], "connectivity", "dns", MON + 2 * 3600, 60.0)]
    return ds_of(MON, MON + DAY, obs, eps)


def test_hand_computed_cell():
    r = aggregate(hand_cell(), S)
    (c,) = r["cells"]
    assert c["agents"] == 5 and not c["suppressed"]
    power_obs = 4 * DAY + DAY / 2            # rounds 4.5 days less 1,800 s, plus 1,800 s host down
    n = power_obs / DAY                      # 4.5 customers served
    assert c["agent_hours"] == pytest.approx(power_obs / 3600)
    assert c["power_saifi"] == pytest.approx(2 / n)
    assert c["power_saidi_min"] == pytest.approx((60 + 30) / n)
    assert c["power_caidi_min"] == pytest.approx(45.0)
    assert c["power_maifi"] == pytest.approx(1 / n)
    assert c["power_asai"] == pytest.approx(1 - 5400 / power_obs)
    net_obs = power_obs - 1800               # the host was off: no rounds, no internet figure
    n_net = net_obs / DAY
    assert c["internet_availability"] == pytest.approx(1 - 660 / net_obs)
    assert c["internet_outages_per_agent"] == pytest.approx(2 / n_net)
    assert c["internet_outage_min_per_agent"] == pytest.approx(11 / n_net)
    assert c["internet_outages_per_agent_isp"] == pytest.approx(1 / n_net)
    assert c["internet_outage_min_per_agent_dns"] == pytest.approx(1 / n_net)
    assert c["internet_outages_per_agent_power"] == 0.0
    # Monday 10:00-11:00 PKT is inside 09:00-18:00; the isp outage at 15:00 too; dns at 02:00 not.
    assert c["work_hours_power_min_per_agent"] == pytest.approx(60 / n)
    assert c["work_hours_internet_min_per_agent"] == pytest.approx(10 / n_net)
    # Hour of day 10 (PKT): 3,600 s without power over 5 agents' observed hour (5 x 3,600 s).
    assert c["load_shedding_by_hour"][10] == pytest.approx(3600 / (5 * 3600))
    # 23:00-24:00: a2 half an hour host down; observed: 3 full + a2's 1,800 s rounds + 1,800 s down.
    assert c["load_shedding_by_hour"][23] == pytest.approx(1800 / (4 * 3600))
    assert c["load_shedding_by_hour"][5] == 0.0
    assert c["load_shedding_heatmap"][0][10] == c["load_shedding_by_hour"][10]
    assert c["load_shedding_heatmap"][1] == [None] * 24   # no Tuesday in the window
    assert c["load_shedding_by_weekday"][0] == pytest.approx((3600 + 120 + 1800) / power_obs)


def test_saidi_is_saifi_times_caidi_and_intervals_hold_the_figure():
    (c,) = aggregate(hand_cell(), S)["cells"]
    assert c["power_saidi_min"] == pytest.approx(c["power_saifi"] * c["power_caidi_min"])
    for name in ("power_saifi", "power_saidi_min", "power_asai", "internet_availability"):
        lo, hi = c[name + "_ci"]
        assert lo <= c[name] <= hi, name


def test_publication_floor_suppresses_every_figure():
    ds = hand_cell()
    four = replace(ds, obs=tuple(o for o in ds.obs if o.unit.agent != "a4"))
    (c,) = aggregate(four, S)["cells"]
    assert c == {"region": "PK-SD", "region_name": "Sindh", "isp": "PTCL",
                 "period_start": c["period_start"], "period_end": c["period_end"],
                 "suppressed": True, "suppressed_reason": "min_agents"}
    (c,) = aggregate(four, replace(S, min_agents=4))["cells"]
    assert c["agents"] == 4 and not c["suppressed"]


def test_an_agent_switched_off_is_not_an_outage():
    """Same power cut, but a0 was off the second half of the day: fewer customers served, and
    the missing hours add no interruption."""
    ds = hand_cell()
    off = replace(ds, obs=tuple(o for o in ds.obs
                                if not (o.unit.agent == "a3" and o.hour >= MON + 12 * 3600)))
    a = aggregate(ds, S)["cells"][0]
    b = aggregate(off, S)["cells"][0]
    assert b["power_saifi"] == pytest.approx(2 / 4.0) and a["power_saifi"] == pytest.approx(2 / 4.5)
    assert b["internet_outages_per_agent"] > a["internet_outages_per_agent"]


def test_periods_cut_at_local_midnight_monday_and_month():
    days = periods(MON + 3600, MON + 2 * DAY, "day", "Asia/Karachi")
    assert days == [(MON + 3600, MON + DAY), (MON + DAY, MON + 2 * DAY)]
    (week,) = periods(MON + DAY, MON + 3 * DAY, "week", "Asia/Karachi")
    assert week == (MON + DAY, MON + 3 * DAY)
    months = periods(MON, MON + 40 * DAY, "month", "Asia/Karachi")
    assert len(months) == 2 and months[1][0] == MON + 29 * DAY   # 2026-12-01 00:00 PKT
    with pytest.raises(ValueError, match="period"):
        periods(MON, MON + DAY, "fortnight", "Asia/Karachi")


def test_daily_cells_attribute_episodes_to_the_day_they_began():
    us = units(5)
    obs = [o for u in us for o in watch(u, MON, 48)]
    eps = [Episode(u, "power", "ac_lost", MON + DAY - 1800, 3600.0) for u in us]
    r = aggregate(ds_of(MON, MON + 2 * DAY, obs, eps), S, period="day")
    mon, tue = r["cells"]
    assert mon["period_start"].startswith("2026-11-02T00:00") and tue["period_start"].startswith("2026-11-03")
    assert mon["power_saifi"] == pytest.approx(1.0) and tue["power_saifi"] == 0.0
    assert mon["power_saidi_min"] == pytest.approx(60.0)
    # The profile splits the same cut over the hours it covered.
    assert mon["load_shedding_by_hour"][23] == pytest.approx(0.5)
    assert tue["load_shedding_by_hour"][0] == pytest.approx(0.5)


@pytest.mark.parametrize("start_h,dur_h,work_h", [
    (8.5, 1.0, 0.5),            # Monday 08:30-09:30: half an hour inside
    (5 * 24 + 10, 2.0, 0.0),    # Saturday 10:00-12:00: not a working day
    (4 * 24 + 17, 65.0, 2.0),   # Friday 17:00 .. Monday 10:00: one hour each side
    (12, 24 * 7, 45.0),         # a whole week from Monday noon: 5 days x 9 h
], ids=["morning", "saturday", "weekend", "week"])
def test_work_hours_overlap(start_h, dur_h, work_h):
    local = np.array([MON + 5 * 3600 + start_h * 3600])   # MON in local seconds (UTC+5)
    got = work_seconds_before(local + dur_h * 3600, S) - work_seconds_before(local, S)
    assert got[0] == pytest.approx(work_h * 3600)


def test_hour_of_week_starts_monday():
    local = np.array([MON + 5 * 3600, MON + 5 * 3600 + 6 * DAY + 23 * 3600])
    assert hour_of_week(local).tolist() == [0, 167]


def test_line_quality_one_agent_one_vote():
    us = units(5)
    obs = [o for u in us for o in watch(u, MON, 24)]
    pings = [PingDay(u, int(MON), 10.0 * (i + 1), 100.0 * (i + 1), float(i), 100) for i, u in enumerate(us)]
    # a4 runs 40 speed tests, all slow; everyone else one fast test.
    speeds = [SpeedTest(u, MON + 600, 50e6 + i, 10e6) for i, u in enumerate(us[:4])]
    speeds += [SpeedTest(us[4], MON + 60 * k, 2e6, 1e6) for k in range(40)]
    (c,) = aggregate(ds_of(MON, MON + DAY, obs, pings=pings, speeds=speeds), S)["cells"]
    assert c["rtt_p50_ms"] == 30.0 and c["rtt_p95_ms"] == 300.0
    assert c["loss_pct"] == pytest.approx(2.0)
    assert c["download_p50_bps"] == 50e6 + 1         # the median agent, not the flood of tests
    assert c["download_p10_bps"] == 2e6              # the slowest line in ten
    assert c["upload_p50_bps"] == 10e6
    assert c["speed_under_threshold_share"] == pytest.approx(1 / 5)


def test_regional_events_told_apart_from_isolated_outages():
    us = units(8)
    obs = [o for u in us for o in watch(u, MON, 24)]
    grid = [Episode(u, "power", "ac_lost", MON + 10 * 3600 + 20 * i, 3600.0) for i, u in enumerate(us[:6])]
    lone = [Episode(us[7], "power", "ac_lost", MON + 3 * 3600, 900.0),
            Episode(us[6], "connectivity", "isp", MON + 14 * 3600, 600.0)]
    r = aggregate(ds_of(MON, MON + DAY, obs, grid + lone), S)
    (e,) = r["events"]
    assert (e["type"], e["agents_affected"], e["agents_observed"]) == ("power", 6, 8)
    assert e["start"].startswith("2026-11-02T10:00") and e["median_duration_min"] == 60.0
    (c,) = r["cells"]
    assert c["regional_events"] == 1
    assert c["power_regional_share"] == pytest.approx(6 / 7)
    assert c["internet_regional_share"] == 0.0


def test_events_in_a_small_region_are_counted_not_listed():
    us = units(4)
    obs = [o for u in us for o in watch(u, MON, 24)]
    eps = [Episode(u, "power", "ac_lost", MON + 3600 + i, 3600.0) for i, u in enumerate(us)]
    r = aggregate(ds_of(MON, MON + DAY, obs, eps), S)
    assert r["events"] == [] and r["events_suppressed"] == 1


def test_bad_data_is_rejected_or_clipped_and_counted():
    us = units(5)
    now = MON + DAY
    obs = [o for u in us for o in watch(u, MON, 24)]
    obs += [ObsHour(us[0], int(MON), 36000.0)]                     # a flood: 10 h in one hour
    obs += [ObsHour(Unit("x", "PK-XX", "PTCL"), int(MON), 3600.0)]  # unknown region
    eps = [Episode(us[0], "power", "ac_lost", MON + 3600, -50.0),
           Episode(us[1], "power", "ac_lost", now + 2 * DAY, 600.0),
           Episode(us[2], "power", "ac_lost", MON + 3600, 3600.0),
           Episode(us[2], "power", "ac_lost", MON + 5400, 3600.0),     # overlaps: merged, one cut
           Episode(us[2], "power", "host_down", MON + 4000, 100.0),    # inside: merged
           Episode(us[0], "connectivity", "isp", MON + 3600, 3600.0),
           Episode(us[0], "connectivity", "isp", MON + 5400, 3600.0),  # overlaps: clipped
           Episode(us[0], "connectivity", "isp", MON + 4000, 100.0),   # inside: dropped
           Episode(us[3], "power", "meteor", MON, 600.0),
           Episode(us[3], "weather", "rain", MON, 600.0),
           Episode(us[4], "power", "ac_lost", MON + 3600, float("nan"))]
    pings = [PingDay(us[0], int(MON), -5.0, 20.0, 0.0, 10), PingDay(us[1], int(MON), 20.0, 30.0, 140.0, 10),
             PingDay(us[2], int(MON), 20.0, 30.0, 1.0, 10)]
    speeds = [SpeedTest(us[0], MON, 1e13, 1e6), SpeedTest(us[1], MON, 2e7, -1.0),
              SpeedTest(us[2], MON, 2e7, 1e6)]
    speeds += [SpeedTest(us[3], MON + i, 2e7, 1e6) for i in range(60)]
    r = aggregate(ds_of(MON, MON + DAY, obs, eps, pings, speeds), S, now=now)
    q = r["data_quality"]
    assert q["rejected"] == {"absurd_loss": 1, "absurd_rtt": 1, "absurd_speed": 2,
                             "future_timestamp": 1, "negative_duration": 1, "not_a_number": 1,
                             "overlap_dropped": 1, "unknown_cause": 1, "unknown_region": 1,
                             "unknown_type": 1}
    assert q["clipped"] == {"flood_speed_tests": 12, "observed_clipped": 1, "overlap_clipped": 1,
                            "power_merged": 2}
    assert q["unknown_region_codes"] == {"PK-XX": 1}
    assert q["accepted"] == {"episodes": 3, "obs_hours": 120, "ping_days": 1, "speed_tests": 49}
    (c,) = r["cells"]
    # a2's three power episodes are one cut, 01:00-02:30: 5,400 s, one sustained interruption.
    assert c["power_saidi_min"] == pytest.approx(5400 / 60 / 5)
    assert c["power_saifi"] == pytest.approx(1 / 5)
    # a0's clipped outage keeps its end: 3,600 + 1,800 s.
    assert c["internet_outage_min_per_agent"] == pytest.approx((3600 + 1800) / 60 / 5)
    assert c["agent_hours"] == pytest.approx(5 * 24)


def test_output_is_plain_json():
    r = aggregate(hand_cell(), S)
    assert json.loads(json.dumps(r, allow_nan=False)) == r   # no NaN, tuple or non-string key


def test_bootstrap_quantile_matches_the_point_definition():
    boot = Bootstrap(4, replace(S, bootstrap=100), "k")
    boot.counts[:] = 1.0
    v = np.array([4.0, 1.0, 3.0, 2.0])
    assert boot.quantile(v, 0.5) == [2.0, 2.0]   # lower median, as wquantile
    assert boot.quantile(v, 0.1) == [1.0, 1.0]


QS = st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0])
VALUES = st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=40)


@hsettings(max_examples=200, deadline=None)
@given(VALUES, QS)
def test_wquantile_is_the_definition(values, q):
    """The figures' quantile is kit.definitions.quantile, over an array with NaN for no value."""
    assert wquantile(np.array(values + [np.nan, np.nan]), q) == quantile(values, q)


@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e6, 1e6, allow_nan=False), st.integers(0, 3)), min_size=1,
                max_size=30), QS)
def test_bootstrap_quantile_is_the_definition_over_the_draws(drawn, q):
    """A resample's quantile is kit.definitions.quantile of the values as often as drawn."""
    boot = Bootstrap(len(drawn), replace(S, bootstrap=1), "q")
    boot.counts = np.array([[float(c) for _, c in drawn]])
    want = quantile([v for v, c in drawn for _ in range(c)], q)
    got = boot.quantile(np.array([v for v, _ in drawn]), q)
    assert got == (None if want is None else [want, want])


def test_bootstrap_availability_is_the_definition_per_resample():
    """The vectorised availability of the intervals is kit.definitions.availability, resample
    by resample (before the floor at 0, which goes on the interval's ends)."""
    boot = Bootstrap(6, replace(S, bootstrap=300), "avail")
    outage = np.array([600.0, 0.0, 86400.0, 30.0, 0.0, 7200.0])
    watched = np.array([86400.0, 43200.0, 86400.0, 0.0, 3600.0, 86400.0])
    r = boot.ratios(outage, watched, complement=True)
    want = [availability(float(a), float(b))
            for a, b in zip(boot.counts @ outage, boot.counts @ watched)]
    for got, w in zip(r.tolist(), want):
        assert (w is None and np.isnan(got)) or max(0.0, got) == pytest.approx(w, rel=1e-12)
    c = aggregate(hand_cell(), S)["cells"][0]
    assert c["internet_availability"] == availability(660.0, 4 * 86400 + 43200 - 1800)


# ---------------------------------------------------------------- properties

def fleet(draw_eps, n_agents):
    us = units(n_agents)
    obs = [o for u in us for o in watch(u, MON, 24)]
    eps = [Episode(us[a % n_agents], "power", "ac_lost", MON + start, dur)
           for a, (start, dur) in enumerate(draw_eps)]
    return us, obs, eps


episodes_st = st.lists(st.tuples(st.floats(0, DAY - 7200), st.floats(1, 7000)), max_size=30)


@hsettings(max_examples=40, deadline=None)
@given(episodes_st, st.integers(5, 9), st.randoms(use_true_random=False))
def test_property_indices_do_not_depend_on_input_order(eps_spec, n, rnd):
    _us, obs, eps = fleet(eps_spec, n)
    a = aggregate(ds_of(MON, MON + DAY, obs, eps), S)
    obs2, eps2 = list(obs), list(eps)
    rnd.shuffle(obs2)
    rnd.shuffle(eps2)
    b = aggregate(ds_of(MON, MON + DAY, obs2, eps2), S)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@hsettings(max_examples=40, deadline=None)
@given(episodes_st, st.integers(5, 9))
def test_property_a_quiet_agent_never_raises_saifi(eps_spec, n):
    _us, obs, eps = fleet(eps_spec, n)
    (a,) = aggregate(ds_of(MON, MON + DAY, obs, eps), S)["cells"]
    quiet = watch(Unit("quiet", "PK-SD", "PTCL"), MON, 24)
    (b,) = aggregate(ds_of(MON, MON + DAY, obs + quiet, eps), S)["cells"]
    assert b["power_saifi"] <= a["power_saifi"] + 1e-12
    assert b["power_saidi_min"] <= a["power_saidi_min"] + 1e-9
    assert b["internet_availability"] >= a["internet_availability"] - 1e-12


@hsettings(max_examples=40, deadline=None)
@given(episodes_st, st.integers(5, 9))
def test_property_saidi_equals_saifi_times_caidi(eps_spec, n):
    _us, obs, eps = fleet(eps_spec, n)
    (c,) = aggregate(ds_of(MON, MON + DAY, obs, eps), S)["cells"]
    if c["power_caidi_min"] is None:
        assert c["power_saifi"] == 0
    else:
        assert c["power_saidi_min"] == pytest.approx(c["power_saifi"] * c["power_caidi_min"])
    assert 0.0 <= c["power_asai"] <= 1.0
    share = [x for x in c["load_shedding_by_hour"] if x is not None]
    assert all(0.0 <= x <= 1.0 for x in share)


@pytest.mark.parametrize("second, cause, gap_s, merged", [
    ("ac_lost", "ac_lost", 0.0, 1),        # touching: one cut
    ("ac_lost", "ac_lost", 10.0, 0),       # one sensor, two cuts 10 s apart: two interruptions
    ("ac_lost", "host_down", 30.0, 1),     # the battery went flat, the host went down: one cut
    ("ac_lost", "host_down", 90.0, 0),     # the host went down later: another cut
    ("host_down", "host_down", 5.0, 0),    # two host-down cuts: two interruptions
])
def test_power_episodes_join_only_as_one_cut(second, cause, gap_s, merged):
    from kit.definitions import joins_previous_cut

    u = units(1)[0]
    eps = [Episode(u, "power", second, MON + 3600, 600.0),
           Episode(u, "power", cause, MON + 4200 + gap_s, 300.0)]
    cols, q = clean(ds_of(MON, MON + DAY, eps=eps), ["PK-SD"], MON + DAY)
    assert q.clipped["power_merged"] == merged and cols.ep_start.size == 2 - merged
    carried = None if second == "host_down" else MON + 4200     # the battery's end, if any
    assert joins_previous_cut(MON + 4200, carried, MON + 4200 + gap_s, cause) is bool(merged)
    if merged:
        assert cols.ep_dur[0] == pytest.approx(600 + gap_s + 300)


def union_s(spans) -> float:
    total, end = 0.0, -np.inf
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


@hsettings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, DAY), st.floats(0, 7200)), max_size=40),
       st.sampled_from(["power", "connectivity"]))
def test_property_cleaned_episodes_never_overlap(spec, kind):
    us = units(4)
    eps = [Episode(us[u], kind, "ac_lost" if kind == "power" else "isp", MON + s, d) for u, s, d in spec]
    cols, q = clean(ds_of(MON, MON + 2 * DAY, eps=eps), ["PK-SD"], MON + 2 * DAY)
    for u in range(len(cols.units)):
        m = cols.ep_unit == u
        order = np.argsort(cols.ep_start[m])
        s, d = cols.ep_start[m][order], cols.ep_dur[m][order]
        if kind == "power":     # merged: apart, and the cut time is the union of the input
            assert np.all(s[1:] > s[:-1] + d[:-1])
            mine = [(s0, s0 + d0) for uu, s0, d0 in spec if us[uu] == cols.units[u]]
            assert d.sum() == pytest.approx(union_s([(MON + a, MON + b) for a, b in mine]), abs=1e-3)
        else:
            assert np.all(s[1:] >= s[:-1] + d[:-1] - 1e-6)
    dropped = q.clipped["power_merged"] if kind == "power" else q.rejected["overlap_dropped"]
    assert q.accepted["episodes"] + dropped + q.rejected["zero_duration"] == len(spec)


@given(st.lists(st.integers(-2 ** 62, 2 ** 62), max_size=200), st.integers(1, 40))
def test_distinct_is_numpys_unique(values, spread):
    """collector.columns.distinct (one sort) answers what np.unique does, on wide and narrow
    keys, repeated or not."""
    from collector.columns import distinct

    for a in (np.array(values, dtype=np.int64), np.array(values, dtype=np.int64) % spread):
        got = distinct(a)
        assert got.dtype == a.dtype and got.tolist() == np.unique(a).tolist()


def test_figures_do_not_depend_on_how_many_hours_are_taken_at_a_time(monkeypatch):
    """The observed hours are summed, counted per region and looked up a slice at a time
    (collector.stats, collector.events, collector.sites): slices of a few hours give the
    same result as one slice of all, to the last bit, on a fleet whose agents share routers
    (sites with several agents, and so several units in one region)."""
    from tests.fleet import Fleet

    fleet = Fleet(agents=24, days=3, start=MON - MON % DAY, round_s=300, seed=7, routers=True)
    ds = fleet.dataset()
    by_site: dict[str, set] = {}
    for o in ds.obs:
        by_site.setdefault(o.unit.site, set()).add(o.unit)
    # one agent of a shared router with other tags (its access): its site has two units in
    # one region
    moved = sorted(next(us for us in by_site.values() if len(us) > 1))[0]
    other = replace(moved, access="mobile" if moved.access != "mobile" else "fibre")

    def re(rec):
        return replace(rec, unit=other) if rec.unit == moved else rec
    ds = replace(ds, obs=tuple(map(re, ds.obs)), episodes=tuple(map(re, ds.episodes)),
                 pings=tuple(map(re, ds.pings)), speeds=tuple(map(re, ds.speeds)))
    s = Settings(min_agents=2, bootstrap=200)
    whole = aggregate(ds, s, period="day")
    for name, n in (("collector.stats.OBS_SLICE", 5), ("collector.events._SLICE", 7),
                    ("collector.sites._SLICE", 3), ("collector.sites._DENSE_CELLS", 0),
                    ("collector.columns.HOURS_SLICE", 2), ("collector.clean._SLICE", 3)):
        monkeypatch.setattr(name, n)
    sliced = aggregate(ds, s, period="day")
    assert whole["cells"] and whole["events"]
    assert json.dumps(sliced, sort_keys=True) == json.dumps(whole, sort_keys=True)


def test_sites_watching_per_region_and_hour_counted_once_each(monkeypatch):
    """collector.events counts the distinct sites watching per type, region and hour (and the
    most agents behind one of each site's units): the same as counting them one by one, for
    a site with two units in one region (an agent of a shared router with other tags), in
    slices of a few hours."""
    from collector import events
    from collector.columns import POWER, TYPES
    from collector.sites import by_site
    from kit.definitions import Quality
    from tests.fleet import Fleet

    fleet = Fleet(agents=24, days=2, start=MON - MON % DAY, round_s=300, seed=7, routers=True)
    ds = fleet.dataset()
    moved = sorted({o.unit for o in ds.obs if o.unit.site}, key=lambda u: (u.site, u.agent))[0]
    other = replace(moved, access="mobile" if moved.access != "mobile" else "fibre")
    ds = replace(ds, obs=tuple(replace(o, unit=other) if o.unit == moved and o.hour % 7200 else o
                               for o in ds.obs))
    cols, _ = clean(ds, ["PK-PB", "PK-SD", "PK-KP", "PK-BA", "PK-IS", "PK-GB", "PK-JK"], ds.end)
    line = by_site(cols, Quality())
    regions = sorted({u.region for u in line.units})
    unit_region = np.array([regions.index(u.region) for u in line.units])
    sites = sorted({u.agent for u in line.units})
    unit_site = np.array([sites.index(u.agent) for u in line.units])
    h0, last = line.obs.hour_range()
    H = last - h0 + 1
    monkeypatch.setattr(events, "_SLICE", 5)
    watching, agents = events._watching(line, unit_region, unit_site, len(regions), h0, H)
    want_w = np.zeros_like(watching)
    want_a = np.zeros_like(agents)
    for t in range(len(TYPES)):
        seen: dict = {}
        unit, hour, o_s = line.obs.columns()
        w = line.obs_pw if t == POWER else o_s
        for u, h, x in zip(unit.tolist(), hour.tolist(), w.tolist()):
            if x > 0:
                key = (unit_region[u], h // 3600 - h0, unit_site[u])
                seen[key] = max(seen.get(key, 0), len(line.unit_agents[u]))
        for (r, h, _), n in seen.items():
            want_w[t, r, h] += 1
            want_a[t, r, h] += n
    assert (watching == want_w).all() and (agents == want_a).all()
    two = {(unit_region[u], unit_site[u]) for u in range(len(line.units))}
    assert len(two) < len(line.units)      # some site has two units in one region


def test_power_watched_time_is_round_time_except_where_host_down_time_adds():
    """Power-watched time is kept only where it is not the round time (Columns.obs_pw_at and
    obs_pw_v): read whole or a slice at a time it is the same, it is never less than the round
    time nor more than the hour, and the hours that differ are hours with host-down time;
    per agent (collector.clean) and per line (collector.sites, shared lines merged)."""
    from collector.sites import by_site
    from kit.definitions import Quality
    from tests.fleet import Fleet

    fleet = Fleet(agents=24, days=3, start=MON - MON % DAY, round_s=300, seed=11, routers=True)
    ds = fleet.dataset()
    cols, _ = clean(ds, ["PK-PB", "PK-SD", "PK-KP", "PK-BA", "PK-IS", "PK-GB", "PK-JK"], ds.end)
    down = {(e.unit.agent, h) for e in ds.episodes if e.cause == "host_down"
            for h in range(int(e.start // 3600), int(-(-(e.start + e.duration_s) // 3600)))}
    assert down, "the fleet has host-down episodes"
    for c in (cols, by_site(cols, Quality())):
        pw, (_, _, o_s) = c.obs_pw, c.obs.columns()
        assert pw.size == o_s.size and c.obs_pw_at.size < o_s.size
        assert np.all(np.diff(c.obs_pw_at) > 0)
        for a, b in ((0, 7), (5, 40), (0, pw.size), (pw.size - 3, pw.size + 10), (9, 9)):
            assert np.array_equal(c.pw(a, b), pw[a:b])
            assert np.array_equal(c.pw(a, b, o_s[max(a, 0):b]), pw[a:b])
        assert np.all(pw >= o_s) and np.all(pw <= 3600.0)
        more = np.flatnonzero(pw > o_s)
        assert more.size and set(more.tolist()) <= set(c.obs_pw_at.tolist())
    # per agent: an hour gains power-watched time only where its agent was down
    unit, hour, o_s = cols.obs.columns()
    for i in np.flatnonzero(cols.obs_pw > o_s).tolist():
        assert (cols.units[unit[i]].agent, int(hour[i]) // 3600) in down
