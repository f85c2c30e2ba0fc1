"""The registry builds what the config asks for, and everything it builds keeps the probe contract.

Nothing here touches the network: the round's probes get a fake network, the sensors a prepared
host tree, and only constructors run for netio and the speed test (their jobs build them).
"""

from __future__ import annotations

import pytest

from agent.clock import FakeClock
from agent.config import parse
from agent.model import Sample
from agent.probes import registry
from agent.probes.contract import DNS, GATEWAY, INTERNET, Network, Probe
from agent.probes.gateway import GatewayProbe
from agent.probes.netio import NetIO
from agent.probes.speedtest import SpeedTest
from agent.round import Prober
from tests.hosttree import power_supply


def fake_network() -> Network:
    """A line where everything answers; the gateway is 192.168.1.1."""
    def echo(target, *, count, timeout_s, clock):
        return Sample("ping", {"target": str(target), "method": "icmp_dgram"},
                      {"sent": count, "received": count, "loss_pct": 0.0, "rtt_avg_ms": 5.0},
                      clock.now())

    def dns(name, *, servers, timeout_s, clock):
        return Sample("dns", {"name": name, "server": servers[0]}, {"success": True}, clock.now())

    return Network(echo=echo, dns=dns, gateway=lambda: "192.168.1.1",
                   dns_servers=lambda: ["192.168.1.1"])


def config(tmp_path, probe: str = "", power: str = ""):
    return parse(f'[agent]\nstate_dir = "{tmp_path}/state"\nsysfs = "{tmp_path}/sys"\n'
                 f'procfs = "{tmp_path}/proc"\nrundir = "{tmp_path}/run"\n'
                 f"[probe]\n{probe}[power]\n{power}")


@pytest.mark.parametrize("gateway, roles", [
    ("auto", [GATEWAY, INTERNET, INTERNET, DNS, DNS]),
    ("192.168.1.1", [GATEWAY, INTERNET, INTERNET, DNS, DNS]),
    ("off", [INTERNET, INTERNET, DNS, DNS]),
], ids=["auto", "address", "off"])
def test_round_probes_follow_the_config_in_row_order(tmp_path, gateway, roles):
    cfg = config(tmp_path, f'gateway = "{gateway}"\ntargets = ["1.1.1.1", "8.8.8.8:443"]\n'
                           'dns_names = ["a.example", "b.example"]\n')
    probes = registry.round_probes(cfg, FakeClock(), fake_network())
    assert [p.role for p in probes] == roles
    assert all(isinstance(p, Probe) and isinstance(p.name, str) for p in probes)
    assert isinstance(probes[0], GatewayProbe) == (gateway != "off")


def test_the_round_keeps_the_probes_rows_in_order_with_their_roles(tmp_path):
    cfg = config(tmp_path, 'targets = ["1.1.1.1", "8.8.8.8"]\ndns_names = ["a.example"]\n')
    clock = FakeClock()
    prober = Prober(cfg, registry.round_probes(cfg, clock, fake_network()), clock, {"agent": "a"})
    try:
        rnd = prober.run()
    finally:
        prober.close()
    rows = [(s.measurement, s.tags.get("role"), s.tags.get("target") or s.tags.get("name"))
            for s in rnd.samples]
    assert rows == [("ping", "gateway", "192.168.1.1"), ("ping", "internet", "1.1.1.1"),
                    ("ping", "internet", "8.8.8.8"), ("dns", None, "a.example"),
                    ("round", None, None)]
    assert rnd.status == "up" and prober.last_gateway == "192.168.1.1"


def test_power_sensors_follow_the_config(tmp_path):
    on = registry.power_sensors(config(tmp_path), registry.platform_for(config(tmp_path)), FakeClock())
    assert [s.name for s in on[0]] == ["battery"] and on[1] == []
    cfg = config(tmp_path, power='battery = "off"\nups = "nut://127.0.0.1:9/dummy"\n')
    sensors, warnings = registry.power_sensors(cfg, registry.platform_for(cfg), FakeClock())
    assert [s.name for s in sensors] == ["ups"] and warnings == []
    assert all(isinstance(s, Probe) for s in sensors)


def test_the_battery_sensor_reads_the_platform_and_stamps_its_row(tmp_path):
    cfg = config(tmp_path)
    power_supply(tmp_path / "sys", online="0", capacity=42, status="Discharging")
    clock = FakeClock()
    (battery,), _ = registry.power_sensors(cfg, registry.platform_for(cfg), clock)
    r = battery.measure()
    assert (r.source, r.on_battery, r.charge_pct, r.status) == ("battery", True, 42.0, "Discharging")
    assert (r.sample.measurement, dict(r.sample.tags), r.sample.time) == \
        ("power", {"source": "battery"}, clock.now())
    assert dict(r.sample.fields) == {"on_battery": True, "charge_pct": 42.0, "status": "Discharging"}


def test_host_netio_and_speed_test_keep_the_contract(tmp_path):
    cfg = config(tmp_path)
    (tmp_path / "proc" / "sys/kernel/random").mkdir(parents=True)
    (tmp_path / "proc" / "sys/kernel/random/boot_id").write_text("b-1\n")
    host = registry.host_sensor(registry.platform_for(cfg))
    built = [host, NetIO(FakeClock()), SpeedTest(clock=FakeClock())]  # built by their jobs
    assert all(isinstance(p, Probe) for p in built)
    assert [p.name for p in built] == ["host", "netio", "speedtest"]
    assert host.measure().boot_id == "b-1" and host.measure().boot_time is None
