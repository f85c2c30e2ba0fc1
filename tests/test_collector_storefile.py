"""A volunteer's store file is untrusted: kit/storefile.py against files made by hand.

Real SQLite files crafted here (tests/hostile.py), read by the StoreFile reader and by the real
``linewatch-collector aggregate`` and ``report`` commands. A file is either refused whole (counted
as ``unreadable_store``, named, the others read on) or turned into records and counted rejections;
never a traceback, and never more than a bounded time and memory. Last, a property test feeds the
reader generated files near the agent's own.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings, strategies as st

from agent.report import line as cline
from agent.store import DB_NAME, Store
from collector.stats import Settings, aggregate
from collector.storefile import read_stores
from kit.errors import SourceError
from kit.records import Dataset, Episode, ObsHour, PingDay, SpeedTest
from kit.storefile import StoreFile
from tests import hostile
from tests.fleet import fleet_start
from tests.hostile import NS, combine, craft, line, tags

BIN = Path(sys.executable).parent
START = fleet_start(3)
END = START + 2 * 86400
DAY = [datetime.fromtimestamp(START + k * 86400, UTC).strftime("%Y-%m-%d") for k in range(3)]
WINDOW = ["--since", DAY[0], "--until", DAY[2]]


def _read(*paths):
    errors: list[SourceError] = []
    ds, q = read_stores(list(paths), START, END, on_error=errors.append)
    return ds, q, errors


def _records(ds: Dataset) -> dict:
    return {"obs": sorted(ds.obs, key=repr), "episodes": sorted(ds.episodes, key=repr),
            "pings": sorted(ds.pings, key=repr), "speeds": sorted(ds.speeds, key=repr)}


@pytest.fixture
def good(tmp_path):
    """One agent's ordinary file."""
    return craft(tmp_path / "good.db", **line("good", START, 30))


# ---------------------------------------------------------------- schema: refused before any read

def test_the_generated_column_bomb_is_refused_at_once(tmp_path, good):
    evil = hostile.bomb(tmp_path / "evil.db", START)
    t0 = time.monotonic()
    ds, q, errors = _read(good, evil)
    assert time.monotonic() - t0 < 5
    assert q.rejected == {"unreadable_store": 1}
    assert [str(e) for e in errors] == [f"store {evil}: refused: samples.fields is a generated column"]
    assert q.unreadable == [str(errors[0])]
    assert _records(ds) == _records(_read(good)[0])


@pytest.mark.parametrize("name", list(hostile.SCHEMAS), ids=list(hostile.SCHEMAS))
def test_a_schema_the_agent_never_makes_is_refused(tmp_path, good, name):
    schema, words = hostile.SCHEMAS[name]
    evil = craft(tmp_path / f"{name}.db", schema=schema, **line("evil", START, 30, first_id=10))
    t0 = time.monotonic()
    ds, q, errors = _read(good, evil)
    assert time.monotonic() - t0 < 5
    assert q.rejected == {"unreadable_store": 1}, name
    (err,) = errors
    assert str(err).startswith(f"store {evil}: refused: ") and words in str(err), str(err)
    assert {o.unit.agent for o in ds.obs} == {"good"}


def test_stores_of_every_schema_version_are_read(tmp_path):
    """Schema 1 (before the quarantine table; its outbox index by id, and the time index of the
    first release) and a file with only the three tables the figures need are the agent's own."""
    v1 = hostile.agent_schema(
        quarantine="", samples_outbox="CREATE INDEX samples_unsent ON samples (id) WHERE sent = 0")
    v1 += "CREATE INDEX samples_time ON samples (time_ns);\n"
    bare = hostile.agent_schema(quarantine="", state="", samples_outbox="", samples_series_time="",
                                episodes_start="")
    for name, schema in (("v1", v1), ("bare", bare)):
        f = craft(tmp_path / f"{name}.db", schema=schema, **line(name, START, 30))
        ds, q, errors = _read(f)
        assert errors == [] and q.rejected == {}, name
        assert sum(o.observed_s for o in ds.obs) == 30 * 3600


def test_the_agents_own_store_is_read(tmp_path):
    from agent.model import Sample

    st_ = Store.open(tmp_path / "state")
    t0 = datetime.fromtimestamp(START, UTC)
    st_.write([Sample("round", tags("a1"), {"status": "up", "online": 1, "interval_s": 60.0},
                      t0 + timedelta(minutes=k)) for k in range(120)])
    st_.close()
    ds, q, errors = _read(tmp_path / "state" / DB_NAME)
    assert errors == [] and q.rejected == {} and sum(o.observed_s for o in ds.obs) == 7200


