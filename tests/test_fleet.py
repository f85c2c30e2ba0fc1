"""The synthetic fleet (tests/fleet.py) writes what agents write, and its truth is what it wrote.

The strongest checks run the agent's own code over the fleet's rows: the line encoder
(kit.lineproto.Encoder, over the rows as the store keeps them) must give the same bytes, and the
outage tracker (agent.outage.step, fed every round) must find the same episodes.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict

import pytest

from agent import outage
from agent.model import from_ns, to_ns
from agent.store import Store
from kit.lineproto import Encoder
from kit.records import Dataset, Episode, ObsHour
from tests.catalog import assert_listed
from tests.fleet import BAD_KINDS, NS, REGIONS, Fleet

START = 1_790_812_800  # 2026-10-01T00:00:00Z


class Cached:
    """A fleet whose samples are made once per module (they are the slow part of these tests)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.rows = {i: list(fleet.samples(i)) for i in range(fleet.n)}

    def __getattr__(self, name):
        return getattr(self.fleet, name)

    def samples(self, i: int):
        return iter(self.rows[i])


@pytest.fixture(scope="module")
def fleet():
    return Cached(Fleet(16, 3, START, round_s=120, seed=7))


@pytest.fixture(scope="module")
def bad_fleet():
    return Cached(Fleet(12, 3, START, round_s=120, seed=3, bad=True))


def digest(f: Fleet) -> str:
    h = hashlib.sha256()
    for chunk in f.lines(chunk=5000):
        h.update(chunk)
    return h.hexdigest()


def test_same_arguments_same_bytes():
    a, b = Fleet(6, 2, START, round_s=30, seed=5, bad=True), Fleet(6, 2, START, round_s=30, seed=5, bad=True)
    assert digest(a) == digest(b)
    assert digest(Fleet(6, 2, START, round_s=30, seed=6, bad=True)) != digest(a)
    assert b"".join(a.lines(workers=2)) == b"".join(b.lines(chunk=777))  # processes, chunking: same bytes
    assert a.truth()["bad"] == b.truth()["bad"]


def test_members_look_like_the_brief(fleet):
    big = Fleet(300, 1, START, round_s=300)
    specs = big.specs
    regions = Counter(s.region for s in specs)
    assert set(regions) <= set(REGIONS)
    assert regions.most_common(2)[0][0] == "PK-PB" and regions["PK-SD"] > regions["PK-KP"]
    assert {s.device for s in specs} == {"laptop", "ups", "pi"}
    assert any("," in s.isp and " " in s.isp for s in specs)
    assert any(any("\u0600" <= ch <= "\u06ff" for ch in s.city) for s in specs)  # an Urdu city name
    assert [s.agent for s in specs[:2]] == ["a0001", "a0002"]
    assert any(s.join_ns > big.start_ns for s in fleet.specs)  # a late joiner
    # feeders are one city, at most 10 agents
    feeders = defaultdict(set)
    for s in specs:
        feeders[s.feeder].add((s.home, s.city_key))
    assert all(len(v) == 1 for v in feeders.values())


def test_rows_use_only_the_catalogue(bad_fleet):
    seen = set()
    for i in range(bad_fleet.n):
        seen |= assert_listed(bad_fleet.samples(i))
    assert {m for m, _ in seen} == {"round", "ping", "outage", "speedtest"}
    assert {("outage", "charge_start_pct"), ("ping", "jitter_ms"), ("speedtest", "download_bps")} <= seen


@pytest.mark.parametrize("which", ["fleet", "bad_fleet", "ten_seconds"])
def test_lines_are_the_agent_encoders_bytes(which, request):
    """Samples stored as the store keeps them (JSON) and encoded by kit.lineproto.Encoder give
    exactly the fleet's fast lines."""
    f = Fleet(3, 1, START, round_s=10, seed=9) if which == "ten_seconds" else request.getfixturevalue(which)
    enc = Encoder()
    series: dict = {}
    for i in range(f.n):
        rows = []
        for n, s in enumerate(f.samples(i)):
            tags = json.dumps(dict(sorted(s.tags.items())), separators=(",", ":"), ensure_ascii=False)
            sid = series.setdefault((s.measurement, tags), len(series))
            fields = json.dumps(dict(s.fields), separators=(",", ":"), ensure_ascii=False)
            rows.append((n, sid, s.measurement, tags, fields, s.time_ns))
        lines = []
        for _, ln in enc.encode_rows(rows):
            assert isinstance(ln, str), ln
            lines.append(ln)
        assert b"".join(f.lines([i])) == ("\n".join(lines) + "\n").encode(), f.specs[i]


def _outage_rows(f: Fleet, i: int):
    return [s for s in f.samples(i) if s.measurement == "outage"]


