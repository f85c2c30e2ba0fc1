"""Regional events: cuts or outages that began together on many lines of a region (pure, numpy).

Sites (lines) are counted, not agents: six agents behind one router are one line, and one cut of
that line is one episode (collector.sites.by_site merged them). Episodes of one type in one
region, sorted by start: an event begins at an episode when the episodes starting within
``event_window_s`` of it come from at least ``event_min_share`` of the sites watching in the
region in that hour (by round time for connectivity, power-watched time for power, as the
figures of each type count watching) and at least ``event_min_agents`` sites; its episodes are
then taken, and the search goes on after them. The count of episodes in each window is an upper
bound on its distinct sites, so only windows that pass it are checked one by one
(docs/collector.md, "Regional events").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from collector.columns import CAUSES, POWER, TYPES, Columns
from collector.localtime import LocalTime
from collector.settings import Settings

# Observed hours are taken this many at a time (columns of every observed hour are 170 MB for a
# quarter of 10,000 agents: only a slice's keys are made at once).
_SLICE = 1 << 18


def regional_events(cols: Columns, s: Settings, lt: LocalTime,
                    unit_site: np.ndarray) -> tuple[list[dict[str, Any]], np.ndarray, int]:
    """Regional events in ``cols`` (site columns; ``unit_site``: each unit's site index), listed
    by time; for every episode the number of its event (-1: isolated; listed or not); and how
    many events were not listed because their region had fewer than ``min_agents`` sites
    watching in their hour."""
    return _Search(cols, s, lt, unit_site).run()


def _watching(cols: Columns, unit_region: np.ndarray, unit_site: np.ndarray, R: int, h0: int,
              H: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct sites watching, per type, region and UTC hour (index from ``h0``):
    power-watched time (rounds, or host down) for power, round time for connectivity, as the
    figures of each type count it; and the agents behind them (a site's agents, for the event's
    description only: per site the most agents of one of its units).

    Observed hours are one row per unit and hour, so a unit that is its site's only one in its
    region adds one site (and its agents) to its region's hour; only the rows of sites with
    several units in one region (tag sets that changed) are told apart by site."""
    U = len(cols.units)
    A = int(unit_site.max()) + 1 if unit_site.size else 1
    n_agents = np.array([len(a) for a in cols.unit_agents or ()], dtype=np.int64)
    if n_agents.size != U:
        n_agents = np.ones(U, dtype=np.int64)
    pair = unit_region * A + unit_site
    alone = np.ones(U, dtype=bool)
    if U:
        order = np.argsort(pair, kind="stable")
        same = pair[order][1:] == pair[order][:-1]
        alone[order[1:][same]] = False
        alone[order[:-1][same]] = False
    watching = np.zeros((len(TYPES), R * H), dtype=np.int64)
    # a site of n agents adds n - 1 to its cells' agents beyond what ``watching`` counts
    more = n_agents - 1
    multi = more > 0
    any_multi, all_alone = bool(multi.any()), bool(alone.all())
    beyond = np.zeros((len(TYPES), R * H), dtype=np.int64)
    shared: list[list[np.ndarray]] = [[] for _ in TYPES]
    for a, unit, hour, o_s in cols.obs.slices(_SLICE):
        cell = unit_region[unit] * H       # each hour's cell, made once for both types
        cell += hour // 3600 - h0
        del hour
        for t in range(len(TYPES)):
            w = (cols.pw(a, a + o_s.size, o_s) if t == POWER else o_s) > 0
            u, c = unit[w], cell[w]
            if not all_alone:
                one = alone[u]
                if not one.all():
                    shared[t].append(c[~one] * A + unit_site[u[~one]])
                    shared[t].append(n_agents[u[~one]])
                    u, c = u[one], c[one]
            watching[t] += np.bincount(c, minlength=R * H)
            if any_multi:
                m = multi[u]
                beyond[t] += np.bincount(c[m], weights=more[u[m]],
                                         minlength=R * H).astype(np.int64)
    agents_watching = watching + beyond
    for t in range(len(TYPES)):
        if shared[t]:
            key = np.concatenate(shared[t][0::2])
            uk, inv = np.unique(key, return_inverse=True)
            most = np.zeros(uk.size, dtype=np.int64)
            np.maximum.at(most, inv.reshape(-1), np.concatenate(shared[t][1::2]))
            watching[t] += np.bincount(uk // A, minlength=R * H)
            agents_watching[t] += np.bincount(uk // A, weights=most,
                                              minlength=R * H).astype(np.int64)
    return watching.reshape(len(TYPES), R, H), agents_watching.reshape(len(TYPES), R, H)


class _Search:
    """One search over all types and regions; ``found`` numbers the events as they are found."""

    def __init__(self, cols: Columns, s: Settings, lt: LocalTime, unit_site: np.ndarray) -> None:
        self.cols, self.s, self.lt, self.unit_site = cols, s, lt, unit_site
        self.regions = sorted({u.region for u in cols.units})
        r_index = {r: i for i, r in enumerate(self.regions)}
        unit_region = np.array([r_index[u.region] for u in cols.units], dtype=np.int64)
        self.ep_region = unit_region[cols.ep_unit]
        self.ep_hour = (cols.ep_start // 3600).astype(np.int64)
        span = cols.obs.hour_range()
        ends = ([span] if span else []) + (
            [(int(self.ep_hour.min()), int(self.ep_hour.max()))] if self.ep_hour.size else [])
        self.h0 = min(lo for lo, _ in ends) if ends else 0
        H = max(hi for _, hi in ends) - self.h0 + 1 if ends else 1
        self.watching, self.agents_watching = _watching(cols, unit_region, unit_site,
                                                        max(len(self.regions), 1), self.h0, H)
        self.ep_event = np.full(cols.ep_start.size, -1, dtype=np.int64)
        self.events: list[dict[str, Any]] = []
        self.found = self.suppressed = 0
        self.merged = cols.ep_merged or {}
        self.ep_agent = cols.ep_agent if cols.ep_agent is not None else cols.ep_unit
        self.isps = [u.isp for u in cols.units]

    def run(self) -> tuple[list[dict[str, Any]], np.ndarray, int]:
        for t in range(len(TYPES)):
            for r in range(len(self.regions)):
                self._in_region(t, r)
        # Listed by time; ep_event keeps creation numbers, which only tell events apart.
        self.events.sort(key=lambda e: e["start"])
        return self.events, self.ep_event, self.suppressed

    def _in_region(self, t: int, r: int) -> None:
        cols, s = self.cols, self.s
        idx = np.nonzero((cols.ep_type == t) & (self.ep_region == r))[0]
        if idx.size < s.event_min_agents:
            return
        idx = idx[np.argsort(cols.ep_start[idx], kind="stable")]
        st = cols.ep_start[idx]
        reach = np.searchsorted(st, st + s.event_window_s, side="right")
        hour = self.ep_hour[idx] - self.h0
        seen_at = self.watching[t, r, hour]
        # Rounded first, so 0.1 x 30 lines asks for 3 and not 4 (3.0000000000000004).
        need = np.maximum(s.event_min_agents, np.ceil(np.round(s.event_min_share * seen_at, 9)))
        candidates = np.nonzero(reach - np.arange(st.size) >= need)[0]
        nxt = 0
        for i in candidates.tolist():
            if i < nxt:
                continue
            j = int(reach[i])
            members = idx[i:j]
            sites = set(self.unit_site[cols.ep_unit[members]].tolist())
            if len(sites) < need[i]:
                continue
            nxt = j
            # A held-back event is still one: its episodes count as regional in the cells
            # (which have a floor of their own); only its listing is held back.
            self.ep_event[members] = self.found
            self.found += 1
            seen = int(seen_at[i])
            if seen < s.min_agents:
                self.suppressed += 1
                continue
            self.events.append(self._describe(t, r, members, len(sites), seen,
                                              int(self.agents_watching[t, r, hour[i]])))

    def _describe(self, t: int, r: int, members: np.ndarray, sites: int, seen: int,
                  agents_seen: int) -> dict[str, Any]:
        cols, tname, region = self.cols, TYPES[t], self.regions[r]
        agents: set[int] = set()
        for m in members.tolist():
            agents |= self.merged.get(m) or {int(self.ep_agent[m])}
        causes = [CAUSES[c] for c in cols.ep_cause[members].tolist()]
        hit_isps = [self.isps[u] for u in cols.ep_unit[members].tolist()]
        top_isp = max(set(hit_isps), key=hit_isps.count)
        single = tname == "connectivity" and hit_isps.count(top_isp) >= 0.8 * len(hit_isps)
        return {
            "region": region, "region_name": self.s.region_names.get(region, region),
            "type": tname, "cause": max(set(causes), key=causes.count),
            # A connectivity event nearly all on one ISP reads as that ISP's failure.
            "scope": "isp" if single else "region",
            "start": self.lt.iso(float(cols.ep_start[members[0]])),
            "end": self.lt.iso(float((cols.ep_start[members] + cols.ep_dur[members]).max())),
            "agents_affected": len(agents),
            "agents_observed": agents_seen,
            "sites_affected": sites, "sites_observed": seen,
            "share": round(sites / seen, 4) if seen else None,
            "median_duration_min": float(np.median(cols.ep_dur[members]) / 60.0),
            "isps": sorted(set(hit_isps)),
        }