# ---------------------------------------------------------------- rows: records or counted rejections

ROUND, PING, SPEED = 1, 2, 3
T = (START + 7200) * NS
LATE = (START + 40 * 3600) * NS     # after the 30 hours of the line's own rows


def _with(rows: dict, *, series=(), samples=(), episodes=()) -> dict:
    return {"series": list(rows["series"]) + list(series),
            "samples": list(rows["samples"]) + list(samples),
            "episodes": list(rows["episodes"]) + list(episodes)}


DEEP = "[" * 100_000 + "]" * 100_000
BAD_ROWS = {
    # name: (extra rows, {reason: count})
    "fields_not_json": (dict(samples=[(T, ROUND, "{not json"), (T, PING, "{"), (T, SPEED, "[1,")]),
                        {"bad_json": 3}),
    "fields_not_an_object": (dict(samples=[(T, ROUND, "[1, 2]"), (T, PING, 7), (T, SPEED, None)]),
                             {"bad_json": 3}),
    "fields_nested_deep": (dict(samples=[(T, ROUND, '{"a":' + DEEP + "}")]), {"bad_json": 1}),
    "fields_a_blob": (dict(samples=[(T, ROUND, b'{"interval_s": 60}')]), {"bad_json": 1}),
    "interval_not_a_number": (dict(samples=[(T, ROUND, {"interval_s": "abc"}),
                                            (T, ROUND, {"interval_s": None}),
                                            (T, ROUND, {"interval_s": True}),
                                            (T, ROUND, {"status": "up"})]), {"absurd_observed": 4}),
    # An hour of whole-number intervals only: SQLite's sum() of two would overflow; each is
    # beyond an hour anyway, so neither is summed.
    "interval_overflows_a_sum": (dict(samples=[(LATE, ROUND, {"interval_s": 2**63 - 1}),
                                               (LATE + 1, ROUND, {"interval_s": 2**63 - 1})]),
                                 {"absurd_observed": 2}),
    "loss_not_a_number": (dict(samples=[(T, PING, {"loss_pct": "0", "rtt_avg_ms": 20}),
                                        (T, PING, {"rtt_avg_ms": 20})]), {"missing_value": 2}),
    "speed_not_a_number": (dict(samples=[(T, SPEED, {"status": "ok", "download_bps": "fast"})]),
                           {"missing_value": 1}),
    "time_a_real": (dict(samples=[(float(T), ROUND, {"interval_s": 60.0})]), {"bad_time": 1}),
    "time_text_or_null": (dict(samples=[("abc", ROUND, {"interval_s": 60.0}),
                                        (None, PING, {"loss_pct": 0.0}),
                                        (b"\x00", SPEED, {"status": "ok"})]), {"bad_time": 3}),
    "duration_text": (dict(episodes=[("e1", "power", "ac_lost", T, T + 60 * NS, "abc")]),
                      {"missing_value": 1}),
    "duration_null": (dict(episodes=[("e2", "connectivity", "isp", T, T + 60 * NS, None)]),
                      {"missing_value": 1}),
    "episode_start_a_real": (dict(episodes=[("e3", "power", "ac_lost", float(T), T + NS, 1.0)]),
                             {"bad_time": 1}),
    "episode_cause_not_text": (dict(episodes=[("e4", "power", 5, T, T + NS, 1.0)]),
                               {"missing_value": 1}),
    "tags_not_json": (dict(series=[(9, "round", "{agent")],
                           samples=[(T, 9, {"interval_s": 60.0})]), {"bad_tags": 1}),
    "tags_nested_deep": (dict(series=[(9, "ping", '{"agent":"bad","role":' + DEEP + "}")],
                              samples=[(T, 9, {"loss_pct": 0.0})]), {"bad_tags": 1}),
    "tags_not_strings": (dict(series=[(9, "round", {"agent": "bad", "region": {"x": 1}})],
                              samples=[(T, 9, {"interval_s": 60.0})]), {"bad_tags": 1}),
    "tags_too_long": (dict(series=[(9, "round", {"agent": "bad", "city": "x" * 20_000})],
                           samples=[(T, 9, {"interval_s": 60.0})]), {"bad_tags": 1}),
    "tags_a_number": (dict(series=[(9, "speedtest", 12)],
                           samples=[(T, 9, {"status": "ok", "download_bps": 1e7})]),
                      {"bad_tags": 1}),
}


