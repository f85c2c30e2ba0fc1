"""One line, one customer: the agents of a site merged into one unit, and outage time only where
the line was watched (pure, numpy; docs/collector.md, "Who counts").
"""

from __future__ import annotations

import numpy as np

from collector.columns import POWER, Columns, Hours
from collector.episodes import hour_pieces, running_end
from kit.definitions import Quality, Unit


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
    in :func:`collector.clean.clean` (``site_retagged``); an agent with no site tag at all is
    its own site, so data of older agents gives the same figures as before."""
    agents = sorted({u.agent for u in cols.units})
    a_ix = {a: i for i, a in enumerate(agents)}
    sus = sorted({_site_unit(u) for u in cols.units})
    s_ix = {u: i for i, u in enumerate(sus)}
    to_site = np.array([s_ix[_site_unit(u)] for u in cols.units], dtype=np.int64)
    to_agent = np.array([a_ix[u.agent] for u in cols.units], dtype=np.int64)
    if not cols.units:
        to_site = to_agent = np.zeros(0, dtype=np.int64)
    members: list[set[int]] = [set() for _ in sus]
    for unit, site in zip(cols.units, to_site.tolist()):
        members[site].add(a_ix[unit.agent])
    shared = np.array([len(m) > 1 for m in members], dtype=bool)
    # each agent its own site (the usual case): the hours' unit column as it is, not a copy
    same = to_site.size == len(sus) and bool((to_site == np.arange(to_site.size)).all())
    watchers = None
    if cols.obs.n and shared.any():
        # Which agents of a shared line watched when (hours, host-down time included), for the
        # cells' agent counts (only where a line has several agents: their hours whole).
        o_unit, o_hour, _ = cols.obs.columns()
        watchers = (to_site[o_unit], to_agent[o_unit], o_hour.astype(np.float64))
        del o_unit, o_hour
    obs, pw_at, pw_v = _site_hours(cols.obs if same else cols.obs.with_units(to_site), cols, same)
    (e_unit, e_agent, e_type, e_cause, e_start, e_dur, e_whole), merged = _site_episodes(
        q, cols, _remap(cols.ep_unit, to_site), _remap(cols.ep_unit, to_agent), shared)
    cols = Columns(cols.start, cols.end, sus, obs, pw_at, pw_v, e_unit, e_type, e_cause, e_start,
                   e_dur, e_whole, _remap(cols.pd_unit, to_site), cols.pd_day,
                   cols.pd_p50, cols.pd_p95, cols.pd_loss, cols.pd_rounds,
                   _remap(cols.sp_unit, to_site), cols.sp_time, cols.sp_down, cols.sp_up,
                   agents=agents, unit_agents=[frozenset(m) for m in members], ep_agent=e_agent,
                   ep_merged=merged, pd_agent=_remap(cols.pd_unit, to_agent),
                   sp_agent=_remap(cols.sp_unit, to_agent), watchers=watchers)
    return _watched_only(cols, q)


def _remap(a: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[a]``; ``a`` itself when ``table`` maps each index to itself and ``a`` is int64
    already (the usual case, every agent its own site: no copy of each unit column)."""
    if a.dtype == np.int64 and table.size and table[-1] == table.size - 1 and bool(
            (table == np.arange(table.size)).all()):
        return a
    return table[a] if a.size else a.astype(np.int64)


def _site_hours(obs: Hours, cols: Columns, same: bool) -> tuple[Hours, np.ndarray, np.ndarray]:
    """One row per site and hour (``obs``: the agents' hours with each unit made its site's):
    the most any of its agents watched (round time and power-watched time each on its own), as
    hours and the power-watched time where it is not the round time (rows, time). With
    ``same`` (every agent its own site), or when no two agents of a site watched the same hour,
    the hours are that already (collector.clean gives one row per unit and hour, in order): as
    they are."""
    at, v = cols.obs_pw_at, cols.obs_pw_v
    if obs.n and not same and not obs.rising():
        unit, hour, o_s = obs.columns()
        key = unit * (1 << 32) + hour // 3600
        del unit, hour
        uk, inv = np.unique(key, return_inverse=True)
        inv = inv.reshape(-1)
        top_s, top_pw = np.zeros(uk.size), np.zeros(uk.size)
        np.maximum.at(top_s, inv, o_s)
        np.maximum.at(top_pw, inv, cols.pw(0, obs.n, o_s))
        at = np.flatnonzero(top_pw != top_s)
        return Hours.from_key(uk, top_s), at, top_pw[at]
    return obs, at, v


def _site_episodes(q: Quality, cols: Columns, e_unit: np.ndarray, e_agent: np.ndarray,
                   shared: np.ndarray) -> tuple[tuple[np.ndarray, ...], dict[int, frozenset[int]]]:
    """The episodes (site, agent, type, cause, start, duration, whole duration) with those of a
    shared line's agents that overlap merged (``site_merged``), and the agents of each episode
    merged from several (by its new index)."""
    eps = (e_unit, e_agent, cols.ep_type, cols.ep_cause, cols.ep_start, cols.ep_dur,
           cols.ep_whole)
    merged: dict[int, frozenset[int]] = {}
    if e_unit.size and shared.any():
        keep, e_dur, e_whole, heads = _merge_site_episodes(
            np.nonzero(shared[e_unit])[0], e_unit, cols.ep_type, cols.ep_start, cols.ep_dur,
            cols.ep_whole, e_agent, cols.ep_cause)
        absorbed = int((~keep).sum())
        if absorbed:
            q.clipped["site_merged"] += absorbed
            new_ix = np.cumsum(keep) - 1
            merged = {int(new_ix[h]): a for h, a in heads.items()}
            eps = tuple(a[keep] for a in (*eps[:5], e_dur, e_whole))
    return eps, merged


