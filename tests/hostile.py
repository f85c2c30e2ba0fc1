"""Store files as someone other than the agent could make them: the agent's schema or a changed
one, and any value of any type in any column (stdlib only; the tests and bench/hostile_store.py
use it).

:func:`craft` writes a file from plain rows, values exactly as given (SQLite keeps whatever type it
is handed, whatever the column's declared type). :func:`line` makes the rows of one agent that
watched a line normally, to put beside bad ones. :data:`SCHEMAS` are the changed schemas a reader
must refuse, each one statement away from the agent's own.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from kit.storeschema import SCHEMA as _SCHEMA

NS = 1_000_000_000
# The payload of the store that once took 77 s and 7.3 GB: every read of samples.fields builds a
# 300 MB string. BOMB_JSON wraps it in valid JSON, so a reader's json_extract gets through every
# row instead of failing at the first.
BOMB = "printf('%.*c', 300000000, 'x')"
BOMB_JSON = "printf('{\"interval_s\":10,\"pad\":\"%.*c\"}', 300000000, 'x')"


def agent_schema(**replace: str) -> str:
    """The agent's schema with statements replaced by table or index name:
    ``samples="CREATE TABLE ..."``; an empty string leaves the statement out."""
    out = []
    for stmt in _SCHEMA.split(";"):
        stmt = stmt.strip()
        if not stmt:
            continue
        name = re.match(r"CREATE (?:TABLE|INDEX) (?:IF NOT EXISTS )?(\w+)", stmt).group(1)
        stmt = replace.get(name, stmt)
        if stmt:
            out.append(stmt)
    return ";\n".join(out) + ";\n"


SAMPLES_WITH = ("CREATE TABLE samples (id INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, "
                "series_id INTEGER NOT NULL REFERENCES series(id), {fields}, "
                "sent INTEGER NOT NULL DEFAULT 0)")

# What a reader must refuse: name -> (schema, words the refusal names).
SCHEMAS: dict[str, tuple[str, str]] = {
    "generated_virtual": (agent_schema(samples=SAMPLES_WITH.format(
        fields=f"fields TEXT GENERATED ALWAYS AS ({BOMB}) VIRTUAL")), "generated column"),
    "generated_stored": (agent_schema(samples=SAMPLES_WITH.format(
        fields="fields TEXT GENERATED ALWAYS AS ('{}') STORED")), "generated column"),
    "default_expression": (agent_schema(samples=SAMPLES_WITH.format(
        fields=f"fields TEXT NOT NULL DEFAULT ({BOMB})")), "samples.fields"),
    "wrong_type": (agent_schema(samples=SAMPLES_WITH.format(fields="fields BLOB NOT NULL")),
                   "samples.fields"),
    "extra_column": (agent_schema(samples=SAMPLES_WITH.format(
        fields="fields TEXT NOT NULL, extra TEXT")), "samples"),
    "missing_column": (agent_schema(samples=SAMPLES_WITH.format(fields="notes TEXT")),
                       "samples"),
    "view": (agent_schema() + "CREATE VIEW recent AS SELECT * FROM samples "
             "WHERE length(printf('%.*c', 300000000, 'x')) > 0;\n", "view"),
    "view_for_a_table": (agent_schema(samples="", samples_outbox="", samples_series_time="")
                         + "CREATE VIEW samples AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                         "SELECT i + 1 FROM n) SELECT i AS id, i AS time_ns, 1 AS series_id, "
                         "'{}' AS fields, 0 AS sent FROM n;\n", "view"),
    "trigger": (agent_schema() + "CREATE TRIGGER t AFTER DELETE ON samples BEGIN "
                "DELETE FROM series; END;\n", "trigger"),
    "virtual_table": (agent_schema() + "CREATE VIRTUAL TABLE notes USING fts4(body);\n",
                      "virtual table"),
    "expression_index": (agent_schema() + "CREATE INDEX by_status ON samples "
                         "(json_extract(fields, '$.status'));\n", "expression"),
    "extra_table": (agent_schema() + "CREATE TABLE notes (body TEXT);\n", "notes"),
}


def craft(path: str | os.PathLike, *, schema: str | None = None, series: Iterable[Sequence] = (),
          samples: Iterable[Sequence] = (), episodes: Iterable[Sequence] = (),
          state: Iterable[Sequence] = ()) -> Path:
    """A store file at ``path`` with ``schema`` (default: the agent's) and these rows, each value
    stored as it is given. Rows: series (id, measurement, tags), samples (time_ns, series_id,
    fields), episodes (id, type, cause, start_ns, end_ns, duration_s), state (key, value). A tags
    or fields value that is a dict is written as the agent writes it (JSON); anything else as is.

    A declared schema is no guarantee to a reader: the tables are made without NOT NULL and
    without type affinity, filled, then given their declared text back through
    ``writable_schema``. That is how anyone with a hex editor or SQLite's shell gets a NULL or a
    text into an INTEGER NOT NULL column."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.exists():
        p.unlink()
    schema = schema if schema is not None else agent_schema()
    conn = sqlite3.connect(p)
    try:
        # Generated columns are made cheap while the rows go in (SQLite may compute them then).
        loose = re.sub(r"GENERATED ALWAYS AS \((.*)\) (VIRTUAL|STORED)",
                       r"GENERATED ALWAYS AS ('{}') \2", schema)
        loose = re.sub(r"\bNOT NULL\b", "", loose)
        # BLOB: no type affinity, so 5 stays a number in a TEXT column and 1.5e18 a real in an
        # INTEGER one (INTEGER PRIMARY KEY stays: it is the row id).
        conn.executescript(re.sub(r"\b(INTEGER|TEXT|REAL)\b(?!\s+PRIMARY)", "BLOB", loose))

        def js(v):
            return json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else v

        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                             " AND sql NOT LIKE 'CREATE VIRTUAL%'")}
        conn.executemany("INSERT INTO series (id, measurement, tags) VALUES (?, ?, ?)",
                         [(i, m, js(t)) for i, m, t in series])
        if "samples" not in tables:
            samples = ()
        elif "GENERATED" in (schema or "") or "fields" not in _columns(conn, "samples"):
            conn.executemany("INSERT INTO samples (time_ns, series_id) VALUES (?, ?)",
                             [(t, s) for t, s, _f in samples])
        else:
            conn.executemany("INSERT INTO samples (time_ns, series_id, fields) VALUES (?, ?, ?)",
                             [(t, s, js(f)) for t, s, f in samples])
        conn.executemany("INSERT INTO episodes (id, type, cause, start_ns, end_ns, duration_s,"
                         " sustained, details) VALUES (?, ?, ?, ?, ?, ?, 1, '{}')",
                         list(episodes))
        if "state" in tables:
            conn.executemany("INSERT INTO state (key, value) VALUES (?, ?)", list(state))
        conn.commit()
        conn.execute("PRAGMA writable_schema = ON")
        for name, sql in _declared(schema):
            conn.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                         (sql, name))
        conn.commit()
    finally:
        conn.close()
    return p


