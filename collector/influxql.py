"""Reading agents' data from InfluxDB through InfluxQL on the v1 ``/query`` endpoint.

InfluxQL is the one query language InfluxDB 1.x, 2.x (>= 2.4, through DBRP mappings) and 3.x all
answer. The aggregation the statistics need first is pushed into the queries, so a month of
10-second rounds never crosses the wire:

* ``round``: observed seconds per agent and UTC hour (``sum(interval_s) GROUP BY time(1h)``) over
  the rounds whose ``interval_s`` lies in (0, 3600]; the others are counted per hour
  (``absurd_observed``) by one more query;
* ``ping``: per agent and UTC day, the median and 95th percentile of ``rtt_avg_ms`` to internet
  targets and the mean loss over rounds in which the target answered at all;

both over whole UTC days, a week per query at most, and kept in a local cache once a day is over
(:mod:`collector.cache`), so a repeated aggregation asks only for recent days;
* ``outage`` (power and connectivity) and ``speedtest`` (status ok): the rows themselves, which
  are few (one per episode or test);
* rows dated before 2000-01-01 (a clock never set): counted on every run, one cheap count per
  measurement (``clock_unset``), and never read.

The query text is built by pure functions (tested); :class:`Reader` is the thin I/O edge.
Responses are read with ``chunked=true``: InfluxDB's row limit (max-row-limit) applies only to
answers that are not chunked, so every row arrives.

An answer comes from outside and is checked at every level before anything is made of it. Its
size and the time it takes are bounded (``max_answer_mb``, ``query_timeout_s``). An answer
that is not InfluxDB's shape (not JSON, ``NaN`` or ``Infinity``, which JSON has not, nesting
beyond reason, ``series`` that is not a list of objects with a string ``name``, ``columns`` that
are not strings...) is refused as a whole: one SourceError naming the query and where the shape
broke. Rows that are bad one by one are rejected and counted (:func:`to_records`).

Longer than the house's 400 lines: one reader, the queries and the checks of their answers side by
side (each query's columns are read back by the code beside it).
"""

from __future__ import annotations

import json
import math
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from urllib.parse import urlencode

from kit.definitions import CLOCK_SET, LOCATION_TAGS, MAX_INTERVAL_S, Quality, Unit
from kit.errors import SourceError
from kit.influx import CUT_CLOSED, CUT_SIZE, CUT_TIME, one_line
from kit.lineproto import unescape_tag
from kit.records import Dataset, Episode, HourColumns, ObsHour, PingDay, SpeedTest
from kit.summaries import Rejected, hour_start, latency, observed

# The tags the queries group by, in the order of Unit's fields (the agent first).
TAGS = LOCATION_TAGS
CHUNK_S = 7 * 86400  # grouped queries are cut into weeks to bound the server's memory
# The measurement each kind of query reads, which names the query in messages.
MEASUREMENT = {"obs": "round", "bad_rounds": "round", "ping": "ping", "episode": "outage",
               "speed": "speedtest", "hobs": "hourly", "dping": "daily", "hping": "hourly"}
# The grouped kinds: summaries first (every agent that writes them), then raw rows for the rest
# (and ``hping``, the server's day sums of hourly rows, for agent-days without a daily row).
SUMMARY_KINDS = ("hobs", "dping", "hping")
RAW_KINDS = ("obs", "bad_rounds", "ping")
MAX_ANSWER_MB = 256        # defaults of [collector] max_answer_mb and query_timeout_s
QUERY_TIMEOUT_S = 900.0
# Times a row may carry when no window is given: 1970 to the end of year 9999 (what a datetime
# can hold), in seconds.
T_MIN, T_MAX = 0.0, 253402300799.0
MAX_COUNT = 2 ** 53        # a count() past this is not a count of rounds (nor an SQLite integer)
# Answers that are counts of rows, not records: per hour, rounds with a bad interval_s
# (``absurd_observed``); per measurement, rows from a clock never set (``clock_unset``).
COUNT_KINDS = {"bad_rounds": "absurd_observed", "unset": "clock_unset"}
_GOOD_INTERVAL = f'"interval_s" > 0 AND "interval_s" <= {MAX_INTERVAL_S:g}'
_BAD_INTERVAL = f'("interval_s" <= 0 OR "interval_s" > {MAX_INTERVAL_S:g})'


