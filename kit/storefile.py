"""Reading an agent's local store file (linewatch.db) as a source, read-only (stdlib only).

A volunteer hands over their file, or a worker reports on their own line with no server: the
file holds the same rows the agent forwards, so it reduces to the same records as InfluxDB does
(:mod:`collector.influxql`). The file is opened read-only and never changed or upgraded.

Episodes in the store carry no tags; each is given the unit (agent and tags) of the file's agent's
``round`` series written nearest before it began, or else of the first one written after it, over
the whole file. Rows dated before 2000 (a clock never set) are counted as ``clock_unset``, never
read; a round whose ``interval_s`` is not a number in (0, 3600] is left out of its hour's sum and
counted as ``absurd_observed`` (docs/collector.md).

A file is untrusted (docs/collector.md, "Store files are untrusted"). Before any row is read its
schema must be the agent's own: SQLite runs what a schema says on every read (a generated column,
a view, a trigger, a virtual table, an expression index), so anything else refuses the whole file.
Values are bounded (:data:`MAX_VALUE_BYTES`), the file's size too (:data:`MAX_STORE_BYTES`), and so is
the time spent on one file (:data:`TIME_LIMIT_S`, through SQLite's progress handler). Past that,
each row becomes a record or a counted rejection; a file that fails anywhere is refused whole
(:exc:`SourceError` naming it), which the collector's :func:`collector.storefile.read_stores`
counts as ``unreadable_store``.

One file is one agent's: the agent with the most probe rounds in it. Rows of any other agent id
(``foreign_agent``) are refused, so one file cannot fill a cell with invented lines.

Longer than the house's 400 lines on purpose: every check a hostile file must pass (schema, sizes,
time) sits with the reads it guards, so no read can go around them.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

from kit.definitions import CLOCK_SET, LOCATION_TAGS as TAGS, MAX_INTERVAL_S, Quality, Unit, nearest_rank
from kit.errors import SourceError
from kit.records import Dataset, Episode, ObsHour, PingDay, SpeedTest
from kit.storeschema import sqlite_uri, table_definitions
from kit.summaries import Latency, Rejected, latency, observed

NS = 1_000_000_000

# What one file may cost. The agent's store stops at 1,024 MB by default (90 days of rounds at
# 10 s are 900 MB); 4 GiB is four of those, with the write-ahead log beside the file counted too.
MAX_STORE_BYTES = 4 << 30
# Reading one file, from its schema to its last row. A 90-day store reads in well under a minute.
TIME_LIMIT_S = 300.0
# Any one string or blob (SQLITE_LIMIT_LENGTH): the agent's largest values are a few kilobytes.
MAX_VALUE_BYTES = 1 << 20
# A series' tags as JSON text, and an episode's cause as read: the agent's are far shorter.
MAX_TAGS_CHARS = 4096
MAX_CAUSE_CHARS = 64
# The tables a store must have (the state and quarantine tables are optional: a file of rows
# handed over, or one made before the quarantine existed).
REQUIRED = ("series", "samples", "episodes")
_LIMITS = {
    sqlite3.SQLITE_LIMIT_LENGTH: MAX_VALUE_BYTES,
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 100_000,     # each schema statement, and ours
    sqlite3.SQLITE_LIMIT_COLUMN: 100,
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 100,
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 4,
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,
    sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH: 1,
}
_PROGRESS_OPS = 20_000          # SQLite instructions between two looks at the clock
_MAX_SCHEMA_OBJECTS = 100

# SQL over a row's ``fields``, safe on any value: json_extract raises on text that is not JSON
# (ending the whole query), and newer SQLite reads a blob as binary JSON. The guards are CASE
# conditions, which SQLite stops evaluating at the first false one.
_JSON_TEXT = "typeof(fields) = 'text' AND json_valid(fields)"
# 1 when the fields are a JSON object (as the agent writes them), else 0.
FIELDS_OK_SQL = f"(CASE WHEN {_JSON_TEXT} THEN json_type(fields) = 'object' ELSE 0 END)"
# The rows of one series (?) timed in [?, ?) ns, times that are whole nanoseconds only.
WINDOW_SQL = "series_id = ? AND time_ns >= ? AND time_ns < ? AND typeof(time_ns) = 'integer'"
_CLOSED_EPISODES = "end_ns IS NOT NULL AND type IN ('power', 'connectivity')"


def value_sql(key: str) -> str:
    """SQL for the value at ``$.key`` of a row's fields (NULL when they are not JSON)."""
    return f"(CASE WHEN {_JSON_TEXT} THEN json_extract(fields, '$.{key}') END)"


