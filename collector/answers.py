"""The checks of an InfluxDB ``/query`` answer and what its rows are made into (pure).

An answer comes from outside and is checked at every level before anything is made of it. An
answer that is not InfluxDB's shape (not JSON, ``NaN`` or ``Infinity``, which JSON has not,
nesting beyond reason, ``series`` that is not a list of objects with a string ``name``,
``columns`` that are not strings...) is refused as a whole (:func:`parse_answer`): one SourceError
naming the query and where the shape broke. Rows that are bad one by one are rejected and counted
(:func:`to_records`, :func:`to_counts`). A series whose rows are all good is read in one pass
(:func:`hourly_answer` into columns, :func:`_good_rows`), with the same checks over whole
columns; any other is read row by row. :mod:`collector.influxql` asks the queries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

from kit.definitions import LOCATION_TAGS, MAX_INTERVAL_S, Quality, Unit
from kit.errors import SourceError
from kit.influx import one_line
from kit.lineproto import unescape_tag
from kit.records import Episode, EpisodeColumns, HourColumns, ObsHour, PingDay, SpeedColumns, SpeedTest
from kit.summaries import Rejected, hour_start, latency, observed

TAGS = LOCATION_TAGS       # the unit's tags, in the order of Unit's fields (the agent first)
DAY = 86400
# Times a row may carry when no window is given: 1970 to the end of year 9999 (what a datetime
# can hold), in seconds.
T_MIN, T_MAX = 0.0, 253402300799.0
MAX_COUNT = 2 ** 53        # a count() past this is not a count of rounds (nor an SQLite integer)


def parse_answer(body: bytes, what: str,
                 redact: Callable[[str], str] = lambda text: text) -> Iterator[dict]:
    """The series of a (possibly chunked: one JSON document a line) /query answer, each checked
    to be InfluxDB's shape and returned as ``{"name": str, "tags": dict, "columns": [str, ...],
    "values": list}`` (tag values and rows are checked by :func:`to_records`, which counts what
    it rejects). ``what`` names the query ("the \"round\" query").

    Raises SourceError: "the server's answer to <what> is not InfluxDB's (<where>: <what was
    found>)" for another shape, "<what>: <message>" for an error the server reports, with the
    credential taken out of it by ``redact`` before any cut."""
    lines = [ln for ln in body.splitlines() if ln.strip()]
    for n, line in enumerate(lines):
        where = f"chunk {n + 1}: " if len(lines) > 1 else ""
        try:
            doc = json.loads(line, parse_constant=_refuse_constant)
        except _Constant as exc:
            raise _not_influx(what, f"{where}{exc}, which is not a JSON number") from None
        except RecursionError:
            raise _not_influx(what, f"{where}nested too deeply") from None
        except ValueError as exc:       # UnicodeDecodeError too
            raise _not_influx(what, f"{where}not JSON: {one_line(str(exc), 120)}") from None
        yield from _series_of(doc, what, where, redact)


class _Constant(ValueError):
    pass


def _refuse_constant(name: str):
    # Python's json reads NaN, Infinity and -Infinity; JSON (and InfluxDB) has no such thing.
    raise _Constant(name)


def _not_influx(what: str, detail: str) -> SourceError:
    return SourceError(f"the server's answer to {what} is not InfluxDB's ({detail})")


def _a(v) -> str:
    """What a JSON value is, in words (never the value: it may be huge or hostile)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    return "an object" if isinstance(v, dict) else type(v).__name__


def _expect(v, kind: type, where: str, what: str, *, absent=None):
    """``v`` if it is a ``kind`` (None: ``absent``, when given), else the refusal."""
    if v is None and absent is not None:
        return absent
    if not isinstance(v, kind):
        noun = {list: "a list", dict: "an object", str: "a string"}[kind]
        raise _not_influx(what, f"{where}: {_a(v)} where {noun} was expected")
    return v


