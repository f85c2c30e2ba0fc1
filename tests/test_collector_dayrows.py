"""The packed daily rows read a whole answer at a time (collector/dayrows.py) give exactly what
the row-by-row reading gives, on rows as agents write them (kit.hourly.day_fields) and on rows
that are not: those are read row by row and every rejection is counted. Pure: the answers are
built here; tests/test_collector_summaries.py reads such rows from a real InfluxDB."""

from __future__ import annotations

import math

from hypothesis import given, settings, strategies as st

from collector.answers import TAGS
from collector.dayrows import DAY_COLUMNS, Days, _fast, _slow, daily_answer
from kit import hourly
from kit.definitions import Quality, Unit

START = 1_793_232_000          # a UTC midnight
DAY = 86400
WINDOW = (float(START), float(START + 7 * DAY))
UNITS = [Unit("a1", "", "PK-PB", "Lahore", "PTCL", "fibre"), Unit("a2", "s", "PK-SD", "", "", "")]

hour_secs = st.one_of(st.just(3600.0), st.just(0.0),
                      st.floats(0, 3600, allow_nan=False, allow_infinity=False))


@st.composite
def day_row(draw):
    """A daily row's packed columns as an agent writes them (day_fields over hourly rows)."""
    day = START + draw(st.integers(0, 6)) * DAY
    per_hour = draw(st.one_of(st.just([3600.0] * 24), st.lists(hour_secs, min_size=24, max_size=24)))
    counts = draw(st.dictionaries(st.integers(0, hourly.LAST), st.integers(1, 10 ** 6), max_size=30))
    total = sum(counts.values())
    rounds = total + draw(st.integers(0, 50))
    lo = draw(st.floats(0.01, 500, allow_nan=False))
    row = [day * 1000, hourly.pack_hours(per_hour), hourly.pack_buckets(counts), total, rounds,
           draw(st.floats(0, 1e7, allow_nan=False)), lo if total else None,
           lo + 10 if total else None]
    return draw(st.integers(0, len(UNITS) - 1)), row


def _day_pairs(d):
    """The (unit, day) of each row read: two columns from the whole answer, pairs row by row."""
    return sorted(zip(d[0].tolist(), d[1].tolist()) if isinstance(d, tuple) else d)


def _same(a, b):
    ua, ha, sa, da, pa = a
    ub, hb, sb, db, pb = b
    assert ua.tolist() == ub.tolist() and ha.tolist() == hb.tolist() and sa.tolist() == sb.tolist()
    assert _day_pairs(da) == _day_pairs(db)
    # the whole answer's latency comes as columns, row by row as records: the same days
    assert (list(pa.records()) if hasattr(pa, "records") else pa) == \
        (list(pb.records()) if hasattr(pb, "records") else pb)


@settings(max_examples=200, deadline=None)
@given(st.lists(day_row(), min_size=1, max_size=40))
def test_whole_answer_reading_gives_what_row_by_row_gives(rows):
    who, values = [k for k, _ in rows], [r for _, r in rows]
    fast = _fast(UNITS, who, values, *WINDOW)
    assert fast is not None
    q = Quality()
    _same(fast, _slow(UNITS, who, values, *WINDOW, q))
    assert not q.rejected


BAD = [  # (column, value, reason when read row by row)
    (1, ",".join(["3600"] * 23), "bad_summary"),
    (1, ",".join(["3600"] * 23 + ["nan"]), "bad_summary"),
    (1, ",".join(["3600"] * 23 + ["3601"]), "bad_summary"),
    (1, ",".join(["3600"] * 23 + [" 1"]), "bad_summary"),
    (1, ",".join(["3600"] * 23 + ["-0.5"]), "bad_summary"),
    (1, 3600, "bad_summary"),
    (2, "200:3,200:1", "bad_histogram"),
    (2, "200:5", "bad_histogram"),            # rtt_count says 4
    (2, f"{hourly.LAST + 1}:4", "bad_histogram"),
    (2, "200:4,", "bad_histogram"),
    (2, "199:1:0,200:3", "bad_histogram"),
    (2, "199,1,200:3", "bad_histogram"),
    (2, "199:+1,200:3", "bad_histogram"),
    (2, ":1,200:3", "bad_histogram"),
    (2, "199:1,200:3,", "bad_histogram"),
    (2, "199:1, 200:3", "bad_histogram"),
    (2, "199:1,200:" + "9" * 30, "bad_histogram"),
    (2, "199:1,\u0662\u0660\u0660:3", "bad_histogram"),    # Arabic-Indic digits: not the agent's
    (3, True, "bad_histogram"),
    (4, 2, "bad_histogram"),                   # fewer answered rounds than RTTs
    (5, "0", "bad_histogram"),
    (0, START * 1000 + 3_600_000, "bad_time"),   # not a midnight
    (0, (START - DAY) * 1000, "bad_time"),       # before the window
    (0, "x", "bad_time"),
    (0, DAY * 1000 * 10 ** 20, "bad_time"),      # a midnight past int64's end (once a crash)
    (2, "199:1,200:" + "0" * 4300 + "4", "bad_histogram"),   # past int()'s 4,300 digits
    (6, 10 ** 309, "bad_histogram"),             # an integer past any float
]


