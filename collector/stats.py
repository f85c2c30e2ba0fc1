"""Regional reliability statistics over a Dataset (pure: no I/O, no clock; numpy).

:func:`aggregate` turns the checked records of many agents into cells (region x ISP x period, or
whichever tags ``by`` names) with these figures, each defined once here and in docs/collector.md:

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
* Line quality, one agent one vote: each agent's median (and 95th percentile) latency to its
  internet targets, then the median over agents; ``loss_pct`` the mean over agents of their mean
  loss while the target answered at all (outages are counted above, not here); speeds: each
  agent's median, then the median (``_p50``) or 10th percentile (``download_p10_bps``) over
  agents; ``speed_under_threshold_share`` the mean over agents of the share of their tests below
  the threshold.
* 95 % intervals ``<name>_ci``: percentile bootstrap over agents (resampling whole agents, since
  one agent's outages are not independent of each other).
* Publication floor: a cell with fewer than ``min_agents`` distinct agents is ``suppressed``:
  only its identity keys are given, no figures.
* Regional events: episodes of one type starting within ``event_window_s`` of each other on a
  ``event_min_share`` or larger share of the lines (sites) watching in the region at that hour
  (round time for connectivity, power-watched time for power).

Quantiles are "inverted CDF": the smallest value whose cumulative weight reaches q (the lower
median for an even count), the same definition for the figure and its bootstrap.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np

from kit.definitions import (CELL_KEYS, INTERNET_CAUSES, PK_REGIONS, WEEKDAYS, WORK_DAYS,
                             availability, rank)
from kit.records import Dataset
from collector import figures
from collector.clean import CAUSES, TYPES, Columns, Quality, by_site, clean
from collector.figures import BASIS_ROWS
from collector.indices import MOMENTARY_MAX_S, from_sums

PERIODS = ("all", "day", "week", "month")
POWER, CONNECTIVITY = TYPES.index("power"), TYPES.index("connectivity")


@dataclass(frozen=True)
class Settings:
    """What the statistics depend on ([collector] in the config; defaults as documented)."""

    min_agents: int = 5
    min_watch_h: float = 24.0
    momentary_max_s: float = MOMENTARY_MAX_S
    work_start_min: int = 9 * 60          # minutes after local midnight
    work_end_min: int = 18 * 60
    work_days: tuple[str, ...] = WORK_DAYS
    timezone: str = "Asia/Karachi"
    speed_threshold_bps: float = 10e6
    regions: tuple[str, ...] = tuple(PK_REGIONS)
    region_names: dict = field(default_factory=lambda: dict(PK_REGIONS), hash=False, compare=False)
    event_window_s: float = 300.0
    event_min_share: float = 0.5
    event_min_agents: int = 3
    bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 1366

    @property
    def work_hours(self) -> str:
        f = lambda m: f"{m // 60:02d}:{m % 60:02d}"  # noqa: E731
        return f"{f(self.work_start_min)}-{f(self.work_end_min)}"


# ---------------------------------------------------------------- time in the local zone

class LocalTime:
    """UTC seconds to local seconds with the zone's offset taken per UTC hour (exact for zones
    whose changes fall on the hour; Asia/Karachi has one fixed offset, UTC+5)."""

    def __init__(self, tz: str, start: float, end: float) -> None:
        self.zone = ZoneInfo(tz)
        self.h0 = int(math.floor(start / 3600)) - 48
        h1 = int(math.ceil(end / 3600)) + 48
        self.offsets = np.array([
            self.zone.utcoffset(datetime.fromtimestamp(h * 3600, timezone.utc).replace(tzinfo=None))
            .total_seconds() for h in range(self.h0, h1 + 1)], dtype=np.float64)

    def local(self, t: np.ndarray) -> np.ndarray:
        i = np.clip(np.floor(t / 3600).astype(np.int64) - self.h0, 0, self.offsets.size - 1)
        return t + self.offsets[i]

    def iso(self, t: float) -> str:
        return datetime.fromtimestamp(t, self.zone).isoformat(timespec="seconds")


def hour_of_week(local: np.ndarray) -> np.ndarray:
    """0..167, Monday 00:00 = 0, for local seconds (1970-01-01 was a Thursday)."""
    day = np.floor(local / 86400).astype(np.int64)
    return ((day + 3) % 7) * 24 + ((local - day * 86400) // 3600).astype(np.int64)


def work_seconds_before(local: np.ndarray, s: Settings) -> np.ndarray:
    """Working seconds from a fixed Monday up to each local time: the difference of two values is
    the overlap of an interval with the working hours, without looping over days."""
    mask = np.array([d in s.work_days for d in WEEKDAYS], dtype=np.float64)
    per_day = float(s.work_end_min - s.work_start_min) * 60.0
    before = np.concatenate([[0.0], np.cumsum(mask)[:-1]]) * per_day
    day = np.floor(local / 86400).astype(np.int64)
    weekday = (day + 3) % 7
    weeks = (day + 3) // 7
    tod = local - day * 86400.0
    inside = np.clip(tod - s.work_start_min * 60.0, 0.0, per_day)
    return weeks * (mask.sum() * per_day) + before[weekday] + mask[weekday] * inside


def periods(start: float, end: float, kind: str, tz: str) -> list[tuple[float, float]]:
    """[start, end) cut at local midnights (day), Mondays (week) or month starts (month)."""
    if kind == "all":
        return [(start, end)]
    if kind not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {kind!r}")
    zone = ZoneInfo(tz)
    t = datetime.fromtimestamp(start, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "week":
        t -= timedelta(days=t.weekday())
    elif kind == "month":
        t = t.replace(day=1)
    out = []
    while t.timestamp() < end:
        if kind == "day":
            nxt = t + timedelta(days=1)
        elif kind == "week":
            nxt = t + timedelta(days=7)
        else:
            nxt = (t.replace(day=28) + timedelta(days=4)).replace(day=1)
        nxt = nxt.replace(tzinfo=None).replace(tzinfo=zone)  # wall-clock midnight after a DST change
        out.append((max(start, t.timestamp()), min(end, nxt.timestamp())))
        t = nxt
    return [p for p in out if p[1] > p[0]]


# ---------------------------------------------------------------- quantiles and the bootstrap

def wquantile(values: np.ndarray, q: float) -> float | None:
    """Inverted-CDF quantile of the non-NaN ``values`` (None when there are none)."""
    v = np.sort(values[~np.isnan(values)])
    if v.size == 0:
        return None
    return float(v[rank(q, v.size)])


class Bootstrap:
    """Resamples of a cell's agents: ``counts[b, i]`` is how often agent i is drawn in resample b.
    Every figure is a function of per-agent sums, so a resample's figure is a matrix product."""

    def __init__(self, n: int, s: Settings, key: str) -> None:
        rng = np.random.default_rng([s.seed, zlib.crc32(key.encode())])
        self.counts = rng.multinomial(n, np.full(n, 1.0 / n), size=s.bootstrap).astype(np.float64)
        alpha = (1.0 - s.confidence) / 2.0
        self.q = (alpha, 1.0 - alpha)

    def _interval(self, est: np.ndarray) -> list[float] | None:
        est = est[np.isfinite(est)]
        if est.size < 0.5 * self.counts.shape[0]:
            return None  # most resamples have no figure (e.g. CAIDI with one interruption)
        lo, hi = np.quantile(est, self.q)
        return [float(lo), float(hi)]

    def ratios(self, num: np.ndarray, den: np.ndarray, scale: float = 1.0,
               complement: bool = False) -> np.ndarray:
        """Each resample's sum(num) / sum(den) x scale (NaN where its sum(den) is 0). With
        ``complement``, 1 minus that: for outage and watched seconds the vectorised
        :func:`kit.definitions.availability` before its floor at 0, which the callers put on
        the interval's ends (tests/test_collector_stats.py checks they agree)."""
        a = self.counts @ num
        b = self.counts @ den
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(b > 0, a / b * scale, np.nan)
        return 1.0 - r if complement else r

    def ratio(self, num: np.ndarray, den: np.ndarray, scale: float = 1.0,
              complement: bool = False) -> list[float] | None:
        """The interval of :meth:`ratios`."""
        return self._interval(self.ratios(num, den, scale, complement))

    def quantile(self, values: np.ndarray, q: float) -> list[float] | None:
        m = ~np.isnan(values)
        if not m.any():
            return None
        order = np.argsort(values[m], kind="stable")
        v = values[m][order]
        cum = np.cumsum(self.counts[:, m][:, order], axis=1)
        total = cum[:, -1]
        idx = (cum >= (q * total - 1e-9)[:, None]).argmax(axis=1)
        return self._interval(np.where(total > 0, v[idx], np.nan))


