"""The collector against tests/reference.py, a second reading of docs/collector.md.

Random small fleets (hypothesis) and a few hand-made ones with hand-computed values go to both
``collector.stats.aggregate`` and ``tests.reference.reference``; every figure, suppression
decision, regional event and data-quality count must agree. On a mismatch the fleet and the
differing figures are printed.

The 95 % intervals are not recomputed: their soundness is checked instead (low <= high, finite,
within the figure's natural range, and collapsed to the point when all lines are identical).

The random fleets include the cases the page once left open and now decides: agents of one site
starting episodes at the same instant with different causes, outages clipped to begin at or
after "now", and repairs of rows that are later merged or dropped. Failing fleets are printed
whole; set REFERENCE_SHRINK=1 to have hypothesis shrink them first (minutes, not seconds).
"""

from __future__ import annotations

import math
import os
from datetime import datetime
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, Phase, given, settings as hsettings, strategies as st

from collector.stats import Settings, aggregate
from kit.definitions import INTERNET_CAUSES, Unit
from kit.records import Dataset, Episode, ObsHour, PingDay, SpeedTest
from tests.reference import reference

TZ = ZoneInfo("Asia/Karachi")
HOUR, DAY = 3600, 86400
# Monday 2 November 2026, 00:00 PKT (19:00 UTC the day before): local days start on the hour.
MON = int(datetime(2026, 11, 2, tzinfo=TZ).timestamp())
assert MON % HOUR == 0
BOOT = 20                                    # bootstrap draws: the intervals are only checked

SCALARS = ["agents", "sites", "agent_hours", "sites_watched_min_h",
           "power_saifi", "power_saidi_min", "power_caidi_min", "power_maifi", "power_asai",
           "internet_availability", "internet_outages_per_agent", "internet_outage_min_per_agent",
           *[f"internet_outages_per_agent_{c}" for c in INTERNET_CAUSES],
           *[f"internet_outage_min_per_agent_{c}" for c in INTERNET_CAUSES],
           "work_hours_power_min_per_agent", "work_hours_internet_min_per_agent",
           "regional_events", "power_regional_share", "internet_regional_share"]
LINE_QUALITY = ["rtt_p50_ms", "rtt_p95_ms", "loss_pct", "download_p50_bps", "download_p10_bps",
                "upload_p50_bps", "speed_under_threshold_share"]
for _f in list(LINE_QUALITY):
    SCALARS += [_f, _f + "_sites", _f + "_agents"]
PROFILES = ["load_shedding_by_hour", "load_shedding_by_weekday", "load_shedding_heatmap"]
# The range each figure cannot leave (its interval neither).
RANGES = {"power_asai": (0, 1), "internet_availability": (0, 1), "loss_pct": (0, 100),
          "speed_under_threshold_share": (0, 1), "power_regional_share": (0, 1),
          "internet_regional_share": (0, 1)}


# ------------------------------------------------------------------------------------ comparing

def iso(t) -> str:
    return datetime.fromtimestamp(float(t), TZ).isoformat()


def num(v):
    return float(v) if isinstance(v, Fraction) else v


def same(a, b) -> bool:
    """Equal to 1e-6 (relative, or absolute near zero), None only with None, lists element-wise."""
    if isinstance(a, list) or isinstance(b, list):
        return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
                and all(same(x, y) for x, y in zip(a, b)))
    a, b = num(a), num(b)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def show(v):
    if isinstance(v, list):
        return "[" + ", ".join(show(x) for x in v) + "]"
    v = num(v)
    return f"{v:.6g}" if isinstance(v, float) else repr(v)


def describe(ds: Dataset, now) -> str:
    """The fleet, one record a line, times in hours:seconds from the window's start."""
    def rel(t):
        if not isinstance(t, (int, float)) or math.isnan(t) or math.isinf(t):
            return repr(t)
        d = t - ds.start
        return f"{'-' if d < 0 else ''}{int(abs(d) // HOUR)}h{abs(d) % HOUR:g}s"

    def u(unit):
        return f"{unit.agent}[{unit.site or '-'} {unit.region or '-'} {unit.isp or '-'}" + \
               (f" {unit.city}" if unit.city else "") + (f" {unit.access}" if unit.access else "") + "]"
    lines = [f"window {iso(ds.start)} .. {iso(ds.end)} ({(ds.end - ds.start) / HOUR:g} h), "
             f"now {rel(now)}"]
    byunit = {}
    for o in ds.obs:
        byunit.setdefault(u(o.unit), []).append(f"{rel(o.hour)}={o.observed_s:g}")
    for k, v in sorted(byunit.items()):
        lines.append(f"  obs {k}: " + " ".join(v))
    for e in sorted(ds.all_episodes(), key=lambda e: (str(e.unit), repr(e.start))):
        lines.append(f"  episode {u(e.unit)} {e.type}/{e.cause} at {rel(e.start)} "
                     f"for {e.duration_s:g}s")
    for p in ds.pings:
        lines.append(f"  ping {u(p.unit)} day {rel(p.day)} p50 {p.rtt_p50_ms} p95 {p.rtt_p95_ms} "
                     f"loss {p.loss_pct} rounds {p.rounds} min {p.rtt_min_ms} max {p.rtt_max_ms}")
    for s in ds.all_speeds():
        lines.append(f"  speed {u(s.unit)} at {rel(s.time)} down {s.download_bps} "
                     f"up {s.upload_bps}")
    return "\n".join(lines)


def code_cells(result, by):
    return {(tuple(c[k] for k in by), c["period_start"]): c for c in result["cells"]}


def ref_cells(ref):
    return {(key, iso(p)): c for (key, p), c in ref["cells"].items()}


