"""Bad data in, counted rejections out: a Dataset becomes checked columns (pure, numpy).

Volunteers' agents run on machines nobody audits, so every record is checked before it reaches a
statistic, and each one that is rejected or clipped is counted by reason in :class:`Quality`,
which every output shows (the data-quality section). Nothing is dropped silently, except a
record dated outside the window [start, end): it belongs to another window (the order of the
checks: :func:`clean`). The reasons, as docs/collector.md defines them (the sources count some
of them themselves, for rows that make no record: ``clock_unset`` and ``absurd_observed``,
``missing_agent`` and ``missing_value``, ``unreadable_store``; :mod:`collector.stats` counts
``impossible_share``):

rejected (the record is left out):
  ``unknown_region``     the unit's region is not one of the configured codes (or is empty),
                         and the agent has no record with a valid one to take it from
  ``unknown_type``       an episode that is neither power nor connectivity
  ``unknown_cause``      an episode cause the agent never writes
  ``missing_agent``      a record whose unit has no agent id
  ``not_a_number``       NaN or infinite time or value
  ``negative_duration``  an episode that ends before it starts
  ``zero_duration``      an episode that ends when it starts (the agent never writes one)
  ``absurd_duration``    an episode longer than 31 days
  ``future_timestamp``   a record dated after the collection's "now" (plus 5 minutes of skew)
  ``clock_unset``        a record dated before 2000-01-01: a clock that was never set
  ``absurd_observed``    a round whose interval_s is not a number in (0, 3600] (the sources
                         leave it out of its hour's sum); here, an hour whose time is not
                         above 0
  ``missing_value``      a day of latency without its median or 95th percentile, a speed test
                         without its download speed
  ``absurd_rtt``         a day of latency with a round below 0 or above 60 s (the whole day)
  ``absurd_loss``        loss outside 0..100 %
  ``absurd_speed``       a speed at or below 0, or above 10 Gbit/s (no consumer line is faster)
  ``overlap_dropped``    a connectivity episode wholly inside an earlier one of the same agent
                         (whatever tags each was written with);
                         of two starting at the same instant the longer is kept, of equal length
                         the one whose cause comes first (power, lan, isp, dns, unknown)
  ``unwatched``          an episode with no second in an hour its line was watched
clipped (the record is kept, shortened, merged or repaired):
  ``retagged``           a record without a valid region (written before the agent's region was
                         set, or with a code it later corrected) takes the agent's region: the
                         region of its latest records that have a valid one (each record
                         repaired counted once, whatever later rules do with it)
  ``site_merged``        an episode of one line that overlaps another of its agents' (one site):
                         merged into the first (:func:`collector.sites.by_site`; not bad
                         data, counted so the totals add up)
  ``site_retagged``      a record without a site tag (written before the agent was upgraded)
                         takes the site of the agent's latest records that have one
  ``overlap_clipped``    a connectivity episode that began before the previous one ended starts
                         at its end
  ``power_merged``       a power episode that overlaps or touches the agent's cut before it, or
                         a host_down starting within 60 s after the end of an earlier episode
                         that is not a host_down (a battery ran flat, then the host went down):
                         merged into it, one interruption (not bad data;
                         :func:`kit.definitions.joins_previous_cut`)
  ``unwatched_clipped``  an episode some of whose seconds fell in hours its line was not
                         watched: in each hour a line's outage seconds of one type are at most
                         its watched time there, scaled down in proportion when they are more
  ``observed_clipped``   more than 3,600 observed seconds in one hour (an agent id used twice,
                         or rounds written twice): clipped to the hour
  ``flood_speed_tests``  more than 48 speed tests by one agent in one UTC day: the rest dropped
  ``flood_episodes``     more than 1,440 episodes of one type by one agent in one UTC day
  ``window_clipped``     an episode still going at the window's end (or at "now", when the
                         window reaches into the future) counts up to it only; its class still
                         follows its whole duration (not bad data; counted so the totals add
                         up); one that begins only at or after that point is counted here only
                         and left out: no second of it can count

Watched time, per agent (unit) and UTC hour: *round time* is what its rounds covered (at most
3,600 s); *power-watched time* is round time plus the seconds its ``host_down`` episodes covered
(their union), at most 3,600 s, taken before any merge: merging decides how many interruptions
there were, never how long the line was watched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields, replace
from functools import partial
from itertools import repeat
from operator import attrgetter
from typing import Any

import numpy as np

from collector.columns import CAUSES, HOST_DOWN, POWER, TYPES, Columns, Hours
from collector.episodes import flood, overlaps, power_watched
from collector.repairs import reject, resite, retag
from kit.definitions import CAUSES_BY_TYPE, CLOCK_SET, MAX_INTERVAL_S, Quality, Unit
from kit.records import Dataset, EpisodeColumns, HourColumns, PingColumns, SpeedColumns

# The records of one kind (kit.records: ObsHour, Episode, PingDay, SpeedTest).
Records = Sequence[Any]

SKEW_S = 300.0
MAX_EPISODE_S = 31 * 86400.0
MAX_RTT_MS = 60_000.0
MAX_SPEED_BPS = 10e9
MAX_TESTS_PER_DAY = 48
MAX_EPISODES_PER_DAY = 1440
_SLICE = 1 << 20        # hours made into keys this many at a time
_LOW32 = (1 << 32) - 1


_UNIT, _TYPE, _CAUSE = attrgetter("unit"), attrgetter("type"), attrgetter("cause")
_TAGS_OF = attrgetter(*(f.name for f in fields(Unit)))     # a Unit's tags as a tuple


def _figures(recs: Records, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One optional figure of every record: its values (NaN where None) and where it is None."""
    values = list(map(attrgetter(name), recs))
    none = np.fromiter((v is None for v in values), bool, len(values))
    return np.fromiter((np.nan if v is None else v for v in values), np.float64, len(values)), none


