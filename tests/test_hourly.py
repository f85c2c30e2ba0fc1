"""kit.hourly: the mergeable RTT histogram and the pure summary of one hour."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from kit import hourly
from kit.definitions import nearest_rank
from kit.hourly import Histogram, Span, summarise

RTTS = st.floats(min_value=0.02, max_value=100_000, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(RTTS, min_size=1, max_size=300),
       st.sampled_from([0, 1, 5, 25, 50, 75, 90, 95, 99, 100]))
def test_any_quantile_within_two_percent_of_the_exact_one(xs, pct):
    h = Histogram()
    for x in xs:
        h.add(x)
    exact, approx = nearest_rank(xs, pct), h.quantile(pct)
    if exact is None:
        assert approx is None
    else:
        assert abs(approx - exact) <= 0.02 * exact


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(RTTS, max_size=60), min_size=1, max_size=24))
def test_merged_hours_equal_the_histogram_of_the_whole_day(hours):
    merged = Histogram()
    for xs in hours:
        one = Histogram()
        for x in xs:
            one.add(x)
        # through the row's fields and back, as a reader of the row sees it
        merged.merge(Histogram.from_fields(one.fields()))
    whole = Histogram()
    for x in (x for xs in hours for x in xs):
        whole.add(x)
    assert merged.counts == whole.counts
    assert merged.total == sum(len(xs) for xs in hours)


def test_bucket_edges_and_names():
    assert hourly.bucket(hourly.MIN_MS) == 0 and hourly.bucket(0) == 0
    assert hourly.bucket(float("nan")) == 0 and hourly.bucket(-5) == 0
    assert hourly.bucket(1e9) == hourly.LAST
    assert hourly.bucket_of_field(hourly.field_name(42)) == 42
    assert hourly.bucket_of_field("rtt_h9999") is None
    assert hourly.bucket_of_field("rtt_h42") is None and hourly.bucket_of_field("rtt_h419") is None
    assert hourly.bucket_of_field("rtt_p50_ms") is None
    for i in range(hourly.LAST + 1):
        lo, hi = hourly.GAMMA ** (i - 1 - hourly.OFFSET), hourly.GAMMA ** (i - hourly.OFFSET)
        v = hourly.bucket_value(i)
        assert lo < v <= hi
        assert abs(v - hi) / hi <= hourly.ALPHA + 1e-12


def test_from_fields_skips_what_is_not_a_count():
    h = Histogram.from_fields({"rtt_h010": 3, "rtt_h011": -1, "rtt_h012": 1.5, "rtt_h013": True,
                               "rtt_h014": "7", "observed_s": 3600.0, "rtt_h015": 2.0,
                               "rtt_h016": float("nan"), "rtt_h017": float("inf")})
    assert h.counts == {10: 3, 15: 2}


# -- one hour -----------------------------------------------------------------------------------

H = 1_796_536_800  # an hour's start (a multiple of 3600)


def test_rounds_pings_and_dns_of_an_hour():
    rounds = [{"status": "up", "interval_s": 10.0}] * 300 + \
             [{"status": "degraded", "interval_s": 10.0}] * 30 + \
             [{"status": "down", "interval_s": 10.0}] * 20 + \
             [{"status": "error", "interval_s": 10.0}] * 5 + \
             [{"status": "up", "interval_s": -1.0}, {"status": "up", "interval_s": "x"}]
    pings = [{"sent": 3, "received": 3, "loss_pct": 0.0, "rtt_avg_ms": 20.0 + i % 7}
             for i in range(330)] + [{"sent": 3, "received": 0, "loss_pct": 100.0}] * 20 \
        + [{"sent": 3, "received": 2, "loss_pct": 100 / 3, "rtt_avg_ms": 80.0}]
    dns = [{"success": True}] * 340 + [{"success": False}] * 15
    f = summarise(H, rounds=rounds, pings=pings, dns=dns, now=H + 3600)
    assert f["observed_s"] == 3550.0 and f["online_s"] == 3300.0 and f["degraded_s"] == 300.0
    assert f["rounds"] == 357 and f["error_rounds"] == 5
    assert f["echoes_sent"] == 351 * 3 and f["echoes_received"] == 330 * 3 + 2
    assert f["ping_rounds"] == 331 and f["rtt_count"] == 331
    assert math.isclose(f["loss_pct_sum"], 100 / 3)
    assert f["rtt_min_ms"] == 20.0 and f["rtt_max_ms"] == 80.0
    assert f["dns_queries"] == 355 and f["dns_failures"] == 15
    assert sum(v for k, v in f.items() if k.startswith("rtt_h")) == 331
    assert f["summary_version"] == hourly.VERSION


def test_episodes_are_split_at_the_hour_edges_and_an_open_one_counts_to_now():
    spans = [Span("connectivity", "isp", "", H - 600, H + 900),   # 900 s in this hour
             Span("connectivity", "dns", "", H + 3000, None),      # open: to now
             Span("power", "host_down", "host", H + 3500, H + 7200),
             Span("power", "ac_lost", "ups", H + 60, H + 120),
             Span("agent_gap", "agent_stopped", "agent", H + 100, H + 160),
             Span("degraded", "loss", "", H, H + 3600),            # not summed
             Span("connectivity", "weird", "", H, H + 10)]         # unknown cause: unknown
    f = summarise(H, spans=spans, now=H + 3300)
    assert f["outage_isp_s"] == 900.0 and f["outage_dns_s"] == 300.0
    assert f["power_host_s"] == 100.0 and f["power_ups_s"] == 60.0
    assert f["agent_gap_s"] == 60.0 and f["outage_unknown_s"] == 10.0
    assert "rtt_p50_ms" not in f and f["rtt_count"] == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(min_value=-20_000, max_value=40_000),
                          st.floats(min_value=0, max_value=30_000)), max_size=8))
def test_the_hours_of_an_episode_sum_to_its_duration(eps):
    spans = [Span("connectivity", "isp", "", H + a, H + a + d) for a, d in eps]
    total = 0.0
    hours = {h for s in spans for h in hourly.hours_of(s.start, s.end)}
    for h in hours:
        total += summarise(h, spans=spans, now=H)["outage_isp_s"]
    assert math.isclose(total, sum(d for _, d in eps), rel_tol=1e-9, abs_tol=1e-6)


def test_hours_of():
    assert list(hourly.hours_of(H, H)) == [H]
    assert list(hourly.hours_of(H + 10, H + 3600)) == [H]
    assert list(hourly.hours_of(H - 1, H + 1)) == [H - 3600, H]


def test_a_day_row_is_the_merge_of_its_hours():
    hours = [summarise(H + k * 3600, rounds=[{"status": "up", "interval_s": 10.0}] * 360,
                       pings=[{"sent": 3, "received": 3, "loss_pct": float(k % 3),
                               "rtt_avg_ms": 20.0 + k + i % 9} for i in range(720)],
                       now=H + 86400) for k in range(24)]
    hours.append(summarise(H, spans=[Span("power", "host_down", "host", H, H + 60)], now=H))
    starts = [H + k * 3600 for k in range(24)] + [H]
    d = hourly.day_fields(zip(starts, hours))
    assert d["hours"] == 25 and d["observed_s"] == 24 * 3600.0
    assert d["observed_hours"] == ",".join(["3600"] * 24)
    assert d["rtt_count"] == d["ping_rounds"] == 24 * 720
    assert d["loss_pct_sum"] == sum(h["loss_pct_sum"] for h in hours)
    assert d["rtt_min_ms"] == 20.0 and d["rtt_max_ms"] == 20.0 + 23 + 8
    merged = Histogram()
    for h in hours:
        merged.merge(Histogram.from_fields(h))
    assert Histogram.from_fields(d).counts == merged.counts
    assert hourly.unpack_buckets(str(d["rtt_buckets"])) == merged.counts
    bare = hourly.day_fields([(H + 7 * 3600 + 5, hours[-1])])
    assert "rtt_min_ms" not in bare and bare["rtt_buckets"] == ""
    assert bare["observed_hours"] == ",".join(["0"] * 24)


def test_finite_takes_only_finite_numbers():
    assert hourly.finite(3) == 3.0 and hourly.finite(2.5) == 2.5
    for bad in (None, "7", True, float("nan"), float("inf"), 10 ** 400, [1]):
        assert hourly.finite(bad) is None


def test_packed_hours_and_buckets_read_back_exactly_or_are_refused():
    from kit.summaries import Rejected, packed_hours, packed_latency

    secs = [3600.0, 0.0, 1210.5, 0.1 + 0.2] + [3599.999999] * 20
    assert packed_hours(hourly.pack_hours(secs)) == secs
    counts = {0: 1, 200: 7, hourly.LAST: 2}
    text = hourly.pack_buckets(counts)
    assert hourly.unpack_buckets(text) == counts and hourly.unpack_buckets("") == {}
    lat = packed_latency({"rtt_buckets": text, "rtt_count": 10, "ping_rounds": 10})
    assert lat.hist.counts == counts
    for bad in (None, 7, "", "3600", ",".join(["1"] * 25), ",".join(["-1"] * 24),
                ",".join(["nan"] * 24), ",".join(["x"] * 24), ",".join(["3600.5"] * 24)):
        with pytest.raises(Rejected) as r:
            packed_hours(bad)
        assert r.value.reason == "bad_summary"
    for bad, n in (("200:3,200:4", 7), (f"{hourly.LAST + 1}:1", 1), ("1:2:3", 2), ("a:1", 1),
                   ("1:-1", 0), (" 1:1", 1), ("1:1,", 1), ("٣:1", 1), (5, 0), ("1:2", 3)):
        with pytest.raises(Rejected) as r:
            packed_latency({"rtt_buckets": bad, "rtt_count": n, "ping_rounds": 10})
        assert r.value.reason == "bad_histogram"
