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
"""

from __future__ import annotations

import json
from typing import Iterator
from urllib.parse import urlencode

from agent.errors import SourceError
from agent.lineproto import unescape_tag
from collector.model import (CLOCK_SET, MAX_INTERVAL_S, Dataset, Episode, ObsHour, PingDay, Quality,
                             SpeedTest, Unit)

TAGS = ("agent", "region", "isp", "city", "access", "site")
CHUNK_S = 7 * 86400  # grouped queries are cut into weeks to bound the server's memory
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


def grouped_queries(a: int, b: int) -> list[tuple[str, str]]:
    """The server-aggregated queries for whole UTC days [a, b): observed seconds per agent-hour
    over the rounds with a good interval_s, the others counted per hour, latency and loss per
    agent-day. Loss over the rounds in which the target answered is
    (sum(loss_pct) - 100 x unanswered) / answered, with answered = count(rtt_avg_ms) (an RTT is
    written exactly when an echo came back): no field filter, which costs the server a join."""
    t = time_range(a, b)
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


def raw_queries(start: float, end: float) -> list[tuple[str, str]]:
    """Rows read as they are (one per episode or speed test: few) for [start, end)."""
    t = time_range(start, end)
    unset = f"time < {CLOCK_SET * 10**9}"
    return [
        ("unset", f'SELECT count("interval_s") AS "rows" FROM "round" WHERE {unset}'),
        ("unset", f'SELECT count("loss_pct") AS "rows" FROM "ping" WHERE "role" = \'internet\' '
                  f'AND {unset}'),
        ("unset", 'SELECT count("duration_s") AS "rows" FROM "outage" WHERE ("type" = \'power\' '
                  f'OR "type" = \'connectivity\') AND {unset}'),
        ("unset", f'SELECT count("download_bps") AS "rows" FROM "speedtest" WHERE "status" = \'ok\' '
                  f'AND {unset}'),
        ("episode", 'SELECT "duration_s" FROM "outage" WHERE ("type" = \'power\' OR '
                    f'"type" = \'connectivity\') AND {t} GROUP BY {_by("type", "cause")}'),
        ("speed", 'SELECT "download_bps", "upload_bps" FROM "speedtest" WHERE '
                  f'"status" = \'ok\' AND {t} GROUP BY {_by()}'),
    ]


def days_of(start: float, end: float) -> list[int]:
    """Starts of the UTC days that [start, end) touches."""
    d0 = int(start // DAY) * DAY
    return list(range(d0, int(end), DAY)) if end > d0 else []


def queries(start: float, end: float) -> list[tuple[str, str]]:
    """Every query for the window, with nothing cached: (kind, InfluxQL)."""
    out = []
    for a, b in day_runs(days_of(start, end)):
        out += grouped_queries(a, b)
    return out + raw_queries(start, end)


def parse_answer(body: bytes, what: str) -> Iterator[dict]:
    """The series of a (possibly chunked) /query answer; errors raise SourceError."""
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise SourceError(f"{what}: the server's answer is not JSON ({exc})") from exc
        if not isinstance(doc, dict):
            raise SourceError(f"{what}: unexpected answer {line[:200]!r}")
        if doc.get("error"):
            raise SourceError(f"{what}: {doc['error']}")
        for res in doc.get("results") or []:
            if res.get("error"):
                raise SourceError(f"{what}: {res['error']}")
            for series in res.get("series") or []:
                yield series


def _unit(tags: dict) -> Unit | None:
    agent = tags.get("agent") or ""
    if not agent:
        return None
    return Unit(unescape_tag(agent), *(unescape_tag(tags.get(k) or "") for k in TAGS[1:]))


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def to_records(kind: str, series: dict, q: Quality) -> Iterator:
    """Records of one answered series. Rows without an agent tag or with a missing or non-numeric
    value are rejected and counted (``missing_agent``, ``missing_value``)."""
    unit = _unit(series.get("tags") or {})
    cols = series.get("columns") or []
    rows = series.get("values") or []
    if unit is None:
        q.rejected["missing_agent"] += len(rows)
        return
    ix = {c: i for i, c in enumerate(cols)}
    tags = series.get("tags") or {}
    for row in rows:
        get = lambda c: row[ix[c]] if c in ix and ix[c] < len(row) else None  # noqa: E731
        t = _num(get("time"))
        if t is None:
            q.rejected["missing_value"] += 1
            continue
        t /= 1000.0  # epoch=ms: episode starts keep their milliseconds
        if kind == "obs":
            v = _num(get("observed_s"))
            if v is None:
                q.rejected["missing_value"] += 1
                continue
            yield ObsHour(unit, int(t), v)
        elif kind == "ping":
            answered = int(_num(get("rounds")) or 0)
            rows, loss_sum = _num(get("rows")) or 0, _num(get("loss_sum"))
            loss = ((loss_sum - 100.0 * (rows - answered)) / answered
                    if answered and loss_sum is not None else None)
            if not answered:
                continue  # a day on which the target never answered: no latency, no loss figure
            yield PingDay(unit, int(t), _num(get("p50")), _num(get("p95")), loss, answered,
                          _num(get("rtt_min")), _num(get("rtt_max")))
        elif kind == "episode":
            d = _num(get("duration_s"))
            if d is None:
                q.rejected["missing_value"] += 1
                continue
            yield Episode(unit, tags.get("type") or "", tags.get("cause") or "", t, d)
        elif kind == "speed":
            down = _num(get("download_bps"))
            if down is None:
                q.rejected["missing_value"] += 1
                continue
            yield SpeedTest(unit, t, down, _num(get("upload_bps")))


def to_counts(series: dict) -> Iterator[tuple[int, int]]:
    """(time in s, rows) of one answered count series (COUNT_KINDS); nothing for a bad row."""
    cols = series.get("columns") or []
    ix = {c: i for i, c in enumerate(cols)}
    for row in series.get("values") or []:
        get = lambda c: row[ix[c]] if c in ix and ix[c] < len(row) else None  # noqa: E731
        t, n = _num(get("time")), _num(get("rows"))
        if t is not None and n is not None and n > 0:
            yield int(t // 1000), int(n)


def late_hours(kept: set[int], obs, episodes, speeds, asked: set = frozenset()) -> set[tuple[str, int]]:
    """(agent, hour) on kept (cached) days at which an agent's rows show it was watching (a speed
    test; an outage or a battery/UPS cut, for every hour it lasted, since the agent probes all
    through one) while the cache holds no watching time for it: rows forwarded after the day was
    kept. Host-down cuts say nothing (the agent was not running); pairs in ``asked`` were asked
    about already."""
    seen = {(o.unit.agent, o.hour) for o in obs}
    out = set()

    def check(agent: str, hour: int) -> None:
        if hour - hour % DAY in kept and (agent, hour) not in seen and (agent, hour) not in asked:
            out.add((agent, hour))

    for t in speeds:
        check(t.unit.agent, int(t.time - t.time % 3600))
    for e in episodes:
        if e.cause == "host_down":
            continue
        h = int(e.start - e.start % 3600)
        while h < e.end:
            check(e.unit.agent, h)
            h += 3600
    return out


def _rejected(counts: list[tuple[int, int]]) -> list[tuple[int, str, int]]:
    """Per-hour counts of bad rounds as the cache keeps them: (hour, reason, rows)."""
    return [(h, COUNT_KINDS["bad_rounds"], n) for h, n in counts]


class Reader:
    """Runs the queries against one server. ``http`` is an agent.influx.HTTP (injected)."""

    def __init__(self, http, database: str, retention_policy: str = "", connect=None,
                 parallel: int = 1) -> None:
        """``connect()`` makes a further connection like ``http``: with ``parallel`` > 1, that
        many queries run at once (InfluxDB 1.x works a query on one core; the grouped queries of
        different weeks are independent)."""
        self.http = http
        self.connect = connect
        self.parallel = parallel if connect is not None else 1
        self.database = database
        self.retention_policy = retention_policy
        self.queries = 0
        self.bytes = 0
        self.cached_days = 0
        self.refreshed_days = 0     # kept days asked again because an agent's rows came late

    def query(self, q: str, what: str = "query", http=None) -> list[dict]:
        http = http or self.http
        params = {"db": self.database, "epoch": "ms", "chunked": "true", "chunk_size": "20000"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        ans, _ = http.request("POST", "/query?" + urlencode(params),
                                   body=urlencode({"q": q}).encode(),
                                   headers={"Content-Type": "application/x-www-form-urlencoded",
                                            "Accept": "application/json"})
        self.queries += 1
        self.bytes += len(ans.body)
        if ans.status is None:
            raise SourceError(f"{what}: no answer from InfluxDB: {ans.message}")
        if ans.status in (401, 403):
            raise SourceError(f"{what}: InfluxDB refused the credentials (HTTP {ans.status}): "
                              f"{ans.message}")
        if not ans.ok:
            raise SourceError(f"{what}: HTTP {ans.status}: {ans.message}")
        return list(parse_answer(ans.body, what))

    def _run_all(self, todo: list[tuple[str, str]]):
        if self.parallel <= 1 or len(todo) < 2:
            for kind, text in todo:
                yield self.query(text, f"InfluxDB {kind} query")
            return
        import threading
        from concurrent.futures import ThreadPoolExecutor

        local = threading.local()
        extra: list = []
        lock = threading.Lock()

        def one(item):
            if not hasattr(local, "http"):
                local.http = self.connect()
                with lock:
                    extra.append(local.http)
            kind, text = item
            return self.query(text, f"InfluxDB {kind} query", local.http)

        try:
            with ThreadPoolExecutor(self.parallel) as pool:
                yield from pool.map(one, todo)
        finally:
            for h in extra:
                h.close()

    def read(self, start: float, end: float, cache=None, now: float | None = None,
             settle_s: float = 3 * 86400) -> tuple[Dataset, Quality]:
        """The window's records. With a :class:`collector.cache.Cache`, whole UTC days already
        kept are read from it, and days fetched here that are at least ``settle_s`` old are kept."""
        q = Quality()
        got: dict[str, list] = {"obs": [], "ping": [], "episode": [], "speed": [], "bad_rounds": [],
                                "unset": []}
        since = max(start, CLOCK_SET)   # rows before it are counted as clock_unset, never read
        days = days_of(since, end)
        kept = cache.days() & set(days) if cache is not None else set()
        fetch = [d for d in days if d not in kept]
        texts = [t for a, b in day_runs(fetch) for t in grouped_queries(a, b)]
        todo = texts + raw_queries(since, end)
        # Chunked answers split a series over several chunks ("partial": more follows); each
        # chunk's rows are records of their own, so they are simply read in turn, in query order.
        for (kind, _), answer in zip(todo, self._run_all(todo)):
            for series in answer:
                got[kind].extend(to_counts(series) if kind in COUNT_KINDS
                                 else to_records(kind, series, q))
        if cache is not None:
            limit = (now if now is not None else end) - settle_s
            cache.store([d for d in fetch if d + DAY <= limit], got["obs"], got["ping"],
                        _rejected(got["bad_rounds"]))
            old_obs, old_pings = cache.load(kept)
            old_bad = cache.load_rejected(kept)
            late = late_hours(kept, old_obs, got["episode"], got["speed"], cache.asked_again())
            stale = sorted({h - h % DAY for _, h in late})
            if stale:
                # An agent forwarded rows for a kept day after it was kept (it was offline):
                # its outages are here but not its watching time. Ask again for those days.
                fresh: dict[str, list] = {"obs": [], "ping": [], "bad_rounds": []}
                texts = [t for a, b in day_runs(stale) for t in grouped_queries(a, b)]
                for (kind, _), answer in zip(texts, self._run_all(texts)):
                    for series in answer:
                        fresh[kind].extend(to_counts(series) if kind in COUNT_KINDS
                                           else to_records(kind, series, q))
                cache.store(stale, fresh["obs"], fresh["ping"], _rejected(fresh["bad_rounds"]))
                cache.mark_asked_again(late)
                gone = set(stale)
                old_obs = [o for o in old_obs if o.hour - o.hour % DAY not in gone] + fresh["obs"]
                old_pings = [p for p in old_pings if p.day not in gone] + fresh["ping"]
                old_bad = ([r for r in old_bad if r[0] - r[0] % DAY not in gone]
                           + _rejected(fresh["bad_rounds"]))
            got["obs"] += old_obs
            got["ping"] += old_pings
            got["bad_rounds"] += [(h, n) for h, _, n in old_bad]
            self.cached_days = len(kept) - len(stale)
            self.refreshed_days = len(stale)
        # Bad rounds count in the window's hours only (the queries cover whole days).
        bad = sum(n for h, n in got["bad_rounds"] if since - since % 3600 <= h < end)
        unset = sum(n for _, n in got["unset"])
        for reason, n in (("absurd_observed", bad), ("clock_unset", unset)):
            if n:
                q.rejected[reason] += n
        ds = Dataset(start, end, tuple(got["obs"]), tuple(got["episode"]), tuple(got["ping"]),
                     tuple(got["speed"]))
        return ds, q
