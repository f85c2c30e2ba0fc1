"""The hourly summaries job: one ``hourly`` row per UTC hour, computed from the store's own rows
(kit.hourly holds what a row means; docs/metrics.md lists its fields).

Every minute the job rewrites the hour in progress from the rounds, echoes and DNS queries the
store holds for it and the episodes touching it, so a collector run sees the last minutes. An hour
is written for good once it is over, and again whenever a late fact changes it: an episode that
closes after the hour (its hours are rewritten; it was counted up to the time of the earlier
version), episodes the agent recorded at a restart (an agent gap, a host that lost power), or
rows written late after the store could not be written. Every hour since the previous run is
summarised too, so a restart inside an hour, or after hours off, leaves no hour out; on the first
run the hours the store already holds are summarised, a day's worth per run.

An hour is computed from the raw rows while the store still holds them all (retention keeps 90
days by default). For an hour that retention or the size cap may have taken rows of (the store
keeps the time of the newest raw row it deleted), only the episode seconds are recomputed, on top
of the row already written: its rounds are gone, its row is not.

Rows are grouped by the tags that place the line (kit.definitions.LOCATION_TAGS): an hour in
which the site or the ISP changed has one row per tag set, each holding its own rounds; the
episodes' seconds go with the tags of the hour's last round, so nothing counts twice.

Beside each hour, the row of its UTC day (measurement ``daily``, kit.hourly.day_fields: the
day's hours merged, the latency histogram above all, and the day's outage and speedtest rows
packed, kit.hourly.pack_rows) is rewritten too: the collector reads a day's latency, episodes and
speed tests from it, one row instead of 24 hourly rows and every episode and test with its tags.
An episode's day is the day it began: when it closes, its hours are rewritten, and so is that
day's row.

What is forwarded: with ``influx.send = "all"`` every version; with ``"summaries"`` (a metered
line) the first version of an hour, one every :data:`PROGRESS_EVERY_S` while it grows, and the
final one: about four a hour (bench/README.md, bytes per month); the day's row when one of its
hours closes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import cast

from agent import outage
from agent.jobs.context import Context, Job
from agent.model import Episode, FieldValue, Sample, from_ns, to_ns
from agent.store import STATE_PRUNED
from kit import hourly
from kit.definitions import LOCATION_TAGS

log = logging.getLogger("linewatch")

SUMMARIES_S = 60.0          # how often the hour in progress is rewritten in the store
PROGRESS_EVERY_S = 900.0    # send = "summaries": how often a growing hour is forwarded
BACKFILL_HOURS = 24         # hours summarised per run when catching up
LATE_MARGIN_S = 3600.0      # episodes that ended this long before the last run are looked at again
STATE_THROUGH = "summary_through"   # the last closed hour written for good (its start, s)
STATE_CHECKED = "summary_checked"   # when the job last ran (s since 1970)
NS = 1_000_000_000
RAW = ("round", "ping", "dns")


Row = tuple[str, dict[str, object], dict[str, object], int]   # measurement, tags, fields, ns
Place = tuple[tuple[str, str], ...]


def place(tags: Mapping[str, object]) -> Place:
    """The tags that place a row: the location tags it has, sorted."""
    return tuple(sorted((k, str(tags[k])) for k in LOCATION_TAGS if k in tags))


def spans_of(episodes: Iterable[Episode]) -> list[hourly.Span]:
    return [hourly.Span(e.type, e.cause, str(e.details.get("source", "")), to_ns(e.start) / NS,
                        to_ns(e.end) / NS if e.end is not None else None) for e in episodes]


def hour_rows(hour: int, rows: Iterable[Row], spans: list[hourly.Span], now: float,
              default_tags: dict[str, str]) -> list[Sample]:
    """The ``hourly`` samples of one hour from its raw ``rows`` ((measurement, tags, fields,
    time_ns), oldest first) and the episodes touching it: one per tag set, the episodes with
    the last one's (pure)."""
    groups: dict[Place, dict[str, list[Mapping[str, object]]]] = defaultdict(
        lambda: {"round": [], "ping": [], "dns": []})
    last: Place | None = None
    places: dict[int, Place] = {}   # by the tags dict's id: a series' rows share one
    for measurement, tags, fields, _ in rows:
        key = places.get(id(tags))
        if key is None:
            key = places[id(tags)] = place(tags)
        if measurement == "ping" and tags.get("role") != "internet":
            continue
        groups[key][measurement].append(fields)
        if measurement == "round":
            last = key
    touching = [s for s in spans if hourly.overlap(s.start, s.end if s.end is not None
                                                   else max(s.start, now), hour) > 0]
    if last is None:
        last = next(iter(groups), None)
    if last is None:
        if not touching:
            return []
        last = place(default_tags)
    out = []
    for key in sorted(set(groups) | {last}):
        g = groups[key]
        summary = hourly.summarise(hour, rounds=g["round"], pings=g["ping"], dns=g["dns"],
                                   spans=touching if key == last else (), now=now)
        out.append(Sample(hourly.MEASUREMENT, dict(key), summary, from_ns(hour * NS)))
    return out


