"""The checked dataset as parallel arrays (:class:`Columns`, made by :func:`collector.clean.clean`
and :func:`collector.sites.by_site`), and what its type and cause columns hold (pure)."""

from __future__ import annotations

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


@dataclass
class Columns:
    """The checked dataset as parallel arrays; ``units`` indexes every ``*_unit`` array."""

    start: float
    end: float
    units: list[Unit]
    obs_unit: np.ndarray     # int32 from collector.clean (int64 from by_site when remapped)
    obs_hour: np.ndarray     # start of the UTC hour, seconds; one row per unit and hour
    obs_s: np.ndarray        # round time (0 in an hour watched only by being down for power)
    # Power-watched time (round time + host-down time, at most 3,600 s) where it is not the
    # round time: the rows (rising) of hours with host-down time, and their power-watched time.
    # Few hours have any: 21 million hours are 170 MB a column (obs_pw, pw() give it whole).
    obs_pw_at: np.ndarray
    obs_pw_v: np.ndarray
    ep_unit: np.ndarray
    ep_type: np.ndarray      # index into TYPES
    ep_cause: np.ndarray     # index into CAUSES
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
        """Each observed hour's power-watched time, as a column as long as the hours."""
        return self.pw(0, self.obs_s.size)

    def pw(self, a: int, b: int) -> np.ndarray:
        """The power-watched time of observed hours [a, b), as a column of its own."""
        out = np.array(self.obs_s[a:b], dtype=np.float64)
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
