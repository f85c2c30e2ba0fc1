"""Hourly summary rows (kit.hourly) for a synthetic fleet's agents, made from the very raw rows
the fleet writes, so a collector reading the summaries must find what it finds in the raw rows.

``hourly_samples(fleet, i)`` gives agent ``i``'s ``hourly`` rows as :class:`agent.model.Sample`
(one per UTC hour touched by a round, a ping or an episode, time = the hour's start, the agent's
tags), computed with :func:`kit.hourly.summarise` from ``fleet.samples(i)`` and
``fleet.episodes(i)``; ``from_hour`` leaves out the hours before it (an agent upgraded then).

``daily_samples(hourly)`` gives the ``daily`` rows of those hourly rows: one per tag set and UTC
day (time = the day's start), the fields :func:`kit.hourly.day_fields` of that day's hourly rows
(the agent's own merge).
"""

from __future__ import annotations

import gzip
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from agent.model import Sample
from kit import hourly, lineproto
from kit.hourly import HOUR_S, Span

NS = 1_000_000_000


def _s(t: datetime) -> float:
    return t.timestamp()


def hourly_samples(fleet, i: int, from_hour: float = 0.0) -> list[Sample]:
    rounds: dict[int, list] = defaultdict(list)
    pings: dict[int, list] = defaultdict(list)
    tags = fleet.specs[i].tags
    for s in fleet.samples(i):
        h = int(_s(s.time) // HOUR_S) * HOUR_S
        if s.measurement == "round":
            rounds[h].append(s.fields)
        elif s.measurement == "ping" and s.tags.get("role") == "internet":
            pings[h].append(s.fields)
    spans: list[Span] = []
    for e in fleet.episodes(i):
        end = _s(e.end) if e.end is not None else None
        spans.append(Span(e.type, e.cause, str(e.details.get("source", "")), _s(e.start), end))
    hours = set(rounds) | set(pings)
    for sp in spans:
        if sp.type in ("connectivity", "power", "agent_gap") and sp.end is not None:
            hours.update(hourly.hours_of(sp.start, sp.end))
    out = []
    for h in sorted(hours):
        if h < from_hour:
            continue
        touching = [sp for sp in spans if sp.end is not None and sp.start < h + HOUR_S
                    and sp.end > h]
        fields = hourly.summarise(h, rounds=rounds.get(h, ()), pings=pings.get(h, ()),
                                  spans=touching, now=fleet.end)
        out.append(Sample(hourly.MEASUREMENT, tags, fields, datetime.fromtimestamp(h, UTC)))
    return out


def emitted(fleet, i: int) -> list[tuple[str, dict, dict, int]]:
    """Agent ``i``'s ``outage`` and ``speedtest`` rows as its store holds them: (measurement,
    tags, fields, time in ns)."""
    p = fleet._plan(i)
    return [(s.measurement, s.tags, s.fields, s.time_ns)
            for s in (fleet._emit_sample(p, ev) for ev in p.emit)]


def daily_samples(samples: Iterable[Sample],
                  rows: Iterable[tuple[str, dict, dict, int]] | None = None) -> list[Sample]:
    """The ``daily`` rows of these ``hourly`` rows (see the module's note); with the agents'
    outage and speedtest ``rows`` (:func:`emitted`), those packed into them as the agent packs
    them (kit.hourly.pack_rows; an agent has one tag set here)."""
    days: dict[tuple, list] = defaultdict(list)
    tags_of: dict[tuple, dict] = {}
    key_of: dict[str, tuple] = {}
    for s in samples:
        key = (tuple(sorted(s.tags.items())), int(_s(s.time) // hourly.DAY_S) * hourly.DAY_S)
        days[key].append((int(_s(s.time)), s.fields))
        tags_of[key] = s.tags
        key_of[s.tags["agent"]] = key[0]
    packs: dict[tuple, list] = defaultdict(list)
    for r in rows or ():
        key = (key_of[r[1]["agent"]], r[3] // NS // hourly.DAY_S * hourly.DAY_S)
        packs[key].append(r)
        days.setdefault(key, [])
        tags_of.setdefault(key, dict(key[0]))
    return [Sample(hourly.DAILY, tags_of[k], hourly.day_fields(
                hs, None if rows is None else hourly.pack_rows(k[1], packs.get(k, ()))),
                datetime.fromtimestamp(k[1], UTC))
            for k, hs in sorted(days.items(), key=lambda kv: (kv[0][1], kv[0][0]))]


def lines(samples: Iterable[Sample]) -> bytes:
    return b"".join((lineproto.line(s.measurement, s.tags, s.fields,
                                    int(s.time.timestamp()) * NS) + "\n").encode()
                    for s in samples)


def write_influx(url: str, database: str, body: bytes, batch: int = 20_000) -> None:
    rows = body.splitlines(keepends=True)
    for k in range(0, len(rows), batch):
        req = urllib.request.Request(f"{url}/write?db={database}&precision=ns",
                                     data=gzip.compress(b"".join(rows[k:k + batch]), 1),
                                     method="POST", headers={"Content-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=300) as resp:
            assert resp.status == 204
