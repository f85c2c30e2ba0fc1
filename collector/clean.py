"""Bad data in, counted rejections out: a Dataset becomes checked columns (pure, numpy).

Volunteers' agents run on machines nobody audits, so every record is checked before it reaches a
statistic, and each one that is rejected or clipped is counted by reason in :class:`Quality`,
which every output shows (the data-quality section). Nothing is dropped silently. The reasons,
as docs/collector.md defines them (the sources count some of them themselves: ``clock_unset``
and ``absurd_observed`` for rows, ``missing_agent`` and ``missing_value``, ``unreadable_store``;
:mod:`collector.stats` counts ``impossible_share``):

rejected (the record is left out):
  ``unknown_region``     the unit's region is not one of the configured codes (or is empty),
                         and the agent has no record with a valid one to take it from
  ``unknown_type``       an episode that is neither power nor connectivity
  ``unknown_cause``      an episode cause the agent never writes
  ``not_a_number``       NaN or infinite time or value
  ``negative_duration``  an episode that ends before it starts
  ``zero_duration``      an episode that ends when it starts (the agent never writes one)
  ``absurd_duration``    an episode longer than 31 days
  ``future_timestamp``   a record dated after the collection's "now" (plus 5 minutes of skew)
  ``clock_unset``        a record dated before 2000-01-01: a clock that was never set
  ``absurd_observed``    a round whose interval_s is not a number in (0, 3600] (the sources
                         leave it out of its hour's sum); here, an hour with negative time
  ``absurd_rtt``         a day of latency with a round below 0 or above 60 s (the whole day)
  ``absurd_loss``        loss outside 0..100 %
  ``absurd_speed``       a speed at or below 0, or above 10 Gbit/s (no consumer line is faster)
  ``overlap_dropped``    a connectivity episode wholly inside an earlier one of the same agent;
                         of two starting at the same instant the longer is kept, of equal length
                         the one whose cause comes first (power, lan, isp, dns, unknown)
  ``unwatched``          an episode with no second in an hour its line was watched
clipped (the record is kept, shortened, merged or repaired):
  ``retagged``           a record without a valid region (written before the agent's region was
                         set, or with a code it later corrected) takes the agent's region: the
                         region of its latest records that have a valid one
  ``site_merged``        an episode of one line seen by several of its agents (one site): merged
                         into one (:func:`by_site`; not bad data, counted so the totals add up)
  ``site_retagged``      a record without a site tag (written before the agent was upgraded)
                         takes the site of the agent's latest records that have one
  ``overlap_clipped``    a connectivity episode that began before the previous one ended starts
                         at its end
  ``power_merged``       a power episode that overlaps or touches the agent's cut before it, or
                         a host_down starting within 60 s after the end of an earlier episode
                         that is not a host_down (a battery ran flat, then the host went down):
                         merged into it, one interruption (not bad data;
                         :func:`collector.model.joins_previous_cut`)
  ``unwatched_clipped``  an episode some of whose seconds fell in hours its line was not
                         watched: in each hour a line's outage seconds of one type are at most
                         its watched time there, scaled down in proportion when they are more
  ``observed_clipped``   more than 3,600 observed seconds in one hour (an agent id used twice,
                         or rounds written twice): clipped to the hour
  ``flood_speed_tests``  more than 48 speed tests by one agent in one UTC day: the rest dropped
  ``flood_episodes``     more than 1,440 episodes of one type by one agent in one UTC day
  ``window_clipped``     an episode still going at the window's end (or at "now", when the
                         window reaches into the future) counts up to it only; its class still
                         follows its whole duration (not bad data; counted so the totals add up)

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

from collector.model import CLOCK_SET, MAX_INTERVAL_S, POWER_JOIN_S, Dataset, Quality, Unit

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
    pd_p50: np.ndarray       # NaN: not measured that day
    pd_p95: np.ndarray
    pd_loss: np.ndarray
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

    @property
    def rounds_row(self) -> np.ndarray:
        """Rows of ``obs_*`` that come from rounds (not only from host-down time)."""
        return (self.obs_s > 0) | (self.obs_pw <= 0)


def _reject(q: Quality, keep: np.ndarray, bad: np.ndarray, reason: str) -> None:
    """Count and clear the still-kept records that are ``bad``."""
    hit = keep & bad
    n = int(hit.sum())
    if n:
        q.rejected[reason] += n
        keep &= ~bad


def _nan(v) -> float:
    return np.nan if v is None else v


_UNIT, _TYPE, _CAUSE = attrgetter("unit"), attrgetter("type"), attrgetter("cause")


def _col(recs: Sequence, name: str, dtype, conv=None) -> np.ndarray:
    """One attribute of every record as an array (map and attrgetter: no Python loop)."""
    it = map(attrgetter(name), recs)
    return np.fromiter(map(conv, it) if conv else it, dtype, len(recs))


def clean(ds: Dataset, regions: Iterable[str], now: float) -> tuple[Columns, Quality]:
    """Check every record of ``ds`` against ``regions`` (the known region codes) and ``now``
    (seconds since 1970 UTC); return the kept records as columns and the counts."""
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

    def region_ok(unit_idx: np.ndarray, kind: str, keep: np.ndarray) -> None:
        bad_units = np.array([u.region not in known for u in units], dtype=bool)
        if not bad_units.any() or unit_idx.size == 0:
            return
        bad = bad_units[unit_idx]
        per_unit = np.bincount(unit_idx[keep & bad], minlength=len(units))
        for u in np.nonzero(per_unit)[0].tolist():
            q.unknown_regions[units[u].region or "(none)"] += int(per_unit[u])
        _reject(q, keep, bad, "unknown_region")

    obs, eps, pds, sps = ds.obs, ds.episodes, ds.pings, ds.speeds
    cols_u = [unit_col(recs) for recs in (obs, eps, pds, sps)]
    o_hour = _col(obs, "hour", np.int64)
    e_start = _col(eps, "start", np.float64)
    p_day = _col(pds, "day", np.int64)
    s_time = _col(sps, "time", np.float64)
    cols_u = _retag(q, known, units, uid, cols_u, (o_hour, e_start, p_day, s_time), horizon)
    # Canonical order (units sorted, records by unit and time), so the figures and the bootstrap's
    # draws never depend on the order the source returned rows in.
    order = sorted(range(len(units)), key=units.__getitem__)
    remap = np.empty(len(units), dtype=np.int64)
    remap[order] = np.arange(len(units))
    units[:] = [units[i] for i in order]
    o_unit, e_unit, p_unit, s_unit = (remap[c] if c.size else c for c in cols_u)

    # --- observed hours
    o_s = _col(obs, "observed_s", np.float64)
    keep = np.ones(len(obs), dtype=bool)
    region_ok(o_unit, "obs", keep)
    _reject(q, keep, ~np.isfinite(o_s), "not_a_number")
    _reject(q, keep, o_s < 0, "absurd_observed")
    _reject(q, keep, o_hour > horizon, "future_timestamp")
    _reject(q, keep, o_hour < CLOCK_SET, "clock_unset")
    o_unit, o_hour, o_s = o_unit[keep], o_hour[keep], o_s[keep]
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
    n = len(eps)
    e_type = np.fromiter(map(type_ix.get, map(_TYPE, eps), repeat(-1)), np.int64, n)
    e_cause = np.fromiter(map(cause_ix.get, map(_CAUSE, eps), repeat(-1)), np.int64, n)
    e_dur = _col(eps, "duration_s", np.float64)
    keep = np.ones(n, dtype=bool)
    region_ok(e_unit, "episode", keep)
    _reject(q, keep, e_type < 0, "unknown_type")
    valid = np.zeros((len(TYPES), len(CAUSES)), dtype=bool)
    for t, cs in VALID_CAUSES.items():
        for c in cs:
            valid[type_ix[t], cause_ix[c]] = True
    _reject(q, keep, (e_cause < 0) | ~valid[np.maximum(e_type, 0), np.maximum(e_cause, 0)],
            "unknown_cause")
    _reject(q, keep, ~np.isfinite(e_start) | ~np.isfinite(e_dur), "not_a_number")
    _reject(q, keep, e_dur < 0, "negative_duration")
    _reject(q, keep, e_dur == 0, "zero_duration")
    _reject(q, keep, e_dur > MAX_EPISODE_S, "absurd_duration")
    _reject(q, keep, e_start > horizon, "future_timestamp")
    _reject(q, keep, e_start < CLOCK_SET, "clock_unset")
    e_unit, e_type, e_cause, e_start, e_dur = (a[keep] for a in (e_unit, e_type, e_cause, e_start, e_dur))
    # Nothing after the window's end, or after "now", can have been measured.
    stop = min(ds.end, now)
    # Host-down time is watched time, taken before any merge: a host_down merged into the
    # battery episode before it stays watched time (docs/collector.md, observed time).
    hd = (e_type == POWER) & (e_cause == HOST_DOWN)
    o_unit, o_hour, o_s, o_pw = _power_watched(o_unit, o_hour, o_s, e_unit[hd], e_start[hd],
                                               np.minimum(e_start[hd] + e_dur[hd], stop))
    e_unit, e_type, e_cause, e_start, e_dur = _overlaps(q, e_unit, e_type, e_cause, e_start, e_dur)
    e_unit, e_type, e_cause, e_start, e_dur = _flood(
        q, "flood_episodes", MAX_EPISODES_PER_DAY, e_unit * 2 + e_type, e_start,
        e_unit, e_type, e_cause, e_start, e_dur)
    e_whole = e_dur
    late = e_start + e_dur > stop
    if late.any():
        q.clipped["window_clipped"] += int(late.sum())
        e_dur = np.where(late, np.maximum(stop - e_start, 0.0), e_dur)
    q.accepted["episodes"] += int(e_dur.size)

    # --- daily latency
    n = len(pds)
    p50, p95, loss, lo, hi = (_col(pds, a, np.float64, _nan) for a in
                              ("rtt_p50_ms", "rtt_p95_ms", "loss_pct", "rtt_min_ms", "rtt_max_ms"))
    rounds = _col(pds, "rounds", np.int64)
    keep = np.ones(n, dtype=bool)
    region_ok(p_unit, "ping", keep)
    _reject(q, keep, np.isinf(p50) | np.isinf(p95) | np.isinf(loss), "not_a_number")
    with np.errstate(invalid="ignore"):
        # The day's median hides one absurd round; its minimum and maximum do not.
        _reject(q, keep, (np.fmin(p50, lo) < 0) | (np.fmax(p95, hi) > MAX_RTT_MS), "absurd_rtt")
        _reject(q, keep, (loss < 0) | (loss > 100), "absurd_loss")
    _reject(q, keep, p_day > horizon, "future_timestamp")
    _reject(q, keep, p_day < CLOCK_SET, "clock_unset")
    p_unit, p_day, p50, p95, loss, rounds = (a[keep] for a in (p_unit, p_day, p50, p95, loss, rounds))
    q.accepted["ping_days"] += int(p_unit.size)

    # --- speed tests
    n = len(sps)
    s_down = _col(sps, "download_bps", np.float64, _nan)
    s_up = _col(sps, "upload_bps", np.float64, _nan)
    keep = np.ones(n, dtype=bool)
    region_ok(s_unit, "speed", keep)
    _reject(q, keep, ~np.isfinite(s_time) | ~np.isfinite(s_down) | np.isinf(s_up), "not_a_number")
    with np.errstate(invalid="ignore"):
        _reject(q, keep, (s_down <= 0) | (s_down > MAX_SPEED_BPS) | (s_up <= 0) | (s_up > MAX_SPEED_BPS),
                "absurd_speed")
    _reject(q, keep, s_time > horizon, "future_timestamp")
    _reject(q, keep, s_time < CLOCK_SET, "clock_unset")
    s_unit, s_time, s_down, s_up = (a[keep] for a in (s_unit, s_time, s_down, s_up))
    s_unit, s_time, s_down, s_up = _flood(q, "flood_speed_tests", MAX_TESTS_PER_DAY, s_unit, s_time,
                                          s_unit, s_time, s_down, s_up)
    q.accepted["speed_tests"] += int(s_unit.size)

    def canon(unit, *others):
        k = np.lexsort(tuple(reversed((unit,) + others)))
        return (unit[k],) + tuple(a[k] for a in others)

    # Episodes come out of _overlaps sorted by unit, type, start, and observed hours out of
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
    ones of the same group (-inf for a group's first) and the latest end up to each (floats:
    each group lifted onto a range of its own, so one accumulate never crosses groups)."""
    t0 = float(s.min())
    rs, re = s - t0, e - t0
    first = np.r_[True, g[1:] != g[:-1]]
    lift = (np.cumsum(first) - 1) * (float(re.max()) + 1.0)
    run = np.maximum.accumulate(re + lift) - lift + t0
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