def _row(day=0):
    return [(START + day * DAY) * 1000, hourly.pack_hours([3600.0] * 23 + [1800.0]), "199:1,200:3",
            4, 10, 5.0, 10.0, 20.0]


def test_a_bad_row_sends_the_answer_row_by_row_and_is_counted():
    for col, value, reason in BAD:
        good = [_row(d) for d in range(3)]
        bad = list(good[1])
        bad[col] = value
        rows = [good[0], bad, good[2]]
        assert _fast(UNITS, [0, 0, 0], rows, *WINDOW) is None, (col, value)
        series = {"name": "daily", "columns": DAY_COLUMNS + list(TAGS),
                  "values": [r + ["", "", "a1", None, "PK-PB", None, None, None] for r in rows]}
        q, first, days = Quality(), {}, Days()
        block, lat, _, _ = daily_answer([series], WINDOW, q, first, days)
        pings = list(lat.records()) if lat is not None else []
        assert dict(q.rejected) == {reason: 1}, (col, value)
        hours_of = {h - h % DAY for h in block.hour.tolist()}
        assert {START, START + 2 * DAY} <= hours_of
        assert (START + DAY in hours_of) == (reason not in ("bad_summary", "bad_time")), (col, value)
        days_of = {p.day for p in pings}
        assert (START + DAY in days_of) == (reason not in ("bad_histogram", "bad_time")), (col, value)
        assert first == {"a1": float(START)}
        assert days.has("a1", START + 2 * DAY) and (days.has("a1", START + DAY) == (reason != "bad_time"))


def test_a_day_row_read_back_gives_its_hours_and_its_latency():
    starts = [START + h * 3600 for h in (3, 4, 9)]
    fields = [{"observed_s": s, "ping_rounds": 360, "loss_pct_sum": 1.5, "rtt_count": 2,
               "rtt_min_ms": 20.0, "rtt_max_ms": 40.0,
               hourly.field_name(hourly.bucket(20.0)): 1, hourly.field_name(hourly.bucket(40.0)): 1}
              for s in (3600.0, 1234.5, 10.0)]
    f = hourly.day_fields(zip(starts, fields))
    row = [START * 1000] + [f.get(c) for c in DAY_COLUMNS[1:]]
    series = {"name": "daily", "columns": DAY_COLUMNS + list(TAGS), "values": [row + ["a1"] + [None] * 5]}
    q, first, days = Quality(), {}, Days()
    block, lat, eps, tests = daily_answer([series], WINDOW, q, first, days)
    pings = list(lat.records())
    assert eps is None and tests is None and not days.covered   # packs no rows: read as they are
    assert days.uncovered == {"a1": {START}}
    assert block.hour.tolist() == starts and block.observed_s.tolist() == [3600.0, 1234.5, 10.0]
    [p] = pings
    assert p.rounds == 1080 and math.isclose(p.loss_pct, 4.5 / 1080)
    assert p.rtt_p50_ms == hourly.bucket_value(hourly.bucket(20.0))
    assert p.rtt_p95_ms == hourly.bucket_value(hourly.bucket(40.0))
    assert first == {"a1": float(starts[0])} and not q.rejected


