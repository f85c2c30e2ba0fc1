"""Line quality, one line one vote (pure, numpy): each line's daily latency and speed tests
summarised first, then the cell's figures over its lines, each with the lines and agents it
rests on (docs/collector.md, "Line quality").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from collector import figures
from collector.bootstrap import Bootstrap, ratio_figure, wquantile
from collector.columns import Columns, distinct_triples
from collector.figures import BASIS_ROWS
from collector.localtime import period_index
from collector.settings import Settings
from kit.definitions import rank


def _groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct keys, and for each group of equal ``key`` its rows in their order (a stable
    sort): (keys, order, starts); the group's rows are order[starts[g]:starts[g + 1]]."""
    order = np.argsort(key, kind="stable")
    k = key[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]) if k.size else np.zeros(0, np.int64)
    return k[starts], order, starts


def _by_size(order: np.ndarray, starts: np.ndarray
             ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Per group size n: the groups of n rows and their rows as a (groups, n) array."""
    sizes = np.diff(np.r_[starts, order.size])
    for n in np.unique(sizes).tolist():
        g = np.flatnonzero(sizes == n)
        yield n, g, order[starts[g][:, None] + np.arange(n)]


def group_sums(columns: list[np.ndarray], key: np.ndarray,
               groups: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
               ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each column summed per distinct ``key``, as ``column[rows].sum()`` sums each group's
    rows in their order: the same bits (numpy sums each row of a (groups, n) array as it sums
    an array of n); (keys, sums per column). ``groups``: ``_groups(key)``, when the caller
    has it already."""
    keys, order, starts = _groups(key) if groups is None else groups
    out = [np.zeros(keys.size) for _ in columns]
    for _, g, rows in _by_size(order, starts):
        for col, o in zip(columns, out):
            o[g] = col[rows].sum(axis=1)
    return keys, out


def group_quantile(values: np.ndarray, key: np.ndarray, q: float,
                   groups: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`collector.bootstrap.wquantile` of each distinct ``key``'s values (none NaN): the
    same value, each group sorted and taken at its rank; (keys, quantiles). ``groups`` as in
    :func:`group_sums`."""
    keys, order, starts = _groups(key) if groups is None else groups
    out = np.zeros(keys.size)
    for n, g, rows in _by_size(order, starts):
        out[g] = np.sort(values[rows], axis=1)[:, rank(q, n)]
    return keys, out


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
    pkey = pp.astype(np.int64) * U + cols.pd_unit
    has = pp >= 0
    for name, arr in (("rtt_p50", cols.pd_p50), ("rtt_p95", cols.pd_p95)):
        ok = has & ~np.isnan(arr)
        keys, got = group_quantile(arr[ok], pkey[ok], 0.5)
        out[name].flat[keys] = got
    w = cols.pd_rounds.astype(np.float64)
    m = has & ~np.isnan(cols.pd_loss) & (w > 0)
    keys, (lw, ws) = group_sums([cols.pd_loss[m] * w[m], w[m]], pkey[m])
    out["loss"].flat[keys] = lw / ws
    sp = period_index(cols.sp_time, bounds)
    ok = sp >= 0
    # the usual case, every test in a period: the columns as they are, no copies (3.4 million
    # tests at 10,000 x 90)
    every = bool(ok.all())
    skey = (sp if every else sp[ok]).astype(np.int64)
    del sp
    skey *= U
    skey += cols.sp_unit if every else cols.sp_unit[ok]
    d, up = (cols.sp_down, cols.sp_up) if every else (cols.sp_down[ok], cols.sp_up[ok])
    # the tests grouped by period and unit once, for every figure whose values have no gap
    groups = _groups(skey)
    keys, (n, under) = group_sums([np.ones(skey.size),
                                   (d < s.speed_threshold_bps).astype(np.float64)], skey, groups)
    out["under"].flat[keys] = under / n
    for name, v in (("down", d), ("up", up)):
        good = ~np.isnan(v)
        k, got = (group_quantile(v, skey, 0.5, groups) if good.all()
                  else group_quantile(v[good], skey[good], 0.5))
        out[name].flat[k] = got
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
