"""Bad data in, counted rejections out: a Dataset becomes checked columns (pure, numpy).

Volunteers' agents run on machines nobody audits, so every record is checked before it reaches a
statistic, and each one that is rejected or clipped is counted by reason in :class:`Quality`,
which every output shows (the data-quality section). Nothing is dropped silently, except a
record dated outside the window [start, end): it belongs to another window (the order of the
checks: :func:`clean`). The reasons, as docs/collector.md defines them (the sources count some
of them themselves, for rows that make no record: ``clock_unset`` and ``absurd_observed``,
``missing_agent`` and ``missing_value``, ``unreadable_store``; :mod:`collector.stats` counts
``impossible_share``):

rejected (the record is left out):
  ``unknown_region``     the unit's region is not one of the configured codes (or is empty),
                         and the agent has no record with a valid one to take it from
  ``unknown_type``       an episode that is neither power nor connectivity
  ``unknown_cause``      an episode cause the agent never writes
  ``missing_agent``      a record whose unit has no agent id
  ``not_a_number``       NaN or infinite time or value
  ``negative_duration``  an episode that ends before it starts
  ``zero_duration``      an episode that ends when it starts (the agent never writes one)
  ``absurd_duration``    an episode longer than 31 days
  ``future_timestamp``   a record dated after the collection's "now" (plus 5 minutes of skew)
  ``clock_unset``        a record dated before 2000-01-01: a clock that was never set
  ``absurd_observed``    a round whose interval_s is not a number in (0, 3600] (the sources
                         leave it out of its hour's sum); here, an hour whose time is not
                         above 0
  ``missing_value``      a day of latency without its median or 95th percentile, a speed test
                         without its download speed
  ``absurd_rtt``         a day of latency with a round below 0 or above 60 s (the whole day)
  ``absurd_loss``        loss outside 0..100 %
  ``absurd_speed``       a speed at or below 0, or above 10 Gbit/s (no consumer line is faster)
  ``overlap_dropped``    a connectivity episode wholly inside an earlier one of the same agent
                         (whatever tags each was written with);
                         of two starting at the same instant the longer is kept, of equal length
                         the one whose cause comes first (power, lan, isp, dns, unknown)
  ``unwatched``          an episode with no second in an hour its line was watched
clipped (the record is kept, shortened, merged or repaired):
  ``retagged``           a record without a valid region (written before the agent's region was
                         set, or with a code it later corrected) takes the agent's region: the
                         region of its latest records that have a valid one (each record
                         repaired counted once, whatever later rules do with it)
  ``site_merged``        an episode of one line that overlaps another of its agents' (one site):
                         merged into the first (:func:`by_site`; not bad data, counted so the
                         totals add up)
  ``site_retagged``      a record without a site tag (written before the agent was upgraded)
                         takes the site of the agent's latest records that have one
  ``overlap_clipped``    a connectivity episode that began before the previous one ended starts
                         at its end
  ``power_merged``       a power episode that overlaps or touches the agent's cut before it, or
                         a host_down starting within 60 s after the end of an earlier episode
                         that is not a host_down (a battery ran flat, then the host went down):
                         merged into it, one interruption (not bad data;
                         :func:`kit.definitions.joins_previous_cut`)
  ``unwatched_clipped``  an episode some of whose seconds fell in hours its line was not
                         watched: in each hour a line's outage seconds of one type are at most
                         its watched time there, scaled down in proportion when they are more
  ``observed_clipped``   more than 3,600 observed seconds in one hour (an agent id used twice,
                         or rounds written twice): clipped to the hour
  ``flood_speed_tests``  more than 48 speed tests by one agent in one UTC day: the rest dropped
  ``flood_episodes``     more than 1,440 episodes of one type by one agent in one UTC day
  ``window_clipped``     an episode still going at the window's end (or at "now", when the
                         window reaches into the future) counts up to it only; its class still
                         follows its whole duration (not bad data; counted so the totals add
                         up); one that begins only at or after that point is counted here only
                         and left out: no second of it can count

Watched time, per agent (unit) and UTC hour: *round time* is what its rounds covered (at most
3,600 s); *power-watched time* is round time plus the seconds its ``host_down`` episodes covered
(their union), at most 3,600 s, taken before any merge: merging decides how many interruptions
there were, never how long the line was watched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import repeat
from operator import attrgetter
from typing import Iterable, Sequence

import numpy as np

from kit.definitions import CLOCK_SET, MAX_INTERVAL_S, POWER_JOIN_S, Quality, Unit
from kit.records import Dataset

TYPES: tuple[str, ...] = ("power", "connectivity")
POWER = TYPES.index("power")
# Every cause the agent records for the two types (docs/metrics.md, outage.cause). The order of
# the connectivity causes is the tie-break between two outages of equal start and length.
CAUSES: tuple[str, ...] = ("ac_lost", "host_down", "power", "lan", "isp", "dns", "unknown")
HOST_DOWN = CAUSES.index("host_down")
VALID_CAUSES = {"power": {"ac_lost", "host_down"},
                "connectivity": {"power", "lan", "isp", "dns", "unknown"}}
SKEW_S = 300.0
MAX_EPISODE_S = 31 * 86400.0
MAX_RTT_MS = 60_000.0
MAX_SPEED_BPS = 10e9
MAX_TESTS_PER_DAY = 48
MAX_EPISODES_PER_DAY = 1440


@dataclass
class Columns:
    """The checked dataset as parallel arrays; ``units`` indexes every ``*_unit`` array."""

    start: float
    end: float
    units: list[Unit]
    obs_unit: np.ndarray
    obs_hour: np.ndarray     # start of the UTC hour, seconds; one row per unit and hour
    obs_s: np.ndarray        # round time (0 in an hour watched only by being down for power)
    obs_pw: np.ndarray       # power-watched time: round time + host-down time, at most 3,600 s
    ep_unit: np.ndarray
    ep_type: np.ndarray      # index into TYPES
    ep_cause: np.ndarray     # index into CAUSES
    ep_start: np.ndarray
    ep_dur: np.ndarray       # seconds from the start to the end, clipped at the window's end
    ep_whole: np.ndarray     # the whole recorded duration (after merging): decides the class
    pd_unit: np.ndarray
    pd_day: np.ndarray
    pd_p50: np.ndarray
    pd_p95: np.ndarray
    pd_loss: np.ndarray      # NaN: no loss figure that day
    pd_rounds: np.ndarray
    sp_unit: np.ndarray
    sp_time: np.ndarray
    sp_down: np.ndarray
    sp_up: np.ndarray        # NaN: no upload figure
    # Set by by_site(), where each unit is a line (its `agent` is the site): the agents' ids, each
    # unit's agents (indices into ``agents``), each record's own agent, and the agents of the
    # episodes merged from several.
    agents: list[str] | None = None
    unit_agents: list[frozenset] | None = None
    ep_agent: np.ndarray | None = None
    ep_merged: dict | None = None
    pd_agent: np.ndarray | None = None
    sp_agent: np.ndarray | None = None
    # Only when some line has several agents: (unit, agent, time) of each watching record.
    watchers: tuple | None = None
    # Set by by_site(), after outage time was limited to watched time: each episode's counted
    # seconds, and its pieces, one per UTC hour it covers (episode index, hour start, counted
    # seconds, and the share of the piece's seconds that was kept).
    ep_secs: np.ndarray | None = None
    pc_ep: np.ndarray | None = None
    pc_hour: np.ndarray | None = None
    pc_s: np.ndarray | None = None
    pc_scale: np.ndarray | None = None


def _reject(q: Quality, keep: np.ndarray, bad: np.ndarray, reason: str) -> None:
    """Count and clear the still-kept records that are ``bad``."""
    hit = keep & bad
    n = int(hit.sum())
    if n:
        q.rejected[reason] += n
        keep &= ~bad


_UNIT, _TYPE, _CAUSE = attrgetter("unit"), attrgetter("type"), attrgetter("cause")


def _figures(recs: Sequence, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One optional figure of every record: its values (NaN where None) and where it is None."""
    values = list(map(attrgetter(name), recs))
    none = np.fromiter((v is None for v in values), bool, len(values))
    return np.fromiter((np.nan if v is None else v for v in values), np.float64, len(values)), none


