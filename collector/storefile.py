"""Reading an agent's local store file (linewatch.db) as a source, read-only (stdlib only).

A volunteer hands over their file, or a worker reports on their own line with no server: the
file holds the same rows the agent forwards, so it reduces to the same records as InfluxDB does
(:mod:`collector.influxql`). The file is opened read-only and never changed or upgraded.

Episodes in the store carry no tags; each is given the unit (agent and tags) of the ``round``
series written nearest before it began, or else of the first one written after it, over the whole
file. Rows dated before 2000 (a clock never set) are counted as ``clock_unset``, never read; a
round whose ``interval_s`` is not a number in (0, 3600] is left out of its hour's sum and counted
as ``absurd_observed`` (docs/collector.md).
"""

from __future__ import annotations

import glob
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import quote

from agent.errors import SourceError
from collector.model import (CLOCK_SET, MAX_INTERVAL_S, Dataset, Episode, ObsHour, PingDay, Quality,
                             SpeedTest, Unit, nearest_rank)

NS = 1_000_000_000
TAGS = ("agent", "region", "isp", "city", "access", "site")
_INTERVAL = "json_extract(fields, '$.interval_s')"
_GOOD_INTERVAL = (f"json_type(fields, '$.interval_s') IN ('integer', 'real') AND {_INTERVAL} > 0"
                  f" AND {_INTERVAL} <= {MAX_INTERVAL_S:g}")
_CLOSED_EPISODES = "end_ns IS NOT NULL AND type IN ('power', 'connectivity')"


def expand(patterns: Iterable[str]) -> list[Path]:
    """Store files named by paths, directories (their linewatch.db) or glob patterns."""
    out: list[Path] = []
    for p in patterns:
        hits = sorted(glob.glob(os.path.expanduser(p))) if any(c in p for c in "*?[") else [p]
        if not hits:
            raise SourceError(f"store {p}: no file matches")
        for h in hits:
            path = Path(h)
            out.append(path / "linewatch.db" if path.is_dir() else path)
    return out