@pytest.mark.parametrize("kind", list(BAD_ROWS), ids=list(BAD_ROWS))
def test_each_malformed_row_is_a_counted_rejection(tmp_path, good, kind):
    extra, want = BAD_ROWS[kind]
    clean_rows = line("vol", START, 30)
    ok = craft(tmp_path / "ok.db", **clean_rows)
    bad = craft(tmp_path / "bad.db", **_with(clean_rows, **extra))
    ds, q, errors = _read(good, bad)
    assert errors == []
    assert dict(q.rejected) == want
    base, _, _ = _read(good, ok)
    assert _records(ds) == _records(base)


def test_a_file_failing_mid_read_is_counted_and_the_others_go_on(tmp_path, good):
    """The schema is intact, the rows' pages are not: the failure comes during the read."""
    broken = craft(tmp_path / "broken.db", **line("broken", START, 60, first_id=10))
    size = broken.stat().st_size
    with open(broken, "r+b") as f:
        f.seek(size // 2 // 4096 * 4096)
        f.write(b"\xff" * 4096 * 4)
    ds, q, errors = _read(good, broken)
    assert q.rejected == {"unreadable_store": 1}
    assert str(errors[0]).startswith(f"store {broken}: ")
    assert _records(ds) == _records(_read(good)[0])


def test_reading_one_file_is_bounded_in_time(tmp_path):
    big = craft(tmp_path / "big.db", **line("slow", START, 40, round_s=1))
    with pytest.raises(SourceError, match=r"store .*big.db: reading took longer than 0.05 s"):
        StoreFile.open(big, time_limit_s=0.05).read(START, END)
    t0 = time.monotonic()
    _, _q, errors = _read(big)
    assert errors == [] and time.monotonic() - t0 < 10


def test_a_file_larger_than_the_cap_is_refused(tmp_path, monkeypatch):
    from kit import storefile

    f = craft(tmp_path / "large.db", **line("large", START, 2))
    monkeypatch.setattr(storefile, "MAX_STORE_BYTES", 1000)
    with pytest.raises(SourceError, match="larger than"):
        StoreFile.open(f)


def test_names_from_the_file_are_shown_harmless(tmp_path):
    """A refusal quotes what the file calls things; control characters never reach a terminal."""
    schema = hostile.agent_schema() + 'CREATE TABLE "x\x1b[2J\x07" (a);\n'
    f = craft(tmp_path / "esc.db", schema=schema)
    _, _q, errors = _read(f)
    assert "\x1b" not in str(errors[0]) and "\\x1b[2J" in str(errors[0])


# ---------------------------------------------------------------- one agent per file

def _five_agents(path: Path) -> Path:
    parts = [line(f"fake{k}", START, 30 - k, first_id=10 * k + 1, site=f"s{k}") for k in range(5)]
    return craft(path, **combine(*parts))


def test_a_file_is_one_agents_the_others_rows_are_refused(tmp_path):
    ds, q, errors = _read(_five_agents(tmp_path / "five.db"))
    assert errors == []
    assert {o.unit.agent for o in ds.obs} | {p.unit.agent for p in ds.pings} \
        | {s.unit.agent for s in ds.speeds} | {e.unit.agent for e in ds.episodes} == {"fake0"}
    # The others' rounds, pings and speed tests; episodes carry no tags: they are the file's.
    rows = sum((30 - k) * (60 + 60 + 1) for k in range(1, 5))
    assert q.rejected == {"foreign_agent": rows}
    assert len(ds.episodes) == 5
    assert sum(o.observed_s for o in ds.obs) == 30 * 3600


def test_the_agent_of_a_file_does_not_depend_on_the_window(tmp_path):
    """The most rounds over the whole file decide, not over the window read."""
    late = line("late", START + 20 * 3600, 10, first_id=10)
    early = line("early", START - 30 * 86400, 40)
    f = craft(tmp_path / "two.db", **combine(early, late))
    ds, q, _ = _read(f)
    assert ds.obs == () and q.rejected["foreign_agent"] > 0


def test_the_agents_id_changing_inside_a_file_keeps_the_most_watched(tmp_path):
    before = line("old-id", START, 20)
    after = line("new-id", START + 20 * 3600, 4, first_id=10)
    ds, q, _ = _read(craft(tmp_path / "renamed.db", **combine(before, after)))
    assert {o.unit.agent for o in ds.obs} == {"old-id"}
    assert q.rejected["foreign_agent"] == 4 * 121


# ---------------------------------------------------------------- the real commands

def run_measured(*args, cwd=None):
    """Run a command; (returncode, stdout, stderr, wall seconds, peak RSS in MB). The command is
    started from a small Python of its own, so its peak is its own, not this test's (the time
    between fork and exec counts in the child's)."""
    shim = ("import json, os, subprocess, sys, time\n"
            "t = time.monotonic()\n"
            "p = subprocess.Popen(sys.argv[1:])\n"
            "_, status, ru = os.wait4(p.pid, 0)\n"
            "print(json.dumps([os.waitstatus_to_exitcode(status), time.monotonic() - t,"
            " ru.ru_maxrss / 1024]), file=open(os.environ['MEASURE_OUT'], 'w'))\n")
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        p = subprocess.run([sys.executable, "-c", shim, str(BIN / args[0]), *map(str, args[1:])],
                           capture_output=True, text=True, cwd=cwd, timeout=600,
                           env={**os.environ, "MEASURE_OUT": out.name})
        rc, wall, rss = json.loads(Path(out.name).read_text())
    return rc, p.stdout, p.stderr, wall, rss


@pytest.fixture
def volunteers(tmp_path):
    """Six volunteers' files of one region and ISP: one published cell; and a config."""
    files = [craft(tmp_path / f"vol{k}" / DB_NAME, **line(f"v{k}", START, 30)) for k in range(6)]
    cfg = tmp_path / "c.toml"
    cfg.write_text("[collector]\nbootstrap = 100\n")
    return files, cfg


def _aggregate(cfg, stores, *extra):
    args = ["linewatch-collector", "aggregate", "--config", cfg, *WINDOW, "--format", "json", *extra]
    for s in stores:
        args += ["--store", s]
    rc, out, err, wall, rss = run_measured(*args)
    assert rc == 0 and "Traceback" not in err, err
    return json.loads(out), err, wall, rss


@pytest.mark.parametrize("payload", ["issue", "json"])
def test_the_commands_refuse_the_bomb_quickly_and_go_on(tmp_path, volunteers, payload):
    files, cfg = volunteers
    evil = hostile.bomb(tmp_path / "evil.db", START,
                        payload=hostile.BOMB if payload == "issue" else hostile.BOMB_JSON)
    want, _, _, _ = _aggregate(cfg, files)
    cells, err, wall, rss = _aggregate(cfg, [*files, evil])
    assert wall < 20 and rss < 300, (wall, rss)
    assert cells == want and not cells[0]["suppressed"]
    assert f"warning: store {evil}: refused: samples.fields is a generated column" in err
    assert "unreadable_store 1" in err
    page = tmp_path / "r.html"
    args = ["linewatch-collector", "report", "--config", cfg, *WINDOW, "--out", page]
    rc, out, err, wall, rss = run_measured(*args, *[a for f in [*files, evil] for a in ("--store", f)])
    assert rc == 0 and wall < 20 and rss < 300, (rc, wall, rss, err)
    assert "1 cell(s) shown" in out and str(evil) in err
    html = page.read_text()
    assert "unreadable_store" in html and f"{evil}" in html


def test_bad_rows_leave_the_other_files_cells_as_they_were(tmp_path, volunteers):
    """A file of nothing but bad rows beside good files: the good files' cells are as without it,
    and each kind of bad row is counted."""
    files, cfg = volunteers
    rows = line("bad", START, 30)
    samples = [(t, sid, "{oops") for t, sid, _ in rows["samples"]]                 # bad_json
    samples += [(float(T), ROUND, {"interval_s": 60.0}), ("abc", PING, {"loss_pct": 0.0})]  # bad_time
    samples += [(T, ROUND, {"interval_s": "abc"})]                               # absurd_observed
    samples += [(T, PING, {"rtt_avg_ms": 20})]                                     # missing_value
    samples += [(T, 9, {"interval_s": 60.0})]                                      # bad_tags
    episodes = [("e1", "power", "ac_lost", T, T + 60 * NS, "abc"),                 # missing_value
                ("e2", "connectivity", "isp", T, T + 60 * NS, None)]
    bad = craft(tmp_path / "bad.db", series=rows["series"] + [(9, "round", "{agent")],
                samples=samples, episodes=episodes)
    want, _, _, _ = _aggregate(cfg, files)
    cells, err, _, _ = _aggregate(cfg, [*files, bad])
    assert cells == want
    quality = next(x for x in err.splitlines() if x.startswith("data quality:"))
    for reason in ("absurd_observed 1", "bad_json 3630", "bad_time 2", "bad_tags 1", "missing_value 3"):
        assert reason in quality, quality
    assert "unreadable_store" not in quality


def test_five_agents_in_one_file_make_no_cell(tmp_path):
    """One store file carrying five agent ids once made a published cell (agents: 5)."""
    five = _five_agents(tmp_path / "five.db")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[collector]\nbootstrap = 100\n")
    cells, err, _, _ = _aggregate(cfg, [five])
    (cell,) = cells
    assert cell["suppressed"] and cell["suppressed_reason"] == "min_agents"
    assert "foreign_agent" in err


def test_check_names_the_files_agent_and_refusals(tmp_path):
    five = _five_agents(tmp_path / "five.db")
    evil = hostile.bomb(tmp_path / "evil.db", START)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[collector]\n")
    rc, out, err, wall, _ = run_measured("linewatch-collector", "check", "--config", cfg,
                                         "--store", five, "--store", evil)
    assert rc == 1 and wall < 20 and "Traceback" not in err
    lines = {line.split()[0] + " " + line.split(None, 2)[2] for line in out.splitlines()}
    assert any(x.startswith(f"WARN {five}: agent fake0, PK-PB") and "4 other agent id(s)" in x
               for x in lines), out
    assert f"FAIL store {evil}: refused: samples.fields is a generated column" in lines, out


def test_the_line_report_refuses_the_bomb_in_one_line(tmp_path):
    """`linewatch report` reads the worker's own store: a clear line, no traceback."""
    state = tmp_path / "state"
    state.mkdir()
    hostile.bomb(state / DB_NAME, START)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\nid = "evil"\nstate_dir = "{state}"\n')
    rc, _out, err, wall, rss = run_measured("linewatch", "report", "--config", cfg, "--since",
                                           DAY[0], "--until", DAY[2], "--out", tmp_path / "l.html")
    assert rc == 1 and wall < 20 and rss < 300, (rc, wall, rss, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "generated column" in err


def test_the_line_report_reads_past_malformed_rows(tmp_path):
    rows = line("me", START, 30)
    extra = {"samples": [], "episodes": []}
    for kind, (more, _) in BAD_ROWS.items():
        if kind == "interval_overflows_a_sum":
            continue
        extra["samples"] += [r for r in more.get("samples", ()) if r[1] in (ROUND, PING, SPEED)]
        extra["episodes"] += list(more.get("episodes", ()))
    f = craft(tmp_path / "state" / DB_NAME, **_with(rows, **extra))
    page = cline.summarise(f, START, END, END + 3600)
    assert page["observed_h"] == 30 and page["power_cuts"] == 1 and page["outages"] == 0


# ---------------------------------------------------------------- paths are not URIs

@pytest.mark.parametrize("name", ["%2e%2e%2fpwn.db", "a?mode=rw.db", "b#frag.db", "c%00.db"])
def test_a_store_path_is_never_read_as_a_uri(tmp_path, name):
    """A file literally named ``%2e%2e%2fpwn.db`` is that file, not ``../pwn.db``."""
    sub = tmp_path / "sub"
    craft(tmp_path / "pwn.db", **line("pwned", START, 2))
    craft(tmp_path / "sub" / "pwn.db", **line("pwned", START, 2))
    mine = craft(sub / name, **line("mine", START, 3))
    ds, _q, errors = _read(mine)
    assert errors == [] and {o.unit.agent for o in ds.obs} == {"mine"}
    # The agent's own commands open the store of a state dir with such a name.
    state = tmp_path / name.replace(".db", "")
    state.mkdir()
    shutil.copy(mine, state / DB_NAME)
    st_ = Store.open_readonly(state, live=False)
    assert st_.get_state("x") is None
    st_.close()
    page = cline.summarise(state / DB_NAME, START, END, END + 3600)
    assert page["agent"] == "mine"


def test_paths_with_two_leading_slashes_open(tmp_path):
    """POSIX keeps a leading ``//``; as a URI it would be read as a host name."""
    craft(tmp_path / "state" / DB_NAME, **line("slashes", START, 2))
    twice = "/" + str(tmp_path / "state")
    _, _q, errors = _read(Path(twice) / DB_NAME)
    assert errors == []
    Store.open_readonly(twice, live=False).close()
    from agent.salvage import salvage

    dst = sqlite3.connect(":memory:")
    dst.executescript(hostile.agent_schema())
    out = salvage(Path(twice) / DB_NAME, dst)
    assert out["samples"]["kept"] > 0 and out["samples"]["lost"] == 0


# ---------------------------------------------------------------- any file: records or counts

TEXT = st.text(max_size=12)


def _mostly(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """``good`` four times in five: the files stay near the agent's, so rows get through to
    records and the bad values land beside them. (``one_of`` would draw each half the time.)"""
    return st.integers(0, 4).flatmap(lambda i: bad if i == 4 else good)


# Any value SQLite can hold, in any column: NULL, numbers at the ends of their range, text that
# looks like a number, blobs, a string past the 1 MiB limit, JSON nested deeper than any parser's
# recursion.
ANY = st.one_of(
    st.none(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False), TEXT,
    st.binary(max_size=16), st.sampled_from(["NaN", "inf", "-inf", "1e999", "abc", ""]),
    st.integers(0, 1_100_000).map(lambda k: "x" * k),
    st.integers(0, 5000).map(lambda d: '{"a":' + "[" * d + "]" * d + "}"))
# What a JSON value can be in fields or tags; Python writes NaN and Infinity, which JSON has not.
JSON_ANY = st.one_of(st.integers(-2**63, 2**63 - 1), st.floats(), st.none(), st.booleans(), TEXT,
                     st.sampled_from([2**64, -2**80, 1e308, "NaN", "Infinity"]),
                     st.just({"x": [1]}))
GOOD_NS = st.integers(START * NS, END * NS - 1)
SCHEMA = _mostly(st.none(), st.sampled_from([s for s, _ in hostile.SCHEMAS.values()]))
GOOD_FIELDS = {
    "round": st.fixed_dictionaries({"status": st.sampled_from(["up", "down"]),
                                    "interval_s": st.sampled_from([10.0, 60])}),
    "ping": st.fixed_dictionaries({"sent": st.just(3), "received": st.integers(0, 3),
                                   "loss_pct": st.sampled_from([0.0, 33.3, 100.0]),
                                   "rtt_avg_ms": st.floats(0.1, 900)}),
    "speedtest": st.fixed_dictionaries({"status": st.sampled_from(["ok", "error"]),
                                        "download_bps": st.floats(1e5, 1e9),
                                        "upload_bps": st.floats(1e5, 1e9)}),
}
# One change to a good file: a whole column's value, one key of a row's fields, or one tag.
CHANGE = st.tuples(st.sampled_from(["series", "samples", "episodes"]), st.integers(0, 99),
                   st.integers(0, 5), st.sampled_from(["column", "key", "key"]),
                   st.sampled_from(["interval_s", "rtt_avg_ms", "loss_pct", "status",
                                    "download_bps", "upload_bps", "agent", "region", "role",
                                    "site"]), ANY, JSON_ANY)


@st.composite
def store_files(draw):
    """An agent's file (one or two agent ids, rounds, pings, speed tests, episodes in the
    window), then up to eight changes to it, or none; now and then a schema it must refuse."""
    series = []
    for k, agent in enumerate(draw(st.sampled_from([("a1",), ("a1", "a2")]))):
        t = {"agent": agent, "region": "PK-PB", "isp": "PTCL", "site": f"s{k}"}
        series += [(3 * k + 1, "round", t), (3 * k + 2, "ping", {**t, "role": "internet"}),
                   (3 * k + 3, "speedtest", t)]
    samples = []
    for _ in range(draw(st.integers(0, 40))):
        sid, measurement, _t = draw(st.sampled_from(series))
        samples.append((draw(GOOD_NS), sid, draw(GOOD_FIELDS[measurement])))
    episodes = draw(st.lists(st.tuples(
        st.text(min_size=1, max_size=8), st.sampled_from(["power", "connectivity", "agent_gap"]),
        st.sampled_from(["ac_lost", "host_down", "isp", "lan", "dns"]), GOOD_NS,
        st.one_of(st.none(), GOOD_NS), st.floats(0, 86400)), max_size=6,
        unique_by=lambda e: e[0]))
    tables = {"series": [list(r) for r in series], "samples": [list(r) for r in samples],
              "episodes": [list(r) for r in episodes]}
    for table, row, col, how, key, value, json_value in draw(st.lists(CHANGE, max_size=8)):
        rows = tables[table]
        if not rows:
            continue
        r = rows[row % len(rows)]
        i = {"series": 2, "samples": 2}.get(table) if how == "key" else None
        if i is not None and isinstance(r[i], dict):
            r[i] = {**r[i], key: json_value}
        else:
            r[col % len(r)] = value
    state = draw(st.lists(st.tuples(st.sampled_from(["isp_auto", "site_auto", "x"]), ANY),
                          max_size=3, unique_by=lambda s: s[0]))
    return dict(schema=draw(SCHEMA), state=state, **{k: [tuple(r) for r in v]
                                                     for k, v in tables.items()})


def _typed(ds: Dataset) -> None:
    """Every record has the types its consumers rely on."""
    def num(v):
        return isinstance(v, float)

    for o in ds.obs:
        assert type(o) is ObsHour and isinstance(o.hour, int) and o.hour % 3600 == 0 and num(o.observed_s)
    for e in ds.episodes:
        assert type(e) is Episode and e.type in ("power", "connectivity") and isinstance(e.cause, str)
        assert num(e.start) and math.isfinite(e.start) and num(e.duration_s) and len(e.cause) <= 64
    for p in ds.pings:
        assert type(p) is PingDay and isinstance(p.day, int) and p.rounds > 0
    for s in ds.speeds:
        assert type(s) is SpeedTest and num(s.time) and num(s.download_bps)
    for rec in (*ds.obs, *ds.episodes, *ds.pings, *ds.speeds):
        assert all(isinstance(getattr(rec.unit, k), str) for k in ("agent", "region", "isp", "site"))


FIGURES = Settings(bootstrap=100, min_agents=1, min_watch_h=0)


def _absurd_interval(interval_s: float) -> dict:
    """A file hypothesis found breaking the line report: one round whose interval_s is absurd,
    beside an open connectivity outage (its evidence is read half a round earlier)."""
    tags = {"agent": "a1", "region": "PK-PB", "isp": "PTCL", "site": "s0"}
    t = 1_796_256_000_000_000_000
    return dict(schema=None, state=[],
                series=[(None, "round", tags), (2, "ping", {**tags, "role": "internet"}),
                        (3, "speedtest", tags)],
                samples=[(t, 1, {"status": "up", "interval_s": interval_s})],
                episodes=[("0", "power", "ac_lost", t, None, 0.0),
                          ("00", "connectivity", "ac_lost", t, None, 0.0)])


@settings(max_examples=400, deadline=5000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(store_files())
@example(_absurd_interval(3.595386269724632e+299))
@example(_absurd_interval(22039256074.0))
def test_any_file_gives_records_or_counted_rejections(spec):
    with tempfile.TemporaryDirectory() as d:
        try:
            path = craft(Path(d) / DB_NAME, **spec)
        except sqlite3.Error:
            event("not written")
            return          # a file SQLite itself would not write (a duplicate key)
        t0 = time.monotonic()
        ds, q, errors = _read(path)
        event("refused whole" if errors else "records" if any(_records(ds).values())
              else "no records")
        for reason in q.rejected:
            event(f"rejected: {reason}")
        assert time.monotonic() - t0 < 5
        assert all(v >= 0 for v in q.rejected.values())
        assert len(errors) == q.rejected.get("unreadable_store", 0) <= 1
        _typed(ds)
        assert len({r.unit.agent for r in (*ds.obs, *ds.pings, *ds.speeds, *ds.episodes)}) <= 1
        # The figures take whatever the reader passes on (an infinite hour, a huge duration).
        r = aggregate(ds, FIGURES, now=END, source_quality=q)
        json.dumps(r)
        try:
            page = cline.summarise(path, START, END, END + 3600)
        except SourceError:
            pass
        else:
            json.dumps(page)
