"""TCP connect probe against real listeners, closed ports and silent addresses in namespaces."""

import json
import os
import select
import struct
import sys
import time
from pathlib import Path

import pytest

from agent.probes import tcp
from agent.probes.target import parse_target

# Runs alone (tests/run.sh): the connects' waits are bounded to tenths of a second.
pytestmark = pytest.mark.serial

REPO = Path(__file__).resolve().parents[1]
TARGET = "198.51.100.1"  # in the "internet" namespace, behind the gateway
SILENT = "198.51.100.99"  # routed to the internet namespace, which has no such address: no answer

# Runs inside a namespace: one tcp.measure call described by argv[1] as JSON.
_PROBE = """
import json, sys, time
from datetime import datetime
from agent.clock import FakeClock
from agent.probes import tcp
from agent.probes.target import parse_target
req = json.loads(sys.argv[1])
clock = FakeClock(datetime.fromisoformat("2026-03-01T10:00:00+00:00"))
print("go", flush=True)
t0 = time.monotonic()
s = tcp.measure(parse_target(req["target"]), clock=clock, **req["kw"])
print(json.dumps({"measurement": s.measurement, "tags": dict(s.tags), "fields": dict(s.fields),
                  "time": s.time.isoformat(), "elapsed_s": time.monotonic() - t0}))
"""

_LISTEN = """
import socket, sys, time
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.create_server((sys.argv[1], int(sys.argv[2])), family=family, backlog=128)
print("ready", flush=True)
time.sleep(3600)
"""


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")


def connect(net, target, **kw):
    kw.setdefault("count", 3)
    kw.setdefault("timeout_s", 1.0)
    kw.setdefault("spacing_s", 0.05)
    r = net.lab.run(net.agent, sys.executable, "-c", _PROBE,
                    json.dumps({"target": target, "kw": kw}), env=_env(), cwd=str(REPO))
    return json.loads(r.stdout.strip().splitlines()[-1])


def listen(net, ns, addr, port):
    p = net.lab.popen(ns, sys.executable, "-c", _LISTEN, addr, str(port), text=True)
    ready, _, _ = select.select([p.stdout], [], [], 15)
    if not ready or p.stdout.readline().strip() != "ready":
        raise RuntimeError(f"listener did not start: {p.stderr.read() if p.poll() else ''}")
    return p


def assert_total_loss(result, count):
    assert result["fields"] == {"sent": count, "received": 0, "loss_pct": 100.0}


# -- pure parts -----------------------------------------------------------------------------------

class _FakeSock:
    def __init__(self, info=None, error=None):
        self.info, self.error = info, error

    def getsockopt(self, *_args):
        if self.error:
            raise self.error
        return self.info


@pytest.mark.parametrize("sock, expected", [
    pytest.param(_FakeSock(bytes(100) + struct.pack("=I", 1) + bytes(4)), True,
                 id="one-retransmit"),
    pytest.param(_FakeSock(bytes(104)), False, id="none"),
    pytest.param(_FakeSock(bytes(64)), False, id="old-kernel-short-struct"),
    pytest.param(_FakeSock(error=OSError(92, "Protocol not available")), False, id="no-tcp-info"),
])
def test_syn_retransmitted(sock, expected):
    assert tcp._syn_retransmitted(sock) is expected


