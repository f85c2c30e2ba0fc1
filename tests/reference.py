"""A second, naive reading of docs/collector.md: the regional figures recomputed from the page.

This module is written from the documentation only (docs/collector.md, the IEEE 1366 notes it
follows, and the record types of kit/records.py). It does not import the collector's
cleaning or statistics code: tests/test_reference.py feeds the same Dataset to both and compares,
so the two can only agree where both follow the page.

It is deliberately slow and plain: every time is an exact fraction (no rounding can tip a
comparison or push a share above 1), every rule is a loop over records, and each rule carries the
sentence of the page it implements. It is meant for small fleets (tens of agents, a few days).

Where the page leaves a choice open, the reading taken is written next to the rule ("Reading:").
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from kit.definitions import INTERNET_CAUSES, Unit
from kit.records import Dataset

HOUR = 3600
DAY = 86400
Y2000 = 946_684_800          # 2000-01-01 00:00 UTC
POWER_CAUSES = ("ac_lost", "host_down")
# "of equal length, the one whose cause comes first in the order power, lan, isp, dns, unknown"
CAUSE_ORDER = {c: i for i, c in enumerate(("power", "lan", "isp", "dns", "unknown"))}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def F(x) -> Fraction:
    """An exact copy of a (finite) number."""
    return Fraction(x)


def finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and (math.isnan(x) or math.isinf(x)))


def quantile(values, q):
    """"Quantiles are "inverted CDF": the smallest value whose cumulative share reaches q (the
    lower median for an even count)." Written out: walk the sorted values until k/n >= q."""
    v = sorted(values)
    if not v:
        return None
    n = len(v)
    for k in range(1, n + 1):
        if Fraction(k, n) >= Fraction(q).limit_denominator(1000):
            return v[k - 1]
    return v[-1]


def record_time(kind, r):
    return {"obs": lambda: r.hour, "episode": lambda: r.start, "ping": lambda: r.day,
            "speed": lambda: r.time}[kind]()


class Rec:
    """One input record, with the unit it ends up with after the repairs."""

    def __init__(self, kind, r):
        self.kind = kind
        self.r = r
        self.unit = r.unit
        self.time = record_time(kind, r)


class Interval:
    """An episode as the reference carries it: exact start and end, cause, and what it is made of."""

    def __init__(self, unit, type_, cause, start, end, parts=None):
        self.unit = unit
        self.type = type_
        self.cause = cause
        self.start = start
        self.end = end
        self.parts = parts if parts is not None else [self]   # raw episodes merged into it

    @property
    def duration(self):
        return self.end - self.start

    def __repr__(self):
        return (f"<{self.type}:{self.cause} {self.unit.agent} "
                f"{float(self.start)}+{float(self.duration)}>")


def line_of(unit: Unit):
    """"One line is one customer ... A line is a site: the agents behind one router" and
    "agents of one site with different tags ... make one line per tag set, each in its cell"."""
    return (unit.customer, unit.region, unit.isp, unit.city, unit.access)


