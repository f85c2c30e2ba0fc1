"""The collector's two sources against a real InfluxDB 1.6.7 and real agent store files.

A synthetic fleet (tests/fleet.py) writes the rows the agent writes, through InfluxDB's /write and
into agent stores. The collector must read back, from either source, what the fleet's ground
truth says, and the two sources must give the same cells.
"""

from __future__ import annotations

import gc
import json
import sqlite3
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from agent.model import Episode as AgentEpisode, Sample
from agent.store import Store
from collector import answers, influxql, pipeline
from collector.answers import parse_answer
from collector.indices import Interruption, ieee1366
from collector.influxql import Reader, ident, literal, queries
from collector.stats import Settings, aggregate
from collector.storefile import expand, read_stores
from kit.definitions import Quality, Unit
from kit.errors import SourceError
from kit.influx import HTTP
from kit.storefile import StoreFile
from tests.fleet import Fleet

START = 1_793_232_000          # 2026-10-29 00:00 UTC
S = Settings(bootstrap=200, min_agents=3)


# ---------------------------------------------------------------- query text (pure)

@pytest.mark.parametrize("name,quoted", [("isp", '"isp"'), ('a"b', '"a\\"b"'), ("a\\b", '"a\\\\b"')],
                         ids=["plain", "quote", "backslash"])
def test_identifiers_are_quoted(name, quoted):
    assert ident(name) == quoted


def test_literals_are_quoted():
    assert literal("it's") == "'it\\'s'"
    assert literal("a\\") == "'a\\\\'"


def test_queries_push_aggregation_to_the_server():
    qs = queries(START, START + 30 * 86400)
    kinds = [k for k, _ in qs]
    assert kinds.count("obs") == 5 and kinds.count("ping") == 5   # weekly chunks
    obs = next(q for k, q in qs if k == "obs")
    assert 'sum("interval_s")' in obs and "GROUP BY time(1h)" in obs and "fill(none)" in obs
    ping = next(q for k, q in qs if k == "ping")
    assert "percentile(\"rtt_avg_ms\", 95)" in ping and "GROUP BY time(1d)" in ping
    assert "\"role\" = 'internet'" in ping
    for kind, q in qs:
        if kind in influxql.COUNT_KINDS:      # counts of rejected rows, not records
            continue
        assert f"time >= {START * 10**9}" in q or "time >=" in q
        assert '"agent", "region", "isp", "city", "access"' in q
    assert '"interval_s" > 0 AND "interval_s" <= 3600' in obs


def test_grouped_queries_cover_whole_utc_days():
    """A window starting mid-day still queries whole days, cut only at midnights: a day or an
    hour split between two queries would come back as two half records."""
    runs = influxql.day_runs(influxql.days_of(START + 13 * 3600, START + 10 * 86400 + 5 * 3600))
    assert runs == [(START, START + 7 * 86400), (START + 7 * 86400, START + 11 * 86400)]
    gap = influxql.day_runs([START, START + 86400, START + 5 * 86400])
    assert gap == [(START, START + 2 * 86400), (START + 5 * 86400, START + 6 * 86400)]


@pytest.mark.parametrize("body,match", [
    (b'{"error":"database not found: x"}', "database not found"),
    (b'{"results":[{"statement_id":0,"error":"error parsing query"}]}', "error parsing query"),
    (b"<html>proxy</html>", "not InfluxDB's \\(not JSON"),
    (b"[1,2]", "not InfluxDB's \\(a list where an object was expected\\)"),
], ids=["top", "statement", "html", "list"])
def test_bad_answers_raise_naming_the_query(body, match):
    with pytest.raises(SourceError, match=match) as err:
        list(parse_answer(body, 'the "round" query'))
    assert 'the "round" query' in str(err.value)


