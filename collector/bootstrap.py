"""Quantiles and the percentile bootstrap over a cell's lines (pure, numpy).

Quantiles of our own figures are kit.definitions.quantile ("inverted CDF": the smallest value
whose cumulative share reaches q, the lower median for an even count): :func:`wquantile` is it
over an array with NaN for "no value", and :meth:`Bootstrap.quantile` the same rule with each
line weighted by how often a resample drew it (tests/test_collector_stats.py checks both
against the definition). The interval's ends are numpy's default (interpolated) percentiles of
the resamples' figures, the usual percentile bootstrap.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from collector.settings import Settings
from kit.definitions import rank


def wquantile(values: np.ndarray, q: float) -> float | None:
    """:func:`kit.definitions.quantile` of the non-NaN ``values`` (None when there are none)."""
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
        """The interval of the q-quantile of the non-NaN ``values``: in each resample
        :func:`kit.definitions.quantile` of the values, each line's counted as often as it was
        drawn."""
        m = ~np.isnan(values)
        if not m.any():
            return None
        order = np.argsort(values[m], kind="stable")
        v = values[m][order]
        cum = np.cumsum(self.counts[:, m][:, order], axis=1)
        total = cum[:, -1]
        # kit.definitions.rank over the draws: the value at 1-based position ceil(q x draws),
        # q x draws rounded first as there, and at least the first drawn value.
        need = np.maximum(np.ceil(np.round(q * total, 9)), 1.0)
        idx = (cum >= need[:, None]).argmax(axis=1)
        return self._interval(np.where(total > 0, v[idx], np.nan))


def ratio_figure(cell: dict[str, Any], boot: Bootstrap, name: str, num: np.ndarray,
                 den: np.ndarray, scale: float = 1.0, complement: bool = False) -> None:
    """``cell[name]`` = sum(num) / sum(den) x scale (1 minus that with ``complement``), None
    when sum(den) is not above 0, and its interval ``cell[name + "_ci"]``."""
    d = float(den.sum())
    if d <= 0:
        cell[name] = None
        cell[name + "_ci"] = None
        return
    v = float(num.sum()) / d * scale
    cell[name] = 1.0 - v if complement else v
    cell[name + "_ci"] = boot.ratio(num, den, scale, complement)
