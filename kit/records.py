"""The records a store file or an InfluxDB answer reduces to, which the collector's statistics and
the line report consume (pure data, no I/O).

Both sources (InfluxDB through InfluxQL, and agents' local store files) reduce what agents wrote to
these few shapes, already aggregated where the source can do it (hourly observed time, daily
latency percentiles), so a month of 10-second rounds never crosses the wire:

* :class:`~kit.definitions.Unit` - one agent in one place (its id, the tags that place it in a
                     cell, its site), defined with the vocabularies.
* :class:`ObsHour`  - how long a unit was watching during one UTC hour (from its probe rounds,
                     or the ``hourly`` summary row the agent made of them).
* :class:`HourColumns` - many such hours as columns (the collector's cache hands them over so,
                     without a record per hour).
* :class:`Episode`  - one finished outage episode (power or connectivity) of a unit.
* :class:`PingDay`  - a unit's latency and loss over one UTC day (internet targets only).
* :class:`SpeedTest` - one successful speed test of a unit.
* :class:`EpisodeColumns`, :class:`SpeedColumns` - many episodes or speed tests as columns (the
                     collector reads InfluxDB's answers so: 10,000 agents' quarter is 6 million
                     of them).

Times are seconds since 1970 UTC (floats); durations in seconds. Every record carries its unit, so
an agent whose tags changed (it moved, or its ISP changed) counts in each cell it was in. The
records have slots (no instance dict): a quarter of 10,000 agents holds over 7 million of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kit.definitions import Unit


@dataclass(frozen=True, slots=True)
class ObsHour:
    unit: Unit
    hour: int            # start of the UTC hour, seconds since 1970 (a multiple of 3600)
    observed_s: float    # seconds the agent was watching within that hour (sum of round intervals)
    # Where it was read from: "hourly" (the agent's summary row), "raw" (its round rows: an agent
    # without summaries), "" (made otherwise: a test's truth). The data quality counts both.
    source: str = ""


@dataclass(frozen=True, slots=True)
class Episode:
    unit: Unit
    type: str            # "power" or "connectivity"
    cause: str           # as recorded: power ac_lost/host_down; connectivity lan/isp/dns/power/unknown
    start: float         # seconds since 1970 UTC
    duration_s: float

    @property
    def end(self) -> float:
        return self.start + self.duration_s


@dataclass(frozen=True, slots=True)
class PingDay:
    unit: Unit
    day: int             # start of the UTC day, seconds since 1970
    rtt_p50_ms: float | None
    rtt_p95_ms: float | None
    loss_pct: float | None   # mean loss over rounds in which the target answered at all
    rounds: int
    rtt_min_ms: float | None = None   # the day's extremes: one absurd round rejects the day
    rtt_max_ms: float | None = None


@dataclass(frozen=True, slots=True)
class SpeedTest:
    unit: Unit
    time: float
    download_bps: float
    upload_bps: float | None


@dataclass(frozen=True, eq=False)
class HourColumns:
    """Observed hours of one source as columns: hour ``k`` is ``units[unit[k]]`` watching for
    ``observed_s[k]`` seconds of the UTC hour starting at ``hour[k]``. The columns are any
    sequences of equal length (array.array, or numpy arrays in the collector); ``source`` as in
    :class:`ObsHour`, one for the whole block."""

    units: tuple[Unit, ...]
    unit: Sequence[int]
    hour: Sequence[int]
    observed_s: Sequence[float]
    source: str = ""

    def __len__(self) -> int:
        return len(self.hour)


@dataclass(frozen=True, eq=False)
class EpisodeColumns:
    """Episodes of one source as columns: episode ``k`` is ``units[unit[k]]``'s, of type
    ``names[type[k]]`` and cause ``names[cause[k]]`` (the names as recorded, checked later),
    starting at ``start[k]`` and lasting ``duration_s[k]``. Columns as in :class:`HourColumns`."""

    units: tuple[Unit, ...]
    unit: Sequence[int]
    names: tuple[str, ...]
    type: Sequence[int]
    cause: Sequence[int]
    start: Sequence[float]
    duration_s: Sequence[float]

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def of(cls, recs: Sequence[Episode]) -> EpisodeColumns:
        """Episode records as one block."""
        units: dict[Unit, int] = {}
        names: dict[str, int] = {}
        unit = [units.setdefault(e.unit, len(units)) for e in recs]
        typ = [names.setdefault(e.type, len(names)) for e in recs]
        cause = [names.setdefault(e.cause, len(names)) for e in recs]
        return cls(tuple(units), unit, tuple(names), typ, cause, [e.start for e in recs],
                   [e.duration_s for e in recs])

    def records(self) -> Iterator[Episode]:
        for u, t, c, s, d in zip(self.unit, self.type, self.cause, self.start, self.duration_s):
            yield Episode(self.units[int(u)], self.names[int(t)], self.names[int(c)], float(s),
                          float(d))


@dataclass(frozen=True, eq=False)
class SpeedColumns:
    """Speed tests of one source as columns: test ``k`` is ``units[unit[k]]``'s, at ``time[k]``;
    a speed of NaN stands for none (a source never gives NaN as a figure: JSON has no NaN)."""

    units: tuple[Unit, ...]
    unit: Sequence[int]
    time: Sequence[float]
    download_bps: Sequence[float]
    upload_bps: Sequence[float]

    def __len__(self) -> int:
        return len(self.time)

    @classmethod
    def of(cls, recs: Sequence[SpeedTest]) -> SpeedColumns:
        """Speed-test records as one block (a figure that is None as NaN)."""
        units: dict[Unit, int] = {}
        nan = float("nan")
        unit = [units.setdefault(t.unit, len(units)) for t in recs]
        return cls(tuple(units), unit, [t.time for t in recs],
                   [nan if t.download_bps is None else t.download_bps for t in recs],
                   [nan if t.upload_bps is None else t.upload_bps for t in recs])

    def records(self) -> Iterator[SpeedTest]:
        for u, t, dn, up in zip(self.unit, self.time, self.download_bps, self.upload_bps):
            dn, up = float(dn), float(up)
            yield SpeedTest(self.units[int(u)], float(t), None if dn != dn else dn,  # type: ignore[arg-type]
                            None if up != up else up)


@dataclass(frozen=True, eq=False)
class PingColumns:
    """Days of latency of one source as columns: day ``k`` is ``units[unit[k]]``'s, the UTC day
    starting at ``day[k]``; a figure of NaN stands for none (:class:`PingDay`'s None). Made only
    from figures that are numbers or none (a source that could give a NaN as a figure keeps
    records, so that it is counted as not a number)."""

    units: tuple[Unit, ...]
    unit: Sequence[int]
    day: Sequence[int]
    rtt_p50_ms: Sequence[float]
    rtt_p95_ms: Sequence[float]
    loss_pct: Sequence[float]
    rounds: Sequence[int]
    rtt_min_ms: Sequence[float]
    rtt_max_ms: Sequence[float]

    def __len__(self) -> int:
        return len(self.day)

    def records(self) -> Iterator[PingDay]:
        def f(v: float) -> float | None:
            v = float(v)
            return None if v != v else v
        for u, d, p50, p95, loss, n, lo, hi in zip(self.unit, self.day, self.rtt_p50_ms,
                                                   self.rtt_p95_ms, self.loss_pct, self.rounds,
                                                   self.rtt_min_ms, self.rtt_max_ms):
            yield PingDay(self.units[int(u)], int(d), f(p50), f(p95), f(loss), int(n), f(lo), f(hi))

    @classmethod
    def of(cls, recs: Sequence[PingDay]) -> PingColumns:
        """Records as one block (a figure that is None as NaN; none of theirs may be NaN)."""
        units: dict[Unit, int] = {}
        nan = float("nan")

        def col(name: str) -> list[float]:
            return [nan if v is None else v for v in (getattr(p, name) for p in recs)]
        unit = [units.setdefault(p.unit, len(units)) for p in recs]
        return cls(tuple(units), unit, [p.day for p in recs], col("rtt_p50_ms"),
                   col("rtt_p95_ms"), col("loss_pct"), [p.rounds for p in recs],
                   col("rtt_min_ms"), col("rtt_max_ms"))

    def without(self, gone: set[tuple[str, int]]) -> PingColumns:
        """The block less the days whose (agent, day) is in ``gone``."""
        keep = [(self.units[int(u)].agent, int(d)) not in gone for u, d in zip(self.unit, self.day)]
        if all(keep):
            return self
        def kept(c: Sequence[Any]) -> list[Any]:
            return [v for v, k in zip(c, keep) if k]
        return PingColumns(self.units, kept(self.unit), kept(self.day), kept(self.rtt_p50_ms),
                           kept(self.rtt_p95_ms), kept(self.loss_pct), kept(self.rounds),
                           kept(self.rtt_min_ms), kept(self.rtt_max_ms))


@dataclass(frozen=True)
class Dataset:
    """Everything one collection produced, for the window [start, end)."""

    start: float
    end: float
    obs: tuple[ObsHour, ...] = ()
    episodes: tuple[Episode, ...] = ()
    pings: tuple[PingDay, ...] = ()
    speeds: tuple[SpeedTest, ...] = ()
    # More observed hours, as columns (counted with ``obs``; never the same hour in both).
    hours: tuple[HourColumns, ...] = ()
    # More episodes and speed tests, as columns (never the same one in both).
    episode_cols: tuple[EpisodeColumns, ...] = ()
    speed_cols: tuple[SpeedColumns, ...] = ()
    # More days of latency, as columns (never the same agent-day in both).
    ping_cols: tuple[PingColumns, ...] = ()

    def all_obs(self) -> Iterator[ObsHour]:
        """Every observed hour as a record: ``obs``, then the ``hours`` columns'."""
        yield from self.obs
        for b in self.hours:
            for u, h, s in zip(b.unit, b.hour, b.observed_s):
                yield ObsHour(b.units[int(u)], int(h), float(s), b.source)

    def all_episodes(self) -> Iterator[Episode]:
        """Every episode as a record: ``episodes``, then the columns'."""
        yield from self.episodes
        for b in self.episode_cols:
            yield from b.records()

    def all_speeds(self) -> Iterator[SpeedTest]:
        """Every speed test as a record: ``speeds``, then the columns'."""
        yield from self.speeds
        for b in self.speed_cols:
            yield from b.records()

    def all_pings(self) -> Iterator[PingDay]:
        """Every day of latency as a record: ``pings``, then the columns'."""
        yield from self.pings
        for b in self.ping_cols:
            yield from b.records()
