"""docs/metrics.md and what the agent emits, both ways: every measurement, tag and field emitted
is catalogued with its type, and every one catalogued is emitted by one of the paths below.

Each path is driven for real, in process, with fakes only where the suite fakes them everywhere
(the probes' network in the round job, the clock, host trees under procfs/sysfs/run roots):

* rounds: the round job through ISP, LAN and DNS outages (ping, dns, round and outage rows),
  then the summaries job (the hour's ``hourly`` row and the day's ``daily`` row);
* power: the power job polling a laptop's AC adapter and battery through a cut;
* restarts: recovery after the agent stopped without a clean exit (an agent gap) and after the
  host went down (a host-down power cut);
* minute: the interface counters (psutil) and the agent's own metrics (with the minute job's
  duration and failures), twice, as the scheduler runs the job;
* netio: the minute job again, its interface sampler reading a link whose driver reports a speed;
* probes: the real TCP, DNS and ICMP probes on loopback (a DNS server that answers, one that
  says NXDOMAIN, a closed port);
* ups: the power job reading a real NUT server (upsd with dummy-ups);
* speed_tests: the agent's speed-test job through speedtest-cli: a stand-in for speedtest.net
  and a local server (ok), a test over the budget (skipped), a server that is down (failed).

A catalogued field that none of them emits fails the test: drive the path that emits it, or the
row is dead and goes. A new field needs only its row when one of these paths emits it (a family
of fields, ``job_<name>_duration_s``, is one row: tests/catalog.py).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from agent.clock import FakeClock, SystemClock
from agent.config import parse
from agent.model import Sample
from agent.probes import dns, icmp, tcp
from agent.probes.netio import Counters, LinkState, NetIO
from agent.probes.target import parse_target
from agent.runner import Agent
from tests.alertservers import WebhookDouble
from tests.catalog import assert_listed, assert_no_addresses_but_the_configured, catalogued, load_catalog
from tests.dnsserver import FakeServer, answer_to_query, rr_a
from tests.fakenet import FakeNet, outage, tick, written
from tests.hosttree import boot, power_supply, time_synced
from tests.nutlab import NutServer, free_port, nut_unavailable
from tests.speedserver import SpeedServer
from tests.speedtestnet import FakeSpeedtestNet, module_via


class Unavailable(Exception):
    """The path cannot run here (a server that is not installed); the message says why."""


PATHS: dict[str, Callable[[Path], list[Sample]]] = {}


def path(fn: Callable[[Path], list[Sample]]) -> Callable[[Path], list[Sample]]:
    PATHS[fn.__name__] = fn
    return fn


def agent_cfg(tmp: Path, agent_extra: str = "", sections: str = ""):
    return parse(f'[agent]\nstate_dir = "{tmp}/state"\nregion = "PK-KP"\ncity = "Peshawar"\n'
                 f'isp = "Zong"\naccess = "mobile"\n{agent_extra}{sections}')


@path
def rounds(tmp: Path) -> list[Sample]:
    clock, net = FakeClock(), FakeNet()
    agent = Agent(agent_cfg(tmp), clock=clock, probes=net.probes())
    for state in ("up", "isp", "up", "lan", "up", "dns", "up"):
        net.state = state
        tick(agent, clock, 5)
    agent.summaries.run()
    rows = written(agent.store)
    assert [s.tags["cause"] for s in rows if s.measurement == "outage"] == ["isp", "lan", "dns"]
    assert [s.measurement for s in rows].count("hourly") == 1
    assert [s.measurement for s in rows].count("daily") == 1
    return rows


@path
def power(tmp: Path) -> list[Sample]:
    clock, sysfs = FakeClock(), tmp / "sys"
    ac = power_supply(sysfs, online=None, capacity=80, status="Discharging")
    agent = Agent(agent_cfg(tmp, f'sysfs = "{sysfs}"\n'), clock=clock, probes=FakeNet().probes())
    for online in ("1", "0", "0", "1"):
        (ac / "online").write_text(online + "\n")
        agent.power.run()
        clock.advance(5)
    rows = written(agent.store)
    assert [s.tags["cause"] for s in rows if s.measurement == "outage"] == ["ac_lost"]
    return rows


@path
def restarts(tmp: Path) -> list[Sample]:
    clock, procfs, rundir = FakeClock(), tmp / "proc", tmp / "run"
    boot(procfs, "boot-1", clock.now() - timedelta(hours=1))
    time_synced(rundir)
    cfg = agent_cfg(tmp, f'procfs = "{procfs}"\nrundir = "{rundir}"\n', '[power]\nbattery = "off"\n')

    def start() -> Agent:
        a = Agent(cfg, clock=clock, probes=FakeNet().probes())
        a.power.recover()
        return a

    for away_s in (120, 1800):
        a = start()
        tick(a, clock, 2)
        a.store.close()                                  # stopped without a clean exit
        clock.advance(away_s)
    boot(procfs, "boot-2", clock.now() - timedelta(seconds=60))   # the host went down meanwhile
    a = start()
    rows = written(a.store)
    a.store.close()
    assert [(s.tags["type"], s.tags["cause"]) for s in rows if s.measurement == "outage"] == \
        [("agent_gap", "agent_stopped"), ("power", "host_down")]
    return rows


@path
def minute(tmp: Path) -> list[Sample]:
    """Run as the scheduler runs it (through the guard), so the second sample carries the
    job's own duration and failures."""
    clock = FakeClock()
    agent = Agent(agent_cfg(tmp), clock=clock, probes=FakeNet().probes())
    tick(agent, clock, 1)
    for _ in range(2):
        agent.guarded(agent.selfmetrics.run, agent.selfmetrics.name)()
        clock.advance(60)
    return written(agent.store)


