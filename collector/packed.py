"""The episodes and speed tests an agent packs into its ``daily`` rows, read back (pure).

An agent packs the day's ``outage`` and ``speedtest`` rows into the day's row
(kit.hourly.pack_rows: fields ``outages`` and ``speed_tests``), so the collector reads one row
per agent-day instead of every episode and test with its tags: for a quarter of 10,000 agents,
6.3 million rows and 570 MB of answer that cost the server 37 s (bench/README.md).

A row covers its agent-day's rows when both fields are packed strings. Null (a version that
packs nothing) or ``*`` (kit.hourly.NOT_PACKED: the agent could not pack them exactly) leave the
agent-day to the ``outage`` and ``speedtest`` rows themselves, as does a field that is not what
the agent writes, which is counted (``bad_summary``). An agent-day is covered only when every
one of its daily rows (one per tag set) is. What comes back is what the row queries give for the
same rows (collector.answers.tagged_rows), value for value: a start is the day's start plus the
whole milliseconds packed (what ``epoch=ms`` answers), divided by 1,000 as the row's time is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from kit.definitions import Unit
from kit.hourly import DAY_S, NOT_PACKED
from kit.records import EpisodeColumns, SpeedColumns

# One number as kit.hourly._number writes one (kit.summaries.NUMBER); a name; an offset in ms.
_NUM = r"\d+(?:\.\d+)?(?:e[+-]\d+)?"
_NAME = r"[a-z][a-z0-9_]*"
_OUTAGE = rf"{_NAME}:{_NAME}:\d{{1,8}}:{_NUM}"
_SPEED = rf"\d{{1,8}}:{_NUM}:(?:{_NUM})?"
OUTAGES = re.compile(rf"(?:{_OUTAGE}(?:,{_OUTAGE})*)?")
SPEEDS = re.compile(rf"(?:{_SPEED}(?:,{_SPEED})*)?")
DAY_MS = DAY_S * 1000


class Bad(ValueError):
    """A packed field that is not what an agent writes."""


def covers(outages: object, speeds: object) -> bool | None:
    """Whether a daily row's two fields cover its agent-day's rows: True (both packed and well
    formed), False (null or not packed: the rows are read as they are), None (not what the
    agent writes: counted, and the rows are read as they are)."""
    if outages is None or speeds is None or outages == NOT_PACKED or speeds == NOT_PACKED:
        return False
    if outages.__class__ is not str or speeds.__class__ is not str:
        return None
    if not OUTAGES.fullmatch(outages) or not SPEEDS.fullmatch(speeds):
        return None
    return True


def read(units: Sequence[Unit], who: Sequence[int], days: Sequence[int], outages: Sequence[str],
         speeds: Sequence[str], window: tuple[float, float]
         ) -> tuple[EpisodeColumns | None, SpeedColumns | None]:
    """The episodes and speed tests packed in covering rows (each already passed
    :func:`covers`): row ``i`` is ``units[who[i]]``'s, of the day starting at ``days[i]`` (s).
    Only those dated in ``window`` [start, end) are given, as the row queries ask for no other.
    Raises :class:`Bad` for an offset past the day's end."""
    import numpy as np  # deferred: the collector's CLI says how to install it

    who_a = np.asarray(who, dtype=np.int64)
    day_ms = np.asarray(days, dtype=np.int64) * 1000
    lo, hi = window[0] * 1000.0, window[1] * 1000.0

    def entries(texts: Sequence[str], width: int, at: int) -> Any:
        """The entries of every row as token columns (each ``width`` long, the offset at
        ``at``), the unit and start of each kept one, and which are kept; None for none."""
        per_row = np.fromiter((t.count(",") + 1 if t else 0 for t in texts), np.int64, len(texts))
        joined = ",".join(t for t in texts if t)
        if not joined:
            return None
        tok = joined.replace(":", ",").split(",")
        cols = [tok[k::width] for k in range(width)]
        off = np.fromiter(map(int, cols[at]), np.int64, len(cols[at]))
        if (off >= DAY_MS).any():
            raise Bad("an offset past the day's end")
        ms = np.repeat(day_ms, per_row) + off
        keep = (ms >= lo) & (ms < hi)
        return cols, np.repeat(who_a, per_row)[keep].astype(np.int32), ms[keep] / 1000.0, keep

    def numbers(col: list[str], keep: Any) -> Any:
        """A column of numbers, an empty one (an upload the test did not measure) as NaN."""
        return np.fromiter((float(v) if v else np.nan for v in col), np.float64, len(col))[keep]

    eps = tests = None
    got = entries(outages, 4, 2)
    if got is not None:
        (typ, cause, _, dur), unit, start, keep = got
        names: dict[str, int] = {}
        t_ix = np.array([names.setdefault(v, len(names)) for v in typ], dtype=np.int32)[keep]
        c_ix = np.array([names.setdefault(v, len(names)) for v in cause], dtype=np.int32)[keep]
        eps = EpisodeColumns(tuple(units), unit, tuple(names), t_ix, c_ix, start,
                             numbers(dur, keep))
    got = entries(speeds, 3, 0)
    if got is not None:
        (_, down, up), unit, start, keep = got
        tests = SpeedColumns(tuple(units), unit, start, numbers(down, keep), numbers(up, keep))
    return eps, tests
