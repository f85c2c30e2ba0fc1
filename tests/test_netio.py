"""Interface counters: the pure delta rule (table + properties), NetIO with fake readers and a fake
clock, psutil on this host, and real traffic in the agent namespace."""

from __future__ import annotations

import json
import sys
from dataclasses import fields as dc_fields, replace
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from agent.clock import FakeClock, SystemClock
from agent.probes.netio import Counters, LinkState, NetIO, deltas
from kit.errors import ProbeError

ROOT = Path(__file__).resolve().parents[1]
NAMES = [f.name for f in dc_fields(Counters)]


def C(rx=0, tx=0, **kw) -> Counters:
    return Counters(rx_bytes=rx, tx_bytes=tx, **kw)


@pytest.mark.parametrize("prev, cur, expected", [
    ({"eth0": C(100, 50)}, {"eth0": C(250, 80)}, {"eth0": C(150, 30)}),
    ({"eth0": C(100, 50)}, {"eth0": C(100, 50)}, {"eth0": C(0, 0)}),
    ({"eth0": C(10_000, 5_000)}, {"eth0": C(300, 6_000)}, {"eth0": C(300, 1_000)}),
    ({"eth0": C(10_000, 5_000, rx_packets=90)}, {"eth0": C(20, 10, rx_packets=3)},
     {"eth0": C(20, 10, rx_packets=3)}),
    ({}, {"eth0": C(100, 50)}, {}),
    ({"eth0": C(1, 1), "wwan0": C(5, 5)}, {"eth0": C(2, 2)}, {"eth0": C(1, 1)}),
    ({"eth0": C(1, 1)}, {"eth0": C(2, 2), "usb0": C(900, 900)}, {"eth0": C(1, 1)}),
    ({"eth0": C(2**40, 7)}, {"eth0": C(2**40 + 5, 9)}, {"eth0": C(5, 2)}),
], ids=["growth", "idle", "rx-reset-only", "all-reset", "new-interface-no-baseline",
        "vanished-interface", "added-interface", "large-counters"])
def test_deltas(prev, cur, expected):
    assert deltas(prev, cur) == expected


counters = st.builds(Counters, *[st.integers(0, 2**64 - 1) for _ in NAMES])
tables = st.dictionaries(st.sampled_from(["eth0", "wlan0", "wwan0", "usb0"]), counters)


@given(tables, tables)
def test_deltas_never_negative_and_never_exceed_current(prev, cur):
    out = deltas(prev, cur)
    assert set(out) == set(prev) & set(cur)
    for name, d in out.items():
        for f in NAMES:
            assert 0 <= getattr(d, f) <= getattr(cur[name], f)


@given(counters, st.lists(st.integers(0, 10**9), min_size=len(NAMES), max_size=len(NAMES)))
def test_deltas_without_reset_add_up(prev, growth):
    cur = Counters(*(getattr(prev, f) + g for f, g in zip(NAMES, growth)))
    assert deltas({"eth0": prev}, {"eth0": cur})["eth0"] == Counters(*growth)


# -- NetIO with fake readers ----------------------------------------------------------------

class FakeHost:
    def __init__(self):
        self.counters = {"lo": C(10, 10), "eth0": C(1000, 500, rx_packets=10, tx_packets=5),
                         "wlan0": C(0, 0)}
        self.links = {"lo": LinkState(True, 0, loopback=True), "eth0": LinkState(True, 1000),
                      "wlan0": LinkState(False, 0)}

    def read_counters(self):
        return dict(self.counters)

    def read_links(self):
        return dict(self.links)


@pytest.fixture
def host():
    return FakeHost()


def by_iface(samples):
    return {s.tags["interface"]: s for s in samples}


def test_first_sample_has_counters_and_link_but_no_deltas(host):
    clock = FakeClock()
    netio = NetIO(clock, read_counters=host.read_counters, read_links=host.read_links)
    samples = by_iface(netio.measure())
    assert set(samples) == {"eth0", "wlan0"}  # loopback skipped
    eth = samples["eth0"]
    assert eth.measurement == "netio" and eth.time == clock.now()
    assert dict(eth.fields) == {"rx_bytes": 1000, "tx_bytes": 500, "rx_packets": 10,
                                "tx_packets": 5, "rx_errors": 0, "tx_errors": 0, "rx_drops": 0,
                                "tx_drops": 0, "up": True, "speed_mbps": 1000}
    wlan = samples["wlan0"]
    assert wlan.fields["up"] is False and "speed_mbps" not in wlan.fields


def test_second_sample_has_deltas_and_interval(host):
    clock = FakeClock()
    netio = NetIO(clock, read_counters=host.read_counters, read_links=host.read_links)
    netio.measure()
    clock.advance(60)
    host.counters["eth0"] = replace(host.counters["eth0"], rx_bytes=4000, tx_bytes=900)
    eth = by_iface(netio.measure())["eth0"]
    assert eth.fields["rx_bytes_delta"] == 3000 and eth.fields["tx_bytes_delta"] == 400
    assert eth.fields["interval_s"] == 60.0 and isinstance(eth.fields["interval_s"], float)
    assert eth.fields["rx_bytes"] == 4000  # cumulative values stay cumulative


