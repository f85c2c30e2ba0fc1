"""The embedded local store: SQLite in the state dir, and the outbox for the InfluxDB sink.

Layout:

* ``series``   one row per (measurement, tags): tags are stored once, not with every sample.
* ``samples``  one row per Sample, in insertion order (``id``), with ``sent`` = 0 until a sink has
  acknowledged it (then 1), or 2 when the server rejected the row itself (quarantined).
  :meth:`Store.outbox`, :meth:`Store.mark_sent` and :meth:`Store.quarantine` make it an outbox
  that goes out oldest first.
* ``quarantine`` rows the server refused (400/422) or line protocol cannot carry, with the
  server's message and the line, for ``linewatch status``.
* ``outbox_lines`` each waiting row's line-protocol field set, made as the row is written while a
  server is configured (:attr:`Store.field_set`) and dropped by housekeeping once it is sent, so a flush joins
  text instead of encoding rows.
* ``episodes`` outage and degraded episodes by id; an episode in progress has ``end_ns`` NULL and is
  updated in place, so it exists exactly once.
* ``state``    small key/value pairs: the outage tracker, the heartbeat, counters.

WAL mode with ``synchronous=FULL``: each round's transaction is on disk before the next round
starts, which matters on machines that lose power. Files are created 0600 in a 0700 directory.

Two ways in:

* :meth:`Store.open` (``linewatch run``, ``push``, ``speedtest``): read-write. A database that
  SQLite reports as damaged is renamed ``*.corrupt-<UTC time>``, a new one is started and every
  row the old one still gives up is copied into it (:mod:`agent.salvage`, episodes first);
  :attr:`Store.recovered_from` and :attr:`Store.salvaged` say so, and the state key
  ``store_recovered`` keeps it for ``status``.
* :meth:`Store.open_readonly` (``status``, ``outages``, ``check``): never creates, moves or
  changes a file; a damaged or missing store is an error that says so.

A write that fails for a reason that may pass (disk full, read-only file system, I/O error, a lock
held too long: :class:`StoreUnwritable`) is kept in memory and tried again with the next write, up
to :data:`MAX_PENDING_SAMPLES` samples (the oldest raw samples beyond that are dropped and
counted; an ``outage`` row never is);
:attr:`Store.trouble` says since when the store cannot be written.

Longer than the house's 400 lines: the one connection and every transaction on it (writes, the
outbox, retention, repair) share one lock and one trouble state.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agent import lock
from agent.model import Episode, Sample, from_ns, to_ns
from kit.errors import StoreCorrupt, StoreError, StoreMissing, StoreUnwritable
from kit.hourly import DAILY, MEASUREMENT as HOURLY
from kit.storeschema import DB_NAME, SCHEMA, SCHEMA_VERSION, sqlite_uri

# Measurements kept forever: retention and the size cap drop only raw rounds. The hourly
# and daily summaries (kit.hourly) are kept too: a year of them is about 15 MB, and they are what the line
# report reads for long windows and what a volunteer's file gives the collector.
KEEP_FOREVER = frozenset({"outage", "hourly", "daily"})
# ``samples.sent``: 0 waiting in the outbox, 1 sent, 2 set aside (the server refused it),
# 3 kept here only (``influx.send = "summaries"``: raw rows are not forwarded), 4 a version of
# an hourly summary held back until the next forwarded one (a growing hour on a metered line).
SENT, QUARANTINED, LOCAL_ONLY, HELD = 1, 2, 3, 4
# Samples kept in memory while the store cannot be written: about 11 h of rounds at the
# default 10 s cadence (five samples a round), a few MB.
MAX_PENDING_SAMPLES = 20_000
STATE_RECOVERED = "store_recovered"
STATE_PRUNED = "raw_pruned_through"  # the newest raw row retention or the size cap deleted (ns)
# SQLite's names for a write that failed but may work later (the file itself is fine).
_UNWRITABLE = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_BUSY", "SQLITE_LOCKED",
               "SQLITE_CANTOPEN", "SQLITE_PERM")

def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return False  # locked, busy, disk I/O: not a damaged file
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text


# The alert outbox's states (kit/storeschema.py).
ALERT_QUEUED, ALERT_SENT, ALERT_REPLACED, ALERT_REFUSED, ALERT_EXPIRED = 0, 1, 2, 3, 4


@dataclass
class Trouble:
    """Since when (UTC) the store cannot be written, why, and what waits in memory."""

    since: datetime
    reason: str
    pending_samples: int = 0


@dataclass
class _Pending:
    """Writes that failed, merged: samples in order, the latest version of each episode and of
    each state key."""

    samples: list = field(default_factory=list)
    episodes: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)

    def add(self, samples, episodes, state) -> None:
        self.samples.extend(samples)
        self.episodes.update((e.id, e) for e in episodes)
        self.state.update(state)


class Store:
    """One SQLite database; thread-safe through a single connection guarded by a lock."""

    def __init__(self, conn: sqlite3.Connection, path: Path, recovered_from: Path | None,
                 readonly: bool = False) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self._series: dict[tuple[str, str], int] = {}
        self._pending = _Pending()
        self.path = path
        self.recovered_from = recovered_from
        self.salvaged: dict[str, dict[str, int]] | None = None
        self.readonly = readonly
        self.trouble: Trouble | None = None
        self.dropped_pending = 0  # samples dropped from the full in-memory queue, ever
        # The measurements that go to the outbox, None for all: the others are written as kept
        # here only (sent = 3), as the raw rows when only the summaries are forwarded (set by
        # the wiring: :meth:`forward_only`).
        self.forwarded: frozenset[str] | None = None
        # Set when a server is configured (agent.forward.make_forwarder): a row's line-protocol
        # field set, or None when line protocol cannot carry it (then it is encoded, and refused
        # with the reason, when it is sent). Kept beside each row bound for the outbox.
        self.field_set: Callable[[Mapping], str | None] | None = None

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def open(cls, state_dir: str | os.PathLike, *, now: datetime | None = None,
             repair: bool = True) -> Store:
        """Open (or create) the store in ``state_dir``. A damaged file is moved aside and what
        it still holds is copied into the new store (:mod:`agent.salvage`); with ``repair``
        false (every writer but ``linewatch run``) it is left alone and StoreCorrupt says so."""
        d = Path(state_dir)
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create state dir {d}: {exc.strerror or exc}") from exc
        path = d / DB_NAME
        try:
            return cls(_connect(path), path, None)
        except StoreCorrupt as exc:
            if not repair:
                raise StoreCorrupt(damaged_message(path, exc.__cause__ or exc)) from exc
            now = now or datetime.now(UTC)
            aside = move_aside(path, now)
            store = cls(_connect(path), path, aside)
            store._salvage(aside, now, str(exc.__cause__ or exc))
            return store

    @classmethod
    def open_readonly(cls, state_dir: str | os.PathLike, *, live: bool = True) -> Store:
        """Open the store for reading only: nothing is created, moved or changed. ``live``: an
        agent may be writing (the lock says so); otherwise, when no write-ahead log exists,
        the file is opened as immutable, which creates no -wal or -shm file either.

        Raises :class:`StoreMissing` when there is no store and :class:`StoreCorrupt` (with the
        path, SQLite's words and what to do) when it is damaged."""
        path = Path(state_dir) / DB_NAME
        if not path.exists():
            raise StoreMissing(f"{path}: no such file: no store yet "
                               "(has `linewatch run` run with this config?)")
        modes = ["mode=ro"] if live or Path(f"{path}-wal").exists() else ["immutable=1", "mode=ro"]
        for i, mode in enumerate(modes):
            try:
                conn = sqlite3.connect(sqlite_uri(path, mode), uri=True,
                                       check_same_thread=False, timeout=10)
                conn.execute("SELECT count(*) FROM samples").fetchone()
                conn.execute("SELECT count(*) FROM episodes").fetchone()
                return cls(conn, path, None, readonly=True)
            except sqlite3.DatabaseError as exc:
                # An immutable reader racing an agent that just started may see torn pages:
                # if an agent runs now, ask once more through the locking reader.
                if i + 1 < len(modes) and lock.holder(path.parent).running:
                    continue
                err = _convert(exc, path)
                if isinstance(err, StoreCorrupt):
                    raise StoreCorrupt(damaged_message(path, exc)) from exc
                raise err from exc
        raise AssertionError("unreachable")

    def _salvage(self, aside: Path, now: datetime, reason: str) -> None:
        from agent.salvage import salvage  # deferred: only a damaged store needs it

        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self.salvaged = salvage(aside, self._conn)
                self._conn.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key)"
                                   " DO UPDATE SET value = excluded.value", (STATE_RECOVERED, json.dumps({
                                       "time": now.isoformat(), "moved_to": str(aside), "reason": reason,
                                       "tables": self.salvaged})))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            if self._pending.samples or self._pending.episodes or self._pending.state:
                try:
                    self.write()
                except StoreError:
                    pass  # still unwritable: what is lost is in .trouble for the caller to say
            self._conn.close()

    # -- writing ----------------------------------------------------------------------------
    def write(self, samples: Iterable[Sample] = (), *, episodes: Iterable[Episode] = (),
              state: Mapping[str, str] | None = None) -> None:
        """Samples, episode upserts and state updates in ONE transaction, together with any
        earlier writes that failed because the store could not be written (disk full ...).
        Such a failure does not raise: the rows wait in memory (see :attr:`trouble`)."""
        with self._lock:
            old = self._pending
            p = _Pending(list(old.samples), dict(old.episodes), dict(old.state))
            p.add(samples, episodes, state or {})
            try:
                self._write_now(p.samples, p.episodes.values(), p.state)
            except StoreUnwritable as exc:
                self._pending = p
                over = len(p.samples) - MAX_PENDING_SAMPLES
                if over > 0:
                    self.dropped_pending += _drop_oldest_raw(p.samples, over)
                if self.trouble is None:
                    self.trouble = Trouble(datetime.now(UTC), exc.reason or str(exc))
                self.trouble.pending_samples = len(p.samples)
                return
            self._pending = _Pending()
            self.trouble = None

    def _write_now(self, samples, episodes, state) -> None:
        with self._tx() as c:
            fw = self.forwarded
            rows = [(s.time_ns, self._series_id(c, s), _dumps(s.fields),
                     LOCAL_ONLY if fw is not None and s.measurement not in fw else 0)
                    for s in samples]
            insert = "INSERT INTO samples (time_ns, series_id, fields, sent) VALUES (?, ?, ?, ?)"
            encode = self.field_set
            if encode is None:
                c.executemany(insert, rows)
            else:
                lines = []
                for row, s in zip(rows, samples):
                    i = c.execute(insert, row).lastrowid
                    if row[3] == 0 and (text := encode(s.fields)) is not None:
                        lines.append((i, row[1], row[0], text))
                c.executemany("INSERT OR REPLACE INTO outbox_lines (sample_id, series_id, time_ns,"
                              " field_set) VALUES (?, ?, ?, ?)", lines)
            for ep in episodes:
                c.execute(
                    "INSERT INTO episodes (id, type, cause, start_ns, end_ns, duration_s, sustained, details)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET type = excluded.type,"
                    " cause = excluded.cause, start_ns = excluded.start_ns, end_ns = excluded.end_ns,"
                    " duration_s = excluded.duration_s, sustained = excluded.sustained,"
                    " details = excluded.details",
                    (ep.id, ep.type, ep.cause, to_ns(ep.start), to_ns(ep.end) if ep.end else None,
                     ep.duration_s, int(ep.sustained), _dumps(ep.details)),
                )
            for k, v in (state or {}).items():
                c.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                          " SET value = excluded.value", (k, v))

    def put_summaries(self, samples: Iterable[Sample], *, hour_ns: int, forward: bool,
                      measurement: str = HOURLY) -> None:
        """Make ``samples`` the ``measurement`` rows (``hourly``, or ``daily`` with ``hour_ns``
        the day's start) of the hour starting at ``hour_ns``, in one
        transaction: each replaces the row of its series at that time (rewritten in place, as
        InfluxDB overwrites a point of the same series and time), and rows of the hour under
        other tags (written before the tags changed) are rewritten too or removed. A row goes to
        the outbox when ``forward`` is true, when it is new, or when its previous version was
        still waiting; else (the hour in progress between two forwarded versions) it is held
        here (``sent`` = 4) until the next forwarded version. A row whose fields did not change
        is left as it is (a held one released when ``forward``). Each new version is inserted
        before the old one is deleted, so it never takes the id of a version being sent."""
        samples = list(samples)
        with self._tx() as c:
            old: dict[int, list[tuple[int, int, str]]] = {}
            for i, sid, sent, fields in c.execute(
                    "SELECT s.id, s.series_id, s.sent, s.fields FROM samples s JOIN series r ON"
                    " r.id = s.series_id WHERE r.measurement = ? AND s.time_ns = ?",
                    (measurement, hour_ns)):
                old.setdefault(sid, []).append((i, sent, fields))
            drop = [i for versions in old.values() for i, _, _ in versions]
            for s in samples:
                sid = self._series_id(c, s)
                text = _dumps(s.fields)
                before = old.get(sid, [])
                if len(before) == 1 and before[0][2] == text:
                    drop.remove(before[0][0])  # unchanged: the row stays, released if held
                    if forward and before[0][1] == HELD:
                        c.execute("UPDATE samples SET sent = 0 WHERE id = ?", (before[0][0],))
                    continue
                waiting = not before or any(v[1] == 0 for v in before)
                sent = 0 if forward or waiting else HELD
                c.execute("INSERT INTO samples (time_ns, series_id, fields, sent) VALUES (?, ?, ?, ?)",
                          (hour_ns, sid, text, sent))
            if drop:
                qs = ",".join("?" * len(drop))
                c.execute(f"DELETE FROM samples WHERE id IN ({qs})", drop)

    def forward_only(self, measurements: Iterable[str]) -> int:
        """From now on send only rows of ``measurements``; the others are written as kept here
        only, and those of them waiting in the outbox (the config switched to sending summaries
        only) are marked so too. Returns how many were waiting."""
        keep = tuple(sorted(set(measurements)))
        self.forwarded = frozenset(keep)
        marks = ",".join("?" * len(keep))
        with self._tx() as c:
            return c.execute(
                f"UPDATE samples SET sent = {LOCAL_ONLY} WHERE sent = 0 AND series_id IN (SELECT id"
                f" FROM series WHERE measurement NOT IN ({marks}))", keep).rowcount

    def rows_between(self, measurements: Iterable[str], start_ns: int, end_ns: int
                     ) -> list[tuple[str, dict, dict, int]]:
        """``(measurement, tags, fields, time_ns)`` of the rows of ``measurements`` dated in
        [start_ns, end_ns), oldest first (rows of one series share one tags dict: read only)."""
        ms = tuple(measurements)
        marks = ",".join("?" * len(ms))
        rows = self._query(
            "SELECT r.measurement, s.series_id, r.tags, s.fields, s.time_ns FROM samples s JOIN"
            f" series r ON r.id = s.series_id WHERE r.measurement IN ({marks}) AND s.time_ns >= ?"
            " AND s.time_ns < ? ORDER BY s.time_ns, s.id", (*ms, start_ns, end_ns))
        tags: dict[int, dict] = {}   # each series' tags parsed once (shared: read only)
        return [(m, tags[sid] if sid in tags else tags.setdefault(sid, json.loads(t)),
                 json.loads(f), ns) for m, sid, t, f, ns in rows]

    def first_time(self, measurement: str) -> int | None:
        """The time (ns) of the oldest row of ``measurement``, None without any."""
        (ns,), = self._query(
            "SELECT min(s.time_ns) FROM samples s WHERE s.series_id IN (SELECT id FROM series"
            " WHERE measurement = ?)", (measurement,))
        return ns

    def _series_id(self, c: sqlite3.Connection, s: Sample) -> int:
        key = (s.measurement, _dumps(dict(sorted(s.tags.items()))))
        sid = self._series.get(key)
        if sid is None:
            c.execute("INSERT OR IGNORE INTO series (measurement, tags) VALUES (?, ?)", key)
            sid = c.execute("SELECT id FROM series WHERE measurement = ? AND tags = ?", key).fetchone()[0]
            self._series[key] = sid
        return sid

    # -- the outbox -------------------------------------------------------------------------
    def outbox(self, limit: int = 5000, after: tuple[int, int] | None = None
               ) -> list[tuple[int, int, str, str, str, int]]:
        """Up to ``limit`` unsent rows, oldest first (by time, then insertion), as raw
        ``(id, series_id, measurement, tags_json, fields_json, time_ns)`` for the line encoder.
        ``after`` = ``(time_ns, id)`` of the last row of the previous page: the next page while
        that one is still being sent (not yet marked)."""
        sql = ("SELECT s.id, s.series_id, r.measurement, r.tags, s.fields, s.time_ns FROM samples s"
               " INDEXED BY samples_outbox JOIN series r ON r.id = s.series_id WHERE s.sent = 0")
        if after is None:
            return self._query(sql + " ORDER BY s.time_ns, s.id LIMIT ?", (limit,))
        return self._query(sql + " AND (s.time_ns, s.id) > (?, ?) ORDER BY s.time_ns, s.id LIMIT ?",
                           (*after, limit))

    def outbox_lean(self, limit: int = 5000, after: tuple[int, int] | None = None
                    ) -> list[tuple[int, int, str | None, int, str | None]]:
        """:meth:`outbox` without the series' measurement and tags, for a reader that keeps
        each series' key (the forwarder's encoder; :meth:`series_text` for one it has not
        seen): ``(id, series_id, fields_json, time_ns, field_set)``, where ``field_set`` is the
        row's line-protocol field set made when it was written (:attr:`field_set`), and then
        ``fields_json`` is None (not read); else ``field_set`` is None."""
        sql = ("SELECT s.id, s.series_id, CASE WHEN l.field_set IS NULL THEN s.fields END,"
               " s.time_ns, l.field_set FROM samples s INDEXED BY samples_outbox"
               " LEFT JOIN outbox_lines l ON l.sample_id = s.id AND l.series_id = s.series_id"
               " AND l.time_ns = s.time_ns WHERE s.sent = 0")
        if after is None:
            return self._query(sql + " ORDER BY s.time_ns, s.id LIMIT ?", (limit,))
        return self._query(sql + " AND (s.time_ns, s.id) > (?, ?) ORDER BY s.time_ns, s.id LIMIT ?",
                           (*after, limit))

    def series_text(self, series_id: int) -> tuple[str, str] | None:
        """``(measurement, tags_json)`` of a series as stored, None when there is no such series."""
        rows = self._query("SELECT measurement, tags FROM series WHERE id = ?", (series_id,))
        return rows[0] if rows else None

    def quarantine(self, rows: Iterable[tuple[int, int | None, str, str]], now: datetime) -> int:
        """Set rows aside that the server refused: ``(id, status, message, line)``. They are kept
        (with the message) but never sent again. Returns how many were unsent until now."""
        rows = list(rows)
        with self._tx() as c:
            n = 0
            for i, status, message, text in rows:
                n += c.execute("UPDATE samples SET sent = 2 WHERE id = ? AND sent = 0", (i,)).rowcount
                c.execute("INSERT OR REPLACE INTO quarantine (sample_id, time_ns, status, message, line)"
                          " VALUES (?, ?, ?, ?, ?)", (i, to_ns(now), status, message[:1000], text[:2000]))
        return n

    def requeue_quarantined(self) -> int:
        """Put every quarantined row back in the outbox (after fixing what the server refused)."""
        with self._tx() as c:
            n = c.execute("UPDATE samples SET sent = 0 WHERE sent = 2").rowcount
            c.execute("DELETE FROM quarantine")
        return n

    def quarantined(self, limit: int = 10) -> tuple[int, list[dict]]:
        """How many rows are quarantined, and the newest ``limit`` of them."""
        (n,), = self._query("SELECT count(*) FROM quarantine")
        rows = self._query("SELECT sample_id, time_ns, status, message, line FROM quarantine"
                           " ORDER BY time_ns DESC, sample_id DESC LIMIT ?", (limit,))
        return n, [{"id": i, "time": from_ns(t), "status": st, "message": m, "line": ln}
                   for i, t, st, m, ln in rows]

    def mark_sent(self, ids: Iterable[int]) -> None:
        # One statement over a JSON array: half the time of executemany for a 5000-row batch
        # (SQLite without its JSON functions, before 3.38 and built without JSON1: row by row).
        # The rows' field sets stay until housekeeping (prune) drops the lines of rows no longer
        # waiting: deleting them here was a third of the marking's time during a flush, and a
        # line only ever applies to a waiting row (outbox_lean's join).
        ids = list(ids)
        with self._tx() as c:
            try:
                c.execute("UPDATE samples SET sent = 1 WHERE sent = 0 AND id IN"
                          " (SELECT value FROM json_each(?))", (json.dumps(ids),))
            except sqlite3.OperationalError:
                c.executemany("UPDATE samples SET sent = 1 WHERE id = ? AND sent = 0",
                              ((i,) for i in ids))

    def kept_local(self) -> int:
        """Rows kept here only (``influx.send = "summaries"``: the raw rows, never sent)."""
        (n,), = self._query(f"SELECT count(*) FROM samples WHERE sent = {LOCAL_ONLY}")
        return n

    def backlog(self) -> tuple[int, datetime | None]:
        """Unsent rows and since when they have waited: the time of the oldest raw row waiting,
        else the end of the oldest waiting hourly summary's hour, else the end of the oldest
        daily row's day, else the oldest row's time. A summary is dated at its hour's (day's)
        start and rewritten while it grows: the summary of the hour in progress, waiting for
        the next push, would seem to have waited since the hour began. An end still to come
        means "now" to the caller (``status`` caps it)."""
        n, raw, hours, days, any_ = self._query(
            "SELECT count(*), min(CASE WHEN r.measurement NOT IN (?, ?) THEN s.time_ns END),"
            " min(CASE WHEN r.measurement = ? THEN s.time_ns END) + ?,"
            " min(CASE WHEN r.measurement = ? THEN s.time_ns END) + ?, min(s.time_ns) FROM samples s"
            " INDEXED BY samples_outbox JOIN series r ON r.id = s.series_id WHERE s.sent = 0",
            (HOURLY, DAILY, HOURLY, 3600 * 10**9, DAILY, 86400 * 10**9))[0]
        oldest = next((t for t in (raw, hours, days, any_) if t is not None), None)
        return n, (from_ns(oldest) if oldest is not None else None)

    # -- the alert outbox (agent/jobs/alerts.py) --------------------------------------------
    def alerts_put(self, rows: Iterable[tuple[str, str, str, str, str, tuple[str, ...]]],
                   now_ns: int) -> int:
        """Queue alerts, each once per channel: rows of (id, channel, about, event, alert JSON,
        events it replaces). A row already there (made before, on this run or another) stays
        as it is. A new one marks the still-queued rows of the same channel and thing whose
        events it replaces as replaced. Returns how many were new."""
        new = 0
        with self._tx() as c:
            for ident, channel, about, event, text, replaces in rows:
                cur = c.execute("INSERT OR IGNORE INTO alerts (id, channel, about, event, alert,"
                                " made_ns) VALUES (?, ?, ?, ?, ?, ?)",
                                (ident, channel, about, event, text, now_ns))
                if cur.rowcount != 1:
                    continue
                new += 1
                for old in replaces:
                    c.execute("UPDATE alerts SET state = ?, done_ns = ?, note = ? WHERE channel = ?"
                              " AND about = ? AND event = ? AND state = ?",
                              (ALERT_REPLACED, now_ns, f"replaced by {event}", channel, about, old,
                               ALERT_QUEUED))
        return new

    def alerts_due(self, channel: str, now_ns: int, limit: int = 20) -> list[tuple[str, str, int]]:
        """(id, alert JSON, attempts so far) of the channel's queued alerts due now, oldest first."""
        return [(i, a, int(n)) for i, a, n in self._query(
            "SELECT id, alert, attempts FROM alerts WHERE channel = ? AND state = ? AND"
            " next_ns <= ? ORDER BY made_ns, id LIMIT ?", (channel, ALERT_QUEUED, now_ns, limit))]

    def alerts_next(self, now_ns: int) -> int | None:
        """When the earliest queued alert of any channel may be tried (ns), None when none waits."""
        row = self._query("SELECT min(next_ns) FROM alerts WHERE state = ?", (ALERT_QUEUED,))
        return row[0][0] if row else None

    def alert_done(self, ident: str, channel: str, state: int, now_ns: int, note: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE alerts SET state = ?, done_ns = ?, attempts = attempts + 1, note = ?"
                      " WHERE id = ? AND channel = ?", (state, now_ns, note[:300], ident, channel))

    def alert_later(self, ident: str, channel: str, next_ns: int, note: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE alerts SET attempts = attempts + 1, next_ns = ?, note = ? WHERE"
                      " id = ? AND channel = ?", (next_ns, note[:300], ident, channel))

    def alerts_try_now(self, channels: Iterable[str], now_ns: int) -> int:
        """Make the channels' queued alerts that wait for a retry due now (the line is back);
        returns how many."""
        keys = list(channels)
        if not keys:
            return 0
        with self._tx() as c:
            return c.execute(f"UPDATE alerts SET next_ns = ? WHERE state = ? AND next_ns > ? AND"
                             f" channel IN ({', '.join('?' * len(keys))})",
                             (now_ns, ALERT_QUEUED, now_ns, *keys)).rowcount

    def alerts_by_state(self) -> dict[str, dict[int, int]]:
        """channel -> state -> how many alerts."""
        out: dict[str, dict[int, int]] = {}
        for channel, state, n in self._query(
                "SELECT channel, state, count(*) FROM alerts GROUP BY channel, state"):
            out.setdefault(channel, {})[int(state)] = int(n)
        return out

    def alerts_recent(self, limit: int = 20) -> list[tuple[str, str, int, int, int | None, str]]:
        """(channel, event, state, attempts, done_ns, note) of the newest alerts."""
        return [tuple(r) for r in self._query(  # type: ignore[misc]
            "SELECT channel, event, state, attempts, done_ns, note FROM alerts"
            " ORDER BY made_ns DESC, id LIMIT ?", (limit,))]

    def alerts_abouts(self, events: Iterable[str], since_ns: int) -> set[str]:
        """What the alerts of ``events`` made since ``since_ns`` were about (episode ids)."""
        ev = list(events)
        marks = ", ".join("?" * len(ev))
        return {a for (a,) in self._query(
            f"SELECT DISTINCT about FROM alerts WHERE made_ns >= ? AND event IN ({marks})",
            (since_ns, *ev))}

    def alerts_settle_others(self, channels: list[str], now_ns: int) -> int:
        """Expire the queued alerts of channels no longer configured; returns how many."""
        marks = ", ".join("?" * len(channels))
        with self._tx() as c:
            return c.execute(
                f"UPDATE alerts SET state = ?, done_ns = ?, note = 'the channel is no longer"
                f" configured' WHERE state = ? AND channel NOT IN ({marks})",
                (ALERT_EXPIRED, now_ns, ALERT_QUEUED, *channels)).rowcount

    def alerts_prune(self, before_ns: int) -> int:
        """Forget alerts settled (sent, replaced, refused, expired) before ``before_ns``."""
        with self._tx() as c:
            return c.execute("DELETE FROM alerts WHERE state != ? AND done_ns < ?",
                             (ALERT_QUEUED, before_ns)).rowcount

    # -- reading ----------------------------------------------------------------------------
    def get_state(self, key: str) -> str | None:
        if key in self._pending.state:
            return self._pending.state[key]  # written, but still waiting for the disk
        row = self._query("SELECT value FROM state WHERE key = ?", (key,))
        return row[0][0] if row else None

    def latest(self, measurement: str) -> list[Sample]:
        """The newest sample of every series of ``measurement``."""
        rows = self._query(
            "SELECT s.time_ns, r.measurement, r.tags, s.fields FROM series r JOIN samples s"
            " ON s.id = (SELECT id FROM samples WHERE series_id = r.id ORDER BY time_ns DESC LIMIT 1)"
            " WHERE r.measurement = ?", (measurement,))
        return [_sample(m, t, f, ns) for ns, m, t, f in rows]

    def samples(self, measurement: str, since: datetime | None = None) -> Iterator[Sample]:
        rows = self._query(
            "SELECT s.time_ns, r.measurement, r.tags, s.fields FROM samples s JOIN series r"
            " ON r.id = s.series_id WHERE r.measurement = ? AND s.time_ns >= ? ORDER BY s.time_ns",
            (measurement, to_ns(since) if since else 0))
        return (_sample(m, t, f, ns) for ns, m, t, f in rows)

    def episodes(self, since: datetime | None = None, type: str | None = None) -> list[Episode]:
        """Episodes that ended after ``since`` (or are in progress), oldest first."""
        sql = "SELECT id, type, cause, start_ns, end_ns, duration_s, sustained, details FROM episodes"
        sql += " WHERE (end_ns IS NULL OR end_ns >= ?)"
        args: list = [to_ns(since) if since else 0]
        if type:
            sql += " AND type = ?"
            args.append(type)
        rows = self._query(sql + " ORDER BY start_ns", tuple(args))
        return [Episode(id=i, type=t, cause=c, start=from_ns(s), end=from_ns(e) if e is not None else None,
                        duration_s=d, sustained=bool(u), details=json.loads(x))
                for i, t, c, s, e, d, u, x in rows]

    def count(self) -> int:
        """Samples in the store."""
        return self._query("SELECT count(*) FROM samples")[0][0]

    def size_bytes(self) -> int:
        """Bytes used by data (file size less free pages; the WAL not included)."""
        (pc,), = self._query("PRAGMA page_count")
        (fc,), = self._query("PRAGMA freelist_count")
        (ps,), = self._query("PRAGMA page_size")
        return (pc - fc) * ps

    def file_bytes(self) -> int:
        return sum(os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal")) if os.path.exists(p))

    # -- housekeeping -----------------------------------------------------------------------
    def prune(self, now: datetime, retention_s: float, max_bytes: int) -> dict[str, int]:
        """Drop raw samples older than ``retention_s``, then the oldest raw samples until the data
        fits in ``max_bytes``. Returns counts; unsent rows dropped (waiting, or set aside because
        the server refused them) are added to the state counter ``dropped_unsent`` so nothing
        disappears without a trace."""
        keep = tuple(KEEP_FOREVER)
        marks = ",".join("?" * len(keep))
        raw = f"series_id NOT IN (SELECT id FROM series WHERE measurement IN ({marks}))"
        cutoff = to_ns(now) - int(retention_s * 1e9)
        out = {"expired": 0, "over_size": 0, "dropped_unsent": 0}
        with self._tx() as c:
            (newest,) = c.execute(f"SELECT max(time_ns) FROM samples WHERE time_ns < ? AND {raw}",
                                  (cutoff, *keep)).fetchone()
            n = c.execute(
                f"SELECT count(*) FROM samples WHERE sent IN (0, 2) AND time_ns < ? AND {raw}",
                (cutoff, *keep)).fetchone()[0]
            self._note_pruned(c, newest)
            out["expired"] = c.execute(f"DELETE FROM samples WHERE time_ns < ? AND {raw}",
                                       (cutoff, *keep)).rowcount
            c.execute("DELETE FROM quarantine WHERE time_ns < ?", (cutoff,))
            # lines of rows no longer waiting (quarantined, kept here only, rewritten, deleted)
            c.execute("DELETE FROM outbox_lines WHERE sample_id NOT IN"
                      " (SELECT id FROM samples INDEXED BY samples_outbox WHERE sent = 0)")
            self._count_dropped(c, n)  # in the deleting transaction: never deleted uncounted
            out["dropped_unsent"] += n
        batch = max(500, self.count() // 100)  # small steps: stop close to the cap, not far below
        while self.size_bytes() > max_bytes:
            with self._tx() as c:
                got = c.execute(f"SELECT id, time_ns FROM samples WHERE {raw} ORDER BY time_ns"
                                " LIMIT ?", (*keep, batch)).fetchall()
                if not got:
                    break
                ids = [r[0] for r in got]
                self._note_pruned(c, got[-1][1])
                qs = ",".join("?" * len(ids))
                n = c.execute(
                    f"SELECT count(*) FROM samples WHERE sent IN (0, 2) AND id IN ({qs})", ids).fetchone()[0]
                out["over_size"] += c.execute(f"DELETE FROM samples WHERE id IN ({qs})", ids).rowcount
                c.execute(f"DELETE FROM outbox_lines WHERE sample_id IN ({qs})", ids)
                self._count_dropped(c, n)
                out["dropped_unsent"] += n
        return out

    def _note_pruned(self, c: sqlite3.Connection, newest_ns: int | None) -> None:
        """Keep (state ``raw_pruned_through``) the time of the newest raw row ever deleted: an
        hour up to it may have lost rows, so its summary is no longer recomputed from them."""
        if newest_ns is None:
            return
        row = c.execute("SELECT value FROM state WHERE key = ?", (STATE_PRUNED,)).fetchone()
        if row is None or int(row[0]) < newest_ns:
            c.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                      " SET value = excluded.value", (STATE_PRUNED, str(newest_ns)))

    def _count_dropped(self, c: sqlite3.Connection, n: int) -> None:
        """Add ``n`` to the state counter ``dropped_unsent`` inside the open transaction ``c``
        (and to a value still waiting in memory, which would otherwise overwrite it)."""
        if not n:
            return
        row = c.execute("SELECT value FROM state WHERE key = 'dropped_unsent'").fetchone()
        value = str(int(self._pending.state.get("dropped_unsent") or (row[0] if row else 0) or 0) + n)
        c.execute("INSERT INTO state (key, value) VALUES ('dropped_unsent', ?) ON CONFLICT (key)"
                  " DO UPDATE SET value = excluded.value", (value,))
        if "dropped_unsent" in self._pending.state:
            self._pending.state["dropped_unsent"] = value

    # -- plumbing ---------------------------------------------------------------------------
    def _tx(self):
        return _Tx(self)

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                raise _convert(exc, self.path) from exc


class _Tx:
    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        if self.store.readonly:
            raise StoreError(f"{self.store.path}: opened read-only")
        self.store._lock.acquire()
        try:
            self.store._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            self.store._lock.release()
            raise _convert(exc, self.store.path) from exc
        return self.store._conn

    def __exit__(self, et, ev, tb) -> bool:
        conn = self.store._conn
        try:
            if et is None:
                conn.execute("COMMIT")
            else:
                conn.execute("ROLLBACK")
                self.store._series.clear()  # ids made in the rolled-back transaction are gone
        except sqlite3.DatabaseError as exc:
            if et is None:
                # A failed COMMIT (disk full) leaves the transaction open: end it, so the next
                # write can begin again.
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.DatabaseError:
                        pass
                self.store._series.clear()
                raise _convert(exc, self.store.path) from exc
        finally:
            self.store._lock.release()
        if isinstance(ev, sqlite3.DatabaseError):
            raise _convert(ev, self.store.path) from ev
        return False


def _drop_oldest_raw(samples: list, n: int) -> int:
    """Drop the ``n`` oldest samples that retention would also drop (raw rounds, pings,
    metrics), in place; rows of measurements kept for ever (a closed outage's ``outage`` row)
    are never dropped, so a long full disk costs measurements, never an episode. Returns how
    many were dropped."""
    drop = set()
    for i, s in enumerate(samples):
        if len(drop) == n:
            break
        if s.measurement not in KEEP_FOREVER:
            drop.add(i)
    samples[:] = [s for i, s in enumerate(samples) if i not in drop]
    return len(drop)


def move_aside(path: Path, now: datetime) -> Path:
    """Rename a damaged database (and its WAL and shared-memory files) to ``*.corrupt-<UTC time>``
    so that nothing is deleted and a new store can start at ``path``."""
    aside = path.with_name(f"{path.name}.corrupt-{now.strftime('%Y%m%dT%H%M%SZ')}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            src.rename(Path(f"{aside}{suffix}"))
    return aside


def _connect(path: Path) -> sqlite3.Connection:
    new = not path.exists()
    for p in (path, Path(f"{path}-wal")):
        if p.exists() and not os.access(p, os.R_OK | os.W_OK):
            raise StoreError(f"{p}: cannot be written by this user: run the agent "
                             "as the file's owner, or give it back: chown USER " + str(p))
    if new:
        # Create the file ourselves so it is 0600 whatever the umask.
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    conn = None
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise StoreError(f"{path}: made by a newer linewatch (schema {version}, this one knows "
                             f"{SCHEMA_VERSION}); upgrade linewatch or use another state_dir")
        conn.executescript(SCHEMA)
        if version < SCHEMA_VERSION:
            # 1 -> 2: the outbox index is by time now; the quarantine table came with the schema.
            conn.execute("DROP INDEX IF EXISTS samples_unsent")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("SELECT count(*) FROM samples").fetchone()
        return conn
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()  # a damaged file is moved aside next: no handle may stay on it
        raise _convert(exc, path) from exc


def _convert(exc: sqlite3.DatabaseError, path: Path) -> StoreError:
    if _is_corruption(exc):
        return StoreCorrupt(f"{path}: damaged database ({exc})")
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(_UNWRITABLE):
        return StoreUnwritable(f"{path}: {exc}", str(exc))
    return StoreError(f"{path}: {exc}")


def damaged_message(path: Path, exc: BaseException) -> str:
    """One line for a damaged store: the path, SQLite's words and what to do."""
    return (f"{path}: the store is damaged (SQLite: {exc}); nothing was changed. "
            "Starting the agent (`linewatch run`) moves it aside and keeps every row it can still "
            f"read; to keep a copy of the file as it is now first: cp {path} {path}.copy")


def _dumps(d: Mapping) -> str:
    return json.dumps(dict(d), separators=(",", ":"), ensure_ascii=False)


def _sample(measurement: str, tags: str, fields: str, time_ns: int) -> Sample:
    return Sample(measurement, json.loads(tags), json.loads(fields), from_ns(time_ns))