def differences(ds, st_, by=("region", "isp"), period="all", now=None):
    """What the collector and the reference disagree on, one sentence a line."""
    now_ = ds.end if now is None else now
    got = aggregate(ds, st_, by, period, now=now_)
    ref = reference(ds, st_, by, period, now=now_)
    diffs = []
    gc, rc = code_cells(got, by), ref_cells(ref)
    for k in sorted(set(gc) | set(rc)):
        if k not in gc:
            diffs.append(f"cell {k}: only the reference has it (sites {rc[k]['sites']})")
            continue
        if k not in rc:
            diffs.append(f"cell {k}: only the collector has it")
            continue
        g, r = gc[k], rc[k]
        if bool(g.get("suppressed")) != r["suppressed"] or \
                g.get("suppressed_reason") != r["suppressed_reason"]:
            diffs.append(f"cell {k}: suppressed collector {g.get('suppressed')}/"
                         f"{g.get('suppressed_reason')} reference {r['suppressed']}/"
                         f"{r['suppressed_reason']} (sites {r['sites']}, watched enough "
                         f"{r['sites_watched_min_h']})")
            continue
        if r["suppressed"]:
            # "the JSON, CSV and table give only its region, ISP, period, suppressed: true and
            # suppressed_reason ..., never a count"
            leaked = [f for f in SCALARS + PROFILES if f in g]
            if leaked:
                diffs.append(f"cell {k}: suppressed but shows {leaked}")
            continue
        for f in SCALARS + PROFILES:
            if f not in g:
                diffs.append(f"cell {k}: collector has no {f}")
            elif not same(g[f], r[f]):
                diffs.append(f"cell {k}: {f}: collector {show(g[f])} reference {show(r[f])}")
        diffs += interval_faults(k, g)
    # regional events: the listed ones and how many were held back
    ge = sorted((e["region"], e["type"], e["start"], e["sites_affected"], e["sites_observed"],
                 e["scope"]) for e in got["events"])
    re_ = sorted((e["region"], e["type"], iso(e["start"]), e["sites_affected"],
                  e["sites_observed"], e["scope"]) for e in ref["events"])
    if ge != re_:
        diffs.append(f"events: collector {ge} reference {re_}")
    if got.get("events_suppressed", 0) != ref["events_suppressed"]:
        diffs.append(f"events_suppressed: collector {got.get('events_suppressed')} "
                     f"reference {ref['events_suppressed']}")
    # data quality, by reason
    dq = got["data_quality"]
    for part in ("rejected", "clipped"):
        g, r = dict(dq.get(part, {})), dict(ref[part])
        if g != r:
            keys = sorted(set(g) | set(r))
            diffs.append(f"data_quality {part}: " + ", ".join(
                f"{k} collector {g.get(k, 0)} reference {r.get(k, 0)}"
                for k in keys if g.get(k, 0) != r.get(k, 0)))
    # How a missing code is named in the list is the output's business: "(none)".
    ref_codes = {k or "(none)": v for k, v in ref["unknown_region_codes"].items()}
    if dict(dq.get("unknown_region_codes", {})) != ref_codes:
        diffs.append(f"unknown_region_codes: collector {dq.get('unknown_region_codes')} "
                     f"reference {ref_codes}")
    return diffs


def interval_faults(k, cell):
    """"<name>_ci: [low, high]": low <= high, both finite, inside the figure's range."""
    out = []
    for name, v in cell.items():
        if not name.endswith("_ci") or v is None:
            continue
        fig = name[:-3]
        lo, hi = v
        if not (math.isfinite(lo) and math.isfinite(hi)):
            out.append(f"cell {k}: {name} {v} not finite")
            continue
        if lo > hi + 1e-12:
            out.append(f"cell {k}: {name} {v}: low above high")
        rng = RANGES.get(fig, (0, math.inf))
        if lo < rng[0] - 1e-9 or hi > rng[1] + 1e-9:
            out.append(f"cell {k}: {name} {v} outside {rng}")
        if cell.get(fig) is None:
            out.append(f"cell {k}: {name} {v} for a figure with no value")
    return out


def check(ds, st_, by=("region", "isp"), period="all", now=None):
    diffs = differences(ds, st_, by, period, now)
    assert not diffs, ("the collector and docs/collector.md (tests/reference.py) disagree, "
                       f"period {period}, {st_.min_agents=} {st_.min_watch_h=}\n"
                       + describe(ds, ds.end if now is None else now)
                       + "\n" + "\n".join(diffs))


# ------------------------------------------------------------------------------------ fleets

REGIONS = ("PK-PB", "PK-SD")
ISPS = ("ptcl", "nayatel")
POWER_DUR = (10, 60, 290, 300, 301, 600, 1200, 3600, 5000, 7300)
CONN_DUR = (20, 30, 120, 300, 900, 3600, 5000)
FAULTS = ("nan_duration", "inf_obs", "nan_obs", "negative_duration", "zero_power", "zero_conn",
          "absurd_duration", "future_episode", "future_obs", "future_speed", "unknown_type",
          "unknown_cause", "missing_agent", "clock_unset_obs", "clock_unset_episode",
          "negative_obs", "absurd_rtt", "absurd_loss", "absurd_speed", "nan_speed",
          "unknown_region_agent")


class Agent:
    def __init__(self, aid, site, region, isp, city, access, upgrade, fix, isp_change):
        self.aid, self.site, self.region, self.isp = aid, site, region, isp
        self.city, self.access = city, access
        self.upgrade, self.fix, self.isp_change = upgrade, fix, isp_change
        self.watched = set()

    def unit(self, t):
        """The tags this agent wrote at time t."""
        site = "" if self.upgrade is not None and t < self.upgrade else self.site
        region = self.fix[1] if self.fix is not None and t < self.fix[0] else self.region
        isp = self.isp
        if self.isp_change is not None and t >= self.isp_change:
            isp = "nayatel" if isp == "ptcl" else "ptcl"
        return Unit(self.aid, region, isp, self.city, self.access, site)

    def final(self, t):
        """Its tags at t, with the region and site it ends up with (for bad records, which
        should fail for one reason only)."""
        u = self.unit(t)
        return Unit(u.agent, self.region, u.isp, u.city, u.access, self.site)


ALL = frozenset({"power", "host_down", "conn", "gaps", "partial", "twice", "faults", "tags",
                 "sites", "events", "pings", "speeds", "now"})


