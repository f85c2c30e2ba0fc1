"""Reading agents' data from InfluxDB through InfluxQL on the v1 ``/query`` endpoint.

InfluxQL is the one query language InfluxDB 1.x, 2.x (>= 2.4, through DBRP mappings) and 3.x all
answer. What the agents summarised is read as it is, one row per agent-day where it can be:

* ``daily``: each agent-day's packed row (:func:`day_query`, collector.dayrows), its tags as
  columns, with the day's episodes and speed tests (collector.packed); ``hourly`` rows
  (:func:`summary_queries`) only for what packed rows do not cover;

and for agents without summaries, the aggregation is pushed into the queries, so a month of
10-second rounds never crosses the wire:

* ``round``: observed seconds per agent and UTC hour (``sum(interval_s) GROUP BY time(1h)``) over
  the rounds whose ``interval_s`` lies in (0, 3600]; the others are counted per hour
  (``absurd_observed``) by one more query;
* ``ping``: per agent and UTC day, the median and 95th percentile of ``rtt_avg_ms`` to internet
  targets and the mean loss over rounds in which the target answered at all;

both over whole UTC days, a week per query at most, and kept in a local cache once a day is over
(:mod:`collector.cache`), so a repeated aggregation asks only for recent days;
* ``outage`` (power and connectivity) and ``speedtest`` (status ok): the rows themselves (one
  per episode or test), a week per query, their tags as columns, only for the agent-days whose
  daily rows do not carry them (:meth:`Reader._row_queries`: agents of a version that packs
  none, days before an agent packed them), and for a kept day whose rows changed;
* rows dated before 2000-01-01 (a clock never set): counted on every run, one cheap count per
  measurement (``clock_unset``), and never read.

The query text is built by pure functions (tested); :class:`Reader` is the thin I/O edge.
Responses are read with ``chunked=true``: InfluxDB's row limit (max-row-limit) applies only to
answers that are not chunked, so every row arrives.

Each answer is read as it comes: its size and the time it takes are bounded
(``max_answer_mb``, ``query_timeout_s``), and its shape and rows are checked by
:mod:`collector.answers`.

Longer than the house's 400 lines: the queries and the reader that asks them side by side (each
query's columns are read back by the code beside it).
"""

from __future__ import annotations

import json
import math
import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import islice
from urllib.parse import urlencode

from collector.answers import (
    DAY,
    T_MIN,
    TAGS,
    hourly_answer,
    parse_answer,
    row_times,
    tagged_rows,
    to_counts,
    to_records,
)
from collector.apart import APART_MB, Apart
from collector.dayrows import DAY_COLUMNS, Daily, Days, read_daily, shared_units
from kit.definitions import CLOCK_SET, MAX_INTERVAL_S, Quality, Unit
from kit.errors import SourceError
from kit.influx import CUT_CLOSED, CUT_SIZE, CUT_TIME
from kit.lineproto import unescape_tag
from kit.records import Dataset, EpisodeColumns, HourColumns, PingColumns, SpeedColumns

CHUNK_S = 7 * 86400  # grouped queries are cut into weeks to bound the server's memory
# The measurement each kind of query reads, which names the query in messages.
MEASUREMENT = {"obs": "round", "bad_rounds": "round", "ping": "ping", "episode": "outage",
               "speed": "speedtest", "hobs": "hourly", "dping": "daily", "hping": "hourly",
               "dday": "daily"}
# The grouped kinds: summaries first (every agent that writes them), then raw rows for the rest
# (and ``hping``, the server's day sums of hourly rows, for agent-days without a daily row).
SUMMARY_KINDS = ("dday", "hobs", "dping", "hping")
RAW_KINDS = ("obs", "bad_rounds", "ping")
MAX_ANSWER_MB = 256        # defaults of [collector] max_answer_mb and query_timeout_s
QUERY_TIMEOUT_S = 900.0
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


def _tag_columns(*extra: str) -> str:
    return ", ".join([ident(t) for t in TAGS] + [ident(t) for t in extra])


