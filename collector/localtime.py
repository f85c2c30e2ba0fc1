"""Time in the collector's local zone (pure, numpy): UTC seconds to local ones, hours of the
week, working seconds, and the periods a window is cut into."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from collector.settings import PERIODS, Settings
from kit.definitions import WEEKDAYS


class LocalTime:
    """UTC seconds to local seconds with the zone's offset taken per UTC hour (exact for zones
    whose changes fall on the hour; Asia/Karachi has one fixed offset, UTC+5)."""

    def __init__(self, tz: str, start: float, end: float) -> None:
        self.zone = ZoneInfo(tz)
        self.h0 = int(math.floor(start / 3600)) - 48
        h1 = int(math.ceil(end / 3600)) + 48
        self.offsets = np.array([self._offset_s(h * 3600) for h in range(self.h0, h1 + 1)],
                                dtype=np.float64)

    def _offset_s(self, t: int) -> float:
        offset = self.zone.utcoffset(datetime.fromtimestamp(t, UTC).replace(tzinfo=None))
        return offset.total_seconds() if offset is not None else 0.0

    def local(self, t: np.ndarray) -> np.ndarray:
        i = np.clip(np.floor(t / 3600).astype(np.int64) - self.h0, 0, self.offsets.size - 1)
        return t + self.offsets[i]

    def iso(self, t: float) -> str:
        return datetime.fromtimestamp(t, self.zone).isoformat(timespec="seconds")


def hour_of_week(local: np.ndarray) -> np.ndarray:
    """0..167, Monday 00:00 = 0, for local seconds (1970-01-01 was a Thursday)."""
    day = np.floor(local / 86400).astype(np.int64)
    return ((day + 3) % 7) * 24 + ((local - day * 86400) // 3600).astype(np.int64)


def work_seconds_before(local: np.ndarray, s: Settings) -> np.ndarray:
    """Working seconds from a fixed Monday up to each local time: the difference of two values is
    the overlap of an interval with the working hours, without looping over days."""
    mask = np.array([d in s.work_days for d in WEEKDAYS], dtype=np.float64)
    per_day = float(s.work_end_min - s.work_start_min) * 60.0
    before = np.concatenate([[0.0], np.cumsum(mask)[:-1]]) * per_day
    day = np.floor(local / 86400).astype(np.int64)
    weekday = (day + 3) % 7
    weeks = (day + 3) // 7
    tod = local - day * 86400.0
    inside = np.clip(tod - s.work_start_min * 60.0, 0.0, per_day)
    out: np.ndarray = weeks * (mask.sum() * per_day) + before[weekday] + mask[weekday] * inside
    return out


def periods(start: float, end: float, kind: str, tz: str) -> list[tuple[float, float]]:
    """[start, end) cut at local midnights (day), Mondays (week) or month starts (month)."""
    if kind == "all":
        return [(start, end)]
    if kind not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {kind!r}")
    zone = ZoneInfo(tz)
    t = datetime.fromtimestamp(start, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "week":
        t -= timedelta(days=t.weekday())
    elif kind == "month":
        t = t.replace(day=1)
    out = []
    while t.timestamp() < end:
        if kind == "day":
            nxt = t + timedelta(days=1)
        elif kind == "week":
            nxt = t + timedelta(days=7)
        else:
            nxt = (t.replace(day=28) + timedelta(days=4)).replace(day=1)
        nxt = nxt.replace(tzinfo=None).replace(tzinfo=zone)  # wall-clock midnight after a DST change
        out.append((max(start, t.timestamp()), min(end, nxt.timestamp())))
        t = nxt
    return [p for p in out if p[1] > p[0]]


def period_index(t: np.ndarray, bounds: list[tuple[float, float]]) -> np.ndarray:
    """Index of the period holding each time, -1 outside all of them."""
    starts = np.array([b[0] for b in bounds])
    ends = np.array([b[1] for b in bounds])
    p = np.searchsorted(starts, t, side="right")
    p -= 1
    # in place, on columns as long as every observed hour
    out = (p < 0) | ~(t < ends[np.maximum(p, 0)])
    p[out] = -1
    return p