def reference(ds: Dataset, settings, by=("region", "isp"), period="all", now=None) -> dict:
    """Cells (keyed by the cell's tags and its period's start), events and data-quality counts
    for ``ds``, as docs/collector.md defines them."""
    tz = ZoneInfo(settings.timezone)
    # "``now`` ... defaults to the window's end" (aggregate's docstring).
    now = F(ds.end if now is None else now)
    w_start, w_end = F(ds.start), F(ds.end)
    # "the part after the window's end, or after the time the collection runs when the window
    # reaches into the future (--until later than now), is not counted"
    cutoff = min(w_end, now)
    rejected, clipped, codes = Counter(), Counter(), Counter()

    # ------------------------------------------------------------------ records, checked one by one
    recs = [Rec("obs", r) for r in ds.all_obs()] + [Rec("episode", r) for r in ds.all_episodes()] + \
           [Rec("ping", r) for r in list(ds.all_pings())] + [Rec("speed", r) for r in ds.all_speeds()]
    kept = []
    for rec in recs:
        reason = basic_check(rec, w_start, w_end, now, settings)
        if reason == "outside":
            # "Both sources read only rows dated inside the window ...: a row outside it
            # belongs to another window and is not counted in this one."
            continue
        if reason:
            rejected[reason] += 1
        else:
            kept.append(rec)

    # "unknown_region: a region code not in regions ..., from an agent that has no record with
    # a valid code" / "retagged: a record without a valid region ... takes the agent's region:
    # the region of its latest records, by their own time, that have a valid code (of equal
    # times, the code sorting first)." / "The records that pass are then repaired: their region
    # ..., then their site ... "The agent's records" in those two rules are its records that
    # passed the checks, and each record repaired is counted once, whether or not a later rule
    # ... merges, clips or drops it."
    latest_valid = {}
    for rec in kept:
        if rec.unit.region in settings.regions:
            a = rec.unit.agent
            mine = (rec.time, rec.unit.region)
            if a not in latest_valid or later(mine, latest_valid[a]):
                latest_valid[a] = mine
    kept2 = []
    for rec in kept:
        if rec.unit.region not in settings.regions:
            if rec.unit.agent in latest_valid:
                rec.unit = replace_unit(rec.unit, region=latest_valid[rec.unit.agent][1])
                clipped["retagged"] += 1
            else:
                rejected["unknown_region"] += 1
                codes[rec.unit.region] += 1
                continue
        kept2.append(rec)
    kept = kept2

    # "site_retagged: a record without a site tag ... from an agent whose later records have one
    # takes the site of its latest such records (of equal times, the site sorting first)"
    latest_site = {}
    for rec in kept:
        if rec.unit.site:
            a = rec.unit.agent
            mine = (rec.time, rec.unit.site)
            if a not in latest_site or later(mine, latest_site[a]):
                latest_site[a] = mine
    for rec in kept:
        if not rec.unit.site and rec.unit.agent in latest_site:
            rec.unit = replace_unit(rec.unit, site=latest_site[rec.unit.agent][1])
            clipped["site_retagged"] += 1

    obs = [rec for rec in kept if rec.kind == "obs"]
    episodes = [rec for rec in kept if rec.kind == "episode"]
    pings = [rec for rec in kept if rec.kind == "ping"]
    speeds = [rec for rec in kept if rec.kind == "speed"]

    # "flood_speed_tests, flood_episodes: more than 48 tests, or 1,440 episodes of a type, by
    # one agent in a UTC day"; "The rules on an agent's episodes then follow in this order:
    # floods, overlaps and power merges, the window's end, then a site's agents merged, then
    # outage time only where watched." Reading: the first 48 (1,440) by time are kept, each one
    # over the limit is counted.
    speeds = flood(speeds, lambda rec: (rec.unit.agent, day_of(rec.time)), 48,
                   "flood_speed_tests", clipped)
    episodes = flood(episodes, lambda rec: (rec.unit.agent, rec.r.type, day_of(rec.time)), 1440,
                     "flood_episodes", clipped)

    # ------------------------------------------------------------------ watching, per unit and hour
    # "round time is the sum of its rounds' interval_s in the hour (at most 3,600 s,
    # observed_clipped)"
    round_sum = defaultdict(Fraction)
    for rec in obs:
        round_sum[(rec.unit, rec.r.hour)] += F(rec.r.observed_s)
    round_t = {}
    for k, s in round_sum.items():
        if s > HOUR:
            clipped["observed_clipped"] += 1
            s = Fraction(HOUR)
        round_t[k] = s

    # ------------------------------------------------------------------ one agent's episodes
    by_agent = defaultdict(list)
    for rec in episodes:
        e = rec.r
        by_agent[(rec.unit.agent, e.type)].append(
            Interval(rec.unit, e.type, e.cause, F(e.start), F(e.start) + F(e.duration_s)))

    agent_conn, agent_power = [], []
    host_down = []
    for (_agent, type_), eps in sorted(by_agent.items(), key=lambda kv: kv[0]):
        if type_ == "connectivity":
            agent_conn += agent_connectivity(eps, rejected, clipped)
        else:
            host_down += [e for e in eps if e.cause == "host_down"]
            agent_power += agent_power_cuts(eps, clipped)

    # "power-watched time is its round time plus the seconds of the hour covered by its
    # host_down episodes (their union, if several overlap), at most 3,600 s."
    # "A host_down episode is watched time whether or not it is merged ... (power_merged)"
    hd_by_unit = defaultdict(list)
    for e in host_down:
        hd_by_unit[e.unit].append((e.start, min(e.end, cutoff)))
    hours = set(round_t)
    for unit, ivs in hd_by_unit.items():
        for a, b in ivs:
            for h in hours_between(a, b):
                hours.add((unit, h))
    power_t = {}
    for unit, h in hours:
        if h < w_start or h >= w_end:
            continue        # only the window's hours belong to a period
        hd = union_seconds_in(hd_by_unit.get(unit, []), F(h), F(h + HOUR))
        power_t[(unit, h)] = min(round_t.get((unit, h), Fraction(0)) + hd, Fraction(HOUR))
    for (unit, h) in list(round_t):
        if h < w_start or h >= w_end:
            del round_t[(unit, h)]

    # "window_clipped: an episode still going at the window's end counts to the end (or to the
    # time of collection ...). An episode that begins only at or after that point ... has no
    # second to count: it is counted here only, and is neither an interruption nor an outage".
    # Counted per episode of an agent, before the episodes of a site's agents are merged (the
    # order of the rules, above); one that begins at or after the cut-off takes no part in it.
    for e in agent_conn + agent_power:
        if e.end > cutoff:
            clipped["window_clipped"] += 1
    agent_conn = [e for e in agent_conn if e.start < cutoff]
    agent_power = [e for e in agent_power if e.start < cutoff]

    # "a site's observed time in an hour (round time and power-watched time, each on its own) is
    # the most any of its agents watched in that hour"
    line_round, line_power = defaultdict(Fraction), defaultdict(Fraction)
    line_agents_hour = defaultdict(set)       # (line, hour) -> agents watching (power-watched)
    for (unit, h), t in round_t.items():
        k = (line_of(unit), h)
        line_round[k] = max(line_round[k], t)
    for (unit, h), t in power_t.items():
        k = (line_of(unit), h)
        line_power[k] = max(line_power[k], t)
        if t > 0:
            line_agents_hour[k].add(unit.agent)
    line_unit = {}
    for unit, _h in list(round_t) + list(power_t):
        line_unit.setdefault(line_of(unit), unit)

    # ------------------------------------------------------------------ one line's episodes
    # "episodes of one type ... of a site's agents that overlap (one starts before the end of
    # another) are one episode: from the first start to the last end (the union of their
    # intervals), with the cause of the first. The first is the one that starts first; of equal
    # starts, the longer (by its whole recorded duration), then the one whose cause comes first
    # in the order power, lan, isp, dns, unknown (for power, ac_lost before host_down),
    # whichever agent wrote it. Episodes that only touch ... stay two ... Each merged episode is
    # counted as site_merged".
    line_eps = []
    for _type, eps in (("connectivity", agent_conn), ("power", agent_power)):
        per_line = defaultdict(list)
        for e in eps:
            per_line[line_of(e.unit)].append(e)
        for _line, lst in sorted(per_line.items()):
            lst.sort(key=lambda e: (e.start, -e.duration, cause_rank(e.cause)))
            cur = None
            for e in lst:
                if cur is not None and e.start < cur.end:
                    cur.end = max(cur.end, e.end)
                    cur.parts = cur.parts + e.parts
                    clipped["site_merged"] += 1
                else:
                    cur = Interval(e.unit, e.type, e.cause, e.start, e.end, list(e.parts))
                    line_eps.append(cur)

    # ------------------------------------------------------------------ limits on outage time
    for e in line_eps:
        # "The class is decided by the interruption's whole duration as recorded, even when only
        # part of it lies in the window or in watched time"
        e.recorded = e.duration
        # "an episode still going at the window's end counts to the end (or to the time of
        # collection, when the window reaches into the future)"
        e.cut_end = min(e.end, cutoff)
        # "each episode is split at UTC hours"
        e.pieces = {}
        for h in hours_between(e.start, e.cut_end):
            a, b = max(e.start, F(h)), min(e.cut_end, F(h + HOUR))
            if b > a:
                e.pieces[h] = b - a
    # "in each hour the seconds of a line's episodes of one type are at most the line's watched
    # time in that hour (round time for connectivity, power-watched time for power). When they
    # are more, each episode's seconds in that hour are scaled down in proportion, and the
    # episode is counted once as unwatched_clipped; an episode left with no second at all is
    # rejected as unwatched."
    groups = defaultdict(list)
    for e in line_eps:
        for h in e.pieces:
            groups[(line_of(e.unit), e.type, h)].append(e)
    e_scaled = {id(e): False for e in line_eps}
    for (line, type_, h), lst in groups.items():
        watched = (line_round if type_ == "connectivity" else line_power).get((line, h),
                                                                               Fraction(0))
        total = sum(e.pieces[h] for e in lst)
        if total > watched:
            for e in lst:
                e.pieces[h] = e.pieces[h] * watched / total
                e_scaled[id(e)] = True
    kept_eps = []
    for e in line_eps:
        e.seconds = sum(e.pieces.values(), Fraction(0))
        if e.seconds == 0:
            rejected["unwatched"] += 1
            continue
        if e_scaled[id(e)]:
            clipped["unwatched_clipped"] += 1
        kept_eps.append(e)
    line_eps = kept_eps

    # ------------------------------------------------------------------ periods
    def period_of(t):
        """The period a time belongs to: (start, end), clipped to the window."""
        if period == "all":
            return (w_start, w_end)
        assert period == "day"
        # Reading: "day" periods are local days (the timezone's midnights), clipped to the window.
        local = datetime.fromtimestamp(float(t), tz)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        a = F(int(midnight.timestamp()))
        b = F(int((midnight + timedelta(days=1)).timestamp()))
        return (max(a, w_start), min(b, w_end))

    # ------------------------------------------------------------------ regional events
    events, ep_in_event = regional_events(line_eps, line_round, line_power, line_agents_hour,
                                          settings)
    events_suppressed = 0
    listed = []
    for ev in events:
        # "Regional events in a region with fewer lines watching are not listed, only counted
        # (events_suppressed)." Reading: fewer than min_agents lines watching in the event's hour.
        if ev["sites_observed"] < settings.min_agents:
            events_suppressed += 1
        else:
            listed.append(ev)

    # ------------------------------------------------------------------ cells
    cells = defaultdict(lambda: {"lines": set(), "agents": set()})
    keyline = {}

    def cell_key(unit, t):
        p = period_of(t)
        return (unit.key(by), p)

    for (line, h), t in line_power.items():
        if t <= 0:
            continue
        unit = line_unit[line]
        ck = cell_key(unit, h)
        cells[ck]["lines"].add(line)
        cells[ck]["agents"] |= line_agents_hour[(line, h)]
        keyline[line] = unit
    out_cells = {}
    for (key, (p_start, p_end)), c in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        period_s = p_end - p_start
        in_p = lambda t, p_start=p_start, p_end=p_end: p_start <= t < p_end        # noqa: E731
        lines = c["lines"]
        cell = {"agents": len(c["agents"]), "sites": len(lines)}
        power_s = {ln: sum((t for (l2, h), t in line_power.items() if l2 == ln and in_p(h)),
                           Fraction(0)) for ln in lines}
        round_s = {ln: sum((t for (l2, h), t in line_round.items() if l2 == ln and in_p(h)),
                           Fraction(0)) for ln in lines}
        # "agent_hours the lines' observed hours (a site's hours once)". Reading: observed time
        # is the power-watched time (rounds plus host-down time).
        cell["agent_hours"] = sum(power_s.values()) / HOUR
        # "at least min_agents lines (sites) each watched at least min_watch_h hours ... For
        # periods shorter than twice min_watch_h the requirement is half the period"
        need = F(settings.min_watch_h) * HOUR
        if period_s < 2 * need:
            need = period_s / 2
        cell["sites_watched_min_h"] = sum(1 for ln in lines if power_s[ln] >= need)
        if cell["sites"] < settings.min_agents:
            cell["suppressed"], cell["suppressed_reason"] = True, "min_agents"
        elif cell["sites_watched_min_h"] < settings.min_agents:
            cell["suppressed"], cell["suppressed_reason"] = True, "min_watch_h"
        else:
            cell["suppressed"], cell["suppressed_reason"] = False, None

        # "customers served N = observed line-seconds / the period's seconds"
        obs_power = sum(power_s.values(), Fraction(0))
        obs_round = sum(round_s.values(), Fraction(0))
        n_power = obs_power / period_s
        n_round = obs_round / period_s

        # "An interruption counts in the period in which it began, with its whole length"
        mine = [e for e in line_eps if line_of(e.unit) in lines and in_p(e.start)]
        cuts = [e for e in mine if e.type == "power"]
        outs = [e for e in mine if e.type == "connectivity"]
        # "Sustained: longer than momentary_max_s ...; momentary: the rest."
        mom = F(settings.momentary_max_s)
        sustained = [e for e in cuts if e.recorded > mom]
        momentary = [e for e in cuts if e.recorded <= mom]
        sust_s = sum((e.seconds for e in sustained), Fraction(0))
        cell["power_saifi"] = ratio(len(sustained), n_power)            # sustained / N
        cell["power_saidi_min"] = ratio(sust_s / 60, n_power)           # minutes / N
        # "SAIDI / SAIFI: minutes per sustained interruption (none without one)"
        cell["power_caidi_min"] = (ratio(cell["power_saidi_min"], cell["power_saifi"])
                                   if sustained else None)
        cell["power_maifi"] = ratio(len(momentary), n_power)
        cell["power_asai"] = None if obs_power == 0 else 1 - sust_s / obs_power

        # Internet: "1 - outage seconds / observed round seconds", "outages / N (N over round
        # time)", "outage minutes / N", and the same per cause.
        out_s = sum((e.seconds for e in outs), Fraction(0))
        cell["internet_availability"] = None if obs_round == 0 else 1 - out_s / obs_round
        cell["internet_outages_per_agent"] = ratio(len(outs), n_round)
        cell["internet_outage_min_per_agent"] = ratio(out_s / 60, n_round)
        for cause in INTERNET_CAUSES:
            these = [e for e in outs if e.cause == cause]
            cell[f"internet_outages_per_agent_{cause}"] = ratio(len(these), n_round)
            cell[f"internet_outage_min_per_agent_{cause}"] = ratio(
                sum((e.seconds for e in these), Fraction(0)) / 60, n_round)

        # "the part of each interruption inside working hours ..., per customer served".
        # Reading: every power episode (momentary too, as methodology.md says), power N for
        # power and round N for internet; a scaled hour keeps its proportion inside work hours.
        cell["work_hours_power_min_per_agent"] = ratio(
            sum((work_seconds(e, tz, settings) for e in cuts), Fraction(0)) / 60, n_power)
        cell["work_hours_internet_min_per_agent"] = ratio(
            sum((work_seconds(e, tz, settings) for e in outs), Fraction(0)) / 60, n_round)

        # Load shedding: "the share of observed agent-time without mains power in each hour of the
        # day and weekday, local time ... The time without power is the interruptions' seconds in
        # each hour (after the limits above), the observed time the lines' power-watched time."
        # Reading: the seconds in the period's hours of the lines' interruptions, whichever period
        # they began in (the profile "splits it over the hours it covered"); only so can "a share
        # therefore never exceed 1" hold for a day cell that a cut of the day before reaches into.
        off = defaultdict(Fraction)
        seen = defaultdict(Fraction)
        for e in line_eps:
            if e.type == "power" and line_of(e.unit) in lines:
                for h, s in e.pieces.items():
                    if in_p(h):
                        off[slot(h, tz)] += s
        for (ln, h), t in line_power.items():
            if ln in lines and in_p(h):
                seen[slot(h, tz)] += t
        impossible = 0
        heat = [[None] * 24 for _ in range(7)]
        for wd in range(7):
            for hr in range(24):
                heat[wd][hr], bad = share(off[(wd, hr)], seen[(wd, hr)])
                impossible += bad
        by_hour = []
        for hr in range(24):
            v, bad = share(sum(off[(wd, hr)] for wd in range(7)),
                           sum(seen[(wd, hr)] for wd in range(7)))
            by_hour.append(v)
            impossible += bad
        by_wd = []
        for wd in range(7):
            v, bad = share(sum(off[(wd, hr)] for hr in range(24)),
                           sum(seen[(wd, hr)] for hr in range(24)))
            by_wd.append(v)
            impossible += bad
        cell["load_shedding_by_hour"] = by_hour
        cell["load_shedding_by_weekday"] = by_wd
        cell["load_shedding_heatmap"] = heat
        cell["_impossible_share"] = impossible

        # Line quality, "one line, one vote": each line summarised first, then over lines.
        lq = line_quality([p for p in pings if line_of(p.unit) in lines and in_p(p.time)],
                          [s for s in speeds if line_of(s.unit) in lines and in_p(s.time)],
                          settings)
        cell.update(lq)

        # Regional events: "Each cell gives regional_events and the share of its interruptions
        # (power_regional_share) and outages (internet_regional_share) that were part of one";
        # of events not listed: "their episodes still count as part of a regional event in the
        # cells' regional_events and shares". Reading: regional_events is the number of events
        # holding at least one of the cell's episodes of the period.
        evs = set()
        for e in mine:
            if id(e) in ep_in_event:
                evs.add(ep_in_event[id(e)])
        cell["regional_events"] = len(evs)
        cell["power_regional_share"] = (None if not cuts else
                                        Fraction(sum(1 for e in cuts if id(e) in ep_in_event),
                                                 len(cuts)))
        cell["internet_regional_share"] = (None if not outs else
                                           Fraction(sum(1 for e in outs if id(e) in ep_in_event),
                                                    len(outs)))
        cell["_period"] = (p_start, p_end)
        out_cells[(key, p_start)] = cell

    impossible = sum(c.pop("_impossible_share") for c in out_cells.values())
    if impossible:
        rejected["impossible_share"] += impossible
    return {"cells": out_cells, "events": listed, "events_suppressed": events_suppressed,
            "rejected": +rejected, "clipped": +clipped, "unknown_region_codes": +codes}