def number_sql(key: str) -> str:
    """SQL for the number at ``$.key`` of a row's fields; NULL when absent, not a JSON number
    (text, true, an object) or the fields are not JSON."""
    return (f"(CASE WHEN {_JSON_TEXT} AND json_type(fields, '$.{key}') IN ('integer', 'real')"
            f" THEN json_extract(fields, '$.{key}') END)")


def shown(text: object, limit: int | None = None) -> str:
    """``text`` safe to print: control characters escaped (a name read from a file, or a file's
    own name, never moves a terminal's cursor), cut at ``limit`` characters."""
    s = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return s if limit is None or len(s) <= limit else s[:limit] + "..."


@dataclass
class StoreFile:
    path: Path
    conn: sqlite3.Connection
    time_limit_s: float = TIME_LIMIT_S
    deadline: float = math.inf
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def open(cls, path: str | os.PathLike, *, time_limit_s: float = TIME_LIMIT_S,
             clock: Callable[[], float] = time.monotonic) -> StoreFile:
        """Open a store read-only and check it is the agent's: SourceError naming the file when
        it is missing, too large, not SQLite, or its schema is not the agent's. ``time_limit_s``
        bounds everything read from it, from now on."""
        p = Path(path)
        name = shown(p)
        try:
            if not p.is_file():
                raise SourceError(f"store {name}: no such file")
            wal = Path(f"{p}-wal")
            live = wal.exists()
            size = p.stat().st_size + (wal.stat().st_size if live else 0)
        except OSError as exc:
            raise SourceError(f"store {name}: {exc.strerror or exc}") from exc
        if size > MAX_STORE_BYTES:
            raise SourceError(f"store {name}: refused: {size / 2**30:.1f} GiB, larger than "
                              f"{MAX_STORE_BYTES / 2**30:g} GiB (an agent's store stops at 1 GiB "
                              "unless told otherwise)")
        f = None
        try:
            # Without a write-ahead log nothing writes the file now: read it as immutable, which
            # creates no -wal or -shm beside it (a volunteer's copy, or the agent's own store).
            conn = sqlite3.connect(sqlite_uri(p, "mode=ro" if live else "immutable=1"), uri=True)
            f = cls(p, conn, time_limit_s, clock() + time_limit_s, clock)
            for limit, value in _LIMITS.items():
                conn.setlimit(limit, value)
            conn.set_progress_handler(f._over_time, _PROGRESS_OPS)
            # No function named in the schema may have side effects; nothing may be written.
            conn.execute("PRAGMA trusted_schema = OFF")
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA cell_size_check = ON")
            refusal = f._refusal()
        except sqlite3.Error as exc:
            if f is None:
                raise SourceError(f"store {name}: not a readable SQLite database ({exc})") from exc
            f.close()
            raise f._error(exc) from exc
        if refusal:
            f.close()
            raise SourceError(f"store {name}: {refusal}")
        return f

    def _over_time(self) -> int:
        return 1 if self.clock() > self.deadline else 0

    def _error(self, exc: sqlite3.Error) -> SourceError:
        """The SourceError for a failed SQLite call, naming the file and, in words, why."""
        name = shown(self.path)
        if self.clock() > self.deadline:
            return SourceError(f"store {name}: reading took longer than {self.time_limit_s:g} s "
                               "(the limit for one file)")
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_TOOBIG":
            return SourceError(f"store {name}: refused: holds a value larger than "
                               f"{MAX_VALUE_BYTES >> 20} MiB")
        if "malformed database schema" in str(exc):
            return SourceError(f"store {name}: refused: its schema cannot be read "
                               f"({shown(exc, 120)})")
        return SourceError(f"store {name}: {shown(exc, 200)}")

    def _refusal(self) -> str | None:
        """Why the file's schema is not the agent's, or None. Checked before any row is read:
        nothing here evaluates a column."""
        rows = self.conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master LIMIT ?",
                                 (_MAX_SCHEMA_OBJECTS + 1,)).fetchall()
        if len(rows) > _MAX_SCHEMA_OBJECTS:
            return f"refused: more than {_MAX_SCHEMA_OBJECTS} schema objects"
        agent = _agent_definitions()
        tables: dict[str, str] = {}
        indexes = []
        for typ, name, _tbl, sql in rows:
            if typ in ("view", "trigger"):
                return f"refused: {typ} {shown(name, 60)}: the agent makes none (it runs on reads)"
            if typ == "table" and isinstance(sql, str) and re.match(r"\s*CREATE\s+VIRTUAL\b", sql, re.I):
                return f"refused: {shown(name, 60)} is a virtual table"
            if typ == "table":
                tables[name] = sql
            elif typ == "index":
                indexes.append(name)
            else:
                return f"refused: {shown(typ, 20)} {shown(name, 60)} is not part of a store"
        missing = [t for t in REQUIRED if t not in tables]
        if missing:
            return f"not a linewatch store (no {', '.join(missing)} table)"
        for name in tables:
            if name not in agent:
                return f"refused: table {shown(name, 60)} is not one the agent makes"
        for name, sql in tables.items():
            why = self._table_refusal(name, sql, agent[name])
            if why:
                return f"refused: {why}"
        for name in indexes:
            cols = self.conn.execute(f"PRAGMA index_xinfo({_ident(name)})").fetchall()
            # (seqno, cid, name, desc, coll, key): cid -2 is an expression, run on reads.
            if any(c[1] == -2 for c in cols):
                return f"refused: index {shown(name, 60)} is on an expression"
        return None

    def _table_refusal(self, name: str, sql: object, want_sql: str) -> str | None:
        got = _columns(self.conn, name)
        for col, r in got.items():
            # table_xinfo's last column: 1 hidden (a virtual table's), 2 and 3 generated.
            if r[6] in (2, 3):
                return f"{name}.{shown(col, 60)} is a generated column"
            if r[6]:
                return f"{name}.{shown(col, 60)} is a hidden column"
        want = _agent_columns()[name]
        for col in got:
            if col not in want:
                return f"{name} has a column {shown(col, 60)} the agent never makes"
        for col in want:
            if col not in got:
                return f"{name} has no column {col}"
            # (cid, name, type, notnull, default, pk, hidden)
            if got[col][:6] != want[col][:6]:
                return f"{name}.{col} is declared otherwise than by the agent"
        if not isinstance(sql, str) or _squeeze(sql) != _squeeze(want_sql):
            return f"table {name} is declared otherwise than by the agent"
        return None

    def close(self) -> None:
        self.conn.close()

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of a read-only SQL query; any failure (a damaged page, a value over the limit,
        the file's time used up) raises SourceError naming the file."""
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def series(self, measurement: str) -> dict[int, dict]:
        """The series of ``measurement`` whose tags are what the agent writes (a JSON object of
        strings), by id; the others are left out."""
        return {sid: tags for sid, tags in self._series(measurement) if tags is not None}

    def _series(self, measurement: str) -> list[tuple[int, dict | None]]:
        rows = self.query("SELECT id, CASE WHEN typeof(tags) = 'text' AND length(tags) <= ?"
                          " THEN tags END FROM series WHERE measurement = ?",
                          (MAX_TAGS_CHARS, measurement))
        return [(sid, _tags(text)) for sid, text in rows]

    @cached_property
    def owner(self) -> str | None:
        """The agent this file belongs to: the one with the most probe rounds in the whole file
        (whatever the window read), the latest rounds deciding a tie; in a file without rounds,
        the same over its hourly summaries. None without either."""
        return self._most_rows("round") or self._most_rows("hourly")

    def _most_rows(self, measurement: str) -> str | None:
        rounds: dict[str, list[int]] = {}
        for sid, tags in self.series(measurement).items():
            agent = tags.get("agent")
            if not agent:
                continue
            (n, last), = self.query("SELECT count(*), max(time_ns) FROM samples WHERE"
                                    " series_id = ? AND typeof(time_ns) = 'integer'", (sid,))
            r = rounds.setdefault(agent, [0, -(2**63)])
            r[0] += n
            r[1] = max(r[1], last if last is not None else r[1])
        return max(rounds, key=lambda a: (*rounds[a], a)) if rounds else None

    def round_spans(self, start: float, end: float,
                    agent: str | None = None) -> list[tuple[int, int, Unit]]:
        """(first ns, last ns, unit) of every round series with rows in the window, of
        ``agent`` only when given."""
        spans = []
        for sid, tags in self.series("round").items():
            unit = unit_of(tags)
            if unit is None or (agent is not None and unit.agent != agent):
                continue
            (lo, hi), = self.query(f"SELECT min(time_ns), max(time_ns) FROM samples WHERE {WINDOW_SQL}",
                                   (sid, int(start * NS), int(end * NS)))
            if lo is not None:
                spans.append((lo, hi, unit))
        return sorted(spans, key=lambda s: s[0])

    def _units(self, measurement: str, a: int, b: int, q: Quality,
               keep: Callable[[dict], bool] = lambda tags: True,
               all_agents: bool = False) -> dict[int, Unit]:
        """The file's agent's series of ``measurement`` (those ``keep`` accepts) by id, with
        their units; every agent's with ``all_agents``. The rows in [a, b) of every other series
        are counted: ``bad_tags``, ``missing_agent``, ``foreign_agent``; so are rows whose time
        is not a time (``bad_time``)."""
        owner = None if all_agents else self.owner
        out = {}
        for sid, tags in self._series(measurement):
            if tags is not None and not keep(tags):
                continue
            unit = unit_of(tags) if tags is not None else None
            reason = ("bad_tags" if tags is None else "missing_agent" if unit is None
                      else "foreign_agent" if not all_agents and unit.agent != owner else None)
            if reason:
                (n,), = self.query("SELECT count(*) FROM samples WHERE series_id = ?"
                                   " AND time_ns >= ? AND time_ns < ?", (sid, a, b))
                _count(q, reason, n)
                continue
            _count(q, "bad_time", self._bad_times(sid, a, b))
            out[sid] = unit
        return out

    def _bad_times(self, sid: int, a: int, b: int) -> int:
        """Rows of a series whose time is not whole nanoseconds: a real inside [a, b), and, in
        every window, text, blobs and NULLs (they belong to no window). ``IS NULL`` would not
        do: SQLite takes a NOT NULL column at its word and answers it without looking."""
        (n,), = self.query(
            "SELECT count(*) FROM samples WHERE series_id = ?1 AND (typeof(time_ns) IN"
            " ('null', 'text', 'blob') OR (typeof(time_ns) = 'real' AND time_ns >= ?2"
            " AND time_ns < ?3))", (sid, a, b))
        return n

    def read(self, start: float, end: float) -> tuple[Dataset, Quality]:
        """The file's records for [start, end) (seconds since 1970) and what was refused.

        The agent's ``hourly`` summary rows come first: its observed hours and latency days from
        its first summary row in the window on are read from them, and its raw rows only before
        that (the hours before the agent was upgraded; a file of an older agent: all of them).
        Latency of the UTC day of the first summary comes from the raw rows, which cover it
        whole."""
        q = Quality()
        a, b = int(max(start, CLOCK_SET) * NS), int(end * NS)
        summaries = self._units("hourly", a, b, q)
        s_obs, s_days, first = self._summaries(summaries, a, b, q)
        # Raw rows only where no summary is: rounds before the first summary, pings up to the
        # end of its UTC day. An empty window asks nothing of them.
        day_ns = 86400 * NS
        rb = min(b, first) if first is not None else b
        pb = min(b, -(-first // day_ns) * day_ns) if first is not None and first > a else rb
        obs: list[ObsHour] = list(s_obs)
        rounds = self._units("round", a, rb, q)
        good = f"v > 0 AND v <= {MAX_INTERVAL_S:g}"
        for sid, unit in rounds.items() if rb > a else ():
            # Materialised: each row's fields are looked at once, not once per use below.
            for hour, secs, n_good, n_json, n_bad in self.query(
                    f"WITH r AS MATERIALIZED (SELECT time_ns / 3600000000000 AS h, {FIELDS_OK_SQL}"
                    f" AS ok, {number_sql('interval_s')} AS v FROM samples WHERE {WINDOW_SQL})"
                    f" SELECT h, total(CASE WHEN {good} THEN v END), count(CASE WHEN {good} THEN 1"
                    f" END), count(*) - sum(ok), sum(ok AND NOT coalesce({good}, 0))"
                    " FROM r GROUP BY h", (sid, a, rb)):
                _count(q, "bad_json", n_json)
                _count(q, "absurd_observed", n_bad)
                if n_good:
                    obs.append(ObsHour(unit, int(hour) * 3600, float(secs), "raw"))
        owner = self._episode_units(a, b, {**rounds, **summaries})
        episodes = []
        (n,), = self.query(f"SELECT count(*) FROM episodes WHERE {_CLOSED_EPISODES}"
                           " AND typeof(start_ns) IN ('null', 'text', 'blob')")
        _count(q, "bad_time", n)
        for eid, typ, cause, s_ns, dur in self.query(
                f"SELECT id, type, CASE WHEN typeof(cause) = 'text' THEN substr(cause, 1,"
                f" {MAX_CAUSE_CHARS}) END, start_ns, duration_s FROM episodes WHERE"
                f" {_CLOSED_EPISODES} AND start_ns >= ? AND start_ns < ?", (a, b)):
            if not isinstance(s_ns, int):
                q.rejected["bad_time"] += 1
                continue
            unit = owner.get(eid)
            if unit is None:
                q.rejected["missing_agent"] += 1
                continue
            if cause is None or not isinstance(dur, (int, float)):
                q.rejected["missing_value"] += 1
                continue
            episodes.append(Episode(unit, typ, cause, s_ns / NS, float(dur)))
        _count(q, "clock_unset", self._clock_unset())
        raw_days = self._pings(a, pb, q) if pb > a else []
        taken = {p.day for p in raw_days}
        pings = raw_days + [p for p in s_days if p.day not in taken]
        return Dataset(start, end, tuple(obs), tuple(episodes), tuple(pings),
                       tuple(self.speed_tests(a, b, q))), q

    def _summaries(self, series: dict[int, Unit], a: int, b: int, q: Quality
                   ) -> tuple[list[ObsHour], list[PingDay], int | None]:
        """The observed hours and latency days of the file's agent's ``hourly`` rows in [a, b)
        ns (kit.summaries checks each row: ``bad_summary``, ``bad_histogram``; a row not at an
        hour's start is a ``bad_time``, fields that are not a JSON object ``bad_json``), and the
        time (ns) of the first row, None without one. An hour written more than once (rewritten
        while in progress) counts as its last row."""
        obs: list[ObsHour] = []
        days: dict[tuple[Unit, int], Latency] = {}
        first = None
        for sid, unit in series.items():
            rows: dict[int, str | None] = {}
            for t, text in self.query(f"SELECT time_ns, CASE WHEN {FIELDS_OK_SQL} THEN fields END"
                                      f" FROM samples WHERE {WINDOW_SQL} ORDER BY time_ns, id",
                                      (sid, a, b)):
                rows[t] = text
            for t, text in rows.items():
                fields = _fields(text)
                if fields is None:
                    q.rejected["bad_json"] += 1
                    continue
                if t % (3600 * NS):
                    q.rejected["bad_time"] += 1
                    continue
                first = t if first is None else min(first, t)
                try:
                    secs = observed(fields.get("observed_s"))
                    if secs is not None:
                        obs.append(ObsHour(unit, t // NS, secs, "hourly"))
                except Rejected as r:
                    q.rejected[r.reason] += 1   # its latency is still read, as from InfluxDB
                try:
                    lat = latency(fields)
                except Rejected as r:
                    q.rejected[r.reason] += 1
                    continue
                day = t // NS - t // NS % 86400
                days.setdefault((unit, day), Latency()).merge(lat)
        pings = [p for (u, d), lat in sorted(days.items(), key=lambda kv: kv[0])
                 if (p := lat.ping_day(u, d)) is not None]
        return obs, pings, first

    def _episode_units(self, a: int, b: int, rounds: dict[int, Unit]) -> dict:
        """The unit of each episode starting in [a, b) ns, by its id: that of the file's agent's
        round series (``rounds``) with a row nearest before (or at) its start, or, with none
        before, the first row after it, looked up over the whole file."""
        best: dict = {}
        for sid, unit in rounds.items():
            for eid, before, after in self.query(
                    "SELECT e.id, (SELECT max(time_ns) FROM samples WHERE series_id = ?1 AND"
                    " typeof(time_ns) = 'integer' AND time_ns <= e.start_ns), (SELECT min(time_ns)"
                    " FROM samples WHERE series_id = ?1 AND typeof(time_ns) = 'integer' AND"
                    f" time_ns > e.start_ns) FROM episodes e WHERE {_CLOSED_EPISODES}"
                    " AND typeof(e.start_ns) = 'integer' AND e.start_ns >= ?2 AND e.start_ns < ?3",
                    (sid, a, b)):
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
        """The file's agent's rows of the kinds the collector reads dated before 2000-01-01,
        anywhere in the file, and its closed episodes starting then."""
        cut = CLOCK_SET * NS
        n = 0
        for measurement, extra in (("round", ""), ("ping", ""), ("hourly", ""),
                                   ("speedtest", f" AND {value_sql('status')} = 'ok'")):
            for sid, tags in self.series(measurement).items():
                unit = unit_of(tags)
                if unit is None or unit.agent != self.owner:
                    continue
                if measurement == "ping" and tags.get("role") != "internet":
                    continue
                (k,), = self.query("SELECT count(*) FROM samples WHERE series_id = ? AND"
                                   f" typeof(time_ns) = 'integer' AND time_ns < ?{extra}", (sid, cut))
                n += k
        if self.owner is not None:
            (k,), = self.query(f"SELECT count(*) FROM episodes WHERE {_CLOSED_EPISODES}"
                               " AND typeof(start_ns) = 'integer' AND start_ns < ?", (cut,))
            n += k
        return n

    def _pings(self, a: int, b: int, q: Quality) -> list[PingDay]:
        days: dict[tuple[Unit, int], tuple[list[float], list[float]]] = {}
        for sid, unit in self._units("ping", a, b, q, lambda t: t.get("role") == "internet").items():
            for t, ok, rtt, loss in self.query(
                    f"SELECT time_ns, {FIELDS_OK_SQL}, {number_sql('rtt_avg_ms')},"
                    f" {number_sql('loss_pct')} FROM samples WHERE {WINDOW_SQL}", (sid, a, b)):
                if not ok:
                    q.rejected["bad_json"] += 1
                    continue
                if loss is None:
                    q.rejected["missing_value"] += 1
                    continue
                if loss >= 100:
                    continue  # the target did not answer: an outage, counted elsewhere
                rtts, losses = days.setdefault((unit, t // (86400 * NS) * 86400), ([], []))
                losses.append(float(loss))
                if rtt is not None:
                    rtts.append(float(rtt))
        return [PingDay(u, d, nearest_rank(r, 50), nearest_rank(r, 95),
                        sum(ls) / len(ls) if ls else None, len(ls), min(r, default=None),
                        max(r, default=None))
                for (u, d), (r, ls) in sorted(days.items(), key=lambda kv: (kv[0][0], kv[0][1]))]

    def speed_tests(self, a: int, b: int, q: Quality, all_agents: bool = False) -> list[SpeedTest]:
        """The file's agent's speed tests between `a` and `b` (ns since 1970), every agent's
        with ``all_agents`` (a worker's own file); bad ones counted in `q`."""
        out = []
        for sid, unit in self._units("speedtest", a, b, q, all_agents=all_agents).items():
            for t, ok, down, up in self.query(
                    f"SELECT time_ns, {FIELDS_OK_SQL}, {number_sql('download_bps')},"
                    f" {number_sql('upload_bps')} FROM samples WHERE {WINDOW_SQL}"
                    f" AND (NOT {FIELDS_OK_SQL} OR {value_sql('status')} = 'ok')", (sid, a, b)):
                if not ok:
                    q.rejected["bad_json"] += 1
                    continue
                if down is None:
                    q.rejected["missing_value"] += 1
                    continue
                out.append(SpeedTest(unit, t / NS, float(down), float(up) if up is not None else None))
        return out


def _columns(conn: sqlite3.Connection, table: str) -> dict[str, tuple]:
    """``PRAGMA table_xinfo`` by column name: (cid, name, type, notnull, default, pk, hidden)."""
    return {r[1]: r for r in conn.execute(f"PRAGMA table_xinfo({_ident(table)})")}


@cache
def _agent_definitions() -> dict[str, str]:
    return table_definitions()


@cache
def _agent_columns() -> dict[str, dict[str, tuple]]:
    """The columns of each of the agent's tables, as :func:`_columns` gives them."""
    mem = sqlite3.connect(":memory:")
    try:
        out = {}
        for name, sql in _agent_definitions().items():
            mem.execute(sql)
            out[name] = _columns(mem, name)
        return out
    finally:
        mem.close()


def _count(q: Quality, reason: str, n: int) -> None:
    if n:
        q.rejected[reason] += n


def _ident(name: str) -> str:
    """``name`` as an SQL identifier (pragmas take no parameters)."""
    return '"' + str(name).replace('"', '""') + '"'


def _squeeze(sql: str) -> str:
    """A table's definition with the layout taken out: compared with the agent's, word for word."""
    return re.sub(r"\s*([(),])\s*", r"\1", re.sub(r"\s+", " ", sql.strip()))


def _tags(text: str | None) -> dict | None:
    """A series' tags as the agent writes them (a JSON object of strings), else None."""
    if text is None:
        return None
    try:
        tags = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        return None
    return tags


def _fields(text: str | None) -> dict | None:
    """A row's fields as the agent writes them (a JSON object), else None."""
    if text is None:
        return None
    try:
        fields = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return fields if isinstance(fields, dict) else None


def unit_of(tags: dict) -> Unit | None:
    agent = tags.get("agent")
    if not agent or not isinstance(agent, str):
        return None
    return Unit(agent, *(str(tags.get(k) or "") for k in TAGS[1:]))
