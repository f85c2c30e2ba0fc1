"""Closed days of the server-aggregated queries, kept locally (stdlib sqlite).

The expensive part of an aggregation is the server scanning a month of summaries (or, for agents
without them, of rounds and pings); a day that is over does not change, except for rows that agents
forward late (after an outage, a backlog goes out oldest first). So a day's hourly observed time,
daily latency, episodes and speed tests are kept here once the day is ``settle_s`` old (default 3
days), with how many episode and speed-test rows the server held for it (``row_counts``), and
later aggregations ask the server only for the days not kept and for those counts. A kept day
whose counts changed has its episodes and speed tests read again; its hours and latency are asked
again when an agent's outage or speed test shows it was watching at an hour the cache holds no
watching time for (rows forwarded late); each (agent, hour) is asked about once (``asked_again``),
so a server that really has no rounds for it (pruned on the agent before they were forwarded) is
not asked on every run. Other late rows wait for ``--refresh``. Whole days not yet ``settle_s``
old are held as ``recent``, each with a mark the caller computed of what the server held for it
(:func:`collector.influxql.mark_queries`): used while the server's mark is the same, kept for
good (:meth:`Cache.promote`) once they are old enough.

Rows the server's answers counted as rejected for a kept day (rounds with a bad interval_s, per
hour) are kept with it, so a warm run reports what a cold one does. A file written by an older
version (``SCHEMA_VERSION``) is emptied: its days were reduced by older rules.

One file per server and database (the name is a hash of both), mode 0600 from its first byte.
``cache_dir`` may be set to a folder others can write: the file is made new by the collector
(never through a link planted at its name; an existing link is refused), and a file that is not
a cache is one line naming it, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from kit.definitions import Unit
from kit.errors import SourceError
from kit.records import EpisodeColumns, HourColumns, ObsHour, PingColumns, PingDay, SpeedColumns

_SCHEMA = """
CREATE TABLE IF NOT EXISTS days (day INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS obs_days (day INTEGER NOT NULL, source TEXT NOT NULL, units BLOB NOT NULL,
    hours BLOB NOT NULL, observed_s BLOB NOT NULL, PRIMARY KEY (day, source));
CREATE TABLE IF NOT EXISTS pings (unit INTEGER NOT NULL, day INTEGER NOT NULL, p50 REAL, p95 REAL,
    loss REAL, rounds INTEGER NOT NULL, rtt_min REAL, rtt_max REAL);
CREATE INDEX IF NOT EXISTS pings_day ON pings (day);
CREATE TABLE IF NOT EXISTS asked_again (agent TEXT NOT NULL, hour INTEGER NOT NULL,
    PRIMARY KEY (agent, hour));
CREATE TABLE IF NOT EXISTS rejected (hour INTEGER NOT NULL, reason TEXT NOT NULL,
    rows INTEGER NOT NULL, PRIMARY KEY (hour, reason));
CREATE TABLE IF NOT EXISTS episodes (unit INTEGER NOT NULL, day INTEGER NOT NULL, type TEXT NOT NULL,
    cause TEXT NOT NULL, start REAL NOT NULL, duration_s REAL NOT NULL);
CREATE INDEX IF NOT EXISTS episodes_day ON episodes (day);
CREATE TABLE IF NOT EXISTS speeds (unit INTEGER NOT NULL, day INTEGER NOT NULL, time REAL NOT NULL,
    download_bps REAL NOT NULL, upload_bps REAL);
CREATE INDEX IF NOT EXISTS speeds_day ON speeds (day);
CREATE TABLE IF NOT EXISTS row_counts (day INTEGER PRIMARY KEY, episodes INTEGER NOT NULL,
    speeds INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS recent (day INTEGER PRIMARY KEY, mark TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
"""
# 2: observed hours sum only the rounds with a good interval_s; bad ones are counted.
# 3: hours and days come from the agents' hourly summaries where they wrote them (latency
#    through the summaries' histogram), each hour with where it came from (ObsHour.source).
# 4: a kept day's episodes and speed tests too, with how many rows of each the server held when
#    they were read (row_counts): a later run asks for the counts only, and reads a day's rows
#    again when they changed.
# 5: each record's unit as the id of one row of ``units`` (its JSON text), not the text itself.
# 6: a day's observed hours as one row per source (obs_days: columns packed as little-endian
#    int32 unit ids, int64 hours, float64 seconds), loaded as kit.records.HourColumns.
SCHEMA_VERSION = 6
_TABLES = ("days", "obs_days", "pings", "asked_again", "rejected", "episodes", "speeds", "row_counts",
           "recent", "units")
_OLD_TABLES = ("obs",)   # tables of older schemas, dropped when a file is made anew


def default_dir(env=os.environ) -> Path:
    home = Path(env.get("HOME") or Path.home())
    return Path(env.get("XDG_CACHE_HOME") or home / ".cache") / "linewatch-collector"


class Cache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0),
                         0o600)
            os.close(fd)
        except FileExistsError:
            if path.is_symlink():
                raise SourceError(f"{path}: the cache file is a symbolic link, which the collector "
                                  "does not follow: remove it, or set collector.cache_dir to a "
                                  "folder of your own") from None
        conn = None
        try:
            conn = sqlite3.connect(path)
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise SourceError(f"{path}: not a cache this collector can read ({exc}): delete the "
                              "file, or run with --cache off") from exc
        self.conn = conn
        (version,), = self.conn.execute("PRAGMA user_version")
        if version < SCHEMA_VERSION:
            # Kept by older rules (and tables of another shape): made anew.
            with self.conn:
                for table in _TABLES + _OLD_TABLES:
                    self.conn.execute(f"DROP TABLE IF EXISTS {table}")
            self.conn.executescript(_SCHEMA)
            with self.conn:
                self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")

    @classmethod
    def for_source(cls, directory: Path, url: str, database: str, rp: str) -> Cache:
        key = hashlib.sha256(f"{url}\n{database}\n{rp}".encode()).hexdigest()[:20]
        return cls(Path(directory) / f"{key}.db")

    def close(self) -> None:
        self.conn.close()

    def clear(self) -> None:
        with self.conn:
            self.conn.executescript("".join(f"DELETE FROM {t};" for t in _TABLES))

    def asked_again(self) -> set[tuple[str, int]]:
        """(agent, hour) pairs already asked about once (see the module's note)."""
        return set(self.conn.execute("SELECT agent, hour FROM asked_again"))

    def mark_asked_again(self, pairs: Iterable[tuple[str, int]]) -> None:
        with self.conn:
            self.conn.executemany("INSERT OR IGNORE INTO asked_again VALUES (?, ?)", pairs)

    def days(self) -> set[int]:
        """The kept days: old enough (``settle_s``) to be trusted without asking again."""
        return {d for (d,) in self.conn.execute("SELECT day FROM days")}

    def recent(self) -> dict[int, str]:
        """Days held while still recent, each with the mark of what the server held for it
        then (the caller's; a day is used only while the server's mark is the same)."""
        return dict(self.conn.execute("SELECT day, mark FROM recent"))

    def promote(self, days: Iterable[int]) -> None:
        """Recent days whose mark still held once they were old enough: kept from now on."""
        with self.conn:
            for d in days:
                self.conn.execute("DELETE FROM recent WHERE day = ?", (d,))
                self.conn.execute("INSERT OR REPLACE INTO days VALUES (?)", (d,))

    def load(self, days: Iterable[int]) -> tuple[list[HourColumns], list[PingDay]]:
        """The observed hours (one block per day and source, every block sharing one units
        tuple) and the days of latency kept for ``days``."""
        days = sorted(days)
        if not days:
            return [], []
        import numpy as np  # deferred: the collector's CLI says how to install it (_need_numpy)

        units = self._units()
        wanted = set(days)
        order = sorted(units)
        shared = tuple(units[i] for i in order)
        position = np.zeros(max(order, default=0) + 1, dtype=np.int32)
        position[order] = np.arange(len(order), dtype=np.int32)
        blocks = []
        for d, source, u, h, s in self.conn.execute(
                "SELECT day, source, units, hours, observed_s FROM obs_days WHERE day >= ? AND"
                " day <= ? ORDER BY day, source", (days[0], days[-1])):
            if d not in wanted:
                continue
            try:
                ids = np.frombuffer(u, dtype="<i4")
                hour = np.frombuffer(h, dtype="<i8")
                secs = np.frombuffer(s, dtype="<f8")
                if not len(ids) == len(hour) == len(secs) or ids.min() < 0 or ids.max() >= len(position):
                    raise ValueError("columns of different lengths or unknown units")
            except (TypeError, ValueError) as exc:
                day = datetime.fromtimestamp(d, UTC).date().isoformat()
                raise SourceError(f"{self.path}: the hours kept for {day} are damaged ({exc}):"
                                  " run with --cache refresh, or delete the file") from None
            blocks.append(HourColumns(shared, position[ids], hour, secs, source))
        pings = [PingDay(units[u], d, *rest) for u, d, *rest in self.conn.execute(
            "SELECT unit, day, p50, p95, loss, rounds, rtt_min, rtt_max FROM pings"
            " WHERE day >= ? AND day <= ?", (days[0], days[-1])) if d in wanted]
        return blocks, pings

    def _units(self) -> dict[int, Unit]:
        """Every unit kept, by id, each made once."""
        return {i: Unit(*json.loads(text)) for i, text in self.conn.execute("SELECT id, text FROM units")}

    def _unit_ids(self) -> Callable[[Unit], int]:
        """Within an open transaction: a unit's id, a new row of ``units`` the first time."""
        ids = dict((text, i) for i, text in self.conn.execute("SELECT id, text FROM units"))

        def uid(u: Unit) -> int:
            text = _key(u)
            i = ids.get(text)
            if i is None:
                i = ids[text] = self.conn.execute("INSERT INTO units (text) VALUES (?)",
                                                  (text,)).lastrowid or 0
            return i
        return uid

    def row_counts(self) -> dict[int, tuple[int, int]]:
        """Per kept day: (episode rows, speed-test rows) the server held when they were read."""
        return {d: (e, s) for d, e, s in self.conn.execute("SELECT day, episodes, speeds FROM row_counts")}

    def load_rows(self, days: Iterable[int]) -> tuple[list[EpisodeColumns], list[SpeedColumns]]:
        """The episodes and speed tests kept for ``days`` (by the UTC day of their time), as
        columns (a block per 100,000 rows, every block sharing one units tuple: 10,000 agents'
        quarter is 6 million of them, which as records would take a gigabyte)."""
        days = sorted(days)
        if not days:
            return [], []
        import numpy as np  # deferred: the collector's CLI says how to install it (_need_numpy)

        units = self._units()
        order = sorted(units)
        shared = tuple(units[i] for i in order)
        position = np.full(max(order, default=0) + 1, -1, dtype=np.int32)
        position[order] = np.arange(len(order), dtype=np.int32)
        wanted = np.array(days, dtype=np.int64)
        span = (days[0], days[-1])
        episodes, speeds = [], []
        names: dict[str, int] = {}
        for batch in self._batches("SELECT unit, day, type, cause, start, duration_s FROM episodes "
                                   "WHERE day >= ? AND day <= ? ORDER BY rowid", span):
            unit, day, typ, cause, start, dur = zip(*batch)
            ids, keep = self._ids(unit, day, position, wanted, "episodes")
            typ, cause = ([names.setdefault(str(v), len(names)) for v in col] for col in (typ, cause))
            episodes.append(EpisodeColumns(
                shared, ids[keep], (), np.array(typ, dtype=np.int32)[keep],
                np.array(cause, dtype=np.int32)[keep], _floats(start)[keep], _floats(dur)[keep]))
        vocab = tuple(names)
        episodes = [replace(b, names=vocab) for b in episodes]
        for batch in self._batches("SELECT unit, day, time, download_bps, upload_bps FROM speeds "
                                   "WHERE day >= ? AND day <= ? ORDER BY rowid", span):
            unit, day, t, down, up = zip(*batch)
            ids, keep = self._ids(unit, day, position, wanted, "speed tests")
            speeds.append(SpeedColumns(shared, ids[keep], _floats(t)[keep], _floats(down)[keep],
                                       _floats(up)[keep]))
        return episodes, speeds

    def _batches(self, sql: str, span: tuple[int, int]) -> Iterator[list]:
        cur = self.conn.execute(sql, span)
        while batch := cur.fetchmany(100_000):
            yield batch

    def _ids(self, unit: tuple, day: tuple, position, wanted, what: str):
        """A batch's unit positions and which of its rows lie on a wanted day; SourceError for a
        unit the cache does not hold (a damaged file)."""
        import numpy as np  # deferred: the collector's CLI says how to install it (_need_numpy)

        u = np.array(unit, dtype=np.int64)
        if u.min() < 0 or u.max() >= len(position) or (position[u] < 0).any():
            raise SourceError(f"{self.path}: the {what} kept name units it does not hold:"
                              " run with --cache refresh, or delete the file")
        return position[u], np.isin(np.array(day, dtype=np.int64), wanted)

    def store_rows(self, counts: dict[int, tuple[int, int]], episodes: Iterable[EpisodeColumns],
                   speeds: Iterable[SpeedColumns]) -> None:
        """Keep the episodes and speed tests (column blocks) of the days in ``counts`` ({day:
        (episode rows, speed-test rows) the server held, counted before these were read}),
        replacing what was kept for them. Straight from the columns: no record per row."""
        days = set(counts)
        if not days:
            return
        import numpy as np  # deferred: the collector's CLI says how to install it (_need_numpy)

        wanted = np.array(sorted(days), dtype=np.int64)

        def rows(units: tuple, unit, when) -> tuple[np.ndarray, list, list]:
            """The rows of a block on the days kept: their indices, unit ids and days."""
            ids = np.array([uid(u) for u in units] or [0], dtype=np.int64)
            t = np.asarray(when, dtype=np.float64)
            # as _day: a NaN, infinite or absurd time has no day, and is never kept
            ok = np.abs(t) < 1e15
            day = np.where(ok, t - np.mod(t, 86400.0), -1.0).astype(np.int64)
            at = np.flatnonzero(ok & np.isin(day, wanted))
            return at, ids[np.asarray(unit, dtype=np.int64)[at]].tolist(), day[at].tolist()

        def col(values, at: np.ndarray) -> list:
            return [None if v != v else v for v in np.asarray(values, dtype=np.float64)[at].tolist()]

        with self.conn:
            uid = self._unit_ids()
            for d in days:
                self.conn.execute("DELETE FROM episodes WHERE day = ?", (d,))
                self.conn.execute("DELETE FROM speeds WHERE day = ?", (d,))
            for b in episodes:
                at, ids, day = rows(b.units, b.unit, b.start)
                typ = [b.names[k] for k in np.asarray(b.type, dtype=np.int64)[at].tolist()]
                cause = [b.names[k] for k in np.asarray(b.cause, dtype=np.int64)[at].tolist()]
                self.conn.executemany("INSERT INTO episodes VALUES (?, ?, ?, ?, ?, ?)",
                                      zip(ids, day, typ, cause, col(b.start, at),
                                          col(b.duration_s, at)))
            for t in speeds:
                at, ids, day = rows(t.units, t.unit, t.time)
                self.conn.executemany("INSERT INTO speeds VALUES (?, ?, ?, ?, ?)",
                                      zip(ids, day, col(t.time, at), col(t.download_bps, at),
                                          col(t.upload_bps, at)))
            self.conn.executemany("INSERT OR REPLACE INTO row_counts VALUES (?, ?, ?)",
                                  ((d, e, n) for d, (e, n) in counts.items()))

    def load_rejected(self, days: Iterable[int]) -> list[tuple[int, str, int]]:
        """(hour, reason, rows) kept for these days."""
        wanted = set(days)
        if not wanted:
            return []
        return [(h, r, n) for h, r, n in self.conn.execute(
            "SELECT hour, reason, rows FROM rejected WHERE hour >= ? AND hour < ?",
            (min(wanted), max(wanted) + 86400)) if h - h % 86400 in wanted]

    def store(self, days: Iterable[int], obs: Iterable[ObsHour], pings: Iterable[PingDay],
              rejected: Iterable[tuple[int, str, int]] = (),
              marks: dict[int, str] | None = None, hours: Iterable[HourColumns] = (),
              ping_cols: Iterable[PingColumns] = ()) -> None:
        """Keep these whole days (their records, ``hours`` and ``ping_cols`` blocks, and (hour, reason, rows)
        counted as rejected, given), replacing anything kept for them. With ``marks`` ({day:
        mark}, every day of ``days``) they are held as recent (:meth:`recent`) instead of
        kept."""
        days = set(days)
        if not days:
            return
        import numpy as np  # deferred, as in load

        with self.conn:   # one transaction: a day's mark never stands beside another's records
            uid = self._unit_ids()
            for d in days:
                if marks is None:
                    self.conn.execute("DELETE FROM recent WHERE day = ?", (d,))
                else:
                    self.conn.execute("DELETE FROM days WHERE day = ?", (d,))
                    self.conn.execute("INSERT OR REPLACE INTO recent VALUES (?, ?)", (d, marks[d]))
                self.conn.execute("DELETE FROM obs_days WHERE day = ?", (d,))
                self.conn.execute("DELETE FROM pings WHERE day = ?", (d,))
                self.conn.execute("DELETE FROM rejected WHERE hour >= ? AND hour < ?", (d, d + 86400))
            # Per (day, source): unit ids, hours and seconds, from the records and the blocks.
            parts: dict[tuple[int, str], list[tuple]] = defaultdict(list)
            rows: dict[tuple[int, str], list[tuple[int, int, float]]] = defaultdict(list)
            for o in obs:
                d = o.hour - o.hour % 86400
                if d in days:
                    rows[(d, o.source)].append((uid(o.unit), o.hour, o.observed_s))
            for key, rs in rows.items():
                parts[key].append((np.array([r[0] for r in rs], dtype="<i4"),
                                   np.array([r[1] for r in rs], dtype="<i8"),
                                   np.array([r[2] for r in rs], dtype="<f8")))
            for b in hours:
                ids = np.array([uid(u) for u in b.units] or [0], dtype="<i4")
                hour = np.asarray(b.hour, dtype="<i8")
                day = hour - hour % 86400
                unit = ids[np.asarray(b.unit, dtype=np.int64)]
                secs = np.asarray(b.observed_s, dtype="<f8")
                for d in np.unique(day, return_index=True)[0].tolist():
                    if d in days:
                        mine = day == d
                        parts[(d, b.source)].append((unit[mine], hour[mine], secs[mine]))
            self.conn.executemany("INSERT INTO obs_days VALUES (?, ?, ?, ?, ?)", [
                (d, source, *(np.concatenate(c).tobytes() for c in zip(*cols)))
                for (d, source), cols in sorted(parts.items())])
            self.conn.executemany("INSERT INTO pings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                  [(uid(p.unit), p.day, p.rtt_p50_ms, p.rtt_p95_ms, p.loss_pct,
                                    p.rounds, p.rtt_min_ms, p.rtt_max_ms) for p in pings
                                   if p.day in days])
            for b in ping_cols:
                ids = [uid(u) for u in b.units]
                self.conn.executemany("INSERT INTO pings VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
                    (ids[u], d, *(None if v != v else v for v in (p50, p95, loss)), n,
                     *(None if v != v else v for v in (lo, hi)))
                    for u, d, p50, p95, loss, n, lo, hi in zip(
                        _list(b.unit), _list(b.day), _list(b.rtt_p50_ms), _list(b.rtt_p95_ms),
                        _list(b.loss_pct), _list(b.rounds), _list(b.rtt_min_ms),
                        _list(b.rtt_max_ms))
                    if d in days])
            self.conn.executemany("INSERT OR REPLACE INTO rejected VALUES (?, ?, ?)",
                                  ((h, r, n) for h, r, n in rejected if h - h % 86400 in days))
            if marks is None:
                self.conn.executemany("INSERT OR REPLACE INTO days VALUES (?)", ((d,) for d in days))


def _list(col) -> list:
    """A column as a list of Python numbers (numpy's tolist, or the list itself)."""
    return col.tolist() if hasattr(col, "tolist") else list(col)


@lru_cache(maxsize=1 << 16)
def _key(u: Unit) -> str:
    """A unit as the cache keeps it (one JSON text per unit, made once: a month of 1,000 agents
    is 920,000 records and about 1,000 units)."""
    return json.dumps([u.agent, u.region, u.isp, u.city, u.access, u.site], ensure_ascii=False)


def _floats(values: tuple):
    """A column of numbers as float64, None as NaN (what the column types say a NaN stands
    for)."""
    import numpy as np  # deferred: the collector's CLI says how to install it (_need_numpy)

    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