def test_rows_without_agent_or_value_are_counted():
    q = Quality()
    series = {"name": "round", "tags": {"agent": "", "region": "PK-SD"}, "columns": ["time", "observed_s"],
              "values": [[0, 10.0], [3600, 20.0]]}
    assert list(answers.to_records("obs", series, q)) == []
    series = {"name": "outage", "tags": {"agent": "a1", "type": "power", "cause": "ac_lost"},
              "columns": ["time", "duration_s"], "values": [[0, None], [60, "x"], [120, 30.0]]}
    recs = list(answers.to_records("episode", series, q))
    assert len(recs) == 1 and recs[0].duration_s == 30.0
    assert q.rejected == {"missing_agent": 2, "missing_value": 2}


# ---------------------------------------------------------------- against real servers

@pytest.fixture(scope="module")
def fleet():
    return Fleet(agents=14, days=3, start=START, round_s=60, seed=7)


@pytest.fixture
def loaded(influx, fleet):
    fleet.write_influx(influx.url, "linewatch")
    return influx


def _read_influx(server, start, end):
    http = HTTP(server.url, timeout_s=60)
    try:
        return Reader(http, "linewatch").read(start, end)
    finally:
        http.close()


def _obs_by_unit(ds):
    out = defaultdict(float)
    for o in ds.all_obs():
        out[o.unit] += o.observed_s
    return dict(out)


def _episodes(ds):
    return sorted((e.unit.agent, e.type, e.cause, round(e.start, 3), round(e.duration_s, 3))
                  for e in ds.all_episodes())


def test_influx_source_recovers_the_truth(loaded, fleet):
    truth = fleet.dataset()
    ds, q = _read_influx(loaded, fleet.start, fleet.end)
    assert q.rejected == {}
    assert _obs_by_unit(ds) == pytest.approx(_obs_by_unit(truth))
    assert _episodes(ds) == _episodes(truth)
    # Times to the millisecond: the collector asks for epoch=ms (InfluxDB truncates).
    got = sorted((s.unit, s.time, s.download_bps) for s in ds.all_speeds())
    want = sorted((s.unit, s.time, s.download_bps) for s in truth.speeds)
    assert [(u, d) for u, _, d in got] == [(u, d) for u, _, d in want]
    assert all(0 <= w - g < 0.001 for (_, g, _), (_, w, _) in zip(got, want))
    got = {(p.unit, p.day): p for p in list(ds.all_pings())}
    want = {(p.unit, p.day): p for p in list(truth.all_pings())}
    assert got.keys() == want.keys()
    for k, w in want.items():
        g = got[k]
        assert (g.rtt_p50_ms, g.rtt_p95_ms) == pytest.approx((w.rtt_p50_ms, w.rtt_p95_ms)), k
        # The collector counts the rounds in which the target answered (its loss figure's base);
        # the fleet's truth counts every ping row.
        assert 0.9 * w.rounds < g.rounds <= w.rounds


def test_store_files_and_influx_give_the_same_cells(loaded, fleet, tmp_path):
    paths = []
    for i in range(fleet.n):
        fleet.write_store(i, tmp_path / f"agent{i}")
        paths.append(tmp_path / f"agent{i}" / "linewatch.db")
    from_files, fq = read_stores(paths, fleet.start, fleet.end)
    from_influx, iq = _read_influx(loaded, fleet.start, fleet.end)
    assert fq.rejected == {} and iq.rejected == {}
    assert _episodes(from_files) == _episodes(from_influx)
    assert _obs_by_unit(from_files) == pytest.approx(_obs_by_unit(from_influx))
    a = aggregate(from_files, S, now=fleet.end)
    b = aggregate(from_influx, S, now=fleet.end)
    c = aggregate(fleet.dataset(), S, now=fleet.end)
    assert len(a["cells"]) > 3
    for x, y, z in zip(a["cells"], b["cells"], c["cells"]):
        for key, v in z.items():
            if isinstance(v, float):
                assert x[key] == pytest.approx(v, rel=1e-9, abs=1e-12), key
                assert y[key] == pytest.approx(v, rel=1e-9, abs=1e-12), key
            elif key not in ("load_shedding_heatmap", "load_shedding_by_hour", "load_shedding_by_weekday") \
                    and not key.endswith("_ci"):
                assert x[key] == v == y[key], key
    assert [e["start"] for e in a["events"]] == [e["start"] for e in b["events"]]