@dataclass
class StoreFile:
    path: Path
    conn: sqlite3.Connection

    @classmethod
    def open(cls, path: str | os.PathLike) -> "StoreFile":
        p = Path(path)
        if not p.is_file():
            raise SourceError(f"store {p}: no such file")
        try:
            # Without a write-ahead log nothing writes the file now: read it as immutable, which
            # creates no -wal or -shm beside it (a volunteer's copy, or the agent's own store).
            live = Path(f"{p}-wal").exists()
            conn = sqlite3.connect(f"file:{quote(str(p.resolve()))}?{'mode=ro' if live else 'immutable=1'}",
                                   uri=True)
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise SourceError(f"store {p}: not a readable SQLite database ({exc})") from exc
        missing = {"series", "samples", "episodes"} - names
        if missing:
            conn.close()
            raise SourceError(f"store {p}: not a linewatch store (no {', '.join(sorted(missing))} table)")
        return cls(p, conn)

    def close(self) -> None:
        self.conn.close()

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of a read-only SQL query; a damaged file raises SourceError naming it."""
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise SourceError(f"store {self.path}: {exc}") from exc

    def series(self, measurement: str) -> dict[int, dict]:
        out = {}
        for sid, tags in self.query("SELECT id, tags FROM series WHERE measurement = ?", (measurement,)):
            try:
                t = json.loads(tags)
            except ValueError:
                t = {}
            out[sid] = t if isinstance(t, dict) else {}
        return out

    def round_spans(self, start: float, end: float) -> list[tuple[int, int, Unit]]:
        """(first ns, last ns, unit) of every round series with rows in the window."""
        spans = []
        for sid, tags in self.series("round").items():
            unit = unit_of(tags)
            if unit is None:
                continue
            (lo, hi), = self.query("SELECT min(time_ns), max(time_ns) FROM samples WHERE series_id = ?"
                                " AND time_ns >= ? AND time_ns < ?", (sid, int(start * NS), int(end * NS)))
            if lo is not None:
                spans.append((lo, hi, unit))
        return sorted(spans, key=lambda s: s[0])

    def read(self, start: float, end: float) -> tuple[Dataset, Quality]:
        q = Quality()
        a, b = int(max(start, CLOCK_SET) * NS), int(end * NS)
        obs: list[ObsHour] = []
        rounds = self.series("round")
        for sid, tags in rounds.items():
            unit = unit_of(tags)
            rows = self.query(
                f"SELECT time_ns / 3600000000000, sum(CASE WHEN {_GOOD_INTERVAL} THEN {_INTERVAL} END),"
                f" count(*), count(*) - count(CASE WHEN {_GOOD_INTERVAL} THEN 1 END)"
                " FROM samples WHERE series_id = ? AND time_ns >= ? AND time_ns < ? GROUP BY 1",
                (sid, a, b))
            if unit is None:
                q.rejected["missing_agent"] += sum(r[2] for r in rows)
                continue
            for hour, secs, _n, bad in rows:
                if bad:
                    q.rejected["absurd_observed"] += bad
                if secs is not None:
                    obs.append(ObsHour(unit, int(hour) * 3600, float(secs)))
        owner = self._episode_units(a, b, rounds)
        episodes = []
        for eid, typ, cause, s_ns, dur in self.query(
                f"SELECT id, type, cause, start_ns, duration_s FROM episodes WHERE {_CLOSED_EPISODES}"
                " AND start_ns >= ? AND start_ns < ?", (a, b)):
            unit = owner.get(eid)
            if unit is None:
                q.rejected["missing_agent"] += 1
                continue
            episodes.append(Episode(unit, typ, cause, s_ns / NS, float(dur)))
        unset = self._clock_unset()
        if unset:
            q.rejected["clock_unset"] += unset
        return Dataset(start, end, tuple(obs), tuple(episodes), tuple(self._pings(a, b, q)),
                       tuple(self.speed_tests(a, b, q))), q

    def _episode_units(self, a: int, b: int, rounds: dict[int, dict]) -> dict[str, Unit]:
        """The unit of each episode starting in [a, b) ns, by its id: that of the round series
        with a row nearest before (or at) its start, or, with none before, the first row after
        it, looked up over the whole file."""
        best: dict[str, tuple] = {}
        for sid, tags in rounds.items():
            unit = unit_of(tags)
            if unit is None:
                continue
            for eid, before, after in self.query(
                    "SELECT e.id, (SELECT max(time_ns) FROM samples WHERE series_id = ? AND"
                    " time_ns <= e.start_ns), (SELECT min(time_ns) FROM samples WHERE series_id = ?"
                    f" AND time_ns > e.start_ns) FROM episodes e WHERE {_CLOSED_EPISODES}"
                    " AND e.start_ns >= ? AND e.start_ns < ?", (sid, sid, a, b)):
                if before is not None:
                    rank = (0, -before, sid)
                elif after is not None:
                    rank = (1, after, sid)
                else:
                    continue
                if eid not in best or rank < best[eid][0]:
                    best[eid] = (rank, unit)
        return {eid: unit for eid, (_, unit) in best.items()}

    def _clock_unset(self) -> int:
        """Rows of the kinds the collector reads dated before 2000-01-01, anywhere in the file."""
        cut = CLOCK_SET * NS
        n = 0
        for measurement, extra in (("round", ""), ("ping", ""),
                                   ("speedtest", " AND json_extract(fields, '$.status') = 'ok'")):
            for sid, tags in self.series(measurement).items():
                if measurement == "ping" and tags.get("role") != "internet":
                    continue
                (k,), = self.query(f"SELECT count(*) FROM samples WHERE series_id = ? AND time_ns < ?{extra}",
                                   (sid, cut))
                n += k
        (k,), = self.query(f"SELECT count(*) FROM episodes WHERE {_CLOSED_EPISODES} AND start_ns < ?", (cut,))
        return n + k

    def _pings(self, a: int, b: int, q: Quality) -> list[PingDay]:
        days: dict[tuple[Unit, int], tuple[list[float], list[float]]] = {}
        for sid, tags in self.series("ping").items():
            if tags.get("role") != "internet":
                continue
            unit = unit_of(tags)
            rows = self.query(
                "SELECT time_ns, json_extract(fields, '$.rtt_avg_ms'), json_extract(fields, '$.loss_pct')"
                " FROM samples WHERE series_id = ? AND time_ns >= ? AND time_ns < ?", (sid, a, b))
            if unit is None:
                q.rejected["missing_agent"] += len(rows)
                continue
            for t, rtt, loss in rows:
                if not isinstance(loss, (int, float)) or loss >= 100:
                    continue  # the target did not answer: an outage, counted elsewhere
                rtts, losses = days.setdefault((unit, t // (86400 * NS) * 86400), ([], []))
                losses.append(float(loss))
                if isinstance(rtt, (int, float)):
                    rtts.append(float(rtt))
        return [PingDay(u, d, nearest_rank(r, 50), nearest_rank(r, 95),
                        sum(ls) / len(ls) if ls else None, len(ls), min(r, default=None),
                        max(r, default=None))
                for (u, d), (r, ls) in sorted(days.items(), key=lambda kv: (kv[0][0], kv[0][1]))]

    def speed_tests(self, a: int, b: int, q: Quality) -> list[SpeedTest]:
        """Speed tests between `a` and `b` (ns since 1970), bad ones counted in `q`."""
        out = []
        for sid, tags in self.series("speedtest").items():
            unit = unit_of(tags)
            rows = self.query(
                "SELECT time_ns, json_extract(fields, '$.download_bps'), json_extract(fields, '$.upload_bps')"
                " FROM samples WHERE series_id = ? AND time_ns >= ? AND time_ns < ?"
                " AND json_extract(fields, '$.status') = 'ok'", (sid, a, b))
            if unit is None:
                q.rejected["missing_agent"] += len(rows)
                continue
            for t, down, up in rows:
                if not isinstance(down, (int, float)):
                    q.rejected["missing_value"] += 1
                    continue
                out.append(SpeedTest(unit, t / NS, float(down),
                                     float(up) if isinstance(up, (int, float)) else None))
        return out


def unit_of(tags: dict) -> Unit | None:
    agent = tags.get("agent")
    if not agent or not isinstance(agent, str):
        return None
    return Unit(agent, *(str(tags.get(k) or "") for k in TAGS[1:]))


def read_stores(paths: Iterable[str | os.PathLike], start: float, end: float,
                on_error=None) -> tuple[Dataset, Quality]:
    """All the files' records as one Dataset. A file that cannot be read raises SourceError, or,
    with ``on_error``, is passed to it and counted as ``unreadable_store``."""
    q = Quality()
    parts: list[Dataset] = []
    for p in paths:
        try:
            f = StoreFile.open(p)
        except SourceError as exc:
            if on_error is None:
                raise
            on_error(exc)
            q.rejected["unreadable_store"] += 1
            continue
        try:
            ds, fq = f.read(start, end)
        finally:
            f.close()
        parts.append(ds)
        q.merge(fq)
    return merge(start, end, parts), q


def merge(start: float, end: float, parts: Iterable[Dataset]) -> Dataset:
    obs, eps, pings, speeds = [], [], [], []
    for d in parts:
        obs += d.obs
        eps += d.episodes
        pings += d.pings
        speeds += d.speeds
    return Dataset(start, end, tuple(obs), tuple(eps), tuple(pings), tuple(speeds))