@path
def alerts(tmp: Path) -> list[Sample]:
    """An outage alerted to two real webhooks on loopback, one of which refuses it (401: the
    agent has no token for it): the minute sample then carries the alerts' counters."""
    ok, bad = WebhookDouble(), WebhookDouble(token="not-the-agent's")
    ok.__enter__()
    bad.__enter__()
    cfg = agent_cfg(tmp, sections=(
        '[alerts]\nmin_duration_s = 0\n'
        f'[[alerts.channels]]\nkind = "webhook"\nname = "ok"\nurl = "{ok.url}/hook"\n'
        f'[[alerts.channels]]\nkind = "webhook"\nname = "bad"\nurl = "{bad.url}/hook"\n'))
    clock, net = FakeClock(), FakeNet()
    try:
        agent = Agent(cfg, clock=clock, probes=net.probes())
        outage(agent, clock, net)
        agent.guarded(agent.selfmetrics.run, agent.selfmetrics.name)()
    finally:
        ok.__exit__()
        bad.__exit__()
    assert [r.json()["event"] for r in ok.requests] == ["outage_end"]
    rows = written(agent.store, "agent")
    assert rows[-1].fields["alerts_sent"] == 1 and rows[-1].fields["alerts_refused"] == 1
    return rows


@path
def netio(tmp: Path) -> list[Sample]:
    """The minute job with the interface sampler's edge injected: a link whose driver reports a
    speed, whatever the interfaces of the machine running the tests."""
    clock = FakeClock()
    counters = {"eth0": Counters(rx_bytes=1000, tx_bytes=500, rx_packets=10, tx_packets=5)}
    agent = Agent(agent_cfg(tmp), clock=clock, probes=FakeNet().probes())
    agent.selfmetrics._netio = NetIO(clock, read_counters=lambda: counters,   # no constructor seam
                                      read_links=lambda: {"eth0": LinkState(up=True, speed_mbps=1000)})
    agent.selfmetrics.run()
    clock.advance(60)
    counters["eth0"] = Counters(rx_bytes=9000, tx_bytes=700, rx_packets=20, tx_packets=8)
    agent.selfmetrics.run()
    rows = written(agent.store, "netio")
    assert [s.fields.get("rx_bytes_delta") for s in rows] == [None, 8000]
    return rows


@path
def probes(tmp: Path) -> list[Sample]:
    clock = SystemClock()
    samples = [tcp.measure(parse_target("127.0.0.1:9"), count=2, timeout_s=0.3, spacing_s=0.05,
                           clock=clock)]
    answering = FakeServer(lambda q: [answer_to_query(q, [rr_a("192.0.2.1")])])
    nxdomain = FakeServer(lambda q: [answer_to_query(q, rcode=3)])
    try:
        for port in (answering.port, nxdomain.port, free_port()):
            samples.append(dns.measure("example.test", servers=["127.0.0.1"], timeout_s=0.5,
                                       clock=clock, port=port))
    finally:
        answering.close()
        nxdomain.close()
    assert [s.fields.get("error") for s in samples[1:]] == [None, "nxdomain", "port_unreachable"]
    method = icmp.available_method(socket.AF_INET)
    if method:  # the TCP probe emits the same fields; ICMP adds its methods' tag values
        samples.append(icmp.measure(parse_target("127.0.0.1"), count=3, timeout_s=0.5,
                                    spacing_s=0.05, method=method, clock=clock))
    return samples