def test_outage_rows_are_the_truth(fleet):
    truth = fleet.truth()
    for i, spec in enumerate(fleet.specs):
        t = truth["agents"][spec.agent]
        rows = [s for s in _outage_rows(fleet, i) if s.tags["type"] != "degraded"]
        got = sorted((s.tags["type"], s.tags["cause"], s.time_ns / NS, s.fields["duration_s"]) for s in rows)
        want = sorted((e.type, e.cause, e.start, e.duration_s) for e in t["power"] + t["connectivity"])
        assert got == want, spec.agent
        for s in rows:
            f = s.fields
            kind = s.tags["type"] + (f":{s.tags['source']}" if s.tags["type"] == "power" else "")
            assert f["episode_id"] == f"{kind}:{s.time_ns}"
            assert f["end_unix_ms"] == (s.time_ns + round(f["duration_s"] * 1e9)) // 1_000_000
            assert f["sustained"] == (f["duration_s"] > 300) and f["end_observed"] is True
            if s.tags["type"] == "power":
                assert s.tags["source"] == {"laptop": "battery", "ups": "ups", "pi": "host"}[spec.device]
                assert s.tags["cause"] == ("host_down" if spec.device == "pi" else "ac_lost")


def test_agent_tracker_finds_the_same_episodes():
    """agent.outage.step over every round of every agent closes exactly the fleet's connectivity
    and degraded episodes (ids, causes, durations, failed rounds), at a 10 s cadence."""
    f = Fleet(6, 2, START, round_s=10, seed=11)
    assert {s.device for s in f.specs} == {"laptop", "ups", "pi"}
    params = outage.Params(max_gap_s=max(60.0, 6 * f.round_s))
    causes = Counter()
    for i in range(f.n):
        on_batt = [(to_ns(e.start), to_ns(e.end)) for e in f.episodes(i)
                   if e.type == "power" and e.details.get("source") in ("battery", "ups")]
        tracker, closed = outage.Tracker(), []
        # The rounds straight from the plan (what samples() formats: the encoder test above shows
        # that samples and lines agree), without building a Sample per round.
        p = f._plan(i)
        for k0, k1 in p.ranges:
            for k in range(k0, k1):
                t = p.base + k * f.R
                fields = f._round_ping(p.pools, p.special.get(k), p.idx[k])[0][0]
                rnd = outage.RoundResult(time=from_ns(t), mono=(t - f.start_ns) / NS, status=fields["status"],
                                         cause=fields.get("cause"),
                                         on_battery=any(a <= t < b for a, b in on_batt))
                tracker, changes = outage.step(tracker, rnd, params)
                closed += [c.episode for c in changes if c.kind == "closed"]
        causes.update(e.cause for e in closed)
        want = [e for e in f.episodes(i) if e.type in ("connectivity", "degraded")]
        key = lambda e: (e.id, e.type, e.cause, e.start, e.end, e.duration_s, e.sustained,  # noqa: E731
                         e.details["failed_rounds"], e.details.get("end_observed", True))
        assert sorted(map(key, closed)) == sorted(map(key, want)), f.specs[i]
        assert not outage.in_progress(tracker, params)
    assert causes["power"] and causes["loss"] and causes["isp"]


def test_laptops_lose_the_line_in_a_cut_ups_and_pis_do_not(fleet):
    causes = defaultdict(Counter)
    truth = fleet.truth()["agents"]
    for spec in fleet.specs:
        causes[spec.device].update(e.cause for e in truth[spec.agent]["connectivity"])
    assert causes["laptop"]["power"] >= 3
    assert causes["pi"]["power"] == 0