def _col(recs: Sequence, name: str, dtype, conv=None) -> np.ndarray:
    """One attribute of every record as an array (map and attrgetter: no Python loop)."""
    it = map(attrgetter(name), recs)
    return np.fromiter(map(conv, it) if conv else it, dtype, len(recs))


def clean(ds: Dataset, regions: Iterable[str], now: float) -> tuple[Columns, Quality]:
    """Check every record of ``ds`` against ``regions`` (the known region codes) and ``now``
    (seconds since 1970 UTC); return the kept records as columns and the counts.

    Each record is checked on its own first and counted once, under the first reason in this
    order: ``missing_agent``, ``not_a_number``, ``clock_unset``, ``future_timestamp``; then a
    record dated outside the window [start, end) is left out uncounted (it belongs to another
    window); then the reasons of its kind (episodes: ``unknown_type``, ``unknown_cause``,
    ``negative_duration``, ``zero_duration``, ``absurd_duration``; hours: ``absurd_observed``;
    days of latency: ``missing_value``, ``absurd_rtt``, ``absurd_loss``; speed tests:
    ``missing_value``, ``absurd_speed``). The records that pass are then repaired
    (``retagged``, or ``unknown_region`` when the agent has no valid region to give; then
    ``site_retagged``), each counted once, whatever a later rule does with it. An agent's
    episodes then go through floods, overlaps and power merges (:func:`_overlaps`), and the
    window's end, in that order (docs/collector.md, bad data)."""
    q = Quality()
    known = set(regions)
    index: dict[Unit, int] = {}
    units: list[Unit] = []

    def uid(u: Unit) -> int:
        i = index.get(u)
        if i is None:
            i = index[u] = len(units)
            units.append(u)
        return i

    def unit_col(recs: Sequence) -> np.ndarray:
        """Each record's unit index. Records of one series share one Unit object, so units are
        told apart by identity first (fast), then by value (a source may repeat equal Units)."""
        if not recs:
            return np.zeros(0, dtype=np.int64)
        ids = np.fromiter(map(id, map(_UNIT, recs)), np.int64, len(recs))
        _, first, inv = np.unique(ids, return_index=True, return_inverse=True)
        local = np.array([uid(recs[i].unit) for i in first.tolist()], dtype=np.int64)
        return local[inv.reshape(-1)]

    horizon = now + SKEW_S
    type_ix = {t: i for i, t in enumerate(TYPES)}
    cause_ix = {c: i for i, c in enumerate(CAUSES)}
    obs, eps, pds, sps = ds.obs, ds.episodes, ds.pings, ds.speeds
    o_unit, e_unit, p_unit, s_unit = (unit_col(recs) for recs in (obs, eps, pds, sps))
    no_agent = np.array([not u.agent for u in units], dtype=bool)

    def checked(unit: np.ndarray, time: np.ndarray, nan: np.ndarray, own) -> np.ndarray:
        """The records that pass the checks common to all kinds, then their kind's ``own``
        (reason, bad) pairs; a record outside the window is left out uncounted."""
        keep = np.ones(unit.size, dtype=bool)
        if unit.size == 0:
            return keep
        _reject(q, keep, no_agent[unit], "missing_agent")
        _reject(q, keep, nan, "not_a_number")
        with np.errstate(invalid="ignore"):
            _reject(q, keep, time < CLOCK_SET, "clock_unset")
            _reject(q, keep, time > horizon, "future_timestamp")
            keep &= (time >= ds.start) & (time < ds.end)
            for reason, bad in own():
                _reject(q, keep, bad, reason)
        return keep

    # --- each record on its own
    o_hour = _col(obs, "hour", np.int64)
    o_s = _col(obs, "observed_s", np.float64)
    o_keep = checked(o_unit, o_hour, ~np.isfinite(o_s),
                     lambda: [("absurd_observed", o_s <= 0)])

    n = len(eps)
    e_start = _col(eps, "start", np.float64)
    e_dur = _col(eps, "duration_s", np.float64)
    e_type = np.fromiter(map(type_ix.get, map(_TYPE, eps), repeat(-1)), np.int64, n)
    e_cause = np.fromiter(map(cause_ix.get, map(_CAUSE, eps), repeat(-1)), np.int64, n)
    valid = np.zeros((len(TYPES), len(CAUSES)), dtype=bool)
    for t, cs in VALID_CAUSES.items():
        for c in cs:
            valid[type_ix[t], cause_ix[c]] = True
    e_keep = checked(e_unit, e_start, ~np.isfinite(e_start) | ~np.isfinite(e_dur), lambda: [
        ("unknown_type", e_type < 0),
        ("unknown_cause", (e_cause < 0) | ~valid[np.maximum(e_type, 0), np.maximum(e_cause, 0)]),
        ("negative_duration", e_dur < 0),
        ("zero_duration", e_dur == 0),
        ("absurd_duration", e_dur > MAX_EPISODE_S)])

    p_day = _col(pds, "day", np.int64)
    # A figure the record does not have (None: the loss of a day, its extremes) is NaN in its
    # column; a NaN or infinite value the record has is not a number.
    (p50, p50_none), (p95, p95_none), (loss, loss_none), (lo, lo_none), (hi, hi_none) = (
        _figures(pds, a) for a in ("rtt_p50_ms", "rtt_p95_ms", "loss_pct", "rtt_min_ms", "rtt_max_ms"))
    rounds = _col(pds, "rounds", np.int64)
    p_keep = checked(p_unit, p_day, (~np.isfinite(p50) & ~p50_none) | (~np.isfinite(p95) & ~p95_none)
                     | (~np.isfinite(loss) & ~loss_none) | (~np.isfinite(lo) & ~lo_none)
                     | (~np.isfinite(hi) & ~hi_none), lambda: [
        ("missing_value", p50_none | p95_none),      # a day of latency without its latency
        # The day's median hides one absurd round; its minimum and maximum do not.
        ("absurd_rtt", (np.fmin(p50, lo) < 0) | (np.fmax(p95, hi) > MAX_RTT_MS)),
        ("absurd_loss", (loss < 0) | (loss > 100))])

    s_time = _col(sps, "time", np.float64)
    s_down, s_down_none = _figures(sps, "download_bps")
    s_up, s_up_none = _figures(sps, "upload_bps")
    s_keep = checked(s_unit, s_time, ~np.isfinite(s_time) | (~np.isfinite(s_down) & ~s_down_none)
                     | (~np.isfinite(s_up) & ~s_up_none), lambda: [
        ("missing_value", s_down_none),
        ("absurd_speed", (s_down <= 0) | (s_down > MAX_SPEED_BPS) | (s_up <= 0)
         | (s_up > MAX_SPEED_BPS))])

    # --- repairs, on the records that passed
    unit_cols = [o_unit, e_unit, p_unit, s_unit]
    keeps = [o_keep, e_keep, p_keep, s_keep]
    times = [o_hour, e_start, p_day, s_time]
    unit_cols = _retag(q, known, units, uid, unit_cols, keeps, times)
    unit_cols = _resite(q, units, uid, unit_cols, keeps, times)

    # Canonical order (the units that kept a record, sorted; records by unit and time), so the
    # figures and the bootstrap's draws never depend on the order the source returned rows in.
    used = np.zeros(len(units), dtype=bool)
    for uc, k in zip(unit_cols, keeps):
        used[uc[k]] = True
    order = sorted(np.flatnonzero(used).tolist(), key=units.__getitem__)
    remap = np.full(len(units), -1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    units = [units[i] for i in order]
    o_unit, e_unit, p_unit, s_unit = (remap[uc[k]] for uc, k in zip(unit_cols, keeps))
    # Units are sorted by agent first: an agent's index rises with its units'.
    agent_ids = [u.agent for u in units]
    unit_agent = np.cumsum([i > 0 and a != agent_ids[i - 1] for i, a in enumerate(agent_ids)],
                           dtype=np.int64) if units else np.zeros(0, dtype=np.int64)

    # --- observed hours
    o_hour, o_s = o_hour[o_keep], o_s[o_keep]
    if o_s.size:
        # Records of the same unit and hour are summed first: an id used twice shows here.
        key = o_unit * (1 << 32) + (o_hour // 3600)
        if np.any(key[1:] <= key[:-1]):   # not already one row per unit and hour, in order
            uk, inv = np.unique(key, return_inverse=True)
            if uk.size < key.size:
                o_s = np.bincount(inv.reshape(-1), weights=o_s)
                o_unit = uk >> 32
                o_hour = (uk & ((1 << 32) - 1)) * 3600
        over = o_s > MAX_INTERVAL_S
        if over.any():
            q.clipped["observed_clipped"] += int(over.sum())
            o_s = np.minimum(o_s, MAX_INTERVAL_S)
    q.accepted["obs_hours"] += int(o_s.size)

    # --- episodes
    e_type, e_cause, e_start, e_dur = (a[e_keep] for a in (e_type, e_cause, e_start, e_dur))
    e_unit, e_type, e_cause, e_start, e_dur = _flood(
        q, "flood_episodes", MAX_EPISODES_PER_DAY, unit_agent[e_unit] * 2 + e_type, e_start,
        e_unit, e_type, e_cause, e_start, e_dur)
    # Nothing after the window's end, or after "now", can have been measured.
    stop = min(ds.end, now)
    # Host-down time is watched time, taken before any merge: a host_down merged into the
    # battery episode before it stays watched time (docs/collector.md, observed time).
    hd = (e_type == POWER) & (e_cause == HOST_DOWN)
    o_unit, o_hour, o_s, o_pw = _power_watched(o_unit, o_hour, o_s, e_unit[hd], e_start[hd],
                                               np.minimum(e_start[hd] + e_dur[hd], stop))
    e_unit, e_type, e_cause, e_start, e_dur = _overlaps(q, unit_agent, e_unit, e_type, e_cause,
                                                        e_start, e_dur)
    e_whole = e_dur
    late = e_start + e_dur > stop
    if late.any():
        q.clipped["window_clipped"] += int(late.sum())
        e_dur = np.where(late, stop - e_start, e_dur)
        # One that begins only at or after the end (clipped to start where an earlier outage
        # ended, or dated within the skew allowed after "now") has no second in this window:
        # counted as window_clipped only, neither an interruption nor an outage.
        gone = e_dur <= 0
        if gone.any():
            e_unit, e_type, e_cause, e_start, e_dur, e_whole = (
                a[~gone] for a in (e_unit, e_type, e_cause, e_start, e_dur, e_whole))
    q.accepted["episodes"] += int(e_dur.size)

    # --- daily latency
    p_day, p50, p95, loss, rounds = (a[p_keep] for a in (p_day, p50, p95, loss, rounds))
    q.accepted["ping_days"] += int(p_unit.size)

    # --- speed tests
    s_time, s_down, s_up = (a[s_keep] for a in (s_time, s_down, s_up))
    s_unit, s_time, s_down, s_up = _flood(q, "flood_speed_tests", MAX_TESTS_PER_DAY,
                                          unit_agent[s_unit], s_time, s_unit, s_time, s_down, s_up)
    q.accepted["speed_tests"] += int(s_unit.size)

    def canon(unit, *others):
        k = np.lexsort(tuple(reversed((unit,) + others)))
        return (unit[k],) + tuple(a[k] for a in others)

    # Episodes come out of _overlaps sorted by agent, type and start, and observed hours out of
    # _power_watched by unit and hour; the rest is sorted here.
    p_unit, p_day, p50, p95, loss, rounds = canon(p_unit, p_day, p50, p95, loss, rounds)
    s_unit, s_time, s_down, s_up = canon(s_unit, s_time, s_down, s_up)
    cols = Columns(ds.start, ds.end, units, o_unit, o_hour, o_s, o_pw, e_unit, e_type, e_cause,
                   e_start, e_dur, e_whole, p_unit, p_day, p50, p95, loss, rounds, s_unit, s_time,
                   s_down, s_up)
    return cols, q


def hour_pieces(start: np.ndarray, end: np.ndarray):
    """Split intervals at UTC hour boundaries: (interval index, hour start, seconds in it), in
    the order of the intervals, at least one piece each (of 0 s for an empty interval)."""
    if start.size == 0:
        z = np.zeros(0)
        return z.astype(np.int64), z, z
    h0 = np.floor(start / 3600).astype(np.int64)
    h1 = np.maximum(np.ceil(end / 3600).astype(np.int64) - 1, h0)
    n = h1 - h0 + 1
    if n.max() == 1:   # the usual case: each interval inside one hour
        return np.arange(start.size), h0 * 3600.0, np.maximum(end - start, 0.0)
    rep = np.repeat(np.arange(start.size), n)
    k = np.arange(rep.size) - np.repeat(np.cumsum(n) - n, n)
    hs = (h0[rep] + k) * 3600.0
    secs = np.minimum(end[rep], hs + 3600.0) - np.maximum(start[rep], hs)
    return rep, hs, np.maximum(secs, 0.0)


def _running_end(g: np.ndarray, s: np.ndarray, e: np.ndarray):
    """For intervals [s, e) sorted by group ``g`` and start: the latest end among the earlier
    ones of the same group (-inf for a group's first) and the latest end up to each. Each group
    is lifted onto a range of its own, so one accumulate never crosses groups; the lift only
    finds which interval holds the latest end, whose own end is then given exactly."""
    t0 = float(s.min())
    first = np.r_[True, g[1:] != g[:-1]]
    re = e - t0
    lifted = re + (np.cumsum(first) - 1) * (float(re.max()) + 1.0)
    top = np.maximum.accumulate(lifted)
    holder = np.maximum.accumulate(np.where(lifted >= top, np.arange(g.size), 0))
    run = e[holder]
    prev = np.r_[-np.inf, run[:-1]]
    prev[first] = -np.inf
    return prev, run


def _power_watched(o_unit, o_hour, o_s, h_unit, h_start, h_end):
    """Observed hours (unit, hour, round seconds; unique per unit and hour) with the host-down
    intervals [h_start, h_end) of each unit: (unit, hour, round time, power-watched time), one
    row per unit and hour that has either, sorted by unit and hour. Power-watched time = round
    time + the seconds of the hour covered by the union of the unit's host-down intervals, at
    most 3,600 s."""
    o_key = o_unit * (1 << 32) + o_hour // 3600
    if np.any(o_key[1:] <= o_key[:-1]):   # unique already (summed): only the order to mend
        k = np.argsort(o_key, kind="stable")
        o_unit, o_hour, o_s, o_key = o_unit[k], o_hour[k], o_s[k], o_key[k]
    ok = h_end > h_start
    h_unit, h_start, h_end = h_unit[ok], h_start[ok], h_end[ok]
    if h_unit.size == 0:
        return o_unit, o_hour, o_s, o_s.copy()
    if np.any((h_unit[1:] < h_unit[:-1]) | ((h_unit[1:] == h_unit[:-1]) & (h_start[1:] < h_start[:-1]))):
        order = np.lexsort((h_start, h_unit))
        h_unit, h_start, h_end = h_unit[order], h_start[order], h_end[order]
    prev, run = _running_end(h_unit, h_start, h_end)
    head = h_start > prev
    heads = np.flatnonzero(head)
    u_unit, u_start = h_unit[heads], h_start[heads]
    u_end = run[np.r_[heads[1:] - 1, head.size - 1]]
    rep, hs, secs = hour_pieces(u_start, u_end)
    h_key = u_unit[rep] * (1 << 32) + (hs // 3600).astype(np.int64)
    # Hours with host-down time but no round join the rows, in key order.
    at = np.minimum(np.searchsorted(o_key, h_key), max(o_key.size - 1, 0))
    new = (o_key[at] != h_key) if o_key.size else np.ones(h_key.size, dtype=bool)
    if new.any():
        extra = np.unique(h_key[new])
        where = np.searchsorted(o_key, extra)
        o_key = np.insert(o_key, where, extra)
        o_s = np.insert(o_s, where, 0.0)
        at = np.searchsorted(o_key, h_key)
    down = np.bincount(at, weights=secs, minlength=o_key.size)
    return (o_key >> 32, (o_key & ((1 << 32) - 1)) * 3600, o_s,
            np.minimum(o_s + down, MAX_INTERVAL_S))


def _latest_by_agent(units: list[Unit], unit_cols, keeps, times, gives: np.ndarray,
                     value) -> dict[str, str]:
    """Per agent, ``value(unit)`` of its latest kept records among the units that ``gives``
    (by the records' own time: hour, episode start, day, test time; on equal times the value
    sorting first, so the source's order never decides)."""
    latest = np.full(len(units), -np.inf)
    for uc, k, tc in zip(unit_cols, keeps, times):
        if uc.size:
            m = k & gives[uc]
            if m.any():
                np.fmax.at(latest, uc[m], np.asarray(tc, dtype=np.float64)[m])
    best: dict[str, tuple[float, str]] = {}
    for i in np.flatnonzero(latest > -np.inf).tolist():
        u, v = units[i], value(units[i])
        cur = best.get(u.agent)
        if cur is None or latest[i] > cur[0] or (latest[i] == cur[0] and v < cur[1]):
            best[u.agent] = (float(latest[i]), v)
    return {a: v for a, (_, v) in best.items()}


def _repaired(q: Quality, reason: str, units: list[Unit], uid, unit_cols, keeps,
              lacks: np.ndarray, fixed: dict[int, Unit]) -> list[np.ndarray]:
    """The unit columns with every unit in ``fixed`` (index -> repaired unit) replaced, each
    kept record of one counted once as ``reason``; ``lacks`` marks the units needing it."""
    remap = np.arange(len(units), dtype=np.int64)
    done = np.zeros(len(units), dtype=bool)
    for i, u in fixed.items():
        remap[i] = uid(u)
        done[i] = True
    out = []
    for uc, k in zip(unit_cols, keeps):
        if uc.size and lacks.any():
            n = int((k & done[uc]).sum())
            if n:
                q.clipped[reason] += n
            uc = remap[uc]
        out.append(uc)
    return out


def _retag(q: Quality, known: set, units: list[Unit], uid, unit_cols, keeps, times):
    """Records whose unit has no valid region take their agent's region, counted ``retagged``.

    An agent's region is the region of its latest kept records that have a valid one
    (:func:`_latest_by_agent`). Rows written before the region was set (no tag) or with a
    code later corrected (PK-XX, then PK-PB) are the agent's, not noise. A record with a valid
    region is never changed: an agent that moved from one region to another counts in each.
    Records of an agent with no valid region in any kept record are rejected (cleared in
    ``keeps``) as ``unknown_region``, their codes counted."""
    bad = np.array([u.region not in known for u in units], dtype=bool)
    if not bad.any():
        return unit_cols
    best = _latest_by_agent(units, unit_cols, keeps, times, ~bad, attrgetter("region"))
    fixed = {i: replace(units[i], region=best[units[i].agent])
             for i in np.flatnonzero(bad).tolist() if units[i].agent in best}
    lost = bad.copy()
    lost[list(fixed)] = False
    for uc, k in zip(unit_cols, keeps):
        if uc.size:
            hit = k & lost[uc]
            if hit.any():
                per_unit = np.bincount(uc[hit], minlength=len(units))
                for u in np.flatnonzero(per_unit).tolist():
                    q.unknown_regions[units[u].region or "(none)"] += int(per_unit[u])
                _reject(q, k, hit, "unknown_region")
    return _repaired(q, "retagged", units, uid, unit_cols, keeps, bad, fixed)


def _resite(q: Quality, units: list[Unit], uid, unit_cols, keeps, times):
    """Records without a ``site`` tag (written before the agent was upgraded) from an agent
    whose kept records have one take the site of its latest such records, counted
    ``site_retagged``: otherwise an upgraded agent would be two lines, its old self and its
    site. An agent with no site tag at all is its own site (:func:`by_site`)."""
    has = np.array([bool(u.site) for u in units], dtype=bool)
    if has.all() or not has.any():
        return unit_cols
    best = _latest_by_agent(units, unit_cols, keeps, times, has, attrgetter("site"))
    fixed = {i: replace(units[i], site=best[units[i].agent])
             for i in np.flatnonzero(~has).tolist() if units[i].agent in best}
    return _repaired(q, "site_retagged", units, uid, unit_cols, keeps, ~has, fixed)


def _site_unit(u: Unit) -> Unit:
    site = u.site or u.agent
    return Unit(site, u.region, u.isp, u.city, u.access, site)


def by_site(cols: Columns, q: Quality) -> Columns:
    """The checked columns with each unit a line (a site) instead of an agent: one line, one
    vote, whatever the number of agents behind its router.

    * a site's unit has the site as its ``agent`` and the agents' tags (agents of one site with
      different tags make one unit per tag set, each in its cell);
    * observed time of a site in an hour = the most any of its agents watched in it (the union
      of their watching, exact when they watch at the same time, a lower bound otherwise), for
      round time and power-watched time each on its own;
    * episodes of one type of a site's agents that overlap are one (the union of the
      intervals, the cause of the first), counted ``site_merged``;
    * then outage time only where the line was watched (:func:`_watched_only`);
    * daily latency and speed tests are kept per record: a site's median is over its agents'
      days and tests together.

    Records without a ``site`` tag took the site of their agent's latest records that have one
    in :func:`clean` (``site_retagged``); an agent with no site tag at all is its own site, so
    data of older agents gives the same figures as before."""
    agents = sorted({u.agent for u in cols.units})
    a_ix = {a: i for i, a in enumerate(agents)}
    sus = sorted({_site_unit(u) for u in cols.units})
    s_ix = {u: i for i, u in enumerate(sus)}
    to_site = np.array([s_ix[_site_unit(u)] for u in cols.units], dtype=np.int64)
    to_agent = np.array([a_ix[u.agent] for u in cols.units], dtype=np.int64)
    if not cols.units:
        to_site = to_agent = np.zeros(0, dtype=np.int64)
    members: list[set] = [set() for _ in sus]
    for unit, site in zip(cols.units, to_site.tolist()):
        members[site].add(a_ix[unit.agent])

    def remap(a: np.ndarray, table: np.ndarray) -> np.ndarray:
        return table[a] if a.size else a.astype(np.int64)

    o_unit, o_hour = remap(cols.obs_unit, to_site), cols.obs_hour
    o_s, o_pw = cols.obs_s, cols.obs_pw
    shared = np.array([len(m) > 1 for m in members], dtype=bool)
    watchers = None
    if o_unit.size and shared.any():
        # Which agents of a shared line watched when (hours, host-down time included), for the
        # cells' agent counts.
        watchers = (o_unit, remap(cols.obs_unit, to_agent), o_hour.astype(np.float64))
    if o_unit.size:
        key = o_unit * (1 << 32) + (o_hour // 3600)
        if np.any(key[1:] <= key[:-1]):
            uk, inv = np.unique(key, return_inverse=True)
            inv = inv.reshape(-1)
            top_s, top_pw = np.zeros(uk.size), np.zeros(uk.size)
            np.maximum.at(top_s, inv, o_s)
            np.maximum.at(top_pw, inv, o_pw)
            o_unit, o_hour, o_s, o_pw = uk >> 32, (uk & ((1 << 32) - 1)) * 3600, top_s, top_pw
    e_unit = remap(cols.ep_unit, to_site)
    e_agent = remap(cols.ep_unit, to_agent)
    e_type, e_cause, e_start = cols.ep_type, cols.ep_cause, cols.ep_start
    e_dur, e_whole = cols.ep_dur, cols.ep_whole
    merged: dict[int, frozenset] = {}
    if e_unit.size and shared.any():
        keep, e_dur, e_whole, heads = _merge_site_episodes(
            np.nonzero(shared[e_unit])[0], e_unit, e_type, e_start, e_dur, e_whole, e_agent,
            e_cause)
        absorbed = int((~keep).sum())
        if absorbed:
            q.clipped["site_merged"] += absorbed
            new_ix = np.cumsum(keep) - 1
            merged = {int(new_ix[h]): a for h, a in heads.items()}
            e_unit, e_agent, e_type, e_cause, e_start, e_dur, e_whole = (
                a[keep] for a in (e_unit, e_agent, e_type, e_cause, e_start, e_dur, e_whole))
    cols = Columns(cols.start, cols.end, sus, o_unit, o_hour, o_s, o_pw, e_unit, e_type, e_cause,
                   e_start, e_dur, e_whole, remap(cols.pd_unit, to_site), cols.pd_day,
                   cols.pd_p50, cols.pd_p95, cols.pd_loss, cols.pd_rounds,
                   remap(cols.sp_unit, to_site), cols.sp_time, cols.sp_down, cols.sp_up,
                   agents=agents, unit_agents=[frozenset(m) for m in members], ep_agent=e_agent,
                   ep_merged=merged, pd_agent=remap(cols.pd_unit, to_agent),
                   sp_agent=remap(cols.sp_unit, to_agent), watchers=watchers)
    return _watched_only(cols, q)


def _watched_only(cols: Columns, q: Quality) -> Columns:
    """Outage time only where the line was watched (docs/collector.md, observed time): each
    episode split at UTC hours; in each hour the seconds of a line's episodes of one type are at
    most its watched time there (round time for connectivity, power-watched time for power),
    each episode's seconds scaled down in proportion when they are more (the episode counted
    once as ``unwatched_clipped``, when it lost more than a millisecond); an episode left with
    no second is rejected as ``unwatched``. Sets ``ep_secs`` and the pieces ``pc_*``."""
    start, dur = cols.ep_start, cols.ep_dur
    rep, hs, secs = hour_pieces(start, start + dur)
    scale = np.ones(secs.size)
    if rep.size:
        piece_f = _watched_share(cols, rep, (hs // 3600).astype(np.int64), secs)
        if piece_f is not None:
            scale = piece_f
    if scale.size and scale.min() < 1.0:
        kept_s = secs * scale
        first_piece = np.flatnonzero(np.r_[True, rep[1:] != rep[:-1]])
        ep_secs = np.add.reduceat(kept_s, first_piece)
        lost = np.add.reduceat(secs - kept_s, first_piece)
    else:   # the usual case: everything watched, each episode counts its seconds in the window
        kept_s, ep_secs, lost = secs, dur.copy(), np.zeros(dur.size)
    gone = ep_secs <= 0
    clipped = int(((lost > 1e-3) & ~gone).sum())
    if clipped:
        q.clipped["unwatched_clipped"] += clipped
    if gone.any():
        n = int(gone.sum())
        q.rejected["unwatched"] += n
        q.accepted["episodes"] -= n
        keep = ~gone
        new_ix = np.cumsum(keep) - 1
        cols.ep_merged = {int(new_ix[k]): v for k, v in (cols.ep_merged or {}).items() if keep[k]}
        for name in ("ep_unit", "ep_type", "ep_cause", "ep_start", "ep_dur", "ep_whole", "ep_agent"):
            a = getattr(cols, name)
            if a is not None:
                setattr(cols, name, a[keep])
        ep_secs = ep_secs[keep]
        k = keep[rep]
        rep, hs, kept_s, scale = new_ix[rep[k]], hs[k], kept_s[k], scale[k]
    cols.ep_secs, cols.pc_ep, cols.pc_hour, cols.pc_s, cols.pc_scale = ep_secs, rep, hs, kept_s, scale
    return cols


# A dense table of (line, type, hour) cells costs 8 bytes each: up to this many, no sorting.
_DENSE_CELLS = 4_000_000


def _watched_share(cols: Columns, rep: np.ndarray, hour: np.ndarray, secs: np.ndarray):
    """For the pieces (episode ``rep``, UTC ``hour`` index, seconds) of the line episodes in
    ``cols``: the share of each piece's seconds that is kept, or None when all are (in each
    line, type and hour, the watched time over the pieces' total, when that is more)."""
    o_h = cols.obs_hour // 3600
    h0 = int(min(hour.min(), o_h.min())) if o_h.size else int(hour.min())
    H = int(max(hour.max(), o_h.max()) if o_h.size else hour.max()) - h0 + 1
    line = cols.ep_unit[rep]
    cell = (line * 2 + cols.ep_type[rep]) * H + (hour - h0)
    o_cell = cols.obs_unit * 2 * H + (o_h - h0)
    n_cells = 2 * len(cols.units) * H
    if n_cells <= _DENSE_CELLS:
        total = np.bincount(cell, weights=secs, minlength=n_cells)
        watched = np.zeros(n_cells)
        watched[o_cell + POWER * H] = cols.obs_pw
        watched[o_cell + (1 - POWER) * H] = cols.obs_s
        over = total > watched
        if not over.any():
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(over, watched / total, 1.0)[cell]
    # Many lines over a long window: the cells that have pieces, found by sorting.
    cells, inv = np.unique(cell, return_inverse=True)
    inv = inv.reshape(-1)
    total = np.bincount(inv, weights=secs, minlength=cells.size)
    power = (cells // H) % 2 == POWER
    base = cells - np.where(power, POWER, 1 - POWER) * H
    i = np.minimum(np.searchsorted(o_cell, base), max(o_cell.size - 1, 0))
    found = (o_cell[i] == base) if o_cell.size else np.zeros(cells.size, dtype=bool)
    watched = np.zeros(cells.size)
    if o_cell.size:
        watched = np.where(found, np.where(power, cols.obs_pw[i], cols.obs_s[i]), 0.0)
    over = total > watched
    if not over.any():
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(over, watched / total, 1.0)[inv]


def _merge_site_episodes(idx, unit, typ, start, dur, whole, agent, cause):
    """Union of the intervals of the episodes ``idx`` per (unit, type): (which episodes stay,
    their durations and whole durations, and for each episode that absorbed others of other
    agents, its agents). Taken in order of start (equal starts: the longer whole duration
    first, then the cause sorting first in CAUSES), an episode starting before the latest end
    so far in its group (by more than a microsecond: overlapping, not touching) joins the
    group's current episode; the first of each run keeps its start and cause, and the latest
    end of the run's intervals (and of their whole durations). One agent's own episodes never
    overlap here (an outage clipped to begin at the previous one's end touches it), so they
    stay apart, as they do for an agent alone."""
    keep = np.ones(unit.size, dtype=bool)
    if idx.size < 2:
        return keep, dur, whole, {}
    dur, whole = dur.copy(), whole.copy()
    idx = idx[np.lexsort((cause[idx], -whole[idx], start[idx], typ[idx], unit[idx]))]
    g = unit[idx] * 2 + typ[idx]
    s = start[idx]
    prev, _ = _running_end(g, s, s + dur[idx])
    head = s >= prev - 1e-6
    if head.all():
        return keep, dur, whole, {}
    cluster = np.cumsum(head) - 1
    starts = np.flatnonzero(head)
    heads_ix = idx[starts]
    dur[heads_ix] = np.maximum.reduceat(s + dur[idx], starts) - s[starts]
    whole[heads_ix] = np.maximum.reduceat(s + whole[idx], starts) - s[starts]
    keep[idx[~head]] = False
    sizes = np.bincount(cluster)
    heads = {}
    for c in np.flatnonzero(sizes > 1).tolist():
        who = frozenset(agent[idx[starts[c]:starts[c] + sizes[c]]].tolist())
        if len(who) > 1:
            heads[int(heads_ix[c])] = who
    return keep, dur, whole, heads


def _overlaps(q: Quality, unit_agent, unit, typ, cause, start, dur):
    """Connectivity episodes of one agent never overlap (the agent's detector guarantees it), so
    an overlap is bad input: a later episode is clipped to start where the earlier one ended, and
    one wholly inside an earlier one is dropped.

    Power episodes of one agent may belong to one cut: two sensors saw it (a laptop charged from a
    watched UPS: they overlap or touch), or a battery rode it out until flat and the host went
    down (host_down, starting within a round interval of the battery's last reading). Those are
    one interruption (:func:`kit.definitions.joins_previous_cut`): merged into the first (its
    cause kept; of two starting at the same instant the longer is the first, then the cause
    sorting first in CAUSES), counted as ``power_merged``.

    Both rules take an agent's episodes together (``unit_agent``: each unit's agent), whatever
    tags each was written with: an agent whose ISP tag changed is still one detector. A kept or
    clipped episode keeps its own unit (its cell)."""
    group = unit_agent[unit] * 2 + typ
    if start.size < 2:
        return unit, typ, cause, start, dur
    order = np.lexsort((start, group))
    g, st = group[order], start[order]
    if np.any((g[1:] == g[:-1]) & (st[1:] == st[:-1])):
        # Equal starts: the longest first (the rest fall inside it); the cause breaks full ties.
        order = np.lexsort((cause, -dur, start, group))
    unit, typ, cause, start, dur, group = (a[order] for a in (unit, typ, cause, start, dur, group))
    end = start + dur
    # Running maximum of the previous episodes' ends within each group, exact: in integer
    # microseconds (milliseconds for very long windows) from the earliest start, each group
    # lifted onto a range of its own, so one accumulate never crosses groups.
    t0 = float(start.min())
    scale = 1e6
    while True:
        s_us = np.round((start - t0) * scale).astype(np.int64)
        e_us = np.round((end - t0) * scale).astype(np.int64)
        bits = int(e_us.max()).bit_length() + 1
        if bits + int(group.max()).bit_length() < 62 or scale < 1:
            break
        scale /= 1000
    lift = group.astype(np.int64) << bits
    lifted = np.maximum(e_us, s_us) + lift
    top = np.maximum.accumulate(lifted)
    run = top - lift
    # Which episode holds each running maximum, so that a clipped start or a merged end is that
    # episode's own end, exactly, not one rounded through microseconds.
    holder = np.maximum.accumulate(np.where(lifted >= top, np.arange(start.size), 0))
    prev = np.empty_like(run)
    prev[0] = -1
    prev[1:] = run[:-1]
    first = np.ones(start.size, dtype=bool)
    first[1:] = group[1:] != group[:-1]
    prev[first] = np.iinfo(np.int64).min
    # The rule of kit.definitions.joins_previous_cut, vectorised: a host_down joins late when it
    # starts within POWER_JOIN_S after the latest end of the earlier episodes of its agent that
    # are not host_down (-1: none; ends are >= 0 from t0).
    power = typ == POWER
    carried = np.maximum.accumulate(np.where(cause != HOST_DOWN, e_us, -1) + lift) - lift
    carried_prev = np.empty_like(carried)
    carried_prev[0] = -1
    carried_prev[1:] = carried[:-1]
    carried_prev[first] = -1
    late_host = ((cause == HOST_DOWN) & (carried_prev >= 0)
                 & (s_us <= carried_prev + int(round(POWER_JOIN_S * scale))))
    joined = power & ((s_us <= prev) | late_host)
    if joined.any():
        # A run of joined episodes ends where the running maximum stands at its last member.
        head = ~joined
        cluster = np.cumsum(head) - 1
        last = np.flatnonzero(np.r_[cluster[1:] != cluster[:-1], True])
        grown = head & (np.bincount(cluster)[cluster] > 1)
        end = np.where(grown, end[holder[last]][cluster], end)
        dur = np.where(grown, end - start, dur)
        q.clipped["power_merged"] += int(joined.sum())
    inside = ~power & (e_us <= prev)
    clip = ~power & ~inside & (s_us < prev)
    if inside.any():
        q.rejected["overlap_dropped"] += int(inside.sum())
    if clip.any():
        q.clipped["overlap_clipped"] += int(clip.sum())
        new_start = np.where(clip, end[np.r_[0, holder[:-1]]], start)
        dur = end - new_start
        start = new_start
    k = ~inside & ~joined
    return unit[k], typ[k], cause[k], start[k], dur[k]


def _flood(q: Quality, reason: str, limit: int, group, time, *arrays):
    """Keep at most ``limit`` records per group and UTC day (the first ones); count the rest."""
    if time.size == 0:
        return arrays
    day = np.floor(time / 86400.0).astype(np.int64)
    key = group * 1_000_000 + day
    if np.unique(key, return_counts=True)[1].max() <= limit:
        return arrays  # the usual case: nobody floods, no sorting needed
    order = np.lexsort((time, key))
    sk = key[order]
    first = np.r_[0, np.nonzero(sk[1:] != sk[:-1])[0] + 1]
    sizes = np.diff(np.r_[first, sk.size])
    rank = np.arange(sk.size) - np.repeat(first, sizes)
    keep = np.zeros(time.size, dtype=bool)
    keep[order[rank < limit]] = True
    q.clipped[reason] += int((~keep).sum())
    return tuple(a[keep] for a in arrays)