@path
def ups(tmp: Path) -> list[Sample]:
    if nut_unavailable():
        raise Unavailable(nut_unavailable())
    (tmp / "nut").mkdir()
    with NutServer.create(tmp / "nut", status="OB LB", charge=12, runtime=300, voltage=0,
                          load=41) as nut:
        cfg = agent_cfg(tmp, sections=f'[power]\nbattery = "off"\nups = "{nut.url()}"\n')
        agent = Agent(cfg, clock=FakeClock(), probes=FakeNet().probes())
        readings, samples = agent.power.read_power_sensors()
    assert readings[0].on_battery is True and readings[0].charge_pct == 12
    return samples


@path
def speed_tests(tmp: Path) -> list[Sample]:
    with SpeedServer() as speed:
        stand_in = FakeSpeedtestNet(speed.url)
        try:
            a = Agent(agent_cfg(tmp / "a", sections="[speedtest]\nmonthly_budget_mb = 0.001\n"),
                      clock=SystemClock(), probes=FakeNet().probes())
            a.speedtests.module = module_via(stand_in.base)
            skipped, ok = a.speedtests.measure(), a.speedtests.measure(force=True)
        finally:
            stand_in.close()
    down = f"http://127.0.0.1:{free_port()}/speedtest/upload.php"
    b = Agent(agent_cfg(tmp / "b", sections=f'[speedtest]\nserver_url = "{down}"\n'),
              clock=SystemClock(), probes=FakeNet().probes())
    failed = b.speedtests.measure()
    got = [(s.fields["status"], s.fields.get("skip_reason") or s.fields.get("error"))
           for s in (skipped, ok, failed)]
    assert got == [("skipped", "budget"), ("ok", None), ("failed", "server_unreachable")]
    return written(a.store) + written(b.store)


@path
def services(tmp: Path) -> list[Sample]:
    """The service-check job with real checks on loopback: DNS servers (the system's and a
    second one), an HTTPS site of a test CA, a middlebox resetting the ClientHello that names
    sni.test; one check of each blocked, then the block lifted (an interference episode opened
    and closed)."""
    import threading

    from agent.jobs.services import ServiceChecks
    from agent.probes.services import Checker
    from tests import censorlab, sni_middlebox, tls_site

    ca, cert, key = censorlab.certificates(tmp)
    site = tls_site.site("127.0.0.1", 0, str(cert), str(key))
    threading.Thread(target=site.serve_forever, daemon=True).start()
    box, blocked = sni_middlebox.listen("127.0.0.1", 0), {"sni.test"}
    threading.Thread(target=sni_middlebox.serve, args=(box, site.server_address, blocked),
                     daemon=True).start()
    # A stand-in for an OpenVPN server (a real one needs a tun device: it runs in a namespace in
    # tests/test_services_netns.py): it answers a client's hard reset as OpenVPN 2.6 does.
    vpn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    vpn.bind(("127.0.0.1", 0))

    def answer_resets() -> None:
        while True:
            try:
                data, peer = vpn.recvfrom(2048)
            except OSError:
                return
            vpn.sendto(bytes([8 << 3]) + b"\xa5" * 8 + b"\x01" + b"\0" * 4 + data[1:9]
                       + b"\0" * 4, peer)
    threading.Thread(target=answer_resets, daemon=True).start()
    system = FakeServer(lambda q: [answer_to_query(q, [rr_a("127.0.0.1")])])
    second = FakeServer(lambda q: [answer_to_query(q, [rr_a("127.0.0.1")])], host="127.0.0.2",
                        port=system.port)
    port, mb, vpn_port = site.server_address[1], box.getsockname()[1], vpn.getsockname()[1]
    cfg = agent_cfg(tmp, sections=(
        '[probe]\ndns_servers = ["127.0.0.1"]\n[services]\n'
        f'urls = ["https://ok.test:{port}/", "https://sni.test:{mb}/"]\n'
        f'vpn = ["tcp://127.0.0.1:{port}", "openvpn://127.0.0.1:{vpn.getsockname()[1]}"]\n'
        'open_after = 1\nresolver = "127.0.0.2"\n'
        f'throttle_url = "https://127.0.0.1:{mb}/bytes/100000"\nthrottle_names = ["sni.test"]\n'
        'throttle_bytes = 100000\n'))
    clock, jobs = SystemClock(), FakeClock()   # the checks' timings; when targets are due
    try:
        agent = Agent(cfg, clock=jobs, probes=FakeNet().probes())
        agent.services = ServiceChecks(agent.ctx, line_up=lambda: True, checker=Checker(
            system_servers=lambda: ["127.0.0.1"], resolver="127.0.0.2", control_sni="control.test",
            ca_file=str(ca), timeout_s=2, clock=clock, dns_port=system.port,
            bogon=lambda a: a.startswith("0."),      # the sites are on loopback here
            throttle_bytes=100_000))
        first = agent.services.run()
        blocked.clear()
        assert agent.services.run() == []          # none is due yet
        # sni.test's episodes are open: checked again after a sixth of the interval, its
        # throttling check after a sixth of throttle_interval_s (an hour); by then, all
        jobs.advance(3600)
        again = agent.services.run()
        assert sorted(r.tags["target"] for r in again) == sorted(
            [f"ok.test:{port}", f"sni.test:{mb}", f"127.0.0.1:{port}",
             f"127.0.0.1:{vpn_port}/udp", "sni.test"])
    finally:
        site.shutdown()
        box.close()
        vpn.close()
        system.close()
        second.close()
    assert [(r.tags["step"], r.fields.get("how")) for r in first] == [
        ("ok", None), ("tls", "reset"), ("ok", None), ("ok", None), ("tls", "reset")]
    # the throttling check of sni.test: reset by name, then (the block lifted) its rates
    assert first[-1].tags["kind"] == "throttle" and again[-1].fields["ratio"] > 0
    return written(agent.store)