def day_query(a: int, b: int) -> tuple[str, str]:
    """Each ``daily`` row of whole UTC days [a, b) as it is, its hours and histogram packed
    (``observed_hours``, ``rtt_buckets``) and its tags as columns: one row per agent-day, one
    value per figure. A month of 1,000 agents is 30,000 rows here against 720,000 hourly rows
    plus a histogram of about 140 fields a row (bench/README.md). A daily row of an agent that
    packs nothing has ``observed_hours`` null: its hours are read by :func:`summary_queries`."""
    cols = ", ".join(ident(c) for c in DAY_COLUMNS[1:])
    return ("dday", f'SELECT {cols}, {_tag_columns()} FROM "daily" WHERE {time_range(a, b)}')


def summary_queries(a: int, b: int, agents: str = "") -> list[tuple[str, str]]:
    """For agents whose daily rows are not packed (``agents``: :func:`agents_condition`), the
    queries over their summary rows for whole UTC days [a, b): each ``hourly``
    row's observed seconds (the row is the agent-hour: nothing to add up), and each ``daily``
    row's latency figures as they are (the row is the agent-day, merged by the agent: the RTT
    histogram ``rtt_h<NNN>``, the answered rounds and their loss, the day's extremes). Reading
    one row per agent-day took 1.0-1.2 s for 1,000 agents x 30 days where the server's sums of
    hourly rows per agent-day (:func:`hourly_latency_query`) took 19-21 s (bench/README.md)."""
    t = time_range(a, b) + agents
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


# The tags each row query asks for as columns, after its fields (answers.tagged_rows).
ROW_TAGS = {"episode": (*TAGS, "type", "cause"), "speed": TAGS}


