"""Reading ``hourly`` summary rows back (pure, stdlib only): what the collector and any other
reader of summaries do with a row's fields, whichever source they came from.

:mod:`kit.hourly` makes the rows; this module checks them (a row comes from outside: an agent
nobody audits, a server's answer, a volunteer's file) and reduces them to the records of
:mod:`kit.records`:

* :func:`observed` - an hour's ``observed_s`` as watched seconds, or a counted rejection;
* :func:`latency` - the latency part of a row (an hourly or a daily one, or a day's sums of
  hourly rows, added by InfluxDB), as a :class:`Latency`, or a counted rejection;
* :func:`packed_hours` and :func:`packed_latency` - the same from a ``daily`` row's packed
  strings (``observed_hours``, ``rtt_buckets``), each value checked as its row's would be;
* :class:`Latency` merges by adding, and :meth:`Latency.ping_day` gives the day's
  :class:`~kit.records.PingDay`: p50 and p95 from the merged histogram
  (:meth:`kit.hourly.Histogram.quantile`, within 2 % of the exact nearest rank), the mean loss
  over the rounds in which the target answered (``loss_pct_sum / ping_rounds``), the extremes.

The reasons a row is refused (``kit.definitions.Quality.rejected``):

* ``bad_summary``   an hourly row whose ``observed_s`` is not a number in [0, 3600] (its
  latency is judged on its own: InfluxDB sums a day's latency on the server); a daily row whose
  ``observed_hours`` is not a string of 24 such numbers;
* ``bad_histogram`` a row's (or an agent-day's) latency figures that cannot be true: an RTT
  histogram count that is not a whole number from 0 to 2^53, counts that do not add up to
  ``rtt_count``, ``ping_rounds`` that is not such a count, a loss sum or an extreme that is not
  a finite number. Its observed time is kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from kit.definitions import MAX_INTERVAL_S, Unit
from kit.hourly import HOUR_S, LAST, Histogram, bucket_of_field
from kit.records import PingDay

MAX_COUNT = 2 ** 53      # past this a count is not a count (nor an SQLite integer)
# digits of a packed bucket's index and count, at most (LAST and MAX_COUNT have 3 and 16): a
# longer text is refused before int() reads it (which refuses past 4,300 digits, with a
# ValueError of its own)
_INDEX_DIGITS, _COUNT_DIGITS = 3, 16
# A number as kit.hourly.pack_hours writes one (Python's repr of a float, without a trailing
# ".0"): float() alone would also take " 1", "1_0", "nan" and "infinity".
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[+-]\d+)?")
BAD_ROW = "bad_summary"
BAD_LATENCY = "bad_histogram"


class Rejected(ValueError):
    """A row (or part of one) refused, counted under ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _number(v: object) -> float | None:
    """A finite number, None when absent; Rejected(BAD_LATENCY) for anything else."""
    if v is None:
        return None
    f = _float(v, BAD_LATENCY)
    if not math.isfinite(f):
        raise Rejected(BAD_LATENCY)
    return f


def _float(v: object, reason: str) -> float:
    """``v`` as a float; Rejected(``reason``) for a boolean, a non-number or an int too large."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Rejected(reason)
    try:
        return float(v)
    except OverflowError:
        raise Rejected(reason) from None


def _count(v: object) -> int:
    f = _number(v)
    if f is None:
        return 0
    if not 0 <= f <= MAX_COUNT or f != int(f):
        raise Rejected(BAD_LATENCY)
    return int(f)


def observed(v: object) -> float | None:
    """The watched seconds of an hourly row's ``observed_s``: None for 0 (an hour only an
    episode touched: no watching, as no round), Rejected(``bad_summary``) for anything that is
    not a number in [0, 3600]."""
    f = _float(v, BAD_ROW)
    if not 0 <= f <= MAX_INTERVAL_S:      # NaN fails this too
        raise Rejected(BAD_ROW)
    return f or None


@dataclass
class Latency:
    """The latency figures of rows, merged by adding (counts) and min/max (extremes)."""

    hist: Histogram = field(default_factory=Histogram)
    ping_rounds: int = 0
    loss_pct_sum: float = 0.0
    rtt_min_ms: float | None = None
    rtt_max_ms: float | None = None

    def merge(self, other: Latency) -> Latency:
        self.hist.merge(other.hist)
        self.ping_rounds += other.ping_rounds
        self.loss_pct_sum += other.loss_pct_sum
        for name, pick in (("rtt_min_ms", min), ("rtt_max_ms", max)):
            a, b = getattr(self, name), getattr(other, name)
            setattr(self, name, b if a is None else a if b is None else pick(a, b))
        return self

    def ping_day(self, unit: Unit, day: int) -> PingDay | None:
        """The day's record; None when the target never answered (no rounds to figure)."""
        if not self.ping_rounds:
            return None
        return PingDay(unit, day, self.hist.quantile(50), self.hist.quantile(95),
                       self.loss_pct_sum / self.ping_rounds, self.ping_rounds,
                       self.rtt_min_ms, self.rtt_max_ms)