def _watched_only(cols: Columns, q: Quality) -> Columns:
    """Outage time only where the line was watched (docs/collector.md, observed time): each
    episode split at UTC hours; in each hour the seconds of a line's episodes of one type are at
    most its watched time there (round time for connectivity, power-watched time for power),
    each episode's seconds scaled down in proportion when they are more (the episode counted
    once as ``unwatched_clipped``, when it lost more than a millisecond); an episode left with
    no second is rejected as ``unwatched``. Sets ``ep_secs`` and the pieces ``pc_*``."""
    start, dur = cols.ep_start, cols.ep_dur
    rep, hs, secs = hour_pieces(start, start + dur)
    piece_f = _watched_share(cols, rep, hs, secs) if rep.size else None
    scale = np.ones(secs.size) if piece_f is None else piece_f
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
# Observed hours are taken this many at a time (expanded from their runs; beyond the dense
# table, looked up in the cells that have pieces).
_SLICE = 1 << 18


def _distinct_inverse(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(key, return_inverse=True)``: without sorting when the keys already rise (the
    pieces of episodes sorted by line, type and start, which overlap no other of their line
    and type, usually do), saving the sort's time and its three further columns as long as
    the keys."""
    if key.size and not np.any(key[1:] < key[:-1]):
        new = np.empty(key.size, dtype=bool)
        new[0] = True
        np.not_equal(key[1:], key[:-1], out=new[1:])
        inv = np.cumsum(new)
        inv -= 1
        return key[new], inv
    cells, inv = np.unique(key, return_inverse=True)
    return cells, inv.reshape(-1)


def _watched_share(cols: Columns, rep: np.ndarray, hs: np.ndarray,
                   secs: np.ndarray) -> np.ndarray | None:
    """For the pieces (episode ``rep``, UTC hour starting at ``hs``, seconds) of the line
    episodes in ``cols``: the share of each piece's seconds that is kept, or None when all are
    (in each line, type and hour, the watched time over the pieces' total, when that is more)."""
    obs = cols.obs
    first, last = int(hs.min()) // 3600, int(hs.max()) // 3600     # hour starts: whole hours
    span = obs.hour_range()
    h0 = min(first, span[0]) if span else first
    H = (max(last, span[1]) if span else last) - h0 + 1
    # (line * 2 + type) * H + hour - h0, made in place: one column as long as the pieces at once
    # (the hour indices too are made only for the moment they are added)
    cell = cols.ep_unit[rep].astype(np.int64, copy=False)
    cell *= 2
    cell += cols.ep_type[rep]
    cell *= H
    cell += (hs // 3600).astype(np.int64)
    cell -= h0
    n_cells = 2 * len(cols.units) * H
    if n_cells <= _DENSE_CELLS:
        # unit * 2H + hour - h0 (units are int32: widened before the product)
        total = np.bincount(cell, weights=secs, minlength=n_cells)
        watched = np.zeros(n_cells)
        for a, unit, hour, o_s in obs.slices(_SLICE):
            o_cell = unit * (2 * H)
            o_cell += hour // 3600 - h0
            watched[o_cell + POWER * H] = cols.pw(a, a + o_s.size, o_s)
            watched[o_cell + (1 - POWER) * H] = o_s
        over = total > watched
        if not over.any():
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            share: np.ndarray = np.where(over, watched / total, 1.0)[cell]
        return share
    # Many lines over a long window: the cells that have pieces, found by sorting, and looked
    # up in the observed hours a slice at a time (their keys rise: one row per unit and hour,
    # in that order).
    cells, inv = _distinct_inverse(cell)
    del cell
    total = np.bincount(inv, weights=secs, minlength=cells.size)
    power = (cells // H) % 2 == POWER
    base = cells - np.where(power, POWER, 1 - POWER) * H
    del cells
    # sorted in place of the cells' order (``by_base``: where each came from), so no third
    # column as long as the cells is held while the hours are looked up
    by_base = np.argsort(base, kind="stable")
    base = base[by_base]
    watched = np.zeros(base.size)
    for a, unit, hour, o_s in obs.slices(_SLICE):
        o_cell = unit * (2 * H)
        o_cell += hour // 3600 - h0
        lo = np.searchsorted(base, o_cell[0], side="left")
        hi = np.searchsorted(base, o_cell[-1], side="right")
        if lo == hi:
            continue
        i = np.minimum(np.searchsorted(o_cell, base[lo:hi]), o_cell.size - 1)
        found = o_cell[i] == base[lo:hi]
        rows = i[found]
        hit = by_base[lo:hi][found]
        watched[hit] = np.where(power[hit], cols.pw(a, a + o_s.size, o_s)[rows], o_s[rows])
    del base, by_base, power
    over = total > watched
    if not over.any():
        return None
    # the share, made in the watched column: watched / total where that is less than 1
    np.divide(watched, total, out=watched, where=over)
    watched[~over] = 1.0
    share = watched[inv]
    return share


def _merge_site_episodes(idx: np.ndarray, unit: np.ndarray, typ: np.ndarray, start: np.ndarray,
                         dur: np.ndarray, whole: np.ndarray, agent: np.ndarray, cause: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, frozenset[int]]]:
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
    prev, _ = running_end(g, s, s + dur[idx])
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