def test_latency_columns_give_back_the_records_they_were_made_of():
    from kit.records import PingColumns, PingDay

    recs = [PingDay(UNITS[0], START, 20.5, 40.0, 0.25, 360, 10.0, 90.0),
            PingDay(UNITS[1], START, None, None, None, 7),
            PingDay(UNITS[0], START + DAY, 21.0, 44.5, 0.0, 8640, None, None)]
    cols = PingColumns.of(recs)
    assert len(cols) == 3 and list(cols.records()) == recs
    assert list(cols.without({(UNITS[0].agent, START)}).records()) == recs[1:]
    assert cols.without(set()) is cols


def _series(rows, agents):
    return {"name": "daily", "columns": DAY_COLUMNS + list(TAGS),
            "values": [r + ["", ""] + [a, None, "PK-PB", None, None, None]
                       for r, a in zip(rows, agents)]}


def test_counts_whose_running_sum_would_pass_int64_are_read_row_by_row():
    """1,100 rows of 2^53 RTTs each: the whole answer's running sums would wrap past int64's
    end and give another agent's day a wrong median; such an answer is read row by row."""
    big = 2 ** 53
    flood = [START * 1000, hourly.pack_hours([3600.0] * 24), f"5:{big}", big, big, 0.0, 1.0, 1.0]
    rows = [list(flood) for _ in range(1100)] + [_row()]
    assert _fast(UNITS, [0] * 1100 + [1], rows, *WINDOW) is None
    alone = daily_answer([_series([_row()], ["a2"])], WINDOW, Quality(), {}, Days())[1]
    mixed = daily_answer([_series(rows, ["a1"] * 1100 + ["a2"])], WINDOW, Quality(), {}, Days())[1]
    (want,) = list(alone.records())
    assert [p for p in mixed.records() if p.unit.agent == "a2"] == [want]


def test_a_packed_row_dated_past_int64s_end_carries_nothing():
    """A row at a midnight so far on that its days in milliseconds wrap past int64's end into
    the window: counted bad_time, and its packed outage and speed test are not taken."""
    t = 8_559_289_251_994_464_000_000
    assert t % (DAY * 1000) == 0
    row = [t, hourly.pack_hours([3600.0] * 24), "199:1,200:3", 4, 10, 5.0, 10.0, 20.0,
           "power:ac_lost:5000:30", "6000:2e+07:1000000", "a1", None, "PK-PB", None, None, None]
    q, days = Quality(), Days()
    block, lat, eps, tests = daily_answer([{"name": "daily", "columns": DAY_COLUMNS + list(TAGS),
                                           "values": [row]}], WINDOW, q, {}, days)
    assert (block, eps, tests) == (None, None, None) and not list(lat.records())
    assert dict(q.rejected) == {"bad_time": 1}
    assert not days.covered


def test_daily_answers_share_the_units_earlier_answers_met():
    """Each worker unpickles Units of its own for each weekly answer: shared_units gives an
    answer's blocks (all four, one tuple) the Units an earlier answer met, by their tags, and
    leaves every column as it was."""
    import numpy as np

    from collector.dayrows import Daily, shared_units
    from kit.records import HourColumns, PingColumns

    def answer(agents):
        units = tuple(Unit(a, "PK-PB", "PTCL") for a in agents)
        hours = HourColumns(units, np.array([0, 1], dtype=np.int32), np.array([0, 3600]),
                            np.array([3600.0, 10.0]), "hourly")
        pings = PingColumns(units, np.array([1], dtype=np.int32), np.array([0]), np.array([9.0]),
                            np.array([12.0]), np.array([0.0]), np.array([5]), np.array([7.0]),
                            np.array([30.0]))
        return Daily(hours, pings, None, None)
    met: dict = {}
    first = shared_units(answer(["a1", "a2"]), met)
    second = answer(["a2", "a3"])
    got = shared_units(second, met)
    assert got.block.units is got.pings.units and got.episodes is None and got.speeds is None
    assert got.block.units[0] is first.block.units[1]          # a2: the first answer's Unit
    assert got.block.units == second.block.units and got.block.units[1] is second.block.units[1]
    assert got.block.hour is second.block.hour and got.pings.rtt_p50_ms is second.pings.rtt_p50_ms
    empty = Daily(None, None, None, None)
    assert shared_units(empty, met) is empty