def _retag(q: Quality, known: set, units: list[Unit], uid, unit_cols: list[np.ndarray],
           time_cols: tuple, horizon: float) -> list[np.ndarray]:
    """Records whose unit has no valid region take their agent's region, counted ``retagged``.

    An agent's region is the region of its latest records that have a valid one (by the time
    of the record: hour, episode start, day, test time; equal times go to the code sorting
    first). Rows written before the region was set (no tag) or with a code later corrected
    (PK-XX, then PK-PB) are the agent's, not noise. A record with a valid region is never
    changed: an agent that moved from one region to another counts in each. Units (their
    index in ``units``, made with ``uid``) with no valid region in any record stay as they are
    and are rejected later as ``unknown_region``. Records dated after ``horizon`` (rejected
    later as future) do not decide."""
    bad = np.array([u.region not in known for u in units], dtype=bool)
    if not bad.any():
        return unit_cols
    latest = np.full(len(units), -np.inf)
    for uc, tc in zip(unit_cols, time_cols):
        if uc.size:
            t = np.asarray(tc, dtype=np.float64)
            np.fmax.at(latest, uc, np.where(t <= horizon, t, -np.inf))
    best: dict[str, tuple[float, str]] = {}
    for i, u in enumerate(units):
        if bad[i] or latest[i] == -np.inf:
            continue
        cur = best.get(u.agent)
        # Latest wins; on equal times the code sorting first, so the source's order never decides.
        if cur is None or latest[i] > cur[0] or (latest[i] == cur[0] and u.region < cur[1]):
            best[u.agent] = (float(latest[i]), u.region)
    targets = {i: best[u.agent][1] for i, u in enumerate(units) if bad[i] and u.agent in best}
    if not targets:
        return unit_cols
    remap = list(range(len(units)))
    for i, region in targets.items():
        remap[i] = uid(replace(units[i], region=region))
    remap_a = np.array(remap, dtype=np.int64)
    moved = np.zeros(len(remap), dtype=bool)
    moved[list(targets)] = True
    out = []
    for uc in unit_cols:
        if uc.size:
            q.clipped["retagged"] += int(moved[uc].sum())
            uc = remap_a[uc]
        out.append(uc)
    return out


