"""The one record type that crosses from measurement to store to sink, and the episode type.

A :class:`Sample` is a measurement at a point in time: a name, low-cardinality string tags and typed
fields whose names carry their unit (``rtt_avg_ms``, ``loss_pct``, ``duration_s``). Every emitted
measurement, tag and field is listed in docs/metrics.md; a test enforces it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

FieldValue = float | int | bool | str

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ns(t: datetime) -> int:
    """Nanoseconds since the Unix epoch for an aware datetime (exact, no float rounding)."""
    if t.tzinfo is None:
        raise ValueError("naive datetime: timestamps must be timezone-aware (UTC)")
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def from_ns(ns: int) -> datetime:
    """Aware UTC datetime for nanoseconds since the epoch (microsecond precision)."""
    return _EPOCH + timedelta(microseconds=ns // 1_000)


def _frozen(m: Mapping) -> Mapping:
    return MappingProxyType(dict(m))


@dataclass(frozen=True)
class Sample:
    """One measurement: ``measurement`` name, string ``tags``, typed ``fields``, UTC ``time``.

    Tags and fields are copied into read-only mappings, so a Sample can be shared between threads.
    A field that could not be measured is left out (never a sentinel such as -1).
    """

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time: datetime

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError(f"{self.measurement}: time must be timezone-aware")
        object.__setattr__(self, "tags", _frozen(self.tags))
        object.__setattr__(self, "fields", _frozen(self.fields))

    @property
    def time_ns(self) -> int:
        return to_ns(self.time)

    def with_tags(self, extra: Mapping[str, str]) -> Sample:
        """The same sample with ``extra`` tags added (existing keys win: probes know best)."""
        merged = dict(extra)
        merged.update(self.tags)
        return Sample(self.measurement, merged, self.fields, self.time)


@dataclass(frozen=True)
class Episode:
    """An outage (or degraded period) as a time range.

    ``type``: "connectivity" (later also "power", "degraded"); ``cause``: lan | isp | dns | power |
    unknown. ``end`` is None while in progress. ``duration_s`` comes from the monotonic clock, and
    ``start`` is rebased on it (``start = end - duration``), so a wall-clock step inside an episode
    never produces a negative or inconsistent duration.
    """

    id: str
    type: str
    cause: str
    start: datetime
    end: datetime | None
    duration_s: float
    sustained: bool
    details: Mapping[str, FieldValue] = field(default_factory=dict)

    @property
    def in_progress(self) -> bool:
        return self.end is None

    def end_ms(self) -> int:
        """The end (for an episode in progress: start + duration so far) in ms since the epoch."""
        end = self.end or self.start + timedelta(seconds=self.duration_s)
        return to_ns(end) // 1_000_000
