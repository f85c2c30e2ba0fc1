"""The records the collector's sources produce and its statistics consume (pure data, no I/O).

Both sources (InfluxDB through InfluxQL, and agents' local store files) reduce what agents wrote to
these few shapes, already aggregated where the source can do it (hourly observed time, daily
latency percentiles), so a month of 10-second rounds never crosses the wire:

* :class:`Unit`     - one agent in one place: its id, the tags that place it in a cell, and its
                     site (the line it watches: agents behind one router share one).
* :class:`ObsHour`  - how long a unit was watching during one UTC hour (from its probe rounds).
* :class:`Episode`  - one finished outage episode (power or connectivity) of a unit.
* :class:`PingDay`  - a unit's latency and loss over one UTC day (internet targets only).
* :class:`SpeedTest` - one successful speed test of a unit.

Times are seconds since 1970 UTC (floats); durations in seconds. Every record carries its unit, so
an agent whose tags changed (it moved, or its ISP changed) counts in each cell it was in.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

# The tags that can define a cell, in the order the CLI accepts them in --by.
CELL_KEYS: tuple[str, ...] = ("region", "isp", "city", "access")
# Causes of connectivity episodes, as the agent records them (docs/metrics.md, outage.cause).
INTERNET_CAUSES: tuple[str, ...] = ("power", "lan", "isp", "dns", "unknown")
# One cut can leave several power episodes of one agent: the battery and a watched UPS both see it
# (they overlap or touch), or a battery rides it out until it is flat and the host goes down
# (host_down starts at the last heartbeat, which lies within a round interval of the battery's
# last reading). Those are one interruption. POWER_JOIN_S covers round intervals up to a minute.
POWER_JOIN_S = 60.0
# Rows dated before 2000-01-01 UTC come from a clock that was never set (a Raspberry Pi without
# a real-time clock before it reached a time server dates them from 1970): no window holds them.
CLOCK_SET = 946_684_800
# A round's interval_s is good in (0, MAX_INTERVAL_S]: a round covers at most an hour.
MAX_INTERVAL_S = 3600.0


def joins_previous_cut(cut_end: float, carried_end: float | None, start: float, cause: str) -> bool:
    """Whether a power episode (``cause``, starting at ``start``) belongs to the cut before it, of
    one agent, its episodes taken in order of start (docs/collector.md, ``power_merged``).

    ``cut_end`` is the latest end of the cut's episodes so far; ``carried_end`` the latest end of
    those that are not ``host_down`` (a battery or UPS carrying the machine through the cut), None
    when all of them are. It joins when it overlaps or touches the cut (starts at or before its
    end), or when it is a ``host_down`` starting within POWER_JOIN_S after ``carried_end``: the
    battery went flat, then the host went down. Episodes carry no sensor, so any other two are
    two cuts, however close; in particular a ``host_down`` after a ``host_down`` (the host booted:
    the power was back) starts a new one. Seconds since 1970."""
    return start <= cut_end or (cause == "host_down" and carried_end is not None
                                and start <= carried_end + POWER_JOIN_S)


def rank(q: float, n: int) -> int:
    """Index of the q-quantile in n sorted values, "inverted CDF": the smallest value whose
    cumulative share reaches q (the lower median for an even n). Rounded first, so 0.1 x 30 is 3
    and not 3.0000000000000004."""
    return min(max(math.ceil(round(q * n, 9)) - 1, 0), n - 1)


def nearest_rank(values, pct: float) -> float | None:
    """InfluxQL's PERCENTILE(field, pct): the value at index floor(n x pct / 100 + 0.5) - 1 of
    the sorted values (None when that index falls outside). A store file's daily latency uses it
    too, so a file and the server give the same figure."""
    v = sorted(values)
    i = math.floor(len(v) * pct / 100.0 + 0.5) - 1
    return v[i] if 0 <= i < len(v) else None


def quantile(values, q: float) -> float | None:
    """The q-quantile of ``values`` by :func:`rank` (None when there are none)."""
    v = sorted(values)
    return v[rank(q, len(v))] if v else None


@dataclass(frozen=True, order=True)
class Unit:
    agent: str
    region: str = ""
    isp: str = ""
    city: str = ""
    access: str = ""
    site: str = ""       # the agent's `site` tag; empty (older agents): the agent is its own site

    @property
    def customer(self) -> str:
        """The line this unit watches, which the indices count as one customer: the site, or
        the agent itself when it wrote none (an agent that cannot see its gateway's hardware
        address writes its own id)."""
        return self.site or self.agent

    def key(self, by: tuple[str, ...]) -> tuple[str, ...]:
        """The cell this unit belongs to when cells are formed ``by`` these tags."""
        return tuple(getattr(self, k) for k in by)


@dataclass(frozen=True)
class ObsHour:
    unit: Unit
    hour: int            # start of the UTC hour, seconds since 1970 (a multiple of 3600)
    observed_s: float    # seconds the agent was watching within that hour (sum of round intervals)


@dataclass(frozen=True)
class Episode:
    unit: Unit
    type: str            # "power" or "connectivity"
    cause: str           # as recorded: power ac_lost/host_down; connectivity lan/isp/dns/power/unknown
    start: float         # seconds since 1970 UTC
    duration_s: float

    @property
    def end(self) -> float:
        return self.start + self.duration_s


@dataclass(frozen=True)
class PingDay:
    unit: Unit
    day: int             # start of the UTC day, seconds since 1970
    rtt_p50_ms: float | None
    rtt_p95_ms: float | None
    loss_pct: float | None   # mean loss over rounds in which the target answered at all
    rounds: int
    rtt_min_ms: float | None = None   # the day's extremes: one absurd round rejects the day
    rtt_max_ms: float | None = None


@dataclass(frozen=True)
class SpeedTest:
    unit: Unit
    time: float
    download_bps: float
    upload_bps: float | None


@dataclass(frozen=True)
class Dataset:
    """Everything one collection produced, for the window [start, end)."""

    start: float
    end: float
    obs: tuple[ObsHour, ...] = ()
    episodes: tuple[Episode, ...] = ()
    pings: tuple[PingDay, ...] = ()
    speeds: tuple[SpeedTest, ...] = ()


@dataclass
class Quality:
    """Records accepted, rejected and clipped, by reason (collector.clean lists the reasons;
    collector.storefile those of store files)."""

    accepted: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    clipped: Counter = field(default_factory=Counter)
    unknown_regions: Counter = field(default_factory=Counter)   # code -> records
    unreadable: list = field(default_factory=list)   # one line per store file refused whole

    def as_dict(self) -> dict:
        out = {"accepted": dict(sorted(self.accepted.items())),
               "rejected": {k: v for k, v in sorted(self.rejected.items()) if v},
               "clipped": {k: v for k, v in sorted(self.clipped.items()) if v}}
        if self.unknown_regions:
            out["unknown_region_codes"] = dict(sorted(self.unknown_regions.items()))
        if self.unreadable:
            out["unreadable_stores"] = list(self.unreadable)
        return out

    def merge(self, other: "Quality") -> None:
        for mine, theirs in ((self.accepted, other.accepted), (self.rejected, other.rejected),
                             (self.clipped, other.clipped),
                             (self.unknown_regions, other.unknown_regions)):
            mine.update(theirs)
        self.unreadable += other.unreadable
