"""Reading agents' data from InfluxDB through InfluxQL on the v1 ``/query`` endpoint.

InfluxQL is the one query language InfluxDB 1.x, 2.x (>= 2.4, through DBRP mappings) and 3.x all
answer. The aggregation the statistics need first is pushed into the queries, so a month of
10-second rounds never crosses the wire:

* ``round``: observed seconds per agent and UTC hour (``sum(interval_s) GROUP BY time(1h)``);
* ``ping``: per agent and UTC day, the median and 95th percentile of ``rtt_avg_ms`` to internet
  targets and the mean loss, over rounds in which the target answered at all;
* ``outage`` (power and connectivity) and ``speedtest`` (status ok): the rows themselves, which
  are few (one per episode or test).

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
from collector.model import Dataset, Episode, ObsHour, PingDay, Quality, SpeedTest, Unit

TAGS = ("agent", "region", "isp", "city", "access")
CHUNK_S = 7 * 86400  # grouped queries are cut into weeks to bound the server's memory


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


def chunks(start: float, end: float, size: float = CHUNK_S) -> list[tuple[float, float]]:
    out, t = [], start
    while t < end:
        out.append((t, min(end, t + size)))
        t += size
    return out


def queries(start: float, end: float) -> list[tuple[str, str]]:
    """(kind, InfluxQL) for the window [start, end) in seconds since 1970 UTC."""
    out = []
    for a, b in chunks(start, end):
        out.append(("obs", f'SELECT sum("interval_s") AS "observed_s" FROM "round" WHERE '
                           f'{time_range(a, b)} GROUP BY time(1h), {_by()} fill(none)'))
        out.append(("ping", 'SELECT percentile("rtt_avg_ms", 50) AS "p50", '
                            'percentile("rtt_avg_ms", 95) AS "p95", mean("loss_pct") AS "loss", '
                            'count("loss_pct") AS "rounds", min("rtt_avg_ms") AS "rtt_min", '
                            'max("rtt_avg_ms") AS "rtt_max" FROM "ping" WHERE "role" = \'internet\' '
                            f'AND "loss_pct" < 100 AND {time_range(a, b)} GROUP BY time(1d), '
                            f'{_by()} fill(none)'))
    t = time_range(start, end)
    out.append(("episode", 'SELECT "duration_s" FROM "outage" WHERE ("type" = \'power\' OR '
                           f'"type" = \'connectivity\') AND {t} GROUP BY {_by("type", "cause")}'))
    out.append(("speed", 'SELECT "download_bps", "upload_bps" FROM "speedtest" WHERE '
                         f'"status" = \'ok\' AND {t} GROUP BY {_by()}'))
    return out


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
            rounds = _num(get("rounds"))
            yield PingDay(unit, int(t), _num(get("p50")), _num(get("p95")), _num(get("loss")),
                          int(rounds or 0), _num(get("rtt_min")), _num(get("rtt_max")))
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


class Reader:
    """Runs the queries against one server. ``http`` is an agent.influx.HTTP (injected)."""

    def __init__(self, http, database: str, retention_policy: str = "") -> None:
        self.http = http
        self.database = database
        self.retention_policy = retention_policy
        self.queries = 0
        self.bytes = 0

    def query(self, q: str, what: str = "query") -> list[dict]:
        params = {"db": self.database, "epoch": "ms", "chunked": "true", "chunk_size": "20000"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        ans, _ = self.http.request("POST", "/query?" + urlencode(params),
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

    def read(self, start: float, end: float) -> tuple[Dataset, Quality]:
        q = Quality()
        got: dict[str, list] = {"obs": [], "ping": [], "episode": [], "speed": []}
        for kind, text in queries(start, end):
            # Chunked answers split a series over several chunks ("partial": more follows); each
            # chunk's rows are records of their own, so they are simply read in turn.
            for series in self.query(text, f"InfluxDB {kind} query"):
                got[kind].extend(to_records(kind, series, q))
        ds = Dataset(start, end, tuple(got["obs"]), tuple(got["episode"]), tuple(got["ping"]),
                     tuple(got["speed"]))
        return ds, q