def _server_error(v, where: str, what: str, redact: Callable[[str], str]) -> None:
    """An error the server reports (a string), or nothing (absent, null, empty)."""
    if not v:
        return
    raise SourceError(f"{what}: {one_line(redact(_expect(v, str, where, what)), 300)}")


def _series_of(doc, what: str, where: str, redact: Callable[[str], str]) -> Iterator[dict]:
    if not isinstance(doc, dict):
        raise _not_influx(what, f"{where}{_a(doc)} where an object was expected")
    _server_error(doc.get("error"), f"{where}error", what, redact)
    for i, res in enumerate(_expect(doc.get("results"), list, f"{where}results", what, absent=[])):
        at = f"{where}results[{i}]"
        _expect(res, dict, at, what)
        _server_error(res.get("error"), f"{at}.error", what, redact)
        for j, series in enumerate(_expect(res.get("series"), list, f"{at}.series", what,
                                           absent=[])):
            yield checked_series(series, f"{at}.series[{j}]", what)


def checked_series(series, where: str = "series", what: str = "the query") -> dict:
    """One series in InfluxDB's shape (see :func:`parse_answer`), or the refusal."""
    _expect(series, dict, where, what)
    name = _expect(series.get("name"), str, f"{where}.name", what, absent="")
    tags = _expect(series.get("tags"), dict, f"{where}.tags", what, absent={})
    cols = _expect(series.get("columns"), list, f"{where}.columns", what)
    if not all(c.__class__ is str for c in cols):     # (one pass when all are: ~140 per series)
        for k, c in enumerate(cols):
            _expect(c, str, f"{where}.columns[{k}]", what)
    rows = _expect(series.get("values"), list, f"{where}.values", what, absent=[])
    return {"name": name, "tags": tags, "columns": cols, "values": rows}


def _unit(tags: dict) -> Unit | None:
    agent = tags.get("agent") or ""
    if not agent:
        return None
    return Unit(unescape_tag(agent), *(unescape_tag(tags.get(k) or "") for k in TAGS[1:]))


