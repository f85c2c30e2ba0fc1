"""The episodes and speed tests an agent packs into its daily rows (kit.hourly.pack_rows) read
back by the collector (collector/packed.py, collector/dayrows.py, collector/influxql.py): the
same records the ``outage`` and ``speedtest`` rows give, the rows themselves read only for the
agent-days no daily row carries them for, and every packed field that is not what the agent
writes counted. Pure tests build the answers here; the others write to a real InfluxDB 1.6.7."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings, strategies as st

from collector.answers import TAGS, tagged_rows
from collector.cache import Cache
from collector.dayrows import DAY_COLUMNS, Days, daily_answer
from collector.influxql import ROW_TAGS, Reader
from collector.packed import Bad, read
from kit import hourly, lineproto
from kit.definitions import CAUSES_BY_TYPE, Quality, Unit
from kit.influx import HTTP
from tests import hourlyfleet
from tests.fleet import Fleet

START = 1_793_232_000          # a UTC midnight
DAY = 86400
NS = 10 ** 9
WEEK = (float(START), float(START + 7 * DAY))
UNITS = [Unit("a1", "", "PK-PB", "Lahore", "PTCL", "fibre"), Unit("a2", "s", "PK-SD", "", "", "")]


def _tags(u: Unit) -> dict:
    return {k: v for k, v in zip(TAGS, (u.agent, u.site, u.region, u.city, u.isp, u.access)) if v}


def _day_row(day: int, unit: Unit, outages, speeds) -> list:
    """A daily answer's row: 24 watched hours, no latency, the packed fields, the unit's tags."""
    row = [day * 1000, hourly.pack_hours([3600.0] * 24), "", 0, 0, 0.0, None, None, outages, speeds]
    t = _tags(unit)
    return row + [t.get(k) for k in TAGS]


def _daily(rows) -> dict:
    return {"name": "daily", "columns": DAY_COLUMNS + list(TAGS), "values": rows}


names = st.sampled_from(["power", "connectivity"])
number = st.one_of(st.floats(0, 1e12, allow_nan=False), st.integers(0, 10 ** 15),
                   st.sampled_from([0.0, 1e-7, 3600.0, 12.5]))


@st.composite
def stored_row(draw):
    """An outage or speedtest row as an agent's store holds it: (unit index, row)."""
    k = draw(st.integers(0, 1))
    ns = (START + draw(st.integers(0, 2)) * DAY) * NS + draw(st.integers(0, DAY * NS - 1))
    tags = _tags(UNITS[k])
    if draw(st.booleans()):
        typ = draw(names)
        cause = draw(st.sampled_from(CAUSES_BY_TYPE[typ] + ("zz_other",)))
        return k, ("outage", {**tags, "type": typ, "cause": cause},
                   {"duration_s": draw(number), "sustained": True}, ns)
    up = draw(st.one_of(st.none(), number))
    fields = {"status": draw(st.sampled_from(["ok", "ok", "failed"])), "download_bps": draw(number)}
    if up is not None:
        fields["upload_bps"] = up
    return k, ("speedtest", tags, fields, ns)


def _row_answers(stored, window):
    """What the row queries answer for these rows in ``window``: an episode series and a
    speed-test series, tags as columns."""
    eps, tests = [], []
    for _, (m, tags, f, ns) in stored:
        ms = ns // 1_000_000
        if not window[0] * 1000 <= ms < window[1] * 1000:
            continue
        tag_cols = [tags.get(t) for t in TAGS]
        if m == "outage":
            eps.append([ms, f["duration_s"], *tag_cols, tags["type"], tags["cause"]])
        elif f["status"] == "ok":
            tests.append([ms, f["download_bps"], f.get("upload_bps"), *tag_cols])
    return ({"name": "outage", "columns": ["time", "duration_s", *ROW_TAGS["episode"]],
             "values": eps},
            {"name": "speedtest", "columns": ["time", "download_bps", "upload_bps", *TAGS],
             "values": tests})


def _records(block):
    return [] if block is None else sorted(map(repr, block.records()))