def _site_unit(u: Unit, inherited: dict[str, str]) -> Unit:
    site = u.site or inherited.get(u.agent) or u.agent
    return Unit(site, u.region, u.isp, u.city, u.access, site)


def _latest_sites(cols: Columns) -> dict[str, str]:
    """Per agent, the site of its latest records that carry a site tag (by their own time)."""
    latest = np.full(len(cols.units), -np.inf)
    r = cols.rounds_row
    for uc, tc in ((cols.obs_unit[r], cols.obs_hour[r]), (cols.ep_unit, cols.ep_start),
                   (cols.pd_unit, cols.pd_day), (cols.sp_unit, cols.sp_time)):
        if uc.size:
            np.fmax.at(latest, uc, tc.astype(np.float64))
    best: dict[str, tuple[float, str]] = {}
    for i, u in enumerate(cols.units):
        if u.site and latest[i] > -np.inf:
            cur = best.get(u.agent)
            if cur is None or (latest[i], u.site) > cur:
                best[u.agent] = (float(latest[i]), u.site)
    return {a: site for a, (_, site) in best.items()}


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

    Records without a ``site`` tag (written before the agent was upgraded) take the site of the
    agent's latest records that have one, counted ``site_retagged``: otherwise an upgraded agent
    would be two lines, its old self and its site. Agents with no site tag at all are each their
    own site, so data of older agents gives the same figures as before."""
    agents = sorted({u.agent for u in cols.units})
    a_ix = {a: i for i, a in enumerate(agents)}
    inherited = _latest_sites(cols) if any(u.site for u in cols.units) else {}
    sus = sorted({_site_unit(u, inherited) for u in cols.units})
    s_ix = {u: i for i, u in enumerate(sus)}
    to_site = np.array([s_ix[_site_unit(u, inherited)] for u in cols.units], dtype=np.int64)
    given = np.array([not u.site and u.agent in inherited for u in cols.units], dtype=bool)
    if given.any():
        q.clipped["site_retagged"] += sum(int(given[a].sum()) for a in
                                          (cols.obs_unit[cols.rounds_row], cols.ep_unit,
                                           cols.pd_unit, cols.sp_unit)
                                          if a.size)
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
            np.nonzero(shared[e_unit])[0], e_unit, e_type, e_start, e_dur, e_whole, e_agent)
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


def _merge_site_episodes(idx, unit, typ, start, dur, whole, agent):
    """Union of the intervals of the episodes ``idx`` per (unit, type): (which episodes stay,
    their durations and whole durations, and for each episode that absorbed others of other
    agents, its agents). An episode starting at or before the latest end so far in its group
    (within a microsecond) joins the group's current episode; the first of each run keeps its
    start and cause, and the latest end of the run's intervals (and of their whole durations)."""
    keep = np.ones(unit.size, dtype=bool)
    if idx.size < 2:
        return keep, dur, whole, {}
    dur, whole = dur.copy(), whole.copy()
    idx = idx[np.lexsort((start[idx], typ[idx], unit[idx]))]
    g = unit[idx] * 2 + typ[idx]
    s = start[idx]
    prev, _ = _running_end(g, s, s + dur[idx])
    head = s > prev + 1e-6
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


