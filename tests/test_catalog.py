"""Every measurement, tag and field the agent emits is listed in docs/metrics.md, with its type.

Samples come from the agent's own jobs (rounds through an outage, the minute job with real psutil
counters) and from the real probes run against loopback in this process.
"""

import socket

import pytest

from agent.clock import FakeClock, SystemClock
from agent.config import parse
from agent.runner import Agent
from tests.catalog import assert_listed, assert_no_addresses_but_the_configured, load_catalog
from tests.hosttree import power_supply
from tests.fakenet import FakeNet, outbox, tick

def test_catalog_parses():
    cat = load_catalog()
    assert {"ping", "dns", "round", "outage", "netio", "agent"} <= set(cat)
    assert all(c["fields"] for c in cat.values())


def cfg_text(tmp_path) -> str:
    return (f'[agent]\nstate_dir = "{tmp_path}/state"\nregion = "PK-KP"\ncity = "Peshawar"\n'
            'isp = "Zong"\naccess = "mobile"\n')


def test_agent_jobs_emit_only_catalogued_metrics(tmp_path):
    clock, net = FakeClock(), FakeNet()
    sysfs = tmp_path / "sys"
    ac = power_supply(sysfs, online=None, capacity=80, status="Discharging")
    cfg = parse(cfg_text(tmp_path) + f'sysfs = "{sysfs}"\n')
    agent = Agent(cfg, clock=clock, probes=net.probes())
    for online in ("1", "0", "0", "1"):
        (ac / "online").write_text(online + "\n")
        agent.power_poll()
        clock.advance(5)
    tick(agent, clock, 2)
    agent.minute()
    net.state = "isp"
    tick(agent, clock, 5)
    net.state = "up"
    tick(agent, clock, 3)
    agent.minute()
    samples = [s for _, s in outbox(agent.store)]
    seen = assert_listed(samples)
    assert_no_addresses_but_the_configured(samples)
    assert {m for m, _ in seen} >= {"ping", "dns", "round", "outage", "agent", "netio", "power"}
    assert ("outage", "charge_end_pct") in seen


def test_real_probes_emit_only_catalogued_metrics():
    from agent.probes import dns, icmp, tcp
    from agent.probes.target import parse_target

    clock = SystemClock()
    samples = [tcp.measure(parse_target("127.0.0.1:9"), count=2, timeout_s=0.3, spacing_s=0.05, clock=clock),
               dns.measure("example.test", servers=["127.0.0.1"], timeout_s=0.3, clock=clock, port=9)]
    method = icmp.available_method(socket.AF_INET)
    if method:
        samples.append(icmp.measure(parse_target("127.0.0.1"), count=3, timeout_s=0.5, spacing_s=0.05,
                                    method=method, clock=clock))
    assert_listed(samples)
    if not method:
        pytest.skip("ICMP not permitted here; TCP and DNS samples were checked")


def test_ups_readings_emit_only_catalogued_metrics(tmp_path):
    """The agent's power samples from a real NUT server (upsd + dummy-ups)."""
    from tests.nutlab import NutServer, nut_unavailable

    if nut_unavailable():
        pytest.skip(nut_unavailable())
    (tmp_path / "nut").mkdir()
    with NutServer.create(tmp_path / "nut", status="OB LB", charge=12, runtime=300, voltage=0, load=41) as nut:
        cfg = parse(cfg_text(tmp_path) + f'[power]\nbattery = "off"\nups = "{nut.url()}"\n')
        agent = Agent(cfg, clock=FakeClock(), probes=FakeNet().probes())
        readings, samples = agent.read_power_sensors(FakeClock().now())
    assert readings[0].on_battery is True and readings[0].charge_pct == 12
    seen = assert_listed(samples)
    assert {f for m, f in seen if m == "power"} >= {"on_battery", "low_battery", "charge_pct", "runtime_s",
                                                    "input_voltage_v", "load_pct", "status"}