@pytest.mark.parametrize("kwargs", [
    pytest.param(dict(count=0), id="count-zero"),
    pytest.param(dict(port=0), id="port-zero"),
    pytest.param(dict(port=70000), id="port-too-big"),
    pytest.param(dict(timeout_s=0), id="timeout-zero"),
    pytest.param(dict(spacing_s=-0.1), id="spacing-negative"),
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        tcp.connect_rtts(parse_target("127.0.0.1"), **kwargs)


# -- real connects --------------------------------------------------------------------------------

@pytest.mark.netns
def test_listening_port_answers(net):
    listen(net, net.inet, "0.0.0.0", 8443)
    result = connect(net, TARGET, port=8443)
    assert result["measurement"] == "ping"
    assert result["tags"] == {"target": "198.51.100.1:8443", "method": "tcp"}
    f = result["fields"]
    assert (f["sent"], f["received"], f["loss_pct"]) == (3, 3, 0.0)
    assert 0 < f["rtt_min_ms"] <= f["rtt_avg_ms"] <= f["rtt_max_ms"] < 50
    assert "jitter_ms" in f
    assert result["time"] == "2026-03-01T10:00:00+00:00"


@pytest.mark.netns
def test_target_port_wins_over_default(net):
    listen(net, net.inet, "0.0.0.0", 8443)
    result = connect(net, f"{TARGET}:8443", port=443)
    assert result["tags"]["target"] == "198.51.100.1:8443"
    assert result["fields"]["received"] == 3


@pytest.mark.netns
def test_closed_port_rst_counts_as_reply(net):
    result = connect(net, f"{TARGET}:9")
    f = result["fields"]
    assert (f["sent"], f["received"]) == (3, 3)
    assert f["rtt_max_ms"] < 50
    assert result["elapsed_s"] < 0.5  # answered at once, no waiting for a timeout


@pytest.mark.netns
def test_loopback_in_namespace(net):
    listen(net, net.agent, "127.0.0.1", 8080)
    assert connect(net, "127.0.0.1:8080")["fields"]["received"] == 3
    assert connect(net, "127.0.0.1:8081")["fields"]["received"] == 3  # refused: also an answer


@pytest.mark.netns
def test_silent_address_is_total_loss(net):
    result = connect(net, f"{SILENT}:443", count=3, timeout_s=0.4, spacing_s=0.1)
    assert_total_loss(result, 3)
    assert 0.4 <= result["elapsed_s"] < 0.2 + 0.4 + 0.3


@pytest.mark.netns
def test_blackhole_route_is_total_loss(net):
    net.lab.run(net.agent, "ip", "route", "add", "blackhole", "203.0.113.0/24")
    result = connect(net, "203.0.113.7:443", timeout_s=1.0)
    assert_total_loss(result, 3)
    assert result["elapsed_s"] < 0.5  # refused locally at once


@pytest.mark.netns
def test_wan_cut_is_total_loss(net):
    listen(net, net.inet, "0.0.0.0", 8443)
    net.cut_wan()
    assert_total_loss(connect(net, f"{TARGET}:8443", timeout_s=0.5), 3)
    net.cut_wan(down=False)
    assert connect(net, f"{TARGET}:8443")["fields"]["received"] == 3


@pytest.mark.netns
def test_agent_link_down_is_total_loss(net):
    net.lab.link(net.agent, "eth0", up=False)
    result = connect(net, f"{TARGET}:443", timeout_s=1.0)
    assert_total_loss(result, 3)
    assert result["elapsed_s"] < 0.5


@pytest.mark.netns
def test_reply_to_retransmitted_syn_is_lost(net):
    """The first SYN goes to an address nobody has; the address appears before the kernel resends
    the SYN (after its 1 s initial RTO). The SYN-ACK then proves the host, but its time is mostly
    the retransmission timeout, so the echo counts as lost."""
    listen(net, net.inet, "0.0.0.0", 8443)
    req = json.dumps({"target": f"{SILENT}:8443", "kw": {"count": 1, "timeout_s": 3.0}})
    p = net.lab.popen(net.agent, sys.executable, "-c", _PROBE, req, env=_env(), cwd=str(REPO),
                      text=True)
    assert p.stdout.readline().strip() == "go"
    time.sleep(0.3)
    net.lab.run(net.inet, "ip", "addr", "add", f"{SILENT}/32", "dev", "lo")
    out, _err = p.communicate(timeout=10)
    result = json.loads(out.strip().splitlines()[-1])
    assert_total_loss(result, 1)
    assert result["elapsed_s"] < 2.0  # ended by the late SYN-ACK, not by the 3 s timeout


@pytest.mark.netns
def test_ipv6_listening_and_closed(net):
    for ns, dev, addr in ((net.agent, "eth0", "2001:db8:1::2/64"),
                          (net.gw, "lan0", "2001:db8:1::1/64")):
        net.lab.run(ns, "ip", "-6", "addr", "add", addr, "dev", dev, "nodad")
    listen(net, net.gw, "::", 8443)
    result = connect(net, "[2001:db8:1::1]:8443")
    assert result["tags"]["target"] == "[2001:db8:1::1]:8443"
    assert result["fields"]["received"] == 3
    assert connect(net, "2001:db8:1::1", port=9)["fields"]["received"] == 3
    assert_total_loss(connect(net, "[2001:db8:99::1]:443", timeout_s=0.5), 3)  # no v6 route