def _declared(schema: str) -> list[tuple[str, str]]:
    """(name, text as SQLite keeps it) of the schema's tables."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.executescript(schema)
        return mem.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        mem.close()


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_xinfo({table})")]


def tags(agent: str, **more: str) -> dict:
    return {"agent": agent, "region": "PK-PB", "isp": "PTCL", "city": "Lahore", "site": agent,
            **more}


def line(agent: str, start: int, hours: int, *, first_id: int = 1, round_s: int = 60,
         **tag: str) -> dict:
    """The rows of one agent that watched for ``hours`` from ``start`` (s since 1970): a round
    and an internet ping every ``round_s``, one speed test an hour, one power cut. Keyword
    arguments of :func:`craft`; ids from ``first_id``."""
    t = tags(agent, **tag)
    rid, pid, sid = first_id, first_id + 1, first_id + 2
    series = [(rid, "round", t), (pid, "ping", {**t, "role": "internet", "target": "192.0.2.1"}),
              (sid, "speedtest", t)]
    samples = []
    for k in range(hours * 3600 // round_s):
        ns = (start + k * round_s) * NS
        samples.append((ns, rid, {"status": "up", "online": 1, "interval_s": float(round_s)}))
        samples.append((ns + NS, pid, {"sent": 3, "received": 3, "loss_pct": 0.0,
                                       "rtt_avg_ms": 20.0 + k % 7}))
        if k % (3600 // round_s) == 0:
            samples.append((ns + 2 * NS, sid, {"status": "ok", "download_bps": 2e7,
                                               "upload_bps": 5e6}))
    cut = (start + 3600) * NS
    episodes = [(f"{agent}-cut", "power", "ac_lost", cut, cut + 600 * NS, 600.0)]
    return {"series": series, "samples": samples, "episodes": episodes}


def combine(*parts: dict) -> dict:
    out: dict[str, list] = {"series": [], "samples": [], "episodes": []}
    for p in parts:
        for k in out:
            out[k] += list(p.get(k, ()))
    return out


def bomb(path: str | os.PathLike, start: int, *, payload: str = BOMB, hours: int = 8,
         agent: str = "evil") -> Path:
    """The small store whose samples.fields is generated by ``payload``: ``hours`` rounds, pings
    and speed tests from ``start`` (s since 1970), a few kilobytes on disk."""
    schema = agent_schema(samples=SAMPLES_WITH.format(
        fields=f"fields TEXT GENERATED ALWAYS AS ({payload}) VIRTUAL"))
    return craft(path, schema=schema, **line(agent, start, hours, round_s=3600))