def ident(name: str) -> str:
    """An InfluxQL identifier, double-quoted."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    """An InfluxQL string literal, single-quoted."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def time_range(start: float, end: float) -> str:
    return f"time >= {int(start * 1e9)} AND time < {int(end * 1e9)}"


def _by(*extra: str) -> str:
    return ", ".join([ident(t) for t in TAGS] + [ident(t) for t in extra])


DAY = 86400


def day_runs(days: list[int], size: int = CHUNK_S) -> list[tuple[int, int]]:
    """Whole UTC days (their starts, sorted) as [a, b) ranges of at most ``size`` seconds, cut
    only at midnights, so no day or hour is ever split between two queries."""
    out: list[tuple[int, int]] = []
    for d in days:
        if out and out[-1][1] == d and d + DAY - out[-1][0] <= size:
            out[-1] = (out[-1][0], d + DAY)
        else:
            out.append((d, d + DAY))
    return out


_REGEX_META = set("\\.+*?()|[]{}^$")


def regex_literal(values) -> str:
    """An InfluxQL regex matching exactly these strings: /^(?:a|b)$/, each one's RE2
    metacharacters escaped and ``/`` written ``\\/`` (the one escape InfluxQL's scanner takes
    out; every other backslash reaches RE2 as it is)."""
    def quoted(v: str) -> str:
        return "".join("\\/" if c == "/" else "\\" + c if c in _REGEX_META
                       else c if c.isprintable() else f"\\x{{{ord(c):x}}}" for c in v)
    return "/^(?:" + "|".join(quoted(v) for v in sorted(values)) + ")$/"


def agents_condition(agents, *, exclude: bool) -> str:
    """`` AND "agent" !~ /.../`` (``exclude``) or ``=~``: a tag condition the server answers from
    its index, so the excluded agents' rows are never scanned. Empty for no agent to exclude."""
    if not agents:
        return ""
    return f' AND "agent" {"!~" if exclude else "=~"} {regex_literal(agents)}'


def summary_queries(a: int, b: int) -> list[tuple[str, str]]:
    """The queries over the agents' summary rows for whole UTC days [a, b): each ``hourly``
    row's observed seconds (the row is the agent-hour: nothing to add up), and each ``daily``
    row's latency figures as they are (the row is the agent-day, merged by the agent: the RTT
    histogram ``rtt_h<NNN>``, the answered rounds and their loss, the day's extremes). Reading
    one row per agent-day took 1.0-1.2 s for 1,000 agents x 30 days where the server's sums of
    hourly rows per agent-day (:func:`hourly_latency_query`) took 19-21 s (bench/README.md)."""
    t = time_range(a, b)
    return [
        ("hobs", f'SELECT "observed_s" FROM "hourly" WHERE {t} GROUP BY {_by()}'),
        ("dping", 'SELECT /^rtt_h/, "rtt_count", "ping_rounds", "loss_pct_sum", "rtt_min_ms", '
                  f'"rtt_max_ms" FROM "daily" WHERE {t} GROUP BY {_by()}'),
    ]


def hourly_latency_query(a: int, b: int, agents: str = "") -> tuple[str, str]:
    """Per agent-day, the server's sums of the ``hourly`` rows' RTT histogram buckets
    (``sum(/^rtt_h/)``, columns ``sum_rtt_h<NNN>``), of the answered rounds and their loss, with
    the day's extremes: for the agent-days with hourly rows and no ``daily`` row (an agent of a
    version that wrote none), ``agents`` (:func:`agents_condition`) naming them. InfluxDB 1.x
    pays this per bucket field and series: 19-21 s for 1,000 agents x 30 days."""
    t = time_range(a, b) + agents
    return ("hping", 'SELECT sum(/^rtt_h/), sum("rtt_count") AS "rtt_count", sum("ping_rounds") AS '
                     '"ping_rounds", sum("loss_pct_sum") AS "loss_pct_sum", min("rtt_min_ms") AS '
                     f'"rtt_min_ms", max("rtt_max_ms") AS "rtt_max_ms" FROM "hourly" WHERE {t} '
                     f'GROUP BY time(1d), {_by()} fill(none)')