def patched(old: list[Row], hour: int, spans: list[hourly.Span],
            now: float) -> list[Sample]:
    """An hour whose raw rows are gone: its rows as written, with the episode seconds
    recomputed on the row that held them (the one with the most observed time)."""
    if not old:
        return []
    fresh = hourly.summarise(hour, spans=spans, now=now)
    best = max(range(len(old)), key=lambda i: (old[i][2].get("observed_s", 0), i))
    out = []
    for i, (_, tags, fields, _) in enumerate(old):
        # the row as this agent wrote it (read back from its own store): its own types
        f = cast(dict[str, FieldValue], dict(fields))
        for name in (*hourly.OUTAGE_FIELDS, *hourly.POWER_FIELDS, "agent_gap_s"):
            f[name] = fresh[name] if i == best else 0.0
        out.append(Sample(hourly.MEASUREMENT, cast(dict[str, str], tags), f, from_ns(hour * NS)))
    return out


class Summaries(Job):
    """Writes the hourly summaries (see the module's docstring). ``heard`` is its episode
    listener: a change's hours are rewritten on the next run."""

    name = "summaries"

    def __init__(self, ctx: Context, *, metered: bool = False) -> None:
        super().__init__(ctx)
        self.metered = metered
        self._dirty: set[int] = set()
        self._lock = threading.Lock()
        self._forwarded_at: dict[int, float] = {}
        self._seen: dict[str, float] = {}   # episode id -> the end its hours were written with
        self._tests_seen: set[int] = set()  # times (ns) of the speed tests looked at lately

    def heard(self, change: outage.Change) -> None:
        ep = change.episode
        start = to_ns(ep.start) / NS
        end = to_ns(ep.end) / NS if ep.end is not None else self.clock.now().timestamp()
        with self._lock:
            self._dirty.update(hourly.hours_of(start, max(start, end)))

    def run(self) -> int:
        """Write the hours due; returns how many rows were written."""
        now = self.clock.now().timestamp()
        current = int(now // hourly.HOUR_S) * hourly.HOUR_S
        through = _num(self.store.get_state(STATE_THROUGH))
        checked = _num(self.store.get_state(STATE_CHECKED))
        with self._lock:
            todo, self._dirty = self._dirty, set()
        try:
            todo |= self._due(current, through, checked, now)
            written, closed_upto = self._write(sorted(todo), current, now)
        except BaseException:
            with self._lock:
                self._dirty |= todo  # nothing is lost: the next run tries these hours again
            raise
        state = {STATE_CHECKED: f"{now:.3f}"}
        if closed_upto is not None and (through is None or closed_upto > through):
            state[STATE_THROUGH] = str(closed_upto)
        self.store.write(state=state)
        return written

    def _due(self, current: int, through: float | None, checked: float | None,
             now: float) -> set[int]:
        """The hours to (re)write besides those heard of: the one in progress, every hour since
        the last closed one written (or, the first time, since the store's first round), the
        hours of episodes that ended since the last run (recorded at a restart, or late), and
        closed hours with a speed test written since."""
        due = {current}
        if through is None:
            first = self.store.first_time("round")
            start = int(first // NS // hourly.HOUR_S * hourly.HOUR_S) if first is not None else current
        else:
            start = int(through) + hourly.HOUR_S
        due.update(range(start, current, hourly.HOUR_S))
        since = (checked - LATE_MARGIN_S) if checked is not None else None
        eps = self.store.episodes(since=from_ns(int(since * NS)) if since is not None else None)
        last_run = checked if checked is not None else now
        for e, s in zip(eps, spans_of(eps)):
            if s.end is None:
                # Open: its earlier hours were counted whole when they closed.
                due.update(h for h in hourly.hours_of(min(max(s.start, last_run), now), now)
                           if h <= current)
            elif self._seen.get(e.id) != s.end:
                due.update(h for h in hourly.hours_of(s.start, max(s.start, s.end)) if h <= current)
                self._seen[e.id] = s.end
        if since is not None:
            # A speed test dated in an hour written for good already (it began before the hour
            # ended): the hour is written again, so its day's row packs the test.
            lo = int(since * NS)
            seen = {ns for ns in self._tests_seen if ns >= lo}
            for *_, ns in self.store.rows_between((hourly.SPEEDTEST,), lo, int(now * NS) + 1):
                if ns not in seen:
                    seen.add(ns)
                    h = ns // NS // hourly.HOUR_S * hourly.HOUR_S
                    if h < current:
                        due.add(h)
            self._tests_seen = seen
        return due

    def _write(self, hours: list[int], current: int, now: float) -> tuple[int, int | None]:
        """Write ``hours`` (oldest first, at most a day of closed ones besides the current);
        returns the rows written and the last closed hour up to which every hour is done."""
        closed = [h for h in hours if h < current][:BACKFILL_HOURS]
        todo = closed + ([current] if current in hours else [])
        pruned = _num(self.store.get_state(STATE_PRUNED))
        written = 0
        days: dict[int, bool] = {}   # days whose row is rewritten: whether it is forwarded
        for h in todo:
            a, b = h * NS, (h + hourly.HOUR_S) * NS
            eps = self.store.episodes(since=from_ns(a))
            spans = [s for s in spans_of(eps) if s.start < h + hourly.HOUR_S]
            written_before = self.store.rows_between((hourly.MEASUREMENT,), a, a + 1)
            if written_before and pruned is not None and pruned >= a:
                # Retention took (some of) the hour's raw rows: keep what was counted from them.
                rows = patched(written_before, h, spans, now)
            else:
                rows = hour_rows(h, self.store.rows_between(RAW, a, b), spans, now, self.tags)
            if not rows:
                continue
            self.store.put_summaries(rows, hour_ns=a, forward=self._forward(h, current, now))
            written += len(rows)
            days.setdefault(h - h % hourly.DAY_S, False)
            if h < current:
                days[h - h % hourly.DAY_S] = True   # a closed hour: the day's row goes out
        for day, hour_closed in sorted(days.items()):
            written += self._write_day(day, forward=hour_closed or not self.metered,
                                       pruned=pruned)
        rest = [h for h in hours if h < current][BACKFILL_HOURS:]
        if rest:
            with self._lock:
                self._dirty.update(rest)
            upto = rest[0] - hourly.HOUR_S
        else:
            upto = current - hourly.HOUR_S
        return written, upto

    def _write_day(self, day: int, *, forward: bool, pruned: float | None = None) -> int:
        """Rewrite the ``daily`` rows of the UTC day starting at ``day`` from its hourly rows,
        one per tag set (kit.hourly.day_fields), with the day's outage and speedtest rows of that
        tag set packed (kit.hourly.pack_rows; a tag set with such rows and no hourly row gets a
        daily row too); returns how many. A day retention took raw rows of (``pruned``: the
        newest raw row deleted, ns) may have lost speed tests: its rows are marked not packed."""
        a = day * NS
        b = a + hourly.DAY_S * NS
        groups: dict[Place, list[tuple[int, Mapping[str, object]]]] = defaultdict(list)
        for _, tags, fields, ns in self.store.rows_between((hourly.MEASUREMENT,), a, b):
            groups[place(tags)].append((ns // NS, fields))
        others: dict[Place, list[Row]] = defaultdict(list)
        for row in self.store.rows_between((hourly.OUTAGE, hourly.SPEEDTEST), a, b):
            others[place(row[1])].append(row)
            groups.setdefault(place(row[1]), [])
        lost = pruned is not None and pruned >= a
        rows = [Sample(hourly.DAILY, dict(key), hourly.day_fields(
                    fs, (hourly.NOT_PACKED, hourly.NOT_PACKED) if lost
                    else hourly.pack_rows(day, others.get(key, ()))), from_ns(a))
                for key, fs in sorted(groups.items())]
        if rows:
            self.store.put_summaries(rows, hour_ns=a, forward=forward, measurement=hourly.DAILY)
        return len(rows)

    def _forward(self, hour: int, current: int, now: float) -> bool:
        """Whether this version of the hour goes to the outbox (see the module's docstring)."""
        if hour < current or not self.metered:
            self._forwarded_at.pop(hour, None)
            return True
        last = self._forwarded_at.get(hour)
        if last is not None and now - last < PROGRESS_EVERY_S:
            return False
        self._forwarded_at = {hour: now}
        return True


def _num(text: str | None) -> float | None:
    try:
        return float(json.loads(text)) if text is not None else None
    except (ValueError, TypeError):
        return None