def test_power_indices_match_the_truth_computed_independently(fleet):
    """The cell's indices against collector.indices.ieee1366 run over the truth's episodes, per
    region (cells by region only): one agent one customer, observation-aware."""
    truth = fleet.truth()
    r = aggregate(fleet.dataset(), S, by=("region",), now=fleet.end)
    T = fleet.end - fleet.start
    for cell in r["cells"]:
        if cell["suppressed"]:
            continue
        agents = [a for a in truth["agents"].values() if a["unit"].region == cell["region"]]
        observed = sum(a["power_watched_s"] for a in agents)
        its = [Interruption(a["unit"].agent, e.duration_s, counted)
               for a in agents for e, counted in zip(a["power"], a["power_counted_s"])]
        want = ieee1366(its, observed, T)
        assert cell["agents"] == sum(1 for a in agents if a["power_watched_s"] > 0)
        for name in ("power_saifi", "power_saidi_min", "power_caidi_min", "power_maifi", "power_asai"):
            assert cell[name] == pytest.approx(getattr(want, name)), (cell["region"], name)
        assert cell["power_saidi_min"] == pytest.approx(cell["power_saifi"] * cell["power_caidi_min"])


def test_switched_off_time_is_neither_observed_nor_an_outage(fleet):
    truth = fleet.truth()
    off = [a for a in truth["agents"].values() if a["off_s"] > 0]
    assert off, "the fleet must have owners who switch their machines off"
    for a in off:
        assert a["observed_s"] + a["off_s"] <= fleet.end - fleet.start
    ds = fleet.dataset()
    obs = _obs_by_unit(ds)
    for a in off:
        assert obs[a["unit"]] == pytest.approx(a["observed_s"])


def test_bad_rows_through_influx_are_rejected_and_counted(influx):
    bad = Fleet(agents=10, days=2, start=START, round_s=120, seed=11, bad=True)
    bad.write_influx(influx.url, "linewatch")
    ds, sq = _read_influx(influx, bad.start, bad.end + 3 * 86400)
    r = aggregate(ds, S, now=bad.end, source_quality=sq)
    q = r["data_quality"]
    kinds = bad.truth()["bad"]
    assert set(kinds) == {"negative_duration", "future_start", "overlapping_power", "negative_rtt",
                          "huge_download", "unknown_region", "flooding"}
    assert q["rejected"]["negative_duration"] == kinds["negative_duration"]["count"]
    assert q["rejected"]["future_timestamp"] >= 1
    assert q["rejected"]["absurd_rtt"] >= 1
    assert q["rejected"]["absurd_speed"] >= 1
    assert q["rejected"]["unknown_region"] >= 1 and "PK-XX" in q["unknown_region_codes"]
    assert q["clipped"]["observed_clipped"] >= 1
    assert q["clipped"]["power_merged"] >= 1          # the overlapping pair is one interruption
    json.dumps(r, allow_nan=False)


