"""Closed days of the server-aggregated queries, kept locally (stdlib sqlite).

The expensive part of an aggregation is the server scanning a month of summaries (or, for agents
without them, of rounds and pings); a day that is over does not change, except for rows that agents
forward late (after an outage, a backlog goes out oldest first). So a day's hourly observed time
and daily latency are kept here once the day is ``settle_s`` old (default 3 days), and later
aggregations ask the server only for the days not kept. A kept day is asked again when an agent's
outage or speed test shows it was watching at an hour the cache holds no watching time for (rows
forwarded late); each (agent, hour) is asked about once (``asked_again``), so a server that really
has no rounds for it (pruned on the agent before they were forwarded) is not asked on every run.
Other late rows wait for ``--refresh``.

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
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from kit.definitions import Unit
from kit.errors import SourceError
from kit.records import ObsHour, PingDay

_SCHEMA = """
CREATE TABLE IF NOT EXISTS days (day INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS obs (unit TEXT NOT NULL, hour INTEGER NOT NULL, observed_s REAL NOT NULL,
    source TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS obs_hour ON obs (hour);
CREATE TABLE IF NOT EXISTS pings (unit TEXT NOT NULL, day INTEGER NOT NULL, p50 REAL, p95 REAL,
    loss REAL, rounds INTEGER NOT NULL, rtt_min REAL, rtt_max REAL);
CREATE INDEX IF NOT EXISTS pings_day ON pings (day);
CREATE TABLE IF NOT EXISTS asked_again (agent TEXT NOT NULL, hour INTEGER NOT NULL,
    PRIMARY KEY (agent, hour));
CREATE TABLE IF NOT EXISTS rejected (hour INTEGER NOT NULL, reason TEXT NOT NULL,
    rows INTEGER NOT NULL, PRIMARY KEY (hour, reason));
"""
# 2: observed hours sum only the rounds with a good interval_s; bad ones are counted.
# 3: hours and days come from the agents' hourly summaries where they wrote them (latency
#    through the summaries' histogram), each hour with where it came from (ObsHour.source).
SCHEMA_VERSION = 3
_TABLES = ("days", "obs", "pings", "asked_again", "rejected")
_LOAD_CACHE_KB = 65536   # SQLite's page cache while loading (it grows only as pages are read)


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
                for table in _TABLES:
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
            self.conn.executescript("DELETE FROM days; DELETE FROM obs; DELETE FROM pings; "
                                    "DELETE FROM asked_again; DELETE FROM rejected;")

    def asked_again(self) -> set[tuple[str, int]]:
        """(agent, hour) pairs already asked about once (see the module's note)."""
        return set(self.conn.execute("SELECT agent, hour FROM asked_again"))

    def mark_asked_again(self, pairs: Iterable[tuple[str, int]]) -> None:
        with self.conn:
            self.conn.executemany("INSERT OR IGNORE INTO asked_again VALUES (?, ?)", pairs)

    def days(self) -> set[int]:
        return {d for (d,) in self.conn.execute("SELECT day FROM days")}

    def load(self, days: Iterable[int]) -> tuple[list[ObsHour], list[PingDay]]:
        days = sorted(days)
        if not days:
            return [], []
        units: dict[str, Unit] = {}

        def unit(text: str) -> Unit:
            u = units.get(text)
            if u is None:
                u = units[text] = Unit(*json.loads(text))
            return u

        wanted = set(days)
        # The read walks the hour index over most of the table: a page cache larger than
        # SQLite's default 2 MB keeps it from reading the same table pages again and again
        # (a file kept before rows were stored in hour order: 1.9 s -> 0.9 s for 27 days of
        # 1,000 agents).
        self.conn.execute(f"PRAGMA cache_size = {-_LOAD_CACHE_KB:d}")
        obs = [ObsHour(unit(u), h, s, src) for u, h, s, src in self.conn.execute(
            "SELECT unit, hour, observed_s, source FROM obs WHERE hour >= ? AND hour < ?",
            (days[0], days[-1] + 86400)) if h - h % 86400 in wanted]
        pings = [PingDay(unit(u), d, *rest) for u, d, *rest in self.conn.execute(
            "SELECT unit, day, p50, p95, loss, rounds, rtt_min, rtt_max FROM pings"
            " WHERE day >= ? AND day <= ?", (days[0], days[-1])) if d in wanted]
        return obs, pings

    def load_rejected(self, days: Iterable[int]) -> list[tuple[int, str, int]]:
        """(hour, reason, rows) kept for these days."""
        wanted = set(days)
        if not wanted:
            return []
        return [(h, r, n) for h, r, n in self.conn.execute(
            "SELECT hour, reason, rows FROM rejected WHERE hour >= ? AND hour < ?",
            (min(wanted), max(wanted) + 86400)) if h - h % 86400 in wanted]

    def store(self, days: Iterable[int], obs: Iterable[ObsHour], pings: Iterable[PingDay],
              rejected: Iterable[tuple[int, str, int]] = ()) -> None:
        """Keep these whole days (their records, and (hour, reason, rows) counted as rejected,
        given), replacing anything kept for them."""
        days = set(days)
        if not days:
            return

        def key(u: Unit) -> str:
            return json.dumps([u.agent, u.region, u.isp, u.city, u.access, u.site], ensure_ascii=False)

        with self.conn:
            for d in days:
                self.conn.execute("DELETE FROM obs WHERE hour >= ? AND hour < ?", (d, d + 86400))
                self.conn.execute("DELETE FROM pings WHERE day = ?", (d,))
                self.conn.execute("DELETE FROM rejected WHERE hour >= ? AND hour < ?", (d, d + 86400))
            # In hour order, so that an hour's rows lie together and load's read along the
            # hour index follows the table (the answers come agent by agent).
            self.conn.executemany("INSERT INTO obs VALUES (?, ?, ?, ?)",
                                  sorted(((key(o.unit), o.hour, o.observed_s, o.source) for o in obs
                                          if o.hour - o.hour % 86400 in days),
                                         key=lambda r: (r[1], r[0])))
            self.conn.executemany("INSERT INTO pings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                  ((key(p.unit), p.day, p.rtt_p50_ms, p.rtt_p95_ms, p.loss_pct,
                                    p.rounds, p.rtt_min_ms, p.rtt_max_ms) for p in pings
                                   if p.day in days))
            self.conn.executemany("INSERT OR REPLACE INTO rejected VALUES (?, ?, ?)",
                                  ((h, r, n) for h, r, n in rejected if h - h % 86400 in days))
            self.conn.executemany("INSERT OR REPLACE INTO days VALUES (?)", ((d,) for d in days))