@st.composite
def fleets(draw, features=ALL):
    """A small random fleet: (Dataset, now). ``features`` turns kinds of rows and faults on."""
    on = features.__contains__
    start = MON + draw(st.integers(0, 6)) * DAY
    end = start + draw(st.integers(1, 2)) * DAY
    back = draw(st.sampled_from([0, 0, 0, 2, 5])) if on("now") else 0
    # "now" on the 10 s grid the episodes are on (an outage may be clipped to begin exactly at
    # it) or off it
    now = end - back * HOUR - (draw(st.sampled_from([0, 7])) if back else 0)
    n_hours = (now - start) // HOUR
    hour = lambda i: start + i * HOUR                      # noqa: E731
    grid = lambda: start + draw(st.integers(0, n_hours * 360 - 1)) * 10   # noqa: E731
    agents = []
    for s in range(draw(st.integers(1, 6))):
        region, isp = draw(st.sampled_from(REGIONS)), draw(st.sampled_from(ISPS))
        city, access = draw(st.sampled_from([("", ""), ("lahore", "fibre")]))
        old = draw(st.integers(0, 5)) == 0                 # an older agent: no site tag, own line
        for k in range(1 if old or not on("sites") else draw(st.integers(1, 3))):
            rare = lambda: on("tags") and draw(st.integers(0, 7)) == 0    # noqa: E731
            agents.append(Agent(
                f"a{s}{k}", "" if old else f"site{s}", region,
                "" if rare() else isp,                     # one typed the ISP, one did not
                city, access,
                hour(draw(st.integers(1, n_hours - 1))) if not old and rare() else None,
                (hour(draw(st.integers(1, n_hours - 1))), draw(st.sampled_from(["", "PK-XX"])))
                if rare() else None,
                hour(draw(st.integers(1, n_hours - 1))) if rare() else None))
            # Agents of one site start episodes at the same instant now and then (k = 0): the
            # merged episode takes the cause of the longer, then by the cause order.
            agents[-1].k = draw(st.sampled_from([0, k]))
    obs, eps, pings, speeds = [], [], [], []

    def episode(a, type_, cause, t, d):
        if t >= end:
            return                                     # a row of the next window
        if now < end and t + d > now and cause == "host_down":
            d = now - t - 3                            # a host is back by the collection
            if d <= 0:
                return
        # with the tags written at t: a row repaired (retagged, site_retagged) may then be
        # merged or dropped, and counts as repaired all the same
        eps.append(Episode(a.unit(t), type_, cause, float(t), float(d)))

    for a in agents:
        off = set()
        for _ in range(draw(st.integers(0, 2)) if on("gaps") else 0):   # the machine was off
            g = draw(st.integers(0, n_hours - 1))
            off |= set(range(g, g + draw(st.integers(1, 12))))
        for i in range(n_hours):
            if i in off:
                continue
            a.watched.add(i)
            t = hour(i)
            obs.append(ObsHour(a.unit(t), t, float(draw(st.sampled_from(
                [3600, 3600, 3600, 3600, 1800, 600, 3590])) if on("partial") else 3600)))
            # a row written twice (each repaired, when it needs it, and counted)
            if on("twice") and draw(st.integers(0, 30)) == 0:
                obs.append(ObsHour(a.unit(t), t, float(draw(st.sampled_from([600, 3600])))))

        for _ in range(draw(st.integers(0, 3)) if on("power") else 0):
            cause = draw(st.sampled_from(["ac_lost", "ac_lost", "host_down"]
                                         if on("host_down") else ["ac_lost"]))
            t, d = grid() + a.k, draw(st.sampled_from(POWER_DUR))
            episode(a, "power", cause, t, d)
            follow = draw(st.sampled_from(["none", "none", "host_down_after", "overlap",
                                           "touch", "again"]))
            if follow == "host_down_after" and on("host_down"):   # a battery, then the host
                episode(a, "power", "host_down", t + d + draw(st.sampled_from([0, 30, 60, 61, 120])),
                        draw(st.sampled_from(POWER_DUR)))
            elif follow == "overlap":                      # the battery and the UPS saw it
                episode(a, "power", "ac_lost", t + draw(st.sampled_from([0, 10, 100])),
                        draw(st.sampled_from(POWER_DUR)))
            elif follow == "touch":
                episode(a, "power", draw(st.sampled_from(["ac_lost", "host_down"]
                                                      if on("host_down") else ["ac_lost"])), t + d,
                        draw(st.sampled_from(POWER_DUR)))
            elif follow == "again":                        # two cuts, close together
                episode(a, "power", cause, t + d + draw(st.sampled_from([10, 30, 70])),
                        draw(st.sampled_from(POWER_DUR)))
        for _ in range(draw(st.integers(0, 3)) if on("conn") else 0):
            cause = draw(st.sampled_from(INTERNET_CAUSES))
            t, d = grid() + a.k, draw(st.sampled_from(CONN_DUR))
            episode(a, "connectivity", cause, t, d)
            follow = draw(st.sampled_from(["none", "none", "same_start", "inside", "overlap"]))
            if follow == "same_start":
                episode(a, "connectivity", draw(st.sampled_from(INTERNET_CAUSES)), t,
                        draw(st.sampled_from([d, d, 20, 5000])))
            elif follow == "inside":
                episode(a, "connectivity", draw(st.sampled_from(INTERNET_CAUSES)), t + 10,
                        max(1, d - 20))
            elif follow == "overlap":
                episode(a, "connectivity", draw(st.sampled_from(INTERNET_CAUSES)), t + d // 2, d)
        # latency: one row per UTC day the agent watched at 00:00 UTC
        for i in sorted(a.watched):
            t = hour(i)
            if on("pings") and t % DAY == 0 and draw(st.booleans()):
                p50 = float(draw(st.sampled_from([10, 20, 30, 45, 80])))
                p95 = p50 + draw(st.sampled_from([0, 20, 100]))
                pings.append(PingDay(a.unit(t), t, p50, p95,
                                     float(draw(st.sampled_from([0, 0.5, 2, 10]))),
                                     draw(st.sampled_from([100, 8000])), p50 / 2, p95 * 2))
        for _ in range(draw(st.integers(0, 3)) if on("speeds") else 0):
            if not a.watched:
                break
            t = hour(draw(st.sampled_from(sorted(a.watched)))) + draw(st.integers(0, 3599))
            speeds.append(SpeedTest(a.unit(t), float(t),
                                    float(draw(st.sampled_from([2e6, 9.99e6, 1e7, 5e7, 1e8]))),
                                    float(draw(st.sampled_from([1e6, 5e6, 2e7])))))

    # cuts and outages that many lines see at once: regional events (mostly one cause a site)
    causes = {}
    for _ in range(draw(st.integers(0, 2)) if on("events") else 0):
        type_ = draw(st.sampled_from([t for t in ("power", "connectivity")
                                      if on({"connectivity": "conn"}.get(t, t))] or ["power"]))
        t0 = grid()
        for a in agents:
            if draw(st.integers(0, 3)) == 0:
                continue
            t = t0 + draw(st.sampled_from([0, 10, 100, 290, 310])) + a.k
            if type_ == "power":
                episode(a, "power", "ac_lost", t, draw(st.sampled_from(POWER_DUR)))
            else:
                cause = causes.setdefault(a.site or a.aid, draw(
                    st.sampled_from(["isp", "isp", "power", "lan"])))
                if draw(st.integers(0, 4)) == 0:
                    cause = draw(st.sampled_from(INTERNET_CAUSES))
                episode(a, "connectivity", cause, t, draw(st.sampled_from(CONN_DUR)))

    # bad records, one fault each, with the tags written then or the repaired ones (the checks
    # come before the repairs: a bad record is rejected for its fault, never repaired)
    a = agents[0]
    tags = lambda t: draw(st.sampled_from([a.final(t), a.unit(t)]))     # noqa: E731
    for fault in draw(st.lists(st.sampled_from(FAULTS), max_size=6)) if on("faults") else []:
        t = grid()
        u = tags(t)
        if fault == "nan_duration":
            eps.append(Episode(u, "power", "ac_lost", float(t), math.nan))
        elif fault == "inf_obs":
            obs.append(ObsHour(u, hour(0), math.inf))
        elif fault == "nan_obs":
            obs.append(ObsHour(u, hour(0), math.nan))
        elif fault == "negative_duration":
            eps.append(Episode(u, "connectivity", "isp", float(t), -30.0))
        elif fault == "zero_power":
            eps.append(Episode(u, "power", draw(st.sampled_from(["ac_lost", "host_down"])),
                               float(t), 0.0))
        elif fault == "zero_conn":
            eps.append(Episode(u, "connectivity", draw(st.sampled_from(INTERNET_CAUSES)),
                               float(t), 0.0))
        elif fault == "absurd_duration":
            eps.append(Episode(u, "power", "ac_lost", float(t), 32.0 * DAY))
        elif fault == "future_episode" and now + 600 < end:
            eps.append(Episode(tags(now + 600), "power", "ac_lost", float(now + 600), 100.0))
        elif fault == "future_obs" and (now // HOUR + 2) * HOUR < end:
            h = (now // HOUR + 2) * HOUR
            obs.append(ObsHour(tags(h), h, 3600.0))
        elif fault == "future_speed" and now + 900 < end:
            speeds.append(SpeedTest(tags(now + 900), float(now + 900), 5e7, 1e7))
        elif fault == "unknown_type":
            eps.append(Episode(u, "degraded", "loss", float(t), 100.0))
        elif fault == "unknown_cause":
            eps.append(Episode(u, "connectivity", "cosmic_rays", float(t), 100.0))
        elif fault == "missing_agent":
            eps.append(Episode(Unit("", a.region, a.isp), "power", "ac_lost", float(t), 100.0))
        elif fault == "clock_unset_obs":
            obs.append(ObsHour(tags(t), 3600 * 20, 3600.0))
        elif fault == "clock_unset_episode":
            eps.append(Episode(tags(t), "power", "host_down", 86400.0 * 3 + 77, 120.0))
        elif fault == "negative_obs" and a.watched:
            i = draw(st.sampled_from(sorted(a.watched)))
            obs.append(ObsHour(tags(hour(i)), hour(i), -100.0))
        elif fault == "absurd_rtt":
            pings.append(PingDay(tags(start), start + (-start % DAY), 30.0, 90.0, 1.0, 100,
                                 -1.0, 61_000.0))
        elif fault == "absurd_loss":
            pings.append(PingDay(tags(start), start + (-start % DAY), 30.0, 90.0, 120.0, 100,
                                 10.0, 100.0))
        elif fault == "absurd_speed":
            speeds.append(SpeedTest(u, float(t), draw(st.sampled_from([0.0, 2e10])), 1e6))
        elif fault == "nan_speed":
            speeds.append(SpeedTest(u, float(t), math.nan, 1e6))
        elif fault == "unknown_region_agent":
            x = Unit("x9", draw(st.sampled_from(["PK-XX", "XX"])), "ptcl")
            obs += [ObsHour(x, hour(i), 3600.0) for i in range(3)]
            eps.append(Episode(x, "power", "ac_lost", float(hour(1)), 400.0))
    return Fleet(Dataset(start, end, tuple(obs), tuple(eps), tuple(pings), tuple(speeds)), now)


class Fleet(tuple):
    """(Dataset, now), shown as the readable listing rather than the records' own repr."""

    def __new__(cls, ds, now):
        return super().__new__(cls, (ds, now))

    def __repr__(self):
        return "\n" + describe(*self)


# Shrinking a failing fleet takes minutes; it is left out unless REFERENCE_SHRINK is set, so the
# file runs in well under a minute either way (a failure prints the whole fleet instead).
PHASES = ([Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
          if os.environ.get("REFERENCE_SHRINK") else
          [Phase.explicit, Phase.reuse, Phase.generate, Phase.target])
HSET = hsettings(max_examples=60, deadline=None, derandomize=True, phases=PHASES,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@HSET
@given(fleets())
def test_figures_agree_on_random_fleets_all(fleet):
    ds, now = fleet
    check(ds, Settings(min_agents=1, min_watch_h=1.0, bootstrap=BOOT), period="all", now=now)


@HSET
@given(fleets())
def test_figures_agree_on_random_fleets_by_day(fleet):
    ds, now = fleet
    check(ds, Settings(min_agents=1, min_watch_h=1.0, bootstrap=BOOT), period="day", now=now)


@hsettings(max_examples=40, deadline=None, derandomize=True, phases=PHASES,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(fleets(), st.sampled_from([2, 3, 5]), st.sampled_from([6.0, 12.0, 24.0]),
       st.sampled_from(["all", "day"]))
def test_suppression_agrees_on_random_fleets(fleet, min_agents, min_watch_h, period):
    ds, now = fleet
    check(ds, Settings(min_agents=min_agents, min_watch_h=min_watch_h, bootstrap=BOOT),
          period=period, now=now)


# ------------------------------------------------------------------------------------ by hand

S1 = Settings(min_agents=1, min_watch_h=1.0, bootstrap=BOOT)
T0 = MON + 2 * DAY + 5 * HOUR          # Wednesday 05:00 PKT = 00:00 UTC


def unit(agent="a", region="PK-PB", isp="ptcl", site=""):
    return Unit(agent, region, isp, "", "", site)


def watch(u, hours, per_hour=3600.0, start=T0):
    return tuple(ObsHour(u, start + h * HOUR, per_hour) for h in hours)


def one_cell(ds, st_=S1, period="all", now=None):
    """The only cell of the collector and of the reference."""
    got = aggregate(ds, st_, ("region", "isp"), period, now=ds.end if now is None else now)
    ref = reference(ds, st_, ("region", "isp"), period, now=now)
    (g,), (r,) = got["cells"], ref["cells"].values()
    return g, r, got, ref


def expect(ds, want, quality=None, st_=S1, now=None):
    """The hand-computed values: the reference must give them, and so must the collector."""
    g, r, got, ref = one_cell(ds, st_, now=now)
    for k, v in want.items():
        assert same(r[k], v), f"reference {k}: {show(r[k])}, by hand {v}"
    for k, v in (quality or {}).items():
        n = ref["rejected"].get(k, 0) + ref["clipped"].get(k, 0)
        assert n == v, f"reference quality {k}: {n}, by hand {v}"
    bad = [f"{k}: collector {show(g.get(k))}, by hand {v}" for k, v in want.items()
           if not same(g.get(k), v)]
    dq = got["data_quality"]
    bad += [f"quality {k}: collector {dq['rejected'].get(k, 0) + dq['clipped'].get(k, 0)}, "
            f"by hand {v}" for k, v in (quality or {}).items()
            if dq["rejected"].get(k, 0) + dq["clipped"].get(k, 0) != v]
    assert not bad, describe(ds, ds.end if now is None else now) + "\n" + "\n".join(bad)
    check(ds, st_, now=now)


def test_host_down_merged_into_a_cut_stays_watched_time():
    # One line, 10 hours. The laptop's battery (ac_lost) rides a cut from 02:50:00 to 02:59:00
    # UTC, then the host is down from 02:59:30 (30 s later: merged) to 04:00:00; no rounds in
    # hour 3. One interruption 10,200..14,400 = 4,200 s, sustained. Power-watched time: hours
    # 0-2 and 4-9 by rounds, hour 3 by the host-down episode: 10 h, N = 1. Interruption time:
    # 600 s in hour 2, 3,600 s in hour 3 (watched through host-down): 4,200 s = 70 min.
    u = unit()
    ds = Dataset(T0, T0 + 10 * HOUR, watch(u, [0, 1, 2, 4, 5, 6, 7, 8, 9]),
                 (Episode(u, "power", "ac_lost", T0 + 10200.0, 540.0),
                  Episode(u, "power", "host_down", T0 + 10770.0, 3630.0)))
    expect(ds, {"power_saifi": 1.0, "power_saidi_min": 70.0, "power_caidi_min": 70.0,
                "power_maifi": 0.0, "power_asai": 1 - 4200 / 36000, "agent_hours": 10.0,
                "internet_availability": 1.0},
           {"power_merged": 1, "unwatched_clipped": 0})


def test_class_follows_the_whole_duration():
    # A 1,200 s cut starting 180 s before the window's end: one sustained interruption with
    # 180 s (3 min) of interruption time; N = 1 (watched all 10 hours).
    u = unit()
    ds = Dataset(T0, T0 + 10 * HOUR, watch(u, range(10)),
                 (Episode(u, "power", "ac_lost", T0 + 10 * HOUR - 180.0, 1200.0),))
    expect(ds, {"power_saifi": 1.0, "power_maifi": 0.0, "power_saidi_min": 3.0,
                "power_caidi_min": 3.0, "power_asai": 1 - 180 / 36000},
           {"window_clipped": 1})


def test_class_follows_the_whole_duration_when_the_window_reaches_past_now():
    # The window runs 10 hours but the collection runs after 8: a 1,200 s cut starting 180 s
    # before "now" counts 180 s and is sustained. Watched 8 hours (rounds end at now); the
    # period is the window's 10 hours, so N = 0.8: SAIFI 1.25, SAIDI 3.75 min.
    u = unit()
    now = T0 + 8 * HOUR
    ds = Dataset(T0, T0 + 10 * HOUR, watch(u, range(8)),
                 (Episode(u, "power", "ac_lost", now - 180.0, 1200.0),))
    expect(ds, {"power_saifi": 1.25, "power_maifi": 0.0, "power_saidi_min": 3.75,
                "power_caidi_min": 3.0}, {"window_clipped": 1}, now=now)


def test_outage_time_only_where_watched_scaled_in_proportion():
    # Window 4 h, two lines of one cell.
    # Line a: rounds 3,600 s in hour 0, 1,800 s in hour 1, none in hour 2, 3,600 s in hour 3.
    #   isp outage 00:30..02:30: 1,800 s in hour 0, 3,600 -> 1,800 in hour 1, 1,800 -> 0 in
    #   hour 2: 3,600 s, unwatched_clipped. lan outage 02:31:40..02:33:20 lies in hour 2 only:
    #   unwatched.
    # Line b: rounds 3,600 / 1,800 / 3,600 / 3,600 s. lan 01:00..01:20 (1,200 s) and isp
    #   01:30..02:00 (1,800 s) share hour 1's 1,800 watched seconds: 3,000 s scaled by 0.6,
    #   lan 720 s, isp 1,080 s, both unwatched_clipped.
    # Round seconds 9,000 + 12,600 = 21,600, N = 21,600 / 14,400 = 1.5. Outages 3: 2 per
    # customer; minutes 60 + 12 + 18 = 90: 60 per customer; availability 1 - 5,400 / 21,600.
    # isp: 2 outages, 78 min; lan: 1 outage, 12 min.
    a, b = unit("a", site="la"), unit("b", site="lb")
    ds = Dataset(T0, T0 + 4 * HOUR,
                 watch(a, [0, 3]) + watch(a, [1], 1800.0) + watch(b, [0, 2, 3])
                 + watch(b, [1], 1800.0),
                 (Episode(a, "connectivity", "isp", T0 + 1800.0, 7200.0),
                  Episode(a, "connectivity", "lan", T0 + 9100.0, 100.0),
                  Episode(b, "connectivity", "lan", T0 + 3600.0, 1200.0),
                  Episode(b, "connectivity", "isp", T0 + 5400.0, 1800.0)))
    expect(ds, {"internet_outages_per_agent": 2.0, "internet_outage_min_per_agent": 60.0,
                "internet_availability": 0.75,
                "internet_outages_per_agent_isp": 2 / 1.5,
                "internet_outage_min_per_agent_isp": 78 / 1.5,
                "internet_outages_per_agent_lan": 1 / 1.5,
                "internet_outage_min_per_agent_lan": 12 / 1.5},
           {"unwatched_clipped": 3, "unwatched": 1})


def test_zero_length_episodes_are_rejected():
    # An outage spans at least one round and a cut at least one reading: duration 0 is not an
    # episode. Nothing is counted; two zero_duration.
    u = unit()
    ds = Dataset(T0, T0 + 4 * HOUR, watch(u, range(4)),
                 (Episode(u, "power", "ac_lost", T0 + 100.0, 0.0),
                  Episode(u, "connectivity", "isp", T0 + 200.0, 0.0)))
    expect(ds, {"power_maifi": 0.0, "power_saifi": 0.0, "internet_outages_per_agent": 0.0,
                "internet_availability": 1.0}, {"zero_duration": 2})


def test_equal_starts_keep_the_longer_then_the_cause_order():
    # Agent a: isp and lan at the same instant, both 100 s: lan comes first in the order
    # power, lan, isp, dns, unknown, so lan is kept. Agent b: dns 50 s and unknown 200 s at the
    # same instant: the longer (unknown) is kept. Two lines watching 4 h: N = 2.
    a, b = unit("a", site="la"), unit("b", site="lb")
    ds = Dataset(T0, T0 + 4 * HOUR, watch(a, range(4)) + watch(b, range(4)),
                 (Episode(a, "connectivity", "isp", T0 + 1000.0, 100.0),
                  Episode(a, "connectivity", "lan", T0 + 1000.0, 100.0),
                  Episode(b, "connectivity", "dns", T0 + 1000.0, 50.0),
                  Episode(b, "connectivity", "unknown", T0 + 1000.0, 200.0)))
    expect(ds, {"internet_outages_per_agent_lan": 0.5, "internet_outages_per_agent_isp": 0.0,
                "internet_outages_per_agent_unknown": 0.5, "internet_outages_per_agent_dns": 0.0,
                "internet_outage_min_per_agent": 150 / 60},
           {"overlap_dropped": 2})


def test_rows_from_an_unset_clock_are_counted():
    # A round hour and a host-down episode dated 1970: clock_unset, and no figure moves.
    u = unit()
    ds = Dataset(T0, T0 + 4 * HOUR, watch(u, range(4)) + (ObsHour(u, 7200, 3600.0),),
                 (Episode(u, "power", "host_down", 86400.0 * 3, 600.0),))
    expect(ds, {"agent_hours": 4.0, "power_saifi": 0.0, "power_maifi": 0.0},
           {"clock_unset": 2})


def test_a_bad_interval_takes_no_time_from_the_good_rounds():
    # Hour 0 has its 3,600 s and a row of -100 s, hour 1 its 3,600 s and a row of 0 s ("not a
    # number above 0"): both bad rows are left out (absurd_observed), the hours keep 3,600 s:
    # 4 hours watched.
    u = unit()
    ds = Dataset(T0, T0 + 4 * HOUR,
                 watch(u, range(4)) + (ObsHour(u, T0, -100.0), ObsHour(u, T0 + HOUR, 0.0)), ())
    expect(ds, {"agent_hours": 4.0, "internet_availability": 1.0}, {"absurd_observed": 2})


def test_a_full_hour_without_power_is_a_share_of_one():
    # Hour 1 (UTC; 06:00 PKT on a Wednesday) is watched 100 s by rounds, and three cuts of
    # 1,000, 1,200 and 800 s (apart by 100 s: separate cuts) lie in it: 3,000 s in 100 watched,
    # scaled to 100 s together. Its share is exactly 1 (not null, not above 1: no impossible
    # share). Hours 0, 2, 3 are watched in full without a cut.
    u = unit()
    h = T0 + HOUR
    ds = Dataset(T0, T0 + 4 * HOUR, watch(u, [0, 2, 3]) + watch(u, [1], 100.0),
                 (Episode(u, "power", "ac_lost", h + 0.0, 1000.0),
                  Episode(u, "power", "ac_lost", h + 1100.0, 1200.0),
                  Episode(u, "power", "ac_lost", h + 2400.0, 800.0)))
    g, r, got, _ref = one_cell(ds)
    assert r["load_shedding_heatmap"][2][6] == 1
    assert g["load_shedding_heatmap"][2][6] == pytest.approx(1.0), g["load_shedding_heatmap"][2]
    assert g["load_shedding_by_hour"][6] == pytest.approx(1.0)
    assert "impossible_share" not in got["data_quality"]["rejected"]
    check(ds, S1)


def test_power_merged_as_written():
    # One agent watching 6 h in full (N = 1).
    #   ac_lost 1,000..1,100 and ac_lost 1,100..1,150 touch: merged, 150 s, momentary;
    #   ac_lost 5,000..5,100, host_down 5,160..5,400 (60 s after): merged, 400 s, sustained;
    #   ac_lost 9,000..9,100, host_down 9,161..9,300 (61 s after): two cuts, momentary;
    #   host_down 13,000..13,100, host_down 13,130..13,200: two cuts (host_down after host_down);
    #   ac_lost 17,000..17,100, ac_lost 17,130..17,200: two cuts (not touching).
    # Interruptions: 1 sustained (400 s), 7 momentary; power_merged 2.
    u = unit()
    E = lambda c, a, b: Episode(u, "power", c, T0 + float(a), float(b - a))   # noqa: E731
    ds = Dataset(T0, T0 + 6 * HOUR, watch(u, range(6)),
                 (E("ac_lost", 1000, 1100), E("ac_lost", 1100, 1150),
                  E("ac_lost", 5000, 5100), E("host_down", 5160, 5400),
                  E("ac_lost", 9000, 9100), E("host_down", 9161, 9300),
                  E("host_down", 13000, 13100), E("host_down", 13130, 13200),
                  E("ac_lost", 17000, 17100), E("ac_lost", 17130, 17200)))
    expect(ds, {"power_saifi": 1.0, "power_maifi": 7.0, "power_saidi_min": 400 / 60,
                "power_caidi_min": 400 / 60, "power_asai": 1 - 400 / 21600},
           {"power_merged": 2})


def test_host_down_time_is_watched_once_per_hour():
    # Rounds fill hour 0; a host_down cut covers its last 200 s as well (rows overlap): the
    # hour's power-watched time is at most 3,600 s. 2 hours watched: N = 1, agent_hours 2.
    u = unit()
    ds = Dataset(T0, T0 + 2 * HOUR, watch(u, range(2)),
                 (Episode(u, "power", "host_down", T0 + 3400.0, 200.0),))
    expect(ds, {"agent_hours": 2.0, "power_maifi": 1.0, "power_saidi_min": 0.0,
                "power_asai": 1.0})


def test_intervals_of_identical_lines_collapse_to_the_point():
    # Five lines alike in every row: any resample gives the same figure.
    us = [unit(f"a{i}", site=f"s{i}") for i in range(5)]
    obs, eps, pings, speeds = (), [], [], []
    for u in us:
        obs += watch(u, range(30))
        eps += [Episode(u, "power", "ac_lost", T0 + 4000.0 + i, 900.0) for i in (0,)]
        eps += [Episode(u, "power", "ac_lost", T0 + 30000.0, 100.0),
                Episode(u, "connectivity", "isp", T0 + 50000.0, 400.0)]
        pings.append(PingDay(u, T0, 20.0, 50.0, 1.0, 1000, 5.0, 90.0))
        speeds += [SpeedTest(u, T0 + 7000.0, 5e6, 1e6), SpeedTest(u, T0 + 9000.0, 2e7, 4e6)]
    ds = Dataset(T0, T0 + 30 * HOUR, obs, tuple(eps), tuple(pings), tuple(speeds))
    st5 = Settings(min_watch_h=24.0, bootstrap=200)
    g, _r, _got, _ref = one_cell(ds, st5)
    assert not g["suppressed"]
    n = 0
    for name, ci in g.items():
        if name.endswith("_ci") and ci is not None:
            point = g[name[:-3]]
            assert ci[0] == pytest.approx(point, rel=1e-9, abs=1e-12), (name, ci, point)
            assert ci[1] == pytest.approx(point, rel=1e-9, abs=1e-12), (name, ci, point)
            n += 1
    assert n >= 20
    assert g["power_caidi_min_ci"] is not None
    check(ds, st5)


def test_suppression_reasons():
    # Four lines: fewer than min_agents (5). Five lines of which four watched 24 h: min_watch_h.
    us = [unit(f"a{i}", site=f"s{i}") for i in range(5)]
    ds4 = Dataset(T0, T0 + 48 * HOUR, sum((watch(u, range(48)) for u in us[:4]), ()), ())
    ds5 = Dataset(T0, T0 + 48 * HOUR,
                  sum((watch(u, range(48)) for u in us[:4]), ()) + watch(us[4], range(23)), ())
    st5 = Settings(bootstrap=BOOT)
    for ds, reason in ((ds4, "min_agents"), (ds5, "min_watch_h")):
        got = aggregate(ds, st5, ("region", "isp"), "all", now=ds.end)
        (c,) = got["cells"]
        assert c["suppressed"] and c["suppressed_reason"] == reason
        check(ds, st5)


def test_rows_of_another_window_are_not_counted():
    # Window 4 h, watched in full (N = 1). A cut dated 100 s before the window and one dated at
    # its end belong to other windows: not counted, not clipped. An outage from 10 s before the
    # end for 30 s is clipped to 10 s (window_clipped); one dated at the end, inside it, belongs
    # to the next window (no overlap_dropped here).
    u = unit()
    end = T0 + 4 * HOUR
    ds = Dataset(T0, end, watch(u, range(4)),
                 (Episode(u, "power", "ac_lost", T0 - 100.0, 600.0),
                  Episode(u, "power", "ac_lost", float(end), 100.0),
                  Episode(u, "connectivity", "isp", end - 10.0, 30.0),
                  Episode(u, "connectivity", "lan", float(end), 5.0)))
    expect(ds, {"power_maifi": 0.0, "power_saifi": 0.0, "internet_outages_per_agent": 1.0,
                "internet_outage_min_per_agent": 10 / 60},
           {"window_clipped": 1, "overlap_dropped": 0})


def test_a_row_without_an_agent_is_rejected():
    # "missing_agent: a row without an agent tag": an hour and a cut with no agent are left out.
    # One line watching 2 h, no cut.
    u, nobody = unit(), unit("")
    ds = Dataset(T0, T0 + 2 * HOUR, watch(u, range(2)) + watch(nobody, [0]),
                 (Episode(nobody, "power", "ac_lost", T0 + 100.0, 600.0),))
    expect(ds, {"agents": 1, "sites": 1, "agent_hours": 2.0, "power_saifi": 0.0},
           {"missing_agent": 2})


def test_one_agents_clipped_outages_stay_two_behind_a_shared_router():
    # Agents a and b share a router (one line, watching 2 h: N = 1). a's isp outage 100..200 and
    # lan outage 150..250: the second is clipped to begin at 200 (overlap_clipped). A site merges
    # "an episode of a line seen by several of its agents"; these two were seen by one agent and
    # do not overlap once clipped: two outages, isp 100 s and lan 50 s, no site_merged.
    a, b = unit("a", site="s"), unit("b", site="s")
    ds = Dataset(T0, T0 + 2 * HOUR, watch(a, range(2)) + watch(b, range(2)),
                 (Episode(a, "connectivity", "isp", T0 + 100.0, 100.0),
                  Episode(a, "connectivity", "lan", T0 + 150.0, 100.0)))
    expect(ds, {"sites": 1, "agents": 2, "internet_outages_per_agent": 2.0,
                "internet_outages_per_agent_isp": 1.0, "internet_outages_per_agent_lan": 1.0,
                "internet_outage_min_per_agent_lan": 50 / 60},
           {"overlap_clipped": 1, "site_merged": 0})


def test_an_agent_whose_isp_tag_changes_is_still_one_agent():
    # Agent a writes ISP ptcl in hour 0 and nayatel in hour 1. Its isp outage 00:50..01:10 is
    # tagged ptcl; a second isp outage 01:01:40..01:06:40 tagged nayatel lies wholly inside it,
    # "an earlier one of the same agent": overlap_dropped. The ptcl line watches hour 0 only:
    # 600 s count, the 600 s of hour 1 are unwatched (unwatched_clipped). ptcl cell: N = 0.5,
    # 2 outages and 20 min per customer; nayatel cell: none.
    x, y = unit(), unit(isp="nayatel")
    ds = Dataset(T0, T0 + 2 * HOUR, watch(x, [0]) + watch(y, [1]),
                 (Episode(x, "connectivity", "isp", T0 + 3000.0, 1200.0),
                  Episode(y, "connectivity", "isp", T0 + 3700.0, 300.0)))
    got = aggregate(ds, S1, ("region", "isp"), "all", now=ds.end)
    ref = reference(ds, S1)
    cells = {c["isp"]: c for c in got["cells"]}
    refs = {k[0][1]: c for k, c in ref["cells"].items()}
    assert same(refs["ptcl"]["internet_outages_per_agent"], 2.0)
    assert same(refs["ptcl"]["internet_outage_min_per_agent"], 20.0)
    assert same(refs["nayatel"]["internet_outages_per_agent"], 0.0)
    assert ref["rejected"]["overlap_dropped"] == 1
    assert same(cells["ptcl"]["internet_outage_min_per_agent"], 20.0), cells["ptcl"]
    assert same(cells["nayatel"]["internet_outages_per_agent"], 0.0), cells["nayatel"]
    assert got["data_quality"]["rejected"].get("overlap_dropped") == 1
    check(ds, S1)


def test_a_site_watches_as_much_as_its_most_watching_agent():
    # Agents a and b share a router. a has rounds in hours 0 and 1; b has rounds in hour 1 and
    # was down 600 s in hour 0 (host_down, sustained). The line's power-watched time in hour 0
    # is the most either agent watched: max(3,600, 600) = 3,600 s, not their sum. 2 h watched:
    # N = 1, agent_hours 2; SAIFI 1, SAIDI 10 min.
    a, b = unit("a", site="s"), unit("b", site="s")
    ds = Dataset(T0, T0 + 2 * HOUR, watch(a, [0, 1]) + watch(b, [1]),
                 (Episode(b, "power", "host_down", T0 + 1000.0, 600.0),))
    expect(ds, {"agent_hours": 2.0, "power_saifi": 1.0, "power_saidi_min": 10.0,
                "power_asai": 1 - 600 / 7200})


def test_floods_keep_the_first_of_the_day():
    # 50 speed tests by one agent in a UTC day: the first 48 are kept (all 5 Mbit/s), the 2 fast
    # ones after them are flood_speed_tests. 1,442 outages of one second in a day: 1,440 kept
    # (N = 1 over 2 h), 2 flood_episodes.
    u = unit()
    tests_ = tuple(SpeedTest(u, T0 + 60.0 * i, 5e6 if i < 48 else 5e7, 1e6) for i in range(50))
    outs = tuple(Episode(u, "connectivity", "isp", T0 + 2.0 * i, 1.0) for i in range(1442))
    ds = Dataset(T0, T0 + 2 * HOUR, watch(u, range(2)), outs, (), tests_)
    expect(ds, {"download_p50_bps": 5e6, "speed_under_threshold_share": 1.0,
                "internet_outages_per_agent": 1440.0},
           {"flood_speed_tests": 2, "flood_episodes": 2})


def test_connectivity_events_count_the_lines_watching_by_their_rounds():
    # Seven lines, 4 h. Lines 0-3 run rounds all the time. Lines 4-6 are down for power from
    # 00:50 to 02:00 (host_down, 4,200 s: sustained), so in hour 1 they watch power (host-down
    # time) but run no rounds. Lines 0-2 lose their ISP at 01:10 (10 s apart, 300 s each): 3 of
    # the 4 lines running rounds in hour 1 (0.75): a connectivity event; counted against the 7
    # lines watching power it would be 3 of 7 (0.43), none. The cuts: 3 of 7 lines in hour 0,
    # no power event. Power-watched time 4 h a line: N = 7, SAIFI 3/7. Round time: lines 4-6
    # 3,000 + 7,200 s: N = (4 x 14,400 + 3 x 10,200) / 14,400 = 6.125.
    us = [unit(f"a{i}", site=f"s{i}") for i in range(7)]
    obs = sum((watch(u, range(4)) for u in us[:4]), ())
    obs += sum((watch(u, [0], 3000.0) + watch(u, [2, 3]) for u in us[4:]), ())
    eps = tuple(Episode(u, "power", "host_down", T0 + 3000.0, 4200.0) for u in us[4:])
    eps += tuple(Episode(u, "connectivity", "isp", T0 + 4200.0 + 10 * i, 300.0)
                 for i, u in enumerate(us[:3]))
    ds = Dataset(T0, T0 + 4 * HOUR, obs, eps)
    expect(ds, {"power_saifi": 3 / 7, "internet_outages_per_agent": 3 / 6.125,
                "regional_events": 1, "internet_regional_share": 1.0,
                "power_regional_share": 0.0})
    got = aggregate(ds, S1, ("region", "isp"), "all", now=ds.end)
    (e,) = got["events"]
    assert (e["type"], e["sites_affected"], e["sites_observed"], e["scope"]) == \
        ("connectivity", 3, 4, "isp")


def test_an_outage_clipped_to_begin_after_now_is_not_an_outage():
    # Window 4 h, the collection runs at 03:00; rounds in hours 0-2 (N = 0.75). An isp outage
    # from 02:58:20 for 600 s counts 100 s (window_clipped). A lan outage from 02:59:10 for
    # 1,000 s began before it ended: clipped to begin at 03:08:20 (overlap_clipped), after
    # now: window_clipped only, no outage, not unwatched. A cut dated 100 s after now (within
    # the 5 minutes allowed): window_clipped only, no interruption.
    u = unit()
    now = T0 + 3 * HOUR
    ds = Dataset(T0, T0 + 4 * HOUR, watch(u, range(3)),
                 (Episode(u, "connectivity", "isp", now - 100.0, 600.0),
                  Episode(u, "connectivity", "lan", now - 50.0, 1000.0),
                  Episode(u, "power", "ac_lost", now + 100.0, 600.0)))
    expect(ds, {"internet_outages_per_agent": 1 / 0.75,
                "internet_outages_per_agent_lan": 0.0,
                "internet_outage_min_per_agent": 100 / 60 / 0.75,
                "power_saifi": 0.0, "power_maifi": 0.0},
           {"window_clipped": 3, "overlap_clipped": 1, "unwatched": 0}, now=now)


def test_equal_starts_behind_one_router_take_the_longer_then_the_cause_order():
    # Agents a and b share a router (one line, 4 h: N = 1). At 00:16:40 a's isp outage and b's
    # lan outage, 600 s each: lan comes first in the cause order, whichever agent wrote it. At
    # 02:30 a's dns outage of 900 s and b's power outage of 300 s: the longer (dns) is the
    # first. Power: a's host_down and b's ac_lost at 01:23:20, 600 s each: one cut. Three
    # episodes merged into others: site_merged 3.
    a, b = unit("a", site="s"), unit("b", site="s")
    ds = Dataset(T0, T0 + 4 * HOUR, watch(a, range(4)) + watch(b, range(4)),
                 (Episode(a, "connectivity", "isp", T0 + 1000.0, 600.0),
                  Episode(b, "connectivity", "lan", T0 + 1000.0, 600.0),
                  Episode(a, "connectivity", "dns", T0 + 9000.0, 900.0),
                  Episode(b, "connectivity", "power", T0 + 9000.0, 300.0),
                  Episode(a, "power", "host_down", T0 + 5000.0, 600.0),
                  Episode(b, "power", "ac_lost", T0 + 5000.0, 600.0)))
    expect(ds, {"internet_outages_per_agent": 2.0, "internet_outages_per_agent_lan": 1.0,
                "internet_outages_per_agent_isp": 0.0, "internet_outages_per_agent_dns": 1.0,
                "internet_outages_per_agent_power": 0.0, "internet_outage_min_per_agent": 25.0,
                "power_saifi": 1.0, "power_saidi_min": 10.0},
           {"site_merged": 3})


def test_each_record_repaired_counts_whatever_happens_to_it_later():
    # Agent a wrote hours 0-1 and its first episodes before its region and site were set (no
    # region, no site), then PK-PB and site s. Records repaired: hour 0, hour 1 written twice
    # (3,600 + 600 s: observed_clipped), an isp outage 00:01:40-00:11:40, another inside it
    # (overlap_dropped), and two touching cuts 00:16:40-00:21:40-00:26:40 (power_merged): 7
    # records, each retagged and site_retagged once. One line, 4 h: N = 1; one outage of
    # 10 min; one sustained cut of 10 min.
    old, new = unit(region="", site=""), unit(site="s")
    ds = Dataset(T0, T0 + 4 * HOUR,
                 watch(old, [0, 1]) + watch(old, [1], 600.0) + watch(new, [2, 3]),
                 (Episode(old, "connectivity", "isp", T0 + 100.0, 600.0),
                  Episode(old, "connectivity", "lan", T0 + 200.0, 100.0),
                  Episode(old, "power", "ac_lost", T0 + 1000.0, 300.0),
                  Episode(old, "power", "ac_lost", T0 + 1300.0, 300.0)))
    expect(ds, {"agent_hours": 4.0, "sites": 1, "internet_outages_per_agent": 1.0,
                "internet_outage_min_per_agent": 10.0, "power_saifi": 1.0,
                "power_saidi_min": 10.0},
           {"retagged": 7, "site_retagged": 7, "overlap_dropped": 1, "power_merged": 1,
            "observed_clipped": 1})


def test_values_that_are_missing_or_not_numbers():
    # One line, 24 h from 00:00 UTC. Latency: a good day (p50 20 ms); a day without its median
    # (missing_value); a day whose loss is NaN (not_a_number). Speed tests: a good one (5 Mbit/s),
    # one without its download (missing_value), one whose upload is NaN (not_a_number).
    u = unit()
    ds = Dataset(T0, T0 + 24 * HOUR, watch(u, range(24)), (),
                 (PingDay(u, T0, 20.0, 50.0, 1.0, 100, 5.0, 80.0),
                  PingDay(unit("b", site="sb"), T0, None, 50.0, 1.0, 100, 5.0, 80.0),
                  PingDay(unit("c", site="sc"), T0, 30.0, 60.0, math.nan, 100, 5.0, 80.0)),
                 (SpeedTest(u, T0 + 600.0, 5e6, 1e6),
                  SpeedTest(u, T0 + 900.0, None, 1e6),
                  SpeedTest(u, T0 + 1200.0, 9e7, math.nan)))
    expect(ds, {"rtt_p50_ms": 20.0, "rtt_p50_ms_sites": 1, "loss_pct": 1.0,
                "download_p50_bps": 5e6, "speed_under_threshold_share": 1.0},
           {"missing_value": 2, "not_a_number": 2})


def test_an_event_not_listed_still_counts_in_the_cells():
    # Five lines, 4 h; lines 3 and 4 do not watch in hour 1. At 01:10 lines 0-2 lose power
    # (10 s apart, 600 s each): 3 of the 3 lines watching in that hour, an event, but fewer
    # than min_agents (5) lines watched then: not listed, counted in events_suppressed. The
    # cell (5 lines, each watching 3 h or more) is published; its 3 interruptions were part
    # of a regional event: regional_events 1, power_regional_share 1.
    us = [unit(f"a{i}", site=f"s{i}") for i in range(5)]
    obs = sum((watch(u, range(4)) for u in us[:3]), ()) + \
        sum((watch(u, [0, 2, 3]) for u in us[3:]), ())
    eps = tuple(Episode(u, "power", "ac_lost", T0 + 4200.0 + 10 * i, 600.0)
                for i, u in enumerate(us[:3]))
    ds = Dataset(T0, T0 + 4 * HOUR, obs, eps)
    st5 = Settings(min_agents=5, min_watch_h=1.0, bootstrap=BOOT)
    expect(ds, {"sites": 5, "regional_events": 1, "power_regional_share": 1.0,
                "power_saifi": 3 / (18 / 4)}, st_=st5)
    got = aggregate(ds, st5, ("region", "isp"), "all", now=ds.end)
    assert got["events"] == [] and got["events_suppressed"] == 1
