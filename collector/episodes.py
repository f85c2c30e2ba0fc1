"""An agent's episodes as one detector's, and the intervals they cover (pure, numpy; used by
:mod:`collector.clean` and :mod:`collector.sites`).

* :func:`overlaps`: connectivity episodes of one agent never overlap (a later one is clipped,
  one inside another dropped); power episodes of one cut are merged into one interruption
  (:func:`kit.definitions.joins_previous_cut`, vectorised);
* :func:`flood`: at most so many records per agent and UTC day;
* :func:`power_watched`: round time plus host-down time per unit and UTC hour;
* :func:`hour_pieces` and :func:`running_end`: intervals split at UTC hours, and the latest end
  so far within groups of sorted intervals.
"""

from __future__ import annotations

import numpy as np

from collector.columns import HOST_DOWN, POWER, Hours, distinct
from kit.definitions import MAX_INTERVAL_S, POWER_JOIN_S, Quality


def hour_pieces(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def running_end(g: np.ndarray, s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def power_watched(obs: Hours, h_unit: np.ndarray, h_start: np.ndarray, h_end: np.ndarray
                  ) -> tuple[Hours, tuple[np.ndarray, np.ndarray]]:
    """Observed hours (one row per unit and hour with its round seconds, as runs) and the
    host-down intervals [h_start, h_end) of each unit: (the hours with those that have host-down
    time but no round added at 0 s, (rows, power-watched time)), the power-watched time of the
    rows (rising) of hours with host-down time: elsewhere it is the round time. Power-watched
    time = round time + the seconds of the hour covered by the union of the unit's host-down
    intervals, at most 3,600 s. (Over the runs, and no column of power-watched time: a quarter
    of 10,000 agents is 21 million hours, 170 MB a column.)"""
    ok = h_end > h_start
    h_unit, h_start, h_end = h_unit[ok], h_start[ok], h_end[ok]
    if h_unit.size == 0:
        return obs, (np.zeros(0, dtype=np.int64), np.zeros(0))
    if np.any((h_unit[1:] < h_unit[:-1]) | ((h_unit[1:] == h_unit[:-1]) & (h_start[1:] < h_start[:-1]))):
        order = np.lexsort((h_start, h_unit))
        h_unit, h_start, h_end = h_unit[order], h_start[order], h_end[order]
    prev, run = running_end(h_unit, h_start, h_end)
    head = h_start > prev
    heads = np.flatnonzero(head)
    u_unit, u_start = h_unit[heads], h_start[heads]
    u_end = run[np.r_[heads[1:] - 1, head.size - 1]]
    rep, hs, secs = hour_pieces(u_start, u_end)
    h_key = u_unit[rep].astype(np.int64) * (1 << 32) + (hs // 3600).astype(np.int64)
    # Hours with host-down time but no round join the rows, in key order.
    at = obs.rows_of(h_key)
    if np.any(at < 0):
        obs = obs.with_empty(distinct(h_key[at < 0]))
        at = obs.rows_of(h_key)
    # Only the hours with host-down time change: summed over them, not a column of all hours.
    hit, which = np.unique(at, return_inverse=True)
    pw = np.minimum(obs.round_time_at(hit) + np.bincount(which.reshape(-1), weights=secs),
                    MAX_INTERVAL_S)
    return obs, (hit, pw)


def overlaps(q: Quality, unit_agent: np.ndarray, box: list[np.ndarray]) -> tuple[np.ndarray, ...]:
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
    clipped episode keeps its own unit (its cell).

    ``box``: the episodes' columns (unit, type, cause, start, duration), taken out of it, so that
    each is let go as soon as its sorted copy replaces it (2.9 million episodes at 10,000 x 90:
    22 MB a column, and a dozen columns as long are made here)."""
    unit, typ, cause, start, dur = box
    box.clear()
    group = unit_agent[unit] * 2 + typ
    if start.size < 2:
        return unit, typ, cause, start, dur
    order = np.lexsort((start, group))
    g, st = group[order], start[order]
    if np.any((g[1:] == g[:-1]) & (st[1:] == st[:-1])):
        # Equal starts: the longest first (the rest fall inside it); the cause breaks full ties.
        order = np.lexsort((cause, -dur, start, group))
        g, st = group[order], start[order]
    group, start = g, st
    del g, st
    # one column at a time, each let go as its sorted copy replaces it
    unit = unit[order]
    typ = typ[order]
    cause = cause[order]
    dur = dur[order]
    del order
    end = start + dur
    run = _Running(start, end, group)
    del group
    power = typ == POWER
    joined = power & ((run.s_us <= run.prev) | _joins_late(run, cause))
    if joined.any():
        # A run of joined episodes ends where the running maximum stands at its last member.
        head = ~joined
        cluster = np.cumsum(head) - 1
        last = np.flatnonzero(np.r_[cluster[1:] != cluster[:-1], True])
        grown = head & (np.bincount(cluster)[cluster] > 1)
        end = np.where(grown, end[run.holder[last]][cluster], end)
        dur = np.where(grown, end - start, dur)
        q.clipped["power_merged"] += int(joined.sum())
    inside = ~power & (run.e_us <= run.prev)
    clip = ~power & ~inside & (run.s_us < run.prev)
    if inside.any():
        q.rejected["overlap_dropped"] += int(inside.sum())
    if clip.any():
        q.clipped["overlap_clipped"] += int(clip.sum())
        new_start = np.where(clip, end[np.r_[0, run.holder[:-1]]], start)
        dur = end - new_start
        start = new_start
    k = ~inside & ~joined
    return unit[k], typ[k], cause[k], start[k], dur[k]


class _Running:
    """The running maximum of the previous intervals' ends within each group, for intervals
    [start, end) sorted by group and start; exact: in integer microseconds (milliseconds for
    very long windows) from the earliest start, each group lifted onto a range of its own, so
    one accumulate never crosses groups.

    ``s_us``, ``e_us``: starts and ends in those units (``scale`` per second); ``prev``: the
    latest end among the earlier intervals of the group (the int64 minimum for a group's
    first); ``holder``: the interval that holds the running maximum up to each, so that a
    clipped start or a merged end is that interval's own end, exactly, not one rounded through
    microseconds; ``first``: where each group begins; ``lift``: each interval's group offset."""

    def __init__(self, start: np.ndarray, end: np.ndarray, group: np.ndarray) -> None:
        t0 = float(start.min())
        scale = 1e6
        while True:
            s_us = np.round((start - t0) * scale).astype(np.int64)
            e_us = np.round((end - t0) * scale).astype(np.int64)
            bits = int(e_us.max()).bit_length() + 1
            if bits + int(group.max()).bit_length() < 62 or scale < 1:
                break
            scale /= 1000
        self.s_us, self.e_us, self.scale = s_us, e_us, scale
        self.lift = lift = group.astype(np.int64) << bits
        lifted = np.maximum(e_us, s_us) + lift
        top = np.maximum.accumulate(lifted)
        run = top - lift
        self.holder = np.maximum.accumulate(np.where(lifted >= top, np.arange(start.size), 0))
        self.first = np.ones(start.size, dtype=bool)
        self.first[1:] = group[1:] != group[:-1]
        self.prev = np.empty_like(run)
        self.prev[0] = -1
        self.prev[1:] = run[:-1]
        self.prev[self.first] = np.iinfo(np.int64).min


def _joins_late(run: _Running, cause: np.ndarray) -> np.ndarray:
    """The rule of kit.definitions.joins_previous_cut for a host_down that does not overlap,
    vectorised: it joins when it starts within POWER_JOIN_S after the latest end of the earlier
    episodes of its agent that are not host_down (-1: none; ends are >= 0 from t0)."""
    carried = np.maximum.accumulate(np.where(cause != HOST_DOWN, run.e_us, -1) + run.lift) - run.lift
    carried_prev = np.empty_like(carried)
    carried_prev[0] = -1
    carried_prev[1:] = carried[:-1]
    carried_prev[run.first] = -1
    late: np.ndarray = ((cause == HOST_DOWN) & (carried_prev >= 0)
                        & (run.s_us <= carried_prev + int(round(POWER_JOIN_S * run.scale))))
    return late


def flood(q: Quality, reason: str, limit: int, group: np.ndarray, time: np.ndarray,
          *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
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
