"""Hostile or broken InfluxDB answers: the collector reads them into records or counted rejections,
or refuses the answer as a whole in one line, never with a traceback.

A real HTTP server on 127.0.0.1 (tests/fakeinflux.py) plays InfluxDB (``/ping`` and ``/query``)
and answers the ``round`` query with each bad shape; the real ``linewatch-collector`` commands read
it. The parser itself (``parse_answer`` and ``to_records``) is fuzzed with hypothesis: any bytes
and any JSON-ish structure give records, counted rejections or a SourceError, within a bounded time.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from collector import answers as ca, influxql
from collector.cache import Cache
from kit.definitions import Quality, Unit
from kit.errors import SourceError
from kit.records import Dataset, Episode, EpisodeColumns, ObsHour, PingDay, SpeedColumns, SpeedTest
from tests.fakeinflux import START, WINDOW, FakeInflux

BIN = Path(sys.executable).parent
DAY = 86400
TAGS = {"agent": "a1", "region": "PK-PB", "isp": "PTCL", "city": "", "access": "", "site": ""}
MS = 1000


def _answer(*series: dict) -> bytes:
    return json.dumps({"results": [{"statement_id": 0, "series": list(series)}]}).encode()


def _round(values, tags=None, columns=("time", "observed_s")) -> dict:
    return {"name": "round", "tags": dict(TAGS if tags is None else tags),
            "columns": list(columns), "values": values}


GOOD = [[(START + h * 3600) * MS, 3600] for h in range(3)]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    srv = FakeInflux()
    yield srv
    srv.close()


def _config(tmp_path: Path, url: str, extra: str = "") -> Path:
    cfg = tmp_path / "collector.toml"
    cfg.write_text(f'[influx]\nurl = "{url}"\ndatabase = "linewatch"\ntimeout_s = 2\n\n'
                   f'[collector]\nbootstrap = 100\n{extra}')
    return cfg


def _collector(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "linewatch-collector"), *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


def _deep(n: int) -> bytes:
    return b'{"results":' + b"[" * n + b"]" * n + b"}"


# Answers refused as a whole: (answer, words of the detail in parentheses).
REFUSED = [
    (_answer(_round([[(START * MS), float("nan")]])), "NaN"),
    (_answer(_round([[float("inf"), 3600]])), "Infinity"),
    (b'{"results":[{"statement_id":0,"series":"round"}]}', "results[0].series: a string where a list"),
    (b'{"results":{"statement_id":0}}', "results: an object where a list"),
    (b'{"results":[7]}', "results[0]: a number where an object"),
    (_answer({**_round(GOOD), "name": 5}), "series[0].name: a number where a string"),
    (_answer(_round(GOOD, columns=("time", 7))), "series[0].columns[1]: a number where a string"),
    (_answer({**_round(GOOD), "tags": ["agent", "a1"]}), "series[0].tags: a list where an object"),
    (_answer({**_round(GOOD), "values": {"0": [1, 2]}}), "series[0].values: an object where a list"),
    (_answer({**_round(GOOD), "columns": None}), "series[0].columns: null where a list"),
    (b'{"error": {"nested": ["garbage", {"x": [1, 2]}]}}', "error: an object where a string"),
    (_deep(100_000), "nested too deeply"),
    (b"[1, 2]", "a list where an object"),
    (b"<html><body>502 Bad Gateway</body></html>", "not JSON"),
    (b"\xff\xfe\x00garbage\x80", "not JSON"),
    (b'{"results":[{"statement_id":' + b"7" * 5000 + b"}]}", "not JSON"),
]
REFUSED_IDS = ["nan-value", "infinity-time", "series-string", "results-object", "result-number",
               "name-number", "column-number", "tags-list", "values-object", "columns-null",
               "error-object", "nested-garbage", "top-list", "html", "binary", "huge-integer"]


@pytest.mark.parametrize("answer,detail", REFUSED, ids=REFUSED_IDS)
def test_a_malformed_answer_is_one_line_and_exit_1(fake, tmp_path, answer, detail):
    fake.answer = answer
    cfg = _config(tmp_path, fake.url)
    p = _collector("aggregate", "--config", str(cfg), *WINDOW, "--cache", "off")
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    [line] = p.stderr.splitlines()
    assert line.startswith(f"linewatch-collector: {fake.url}: the server's answer to the "
                           "\"round\" query is not InfluxDB's ("), line
    assert detail in line and line.endswith(")"), line
    assert len(line) < 400


# Answers whose bad rows are counted: (rows or series, {reason: count}).
COUNTED = [
    ([_round(GOOD), _round([[START * MS, 3600]], tags={**TAGS, "agent": 7})], {"bad_tag": 1}),
    ([_round(GOOD), _round([[START * MS, 3600]], tags={**TAGS, "isp": ["x"]})], {"bad_tag": 1}),
    ([_round(GOOD + [[START * MS]])], {"bad_row": 1}),
    ([_round(GOOD + [[START * MS, 3600, 99]])], {"bad_row": 1}),
    ([_round(GOOD + ["row", None, {"time": 1}])], {"bad_row": 3}),
    ([_round(GOOD + [["2026-01-01T00:00:00Z", 3600], [None, 3600], [True, 3600]])], {"bad_time": 3}),
    ([_round(GOOD + [[1e300, 3600], [-1e300, 3600], [0, 3600], [10 ** 400, 3600]])], {"bad_time": 4}),
    ([_round(GOOD + [[(START + 7200) * MS, 10 ** 400]])], {"not_a_number": 1}),
    ([_round(GOOD + [[(START + 7200) * MS, "many"], [(START + 3600) * MS, False]])],
     {"missing_value": 2}),
]
COUNTED_IDS = ["integer-tag", "list-tag", "row-too-short", "row-too-long", "rows-not-lists",
               "time-not-a-number", "time-out-of-range", "value-too-big", "value-not-a-number"]


def _counted(series: list[dict]) -> bytes:
    return json.dumps({"results": [{"statement_id": 0, "series": series}]}).encode()


@pytest.mark.parametrize("series,counts", COUNTED, ids=COUNTED_IDS)
def test_bad_rows_are_counted_rejections(fake, tmp_path, series, counts):
    fake.answer = _counted(series)
    cfg = _config(tmp_path, fake.url, "min_agents = 1\nmin_watch_h = 1\n")
    p = _collector("aggregate", "--config", str(cfg), *WINDOW, "--cache", "off", "--format", "json")
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    cells = json.loads(p.stdout)
    assert cells and cells[0]["agent_hours"] == pytest.approx(3.0)    # the good rows still count
    quality = next(ln for ln in p.stderr.splitlines() if ln.startswith("data quality:"))
    rejected = quality.split("rejected: ", 1)[1].split(";", 1)[0]
    assert rejected == ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), quality


def test_an_answer_cut_off_is_one_line(fake, tmp_path):
    fake.answer = "cut"
    cfg = _config(tmp_path, fake.url)
    p = _collector("aggregate", "--config", str(cfg), *WINDOW, "--cache", "off")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    [line] = p.stderr.splitlines()
    assert line.startswith(f"linewatch-collector: {fake.url}: the server's answer to the "
                           "\"round\" query stopped after "), line


def test_a_huge_answer_is_refused_after_the_limit(fake, tmp_path):
    fake.answer = "huge"
    cfg = _config(tmp_path, fake.url, "max_answer_mb = 2\n")
    p = _collector("aggregate", "--config", str(cfg), *WINDOW, "--cache", "off")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    [line] = p.stderr.splitlines()
    assert line == (f"linewatch-collector: {fake.url}: the server's answer to the \"round\" query "
                    "is larger than 2 MB (collector.max_answer_mb): narrow the window (--since) "
                    "or raise the limit"), line


def test_a_trickling_answer_is_given_up_after_the_query_timeout(fake, tmp_path):
    fake.answer = "trickle"
    cfg = _config(tmp_path, fake.url, "query_timeout_s = 3\n")
    t0 = time.monotonic()
    p = _collector("aggregate", "--config", str(cfg), *WINDOW, "--cache", "off", timeout=60)
    took = time.monotonic() - t0
    assert p.returncode == 1 and "Traceback" not in p.stderr
    [line] = p.stderr.splitlines()
    assert line == (f"linewatch-collector: {fake.url}: the server's answer to the \"round\" query "
                    "did not arrive in full within 3 s (collector.query_timeout_s)"), line
    assert took < 3 + 2 + 10     # the limit, one socket timeout (influx.timeout_s), start-up


def test_a_server_error_with_control_characters_is_one_line(fake, tmp_path):
    fake.answer = json.dumps({"error": "bad\nthing\x1b[31m" + "x" * 5000}).encode()
    cfg = _config(tmp_path, fake.url)
    p = _collector("aggregate", "--config", str(cfg), *WINDOW, "--cache", "off")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    [line] = p.stderr.splitlines()
    assert "\x1b" not in line and len(line) < 600 and "bad thing" in line, line


@pytest.mark.parametrize("answer", [
    b'{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],'
    b'"values":[[], [5], [["round"]], "x", null, ["round"]]}]}]}',
    b'{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],'
    b'"values":[[{"a":1}]]}]}]}',
    b'{"results":[{"series":7}]}',
], ids=["odd-rows", "object-name", "series-number"])
def test_check_reads_hostile_answers_without_a_traceback(tmp_path, answer):
    srv = FakeInflux(every_query=True)     # SHOW MEASUREMENTS too
    srv.answer = answer
    try:
        cfg = _config(tmp_path, srv.url)
        p = _collector("check", "--config", str(cfg))
    finally:
        srv.close()
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    assert p.returncode in (0, 1), p.stderr
    assert "influx query" in p.stdout or "influx data" in p.stdout


def test_late_hours_is_bounded_by_the_kept_days():
    """An outage row lasting 10^300 s (finite, so it passes as a number) must not make the
    search for late rows walk 10^296 hours."""
    unit = Unit("a1", "PK-PB")
    ep = Episode(unit, "power", "ac_lost", float(START), 1e300)

    def alarm(*_):
        raise TimeoutError("late_hours did not return within 5 s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(5)
    try:
        late = influxql.late_hours({START}, [], [EpisodeColumns.of([ep])], [])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert late == {("a1", START + h * 3600) for h in range(24)}


def _late_by_walking(kept, obs, episodes, speeds, asked):
    """late_hours as a plain walk over every hour (the definition it is checked against)."""
    seen = {(o.unit.agent, o.hour) for o in obs}
    out = set()

    def check(agent, hour):
        if hour - hour % DAY in kept and (agent, hour) not in seen and (agent, hour) not in asked:
            out.add((agent, hour))

    first, last = min(kept), max(kept) + DAY
    for t in speeds:
        check(t.unit.agent, int(t.time - t.time % 3600))
    for e in episodes:
        if e.cause != "host_down":
            h = max(int(e.start - e.start % 3600), first)
            while h < min(e.end, last):
                check(e.unit.agent, h)
                h += 3600
    return out


_AGENTS = [Unit(a, "PK-PB") for a in ("a1", "a2", "a3")]


@settings(max_examples=150, deadline=None)
@given(kept=st.sets(st.integers(0, 5), min_size=1),
       held=st.lists(st.tuples(st.sampled_from(_AGENTS), st.integers(0, 6 * 24 - 1)), max_size=60),
       eps=st.lists(st.tuples(st.sampled_from(_AGENTS), st.sampled_from(["ac_lost", "host_down", "isp"]),
                              st.floats(-DAY, 7 * DAY), st.floats(-10, 3 * DAY)), max_size=12),
       tests=st.lists(st.tuples(st.sampled_from(_AGENTS), st.floats(0, 7 * DAY)), max_size=8),
       asked=st.sets(st.tuples(st.sampled_from(["a1", "a2"]), st.integers(0, 6 * 24 - 1)), max_size=20))
def test_late_hours_over_columns_is_the_walk_over_every_hour(kept, held, eps, tests, asked):
    """The vectorised late_hours (the cache's hours as columns) finds exactly the (agent, hour)
    pairs a walk over every hour of every episode and speed test finds."""
    kept = {START + d * DAY for d in kept}
    obs = [ObsHour(u, START + h * 3600, 3600.0, "hourly") for u, h in held]
    episodes = [Episode(u, "power" if c != "isp" else "connectivity", c, START + s, d)
                for u, c, s, d in eps]
    speeds = [SpeedTest(u, START + t, 1e6, None) for u, t in tests]
    asked = {(a, START + h * 3600) for a, h in asked}
    days = sorted({o.hour - o.hour % DAY for o in obs})
    with tempfile.TemporaryDirectory() as tmp:
        c = Cache(Path(tmp) / "c.db")
        try:
            c.store(days, obs, [])
            blocks, _ = c.load(days)
        finally:
            c.close()
    # the episodes and speed tests as one block each, and as a block a record
    for e_blocks, s_blocks in (([EpisodeColumns.of(episodes)], [SpeedColumns.of(speeds)]),
                               ([EpisodeColumns.of([e]) for e in episodes],
                                [SpeedColumns.of([t]) for t in speeds])):
        assert influxql.late_hours(kept, blocks, e_blocks, s_blocks, asked) == \
            _late_by_walking(kept, obs, episodes, speeds, asked)


_HOUR_VALUES = st.one_of(st.sampled_from([0, 0.0, 3600, 3600.0, 1795.5, 10]),
                        st.floats(-5, 3700), st.integers(-3, 4000), st.none(), st.booleans(),
                        st.just("3600"), st.just(2 ** 70))
_HOUR_TIMES = st.one_of(st.integers(-3, 30).map(lambda h: (START + h * 3600) * 1000),
                        st.integers(0, 30).map(lambda h: (START + h * 3600) * 1000 + 1),
                        st.integers(0, 30).map(lambda h: float((START + h * 3600) * 1000)),
                        st.just(True), st.none(), st.just(2 ** 80))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from([{"agent": "a1", "region": "PK-PB"}, {"agent": "a2", "isp": "PTCL"},
                     {"region": "PK-SD"}, {"agent": "a3", "region": 7}]),
    st.sampled_from([["time", "observed_s"], ["time", "observed_s", "x"], ["observed_s", "time"]]),
    st.lists(st.one_of(st.tuples(_HOUR_TIMES, _HOUR_VALUES).map(list),
                       st.just([START * 1000]), st.just("row")), max_size=12)), max_size=5))
@example([({"agent": "a1", "region": "PK-PB"}, ["time", "observed_s"],
           [[(START + h * 3600) * 1000, [3600.0, 0, 1795.5][h % 3]] for h in range(-2, 30)]),
          ({"agent": "a2", "isp": "PTCL"}, ["time", "observed_s"], [[START * 1000, 3600]])])
def test_hourly_columns_read_what_row_by_row_reads(answer):
    """An ``hourly`` answer read into columns gives the same hours, the same rejections, and the
    same first hours and agent-days as reading it row by row (to_records, row_times): a series
    with any row that is not good is read row by row."""
    window = (float(START), float(START + DAY))
    answer = [{"name": "hourly", "tags": t, "columns": c, "values": v} for t, c, v in answer]
    q_fast, first_fast, days_fast = Quality(), {}, set()
    block, recs = ca.hourly_answer(answer, window, q_fast, first_fast, days_fast)
    fast = list(recs) + (list(Dataset(0, 1, hours=(block,)).all_obs()) if block else [])
    q_slow, first_slow, days_slow, slow = Quality(), {}, set(), []
    for series in answer:
        for agent, t in ca.row_times(series, window):
            first_slow[agent] = min(first_slow.get(agent, math.inf), t)
            if window[0] <= t < window[1]:
                days_slow.add((agent, int(t - t % DAY)))
        slow.extend(ca.to_records("hobs", series, q_slow, window))
    assert sorted(map(repr, fast)) == sorted(map(repr, slow))
    assert q_fast.rejected == q_slow.rejected
    assert first_fast == first_slow and days_fast == days_slow


_ROW_VALUES = st.one_of(st.floats(-1e6, 1e10), st.integers(-5, 10 ** 9), st.none(), st.booleans(),
                       st.just(float("inf")), st.just(10 ** 400), st.just("12"))


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["episode", "speed"]), answer=st.lists(st.tuples(
    st.sampled_from([{"agent": "a1", "region": "PK-PB", "type": "power", "cause": "ac_lost"},
                     {"agent": "a2", "type": "connectivity"}, {"region": "PK-SD"}]),
    st.booleans(),
    st.lists(st.one_of(st.tuples(_HOUR_TIMES, _ROW_VALUES, _ROW_VALUES).map(list),
                       st.tuples(st.integers(0, DAY * 1000).map(lambda ms: START * 1000 + ms),
                                 st.floats(0, 1e9), st.one_of(st.none(), st.floats(0, 1e9))).map(list),
                       st.just([START * 1000]), st.just("row")), max_size=10)), max_size=4))
@example(kind="speed", answer=[({"agent": "a1", "region": "PK-PB"}, True,
                                [[START * 1000 + 5, 1e6, None], [START * 1000 + 9, 2e6, 3e5]])])
@example(kind="episode", answer=[({"agent": "a1", "region": "PK-PB", "type": "power",
                                   "cause": "ac_lost"}, True, [[START * 1000 + 5, 60, 0]])])
def test_good_episode_and_speed_series_read_as_row_by_row(kind, answer):
    """Episode and speed-test series whose rows are all good are read in one pass; the records
    and the rejections are those of reading every row on its own."""
    cols = {"episode": ["time", "duration_s"], "speed": ["time", "download_bps", "upload_bps"]}[kind]
    window = (float(START), float(START + DAY))
    series = [{"name": "x", "tags": t, "columns": cols if right else cols[::-1],
               "values": [r[:len(cols)] if isinstance(r, list) else r for r in v]}
              for t, right, v in answer]
    q_fast = Quality()
    fast = [r for sr in series for r in ca.to_records(kind, sr, q_fast, window)]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(ca, "_good_rows", lambda *a: None)
        q_slow = Quality()
        slow = [r for sr in series for r in ca.to_records(kind, sr, q_slow, window)]
    assert list(map(repr, fast)) == list(map(repr, slow)) and q_fast.rejected == q_slow.rejected


# -- the parser, fuzzed -----------------------------------------------------------------------

KINDS = ("obs", "ping", "episode", "speed")
COLUMNS = {"obs": ["time", "observed_s"],
           "ping": ["time", "p50", "p95", "loss_sum", "rows", "rounds", "rtt_min", "rtt_max"],
           "episode": ["time", "duration_s"],
           "speed": ["time", "download_bps", "upload_bps"]}
FUZZ_WINDOW = (float(START), float(START + 2 * DAY))

numbers = st.one_of(st.integers(), st.integers(min_value=-10 ** 400, max_value=10 ** 400),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([START * MS, (START + 3600) * MS, 0, -1, 2 ** 63, 1e300]))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8))
json_ish = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=20)


def _maybe(good, bad=json_ish):
    return st.one_of(good, good, good, bad)


def _series():
    tag = st.one_of(st.sampled_from(["a1", "a2", "", "PK-PB", "x\\ny"]), st.none(), json_ish)
    tags = st.dictionaries(st.sampled_from(list(TAGS) + ["type", "cause"]), tag, max_size=8)
    kind = st.sampled_from(KINDS)
    return kind.flatmap(lambda k: st.fixed_dictionaries({
        "name": _maybe(st.just("round")),
        "tags": _maybe(tags),
        "columns": _maybe(st.just(COLUMNS[k])),
        "values": _maybe(st.lists(_maybe(st.lists(_maybe(numbers, scalars),
                                                  min_size=len(COLUMNS[k]) - 1,
                                                  max_size=len(COLUMNS[k]) + 1)), max_size=6)),
    }))


answers = st.one_of(
    st.fixed_dictionaries({"results": _maybe(st.lists(_maybe(st.fixed_dictionaries({
        "statement_id": _maybe(st.just(0)),
        "series": _maybe(st.lists(_maybe(_series()), max_size=3))})), max_size=2))}),
    st.fixed_dictionaries({"error": json_ish}),
    json_ish)


def _body(doc, chunks: int) -> bytes:
    text = json.dumps(doc, allow_nan=True)
    return ("\n".join([text] * chunks)).encode()


_cache_dir = tempfile.TemporaryDirectory(prefix="fuzz-cache-")
_cache = Cache(Path(_cache_dir.name) / "fuzz.db")


def _check_records(recs: list, q: Quality) -> None:
    for r in recs:
        assert isinstance(r, (ObsHour, PingDay, Episode, SpeedTest))
        assert isinstance(r.unit, Unit) and all(isinstance(getattr(r.unit, f), str)
                                                for f in ("agent", "region", "isp", "city",
                                                          "access", "site"))
        assert r.unit.agent
        t = r.hour if isinstance(r, ObsHour) else r.day if isinstance(r, PingDay) else \
            r.start if isinstance(r, Episode) else r.time
        assert FUZZ_WINDOW[0] - 1 <= t <= FUZZ_WINDOW[1] + 1
        for v in vars(r).values():
            if isinstance(v, float):
                assert math.isfinite(v)
        if isinstance(r, PingDay):
            assert isinstance(r.rounds, int) and 0 < r.rounds <= 2 ** 53
    assert all(isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in q.rejected.items())
    days = [START, START + DAY]
    _cache.store(days, [r for r in recs if isinstance(r, ObsHour)],
                 [r for r in recs if isinstance(r, PingDay)])
    _cache.load(days)
    influxql.late_hours(set(days), [], [EpisodeColumns.of([r for r in recs if isinstance(r, Episode)])],
                        [SpeedColumns.of([r for r in recs if isinstance(r, SpeedTest)])])


def _read(body: bytes) -> None:
    q = Quality()
    try:
        series = list(ca.parse_answer(body, 'the "round" query'))
    except SourceError as exc:
        text = str(exc)
        assert "\n" not in text and len(text) < 1000
        return
    for s in series:
        for kind in KINDS:
            _check_records(list(ca.to_records(kind, s, q, FUZZ_WINDOW)), q)


FUZZ = settings(max_examples=400, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(st.binary(max_size=512))
def test_any_bytes_give_records_or_one_error(body):
    _read(body)


@FUZZ
@given(answers, st.integers(1, 3))
def test_any_json_gives_records_rejections_or_one_error(doc, chunks):
    _read(_body(doc, chunks))


@FUZZ
@given(st.lists(_series(), min_size=1, max_size=3))
def test_influxdb_shaped_answers_give_records_or_rejections(series):
    _read(_body({"results": [{"statement_id": 0, "series": series}]}, 1))


def test_regroup_splits_rows_by_their_tags_and_counts_what_it_cannot():
    series = {"name": "outage", "columns": ["time", "duration_s", "agent", "type"],
              "values": [[1000, 5, "a", "x"], [2000, 6, "b", None], [3000, 7, "a", "x"],
                         [4000, 8, ["l"], "x"], [5000, 6], "row", [6000, 9, 5, "x"]]}
    q = Quality()
    out = list(ca.regroup(series, ("agent", "type"), q))
    assert [(s["tags"], s["columns"], s["values"]) for s in out] == [
        ({"agent": "a", "type": "x"}, ["time", "duration_s"], [[1000, 5], [3000, 7]]),
        ({"agent": "b"}, ["time", "duration_s"], [[2000, 6]]),
        ({"agent": 5, "type": "x"}, ["time", "duration_s"], [[6000, 9]])]
    assert dict(q.rejected) == {"bad_tag": 1, "bad_row": 2}
    recs = [r for s in out for r in ca.to_records("episode", s, q)]
    assert [(r.unit.agent, r.type, r.duration_s) for r in recs] == [("a", "x", 5.0), ("a", "x", 7.0),
                                                                    ("b", "", 6.0)]
    assert dict(q.rejected) == {"bad_tag": 2, "bad_row": 2}    # the numeric agent tag
    assert list(ca.regroup({**series, "columns": ["time", "duration_s", "type", "agent"]},
                           ("agent", "type"), q)) == []          # not the columns asked for
    assert dict(q.rejected) == {"bad_tag": 2, "bad_row": 2 + 7}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10 ** 13), st.one_of(st.integers(-5, 10 ** 6), st.floats(),
                                                              st.none(), st.text(max_size=2)),
                          st.sampled_from(["a1", "a2", None, 5, ""]),
                          st.sampled_from(["connectivity", "power", None])), max_size=30))
@example([(1000, 60, "a1", "power"), (2000, 7.5, "a2", None), (3000, 0, "a1", "power")])
@example([(1000, 60, "a1", "power"), (2000, 7.5, None, None)])
@example([(1000, 60, "a1", "power"), (2000, 7.5, 5, "power")])
def test_tagged_records_in_one_pass_are_what_grouping_gives(rows):
    """Episode rows with their tags as columns: the one-pass reading gives the records (and
    rejections) that grouping by tag and reading row by row gives."""
    tags = (*ca.TAGS, "type", "cause")
    place = {"region": "PK-PB"}
    series = {"name": "outage", "columns": ["time", "duration_s", *tags],
              "values": [[t, d, a, *(place.get(k) for k in ca.TAGS[1:]), typ, "isp"]
                         for t, d, a, typ in rows]}
    window = (0.0, 10.0 ** 10)
    q1, q2 = Quality(), Quality()
    recs, block = ca.tagged_rows("episode", series, q1, window, tags)
    one = recs + (list(block.records()) if block is not None else [])
    grouped = [r for s in ca.regroup(series, tags, q2) for r in ca.to_records("episode", s, q2, window)]
    assert sorted(map(repr, one)) == sorted(map(repr, grouped))
    assert dict(q1.rejected) == dict(q2.rejected)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10 ** 13), st.one_of(st.integers(-5, 10 ** 6), st.floats(),
                                                              st.none()),
                          st.one_of(st.none(), st.integers(1, 10 ** 9), st.floats(), st.text(max_size=1)),
                          st.sampled_from(["a1", "a2", None, 5])), max_size=30))
@example([(1000, 5e7, None, "a1"), (2000, 7, 2e6, "a2")])
def test_speed_tests_in_one_pass_are_what_grouping_gives(rows):
    """Speed-test rows with their tags as columns: the block of the one-pass reading (an upload
    of NaN standing for none) gives the records and rejections that grouping gives."""
    series = {"name": "speedtest", "columns": ["time", "download_bps", "upload_bps", *ca.TAGS],
              "values": [[t, dn, up, a, *([None] * (len(ca.TAGS) - 1))] for t, dn, up, a in rows]}
    window = (0.0, 10.0 ** 10)
    q1, q2 = Quality(), Quality()
    recs, block = ca.tagged_rows("speed", series, q1, window, ca.TAGS)
    assert not (recs and block is not None)
    one = recs + (list(block.records()) if block is not None else [])
    grouped = [r for s in ca.regroup(series, ca.TAGS, q2) for r in ca.to_records("speed", s, q2, window)]
    assert sorted(map(repr, one)) == sorted(map(repr, grouped))
    assert dict(q1.rejected) == dict(q2.rejected)


def test_a_series_of_many_causes_is_read_whole():
    """40,000 distinct causes in one series (an agent writing a new one each time): one block,
    each row's own, never an overflow of the names' indices; clean counts them, row by row."""
    from collector.clean import clean

    tags = (*ca.TAGS, "type", "cause")
    n = 40_000
    series = {"name": "outage", "columns": ["time", "duration_s", *tags],
              "values": [[1_800_000_000_000 + 1000 * i, 5, "a1", None, None, None, None, None, "connectivity",
                          f"c{i}"]
                         for i in range(n)]}
    recs, block = ca.tagged_rows("episode", series, Quality(), (0.0, 10.0 ** 10), tags)
    assert recs == [] and block is not None and len(block) == n
    assert [e.cause for e in block.records()][-3:] == [f"c{n - 3}", f"c{n - 2}", f"c{n - 1}"]
    ds = Dataset(1.7e9, 1.9e9, episode_cols=(block,))
    _, q = clean(ds, ["PK-PB"], 1.9e9)
    assert q.rejected["unknown_cause"] == n
