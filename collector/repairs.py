"""Counted rejections, and the repairs of records' tags that :func:`collector.clean.clean` makes
(pure, numpy): a record without a valid region takes its agent's (``retagged``), one without a
site tag its agent's site (``site_retagged``); an agent with no valid region at all is rejected
(``unknown_region``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from operator import attrgetter

import numpy as np

from kit.definitions import Quality, Unit

# The parallel arrays of the four kinds of records (hours, episodes, days of latency, speed tests).
Arrays = list[np.ndarray]


def reject(q: Quality, keep: np.ndarray, bad: np.ndarray, reason: str) -> None:
    """Count and clear the still-kept records that are ``bad``."""
    hit = keep & bad
    n = int(hit.sum())
    if n:
        q.rejected[reason] += n
        keep &= ~bad


def _latest_by_agent(units: list[Unit], unit_cols: Arrays, keeps: Arrays, times: Arrays,
                     gives: np.ndarray, value: Callable[[Unit], str]) -> dict[str, str]:
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


def _repaired(q: Quality, reason: str, units: list[Unit], uid: Callable[[Unit], int],
              unit_cols: Arrays, keeps: Arrays, lacks: np.ndarray,
              fixed: dict[int, Unit]) -> Arrays:
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


def retag(q: Quality, known: set[str], units: list[Unit], uid: Callable[[Unit], int],
           unit_cols: Arrays, keeps: Arrays, times: Arrays) -> Arrays:
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
                reject(q, k, hit, "unknown_region")
    return _repaired(q, "retagged", units, uid, unit_cols, keeps, bad, fixed)


def resite(q: Quality, units: list[Unit], uid: Callable[[Unit], int], unit_cols: Arrays,
            keeps: Arrays, times: Arrays) -> Arrays:
    """Records without a ``site`` tag (written before the agent was upgraded) from an agent
    whose kept records have one take the site of its latest such records, counted
    ``site_retagged``: otherwise an upgraded agent would be two lines, its old self and its
    site. An agent with no site tag at all is its own site (:func:`collector.sites.by_site`)."""
    has = np.array([bool(u.site) for u in units], dtype=bool)
    if has.all() or not has.any():
        return unit_cols
    best = _latest_by_agent(units, unit_cols, keeps, times, has, attrgetter("site"))
    fixed = {i: replace(units[i], site=best[units[i].agent])
             for i in np.flatnonzero(~has).tolist() if units[i].agent in best}
    return _repaired(q, "site_retagged", units, uid, unit_cols, keeps, ~has, fixed)
