"""agent/alerts/rules.py and words.py: which alerts are due, and what they say (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from agent.alerts import rules, words
from agent.alerts.model import Alert, alert_id
from agent.model import Episode

T0 = datetime(2026, 12, 5, 5, 0, tzinfo=UTC)     # 10:00 in Karachi
PK = ZoneInfo("Asia/Karachi")
P = rules.Params(agent="a1", tags={"agent": "a1", "region": "PK-PB"}, tz=PK)


def ep(start_s: float, length_s: float | None, *, type="connectivity", cause="isp", id=None,
       **details) -> Episode:
    start = T0 + timedelta(seconds=start_s)
    end = None if length_s is None else start + timedelta(seconds=length_s)
    return Episode(id=id or f"{type}:{start_s}", type=type, cause=cause, start=start, end=end,
                   duration_s=length_s or 0.0, sustained=False, details=details)


def events(made):
    return sorted(m.alert.event for m in made)


@pytest.mark.parametrize("episode, now_s, expected", [
    (ep(0, None), 59, []),
    (ep(0, None), 60, ["outage_start"]),
    (ep(0, 20), 600, []),                                  # a blip: neither start nor end
    (ep(0, 1020), 1100, ["outage_end"]),
    (ep(0, None, type="power", cause="ac_lost", source="battery"), 61, ["power_start"]),
    (ep(0, 300, type="power", cause="host_down", source="host"), 400, ["power_end"]),
    (ep(0, None, type="interference", cause="tls", target="www.upwork.com", how="reset"), 61,
     ["interference_start"]),
    (ep(0, None, type="degraded", cause="isp"), 600, []),
], ids=["open-too-short", "open-debounced", "blip", "closed", "power-cut", "host-down",
        "blocked", "degraded-not-alerted"])
def test_debounce(episode, now_s, expected):
    assert events(rules.due([episode], T0 + timedelta(seconds=now_s), P)) == expected


def test_an_end_replaces_its_unsent_start_and_says_both():
    made = rules.due([ep(120, 1020)], T0 + timedelta(hours=1), P)
    (m,) = made
    assert m.replaces == ("outage_start",) and m.about == "connectivity:120"
    assert m.alert.text == ("Internet was down 10:02-10:19, 17 min: the ISP's side (your router "
                            "answers, the internet does not).")
    assert m.alert.start == T0 + timedelta(seconds=120)
    assert m.alert.end == T0 + timedelta(seconds=1140) and m.alert.duration_s == 1020


def test_ids_are_stable_and_distinct():
    a = rules.due([ep(0, None)], T0 + timedelta(seconds=70), P)[0].alert
    b = rules.due([ep(0, None)], T0 + timedelta(seconds=500), P)[0].alert
    assert a.id == b.id  # the same alert made again later is the same alert
    c = rules.due([ep(0, 500)], T0 + timedelta(seconds=600), P)[0].alert
    assert c.id != a.id


def test_flapping_gives_one_alert_then_quiet_until_it_settles():
    # six 70 s drops, 4 minutes apart: the fourth makes the line unstable
    eps = [ep(i * 240, 70, id=f"c{i}") for i in range(6)]
    made = rules.due(eps, T0 + timedelta(seconds=6 * 240), P)
    assert events(made).count("line_unstable") == 1
    ends = sorted(m.about for m in made if m.alert.event == "outage_end")
    assert ends == ["c0", "c1", "c2"]           # before the line was called unstable
    (u,) = [m.alert for m in made if m.alert.event == "line_unstable"]
    assert u.title == "Line unstable: 4 drops in 12 min"
    # a long outage while unstable still rings, after five debounces
    long = ep(6 * 240, None, id="long")
    assert "outage_start" not in events(rules.due([*eps, long], long.start + timedelta(seconds=299), P))
    assert "outage_start" in events(rules.due([*eps, long], long.start + timedelta(seconds=300), P))
    # settled: 30 minutes without a drop, then a drop alerts as usual
    later = ep(5 * 240 + 1800 + 60, 90, id="later")
    assert "outage_end" in events(rules.due([*eps, later], later.end + timedelta(seconds=5), P))


def test_the_unstable_alert_keeps_its_id_when_its_episode_closes():
    # an episode's start is rebased on its monotonic length when it closes: milliseconds move
    eps = [ep(i * 240, 70, id=f"c{i}") for i in range(3)]
    open_ = ep(720, None, id="c3")
    closed = Episode(id="c3", type="connectivity", cause="isp",
                     start=open_.start + timedelta(milliseconds=3),
                     end=open_.start + timedelta(seconds=70), duration_s=69.997, sustained=False)
    now = T0 + timedelta(seconds=800)
    (a,) = [m for m in rules.due([*eps, open_], now, P) if m.alert.event == "line_unstable"]
    (b,) = [m for m in rules.due([*eps, closed], now, P) if m.alert.event == "line_unstable"]
    assert a.alert.id == b.alert.id and a.about == b.about


def test_flapping_off():
    eps = [ep(i * 100, 10) for i in range(10)]
    p = rules.Params(agent="a", flap_changes=0)
    assert rules.unstable_periods(eps, p) == []


def test_power_cut_on_ups_says_charge_and_runtime_and_low_once():
    cut = ep(0, None, type="power", cause="ac_lost", source="ups")
    ups = rules.Ups(charge_pct=64, runtime_s=1320)
    (m,) = rules.due([cut], T0 + timedelta(seconds=65), P, ups=ups)
    assert m.alert.text == "Power cut since 10:00 (on UPS), 64 %, about 22 min left."
    low = rules.Ups(charge_pct=25, runtime_s=400)
    made = rules.due([cut], T0 + timedelta(seconds=900), P, ups=low)
    assert events(made) == ["power_start", "ups_low"]
    (u,) = [m.alert for m in made if m.alert.event == "ups_low"]
    assert u.urgency == "critical" and "25 %" in u.text and "about 7 min left" in u.text
    # the UPS's own flag, above the threshold
    assert "ups_low" in events(rules.due([cut], T0 + timedelta(seconds=900), P,
                                         ups=rules.Ups(charge_pct=80, low=True)))
    # power back: the end replaces an unsent start and an unsent low-battery alert
    done = ep(0, 1000, type="power", cause="ac_lost", source="ups")
    (end,) = rules.due([done], T0 + timedelta(seconds=1100), P, ups=low)
    assert end.replaces == ("power_start", "ups_low")


def test_speed_below_plan():
    p = rules.Params(agent="a", plan_mbps=20, tz=PK)
    fast, slow = (rules.Speed(T0 + timedelta(hours=h), mbps) for h, mbps in ((1, 12), (2, 4.2)))
    (m,) = rules.due([], T0 + timedelta(hours=3), p, speeds=[fast, slow])
    assert m.alert.event == "speed_below_plan"
    assert m.alert.text == "Speed test at 12:00: 4.2 Mbit/s down, 21 % of the 20 Mbit/s you pay for."
    assert rules.due([], T0, rules.Params(agent="a"), speeds=[slow]) == []  # no plan: no alert


def test_store_trouble():
    (m,) = rules.due([], T0, P, trouble=rules.Trouble(T0, "disk full"))
    assert m.alert.event == "store_trouble" and m.alert.urgency == "critical"
    assert "disk full" in m.alert.text


def test_interference_and_throttling_words():
    blocked = ep(0, 900, type="interference", cause="tls", target="www.upwork.com", how="reset")
    (m,) = rules.due([blocked], T0 + timedelta(seconds=1000), P)
    assert m.alert.text == ("www.upwork.com was failing 10:00-10:15, 15 min: its secure "
                            "connection is cut (reset).")
    slow = ep(0, None, type="interference", cause="throttled", target="www.youtube.com",
              how="slow", kind="throttle")
    (s,) = rules.due([slow], T0 + timedelta(seconds=100), P)
    assert s.alert.title == "www.youtube.com slowed down"


def test_digest():
    eps = [ep(0, 600), ep(3600, 1200), ep(7200, 300, type="power", cause="ac_lost",
                                           source="battery")]
    a = rules.digest(eps, [rules.Speed(T0, 10.0)], T0 + timedelta(hours=12), P)
    assert a.text == ("2 internet outage(s), 30 min in all (longest 20 min). 1 power cut(s), "
                      "5 min in all. 1 speed test(s), median 10 Mbit/s down.")
    quiet = rules.digest([], [], T0, P)
    assert quiet.text.startswith("No outages")


@pytest.mark.parametrize("seconds, said", [
    (0, "0 s"), (45, "45 s"), (89, "89 s"), (90, "2 min"), (1020, "17 min"), (5880, "1 h 38 min"),
    (7200, "2 h"), (3 * 86400 + 7200, "3 d 2 h")])
def test_length_words(seconds, said):
    assert words.length(seconds) == said


def test_times_in_the_users_zone_with_the_day_when_not_today():
    t = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)  # 01:00 on the 5th in Karachi
    assert words.clock(t, PK, T0) == "01:00"
    assert words.clock(t, PK, T0 + timedelta(days=1)) == "Sat 5 Dec 01:00"


def test_alert_json_round_trip_and_contract_keys():
    (m,) = rules.due([ep(0, 1020)], T0 + timedelta(hours=1), P)
    payload = m.alert.payload()
    for key in ("id", "event", "type", "cause", "start", "end", "duration_s", "agent", "text"):
        assert key in payload
    assert payload["start"] == "2026-12-05T05:00:00Z" and payload["end"] == "2026-12-05T05:17:00Z"
    assert Alert.from_json(m.alert.to_json()) == m.alert
    with pytest.raises(ValueError):
        Alert.from_json('{"id": 1}')


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20000), st.integers(0, 3000)), max_size=30),
       st.integers(0, 30000))
def test_never_an_end_without_the_debounce_and_one_alert_per_event_and_episode(spans, now_s):
    eps = [ep(s, n, id=f"e{i}") for i, (s, n) in enumerate(spans)]
    made = rules.due(eps, T0 + timedelta(seconds=25000 + now_s), P)
    ids = [m.alert.id for m in made]
    assert len(ids) == len(set(ids))
    for m in made:
        if m.alert.event == "outage_end":
            assert m.alert.duration_s >= P.min_duration_s


def test_the_agent_with_alerts_does_not_load_openssl_to_name_them():
    """An alert's id is a BLAKE2s: CPython's own, not hashlib's, which loads OpenSSL (about
    4 MB resident) into every agent, alerts or not (bench/footprint.py found it)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys\nimport agent.runner, agent.jobs.alerts, agent.alerts.channels\n"
            "from agent.alerts.model import alert_id\nalert_id('e', 'outage_start')\n"
            "print(sorted({'hashlib', '_hashlib', 'ssl'} & set(sys.modules)))\n")
    # Unmeasured: coverage, when the test command measures the processes tests start, loads hashlib.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[1], env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
    import hashlib  # the same id as hashlib's BLAKE2s gives: ids stay stable across Pythons

    assert alert_id("e", "outage_start") == hashlib.blake2s(
        b"e\x1foutage_start", digest_size=10).hexdigest()
