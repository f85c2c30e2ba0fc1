"""The collector reads the agents' hourly summaries (kit.hourly), from a real InfluxDB 1.6.7 and
from real store files, and falls back to raw rows only for agents (or hours) without them.

The summaries are made with kit.hourly.summarise from the very raw rows the synthetic fleet
writes (tests/hourlyfleet.py), so both paths must give the same records: observed hours and
episodes exactly, daily latency within the histogram's 2 %, loss equal.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict

import pytest

from agent.model import Sample
from agent.store import Store
from collector.cache import Cache
from collector.influxql import Reader, agents_condition, regex_literal
from collector.stats import Settings, aggregate
from collector.storefile import read_stores
from kit.influx import HTTP
from kit.lineproto import line
from tests import hourlyfleet
from tests.fleet import Fleet

START = 1_793_232_000          # 2026-10-29 00:00 UTC
DAY = 86400
S = Settings(bootstrap=100, min_agents=1, min_watch_h=0)


@pytest.fixture(scope="module")
def fleet():
    return Fleet(agents=8, days=3, start=START, round_s=120, seed=21)


def _read(server, db, start, end, cache=None, now=None):
    http = HTTP(server.url, timeout_s=60)
    try:
        reader = Reader(http, db)
        ds, q = reader.read(start, end, cache, now)
        return ds, q, reader
    finally:
        http.close()


def _db(server, name):
    server.query(f'CREATE DATABASE "{name}"', db="")
    return name


def _obs(ds):
    out = defaultdict(float)
    for o in ds.all_obs():
        out[(o.unit, o.hour)] += o.observed_s
    return dict(out)


def _episodes(ds):
    return sorted((e.unit, e.type, e.cause, e.start, e.duration_s) for e in ds.all_episodes())


def _assert_same(raw, summ):
    """Observed hours and episodes exactly, latency within 2 %, loss and rounds equal."""
    a, b = _obs(raw), _obs(summ)
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-12), k
    assert _episodes(raw) == _episodes(summ)
    pa = {(p.unit, p.day): p for p in list(raw.all_pings())}
    pb = {(p.unit, p.day): p for p in list(summ.all_pings())}
    assert pa.keys() == pb.keys() and pa
    for k, p in pa.items():
        s = pb[k]
        assert s.rtt_p50_ms == pytest.approx(p.rtt_p50_ms, rel=0.02), k
        assert s.rtt_p95_ms == pytest.approx(p.rtt_p95_ms, rel=0.02), k
        assert s.loss_pct == pytest.approx(p.loss_pct, rel=1e-9, abs=1e-9), k
        assert (s.rounds, s.rtt_min_ms, s.rtt_max_ms) == (p.rounds, p.rtt_min_ms, p.rtt_max_ms)


def _summaries(fleet, agents=None, from_hour=None):
    out = []
    for i in range(fleet.n) if agents is None else agents:
        out += hourlyfleet.hourly_samples(fleet, i, (from_hour or {}).get(i, 0.0))
    return out


def _store(fleet, i, path, from_hour=0.0, summaries=True):
    fleet.write_store(i, path)
    if summaries:
        s = Store.open(path)
        try:
            s.write(hourlyfleet.hourly_samples(fleet, i, from_hour))
        finally:
            s.close()
    return path / "linewatch.db"


# ---------------------------------------------------------------- the query text (pure)

def test_agent_regex_matches_exactly_the_names_given():
    assert regex_literal(["a.b", "c/d", "e"]) == r"/^(?:a\.b|c\/d|e)$/"
    assert agents_condition([], exclude=True) == ""
    assert agents_condition(["x"], exclude=True) == ' AND "agent" !~ /^(?:x)$/'


# ---------------------------------------------------------------- (a) same fleet, both ways

def test_influx_summaries_give_what_raw_rows_give(influx, fleet):
    fleet.write_influx(influx.url, "linewatch")
    both = _db(influx, "both")
    fleet.write_influx(influx.url, both)
    hourlyfleet.write_influx(influx.url, both, hourlyfleet.lines(_summaries(fleet)))
    raw, rq, _ = _read(influx, "linewatch", fleet.start, fleet.end)
    summ, sq, _ = _read(influx, both, fleet.start, fleet.end)
    assert dict(rq.rejected) == dict(sq.rejected) == {}
    _assert_same(raw, summ)
    assert {o.source for o in raw.all_obs()} == {"raw"} and {o.source for o in summ.all_obs()} == {"hourly"}
    # every agent wrote summaries: no raw query reads any agent's rows
    r = aggregate(summ, S, now=fleet.end, source_quality=sq)
    assert r["data_quality"]["read"] == {
        "agents_from_summaries": fleet.n, "agent_hours_from_summaries": len(_obs(summ)),
        "agents_from_raw_rows": 0, "agent_hours_from_raw_rows": 0}


def test_store_summaries_give_what_raw_rows_give(fleet, tmp_path):
    raw_files = [_store(fleet, i, tmp_path / f"raw{i}", summaries=False) for i in range(fleet.n)]
    files = [_store(fleet, i, tmp_path / f"both{i}") for i in range(fleet.n)]
    raw, rq = read_stores(raw_files, fleet.start, fleet.end)
    summ, sq = read_stores(files, fleet.start, fleet.end)
    assert dict(rq.rejected) == dict(sq.rejected) == {}
    _assert_same(raw, summ)
    assert {o.source for o in summ.all_obs()} == {"hourly"}


# ---------------------------------------------------------------- (b) a mixed fleet

OLD = (0, 1, 2)                 # agents of an older version: raw rows only
UPGRADED = {4: START + DAY + 7 * 3600}   # summaries from day 2, 07:00 UTC on


def _mixed(fleet):
    new = [i for i in range(fleet.n) if i not in OLD]
    return _summaries(fleet, new, UPGRADED)


def _check_mixed(raw, mixed, q, fleet):
    _assert_same(raw, mixed)
    old = {fleet.specs[i].agent for i in OLD}
    up = {fleet.specs[i].agent for i in UPGRADED}
    by_source = defaultdict(set)
    for o in mixed.all_obs():
        by_source[o.source].add(o.unit.agent)
        if o.unit.agent in up:
            assert (o.source == "raw") == (o.hour < UPGRADED[4]), o
    assert by_source["raw"] == old | up
    assert by_source["hourly"] == {s.agent for s in fleet.specs} - old
    r = aggregate(mixed, S, now=fleet.end, source_quality=q)
    raw_hours = sum(1 for o in mixed.all_obs() if o.source == "raw")
    assert r["data_quality"]["read"] == {
        "agents_from_summaries": fleet.n - len(old), "agent_hours_from_summaries":
            len(list(mixed.all_obs())) - raw_hours,
        "agents_from_raw_rows": len(old | up), "agent_hours_from_raw_rows": raw_hours}
    return r


def test_influx_mixed_fleet_reads_old_agents_from_raw_rows(influx, fleet):
    fleet.write_influx(influx.url, "linewatch")
    mixed = _db(influx, "mixed")
    fleet.write_influx(influx.url, mixed)
    hourlyfleet.write_influx(influx.url, mixed, hourlyfleet.lines(_mixed(fleet)))
    raw, _, _ = _read(influx, "linewatch", fleet.start, fleet.end)
    got, q, _ = _read(influx, mixed, fleet.start, fleet.end)
    assert dict(q.rejected) == {}
    _check_mixed(raw, got, q, fleet)


def test_store_mixed_fleet_reads_old_agents_from_raw_rows(fleet, tmp_path):
    raw_files = [_store(fleet, i, tmp_path / f"raw{i}", summaries=False) for i in range(fleet.n)]
    files = [_store(fleet, i, tmp_path / f"m{i}", UPGRADED.get(i, 0.0), summaries=i not in OLD)
             for i in range(fleet.n)]
    raw, _ = read_stores(raw_files, fleet.start, fleet.end)
    got, q = read_stores(files, fleet.start, fleet.end)
    assert dict(q.rejected) == {}
    r = _check_mixed(raw, got, q, fleet)
    from collector.output import quality_lines
    assert any("agents from raw rows" in line for line in quality_lines(r["data_quality"]))


# ---------------------------------------------------------------- (c) raw rows of a summary agent

def _corrupt_lines(fleet, i):
    """Round and ping rows of agent i that would change its figures if they were read."""
    tags = fleet.specs[i].tags
    ping = {**tags, "role": "internet", "target": "9.9.9.9"}
    out = []
    for h in range(0, 3 * 24, 5):
        t = (fleet.start + h * 3600 + 1801) * 10**9
        out.append(line("round", tags, {"status": "up", "interval_s": 9000.0}, t))
        out.append(line("round", tags, {"status": "up", "interval_s": 3599.0}, t + 10**9))
        out.append(line("ping", ping, {"rtt_avg_ms": 59999.0, "loss_pct": 50.0}, t))
    return ("\n".join(out) + "\n").encode()


def test_influx_never_reads_a_summary_agents_raw_rows(influx, fleet):
    db = _db(influx, "c")
    fleet.write_influx(influx.url, db)
    hourlyfleet.write_influx(influx.url, db, hourlyfleet.lines(_summaries(fleet)))
    before, q0, r0 = _read(influx, db, fleet.start, fleet.end)
    hourlyfleet.write_influx(influx.url, db, _corrupt_lines(fleet, 4))
    after, q1, r1 = _read(influx, db, fleet.start, fleet.end)
    assert dict(q1.rejected) == dict(q0.rejected) == {}
    assert _obs(after) == _obs(before)
    assert sorted(map(repr, list(after.all_pings()))) == sorted(map(repr, list(before.all_pings())))
    assert r1.queries == r0.queries
    # the same rows of an agent without summaries are read, and counted
    db2 = _db(influx, "c2")
    fleet.write_influx(influx.url, db2, agents=[4])
    hourlyfleet.write_influx(influx.url, db2, _corrupt_lines(fleet, 4))
    _, q2, _ = _read(influx, db2, fleet.start, fleet.end)
    assert q2.rejected["absurd_observed"] > 0


def test_store_never_reads_a_summary_agents_raw_rows(fleet, tmp_path):
    path = _store(fleet, 4, tmp_path / "a")
    before, q0 = read_stores([path], fleet.start, fleet.end)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE samples SET fields = '{\"interval_s\": 9000, \"rtt_avg_ms\": 59999,"
                     " \"loss_pct\": 50}' WHERE series_id IN (SELECT id FROM series WHERE"
                     " measurement IN ('round', 'ping'))")
    conn.close()
    after, q1 = read_stores([path], fleet.start, fleet.end)
    assert dict(q1.rejected) == dict(q0.rejected) == {}
    assert _obs(after) == _obs(before) and list(after.all_pings()) == list(before.all_pings())


# ---------------------------------------------------------------- (d) hostile summaries

TAGS = {"agent": "h", "region": "PK-SD", "isp": "PTCL"}
H = START + 10 * 3600


def _good(**extra):
    f = {"observed_s": 3600.0, "rounds": 360, "ping_rounds": 3, "loss_pct_sum": 0.0,
         "rtt_min_ms": 20.0, "rtt_max_ms": 20.0, "rtt_count": 3, "rtt_h200": 3,
         "summary_version": 1}
    f.update(extra)
    return f


HOSTILE = [  # (hour offset, fields, reason)
    (1, _good(observed_s=-5.0), "bad_summary"),
    (2, _good(observed_s=7200.0), "bad_summary"),
    (3, _good(rtt_h202=2.5), "bad_histogram"),                 # not a whole count
    (4, _good(rtt_h203=-3, rtt_count=0), "bad_histogram"),
    (5, _good(rtt_count=7), "bad_histogram"),
    (6, _good(rtt_h201=5, rtt_count=8), "bad_histogram"),      # more RTTs than answered rounds
]


def test_hostile_summary_rows_in_influx_are_counted(influx):
    lines = [hourlyfleet.lines([Sample("hourly", TAGS, f, _dt(H + k * 86400))])
             for k, f, _ in HOSTILE]
    lines.append(hourlyfleet.lines([Sample("hourly", TAGS, _good(), _dt(H))]))
    lines.append(f"hourly,agent=h,region=PK-SD observed_s=60 {(H + 30) * 10**9}\n".encode())
    hourlyfleet.write_influx(influx.url, "linewatch", b"".join(lines))
    ds, q, _ = _read(influx, "linewatch", START, START + 8 * DAY)
    # InfluxDB sums a day's histogram on the server: a bad row rejects its agent-day's latency
    assert dict(q.rejected) == {"bad_summary": 2, "bad_histogram": 4, "bad_time": 1}
    assert sorted(o.hour for o in ds.all_obs()) == [H + k * 86400 for k in (0, 3, 4, 5, 6)]
    assert [(p.day, p.rounds) for p in list(ds.all_pings())] == [(START + k * DAY, 3) for k in range(3)]


def test_hostile_summary_rows_in_a_store_are_counted(tmp_path):
    rows = [Sample("hourly", TAGS, f, _dt(H + k * 3600)) for k, f, _ in HOSTILE]
    rows += [Sample("hourly", TAGS, _good(), _dt(H)), Sample("hourly", TAGS, _good(), _dt(H + 30)),
             Sample("round", TAGS, {"status": "up", "interval_s": 10.0}, _dt(H - 7200))]
    s = Store.open(tmp_path / "a")
    try:
        s.write(rows)
    finally:
        s.close()
    path = tmp_path / "a" / "linewatch.db"
    conn = sqlite3.connect(path)
    with conn:
        sid, = conn.execute("SELECT id FROM series WHERE measurement = 'hourly'").fetchone()
        for k, text in enumerate(["not json", "[1, 2]", json.dumps(_good(observed_s="x")),
                                  "[" * 5000 + "]" * 5000]):
            conn.execute("INSERT INTO samples (time_ns, series_id, fields) VALUES (?, ?, ?)",
                         ((H + (10 + k) * 3600) * 10**9, sid, text))
    conn.close()
    ds, q = read_stores([path], START, START + DAY)
    assert dict(q.rejected) == {"bad_summary": 3, "bad_histogram": 4, "bad_time": 1,
                                "bad_json": 3}
    assert sorted(o.hour for o in ds.all_obs() if o.source == "hourly") == [H + k * 3600
                                                                      for k in (0, 3, 4, 5, 6)]
    assert [(p.day, p.rounds) for p in list(ds.all_pings())] == [(START, 12)]   # rows 0-2 and "x"
    # the raw round before the first summary is read from the raw rows
    assert [(o.hour, o.source) for o in ds.all_obs() if o.source == "raw"] == [(H - 7200, "raw")]


def _dt(t):
    from datetime import UTC, datetime
    return datetime.fromtimestamp(t, UTC)


# ---------------------------------------------------------------- (e) the cache

def test_a_warm_run_gives_what_a_cold_one_gives(influx, fleet, tmp_path):
    fleet.write_influx(influx.url, "linewatch")
    hourlyfleet.write_influx(influx.url, "linewatch", hourlyfleet.lines(_mixed(fleet)))
    later = fleet.end + 10 * DAY
    cache = Cache(tmp_path / "cache.db")
    try:
        cold, cq, _ = _read(influx, "linewatch", fleet.start, fleet.end, cache, later)
        warm, wq, reader = _read(influx, "linewatch", fleet.start, fleet.end, cache, later)
    finally:
        cache.close()
    assert reader.cached_days == 3
    assert sorted(map(repr, cold.all_obs())) == sorted(map(repr, warm.all_obs()))
    assert sorted(map(repr, list(cold.all_pings()))) == sorted(map(repr, list(warm.all_pings())))
    a = aggregate(cold, S, now=later, source_quality=cq)
    b = aggregate(warm, S, now=later, source_quality=wq)
    assert a["data_quality"] == b["data_quality"] and a["data_quality"]["read"]["agents_from_raw_rows"]
    assert json.dumps(a["cells"], sort_keys=True) == json.dumps(b["cells"], sort_keys=True)


# ---------------------------------------------------------------- (f) daily rows

def _daily(samples):
    return samples + hourlyfleet.daily_samples(samples)


def _pings(ds):
    return {(p.unit, p.day): p for p in list(ds.all_pings())}


def _assert_same_pings(a, b):
    """The same PingDay: the histogram is the same, so p50, p95, rounds and extremes exactly;
    the loss sum is added in another order (the agent's merge against the server's sum)."""
    pa, pb = _pings(a), _pings(b)
    assert pa.keys() == pb.keys() and pa
    for k, p in pa.items():
        s = pb[k]
        assert (s.rtt_p50_ms, s.rtt_p95_ms, s.rounds, s.rtt_min_ms, s.rtt_max_ms) == (
            p.rtt_p50_ms, p.rtt_p95_ms, p.rounds, p.rtt_min_ms, p.rtt_max_ms), k
        assert s.loss_pct == pytest.approx(p.loss_pct, rel=1e-12, abs=1e-12), k


def test_influx_daily_rows_give_what_hourly_sums_give(influx, fleet):
    fleet.write_influx(influx.url, "linewatch")
    hourly_only, daily = _db(influx, "h"), _db(influx, "d")
    fleet.write_influx(influx.url, hourly_only)
    fleet.write_influx(influx.url, daily)
    summaries = _summaries(fleet)
    hourlyfleet.write_influx(influx.url, hourly_only, hourlyfleet.lines(summaries))
    hourlyfleet.write_influx(influx.url, daily, hourlyfleet.lines(_daily(summaries)))
    raw, _, _ = _read(influx, "linewatch", fleet.start, fleet.end)
    h, hq, hr = _read(influx, hourly_only, fleet.start, fleet.end)
    d, dq, dr = _read(influx, daily, fleet.start, fleet.end)
    assert dict(hq.rejected) == dict(dq.rejected) == {}
    _assert_same_pings(h, d)
    assert _obs(h) == _obs(d)
    _assert_same(raw, d)
    # with a daily row for every agent-day, the server's hourly sums are never asked for
    assert hr.asked["hping"] >= 1 and dr.asked["hping"] == 0


def test_influx_agent_days_without_daily_rows_fall_back_to_hourly_sums(influx, fleet):
    """Agents 0-2 wrote no daily rows, agent 3 none for its second day: their latency comes from
    the server's sums of their hourly rows, the others' from their daily rows (agent 5's are
    made different, to tell which was read)."""
    summaries = _summaries(fleet)
    days = hourlyfleet.daily_samples(summaries)
    agents = [s.agent for s in fleet.specs]
    no_daily = set(agents[:3])
    keep = [s for s in days if s.tags["agent"] not in no_daily
            and not (s.tags["agent"] == agents[3] and s.time.timestamp() == START + DAY)]
    marked = [Sample(s.measurement, s.tags, {**s.fields, "loss_pct_sum": 0.0}, s.time)
              if s.tags["agent"] == agents[5] else s for s in keep]
    full, part = _db(influx, "full"), _db(influx, "part")
    hourlyfleet.write_influx(influx.url, full, hourlyfleet.lines(summaries + days))
    hourlyfleet.write_influx(influx.url, part, hourlyfleet.lines(summaries + marked))
    a, aq, _ = _read(influx, full, fleet.start, fleet.end)
    b, bq, _ = _read(influx, part, fleet.start, fleet.end)
    assert dict(aq.rejected) == dict(bq.rejected) == {}
    pa, pb = _pings(a), _pings(b)
    assert pa.keys() == pb.keys()
    fives = [k for k in pb if k[0].agent == agents[5]]
    assert fives and all(pb[k].loss_pct == 0.0 for k in fives)
    assert any(pa[k].loss_pct for k in fives)
    for k in fives:
        del pa[k], pb[k]
    for k, p in pa.items():
        s = pb[k]
        assert (s.rtt_p50_ms, s.rtt_p95_ms, s.rounds, s.rtt_min_ms, s.rtt_max_ms) == (
            p.rtt_p50_ms, p.rtt_p95_ms, p.rounds, p.rtt_min_ms, p.rtt_max_ms), k
        assert s.loss_pct == pytest.approx(p.loss_pct, rel=1e-12, abs=1e-12), k
    assert _obs(a) == _obs(b)


def test_influx_mixed_fleet_with_daily_rows(influx, fleet):
    """Old agents (raw rows), an agent upgraded mid-day (raw rows up to the end of that day),
    the others with hourly and daily rows: the same records as raw rows give."""
    fleet.write_influx(influx.url, "linewatch")
    mixed = _db(influx, "mixedd")
    fleet.write_influx(influx.url, mixed)
    hourlyfleet.write_influx(influx.url, mixed, hourlyfleet.lines(_daily(_mixed(fleet))))
    raw, _, _ = _read(influx, "linewatch", fleet.start, fleet.end)
    got, q, _ = _read(influx, mixed, fleet.start, fleet.end)
    assert dict(q.rejected) == {}
    _check_mixed(raw, got, q, fleet)


def _day(**extra):
    f = {"observed_s": 86400.0, "hours": 24, "rtt_count": 3, "ping_rounds": 3,
         "loss_pct_sum": 0.0, "rtt_min_ms": 20.0, "rtt_max_ms": 20.0, "rtt_h200": 3,
         "summary_version": 1}
    f.update(extra)
    return f


HOSTILE_DAYS = [  # (day offset, fields, reason)
    (1, _day(rtt_h202=2.5), "bad_histogram"),                 # not a whole count
    (2, _day(rtt_h203=-3, rtt_count=0), "bad_histogram"),
    (3, _day(rtt_count=7), "bad_histogram"),
    (4, _day(rtt_h201=5, rtt_count=8), "bad_histogram"),      # more RTTs than answered rounds
    (5, _day(ping_rounds=-1, rtt_count=0, rtt_h200=0), "bad_histogram"),
]


def test_hostile_daily_rows_in_influx_are_counted(influx):
    """A daily row that cannot be true is a counted rejection (its day gives no latency, and
    the server's hourly sums are not asked for instead); one not at midnight is a bad_time, and
    its day's hourly rows are summed instead."""
    rows = [Sample("daily", TAGS, f, _dt(START + k * DAY)) for k, f, _ in HOSTILE_DAYS]
    rows += [Sample("daily", TAGS, _day(), _dt(START))]
    rows += [Sample("hourly", TAGS, _good(), _dt(H + k * DAY)) for k in range(7)]
    # day 6: a daily row at 01:00, not at midnight; its hourly row gives the latency
    rows += [Sample("daily", TAGS, _day(ping_rounds=9), _dt(START + 6 * DAY + 3600))]
    hourlyfleet.write_influx(influx.url, "linewatch", hourlyfleet.lines(rows))
    ds, q, _ = _read(influx, "linewatch", START, START + 8 * DAY)
    assert dict(q.rejected) == {"bad_histogram": 5, "bad_time": 1}
    assert sorted(o.hour for o in ds.all_obs()) == [H + k * DAY for k in range(7)]
    assert [(p.day, p.rounds) for p in list(ds.all_pings())] == [(START, 3), (START + 6 * DAY, 3)]


def _packed(hours=None, buckets="200:3", **extra):
    per_hour = ["0"] * 24
    per_hour[10] = "3600"
    f = _day(observed_s=3600.0, hours=1,
             observed_hours=",".join(per_hour) if hours is None else hours, rtt_buckets=buckets)
    f.update(extra)
    return f


HOSTILE_PACKED = [  # (day offset, fields, reasons)
    (1, _packed(hours="3600," * 23 + "nan"), {"bad_summary"}),
    (2, _packed(hours=",".join(["3600"] * 23)), {"bad_summary"}),          # 23 hours
    (3, _packed(hours=",".join(["3601"] * 24)), {"bad_summary"}),          # past an hour
    (5, _packed(buckets="200:2"), {"bad_histogram"}),                      # rtt_count says 3
    (6, _packed(buckets="200:1,200:2"), {"bad_histogram"}),                # a bucket twice
    (7, _packed(buckets="999:3"), {"bad_histogram"}),                      # no such bucket
    (8, _packed(buckets="200:3;"), {"bad_histogram"}),
    (9, _packed(hours="-5" + ",0" * 23, buckets="x"), {"bad_summary", "bad_histogram"}),
]


def test_hostile_packed_daily_rows_in_influx_are_counted(influx):
    """A packed daily row's hours and histogram are judged apart, as an hourly row's are: bad
    hours lose the day's hours (``bad_summary``) and keep its latency, a bad histogram loses
    the latency (``bad_histogram``) and keeps the hours; a good row gives both, from one row."""
    rows = [Sample("daily", TAGS, f, _dt(START + k * DAY)) for k, f, _ in HOSTILE_PACKED]
    rows += [Sample("daily", TAGS, _packed(), _dt(START))]
    hourlyfleet.write_influx(influx.url, "linewatch", hourlyfleet.lines(rows))
    ds, q, reader = _read(influx, "linewatch", START, START + 10 * DAY)
    want: dict[str, int] = defaultdict(int)
    for _, _, reasons in HOSTILE_PACKED:
        for r in reasons:
            want[r] += 1
    assert dict(q.rejected) == want
    hours_kept = [k for k, _, reasons in [(0, None, set())] + HOSTILE_PACKED
                  if "bad_summary" not in reasons]
    assert sorted(o.hour for o in ds.all_obs()) == [START + k * DAY + 10 * 3600 for k in hours_kept]
    assert all(o.observed_s == 3600.0 for o in ds.all_obs())
    pings_kept = [k for k, _, reasons in [(0, None, set())] + HOSTILE_PACKED
                  if "bad_histogram" not in reasons]
    assert sorted(p.day for p in list(ds.all_pings())) == [START + k * DAY for k in pings_kept]
    # one packed query a week; no hourly sums
    assert reader.asked["dday"] == 2 and reader.asked["hping"] == 0
    # no "hourly" row at all: no query for agents without packed rows
    assert reader.asked["hobs"] == 0


def test_queries_leaving_out_every_agent_the_server_holds_are_not_asked(influx):
    """Every agent packs: the queries for other agents' hourly, daily, outage, speed-test and
    raw rows would find nothing (the server's index holds no other agent), so none is asked.
    An agent of an older version (hourly rows only) brings the hourly queries back and is
    read; a row without an agent tag brings its measurement's queries back and is counted."""
    carried = {"outages": "", "speed_tests": ""}
    rows = [Sample("daily", TAGS, _packed(**carried), _dt(START + k * DAY)) for k in range(3)]
    rows += [Sample("hourly", TAGS, _good(), _dt(H + k * DAY)) for k in range(3)]
    rows += [Sample("outage", {**TAGS, "type": "power", "cause": "ac_lost"},
                    {"duration_s": 60.0}, _dt(H + 600))]
    hourlyfleet.write_influx(influx.url, "linewatch", hourlyfleet.lines(rows))
    ds, q, reader = _read(influx, "linewatch", START, START + 3 * DAY)
    assert dict(q.rejected) == {}
    assert sorted(o.hour for o in ds.all_obs()) == [H + k * DAY for k in range(3)]
    for kind in ("hobs", "dping", "episode", "speed", "obs", "bad_rounds", "ping", "hping"):
        assert reader.asked[kind] == 0, kind
    assert reader.asked["dday"] == 1 and reader.asked["listed"] == 6

    old = {**TAGS, "agent": "old"}
    more = [Sample("hourly", old, _good(), _dt(H + k * DAY)) for k in range(3)]
    more += [Sample("outage", {"region": "PK-SD", "type": "power", "cause": "ac_lost"},
                    {"duration_s": 60.0}, _dt(H + 900))]       # no agent tag
    hourlyfleet.write_influx(influx.url, "linewatch", hourlyfleet.lines(more))
    ds, q, reader = _read(influx, "linewatch", START, START + 3 * DAY)
    assert dict(q.rejected) == {"missing_agent": 1}
    assert sorted((o.unit.agent, o.hour) for o in ds.all_obs()) == sorted(
        [(a, H + k * DAY) for a in ("h", "old") for k in range(3)])
    assert reader.asked["hobs"] == 1 and reader.asked["episode"] == 1
    assert reader.asked["dping"] == 0 and reader.asked["obs"] == 0


def test_present_reads_the_listing_answers_or_knows_nothing():
    from collector.influxql import Present

    good = [{"columns": ["key", "value"], "values": [["agent", "a"], ["agent", "b\\nc"]]}]
    assert Present.listed(good) == {"a", "b\nc"}
    assert Present.listed([]) == set()
    for odd in ([{"columns": ["value"], "values": [["a"]]}],
                [{"columns": ["key", "value"], "values": [["region", "a"]]}],
                [{"columns": ["key", "value"], "values": [["agent", 3]]}]):
        assert Present.listed(odd) is None
    assert Present.none_without_agent([])
    assert not Present.none_without_agent([{"columns": ["time", "rows"], "values": [[0, 2]]}])
    assert not Present.none_without_agent([{"columns": ["time", "rows"], "values": [[0]]}])
    known = Present({"hourly": {"a", "b"}, "round": set(), "outage": {"a"}, "ping": None},
                    agentless={"outage"})
    assert known.needless("hobs", {"a", "b", "c"}) and known.needless("obs", set())
    assert not known.needless("hobs", {"a"})
    assert not known.needless("episode", {"a", "b"})     # rows without an agent tag
    assert not known.needless("speed", {"a", "b"})       # not listed: not known
    assert not known.needless("ping", {"a", "b"})        # listed oddly: not known
    # asking for some agents only: needless when the measurement holds none of them
    assert known.needless("hobs", {"c"}, exclude=False)
    assert known.needless("episode", {"b"}, exclude=False)
    assert not known.needless("hobs", {"b", "c"}, exclude=False)
    assert not known.needless("ping", {"c"}, exclude=False)


def test_an_agent_mixing_packed_and_older_daily_rows_is_read_once(influx):
    """Days 0-2 from a version writing hourly rows only, day 3 a daily row without packed
    fields, days 4-5 packed: every day's hours and latency, each read once."""
    rows = [Sample("hourly", TAGS, _good(), _dt(H + k * DAY)) for k in range(6)]
    rows += [Sample("daily", TAGS, _day(observed_s=3600.0, hours=1), _dt(START + 3 * DAY))]
    rows += [Sample("daily", TAGS, _packed(), _dt(START + k * DAY)) for k in (4, 5)]
    hourlyfleet.write_influx(influx.url, "linewatch", hourlyfleet.lines(rows))
    ds, q, reader = _read(influx, "linewatch", START, START + 6 * DAY)
    assert dict(q.rejected) == {}
    assert sorted(o.hour for o in ds.all_obs()) == [H + k * DAY for k in range(6)]
    assert sorted(p.day for p in list(ds.all_pings())) == [START + k * DAY for k in range(6)]
    assert reader.asked["hping"] == 1          # days 0-2: the server's sums of hourly rows


def test_check_takes_a_fleet_of_summaries_alone_for_agents_data(influx, fleet, tmp_path):
    """Agents that send summaries only (influx.send = "summaries") write no ``round`` rows: the
    collector's check finds their data in the ``hourly`` rows, and asks for no ``ping`` rows."""
    from collector import config as cconfig
    from collector.checks import run_checks

    db = _db(influx, "sumonly")
    hourlyfleet.write_influx(influx.url, db, hourlyfleet.lines(_summaries(fleet)))
    path = tmp_path / "c.toml"
    path.write_text(f'[influx]\nurl = "{influx.url}"\ndatabase = "{db}"\n')
    rows = run_checks(cconfig.load(str(path)), (), fleet.end)
    data = [r for r in rows if r[1] == "influx data"]
    assert data and data[0][0] in ("OK", "WARN"), rows
    assert "hourly summaries in the last 24 h" in data[0][2] and "ping" not in data[0][2]
    empty = _db(influx, "nothing_yet")
    path.write_text(f'[influx]\nurl = "{influx.url}"\ndatabase = "{empty}"\n')
    rows = run_checks(cconfig.load(str(path)), (), fleet.end)
    assert next(r[:2] for r in rows if r[1] == "influx data") == ("FAIL", "influx data")