def _col(recs: Records, name: str, dtype: type) -> np.ndarray:
    """One attribute of every record as an array (map and attrgetter: no Python loop)."""
    it = map(attrgetter(name), recs)
    return np.fromiter(it, dtype, len(recs))


def clean(ds: Dataset, regions: Iterable[str], now: float) -> tuple[Columns, Quality]:
    """:func:`clean_taken` of ``ds``, which the caller keeps."""
    return clean_taken([ds], regions, now)


def clean_taken(box: list[Dataset], regions: Iterable[str], now: float) -> tuple[Columns, Quality]:
    """Check every record of the Dataset ``box`` holds (taken out of it: a caller that keeps no
    other reference to it has its records and blocks let go as soon as their columns are made;
    for a quarter of 10,000 agents, 700 MB of hours and daily latency) against ``regions`` (the
    known region codes) and ``now``
    (seconds since 1970 UTC); return the kept records as columns and the counts.

    Each record is checked on its own first and counted once, under the first reason in this
    order: ``missing_agent``, ``not_a_number``, ``clock_unset``, ``future_timestamp``; then a
    record dated outside the window [start, end) is left out uncounted (it belongs to another
    window); then the reasons of its kind (episodes: ``unknown_type``, ``unknown_cause``,
    ``negative_duration``, ``zero_duration``, ``absurd_duration``; hours: ``absurd_observed``;
    days of latency: ``missing_value``, ``absurd_rtt``, ``absurd_loss``; speed tests:
    ``missing_value``, ``absurd_speed``). The records that pass are then repaired
    (``retagged``, or ``unknown_region`` when the agent has no valid region to give; then
    ``site_retagged``), each counted once, whatever a later rule does with it. An agent's
    episodes then go through floods, overlaps and power merges
    (:func:`collector.episodes.overlaps`), and the window's end, in that order
    (docs/collector.md, bad data)."""
    q = Quality()
    met = _Units()
    ds = box.pop()
    # the hours' blocks held here alone, each let go once its columns are copied out
    blocks: list[HourColumns | None] = list(ds.hours)
    ep_blocks: list[EpisodeColumns | None] = list(ds.episode_cols)
    sp_blocks: list[SpeedColumns | None] = list(ds.speed_cols)
    pd_blocks: list[PingColumns | None] = list(ds.ping_cols)
    ds = replace(ds, hours=(), episode_cols=(), speed_cols=(), ping_cols=())
    o_unit, o_hour, o_s, o_src = _observed(ds, blocks, met)
    e_unit, e_start, e_dur, e_type, e_cause = _episode_columns(ds, ep_blocks, met)
    s_unit, s_time, (s_down, s_down_none), (s_up, s_up_none) = _speed_columns(ds, sp_blocks, met)
    p_unit, p_cols = _ping_columns(ds, pd_blocks, met)
    _count_paths(q, ds, o_unit, o_hour, o_src, met.units)
    del o_src
    check = _Checks(q, ds, now, np.array([not u.agent for u in met.units], dtype=bool))
    # --- each record on its own
    o_keep = check(o_unit, o_hour, ~np.isfinite(o_s), partial(_absurd_observed, o_s))
    e_keep = _episodes(check, e_unit, e_start, e_dur, e_type, e_cause)
    (p_day, p50, p95, loss, rounds), p_keep = _pings(check, p_unit, *p_cols)
    del p_cols
    s_keep = _speeds(check, s_unit, s_time, s_down, s_down_none, s_up, s_up_none)
    start, end = ds.start, ds.end
    del ds     # every record is in a column now
    # --- repairs, on the records that passed
    unit_cols = [o_unit, e_unit, p_unit, s_unit]
    keeps = [o_keep, e_keep, p_keep, s_keep]
    times = [o_hour, e_start, p_day, s_time]
    unit_cols = retag(q, set(regions), met.units, met.uid, unit_cols, keeps, times)
    unit_cols = resite(q, met.units, met.uid, unit_cols, keeps, times)
    units, (o_unit, e_unit, p_unit, s_unit), unit_agent = _canonical(met.units, unit_cols, keeps)
    # A quarter of 10,000 agents is 21 million observed hours, 170 MB a column: each column of
    # them is let go as soon as it is replaced.
    del unit_cols, times
    # held in the box alone: _summed_hours lets each go once it has used it
    hour_box = [o_unit, _kept(o_hour, o_keep), _kept(o_s, o_keep)]
    del o_unit, o_hour, o_s
    hours = [_summed_hours(q, hour_box)]     # held in ``hours`` alone, let go by _agent_episodes
    # --- observed hours, episodes, daily latency, speed tests
    # the kept episodes held in ``eps`` alone (the columns as read let go here), so that the
    # checks that follow let each column go as they replace it
    e_type, e_cause, e_start, e_dur = (a[e_keep] for a in (e_type, e_cause, e_start, e_dur))
    eps = [e_unit, e_type, e_cause, e_start, e_dur]
    del e_keep, e_unit, e_type, e_cause, e_start, e_dur
    (obs, (pw_at, pw_v)), (e_unit, e_type, e_cause, e_start, e_dur, e_whole) = (
        _agent_episodes(q, unit_agent, hours, eps, min(end, now)))
    p_day, p50, p95, loss, rounds = (a[p_keep] for a in (p_day, p50, p95, loss, rounds))
    q.accepted["ping_days"] += int(p_unit.size)
    s_time, s_down, s_up = (a[s_keep] for a in (s_time, s_down, s_up))
    s_unit, s_time, s_down, s_up = flood(q, "flood_speed_tests", MAX_TESTS_PER_DAY,
                                         unit_agent[s_unit], s_time, s_unit, s_time, s_down, s_up)
    q.accepted["speed_tests"] += int(s_unit.size)
    # Episodes come out of overlaps() sorted by agent, type and start, and observed hours out of
    # power_watched() by unit and hour; the rest is sorted here.
    p_unit, p_day, p50, p95, loss, rounds = _by_unit(p_unit, p_day, p50, p95, loss, rounds)
    s_unit, s_time, s_down, s_up = _by_unit(s_unit, s_time, s_down, s_up)
    cols = Columns(start, end, units, obs, pw_at, pw_v, e_unit, e_type, e_cause,
                   e_start, e_dur, e_whole, p_unit, p_day, p50, p95, loss, rounds, s_unit, s_time,
                   s_down, s_up)
    return cols, q


