"""The store file's format: what the agent writes (agent/store.py) and what every reader of a
store file checks before it trusts one (kit/storefile.py: the collector, the line report).

* ``series``     one row per (measurement, tags): tags stored once, not with every sample.
* ``samples``    one row per measurement (``fields`` a JSON object), ``sent`` = forwarded.
* ``episodes``   outage and power episodes, open (``end_ns`` NULL) or closed.
* ``quarantine`` rows the server refused, with its answer.
* ``outbox_lines`` the line-protocol field set of an unsent row, made when the row was written
  (only while a server is configured), so a flush after a long outage sends without encoding;
  a row without one is encoded when it is sent. Dropped once the row is sent. A line counts
  only for the row of its id, series and time (a row deleted and its id used again never
  takes a stale line). Optional: stores made before it have none.
* ``state``      the agent's small durable facts (heartbeat, forward state, ...).
* ``alerts``     the alert outbox: one row per alert and channel, ``state`` queued (0), sent
  (1), replaced by a later alert about the same thing before it was sent (2), refused by the
  channel (3) or expired (4). Optional: stores made before it have none.
"""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import quote

SCHEMA_VERSION = 2  # 2: quarantine table, outbox index by time
DB_NAME = "linewatch.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    tags TEXT NOT NULL,
    UNIQUE (measurement, tags)
);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    time_ns INTEGER NOT NULL,
    series_id INTEGER NOT NULL REFERENCES series(id),
    fields TEXT NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS samples_outbox ON samples (time_ns, id) WHERE sent = 0;
CREATE INDEX IF NOT EXISTS samples_series_time ON samples (series_id, time_ns);
CREATE TABLE IF NOT EXISTS episodes (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    cause TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER,
    duration_s REAL NOT NULL,
    sustained INTEGER NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS episodes_start ON episodes (start_ns);
CREATE TABLE IF NOT EXISTS quarantine (
    sample_id INTEGER PRIMARY KEY,
    time_ns INTEGER NOT NULL,
    status INTEGER,
    message TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_lines (
    sample_id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    field_set TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT NOT NULL,
    channel TEXT NOT NULL,
    about TEXT NOT NULL,
    event TEXT NOT NULL,
    alert TEXT NOT NULL,
    made_ns INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ns INTEGER NOT NULL DEFAULT 0,
    done_ns INTEGER,
    note TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (id, channel)
);
"""


def table_definitions() -> dict[str, str]:
    """Each table of the schema as SQLite keeps its definition (``sqlite_master.sql``): what a
    store made by any version of the agent holds (schema 1 had no quarantine table), for a
    reader that must check a file before it trusts it (kit.storefile)."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.executescript(SCHEMA)
        return dict(mem.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    finally:
        mem.close()


def sqlite_uri(path: str | os.PathLike[str], query: str) -> str:
    """A ``file:`` URI naming exactly ``path``, with ``query`` (``mode=ro``, ``immutable=1``).
    What a URI reads in a file name is quoted (a file named ``%2e%2e%2fpwn.db`` is that file, not
    ``../pwn.db``; ``?`` and ``#`` are part of the name), and the path is made absolute behind an
    empty authority, so a path starting ``//`` is not read as a host name."""
    p = os.fspath(path)
    if not os.path.isabs(p):
        p = os.path.join(os.getcwd(), p)
    return f"file://{quote(p)}?{query}"
