"""The hourly summaries job (agent/jobs/summaries.py) on the real store, with the fake line of
tests/fakenet.py and a fake clock: rows rewritten in place, hours split exactly, late facts,
restarts, and what goes to the outbox with ``influx.send``."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings, strategies as st

from agent.clock import FakeClock
from agent.config import parse
from agent.jobs.summaries import BACKFILL_HOURS
from agent.model import Sample
from agent.runner import Agent
from agent.store import HELD, LOCAL_ONLY
from kit import hourly
from tests.fakenet import FakeNet, outbox

START = datetime(2026, 3, 1, 9, 50, tzinfo=UTC)   # ten minutes before an hour ends
NS = 1_000_000_000


def agent_for(tmp_path, clock, net, send: str | None = None) -> Agent:
    influx = (f'[influx]\nurl = "http://127.0.0.1:9"\nbucket = "lw"\nsend = "{send}"\n'
              if send else "")
    cfg = parse(f'[agent]\nstate_dir = "{tmp_path}"\nregion = "PK-PB"\nisp = "ptcl"\n'
                f'[probe]\ninterval_s = 10\n{influx}')
    return Agent(cfg, clock=clock, probes=net.probes())


def run(agent: Agent, clock: FakeClock, net: FakeNet, plan: list[tuple[str, int]]) -> None:
    """Rounds every 10 s on the fake line, the line in each state for the given rounds; the
    summaries job every minute, as the scheduler runs it."""
    for state, n in plan:
        net.state = state
        for _ in range(n):
            agent.rounds.run()
            clock.advance(10)
            if int(clock.now().timestamp()) % 60 == 0:
                agent.summaries.run()


def rows(agent: Agent, measurement: str = "hourly") -> list[tuple[int, dict, dict, int]]:
    """(time_ns, tags, fields, sent) of every row of ``measurement``, oldest first."""
    return [(ns, json.loads(t), json.loads(f), sent) for ns, t, f, sent in agent.store._query(
        "SELECT s.time_ns, r.tags, s.fields, s.sent FROM samples s JOIN series r ON"
        " r.id = s.series_id WHERE r.measurement = ? ORDER BY s.time_ns, s.id", (measurement,))]


def watched_s(agent: Agent) -> float:
    return sum(f["interval_s"] for _, _, f, _ in rows(agent, "round"))


def episode_s(agent: Agent, typ: str = "connectivity") -> float:
    return sum(e.duration_s for e in agent.store.episodes(type=typ))


def outage_s(fields: dict) -> float:
    return sum(fields[k] for k in hourly.OUTAGE_FIELDS)


def test_hours_add_up_to_the_watched_time_and_the_episodes(tmp_path):
    clock, net = FakeClock(START), FakeNet()
    agent = agent_for(tmp_path, clock, net)
    # up, then an ISP outage across the 10:00 edge, up again into the next hour
    run(agent, clock, net, [("up", 30), ("isp", 60), ("up", 400)])
    agent.summaries.run()
    hrs = rows(agent)
    assert [ns // NS % 86400 // 3600 for ns, *_ in hrs] == [9, 10, 11]   # one row an hour
    assert all(t["agent"] == agent.id and t["region"] == "PK-PB" and t["isp"] == "ptcl"
               for _, t, _, _ in hrs)
    assert math.isclose(sum(f["observed_s"] for _, _, f, _ in hrs), watched_s(agent))
    [ep] = agent.store.episodes(type="connectivity")
    assert ep.cause == "isp" and ep.end is not None
    assert math.isclose(sum(f["outage_isp_s"] for _, _, f, _ in hrs), ep.duration_s)
    # split exactly at 10:00
    edge = datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp()
    start = ep.start.timestamp()
    assert math.isclose(hrs[0][2]["outage_isp_s"], edge - start)
    assert hrs[0][2]["rounds"] == 60 and hrs[0][2]["echoes_sent"] > 0
    assert hrs[1][2]["rtt_count"] > 0 and hrs[1][2]["rtt_p50_ms"] == 5.0


def test_the_hour_in_progress_is_one_row_rewritten_in_place(tmp_path):
    clock, net = FakeClock(START), FakeNet()
    agent = agent_for(tmp_path, clock, net)
    run(agent, clock, net, [("up", 60)])          # into the 10:00 hour
    seen = []
    for _ in range(5):
        run(agent, clock, net, [("up", 6)])
        agent.summaries.run()
        cur = [r for r in rows(agent) if r[0] // NS % 86400 // 3600 == 10]
        assert len(cur) == 1
        seen.append(cur[0][2]["observed_s"])
    assert seen == sorted(seen) and seen[-1] > seen[0]
    in_outbox = [s for _, s in outbox(agent.store) if s.measurement == "hourly"]
    assert len(in_outbox) == 2    # the closed 09:00 hour and the one version of 10:00


def test_a_restart_inside_the_hour_and_an_agent_gap(tmp_path):
    clock, net = FakeClock(START), FakeNet()
    agent = agent_for(tmp_path, clock, net)
    run(agent, clock, net, [("up", 90)])
    agent.store.close()
    clock.advance(600)                             # stopped 10 minutes, the host stayed up
    again = agent_for(tmp_path, clock, net)
    again.power.recover()
    run(again, clock, net, [("up", 90)])
    again.summaries.run()
    hrs = rows(again)
    assert math.isclose(sum(f["observed_s"] for _, _, f, _ in hrs), watched_s(again))
    gaps = agent_gap = episode_s(again, "agent_gap")
    assert gaps > 0
    assert math.isclose(sum(f["agent_gap_s"] for _, _, f, _ in hrs), agent_gap)
    assert len({ns for ns, *_ in hrs}) == len(hrs)


def test_an_episode_closing_hours_later_rewrites_the_closed_hours(tmp_path):
    clock, net = FakeClock(START), FakeNet()
    agent = agent_for(tmp_path, clock, net)
    run(agent, clock, net, [("up", 6), ("dns", 3 * 360), ("up", 30)])   # three hours down
    agent.summaries.run()
    [ep] = agent.store.episodes(type="connectivity")
    hrs = rows(agent)
    assert math.isclose(sum(f["outage_dns_s"] for _, _, f, _ in hrs), ep.duration_s)
    assert [f["outage_dns_s"] for _, _, f, _ in hrs][1:3] == [3600.0, 3600.0]
    # every closed hour equals a fresh summary of its raw rows: nothing stale is left
    for ns, _, f, _ in hrs:
        h = ns // NS
        spans = [hourly.Span(e.type, e.cause, "", e.start.timestamp(), e.end.timestamp())
                 for e in agent.store.episodes()]
        raw = agent.store.rows_between(("round", "ping", "dns"), h * NS, (h + 3600) * NS)
        want = hourly.summarise(h, rounds=[x[2] for x in raw if x[0] == "round"],
                                pings=[x[2] for x in raw if x[0] == "ping"
                                       and x[1].get("role") == "internet"],
                                dns=[x[2] for x in raw if x[0] == "dns"], spans=spans,
                                now=clock.now().timestamp())
        assert f == want


def test_send_summaries_keeps_raw_rows_local(tmp_path, capsys):
    clock, net = FakeClock(START), FakeNet()
    first = agent_for(tmp_path, clock, net)          # send = all: raw rows wait in the outbox
    run(first, clock, net, [("up", 12)])
    waiting = {s.measurement for _, s in outbox(first.store)}
    assert {"round", "ping", "dns"} <= waiting
    first.store.close()
    agent = agent_for(tmp_path, clock, net, send="summaries")
    run(agent, clock, net, [("up", 30), ("isp", 12), ("up", 60)])
    agent.summaries.run()
    sent = {s.measurement for _, s in outbox(agent.store)}
    assert sent == {"hourly", "daily", "outage"}
    assert all(r[3] == LOCAL_ONLY for r in rows(agent, "round"))  # old and new raw rows
    # status says what stays on the machine
    from agent import show, status
    st = status.collect(agent.cfg, now=clock.now())
    kept = st["store"]["kept_local_rows"]
    assert kept == sum(1 for m in ("round", "ping", "dns") for r in rows(agent, m)) > 0
    show.status(st, tmp_path)
    assert f'{kept} kept here only (influx.send = "summaries")' in capsys.readouterr().out


def test_a_metered_line_forwards_a_growing_hour_every_quarter(tmp_path):
    clock, net = FakeClock(START), FakeNet()
    agent = agent_for(tmp_path, clock, net, send="summaries")
    run(agent, clock, net, [("up", 66)])          # to 10:01, the 10:00 hour's first version
    agent.store.mark_sent(i for i, _ in outbox(agent.store))
    run(agent, clock, net, [("up", 30)])          # 5 more minutes: versions held
    [cur] = [r for r in rows(agent) if r[0] // NS % 86400 // 3600 == 10]
    assert cur[3] == HELD
    run(agent, clock, net, [("up", 60)])          # past a quarter since the last one sent
    [cur] = [r for r in rows(agent) if r[0] // NS % 86400 // 3600 == 10]
    assert cur[3] == 0


def test_catching_up_a_store_without_summaries_a_day_per_run(tmp_path):
    clock, net = FakeClock(START), FakeNet()
    agent = agent_for(tmp_path, clock, net)
    # 30 hours of rounds written by an agent from before the summaries (no summaries job)
    t0 = clock.now()
    agent.store.write([Sample("round", agent.tags, {"status": "up", "interval_s": 10.0, "online": 1},
                              t0 + timedelta(seconds=10 * i)) for i in range(30 * 360)])
    clock.advance(30 * 3600)
    assert agent.summaries.run() > 0
    assert len(rows(agent)) == BACKFILL_HOURS + 1  # a day of closed hours and the current one
    agent.summaries.run()
    assert len(rows(agent)) == 31
    assert math.isclose(sum(f["observed_s"] for _, _, f, _ in rows(agent)), watched_s(agent))


def test_an_hour_whose_raw_rows_are_gone_keeps_its_row_and_gets_late_episode_seconds(tmp_path):
    clock, net = FakeClock(START), FakeNet()
    agent = agent_for(tmp_path, clock, net)
    run(agent, clock, net, [("up", 60), ("lan", 400)])
    agent.summaries.run()
    before = {ns: f for ns, _, f, _ in rows(agent)}
    # retention drops the raw rows of the first two hours while the outage is still open
    cut = (int(clock.now().timestamp()) // 3600) * 3600 * NS
    res = agent.store.prune(clock.now(), clock.now().timestamp() - cut / NS, 1 << 40)
    assert res["expired"] > 0
    run(agent, clock, net, [("up", 20)])
    agent.summaries.run()
    after = {ns: f for ns, _, f, _ in rows(agent)}
    [ep] = agent.store.episodes(type="connectivity")
    for ns in before:
        if ns < cut:
            assert after[ns]["observed_s"] == before[ns]["observed_s"]
    assert math.isclose(sum(f["outage_lan_s"] for f in after.values()), ep.duration_s)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["up", "isp", "lan", "dns"]),
                          st.integers(min_value=1, max_value=500)), min_size=1, max_size=6),
       st.integers(min_value=0, max_value=3599))
def test_property_observed_and_outage_seconds_add_up(tmp_path_factory, plan, offset):
    tmp = tmp_path_factory.mktemp("prop")
    clock = FakeClock(datetime(2026, 3, 1, 8, tzinfo=UTC))
    clock.advance(offset)
    net = FakeNet()
    agent = agent_for(tmp, clock, net)
    run(agent, clock, net, [*plan, ("up", 20)])
    agent.summaries.run()
    hrs = rows(agent)
    assert len({ns for ns, *_ in hrs}) == len(hrs)
    assert math.isclose(sum(f["observed_s"] for _, _, f, _ in hrs), watched_s(agent))
    open_s = sum(e.duration_s for e in agent.store.episodes(type="connectivity"))
    assert math.isclose(sum(outage_s(f) for _, _, f, _ in hrs), open_s, abs_tol=1e-6)


def test_each_day_has_a_daily_row_merging_its_hours(tmp_path):
    clock, net = FakeClock(datetime(2026, 3, 1, 22, 50, tzinfo=UTC)), FakeNet()
    agent = agent_for(tmp_path, clock, net)
    run(agent, clock, net, [("up", 200), ("isp", 30), ("up", 200)])   # across midnight
    agent.summaries.run()
    days = rows(agent, "daily")
    assert [ns // NS % 86400 for ns, *_ in days] == [0, 0] and len({ns for ns, *_ in days}) == 2
    packed = []
    for ns, tags, f, _ in days:
        hours = [h for h in rows(agent) if ns <= h[0] < ns + 86400 * NS]
        assert tags == hours[0][1]
        others = [(m, t, fs, n) for m in (hourly.OUTAGE, hourly.SPEEDTEST)
                  for n, t, fs, _ in rows(agent, m) if ns <= n < ns + 86400 * NS]
        assert f == hourly.day_fields([(h[0] // NS, h[2]) for h in hours],
                                      hourly.pack_rows(ns // NS, others))
        assert f["hours"] == len(hours)
        packed.append(f["outages"])
    assert math.isclose(sum(f["observed_s"] for _, _, f, _ in days), watched_s(agent))
    # The outage began before midnight: the first day's row packs it, whole, the second none.
    (start, tags, ep, _), = rows(agent, "outage")
    assert packed == [f"connectivity:{tags['cause']}:{start // 10**6 % 86_400_000}:"
                      f"{ep['duration_s']:g}", ""]


def test_a_speed_test_dated_in_a_closed_hour_reaches_its_days_row(tmp_path):
    """A test that began before midnight and was written after the day's last hour had been
    written for good: the hour is written again, and the day's row packs the test (the
    collector reads a day's tests from that row alone)."""
    clock, net = FakeClock(datetime(2026, 3, 1, 23, 50, tzinfo=UTC)), FakeNet()
    agent = agent_for(tmp_path, clock, net)
    run(agent, clock, net, [("up", 80)])                     # past midnight
    agent.summaries.run()
    day = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    (_, _, before, _), = [r for r in rows(agent, "daily") if r[0] == day * NS]
    assert before["speed_tests"] == ""
    began = datetime(2026, 3, 1, 23, 59, 30, tzinfo=UTC)
    agent.store.write([Sample("speedtest", {**agent.tags}, {"status": "ok", "download_bps": 2.5e7,
                                                             "upload_bps": 4e6}, began)])
    clock.advance(60)
    agent.summaries.run()
    (_, _, after, _), = [r for r in rows(agent, "daily") if r[0] == day * NS]
    assert after["speed_tests"] == f"{(23 * 3600 + 3570) * 1000}:25000000:4000000"
    assert after["observed_s"] == before["observed_s"]