def grouped_queries(a: int, b: int, agents: str = "") -> list[tuple[str, str]]:
    """The server-aggregated queries over raw rows for whole UTC days [a, b): observed seconds
    per agent-hour over the rounds with a good interval_s, the others counted per hour, latency
    and loss per agent-day. Loss over the rounds in which the target answered is
    (sum(loss_pct) - 100 x unanswered) / answered, with answered = count(rtt_avg_ms) (an RTT is
    written exactly when an echo came back): no field filter, which costs the server a join.
    ``agents``: a condition on the agent tag (:func:`agents_condition`), or none."""
    t = time_range(a, b) + agents
    return [
        ("obs", f'SELECT sum("interval_s") AS "observed_s" FROM "round" WHERE {t} '
                f'AND {_GOOD_INTERVAL} GROUP BY time(1h), {_by()} fill(none)'),
        ("bad_rounds", f'SELECT count("interval_s") AS "rows" FROM "round" WHERE {t} '
                       f'AND {_BAD_INTERVAL} GROUP BY time(1h) fill(none)'),
        ("ping", 'SELECT percentile("rtt_avg_ms", 50) AS "p50", percentile("rtt_avg_ms", 95) AS "p95", '
                 'sum("loss_pct") AS "loss_sum", count("loss_pct") AS "rows", '
                 'count("rtt_avg_ms") AS "rounds", min("rtt_avg_ms") AS "rtt_min", '
                 f'max("rtt_avg_ms") AS "rtt_max" FROM "ping" WHERE "role" = \'internet\' AND {t} '
                 f'GROUP BY time(1d), {_by()} fill(none)'),
    ]


_EPISODE_ROWS = '"outage" WHERE ("type" = \'power\' OR "type" = \'connectivity\')'
_SPEED_ROWS = '"speedtest" WHERE "status" = \'ok\''


def raw_queries(start: float, end: float) -> list[tuple[str, str]]:
    """Rows read as they are (one per episode or speed test: few) for [start, end), and the
    counts of rows dated before the clock was set."""
    return unset_queries() + row_queries(start, end)


def row_queries(start: float, end: float) -> list[tuple[str, str]]:
    """The episodes and speed tests of [start, end), read as they are."""
    t = time_range(start, end)
    return [
        ("episode", f'SELECT "duration_s" FROM {_EPISODE_ROWS} AND {t} GROUP BY {_by("type", "cause")}'),
        ("speed", f'SELECT "download_bps", "upload_bps" FROM {_SPEED_ROWS} AND {t} GROUP BY {_by()}'),
    ]


def row_count_queries(start: float, end: float) -> list[tuple[str, str]]:
    """How many episode and speed-test rows each UTC day of [start, end) holds (what the cache
    compares with the counts it kept, to read a kept day's rows again only when they changed)."""
    t = time_range(start, end)
    return [
        ("episode_days", f'SELECT count("duration_s") AS "rows" FROM {_EPISODE_ROWS} AND {t} '
                         'GROUP BY time(1d)'),
        ("speed_days", f'SELECT count("download_bps") AS "rows" FROM {_SPEED_ROWS} AND {t} '
                       'GROUP BY time(1d)'),
    ]


def mark_queries(start: float, end: float) -> list[tuple[str, str]]:
    """What each UTC day of [start, end) holds, in a few numbers per measurement (rows, and sums
    that grow as an hour or a day is rewritten): a recent day is read from the cache while these
    are what they were when it was read (:meth:`Reader.read`)."""
    t = time_range(start, end)
    return [
        ("mark", 'SELECT count("observed_s") AS "rows", sum("observed_s") AS "observed", '
                 f'sum("ping_rounds") AS "pings" FROM "hourly" WHERE {t} GROUP BY time(1d)'),
        ("mark", 'SELECT count("hours") AS "rows", sum("hours") AS "hours", sum("ping_rounds") AS '
                 f'"pings" FROM "daily" WHERE {t} GROUP BY time(1d)'),
        ("mark", f'SELECT count("interval_s") AS "rows" FROM "round" WHERE {t} GROUP BY time(1d)'),
        ("mark", 'SELECT count("loss_pct") AS "rows" FROM "ping" WHERE "role" = \'internet\' AND '
                 f'{t} GROUP BY time(1d)'),
    ] + [("mark", text) for _, text in row_count_queries(start, end)]