def test_observed_time_is_rounds_times_interval(fleet, bad_fleet):
    for f in (fleet, bad_fleet):
        truth = f.truth()
        flood = truth["bad"].get("flooding", {}).get("agent")
        for i, spec in enumerate(f.specs):
            t = truth["agents"][spec.agent]
            per_hour = Counter()
            for s in f.samples(i):
                if s.measurement == "round":
                    per_hour[s.time_ns // (3600 * NS) * 3600] += s.fields["interval_s"]
            copies = 10 if spec.agent == flood else 1
            assert sum(per_hour.values()) == pytest.approx(t["observed_s"] * copies)
            assert t["observed_s"] == t["rounds"] * f.round_s
            assert {h: v / copies for h, v in per_hour.items()} == pytest.approx(t["observed_by_hour"])
            assert all(0 < v <= 3600 for v in t["observed_by_hour"].values())


def test_switched_off_and_not_yet_joined_mean_no_rows(fleet):
    some_off = 0
    for i, spec in enumerate(fleet.specs):
        p = fleet._plan(i)
        some_off += bool(p.off)
        holes = list(p.off) + [(0, spec.join_ns)]
        for s in fleet.samples(i):
            t = s.time_ns
            assert not any(a <= t < b for a, b in holes), (spec.agent, s)
            if s.measurement == "outage":
                end = t + int(s.fields["duration_s"] * NS)
                assert not any(a < end and t < b for a, b in holes), (spec.agent, s)
    assert some_off


def test_pi_power_cuts_leave_no_rounds(fleet):
    seen = 0
    for i, spec in enumerate(fleet.specs):
        if spec.device != "pi":
            continue
        times = [s.time_ns for s in fleet.samples(i) if s.measurement == "round"]
        for e in fleet.episodes(i):
            if e.cause == "host_down":
                seen += 1
                a, b = to_ns(e.start), to_ns(e.end)
                assert not any(a < t < b for t in times)
                assert a in times  # it starts at the last heartbeat: the last round before the cut
    assert seen


def test_power_episodes_follow_their_feeder(fleet):
    """A laptop's or UPS's power episodes start within 90 s (+ one 5 s poll) of its feeder's cut:
    regional events."""
    n = 0
    for i, spec in enumerate(fleet.specs):
        starts = [ev.start_ns for ev in fleet.power_events if ev.feeder == spec.feeder]
        for e in fleet.episodes(i):
            if e.type == "power" and e.cause == "ac_lost":
                n += 1
                t = to_ns(e.start)
                assert any(-92 * NS <= t - s <= 96 * NS for s in starts), (spec.agent, e)
    assert n
    feeders = Counter(ev.feeder for ev in fleet.power_events)
    assert max(feeders.values()) >= 3


def test_isp_events_hit_most_of_the_isps_agents():
    f = Fleet(40, 8, START, round_s=60, seed=2)
    truth = f.truth()["agents"]
    hit = total = 0
    for ev in f.isp_events:
        members = [s for s in f.specs if (s.home, s.isp) == (ev.region, ev.isp)]
        for s in members:
            total += 1
            hit += any(abs(e.start - ev.start_ns / NS) <= 200 and e.cause in ("isp", "power")
                       for e in truth[s.agent]["connectivity"])
    assert total and hit / total >= 0.5


def test_bad_records_are_in_the_rows(bad_fleet):
    truth = bad_fleet.truth()
    bad = truth["bad"]
    assert set(bad) == set(BAD_KINDS) and all(b["count"] == 1 for b in bad.values())
    by_agent = {s.agent: i for i, s in enumerate(bad_fleet.specs)}
    rows = {k: list(bad_fleet.samples(by_agent[b["agent"]])) for k, b in bad.items()}
    assert [s.fields["duration_s"] for s in rows["negative_duration"]
            if s.measurement == "outage" and s.fields["duration_s"] < 0] == [-120.0]
    future = [s for s in rows["future_start"] if s.measurement == "outage" and s.time_ns >= bad_fleet.end_ns]
    assert len(future) == 1 and future[0].time_ns == bad_fleet.end_ns + 51 * 3600 * NS
    ids = bad["overlapping_power"]["episode_ids"]
    power = {s.fields["episode_id"]: s for s in rows["overlapping_power"] if s.measurement == "outage"}
    (a, b) = (power[ids[0]], power[ids[1]])
    assert a.time_ns < b.time_ns < a.time_ns + a.fields["duration_s"] * NS
    assert [s.fields["rtt_avg_ms"] for s in rows["negative_rtt"]
            if s.measurement == "ping" and s.fields.get("rtt_avg_ms", 0) < 0] == [-5.0]
    assert [s.fields["download_bps"] for s in rows["huge_download"]
            if s.measurement == "speedtest" and s.fields.get("download_bps", 0) > 1e12] == [1e13]
    assert {s.tags["region"] for s in rows["unknown_region"]} == {"PK-XX"}
    flood = bad["flooding"]
    rounds = [s for s in rows["flooding"] if s.measurement == "round"]
    assert len(rounds) == 10 * truth["agents"][flood["agent"]]["rounds"]
    assert sum(s.fields["interval_s"] for s in rounds) == pytest.approx(flood["apparent_observed_s"])
    assert flood["apparent_observed_s"] == 10 * flood["observed_s"]
    # the truth itself holds none of them
    t = truth["agents"]
    assert all(e.duration_s >= 0 and e.start < bad_fleet.end for a in t.values() for e in a["connectivity"])
    assert not any(s.download_bps > 1e12 for s in bad_fleet.dataset().speeds)


def test_dataset_is_the_truth(fleet):
    truth = fleet.truth()
    ds = fleet.dataset()
    assert isinstance(ds, Dataset) and ds.start == fleet.start and ds.end == fleet.end
    assert sum(o.observed_s for o in ds.obs) == pytest.approx(
        sum(a["observed_s"] for a in truth["agents"].values()))
    assert len(ds.episodes) == sum(len(a["power"]) + len(a["connectivity"]) for a in truth["agents"].values())
    answered = sum(1 for i in range(fleet.n) for s in fleet.samples(i)
                   if s.measurement == "ping" and s.fields["received"] > 0)
    assert sum(d.rounds for d in ds.pings) == answered < truth["rows"]["ping"]
    for d in ds.pings:
        assert d.rtt_p50_ms <= d.rtt_p95_ms and 0 <= d.loss_pct < 100
    assert len(ds.speeds) == sum(a["speedtests_ok"] for a in truth["agents"].values())
    day2 = fleet.dataset(fleet.start + 86400, fleet.start + 2 * 86400)
    assert {o.hour // 86400 for o in day2.obs} == {(fleet.start + 86400) // 86400}
    assert all(fleet.start + 86400 <= e.start < fleet.start + 2 * 86400 for e in day2.episodes)


def test_episode_dataset():
    ds = Fleet.episode_dataset(20_000, agents=50, days=10, seed=4)
    assert len(ds.episodes) == 20_000 and all(isinstance(e, Episode) for e in ds.episodes[:10])
    assert all(isinstance(o, ObsHour) and o.observed_s == 3600.0 for o in ds.obs[:10])
    assert len({o.unit for o in ds.obs}) == 50
    last = {}
    for e in sorted(ds.episodes, key=lambda e: (e.unit, e.type, e.start)):
        k = (e.unit, e.type)
        assert e.duration_s > 0 and ds.start <= e.start and e.end <= ds.end
        assert k not in last or last[k] <= e.start
        last[k] = e.end
    types = Counter(e.type for e in ds.episodes)
    assert 0.5 < types["power"] / len(ds.episodes) < 0.6


def test_write_store(bad_fleet, tmp_path):
    i = bad_fleet.bad_agents["negative_duration"]
    n = bad_fleet.write_store(i, tmp_path / "state")
    store = Store.open(tmp_path / "state")
    try:
        assert store.count() == n == sum(1 for _ in bad_fleet.samples(i))
        assert {e.id for e in store.episodes()} == {e.id for e in bad_fleet.episodes(i)}
        assert any(e.duration_s < 0 for e in store.episodes())
    finally:
        store.close()


def test_written_to_influxdb_1_6_7(influx, bad_fleet):
    truth = bad_fleet.truth()
    stats = bad_fleet.write_influx(influx.url, influx.database, batch_lines=5000)
    assert stats["points"] == sum(truth["rows"].values())
    # No upper time bound in InfluxQL means now(); the future outage needs an explicit one.
    q = "SELECT count({f}) FROM {m} WHERE time >= 0 AND time < '2100-01-01T00:00:00Z'"
    got = {m: sum(int(v[1]) for s in influx.series(q.format(f=f, m=m)) for v in s["values"])
           for m, f in (("round", "interval_s"), ("ping", "sent"), ("outage", "duration_s"),
                        ("speedtest", "status"))}
    assert got == truth["rows"]
    isps = {v[1] for v in influx.series('SHOW TAG VALUES FROM "round" WITH KEY = "isp"')[0]["values"]}
    cities = {v[1] for v in influx.series('SHOW TAG VALUES FROM "round" WITH KEY = "city"')[0]["values"]}
    assert isps == {s.isp for s in bad_fleet.specs} and cities == {s.city for s in bad_fleet.specs}
    # InfluxDB's own aggregates agree with the truth's (percentile() is nearest rank).
    window = f"time >= {bad_fleet.start_ns} AND time < {bad_fleet.end_ns}"
    got = {}
    for s in influx.series('SELECT percentile("rtt_avg_ms", 50), percentile("rtt_avg_ms", 95), '
                           'mean("loss_pct"), '
                           f'count("loss_pct") FROM "ping" WHERE "loss_pct" < 100 AND {window} '
                           'GROUP BY time(1d), "agent" fill(none)', epoch="s"):
        for t, p50, p95, loss, n in s["values"]:
            got[(s["tags"]["agent"], t)] = (p50, p95, pytest.approx(loss), n)
    want = {(d.unit.agent, d.day): (d.rtt_p50_ms, d.rtt_p95_ms, d.loss_pct, d.rounds)
            for d in bad_fleet.dataset().pings}
    assert got == want
    flood = truth["bad"]["flooding"]["agent"]
    obs = {}
    for s in influx.series(f'SELECT sum("interval_s") FROM "round" WHERE {window} '
                           'GROUP BY time(1h), "agent" fill(none)',
                           epoch="s"):
        for t, v in s["values"]:
            obs[(s["tags"]["agent"], t)] = v / (10 if s["tags"]["agent"] == flood else 1)
    assert obs == pytest.approx({(a, h): v for a, t in truth["agents"].items()
                                 for h, v in t["observed_by_hour"].items()})
