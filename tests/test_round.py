"""Round classification (pure) and the agent's round job with injected probes and a fake clock.

The probes here are fakes passed by constructor (tests/fakenet.py; the real ones are tested against
namespaces in test_icmp/test_dns and end to end in test_agent_netns); this file checks the wiring: verdicts,
episodes in the store, and a restart in the middle of an episode.
"""


import pytest

from agent.clock import FakeClock
from agent.config import parse
from agent.model import Sample
from agent.round import Thresholds, classify
from agent.runner import Agent
from tests.fakenet import FakeNet, make_agent, tick

TH = Thresholds(degraded_loss_pct=20, degraded_rtt_ms=500)


def ping(received, sent=3, rtt=10.0):
    f = {"sent": sent, "received": received, "loss_pct": 100.0 * (sent - received) / sent}
    if received:
        f["rtt_avg_ms"] = rtt
    return Sample("ping", {"target": "x", "method": "icmp_raw"}, f, FakeClock().now())


def dns(ok):
    return Sample("dns", {"name": "example.com"}, {"success": ok}, FakeClock().now())


@pytest.mark.parametrize("gw, routed, usually, internet, names, expected", [
    (ping(3), True, True, [ping(3), ping(3)], [dns(True)], ("up", None)),
    (ping(3), True, True, [ping(0), ping(0)], [dns(False)], ("down", "isp")),
    (ping(0), True, True, [ping(0), ping(0)], [dns(False)], ("down", "lan")),
    (None, False, False, [ping(0), ping(0)], [dns(False)], ("down", "lan")),       # no default route
    (ping(0), True, False, [ping(0), ping(0)], [dns(False)], ("down", "unknown")),  # gateway never answers
    (None, True, False, [ping(0)], [], ("down", "unknown")),                        # gateway = "off"
    (ping(3), True, True, [ping(3), ping(0)], [dns(False)], ("down", "dns")),
    (ping(3), True, True, [ping(3)], [dns(False), dns(True)], ("up", None)),        # one name is enough
    (ping(3), True, True, [ping(3)], [], ("up", None)),                             # no names configured
    # one dead target is not degradation:
    (ping(3), True, True, [ping(3), ping(0)], [dns(True)], ("up", None)),
    (ping(3), True, True, [ping(2), ping(2)], [dns(True)], ("degraded", "loss")),
    (ping(3), True, True, [ping(3, rtt=900), ping(3, rtt=600)], [dns(True)], ("degraded", "latency")),
    (ping(3), True, True, [], [dns(True)], ("error", None)),
], ids=["up", "isp", "lan", "no-route", "gw-silent", "gw-off", "dns", "one-name", "no-names",
        "one-dead-target", "loss", "latency", "no-samples"])
def test_classify(gw, routed, usually, internet, names, expected):
    assert classify(gw, routed, usually, internet, names, TH) == expected


@pytest.mark.parametrize("state, cause", [("isp", "isp"), ("lan", "lan"), ("dns", "dns")])
def test_agent_records_episode_with_cause(tmp_path, state, cause):
    clock, net = FakeClock(), FakeNet()
    agent = make_agent(tmp_path, net, clock)
    tick(agent, clock, 3)
    t_cut = clock.now()
    net.state = state
    tick(agent, clock, 40)
    t_back = clock.now()
    net.state = "up"
    tick(agent, clock, 3)
    (ep,) = agent.store.episodes()
    assert (ep.type, ep.cause, ep.start, ep.end) == ("connectivity", cause, t_cut, t_back)
    assert ep.duration_s == 400 and ep.sustained
    outage_rows = list(agent.store.samples("outage"))
    assert len(outage_rows) == 1 and outage_rows[0].tags["cause"] == cause
    assert outage_rows[0].tags["region"] == "PK-PB"


def test_restart_in_the_middle_of_an_episode(tmp_path):
    clock, net = FakeClock(), FakeNet()
    a1 = make_agent(tmp_path, net, clock)
    tick(a1, clock, 2)
    t_cut = clock.now()
    net.state = "isp"
    tick(a1, clock, 5)
    assert [e.end for e in a1.store.episodes()] == [None]      # in progress, visible to status
    a1.store.close()
    clock.advance(15)                                           # the restart takes a moment
    a2 = make_agent(tmp_path, net, clock)
    tick(a2, clock, 3)
    net.state = "up"
    t_back = clock.now()
    tick(a2, clock, 4)
    eps = a2.store.episodes()
    assert len(eps) == 1
    assert (eps[0].start, eps[0].end) == (t_cut, t_back)
    outages = list(a2.store.samples("outage"))
    assert len(outages) == 1                                   # closed exactly once


