"""Hourly summaries: what an agent's UTC hour reduces to, computed where the data is (pure).

An agent writes one ``hourly`` row per UTC hour (its time: the hour's start) beside its raw rows.
The collector, the regional dashboard and the line report for long windows read these rows
instead of the raw ones, so their cost grows with agents x hours, not with the cadence; a
volunteer on a metered line can send only these (``influx.send = "summaries"``).

What an hour holds (docs/metrics.md, ``hourly``, lists every field):

* time watched: ``observed_s`` is the sum of the good ``interval_s`` of the rounds dated in the
  hour (a number in (0, 3600], as the collector has always counted a round), ``online_s`` and
  ``degraded_s`` the same sum over the rounds in which the internet answered (``up`` or
  ``degraded``) and over the ``degraded`` ones; ``rounds`` and ``error_rounds`` count them;
* episodes, split exactly at the hour's edges: ``outage_<cause>_s`` for connectivity outages
  (every cause of :data:`~kit.definitions.INTERNET_CAUSES`), ``power_<source>_s`` for power cuts
  (battery, ups, host), ``agent_gap_s``; an episode in progress counts up to ``now``;
* internet targets: ``echoes_sent``, ``echoes_received``; ``ping_rounds`` (rows in which the
  target answered at all) and ``loss_pct_sum`` (their loss, summed: the mean loss the collector
  publishes is ``loss_pct_sum / ping_rounds``); ``rtt_min_ms``, ``rtt_max_ms``; the hour's own
  ``rtt_p50_ms`` and ``rtt_p95_ms`` (exact, for dashboards);
* DNS: ``dns_queries``, ``dns_failures``;
* the internet targets' round RTTs (``rtt_avg_ms`` of each answered row) as a mergeable histogram:
  ``rtt_h<i>`` integer counts, only the buckets that hold any, ``rtt_count`` their total.

The histogram's buckets are log-spaced, the same for every agent and every version: bucket ``i``
holds the RTTs in (g^(i-1-OFFSET), g^(i-OFFSET)] ms with g = (1 + a) / (1 - a), a = :data:`ALPHA`,
and stands for the value 2 g^(i-OFFSET) / (g + 1), which lies within ``a`` (relative) of every
value in it. Histograms merge by adding counts, so a day, a week or a cell is the sum of its hours,
and any quantile read from a merged histogram (:meth:`Histogram.quantile`, the rank rule of
:func:`kit.definitions.nearest_rank`) is within 2 % of the exact one on the same samples.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kit.definitions import EPISODE_TYPES, INTERNET_CAUSES, MAX_INTERVAL_S, nearest_rank

MEASUREMENT = "hourly"
HOUR_S = 3600
VERSION = 1              # the ``summary_version`` field: how the row was made

ALPHA = 0.0195           # the buckets' relative accuracy: under the 2 % promised, with room for
GAMMA = (1 + ALPHA) / (1 - ALPHA)   # the float arithmetic at the bucket edges
_LOG_GAMMA = math.log(GAMMA)
MIN_MS, MAX_MS = 0.01, 120_000.0    # RTTs outside are counted at the nearest end
OFFSET = -math.ceil(math.log(MIN_MS) / _LOG_GAMMA)   # bucket 0 holds MIN_MS
LAST = math.ceil(math.log(MAX_MS) / _LOG_GAMMA) + OFFSET
PREFIX = "rtt_h"

POWER_SOURCES: tuple[str, ...] = ("battery", "ups", "host")
OUTAGE_FIELDS = tuple(f"outage_{c}_s" for c in INTERNET_CAUSES)
POWER_FIELDS = tuple(f"power_{s}_s" for s in POWER_SOURCES)
# Every field a row always has (the histogram's buckets and the RTT figures only when there were
# RTTs), in the order the catalog lists them.
SECONDS_FIELDS = ("observed_s", "online_s", "degraded_s", *OUTAGE_FIELDS, *POWER_FIELDS,
                  "agent_gap_s")
COUNT_FIELDS = ("rounds", "error_rounds", "echoes_sent", "echoes_received", "ping_rounds",
                "dns_queries", "dns_failures", "rtt_count")


def bucket(ms: float) -> int:
    """The histogram bucket of an RTT in milliseconds (clamped to [0, LAST])."""
    if not ms > MIN_MS:  # also NaN: the lowest bucket, never an exception
        return 0
    if ms >= MAX_MS:
        return LAST
    return min(LAST, max(0, math.ceil(math.log(ms) / _LOG_GAMMA) + OFFSET))


def bucket_value(i: int) -> float:
    """The value bucket ``i`` stands for (ms)."""
    return 2 * GAMMA ** (i - OFFSET) / (GAMMA + 1)


def field_name(i: int) -> str:
    return f"{PREFIX}{i:03d}"


# Every bucket's field name, as field_name writes it (three digits), to its bucket.
_BUCKET_OF_NAME = {f"{PREFIX}{i:03d}": i for i in range(LAST + 1)}


def bucket_of_field(name: str) -> int | None:
    """The bucket a field name counts (``rtt_h042`` -> 42), None for any other name (also
    ``rtt_h42``: only the names the agent writes)."""
    return _BUCKET_OF_NAME.get(name)


@dataclass
class Histogram:
    """Counts by bucket; merged by adding."""

    counts: dict[int, int] = field(default_factory=dict)

    def add(self, ms: float, n: int = 1) -> None:
        i = bucket(ms)
        self.counts[i] = self.counts.get(i, 0) + n

    def merge(self, other: Histogram | Mapping[int, int]) -> Histogram:
        for i, n in (other.counts if isinstance(other, Histogram) else other).items():
            self.counts[i] = self.counts.get(i, 0) + n
        return self

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def quantile(self, pct: float) -> float | None:
        """The ``pct`` percentile by the rank rule of :func:`kit.definitions.nearest_rank`
        (index floor(n x pct / 100 + 0.5) - 1 of the sorted values): the value of the bucket
        holding that sample. None when the index falls outside (no samples)."""
        n = self.total
        return self.at(math.floor(n * pct / 100.0 + 0.5) - 1)

    def at(self, k: int) -> float | None:
        """The value of the bucket holding the ``k``-th smallest sample (from 0), None outside
        (for another rank rule, as :func:`kit.definitions.rank` is the line report's)."""
        if not 0 <= k < self.total:
            return None
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen > k:
                return bucket_value(i)
        return None  # unreachable: k < total

    def fields(self) -> dict[str, int]:
        return {field_name(i): n for i, n in sorted(self.counts.items()) if n > 0}

    @classmethod
    def from_fields(cls, fields: Mapping[str, object]) -> Histogram:
        """The histogram in a row's fields (other fields ignored; a count that is not a
        non-negative whole number is skipped)."""
        h = cls()
        counts, index = h.counts, _BUCKET_OF_NAME
        for name, v in fields.items():   # a year of rows is 700,000 fields: kept lean
            i = index.get(name)
            if i is None:
                continue
            if type(v) is int:
                if v >= 0:
                    counts[i] = counts.get(i, 0) + v
            elif type(v) is float and v >= 0 and v.is_integer():
                counts[i] = counts.get(i, 0) + int(v)
        return h


# -- the summary of one hour --------------------------------------------------------------------

@dataclass(frozen=True)
class Span:
    """An episode as the summary sees it: its kind, the field it counts in and its extent in
    seconds since 1970 (``end`` None while in progress)."""

    type: str          # connectivity, power, agent_gap (others are not summed)
    cause: str
    source: str
    start: float
    end: float | None


def episode_field(span: Span) -> str | None:
    """The seconds field an episode counts in, None for kinds an hour does not sum."""
    if span.type == "connectivity":
        return f"outage_{span.cause}_s" if span.cause in INTERNET_CAUSES else "outage_unknown_s"
    if span.type == "power":
        return f"power_{span.source}_s" if span.source in POWER_SOURCES else None
    if span.type == "agent_gap":
        return "agent_gap_s"
    return None


def overlap(start: float, end: float, hour: int) -> float:
    """Seconds of [start, end) inside the hour starting at ``hour``."""
    return max(0.0, min(end, hour + HOUR_S) - max(start, hour))


def hours_of(start: float, end: float) -> range:
    """The starts of the UTC hours [start, end) touches (the hour of ``start`` for an instant)."""
    first = int(start // HOUR_S) * HOUR_S
    last = int(end // HOUR_S) * HOUR_S
    if last == end and end > start:
        last -= HOUR_S  # an end exactly on an hour's edge does not touch the next hour
    return range(first, max(first, last) + HOUR_S, HOUR_S)


def finite(v: object) -> float | None:
    """``v`` as a finite float, None for anything else (absent, text, a boolean, NaN, inf):
    how every reader of a row's fields takes a number it may do without."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:   # an integer past any float (a hostile file's 400-digit count)
        return None
    return f if math.isfinite(f) else None


def summarise(hour: int, *, rounds: Iterable[Mapping[str, object]] = (),
              pings: Iterable[Mapping[str, object]] = (),
              dns: Iterable[Mapping[str, object]] = (),
              spans: Iterable[Span] = (), now: float) -> dict[str, float | int]:
    """The fields of the ``hourly`` row for the UTC hour starting at ``hour`` (seconds since
    1970), from the fields of its rows: ``rounds`` (the ``round`` rows dated in the hour),
    ``pings`` (the ``ping`` rows of internet targets), ``dns`` (the ``dns`` rows) and the
    episodes touching it (``spans``, an open one counted up to ``now``)."""
    out: dict[str, float | int] = dict.fromkeys(SECONDS_FIELDS, 0.0)
    out.update(dict.fromkeys(COUNT_FIELDS, 0))
    for f in rounds:
        out["rounds"] += 1
        status = f.get("status")
        if status == "error":
            out["error_rounds"] += 1
        v = finite(f.get("interval_s"))
        if v is None or not 0 < v <= MAX_INTERVAL_S:
            continue
        out["observed_s"] += v
        if status in ("up", "degraded"):
            out["online_s"] += v
        if status == "degraded":
            out["degraded_s"] += v
    hist = Histogram()
    rtts: list[float] = []
    loss_sum = 0.0
    lo = hi = None
    for f in pings:
        sent, received = finite(f.get("sent")), finite(f.get("received"))
        out["echoes_sent"] += int(sent or 0)
        out["echoes_received"] += int(received or 0)
        loss = finite(f.get("loss_pct"))
        if loss is None or loss >= 100:
            continue  # the target did not answer: an outage, counted by the episodes
        out["ping_rounds"] += 1
        loss_sum += loss
        rtt = finite(f.get("rtt_avg_ms"))
        if rtt is not None and rtt >= 0:
            hist.add(rtt)
            rtts.append(rtt)
            lo = rtt if lo is None else min(lo, rtt)
            hi = rtt if hi is None else max(hi, rtt)
    for f in dns:
        out["dns_queries"] += 1
        if f.get("success") is not True:
            out["dns_failures"] += 1
    for s in spans:
        name = episode_field(s)
        if name is None:
            continue
        end = s.end if s.end is not None else max(s.start, now)
        out[name] += overlap(s.start, end, hour)
    out["loss_pct_sum"] = loss_sum
    out["rtt_count"] = hist.total
    if rtts:
        out["rtt_min_ms"], out["rtt_max_ms"] = lo or 0.0, hi or 0.0
        out["rtt_p50_ms"] = nearest_rank(rtts, 50) or 0.0
        out["rtt_p95_ms"] = nearest_rank(rtts, 95) or 0.0
        out.update(hist.fields())
    out["summary_version"] = VERSION
    return out


# -- the day's latency row ----------------------------------------------------------------------

DAILY = "daily"
DAY_S = 86400


def day_fields(rows: Iterable[tuple[int, Mapping[str, object]]],
               packed: tuple[str, str] | None = None) -> dict[str, float | int | str]:
    """The fields of the ``daily`` row of one UTC day and tag set from its hourly rows, each
    given as (hour start in s, fields): what the collector needs of the day, so that it reads one
    row per agent-day instead of 24 (InfluxDB pays per output row and per field).
    ``observed_s``, ``loss_pct_sum`` (sums), ``hours``, ``rtt_count``, ``ping_rounds``
    (counts), ``rtt_min_ms``/``rtt_max_ms`` (extremes, when there were RTTs), the merged
    histogram, and the same two packed into strings the server returns as one value each:
    ``observed_hours`` (each UTC hour's ``observed_s``, :func:`pack_hours`) and ``rtt_buckets``
    (the histogram, :func:`pack_buckets`); ``packed``: the day's ``outages`` and ``speed_tests``
    (:func:`pack_rows`), when given; ``summary_version``."""
    out: dict[str, float | int | str] = {"observed_s": 0.0, "hours": 0, "rtt_count": 0,
                                         "ping_rounds": 0, "loss_pct_sum": 0.0}
    hist = Histogram()
    lo: float | None = None
    hi: float | None = None
    per_hour = [0.0] * 24
    observed_s = loss_pct_sum = 0.0
    n = ping_rounds = 0
    for start, f in rows:
        n += 1
        secs = finite(f.get("observed_s")) or 0.0
        observed_s += secs
        per_hour[start % DAY_S // HOUR_S] += secs
        ping_rounds += int(finite(f.get("ping_rounds")) or 0)
        loss_pct_sum += finite(f.get("loss_pct_sum")) or 0.0
        hist.merge(Histogram.from_fields(f))
        a, b = finite(f.get("rtt_min_ms")), finite(f.get("rtt_max_ms"))
        if a is not None:
            lo = a if lo is None else min(lo, a)
        if b is not None:
            hi = b if hi is None else max(hi, b)
    out.update(observed_s=observed_s, hours=n, rtt_count=hist.total, ping_rounds=ping_rounds,
               loss_pct_sum=loss_pct_sum)
    if hist.total and lo is not None and hi is not None:
        out["rtt_min_ms"], out["rtt_max_ms"] = lo, hi
    out.update(hist.fields())
    out["observed_hours"] = pack_hours(per_hour)
    out["rtt_buckets"] = pack_buckets(hist.counts)
    if packed is not None:
        out["outages"], out["speed_tests"] = packed
    out["summary_version"] = VERSION
    return out


# -- the day's episodes and speed tests, packed into its row -------------------------------------

OUTAGE, SPEEDTEST = "outage", "speedtest"
NOT_PACKED = "*"       # the day's rows could not be packed exactly: read them as they are
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_NS_PER_MS = 1_000_000


def pack_rows(day: int, rows: Iterable[tuple[str, Mapping[str, object], Mapping[str, object], int]]
              ) -> tuple[str, str]:
    """The ``outages`` and ``speed_tests`` fields of the ``daily`` row of one tag set and the UTC
    day starting at ``day`` (s): the rows a collector reads of that day, given as (measurement,
    tags, fields, time in ns), packed so that it reads one row per agent-day instead of each
    episode and test with its tags (a quarter of 10,000 agents is 6 million such rows).

    ``outages``: each ``outage`` row of a type the collector reads (power, connectivity) as
    ``type:cause:offset:duration_s``; ``speed_tests``: each ``speedtest`` row with status ok as
    ``offset:download_bps:upload_bps`` (the upload empty when the row has none); entries joined
    by commas, in the order given, "" for none. ``offset`` is the row's time in whole
    milliseconds after the day's start, as InfluxDB answers a time with ``epoch=ms``; numbers are
    the exact floats (:func:`_number`). A row that cannot be packed exactly (a value that is not
    a finite number >= 0, a name that is not lowercase letters, digits and _, a time outside the
    day) makes both fields :data:`NOT_PACKED`, and a collector reads that day's rows."""
    outages: list[str] = []
    tests: list[str] = []
    first = day * 1000
    try:
        for measurement, tags, fields, ns in rows:
            offset = ns // _NS_PER_MS - first
            if measurement == OUTAGE and tags.get("type") in EPISODE_TYPES:
                typ, cause = str(tags["type"]), tags.get("cause")
                if not isinstance(cause, str) or not _NAME.fullmatch(cause):
                    raise ValueError(cause)
                outages.append(f"{typ}:{cause}:{_offset(offset)}:{_packed(fields.get('duration_s'))}")
            elif measurement == SPEEDTEST and fields.get("status") == "ok":
                up = fields.get("upload_bps")
                tests.append(f"{_offset(offset)}:{_packed(fields.get('download_bps'))}:"
                             f"{'' if up is None else _packed(up)}")
    except ValueError:
        return NOT_PACKED, NOT_PACKED
    return ",".join(outages), ",".join(tests)


def _offset(ms: int) -> str:
    if not 0 <= ms < DAY_S * 1000:
        raise ValueError(ms)
    return str(ms)


def _packed(v: object) -> str:
    """A field's value as :func:`_number` writes it; ValueError unless a finite number >= 0."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
        raise ValueError(v)
    return _number(v)


def _number(v: float) -> str:
    """``v`` in the fewest characters that read back as the same float ("3600", "12.5")."""
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def pack_hours(seconds: Iterable[float]) -> str:
    """The 24 hours' observed seconds of a day as one string: "3600,3600,1210.5,0,...", the
    exact floats (:func:`_number`), hour 00 first."""
    return ",".join(map(_number, seconds))


def pack_buckets(counts: Mapping[int, int]) -> str:
    """A histogram as one string: "<index>:<count>" of each bucket holding any, by index,
    joined by commas ("" when empty)."""
    return ",".join(f"{i}:{n}" for i, n in sorted(counts.items()) if n > 0)


def unpack_buckets(text: str) -> dict[int, int]:
    """:func:`pack_buckets` read back (a trusted string: kit.summaries.packed_latency checks one
    from outside)."""
    return {int(i): int(n) for i, _, n in (p.partition(":") for p in text.split(",")) if text}