# ---------------------------------------------------------------- the aggregation

def _distinct_triples(p: np.ndarray, u: np.ndarray, a: np.ndarray, U: int, A: int) -> np.ndarray:
    """The distinct (period, unit, agent) triples as a 3 x n array (one sort of int64 keys: much
    faster than numpy's unique over rows)."""
    A = max(A, 1)
    k = np.unique((p.astype(np.int64) * U + u) * A + a)
    return np.stack([k // (U * A), (k // A) % U, k % A])


def _period_index(t: np.ndarray, bounds: list[tuple[float, float]]) -> np.ndarray:
    """Index of the period holding each time, -1 outside all of them."""
    starts = np.array([b[0] for b in bounds])
    ends = np.array([b[1] for b in bounds])
    p = np.searchsorted(starts, t, side="right") - 1
    ok = (p >= 0) & (t < ends[np.clip(p, 0, None)])
    return np.where(ok, p, -1)


def aggregate(ds: Dataset, settings: Settings = Settings(), by: tuple[str, ...] = ("region", "isp"),
              period: str = "all", now: float | None = None,
              source_quality: Quality | None = None) -> dict:
    """Cells, regional events and data quality for ``ds``. ``now`` (seconds since 1970 UTC)
    dates future records; it defaults to the window's end. ``source_quality``: what the
    source already rejected, reported with the rest. Returns the dict the JSON output,
    the report page and the write-back all use (docs/collector.md)."""
    for k in by:
        if k not in CELL_KEYS:
            raise ValueError(f"--by: unknown key {k!r}; expected some of {', '.join(CELL_KEYS)}")
    now = ds.end if now is None else now
    cols, quality = clean(ds, settings.regions, now)
    if source_quality is not None:
        quality.merge(source_quality)  # rows the sources could not even turn into records
    return summarise(by_site(cols, quality), quality, settings, by, period, now)


def summarise(cols: Columns, quality: Quality, s: Settings, by: tuple[str, ...], period: str,
              now: float) -> dict:
    """The result for checked columns; per-agent columns are first made per line (by_site):
    every count of customers below is a count of sites."""
    if cols.unit_agents is None:
        cols = by_site(cols, quality)
    lt = LocalTime(s.timezone, cols.start, cols.end)
    bounds = periods(cols.start, cols.end, period, s.timezone)
    P, U = len(bounds), len(cols.units)
    cell_keys: dict[tuple, int] = {}
    unit_cell = np.array([cell_keys.setdefault(u.key(by), len(cell_keys)) for u in cols.units],
                         dtype=np.int64)
    C = len(cell_keys)
    # In site columns a unit's `agent` is its site: the customer.
    site_ids: dict[str, int] = {}
    unit_site = np.array([site_ids.setdefault(u.agent, len(site_ids)) for u in cols.units],
                         dtype=np.int64)

    def per_unit(p: np.ndarray, u: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        ok = p >= 0
        return np.bincount(p[ok] * U + u[ok], weights=None if w is None else w[ok],
                           minlength=P * U).reshape(P, U).astype(np.float64)

    # Observed time: round time for the internet, power-watched time (rounds and host down) for
    # power, both per unit and UTC hour (collector.clean).
    op = _period_index(cols.obs_hour.astype(np.float64), bounds)
    net_obs = per_unit(op, cols.obs_unit, cols.obs_s)
    pw_obs = per_unit(op, cols.obs_unit, cols.obs_pw)
    # Each outage in the period it began, with its seconds counted (in the window, where watched);
    # its class by its whole duration.
    ep = _period_index(cols.ep_start, bounds)
    secs = cols.ep_secs
    is_power = cols.ep_type == POWER
    is_net = cols.ep_type == CONNECTIVITY
    sustained = is_power & (cols.ep_whole > s.momentary_max_s)
    momentary = is_power & ~sustained
    sus_n = per_unit(np.where(sustained, ep, -1), cols.ep_unit)
    sus_s = per_unit(np.where(sustained, ep, -1), cols.ep_unit, secs)
    mom_n = per_unit(np.where(momentary, ep, -1), cols.ep_unit)
    net_n = per_unit(np.where(is_net, ep, -1), cols.ep_unit)
    net_s = per_unit(np.where(is_net, ep, -1), cols.ep_unit, secs)
    by_cause = {}
    for c in INTERNET_CAUSES:
        m = is_net & (cols.ep_cause == CAUSES.index(c))
        by_cause[c] = (per_unit(np.where(m, ep, -1), cols.ep_unit),
                       per_unit(np.where(m, ep, -1), cols.ep_unit, secs))
    # Work-hour overlap, in local time (the offset of the hour each began in), less the part of
    # the pieces that were not watched (scaled down, above; rare).
    loc_start = lt.local(cols.ep_start)
    overlap = (work_seconds_before(loc_start + cols.ep_dur, s) - work_seconds_before(loc_start, s))
    pc_ep, pc_hour = cols.pc_ep, cols.pc_hour
    cut = np.flatnonzero(cols.pc_scale < 1.0)
    if cut.size:
        e = pc_ep[cut]
        shift = loc_start[e] - cols.ep_start[e]
        a = np.maximum(cols.ep_start[e], pc_hour[cut]) + shift
        b = np.minimum(cols.ep_start[e] + cols.ep_dur[e], pc_hour[cut] + 3600.0) + shift
        lost = (work_seconds_before(b, s) - work_seconds_before(a, s)) * (1.0 - cols.pc_scale[cut])
        overlap = overlap - np.bincount(e, weights=lost, minlength=overlap.size)
    wh_pw = per_unit(np.where(is_power, ep, -1), cols.ep_unit, overlap)
    wh_net = per_unit(np.where(is_net, ep, -1), cols.ep_unit, overlap)

    # Load-shedding profile: power-off seconds and power-watched seconds per hour of the week.
    pw_pc = np.nonzero(is_power[pc_ep])[0]
    piece_unit = cols.ep_unit[pc_ep[pw_pc]]
    piece_hour = pc_hour[pw_pc]
    piece_p = _period_index(piece_hour, bounds)
    how_piece = hour_of_week(lt.local(piece_hour))
    how_obs = hour_of_week(lt.local(cols.obs_hour.astype(np.float64)))

    def per_cell_how(p, u, how, w):
        ok = p >= 0
        idx = (p[ok] * C + unit_cell[u[ok]]) * 168 + how[ok]
        return np.bincount(idx, weights=w[ok], minlength=P * C * 168).reshape(P, C, 168)

    off_how = per_cell_how(piece_p, piece_unit, how_piece, cols.pc_s[pw_pc])
    obs_how = per_cell_how(op, cols.obs_unit, how_obs, cols.obs_pw)

    line = _line_quality(cols, bounds, U, s)
    # The agents behind each line, per period: those of its records (only shared lines differ).
    watch_pua = None
    if cols.watchers is not None:
        wu, wa, wt = cols.watchers
        wp = _period_index(wt, bounds)
        ok = wp >= 0
        watch_pua = _distinct_triples(wp[ok], wu[ok], wa[ok], U, len(cols.agents))
    events, ep_event, events_suppressed = _events(cols, s, lt, unit_site)
    in_event = ep_event >= 0
    ep_cell = unit_cell[cols.ep_unit]

    cells = []
    cell_list = sorted(cell_keys.items(), key=lambda kv: kv[0])
    for p, (ps, pe) in enumerate(bounds):
        T = pe - ps
        for key, c in cell_list:
            members = np.nonzero((unit_cell == c) & (pw_obs[p] > 0))[0]
            ident = dict(zip(by, key))
            if "region" in ident:
                ident["region_name"] = s.region_names.get(ident["region"], ident["region"])
            ident["period_start"] = lt.iso(ps)
            ident["period_end"] = lt.iso(pe)
            site_of = unit_site[members]
            sites = len(set(site_of.tolist()))
            if sites == 0:
                continue
            # The floor counts lines that watched long enough: rates extrapolated from minutes
            # of watching say nothing. A day cannot ask for 24 h of a day: at most half the period.
            need_s = min(s.min_watch_h * 3600.0, T / 2.0)
            _, inv = np.unique(site_of, return_inverse=True)
            watched = int((np.bincount(inv.reshape(-1), weights=pw_obs[p, members]) >= need_s).sum())
            if sites < s.min_agents or watched < s.min_agents:
                cells.append({**ident, "suppressed": True, "suppressed_reason":
                              "min_agents" if sites < s.min_agents else "min_watch_h"})
                continue
            if watch_pua is None:
                agents = len(frozenset().union(*(cols.unit_agents[m] for m in members.tolist())))
            else:
                in_cell = np.zeros(U, dtype=bool)
                in_cell[members] = True
                hit = (watch_pua[0] == p) & in_cell[watch_pua[1]]
                agents = int(np.unique(watch_pua[2][hit]).size)
            cell = {**ident, "suppressed": False, "agents": agents, "sites": sites,
                    "sites_watched_min_h": watched,
                    "agent_hours": float(pw_obs[p, members].sum() / 3600.0)}
            boot = Bootstrap(members.size, s, repr((key, ps)))
            g = lambda a: a[p, members]  # noqa: E731
            _fill_power(cell, boot, g(sus_n), g(sus_s), g(mom_n), g(pw_obs), T)
            _fill_internet(cell, boot, g(net_n), g(net_s), g(net_obs), T,
                           {c_: (g(n_), g(s_)) for c_, (n_, s_) in by_cause.items()})
            for name, v, den in (("work_hours_power_min_per_agent", g(wh_pw), g(pw_obs)),
                                 ("work_hours_internet_min_per_agent", g(wh_net), g(net_obs))):
                _ratio(cell, boot, name, v, den, T / 60.0)
            (cell["load_shedding_by_hour"], cell["load_shedding_by_weekday"],
             cell["load_shedding_heatmap"], impossible) = load_shedding(off_how[p, c], obs_how[p, c])
            if impossible:
                quality.rejected["impossible_share"] += impossible
            _fill_line(cell, boot, line, p, members, site_of)
            cm = np.nonzero((ep_cell == c) & (ep == p))[0]
            cell["regional_events"] = int(np.unique(ep_event[cm][in_event[cm]]).size)
            for name, m in (("power_regional_share", is_power), ("internet_regional_share", is_net)):
                tot = int(m[cm].sum())
                cell[name] = float((m[cm] & in_event[cm]).sum() / tot) if tot else None
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
        "events": events,
        "events_suppressed": events_suppressed,
        "data_quality": quality.as_dict(),
    }


def _ratio(cell: dict, boot: Bootstrap, name: str, num: np.ndarray, den: np.ndarray,
           scale: float = 1.0, complement: bool = False) -> None:
    d = float(den.sum())
    if d <= 0:
        cell[name] = None
        cell[name + "_ci"] = None
        return
    v = float(num.sum()) / d * scale
    cell[name] = 1.0 - v if complement else v
    cell[name + "_ci"] = boot.ratio(num, den, scale, complement)


def _fill_power(cell, boot, sus_n, sus_s, mom_n, obs, T) -> None:
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


def _fill_internet(cell, boot, n, secs, obs, T, causes) -> None:
    avail = availability(float(secs.sum()), float(obs.sum()))
    ci = boot.ratio(secs, obs, complement=True) if avail is not None else None
    cell["internet_availability"] = avail
    cell["internet_availability_ci"] = sorted(max(0.0, x) for x in ci) if ci else ci
    _ratio(cell, boot, "internet_outages_per_agent", n, obs, T)
    _ratio(cell, boot, "internet_outage_min_per_agent", secs, obs, T / 60.0)
    for c, (cn, cs) in causes.items():
        _ratio(cell, boot, f"internet_outages_per_agent_{c}", cn, obs, T)
        _ratio(cell, boot, f"internet_outage_min_per_agent_{c}", cs, obs, T / 60.0)


def load_shedding(off: np.ndarray, obs: np.ndarray):
    """The load-shedding profile from seconds without mains power (``off``) and power-watched
    seconds (``obs``) per hour of the week (168 values, Monday 00:00 first): (by hour of day,
    by weekday, the 7 x 24 heat map, how many shares were left empty for coming out above 1).

    A share is None where nothing was watched. It cannot exceed 1, since outage time counts only
    where the line was watched; one that does (a fault in the data or the code) is left empty
    (None) and counted, never shown as 1. Float rounding (a billionth) is not such a fault."""
    bad = 0

    def share(a, b):
        nonlocal bad
        out = []
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


def _line_quality(cols: Columns, bounds, U: int, s: Settings) -> dict:
    """Per period and unit: median daily p50/p95, mean loss (weighted by rounds), speed medians."""
    P = len(bounds)
    out = {k: np.full((P, U), np.nan) for k in
           ("rtt_p50", "rtt_p95", "loss", "down", "up", "under")}
    # How many agents each unit's figures rest on (several, when the unit is a shared line).
    for name, unit, agent, t in (("ping_agents", cols.pd_unit, cols.pd_agent, cols.pd_day),
                                 ("speed_agents", cols.sp_unit, cols.sp_agent, cols.sp_time)):
        n = np.zeros((P, U))
        if agent is not None and unit.size:
            pi = _period_index(t.astype(np.float64), bounds)
            ok = pi >= 0
            trip = _distinct_triples(pi[ok], unit[ok], agent[ok], U, len(cols.agents))
            np.add.at(n, (trip[0], trip[1]), 1.0)
        out[name] = n
    pp = _period_index(cols.pd_day.astype(np.float64), bounds)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (p, u) in enumerate(zip(pp.tolist(), cols.pd_unit.tolist())):
        if p >= 0:
            groups.setdefault((p, u), []).append(i)
    for (p, u), idx in groups.items():
        ix = np.array(idx)
        for name, arr in (("rtt_p50", cols.pd_p50), ("rtt_p95", cols.pd_p95)):
            v = wquantile(arr[ix], 0.5)
            if v is not None:
                out[name][p, u] = v
        w = cols.pd_rounds[ix].astype(np.float64)
        lv = cols.pd_loss[ix]
        m = ~np.isnan(lv) & (w > 0)
        if m.any():
            out["loss"][p, u] = float((lv[m] * w[m]).sum() / w[m].sum())
    sp = _period_index(cols.sp_time, bounds)
    groups = {}
    for i, (p, u) in enumerate(zip(sp.tolist(), cols.sp_unit.tolist())):
        if p >= 0:
            groups.setdefault((p, u), []).append(i)
    for (p, u), idx in groups.items():
        ix = np.array(idx)
        d = cols.sp_down[ix]
        out["down"][p, u] = wquantile(d, 0.5)
        up = wquantile(cols.sp_up[ix], 0.5)
        out["up"][p, u] = np.nan if up is None else up
        out["under"][p, u] = float((d < s.speed_threshold_bps).mean())
    return out


def _fill_line(cell, boot, line, p, members, site_of) -> None:
    """The line-quality figures, each with the lines (``<name>_sites``) and agents
    (``<name>_agents``) it rests on: a cell's lines need not all have run a speed test."""
    def basis(name: str, src: str, v: np.ndarray) -> None:
        has = ~np.isnan(v)
        cell[name + "_sites"] = len(set(site_of[has].tolist()))
        agents = line[BASIS_ROWS[figures.BY_NAME[name].basis]]
        cell[name + "_agents"] = int(agents[p, members][has].sum())

    for name, src, q in (("rtt_p50_ms", "rtt_p50", 0.5), ("rtt_p95_ms", "rtt_p95", 0.5),
                         ("download_p50_bps", "down", 0.5), ("download_p10_bps", "down", 0.1),
                         ("upload_p50_bps", "up", 0.5)):
        v = line[src][p, members]
        cell[name] = wquantile(v, q)
        cell[name + "_ci"] = boot.quantile(v, q) if cell[name] is not None else None
        basis(name, src, v)
    for name, src in (("loss_pct", "loss"), ("speed_under_threshold_share", "under")):
        v = line[src][p, members]
        has = ~np.isnan(v)
        _ratio(cell, boot, name, np.where(has, v, 0.0), has.astype(np.float64))
        basis(name, src, v)


def _events(cols: Columns, s: Settings, lt: LocalTime,
            unit_site: np.ndarray) -> tuple[list[dict], np.ndarray, int]:
    """Regional events, for every episode the number of its event (-1: isolated; listed or
    not), and how many events were not listed because their region had fewer than
    ``min_agents`` sites watching in their hour.

    Sites (lines) are counted, not agents: six agents behind one router are one line, and one
    cut of that line is one episode (by_site merged them). Episodes of one type in one region,
    sorted by start: an event begins at an episode when the episodes starting within
    ``event_window_s`` of it come from at least ``event_min_share`` of the sites watching in
    the region in that hour (by round time for connectivity, power-watched time for power,
    as the figures of each type count watching) and at least ``event_min_agents`` sites; its
    episodes are then taken, and the search goes on after them. The count of episodes in each
    window is an upper bound on its distinct agents, so only windows that pass it are checked
    one by one."""
    ep_event = np.full(cols.ep_start.size, -1, dtype=np.int64)
    regions = sorted({u.region for u in cols.units})
    r_index = {r: i for i, r in enumerate(regions)}
    unit_region = np.array([r_index[u.region] for u in cols.units], dtype=np.int64)
    # Distinct sites watching, per type, region and UTC hour: power-watched time (rounds, or
    # host down) for power, round time for connectivity, as the figures of each type count it;
    # and the agents behind them (a site's agents, for the event's description only).
    ep_hour = (cols.ep_start // 3600).astype(np.int64)
    o_hour = cols.obs_hour // 3600
    hours = np.r_[o_hour, ep_hour]
    h0 = int(hours.min()) if hours.size else 0
    H = int(hours.max()) - h0 + 1 if hours.size else 1
    A = int(unit_site.max()) + 1 if unit_site.size else 1
    R = max(len(regions), 1)
    n_agents = np.array([len(a) for a in cols.unit_agents], dtype=np.int64)
    watching = np.zeros((len(TYPES), R, H), dtype=np.int64)
    agents_watching = np.zeros((len(TYPES), R, H), dtype=np.int64)
    for t in range(len(TYPES)):
        w = (cols.obs_pw if t == POWER else cols.obs_s) > 0
        w_unit = cols.obs_unit[w]
        if not w_unit.size:
            continue
        key = (unit_region[w_unit] * H + (o_hour[w] - h0)) * A + unit_site[w_unit]
        if R * H * A <= 200_000_000:   # a presence bitmap: much faster than sorting the keys
            seen = np.zeros(R * H * A, dtype=bool)
            seen[key] = True
            watching[t] = seen.reshape(R * H, A).sum(axis=1).reshape(R, H)
        else:
            watching[t] = np.bincount(np.unique(key) // A, minlength=R * H).reshape(R, H)
        if n_agents.size and n_agents.max() > 1:
            # Per region, hour and site the most agents of one of its units (tag sets).
            uk, inv = np.unique(key, return_inverse=True)
            most = np.zeros(uk.size, dtype=np.int64)
            np.maximum.at(most, inv.reshape(-1), n_agents[w_unit])
            agents_watching[t] = np.bincount(uk // A, weights=most,
                                             minlength=R * H).reshape(R, H).astype(np.int64)
        else:
            agents_watching[t] = watching[t]
    events: list[dict] = []
    suppressed = found = 0
    merged = cols.ep_merged or {}
    ep_agent = cols.ep_agent if cols.ep_agent is not None else cols.ep_unit
    isps = [u.isp for u in cols.units]
    ep_region = unit_region[cols.ep_unit]
    for t, tname in enumerate(TYPES):
        for r, region in enumerate(regions):
            idx = np.nonzero((cols.ep_type == t) & (ep_region == r))[0]
            if idx.size < s.event_min_agents:
                continue
            idx = idx[np.argsort(cols.ep_start[idx], kind="stable")]
            st = cols.ep_start[idx]
            reach = np.searchsorted(st, st + s.event_window_s, side="right")
            hour = ep_hour[idx] - h0
            seen_at = watching[t, r, hour]
            # Rounded first, so 0.1 x 30 lines asks for 3 and not 4 (3.0000000000000004).
            need = np.maximum(s.event_min_agents, np.ceil(np.round(s.event_min_share * seen_at, 9)))
            candidates = np.nonzero(reach - np.arange(st.size) >= need)[0]
            nxt = 0
            for i in candidates.tolist():
                if i < nxt:
                    continue
                j = int(reach[i])
                members = idx[i:j]
                sites = set(unit_site[cols.ep_unit[members]].tolist())
                if len(sites) < need[i]:
                    continue
                nxt = j
                # A held-back event is still one: its episodes count as regional in the cells
                # (which have a floor of their own); only its listing is held back.
                ep_event[members] = found
                found += 1
                seen = int(seen_at[i])
                if seen < s.min_agents:
                    suppressed += 1
                    continue
                agents = set()
                for m in members.tolist():
                    agents |= merged.get(m) or {int(ep_agent[m])}
                causes = [CAUSES[c] for c in cols.ep_cause[members].tolist()]
                hit_isps = [isps[u] for u in cols.ep_unit[members].tolist()]
                top_isp = max(set(hit_isps), key=hit_isps.count)
                single = tname == "connectivity" and hit_isps.count(top_isp) >= 0.8 * len(hit_isps)
                events.append({
                    "region": region, "region_name": s.region_names.get(region, region),
                    "type": tname, "cause": max(set(causes), key=causes.count),
                    # A connectivity event nearly all on one ISP reads as that ISP's failure.
                    "scope": "isp" if single else "region",
                    "start": lt.iso(float(st[i])),
                    "end": lt.iso(float((cols.ep_start[members] + cols.ep_dur[members]).max())),
                    "agents_affected": len(agents),
                    "agents_observed": int(agents_watching[t, r, hour[i]]),
                    "sites_affected": len(sites), "sites_observed": seen,
                    "share": round(len(sites) / seen, 4) if seen else None,
                    "median_duration_min": float(np.median(cols.ep_dur[members]) / 60.0),
                    "isps": sorted(set(hit_isps)),
                })
    # Listed by time; ep_event keeps creation numbers, which only tell events apart.
    events.sort(key=lambda e: e["start"])
    return events, ep_event, suppressed