# ---------------------------------------------------------------------------------------- checks

def basic_check(rec, w_start, w_end, now, settings):
    """The reason a record is rejected, "outside" for a row of another window, or None.
    "A record is checked on its own first and counted once, under the first reason that
    applies, in this order: missing_agent, not_a_number, clock_unset, future_timestamp; then, if
    it lies outside the window, it is left out uncounted (above); then the reasons of its kind
    (an episode: unknown_type, unknown_cause, negative_duration, zero_duration,
    absurd_duration; an hour: absurd_observed; a day of latency: missing_value (without its
    median or 95th percentile), absurd_rtt, absurd_loss; a speed test: missing_value (without
    its download speed), absurd_speed)."
    """
    r, kind = rec.r, rec.kind
    # "missing_agent: a row without an agent tag"
    if not r.unit.agent:
        return "missing_agent"
    # "not_a_number: NaN or infinite values". Reading: an hour's observed time that is NaN or
    # infinite is not_a_number too, though absurd_observed also speaks of "not a number".
    if kind == "obs":
        values = [r.hour, r.observed_s]
    elif kind == "episode":
        values = [r.start, r.duration_s]
    elif kind == "ping":
        values = [r.day, r.rtt_p50_ms, r.rtt_p95_ms, r.loss_pct, r.rtt_min_ms, r.rtt_max_ms]
    else:
        values = [r.time, r.download_bps, r.upload_bps]
    if any(v is not None and not finite(v) for v in values):
        return "not_a_number"
    t = rec.time
    # "clock_unset: a row dated before 2000-01-01: a clock that was never set"
    if t < Y2000:
        return "clock_unset"
    # "future_timestamp: dated more than 5 minutes after the collection ran"
    if F(t) > now + 300:
        return "future_timestamp"
    if F(t) < w_start or F(t) >= w_end:
        return "outside"
    if kind == "episode":
        # "unknown_type, unknown_cause: an episode the agent never writes"
        if r.type not in ("power", "connectivity"):
            return "unknown_type"
        if r.cause not in (POWER_CAUSES if r.type == "power" else INTERNET_CAUSES):
            return "unknown_cause"
        # "negative_duration: an episode ending before it starts"
        if r.duration_s < 0:
            return "negative_duration"
        # "zero_duration: an episode that ends when it starts"
        if r.duration_s == 0:
            return "zero_duration"
        # "absurd_duration: an episode longer than 31 days"
        if r.duration_s > 31 * DAY:
            return "absurd_duration"
    elif kind == "obs":
        # "absurd_observed: a round whose interval_s is not a number above 0 and at most
        # 3,600 s ...; likewise a record of an hour's observed time that is not above 0". One
        # above 3,600 s is clipped (observed_clipped) with the hour's other rows.
        if r.observed_s <= 0:
            return "absurd_observed"
    elif kind == "ping":
        # "missing_value: a row ... without its value"
        if r.rtt_p50_ms is None or r.rtt_p95_ms is None:
            return "missing_value"
        # "absurd_rtt: a day of latency with a round below 0 or above 60 s (the whole day)"
        rtts = [v for v in (r.rtt_min_ms, r.rtt_max_ms, r.rtt_p50_ms, r.rtt_p95_ms)
                if v is not None]
        if any(v < 0 or v > 60_000 for v in rtts):
            return "absurd_rtt"
        # "absurd_loss: loss outside 0..100 %". Reading: the whole day is left out.
        if r.loss_pct is not None and not 0 <= r.loss_pct <= 100:
            return "absurd_loss"
    else:
        # "missing_value: a row ... without its value": a test without its download speed
        if r.download_bps is None:
            return "missing_value"
        # "absurd_speed: a speed at or below 0, or above 10 Gbit/s". Reading: the whole test.
        for v in (r.download_bps, r.upload_bps):
            if v is not None and (v <= 0 or v > 10e9):
                return "absurd_speed"
    return None


