"""Line quality's grouped figures (collector.linequality) against the per-group loop they
replace: the same bits, on random data with NaNs, empty groups, groups of one and groups longer
than numpy's 8-way and 128-element summation blocks. And the checks' sort of records by unit
(collector.clean._by_unit) against a sort by every column."""

from __future__ import annotations

import numpy as np
import pytest

from collector.bootstrap import wquantile
from collector.clean import _by_unit
from collector.linequality import group_quantile, group_sums


def _data(seed: int, rows: int, keys: int):
    rng = np.random.default_rng(seed)
    # a few long groups (past 128 rows), many short ones
    key = np.concatenate([rng.integers(0, keys, rows), np.full(300, 3), np.full(129, 7)])
    rng.shuffle(key)
    v = rng.lognormal(3.0, 1.5, key.size) * rng.choice([1e-3, 1.0, 1e6], key.size)
    v[rng.random(key.size) < 0.1] = np.nan
    return key.astype(np.int64), v


def _loop(key):
    groups: dict[int, list[int]] = {}
    for i, k in enumerate(key.tolist()):
        groups.setdefault(k, []).append(i)
    return groups


@pytest.mark.parametrize("seed", range(6))
def test_group_sums_are_the_loops_sums_bit_for_bit(seed):
    key, v = _data(seed, 5000, 900)
    w = np.abs(np.round(v * 7)) + 1.0
    ok = ~np.isnan(v)
    cols = [v[ok] * w[ok], w[ok]]
    keys, sums = group_sums(cols, key[ok])
    groups = _loop(key[ok])
    assert keys.tolist() == sorted(groups)
    for j, k in enumerate(keys.tolist()):
        ix = np.array(groups[k])
        for col, got in zip(cols, sums):
            assert got[j] == col[ix].sum()      # exactly: the same additions in the same order
        assert sums[0][j] / sums[1][j] == (v[ok][ix] * w[ok][ix]).sum() / w[ok][ix].sum()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("q", [0.1, 0.5, 0.95])
def test_group_quantiles_are_wquantile_of_each_group(seed, q):
    key, v = _data(seed, 3000, 700)
    ok = ~np.isnan(v)
    keys, got = group_quantile(v[ok], key[ok], q)
    groups = _loop(key)
    want = {k: wquantile(v[np.array(ix)], q) for k, ix in groups.items()}
    assert {k: x for k, x in want.items() if x is not None} == dict(zip(keys.tolist(), got.tolist()))


@pytest.mark.parametrize("seed", range(3))
def test_groups_made_once_give_what_each_figure_makes_of_its_own(seed):
    """The speed figures group the tests once and share the groups where a column has no gap:
    the same sums and quantiles, to the bit, as each made its own."""
    from collector.linequality import _groups

    key, v = _data(seed, 4000, 600)
    v = np.nan_to_num(v, nan=1.5)
    groups = _groups(key)
    for q in (0.5, 0.95):
        a, b = group_quantile(v, key, q), group_quantile(v, key, q, groups)
        assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
    a, b = group_sums([v, v * 2], key), group_sums([v, v * 2], key, groups)
    assert a[0].tolist() == b[0].tolist() and [x.tolist() for x in a[1]] == [x.tolist() for x in b[1]]


def test_nothing_to_group_gives_nothing():
    keys, (s,) = group_sums([np.zeros(0)], np.zeros(0, dtype=np.int64))
    assert keys.size == 0 and s.size == 0
    keys, got = group_quantile(np.zeros(0), np.zeros(0, dtype=np.int64), 0.5)
    assert keys.size == 0 and got.size == 0
    keys, got = group_quantile(np.array([4.0]), np.array([9]), 0.5)
    assert keys.tolist() == [9] and got.tolist() == [4.0]


@pytest.mark.parametrize("ties", [False, True])
def test_records_sorted_by_unit_as_by_every_column(ties):
    rng = np.random.default_rng(5)
    n = 20000
    unit = rng.integers(0, 300, n).astype(np.int32)
    day = (rng.integers(0, 90, n) * 86400).astype(np.int64)
    if not ties:     # one record per unit and day
        pairs = np.unique(unit.astype(np.int64) * 10**9 + day)
        rng.shuffle(pairs)
        unit, day = (pairs // 10**9).astype(np.int32), pairs % 10**9
    a, b = rng.random(unit.size), rng.random(unit.size)
    a[rng.random(unit.size) < 0.2] = np.nan
    t = rng.random(unit.size) * 1e6
    t[:50] = np.nan                    # NaN in the second key: ordered by the others
    for cols in ((unit, day, a, b), (unit, t, a, b)):
        k = np.lexsort(tuple(reversed(cols)))
        want = tuple(c[k] for c in cols)
        got = _by_unit(*cols)
        for x, y in zip(got, want):
            assert np.array_equal(x, y, equal_nan=True)