class _Reject(Exception):
    """This row is rejected, counted under ``reason``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _num(v) -> float | None:
    """A value: None when absent or not a number (a string, a boolean); a number that is not
    finite (1e999 reads as infinity; an integer past a float's range) rejects the row."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        raise _Reject("not_a_number") from None
    if not math.isfinite(f):
        raise _Reject("not_a_number")
    return f


def _count(v) -> int:
    """A count() from the server: 0 when absent, else a whole number 0..MAX_COUNT."""
    if v is None:
        return 0
    f = _num(v)
    if f is None or not 0 <= f <= MAX_COUNT:
        raise _Reject("bad_row")
    return int(f)


def _time(v, lo: float, hi: float) -> float | None:
    """A row's time (epoch milliseconds) in seconds, or None when it is not a finite number
    within [lo, hi] (a second's slack either side: epoch=ms truncates)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        t = float(v) / 1000.0      # epoch=ms: episode starts keep their milliseconds
    except OverflowError:
        return None
    return t if lo - 1 <= t <= hi + 1 else None    # NaN and infinities fail this too


def to_records(kind: str, series: dict, q: Quality,
               window: tuple[float, float] | None = None) -> Iterator:
    """Records of one answered series (as :func:`parse_answer` gives it; another shape raises
    SourceError). ``window``: the [start, end) the query asked for, in seconds.

    Rejected and counted (``q.rejected``), one row each: ``bad_tag`` (every row of a series
    whose tag values are not all strings; null is an empty tag), ``missing_agent`` (no agent
    tag), ``bad_row`` (not a list as long as ``columns``; a count that is negative or past
    2^53), ``bad_time`` (a time that is not a number within the window, or
    within 1970..9999 without one; an hourly row not at an hour's start, a day's sums or a daily row not at
    midnight), ``not_a_number`` (a value past a float's range), ``missing_value`` (the row's
    value absent or not a number), and for summaries ``bad_summary`` and ``bad_histogram``
    (:mod:`kit.summaries`)."""
    series = checked_series(series)
    tags, cols, rows = series["tags"], series["columns"], series["values"]
    if any(v is not None and not isinstance(v, str) for v in tags.values()):
        q.rejected["bad_tag"] += len(rows)
        return
    tags = {k: v or "" for k, v in tags.items()}
    unit = _unit(tags)
    if unit is None:
        q.rejected["missing_agent"] += len(rows)
        return
    ix = {c: i for i, c in enumerate(cols)}
    lo, hi = window if window is not None else (T_MIN, T_MAX)
    lo, hi = max(lo, T_MIN), min(hi, T_MAX)
    if kind in _ROW_COLUMNS:
        fast = _good_rows(kind, cols, rows, lo, hi)
        if fast is not None:
            if kind == "episode":
                typ, cause = tags.get("type") or "", tags.get("cause") or ""
                yield from (Episode(unit, typ, cause, t / 1000.0, float(d)) for t, d in fast)
            else:
                yield from (SpeedTest(unit, t / 1000.0, float(dn), None if up is None else float(up))
                            for t, dn, up in fast)
            return
    for row in rows:
        if not isinstance(row, list) or len(row) != len(cols):
            q.rejected["bad_row"] += 1
            continue
        get = lambda c, row=row: row[ix[c]] if c in ix else None  # noqa: E731
        t = _time(get("time"), lo, hi)
        if t is None:
            q.rejected["bad_time"] += 1
            continue
        try:
            rec = _record(kind, unit, tags, t, get, cols, row)
        except _Reject as r:
            q.rejected[r.reason] += 1
            continue
        if rec is not None:
            yield rec


# The kinds read as they are, the columns their queries ask for, and the values each column may
# hold in a good row (the first is the time: an integer of milliseconds).
_ROW_COLUMNS = {"episode": (["time", "duration_s"], ({int}, {int, float})),
                "speed": (["time", "download_bps", "upload_bps"],
                          ({int}, {int, float}, {int, float, type(None)}))}


def _good_rows(kind: str, cols: list, rows: list, lo: float, hi: float) -> list | None:
    """The rows of an episode or speed-test series when every one of them is good (the columns
    asked for, and :func:`_good_columns`), None otherwise, and the series is read row by row,
    counting what it rejects."""
    want = _ROW_COLUMNS[kind][0]
    if cols != want or not rows or set(map(type, rows)) != {list} or set(map(len, rows)) != {len(want)}:
        return None
    return rows if _good_columns(kind, list(zip(*rows)), lo, hi) else None


def _good_columns(kind: str, columns: list, lo: float, hi: float) -> bool:
    """Whether the value columns of an episode or speed-test series (the columns its query asks
    for, each a sequence of the rows' values) are all good: a time within [lo, hi] with
    :func:`_time`'s slack, finite numbers, a null only where a value may be absent; checked
    column by column."""
    for values, allowed in zip(columns, _ROW_COLUMNS[kind][1]):
        if not set(map(type, values)) <= allowed:
            return False
        try:
            if not all(map(math.isfinite, (v for v in values if v is not None))):
                return False
        except OverflowError:
            return False
    ts = columns[0]
    return bool(ts) and min(ts) >= (lo - 1) * 1000 and max(ts) <= (hi + 1) * 1000


def _record(kind: str, unit: Unit, tags: dict, t: float, get, cols: list, row: list):
    """One row's record; None for a row that makes none (a day on which the target never
    answered); _Reject for a bad one."""
    if kind == "obs":
        v = _num(get("observed_s"))
        if v is None:
            raise _Reject("missing_value")
        return ObsHour(unit, int(t), v, "raw")
    if kind == "hobs":
        if not hour_start(t):
            raise _Reject("bad_time")
        try:
            secs = observed(get("observed_s"))
        except Rejected as r:
            raise _Reject(r.reason) from None
        return ObsHour(unit, int(t), secs, "hourly") if secs is not None else None
    if kind == "hping":
        if t % DAY:
            raise _Reject("bad_time")
        # the server's names back to the row's: sum_rtt_h042 -> rtt_h042
        sums = {c[4:] if c.startswith("sum_rtt_h") else c: get(c) for c in cols}
        try:
            return latency(sums).ping_day(unit, int(t))
        except Rejected as r:
            raise _Reject(r.reason) from None
    if kind == "dping":
        if t % DAY:
            raise _Reject("bad_time")
        try:
            # The row's present values only: an answer's columns are every bucket any series
            # has (about 140), most of them null in any one row, and null counts as absent.
            return latency({c: v for c, v in zip(cols, row) if v is not None}).ping_day(unit, int(t))
        except Rejected as r:
            raise _Reject(r.reason) from None
    if kind == "ping":
        answered = _count(get("rounds"))
        if not answered:
            return None  # a day on which the target never answered: no latency, no loss figure
        rows, loss_sum = _count(get("rows")), _num(get("loss_sum"))
        p50, p95, lo, hi = (_num(get(c)) for c in ("p50", "p95", "rtt_min", "rtt_max"))
        loss = (loss_sum - 100.0 * (rows - answered)) / answered if loss_sum is not None else None
        return PingDay(unit, int(t), p50, p95, loss, answered, lo, hi)
    if kind == "episode":
        d = _num(get("duration_s"))
        if d is None:
            raise _Reject("missing_value")
        return Episode(unit, tags.get("type") or "", tags.get("cause") or "", t, d)
    if kind == "speed":
        down = _num(get("download_bps"))
        if down is None:
            raise _Reject("missing_value")
        return SpeedTest(unit, t, down, _num(get("upload_bps")))
    return None


def to_counts(kind: str, series: dict, q: Quality,
              window: tuple[float, float] | None = None) -> Iterator[tuple[int, int]]:
    """(time in s, rows) of one answered count series (COUNT_KINDS). Per-hour counts
    (``bad_rounds``) must fall in ``window``; the ``unset`` counts are of rows before 2000 and
    carry time 0. A malformed row is a counted ``bad_row``/``bad_time``, never an exception."""
    cols = series["columns"]
    ix = {c: i for i, c in enumerate(cols)}
    lo, hi = window if window is not None and kind != "unset" else (T_MIN, T_MAX)
    for row in series["values"]:
        if not isinstance(row, list) or len(row) != len(cols):
            q.rejected["bad_row"] += 1
            continue
        get = lambda c, row=row: row[ix[c]] if c in ix else None  # noqa: E731
        t = _time(get("time"), max(lo, T_MIN), min(hi, T_MAX))
        if t is None:
            q.rejected["bad_time"] += 1
            continue
        try:
            n = _count(get("rows"))
        except _Reject as r:
            q.rejected[r.reason] += 1
            continue
        if n > 0:
            yield int(t), n


_HOUR_MS = 3_600_000


def _hourly_columns(series: dict, window: tuple[float, float]):
    """One ``hourly`` series of observed seconds as columns, when every row is good: (unit,
    times in seconds as int64, observed seconds as float64), rows of 0 seconds kept (the caller
    drops them, as :func:`to_records` makes no record of them). None when any row, tag or
    column is not what the query asks for: :func:`to_records` then reads the series row by row,
    counting what it rejects. The checks are :func:`to_records`' own, over whole columns."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    series = checked_series(series)
    tags, rows = series["tags"], series["values"]
    if series["columns"] != ["time", "observed_s"] or not rows:
        return None
    if any(v is not None and not isinstance(v, str) for v in tags.values()):
        return None
    unit = _unit({k: v or "" for k, v in tags.items()})
    if unit is None or set(map(type, rows)) != {list} or set(map(len, rows)) != {2}:
        return None
    ts, vs = zip(*rows)
    if set(map(type, ts)) != {int} or not set(map(type, vs)) <= {int, float}:
        return None          # booleans, nulls, strings, float times: row by row
    try:
        t = np.array(ts, dtype=np.int64)
        v = np.array(vs, dtype=np.float64)
    except OverflowError:
        return None
    lo, hi = max(window[0], T_MIN), min(window[1], T_MAX)
    t_s = t // 1000
    if (t.min() < (lo - 1) * 1000 or t.max() > (hi + 1) * 1000 or (t % _HOUR_MS).any()
            or not ((v >= 0) & (v <= MAX_INTERVAL_S)).all()):
        return None
    return unit, t_s, v


def hourly_answer(answer: list[dict], window: tuple[float, float], q: Quality,
                   first: dict[str, float], hour_days: set[tuple[str, int]]):
    """One answer of the ``hobs`` query: its good series as one HourColumns block (or None),
    and the records of the others (read row by row). Notes each agent's first hour in
    ``first`` and the agent-days with hours in ``hour_days``, as :meth:`Reader._days` needs."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    units: list[Unit] = []
    hours, secs, counts, recs = [], [], [], []
    for series in answer:
        got = _hourly_columns(series, window)
        if got is None:
            for agent, t in row_times(series, window):
                first[agent] = min(first.get(agent, math.inf), t)
                if window[0] <= t < window[1]:
                    hour_days.add((agent, int(t - t % DAY)))
            recs.extend(to_records("hobs", series, q, window))
            continue
        unit, t_s, v = got
        agent = unit.agent
        first[agent] = min(first.get(agent, math.inf), float(t_s.min()))
        inside = t_s[(t_s >= window[0]) & (t_s < window[1])]
        days = np.unique(inside - inside % DAY, return_index=True)[0]
        hour_days.update((agent, d) for d in days.tolist())
        watched = v != 0
        units.append(unit)
        hours.append(t_s[watched])
        secs.append(v[watched])
        counts.append(int(watched.sum()))
    block = None
    if units:
        block = HourColumns(tuple(units), np.repeat(np.arange(len(units), dtype=np.int32), counts),
                            np.concatenate(hours), np.concatenate(secs), "hourly")
    return block, recs


def row_times(series: dict, window: tuple[float, float]) -> Iterator[tuple[str, float]]:
    """(agent, time in seconds) of each row of a summary series whose time lies in ``window``
    (rows whose time or tags are bad are left to :func:`to_records` to count)."""
    series = checked_series(series)
    tags = series["tags"]
    if any(v is not None and not isinstance(v, str) for v in tags.values()):
        return
    unit = _unit({k: v or "" for k, v in tags.items()})
    if unit is None:
        return
    i = series["columns"].index("time") if "time" in series["columns"] else None
    if i is None:
        return
    for row in series["values"]:
        if isinstance(row, list) and len(row) > i:
            t = _time(row[i], *window)
            if t is not None:
                yield unit.agent, t


def regroup(series: dict, tags: tuple[str, ...], q: Quality) -> Iterator[dict]:
    """One series of a query that asked for its tags as columns (``SELECT ..., "agent", ...``
    without GROUP BY: InfluxDB 1.x answers that 2-3x faster than grouping 10,000 agents' series)
    as the series a ``GROUP BY`` of those tags gives: its rows by their tag values (null as
    absent), the tag columns taken out. A row that is not a list as long as ``columns`` (every
    row, when the columns are not the ones asked for) is a counted ``bad_row``, one whose tag
    value is a list or an object a counted ``bad_tag``; a tag that is another non-string stays
    in its series' tags for :func:`to_records` to reject."""
    series = checked_series(series)
    cols = series["columns"]
    n, width = len(tags), len(cols)
    if n and cols[-n:] != list(tags):
        q.rejected["bad_row"] += len(series["values"])   # not the columns asked for
        return
    keep = width - n
    groups: dict[tuple, list] = {}
    for row in series["values"]:
        if row.__class__ is not list or len(row) != width:
            q.rejected["bad_row"] += 1
            continue
        key = tuple(row[keep:])
        try:
            rows = groups.get(key)
        except TypeError:         # a list or an object where a tag value was expected
            q.rejected["bad_tag"] += 1
            continue
        if rows is None:
            rows = groups[key] = []
        rows.append(row[:keep])
    for key, rows in groups.items():
        yield {"name": series["name"], "tags": {t: v for t, v in zip(tags, key) if v is not None},
               "columns": cols[:keep], "values": rows}



def tagged_rows(kind: str, series: dict, q: Quality, window: tuple[float, float],
                tags: tuple[str, ...], units: dict | None = None) -> tuple[list, Any]:
    """One series of an episode or speed-test query that asked for its ``tags`` (:data:`TAGS`,
    then any others) as columns: (records, block). When every row is good (:func:`_good_columns`'
    checks, each row's tags strings or null, with an agent), the series is read in one pass into
    one :class:`EpisodeColumns` or :class:`SpeedColumns` block (no record per row), a Unit made
    once per set of location tags (``units``: shared by the caller across answers), and the
    records are none. Otherwise the block is None and the records come through :func:`regroup`
    and :func:`to_records`, row by row, counting what is rejected. (An answer chunk of 20,000
    rows holds nearly as many tag sets as rows: grouped first, each would be a series of one
    row.)"""
    series = checked_series(series)
    cols, rows = series["columns"], series["values"]
    want = _ROW_COLUMNS[kind][0]
    if cols == want + list(tags) and tuple(tags[:len(TAGS)]) == TAGS and rows:
        block = _tagged_block(kind, rows, len(want) + len(tags), window,
                              {} if units is None else units)
        if block is not None:
            return [], block
    return [r for s in regroup(series, tags, q) for r in to_records(kind, s, q, window)], None


def _tagged_block(kind: str, rows: list, width: int, window: tuple[float, float],
                  units: dict) -> EpisodeColumns | SpeedColumns | None:
    """The rows of :func:`tagged_rows` as one block when every one is good, else None."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    if set(map(type, rows)) != {list} or set(map(len, rows)) != {width}:
        return None
    columns = list(zip(*rows))
    w, k = len(_ROW_COLUMNS[kind][0]), len(TAGS)
    if not _good_columns(kind, columns[:w], max(window[0], T_MIN), min(window[1], T_MAX)):
        return None
    # Each row's unit: its location tags, numbered in the order they are met.
    local: dict[tuple, int] = {}
    try:
        index = [local.setdefault(key, len(local)) for key in zip(*columns[w:w + k])]
    except TypeError:             # a list or an object as a tag value
        return None
    made = []
    for key in local:
        unit = units.get(key, False)
        if unit is False:
            good = all(v is None or v.__class__ is str for v in key)
            unit = units[key] = _unit(dict(zip(TAGS, key))) if good else None
        if unit is None:          # a tag that is not a string, or no agent
            return None
        made.append(unit)
    n = len(rows)
    unit_ix = np.fromiter(index, np.int32, n)
    start = np.fromiter(columns[0], np.float64, n) / 1000.0
    value = np.fromiter(map(float, columns[1]), np.float64, n)
    if kind == "speed":
        up = np.fromiter((math.nan if v is None else float(v) for v in columns[2]), np.float64, n)
        return SpeedColumns(tuple(made), unit_ix, start, value, up)
    names: dict[str, int] = {}
    try:
        typ, cause = ([names.setdefault("" if v is None else v, len(names)) for v in columns[c]]
                      for c in (w + k, w + k + 1))
    except TypeError:             # a list or an object as a type or cause
        return None
    if not all(v.__class__ is str for v in names):
        return None
    return EpisodeColumns(tuple(made), unit_ix, tuple(names), np.fromiter(typ, np.int32, n),
                          np.fromiter(cause, np.int32, n), start, value)