def cause_rank(cause):
    """"the order power, lan, isp, dns, unknown (for power, ac_lost before host_down)"."""
    return ("ac_lost", "host_down").index(cause) if cause in POWER_CAUSES else CAUSE_ORDER[cause]


def later(a, b):
    """Whether (time, value) ``a`` is the latest: the later time, of equal times the value
    sorting first."""
    return a[0] > b[0] or (a[0] == b[0] and a[1] < b[1])


def replace_unit(u: Unit, **kw) -> Unit:
    d = dict(agent=u.agent, region=u.region, isp=u.isp, city=u.city, access=u.access, site=u.site)
    d.update(kw)
    return Unit(**d)


def day_of(t):
    return int(t // DAY)


def flood(recs, key, limit, reason, clipped):
    groups = defaultdict(list)
    for rec in recs:
        groups[key(rec)].append(rec)
    out = []
    for lst in groups.values():
        lst.sort(key=lambda rec: rec.time)
        out += lst[:limit]
        if len(lst) > limit:
            clipped[reason] += len(lst) - limit
    return out


def agent_connectivity(eps, rejected, clipped):
    """One agent's connectivity episodes, overlaps resolved.

    "overlap_dropped: a connectivity episode wholly inside an earlier one of the same agent ...
    Two that start at the same instant: the longer is kept and the other dropped; of equal
    length, the one whose cause comes first in the order power, lan, isp, dns, unknown"
    "overlap_clipped: a connectivity episode that began before the previous one ended starts at
    its end"."""
    eps = sorted(eps, key=lambda e: (e.start, -e.duration, CAUSE_ORDER[e.cause]))
    out = []
    for e in eps:
        if out and e.end <= out[-1].end:
            rejected["overlap_dropped"] += 1
            continue
        if out and e.start < out[-1].end:
            clipped["overlap_clipped"] += 1
            e = Interval(e.unit, e.type, e.cause, out[-1].end, e.end)
        out.append(e)
    return out


def agent_power_cuts(eps, clipped):
    """One agent's power episodes made into interruptions.

    "power_merged: a power episode that overlaps or touches the agent's previous one (starts at
    or before its end ...), or a host_down starting within 60 s after the end of a previous
    episode that is not itself a host_down ..., is merged into it: one interruption, from the
    first start to the last end, with the first episode's cause."
    Reading: "the previous one" is the interruption built so far (its last end); "a previous
    episode that is not itself a host_down" is any earlier ac_lost episode of that interruption,
    by its own end."""
    eps = sorted(eps, key=lambda e: (e.start, -e.duration, e.cause))
    out = []
    for e in eps:
        if out:
            cur = out[-1]
            touches = e.start <= cur.end
            after_battery = e.cause == "host_down" and any(
                p.cause != "host_down" and p.end <= e.start <= p.end + 60 for p in cur.parts)
            if touches or after_battery:
                cur.end = max(cur.end, e.end)
                cur.parts = cur.parts + [e]
                clipped["power_merged"] += 1
                continue
        out.append(Interval(e.unit, e.type, e.cause, e.start, e.end, [e]))
    return out


# ---------------------------------------------------------------------------------------- time

def hours_between(a, b):
    """The UTC hours (their starts) that [a, b) touches."""
    if b <= a:
        return []
    h = int(math.floor(a / HOUR)) * HOUR
    out = []
    while h < b:
        out.append(h)
        h += HOUR
    return out


def union_seconds_in(ivs, lo, hi):
    """Seconds of [lo, hi) covered by the union of the intervals ``ivs``."""
    pieces = sorted((max(a, lo), min(b, hi)) for a, b in ivs if min(b, hi) > max(a, lo))
    total, cur_a, cur_b = Fraction(0), None, None
    for a, b in pieces:
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


def slot(h, tz):
    """(weekday, hour of day), local time, of the UTC hour starting at ``h``."""
    local = datetime.fromtimestamp(h, tz)
    return (local.weekday(), local.hour)


def work_seconds(e, tz, settings):
    """The seconds of an episode (after the limits) inside working hours on working days."""
    total = Fraction(0)
    for h, s in e.pieces.items():
        a, b = max(e.start, F(h)), min(e.cut_end, F(h + HOUR))
        raw = b - a
        if raw <= 0:
            continue
        local = datetime.fromtimestamp(h, tz)
        if WEEKDAYS[local.weekday()] not in settings.work_days:
            continue
        # local minute-of-day at the hour's start; the offset is whole hours for Asia/Karachi
        m0 = local.hour * 60 + local.minute
        ws = F(h) + (settings.work_start_min - m0) * 60
        we = F(h) + (settings.work_end_min - m0) * 60
        inside = max(Fraction(0), min(b, we) - max(a, ws))
        total += s * inside / raw      # a scaled hour keeps its proportion inside work hours
    return total


def share(off, seen):
    """(share, 1 if impossible): "A share can therefore never exceed 1; if one does ..., it is
    not shown as 1: that hour (or weekday) is left empty (null) and counted as impossible_share"."""
    if seen == 0:
        return None, 0
    v = off / seen
    if v > 1:
        return None, 1
    return v, 0


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return Fraction(a) / Fraction(b)


# ---------------------------------------------------------------------------------------- quality

def line_quality(pings, speeds, settings):
    """"each line is summarised first, then the cell takes the figure over lines"."""
    out = {}
    by_line_p = defaultdict(list)
    for rec in pings:
        by_line_p[line_of(rec.unit)].append(rec)
    by_line_s = defaultdict(list)
    for rec in speeds:
        by_line_s[line_of(rec.unit)].append(rec)

    def agents_of(lines, groups):
        return len({rec.unit.agent for ln in lines for rec in groups[ln]})

    # "median over agents of each agent's median daily round-trip time" (a line's median over
    # all its agents' days)
    for fig, field in (("rtt_p50_ms", "rtt_p50_ms"), ("rtt_p95_ms", "rtt_p95_ms")):
        vals = {ln: quantile([F(getattr(r.r, field)) for r in recs], 0.5)
                for ln, recs in by_line_p.items()}
        vals = {ln: v for ln, v in vals.items() if v is not None}
        out[fig] = quantile(list(vals.values()), 0.5)
        out[fig + "_sites"] = len(vals)
        out[fig + "_agents"] = agents_of(vals, by_line_p)
    # "loss_pct: mean over agents of their loss, over rounds in which the target answered".
    # Reading: a line's loss is its days' loss weighted by their rounds; the cell's is the mean.
    losses = {}
    for ln, recs in by_line_p.items():
        rs = [r for r in recs if r.r.loss_pct is not None]
        n = sum(r.r.rounds for r in rs)
        if rs and n > 0:
            losses[ln] = sum(F(r.r.loss_pct) * r.r.rounds for r in rs) / n
    out["loss_pct"] = (sum(losses.values()) / len(losses)) if losses else None
    out["loss_pct_sites"] = len(losses)
    out["loss_pct_agents"] = agents_of(losses, by_line_p)
    # "download_p50_bps, upload_p50_bps: median over agents of each agent's median speed test";
    # "download_p10_bps: 10th percentile over agents of each agent's median download"
    down = {ln: quantile([F(r.r.download_bps) for r in recs], 0.5)
            for ln, recs in by_line_s.items()}
    up = {ln: quantile([F(r.r.upload_bps) for r in recs if r.r.upload_bps is not None], 0.5)
          for ln, recs in by_line_s.items()}
    up = {ln: v for ln, v in up.items() if v is not None}
    for fig, vals, q in (("download_p50_bps", down, 0.5), ("download_p10_bps", down, 0.1),
                         ("upload_p50_bps", up, 0.5)):
        out[fig] = quantile(list(vals.values()), q)
        out[fig + "_sites"] = len(vals)
        out[fig + "_agents"] = agents_of(vals, by_line_s)
    # "speed_under_threshold_share: mean over agents of the share of their tests below
    # speed_threshold_mbps". Reading: downloads strictly below the threshold.
    shares = {ln: Fraction(sum(1 for r in recs if r.r.download_bps < settings.speed_threshold_bps),
                           len(recs)) for ln, recs in by_line_s.items()}
    out["speed_under_threshold_share"] = (sum(shares.values()) / len(shares)) if shares else None
    out["speed_under_threshold_share_sites"] = len(shares)
    out["speed_under_threshold_share_agents"] = agents_of(shares, by_line_s)
    return out


# ---------------------------------------------------------------------------------------- events

def regional_events(line_eps, line_round, line_power, line_agents_hour, settings):
    """"Episodes of one type in one region, sorted by start, after a site's agents were merged
    ... An event begins at an episode when the episodes starting within event_window_s of it come
    from at least event_min_share of the lines (sites) watching in the region in that hour, and
    from at least three lines. ... Its episodes are taken, and the search goes on after them."
    "'That hour' is the UTC hour in which that episode starts; a line watches in it as the
    figures of the type count watching: by its round time for connectivity events, by its
    power-watched time for power events."
    Reading: "within" is inclusive; the search goes on at the first episode after the last one
    taken. Lines are counted as sites here (the agents behind one router), whatever tags their
    agents wrote: "one line per tag set" is said of cells."""
    events, member = [], {}
    groups = defaultdict(list)
    for e in line_eps:
        groups[(e.unit.region, e.type)].append(e)
    for (region, type_), eps in sorted(groups.items()):
        eps.sort(key=lambda e: (e.start, -e.recorded, cause_rank(e.cause)))
        watch = line_round if type_ == "connectivity" else line_power
        i = 0
        while i < len(eps):
            first = eps[i]
            j = i
            while j < len(eps) and eps[j].start <= first.start + F(settings.event_window_s):
                j += 1
            taken = eps[i:j]
            lines = {e.unit.customer for e in taken}
            h = int(first.start // HOUR) * HOUR
            watching = {ln[0] for (ln, hh), t in watch.items()
                        if hh == h and t > 0 and ln[1] == region}
            if len(lines) >= settings.event_min_agents and \
                    len(lines) >= F(settings.event_min_share) * len(watching):
                isps = Counter(e.unit.isp for e in taken)
                ev = {"region": region, "type": type_, "start": first.start,
                      "sites_affected": len(lines), "sites_observed": len(watching),
                      # "An event is a grid or feeder failure (power) or a network failure
                      # (connectivity; scope: isp when 80 % or more of its episodes are on one
                      # ISP)": only a connectivity event can have the scope isp.
                      "scope": "isp" if type_ == "connectivity" and
                      max(isps.values()) >= Fraction(8, 10) * len(taken) else "region"}
                for e in taken:
                    member[id(e)] = len(events)
                events.append(ev)
                i = j
            else:
                i += 1
    return events, member
