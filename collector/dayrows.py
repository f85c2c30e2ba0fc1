"""The packed ``daily`` rows read back (pure): one row per agent-day gives its observed hours and
its latency (kit.hourly.day_fields writes it; docs/metrics.md lists its fields).

A month of 10,000 agents is 300,000 such rows, so they are read a whole answer at a time: the
rows' packed strings are joined and parsed as numbers in one call, checked as whole columns
(:func:`_fast`), and the day's p50 and p95 found in the merged histograms by one binary search
over their running sums. That is what the row-by-row reading (:func:`_row`, through
kit.summaries: ``packed_hours``, ``packed_latency``) gives, value for value (a property test
holds both to it). An answer with any row that is not what the agent writes is read row by row,
so every rejection is counted by reason, as for any other row.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import count, repeat
from operator import attrgetter
from typing import Any

from collector.answers import DAY, T_MAX, T_MIN, TAGS, _time, _unit, checked_series, parse_answer
from collector.packed import COLON, COMMA, NUMBER_CHARS, Bad, covers, only, read
from kit.definitions import MAX_INTERVAL_S, Quality, Unit
from kit.hourly import LAST, bucket_value
from kit.records import HourColumns, PingColumns
from kit.summaries import MAX_COUNT, NUMBER, Rejected, packed_hours, packed_latency

# The columns of the packed daily query (collector.influxql.day_query), the tags after them.
DAY_COLUMNS = ["time", "observed_hours", "rtt_buckets", "rtt_count", "ping_rounds",
               "loss_pct_sum", "rtt_min_ms", "rtt_max_ms", "outages", "speed_tests"]
_LATENCY = 8       # the columns up to the packed rows
_PAIR_CHARS = b"0123456789:,"      # all a packed histogram holds
_VALUES: list[float] = [bucket_value(i) for i in range(LAST + 1)]
_FULL_DAY = ",".join(["3600"] * 24)
_TAGS = attrgetter(*(f.name for f in dataclasses.fields(Unit)))     # a Unit's tags as a tuple


def _numbers(text: str, dtype):
    """The comma-separated numbers of ``text`` as an array, each distinct text parsed once
    (most repeat: 3600, a bucket's index); ValueError for one that kit.summaries.NUMBER does
    not match."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    tokens = text.split(",")
    seen: dict[str, int] = {}
    # each token -> where it first occurs (map and count: no Python-level loop per token)
    at = np.fromiter(map(seen.setdefault, tokens, count()), np.int64, len(tokens))
    if not all(map(NUMBER.fullmatch, seen)):
        raise ValueError("not a number as the agent writes one")
    table = np.zeros(len(tokens), dtype=dtype)
    table[np.fromiter(seen.values(), np.int64, len(seen))] = np.array(list(seen), dtype=dtype)
    return table[at]


def _pairs(text: str, n: int):
    """The ``n`` "<index>:<count>" pairs of ``text`` joined by commas (1-3 and 1-16 ASCII
    digits) as index, count, index, ... in int64; None when the text is not exactly that."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    ascii_ = only(text, _PAIR_CHARS)
    if ascii_ is None:
        return None
    b = np.frombuffer(ascii_, np.uint8)
    at = np.flatnonzero((b == COLON) | (b == COMMA))
    sep = b[at]
    if at.size != 2 * n - 1 or (sep[0::2] != COLON).any() or (sep[1::2] != COMMA).any():
        return None
    runs = np.diff(at, prepend=-1, append=b.size) - 1
    if runs.min() < 1 or runs[0::2].max() > 3 or runs[1::2].max() > 16:
        return None
    out = np.fromstring(text.replace(":", ","), sep=",", dtype=np.int64)
    return out


class Days:
    """What a packed daily answer tells :meth:`collector.influxql.Reader._days`, per week:
    ``packed`` (agent -> the days it has a packed row on), ``unpacked`` (agents with a daily row
    of a version that packs nothing: their hourly rows are read instead), ``covered`` (agent ->
    the days whose episodes and speed tests its daily rows carry, collector.packed) and
    ``uncovered`` (agent -> days with a packed row that does not carry them). The order of
    agents and of days within ``packed`` means nothing (its readers take a minimum and ask
    membership)."""

    def __init__(self) -> None:
        self.packed: dict[str, list[int]] = {}
        self.unpacked: set[str] = set()
        self.covered: dict[str, set[int]] = {}
        self.uncovered: dict[str, set[int]] = {}

    def has(self, agent: str, day: int) -> bool:
        return day in self.packed.get(agent, ())

    def carries(self, agent: str, day: int) -> bool:
        """Whether the daily rows read carry the agent-day's episodes and speed tests."""
        return day in self.covered.get(agent, ())


@dataclass
class Daily:
    """One packed daily answer read by :func:`read_daily`: what :func:`daily_answer` returns
    (hours block, latency records, episode and speed-test blocks) and what it noted (the
    counts, each agent's first watched hour, the agent-days read)."""

    block: Any
    pings: Any        # a PingColumns block, or None
    episodes: Any
    speeds: Any
    quality: Quality = field(default_factory=Quality)
    first: dict[str, float] = field(default_factory=dict)
    days: Days = field(default_factory=Days)


def shared_units(daily: Daily, seen: dict[tuple, Unit]) -> Daily:
    """``daily`` with its blocks' units tuple (one for all four) made of the Units an earlier
    answer met, by their tags (``seen``, kept by the caller across answers). A worker process
    unpickles Units of its own for each answer: at 10,000 agents x 13 weekly answers, 130,000
    Units where 10,000 do (about 50 MB)."""
    blocks = [daily.block, daily.pings, daily.episodes, daily.speeds]
    held = next((b.units for b in blocks if b is not None), None)
    if held is None:
        return daily
    own = tuple(seen.setdefault(_TAGS(u), u) for u in held)
    return dataclasses.replace(daily, **{
        name: None if b is None else dataclasses.replace(b, units=own) if b.units is held else b
        for name, b in zip(("block", "pings", "episodes", "speeds"), blocks)})


def read_daily(body: bytes, what: str, window: tuple[float, float],
               rows_window: tuple[float, float] | None = None) -> Daily:
    """The packed daily query's answer ``body`` (its bytes, :func:`collector.answers.parse_answer`)
    read by :func:`daily_answer` into a :class:`Daily` of its own: a job that can run in a
    worker process (collector.apart), its results merged by the caller in the order of the
    answers. Raises SourceError for an answer that is not InfluxDB's (the caller redacts it)."""
    q, first, days = Quality(), {}, Days()
    block, pings, eps, tests = daily_answer(parse_answer(body, what), window, q, first, days,
                                            None, rows_window)
    return Daily(block, pings, eps, tests, q, first, days)


def daily_answer(answer: Iterable[dict], window: tuple[float, float], q: Quality,
                 first: dict[str, float], days: Days, cache: dict | None = None,
                 rows_window: tuple[float, float] | None = None):
    """One answer of the packed daily query: each agent-day's observed hours (one HourColumns
    block for the answer, or None), its latency (a PingColumns block, or None), and the
    episodes and speed
    tests its rows carry (collector.packed: an EpisodeColumns and a SpeedColumns block, or
    None), those dated in ``rows_window`` (default ``window``). Notes each agent's first
    watched hour in ``first`` and the agent-days read in ``days``.

    Rejected and counted as collector.answers.to_records does (``bad_row``, ``bad_tag``,
    ``missing_agent``, ``bad_time``: not a midnight in the window), and per row
    ``bad_summary`` (hours that are not 24 numbers in [0, 3600]: the day's hours are lost, its
    latency judged on its own) and ``bad_histogram`` (kit.summaries.packed_latency). A daily row
    without ``observed_hours`` (a version that packs nothing) is left to the hourly reading; one
    whose ``outages`` or ``speed_tests`` is not what the agent writes counts ``bad_summary``,
    and its agent-day's rows are left to the row queries. ``cache``: location tags -> Unit,
    shared by the caller across answers."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    cache = {} if cache is None else cache
    units: Any = []        # a list, then the tuple every block shares
    index: dict[Unit, int] = {}
    who: list[int] = []
    rows: list[list] = []
    packs: list[tuple[str, str] | None] = []    # each row's packed rows, when it carries them
    # this answer's tag values -> [Unit, its index in ``units`` (-1 until a row uses it)], or
    # the reason its rows are rejected: the tags as a tuple, hashed and compared in C
    known: dict[tuple, Any] = {}
    lo, hi = max(window[0], T_MIN), min(window[1], T_MAX)
    w, width = len(DAY_COLUMNS), len(DAY_COLUMNS) + len(TAGS)
    for raw in answer:
        series = checked_series(raw)
        if series["columns"] != DAY_COLUMNS + list(TAGS):
            q.rejected["bad_row"] += len(series["values"])   # not the columns asked for
            continue
        for row in series["values"]:
            if row.__class__ is not list or len(row) != width:
                q.rejected["bad_row"] += 1
                continue
            key = tuple(row[w:])
            try:
                seen = known.get(key)
            except TypeError:             # a list or an object as a tag value
                q.rejected["bad_tag"] += 1
                continue
            if seen is None:
                seen = known[key] = _known(key, cache)
            if seen.__class__ is str:
                q.rejected[seen] += 1
                continue
            if row[1] is None:
                days.unpacked.add(seen[0].agent)
                continue
            k = seen[1]
            if k < 0:
                k = index.get(seen[0])
                if k is None:
                    k = index[seen[0]] = len(units)
                    units.append(seen[0])
                seen[1] = k
            who.append(k)
            rows.append(row[:_LATENCY])
            carried = covers(row[_LATENCY], row[_LATENCY + 1])
            if carried is None:
                q.rejected["bad_summary"] += 1
            packs.append((row[_LATENCY], row[_LATENCY + 1]) if carried else None)
    if not rows:
        return None, None, None, None
    # one tuple for every block of the answer (each makes tuple() of it: the same object), so
    # the checks map its units once, not once per block (collector.clean._Units.block)
    units = tuple(units)
    got = _fast(units, who, rows, lo, hi)
    if got is None:
        got = _slow(units, who, rows, lo, hi, q)
    unit_of, hour, secs, day_of, pings = got
    if not isinstance(pings, PingColumns):
        pings = PingColumns.of(pings)
    eps, tests = _carried(units, who, rows, packs, days, q, rows_window or window, (lo, hi))
    _note_days(units, day_of, days)
    if len(hour):
        # each unit's first watched hour (the rows come sorted by time within a unit)
        order = np.lexsort((hour, unit_of))
        u, h = unit_of[order], hour[order]
        starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
        for k, t in zip(u[starts].tolist(), h[starts].tolist()):
            agent = units[k].agent
            first[agent] = min(first.get(agent, math.inf), float(t))
    block = HourColumns(tuple(units), unit_of.astype(np.int32), hour, secs, "hourly") if len(hour) else None
    return block, pings, eps, tests


def _known(key: tuple, cache: dict) -> Any:
    """What one set of tag values in a daily answer is: [its Unit, -1], or the reason its rows
    are rejected (``missing_agent``, ``bad_tag``). ``cache``: tag values -> Unit (or None),
    shared across answers."""
    unit = cache.get(key, False)
    if unit is False:
        strings = all(v is None or v.__class__ is str for v in key)
        unit = cache[key] = _unit(dict(zip(TAGS, key))) if strings else None
    if unit is None:
        return "missing_agent" if all(v is None or v.__class__ is str for v in key) else "bad_tag"
    return [unit, -1]


def _note_days(units, day_of, days: Days) -> None:
    """Note in ``days.packed`` each agent's days read: ``day_of`` is (unit index, day) of
    each, as two columns or as pairs; grouped by unit with one stable sort, not row by row."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    if not isinstance(day_of, tuple):
        day_of = (np.array([k for k, _ in day_of], dtype=np.int64),
                  np.array([d for _, d in day_of], dtype=np.int64))
    who, day = day_of
    if not len(who):
        return
    order = np.argsort(who, kind="stable")
    who, day = who[order], day[order]
    cut = np.flatnonzero(who[1:] != who[:-1]) + 1
    for k, a, b in zip(who[np.r_[0, cut]].tolist(), np.r_[0, cut].tolist(),
                       np.r_[cut, who.size].tolist()):
        days.packed.setdefault(units[k].agent, []).extend(day[a:b].tolist())


def _carried(units, who, rows, packs, days: Days, q: Quality, window: tuple[float, float],
             when: tuple[float, float]):
    """The episodes and speed tests of the rows that carry them (``packs``), when every daily
    row of their agent-day does and is dated at a midnight in ``when`` (the rows' window, as
    their hours are read); each agent-day noted in ``days``
    as covered or not. Every packed text is checked (collector.packed.read, all at once; one
    by one when any is bad): one that is not what the agent writes counts ``bad_summary`` and
    leaves its agent-day to the row queries."""
    day_of: list[int | None] = []
    for row in rows:
        t = row[0]
        # a row not at a midnight in the window is counted (bad_time) by the hours' reading
        day_of.append(t // 1000 if t.__class__ is int and not t % (DAY * 1000)
                      and _time(t, *when) is not None else None)
    packed = [i for i, p in enumerate(packs) if p is not None and day_of[i] is not None]

    def of(ix: list[int]):
        return read(units, [who[i] for i in ix], [day_of[i] for i in ix],
                    [packs[i][0] for i in ix], [packs[i][1] for i in ix], window)

    try:
        got = of(packed)
    except Bad:
        got = None
        for i in packed:
            try:
                of([i])
            except Bad:
                q.rejected["bad_summary"] += 1
                packs[i] = None
    take = _covering(units, who, day_of, packs, days)
    if got is not None and len(take) == len(packed):
        return got
    return of(sorted(take)) if take else (None, None)


def _covering(units, who, day_of: list[int | None], packs: list, days: Days) -> list[int]:
    """The rows (rising) of the agent-days whose every row dated at a midnight carries its
    packed rows; each such agent-day noted in ``days`` as covered, each other one as not, in
    the order they first appear. Grouped by a sort of (agent, day) keys: 300,000 rows a week
    of 10,000 agents."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    dated = [i for i, d in enumerate(day_of) if d is not None]
    if not dated:
        return []
    agent_ix: dict[str, int] = {}
    agents = np.array([agent_ix.setdefault(u.agent, len(agent_ix)) for u in units], dtype=np.int64)
    names = list(agent_ix)
    rows = np.array(dated, dtype=np.int64)
    day = np.array([day_of[i] for i in dated], dtype=np.int64)
    lo = int(day.min())
    span = int(day.max()) - lo + 1
    key = agents[np.asarray(who, dtype=np.int64)[rows]] * span + (day - lo)
    uk, first, inv = np.unique(key, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    whole = np.ones(uk.size, dtype=bool)
    whole[inv[np.fromiter((packs[i] is None for i in dated), bool, len(dated))]] = False
    for g in np.argsort(first, kind="stable").tolist():
        k = int(uk[g])
        agent, d = names[k // span], k % span + lo
        (days.covered if whole[g] else days.uncovered).setdefault(agent, set()).add(d)
    take: list[int] = rows[whole[inv]].tolist()
    return take


def _fast(units, who, rows, lo, hi):
    """The whole answer's hours and latency when every row is what the agent writes, checked
    column by column; None otherwise (it is then read row by row)."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    n = len(rows)
    t, hours, buckets, rtt_count, pings, loss, rmin, rmax = zip(*rows)
    if set(map(type, t)) != {int} or set(map(type, hours)) != {str} or set(map(type, buckets)) != {str}:
        return None
    if not set(map(type, rtt_count)) <= {int} or not set(map(type, pings)) <= {int}:
        return None
    if not set(map(type, loss)) <= {int, float} or not set(map(type, rmin)) <= {int, float, type(None)} \
            or not set(map(type, rmax)) <= {int, float, type(None)}:
        return None
    try:
        ts = np.array(t, dtype=np.int64)
        cnt = np.array(rtt_count, dtype=np.int64)
        rounds = np.array(pings, dtype=np.int64)
        loss_sum = np.array(loss, dtype=np.float64)
    except OverflowError:
        return None
    if (ts % (DAY * 1000)).any() or ts.min() < lo * 1000 or ts.max() >= hi * 1000:
        return None
    if (cnt < 0).any() or (cnt > MAX_COUNT).any() or (rounds < 0).any() or (rounds > MAX_COUNT).any() \
            or (cnt > rounds).any() or not np.isfinite(loss_sum).all():
        return None
    try:
        if not all(math.isfinite(v) for v in (*rmin, *rmax) if v is not None):
            return None
    except OverflowError:       # an integer past any float: read row by row, counted there
        return None
    # the hours: 24 numbers a row, in [0, 3600]; a day watched throughout is one text
    part = [i for i, h in enumerate(hours) if h != _FULL_DAY]
    text = ",".join([hours[i] for i in part])
    if any(hours[i].count(",") != 23 for i in part) or only(text, NUMBER_CHARS) is None:
        return None
    grid = np.full((n, 24), float(MAX_INTERVAL_S))
    if part:
        try:
            grid[part] = _numbers(text, np.float64).reshape(len(part), 24)
        except ValueError:
            return None
        if not ((grid >= 0) & (grid <= MAX_INTERVAL_S)).all():
            return None
    # the histograms: "<index>:<count>" pairs, indexes rising within a row; the rows that have
    # any joined by commas are pairs joined by commas exactly when each row is (one match for
    # the answer, not one a row)
    joined = ",".join(b for b in buckets if b)
    pairs = np.fromiter(map(str.count, buckets, repeat(",")), np.int64, n)
    pairs += np.fromiter(map(bool, buckets), np.int64, n)
    nums = _pairs(joined, int(pairs.sum())) if joined else np.zeros(0, dtype=np.int64)
    if nums is None:
        return None
    idx, c = nums[0::2], nums[1::2]
    if (idx > LAST).any() or (c > MAX_COUNT).any():
        return None
    if c.sum(dtype=np.float64) >= 2.0 ** 62:    # the running sums below would pass int64's end
        return None
    row_of = np.repeat(np.arange(n), pairs)
    if ((np.diff(idx) <= 0) & (row_of[1:] == row_of[:-1])).any():
        return None
    end = np.cumsum(pairs)
    cum = np.cumsum(c)
    if cum.size:
        before = np.where(end - pairs > 0, cum[np.maximum(end - pairs - 1, 0)], 0)
        total = np.where(pairs > 0, cum[np.maximum(end - 1, 0)] - before, 0)
    else:
        before = total = np.zeros(n, dtype=np.int64)
    if (total != cnt).any():
        return None
    # hours: a column per UTC hour, the unwatched left out
    day = ts // 1000
    r, col = np.nonzero(grid)
    who_a = np.array(who, dtype=np.int64)
    unit_of = who_a[r]
    hour = day[r] + col * 3600
    values = grid[r, col]
    # latency: p50 and p95 as Histogram.quantile gives them
    vals = np.array(_VALUES)
    p50, p95 = np.full(n, np.nan), np.full(n, np.nan)
    if cum.size:
        for pct, out in ((50, p50), (95, p95)):
            k = np.floor(total * pct / 100.0 + 0.5).astype(np.int64) - 1
            ok = (k >= 0) & (k < total)
            at = np.searchsorted(cum, before + k + 1, side="left")
            out[:] = np.where(ok, vals[idx[np.minimum(at, idx.size - 1)]], np.nan)
    # latency: a day with rounds; a figure it lacks as NaN (every other figure is finite here)
    some = np.flatnonzero(rounds)

    def extreme(v: tuple) -> Any:
        return np.array([math.nan if x is None else x for x in v], dtype=np.float64)[some]
    lat = PingColumns(tuple(units), who_a[some].astype(np.int32), day[some], p50[some],
                      p95[some], loss_sum[some] / rounds[some] + 0.0, rounds[some], extreme(rmin),
                      extreme(rmax))
    return unit_of, hour, values, (who_a, day), lat


def _slow(units, who, rows, lo, hi, q: Quality):
    """Row by row, counting what is rejected (see :func:`daily_answer`)."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    unit_of, hours, secs, day_of, recs = [], [], [], [], []
    for k, row in zip(who, rows):
        t = _time(row[0], lo, hi)
        if t is None or t % DAY:
            q.rejected["bad_time"] += 1
            continue
        day = int(t)
        day_of.append((k, day))
        try:
            per_hour = packed_hours(row[1])
        except Rejected as r:
            q.rejected[r.reason] += 1
        else:
            for h, v in enumerate(per_hour):
                if v:
                    unit_of.append(k)
                    hours.append(day + h * 3600)
                    secs.append(v)
        try:
            lat = packed_latency(dict(zip(DAY_COLUMNS[2:], row[2:])))
        except Rejected as r:
            q.rejected[r.reason] += 1
            continue
        rec = lat.ping_day(units[k], day)
        if rec is not None:
            recs.append(rec)
    return (np.array(unit_of, dtype=np.int64), np.array(hours, dtype=np.int64),
            np.array(secs, dtype=np.float64), day_of, recs)