def test_store_source_refuses_files_that_are_not_stores(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(SourceError, match=r"junk\.db"):
        StoreFile.open(junk)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(SourceError, match="not a linewatch store"):
        StoreFile.open(empty)
    with pytest.raises(SourceError, match="no file matches"):
        expand([str(tmp_path / "nothing-*.db")])
    seen = []
    ds, q = read_stores([junk, empty], START, START + 86400, on_error=seen.append)
    assert q.rejected == {"unreadable_store": 2} and len(seen) == 2 and ds.obs == ()


def test_store_file_is_opened_read_only(fleet, tmp_path):
    fleet.write_store(0, tmp_path / "a")
    path = tmp_path / "a" / "linewatch.db"
    before = path.read_bytes()
    f = StoreFile.open(path)
    with pytest.raises(SourceError):
        f.query("DELETE FROM samples")
    f.close()
    assert path.read_bytes() == before


def test_sites_travel_through_influx_store_files_and_the_cache(influx, tmp_path):
    """Agents behind shared routers (the site tag) read from InfluxDB, from the cache of closed
    days and from store files give the same lines, merged the same way."""
    from collector.cache import Cache

    routed = Fleet(agents=14, days=2, start=START, round_s=120, seed=5, routers=True)
    sites = [s.site for s in routed.specs]
    assert len(set(sites)) < len(sites)          # some routers have several agents
    routed.write_influx(influx.url, "linewatch")
    paths = []
    for i in range(routed.n):
        routed.write_store(i, tmp_path / f"agent{i}")
        paths.append(tmp_path / f"agent{i}" / "linewatch.db")
    from_files, _ = read_stores(paths, routed.start, routed.end)
    from_influx, _ = _read_influx(influx, routed.start, routed.end)
    assert {o.unit.site for o in from_influx.all_obs()} == set(sites)
    assert _obs_by_unit(from_files) == pytest.approx(_obs_by_unit(from_influx))
    cache = Cache(tmp_path / "cache.db")
    http = HTTP(influx.url, timeout_s=60)
    try:
        later = routed.end + 7 * 86400      # the fleet's days are closed and settled by then
        Reader(http, "linewatch").read(routed.start, routed.end, cache, later)   # fills the cache
        reader = Reader(http, "linewatch")
        from_cache, _ = reader.read(routed.start, routed.end, cache, later)
    finally:
        http.close()
        cache.close()
    assert reader.cached_days == 2
    assert _obs_by_unit(from_cache) == pytest.approx(_obs_by_unit(from_influx))
    s = Settings(bootstrap=200, min_agents=1, min_watch_h=0)
    results = [aggregate(ds, s, now=routed.end) for ds in (from_files, from_influx, from_cache)]
    merged = {r["data_quality"]["clipped"].get("site_merged") for r in results}
    assert len(merged) == 1 and merged.pop() > 0
    a, b, c = (r["cells"] for r in results)
    assert sum(x["sites"] for x in a) < sum(x["agents"] for x in a)
    for x, y, z in zip(a, b, c):
        assert x["sites"] == y["sites"] == z["sites"] and x["agents"] == y["agents"] == z["agents"]
        for key in ("agent_hours", "internet_outages_per_agent", "power_saifi", "rtt_p50_ms"):
            assert x[key] == pytest.approx(y[key]) and z[key] == pytest.approx(y[key]), key


# ---------------------------------------------------------------- rows the rules reject or place
# (docs/collector.md: bad interval_s, clocks never set, episodes of a store file)

MON = 1_793_559_600          # Monday 2026-11-02 00:00 PKT = 2026-11-01 19:00 UTC
DAY = 86400
H10 = MON + 10 * 3600
A = Unit("a", "PK-SD", "PTCL")
TAGS = {"agent": "a", "region": "PK-SD", "isp": "PTCL"}


def _round_rows(values, start=H10, step=10):
    return [(start + k * step, v) for k, v in enumerate(values)]


def _write_influx(server, lines):
    req = urllib.request.Request(f"{server.url}/write?db=linewatch&precision=s",
                                 data="\n".join(lines).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 204


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _store(path, rounds=(), tags=TAGS, episodes=(), pings=(), speeds=()):
    s = Store.open(path)
    try:
        samples = [Sample("round", tags, {"status": "up", "online": 1, **({} if v is None else
                                                                          {"interval_s": v})}, _utc(t))
                   for t, v in rounds]
        samples += [Sample("ping", {**tags, "role": "internet", "target": "1.1.1.1"},
                           {"rtt_avg_ms": 20.0, "loss_pct": 0.0}, _utc(t)) for t in pings]
        samples += [Sample("speedtest", tags, {"status": "ok", "download_bps": 2e7, "upload_bps": 1e6},
                           _utc(t)) for t in speeds]
        eps = [AgentEpisode(f"e{i}", typ, cause, _utc(t), _utc(t + d), d, d > 300)
               for i, (typ, cause, t, d) in enumerate(episodes)]
        s.write(samples, episodes=eps)
    finally:
        s.close()
    return path / "linewatch.db"


BAD_INTERVALS = {5: -10.0, 6: 0.0, 7: 7200.0}


@pytest.mark.parametrize("source", ["store", "influx"])
def test_a_bad_interval_is_left_out_of_its_hours_sum_and_counted(source, tmp_path, request):
    """360 rounds of 10 s in 10:00-11:00, three of them with an absurd interval_s: the hour has
    3,570 s (the 357 good rounds), and the three are counted, one each. An hour with only bad
    rounds has no observed time."""
    values = [BAD_INTERVALS.get(k, 10.0) for k in range(360)]
    rows = _round_rows(values) + _round_rows([-5.0, 9000.0], start=H10 + 3600)
    if source == "store":
        d, q = read_stores([_store(tmp_path / "a", rows)], MON, MON + DAY)
    else:
        server = request.getfixturevalue("influx")
        _write_influx(server, [f"round,agent=a,region=PK-SD,isp=PTCL status=\"up\",interval_s={v} {t}"
                               for t, v in rows])
        d, q = _read_influx(server, MON, MON + DAY)
    assert [(o.unit, o.hour, o.observed_s) for o in d.obs] == [(A, H10, 3570.0)]
    assert dict(q.rejected) == {"absurd_observed": 5}


def test_a_store_round_without_a_number_for_its_interval_is_bad(tmp_path):
    rows = _round_rows([10.0, "ten", None, 10.0])
    d, q = read_stores([_store(tmp_path / "a", rows)], MON, MON + DAY)
    assert [o.observed_s for o in d.obs] == [20.0]
    assert dict(q.rejected) == {"absurd_observed": 2}


T1970 = 3600        # 1970-01-01 01:00 UTC: a Raspberry Pi before it reached a time server


@pytest.mark.parametrize("source", ["store", "influx"])
def test_rows_from_a_clock_never_set_are_counted_by_both_sources(source, tmp_path, request):
    rounds = _round_rows([10.0] * 3, start=T1970) + _round_rows([10.0] * 6)
    pings, speeds = [T1970 + 5, H10 + 5], [T1970 + 7, H10 + 7]
    episodes = [("power", "ac_lost", T1970 + 20, 60.0), ("connectivity", "isp", H10 + 20, 30.0)]
    if source == "store":
        d, q = read_stores([_store(tmp_path / "a", rounds, episodes=episodes, pings=pings,
                                   speeds=speeds)], MON, MON + DAY)
    else:
        server = request.getfixturevalue("influx")
        tags = "agent=a,region=PK-SD,isp=PTCL"
        _write_influx(server, [f"round,{tags} status=\"up\",interval_s={v} {t}" for t, v in rounds]
                      + [f"ping,{tags},role=internet,target=1.1.1.1 rtt_avg_ms=20,loss_pct=0 {t}"
                         for t in pings]
                      + [f"speedtest,{tags} status=\"ok\",download_bps=2e7,upload_bps=1e6 {t}"
                         for t in speeds]
                      + [f"outage,{tags},type={ty},cause={c} duration_s={du} {t}"
                         for ty, c, t, du in episodes])
        d, q = _read_influx(server, MON, MON + DAY)
    assert dict(q.rejected) == {"clock_unset": 3 + 1 + 1 + 1}
    assert [(o.hour, o.observed_s) for o in d.obs] == [(H10, 60.0)]
    assert [(e.cause, e.start) for e in d.all_episodes()] == [("isp", H10 + 20)]
    assert len(list(d.all_pings())) == 1 and len(list(d.all_speeds())) == 1


def test_a_store_window_reaching_back_before_2000_reads_no_such_row(tmp_path):
    path = _store(tmp_path / "a", _round_rows([10.0] * 3, start=T1970) + _round_rows([10.0] * 6))
    d, q = read_stores([path], 0, MON + DAY)
    assert [(o.hour, o.observed_s) for o in d.obs] == [(H10, 60.0)]
    assert dict(q.rejected) == {"clock_unset": 3}


def test_store_episodes_take_the_nearest_round_series_of_the_whole_file(tmp_path):
    """Rounds tagged PTCL on day 1, Nayatel from day 3 (the agent changed ISP). An episode takes
    the tags of the round written nearest before it, or the first after it when there is none
    before, wherever the window is."""
    later = {**TAGS, "isp": "Nayatel"}
    path = tmp_path / "a"
    _store(path, _round_rows([10.0] * 3, start=MON + DAY))
    _store(path, _round_rows([10.0] * 3, start=MON + 3 * DAY), tags=later,
           episodes=[("connectivity", "isp", MON + 600, 60.0),              # before any round
                     ("connectivity", "isp", MON + 2 * DAY, 60.0),          # after day 1's rounds
                     ("connectivity", "isp", MON + 4 * DAY, 60.0),          # after day 3's
                     ("power", "ac_lost", MON + 6 * DAY, 60.0)])            # no round in its window
    d, q = read_stores([path / "linewatch.db"], MON, MON + 7 * DAY)
    assert sorted((e.start - MON, e.unit.isp) for e in d.episodes) == [
        (600, "PTCL"), (2 * DAY, "PTCL"), (4 * DAY, "Nayatel"), (6 * DAY, "Nayatel")]
    d, q = read_stores([path / "linewatch.db"], MON + 5 * DAY, MON + 7 * DAY)
    assert [(e.unit.agent, e.unit.isp) for e in d.episodes] == [("a", "Nayatel")]
    assert dict(q.rejected) == {}
    empty = _store(tmp_path / "b", episodes=[("power", "ac_lost", MON + 600, 60.0)])
    d, q = read_stores([empty], MON, MON + DAY)
    assert d.episodes == () and dict(q.rejected) == {"missing_agent": 1}


def test_bad_rounds_of_a_kept_day_are_counted_from_the_cache(influx, tmp_path):
    """The cache keeps a closed day's count of bad rounds with its hours: a warm run reports what
    a cold one does. A cache written by the older rule (bad rounds summed) is emptied."""
    import sqlite3 as sq

    from collector.cache import Cache

    rows = _round_rows([BAD_INTERVALS.get(k, 10.0) for k in range(360)])
    _write_influx(influx, [f"round,agent=a,region=PK-SD,isp=PTCL status=\"up\",interval_s={v} {t}"
                           for t, v in rows])
    later = MON + 30 * DAY                      # the window's days are closed and settled
    cache = Cache(tmp_path / "cache.db")
    http = HTTP(influx.url, timeout_s=60)
    try:
        cold, cold_q = Reader(http, "linewatch").read(MON, MON + DAY, cache, later)
        reader = Reader(http, "linewatch")
        warm, warm_q = reader.read(MON, MON + DAY, cache, later)
    finally:
        http.close()
        cache.close()
    assert reader.cached_days == 2
    assert dict(cold_q.rejected) == dict(warm_q.rejected) == {"absurd_observed": 3}
    assert ([(o.hour, o.observed_s) for o in warm.all_obs()]
            == [(o.hour, o.observed_s) for o in cold.all_obs()])
    with sq.connect(tmp_path / "cache.db") as conn:
        conn.execute("PRAGMA user_version = 1")
    old = Cache(tmp_path / "cache.db")
    assert old.days() == set() and old.load_rejected([MON - MON % DAY]) == []
    old.close()


def test_aggregating_collects_cycles_rarely_and_gives_the_thresholds_back():
    before = gc.get_threshold()
    with pipeline.rare_collections():
        assert gc.get_threshold() == pipeline.RARE_GC
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), pipeline.rare_collections():
        raise RuntimeError("a source failed")
    assert gc.get_threshold() == before


def test_large_arrays_are_mapped_on_their_own_where_the_c_library_is_glibc(monkeypatch):
    """The collector asks glibc to map each large block on its own (given back when freed);
    where the C library is not glibc (no libc.so.6, or no mallopt in it), it goes on without."""
    import ctypes
    import platform

    if platform.libc_ver()[0] == "glibc":
        assert pipeline.arrays_mapped() is True

    def no_libc(name):
        raise OSError(f"{name}: cannot open shared object file")
    if platform.libc_ver()[0] == "glibc":
        # holes of 64 kB in the heap, between blocks still held: their pages are given back
        blocks = [bytearray(64 << 10) for _ in range(512)]
        del blocks[::2]
        assert pipeline.given_back() is True
        del blocks
    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert pipeline.arrays_mapped() is False and pipeline.given_back() is False