def latency(fields: Mapping[str, object]) -> Latency:
    """The latency part of a row's fields (or of a day's sums, under the same names); raises
    Rejected(``bad_histogram``) when it cannot be true (see the module's note)."""
    counts: dict[int, int] = {}
    for name, v in fields.items():
        i = bucket_of_field(name)
        if i is not None:
            # a plain count as the agent writes it, else every check (_count)
            n = v if v.__class__ is int and 0 <= v <= MAX_COUNT else _count(v)
            if n:
                counts[i] = counts.get(i, 0) + n
    return _latency(counts, fields)


def _latency(counts: dict[int, int], fields: Mapping[str, object]) -> Latency:
    hist = Histogram(counts)
    if hist.total != _count(fields.get("rtt_count")):
        raise Rejected(BAD_LATENCY)
    out = Latency(hist, _count(fields.get("ping_rounds")), _number(fields.get("loss_pct_sum")) or 0.0,
                  _number(fields.get("rtt_min_ms")), _number(fields.get("rtt_max_ms")))
    if hist.total > out.ping_rounds:
        raise Rejected(BAD_LATENCY)     # an RTT is counted only from a round that answered
    return out


def packed_hours(text: object) -> list[float]:
    """The 24 hours' watched seconds of a daily row's ``observed_hours`` (hour 00 first, 0 for
    an hour without watching); Rejected(``bad_summary``) unless it is a string of 24 numbers in
    [0, 3600] joined by commas."""
    if not isinstance(text, str) or len(text) > 24 * 32:
        raise Rejected(BAD_ROW)
    parts = text.split(",")
    if len(parts) != 24 or not all(map(NUMBER.fullmatch, parts)):
        raise Rejected(BAD_ROW)
    try:
        out = [float(p) for p in parts]
    except ValueError:
        raise Rejected(BAD_ROW) from None
    if not all(0 <= v <= MAX_INTERVAL_S for v in out):      # NaN fails this too
        raise Rejected(BAD_ROW)
    return out


def packed_latency(fields: Mapping[str, object]) -> Latency:
    """:func:`latency` of a daily row whose histogram is the packed ``rtt_buckets``
    ("<index>:<count>,..."; Rejected(``bad_histogram``) for an index outside the buckets, a
    count that is not a whole number, an index or count of more digits than any valid one has
    (3 and 16), an index given twice, or any other text)."""
    text = fields.get("rtt_buckets")
    if not isinstance(text, str) or len(text) > (LAST + 1) * 40:
        raise Rejected(BAD_LATENCY)
    counts: dict[int, int] = {}
    for part in text.split(",") if text else ():
        i, sep, n = part.partition(":")
        if not (sep and i.isdigit() and n.isdigit() and i.isascii() and n.isascii()) \
                or len(i) > _INDEX_DIGITS or len(n) > _COUNT_DIGITS:
            raise Rejected(BAD_LATENCY)
        b, c = int(i), int(n)
        if b > LAST or c > MAX_COUNT or b in counts:
            raise Rejected(BAD_LATENCY)
        if c:
            counts[b] = c
    return _latency(counts, fields)


def hour_start(t_s: float) -> bool:
    """Whether ``t_s`` (seconds since 1970) is the start of a UTC hour, as a row's time must be."""
    return t_s % HOUR_S == 0
