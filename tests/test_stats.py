"""echo_stats: loss and RTT statistics over one round of echoes (pure)."""

import math

import pytest
from hypothesis import given, strategies as st

from agent.probes.stats import echo_stats

CASES = [
    # id, sent, rtts, expected (exact dict)
    ("all-lost", 3, [None, None, None],
     {"sent": 3, "received": 0, "loss_pct": 100.0}),
    ("nothing-sent", 0, [],
     {"sent": 0, "received": 0, "loss_pct": 100.0}),
    ("one-reply", 1, [12.5],
     {"sent": 1, "received": 1, "loss_pct": 0.0,
      "rtt_min_ms": 12.5, "rtt_avg_ms": 12.5, "rtt_max_ms": 12.5}),
    ("one-of-four", 4, [None, 8.0, None, None],
     {"sent": 4, "received": 1, "loss_pct": 75.0,
      "rtt_min_ms": 8.0, "rtt_avg_ms": 8.0, "rtt_max_ms": 8.0}),
    ("two-replies", 2, [10.0, 14.0],
     {"sent": 2, "received": 2, "loss_pct": 0.0,
      "rtt_min_ms": 10.0, "rtt_avg_ms": 12.0, "rtt_max_ms": 14.0, "jitter_ms": 4.0}),
    ("jitter-skips-lost", 5, [10.0, None, 20.0, None, 15.0],
     # received in send order: 10, 20, 15 -> |20-10|, |15-20| -> (10 + 5) / 2
     {"sent": 5, "received": 3, "loss_pct": 40.0,
      "rtt_min_ms": 10.0, "rtt_avg_ms": 15.0, "rtt_max_ms": 20.0, "jitter_ms": 7.5}),
    ("jitter-uses-send-order", 3, [30.0, 10.0, 20.0],
     # not sorted: |10-30| + |20-10| = 30 over 2 gaps
     {"sent": 3, "received": 3, "loss_pct": 0.0,
      "rtt_min_ms": 10.0, "rtt_avg_ms": 20.0, "rtt_max_ms": 30.0, "jitter_ms": 15.0}),
    ("steady", 4, [5.0, 5.0, 5.0, 5.0],
     {"sent": 4, "received": 4, "loss_pct": 0.0,
      "rtt_min_ms": 5.0, "rtt_avg_ms": 5.0, "rtt_max_ms": 5.0, "jitter_ms": 0.0}),
    ("zero-rtt-is-a-reply", 2, [0.0, None],
     {"sent": 2, "received": 1, "loss_pct": 50.0,
      "rtt_min_ms": 0.0, "rtt_avg_ms": 0.0, "rtt_max_ms": 0.0}),
    ("ints-become-floats", 2, [3, 5],
     {"sent": 2, "received": 2, "loss_pct": 0.0,
      "rtt_min_ms": 3.0, "rtt_avg_ms": 4.0, "rtt_max_ms": 5.0, "jitter_ms": 2.0}),
]


@pytest.mark.parametrize("sent, rtts, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_echo_stats(sent, rtts, expected):
    got = echo_stats(sent, rtts)
    assert got == expected
    for key, value in got.items():
        assert type(value) is (int if key in ("sent", "received") else float), key


@pytest.mark.parametrize("sent, rtts", [
    pytest.param(3, [1.0, 2.0], id="too-few-entries"),
    pytest.param(1, [1.0, 2.0], id="too-many-entries"),
    pytest.param(-1, [], id="negative-sent"),
    pytest.param(1, [-0.5], id="negative-rtt"),
    pytest.param(1, [math.nan], id="nan-rtt"),
    pytest.param(1, [math.inf], id="infinite-rtt"),
])
def test_echo_stats_rejects_caller_bugs(sent, rtts):
    with pytest.raises(ValueError):
        echo_stats(sent, rtts)


def test_returns_no_sentinels():
    # nothing came back: 100 % loss, and no rtt_* or jitter_ms at all (left out, never -1 or 0)
    assert echo_stats(2, [None, None]) == {"sent": 2, "received": 0, "loss_pct": 100.0}


rtt_lists = st.lists(st.one_of(st.none(), st.floats(min_value=0, max_value=60_000,
                                                     allow_nan=False, allow_infinity=False)),
                     max_size=200)


@given(rtt_lists)
def test_invariants(rtts):
    s = echo_stats(len(rtts), rtts)
    received = sum(r is not None for r in rtts)
    assert s["sent"] == len(rtts) and s["received"] == received
    assert 0.0 <= s["loss_pct"] <= 100.0
    assert ("rtt_avg_ms" in s) == (received >= 1)
    assert ("jitter_ms" in s) == (received >= 2)
    if received:
        assert s["rtt_min_ms"] <= s["rtt_avg_ms"] <= s["rtt_max_ms"]
    if received >= 2:
        assert 0.0 <= s["jitter_ms"] <= s["rtt_max_ms"] - s["rtt_min_ms"]


@given(st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=50),
       st.integers(min_value=0, max_value=50))
def test_losses_only_change_loss(rtts, lost):
    """Appending lost echoes changes loss_pct and nothing about the RTT statistics."""
    clean = echo_stats(len(rtts), rtts)
    lossy = echo_stats(len(rtts) + lost, rtts + [None] * lost)
    assert lossy["loss_pct"] == pytest.approx(100.0 * lost / (len(rtts) + lost))
    for key in clean.keys() - {"sent", "loss_pct"}:
        assert lossy[key] == clean[key]