def unset_queries() -> list[tuple[str, str]]:
    """Counts of rows dated before the clock was set (:data:`CLOCK_SET`), never read."""
    unset = f"time < {CLOCK_SET * 10**9}"
    return [
        ("unset", f'SELECT count("observed_s") AS "rows" FROM "hourly" WHERE {unset}'),
        ("unset", f'SELECT count("interval_s") AS "rows" FROM "round" WHERE {unset}'),
        ("unset", f'SELECT count("loss_pct") AS "rows" FROM "ping" WHERE "role" = \'internet\' '
                  f'AND {unset}'),
        ("unset", 'SELECT count("duration_s") AS "rows" FROM "outage" WHERE ("type" = \'power\' '
                  f'OR "type" = \'connectivity\') AND {unset}'),
        ("unset", f'SELECT count("download_bps") AS "rows" FROM "speedtest" WHERE "status" = \'ok\' '
                  f'AND {unset}'),
    ]


def days_of(start: float, end: float) -> list[int]:
    """Starts of the UTC days that [start, end) touches."""
    d0 = int(start // DAY) * DAY
    return list(range(d0, int(end), DAY)) if end > d0 else []


def queries(start: float, end: float) -> list[tuple[str, str]]:
    """Every query for the window, with nothing cached and no agent writing summaries: (kind,
    InfluxQL). (With summaries, the raw queries leave out the agents that wrote them.)"""
    out = []
    for a, b in day_runs(days_of(start, end)):
        out += summary_queries(a, b) + grouped_queries(a, b)
    return out + raw_queries(start, end)


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
    asked for, a time within [lo, hi] with :func:`_time`'s slack, finite numbers, a null only
    where a value may be absent), checked column by column; None otherwise, and the series is
    read row by row, counting what it rejects."""
    want, kinds = _ROW_COLUMNS[kind]
    if cols != want or not rows or set(map(type, rows)) != {list} or set(map(len, rows)) != {len(want)}:
        return None
    columns = list(zip(*rows))
    for values, allowed in zip(columns, kinds):
        if not set(map(type, values)) <= allowed:
            return None
        try:
            if not all(map(math.isfinite, (v for v in values if v is not None))):
                return None
        except OverflowError:
            return None
    ts = columns[0]
    if min(ts) < (lo - 1) * 1000 or max(ts) > (hi + 1) * 1000:
        return None
    return rows


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


def late_hours(kept: set[int], hours: Iterable[HourColumns], episodes, speeds,
               asked: set = frozenset()) -> set[tuple[str, int]]:
    """(agent, hour) on kept (cached) days at which an agent's rows show it was watching (a speed
    test; an outage or a battery/UPS cut, for every hour it lasted, since the agent probes all
    through one) while the cache's ``hours`` hold no watching time for it: rows forwarded after
    the day was kept. Host-down cuts say nothing (the agent was not running); pairs in ``asked``
    were asked about already. Over columns: a month of 1,000 agents walks 250,000 outage hours."""
    if not kept:
        return set()
    import numpy as np  # deferred: the collector's CLI says how to install it

    # Only hours on kept days can be late: an episode's walk is cut to them, so a row claiming
    # to last 10^300 s (a hostile or broken server) costs at most the window's hours.
    first, last = min(kept), max(kept) + DAY
    eps = [e for e in episodes if e.cause != "host_down"]
    agents: dict[str, int] = {}
    code = [agents.setdefault(r.unit.agent, len(agents)) for r in (*speeds, *eps)]
    t_hour = np.fromiter((t.time - t.time % 3600 for t in speeds), np.float64, len(speeds))
    e_start = np.fromiter((e.start for e in eps), np.float64, len(eps))
    e_end = np.minimum(np.fromiter((e.end for e in eps), np.float64, len(eps)), last)
    e_from = np.maximum(e_start - e_start % 3600, first)
    n = np.maximum(np.ceil((e_end - e_from) / 3600), 0).astype(np.int64)
    step = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    hour = np.concatenate([t_hour, np.repeat(e_from, n) + 3600.0 * step]).astype(np.int64)
    who = np.concatenate([np.array(code[:len(speeds)], dtype=np.int64),
                          np.repeat(np.array(code[len(speeds):], dtype=np.int64), n)])
    days = np.array(sorted(kept), dtype=np.int64)
    day = hour - hour % DAY
    on_kept = days[np.minimum(np.searchsorted(days, day), days.size - 1)] == day
    key = who[on_kept] * 2 ** 32 + hour[on_kept] // 3600
    # Which of them the hours hold, as the same numbers, looked up in their sorted list (a
    # sort and a binary search: numpy's unique and isin hash, several times slower here).
    held = []
    for b in hours:
        ids = np.array([agents.get(u.agent, -1) for u in b.units] or [-1], dtype=np.int64)
        mine = ids[np.asarray(b.unit, dtype=np.int64)]
        ok = mine >= 0
        held.append(mine[ok] * 2 ** 32 + np.asarray(b.hour, dtype=np.int64)[ok] // 3600)
    seen = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    if seen.size:
        key = key[seen[np.minimum(np.searchsorted(seen, key), seen.size - 1)] != key]
    names = list(agents)
    return {pair for k in set(key.tolist())
            if (pair := (names[k >> 32], (k & 0xFFFFFFFF) * 3600)) not in asked}


def _rejected(counts: list[tuple[int, int]]) -> list[tuple[int, str, int]]:
    """Per-hour counts of bad rounds as the cache keeps them: (hour, reason, rows)."""
    return [(h, COUNT_KINDS["bad_rounds"], n) for h, n in counts]


class Reader:
    """Runs the queries against one server. ``http`` is an kit.influx.HTTP (injected)."""

    def __init__(self, http, database: str, retention_policy: str = "", connect=None,
                 parallel: int = 1, max_answer_mb: int = MAX_ANSWER_MB,
                 query_timeout_s: float = QUERY_TIMEOUT_S) -> None:
        """``connect()`` makes a further connection like ``http``: with ``parallel`` > 1, that
        many queries run at once (InfluxDB 1.x works a query on one core; the grouped queries of
        different weeks are independent). Each answer may be at most ``max_answer_mb`` MB (2^20
        bytes) and must arrive in full within ``query_timeout_s`` of sending its query."""
        self.http = http
        self.max_answer_mb = max_answer_mb
        self.query_timeout_s = query_timeout_s
        self.connect = connect
        self.parallel = parallel if connect is not None else 1
        self.database = database
        self.retention_policy = retention_policy
        self.queries = 0
        self.bytes = 0
        self.cached_days = 0
        self.refreshed_days = 0     # kept days asked again because an agent's rows came late

    def query(self, q: str, what: str = "the query", http=None) -> list[dict]:
        """The series of one query's answer (:func:`parse_answer`); ``what`` names the query in
        errors ("the \"round\" query")."""
        return list(self._answer(q, what, http))

    def _answer(self, q: str, what: str, http=None) -> Iterator[dict]:
        """The answer's body is read here (SourceError when it failed, was cut or refused); its
        series are parsed as they are taken, one chunk of JSON at a time, so an answer waiting
        to be read holds its bytes, not its parsed rows (5x less)."""
        http = http or self.http
        params = {"db": self.database, "epoch": "ms", "chunked": "true", "chunk_size": "20000"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        ans, _ = http.request("POST", "/query?" + urlencode(params),
                              body=urlencode({"q": q}).encode(),
                              headers={"Content-Type": "application/x-www-form-urlencoded",
                                       "Accept": "application/json"},
                              max_bytes=self.max_answer_mb << 20, deadline_s=self.query_timeout_s)
        self.queries += 1
        self.bytes += len(ans.body)
        if ans.cut == CUT_TIME:
            raise SourceError(f"the server's answer to {what} did not arrive in full within "
                              f"{self.query_timeout_s:g} s (collector.query_timeout_s)")
        if ans.status is None:
            raise SourceError(f"{what}: no answer from InfluxDB: {ans.message}")
        if ans.status in (401, 403):
            raise SourceError(f"{what}: InfluxDB refused the credentials (HTTP {ans.status}): "
                              f"{ans.message}")
        if not ans.ok:
            raise SourceError(f"{what}: HTTP {ans.status}: {ans.message}")
        if ans.cut == CUT_SIZE:
            raise SourceError(f"the server's answer to {what} is larger than {self.max_answer_mb} "
                              "MB (collector.max_answer_mb): narrow the window (--since) or raise "
                              "the limit")
        if ans.cut == CUT_CLOSED:
            raise SourceError(f"the server's answer to {what} stopped after {len(ans.body):,} "
                              "bytes: the connection closed before its end")
        return parse_answer(ans.body, what, http.redact)

    def _run_all(self, todo: list[tuple[str, str]]):
        if self.parallel <= 1 or len(todo) < 2:
            for kind, text in todo:
                yield self._answer(text, _what(kind))
            return
        local = threading.local()
        extra: list = []
        lock = threading.Lock()

        def one(item):
            if not hasattr(local, "http"):
                local.http = self.connect()
                with lock:
                    extra.append(local.http)
            kind, text = item
            return self._answer(text, _what(kind), local.http)

        try:
            # At most ``parallel`` answers ahead of the one being read: a month of 10,000 agents'
            # hours is 200 MB of parsed JSON a week, which must not pile up.
            with ThreadPoolExecutor(self.parallel) as pool:
                items = iter(todo)
                ahead = deque(pool.submit(one, item) for item in islice(items, self.parallel))
                try:
                    while ahead:
                        answer = ahead.popleft().result()
                        for item in islice(items, 1):
                            ahead.append(pool.submit(one, item))
                        yield answer
                        del answer
                finally:
                    for f in ahead:
                        f.cancel()
        finally:
            for h in extra:
                h.close()

    def read(self, start: float, end: float, cache=None, now: float | None = None,
             settle_s: float = 3 * 86400) -> tuple[Dataset, Quality]:
        """The window's records. With a :class:`collector.cache.Cache`, whole UTC days already
        kept are read from it, and days fetched here that are at least ``settle_s`` old are kept.
        A kept day's episodes and speed tests are read again only when the server's count of
        them changed (rows forwarded late); its hours and latency, when those rows show an agent
        was watching at an hour the cache holds no watching time for (:func:`late_hours`)."""
        q = Quality()
        since = max(start, CLOCK_SET)   # rows before it are counted as clock_unset, never read
        days = days_of(since, end)
        if cache is None:
            got = self._days(days, q, [(since, end, raw_queries(since, end))])
            return self._dataset(start, end, since, got, q), q
        kept = cache.days() & set(days)
        limit = (now if now is not None else end) - settle_s
        # Recent whole days (not yet settled) are held too, each with its mark (mark_queries):
        # one whose mark is unchanged is read from the cache; once settled, it is kept.
        held = cache.recent()
        mark_days = [d for d in days if d not in kept and d + DAY <= end
                     and (d + DAY > limit or d in held)]
        # Counted and marked before any row is read: a row arriving in between makes the next
        # run read the day again (counted after, it could be kept as read when it was not).
        marks = self._marks(mark_days[0], mark_days[-1] + DAY) if mark_days else {}
        good = {d for d in mark_days if d in held and held[d] == marks.get(d, "")}
        fetch = [d for d in days if d not in kept and d not in good]
        counts = self._day_counts(days[0], days[-1] + DAY) if days else {}
        held_counts = cache.row_counts()
        recheck = {d for d in kept if held_counts.get(d) != counts.get(d, (0, 0))}
        row_days = sorted(set(fetch) | recheck)
        extra = [(since, end, unset_queries())]
        extra += [(a, min(b, end), row_queries(a, min(b, end))) for a, b in day_runs(row_days)
                  if a < end]
        got = self._days(fetch, q, extra)
        cache.store([d for d in fetch if d + DAY <= limit], got["obs"], got["ping"],
                    _rejected(got["bad_rounds"]), hours=got["hours"])
        # Whole days only: the last day's rows were read up to the window's end. A recent day's
        # mark is written last, with its records, so it never stands beside older ones.
        cache.store_rows({d: counts.get(d, (0, 0)) for d in row_days if d + DAY <= end},
                         got["episode"], got["speed"])
        recent = [d for d in fetch if limit < d + DAY <= end]
        cache.store(recent, got["obs"], got["ping"], _rejected(got["bad_rounds"]),
                    marks={d: marks.get(d, "") for d in recent}, hours=got["hours"])
        cache.promote(d for d in good if d + DAY <= limit)
        old_eps, old_speeds = cache.load_rows((kept - recheck) | good)
        got["episode"] += old_eps
        got["speed"] += old_speeds
        old_hours, old_pings = cache.load(kept | good)
        old_bad = cache.load_rejected(kept | good)
        late = late_hours(kept, old_hours, got["episode"], got["speed"], cache.asked_again())
        stale = sorted({h - h % DAY for _, h in late})
        if stale:
            # An agent forwarded rows for a kept day after it was kept (it was offline):
            # its outages are here but not its watching time. Ask again for those days.
            fresh = self._days(stale, q)
            cache.store(stale, fresh["obs"], fresh["ping"], _rejected(fresh["bad_rounds"]),
                        hours=fresh["hours"])
            cache.mark_asked_again(late)
            gone = set(stale)
            old_hours = [b for b in old_hours if int(b.hour[0]) - int(b.hour[0]) % DAY not in gone]
            got["obs"] += fresh["obs"]
            old_hours += fresh["hours"]
            old_pings = [p for p in old_pings if p.day not in gone] + fresh["ping"]
            old_bad = ([r for r in old_bad if r[0] - r[0] % DAY not in gone]
                       + _rejected(fresh["bad_rounds"]))
        got["ping"] += old_pings
        got["bad_rounds"] += [(h, n) for h, _, n in old_bad]
        self.cached_days = len(kept) - len(stale) + len(good)
        self.refreshed_days = len(stale)
        got["hours"] += old_hours
        return self._dataset(start, end, since, got, q), q

    def _dataset(self, start: float, end: float, since: float, got: dict[str, list],
                 q: Quality) -> Dataset:
        # Bad rounds count in the window's hours only (the queries cover whole days).
        bad = sum(n for h, n in got["bad_rounds"] if since - since % 3600 <= h < end)
        unset = sum(n for _, n in got["unset"])
        for reason, n in (("absurd_observed", bad), ("clock_unset", unset)):
            if n:
                q.rejected[reason] += n
        return Dataset(start, end, tuple(got["obs"]), tuple(got["episode"]), tuple(got["ping"]),
                       tuple(got["speed"]), tuple(got["hours"]))

    def _marks(self, start: int, end: int) -> dict[int, str]:
        """Per UTC day of [start, end): what :func:`mark_queries` answered for it, as one text."""
        todo = mark_queries(start, end)
        parts: dict[int, list] = defaultdict(lambda: [None] * len(todo))
        for k, answer in enumerate(self._run_all(todo)):
            for series in answer:
                for row in series["values"]:
                    t = row[0] if isinstance(row, list) and row else None
                    if type(t) is not int:
                        continue
                    s = t // 1000
                    parts[s - s % DAY][k] = row[1:]
        return {d: json.dumps(v, separators=(",", ":")) for d, v in parts.items()}

    def _day_counts(self, start: int, end: int) -> dict[int, tuple[int, int]]:
        """Per UTC day of [start, end): (episode rows, speed-test rows) on the server (a count
        the server answers oddly counts as none)."""
        todo = row_count_queries(start, end)
        out: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        scratch = Quality()   # these answers are about the cache, not the data: nothing counted
        for (kind, _), answer in zip(todo, self._run_all(todo)):
            for series in answer:
                for t, n in to_counts(kind, series, scratch, (float(start), float(end))):
                    out[t - t % DAY][0 if kind == "episode_days" else 1] += n
        return {d: (v[0], v[1]) for d, v in out.items()}

    def _days(self, days: list[int], q: Quality, extra=()) -> dict[str, list]:
        """The grouped records of whole UTC days (and the answers to the ``extra`` (start, end,
        queries) groups, asked alongside), by kind: ``obs``, ``ping``, ``bad_rounds``, and the
        kinds of ``extra``.

        Two rounds of queries. First every week's summaries: the agents that wrote any ``hourly``
        rows, the hour of each one's first row in the week, and the agent-days with a ``daily``
        row. Then raw rows, only of the others: the week's raw queries leave the summary agents
        out by a tag condition (the server never scans their rows), and an agent whose summaries
        begin after the week's start (it was upgraded then) is asked for its raw rows up to the
        end of the UTC day of its first summary (its start, when that is a midnight), with agents
        upgraded on the same day in one query. Of those, its observed hours before its first
        summary are kept, and its raw latency days replace the summaries' (a raw day is the whole
        day). Alongside the raw queries, the agents with hourly rows on a day without a daily row
        (a version that wrote none) are asked for the server's sums of those days' hourly rows
        (:func:`hourly_latency_query`), one query a week, of those agent-days only."""
        got: dict[str, list] = defaultdict(list)
        runs = day_runs(days)
        todo, windows = _with_windows([(a, b, summary_queries(a, b)) for a, b in runs]
                                      + list(extra))
        first: dict[tuple[float, float], dict[str, float]] = {(float(a), float(b)): {}
                                                              for a, b in runs}
        hour_days: dict[tuple[float, float], set[tuple[str, int]]] = defaultdict(set)
        day_rows: set[tuple[str, int]] = set()
        summary: dict[str, list] = defaultdict(list)
        for (kind, _), window, answer in zip(todo, windows, self._run_all(todo)):
            if kind == "hobs":
                block, recs = _hourly_answer(answer, window, q, first[window], hour_days[window])
                if block is not None:
                    got["hours"].append(block)
                summary["hobs"].extend(recs)
                continue
            for series in answer:
                if kind == "dping":
                    day_rows.update((agent, int(t)) for agent, t in _row_times(series, window)
                                    if t % DAY == 0)
                recs = (to_counts(kind, series, q, window) if kind in COUNT_KINDS
                        else to_records(kind, series, q, window))
                (summary if kind in SUMMARY_KINDS else got)[kind].extend(recs)
        # per query of the second round: None (raw rows of agents without summaries), the week's
        # first summary hours (raw rows of upgraded agents), or the agent-days to sum hourly rows of
        role: list[dict[str, float] | set[tuple[str, int]] | None] = []
        todo, windows = [], []
        for (a, b), agents in first.items():
            todo += grouped_queries(int(a), int(b), agents_condition(agents, exclude=True))
            windows += [(a, b)] * len(RAW_KINDS)
            role += [None] * len(RAW_KINDS)
            by_day: dict[float, list[str]] = defaultdict(list)
            for agent, f in agents.items():
                if f > a:
                    by_day[min(b, -(-f // DAY) * DAY)].append(agent)
            for until, some in sorted(by_day.items()):
                todo += grouped_queries(int(a), int(until), agents_condition(some, exclude=False))
                windows += [(a, until)] * len(RAW_KINDS)
                role += [agents] * len(RAW_KINDS)
            missing = hour_days[(a, b)] - day_rows
            if missing:
                lo, hi = min(d for _, d in missing), max(d for _, d in missing) + DAY
                todo.append(hourly_latency_query(
                    lo, hi, agents_condition({agent for agent, _ in missing}, exclude=False)))
                windows.append((float(lo), float(hi)))
                role.append(missing)
        raw_days: set[tuple[str, int]] = set()
        for (kind, _), window, how, answer in zip(todo, windows, role, self._run_all(todo)):
            for series in answer:
                if kind in COUNT_KINDS:
                    got[kind].extend(to_counts(kind, series, q, window))
                    continue
                for rec in to_records(kind, series, q, window):
                    if kind == "hping":
                        if (rec.unit.agent, rec.day) in how:
                            summary["dping"].append(rec)
                        continue     # a day its daily row covers
                    if isinstance(how, dict) and kind == "ping":
                        raw_days.add((rec.unit.agent, rec.day))
                    elif isinstance(how, dict) and rec.hour >= how.get(rec.unit.agent, math.inf):
                        continue     # an hour its summary covers
                    got[kind].append(rec)
        got["obs"] += summary["hobs"]
        got["ping"] += [p for p in summary["dping"] if (p.unit.agent, p.day) not in raw_days]
        return got


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


def _hourly_answer(answer: list[dict], window: tuple[float, float], q: Quality,
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
            for agent, t in _row_times(series, window):
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


def _row_times(series: dict, window: tuple[float, float]) -> Iterator[tuple[str, float]]:
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


def _what(kind: str) -> str:
    if kind == "unset":
        return "the query counting rows dated before 2000"
    return f'the "{MEASUREMENT.get(kind, kind)}" query'


def _with_windows(groups) -> tuple[list[tuple[str, str]], list[tuple[float, float]]]:
    """(kind, text) of each query, and beside it the [start, end) it asks about."""
    todo, windows = [], []
    for a, b, qs in groups:
        todo += qs
        windows += [(float(a), float(b))] * len(qs)
    return todo, windows