@settings(max_examples=150, deadline=None)
@given(st.lists(stored_row(), max_size=40), st.integers(0, 3 * DAY))
def test_packed_rows_read_back_as_the_row_queries_read_them(stored, cut):
    window = (float(START), float(START + cut))
    rows = []
    for k, unit in enumerate(UNITS):
        for d in range(3):
            day = START + d * DAY
            mine = sorted((r for j, r in stored if j == k and r[3] // NS // DAY * DAY == day),
                          key=lambda r: r[3])
            rows.append(_day_row(day, unit, *hourly.pack_rows(day, mine)))
    q, days = Quality(), Days()
    _, _, eps, tests = daily_answer([_daily(rows)], WEEK, q, {}, days, rows_window=window)
    assert not q.rejected
    assert days.covered == {u.agent: {START + d * DAY for d in range(3)} for u in UNITS}
    e_series, s_series = _row_answers(stored, window)
    rq = Quality()
    want_e = [r for s in ([e_series] if e_series["values"] else [])
              for r in _both(tagged_rows("episode", s, rq, window, ROW_TAGS["episode"]))]
    want_s = [r for s in ([s_series] if s_series["values"] else [])
              for r in _both(tagged_rows("speed", s, rq, window, TAGS))]
    assert not rq.rejected
    assert _records(eps) == sorted(want_e)
    assert _records(tests) == sorted(want_s)


def _both(got):
    recs, block = got
    return list(map(repr, recs)) + (list(map(repr, block.records())) if block is not None else [])


def test_rows_that_cannot_be_packed_exactly_make_the_day_read_as_it_is():
    t = START * NS + 5 * NS
    ok = ("outage", {"type": "power", "cause": "ac_lost"}, {"duration_s": 30.0}, t)
    assert hourly.pack_rows(START, [ok]) == ("power:ac_lost:5000:30", "")
    assert hourly.pack_rows(START, [("outage", {"type": "interference", "cause": "tls"},
                                     {"duration_s": 1.0}, t)]) == ("", "")   # not read: not packed
    assert hourly.pack_rows(START, [("speedtest", {}, {"status": "failed"}, t)]) == ("", "")
    assert hourly.pack_rows(START, [("speedtest", {}, {"status": "ok", "download_bps": 2e7}, t)]) \
        == ("", "5000:20000000:")
    for bad in ({"duration_s": -1.0}, {"duration_s": math.nan}, {"duration_s": math.inf},
                {"duration_s": True}, {"duration_s": "30"}, {}):
        assert hourly.pack_rows(START, [ok, ("outage", ok[1], bad, t)]) == ("*", "*"), bad
    for tags in ({"type": "power", "cause": "AC lost"}, {"type": "power"}):
        assert hourly.pack_rows(START, [("outage", tags, {"duration_s": 1.0}, t)]) == ("*", "*")
    for when in (START * NS - 1, (START + DAY) * NS):
        assert hourly.pack_rows(START, [(*ok[:3], when)]) == ("*", "*")
    assert hourly.pack_rows(START, [("speedtest", {}, {"status": "ok"}, t)]) == ("*", "*")
    assert hourly.pack_rows(START, [("speedtest", {}, {"status": "ok", "download_bps": 1.0,
                                                       "upload_bps": -2.0}, t)]) == ("*", "*")


def test_packed_fields_not_as_the_agent_writes_them_are_counted():
    good = ("power:ac_lost:5000:30", "6000:2e+07:1000000")
    cases = [  # (outages, speed_tests, counted)
        (5, "", 1), ("x", "", 1), ("power:ac_lost:86400000:5", "", 1), ("", "1:2", 1),
        ("power:AC:1:2", "", 1), ("power:ac_lost:1:nan", "", 1), ("", "1:2:3,", 1),
        ("*", "*", 0), (None, None, 0), ("power:ac_lost:1:2", None, 0),
        # an empty offset, or one too long for int64, after a good entry (once a crash)
        ("power:ac_lost:1:2,power:ac_lost::5", "", 1),
        ("power:ac_lost:1:2,power:ac_lost:" + "9" * 30 + ":5", "", 1),
        ("power:ac_lost:+1:2", "", 1), ("", "1:2:3,4:5", 1), ("power:ac:lost:1:2", "", 1)]
    rows = [_day_row(START, UNITS[1], *good)]
    rows += [_day_row(START + (i % 6 + 1) * DAY if i < 6 else START, UNITS[0], o, s)
             for i, (o, s, _) in enumerate(cases)]
    q, days = Quality(), Days()
    _, _, eps, tests = daily_answer([_daily(rows)], WEEK, q, {}, days)
    assert dict(q.rejected) == {"bad_summary": sum(c for *_, c in cases)}
    # a1's days are all left to the rows; a2's one day is read from its row
    assert days.covered == {"a2": {START}}
    assert days.uncovered == {"a1": {START + d * DAY for d in range(7)}}
    assert [e.unit.agent for e in eps.records()] == ["a2"]
    assert [(t.time, t.download_bps, t.upload_bps) for t in tests.records()] == [
        (START + 6.0, 2e7, 1e6)]


def test_a_day_is_carried_only_when_every_row_of_it_carries():
    """Two tag sets of one agent on one day (it moved): one row packs, the other is of an
    older version; that day's rows are read as they are, nothing taken from the packed one."""
    moved = Unit("a1", "", "PK-PB", "Karachi", "PTCL", "fibre")
    rows = [_day_row(START, UNITS[0], "power:ac_lost:5000:30", ""),
            _day_row(START, moved, None, None),
            _day_row(START + DAY, UNITS[0], "power:ac_lost:5000:30", "")]
    q, days = Quality(), Days()
    _, _, eps, _ = daily_answer([_daily(rows)], WEEK, q, {}, days)
    assert not q.rejected
    assert days.uncovered == {"a1": {START}} and days.covered == {"a1": {START + DAY}}
    assert [e.start for e in eps.records()] == [START + DAY + 5.0]


# ---------------------------------------------------------------- a real InfluxDB

@pytest.fixture(scope="module")
def fleet():
    return Fleet(agents=6, days=3, start=START, round_s=120, seed=33)


def _read(server, db, cache=None, now=None, fleet=None):
    http = HTTP(server.url, timeout_s=60)
    try:
        reader = Reader(http, db)
        return reader.read(fleet.start, fleet.end, cache, now)
    finally:
        http.close()


def _db(server, name):
    server.query(f'CREATE DATABASE "{name}"', db="")
    return name


def _row_lines(rows) -> bytes:
    return b"".join((lineproto.line(m, t, f, ns) + "\n").encode() for m, t, f, ns in rows)


def _eps(ds):
    return sorted((e.unit, e.type, e.cause, e.start, e.duration_s) for e in ds.all_episodes())


def _tests(ds):
    return sorted(map(repr, ds.all_speeds()))


def test_influx_carried_days_come_from_daily_rows_alone(influx, fleet):
    """A database with the agents' summaries and no outage or speedtest row at all: every
    episode and speed test comes from the daily rows, the same as the rows give."""
    fleet.write_influx(influx.url, "linewatch")
    raw, rq = _read(influx, "linewatch", fleet=fleet)
    only = _db(influx, "only")
    hours = hourlyfleet.hourly_samples
    for i in range(fleet.n):
        h = hours(fleet, i)
        hourlyfleet.write_influx(influx.url, only, hourlyfleet.lines(
            h + hourlyfleet.daily_samples(h, hourlyfleet.emitted(fleet, i))))
    got, q = _read(influx, only, fleet=fleet)
    assert not q.rejected and not rq.rejected
    assert _eps(got) and _eps(got) == _eps(raw)
    assert _tests(got) and _tests(got) == _tests(raw)


def test_influx_mixed_packing_reads_each_row_once(influx, fleet, tmp_path):
    """Every agent's rows are on the server, as agents send them. Agent 0 packs from its second
    day on (upgraded), agent 1 never (an older version), agent 2 could not pack its second day;
    the others pack every day. The episodes and speed tests are those of the rows, each once,
    cold, through the cache and warm from it."""
    fleet.write_influx(influx.url, "linewatch")
    raw, _ = _read(influx, "linewatch", fleet=fleet)
    mixed = _db(influx, "mixedp")
    fleet.write_influx(influx.url, mixed)
    for i in range(fleet.n):
        h = hourlyfleet.hourly_samples(fleet, i)
        days = (hourlyfleet.daily_samples(h) if i == 1
                else hourlyfleet.daily_samples(h, hourlyfleet.emitted(fleet, i)))
        first = START + DAY
        if i == 0:
            days = [d for d in days if d.time.timestamp() >= first] + [
                d for d in hourlyfleet.daily_samples(h) if d.time.timestamp() < first]
        if i == 2:
            days = [d if d.time.timestamp() != first else
                    type(d)(d.measurement, d.tags, {**d.fields, "outages": hourly.NOT_PACKED,
                                                    "speed_tests": hourly.NOT_PACKED}, d.time)
                    for d in days]
        hourlyfleet.write_influx(influx.url, mixed, hourlyfleet.lines(h + days))
    got, q = _read(influx, mixed, fleet=fleet)
    assert not q.rejected
    assert _eps(got) == _eps(raw) and _tests(got) == _tests(raw)
    later = fleet.end + 10 * DAY
    cache = Cache(tmp_path / "cache.db")
    try:
        cold, _ = _read(influx, mixed, cache, later, fleet=fleet)
        warm, _ = _read(influx, mixed, cache, later, fleet=fleet)
    finally:
        cache.close()
    for ds in (cold, warm):
        assert _eps(ds) == _eps(raw) and _tests(ds) == _tests(raw)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="power:ac_lost,0123456789.e+-*nfA ", max_size=60),
       st.text(alphabet="0123456789:.,e+-nanif ", max_size=60))
def test_any_packed_text_is_read_as_the_agent_writes_it_or_refused(outages, speeds):
    """Hostile text: either refused (collector.packed.Bad, counted by the caller) or read into
    values the agent could have written: names of its alphabet, a time within the day, finite
    numbers >= 0 (an upload may be none)."""
    try:
        eps, tests = read(UNITS, [0], [START], [outages], [speeds], WEEK)
    except Bad:
        return
    for e in ([] if eps is None else eps.records()):
        assert re.fullmatch(r"[a-z][a-z0-9_]*", e.type) and re.fullmatch(r"[a-z][a-z0-9_]*", e.cause)
        assert START <= e.start < START + DAY and math.isfinite(e.duration_s) and e.duration_s >= 0
    for t in ([] if tests is None else tests.records()):
        assert START <= t.time < START + DAY and math.isfinite(t.download_bps) and t.download_bps >= 0
        assert t.upload_bps is None or (math.isfinite(t.upload_bps) and t.upload_bps >= 0)