def _absurd_observed(o_s: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The hours' own check: observed time not above 0."""
    return [("absurd_observed", o_s <= 0)]


_SOURCES = {"hourly": 1, "raw": 2}   # ObsHour.source as a code (0: any other)


def _observed(ds: Dataset, blocks: list[HourColumns | None],
              met: _Units) -> tuple[np.ndarray, ...]:
    """Every observed hour of ``ds`` (its records) and of ``blocks`` as columns: unit index
    (int32), hour, observed seconds, source code (:data:`_SOURCES`). Made a column at a time:
    once a column is copied out of a block, the block is replaced in the list by a copy
    without it, so the blocks shrink as the columns grow (at 10,000 x 90 the blocks are 420 MB
    and the columns 440 MB: not both whole at once, for a caller that holds no other
    reference to the blocks); the list is emptied."""
    obs = ds.obs
    first = [met.column(obs).astype(np.int32), _col(obs, "hour", np.int64),
             _col(obs, "observed_s", np.float64),
             np.fromiter(map(_SOURCES.get, map(attrgetter("source"), obs), repeat(0)),
                         np.int8, len(obs))]
    # the unit column first: units are numbered in the order the blocks meet them
    makers: list[tuple[Callable[[HourColumns], Any], Callable[[HourColumns], HourColumns]]] = [
        (lambda b: met.block(b.units, b.unit), lambda b: replace(b, unit=())),
        (lambda b: b.hour, lambda b: replace(b, hour=())),
        (lambda b: b.observed_s, lambda b: replace(b, observed_s=())),
        (lambda b: _SOURCES.get(b.source, 0), lambda b: b)]
    sizes = [0 if b is None else len(b) for b in blocks]
    n = len(obs) + sum(sizes)
    out = []
    for c, (make, drop) in zip(first, makers):
        col = np.empty(n, dtype=c.dtype)
        col[:c.size] = c
        k = c.size
        for i, b in enumerate(blocks):
            if b is None:
                continue
            col[k:k + sizes[i]] = make(b)
            k += sizes[i]
            blocks[i] = drop(b)
            del b
        out.append(col)
    blocks.clear()
    return tuple(out)


def _count_paths(q: Quality, ds: Dataset, o_unit: np.ndarray, hour: np.ndarray,
                 source: np.ndarray, units: list[Unit]) -> None:
    """The ``read`` counters: agents and agent-hours in the window read from hourly summaries
    and from raw rows (an agent read both ways, before and after its upgrade, counts in both).
    ``o_unit``: each observed hour's index into ``units``; ``source``: its code."""
    window = (hour >= ds.start) & (hour < ds.end)
    for kind, name in (("hourly", "summaries"), ("raw", "raw_rows")):
        mine = window & (source == _SOURCES[kind])
        seen = np.zeros(len(units), dtype=bool)
        # a slice at a time: no copy of 21 million units (a sort of them took 2 s)
        for a in range(0, o_unit.size, _SLICE):
            seen[o_unit[a:a + _SLICE][mine[a:a + _SLICE]]] = True
        agents = {units[i].agent for i in np.flatnonzero(seen).tolist()}
        q.read[f"agents_from_{name}"] += len(agents)
        q.read[f"agent_hours_from_{name}"] += int(mine.sum())


class _Units:
    """The units of a dataset's records, numbered in the order they are met."""

    def __init__(self) -> None:
        # keyed by the unit's tags as a plain tuple: hashed and compared in C, where a Unit's
        # own hash and equality run in Python (2.3 s for the 520,000 units of 10,000 agents'
        # 52 answers' blocks, against 0.3 s)
        self.index: dict[tuple[str, ...], int] = {}
        self.units: list[Unit] = []
        # id() of a block's units tuple -> (the tuple, kept alive so the id stays its own; its
        # units' indices)
        self._local: dict[int, tuple[tuple[Unit, ...], np.ndarray]] = {}

    def uid(self, u: Unit) -> int:
        k = _TAGS_OF(u)
        i = self.index.get(k)
        if i is None:
            i = self.index[k] = len(self.units)
            self.units.append(u)
        return i

    def block(self, units: tuple[Unit, ...], unit: Sequence[int]) -> np.ndarray:
        """The unit indices of a block of columns (``unit`` indexing ``units``). Per units tuple
        (many blocks share one): its units' indices, -1 until a row uses one; they are met in
        the order they first appear, as records' units are."""
        held = self._local.get(id(units))
        if held is None:
            held = self._local[id(units)] = (units, np.full(len(units), -1, dtype=np.int64))
        ids = held[1]
        col = np.asarray(unit, dtype=np.int64)
        # each unit's first row, in one pass (a sort of the block's 1.6 M rows took 10x longer)
        first = np.full(len(units), col.size, dtype=np.int64)
        np.minimum.at(first, col, np.arange(col.size))
        todo = np.flatnonzero(first < col.size)
        todo = todo[ids[todo] < 0]
        if todo.size:
            todo = todo[np.argsort(first[todo])]
            met = list(map(units.__getitem__, todo.tolist()))
            got = list(map(self.index.get, map(_TAGS_OF, met)))   # known units: no Python loop
            if None in got:
                got = [self.uid(u) if i is None else i for u, i in zip(met, got)]
            ids[todo] = got
        return ids[col]

    def column(self, recs: Records) -> np.ndarray:
        """Each record's unit index. Records of one series share one Unit object, so units are
        told apart by identity first (fast), then by value (a source may repeat equal Units)."""
        if not recs:
            return np.zeros(0, dtype=np.int64)
        ids = np.fromiter(map(id, map(_UNIT, recs)), np.int64, len(recs))
        _, first, inv = np.unique(ids, return_index=True, return_inverse=True)
        local = np.array([self.uid(recs[i].unit) for i in first.tolist()], dtype=np.int64)
        return local[inv.reshape(-1)]


class _Checks:
    """The checks every record goes through, in :func:`clean`'s order, then its kind's own."""

    def __init__(self, q: Quality, ds: Dataset, now: float, no_agent: np.ndarray) -> None:
        self.q, self.start, self.end = q, ds.start, ds.end
        self.horizon = now + SKEW_S
        self.no_agent = no_agent

    def __call__(self, unit: np.ndarray, time: np.ndarray, nan: np.ndarray,
                 own: Callable[[], list[tuple[str, np.ndarray]]]) -> np.ndarray:
        """The records that pass the checks common to all kinds, then their kind's ``own``
        (reason, bad) pairs; a record outside the window is left out uncounted."""
        q = self.q
        keep = np.ones(unit.size, dtype=bool)
        if unit.size == 0:
            return keep
        reject(q, keep, self.no_agent[unit], "missing_agent")
        reject(q, keep, nan, "not_a_number")
        with np.errstate(invalid="ignore"):
            reject(q, keep, time < CLOCK_SET, "clock_unset")
            reject(q, keep, time > self.horizon, "future_timestamp")
            keep &= (time >= self.start) & (time < self.end)
            for reason, bad in own():
                reject(q, keep, bad, reason)
        return keep


_TYPE_IX = {t: i for i, t in enumerate(TYPES)}
_CAUSE_IX = {c: i for i, c in enumerate(CAUSES)}
# The causes each type may have, as a table of type index x cause index.
_VALID = np.zeros((len(TYPES), len(CAUSES)), dtype=bool)
for _t, _cs in CAUSES_BY_TYPE.items():
    for _c in _cs:
        _VALID[_TYPE_IX[_t], _CAUSE_IX[_c]] = True


def _filled(first: list[np.ndarray], blocks: list[Any], parts: Callable[[Any], list[np.ndarray]]
            ) -> list[np.ndarray]:
    """Columns of the records' columns ``first`` followed by each block's ``parts``, copied
    into columns made once (of ``first``'s types); each block is taken out of ``blocks`` as it
    is copied, so a caller holding no other reference lets it go at once (at 10,000 x 90 the
    blocks of episodes, speed tests and latency are 230 MB)."""
    k = first[0].size
    n = k + sum(len(b) for b in blocks if b is not None)
    out = [np.empty(n, dtype=c.dtype) for c in first]
    for o, c in zip(out, first):
        o[:k] = c
    for i, block in enumerate(blocks):
        blocks[i] = None
        if block is None:
            continue
        cols = parts(block)
        m = cols[0].size
        for o, c in zip(out, cols):
            o[k:k + m] = c
        k += m
        del block, cols
    return out


def _episode_columns(ds: Dataset, blocks: list[EpisodeColumns | None],
                     met: _Units) -> tuple[np.ndarray, ...]:
    """Every episode of ``ds`` (its records) and of ``blocks`` (taken out of the list as they
    are copied) as columns: unit index, start, duration, type index and cause index (-1 for
    one that is not known; both int8: 3 million episodes at 10,000 x 90)."""
    eps = ds.episodes
    n = len(eps)
    first = [met.column(eps), _col(eps, "start", np.float64), _col(eps, "duration_s", np.float64),
             np.fromiter(map(_TYPE_IX.get, map(_TYPE, eps), repeat(-1)), np.int8, n),
             np.fromiter(map(_CAUSE_IX.get, map(_CAUSE, eps), repeat(-1)), np.int8, n)]

    def parts(b: EpisodeColumns) -> list[np.ndarray]:
        names_t = np.array([_TYPE_IX.get(v, -1) for v in b.names] or [-1], dtype=np.int8)
        names_c = np.array([_CAUSE_IX.get(v, -1) for v in b.names] or [-1], dtype=np.int8)
        return [met.block(b.units, b.unit), np.asarray(b.start, dtype=np.float64),
                np.asarray(b.duration_s, dtype=np.float64),
                names_t[np.asarray(b.type, dtype=np.int64)],
                names_c[np.asarray(b.cause, dtype=np.int64)]]
    return tuple(_filled(first, blocks, parts))


def _episodes(check: _Checks, unit: np.ndarray, e_start: np.ndarray, e_dur: np.ndarray,
              e_type: np.ndarray, e_cause: np.ndarray) -> np.ndarray:
    """Which episodes (unit, start, duration, type index, cause index; -1 for an unknown one)
    pass."""
    return check(unit, e_start, ~np.isfinite(e_start) | ~np.isfinite(e_dur), lambda: [
        ("unknown_type", e_type < 0),
        ("unknown_cause", (e_cause < 0) | ~_VALID[np.maximum(e_type, 0), np.maximum(e_cause, 0)]),
        ("negative_duration", e_dur < 0),
        ("zero_duration", e_dur == 0),
        ("absurd_duration", e_dur > MAX_EPISODE_S)])


def _ping_columns(ds: Dataset, blocks: list[PingColumns | None], met: _Units
                  ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Every day of latency of ``ds`` (its records) and of ``blocks`` (taken out of the list
    as they are copied) as columns: unit index, and (values, where none) for the day, p50,
    p95, loss, rounds, minimum and maximum (a record's None is NaN in its column and marked
    none; in columns, a NaN is none)."""
    pds = ds.pings
    first = [met.column(pds)]
    for v, none in ([(_col(pds, "day", np.int64), np.zeros(len(pds), dtype=bool))]
                    + [_figures(pds, a) for a in _PING_FIGURES]
                    + [(_col(pds, "rounds", np.int64), np.zeros(len(pds), dtype=bool))]):
        first += [v, none]

    def parts(b: PingColumns) -> list[np.ndarray]:
        day = np.asarray(b.day, dtype=np.int64)
        out = [met.block(b.units, b.unit), day, np.zeros(day.size, dtype=bool)]
        for a in _PING_FIGURES:
            f = np.asarray(getattr(b, a), dtype=np.float64)
            out += [f, np.isnan(f)]
        return out + [np.asarray(b.rounds, dtype=np.int64), np.zeros(day.size, dtype=bool)]
    unit, *rest = _filled(first, blocks, parts)
    return unit, [(rest[k], rest[k + 1]) for k in range(0, len(rest), 2)]


_PING_FIGURES = ("rtt_p50_ms", "rtt_p95_ms", "loss_pct", "rtt_min_ms", "rtt_max_ms")


def _pings(check: _Checks, unit: np.ndarray, *cols: tuple[np.ndarray, np.ndarray]
           ) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Days of latency (:func:`_ping_columns`): (day, p50, p95, loss, rounds) and which pass."""
    (p_day, _), (p50, p50_none), (p95, p95_none), (loss, loss_none), (lo, lo_none), \
        (hi, hi_none), (rounds, _) = cols
    # A figure the record does not have (None: the loss of a day, its extremes) is NaN in its
    # column; a NaN or infinite value the record has is not a number.
    keep = check(unit, p_day, (~np.isfinite(p50) & ~p50_none) | (~np.isfinite(p95) & ~p95_none)
                 | (~np.isfinite(loss) & ~loss_none) | (~np.isfinite(lo) & ~lo_none)
                 | (~np.isfinite(hi) & ~hi_none), lambda: [
        ("missing_value", p50_none | p95_none),      # a day of latency without its latency
        # The day's median hides one absurd round; its minimum and maximum do not.
        ("absurd_rtt", (np.fmin(p50, lo) < 0) | (np.fmax(p95, hi) > MAX_RTT_MS)),
        ("absurd_loss", (loss < 0) | (loss > 100))])
    return (p_day, p50, p95, loss, rounds), keep


def _speed_columns(ds: Dataset, blocks: list[SpeedColumns | None], met: _Units
                   ) -> tuple[Any, ...]:
    """Every speed test of ``ds`` (its records) and of ``blocks`` (taken out of the list as
    they are copied) as columns: unit index, time, (download, where it is None), (upload,
    where it is None); a figure that is None is NaN (in columns, a NaN is none)."""
    sps = ds.speeds
    (down, down_none), (up, up_none) = _figures(sps, "download_bps"), _figures(sps, "upload_bps")
    first = [met.column(sps), _col(sps, "time", np.float64), down, down_none, up, up_none]

    def parts(b: SpeedColumns) -> list[np.ndarray]:
        d = np.asarray(b.download_bps, dtype=np.float64)
        u = np.asarray(b.upload_bps, dtype=np.float64)
        return [met.block(b.units, b.unit), np.asarray(b.time, dtype=np.float64), d,
                np.isnan(d), u, np.isnan(u)]
    unit, time, down, down_none, up, up_none = _filled(first, blocks, parts)
    return unit, time, (down, down_none), (up, up_none)


def _speeds(check: _Checks, unit: np.ndarray, s_time: np.ndarray, s_down: np.ndarray,
            s_down_none: np.ndarray, s_up: np.ndarray, s_up_none: np.ndarray) -> np.ndarray:
    """Which speed tests (unit, time, download, upload; NaN where ``*_none``) pass."""
    return check(unit, s_time, ~np.isfinite(s_time) | (~np.isfinite(s_down) & ~s_down_none)
                 | (~np.isfinite(s_up) & ~s_up_none), lambda: [
        ("missing_value", s_down_none),
        ("absurd_speed", (s_down <= 0) | (s_down > MAX_SPEED_BPS) | (s_up <= 0)
         | (s_up > MAX_SPEED_BPS))])


def _canonical(units: list[Unit], unit_cols: list[np.ndarray],
               keeps: list[np.ndarray]) -> tuple[list[Unit], list[np.ndarray], np.ndarray]:
    """The units that kept a record, sorted, and the kept records' unit columns in their
    numbering (the first column renumbered in place when it is int32 and every row is kept),
    so the figures and the bootstrap's draws never depend on the order the source returned
    rows in; with each unit's agent index (units are sorted by agent first: an agent's index
    rises with its units')."""
    used = np.zeros(len(units), dtype=bool)
    for uc, k in zip(unit_cols, keeps):
        used[uc[k]] = True
    order = sorted(np.flatnonzero(used).tolist(), key=units.__getitem__)
    remap = np.full(len(units), -1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    units = [units[i] for i in order]
    agent_ids = [u.agent for u in units]
    unit_agent = np.cumsum([i > 0 and a != agent_ids[i - 1] for i, a in enumerate(agent_ids)],
                           dtype=np.int64) if units else np.zeros(0, dtype=np.int64)
    # the first column (the observed hours: 21 million at 10,000 x 90) as int32, the rest int64;
    # the first renumbered last, in its own memory where every row is kept (the caller's column
    # written over: no second column of 84 MB)
    narrow = remap.astype(np.int32)
    out = [remap[_kept(uc, k)] for uc, k in zip(unit_cols[1:], keeps[1:])]
    uc, k = unit_cols[0], keeps[0]
    if uc.dtype == np.int32 and uc.flags.writeable and k.all():
        for a in range(0, uc.size, _SLICE):
            uc[a:a + _SLICE] = narrow[uc[a:a + _SLICE]]
        first = uc
    else:
        first = narrow[_kept(uc, k)]
    return units, [first, *out], unit_agent


def _kept(a: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``a[keep]``, or ``a`` itself when every row is kept (no copy)."""
    return a if keep.all() else a[keep]


def _summed_hours(q: Quality, box: list[np.ndarray]) -> Hours:
    """One row per unit and hour of the hours in ``box`` (unit, hour, seconds; taken out of it
    and let go as they are used, the hour column written over: 21 million hours are 170 MB a
    column), as runs: records of the
    same unit and hour summed in the order they came (an id used twice shows here), at most
    the hour (``observed_clipped``). They are ordered by a key of unit and hour within the
    hours' span, 4 bytes where it fits (10,000 agents x 90 days: 21 million hours, 84 MB
    instead of 168 MB), each column replaced by its sorted copy one at a time."""
    o_unit, o_hour, o_s = box
    box.clear()
    if o_s.size == 0:
        return Hours.empty()
    lo = int(o_hour.min()) // 3600
    width = int(o_hour.max()) // 3600 - lo + 2      # a unit's hours never touch the next's
    small = (int(o_unit.max()) + 1) * width < 1 << 31     # (units are int32: widened per slice)
    # the keys made in the hour column's own memory, a slice at a time (no third column beside
    # the unit and hour columns)
    key: np.ndarray = (o_hour if o_hour.dtype == np.int64 and o_hour.flags.writeable
                       else o_hour.astype(np.int64))
    del o_hour
    for a in range(0, key.size, _SLICE):
        k = key[a:a + _SLICE]
        k //= 3600
        k -= lo
        k += o_unit[a:a + _SLICE].astype(np.int64) * width
    del o_unit, k       # (a slice's view holds the whole column)
    ordered = not (key.size and np.any(key[1:] <= key[:-1]))  # one row per unit and hour, in order
    if small:
        if ordered:
            key = key.astype(np.int32)
        else:
            held = [key, o_s]
            del key, o_s
            key, o_s = _sorted_small(held)
    elif not ordered:
        k = np.argsort(key, kind="stable")
        key = key[k]
        o_s = o_s[k]
        del k
    if not ordered:
        first = np.empty(key.size, dtype=bool)
        first[0] = True
        np.not_equal(key[1:], key[:-1], out=first[1:])
        if not first.all():
            o_s = np.bincount(np.cumsum(first) - 1, weights=o_s)
            key = key[first]
        del first
    over = o_s > MAX_INTERVAL_S
    if over.any():
        q.clipped["observed_clipped"] += int(over.sum())
        o_s = np.minimum(o_s, MAX_INTERVAL_S)
    q.accepted["obs_hours"] += int(o_s.size)
    return Hours.from_key(key, o_s, width, lo)


def _sorted_small(held: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The keys (int64, each below 2^31; written over) and seconds ``held`` (taken out of the
    list) sorted by key, as int32 keys and seconds, rows of equal key in the order they came:
    each key is sorted with its row number in its low 32 bits, in place, so the sort needs no
    column of row numbers beside it (nor a stable sort's buffer: at 21 million hours, 250 MB)."""
    key, o_s = held
    held.clear()
    if key.size >= 1 << 32:
        k = np.argsort(key, kind="stable")
        return key[k].astype(np.int32), o_s[k]
    for a in range(0, key.size, _SLICE):
        k = key[a:a + _SLICE]
        k <<= 32
        k |= np.arange(a, a + k.size, dtype=np.int64)
    del k
    key.sort()
    out = np.empty_like(o_s)
    for a in range(0, key.size, _SLICE):
        out[a:a + _SLICE] = o_s[key[a:a + _SLICE] & _LOW32]
    del o_s
    narrow = np.empty(key.size, dtype=np.int32)
    for a in range(0, key.size, _SLICE):
        narrow[a:a + _SLICE] = key[a:a + _SLICE] >> 32
    return narrow, out


def _agent_episodes(q: Quality, unit_agent: np.ndarray, hours: list[Hours],
                    eps: list[np.ndarray], stop: float
                    ) -> tuple[tuple[Hours, tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, ...]]:
    """The kept episodes (unit, type, cause, start, duration) through floods, host-down time as
    watched time, overlaps and power merges, and the end ``stop`` (the window's, or "now":
    nothing after it can have been measured). ``hours``: the observed hours as a list (emptied
    here, so the runs it held are let go once power-watched time adds its hours), as
    :func:`_summed_hours` gives them. Returns them (runs, :class:`collector.columns.Hours`)
    with power-watched time ((rows, power-watched time);
    :func:`collector.episodes.power_watched`), and the episodes (unit, type, cause, start,
    counted duration, whole duration)."""
    e_unit, e_type, e_cause, e_start, e_dur = eps
    eps.clear()         # the caller's list: the episodes' columns are held here alone
    e_unit, e_type, e_cause, e_start, e_dur = flood(
        q, "flood_episodes", MAX_EPISODES_PER_DAY, unit_agent[e_unit] * 2 + e_type, e_start,
        e_unit, e_type, e_cause, e_start, e_dur)
    # Host-down time is watched time, taken before any merge: a host_down merged into the
    # battery episode before it stays watched time (docs/collector.md, observed time).
    hd = (e_type == POWER) & (e_cause == HOST_DOWN)
    (obs,) = hours
    hours.clear()       # the caller's list: the hours are held here alone
    obs, watched = power_watched(obs, e_unit[hd], e_start[hd],
                                 np.minimum(e_start[hd] + e_dur[hd], stop))
    box = [e_unit, e_type, e_cause, e_start, e_dur]
    del e_unit, e_type, e_cause, e_start, e_dur, hd     # held in ``box`` alone: overlaps lets go
    e_unit, e_type, e_cause, e_start, e_dur = overlaps(q, unit_agent, box)
    e_whole = e_dur
    late = e_start + e_dur > stop
    if late.any():
        q.clipped["window_clipped"] += int(late.sum())
        e_dur = np.where(late, stop - e_start, e_dur)
        # One that begins only at or after the end (clipped to start where an earlier outage
        # ended, or dated within the skew allowed after "now") has no second in this window:
        # counted as window_clipped only, neither an interruption nor an outage.
        gone = e_dur <= 0
        if gone.any():
            e_unit, e_type, e_cause, e_start, e_dur, e_whole = (
                a[~gone] for a in (e_unit, e_type, e_cause, e_start, e_dur, e_whole))
    q.accepted["episodes"] += int(e_dur.size)
    return (obs, watched), (e_unit, e_type, e_cause, e_start, e_dur, e_whole)


def _by_unit(unit: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """The records sorted by unit, then by each of ``others`` in turn. Records come by time
    within a unit (the answers are in time order), so a stable sort by unit alone usually
    orders them by the first of ``others`` too: checked, it is kept when that key rises
    strictly within each unit (1.2 s less for 3.4 M speed tests at 10,000 x 90). Otherwise
    sorted by unit and the first of ``others``: the later keys only order records equal in
    both (rare: the same agent-day twice), so they are sorted by all only when some are."""
    k = np.argsort(unit, kind="stable")
    if others and k.size > 1:
        u, t = unit[k], others[0][k]
        if not np.all((u[1:] != u[:-1]) | (t[1:] > t[:-1])):
            k = np.lexsort((others[0], unit))
            u, t = unit[k], others[0][k]
            tie = (u[1:] == u[:-1]) & ((t[1:] == t[:-1]) | (np.isnan(t[1:]) & np.isnan(t[:-1]))
                                       if t.dtype.kind == "f" else t[1:] == t[:-1])
            if tie.any():
                k = np.lexsort(tuple(reversed((unit,) + others)))
    return (unit[k],) + tuple(a[k] for a in others)