def test_every_round_is_stored_even_when_everything_fails(tmp_path):
    clock, net = FakeClock(), FakeNet()
    agent = make_agent(tmp_path, net, clock)
    net.state = "lan"
    tick(agent, clock, 5)
    pings = list(agent.store.samples("ping"))
    assert len(pings) == 5 * 3                                  # gateway + 2 targets, every round
    assert all(s.fields["loss_pct"] == 100.0 for s in pings)    # recorded as loss, not missing
    rounds = list(agent.store.samples("round"))
    assert [r.fields["status"] for r in rounds] == ["down"] * 5


def test_online_field_gives_availability_over_watched_rounds(tmp_path):
    clock, net = FakeClock(), FakeNet()
    agent = make_agent(tmp_path, net, clock)
    tick(agent, clock, 3)                       # up
    net.state = "isp"
    tick(agent, clock, 1)                       # down
    net.state = "no_probe"                      # no probe can run: a round without a verdict
    tick(agent, clock, 1)
    rounds = list(agent.store.samples("round"))
    assert [r.fields["status"] for r in rounds] == ["up"] * 3 + ["down", "error"]
    assert [r.fields.get("online") for r in rounds] == [1, 1, 1, 0, None]
    watched = [r.fields["online"] for r in rounds if "online" in r.fields]
    assert sum(watched) / len(watched) == 0.75


@pytest.mark.parametrize("routes_known, cause", [(True, "lan"), (False, "unknown")])
def test_no_gateway_blames_the_lan_only_where_routes_can_be_read(tmp_path, routes_known, cause):
    """On Linux no default route means the link is down (lan); where the routing table cannot be
    read (not Linux) a missing gateway proves nothing, so a dead line is `unknown`."""
    clock, net = FakeClock(), FakeNet()
    net.state = "lan"
    probes = net.probes()
    probes.gateway = lambda: None
    probes.routes_known = lambda: routes_known
    cfg = parse(f'[agent]\nstate_dir = "{tmp_path}"\n')
    agent = Agent(cfg, clock=clock, probes=probes)
    assert (agent.rounds.run().status, agent.rounds.run().cause) == ("down", cause)


def test_probe_error_is_counted_not_fatal(tmp_path):
    from kit.errors import ProbeError

    clock, net = FakeClock(), FakeNet()

    def broken_dns(name, **kw):
        raise ProbeError("resolver socket refused")

    probes = net.probes()
    probes.dns = broken_dns
    cfg = parse(f'[agent]\nstate_dir = "{tmp_path}"\n')
    agent = Agent(cfg, clock=clock, probes=probes)
    rnd = agent.rounds.run()
    assert rnd.status == "up" and rnd.errors
    assert agent.counters["probe_errors"] == 1


def test_store_damaged_while_running_is_moved_aside_and_the_episode_kept(tmp_path):
    from kit.errors import StoreCorrupt

    clock, net = FakeClock(), FakeNet()
    agent = make_agent(tmp_path, net, clock)
    net.state = "isp"
    tick(agent, clock, 4)                                    # an episode is open

    def damaged():
        raise StoreCorrupt("database disk image is malformed")

    agent.guarded(damaged, "round")()                       # what the scheduler would run
    assert len(list(tmp_path.glob("linewatch.db.corrupt-*"))) == 1
    assert agent.counters["job_failures"] == 1
    tick(agent, clock, 2)
    net.state = "up"
    tick(agent, clock, 3)
    (ep,) = agent.store.episodes()                           # the new store got the whole episode
    assert ep.cause == "isp" and ep.duration_s == 60


def test_slow_failed_rounds_do_not_skew_the_episode(tmp_path):
    """Failed rounds last longer than good ones (they wait for timeouts); the episode's start and
    end are still the start instants of its first failed and first good rounds."""
    clock, net = FakeClock(), FakeNet()
    net.fail_cost_s = 1.5
    agent = make_agent(tmp_path, net, clock)
    tick(agent, clock, 2)
    net.state = "isp"
    t_first_fail = clock.now()
    agent.rounds.run()
    opened = agent.store.episodes()
    clock.advance(10)
    tick(agent, clock, 5)
    net.state = "up"
    t_first_good = clock.now()
    tick(agent, clock, 3)
    (ep,) = agent.store.episodes()
    assert ep.start == t_first_fail and ep.end == t_first_good
    assert ep.duration_s == (t_first_good - t_first_fail).total_seconds()
    assert opened == []  # one failed round opens nothing yet
