"""Copy every row that a damaged store still gives up into a new one.

Only ``linewatch run`` calls this, after it moved the damaged file aside (:func:`agent.store.
move_aside`). Tables go in order of value: episodes (the worker's evidence) first, then the
agent's state, then the series and samples, then the quarantine and the alert outbox. Each table
is read in rowid order; where a read fails (a damaged page), the reader skips forward in growing
steps until rows come again, and the rows it could not read are counted as lost (by rowid span,
an upper bound).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from kit.storeschema import sqlite_uri

# (table, columns) in the order they are saved.
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("episodes", ("id", "type", "cause", "start_ns", "end_ns", "duration_s", "sustained", "details")),
    ("state", ("key", "value")),
    ("series", ("id", "measurement", "tags")),
    ("samples", ("id", "time_ns", "series_id", "fields", "sent")),
    ("quarantine", ("sample_id", "time_ns", "status", "message", "line")),
    # the alert outbox: what was sent is not sent again, what waited still goes
    ("alerts", ("id", "channel", "about", "event", "alert", "made_ns", "state", "attempts",
                "next_ns", "done_ns", "note")),
)
CHUNK = 2000
MAX_SKIP = 1 << 40


def salvage(damaged: Path, dst: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Copy what can be read from ``damaged`` into ``dst`` (an empty store's connection).
    Returns ``{table: {"kept": n, "lost": m}}``; a table that cannot be read at all has
    ``"lost": -1`` (unknown)."""
    out: dict[str, dict[str, int]] = {}
    # No log beside it: nothing else writes the moved file, so read it as immutable (creates no
    # -wal or -shm); with a log (the agent died mid-write), read through it.
    mode = "mode=ro" if Path(f"{damaged}-wal").exists() else "immutable=1"
    try:
        src = sqlite3.connect(sqlite_uri(damaged, mode), uri=True, timeout=5)
    except sqlite3.Error:
        return {t: {"kept": 0, "lost": -1} for t, _ in TABLES}
    try:
        series_kept: set[int] = set()
        for table, cols in TABLES:
            kept = lost = 0
            insert = (f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) "
                      f"VALUES ({', '.join('?' * len(cols))})")
            try:
                rows_iter = _readable_rows(src, table, cols)
                for batch, skipped in rows_iter:
                    lost += skipped
                    if table == "samples":
                        ok = [r for r in batch if r[2] in series_kept]
                        lost += len(batch) - len(ok)
                        batch = ok
                    dst.executemany(insert, batch)
                    kept += len(batch)
                    if table == "series":
                        series_kept.update(r[0] for r in batch)
            except _Unreadable as exc:
                # a table the damaged file's version never had (the outbox, before alerts)
                # lost nothing
                out[table] = {"kept": kept, "lost": 0 if "no such table" in str(exc) else -1}
                continue
            out[table] = {"kept": kept, "lost": lost}
    finally:
        src.close()
    return out


class _Unreadable(Exception):
    """The table cannot be read at all (its schema or root page is gone)."""


def _readable_rows(src: sqlite3.Connection, table: str, cols: tuple[str, ...]):
    """Yield ``(rows, skipped)`` chunks: rows read in rowid order, and how many rowids were
    passed over because reading them failed."""
    sel = f"SELECT rowid, {', '.join(cols)} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?"
    try:
        (top,), = src.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchall()
    except sqlite3.Error:
        top = None  # the b-tree's right edge is damaged: read on until skipping finds nothing
    last, skip = -(1 << 62), 1
    while True:
        try:
            rows = src.execute(sel, (last, CHUNK)).fetchall()
        except sqlite3.Error:
            rows = _one_by_one(src, table, cols, last)
            if rows is None:
                if last == -(1 << 62):
                    try:
                        src.execute(f"SELECT rowid FROM {table} LIMIT 1").fetchall()
                    except sqlite3.Error as exc:
                        raise _Unreadable(str(exc)) from exc
                    last = 0
                # Step over the damaged part in growing strides.
                if skip > MAX_SKIP or (top is not None and last >= top):
                    return
                start = last
                last += skip
                skip *= 2
                yield [], (min(last, top) - start if top is not None else 0)
                continue
        if not rows:
            return
        skip = 1
        last = rows[-1][0]
        yield [r[1:] for r in rows], 0


def _one_by_one(src, table, cols, last):
    """After a failed chunk: the rows readable singly just after ``last`` (None: not even one)."""
    sel = f"SELECT rowid, {', '.join(cols)} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT 1"
    rows = []
    for _ in range(CHUNK):
        try:
            r = src.execute(sel, (last,)).fetchall()
        except sqlite3.Error:
            break
        if not r:
            break
        rows.append(r[0])
        last = r[0][0]
    return rows or None


def salvage_summary(tables: dict) -> tuple[str, int, int]:
    """("kept 12 episodes, 3400 samples, ...; lost about 200 samples", kept, lost) from
    :func:`salvage`'s counts; -1 (a table unreadable) shows as "all"."""
    kept = sum(t["kept"] for t in tables.values())
    lost = sum(max(t["lost"], 0) for t in tables.values())
    parts = [f"{t['kept']} {name}" for name, t in tables.items() if name in ("episodes", "samples")]
    gone = [("all " if t["lost"] < 0 else f"at most {t['lost']} ") + name
            for name, t in tables.items() if t["lost"]]
    text = "kept " + ", ".join(parts) + f" ({kept} rows in all); "
    text += ("lost " + ", ".join(gone)) if gone else "nothing lost"
    return text, kept, lost
