"""Line quality, one line one vote (pure, numpy): each line's daily latency and speed tests
summarised first, then the cell's figures over its lines, each with the lines and agents it
rests on (docs/collector.md, "Line quality").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from collector import figures
from collector.bootstrap import Bootstrap, ratio_figure, wquantile
from collector.columns import Columns, distinct_triples
from collector.figures import BASIS_ROWS
from collector.localtime import period_index
from collector.settings import Settings


def per_line(cols: Columns, bounds: list[tuple[float, float]], U: int,
                  s: Settings) -> dict[str, np.ndarray]:
    """Per period and unit: median daily p50/p95, mean loss (weighted by rounds), speed medians."""
    P = len(bounds)
    out = {k: np.full((P, U), np.nan) for k in
           ("rtt_p50", "rtt_p95", "loss", "down", "up", "under")}
    # How many agents each unit's figures rest on (several, when the unit is a shared line).
    for name, unit, agent, t in (("ping_agents", cols.pd_unit, cols.pd_agent, cols.pd_day),
                                 ("speed_agents", cols.sp_unit, cols.sp_agent, cols.sp_time)):
        n = np.zeros((P, U))
        if agent is not None and unit.size:
            pi = period_index(t.astype(np.float64), bounds)
            ok = pi >= 0
            trip = distinct_triples(pi[ok], unit[ok], agent[ok], U, len(cols.line_agents()[0]))
            np.add.at(n, (trip[0], trip[1]), 1.0)
        out[name] = n
    pp = period_index(cols.pd_day.astype(np.float64), bounds)
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
    sp = period_index(cols.sp_time, bounds)
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


def fill(cell: dict[str, Any], boot: Bootstrap, line: dict[str, np.ndarray], p: int,
               members: np.ndarray, site_of: np.ndarray) -> None:
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
        ratio_figure(cell, boot, name, np.where(has, v, 0.0), has.astype(np.float64))
        basis(name, src, v)