def test_interval_uses_the_monotonic_clock(host):
    clock = FakeClock()
    netio = NetIO(clock, read_counters=host.read_counters, read_links=host.read_links)
    netio.measure()
    clock.step_wall(-3600)  # NTP steps the wall clock back an hour
    clock.advance(30)
    assert by_iface(netio.measure())["eth0"].fields["interval_s"] == 30.0


def test_counter_reset_gives_current_value_as_delta(host):
    clock = FakeClock()
    netio = NetIO(clock, read_counters=host.read_counters, read_links=host.read_links)
    netio.measure()
    clock.advance(60)
    host.counters["eth0"] = C(70, 20)  # interface re-created: counters restart from zero
    eth = by_iface(netio.measure())["eth0"]
    assert (eth.fields["rx_bytes_delta"], eth.fields["tx_bytes_delta"]) == (70, 20)


def test_interface_appearing_later_gets_deltas_from_its_second_sample(host):
    clock = FakeClock()
    netio = NetIO(clock, read_counters=host.read_counters, read_links=host.read_links)
    netio.measure()
    host.counters["wwan0"] = C(5, 5)
    clock.advance(60)
    assert "rx_bytes_delta" not in by_iface(netio.measure())["wwan0"].fields
    host.counters["wwan0"] = C(105, 15)
    clock.advance(60)
    wwan = by_iface(netio.measure())["wwan0"].fields
    assert (wwan["rx_bytes_delta"], wwan["tx_bytes_delta"], wwan["interval_s"]) == (100, 10, 60.0)


@pytest.mark.parametrize("kwargs, expected", [
    ({}, {"eth0", "wlan0"}),
    ({"exclude": ("lo", "wlan0")}, {"eth0"}),
    ({"include": ["eth0"]}, {"eth0"}),
    ({"include": ["eth0", "lo"], "exclude": ()}, {"eth0", "lo"}),
    ({"include": ["eth0", "lo"], "exclude": ["lo"]}, {"eth0"}),
    ({"exclude": ()}, {"eth0", "wlan0"}),  # loopback by flag, even when not named
    ({"include": ["nope"]}, set()),
], ids=["default", "exclude-more", "include", "include-loopback", "exclude-wins",
        "loopback-flag", "include-unknown"])
def test_interface_selection(host, kwargs, expected):
    netio = NetIO(FakeClock(), read_counters=host.read_counters, read_links=host.read_links,
                  **kwargs)
    assert set(by_iface(netio.measure())) == expected


def test_missing_link_state_leaves_fields_out(host):
    host.links = {}
    netio = NetIO(FakeClock(), read_counters=host.read_counters, read_links=host.read_links)
    eth = by_iface(netio.measure())["eth0"]
    assert "up" not in eth.fields and "speed_mbps" not in eth.fields


def test_unreadable_counters_raise_probe_error():
    def broken():
        raise FileNotFoundError("/proc/net/dev")

    netio = NetIO(FakeClock(), read_counters=broken, read_links=dict)
    with pytest.raises(ProbeError, match="netio"):
        netio.measure()


def test_psutil_on_this_host():
    netio = NetIO(SystemClock())
    first = netio.measure()
    second = by_iface(netio.measure())
    assert first and "lo" not in second
    for s in second.values():
        for f in NAMES + ["rx_bytes_delta", "tx_bytes_delta"]:
            assert isinstance(s.fields[f], int) and s.fields[f] >= 0
        assert s.fields["interval_s"] >= 0
        assert isinstance(s.fields["up"], bool)
        assert s.fields.get("speed_mbps", 1) > 0


# -- real traffic in the agent namespace -------------------------------------------------------

PROBE = """
import json, subprocess, sys
from agent.clock import SystemClock
from agent.probes.netio import NetIO
n = NetIO(SystemClock())
first = {s.tags["interface"]: dict(s.fields) for s in n.measure()}
if len(sys.argv) > 1:
    subprocess.run(["ping", "-c", "5", "-i", "0.2", "-W", "1", sys.argv[1]], check=True,
                   capture_output=True)
second = {s.tags["interface"]: dict(s.fields) for s in n.measure()}
print(json.dumps({"first": first, "second": second}))
"""


def netio_in(net, *args):
    r = net.lab.run(net.agent, sys.executable, "-c", PROBE, *args, cwd=str(ROOT))
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.netns
def test_ping_traffic_shows_in_deltas(net):
    out = netio_in(net, net.gateway_ip)
    assert set(out["first"]) == {"eth0"}  # the namespace has lo and eth0; lo is skipped
    first, second = out["first"]["eth0"], out["second"]["eth0"]
    assert "rx_bytes_delta" not in first
    # 5 echo requests and 5 replies of 98 bytes each on the wire (64 ICMP + 20 IP + 14 Ethernet).
    assert second["tx_bytes_delta"] >= 5 * 98 and second["rx_bytes_delta"] >= 5 * 98
    assert second["tx_packets"] - first["tx_packets"] >= 5
    assert second["rx_bytes"] == first["rx_bytes"] + second["rx_bytes_delta"]
    assert 0.8 <= second["interval_s"] < 10
    assert second["up"] is True
    assert second.get("speed_mbps", 1) > 0  # veth reports 10000 Mbit/s on current kernels


@pytest.mark.netns
def test_link_down_shows_up_false(net):
    net.lab.link(net.agent, "eth0", False)
    out = netio_in(net)
    assert out["second"]["eth0"]["up"] is False
    assert out["second"]["eth0"]["rx_bytes_delta"] == 0
