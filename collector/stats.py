"""Regional reliability statistics over a Dataset (pure: no I/O, no clock; numpy).

:func:`aggregate` turns the checked records of many agents into cells (region x ISP x period, or
whichever tags ``by`` names) with these figures, each declared once in :mod:`collector.figures`
(name, unit, meaning, interval) and defined in docs/collector.md:

* ``agents``: distinct agents observed in the cell; ``agent_hours``: their observed hours.
  Observed time (power-watched time) = the agent's probe rounds (time it was watching) plus the
  time its host was down for power, per UTC hour at most the hour (:mod:`collector.clean`). A
  machine its owner switched off is neither observed nor an outage. Outage time counts only
  where the line was watched, in the period the outage began, up to the window's end or "now".
* Power, IEEE 1366 with one agent as one customer (:mod:`collector.indices`): customers served
  N = observed agent-seconds / period seconds; sustained = longer than ``momentary_max_s``, by
  the interruption's whole recorded duration, even when only part of it is counted.
* Internet: ``internet_availability`` = 1 - connectivity outage seconds / observed round seconds;
  ``internet_outages_per_agent`` = outages / N; ``internet_outage_min_per_agent`` = minutes / N;
  and both per cause (``_power``, ``_lan``, ``_isp``, ``_dns``, ``_unknown``), N counted over
  round time only (a host that was off could not probe).
* Work hours: outage minutes that fall inside the working hours (local time, working days), per
  customer served: ``work_hours_power_min_per_agent``, ``work_hours_internet_min_per_agent``.
* Load-shedding profile: share of observed agent-time without mains power, by hour of day and by
  weekday (local time), and the 7 x 24 heat map (:func:`load_shedding`: a share above 1 is left
  empty and counted as ``impossible_share``, never clamped).
* Line quality, one agent one vote (:mod:`collector.linequality`): each agent's median (and
  95th percentile) latency to its internet targets, then the median over agents; ``loss_pct``
  the mean over agents of their mean loss while the target answered at all (outages are counted
  above, not here); speeds: each agent's median, then the median (``_p50``) or 10th percentile
  (``download_p10_bps``) over agents; ``speed_under_threshold_share`` the mean over agents of
  the share of their tests below the threshold.
* 95 % intervals ``<name>_ci``: percentile bootstrap over agents (resampling whole agents, since
  one agent's outages are not independent of each other).
* Publication floor: a cell with fewer than ``min_agents`` distinct agents is ``suppressed``:
  only its identity keys are given, no figures.
* Regional events (:mod:`collector.events`): episodes of one type starting within
  ``event_window_s`` of each other on a ``event_min_share`` or larger share of the lines (sites)
  watching in the region at that hour (round time for connectivity, power-watched time for
  power).

Quantiles are :func:`kit.definitions.quantile` ("inverted CDF": the smallest value whose
cumulative weight reaches q, the lower median for an even count), the same definition for the
figure and its bootstrap (:mod:`collector.bootstrap`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from collector import linequality
from collector.bootstrap import Bootstrap, ratio_figure
from collector.clean import clean
from collector.columns import CAUSES, TYPES, Columns, distinct, distinct_triples
from collector.events import regional_events
from collector.indices import from_sums
from collector.localtime import LocalTime, hour_of_week, period_index, periods, work_seconds_before
from collector.settings import Settings
from collector.sites import by_site
from kit.definitions import CELL_KEYS, INTERNET_CAUSES, Quality, availability
from kit.records import Dataset

POWER, CONNECTIVITY = TYPES.index("power"), TYPES.index("connectivity")
# A cell of the result: its identity and figures (collector.figures), as JSON gives them.
Cell = dict[str, Any]


_DEFAULTS = Settings()


def aggregate(ds: Dataset, settings: Settings = _DEFAULTS, by: tuple[str, ...] = ("region", "isp"),
              period: str = "all", now: float | None = None,
              source_quality: Quality | None = None) -> dict[str, Any]:
    """Cells, regional events and data quality for ``ds``. ``now`` (seconds since 1970 UTC)
    dates future records; it defaults to the window's end. ``source_quality``: what the
    source already rejected, reported with the rest. Returns the dict the JSON output,
    the report page and the write-back all use (docs/collector.md)."""
    check_by(by)
    now = ds.end if now is None else now
    cols, quality = clean(ds, settings.regions, now)
    return aggregate_checked(cols, quality, settings, by, period, now, source_quality)


def check_by(by: tuple[str, ...]) -> None:
    """Raises ValueError for a cell key that is not one of :data:`CELL_KEYS`."""
    for k in by:
        if k not in CELL_KEYS:
            raise ValueError(f"--by: unknown key {k!r}; expected some of {', '.join(CELL_KEYS)}")


def aggregate_checked(cols: Columns, quality: Quality, settings: Settings, by: tuple[str, ...],
                      period: str, now: float, source_quality: Quality | None = None
                      ) -> dict[str, Any]:
    """:func:`aggregate` after :func:`collector.clean.clean` gave ``cols`` and ``quality`` (a
    caller that lets its Dataset go before this frees the records' memory for the figures)."""
    if source_quality is not None:
        quality.merge(source_quality)  # rows the sources could not even turn into records
    return summarise(by_site(cols, quality), quality, settings, by, period, now)


def summarise(cols: Columns, quality: Quality, s: Settings, by: tuple[str, ...], period: str,
              now: float) -> dict[str, Any]:
    """The result for checked columns; per-agent columns are first made per line (by_site):
    every count of customers below is a count of sites."""
    if cols.unit_agents is None:
        cols = by_site(cols, quality)
    lt = LocalTime(s.timezone, cols.start, cols.end)
    bounds = periods(cols.start, cols.end, period, s.timezone)
    parts = _Parts(cols, quality, s, by, lt, bounds)
    cells = []
    for p, (ps, pe) in enumerate(bounds):
        for key, c in parts.cell_list:
            cell = parts.cell(p, ps, pe, key, c)
            if cell is not None:
                cells.append(cell)
    return {
        "generated_at": lt.iso(now),
        "window": {"start": lt.iso(cols.start), "end": lt.iso(cols.end)},
        "by": list(by), "period": period,
        "settings": {"min_agents": s.min_agents, "min_watch_h": s.min_watch_h,
                     "momentary_max_s": s.momentary_max_s,
                     "work_hours": s.work_hours, "work_days": ", ".join(s.work_days),
                     "timezone": s.timezone, "speed_threshold_bps": s.speed_threshold_bps,
                     "bootstrap": s.bootstrap, "confidence": s.confidence,
                     "event_window_s": s.event_window_s, "event_min_share": s.event_min_share},
        "cells": cells,
        "events": parts.events,
        "events_suppressed": parts.events_suppressed,
        "data_quality": quality.as_dict(),
    }


class _Sums:
    """What the power, internet and work-hour figures are made of: sums per period and line
    (P x U arrays), and each episode's period (-1: none) and type."""

    def __init__(self, cols: Columns, s: Settings, lt: LocalTime,
                 bounds: list[tuple[float, float]], unit_cell: np.ndarray, C: int) -> None:
        P, U = len(bounds), len(cols.units)

        def per_unit(p: np.ndarray, u: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
            ok = p >= 0
            return np.bincount(p[ok] * U + u[ok], weights=None if w is None else w[ok],
                               minlength=P * U).reshape(P, U).astype(np.float64)

        # Observed time: round time for the internet, power-watched time (rounds and host down)
        # for power, both per unit and UTC hour (collector.clean); and power-watched time per
        # cell and local hour of the week, for the load-shedding profile.
        self.net_obs, self.pw_obs, self.obs_how = _observed_sums(cols, lt, bounds, unit_cell, C)
        # Each outage in the period it began, with its seconds counted (in the window, where
        # watched); its class by its whole duration.
        ep = self.ep = period_index(cols.ep_start, bounds)
        secs = cols.counted_s()
        is_power = self.is_power = cols.ep_type == POWER
        is_net = self.is_net = cols.ep_type == CONNECTIVITY
        sustained = is_power & (cols.ep_whole > s.momentary_max_s)
        momentary = is_power & ~sustained
        self.sus_n = per_unit(np.where(sustained, ep, -1), cols.ep_unit)
        self.sus_s = per_unit(np.where(sustained, ep, -1), cols.ep_unit, secs)
        self.mom_n = per_unit(np.where(momentary, ep, -1), cols.ep_unit)
        self.net_n = per_unit(np.where(is_net, ep, -1), cols.ep_unit)
        self.net_s = per_unit(np.where(is_net, ep, -1), cols.ep_unit, secs)
        self.by_cause = {}
        for c in INTERNET_CAUSES:
            m = is_net & (cols.ep_cause == CAUSES.index(c))
            self.by_cause[c] = (per_unit(np.where(m, ep, -1), cols.ep_unit),
                                per_unit(np.where(m, ep, -1), cols.ep_unit, secs))
        overlap = _work_overlap(cols, lt, s)
        self.wh_pw = per_unit(np.where(is_power, ep, -1), cols.ep_unit, overlap)
        self.wh_net = per_unit(np.where(is_net, ep, -1), cols.ep_unit, overlap)


# Outage pieces are summed this many at a time: the sums' indices are made per slice, not for
# every piece at once (millions for a quarter of 10,000 agents). Observed hours go by
# collector.columns.HOURS_SLICE.
OBS_SLICE = 1 << 20


def _observed_sums(cols: Columns, lt: LocalTime, bounds: list[tuple[float, float]],
                   unit_cell: np.ndarray, C: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Round time and power-watched time per period and line (P x U), and power-watched time
    per period, cell and local hour of the week (P x C x 168). Each hour's period and hour of
    the week are looked up in a table of the window's hours; the sums are taken slice by
    slice in the hours' order (numpy's add.at: the same additions in the same order as one
    bincount over all of them, so the same sums to the last bit)."""
    P, U = len(bounds), len(cols.units)
    net, pw = np.zeros(P * U), np.zeros(P * U)
    how_pw = np.zeros(P * C * 168)
    span = cols.obs.hour_range()
    if span:
        h0 = span[0]
        at = (h0 + np.arange(span[1] - h0 + 1)) * 3600.0
        period_of, how_of = period_index(at, bounds), hour_of_week(lt.local(at))
        for a, unit, hour, o_s in cols.obs.slices():
            i = hour // 3600 - h0
            p = period_of[i]
            ok = p >= 0
            p, i, u = p[ok], i[ok], unit[ok]
            w_net, w_pw = o_s[ok], cols.pw(a, a + o_s.size, o_s)[ok]
            at_pu = p * U + u
            np.add.at(net, at_pu, w_net)
            np.add.at(pw, at_pu, w_pw)
            np.add.at(how_pw, (p * C + unit_cell[u]) * 168 + how_of[i], w_pw)
    return net.reshape(P, U), pw.reshape(P, U), how_pw.reshape(P, C, 168)


def _work_overlap(cols: Columns, lt: LocalTime, s: Settings) -> np.ndarray:
    """Each episode's seconds inside the working hours, in local time (the offset of the hour it
    began in), less the part of its pieces that were not watched (scaled down in
    collector.sites; rare)."""
    loc_start = lt.local(cols.ep_start)
    overlap = np.empty(loc_start.size)
    # a slice at a time: the working seconds' temporaries are not as long as the episodes
    for a in range(0, overlap.size, OBS_SLICE):
        at, dur = loc_start[a:a + OBS_SLICE], cols.ep_dur[a:a + OBS_SLICE]
        overlap[a:a + OBS_SLICE] = work_seconds_before(at + dur, s) - work_seconds_before(at, s)
    pc_ep, pc_hour, _, pc_scale = cols.pieces()
    cut = np.flatnonzero(pc_scale < 1.0)
    if cut.size:
        e = pc_ep[cut]
        shift = loc_start[e] - cols.ep_start[e]
        a = np.maximum(cols.ep_start[e], pc_hour[cut]) + shift
        b = np.minimum(cols.ep_start[e] + cols.ep_dur[e], pc_hour[cut] + 3600.0) + shift
        lost = (work_seconds_before(b, s) - work_seconds_before(a, s)) * (1.0 - pc_scale[cut])
        overlap = overlap - np.bincount(e, weights=lost, minlength=overlap.size)
    out: np.ndarray = overlap
    return out


def _shedding_sums(cols: Columns, lt: LocalTime, bounds: list[tuple[float, float]],
                   unit_cell: np.ndarray, C: int, sums: _Sums) -> tuple[np.ndarray, np.ndarray]:
    """The load-shedding profile's sums: power-off seconds and power-watched seconds per period,
    cell and hour of the week (P x C x 168). The outage pieces are taken a slice at a time (a
    quarter of 10,000 agents has millions of power pieces: no column as long as all of them),
    summed by numpy's add.at: the same additions in the same order as one bincount."""
    P = len(bounds)
    pc_ep, pc_hour, pc_s, _ = cols.pieces()
    off = np.zeros(P * C * 168)
    for a in range(0, pc_ep.size, OBS_SLICE):
        ep = pc_ep[a:a + OBS_SLICE]
        pw = np.flatnonzero(sums.is_power[ep])
        hour = pc_hour[a:a + OBS_SLICE][pw]
        p = period_index(hour, bounds)
        ok = p >= 0
        pw, hour = pw[ok], hour[ok]
        idx = (p[ok] * C + unit_cell[cols.ep_unit[ep[pw]]]) * 168 + hour_of_week(lt.local(hour))
        np.add.at(off, idx, pc_s[a:a + OBS_SLICE][pw])
    return off.reshape(P, C, 168), sums.obs_how


class _Parts:
    """Everything the cells of one result are made from (:meth:`cell` makes one): the cells'
    keys, each line's cell and site, the sums, the load-shedding sums, the line quality, the
    agents behind each line and the regional events."""

    def __init__(self, cols: Columns, quality: Quality, s: Settings, by: tuple[str, ...],
                 lt: LocalTime, bounds: list[tuple[float, float]]) -> None:
        self.cols, self.quality, self.s, self.by, self.lt = cols, quality, s, by, lt
        U = len(cols.units)
        cell_keys: dict[tuple[str, ...], int] = {}
        self.unit_cell = np.array([cell_keys.setdefault(u.key(by), len(cell_keys))
                                   for u in cols.units], dtype=np.int64)
        self.cell_list = sorted(cell_keys.items(), key=lambda kv: kv[0])
        # In site columns a unit's `agent` is its site: the customer.
        site_ids: dict[str, int] = {}
        self.unit_site = np.array([site_ids.setdefault(u.agent, len(site_ids))
                                   for u in cols.units], dtype=np.int64)
        self.sums = _Sums(cols, s, lt, bounds, self.unit_cell, len(cell_keys))
        self.off_how, self.obs_how = _shedding_sums(cols, lt, bounds, self.unit_cell,
                                                    len(cell_keys), self.sums)
        self.line = linequality.per_line(cols, bounds, U, s)
        # The agents behind each line, per period: those of its records (only shared lines
        # differ).
        self.watch_pua = None
        if cols.watchers is not None:
            wu, wa, wt = cols.watchers
            wp = period_index(wt, bounds)
            ok = wp >= 0
            self.watch_pua = distinct_triples(wp[ok], wu[ok], wa[ok], U,
                                               len(cols.line_agents()[0]))
        self.events, self.ep_event, self.events_suppressed = regional_events(cols, s, lt,
                                                                             self.unit_site)
        self.ep_cell = self.unit_cell[cols.ep_unit]

    def cell(self, p: int, ps: float, pe: float, key: tuple[str, ...], c: int) -> Cell | None:
        """Cell ``c`` (its tags ``key``) in period ``p`` [ps, pe): None when no line of it
        watched; only its identity and why when it is below the publication floor."""
        s, pw_obs = self.s, self.sums.pw_obs
        T = pe - ps
        members = np.nonzero((self.unit_cell == c) & (pw_obs[p] > 0))[0]
        ident = dict(zip(self.by, key))
        if "region" in ident:
            ident["region_name"] = s.region_names.get(ident["region"], ident["region"])
        ident["period_start"] = self.lt.iso(ps)
        ident["period_end"] = self.lt.iso(pe)
        site_of = self.unit_site[members]
        sites = len(set(site_of.tolist()))
        if sites == 0:
            return None
        # The floor counts lines that watched long enough: rates extrapolated from minutes of
        # watching say nothing. A day cannot ask for 24 h of a day: at most half the period.
        need_s = min(s.min_watch_h * 3600.0, T / 2.0)
        _, inv = np.unique(site_of, return_inverse=True)
        watched = int((np.bincount(inv.reshape(-1), weights=pw_obs[p, members]) >= need_s).sum())
        if sites < s.min_agents or watched < s.min_agents:
            return {**ident, "suppressed": True, "suppressed_reason":
                    "min_agents" if sites < s.min_agents else "min_watch_h"}
        cell = {**ident, "suppressed": False, "agents": self._agents(p, members), "sites": sites,
                "sites_watched_min_h": watched,
                "agent_hours": float(pw_obs[p, members].sum() / 3600.0)}
        self._figures(cell, p, c, members, site_of, T, Bootstrap(members.size, s, repr((key, ps))))
        return cell

    def _agents(self, p: int, members: np.ndarray) -> int:
        """Distinct agents behind the cell's lines ``members`` in period ``p``."""
        cols = self.cols
        if self.watch_pua is None:
            unit_agents = cols.line_agents()[1]
            return len(frozenset().union(*(unit_agents[m] for m in members.tolist())))
        in_cell = np.zeros(len(cols.units), dtype=bool)
        in_cell[members] = True
        hit = (self.watch_pua[0] == p) & in_cell[self.watch_pua[1]]
        return int(distinct(self.watch_pua[2][hit]).size)

    def _figures(self, cell: Cell, p: int, c: int, members: np.ndarray, site_of: np.ndarray,
                 T: float, boot: Bootstrap) -> None:
        """A published cell's figures (collector.figures), in the order of its JSON keys."""
        sums = self.sums

        def g(a: np.ndarray) -> np.ndarray:   # the cell's lines in period p
            out: np.ndarray = a[p, members]
            return out

        _fill_power(cell, boot, g(sums.sus_n), g(sums.sus_s), g(sums.mom_n), g(sums.pw_obs), T)
        _fill_internet(cell, boot, g(sums.net_n), g(sums.net_s), g(sums.net_obs), T,
                       {c_: (g(n_), g(s_)) for c_, (n_, s_) in sums.by_cause.items()})
        for name, v, den in (("work_hours_power_min_per_agent", g(sums.wh_pw), g(sums.pw_obs)),
                             ("work_hours_internet_min_per_agent", g(sums.wh_net),
                              g(sums.net_obs))):
            ratio_figure(cell, boot, name, v, den, T / 60.0)
        (cell["load_shedding_by_hour"], cell["load_shedding_by_weekday"],
         cell["load_shedding_heatmap"], impossible) = load_shedding(self.off_how[p, c],
                                                                     self.obs_how[p, c])
        if impossible:
            self.quality.rejected["impossible_share"] += impossible
        linequality.fill(cell, boot, self.line, p, members, site_of)
        cm = np.nonzero((self.ep_cell == c) & (sums.ep == p))[0]
        in_event = self.ep_event[cm] >= 0
        cell["regional_events"] = int(distinct(self.ep_event[cm][in_event]).size)
        for name, m in (("power_regional_share", sums.is_power),
                        ("internet_regional_share", sums.is_net)):
            tot = int(m[cm].sum())
            cell[name] = float((m[cm] & in_event).sum() / tot) if tot else None


def _fill_power(cell: Cell, boot: Bootstrap, sus_n: np.ndarray, sus_s: np.ndarray,
                mom_n: np.ndarray, obs: np.ndarray, T: float) -> None:
    ind = from_sums(int(sus_n.sum()), float(sus_s.sum()), int(mom_n.sum()), float(obs.sum()), T)
    cell.update(power_saifi=ind.power_saifi, power_saidi_min=ind.power_saidi_min,
                power_caidi_min=ind.power_caidi_min, power_maifi=ind.power_maifi,
                power_asai=ind.power_asai)
    cell["power_saifi_ci"] = boot.ratio(sus_n, obs, T)
    cell["power_saidi_min_ci"] = boot.ratio(sus_s, obs, T / 60.0)
    cell["power_caidi_min_ci"] = boot.ratio(sus_s, sus_n, 1 / 60.0) if ind.sustained else None
    cell["power_maifi_ci"] = boot.ratio(mom_n, obs, T)
    cell["power_asai_ci"] = boot.ratio(sus_s, obs, 1.0, complement=True)
    if cell["power_asai_ci"]:
        cell["power_asai_ci"] = sorted(max(0.0, x) for x in cell["power_asai_ci"])


def _fill_internet(cell: Cell, boot: Bootstrap, n: np.ndarray, secs: np.ndarray, obs: np.ndarray,
                   T: float, causes: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    avail = availability(float(secs.sum()), float(obs.sum()))
    ci = boot.ratio(secs, obs, complement=True) if avail is not None else None
    cell["internet_availability"] = avail
    cell["internet_availability_ci"] = sorted(max(0.0, x) for x in ci) if ci else ci
    ratio_figure(cell, boot, "internet_outages_per_agent", n, obs, T)
    ratio_figure(cell, boot, "internet_outage_min_per_agent", secs, obs, T / 60.0)
    for c, (cn, cs) in causes.items():
        ratio_figure(cell, boot, f"internet_outages_per_agent_{c}", cn, obs, T)
        ratio_figure(cell, boot, f"internet_outage_min_per_agent_{c}", cs, obs, T / 60.0)


def load_shedding(off: np.ndarray, obs: np.ndarray
                  ) -> tuple[list[float | None], list[float | None], list[list[float | None]], int]:
    """The load-shedding profile from seconds without mains power (``off``) and power-watched
    seconds (``obs``) per hour of the week (168 values, Monday 00:00 first): (by hour of day,
    by weekday, the 7 x 24 heat map, how many shares were left empty for coming out above 1).

    A share is None where nothing was watched. It cannot exceed 1, since outage time counts only
    where the line was watched; one that does (a fault in the data or the code) is left empty
    (None) and counted, never shown as 1. Float rounding (a billionth) is not such a fault."""
    bad = 0

    def share(a: np.ndarray, b: np.ndarray) -> list[float | None]:
        nonlocal bad
        out: list[float | None] = []
        for x, d in zip(a.tolist(), b.tolist()):
            if d <= 0:
                out.append(None)
            elif x > d * (1 + 1e-9):
                bad += 1
                out.append(None)
            else:
                out.append(min(x / d, 1.0))
        return out

    grid_off, grid_obs = off.reshape(7, 24), obs.reshape(7, 24)
    by_hour = share(grid_off.sum(0), grid_obs.sum(0))
    by_weekday = share(grid_off.sum(1), grid_obs.sum(1))
    heatmap = [share(a, b) for a, b in zip(grid_off, grid_obs)]
    return by_hour, by_weekday, heatmap, bad