def _overlaps(q: Quality, unit, typ, cause, start, dur):
    """Connectivity episodes of one unit never overlap (the agent's detector guarantees it), so an
    overlap is bad input: a later episode is clipped to start where the earlier one ended, and one
    wholly inside an earlier one is dropped.

    Power episodes of one unit may belong to one cut: two sensors saw it (a laptop charged from a
    watched UPS: they overlap or touch), or a battery rode it out until flat and the host went
    down (host_down, starting within a round interval of the battery's last reading). Those are
    one interruption (:func:`collector.model.joins_previous_cut`): merged into the first (its
    cause kept; of two starting at the same instant the longer is the first, then the cause
    sorting first in CAUSES), counted as ``power_merged``."""
    group = unit * 2 + typ
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
    run = np.maximum.accumulate(np.maximum(e_us, s_us) + lift) - lift
    prev = np.empty_like(run)
    prev[0] = -1
    prev[1:] = run[:-1]
    first = np.ones(start.size, dtype=bool)
    first[1:] = group[1:] != group[:-1]
    prev[first] = np.iinfo(np.int64).min
    # The rule of collector.model.joins_previous_cut, vectorised: a host_down joins late when it
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
        end = np.where(grown, t0 + run[last][cluster] / scale, end)
        dur = np.where(grown, end - start, dur)
        q.clipped["power_merged"] += int(joined.sum())
    inside = ~power & (e_us <= prev)
    clip = ~power & ~inside & (s_us < prev)
    prev_end = t0 + prev / scale
    if inside.any():
        q.rejected["overlap_dropped"] += int(inside.sum())
    if clip.any():
        q.clipped["overlap_clipped"] += int(clip.sum())
        new_start = np.where(clip, prev_end, start)
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
