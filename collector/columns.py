"""The checked dataset as parallel arrays (:class:`Columns`, made by :func:`collector.clean.clean`
and :func:`collector.sites.by_site`), and what its type and cause columns hold (pure)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from kit.definitions import EPISODE_TYPES, INTERNET_CAUSES, POWER_CAUSES, Unit

# The values of ``ep_type`` and ``ep_cause`` index these.
TYPES: tuple[str, ...] = EPISODE_TYPES
POWER = TYPES.index("power")
# Every cause the agent records for the two types (docs/metrics.md, outage.cause). The order of
# the connectivity causes is the tie-break between two outages of equal start and length.
CAUSES: tuple[str, ...] = POWER_CAUSES + INTERNET_CAUSES
HOST_DOWN = CAUSES.index("host_down")


def distinct(a: np.ndarray) -> np.ndarray:
    """The distinct values of ``a``, sorted: ``np.unique(a)`` by one sort. numpy 2.3+ answers a
    plain ``np.unique`` by hashing, 10x slower on 700,000 keys of wide range (0.6 s here against
    0.06 s)."""
    s = np.sort(a, axis=None)
    if s.size < 2:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def distinct_triples(p: np.ndarray, u: np.ndarray, a: np.ndarray, U: int, A: int) -> np.ndarray:
    """The distinct (period, unit, agent) triples as a 3 x n array (one sort of int64 keys: much
    faster than numpy's unique over rows)."""
    A = max(A, 1)
    k = distinct((p.astype(np.int64) * U + u) * A + a)
    return np.stack([k // (U * A), (k // A) % U, k % A])


# Observed hours are expanded from their runs this many at a time (an int64 column of them is
# 2 MB: a slice's few temporaries stay small beside the runs).
HOURS_SLICE = 1 << 18
_LOW32 = (1 << 32) - 1


@dataclass(frozen=True)
class Hours:
    """The observed hours, one row per unit and UTC hour in (unit, hour) order, held as runs:
    consecutive hours of one unit with the same round time make one run. A fleet's hours are
    mostly whole and fall into runs of days: at 10,000 x 90, 20.9 million hours are 6.45
    million runs, 129 MB instead of 420 MB as columns of unit, hour and round time. Readers take them
    expanded a slice at a time (:meth:`slices`, rows in order, so sums over them keep their
    bits), or whole (:meth:`columns`) where they are few. A row is an hour's index in that
    order (``Columns.obs_pw_at`` holds such rows)."""

    unit: np.ndarray    # int32: each run's unit
    first: np.ndarray   # int32: each run's first hour, in hours since 1970
    at: np.ndarray      # int64: each run's first row (rising, 0 first)
    s: np.ndarray       # float64: the round time of each of the run's hours
    n: int              # rows (hours) in all

    @classmethod
    def from_key(cls, key: np.ndarray, s: np.ndarray, width: int = 1 << 32, h0: int = 0) -> Hours:
        """The hours of keys ``unit * width + hour index - h0`` (unique and rising; ``width``
        more than one past the largest ``hour index - h0``, so that no unit's last hour and
        the next unit's first are consecutive keys) with their round time. The runs are found
        a slice at a time: no temporary as long as the hours but a mask of one byte per hour."""
        n = int(key.size)
        if n and (int(key[-1]) // width >= 1 << 31 or int(key[0]) < 0):
            raise ValueError("observed hours: a unit index beyond int32 or a negative key")
        start = np.ones(n, dtype=bool)     # row 0 starts a run
        for a in range(1, n, HOURS_SLICE):
            b = min(a + HOURS_SLICE, n)
            np.not_equal(key[a:b], key[a - 1:b - 1] + 1, out=start[a:b])
            start[a:b] |= s[a:b] != s[a - 1:b - 1]
        at = np.flatnonzero(start).astype(np.int64, copy=False)
        del start
        head = key[at]
        # offsets are below ``width``: only a wide one needs its largest looked at
        if at.size and h0 + width > 1 << 31 and h0 + int((head % width).max()) >= 1 << 31:
            raise ValueError("observed hours: an hour index beyond int32")
        # each run's unit and first hour made straight into int32 columns (no int64 copies)
        unit = np.empty(at.size, dtype=np.int32)
        np.floor_divide(head, width, out=unit, casting="unsafe")
        first = np.empty(at.size, dtype=np.int32)
        np.remainder(head, width, out=first, casting="unsafe")
        del head
        first += h0
        return cls(unit, first, at, np.array(s[at], dtype=np.float64), n)

    @classmethod
    def of(cls, unit: np.ndarray, hour: np.ndarray, s: np.ndarray) -> Hours:
        """The hours given as columns: unit index, hour start (seconds, whole hours) and round
        time, one row per unit and hour in that order (ValueError otherwise)."""
        unit, hour = np.asarray(unit, dtype=np.int64), np.asarray(hour, dtype=np.int64)
        if unit.size != hour.size or unit.size != np.size(s):
            raise ValueError("observed hours: unit, hour and round time differ in length")
        if np.any(hour % 3600):
            raise ValueError("observed hours: an hour that does not start a UTC hour")
        if np.any((unit < 0) | (unit >= 1 << 31)):
            raise ValueError("observed hours: a unit index outside 0 .. int32's largest")
        key = unit * (1 << 32) + hour // 3600
        if np.any(key[1:] <= key[:-1]):
            raise ValueError("observed hours: not one row per unit and hour, in that order")
        return cls.from_key(key, np.asarray(s, dtype=np.float64))

    @classmethod
    def empty(cls) -> Hours:
        return cls.of(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))

    def hour_range(self) -> tuple[int, int] | None:
        """The first and last hour (hours since 1970) of any row, or None when there is none."""
        if not self.n:
            return None
        lens = np.diff(np.append(self.at, self.n))
        return int(self.first.min()), int((self.first.astype(np.int64) + lens - 1).max())

    def rows(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows [a, b) expanded: unit (int64), hour start (seconds, int64), round time."""
        a, b = max(a, 0), min(b, self.n)
        if b <= a:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
        r0, r1, lens = self._runs(a, b)
        # each row's hour is its run's first hour plus its row less the run's first row
        hour = np.repeat(self.first[r0:r1] - self.at[r0:r1], lens)
        hour += np.arange(a, b, dtype=np.int64)
        hour *= 3600
        return (np.repeat(self.unit[r0:r1].astype(np.int64), lens), hour,
                np.repeat(self.s[r0:r1], lens))

    def slices(self, size: int | None = None
               ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """Every row in order, ``size`` (:data:`HOURS_SLICE`) at a time: (first row, unit, hour
        start, round time)."""
        size = size or HOURS_SLICE
        for a in range(0, self.n, size):
            yield (a, *self.rows(a, a + size))

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every row expanded at once: for few hours (tests, small windows, shared lines)."""
        return self.rows(0, self.n)

    def round_time(self, a: int, b: int) -> np.ndarray:
        """The round time of rows [a, b) alone."""
        a, b = max(a, 0), min(b, self.n)
        if b <= a:
            return np.zeros(0)
        r0, r1, lens = self._runs(a, b)
        return np.repeat(self.s[r0:r1], lens)

    def _runs(self, a: int, b: int) -> tuple[int, int, np.ndarray]:
        """The runs [r0, r1) that rows [a, b) (0 <= a < b <= n) fall in, and how many of those
        rows each holds."""
        r0 = int(np.searchsorted(self.at, a, side="right")) - 1
        r1 = int(np.searchsorted(self.at, b, side="left"))
        edges = np.clip(np.append(self.at[r0:r1], b), a, b)
        return r0, r1, np.diff(edges)

    def heads(self) -> np.ndarray:
        """Each run's first key, ``unit * 2^32 + hour index``."""
        head = self.unit.astype(np.int64)
        head <<= 32
        head += self.first
        return head

    def rows_of(self, key: np.ndarray) -> np.ndarray:
        """The row of each key ``unit * 2^32 + hour index``, or -1 where no row has it."""
        if not self.at.size:
            return np.full(key.size, -1, dtype=np.int64)
        head = self.heads()
        r = np.searchsorted(head, key, side="right") - 1
        rc = np.maximum(r, 0)
        off = key - head[rc]
        del head
        ends = np.append(self.at, self.n)
        found = (r >= 0) & (off < ends[rc + 1] - ends[rc])
        return np.where(found, ends[rc] + off, -1)

    def round_time_at(self, rows: np.ndarray) -> np.ndarray:
        """The round time of the given rows."""
        return self.s[np.searchsorted(self.at, rows, side="right") - 1]

    def with_empty(self, keys: np.ndarray) -> Hours:
        """These hours and the hours of ``keys`` (``unit * 2^32 + hour index``, distinct, rising,
        none a row already) as rows of 0 s round time, in order."""
        if keys.size == 0:
            return self
        head = self.heads()
        R, K = head.size, keys.size
        # a new hour is in no run: the runs whose first key is below it come before it, with
        # all their rows, and so do the new hours below it
        r = np.searchsorted(head, keys, side="right")
        pos_new = r + np.arange(K)
        new_at = np.append(self.at, self.n)[r] + np.arange(K)
        # each run moves down by the new hours below it, its rows too
        shift = np.searchsorted(keys, head)
        del head
        at_old = self.at + shift
        pos_old = shift
        pos_old += np.arange(R)
        del shift

        def merged(old: np.ndarray, new: np.ndarray) -> np.ndarray:
            out = np.empty(R + K, dtype=old.dtype)
            out[pos_old] = old
            out[pos_new] = new
            return out
        return Hours(merged(self.unit, keys >> 32), merged(self.first, keys & _LOW32),
                     merged(at_old, new_at), merged(self.s, np.zeros(K)), self.n + K)

    def with_units(self, table: np.ndarray) -> Hours:
        """The runs with each unit ``u`` made ``table[u]`` (the caller keeps the order)."""
        return Hours(table[self.unit].astype(np.int32), self.first, self.at, self.s, self.n)

    def rising(self) -> bool:
        """Whether the rows are one per unit and hour, in that order (runs' own rows are)."""
        if self.unit.size < 2:
            return True
        head = self.heads()
        # each run's last key is its first plus its rows less one
        return bool(np.all(head[1:] > head[:-1] + np.diff(self.at) - 1))


@dataclass
class Columns:
    """The checked dataset as parallel arrays; ``units`` indexes every ``*_unit`` array."""

    start: float
    end: float
    units: list[Unit]
    # the observed hours: unit, hour and round time (0 in an hour watched only by being down
    # for power), as runs
    obs: Hours
    # Power-watched time (round time + host-down time, at most 3,600 s) where it is not the
    # round time: the rows (rising) of hours with host-down time, and their power-watched time.
    # Few hours have any: 21 million hours are 170 MB a column (obs_pw, pw() give it whole).
    obs_pw_at: np.ndarray
    obs_pw_v: np.ndarray
    ep_unit: np.ndarray
    ep_type: np.ndarray      # index into TYPES (int8)
    ep_cause: np.ndarray     # index into CAUSES (int8)
    ep_start: np.ndarray
    ep_dur: np.ndarray       # seconds from the start to the end, clipped at the window's end
    ep_whole: np.ndarray     # the whole recorded duration (after merging): decides the class
    pd_unit: np.ndarray
    pd_day: np.ndarray
    pd_p50: np.ndarray
    pd_p95: np.ndarray
    pd_loss: np.ndarray      # NaN: no loss figure that day
    pd_rounds: np.ndarray
    sp_unit: np.ndarray
    sp_time: np.ndarray
    sp_down: np.ndarray
    sp_up: np.ndarray        # NaN: no upload figure
    # Set by by_site(), where each unit is a line (its `agent` is the site): the agents' ids, each
    # unit's agents (indices into ``agents``), each record's own agent, and the agents of the
    # episodes merged from several.
    agents: list[str] | None = None
    unit_agents: list[frozenset[int]] | None = None
    ep_agent: np.ndarray | None = None
    ep_merged: dict[int, frozenset[int]] | None = None
    pd_agent: np.ndarray | None = None
    sp_agent: np.ndarray | None = None
    # Only when some line has several agents: (unit, agent, time) of each watching record.
    watchers: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    # Set by by_site(), after outage time was limited to watched time: each episode's counted
    # seconds, and its pieces, one per UTC hour it covers (episode index, hour start, counted
    # seconds, and the share of the piece's seconds that was kept).
    ep_secs: np.ndarray | None = None
    pc_ep: np.ndarray | None = None
    pc_hour: np.ndarray | None = None
    pc_s: np.ndarray | None = None
    pc_scale: np.ndarray | None = None

    @property
    def obs_pw(self) -> np.ndarray:
        """Each observed hour's power-watched time, as a column as long as the hours (for few
        hours: tests, small windows)."""
        return self.pw(0, self.obs.n)

    def pw(self, a: int, b: int, s: np.ndarray | None = None) -> np.ndarray:
        """The power-watched time of observed hours [a, b), as a column of its own; ``s``:
        their round time, when the caller has it expanded already."""
        out = np.array(self.obs.round_time(a, b) if s is None else s, dtype=np.float64)
        lo, hi = np.searchsorted(self.obs_pw_at, [a, b])
        out[self.obs_pw_at[lo:hi] - a] = self.obs_pw_v[lo:hi]
        return out

    def counted_s(self) -> np.ndarray:
        """Each episode's counted seconds (in the window, where its line watched)."""
        if self.ep_secs is None:
            raise ValueError("outage time is not yet limited to watched time (collector.sites)")
        return self.ep_secs

    def pieces(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The episodes' pieces, one per UTC hour each covers: (episode index, hour start,
        counted seconds, share of the piece's seconds kept)."""
        if self.pc_ep is None or self.pc_hour is None or self.pc_s is None or self.pc_scale is None:
            raise ValueError("outage time is not yet limited to watched time (collector.sites)")
        return self.pc_ep, self.pc_hour, self.pc_s, self.pc_scale

    def line_agents(self) -> tuple[list[str], list[frozenset[int]]]:
        """The agents' ids, and each line's agents (indices into them)."""
        if self.agents is None or self.unit_agents is None:
            raise ValueError("the columns are per agent, not per line (collector.sites.by_site)")
        return self.agents, self.unit_agents