@pytest.fixture(scope="module")
def emitted(tmp_path_factory) -> dict[str, list[Sample] | Unavailable]:
    """What each path emitted (or why it could not run here)."""
    out: dict[str, list[Sample] | Unavailable] = {}
    for name, fn in PATHS.items():
        try:
            out[name] = fn(tmp_path_factory.mktemp(name))
        except Unavailable as exc:
            out[name] = exc
    return out


def test_catalog_parses():
    cat = load_catalog()
    agent = {m for m, e in cat.items() if e["part"] == "agent"}
    assert agent == {"ping", "dns", "round", "outage", "power", "netio", "agent", "speedtest",
                     "hourly", "daily", "service"}
    assert {m for m in cat if m not in agent} == {
        "regional_coverage", "regional_power", "regional_internet", "regional_line",
        "regional_load_shedding", "regional_events"}
    assert all(c["fields"] for c in cat.values())


@pytest.mark.parametrize("name", list(PATHS))
def test_every_emitted_field_is_catalogued(emitted, name):
    got = emitted[name]
    if isinstance(got, Unavailable):
        pytest.skip(str(got))
    assert got, f"the {name} path emitted nothing"
    assert_listed(got)
    assert_no_addresses_but_the_configured(got)


def _missing(emitted, wanted: set, seen: set, what: str) -> None:
    missing = sorted(wanted - seen)
    if missing and any(isinstance(v, Unavailable) for v in emitted.values()):
        pytest.skip(f"{what} not emitted here: {missing}; paths that could not run: "
                    + "; ".join(f"{k} ({v})" for k, v in emitted.items() if isinstance(v, Unavailable)))
    assert not missing, (f"{what} catalogued in docs/metrics.md but emitted by none of the paths "
                         f"driven here: {missing} (drive the path that emits it, or drop the row)")


def test_every_catalogued_field_is_emitted(emitted):
    rows, _ = catalogued("agent")
    seen = set()
    for got in emitted.values():
        if not isinstance(got, Unavailable):
            seen |= assert_listed(got)
    _missing(emitted, rows, seen, "fields")


def test_every_catalogued_tag_is_emitted(emitted):
    _, tags = catalogued("agent")
    seen = {(s.measurement, t) for got in emitted.values() if not isinstance(got, Unavailable)
            for s in got for t in s.tags}
    _missing(emitted, tags, seen, "tags")