def row_queries(start: float, end: float, agents: str = "") -> list[tuple[str, str]]:
    """The episodes and speed tests of [start, end), read as they are, their tags as columns
    (:data:`ROW_TAGS`): InfluxDB 1.6 answers that 2-3x faster than a GROUP BY of the tags (3.4
    million outage rows of 10,000 agents: 14 s against 53 s, bench/README.md). ``agents``: a
    condition on the agent tag (:func:`agents_condition`), or none."""
    t = time_range(start, end) + agents
    return [
        ("episode", f'SELECT "duration_s", {_tag_columns("type", "cause")} FROM {_EPISODE_ROWS} '
                    f'AND {t}'),
        ("speed", f'SELECT "download_bps", "upload_bps", {_tag_columns()} FROM {_SPEED_ROWS} '
                  f'AND {t}'),
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


# A field every row of each measurement the second and third rounds read has (Present).
_LISTED = {"hourly": "observed_s", "daily": "rtt_count", "outage": "duration_s",
           "speedtest": "download_bps", "round": "interval_s", "ping": "loss_pct"}


def listing_queries(start: float, end: float) -> list[tuple[str, str, str]]:
    """(kind, InfluxQL, measurement): per measurement the second and third rounds of
    :meth:`Reader._days` read, the agents its index holds (``listed``: every agent that ever
    wrote a row of it, not only in [start, end)) and how many of its rows in [start, end) have
    no agent tag (``agentless``): what :class:`Present` needs to know that a query leaving out
    some agents would find nothing."""
    t = time_range(start, end)
    out = []
    for m, f in _LISTED.items():
        out.append(("listed", f'SHOW TAG VALUES FROM {ident(m)} WITH KEY = "agent"', m))
        out.append(("agentless", f'SELECT count({ident(f)}) AS "rows" FROM {ident(m)} WHERE '
                                 f'"agent" = \'\' AND {t}', m))
    return out


class Present:
    """Which agents each measurement holds rows of, from the server's index (a superset: an
    agent's series may outlive its rows; a measurement missing: not known), and the
    measurements some of whose rows have no agent tag (read, to be counted as
    ``missing_agent``). A query that leaves out a set of agents finds nothing when its
    measurement holds no other agent and no row without one; a query for some agents, when it
    holds none of them: :meth:`needless` (bench/README.md: 127 of 173 queries for a 10,000 x
    90 window, each with a regular expression of 10,000 names, 8 s of the server's time)."""

    def __init__(self, agents: dict[str, set[str] | None] | None = None,
                 agentless: Iterable[str] = ()) -> None:
        self.agents: dict[str, set[str] | None] = agents or {}
        self.agentless = set(agentless)

    def needless(self, kind: str, agents: Iterable[str], exclude: bool = True) -> bool:
        """Whether the ``kind`` query leaving out the ``agents`` (``exclude``), or asking for
        them only, finds no row."""
        m = MEASUREMENT[kind]
        held = self.agents.get(m)
        if held is None:
            return False
        if exclude:
            return m not in self.agentless and held.issubset(agents)
        return held.isdisjoint(agents)

    @staticmethod
    def listed(answer: Iterable[dict]) -> set[str] | None:
        """The agents of a SHOW TAG VALUES answer (None for one of another shape)."""
        out: set[str] = set()
        for series in answer:
            if series["columns"] != ["key", "value"]:
                return None
            for row in series["values"]:
                if (row.__class__ is not list or len(row) != 2 or row[0] != "agent"
                        or row[1].__class__ is not str):
                    return None
                out.add(unescape_tag(row[1]))
        return out

    @staticmethod
    def none_without_agent(answer: Iterable[dict]) -> bool:
        """Whether a count of the rows without an agent tag says there are none."""
        for series in answer:
            for row in series["values"]:
                if not (row.__class__ is list and len(row) == 2 and row[1] == 0):
                    return False
        return True


def days_of(start: float, end: float) -> list[int]:
    """Starts of the UTC days that [start, end) touches."""
    d0 = int(start // DAY) * DAY
    return list(range(d0, int(end), DAY)) if end > d0 else []


def queries(start: float, end: float) -> list[tuple[str, str]]:
    """Every query for the window, with nothing cached and no agent writing summaries: (kind,
    InfluxQL). (With summaries, the raw queries leave out the agents that wrote them.)"""
    out = []
    for a, b in day_runs(days_of(start, end)):
        out += [day_query(a, b)] + summary_queries(a, b) + grouped_queries(a, b)
    return out + raw_queries(start, end)


def late_hours(kept: set[int], hours: Iterable[HourColumns], episodes: Iterable[EpisodeColumns],
               speeds: Iterable[SpeedColumns], asked: set = frozenset()) -> set[tuple[str, int]]:
    """(agent, hour) on kept (cached) days at which an agent's rows show it was watching (a speed
    test; an outage or a battery/UPS cut, for every hour it lasted, since the agent probes all
    through one) while the cache's ``hours`` hold no watching time for it: rows forwarded after
    the day was kept. Host-down cuts say nothing (the agent was not running); pairs in ``asked``
    were asked about already. Over columns: a quarter of 10,000 agents is 6 million episodes and
    speed tests, and their outage hours."""
    if not kept:
        return set()
    import numpy as np  # deferred: the collector's CLI says how to install it

    # Only hours on kept days can be late: an episode's walk is cut to them, so a row claiming
    # to last 10^300 s (a hostile or broken server) costs at most the window's hours.
    first, last = min(kept), max(kept) + DAY
    agents: dict[str, int] = {}

    def who(units: tuple, unit) -> np.ndarray:
        codes = np.array([agents.setdefault(u.agent, len(agents)) for u in units] or [0],
                         dtype=np.int64)
        return codes[np.asarray(unit, dtype=np.int64)]

    hours_of, whose = [np.zeros(0)], [np.zeros(0, dtype=np.int64)]
    for sb in speeds:
        t = np.asarray(sb.time, dtype=np.float64)
        hours_of.append(t - t % 3600)
        whose.append(who(sb.units, sb.unit))
    for eb in episodes:
        down = np.array([n == "host_down" for n in eb.names] or [False])
        keep = ~down[np.asarray(eb.cause, dtype=np.int64)]
        e_start = np.asarray(eb.start, dtype=np.float64)[keep]
        e_end = np.minimum(e_start + np.asarray(eb.duration_s, dtype=np.float64)[keep], last)
        e_from = np.maximum(e_start - e_start % 3600, first)
        n = np.maximum(np.ceil((e_end - e_from) / 3600), 0).astype(np.int64)
        step = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        hours_of.append(np.repeat(e_from, n) + 3600.0 * step)
        whose.append(np.repeat(who(eb.units, eb.unit)[keep], n))
    hour = np.concatenate(hours_of).astype(np.int64)
    who_all = np.concatenate(whose)
    days = np.array(sorted(kept), dtype=np.int64)
    day = hour - hour % DAY
    on_kept = days[np.minimum(np.searchsorted(days, day), days.size - 1)] == day
    key = who_all[on_kept] * 2 ** 32 + hour[on_kept] // 3600
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
                 query_timeout_s: float = QUERY_TIMEOUT_S, processes: int = 0,
                 apart_mb: float = APART_MB) -> None:
        """``connect()`` makes a further connection like ``http``: with ``parallel`` > 1, that
        many queries run at once (InfluxDB 1.x works a query on one core; the grouped queries of
        different weeks are independent). Each answer may be at most ``max_answer_mb`` MB (2^20
        bytes) and must arrive in full within ``query_timeout_s`` of sending its query. A
        packed daily answer of at least ``apart_mb`` MB is read in one of ``processes`` worker
        processes (collector.apart; 0: none)."""
        self.http = http
        self.apart = Apart(processes, int(apart_mb * (1 << 20)))
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
        self.asked: dict[str, int] = defaultdict(int)   # queries asked, by kind

    def query(self, q: str, what: str = "the query", http=None) -> list[dict]:
        """The series of one query's answer (:func:`parse_answer`); ``what`` names the query in
        errors ("the \"round\" query")."""
        return list(self._answer(q, what, http))

    def _answer(self, q: str, what: str, http=None) -> Iterator[dict]:
        """The answer's body is read here (SourceError when it failed, was cut or refused); its
        series are parsed as they are taken, one chunk of JSON at a time, so an answer waiting
        to be read holds its bytes, not its parsed rows (5x less)."""
        http = http or self.http
        return parse_answer(self._body(q, what, http), what, http.redact)

    def _body(self, q: str, what: str, http) -> bytes:
        """The answer's bytes, whole; SourceError when it failed, was cut or refused."""
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
        return ans.body

    def _run_all(self, todo: list[tuple[str, str]], jobs: list | None = None):
        """The answers to ``todo`` (kind, query), in its order: each one's series, or with
        ``jobs`` (one per query, or None), what its job made of its bytes (collector.apart: a
        large answer in a worker process)."""
        for kind, _ in todo:
            self.asked[kind] += 1
        jobs = jobs or [None] * len(todo)

        def fetch(kind: str, text: str, job, http):
            if job is None:
                return self._answer(text, _what(kind), http)
            http = http or self.http
            return self.apart.begin(job, self._body(text, _what(kind), http), http.redact)

        if self.parallel <= 1 or len(todo) < 2:
            for (kind, text), job in zip(todo, jobs):
                got = fetch(kind, text, job, None)
                yield got if job is None else got()
            return
        local = threading.local()
        extra: list = []
        lock = threading.Lock()

        def one(item):
            if not hasattr(local, "http"):
                local.http = self.connect()
                with lock:
                    extra.append(local.http)
            (kind, text), job = item
            return fetch(kind, text, job, local.http)

        try:
            # At most ``parallel`` answers ahead of the one being read: a month of 10,000 agents'
            # hours is 200 MB of parsed JSON a week, which must not pile up.
            with ThreadPoolExecutor(self.parallel) as pool:
                items = iter(zip(todo, jobs))
                todo_jobs = iter(zip(todo, jobs))     # each answer's job, in the same order
                ahead = deque(pool.submit(one, item) for item in islice(items, self.parallel))
                try:
                    while ahead:
                        answer = ahead.popleft().result()
                        (_, job), = islice(todo_jobs, 1)
                        for item in islice(items, 1):
                            ahead.append(pool.submit(one, item))
                        yield answer if job is None else answer()
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
        try:
            return self._read(start, end, cache, now, settle_s)
        finally:
            self.apart.close()

    def _read(self, start: float, end: float, cache, now: float | None,
              settle_s: float) -> tuple[Dataset, Quality]:
        q = Quality()
        since = max(start, CLOCK_SET)   # rows before it are counted as clock_unset, never read
        days = days_of(since, end)
        if cache is None:
            got = self._days(days, q, [(since, end, unset_queries())], rows=(since, end))
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
        # A kept day whose rows changed is asked for them all (its daily rows are not read
        # again); the fetched days' rows come with their daily rows (Reader._days).
        extra = [(since, end, unset_queries())]
        extra += [(a, min(b, end), row_queries(a, min(b, end)))
                  for a, b in day_runs(sorted(recheck - set(fetch))) if a < end]
        got = self._days(fetch, q, extra, rows=(T_MIN, end))
        cache.store([d for d in fetch if d + DAY <= limit], got["obs"], got["ping"],
                    _rejected(got["bad_rounds"]), hours=got["hours"], ping_cols=got["ping_cols"])
        # Whole days only: the last day's rows were read up to the window's end. A recent day's
        # mark is written last, with its records, so it never stands beside older ones.
        cache.store_rows({d: counts.get(d, (0, 0)) for d in row_days if d + DAY <= end},
                         got["episode_cols"], got["speed_cols"])
        recent = [d for d in fetch if limit < d + DAY <= end]
        cache.store(recent, got["obs"], got["ping"], _rejected(got["bad_rounds"]),
                    marks={d: marks.get(d, "") for d in recent}, hours=got["hours"],
                    ping_cols=got["ping_cols"])
        cache.promote(d for d in good if d + DAY <= limit)
        old_eps, old_speeds = cache.load_rows((kept - recheck) | good)
        got["episode_cols"] += old_eps
        got["speed_cols"] += old_speeds
        old_hours, old_pings = cache.load(kept | good)
        old_bad = cache.load_rejected(kept | good)
        late = late_hours(kept, old_hours, got["episode_cols"], got["speed_cols"],
                          cache.asked_again())
        stale = sorted({h - h % DAY for _, h in late})
        if stale:
            # An agent forwarded rows for a kept day after it was kept (it was offline):
            # its outages are here but not its watching time. Ask again for those days.
            fresh = self._days(stale, q)
            cache.store(stale, fresh["obs"], fresh["ping"], _rejected(fresh["bad_rounds"]),
                        hours=fresh["hours"], ping_cols=fresh["ping_cols"])
            cache.mark_asked_again(late)
            gone = set(stale)
            old_hours = [b for b in old_hours if int(b.hour[0]) - int(b.hour[0]) % DAY not in gone]
            got["obs"] += fresh["obs"]
            old_hours += fresh["hours"]
            old_pings = [p for p in old_pings if p.day not in gone] + fresh["ping"]
            got["ping_cols"] += fresh["ping_cols"]
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
        # episodes and speed tests come as column blocks only (Reader._days)
        return Dataset(start, end, tuple(got["obs"]), (), tuple(got["ping"]), (),
                       tuple(got["hours"]), tuple(got["episode_cols"]),
                       tuple(got["speed_cols"]), tuple(got["ping_cols"]))

    @staticmethod
    def _unpacked_queries(runs, packed: dict[tuple[float, float], Days],
                          present: Present | None = None):
        """The hourly and daily rows to read for what the packed daily rows of each week did not
        cover: agents with no daily row at all (a version before them), the days before an
        agent's first packed row in the week (upgraded then), and the week of an agent with
        unpacked daily rows; beside each query, the week's Days when its answer may hold days
        read packed already (to drop), else None. A query that would find nothing (``present``)
        is not asked."""
        todo: list[tuple[str, str]] = []
        windows: list[tuple[tuple[float, float], tuple[float, float]]] = []   # query's, week's
        skips: list[Days | None] = []
        for a, b in runs:
            w = (float(a), float(b))
            days = packed[w]
            first = {agent: min(ds) for agent, ds in days.packed.items()}
            for since, until, agents, exclude, skip in week_asks(a, b, first, days.unpacked):
                qs = _asked(partial(summary_queries, since, until), ("hobs", "dping"), agents,
                            exclude, present)
                todo.extend(qs)
                windows.extend([((float(since), float(until)), w)] * len(qs))
                skips.extend([days if skip else None] * len(qs))
        return todo, windows, skips

    @staticmethod
    def _row_queries(runs, packed: dict[tuple[float, float], Days], rows: tuple[float, float],
                     present: Present | None = None):
        """The ``outage`` and ``speedtest`` rows to read, per week, for what its daily rows do
        not carry (Days.covered): every agent none of whose rows carry them, the days before an
        agent's first carried day in the week, and the week of an agent with a day not carried
        after it (or with daily rows that pack nothing), whose carried days are dropped from
        the answer (its Days beside the query). As :meth:`_unpacked_queries` gives them."""
        todo: list[tuple[str, str]] = []
        windows: list[tuple[tuple[float, float], tuple[float, float]]] = []
        skips: list[Days | None] = []
        for a, b in runs:
            w = (float(a), float(b))
            since, until = max(w[0], rows[0]), min(w[1], rows[1])
            if since >= until:
                continue
            days = packed[w]
            first = {agent: min(ds) for agent, ds in days.covered.items()}
            mixed = {agent for agent in first
                     if agent in days.unpacked or any(d > first[agent]
                                                      for d in days.uncovered.get(agent, ()))}
            for lo, hi, agents, exclude, skip in week_asks(a, b, first, mixed):
                lo, hi = max(lo, since), min(hi, until)
                if lo < hi:
                    for item in _asked(partial(row_queries, lo, hi), ("episode", "speed"),
                                       agents, exclude, present):
                        todo.append(item)
                        windows.append(((lo, hi), w))
                        skips.append(days if skip else None)
        return todo, windows, skips

    def _present(self, start: int, end: int) -> Present:
        """What the server's index says of the agents each measurement holds, and whether any
        of its rows in [start, end) lacks an agent tag (:func:`listing_queries`); a Present
        that knows nothing when the server does not answer these as InfluxDB 1.x does (every
        query is then asked, as before)."""
        todo = listing_queries(start, end)
        agents: dict[str, set[str] | None] = {}
        agentless: set[str] = set()
        try:
            for (kind, _, m), answer in zip(todo, self._run_all([(k, t) for k, t, _ in todo])):
                if kind == "listed":
                    agents[m] = Present.listed(answer)
                elif not Present.none_without_agent(answer):
                    agentless.add(m)
        except SourceError:
            return Present()
        return Present(agents, agentless)

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

    def _days(self, days: list[int], q: Quality, extra=(),
              rows: tuple[float, float] | None = None) -> dict[str, list]:
        """The grouped records of whole UTC days (and the answers to the ``extra`` (start, end,
        queries) groups, asked alongside), by kind: ``obs``, ``ping``, ``bad_rounds``, and the
        kinds of ``extra``.

        Three rounds of queries. First every week's packed ``daily`` rows (:func:`day_query`):
        most agent-days, whole. Second, the ``hourly`` and unpacked ``daily`` rows of what they
        do not cover (:meth:`_unpacked_queries`): from these, the agents that wrote summaries,
        the hour of each one's first watched hour in the week, and the agent-days with a daily
        row. Then raw rows, only of the others: the week's raw queries leave the summary agents
        out by a tag condition (the server never scans their rows), and an agent whose summaries
        begin after the week's start (it was upgraded then) is asked for its raw rows up to the
        end of the UTC day of its first summary (its start, when that is a midnight), with agents
        upgraded on the same day in one query. Of those, its observed hours before its first
        summary are kept, and its raw latency days replace the summaries' (a raw day is the whole
        day). Alongside the raw queries, the agents with hourly rows on a day without a daily row
        (a version that wrote none) are asked for the server's sums of those days' hourly rows
        (:func:`hourly_latency_query`), one query a week, of those agent-days only.

        With ``rows`` ([start, end)), the episodes and speed tests dated in it come too
        (``episode_cols``, ``speed_cols``): those the daily rows carry (collector.packed) from
        them, the others from the ``outage`` and ``speedtest`` rows of the agent-days no daily
        row carries them for, asked in the second round (:meth:`_row_queries`)."""
        got: dict[str, list] = defaultdict(list)
        runs = day_runs(days)
        todo, windows = _with_windows([(a, b, [day_query(a, b)]) for a, b in runs] + list(extra))
        first: dict[tuple[float, float], dict[str, float]] = {(float(a), float(b)): {}
                                                              for a, b in runs}
        packed: dict[tuple[float, float], Days] = defaultdict(Days)
        hour_days: dict[tuple[float, float], set[tuple[str, int]]] = defaultdict(set)
        day_rows: set[tuple[str, int]] = set()
        summary: dict[str, list] = defaultdict(list)
        day_pings: list[PingColumns] = []     # the packed daily rows' latency, as columns
        units: dict[tuple, Unit | None] = {}   # location tags -> Unit, made once per read
        jobs = [partial(read_daily, what=_what(kind), window=window, rows_window=rows)
                if kind == "dday" else None for (kind, _), window in zip(todo, windows)]
        met: dict[tuple, Unit] = {}     # the daily answers' Units, by their tags
        for (kind, _), window, answer in zip(todo, windows, self._run_all(todo, jobs)):
            if kind == "dday":
                # one daily query a week: its answer says what the week's summaries hold
                daily: Daily = shared_units(answer, met)
                del answer
                q.merge(daily.quality)
                first[window].update(daily.first)
                packed[window] = daily.days
                if daily.block is not None:
                    got["hours"].append(daily.block)
                if daily.pings is not None and len(daily.pings):
                    day_pings.append(daily.pings)
                for name, b in (("episode_cols", daily.episodes), ("speed_cols", daily.speeds)):
                    if rows is not None and b is not None and len(b):
                        got[name].append(b)
                continue
            for raw in answer:
                if kind in COUNT_KINDS:
                    got[kind].extend(to_counts(kind, raw, q, window))
                    continue
                recs, block = tagged_rows(kind, raw, q, window, ROW_TAGS[kind], units)
                if recs:   # read row by row: a block too, so every row keeps its place
                    got[f"{kind}_cols"].append((EpisodeColumns if kind == "episode"
                                                else SpeedColumns).of(recs))
                if block is not None:
                    got[f"{kind}_cols"].append(block)
        present = self._present(runs[0][0], runs[-1][1]) if runs else None
        todo, windows, skips = self._unpacked_queries(runs, packed, present)
        if rows is not None:
            more = self._row_queries(runs, packed, rows, present)
            todo, windows, skips = todo + more[0], windows + more[1], skips + more[2]
        for (kind, _), (window, week), skip, answer in zip(todo, windows, skips,
                                                           self._run_all(todo)):
            if kind in ROW_TAGS:
                for raw in answer:
                    recs, block = tagged_rows(kind, raw, q, window, ROW_TAGS[kind], units)
                    if recs:   # read row by row: a block too, so every row keeps its place
                        block = (EpisodeColumns if kind == "episode" else SpeedColumns).of(recs)
                    if block is not None and skip is not None:
                        block = _drop_carried(block, skip)
                    if block is not None and len(block):
                        got[f"{kind}_cols"].append(block)
                continue
            if kind == "hobs":
                block, recs = hourly_answer(answer, window, q, first[week], hour_days[week])
                if block is not None:
                    got["hours"].append(_drop_days(block, skip) if skip else block)
                summary["hobs"].extend(r for r in recs
                                       if not skip or not skip.has(r.unit.agent, r.hour - r.hour % DAY))
                continue
            for series in answer:
                day_rows.update((agent, int(t)) for agent, t in row_times(series, window)
                                if t % DAY == 0)
                summary[kind].extend(r for r in to_records(kind, series, q, window)
                                     if not skip or not skip.has(r.unit.agent, r.day))
        # per query of the second round: None (raw rows of agents without summaries), the week's
        # first summary hours (raw rows of upgraded agents), or the agent-days to sum hourly rows of
        role: list[dict[str, float] | set[tuple[str, int]] | None] = []
        todo, windows = [], []
        for (a, b), agents in first.items():
            qs = _asked(partial(grouped_queries, int(a), int(b)), RAW_KINDS, agents, True,
                        present)
            todo += qs
            windows += [(a, b)] * len(qs)
            role += [None] * len(qs)
            by_day: dict[float, list[str]] = defaultdict(list)
            for agent, f in agents.items():
                if f > a:
                    by_day[min(b, -(-f // DAY) * DAY)].append(agent)
            for until, some in sorted(by_day.items()):
                qs = _asked(partial(grouped_queries, int(a), int(until)), RAW_KINDS, some,
                            False, present)
                todo += qs
                windows += [(a, until)] * len(qs)
                role += [agents] * len(qs)
            missing = {(agent, d) for agent, d in hour_days[(a, b)] - day_rows
                       if not packed[(a, b)].has(agent, d)}
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
        got["ping_cols"] += [b.without(raw_days) for b in day_pings] if raw_days else day_pings
        return got


def week_asks(a: int, b: int, first: dict[str, int], whole: set[str]
              ) -> list[tuple[int, int, set[str], bool, bool]]:
    """How to ask a week [a, b) for what some agents' summaries leave out, as (since, until,
    agents, whether those agents are left out (else: the only ones asked for), whether the
    answer may hold days read already and is to be filtered): every agent neither in ``first``
    (agent -> its first day read from summaries) nor in ``whole``, for the week; the agents of
    ``first`` not in ``whole``, for the days before their first, those upgraded on the same day
    in one query; the agents of ``whole``, for the week, filtered. (:func:`agents_condition`
    makes the condition.)"""
    asks = [(a, b, set(first) | whole, True, False)]
    by_day: dict[int, set[str]] = defaultdict(set)
    for agent, d in first.items():
        if d > a and agent not in whole:
            by_day[d].add(agent)
    asks += [(a, day, some, False, False) for day, some in sorted(by_day.items())]
    if whole:
        asks.append((a, b, set(whole), False, True))
    return asks


def _asked(queries, kinds: tuple[str, ...], agents: Iterable[str], exclude: bool,
           present: Present | None) -> list[tuple[str, str]]:
    """``queries(condition)``'s (kind, text) for the agents (left out with ``exclude``),
    without those :meth:`Present.needless` says would find nothing; none at all when every
    one of ``kinds`` would (the condition is then never written)."""
    skip = {k for k in kinds if present is not None and present.needless(k, agents, exclude)}
    if len(skip) == len(kinds):
        return []
    return [item for item in queries(agents_condition(agents, exclude=exclude))
            if item[0] not in skip]


def _drop_days(block: HourColumns, skip: Days) -> HourColumns:
    """``block`` without its hours on the agent-days read packed (``skip``)."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    hour = np.asarray(block.hour, dtype=np.int64)
    unit = np.asarray(block.unit)
    agents = [u.agent for u in block.units]
    keep = np.fromiter((not skip.has(agents[k], h - h % DAY)
                        for k, h in zip(unit.tolist(), hour.tolist())), bool, len(hour))
    return HourColumns(block.units, unit[keep], hour[keep],
                       np.asarray(block.observed_s)[keep], block.source)


def _drop_carried(block: EpisodeColumns | SpeedColumns, skip: Days
                  ) -> EpisodeColumns | SpeedColumns:
    """``block`` without its rows on the agent-days whose daily rows carried them (``skip``)."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    times = np.asarray(block.start if isinstance(block, EpisodeColumns) else block.time,
                       dtype=np.float64)
    days = (times // DAY * DAY).astype(np.int64)
    agents = [u.agent for u in block.units]
    keep = np.fromiter((not skip.carries(agents[k], d)
                        for k, d in zip(np.asarray(block.unit).tolist(), days.tolist())),
                       bool, len(times))
    if keep.all():
        return block
    if isinstance(block, EpisodeColumns):
        return EpisodeColumns(block.units, *(np.asarray(c)[keep] for c in (
            block.unit,)), block.names, *(np.asarray(c)[keep] for c in (
            block.type, block.cause, block.start, block.duration_s)))
    return SpeedColumns(block.units, *(np.asarray(c)[keep] for c in (
        block.unit, block.time, block.download_bps, block.upload_bps)))


def _what(kind: str) -> str:
    if kind == "unset":
        return "the query counting rows dated before 2000"
    if kind in ("listed", "agentless"):
        return "the query listing each measurement's agents"
    return f'the "{MEASUREMENT.get(kind, kind)}" query'


def _with_windows(groups) -> tuple[list[tuple[str, str]], list[tuple[float, float]]]:
    """(kind, text) of each query, and beside it the [start, end) it asks about."""
    todo, windows = [], []
    for a, b, qs in groups:
        todo += qs
        windows += [(float(a), float(b))] * len(qs)
    return todo, windows
